//! The forged-token table shared with `consentry/server`'s tests (tests/forged_tokens.json): each
//! case turns a real access token of the real `consentry` binary into a forged or broken one, and
//! names the error code every verifier must answer. The JS verifier reads the same file, so the
//! two cannot drift.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::Router;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use consentry_resource::ProtectedResource;
use consentry_testkit::*;
use serde_json::{Map, Value};

fn table() -> Vec<Value> {
    let text = include_str!("forged_tokens.json");
    let v: Value = serde_json::from_str(text).unwrap();
    v["cases"].as_array().unwrap().clone()
}

/// Apply `changes` (null removes a member) to a base64url JSON segment.
fn patch(segment: &str, changes: Option<&Value>) -> String {
    let Some(changes) = changes else {
        return segment.to_owned();
    };
    let mut obj: Map<String, Value> =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap();
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            obj.remove(k);
        } else {
            obj.insert(k.clone(), v.clone());
        }
    }
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&obj).unwrap())
}

fn forge(token: &str, case: &Value) -> String {
    if let Some(raw) = case["raw"].as_str() {
        return raw.to_owned();
    }
    let parts: Vec<&str> = token.split('.').collect();
    let signature = match case["signature"].as_str().unwrap_or("keep") {
        "keep" => parts[2].to_owned(),
        "empty" => String::new(),
        "garbage" => URL_SAFE_NO_PAD.encode(b"garbage-signature-bytes"),
        other => panic!("unknown signature mode {other}"),
    };
    format!(
        "{}.{}.{signature}",
        patch(parts[0], case.get("header")),
        patch(parts[1], case.get("payload"))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_forged_token_of_the_shared_table_is_refused_with_its_code() {
    let s = Setup::new(Backend::Sqlite).start().await;
    let res = ProtectedResource::builder(RESOURCE, &s.base)
        .required_scopes(["notes:read"])
        .build()
        .unwrap();
    let pkce = Pkce::new();
    let t = s
        .tokens_for("alice", &pkce, &params(&pkce, "notes:read notes:write"))
        .await;
    let token = t["access_token"].as_str().unwrap();
    assert!(res.verify(token).await.is_ok(), "the real token verifies");

    let app = Router::new()
        .route("/mcp", get(|| async { "reached" }))
        .layer(res.layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let cases = table();
    assert!(cases.len() >= 20);
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let code = case["code"].as_str().unwrap();
        let forged = forge(token, case);
        let e = match res.verify(&forged).await {
            Ok(c) => panic!("{name}: the forged token was accepted as {c:?}"),
            Err(e) => e,
        };
        assert_eq!(e.code(), code, "{name}: {}", e.description());
        for m in case["mentions"].as_array().into_iter().flatten() {
            let m = m.as_str().unwrap();
            assert!(
                e.description().contains(m),
                "{name}: '{}' should mention {m}",
                e.description()
            );
        }
        // Through the layer too, when the forged token is still a well-formed bearer credential.
        let b64token = forged
            .trim_end_matches('=')
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b));
        if b64token && !forged.is_empty() {
            let r = reqwest::Client::new()
                .get(format!("{base}/mcp"))
                .bearer_auth(&forged)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401, "{name}");
            let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
            assert!(
                challenge.contains("error=\"invalid_token\""),
                "{name}: {challenge}"
            );
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"], code, "{name}");
        }
    }
}
