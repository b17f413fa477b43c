//! Organizations: their policy (versioned), the organization-wide view of connected apps, and
//! revocation of an app for every member.
//!
//! Owns the `organizations` table. Rows appear at a member's first attestation, with the
//! configured default policy (version 1); an organization without a row has the default policy
//! (version 0).
//!
//! Invariants its transactions keep:
//! - A policy change is compare-and-set on `version`: a stale expected version changes nothing.
//! - The new policy and the revocation of every grant it excludes are one transaction: no grant
//!   the new policy excludes survives its commit, and a failed change revokes nothing.
//! - Every query here is scoped by `organization_id`.
//!
//! Policies are cached per organization ([`Policies`]) so that no check costs a round trip: the
//! token paths read the organization's version with the row they read anyway ([`OrgStamp`]) and
//! reload only when it moved; the consent screen trusts the cache, which this instance's changes
//! update at once and other instances' changes invalidate through PostgreSQL notifications.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use consentry_protocol::{AppMode, AppRule, OrgPolicy};

use crate::args;
use crate::store::sql::{DbError, DbResult, Row, Tx};
use crate::store::{Backend, Store};

/// The PostgreSQL notification channel of policy changes (payload: the organization id).
pub const POLICY_CHANNEL: &str = "consentry_policy";

/// An organization as stored.
#[derive(Clone, Debug)]
pub struct OrgRow {
    pub organization_id: String,
    pub name: Option<String>,
    pub version: i64,
    pub policy: Arc<OrgPolicy>,
    pub members: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// An organization's policy as a decision uses it.
#[derive(Clone, Debug)]
pub struct OrgPolicyView {
    pub organization_id: String,
    pub name: Option<String>,
    /// 0: no row yet (the default policy).
    pub version: i64,
    pub policy: Arc<OrgPolicy>,
}

/// The organization columns a token path reads with its own row (a `LEFT JOIN`): version,
/// policy document, name. `None` version: no row.
#[derive(Clone, Debug, Default)]
pub struct OrgStamp {
    pub version: Option<i64>,
    pub policy: Option<String>,
    pub name: Option<String>,
}

impl OrgStamp {
    /// Read `version, policy, name` from columns `at`, `at + 1`, `at + 2`.
    pub(super) fn from_row(r: &Row, at: usize) -> DbResult<OrgStamp> {
        Ok(OrgStamp {
            version: r.opt_int(at)?,
            policy: r.opt_text(at + 1)?,
            name: r.opt_text(at + 2)?,
        })
    }
}

/// A live grant of an organization, as a policy change judges it.
#[derive(Clone, Debug)]
pub struct OrgFamily {
    pub family_id: String,
    pub user_id: String,
    pub client_id: String,
    pub scope: String,
    pub created_at: i64,
    /// The member's roles as last attested (`None`: the member is gone).
    pub roles: Option<Vec<String>>,
    /// Whether the client row says first-party (admin-created); `[[clients]]` and metadata
    /// documents have no row.
    pub first_party_row: Option<bool>,
}

/// What [`Store::put_policy`] did.
pub enum PutPolicy {
    /// Stored as `version`; `revoked` grants ended.
    Done { row: OrgRow, revoked: u64 },
    /// The expected version is not the current one (which is returned; 0: no row).
    Stale { current: i64 },
}

/// One member's consent row in an organization's view of connected apps.
#[derive(Clone, Debug)]
pub struct OrgAppRow {
    pub client_id: String,
    pub user_id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub resource: String,
    pub scope: String,
    pub granted_at: i64,
    pub last_used_at: Option<i64>,
}

/// A policy that refuses every app: what a stored policy that no longer parses means (fail
/// closed; the error is logged).
fn closed() -> OrgPolicy {
    let none = AppRule {
        mode: AppMode::NotAllowed,
        ..AppRule::default()
    };
    OrgPolicy {
        first_party: none.clone(),
        third_party: none,
        ..OrgPolicy::default()
    }
}

/// Parse a stored policy document; a broken one fails closed.
pub fn parse_policy(org: &str, json: &str) -> OrgPolicy {
    match serde_json::from_str::<OrgPolicy>(json) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(organization_id = %org, error = %e, "stored organization policy does not parse; refusing every app until it is set again");
            closed()
        }
    }
}

