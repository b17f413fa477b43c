//! Consent: what a member (organization, user) granted a client, and the "connected apps" view built on it.
//!
//! Owns the `consent_grants` table. Revoking a connected app (consents and grants together) is
//! in `grants.rs`, with the other revocations by user or client.
//!
//! Invariants its transactions keep:
//! - A remembered consent is bound to the registered redirect URI and to the client's metadata
//!   fingerprint: consent given under another fingerprint is not found under the new one (the
//!   user is asked again), and granting again replaces it.
//! - Remembering consent to several (resource, scope) pairs is one transaction.

use crate::args;
use crate::store::Store;
use crate::store::sql::DbResult;

/// One consented (client, resource, scope) of a user.
#[derive(Clone, Debug)]
pub struct GrantRow {
    pub client_id: String,
    pub resource: String,
    pub scope: String,
    pub granted_at: i64,
    pub last_used_at: Option<i64>,
}

impl Store {
    /// The (resource, scope) pairs this user granted this client at `redirect_uri` (the
    /// registered entry) while the client's metadata had `fingerprint`: what consent remembers.
    pub async fn granted(
        &self,
        org: &str,
        user_id: &str,
        client_id: &str,
        redirect_uri: &str,
        fingerprint: &str,
    ) -> DbResult<Vec<(String, String)>> {
        let (org, user_id, client_id, redirect_uri, fingerprint) = (
            org.to_owned(),
            user_id.to_owned(),
            client_id.to_owned(),
            redirect_uri.to_owned(),
            fingerprint.to_owned(),
        );
        self.read(move |tx| {
            tx.query(
                "SELECT resource, scope FROM consent_grants WHERE organization_id = $5 AND user_id = $1 \
                 AND client_id = $2 AND redirect_uri = $3 AND client_fingerprint = $4",
                &args![user_id, client_id, redirect_uri, fingerprint, org],
            )?
            .iter()
            .map(|r| Ok((r.text(0)?, r.text(1)?)))
            .collect()
        })
        .await
    }

    /// Remember consent to `pairs`, bound to the redirect URI and the client's fingerprint (a
    /// consent given before under another fingerprint is replaced).
    #[allow(clippy::too_many_arguments)]
    pub async fn grant(
        &self,
        org: &str,
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
        let (org, user_id, client_id, redirect_uri, fingerprint, pairs) = (
            org.to_owned(),
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
                     (organization_id, user_id, client_id, redirect_uri, resource, scope, client_fingerprint, granted_at) \
                     VALUES ($8, $1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (organization_id, user_id, client_id, redirect_uri, resource, scope) \
                     DO UPDATE SET client_fingerprint = $6, granted_at = $7",
                    &args![&user_id, &client_id, &redirect_uri, resource, scope, &fingerprint, now, &org],
                )?;
            }
            Ok(())
        })
        .await
    }

    /// The clients a user granted something to: (client_id, resource, scope, granted_at) rows
    /// plus each client's last token use.
    pub async fn connected_apps(&self, org: &str, user_id: &str) -> DbResult<Vec<GrantRow>> {
        let (org, user_id) = (org.to_owned(), user_id.to_owned());
        self.read(move |tx| {
            tx.query(
                "SELECT g.client_id, g.resource, g.scope, MIN(g.granted_at), \
                 (SELECT MAX(f.last_used_at) FROM token_families f \
                  WHERE f.organization_id = $2 AND f.user_id = $1 AND f.client_id = g.client_id) \
                 FROM consent_grants g WHERE g.organization_id = $2 AND g.user_id = $1 \
                 GROUP BY g.client_id, g.resource, g.scope ORDER BY g.client_id, g.resource, g.scope",
                &args![user_id, org],
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
}
