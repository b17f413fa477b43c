//! Storage: one `Store` over SQLite (embedded, the default) or PostgreSQL (many stateless
//! instances), through sqlx's `Any` driver. Every query is written once in the SQL both engines
//! share (`$N` placeholders, `ON CONFLICT`, `RETURNING`), so the two backends run the same code
//! and are tested by the same suite.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Row};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    pub backend: Backend,
}

pub type DbResult<T> = Result<T, sqlx::Error>;

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

/// What redeeming an authorization code did.
pub enum CodeRedemption {
    /// First use: the family and its first refresh token were stored.
    Issued,
    /// The code was used before: that earlier grant is now revoked.
    Replayed,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Store {
    /// Connect and apply migrations.
    pub async fn connect(url: &str, max_connections: Option<u32>) -> anyhow::Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let opts = AnyConnectOptions::from_str(url)
            .with_context(|| format!("database_url: cannot parse '{}'", redact(url)))?;
        let max = max_connections.unwrap_or(match backend {
            // SQLite has one writer; a few connections let reads proceed beside it.
            Backend::Sqlite => 8,
            Backend::Postgres => 16,
        });
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL + NORMAL survives a process crash (toolchain.md); busy_timeout makes
                        // writers queue instead of failing with SQLITE_BUSY.
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA synchronous = NORMAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout = 10000")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(opts)
            .await
            .with_context(|| format!("cannot open database '{}'", redact(url)))?;
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator
            .run(&pool)
            .await
            .context("applying database migrations")?;
        Ok(Store { pool, backend })
    }

