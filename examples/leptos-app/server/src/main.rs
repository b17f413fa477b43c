//! Acme Notes' backend for its Leptos CSR app: its own users and login, its own session cookie,
//! and, for the signed-in user, a short-lived Trusted Auth Token (TAT) signed with the product's
//! ES256 key, which the app hands to Consentry's `<IdentityProvider/>` and `<ConnectedApps/>`.
//! It also serves the app's wasm build (`index.html`, `app.js`, `app_bg.wasm`).
//!
//! Routes: `POST /login` (form: username, password, next), `POST /logout`, `GET /api/me`,
//! `POST /api/tat`; every other `GET` is the app (client-side routing).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::Parser;
use serde::{Deserialize, Serialize};

mod users;

use users::User;

const SESSION_COOKIE: &str = "acme_session";
const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 60 * 60);

#[derive(Parser, Debug)]
#[command(about = "Acme Notes (Leptos example): login, TAT minting, and the app's wasm build")]
struct Args {
    /// Address to listen on (loopback).
    #[arg(long, env = "LISTEN", default_value = "127.0.0.1:3001")]
    listen: SocketAddr,
    /// The Consentry server the app's components talk to.
    #[arg(long, env = "CONSENTRY_URL", default_value = "http://127.0.0.1:8787")]
    consentry_url: String,
    /// The product's private key (PKCS#8 PEM, P-256): `consentry dev` writes one.
    #[arg(
        long,
        env = "CONSENTRY_TAT_PRIVATE_KEY_FILE",
        default_value = ".consentry-dev/tat_private.pem"
    )]
    tat_private_key_file: PathBuf,
    /// The `[[token_profiles]] id` holding the public key.
    #[arg(long, env = "CONSENTRY_TOKEN_PROFILE_ID", default_value = "default")]
    token_profile_id: String,
    /// Must equal the token profile's `issuer`.
    #[arg(
        long,
        env = "CONSENTRY_TAT_ISSUER",
        default_value = "urn:consentry:dev:issuer"
    )]
    tat_issuer: String,
    /// Must equal the token profile's `audience`.
    #[arg(
        long,
        env = "CONSENTRY_TAT_AUDIENCE",
        default_value = "urn:consentry:dev:audience"
    )]
    tat_audience: String,
    /// TAT lifetime (the profile's `max_lifetime_seconds` caps it).
    #[arg(long, env = "CONSENTRY_TAT_TTL_SECONDS", default_value_t = 90)]
    tat_ttl_seconds: u64,
    /// The app's build: index.html, app.js, app_bg.wasm (`cargo xtask leptos-app`).
    #[arg(
        long,
        env = "LEPTOS_APP_DIST",
        default_value = "target/leptos-app/dist"
    )]
    dist: PathBuf,
}

struct AppState {
    args: Args,
    tat_key: jsonwebtoken::EncodingKey,
    /// Session id → (user id, expiry). A database or a signed cookie in a real product.
    sessions: Mutex<HashMap<String, (String, Instant)>>,
}

type Shared = Arc<AppState>;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("APP_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let pem = std::fs::read(&args.tat_private_key_file).map_err(|e| {
        format!(
            "tat_private_key_file {}: {e} (run `consentry dev` once to write one)",
            args.tat_private_key_file.display()
        )
    })?;
    let tat_key = jsonwebtoken::EncodingKey::from_ec_pem(&pem).map_err(|e| {
        format!(
            "tat_private_key_file {}: not a PKCS#8 P-256 private key: {e}",
            args.tat_private_key_file.display()
        )
    })?;
    for file in ["index.html", "app.js", "app_bg.wasm"] {
        if !args.dist.join(file).is_file() {
            return Err(format!(
                "dist {}: {file} is missing (build the app: cargo xtask leptos-app)",
                args.dist.display()
            ));
        }
    }
    let listen = args.listen;
    let state = Arc::new(AppState {
        args,
        tat_key,
        sessions: Mutex::new(HashMap::new()),
    });
    let app = Router::new()
        .route("/login", get(index).post(login))
        .route("/logout", post(logout))
        .route("/api/me", get(me))
        .route("/api/tat", post(tat))
        .route("/pkg/{file}", get(asset))
        .fallback(get(index))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("listen {listen}: {e}"))?;
    tracing::info!("Acme Notes (Leptos) on http://{listen}");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------------------
// Login and session

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    #[serde(default)]
    next: String,
}

async fn login(State(state): State<Shared>, Form(form): Form<LoginForm>) -> Response {
    let next = safe_next(&form.next);
    let Some(user) = users::verify_login(&form.username, &form.password) else {
        let mut to = String::from("/login?error=1&next=");
        to.push_str(&percent_encode(next));
        return Redirect::to(&to).into_response();
    };
    let id = random_token(32);
    if let Ok(mut sessions) = state.sessions.lock() {
        let now = Instant::now();
        sessions.retain(|_, (_, expires)| *expires > now);
        sessions.insert(id.clone(), (user.id.to_owned(), now + SESSION_LIFETIME));
    }
    let cookie = format!(
        "{SESSION_COOKIE}={id}; HttpOnly; SameSite=Lax; Path=/; Max-Age={}",
        SESSION_LIFETIME.as_secs()
    );
    with_cookie(Redirect::to(next).into_response(), &cookie)
}

