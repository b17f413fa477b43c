//! Seeder: fills a Consentry store with users, remembered consents, token families with a live
//! refresh token each, registered clients and (optionally) expired rows for the purge, in bulk
//! transactions, so the load driver can measure cost growth (`cargo xtask bench --database-url
//! … ` on the seeded store vs an empty one).
//!
//! The schema is the real one: the seeder first opens the store through the server
//! (`Store::connect`, which applies every migration), then bulk-inserts into those tables
//! (SQLite: prepared statements in 100,000-row transactions; PostgreSQL: `INSERT … SELECT` over
//! `generate_series`, computed in the database).
//!
//! `cargo xtask seed --database-url sqlite:///tmp/x.db|postgres://… [--users 1000000]
//!   [--clients N (users/10)] [--expired N (0)]`

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

const RESOURCE: &str = "http://127.0.0.1:8000/mcp";
const REDIRECT: &str = "http://127.0.0.1:33418/callback";
const SCOPE: &str = "mcp:read mcp:write";
const BATCH: u64 = 100_000;

struct Opts {
    url: String,
    users: u64,
    clients: u64,
    expired: u64,
}

const USAGE: &str = "seed --database-url sqlite:///path.db|postgres://… [--users 1000000] \
[--clients USERS/10] [--expired 0]";

fn opts() -> Result<Opts> {
    let mut url = None;
    let (mut users, mut clients, mut expired) = (1_000_000u64, None, 0u64);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let flag = args[i].as_str();
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let v = args
            .get(i + 1)
            .cloned()
            .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
        let num = |v: &str| -> Result<u64> { v.parse().with_context(|| format!("{flag} {v}")) };
        match flag {
            "--database-url" => url = Some(v),
            "--users" => users = num(&v)?.max(1),
            "--clients" => clients = Some(num(&v)?.max(1)),
            "--expired" => expired = num(&v)?,
            other => bail!("unknown argument {other}\n{USAGE}"),
        }
        i += 2;
    }
    Ok(Opts {
        url: url.with_context(|| format!("--database-url is required\n{USAGE}"))?,
        users,
        clients: clients.unwrap_or((users / 10).max(1)),
        expired,
    })
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn sha256_hex(s: &str) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes()).as_ref())
}

/// The stored metadata of a registered public client, produced by the server's own validator.
fn client_metadata() -> Result<String> {
    let md: consentry_server::clients::ClientMetadata =
        serde_json::from_value(serde_json::json!({
            "client_name": "seeded", "application_type": "native", "redirect_uris": [REDIRECT],
            "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
            "token_endpoint_auth_method": "none"
        }))?;
    let valid = consentry_server::clients::validate(md, consentry_server::clients::Trust::Operator)
        .map_err(|e| anyhow::anyhow!("metadata: {e}"))?;
    Ok(serde_json::to_string(&valid)?)
}

