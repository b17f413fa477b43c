//! The operator's CLI commands that change a running deployment (`consentry orgs`, `policy`,
//! `clients`): a client of the admin API, so a change takes the same path as an HTTP caller's —
//! the one validation, the revocations a policy change makes in its transaction, the
//! notification other instances' caches listen to. Nothing here writes the database directly.

use anyhow::{Context, bail};
use consentry_protocol::wire::PolicyState;
use consentry_protocol::{AppMode, OrgPolicy};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::config::Config;

/// The admin API of one server.
pub struct AdminApi {
    base: String,
    key: String,
    http: reqwest::Client,
}

impl AdminApi {
    /// `server`: the server's base URL; without it, the config's `listen` address (a wildcard
    /// address is reached on loopback). The key is the config's `admin_key` (or
    /// `CONSENTRY_ADMIN_KEY`).
    pub fn new(cfg: &Config, server: Option<&str>) -> anyhow::Result<AdminApi> {
        let key = cfg
            .admin_key
            .clone()
            .context("the admin API needs admin_key in the config (or CONSENTRY_ADMIN_KEY)")?;
        let base = match server {
            Some(s) => s.trim_end_matches('/').to_owned(),
            None => {
                let listen = cfg
                    .listen
                    .replace("0.0.0.0:", "127.0.0.1:")
                    .replace("[::]:", "[::1]:");
                format!("http://{listen}")
            }
        };
        Ok(AdminApi {
            base,
            key,
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()?,
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Option<&Value>,
    ) -> anyhow::Result<(StatusCode, reqwest::header::HeaderMap, Value)> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach the server at {}", self.base))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            let code = json["error"].as_str().unwrap_or("error");
            let description = json["error_description"].as_str().unwrap_or("");
            bail!("{status}: {code}: {description}");
        }
        Ok((status, headers, json))
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        Ok(self.call(Method::GET, path, &[], None).await?.2)
    }

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        Ok(self.call(Method::POST, path, &[], Some(body)).await?.2)
    }

    pub async fn put(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        Ok(self.call(Method::PUT, path, &[], Some(body)).await?.2)
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<()> {
        self.call(Method::DELETE, path, &[], None).await?;
        Ok(())
    }

    /// An organization's policy, and its ETag.
    pub async fn policy(&self, org: &str) -> anyhow::Result<(PolicyState, String)> {
        let (_, headers, body) = self.call(Method::GET, &policy_path(org), &[], None).await?;
        let etag = headers
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        Ok((serde_json::from_value(body)?, etag))
    }

    /// Replace the policy if it is still at `etag` (`None`: create it for an organization with
    /// none).
    pub async fn put_policy(
        &self,
        org: &str,
        policy: &OrgPolicy,
        etag: Option<&str>,
    ) -> anyhow::Result<PolicyState> {
        let header = match etag {
            Some(e) => ("if-match", e.to_owned()),
            None => ("if-none-match", "*".to_owned()),
        };
        let body = serde_json::to_value(policy)?;
        let (_, _, v) = self
            .call(Method::PUT, &policy_path(org), &[header], Some(&body))
            .await?;
        Ok(serde_json::from_value(v)?)
    }
}

/// A path segment, percent-encoded.
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    consentry_protocol::percent_encode(s, &mut out);
    out
}

fn policy_path(org: &str) -> String {
    format!("/admin/v1/organizations/{}/policy", segment(org))
}

/// What `consentry policy set` changes in the current policy (flags left out change nothing).
#[derive(Debug, Default)]
pub struct PolicyEdit {
    pub first_party: Option<AppMode>,
    pub third_party: Option<AppMode>,
    pub allow_first_party: Vec<String>,
    pub allow: Vec<String>,
    pub allow_hosts: Vec<String>,
    pub disallow_scopes: Vec<String>,
    pub allow_scopes: Vec<String>,
    /// `scope=role1,role2` (no roles: remove the requirement).
    pub require_roles: Vec<String>,
    pub access_token_ttl_seconds: Option<i64>,
    pub grant_max_lifetime_seconds: Option<i64>,
}

