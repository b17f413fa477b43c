//! An organization's policy: which agents its members may connect, with which scopes, for how
//! long. The JSON document is a public interface (the admin API, the organization API and the
//! prebuilt `OrganizationPolicy` component all speak it): never rename a field.
//!
//! ```json
//! { "first_party": { "mode": "all_allowed" },
//!   "third_party": { "mode": "restricted", "allow_clients": ["cyc-…"], "allow_hosts": ["claude.ai"] },
//!   "scopes": { "disallowed": ["notes:delete"], "required_roles": { "notes:write": ["editor"] } },
//!   "limits": { "access_token_ttl_seconds": 900, "grant_max_lifetime_seconds": 2592000 } }
//! ```
//!
//! [`OrgPolicy::check`] is the grammar (shapes, lengths, host syntax); whether a scope exists on
//! this server is the server's check.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The id of the implicit organization: a server whose token profile maps no organization claim
/// has this one organization (and a token without the claim, where the claim is optional, makes
/// its user a member of it).
pub const DEFAULT_ORGANIZATION: &str = "default";

/// Most entries any list of a policy may hold.
pub const MAX_POLICY_LIST: usize = 500;
/// Longest client id, host, scope or role in a policy.
pub const MAX_POLICY_ITEM: usize = 512;

/// Whether an app kind may be connected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppMode {
    /// Any app of this kind (the default).
    #[default]
    AllAllowed,
    /// Only the apps on the allow-lists.
    Restricted,
    /// None.
    NotAllowed,
}

impl AppMode {
    /// The wire string.
    pub const fn as_str(self) -> &'static str {
        match self {
            AppMode::AllAllowed => "all_allowed",
            AppMode::Restricted => "restricted",
            AppMode::NotAllowed => "not_allowed",
        }
    }
}

/// The rule for one kind of app: first-party (the operator's `[[clients]]` and admin-created
/// clients) or third-party (dynamically registered and Client ID Metadata Document clients).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppRule {
    /// `all_allowed` | `restricted` | `not_allowed`.
    #[serde(default)]
    pub mode: AppMode,
    /// With `restricted`: the client ids allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_clients: Vec<String>,
    /// With `restricted`, third-party only: Client ID Metadata Document hosts allowed — a host
    /// (`claude.ai`) or every subdomain of a domain (`*.example.com`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_hosts: Vec<String>,
}

/// Which scopes agents may be granted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeRules {
    /// Scopes no agent may be granted in this organization.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disallowed: Vec<String>,
    /// Per scope, the roles a member needs to grant it (one of them); overrides the server's
    /// `[scopes.X] required_roles` for this organization.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub required_roles: BTreeMap<String, Vec<String>>,
}

/// Lifetimes for this organization's grants, within the server's own.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyLimits {
    /// Access tokens live at most this long (seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token_ttl_seconds: Option<i64>,
    /// A grant (its refresh tokens) ends this long after consent at the latest (seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_max_lifetime_seconds: Option<i64>,
}

/// An organization's policy. The default allows everything, as a server without organizations
/// does.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgPolicy {
    /// Apps the operator provides.
    #[serde(default)]
    pub first_party: AppRule,
    /// Apps that registered themselves (DCR) or are known by their metadata document (CIMD).
    #[serde(default)]
    pub third_party: AppRule,
    /// Scope rules.
    #[serde(default)]
    pub scopes: ScopeRules,
    /// Lifetime limits.
    #[serde(default)]
    pub limits: PolicyLimits,
}

/// What is wrong with a policy: the JSON path of the field and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyError {
    /// E.g. `third_party.allow_hosts[2]`.
    pub field: String,
    /// What was expected.
    pub message: String,
}

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for PolicyError {}

fn err(field: impl Into<String>, message: impl Into<String>) -> PolicyError {
    PolicyError {
        field: field.into(),
        message: message.into(),
    }
}

