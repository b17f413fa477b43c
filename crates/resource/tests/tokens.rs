//! Every rule of consentry-resource, attacked with real access tokens from the real `consentry`
//! binary (SQLite, loopback): tokens come from the full HTTP flow (TAT → attest → start →
//! submit → token exchange with PKCE and `resource`), and the protected app is a real axum
//! server on loopback wrapped in the layers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use consentry_resource::{AuthError, Caller, ProtectedResource};
use consentry_testkit::*;
use serde_json::{Value, json};

const NOTES_SECRET: &str = "notes-introspection-secret-0123456789abcdef";

async fn server() -> TestServer {
    Setup::new(Backend::Sqlite)
        .introspection_secret(NOTES_SECRET)
        .start()
        .await
}

fn notes(s: &TestServer) -> consentry_resource::Builder {
    ProtectedResource::builder(RESOURCE, &s.base)
        .resource_name("Notes")
        .scopes_supported(["notes:read", "notes:write"])
        .required_scopes(["notes:read"])
}

/// A complete flow for `user` with `scope`; returns the token response.
async fn tokens(s: &TestServer, user: &str, scope: &str) -> Value {
    let pkce = Pkce::new();
    s.tokens_for(user, &pkce, &params(&pkce, scope)).await
}

async fn access_token(s: &TestServer, scope: &str) -> String {
    tokens(s, "alice", scope).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[track_caller]
fn assert_code(r: Result<Caller, AuthError>, code: &str, mentions: &[&str]) -> AuthError {
    let e = match r {
        Ok(c) => panic!("expected {code}, but the token was accepted: {c:?}"),
        Err(e) => e,
    };
    assert_eq!(e.code(), code, "{e:?}");
    for m in mentions {
        assert!(
            e.description().contains(m),
            "description should mention {m:?}: {}",
            e.description()
        );
    }
    e
}

/// The protected app: `/mcp` needs the baseline scope, `/mcp/write` also `notes:write`,
/// `/mcp/in-handler` checks `notes:write` inside the handler.
async fn serve(res: &ProtectedResource) -> String {
    async fn whoami(caller: Caller) -> axum::Json<Value> {
        axum::Json(json!({
            "sub": caller.user_id(), "client_id": caller.client_id, "scopes": caller.scopes,
            "grant_id": caller.grant_id, "jti": caller.token_id,
        }))
    }
    async fn in_handler(caller: Caller) -> Result<&'static str, consentry_resource::Rejection> {
        caller.require_scopes(&["notes:write"])?;
        Ok("written")
    }
    let app = Router::new()
        .route("/mcp", get(whoami).post(whoami))
        .route(
            "/mcp/write",
            post(|| async { "written" }).route_layer(res.require_scopes(["notes:write"])),
        )
        .route("/mcp/in-handler", post(in_handler))
        .layer(res.layer())
        .merge(res.metadata_router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

struct Answer {
    status: u16,
    challenge: Option<String>,
    json: Value,
}

async fn call(method: reqwest::Method, url: &str, headers: &[(&str, &[u8])]) -> Answer {
    let mut req = reqwest::Client::new().request(method, url);
    for (k, v) in headers {
        req = req.header(*k, reqwest::header::HeaderValue::from_bytes(v).unwrap());
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let challenge = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let json = r.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        challenge,
        json,
    }
}

async fn get_with(url: &str, token: &str) -> Answer {
    let h = format!("Bearer {token}");
    call(
        reqwest::Method::GET,
        url,
        &[("authorization", h.as_bytes())],
    )
    .await
}

fn metadata_url() -> String {
    "http://127.0.0.1:8788/.well-known/oauth-protected-resource/mcp".into()
}

/// Re-encode a token with another header (and optionally payload), keeping or replacing the
/// signature.
fn forge(token: &str, header: &Value, payload: Option<&Value>, signature: &str) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let payload = match payload {
        Some(p) => URL_SAFE_NO_PAD.encode(serde_json::to_vec(p).unwrap()),
        None => parts[1].to_owned(),
    };
    format!(
        "{}.{payload}.{signature}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).unwrap())
    )
}

fn header_of(token: &str) -> Value {
    let h = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap()
}

// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_token_reaches_the_handler_as_the_caller() {
    let s = server().await;
    let res = notes(&s).build().unwrap();
    let t = tokens(&s, "alice", "notes:read notes:write").await;
    let at = t["access_token"].as_str().unwrap();
    let caller = res.verify(at).await.unwrap();
    assert_eq!(caller.user_id(), "alice");
    assert_eq!(caller.client_id, CLIENT);
    assert_eq!(caller.scopes, ["notes:read", "notes:write"]);
    assert!(caller.grant_id.is_some(), "user grants carry gid");
    assert_eq!(
        caller.org_id(),
        None,
        "no organization on a server without them"
    );
    assert_eq!(caller.claims["aud"], RESOURCE);

    let base = serve(&res).await;
    let a = get_with(&format!("{base}/mcp"), at).await;
    assert_eq!(a.status, 200, "{}", a.json);
    assert_eq!(a.json["sub"], "alice");
    assert_eq!(a.json["client_id"], CLIENT);
    assert_eq!(a.json["scopes"], json!(["notes:read", "notes:write"]));
    assert_eq!(a.json["grant_id"], json!(caller.grant_id));
    assert!(a.challenge.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_is_served_at_the_resource_path_and_the_root_with_cors() {
    let s = server().await;
    let res = notes(&s).build().unwrap();
    let base = serve(&res).await;
    let expected = json!({
        "resource": RESOURCE,
        "authorization_servers": [s.base],
        "scopes_supported": ["notes:read", "notes:write"],
        "bearer_methods_supported": ["header"],
        "resource_name": "Notes",
    });
    for path in [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    ] {
        let r = reqwest::Client::new()
            .get(format!("{base}{path}"))
            .header("origin", "http://inspector.localhost:6274")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["access-control-allow-origin"], "*");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v, expected, "{path}");
    }
    // The advertised issuer is the real server, whose own metadata names the same issuer.
    let (status, as_meta) = s.get("/.well-known/oauth-authorization-server").await;
    assert_eq!(status, 200);
    assert_eq!(as_meta["issuer"], expected["authorization_servers"][0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_is_401_pointing_at_the_metadata_with_the_needed_scope() {
    let s = server().await;
    let res = notes(&s).build().unwrap();
    let base = serve(&res).await;
    for (headers, why) in [
        (vec![], "no header"),
        (
            vec![("authorization", &b"Basic YWxpY2U6c2VjcmV0"[..])],
            "another scheme",
        ),
    ] {
        let a = call(reqwest::Method::POST, &format!("{base}/mcp"), &headers).await;
        assert_eq!(a.status, 401, "{why}");
        assert_eq!(
            a.challenge.as_deref(),
            Some(
                format!(
                    "Bearer resource_metadata=\"{}\", scope=\"notes:read\"",
                    metadata_url()
                )
                .as_str()
            ),
            "{why}: no error attribute without a token (RFC 6750 §3.1)"
        );
        assert_eq!(a.json["error"], "missing_token", "{why}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_authorization_headers_are_refused_precisely_and_never_crash() {
    let s = server().await;
    let res = notes(&s).build().unwrap();
    let base = serve(&res).await;
    let url = format!("{base}/mcp");
    let long = format!("Bearer {}", "a".repeat(10_000));
    let cases: Vec<(Vec<&[u8]>, u16, &str)> = vec![
        (vec![b"Bearer"], 400, "invalid_request"),
        (vec![b"Bearer    "], 400, "invalid_request"),
        (vec![b"Bearer \"quoted\""], 400, "invalid_request"),
        (vec![b"Bearer a b c"], 400, "invalid_request"),
        (vec![b"Bearer \xff\xfe\xfd"], 400, "invalid_request"),
        (vec![b"Bearer x", b"Bearer y"], 400, "invalid_request"),
        (vec![b"Bearer abc"], 401, "malformed_token"),
        (vec![b"Bearer a.b.c"], 401, "malformed_token"),
        (vec![b"Bearer e30.e30.e30"], 401, "wrong_token_type"),
        (vec![b"Bearer W10.W10.x"], 401, "malformed_token"),
        (vec![b"Bearer a.b.c.d.e"], 401, "malformed_token"),
        (vec![long.as_bytes()], 401, "malformed_token"),
    ];
    for (values, status, code) in cases {
        let headers: Vec<(&str, &[u8])> = values.iter().map(|v| ("authorization", *v)).collect();
        let a = call(reqwest::Method::GET, &url, &headers).await;
        let shown = String::from_utf8_lossy(values[0])
            .chars()
            .take(40)
            .collect::<String>();
        assert_eq!(a.status, status, "{shown}: {}", a.json);
        assert_eq!(a.json["error"], code, "{shown}");
        let challenge = a.challenge.unwrap();
        let rfc6750 = if status == 400 {
            "invalid_request"
        } else {
            "invalid_token"
        };
        assert!(
            challenge.contains(&format!("error=\"{rfc6750}\"")),
            "{shown}: {challenge}"
        );
        assert!(challenge.contains(&metadata_url()), "{challenge}");
        assert!(a.json["error_description"].as_str().unwrap().len() > 10);
    }
    // Still serving.
    let at = access_token(&s, "notes:read").await;
    assert_eq!(get_with(&url, &at).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_for_another_resource_is_refused_naming_the_expected_audience() {
    let s = server().await;
    let res = notes(&s).build().unwrap();
    let pkce = Pkce::new();
    let mut p = params(&pkce, "files:read");
    p["resource"] = json!([OTHER_RESOURCE]);
    let code = s.code_for("alice", &p).await;
    let (status, body) = s
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", CLIENT),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &pkce.verifier),
            ("resource", OTHER_RESOURCE),
        ])
        .await;
    assert_eq!(status, 200, "{body}");
    let files_token = body["access_token"].as_str().unwrap();
    assert_eq!(jwt_claims(files_token)["aud"], OTHER_RESOURCE);
    assert_code(
        res.verify(files_token).await,
        "wrong_audience",
        &[OTHER_RESOURCE, RESOURCE],
    );
    let base = serve(&res).await;
    let a = get_with(&format!("{base}/mcp"), files_token).await;
    assert_eq!(a.status, 401);
    assert!(a.challenge.unwrap().contains("error=\"invalid_token\""));
    assert_eq!(a.json["error"], "wrong_audience");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_from_another_issuer_is_refused_even_with_a_valid_signature() {
    let s = server().await;
    // A second server on the same database signs with the same keys, as another issuer.
    let setup = Setup::new(Backend::Sqlite).introspection_secret(NOTES_SECRET);
    let other = s.sibling(&setup).await;
    assert_ne!(other.base, s.base);
    let foreign = access_token(&other, "notes:read").await;
    let res = notes(&s).build().unwrap();
    assert_code(
        res.verify(&foreign).await,
        "wrong_issuer",
        &[&other.base, &s.base],
    );
    assert_eq!(res.jwks_fetches(), 0, "refused before fetching keys for it");
    // The same key verifies the foreign token for a resource that trusts that issuer.
    let theirs = notes(&other).build().unwrap();
    theirs.verify(&foreign).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refused() {
    let s = Setup::new(Backend::Sqlite)
        .top("access_token_ttl_seconds", "30")
        .start()
        .await;
    let res = notes(&s).leeway(Duration::from_secs(1)).build().unwrap();
    let at = access_token(&s, "notes:read").await;
    res.verify(&at).await.unwrap();
    // The same token as issued 32 s ago, signed with the server's own key: past its exp by more
    // than the leeway, as the real one is after waiting out its 30 s.
    let at = s.aged_access_token(&at, 32).await;
    assert!(jwt_claims(&at)["exp"].as_i64().unwrap() < now() - 1);
    assert_code(
        res.verify(&at).await,
        "token_expired",
        &["expired", "leeway 1s"],
    );
    let base = serve(&res).await;
    let a = get_with(&format!("{base}/mcp"), &at).await;
    assert_eq!(a.status, 401);
    assert!(a.challenge.unwrap().contains("error=\"invalid_token\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_token_is_not_an_access_token() {
    let s = server().await;
    let res = notes(&s).build().unwrap();
    let t = tokens(&s, "alice", "openid notes:read").await;
    let id_token = t["id_token"].as_str().expect("openid gives an id_token");
    assert_ne!(header_of(id_token)["typ"], "at+jwt");
    assert_code(res.verify(id_token).await, "wrong_token_type", &["at+jwt"]);
    // Even relabelled as at+jwt it is refused: the signature no longer matches the header.
    let mut h = header_of(id_token);
    h["typ"] = json!("at+jwt");
    let sig = id_token.rsplit('.').next().unwrap();
    let relabelled = forge(id_token, &h, None, sig);
    assert!(res.verify(&relabelled).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alg_none_is_refused() {
    let s = server().await;
    let res = notes(&s).build().unwrap();
    let at = access_token(&s, "notes:read").await;
    let mut h = header_of(&at);
    for alg in ["none", "None", "NONE"] {
        h["alg"] = json!(alg);
        let unsigned = forge(&at, &h, None, "");
        assert_code(
            res.verify(&unsigned).await,
            "algorithm_not_allowed",
            &["never"],
        );
        let kept = forge(&at, &h, None, at.rsplit('.').next().unwrap());
        assert_code(res.verify(&kept).await, "algorithm_not_allowed", &[alg]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hs256_signed_with_the_public_key_is_refused() {
    let s = server().await;
    let res = notes(&s).build().unwrap();
    let at = access_token(&s, "notes:read notes:write").await;
    let jwks = s.jwks().await;
    let jwk = &jwks["keys"][0];
    let x = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
    let y = URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap();
    let point = [&[4u8][..], &x, &y].concat();
    let mut claims = jwt_claims(&at);
    claims["sub"] = json!("mallory");
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.typ = Some("at+jwt".into());
    header.kid = jwk["kid"].as_str().map(str::to_owned);
    let base = serve(&res).await;
    for secret in [jwk.to_string().into_bytes(), point] {
        let forged = jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(&secret),
        )
        .unwrap();
        assert_code(
            res.verify(&forged).await,
            "algorithm_not_allowed",
            &["HS256", "HMAC"],
        );
        let a = get_with(&format!("{base}/mcp"), &forged).await;
        assert_eq!(a.status, 401);
        assert_eq!(a.json["error"], "algorithm_not_allowed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_altered_payload_fails_the_signature() {
    let s = server().await;
    let res = notes(&s).build().unwrap();
    let at = access_token(&s, "notes:read").await;
    let mut claims = jwt_claims(&at);
    claims["sub"] = json!("mallory");
    claims["scope"] = json!("notes:read notes:write notes:admin");
    let sig = at.rsplit('.').next().unwrap();
    let tampered = forge(&at, &header_of(&at), Some(&claims), sig);
    assert_code(res.verify(&tampered).await, "bad_signature", &["signature"]);
    // An ES256 signature from another key (a TAT key) with the issuer's kid fails too.
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    h.typ = Some("at+jwt".into());
    h.kid = header_of(&at)["kid"].as_str().map(str::to_owned);
    let wrong_key = s.keys.sign_with_header(h, &claims);
    assert_code(res.verify(&wrong_key).await, "bad_signature", &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_is_fetched_on_its_unknown_kid_at_a_limited_rate() {
    let mut s = server().await;
    let eager = notes(&s)
        .jwks_refetch_interval(Duration::ZERO)
        .build()
        .unwrap();
    let limited = notes(&s)
        .jwks_refetch_interval(Duration::from_secs(300))
        .build()
        .unwrap();
    let before = access_token(&s, "notes:read").await;
    eager.verify(&before).await.unwrap();
    limited.verify(&before).await.unwrap();
    assert_eq!((eager.jwks_fetches(), limited.jwks_fetches()), (1, 1));

    let out = Command::new(binary())
        .args(["keys", "rotate", "--config"])
        .arg(&s.config_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.restart().await;
    let after = access_token(&s, "notes:read").await;
    assert_ne!(
        header_of(&after)["kid"],
        header_of(&before)["kid"],
        "the new key signs"
    );

    eager.verify(&after).await.unwrap();
    assert_eq!(
        eager.jwks_fetches(),
        2,
        "the unknown kid caused one refetch"
    );
    eager.verify(&before).await.unwrap();
    assert_eq!(
        eager.jwks_fetches(),
        2,
        "the retired key is still published and cached"
    );

    assert_code(
        limited.verify(&after).await,
        "unknown_key",
        &["next refetch allowed"],
    );
    assert_eq!(limited.jwks_fetches(), 1, "no refetch within the interval");
    limited.verify(&before).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kids_cause_one_fetch_however_many_arrive_at_once() {
    let s = server().await;
    let res = notes(&s).build().unwrap();
    let at = access_token(&s, "notes:read").await;
    // Cold cache, 16 concurrent valid tokens: one fetch (single flight).
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let res = res.clone();
            let at = at.clone();
            tokio::spawn(async move { res.verify(&at).await.map(|_| ()) })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(res.jwks_fetches(), 1);
    // 16 forged kids at once: refused, and no refetch within the default interval.
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let res = res.clone();
            let mut h = header_of(&at);
            h["kid"] = json!(format!("made-up-{i}"));
            let forged = forge(&at, &h, None, at.rsplit('.').next().unwrap());
            tokio::spawn(async move { res.verify(&forged).await.map(|_| ()) })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap_err().code(), "unknown_key");
    }
    assert_eq!(res.jwks_fetches(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_scope_is_403_naming_the_scope() {
    let s = server().await;
    let res = notes(&s).build().unwrap();
    let base = serve(&res).await;
    let read_only = access_token(&s, "notes:read").await;
    let h = format!("Bearer {read_only}");
    for path in ["/mcp/write", "/mcp/in-handler"] {
        let a = call(
            reqwest::Method::POST,
            &format!("{base}{path}"),
            &[("authorization", h.as_bytes())],
        )
        .await;
        assert_eq!(a.status, 403, "{path}");
        assert_eq!(a.json["error"], "insufficient_scope");
        let c = a.challenge.unwrap();
        assert!(
            c.starts_with(&format!(
                "Bearer resource_metadata=\"{}\", scope=\"notes:read notes:write\", error=\"insufficient_scope\", error_description=",
                metadata_url()
            )),
            "{c}"
        );
    }
    let rw = access_token(&s, "notes:read notes:write").await;
    let h = format!("Bearer {rw}");
    let a = call(
        reqwest::Method::POST,
        &format!("{base}/mcp/write"),
        &[("authorization", h.as_bytes())],
    )
    .await;
    assert_eq!(a.status, 200);
    // The baseline scope of the layer applies to every route: a token without notes:read
    // (only notes:write) is refused everywhere with 403 naming notes:read.
    let write_only = access_token(&s, "notes:write").await;
    let a = get_with(&format!("{base}/mcp"), &write_only).await;
    assert_eq!(a.status, 403);
    assert!(a.challenge.unwrap().contains("scope=\"notes:read\""));
}

/// MCP 2025-11-25 "Scope Challenge Handling" (RFC 6750 §3): the `scope` of a step-up challenge
/// names every scope the request needs, those the token already has included. `ToolScopes`
/// once named only the tool's (`notes:write`) although the layer requires `notes:read` of every
/// request: a client that re-authorized with exactly the challenged scope got a token that
/// could call nothing, `initialize` included. Here the client does just that and succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reauthorizes_with_exactly_the_challenged_scope_can_read_and_write() {
    let s = server().await;
    let res = notes(&s).build().unwrap();
    let app = Router::new()
        .route("/mcp", post(|| async { "ok" }))
        .layer(
            consentry_resource::mcp::ToolScopes::new()
                .tool("list_notes", ["notes:read"])
                .tool("add_note", ["notes:write"]),
        )
        .layer(res.layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let rpc = |token: &str, body: Value| {
        let (url, h) = (format!("{base}/mcp"), format!("Bearer {token}"));
        async move {
            let body = serde_json::to_vec(&body).unwrap();
            let r = reqwest::Client::new()
                .post(url)
                .header("authorization", h)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let challenge = r
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned());
            (r.status().as_u16(), challenge)
        }
    };
    let call = |tool: &str| json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": tool, "arguments": {}}});
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}});

    let read_only = access_token(&s, "notes:read").await;
    assert_eq!(rpc(&read_only, call("list_notes")).await.0, 200);
    let (status, challenge) = rpc(&read_only, call("add_note")).await;
    assert_eq!(status, 403);
    let challenge = challenge.unwrap();
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    let challenged = challenge
        .split("scope=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    // The layer's scopes first, then the tool's, each once.
    assert_eq!(challenged, "notes:read notes:write", "{challenge}");

    // Re-authorize with exactly the challenged scope, as the spec tells a client to.
    let stepped_up = access_token(&s, &challenged).await;
    for body in [initialize, call("list_notes"), call("add_note")] {
        let (status, challenge) = rpc(&stepped_up, body.clone()).await;
        assert_eq!(status, 200, "{body}: {challenge:?}");
    }
    // A batch asking for a tool needing only what the layer requires names it once.
    let (status, challenge) = rpc(
        &read_only,
        json!([call("list_notes"), call("add_note"), call("list_notes")]),
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        challenge
            .unwrap()
            .contains("scope=\"notes:read notes:write\""),
    );
}

async fn revoke_grant(s: &TestServer, refresh_token: &str) {
    let r = s
        .http
        .post(s.url("/oauth2/revoke"))
        .form(&[("token", refresh_token), ("client_id", CLIENT)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_grant_is_refused_when_introspection_is_on() {
    let s = server().await;
    let checked = notes(&s)
        .introspection(NOTES_SECRET)
        .introspection_cache(Duration::from_secs(2))
        .build()
        .unwrap();
    let uncached = notes(&s)
        .introspection(NOTES_SECRET)
        .introspection_cache(Duration::ZERO)
        .build()
        .unwrap();
    let unchecked = notes(&s).build().unwrap();
    let t = tokens(&s, "alice", "notes:read").await;
    let at = t["access_token"].as_str().unwrap();
    for r in [&checked, &uncached, &unchecked] {
        r.verify(at).await.unwrap();
    }
    revoke_grant(&s, t["refresh_token"].as_str().unwrap()).await;

    assert_code(uncached.verify(at).await, "token_revoked", &["revoked"]);
    checked
        .verify(at)
        .await
        .expect("an active answer is trusted for the cache period");
    unchecked
        .verify(at)
        .await
        .expect("without introspection a signature-valid token stands until it expires");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_code(checked.verify(at).await, "token_revoked", &[]);

    let base = serve(&uncached).await;
    let a = get_with(&format!("{base}/mcp"), at).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.json["error"], "token_revoked");
    assert!(a.challenge.unwrap().contains("error=\"invalid_token\""));
}

/// A CORS preflight cannot carry a token. Without a CORS layer outside the bearer layer to
/// answer it, it gets an empty 204 from the bearer layer: it never reaches an application whose
/// handler takes any method (here `any`, and the fallback), which would run unauthenticated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preflight_never_reaches_the_application_unauthenticated() {
    let s = server().await;
    let res = notes(&s).build().unwrap();
    let reached = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (r1, r2) = (reached.clone(), reached.clone());
    let app = Router::new()
        .route(
            "/mcp",
            axum::routing::any(move || async move {
                r1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                "secret data"
            }),
        )
        .fallback(move || async move {
            r2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            "secret data"
        })
        .layer(res.layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    for path in ["/mcp", "/anything"] {
        let r = reqwest::Client::new()
            .request(reqwest::Method::OPTIONS, format!("http://{addr}{path}"))
            .header("origin", "https://evil.example")
            .header("access-control-request-method", "POST")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204, "{path}");
        assert!(r.headers().get("access-control-allow-origin").is_none());
        assert_eq!(r.text().await.unwrap(), "");
    }
    // A plain OPTIONS (no preflight header) is a request like any other: it needs a token.
    let a = call(reqwest::Method::OPTIONS, &format!("http://{addr}/mcp"), &[]).await;
    assert_eq!(a.status, 401);
    assert_eq!(reached.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_introspection_secret_fails_closed() {
    let s = server().await;
    let res = notes(&s)
        .introspection("not-the-secret-0123456789abcdefghijklmn")
        .build()
        .unwrap();
    let at = access_token(&s, "notes:read").await;
    assert_code(
        res.verify(&at).await,
        "temporarily_unavailable",
        &["introspection", "401"],
    );
    let base = serve(&res).await;
    let a = get_with(&format!("{base}/mcp"), &at).await;
    assert_eq!(a.status, 503);
    assert!(a.challenge.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_issuer_fails_closed_and_known_keys_outlive_it() {
    let mut s = server().await;
    let at = access_token(&s, "notes:read").await;
    let res = notes(&s)
        .jwks_max_age(Duration::ZERO)
        .jwks_refetch_interval(Duration::ZERO)
        .build()
        .unwrap();
    res.verify(&at).await.unwrap();
    s.stop();
    // Keys already fetched stay usable while the issuer is down (the refetch fails).
    res.verify(&at).await.unwrap();
    assert_eq!(res.jwks_fetches(), 2);
    // A resource that never got the keys cannot verify anything: 503, not 401.
    let cold = notes(&s).build().unwrap();
    assert_code(
        cold.verify(&at).await,
        "temporarily_unavailable",
        &["jwks.json"],
    );
}

/// A member of an organization: the caller says which, so the MCP server can scope its data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_organization_comes_from_the_token() {
    let s = Setup::new(Backend::Sqlite)
        .configure(|c| {
            c.token_profiles[0].claims = Some(consentry_testkit::config::Claims {
                organization_id: Some("org_id".into()),
                ..Default::default()
            });
        })
        .start()
        .await;
    let mut claims = tat_claims("alice");
    claims["org_id"] = json!("acme");
    let (status, body) = s.attest(&s.keys.sign(&claims)).await;
    assert_eq!(status, 200, "{body}");
    let session = body["session_token"].as_str().unwrap();
    let pkce = Pkce::new();
    let p = params(&pkce, "notes:read");
    s.start_flow(session, &p).await;
    let (_, body) = s.submit(session, &p, true).await;
    let code = query(body["redirect_uri"].as_str().unwrap())["code"].clone();
    let (status, t) = s.redeem(&code, CLIENT, REDIRECT, &pkce.verifier).await;
    assert_eq!(status, 200, "{t}");
    let caller = notes(&s)
        .build()
        .unwrap()
        .verify(t["access_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(caller.org_id(), Some("acme"));
    assert_eq!(caller.user_id(), "alice");
}
