//! Organizations: the policy document read from and written to JSON by hand (no serde_json in
//! the browser build), and what the organization components show.
//!
//! The document is `consentry_protocol::OrgPolicy`, the contract the server checks; the browser
//! holds it as [`Policy`], the same members with `scopes.required_roles` as a list of pairs
//! instead of a `BTreeMap` (whose code would cost the browser bundle ≈ 2 KB gzip for a map it
//! only carries). The tests check both ways against the contract's serde. Reading is lenient (a
//! member of the wrong type is left at its default, the server's check names anything wrong on
//! save); writing is exact.

use consentry_protocol::{AppMode, AppRule, PolicyLimits};

/// An organization's policy as the browser holds it: `consentry_protocol::OrgPolicy`'s members
/// (the contract), flattened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Apps the operator provides.
    pub first_party: AppRule,
    /// Self-registered (DCR) and metadata-document (CIMD) apps.
    pub third_party: AppRule,
    /// `scopes.disallowed`: scopes no agent may be granted.
    pub disallowed: Vec<String>,
    /// `scopes.required_roles`, in the server's order: (scope, roles).
    pub required_roles: Vec<(String, Vec<String>)>,
    /// Lifetime limits.
    pub limits: PolicyLimits,
}

impl Policy {
    /// Whether a scope is disallowed for agents.
    pub fn disallows(&self, scope: &str) -> bool {
        self.disallowed.iter().any(|s| s == scope)
    }
}

use crate::error::SdkError;
use crate::http::JsonObject;
use crate::view::safe_image_url;

/// The policy document in `json` (a `PolicyState.policy`, or a page's own object).
pub fn policy_from_json<J: JsonObject>(json: &J) -> Policy {
    let rule = |key: &str| -> AppRule {
        let Some(r) = json.member(key) else {
            return AppRule::default();
        };
        AppRule {
            mode: match r.str_member("mode").as_deref() {
                Some("restricted") => AppMode::Restricted,
                Some("not_allowed") => AppMode::NotAllowed,
                _ => AppMode::AllAllowed,
            },
            allow_clients: strings(&r, "allow_clients"),
            allow_hosts: strings(&r, "allow_hosts"),
        }
    };
    let scopes = json.member("scopes");
    let limits = json.member("limits");
    let limit = |key: &str| -> Option<i64> {
        limits
            .as_ref()?
            .num_member(key)
            .filter(|n| n.is_finite())
            .map(|n| n as i64)
    };
    Policy {
        first_party: rule("first_party"),
        third_party: rule("third_party"),
        disallowed: scopes
            .as_ref()
            .map(|s| strings(s, "disallowed"))
            .unwrap_or_default(),
        required_roles: scopes
            .as_ref()
            .and_then(|s| s.member("required_roles"))
            .map(|m| {
                m.keys()
                    .into_iter()
                    .map(|scope| {
                        let roles = strings(&m, &scope);
                        (scope, roles)
                    })
                    .collect()
            })
            .unwrap_or_default(),
        limits: PolicyLimits {
            access_token_ttl_seconds: limit("access_token_ttl_seconds"),
            grant_max_lifetime_seconds: limit("grant_max_lifetime_seconds"),
        },
    }
}

/// The strings of the array member `key` (other elements skipped).
pub(crate) fn strings<J: JsonObject>(json: &J, key: &str) -> Vec<String> {
    json.member(key)
        .map(|v| v.elements())
        .unwrap_or_default()
        .iter()
        .filter_map(JsonObject::as_string)
        .collect()
}

/// The policy as the JSON text `PUT /v1/organization/policy` takes. Empty lists and unset
/// limits are left out, as the server writes them.
pub fn policy_to_json(policy: &Policy) -> String {
    let mut out = String::from("{");
    for (i, (key, rule)) in [
        ("first_party", &policy.first_party),
        ("third_party", &policy.third_party),
    ]
    .into_iter()
    .enumerate()
    {
        if i > 0 {
            out.push(',');
        }
        key_to(&mut out, key);
        out.push_str("{\"mode\":\"");
        out.push_str(rule.mode.as_str());
        out.push('"');
        list_member(&mut out, "allow_clients", &rule.allow_clients);
        list_member(&mut out, "allow_hosts", &rule.allow_hosts);
        out.push('}');
    }
    out.push_str(",\"scopes\":{");
    let mut first = true;
    if !policy.disallowed.is_empty() {
        key_to(&mut out, "disallowed");
        list_to(&mut out, &policy.disallowed);
        first = false;
    }
    if !policy.required_roles.is_empty() {
        if !first {
            out.push(',');
        }
        key_to(&mut out, "required_roles");
        out.push('{');
        for (i, (scope, roles)) in policy.required_roles.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            key_to(&mut out, scope);
            list_to(&mut out, roles);
        }
        out.push('}');
    }
    out.push_str("},\"limits\":{");
    let mut first = true;
    for (key, value) in [
        (
            "access_token_ttl_seconds",
            policy.limits.access_token_ttl_seconds,
        ),
        (
            "grant_max_lifetime_seconds",
            policy.limits.grant_max_lifetime_seconds,
        ),
    ] {
        if let Some(v) = value {
            if !first {
                out.push(',');
            }
            first = false;
            key_to(&mut out, key);
            decimal_to(&mut out, v);
        }
    }
    out.push_str("}}");
    out
}

fn list_member(out: &mut String, key: &str, items: &[String]) {
    if !items.is_empty() {
        out.push(',');
        key_to(out, key);
        list_to(out, items);
    }
}

fn key_to(out: &mut String, key: &str) {
    string_to(out, key);
    out.push(':');
}

