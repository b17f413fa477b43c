//! Complete flows over HTTP against the real server: attest → start → submit → token →
//! refresh → reuse detection, consent memory, discovery. Every test runs on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use consentry_testkit::*;
use serde_json::json;

on_both_backends!(
    complete_flow_attest_start_submit_token_refresh_reuse,
    one_round_trip_start_attests_and_starts,
    discovery_metadata_and_jwks,
    consent_is_remembered_and_step_up_asks_only_new_scopes,
    remembered_consent_is_bound_to_the_redirect_uri,
    native_public_clients_always_see_the_consent_screen,
    prompt_consent_forces_consent_screen,
    prompt_none_without_prior_consent_redirects_consent_required,
    deny_redirects_access_denied_with_state_and_iss,
    tolerant_of_real_client_quirks,
    scope_requiring_a_role_is_not_grantable,
    instances_share_state_through_the_database,
);

async fn complete_flow_attest_start_submit_token_refresh_reuse(b: Backend) {
    let s = Setup::new(b).start().await;
    let pkce = Pkce::new();
    let p = params(&pkce, "notes:read");

    // attest
    let (status, att) = s.attest(&s.keys.tat("alice")).await;
    assert_eq!(status, 200, "{att}");
    assert_eq!(att["user"]["user_id"], "alice");
    assert_eq!(att["user"]["email"], "alice@example.com");
    assert!(att["expires_at"].as_i64().unwrap() > now() + 500);
    let session = att["session_token"].as_str().unwrap();

    // start
    let (status, st) = s.start_flow(session, &p).await;
    assert_eq!(status, 200, "{st}");
    assert_eq!(st["client"]["client_id"], CLIENT);
    assert_eq!(st["client"]["client_name"], "Demo agent");
    assert_eq!(st["client"]["verified"], true);
    assert_eq!(st["redirect_host"], "127.0.0.1");
    assert_eq!(st["consent_required"], true);
    assert_eq!(st["user"]["user_id"], "alice");
    assert_eq!(
        st["scope_results"],
        json!([{"scope": "notes:read", "description": "Read your notes", "resource": RESOURCE,
                "is_grantable": true, "already_granted": false}])
    );
    assert_eq!(st["resources"], json!([{"uri": RESOURCE, "name": "Notes"}]));
    assert!(st.get("session_token").is_none());

    // submit
    let (status, sub) = s.submit(session, &p, true).await;
    assert_eq!(status, 200, "{sub}");
    let loc = sub["redirect_uri"].as_str().unwrap();
    assert!(loc.starts_with(&format!("{REDIRECT}?")), "{loc}");
    let q = query(loc);
    assert_eq!(q["state"], "st-123");
    assert_eq!(q["iss"], s.base);
    let code = &q["code"];

    // token
    let (status, headers, tok) = s
        .token_raw(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("client_id", CLIENT),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &pkce.verifier),
            ("resource", RESOURCE),
        ])
        .await;
    assert_eq!(status, 200, "{tok}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(tok["token_type"], "Bearer");
    assert_eq!(tok["scope"], "notes:read");
    assert_eq!(tok["expires_in"], 3600);
    let at = tok["access_token"].as_str().unwrap();
    let claims = s.verify_access_token(at).await;
    assert_eq!(claims["iss"], s.base);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["aud"], RESOURCE);
    assert_eq!(claims["client_id"], CLIENT);
    assert_eq!(claims["scope"], "notes:read");
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 16));
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );
    let r1 = tok["refresh_token"].as_str().unwrap().to_owned();

    // refresh rotates
    let (status, headers, t2) = s
        .token_raw(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &r1),
            ("client_id", CLIENT),
        ])
        .await;
    assert_eq!(status, 200, "{t2}");
    assert_eq!(headers["cache-control"], "no-store");
    let r2 = t2["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(r1, r2, "refresh tokens rotate on every use");
    let c2 = s
        .verify_access_token(t2["access_token"].as_str().unwrap())
        .await;
    assert_eq!(c2["sub"], "alice");
    assert_ne!(c2["jti"], claims["jti"]);

    // r2 works once more → r3
    let (status, t3) = s
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &r2),
            ("client_id", CLIENT),
        ])
        .await;
    assert_eq!(status, 200, "{t3}");
    let r3 = t3["refresh_token"].as_str().unwrap().to_owned();

    // reuse of r1 (rotated) → invalid_grant and the whole family is revoked: r3 dies too
    let (status, reuse) = s
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &r1),
            ("client_id", CLIENT),
        ])
        .await;
    assert_eq!(status, 400);
    assert_eq!(reuse["error"], "invalid_grant");
    assert!(
        reuse["error_description"]
            .as_str()
            .unwrap()
            .contains("already used"),
        "{reuse}"
    );
    let (status, after) = s
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &r3),
            ("client_id", CLIENT),
        ])
        .await;
    assert_eq!(status, 400, "{after}");
    assert_eq!(after["error"], "invalid_grant");
}

