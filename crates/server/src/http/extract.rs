//! Extractors: JSON and authorize bodies whose errors name the field, path parameters, the
//! browser session from a bearer token.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use consentry_protocol::ErrorCode;
use serde::de::DeserializeOwned;

use crate::crypto::{SessionClaims, SessionError};
use crate::error::{ApiError, ApiResult};
use crate::state::{Shared, now};

/// A JSON body whose errors name the offending field (`serde_path_to_error`).
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(req, state).await?;
        from_json::<T>(&bytes)
            .map(JsonBody)
            .map_err(deserialize_error)
    }
}

async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> ApiResult<Bytes> {
    Bytes::from_request(req, state)
        .await
        .map_err(unreadable_body)
}

/// A body axum could not read, as a JSON error that keeps the rejection's status (413 for a
/// body over the limit).
pub fn unreadable_body(e: axum::extract::rejection::BytesRejection) -> ApiError {
    ApiError::new(
        e.status(),
        ErrorCode::InvalidRequest,
        format!("cannot read the request body: {}", e.body_text()),
    )
}

fn from_json<T: DeserializeOwned>(
    bytes: &[u8],
) -> Result<T, serde_path_to_error::Error<serde_json::Error>> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de)
}

fn deserialize_error(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    if path == "." {
        ApiError::invalid_request(format!("request body is not the expected JSON: {inner}"))
    } else {
        ApiError::invalid_request(format!("{path}: {inner}"))
    }
}

/// The JSON body of a request that carries the authorization parameters flattened into it
/// (start, submit). serde buffers a flattened struct before reading it, which hides the path
/// of a field inside it (`resource: 5` would be reported without naming `resource`); so when
/// the error has no path, the parameters are read again on their own to name the one at fault.
pub struct AuthorizeBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for AuthorizeBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(req, state).await?;
        match from_json::<T>(&bytes) {
            Ok(v) => Ok(AuthorizeBody(v)),
            Err(e) if e.path().iter().next().is_none() => {
                match from_json::<consentry_protocol::AuthorizeParams>(&bytes) {
                    Err(named) if named.path().iter().next().is_some() => {
                        Err(deserialize_error(named))
                    }
                    _ => Err(deserialize_error(e)),
                }
            }
            Err(e) => Err(deserialize_error(e)),
        }
    }
}

/// Path parameters whose rejection (e.g. bad percent-encoding) is a JSON error like every other.
pub struct PathParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| PathParams(v))
            .map_err(|e| ApiError::invalid_request(format!("path: {}", e.body_text())))
    }
}

/// The browser session from `Authorization: Bearer <session_token>`.
pub struct Session(pub SessionClaims);

impl FromRequestParts<Shared> for Session {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Shared,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(&parts.headers).ok_or_else(|| {
            ApiError::unauthorized(
                ErrorCode::InvalidSession,
                "Authorization: Bearer <session_token> is required; get one from /v1/sessions/attest",
            )
        })?;
        session_from_token(state, token).map(Session)
    }
}

pub fn session_from_token(state: &Shared, token: &str) -> ApiResult<SessionClaims> {
    state
        .sealer
        .open_session(token, now())
        .map_err(|e| match e {
            SessionError::Expired => ApiError::unauthorized(
                ErrorCode::SessionExpired,
                "the session has expired; attest a fresh Trusted Auth Token",
            ),
            SessionError::Invalid => ApiError::unauthorized(
                ErrorCode::InvalidSession,
                "the session token is not valid for this server; attest a Trusted Auth Token",
            ),
        })
}

pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}
