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

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use consentry_protocol::ErrorCode;
use consentry_protocol::authorize::validate_redirect_uri;
use consentry_protocol::split_uri;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{ACCEPT, CACHE_CONTROL, HeaderMap};
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::OnceCell;

use crate::clients::{Client, ClientSource, truncate};
use crate::error::ApiError;
use crate::limits::{ExpiringMap, RateLimiter};

/// The document size cap (the draft suggests 5 KB).
pub const MAX_DOCUMENT_BYTES: usize = 5 * 1024;
/// The whole fetch, from DNS resolution to the last body byte.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(3);
/// How many documents the cache holds at most; past that the oldest entry is evicted.
const MAX_CACHE_ENTRIES: usize = 10_000;
/// How long a failed fetch is remembered, for its URL and (for DNS, connection, TLS and timeout
/// failures) for its host: neither is fetched again before then.
pub const FAILURE_TTL: Duration = Duration::from_secs(60);
/// How many failed URLs and hosts are remembered at most (oldest forgotten first): an entry
/// holds a URL and an error naming it, a few KB at worst, like a cached document.
const MAX_FAILURE_ENTRIES: usize = 10_000;
/// How many client addresses the per-client fetch budget tracks at most.
const MAX_BUDGET_ENTRIES: usize = 100_000;
/// Longest client_id URL considered (the protocol crate's bound for URIs).
const MAX_URL_BYTES: usize = 2048;
/// Longest `client_name` shown on a consent screen.
const MAX_CLIENT_NAME_CHARS: usize = 200;

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

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

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
    fn is_fetch_failure(&self) -> bool {
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
    fn is_host_failure(&self) -> bool {
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

// ---------------------------------------------------------------------------------------------
// The client_id URL
// ---------------------------------------------------------------------------------------------

/// Whether `id` is a client_id this server resolves as a metadata document: an `https` URL with
/// a path other than `/`, no fragment, no userinfo, no `.`/`..` segments, already in canonical
/// form. A query is allowed (the draft says MAY). [`CimdResolver::resolve`] says which rule an
/// id breaks.
pub fn is_cimd_client_id(id: &str) -> bool {
    check_url(id).is_ok()
}

/// The parsed URL, or why `id` is not a metadata document URL (completing "is not a valid client
/// metadata document URL: …").
fn check_url(id: &str) -> Result<Url, String> {
    if id.len() > MAX_URL_BYTES {
        return Err(format!("it is longer than {MAX_URL_BYTES} bytes"));
    }
    let Some(after_scheme) = id.strip_prefix("https://") else {
        return Err("it must start with 'https://'".into());
    };
    if !id.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return Err("it contains spaces, control or non-ASCII characters".into());
    }
    if id.contains('#') {
        return Err("it must not contain a fragment ('#')".into());
    }
    if id.contains('\\') {
        return Err("it must not contain a backslash".into());
    }
    let authority = &after_scheme[..after_scheme.find(['/', '?']).unwrap_or(after_scheme.len())];
    if authority.contains('@') {
        return Err("it must not contain a username or password ('user@host')".into());
    }
    let Some(parts) = split_uri(id) else {
        return Err("its host or port is malformed".into());
    };
    let path = &parts.rest[..parts.rest.find('?').unwrap_or(parts.rest.len())];
    if path.is_empty() || path == "/" {
        return Err(
            "it must have a path after the host (e.g. 'https://example.com/client.json')".into(),
        );
    }
    if path.split('/').any(|seg| {
        let seg = seg.to_ascii_lowercase().replace("%2e", ".");
        seg == "." || seg == ".."
    }) {
        return Err("it must not contain '.' or '..' path segments".into());
    }
    let url = Url::parse(id).map_err(|e| format!("it is not a valid URL ({e})"))?;
    if url.as_str() != id {
        return Err(format!(
            "it is not in canonical form (it would be fetched as '{}'); use that exact string",
            truncate(url.as_str())
        ));
    }
    Ok(url)
}

/// The host of a checked URL as an IP address, if it is an IP literal. (`Url` has already turned
/// every IPv4 spelling, `0x7f.1` and the like, into a dotted quad, and `check_url` refused any
/// URL it had to rewrite; reqwest connects to literals without asking the resolver.)
fn ip_literal(host: &str) -> Option<IpAddr> {
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
        None => host.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
    }
}

// ---------------------------------------------------------------------------------------------
// Special-use addresses
// ---------------------------------------------------------------------------------------------

/// If `ip` must not be fetched from, the special-purpose block it falls in.
///
/// Hand-written because std's `IpAddr::is_global` is unstable (rust-lang/rust#27709), and the
/// stable predicates (`is_private`, `is_loopback`, …) cover only part of the registries. Sources:
/// RFC 6890, the IANA IPv4 and IPv6 Special-Purpose Address Registries. Every block is refused
/// whole, including the few sub-blocks the registry marks globally reachable (e.g. inside
/// 2001::/23): a metadata document has no business living there. IPv6 forms that embed an IPv4
/// address the packets will actually reach (IPv4-mapped, NAT64, 6to4) are judged by that
/// IPv4 address.
fn special_use(ip: IpAddr) -> Option<Cow<'static, str>> {
    match ip {
        IpAddr::V4(v4) => special_use_v4(v4).map(Cow::Borrowed),
        IpAddr::V6(v6) => special_use_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn in_v6(ip: Ipv6Addr, net: [u16; 8], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix)
    };
    u128::from(ip) & mask == u128::from(Ipv6Addr::from(net)) & mask
}

const V4_SPECIAL: &[([u8; 4], u32, &str)] = &[
    ([0, 0, 0, 0], 8, "\"this network\" 0.0.0.0/8"),
    ([10, 0, 0, 0], 8, "private-use 10.0.0.0/8"),
    (
        [100, 64, 0, 0],
        10,
        "shared address space (CGNAT) 100.64.0.0/10",
    ),
    ([127, 0, 0, 0], 8, "loopback 127.0.0.0/8"),
    ([169, 254, 0, 0], 16, "link-local 169.254.0.0/16"),
    ([172, 16, 0, 0], 12, "private-use 172.16.0.0/12"),
    ([192, 0, 0, 0], 24, "IETF protocol assignments 192.0.0.0/24"),
    (
        [192, 0, 2, 0],
        24,
        "documentation (TEST-NET-1) 192.0.2.0/24",
    ),
    ([192, 88, 99, 0], 24, "6to4 relay anycast 192.88.99.0/24"),
    ([192, 168, 0, 0], 16, "private-use 192.168.0.0/16"),
    ([198, 18, 0, 0], 15, "benchmarking 198.18.0.0/15"),
    (
        [198, 51, 100, 0],
        24,
        "documentation (TEST-NET-2) 198.51.100.0/24",
    ),
    (
        [203, 0, 113, 0],
        24,
        "documentation (TEST-NET-3) 203.0.113.0/24",
    ),
    ([224, 0, 0, 0], 4, "multicast 224.0.0.0/4"),
    (
        [255, 255, 255, 255],
        32,
        "limited broadcast 255.255.255.255",
    ),
    ([240, 0, 0, 0], 4, "reserved 240.0.0.0/4"),
];

fn special_use_v4(ip: Ipv4Addr) -> Option<&'static str> {
    V4_SPECIAL
        .iter()
        .find(|(net, prefix, _)| in_v4(ip, *net, *prefix))
        .map(|(_, _, name)| *name)
}

