//! Grants (token families), their refresh tokens, and revocation.
//!
//! Owns `token_families`, `refresh_tokens` and `revoked_access_tokens` (the access-token
//! deny-list). A grant is the family of tokens issued from one authorization code, linked by
//! refresh rotation; it is created by `codes.rs` ([`insert_family`], [`insert_refresh`]).
//!
//! Invariants its transactions keep:
//! - A refresh token is rotated once: reading it, judging it and rotating it (or revoking its
//!   grant) is one transaction, and a request that loses the race to another rotation, or finds
//!   the grant revoked meanwhile, rolls back and leaves no trace.
//! - A retry within the reuse grace window supersedes the successor issued before: a grant
//!   never has two live refresh chains.
//! - Through [`Store::refresh_grant`], a successor never outlives its grant (`max_family_age`
//!   from the family's creation).
//! - Revocation is by grant, by user, or by (user, client); it sets `revoked_at` once, with a
//!   reason, and never un-revokes.

use crate::args;
use crate::store::Store;
use crate::store::orgs::OrgStamp;
use crate::store::sql::{DbError, DbResult, Tx};

/// A grant: the tokens issued from one authorization code, linked by refresh rotation.
#[derive(Clone, Debug)]
pub struct FamilyRow {
    pub family_id: String,
    pub organization_id: String,
    pub user_id: String,
    pub client_id: String,
    pub scope: String,
    pub resources: Vec<String>,
    pub revoked_at: Option<i64>,
}

#[derive(Clone, Debug)]
pub struct RefreshRow {
    pub family: FamilyRow,
    pub expires_at: i64,
    pub rotated_at: Option<i64>,
    /// When the grant (the family) was created: its absolute lifetime counts from here.
    pub family_created_at: i64,
    /// The grant's user's roles as last attested; `None` when the user no longer exists.
    pub user_roles: Option<Vec<String>>,
    /// The organization's policy version (and document), read with the row.
    pub org: OrgStamp,
}

/// What [`Store::refresh_grant`] should do with the token it read.
pub enum RefreshDecision<T, E> {
    /// Rotate it (`allow_rotated`: even if it was rotated already, the reuse grace window) and
    /// hand `plan` back. The successor expires at most `max_family_age` after the grant began.
    Rotate {
        plan: T,
        allow_rotated: bool,
        max_family_age: i64,
    },
    /// Change nothing, answer `E`.
    Refuse(E),
    /// Revoke the token's whole grant (reuse of a rotated token), answer `E`.
    RevokeAndRefuse(E),
}

/// What [`Store::refresh_grant`] did.
pub enum RefreshGrant<T, E> {
    /// No such refresh token.
    Unknown,
    /// Refused as decided; `revoked`: the grant is now revoked.
    Refused { error: E, revoked: bool },
    /// Rotated: the successor is stored, the presented token is used.
    Rotated { row: Box<RefreshRow>, plan: T },
    /// Another request rotated the token (or revoked the grant) between read and write:
    /// nothing changed.
    LostRace,
}

impl Store {
    pub async fn refresh_token(&self, hash: &str) -> DbResult<Option<RefreshRow>> {
        let hash = hash.to_owned();
        self.read(move |tx| refresh_row(tx, &hash)).await
    }

    /// The refresh grant in one transaction: read the presented token (by hash), let `decide`
    /// judge it, then rotate it to `new_hash` (or revoke its grant) as decided.
    /// The successor never outlives the grant: its expiry is at most the family's creation plus
    /// `max_family_age`.
    pub async fn refresh_grant<T, E, D>(
        &self,
        hash: &str,
        new_hash: &str,
        new_expires_at: i64,
        now: i64,
        decide: D,
    ) -> DbResult<RefreshGrant<T, E>>
    where
        T: Send + 'static,
        E: Send + 'static,
        D: FnOnce(&RefreshRow) -> RefreshDecision<T, E> + Send + 'static,
    {
        let (hash, new_hash) = (hash.to_owned(), new_hash.to_owned());
        let result = self
            .run(move |tx| {
                let Some(row) = refresh_row(tx, &hash)? else {
                    return Ok(RefreshGrant::Unknown);
                };
                let (plan, allow_rotated, max_family_age) = match decide(&row) {
                    RefreshDecision::Refuse(error) => {
                        return Ok(RefreshGrant::Refused {
                            error,
                            revoked: false,
                        });
                    }
                    RefreshDecision::RevokeAndRefuse(error) => {
                        revoke_family(tx, &row.family.family_id, "refresh_reuse", now)?;
                        return Ok(RefreshGrant::Refused {
                            error,
                            revoked: true,
                        });
                    }
                    RefreshDecision::Rotate {
                        plan,
                        allow_rotated,
                        max_family_age,
                    } => (plan, allow_rotated, max_family_age),
                };
                let family_id = &row.family.family_id;
                let family_end = row.family_created_at.saturating_add(max_family_age);
                rotate(
                    tx,
                    &hash,
                    allow_rotated,
                    family_id,
                    &new_hash,
                    new_expires_at.min(family_end),
                    now,
                )?;
                Ok(RefreshGrant::Rotated {
                    row: Box::new(row),
                    plan,
                })
            })
            .await;
        // A lost race must leave no trace: returning an error rolled the operation back.
        match result {
            Err(DbError::RolledBack(LOST_RACE)) => Ok(RefreshGrant::LostRace),
            other => other,
        }
    }

