//! The authorization endpoint's rules (the browser API behind the consent page), each attacked
//! over HTTP against the real server: the client and its redirect URI are verified before anything
//! is redirected, redirectable errors carry `state` and `iss`, submit re-validates everything,
//! CORS admits only the configured origins, and no malformed body gets a 5xx.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use consentry_testkit::*;
use serde_json::{Value, json};

on_both_backends!(
    unknown_client_is_shown_never_redirected,
    unregistered_redirect_uri_is_shown_never_redirected,
    redirect_uri_tricks_are_refused_without_redirect,
    loopback_redirect_uri_may_change_only_the_port,
    private_use_scheme_redirect_uri_is_accepted,
    redirectable_errors_carry_state_and_iss,
    submit_revalidates_the_request,
    browser_api_cors_admits_only_allowed_origins,
    malformed_bodies_get_a_json_4xx_never_a_5xx,
    malformed_paths_and_queries_get_json_errors,
    prompt_login_needs_a_freshly_attested_session,
    unverified_client_errors_are_shown_until_the_user_consents,
);

/// RFC 9700 §4.11.2: anyone can register a client whose redirect URI is their own site. Until this
/// user consented to it (at this redirect URI), every error after the client and redirect URI
/// check is shown on the page and never redirected: a link to the consent page must not bounce a
/// signed-in user to any site. Deny, chosen on a screen that named the destination host, still
/// goes back to the client; once the user allowed the client there, errors go back too.
async fn unverified_client_errors_are_shown_until_the_user_consents(b: Backend) {
    let s = Setup::new(b).start().await;
    let attacker = "https://attacker.example/x";
    let (status, reg) = s
        .post_json(
            "/oauth2/register",
            None,
            &json!({"redirect_uris": [attacker], "client_name": "Bouncer", "token_endpoint_auth_method": "none"}),
        )
        .await;
    assert_eq!(status, 201, "{reg}");
    let id = reg["client_id"].as_str().unwrap();
    let session = s.session("az-open-redirect").await;
    let pkce = Pkce::new();
    let good = params_for(&pkce, id, attacker);

    let mut cases: Vec<(&str, Value, &str)> = Vec::new();
    let mut p = good.clone();
    p.as_object_mut().unwrap().remove("code_challenge");
    cases.push(("missing PKCE", p, "invalid_request"));
    let mut p = good.clone();
    p["scope"] = json!("no-such-scope");
    cases.push(("bad scope", p, "invalid_scope"));
    let mut p = good.clone();
    p["resource"] = json!(["https://evil.example/mcp"]);
    cases.push(("unknown resource", p, "invalid_target"));
    let mut p = good.clone();
    p["response_type"] = json!("token");
    cases.push(("response_type", p, "unsupported_response_type"));
    let mut p = good.clone();
    p["prompt"] = json!("none");
    cases.push(("prompt=none", p, "consent_required"));
    let mut p = good.clone();
    p.as_object_mut().unwrap().remove("redirect_uri");
    p["prompt"] = json!("none");
    cases.push(("prompt=none, redirect_uri omitted", p, "consent_required"));
    for (label, p, error) in &cases {
        for (what, got) in [
            ("start", s.start_flow(&session, p).await),
            ("submit allow", s.submit(&session, p, true).await),
            ("submit deny", s.submit(&session, p, false).await),
        ] {
            assert_eq!(got.0, 400, "[{label}] {what}: {}", got.1);
            assert_eq!(got.1["error"], *error, "[{label}] {what}: {}", got.1);
            assert!(
                got.1.get("redirect_uri").is_none(),
                "[{label}] {what}: an unverified client without consent got a redirect: {}",
                got.1
            );
        }
    }

    // The screen shows where the user would be sent; Deny sends access_denied there.
    let (status, st) = s.start_flow(&session, &good).await;
    assert_eq!(status, 200, "{st}");
    assert_eq!(st["client"]["verified"], false);
    assert_eq!(st["redirect_host"], "attacker.example");
    let (status, sub) = s.submit(&session, &good, false).await;
    assert_eq!(status, 200, "{sub}");
    let loc = sub["redirect_uri"].as_str().unwrap();
    assert!(loc.starts_with(&format!("{attacker}?")), "{loc}");
    assert_eq!(query(loc)["error"], "access_denied");

    // Once the user allowed this client here, its errors go back to it.
    let (status, sub) = s.submit(&session, &good, true).await;
    assert_eq!(status, 200, "{sub}");
    for (label, p, error) in &cases[..4] {
        let (status, e) = s.start_flow(&session, p).await;
        assert_eq!(status, 400, "[{label}] {e}");
        assert_eq!(e["error"], *error, "[{label}] {e}");
        let loc = e["redirect_uri"]
            .as_str()
            .unwrap_or_else(|| panic!("[{label}] {e}"));
        assert!(loc.starts_with(&format!("{attacker}?")), "[{label}] {loc}");
    }
    // Another user who never consented still gets them shown.
    let other = s.session("az-open-redirect-2").await;
    let (status, e) = s.start_flow(&other, &cases[1].1).await;
    assert_eq!(status, 400, "{e}");
    assert!(e.get("redirect_uri").is_none(), "{e}");
}

