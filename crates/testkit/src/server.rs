//! The server harness: start the real `consentry` binary on a free loopback port with a config of
//! our own (its own TAT keypair, clients and resources, rendered by [`ConfigBuilder`]) on SQLite or
//! PostgreSQL, and talk to it over HTTP like any independent client would.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::config::{Client, ConfigBuilder, Resource, Scope, TokenProfile};

pub const RESOURCE: &str = "http://127.0.0.1:8788/mcp";
pub const OTHER_RESOURCE: &str = "http://127.0.0.1:8789/files";
pub const CLIENT: &str = "demo-agent";
pub const REDIRECT: &str = "http://127.0.0.1:9999/callback";
pub const TAT_ISS: &str = "urn:test:issuer";
pub const TAT_AUD: &str = "urn:test:audience";

#[derive(Clone, Debug)]
pub enum Backend {
    Sqlite,
    Postgres(String),
}

impl Backend {
    /// PostgreSQL from `CONSENTRY_TEST_POSTGRES_URL`. `None` (skip) when unset, unless
    /// `CONSENTRY_REQUIRE_POSTGRES=1` (the README's test command sets both), then it fails.
    pub fn postgres() -> Option<Backend> {
        match std::env::var("CONSENTRY_TEST_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => Some(Backend::Postgres(url)),
            _ => {
                if std::env::var("CONSENTRY_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                    panic!(
                        "CONSENTRY_REQUIRE_POSTGRES=1 but CONSENTRY_TEST_POSTGRES_URL is not set"
                    );
                }
                eprintln!("skipping PostgreSQL variant: CONSENTRY_TEST_POSTGRES_URL is not set");
                None
            }
        }
    }
}

/// Run each listed `async fn name(Backend)` as `sqlite::name` and `postgres::name`. Expanded in
/// the calling crate, so that a test of `consentry-server` itself runs the binary cargo built for
/// it (`CARGO_BIN_EXE_consentry`, see [`binary`]).
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::use_binary(option_env!("CARGO_BIN_EXE_consentry"));
                    super::$name($crate::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::use_binary(option_env!("CARGO_BIN_EXE_consentry"));
                    if let Some(b) = $crate::Backend::postgres() {
                        super::$name(b).await
                    }
                }
            )*
        }
    };
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn random_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:x}{:x}{:x}", std::process::id(), t & 0xffff_ffff, n)
}

/// A keypair the test's "product" uses to mint Trusted Auth Tokens.
#[derive(Clone)]
pub struct TatKeys {
    pub private_pem: String,
    pub public_pem: String,
    pub alg: Algorithm,
}

impl TatKeys {
    pub fn es256() -> TatKeys {
        let (private_pem, public_pem) =
            consentry_server::keys::generate_pem_keypair(consentry_server::keys::SigningAlg::ES256)
                .unwrap();
        TatKeys {
            private_pem,
            public_pem,
            alg: Algorithm::ES256,
        }
    }

    pub fn rs256() -> TatKeys {
        let (private_pem, public_pem) =
            consentry_server::keys::generate_pem_keypair(consentry_server::keys::SigningAlg::RS256)
                .unwrap();
        TatKeys {
            private_pem,
            public_pem,
            alg: Algorithm::RS256,
        }
    }

    pub fn encoding_key(&self) -> EncodingKey {
        match self.alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(self.private_pem.as_bytes()).unwrap(),
            _ => EncodingKey::from_ec_pem(self.private_pem.as_bytes()).unwrap(),
        }
    }

    /// Sign arbitrary claims with this key.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with_header(Header::new(self.alg), claims)
    }

    pub fn sign_with_header(&self, header: Header, claims: &Value) -> String {
        jsonwebtoken::encode(&header, claims, &self.encoding_key()).unwrap()
    }

    /// A valid TAT for `user`.
    pub fn tat(&self, user: &str) -> String {
        self.sign(&tat_claims(user))
    }
}

