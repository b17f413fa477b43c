//! The user side of "reversible": a user's connected apps (`/v1/connected_apps`, bearer session)
//! and the operator's admin API (`/admin/v1`, bearer admin key).

use axum::Json;
use axum::extract::{Query, State};

use crate::http::extract::PathParams;
use axum::http::{HeaderMap, StatusCode};
use consentry_protocol::ErrorCode;
use consentry_protocol::wire::ConnectedApp;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::clients::truncate;
use crate::error::{ApiError, ApiResult};
use crate::flows::apps;
use crate::http::extract::{Session, bearer};
use crate::state::Shared;

/// `GET /v1/connected_apps`
pub async fn list(
    State(s): State<Shared>,
    Session(session): Session,
) -> ApiResult<Json<Vec<ConnectedApp>>> {
    Ok(Json(
        apps::connected_apps_of(&s, &session.o, &session.u).await?,
    ))
}

/// `POST /v1/connected_apps/{client_id}/revoke`: removes the consent and revokes every token of
/// this (user, client). Only the session's own user is ever touched.
pub async fn revoke(
    State(s): State<Shared>,
    Session(session): Session,
    PathParams(client_id): PathParams<String>,
) -> ApiResult<Json<Value>> {
    apps::revoke_connected_app(&s, &session.o, &session.u, &client_id, "user_revoked").await?;
    Ok(Json(json!({"revoked": true, "client_id": client_id})))
}

// --- admin API ---

/// The member an admin user endpoint addresses: `?organization_id=` (the implicit organization
/// when absent).
#[derive(Deserialize)]
pub struct MemberQuery {
    #[serde(default)]
    organization_id: Option<String>,
}

fn member_org(q: &Result<Query<MemberQuery>, axum::extract::rejection::QueryRejection>) -> &str {
    crate::flows::orgs::org_or_default(
        q.as_ref()
            .ok()
            .and_then(|Query(q)| q.organization_id.as_deref()),
    )
}

type MemberParam = Result<Query<MemberQuery>, axum::extract::rejection::QueryRejection>;

pub fn admin(s: &Shared, headers: &HeaderMap) -> ApiResult<()> {
    let Some(key) = &s.cfg.admin_key else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "the admin API is off: set admin_key (or CONSENTRY_ADMIN_KEY)",
        ));
    };
    let presented = bearer(headers).unwrap_or("");
    if aws_lc_rs::constant_time::verify_slices_are_equal(key.as_bytes(), presented.as_bytes())
        .is_err()
    {
        return Err(ApiError::unauthorized(
            ErrorCode::InvalidToken,
            "the admin API needs Authorization: Bearer <admin_key>",
        ));
    }
    Ok(())
}

pub async fn admin_user_apps(
    State(s): State<Shared>,
    headers: HeaderMap,
    PathParams(user_id): PathParams<String>,
    q: MemberParam,
) -> ApiResult<Json<Vec<ConnectedApp>>> {
    admin(&s, &headers)?;
    Ok(Json(
        apps::connected_apps_of(&s, member_org(&q), &user_id).await?,
    ))
}

pub async fn admin_revoke_user_app(
    State(s): State<Shared>,
    headers: HeaderMap,
    PathParams((user_id, client_id)): PathParams<(String, String)>,
    q: MemberParam,
) -> ApiResult<Json<Value>> {
    admin(&s, &headers)?;
    apps::revoke_connected_app(&s, member_org(&q), &user_id, &client_id, "admin").await?;
    Ok(Json(
        json!({"revoked": true, "user_id": user_id, "client_id": client_id}),
    ))
}

/// `POST /admin/v1/users/{user_id}/revoke`: revokes every grant of the user, with every client
/// (their refresh tokens stop working, their access tokens introspect inactive). The user and
/// their consents stay.
pub async fn admin_revoke_user(
    State(s): State<Shared>,
    headers: HeaderMap,
    PathParams(user_id): PathParams<String>,
    q: MemberParam,
) -> ApiResult<Json<Value>> {
    admin(&s, &headers)?;
    let Some(revoked) = apps::revoke_user(&s, member_org(&q), &user_id).await? else {
        return Err(no_user(&user_id));
    };
    Ok(Json(
        json!({"user_id": user_id, "revoked": true, "revoked_grants": revoked}),
    ))
}

