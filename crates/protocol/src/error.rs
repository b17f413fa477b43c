//! Stable error codes. The same string travels as the OAuth `error` member on the wire, as the
//! server's error variant, and as `ConsentryError.code` in JavaScript.

use serde::{Deserialize, Serialize};

/// Every error code Consentry emits. Never rename a variant's wire string: clients `switch` on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    // RFC 6749 / OAuth 2.1
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
    AccessDenied,
    UnsupportedResponseType,
    ServerError,
    TemporarilyUnavailable,
    // RFC 8707
    InvalidTarget,
    // RFC 7591
    InvalidRedirectUri,
    InvalidClientMetadata,
    // RFC 6750
    InvalidToken,
    InsufficientScope,
    // OpenID Connect prompt handling
    ConsentRequired,
    LoginRequired,
    // Consentry's browser API
    InvalidTrustedAuthToken,
    SessionExpired,
    InvalidSession,
    NotFound,
    MethodNotAllowed,
    RateLimited,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 23] = [
        ErrorCode::InvalidRequest,
        ErrorCode::InvalidClient,
        ErrorCode::InvalidGrant,
        ErrorCode::UnauthorizedClient,
        ErrorCode::UnsupportedGrantType,
        ErrorCode::InvalidScope,
        ErrorCode::AccessDenied,
        ErrorCode::UnsupportedResponseType,
        ErrorCode::ServerError,
        ErrorCode::TemporarilyUnavailable,
        ErrorCode::InvalidTarget,
        ErrorCode::InvalidRedirectUri,
        ErrorCode::InvalidClientMetadata,
        ErrorCode::InvalidToken,
        ErrorCode::InsufficientScope,
        ErrorCode::ConsentRequired,
        ErrorCode::LoginRequired,
        ErrorCode::InvalidTrustedAuthToken,
        ErrorCode::SessionExpired,
        ErrorCode::InvalidSession,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::RateLimited,
    ];

    /// The wire string (`invalid_request`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::UnsupportedResponseType => "unsupported_response_type",
            ErrorCode::ServerError => "server_error",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
            ErrorCode::InvalidTarget => "invalid_target",
            ErrorCode::InvalidRedirectUri => "invalid_redirect_uri",
            ErrorCode::InvalidClientMetadata => "invalid_client_metadata",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InsufficientScope => "insufficient_scope",
            ErrorCode::ConsentRequired => "consent_required",
            ErrorCode::LoginRequired => "login_required",
            ErrorCode::InvalidTrustedAuthToken => "invalid_trusted_auth_token",
            ErrorCode::SessionExpired => "session_expired",
            ErrorCode::InvalidSession => "invalid_session",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::RateLimited => "rate_limited",
        }
    }

    pub fn from_wire(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// The body of every error response: RFC 6749 §5.2 plus, for authorization errors that may be
/// sent back to the client, the location to send the browser to (`redirect_uri`, carrying
/// `error`, `state` and `iss`). The location is present only once the client and its redirect
/// URI have been verified; errors about the client or redirect URI never carry one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorCode,
    pub error_description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_uri: Option<String>,
}
