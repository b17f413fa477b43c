//! Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document): a `client_id`
//! that is an https URL with a path is resolved by fetching it.
//!
//! The document is fetched by an untrusted party's choice of URL, so the fetcher is an SSRF
//! target. The rules, in the order they apply:
//!
//! 1. The URL itself ([`is_cimd_client_id`]): `https`, a path other than `/`, no fragment, no
//!    userinfo, no `.`/`..` segments, and already in the canonical form the HTTP client would
//!    fetch (so the string compared with the document's `client_id` is the URL actually fetched).
//! 2. The address: every address a host name resolves to is checked **after** DNS resolution and
//!    **before** any connection, inside the DNS resolver that reqwest uses (see
//!    `GuardedResolver`); IP-literal hosts, which reqwest connects to without asking the
//!    resolver, are checked by [`CimdResolver::resolve`] itself. A special-use address (RFC 6890
//!    and the IANA special-purpose registries, see `special_use`) refuses the whole fetch, even
//!    if the name also resolves to public addresses. `[cimd] allow_hosts` (`host:port`) lifts this
//!    for exactly that host and port, for tests and local development; TLS verification stays on.
//! 3. The fetch: GET with `Accept: application/json`, no proxy, redirects not followed, only a
//!    200 counts, the body is capped at [`MAX_DOCUMENT_BYTES`] while it streams, and the whole
//!    exchange (DNS, connect, TLS, headers, body) must finish within [`FETCH_TIMEOUT`].
//! 4. The document: a JSON object whose `client_id` is the URL exactly, with a `client_name`,
//!    valid `redirect_uris`, no `client_secret`, and `token_endpoint_auth_method` `none` (or
//!    absent): this server only has public clients for documents.
//!
//! Valid documents are cached per URL for `Cache-Control: max-age` clamped to
//! `[min_cache_seconds, max_cache_seconds]` (absent or unparseable: `min_cache_seconds`;
//! `no-store` or `no-cache`: not cached at all, since both forbid reuse without asking the origin
//! and this cache does not revalidate). Concurrent resolutions of one URL share a single fetch
//! (and its outcome, success or error) instead of stampeding the host.
//!
//! Anyone can send a client_id, so fetching is bounded too: a failed fetch is remembered for
//! [`FAILURE_TTL`] per URL, and per host when the host itself failed (DNS, connection, TLS,
//! timeout, special-use address), and answered from memory meanwhile; at most
//! `max_concurrent_fetches` fetches run at once; each client address (IPv6: its /64) may cause
//! `fetches_per_client_per_minute`. The caller learns only that a document could not be
//! retrieved, never why (refused, TLS, status, timeout): that would be a port-scan oracle. The
//! reason goes to the log.

mod cache;
mod document;
#[cfg(test)]
pub(crate) use document::parse_document;
mod fetch;
pub mod guard;
mod url;

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use consentry_protocol::ErrorCode;
use serde::Deserialize;

use crate::clients::truncate;
use crate::error::ApiError;

pub use fetch::CimdResolver;
pub use url::is_cimd_client_id;

/// The document size cap (the draft suggests 5 KB).
pub const MAX_DOCUMENT_BYTES: usize = 5 * 1024;
/// The whole fetch, from DNS resolution to the last body byte.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(3);
/// How many documents the cache holds at most; past that the oldest entry is evicted.
pub(crate) const MAX_CACHE_ENTRIES: usize = 10_000;
/// How long a failed fetch is remembered, for its URL and (for DNS, connection, TLS and timeout
/// failures) for its host: neither is fetched again before then.
pub const FAILURE_TTL: Duration = Duration::from_secs(60);
/// How many failed URLs and hosts are remembered at most (oldest forgotten first): an entry
/// holds a URL and an error naming it, a few KB at worst, like a cached document.
pub(crate) const MAX_FAILURE_ENTRIES: usize = 10_000;
/// How many client addresses the per-client fetch budget tracks at most.
pub(crate) const MAX_BUDGET_ENTRIES: usize = 100_000;

/// `[cimd]` in consentry.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CimdConfig {
    /// Resolve https client_ids at all.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `host:port` pairs that may be fetched even though they resolve to special-use addresses
    /// (tests and local development on loopback). TLS verification stays on.
    #[serde(default)]
    pub allow_hosts: Vec<String>,
    /// Hosts (exact, or `*.example.com`) whose clients the consent screen shows as verified.
    #[serde(default)]
    pub trusted_domains: Vec<String>,
    /// An extra CA certificate (PEM) to trust, e.g. a test CA.
    #[serde(default)]
    pub extra_ca_file: Option<PathBuf>,
    /// Cache bounds applied to the document's Cache-Control max-age.
    #[serde(default = "default_min_cache")]
    pub min_cache_seconds: u64,
    #[serde(default = "default_max_cache")]
    pub max_cache_seconds: u64,
    /// Document fetches in flight at once, for everyone together; more wait up to the fetch
    /// timeout for a slot, then fail.
    #[serde(default = "default_max_concurrent_fetches")]
    pub max_concurrent_fetches: u32,
    /// Document fetches (cache misses) a client address (IPv6: its /64) may cause per minute.
    #[serde(default = "default_fetches_per_client")]
    pub fetches_per_client_per_minute: u32,
}

