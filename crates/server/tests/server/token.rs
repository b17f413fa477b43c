//! The token endpoint's rules, each attacked over HTTP against the real server: PKCE, single-use
//! and bound authorization codes, refresh rotation with reuse detection, and the endpoint's
//! hygiene. Every refusal must name the parameter at fault, and must change nothing: a failed
//! redemption leaves the code usable, a refused refresh does not rotate.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use consentry_testkit::*;
use serde_json::{Value, json};

on_both_backends!(
    pkce_plain_method_is_refused_with_a_redirect,
    pkce_challenge_and_method_are_required,
    pkce_verifier_is_checked_and_a_wrong_one_changes_nothing,
    code_is_single_use_and_replay_revokes_the_grant,
    code_concurrent_redemption_issues_once,
    code_is_bound_to_its_client,
    code_is_bound_to_its_redirect_uri,
    code_cannot_be_forged_or_altered,
    code_expires,
    code_resource_must_be_within_the_authorization,
    code_audience_is_bound_to_the_requested_resource,
    refresh_rotates_and_reuse_revokes_the_family,
    refresh_reuse_grace_allows_an_immediate_retry,
    refresh_scope_may_only_narrow_and_the_grant_is_kept,
    refresh_token_is_bound_to_its_client,
    refresh_concurrent_use_never_issues_twice,
    refresh_needs_the_refresh_token_grant,
    token_endpoint_hygiene,
    token_endpoint_public_client_must_not_send_credentials,
    token_endpoint_cors_preflight_from_any_origin,
    refresh_rereads_the_users_roles_and_drops_scopes_they_no_longer_allow,
    refresh_of_a_user_who_no_longer_exists_is_invalid_grant,
    grant_has_an_absolute_lifetime_however_often_it_rotates,
    code_redemption_decides_against_the_user_as_they_are_now,
);

/// A client whose grant_types leave out refresh_token gets no refresh token from a code, and
/// one it holds from before stops working (unauthorized_client, nothing rotated).
async fn refresh_needs_the_refresh_token_grant(b: Backend) {
    let mut s = Setup::new(b).start().await;
    let (_, rt) = tokens(&s, "grant-types-user", "notes:read").await;
    let config = std::fs::read_to_string(&s.config_path).unwrap();
    let block = format!("client_id = \"{CLIENT}\"\n");
    assert!(config.contains(&block));
    let narrowed = config.replacen(
        &block,
        &format!("{block}grant_types = [\"authorization_code\"]\n"),
        1,
    );
    std::fs::write(&s.config_path, narrowed).unwrap();
    s.restart().await;
    let (status, e) = s.refresh(&rt, CLIENT).await;
    assert_error(
        (status, &e),
        400,
        "unauthorized_client",
        &["refresh_token", CLIENT],
    );
    let (c, pkce) = code(&s, "grant-types-user", "notes:read").await;
    let (status, tok) = s.redeem(&c, CLIENT, REDIRECT, &pkce.verifier).await;
    assert_eq!(status, 200, "{tok}");
    assert!(tok["access_token"].is_string(), "{tok}");
    assert!(tok.get("refresh_token").is_none(), "{tok}");
    // Put back: the token from before was not rotated or revoked by the refusal.
    std::fs::write(&s.config_path, config).unwrap();
    s.restart().await;
    let (status, body) = s.refresh(&rt, CLIENT).await;
    assert_eq!(status, 200, "{body}");
}

fn desc(body: &Value) -> &str {
    body["error_description"].as_str().unwrap_or("")
}

/// attest → start → submit for `CLIENT` with `scope`; the code and its PKCE pair.
async fn code(s: &TestServer, user: &str, scope: &str) -> (String, Pkce) {
    let pkce = Pkce::new();
    let code = s.code_for(user, &params(&pkce, scope)).await;
    (code, pkce)
}

/// A code redeemed: (access token, refresh token).
async fn tokens(s: &TestServer, user: &str, scope: &str) -> (String, String) {
    let (c, pkce) = code(s, user, scope).await;
    let (status, tok) = s.redeem(&c, CLIENT, REDIRECT, &pkce.verifier).await;
    assert_eq!(status, 200, "{tok}");
    (
        tok["access_token"].as_str().unwrap().to_owned(),
        tok["refresh_token"].as_str().unwrap().to_owned(),
    )
}

fn refresh_token_of(body: &Value) -> String {
    body["refresh_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no refresh_token in {body}"))
        .to_owned()
}

// ------------------------------------------------------------------------------------------
// PKCE

async fn pkce_plain_method_is_refused_with_a_redirect(b: Backend) {
    let s = Setup::new(b).start().await;
    let session = s.session("pk1").await;
    let pkce = Pkce::new();
    let mut p = params(&pkce, "notes:read");
    p["code_challenge"] = json!(pkce.verifier);
    p["code_challenge_method"] = json!("plain");

    let (status, e) = s.start_flow(&session, &p).await;
    assert_error(
        (status, &e),
        400,
        "invalid_request",
        &["code_challenge_method", "'plain'", "S256"],
    );
    let loc = e["redirect_uri"].as_str().expect("a redirectable error");
    assert!(loc.starts_with(&format!("{REDIRECT}?")), "{loc}");
    let q = query(loc);
    assert_eq!(q["error"], "invalid_request");
    assert!(q["error_description"].contains("code_challenge_method"));
    assert_eq!(q["state"], "st-123");
    assert_eq!(q["iss"], s.base);
    assert!(!q.contains_key("code"));

    // submit re-validates: no code for a plain challenge either
    let (status, e) = s.submit(&session, &p, true).await;
    assert_error(
        (status, &e),
        400,
        "invalid_request",
        &["code_challenge_method", "S256"],
    );
    let q = query(e["redirect_uri"].as_str().unwrap());
    assert!(!q.contains_key("code"), "{q:?}");
    assert_eq!(q["error"], "invalid_request");
    assert_eq!(q["state"], "st-123");
    assert_eq!(q["iss"], s.base);
}

