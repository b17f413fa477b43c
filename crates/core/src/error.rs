//! One error type for the whole SDK, with codes that never change.

use consentry_protocol::{ErrorBody, ErrorCode, ParamError};

/// A stable error code: every code the server sends, plus the failures only the SDK can see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SdkErrorCode {
    /// A code from the server's `ErrorBody` (or one the SDK derived from the HTTP status).
    Server(ErrorCode),
    /// The request never got an HTTP answer: offline, DNS, TLS, or CORS refused the page's origin.
    NetworkError,
    /// The server answered, but not with what the API promises (not JSON, a field missing).
    InvalidResponse,
    /// A call that needs a session was made before `attest` or a one-round-trip `authorizeStart`.
    SessionMissing,
    /// The Trusted Auth Token's `exp` has passed (beyond the server's leeway): refused locally.
    TrustedAuthTokenExpired,
    /// The prebuilt consent screen was loaded inside a frame and was not told to allow it
    /// (clickjacking defence): it renders this error instead of the Allow button.
    FramingRefused,
}

impl SdkErrorCode {
    /// The SDK-only codes, for the JS type union and the tests.
    pub const SDK_ONLY: [SdkErrorCode; 5] = [
        SdkErrorCode::NetworkError,
        SdkErrorCode::InvalidResponse,
        SdkErrorCode::SessionMissing,
        SdkErrorCode::TrustedAuthTokenExpired,
        SdkErrorCode::FramingRefused,
    ];

    /// The string JavaScript sees as `ConsentryError.code`.
    pub const fn as_str(self) -> &'static str {
        match self {
            SdkErrorCode::Server(code) => code.as_str(),
            SdkErrorCode::NetworkError => "network_error",
            SdkErrorCode::InvalidResponse => "invalid_response",
            SdkErrorCode::SessionMissing => "session_missing",
            SdkErrorCode::TrustedAuthTokenExpired => "trusted_auth_token_expired",
            SdkErrorCode::FramingRefused => "framing_refused",
        }
    }
}

/// What went wrong, for a `ConsentryError` in JavaScript.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SdkError {
    /// The stable code (`error.code` in JavaScript).
    pub code: SdkErrorCode,
    /// The HTTP status, when the server answered.
    pub status: Option<u16>,
    /// For people: the server's `error_description`, or the SDK's own.
    pub description: String,
    /// Where to send the browser for an authorization error the client may receive (the server
    /// sets it only once the client and its redirect URI are verified).
    pub redirect_uri: Option<String>,
    /// With `app_not_allowed_for_org`: the app's name, for the refusal screen.
    pub client_name: Option<String>,
    /// With `app_not_allowed_for_org`: the user's organization, for the refusal screen.
    pub organization_name: Option<String>,
}

impl SdkError {
    /// An error found in the browser, before or without any request.
    pub fn local(code: SdkErrorCode, description: impl Into<String>) -> Self {
        SdkError {
            code,
            status: None,
            description: description.into(),
            redirect_uri: None,
            client_name: None,
            organization_name: None,
        }
    }

    /// The server answered `status` with a body that is (or is not) a Consentry [`ErrorBody`].
    /// Unknown codes and missing bodies fall back to the status, so a proxy's bare 502 is still a
    /// `server_error` and a foreign 404 a `not_found`.
    pub fn from_http(status: u16, body: Option<ErrorBody>) -> Self {
        match body {
            Some(body) => SdkError {
                code: SdkErrorCode::Server(body.error),
                status: Some(status),
                description: body.error_description,
                redirect_uri: body.redirect_uri,
                client_name: body.client_name,
                organization_name: body.organization_name,
            },
            None => SdkError {
                code: code_for_status(status),
                status: Some(status),
                description: status_description(status).to_owned(),
                redirect_uri: None,
                client_name: None,
                organization_name: None,
            },
        }
    }

    /// The request got no HTTP answer (`network_error`); `detail` is what the platform said.
    pub fn network(detail: &str) -> Self {
        let mut description = String::from(
            "the request got no HTTP response (offline, or the server does not allow this page's origin in allowed_origins)",
        );
        if !detail.is_empty() {
            description.push_str(": ");
            description.push_str(detail);
        }
        SdkError::local(SdkErrorCode::NetworkError, description)
    }

    /// The server answered `status` with something other than `what` (`invalid_response`).
    pub fn invalid_response(status: u16, what: &str) -> Self {
        let mut description = String::from("unexpected response from the server: ");
        description.push_str(what);
        SdkError {
            code: SdkErrorCode::InvalidResponse,
            status: Some(status),
            description,
            redirect_uri: None,
            client_name: None,
            organization_name: None,
        }
    }
}

impl From<ParamError> for SdkError {
    fn from(e: ParamError) -> Self {
        SdkError::local(SdkErrorCode::Server(e.code()), e.to_string())
    }
}

/// The code for an error status whose body is not a Consentry error.
pub(crate) fn code_for_status(status: u16) -> SdkErrorCode {
    match status {
        400 => SdkErrorCode::Server(ErrorCode::InvalidRequest),
        401 => SdkErrorCode::Server(ErrorCode::InvalidSession),
        403 => SdkErrorCode::Server(ErrorCode::AccessDenied),
        404 => SdkErrorCode::Server(ErrorCode::NotFound),
        405 => SdkErrorCode::Server(ErrorCode::MethodNotAllowed),
        429 => SdkErrorCode::Server(ErrorCode::RateLimited),
        503 => SdkErrorCode::Server(ErrorCode::TemporarilyUnavailable),
        500..=599 => SdkErrorCode::Server(ErrorCode::ServerError),
        _ => SdkErrorCode::InvalidResponse,
    }
}

fn status_description(status: u16) -> &'static str {
    match status {
        400 => "the server refused the request (HTTP 400) without a Consentry error body",
        401 => "the server refused the session (HTTP 401) without a Consentry error body",
        403 => "the server refused access (HTTP 403) without a Consentry error body",
        404 => "no such endpoint (HTTP 404): is baseUrl the Consentry server?",
        405 => "method not allowed (HTTP 405): is baseUrl the Consentry server?",
        429 => "too many requests (HTTP 429)",
        503 => "the server is temporarily unavailable (HTTP 503)",
        500..=599 => "the server failed (HTTP 5xx) without a Consentry error body",
        _ => "the server answered with an unexpected HTTP status and no Consentry error body",
    }
}
