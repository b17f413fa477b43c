//! Organizations over HTTP: the operator's admin API (`/admin/v1/organizations…`, bearer admin
//! key, any organization by id) and an organization admin's browser API (`/v1/organization…`,
//! bearer session; the organization is always the session's, never taken from the URL, and
//! only members holding one of their token profile's `admin_roles` get past [`org_admin`]).
//!
//! A policy is read with `ETag: "<version>"` and changed with `If-Match: "<version>"` (412 when
//! stale, 428 when missing), or created with `If-None-Match: *`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use consentry_protocol::wire::{OrgConnectedApps, OrganizationInfo, PolicyState};
use consentry_protocol::{ErrorCode, OrgPolicy};
use serde_json::{Value, json};

use crate::crypto::SessionClaims;
use crate::error::{ApiError, ApiResult};
use crate::flows::orgs::{self, Precondition};
use crate::http::apps::admin;
use crate::http::extract::{JsonBody, PathParams, Session};
use crate::state::Shared;

/// The session's member administers their organization, or 403.
fn org_admin(s: &Shared, session: &SessionClaims) -> ApiResult<()> {
    if orgs::is_admin(&s.cfg, session) {
        return Ok(());
    }
    let roles = s
        .cfg
        .profile(&session.p)
        .map(|p| p.admin_roles.join(", "))
        .unwrap_or_default();
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        ErrorCode::Forbidden,
        format!(
            "managing the organization needs one of the roles [{roles}] (token profile admin_roles); this session's user holds none"
        ),
    ))
}

fn with_etag(state: PolicyState) -> Response {
    let etag = HeaderValue::from_str(&format!("\"{}\"", state.version))
        .unwrap_or_else(|_| HeaderValue::from_static("\"0\""));
    let mut resp = Json(state).into_response();
    resp.headers_mut().insert(header::ETAG, etag);
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The precondition of a policy `PUT`: `If-Match: "<version>"`, or `If-None-Match: *` to
/// create.
fn precondition(headers: &HeaderMap) -> ApiResult<Precondition> {
    if let Some(v) = headers.get(header::IF_MATCH) {
        let raw = v.to_str().unwrap_or("").trim();
        return raw
            .strip_prefix('"')
            .and_then(|r| r.strip_suffix('"'))
            .and_then(|n| n.parse::<i64>().ok())
            .filter(|n| *n > 0)
            .map(Precondition::Version)
            .ok_or_else(|| {
                ApiError::invalid_request(format!(
                    "If-Match: expected the policy's ETag, a quoted version such as \"3\" (got '{}')",
                    crate::clients::truncate(raw)
                ))
            });
    }
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == b"*")
    {
        return Ok(Precondition::Absent);
    }
    Err(ApiError::new(
        StatusCode::PRECONDITION_REQUIRED,
        ErrorCode::PreconditionFailed,
        "If-Match is required: send the ETag of the policy you read (GET), so that a change made meanwhile is not overwritten (or If-None-Match: * to create a policy for a new organization)",
    ))
}

// --- the organization admin's browser API ---

/// `GET /v1/organization`: the session's organization, and whether its member administers it.
pub async fn info(
    State(s): State<Shared>,
    Session(session): Session,
) -> ApiResult<Json<OrganizationInfo>> {
    Ok(Json(orgs::info(&s.cfg, &session)))
}

/// `GET /v1/organization/connected_apps`
pub async fn connected_apps(
    State(s): State<Shared>,
    Session(session): Session,
) -> ApiResult<Json<OrgConnectedApps>> {
    org_admin(&s, &session)?;
    Ok(Json(orgs::connected_apps(&s, &session.o).await?))
}

/// `POST /v1/organization/connected_apps/{client_id}/revoke`: for every member.
pub async fn revoke_app(
    State(s): State<Shared>,
    Session(session): Session,
    PathParams(client_id): PathParams<String>,
) -> ApiResult<Json<Value>> {
    org_admin(&s, &session)?;
    let revoked = orgs::revoke_app(&s, &session.o, &client_id, "org_admin").await?;
    Ok(Json(
        json!({"revoked": true, "client_id": client_id, "revoked_grants": revoked}),
    ))
}

/// `GET /v1/organization/policy`
pub async fn policy(State(s): State<Shared>, Session(session): Session) -> ApiResult<Response> {
    org_admin(&s, &session)?;
    Ok(with_etag(orgs::policy(&s, &session.o).await?))
}

/// `PUT /v1/organization/policy` with `If-Match`.
pub async fn put_policy(
    State(s): State<Shared>,
    Session(session): Session,
    headers: HeaderMap,
    JsonBody(policy): JsonBody<OrgPolicy>,
) -> ApiResult<Response> {
    org_admin(&s, &session)?;
    let pre = precondition(&headers)?;
    Ok(with_etag(
        orgs::put_policy(&s, &session.o, pre, policy, "org_admin").await?,
    ))
}

// --- the operator's admin API ---

/// `GET /admin/v1/organizations`
pub async fn admin_list(State(s): State<Shared>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    admin(&s, &headers)?;
    Ok(Json(
        json!({"organizations": orgs::organizations(&s).await?}),
    ))
}

/// `GET /admin/v1/organizations/{organization_id}`
pub async fn admin_show(
    State(s): State<Shared>,
    headers: HeaderMap,
    PathParams(org): PathParams<String>,
) -> ApiResult<Json<Value>> {
    admin(&s, &headers)?;
    Ok(Json(json!(orgs::organization(&s, &org).await?)))
}

/// `GET /admin/v1/organizations/{organization_id}/policy`
pub async fn admin_policy(
    State(s): State<Shared>,
    headers: HeaderMap,
    PathParams(org): PathParams<String>,
) -> ApiResult<Response> {
    admin(&s, &headers)?;
    Ok(with_etag(orgs::policy(&s, &org).await?))
}

/// `PUT /admin/v1/organizations/{organization_id}/policy` with `If-Match` (or
/// `If-None-Match: *` for an organization no member has signed in to yet).
pub async fn admin_put_policy(
    State(s): State<Shared>,
    headers: HeaderMap,
    PathParams(org): PathParams<String>,
    JsonBody(policy): JsonBody<OrgPolicy>,
) -> ApiResult<Response> {
    admin(&s, &headers)?;
    let pre = precondition(&headers)?;
    Ok(with_etag(
        orgs::put_policy(&s, &org, pre, policy, "admin_api").await?,
    ))
}

/// `GET /admin/v1/organizations/{organization_id}/connected_apps`
pub async fn admin_connected_apps(
    State(s): State<Shared>,
    headers: HeaderMap,
    PathParams(org): PathParams<String>,
) -> ApiResult<Json<OrgConnectedApps>> {
    admin(&s, &headers)?;
    Ok(Json(orgs::connected_apps(&s, &org).await?))
}

/// `POST /admin/v1/organizations/{organization_id}/connected_apps/{client_id}/revoke`
pub async fn admin_revoke_app(
    State(s): State<Shared>,
    headers: HeaderMap,
    PathParams((org, client_id)): PathParams<(String, String)>,
) -> ApiResult<Json<Value>> {
    admin(&s, &headers)?;
    let revoked = orgs::revoke_app(&s, &org, &client_id, "admin").await?;
    Ok(Json(json!({
        "revoked": true, "organization_id": org, "client_id": client_id, "revoked_grants": revoked
    })))
}
