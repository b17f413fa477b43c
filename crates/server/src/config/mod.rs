//! `consentry.toml`: parsing, `CONSENTRY_<KEY>` environment overrides and validation. A bad
//! config fails at start with a message naming the key and the problem.

pub mod builder;
pub mod jwt;
mod net;

pub use net::{parse_proxy, read_ca_certificates};

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use consentry_protocol::authorize::split_uri;
use serde::Deserialize;

use consentry_protocol::RegistrationMode;

pub use crate::clients::ClientConfig;
use crate::clients::{Client, ClientMetadata, ClientSource, Trust};
use crate::keys::SigningAlg;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub issuer: String,
    #[serde(default = "default_listen")]
    pub listen: String,
    pub authorization_url: String,
    #[serde(default = "default_database_url")]
    pub database_url: String,
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    #[serde(default = "default_signing_alg")]
    pub signing_alg: String,
    #[serde(default = "default_access_ttl")]
    pub access_token_ttl_seconds: i64,
    #[serde(default = "default_refresh_ttl")]
    pub refresh_token_ttl_seconds: i64,
    #[serde(default)]
    pub refresh_reuse_grace_seconds: i64,
    #[serde(default = "default_code_ttl")]
    pub authorization_code_ttl_seconds: i64,
    /// `prompt=login`: how recently the session's Trusted Auth Token must have been attested.
    #[serde(default = "default_prompt_login_max_age")]
    pub prompt_login_max_age_seconds: i64,
    #[serde(default = "default_max_session_minutes")]
    pub max_session_duration_minutes: u32,
    /// Max database connections in the pool.
    #[serde(default)]
    pub database_max_connections: Option<u32>,
    /// Users are known by their id alone (the TAT's user claim): with profiles of different
    /// issuers, the same id from either is the same user. Required then, as a statement that
    /// both issuers name users alike.
    #[serde(default)]
    pub token_profiles_share_users: bool,
    #[serde(default)]
    pub token_profiles: Vec<TokenProfileConfig>,
    #[serde(default)]
    pub scopes: Vec<ScopeConfig>,
    #[serde(default)]
    pub resources: Vec<ResourceConfig>,
    #[serde(default)]
    pub clients: Vec<ClientConfig>,
    #[serde(default)]
    pub cimd: crate::cimd::CimdConfig,
    #[serde(default)]
    pub registration: RegistrationConfig,
    /// Bearer key for the admin API (`/admin/v1`); the admin API is off when unset.
    #[serde(default)]
    pub admin_key: Option<String>,
    /// How long a grant (the token family of one consent) may be refreshed, from its creation,
    /// however often it rotates.
    #[serde(default = "default_grant_max_lifetime")]
    pub grant_max_lifetime_seconds: i64,
    /// Extra CA certificates (PEM) trusted by every outbound fetch (TAT JWKS, client metadata
    /// documents), e.g. an identity provider on an internal CA. `[cimd] extra_ca_file` is an alias.
    #[serde(default)]
    pub extra_ca_file: Option<PathBuf>,
    /// Reverse proxies (CIDR blocks or addresses) whose `Forwarded` / `X-Forwarded-For` name
    /// the client; empty: the client is the TCP peer (see `client_ip`).
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Let remembered consent skip the consent screen for public clients whose redirect URI is
    /// loopback or a private-use scheme. Off: any local program can use such a client's id.
    #[serde(default)]
    pub remember_consent_for_native_clients: bool,
    /// `[organizations]`: what a new organization starts with.
    #[serde(default)]
    pub organizations: OrganizationsConfig,
}