pub fn tat_claims(user: &str) -> Value {
    let now = now();
    json!({
        "iss": TAT_ISS, "aud": TAT_AUD, "sub": user, "iat": now, "exp": now + 300,
        "jti": random_id(), "email": format!("{user}@example.com"), "name": "Test User",
    })
}

/// A typed change to the harness's config, applied before rendering.
pub type ConfigEdit = Arc<dyn Fn(&mut ConfigBuilder) + Send + Sync>;

/// A config file, editable before start: the harness's config ([`test_config`]) with typed edits
/// ([`Setup::configure`]), then raw top-level overrides ([`Setup::top`]) and raw TOML appended
/// ([`Setup::extra`]) for what a test wants to write by hand (invalid values, aliases, tables the
/// builder does not model).
#[derive(Clone)]
pub struct Setup {
    pub backend: Backend,
    pub keys: TatKeys,
    /// Extra TOML appended at the end (more profiles, clients, scopes…).
    pub extra: String,
    /// Top-level keys overriding the defaults: `(key, TOML value)`.
    pub top: Vec<(String, String)>,
    /// The default profile's `algorithms`.
    pub profile_algorithms: Vec<String>,
    pub edits: Vec<ConfigEdit>,
}

impl Setup {
    pub fn new(backend: Backend) -> Setup {
        Setup {
            backend,
            keys: TatKeys::es256(),
            extra: String::new(),
            top: Vec::new(),
            profile_algorithms: vec!["ES256".into()],
            edits: Vec::new(),
        }
    }

    /// A typed change to the config (`|c| c.access_token_ttl_seconds = Some(30)`).
    pub fn configure(mut self, edit: impl Fn(&mut ConfigBuilder) + Send + Sync + 'static) -> Setup {
        self.edits.push(Arc::new(edit));
        self
    }

    /// `introspection_secret` of the `RESOURCE` table.
    pub fn introspection_secret(self, secret: &str) -> Setup {
        let secret = secret.to_owned();
        self.configure(move |c| {
            if let Some(r) = c.resources.iter_mut().find(|r| r.uri == RESOURCE) {
                r.introspection_secret = Some(secret.clone());
            }
        })
    }

    /// A top-level key, its value written as TOML (`"30"`, `"\"text\""`, `"[\"a\"]"`).
    pub fn top(mut self, key: &str, value: &str) -> Setup {
        self.top.push((key.into(), value.into()));
        self
    }

    pub fn extra(mut self, toml: &str) -> Setup {
        self.extra.push_str(toml);
        self.extra.push('\n');
        self
    }

    pub async fn start(self) -> TestServer {
        TestServer::start(self).await
    }

    /// The config file's text for a server on `port` with `database_url`.
    pub fn render(&self, port: u16, database_url: &str) -> String {
        let mut config = test_config(port, database_url, &self.profile_algorithms);
        for edit in &self.edits {
            edit(&mut config);
        }
        let mut table = match toml::Value::try_from(&config).unwrap() {
            toml::Value::Table(t) => t,
            other => panic!("a config renders as a table, not {other}"),
        };
        for (key, value) in &self.top {
            let parsed: toml::Table = toml::from_str(&format!("v = {value}"))
                .unwrap_or_else(|e| panic!("top({key:?}, {value:?}) is not a TOML value: {e}"));
            table.insert(key.clone(), parsed["v"].clone());
        }
        let mut text = toml::to_string(&table).unwrap();
        text.push('\n');
        text.push_str(&self.extra);
        text
    }
}

