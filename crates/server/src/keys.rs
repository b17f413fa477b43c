//! The server's own signing keys (access tokens), published at `/.well-known/jwks.json`.
//!
//! Signing is done here with parsed aws-lc key pairs rather than through `jsonwebtoken`, which
//! re-parses the private key on every `encode` (+400 µs per RS256 token, measured on the project machine): the hot
//! path of the token endpoint is one `sign` on an already-parsed key.

use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RSA_PKCS1_SHA256,
    RsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use std::collections::HashMap;

use serde_json::{Map, Value, json};
use tokio::sync::RwLock;

use crate::store::{SigningKeyRow, Store};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigningAlg {
    ES256,
    EdDSA,
    RS256,
}

impl SigningAlg {
    pub fn parse(s: &str) -> Option<SigningAlg> {
        match s {
            "ES256" => Some(SigningAlg::ES256),
            "EdDSA" => Some(SigningAlg::EdDSA),
            "RS256" => Some(SigningAlg::RS256),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::ES256 => "ES256",
            SigningAlg::EdDSA => "EdDSA",
            SigningAlg::RS256 => "RS256",
        }
    }
}

enum Pair {
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

/// A parsed private key with its public JWK.
pub struct SigningKey {
    pub kid: String,
    pub alg: SigningAlg,
    pair: Pair,
    pub public_jwk: Value,
}

impl SigningKey {
    /// Generate a fresh key; returns it with its PKCS#8 DER.
    pub fn generate(alg: SigningAlg) -> anyhow::Result<(SigningKey, Vec<u8>)> {
        let rng = SystemRandom::new();
        let der = match alg {
            SigningAlg::ES256 => {
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(|_| anyhow!("cannot generate a P-256 key"))?
                    .as_ref()
                    .to_vec()
            }
            SigningAlg::EdDSA => Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(|_| anyhow!("cannot generate an Ed25519 key"))?
                .as_ref()
                .to_vec(),
            SigningAlg::RS256 => {
                let kp = RsaKeyPair::generate(KeySize::Rsa2048)
                    .map_err(|_| anyhow!("cannot generate an RSA key"))?;
                let der: Pkcs8V1Der<'_> = kp
                    .as_der()
                    .map_err(|_| anyhow!("cannot encode an RSA key"))?;
                der.as_ref().to_vec()
            }
        };
        Ok((SigningKey::from_pkcs8(alg, &der)?, der))
    }

    pub fn from_pkcs8(alg: SigningAlg, der: &[u8]) -> anyhow::Result<SigningKey> {
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        let (pair, mut jwk) = match alg {
            SigningAlg::ES256 => {
                let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(|e| anyhow!("not a P-256 PKCS#8 key: {e}"))?;
                let point = kp.public_key().as_ref();
                if point.len() != 65 {
                    bail!("unexpected P-256 public key length");
                }
                let jwk = json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65])});
                (Pair::Ec(kp), jwk)
            }
            SigningAlg::EdDSA => {
                let kp = Ed25519KeyPair::from_pkcs8(der)
                    .map_err(|e| anyhow!("not an Ed25519 PKCS#8 key: {e}"))?;
                let jwk =
                    json!({"kty": "OKP", "crv": "Ed25519", "x": b64(kp.public_key().as_ref())});
                (Pair::Ed(kp), jwk)
            }
            SigningAlg::RS256 => {
                let kp = RsaKeyPair::from_pkcs8(der)
                    .map_err(|e| anyhow!("not an RSA PKCS#8 key: {e}"))?;
                let pk = kp.public_key();
                let jwk = json!({
                    "kty": "RSA",
                    "n": b64(pk.modulus().big_endian_without_leading_zero()),
                    "e": b64(pk.exponent().big_endian_without_leading_zero()),
                });
                (Pair::Rsa(kp), jwk)
            }
        };
        let kid = thumbprint(&jwk);
        if let Value::Object(m) = &mut jwk {
            m.insert("kid".into(), Value::String(kid.clone()));
            m.insert("alg".into(), Value::String(alg.as_str().into()));
            m.insert("use".into(), Value::String("sig".into()));
        }
        Ok(SigningKey {
            kid,
            alg,
            pair,
            public_jwk: jwk,
        })
    }

    /// Sign a JWT with header `{alg, typ, kid}` and the given claims.
    pub fn sign_jwt(&self, typ: &str, claims: &Value) -> anyhow::Result<String> {
        let header = json!({"alg": self.alg.as_str(), "typ": typ, "kid": self.kid});
        let mut out = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?);
        out.push('.');
        out.push_str(&URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims)?));
        let sig = self.sign(out.as_bytes())?;
        out.push('.');
        out.push_str(&URL_SAFE_NO_PAD.encode(sig));
        Ok(out)
    }

    fn sign(&self, msg: &[u8]) -> anyhow::Result<Vec<u8>> {
        let rng = SystemRandom::new();
        match &self.pair {
            Pair::Ec(kp) => Ok(kp
                .sign(&rng, msg)
                .map_err(|_| anyhow!("ES256 signing failed"))?
                .as_ref()
                .to_vec()),
            Pair::Ed(kp) => Ok(kp.sign(msg).as_ref().to_vec()),
            Pair::Rsa(kp) => {
                let mut sig = vec![0; kp.public_modulus_len()];
                kp.sign(&RSA_PKCS1_SHA256, &rng, msg, &mut sig)
                    .map_err(|_| anyhow!("RS256 signing failed"))?;
                Ok(sig)
            }
        }
    }
}

