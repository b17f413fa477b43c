//! Why a request was refused: one enum with a stable machine code per reason, and the HTTP answer
//! (status, RFC 6750 challenge, JSON body) it becomes.

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::json;

use crate::challenge::{Challenge, ChallengeInfo};

/// Why a bearer token (or its absence) was refused. [`AuthError::code`] is stable: match on it,
/// not on the description.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` credential on the request.
    #[error("{0}")]
    MissingToken(String),
    /// The `Authorization` header is present but not a well-formed bearer credential (RFC 6750
    /// `invalid_request`, HTTP 400).
    #[error("{0}")]
    MalformedRequest(String),
    /// The token is not a JWT at all (segments, base64url, JSON).
    #[error("{0}")]
    MalformedToken(String),
    /// The JWT is not an RFC 9068 access token (`typ` is not `at+jwt`), e.g. an ID token.
    #[error("{0}")]
    WrongTokenType(String),
    /// `alg` is not on the allow-list (`none` and HMAC never are) or does not match the key.
    #[error("{0}")]
    AlgorithmNotAllowed(String),
    /// The header names a `crit` extension this verifier does not implement.
    #[error("{0}")]
    UnsupportedCriticalHeader(String),
    /// No key in the issuer's JWKS has the token's `kid` (also after refetching it).
    #[error("{0}")]
    UnknownKey(String),
    /// The signature does not verify with the issuer's key.
    #[error("{0}")]
    BadSignature(String),
    /// `iss` is not the configured issuer.
    #[error("{0}")]
    WrongIssuer(String),
    /// `aud` does not contain this resource (a token for another resource server).
    #[error("{0}")]
    WrongAudience(String),
    /// `exp` has passed (beyond the leeway).
    #[error("{0}")]
    Expired(String),
    /// `nbf` (or `iat`) is in the future (beyond the leeway).
    #[error("{0}")]
    NotYetValid(String),
    /// A claim RFC 9068 requires is missing or has the wrong JSON type.
    #[error("{0}")]
    BadClaim(String),
    /// The issuer's introspection endpoint says the token is no longer active (revoked grant or
    /// token, deleted client…).
    #[error("{0}")]
    Revoked(String),
    /// The token is valid but lacks scopes this request needs (HTTP 403).
    #[error("{description}")]
    InsufficientScope {
        /// The scopes the request needs (all of them, not only the missing ones).
        required: Vec<String>,
        /// A sentence naming the missing scopes.
        description: String,
    },
    /// The issuer could not be asked (JWKS or introspection unreachable or answering garbage):
    /// the token can be neither accepted nor refused (HTTP 503; retry later).
    #[error("{0}")]
    Unavailable(String),
    /// A [`Caller`](crate::Caller) was asked for on a route that [`ProtectedResource::layer`](crate::ProtectedResource::layer)
    /// does not cover: a wiring mistake, answered 500 rather than letting the request through.
    #[error("{0}")]
    LayerMissing(String),
}

