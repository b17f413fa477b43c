//! Token introspection (RFC 7662) and revocation (RFC 7009).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use consentry_protocol::ErrorCode;
use serde_json::{Value, json};

use crate::clients::{Client, truncate};
use crate::crypto::sha256_hex;
use crate::error::{ApiError, ApiResult};
use crate::flows::introspect;
use crate::flows::token::{REFRESH_PREFIX, authenticate_client, is_metadata_document_id};
use crate::http::token::{Form, presented_client};
use crate::state::{Shared, now};

/// Who is asking: a client (sees only its own tokens) or a resource server (sees only tokens
/// whose audience includes it).
enum Caller {
    Client(Client),
    Resource(String),
}

async fn caller(s: &Shared, headers: &HeaderMap, form: &Form) -> ApiResult<Caller> {
    if let Some(presented) = crate::http::extract::bearer(headers) {
        for r in &s.cfg.resources {
            if let Some(secret) = &r.introspection_secret
                && aws_lc_rs::constant_time::verify_slices_are_equal(
                    secret.as_bytes(),
                    presented.as_bytes(),
                )
                .is_ok()
            {
                return Ok(Caller::Resource(r.uri.clone()));
            }
        }
        return Err(ApiError::unauthorized(
            ErrorCode::InvalidClient,
            "the bearer credential is not a resource server's introspection_secret",
        ));
    }
    if headers.get(header::AUTHORIZATION).is_none()
        && form.get("client_id").is_none()
        && form.get("client_secret").is_none()
    {
        // No credentials at all is a failed client authentication (RFC 7662 §2.1), not a
        // malformed request: answer 401 like any other unauthenticated caller.
        let mut e = ApiError::unauthorized(
            ErrorCode::InvalidClient,
            "introspection needs an authenticated caller: HTTP Basic client credentials, \
             client_id and client_secret in the body, or Authorization: Bearer <introspection_secret>",
        );
        e.www_authenticate = Some("Basic realm=\"consentry\"".into());
        return Err(e);
    }
    let presented = presented_client(headers, form)?;
    let client_id = &presented.client_id;
    if is_metadata_document_id(client_id) {
        // Public by definition: refused without fetching the document.
        return Err(public_caller(&truncate(client_id)));
    }
    let client = authenticate_client(s, &presented).await?;
    if !client.is_confidential() {
        return Err(public_caller(&client.client_id));
    }
    Ok(Caller::Client(client))
}

fn public_caller(client_id: &str) -> ApiError {
    ApiError::unauthorized(
        ErrorCode::InvalidClient,
        format!(
            "introspection needs an authenticated caller; client '{client_id}' is public (no secret)"
        ),
    )
}

fn inactive() -> Response {
    no_store(Json(json!({"active": false})).into_response())
}

fn no_store(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `POST /oauth2/introspect`
pub async fn introspect(
    State(s): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let form = Form::parse(&headers, &body)?;
    let caller = caller(&s, &headers, &form).await?;
    let token = form.require("token")?;
    if token.starts_with(REFRESH_PREFIX) {
        let Some(row) = s.store.refresh_token(&sha256_hex(token)).await? else {
            return Ok(inactive());
        };
        let allowed = match &caller {
            Caller::Client(c) => c.client_id == row.family.client_id,
            Caller::Resource(_) => false,
        };
        let now = now();
        // A rotated token is dead as soon as the token endpoint would refuse it: at once
        // without a reuse grace window, after the window otherwise (same rule as `refresh`).
        let grace = s.cfg.refresh_reuse_grace_seconds;
        if !allowed
            || row.family.revoked_at.is_some()
            || row.expires_at <= now
            || row
                .rotated_at
                .is_some_and(|t| grace <= 0 || now - t > grace)
            || now.saturating_sub(row.family_created_at) >= grant_lifetime(&s, &row)
            || row.user_roles.is_none()
        {
            return Ok(inactive());
        }
        let mut body = json!({
            "active": true, "token_type": "refresh_token", "scope": row.family.scope,
            "client_id": row.family.client_id, "sub": row.family.user_id, "exp": row.expires_at,
            "iss": s.cfg.issuer,
        });
        if row.family.organization_id != crate::config::DEFAULT_ORGANIZATION
            && let Value::Object(m) = &mut body
        {
            m.insert("org_id".into(), json!(row.family.organization_id));
        }
        return Ok(no_store(Json(body).into_response()));
    }
    let Some(mut claims) = introspect::active_access_token(&s, token).await? else {
        return Ok(inactive());
    };
    let allowed = match &caller {
        Caller::Client(c) => claims.get("client_id").and_then(Value::as_str) == Some(&c.client_id),
        Caller::Resource(uri) => match claims.get("aud") {
            Some(Value::String(a)) => a == uri,
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(uri)),
            _ => false,
        },
    };
    if !allowed {
        return Ok(inactive());
    }
    claims.remove("gid");
    claims.insert("active".into(), json!(true));
    claims.insert("token_type".into(), json!("Bearer"));
    Ok(no_store(Json(Value::Object(claims)).into_response()))
}

/// `POST /oauth2/revoke`: a refresh token revokes its whole grant (and with it every access
/// token issued from it); an access token goes on the deny-list until it expires. Unknown tokens
/// answer 200, as RFC 7009 §2.2 asks.
pub async fn revoke(
    State(s): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let form = Form::parse(&headers, &body)?;
    let presented = presented_client(&headers, &form)?;
    let client_id = &presented.client_id;
    if is_metadata_document_id(client_id) {
        // A metadata-document client is public (client_id only): the token is looked at before
        // the document is fetched, so an unknown token or another client's never fetches it.
        let token = form.require("token")?;
        match introspect::token_client(&s, token).await? {
            None => return Ok(no_store(StatusCode::OK.into_response())),
            Some(owner) if owner != *client_id => {
                return Err(ApiError::bad_request(
                    ErrorCode::UnauthorizedClient,
                    format!(
                        "the token was not issued to client '{}'",
                        truncate(client_id)
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    let client = authenticate_client(&s, &presented).await?;
    let token = form.require("token")?;
    introspect::revoke(&s, &client, token).await?;
    Ok(no_store(StatusCode::OK.into_response()))
}

/// How long a refresh token's grant may live: the server's limit, shortened by its
/// organization's policy (the version read with the row).
fn grant_lifetime(s: &Shared, row: &crate::store::RefreshRow) -> i64 {
    let org = s
        .store
        .policies()
        .resolve(&row.family.organization_id, &row.org);
    crate::domain::decision::limits(&s.cfg, crate::flows::org_of(&org)).grant_max_lifetime_seconds
}
