//! Shared state, the router and the cross-cutting HTTP pieces (CORS, JSON and form bodies,
//! bearer sessions, panics turned into JSON 500s).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use consentry_protocol::ErrorCode;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};

use crate::body_limit::{self, Limit};
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
    /// Registrations per client IP (IPv6 /64) per minute.
    pub registration_limiter: crate::limits::RateLimiter<std::net::IpAddr>,
    /// Registrations per minute from everyone (`registration.global_rate_limit_per_minute`).
    pub registration_global: crate::limits::RateLimiter<()>,
    /// Wrong initial access tokens per client IP per minute.
    pub iat_failures: crate::limits::RateLimiter<std::net::IpAddr>,
    /// Resolves https client_ids (Client ID Metadata Documents); `None` when `[cimd]` is off.
    pub cimd: Option<crate::cimd::CimdResolver>,
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
        let mut http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(3));
        if let Some(ca) = &cfg.extra_ca_file {
            for c in crate::config::read_ca_certificates("extra_ca_file", ca)? {
                http = http.add_root_certificate(c);
            }
        }
        let http = http.build()?;
        let tat = TatVerifier::new(&cfg.token_profiles, http)?;
        let metadata = metadata(&cfg);
        let cimd = if cfg.cimd.enabled {
            Some(crate::cimd::CimdResolver::new(&cfg.cimd)?)
        } else {
            None
        };
        Ok(AppState {
            cfg: Arc::new(cfg),
            store,
            keys,
            sealer,
            tat,
            registration_limiter: crate::register::per_ip_limiter(),
            registration_global: crate::limits::RateLimiter::new(Duration::from_secs(60), 1),
            iat_failures: crate::register::per_ip_limiter(),
            cimd,
            metadata,
        })
    }

    /// A client of this server: pre-registered in the config, or dynamically registered.
    pub async fn client(&self, client_id: &str) -> ApiResult<Option<Client>> {
        if let Some(c) = self.cfg.clients.get(client_id) {
            return Ok(Some(Client::from_config(c)));
        }
        // https client_ids are Client ID Metadata Document URLs (self-issued ids never are).
        if client_id.starts_with("https://") {
            return match &self.cimd {
                Some(r) => Ok(Some(
                    r.resolve_for(client_id, crate::client_ip::current())
                        .await?,
                )),
                None => Ok(None),
            };
        }
        match self.store.client(client_id).await? {
            Some(row) => Ok(Some(crate::register::client_from_row(&row)?)),
            None => Ok(None),
        }
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
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "bearer"],
        "scopes_supported": cfg
            .scopes
            .keys()
            .map(String::as_str)
            .chain(crate::oidc::OIDC_SCOPES.iter().map(|(sc, _)| *sc))
            .collect::<Vec<_>>(),
        "authorization_response_iss_parameter_supported": true,
        "prompt_values_supported": ["none", "login", "consent"],
        "registration_endpoint": format!("{iss}/oauth2/register"),
        "revocation_endpoint": format!("{iss}/oauth2/revoke"),
        "introspection_endpoint": format!("{iss}/oauth2/introspect"),
        "userinfo_endpoint": format!("{iss}/oauth2/userinfo"),
        "id_token_signing_alg_values_supported": [cfg.signing_alg.as_str()],
        "subject_types_supported": ["public"],
        "claims_supported": ["sub", "name", "email", "iss", "aud", "exp", "iat", "auth_time", "nonce"],
        "client_id_metadata_document_supported": cfg.cimd.enabled,
    })
}

pub fn router(state: Shared) -> Router {
    let public_cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ])
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
        .route("/v1/connected_apps", get(crate::apps::list))
        .route(
            "/v1/connected_apps/{client_id}/revoke",
            post(crate::apps::revoke),
        )
        // Before the CORS layer, so that the layer also wraps the 405 fallback: a CORS preflight
        // (OPTIONS) reaches a route's method fallback, and set afterwards the fallback would
        // replace the layered one and answer every preflight 405 without CORS headers.
        .method_not_allowed_fallback(method_not_allowed)
        .layer(from_fn_with_state(Limit::default(), body_limit::middleware))
        .layer(browser_cors);

    let registration = Router::new()
        .route("/oauth2/register", post(crate::register::register))
        .route(
            "/oauth2/register/{client_id}",
            get(crate::register::read)
                .put(crate::register::update)
                .delete(crate::register::delete),
        )
        .layer(from_fn_with_state(
            crate::register::BODY_LIMIT,
            body_limit::middleware,
        ));

    let public = Router::new()
        .route(
            "/.well-known/oauth-authorization-server",
            get(metadata_handler),
        )
        .route("/.well-known/openid-configuration", get(metadata_handler))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/oauth2/token", post(crate::token::token))
        .route("/oauth2/introspect", post(crate::introspect::introspect))
        .route("/oauth2/revoke", post(crate::introspect::revoke))
        .route(
            "/oauth2/userinfo",
            get(crate::oidc::userinfo).post(crate::oidc::userinfo),
        )
        .route("/healthz", get(healthz))
        .layer(from_fn_with_state(Limit::default(), body_limit::middleware))
        .merge(registration)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(public_cors);

    // Server-to-server only: no CORS.
    let admin = Router::new()
        .route(
            "/admin/v1/users/{user_id}/connected_apps",
            get(crate::apps::admin_user_apps),
        )
        .route(
            "/admin/v1/users/{user_id}/connected_apps/{client_id}/revoke",
            post(crate::apps::admin_revoke_user_app),
        )
        .route(
            "/admin/v1/users/{user_id}",
            axum::routing::delete(crate::apps::admin_delete_user),
        )
        .route(
            "/admin/v1/users/{user_id}/revoke",
            post(crate::apps::admin_revoke_user),
        )
        .route("/admin/v1/clients", get(crate::apps::admin_clients))
        .route(
            "/admin/v1/clients/{client_id}",
            get(crate::apps::admin_client).delete(crate::apps::admin_delete_client),
        )
        .layer(from_fn_with_state(Limit::default(), body_limit::middleware))
        .method_not_allowed_fallback(method_not_allowed);

    Router::new()
        .merge(browser)
        .merge(public)
        .merge(admin)
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::client_ip::middleware,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(
            crate::body_limit::MAX_BODY_BYTES,
        ))
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
    s.store.ping().await.map_err(|e| {
        // The detail (paths, hosts) is for the operator's log, not for whoever asks.
        tracing::warn!("healthz: database unreachable: {e}");
        ApiError::unavailable("database unreachable (the server log has the cause)")
    })?;
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

/// Path parameters whose rejection (e.g. bad percent-encoding) is a JSON error like every other.
pub struct PathParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| PathParams(v))
            .map_err(|e| ApiError::invalid_request(format!("path: {}", e.body_text())))
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
