//! Trusted Auth Token verification: the product asserts its logged-in user with a JWT, signed
//! either by its identity provider (keys from a JWKS URL) or by its own keypair (a PEM public key).
//!
//! `jsonwebtoken` checks the signature only; the payload is parsed and every claim rule is checked
//! here so each failure gets a precise message (which claim, what was expected).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::sync::Mutex;

use crate::config::jwt::{decoding_key_from_pem, normalize_typ};
use crate::config::{KeySource, TokenProfile};

/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub const LEEWAY_SECONDS: i64 = 60;
const MAX_TOKEN_BYTES: usize = 16 * 1024;
const JWKS_TTL: Duration = Duration::from_secs(600);
/// An unknown `kid` triggers a refetch at most this often (a flood of made-up kids must not
/// turn into a flood of requests to the identity provider).
const JWKS_REFETCH_MIN_INTERVAL: Duration = Duration::from_secs(10);
const JWKS_MAX_BYTES: usize = 512 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum TatError {
    /// The token is at fault (→ 401 `invalid_trusted_auth_token`).
    #[error("{0}")]
    Invalid(String),
    /// The identity provider's JWKS could not be fetched (→ 503).
    #[error("{0}")]
    Unavailable(String),
}

fn invalid(msg: impl Into<String>) -> TatError {
    TatError::Invalid(msg.into())
}

/// The claims Consentry reads from a verified token.
#[derive(Clone, Debug)]
pub struct VerifiedTat {
    pub user_id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub roles: Vec<String>,
    pub jti: Option<String>,
    pub exp: i64,
    /// The organization claim's value, [`crate::config::DEFAULT_ORGANIZATION`] without one.
    pub organization_id: String,
    pub organization_name: Option<String>,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: Option<String>,
    kid: Option<String>,
    /// RFC 7515 §4.1.11: extensions the verifier must understand. Consentry understands none.
    crit: Option<Value>,
    /// RFC 7515 §4.1.9: what kind of JWT this is (an access token, a logout token…).
    typ: Option<Value>,
}

