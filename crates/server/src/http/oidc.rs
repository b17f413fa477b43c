//! OpenID Connect on top of the code flow: `openid` gets an ID token (aud = client_id, `nonce`,
//! `auth_time`), and `/oauth2/userinfo` returns the claims `profile` and `email` allow.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use consentry_protocol::ErrorCode;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::http::extract::bearer;
use crate::state::Shared;

/// `GET`/`POST /oauth2/userinfo` with a Bearer access token carrying `openid`.
pub async fn userinfo(
    State(s): State<Shared>,
    headers: HeaderMap,
    _body: Bytes,
) -> ApiResult<Json<Value>> {
    let token = bearer(&headers).ok_or_else(|| {
        ApiError::unauthorized(
            ErrorCode::InvalidToken,
            "Authorization: Bearer <access_token> is required",
        )
    })?;
    let claims = crate::flows::introspect::active_access_token(&s, token)
        .await?
        .ok_or_else(|| {
            ApiError::unauthorized(
                ErrorCode::InvalidToken,
                "the access token is invalid, expired or revoked",
            )
        })?;
    let scopes: Vec<String> = claims
        .get("scope")
        .and_then(Value::as_str)
        .unwrap_or("")
        .split_ascii_whitespace()
        .map(str::to_owned)
        .collect();
    if !scopes.iter().any(|sc| sc == "openid") {
        let mut e = ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            ErrorCode::InsufficientScope,
            "userinfo needs an access token with the openid scope",
        );
        e.www_authenticate = Some("Bearer error=\"insufficient_scope\", scope=\"openid\"".into());
        return Err(e);
    }
    let sub = claims.get("sub").and_then(Value::as_str).unwrap_or("");
    let org = claims.get("org_id").and_then(Value::as_str);
    Ok(Json(Value::Object(
        crate::flows::oidc::user_claims(&s, sub, org, &scopes).await?,
    )))
}
