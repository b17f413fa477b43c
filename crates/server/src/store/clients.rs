//! Registered clients (RFC 7591 dynamic registration, RFC 7592 management, the admin API).
//!
//! Owns the `clients` table and, on SQLite, the [`ClientCache`] in front of it.
//!
//! Invariants its transactions keep:
//! - A client is deleted with everything that hangs off it, in one transaction
//!   ([`delete_client_rows`]): its row, its consents, and every grant it holds revoked with a
//!   reason. RFC 7592 DELETE, the admin API and the purge all go through that one function.
//! - Updating or deleting a client drops its cache entry, and a read that began before such a
//!   change does not cache what it read (the cache's generation), so an edited or deleted
//!   client is not served from the cache.
//! - The purge of unused and idle clients runs in short batches, one transaction each, so the
//!   SQLite writer is never held long.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::args;
use crate::store::Store;
use crate::store::sql::{DbResult, Row, Tx};

/// A dynamically registered client.
#[derive(Clone, Debug)]
pub struct ClientRow {
    pub client_id: String,
    pub secret_hash: Option<String>,
    pub registration_token_hash: String,
    pub metadata: String,
    pub created_at: i64,
    /// Created through the admin API (first-party), not registered by the client itself.
    pub first_party: bool,
}

impl Store {
    pub async fn insert_client(&self, c: &ClientRow, now: i64) -> DbResult<()> {
        let c = c.clone();
        self.run(move |tx| {
            tx.exec(
                "INSERT INTO clients (client_id, secret_hash, registration_token_hash, metadata, \
                 created_at, updated_at, first_party) VALUES ($1, $2, $3, $4, $5, $5, $6)",
                &args![
                    c.client_id,
                    c.secret_hash,
                    c.registration_token_hash,
                    c.metadata,
                    now,
                    i64::from(c.first_party)
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
                    "SELECT client_id, secret_hash, registration_token_hash, metadata, created_at, \
                     first_party FROM clients WHERE client_id = $1",
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
                "SELECT client_id, secret_hash, registration_token_hash, metadata, created_at, \
                 first_party FROM clients WHERE client_id > $1 ORDER BY client_id LIMIT $2",
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
                             AND created_at < $1 AND first_party = 0 LIMIT $2",
                            &args![unused_before, CLIENT_PURGE_BATCH],
                        )?
                        .iter()
                        .map(|r| r.text(0))
                        .collect::<DbResult<_>>()?;
                    let room = CLIENT_PURGE_BATCH - ids.len() as i64;
                    if room > 0 {
                        for r in tx.query(
                            "SELECT c.client_id FROM clients c WHERE c.last_used_at < $1 \
                             AND c.first_party = 0 AND NOT EXISTS (SELECT 1 FROM token_families f \
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
}

/// Clients deleted per transaction by [`Store::purge_clients`], and at most how many such
/// transactions one purge runs (the rest waits for the next purge).
const CLIENT_PURGE_BATCH: i64 = 200;
const CLIENT_PURGE_MAX_BATCHES: usize = 50;

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

fn client_row(r: &Row) -> DbResult<ClientRow> {
    Ok(ClientRow {
        client_id: r.text(0)?,
        secret_hash: r.opt_text(1)?,
        registration_token_hash: r.text(2)?,
        metadata: r.text(3)?,
        created_at: r.int(4)?,
        first_party: r.int(5)? != 0,
    })
}

/// Registered clients recently read, so the token endpoint and the consent API do not read the
/// same row on every request. SQLite only: one process serves an SQLite file and every change
/// to a client goes through this `Store`, which drops the entry (PostgreSQL serves several
/// instances, whose caches a change on one would not reach, so they always read). Entries also
/// expire, which bounds staleness if a second process ever shares the file.
#[derive(Default)]
pub(super) struct ClientCache {
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
