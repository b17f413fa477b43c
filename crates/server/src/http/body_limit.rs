//! The request-body limit, applied before any handler runs.
//!
//! Every body is read here, whole, up to [`MAX_BODY_BYTES`]; handlers then extract from memory.
//! A body over the limit is answered 413 — but only after reading and discarding what the client
//! is still sending (up to [`DRAIN_BYTES`] more, within [`DRAIN_DEADLINE`]). A server that answers
//! and closes its socket with unread bytes in the receive buffer makes the kernel send a TCP reset,
//! and the reset can destroy the 413 before the client reads it: the client sees "connection reset"
//! instead of an error naming the limit. hyper has no lingering close (nginx's `lingering_close` is
//! the same idea), and axum's `DefaultBodyLimit` stops reading at the limit, hence this module.
//! A body announced (Content-Length) larger than the limit plus the drain is refused unread.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use consentry_protocol::ErrorCode;
use http_body_util::BodyExt;

use crate::error::ApiError;

/// The largest request body an endpoint accepts unless its group sets a smaller [`Limit`]
/// (registration: 16 KB).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// How much of an oversized body is read and dropped so that the 413 reaches the client.
const DRAIN_BYTES: usize = 1024 * 1024;
/// How long draining an oversized body may take.
const DRAIN_DEADLINE: Duration = Duration::from_secs(2);
/// How long reading a body within the limit may take.
const READ_DEADLINE: Duration = Duration::from_secs(30);

/// A limit for one group of routes and the error it answers with.
#[derive(Clone, Copy)]
pub struct Limit {
    pub max: usize,
    /// The error for a body over `max`, given `max`.
    pub refuse: fn(usize) -> ApiError,
}

impl Default for Limit {
    fn default() -> Self {
        Limit {
            max: MAX_BODY_BYTES,
            refuse: |max| {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    ErrorCode::InvalidRequest,
                    format!("the request body is over the length limit of {max} bytes"),
                )
            },
        }
    }
}

fn too_large(limit: Limit) -> Response {
    let mut r = (limit.refuse)(limit.max).into_response();
    r.headers_mut().insert(
        header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    r
}

fn unreadable(what: &str) -> Response {
    ApiError::invalid_request(format!("cannot read the request body: {what}")).into_response()
}

enum Read {
    Whole(Bytes),
    TooLarge,
    Failed(&'static str),
}

async fn read_limited(body: Body, max: usize) -> Read {
    let mut body = body;
    let mut buf: Vec<u8> = Vec::new();
    let mut over = 0usize;
    loop {
        let frame = match body.frame().await {
            None => break,
            Some(Err(_)) => return Read::Failed("the connection failed while it was sent"),
            Some(Ok(f)) => f,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if over > 0 || buf.len() + data.len() > max {
            over += data.len();
            if over > DRAIN_BYTES {
                return Read::TooLarge;
            }
            continue;
        }
        buf.extend_from_slice(&data);
    }
    if over > 0 {
        Read::TooLarge
    } else {
        Read::Whole(Bytes::from(buf))
    }
}

/// Reads the body under the limit and hands the handler a body in memory.
pub async fn middleware(State(limit): State<Limit>, req: Request, next: Next) -> Response {
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced == Some(0) || (announced.is_none() && http_body::Body::is_end_stream(req.body())) {
        return next.run(req).await;
    }
    if announced.is_some_and(|n| n > (limit.max + DRAIN_BYTES) as u64) {
        return too_large(limit);
    }
    let (parts, body) = req.into_parts();
    let announced_too_large = announced.is_some_and(|n| n > limit.max as u64);
    let deadline = if announced_too_large {
        DRAIN_DEADLINE
    } else {
        READ_DEADLINE
    };
    match tokio::time::timeout(deadline, read_limited(body, limit.max)).await {
        Err(_) if announced_too_large => too_large(limit),
        Err(_) => unreadable("it was not sent in time"),
        Ok(Read::TooLarge) => too_large(limit),
        Ok(Read::Failed(why)) => unreadable(why),
        Ok(Read::Whole(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
    }
}
