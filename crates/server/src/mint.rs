//! `consentry mint-tat`: the seed's "Option 2" for products whose login issues no JWTs — sign a
//! short-lived Trusted Auth Token with the product's own private key.

use anyhow::{Context, bail};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair,
    RsaKeyPair,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value, json};

pub struct MintTat<'a> {
    pub private_key_pem: &'a str,
    pub issuer: &'a str,
    pub audience: &'a str,
    pub user_id: &'a str,
    /// Claim that carries the user id (`sub` unless the token profile maps another).
    pub user_id_claim: &'a str,
    pub email: Option<&'a str>,
    pub name: Option<&'a str>,
    pub roles: &'a [String],
    /// `org_id` and `org_name` (the claims `consentry dev` maps; name others in your profile's
    /// `claims.organization_id`).
    pub organization_id: Option<&'a str>,
    pub organization_name: Option<&'a str>,
    pub ttl_seconds: i64,
    pub now: i64,
}

/// The JWS algorithm that fits a private key: ES256/ES384 for P-256/P-384, EdDSA for Ed25519,
/// RS256 for RSA.
pub fn algorithm_for_key(pem_text: &str) -> anyhow::Result<Algorithm> {
    let p = pem::parse(pem_text).context("the key file is not PEM")?;
    let der = p.contents();
    Ok(match p.tag() {
        "RSA PRIVATE KEY" => Algorithm::RS256,
        "EC PRIVATE KEY" => Algorithm::ES256,
        "PRIVATE KEY" => {
            if EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der).is_ok() {
                Algorithm::ES256
            } else if EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, der).is_ok() {
                Algorithm::ES384
            } else if Ed25519KeyPair::from_pkcs8(der).is_ok()
                || Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).is_ok()
            {
                Algorithm::EdDSA
            } else if RsaKeyPair::from_pkcs8(der).is_ok() {
                Algorithm::RS256
            } else {
                bail!("the PKCS#8 key is not P-256, P-384, Ed25519 or RSA")
            }
        }
        other => bail!(
            "expected a PEM private key (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY), found '{other}'"
        ),
    })
}

pub fn mint(m: &MintTat<'_>) -> anyhow::Result<String> {
    let alg = algorithm_for_key(m.private_key_pem)?;
    let b = m.private_key_pem.as_bytes();
    let key = match alg {
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(b),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(b),
        _ => EncodingKey::from_rsa_pem(b),
    }
    .context("cannot load the private key")?;
    if m.ttl_seconds <= 0 {
        bail!("--ttl must be positive");
    }
    let mut claims = Map::new();
    claims.insert("iss".into(), json!(m.issuer));
    claims.insert("aud".into(), json!(m.audience));
    claims.insert("iat".into(), json!(m.now));
    claims.insert("exp".into(), json!(m.now + m.ttl_seconds));
    claims.insert("jti".into(), json!(crate::crypto::random_token(16)));
    claims.insert(m.user_id_claim.into(), json!(m.user_id));
    if m.user_id_claim != "sub" {
        claims.insert("sub".into(), json!(m.user_id));
    }
    if let Some(e) = m.email {
        claims.insert("email".into(), json!(e));
    }
    if let Some(n) = m.name {
        claims.insert("name".into(), json!(n));
    }
    if !m.roles.is_empty() {
        claims.insert("roles".into(), json!(m.roles));
    }
    if let Some(o) = m.organization_id {
        claims.insert("org_id".into(), json!(o));
    }
    if let Some(o) = m.organization_name {
        claims.insert("org_name".into(), json!(o));
    }
    let mut header = Header::new(alg);
    header.typ = Some("JWT".into());
    Ok(jsonwebtoken::encode(&header, &Value::Object(claims), &key)?)
}

/// `10m`, `600s`, `600`, `1h`.
pub fn parse_duration_seconds(s: &str) -> anyhow::Result<i64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 's')) => (&s[..i], 1),
        Some((i, 'm')) => (&s[..i], 60),
        Some((i, 'h')) => (&s[..i], 3600),
        _ => (s, 1),
    };
    let n: i64 = num
        .parse()
        .with_context(|| format!("'{s}' is not a duration such as 600s, 10m or 1h"))?;
    Ok(n * mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_seconds("10m").ok(), Some(600));
        assert_eq!(parse_duration_seconds("600").ok(), Some(600));
        assert_eq!(parse_duration_seconds("2h").ok(), Some(7200));
        assert!(parse_duration_seconds("ten").is_err());
    }

    #[test]
    fn detects_key_types() {
        for (alg, want) in [
            (crate::keys::SigningAlg::ES256, Algorithm::ES256),
            (crate::keys::SigningAlg::EdDSA, Algorithm::EdDSA),
            (crate::keys::SigningAlg::RS256, Algorithm::RS256),
        ] {
            let (private, _) = crate::keys::generate_pem_keypair(alg).expect("keypair");
            assert_eq!(algorithm_for_key(&private).expect("detect"), want);
        }
    }
}
