//! The server's shared state: configuration, store, keys, sealer, verifiers, limiters — built
//! once at start and handed to every flow.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::clients::Client;
use crate::config::Config;
use crate::crypto::Sealer;
use crate::error::ApiResult;
use crate::keys::KeyRing;
use crate::store::Store;
use crate::tat::TatVerifier;

pub struct AppState {
    pub cfg: Arc<Config>,
    pub store: Store,
    pub keys: KeyRing,
    pub sealer: Sealer,
    pub tat: TatVerifier,
    /// Registrations per client IP (IPv6 /64) per minute.
    pub registration_limiter: crate::limits::RateLimiter<std::net::IpAddr>,
    /// Registrations per minute from everyone (`registration.global_rate_limit_per_minute`).
    pub registration_global: crate::limits::RateLimiter<()>,
    /// Wrong initial access tokens per client IP per minute.
    pub iat_failures: crate::limits::RateLimiter<std::net::IpAddr>,
    /// Resolves https client_ids (Client ID Metadata Documents); `None` when `[cimd]` is off.
    pub cimd: Option<crate::cimd::CimdResolver>,
    /// RFC 8414 metadata, rendered once.
    pub metadata: Value,
}

pub type Shared = Arc<AppState>;

pub use crate::clock::now;

impl AppState {
    pub async fn new(cfg: Config) -> anyhow::Result<AppState> {
        let store = Store::connect(&cfg.database_url, cfg.database_max_connections).await?;
        store.policies().set_default(cfg.default_policy.clone());
        let now = now();
        let keys = KeyRing::load(&store, cfg.signing_alg, cfg.max_signed_token_ttl(), now).await?;
        let session_secret = store
            .secret("session_hmac", &crate::crypto::random_token(32), now)
            .await?;
        let code_secret = store
            .secret("code_aead", &crate::crypto::random_token(32), now)
            .await?;
        let sealer = Sealer::new(&session_secret, &code_secret)?;
        let mut http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(3));
        if let Some(ca) = &cfg.extra_ca_file {
            for c in crate::config::read_ca_certificates("extra_ca_file", ca)? {
                http = http.add_root_certificate(c);
            }
        }
        let http = http.build()?;
        let tat = TatVerifier::new(&cfg.token_profiles, http)?;
        let metadata = metadata(&cfg);
        let cimd = if cfg.cimd.enabled {
            Some(crate::cimd::CimdResolver::new(&cfg.cimd)?)
        } else {
            None
        };
        Ok(AppState {
            cfg: Arc::new(cfg),
            store,
            keys,
            sealer,
            tat,
            registration_limiter: crate::limits::per_ip_limiter(),
            registration_global: crate::limits::RateLimiter::new(Duration::from_secs(60), 1),
            iat_failures: crate::limits::per_ip_limiter(),
            cimd,
            metadata,
        })
    }

    /// A client of this server: pre-registered in the config, or dynamically registered.
    pub async fn client(&self, client_id: &str) -> ApiResult<Option<Client>> {
        if let Some(c) = self.cfg.clients.get(client_id) {
            return Ok(Some(c.clone()));
        }
        // https client_ids are Client ID Metadata Document URLs (self-issued ids never are).
        if client_id.starts_with("https://") {
            return match &self.cimd {
                Some(r) => Ok(Some(
                    r.resolve_for(client_id, crate::limits::current_client_ip())
                        .await?,
                )),
                None => Ok(None),
            };
        }
        match self.store.client(client_id).await? {
            Some(row) => Ok(Some(crate::clients::client_from_row(&row)?)),
            None => Ok(None),
        }
    }
}

fn metadata(cfg: &Config) -> Value {
    let iss = &cfg.issuer;
    json!({
        "issuer": iss,
        "authorization_endpoint": cfg.authorization_url,
        "token_endpoint": format!("{iss}/oauth2/token"),
        "jwks_uri": format!("{iss}/.well-known/jwks.json"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "bearer"],
        "scopes_supported": cfg
            .scopes
            .keys()
            .map(String::as_str)
            .chain(crate::domain::OIDC_SCOPES.iter().map(|(sc, _)| *sc))
            .collect::<Vec<_>>(),
        "authorization_response_iss_parameter_supported": true,
        "prompt_values_supported": ["none", "login", "consent"],
        "registration_endpoint": format!("{iss}/oauth2/register"),
        "revocation_endpoint": format!("{iss}/oauth2/revoke"),
        "introspection_endpoint": format!("{iss}/oauth2/introspect"),
        "userinfo_endpoint": format!("{iss}/oauth2/userinfo"),
        "id_token_signing_alg_values_supported": [cfg.signing_alg.as_str()],
        "subject_types_supported": ["public"],
        "claims_supported": ["sub", "name", "email", "iss", "aud", "exp", "iat", "auth_time", "nonce"],
        "client_id_metadata_document_supported": cfg.cimd.enabled,
    })
}