/// The per-organization policy cache, and the default policy of organizations without a row.
pub struct Policies {
    default: RwLock<(Arc<OrgPolicy>, String)>,
    cache: Mutex<HashMap<String, OrgPolicyView>>,
}

/// Entries beyond this are dropped wholesale (a cache, not a copy of the table).
const MAX_CACHED: usize = 100_000;

impl Default for Policies {
    fn default() -> Self {
        Policies {
            default: RwLock::new((Arc::new(OrgPolicy::default()), "{}".to_owned())),
            cache: Mutex::new(HashMap::new()),
        }
    }
}

impl Policies {
    pub fn set_default(&self, policy: OrgPolicy) {
        let json = serde_json::to_string(&policy).unwrap_or_else(|_| "{}".into());
        if let Ok(mut d) = self.default.write() {
            *d = (Arc::new(policy), json);
        }
    }

    pub fn default_json(&self) -> String {
        self.default
            .read()
            .map(|d| d.1.clone())
            .unwrap_or_else(|_| "{}".into())
    }

    fn default_policy(&self) -> Arc<OrgPolicy> {
        self.default
            .read()
            .map(|d| d.0.clone())
            .unwrap_or_else(|_| Arc::new(closed()))
    }

    fn cached(&self, org: &str) -> Option<OrgPolicyView> {
        self.cache.lock().ok().and_then(|c| c.get(org).cloned())
    }

    fn put(&self, view: OrgPolicyView) {
        if let Ok(mut c) = self.cache.lock() {
            if c.len() >= MAX_CACHED {
                c.clear();
            }
            c.insert(view.organization_id.clone(), view);
        }
    }

    /// Forget an organization's entry (another instance changed it).
    pub fn invalidate(&self, org: &str) {
        if let Ok(mut c) = self.cache.lock() {
            c.remove(org);
        }
    }

    /// Forget every entry (notifications may have been missed).
    pub fn clear(&self) {
        if let Ok(mut c) = self.cache.lock() {
            c.clear();
        }
    }

    /// The policy a token path's row names: the cached one when its version is current, else
    /// the document read with the row (parsed once, then cached).
    pub fn resolve(&self, org: &str, stamp: &OrgStamp) -> OrgPolicyView {
        let Some(version) = stamp.version else {
            return OrgPolicyView {
                organization_id: org.to_owned(),
                name: None,
                version: 0,
                policy: self.default_policy(),
            };
        };
        if let Some(v) = self.cached(org)
            && v.version == version
        {
            return v;
        }
        let view = OrgPolicyView {
            organization_id: org.to_owned(),
            name: stamp.name.clone(),
            version,
            policy: Arc::new(parse_policy(org, stamp.policy.as_deref().unwrap_or(""))),
        };
        self.put(view.clone());
        view
    }
}

/// Create the organization (default policy, version 1) or update its name, inside an
/// attestation's transaction. Writes nothing when nothing changed.
pub(super) fn upsert_org(
    tx: &mut dyn Tx,
    org: &str,
    name: Option<&str>,
    default_policy: &str,
    now: i64,
) -> DbResult<()> {
    tx.exec(
        "INSERT INTO organizations (organization_id, name, policy, version, created_at, updated_at) \
         VALUES ($1, $2, $3, 1, $4, $4) \
         ON CONFLICT (organization_id) DO UPDATE SET name = excluded.name, updated_at = $4 \
         WHERE excluded.name IS NOT NULL AND organizations.name IS DISTINCT FROM excluded.name",
        &args![org, name.map(str::to_owned), default_policy, now],
    )?;
    Ok(())
}

const ORG_COLUMNS: &str = "o.organization_id, o.name, o.version, o.policy, o.created_at, o.updated_at, \
     (SELECT COUNT(*) FROM users u WHERE u.organization_id = o.organization_id)";

