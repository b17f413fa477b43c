//! Connected apps (a user's grants, by client) and the operator's revocations. Every revocation
//! emits what it did.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use consentry_protocol::ErrorCode;
use consentry_protocol::wire::ConnectedApp;

use crate::clients::truncate;
use crate::domain::events::Event;
use crate::error::{ApiError, ApiResult};
use crate::flows::emit;
use crate::state::{Shared, now};

/// A member's grants, one entry per client.
pub async fn connected_apps_of(
    s: &Shared,
    org: &str,
    user_id: &str,
) -> ApiResult<Vec<ConnectedApp>> {
    let rows = s.store.connected_apps(org, user_id).await?;
    let mut by_client: BTreeMap<String, ConnectedApp> = BTreeMap::new();
    for r in rows {
        let app = by_client
            .entry(r.client_id.clone())
            .or_insert_with(|| ConnectedApp {
                client_id: r.client_id.clone(),
                client_name: r.client_id.clone(),
                logo_uri: None,
                scopes: Vec::new(),
                resources: Vec::new(),
                granted_at: r.granted_at,
                last_used_at: r.last_used_at,
            });
        if !app.scopes.contains(&r.scope) {
            app.scopes.push(r.scope.clone());
        }
        if !app.resources.contains(&r.resource) && r.resource != s.cfg.issuer {
            app.resources.push(r.resource.clone());
        }
        app.granted_at = app.granted_at.min(r.granted_at);
    }
    let mut out = Vec::with_capacity(by_client.len());
    for (_, mut app) in by_client {
        // A client deleted since keeps its id as the name; a CIMD client may be unreachable:
        // neither must hide the grant from the user who wants to revoke it.
        if let Ok(Some(c)) = s.client(&app.client_id).await {
            app.client_name = c.client_name;
            app.logo_uri = c.logo_uri;
        }
        out.push(app);
    }
    Ok(out)
}

/// Remove `user_id`'s consent to `client_id` and revoke every token of the pair. `reason` is
/// who did it: `user_revoked` (the connected-apps screen) or `admin`.
pub async fn revoke_connected_app(
    s: &Shared,
    org: &str,
    user_id: &str,
    client_id: &str,
    reason: &'static str,
) -> ApiResult<()> {
    if !s
        .store
        .revoke_connected_app(org, user_id, client_id, now())
        .await?
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!(
                "client '{}' is not connected to user '{}'",
                truncate(client_id),
                truncate(user_id)
            ),
        ));
    }
    emit(&Event::GrantsRevoked {
        user_id: Some(user_id.to_owned()),
        client_id: Some(client_id.to_owned()),
        reason,
        count: 1,
    });
    Ok(())
}

/// Revoke every grant of the user, with every client; the number revoked, `None` for no user.
pub async fn revoke_user(s: &Shared, org: &str, user_id: &str) -> ApiResult<Option<u64>> {
    let revoked = s.store.revoke_user_grants(org, user_id, now()).await?;
    if let Some(count) = revoked {
        emit(&Event::GrantsRevoked {
            user_id: Some(user_id.to_owned()),
            client_id: None,
            reason: "admin",
            count,
        });
    }
    Ok(revoked)
}

/// Delete the user and their consents, revoking every grant; false for no user.
pub async fn delete_user(s: &Shared, org: &str, user_id: &str) -> ApiResult<bool> {
    let deleted = s.store.delete_user(org, user_id, now()).await?;
    if deleted {
        emit(&Event::UserDeleted {
            user_id: user_id.to_owned(),
        });
    }
    Ok(deleted)
}

/// Delete a registered client with its consents, revoking its grants; false for no such client.
pub async fn delete_client(s: &Shared, client_id: &str) -> ApiResult<bool> {
    let deleted = s.store.delete_client(client_id, now()).await?;
    if deleted {
        emit(&Event::ClientDeleted {
            client_id: client_id.to_owned(),
        });
    }
    Ok(deleted)
}
