//! The load the fault tests put on the server: workers running the whole life of a grant
//! (registration, login, consent, code, rotations, revocation) over real HTTP, recording every
//! operation the server acknowledged in a ledger, and every answer by status and error code.
//! Nothing here panics on a failed request: a request cut by a crash is simply not acknowledged.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use consentry_testkit::{
    CLIENT, Pkce, REDIRECT, RESOURCE, TatKeys, TestServer, form_body, params, query,
};
use serde_json::{Value, json};

/// The resource's introspection secret (`Setup::introspection_secret`).
pub const NOTES_SECRET: &str = "notes-introspection-secret-0123456789abcdef";

/// The extra config every fault server gets: open registration without rate limits (the load
/// registers hundreds of clients from one address).
pub const OPEN_REGISTRATION: &str = "[registration]\nmode = \"open\"\nrate_limit_per_minute = 1000000\nglobal_rate_limit_per_minute = 1000000\n";

/// What the server acknowledged (answered with success) and so must hold after any fault.
#[derive(Clone, Default)]
pub struct Ledger {
    /// `(client_id, registration_access_token)` of each `201` registration.
    pub registrations: Vec<(String, String)>,
    /// `(code, verifier)` of each code redeemed with `200`.
    pub used_codes: Vec<(String, String)>,
    /// Refresh tokens rotated with `200` (each was answered with its successor).
    pub rotated: Vec<String>,
    /// `(refresh token, access token)` of grants revoked with `200` (connected-app revocation or
    /// RFC 7009 revocation of the refresh token).
    pub revoked: Vec<(String, String)>,
}

/// Every answer, by `status error_code` ("200", "503 temporarily_unavailable", "transport"…).
#[derive(Default)]
pub struct Tally {
    pub by_kind: Mutex<BTreeMap<String, u64>>,
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    /// Longest time one request took, in ms.
    pub slowest_ms: AtomicU64,
}

impl Tally {
    fn note(&self, kind: &str, ok: bool, took: Duration) {
        *self
            .by_kind
            .lock()
            .unwrap()
            .entry(kind.to_owned())
            .or_default() += 1;
        if ok {
            self.ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        self.slowest_ms
            .fetch_max(took.as_millis() as u64, Ordering::Relaxed);
    }

    pub fn kinds(&self) -> BTreeMap<String, u64> {
        self.by_kind.lock().unwrap().clone()
    }

    /// Kinds that are neither a success nor one of `allowed`.
    pub fn unexpected(&self, allowed: &[&str]) -> BTreeMap<String, u64> {
        self.kinds()
            .into_iter()
            .filter(|(k, _)| !(k.starts_with('2') || allowed.contains(&k.as_str())))
            .collect()
    }
}

/// A non-panicking HTTP client for one server.
#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
    pub keys: TatKeys,
    pub tally: Arc<Tally>,
}

pub type Answer = Result<(u16, Value), String>;