async fn pkce_challenge_and_method_are_required(b: Backend) {
    let s = Setup::new(b).start().await;
    let session = s.session("pk2").await;
    let pkce = Pkce::new();

    let mut p = params(&pkce, "notes:read");
    p.as_object_mut().unwrap().remove("code_challenge");
    for (status, e) in [
        s.start_flow(&session, &p).await,
        s.submit(&session, &p, true).await,
    ] {
        assert_error(
            (status, &e),
            400,
            "invalid_request",
            &["code_challenge is required"],
        );
        let q = query(e["redirect_uri"].as_str().unwrap());
        assert_eq!(
            (q["error"].as_str(), q["state"].as_str()),
            ("invalid_request", "st-123")
        );
        assert_eq!(q["iss"], s.base);
        assert!(!q.contains_key("code"));
    }

    let mut p = params(&pkce, "notes:read");
    p.as_object_mut().unwrap().remove("code_challenge_method");
    for (status, e) in [
        s.start_flow(&session, &p).await,
        s.submit(&session, &p, true).await,
    ] {
        assert_error(
            (status, &e),
            400,
            "invalid_request",
            &["code_challenge_method is required", "S256"],
        );
        let q = query(e["redirect_uri"].as_str().unwrap());
        assert_eq!(q["state"], "st-123");
        assert_eq!(q["iss"], s.base);
        assert!(!q.contains_key("code"));
    }

    // a challenge that is not a base64url SHA-256 (e.g. the verifier itself) is refused
    let mut p = params(&pkce, "notes:read");
    p["code_challenge"] = json!(pkce.verifier);
    let (status, e) = s.start_flow(&session, &p).await;
    assert_error(
        (status, &e),
        400,
        "invalid_request",
        &["code_challenge", "43 characters"],
    );
}

async fn pkce_verifier_is_checked_and_a_wrong_one_changes_nothing(b: Backend) {
    let s = Setup::new(b).start().await;
    let (c, pkce) = code(&s, "pk3", "notes:read").await;
    let base = [
        ("grant_type", "authorization_code"),
        ("code", c.as_str()),
        ("client_id", CLIENT),
        ("redirect_uri", REDIRECT),
    ];

    // a well-formed verifier that does not hash to the challenge
    let wrong = Pkce::new();
    let (status, e) = s.redeem(&c, CLIENT, REDIRECT, &wrong.verifier).await;
    assert_error(
        (status, &e),
        400,
        "invalid_grant",
        &["code_verifier", "code_challenge"],
    );

    // missing
    let (status, e) = s.token(&base).await;
    assert_error(
        (status, &e),
        400,
        "invalid_request",
        &["code_verifier is required"],
    );
    // empty counts as missing
    let mut form = base.to_vec();
    form.push(("code_verifier", ""));
    let (status, e) = s.token(&form).await;
    assert_error(
        (status, &e),
        400,
        "invalid_request",
        &["code_verifier is required"],
    );

    // malformed: too short, too long, bad characters
    for bad in [
        "abc".to_string(),
        pkce.verifier[..42].to_string(),
        "a".repeat(129),
        format!("{}!", &pkce.verifier[..50]),
    ] {
        let (status, e) = s.redeem(&c, CLIENT, REDIRECT, &bad).await;
        assert_error(
            (status, &e),
            400,
            "invalid_request",
            &["code_verifier", "43-128"],
        );
    }

    // none of that changed anything: the right verifier still redeems the code
    let (status, tok) = s.redeem(&c, CLIENT, REDIRECT, &pkce.verifier).await;
    assert_eq!(status, 200, "{tok}");
    assert_eq!(tok["scope"], "notes:read");
}

// ------------------------------------------------------------------------------------------
// Authorization codes

async fn code_is_single_use_and_replay_revokes_the_grant(b: Backend) {
    let s = Setup::new(b).start().await;
    let (c, pkce) = code(&s, "co1", "notes:read").await;
    let (status, first) = s.redeem(&c, CLIENT, REDIRECT, &pkce.verifier).await;
    assert_eq!(status, 200, "{first}");
    let r1 = refresh_token_of(&first);
    // the grant lives on through rotation
    let (status, t2) = s.refresh(&r1, CLIENT).await;
    assert_eq!(status, 200, "{t2}");
    let r2 = refresh_token_of(&t2);

    // the replay is refused…
    let (status, e) = s.redeem(&c, CLIENT, REDIRECT, &pkce.verifier).await;
    assert_error(
        (status, &e),
        400,
        "invalid_grant",
        &["code", "already used"],
    );
    assert!(e.get("access_token").is_none());

    // …and everything issued from the first redemption is dead: the original refresh token and
    // its rotated successor
    let (status, e) = s.refresh(&r2, CLIENT).await;
    assert_error((status, &e), 400, "invalid_grant", &["refresh_token"]);
    assert!(desc(&e).contains("revoked"), "{e}");
    let (status, e) = s.refresh(&r1, CLIENT).await;
    assert_error((status, &e), 400, "invalid_grant", &["refresh_token"]);

    // a third attempt is still refused (and still not a 5xx)
    let (status, e) = s.redeem(&c, CLIENT, REDIRECT, &pkce.verifier).await;
    assert_error((status, &e), 400, "invalid_grant", &["already used"]);
}

async fn code_concurrent_redemption_issues_once(b: Backend) {
    let s = Setup::new(b).start().await;
    let (c, pkce) = code(&s, "co1b", "notes:read").await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", c.as_str()),
        ("client_id", CLIENT),
        ("redirect_uri", REDIRECT),
        ("code_verifier", pkce.verifier.as_str()),
    ];
    let (r1, r2, r3, r4, r5) = tokio::join!(
        s.token(&form),
        s.token(&form),
        s.token(&form),
        s.token(&form),
        s.token(&form),
    );
    let results = [r1, r2, r3, r4, r5];
    let winners: Vec<&Value> = results
        .iter()
        .filter(|(st, _)| *st == 200)
        .map(|(_, body)| body)
        .collect();
    assert_eq!(winners.len(), 1, "one code, one redemption: {results:?}");
    for (status, body) in results.iter().filter(|(st, _)| *st != 200) {
        assert_error((*status, body), 400, "invalid_grant", &["already used"]);
    }
    // the losers were replays: the winner's grant is revoked
    let (status, e) = s.refresh(&refresh_token_of(winners[0]), CLIENT).await;
    assert_error((status, &e), 400, "invalid_grant", &["revoked"]);
}

