//! Storage: one `Store` over SQLite (embedded, the default) or PostgreSQL (many stateless
//! instances). Every operation is written once, as a closure over [`crate::store::sql::Tx`] in the SQL
//! both engines share (`$N` placeholders, `ON CONFLICT`), and runs as one transaction on either
//! backend (see `sql.rs`), so the two are tested by the same suite.

pub mod sql;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::args;
pub use crate::store::sql::{DbError, DbResult};
use crate::store::sql::{PgRunner, Row, Runner, SqliteActor, Tx};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Store {
    runner: Runner,
    pub backend: Backend,
    /// SQLite only, see [`ClientCache`].
    client_cache: Option<Arc<ClientCache>>,
}

/// Registered clients recently read, so the token endpoint and the consent API do not read the
/// same row on every request. SQLite only: one process serves an SQLite file and every change
/// to a client goes through this `Store`, which drops the entry (PostgreSQL serves several
/// instances, whose caches a change on one would not reach, so they always read). Entries also
/// expire, which bounds staleness if a second process ever shares the file.
#[derive(Default)]
struct ClientCache {
    inner: std::sync::Mutex<ClientCacheInner>,
}

#[derive(Default)]
struct ClientCacheInner {
    rows: HashMap<String, (ClientRow, Instant)>,
    /// Bumped by every change: a read that began before a change must not cache what it read.
    generation: u64,
}

const CLIENT_CACHE_TTL: Duration = Duration::from_secs(10);
const CLIENT_CACHE_MAX: usize = 4096;

impl ClientCache {
    fn get(&self, client_id: &str) -> Option<ClientRow> {
        let inner = self.inner.lock().ok()?;
        let (row, at) = inner.rows.get(client_id)?;
        (at.elapsed() < CLIENT_CACHE_TTL).then(|| row.clone())
    }

    fn generation(&self) -> u64 {
        self.inner.lock().map(|i| i.generation).unwrap_or(0)
    }

    fn put(&self, generation: u64, row: &ClientRow) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if inner.generation != generation {
            return;
        }
        if inner.rows.len() >= CLIENT_CACHE_MAX {
            inner
                .rows
                .retain(|_, (_, at)| at.elapsed() < CLIENT_CACHE_TTL);
            if inner.rows.len() >= CLIENT_CACHE_MAX {
                inner.rows.clear();
            }
        }
        inner
            .rows
            .insert(row.client_id.clone(), (row.clone(), Instant::now()));
    }

    fn forget(&self, client_id: &str) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.generation += 1;
            inner.rows.remove(client_id);
        }
    }
}