impl Client {
    pub fn new(server: &TestServer) -> Client {
        Client {
            base: server.base.clone(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            keys: server.keys.clone(),
            tally: Arc::default(),
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Answer {
        let started = Instant::now();
        let r = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                self.tally.note("transport", false, started.elapsed());
                return Err(format!("transport: {e}"));
            }
        };
        let status = r.status().as_u16();
        let body = match r.bytes().await {
            Ok(b) => serde_json::from_slice(&b)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&b).into_owned())),
            Err(e) => {
                self.tally.note("transport", false, started.elapsed());
                return Err(format!("transport (body): {e}"));
            }
        };
        let ok = (200..300).contains(&status);
        let kind = match body["error"].as_str() {
            Some(code) if !ok => format!("{status} {code}"),
            _ => status.to_string(),
        };
        self.tally.note(&kind, ok, started.elapsed());
        Ok((status, body))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str, bearer: Option<&str>) -> Answer {
        let mut req = self.http.get(self.url(path));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        self.send(req).await
    }

    pub async fn post_json(&self, path: &str, bearer: Option<&str>, body: &Value) -> Answer {
        let mut req = self.http.post(self.url(path)).json(body);
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        self.send(req).await
    }

    pub async fn post_form(
        &self,
        path: &str,
        bearer: Option<&str>,
        form: &[(&str, &str)],
    ) -> Answer {
        let mut req = self
            .http
            .post(self.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(form));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        self.send(req).await
    }

    /// `Ok(body)` for a `2xx`, `Err(description)` otherwise.
    async fn expect_ok(&self, what: &str, answer: Answer) -> Result<Value, String> {
        match answer? {
            (s, body) if (200..300).contains(&s) => Ok(body),
            (s, body) => Err(format!("{what}: {s} {body}")),
        }
    }

    pub async fn register(&self, name: &str) -> Result<(String, String), String> {
        let body = json!({
            "client_name": name,
            "redirect_uris": [REDIRECT],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
        });
        let reg = self
            .expect_ok(
                "register",
                self.post_json("/oauth2/register", None, &body).await,
            )
            .await?;
        Ok((
            reg["client_id"].as_str().unwrap_or_default().to_owned(),
            reg["registration_access_token"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ))
    }

    pub async fn session(&self, user: &str) -> Result<String, String> {
        let body = json!({"token": self.keys.tat(user), "profile_id": "default", "session_duration_minutes": 10});
        let r = self
            .expect_ok(
                "attest",
                self.post_json("/v1/sessions/attest", None, &body).await,
            )
            .await?;
        Ok(r["session_token"].as_str().unwrap_or_default().to_owned())
    }

    /// attest → start → submit(allow): the session and the code.
    pub async fn code(&self, user: &str, pkce: &Pkce) -> Result<(String, String), String> {
        let session = self.session(user).await?;
        let p = params(pkce, "notes:read");
        self.expect_ok(
            "start",
            self.post_json("/v1/oauth/authorize/start", Some(&session), &p)
                .await,
        )
        .await?;
        let mut body = p.clone();
        body["consent_granted"] = json!(true);
        let r = self
            .expect_ok(
                "submit",
                self.post_json("/v1/oauth/authorize/submit", Some(&session), &body)
                    .await,
            )
            .await?;
        let loc = r["redirect_uri"].as_str().unwrap_or_default();
        let code = query(loc)
            .get("code")
            .cloned()
            .ok_or_else(|| format!("no code in {loc}"))?;
        Ok((session, code))
    }

    pub async fn redeem(&self, code: &str, verifier: &str) -> Answer {
        self.post_form(
            "/oauth2/token",
            None,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("client_id", CLIENT),
                ("redirect_uri", REDIRECT),
                ("code_verifier", verifier),
                ("resource", RESOURCE),
            ],
        )
        .await
    }

    pub async fn refresh(&self, refresh_token: &str) -> Answer {
        self.post_form(
            "/oauth2/token",
            None,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
                ("client_id", CLIENT),
            ],
        )
        .await
    }

    pub async fn introspect(&self, token: &str) -> Answer {
        self.post_form(
            "/oauth2/introspect",
            Some(NOTES_SECRET),
            &[("token", token)],
        )
        .await
    }

    /// One whole life of a grant for a user of its own, recording what was acknowledged.
    /// Stops at the first failure (the server may be gone).
    pub async fn cycle(&self, worker: usize, n: u64, ledger: &Mutex<Ledger>) -> Result<(), String> {
        let reg = self.register(&format!("fault client {worker}-{n}")).await?;
        ledger.lock().unwrap().registrations.push(reg);

        let user = format!("fault-{worker}-{n}-{}", consentry_testkit::random_id());
        let pkce = Pkce::new();
        let (session, code) = self.code(&user, &pkce).await?;
        let tokens = self
            .expect_ok("redeem", self.redeem(&code, &pkce.verifier).await)
            .await?;
        ledger
            .lock()
            .unwrap()
            .used_codes
            .push((code, pkce.verifier.clone()));

        let mut refresh = tokens["refresh_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let mut access = tokens["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        for _ in 0..2 {
            let t = self
                .expect_ok("refresh", self.refresh(&refresh).await)
                .await?;
            ledger.lock().unwrap().rotated.push(refresh);
            refresh = t["refresh_token"].as_str().unwrap_or_default().to_owned();
            access = t["access_token"].as_str().unwrap_or_default().to_owned();
        }

        // Half the grants end with the user's revocation of the app, half with RFC 7009.
        let revoked = if n.is_multiple_of(2) {
            self.post_json(
                &format!("/v1/connected_apps/{CLIENT}/revoke"),
                Some(&session),
                &json!({}),
            )
            .await
        } else {
            self.post_form(
                "/oauth2/revoke",
                None,
                &[("token", &refresh), ("client_id", CLIENT)],
            )
            .await
        };
        self.expect_ok("revoke", revoked).await?;
        ledger.lock().unwrap().revoked.push((refresh, access));
        Ok(())
    }
}