async fn code_is_bound_to_its_client(b: Backend) {
    let s = Setup::new(b).start().await;
    let (c, pkce) = code(&s, "co2", "notes:read").await;

    // another registered client cannot redeem it
    for other in ["other-agent", "native-app"] {
        let (status, e) = s.redeem(&c, other, REDIRECT, &pkce.verifier).await;
        assert_error(
            (status, &e),
            400,
            "invalid_grant",
            &["another client", &format!("'{other}'")],
        );
    }

    // an unknown client is not a client at all
    let (status, headers, e) = s
        .token_raw(&[
            ("grant_type", "authorization_code"),
            ("code", &c),
            ("client_id", "no-such-client"),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &pkce.verifier),
        ])
        .await;
    assert_error(
        (status, &e),
        401,
        "invalid_client",
        &["client_id", "'no-such-client'", "not registered"],
    );
    assert!(headers.contains_key("www-authenticate"), "{headers:?}");

    // no client_id at all
    let (status, e) = s
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &c),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &pkce.verifier),
        ])
        .await;
    assert_error((status, &e), 400, "invalid_request", &["client_id"]);

    // the rightful client still redeems it
    let (status, tok) = s.redeem(&c, CLIENT, REDIRECT, &pkce.verifier).await;
    assert_eq!(status, 200, "{tok}");
    assert_eq!(
        s.verify_access_token(tok["access_token"].as_str().unwrap())
            .await["client_id"],
        CLIENT
    );
}

async fn code_is_bound_to_its_redirect_uri(b: Backend) {
    let s = Setup::new(b).start().await;
    let (c, pkce) = code(&s, "co3", "notes:read").await;

    for wrong in [
        "http://127.0.0.1:9999/callback/",
        "http://127.0.0.1:9998/callback",
        "http://localhost:9999/callback",
        "https://other.example.com/cb",
    ] {
        let (status, e) = s.redeem(&c, CLIENT, wrong, &pkce.verifier).await;
        assert_error(
            (status, &e),
            400,
            "invalid_grant",
            &["redirect_uri", wrong, &format!("expected '{REDIRECT}'")],
        );
    }

    // omitted although the authorization request carried it
    let (status, e) = s
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &c),
            ("client_id", CLIENT),
            ("code_verifier", &pkce.verifier),
        ])
        .await;
    assert_error(
        (status, &e),
        400,
        "invalid_request",
        &["redirect_uri is required", REDIRECT],
    );

    let (status, tok) = s.redeem(&c, CLIENT, REDIRECT, &pkce.verifier).await;
    assert_eq!(status, 200, "{tok}");

    // when the authorization request did not carry redirect_uri, the token request may omit it
    let pkce = Pkce::new();
    let mut p = params(&pkce, "notes:read");
    p.as_object_mut().unwrap().remove("redirect_uri");
    let c = s.code_for("co3", &p).await;
    let (status, tok) = s
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &c),
            ("client_id", CLIENT),
            ("code_verifier", &pkce.verifier),
        ])
        .await;
    assert_eq!(status, 200, "{tok}");
}

async fn code_cannot_be_forged_or_altered(b: Backend) {
    let s = Setup::new(b).start().await;
    let (c, pkce) = code(&s, "co4", "notes:read").await;

    let flip = |i: usize| {
        let mut bytes = c.clone().into_bytes();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        String::from_utf8(bytes).unwrap()
    };
    let garbage = format!("{c}x");
    let tampered = [
        flip(c.len() / 2),
        flip(5),
        flip(c.len() - 2),
        c[..c.len() - 4].to_string(),
        garbage,
        c.replacen("cyc_", "cyx_", 1),
        "cyc_".to_string(),
        "not-a-code".to_string(),
    ];
    for t in &tampered {
        assert_ne!(t, &c);
        let (status, e) = s.redeem(t, CLIENT, REDIRECT, &pkce.verifier).await;
        assert_error(
            (status, &e),
            400,
            "invalid_grant",
            &["code is invalid", "altered"],
        );
    }
    // a code from another server (its own sealing key) is just as foreign
    let other = Setup::new(Backend::Sqlite).start().await;
    let (foreign, foreign_pkce) = code(&other, "co4", "notes:read").await;
    let (status, e) = s
        .redeem(&foreign, CLIENT, REDIRECT, &foreign_pkce.verifier)
        .await;
    assert_error((status, &e), 400, "invalid_grant", &["code is invalid"]);

    let (status, tok) = s.redeem(&c, CLIENT, REDIRECT, &pkce.verifier).await;
    assert_eq!(status, 200, "{tok}");
}

async fn code_expires(b: Backend) {
    let s = Setup::new(b)
        .top("authorization_code_ttl_seconds", "5")
        .start()
        .await;
    let (c, pkce) = code(&s, "co5", "notes:read").await;
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    let (status, e) = s.redeem(&c, CLIENT, REDIRECT, &pkce.verifier).await;
    assert_error(
        (status, &e),
        400,
        "invalid_grant",
        &["code expired", "valid for 5s"],
    );
}

async fn code_resource_must_be_within_the_authorization(b: Backend) {
    let s = Setup::new(b).start().await;
    let (c, pkce) = code(&s, "co6", "notes:read").await;
    for (extra, shown) in [
        (vec![OTHER_RESOURCE], OTHER_RESOURCE),
        (vec![RESOURCE, OTHER_RESOURCE], OTHER_RESOURCE),
        (vec!["https://evil.example/mcp"], "https://evil.example/mcp"),
    ] {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", c.as_str()),
            ("client_id", CLIENT),
            ("redirect_uri", REDIRECT),
            ("code_verifier", pkce.verifier.as_str()),
        ];
        for r in &extra {
            form.push(("resource", *r));
        }
        let (status, e) = s.token(&form).await;
        assert_error(
            (status, &e),
            400,
            "invalid_target",
            &["resource", shown, &format!("expected one of: '{RESOURCE}'")],
        );
    }
    // unchanged: the code still redeems, for the authorized resource
    let (status, tok) = s
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &c),
            ("client_id", CLIENT),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &pkce.verifier),
            ("resource", RESOURCE),
        ])
        .await;
    assert_eq!(status, 200, "{tok}");
    assert_eq!(
        jwt_claims(tok["access_token"].as_str().unwrap())["aud"],
        RESOURCE
    );

    // and a refresh cannot widen the audience either, nor is it rotated by the attempt
    let r = refresh_token_of(&tok);
    let (status, e) = s
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &r),
            ("client_id", CLIENT),
            ("resource", OTHER_RESOURCE),
        ])
        .await;
    assert_error(
        (status, &e),
        400,
        "invalid_target",
        &[OTHER_RESOURCE, RESOURCE],
    );
    let (status, t) = s.refresh(&r, CLIENT).await;
    assert_eq!(status, 200, "a refused refresh does not rotate: {t}");
}