const V6_SPECIAL: &[([u16; 8], u32, &str)] = &[
    ([0, 0, 0, 0, 0, 0, 0, 0], 128, "unspecified ::"),
    ([0, 0, 0, 0, 0, 0, 0, 1], 128, "loopback ::1"),
    // Deprecated IPv4-compatible addresses (RFC 4291 §2.5.5.1); includes :: and ::1.
    (
        [0, 0, 0, 0, 0, 0, 0, 0],
        96,
        "IPv4-compatible (deprecated) ::/96",
    ),
    (
        [0x64, 0xff9b, 1, 0, 0, 0, 0, 0],
        48,
        "local-use NAT64 64:ff9b:1::/48",
    ),
    ([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "discard-only 100::/64"),
    (
        [0x2001, 0, 0, 0, 0, 0, 0, 0],
        23,
        "IETF protocol assignments 2001::/23",
    ),
    (
        [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0],
        32,
        "documentation 2001:db8::/32",
    ),
    ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, "documentation 3fff::/20"),
    (
        [0x5f00, 0, 0, 0, 0, 0, 0, 0],
        16,
        "segment routing SIDs 5f00::/16",
    ),
    ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "unique-local fc00::/7"),
    ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "link-local fe80::/10"),
    (
        [0xfec0, 0, 0, 0, 0, 0, 0, 0],
        10,
        "site-local (deprecated) fec0::/10",
    ),
    ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "multicast ff00::/8"),
];

fn special_use_v6(ip: Ipv6Addr) -> Option<Cow<'static, str>> {
    let bits = u128::from(ip);
    let embedded = |form: &str, v4: Ipv4Addr| {
        special_use_v4(v4).map(|range| Cow::Owned(format!("{form} of {v4}, {range}")))
    };
    // IPv4-mapped ::ffff:0:0/96: the connection goes to the embedded IPv4 address.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return embedded("IPv4-mapped ::ffff:0:0/96", v4);
    }
    // NAT64 well-known prefix 64:ff9b::/96 (RFC 6052): translated to the embedded IPv4 address.
    if in_v6(ip, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96) {
        return embedded(
            "NAT64 64:ff9b::/96",
            Ipv4Addr::from((bits & 0xffff_ffff) as u32),
        );
    }
    // 6to4 2002::/16 (RFC 3056): bits 16..48 are the IPv4 address of the tunnel end.
    if in_v6(ip, [0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        let v4 = Ipv4Addr::from(((bits >> 80) & 0xffff_ffff) as u32);
        return embedded("6to4 2002::/16", v4);
    }
    V6_SPECIAL
        .iter()
        .find(|(net, prefix, _)| in_v6(ip, *net, *prefix))
        .map(|(_, _, name)| Cow::Borrowed(*name))
}

// ---------------------------------------------------------------------------------------------
// The guarded DNS resolver
// ---------------------------------------------------------------------------------------------

/// Where connections may go once the special-use guard has let an address through.
///
/// This is a second, independent check at the same two places the guard sits (the resolver
/// wrapper and the IP-literal check), with its own trivially simple rule. In production
/// ([`CimdResolver::new`]) it lets everything through: the guard has decided. Under
/// [`CimdResolver::with_resolver`] — the test constructor — it allows loopback only, so a test
/// that maps `evil.test` to 10.0.0.5 can never send a packet there, even if a future edit breaks
/// the guard: the test then fails with this policy's error instead of the guard's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConnectPolicy {
    Any,
    LoopbackOnly,
}

impl ConnectPolicy {
    fn permits(self, ip: IpAddr) -> bool {
        match self {
            ConnectPolicy::Any => true,
            ConnectPolicy::LoopbackOnly => ip.to_canonical().is_loopback(),
        }
    }
}

/// What the guarded resolver refused; travels inside reqwest's error chain and is turned back
/// into a [`CimdError`] by [`CimdResolver`].
#[derive(Debug, Clone)]
enum GuardError {
    Lookup {
        host: String,
        detail: String,
    },
    NoAddress {
        host: String,
    },
    SpecialUse {
        host: String,
        addr: IpAddr,
        range: Cow<'static, str>,
    },
    Policy {
        host: String,
        addr: IpAddr,
    },
}

impl fmt::Display for GuardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuardError::Lookup { host, detail } => {
                write!(f, "host {host} could not be resolved: {detail}")
            }
            GuardError::NoAddress { host } => write!(f, "host {host} resolves to no address"),
            GuardError::SpecialUse { host, addr, range } => {
                write!(
                    f,
                    "host {host} resolves to a special-use address {addr} ({range})"
                )
            }
            GuardError::Policy { host, addr } => write!(
                f,
                "refusing to connect to {addr} (host {host}): this resolver, built with \
                 CimdResolver::with_resolver for tests, connects to loopback addresses only"
            ),
        }
    }
}

impl std::error::Error for GuardError {}

