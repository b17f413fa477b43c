//! Load driver: drives Consentry (the release binary it starts, or instances it is pointed at)
//! and, with `--peer DIR`, node-oidc-provider (`DIR/servers/oidc-provider.mjs`, as in
//! ../shared/bench) through the same four phases, over loopback, with N concurrent workers:
//!
//! - `code`: the full authorization-code flow, PKCE S256 + `resource`. Consentry: attest + start
//!   in one request with a fresh ES256 Trusted Auth Token, submit, token (3 requests). The peer:
//!   its interaction pages played with a cookie jar (GET /auth, the login and consent
//!   interactions, their redirects, until the callback), then the token request.
//! - `refresh`: refresh grants, each worker rotating its own refresh token.
//! - `introspect`: RFC 7662 introspection of live tokens (Consentry: access tokens with the
//!   resource's `introspection_secret`; the peer: refresh tokens with a confidential client).
//! - `register`: RFC 7591 dynamic registration of public clients.
//!
//! Each worker owns one keep-alive HTTP/1.1 connection (hyper, no pool) and the driver runs on
//! one thread, so its own CPU per operation stays small; it is printed next to the server's
//! (utime + stime from /proc/<pid>/stat) and the machine's idle time. Outside the measuring
//! window it checks what it got: sampled access tokens are verified against the JWKS
//! (signature, `iss`, `aud` = resource, `typ` at+jwt, `client_id`, scope), rotation returned a
//! new refresh token every time and a rotated-out one is refused, introspection said active for
//! the right client, and registered clients complete a flow. A phase with a failed check is
//! marked INVALID: a fast wrong answer does not count.
//!
//! `cargo xtask bench [--seconds 10] [--warmup 2] [--concurrency 16] [--phases code,refresh,…]
//!   [--database-url URL] [--instances N] [--peer DIR] [--json FILE] [--purge-at-start]`
//! `cargo xtask bench-peer` runs it with `--peer` (node-oidc-provider installed by xtask).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::{HeaderMap, Method, Request};
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};

const RESOURCE: &str = "http://127.0.0.1:8000/mcp";
const REDIRECT: &str = "http://127.0.0.1:33418/callback";
const SCOPE: &str = "mcp:read mcp:write";
const PHASES: [&str; 4] = ["code", "refresh", "introspect", "register"];

// ------------------------------------------------------------------------------------------
// Options

struct Opts {
    seconds: f64,
    warmup: f64,
    concurrency: usize,
    phases: Vec<String>,
    database_url: Option<String>,
    instances: usize,
    peer: Option<PathBuf>,
    json: Option<PathBuf>,
    server_bin: Option<PathBuf>,
    timeline: bool,
    seeded: u64,
    verify_max: usize,
    users: u64,
    consentry: bool,
}

const USAGE: &str = "bench [--seconds 10] [--warmup 2] [--concurrency 16] \
[--phases code,refresh,introspect,register] [--database-url URL] [--instances N] [--users 1000] \
[--peer DIR] [--peer-only] [--json FILE] [--verify-max 2000] \
[--server-bin PATH (default: the consentry next to this binary)] \
[--timeline (ops/s and p99 of every second)] \
[--seeded N (Consentry on an empty SQLite store, then on one seeded with N users: the growth)]";

fn opts() -> Result<Opts> {
    let mut o = Opts {
        seconds: 10.0,
        warmup: 2.0,
        concurrency: 16,
        phases: PHASES.iter().map(|s| s.to_string()).collect(),
        database_url: None,
        instances: 1,
        peer: None,
        json: None,
        server_bin: None,
        timeline: false,
        seeded: 0,
        verify_max: 2000,
        users: 1000,
        consentry: true,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let flag = args[i].as_str();
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        if flag == "--timeline" {
            o.timeline = true;
            i += 1;
            continue;
        }
        if flag == "--peer-only" {
            o.consentry = false;
            i += 1;
            continue;
        }
        let v = args
            .get(i + 1)
            .cloned()
            .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
        let num = |v: &str| -> Result<f64> { v.parse().with_context(|| format!("{flag} {v}")) };
        match flag {
            "--seconds" => o.seconds = num(&v)?,
            "--warmup" => o.warmup = num(&v)?,
            "--concurrency" | "--workers" => o.concurrency = num(&v)? as usize,
            "--instances" => o.instances = (num(&v)? as usize).max(1),
            "--verify-max" => o.verify_max = num(&v)? as usize,
            "--users" => o.users = (num(&v)? as u64).max(1),
            "--seeded" => o.seeded = num(&v)? as u64,
            "--phases" => {
                o.phases = v.split(',').map(|s| s.trim().to_owned()).collect();
                if let Some(p) = o.phases.iter().find(|p| !PHASES.contains(&p.as_str())) {
                    bail!("unknown phase {p}");
                }
            }
            "--database-url" => o.database_url = Some(v),
            "--peer" => o.peer = Some(PathBuf::from(v)),
            "--json" => o.json = Some(PathBuf::from(v)),
            "--server-bin" => o.server_bin = Some(PathBuf::from(v)),
            other => bail!("unknown argument {other}\n{USAGE}"),
        }
        i += 2;
    }
    if o.instances > 1
        && !o
            .database_url
            .as_deref()
            .unwrap_or("")
            .starts_with("postgres")
    {
        bail!("--instances N > 1 needs a PostgreSQL --database-url (one database, N servers)");
    }
    Ok(o)
}

// ------------------------------------------------------------------------------------------
// CPU accounting (/proc)

fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of a process (or `self`), in clock ticks.
fn proc_ticks(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    ticks(11) + ticks(12)
}

/// (idle, total) ticks of the whole machine.
fn machine_ticks() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let line = stat.lines().next().unwrap_or("");
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|x| x.parse().ok())
        .collect();
    let idle = v.get(3).copied().unwrap_or(0.0) + v.get(4).copied().unwrap_or(0.0);
    (idle, v.iter().sum())
}

#[derive(Clone, Copy)]
struct CpuSnap {
    at: Instant,
    server: f64,
    driver: f64,
    idle: f64,
    total: f64,
}