async fn code_audience_is_bound_to_the_requested_resource(b: Backend) {
    let s = Setup::new(b).start().await;
    let pkce = Pkce::new();
    let mut p = params(&pkce, "notes:read files:read");
    p["resource"] = json!([RESOURCE, OTHER_RESOURCE]);

    // resource=notes at the token endpoint → aud is exactly notes
    let c = s.code_for("co7", &p).await;
    let (status, tok) = s
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &c),
            ("client_id", CLIENT),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &pkce.verifier),
            ("resource", RESOURCE),
        ])
        .await;
    assert_eq!(status, 200, "{tok}");
    let claims = s
        .verify_access_token(tok["access_token"].as_str().unwrap())
        .await;
    assert_eq!(claims["aud"], json!(RESOURCE));
    assert_eq!(claims["scope"], "notes:read", "only the audience's scopes");
    assert_eq!(tok["scope"], "notes:read");
    // a refresh for the other resource only → aud is exactly that one
    let (status, t) = s
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh_token_of(&tok)),
            ("client_id", CLIENT),
            ("resource", OTHER_RESOURCE),
        ])
        .await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(
        jwt_claims(t["access_token"].as_str().unwrap())["aud"],
        json!(OTHER_RESOURCE)
    );
    assert_eq!(
        jwt_claims(t["access_token"].as_str().unwrap())["scope"],
        "files:read"
    );

    // no resource → the audience is every authorized resource
    let c = s.code_for("co7", &p).await;
    let (status, tok) = s.redeem(&c, CLIENT, REDIRECT, &pkce.verifier).await;
    assert_eq!(status, 200, "{tok}");
    let claims = s
        .verify_access_token(tok["access_token"].as_str().unwrap())
        .await;
    assert_eq!(claims["aud"], json!([RESOURCE, OTHER_RESOURCE]));
    assert_eq!(claims["scope"], "notes:read files:read");
}

// ------------------------------------------------------------------------------------------
// Refresh tokens

async fn refresh_rotates_and_reuse_revokes_the_family(b: Backend) {
    let s = Setup::new(b).start().await;
    let (_, r1) = tokens(&s, "rf1", "notes:read").await;
    let (status, t2) = s.refresh(&r1, CLIENT).await;
    assert_eq!(status, 200, "{t2}");
    let r2 = refresh_token_of(&t2);
    assert_ne!(r1, r2);
    assert!(r2.starts_with("cyr_"));

    // grace 0: the old token again is reuse → refused and the family is revoked
    let (status, e) = s.refresh(&r1, CLIENT).await;
    assert_error(
        (status, &e),
        400,
        "invalid_grant",
        &["refresh_token", "already used", "revoked"],
    );
    // the successor dies with it
    let (status, e) = s.refresh(&r2, CLIENT).await;
    assert_error(
        (status, &e),
        400,
        "invalid_grant",
        &["refresh_token was revoked"],
    );
    // and stays dead
    let (status, e) = s.refresh(&r1, CLIENT).await;
    assert_error((status, &e), 400, "invalid_grant", &["refresh_token"]);

    // another grant of the same user and client is not affected
    let (_, other) = tokens(&s, "rf1", "notes:read").await;
    let (status, t) = s.refresh(&other, CLIENT).await;
    assert_eq!(status, 200, "{t}");

    // garbage, empty, and missing refresh tokens
    for garbage in [
        "cyr_nope".to_string(),
        "x".repeat(5000),
        format!("{r2}x"),
        r2[..r2.len() - 1].to_string(),
    ] {
        let (status, e) = s.refresh(&garbage, CLIENT).await;
        assert_error(
            (status, &e),
            400,
            "invalid_grant",
            &["refresh_token is invalid"],
        );
    }
    let (status, e) = s
        .token(&[("grant_type", "refresh_token"), ("client_id", CLIENT)])
        .await;
    assert_error(
        (status, &e),
        400,
        "invalid_request",
        &["refresh_token is required"],
    );
}

async fn refresh_reuse_grace_allows_an_immediate_retry(b: Backend) {
    let s = Setup::new(b.clone())
        .top("refresh_reuse_grace_seconds", "30")
        .start()
        .await;
    let (_, r1) = tokens(&s, "rf2", "notes:read").await;
    let (status, t2) = s.refresh(&r1, CLIENT).await;
    assert_eq!(status, 200, "{t2}");
    let r2 = refresh_token_of(&t2);
    // the client lost the response and retries with the old token: within the grace window
    let (status, t2b) = s.refresh(&r1, CLIENT).await;
    assert_eq!(status, 200, "retry within the grace window: {t2b}");
    let r2b = refresh_token_of(&t2b);
    assert_ne!(r2, r2b);
    // the retry's successor is the one live token: it works
    let (status, t3) = s.refresh(&r2b, CLIENT).await;
    assert_eq!(status, 200, "{t3}");
    let r3 = refresh_token_of(&t3);
    // the successor issued before the retry was superseded: presenting it (a thief who used
    // r1 inside the window holds it) is a reuse, and the whole grant goes
    let (status, e) = s.refresh(&r2, CLIENT).await;
    assert_error((status, &e), 400, "invalid_grant", &["already used"]);
    let (status, e) = s.refresh(&r3, CLIENT).await;
    assert_error((status, &e), 400, "invalid_grant", &["revoked"]);
    // a refusal for another reason (scope) is not a use
    let (_, fresh) = tokens(&s, "rf2", "notes:read").await;
    let (status, e) = s
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &fresh),
            ("client_id", CLIENT),
            ("scope", "notes:write"),
        ])
        .await;
    assert_error((status, &e), 400, "invalid_scope", &["notes:write"]);
    let (status, t) = s.refresh(&fresh, CLIENT).await;
    assert_eq!(status, 200, "{t}");

    // with grace 0 the same retry revokes the family
    let s = Setup::new(b)
        .top("refresh_reuse_grace_seconds", "0")
        .start()
        .await;
    let (_, r1) = tokens(&s, "rf2", "notes:read").await;
    let (status, t2) = s.refresh(&r1, CLIENT).await;
    assert_eq!(status, 200, "{t2}");
    let r2 = refresh_token_of(&t2);
    let (status, e) = s.refresh(&r1, CLIENT).await;
    assert_error((status, &e), 400, "invalid_grant", &["already used"]);
    let (status, e) = s.refresh(&r2, CLIENT).await;
    assert_error((status, &e), 400, "invalid_grant", &["revoked"]);
}