/// The only source of addresses for host names: the inner resolver's answer is checked in full
/// before reqwest sees any of it, so the addresses checked are exactly the ones connected to
/// (no second lookup, no DNS-rebinding window). One refused address refuses the whole answer.
/// Dropping it and connecting to the public ones would also be safe for this connection, but
/// refusing is simpler to reason about, gives the document's publisher one clear error instead
/// of fetches that succeed or fail depending on the answer's order, and a legitimate document
/// host has no reason to publish internal addresses.
struct GuardedResolver {
    inner: Arc<dyn Resolve>,
    /// Host names (lower-case) exempt from the special-use check: the `allow_hosts` names, set
    /// only on the client used for requests whose host *and* port matched an entry.
    exempt: Vec<String>,
    policy: ConnectPolicy,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_ascii_lowercase();
        let exempt = self.exempt.contains(&host);
        let policy = self.policy;
        let lookup = self.inner.resolve(name);
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = match lookup.await {
                Ok(addrs) => addrs.collect(),
                Err(e) => {
                    return Err(Box::new(GuardError::Lookup {
                        host,
                        detail: e.to_string(),
                    }) as BoxError);
                }
            };
            check_addresses(&host, &addrs, exempt, policy).map_err(|e| Box::new(e) as BoxError)?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

fn check_addresses(
    host: &str,
    addrs: &[SocketAddr],
    exempt: bool,
    policy: ConnectPolicy,
) -> Result<(), GuardError> {
    if addrs.is_empty() {
        return Err(GuardError::NoAddress {
            host: host.to_owned(),
        });
    }
    if !exempt {
        for a in addrs {
            if let Some(range) = special_use(a.ip()) {
                return Err(GuardError::SpecialUse {
                    host: host.to_owned(),
                    addr: a.ip(),
                    range,
                });
            }
        }
    }
    for a in addrs {
        if !policy.permits(a.ip()) {
            return Err(GuardError::Policy {
                host: host.to_owned(),
                addr: a.ip(),
            });
        }
    }
    Ok(())
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Production DNS: the system resolver (getaddrinfo on tokio's blocking pool).
struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The cache
// ---------------------------------------------------------------------------------------------

struct CacheEntry {
    client: Client,
    expires: Instant,
    inserted: Instant,
}

struct Cache {
    map: HashMap<String, CacheEntry>,
    cap: usize,
}

impl Cache {
    fn new(cap: usize) -> Cache {
        Cache {
            map: HashMap::new(),
            cap,
        }
    }

    fn get(&mut self, url: &str, now: Instant) -> Option<Client> {
        match self.map.get(url) {
            Some(e) if e.expires > now => Some(e.client.clone()),
            Some(_) => {
                self.map.remove(url);
                None
            }
            None => None,
        }
    }

    /// Insert, evicting expired entries and then the oldest one when full. The O(n) sweep runs
    /// only when the cache is full, so it is amortised over many inserts.
    fn insert(&mut self, url: String, client: Client, ttl: Duration, now: Instant) {
        if self.cap == 0 {
            return;
        }
        if self.map.len() >= self.cap && !self.map.contains_key(&url) {
            self.map.retain(|_, e| e.expires > now);
            if self.map.len() >= self.cap
                && let Some(oldest) = self
                    .map
                    .iter()
                    .min_by_key(|(_, e)| e.inserted)
                    .map(|(k, _)| k.clone())
            {
                self.map.remove(&oldest);
            }
        }
        self.map.insert(
            url,
            CacheEntry {
                client,
                expires: now + ttl,
                inserted: now,
            },
        );
    }
}

/// How long to keep a valid document, from its `Cache-Control`; `None`: do not cache.
fn cache_ttl(headers: &HeaderMap, min: u64, max: u64) -> Option<Duration> {
    let mut max_age: Option<u64> = None;
    for value in headers.get_all(CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',') {
            let (name, arg) = match directive.split_once('=') {
                Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                None => (directive.trim(), None),
            };
            if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
                return None;
            }
            if name.eq_ignore_ascii_case("max-age")
                && let Some(arg) = arg
                && !arg.is_empty()
                && arg.bytes().all(|b| b.is_ascii_digit())
            {
                // Too many digits for u64: "a very long time" (RFC 9111 §1.2.2), clamped below.
                let secs = arg.parse::<u64>().unwrap_or(u64::MAX);
                max_age = Some(max_age.map_or(secs, |m| m.min(secs)));
            }
        }
    }
    let secs = max_age.unwrap_or(min).clamp(min, max);
    (secs > 0).then(|| Duration::from_secs(secs))
}

// ---------------------------------------------------------------------------------------------
// The document
// ---------------------------------------------------------------------------------------------

/// Whether `host` (as in a URL: lower-case, IPv6 in brackets) matches a `trusted_domains` entry:
/// exactly, or `*.suffix` for any subdomain of `suffix` (not `suffix` itself).
fn is_trusted(host: &str, trusted: &[String]) -> bool {
    let host = host.to_ascii_lowercase();
    trusted.iter().any(|t| {
        let t = t.trim().to_ascii_lowercase();
        match t.strip_prefix("*.") {
            Some(suffix) => host
                .strip_suffix(suffix)
                .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
            None => host == t,
        }
    })
}

/// Validate a fetched document; `Err` completes "client metadata document at URL …".
fn parse_document(
    url: &str,
    host: &str,
    body: &[u8],
    trusted: &[String],
) -> Result<Client, String> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| format!("is not valid JSON: {e}"))?;
    let Value::Object(doc) = doc else {
        return Err(format!("is not a JSON object (found {})", json_kind(&doc)));
    };
    let client_id = match doc.get("client_id") {
        None => return Err("has no client_id; it must be the document's own URL".into()),
        Some(Value::String(s)) => s,
        Some(other) => {
            return Err(format!(
                "has a client_id that is {}, not a string",
                json_kind(other)
            ));
        }
    };
    if client_id != url {
        return Err(format!(
            "has client_id '{}', which differs from the URL; it must be exactly '{}'",
            truncate(client_id),
            truncate(url)
        ));
    }
    for secret in ["client_secret", "client_secret_expires_at"] {
        if doc.contains_key(secret) {
            return Err(format!(
                "carries {secret}; a client identified by a metadata document is a public client \
                 and cannot have a shared secret"
            ));
        }
    }
    let auth_method = match doc.get("token_endpoint_auth_method") {
        None | Some(Value::Null) => "none",
        Some(Value::String(m)) => m.as_str(),
        Some(other) => {
            return Err(format!(
                "has a token_endpoint_auth_method that is {}, not a string",
                json_kind(other)
            ));
        }
    };
    match auth_method {
        "none" => {}
        "client_secret_basic" | "client_secret_post" | "client_secret_jwt" => {
            return Err(format!(
                "uses token_endpoint_auth_method '{auth_method}', a shared-secret method, which a \
                 metadata document must not use; use 'none'"
            ));
        }
        other => {
            return Err(format!(
                "uses token_endpoint_auth_method '{}', which this server does not support for \
                 metadata documents; use 'none'",
                truncate(other)
            ));
        }
    }
    let client_name = match doc.get("client_name") {
        None | Some(Value::Null) => {
            return Err("has no client_name; it is shown on the consent screen".into());
        }
        Some(Value::String(s)) => s.trim(),
        Some(other) => {
            return Err(format!(
                "has a client_name that is {}, not a string",
                json_kind(other)
            ));
        }
    };
    if client_name.is_empty() {
        return Err("has an empty client_name".into());
    }
    if client_name.chars().count() > MAX_CLIENT_NAME_CHARS {
        return Err(format!(
            "has a client_name longer than {MAX_CLIENT_NAME_CHARS} characters"
        ));
    }
    if client_name.chars().any(is_deceptive_char) {
        return Err("has a client_name with control or bidirectional-formatting characters".into());
    }
    let redirect_uris = match doc.get("redirect_uris") {
        None | Some(Value::Null) => return Err("has no redirect_uris".into()),
        Some(Value::Array(a)) => a,
        Some(other) => {
            return Err(format!(
                "has redirect_uris that is {}, not an array of strings",
                json_kind(other)
            ));
        }
    };
    if redirect_uris.is_empty() {
        return Err("has an empty redirect_uris array".into());
    }
    let mut uris = Vec::with_capacity(redirect_uris.len());
    for (i, v) in redirect_uris.iter().enumerate() {
        let Value::String(s) = v else {
            return Err(format!(
                "has redirect_uris[{i}] that is {}, not a string",
                json_kind(v)
            ));
        };
        uris.push(s.clone());
    }
    // The same rule as Dynamic Client Registration: no javascript:/data:/… scheme, http only on
    // loopback, private-use schemes for native apps.
    let application_type = crate::http::register::default_application_type(&uris);
    for (i, uri) in uris.iter().enumerate() {
        if let Some(problem) = crate::http::register::redirect_uri_problem(uri, application_type) {
            return Err(format!("has an invalid redirect_uris[{i}]: {problem}"));
        }
    }
    let client_uri = optional_https_uri(&doc, "client_uri")?;
    let logo_uri = optional_https_uri(&doc, "logo_uri")?;
    check_grant_types(doc.get("grant_types"))?;
    let scope = match doc.get("scope") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.split_ascii_whitespace().map(str::to_owned).collect()),
        Some(other) => {
            return Err(format!(
                "has a scope that is {}, not a space-separated string",
                json_kind(other)
            ));
        }
    };
    // A document whose codes all go to loopback serves whatever program runs on the user's
    // machine (any of them can use its client_id): no host vouches for that.
    let all_loopback = uris.iter().all(|u| {
        split_uri(u).is_some_and(|p| p.host.is_some_and(consentry_protocol::is_loopback_host))
    });
    let verified = is_trusted(host, trusted) && !all_loopback;
    Ok(Client {
        client_id: client_id.clone(),
        client_name: client_name.to_owned(),
        redirect_uris: uris,
        token_endpoint_auth_method: "none".into(),
        client_uri,
        logo_uri,
        verified,
        secret_hash: None,
        // A client that gets codes may refresh (every MCP client expects refresh tokens), as for
        // dynamically registered clients.
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        scope,
        source: ClientSource::MetadataDocument,
    })
}