/// The token's `typ` must be one the profile accepts: by default none or `JWT` (an ID token, a
/// product's own token), so that an access token (`at+jwt`), a logout token (`logout+jwt`) or
/// any other JWT the identity provider signs for the same audience does not log a user in.
fn check_typ(profile: &TokenProfile, typ: Option<&Value>) -> Result<(), TatError> {
    let expected = || match &profile.allowed_types {
        None => "no typ, or 'JWT'".to_owned(),
        Some(list) => format!(
            "one of {}",
            list.iter()
                .map(|t| format!("'{t}'"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let typ = match typ {
        None | Some(Value::Null) => {
            if profile.allowed_types.is_none() {
                return Ok(());
            }
            return Err(invalid(format!(
                "trusted auth token header has no typ; token profile '{}' requires {} (allowed_types)",
                profile.id,
                expected()
            )));
        }
        Some(Value::String(t)) => t,
        Some(_) => return Err(invalid("trusted auth token header typ must be a string")),
    };
    let n = normalize_typ(typ);
    let ok = match &profile.allowed_types {
        None => n == "jwt",
        Some(list) => list.contains(&n),
    };
    if ok {
        return Ok(());
    }
    Err(invalid(format!(
        "trusted auth token typ {} is not accepted by token profile '{}'; expected {} (allowed_types)",
        shown(Some(typ)),
        profile.id,
        expected()
    )))
}

struct CachedJwks {
    keys: JwkSet,
    fetched: Instant,
}

/// One JWKS URL: its keys and its last failure. Its lock makes fetches single-flight per URL
/// without holding up logins that use other identity providers.
#[derive(Default)]
struct JwksSlot {
    state: Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    cached: Option<Arc<CachedJwks>>,
    /// A failed fetch is not retried for `JWKS_FAILURE_BACKOFF`: while an identity provider is
    /// down, logins fail fast instead of each waiting for its own timeout.
    failed: Option<(Instant, String)>,
}

const JWKS_FAILURE_BACKOFF: Duration = Duration::from_secs(5);

pub struct TatVerifier {
    pem_keys: HashMap<String, DecodingKey>,
    http: reqwest::Client,
    jwks: std::sync::Mutex<HashMap<String, Arc<JwksSlot>>>,
}

impl TatVerifier {
    pub fn new(profiles: &[TokenProfile], http: reqwest::Client) -> anyhow::Result<TatVerifier> {
        let mut pem_keys = HashMap::new();
        for p in profiles {
            if let KeySource::Pem(pem) = &p.keys {
                let family = p
                    .algorithms
                    .first()
                    .map(|a| a.family())
                    .ok_or_else(|| anyhow!("no algorithms"))?;
                pem_keys.insert(p.id.clone(), decoding_key_from_pem(pem, family)?);
            }
        }
        Ok(TatVerifier {
            pem_keys,
            http,
            jwks: std::sync::Mutex::new(HashMap::new()),
        })
    }

    pub async fn verify(
        &self,
        profile: &TokenProfile,
        token: &str,
        now: i64,
    ) -> Result<VerifiedTat, TatError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(invalid("trusted auth token is empty"));
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(invalid(format!(
                "trusted auth token is larger than {MAX_TOKEN_BYTES} bytes"
            )));
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid(
                "trusted auth token is not a JWS compact serialization (header.payload.signature)",
            ));
        };
        let header: RawHeader = URL_SAFE_NO_PAD
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| invalid("trusted auth token header is not base64url-encoded JSON"))?;
        if header.crit.is_some() {
            return Err(invalid(
                "trusted auth token header has a crit parameter; no JWS extensions (RFC 7515 §4.1.11) are supported",
            ));
        }
        check_typ(profile, header.typ.as_ref())?;
        let alg_name = header.alg.unwrap_or_default();
        let allowed: Vec<&str> = profile.algorithms.iter().map(alg_str).collect();
        let Some(alg) = profile
            .algorithms
            .iter()
            .copied()
            .find(|a| alg_str(a) == alg_name)
        else {
            return Err(invalid(format!(
                "trusted auth token alg '{alg_name}' is not allowed for token profile '{}'; expected one of {}",
                profile.id,
                allowed.join(", ")
            )));
        };

        let key = match &profile.keys {
            KeySource::Pem(_) => self
                .pem_keys
                .get(&profile.id)
                .cloned()
                .ok_or_else(|| invalid("token profile has no key"))?,
            KeySource::Jwks(url) => self.jwks_key(url, header.kid.as_deref(), alg).await?,
        };

        if key.family() != alg.family() {
            return Err(invalid(format!(
                "trusted auth token alg '{alg_name}' does not match the key type of token profile '{}'",
                profile.id
            )));
        }
        // Only the signature goes through jsonwebtoken: its own claim parsing turns a claim of an
        // unexpected type (a string exp, an object sub, a negative number) into an opaque JSON
        // error, where the rules below name the claim.
        let message = &token[..h.len() + 1 + p.len()];
        let sig_ok = jsonwebtoken::crypto::verify(sig, message.as_bytes(), &key, alg)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                match e.kind() {
                    ErrorKind::Base64(_) => {
                        invalid("trusted auth token signature is not base64url-encoded")
                    }
                    other => invalid(format!(
                        "trusted auth token signature cannot be checked with token profile '{}' key: {other:?}",
                        profile.id
                    )),
                }
            })?;
        if !sig_ok {
            return Err(invalid(format!(
                "trusted auth token signature does not verify with token profile '{}' key",
                profile.id
            )));
        }
        let claims: Map<String, Value> = URL_SAFE_NO_PAD
            .decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| {
                invalid("trusted auth token payload is not a base64url-encoded JSON object")
            })?;
        check_claims(profile, &claims, now)
    }

    async fn jwks_key(
        &self,
        url: &str,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<DecodingKey, TatError> {
        let cached = self.cached_jwks(url, false).await?;
        if let Some(k) = select_jwk(&cached.keys, kid, alg)? {
            return Ok(k);
        }
        // Unknown kid: the identity provider may have rotated. Refetch once (rate-limited).
        if cached.fetched.elapsed() >= JWKS_REFETCH_MIN_INTERVAL {
            let fresh = self.cached_jwks(url, true).await?;
            if let Some(k) = select_jwk(&fresh.keys, kid, alg)? {
                return Ok(k);
            }
        }
        Err(invalid(match kid {
            Some(k) => format!("trusted auth token kid '{k}' is not in the JWKS at {url}"),
            None => format!(
                "trusted auth token has no kid and the JWKS at {url} has no single {} key",
                alg_str(&alg)
            ),
        }))
    }

    async fn cached_jwks(&self, url: &str, force: bool) -> Result<Arc<CachedJwks>, TatError> {
        let slot = {
            let Ok(mut slots) = self.jwks.lock() else {
                return Err(TatError::Unavailable("JWKS cache unavailable".into()));
            };
            slots.entry(url.to_owned()).or_default().clone()
        };
        let mut st = slot.state.lock().await;
        if let Some(c) = &st.cached {
            let fresh_enough = c.fetched.elapsed() < JWKS_TTL;
            // A concurrent request may have refetched while we waited for the lock.
            let just_fetched = c.fetched.elapsed() < JWKS_REFETCH_MIN_INTERVAL;
            if (!force && fresh_enough) || (force && just_fetched) {
                return Ok(c.clone());
            }
        }
        if let Some((at, why)) = &st.failed
            && at.elapsed() < JWKS_FAILURE_BACKOFF
        {
            return Err(TatError::Unavailable(why.clone()));
        }
        match self.fetch_jwks(url).await {
            Ok(keys) => {
                let entry = Arc::new(CachedJwks {
                    keys,
                    fetched: Instant::now(),
                });
                st.cached = Some(entry.clone());
                st.failed = None;
                Ok(entry)
            }
            Err(e) => {
                st.failed = Some((Instant::now(), e.to_string()));
                // Keys fetched earlier stay usable while the provider is briefly down.
                match &st.cached {
                    Some(c) if !force && c.fetched.elapsed() < JWKS_TTL * 6 => Ok(c.clone()),
                    _ => Err(e),
                }
            }
        }
    }

    async fn fetch_jwks(&self, url: &str) -> Result<JwkSet, TatError> {
        // The message reaches the browser: no credentials or query string of the URL in it.
        let shown = crate::store::redact(url.split(['?', '#']).next().unwrap_or(url));
        let unavailable =
            |why: String| TatError::Unavailable(format!("cannot fetch the JWKS at {shown}: {why}"));
        let mut resp = self
            .http
            .get(url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(unavailable(format!("HTTP {}", resp.status())));
        }
        let too_large = || {
            unavailable(format!(
                "the response is larger than {JWKS_MAX_BYTES} bytes"
            ))
        };
        if resp
            .content_length()
            .is_some_and(|n| n > JWKS_MAX_BYTES as u64)
        {
            return Err(too_large());
        }
        // Read chunk by chunk and stop at the cap: a body without Content-Length (chunked) must
        // not be read on until the timeout.
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| unavailable(e.to_string()))? {
            if body.len() + chunk.len() > JWKS_MAX_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| unavailable(format!("not a JWK Set: {e}")))
    }
}

