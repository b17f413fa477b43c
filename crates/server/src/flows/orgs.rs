//! Organizations: the member's organization, its connected apps (every member's grants by
//! app), revoking an app for the whole organization, and its policy — read, and changed with
//! compare-and-set on its version, revoking in the same transaction every grant the new policy
//! excludes (judged by the one decision's [`grant_stands`]).
//!
//! The same functions serve the operator's admin API (any organization, by id) and an
//! organization admin's browser API (their session's organization only; the HTTP layer decides
//! who may call which).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::StatusCode;
use consentry_protocol::wire::{
    OrgAppMember, OrgConnectedApp, OrgConnectedApps, OrganizationInfo, OrganizationSummary,
    PolicyScope, PolicyState,
};
use consentry_protocol::{ErrorCode, OrgPolicy, parse_scope};

use crate::clients::{quoted_list, truncate};
use crate::config::{Config, DEFAULT_ORGANIZATION};
use crate::crypto::SessionClaims;
use crate::domain::decision::{App, Org, Path, grant_stands};
use crate::domain::events::Event;
use crate::error::{ApiError, ApiResult};
use crate::flows::emit;
use crate::flows::token::is_metadata_document_id;
use crate::state::{Shared, now};
use crate::store::{OrgFamily, OrgRow, PutPolicy};

/// Whether the session's member administers their organization: they hold one of their token
/// profile's `admin_roles` (as attested for this session: a demoted admin loses it with their
/// next session).
pub fn is_admin(cfg: &Config, session: &SessionClaims) -> bool {
    cfg.profile(&session.p).is_some_and(|p| {
        p.admin_roles
            .iter()
            .any(|r| session.r.iter().any(|held| held == r))
    })
}

/// `GET /v1/organization`.
pub fn info(cfg: &Config, session: &SessionClaims) -> OrganizationInfo {
    OrganizationInfo {
        organization_id: session.o.clone(),
        organization_name: session.on.clone(),
        is_admin: is_admin(cfg, session),
    }
}

fn no_org(org: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        format!(
            "no organization '{}' (an organization appears when its first member signs in, or when its policy is created with If-None-Match: *)",
            truncate(org)
        ),
    )
}

fn summary(r: OrgRow) -> OrganizationSummary {
    OrganizationSummary {
        organization_id: r.organization_id,
        organization_name: r.name,
        members: r.members,
        policy_version: r.version,
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

pub async fn organizations(s: &Shared) -> ApiResult<Vec<OrganizationSummary>> {
    Ok(s.store
        .organizations()
        .await?
        .into_iter()
        .map(summary)
        .collect())
}

pub async fn organization(s: &Shared, org: &str) -> ApiResult<OrganizationSummary> {
    s.store
        .organization(org)
        .await?
        .map(summary)
        .ok_or_else(|| no_org(org))
}

/// Every app members of `org` connected, with who connected it and what they granted.
pub async fn connected_apps(s: &Shared, org: &str) -> ApiResult<OrgConnectedApps> {
    let rows = s.store.org_connected_apps(org).await?;
    let mut apps: BTreeMap<String, BTreeMap<String, OrgAppMember>> = BTreeMap::new();
    for r in rows {
        let m = apps
            .entry(r.client_id.clone())
            .or_default()
            .entry(r.user_id.clone())
            .or_insert_with(|| OrgAppMember {
                user_id: r.user_id.clone(),
                email: r.email.clone(),
                name: r.name.clone(),
                scopes: Vec::new(),
                resources: Vec::new(),
                granted_at: r.granted_at,
                last_used_at: r.last_used_at,
            });
        if !m.scopes.contains(&r.scope) {
            m.scopes.push(r.scope.clone());
        }
        if !m.resources.contains(&r.resource) && r.resource != s.cfg.issuer {
            m.resources.push(r.resource.clone());
        }
        m.granted_at = m.granted_at.min(r.granted_at);
    }
    let mut out = Vec::with_capacity(apps.len());
    for (client_id, members) in apps {
        // A client deleted since keeps its id as its name; an unreachable metadata document
        // must not hide the grants from the admin who wants to revoke them.
        let client = s.client(&client_id).await.ok().flatten();
        let (client_name, logo_uri, client_uri, first_party, host) = match &client {
            Some(c) => (
                c.client_name.clone(),
                c.logo_uri.clone(),
                c.client_uri.clone(),
                c.is_first_party(),
                c.metadata_host(),
            ),
            None => (client_id.clone(), None, None, false, None),
        };
        out.push(OrgConnectedApp {
            client_id,
            client_name,
            logo_uri,
            client_uri,
            first_party,
            host,
            members: members.into_values().collect(),
        });
    }
    out.sort_by(|a, b| {
        a.client_name
            .to_lowercase()
            .cmp(&b.client_name.to_lowercase())
            .then_with(|| a.client_id.cmp(&b.client_id))
    });
    Ok(OrgConnectedApps {
        organization_id: org.to_owned(),
        apps: out,
    })
}

/// Revoke an app for every member of `org` (their consents and grants); the number of live
/// grants revoked. 404 when no member of `org` ever connected it.
pub async fn revoke_app(
    s: &Shared,
    org: &str,
    client_id: &str,
    by: &'static str,
) -> ApiResult<u64> {
    let Some(revoked) = s.store.revoke_org_app(org, client_id, by, now()).await? else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!(
                "no member of organization '{}' connected client '{}'",
                truncate(org),
                truncate(client_id)
            ),
        ));
    };
    emit(&Event::GrantsRevoked {
        user_id: None,
        client_id: Some(client_id.to_owned()),
        reason: by,
        count: revoked,
    });
    Ok(revoked)
}