async fn logout(State(state): State<Shared>, headers: HeaderMap) -> Response {
    if let (Some(id), Ok(mut sessions)) = (session_id(&headers), state.sessions.lock()) {
        sessions.remove(id);
    }
    let cookie = format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0");
    with_cookie(Redirect::to("/login").into_response(), &cookie)
}

fn with_cookie(mut response: Response, cookie: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

fn session_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(SESSION_COOKIE)?.strip_prefix('='))
}

fn current_user(state: &AppState, headers: &HeaderMap) -> Option<&'static User> {
    let id = session_id(headers)?;
    let sessions = state.sessions.lock().ok()?;
    let (user_id, expires) = sessions.get(id)?;
    if *expires <= Instant::now() {
        return None;
    }
    users::find(user_id)
}

/// `next` after login must be a path on this site: `/…` but not `//…` or `/\…` (another host).
fn safe_next(next: &str) -> &str {
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && !next.contains(|c: char| c.is_control());
    if local { next } else { "/" }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The API the app calls

#[derive(Serialize)]
struct Me {
    user_id: &'static str,
    name: &'static str,
    email: &'static str,
}

async fn me(State(state): State<Shared>, headers: HeaderMap) -> Response {
    match current_user(&state, &headers) {
        Some(u) => no_store(Json(Me {
            user_id: u.id,
            name: u.name,
            email: u.email,
        })),
        None => signed_out(),
    }
}

#[derive(Serialize)]
struct TatResponse<'a> {
    trusted_auth_token: String,
    token_profile_id: &'a str,
    consentry_url: &'a str,
}

#[derive(Serialize)]
struct TatClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    email: &'a str,
    name: &'a str,
    roles: &'a [&'a str],
    iat: u64,
    exp: u64,
    jti: String,
}

/// A fresh TAT for the signed-in user: single use (`jti`), short-lived, never stored. POST and
/// `no-store`: it is a credential, not a resource to cache.
async fn tat(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let Some(user) = current_user(&state, &headers) else {
        return signed_out();
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let claims = TatClaims {
        iss: &state.args.tat_issuer,
        aud: &state.args.tat_audience,
        sub: user.id,
        email: user.email,
        name: user.name,
        roles: user.roles,
        iat: now,
        exp: now + state.args.tat_ttl_seconds,
        jti: random_token(16),
    };
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.typ = Some("JWT".into());
    match jsonwebtoken::encode(&header, &claims, &state.tat_key) {
        Ok(token) => no_store(Json(TatResponse {
            trusted_auth_token: token,
            token_profile_id: &state.args.token_profile_id,
            consentry_url: &state.args.consentry_url,
        })),
        Err(e) => {
            tracing::error!("minting a TAT failed: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(serde_json::json!({"error": "tat_mint_failed"})),
            )
                .into_response()
        }
    }
}

fn signed_out() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(serde_json::json!({"error": "signed_out"})),
    )
        .into_response()
}

fn no_store(body: impl IntoResponse) -> Response {
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

// ---------------------------------------------------------------------------------------------
// The app's build

/// `index.html` for every page (the app routes on the client). The consent page may never be
/// framed by another site (clickjacking): `frame-ancestors 'none'`, as the component itself
/// refuses to render in a frame.
async fn index(State(state): State<Shared>) -> Response {
    match tokio::fs::read(state.args.dist.join("index.html")).await {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CONTENT_SECURITY_POLICY, "frame-ancestors 'none'"),
                (header::X_FRAME_OPTIONS, "DENY"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn asset(State(state): State<Shared>, Path(file): Path<String>) -> Response {
    let content_type = match file.as_str() {
        "app.js" => "text/javascript",
        "app_bg.wasm" => "application/wasm",
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    match tokio::fs::read(state.args.dist.join(&file)).await {
        Ok(body) => ([(header::CONTENT_TYPE, content_type)], body).into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `bytes` random bytes from the system generator, base64url. A generator that fails stops the
/// process rather than hand out a guessable session id.
fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    if aws_lc_rs::rand::fill(&mut buf).is_err() {
        tracing::error!("the system random number generator failed");
        std::process::abort();
    }
    URL_SAFE_NO_PAD.encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_after_login_stays_on_this_site() {
        assert_eq!(
            safe_next("/oauth/authorize?client_id=a"),
            "/oauth/authorize?client_id=a"
        );
        assert_eq!(safe_next("//evil.example/x"), "/");
        assert_eq!(safe_next("/\\evil.example"), "/");
        assert_eq!(safe_next("https://evil.example/"), "/");
        assert_eq!(safe_next("/a\nb"), "/");
        assert_eq!(safe_next(""), "/");
    }

    #[test]
    fn the_session_cookie_is_read_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("theme=dark; acme_session=abc; other=1"),
        );
        assert_eq!(session_id(&headers), Some("abc"));
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("acme_session_x=zzz"),
        );
        assert_eq!(session_id(&headers), None);
    }
}