/// `prompt=login` asks for a fresh sign-in: a session attested longer ago than
/// `prompt_login_max_age_seconds` gets `login_required` (redirected: the client asked), at start
/// and at submit; a fresh attestation passes; without the prompt the old session still works.
async fn prompt_login_needs_a_freshly_attested_session(b: Backend) {
    let s = Setup::new(b)
        .top("prompt_login_max_age_seconds", "1")
        .start()
        .await;
    let pkce = Pkce::new();
    let mut p = params(&pkce, "notes:read");
    p["prompt"] = json!("login");
    let session = s.session("prompt-login-user").await;
    let (status, e) = s.start_flow(&session, &p).await;
    assert_eq!(status, 200, "a session attested just now: {e}");
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (status, e) = s.start_flow(&session, &p).await;
    assert_redirected(
        &s,
        (status, &e),
        "login_required",
        &["prompt=login", "prompt_login_max_age_seconds"],
    );
    let (status, e) = s.submit(&session, &p, true).await;
    assert_redirected(&s, (status, &e), "login_required", &["prompt=login"]);
    // No code was issued on the way.
    assert!(
        !e["redirect_uri"].as_str().unwrap_or("").contains("code="),
        "{e}"
    );
    // Without the prompt the same session goes on; a fresh one passes with it.
    let plain = params(&pkce, "notes:read");
    let (status, e) = s.start_flow(&session, &plain).await;
    assert_eq!(status, 200, "{e}");
    let fresh = s.session("prompt-login-user").await;
    let (status, e) = s.start_flow(&fresh, &p).await;
    assert_eq!(status, 200, "{e}");
}

/// Bad percent-encoding in a path parameter, a bad query: a JSON 400 naming the part, like every
/// other error.
async fn malformed_paths_and_queries_get_json_errors(b: Backend) {
    let key = "admin-key-for-malformed-path-tests-0123456789";
    let s = Setup::new(b)
        .top("admin_key", &format!("\"{key}\""))
        .start()
        .await;
    let auth = format!("Bearer {key}");
    for (method, path) in [
        (reqwest::Method::GET, "/oauth2/register/%FF"),
        (reqwest::Method::GET, "/admin/v1/clients/%FF%FE"),
        (
            reqwest::Method::GET,
            "/admin/v1/users/%C3%28/connected_apps",
        ),
        (reqwest::Method::GET, "/admin/v1/clients?limit=lots"),
    ] {
        let r = s
            .raw(
                method,
                path,
                &[("authorization", auth.as_str())],
                Vec::new(),
            )
            .await;
        assert_eq!(r.status, 400, "{path}: {}", r.text);
        assert_eq!(r.json["error"], "invalid_request", "{path}: {}", r.text);
        let d = r.json["error_description"].as_str().unwrap_or("");
        assert!(
            d.starts_with("path:") || d.starts_with("query:"),
            "{path}: {d}"
        );
    }
}

/// Params for `client_id` with `redirect_uri` (everything else standard).
fn params_for(pkce: &Pkce, client_id: &str, redirect_uri: &str) -> Value {
    let mut p = params(pkce, "notes:read");
    p["client_id"] = json!(client_id);
    p["redirect_uri"] = json!(redirect_uri);
    p
}

/// A refusal that must be shown to the user: no location to send the browser to.
#[track_caller]
fn assert_shown(got: (u16, &Value), error: &str, mentions: &[&str]) {
    assert_error(got, 400, error, mentions);
    assert!(
        got.1.get("redirect_uri").is_none(),
        "an untrusted client or redirect URI must never get a redirect: {}",
        got.1
    );
}

/// A refusal that goes back to the client: the location carries error, state and iss.
#[track_caller]
fn assert_redirected(s: &TestServer, got: (u16, &Value), error: &str, mentions: &[&str]) {
    assert_error(got, 400, error, mentions);
    let loc = got.1["redirect_uri"]
        .as_str()
        .unwrap_or_else(|| panic!("a redirectable error needs redirect_uri: {}", got.1));
    assert!(loc.starts_with(&format!("{REDIRECT}?")), "{loc}");
    let q = query(loc);
    assert_eq!(q["error"], error, "{loc}");
    assert_eq!(q["state"], "st-123", "{loc}");
    assert_eq!(q["iss"], s.base, "{loc}");
    // The redirect carries the same description, restricted to RFC 6749's error_description
    // characters (printable ASCII without '"' and '\\').
    let desc = &q["error_description"];
    assert!(
        desc.chars()
            .all(|c| (' '..='~').contains(&c) && c != '"' && c != '\\'),
        "{desc}"
    );
    let json_desc: String = got.1["error_description"]
        .as_str()
        .unwrap()
        .chars()
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            ' '..='~' => c,
            _ => '?',
        })
        .collect();
    assert_eq!(*desc, json_desc);
    assert!(!q.contains_key("code"), "{loc}");
}

