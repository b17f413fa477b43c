//! The example MCP server as an MCP client meets it: the real `consentry` binary issues tokens
//! through the full HTTP flow, the real example binary serves MCP over Streamable HTTP, and the
//! test speaks JSON-RPC over HTTP (initialize, tools/list, tools/call), including the 401 that
//! starts discovery and the 403 that makes a client step up.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use consentry_testkit::*;
use serde_json::{Value, json};

const INTROSPECTION_SECRET: &str = "example-introspection-secret-0123456789abcdef";

/// The example server process, killed on drop.
struct McpServer {
    child: Child,
    dir: tempfile::TempDir,
    resource: String,
    base: String,
}

impl Drop for McpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl McpServer {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mcp.log")).unwrap_or_default()
    }
}

enum Started {
    Yes(McpServer),
    PortTaken,
}

fn start_mcp(port: u16, issuer: &str, resource: &str, extra: &[&str]) -> Started {
    let dir = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(dir.path().join("mcp.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_consentry-example-mcp-server"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--issuer", issuer, "--resource", resource])
        .args(extra)
        .env("MCP_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn the example MCP server");
    let mut server = McpServer {
        child,
        dir,
        resource: resource.to_owned(),
        base: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let listening = format!("listening on http://127.0.0.1:{port}");
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            let log = server.log();
            if log.contains("cannot bind") {
                return Started::PortTaken;
            }
            panic!("the MCP server exited early ({status}): {log}");
        }
        if server.log().contains(&listening) {
            return Started::Yes(server);
        }
        assert!(
            Instant::now() < deadline,
            "MCP server not ready: {}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Consentry with a `[[resources]]` entry for the MCP server's URL, and the MCP server on that
/// port (a port taken between probe and bind: try another).
async fn start(extra_args: &[&str]) -> (TestServer, McpServer) {
    for _ in 0..5 {
        let port = free_port();
        let resource = format!("http://127.0.0.1:{port}/mcp");
        let configured = resource.clone();
        let s = Setup::new(Backend::Sqlite)
            .configure(move |c| {
                c.resources.push(
                    config::Resource::new(
                        configured.clone(),
                        "Example notes",
                        &["notes:read", "notes:write"],
                    )
                    .default_scopes(&["notes:read"])
                    .introspection_secret(INTROSPECTION_SECRET),
                )
            })
            .start()
            .await;
        match start_mcp(port, &s.base, &resource, extra_args) {
            Started::Yes(m) => return (s, m),
            Started::PortTaken => continue,
        }
    }
    panic!("no free port for the MCP server after 5 attempts");
}

/// An access token for `user` with `scope`, for the MCP server's resource.
async fn token(s: &TestServer, m: &McpServer, user: &str, scope: &str) -> Value {
    let pkce = Pkce::new();
    let mut p = params(&pkce, scope);
    p["resource"] = json!([m.resource]);
    let code = s.code_for(user, &p).await;
    let (status, body) = s
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", CLIENT),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &pkce.verifier),
            ("resource", &m.resource),
        ])
        .await;
    assert_eq!(status, 200, "token: {body}");
    body
}

async fn access_token(s: &TestServer, m: &McpServer, user: &str, scope: &str) -> String {
    token(s, m, user, scope).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

struct Reply {
    status: u16,
    challenge: Option<String>,
    session: Option<String>,
    /// The JSON-RPC message answering the request (from JSON or from the SSE stream).
    message: Value,
    text: String,
}

/// POST one JSON-RPC message to the MCP endpoint as a Streamable HTTP client does.
async fn post(m: &McpServer, bearer: Option<&str>, session: Option<&str>, msg: &Value) -> Reply {
    let mut req = reqwest::Client::new()
        .post(&m.resource)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .json(msg);
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    if let Some(sid) = session {
        req = req.header("mcp-session-id", sid);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let header = |n: &str| r.headers().get(n).map(|v| v.to_str().unwrap().to_owned());
    let challenge = header("www-authenticate");
    let session = header("mcp-session-id");
    let sse = header("content-type").is_some_and(|c| c.starts_with("text/event-stream"));
    let text = r.text().await.unwrap();
    let message = if sse {
        // The response to our request is the data event carrying our id.
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .find(|v| v.get("id") == msg.get("id") && msg.get("id").is_some())
            .unwrap_or(Value::Null)
    } else {
        serde_json::from_str(&text).unwrap_or(Value::Null)
    };
    Reply {
        status,
        challenge,
        session,
        message,
        text,
    }
}

/// initialize + notifications/initialized; returns the session id.
async fn initialize(m: &McpServer, bearer: &str) -> String {
    let r = post(
        m,
        Some(bearer),
        None,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "consentry-test", "version": "0"}
        }}),
    )
    .await;
    assert_eq!(r.status, 200, "initialize: {}", r.text);
    assert_eq!(
        r.message["result"]["serverInfo"]["name"], "consentry-example-notes",
        "{}",
        r.text
    );
    let sid = r.session.expect("a session id");
    let n = post(
        m,
        Some(bearer),
        Some(&sid),
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert_eq!(n.status, 202, "initialized: {}", n.text);
    sid
}

async fn call_tool(
    m: &McpServer,
    bearer: &str,
    sid: &str,
    id: u64,
    name: &str,
    args: Value,
) -> Reply {
    post(
        m,
        Some(bearer),
        Some(sid),
        &json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": name, "arguments": args}}),
    )
    .await
}

fn metadata_url(m: &McpServer) -> String {
    format!("{}/.well-known/oauth-protected-resource/mcp", m.base)
}

// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_a_token_is_sent_to_discovery() {
    let (s, m) = start(&[]).await;
    let r = post(
        &m,
        None,
        None,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}),
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert_eq!(
        r.challenge.as_deref(),
        Some(
            format!(
                "Bearer resource_metadata=\"{}\", scope=\"notes:read\"",
                metadata_url(&m)
            )
            .as_str()
        )
    );
    // Follow the challenge as a client does: resource metadata → authorization server metadata.
    let prm: Value = reqwest::get(metadata_url(&m))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(prm["resource"], m.resource);
    assert_eq!(prm["authorization_servers"], json!([s.base]));
    assert_eq!(
        prm["scopes_supported"],
        json!(["notes:read", "notes:write"])
    );
    assert_eq!(prm["bearer_methods_supported"], json!(["header"]));
    let issuer = prm["authorization_servers"][0].as_str().unwrap();
    let asm: Value = reqwest::get(format!("{issuer}/.well-known/oauth-authorization-server"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(asm["issuer"], issuer);
    assert_eq!(asm["code_challenge_methods_supported"], json!(["S256"]));
    // A bad token on the same endpoint: invalid_token.
    let r = post(
        &m,
        Some("not-a-jwt"),
        None,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
    )
    .await;
    assert_eq!(r.status, 401);
    assert!(r.challenge.unwrap().contains("error=\"invalid_token\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_run_as_the_user_of_the_token() {
    let (s, m) = start(&[]).await;
    let alice = access_token(&s, &m, "alice", "notes:read notes:write").await;
    let sid = initialize(&m, &alice).await;

    let r = post(
        &m,
        Some(&alice),
        Some(&sid),
        &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut names: Vec<&str> = r.message["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["add_note", "list_notes"]);

    let r = call_tool(&m, &alice, &sid, 3, "list_notes", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.message["result"]["structuredContent"],
        json!({"user": "alice", "notes": []}),
        "{}",
        r.text
    );
    let r = call_tool(&m, &alice, &sid, 4, "add_note", json!({"text": "buy milk"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.message["result"]["structuredContent"]["note"],
        json!({"id": 1, "text": "buy milk"}),
        "{}",
        r.text
    );
    let r = call_tool(&m, &alice, &sid, 5, "list_notes", json!({})).await;
    assert_eq!(
        r.message["result"]["structuredContent"]["notes"],
        json!([{"id": 1, "text": "buy milk"}])
    );

    // Bob, in his own session, sees his own (empty) notes.
    let bob = access_token(&s, &m, "bob", "notes:read").await;
    let bob_sid = initialize(&m, &bob).await;
    let r = call_tool(&m, &bob, &bob_sid, 6, "list_notes", json!({})).await;
    assert_eq!(
        r.message["result"]["structuredContent"],
        json!({"user": "bob", "notes": []}),
        "{}",
        r.text
    );
    // Identity comes from each request's token, never from the session id.
    let r = call_tool(&m, &bob, &sid, 7, "list_notes", json!({})).await;
    assert_eq!(
        r.message["result"]["structuredContent"]["user"], "bob",
        "{}",
        r.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_note_with_a_read_only_token_is_403_and_step_up_fixes_it() {
    let (s, m) = start(&[]).await;
    let read_only = access_token(&s, &m, "carol", "notes:read").await;
    let sid = initialize(&m, &read_only).await;
    let r = call_tool(&m, &read_only, &sid, 2, "add_note", json!({"text": "x"})).await;
    assert_eq!(r.status, 403, "{}", r.text);
    let c = r.challenge.unwrap();
    assert!(
        c.starts_with(&format!(
            "Bearer resource_metadata=\"{}\", scope=\"notes:read notes:write\", error=\"insufficient_scope\"",
            metadata_url(&m)
        )),
        "{c}"
    );
    // Batches cannot smuggle the call past the check.
    let batch = json!([
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "list_notes", "arguments": {}}},
        {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "add_note", "arguments": {"text": "y"}}}
    ]);
    assert_eq!(
        post(&m, Some(&read_only), Some(&sid), &batch).await.status,
        403
    );
    // Reading still works with the same token.
    let r = call_tool(&m, &read_only, &sid, 5, "list_notes", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.message["result"]["structuredContent"]["notes"], json!([]));

    // Step up: authorize again with exactly the challenged scope (it names every scope the
    // call needs, the baseline notes:read included), retry in the same session.
    let challenged = c
        .split("scope=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap();
    assert_eq!(challenged, "notes:read notes:write");
    let stepped = access_token(&s, &m, "carol", challenged).await;
    let r = call_tool(
        &m,
        &stepped,
        &sid,
        6,
        "add_note",
        json!({"text": "after step-up"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.message["result"]["structuredContent"]["user"], "carol");
    // The same token reads too.
    let r = call_tool(&m, &stepped, &sid, 7, "list_notes", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.message["result"]["structuredContent"]["notes"][0]["text"],
        "after step-up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_for_another_resource_or_without_the_base_scope_is_refused() {
    let (s, m) = start(&[]).await;
    // A token for the harness's default resource (another audience).
    let pkce = Pkce::new();
    let other = s
        .tokens_for("dave", &pkce, &params(&pkce, "notes:read notes:write"))
        .await;
    let r = post(
        &m,
        other["access_token"].as_str(),
        None,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}),
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert!(r.challenge.unwrap().contains("error=\"invalid_token\""));
    assert_eq!(r.message["error"], "wrong_audience");
    assert!(
        r.message["error_description"]
            .as_str()
            .unwrap()
            .contains(&m.resource)
    );

    // Write-only: every MCP request needs notes:read.
    let write_only = access_token(&s, &m, "dave", "notes:write").await;
    let r = post(
        &m,
        Some(&write_only),
        None,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.challenge.unwrap().contains("scope=\"notes:read\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_grant_stops_working_with_introspection_on() {
    let (s, m) = start(&["--introspection-secret", INTROSPECTION_SECRET]).await;
    let t = token(&s, &m, "erin", "notes:read notes:write").await;
    let at = t["access_token"].as_str().unwrap();
    let sid = initialize(&m, at).await;
    let r = call_tool(&m, at, &sid, 2, "list_notes", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let revoked = s
        .http
        .post(s.url("/oauth2/revoke"))
        .form(&[
            ("token", t["refresh_token"].as_str().unwrap()),
            ("client_id", CLIENT),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    // The example trusts an "active" answer for 10 s.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = call_tool(&m, at, &sid, 3, "list_notes", json!({})).await;
        if r.status == 401 {
            assert_eq!(r.message["error"], "token_revoked", "{}", r.text);
            assert!(r.challenge.unwrap().contains("error=\"invalid_token\""));
            break;
        }
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(
            Instant::now() < deadline,
            "still accepted 20 s after revocation"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
