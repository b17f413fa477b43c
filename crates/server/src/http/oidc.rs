//! OpenID Connect on top of the code flow: `openid` gets an ID token (aud = client_id, `nonce`,
//! `auth_time`), and `/oauth2/userinfo` returns the claims `profile` and `email` allow.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use consentry_protocol::ErrorCode;
use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult};
use crate::http::extract::bearer;
use crate::state::Shared;

/// Claims about the user that `scopes` release.
async fn user_claims(
    s: &Shared,
    user_id: &str,
    scopes: &[String],
) -> ApiResult<Map<String, Value>> {
    let mut m = Map::new();
    m.insert("sub".into(), json!(user_id));
    let Some(user) = s.store.user(user_id).await? else {
        return Ok(m);
    };
    if scopes.iter().any(|sc| sc == "profile")
        && let Some(name) = user.name
    {
        m.insert("name".into(), json!(name));
    }
    if scopes.iter().any(|sc| sc == "email")
        && let Some(email) = user.email
    {
        m.insert("email".into(), json!(email));
    }
    Ok(m)
}

/// An ID token for a grant that includes `openid`.
pub async fn id_token(
    s: &Shared,
    user_id: &str,
    client_id: &str,
    scopes: &[String],
    nonce: Option<&str>,
    auth_time: i64,
    now: i64,
) -> ApiResult<String> {
    let mut claims = user_claims(s, user_id, scopes).await?;
    claims.insert("iss".into(), json!(s.cfg.issuer));
    claims.insert("aud".into(), json!(client_id));
    claims.insert("iat".into(), json!(now));
    claims.insert(
        "exp".into(),
        json!(now + s.cfg.access_token_ttl_seconds.min(3600)),
    );
    claims.insert("auth_time".into(), json!(auth_time));
    if let Some(n) = nonce {
        claims.insert("nonce".into(), json!(n));
    }
    let keys = s.keys.current().await;
    Ok(keys.current.sign_jwt("JWT", &Value::Object(claims))?)
}

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
    let claims = crate::http::introspect::active_access_token(&s, token)
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
    Ok(Json(Value::Object(user_claims(&s, sub, &scopes).await?)))
}
