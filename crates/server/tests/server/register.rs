//! Dynamic Client Registration (RFC 7591) and its management protocol (RFC 7592), client
//! authentication at the token endpoint and the client_credentials grant, each attacked over
//! HTTP against the real server. The registration payloads of real MCP clients (Claude, ChatGPT,
//! Cursor, VS Code, the MCP Inspector) must register and then complete a real authorization.
//! Every refusal must name the field at fault and must store nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use consentry_testkit::*;
use reqwest::Method;
use serde_json::{Value, json};

on_both_backends!(
    claude_shape_registers_confidential_post_and_refreshes,
    chatgpt_shape_registers_public_and_refreshes_without_a_scope,
    vscode_shape_registers_native_with_https_and_any_loopback_port,
    cursor_shape_registers_with_a_private_use_scheme_as_native,
    mcp_inspector_shape_registers_with_an_empty_scope,
    registration_response_carries_rfc7591_fields_and_defaults,
    registration_redirect_uris_are_validated_and_nothing_is_stored,
    registration_metadata_is_validated_and_nothing_is_stored,
    registration_disabled_mode_refuses,
    registration_initial_access_token_mode_needs_a_configured_token,
    registration_is_rate_limited_per_address,
    registration_limit_keys_ipv6_by_64_and_believes_only_trusted_proxies,
    registration_has_a_global_cap_per_minute,
    registration_body_over_16_kb_is_refused,
    wrong_initial_access_tokens_are_limited_before_comparing,
    rfc7592_read_needs_this_clients_token_and_shows_no_secret,
    rfc7592_update_replaces_metadata_and_redirect_uris_take_effect,
    rfc7592_update_cannot_switch_public_and_confidential,
    rfc7592_update_does_not_inherit_consent,
    rfc7592_delete_forgets_the_client_and_revokes_its_grants,
    client_auth_secret_basic_is_checked_and_refusals_change_nothing,
    client_auth_basic_credentials_are_form_urlencoded,
    client_auth_public_client_must_not_send_a_secret,
    client_credentials_issues_a_token_for_the_client_itself,
    client_credentials_scope_and_resource_are_bounded,
    client_credentials_needs_the_grant_and_a_confidential_client,
    client_credentials_only_client_cannot_authorize,
    client_credentials_is_closed_to_open_registration_and_role_gated_scopes,
    consent_marks_registered_clients_unverified_with_redirect_host,
    registration_endpoint_allows_cors_from_any_origin,
    a_client_registered_for_one_scope_steps_up_with_the_users_consent,
    registration_refuses_every_bidi_control_in_client_name,
    registration_uri_fields_are_https_only_without_fragment,
    registration_refresh_token_needs_authorization_code,
    registration_client_name_is_trimmed,
);

const ADMIN_KEY: &str = "admin-key-0123456789abcdef-0123456789";

/// A config client for client_credentials (brief: `[[clients]]` with a secret).
const SVC_SECRET: &str = "svc-secret-0123456789abcdef-0123456789";
/// A config client whose id and secret need form-urlencoding in HTTP Basic (RFC 6749 §2.3.1).
const ODD_ID: &str = "svc:ops+1 x%/?";
const ODD_SECRET: &str = "p@ss:w0rd+with spaces&more/%25-0123456789abcdef";

fn svc_clients() -> String {
    format!(
        r#"
[[clients]]
client_id = "svc"
client_name = "Svc"
redirect_uris = []
token_endpoint_auth_method = "client_secret_basic"
client_secret = "{SVC_SECRET}"
grant_types = ["client_credentials"]

[[clients]]
client_id = "{ODD_ID}"
client_name = "Odd"
redirect_uris = []
token_endpoint_auth_method = "client_secret_basic"
client_secret = "{ODD_SECRET}"
grant_types = ["client_credentials"]

[registration]
mode = "initial_access_token"
initial_access_tokens = ["{IAT}"]
"#
    )
}

/// The initial access token of the servers that let registered clients use client_credentials
/// (open registration may not: anyone could register). `register` always presents it; open
/// registration ignores it.
const IAT: &str = "iat-cc-0123456789abcdef-0123456789abcdef";

fn with_admin(b: Backend) -> Setup {
    Setup::new(b).top("admin_key", &format!("\"{ADMIN_KEY}\""))
}