/// Neither start nor submit gets past a refused client or redirect URI.
async fn assert_both_shown(
    s: &TestServer,
    session: &str,
    p: &Value,
    error: &str,
    mentions: &[&str],
) {
    let (status, e) = s.start_flow(session, p).await;
    assert_shown((status, &e), error, mentions);
    let (status, e) = s.submit(session, p, true).await;
    assert_shown((status, &e), error, mentions);
    // denying does not turn it into a redirect either
    let (status, e) = s.submit(session, p, false).await;
    assert_shown((status, &e), error, mentions);
}

async fn unknown_client_is_shown_never_redirected(b: Backend) {
    let s = Setup::new(b).start().await;
    let session = s.session("az1").await;
    let pkce = Pkce::new();
    let p = params_for(&pkce, "no-such-client", REDIRECT);
    assert_both_shown(
        &s,
        &session,
        &p,
        "invalid_client",
        &["client_id", "'no-such-client'", "not registered"],
    )
    .await;

    let mut p = params(&pkce, "notes:read");
    p.as_object_mut().unwrap().remove("client_id");
    assert_both_shown(
        &s,
        &session,
        &p,
        "invalid_request",
        &["client_id is required"],
    )
    .await;
    p["client_id"] = json!("  ");
    assert_both_shown(&s, &session, &p, "invalid_request", &["client_id"]).await;
    p["client_id"] = json!("démo");
    assert_both_shown(&s, &session, &p, "invalid_request", &["client_id", "ASCII"]).await;
}

async fn unregistered_redirect_uri_is_shown_never_redirected(b: Backend) {
    let s = Setup::new(b).start().await;
    let session = s.session("az2").await;
    let pkce = Pkce::new();
    let p = params_for(&pkce, CLIENT, "https://attacker.example/callback");
    assert_both_shown(
        &s,
        &session,
        &p,
        "invalid_redirect_uri",
        &[
            "redirect_uri",
            "'https://attacker.example/callback'",
            &format!("registered: '{REDIRECT}'"),
        ],
    )
    .await;
    // every registered URI is listed
    let p = params_for(&pkce, "native-app", "https://attacker.example/callback");
    assert_both_shown(
        &s,
        &session,
        &p,
        "invalid_redirect_uri",
        &["'http://127.0.0.1/callback', 'com.example.app:/oauth/cb'"],
    )
    .await;
    // omitted while several are registered: required, and the registered ones are listed
    let mut p = params_for(&pkce, "native-app", "");
    p.as_object_mut().unwrap().remove("redirect_uri");
    assert_both_shown(
        &s,
        &session,
        &p,
        "invalid_redirect_uri",
        &["redirect_uri is required", "'com.example.app:/oauth/cb'"],
    )
    .await;
    // empty is not "absent"
    let p = params_for(&pkce, CLIENT, "");
    assert_both_shown(&s, &session, &p, "invalid_redirect_uri", &["redirect_uri"]).await;
}

async fn redirect_uri_tricks_are_refused_without_redirect(b: Backend) {
    let s = Setup::new(b).start().await;
    let session = s.session("az3").await;
    let pkce = Pkce::new();
    for (client, uri) in [
        (CLIENT, "http://127.0.0.1:9999/callback/"),
        (CLIENT, "http://127.0.0.1:9999/Callback"),
        (CLIENT, "http://127.0.0.1:9999/CALLBACK"),
        (CLIENT, "http://127.0.0.1:9999/callback?x=1"),
        (CLIENT, "http://127.0.0.1:9999/callback?"),
        (CLIENT, "http://127.0.0.1:9999/callback/../callback"),
        (CLIENT, "http://127.0.0.1:9999/callback%2F"),
        (CLIENT, "http://127.0.0.1:9999@evil.com/callback"),
        (CLIENT, "http://evil.com@127.0.0.1:9999/callback"),
        (CLIENT, "https://127.0.0.1:9999/callback"),
        (CLIENT, "HTTP://127.0.0.1:9999/callback"),
        (CLIENT, "javascript:alert(1)"),
        (CLIENT, "data:text/html,<script>alert(1)</script>"),
        (CLIENT, "//evil.com/callback"),
        (CLIENT, "/callback"),
        (CLIENT, "http://127.0.0.1:9999/callback#frag"),
        (CLIENT, "http://127.0.0.1:9999/callback\n"),
        (CLIENT, "http://127.0.0.1:9999\\evil.com/callback"),
        ("other-agent", "https://other.example.com\\.evil.com/cb"),
        (CLIENT, " http://127.0.0.1:9999/callback"),
        ("other-agent", "https://other.example.com.evil.com/cb"),
        ("other-agent", "https://other.example.com/cb#frag"),
        ("other-agent", "https://other.example.com/cb/"),
        ("other-agent", "https://other.example.com/CB"),
        (
            "other-agent",
            "https://other.example.com/cb?next=https://evil.com",
        ),
        ("other-agent", "http://other.example.com/cb"),
        ("other-agent", "https://OTHER.example.com/cb"),
        ("other-agent", "https://user@other.example.com/cb"),
        (
            "other-agent",
            "https://evil.com/https://other.example.com/cb",
        ),
        // the loopback port exception is for http loopback URIs only
        ("other-agent", "https://other.example.com:8443/cb"),
        ("other-agent", "https://other.example.com:443/cb"),
        // a registered URI of another client is no use either
        ("other-agent", REDIRECT),
    ] {
        let p = params_for(&pkce, client, uri);
        let (status, e) = s.start_flow(&session, &p).await;
        assert_shown((status, &e), "invalid_redirect_uri", &["redirect_uri"]);
        let (status, e) = s.submit(&session, &p, true).await;
        assert_shown((status, &e), "invalid_redirect_uri", &["redirect_uri"]);
    }
    // the registered URI itself is of course fine
    let p = params_for(&pkce, "other-agent", "https://other.example.com/cb");
    let (status, st) = s.start_flow(&session, &p).await;
    assert_eq!(status, 200, "{st}");
    assert_eq!(st["redirect_host"], "other.example.com");
}

