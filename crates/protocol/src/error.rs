//! Stable error codes. The same string travels as the OAuth `error` member on the wire, as the
//! server's error variant, and as `ConsentryError.code` in JavaScript.

use serde::{Deserialize, Serialize};

/// Every error code Consentry emits. Never rename a variant's wire string: clients `switch` on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    // RFC 6749 / OAuth 2.1
    /// The request is malformed (RFC 6749).
    InvalidRequest,
    /// Client authentication failed.
    InvalidClient,
    /// The code, refresh token or credentials are invalid, expired or revoked.
    InvalidGrant,
    /// The client may not use this grant type.
    UnauthorizedClient,
    /// The grant type is not supported.
    UnsupportedGrantType,
    /// A requested scope is unknown or not allowed.
    InvalidScope,
    /// The user (or the policy) denied the request.
    AccessDenied,
    /// The `response_type` is not supported.
    UnsupportedResponseType,
    /// The server failed.
    ServerError,
    /// The server is overloaded or down for maintenance.
    TemporarilyUnavailable,
    // RFC 8707
    /// The `resource` is unknown or not allowed (RFC 8707).
    InvalidTarget,
    // RFC 7591
    /// A registration's redirect URI is invalid (RFC 7591).
    InvalidRedirectUri,
    /// A registration's metadata is invalid (RFC 7591).
    InvalidClientMetadata,
    // RFC 6750
    /// The bearer token is invalid (RFC 6750).
    InvalidToken,
    /// The token lacks a scope the request needs (RFC 6750).
    InsufficientScope,
    // OpenID Connect prompt handling
    /// `prompt=none`, but the user must consent (OpenID Connect).
    ConsentRequired,
    /// `prompt=none` or `prompt=login`, but the user must sign in again.
    LoginRequired,
    // Consentry's browser API
    /// The Trusted Auth Token failed verification.
    InvalidTrustedAuthToken,
    /// The browser session expired: attest again.
    SessionExpired,
    /// The browser session is unknown or malformed.
    InvalidSession,
    /// No such resource (e.g. no such connected app).
    NotFound,
    /// The HTTP method is not allowed on this path.
    MethodNotAllowed,
    /// Too many requests: slow down.
    RateLimited,
    // Organizations
    /// The member's organization does not allow this app (its policy's `first_party` or
    /// `third_party` rule). The agent receives `access_denied`.
    AppNotAllowedForOrg,
    /// The member's organization does not allow this scope for agents (`scopes.disallowed`).
    ScopeNotAllowedForOrg,
    /// The caller is authenticated but may not do this (e.g. the organization API without one of
    /// the profile's `admin_roles`).
    Forbidden,
    /// A conditional request's `If-Match` is stale (412), or it is missing where required (428).
    PreconditionFailed,
}

impl ErrorCode {
    /// Every code, in a fixed order (for tables and tests).
    pub const ALL: [ErrorCode; 27] = [
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
        ErrorCode::AppNotAllowedForOrg,
        ErrorCode::ScopeNotAllowedForOrg,
        ErrorCode::Forbidden,
        ErrorCode::PreconditionFailed,
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
            ErrorCode::AppNotAllowedForOrg => "app_not_allowed_for_org",
            ErrorCode::ScopeNotAllowedForOrg => "scope_not_allowed_for_org",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::PreconditionFailed => "precondition_failed",
        }
    }

    /// The code an OAuth client receives for this one (RFC 6749 §4.1.2.1 knows no organization
    /// codes: an organization's refusal reaches the agent as `access_denied`).
    pub const fn oauth(self) -> ErrorCode {
        match self {
            ErrorCode::AppNotAllowedForOrg | ErrorCode::ScopeNotAllowedForOrg => {
                ErrorCode::AccessDenied
            }
            other => other,
        }
    }

    /// The code for its wire string (`invalid_request`), if known.
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
    /// The OAuth `error`.
    pub error: ErrorCode,
    /// A sentence for developers: the parameter at fault and what was expected.
    pub error_description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Where the client receives the error, when the server verified the client and its redirect URI.
    pub redirect_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// With `app_not_allowed_for_org`: the app's display name, for the consent screen's sentence.
    pub client_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// With `app_not_allowed_for_org`: the organization's display name (or id).
    pub organization_name: Option<String>,
}

/// An organization's refusal of an app, for the consent screen's sentence ("Your organization
/// does not allow Acme Agent. Ask an admin of Example Corp."): travels as [`ErrorBody`]'s
/// `client_name` and `organization_name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The app's display name.
    pub client_name: String,
    /// The organization's display name (or id).
    pub organization_name: String,
}
