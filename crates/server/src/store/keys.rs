//! Server secrets and token signing keys.
//!
//! Owns `server_secrets` (named secrets: the session HMAC key, the code sealing key) and
//! `signing_keys`.
//!
//! Invariants its transactions keep:
//! - A named secret is created once: concurrent instances race to insert it, the first insert
//!   wins, and every instance reads back the same value.
//! - A new signing key and the retirement of the current ones are one transaction: no reader
//!   sees the old keys retired without the new one in place.

use crate::args;
use crate::store::Store;
use crate::store::sql::{DbError, DbResult};

#[derive(Clone, Debug)]
pub struct SigningKeyRow {
    pub kid: String,
    pub alg: String,
    pub private_key: String,
    pub created_at: i64,
    pub retired_at: Option<i64>,
}

impl Store {
    /// Get a named secret, creating it with `fresh` if absent. Concurrent instances agree: the
    /// first insert wins and everyone reads it back.
    pub async fn secret(&self, name: &str, fresh: &str, now: i64) -> DbResult<String> {
        let (name, fresh) = (name.to_owned(), fresh.to_owned());
        self.run(move |tx| {
            tx.exec(
                "INSERT INTO server_secrets (name, value, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO NOTHING",
                &args![&name, fresh, now],
            )?;
            tx.query_opt(
                "SELECT value FROM server_secrets WHERE name = $1",
                &args![&name],
            )?
            .ok_or_else(|| DbError::Other(format!("secret {name} vanished")))?
            .text(0)
        })
        .await
    }

    pub async fn signing_keys(&self) -> DbResult<Vec<SigningKeyRow>> {
        self.read(|tx| {
            tx.query(
                "SELECT kid, alg, private_key, created_at, retired_at FROM signing_keys \
                 ORDER BY created_at DESC, kid",
                &[],
            )?
            .iter()
            .map(|r| {
                Ok(SigningKeyRow {
                    kid: r.text(0)?,
                    alg: r.text(1)?,
                    private_key: r.text(2)?,
                    created_at: r.int(3)?,
                    retired_at: r.opt_int(4)?,
                })
            })
            .collect()
        })
        .await
    }

    /// Store a new key and, when `retire_others`, retire every key that is still current.
    pub async fn insert_signing_key(
        &self,
        row: &SigningKeyRow,
        retire_others: bool,
    ) -> DbResult<()> {
        let row = row.clone();
        self.run(move |tx| {
            if retire_others {
                tx.exec(
                    "UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL",
                    &args![row.created_at],
                )?;
            }
            tx.exec(
                "INSERT INTO signing_keys (kid, alg, private_key, created_at, retired_at) \
                 VALUES ($1, $2, $3, $4, NULL)",
                &args![row.kid, row.alg, row.private_key, row.created_at],
            )?;
            Ok(())
        })
        .await
    }

    /// Delete keys retired long enough ago that no token they signed can still be valid.
    pub async fn purge_signing_keys(&self, retired_before: i64) -> DbResult<u64> {
        self.run(move |tx| {
            tx.exec(
                "DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND retired_at < $1",
                &args![retired_before],
            )
        })
        .await
    }
}