fn yes() -> bool {
    true
}
fn default_min_cache() -> u64 {
    60
}
fn default_max_cache() -> u64 {
    86_400
}
fn default_max_concurrent_fetches() -> u32 {
    16
}
fn default_fetches_per_client() -> u32 {
    30
}

impl Default for CimdConfig {
    fn default() -> Self {
        CimdConfig {
            enabled: true,
            allow_hosts: Vec::new(),
            trusted_domains: Vec::new(),
            extra_ca_file: None,
            min_cache_seconds: default_min_cache(),
            max_cache_seconds: default_max_cache(),
            max_concurrent_fetches: default_max_concurrent_fetches(),
            fetches_per_client_per_minute: default_fetches_per_client(),
        }
    }
}

/// Why a client metadata document could not be used. The `Display` text names the rule that
/// failed and is meant for the person looking at the error page (it becomes the
/// `error_description` of a 400 `invalid_client`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CimdError {
    /// `[cimd] enabled = false`.
    Disabled { client_id: String },
    /// The client_id is not a URL this server fetches.
    InvalidUrl { client_id: String, reason: String },
    /// The host is, or resolves to, a special-use address.
    SpecialUseAddress {
        url: String,
        host: String,
        addr: IpAddr,
        range: Cow<'static, str>,
    },
    /// DNS, connection or TLS failure.
    Fetch { url: String, detail: String },
    /// The fetch took longer than [`FETCH_TIMEOUT`].
    Timeout { url: String, seconds: u64 },
    /// Any status but 200.
    Status { url: String, status: u16 },
    /// More than [`MAX_DOCUMENT_BYTES`].
    TooLarge { url: String, limit: usize },
    /// The document breaks a rule; `problem` completes "client metadata document at URL …".
    Invalid { url: String, problem: String },
    /// The document's host failed (DNS, connection, TLS, timeout, special-use address) less than
    /// [`FAILURE_TTL`] ago: not tried again yet.
    HostFailing { url: String, host: String },
    /// The calling address used up its budget of document fetches for the minute.
    Throttled { url: String, retry_after: Duration },
    /// Every fetch slot stayed busy for [`FETCH_TIMEOUT`].
    Busy { url: String },
}

impl fmt::Display for CimdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CimdError::Disabled { client_id } => write!(
                f,
                "client_id '{}' is a client metadata document URL, but this server does not \
                 resolve client metadata documents ([cimd] enabled = false)",
                truncate(client_id)
            ),
            CimdError::InvalidUrl { client_id, reason } => write!(
                f,
                "client_id '{}' is not a valid client metadata document URL: {reason}",
                truncate(client_id)
            ),
            CimdError::SpecialUseAddress {
                url,
                host,
                addr,
                range,
            } => {
                let addr_is_host =
                    host.trim_matches(['[', ']']).parse::<IpAddr>().ok() == Some(*addr);
                write!(
                    f,
                    "client metadata document at {} cannot be fetched: {} a special-use address \
                     {addr} ({range}; RFC 6890); only publicly routable addresses are fetched",
                    truncate(url),
                    if addr_is_host {
                        "its host is".to_owned()
                    } else {
                        format!("host {host} resolves to")
                    }
                )
            }
            CimdError::Fetch { url, detail } => write!(
                f,
                "client metadata document at {} could not be fetched: {detail}",
                truncate(url)
            ),
            CimdError::Timeout { url, seconds } => write!(
                f,
                "client metadata document at {} timed out after {seconds} s",
                truncate(url)
            ),
            CimdError::Status { url, status } if (300..400).contains(status) => write!(
                f,
                "client metadata document at {} returned HTTP {status}; redirects are not \
                 followed: the client_id must be the document's final URL",
                truncate(url)
            ),
            CimdError::Status { url, status } => write!(
                f,
                "client metadata document at {} returned HTTP {status}; only 200 is accepted",
                truncate(url)
            ),
            CimdError::TooLarge { url, limit } => write!(
                f,
                "client metadata document at {} is larger than {limit} bytes",
                truncate(url)
            ),
            CimdError::Invalid { url, problem } => {
                write!(f, "client metadata document at {} {problem}", truncate(url))
            }
            CimdError::HostFailing { url, host } => write!(
                f,
                "client metadata document at {} was not fetched: host {host} failed less than {} s ago",
                truncate(url),
                FAILURE_TTL.as_secs()
            ),
            CimdError::Throttled { url, retry_after } => write!(
                f,
                "client metadata document at {} was not fetched: this client address has used up \
                 its document fetches for the minute; try again in {} s",
                truncate(url),
                retry_after.as_secs().max(1)
            ),
            CimdError::Busy { url } => write!(
                f,
                "client metadata document at {} was not fetched: every fetch slot stayed busy for \
                 {} s",
                truncate(url),
                FETCH_TIMEOUT.as_secs()
            ),
        }
    }
}

