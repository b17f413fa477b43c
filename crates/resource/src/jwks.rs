//! The issuer's signing keys, fetched from its JWKS and cached. A token signed with a key we do
//! not know yet (the issuer rotated) triggers a refetch; refetches are single-flight (one request
//! at a time, the others wait for its result) and rate-limited, so garbage `kid`s cannot turn
//! into a flood of requests to the issuer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use crate::error::AuthError;
use crate::verify::{is_asymmetric, shown};

/// A JWKS document larger than this is not a key set.
const MAX_JWKS_BYTES: usize = 256 * 1024;

#[derive(Clone)]
pub(crate) struct Key {
    pub key: DecodingKey,
    /// The algorithm the key is for: its JWK `alg`, or the only one its type allows.
    pub algs: Vec<Algorithm>,
}

#[derive(Default)]
struct KeySet {
    keys: HashMap<String, Key>,
    fetched_at: Option<Instant>,
}

struct FetchState {
    last_attempt: Option<Instant>,
    last_error: Option<String>,
}

pub(crate) struct Jwks {
    url: String,
    http: reqwest::Client,
    set: RwLock<Arc<KeySet>>,
    fetch: tokio::sync::Mutex<FetchState>,
    refetch_interval: Duration,
    max_age: Duration,
    fetches: AtomicU64,
}