/// A stored user.
#[derive(Clone, Debug)]
pub struct UserRow {
    pub user_id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub roles: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct SigningKeyRow {
    pub kid: String,
    pub alg: String,
    pub private_key: String,
    pub created_at: i64,
    pub retired_at: Option<i64>,
}

/// A grant: the tokens issued from one authorization code, linked by refresh rotation.
#[derive(Clone, Debug)]
pub struct FamilyRow {
    pub family_id: String,
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
}

/// A dynamically registered client.
#[derive(Clone, Debug)]
pub struct ClientRow {
    pub client_id: String,
    pub secret_hash: Option<String>,
    pub registration_token_hash: String,
    pub metadata: String,
    pub created_at: i64,
}

/// One consented (client, resource, scope) of a user.
#[derive(Clone, Debug)]
pub struct GrantRow {
    pub client_id: String,
    pub resource: String,
    pub scope: String,
    pub granted_at: i64,
    pub last_used_at: Option<i64>,
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

/// What redeeming an authorization code did.
pub enum CodeRedemption {
    /// First use: the family and its first refresh token were stored.
    Issued,
    /// The code was used before: that earlier grant is now revoked.
    Replayed,
}

/// The same migration files serve both databases (the SQL is common to both); PostgreSQL applies
/// them through sqlx (with its advisory lock for concurrent instances), SQLite through
/// `migrate_sqlite` on its one thread.
const SQLITE_MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/0001_init.sql")),
    (
        2,
        include_str!("../../migrations/0002_clients_and_revocation.sql"),
    ),
    (
        3,
        include_str!("../../migrations/0003_consent_bindings.sql"),
    ),
    (5, include_str!("../../migrations/0005_client_last_use.sql")),
    (6, include_str!("../../migrations/0006_purge_indexes.sql")),
];
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Apply SQLite migrations not yet applied, each in the one transaction the closure runs in.
fn migrate_sqlite(tx: &mut dyn Tx, now: i64) -> DbResult<()> {
    tx.exec(
        "CREATE TABLE IF NOT EXISTS consentry_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        &[],
    )?;
    let done: Vec<i64> = tx
        .query("SELECT version FROM consentry_migrations", &[])?
        .iter()
        .map(|r| r.int(0))
        .collect::<DbResult<_>>()?;
    for (version, sql) in SQLITE_MIGRATIONS {
        if done.contains(version) {
            continue;
        }
        for stmt in sql.split(';').map(str::trim).filter(|s| {
            !s.is_empty()
                && !s
                    .lines()
                    .all(|l| l.trim().is_empty() || l.trim().starts_with("--"))
        }) {
            tx.exec(stmt, &[])?;
        }
        tx.exec(
            "INSERT INTO consentry_migrations (version, applied_at) VALUES ($1, $2)",
            &args![*version, now],
        )?;
    }
    Ok(())
}

fn sqlite_path(url: &str) -> anyhow::Result<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .context("not a sqlite URL")?;
    let path = rest.split('?').next().unwrap_or(rest);
    if path.is_empty() {
        anyhow::bail!("database_url: '{url}' names no file");
    }
    Ok(path.to_owned())
}

impl Store {
    /// Connect and apply migrations.
    pub async fn connect(url: &str, max_connections: Option<u32>) -> anyhow::Result<Store> {
        if url.starts_with("sqlite:") {
            let path = sqlite_path(url)?;
            let actor = SqliteActor::open(&path)
                .with_context(|| format!("cannot open database '{path}'"))?;
            let now = crate::clock::now();
            actor
                .run(true, move |tx| migrate_sqlite(tx, now))
                .await
                .context("applying database migrations")?;
            return Ok(Store {
                runner: Runner::Sqlite(actor),
                backend: Backend::Sqlite,
                client_cache: Some(Arc::default()),
            });
        }
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(max_connections.unwrap_or(16))
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .with_context(|| format!("cannot open database '{}'", redact(url)))?;
        POSTGRES_MIGRATIONS
            .run(&pool)
            .await
            .context("applying database migrations")?;
        Ok(Store {
            runner: Runner::Postgres(Arc::new(PgRunner { pool })),
            backend: Backend::Postgres,
            client_cache: None,
        })
    }

