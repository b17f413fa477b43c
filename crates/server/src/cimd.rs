//! Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document): a `client_id`
//! that is an https URL with a path is resolved by fetching it. (Being written.)

use std::path::PathBuf;

use serde::Deserialize;

/// `[cimd]` in consentry.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CimdConfig {
    /// Resolve https client_ids at all.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `host:port` pairs that may be fetched even though they resolve to special-use addresses
    /// (tests and local development on loopback). TLS verification stays on.
    #[serde(default)]
    pub allow_hosts: Vec<String>,
    /// Hosts (exact, or `*.example.com`) whose clients the consent screen shows as verified.
    #[serde(default)]
    pub trusted_domains: Vec<String>,
    /// An extra CA certificate (PEM) to trust, e.g. a test CA.
    #[serde(default)]
    pub extra_ca_file: Option<PathBuf>,
    /// Cache bounds applied to the document's Cache-Control max-age.
    #[serde(default = "default_min_cache")]
    pub min_cache_seconds: u64,
    #[serde(default = "default_max_cache")]
    pub max_cache_seconds: u64,
}

fn yes() -> bool {
    true
}
fn default_min_cache() -> u64 {
    60
}
fn default_max_cache() -> u64 {
    86_400
}

impl Default for CimdConfig {
    fn default() -> Self {
        CimdConfig {
            enabled: true,
            allow_hosts: Vec::new(),
            trusted_domains: Vec::new(),
            extra_ca_file: None,
            min_cache_seconds: default_min_cache(),
            max_cache_seconds: default_max_cache(),
        }
    }
}
