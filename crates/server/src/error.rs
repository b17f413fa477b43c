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
        if e.is_unavailable() {
            return ApiError::database_unavailable(e);
        }
        ApiError::internal(e)
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        let unavailable = e.chain().any(|c| {
            c.downcast_ref::<crate::store::sql::DbError>()
                .is_some_and(crate::store::sql::DbError::is_unavailable)
        });
        if unavailable {
            return ApiError::database_unavailable(format!("{e:#}"));
        }
        ApiError::internal(format!("{e:#}"))
    }
}

impl ApiError {
    /// The database is down, restarting, full or locked: 503 `temporarily_unavailable` with
    /// `Retry-After`, the cause in the operator's log only.
    pub fn database_unavailable(err: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %err, "database unavailable");
        let mut e = Self::unavailable(
            "the database is temporarily unavailable; try again shortly (the server log has the cause)",
        );
        e.retry_after = Some(1);
        e
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::sql::DbError;

    /// A database that is away is a 503 with `Retry-After`, however the error reached the
    /// handler (directly or inside an anyhow context); a bug or a bad row stays a 500.
    #[test]
    fn an_unavailable_database_is_a_503() {
        let e = ApiError::from(DbError::Postgres(sqlx::Error::PoolTimedOut));
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.code, ErrorCode::TemporarilyUnavailable);
        assert_eq!(e.retry_after, Some(1));
        let e = ApiError::from(
            anyhow::Error::new(DbError::Postgres(sqlx::Error::PoolTimedOut)).context("loading"),
        );
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        let e = ApiError::from(DbError::Other("column 3 missing".into()));
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.code, ErrorCode::ServerError);
    }
}