fn desc(body: &Value) -> &str {
    body["error_description"].as_str().unwrap_or("")
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

async fn register(srv: &TestServer, body: &Value) -> (u16, Value) {
    srv.post_json("/oauth2/register", Some(IAT), body).await
}

async fn register_ok(srv: &TestServer, body: &Value) -> Value {
    let (status, reg) = register(srv, body).await;
    assert_eq!(status, 201, "register {body}: {reg}");
    reg
}

/// The ids of the dynamically registered clients, from the admin API.
async fn registered_ids(srv: &TestServer) -> Vec<String> {
    let r = srv
        .raw(
            Method::GET,
            "/admin/v1/clients?limit=1000",
            &[("authorization", &format!("Bearer {ADMIN_KEY}"))],
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json["clients"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["source"] == "registered")
        .map(|c| s(&c["client_id"]).to_owned())
        .collect()
}

/// An RFC 7592 call on `/oauth2/register/{id}`.
async fn manage(
    srv: &TestServer,
    method: Method,
    client_id: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> RawResponse {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = Vec::new();
    if let Some(a) = &auth {
        headers.push(("authorization", a));
    }
    let bytes = match body {
        Some(b) => {
            headers.push(("content-type", "application/json"));
            serde_json::to_vec(b).unwrap()
        }
        None => Vec::new(),
    };
    srv.raw(
        method,
        &format!("/oauth2/register/{}", form_urlencode(client_id)),
        &headers,
        bytes,
    )
    .await
}

/// How a client authenticates at the token endpoint.
#[derive(Clone, Copy)]
enum Auth<'a> {
    None,
    Post(&'a str),
    Basic(&'a str),
}

/// The registered method of a registration response, with its secret.
fn auth_of(reg: &Value) -> Auth<'_> {
    match s(&reg["token_endpoint_auth_method"]) {
        "none" => Auth::None,
        "client_secret_post" => Auth::Post(s(&reg["client_secret"])),
        "client_secret_basic" => Auth::Basic(s(&reg["client_secret"])),
        other => panic!("unexpected method {other}"),
    }
}

/// POST to the token endpoint as `client_id` authenticating with `auth`.
async fn token_as(
    srv: &TestServer,
    client_id: &str,
    auth: Auth<'_>,
    form: &[(&str, &str)],
) -> RawResponse {
    let mut f: Vec<(&str, &str)> = form.to_vec();
    let basic;
    let mut headers: Vec<(&str, &str)> = Vec::new();
    match auth {
        Auth::None => f.push(("client_id", client_id)),
        Auth::Post(secret) => {
            f.push(("client_id", client_id));
            f.push(("client_secret", secret));
        }
        Auth::Basic(secret) => {
            basic = basic_auth(client_id, secret);
            headers.push(("authorization", &basic));
        }
    }
    srv.token_with(&headers, &f).await
}

/// Authorization parameters for a registered client.
fn auth_params(client_id: &str, redirect_uri: &str, pkce: &Pkce, scope: Option<&str>) -> Value {
    let mut p = json!({
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "response_type": "code",
        "state": "st-reg",
        "code_challenge": pkce.challenge,
        "code_challenge_method": "S256",
        "resource": [RESOURCE],
    });
    if let Some(sc) = scope {
        p["scope"] = json!(sc);
    }
    p
}

/// attest → start → submit → code → token for a registered client, authenticating the way it
/// registered; returns the token response.
async fn full_flow(
    srv: &TestServer,
    user: &str,
    reg: &Value,
    redirect_uri: &str,
    scope: Option<&str>,
) -> Value {
    let client_id = s(&reg["client_id"]);
    let pkce = Pkce::new();
    let p = auth_params(client_id, redirect_uri, &pkce, scope);
    let session = srv.session(user).await;
    let (status, start) = srv.start_flow(&session, &p).await;
    assert_eq!(status, 200, "start: {start}");
    assert_eq!(start["client"]["client_id"], client_id);
    assert_eq!(start["client"]["verified"], false, "{start}");
    let (status, body) = srv.submit(&session, &p, true).await;
    assert_eq!(status, 200, "submit: {body}");
    let loc = s(&body["redirect_uri"]);
    assert!(
        loc.starts_with(&format!("{redirect_uri}?")),
        "{loc} vs {redirect_uri}"
    );
    let q = query(loc);
    assert_eq!(q["state"], "st-reg");
    assert_eq!(q["iss"], srv.base);
    let r = token_as(
        srv,
        client_id,
        auth_of(reg),
        &[
            ("grant_type", "authorization_code"),
            ("code", &q["code"]),
            ("redirect_uri", redirect_uri),
            ("code_verifier", &pkce.verifier),
            ("resource", RESOURCE),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "token: {}", r.text);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let claims = srv.verify_access_token(s(&r.json["access_token"])).await;
    assert_eq!(claims["client_id"], client_id);
    assert_eq!(claims["aud"], RESOURCE);
    assert!(r.json["refresh_token"].is_string(), "{}", r.json);
    r.json
}

/// Refresh as the registered client; asserts success and a rotated refresh token.
async fn refresh_ok(srv: &TestServer, reg: &Value, refresh_token: &str) -> Value {
    let client_id = s(&reg["client_id"]);
    let r = token_as(
        srv,
        client_id,
        auth_of(reg),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "refresh: {}", r.text);
    let next = s(&r.json["refresh_token"]);
    assert_ne!(next, refresh_token, "refresh tokens rotate");
    let claims = srv.verify_access_token(s(&r.json["access_token"])).await;
    assert_eq!(claims["client_id"], client_id);
    r.json
}

fn assert_registered_shape(reg: &Value, confidential: bool) {
    let id = s(&reg["client_id"]);
    assert!(!id.starts_with("https://"), "{id}");
    assert!(reg["client_id_issued_at"].as_i64().unwrap() > now() - 120);
    assert!(reg["registration_access_token"].is_string(), "{reg}");
    assert!(
        s(&reg["registration_client_uri"]).ends_with(&format!("/oauth2/register/{id}")),
        "{reg}"
    );
    if confidential {
        assert!(s(&reg["client_secret"]).len() >= 32, "{reg}");
        assert_eq!(reg["client_secret_expires_at"], 0, "{reg}");
    } else {
        assert!(reg.get("client_secret").is_none(), "{reg}");
        assert!(reg.get("client_secret_expires_at").is_none(), "{reg}");
    }
}

// ------------------------------------------------------------------------------------------
// Real client payloads

async fn claude_shape_registers_confidential_post_and_refreshes(b: Backend) {
    let srv = Setup::new(b).start().await;
    // Claude (claude.ai / Claude Desktop custom connectors) registers by DCR with its fixed
    // callbacks and authenticates at the token endpoint with client_secret_post.
    // Shape: https://github.com/neondatabase/mcp-server-neon/blob/main/scripts/register-claude-client.ts
    // client_secret_post: https://github.com/anthropics/claude-ai-mcp/issues/667
    // Callback URLs and client name "Claude": https://support.anthropic.com/en/articles/11503834-building-custom-connectors-via-remote-mcp-servers
    let payload = json!({
        "client_name": "Claude",
        "client_uri": "https://claude.ai",
        "redirect_uris": [
            "https://claude.ai/api/mcp/auth_callback",
            "https://claude.com/api/mcp/auth_callback"
        ],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "client_secret_post"
    });
    let reg = register_ok(&srv, &payload).await;
    assert_registered_shape(&reg, true);
    assert_eq!(reg["token_endpoint_auth_method"], "client_secret_post");
    assert_eq!(reg["client_name"], "Claude");
    assert_eq!(reg["client_uri"], "https://claude.ai");
    assert_eq!(reg["redirect_uris"], payload["redirect_uris"]);
    assert_eq!(reg["application_type"], "web");

    let tok = full_flow(
        &srv,
        "claude-user",
        &reg,
        "https://claude.ai/api/mcp/auth_callback",
        Some("notes:read notes:write"),
    )
    .await;
    assert_eq!(tok["scope"], "notes:read notes:write");
    let tok = refresh_ok(&srv, &reg, s(&tok["refresh_token"])).await;
    let tok = refresh_ok(&srv, &reg, s(&tok["refresh_token"])).await;

    // Its secret via the other method is refused, naming the registered one; nothing rotates.
    let id = s(&reg["client_id"]);
    let rt = s(&tok["refresh_token"]);
    let r = token_as(
        &srv,
        id,
        Auth::Basic(s(&reg["client_secret"])),
        &[("grant_type", "refresh_token"), ("refresh_token", rt)],
    )
    .await;
    assert_error(
        (r.status, &r.json),
        401,
        "invalid_client",
        &["client_secret_post"],
    );
    // The other callback also works.
    full_flow(
        &srv,
        "claude-user",
        &reg,
        "https://claude.com/api/mcp/auth_callback",
        Some("notes:read"),
    )
    .await;
    refresh_ok(&srv, &reg, rt).await;
}

async fn chatgpt_shape_registers_public_and_refreshes_without_a_scope(b: Backend) {
    let srv = Setup::new(b).start().await;
    // ChatGPT connectors register by DCR as a public PKCE client (token_endpoint_auth_method
    // "none": https://github.com/garrytan/gbrain/pull/894) with the callback
    // https://chatgpt.com/connector_platform_oauth_redirect (legacy) or
    // https://chatgpt.com/connector/oauth/<callback_id> (per connector):
    // https://github.com/makeplane/plane-mcp-server/pull/165 ,
    // https://github.com/kunickiaj/codemem/pull/1286 . On reconnect it authorizes without
    // `scope`: https://community.openai.com/t/oauth-missing-scopes-after-reconnect/1366784
    let payload = json!({
        "client_name": "ChatGPT",
        "redirect_uris": [
            "https://chatgpt.com/connector_platform_oauth_redirect",
            "https://chatgpt.com/connector/oauth/OUbdUMlL15Ct"
        ],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none"
    });
    let reg = register_ok(&srv, &payload).await;
    assert_registered_shape(&reg, false);
    assert_eq!(reg["token_endpoint_auth_method"], "none");

    let tok = full_flow(
        &srv,
        "gpt-user",
        &reg,
        "https://chatgpt.com/connector_platform_oauth_redirect",
        Some("notes:read"),
    )
    .await;
    let tok = refresh_ok(&srv, &reg, s(&tok["refresh_token"])).await;
    refresh_ok(&srv, &reg, s(&tok["refresh_token"])).await;

    // Reconnect: no scope at all, the resource's defaults apply.
    let tok = full_flow(
        &srv,
        "gpt-user",
        &reg,
        "https://chatgpt.com/connector/oauth/OUbdUMlL15Ct",
        None,
    )
    .await;
    assert_eq!(tok["scope"], "notes:read", "{tok}");
    refresh_ok(&srv, &reg, s(&tok["refresh_token"])).await;
}

async fn vscode_shape_registers_native_with_https_and_any_loopback_port(b: Backend) {
    let srv = Setup::new(b).start().await;
    // VS Code's fetchDynamicRegistration (src/vs/base/common/oauth.ts):
    // https://github.com/microsoft/vscode/blob/main/src/vs/base/common/oauth.ts
    // (application_type "native" with https vscode.dev redirects next to loopback ones; at run
    // time it may use another loopback port: https://github.com/microsoft/vscode/issues/278512)
    let payload = json!({
        "client_name": "Visual Studio Code",
        "client_uri": "https://code.visualstudio.com",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "redirect_uris": [
            "https://insiders.vscode.dev/redirect",
            "https://vscode.dev/redirect",
            "http://127.0.0.1/",
            "http://127.0.0.1:33418/"
        ],
        "scope": "notes:read notes:write",
        "token_endpoint_auth_method": "none",
        "application_type": "native"
    });
    let reg = register_ok(&srv, &payload).await;
    assert_registered_shape(&reg, false);
    assert_eq!(reg["application_type"], "native");
    assert_eq!(reg["scope"], "notes:read notes:write");

    // An ephemeral loopback port (RFC 8252 §7.3), then the https redirect.
    let tok = full_flow(
        &srv,
        "code-user",
        &reg,
        "http://127.0.0.1:54321/",
        Some("notes:read"),
    )
    .await;
    refresh_ok(&srv, &reg, s(&tok["refresh_token"])).await;
    full_flow(
        &srv,
        "code-user",
        &reg,
        "https://vscode.dev/redirect",
        Some("notes:write"),
    )
    .await;
    // The loopback rule is only about the port: another host or path is refused.
    let session = srv.session("code-user").await;
    let pkce = Pkce::new();
    for bad in ["http://localhost:54321/", "http://127.0.0.1:54321/x"] {
        let p = auth_params(s(&reg["client_id"]), bad, &pkce, None);
        let (status, e) = srv.start_flow(&session, &p).await;
        assert_error((status, &e), 400, "invalid_redirect_uri", &["redirect_uri"]);
        assert!(e.get("redirect_uri").is_none(), "never redirected: {e}");
    }
}

async fn cursor_shape_registers_with_a_private_use_scheme_as_native(b: Backend) {
    let srv = Setup::new(b).start().await;
    // Cursor registers three redirect URIs in one request, as a public client, without
    // application_type: https://github.com/erp-mafia/accounted/pull/2225 ,
    // https://github.com/soflyy/agent-connector-for-wp/issues/111 ,
    // https://github.com/better-auth/better-auth/pull/10956 (application_type omitted).
    let payload = json!({
        "client_name": "Cursor",
        "redirect_uris": [
            "cursor://anysphere.cursor-mcp/oauth/callback",
            "https://www.cursor.com/agents/mcp/oauth/callback",
            "http://localhost:8787/callback"
        ],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none"
    });
    let reg = register_ok(&srv, &payload).await;
    assert_registered_shape(&reg, false);
    // A private-use scheme makes it a native app (RFC 8252 §7.1), not a refused "web" client.
    assert_eq!(reg["application_type"], "native");

    let tok = full_flow(
        &srv,
        "cursor-user",
        &reg,
        "cursor://anysphere.cursor-mcp/oauth/callback",
        Some("notes:read"),
    )
    .await;
    refresh_ok(&srv, &reg, s(&tok["refresh_token"])).await;
    full_flow(
        &srv,
        "cursor-user",
        &reg,
        "http://localhost:8787/callback",
        Some("notes:read"),
    )
    .await;

    // The consent screen shows the scheme for the private-use redirect, the host otherwise.
    let session = srv.session("cursor-user").await;
    let pkce = Pkce::new();
    for (uri, host) in [
        ("cursor://anysphere.cursor-mcp/oauth/callback", "cursor"),
        (
            "https://www.cursor.com/agents/mcp/oauth/callback",
            "www.cursor.com",
        ),
    ] {
        let p = auth_params(s(&reg["client_id"]), uri, &pkce, Some("notes:read"));
        let (status, start) = srv.start_flow(&session, &p).await;
        assert_eq!(status, 200, "{start}");
        assert_eq!(start["redirect_host"], host);
    }

    // Stated explicitly as "web", a private-use scheme stays refused.
    let mut web = payload.clone();
    web["application_type"] = json!("web");
    let (status, e) = register(&srv, &web).await;
    assert_error(
        (status, &e),
        400,
        "invalid_redirect_uri",
        &["redirect_uris", "cursor://", "web"],
    );
}

async fn mcp_inspector_shape_registers_with_an_empty_scope(b: Backend) {
    let srv = Setup::new(b).start().await;
    // The MCP Inspector's clientMetadata (client/src/lib/auth.ts): scope is `this.scope ?? ""`.
    // https://github.com/modelcontextprotocol/inspector/blob/main/client/src/lib/auth.ts
    let payload = json!({
        "redirect_uris": [
            "http://localhost:6274/oauth/callback",
            "http://localhost:6274/oauth/callback/debug"
        ],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "client_name": "MCP Inspector",
        "client_uri": "https://github.com/modelcontextprotocol/inspector",
        "scope": ""
    });
    let reg = register_ok(&srv, &payload).await;
    assert_registered_shape(&reg, false);
    assert!(
        reg.get("scope").is_none(),
        "an empty scope is no scope: {reg}"
    );
    assert_eq!(reg["application_type"], "web");
    let tok = full_flow(
        &srv,
        "inspector-user",
        &reg,
        "http://localhost:6274/oauth/callback/debug",
        Some("notes:read notes:write"),
    )
    .await;
    refresh_ok(&srv, &reg, s(&tok["refresh_token"])).await;
}

// ------------------------------------------------------------------------------------------
// The registration response

async fn registration_response_carries_rfc7591_fields_and_defaults(b: Backend) {
    let srv = Setup::new(b).start().await;
    let (_, meta) = srv.get("/.well-known/oauth-authorization-server").await;
    assert_eq!(
        meta["registration_endpoint"],
        format!("{}/oauth2/register", srv.base)
    );

    let r = srv
        .raw(
            Method::POST,
            "/oauth2/register",
            &[("content-type", "application/json")],
            br#"{"redirect_uris":["https://app.example/cb"],"client_name":"App"}"#.to_vec(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let reg = &r.json;
    assert_registered_shape(reg, true);
    let id = s(&reg["client_id"]);
    assert_eq!(
        reg["registration_client_uri"],
        format!("{}/oauth2/register/{id}", srv.base)
    );
    // RFC 7591 §2 defaults, filled and echoed.
    assert_eq!(reg["token_endpoint_auth_method"], "client_secret_basic");
    assert_eq!(
        reg["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );
    assert_eq!(reg["response_types"], json!(["code"]));
    assert_eq!(reg["application_type"], "web");
    assert_eq!(reg["redirect_uris"], json!(["https://app.example/cb"]));
    assert_eq!(reg["client_name"], "App");
    // The secret is not the registration token, and each registration gets its own of both.
    assert_ne!(reg["client_secret"], reg["registration_access_token"]);
    let other = register_ok(&srv, &json!({"redirect_uris": ["https://app.example/cb"]})).await;
    assert_ne!(other["client_id"], reg["client_id"]);
    assert_ne!(other["client_secret"], reg["client_secret"]);
    assert_ne!(
        other["registration_access_token"],
        reg["registration_access_token"]
    );
    // Without a name the client is shown by its id.
    assert!(other.get("client_name").is_none(), "{other}");

    // A public client: no secret fields at all.
    let public = register_ok(
        &srv,
        &json!({"redirect_uris": ["https://app.example/cb"], "token_endpoint_auth_method": "none"}),
    )
    .await;
    assert_registered_shape(&public, false);

    // The client_id is chosen by the server, never by the registrant.
    let chosen = register_ok(
        &srv,
        &json!({"client_id": "https://evil.example/client.json", "redirect_uris": ["https://app.example/cb"]}),
    )
    .await;
    assert_ne!(chosen["client_id"], "https://evil.example/client.json");
    assert_registered_shape(&chosen, true);
}

// ------------------------------------------------------------------------------------------
// Validation

async fn registration_redirect_uris_are_validated_and_nothing_is_stored(b: Backend) {
    let srv = with_admin(b)
        .extra("[registration]\nrate_limit_per_minute = 1000")
        .start()
        .await;
    let many: Vec<String> = (0..21)
        .map(|i| format!("https://app.example/cb{i}"))
        .collect();
    let cases: Vec<(&str, Value, &[&str])> = vec![
        (
            "fragment",
            json!({"redirect_uris": ["https://app.example/cb#frag"]}),
            &["redirect_uris", "fragment"],
        ),
        (
            "javascript:",
            json!({"redirect_uris": ["javascript:alert(1)"]}),
            &["redirect_uris", "javascript"],
        ),
        (
            "javascript: for native",
            json!({"redirect_uris": ["javascript:alert(1)"], "application_type": "native"}),
            &["redirect_uris", "javascript"],
        ),
        (
            "data:",
            json!({"redirect_uris": ["data:text/html,<script>alert(1)</script>"]}),
            &["redirect_uris", "data"],
        ),
        (
            "vbscript:",
            json!({"redirect_uris": ["vbscript:msgbox(1)"], "application_type": "native"}),
            &["redirect_uris", "vbscript"],
        ),
        (
            "file:",
            json!({"redirect_uris": ["file:///etc/passwd"], "application_type": "native"}),
            &["redirect_uris", "file"],
        ),
        (
            "http non-loopback for web",
            json!({"redirect_uris": ["http://evil.example/cb"]}),
            &["redirect_uris", "http://evil.example/cb", "web"],
        ),
        (
            "http non-loopback for native",
            json!({"redirect_uris": ["http://evil.example/cb"], "application_type": "native"}),
            &["redirect_uris", "http://evil.example/cb", "native"],
        ),
        (
            "http on a host that merely starts like a loopback one",
            json!({"redirect_uris": ["http://127.0.0.1.evil.example/cb"]}),
            &["redirect_uris"],
        ),
        (
            "private-use scheme for an explicit web client",
            json!({"redirect_uris": ["com.example.app:/cb"], "application_type": "web"}),
            &["redirect_uris", "com.example.app:/cb", "web"],
        ),
        (
            "userinfo",
            json!({"redirect_uris": ["https://app.example@evil.example/cb"]}),
            &["redirect_uris"],
        ),
        // A browser reads '\' as '/' and goes to evil.example; the screen would show the rest.
        (
            "backslash",
            json!({"redirect_uris": ["https://evil.example\\good.example/cb"]}),
            &["redirect_uris", "'\\'"],
        ),
        (
            "backslash for native",
            json!({"redirect_uris": ["com.example.app://evil.example\\cb"], "application_type": "native"}),
            &["redirect_uris", "'\\'"],
        ),
        // A browser decodes the host (evil.example) and turns number-ending hosts into an IPv4
        // address: what the screen would show is not where the browser goes.
        (
            "percent-encoded host",
            json!({"redirect_uris": ["https://evil%2eexample/cb"]}),
            &["redirect_uris", "evil%2eexample"],
        ),
        (
            "short IPv4 loopback",
            json!({"redirect_uris": ["http://127.1/cb"]}),
            &["redirect_uris", "127.1"],
        ),
        (
            "non-canonical IPv6",
            json!({"redirect_uris": ["http://[0:0:0:0:0:0:0:1]/cb"]}),
            &["redirect_uris"],
        ),
        (
            "port above 65535",
            json!({"redirect_uris": ["https://app.example:99999/cb"]}),
            &["redirect_uris"],
        ),
        (
            "missing",
            json!({"client_name": "No redirect"}),
            &["redirect_uris", "authorization_code"],
        ),
        (
            "empty",
            json!({"redirect_uris": []}),
            &["redirect_uris", "authorization_code"],
        ),
        (
            "relative",
            json!({"redirect_uris": ["/callback"]}),
            &["redirect_uris"],
        ),
        (
            "space",
            json!({"redirect_uris": ["https://app.example/c b"]}),
            &["redirect_uris"],
        ),
        (
            "one bad among good",
            json!({"redirect_uris": ["https://app.example/cb", "http://evil.example/cb"]}),
            &["redirect_uris", "http://evil.example/cb"],
        ),
        (
            "more than 20",
            json!({"redirect_uris": many}),
            &["redirect_uris", "20"],
        ),
    ];
    for (what, body, mentions) in &cases {
        let (status, e) = register(&srv, body).await;
        assert_eq!(status, 400, "{what}: {e}");
        assert_error((status, &e), 400, "invalid_redirect_uri", mentions);
    }
    assert_eq!(
        registered_ids(&srv).await,
        Vec::<String>::new(),
        "a refused registration stores nothing"
    );

    // Allowed: https for web and native (RFC 8252 §7.2), loopback http on any of the three
    // loopback hosts, a private-use scheme for native, exactly 20 URIs.
    let twenty: Vec<String> = (0..20)
        .map(|i| format!("https://app.example/cb{i}"))
        .collect();
    for body in [
        json!({"redirect_uris": ["https://app.example/cb?x=1"]}),
        json!({"redirect_uris": ["https://app.example/cb"], "application_type": "native"}),
        json!({"redirect_uris": ["http://127.0.0.1/cb", "http://[::1]:8080/cb", "http://localhost/cb"]}),
        json!({"redirect_uris": ["com.example.app:/oauth/cb"], "application_type": "native"}),
        json!({"redirect_uris": twenty}),
    ] {
        register_ok(&srv, &body).await;
    }
    assert_eq!(registered_ids(&srv).await.len(), 5);
}

async fn registration_metadata_is_validated_and_nothing_is_stored(b: Backend) {
    let srv = with_admin(b)
        .extra("[registration]\nrate_limit_per_minute = 1000")
        .start()
        .await;
    let uris = json!(["https://app.example/cb"]);
    let with = |k: &str, v: Value| {
        let mut m = json!({"redirect_uris": uris});
        m[k] = v;
        m
    };
    let long_name = "n".repeat(201);
    let cases: Vec<(&str, Value, &[&str])> = vec![
        (
            "application_type",
            with("application_type", json!("ios")),
            &["application_type", "'ios'"],
        ),
        (
            "private_key_jwt",
            with("token_endpoint_auth_method", json!("private_key_jwt")),
            &["token_endpoint_auth_method", "private_key_jwt"],
        ),
        (
            "password grant",
            with("grant_types", json!(["authorization_code", "password"])),
            &["grant_types", "password"],
        ),
        (
            "implicit grant",
            with("grant_types", json!(["implicit"])),
            &["grant_types", "implicit"],
        ),
        (
            "device_code grant",
            with(
                "grant_types",
                json!(["urn:ietf:params:oauth:grant-type:device_code"]),
            ),
            &["grant_types"],
        ),
        (
            "client_credentials for a public client",
            json!({"redirect_uris": uris, "grant_types": ["client_credentials"], "token_endpoint_auth_method": "none"}),
            &["grant_types", "client_credentials", "confidential"],
        ),
        (
            "response_types token",
            with("response_types", json!(["code", "token"])),
            &["response_types", "token"],
        ),
        (
            "logo_uri over http",
            with("logo_uri", json!("http://evil.example/x.png")),
            &["logo_uri", "https"],
        ),
        (
            "client_uri javascript",
            with("client_uri", json!("javascript:alert(1)")),
            &["client_uri"],
        ),
        (
            "policy_uri relative",
            with("policy_uri", json!("/policy")),
            &["policy_uri"],
        ),
        (
            "tos_uri with a space",
            with("tos_uri", json!("https://app.example/t o s")),
            &["tos_uri"],
        ),
        (
            "unknown scope",
            with("scope", json!("notes:read notes:delete")),
            &["scope", "notes:delete"],
        ),
        (
            "bad scope token",
            with("scope", json!("notes:read \"quoted\"")),
            &["scope"],
        ),
        (
            "client_name with a NUL",
            with("client_name", json!("Evil\u{0}App")),
            &["client_name", "control"],
        ),
        (
            "client_name with a newline",
            with("client_name", json!("Trusted App\nClick allow")),
            &["client_name", "control"],
        ),
        (
            "client_name with a bidi override",
            with("client_name", json!("App\u{202e}lanigirO")),
            &["client_name"],
        ),
        (
            "client_name blank",
            with("client_name", json!("   ")),
            &["client_name"],
        ),
        (
            "client_name too long",
            with("client_name", json!(long_name)),
            &["client_name", "200"],
        ),
        (
            "redirect_uris a string",
            json!({"redirect_uris": "x"}),
            &["redirect_uris"],
        ),
        (
            "grant_types a string",
            with("grant_types", json!("authorization_code")),
            &["grant_types"],
        ),
        (
            "client_name a number",
            with("client_name", json!(5)),
            &["client_name"],
        ),
        (
            "contacts an object",
            with("contacts", json!({"a": 1})),
            &["contacts"],
        ),
        (
            "too many contacts",
            with("contacts", json!(vec!["a@example.com"; 11])),
            &["contacts"],
        ),
        (
            "not an object",
            json!(["https://app.example/cb"]),
            &["object"],
        ),
    ];
    for (what, body, mentions) in &cases {
        let (status, e) = register(&srv, body).await;
        assert_eq!(status, 400, "{what}: {e}");
        assert_eq!(e["error"], "invalid_client_metadata", "{what}: {e}");
        assert_error((status, &e), 400, "invalid_client_metadata", mentions);
    }
    // Not JSON at all.
    let r = srv
        .raw(
            Method::POST,
            "/oauth2/register",
            &[("content-type", "application/json")],
            b"redirect_uris=https://app.example/cb".to_vec(),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json["error"], "invalid_request");
    assert_eq!(registered_ids(&srv).await, Vec::<String>::new());
}

// ------------------------------------------------------------------------------------------
// Modes and rate limit

async fn registration_disabled_mode_refuses(b: Backend) {
    let srv = with_admin(b)
        .extra("[registration]\nmode = \"disabled\"")
        .start()
        .await;
    let (status, e) = register(&srv, &json!({"redirect_uris": ["https://app.example/cb"]})).await;
    assert_eq!(status, 403, "{e}");
    assert!(desc(&e).contains("disabled"), "{e}");
    assert_eq!(registered_ids(&srv).await, Vec::<String>::new());
    // Configured clients keep working.
    let pkce = Pkce::new();
    srv.tokens_for("u1", &pkce, &params(&pkce, "notes:read"))
        .await;
}

async fn registration_initial_access_token_mode_needs_a_configured_token(b: Backend) {
    let good = "iat-0123456789abcdef-0123456789abcdef";
    let srv = with_admin(b)
        .extra(&format!(
            "[registration]\nmode = \"initial_access_token\"\ninitial_access_tokens = [\"other-token-0123456789abcdef-0123456\", \"{good}\"]"
        ))
        .start()
        .await;
    let body = json!({"redirect_uris": ["https://app.example/cb"]});
    let prefix = &good[..good.len() - 1];
    let longer = format!("{good}x");
    for bearer in [
        None,
        Some("wrong"),
        Some(prefix),
        Some(longer.as_str()),
        Some(""),
    ] {
        let (status, e) = srv.post_json("/oauth2/register", bearer, &body).await;
        assert_error(
            (status, &e),
            401,
            "invalid_token",
            &["initial access token"],
        );
    }
    // The token in another scheme is not a bearer token.
    let r = srv
        .raw(
            Method::POST,
            "/oauth2/register",
            &[
                ("content-type", "application/json"),
                ("authorization", &format!("Basic {good}")),
            ],
            serde_json::to_vec(&body).unwrap(),
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert_eq!(registered_ids(&srv).await, Vec::<String>::new());

    let (status, reg) = srv.post_json("/oauth2/register", Some(good), &body).await;
    assert_eq!(status, 201, "{reg}");
    let (status, reg2) = srv
        .post_json(
            "/oauth2/register",
            Some("other-token-0123456789abcdef-0123456"),
            &body,
        )
        .await;
    assert_eq!(status, 201, "{reg2}");
    // The initial access token is not a registration access token.
    let r = manage(&srv, Method::GET, s(&reg["client_id"]), Some(good), None).await;
    assert_eq!(r.status, 401);
    assert_eq!(registered_ids(&srv).await.len(), 2);
}

async fn registration_is_rate_limited_per_address(b: Backend) {
    let srv = with_admin(b)
        .extra("[registration]\nrate_limit_per_minute = 3")
        .start()
        .await;
    let body = json!({"redirect_uris": ["https://app.example/cb"]});
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(s(&register_ok(&srv, &body).await["client_id"]).to_owned());
    }
    let r = register_from(&srv, Some(IAT), None, &body).await;
    assert_error((r.status, &r.json), 429, "rate_limited", &["3"]);
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "Retry-After: {wait}");
    // A refused (invalid) registration is also refused by the limit, before validation.
    let (status, e) = register(&srv, &json!({"redirect_uris": ["javascript:x"]})).await;
    assert_eq!(status, 429, "{e}");
    let mut stored = registered_ids(&srv).await;
    stored.sort();
    ids.sort();
    assert_eq!(stored, ids, "the limited registration stored nothing");
    // Management of existing registrations is not limited.
    let reg = &ids[0];
    let r = manage(&srv, Method::GET, reg, Some("nope"), None).await;
    assert_eq!(r.status, 401);
}

/// POST /oauth2/register with an optional bearer token and `X-Forwarded-For`.
async fn register_from(
    srv: &TestServer,
    bearer: Option<&str>,
    forwarded_for: Option<&str>,
    body: &Value,
) -> RawResponse {
    let auth = bearer.map(|b| format!("Bearer {b}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("authorization", a));
    }
    if let Some(f) = forwarded_for {
        headers.push(("x-forwarded-for", f));
    }
    srv.raw(
        Method::POST,
        "/oauth2/register",
        &headers,
        serde_json::to_vec(body).unwrap(),
    )
    .await
}

#[track_caller]
fn assert_429_with_retry_after(r: &RawResponse) {
    assert_eq!(r.status, 429, "{}", r.text);
    assert_eq!(r.json["error"], "rate_limited", "{}", r.text);
    let wait: u64 = r
        .header("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After: {:?}", r.headers))
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "Retry-After: {wait}");
}

/// The per-address limit counts an IPv6 /64 as one address (one subscriber holds a whole /64),
/// and reads `X-Forwarded-For` only from a trusted proxy, right-most untrusted entry first.
async fn registration_limit_keys_ipv6_by_64_and_believes_only_trusted_proxies(b: Backend) {
    let body = json!({"redirect_uris": ["https://app.example/cb"]});
    let srv = with_admin(b.clone())
        .top("trusted_proxies", "[\"127.0.0.0/8\", \"10.0.0.0/8\"]")
        .extra("[registration]\nrate_limit_per_minute = 2")
        .start()
        .await;
    // The client put a fake address first; the proxies appended the real one and their own.
    let via = |client: &str| format!("192.0.2.1, {client}, 10.1.1.1");
    for client in ["2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff"] {
        let r = register_from(&srv, None, Some(&via(client)), &body).await;
        assert_eq!(r.status, 201, "{client}: {}", r.text);
    }
    // A third address of the same /64: over the limit.
    let r = register_from(&srv, None, Some(&via("2001:db8:1:2::99")), &body).await;
    assert_429_with_retry_after(&r);
    // The next /64, and an IPv4 client, have their own windows; the forged entry is ignored.
    for client in ["2001:db8:1:3::1", "198.51.100.4"] {
        let r = register_from(&srv, None, Some(&via(client)), &body).await;
        assert_eq!(r.status, 201, "{client}: {}", r.text);
    }
    assert_eq!(registered_ids(&srv).await.len(), 4);

    // Without trusted_proxies the header is anyone's word: every request is the peer's.
    let srv = with_admin(b)
        .extra("[registration]\nrate_limit_per_minute = 2")
        .start()
        .await;
    for (i, client) in ["203.0.113.1", "203.0.113.2", "203.0.113.3"]
        .iter()
        .enumerate()
    {
        let r = register_from(&srv, None, Some(client), &body).await;
        if i < 2 {
            assert_eq!(r.status, 201, "{}", r.text);
        } else {
            assert_429_with_retry_after(&r);
        }
    }
}

/// `registration.global_rate_limit_per_minute` bounds registrations from everyone together;
/// refused (invalid) registrations do not use it up.
async fn registration_has_a_global_cap_per_minute(b: Backend) {
    let srv = with_admin(b)
        .top("trusted_proxies", "[\"127.0.0.1\"]")
        .extra("[registration]\nrate_limit_per_minute = 100\nglobal_rate_limit_per_minute = 3")
        .start()
        .await;
    let body = json!({"redirect_uris": ["https://app.example/cb"]});
    for i in 0..5 {
        let r = register_from(
            &srv,
            None,
            Some(&format!("198.51.100.{i}")),
            &json!({"redirect_uris": ["javascript:x"]}),
        )
        .await;
        assert_eq!(r.status, 400, "{}", r.text);
    }
    for i in 0..3 {
        let r = register_from(&srv, None, Some(&format!("203.0.113.{i}")), &body).await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let r = register_from(&srv, None, Some("203.0.113.200"), &body).await;
    assert_429_with_retry_after(&r);
    assert!(
        desc(&r.json).contains("3 registrations per minute"),
        "{}",
        r.text
    );
    assert_eq!(registered_ids(&srv).await.len(), 3);
}

/// Registration metadata is at most 16 KB (a registered client is stored, and shown, for a
/// long time): a larger body is invalid_client_metadata naming the limit, for registration and
/// for an RFC 7592 update, and nothing is stored.
async fn registration_body_over_16_kb_is_refused(b: Backend) {
    let srv = with_admin(b).start().await;
    let padded = |bytes: usize| {
        let mut body = json!({"redirect_uris": ["https://app.example/cb"], "x_padding": ""});
        let base = serde_json::to_vec(&body).unwrap().len();
        body["x_padding"] = json!("p".repeat(bytes - base));
        assert_eq!(serde_json::to_vec(&body).unwrap().len(), bytes);
        body
    };
    let reg = register_ok(&srv, &padded(16 * 1024)).await;
    for bytes in [16 * 1024 + 1, 37 * 1024, 100 * 1024] {
        let (status, e) = register(&srv, &padded(bytes)).await;
        assert_error(
            (status, &e),
            400,
            "invalid_client_metadata",
            &["16384 bytes"],
        );
    }
    assert_eq!(
        registered_ids(&srv).await,
        vec![s(&reg["client_id"]).to_owned()]
    );
    let mut update = padded(20 * 1024);
    update["client_id"] = reg["client_id"].clone();
    let r = manage(
        &srv,
        Method::PUT,
        s(&reg["client_id"]),
        Some(s(&reg["registration_access_token"])),
        Some(&update),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json["error"], "invalid_client_metadata");
    assert!(desc(&r.json).contains("16384 bytes"), "{}", r.text);
}

/// Wrong initial access tokens are counted per client address: past
/// `rate_limit_per_minute` of them, 429 with Retry-After — and the token is not even compared,
/// so the right token from that address is refused too. Another address is not affected.
async fn wrong_initial_access_tokens_are_limited_before_comparing(b: Backend) {
    let good = "iat-0123456789abcdef-0123456789abcdef";
    let srv = with_admin(b)
        .top("trusted_proxies", "[\"127.0.0.1\"]")
        .extra(&format!(
            "[registration]\nmode = \"initial_access_token\"\ninitial_access_tokens = [\"{good}\"]\nrate_limit_per_minute = 5"
        ))
        .start()
        .await;
    let body = json!({"redirect_uris": ["https://app.example/cb"]});
    let guesser = Some("203.0.113.66");
    let mut statuses = Vec::new();
    for i in 0..40 {
        let guess = format!("iat-0123456789abcdef-0123456789abcd{i:02}");
        let r = register_from(&srv, Some(&guess), guesser, &body).await;
        if r.status == 429 {
            assert_429_with_retry_after(&r);
        }
        statuses.push(r.status);
    }
    assert_eq!(statuses[..5], [401; 5], "{statuses:?}");
    assert_eq!(statuses[5..], [429; 35], "{statuses:?}");
    let r = register_from(&srv, Some(good), guesser, &body).await;
    assert_429_with_retry_after(&r);
    // Another client address registers with the token.
    let r = register_from(&srv, Some(good), Some("203.0.113.67"), &body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(registered_ids(&srv).await.len(), 1);
}

// ------------------------------------------------------------------------------------------
// RFC 7592

async fn rfc7592_read_needs_this_clients_token_and_shows_no_secret(b: Backend) {
    let srv = Setup::new(b).start().await;
    let a = register_ok(
        &srv,
        &json!({"redirect_uris": ["https://a.example/cb"], "client_name": "A", "scope": "notes:read"}),
    )
    .await;
    let bb = register_ok(&srv, &json!({"redirect_uris": ["https://b.example/cb"]})).await;
    let a_id = s(&a["client_id"]);
    let a_tok = s(&a["registration_access_token"]);
    let b_tok = s(&bb["registration_access_token"]);

    let r = manage(&srv, Method::GET, a_id, Some(a_tok), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.json["client_id"], a_id);
    assert_eq!(r.json["client_name"], "A");
    assert_eq!(r.json["scope"], "notes:read");
    assert_eq!(r.json["redirect_uris"], json!(["https://a.example/cb"]));
    assert_eq!(r.json["grant_types"], a["grant_types"]);
    assert_eq!(r.json["client_id_issued_at"], a["client_id_issued_at"]);
    assert_eq!(
        r.json["registration_client_uri"],
        a["registration_client_uri"]
    );
    for secret in [
        "client_secret",
        "registration_access_token",
        "client_secret_expires_at",
    ] {
        assert!(r.json.get(secret).is_none(), "{secret} in {}", r.json);
    }
    assert!(!r.text.contains(s(&a["client_secret"])));

    // Wrong, missing, another client's: all 401 invalid_token.
    let a_secret = s(&a["client_secret"]);
    for tok in [None, Some("cyt-wrong"), Some(b_tok), Some(a_secret)] {
        let r = manage(&srv, Method::GET, a_id, tok, None).await;
        assert_error((r.status, &r.json), 401, "invalid_token", &[]);
        assert!(r.header("www-authenticate").is_some());
    }
    // No probing: an unknown client answers exactly like a wrong token on a known one.
    let known = manage(&srv, Method::GET, a_id, Some(b_tok), None).await;
    let unknown = manage(&srv, Method::GET, "cyc-does-not-exist", Some(b_tok), None).await;
    assert_eq!(known.status, unknown.status);
    assert_eq!(known.json, unknown.json);
    // A configured client cannot be managed, even by a valid registration token.
    let r = manage(&srv, Method::GET, CLIENT, Some(a_tok), None).await;
    assert_eq!(r.json, known.json);
    // The same token in another scheme is not accepted.
    let r = srv
        .raw(
            Method::GET,
            &format!("/oauth2/register/{a_id}"),
            &[("authorization", &format!("Basic {a_tok}"))],
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, 401);
    // B's own token still works for B, and A's for A afterwards.
    assert_eq!(
        manage(&srv, Method::GET, s(&bb["client_id"]), Some(b_tok), None)
            .await
            .status,
        200
    );
    assert_eq!(
        manage(&srv, Method::GET, a_id, Some(a_tok), None)
            .await
            .status,
        200
    );
}

async fn rfc7592_update_replaces_metadata_and_redirect_uris_take_effect(b: Backend) {
    let srv = with_admin(b).start().await;
    let reg = register_ok(
        &srv,
        &json!({"redirect_uris": ["https://old.example/cb"], "client_name": "Old", "token_endpoint_auth_method": "none", "logo_uri": "https://old.example/logo.png"}),
    )
    .await;
    let id = s(&reg["client_id"]);
    let tok = s(&reg["registration_access_token"]);
    let new_md = json!({
        "client_id": id,
        "redirect_uris": ["https://new.example/cb"],
        "token_endpoint_auth_method": "none",
        "client_name": "New",
    });

    // client_id in the body is required and must match.
    let mut no_id = new_md.clone();
    no_id.as_object_mut().unwrap().remove("client_id");
    let r = manage(&srv, Method::PUT, id, Some(tok), Some(&no_id)).await;
    assert_error(
        (r.status, &r.json),
        400,
        "invalid_request",
        &["client_id", id],
    );
    let mut other_id = new_md.clone();
    other_id["client_id"] = json!("cyc-someone-else");
    let r = manage(&srv, Method::PUT, id, Some(tok), Some(&other_id)).await;
    assert_error(
        (r.status, &r.json),
        400,
        "invalid_request",
        &["client_id", id],
    );
    // Wrong token: 401, nothing changes.
    let r = manage(&srv, Method::PUT, id, Some("cyt-wrong"), Some(&new_md)).await;
    assert_error((r.status, &r.json), 401, "invalid_token", &[]);
    // Invalid metadata: refused like at registration, nothing changes.
    let mut bad = new_md.clone();
    bad["redirect_uris"] = json!(["javascript:alert(1)"]);
    let r = manage(&srv, Method::PUT, id, Some(tok), Some(&bad)).await;
    assert_error(
        (r.status, &r.json),
        400,
        "invalid_redirect_uri",
        &["redirect_uris"],
    );
    let mut bad = new_md.clone();
    bad["redirect_uris"] = json!("https://new.example/cb");
    let r = manage(&srv, Method::PUT, id, Some(tok), Some(&bad)).await;
    assert_error(
        (r.status, &r.json),
        400,
        "invalid_client_metadata",
        &["redirect_uris"],
    );
    let r = manage(&srv, Method::GET, id, Some(tok), None).await;
    assert_eq!(r.json["redirect_uris"], json!(["https://old.example/cb"]));
    assert_eq!(r.json["client_name"], "Old");

    // The old redirect works before the update.
    full_flow(
        &srv,
        "up-user",
        &reg,
        "https://old.example/cb",
        Some("notes:read"),
    )
    .await;

    let r = manage(&srv, Method::PUT, id, Some(tok), Some(&new_md)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.json["client_id"], id);
    assert_eq!(r.json["redirect_uris"], json!(["https://new.example/cb"]));
    assert_eq!(r.json["client_name"], "New");
    assert_eq!(r.json["client_id_issued_at"], reg["client_id_issued_at"]);
    // Replace, not merge: the logo that was not sent again is gone.
    assert!(r.json.get("logo_uri").is_none(), "{}", r.json);
    let r = manage(&srv, Method::GET, id, Some(tok), None).await;
    assert_eq!(r.json["redirect_uris"], json!(["https://new.example/cb"]));

    // At authorize: the old redirect URI is refused (shown, never redirected), the new works.
    let session = srv.session("up-user").await;
    let pkce = Pkce::new();
    let p = auth_params(id, "https://old.example/cb", &pkce, Some("notes:read"));
    let (status, e) = srv.start_flow(&session, &p).await;
    assert_error(
        (status, &e),
        400,
        "invalid_redirect_uri",
        &["https://old.example/cb"],
    );
    assert!(e.get("redirect_uri").is_none(), "{e}");
    let (status, start) = srv
        .start_flow(
            &session,
            &auth_params(id, "https://new.example/cb", &pkce, Some("notes:read")),
        )
        .await;
    assert_eq!(status, 200, "{start}");
    assert_eq!(start["client"]["client_name"], "New");
    assert_eq!(start["redirect_host"], "new.example");
    let mut updated = reg.clone();
    updated["redirect_uris"] = json!(["https://new.example/cb"]);
    full_flow(
        &srv,
        "up-user",
        &updated,
        "https://new.example/cb",
        Some("notes:read"),
    )
    .await;
    // The registration token survives the update.
    assert_eq!(
        manage(&srv, Method::GET, id, Some(tok), None).await.status,
        200
    );
}

/// Remembered consent is bound to a fingerprint of the client's metadata: after an RFC 7592
/// update (here: one more redirect URI), the consent given before is not inherited, neither at
/// the old redirect URI nor at the new one, and errors at the new one are shown, not redirected.
async fn rfc7592_update_does_not_inherit_consent(b: Backend) {
    let srv = Setup::new(b).start().await;
    let (a, evil) = ("https://app.example/cb", "https://evil.example/cb");
    let reg = register_ok(
        &srv,
        &json!({"redirect_uris": [a], "client_name": "Inherit", "token_endpoint_auth_method": "none"}),
    )
    .await;
    let id = s(&reg["client_id"]);
    let tok = s(&reg["registration_access_token"]);
    full_flow(&srv, "inherit-user", &reg, a, Some("notes:read")).await;
    let session = srv.session("inherit-user").await;
    let pkce = Pkce::new();
    let (status, st) = srv
        .start_flow(&session, &auth_params(id, a, &pkce, Some("notes:read")))
        .await;
    assert_eq!(status, 200, "{st}");
    assert_eq!(
        st["consent_required"], false,
        "remembered before the update: {st}"
    );

    let r = manage(
        &srv,
        Method::PUT,
        id,
        Some(tok),
        Some(&json!({"client_id": id, "redirect_uris": [a, evil], "client_name": "Inherit", "token_endpoint_auth_method": "none"})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    for uri in [a, evil] {
        let p = auth_params(id, uri, &pkce, Some("notes:read"));
        let (status, st) = srv.start_flow(&session, &p).await;
        assert_eq!(status, 200, "{uri}: {st}");
        assert_eq!(st["consent_required"], true, "{uri}: {st}");
        assert_eq!(
            st["scope_results"][0]["already_granted"], false,
            "{uri}: {st}"
        );
        let mut none = p.clone();
        none["prompt"] = json!("none");
        let (status, e) = srv.start_flow(&session, &none).await;
        assert_eq!(status, 400, "{uri}: {e}");
        assert_eq!(e["error"], "consent_required", "{uri}: {e}");
        assert!(e.get("redirect_uri").is_none(), "{uri}: {e}");
    }
    // Connected apps still lists the consent given before, and revoking it works.
    let r = srv
        .raw(
            Method::GET,
            "/v1/connected_apps",
            &[("authorization", &format!("Bearer {session}"))],
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.text.contains(id), "{}", r.text);
}

async fn rfc7592_update_cannot_switch_public_and_confidential(b: Backend) {
    let srv = Setup::new(b).start().await;
    let public = register_ok(
        &srv,
        &json!({"redirect_uris": ["https://p.example/cb"], "token_endpoint_auth_method": "none"}),
    )
    .await;
    let conf = register_ok(&srv, &json!({"redirect_uris": ["https://c.example/cb"]})).await;

    for (reg, to) in [
        (&public, "client_secret_basic"),
        (&public, "client_secret_post"),
        (&conf, "none"),
    ] {
        let id = s(&reg["client_id"]);
        let body = json!({"client_id": id, "redirect_uris": reg["redirect_uris"], "token_endpoint_auth_method": to});
        let r = manage(
            &srv,
            Method::PUT,
            id,
            Some(s(&reg["registration_access_token"])),
            Some(&body),
        )
        .await;
        assert_error(
            (r.status, &r.json),
            400,
            "invalid_client_metadata",
            &["token_endpoint_auth_method", "public"],
        );
        assert!(r.json.get("client_secret").is_none());
    }
    // A public client that omits the method would default to client_secret_basic: refused too.
    let id = s(&public["client_id"]);
    let r = manage(
        &srv,
        Method::PUT,
        id,
        Some(s(&public["registration_access_token"])),
        Some(&json!({"client_id": id, "redirect_uris": ["https://p.example/cb"]})),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text);
    full_flow(
        &srv,
        "sw-user",
        &public,
        "https://p.example/cb",
        Some("notes:read"),
    )
    .await;

    // Between the two secret methods is allowed, and the token endpoint follows.
    let id = s(&conf["client_id"]);
    let r = manage(
        &srv,
        Method::PUT,
        id,
        Some(s(&conf["registration_access_token"])),
        Some(&json!({"client_id": id, "redirect_uris": ["https://c.example/cb"], "token_endpoint_auth_method": "client_secret_post"})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut post = conf.clone();
    post["token_endpoint_auth_method"] = json!("client_secret_post");
    full_flow(
        &srv,
        "sw-user",
        &post,
        "https://c.example/cb",
        Some("notes:read"),
    )
    .await;
    let r = token_as(
        &srv,
        id,
        Auth::Basic(s(&conf["client_secret"])),
        &[("grant_type", "refresh_token"), ("refresh_token", "cyr_x")],
    )
    .await;
    assert_error(
        (r.status, &r.json),
        401,
        "invalid_client",
        &["client_secret_post"],
    );
}

async fn rfc7592_delete_forgets_the_client_and_revokes_its_grants(b: Backend) {
    let srv = with_admin(b).start().await;
    let reg = register_ok(
        &srv,
        &json!({"redirect_uris": ["https://d.example/cb"], "token_endpoint_auth_method": "none", "client_name": "Doomed"}),
    )
    .await;
    let other = register_ok(
        &srv,
        &json!({"redirect_uris": ["https://k.example/cb"], "token_endpoint_auth_method": "none"}),
    )
    .await;
    let id = s(&reg["client_id"]);
    let tok = s(&reg["registration_access_token"]);
    let t = full_flow(
        &srv,
        "del-user",
        &reg,
        "https://d.example/cb",
        Some("notes:read"),
    )
    .await;
    let kept = full_flow(
        &srv,
        "del-user",
        &other,
        "https://k.example/cb",
        Some("notes:read"),
    )
    .await;
    let session = srv.session("del-user").await;
    let apps = srv
        .raw(
            Method::GET,
            "/v1/connected_apps",
            &[("authorization", &format!("Bearer {session}"))],
            Vec::new(),
        )
        .await;
    assert!(apps.text.contains(id), "{}", apps.text);

    // Another client's token cannot delete it.
    let r = manage(
        &srv,
        Method::DELETE,
        id,
        Some(s(&other["registration_access_token"])),
        None,
    )
    .await;
    assert_eq!(r.status, 401);
    assert!(registered_ids(&srv).await.contains(&id.to_owned()));

    let r = manage(&srv, Method::DELETE, id, Some(tok), None).await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert!(r.text.is_empty());
    // Gone for management (same answer as any unknown client) and for the admin list.
    for m in [Method::GET, Method::DELETE] {
        let r = manage(&srv, m, id, Some(tok), None).await;
        assert_error((r.status, &r.json), 401, "invalid_token", &[]);
    }
    assert!(!registered_ids(&srv).await.contains(&id.to_owned()));

    // Unknown at authorize: shown, never redirected.
    let pkce = Pkce::new();
    let (status, e) = srv
        .start_flow(
            &session,
            &auth_params(id, "https://d.example/cb", &pkce, Some("notes:read")),
        )
        .await;
    assert_error((status, &e), 400, "invalid_client", &[id]);
    assert!(e.get("redirect_uri").is_none());
    // Its refresh token is refused; the grant is gone from the user's connected apps.
    let r = token_as(
        &srv,
        id,
        Auth::None,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", s(&t["refresh_token"])),
        ],
    )
    .await;
    assert_error((r.status, &r.json), 401, "invalid_client", &[id]);
    // Presented by another client, it is still not usable.
    let r = token_as(
        &srv,
        s(&other["client_id"]),
        Auth::None,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", s(&t["refresh_token"])),
        ],
    )
    .await;
    assert_eq!(r.json["error"], "invalid_grant", "{}", r.text);
    let apps = srv
        .raw(
            Method::GET,
            "/v1/connected_apps",
            &[("authorization", &format!("Bearer {session}"))],
            Vec::new(),
        )
        .await;
    assert_eq!(apps.status, 200);
    assert!(!apps.text.contains(id), "{}", apps.text);
    // The other client is untouched.
    refresh_ok(&srv, &other, s(&kept["refresh_token"])).await;
}

// ------------------------------------------------------------------------------------------
// Client authentication at the token endpoint

async fn client_auth_secret_basic_is_checked_and_refusals_change_nothing(b: Backend) {
    let srv = Setup::new(b).start().await;
    let reg = register_ok(&srv, &json!({"redirect_uris": ["https://cb.example/cb"]})).await;
    let id = s(&reg["client_id"]);
    let secret = s(&reg["client_secret"]);
    assert_eq!(reg["token_endpoint_auth_method"], "client_secret_basic");

    let pkce = Pkce::new();
    let p = auth_params(id, "https://cb.example/cb", &pkce, Some("notes:read"));
    let code = srv.code_for("basic-user", &p).await;
    let grant = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", "https://cb.example/cb"),
        ("code_verifier", pkce.verifier.as_str()),
        ("resource", RESOURCE),
    ];
    let mut with_id = grant.to_vec();
    with_id.push(("client_id", id));

    // Wrong secret: 401 invalid_client with a Basic challenge.
    let wrong = basic_auth(id, "cys-not-the-secret");
    let r = srv.token_with(&[("authorization", &wrong)], &grant).await;
    assert_error((r.status, &r.json), 401, "invalid_client", &[id]);
    assert!(
        r.header("www-authenticate")
            .is_some_and(|h| h.starts_with("Basic")),
        "{:?}",
        r.headers
    );
    // The secret of another client does not do either.
    let other = register_ok(&srv, &json!({"redirect_uris": ["https://cb.example/cb"]})).await;
    let r = token_as(&srv, id, Auth::Basic(s(&other["client_secret"])), &grant).await;
    assert_error((r.status, &r.json), 401, "invalid_client", &[]);
    // The registration access token is not the secret.
    let r = token_as(
        &srv,
        id,
        Auth::Basic(s(&reg["registration_access_token"])),
        &grant,
    )
    .await;
    assert_eq!(r.status, 401);
    // client_secret_post when registered for basic: 401 naming the registered method.
    let r = token_as(&srv, id, Auth::Post(secret), &grant).await;
    assert_error(
        (r.status, &r.json),
        401,
        "invalid_client",
        &["client_secret_post", "client_secret_basic"],
    );
    // No credentials at all.
    let r = token_as(&srv, id, Auth::None, &grant).await;
    assert_error(
        (r.status, &r.json),
        401,
        "invalid_client",
        &["client_secret_basic"],
    );
    // Both Basic and client_secret: 400 invalid_request.
    let mut both = with_id.clone();
    both.push(("client_secret", secret));
    let good = basic_auth(id, secret);
    let r = srv.token_with(&[("authorization", &good)], &both).await;
    assert_error(
        (r.status, &r.json),
        400,
        "invalid_request",
        &["client_secret", "Basic"],
    );
    // Basic client id different from the body's client_id.
    let mut mismatch = grant.to_vec();
    mismatch.push(("client_id", CLIENT));
    let r = srv.token_with(&[("authorization", &good)], &mismatch).await;
    assert_error((r.status, &r.json), 401, "invalid_client", &["client_id"]);
    // Unknown client, malformed Basic, other schemes.
    let unknown = basic_auth("cyc-unknown", secret);
    let not_b64 = "Basic %%%".to_owned();
    let no_colon = format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, id)
    );
    let bearer = format!("Bearer {secret}");
    for h in [&unknown, &not_b64, &no_colon, &bearer] {
        let r = srv.token_with(&[("authorization", h)], &grant).await;
        assert_error((r.status, &r.json), 401, "invalid_client", &[]);
    }

    // None of these consumed the code: the right credentials redeem it now, with or without
    // a matching client_id in the body.
    let r = srv.token_with(&[("authorization", &good)], &with_id).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let rt = s(&r.json["refresh_token"]).to_owned();
    // A wrong secret on refresh does not rotate the token either.
    let r = srv
        .token_with(
            &[("authorization", &wrong)],
            &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
        )
        .await;
    assert_eq!(r.status, 401);
    refresh_ok(&srv, &reg, &rt).await;
}

async fn client_auth_basic_credentials_are_form_urlencoded(b: Backend) {
    let srv = Setup::new(b).extra(&svc_clients()).start().await;
    let cc = [("grant_type", "client_credentials"), ("resource", RESOURCE)];
    // Encoded per RFC 6749 §2.3.1: the ':' of the id is %3A, spaces are '+'.
    let r = token_as(&srv, ODD_ID, Auth::Basic(ODD_SECRET), &cc).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(jwt_claims(s(&r.json["access_token"]))["sub"], ODD_ID);
    // The same id and secret sent raw: the first ':' splits in the wrong place.
    let raw = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{ODD_ID}:{ODD_SECRET}")
        )
    );
    let r = srv.token_with(&[("authorization", &raw)], &cc).await;
    assert_error((r.status, &r.json), 401, "invalid_client", &[]);
    // client_secret_post with the same (form-encoded body) credentials is not its method.
    let r = token_as(&srv, ODD_ID, Auth::Post(ODD_SECRET), &cc).await;
    assert_error(
        (r.status, &r.json),
        401,
        "invalid_client",
        &["client_secret_basic"],
    );

    // An issued id round-trips through encoding even when every byte is percent-encoded.
    let reg = register_ok(
        &srv,
        &json!({"redirect_uris": ["https://e.example/cb"], "grant_types": ["client_credentials"], "scope": "notes:read"}),
    )
    .await;
    let id = s(&reg["client_id"]);
    let secret = s(&reg["client_secret"]);
    let all_pct = |v: &str| v.bytes().map(|b| format!("%{b:02x}")).collect::<String>();
    let h = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{}:{}", all_pct(id), all_pct(secret))
        )
    );
    let r = srv.token_with(&[("authorization", &h)], &cc).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(jwt_claims(s(&r.json["access_token"]))["sub"], id);
    // Badly percent-encoded credentials are refused, not guessed at.
    let h = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{id}%zz:{secret}")
        )
    );
    let r = srv.token_with(&[("authorization", &h)], &cc).await;
    assert_error((r.status, &r.json), 401, "invalid_client", &[]);
}

