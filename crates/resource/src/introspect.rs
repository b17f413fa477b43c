//! Revocation: ask the issuer's introspection endpoint (RFC 7662) whether a signature-valid token
//! is still active, authenticated with the resource's `introspection_secret`. Positive answers
//! are cached briefly (never past the token's expiry); negative answers are never cached, since
//! a revoked token stays revoked and is refused again at the cost of one request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::AuthError;

/// Cached answers kept at most; past it, expired ones are dropped, then all.
const MAX_CACHED: usize = 50_000;

pub(crate) struct Introspection {
    url: String,
    secret: String,
    http: reqwest::Client,
    ttl: Duration,
    /// jti → when the "active" answer stops counting.
    active: Mutex<HashMap<String, Instant>>,
}

impl Introspection {
    pub fn new(url: String, secret: String, http: reqwest::Client, ttl: Duration) -> Self {
        Introspection {
            url,
            secret,
            http,
            ttl,
            active: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, jti: &str) -> bool {
        let map = match self.active.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        map.get(jti).is_some_and(|until| Instant::now() < *until)
    }

    fn remember(&self, jti: &str, seconds_left: i64) {
        let ttl = self.ttl.min(Duration::from_secs(
            u64::try_from(seconds_left).unwrap_or(0),
        ));
        if ttl.is_zero() {
            return;
        }
        let mut map = match self.active.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if map.len() >= MAX_CACHED {
            let now = Instant::now();
            map.retain(|_, until| *until > now);
            if map.len() >= MAX_CACHED {
                map.clear();
            }
        }
        map.insert(jti.to_owned(), Instant::now() + ttl);
    }

    /// `Ok` when the issuer says the token is active. `seconds_left` bounds the cache entry.
    pub async fn check(&self, token: &str, jti: &str, seconds_left: i64) -> Result<(), AuthError> {
        if self.cached(jti) {
            return Ok(());
        }
        let unavailable = |why: String| {
            AuthError::Unavailable(format!(
                "the issuer's introspection endpoint {} could not say whether the token was revoked: {why}",
                self.url
            ))
        };
        let resp = self
            .http
            .post(&self.url)
            .bearer_auth(&self.secret)
            .form(&[("token", token)])
            .send()
            .await
            .map_err(|e| unavailable(format!("request failed: {e}")))?;
        let status = resp.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(unavailable(
                "it refused this resource's credentials (HTTP 401); check the introspection secret against the issuer's resources[].introspection_secret".into(),
            ));
        }
        if status != reqwest::StatusCode::OK {
            return Err(unavailable(format!("it answered HTTP {}", status.as_u16())));
        }
        let body: Value = resp
            .json()
            .await
            .map_err(|e| unavailable(format!("the answer is not JSON: {e}")))?;
        match body.get("active").and_then(Value::as_bool) {
            Some(true) => {
                self.remember(jti, seconds_left);
                Ok(())
            }
            Some(false) => Err(AuthError::Revoked(
                "the issuer reports this token is no longer active (it, or the grant it belongs to, was revoked); authorize again".into(),
            )),
            None => Err(unavailable("the answer has no boolean \"active\"".into())),
        }
    }
}