fn org_row(r: &Row) -> DbResult<OrgRow> {
    let id = r.text(0)?;
    let policy = parse_policy(&id, &r.text(3)?);
    Ok(OrgRow {
        name: r.opt_text(1)?,
        version: r.int(2)?,
        policy: Arc::new(policy),
        created_at: r.int(4)?,
        updated_at: r.int(5)?,
        members: r.int(6)?,
        organization_id: id,
    })
}

fn read_org(tx: &mut dyn Tx, org: &str) -> DbResult<Option<OrgRow>> {
    tx.query_opt(
        &format!("SELECT {ORG_COLUMNS} FROM organizations o WHERE o.organization_id = $1"),
        &args![org],
    )?
    .map(|r| org_row(&r))
    .transpose()
}

const STALE: &str = "stale policy version";

impl Store {
    /// The cache of organization policies.
    pub fn policies(&self) -> &Policies {
        &self.policies
    }

    /// An organization's policy for the consent screen: from the cache, or read once.
    pub async fn policy(&self, org: &str) -> DbResult<OrgPolicyView> {
        if let Some(v) = self.policies.cached(org) {
            return Ok(v);
        }
        let id = org.to_owned();
        let stamp = self
            .read(move |tx| {
                tx.query_opt(
                    "SELECT version, policy, name FROM organizations WHERE organization_id = $1",
                    &args![id],
                )?
                .map(|r| OrgStamp::from_row(&r, 0))
                .transpose()
            })
            .await?
            .unwrap_or_default();
        Ok(self.policies.resolve(org, &stamp))
    }

    pub async fn organization(&self, org: &str) -> DbResult<Option<OrgRow>> {
        let org = org.to_owned();
        self.read(move |tx| read_org(tx, &org)).await
    }

    /// Every organization, by id.
    pub async fn organizations(&self) -> DbResult<Vec<OrgRow>> {
        self.read(move |tx| {
            tx.query(
                &format!("SELECT {ORG_COLUMNS} FROM organizations o ORDER BY o.organization_id"),
                &[],
            )?
            .iter()
            .map(org_row)
            .collect()
        })
        .await
    }

    /// Set an organization's policy if its version is still `expected` (`None`: create it, only
    /// if it has no row yet), and revoke, in the same transaction, every live grant `excludes`
    /// (given the new policy) refuses. The change is announced to other instances.
    pub async fn put_policy<X>(
        &self,
        org: &str,
        expected: Option<i64>,
        policy: &OrgPolicy,
        now: i64,
        excludes: X,
    ) -> DbResult<PutPolicy>
    where
        X: Fn(&OrgFamily) -> bool + Send + 'static,
    {
        let org_id = org.to_owned();
        let json = serde_json::to_string(policy).map_err(|e| DbError::Other(e.to_string()))?;
        let notify = self.backend == Backend::Postgres;
        let result = self
            .run(move |tx| {
                let changed = match expected {
                    Some(v) => tx.exec(
                        "UPDATE organizations SET policy = $2, version = version + 1, updated_at = $3 \
                         WHERE organization_id = $1 AND version = $4",
                        &args![&org_id, &json, now, v],
                    )?,
                    None => tx.exec(
                        "INSERT INTO organizations (organization_id, name, policy, version, created_at, updated_at) \
                         VALUES ($1, NULL, $2, 1, $3, $3) ON CONFLICT (organization_id) DO NOTHING",
                        &args![&org_id, &json, now],
                    )?,
                };
                if changed != 1 {
                    return Err(DbError::RolledBack(STALE));
                }
                let families = org_families(tx, &org_id)?;
                let mut revoked = 0;
                for f in families.iter().filter(|f| excludes(f)) {
                    revoked += tx.exec(
                        "UPDATE token_families SET revoked_at = $2, revoked_reason = 'policy' \
                         WHERE family_id = $1 AND revoked_at IS NULL",
                        &args![&f.family_id, now],
                    )?;
                }
                if notify {
                    tx.exec("SELECT pg_notify($1, $2)", &args![POLICY_CHANNEL, &org_id])?;
                }
                let row = read_org(tx, &org_id)?
                    .ok_or_else(|| DbError::Other("organization vanished".into()))?;
                Ok(PutPolicy::Done { row, revoked })
            })
            .await;
        match result {
            Ok(PutPolicy::Done { row, revoked }) => {
                self.policies.put(OrgPolicyView {
                    organization_id: row.organization_id.clone(),
                    name: row.name.clone(),
                    version: row.version,
                    policy: row.policy.clone(),
                });
                Ok(PutPolicy::Done { row, revoked })
            }
            Err(DbError::RolledBack(STALE)) => {
                let current = self.organization(org).await?.map_or(0, |r| r.version);
                Ok(PutPolicy::Stale { current })
            }
            other => other,
        }
    }