async fn refresh_scope_may_only_narrow_and_the_grant_is_kept(b: Backend) {
    let s = Setup::new(b).start().await;
    let (_, r1) = tokens(&s, "rf3", "notes:read notes:write").await;

    // broader → invalid_scope naming the scope and listing the granted ones; no rotation
    for (ask, bad) in [
        ("notes:read notes:admin", "notes:admin"),
        ("files:read", "files:read"),
        ("notes:write bogus", "bogus"),
    ] {
        let (status, headers, e) = s
            .token_raw(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", &r1),
                ("client_id", CLIENT),
                ("scope", ask),
            ])
            .await;
        assert_error(
            (status, &e),
            400,
            "invalid_scope",
            &[
                &format!("scope '{bad}' was not granted"),
                "'notes:read', 'notes:write'",
            ],
        );
        assert_eq!(headers["cache-control"], "no-store");
    }
    // a malformed scope is named too
    let (status, e) = s
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &r1),
            ("client_id", CLIENT),
            ("scope", "notes:read \"x\""),
        ])
        .await;
    assert_error((status, &e), 400, "invalid_scope", &["scope"]);

    // narrower → the access token carries only that
    let (status, t2) = s
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &r1),
            ("client_id", CLIENT),
            ("scope", "notes:read"),
        ])
        .await;
    assert_eq!(status, 200, "the refused attempts did not rotate r1: {t2}");
    assert_eq!(t2["scope"], "notes:read");
    let c2 = s
        .verify_access_token(t2["access_token"].as_str().unwrap())
        .await;
    assert_eq!(c2["scope"], "notes:read");

    // the grant itself is not narrowed: the next refresh without scope gets it all back
    let (status, t3) = s.refresh(&refresh_token_of(&t2), CLIENT).await;
    assert_eq!(status, 200, "{t3}");
    assert_eq!(t3["scope"], "notes:read notes:write");
    assert_eq!(
        jwt_claims(t3["access_token"].as_str().unwrap())["scope"],
        "notes:read notes:write"
    );
    // and after narrowing, a refresh may ask for the other granted scope alone
    let (status, t4) = s
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh_token_of(&t3)),
            ("client_id", CLIENT),
            ("scope", "notes:write"),
        ])
        .await;
    assert_eq!(status, 200, "{t4}");
    assert_eq!(t4["scope"], "notes:write");
}

async fn refresh_token_is_bound_to_its_client(b: Backend) {
    let s = Setup::new(b).start().await;
    let (_, r1) = tokens(&s, "rf4", "notes:read").await;
    for other in ["other-agent", "native-app"] {
        let (status, e) = s.refresh(&r1, other).await;
        assert_error(
            (status, &e),
            400,
            "invalid_grant",
            &["refresh_token", "another client", &format!("'{other}'")],
        );
    }
    let (status, e) = s.refresh(&r1, "no-such-client").await;
    assert_error((status, &e), 401, "invalid_client", &["'no-such-client'"]);
    // the thief's attempts neither rotated nor revoked it
    let (status, t) = s.refresh(&r1, CLIENT).await;
    assert_eq!(status, 200, "{t}");
}

async fn refresh_concurrent_use_never_issues_twice(b: Backend) {
    let s = Setup::new(b).start().await;
    let (_, r1) = tokens(&s, "rf5", "notes:read").await;
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", r1.as_str()),
        ("client_id", CLIENT),
    ];
    let (a, bb, c, d, e) = tokio::join!(
        s.token(&form),
        s.token(&form),
        s.token(&form),
        s.token(&form),
        s.token(&form),
    );
    let results = [a, bb, c, d, e];
    let successes: Vec<&Value> = results
        .iter()
        .filter(|(st, _)| *st == 200)
        .map(|(_, body)| body)
        .collect();
    for (status, body) in &results {
        if *status != 200 {
            assert_error((*status, body), 400, "invalid_grant", &["refresh_token"]);
        }
    }
    eprintln!(
        "concurrent refresh: {} success(es), statuses {:?}",
        successes.len(),
        results.iter().map(|(st, _)| *st).collect::<Vec<_>>()
    );
    assert!(
        successes.len() <= 1,
        "one refresh token was exchanged {} times: {results:?}",
        successes.len()
    );
    // Every loser saw reuse (a rotated token, or an UPDATE that matched no row) and revoked the
    // family: whatever was issued to the winner is dead, and so is r1.
    for body in &successes {
        let (status, e) = s.refresh(&refresh_token_of(body), CLIENT).await;
        assert_error((status, &e), 400, "invalid_grant", &["revoked"]);
    }
    let (status, e) = s.refresh(&r1, CLIENT).await;
    assert_error((status, &e), 400, "invalid_grant", &["refresh_token"]);
}

// ------------------------------------------------------------------------------------------
// Endpoint hygiene