    /// Rotate: mark `old_hash` rotated (only if it still is not, unless `allow_rotated` — the
    /// reuse grace window) and store its successor. False when another request rotated it first
    /// or the grant was revoked meanwhile.
    pub async fn rotate_refresh(
        &self,
        old_hash: &str,
        allow_rotated: bool,
        family_id: &str,
        new_hash: &str,
        new_expires_at: i64,
        now: i64,
    ) -> DbResult<bool> {
        let (old_hash, family_id, new_hash) = (
            old_hash.to_owned(),
            family_id.to_owned(),
            new_hash.to_owned(),
        );
        let result = self
            .run(move |tx| {
                rotate(
                    tx,
                    &old_hash,
                    allow_rotated,
                    &family_id,
                    &new_hash,
                    new_expires_at,
                    now,
                )
            })
            .await;
        // A lost race must leave no trace: returning an error rolls the operation back.
        match result {
            Ok(()) => Ok(true),
            Err(DbError::RolledBack(LOST_RACE)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub async fn revoke_family(&self, family_id: &str, reason: &str, now: i64) -> DbResult<()> {
        let (family_id, reason) = (family_id.to_owned(), reason.to_owned());
        self.run(move |tx| revoke_family(tx, &family_id, &reason, now))
            .await
    }

    pub async fn revoke_access_token(&self, jti: &str, expires_at: i64) -> DbResult<()> {
        let jti = jti.to_owned();
        self.run(move |tx| {
            tx.exec(
                "INSERT INTO revoked_access_tokens (jti, expires_at) VALUES ($1, $2) \
                 ON CONFLICT (jti) DO NOTHING",
                &args![jti, expires_at],
            )?;
            Ok(())
        })
        .await
    }

    /// Is this access token revoked, one by one (`jti` on the deny-list) or with its grant
    /// (`gid` revoked or unknown)? One round trip.
    pub async fn access_token_revoked(&self, jti: &str, gid: Option<&str>) -> DbResult<bool> {
        let (jti, gid) = (jti.to_owned(), gid.map(str::to_owned));
        self.read(move |tx| {
            if tx
                .query_opt(
                    "SELECT 1 FROM revoked_access_tokens WHERE jti = $1",
                    &args![jti],
                )?
                .is_some()
            {
                return Ok(true);
            }
            let Some(gid) = gid else { return Ok(false) };
            match tx.query_opt(
                "SELECT revoked_at FROM token_families WHERE family_id = $1",
                &args![gid],
            )? {
                Some(r) => Ok(r.opt_int(0)?.is_some()),
                None => Ok(true),
            }
        })
        .await
    }

    /// Remove the user's consent for a client and revoke every grant of that (user, client).
    /// False when there was nothing to revoke.
    pub async fn revoke_connected_app(
        &self,
        org: &str,
        user_id: &str,
        client_id: &str,
        now: i64,
    ) -> DbResult<bool> {
        let (org, user_id, client_id) = (org.to_owned(), user_id.to_owned(), client_id.to_owned());
        self.run(move |tx| {
            let consents = tx.exec(
                "DELETE FROM consent_grants WHERE organization_id = $3 AND user_id = $1 AND client_id = $2",
                &args![&user_id, &client_id, &org],
            )?;
            let families = tx.exec(
                "UPDATE token_families SET revoked_at = $3, revoked_reason = 'user_revoked' \
                 WHERE organization_id = $4 AND user_id = $1 AND client_id = $2 AND revoked_at IS NULL",
                &args![&user_id, &client_id, now, &org],
            )?;
            Ok(consents + families > 0)
        })
        .await
    }

    /// Revoke every grant of a user (every client), keeping the user and their consents.
    /// `None` when there is no such user and nothing to revoke; else how many grants were live.
    pub async fn revoke_user_grants(
        &self,
        org: &str,
        user_id: &str,
        now: i64,
    ) -> DbResult<Option<u64>> {
        let (org, user_id) = (org.to_owned(), user_id.to_owned());
        self.run(move |tx| {
            let revoked = revoke_user_families(tx, &org, &user_id, "admin_revoked", now)?;
            let known = tx
                .query_opt(
                    "SELECT 1 FROM users WHERE organization_id = $1 AND user_id = $2",
                    &args![&org, &user_id],
                )?
                .is_some();
            Ok((known || revoked > 0).then_some(revoked))
        })
        .await
    }
}

const LOST_RACE: &str = "lost rotation race";

fn refresh_row(tx: &mut dyn Tx, hash: &str) -> DbResult<Option<RefreshRow>> {
    let Some(r) = tx.query_opt(
        "SELECT f.family_id, f.user_id, f.client_id, f.scope, f.resources, f.revoked_at, \
         r.expires_at, r.rotated_at, f.created_at, u.roles, f.organization_id, \
         o.version, o.policy, o.name \
         FROM refresh_tokens r JOIN token_families f ON f.family_id = r.family_id \
         LEFT JOIN users u ON u.organization_id = f.organization_id AND u.user_id = f.user_id \
         LEFT JOIN organizations o ON o.organization_id = f.organization_id \
         WHERE r.token_hash = $1",
        &args![hash],
    )?
    else {
        return Ok(None);
    };
    Ok(Some(RefreshRow {
        family: FamilyRow {
            family_id: r.text(0)?,
            organization_id: r.text(10)?,
            user_id: r.text(1)?,
            client_id: r.text(2)?,
            scope: r.text(3)?,
            resources: serde_json::from_str(&r.text(4)?).unwrap_or_default(),
            revoked_at: r.opt_int(5)?,
        },
        expires_at: r.int(6)?,
        rotated_at: r.opt_int(7)?,
        family_created_at: r.int(8)?,
        user_roles: r
            .opt_text(9)?
            .map(|roles| serde_json::from_str(&roles).unwrap_or_default()),
        org: OrgStamp::from_row(&r, 11)?,
    }))
}

/// Mark `old_hash` rotated (only if it still is not, unless `allow_rotated`) and store its
/// successor; `RolledBack(LOST_RACE)` when another request rotated it first or the grant is
/// revoked.
fn rotate(
    tx: &mut dyn Tx,
    old_hash: &str,
    allow_rotated: bool,
    family_id: &str,
    new_hash: &str,
    new_expires_at: i64,
    now: i64,
) -> DbResult<()> {
    let sql = if allow_rotated {
        "UPDATE refresh_tokens SET rotated_at = COALESCE(rotated_at, $2) WHERE token_hash = $1"
    } else {
        "UPDATE refresh_tokens SET rotated_at = $2 WHERE token_hash = $1 AND rotated_at IS NULL"
    };
    if tx.exec(sql, &args![old_hash, now])? != 1 {
        return Err(DbError::RolledBack(LOST_RACE));
    }
    if allow_rotated {
        // A retry within the reuse grace window: the successor issued before is superseded, not
        // left live beside the new one (two live chains would let a thief who used the token in
        // the window go on undetected). rotated_at = 0 puts it outside any grace window: whoever
        // presents it is reusing a rotated token, and the grant is revoked.
        tx.exec(
            "UPDATE refresh_tokens SET rotated_at = 0 WHERE family_id = $1 AND rotated_at IS NULL",
            &args![family_id],
        )?;
    }
    let live = tx.exec(
        "UPDATE token_families SET last_used_at = $2 WHERE family_id = $1 AND revoked_at IS NULL",
        &args![family_id, now],
    )?;
    if live != 1 {
        return Err(DbError::RolledBack(LOST_RACE));
    }
    insert_refresh(tx, new_hash, family_id, new_expires_at, now)
}

fn revoke_family(tx: &mut dyn Tx, family_id: &str, reason: &str, now: i64) -> DbResult<()> {
    tx.exec(
        "UPDATE token_families SET revoked_at = $2, revoked_reason = $3 \
         WHERE family_id = $1 AND revoked_at IS NULL",
        &args![family_id, now, reason],
    )?;
    Ok(())
}
pub(super) fn revoke_user_families(
    tx: &mut dyn Tx,
    org: &str,
    user_id: &str,
    reason: &str,
    now: i64,
) -> DbResult<u64> {
    tx.exec(
        "UPDATE token_families SET revoked_at = $2, revoked_reason = $3 \
         WHERE organization_id = $4 AND user_id = $1 AND revoked_at IS NULL",
        &args![user_id, now, reason, org],
    )
}

pub(super) fn insert_family(tx: &mut dyn Tx, f: &FamilyRow, now: i64) -> DbResult<()> {
    let resources = serde_json::to_string(&f.resources).unwrap_or_else(|_| "[]".into());
    tx.exec(
        "INSERT INTO token_families (family_id, organization_id, user_id, client_id, scope, resources, \
         created_at, last_used_at, revoked_at, revoked_reason) \
         VALUES ($1, $7, $2, $3, $4, $5, $6, $6, NULL, NULL)",
        &args![
            &f.family_id,
            &f.user_id,
            &f.client_id,
            &f.scope,
            resources,
            now,
            &f.organization_id
        ],
    )?;
    Ok(())
}

pub(super) fn insert_refresh(
    tx: &mut dyn Tx,
    hash: &str,
    family_id: &str,
    expires_at: i64,
    now: i64,
) -> DbResult<()> {
    tx.exec(
        "INSERT INTO refresh_tokens (token_hash, family_id, created_at, expires_at, rotated_at) \
         VALUES ($1, $2, $3, $4, NULL)",
        &args![hash, family_id, now, expires_at],
    )?;
    Ok(())
}
