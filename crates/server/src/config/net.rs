//! Network-facing settings: `trusted_proxies` entries and the extra CA certificates outbound
//! fetches trust.

use std::path::Path;

use anyhow::{Context, bail};

/// The certificates of a PEM CA file (at least one), for outbound HTTPS clients.
pub fn read_ca_certificates(key: &str, path: &Path) -> anyhow::Result<Vec<reqwest::Certificate>> {
    let pem =
        std::fs::read(path).with_context(|| format!("{key}: cannot read {}", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .with_context(|| format!("{key}: {} is not PEM certificates", path.display()))?;
    if certs.is_empty() {
        bail!("{key}: {} contains no certificate", path.display());
    }
    Ok(certs)
}

/// Parse a `trusted_proxies` entry: a CIDR block (`10.0.0.0/8`, `fd00::/8`) or one address.
pub fn parse_proxy(entry: &str) -> Result<ipnet::IpNet, String> {
    let e = entry.trim();
    if let Ok(net) = e.parse::<ipnet::IpNet>() {
        return Ok(net.trunc());
    }
    e.parse::<std::net::IpAddr>()
        .map(ipnet::IpNet::from)
        .map_err(|_| {
            format!("'{entry}' is not a CIDR block or an IP address (e.g. '10.0.0.0/8', '::1')")
        })
}