/// The harness's config: issuer and listen on `port`, the TAT profile `default` (`TAT_ISS`,
/// `TAT_AUD`, key in `tat_public.pem`), the notes and files scopes and resources, and the
/// clients `demo-agent` (`REDIRECT`), `native-app` and `other-agent`.
pub fn test_config(port: u16, database_url: &str, algorithms: &[String]) -> ConfigBuilder {
    let algorithms: Vec<&str> = algorithms.iter().map(String::as_str).collect();
    let mut c = ConfigBuilder::loopback(port, "http://127.0.0.1:3000/oauth/authorize")
        .database_url(database_url)
        .allowed_origin("http://127.0.0.1:3000")
        .token_profile(TokenProfile {
            max_lifetime_seconds: Some(900),
            jit_provisioning: Some(true),
            ..TokenProfile::with_key_file(
                "default",
                TAT_ISS,
                TAT_AUD,
                "tat_public.pem",
                &algorithms,
            )
        })
        .scope("notes:read", "Read your notes")
        .scope("notes:write", "Create and change your notes");
    c.scopes.push(Scope {
        name: "notes:admin".into(),
        description: "Administer notes".into(),
        required_roles: vec!["admin".into()],
    });
    c.scope("files:read", "Read your files")
        .resource(
            Resource::new(
                RESOURCE,
                "Notes",
                &["notes:read", "notes:write", "notes:admin"],
            )
            .default_scopes(&["notes:read"]),
        )
        .resource(
            Resource::new(OTHER_RESOURCE, "Files", &["files:read"]).default_scopes(&["files:read"]),
        )
        .client(Client::public(CLIENT, "Demo agent", &[REDIRECT]))
        .client(Client {
            token_endpoint_auth_method: None,
            ..Client::public(
                "native-app",
                "Native app",
                &["http://127.0.0.1/callback", "com.example.app:/oauth/cb"],
            )
        })
        .client(Client {
            token_endpoint_auth_method: None,
            ..Client::public(
                "other-agent",
                "Other agent",
                &["https://other.example.com/cb"],
            )
        })
}

pub struct TestServer {
    pub base: String,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub keys: TatKeys,
    pub http: reqwest::Client,
    child: Option<Child>,
    pub database_url: String,
    pub port: u16,
}

static BINARY: OnceLock<PathBuf> = OnceLock::new();

/// Run this binary (the first call with `Some` wins). `on_both_backends!` passes
/// `option_env!("CARGO_BIN_EXE_consentry")`, which cargo sets for `consentry-server`'s own tests.
pub fn use_binary(path: Option<&str>) {
    if let Some(path) = path {
        let _ = BINARY.set(PathBuf::from(path));
    }
}

/// The `consentry` binary: the one given to [`use_binary`], else the one in the running test's
/// target profile, built once per test process when missing or stale, since `cargo test -p
/// <another package>` alone does not build the server's binary.
pub fn binary() -> &'static Path {
    match BINARY.get() {
        Some(path) => path,
        None => built_binary(),
    }
}

/// The binary in the profile of the running test, rebuilt (once per test process) with
/// `cargo build -p consentry-server --bin consentry` when a source it is built from is newer.
/// After `cargo test --workspace` it is fresh and used as is: a nested build there would compile
/// it again with another feature set (features unify differently per command), for minutes.
fn built_binary() -> &'static Path {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        // The test runs from <target>/<profile>/deps/; the binary lands in <target>/<profile>/.
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
        let bin = profile_dir.join(format!("consentry{}", std::env::consts::EXE_SUFFIX));
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .find(|d| d.join("Cargo.lock").exists())
            .expect("the workspace root (with Cargo.lock)");
        let sources = newest_mtime(&[
            root.join("Cargo.lock"),
            root.join("crates/server"),
            root.join("crates/protocol"),
        ]);
        let built = std::fs::metadata(&bin).and_then(|m| m.modified()).ok();
        if built.is_some_and(|b| b >= sources) {
            return bin;
        }
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev".to_owned(),
            Some(other) => other.to_owned(),
        };
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "-p",
                "consentry-server",
                "--bin",
                "consentry",
            ])
            .args(["--profile", &profile])
            .current_dir(root)
            .status()
            .expect("run cargo build for the consentry binary");
        assert!(
            status.success(),
            "cargo build of the consentry binary failed"
        );
        assert!(bin.exists(), "no consentry binary at {}", bin.display());
        bin
    })
}

