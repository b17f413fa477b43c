//! Purging expired rows (jtis, codes, refresh tokens, the access-token deny-list), against a real
//! SQLite file and a real PostgreSQL database: the purge works in small batches, each its own
//! short transaction, and over more rows than one batch it removes exactly the expired ones.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use consentry_server::store::Store;
use consentry_testkit::*;

on_both_backends!(a_purge_over_more_rows_than_a_batch_removes_exactly_the_expired_ones);

/// More expired rows per table than one purge batch (500) holds, twice over and then some.
const EXPIRED: i64 = 1_234;
const LIVE: i64 = 321;

/// Run `sql` (test-made statements, no parameters) on the store's database, outside the store.
async fn raw(url: &str, sql: &str) {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .unwrap();
        conn.execute_batch(&format!("BEGIN; {sql}; COMMIT;"))
            .unwrap();
    } else {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
    }
}

async fn count(url: &str, sql: &str) -> i64 {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    } else {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&mut conn)
            .await
            .unwrap()
    }
}

/// One row's values, for key `i` and expiry `e`.
type RowOf = fn(i64, i64) -> String;

/// `(table, columns, row)` of each purged table.
fn tables() -> Vec<(&'static str, &'static str, RowOf)> {
    vec![
        ("used_tat_jtis", "issuer, jti, expires_at", |i, e| {
            format!("('urn:iss:{}', 'jti-{i}', {e})", i % 3)
        }),
        ("used_codes", "code_id, family_id, expires_at", |i, e| {
            format!("('code-{i}', 'fam-{}', {e})", i % 7)
        }),
        (
            "refresh_tokens",
            "token_hash, family_id, created_at, expires_at",
            |i, e| format!("('hash-{i}', 'fam-{}', 0, {e})", i % 7),
        ),
        ("revoked_access_tokens", "jti, expires_at", |i, e| {
            format!("('at-{i}', {e})")
        }),
    ]
}

async fn a_purge_over_more_rows_than_a_batch_removes_exactly_the_expired_ones(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let url = match &backend {
        Backend::Sqlite => format!("sqlite://{}", dir.path().join("purge.db").display()),
        Backend::Postgres(admin) => fresh_postgres_database(admin).await,
    };
    let store = Store::connect(&url, Some(4)).await.unwrap();
    let now = 1_800_000_000_i64;
    for (table, columns, row) in tables() {
        // Expired: up to a day before now, the last one second before. Live: now (a row expiring
        // at `now` is not yet expired) and later.
        let mut rows: Vec<String> = (0..EXPIRED).map(|i| row(i, now - 1 - i % 86_400)).collect();
        rows.extend((EXPIRED..EXPIRED + LIVE).map(|i| row(i, now + (i - EXPIRED))));
        for chunk in rows.chunks(400) {
            raw(
                &url,
                &format!(
                    "INSERT INTO {table} ({columns}) VALUES {}",
                    chunk.join(", ")
                ),
            )
            .await;
        }
        assert_eq!(
            count(&url, &format!("SELECT count(*) FROM {table}")).await,
            EXPIRED + LIVE
        );
    }

    let removed = store.purge_expired(now).await.unwrap();
    assert_eq!(removed, 4 * EXPIRED as u64);
    for (table, _, _) in tables() {
        assert_eq!(
            count(
                &url,
                &format!("SELECT count(*) FROM {table} WHERE expires_at < {now}")
            )
            .await,
            0,
            "{table}: expired rows left"
        );
        assert_eq!(
            count(
                &url,
                &format!("SELECT count(*) FROM {table} WHERE expires_at >= {now}")
            )
            .await,
            LIVE,
            "{table}: live rows lost"
        );
    }
    // Nothing left to do.
    assert_eq!(store.purge_expired(now).await.unwrap(), 0);
}
