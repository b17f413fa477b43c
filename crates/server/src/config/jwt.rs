//! JWT details the configuration checks and the TAT verifier share (no dependency on either).

use anyhow::{anyhow, bail};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};

/// A JWS `typ` in the form it is compared in: lowercase (media types are case-insensitive)
/// and without the `application/` prefix (RFC 7515 §4.1.9: `JWT` means `application/jwt`).
pub fn normalize_typ(typ: &str) -> String {
    let lower = typ.to_ascii_lowercase();
    match lower.strip_prefix("application/") {
        Some(rest) => rest.to_owned(),
        None => lower,
    }
}

/// Config-time check: every algorithm of a PEM profile must belong to the key's family, and the
/// PEM must parse as that family's public key.
pub fn check_pem_matches_algorithms(pem: &str, algorithms: &[Algorithm]) -> anyhow::Result<()> {
    let family = algorithms
        .first()
        .map(|a| a.family())
        .ok_or_else(|| anyhow!("no algorithms"))?;
    if algorithms.iter().any(|a| a.family() != family) {
        bail!(
            "algorithms mix key types (e.g. RS256 with ES256) but a PEM profile has one key; use one family or a jwks_url"
        );
    }
    decoding_key_from_pem(pem, family).map(|_| ())
}

pub fn decoding_key_from_pem(pem: &str, family: AlgorithmFamily) -> anyhow::Result<DecodingKey> {
    let b = pem.as_bytes();
    let key = match family {
        AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(b),
        AlgorithmFamily::Ec => DecodingKey::from_ec_pem(b),
        AlgorithmFamily::Ed => DecodingKey::from_ed_pem(b),
        _ => bail!("unsupported key family"),
    };
    key.map_err(|e| anyhow!("not a {family:?} public key in PEM form: {e}"))
}