/// The newest modification time of the files under `paths` (skipping `target`, `tests`,
/// `examples`, `bench` and hidden folders, which the binary is not built from).
fn newest_mtime(paths: &[PathBuf]) -> SystemTime {
    let mut newest = UNIX_EPOCH;
    let mut stack: Vec<PathBuf> = paths.to_vec();
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            for entry in std::fs::read_dir(&p).into_iter().flatten().flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if !(name.starts_with('.')
                    || ["target", "tests", "examples", "bench"].contains(&&*name))
                {
                    stack.push(entry.path());
                }
            }
        } else if let Ok(m) = meta.modified() {
            newest = newest.max(m);
        }
    }
    newest
}

pub async fn fresh_postgres_database(admin_url: &str) -> String {
    use sqlx::Connection;
    let name = format!("consentry_test_{}", random_id());
    let mut conn = sqlx::PgConnection::connect(admin_url)
        .await
        .expect("connect to test postgres");
    sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap();
    let base = admin_url
        .rsplit_once('/')
        .map(|(b, _)| b)
        .unwrap_or(admin_url);
    format!("{base}/{name}")
}

impl TestServer {
    pub async fn start(setup: Setup) -> TestServer {
        consentry_server::install_crypto_providers();
        let dir = tempfile::tempdir().unwrap();
        let database_url = match &setup.backend {
            Backend::Sqlite => "sqlite://consentry.db".to_string(),
            Backend::Postgres(admin) => fresh_postgres_database(admin).await,
        };
        Self::start_in(dir, setup.keys.clone(), &setup, &database_url).await
    }

    async fn start_in(
        dir: tempfile::TempDir,
        keys: TatKeys,
        setup: &Setup,
        database_url: &str,
    ) -> TestServer {
        // A free port can be taken by a parallel test between our probe and the server's bind:
        // then the server exits with "cannot bind" and we try another port (in a fresh folder).
        let mut first_dir = Some(dir);
        for attempt in 0.. {
            let dir = first_dir
                .take()
                .unwrap_or_else(|| tempfile::tempdir().unwrap());
            std::fs::write(dir.path().join("tat_public.pem"), &keys.public_pem).unwrap();
            let port = free_port();
            let config = setup.render(port, database_url);
            let config_path = dir.path().join("consentry.toml");
            std::fs::write(&config_path, &config).unwrap();

            let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
            let child = Command::new(binary())
                .args(["serve", "--config"])
                .arg(&config_path)
                .env("CONSENTRY_LOG", READY_LOG_FILTER)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn consentry");
            let base = format!("http://127.0.0.1:{port}");
            let http = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap();
            let mut server = TestServer {
                base,
                dir,
                config_path,
                keys: keys.clone(),
                http,
                child: Some(child),
                database_url: database_url.to_owned(),
                port,
            };
            match server.wait_ready().await {
                Ready::Yes => return server,
                Ready::PortTaken if attempt < 5 => drop(server),
                Ready::PortTaken => panic!("no free port after 5 attempts"),
            }
        }
        unreachable!()
    }