fn check_list(
    field: &str,
    items: &[String],
    item_ok: impl Fn(&str) -> Result<(), &'static str>,
) -> Result<(), PolicyError> {
    if items.len() > MAX_POLICY_LIST {
        return Err(err(
            field,
            format!("at most {MAX_POLICY_LIST} entries (got {})", items.len()),
        ));
    }
    for (i, item) in items.iter().enumerate() {
        let at = || format!("{field}[{i}]");
        if item.is_empty() || item.len() > MAX_POLICY_ITEM {
            return Err(err(
                at(),
                format!("expected 1 to {MAX_POLICY_ITEM} characters"),
            ));
        }
        if item.chars().any(char::is_control) {
            return Err(err(at(), "control characters are not allowed"));
        }
        item_ok(item).map_err(|m| err(at(), m))?;
        if items[..i].contains(item) {
            return Err(err(at(), format!("'{item}' is listed twice")));
        }
    }
    Ok(())
}

fn any(_: &str) -> Result<(), &'static str> {
    Ok(())
}

/// A scope token (RFC 6749 §3.3: printable ASCII without space, `"` and `\`).
fn scope_token(s: &str) -> Result<(), &'static str> {
    if s.bytes()
        .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
    {
        Ok(())
    } else {
        Err("not a scope token (RFC 6749 §3.3: printable ASCII without space, '\"' or '\\')")
    }
}

/// A lowercase DNS host name, or `*.` and a domain for its subdomains.
pub fn policy_host(s: &str) -> Result<(), &'static str> {
    const WHAT: &str = "expected a lowercase host name (claude.ai) or *. and a domain (*.example.com), without scheme, port or path";
    let name = s.strip_prefix("*.").unwrap_or(s);
    if name.is_empty() || name.len() > 253 || name.starts_with('.') || name.ends_with('.') {
        return Err(WHAT);
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return Err(WHAT);
        }
    }
    Ok(())
}

/// Whether `host` is allowed by an `allow_hosts` entry (exact, or a subdomain of `*.domain`).
pub fn host_matches(entry: &str, host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    match entry.strip_prefix("*.") {
        Some(domain) => host
            .strip_suffix(domain)
            .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.')),
        None => host == entry,
    }
}

impl AppRule {
    fn check(&self, field: &str, hosts_allowed: bool) -> Result<(), PolicyError> {
        let restricted = self.mode == AppMode::Restricted;
        if !restricted && !self.allow_clients.is_empty() {
            return Err(err(
                format!("{field}.allow_clients"),
                format!(
                    "only used with mode \"restricted\" (mode is \"{}\")",
                    self.mode.as_str()
                ),
            ));
        }
        if !self.allow_hosts.is_empty() {
            if !hosts_allowed {
                return Err(err(
                    format!("{field}.allow_hosts"),
                    "hosts apply to third-party apps (Client ID Metadata Documents) only",
                ));
            }
            if !restricted {
                return Err(err(
                    format!("{field}.allow_hosts"),
                    format!(
                        "only used with mode \"restricted\" (mode is \"{}\")",
                        self.mode.as_str()
                    ),
                ));
            }
        }
        check_list(&format!("{field}.allow_clients"), &self.allow_clients, any)?;
        check_list(
            &format!("{field}.allow_hosts"),
            &self.allow_hosts,
            policy_host,
        )
    }
}

impl OrgPolicy {
    /// The grammar: every list bounded, hosts well-formed, scopes scope tokens, lifetimes
    /// positive, allow-lists only with `restricted`.
    pub fn check(&self) -> Result<(), PolicyError> {
        self.first_party.check("first_party", false)?;
        self.third_party.check("third_party", true)?;
        check_list("scopes.disallowed", &self.scopes.disallowed, scope_token)?;
        if self.scopes.required_roles.len() > MAX_POLICY_LIST {
            return Err(err(
                "scopes.required_roles",
                format!("at most {MAX_POLICY_LIST} scopes"),
            ));
        }
        for (scope, roles) in &self.scopes.required_roles {
            let field = format!("scopes.required_roles.{scope}");
            if scope.is_empty() || scope.len() > MAX_POLICY_ITEM {
                return Err(err(field, "not a scope token"));
            }
            scope_token(scope).map_err(|m| err(&field, m))?;
            if roles.is_empty() {
                return Err(err(
                    field,
                    "expected at least one role (leave the scope out to require none)",
                ));
            }
            check_list(&field, roles, any)?;
        }
        for (field, v) in [
            (
                "limits.access_token_ttl_seconds",
                self.limits.access_token_ttl_seconds,
            ),
            (
                "limits.grant_max_lifetime_seconds",
                self.limits.grant_max_lifetime_seconds,
            ),
        ] {
            if let Some(v) = v
                && v < 1
            {
                return Err(err(field, format!("expected a positive number (got {v})")));
            }
        }
        Ok(())
    }