/// `[organizations]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrganizationsConfig {
    /// The policy an organization gets when its first member signs in (and that organizations
    /// without a stored policy follow). Unset: everything allowed. The same document as the
    /// admin API's (`[organizations.default_policy.third_party] mode = "restricted"` …).
    #[serde(default)]
    pub default_policy: Option<consentry_protocol::OrgPolicy>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationConfig {
    /// open | initial_access_token | disabled
    #[serde(default = "default_registration_mode")]
    pub mode: RegistrationMode,
    #[serde(default)]
    pub initial_access_tokens: Vec<String>,
    /// Registrations per client IP (IPv6: per /64) per minute; also the budget of wrong
    /// initial access tokens per client IP per minute.
    #[serde(default = "default_registration_rate")]
    pub rate_limit_per_minute: u32,
    /// Registrations per minute from everyone together (this instance).
    #[serde(default = "default_registration_global_rate")]
    pub global_rate_limit_per_minute: u32,
    /// A registered client that never redeemed a code nor got a token is deleted this long after
    /// it registered.
    #[serde(default = "default_unused_client_ttl")]
    pub unused_client_ttl_seconds: i64,
    /// A registered client is deleted this long after its last use (code, refresh or token).
    #[serde(default = "default_idle_client_ttl")]
    pub idle_client_ttl_seconds: i64,
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        RegistrationConfig {
            mode: default_registration_mode(),
            initial_access_tokens: Vec::new(),
            rate_limit_per_minute: default_registration_rate(),
            global_rate_limit_per_minute: default_registration_global_rate(),
            unused_client_ttl_seconds: default_unused_client_ttl(),
            idle_client_ttl_seconds: default_idle_client_ttl(),
        }
    }
}

fn default_registration_mode() -> RegistrationMode {
    RegistrationMode::Open
}
fn default_registration_rate() -> u32 {
    60
}
fn default_registration_global_rate() -> u32 {
    120
}
fn default_unused_client_ttl() -> i64 {
    86_400
}
fn default_idle_client_ttl() -> i64 {
    7_776_000
}

fn default_listen() -> String {
    "127.0.0.1:8787".into()
}
fn default_database_url() -> String {
    "sqlite://consentry.db".into()
}
fn default_signing_alg() -> String {
    "ES256".into()
}
fn default_access_ttl() -> i64 {
    3600
}
fn default_refresh_ttl() -> i64 {
    7_776_000
}
fn default_grant_max_lifetime() -> i64 {
    7_776_000
}
fn default_code_ttl() -> i64 {
    60
}
fn default_prompt_login_max_age() -> i64 {
    600
}
fn default_max_session_minutes() -> u32 {
    60
}
fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenProfileConfig {
    pub id: String,
    pub issuer: String,
    pub audience: String,
    #[serde(default)]
    pub public_key_pem_file: Option<PathBuf>,
    #[serde(default)]
    pub public_key_pem: Option<String>,
    #[serde(default)]
    pub jwks_url: Option<String>,
    pub algorithms: Vec<String>,
    #[serde(default = "default_max_lifetime")]
    pub max_lifetime_seconds: i64,
    #[serde(default = "default_true")]
    pub jit_provisioning: bool,
    /// A `jti` is required and accepted once until the token expires. Turn off only for an
    /// identity provider whose tokens carry no `jti`: such a token then attests again and again
    /// until it expires (Consentry still bounds its lifetime, `max_lifetime_seconds`).
    #[serde(default = "default_true")]
    pub single_use_jti: bool,
    /// Where the user's attributes are. `attribute_mapping` is the hosted product's name for it.
    #[serde(default, alias = "attribute_mapping")]
    pub claims: ClaimsConfig,
    /// JWS `typ` header values accepted (RFC 7515 §4.1.9: compared case-insensitively, with or
    /// without the `application/` prefix). Unset: no `typ`, or `JWT`. Set: `typ` is required and
    /// must be one of these.
    #[serde(default)]
    pub allowed_types: Option<Vec<String>>,
    /// Refuse a token without the `claims.organization_id` claim.
    #[serde(default)]
    pub require_organization: bool,
    /// Members holding one of these roles manage their organization (its connected apps and
    /// policy) through `/v1/organization`.
    #[serde(default = "default_admin_roles")]
    pub admin_roles: Vec<String>,
}

fn default_admin_roles() -> Vec<String> {
    vec!["admin".into()]
}

fn default_max_lifetime() -> i64 {
    900
}

/// Claim names of the user's attributes in a Trusted Auth Token. A name starting with `/` is an
/// RFC 6901 JSON Pointer into the claims (`/realm_access/roles`); any other name is a top-level
/// claim, taken as is (Auth0's namespaced `https://example.com/roles` included). The aliases are
/// the hosted product's attribute-mapping names.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimsConfig {
    #[serde(default = "claim_sub", alias = "external_user_id")]
    pub user_id: String,
    #[serde(default = "claim_email")]
    pub email: String,
    #[serde(default = "claim_name")]
    pub name: String,
    #[serde(default = "claim_roles", alias = "role_ids")]
    pub roles: String,
    /// The token's unique id, used once when `single_use_jti` (Entra ID calls it `uti`).
    #[serde(default = "claim_jti", alias = "token_id")]
    pub jti: String,
    /// The organization the user acts in (`org_id`, Auth0's `org_id`, WorkOS's `org_id`…).
    /// Unset: one implicit organization, [`DEFAULT_ORGANIZATION`].
    #[serde(default)]
    pub organization_id: Option<String>,
    /// The organization's display name.
    #[serde(default)]
    pub organization_name: Option<String>,
}