    /// Start a second process on the same database and config (with another port).
    pub async fn sibling(&self, setup: &Setup) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(
            dir,
            self.keys.clone(),
            setup,
            &self.database_url_for_sibling(),
        )
        .await
    }

    fn database_url_for_sibling(&self) -> String {
        if self.database_url.starts_with("sqlite:") {
            format!(
                "sqlite://{}",
                self.dir.path().join("consentry.db").display()
            )
        } else {
            self.database_url.clone()
        }
    }

    /// Ready when OUR process logged that it listens on our port (a healthz answer alone could
    /// come from another test's server that took the port) and answers healthz.
    async fn wait_ready(&mut self) -> Ready {
        let deadline = Instant::now() + Duration::from_secs(30);
        let listening = format!("listening on http://127.0.0.1:{}", self.port);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                let log = self.log();
                if log.contains("cannot bind") {
                    self.child = None;
                    return Ready::PortTaken;
                }
                panic!("consentry exited early ({status}): {log}");
            }
            if self.log().contains(&listening)
                && let Ok(r) = self.http.get(format!("{}/healthz", self.base)).send().await
                && r.status().is_success()
            {
                return Ready::Yes;
            }
            if Instant::now() > deadline {
                panic!("consentry did not become ready: {}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The server process's id while it runs (for `/proc/<pid>/status`).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the server process is still running (it has not exited or crashed).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// `stop` (SIGKILL, no chance to flush or clean up: what `kill -9` does) under its own name,
    /// for tests where that is the point.
    pub fn kill9(&mut self) {
        self.stop();
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub async fn restart(&mut self) {
        self.stop();
        let log = std::fs::File::create(self.dir.path().join("server.log")).unwrap();
        self.child = Some(
            Command::new(binary())
                .args(["serve", "--config"])
                .arg(&self.config_path)
                .env("CONSENTRY_LOG", READY_LOG_FILTER)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        assert!(
            matches!(self.wait_ready().await, Ready::Yes),
            "port {} was taken during restart",
            self.port
        );
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(self.url(path)).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post_json(&self, path: &str, bearer: Option<&str>, body: &Value) -> (u16, Value) {
        let mut req = self.http.post(self.url(path)).json(body);
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn attest(&self, tat: &str) -> (u16, Value) {
        self.post_json(
            "/v1/sessions/attest",
            None,
            &json!({"token": tat, "profile_id": "default", "session_duration_minutes": 10}),
        )
        .await
    }

    /// Attest a fresh TAT for `user` and return the session token.
    pub async fn session(&self, user: &str) -> String {
        let (status, body) = self.attest(&self.keys.tat(user)).await;
        assert_eq!(status, 200, "attest: {body}");
        body["session_token"].as_str().unwrap().to_owned()
    }

    pub async fn start_flow(&self, session: &str, params: &Value) -> (u16, Value) {
        self.post_json("/v1/oauth/authorize/start", Some(session), params)
            .await
    }

    pub async fn submit(&self, session: &str, params: &Value, granted: bool) -> (u16, Value) {
        let mut body = params.clone();
        body["consent_granted"] = json!(granted);
        self.post_json("/v1/oauth/authorize/submit", Some(session), &body)
            .await
    }

    /// POST form-encoded to the token endpoint; returns (status, headers, body).
    pub async fn token_raw(
        &self,
        form: &[(&str, &str)],
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let r = self
            .http
            .post(self.url("/oauth2/token"))
            .form(form)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        (status, headers, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn token(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let (s, _, b) = self.token_raw(form).await;
        (s, b)
    }

    /// attest → start → submit(allow) → the code, for `params`.
    pub async fn code_for(&self, user: &str, params: &Value) -> String {
        let session = self.session(user).await;
        let (status, body) = self.start_flow(&session, params).await;
        assert_eq!(status, 200, "start: {body}");
        let (status, body) = self.submit(&session, params, true).await;
        assert_eq!(status, 200, "submit: {body}");
        let loc = body["redirect_uri"].as_str().unwrap();
        query(loc)
            .get("code")
            .cloned()
            .unwrap_or_else(|| panic!("no code in {loc}"))
    }

    /// A complete flow up to tokens.
    pub async fn tokens_for(&self, user: &str, pkce: &Pkce, params: &Value) -> Value {
        let code = self.code_for(user, params).await;
        let (status, body) = self
            .token(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("client_id", params["client_id"].as_str().unwrap()),
                (
                    "redirect_uri",
                    params["redirect_uri"].as_str().unwrap_or(REDIRECT),
                ),
                ("code_verifier", &pkce.verifier),
                ("resource", RESOURCE),
            ])
            .await;
        assert_eq!(status, 200, "token: {body}");
        body
    }

    /// Redeem an authorization code at the token endpoint (no `resource`).
    pub async fn redeem(
        &self,
        code: &str,
        client_id: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> (u16, Value) {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("client_id", client_id),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ])
        .await
    }

    /// Use a refresh token (no `scope`, no `resource`).
    pub async fn refresh(&self, refresh_token: &str, client_id: &str) -> (u16, Value) {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", client_id),
        ])
        .await
    }

    /// Any request with raw bytes and headers; the body is kept as text and parsed as JSON when
    /// it is JSON (`Value::Null` otherwise).
    pub async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> RawResponse {
        let mut req = self.http.request(method, self.url(path)).body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let bytes = r.bytes().await.unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        RawResponse {
            status,
            headers,
            text,
            json,
        }
    }

    pub async fn jwks(&self) -> Value {
        self.get("/.well-known/jwks.json").await.1
    }

    /// Verify an access token against the server's JWKS like a resource server would.
    pub async fn verify_access_token(&self, token: &str) -> Value {
        let header = jsonwebtoken::decode_header(token).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"), "RFC 9068 typ");
        let kid = header.kid.clone().expect("kid");
        let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(self.jwks().await).unwrap();
        let jwk = set.find(&kid).expect("kid in JWKS");
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
        let mut v = jsonwebtoken::Validation::new(header.alg);
        v.set_audience(&[RESOURCE]);
        v.set_issuer(&[self.base.as_str()]);
        v.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        jsonwebtoken::decode::<Value>(token, &key, &v)
            .unwrap()
            .claims
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Warnings, plus the one info line that says where the server listens.
const READY_LOG_FILTER: &str = "warn,consentry_server=info";

enum Ready {
    Yes,
    PortTaken,
}

pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl Default for Pkce {
    fn default() -> Pkce {
        Pkce::new()
    }
}

impl Pkce {
    pub fn new() -> Pkce {
        let verifier = format!("{}{}", random_id(), "x".repeat(43));
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
        Pkce {
            verifier,
            challenge: URL_SAFE_NO_PAD.encode(digest),
        }
    }
}

/// Standard authorization parameters for `CLIENT`.
pub fn params(pkce: &Pkce, scope: &str) -> Value {
    json!({
        "client_id": CLIENT,
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": scope,
        "state": "st-123",
        "code_challenge": pkce.challenge,
        "code_challenge_method": "S256",
        "resource": [RESOURCE],
    })
}

/// Query parameters of a URL.
pub fn query(url: &str) -> HashMap<String, String> {
    let q = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                consentry_protocol::percent_decode(k).unwrap(),
                consentry_protocol::percent_decode(v).unwrap(),
            )
        })
        .collect()
}

/// Decode a JWT's payload without verifying (for asserting on claims).
pub fn jwt_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// A response read without assumptions about its body.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub json: Value,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Assert an error response: exact status, exact `error` code, and an `error_description` that
/// mentions every one of `mentions` (the parameter at fault, the expected value…).
#[track_caller]
pub fn assert_error(got: (u16, &Value), status: u16, error: &str, mentions: &[&str]) {
    let (got_status, body) = got;
    assert_eq!(got_status, status, "status; body: {body}");
    assert_eq!(body["error"], error, "error code; body: {body}");
    let desc = body["error_description"]
        .as_str()
        .unwrap_or_else(|| panic!("no error_description in {body}"));
    for m in mentions {
        assert!(
            desc.contains(m),
            "error_description should mention {m:?}: {desc:?}"
        );
    }
}

/// `application/x-www-form-urlencoded` encoding of one value (WHATWG: alphanumerics and `*-._`
/// kept, space as `+`, every other byte `%XX`), as RFC 6749 §2.3.1 asks of HTTP Basic client
/// credentials.
pub fn form_urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A form body from pairs, each part form-urlencoded.
pub fn form_body(pairs: &[(&str, &str)]) -> Vec<u8> {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", form_urlencode(k), form_urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
        .into_bytes()
}

/// `Authorization: Basic` client credentials per RFC 6749 §2.3.1 (id and secret form-urlencoded
/// before base64).
pub fn basic_auth(client_id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            form_urlencode(client_id),
            form_urlencode(secret)
        ))
    )
}

