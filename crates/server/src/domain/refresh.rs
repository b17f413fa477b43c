//! Whether a presented refresh token may rotate. The token's own state is judged here (issued to
//! this client, not revoked or expired, its grant within `grant_max_lifetime_seconds`, its user
//! still there, not rotated already beyond the reuse grace window); what the new token may hold
//! is the one decision's ([`decide`] with [`Ask::Refresh`]), run against the user's current roles
//! and the client as it is now.

use consentry_protocol::ErrorCode;

use crate::clients::Client;
use crate::config::Config;
use crate::domain::Denial;
use crate::domain::decision::{
    Ask, Context, Decision, Grant, Org, Path, Subject, client_may_use, decide,
};

/// A refresh token as stored, with its grant.
pub struct Presented<'a> {
    pub client_id: &'a str,
    pub user_id: &'a str,
    /// The user's roles as last attested; `None` when the user no longer exists.
    pub user_roles: Option<&'a [String]>,
    pub scopes: &'a [String],
    pub resources: &'a [String],
    pub revoked: bool,
    pub expires_at: i64,
    pub rotated_at: Option<i64>,
    pub grant_created_at: i64,
}

/// What the request asks of the token.
pub struct Request<'a> {
    pub client: &'a Client,
    pub scopes: Option<&'a [String]>,
    pub resources: &'a [String],
}

#[derive(Debug)]
pub enum Verdict {
    /// Rotate (`in_grace`: although it was rotated already, within the reuse grace window) and
    /// issue `grant`.
    Rotate {
        grant: Grant,
        in_grace: bool,
    },
    Refuse(Denial),
    /// Reuse of a rotated token: revoke the whole grant.
    RevokeAndRefuse(Denial),
}

pub fn reused() -> Denial {
    Denial::new(
        ErrorCode::InvalidGrant,
        "refresh_token was already used; every token of this grant has been revoked",
    )
}

fn invalid(description: impl Into<String>) -> Verdict {
    Verdict::Refuse(Denial::new(ErrorCode::InvalidGrant, description))
}

pub fn judge(
    cfg: &Config,
    org: Org<'_>,
    token: &Presented<'_>,
    req: &Request<'_>,
    now: i64,
) -> Verdict {
    let client_id = &req.client.client_id;
    if let Err(d) = client_may_use(req.client, Path::Refresh) {
        return Verdict::Refuse(d);
    }
    if token.client_id != client_id {
        return invalid(format!(
            "refresh_token was issued to another client, not to '{client_id}'"
        ));
    }
    if token.revoked {
        return invalid("refresh_token was revoked; authorize again");
    }
    let max_age = cfg.grant_max_lifetime_seconds;
    if now.saturating_sub(token.grant_created_at) >= max_age {
        return invalid(format!(
            "refresh_token belongs to a grant older than grant_max_lifetime_seconds ({max_age}s); authorize again"
        ));
    }
    let Some(roles) = token.user_roles else {
        return invalid("refresh_token belongs to a user who no longer exists; authorize again");
    };
    if token.expires_at <= now {
        return invalid("refresh_token expired; authorize again");
    }
    let grace = cfg.refresh_reuse_grace_seconds;
    let in_grace = match token.rotated_at {
        None => false,
        Some(t) if grace > 0 && now - t <= grace => true,
        Some(_) => return Verdict::RevokeAndRefuse(reused()),
    };
    let cx = Context {
        cfg,
        client: req.client,
        subject: Some(Subject {
            user_id: token.user_id,
            roles,
        }),
        org,
        now,
    };
    let ask = Ask::Refresh {
        grant_created_at: token.grant_created_at,
        granted_scopes: token.scopes,
        resources: token.resources,
        requested_scopes: req.scopes,
        requested_resources: req.resources,
    };
    match decide(&cx, &ask) {
        Decision::Issue { grant, .. } => Verdict::Rotate { grant, in_grace },
        Decision::Deny(d) => Verdict::Refuse(d),
        Decision::NeedsConsent { .. } | Decision::Declined(_) => {
            invalid("refresh_token needs the user's consent again; authorize again")
        }
    }
}