fn select_jwk(
    set: &JwkSet,
    kid: Option<&str>,
    alg: Algorithm,
) -> Result<Option<DecodingKey>, TatError> {
    let usable = |j: &&jsonwebtoken::jwk::Jwk| {
        let use_ok =
            !matches!(j.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature);
        let alg_ok = j
            .common
            .key_algorithm
            .is_none_or(|ka| ka.to_string() == alg_str(&alg));
        use_ok && alg_ok
    };
    let candidates: Vec<_> = match kid {
        Some(k) => {
            let named: Vec<_> = set
                .keys
                .iter()
                .filter(|j| j.common.key_id.as_deref() == Some(k))
                .collect();
            let usable_named: Vec<_> = named.iter().copied().filter(usable).collect();
            if usable_named.is_empty()
                && let Some(j) = named.first()
            {
                // The kid is published, but not as a key for this alg: refetching cannot help.
                let what = match (&j.common.public_key_use, &j.common.key_algorithm) {
                    (Some(u), _) if *u != PublicKeyUse::Signature => {
                        "it is not a signature key (use is not 'sig')".to_owned()
                    }
                    (_, Some(ka)) => format!("it is for alg '{ka}'"),
                    _ => "it is not usable".to_owned(),
                };
                return Err(invalid(format!(
                    "trusted auth token kid '{k}' names a JWKS key that cannot verify alg '{}': {what}",
                    alg_str(&alg)
                )));
            }
            usable_named
        }
        None => set.keys.iter().filter(usable).collect(),
    };
    if candidates.len() != 1 {
        return Ok(None);
    }
    let jwk = candidates[0];
    let key =
        DecodingKey::from_jwk(jwk).map_err(|e| invalid(format!("JWKS key is unusable: {e}")))?;
    if key.family() != alg.family() {
        return Err(invalid(format!(
            "trusted auth token alg '{}' does not match the type of JWKS key '{}'",
            alg_str(&alg),
            jwk.common.key_id.as_deref().unwrap_or("")
        )));
    }
    Ok(Some(key))
}