/// Workers running [`Client::cycle`] until stopped.
pub struct Load {
    pub stop: Arc<AtomicBool>,
    pub cycles: Arc<AtomicU64>,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(client: &Client, workers: usize, ledger: &Arc<Mutex<Ledger>>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let cycles = Arc::new(AtomicU64::new(0));
        let handles = (0..workers)
            .map(|w| {
                let (client, ledger, stop, cycles) =
                    (client.clone(), ledger.clone(), stop.clone(), cycles.clone());
                tokio::spawn(async move {
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        if client.cycle(w, n, &ledger).await.is_ok() {
                            cycles.fetch_add(1, Ordering::Relaxed);
                        } else {
                            // The server is gone or refusing: do not spin.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            cycles,
            handles,
        }
    }

    pub async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.handles {
            h.await.unwrap();
        }
        self.cycles.load(Ordering::Relaxed)
    }
}

/// Check every acknowledged operation of `ledger` against the (restarted) server, 8 requests at a
/// time; returns the violations found.
pub async fn check_ledger(client: &Client, ledger: &Ledger) -> Vec<String> {
    const PARTS: usize = 8;
    fn part<T: Clone>(list: &[T], i: usize) -> Vec<T> {
        list.iter().skip(i).step_by(PARTS).cloned().collect()
    }
    let tasks: Vec<_> = (0..PARTS)
        .map(|i| {
            let slice = Ledger {
                registrations: part(&ledger.registrations, i),
                used_codes: part(&ledger.used_codes, i),
                rotated: part(&ledger.rotated, i),
                revoked: part(&ledger.revoked, i),
            };
            let client = client.clone();
            tokio::spawn(async move { check_part(&client, &slice).await })
        })
        .collect();
    let mut bad = Vec::new();
    for t in tasks {
        bad.extend(t.await.unwrap());
    }
    bad
}

async fn check_part(client: &Client, ledger: &Ledger) -> Vec<String> {
    let mut bad = Vec::new();
    for (id, rat) in &ledger.registrations {
        match client
            .get(&format!("/oauth2/register/{id}"), Some(rat))
            .await
        {
            Ok((200, _)) => {}
            other => bad.push(format!("registration {id} missing: {other:?}")),
        }
    }
    for (code, verifier) in &ledger.used_codes {
        if let Ok((200, body)) = client.redeem(code, verifier).await {
            bad.push(format!("a used code was redeemed again: {body}"));
        }
    }
    for rt in &ledger.rotated {
        if let Ok((200, _)) = client.refresh(rt).await {
            bad.push("a rotated refresh token was valid a second time".into());
        }
    }
    for (rt, at) in &ledger.revoked {
        if let Ok((200, _)) = client.refresh(rt).await {
            bad.push("a revoked grant's refresh token still worked".into());
        }
        match client.introspect(at).await {
            Ok((200, body)) if body["active"] == json!(false) => {}
            other => bad.push(format!(
                "a revoked grant's access token is not inactive: {other:?}"
            )),
        }
    }
    bad
}

/// Resident memory of a process, in KiB (Linux `/proc`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Poll `f` until it is true or `within` passes; returns how long it took.
pub async fn wait_until<F, Fut>(within: Duration, mut f: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < within {
        if f().await {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}