/// `grant_types`, when present, must include `authorization_code` and must not ask for
/// `client_credentials` (a public client cannot authenticate). Other values are ignored: one
/// document serves many authorization servers, which may support more grants than this one.
fn check_grant_types(v: Option<&Value>) -> Result<(), String> {
    let grants = match v {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Array(a)) => a,
        Some(other) => {
            return Err(format!(
                "has grant_types that is {}, not an array of strings",
                json_kind(other)
            ));
        }
    };
    let mut has_code = false;
    for g in grants {
        match g.as_str() {
            Some("authorization_code") => has_code = true,
            Some("client_credentials") => {
                return Err(
                    "lists grant_types 'client_credentials', which needs a client \
                            secret; a metadata-document client is a public client"
                        .into(),
                );
            }
            Some(_) => {}
            None => {
                return Err(format!(
                    "has a grant_types entry that is {}, not a string",
                    json_kind(g)
                ));
            }
        }
    }
    if has_code {
        Ok(())
    } else {
        Err(
            "has grant_types without 'authorization_code', the only grant a metadata-document \
             client can use here"
                .into(),
        )
    }
}

/// `client_uri` / `logo_uri`: shown (as a link, an image) on the consent screen, so https only.
fn optional_https_uri(
    doc: &serde_json::Map<String, Value>,
    field: &'static str,
) -> Result<Option<String>, String> {
    match doc.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            let ok = s.starts_with("https://")
                && validate_redirect_uri(s).is_ok()
                && split_uri(s).is_some_and(|p| p.host.is_some());
            if ok {
                Ok(Some(s.clone()))
            } else {
                Err(format!(
                    "has {field} '{}', which is not an absolute https URL without a fragment",
                    truncate(s)
                ))
            }
        }
        Some(other) => Err(format!(
            "has a {field} that is {}, not a string",
            json_kind(other)
        )),
    }
}

fn is_deceptive_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

// ---------------------------------------------------------------------------------------------
// The resolver
// ---------------------------------------------------------------------------------------------

/// One allowed `host:port`, normalised as `Url` writes hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AllowedHost {
    host: String,
    port: u16,
}

fn parse_allow_host(entry: &str) -> anyhow::Result<AllowedHost> {
    let bad = || {
        anyhow::anyhow!(
            "cimd.allow_hosts entry '{entry}' must be host:port, e.g. '127.0.0.1:8443' or \
             '[::1]:8443'"
        )
    };
    let (host, port) = entry.trim().rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || host.contains(['/', '?', '#', '@']) {
        return Err(bad());
    }
    let url = Url::parse(&format!("https://{host}/")).map_err(|_| bad())?;
    let host = url.host_str().ok_or_else(bad)?.to_ascii_lowercase();
    Ok(AllowedHost { host, port })
}

type Shared = Arc<OnceCell<Result<Client, CimdError>>>;

/// Resolves metadata-document client_ids: fetch under the SSRF guard, validate, cache.
pub struct CimdResolver {
    enabled: bool,
    /// Every request whose host:port is not in `allow_hosts`.
    guarded: reqwest::Client,
    /// Requests whose host:port is in `allow_hosts` (special-use check lifted for those names).
    allowed: Option<reqwest::Client>,
    allow_hosts: Vec<AllowedHost>,
    trusted_domains: Vec<String>,
    policy: ConnectPolicy,
    min_cache: u64,
    max_cache: u64,
    cache: Mutex<Cache>,
    in_flight: Mutex<HashMap<String, Shared>>,
    /// Failed fetches by URL (the error, answered again until it expires).
    failed_urls: Mutex<ExpiringMap<String, CimdError>>,
    /// Hosts whose last fetch failed at the DNS, connection, TLS or timeout level.
    failed_hosts: Mutex<ExpiringMap<String, ()>>,
    /// Fetches in flight, for everyone.
    fetch_slots: tokio::sync::Semaphore,
    /// Fetches per client address (`client_ip::rate_key`) per minute.
    per_client: RateLimiter<IpAddr>,
    fetches_per_client: u32,
}