pub use consentry_protocol::policy::DEFAULT_ORGANIZATION;

impl Default for ClaimsConfig {
    fn default() -> Self {
        ClaimsConfig {
            user_id: claim_sub(),
            email: claim_email(),
            name: claim_name(),
            roles: claim_roles(),
            jti: claim_jti(),
            organization_id: None,
            organization_name: None,
        }
    }
}

fn claim_jti() -> String {
    "jti".into()
}

fn claim_sub() -> String {
    "sub".into()
}
fn claim_email() -> String {
    "email".into()
}
fn claim_name() -> String {
    "name".into()
}
fn claim_roles() -> String {
    "roles".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeConfig {
    pub name: String,
    pub description: String,
    /// When set, only users holding one of these roles (from the TAT's roles claim) may grant it.
    #[serde(default)]
    pub required_roles: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceConfig {
    pub uri: String,
    pub name: String,
    pub scopes: Vec<String>,
    #[serde(default)]
    pub default_scopes: Vec<String>,
    /// Lets this resource server call `/oauth2/introspect` with `Authorization: Bearer <secret>`.
    #[serde(default)]
    pub introspection_secret: Option<String>,
}

/// The validated configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub issuer: String,
    pub listen: String,
    pub authorization_url: String,
    pub database_url: String,
    pub allowed_origins: Vec<String>,
    pub signing_alg: SigningAlg,
    pub access_token_ttl_seconds: i64,
    pub refresh_token_ttl_seconds: i64,
    pub refresh_reuse_grace_seconds: i64,
    pub authorization_code_ttl_seconds: i64,
    pub prompt_login_max_age_seconds: i64,
    pub max_session_duration_minutes: u32,
    pub database_max_connections: Option<u32>,
    pub token_profiles: Vec<TokenProfile>,
    pub scopes: BTreeMap<String, ScopeConfig>,
    pub resources: Vec<ResourceConfig>,
    /// `[[clients]]`, validated, by client_id.
    pub clients: HashMap<String, Client>,
    pub cimd: crate::cimd::CimdConfig,
    pub registration: RegistrationConfig,
    pub admin_key: Option<String>,
    pub grant_max_lifetime_seconds: i64,
    /// The CA file every outbound fetch trusts besides the public roots (resolved path; also in
    /// `cimd.extra_ca_file`).
    pub extra_ca_file: Option<PathBuf>,
    /// See `RawConfig::trusted_proxies`, parsed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// See `RawConfig::remember_consent_for_native_clients`.
    pub remember_consent_for_native_clients: bool,
    /// `[organizations] default_policy`, checked.
    pub default_policy: consentry_protocol::OrgPolicy,
    /// The config file's directory (relative paths in the config resolve against it).
    pub base_dir: PathBuf,
}

/// Where a token profile's verification keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    Pem(String),
    Jwks(String),
}

#[derive(Debug, Clone)]
pub struct TokenProfile {
    pub id: String,
    pub issuer: String,
    pub audience: String,
    pub keys: KeySource,
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    pub max_lifetime_seconds: i64,
    pub jit_provisioning: bool,
    pub single_use_jti: bool,
    pub claims: ClaimsConfig,
    /// Normalized (`application/` prefix removed, lowercase); `None`: absent or `jwt`.
    pub allowed_types: Option<Vec<String>>,
    pub require_organization: bool,
    pub admin_roles: Vec<String>,
}

/// Scalar top-level keys that `CONSENTRY_<KEY>` may override, with their kind.
const ENV_KEYS: &[(&str, EnvKind)] = &[
    ("issuer", EnvKind::Str),
    ("listen", EnvKind::Str),
    ("authorization_url", EnvKind::Str),
    ("database_url", EnvKind::Str),
    ("allowed_origins", EnvKind::List),
    ("signing_alg", EnvKind::Str),
    ("access_token_ttl_seconds", EnvKind::Int),
    ("refresh_token_ttl_seconds", EnvKind::Int),
    ("refresh_reuse_grace_seconds", EnvKind::Int),
    ("authorization_code_ttl_seconds", EnvKind::Int),
    ("prompt_login_max_age_seconds", EnvKind::Int),
    ("max_session_duration_minutes", EnvKind::Int),
    ("database_max_connections", EnvKind::Int),
    ("admin_key", EnvKind::Str),
    ("grant_max_lifetime_seconds", EnvKind::Int),
    ("extra_ca_file", EnvKind::Str),
    ("trusted_proxies", EnvKind::List),
];

