//! A `consentry.toml` built in code: the same keys as [`RawConfig`](super::RawConfig), as typed
//! fields, rendered with serde. Everything that writes a config for the server to read uses it
//! (`consentry dev`, the test harness in `crates/testkit`, the load benchmark), so a renamed or
//! removed key breaks their build or the round-trip test below instead of a config at start.
//!
//! Optional keys left `None` (or empty) are not written: the server's defaults apply.

use std::path::PathBuf;

use serde::Serialize;

/// The whole file. `ConfigBuilder::new(issuer, authorization_url)` then the `with_*`/`push_*`
/// methods, or set the public fields directly; [`ConfigBuilder::to_toml`] renders it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ConfigBuilder {
    pub issuer: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    pub authorization_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_alg: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_token_ttl_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token_ttl_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_reuse_grace_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization_code_ttl_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_login_max_age_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_session_duration_minutes: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_max_connections: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_profiles_share_users: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant_max_lifetime_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra_ca_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trusted_proxies: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remember_consent_for_native_clients: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub token_profiles: Vec<TokenProfile>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<Scope>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<Resource>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub clients: Vec<Client>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cimd: Option<Cimd>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registration: Option<Registration>,
}

/// `[[token_profiles]]`: how to trust the product's Trusted Auth Tokens.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TokenProfile {
    pub id: String,
    pub issuer: String,
    pub audience: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key_pem_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key_pem: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    pub algorithms: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_lifetime_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jit_provisioning: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub single_use_jti: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_types: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claims: Option<Claims>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub require_organization: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_roles: Option<Vec<String>>,
}

/// `[token_profiles.claims]`: where the user's attributes are in the token.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Claims {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organization_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organization_name: Option<String>,
}

/// `[[scopes]]`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Scope {
    pub name: String,
    pub description: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub required_roles: Vec<String>,
}

/// `[[resources]]`: an RFC 8707 resource (an MCP server), the access tokens' `aud`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Resource {
    pub uri: String,
    pub name: String,
    pub scopes: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub default_scopes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub introspection_secret: Option<String>,
}

/// `[[clients]]`: a pre-registered client.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Client {
    pub client_id: String,
    pub client_name: String,
    pub redirect_uris: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logo_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant_types: Option<Vec<String>>,
}

/// `[cimd]`: Client ID Metadata Documents.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Cimd {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow_hosts: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trusted_domains: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra_ca_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_cache_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_cache_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent_fetches: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetches_per_client_per_minute: Option<u32>,
}

/// `[registration]`: Dynamic Client Registration.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Registration {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub initial_access_tokens: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_minute: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub global_rate_limit_per_minute: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unused_client_ttl_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_client_ttl_seconds: Option<i64>,
}

impl ConfigBuilder {
    pub fn new(issuer: impl Into<String>, authorization_url: impl Into<String>) -> Self {
        ConfigBuilder {
            issuer: issuer.into(),
            authorization_url: authorization_url.into(),
            ..ConfigBuilder::default()
        }
    }

    /// `issuer = "http://127.0.0.1:{port}"`, `listen = "127.0.0.1:{port}"`: a server on loopback.
    pub fn loopback(port: u16, authorization_url: impl Into<String>) -> Self {
        let mut c = ConfigBuilder::new(format!("http://127.0.0.1:{port}"), authorization_url);
        c.listen = Some(format!("127.0.0.1:{port}"));
        c
    }

    pub fn database_url(mut self, url: impl Into<String>) -> Self {
        self.database_url = Some(url.into());
        self
    }

    pub fn allowed_origin(mut self, origin: impl Into<String>) -> Self {
        self.allowed_origins.push(origin.into());
        self
    }

    pub fn token_profile(mut self, profile: TokenProfile) -> Self {
        self.token_profiles.push(profile);
        self
    }

    pub fn scope(mut self, name: impl Into<String>, description: impl Into<String>) -> Self {
        self.scopes.push(Scope {
            name: name.into(),
            description: description.into(),
            required_roles: Vec::new(),
        });
        self
    }

    pub fn resource(mut self, resource: Resource) -> Self {
        self.resources.push(resource);
        self
    }

    pub fn client(mut self, client: Client) -> Self {
        self.clients.push(client);
        self
    }