impl fmt::Debug for CimdResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CimdResolver")
            .field("enabled", &self.enabled)
            .field("allow_hosts", &self.allow_hosts)
            .field("trusted_domains", &self.trusted_domains)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl CimdResolver {
    /// The production resolver: system DNS, every connection under the special-use guard.
    pub fn new(cfg: &CimdConfig) -> anyhow::Result<Self> {
        Self::build(cfg, Arc::new(SystemResolver), ConnectPolicy::Any)
    }

    /// For tests: names are resolved by `resolver` instead of the system (its answers go
    /// through the same special-use guard), and connections are only ever made to loopback
    /// addresses — anything else fails before connecting, with an error saying so. A test can
    /// thus map `evil.test` to 10.0.0.5 and be sure that, even with a broken guard, nothing is
    /// sent there.
    pub fn with_resolver(cfg: &CimdConfig, resolver: Arc<dyn Resolve>) -> anyhow::Result<Self> {
        Self::build(cfg, resolver, ConnectPolicy::LoopbackOnly)
    }

    fn build(
        cfg: &CimdConfig,
        dns: Arc<dyn Resolve>,
        policy: ConnectPolicy,
    ) -> anyhow::Result<Self> {
        // reqwest on rustls without a built-in provider panics without this (idempotent).
        crate::install_crypto_providers();
        if cfg.min_cache_seconds > cfg.max_cache_seconds {
            anyhow::bail!(
                "cimd.min_cache_seconds ({}) must not exceed cimd.max_cache_seconds ({})",
                cfg.min_cache_seconds,
                cfg.max_cache_seconds
            );
        }
        let allow_hosts = cfg
            .allow_hosts
            .iter()
            .map(|e| parse_allow_host(e))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let roots = match &cfg.extra_ca_file {
            Some(path) => {
                let pem = std::fs::read(path).with_context(|| {
                    format!("cimd.extra_ca_file: cannot read {}", path.display())
                })?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem).with_context(|| {
                    format!(
                        "cimd.extra_ca_file: {} is not PEM certificates",
                        path.display()
                    )
                })?;
                if certs.is_empty() {
                    anyhow::bail!(
                        "cimd.extra_ca_file: {} contains no certificate",
                        path.display()
                    );
                }
                certs
            }
            None => Vec::new(),
        };
        let http = |exempt: Vec<String>| -> anyhow::Result<reqwest::Client> {
            let resolver = GuardedResolver {
                inner: dns.clone(),
                exempt,
                policy,
            };
            let mut b = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .https_only(true)
                .dns_resolver(Arc::new(resolver))
                .connect_timeout(FETCH_TIMEOUT)
                .pool_idle_timeout(Duration::from_secs(30))
                .user_agent(concat!(
                    "consentry/",
                    env!("CARGO_PKG_VERSION"),
                    " (client metadata document fetcher)"
                ));
            for c in &roots {
                b = b.add_root_certificate(c.clone());
            }
            b.build().context("cimd: building the HTTP client")
        };
        let guarded = http(Vec::new())?;
        let allowed = if allow_hosts.is_empty() {
            None
        } else {
            Some(http(allow_hosts.iter().map(|a| a.host.clone()).collect())?)
        };
        Ok(CimdResolver {
            enabled: cfg.enabled,
            guarded,
            allowed,
            allow_hosts,
            trusted_domains: cfg.trusted_domains.clone(),
            policy,
            min_cache: cfg.min_cache_seconds,
            max_cache: cfg.max_cache_seconds,
            cache: Mutex::new(Cache::new(MAX_CACHE_ENTRIES)),
            in_flight: Mutex::new(HashMap::new()),
            failed_urls: Mutex::new(ExpiringMap::new(FAILURE_TTL, MAX_FAILURE_ENTRIES)),
            failed_hosts: Mutex::new(ExpiringMap::new(FAILURE_TTL, MAX_FAILURE_ENTRIES)),
            fetch_slots: tokio::sync::Semaphore::new(cfg.max_concurrent_fetches.max(1) as usize),
            per_client: RateLimiter::new(Duration::from_secs(60), MAX_BUDGET_ENTRIES),
            fetches_per_client: cfg.fetches_per_client_per_minute,
        })
    }

    /// The client a metadata-document client_id stands for: from the cache, or fetched and
    /// validated (see the module documentation for every rule). Concurrent calls for one URL
    /// share one fetch.
    pub async fn resolve(&self, client_id: &str) -> Result<Client, CimdError> {
        self.resolve_for(client_id, None).await
    }

    /// [`CimdResolver::resolve`] on behalf of the client at `caller` (`None`: no per-client
    /// budget, e.g. outside a request). Served from the cache, or from the memory of a recent
    /// failure of the URL or its host, without fetching; a fetch counts against the caller's
    /// budget (`fetches_per_client_per_minute`) and waits for one of `max_concurrent_fetches`.
    pub async fn resolve_for(
        &self,
        client_id: &str,
        caller: Option<IpAddr>,
    ) -> Result<Client, CimdError> {
        if !self.enabled {
            return Err(CimdError::Disabled {
                client_id: client_id.to_owned(),
            });
        }
        let url = check_url(client_id).map_err(|reason| CimdError::InvalidUrl {
            client_id: client_id.to_owned(),
            reason,
        })?;
        let now = Instant::now();
        if let Some(c) = lock(&self.cache).get(client_id, now) {
            return Ok(c);
        }
        if let Some((_, e)) = lock(&self.failed_urls).get_mut(&client_id.to_owned(), now) {
            return Err(e.clone());
        }
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        if lock(&self.failed_hosts).get_mut(&host, now).is_some() {
            return Err(CimdError::HostFailing {
                url: client_id.to_owned(),
                host,
            });
        }
        if let Some(ip) = caller
            && let Err(retry_after) = self.per_client.hit(
                &crate::http::client_ip::rate_key(ip),
                self.fetches_per_client,
            )
        {
            return Err(CimdError::Throttled {
                url: client_id.to_owned(),
                retry_after,
            });
        }
        let cell: Shared = lock(&self.in_flight)
            .entry(client_id.to_owned())
            .or_default()
            .clone();
        // Removes the in-flight entry however this call ends (also when it is cancelled), so a
        // finished outcome — errors included — is never served to a later call.
        let _done = InFlightGuard {
            map: &self.in_flight,
            key: client_id,
            cell: cell.clone(),
        };
        cell.get_or_init(|| self.fetch_and_cache(client_id, &url))
            .await
            .clone()
    }

    async fn fetch_and_cache(&self, client_id: &str, url: &Url) -> Result<Client, CimdError> {
        // A call that finished just before this one registered may have filled the cache.
        if let Some(c) = lock(&self.cache).get(client_id, Instant::now()) {
            return Ok(c);
        }
        let slot = tokio::time::timeout(FETCH_TIMEOUT, self.fetch_slots.acquire()).await;
        let Ok(Ok(_slot)) = slot else {
            tracing::warn!(
                client_id = %truncate(client_id),
                "client metadata document not fetched: every fetch slot busy"
            );
            return Err(CimdError::Busy {
                url: client_id.to_owned(),
            });
        };
        let (client, ttl) = match self.fetch(client_id, url).await {
            Ok(fetched) => fetched,
            Err(e) => {
                // The only place the cause is told: callers get one text for every fetch failure.
                tracing::info!(client_id = %truncate(client_id), "client metadata document refused: {e}");
                let now = Instant::now();
                if e.is_host_failure() {
                    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
                    lock(&self.failed_hosts).insert(host, (), now);
                }
                lock(&self.failed_urls).insert(client_id.to_owned(), e.clone(), now);
                return Err(e);
            }
        };
        if let Some(ttl) = ttl {
            lock(&self.cache).insert(client_id.to_owned(), client.clone(), ttl, Instant::now());
        }
        Ok(client)
    }

    async fn fetch(&self, id: &str, url: &Url) -> Result<(Client, Option<Duration>), CimdError> {
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let port = url.port_or_known_default().unwrap_or(443);
        let allowed = self
            .allow_hosts
            .iter()
            .any(|a| a.host == host && a.port == port);
        // IP literals never reach the resolver: same guard and policy here.
        if let Some(ip) = ip_literal(&host) {
            if !allowed && let Some(range) = special_use(ip) {
                return Err(CimdError::SpecialUseAddress {
                    url: id.to_owned(),
                    host,
                    addr: ip,
                    range,
                });
            }
            if !self.policy.permits(ip) {
                return Err(guard_to_cimd(
                    id,
                    GuardError::Policy {
                        host: host.clone(),
                        addr: ip,
                    },
                ));
            }
        }
        let http = match (&self.allowed, allowed) {
            (Some(c), true) => c,
            _ => &self.guarded,
        };
        let exchange = async {
            let mut resp = http
                .get(url.clone())
                .header(ACCEPT, "application/json")
                .send()
                .await
                .map_err(|e| send_error(id, &e))?;
            if resp.status() != StatusCode::OK {
                return Err(CimdError::Status {
                    url: id.to_owned(),
                    status: resp.status().as_u16(),
                });
            }
            let too_large = || CimdError::TooLarge {
                url: id.to_owned(),
                limit: MAX_DOCUMENT_BYTES,
            };
            if resp
                .content_length()
                .is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64)
            {
                return Err(too_large());
            }
            let ttl = cache_ttl(resp.headers(), self.min_cache, self.max_cache);
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| send_error(id, &e))? {
                if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            let client =
                parse_document(id, &host, &body, &self.trusted_domains).map_err(|problem| {
                    CimdError::Invalid {
                        url: id.to_owned(),
                        problem,
                    }
                })?;
            Ok((client, ttl))
        };
        with_timeout(id, exchange).await
    }
}

async fn with_timeout<T>(
    id: &str,
    fut: impl Future<Output = Result<T, CimdError>>,
) -> Result<T, CimdError> {
    tokio::time::timeout(FETCH_TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| {
            Err(CimdError::Timeout {
                url: id.to_owned(),
                seconds: FETCH_TIMEOUT.as_secs(),
            })
        })
}