impl TestServer {
    /// POST a form to the token endpoint with extra headers (client authentication…).
    pub async fn token_with(&self, headers: &[(&str, &str)], form: &[(&str, &str)]) -> RawResponse {
        let mut h = vec![("content-type", "application/x-www-form-urlencoded")];
        h.extend_from_slice(headers);
        self.raw(reqwest::Method::POST, "/oauth2/token", &h, form_body(form))
            .await
    }
}

/// Tokens as the server would have issued them some time ago, signed with its own keys (read from
/// its database): expiry rules are tested without waiting for a clock. Only a token's times
/// change; the server checks them exactly as it would a token that aged for real.
impl TestServer {
    /// One text value from the server's database (`sql` returns one row, one text column).
    pub async fn db_text(&self, sql: &str) -> String {
        let url = self.database_url_for_sibling();
        if let Some(path) = url.strip_prefix("sqlite://") {
            let conn = rusqlite::Connection::open(path).unwrap();
            conn.busy_timeout(Duration::from_secs(10)).unwrap();
            conn.query_row(sql, [], |r| r.get(0)).unwrap()
        } else {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::query_scalar::<_, String>(sql)
                .fetch_one(&mut conn)
                .await
                .unwrap()
        }
    }

    /// The server's current access-token signing key.
    pub async fn signing_key(&self) -> consentry_server::keys::SigningKey {
        use consentry_server::keys::{SigningAlg, SigningKey};
        let current =
            "FROM signing_keys WHERE retired_at IS NULL ORDER BY created_at DESC, kid LIMIT 1";
        let alg = self.db_text(&format!("SELECT alg {current}")).await;
        let der = self.db_text(&format!("SELECT private_key {current}")).await;
        let der = base64::engine::general_purpose::STANDARD
            .decode(der)
            .unwrap();
        SigningKey::from_pkcs8(SigningAlg::parse(&alg).unwrap(), &der).unwrap()
    }