async fn token_endpoint_hygiene(b: Backend) {
    let s = Setup::new(b).start().await;
    let (c, pkce) = code(&s, "hy1", "notes:read").await;
    let form_ct = [("content-type", "application/x-www-form-urlencoded")];

    // errors are never cached either
    let (status, headers, e) = s
        .token_raw(&[("grant_type", "password"), ("client_id", CLIENT)])
        .await;
    assert_error(
        (status, &e),
        400,
        "unsupported_grant_type",
        &["grant_type", "'password'", "authorization_code"],
    );
    assert_eq!(headers["cache-control"], "no-store");
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    for gt in [
        "password",
        "implicit",
        "urn:ietf:params:oauth:grant-type:device_code",
    ] {
        let (status, e) = s.token(&[("grant_type", gt), ("client_id", CLIENT)]).await;
        assert_error((status, &e), 400, "unsupported_grant_type", &[gt]);
    }
    // client_credentials exists, but not for a public client
    let (status, e) = s
        .token(&[("grant_type", "client_credentials"), ("client_id", CLIENT)])
        .await;
    assert_error(
        (status, &e),
        400,
        "unauthorized_client",
        &["client_credentials"],
    );

    // missing grant_type
    let (status, headers, e) = s
        .token_raw(&[("code", c.as_str()), ("client_id", CLIENT)])
        .await;
    assert_error(
        (status, &e),
        400,
        "invalid_request",
        &["grant_type is required"],
    );
    assert_eq!(headers["cache-control"], "no-store");

    // a repeated parameter is refused and named
    let (status, e) = s
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", c.as_str()),
            ("code", c.as_str()),
            ("client_id", CLIENT),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &pkce.verifier),
        ])
        .await;
    assert_error(
        (status, &e),
        400,
        "invalid_request",
        &["code must appear at most once"],
    );
    let (status, e) = s
        .token(&[
            ("grant_type", "authorization_code"),
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT),
        ])
        .await;
    assert_error(
        (status, &e),
        400,
        "invalid_request",
        &["grant_type must appear at most once"],
    );
    let (status, e) = s
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", c.as_str()),
            ("client_id", CLIENT),
            ("client_id", "other-agent"),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &pkce.verifier),
        ])
        .await;
    assert_error(
        (status, &e),
        400,
        "invalid_request",
        &["client_id must appear at most once"],
    );

    // JSON instead of a form
    let body = json!({
        "grant_type": "authorization_code", "code": c, "client_id": CLIENT,
        "redirect_uri": REDIRECT, "code_verifier": pkce.verifier,
    });
    let r = s
        .raw(
            reqwest::Method::POST,
            "/oauth2/token",
            &[("content-type", "application/json")],
            serde_json::to_vec(&body).unwrap(),
        )
        .await;
    assert_error(
        (r.status, &r.json),
        400,
        "invalid_request",
        &["application/x-www-form-urlencoded"],
    );
    assert_eq!(r.header("cache-control"), Some("no-store"));
    // no content type at all
    let r = s
        .raw(
            reqwest::Method::POST,
            "/oauth2/token",
            &[],
            b"grant_type=authorization_code".to_vec(),
        )
        .await;
    assert_error(
        (r.status, &r.json),
        400,
        "invalid_request",
        &["application/x-www-form-urlencoded"],
    );
    // bad percent-encoding is named
    let r = s
        .raw(
            reqwest::Method::POST,
            "/oauth2/token",
            &form_ct,
            b"grant_type=authorization_code&code=%zz".to_vec(),
        )
        .await;
    assert_error(
        (r.status, &r.json),
        400,
        "invalid_request",
        &["code is not valid percent-encoded UTF-8"],
    );
    // content type parameters and case are tolerated
    let r = s
        .raw(
            reqwest::Method::POST,
            "/oauth2/token",
            &[(
                "content-type",
                "Application/X-WWW-Form-Urlencoded; charset=UTF-8",
            )],
            b"grant_type=nope".to_vec(),
        )
        .await;
    assert_error(
        (r.status, &r.json),
        400,
        "unsupported_grant_type",
        &["'nope'"],
    );

    // none of it consumed the code; success carries no-store too
    let (status, headers, tok) = s
        .token_raw(&[
            ("grant_type", "authorization_code"),
            ("code", c.as_str()),
            ("client_id", CLIENT),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &pkce.verifier),
        ])
        .await;
    assert_eq!(status, 200, "{tok}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["pragma"], "no-cache");
    let (status, headers, t) = s
        .token_raw(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh_token_of(&tok)),
            ("client_id", CLIENT),
        ])
        .await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(headers["cache-control"], "no-store");
    // an invalid_grant error too
    let (status, headers, e) = s
        .token_raw(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "cyr_garbage"),
            ("client_id", CLIENT),
        ])
        .await;
    assert_error((status, &e), 400, "invalid_grant", &["refresh_token"]);
    assert_eq!(headers["cache-control"], "no-store");
}

async fn token_endpoint_public_client_must_not_send_credentials(b: Backend) {
    let s = Setup::new(b).start().await;
    let (c, pkce) = code(&s, "hy2", "notes:read").await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", c.as_str()),
        ("client_id", CLIENT),
        ("redirect_uri", REDIRECT),
        ("code_verifier", pkce.verifier.as_str()),
    ];

    // client_secret in the body
    let mut with_secret = form.to_vec();
    with_secret.push(("client_secret", "s3cret"));
    let (status, headers, e) = s.token_raw(&with_secret).await;
    assert_error(
        (status, &e),
        401,
        "invalid_client",
        &[&format!("'{CLIENT}'"), "public client", "none"],
    );
    let www = headers["www-authenticate"].to_str().unwrap();
    assert!(www.starts_with("Basic"), "{www}");
    assert_eq!(headers["cache-control"], "no-store");

    // HTTP Basic
    let r = s
        .http
        .post(s.url("/oauth2/token"))
        .basic_auth(CLIENT, Some("s3cret"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    let e: Value = r.json().await.unwrap();
    assert_error((401, &e), 401, "invalid_client", &["public client"]);

    // on refresh as well
    let (status, tok) = s.token(&form).await;
    assert_eq!(
        status, 200,
        "the refused attempts left the code usable: {tok}"
    );
    let r1 = refresh_token_of(&tok);
    let (status, headers, e) = s
        .token_raw(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &r1),
            ("client_id", CLIENT),
            ("client_secret", "s3cret"),
        ])
        .await;
    assert_error((status, &e), 401, "invalid_client", &["public client"]);
    assert!(headers.contains_key("www-authenticate"));
    let (status, t) = s.refresh(&r1, CLIENT).await;
    assert_eq!(status, 200, "a refused refresh does not rotate: {t}");
}

