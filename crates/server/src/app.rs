//! Shared state, the router and the cross-cutting HTTP pieces (CORS, JSON and form bodies,
//! bearer sessions, panics turned into JSON 500s).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use consentry_protocol::ErrorCode;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};

use crate::clients::Client;
use crate::config::Config;
use crate::crypto::{Sealer, SessionClaims, SessionError};
use crate::db::Store;
use crate::error::{ApiError, ApiResult};
use crate::keys::KeyRing;
use crate::tat::TatVerifier;

pub struct AppState {
    pub cfg: Arc<Config>,
    pub store: Store,
    pub keys: KeyRing,
    pub sealer: Sealer,
    pub tat: TatVerifier,
    metadata: Value,
}

pub type Shared = Arc<AppState>;

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl AppState {
    pub async fn new(cfg: Config) -> anyhow::Result<AppState> {
        let store = Store::connect(&cfg.database_url, cfg.database_max_connections).await?;
        let now = now();
        let keys = KeyRing::load(&store, cfg.signing_alg, cfg.max_signed_token_ttl(), now).await?;
        let session_secret = store
            .secret("session_hmac", &crate::crypto::random_token(32), now)
            .await?;
        let code_secret = store
            .secret("code_aead", &crate::crypto::random_token(32), now)
            .await?;
        let sealer = Sealer::new(&session_secret, &code_secret)?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(3))
            .build()?;
        let tat = TatVerifier::new(&cfg.token_profiles, http)?;
        let metadata = metadata(&cfg);
        Ok(AppState {
            cfg: Arc::new(cfg),
            store,
            keys,
            sealer,
            tat,
            metadata,
        })
    }

    /// A client registered for this server (pre-registered in config for now).
    pub async fn client(&self, client_id: &str) -> ApiResult<Option<Client>> {
        Ok(self.cfg.clients.get(client_id).map(Client::from_config))
    }
}

fn metadata(cfg: &Config) -> Value {
    let iss = &cfg.issuer;
    json!({
        "issuer": iss,
        "authorization_endpoint": cfg.authorization_url,
        "token_endpoint": format!("{iss}/oauth2/token"),
        "jwks_uri": format!("{iss}/.well-known/jwks.json"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none"],
        "scopes_supported": cfg.scopes.keys().collect::<Vec<_>>(),
        "authorization_response_iss_parameter_supported": true,
        "prompt_values_supported": ["none", "login", "consent"],
    })
}

pub fn router(state: Shared) -> Router {
    let public_cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .max_age(Duration::from_secs(600));
    let origins: Vec<HeaderValue> = state
        .cfg
        .allowed_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    let browser_cors = CorsLayer::new()
        .allow_origin(if state.cfg.allowed_origins.iter().any(|o| o == "*") {
            AllowOrigin::any()
        } else {
            AllowOrigin::list(origins)
        })
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .max_age(Duration::from_secs(600));

    let browser = Router::new()
        .route("/v1/sessions/attest", post(crate::authorize::attest))
        .route("/v1/oauth/authorize/start", post(crate::authorize::start))
        .route("/v1/oauth/authorize/submit", post(crate::authorize::submit))
        // Before the CORS layer, so that the layer also wraps the 405 fallback: a CORS preflight
        // (OPTIONS) reaches a route's method fallback, and set afterwards the fallback would
        // replace the layered one and answer every preflight 405 without CORS headers.
        .method_not_allowed_fallback(method_not_allowed)
        .layer(browser_cors);

    let public = Router::new()
        .route(
            "/.well-known/oauth-authorization-server",
            get(metadata_handler),
        )
        .route("/.well-known/openid-configuration", get(metadata_handler))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/oauth2/token", post(crate::token::token))
        .route("/healthz", get(healthz))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(public_cors);

    Router::new()
        .merge(browser)
        .merge(public)
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::internal("a request handler panicked").into_response()
        }))
        .with_state(state)
}

async fn metadata_handler(State(s): State<Shared>) -> Response {
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(s.metadata.clone()),
    )
        .into_response()
}

async fn jwks(State(s): State<Shared>) -> Response {
    let keys = s.keys.current().await;
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(keys.jwks.clone()),
    )
        .into_response()
}

async fn healthz(State(s): State<Shared>) -> ApiResult<Json<Value>> {
    s.store
        .ping()
        .await
        .map_err(|e| ApiError::unavailable(format!("database unreachable: {e}")))?;
    Ok(Json(json!({"status": "ok"})))
}

async fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        format!("no endpoint at {method} {}", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// A JSON body whose errors name the offending field (`serde_path_to_error`).
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(req, state).await?;
        from_json::<T>(&bytes)
            .map(JsonBody)
            .map_err(deserialize_error)
    }
}

async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> ApiResult<Bytes> {
    Bytes::from_request(req, state).await.map_err(|e| {
        // Keep the rejection's status (413 for a body over the limit).
        ApiError::new(
            e.status(),
            ErrorCode::InvalidRequest,
            format!("cannot read the request body: {}", e.body_text()),
        )
    })
}

fn from_json<T: DeserializeOwned>(
    bytes: &[u8],
) -> Result<T, serde_path_to_error::Error<serde_json::Error>> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de)
}

fn deserialize_error(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    if path == "." {
        ApiError::invalid_request(format!("request body is not the expected JSON: {inner}"))
    } else {
        ApiError::invalid_request(format!("{path}: {inner}"))
    }
}

/// The JSON body of a request that carries the authorization parameters flattened into it
/// (start, submit). serde buffers a flattened struct before reading it, which hides the path
/// of a field inside it (`resource: 5` would be reported without naming `resource`); so when
/// the error has no path, the parameters are read again on their own to name the one at fault.
pub struct AuthorizeBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for AuthorizeBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(req, state).await?;
        match from_json::<T>(&bytes) {
            Ok(v) => Ok(AuthorizeBody(v)),
            Err(e) if e.path().iter().next().is_none() => {
                match from_json::<consentry_protocol::AuthorizeParams>(&bytes) {
                    Err(named) if named.path().iter().next().is_some() => {
                        Err(deserialize_error(named))
                    }
                    _ => Err(deserialize_error(e)),
                }
            }
            Err(e) => Err(deserialize_error(e)),
        }
    }
}

/// The browser session from `Authorization: Bearer <session_token>`.
pub struct Session(pub SessionClaims);

impl FromRequestParts<Shared> for Session {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Shared,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(&parts.headers).ok_or_else(|| {
            ApiError::unauthorized(
                ErrorCode::InvalidSession,
                "Authorization: Bearer <session_token> is required; get one from /v1/sessions/attest",
            )
        })?;
        session_from_token(state, token).map(Session)
    }
}

pub fn session_from_token(state: &Shared, token: &str) -> ApiResult<SessionClaims> {
    state
        .sealer
        .open_session(token, now())
        .map_err(|e| match e {
            SessionError::Expired => ApiError::unauthorized(
                ErrorCode::SessionExpired,
                "the session has expired; attest a fresh Trusted Auth Token",
            ),
            SessionError::Invalid => ApiError::unauthorized(
                ErrorCode::InvalidSession,
                "the session token is not valid for this server; attest a Trusted Auth Token",
            ),
        })
}

pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}