    /// The server's session and code sealing keys.
    pub async fn sealer(&self) -> consentry_server::crypto::Sealer {
        let secret = |name: &str| format!("SELECT value FROM server_secrets WHERE name = '{name}'");
        consentry_server::crypto::Sealer::new(
            &self.db_text(&secret("session_hmac")).await,
            &self.db_text(&secret("code_aead")).await,
        )
        .unwrap()
    }

    /// `access_token` as if issued `seconds` earlier: same claims and key, `iat`, `nbf` and `exp`
    /// moved back.
    pub async fn aged_access_token(&self, access_token: &str, seconds: i64) -> String {
        let mut claims = jwt_claims(access_token);
        for time in ["iat", "nbf", "exp"] {
            if let Some(t) = claims[time].as_i64() {
                claims[time] = json!(t - seconds);
            }
        }
        self.signing_key()
            .await
            .sign_jwt("at+jwt", &claims)
            .unwrap()
    }

    /// The browser session `session_token` as if attested `seconds` earlier (issued and expiry
    /// times moved back), sealed with the server's session key.
    pub async fn aged_session(&self, session_token: &str, seconds: i64) -> String {
        let sealer = self.sealer().await;
        let mut claims = match sealer.open_session(session_token, now()) {
            Ok(claims) => claims,
            Err(_) => panic!("not a live session token of this server: {session_token}"),
        };
        claims.i -= seconds;
        claims.e -= seconds;
        sealer.session_token(&claims).unwrap()
    }
}

impl TestServer {
    /// Run test-made SQL (no parameters) on the server's database, behind its back.
    pub async fn db_exec(&self, sql: &str) {
        let url = self.database_url_for_sibling();
        if let Some(path) = url.strip_prefix("sqlite://") {
            let conn = rusqlite::Connection::open(path).unwrap();
            conn.busy_timeout(Duration::from_secs(10)).unwrap();
            conn.execute_batch(sql).unwrap();
        } else {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        }
    }

    /// The grant (token family) of `refresh_token` as if created `seconds` earlier.
    pub async fn age_grant_of(&self, refresh_token: &str, seconds: i64) {
        let hash = consentry_server::crypto::sha256_hex(refresh_token);
        self.db_exec(&format!(
            "UPDATE token_families SET created_at = created_at - {seconds} WHERE family_id = \
             (SELECT family_id FROM refresh_tokens WHERE token_hash = '{hash}')"
        ))
        .await;
    }
}