async fn token_endpoint_cors_preflight_from_any_origin(b: Backend) {
    let s = Setup::new(b).start().await;
    for origin in [
        "http://inspector.localhost:6274",
        "https://evil.example",
        "null",
    ] {
        let r = s
            .raw(
                reqwest::Method::OPTIONS,
                "/oauth2/token",
                &[
                    ("origin", origin),
                    ("access-control-request-method", "POST"),
                    ("access-control-request-headers", "content-type"),
                ],
                Vec::new(),
            )
            .await;
        assert!(r.status < 300, "preflight from {origin}: {}", r.status);
        assert_eq!(r.header("access-control-allow-origin"), Some("*"));
        let methods = r
            .header("access-control-allow-methods")
            .unwrap()
            .to_ascii_uppercase();
        assert!(methods.contains("POST"), "{methods}");
    }
    // the actual response carries it too
    let r = s
        .raw(
            reqwest::Method::POST,
            "/oauth2/token",
            &[
                ("origin", "https://evil.example"),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            b"grant_type=nope".to_vec(),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
}

// ------------------------------------------------------------------------------------------
// roles, users and the grant's lifetime are checked again at every refresh

/// A session for `user` attested with `roles` (the users table keeps the roles of the last
/// attestation).
async fn session_with_roles(s: &TestServer, user: &str, roles: &[&str]) -> String {
    let mut claims = tat_claims(user);
    claims["roles"] = json!(roles);
    let (status, body) = s.attest(&s.keys.sign(&claims)).await;
    assert_eq!(status, 200, "attest: {body}");
    body["session_token"].as_str().unwrap().to_owned()
}

/// attest with `roles` → start → allow → redeem, for `CLIENT`: the token response.
async fn tokens_with_roles(s: &TestServer, user: &str, roles: &[&str], scope: &str) -> Value {
    let pkce = Pkce::new();
    let p = params(&pkce, scope);
    let session = session_with_roles(s, user, roles).await;
    let (status, body) = s.start_flow(&session, &p).await;
    assert_eq!(status, 200, "start: {body}");
    let (status, body) = s.submit(&session, &p, true).await;
    assert_eq!(status, 200, "submit: {body}");
    let code = query(body["redirect_uri"].as_str().unwrap())["code"].clone();
    let (status, tok) = s.redeem(&code, CLIENT, REDIRECT, &pkce.verifier).await;
    assert_eq!(status, 200, "token: {tok}");
    tok
}

#[track_caller]
fn scope_of(tok: &Value) -> String {
    let scope = tok["scope"].as_str().unwrap().to_owned();
    assert_eq!(
        jwt_claims(tok["access_token"].as_str().unwrap())["scope"],
        scope.as_str(),
        "the access token carries the scope the response names: {tok}"
    );
    scope
}

/// A demoted admin stops getting `notes:admin` (required_roles = ["admin"]) at the next refresh;
/// a grant left with nothing the user may have is refused, and the refusal changes nothing.
async fn refresh_rereads_the_users_roles_and_drops_scopes_they_no_longer_allow(b: Backend) {
    let s = Setup::new(b).start().await;
    let both = tokens_with_roles(&s, "boss", &["admin"], "notes:read notes:admin").await;
    assert_eq!(scope_of(&both), "notes:read notes:admin");
    let admin_only = tokens_with_roles(&s, "boss", &["admin"], "notes:admin").await;
    let (status, tok) = s.refresh(&refresh_token_of(&both), CLIENT).await;
    assert_eq!(status, 200, "{tok}");
    assert_eq!(scope_of(&tok), "notes:read notes:admin");

    // the product demotes the user; their next attestation records it
    session_with_roles(&s, "boss", &["user"]).await;
    let (status, tok) = s.refresh(&refresh_token_of(&tok), CLIENT).await;
    assert_eq!(status, 200, "{tok}");
    assert_eq!(scope_of(&tok), "notes:read", "notes:admin dropped");
    let (status, tok) = s.refresh(&refresh_token_of(&tok), CLIENT).await;
    assert_eq!(status, 200, "{tok}");
    assert_eq!(scope_of(&tok), "notes:read");
    let kept = refresh_token_of(&tok);
    // asking for the admin scope by name does not bring it back
    let (status, e) = s
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &kept),
            ("client_id", CLIENT),
            ("scope", "notes:admin"),
        ])
        .await;
    assert_error(
        (status, &e),
        400,
        "invalid_grant",
        &["'notes:admin'", "'admin'", "role"],
    );
    // a grant of the admin scope alone has nothing left
    let admin_rt = refresh_token_of(&admin_only);
    let (status, e) = s.refresh(&admin_rt, CLIENT).await;
    assert_error(
        (status, &e),
        400,
        "invalid_grant",
        &["'notes:admin'", "'admin'", "role"],
    );
    // the refusals rotated and revoked nothing: promoted again, both grants work as consented
    session_with_roles(&s, "boss", &["admin"]).await;
    let (status, tok) = s.refresh(&admin_rt, CLIENT).await;
    assert_eq!(status, 200, "{tok}");
    assert_eq!(scope_of(&tok), "notes:admin");
    let (status, tok) = s.refresh(&kept, CLIENT).await;
    assert_eq!(status, 200, "{tok}");
    assert_eq!(scope_of(&tok), "notes:read notes:admin");
}

/// Delete a user row behind the server's back (what an operator's cleanup might do).
async fn delete_user_row(s: &TestServer, user: &str) {
    if s.database_url.starts_with("sqlite:") {
        let conn = rusqlite::Connection::open(s.dir().join("consentry.db")).unwrap();
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .unwrap();
        let n = conn
            .execute("DELETE FROM users WHERE user_id = ?1", [user])
            .unwrap();
        assert_eq!(n, 1);
    } else {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&s.database_url).await.unwrap();
        let r = sqlx::query("DELETE FROM users WHERE user_id = $1")
            .bind(user)
            .execute(&mut conn)
            .await
            .unwrap();
        assert_eq!(r.rows_affected(), 1);
    }
}

async fn refresh_of_a_user_who_no_longer_exists_is_invalid_grant(b: Backend) {
    let s = Setup::new(b).start().await;
    let (_, rt) = tokens(&s, "ghost", "notes:read").await;
    let (_, other) = tokens(&s, "not-a-ghost", "notes:read").await;
    delete_user_row(&s, "ghost").await;
    for _ in 0..2 {
        let (status, e) = s.refresh(&rt, CLIENT).await;
        assert_error(
            (status, &e),
            400,
            "invalid_grant",
            &["refresh_token", "no longer exists"],
        );
    }
    let (status, body) = s.refresh(&other, CLIENT).await;
    assert_eq!(status, 200, "{body}");
    // back (attested again): the grant was refused, not revoked
    s.session("ghost").await;
    let (status, body) = s.refresh(&rt, CLIENT).await;
    assert_eq!(status, 200, "{body}");
}

const AGED: &str = "aged-app";
const AGED_SECRET: &str = "aged-app-secret-0123456789abcdefghijklmn";
const AGED_REDIRECT: &str = "http://127.0.0.1:9999/aged";