impl AuthError {
    /// The stable machine code of this error (also the `error` member of the JSON body).
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::MissingToken(_) => "missing_token",
            AuthError::MalformedRequest(_) => "invalid_request",
            AuthError::MalformedToken(_) => "malformed_token",
            AuthError::WrongTokenType(_) => "wrong_token_type",
            AuthError::AlgorithmNotAllowed(_) => "algorithm_not_allowed",
            AuthError::UnsupportedCriticalHeader(_) => "unsupported_critical_header",
            AuthError::UnknownKey(_) => "unknown_key",
            AuthError::BadSignature(_) => "bad_signature",
            AuthError::WrongIssuer(_) => "wrong_issuer",
            AuthError::WrongAudience(_) => "wrong_audience",
            AuthError::Expired(_) => "token_expired",
            AuthError::NotYetValid(_) => "token_not_yet_valid",
            AuthError::BadClaim(_) => "invalid_claim",
            AuthError::Revoked(_) => "token_revoked",
            AuthError::InsufficientScope { .. } => "insufficient_scope",
            AuthError::Unavailable(_) => "temporarily_unavailable",
            AuthError::LayerMissing(_) => "layer_missing",
        }
    }

    /// The RFC 6750 §3.1 `error` for the challenge; `None` when no credential was presented
    /// (the challenge then carries no error, as RFC 6750 §3.1 asks).
    pub fn oauth_error(&self) -> Option<&'static str> {
        match self {
            AuthError::MissingToken(_) | AuthError::Unavailable(_) | AuthError::LayerMissing(_) => {
                None
            }
            AuthError::MalformedRequest(_) => Some("invalid_request"),
            AuthError::InsufficientScope { .. } => Some("insufficient_scope"),
            _ => Some("invalid_token"),
        }
    }

    /// The HTTP status for this error (400, 401, 403 or 503).
    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::MalformedRequest(_) => StatusCode::BAD_REQUEST,
            AuthError::InsufficientScope { .. } => StatusCode::FORBIDDEN,
            AuthError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AuthError::LayerMissing(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// The human-readable description (names the claim or value at fault and what was expected).
    pub fn description(&self) -> &str {
        match self {
            AuthError::InsufficientScope { description, .. } => description,
            AuthError::MissingToken(d)
            | AuthError::MalformedRequest(d)
            | AuthError::MalformedToken(d)
            | AuthError::WrongTokenType(d)
            | AuthError::AlgorithmNotAllowed(d)
            | AuthError::UnsupportedCriticalHeader(d)
            | AuthError::UnknownKey(d)
            | AuthError::BadSignature(d)
            | AuthError::WrongIssuer(d)
            | AuthError::WrongAudience(d)
            | AuthError::Expired(d)
            | AuthError::NotYetValid(d)
            | AuthError::BadClaim(d)
            | AuthError::Revoked(d)
            | AuthError::Unavailable(d)
            | AuthError::LayerMissing(d) => d,
        }
    }
}

/// An [`AuthError`] together with what the challenge must point at: an axum response.
#[derive(Debug, Clone)]
pub struct Rejection {
    /// What went wrong.
    pub error: AuthError,
    /// `None` where no challenge applies (a wiring mistake).
    info: Option<Arc<ChallengeInfo>>,
    /// Scopes to name in a 401 challenge (what the route needs); a 403 names its own.
    scope: Vec<String>,
}

impl Rejection {
    pub(crate) fn new(
        error: AuthError,
        info: Option<Arc<ChallengeInfo>>,
        scope: Vec<String>,
    ) -> Self {
        Rejection { error, info, scope }
    }

    /// The `WWW-Authenticate` value this rejection sends (`None` for 500/503 answers).
    pub fn www_authenticate(&self) -> Option<String> {
        let info = self.info.as_ref()?;
        let scope: &[String] = match &self.error {
            AuthError::InsufficientScope { required, .. } => required,
            AuthError::Unavailable(_) | AuthError::LayerMissing(_) => return None,
            _ => &self.scope,
        };
        let challenge = Challenge {
            resource_metadata: &info.metadata_url,
            scope,
            error: self.error.oauth_error(),
            error_description: match self.error {
                AuthError::MissingToken(_) => None,
                _ => Some(self.error.description()),
            },
        };
        Some(challenge.to_string())
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error.code(), self.error.description())
    }
}

impl std::error::Error for Rejection {}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        // Why the issuer could not be reached (its URLs, the HTTP client's error) is for the
        // server's log, not for whoever sent the request.
        let description = match &self.error {
            AuthError::Unavailable(d) => {
                tracing::warn!("token not verified: {d}");
                "the token could not be verified: the authorization server is unreachable; try again shortly"
            }
            other => other.description(),
        };
        let body = json!({
            "error": self.error.code(),
            "error_description": description,
        });
        let mut resp = (self.error.status(), axum::Json(body)).into_response();
        let headers = resp.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(value) = self
            .www_authenticate()
            .and_then(|v| HeaderValue::from_str(&v).ok())
        {
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        if let AuthError::Unavailable(_) = self.error {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        resp
    }
}

/// A mistake in the configuration given to [`ProtectedResource::builder`](crate::ProtectedResource::builder).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);