    pub async fn ping(&self) -> DbResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
    }

    // --- server secrets and signing keys ---

    /// Get a named secret, creating it with `fresh` if absent. Concurrent instances agree: the
    /// first insert wins and everyone reads it back.
    pub async fn secret(&self, name: &str, fresh: &str, now: i64) -> DbResult<String> {
        sqlx::query(
            "INSERT INTO server_secrets (name, value, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(fresh)
        .bind(now)
        .execute(&self.pool)
        .await?;
        let row = sqlx::query("SELECT value FROM server_secrets WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        row.try_get(0)
    }

    pub async fn signing_keys(&self) -> DbResult<Vec<SigningKeyRow>> {
        let rows = sqlx::query(
            "SELECT kid, alg, private_key, created_at, retired_at FROM signing_keys \
             ORDER BY created_at DESC, kid",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SigningKeyRow {
                    kid: r.try_get(0)?,
                    alg: r.try_get(1)?,
                    private_key: r.try_get(2)?,
                    created_at: r.try_get(3)?,
                    retired_at: r.try_get(4)?,
                })
            })
            .collect()
    }

    /// Store a new key and, when `retire_others`, retire every key that is still current.
    pub async fn insert_signing_key(
        &self,
        row: &SigningKeyRow,
        retire_others: bool,
    ) -> DbResult<()> {
        let mut tx = self.pool.begin().await?;
        if retire_others {
            sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL")
                .bind(row.created_at)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, private_key, created_at, retired_at) \
             VALUES ($1, $2, $3, $4, NULL)",
        )
        .bind(&row.kid)
        .bind(&row.alg)
        .bind(&row.private_key)
        .bind(row.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    /// Delete keys retired long enough ago that no token they signed can still be valid.
    pub async fn purge_signing_keys(&self, retired_before: i64) -> DbResult<u64> {
        let r = sqlx::query(
            "DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND retired_at < $1",
        )
        .bind(retired_before)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    // --- users and Trusted Auth Tokens ---

    /// Record a TAT `jti` of `issuer` as used. False when it was used before (a replay).
    pub async fn use_tat_jti(&self, issuer: &str, jti: &str, expires_at: i64) -> DbResult<bool> {
        let r = sqlx::query(
            "INSERT INTO used_tat_jtis (issuer, jti, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (issuer, jti) DO NOTHING",
        )
        .bind(issuer)
        .bind(jti)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn user(&self, user_id: &str) -> DbResult<Option<UserRow>> {
        let row = sqlx::query("SELECT user_id, email, name, roles FROM users WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| user_row(&r)).transpose()
    }

    /// Create the user, or refresh the attributes the identity provider asserted.
    pub async fn upsert_user(&self, u: &UserRow, profile_id: &str, now: i64) -> DbResult<()> {
        let roles = serde_json::to_string(&u.roles).unwrap_or_else(|_| "[]".into());
        sqlx::query(
            "INSERT INTO users (user_id, email, name, roles, profile_id, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) \
             ON CONFLICT (user_id) DO UPDATE SET email = $2, name = $3, roles = $4, \
             profile_id = $5, updated_at = $6",
        )
        .bind(&u.user_id)
        .bind(&u.email)
        .bind(&u.name)
        .bind(roles)
        .bind(profile_id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Update an existing user only. False when there is no such user.
    pub async fn update_user(&self, u: &UserRow, profile_id: &str, now: i64) -> DbResult<bool> {
        let roles = serde_json::to_string(&u.roles).unwrap_or_else(|_| "[]".into());
        let r = sqlx::query(
            "UPDATE users SET email = $2, name = $3, roles = $4, profile_id = $5, updated_at = $6 \
             WHERE user_id = $1",
        )
        .bind(&u.user_id)
        .bind(&u.email)
        .bind(&u.name)
        .bind(roles)
        .bind(profile_id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    // --- consent ---

    /// The (resource, scope) pairs this user granted this client.
    pub async fn granted(&self, user_id: &str, client_id: &str) -> DbResult<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT resource, scope FROM consent_grants WHERE user_id = $1 AND client_id = $2",
        )
        .bind(user_id)
        .bind(client_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    pub async fn grant(
        &self,
        user_id: &str,
        client_id: &str,
        pairs: &[(String, String)],
        now: i64,
    ) -> DbResult<()> {
        if pairs.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for (resource, scope) in pairs {
            sqlx::query(
                "INSERT INTO consent_grants (user_id, client_id, resource, scope, granted_at) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (user_id, client_id, resource, scope) DO NOTHING",
            )
            .bind(user_id)
            .bind(client_id)
            .bind(resource)
            .bind(scope)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
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
        let mut tx = self.pool.begin().await?;
        let first = sqlx::query(
            "INSERT INTO used_codes (code_id, family_id, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (code_id) DO NOTHING",
        )
        .bind(code_id)
        .bind(&family.family_id)
        .bind(code_expires_at)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !first {
            let earlier: String =
                sqlx::query("SELECT family_id FROM used_codes WHERE code_id = $1")
                    .bind(code_id)
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get(0)?;
            sqlx::query(
                "UPDATE token_families SET revoked_at = $2, revoked_reason = 'code_replay' \
                 WHERE family_id = $1 AND revoked_at IS NULL",
            )
            .bind(earlier)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(CodeRedemption::Replayed);
        }
        insert_family(&mut tx, family, now).await?;
        insert_refresh(
            &mut tx,
            refresh_hash,
            &family.family_id,
            refresh_expires_at,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(CodeRedemption::Issued)
    }

    pub async fn refresh_token(&self, hash: &str) -> DbResult<Option<RefreshRow>> {
        let row = sqlx::query(
            "SELECT f.family_id, f.user_id, f.client_id, f.scope, f.resources, f.revoked_at, \
             r.expires_at, r.rotated_at \
             FROM refresh_tokens r JOIN token_families f ON f.family_id = r.family_id \
             WHERE r.token_hash = $1",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let resources: String = r.try_get(4)?;
        Ok(Some(RefreshRow {
            family: FamilyRow {
                family_id: r.try_get(0)?,
                user_id: r.try_get(1)?,
                client_id: r.try_get(2)?,
                scope: r.try_get(3)?,
                resources: serde_json::from_str(&resources).unwrap_or_default(),
                revoked_at: r.try_get(5)?,
            },
            expires_at: r.try_get(6)?,
            rotated_at: r.try_get(7)?,
        }))
    }

    /// Rotate: mark `old_hash` rotated (only if it still is not, unless `allow_rotated` — the
    /// reuse grace window) and store its successor. False when another request rotated it first.
    pub async fn rotate_refresh(
        &self,
        old_hash: &str,
        allow_rotated: bool,
        family_id: &str,
        new_hash: &str,
        new_expires_at: i64,
        now: i64,
    ) -> DbResult<bool> {
        let mut tx = self.pool.begin().await?;
        let sql = if allow_rotated {
            "UPDATE refresh_tokens SET rotated_at = COALESCE(rotated_at, $2) WHERE token_hash = $1"
        } else {
            "UPDATE refresh_tokens SET rotated_at = $2 WHERE token_hash = $1 AND rotated_at IS NULL"
        };
        let updated = sqlx::query(sql)
            .bind(old_hash)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if updated != 1 {
            return Ok(false);
        }
        let live = sqlx::query(
            "UPDATE token_families SET last_used_at = $2 WHERE family_id = $1 AND revoked_at IS NULL",
        )
        .bind(family_id)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if live != 1 {
            return Ok(false);
        }
        insert_refresh(&mut tx, new_hash, family_id, new_expires_at, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn revoke_family(&self, family_id: &str, reason: &str, now: i64) -> DbResult<()> {
        sqlx::query(
            "UPDATE token_families SET revoked_at = $2, revoked_reason = $3 \
             WHERE family_id = $1 AND revoked_at IS NULL",
        )
        .bind(family_id)
        .bind(now)
        .bind(reason)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Is this grant still live? (Used to reflect revocation of access tokens.)
    pub async fn family_revoked(&self, family_id: &str) -> DbResult<Option<bool>> {
        let row = sqlx::query("SELECT revoked_at FROM token_families WHERE family_id = $1")
            .bind(family_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| r.try_get::<Option<i64>, _>(0).map(|v| v.is_some()))
            .transpose()
    }

    // --- registered clients (DCR) ---

    pub async fn insert_client(&self, c: &ClientRow, now: i64) -> DbResult<()> {
        sqlx::query(
            "INSERT INTO clients (client_id, secret_hash, registration_token_hash, metadata, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(&c.client_id)
        .bind(&c.secret_hash)
        .bind(&c.registration_token_hash)
        .bind(&c.metadata)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn client(&self, client_id: &str) -> DbResult<Option<ClientRow>> {
        let row = sqlx::query(
            "SELECT client_id, secret_hash, registration_token_hash, metadata, created_at \
             FROM clients WHERE client_id = $1",
        )
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| client_row(&r)).transpose()
    }

    pub async fn clients(&self, limit: i64, after: &str) -> DbResult<Vec<ClientRow>> {
        let rows = sqlx::query(
            "SELECT client_id, secret_hash, registration_token_hash, metadata, created_at \
             FROM clients WHERE client_id > $1 ORDER BY client_id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(client_row).collect()
    }

    pub async fn update_client_metadata(
        &self,
        client_id: &str,
        metadata: &str,
        now: i64,
    ) -> DbResult<bool> {
        let r =
            sqlx::query("UPDATE clients SET metadata = $2, updated_at = $3 WHERE client_id = $1")
                .bind(client_id)
                .bind(metadata)
                .bind(now)
                .execute(&self.pool)
                .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Delete a client, its consents, and revoke every grant it holds.
    pub async fn delete_client(&self, client_id: &str, now: i64) -> DbResult<bool> {
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query("DELETE FROM clients WHERE client_id = $1")
            .bind(client_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM consent_grants WHERE client_id = $1")
            .bind(client_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE token_families SET revoked_at = $2, revoked_reason = 'client_deleted' \
             WHERE client_id = $1 AND revoked_at IS NULL",
        )
        .bind(client_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    // --- revocation and connected apps ---

    pub async fn revoke_access_token(&self, jti: &str, expires_at: i64) -> DbResult<()> {
        sqlx::query(
            "INSERT INTO revoked_access_tokens (jti, expires_at) VALUES ($1, $2) \
             ON CONFLICT (jti) DO NOTHING",
        )
        .bind(jti)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn access_token_revoked(&self, jti: &str) -> DbResult<bool> {
        let row = sqlx::query("SELECT 1 FROM revoked_access_tokens WHERE jti = $1")
            .bind(jti)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// The clients a user granted something to: (client_id, resource, scope, granted_at) rows
    /// plus each client's last token use.
    pub async fn connected_apps(&self, user_id: &str) -> DbResult<Vec<GrantRow>> {
        let rows = sqlx::query(
            "SELECT g.client_id, g.resource, g.scope, g.granted_at, \
             (SELECT MAX(f.last_used_at) FROM token_families f \
              WHERE f.user_id = g.user_id AND f.client_id = g.client_id) \
             FROM consent_grants g WHERE g.user_id = $1 ORDER BY g.client_id, g.resource, g.scope",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(GrantRow {
                    client_id: r.try_get(0)?,
                    resource: r.try_get(1)?,
                    scope: r.try_get(2)?,
                    granted_at: r.try_get(3)?,
                    last_used_at: r.try_get(4)?,
                })
            })
            .collect()
    }

    /// Remove the user's consent for a client and revoke every grant of that (user, client).
    /// False when there was nothing to revoke.
    pub async fn revoke_connected_app(
        &self,
        user_id: &str,
        client_id: &str,
        now: i64,
    ) -> DbResult<bool> {
        let mut tx = self.pool.begin().await?;
        let consents =
            sqlx::query("DELETE FROM consent_grants WHERE user_id = $1 AND client_id = $2")
                .bind(user_id)
                .bind(client_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        let families = sqlx::query(
            "UPDATE token_families SET revoked_at = $3, revoked_reason = 'user_revoked' \
             WHERE user_id = $1 AND client_id = $2 AND revoked_at IS NULL",
        )
        .bind(user_id)
        .bind(client_id)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(consents + families > 0)
    }

    /// Remove rows that can no longer matter: expired jtis, codes and refresh tokens.
    pub async fn purge_expired(&self, now: i64) -> DbResult<()> {
        for sql in [
            "DELETE FROM used_tat_jtis WHERE expires_at < $1",
            "DELETE FROM used_codes WHERE expires_at < $1",
            "DELETE FROM refresh_tokens WHERE expires_at < $1",
            "DELETE FROM revoked_access_tokens WHERE expires_at < $1",
        ] {
            sqlx::query(sql).bind(now).execute(&self.pool).await?;
        }
        Ok(())
    }
}

async fn insert_family(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    f: &FamilyRow,
    now: i64,
) -> DbResult<()> {
    let resources = serde_json::to_string(&f.resources).unwrap_or_else(|_| "[]".into());
    sqlx::query(
        "INSERT INTO token_families (family_id, user_id, client_id, scope, resources, created_at, \
         last_used_at, revoked_at, revoked_reason) VALUES ($1, $2, $3, $4, $5, $6, $6, NULL, NULL)",
    )
    .bind(&f.family_id)
    .bind(&f.user_id)
    .bind(&f.client_id)
    .bind(&f.scope)
    .bind(resources)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_refresh(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    hash: &str,
    family_id: &str,
    expires_at: i64,
    now: i64,
) -> DbResult<()> {
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, family_id, created_at, expires_at, rotated_at) \
         VALUES ($1, $2, $3, $4, NULL)",
    )
    .bind(hash)
    .bind(family_id)
    .bind(now)
    .bind(expires_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn client_row(r: &sqlx::any::AnyRow) -> DbResult<ClientRow> {
    Ok(ClientRow {
        client_id: r.try_get(0)?,
        secret_hash: r.try_get(1)?,
        registration_token_hash: r.try_get(2)?,
        metadata: r.try_get(3)?,
        created_at: r.try_get(4)?,
    })
}

fn user_row(r: &sqlx::any::AnyRow) -> DbResult<UserRow> {
    let roles: String = r.try_get(3)?;
    Ok(UserRow {
        user_id: r.try_get(0)?,
        email: r.try_get(1)?,
        name: r.try_get(2)?,
        roles: serde_json::from_str(&roles).unwrap_or_default(),
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