#[derive(Clone, Copy)]
enum EnvKind {
    Str,
    Int,
    /// Comma-separated.
    List,
}

/// Algorithms a Trusted Auth Token may use: asymmetric only. `none` and HS* are refused because
/// a public key (or JWKS) must never double as an HMAC secret.
const TAT_ALGORITHMS: &[(&str, jsonwebtoken::Algorithm)] = &[
    ("RS256", jsonwebtoken::Algorithm::RS256),
    ("RS384", jsonwebtoken::Algorithm::RS384),
    ("RS512", jsonwebtoken::Algorithm::RS512),
    ("PS256", jsonwebtoken::Algorithm::PS256),
    ("PS384", jsonwebtoken::Algorithm::PS384),
    ("PS512", jsonwebtoken::Algorithm::PS512),
    ("ES256", jsonwebtoken::Algorithm::ES256),
    ("ES384", jsonwebtoken::Algorithm::ES384),
    ("EdDSA", jsonwebtoken::Algorithm::EdDSA),
];

impl Config {
    /// Load from a file, apply environment overrides, validate. Relative paths (key files,
    /// SQLite database) resolve against the config file's directory.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_toml(&text, base, std::env::vars())
            .with_context(|| format!("invalid config {}", path.display()))
    }

    pub fn from_toml(
        text: &str,
        base: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Config> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        apply_env(&mut table, env)?;
        let de = toml::Value::Table(table);
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            anyhow::anyhow!("{}: {}", path, e.into_inner())
        })?;
        validate(raw, base)
    }

    pub fn resource(&self, uri: &str) -> Option<&ResourceConfig> {
        self.resources.iter().find(|r| r.uri == uri)
    }

    pub fn profile(&self, id: &str) -> Option<&TokenProfile> {
        self.token_profiles.iter().find(|p| p.id == id)
    }

    /// The longest any token we signed stays valid: how long a rotated key must stay in JWKS.
    pub fn max_signed_token_ttl(&self) -> i64 {
        self.access_token_ttl_seconds.max(3600)
    }
}

fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> anyhow::Result<()> {
    for (name, value) in env {
        let Some(key) = name.strip_prefix("CONSENTRY_") else {
            continue;
        };
        let key = key.to_ascii_lowercase();
        let Some((_, kind)) = ENV_KEYS.iter().find(|(k, _)| *k == key) else {
            continue;
        };
        let v = match kind {
            EnvKind::Str => toml::Value::String(value),
            EnvKind::Int => toml::Value::Integer(
                value
                    .trim()
                    .parse()
                    .map_err(|_| anyhow::anyhow!("{name}: expected an integer, got '{value}'"))?,
            ),
            EnvKind::List => toml::Value::Array(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| toml::Value::String(s.to_owned()))
                    .collect(),
            ),
        };
        table.insert(key, v);
    }
    Ok(())
}

/// What plain `http` on a host other than this machine gets.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PlainHttp {
    Warn,
    /// Refused: a key set over plain http lets whoever rewrites it sign any user in.
    Refuse,
}

fn check_http_url(key: &str, value: &str, plain_http: PlainHttp) -> anyhow::Result<()> {
    let parts = split_uri(value)
        .filter(|p| (p.scheme == "https" || p.scheme == "http") && p.host.is_some())
        .with_context(|| format!("{key}: '{value}' must be an absolute http(s) URL"))?;
    if value.contains('#') {
        bail!("{key}: '{value}' must not contain a fragment");
    }
    if parts.scheme == "http" && !parts.host.is_some_and(consentry_protocol::is_loopback_host) {
        if plain_http == PlainHttp::Refuse {
            bail!(
                "{key}: '{value}' uses plain http on a non-loopback host; expected https (http only on 127.0.0.1, [::1] or localhost)"
            );
        }
        tracing::warn!("{key}: '{value}' uses plain http on a non-loopback host");
    }
    Ok(())
}

