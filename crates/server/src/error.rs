//! The server's one error type: a stable code (shared with the SDK through `consentry-protocol`),
//! an HTTP status and a description naming the parameter at fault and what was expected.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use consentry_protocol::{ErrorBody, ErrorCode, ParamError};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub description: String,
    /// For authorization errors that may go back to the client: where to send the browser.
    pub redirect_uri: Option<String>,
    pub www_authenticate: Option<String>,
    /// Seconds for `Retry-After` (429 and 503 answers).
    pub retry_after: Option<u64>,
    /// For an organization's refusal: the app and the organization, named for the screen.
    pub refusal: Option<Box<consentry_protocol::Refusal>>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, description: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            description: description.into(),
            redirect_uri: None,
            www_authenticate: None,
            retry_after: None,
            refusal: None,
        }
    }

    /// 429 `rate_limited`, with `Retry-After` (at least one second).
    pub fn rate_limited(description: impl Into<String>, retry_after: std::time::Duration) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            description,
        );
        e.retry_after = Some(retry_after.as_secs().max(1));
        e
    }

    pub fn bad_request(code: ErrorCode, description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, description)
    }

    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::bad_request(ErrorCode::InvalidRequest, description)
    }

    pub fn invalid_grant(description: impl Into<String>) -> Self {
        Self::bad_request(ErrorCode::InvalidGrant, description)
    }

    pub fn unauthorized(code: ErrorCode, description: impl Into<String>) -> Self {
        let description = description.into();
        let mut e = Self::new(StatusCode::UNAUTHORIZED, code, description.clone());
        e.www_authenticate = Some(format!(
            "Bearer error=\"{}\", error_description=\"{}\"",
            code.as_str(),
            description.replace(['"', '\\'], "'")
        ));
        e
    }

    /// Internal failures: logged with detail, answered without it.
    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::ServerError,
            "the server could not complete the request; try again",
        )
    }

    pub fn unavailable(description: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::TemporarilyUnavailable,
            description,
        )
    }

    pub fn with_redirect(mut self, location: String) -> Self {
        self.redirect_uri = Some(location);
        self
    }
}

impl From<ParamError> for ApiError {
    fn from(e: ParamError) -> Self {
        ApiError::bad_request(e.code(), e.to_string())
    }
}

impl From<crate::store::sql::DbError> for ApiError {
    fn from(e: crate::store::sql::DbError) -> Self {
        ApiError::internal(e)
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError::internal(format!("{e:#}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code,
            error_description: self.description,
            redirect_uri: self.redirect_uri,
            client_name: self.refusal.as_ref().map(|r| r.client_name.clone()),
            organization_name: self.refusal.map(|r| r.organization_name),
        };
        let mut resp = (self.status, Json(body)).into_response();
        let h = resp.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(v) = self
            .www_authenticate
            .and_then(|v| HeaderValue::from_str(&v).ok())
        {
            h.insert(header::WWW_AUTHENTICATE, v);
        }
        if let Some(secs) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}