    async fn run<T, F>(&self, f: F) -> DbResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Tx) -> DbResult<T> + Send + 'static,
    {
        self.runner.run(true, f).await
    }

    /// `run` for a closure that only reads.
    async fn read<T, F>(&self, f: F) -> DbResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Tx) -> DbResult<T> + Send + 'static,
    {
        self.runner.run(false, f).await
    }

    pub async fn ping(&self) -> DbResult<()> {
        self.read(|tx| tx.query("SELECT 1", &[]).map(|_| ())).await
    }

    // --- server secrets and signing keys ---

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

    // --- users and Trusted Auth Tokens ---

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
        profile_id: &str,
        jit: bool,
        now: i64,
    ) -> DbResult<AttestOutcome> {
        let (issuer, jti, u, profile_id) = (
            issuer.to_owned(),
            jti.map(str::to_owned),
            u.clone(),
            profile_id.to_owned(),
        );
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
                        "INSERT INTO users (user_id, email, name, roles, profile_id, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $6) \
                         ON CONFLICT (user_id) DO UPDATE SET email = $2, name = $3, roles = $4, \
                         profile_id = $5, updated_at = $6",
                        &args![&u.user_id, &u.email, &u.name, roles, &profile_id, now],
                    )?;
                } else if tx.exec(
                    "UPDATE users SET email = $2, name = $3, roles = $4, profile_id = $5, updated_at = $6 \
                     WHERE user_id = $1",
                    &args![&u.user_id, &u.email, &u.name, roles, &profile_id, now],
                )? != 1
                {
                    // Roll the jti back: an unknown user must not burn the token.
                    return Err(DbError::RolledBack(UNKNOWN_USER));
                }
                Ok(AttestOutcome::Recorded)
            })
            .await;
        match result {
            Err(DbError::RolledBack(UNKNOWN_USER)) => Ok(AttestOutcome::UnknownUser),
            other => other,
        }
    }

    pub async fn user(&self, user_id: &str) -> DbResult<Option<UserRow>> {
        let user_id = user_id.to_owned();
        self.read(move |tx| {
            tx.query_opt(
                "SELECT user_id, email, name, roles FROM users WHERE user_id = $1",
                &args![user_id],
            )?
            .map(|r| user_row(&r))
            .transpose()
        })
        .await
    }

    // --- consent ---

    /// The (resource, scope) pairs this user granted this client at `redirect_uri` (the
    /// registered entry) while the client's metadata had `fingerprint`: what consent remembers.
    pub async fn granted(
        &self,
        user_id: &str,
        client_id: &str,
        redirect_uri: &str,
        fingerprint: &str,
    ) -> DbResult<Vec<(String, String)>> {
        let (user_id, client_id, redirect_uri, fingerprint) = (
            user_id.to_owned(),
            client_id.to_owned(),
            redirect_uri.to_owned(),
            fingerprint.to_owned(),
        );
        self.read(move |tx| {
            tx.query(
                "SELECT resource, scope FROM consent_grants WHERE user_id = $1 AND client_id = $2 \
                 AND redirect_uri = $3 AND client_fingerprint = $4",
                &args![user_id, client_id, redirect_uri, fingerprint],
            )?
            .iter()
            .map(|r| Ok((r.text(0)?, r.text(1)?)))
            .collect()
        })
        .await
    }

    /// Remember consent to `pairs`, bound to the redirect URI and the client's fingerprint (a
    /// consent given before under another fingerprint is replaced).
    pub async fn grant(
        &self,
        user_id: &str,
        client_id: &str,
        redirect_uri: &str,
        fingerprint: &str,
        pairs: &[(String, String)],
        now: i64,
    ) -> DbResult<()> {
        if pairs.is_empty() {
            return Ok(());
        }
        let (user_id, client_id, redirect_uri, fingerprint, pairs) = (
            user_id.to_owned(),
            client_id.to_owned(),
            redirect_uri.to_owned(),
            fingerprint.to_owned(),
            pairs.to_vec(),
        );
        self.run(move |tx| {
            for (resource, scope) in &pairs {
                tx.exec(
                    "INSERT INTO consent_grants \
                     (user_id, client_id, redirect_uri, resource, scope, client_fingerprint, granted_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (user_id, client_id, redirect_uri, resource, scope) \
                     DO UPDATE SET client_fingerprint = $6, granted_at = $7",
                    &args![&user_id, &client_id, &redirect_uri, resource, scope, &fingerprint, now],
                )?;
            }
            Ok(())
        })
        .await
    }

    // --- codes and token families ---

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
        max_family_age: i64,
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
                let (plan, allow_rotated) = match decide(&row) {
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
                    } => (plan, allow_rotated),
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
                Ok(RefreshGrant::Rotated { row, plan })
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

    // --- registered clients (DCR) ---

    pub async fn insert_client(&self, c: &ClientRow, now: i64) -> DbResult<()> {
        let c = c.clone();
        self.run(move |tx| {
            tx.exec(
                "INSERT INTO clients (client_id, secret_hash, registration_token_hash, metadata, \
                 created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)",
                &args![
                    c.client_id,
                    c.secret_hash,
                    c.registration_token_hash,
                    c.metadata,
                    now
                ],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn client(&self, client_id: &str) -> DbResult<Option<ClientRow>> {
        let cache = self.client_cache.as_deref();
        if let Some(row) = cache.and_then(|c| c.get(client_id)) {
            return Ok(Some(row));
        }
        let generation = cache.map(ClientCache::generation);
        let id = client_id.to_owned();
        let row = self
            .read(move |tx| {
                tx.query_opt(
                    "SELECT client_id, secret_hash, registration_token_hash, metadata, created_at \
                     FROM clients WHERE client_id = $1",
                    &args![id],
                )?
                .map(|r| client_row(&r))
                .transpose()
            })
            .await?;
        if let (Some(c), Some(g), Some(r)) = (cache, generation, &row) {
            c.put(g, r);
        }
        Ok(row)
    }

    fn forget_client(&self, client_id: &str) {
        if let Some(c) = &self.client_cache {
            c.forget(client_id);
        }
    }

    pub async fn clients(&self, limit: i64, after: &str) -> DbResult<Vec<ClientRow>> {
        let after = after.to_owned();
        self.read(move |tx| {
            tx.query(
                "SELECT client_id, secret_hash, registration_token_hash, metadata, created_at \
                 FROM clients WHERE client_id > $1 ORDER BY client_id LIMIT $2",
                &args![after, limit],
            )?
            .iter()
            .map(client_row)
            .collect()
        })
        .await
    }

    pub async fn update_client_metadata(
        &self,
        client_id: &str,
        metadata: &str,
        now: i64,
    ) -> DbResult<bool> {
        let (id, metadata) = (client_id.to_owned(), metadata.to_owned());
        let updated = self
            .run(move |tx| {
                Ok(tx.exec(
                    "UPDATE clients SET metadata = $2, updated_at = $3 WHERE client_id = $1",
                    &args![id, metadata, now],
                )? == 1)
            })
            .await;
        self.forget_client(client_id);
        updated
    }

    /// Delete a client, its consents, and revoke every grant it holds.
    pub async fn delete_client(&self, client_id: &str, now: i64) -> DbResult<bool> {
        let id = client_id.to_owned();
        let deleted = self
            .run(move |tx| Ok(delete_client_rows(tx, &id, "client_deleted", now)? == 1))
            .await;
        self.forget_client(client_id);
        deleted
    }

    /// Record that a registered client got a token without a grant (client_credentials); at
    /// most one write an hour per client.
    pub async fn touch_client(&self, client_id: &str, now: i64) -> DbResult<()> {
        let id = client_id.to_owned();
        self.run(move |tx| {
            tx.exec(
                "UPDATE clients SET last_used_at = $2 WHERE client_id = $1 \
                 AND (last_used_at IS NULL OR last_used_at < $3)",
                &args![id, now, now - 3600],
            )?;
            Ok(())
        })
        .await
    }

    /// Delete registered clients that were never used (no code redeemed, no token issued) and
    /// registered before `unused_before`, and clients whose last use (theirs or their grants')
    /// is before `idle_before`. Each goes like [`Store::delete_client`]: its consents deleted,
    /// its grants revoked. Batches of [`CLIENT_PURGE_BATCH`] clients, one transaction each, so the
    /// writer is never held long; returns the ids deleted.
    pub async fn purge_clients(
        &self,
        unused_before: i64,
        idle_before: i64,
        now: i64,
    ) -> DbResult<Vec<String>> {
        let mut deleted = Vec::new();
        for _ in 0..CLIENT_PURGE_MAX_BATCHES {
            let ids = self
                .run(move |tx| {
                    let mut ids: Vec<String> = tx
                        .query(
                            "SELECT client_id FROM clients WHERE last_used_at IS NULL \
                             AND created_at < $1 LIMIT $2",
                            &args![unused_before, CLIENT_PURGE_BATCH],
                        )?
                        .iter()
                        .map(|r| r.text(0))
                        .collect::<DbResult<_>>()?;
                    let room = CLIENT_PURGE_BATCH - ids.len() as i64;
                    if room > 0 {
                        for r in tx.query(
                            "SELECT c.client_id FROM clients c WHERE c.last_used_at < $1 \
                             AND NOT EXISTS (SELECT 1 FROM token_families f \
                             WHERE f.client_id = c.client_id AND f.last_used_at >= $1) LIMIT $2",
                            &args![idle_before, room],
                        )? {
                            ids.push(r.text(0)?);
                        }
                    }
                    for id in &ids {
                        delete_client_rows(tx, id, "client_expired", now)?;
                    }
                    Ok(ids)
                })
                .await?;
            for id in &ids {
                self.forget_client(id);
            }
            let done = (ids.len() as i64) < CLIENT_PURGE_BATCH;
            deleted.extend(ids);
            if done {
                break;
            }
        }
        Ok(deleted)
    }

    // --- revocation and connected apps ---

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

    /// The clients a user granted something to: (client_id, resource, scope, granted_at) rows
    /// plus each client's last token use.
    pub async fn connected_apps(&self, user_id: &str) -> DbResult<Vec<GrantRow>> {
        let user_id = user_id.to_owned();
        self.read(move |tx| {
            tx.query(
                "SELECT g.client_id, g.resource, g.scope, MIN(g.granted_at), \
                 (SELECT MAX(f.last_used_at) FROM token_families f \
                  WHERE f.user_id = $1 AND f.client_id = g.client_id) \
                 FROM consent_grants g WHERE g.user_id = $1 \
                 GROUP BY g.client_id, g.resource, g.scope ORDER BY g.client_id, g.resource, g.scope",
                &args![user_id],
            )?
            .iter()
            .map(|r| {
                Ok(GrantRow {
                    client_id: r.text(0)?,
                    resource: r.text(1)?,
                    scope: r.text(2)?,
                    granted_at: r.int(3)?,
                    last_used_at: r.opt_int(4)?,
                })
            })
            .collect()
        })
        .await
    }

    /// Remove the user's consent for a client and revoke every grant of that (user, client).
    /// False when there was nothing to revoke.
    pub async fn revoke_connected_app(
        &self,
        user_id: &str,
        client_id: &str,
        now: i64,
    ) -> DbResult<bool> {
        let (user_id, client_id) = (user_id.to_owned(), client_id.to_owned());
        self.run(move |tx| {
            let consents = tx.exec(
                "DELETE FROM consent_grants WHERE user_id = $1 AND client_id = $2",
                &args![&user_id, &client_id],
            )?;
            let families = tx.exec(
                "UPDATE token_families SET revoked_at = $3, revoked_reason = 'user_revoked' \
                 WHERE user_id = $1 AND client_id = $2 AND revoked_at IS NULL",
                &args![&user_id, &client_id, now],
            )?;
            Ok(consents + families > 0)
        })
        .await
    }

    /// Revoke every grant of a user (every client), keeping the user and their consents.
    /// `None` when there is no such user and nothing to revoke; else how many grants were live.
    pub async fn revoke_user_grants(&self, user_id: &str, now: i64) -> DbResult<Option<u64>> {
        let user_id = user_id.to_owned();
        self.run(move |tx| {
            let revoked = revoke_user_families(tx, &user_id, "admin_revoked", now)?;
            let known = tx
                .query_opt("SELECT 1 FROM users WHERE user_id = $1", &args![&user_id])?
                .is_some();
            Ok((known || revoked > 0).then_some(revoked))
        })
        .await
    }

    /// Delete a user and their consents and revoke every grant they hold, in one transaction.
    /// False when there was no such user and nothing of theirs.
    pub async fn delete_user(&self, user_id: &str, now: i64) -> DbResult<bool> {
        let user_id = user_id.to_owned();
        self.run(move |tx| {
            let users = tx.exec("DELETE FROM users WHERE user_id = $1", &args![&user_id])?;
            let consents = tx.exec(
                "DELETE FROM consent_grants WHERE user_id = $1",
                &args![&user_id],
            )?;
            let families = revoke_user_families(tx, &user_id, "user_deleted", now)?;
            Ok(users + consents + families > 0)
        })
        .await
    }

    /// Remove rows that can no longer matter: expired jtis, codes, refresh tokens, deny-list.
    /// Returns how many rows went. In batches of [`PURGE_BATCH`] rows, each its own short
    /// transaction found through an `expires_at` index: on SQLite every other operation waits
    /// behind whatever the one writer thread runs, so no purge may hold it for long.
    pub async fn purge_expired(&self, now: i64) -> DbResult<u64> {
        let mut removed = 0;
        for sql in PURGE_STATEMENTS {
            loop {
                let n = self
                    .run(move |tx| tx.exec(sql, &args![now, PURGE_BATCH]))
                    .await?;
                removed += n;
                if n < PURGE_BATCH as u64 {
                    break;
                }
            }
        }
        Ok(removed)
    }
}

/// Clients deleted per transaction by [`Store::purge_clients`], and at most how many such
/// transactions one purge runs (the rest waits for the next purge).
const CLIENT_PURGE_BATCH: i64 = 200;
const CLIENT_PURGE_MAX_BATCHES: usize = 50;
/// Most rows one purge transaction deletes.
const PURGE_BATCH: i64 = 500;

/// [`Store::purge_expired`]'s statements: `$1` is now, `$2` the batch size. Each deletes by
/// primary key what a `LIMIT`ed search of the `expires_at` index found (SQLite's `DELETE …
/// LIMIT` is a compile-time option; this form works on both databases).
const PURGE_STATEMENTS: [&str; 4] = [
    "DELETE FROM used_tat_jtis WHERE (issuer, jti) IN \
     (SELECT issuer, jti FROM used_tat_jtis WHERE expires_at < $1 LIMIT $2)",
    "DELETE FROM used_codes WHERE code_id IN \
     (SELECT code_id FROM used_codes WHERE expires_at < $1 LIMIT $2)",
    "DELETE FROM refresh_tokens WHERE token_hash IN \
     (SELECT token_hash FROM refresh_tokens WHERE expires_at < $1 LIMIT $2)",
    "DELETE FROM revoked_access_tokens WHERE jti IN \
     (SELECT jti FROM revoked_access_tokens WHERE expires_at < $1 LIMIT $2)",
];

const LOST_RACE: &str = "lost rotation race";

/// What [`Store::refresh_grant`] should do with the token it read.
pub enum RefreshDecision<T, E> {
    /// Rotate it (`allow_rotated`: even if it was rotated already, the reuse grace window) and
    /// hand `plan` back.
    Rotate { plan: T, allow_rotated: bool },
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
    Rotated { row: RefreshRow, plan: T },
    /// Another request rotated the token (or revoked the grant) between read and write:
    /// nothing changed.
    LostRace,
}

fn refresh_row(tx: &mut dyn Tx, hash: &str) -> DbResult<Option<RefreshRow>> {
    let Some(r) = tx.query_opt(
        "SELECT f.family_id, f.user_id, f.client_id, f.scope, f.resources, f.revoked_at, \
         r.expires_at, r.rotated_at, f.created_at, u.roles \
         FROM refresh_tokens r JOIN token_families f ON f.family_id = r.family_id \
         LEFT JOIN users u ON u.user_id = f.user_id \
         WHERE r.token_hash = $1",
        &args![hash],
    )?
    else {
        return Ok(None);
    };
    Ok(Some(RefreshRow {
        family: FamilyRow {
            family_id: r.text(0)?,
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

/// Delete a client with its consents and revoke every grant it holds (`reason`); how many client
/// rows went (0 or 1). RFC 7592 DELETE, the admin API and the unused-client purge all go here.
fn delete_client_rows(tx: &mut dyn Tx, client_id: &str, reason: &str, now: i64) -> DbResult<u64> {
    let n = tx.exec(
        "DELETE FROM clients WHERE client_id = $1",
        &args![client_id],
    )?;
    tx.exec(
        "DELETE FROM consent_grants WHERE client_id = $1",
        &args![client_id],
    )?;
    tx.exec(
        "UPDATE token_families SET revoked_at = $2, revoked_reason = $3 \
         WHERE client_id = $1 AND revoked_at IS NULL",
        &args![client_id, now, reason],
    )?;
    Ok(n)
}

fn revoke_family(tx: &mut dyn Tx, family_id: &str, reason: &str, now: i64) -> DbResult<()> {
    tx.exec(
        "UPDATE token_families SET revoked_at = $2, revoked_reason = $3 \
         WHERE family_id = $1 AND revoked_at IS NULL",
        &args![family_id, now, reason],
    )?;
    Ok(())
}
fn revoke_user_families(tx: &mut dyn Tx, user_id: &str, reason: &str, now: i64) -> DbResult<u64> {
    tx.exec(
        "UPDATE token_families SET revoked_at = $2, revoked_reason = $3 \
         WHERE user_id = $1 AND revoked_at IS NULL",
        &args![user_id, now, reason],
    )
}
const UNKNOWN_USER: &str = "unknown user";

fn insert_family(tx: &mut dyn Tx, f: &FamilyRow, now: i64) -> DbResult<()> {
    let resources = serde_json::to_string(&f.resources).unwrap_or_else(|_| "[]".into());
    tx.exec(
        "INSERT INTO token_families (family_id, user_id, client_id, scope, resources, created_at, \
         last_used_at, revoked_at, revoked_reason) VALUES ($1, $2, $3, $4, $5, $6, $6, NULL, NULL)",
        &args![
            &f.family_id,
            &f.user_id,
            &f.client_id,
            &f.scope,
            resources,
            now
        ],
    )?;
    Ok(())
}

fn insert_refresh(
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

fn client_row(r: &Row) -> DbResult<ClientRow> {
    Ok(ClientRow {
        client_id: r.text(0)?,
        secret_hash: r.opt_text(1)?,
        registration_token_hash: r.text(2)?,
        metadata: r.text(3)?,
        created_at: r.int(4)?,
    })
}

fn user_row(r: &Row) -> DbResult<UserRow> {
    Ok(UserRow {
        user_id: r.text(0)?,
        email: r.opt_text(1)?,
        name: r.opt_text(2)?,
        roles: serde_json::from_str(&r.text(3)?).unwrap_or_default(),
    })
}

/// Hide a password in a database URL before it reaches a log or an error.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..s + 3], user, &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod purge_tests {
    use super::*;

    /// Each purge statement finds its rows through an index on `expires_at` (migration 0006),
    /// not a scan of the table on the one thread every operation waits for.
    #[tokio::test]
    async fn every_purge_statement_uses_an_expires_at_index() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("plan.db").display());
        let store = Store::connect(&url, None).await.unwrap();
        for sql in PURGE_STATEMENTS {
            let plan = store
                .runner
                .run(false, move |tx| {
                    tx.query(&format!("EXPLAIN QUERY PLAN {sql}"), &args![0_i64, 500_i64])
                })
                .await
                .unwrap();
            let details: Vec<String> = plan.iter().map(|r| r.text(3).unwrap()).collect();
            let table = sql.split_whitespace().nth(2).unwrap();
            assert!(
                details
                    .iter()
                    .any(|d| d.starts_with(&format!("SEARCH {table} USING"))
                        && d.contains(&format!("INDEX {table}_expires_at (expires_at<?)"))),
                "{sql}: {details:?}"
            );
            assert!(
                !details.iter().any(|d| d.starts_with("SCAN")),
                "{sql}: {details:?}"
            );
        }
    }
}
