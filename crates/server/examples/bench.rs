//! Load benchmark: starts the release `consentry` binary on a fresh SQLite file (or the database
//! given with --database-url) and drives, over loopback HTTP with N concurrent workers:
//!
//! 1. full flows: attest (fresh ES256 TAT) → authorize/start → authorize/submit → token;
//! 2. refresh grants (each worker rotating its own refresh token);
//!
//! then prints throughput, latency percentiles and the server's CPU time per operation.
//!
//! `cargo xtask bench [--seconds 10] [--concurrency 16] [--database-url postgres://…]`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use consentry_server::config::builder::{Client, ConfigBuilder, Resource, TokenProfile};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const RESOURCE: &str = "http://127.0.0.1:8788/mcp";
const REDIRECT: &str = "http://127.0.0.1:33418/callback";

struct Opts {
    seconds: u64,
    concurrency: usize,
    database_url: Option<String>,
}

fn opts() -> Opts {
    let mut o = Opts {
        seconds: 10,
        concurrency: 16,
        database_url: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let v = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--seconds" => o.seconds = v.parse().expect("--seconds N"),
            "--concurrency" => o.concurrency = v.parse().expect("--concurrency N"),
            "--database-url" => o.database_url = Some(v),
            "--help" | "-h" => {
                println!("bench [--seconds 10] [--concurrency 16] [--database-url URL]");
                std::process::exit(0);
            }
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    o
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// user + system CPU seconds of a process, from /proc (Linux).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // fields after ")" start at state (3rd field); utime is field 14, stime 15 (1-based).
    (ticks(11) + ticks(12)) / 100.0
}

fn pkce() -> (String, String) {
    let verifier = consentry_server::crypto::random_token(32);
    let challenge = consentry_server::crypto::pkce_s256_challenge(&verifier);
    (verifier, challenge)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct Phase {
    name: &'static str,
    ops: u64,
    errors: u64,
    seconds: f64,
    lat_ms: Vec<f64>,
    server_cpu: f64,
}

impl Phase {
    fn print(&self) {
        println!(
            "{:<28} {:>9.0} ops/s  p50 {:>6.2} ms  p90 {:>6.2} ms  p99 {:>6.2} ms  server CPU {:>6.1} µs/op  ({} ops, {} errors, {:.1} s)",
            self.name,
            self.ops as f64 / self.seconds,
            percentile(&self.lat_ms, 0.50),
            percentile(&self.lat_ms, 0.90),
            percentile(&self.lat_ms, 0.99),
            self.server_cpu * 1e6 / (self.ops.max(1) as f64),
            self.ops,
            self.errors,
            self.seconds,
        );
    }

    fn json(&self) -> Value {
        json!({
            "phase": self.name, "ops_per_s": (self.ops as f64 / self.seconds).round(),
            "p50_ms": percentile(&self.lat_ms, 0.5), "p90_ms": percentile(&self.lat_ms, 0.9),
            "p99_ms": percentile(&self.lat_ms, 0.99), "errors": self.errors,
            "server_cpu_us_per_op": (self.server_cpu * 1e6 / (self.ops.max(1) as f64)).round(),
        })
    }
}

struct Ctx {
    http: reqwest::Client,
    base: String,
    key: EncodingKey,
}

async fn post_json(ctx: &Ctx, path: &str, bearer: Option<&str>, body: &Value) -> Value {
    let mut r = ctx.http.post(format!("{}{path}", ctx.base)).json(body);
    if let Some(b) = bearer {
        r = r.bearer_auth(b);
    }
    let resp = r.send().await.expect("request");
    let status = resp.status();
    let v: Value = resp.json().await.expect("json");
    assert!(status.is_success(), "{path}: {status} {v}");
    v
}

async fn token(ctx: &Ctx, form: &[(&str, &str)]) -> Value {
    let resp = ctx
        .http
        .post(format!("{}/oauth2/token", ctx.base))
        .form(form)
        .send()
        .await
        .expect("token");
    let status = resp.status();
    let v: Value = resp.json().await.expect("json");
    assert!(status.is_success(), "token: {status} {v}");
    v
}

/// attest → start → submit → token; returns the token response.
async fn flow(ctx: &Ctx, user: &str) -> Value {
    let t = now();
    let tat = jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        &json!({"iss": "urn:bench:issuer", "aud": "urn:bench:audience", "sub": user, "iat": t,
                "exp": t + 300, "jti": consentry_server::crypto::random_token(12)}),
        &ctx.key,
    )
    .unwrap();
    let att = post_json(
        ctx,
        "/v1/sessions/attest",
        None,
        &json!({"token": tat, "profile_id": "default"}),
    )
    .await;
    let session = att["session_token"].as_str().unwrap().to_owned();
    let (verifier, challenge) = pkce();
    let params = json!({
        "client_id": "bench", "redirect_uri": REDIRECT, "response_type": "code",
        "scope": "notes:read", "state": "s", "code_challenge": challenge,
        "code_challenge_method": "S256", "resource": [RESOURCE],
    });
    post_json(ctx, "/v1/oauth/authorize/start", Some(&session), &params).await;
    let mut submit = params.clone();
    submit["consent_granted"] = json!(true);
    let sub = post_json(ctx, "/v1/oauth/authorize/submit", Some(&session), &submit).await;
    let loc = sub["redirect_uri"].as_str().unwrap();
    let code = loc
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("code="))
        .unwrap()
        .to_owned();
    token(
        ctx,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", "bench"),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
            ("resource", RESOURCE),
        ],
    )
    .await
}