async fn one_round_trip_start_attests_and_starts(b: Backend) {
    let s = Setup::new(b).start().await;
    let pkce = Pkce::new();
    let mut body = params(&pkce, "notes:read");
    body["trusted_auth_token"] = json!(s.keys.tat("bob"));
    body["profile_id"] = json!("default");
    let (status, st) = s.post_json("/v1/oauth/authorize/start", None, &body).await;
    assert_eq!(status, 200, "{st}");
    assert_eq!(st["user"]["user_id"], "bob");
    let session = st["session_token"].as_str().unwrap();
    assert!(st["session_expires_at"].as_i64().unwrap() > now());
    // the session from the one-round-trip form works for submit
    let (status, sub) = s.submit(session, &params(&pkce, "notes:read"), true).await;
    assert_eq!(status, 200, "{sub}");
    assert!(query(sub["redirect_uri"].as_str().unwrap()).contains_key("code"));

    // without any credential → 401 invalid_session
    let (status, e) = s
        .post_json("/v1/oauth/authorize/start", None, &params(&pkce, ""))
        .await;
    assert_eq!(status, 401);
    assert_eq!(e["error"], "invalid_session");
    // TAT without profile_id → 400 naming profile_id
    let mut body = params(&pkce, "notes:read");
    body["trusted_auth_token"] = json!(s.keys.tat("bob"));
    let (status, e) = s.post_json("/v1/oauth/authorize/start", None, &body).await;
    assert_eq!(status, 400);
    assert!(
        e["error_description"]
            .as_str()
            .unwrap()
            .contains("profile_id"),
        "{e}"
    );
}