    /// Whether a scope is disallowed for agents.
    pub fn disallows(&self, scope: &str) -> bool {
        self.scopes.disallowed.iter().any(|s| s == scope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn restricted(clients: &[&str], hosts: &[&str]) -> AppRule {
        AppRule {
            mode: AppMode::Restricted,
            allow_clients: clients.iter().map(|s| s.to_string()).collect(),
            allow_hosts: hosts.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn the_default_allows_everything_and_checks() {
        let p = OrgPolicy::default();
        assert_eq!(p.first_party.mode, AppMode::AllAllowed);
        assert_eq!(p.third_party.mode, AppMode::AllAllowed);
        assert!(p.check().is_ok());
    }

    #[test]
    fn lists_need_restricted_and_hosts_are_third_party_only() {
        let mut p = OrgPolicy {
            third_party: restricted(&["a"], &["claude.ai", "*.example.com"]),
            ..OrgPolicy::default()
        };
        assert!(p.check().is_ok());
        p.third_party.mode = AppMode::AllAllowed;
        assert_eq!(p.check().unwrap_err().field, "third_party.allow_clients");
        p.third_party = restricted(&[], &["claude.ai"]);
        p.first_party = restricted(&[], &["claude.ai"]);
        assert_eq!(p.check().unwrap_err().field, "first_party.allow_hosts");
    }

    #[test]
    fn bad_entries_name_their_field() {
        for (host, ok) in [
            ("claude.ai", true),
            ("*.example.com", true),
            ("Claude.ai", false),
            ("https://claude.ai", false),
            ("claude.ai:443", false),
            ("*", false),
            ("*.", false),
            ("a..b", false),
            ("-a.b", false),
            ("", false),
        ] {
            let p = OrgPolicy {
                third_party: restricted(&[], &["ok.example", host]),
                ..OrgPolicy::default()
            };
            match p.check() {
                Ok(()) => assert!(ok, "{host} accepted"),
                Err(e) => {
                    assert!(!ok, "{host} refused: {e}");
                    assert_eq!(e.field, "third_party.allow_hosts[1]");
                }
            }
        }
        let p = OrgPolicy {
            scopes: ScopeRules {
                disallowed: vec!["notes:read".into(), "bad scope".into()],
                ..ScopeRules::default()
            },
            ..OrgPolicy::default()
        };
        assert_eq!(p.check().unwrap_err().field, "scopes.disallowed[1]");
        let p = OrgPolicy {
            limits: PolicyLimits {
                access_token_ttl_seconds: Some(0),
                ..PolicyLimits::default()
            },
            ..OrgPolicy::default()
        };
        assert_eq!(
            p.check().unwrap_err().field,
            "limits.access_token_ttl_seconds"
        );
        let mut roles = BTreeMap::new();
        roles.insert("notes:write".to_owned(), Vec::new());
        let p = OrgPolicy {
            scopes: ScopeRules {
                required_roles: roles,
                ..ScopeRules::default()
            },
            ..OrgPolicy::default()
        };
        assert_eq!(
            p.check().unwrap_err().field,
            "scopes.required_roles.notes:write"
        );
        let p = OrgPolicy {
            first_party: restricted(&["a", "a"], &[]),
            ..OrgPolicy::default()
        };
        assert_eq!(p.check().unwrap_err().field, "first_party.allow_clients[1]");
    }

    #[test]
    fn hosts_match_exactly_or_as_subdomains() {
        assert!(host_matches("claude.ai", "claude.ai"));
        assert!(host_matches("claude.ai", "Claude.AI"));
        assert!(!host_matches("claude.ai", "evil-claude.ai"));
        assert!(!host_matches("claude.ai", "a.claude.ai"));
        assert!(host_matches("*.example.com", "a.example.com"));
        assert!(host_matches("*.example.com", "a.b.example.com"));
        assert!(!host_matches("*.example.com", "example.com"));
        assert!(!host_matches("*.example.com", "badexample.com"));
        assert!(!host_matches("*.example.com", ".example.com"));
    }
}
