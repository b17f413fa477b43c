//! A scripted [`Platform`] for the browser-SDK crates' tests (native and wasm32): canned
//! responses, recorded requests, a fixed clock.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use consentry_core::{HttpRequest, HttpResponse, JsonObject, Platform, TransportError};
use serde_json::Value;

#[derive(Clone, Debug, PartialEq)]
pub struct FakeJson(pub Value);

impl JsonObject for FakeJson {
    fn str_member(&self, key: &str) -> Option<String> {
        self.0.get(key)?.as_str().map(str::to_owned)
    }
    fn num_member(&self, key: &str) -> Option<f64> {
        self.0.get(key)?.as_f64()
    }
    fn is_object(&self) -> bool {
        self.0.is_object()
    }
    fn is_array(&self) -> bool {
        self.0.is_array()
    }
    fn bool_member(&self, key: &str) -> Option<bool> {
        self.0.get(key)?.as_bool()
    }
    fn member(&self, key: &str) -> Option<Self> {
        self.0.get(key).cloned().map(FakeJson)
    }
    fn elements(&self) -> Vec<Self> {
        self.0
            .as_array()
            .map(|a| a.iter().cloned().map(FakeJson).collect())
            .unwrap_or_default()
    }
    fn as_string(&self) -> Option<String> {
        self.0.as_str().map(str::to_owned)
    }
    fn keys(&self) -> Vec<String> {
        self.0
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    }
}

pub const NOW: f64 = 1_800_000_000.0;

#[derive(Default)]
pub struct FakePlatform {
    pub responses: RefCell<VecDeque<Result<HttpResponse<FakeJson>, TransportError>>>,
    pub requests: RefCell<Vec<HttpRequest>>,
}

impl FakePlatform {
    pub fn answering(
        responses: impl IntoIterator<Item = Result<HttpResponse<FakeJson>, TransportError>>,
    ) -> Self {
        FakePlatform {
            responses: RefCell::new(responses.into_iter().collect()),
            requests: RefCell::default(),
        }
    }
}

pub fn json(status: u16, body: Value) -> Result<HttpResponse<FakeJson>, TransportError> {
    Ok(HttpResponse {
        status,
        body: Some(FakeJson(body)),
    })
}

pub fn no_body(status: u16) -> Result<HttpResponse<FakeJson>, TransportError> {
    Ok(HttpResponse { status, body: None })
}

impl Platform for FakePlatform {
    type Json = FakeJson;

    async fn send(&self, request: HttpRequest) -> Result<HttpResponse<FakeJson>, TransportError> {
        self.requests.borrow_mut().push(request);
        self.responses
            .borrow_mut()
            .pop_front()
            .expect("a request the test did not script")
    }

    fn parse_json(&self, text: &str) -> Option<FakeJson> {
        serde_json::from_str(text).ok().map(FakeJson)
    }

    fn now_unix_seconds(&self) -> f64 {
        NOW
    }
}

/// The fake never waits, so one poll finishes any future the client makes.
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the fake platform never pends"),
    }
}

fn b64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(A[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

/// An unsigned-looking JWT with these claims (the SDK never checks the signature).
pub fn jwt(claims: Value) -> String {
    format!(
        "{}.{}.c2ln",
        b64url(br#"{"alg":"ES256","typ":"JWT"}"#),
        b64url(claims.to_string().as_bytes())
    )
}

pub fn b64(bytes: &[u8]) -> String {
    b64url(bytes)
}