fn validate(raw: RawConfig, base: &Path) -> anyhow::Result<Config> {
    check_http_url("issuer", &raw.issuer, PlainHttp::Warn)?;
    if raw.issuer.contains('?') {
        bail!("issuer: '{}' must not contain a query", raw.issuer);
    }
    let issuer = raw.issuer.trim_end_matches('/').to_owned();
    check_http_url("authorization_url", &raw.authorization_url, PlainHttp::Warn)?;
    if raw.listen.parse::<std::net::SocketAddr>().is_err() {
        bail!(
            "listen: '{}' must be an address and port such as 127.0.0.1:8787",
            raw.listen
        );
    }
    for (i, o) in raw.allowed_origins.iter().enumerate() {
        let parts = split_uri(o).filter(|p| p.host.is_some() && p.rest.is_empty());
        if o != "*" && parts.is_none() {
            bail!(
                "allowed_origins[{i}]: '{o}' must be an origin such as https://app.example.com (no path)"
            );
        }
    }
    let signing_alg = SigningAlg::parse(&raw.signing_alg).with_context(|| {
        format!(
            "signing_alg: '{}' is not supported; expected ES256, EdDSA or RS256",
            raw.signing_alg
        )
    })?;
    for (key, v, min, max) in [
        (
            "access_token_ttl_seconds",
            raw.access_token_ttl_seconds,
            30,
            86_400,
        ),
        (
            "refresh_token_ttl_seconds",
            raw.refresh_token_ttl_seconds,
            60,
            31_536_000 * 2,
        ),
        (
            "refresh_reuse_grace_seconds",
            raw.refresh_reuse_grace_seconds,
            0,
            300,
        ),
        (
            "prompt_login_max_age_seconds",
            raw.prompt_login_max_age_seconds,
            1,
            86_400,
        ),
        (
            "authorization_code_ttl_seconds",
            raw.authorization_code_ttl_seconds,
            5,
            60,
        ),
        (
            "grant_max_lifetime_seconds",
            raw.grant_max_lifetime_seconds,
            10,
            31_536_000 * 2,
        ),
    ] {
        if !(min..=max).contains(&v) {
            bail!("{key}: {v} is out of range; expected {min}..={max}");
        }
    }
    if !(1..=1440).contains(&raw.max_session_duration_minutes) {
        bail!(
            "max_session_duration_minutes: {} is out of range; expected 1..=1440",
            raw.max_session_duration_minutes
        );
    }
    let database_url = resolve_database_url(&raw.database_url, base)?;

    let mut token_profiles = Vec::new();
    let mut ids = HashSet::new();
    for (i, p) in raw.token_profiles.into_iter().enumerate() {
        let k = format!("token_profiles[{i}]");
        if p.id.trim().is_empty() {
            bail!("{k}.id must not be empty");
        }
        if !ids.insert(p.id.clone()) {
            bail!("{k}.id: '{}' is used by another token profile", p.id);
        }
        if p.issuer.is_empty() {
            bail!("{k}.issuer must not be empty");
        }
        if p.audience.is_empty() {
            bail!("{k}.audience must not be empty");
        }
        if p.algorithms.is_empty() {
            bail!(
                "{k}.algorithms is required: list the asymmetric algorithms your tokens use, e.g. [\"RS256\"]"
            );
        }
        let mut algorithms = Vec::new();
        for a in &p.algorithms {
            let Some((_, alg)) = TAT_ALGORITHMS.iter().find(|(n, _)| n == a) else {
                let why = if a.eq_ignore_ascii_case("none") {
                    "unsigned tokens are never accepted"
                } else if a.to_ascii_uppercase().starts_with("HS") {
                    "shared-secret (HMAC) algorithms are refused: a public key must never double as an HMAC secret"
                } else {
                    "unknown algorithm"
                };
                bail!(
                    "{k}.algorithms: '{a}' is refused ({why}); allowed: {}",
                    TAT_ALGORITHMS
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            };
            algorithms.push(*alg);
        }
        let sources = [
            p.public_key_pem_file.is_some(),
            p.public_key_pem.is_some(),
            p.jwks_url.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if sources != 1 {
            bail!("{k}: set exactly one of public_key_pem_file, public_key_pem, jwks_url");
        }
        let keys = if let Some(url) = p.jwks_url {
            check_http_url(&format!("{k}.jwks_url"), &url, PlainHttp::Refuse)?;
            KeySource::Jwks(url)
        } else {
            let pem = match (p.public_key_pem_file, p.public_key_pem) {
                (Some(file), _) => {
                    let path = if file.is_absolute() {
                        file
                    } else {
                        base.join(file)
                    };
                    std::fs::read_to_string(&path).with_context(|| {
                        format!("{k}.public_key_pem_file: cannot read {}", path.display())
                    })?
                }
                (None, Some(pem)) => pem,
                (None, None) => bail!("{k}: no key configured"),
            };
            jwt::check_pem_matches_algorithms(&pem, &algorithms)
                .with_context(|| format!("{k}: public key"))?;
            KeySource::Pem(pem)
        };
        if !(10..=86_400).contains(&p.max_lifetime_seconds) {
            bail!(
                "{k}.max_lifetime_seconds: {} is out of range; expected 10..=86400",
                p.max_lifetime_seconds
            );
        }
        for (ck, cv) in [
            ("user_id", &p.claims.user_id),
            ("email", &p.claims.email),
            ("name", &p.claims.name),
            ("roles", &p.claims.roles),
            ("jti", &p.claims.jti),
        ] {
            if cv.is_empty() || cv == "/" {
                bail!(
                    "{k}.claims.{ck} must name a claim (a top-level name, or a JSON Pointer such as \"/realm_access/roles\")"
                );
            }
        }
        for (ck, cv) in [
            ("organization_id", &p.claims.organization_id),
            ("organization_name", &p.claims.organization_name),
        ] {
            if let Some(cv) = cv
                && (cv.is_empty() || cv == "/")
            {
                bail!(
                    "{k}.claims.{ck} must name a claim (a top-level name such as \"org_id\", or a JSON Pointer)"
                );
            }
        }
        if p.require_organization && p.claims.organization_id.is_none() {
            bail!(
                "{k}.require_organization = true needs claims.organization_id (the claim that names the user's organization, e.g. \"org_id\")"
            );
        }
        if p.admin_roles.iter().any(|r| r.is_empty()) {
            bail!("{k}.admin_roles: a role must not be empty");
        }
        let allowed_types = match p.allowed_types {
            None => None,
            Some(list) => {
                if list.is_empty() {
                    bail!(
                        "{k}.allowed_types must list at least one JWS typ value (or be left out: no typ, or \"JWT\")"
                    );
                }
                let mut out = Vec::new();
                for t in &list {
                    let n = jwt::normalize_typ(t);
                    if n.is_empty() || n.contains('/') || !t.bytes().all(|b| b.is_ascii_graphic()) {
                        bail!(
                            "{k}.allowed_types: '{t}' is not a media type such as \"JWT\" or \"application/id+jwt\""
                        );
                    }
                    out.push(n);
                }
                Some(out)
            }
        };
        token_profiles.push(TokenProfile {
            id: p.id,
            issuer: p.issuer,
            audience: p.audience,
            keys,
            algorithms,
            max_lifetime_seconds: p.max_lifetime_seconds,
            jit_provisioning: p.jit_provisioning,
            single_use_jti: p.single_use_jti,
            claims: p.claims,
            allowed_types,
            require_organization: p.require_organization,
            admin_roles: p.admin_roles,
        });
    }

    if !raw.token_profiles_share_users
        && let Some(other) = token_profiles
            .iter()
            .find(|p| p.issuer != token_profiles[0].issuer)
    {
        let first = &token_profiles[0];
        bail!(
            "token_profiles: '{}' (issuer '{}') and '{}' (issuer '{}') have different issuers, and a user is known by id alone: the same id from both would be one user (consents, grants, connected apps). Set token_profiles_share_users = true if both issuers name users alike, or keep to one issuer",
            first.id,
            first.issuer,
            other.id,
            other.issuer
        );
    }

    let mut scopes = BTreeMap::new();
    for (i, s) in raw.scopes.into_iter().enumerate() {
        let ok = consentry_protocol::parse_scope(Some(&s.name)).is_ok_and(|v| v.len() == 1);
        if !ok {
            bail!(
                "scopes[{i}].name: '{}' is not a single valid scope token",
                s.name
            );
        }
        if scopes.contains_key(&s.name) {
            bail!("scopes[{i}].name: '{}' is declared twice", s.name);
        }
        scopes.insert(s.name.clone(), s);
    }
    let mut uris = HashSet::new();
    for (i, r) in raw.resources.iter().enumerate() {
        let k = format!("resources[{i}]");
        check_http_url(&format!("{k}.uri"), &r.uri, PlainHttp::Warn)?;
        if !uris.insert(r.uri.clone()) {
            bail!("{k}.uri: '{}' is listed twice", r.uri);
        }
        if r.scopes.is_empty() {
            bail!("{k}.scopes must list at least one scope");
        }
        for s in &r.scopes {
            if !scopes.contains_key(s) {
                bail!(
                    "{k}.scopes: '{s}' is not declared in [[scopes]] (every scope needs a description for the consent screen)"
                );
            }
        }
        if r.introspection_secret
            .as_ref()
            .is_some_and(|s| s.len() < 32)
        {
            bail!("{k}.introspection_secret: must be at least 32 characters");
        }
        for s in &r.default_scopes {
            if !r.scopes.contains(s) {
                bail!("{k}.default_scopes: '{s}' is not one of this resource's scopes");
            }
        }
    }

    let mut clients = HashMap::new();
    for (i, c) in raw.clients.into_iter().enumerate() {
        let k = format!("clients[{i}]");
        if consentry_protocol::authorize::validate_client_id(Some(&c.client_id)).is_err() {
            bail!(
                "{k}.client_id: '{}' must be non-empty printable ASCII",
                c.client_id
            );
        }
        let auth = c.token_endpoint_auth_method;
        match (auth.is_confidential(), &c.client_secret) {
            (false, None) => {}
            (false, Some(_)) => bail!(
                "{k}.client_secret: a public client (token_endpoint_auth_method 'none') has no secret"
            ),
            (true, Some(secret)) if secret.len() >= 32 => {}
            (true, _) => bail!("{k}.client_secret: required for {auth} and at least 32 characters"),
        }
        // The one client rule, at the operator's trust (see clients::validate).
        let valid = crate::clients::validate(ClientMetadata::from_config(&c), Trust::Operator)
            .map_err(|e| anyhow::anyhow!("{k}.{e}"))?;
        let client = valid.into_client(
            c.client_id.clone(),
            c.client_secret.as_deref().map(crate::crypto::sha256_hex),
            ClientSource::Config,
            true,
        );
        if clients.insert(c.client_id.clone(), client).is_some() {
            bail!("{k}.client_id: '{}' is listed twice", c.client_id);
        }
    }

    if raw.registration.mode == RegistrationMode::InitialAccessToken
        && raw.registration.initial_access_tokens.is_empty()
    {
        bail!(
            "registration.initial_access_tokens: mode 'initial_access_token' needs at least one token"
        );
    }
    if let Some(k) = &raw.admin_key
        && k.len() < 32
    {
        bail!("admin_key: must be at least 32 characters");
    }
    validate_registration(&raw.registration)?;
    let trusted_proxies = raw
        .trusted_proxies
        .iter()
        .enumerate()
        .map(|(i, e)| parse_proxy(e).map_err(|m| anyhow::anyhow!("trusted_proxies[{i}]: {m}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut cimd = raw.cimd;
    if let Some(ca) = cimd.extra_ca_file.take() {
        cimd.extra_ca_file = Some(if ca.is_absolute() { ca } else { base.join(ca) });
    }
    let extra_ca_file = extra_ca_file(raw.extra_ca_file, &mut cimd, base)?;
    let default_policy = raw.organizations.default_policy.unwrap_or_default();
    default_policy
        .check()
        .map_err(|e| anyhow::anyhow!("organizations.default_policy.{e}"))?;
    {
        let served: Vec<&String> = raw.resources.iter().flat_map(|r| &r.scopes).collect();
        for sc in default_policy
            .scopes
            .disallowed
            .iter()
            .chain(default_policy.scopes.required_roles.keys())
        {
            if !served.contains(&sc) {
                bail!(
                    "organizations.default_policy.scopes: '{sc}' is not a scope of any [[resources]]"
                );
            }
        }
    }
    // A refresh token never outlives its grant.
    let refresh_token_ttl_seconds = raw
        .refresh_token_ttl_seconds
        .min(raw.grant_max_lifetime_seconds);
    if cimd.min_cache_seconds > cimd.max_cache_seconds {
        bail!(
            "cimd.min_cache_seconds ({}) must not exceed cimd.max_cache_seconds ({})",
            cimd.min_cache_seconds,
            cimd.max_cache_seconds
        );
    }

    Ok(Config {
        issuer,
        listen: raw.listen,
        authorization_url: raw.authorization_url,
        database_url,
        allowed_origins: raw.allowed_origins,
        signing_alg,
        access_token_ttl_seconds: raw.access_token_ttl_seconds,
        refresh_token_ttl_seconds,
        refresh_reuse_grace_seconds: raw.refresh_reuse_grace_seconds,
        authorization_code_ttl_seconds: raw.authorization_code_ttl_seconds,
        prompt_login_max_age_seconds: raw.prompt_login_max_age_seconds,
        max_session_duration_minutes: raw.max_session_duration_minutes,
        database_max_connections: raw.database_max_connections,
        token_profiles,
        scopes,
        resources: raw.resources,
        clients,
        cimd,
        registration: raw.registration,
        admin_key: raw.admin_key,
        grant_max_lifetime_seconds: raw.grant_max_lifetime_seconds,
        extra_ca_file,
        trusted_proxies,
        remember_consent_for_native_clients: raw.remember_consent_for_native_clients,
        default_policy,
        base_dir: base.to_path_buf(),
    })
}

/// The one extra CA file of every outbound fetch: top-level `extra_ca_file`, or its alias
/// `[cimd] extra_ca_file` (both set: they must name the same file). Checked here, so a bad file
/// fails the start naming the key that set it; `cimd` gets the same file.
fn extra_ca_file(
    top: Option<PathBuf>,
    cimd: &mut crate::cimd::CimdConfig,
    base: &Path,
) -> anyhow::Result<Option<PathBuf>> {
    let top = top.map(|ca| if ca.is_absolute() { ca } else { base.join(ca) });
    let (key, path) = match (top, cimd.extra_ca_file.clone()) {
        (None, None) => return Ok(None),
        (Some(t), Some(c)) if t != c => bail!(
            "extra_ca_file ({}) and its alias cimd.extra_ca_file ({}) name different files; every outbound fetch uses one CA file: set extra_ca_file only",
            t.display(),
            c.display()
        ),
        (Some(t), _) => ("extra_ca_file", t),
        (None, Some(c)) => ("cimd.extra_ca_file", c),
    };
    read_ca_certificates(key, &path)?;
    cimd.extra_ca_file = Some(path.clone());
    Ok(Some(path))
}

/// `[registration]` beyond its mode: initial access tokens as long as `admin_key`, limits and
/// lifetimes in range.
fn validate_registration(r: &RegistrationConfig) -> anyhow::Result<()> {
    for (i, t) in r.initial_access_tokens.iter().enumerate() {
        // Measured like admin_key; the token itself never goes into the message.
        if t.len() < 32 {
            bail!(
                "registration.initial_access_tokens[{i}]: must be at least 32 characters (it has {})",
                t.len()
            );
        }
    }
    if r.rate_limit_per_minute == 0 {
        bail!("registration.rate_limit_per_minute: must be at least 1");
    }
    if r.global_rate_limit_per_minute == 0 {
        bail!("registration.global_rate_limit_per_minute: must be at least 1");
    }
    const TEN_YEARS: i64 = 10 * 366 * 86_400;
    for (key, v) in [
        ("unused_client_ttl_seconds", r.unused_client_ttl_seconds),
        ("idle_client_ttl_seconds", r.idle_client_ttl_seconds),
    ] {
        if !(1..=TEN_YEARS).contains(&v) {
            bail!("registration.{key}: {v} is out of range; expected 1 to {TEN_YEARS} seconds");
        }
    }
    Ok(())
}

/// `sqlite://relative.db` resolves against the config file's directory; `sqlite::memory:` and
/// `postgres://…` pass through.
fn resolve_database_url(url: &str, base: &Path) -> anyhow::Result<String> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(url.to_owned());
    }
    let Some(rest) = url.strip_prefix("sqlite:") else {
        bail!("database_url: '{url}' must start with sqlite:// or postgres://");
    };
    if rest == ":memory:" {
        bail!(
            "database_url: an in-memory SQLite database would lose every grant at restart; use a file"
        );
    }
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() {
        bail!("database_url: '{url}' names no file");
    }
    let p = Path::new(path);
    let full = if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    };
    let mut out = format!("sqlite://{}", full.display());
    if query.is_empty() {
        out.push_str("?mode=rwc");
    } else {
        out.push('?');
        out.push_str(query);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