struct InFlightGuard<'a> {
    map: &'a Mutex<HashMap<String, Shared>>,
    key: &'a str,
    cell: Shared,
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        let mut map = lock(self.map);
        if map
            .get(self.key)
            .is_some_and(|c| Arc::ptr_eq(c, &self.cell))
        {
            map.remove(self.key);
        }
    }
}

fn guard_to_cimd(id: &str, e: GuardError) -> CimdError {
    match e {
        GuardError::SpecialUse { host, addr, range } => CimdError::SpecialUseAddress {
            url: id.to_owned(),
            host,
            addr,
            range,
        },
        other => CimdError::Fetch {
            url: id.to_owned(),
            detail: other.to_string(),
        },
    }
}

/// Turn a reqwest failure into the precise rule: the guard's refusal (found in the error chain),
/// a timeout, a TLS failure, or the innermost cause.
fn send_error(id: &str, e: &reqwest::Error) -> CimdError {
    if e.is_timeout() {
        return CimdError::Timeout {
            url: id.to_owned(),
            seconds: FETCH_TIMEOUT.as_secs(),
        };
    }
    let mut innermost = None;
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(g) = err.downcast_ref::<GuardError>() {
            return guard_to_cimd(id, g.clone());
        }
        if let Some(tls) = unwrap_io::<rustls::Error>(err) {
            return CimdError::Fetch {
                url: id.to_owned(),
                detail: format!("TLS handshake failed: {tls}"),
            };
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return CimdError::Fetch {
                url: id.to_owned(),
                detail: "connection refused".into(),
            };
        }
        innermost = Some(err);
        cur = err.source();
    }
    CimdError::Fetch {
        url: id.to_owned(),
        detail: innermost.map_or_else(|| e.to_string(), |i| i.to_string()),
    }
}