    /// Every member's consent to every app in an organization, with the app's last use by
    /// that member.
    pub async fn org_connected_apps(&self, org: &str) -> DbResult<Vec<OrgAppRow>> {
        let org = org.to_owned();
        self.read(move |tx| {
            tx.query(
                "SELECT g.client_id, g.user_id, u.email, u.name, g.resource, g.scope, MIN(g.granted_at), \
                 (SELECT MAX(f.last_used_at) FROM token_families f \
                  WHERE f.organization_id = $1 AND f.user_id = g.user_id AND f.client_id = g.client_id) \
                 FROM consent_grants g \
                 LEFT JOIN users u ON u.organization_id = g.organization_id AND u.user_id = g.user_id \
                 WHERE g.organization_id = $1 \
                 GROUP BY g.client_id, g.user_id, u.email, u.name, g.resource, g.scope \
                 ORDER BY g.client_id, g.user_id, g.resource, g.scope",
                &args![org],
            )?
            .iter()
            .map(|r| {
                Ok(OrgAppRow {
                    client_id: r.text(0)?,
                    user_id: r.text(1)?,
                    email: r.opt_text(2)?,
                    name: r.opt_text(3)?,
                    resource: r.text(4)?,
                    scope: r.text(5)?,
                    granted_at: r.int(6)?,
                    last_used_at: r.opt_int(7)?,
                })
            })
            .collect()
        })
        .await
    }

    /// Remove every member's consent to `client_id` in an organization and revoke their grants,
    /// in one transaction. How many grants were live (`None`: nothing of this app there).
    pub async fn revoke_org_app(
        &self,
        org: &str,
        client_id: &str,
        reason: &str,
        now: i64,
    ) -> DbResult<Option<u64>> {
        let (org, client_id, reason) = (org.to_owned(), client_id.to_owned(), reason.to_owned());
        self.run(move |tx| {
            let consents = tx.exec(
                "DELETE FROM consent_grants WHERE organization_id = $1 AND client_id = $2",
                &args![&org, &client_id],
            )?;
            let known = tx
                .query_opt(
                    "SELECT 1 FROM token_families WHERE organization_id = $1 AND client_id = $2",
                    &args![&org, &client_id],
                )?
                .is_some();
            let revoked = tx.exec(
                "UPDATE token_families SET revoked_at = $3, revoked_reason = $4 \
                 WHERE organization_id = $1 AND client_id = $2 AND revoked_at IS NULL",
                &args![&org, &client_id, now, &reason],
            )?;
            Ok((consents > 0 || known).then_some(revoked))
        })
        .await
    }
}

/// The live grants of an organization, with what a policy judges them on.
fn org_families(tx: &mut dyn Tx, org: &str) -> DbResult<Vec<OrgFamily>> {
    tx.query(
        "SELECT f.family_id, f.user_id, f.client_id, f.scope, f.created_at, u.roles, c.first_party \
         FROM token_families f \
         LEFT JOIN users u ON u.organization_id = f.organization_id AND u.user_id = f.user_id \
         LEFT JOIN clients c ON c.client_id = f.client_id \
         WHERE f.organization_id = $1 AND f.revoked_at IS NULL",
        &args![org],
    )?
    .iter()
    .map(|r| {
        Ok(OrgFamily {
            family_id: r.text(0)?,
            user_id: r.text(1)?,
            client_id: r.text(2)?,
            scope: r.text(3)?,
            created_at: r.int(4)?,
            roles: r
                .opt_text(5)?
                .map(|roles| serde_json::from_str(&roles).unwrap_or_default()),
            first_party_row: r.opt_int(6)?.map(|v| v != 0),
        })
    })
    .collect()
}