/// RFC 7638 JWK thumbprint (SHA-256, base64url): a stable `kid`.
fn thumbprint(jwk: &Value) -> String {
    let members: &[&str] = match jwk.get("kty").and_then(Value::as_str) {
        Some("EC") => &["crv", "kty", "x", "y"],
        Some("OKP") => &["crv", "kty", "x"],
        _ => &["e", "kty", "n"],
    };
    // Members in lexicographic order, no whitespace: serde_json's map is ordered by key.
    let mut m = serde_json::Map::new();
    for k in members {
        if let Some(v) = jwk.get(*k) {
            m.insert((*k).into(), v.clone());
        }
    }
    let canonical = Value::Object(m).to_string();
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        canonical.as_bytes(),
    ))
}

/// The current signing key and every key still published.
pub struct KeyRing {
    state: RwLock<Arc<KeyState>>,
}

pub struct KeyState {
    pub current: Arc<SigningKey>,
    pub jwks: Value,
    /// Verification keys by kid: every published key (for introspection and userinfo).
    pub verifiers:
        std::collections::HashMap<String, (jsonwebtoken::DecodingKey, jsonwebtoken::Algorithm)>,
    /// Access tokens whose signature one of `verifiers` already checked, with their claims.
    /// Resource servers introspect the same token on every call it authorizes; an ES256
    /// verification is most of that call's CPU. Tied to this key set, so it is dropped with it
    /// (every reload); expiry is checked on every use and revocation is not cached at all.
    verified: std::sync::Mutex<HashMap<String, VerifiedAccessToken>>,
}

#[derive(Clone)]
struct VerifiedAccessToken {
    claims: Arc<Map<String, Value>>,
    exp: i64,
}

/// Most access tokens remembered as verified; past it, expired ones are dropped, then all.
const MAX_VERIFIED_TOKENS: usize = 4096;

impl KeyState {
    /// Claims of an access token (`typ` at+jwt) signed by one of our keys, issued by `issuer`,
    /// with `exp`, `iss`, `sub` and `jti`, not expired at `now`. Revocation is the caller's
    /// check.
    pub fn verify_access_token(
        &self,
        token: &str,
        issuer: &str,
        now: i64,
    ) -> Option<Arc<Map<String, Value>>> {
        if let Ok(cache) = self.verified.lock()
            && let Some(hit) = cache.get(token)
        {
            // Same rule as jsonwebtoken's, leeway 0: expired once `exp` is in the past.
            return (hit.exp >= now).then(|| hit.claims.clone());
        }
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.typ.as_deref() != Some("at+jwt") {
            return None;
        }
        let (key, alg) = header.kid.as_deref().and_then(|k| self.verifiers.get(k))?;
        let mut v = jsonwebtoken::Validation::new(*alg);
        v.set_issuer(&[issuer]);
        v.validate_aud = false;
        v.leeway = 0;
        v.set_required_spec_claims(&["exp", "iss", "sub", "jti"]);
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, key, &v)
            .ok()?
            .claims;
        let exp = claims.get("exp").and_then(Value::as_i64)?;
        let claims = Arc::new(claims);
        if let Ok(mut cache) = self.verified.lock() {
            if cache.len() >= MAX_VERIFIED_TOKENS {
                cache.retain(|_, t| t.exp >= now);
                if cache.len() >= MAX_VERIFIED_TOKENS {
                    cache.clear();
                }
            }
            cache.insert(
                token.to_owned(),
                VerifiedAccessToken {
                    claims: claims.clone(),
                    exp,
                },
            );
        }
        Some(claims)
    }
}