fn seed_sqlite(path: &str, o: &Opts, metadata: &str) -> Result<()> {
    let mut db = rusqlite::Connection::open(path)?;
    db.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF; PRAGMA cache_size=-262144;",
    )?;
    let t = now();
    let step = |db: &mut rusqlite::Connection,
                what: &str,
                n: u64,
                sql: &str,
                row: &dyn Fn(u64, &mut rusqlite::Statement<'_>) -> rusqlite::Result<()>|
     -> Result<()> {
        let started = Instant::now();
        let mut i = 0;
        while i < n {
            let tx = db.transaction()?;
            {
                let mut st = tx.prepare_cached(sql)?;
                for k in i..(i + BATCH).min(n) {
                    row(k, &mut st)?;
                }
            }
            tx.commit()?;
            i += BATCH;
        }
        println!(
            "  {what:<22} {n:>9} rows in {:>6.1} s",
            started.elapsed().as_secs_f64()
        );
        Ok(())
    };
    step(
        &mut db,
        "clients",
        o.clients,
        "INSERT INTO clients (client_id, secret_hash, registration_token_hash, metadata, created_at, \
         updated_at, last_used_at) VALUES (?1, NULL, ?2, ?3, ?4, ?4, ?4)",
        &|k, st| {
            st.execute(rusqlite::params![
                format!("cyc-seed-{k}"),
                sha256_hex(&format!("seed-rat-{k}")),
                metadata,
                t
            ])
            .map(|_| ())
        },
    )?;
    step(
        &mut db,
        "users",
        o.users,
        "INSERT INTO users (organization_id, user_id, email, name, roles, profile_id, created_at, \
         updated_at) VALUES ('default', ?1, ?2, NULL, '[]', 'default', ?3, ?3)",
        &|k, st| {
            st.execute(rusqlite::params![
                format!("seed-user-{k}"),
                format!("seed-user-{k}@seed.example"),
                t
            ])
            .map(|_| ())
        },
    )?;
    let clients = o.clients;
    step(
        &mut db,
        "consent_grants",
        o.users,
        "INSERT INTO consent_grants (organization_id, user_id, client_id, redirect_uri, resource, \
         scope, client_fingerprint, granted_at) VALUES ('default', ?1, ?2, ?3, ?4, ?5, '', ?6)",
        &|k, st| {
            st.execute(rusqlite::params![
                format!("seed-user-{k}"),
                format!("cyc-seed-{}", k % clients),
                REDIRECT,
                RESOURCE,
                SCOPE,
                t
            ])
            .map(|_| ())
        },
    )?;
    step(
        &mut db,
        "token_families",
        o.users,
        "INSERT INTO token_families (family_id, user_id, client_id, scope, resources, created_at, \
         last_used_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        &|k, st| {
            st.execute(rusqlite::params![
                format!("seed-family-{k}"),
                format!("seed-user-{k}"),
                format!("cyc-seed-{}", k % clients),
                SCOPE,
                serde_json::json!([RESOURCE]).to_string(),
                t
            ])
            .map(|_| ())
        },
    )?;
    step(
        &mut db,
        "refresh_tokens (live)",
        o.users,
        "INSERT INTO refresh_tokens (token_hash, family_id, created_at, expires_at) \
         VALUES (?1, ?2, ?3, ?4)",
        &|k, st| {
            st.execute(rusqlite::params![
                sha256_hex(&format!("seed-rt-{k}")),
                format!("seed-family-{k}"),
                t,
                t + 30 * 86_400
            ])
            .map(|_| ())
        },
    )?;
    let users = o.users;
    step(
        &mut db,
        "refresh_tokens (expired)",
        o.expired,
        "INSERT INTO refresh_tokens (token_hash, family_id, created_at, expires_at, rotated_at) \
         VALUES (?1, ?2, ?3, ?4, ?4)",
        &|k, st| {
            st.execute(rusqlite::params![
                sha256_hex(&format!("seed-old-rt-{k}")),
                format!("seed-family-{}", k % users),
                t - 40 * 86_400,
                t - 86_400
            ])
            .map(|_| ())
        },
    )?;
    step(
        &mut db,
        "used_tat_jtis (expired)",
        o.expired,
        "INSERT INTO used_tat_jtis (issuer, jti, expires_at) VALUES ('urn:seed', ?1, ?2)",
        &|k, st| {
            st.execute(rusqlite::params![format!("seed-jti-{k}"), t - 3600])
                .map(|_| ())
        },
    )?;
    step(
        &mut db,
        "used_codes (expired)",
        o.expired,
        "INSERT INTO used_codes (code_id, family_id, expires_at) VALUES (?1, ?2, ?3)",
        &|k, st| {
            st.execute(rusqlite::params![
                format!("seed-code-{k}"),
                format!("seed-family-{}", k % users),
                t - 3600
            ])
            .map(|_| ())
        },
    )?;
    let started = Instant::now();
    db.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); ANALYZE;")?;
    println!(
        "  checkpoint + ANALYZE in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn seed_postgres(url: &str, o: &Opts, metadata: &str) -> Result<()> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await?;
    let t = now();
    let steps: [(&str, u64, &str); 8] = [
        (
            "clients",
            o.clients,
            "INSERT INTO clients (client_id, secret_hash, registration_token_hash, metadata, \
             created_at, updated_at, last_used_at) SELECT 'cyc-seed-' || i, NULL, \
             encode(sha256(convert_to('seed-rat-' || i, 'UTF8')), 'hex'), $3, $2, $2, $2 \
             FROM generate_series(0, $1 - 1) i",
        ),
        (
            "users",
            o.users,
            "INSERT INTO users (organization_id, user_id, email, name, roles, profile_id, created_at, \
             updated_at) SELECT 'default', 'seed-user-' || i, 'seed-user-' || i || '@seed.example', \
             NULL, '[]', 'default', $2, $2 FROM generate_series(0, $1 - 1) i",
        ),
        (
            "consent_grants",
            o.users,
            "INSERT INTO consent_grants (organization_id, user_id, client_id, redirect_uri, resource, \
             scope, client_fingerprint, granted_at) SELECT 'default', 'seed-user-' || i, \
             'cyc-seed-' || (i % $4), $5, $6, $7, '', $2 FROM generate_series(0, $1 - 1) i",
        ),
        (
            "token_families",
            o.users,
            "INSERT INTO token_families (family_id, user_id, client_id, scope, resources, \
             created_at, last_used_at) SELECT 'seed-family-' || i, 'seed-user-' || i, \
             'cyc-seed-' || (i % $4), $7, $8, $2, $2 FROM generate_series(0, $1 - 1) i",
        ),
        (
            "refresh_tokens (live)",
            o.users,
            "INSERT INTO refresh_tokens (token_hash, family_id, created_at, expires_at) \
             SELECT encode(sha256(convert_to('seed-rt-' || i, 'UTF8')), 'hex'), 'seed-family-' || i, \
             $2, $2 + 2592000 FROM generate_series(0, $1 - 1) i",
        ),
        (
            "refresh_tokens (expired)",
            o.expired,
            "INSERT INTO refresh_tokens (token_hash, family_id, created_at, expires_at, rotated_at) \
             SELECT encode(sha256(convert_to('seed-old-rt-' || i, 'UTF8')), 'hex'), \
             'seed-family-' || (i % $9), $2 - 3456000, $2 - 86400, $2 - 86400 \
             FROM generate_series(0, $1 - 1) i",
        ),
        (
            "used_tat_jtis (expired)",
            o.expired,
            "INSERT INTO used_tat_jtis (issuer, jti, expires_at) SELECT 'urn:seed', 'seed-jti-' || i, \
             $2 - 3600 FROM generate_series(0, $1 - 1) i",
        ),
        (
            "used_codes (expired)",
            o.expired,
            "INSERT INTO used_codes (code_id, family_id, expires_at) SELECT 'seed-code-' || i, \
             'seed-family-' || (i % $9), $2 - 3600 FROM generate_series(0, $1 - 1) i",
        ),
    ];
    let resources = serde_json::json!([RESOURCE]).to_string();
    for (what, n, sql) in steps {
        let started = Instant::now();
        let mut i = 0;
        while i < n {
            let chunk = BATCH.min(n - i) as i64;
            // Each chunk offsets its ids by `i`: the statement's series runs 0..chunk.
            let sql = sql.replace(
                "FROM generate_series(0, $1 - 1) i",
                "FROM (SELECT g + $10 AS i FROM generate_series(0, $1 - 1) g) s",
            );
            let q = sqlx::query(&sql)
                .bind(chunk)
                .bind(t)
                .bind(metadata)
                .bind(o.clients as i64)
                .bind(REDIRECT)
                .bind(RESOURCE)
                .bind(SCOPE)
                .bind(&resources)
                .bind(o.users as i64)
                .bind(i as i64);
            // Not every statement uses every parameter; sqlx sends each one's type, so the
            // unused ones are accepted.
            q.execute(&pool).await.with_context(|| what.to_owned())?;
            i += BATCH;
        }
        println!(
            "  {what:<24} {n:>9} rows in {:>6.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    let started = Instant::now();
    sqlx::query("ANALYZE").execute(&pool).await?;
    println!("  ANALYZE in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

async fn run(o: Opts) -> Result<()> {
    let started = Instant::now();
    // The real schema: the server applies its migrations.
    let store = consentry_server::store::Store::connect(&o.url, Some(2)).await?;
    drop(store);
    let metadata = client_metadata()?;
    println!(
        "seeding {} users (one remembered consent, one token family and one live refresh token \
         each), {} registered clients, {} expired rows each in refresh_tokens, used_tat_jtis, \
         used_codes",
        o.users, o.clients, o.expired
    );
    if let Some(path) = o
        .url
        .strip_prefix("sqlite://")
        .or_else(|| o.url.strip_prefix("sqlite:"))
    {
        let path = path.split('?').next().unwrap_or(path).to_owned();
        seed_sqlite(&path, &o, &metadata)?;
    } else {
        seed_postgres(&o.url, &o, &metadata).await?;
    }
    println!("seeded in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn main() -> std::process::ExitCode {
    let r = opts().and_then(|o| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(run(o))
    });
    match r {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("seed: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
