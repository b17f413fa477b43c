//! The HTTP edge: the router, CORS, body limits, extractors and the mapping from errors to
//! responses. Handlers are thin: decode, call a flow, encode.

pub mod apps;
pub mod authorize;
pub mod body_limit;
pub mod client_ip;
pub mod extract;
pub mod introspect;
pub mod oidc;
pub mod orgs;
pub mod register;
pub mod token;

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use consentry_protocol::ErrorCode;
use serde_json::{Value, json};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};

use crate::error::{ApiError, ApiResult};
use crate::http::body_limit::Limit;
use crate::state::Shared;

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
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
        ])
        .expose_headers([header::ETAG])
        .max_age(Duration::from_secs(600));

    let browser = Router::new()
        .route("/v1/sessions/attest", post(crate::http::authorize::attest))
        .route(
            "/v1/oauth/authorize/start",
            post(crate::http::authorize::start),
        )
        .route(
            "/v1/oauth/authorize/submit",
            post(crate::http::authorize::submit),
        )
        .route("/v1/connected_apps", get(crate::http::apps::list))
        .route(
            "/v1/connected_apps/{client_id}/revoke",
            post(crate::http::apps::revoke),
        )
        .route("/v1/organization", get(crate::http::orgs::info))
        .route(
            "/v1/organization/connected_apps",
            get(crate::http::orgs::connected_apps),
        )
        .route(
            "/v1/organization/connected_apps/{client_id}/revoke",
            post(crate::http::orgs::revoke_app),
        )
        .route(
            "/v1/organization/policy",
            get(crate::http::orgs::policy).put(crate::http::orgs::put_policy),
        )
        // Before the CORS layer, so that the layer also wraps the 405 fallback: a CORS preflight
        // (OPTIONS) reaches a route's method fallback, and set afterwards the fallback would
        // replace the layered one and answer every preflight 405 without CORS headers.
        .method_not_allowed_fallback(method_not_allowed)
        .layer(from_fn_with_state(Limit::default(), body_limit::middleware))
        .layer(browser_cors);

    let registration = Router::new()
        .route("/oauth2/register", post(crate::http::register::register))
        .route(
            "/oauth2/register/{client_id}",
            get(crate::http::register::read)
                .put(crate::http::register::update)
                .delete(crate::http::register::delete),
        )
        .layer(from_fn_with_state(
            crate::http::register::BODY_LIMIT,
            body_limit::middleware,
        ));

    let public = Router::new()
        .route(
            "/.well-known/oauth-authorization-server",
            get(metadata_handler),
        )
        .route("/.well-known/openid-configuration", get(metadata_handler))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/oauth2/token", post(crate::http::token::token))
        .route(
            "/oauth2/introspect",
            post(crate::http::introspect::introspect),
        )
        .route("/oauth2/revoke", post(crate::http::introspect::revoke))
        .route(
            "/oauth2/userinfo",
            get(crate::http::oidc::userinfo).post(crate::http::oidc::userinfo),
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
            get(crate::http::apps::admin_user_apps),
        )
        .route(
            "/admin/v1/users/{user_id}/connected_apps/{client_id}/revoke",
            post(crate::http::apps::admin_revoke_user_app),
        )
        .route(
            "/admin/v1/users/{user_id}",
            axum::routing::delete(crate::http::apps::admin_delete_user),
        )
        .route(
            "/admin/v1/users/{user_id}/revoke",
            post(crate::http::apps::admin_revoke_user),
        )
        .route(
            "/admin/v1/clients",
            get(crate::http::apps::admin_clients).post(crate::http::register::admin_create),
        )
        .route(
            "/admin/v1/clients/{client_id}",
            get(crate::http::apps::admin_client)
                .put(crate::http::register::admin_update)
                .delete(crate::http::apps::admin_delete_client),
        )
        .route(
            "/admin/v1/organizations",
            get(crate::http::orgs::admin_list),
        )
        .route(
            "/admin/v1/organizations/{organization_id}",
            get(crate::http::orgs::admin_show),
        )
        .route(
            "/admin/v1/organizations/{organization_id}/policy",
            get(crate::http::orgs::admin_policy).put(crate::http::orgs::admin_put_policy),
        )
        .route(
            "/admin/v1/organizations/{organization_id}/connected_apps",
            get(crate::http::orgs::admin_connected_apps),
        )
        .route(
            "/admin/v1/organizations/{organization_id}/connected_apps/{client_id}/revoke",
            post(crate::http::orgs::admin_revoke_app),
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
            crate::http::client_ip::middleware,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(
            crate::http::body_limit::MAX_BODY_BYTES,
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