impl KeyRing {
    /// Load keys from the store; create the first key (or one of a newly configured algorithm).
    pub async fn load(
        store: &Store,
        alg: SigningAlg,
        publish_for: i64,
        now: i64,
    ) -> anyhow::Result<KeyRing> {
        let state = load_state(store, alg, publish_for, now, true).await?;
        Ok(KeyRing {
            state: RwLock::new(Arc::new(state)),
        })
    }

    pub async fn current(&self) -> Arc<KeyState> {
        self.state.read().await.clone()
    }

    /// Re-read keys (another instance or `consentry keys rotate` may have changed them).
    pub async fn reload(
        &self,
        store: &Store,
        alg: SigningAlg,
        publish_for: i64,
        now: i64,
    ) -> anyhow::Result<()> {
        let state = load_state(store, alg, publish_for, now, false).await?;
        *self.state.write().await = Arc::new(state);
        Ok(())
    }
}

async fn load_state(
    store: &Store,
    alg: SigningAlg,
    publish_for: i64,
    now: i64,
    create: bool,
) -> anyhow::Result<KeyState> {
    let mut rows = store.signing_keys().await?;
    let has_current = rows
        .iter()
        .any(|r| r.retired_at.is_none() && r.alg == alg.as_str());
    if !has_current {
        if !create {
            bail!("no current signing key of algorithm {}", alg.as_str());
        }
        rotate(store, alg, now).await?;
        rows = store.signing_keys().await?;
    }
    let mut current = None;
    let mut published = Vec::new();
    let mut verifiers = std::collections::HashMap::new();
    for r in &rows {
        let live = r.retired_at.is_none_or(|t| t + publish_for > now);
        if !live {
            continue;
        }
        let Some(a) = SigningAlg::parse(&r.alg) else {
            continue;
        };
        let der = STANDARD
            .decode(&r.private_key)
            .with_context(|| format!("signing key {} is corrupt", r.kid))?;
        let key = SigningKey::from_pkcs8(a, &der)?;
        published.push(key.public_jwk.clone());
        if let Ok(jwk) = serde_json::from_value::<jsonwebtoken::jwk::Jwk>(key.public_jwk.clone())
            && let Ok(dk) = jsonwebtoken::DecodingKey::from_jwk(&jwk)
        {
            let alg = match a {
                SigningAlg::ES256 => jsonwebtoken::Algorithm::ES256,
                SigningAlg::EdDSA => jsonwebtoken::Algorithm::EdDSA,
                SigningAlg::RS256 => jsonwebtoken::Algorithm::RS256,
            };
            verifiers.insert(key.kid.clone(), (dk, alg));
        }
        // Rows are newest first: the first current key of the configured algorithm signs.
        if current.is_none() && r.retired_at.is_none() && a == alg {
            current = Some(Arc::new(key));
        }
    }
    let current = current.ok_or_else(|| anyhow!("no current signing key"))?;
    Ok(KeyState {
        current,
        jwks: json!({ "keys": published }),
        verifiers,
        verified: std::sync::Mutex::new(HashMap::new()),
    })
}

/// Create a new current key; every other key is retired (and stays published until the tokens
/// it signed have expired).
pub async fn rotate(store: &Store, alg: SigningAlg, now: i64) -> anyhow::Result<String> {
    let (key, der) = SigningKey::generate(alg)?;
    store
        .insert_signing_key(
            &SigningKeyRow {
                kid: key.kid.clone(),
                alg: alg.as_str().into(),
                private_key: STANDARD.encode(der),
                created_at: now,
                retired_at: None,
            },
            true,
        )
        .await?;
    Ok(key.kid)
}

/// PEM-encode a PKCS#8 private key and its SubjectPublicKeyInfo (for `consentry dev`).
pub fn generate_pem_keypair(alg: SigningAlg) -> anyhow::Result<(String, String)> {
    let (key, der) = SigningKey::generate(alg)?;
    let spki = match &key.pair {
        Pair::Ec(kp) => kp.public_key().as_der().map(|d| d.as_ref().to_vec()),
        Pair::Ed(kp) => kp.public_key().as_der().map(|d| d.as_ref().to_vec()),
        Pair::Rsa(kp) => kp.public_key().as_der().map(|d| d.as_ref().to_vec()),
    }
    .map_err(|_| anyhow!("cannot encode the public key"))?;
    let private = pem::encode(&pem::Pem::new("PRIVATE KEY", der));
    let public = pem::encode(&pem::Pem::new("PUBLIC KEY", spki));
    Ok((private, public))
}
