//! Why a request was refused: one enum with a stable machine code per reason, and the HTTP answer
//! (status, RFC 6750 challenge, JSON body) it becomes.

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use consentry_protocol::ErrorCode;
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

/// The codes this crate adds to the protocol's ([`ErrorCode`]): RFC 6750 has one
/// `invalid_token` for every bad token, and a resource server's operator needs to know which rule
/// refused it. These appear as the JSON body's `error` (the challenge keeps RFC 6750's code, see
/// [`AuthError::oauth_error`]); `consentry/server` (the TypeScript verifier) uses the same names,
/// and both are held to them by the shared table `tests/forged_tokens.json`.
pub mod extension_codes {
    /// No bearer token in the request.
    pub const MISSING_TOKEN: &str = "missing_token";
    /// Not a JWT (three base64url parts, JSON header and claims).
    pub const MALFORMED_TOKEN: &str = "malformed_token";
    /// The JWT `typ` is not `at+jwt` (RFC 9068).
    pub const WRONG_TOKEN_TYPE: &str = "wrong_token_type";
    /// The JWT `alg` is not one the authorization server signs with.
    pub const ALGORITHM_NOT_ALLOWED: &str = "algorithm_not_allowed";
    /// The JWT carries a `crit` header this verifier does not understand.
    pub const UNSUPPORTED_CRITICAL_HEADER: &str = "unsupported_critical_header";
    /// No key of the authorization server's JWKS has the token's `kid`.
    pub const UNKNOWN_KEY: &str = "unknown_key";
    /// The signature does not verify.
    pub const BAD_SIGNATURE: &str = "bad_signature";
    /// `iss` is not the configured issuer.
    pub const WRONG_ISSUER: &str = "wrong_issuer";
    /// `aud` does not name this resource.
    pub const WRONG_AUDIENCE: &str = "wrong_audience";
    /// `exp` has passed.
    pub const TOKEN_EXPIRED: &str = "token_expired";
    /// `nbf` or `iat` is in the future.
    pub const TOKEN_NOT_YET_VALID: &str = "token_not_yet_valid";
    /// A claim is missing or of the wrong type.
    pub const INVALID_CLAIM: &str = "invalid_claim";
    /// Introspection says the token is no longer active.
    pub const TOKEN_REVOKED: &str = "token_revoked";
    /// The handler ran without the verification layer in front of it.
    pub const LAYER_MISSING: &str = "layer_missing";
}

impl AuthError {
    /// The stable machine code of this error (also the `error` member of the JSON body): the
    /// protocol's code where one says it ([`AuthError::protocol_code`]), else one of
    /// [`extension_codes`].
    pub fn code(&self) -> &'static str {
        use extension_codes as x;
        match self {
            AuthError::MalformedRequest(_) => ErrorCode::InvalidRequest.as_str(),
            AuthError::InsufficientScope { .. } => ErrorCode::InsufficientScope.as_str(),
            AuthError::Unavailable(_) => ErrorCode::TemporarilyUnavailable.as_str(),
            AuthError::MissingToken(_) => x::MISSING_TOKEN,
            AuthError::MalformedToken(_) => x::MALFORMED_TOKEN,
            AuthError::WrongTokenType(_) => x::WRONG_TOKEN_TYPE,
            AuthError::AlgorithmNotAllowed(_) => x::ALGORITHM_NOT_ALLOWED,
            AuthError::UnsupportedCriticalHeader(_) => x::UNSUPPORTED_CRITICAL_HEADER,
            AuthError::UnknownKey(_) => x::UNKNOWN_KEY,
            AuthError::BadSignature(_) => x::BAD_SIGNATURE,
            AuthError::WrongIssuer(_) => x::WRONG_ISSUER,
            AuthError::WrongAudience(_) => x::WRONG_AUDIENCE,
            AuthError::Expired(_) => x::TOKEN_EXPIRED,
            AuthError::NotYetValid(_) => x::TOKEN_NOT_YET_VALID,
            AuthError::BadClaim(_) => x::INVALID_CLAIM,
            AuthError::Revoked(_) => x::TOKEN_REVOKED,
            AuthError::LayerMissing(_) => x::LAYER_MISSING,
        }
    }

    /// The protocol's code, when this error is exactly one the server also answers with:
    /// `invalid_request`, `insufficient_scope`, `temporarily_unavailable`.
    pub fn protocol_code(&self) -> Option<ErrorCode> {
        match self {
            AuthError::MalformedRequest(_) => Some(ErrorCode::InvalidRequest),
            AuthError::InsufficientScope { .. } => Some(ErrorCode::InsufficientScope),
            AuthError::Unavailable(_) => Some(ErrorCode::TemporarilyUnavailable),
            _ => None,
        }
    }

    /// The RFC 6750 §3.1 `error` for the challenge; `None` when no credential was presented
    /// (the challenge then carries no error, as RFC 6750 §3.1 asks).
    pub fn oauth_error(&self) -> Option<&'static str> {
        self.oauth_error_code().map(ErrorCode::as_str)
    }

    /// [`AuthError::oauth_error`] as the protocol's [`ErrorCode`].
    pub fn oauth_error_code(&self) -> Option<ErrorCode> {
        match self {
            AuthError::MissingToken(_) | AuthError::Unavailable(_) | AuthError::LayerMissing(_) => {
                None
            }
            AuthError::MalformedRequest(_) => Some(ErrorCode::InvalidRequest),
            AuthError::InsufficientScope { .. } => Some(ErrorCode::InsufficientScope),
            _ => Some(ErrorCode::InvalidToken),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn every_error() -> Vec<AuthError> {
        let d = || String::from("d");
        vec![
            AuthError::MissingToken(d()),
            AuthError::MalformedRequest(d()),
            AuthError::MalformedToken(d()),
            AuthError::WrongTokenType(d()),
            AuthError::AlgorithmNotAllowed(d()),
            AuthError::UnsupportedCriticalHeader(d()),
            AuthError::UnknownKey(d()),
            AuthError::BadSignature(d()),
            AuthError::WrongIssuer(d()),
            AuthError::WrongAudience(d()),
            AuthError::Expired(d()),
            AuthError::NotYetValid(d()),
            AuthError::BadClaim(d()),
            AuthError::Revoked(d()),
            AuthError::InsufficientScope {
                required: vec![],
                description: d(),
            },
            AuthError::Unavailable(d()),
            AuthError::LayerMissing(d()),
        ]
    }

    /// A code is the protocol's exactly when `protocol_code` says so; an extension code never
    /// spells one of the protocol's (it would mean something else to a client).
    #[test]
    fn codes_are_the_protocols_or_a_distinct_extension() {
        for e in every_error() {
            match e.protocol_code() {
                Some(code) => assert_eq!(e.code(), code.as_str()),
                None => assert_eq!(ErrorCode::from_wire(e.code()), None, "{}", e.code()),
            }
        }
    }
}