fn snap(pids: &[u32]) -> CpuSnap {
    let (idle, total) = machine_ticks();
    CpuSnap {
        at: Instant::now(),
        server: pids.iter().map(|p| proc_ticks(&p.to_string())).sum(),
        driver: proc_ticks("self"),
        idle,
        total,
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

// ------------------------------------------------------------------------------------------
// HTTP: one HTTP/1.1 keep-alive connection per worker

struct Resp {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
}

impl Resp {
    fn json(&self) -> Result<Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "HTTP {}: not JSON: {}",
                self.status,
                String::from_utf8_lossy(&self.body[..self.body.len().min(200)])
            )
        })
    }
    fn ok_json(&self, what: &str) -> Result<Value> {
        if !(200..300).contains(&self.status) {
            bail!(
                "{what}: HTTP {} {}",
                self.status,
                String::from_utf8_lossy(&self.body[..self.body.len().min(200)])
            );
        }
        self.json()
    }
}

enum Body<'a> {
    None,
    Json(&'a Value),
    Form(&'a [(&'a str, &'a str)]),
}

struct Conn {
    addr: SocketAddr,
    host: String,
    sender: Option<http1::SendRequest<Full<Bytes>>>,
}

impl Conn {
    fn new(addr: SocketAddr) -> Conn {
        Conn {
            addr,
            host: addr.to_string(),
            sender: None,
        }
    }

    async fn connect(&mut self) -> Result<&mut http1::SendRequest<Full<Bytes>>> {
        let alive = matches!(&self.sender, Some(s) if !s.is_closed());
        if !alive {
            let stream = tokio::net::TcpStream::connect(self.addr).await?;
            stream.set_nodelay(true)?;
            let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            self.sender = Some(sender);
        }
        let s = self.sender.as_mut().context("no connection")?;
        s.ready().await?;
        Ok(s)
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Body<'_>,
    ) -> Result<Resp> {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let (b, payload) = match body {
            Body::None => (b, Bytes::new()),
            Body::Json(v) => (
                b.header("content-type", "application/json"),
                Bytes::from(serde_json::to_vec(v)?),
            ),
            Body::Form(f) => (
                b.header("content-type", "application/x-www-form-urlencoded"),
                Bytes::from(form(f)),
            ),
        };
        let req = b.body(Full::new(payload))?;
        let res = match self.connect().await?.send_request(req).await {
            Ok(r) => r,
            Err(e) => {
                self.sender = None;
                return Err(e.into());
            }
        };
        let (parts, body) = res.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Resp {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }
}

fn pct_encode(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

fn form(pairs: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(256);
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        pct_encode(k, &mut out);
        out.push('=');
        pct_encode(v, &mut out);
    }
    out
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
            (b'+', _, _) => out.push(b' '),
            (c, _, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The query parameters of a URL (or of a bare query string).
fn query(url: &str) -> HashMap<String, String> {
    let q = url.split_once('?').map(|(_, q)| q).unwrap_or(url);
    let q = q.split('#').next().unwrap_or(q);
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (pct_decode(k), pct_decode(v)))
        .collect()
}

/// `http://host:port/path?q` → `/path?q` (loopback origins only).
fn path_of(url: &str) -> Result<String> {
    let rest = url
        .strip_prefix("http://127.0.0.1:")
        .or_else(|| url.strip_prefix("http://localhost:"))
        .with_context(|| format!("refusing non-loopback URL {url}"))?;
    Ok(rest
        .find('/')
        .map(|i| rest[i..].to_owned())
        .unwrap_or_else(|| "/".into()))
}

/// The tiny cookie jar the peer's interaction needs: name → value, deletions honoured.
#[derive(Default)]
struct Jar(Vec<(String, String)>);

impl Jar {
    fn header(&self) -> String {
        let mut s = String::new();
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                s.push_str("; ");
            }
            s.push_str(k);
            s.push('=');
            s.push_str(v);
        }
        s
    }
    fn store(&mut self, headers: &HeaderMap) {
        for line in headers.get_all("set-cookie") {
            let Ok(line) = line.to_str() else { continue };
            let mut parts = line.split(';');
            let Some((name, value)) = parts.next().and_then(|kv| kv.split_once('=')) else {
                continue;
            };
            let (name, value) = (name.trim(), value.trim());
            let gone = value.is_empty()
                || parts.any(|a| {
                    let a = a.trim().to_ascii_lowercase();
                    a == "max-age=0" || (a.starts_with("expires=") && a.contains("1970"))
                });
            self.0.retain(|(k, _)| k != name);
            if !gone {
                self.0.push((name.to_owned(), value.to_owned()));
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// Targets

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Consentry,
    Peer,
}

struct Target {
    name: String,
    kind: Kind,
    addrs: Vec<SocketAddr>,
    pids: Vec<u32>,
    issuer: String,
    authorize: String,
    token: String,
    register: String,
    introspect: String,
    jwks: Vec<(Option<String>, Algorithm, DecodingKey)>,
    client_id: String,
    /// `Authorization` header value for introspection (Consentry: the resource's secret; the
    /// peer: a confidential client registered when the phase starts, as ../shared/bench does,
    /// since its in-memory store forgets clients nobody uses).
    introspect_auth: String,
    tat_key: Option<EncodingKey>,
    users: u64,
    /// The driver's processes (servers) to stop at the end.
    children: Vec<Child>,
}

impl Drop for Target {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn wait_ready(addr: SocketAddr, path: &str, child: &mut Child) -> Result<()> {
    for _ in 0..300 {
        if let Some(st) = child.try_wait()? {
            bail!("server exited early: {st}");
        }
        let mut c = Conn::new(addr);
        if let Ok(r) = c.send(Method::GET, path, &[], Body::None).await
            && r.status == 200
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("server on {addr} did not answer {path}")
}

fn consentry_toml(issuer: &str, listen_port: u16, db: &str, secret: &str) -> String {
    format!(
        r#"issuer = "{issuer}"
listen = "127.0.0.1:{listen_port}"
authorization_url = "http://127.0.0.1:3000/oauth/authorize"
database_url = "{db}"
[registration]
rate_limit_per_minute = 100000000
global_rate_limit_per_minute = 100000000
[[token_profiles]]
id = "default"
issuer = "urn:bench:issuer"
audience = "urn:bench:audience"
public_key_pem_file = "tat_pub.pem"
algorithms = ["ES256"]
[[scopes]]
name = "mcp:read"
description = "Read"
[[scopes]]
name = "mcp:write"
description = "Write"
[[resources]]
uri = "{RESOURCE}"
name = "MCP"
scopes = ["mcp:read", "mcp:write"]
default_scopes = ["mcp:read"]
introspection_secret = "{secret}"
"#
    )
}

async fn start_consentry(o: &Opts, dir: &Path, db: Option<String>) -> Result<Target> {
    let exe = std::env::current_exe()?;
    let bin = match &o.server_bin {
        Some(b) => b.clone(),
        None => exe
            .parent()
            .and_then(|p| p.parent())
            .context("binary directory")?
            .join("consentry"),
    };
    if !bin.exists() {
        bail!("build the server first: cargo build --release -p consentry-server --bin consentry");
    }
    let (private_pem, public_pem) =
        consentry_server::keys::generate_pem_keypair(consentry_server::keys::SigningAlg::ES256)?;
    std::fs::write(dir.join("tat_pub.pem"), public_pem)?;
    let secret = consentry_server::crypto::random_token(24);
    let db = db
        .or_else(|| o.database_url.clone())
        .unwrap_or_else(|| format!("sqlite://{}", dir.join("consentry.db").display()));
    let ports: Vec<u16> = (0..o.instances)
        .map(|_| free_port())
        .collect::<Result<_>>()?;
    let issuer = format!("http://127.0.0.1:{}", ports[0]);
    let mut children = Vec::new();
    let mut addrs = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let cfg = dir.join(format!("consentry-{i}.toml"));
        std::fs::write(&cfg, consentry_toml(&issuer, *port, &db, &secret))?;
        let child = Command::new(&bin)
            .args(["serve", "--config"])
            .arg(&cfg)
            .current_dir(dir)
            // The purge reports how many rows it removed and how long it took.
            .env("CONSENTRY_LOG", "warn,consentry::purge=info")
            .stdout(Stdio::null())
            .spawn()
            .context("starting consentry")?;
        children.push(child);
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        addrs.push(addr);
        // One at a time: the first one applies the migrations.
        if let Some(c) = children.last_mut() {
            wait_ready(addr, "/healthz", c).await?;
        }
    }
    let name = if o.instances > 1 {
        format!("consentry ×{}", o.instances)
    } else {
        "consentry".into()
    };
    let mut t = Target {
        name,
        kind: Kind::Consentry,
        pids: children.iter().map(|c| c.id()).collect(),
        addrs,
        issuer,
        authorize: String::new(),
        token: String::new(),
        register: String::new(),
        introspect: String::new(),
        jwks: Vec::new(),
        client_id: String::new(),
        introspect_auth: format!("Bearer {secret}"),
        tat_key: Some(EncodingKey::from_ec_pem(private_pem.as_bytes())?),
        users: o.users,
        children,
    };
    discover(&mut t).await?;
    t.client_id = register_client(&t, &mut Conn::new(t.addrs[0]), "bench-main", false)
        .await?
        .0;
    Ok(t)
}

async fn start_peer(dir: &Path) -> Result<Target> {
    let dir = &std::fs::canonicalize(dir).with_context(|| format!("{}", dir.display()))?;
    let script = dir.join("servers").join("oidc-provider.mjs");
    if !script.exists() {
        bail!("no {} (run `cargo xtask bench-peer`)", script.display());
    }
    let port = free_port()?;
    let issuer = format!("http://127.0.0.1:{port}");
    let mut child = Command::new("node")
        .arg(&script)
        .current_dir(dir)
        .env("NODE_ENV", "production")
        .env("ISSUER", &issuer)
        .env("MCP_RESOURCE", RESOURCE)
        .stdout(Stdio::null())
        .spawn()
        .context("starting node")?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    wait_ready(addr, "/.well-known/openid-configuration", &mut child).await?;
    let mut t = Target {
        name: "node-oidc-provider".into(),
        kind: Kind::Peer,
        pids: vec![child.id()],
        addrs: vec![addr],
        issuer,
        authorize: String::new(),
        token: String::new(),
        register: String::new(),
        introspect: String::new(),
        jwks: Vec::new(),
        client_id: String::new(),
        introspect_auth: String::new(),
        tat_key: None,
        users: 1,
        children: vec![child],
    };
    discover(&mut t).await?;
    t.client_id = register_client(&t, &mut Conn::new(addr), "bench-main", false)
        .await?
        .0;
    Ok(t)
}

fn enc(s: &str) -> String {
    let mut o = String::new();
    pct_encode(s, &mut o);
    o
}

fn base64_std(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

async fn discover(t: &mut Target) -> Result<()> {
    let mut c = Conn::new(t.addrs[0]);
    let m = c
        .send(
            Method::GET,
            "/.well-known/oauth-authorization-server",
            &[],
            Body::None,
        )
        .await?;
    let m = if m.status == 200 {
        m.json()?
    } else {
        c.send(
            Method::GET,
            "/.well-known/openid-configuration",
            &[],
            Body::None,
        )
        .await?
        .ok_json("discovery")?
    };
    if m["issuer"] != t.issuer.as_str() {
        bail!("metadata issuer {} != {}", m["issuer"], t.issuer);
    }
    let ep = |k: &str| -> Result<String> {
        path_of(
            m[k].as_str()
                .with_context(|| format!("metadata has no {k}"))?,
        )
    };
    t.authorize = ep("authorization_endpoint")?;
    t.token = ep("token_endpoint")?;
    t.register = ep("registration_endpoint")?;
    t.introspect = ep("introspection_endpoint")?;
    let jwks = c
        .send(Method::GET, &ep("jwks_uri")?, &[], Body::None)
        .await?
        .ok_json("jwks")?;
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks)?;
    for k in &set.keys {
        let alg = match k.common.key_algorithm.map(|a| a.to_string()).as_deref() {
            Some("ES256") | None => Algorithm::ES256,
            Some("EdDSA") => Algorithm::EdDSA,
            Some("RS256") => Algorithm::RS256,
            Some(other) => bail!("JWKS key algorithm {other}"),
        };
        t.jwks
            .push((k.common.key_id.clone(), alg, DecodingKey::from_jwk(k)?));
    }
    Ok(())
}

/// RFC 7591 registration; returns (client_id, client_secret).
async fn register_client(
    t: &Target,
    c: &mut Conn,
    name: &str,
    confidential: bool,
) -> Result<(String, Option<String>)> {
    let body = if confidential {
        json!({"client_name": name, "application_type": "native", "redirect_uris": [REDIRECT],
               "grant_types": ["authorization_code"], "response_types": ["code"],
               "token_endpoint_auth_method": "client_secret_basic"})
    } else {
        json!({"client_name": name, "application_type": "native", "redirect_uris": [REDIRECT],
               "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
               "token_endpoint_auth_method": "none"})
    };
    let r = c
        .send(Method::POST, &t.register, &[], Body::Json(&body))
        .await?;
    if r.status != 201 && r.status != 200 {
        bail!(
            "DCR: HTTP {} {}",
            r.status,
            String::from_utf8_lossy(&r.body[..r.body.len().min(200)])
        );
    }
    let v = r.json()?;
    let id = v["client_id"]
        .as_str()
        .context("DCR: no client_id")?
        .to_owned();
    Ok((id, v["client_secret"].as_str().map(str::to_owned)))
}

// ------------------------------------------------------------------------------------------
// One flow

struct Tokens {
    access: String,
    refresh: String,
}

struct Worker {
    index: usize,
    n: u64,
    conn: Conn,
}

fn pkce() -> (String, String) {
    let verifier = consentry_server::crypto::random_token(32);
    let challenge = consentry_server::crypto::pkce_s256_challenge(&verifier);
    (verifier, challenge)
}

/// The user-facing step: returns the callback URL's query.
async fn authorize(
    t: &Target,
    w: &mut Worker,
    client_id: &str,
    state: &str,
    challenge: &str,
) -> Result<HashMap<String, String>> {
    match t.kind {
        Kind::Consentry => {
            let key = t.tat_key.as_ref().context("no TAT key")?;
            let user = format!("bench-{}", (w.index as u64 * 7919 + w.n) % t.users);
            w.n += 1;
            let now = now_unix();
            let tat = jsonwebtoken::encode(
                &Header::new(Algorithm::ES256),
                &json!({"iss": "urn:bench:issuer", "aud": "urn:bench:audience", "sub": user,
                        "email": format!("{user}@bench.example"), "iat": now, "exp": now + 300,
                        "jti": consentry_server::crypto::random_token(12)}),
                key,
            )?;
            let mut params = json!({
                "response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT,
                "scope": SCOPE, "state": state, "code_challenge": challenge,
                "code_challenge_method": "S256", "resource": [RESOURCE],
                "trusted_auth_token": tat, "profile_id": "default",
            });
            let s = w
                .conn
                .send(
                    Method::POST,
                    "/v1/oauth/authorize/start",
                    &[],
                    Body::Json(&params),
                )
                .await?
                .ok_json("authorize/start")?;
            let session = s["session_token"]
                .as_str()
                .context("start: no session_token")?;
            let bearer = format!("Bearer {session}");
            if let Some(p) = params.as_object_mut() {
                p.remove("trusted_auth_token");
                p.remove("profile_id");
                p.insert("consent_granted".into(), Value::Bool(true));
            }
            let f = w
                .conn
                .send(
                    Method::POST,
                    "/v1/oauth/authorize/submit",
                    &[("authorization", &bearer)],
                    Body::Json(&params),
                )
                .await?
                .ok_json("authorize/submit")?;
            let loc = f["redirect_uri"]
                .as_str()
                .context("submit: no redirect_uri")?;
            Ok(query(loc))
        }
        Kind::Peer => {
            let mut url = format!(
                "{}?{}",
                t.authorize,
                form(&[
                    ("response_type", "code"),
                    ("client_id", client_id),
                    ("redirect_uri", REDIRECT),
                    ("scope", SCOPE),
                    ("state", state),
                    ("code_challenge", challenge),
                    ("code_challenge_method", "S256"),
                    ("resource", RESOURCE),
                ])
            );
            let mut jar = Jar::default();
            for hop in 0..10 {
                let cookie = jar.header();
                let headers: &[(&str, &str)] = if cookie.is_empty() {
                    &[]
                } else {
                    &[("cookie", &cookie)]
                };
                let r = w.conn.send(Method::GET, &url, headers, Body::None).await?;
                jar.store(&r.headers);
                let loc = r
                    .headers
                    .get("location")
                    .and_then(|l| l.to_str().ok())
                    .with_context(|| {
                        format!(
                            "authorize hop {hop}: HTTP {} {}",
                            r.status,
                            String::from_utf8_lossy(&r.body[..r.body.len().min(200)])
                        )
                    })?;
                if loc.starts_with(REDIRECT) {
                    return Ok(query(loc));
                }
                url = if loc.starts_with('/') {
                    loc.to_owned()
                } else {
                    path_of(loc)?
                };
            }
            bail!("no redirect to redirect_uri after 10 hops")
        }
    }
}

async fn token_request(t: &Target, c: &mut Conn, f: &[(&str, &str)]) -> Result<Value> {
    let v = c
        .send(Method::POST, &t.token, &[], Body::Form(f))
        .await?
        .ok_json("token")?;
    if !v["token_type"]
        .as_str()
        .is_some_and(|s| s.eq_ignore_ascii_case("bearer"))
    {
        bail!("token_type {}", v["token_type"]);
    }
    Ok(v)
}

async fn full_flow(t: &Target, w: &mut Worker, client_id: &str) -> Result<Tokens> {
    let (verifier, challenge) = pkce();
    let state = consentry_server::crypto::random_token(12);
    let cb = authorize(t, w, client_id, &state, &challenge).await?;
    if let Some(e) = cb.get("error") {
        bail!("authorize error {e}: {:?}", cb.get("error_description"));
    }
    if cb.get("state") != Some(&state) {
        bail!("state mismatch");
    }
    if cb.get("iss").is_some_and(|i| *i != t.issuer) {
        bail!("iss {:?}", cb.get("iss"));
    }
    let code = cb.get("code").context("no code")?;
    let v = token_request(
        t,
        &mut w.conn,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
            ("client_id", client_id),
            ("resource", RESOURCE),
        ],
    )
    .await?;
    Ok(Tokens {
        access: v["access_token"]
            .as_str()
            .context("no access_token")?
            .to_owned(),
        refresh: v["refresh_token"]
            .as_str()
            .context("no refresh_token")?
            .to_owned(),
    })
}

// ------------------------------------------------------------------------------------------
// Verification

/// Verify an access token against the JWKS: signature, iss, aud, typ, client_id, scope.
fn verify_at(t: &Target, at: &str, client_id: &str) -> Result<()> {
    let h = jsonwebtoken::decode_header(at)?;
    let typ = h.typ.as_deref().unwrap_or("").to_ascii_lowercase();
    if typ != "at+jwt" && typ != "application/at+jwt" {
        bail!("typ {:?}", h.typ);
    }
    let (_, alg, key) = t
        .jwks
        .iter()
        .find(|(kid, _, _)| h.kid.is_none() || *kid == h.kid)
        .context("no JWKS key for kid")?;
    if *alg != h.alg {
        bail!("alg {:?} with a {:?} key", h.alg, alg);
    }
    let mut v = Validation::new(*alg);
    v.set_issuer(&[&t.issuer]);
    v.set_audience(&[RESOURCE]);
    let d = jsonwebtoken::decode::<Value>(at, key, &v)?;
    if d.claims["client_id"] != client_id {
        bail!("client_id {}", d.claims["client_id"]);
    }
    let got: Vec<&str> = d.claims["scope"]
        .as_str()
        .unwrap_or("")
        .split(' ')
        .collect();
    if !SCOPE.split(' ').all(|s| got.contains(&s)) {
        bail!("scope {}", d.claims["scope"]);
    }
    Ok(())
}

#[derive(Default)]
struct Checks {
    ok: Vec<String>,
    failed: Vec<String>,
    notes: Vec<String>,
}

impl Checks {
    /// A durability probe: must hold on Consentry; on the peer (an in-memory store that drops
    /// entries past a few thousand, ../shared/bench/README.md) a failure is noted, not fatal.
    fn durable(&mut self, kind: Kind, what: &str, r: Result<()>) {
        match (kind, r) {
            (Kind::Peer, Err(e)) => self.notes.push(format!("{what}: no ({e:#})")),
            (_, r) => self.check(what, r),
        }
    }

    fn check(&mut self, what: &str, r: Result<()>) {
        match r {
            Ok(()) => self.ok.push(what.to_owned()),
            Err(e) => self.failed.push(format!("{what}: {e:#}")),
        }
    }
}

fn verify_sample(t: &Target, sample: &[(String, String)], checks: &mut Checks) {
    let mut bad = Vec::new();
    for (at, cid) in sample {
        if let Err(e) = verify_at(t, at, cid) {
            bad.push(format!("{e:#}"));
        }
    }
    let what = format!("{} access tokens verified against JWKS", sample.len());
    checks.check(
        &what,
        if bad.is_empty() && !sample.is_empty() {
            Ok(())
        } else {
            Err(anyhow!(
                "{} of {} failed: {:?}",
                bad.len(),
                sample.len(),
                bad.first()
            ))
        },
    );
}

// ------------------------------------------------------------------------------------------
// Phase runner

struct Phase {
    phase: String,
    ops: u64,
    errors: u64,
    first_error: Option<String>,
    secs: f64,
    lat_us: Vec<u32>,
    server_cpu_s: f64,
    driver_cpu_s: f64,
    machine_busy_cores: f64,
    cores: f64,
    timeline: Vec<u64>,
    p99_timeline: Vec<f64>,
    checks: Checks,
}

impl Phase {
    fn ops_s(&self) -> f64 {
        self.ops as f64 / self.secs
    }
    fn pct(&self, p: f64) -> f64 {
        percentile(&self.lat_us, p)
    }
    fn server_us(&self) -> f64 {
        self.server_cpu_s * 1e6 / self.ops.max(1) as f64
    }
    fn driver_us(&self) -> f64 {
        self.driver_cpu_s * 1e6 / self.ops.max(1) as f64
    }
    fn idle_cores(&self) -> f64 {
        (self.cores - self.machine_busy_cores).max(0.0)
    }
    fn valid(&self) -> bool {
        self.checks.failed.is_empty() && self.ops > 0
    }
    fn json(&self) -> Value {
        json!({
            "phase": self.phase, "ops": self.ops, "ops_per_s": self.ops_s().round(),
            "p50_ms": self.pct(0.5), "p90_ms": self.pct(0.9), "p99_ms": self.pct(0.99),
            "errors": self.errors, "first_error": self.first_error,
            "server_cpu_us_per_op": self.server_us().round(),
            "driver_cpu_us_per_op": self.driver_us().round(),
            "machine_idle_cores": (self.idle_cores() * 100.0).round() / 100.0,
            "ops_per_s_timeline": self.timeline, "p99_ms_timeline": self.p99_timeline,
            "checks_ok": self.checks.ok, "checks_failed": self.checks.failed,
            "notes": self.checks.notes,
        })
    }
}

fn percentile(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let i = ((sorted_us.len() as f64 * p).ceil() as usize).saturating_sub(1);
    sorted_us[i.min(sorted_us.len() - 1)] as f64 / 1000.0
}

/// What one worker's loop returns: its in-window latencies (end, µs), errors and its state.
struct WorkerOut<S> {
    lat: Vec<(Instant, u32)>,
    errors: u64,
    first_error: Option<String>,
    state: S,
}

/// Run `op` in `o.concurrency` workers for warm-up + window; only operations that end inside
/// the window count. `op` gets the worker and its phase state and returns whether it succeeded.
async fn run_phase<S, F>(
    name: &str,
    t: &Arc<Target>,
    o: &Opts,
    states: Vec<(Worker, S)>,
    op: F,
) -> Result<(Phase, Vec<(Worker, S)>)>
where
    S: Send + 'static,
    F: for<'a> AsyncOp<'a, S> + Copy + Send + Sync + 'static,
{
    let start = Instant::now();
    let w0 = start + Duration::from_secs_f64(o.warmup);
    let w1 = w0 + Duration::from_secs_f64(o.seconds);
    let pids = t.pids.clone();
    let snapper = tokio::spawn(async move {
        tokio::time::sleep_until(w0.into()).await;
        let a = snap(&pids);
        tokio::time::sleep_until(w1.into()).await;
        (a, snap(&pids))
    });
    let mut handles = Vec::new();
    for (mut w, mut s) in states {
        let t = t.clone();
        handles.push(tokio::spawn(async move {
            let mut out = Vec::with_capacity(1 << 14);
            let mut errors = 0;
            let mut first_error = None;
            loop {
                let began = Instant::now();
                if began >= w1 {
                    break;
                }
                match op.call(&t, &mut w, &mut s).await {
                    Ok(()) => {
                        let end = Instant::now();
                        if end >= w0 && end <= w1 {
                            out.push((end, (end - began).as_micros() as u32));
                        }
                    }
                    Err(e) => {
                        if Instant::now() >= w0 {
                            errors += 1;
                        }
                        first_error.get_or_insert_with(|| format!("{e:#}"));
                        w.conn.sender = None;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
            (
                w,
                WorkerOut {
                    lat: out,
                    errors,
                    first_error,
                    state: s,
                },
            )
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    let mut back = Vec::new();
    for h in handles {
        let (w, r) = h.await?;
        all.extend(r.lat);
        errors += r.errors;
        if first_error.is_none() {
            first_error = r.first_error;
        }
        back.push((w, r.state));
    }
    let (a, b) = snapper.await?;
    let tck = clk_tck();
    let secs = (b.at - a.at).as_secs_f64();
    let busy = if b.total > a.total {
        1.0 - (b.idle - a.idle) / (b.total - a.total)
    } else {
        0.0
    };
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as f64;
    let buckets = o.seconds.ceil().max(1.0) as usize;
    let mut per_sec: Vec<Vec<u32>> = vec![Vec::new(); buckets];
    for (end, us) in &all {
        let i = ((*end - w0).as_secs_f64() as usize).min(buckets - 1);
        per_sec[i].push(*us);
    }
    let timeline = per_sec.iter().map(|v| v.len() as u64).collect();
    let p99_timeline = per_sec
        .iter_mut()
        .map(|v| {
            v.sort_unstable();
            percentile(v, 0.99)
        })
        .collect();
    let mut lat_us: Vec<u32> = all.iter().map(|(_, us)| *us).collect();
    lat_us.sort_unstable();
    Ok((
        Phase {
            phase: name.into(),
            ops: lat_us.len() as u64,
            errors,
            first_error,
            secs: secs.max(0.001),
            lat_us,
            server_cpu_s: (b.server - a.server) / tck,
            driver_cpu_s: (b.driver - a.driver) / tck,
            machine_busy_cores: busy * cores,
            cores,
            timeline,
            p99_timeline,
            checks: Checks::default(),
        },
        back,
    ))
}

/// An async operation over a worker and its state (a named trait so one `fn` item fits the
/// higher-ranked borrow).
trait AsyncOp<'a, S: 'a>: Send {
    type Fut: std::future::Future<Output = Result<()>> + Send + 'a;
    fn call(self, t: &'a Target, w: &'a mut Worker, s: &'a mut S) -> Self::Fut;
}

impl<'a, S: 'a, F, Fut> AsyncOp<'a, S> for F
where
    F: FnOnce(&'a Target, &'a mut Worker, &'a mut S) -> Fut + Send,
    Fut: std::future::Future<Output = Result<()>> + Send + 'a,
{
    type Fut = Fut;
    fn call(self, t: &'a Target, w: &'a mut Worker, s: &'a mut S) -> Fut {
        self(t, w, s)
    }
}

fn workers(t: &Target, n: usize) -> Vec<Worker> {
    (0..n)
        .map(|i| Worker {
            index: i,
            n: 0,
            conn: Conn::new(t.addrs[i % t.addrs.len()]),
        })
        .collect()
}

/// Keep every k-th access token, at most `cap` per worker.
#[derive(Default)]
struct Sample {
    seen: u64,
    items: Vec<(String, String)>,
}

impl Sample {
    fn add(&mut self, cap: usize, at: &str, cid: &str) {
        self.seen += 1;
        if self.items.len() < cap && self.seen % 4 == 1 {
            self.items.push((at.to_owned(), cid.to_owned()));
        }
    }
}

// ------------------------------------------------------------------------------------------
// Phases

#[derive(Default)]
struct CodeState {
    sample: Sample,
    cap: usize,
    first_rt: Option<String>,
}

async fn code_op(t: &Target, w: &mut Worker, s: &mut CodeState) -> Result<()> {
    let tok = full_flow(t, w, &t.client_id).await?;
    s.sample.add(s.cap, &tok.access, &t.client_id);
    if s.first_rt.is_none() {
        s.first_rt = Some(tok.refresh);
    }
    Ok(())
}

#[derive(Default)]
struct RefreshState {
    sample: Sample,
    cap: usize,
    rt: String,
    prev: Option<String>,
    rotations: u64,
}

async fn refresh_op(t: &Target, w: &mut Worker, s: &mut RefreshState) -> Result<()> {
    let r = token_request(
        t,
        &mut w.conn,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &s.rt),
            ("client_id", &t.client_id),
            ("resource", RESOURCE),
        ],
    )
    .await;
    let v = match r {
        Ok(v) => v,
        Err(e) => {
            // A failed rotation leaves the chain unknown: start a new one.
            if let Ok(tok) = full_flow(t, w, &t.client_id).await {
                s.rt = tok.refresh;
            }
            return Err(e);
        }
    };
    let rt = v["refresh_token"].as_str().context("no refresh_token")?;
    if rt == s.rt {
        bail!("refresh token not rotated");
    }
    s.prev = Some(std::mem::replace(&mut s.rt, rt.to_owned()));
    s.rotations += 1;
    if let Some(at) = v["access_token"].as_str() {
        s.sample.add(s.cap, at, &t.client_id);
    }
    Ok(())
}

struct IntrospectState {
    auth: Arc<String>,
    tokens: Arc<Vec<String>>,
    hint: &'static str,
    k: usize,
}

async fn introspect_once(
    t: &Target,
    c: &mut Conn,
    auth: &str,
    token: &str,
    hint: &str,
) -> Result<Value> {
    c.send(
        Method::POST,
        &t.introspect,
        &[("authorization", auth)],
        Body::Form(&[("token", token), ("token_type_hint", hint)]),
    )
    .await?
    .ok_json("introspect")
}

async fn introspect_op(t: &Target, w: &mut Worker, s: &mut IntrospectState) -> Result<()> {
    s.k += 1;
    let token = &s.tokens[(s.k + w.index * 7) % s.tokens.len()];
    let v = introspect_once(t, &mut w.conn, &s.auth, token, s.hint).await?;
    if v["active"] != true || v["client_id"] != t.client_id.as_str() {
        bail!("inactive or wrong introspection: {v}");
    }
    Ok(())
}

#[derive(Default)]
struct RegisterState {
    ids: Vec<String>,
    n: u64,
}

async fn register_op(t: &Target, w: &mut Worker, s: &mut RegisterState) -> Result<()> {
    s.n += 1;
    let name = format!("bench-dcr-{}-{}", w.index, s.n);
    let (id, _) = register_client(t, &mut w.conn, &name, false).await?;
    s.ids.push(id);
    Ok(())
}

async fn run_target(t: Arc<Target>, o: &Opts) -> Result<Vec<Phase>> {
    let cap = (o.verify_max / o.concurrency).max(1);
    let mut out = Vec::new();
    let mut probe = Worker {
        index: 999,
        n: 0,
        conn: Conn::new(t.addrs[0]),
    };
    for phase in &o.phases {
        eprintln!("{}: phase {phase} …", t.name);
        let ws = workers(&t, o.concurrency);
        let p = match phase.as_str() {
            "code" => {
                let st = ws
                    .into_iter()
                    .map(|w| {
                        (
                            w,
                            CodeState {
                                cap,
                                ..Default::default()
                            },
                        )
                    })
                    .collect();
                let (mut p, back) = run_phase("code", &t, o, st, code_op).await?;
                let sample: Vec<_> = back
                    .iter()
                    .flat_map(|(_, s)| s.sample.items.iter().cloned())
                    .collect();
                verify_sample(&t, &sample, &mut p.checks);
                // Durability probe: the first refresh token of the phase, used after it.
                if let Some(rt) = back.iter().find_map(|(_, s)| s.first_rt.clone()) {
                    let r = token_request(
                        &t,
                        &mut probe.conn,
                        &[
                            ("grant_type", "refresh_token"),
                            ("refresh_token", &rt),
                            ("client_id", &t.client_id),
                            ("resource", RESOURCE),
                        ],
                    )
                    .await;
                    p.checks.durable(
                        t.kind,
                        "first refresh token usable after the phase",
                        r.map(|_| ()),
                    );
                }
                p
            }
            "refresh" => {
                let mut st = Vec::new();
                for mut w in ws {
                    let tok = full_flow(&t, &mut w, &t.client_id).await?;
                    st.push((
                        w,
                        RefreshState {
                            cap,
                            rt: tok.refresh,
                            ..Default::default()
                        },
                    ));
                }
                let (mut p, back) = run_phase("refresh", &t, o, st, refresh_op).await?;
                let sample: Vec<_> = back
                    .iter()
                    .flat_map(|(_, s)| s.sample.items.iter().cloned())
                    .collect();
                verify_sample(&t, &sample, &mut p.checks);
                if let Some(prev) = back.iter().find_map(|(_, s)| s.prev.clone()) {
                    let r = probe
                        .conn
                        .send(
                            Method::POST,
                            &t.token,
                            &[],
                            Body::Form(&[
                                ("grant_type", "refresh_token"),
                                ("refresh_token", &prev),
                                ("client_id", &t.client_id),
                            ]),
                        )
                        .await?;
                    let rejected = r.status == 400
                        && r.json()
                            .map(|v| v["error"] == "invalid_grant")
                            .unwrap_or(false);
                    p.checks.check(
                        "reuse of a rotated-out refresh token rejected",
                        if rejected {
                            Ok(())
                        } else {
                            Err(anyhow!("HTTP {}", r.status))
                        },
                    );
                }
                let total: u64 = back.iter().map(|(_, s)| s.rotations).sum();
                p.checks.check(
                    &format!("{total} rotations, each a new refresh token"),
                    Ok(()),
                );
                p
            }
            "introspect" => {
                let mut pool = Vec::new();
                for _ in 0..(o.concurrency * 2).max(8) {
                    pool.push(full_flow(&t, &mut probe, &t.client_id).await?);
                }
                let auth = if t.kind == Kind::Peer {
                    // A resource server: a confidential client (client_secret_basic).
                    let (id, secret) =
                        register_client(&t, &mut probe.conn, "bench-rs", true).await?;
                    let secret = secret.context("DCR: no client_secret")?;
                    format!(
                        "Basic {}",
                        base64_std(&format!("{}:{}", enc(&id), enc(&secret)))
                    )
                } else {
                    t.introspect_auth.clone()
                };
                let auth = Arc::new(auth);
                // Access tokens if the server introspects them, else refresh tokens.
                // (the peer answers 400 unsupported_token_type for its JWT access tokens).
                let a =
                    introspect_once(&t, &mut probe.conn, &auth, &pool[0].access, "access_token")
                        .await
                        .unwrap_or_default();
                let (hint, tokens): (&'static str, Vec<String>) = if a["active"] == true {
                    ("access_token", pool.into_iter().map(|x| x.access).collect())
                } else {
                    (
                        "refresh_token",
                        pool.into_iter().map(|x| x.refresh).collect(),
                    )
                };
                let tokens = Arc::new(tokens);
                let st = ws
                    .into_iter()
                    .map(|w| {
                        (
                            w,
                            IntrospectState {
                                auth: auth.clone(),
                                tokens: tokens.clone(),
                                hint,
                                k: 0,
                            },
                        )
                    })
                    .collect();
                let (mut p, _) = run_phase("introspect", &t, o, st, introspect_op).await?;
                p.checks
                    .check(&format!("every answer active, {hint}s"), Ok(()));
                p
            }
            _ => {
                let st = ws
                    .into_iter()
                    .map(|w| (w, RegisterState::default()))
                    .collect();
                let (mut p, back) = run_phase("register", &t, o, st, register_op).await?;
                let ids: Vec<String> = back.into_iter().flat_map(|(_, s)| s.ids).collect();
                let mut uniq = ids.clone();
                uniq.sort_unstable();
                uniq.dedup();
                p.checks.check(
                    "client ids unique",
                    if uniq.len() == ids.len() {
                        Ok(())
                    } else {
                        Err(anyhow!("{} duplicates", ids.len() - uniq.len()))
                    },
                );
                let mut sampled = Vec::new();
                for cid in ids.iter().rev().take(3) {
                    match full_flow(&t, &mut probe, cid).await {
                        Ok(tok) => sampled.push((tok.access, cid.clone())),
                        Err(e) => p.checks.check("registered clients complete a flow", Err(e)),
                    }
                }
                if let Some(first) = ids.first() {
                    let r = full_flow(&t, &mut probe, first).await.map(|_| ());
                    p.checks
                        .durable(t.kind, "first registered client usable after the phase", r);
                }
                verify_sample(&t, &sampled, &mut p.checks);
                p
            }
        };
        print_phase(&t.name, &p);
        if o.timeline {
            let cells: Vec<String> = p
                .timeline
                .iter()
                .zip(&p.p99_timeline)
                .map(|(n, p99)| format!("{n}/{p99:.1}"))
                .collect();
            println!(
                "{:<20}   ops and p99 ms per second: {}",
                "",
                cells.join(" ")
            );
        }
        out.push(p);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(out)
}

// ------------------------------------------------------------------------------------------
// Output

fn print_header() {
    println!(
        "{:<20} {:<11} {:>9} {:>7} {:>7} {:>7} {:>5} {:>10} {:>10} {:>6}  checks",
        "server",
        "phase",
        "ops/s",
        "p50ms",
        "p90ms",
        "p99ms",
        "err",
        "srv µs/op",
        "drv µs/op",
        "idle"
    );
}

fn print_phase(server: &str, p: &Phase) {
    println!(
        "{:<20} {:<11} {:>9.0} {:>7.2} {:>7.2} {:>7.2} {:>5} {:>10.1} {:>10.1} {:>6.2}  {}",
        server,
        p.phase,
        p.ops_s(),
        p.pct(0.5),
        p.pct(0.9),
        p.pct(0.99),
        p.errors,
        p.server_us(),
        p.driver_us(),
        p.idle_cores(),
        if p.valid() {
            format!("ok ({})", p.checks.ok.join("; "))
        } else {
            format!("INVALID: {}", p.checks.failed.join("; "))
        }
    );
    if let Some(e) = &p.first_error {
        println!("{:<20}   first error: {e}", "");
    }
    for n in &p.checks.notes {
        println!("{:<20}   note: {n}", "");
    }
}

fn print_comparison(a: &[Phase], b: &[Phase]) {
    println!("\nconsentry vs node-oidc-provider (same run; ratios: throughput ×, server CPU/op ÷)");
    println!(
        "{:<11} {:>10} {:>10} {:>8} {:>9} {:>9} {:>12} {:>12} {:>8} {:>12}",
        "phase",
        "ops/s",
        "peer",
        "ratio",
        "p99 ms",
        "peer p99",
        "srv µs/op",
        "peer µs/op",
        "cpu ×",
        "drv µs/op"
    );
    for p in a {
        let Some(q) = b.iter().find(|q| q.phase == p.phase) else {
            continue;
        };
        println!(
            "{:<11} {:>10.0} {:>10.0} {:>7.2}× {:>9.2} {:>9.2} {:>12.1} {:>12.1} {:>7.2}× {:>5.1} / {:<5.1}{}",
            p.phase,
            p.ops_s(),
            q.ops_s(),
            p.ops_s() / q.ops_s().max(0.001),
            p.pct(0.99),
            q.pct(0.99),
            p.server_us(),
            q.server_us(),
            q.server_us() / p.server_us().max(0.001),
            p.driver_us(),
            q.driver_us(),
            if p.valid() && q.valid() {
                ""
            } else {
                "  (INVALID)"
            }
        );
    }
}

async fn run(o: Opts) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("consentry-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "bench: {} workers, {} s window (+{} s warm-up) per phase, {} cores shared by driver and server, \
         consentry on {}{}",
        o.concurrency,
        o.seconds,
        o.warmup,
        cores,
        match &o.database_url {
            Some(u) if u.starts_with("postgres") => "PostgreSQL".to_string(),
            Some(u) => u.clone(),
            None => "a SQLite file (WAL, synchronous=FULL)".into(),
        },
        if o.instances > 1 {
            format!(", {} instances", o.instances)
        } else {
            String::new()
        }
    );
    print_header();
    let mut report = json!({"workers": o.concurrency, "seconds": o.seconds, "cores": cores});
    let mut ours = Vec::new();
    let mut invalid = 0;
    if o.consentry {
        ours = run_consentry(&o, &dir, None).await?;
        invalid += ours.iter().filter(|p| !p.valid()).count();
        report["consentry"] = Value::Array(ours.iter().map(Phase::json).collect());
    }
    if o.seeded > 0 {
        let seeded_dir = dir.join("seeded");
        std::fs::create_dir_all(&seeded_dir)?;
        let url = format!("sqlite://{}", seeded_dir.join("consentry.db").display());
        let seed = std::env::current_exe()?.with_file_name("seed");
        println!("seeding {} users into {url} …", o.seeded);
        let st = Command::new(&seed)
            .args(["--database-url", &url, "--users", &o.seeded.to_string()])
            .stdout(Stdio::null())
            .status()
            .with_context(|| format!("running {}", seed.display()))?;
        if !st.success() {
            bail!("seeding failed: {st}");
        }
        let grown = run_consentry(&o, &seeded_dir, Some(url)).await?;
        invalid += grown.iter().filter(|p| !p.valid()).count();
        report["consentry_seeded"] = Value::Array(grown.iter().map(Phase::json).collect());
        print_growth(&ours, &grown, o.seeded);
    }
    if let Some(peer) = &o.peer {
        let t = Arc::new(start_peer(peer).await?);
        let theirs = run_target(t.clone(), &o).await?;
        invalid += theirs.iter().filter(|p| !p.valid()).count();
        println!("peer max RSS: {}", vm_hwm(t.pids[0]));
        report["peer"] = Value::Array(theirs.iter().map(Phase::json).collect());
        drop(t);
        if !ours.is_empty() {
            print_comparison(&ours, &theirs);
        }
    }
    if let Some(path) = &o.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    if invalid > 0 {
        bail!("{invalid} phase(s) INVALID: a check failed or nothing completed (see above)");
    }
    Ok(())
}

/// Start Consentry (on `db`, else `--database-url`, else a fresh SQLite file), run the phases,
/// stop it.
async fn run_consentry(o: &Opts, dir: &Path, db: Option<String>) -> Result<Vec<Phase>> {
    let t = Arc::new(start_consentry(o, dir, db).await?);
    let phases = run_target(t.clone(), o).await?;
    let rss = t
        .pids
        .iter()
        .map(|p| vm_hwm(*p))
        .collect::<Vec<_>>()
        .join(", ");
    println!("consentry max RSS: {rss}");
    Ok(phases)
}

fn print_growth(empty: &[Phase], seeded: &[Phase], users: u64) {
    println!("\nempty store vs {users} seeded users (one run; change in %)");
    println!(
        "{:<11} {:>10} {:>10} {:>8} {:>9} {:>9} {:>10} {:>10} {:>8}",
        "phase", "ops/s", "seeded", "Δ", "p99 ms", "seeded", "µs/op", "seeded", "Δ"
    );
    let pct = |a: f64, b: f64| (b / a.max(1e-9) - 1.0) * 100.0;
    for p in empty {
        let Some(q) = seeded.iter().find(|q| q.phase == p.phase) else {
            continue;
        };
        println!(
            "{:<11} {:>10.0} {:>10.0} {:>+7.1}% {:>9.2} {:>9.2} {:>10.1} {:>10.1} {:>+7.1}%{}",
            p.phase,
            p.ops_s(),
            q.ops_s(),
            pct(p.ops_s(), q.ops_s()),
            p.pct(0.99),
            q.pct(0.99),
            p.server_us(),
            q.server_us(),
            pct(p.server_us(), q.server_us()),
            if p.valid() && q.valid() {
                ""
            } else {
                "  (INVALID)"
            }
        );
    }
}

fn vm_hwm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn main() -> std::process::ExitCode {
    consentry_server::install_crypto_providers();
    let r = opts().and_then(|o| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(run(o))
    });
    match r {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