async fn loopback_redirect_uri_may_change_only_the_port(b: Backend) {
    let s = Setup::new(b).start().await;
    let session = s.session("az4").await;
    let pkce = Pkce::new();

    // RFC 8252 §7.3: an ephemeral port is fine, and the code goes to that port
    let uri = "http://127.0.0.1:54321/callback";
    let p = params_for(&pkce, "native-app", uri);
    let (status, st) = s.start_flow(&session, &p).await;
    assert_eq!(status, 200, "{st}");
    assert_eq!(st["redirect_host"], "127.0.0.1");
    let (status, sub) = s.submit(&session, &p, true).await;
    assert_eq!(status, 200, "{sub}");
    let loc = sub["redirect_uri"].as_str().unwrap();
    assert!(loc.starts_with(&format!("{uri}?")), "{loc}");
    let q = query(loc);
    assert_eq!(q["state"], "st-123");
    assert_eq!(q["iss"], s.base);
    // the code is bound to exactly that URI, port included
    let (status, e) = s
        .redeem(
            &q["code"],
            "native-app",
            "http://127.0.0.1/callback",
            &pkce.verifier,
        )
        .await;
    assert_error((status, &e), 400, "invalid_grant", &[uri]);
    let (status, tok) = s
        .redeem(&q["code"], "native-app", uri, &pkce.verifier)
        .await;
    assert_eq!(status, 200, "{tok}");
    // a denial goes to that port too
    let (status, sub) = s.submit(&session, &p, false).await;
    assert_eq!(status, 200, "{sub}");
    assert!(
        sub["redirect_uri"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{uri}?error=access_denied")),
        "{sub}"
    );
    // the port of demo-agent's own loopback URI may change as well
    let p = params_for(&pkce, CLIENT, "http://127.0.0.1:1234/callback");
    let (status, st) = s.start_flow(&session, &p).await;
    assert_eq!(status, 200, "{st}");

    // but nothing else
    for bad in [
        "http://localhost:54321/callback",
        "http://[::1]:54321/callback",
        "http://127.0.0.2:54321/callback",
        "http://127.0.0.1:54321/callback/x",
        "http://127.0.0.1:54321/callbackx",
        "http://127.0.0.1:54321/",
        "http://127.0.0.1:54321/callback?x=1",
        "https://127.0.0.1:54321/callback",
        "http://127.0.0.1.evil.com:54321/callback",
    ] {
        let p = params_for(&pkce, "native-app", bad);
        let (status, e) = s.start_flow(&session, &p).await;
        assert_shown(
            (status, &e),
            "invalid_redirect_uri",
            &["redirect_uri", "'http://127.0.0.1/callback'"],
        );
        let (status, e) = s.submit(&session, &p, true).await;
        assert_shown((status, &e), "invalid_redirect_uri", &["redirect_uri"]);
    }
    // a port that is not a port is not a URI at all
    for bad in [
        "http://127.0.0.1:54321x/callback",
        "http://127.0.0.1:654321/callback",
        "http://127.0.0.1:-1/callback",
    ] {
        let p = params_for(&pkce, "native-app", bad);
        let (status, e) = s.start_flow(&session, &p).await;
        assert_shown((status, &e), "invalid_redirect_uri", &["redirect_uri", bad]);
    }
}

async fn private_use_scheme_redirect_uri_is_accepted(b: Backend) {
    let s = Setup::new(b).start().await;
    let session = s.session("az5").await;
    let pkce = Pkce::new();
    let uri = "com.example.app:/oauth/cb";
    let p = params_for(&pkce, "native-app", uri);
    let (status, st) = s.start_flow(&session, &p).await;
    assert_eq!(status, 200, "{st}");
    assert_eq!(st["redirect_host"], "com.example.app");
    let (status, sub) = s.submit(&session, &p, true).await;
    assert_eq!(status, 200, "{sub}");
    let loc = sub["redirect_uri"].as_str().unwrap();
    assert!(loc.starts_with(&format!("{uri}?code=")), "{loc}");
    let q = query(loc);
    let (status, tok) = s
        .redeem(&q["code"], "native-app", uri, &pkce.verifier)
        .await;
    assert_eq!(status, 200, "{tok}");

    for bad in [
        "com.example.app:/oauth/cb/",
        "com.example.app:/oauth/CB",
        "com.example.app://oauth/cb",
        "com.example.evil:/oauth/cb",
        "com.example.app:/oauth/cb?x=1",
    ] {
        let p = params_for(&pkce, "native-app", bad);
        let (status, e) = s.start_flow(&session, &p).await;
        assert_shown((status, &e), "invalid_redirect_uri", &["redirect_uri"]);
    }
}

async fn redirectable_errors_carry_state_and_iss(b: Backend) {
    let s = Setup::new(b).start().await;
    let session = s.session("az6").await;
    let pkce = Pkce::new();

    // unknown resource
    let mut p = params(&pkce, "notes:read");
    p["resource"] = json!(["https://evil.example/mcp"]);
    for got in [
        s.start_flow(&session, &p).await,
        s.submit(&session, &p, true).await,
    ] {
        assert_redirected(
            &s,
            (got.0, &got.1),
            "invalid_target",
            &[
                "resource 'https://evil.example/mcp'",
                &format!("expected one of: '{RESOURCE}', '{OTHER_RESOURCE}'"),
            ],
        );
    }
    // one good, one bad resource
    p["resource"] = json!([RESOURCE, "http://127.0.0.1:8788/mcp/"]);
    let (status, e) = s.start_flow(&session, &p).await;
    assert_redirected(
        &s,
        (status, &e),
        "invalid_target",
        &["'http://127.0.0.1:8788/mcp/'"],
    );
    // not an absolute URI
    p["resource"] = json!("notes");
    let (status, e) = s.start_flow(&session, &p).await;
    assert_redirected(
        &s,
        (status, &e),
        "invalid_target",
        &["resource", "absolute"],
    );

    // a scope the requested resource does not have
    let mut p = params(&pkce, "files:read");
    p["resource"] = json!([RESOURCE]);
    for got in [
        s.start_flow(&session, &p).await,
        s.submit(&session, &p, true).await,
    ] {
        assert_redirected(
            &s,
            (got.0, &got.1),
            "invalid_scope",
            &["scope 'files:read'", RESOURCE, "'notes:read'"],
        );
    }
    let p = params(&pkce, "notes:read nonsense");
    let (status, e) = s.start_flow(&session, &p).await;
    assert_redirected(&s, (status, &e), "invalid_scope", &["'nonsense'"]);
    let p = params(&pkce, "notes:read \"quoted\"");
    let (status, e) = s.start_flow(&session, &p).await;
    assert_redirected(&s, (status, &e), "invalid_scope", &["scope"]);

    // response_type other than code
    for rt in ["token", "code token", "id_token"] {
        let mut p = params(&pkce, "notes:read");
        p["response_type"] = json!(rt);
        for got in [
            s.start_flow(&session, &p).await,
            s.submit(&session, &p, true).await,
        ] {
            assert_redirected(
                &s,
                (got.0, &got.1),
                "unsupported_response_type",
                &["response_type", &format!("'{rt}'"), "expected 'code'"],
            );
        }
    }

    // two resources configured, none requested
    let mut p = params(&pkce, "notes:read");
    p.as_object_mut().unwrap().remove("resource");
    for got in [
        s.start_flow(&session, &p).await,
        s.submit(&session, &p, true).await,
    ] {
        assert_redirected(
            &s,
            (got.0, &got.1),
            "invalid_target",
            &["resource is required", RESOURCE, OTHER_RESOURCE],
        );
    }
    p["resource"] = json!([]);
    let (status, e) = s.start_flow(&session, &p).await;
    assert_redirected(
        &s,
        (status, &e),
        "invalid_target",
        &["resource is required"],
    );

    // a bad prompt value
    let mut p = params(&pkce, "notes:read");
    p["prompt"] = json!("none consent");
    let (status, e) = s.start_flow(&session, &p).await;
    assert_redirected(&s, (status, &e), "invalid_request", &["prompt", "none"]);

    // a state that is not echoable is left out rather than reflected
    let mut p = params(&pkce, "notes:read");
    p["response_type"] = json!("token");
    p["state"] = json!("a\u{7}b");
    let (status, e) = s.start_flow(&session, &p).await;
    assert_eq!(status, 400, "{e}");
    let q = query(e["redirect_uri"].as_str().unwrap());
    assert!(!q.contains_key("state"), "{q:?}");
    assert_eq!(q["iss"], s.base);

    // none of these recorded consent
    let (_, st) = s.start_flow(&session, &params(&pkce, "notes:read")).await;
    assert_eq!(st["consent_required"], true, "{st}");
}

async fn submit_revalidates_the_request(b: Backend) {
    let s = Setup::new(b).start().await;
    let session = s.session("az7").await;
    let pkce = Pkce::new();
    let p = params(&pkce, "notes:read");
    let (status, st) = s.start_flow(&session, &p).await;
    assert_eq!(status, 200, "{st}");

    // the page's request changed between start and submit: another redirect URI
    let mut changed = p.clone();
    changed["redirect_uri"] = json!("https://attacker.example/callback");
    let (status, e) = s.submit(&session, &changed, true).await;
    assert_shown(
        (status, &e),
        "invalid_redirect_uri",
        &["'https://attacker.example/callback'", REDIRECT],
    );
    // another client
    let mut changed = p.clone();
    changed["client_id"] = json!("evil-agent");
    let (status, e) = s.submit(&session, &changed, true).await;
    assert_shown((status, &e), "invalid_client", &["'evil-agent'"]);
    // no code was issued and no consent recorded
    let (_, st) = s.start_flow(&session, &p).await;
    assert_eq!(st["consent_required"], true, "{st}");

    // submit without a session, or with a forged one
    let mut body = p.clone();
    body["consent_granted"] = json!(true);
    let (status, e) = s.post_json("/v1/oauth/authorize/submit", None, &body).await;
    assert_error((status, &e), 401, "invalid_session", &["Authorization"]);
    let (status, e) = s
        .post_json("/v1/oauth/authorize/submit", Some("cys_forged.sig"), &body)
        .await;
    assert_error((status, &e), 401, "invalid_session", &["session"]);
    let mut forged = session.clone();
    forged.insert(6, 'A');
    let (status, e) = s
        .post_json("/v1/oauth/authorize/submit", Some(&forged), &body)
        .await;
    assert_error((status, &e), 401, "invalid_session", &["session"]);

    // the scope was widened on submit to notes:admin, which this user (no admin role) may not
    // grant: the code carries only what may be granted
    let mut widened = p.clone();
    widened["scope"] = json!("notes:read notes:admin");
    let (status, sub) = s.submit(&session, &widened, true).await;
    assert_eq!(status, 200, "{sub}");
    let code = query(sub["redirect_uri"].as_str().unwrap())["code"].clone();
    let (status, tok) = s.redeem(&code, CLIENT, REDIRECT, &pkce.verifier).await;
    assert_eq!(status, 200, "{tok}");
    assert_eq!(tok["scope"], "notes:read");
    let claims = s
        .verify_access_token(tok["access_token"].as_str().unwrap())
        .await;
    assert_eq!(claims["scope"], "notes:read");
    assert!(!claims["scope"].as_str().unwrap().contains("notes:admin"));
    // nor was notes:admin recorded as consented
    let (_, st) = s.start_flow(&session, &widened).await;
    let admin = st["scope_results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["scope"] == "notes:admin")
        .unwrap()
        .clone();
    assert_eq!(admin["already_granted"], false);
    assert_eq!(admin["is_grantable"], false);
    // and only notes:admin requested → nothing may be granted → access_denied, no code
    let mut only_admin = p.clone();
    only_admin["scope"] = json!("notes:admin");
    let (status, sub) = s.submit(&session, &only_admin, true).await;
    assert_eq!(status, 200, "{sub}");
    let q = query(sub["redirect_uri"].as_str().unwrap());
    assert_eq!(q["error"], "access_denied");
    assert!(!q.contains_key("code"));
    assert_eq!(q["state"], "st-123");
    assert_eq!(q["iss"], s.base);
}

async fn preflight(s: &TestServer, path: &str, origin: &str) -> RawResponse {
    s.raw(
        reqwest::Method::OPTIONS,
        path,
        &[
            ("origin", origin),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "authorization, content-type",
            ),
        ],
        Vec::new(),
    )
    .await
}

async fn browser_api_cors_admits_only_allowed_origins(b: Backend) {
    let s = Setup::new(b).start().await;
    for path in [
        "/v1/sessions/attest",
        "/v1/oauth/authorize/start",
        "/v1/oauth/authorize/submit",
    ] {
        let r = preflight(&s, path, "http://127.0.0.1:3000").await;
        assert!(r.status < 300, "{path}: {} {}", r.status, r.text);
        assert_eq!(
            r.header("access-control-allow-origin"),
            Some("http://127.0.0.1:3000"),
            "{path}"
        );
        let allowed = r
            .header("access-control-allow-headers")
            .unwrap_or("")
            .to_ascii_lowercase();
        assert!(allowed.contains("authorization"), "{path}: {allowed}");
        assert!(allowed.contains("content-type"), "{path}: {allowed}");

        for evil in [
            "http://evil.example",
            "http://127.0.0.1:3001",
            "https://127.0.0.1:3000",
            "http://127.0.0.1:3000.evil.example",
            "null",
        ] {
            let r = preflight(&s, path, evil).await;
            assert!(
                r.header("access-control-allow-origin").is_none(),
                "{path} from {evil}: {:?}",
                r.headers
            );
        }
    }
    // actual requests: the allowed origin is echoed, another is not
    let r = s
        .raw(
            reqwest::Method::POST,
            "/v1/sessions/attest",
            &[
                ("origin", "http://127.0.0.1:3000"),
                ("content-type", "application/json"),
            ],
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://127.0.0.1:3000")
    );
    let r = s
        .raw(
            reqwest::Method::POST,
            "/v1/sessions/attest",
            &[
                ("origin", "http://evil.example"),
                ("content-type", "application/json"),
            ],
            b"{}".to_vec(),
        )
        .await;
    assert!(r.header("access-control-allow-origin").is_none());
}

/// The JSON endpoints and the token endpoint, with the content type each expects.
const POST_ENDPOINTS: [(&str, &str); 4] = [
    ("/v1/sessions/attest", "application/json"),
    ("/v1/oauth/authorize/start", "application/json"),
    ("/v1/oauth/authorize/submit", "application/json"),
    ("/oauth2/token", "application/x-www-form-urlencoded"),
];

#[track_caller]
fn assert_json_4xx(what: &str, r: &RawResponse) {
    assert!(
        (400..500).contains(&r.status),
        "{what}: expected a 4xx, got {}: {}",
        r.status,
        r.text
    );
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{what}: not JSON ({:?}): {}",
        r.header("content-type"),
        r.text
    );
    assert!(
        r.json["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: no error: {}",
        r.text
    );
    assert!(
        r.json["error_description"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{what}: no error_description: {}",
        r.text
    );
}

async fn malformed_bodies_get_a_json_4xx_never_a_5xx(b: Backend) {
    let s = Setup::new(b).start().await;
    let session = s.session("az8").await;
    let bearer = format!("Bearer {session}");
    let pkce = Pkce::new();

    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_obj = format!(
        "{{\"client_id\":{}1{}}}",
        "{\"a\":".repeat(10_000),
        "}".repeat(10_000)
    );
    let big = format!(
        "{{\"token\":\"{}\",\"profile_id\":\"default\"}}",
        "a".repeat(100 * 1024)
    );
    // Far over the limit while the client is still sending: the 413 must still arrive (the server
    // drains what it will not read instead of resetting the connection under the answer).
    let huge = format!(
        "{{\"token\":\"{}\",\"profile_id\":\"default\"}}",
        "a".repeat(900 * 1024)
    );
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("null", b"null".to_vec()),
        ("[]", b"[]".to_vec()),
        ("\"x\"", b"\"x\"".to_vec()),
        ("42", b"42".to_vec()),
        ("{", b"{".to_vec()),
        ("invalid UTF-8", vec![0xff, 0xfe, b'{', 0xc3, 0x28, b'}']),
        (
            "invalid UTF-8 in a string",
            b"{\"token\":\"\xff\xfe\"}".to_vec(),
        ),
        ("100 KB", big.into_bytes()),
        ("900 KB", huge.into_bytes()),
        ("10k deep array", deep.clone().into_bytes()),
        ("10k deep object", deep_obj.into_bytes()),
        ("NUL", b"\0".to_vec()),
    ];
    for (path, ct) in POST_ENDPOINTS {
        for (what, body) in &bodies {
            for content_type in [ct, "application/json", "text/plain"] {
                let r = s
                    .raw(
                        reqwest::Method::POST,
                        path,
                        &[("content-type", content_type), ("authorization", &bearer)],
                        body.clone(),
                    )
                    .await;
                assert_json_4xx(&format!("POST {path} ({content_type}) {what}"), &r);
                if *what == "100 KB" || *what == "900 KB" {
                    assert_error(
                        (r.status, &r.json),
                        413,
                        "invalid_request",
                        &["request body", "length limit"],
                    );
                }
            }
        }
    }

    // wrong types are named
    let mut start = params(&pkce, "notes:read");
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "/v1/sessions/attest",
            json!({"token": 5, "profile_id": "default"}),
            "token",
        ),
        (
            "/v1/sessions/attest",
            json!({"token": "x", "profile_id": ["default"]}),
            "profile_id",
        ),
        (
            "/v1/sessions/attest",
            json!({"token": "x", "profile_id": "default", "session_duration_minutes": -1}),
            "session_duration_minutes",
        ),
        (
            "/v1/sessions/attest",
            json!({"token": "x", "profile_id": "default", "session_duration_minutes": "10"}),
            "session_duration_minutes",
        ),
        (
            "/v1/sessions/attest",
            json!({"profile_id": "default"}),
            "token",
        ),
        (
            "/v1/oauth/authorize/start",
            json!({"resource": 5}),
            "resource",
        ),
        (
            "/v1/oauth/authorize/start",
            json!({"resource": [5]}),
            "resource",
        ),
        (
            "/v1/oauth/authorize/start",
            json!({"resource": {"a": 1}}),
            "resource",
        ),
        (
            "/v1/oauth/authorize/start",
            json!({"client_id": 5}),
            "client_id",
        ),
        (
            "/v1/oauth/authorize/start",
            json!({"scope": ["notes:read"]}),
            "scope",
        ),
        (
            "/v1/oauth/authorize/start",
            json!({"state": false}),
            "state",
        ),
        (
            "/v1/oauth/authorize/start",
            json!({"session_duration_minutes": "ten"}),
            "session_duration_minutes",
        ),
        (
            "/v1/oauth/authorize/submit",
            json!({"consent_granted": "yes"}),
            "consent_granted",
        ),
        (
            "/v1/oauth/authorize/submit",
            json!({"consent_granted": 1}),
            "consent_granted",
        ),
        ("/v1/oauth/authorize/submit", json!({}), "consent_granted"),
        (
            "/v1/oauth/authorize/submit",
            json!({"consent_granted": true, "resource": 5}),
            "resource",
        ),
        (
            "/v1/oauth/authorize/submit",
            json!({"consent_granted": true, "code_challenge": 5}),
            "code_challenge",
        ),
    ];
    for (path, patch, field) in cases {
        // a complete request with just that field wrong, so nothing else is at fault
        let mut body = start.clone();
        if path == "/v1/oauth/authorize/submit" {
            body["consent_granted"] = json!(true);
        }
        if path == "/v1/sessions/attest" {
            body = json!({});
        }
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        if patch.as_object().unwrap().is_empty() {
            // `{}` on submit: consent_granted is missing
            body.as_object_mut().unwrap().remove("consent_granted");
        }
        let r = s
            .raw(
                reqwest::Method::POST,
                path,
                &[
                    ("content-type", "application/json"),
                    ("authorization", &bearer),
                ],
                serde_json::to_vec(&body).unwrap(),
            )
            .await;
        assert_json_4xx(&format!("POST {path} {patch}"), &r);
        assert_error((r.status, &r.json), 400, "invalid_request", &[field]);
    }
    // a parameter given twice is refused, not silently resolved one way or the other
    for path in ["/v1/oauth/authorize/start", "/v1/oauth/authorize/submit"] {
        let body = format!(
            r#"{{"client_id":"{CLIENT}","redirect_uri":"{REDIRECT}","scope":"notes:read",
                "code_challenge":"{}","code_challenge_method":"S256","resource":"{RESOURCE}",
                "consent_granted":true,"redirect_uri":"https://attacker.example/cb"}}"#,
            pkce.challenge
        );
        let r = s
            .raw(
                reqwest::Method::POST,
                path,
                &[
                    ("content-type", "application/json"),
                    ("authorization", &bearer),
                ],
                body.into_bytes(),
            )
            .await;
        assert_error(
            (r.status, &r.json),
            400,
            "invalid_request",
            &["duplicate field `redirect_uri`"],
        );
        assert!(r.json.get("redirect_uri").is_none(), "{}", r.text);
    }
    let r = s
        .raw(
            reqwest::Method::POST,
            "/v1/oauth/authorize/submit",
            &[
                ("content-type", "application/json"),
                ("authorization", &bearer),
            ],
            format!(
                r#"{{"client_id":"{CLIENT}","code_challenge":"{}","code_challenge_method":"S256",
                    "resource":"{RESOURCE}","consent_granted":false,"consent_granted":true}}"#,
                pkce.challenge
            )
            .into_bytes(),
        )
        .await;
    assert_error(
        (r.status, &r.json),
        400,
        "invalid_request",
        &["duplicate field `consent_granted`"],
    );

    start["resource"] = json!(RESOURCE);
    let (status, st) = s.start_flow(&session, &start).await;
    assert_eq!(status, 200, "a well-formed body still works: {st}");

    // unknown paths and wrong methods are JSON too
    for path in [
        "/nope",
        "/v1",
        "/oauth2/token/x",
        "/.well-known/nope",
        "/v1/oauth/authorize",
    ] {
        let r = s.raw(reqwest::Method::GET, path, &[], Vec::new()).await;
        assert_eq!(r.status, 404, "{path}: {}", r.text);
        assert_json_4xx(path, &r);
        assert_eq!(r.json["error"], "not_found");
        assert!(r.json["error_description"].as_str().unwrap().contains(path));
    }
    let r = s
        .raw(reqwest::Method::POST, "/nope", &[], b"{}".to_vec())
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(r.json["error"], "not_found");
    for (path, _) in POST_ENDPOINTS {
        for method in [
            reqwest::Method::GET,
            reqwest::Method::PUT,
            reqwest::Method::DELETE,
        ] {
            let r = s.raw(method.clone(), path, &[], Vec::new()).await;
            assert_eq!(r.status, 405, "{method} {path}: {}", r.text);
            assert_json_4xx(&format!("{method} {path}"), &r);
            assert_eq!(r.json["error"], "method_not_allowed");
            let d = r.json["error_description"].as_str().unwrap();
            assert!(d.contains(method.as_str()) && d.contains(path), "{d}");
        }
    }
    for path in ["/healthz", "/.well-known/jwks.json"] {
        let r = s.raw(reqwest::Method::POST, path, &[], Vec::new()).await;
        assert_eq!(r.status, 405, "POST {path}: {}", r.text);
        assert_eq!(r.json["error"], "method_not_allowed");
    }

    // after all that, the server is fine
    let (status, h) = s.get("/healthz").await;
    assert_eq!((status, h["status"].as_str()), (200, Some("ok")));
    assert!(
        !s.log().contains("panicked"),
        "a handler panicked: {}",
        s.log()
    );
}