/// Apply `edit` to `p`. A mode other than `restricted` empties that kind's allow-lists; a list
/// entry given sets `restricted` unless a mode was given.
pub fn apply(p: &mut OrgPolicy, edit: &PolicyEdit) -> anyhow::Result<()> {
    fn add(list: &mut Vec<String>, items: &[String]) {
        for i in items {
            if !list.contains(i) {
                list.push(i.clone());
            }
        }
    }
    if let Some(m) = edit.first_party {
        p.first_party.mode = m;
    } else if !edit.allow_first_party.is_empty() {
        p.first_party.mode = AppMode::Restricted;
    }
    add(&mut p.first_party.allow_clients, &edit.allow_first_party);
    if let Some(m) = edit.third_party {
        p.third_party.mode = m;
    } else if !edit.allow.is_empty() || !edit.allow_hosts.is_empty() {
        p.third_party.mode = AppMode::Restricted;
    }
    add(&mut p.third_party.allow_clients, &edit.allow);
    add(&mut p.third_party.allow_hosts, &edit.allow_hosts);
    for rule in [&mut p.first_party, &mut p.third_party] {
        if rule.mode != AppMode::Restricted {
            rule.allow_clients.clear();
            rule.allow_hosts.clear();
        }
    }
    add(&mut p.scopes.disallowed, &edit.disallow_scopes);
    p.scopes
        .disallowed
        .retain(|s| !edit.allow_scopes.contains(s));
    for r in &edit.require_roles {
        let Some((scope, roles)) = r.split_once('=') else {
            bail!("--require-roles: expected scope=role1,role2 (got '{r}')");
        };
        let roles: Vec<String> = roles
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
            .collect();
        if roles.is_empty() {
            p.scopes.required_roles.remove(scope);
        } else {
            p.scopes.required_roles.insert(scope.to_owned(), roles);
        }
    }
    if let Some(v) = edit.access_token_ttl_seconds {
        p.limits.access_token_ttl_seconds = (v > 0).then_some(v);
    }
    if let Some(v) = edit.grant_max_lifetime_seconds {
        p.limits.grant_max_lifetime_seconds = (v > 0).then_some(v);
    }
    Ok(())
}

/// `all_allowed` | `restricted` | `not_allowed`.
pub fn parse_mode(s: &str) -> Result<AppMode, String> {
    match s {
        "all_allowed" | "all" => Ok(AppMode::AllAllowed),
        "restricted" => Ok(AppMode::Restricted),
        "not_allowed" | "none" => Ok(AppMode::NotAllowed),
        other => Err(format!(
            "'{other}': expected all_allowed, restricted or not_allowed"
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn edits_change_only_what_they_name() {
        let mut p = OrgPolicy::default();
        apply(
            &mut p,
            &PolicyEdit {
                allow: vec!["cyc-1".into()],
                allow_hosts: vec!["claude.ai".into()],
                disallow_scopes: vec!["notes:delete".into()],
                require_roles: vec!["notes:write=editor,owner".into()],
                ..PolicyEdit::default()
            },
        )
        .unwrap();
        assert_eq!(p.third_party.mode, AppMode::Restricted);
        assert_eq!(p.third_party.allow_clients, ["cyc-1"]);
        assert_eq!(p.first_party.mode, AppMode::AllAllowed);
        assert_eq!(p.scopes.required_roles["notes:write"], ["editor", "owner"]);
        assert!(p.check().is_ok());
        apply(
            &mut p,
            &PolicyEdit {
                third_party: Some(AppMode::NotAllowed),
                allow_scopes: vec!["notes:delete".into()],
                require_roles: vec!["notes:write=".into()],
                ..PolicyEdit::default()
            },
        )
        .unwrap();
        assert!(p.third_party.allow_clients.is_empty() && p.third_party.allow_hosts.is_empty());
        assert!(p.scopes.disallowed.is_empty());
        assert!(p.scopes.required_roles.is_empty());
        assert!(
            apply(
                &mut p,
                &PolicyEdit {
                    require_roles: vec!["nope".into()],
                    ..PolicyEdit::default()
                }
            )
            .is_err()
        );
    }
}
