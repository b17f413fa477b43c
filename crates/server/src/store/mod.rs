//! Storage: one `Store` over SQLite (embedded, the default) or PostgreSQL (many stateless
//! instances). Every operation is written once, as a closure over [`crate::store::sql::Tx`] in the SQL
//! both engines share (`$N` placeholders, `ON CONFLICT`), and runs as one transaction on either
//! backend (see `sql.rs`), so the two are tested by the same suite.
//!
//! The `Store`'s operations are split by aggregate, one `impl Store` block per file, each file
//! saying which tables it owns and which invariants its transactions keep:
//!
//! - `users.rs`: users, and Trusted Auth Token attestation with its `jti` replay record;
//! - `clients.rs`: registered clients, their cache, their deletion and purge;
//! - `consents.rs`: consent grants and the connected-apps view;
//! - `grants.rs`: grants (token families), refresh tokens, rotation, revocation;
//! - `codes.rs`: the single-use record of authorization codes;
//! - `keys.rs`: server secrets and signing keys;
//! - `orgs.rs`: organizations, their versioned policy (and its cache), the organization-wide
//!   view and revocation of connected apps.
//!
//! This file holds the `Store` itself: connecting, the migrations, the purge of expired rows
//! (which spans aggregates), and [`redact`].

mod clients;
mod codes;
mod consents;
mod grants;
mod keys;
mod orgs;
pub mod sql;
mod users;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::args;
use crate::store::clients::ClientCache;
pub use crate::store::clients::ClientRow;
pub use crate::store::codes::CodeRedemption;
pub use crate::store::consents::GrantRow;
pub use crate::store::grants::{FamilyRow, RefreshDecision, RefreshGrant, RefreshRow};
pub use crate::store::keys::SigningKeyRow;
pub use crate::store::orgs::{
    OrgAppRow, OrgFamily, OrgPolicyView, OrgRow, OrgStamp, POLICY_CHANNEL, Policies, PutPolicy,
    parse_policy,
};
pub use crate::store::sql::{DbError, DbResult};
use crate::store::sql::{PgRunner, Runner, SqliteActor, Tx};
pub use crate::store::users::{AttestOutcome, UserRow};

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
    /// Organization policies, cached (see `orgs.rs`).
    policies: Arc<Policies>,
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
    (7, include_str!("../../migrations/0007_organizations.sql")),
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
                policies: Arc::default(),
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
        let policies: Arc<Policies> = Arc::default();
        tokio::spawn(listen_for_policy_changes(pool.clone(), policies.clone()));
        Ok(Store {
            runner: Runner::Postgres(Arc::new(PgRunner { pool })),
            backend: Backend::Postgres,
            client_cache: None,
            policies,
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

/// Other instances' policy changes: each notification drops that organization's cached policy.
/// While the listener is down (or after it reconnects, when notifications may have been
/// missed) the whole cache is dropped. The token paths do not depend on this: they compare the
/// version read with their own row.
async fn listen_for_policy_changes(pool: sqlx::PgPool, policies: Arc<Policies>) {
    loop {
        match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(mut listener) => {
                if let Err(e) = listener.listen(POLICY_CHANNEL).await {
                    tracing::warn!(error = %e, "cannot listen for policy changes; retrying");
                } else {
                    policies.clear();
                    loop {
                        match listener.try_recv().await {
                            Ok(Some(n)) => policies.invalidate(n.payload()),
                            // The connection was lost and re-established: anything may have
                            // been missed.
                            Ok(None) => policies.clear(),
                            Err(e) => {
                                tracing::warn!(error = %e, "policy change listener failed; reconnecting");
                                break;
                            }
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot connect the policy change listener; retrying")
            }
        }
        policies.clear();
        if pool.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

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