pub fn alg_str(a: &Algorithm) -> &'static str {
    match a {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
        _ => "unknown",
    }
}

fn num_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, TatError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .map(Some)
            .ok_or_else(|| {
                invalid(format!(
                    "trusted auth token claim '{name}' must be a NumericDate"
                ))
            }),
        Some(_) => Err(invalid(format!(
            "trusted auth token claim '{name}' must be a NumericDate (seconds)"
        ))),
    }
}

fn check_claims(
    profile: &TokenProfile,
    c: &Map<String, Value>,
    now: i64,
) -> Result<VerifiedTat, TatError> {
    let pid = &profile.id;
    match c.get("iss").and_then(Value::as_str) {
        Some(iss) if iss == profile.issuer => {}
        got => {
            return Err(invalid(format!(
                "trusted auth token iss {} does not match token profile '{pid}'; expected '{}'",
                shown(got),
                profile.issuer
            )));
        }
    }
    let aud_ok = match c.get("aud") {
        Some(Value::String(a)) => *a == profile.audience,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(&profile.audience)),
        _ => false,
    };
    if !aud_ok {
        return Err(invalid(format!(
            "trusted auth token aud {} does not include '{}' (token profile '{pid}')",
            c.get("aud")
                .map(|v| v.to_string())
                .unwrap_or_else(|| "(missing)".into()),
            profile.audience
        )));
    }
    let exp = num_claim(c, "exp")?
        .ok_or_else(|| invalid("trusted auth token has no exp claim; an expiry is required"))?;
    // Saturating arithmetic throughout: NumericDates are the token's, so any i64 may arrive.
    if exp.saturating_add(LEEWAY_SECONDS) <= now {
        return Err(invalid(format!(
            "trusted auth token expired: exp {exp} is before now ({now}) by more than the {LEEWAY_SECONDS} s leeway; mint a fresh one"
        )));
    }
    if let Some(nbf) = num_claim(c, "nbf")?
        && nbf > now.saturating_add(LEEWAY_SECONDS)
    {
        return Err(invalid(format!(
            "trusted auth token nbf {nbf} is in the future (now {now}): not valid yet"
        )));
    }
    let iat = num_claim(c, "iat")?;
    if let Some(iat) = iat
        && iat > now.saturating_add(LEEWAY_SECONDS)
    {
        return Err(invalid(format!(
            "trusted auth token iat {iat} is in the future (now {now})"
        )));
    }
    let start = iat.unwrap_or(now).min(now);
    let lifetime = exp.saturating_sub(start);
    if lifetime > profile.max_lifetime_seconds {
        return Err(invalid(format!(
            "trusted auth token lifetime {lifetime}s (from iat to exp) exceeds max_lifetime_seconds {} of token profile '{pid}'",
            profile.max_lifetime_seconds
        )));
    }
    let claims = &profile.claims;
    let user_id = match claim(c, &claims.user_id) {
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 255 => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => {
            return Err(invalid(format!(
                "trusted auth token has no usable user id claim '{}' (a non-empty string of at most 255 bytes)",
                claims.user_id
            )));
        }
    };
    let text = |name: &str| match claim(c, name) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.chars().take(320).collect::<String>()),
        _ => None,
    };
    let roles = match claim(c, &claims.roles) {
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Some(Value::String(s)) => s
            .split([' ', ','])
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    let jti = match claim(c, &claims.jti) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 255 => Some(s.clone()),
        Some(_) => {
            return Err(invalid(format!(
                "trusted auth token {} must be a string of at most 255 bytes",
                claims.jti
            )));
        }
    };
    if jti.is_none() && profile.single_use_jti {
        // Without a jti a token cannot be used once only: a leaked one would attest again and
        // again until it expires.
        return Err(invalid(format!(
            "trusted auth token has no {} claim; a jti is required because token profile '{pid}' has single_use_jti = true (set single_use_jti = false for an identity provider whose tokens carry none, or map claims.jti to its unique token id)",
            claims.jti
        )));
    }
    let organization_id = match claims.organization_id.as_deref() {
        None => crate::config::DEFAULT_ORGANIZATION.to_owned(),
        Some(name) => match claim(c, name) {
            Some(Value::String(s))
                if !s.trim().is_empty() && s.len() <= 255 && !s.chars().any(char::is_control) =>
            {
                s.clone()
            }
            Some(Value::Number(n)) => n.to_string(),
            None | Some(Value::Null) if !profile.require_organization => {
                crate::config::DEFAULT_ORGANIZATION.to_owned()
            }
            None | Some(Value::Null) => {
                return Err(invalid(format!(
                    "trusted auth token has no organization claim '{name}'; token profile '{pid}' requires one (require_organization)"
                )));
            }
            Some(_) => {
                return Err(invalid(format!(
                    "trusted auth token organization claim '{name}' must be a non-empty string of at most 255 bytes without control characters"
                )));
            }
        },
    };
    let organization_name = claims.organization_name.as_deref().and_then(text);
    Ok(VerifiedTat {
        user_id,
        email: text(&claims.email),
        name: text(&claims.name),
        roles,
        jti,
        exp,
        organization_id,
        organization_name,
    })
}

