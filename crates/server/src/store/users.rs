//! Users and the attestation of Trusted Auth Tokens (TAT).
//!
//! Owns the `users` table and `used_tat_jtis` (the replay record of TAT `jti`s, per issuer).
//! A user is a member of an organization: rows are keyed by (organization, user id).
//!
//! Invariants its transactions keep:
//! - Attesting a TAT is one transaction: the `jti` is recorded as used and the user is written
//!   together, with their organization (created with the default policy when new). A replayed `jti` changes nothing; an unknown user (no just-in-time provisioning)
//!   rolls the `jti` back, so the token is not burnt.
//! - Deleting a user deletes their consents and revokes every grant they hold in the same
//!   transaction.

use crate::args;
use crate::store::Store;
use crate::store::grants::revoke_user_families;
use crate::store::orgs::{OrgStamp, upsert_org};
use crate::store::sql::{DbError, DbResult, Row};

/// A stored user: a member of an organization.
#[derive(Clone, Debug)]
pub struct UserRow {
    pub organization_id: String,
    pub user_id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub roles: Vec<String>,
}

/// What attesting a Trusted Auth Token recorded.
pub enum AttestOutcome {
    /// The jti (if any) is now used and the user is stored.
    Recorded,
    /// The jti was used before: nothing changed.
    Replayed,
    /// No such user and just-in-time provisioning is off: nothing changed.
    UnknownUser,
}

impl Store {
    /// Record an attested Trusted Auth Token in one transaction: its `jti` as used (per issuer)
    /// and the user (created when `jit`, else only updated). A replay or an unknown user change
    /// nothing.
    #[allow(clippy::too_many_arguments)]
    pub async fn attest(
        &self,
        issuer: &str,
        jti: Option<&str>,
        jti_expires_at: i64,
        u: &UserRow,
        organization_name: Option<&str>,
        profile_id: &str,
        jit: bool,
        now: i64,
    ) -> DbResult<AttestOutcome> {
        let (issuer, jti, u, profile_id, org_name) = (
            issuer.to_owned(),
            jti.map(str::to_owned),
            u.clone(),
            profile_id.to_owned(),
            organization_name.map(str::to_owned),
        );
        let default_policy = self.policies.default_json();
        let result = self
            .run(move |tx| {
                if let Some(jti) = &jti {
                    let fresh = tx.exec(
                        "INSERT INTO used_tat_jtis (issuer, jti, expires_at) VALUES ($1, $2, $3) \
                         ON CONFLICT (issuer, jti) DO NOTHING",
                        &args![&issuer, jti, jti_expires_at],
                    )? == 1;
                    if !fresh {
                        return Ok(AttestOutcome::Replayed);
                    }
                }
                let roles = serde_json::to_string(&u.roles).unwrap_or_else(|_| "[]".into());
                if jit {
                    tx.exec(
                        "INSERT INTO users (organization_id, user_id, email, name, roles, profile_id, created_at, updated_at) \
                         VALUES ($7, $1, $2, $3, $4, $5, $6, $6) \
                         ON CONFLICT (organization_id, user_id) DO UPDATE SET email = $2, name = $3, roles = $4, \
                         profile_id = $5, updated_at = $6",
                        &args![&u.user_id, &u.email, &u.name, roles, &profile_id, now, &u.organization_id],
                    )?;
                } else if tx.exec(
                    "UPDATE users SET email = $2, name = $3, roles = $4, profile_id = $5, updated_at = $6 \
                     WHERE organization_id = $7 AND user_id = $1",
                    &args![&u.user_id, &u.email, &u.name, roles, &profile_id, now, &u.organization_id],
                )? != 1
                {
                    // Roll the jti back: an unknown user must not burn the token.
                    return Err(DbError::RolledBack(UNKNOWN_USER));
                }
                upsert_org(tx, &u.organization_id, org_name.as_deref(), &default_policy, now)?;
                Ok(AttestOutcome::Recorded)
            })
            .await;
        match result {
            Err(DbError::RolledBack(UNKNOWN_USER)) => Ok(AttestOutcome::UnknownUser),
            other => other,
        }
    }

    /// A member as stored, with their organization's policy stamp (read in the same query: a
    /// token path learns whether its cached policy is current without another round trip).
    pub async fn member(&self, org: &str, user_id: &str) -> DbResult<Option<(UserRow, OrgStamp)>> {
        let (org, user_id) = (org.to_owned(), user_id.to_owned());
        self.read(move |tx| {
            tx.query_opt(
                "SELECT u.organization_id, u.user_id, u.email, u.name, u.roles, o.version, o.policy, o.name \
                 FROM users u LEFT JOIN organizations o ON o.organization_id = u.organization_id \
                 WHERE u.organization_id = $1 AND u.user_id = $2",
                &args![org, user_id],
            )?
            .map(|r| Ok((user_row(&r)?, OrgStamp::from_row(&r, 5)?)))
            .transpose()
        })
        .await
    }

    /// Delete a member and their consents and revoke every grant they hold, in one transaction.
    /// False when there was no such member and nothing of theirs.
    pub async fn delete_user(&self, org: &str, user_id: &str, now: i64) -> DbResult<bool> {
        let (org, user_id) = (org.to_owned(), user_id.to_owned());
        self.run(move |tx| {
            let users = tx.exec(
                "DELETE FROM users WHERE organization_id = $1 AND user_id = $2",
                &args![&org, &user_id],
            )?;
            let consents = tx.exec(
                "DELETE FROM consent_grants WHERE organization_id = $1 AND user_id = $2",
                &args![&org, &user_id],
            )?;
            let families = revoke_user_families(tx, &org, &user_id, "user_deleted", now)?;
            Ok(users + consents + families > 0)
        })
        .await
    }
}

const UNKNOWN_USER: &str = "unknown user";

/// Columns: organization_id, user_id, email, name, roles.
fn user_row(r: &Row) -> DbResult<UserRow> {
    Ok(UserRow {
        organization_id: r.text(0)?,
        user_id: r.text(1)?,
        email: r.opt_text(2)?,
        name: r.opt_text(3)?,
        roles: serde_json::from_str(&r.text(4)?).unwrap_or_default(),
    })
}