fn list_to(out: &mut String, items: &[String]) {
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        string_to(out, item);
    }
    out.push(']');
}

/// A JSON string (RFC 8259 §7): quote, backslash and control characters escaped.
pub fn string_to(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                out.push_str("\\u00");
                out.push(char::from(HEX[(c as usize) >> 4]));
                out.push(char::from(HEX[(c as usize) & 15]));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `n` in decimal, without `core::fmt` (which the browser build keeps out).
pub fn decimal_to(out: &mut String, n: i64) {
    if n < 0 {
        out.push('-');
    }
    let mut n = n.unsigned_abs();
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for d in &digits[i..] {
        out.push(char::from(*d));
    }
}

/// `"<version>"`: the entity tag of a policy version (`ETag`, `If-Match`).
pub fn policy_etag(version: i64) -> String {
    let mut tag = String::from("\"");
    decimal_to(&mut tag, version);
    tag.push('"');
    tag
}

/// A scope an organization's policy can govern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyScopeView {
    /// The scope token.
    pub scope: String,
    /// What it allows, in words (the scope itself when the server has no description).
    pub description: String,
}

/// `GET`/`PUT /v1/organization/policy`'s answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyView {
    /// The organization.
    pub organization_id: String,
    /// Its display name, else its id.
    pub organization_name: String,
    /// The version to send back in `If-Match`.
    pub version: i64,
    /// The document.
    pub policy: Policy,
    /// The scopes this server serves.
    pub available_scopes: Vec<PolicyScopeView>,
    /// After a `PUT`: how many grants the new policy revoked.
    pub revoked_grants: Option<u64>,
}

impl PolicyView {
    /// Read a `PolicyState` (`invalid_response` without an organization, a version or a policy).
    pub fn from_json<J: JsonObject>(json: &J) -> Result<Self, SdkError> {
        let bad = |what: &str| SdkError::invalid_response(200, what);
        let organization_id = json
            .str_member("organization_id")
            .ok_or_else(|| bad("no organization_id"))?;
        let version = json
            .num_member("version")
            .filter(|v| v.is_finite())
            .ok_or_else(|| bad("no version"))? as i64;
        let policy = policy_from_json(&json.member("policy").ok_or_else(|| bad("no policy"))?);
        Ok(PolicyView {
            organization_name: json
                .str_member("organization_name")
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| organization_id.clone()),
            organization_id,
            version,
            policy,
            available_scopes: json
                .member("available_scopes")
                .map(|a| a.elements())
                .unwrap_or_default()
                .iter()
                .filter_map(|s| {
                    let scope = s.str_member("scope")?;
                    Some(PolicyScopeView {
                        description: s
                            .str_member("description")
                            .filter(|d| !d.trim().is_empty())
                            .unwrap_or_else(|| scope.clone()),
                        scope,
                    })
                })
                .collect(),
            revoked_grants: json
                .num_member("revoked_grants")
                .filter(|n| n.is_finite() && *n >= 0.0)
                .map(|n| n as u64),
        })
    }
}

/// One member's grant to an app, in the organization's list.
#[derive(Clone, Debug, PartialEq)]
pub struct OrgMemberView {
    /// The member's id.
    pub user_id: String,
    /// Email, else name, else the id.
    pub label: String,
    /// The scopes they granted.
    pub scopes: Vec<String>,
    /// Unix seconds.
    pub granted_at: Option<f64>,
    /// Unix seconds; `None` if never used.
    pub last_used_at: Option<f64>,
}

/// An app connected by members of the organization.
#[derive(Clone, Debug, PartialEq)]
pub struct OrgAppView {
    /// The OAuth `client_id`.
    pub client_id: String,
    /// Its display name, else its id.
    pub name: String,
    /// `https:` (or loopback `http:`) logos only.
    pub logo_uri: Option<String>,
    /// The operator's app (first-party) or a self-registered / metadata-document one.
    pub first_party: bool,
    /// A metadata-document app's host (what `allow_hosts` matches).
    pub host: Option<String>,
    /// Who connected it.
    pub members: Vec<OrgMemberView>,
}

impl OrgAppView {
    /// The apps of `GET /v1/organization/connected_apps` (entries without a `client_id` skipped).
    pub fn list_from_json<J: JsonObject>(json: &J) -> Vec<Self> {
        json.member("apps")
            .map(|a| a.elements())
            .unwrap_or_default()
            .iter()
            .filter_map(|app| {
                let client_id = app.str_member("client_id")?;
                Some(OrgAppView {
                    name: app
                        .str_member("client_name")
                        .filter(|n| !n.trim().is_empty())
                        .unwrap_or_else(|| client_id.clone()),
                    logo_uri: app.str_member("logo_uri").filter(|u| safe_image_url(u)),
                    first_party: app.bool_member("first_party").unwrap_or(false),
                    host: app.str_member("host").filter(|h| !h.is_empty()),
                    members: app
                        .member("members")
                        .map(|m| m.elements())
                        .unwrap_or_default()
                        .iter()
                        .filter_map(|m| {
                            let user_id = m.str_member("user_id")?;
                            Some(OrgMemberView {
                                label: m
                                    .str_member("email")
                                    .or_else(|| m.str_member("name"))
                                    .filter(|l| !l.is_empty())
                                    .unwrap_or_else(|| user_id.clone()),
                                user_id,
                                scopes: strings(m, "scopes"),
                                granted_at: m.num_member("granted_at"),
                                last_used_at: m.num_member("last_used_at"),
                            })
                        })
                        .collect(),
                    client_id,
                })
            })
            .collect()
    }
}