/// A claim by name, or by RFC 6901 JSON Pointer when the name starts with `/`
/// (`/realm_access/roles`: `~1` is `/`, `~0` is `~`). Hand-written: `serde_json`'s pointer needs
/// a `Value` around the claims map, which would be a copy of the whole token per attest.
fn claim<'a>(c: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    let Some(pointer) = name.strip_prefix('/') else {
        return c.get(name);
    };
    let mut tokens = pointer
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"));
    let first = tokens.next()?;
    let mut at = c.get(&first)?;
    for t in tokens {
        at = match at {
            Value::Object(m) => m.get(&t)?,
            Value::Array(list) => list.get(t.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(at)
}

fn shown(v: Option<&str>) -> String {
    match v {
        Some(s) => format!("'{}'", s.chars().take(120).collect::<String>()),
        None => "(missing)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::claim;
    use serde_json::{Map, Value, json};

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn claims_by_name_and_by_json_pointer() {
        let c = claims(json!({
            "sub": "u1",
            "https://example.com/roles": ["admin"],
            "realm_access": {"roles": ["r1", "r2"]},
            "a/b": {"~x": 7},
            "list": [{"id": "first"}],
        }));
        assert_eq!(claim(&c, "sub"), Some(&json!("u1")));
        // A namespaced claim is a plain name: dots and slashes after the scheme are not paths.
        assert_eq!(
            claim(&c, "https://example.com/roles"),
            Some(&json!(["admin"]))
        );
        assert_eq!(claim(&c, "/realm_access/roles"), Some(&json!(["r1", "r2"])));
        assert_eq!(claim(&c, "/a~1b/~0x"), Some(&json!(7)));
        assert_eq!(claim(&c, "/list/0/id"), Some(&json!("first")));
        for missing in [
            "/realm_access/nope",
            "/sub/x",
            "/list/9/id",
            "/list/x",
            "/nope",
            "nope",
        ] {
            assert_eq!(claim(&c, missing), None, "{missing}");
        }
    }
}