/// A grant of the confidential `AGED` for `user`: its refresh token.
async fn aged_grant(s: &TestServer, user: &str) -> String {
    let pkce = Pkce::new();
    let mut p = params(&pkce, "notes:read");
    p["client_id"] = json!(AGED);
    p["redirect_uri"] = json!(AGED_REDIRECT);
    let code = s.code_for(user, &p).await;
    let (status, tok) = s
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", AGED),
            ("client_secret", AGED_SECRET),
            ("redirect_uri", AGED_REDIRECT),
            ("code_verifier", &pkce.verifier),
        ])
        .await;
    assert_eq!(status, 200, "{tok}");
    refresh_token_of(&tok)
}

async fn aged_refresh(s: &TestServer, rt: &str) -> (u16, Value) {
    s.token(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", rt),
        ("client_id", AGED),
        ("client_secret", AGED_SECRET),
    ])
    .await
}

/// The refresh token's introspection by its own client.
async fn aged_introspect(s: &TestServer, rt: &str) -> Value {
    let r = s
        .raw(
            reqwest::Method::POST,
            "/oauth2/introspect",
            &[("content-type", "application/x-www-form-urlencoded")],
            form_body(&[
                ("token", rt),
                ("client_id", AGED),
                ("client_secret", AGED_SECRET),
            ]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json
}

/// `grant_max_lifetime_seconds` counts from the grant's creation: no rotation extends it, no
/// refresh token outlives it, and lowering it reaches grants issued before.
async fn grant_has_an_absolute_lifetime_however_often_it_rotates(b: Backend) {
    let mut s = Setup::new(b)
        .extra(&format!(
            "[[clients]]\nclient_id = \"{AGED}\"\nclient_name = \"Aged\"\nredirect_uris = [\"{AGED_REDIRECT}\"]\ntoken_endpoint_auth_method = \"client_secret_post\"\nclient_secret = \"{AGED_SECRET}\"\n"
        ))
        .start()
        .await;
    // a grant issued under the default (90 days)
    let before = aged_grant(&s, "aged-1").await;
    let exp = aged_introspect(&s, &before).await["exp"].as_i64().unwrap();
    assert!(exp > now() + 7_000_000, "90 days: {exp}");

    // the operator lowers the lifetime to 10 s
    let config = std::fs::read_to_string(&s.config_path).unwrap();
    std::fs::write(
        &s.config_path,
        format!("grant_max_lifetime_seconds = 10\n{config}"),
    )
    .unwrap();
    s.restart().await;
    let created = now();
    let rt = aged_grant(&s, "aged-2").await;
    let end = aged_introspect(&s, &rt).await["exp"].as_i64().unwrap();
    assert!(
        (created + 9..=now() + 10).contains(&end),
        "the first refresh token ends with the grant: {end}, created {created}"
    );
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let (status, tok) = aged_refresh(&s, &rt).await;
    assert_eq!(status, 200, "{tok}");
    let rt = refresh_token_of(&tok);
    let i = aged_introspect(&s, &rt).await;
    assert_eq!(i["active"], true, "{i}");
    assert_eq!(
        i["exp"].as_i64(),
        Some(end),
        "a rotation does not extend the grant: {i}"
    );

    // once the grant is older than 10 s: refused, also the one issued before the change (whose
    // refresh token itself runs 90 days). Both grants are aged in the database (created 11 s
    // earlier) rather than waited for: the minimum lifetime is 10 s.
    for old in [&before, &rt] {
        s.age_grant_of(old, 11).await;
    }
    for old in [&before, &rt] {
        let (status, e) = aged_refresh(&s, old).await;
        assert_error(
            (status, &e),
            400,
            "invalid_grant",
            &["refresh_token", "grant_max_lifetime_seconds"],
        );
        assert_eq!(aged_introspect(&s, old).await, json!({"active": false}));
    }
    // a new consent starts a new grant
    let fresh = aged_grant(&s, "aged-1").await;
    let (status, tok) = aged_refresh(&s, &fresh).await;
    assert_eq!(status, 200, "{tok}");
}

/// attest with `roles` → start → allow, for `CLIENT`: the code and its PKCE pair.
async fn code_with_roles(
    s: &TestServer,
    user: &str,
    roles: &[&str],
    scope: &str,
) -> (String, Pkce) {
    let pkce = Pkce::new();
    let p = params(&pkce, scope);
    let session = session_with_roles(s, user, roles).await;
    let (status, body) = s.start_flow(&session, &p).await;
    assert_eq!(status, 200, "start: {body}");
    let (status, body) = s.submit(&session, &p, true).await;
    assert_eq!(status, 200, "submit: {body}");
    (
        query(body["redirect_uri"].as_str().unwrap())["code"].clone(),
        pkce,
    )
}

/// Code redemption runs the one authorization decision again, like a refresh: a user demoted
/// (or deleted) between consent and redemption does not get what they may no longer grant.
/// (Before the decision was shared, the code's sealed scopes were issued as they were.)
async fn code_redemption_decides_against_the_user_as_they_are_now(b: Backend) {
    let s = Setup::new(b).start().await;
    let (both, both_pkce) = code_with_roles(&s, "boss", &["admin"], "notes:read notes:admin").await;
    let (admin, admin_pkce) = code_with_roles(&s, "boss", &["admin"], "notes:admin").await;
    // the product demotes the user before the client redeems
    session_with_roles(&s, "boss", &["user"]).await;
    let (status, tok) = s.redeem(&both, CLIENT, REDIRECT, &both_pkce.verifier).await;
    assert_eq!(status, 200, "{tok}");
    assert_eq!(scope_of(&tok), "notes:read", "notes:admin dropped");
    let (status, e) = s
        .redeem(&admin, CLIENT, REDIRECT, &admin_pkce.verifier)
        .await;
    assert_error(
        (status, &e),
        400,
        "invalid_grant",
        &["code grants nothing", "'notes:admin'", "'admin'"],
    );
    // refused, not spent: promoted again, the code still works (within its lifetime)
    session_with_roles(&s, "boss", &["admin"]).await;
    let (status, tok) = s
        .redeem(&admin, CLIENT, REDIRECT, &admin_pkce.verifier)
        .await;
    assert_eq!(status, 200, "{tok}");
    assert_eq!(scope_of(&tok), "notes:admin");

    // a user deleted before redemption gets nothing
    let (ghost, ghost_pkce) = code(&s, "ghost", "notes:read").await;
    delete_user_row(&s, "ghost").await;
    let (status, e) = s
        .redeem(&ghost, CLIENT, REDIRECT, &ghost_pkce.verifier)
        .await;
    assert_error((status, &e), 400, "invalid_grant", &["no longer exists"]);
}
