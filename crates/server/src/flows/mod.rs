//! Orchestration: load what a decision needs from the store, call the domain, persist the
//! result, emit what happened. Flows know nothing of HTTP: handlers in `http` decode a request
//! into a flow's input and encode its output.

pub mod apps;
pub mod attest;
pub mod authorize;
pub mod introspect;
pub mod oidc;
pub mod orgs;
pub mod register;
pub mod token;

use consentry_protocol::ErrorCode;

use crate::domain::Denial;
use crate::domain::events::Event;
use crate::error::ApiError;

/// A refusal by the domain: `400` with its code (the HTTP layer adds a redirect where the
/// error may go back to the client).
impl From<Denial> for ApiError {
    fn from(d: Denial) -> Self {
        let status = match d.code {
            ErrorCode::AppNotAllowedForOrg | ErrorCode::ScopeNotAllowedForOrg => {
                axum::http::StatusCode::FORBIDDEN
            }
            _ => axum::http::StatusCode::BAD_REQUEST,
        };
        let mut e = ApiError::new(status, d.code, d.description);
        e.refusal = d.refusal.map(Box::new);
        e
    }
}

/// Log an event with `tracing` fields (`event` = its name). The audit trail will also persist
/// it, in the transaction of the change it describes.
pub fn emit(e: &Event) {
    let name = e.name();
    match e {
        Event::SessionAttested {
            user_id,
            profile_id,
        } => tracing::info!(event = name, user_id, profile_id),
        Event::AttestationRefused { profile_id, code } => {
            tracing::info!(event = name, profile_id, code = code.as_str())
        }
        Event::ConsentGranted {
            user_id,
            client_id,
            scopes,
        } => tracing::info!(event = name, user_id, client_id, scopes = %scopes.join(" ")),
        Event::ConsentDenied { user_id, client_id } | Event::CodeIssued { user_id, client_id } => {
            tracing::info!(event = name, user_id, client_id)
        }
        Event::Denied {
            path,
            client_id,
            code,
        } => tracing::info!(
            event = name,
            path = path.as_str(),
            client_id,
            code = code.as_str()
        ),
        Event::CodeReplayed { client_id } => tracing::warn!(event = name, client_id),
        Event::TokensIssued {
            path,
            client_id,
            subject,
            grant_id,
            scopes,
        } => tracing::info!(
            event = name,
            path = path.as_str(),
            client_id,
            subject,
            grant_id = grant_id.as_deref().unwrap_or(""),
            scopes = %scopes.join(" ")
        ),
        Event::RefreshRotated {
            client_id,
            grant_id,
        } => tracing::debug!(event = name, client_id, grant_id),
        Event::RefreshReuseDetected {
            client_id,
            grant_id,
        } => tracing::warn!(
            event = name,
            client_id,
            grant_id = grant_id.as_deref().unwrap_or("")
        ),
        Event::GrantsRevoked {
            user_id,
            client_id,
            reason,
            count,
        } => tracing::info!(
            event = name,
            user_id = user_id.as_deref().unwrap_or(""),
            client_id = client_id.as_deref().unwrap_or(""),
            reason,
            count
        ),
        Event::TokenRevoked { client_id }
        | Event::ClientRegistered { client_id }
        | Event::ClientUpdated { client_id }
        | Event::ClientDeleted { client_id } => tracing::info!(event = name, client_id),
        Event::UserDeleted { user_id } => tracing::info!(event = name, user_id),
        Event::PolicyChanged {
            organization_id,
            version,
            by,
            revoked,
        } => tracing::info!(event = name, organization_id, version, by, revoked),
    }
}

/// The decision's view of an organization's policy as the store resolved it.
pub fn org_of(view: &crate::store::OrgPolicyView) -> crate::domain::decision::Org<'_> {
    crate::domain::decision::Org {
        id: &view.organization_id,
        name: view.name.as_deref(),
        policy: &view.policy,
    }
}