/// `DELETE /admin/v1/users/{user_id}`: deletes the user and their consents and revokes every
/// grant they hold. A later attestation (with jit_provisioning) starts them afresh.
pub async fn admin_delete_user(
    State(s): State<Shared>,
    headers: HeaderMap,
    PathParams(user_id): PathParams<String>,
    q: MemberParam,
) -> ApiResult<StatusCode> {
    admin(&s, &headers)?;
    if !apps::delete_user(&s, member_org(&q), &user_id).await? {
        return Err(no_user(&user_id));
    }
    Ok(StatusCode::NO_CONTENT)
}

fn no_user(user_id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        format!("no user '{}'", truncate(user_id)),
    )
}

#[derive(Deserialize)]
pub struct Page {
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<i64>,
}

fn client_json(c: &crate::clients::Client) -> Value {
    json!({
        "client_id": c.client_id, "client_name": c.client_name, "redirect_uris": c.redirect_uris,
        "token_endpoint_auth_method": c.token_endpoint_auth_method, "grant_types": c.grant_types,
        "client_uri": c.client_uri, "logo_uri": c.logo_uri, "verified": c.verified,
        "source": c.source.as_str(), "first_party": c.is_first_party(),
    })
}

/// Registered clients (DCR) and pre-registered ones, in one list ordered by client_id and paged
/// by it: at most `limit` clients whose id sorts after `after`.
pub async fn admin_clients(
    State(s): State<Shared>,
    headers: HeaderMap,
    page: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    admin(&s, &headers)?;
    let Query(page) = page.map_err(|e| {
        ApiError::invalid_request(format!(
            "query: {} (expected limit=1..1000 and after=<client_id>)",
            e.body_text()
        ))
    })?;
    let limit = page.limit.unwrap_or(100).clamp(1, 1000);
    let after = page.after.unwrap_or_default();
    let mut clients: Vec<crate::clients::Client> = s
        .cfg
        .clients
        .values()
        .filter(|c| c.client_id.as_str() > after.as_str())
        .cloned()
        .collect();
    // The first `limit` registered clients after `after` hold every one this page can show.
    for r in &s.store.clients(limit, &after).await? {
        if !s.cfg.clients.contains_key(&r.client_id) {
            clients.push(crate::clients::client_from_row(r)?);
        }
    }
    clients.sort_by(|a, b| a.client_id.cmp(&b.client_id));
    clients.truncate(usize::try_from(limit).unwrap_or(1000));
    let next = (clients.len() as i64 == limit)
        .then(|| clients.last().map(|c| c.client_id.clone()))
        .flatten();
    let items: Vec<Value> = clients.iter().map(client_json).collect();
    Ok(Json(json!({"clients": items, "next_after": next})))
}

pub async fn admin_client(
    State(s): State<Shared>,
    headers: HeaderMap,
    PathParams(client_id): PathParams<String>,
) -> ApiResult<Json<Value>> {
    admin(&s, &headers)?;
    let c = s.client(&client_id).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("no client '{}'", truncate(&client_id)),
        )
    })?;
    Ok(Json(client_json(&c)))
}

pub async fn admin_delete_client(
    State(s): State<Shared>,
    headers: HeaderMap,
    PathParams(client_id): PathParams<String>,
) -> ApiResult<StatusCode> {
    admin(&s, &headers)?;
    if s.cfg.clients.contains_key(&client_id) {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidRequest,
            format!(
                "client '{}' is pre-registered in the config file; remove it there",
                truncate(&client_id)
            ),
        ));
    }
    if !apps::delete_client(&s, &client_id).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("no registered client '{}'", truncate(&client_id)),
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}