/// The scopes a policy can govern: every scope of every resource, with what it allows.
fn available_scopes(cfg: &Config) -> Vec<PolicyScope> {
    let mut out: Vec<PolicyScope> = Vec::new();
    for sc in cfg.resources.iter().flat_map(|r| &r.scopes) {
        if out.iter().any(|p| &p.scope == sc) {
            continue;
        }
        let def = cfg.scopes.get(sc);
        out.push(PolicyScope {
            scope: sc.clone(),
            description: def.map(|d| d.description.clone()).unwrap_or_default(),
            required_roles: def.map(|d| d.required_roles.clone()).unwrap_or_default(),
        });
    }
    out
}

fn state(cfg: &Config, row: OrgRow, revoked: Option<u64>) -> PolicyState {
    PolicyState {
        organization_id: row.organization_id,
        organization_name: row.name,
        version: row.version,
        policy: (*row.policy).clone(),
        available_scopes: available_scopes(cfg),
        revoked_grants: revoked,
    }
}

/// An organization's policy and its version. 404 for an organization without a row.
pub async fn policy(s: &Shared, org: &str) -> ApiResult<PolicyState> {
    let row = s
        .store
        .organization(org)
        .await?
        .ok_or_else(|| no_org(org))?;
    Ok(state(&s.cfg, row, None))
}

/// The server's side of a policy's validity (its grammar is `OrgPolicy::check`): every scope it
/// names is served here, and limits only shorten the server's own.
fn check_policy(cfg: &Config, p: &OrgPolicy) -> ApiResult<()> {
    let bad =
        |field: String, msg: String| ApiError::invalid_request(format!("policy: {field}: {msg}"));
    p.check()
        .map_err(|e| bad(e.field.clone(), e.message.clone()))?;
    let known: Vec<String> = available_scopes(cfg).into_iter().map(|s| s.scope).collect();
    let named = p
        .scopes
        .disallowed
        .iter()
        .enumerate()
        .map(|(i, sc)| (format!("scopes.disallowed[{i}]"), sc))
        .chain(
            p.scopes
                .required_roles
                .keys()
                .map(|sc| (format!("scopes.required_roles.{sc}"), sc)),
        );
    for (field, sc) in named {
        if !known.contains(sc) {
            return Err(bad(
                field,
                format!(
                    "'{}' is not a scope served here; expected one of: {}",
                    truncate(sc),
                    quoted_list(&known)
                ),
            ));
        }
    }
    for (field, v, max) in [
        (
            "limits.access_token_ttl_seconds",
            p.limits.access_token_ttl_seconds,
            cfg.access_token_ttl_seconds,
        ),
        (
            "limits.grant_max_lifetime_seconds",
            p.limits.grant_max_lifetime_seconds,
            cfg.grant_max_lifetime_seconds,
        ),
    ] {
        if let Some(v) = v
            && v > max
        {
            return Err(bad(
                field.to_owned(),
                format!(
                    "{v} exceeds the server's own limit ({max} s); an organization can only shorten it"
                ),
            ));
        }
    }
    Ok(())
}