async fn client_auth_public_client_must_not_send_a_secret(b: Backend) {
    let srv = Setup::new(b).start().await;
    let reg = register_ok(
        &srv,
        &json!({"redirect_uris": ["https://pub.example/cb"], "token_endpoint_auth_method": "none"}),
    )
    .await;
    let id = s(&reg["client_id"]);
    let pkce = Pkce::new();
    let code = srv
        .code_for(
            "pub-user",
            &auth_params(id, "https://pub.example/cb", &pkce, Some("notes:read")),
        )
        .await;
    let grant = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", "https://pub.example/cb"),
        ("code_verifier", pkce.verifier.as_str()),
    ];
    // The registration access token as a "secret", or anything else.
    for auth in [
        Auth::Post("anything"),
        Auth::Basic("anything"),
        Auth::Post(s(&reg["registration_access_token"])),
    ] {
        let r = token_as(&srv, id, auth, &grant).await;
        assert_error(
            (r.status, &r.json),
            401,
            "invalid_client",
            &["public", "none"],
        );
    }
    let r = token_as(&srv, id, Auth::None, &grant).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

// ------------------------------------------------------------------------------------------
// client_credentials

async fn client_credentials_issues_a_token_for_the_client_itself(b: Backend) {
    let srv = Setup::new(b).extra(&svc_clients()).start().await;
    // The config client.
    let r = token_as(
        &srv,
        "svc",
        Auth::Basic(SVC_SECRET),
        &[
            ("grant_type", "client_credentials"),
            ("resource", RESOURCE),
            ("scope", "notes:read notes:write"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert!(r.json.get("refresh_token").is_none(), "{}", r.json);
    assert!(r.json.get("id_token").is_none(), "{}", r.json);
    assert_eq!(r.json["token_type"], "Bearer");
    assert_eq!(r.json["scope"], "notes:read notes:write");
    let claims = srv.verify_access_token(s(&r.json["access_token"])).await;
    assert_eq!(claims["sub"], "svc");
    assert_eq!(claims["client_id"], "svc");
    assert_eq!(claims["aud"], RESOURCE);
    assert_eq!(claims["scope"], "notes:read notes:write");
    assert!(claims.get("gid").is_none(), "no user grant: {claims}");
    // No scope: the resource's defaults.
    let r = token_as(
        &srv,
        "svc",
        Auth::Basic(SVC_SECRET),
        &[("grant_type", "client_credentials"), ("resource", RESOURCE)],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["scope"], "notes:read");

    // A registered client with grant_types ["client_credentials"] and a registered scope.
    let reg = register_ok(
        &srv,
        &json!({"client_name": "Batch", "grant_types": ["client_credentials"], "scope": "notes:read"}),
    )
    .await;
    assert_registered_shape(&reg, true);
    assert_eq!(reg["grant_types"], json!(["client_credentials"]));
    assert_eq!(reg["redirect_uris"], json!([]));
    let id = s(&reg["client_id"]);
    for auth in [Auth::Basic(s(&reg["client_secret"]))] {
        let r = token_as(
            &srv,
            id,
            auth,
            &[
                ("grant_type", "client_credentials"),
                ("resource", RESOURCE),
                ("scope", "notes:read"),
            ],
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(r.json.get("refresh_token").is_none());
        let claims = srv.verify_access_token(s(&r.json["access_token"])).await;
        assert_eq!(claims["sub"], id);
        assert_eq!(claims["client_id"], id);
        assert_eq!(claims["aud"], RESOURCE);
        assert_eq!(claims["scope"], "notes:read");
    }
    // Other resource, with its own scope (svc has no registered scope limit).
    let r = token_as(
        &srv,
        "svc",
        Auth::Basic(SVC_SECRET),
        &[
            ("grant_type", "client_credentials"),
            ("resource", OTHER_RESOURCE),
            ("scope", "files:read"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        jwt_claims(s(&r.json["access_token"]))["aud"],
        OTHER_RESOURCE
    );
}

/// (client, its authentication, extra form fields, expected error, mentions)
type CcCase<'a> = (
    &'a str,
    Auth<'a>,
    Vec<(&'a str, &'a str)>,
    &'a str,
    Vec<&'a str>,
);

async fn client_credentials_scope_and_resource_are_bounded(b: Backend) {
    let srv = Setup::new(b).extra(&svc_clients()).start().await;
    let reg = register_ok(
        &srv,
        &json!({"grant_types": ["client_credentials"], "scope": "notes:read", "token_endpoint_auth_method": "client_secret_post"}),
    )
    .await;
    let id = s(&reg["client_id"]);
    let secret = s(&reg["client_secret"]);
    let cases: Vec<CcCase<'_>> = vec![
        (
            "svc",
            Auth::Basic(SVC_SECRET),
            vec![("resource", RESOURCE), ("scope", "files:read")],
            "invalid_scope",
            vec!["files:read", "notes:read"],
        ),
        (
            "svc",
            Auth::Basic(SVC_SECRET),
            vec![("resource", RESOURCE), ("scope", "openid")],
            "invalid_scope",
            vec!["openid"],
        ),
        (
            id,
            Auth::Post(secret),
            vec![("resource", RESOURCE), ("scope", "notes:write")],
            "invalid_scope",
            vec!["notes:write", "registered", "notes:read"],
        ),
        (
            id,
            Auth::Post(secret),
            vec![("resource", RESOURCE), ("scope", "notes:read notes:admin")],
            "invalid_scope",
            vec!["notes:admin"],
        ),
        (
            "svc",
            Auth::Basic(SVC_SECRET),
            vec![("scope", "notes:read")],
            "invalid_target",
            vec!["resource", RESOURCE, OTHER_RESOURCE],
        ),
        (
            id,
            Auth::Post(secret),
            vec![("resource", "https://evil.example/mcp")],
            "invalid_target",
            vec!["https://evil.example/mcp"],
        ),
    ];
    for (client, auth, extra, error, mentions) in cases {
        let mut form = vec![("grant_type", "client_credentials")];
        form.extend(extra.iter().copied());
        let r = token_as(&srv, client, auth, &form).await;
        assert_error((r.status, &r.json), 400, error, &mentions);
    }
    // Within bounds it works; without a scope the defaults are cut to the registered scope.
    let r = token_as(
        &srv,
        id,
        Auth::Post(secret),
        &[
            ("grant_type", "client_credentials"),
            ("resource", OTHER_RESOURCE),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json["scope"], "",
        "files:read is not registered: {}",
        r.json
    );
}

async fn client_credentials_needs_the_grant_and_a_confidential_client(b: Backend) {
    let srv = Setup::new(b).extra(&svc_clients()).start().await;
    let cc = [("grant_type", "client_credentials"), ("resource", RESOURCE)];
    // A confidential client registered for authorization_code only.
    let conf = register_ok(&srv, &json!({"redirect_uris": ["https://x.example/cb"]})).await;
    let r = token_as(
        &srv,
        s(&conf["client_id"]),
        Auth::Basic(s(&conf["client_secret"])),
        &cc,
    )
    .await;
    assert_error(
        (r.status, &r.json),
        400,
        "unauthorized_client",
        &["client_credentials", s(&conf["client_id"])],
    );
    // A public client (registered or configured): no secret, no client_credentials.
    let public = register_ok(
        &srv,
        &json!({"redirect_uris": ["https://x.example/cb"], "token_endpoint_auth_method": "none"}),
    )
    .await;
    for id in [s(&public["client_id"]), CLIENT] {
        let r = token_as(&srv, id, Auth::None, &cc).await;
        assert_error(
            (r.status, &r.json),
            400,
            "unauthorized_client",
            &["client_credentials"],
        );
    }
    // A client_credentials grant with a wrong secret fails authentication first.
    let cc_client = register_ok(&srv, &json!({"grant_types": ["client_credentials"]})).await;
    let r = token_as(
        &srv,
        s(&cc_client["client_id"]),
        Auth::Basic("cys-wrong"),
        &cc,
    )
    .await;
    assert_error((r.status, &r.json), 401, "invalid_client", &[]);
    // And a client_credentials-only client cannot redeem codes or refresh.
    let r = token_as(
        &srv,
        s(&cc_client["client_id"]),
        Auth::Basic(s(&cc_client["client_secret"])),
        &[("grant_type", "refresh_token"), ("refresh_token", "cyr_x")],
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.json.get("access_token").is_none());
}

/// Open registration lets anyone register, so a self-registered client_credentials client
/// would be tokens for anyone with no user and no consent behind them: refused at registration,
/// at RFC 7592 update and (for clients registered before the server opened up) at the token
/// endpoint. Role-gated scopes need a user holding the role: never to a self-registered client
/// acting for itself; the operator's own `[[clients]]` keep them.
async fn client_credentials_is_closed_to_open_registration_and_role_gated_scopes(b: Backend) {
    let cc = |scope: &'static str| {
        vec![
            ("grant_type", "client_credentials"),
            ("resource", RESOURCE),
            ("scope", scope),
        ]
    };
    // Open registration.
    let srv = with_admin(b.clone()).start().await;
    let (status, e) = srv
        .post_json(
            "/oauth2/register",
            None,
            &json!({"grant_types": ["client_credentials"], "scope": "notes:admin notes:write"}),
        )
        .await;
    assert_error(
        (status, &e),
        400,
        "invalid_client_metadata",
        &[
            "grant_types",
            "client_credentials",
            "open",
            "initial_access_token",
        ],
    );
    assert_eq!(registered_ids(&srv).await, Vec::<String>::new());
    // Nor by updating a client registered for codes.
    let reg = register_ok(&srv, &json!({"redirect_uris": ["https://u.example/cb"]})).await;
    let id = s(&reg["client_id"]);
    let token = s(&reg["registration_access_token"]);
    let r = manage(
        &srv,
        Method::PUT,
        id,
        Some(token),
        Some(&json!({"client_id": id, "redirect_uris": ["https://u.example/cb"], "grant_types": ["authorization_code", "client_credentials"]})),
    )
    .await;
    assert_error(
        (r.status, &r.json),
        400,
        "invalid_client_metadata",
        &["client_credentials", "open"],
    );
    let r = token_as(
        &srv,
        id,
        Auth::Basic(s(&reg["client_secret"])),
        &cc("notes:read"),
    )
    .await;
    assert_error(
        (r.status, &r.json),
        400,
        "unauthorized_client",
        &["client_credentials"],
    );

    // Registration behind an initial access token: client_credentials, but no role-gated scope.
    let mut srv = with_admin(b).extra(&svc_clients()).start().await;
    let reg = register_ok(
        &srv,
        &json!({"grant_types": ["client_credentials"], "scope": "notes:admin notes:read"}),
    )
    .await;
    let id = s(&reg["client_id"]).to_owned();
    let secret = s(&reg["client_secret"]).to_owned();
    for scope in ["notes:admin", "notes:read notes:admin"] {
        let r = token_as(&srv, &id, Auth::Basic(&secret), &cc(scope)).await;
        assert_error(
            (r.status, &r.json),
            400,
            "invalid_scope",
            &["notes:admin", "admin", "client_credentials"],
        );
        assert!(r.json.get("access_token").is_none());
    }
    let r = token_as(&srv, &id, Auth::Basic(&secret), &cc("notes:read")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // The operator's own client may.
    let r = token_as(&srv, "svc", Auth::Basic(SVC_SECRET), &cc("notes:admin")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        jwt_claims(s(&r.json["access_token"]))["scope"],
        "notes:admin"
    );

    // The same server reopened to anyone: the client it registered behind a token no longer
    // gets client_credentials tokens.
    let config = std::fs::read_to_string(&srv.config_path).unwrap();
    let open = config.replace("mode = \"initial_access_token\"", "mode = \"open\"");
    assert_ne!(config, open);
    std::fs::write(&srv.config_path, open).unwrap();
    srv.restart().await;
    let r = token_as(&srv, &id, Auth::Basic(&secret), &cc("notes:read")).await;
    assert_error(
        (r.status, &r.json),
        400,
        "unauthorized_client",
        &["client_credentials", "open", &id],
    );
    let r = token_as(&srv, "svc", Auth::Basic(SVC_SECRET), &cc("notes:read")).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

async fn client_credentials_only_client_cannot_authorize(b: Backend) {
    let srv = Setup::new(b).extra(&svc_clients()).start().await;
    // Registered for client_credentials, but with a redirect URI it could try to use.
    let reg = register_ok(
        &srv,
        &json!({"grant_types": ["client_credentials"], "redirect_uris": ["https://cc.example/cb"]}),
    )
    .await;
    assert_eq!(reg["grant_types"], json!(["client_credentials"]));
    let id = s(&reg["client_id"]);
    let session = srv.session("cc-user").await;
    let pkce = Pkce::new();
    let p = auth_params(id, "https://cc.example/cb", &pkce, Some("notes:read"));
    let (status, e) = srv.start_flow(&session, &p).await;
    assert_error(
        (status, &e),
        400,
        "unauthorized_client",
        &["authorization_code", id],
    );
    let (status, e) = srv.submit(&session, &p, true).await;
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"], "unauthorized_client");
    if let Some(loc) = e["redirect_uri"].as_str() {
        assert!(!query(loc).contains_key("code"), "{loc}");
    }
    // The configured client_credentials client has no redirect URI at all: refused and shown,
    // never redirected. (The redirect URI is checked before the grant type, so today this is
    // invalid_redirect_uri; unauthorized_client would say more.)
    let p = auth_params("svc", "https://cc.example/cb", &pkce, Some("notes:read"));
    for (status, e) in [
        srv.start_flow(&session, &p).await,
        srv.submit(&session, &p, true).await,
    ] {
        assert_eq!(status, 400, "{e}");
        assert!(
            e["error"] == "unauthorized_client" || e["error"] == "invalid_redirect_uri",
            "{e}"
        );
        assert!(e.get("redirect_uri").is_none(), "never redirected: {e}");
    }
}

// ------------------------------------------------------------------------------------------
// Consent screen and CORS

async fn consent_marks_registered_clients_unverified_with_redirect_host(b: Backend) {
    let srv = Setup::new(b).start().await;
    // A registered client claiming a trusted-looking name and logo.
    let reg = register_ok(
        &srv,
        &json!({
            "client_name": "Demo agent",
            "redirect_uris": ["https://attacker.example/cb", "com.evil.app://accounts.example.com/cb"],
            "logo_uri": "https://attacker.example/logo.png",
            "client_uri": "https://attacker.example",
            "token_endpoint_auth_method": "none",
            "application_type": "native"
        }),
    )
    .await;
    let id = s(&reg["client_id"]);
    let session = srv.session("consent-user").await;
    let pkce = Pkce::new();
    for (uri, host) in [
        ("https://attacker.example/cb", "attacker.example"),
        ("com.evil.app://accounts.example.com/cb", "com.evil.app"),
    ] {
        let (status, start) = srv
            .start_flow(&session, &auth_params(id, uri, &pkce, Some("notes:read")))
            .await;
        assert_eq!(status, 200, "{start}");
        assert_eq!(start["client"]["verified"], false);
        assert_eq!(start["client"]["client_id"], id);
        assert_eq!(start["client"]["client_name"], "Demo agent");
        assert_eq!(
            start["client"]["logo_uri"],
            "https://attacker.example/logo.png"
        );
        assert_eq!(start["redirect_host"], host);
    }
    // Without a redirect_uri (only one registered) the host is still shown.
    let single = register_ok(
        &srv,
        &json!({"redirect_uris": ["https://single.example/cb"], "token_endpoint_auth_method": "none"}),
    )
    .await;
    let mut p = auth_params(s(&single["client_id"]), "x", &pkce, Some("notes:read"));
    p.as_object_mut().unwrap().remove("redirect_uri");
    let (status, start) = srv.start_flow(&session, &p).await;
    assert_eq!(status, 200, "{start}");
    assert_eq!(start["client"]["verified"], false);
    assert_eq!(start["redirect_host"], "single.example");
    // Nameless: shown by its id.
    assert_eq!(start["client"]["client_name"], single["client_id"]);
    // The configured client is verified.
    let (status, start) = srv.start_flow(&session, &params(&pkce, "notes:read")).await;
    assert_eq!(status, 200, "{start}");
    assert_eq!(start["client"]["verified"], true);
    assert_eq!(start["redirect_host"], "127.0.0.1");
}

async fn registration_endpoint_allows_cors_from_any_origin(b: Backend) {
    let srv = Setup::new(b).start().await;
    for (path, method) in [
        ("/oauth2/register", "POST"),
        ("/oauth2/register/cyc-any", "GET"),
        ("/oauth2/register/cyc-any", "PUT"),
        ("/oauth2/register/cyc-any", "DELETE"),
    ] {
        let r = srv
            .raw(
                Method::OPTIONS,
                path,
                &[
                    ("origin", "https://some-mcp-client.example"),
                    ("access-control-request-method", method),
                    (
                        "access-control-request-headers",
                        "content-type,authorization",
                    ),
                ],
                Vec::new(),
            )
            .await;
        assert!(r.status < 300, "{path} {method}: {} {}", r.status, r.text);
        assert_eq!(r.header("access-control-allow-origin"), Some("*"), "{path}");
        let methods = r
            .header("access-control-allow-methods")
            .unwrap_or("")
            .to_ascii_uppercase();
        assert!(methods.contains(method), "{path}: {methods}");
        let headers = r
            .header("access-control-allow-headers")
            .unwrap_or("")
            .to_ascii_lowercase();
        assert!(
            headers.contains("content-type") && headers.contains("authorization"),
            "{headers}"
        );
    }
    // The actual registration from a browser origin carries the header too.
    let r = srv
        .raw(
            Method::POST,
            "/oauth2/register",
            &[
                ("origin", "https://some-mcp-client.example"),
                ("content-type", "application/json"),
            ],
            br#"{"redirect_uris":["https://app.example/cb"],"token_endpoint_auth_method":"none"}"#
                .to_vec(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
}

/// MCP step-up: the official SDKs register with their first request's scope, then ask for more
/// after a 403 insufficient_scope. The user consents to each scope, so the registered scope is not
/// a ceiling for authorization requests; the resource's scope list still is.
async fn a_client_registered_for_one_scope_steps_up_with_the_users_consent(b: Backend) {
    let srv = Setup::new(b).start().await;
    let reg = register_ok(
        &srv,
        &json!({
            "client_name": "MCP SDK client",
            "redirect_uris": ["http://127.0.0.1:8976/callback"],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            "scope": "notes:read"
        }),
    )
    .await;
    let tok = full_flow(
        &srv,
        "stepper",
        &reg,
        "http://127.0.0.1:8976/callback",
        Some("notes:read"),
    )
    .await;
    assert_eq!(tok["scope"], "notes:read");
    let tok = full_flow(
        &srv,
        "stepper",
        &reg,
        "http://127.0.0.1:8976/callback",
        Some("notes:read notes:write"),
    )
    .await;
    assert_eq!(tok["scope"], "notes:read notes:write", "{tok}");

    // A scope no requested resource offers is still refused, whatever was registered.
    let pkce = Pkce::new();
    let p = auth_params(
        s(&reg["client_id"]),
        "http://127.0.0.1:8976/callback",
        &pkce,
        Some("notes:read notes:delete"),
    );
    let session = srv.session("stepper").await;
    let (status, body) = srv.start_flow(&session, &p).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_scope");
    assert!(
        s(&body["error_description"]).contains("notes:delete"),
        "{body}"
    );
}

// ------------------------------------------------------------------------------------------
// One client rule for DCR, metadata documents and [[clients]] (issue 12 item 4): where the three
// validators disagreed, the stricter rule now holds for all.

/// U+200E/U+200F (left-to-right/right-to-left marks) and U+061C (Arabic letter mark) reorder
/// neighbouring text like the overrides do: the document validator refused the marks, DCR did
/// not. Every Unicode Bidi_Control character is now refused in any client_name.
async fn registration_refuses_every_bidi_control_in_client_name(b: Backend) {
    let srv = with_admin(b)
        .extra("[registration]\nrate_limit_per_minute = 1000")
        .start()
        .await;
    for name in ["App\u{200e}", "\u{200f}ppA", "App\u{61c}x", "App\u{2067}x"] {
        let (status, e) = register(
            &srv,
            &json!({"redirect_uris": ["https://app.example/cb"], "client_name": name}),
        )
        .await;
        assert_error(
            (status, &e),
            400,
            "invalid_client_metadata",
            &["client_name"],
        );
    }
    assert_eq!(registered_ids(&srv).await, Vec::<String>::new());
}

/// client_uri, logo_uri, policy_uri and tos_uri: DCR allowed http on loopback and did not check
/// fragments or the URI grammar; documents required https with the grammar. https only now.
async fn registration_uri_fields_are_https_only_without_fragment(b: Backend) {
    let srv = with_admin(b)
        .extra("[registration]\nrate_limit_per_minute = 1000")
        .start()
        .await;
    for (field, value) in [
        ("logo_uri", "http://127.0.0.1/logo.png"),
        ("client_uri", "http://localhost:3000/"),
        ("policy_uri", "http://[::1]/policy"),
        ("tos_uri", "https://app.example/tos#x"),
        ("client_uri", "https://app.example\\@evil.example/"),
    ] {
        let mut body = json!({"redirect_uris": ["https://app.example/cb"]});
        body[field] = json!(value);
        let (status, e) = register(&srv, &body).await;
        assert_error((status, &e), 400, "invalid_client_metadata", &[field]);
    }
    assert_eq!(registered_ids(&srv).await, Vec::<String>::new());
    register_ok(
        &srv,
        &json!({"redirect_uris": ["https://app.example/cb"], "logo_uri": "https://app.example/logo.png"}),
    )
    .await;
}

/// A client that cannot get codes has nothing to refresh: DCR and [[clients]] accepted
/// `grant_types = ["refresh_token"]`, documents refused it.
async fn registration_refresh_token_needs_authorization_code(b: Backend) {
    let srv = with_admin(b)
        .extra("[registration]\nrate_limit_per_minute = 1000")
        .start()
        .await;
    let (status, e) = register(
        &srv,
        &json!({"redirect_uris": ["https://app.example/cb"], "grant_types": ["refresh_token"]}),
    )
    .await;
    assert_error(
        (status, &e),
        400,
        "invalid_client_metadata",
        &["grant_types", "refresh_token", "authorization_code"],
    );
    assert_eq!(registered_ids(&srv).await, Vec::<String>::new());
}

/// Documents stored their client_name trimmed, DCR as sent: trimmed everywhere now, so the
/// consent screen never shows leading or trailing blanks.
async fn registration_client_name_is_trimmed(b: Backend) {
    let srv = Setup::new(b).start().await;
    let reg = register_ok(
        &srv,
        &json!({"redirect_uris": ["https://app.example/cb"], "client_name": "  Spaced App  "}),
    )
    .await;
    assert_eq!(reg["client_name"], "Spaced App");
}
