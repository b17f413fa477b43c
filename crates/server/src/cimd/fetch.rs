//! The fetcher: [`CimdResolver`] fetches a document under the address guard, validates it,
//! caches it, remembers failures, and bounds how much fetching anyone can cause.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use reqwest::dns::Resolve;
use reqwest::header::ACCEPT;
use reqwest::{StatusCode, Url};
use tokio::sync::OnceCell;

use super::cache::{Cache, cache_ttl};
use super::document::parse_document;
use super::guard::{
    ConnectPolicy, GuardError, GuardedResolver, SystemResolver, check_ip_literal, find_guard_error,
};
use super::url::{check_url, ip_literal};
use super::{
    CimdConfig, CimdError, FAILURE_TTL, FETCH_TIMEOUT, MAX_BUDGET_ENTRIES, MAX_CACHE_ENTRIES,
    MAX_DOCUMENT_BYTES, MAX_FAILURE_ENTRIES,
};
use crate::clients::{Client, truncate};
use crate::limits::{ExpiringMap, RateLimiter};

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
            let resolver = GuardedResolver::new(dns.clone(), exempt, policy);
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
            && let Err(retry_after) = self
                .per_client
                .hit(&crate::limits::rate_key(ip), self.fetches_per_client)
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
            check_ip_literal(&host, ip, allowed, self.policy).map_err(|e| guard_to_cimd(id, e))?;
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
    if let Some(g) = find_guard_error(e) {
        return guard_to_cimd(id, g.clone());
    }
    let mut innermost = None;
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
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
}
