//! Per-tool scopes for an MCP Streamable HTTP endpoint.
//!
//! An MCP client calls every tool through the same `POST /mcp`, so a route layer cannot tell
//! `add_note` from `list_notes`. [`ToolScopes`] reads the JSON-RPC body (a message or a batch),
//! and answers a `tools/call` whose tool needs scopes the caller lacks with `403` and
//! `WWW-Authenticate: Bearer error="insufficient_scope", scope="…"` before the MCP server sees
//! it: the MCP step-up signal, on which clients re-authorize with the named scopes and retry.
//! Place it inside [`ProtectedResource::layer`](crate::ProtectedResource::layer).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::{Layer, Service};

use crate::Caller;
use crate::layer::layer_missing;

/// Bodies larger than this are answered 413 (the same default as rmcp's own limit).
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Tool name → scopes its `tools/call` needs. A tool not listed needs only what the bearer
/// layer already required.
#[derive(Clone, Debug, Default)]
pub struct ToolScopes {
    tools: Arc<HashMap<String, Vec<String>>>,
    max_body_bytes: usize,
}

impl ToolScopes {
    /// No per-tool scopes yet; add them with [`ToolScopes::tool`].
    pub fn new() -> Self {
        ToolScopes {
            tools: Arc::default(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }

    /// `tools/call` of `name` needs every scope in `scopes`.
    pub fn tool<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        name: &str,
        scopes: I,
    ) -> Self {
        Arc::make_mut(&mut self.tools).insert(
            name.to_owned(),
            scopes.into_iter().map(Into::into).collect(),
        );
        self
    }

    /// The largest JSON-RPC body read to find the tool name; a bigger one is refused with `413 request_too_large`.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// The scopes a JSON-RPC body's tool calls need, in order of appearance (deduplicated).
    pub fn scopes_for_body(&self, body: &[u8]) -> Vec<String> {
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            // Not JSON: nothing is called; the MCP server answers the parse error.
            return Vec::new();
        };
        let messages: Vec<&Value> = match &v {
            Value::Array(batch) => batch.iter().collect(),
            one => vec![one],
        };
        let mut out: Vec<String> = Vec::new();
        for m in messages {
            if m.get("method").and_then(Value::as_str) != Some("tools/call") {
                continue;
            }
            let Some(name) = m.pointer("/params/name").and_then(Value::as_str) else {
                continue;
            };
            for s in self.tools.get(name).into_iter().flatten() {
                if !out.contains(s) {
                    out.push(s.clone());
                }
            }
        }
        out
    }
}

impl<S> Layer<S> for ToolScopes {
    type Service = ToolScopesService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ToolScopesService {
            inner,
            scopes: self.clone(),
        }
    }
}

/// The service of [`ToolScopes`]: reads the JSON-RPC `tools/call` name and checks its scopes.
#[derive(Clone, Debug)]
pub struct ToolScopesService<S> {
    inner: S,
    scopes: ToolScopes,
}

impl<S> Service<Request<Body>> for ToolScopesService<S>
where
    S: Service<Request<Body>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let scopes = self.scopes.clone();
        Box::pin(async move {
            if req.method() != http::Method::POST || scopes.tools.is_empty() {
                return inner.call(req).await;
            }
            let (parts, body) = req.into_parts();
            let Some(caller) = parts.extensions.get::<Caller>().cloned() else {
                return Ok(layer_missing().into_response());
            };
            let bytes = match axum::body::to_bytes(body, scopes.max_body_bytes).await {
                Ok(b) => b,
                Err(_) => {
                    let body = json!({
                        "error": "request_too_large",
                        "error_description": format!(
                            "the request body could not be read or is over {} bytes",
                            scopes.max_body_bytes
                        ),
                    });
                    return Ok((StatusCode::PAYLOAD_TOO_LARGE, axum::Json(body)).into_response());
                }
            };
            let needed = scopes.scopes_for_body(&bytes);
            let needed: Vec<&str> = needed.iter().map(String::as_str).collect();
            if let Err(rejection) = caller.require_scopes(&needed) {
                return Ok(rejection.into_response());
            }
            inner
                .call(Request::from_parts(parts, Body::from(bytes)))
                .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_scopes_of_tool_calls_in_messages_and_batches() {
        let t = ToolScopes::new()
            .tool("add_note", ["notes:write"])
            .tool("list_notes", ["notes:read"]);
        let call = |name: &str| json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name}});
        let body = |v: Value| serde_json::to_vec(&v).unwrap();
        assert_eq!(t.scopes_for_body(&body(call("add_note"))), ["notes:write"]);
        assert!(t.scopes_for_body(&body(call("unknown"))).is_empty());
        assert_eq!(
            t.scopes_for_body(&body(json!([
                call("list_notes"),
                call("add_note"),
                call("add_note")
            ]))),
            ["notes:read", "notes:write"]
        );
        let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
        assert!(t.scopes_for_body(&body(list)).is_empty());
        for garbage in [
            &b"not json"[..],
            b"",
            b"[1, null, {}]",
            b"{\"method\": \"tools/call\", \"params\": 5}",
        ] {
            assert!(t.scopes_for_body(garbage).is_empty());
        }
    }
}
