//! Attestation: a Trusted Auth Token in, a browser session out (the user row recorded, a
//! single-use `jti` spent).

use axum::http::StatusCode;
use consentry_protocol::ErrorCode;
use consentry_protocol::wire::User;

use crate::clients::{quoted_list, truncate};
use crate::crypto::SessionClaims;
use crate::domain::events::Event;
use crate::error::{ApiError, ApiResult};
use crate::flows::emit;
use crate::state::{Shared, now};
use crate::store::{AttestOutcome, UserRow};
use crate::tat::TatError;

const DEFAULT_SESSION_MINUTES: u32 = 10;

pub async fn attest_tat(
    s: &Shared,
    tat: &str,
    profile_id: &str,
    minutes: Option<u32>,
) -> ApiResult<(String, SessionClaims)> {
    let minutes = minutes.unwrap_or(DEFAULT_SESSION_MINUTES);
    let max = s.cfg.max_session_duration_minutes;
    if !(1..=max).contains(&minutes) {
        return Err(ApiError::invalid_request(format!(
            "session_duration_minutes {minutes} is out of range; expected 1..={max}"
        )));
    }
    let profile = s.cfg.profile(profile_id).ok_or_else(|| {
        ApiError::invalid_request(format!(
            "profile_id '{}' is not a configured token profile; expected one of: {}",
            truncate(profile_id),
            quoted_list(
                &s.cfg
                    .token_profiles
                    .iter()
                    .map(|p| p.id.clone())
                    .collect::<Vec<_>>()
            )
        ))
    })?;
    let now = now();
    let v = match s.tat.verify(profile, tat, now).await {
        Ok(v) => v,
        Err(e) => {
            let e = match e {
                TatError::Invalid(m) => {
                    ApiError::unauthorized(ErrorCode::InvalidTrustedAuthToken, m)
                }
                TatError::Unavailable(m) => ApiError::unavailable(m),
            };
            emit(&Event::AttestationRefused {
                profile_id: profile.id.clone(),
                code: e.code,
            });
            return Err(e);
        }
    };
    let row = UserRow {
        organization_id: v.organization_id.clone(),
        user_id: v.user_id.clone(),
        email: v.email.clone(),
        name: v.name.clone(),
        roles: v.roles.clone(),
    };
    let jti = v.jti.clone().filter(|_| profile.single_use_jti);
    let outcome = s
        .store
        .attest(
            &profile.issuer,
            jti.as_deref(),
            v.exp.saturating_add(crate::tat::LEEWAY_SECONDS),
            &row,
            v.organization_name.as_deref(),
            &profile.id,
            profile.jit_provisioning,
            now,
        )
        .await?;
    match outcome {
        AttestOutcome::Recorded => {}
        AttestOutcome::Replayed => {
            return Err(ApiError::unauthorized(
                ErrorCode::InvalidTrustedAuthToken,
                format!(
                    "trusted auth token jti '{}' was already used; mint a fresh token for each attempt",
                    truncate(jti.as_deref().unwrap_or(""))
                ),
            ));
        }
        AttestOutcome::UnknownUser => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::AccessDenied,
                format!(
                    "user '{}' does not exist and token profile '{}' has jit_provisioning = false",
                    truncate(&v.user_id),
                    profile.id
                ),
            ));
        }
    }
    let expires_at = now + i64::from(minutes) * 60;
    let claims = SessionClaims {
        u: v.user_id,
        p: profile.id.clone(),
        e: expires_at,
        i: now,
        m: v.email,
        n: v.name,
        r: v.roles,
        o: v.organization_id,
        on: v.organization_name,
    };
    let token = s.sealer.session_token(&claims)?;
    emit(&Event::SessionAttested {
        user_id: claims.u.clone(),
        profile_id: claims.p.clone(),
    });
    Ok((token, claims))
}

/// The user as the browser API shows them: a member of `organization_name`'s organization
/// (the implicit organization is not named).
pub fn wire_user(u: UserRow, organization_name: Option<String>) -> User {
    let implicit = u.organization_id == crate::config::DEFAULT_ORGANIZATION;
    User {
        user_id: u.user_id,
        email: u.email,
        name: u.name,
        roles: u.roles,
        organization_id: (!implicit).then_some(u.organization_id),
        organization_name,
    }
}

/// The user as attested: the session carries the attributes, signed.
pub fn session_user(session: &SessionClaims) -> UserRow {
    UserRow {
        organization_id: session.o.clone(),
        user_id: session.u.clone(),
        email: session.m.clone(),
        name: session.n.clone(),
        roles: session.r.clone(),
    }
}