/// What a `PUT` of a policy is conditional on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// `If-Match: "<version>"`: change it only if this is still its version.
    Version(i64),
    /// `If-None-Match: *`: create it, only if the organization has no row yet.
    Absent,
}

/// The app a stored grant is for, as the policy sees it, without resolving the client (a
/// metadata document is never fetched for this).
fn app_of<'a>(cfg: &Config, f: &'a OrgFamily) -> App<'a> {
    let document = is_metadata_document_id(&f.client_id);
    App {
        client_id: &f.client_id,
        name: &f.client_id,
        first_party: cfg.clients.contains_key(&f.client_id) || f.first_party_row == Some(true),
        host: document
            .then(|| consentry_protocol::split_uri(&f.client_id))
            .flatten()
            .and_then(|u| u.host)
            .map(str::to_ascii_lowercase),
    }
}

/// Replace an organization's policy if the precondition holds, revoking every live grant the
/// new policy excludes in the same transaction.
pub async fn put_policy(
    s: &Shared,
    org: &str,
    pre: Precondition,
    policy: OrgPolicy,
    by: &'static str,
) -> ApiResult<PolicyState> {
    check_policy(&s.cfg, &policy)?;
    if org.is_empty() || org.len() > 255 || org.chars().any(char::is_control) {
        return Err(ApiError::invalid_request(
            "organization_id must be 1 to 255 characters without control characters",
        ));
    }
    let now = now();
    let excludes = {
        let cfg = s.cfg.clone();
        let policy = Arc::new(policy.clone());
        let org = org.to_owned();
        move |f: &OrgFamily| {
            let scopes = parse_scope(Some(&f.scope)).unwrap_or_default();
            let view = Org {
                id: &org,
                name: None,
                policy: &policy,
            };
            grant_stands(
                view,
                &app_of(&cfg, f),
                &scopes,
                f.roles.as_deref(),
                f.created_at,
                now,
                Path::Refresh,
            )
            .is_err()
        }
    };
    let expected = match pre {
        Precondition::Version(v) => Some(v),
        Precondition::Absent => None,
    };
    match s
        .store
        .put_policy(org, expected, &policy, now, excludes)
        .await?
    {
        PutPolicy::Done { row, revoked } => {
            emit(&Event::PolicyChanged {
                organization_id: row.organization_id.clone(),
                version: row.version,
                by,
                revoked,
            });
            Ok(state(&s.cfg, row, Some(revoked)))
        }
        PutPolicy::Stale { current: 0 } => Err(no_org(org)),
        PutPolicy::Stale { current } => Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            ErrorCode::PreconditionFailed,
            match pre {
                Precondition::Version(v) => format!(
                    "If-Match: the policy of organization '{}' is at version {current}, not {v}: someone changed it meanwhile; read it again (GET) and reapply your change",
                    truncate(org)
                ),
                Precondition::Absent => format!(
                    "If-None-Match: * but organization '{}' has a policy already (version {current}); send If-Match: \"{current}\" to change it",
                    truncate(org)
                ),
            },
        )),
    }
}

/// The implicit organization's id, for the admin API's user endpoints (`?organization_id=`).
pub fn org_or_default(org: Option<&str>) -> &str {
    org.filter(|o| !o.is_empty())
        .unwrap_or(DEFAULT_ORGANIZATION)
}