async fn discovery_metadata_and_jwks(b: Backend) {
    let s = Setup::new(b).start().await;
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let (status, m) = s.get(path).await;
        assert_eq!(status, 200);
        assert_eq!(
            m["issuer"], s.base,
            "issuer must equal the URL byte for byte"
        );
        assert_eq!(
            m["authorization_endpoint"],
            "http://127.0.0.1:3000/oauth/authorize"
        );
        assert_eq!(m["token_endpoint"], s.url("/oauth2/token"));
        assert_eq!(m["jwks_uri"], s.url("/.well-known/jwks.json"));
        assert_eq!(m["response_types_supported"], json!(["code"]));
        assert_eq!(m["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(m["authorization_response_iss_parameter_supported"], true);
        assert!(
            m["grant_types_supported"]
                .as_array()
                .unwrap()
                .contains(&json!("refresh_token"))
        );
        assert!(
            m["token_endpoint_auth_methods_supported"]
                .as_array()
                .unwrap()
                .contains(&json!("none"))
        );
        assert!(
            m["scopes_supported"]
                .as_array()
                .unwrap()
                .contains(&json!("notes:read"))
        );
    }
    let jwks = s.jwks().await;
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kty"], "EC");
    assert_eq!(keys[0]["alg"], "ES256");
    assert!(keys[0].get("d").is_none(), "no private material in JWKS");
    let (status, h) = s.get("/healthz").await;
    assert_eq!((status, h["status"].as_str()), (200, Some("ok")));
    // CORS on discovery for browser-based clients
    let r = s
        .http
        .get(s.url("/.well-known/oauth-authorization-server"))
        .header("origin", "http://inspector.localhost:6274")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
}

/// A config client that is not native: public, with two https redirect URIs.
const WEB_CLIENT: &str = r#"
[[clients]]
client_id = "web-two"
client_name = "Web two"
redirect_uris = ["https://a.example/cb", "https://b.example/cb"]
"#;

/// Authorization parameters for `web-two` at `redirect_uri`.
fn web_params(pkce: &Pkce, scope: &str, redirect_uri: &str) -> serde_json::Value {
    let mut p = params(pkce, scope);
    p["client_id"] = json!("web-two");
    p["redirect_uri"] = json!(redirect_uri);
    p
}

async fn consent_is_remembered_and_step_up_asks_only_new_scopes(b: Backend) {
    let s = Setup::new(b).extra(WEB_CLIENT).start().await;
    let pkce = Pkce::new();
    let a = "https://a.example/cb";
    s.code_for("carol", &web_params(&pkce, "notes:read", a))
        .await;

    let session = s.session("carol").await;
    let (_, st) = s
        .start_flow(&session, &web_params(&pkce, "notes:read", a))
        .await;
    assert_eq!(st["consent_required"], false, "{st}");
    assert_eq!(st["scope_results"][0]["already_granted"], true);

    let (_, st) = s
        .start_flow(&session, &web_params(&pkce, "notes:read notes:write", a))
        .await;
    assert_eq!(st["consent_required"], true);
    let lines = st["scope_results"].as_array().unwrap();
    let find = |name: &str| lines.iter().find(|l| l["scope"] == name).unwrap().clone();
    assert_eq!(find("notes:read")["already_granted"], true);
    assert_eq!(find("notes:write")["already_granted"], false);

    // consent is per client: another client asks again
    let mut other = params(&pkce, "notes:read");
    other["client_id"] = json!("other-agent");
    other["redirect_uri"] = json!("https://other.example.com/cb");
    let (status, st) = s.start_flow(&session, &other).await;
    assert_eq!(status, 200, "{st}");
    assert_eq!(st["consent_required"], true);
    // and per user
    let dave = s.session("dave").await;
    let (_, st) = s
        .start_flow(&dave, &web_params(&pkce, "notes:read", a))
        .await;
    assert_eq!(st["consent_required"], true);
}

/// Remembered consent is bound to the redirect URI it was given for: the same client sending
/// its codes to another of its registered URIs asks again (and `prompt=none` there is refused).
async fn remembered_consent_is_bound_to_the_redirect_uri(b: Backend) {
    let s = Setup::new(b).extra(WEB_CLIENT).start().await;
    let pkce = Pkce::new();
    let (a, b_uri) = ("https://a.example/cb", "https://b.example/cb");
    s.code_for("rb1", &web_params(&pkce, "notes:read", a)).await;
    let session = s.session("rb1").await;
    let (_, st) = s
        .start_flow(&session, &web_params(&pkce, "notes:read", a))
        .await;
    assert_eq!(st["consent_required"], false, "{st}");

    let (status, st) = s
        .start_flow(&session, &web_params(&pkce, "notes:read", b_uri))
        .await;
    assert_eq!(status, 200, "{st}");
    assert_eq!(st["consent_required"], true, "{st}");
    assert_eq!(st["scope_results"][0]["already_granted"], false, "{st}");
    let mut p = web_params(&pkce, "notes:read", b_uri);
    p["prompt"] = json!("none");
    let (status, e) = s.start_flow(&session, &p).await;
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"], "consent_required");

    // Consenting at b remembers b too, and a keeps its own.
    s.code_for("rb1", &web_params(&pkce, "notes:read", b_uri))
        .await;
    for uri in [a, b_uri] {
        let (_, st) = s
            .start_flow(&session, &web_params(&pkce, "notes:read", uri))
            .await;
        assert_eq!(st["consent_required"], false, "{uri}: {st}");
    }
}

/// RFC 8252 §8.6: any local program can use a public client's id with a loopback redirect URI
/// (any port) or claim its private-use scheme. Remembered consent never skips the screen for
/// such a client: the screen marks what was granted before (one click), and `prompt=none` gets
/// `consent_required`. `remember_consent_for_native_clients = true` restores the skip.
async fn native_public_clients_always_see_the_consent_screen(b: Backend) {
    let s = Setup::new(b.clone()).start().await;
    let pkce = Pkce::new();
    let native_private_use = json!({
        "client_id": "native-app", "redirect_uri": "com.example.app:/oauth/cb",
        "scope": "notes:read", "code_challenge": pkce.challenge, "code_challenge_method": "S256",
        "resource": RESOURCE, "state": "st-123",
    });
    let mut native_loopback = native_private_use.clone();
    native_loopback["redirect_uri"] = json!("http://127.0.0.1:4567/callback");
    let mut demo_other_port = params(&pkce, "notes:read");
    demo_other_port["redirect_uri"] = json!("http://127.0.0.1:1234/callback");
    for (label, p, again) in [
        (
            "loopback",
            params(&pkce, "notes:read"),
            demo_other_port.clone(),
        ),
        (
            "private-use",
            native_private_use.clone(),
            native_private_use.clone(),
        ),
        (
            "loopback without port",
            native_loopback.clone(),
            native_loopback.clone(),
        ),
    ] {
        s.code_for("native-user", &p).await;
        let session = s.session("native-user").await;
        let (status, st) = s.start_flow(&session, &again).await;
        assert_eq!(status, 200, "[{label}] {st}");
        assert_eq!(st["consent_required"], true, "[{label}] {st}");
        assert!(
            st["scope_results"]
                .as_array()
                .unwrap()
                .iter()
                .all(|l| l["already_granted"] == true),
            "[{label}] the screen still marks what was granted: {st}"
        );
        let mut none = again.clone();
        none["prompt"] = json!("none");
        for (what, got) in [
            ("start", s.start_flow(&session, &none).await),
            ("submit", s.submit(&session, &none, true).await),
        ] {
            assert_eq!(got.0, 400, "[{label}] {what}: {}", got.1);
            assert_eq!(got.1["error"], "consent_required", "[{label}] {what}");
            assert!(
                got.1["error_description"]
                    .as_str()
                    .unwrap()
                    .contains("remember_consent_for_native_clients"),
                "[{label}] {what}: {}",
                got.1
            );
            // A verified client: the error goes back to it, never a code.
            let loc = got.1["redirect_uri"].as_str().unwrap();
            assert_eq!(query(loc)["error"], "consent_required", "[{label}] {loc}");
            assert!(!query(loc).contains_key("code"), "[{label}] {loc}");
        }
    }

    // The operator may accept the risk.
    let s = Setup::new(b)
        .top("remember_consent_for_native_clients", "true")
        .start()
        .await;
    s.code_for("native-user", &params(&pkce, "notes:read"))
        .await;
    let session = s.session("native-user").await;
    let (_, st) = s.start_flow(&session, &demo_other_port).await;
    assert_eq!(st["consent_required"], false, "{st}");
    let mut none = demo_other_port.clone();
    none["prompt"] = json!("none");
    let (status, sub) = s.submit(&session, &none, true).await;
    assert_eq!(status, 200, "{sub}");
    assert!(query(sub["redirect_uri"].as_str().unwrap()).contains_key("code"));
}

async fn prompt_consent_forces_consent_screen(b: Backend) {
    let s = Setup::new(b).start().await;
    let pkce = Pkce::new();
    s.code_for("erin", &params(&pkce, "notes:read")).await;
    let session = s.session("erin").await;
    let mut p = params(&pkce, "notes:read");
    p["prompt"] = json!("consent");
    let (_, st) = s.start_flow(&session, &p).await;
    assert_eq!(st["consent_required"], true);
}

async fn prompt_none_without_prior_consent_redirects_consent_required(b: Backend) {
    let s = Setup::new(b).start().await;
    let pkce = Pkce::new();
    let session = s.session("frank").await;
    let mut p = params(&pkce, "notes:read");
    p["prompt"] = json!("none");
    let (status, e) = s.start_flow(&session, &p).await;
    assert_eq!(status, 400);
    assert_eq!(e["error"], "consent_required");
    let q = query(e["redirect_uri"].as_str().unwrap());
    assert_eq!(q["error"], "consent_required");
    assert_eq!(q["state"], "st-123");
    assert_eq!(q["iss"], s.base);
}

async fn deny_redirects_access_denied_with_state_and_iss(b: Backend) {
    let s = Setup::new(b).start().await;
    let pkce = Pkce::new();
    let p = params(&pkce, "notes:read notes:write");
    let session = s.session("gina").await;
    let (status, sub) = s.submit(&session, &p, false).await;
    assert_eq!(status, 200, "{sub}");
    let loc = sub["redirect_uri"].as_str().unwrap();
    assert!(loc.starts_with(REDIRECT));
    let q = query(loc);
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["state"], "st-123");
    assert_eq!(q["iss"], s.base);
    assert!(!q.contains_key("code"));
    // denying records nothing: the next start still asks
    let (_, st) = s.start_flow(&session, &p).await;
    assert_eq!(st["consent_required"], true);
    assert!(
        st["scope_results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["already_granted"] == false)
    );
}

async fn tolerant_of_real_client_quirks(b: Backend) {
    let s = Setup::new(b).start().await;
    let pkce = Pkce::new();
    let session = s.session("hank").await;
    // no response_type (ChatGPT), no scope → default_scopes, resource as a string
    let p = json!({
        "client_id": CLIENT, "redirect_uri": REDIRECT, "state": "x",
        "code_challenge": pkce.challenge, "code_challenge_method": "S256", "resource": RESOURCE,
    });
    let (status, st) = s.start_flow(&session, &p).await;
    assert_eq!(status, 200, "{st}");
    let scopes: Vec<&str> = st["scope_results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["scope"].as_str().unwrap())
        .collect();
    assert_eq!(
        scopes,
        ["notes:read"],
        "absent scope → the resource's default_scopes"
    );
    // stray whitespace in scope, offline_access tolerated
    let p = params(&pkce, "  notes:read \t notes:write  offline_access ");
    let (status, st) = s.start_flow(&session, &p).await;
    assert_eq!(status, 200, "{st}");
    assert_eq!(st["scope_results"].as_array().unwrap().len(), 2);
    // the code flow completes and the token's scope is the granted set
    let tok = s.tokens_for("hank", &pkce, &p).await;
    assert_eq!(tok["scope"], "notes:read notes:write");
}

async fn scope_requiring_a_role_is_not_grantable(b: Backend) {
    let s = Setup::new(b).start().await;
    let pkce = Pkce::new();
    let p = params(&pkce, "notes:read notes:admin");
    // ivy has no roles
    let session = s.session("ivy").await;
    let (_, st) = s.start_flow(&session, &p).await;
    let lines = st["scope_results"].as_array().unwrap();
    let admin = lines.iter().find(|l| l["scope"] == "notes:admin").unwrap();
    assert_eq!(admin["is_grantable"], false);
    let tok = s.tokens_for("ivy", &pkce, &p).await;
    assert_eq!(
        tok["scope"], "notes:read",
        "a not-grantable scope is left out of the grant"
    );

    // an admin may grant it
    let mut claims = tat_claims("judy");
    claims["roles"] = json!(["admin"]);
    let (status, att) = s.attest(&s.keys.sign(&claims)).await;
    assert_eq!(status, 200, "{att}");
    assert_eq!(att["user"]["roles"], json!(["admin"]));
    let (_, st) = s
        .start_flow(att["session_token"].as_str().unwrap(), &p)
        .await;
    let admin = st["scope_results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["scope"] == "notes:admin")
        .unwrap()
        .clone();
    assert_eq!(admin["is_grantable"], true);
}

async fn instances_share_state_through_the_database(b: Backend) {
    // Two server processes on one database (the PostgreSQL deployment model; SQLite too, on one
    // machine): sessions, codes and refresh tokens made by one are honoured by the other.
    let setup = Setup::new(b);
    let keys = setup.keys.clone();
    let a = setup.start().await;
    let mut setup_b = Setup::new(Backend::Sqlite).top("issuer", &format!("\"{}\"", a.base));
    setup_b.keys = keys;
    let bsrv = a.sibling(&setup_b).await;
    let pkce = Pkce::new();
    let p = params(&pkce, "notes:read");
    let session = a.session("kim").await;
    let (status, _) = bsrv.start_flow(&session, &p).await;
    assert_eq!(status, 200);
    let (_, sub) = bsrv.submit(&session, &p, true).await;
    let code = query(sub["redirect_uri"].as_str().unwrap())["code"].clone();
    let (status, tok) = a
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", CLIENT),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &pkce.verifier),
        ])
        .await;
    assert_eq!(status, 200, "{tok}");
    // same signing key published by both
    assert_eq!(a.jwks().await, bsrv.jwks().await);
    // the code is single-use across instances
    let (status, again) = bsrv
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", CLIENT),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &pkce.verifier),
        ])
        .await;
    assert_eq!(status, 400, "{again}");
    let r = tok["refresh_token"].as_str().unwrap();
    let (status, _) = bsrv
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", r),
            ("client_id", CLIENT),
        ])
        .await;
    assert_eq!(
        status, 400,
        "the replayed code revoked the grant on every instance"
    );
}
