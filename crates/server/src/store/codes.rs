//! Authorization codes: the single-use record of each redeemed code.
//!
//! Owns `used_codes` (a code's id, the grant it produced, its expiry). The codes themselves are
//! sealed (AEAD) and never stored; only their redemption is.
//!
//! Invariants its transactions keep:
//! - A code is redeemed once: the used-code record, the new grant and its first refresh token
//!   are written in one transaction (and the client marked used).
//! - A second redemption writes nothing new and revokes the grant the first one produced
//!   (RFC 6749 §4.1.2: a replayed code may mean a stolen one).

use crate::args;
use crate::store::Store;
use crate::store::grants::{FamilyRow, insert_family, insert_refresh};
use crate::store::sql::DbResult;

/// What redeeming an authorization code did.
pub enum CodeRedemption {
    /// First use: the family and its first refresh token were stored.
    Issued,
    /// The code was used before: that earlier grant is now revoked.
    Replayed,
}

impl Store {
    /// Redeem an authorization code: mark it used and store the new grant with its first
    /// refresh token, in one transaction. A second redemption revokes the first one's grant.
    pub async fn redeem_code(
        &self,
        code_id: &str,
        code_expires_at: i64,
        family: &FamilyRow,
        refresh_hash: &str,
        refresh_expires_at: i64,
        now: i64,
    ) -> DbResult<CodeRedemption> {
        let (code_id, family, refresh_hash) =
            (code_id.to_owned(), family.clone(), refresh_hash.to_owned());
        self.run(move |tx| {
            let first = tx.exec(
                "INSERT INTO used_codes (code_id, family_id, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (code_id) DO NOTHING",
                &args![&code_id, &family.family_id, code_expires_at],
            )? == 1;
            if !first {
                if let Some(r) = tx.query_opt(
                    "SELECT family_id FROM used_codes WHERE code_id = $1",
                    &args![&code_id],
                )? {
                    tx.exec(
                        "UPDATE token_families SET revoked_at = $2, revoked_reason = 'code_replay' \
                         WHERE family_id = $1 AND revoked_at IS NULL",
                        &args![r.text(0)?, now],
                    )?;
                }
                return Ok(CodeRedemption::Replayed);
            }
            insert_family(tx, &family, now)?;
            insert_refresh(
                tx,
                &refresh_hash,
                &family.family_id,
                refresh_expires_at,
                now,
            )?;
            // A registered client that completed a flow is no longer "unused" (see purge_clients).
            tx.exec(
                "UPDATE clients SET last_used_at = $2 WHERE client_id = $1",
                &args![&family.client_id, now],
            )?;
            Ok(CodeRedemption::Issued)
        })
        .await
    }
}