    /// The file's text. Fails only if a value cannot be written as TOML (it always can: every
    /// field is a string, number, bool or list of them).
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string(self)
    }
}

impl TokenProfile {
    /// A profile verified with a PEM public key file (relative to the config file).
    pub fn with_key_file(
        id: impl Into<String>,
        issuer: impl Into<String>,
        audience: impl Into<String>,
        public_key_pem_file: impl Into<PathBuf>,
        algorithms: &[&str],
    ) -> Self {
        TokenProfile {
            id: id.into(),
            issuer: issuer.into(),
            audience: audience.into(),
            public_key_pem_file: Some(public_key_pem_file.into()),
            algorithms: algorithms.iter().map(|a| (*a).to_owned()).collect(),
            ..TokenProfile::default()
        }
    }
}

impl Resource {
    pub fn new(uri: impl Into<String>, name: impl Into<String>, scopes: &[&str]) -> Self {
        Resource {
            uri: uri.into(),
            name: name.into(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            ..Resource::default()
        }
    }

    pub fn default_scopes(mut self, scopes: &[&str]) -> Self {
        self.default_scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    pub fn introspection_secret(mut self, secret: impl Into<String>) -> Self {
        self.introspection_secret = Some(secret.into());
        self
    }
}

impl Client {
    /// A public client (`token_endpoint_auth_method = "none"`).
    pub fn public(
        client_id: impl Into<String>,
        client_name: impl Into<String>,
        redirect_uris: &[&str],
    ) -> Self {
        Client {
            client_id: client_id.into(),
            client_name: client_name.into(),
            redirect_uris: redirect_uris.iter().map(|u| (*u).to_owned()).collect(),
            token_endpoint_auth_method: Some("none".into()),
            ..Client::default()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::config::RawConfig;

    fn full() -> ConfigBuilder {
        let mut c = ConfigBuilder::loopback(8787, "http://127.0.0.1:3000/oauth/authorize")
            .database_url("sqlite://consentry.db")
            .allowed_origin("http://127.0.0.1:3000")
            .token_profile(TokenProfile {
                claims: Some(Claims {
                    user_id: Some("userId".into()),
                    ..Claims::default()
                }),
                max_lifetime_seconds: Some(900),
                ..TokenProfile::with_key_file("default", "urn:i", "urn:a", "k.pem", &["ES256"])
            })
            .scope("notes:read", "Read your notes")
            .resource(
                Resource::new("http://127.0.0.1:8788/mcp", "Notes", &["notes:read"])
                    .default_scopes(&["notes:read"])
                    .introspection_secret("s".repeat(32)),
            )
            .client(Client::public(
                "demo-agent",
                "Demo",
                &["http://127.0.0.1:9/cb"],
            ));
        c.access_token_ttl_seconds = Some(30);
        c.cimd = Some(Cimd {
            allow_hosts: vec!["127.0.0.1:9443".into()],
            ..Cimd::default()
        });
        c.registration = Some(Registration {
            mode: Some("open".into()),
            ..Registration::default()
        });
        c
    }

    /// Every key the builder writes is one the server reads (`deny_unknown_fields`), with the
    /// value it was given.
    #[test]
    fn rendered_config_is_read_back_by_the_server() {
        let text = full().to_toml().unwrap();
        let raw: RawConfig = toml::from_str(&text).unwrap();
        assert_eq!(raw.issuer, "http://127.0.0.1:8787");
        assert_eq!(raw.listen, "127.0.0.1:8787");
        assert_eq!(raw.access_token_ttl_seconds, 30);
        assert_eq!(raw.token_profiles[0].claims.user_id, "userId");
        assert_eq!(raw.token_profiles[0].claims.email, "email");
        assert_eq!(raw.resources[0].default_scopes, ["notes:read"]);
        assert_eq!(raw.clients[0].token_endpoint_auth_method.as_str(), "none");
        assert_eq!(raw.cimd.allow_hosts, ["127.0.0.1:9443"]);
        assert_eq!(raw.registration.mode.as_str(), "open");
    }

    #[test]
    fn unset_keys_are_not_written() {
        let text = ConfigBuilder::new("http://127.0.0.1:1", "http://127.0.0.1:2/a")
            .to_toml()
            .unwrap();
        assert_eq!(
            text,
            "issuer = \"http://127.0.0.1:1\"\nauthorization_url = \"http://127.0.0.1:2/a\"\n"
        );
    }
}