async fn run_phase<F, Fut>(name: &'static str, ctx: Arc<Ctx>, o: &Opts, pid: u32, work: F) -> Phase
where
    F: Fn(Arc<Ctx>, usize, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let cpu0 = cpu_seconds(pid);
    let t0 = Instant::now();
    let mut handles = Vec::new();
    for w in 0..o.concurrency {
        let (ctx, stop, errors, work) = (ctx.clone(), stop.clone(), errors.clone(), work.clone());
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                if work(ctx.clone(), w, n).await {
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                n += 1;
            }
            lat
        }));
    }
    tokio::time::sleep(Duration::from_secs(o.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut lat_ms = Vec::new();
    for h in handles {
        lat_ms.extend(h.await.unwrap());
    }
    let seconds = t0.elapsed().as_secs_f64();
    let server_cpu = cpu_seconds(pid) - cpu0;
    lat_ms.sort_by(|a, b| a.total_cmp(b));
    Phase {
        name,
        ops: lat_ms.len() as u64,
        errors: errors.load(Ordering::Relaxed),
        seconds,
        lat_ms,
        server_cpu,
    }
}

#[tokio::main]
async fn main() {
    consentry_server::install_crypto_providers();
    let o = opts();
    let exe = std::env::current_exe().unwrap();
    let server_bin = exe
        .parent()
        .and_then(|p| p.parent())
        .unwrap()
        .join("consentry");
    assert!(
        server_bin.exists(),
        "build the server first: cargo build --release -p consentry-server"
    );
    let dir = tempfile::tempdir().unwrap();
    let (private_pem, public_pem) =
        consentry_server::keys::generate_pem_keypair(consentry_server::keys::SigningAlg::ES256)
            .unwrap();
    std::fs::write(dir.path().join("tat_public.pem"), public_pem).unwrap();
    let port = free_port();
    let db = o
        .database_url
        .clone()
        .unwrap_or_else(|| "sqlite://bench.db".into());
    let config = ConfigBuilder::loopback(port, "http://127.0.0.1:3000/oauth/authorize")
        .database_url(db)
        .token_profile(TokenProfile::with_key_file(
            "default",
            "urn:bench:issuer",
            "urn:bench:audience",
            "tat_public.pem",
            &["ES256"],
        ))
        .scope("notes:read", "Read your notes")
        .resource(Resource::new(RESOURCE, "Notes", &["notes:read"]).default_scopes(&["notes:read"]))
        .client(Client {
            token_endpoint_auth_method: None,
            ..Client::public("bench", "Bench", &[REDIRECT])
        })
        .to_toml()
        .unwrap();
    std::fs::write(dir.path().join("consentry.toml"), config).unwrap();
    let mut child = Command::new(&server_bin)
        .args(["serve", "--config"])
        .arg(dir.path().join("consentry.toml"))
        .env("CONSENTRY_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    for _ in 0..200 {
        if http.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ctx = Arc::new(Ctx {
        http,
        base,
        key: EncodingKey::from_ec_pem(private_pem.as_bytes()).unwrap(),
    });
    println!(
        "consentry bench: {} workers, {} s per phase, database {}, {} cores",
        o.concurrency,
        o.seconds,
        if o.database_url.is_some() {
            "postgres"
        } else {
            "SQLite (WAL, file)"
        },
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );

    let flows = run_phase(
        "flow (attest→start→submit→token)",
        ctx.clone(),
        &o,
        pid,
        |ctx, w, n| async move {
            let user = format!("user-{}", (w as u64 * 7919 + n) % 1000);
            flow(&ctx, &user).await["access_token"].is_string()
        },
    )
    .await;
    flows.print();

    // One refresh token per worker, rotated in a loop.
    let mut seeds = Vec::new();
    for w in 0..o.concurrency {
        seeds.push(tokio::sync::Mutex::new(
            flow(&ctx, &format!("refresher-{w}")).await["refresh_token"]
                .as_str()
                .unwrap()
                .to_owned(),
        ));
    }
    let seeds = Arc::new(seeds);
    let refreshes = run_phase(
        "refresh (rotation)",
        ctx.clone(),
        &o,
        pid,
        move |ctx, w, _| {
            let seeds = seeds.clone();
            async move {
                let mut slot = seeds[w].lock().await;
                let t = token(
                    &ctx,
                    &[
                        ("grant_type", "refresh_token"),
                        ("refresh_token", &slot),
                        ("client_id", "bench"),
                    ],
                )
                .await;
                match t["refresh_token"].as_str() {
                    Some(r) => {
                        *slot = r.to_owned();
                        true
                    }
                    None => false,
                }
            }
        },
    )
    .await;
    refreshes.print();
    println!("{}", json!({"results": [flows.json(), refreshes.json()]}));
    let _ = child.kill();
    let _ = child.wait();
}