/// `err` as a `T`, looking through nested `io::Error`s (whose `source()` skips the error they
/// wrap, so the ordinary source chain never reaches a TLS error).
fn unwrap_io<'a, T: std::error::Error + 'static>(
    mut err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    loop {
        if let Some(t) = err.downcast_ref::<T>() {
            return Some(t);
        }
        let io = err.downcast_ref::<std::io::Error>()?;
        err = io.get_ref()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Every block of the brief's list, at its first and last address (and the embedded forms);
    /// classification only, nothing connects.
    #[test]
    fn special_use_addresses_are_classified() {
        let special = [
            ("0.0.0.0", "0.0.0.0/8"),
            ("0.255.255.255", "0.0.0.0/8"),
            ("10.0.0.0", "10.0.0.0/8"),
            ("10.0.0.5", "10.0.0.0/8"),
            ("10.255.255.255", "10.0.0.0/8"),
            ("100.64.0.0", "100.64.0.0/10"),
            ("100.64.0.1", "100.64.0.0/10"),
            ("100.127.255.255", "100.64.0.0/10"),
            ("127.0.0.1", "127.0.0.0/8"),
            ("127.255.255.254", "127.0.0.0/8"),
            ("169.254.0.0", "169.254.0.0/16"),
            ("169.254.169.254", "169.254.0.0/16"),
            ("172.16.0.0", "172.16.0.0/12"),
            ("172.31.255.255", "172.16.0.0/12"),
            ("192.0.0.0", "192.0.0.0/24"),
            ("192.0.0.255", "192.0.0.0/24"),
            ("192.0.2.0", "192.0.2.0/24"),
            ("192.0.2.255", "192.0.2.0/24"),
            ("192.88.99.1", "192.88.99.0/24"),
            ("192.168.0.0", "192.168.0.0/16"),
            ("192.168.255.255", "192.168.0.0/16"),
            ("198.18.0.0", "198.18.0.0/15"),
            ("198.19.255.255", "198.18.0.0/15"),
            ("198.51.100.7", "198.51.100.0/24"),
            ("203.0.113.9", "203.0.113.0/24"),
            ("224.0.0.1", "224.0.0.0/4"),
            ("239.255.255.255", "224.0.0.0/4"),
            ("240.0.0.1", "240.0.0.0/4"),
            ("255.255.255.254", "240.0.0.0/4"),
            ("255.255.255.255", "255.255.255.255"),
            ("::", "unspecified ::"),
            ("::1", "loopback ::1"),
            ("::a00:5", "::/96"),
            ("::ffff:127.0.0.1", "IPv4-mapped"),
            ("::ffff:10.0.0.5", "10.0.0.0/8"),
            ("::ffff:169.254.169.254", "169.254.0.0/16"),
            ("::ffff:0.0.0.0", "0.0.0.0/8"),
            ("64:ff9b::a00:5", "NAT64"),
            ("64:ff9b::7f00:1", "127.0.0.0/8"),
            ("64:ff9b:1::1", "64:ff9b:1::/48"),
            ("100::", "100::/64"),
            ("100::ffff:ffff:ffff:ffff", "100::/64"),
            ("2001::1", "2001::/23"),
            ("2001:10::1", "2001::/23"),
            ("2001:1ff:ffff::1", "2001::/23"),
            ("2001:db8::1", "2001:db8::/32"),
            ("2001:db8:ffff::1", "2001:db8::/32"),
            ("2002:a00:5::1", "6to4"),
            ("2002:7f00:1::", "127.0.0.0/8"),
            ("2002:c0a8:101::1", "192.168.0.0/16"),
            ("3fff::1", "3fff::/20"),
            ("5f00::1", "5f00::/16"),
            ("fc00::1", "fc00::/7"),
            ("fd00::1", "fc00::/7"),
            ("fdff:ffff::1", "fc00::/7"),
            ("fe80::1", "fe80::/10"),
            ("febf::1", "fe80::/10"),
            ("fec0::1", "fec0::/10"),
            ("ff00::1", "ff00::/8"),
            ("ff02::1", "ff00::/8"),
        ];
        for (addr, range) in special {
            let got = special_use(ip(addr));
            assert!(
                got.as_deref().is_some_and(|g| g.contains(range)),
                "{addr}: expected special-use ({range}), got {got:?}"
            );
        }
        let public = [
            "8.8.8.8",
            "1.1.1.1",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.1",
            "192.0.3.0",
            "192.88.98.255",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "198.51.99.255",
            "203.0.112.255",
            "223.255.255.255",
            "2606:4700::1111",
            "2a00:1450:4001:80b::200e",
            "2001:200::1",
            "2001:db7:ffff::1",
            "2001:db9::1",
            "2002:808:808::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2400:cb00::1",
            "fbff:ffff::1",
            "fe7f::1",
        ];
        for addr in public {
            assert_eq!(special_use(ip(addr)), None, "{addr} should be public");
        }
    }

    #[test]
    fn client_id_urls() {
        let ok = [
            "https://example.com/client.json",
            "https://example.com/c",
            "https://app.example.com/oauth/metadata.json",
            "https://example.com:8443/client",
            "https://example.com/client?v=2",
            "https://127.0.0.1:8443/client",
            "https://[::1]:8443/client",
            "https://example.com/a/b/",
        ];
        for id in ok {
            assert!(is_cimd_client_id(id), "{id}: {:?}", check_url(id));
        }
        let bad = [
            ("http://example.com/client", "https://"),
            ("HTTPS://example.com/client", "https://"),
            ("demo-agent", "https://"),
            ("https://example.com", "path"),
            ("https://example.com/", "path"),
            ("https://example.com?x=1", "path"),
            ("https://example.com/client#frag", "fragment"),
            ("https://example.com/client#", "fragment"),
            ("https://user@example.com/client", "username"),
            ("https://user:pw@example.com/client", "username"),
            ("https://example.com/a/../client", "'..'"),
            ("https://example.com/./client", "'.'"),
            ("https://example.com/a/%2e%2E/client", "'..'"),
            ("https://example.com/a/%2e", "'.'"),
            ("https://example.com/a b", "spaces"),
            ("https://exämple.com/a", "non-ASCII"),
            ("https://Example.com/client", "canonical"),
            ("https://example.com:443/client", "canonical"),
            ("https://2130706433/client", "malformed"),
            ("https://0x7f.1/client", "malformed"),
            ("https://example.com:/client", "canonical"),
            ("https://example.com\\client", "backslash"),
            ("https://example.com/a\\..\\client", "backslash"),
            ("https://example.com:99999/client", "malformed"),
            ("https:///client", "malformed"),
        ];
        for (id, why) in bad {
            assert!(!is_cimd_client_id(id), "{id} should be refused");
            let reason = check_url(id).unwrap_err();
            assert!(
                reason.contains(why),
                "{id}: '{reason}' should mention {why}"
            );
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_BYTES));
        assert!(check_url(&long).unwrap_err().contains("longer than 2048"));
    }

    #[test]
    fn cache_lifetime_from_cache_control() {
        let ttl = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(CACHE_CONTROL, v.parse().unwrap());
            }
            cache_ttl(&h, 60, 86_400).map(|d| d.as_secs())
        };
        assert_eq!(ttl(&[]), Some(60), "absent: the minimum");
        assert_eq!(ttl(&["max-age=600"]), Some(600));
        assert_eq!(ttl(&["public, max-age=600"]), Some(600));
        assert_eq!(ttl(&["MAX-AGE = \"600\""]), Some(600));
        assert_eq!(ttl(&["max-age=5"]), Some(60), "clamped up");
        assert_eq!(ttl(&["max-age=0"]), Some(60), "clamped up");
        assert_eq!(ttl(&["max-age=9999999"]), Some(86_400), "clamped down");
        assert_eq!(ttl(&["max-age=99999999999999999999999"]), Some(86_400));
        assert_eq!(
            ttl(&["max-age=600", "max-age=120"]),
            Some(120),
            "the smaller"
        );
        assert_eq!(ttl(&["max-age=abc"]), Some(60), "unparseable: ignored");
        assert_eq!(ttl(&["max-age=-5"]), Some(60));
        assert_eq!(ttl(&["no-store"]), None);
        assert_eq!(ttl(&["max-age=600, no-store"]), None);
        assert_eq!(ttl(&["No-Cache"]), None);
        assert_eq!(ttl(&["private, max-age=300"]), Some(300));
        let mut h = HeaderMap::new();
        h.insert(CACHE_CONTROL, "max-age=0".parse().unwrap());
        assert_eq!(cache_ttl(&h, 0, 100), None, "a zero lifetime is not stored");
    }

    #[test]
    fn cache_evicts_expired_then_oldest() {
        let client = |id: &str| {
            let mut c = parse_document(
                id,
                "example.com",
                format!(r#"{{"client_id":"{id}","client_name":"A","redirect_uris":["https://a.example/cb"]}}"#)
                    .as_bytes(),
                &[],
            )
            .unwrap();
            c.client_id = id.into();
            c
        };
        let t0 = Instant::now();
        let mut cache = Cache::new(3);
        cache.insert("a".into(), client("a"), Duration::from_secs(100), t0);
        cache.insert(
            "b".into(),
            client("b"),
            Duration::from_secs(1),
            t0 + Duration::from_millis(1),
        );
        cache.insert(
            "c".into(),
            client("c"),
            Duration::from_secs(100),
            t0 + Duration::from_millis(2),
        );
        // Full, and b has expired: b goes, a stays.
        let t1 = t0 + Duration::from_secs(5);
        cache.insert("d".into(), client("d"), Duration::from_secs(100), t1);
        assert!(cache.get("a", t1).is_some());
        assert!(cache.get("b", t1).is_none());
        // Full, nothing expired: the oldest (a) goes.
        cache.insert("e".into(), client("e"), Duration::from_secs(100), t1);
        assert_eq!(cache.map.len(), 3);
        assert!(cache.get("a", t1).is_none());
        for k in ["c", "d", "e"] {
            assert_eq!(cache.get(k, t1).unwrap().client_id, k);
        }
        // Expiry on read.
        assert!(cache.get("c", t0 + Duration::from_secs(101)).is_none());
        assert_eq!(cache.map.len(), 2);
    }

    #[test]
    fn trusted_domain_matching() {
        let t = vec![
            "example.com".to_owned(),
            "*.apps.example.org".to_owned(),
            " Claude.AI ".to_owned(),
        ];
        assert!(is_trusted("example.com", &t));
        assert!(is_trusted("EXAMPLE.com", &t));
        assert!(is_trusted("claude.ai", &t));
        assert!(
            !is_trusted("www.example.com", &t),
            "exact entries are exact"
        );
        assert!(is_trusted("a.apps.example.org", &t));
        assert!(is_trusted("x.y.apps.example.org", &t));
        assert!(
            !is_trusted("apps.example.org", &t),
            "*. means subdomains only"
        );
        assert!(!is_trusted("evilapps.example.org", &t));
        assert!(!is_trusted("a.apps.example.org.evil.com", &t));
        assert!(!is_trusted("notexample.com", &t));
        assert!(!is_trusted(".apps.example.org", &t));
    }

    const URL: &str = "https://docs.example.com/client.json";

    fn doc(extra: &str) -> String {
        format!(
            r#"{{"client_id":"{URL}","client_name":"Docs Agent","redirect_uris":["https://docs.example.com/cb","http://127.0.0.1/callback"]{extra}}}"#
        )
    }

    #[test]
    fn document_rules() {
        let c = parse_document(URL, "docs.example.com", doc("").as_bytes(), &[]).unwrap();
        assert_eq!(c.client_id, URL);
        assert_eq!(c.client_name, "Docs Agent");
        assert_eq!(c.redirect_uris.len(), 2);
        assert_eq!(c.token_endpoint_auth_method, "none");
        assert!(!c.verified);
        assert_eq!(c.source, ClientSource::MetadataDocument);
        assert!(c.secret_hash.is_none());
        assert_eq!(c.grant_types, ["authorization_code", "refresh_token"]);
        assert!(c.scope.is_none() && c.client_uri.is_none() && c.logo_uri.is_none());

        let c = parse_document(
            URL,
            "docs.example.com",
            doc(r#","token_endpoint_auth_method":"none","client_uri":"https://docs.example.com/","logo_uri":"https://docs.example.com/logo.png","scope":"notes:read  notes:write","grant_types":["authorization_code","urn:ietf:params:oauth:grant-type:device_code"],"software_id":"x"}"#.trim_end_matches('}')).as_bytes(),
            &["*.example.com".to_owned()],
        )
        .unwrap();
        assert!(c.verified);
        assert_eq!(c.client_uri.as_deref(), Some("https://docs.example.com/"));
        assert_eq!(
            c.logo_uri.as_deref(),
            Some("https://docs.example.com/logo.png")
        );
        assert_eq!(c.scope.unwrap(), ["notes:read", "notes:write"]);

        let bad: &[(String, &str)] = &[
            ("not json".into(), "is not valid JSON"),
            ("[1,2]".into(), "is not a JSON object (found an array)"),
            (
                r#"{"client_name":"A","redirect_uris":["https://a/cb"]}"#.into(),
                "has no client_id",
            ),
            (
                doc("").replace(URL, "https://docs.example.com/other.json"),
                "has client_id 'https://docs.example.com/other.json', which differs from the URL",
            ),
            (
                doc("").replace(URL, "https://docs.example.com/client.json/"),
                "differs from the URL",
            ),
            (
                r#"{"client_id":7,"client_name":"A","redirect_uris":["https://a/cb"]}"#.into(),
                "client_id that is a number",
            ),
            (doc(r#","client_secret":"s3cret""#), "carries client_secret"),
            (
                doc(r#","client_secret_expires_at":0"#),
                "carries client_secret_expires_at",
            ),
            (
                doc(r#","token_endpoint_auth_method":"client_secret_basic""#),
                "'client_secret_basic', a shared-secret method",
            ),
            (
                doc(r#","token_endpoint_auth_method":"client_secret_post""#),
                "'client_secret_post', a shared-secret method",
            ),
            (
                doc(r#","token_endpoint_auth_method":"client_secret_jwt""#),
                "'client_secret_jwt', a shared-secret method",
            ),
            (
                doc(r#","token_endpoint_auth_method":"private_key_jwt""#),
                "'private_key_jwt', which this server does not support",
            ),
            (
                doc("").replace(r#""client_name":"Docs Agent","#, ""),
                "has no client_name",
            ),
            (
                doc("").replace("Docs Agent", "  "),
                "has an empty client_name",
            ),
            (
                doc("").replace("Docs Agent", "Docs\\u202eAgent"),
                "bidirectional",
            ),
            (doc("").replace("Docs Agent", "Docs\\nAgent"), "control"),
            (
                doc("").replace("Docs Agent", &"a".repeat(201)),
                "longer than 200",
            ),
            (
                format!(r#"{{"client_id":"{URL}","client_name":"A"}}"#),
                "has no redirect_uris",
            ),
            (
                format!(r#"{{"client_id":"{URL}","client_name":"A","redirect_uris":[]}}"#),
                "empty redirect_uris",
            ),
            (
                format!(
                    r#"{{"client_id":"{URL}","client_name":"A","redirect_uris":"https://a/cb"}}"#
                ),
                "redirect_uris that is a string, not an array",
            ),
            (
                format!(r#"{{"client_id":"{URL}","client_name":"A","redirect_uris":[5]}}"#),
                "redirect_uris[0] that is a number",
            ),
            (
                format!(
                    r#"{{"client_id":"{URL}","client_name":"A","redirect_uris":["https://a/cb","https://a/cb#x"]}}"#
                ),
                "invalid redirect_uris[1]: redirect_uri 'https://a/cb#x' must not contain a fragment",
            ),
            (
                format!(
                    r#"{{"client_id":"{URL}","client_name":"A","redirect_uris":["/relative"]}}"#
                ),
                "invalid redirect_uris[0]",
            ),
            (
                doc(r#","logo_uri":"http://docs.example.com/logo.png""#),
                "logo_uri 'http://docs.example.com/logo.png', which is not an absolute https URL",
            ),
            (
                doc(r#","client_uri":"javascript:alert(1)""#),
                "client_uri 'javascript:alert(1)'",
            ),
            (
                doc(r#","grant_types":["client_credentials"]"#),
                "client_credentials",
            ),
            (
                doc(r#","grant_types":["refresh_token"]"#),
                "without 'authorization_code'",
            ),
            (
                doc(r#","grant_types":"authorization_code""#),
                "grant_types that is a string",
            ),
            (doc(r#","scope":["a"]"#), "scope that is an array"),
        ];
        for (body, expected) in bad {
            let err =
                parse_document(URL, "docs.example.com", body.as_bytes(), &[]).expect_err(body);
            assert!(
                err.contains(expected),
                "{body}\n  got: {err}\n  want: {expected}"
            );
        }
    }

    #[test]
    fn allow_host_entries() {
        let a = parse_allow_host("127.0.0.1:8443").unwrap();
        assert_eq!(
            a,
            AllowedHost {
                host: "127.0.0.1".into(),
                port: 8443
            }
        );
        let a = parse_allow_host("[::1]:9000").unwrap();
        assert_eq!(
            a,
            AllowedHost {
                host: "[::1]".into(),
                port: 9000
            }
        );
        let a = parse_allow_host("LocalHost:443").unwrap();
        assert_eq!(
            a,
            AllowedHost {
                host: "localhost".into(),
                port: 443
            }
        );
        for bad in [
            "127.0.0.1",
            "localhost:",
            ":443",
            "a:b",
            "x:70000",
            "u@h:1",
            "h/p:1",
        ] {
            let e = parse_allow_host(bad).unwrap_err().to_string();
            assert!(e.contains("must be host:port"), "{bad}: {e}");
        }
    }

    fn sock(s: &str) -> SocketAddr {
        SocketAddr::new(ip(s), 0)
    }

    /// The resolver-side guard: any refused address refuses the whole answer; the connect policy
    /// is a separate, later check that catches what the guard lets through (here: a name exempted
    /// from the guard, standing in for a broken guard).
    #[test]
    fn guard_refuses_whole_answers_and_policy_backs_it_up() {
        let any = ConnectPolicy::Any;
        let lo = ConnectPolicy::LoopbackOnly;
        assert!(check_addresses("a.test", &[sock("8.8.8.8")], false, any).is_ok());
        match check_addresses("a.test", &[sock("8.8.8.8"), sock("10.0.0.5")], false, any) {
            Err(GuardError::SpecialUse { addr, .. }) => assert_eq!(addr, ip("10.0.0.5")),
            other => panic!("mixed answer must be refused whole: {other:?}"),
        }
        assert!(matches!(
            check_addresses("a.test", &[], false, any),
            Err(GuardError::NoAddress { .. })
        ));
        // Exempt (allow_hosts) names skip the special-use check...
        assert!(check_addresses("a.test", &[sock("127.0.0.1")], true, lo).is_ok());
        assert!(check_addresses("a.test", &[sock("::1")], true, lo).is_ok());
        // ...but the loopback-only policy still refuses anything else: a guard that let 10.0.0.5
        // through would be stopped here, before any connection.
        match check_addresses("a.test", &[sock("10.0.0.5")], true, lo) {
            Err(GuardError::Policy { addr, .. }) => assert_eq!(addr, ip("10.0.0.5")),
            other => panic!("policy must refuse: {other:?}"),
        }
        // And the policy applies after the guard even for public addresses.
        assert!(matches!(
            check_addresses("a.test", &[sock("8.8.8.8")], false, lo),
            Err(GuardError::Policy { .. })
        ));
        assert!(lo.permits(ip("::ffff:127.0.0.1")));
        assert!(!lo.permits(ip("::ffff:10.0.0.1")));
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
