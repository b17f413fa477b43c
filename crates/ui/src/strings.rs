//! Every word the prebuilt UI shows, each overridable by key (`strings` option). Placeholders are
//! `{name}`; an override that drops a placeholder just shows less.

/// Key → default text. The keys are API: the TypeScript `ConsentryStrings` type lists them, and a
/// test checks that the two agree.
pub const DEFAULTS: &[(&str, &str)] = &[
    ("loading", "Loading..."),
    ("consent.title", "{app} wants to access your account"),
    ("consent.verified", "Verified app"),
    (
        "consent.unverified",
        "Unverified app: the publisher of {app} could not be confirmed. Allow only if you trust it.",
    ),
    ("consent.account", "Signed in as {account}"),
    ("consent.intro", "{app} will be able to:"),
    ("consent.already_granted", "Already allowed"),
    (
        "consent.not_grantable",
        "Your account cannot grant these, so they will not be shared:",
    ),
    (
        "consent.redirect",
        "After you choose, you will be sent to {host}.",
    ),
    ("consent.allow", "Allow"),
    ("consent.deny", "Deny"),
    ("consent.submitting", "Sending your choice..."),
    ("consent.org_disallowed", "Not allowed by your organization"),
    ("refused.title", "{app} is not allowed"),
    (
        "refused.text",
        "Your organization does not allow {app}. Ask an admin of {org}.",
    ),
    ("refused.back", "Back to {app}"),
    ("redirecting", "Redirecting to {host}..."),
    ("error.title", "This request cannot continue"),
    ("error.code", "Error code: {code}"),
    ("apps.title", "Connected apps"),
    ("apps.loading", "Loading connected apps..."),
    ("apps.empty", "No apps have access to your account."),
    ("apps.granted", "Allowed on {date}"),
    ("apps.last_used", "Last used on {date}"),
    ("apps.never_used", "Not used yet"),
    ("apps.revoke", "Revoke access"),
    ("apps.revoke_label", "Revoke access for {app}"),
    (
        "apps.confirm",
        "Revoke access for {app}? It loses access to your account at once.",
    ),
    ("apps.confirm_yes", "Revoke"),
    ("apps.cancel", "Cancel"),
    ("apps.revoked", "Access for {app} was revoked."),
    ("org_apps.title", "Apps connected in {org}"),
    ("org_apps.loading", "Loading the organization's apps..."),
    ("org_apps.empty", "No member has connected an app."),
    ("org_apps.first_party", "First-party"),
    ("org_apps.third_party", "Third-party"),
    ("org_apps.members", "Connected by"),
    ("org_apps.revoke", "Revoke for everyone"),
    ("org_apps.revoke_label", "Revoke {app} for everyone"),
    (
        "org_apps.confirm",
        "Revoke {app} for every member of {org}? It loses access at once.",
    ),
    ("org_apps.confirm_yes", "Revoke for everyone"),
    (
        "org_apps.revoked",
        "{app} was revoked for everyone ({count} connections).",
    ),
    ("policy.title", "Agent policy for {org}"),
    ("policy.loading", "Loading the policy..."),
    (
        "policy.first_party",
        "First-party apps (provided by this service)",
    ),
    (
        "policy.third_party",
        "Third-party apps (registered by themselves)",
    ),
    ("policy.all", "All allowed"),
    ("policy.restricted", "Only these"),
    ("policy.none", "None"),
    ("policy.hosts", "Hosts"),
    ("policy.client_id", "Client ID"),
    ("policy.host", "Host (claude.ai or *.example.com)"),
    ("policy.add", "Add"),
    ("policy.scopes", "Scopes agents may be granted"),
    ("policy.allowed", "On: agents may be granted it."),
    ("policy.limits", "Lifetime limits (optional)"),
    ("policy.token_ttl", "Access token lifetime, minutes"),
    ("policy.grant_lifetime", "Connection lifetime, days"),
    (
        "policy.bad_limit",
        "Lifetimes are whole numbers above zero, or empty.",
    ),
    ("policy.save", "Save policy"),
    ("policy.saving", "Saving..."),
    (
        "policy.saved",
        "Policy saved. {count} connections were revoked.",
    ),
    (
        "policy.conflict",
        "Someone else changed this policy; reload.",
    ),
    ("policy.reload", "Reload"),
];

/// The page's overrides on top of [`DEFAULTS`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Strings {
    overrides: Vec<(String, String)>,
}

impl Strings {
    /// Unknown keys are kept (harmless) so that `error.<code>` overrides work for any code.
    pub fn new(overrides: Vec<(String, String)>) -> Self {
        Strings { overrides }
    }

    /// The text for `key`: the override, else the default, else the key itself (a typo shows).
    pub fn get(&self, key: &str) -> String {
        self.lookup(key).unwrap_or(key).to_owned()
    }

    fn lookup(&self, key: &str) -> Option<&str> {
        self.overrides
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .or_else(|| DEFAULTS.iter().find(|(k, _)| *k == key).map(|(_, v)| *v))
    }

    /// `key` with `{name}` placeholders filled in. Values are text, never markup: the view puts
    /// them in text nodes.
    pub fn fill(&self, key: &str, values: &[(&str, &str)]) -> String {
        fill(self.lookup(key).unwrap_or(key), values)
    }

    /// What to say about an error: an `error.<code>` override, else the SDK's description.
    pub fn error_text(&self, code: &str, description: &str) -> String {
        let mut key = String::from("error.");
        key.push_str(code);
        self.overrides
            .iter()
            .rev()
            .find(|(k, _)| *k == key)
            .map_or_else(|| description.to_owned(), |(_, v)| v.clone())
    }
}

/// One pass over the template, so a value containing `{host}` is never expanded again.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                let name = &after[..close];
                match values.iter().find(|(k, _)| *k == name) {
                    Some((_, v)) => out.push_str(v),
                    None => {
                        out.push('{');
                        out.push_str(name);
                        out.push('}');
                    }
                }
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}