impl Jwks {
    pub fn new(
        url: String,
        http: reqwest::Client,
        refetch_interval: Duration,
        max_age: Duration,
    ) -> Jwks {
        Jwks {
            url,
            http,
            set: RwLock::new(Arc::new(KeySet::default())),
            fetch: tokio::sync::Mutex::new(FetchState {
                last_attempt: None,
                last_error: None,
            }),
            refetch_interval,
            max_age,
            fetches: AtomicU64::new(0),
        }
    }

    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    fn snapshot(&self) -> Arc<KeySet> {
        // A poisoned lock only means a writer panicked mid-swap of an Arc: the value is whole.
        match self.set.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn store(&self, set: KeySet) {
        let set = Arc::new(set);
        match self.set.write() {
            Ok(mut g) => *g = set,
            Err(p) => *p.into_inner() = set,
        }
    }

    fn fresh(&self, set: &KeySet) -> bool {
        set.fetched_at.is_some_and(|t| t.elapsed() < self.max_age)
    }

    /// The key a token names (`kid`); a token without `kid` may use the only key of the set.
    pub async fn key(&self, kid: Option<&str>) -> Result<Key, AuthError> {
        let set = self.snapshot();
        if self.fresh(&set)
            && let Some(k) = lookup(&set, kid)
        {
            return Ok(k);
        }
        let mut state = self.fetch.lock().await;
        // Whoever held the lock before us may have fetched what we need.
        let set = self.snapshot();
        if self.fresh(&set)
            && let Some(k) = lookup(&set, kid)
        {
            return Ok(k);
        }
        if let Some(t) = state.last_attempt
            && t.elapsed() < self.refetch_interval
        {
            if let Some(k) = lookup(&set, kid) {
                return Ok(k);
            }
            if set.fetched_at.is_none() {
                return Err(self.unavailable(state.last_error.as_deref()));
            }
            return Err(self.unknown(
                kid,
                &set,
                Some(self.refetch_interval.saturating_sub(t.elapsed())),
            ));
        }
        state.last_attempt = Some(Instant::now());
        self.fetches.fetch_add(1, Ordering::Relaxed);
        match self.download().await {
            Ok(fetched) => {
                state.last_error = None;
                let found = lookup(&fetched, kid);
                let unknown = self.unknown(kid, &fetched, None);
                self.store(fetched);
                found.ok_or(unknown)
            }
            Err(e) => {
                tracing::warn!(url = %self.url, "fetching the issuer's JWKS failed: {e}");
                state.last_error = Some(e);
                // Keys we already had stay usable while the issuer is briefly unreachable.
                lookup(&set, kid).ok_or_else(|| self.unavailable(state.last_error.as_deref()))
            }
        }
    }

    fn unavailable(&self, why: Option<&str>) -> AuthError {
        AuthError::Unavailable(format!(
            "the issuer's signing keys could not be fetched from {}: {}",
            self.url,
            why.unwrap_or("unknown error")
        ))
    }

    fn unknown(&self, kid: Option<&str>, set: &KeySet, wait: Option<Duration>) -> AuthError {
        let known: Vec<&str> = set.keys.keys().map(String::as_str).collect();
        let what = match kid {
            Some(k) => format!("kid '{}' is not in the issuer's JWKS", shown(k)),
            None => format!(
                "the token has no kid and the issuer's JWKS has {} keys",
                known.len()
            ),
        };
        let when = match wait {
            Some(w) => format!(
                "; the JWKS was fetched moments ago, next refetch allowed in {}s",
                w.as_secs() + 1
            ),
            None => String::new(),
        };
        AuthError::UnknownKey(format!("{what} ({}){when}", self.url))
    }

    async fn download(&self) -> Result<KeySet, String> {
        let mut resp = self
            .http
            .get(&self.url)
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        if resp.status() != reqwest::StatusCode::OK {
            return Err(format!("answered HTTP {}", resp.status().as_u16()));
        }
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
        {
            return Err(format!("the document is over {MAX_JWKS_BYTES} bytes"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("reading the body failed: {e}"))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_JWKS_BYTES {
                return Err(format!("the document is over {MAX_JWKS_BYTES} bytes"));
            }
        }
        let doc: Value =
            serde_json::from_slice(&body).map_err(|e| format!("the body is not JSON: {e}"))?;
        let keys = parse_jwks(&doc)?;
        Ok(KeySet {
            keys,
            fetched_at: Some(Instant::now()),
        })
    }
}

fn lookup(set: &KeySet, kid: Option<&str>) -> Option<Key> {
    match kid {
        Some(k) => set.keys.get(k).cloned(),
        None if set.keys.len() == 1 => set.keys.values().next().cloned(),
        None => None,
    }
}

/// Signature keys of a JWKS by `kid`. Keys this verifier cannot or must not use (symmetric,
/// encryption-only, unknown types) are skipped, not fatal: an issuer may publish more than we use.
pub(crate) fn parse_jwks(doc: &Value) -> Result<HashMap<String, Key>, String> {
    let list = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("the document has no \"keys\" array")?;
    let mut out = HashMap::new();
    for jwk in list {
        if let Some(u) = jwk.get("use").and_then(Value::as_str)
            && u != "sig"
        {
            continue;
        }
        let kid = jwk
            .get("kid")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        if let Some(key) = parse_jwk(jwk) {
            out.insert(kid, key);
        }
    }
    Ok(out)
}

fn parse_jwk(jwk: &Value) -> Option<Key> {
    let s = |name: &str| jwk.get(name).and_then(Value::as_str);
    let declared = s("alg").map(|a| a.parse::<Algorithm>().ok());
    let (key, family): (DecodingKey, &[Algorithm]) = match (s("kty")?, s("crv")) {
        ("EC", Some("P-256")) => (
            DecodingKey::from_ec_components(s("x")?, s("y")?).ok()?,
            &[Algorithm::ES256],
        ),
        ("EC", Some("P-384")) => (
            DecodingKey::from_ec_components(s("x")?, s("y")?).ok()?,
            &[Algorithm::ES384],
        ),
        ("OKP", Some("Ed25519")) => (
            DecodingKey::from_ed_components(s("x")?).ok()?,
            &[Algorithm::EdDSA],
        ),
        ("RSA", _) => (
            DecodingKey::from_rsa_components(s("n")?, s("e")?).ok()?,
            &[
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ],
        ),
        _ => return None,
    };
    let algs: Vec<Algorithm> = match declared {
        // An `alg` we do not know, or one that contradicts the key type: skip the key.
        Some(None) => return None,
        Some(Some(a)) if !family.contains(&a) => return None,
        Some(Some(a)) => vec![a],
        None => family.to_vec(),
    };
    algs.iter()
        .all(|a| is_asymmetric(*a))
        .then_some(Key { key, algs })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
    const Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

    #[test]
    fn keeps_signature_keys_and_skips_the_rest() {
        let doc = json!({"keys": [
            {"kty": "EC", "crv": "P-256", "x": X, "y": Y, "kid": "ec", "alg": "ES256", "use": "sig"},
            {"kty": "EC", "crv": "P-256", "x": X, "y": Y, "kid": "enc", "use": "enc"},
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac", "alg": "HS256"},
            {"kty": "EC", "crv": "P-256", "x": X, "y": Y, "kid": "lies", "alg": "HS256"},
            {"kty": "EC", "crv": "P-256", "x": X, "y": Y, "kid": "rsa-alg-on-ec", "alg": "RS256"},
            {"kty": "EC", "crv": "secp256k1", "x": X, "y": Y, "kid": "k1"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "rsa"},
            {"kid": "no-kty"},
            "not an object"
        ]});
        let keys = parse_jwks(&doc).unwrap();
        let mut kids: Vec<&str> = keys.keys().map(String::as_str).collect();
        kids.sort();
        assert_eq!(kids, ["ec", "rsa"]);
        assert_eq!(keys["ec"].algs, vec![Algorithm::ES256]);
        assert!(keys["rsa"].algs.contains(&Algorithm::PS256));
    }

    #[test]
    fn a_document_without_keys_is_an_error() {
        assert!(parse_jwks(&json!({})).is_err());
        assert!(parse_jwks(&json!({"keys": {}})).is_err());
        assert!(parse_jwks(&json!({"keys": []})).unwrap().is_empty());
    }
}