impl std::error::Error for CimdError {}

impl CimdError {
    /// A failure of the fetch itself (DNS, address rules, connection, TLS, timeout, status, size):
    /// the caller is told only that the document could not be retrieved. Distinct answers would
    /// make the server a port and host scanner for anyone who can send a client_id.
    pub(crate) fn is_fetch_failure(&self) -> bool {
        matches!(
            self,
            CimdError::SpecialUseAddress { .. }
                | CimdError::Fetch { .. }
                | CimdError::Timeout { .. }
                | CimdError::Status { .. }
                | CimdError::TooLarge { .. }
                | CimdError::HostFailing { .. }
        )
    }

    /// A failure that says something about the whole host, not just this URL: the host is not
    /// tried again for [`FAILURE_TTL`].
    pub(crate) fn is_host_failure(&self) -> bool {
        matches!(
            self,
            CimdError::SpecialUseAddress { .. }
                | CimdError::Fetch { .. }
                | CimdError::Timeout { .. }
        )
    }
}

/// The caller's view: fetch failures all read alike (the detail is in the server log, written
/// when the fetch failed); a document that breaks a rule names the rule.
impl From<CimdError> for ApiError {
    fn from(e: CimdError) -> Self {
        match e {
            CimdError::Throttled { retry_after, .. } => ApiError::rate_limited(
                "too many client metadata documents fetched for this client address; try again later",
                retry_after,
            ),
            CimdError::Busy { .. } => {
                let mut e = ApiError::unavailable(
                    "too many client metadata documents are being fetched; try again shortly",
                );
                e.retry_after = Some(1);
                e
            }
            e if e.is_fetch_failure() => {
                let url = match &e {
                    CimdError::SpecialUseAddress { url, .. }
                    | CimdError::Fetch { url, .. }
                    | CimdError::Timeout { url, .. }
                    | CimdError::Status { url, .. }
                    | CimdError::TooLarge { url, .. }
                    | CimdError::HostFailing { url, .. } => url.as_str(),
                    _ => "",
                };
                ApiError::bad_request(
                    ErrorCode::InvalidClient,
                    format!(
                        "client metadata document at {} could not be retrieved (the server log has \
                         the cause); it is not fetched again for {} s",
                        truncate(url),
                        FAILURE_TTL.as_secs()
                    ),
                )
            }
            e => ApiError::bad_request(ErrorCode::InvalidClient, e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn errors_become_400_invalid_client() {
        let e = CimdError::Status {
            url: "https://a.example/c".into(),
            status: 302,
        };
        let msg = e.to_string();
        assert_eq!(
            msg,
            "client metadata document at https://a.example/c returned HTTP 302; redirects are \
             not followed: the client_id must be the document's final URL"
        );
        // The caller gets one text for every fetch failure; the detail is the log's.
        let api = ApiError::from(e);
        assert_eq!(api.status, axum::http::StatusCode::BAD_REQUEST);
        assert_eq!(api.code, ErrorCode::InvalidClient);
        let generic = "client metadata document at https://a.example/c could not be retrieved \
                       (the server log has the cause); it is not fetched again for 60 s";
        assert_eq!(api.description, generic);
        for e in [
            CimdError::Fetch {
                url: "https://a.example/c".into(),
                detail: "connection refused".into(),
            },
            CimdError::Timeout {
                url: "https://a.example/c".into(),
                seconds: 3,
            },
            CimdError::TooLarge {
                url: "https://a.example/c".into(),
                limit: 5120,
            },
            CimdError::SpecialUseAddress {
                url: "https://a.example/c".into(),
                host: "a.example".into(),
                addr: ip("10.0.0.5"),
                range: Cow::Borrowed("private-use 10.0.0.0/8"),
            },
            CimdError::HostFailing {
                url: "https://a.example/c".into(),
                host: "a.example".into(),
            },
        ] {
            assert_eq!(ApiError::from(e).description, generic);
        }
        // A document that breaks a rule says which.
        let e = CimdError::Invalid {
            url: "https://a.example/c".into(),
            problem: "has no client_name; it is shown on the consent screen".into(),
        };
        assert_eq!(ApiError::from(e.clone()).description, e.to_string());
        let api = ApiError::from(CimdError::Throttled {
            url: "https://a.example/c".into(),
            retry_after: Duration::from_secs(42),
        });
        assert_eq!(api.status, axum::http::StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(api.retry_after, Some(42));
        let e = CimdError::SpecialUseAddress {
            url: "https://10.0.0.5/c".into(),
            host: "10.0.0.5".into(),
            addr: ip("10.0.0.5"),
            range: Cow::Borrowed("private-use 10.0.0.0/8"),
        };
        assert_eq!(
            e.to_string(),
            "client metadata document at https://10.0.0.5/c cannot be fetched: its host is a \
             special-use address 10.0.0.5 (private-use 10.0.0.0/8; RFC 6890); only publicly \
             routable addresses are fetched"
        );
    }
}
