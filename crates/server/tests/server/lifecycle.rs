//! The lifecycle of a grant after it is issued, attacked over HTTP against the real server:
//! introspection (RFC 7662) sees only what its caller may see and never errors on a bad token;
//! revocation (RFC 7009) reaches every token of a grant; OpenID Connect ID tokens and userinfo
//! release only what the scopes allow; a user's connected apps and the operator's admin API can
//! take back what was granted; discovery and CORS advertise all of it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use base64::Engine;
use consentry_testkit::*;
use reqwest::Method;
use serde_json::{Value, json};

on_both_backends!(
    introspection_requires_an_authenticated_caller,
    introspection_by_a_resource_server_sees_only_its_audience,
    introspection_by_a_client_sees_only_its_own_tokens,
    introspection_of_a_bad_token_is_inactive_never_an_error,
    introspection_of_an_expired_access_token_is_inactive,
    introspection_of_a_refresh_token_only_by_its_own_client,
    revoking_a_refresh_token_kills_the_grant_and_its_access_tokens,
    revoking_a_rotated_refresh_token_kills_its_successors,
    revoking_an_access_token_kills_only_that_token,
    revoking_someone_elses_token_is_refused_and_changes_nothing,
    revoking_an_unknown_token_answers_200,
    revocation_requires_the_token_parameter,
    revocation_needs_the_clients_own_authentication,
    id_token_is_issued_for_openid_and_verifies_against_jwks,
    id_token_is_absent_without_openid,
    userinfo_releases_only_what_the_scopes_allow,
    userinfo_refuses_missing_revoked_and_non_openid_tokens,
    consent_screen_lists_openid_scopes_with_descriptions,
    connected_apps_list_what_the_user_granted,
    revoking_a_connected_app_kills_its_tokens_and_consent,
    revoking_an_app_never_connected_is_404,
    a_user_cannot_revoke_another_users_app,
    connected_apps_require_a_session,
    admin_api_requires_the_admin_key,
    admin_api_is_off_without_admin_key,
    admin_lists_and_revokes_a_users_connected_apps,
    admin_lists_pages_gets_and_deletes_clients,
    admin_revokes_every_grant_of_a_user_and_keeps_the_user,
    admin_deletes_a_user_with_their_consents_and_grants,
    admin_user_endpoints_require_the_admin_key,
    discovery_advertises_the_lifecycle_endpoints,
    revoke_and_introspect_allow_cors_from_any_origin,
    connected_apps_allow_cors_only_from_allowed_origins,
    unused_and_idle_registered_clients_are_deleted,
);

/// A resource server with its own scope and introspection secret.
const API: &str = "http://127.0.0.1:8790/api";
const API_SECRET: &str = "api-introspection-secret-0123456789abcdef";
/// The introspection secret of `RESOURCE` (Notes).
const NOTES_SECRET: &str = "notes-introspection-secret-0123456789abcdef";
/// A confidential client (client_secret_basic).
const CONF: &str = "conf-app";
const CONF_SECRET: &str = "conf-app-secret-0123456789abcdefghijklmnop";
const CONF_REDIRECT: &str = "http://127.0.0.1:9999/conf";
/// Another confidential client (client_secret_post).
const CONF2: &str = "conf-app-2";
const CONF2_SECRET: &str = "conf-app-2-secret-0123456789abcdefghijklmn";
const ADMIN_KEY: &str = "admin-key-0123456789abcdefghijklmnopqrstuv";

fn setup(b: Backend) -> Setup {
    Setup::new(b)
        .introspection_secret(NOTES_SECRET)
        .extra(&format!(
            r#"
[[scopes]]
name = "api:read"
description = "Read the API"

[[resources]]
uri = "{API}"
name = "API"
scopes = ["api:read"]
default_scopes = ["api:read"]
introspection_secret = "{API_SECRET}"

[[clients]]
client_id = "{CONF}"
client_name = "Confidential app"
redirect_uris = ["{CONF_REDIRECT}"]
token_endpoint_auth_method = "client_secret_basic"
client_secret = "{CONF_SECRET}"

[[clients]]
client_id = "{CONF2}"
client_name = "Second confidential app"
redirect_uris = ["{CONF_REDIRECT}"]
token_endpoint_auth_method = "client_secret_post"
client_secret = "{CONF2_SECRET}"
"#
        ))
}

// ------------------------------------------------------------------------------------------
// helpers

/// `application/x-www-form-urlencoded` encoding of `pairs`.
fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
    fn enc(v: &str) -> String {
        v.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
        .into_bytes()
}

fn basic(id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

/// How a caller authenticates to introspection / revocation.
#[derive(Clone, Copy)]
enum Auth<'a> {
    Nothing,
    /// `client_id` only (public client).
    Public(&'a str),
    /// HTTP Basic.
    Basic(&'a str, &'a str),
    /// client_id + client_secret in the body.
    Post(&'a str, &'a str),
    /// `Authorization: Bearer` (a resource server's introspection_secret).
    Bearer(&'a str),
}

async fn post_form(
    s: &TestServer,
    path: &str,
    auth: Auth<'_>,
    params: &[(&str, &str)],
) -> RawResponse {
    let mut pairs: Vec<(&str, &str)> = params.to_vec();
    let header;
    let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
    match auth {
        Auth::Nothing => {}
        Auth::Public(id) => pairs.push(("client_id", id)),
        Auth::Basic(id, secret) => {
            header = basic(id, secret);
            headers.push(("authorization", header.as_str()));
        }
        Auth::Post(id, secret) => {
            pairs.push(("client_id", id));
            pairs.push(("client_secret", secret));
        }
        Auth::Bearer(secret) => {
            header = format!("Bearer {secret}");
            headers.push(("authorization", header.as_str()));
        }
    }
    s.raw(Method::POST, path, &headers, form(&pairs)).await
}

async fn introspect(s: &TestServer, auth: Auth<'_>, token: &str) -> RawResponse {
    let r = post_form(s, "/oauth2/introspect", auth, &[("token", token)]).await;
    assert_eq!(r.header("cache-control"), Some("no-store"), "{}", r.text);
    r
}

/// Introspection answered 200; is the token active?
#[track_caller]
fn active(r: &RawResponse) -> bool {
    assert_eq!(r.status, 200, "introspection must not error: {}", r.text);
    r.json["active"].as_bool().expect("active is a boolean")
}

/// An inactive answer says nothing else (RFC 7662 §2.2).
#[track_caller]
fn assert_inactive(r: &RawResponse) {
    assert!(!active(r), "expected inactive: {}", r.text);
    assert_eq!(r.json, json!({"active": false}), "{}", r.text);
}

async fn revoke(s: &TestServer, auth: Auth<'_>, token: &str) -> RawResponse {
    post_form(s, "/oauth2/revoke", auth, &[("token", token)]).await
}

fn err(r: &RawResponse) -> (u16, &Value) {
    (r.status, &r.json)
}

struct Tokens {
    access: String,
    refresh: String,
    body: Value,
}

fn tokens_of(body: Value) -> Tokens {
    Tokens {
        access: body["access_token"].as_str().unwrap().to_owned(),
        refresh: body["refresh_token"].as_str().unwrap().to_owned(),
        body,
    }
}

/// A full flow for the public `CLIENT` on `RESOURCE`.
async fn public_tokens(s: &TestServer, user: &str, scope: &str) -> Tokens {
    let pkce = Pkce::new();
    tokens_of(s.tokens_for(user, &pkce, &params(&pkce, scope)).await)
}

/// A full flow for the public `CLIENT` with an explicit parameter set.
async fn public_tokens_with(s: &TestServer, user: &str, pkce: &Pkce, p: &Value) -> Tokens {
    let code = s.code_for(user, p).await;
    let (status, body) = s.redeem(&code, CLIENT, REDIRECT, &pkce.verifier).await;
    assert_eq!(status, 200, "token: {body}");
    tokens_of(body)
}

fn conf_params(pkce: &Pkce, client: &str, scope: &str, resource: &str) -> Value {
    json!({
        "client_id": client,
        "redirect_uri": CONF_REDIRECT,
        "response_type": "code",
        "scope": scope,
        "state": "st-conf",
        "code_challenge": pkce.challenge,
        "code_challenge_method": "S256",
        "resource": [resource],
    })
}

/// A full flow for the confidential `CONF` (HTTP Basic at the token endpoint).
async fn conf_tokens(s: &TestServer, user: &str, scope: &str, resource: &str) -> Tokens {
    let pkce = Pkce::new();
    let code = s
        .code_for(user, &conf_params(&pkce, CONF, scope, resource))
        .await;
    let r = post_form(
        s,
        "/oauth2/token",
        Auth::Basic(CONF, CONF_SECRET),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CONF_REDIRECT),
            ("code_verifier", &pkce.verifier),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "token: {}", r.text);
    tokens_of(r.json)
}

async fn conf_refresh(s: &TestServer, refresh_token: &str) -> RawResponse {
    post_form(
        s,
        "/oauth2/token",
        Auth::Basic(CONF, CONF_SECRET),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

/// Refresh for the public `CLIENT`, expecting success.
async fn refreshed(s: &TestServer, refresh_token: &str) -> Tokens {
    let (status, body) = s.refresh(refresh_token, CLIENT).await;
    assert_eq!(status, 200, "refresh: {body}");
    tokens_of(body)
}

/// A JWT with the server's `kid` and `typ` but signed by a key the server does not hold.
fn forged_like(s: &TestServer, real: &str) -> String {
    let real_header = jsonwebtoken::decode_header(real).unwrap();
    let mut header = jsonwebtoken::Header::new(s.keys.alg);
    header.typ = Some("at+jwt".into());
    header.kid = real_header.kid;
    let mut claims = jwt_claims(real);
    claims["scope"] = json!("notes:read notes:write notes:admin");
    s.keys.sign_with_header(header, &claims)
}

async fn get_bearer(s: &TestServer, path: &str, bearer: Option<&str>) -> RawResponse {
    let h;
    let mut headers = Vec::new();
    if let Some(b) = bearer {
        h = format!("Bearer {b}");
        headers.push(("authorization", h.as_str()));
    }
    s.raw(Method::GET, path, &headers, Vec::new()).await
}

async fn post_bearer(s: &TestServer, path: &str, bearer: Option<&str>) -> RawResponse {
    let h;
    let mut headers = vec![("content-type", "application/json")];
    if let Some(b) = bearer {
        h = format!("Bearer {b}");
        headers.push(("authorization", h.as_str()));
    }
    s.raw(Method::POST, path, &headers, b"{}".to_vec()).await
}

async fn delete_bearer(s: &TestServer, path: &str, bearer: Option<&str>) -> RawResponse {
    let h;
    let mut headers = Vec::new();
    if let Some(b) = bearer {
        h = format!("Bearer {b}");
        headers.push(("authorization", h.as_str()));
    }
    s.raw(Method::DELETE, path, &headers, Vec::new()).await
}

async fn connected_apps(s: &TestServer, session: &str) -> Vec<Value> {
    let r = get_bearer(s, "/v1/connected_apps", Some(session)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json.as_array().expect("a JSON array").clone()
}

fn app<'a>(apps: &'a [Value], client_id: &str) -> Option<&'a Value> {
    apps.iter().find(|a| a["client_id"] == client_id)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect()
}

/// Register a public client through DCR; its client_id.
async fn register_public(s: &TestServer, name: &str) -> String {
    let (status, body) = s
        .post_json(
            "/oauth2/register",
            None,
            &json!({
                "client_name": name,
                "redirect_uris": [REDIRECT],
                "token_endpoint_auth_method": "none",
                "application_type": "native",
            }),
        )
        .await;
    assert_eq!(status, 201, "register: {body}");
    body["client_id"].as_str().unwrap().to_owned()
}

fn assert_refresh_refused(got: (u16, &Value)) {
    assert_error(got, 400, "invalid_grant", &["refresh_token"]);
}

// ------------------------------------------------------------------------------------------
// Introspection

async fn introspection_requires_an_authenticated_caller(b: Backend) {
    let s = setup(b).start().await;
    let t = public_tokens(&s, "in1", "notes:read").await;

    // nobody
    let r = introspect(&s, Auth::Nothing, &t.access).await;
    assert_error(err(&r), 401, "invalid_client", &[]);
    assert!(r.json.get("active").is_none(), "{}", r.text);
    assert!(r.header("www-authenticate").is_some());

    // a public client proves nothing: it may not introspect, not even its own token
    let r = introspect(&s, Auth::Public(CLIENT), &t.access).await;
    assert_error(err(&r), 401, "invalid_client", &[CLIENT, "public"]);

    // a confidential client without its secret, or with a wrong one
    let r = introspect(&s, Auth::Public(CONF), &t.access).await;
    assert_error(err(&r), 401, "invalid_client", &[CONF]);
    let r = introspect(
        &s,
        Auth::Basic(CONF, "wrong-secret-0123456789abcdefghijkl"),
        &t.access,
    )
    .await;
    assert_error(err(&r), 401, "invalid_client", &[CONF]);
    let r = introspect(&s, Auth::Post(CONF2, CONF_SECRET), &t.access).await;
    assert_error(err(&r), 401, "invalid_client", &[CONF2]);

    // a bearer that is no resource server's secret: not even a valid access token works
    for bearer in ["nope", &t.access, &NOTES_SECRET[..NOTES_SECRET.len() - 1]] {
        let r = introspect(&s, Auth::Bearer(bearer), &t.access).await;
        assert_error(err(&r), 401, "invalid_client", &["introspection_secret"]);
    }
    // the unknown client
    let r = introspect(&s, Auth::Basic("ghost", CONF_SECRET), &t.access).await;
    assert_error(err(&r), 401, "invalid_client", &["ghost"]);
}

async fn introspection_by_a_resource_server_sees_only_its_audience(b: Backend) {
    let s = setup(b).start().await;
    let t = public_tokens(&s, "in2", "notes:read notes:write").await;

    let r = introspect(&s, Auth::Bearer(NOTES_SECRET), &t.access).await;
    assert!(active(&r), "{}", r.text);
    let claims = jwt_claims(&t.access);
    assert_eq!(r.json["scope"], "notes:read notes:write");
    assert_eq!(r.json["client_id"], CLIENT);
    assert_eq!(r.json["sub"], "in2");
    assert_eq!(r.json["aud"], RESOURCE);
    assert_eq!(r.json["exp"], claims["exp"]);
    assert_eq!(r.json["iss"], s.base);
    assert_eq!(r.json["token_type"], "Bearer");
    assert!(
        r.json.get("gid").is_none(),
        "internal grant id leaked: {}",
        r.text
    );

    // the API resource server does not learn about a token meant for Notes
    assert_inactive(&introspect(&s, Auth::Bearer(API_SECRET), &t.access).await);
    // nor does any resource server learn about refresh tokens
    assert_inactive(&introspect(&s, Auth::Bearer(NOTES_SECRET), &t.refresh).await);

    // and the other way round for a token meant for the API
    let pkce = Pkce::new();
    let mut p = params(&pkce, "api:read");
    p["resource"] = json!([API]);
    let api = public_tokens_with(&s, "in2", &pkce, &p).await;
    let r = introspect(&s, Auth::Bearer(API_SECRET), &api.access).await;
    assert!(active(&r), "{}", r.text);
    assert_eq!(r.json["aud"], API);
    assert_eq!(r.json["scope"], "api:read");
    assert_inactive(&introspect(&s, Auth::Bearer(NOTES_SECRET), &api.access).await);
}

async fn introspection_by_a_client_sees_only_its_own_tokens(b: Backend) {
    let s = setup(b).start().await;
    let own = conf_tokens(&s, "in3", "notes:read", RESOURCE).await;

    for auth in [
        Auth::Basic(CONF, CONF_SECRET),
        Auth::Post(CONF, CONF_SECRET),
    ] {
        let r = introspect(&s, auth, &own.access).await;
        if let Auth::Post(..) = auth {
            // CONF is registered for client_secret_basic: the other method is refused.
            assert_error(err(&r), 401, "invalid_client", &[CONF]);
            continue;
        }
        assert!(active(&r), "{}", r.text);
        assert_eq!(r.json["client_id"], CONF);
        assert_eq!(r.json["sub"], "in3");
        assert_eq!(r.json["scope"], "notes:read");
        assert_eq!(r.json["token_type"], "Bearer");
    }
    // another confidential client learns nothing about CONF's token…
    assert_inactive(&introspect(&s, Auth::Post(CONF2, CONF2_SECRET), &own.access).await);
    // …and CONF nothing about the public client's
    let theirs = public_tokens(&s, "in3", "notes:read").await;
    assert_inactive(&introspect(&s, Auth::Basic(CONF, CONF_SECRET), &theirs.access).await);
}

async fn introspection_of_a_bad_token_is_inactive_never_an_error(b: Backend) {
    let s = setup(b).start().await;
    let pkce = Pkce::new();
    let mut p = params(&pkce, "openid notes:read");
    p["nonce"] = json!("n-1");
    let t = public_tokens_with(&s, "in4", &pkce, &p).await;
    let id_token = t.body["id_token"].as_str().unwrap().to_owned();
    let mut tampered = t.access.clone();
    tampered.insert(tampered.len() - 5, 'A');
    let (h, rest) = t.access.split_once('.').unwrap();
    let (_, sig) = rest.split_once('.').unwrap();
    let mut claims = jwt_claims(&t.access);
    claims["sub"] = json!("somebody-else");
    let swapped = format!(
        "{h}.{}.{sig}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let alg_none = format!(
        "{}.{}.",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"at+jwt"}"#),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(jwt_claims(&t.access).to_string())
    );
    let forged = forged_like(&s, &t.access);
    for (what, token) in [
        ("garbage", "garbage".to_owned()),
        ("a JWT-looking garbage", "a.b.c".to_owned()),
        (
            "an unknown refresh token",
            "cyr_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned(),
        ),
        ("a tampered signature", tampered),
        ("swapped claims", swapped),
        ("alg none", alg_none),
        ("a forged token with the server's kid", forged),
        // an ID token is signed by the same key, but it is not an access token
        ("an ID token", id_token),
        ("a Trusted Auth Token", s.keys.tat("in4")),
    ] {
        for auth in [Auth::Bearer(NOTES_SECRET), Auth::Basic(CONF, CONF_SECRET)] {
            let r = introspect(&s, auth, &token).await;
            assert!(!active(&r), "{what} must be inactive: {}", r.text);
            assert_inactive(&r);
        }
    }
    // the real one still is active: the refusals above are about the tokens, not the callers
    assert!(active(
        &introspect(&s, Auth::Bearer(NOTES_SECRET), &t.access).await
    ));

    // no token at all is a malformed request
    let r = post_form(&s, "/oauth2/introspect", Auth::Bearer(NOTES_SECRET), &[]).await;
    assert_error(err(&r), 400, "invalid_request", &["token"]);
}

async fn introspection_of_an_expired_access_token_is_inactive(b: Backend) {
    let s = setup(b).top("access_token_ttl_seconds", "30").start().await;
    let t = public_tokens(&s, "in5", "openid notes:read").await;
    assert!(active(
        &introspect(&s, Auth::Bearer(NOTES_SECRET), &t.access).await
    ));
    // The same token as issued 32 s ago (signed with the server's key): expired, as the real one
    // is after waiting out its 30 s.
    let expired = s.aged_access_token(&t.access, 32).await;
    assert_inactive(&introspect(&s, Auth::Bearer(NOTES_SECRET), &expired).await);
    // expired is not an error for revocation either, and userinfo refuses it
    assert_eq!(revoke(&s, Auth::Public(CLIENT), &expired).await.status, 200);
    let r = get_bearer(&s, "/oauth2/userinfo", Some(&expired)).await;
    assert_error(err(&r), 401, "invalid_token", &[]);
    // the refresh token outlives it and its new access token is active
    let fresh = refreshed(&s, &t.refresh).await;
    assert!(active(
        &introspect(&s, Auth::Bearer(NOTES_SECRET), &fresh.access).await
    ));
}

async fn introspection_of_a_refresh_token_only_by_its_own_client(b: Backend) {
    let s = setup(b).start().await;
    let t = conf_tokens(&s, "in6", "notes:read notes:write", RESOURCE).await;

    let r = introspect(&s, Auth::Basic(CONF, CONF_SECRET), &t.refresh).await;
    assert!(active(&r), "{}", r.text);
    assert_eq!(r.json["token_type"], "refresh_token");
    assert_eq!(r.json["client_id"], CONF);
    assert_eq!(r.json["sub"], "in6");
    assert_eq!(r.json["scope"], "notes:read notes:write");
    assert_eq!(r.json["iss"], s.base);
    assert!(r.json["exp"].as_i64().unwrap() > now() + 3600, "{}", r.text);

    // other callers learn nothing
    assert_inactive(&introspect(&s, Auth::Post(CONF2, CONF2_SECRET), &t.refresh).await);
    assert_inactive(&introspect(&s, Auth::Bearer(NOTES_SECRET), &t.refresh).await);

    // rotated: the old one is dead at once (no reuse grace configured), its successor lives
    let r = conf_refresh(&s, &t.refresh).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let next = tokens_of(r.json);
    assert_inactive(&introspect(&s, Auth::Basic(CONF, CONF_SECRET), &t.refresh).await);
    let r = introspect(&s, Auth::Basic(CONF, CONF_SECRET), &next.refresh).await;
    assert!(active(&r), "{}", r.text);
    assert_eq!(r.json["token_type"], "refresh_token");
}

// ------------------------------------------------------------------------------------------
// Revocation

async fn revoking_a_refresh_token_kills_the_grant_and_its_access_tokens(b: Backend) {
    let s = setup(b).start().await;
    let first = public_tokens(&s, "rv1", "notes:read").await;
    let second = refreshed(&s, &first.refresh).await;
    for at in [&first.access, &second.access] {
        assert!(active(
            &introspect(&s, Auth::Bearer(NOTES_SECRET), at).await
        ));
    }
    // an unrelated grant of the same user and client must survive
    let other = public_tokens(&s, "rv1", "notes:read").await;

    // public clients revoke their own tokens with client_id only
    let r = revoke(&s, Auth::Public(CLIENT), &second.refresh).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("cache-control"), Some("no-store"));

    let (status, body) = s.refresh(&second.refresh, CLIENT).await;
    assert_refresh_refused((status, &body));
    // every access token issued from the grant dies with it (gid)
    for at in [&first.access, &second.access] {
        assert_inactive(&introspect(&s, Auth::Bearer(NOTES_SECRET), at).await);
    }
    // revoking again is fine
    assert_eq!(
        revoke(&s, Auth::Public(CLIENT), &second.refresh)
            .await
            .status,
        200
    );

    assert!(active(
        &introspect(&s, Auth::Bearer(NOTES_SECRET), &other.access).await
    ));
    refreshed(&s, &other.refresh).await;

    // a confidential client revokes with its credentials, and the same holds
    let c = conf_tokens(&s, "rv1", "notes:read", RESOURCE).await;
    let r = post_form(
        &s,
        "/oauth2/revoke",
        Auth::Basic(CONF, CONF_SECRET),
        &[("token", &c.refresh), ("token_type_hint", "refresh_token")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = conf_refresh(&s, &c.refresh).await;
    assert_refresh_refused(err(&r));
    assert_inactive(&introspect(&s, Auth::Basic(CONF, CONF_SECRET), &c.access).await);
    assert_inactive(&introspect(&s, Auth::Basic(CONF, CONF_SECRET), &c.refresh).await);
}

async fn revoking_a_rotated_refresh_token_kills_its_successors(b: Backend) {
    let s = setup(b).start().await;
    let first = public_tokens(&s, "rv2", "notes:read").await;
    let second = refreshed(&s, &first.refresh).await;
    let third = refreshed(&s, &second.refresh).await;

    // the client revokes the grant with the first, long-rotated refresh token it still holds
    assert_eq!(
        revoke(&s, Auth::Public(CLIENT), &first.refresh)
            .await
            .status,
        200
    );

    let (status, body) = s.refresh(&third.refresh, CLIENT).await;
    assert_refresh_refused((status, &body));
    for at in [&first.access, &second.access, &third.access] {
        assert_inactive(&introspect(&s, Auth::Bearer(NOTES_SECRET), at).await);
    }
}

async fn revoking_an_access_token_kills_only_that_token(b: Backend) {
    let s = setup(b).start().await;
    let first = public_tokens(&s, "rv3", "notes:read").await;
    let second = refreshed(&s, &first.refresh).await;

    let r = revoke(&s, Auth::Public(CLIENT), &first.access).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_inactive(&introspect(&s, Auth::Bearer(NOTES_SECRET), &first.access).await);
    // the rest of the grant is untouched
    assert!(active(
        &introspect(&s, Auth::Bearer(NOTES_SECRET), &second.access).await
    ));
    let third = refreshed(&s, &second.refresh).await;
    assert!(active(
        &introspect(&s, Auth::Bearer(NOTES_SECRET), &third.access).await
    ));
    // and the revoked one stays revoked
    assert_eq!(
        revoke(&s, Auth::Public(CLIENT), &first.access).await.status,
        200
    );
    assert_inactive(&introspect(&s, Auth::Bearer(NOTES_SECRET), &first.access).await);
}

async fn revoking_someone_elses_token_is_refused_and_changes_nothing(b: Backend) {
    let s = setup(b).start().await;
    let victim = public_tokens(&s, "rv4", "notes:read").await;

    for auth in [
        Auth::Basic(CONF, CONF_SECRET),
        Auth::Post(CONF2, CONF2_SECRET),
        Auth::Public("other-agent"),
    ] {
        for token in [&victim.access, &victim.refresh] {
            let r = revoke(&s, auth, token).await;
            assert_error(err(&r), 400, "unauthorized_client", &["client"]);
        }
    }
    // a public client cannot revoke a confidential client's tokens either
    let conf = conf_tokens(&s, "rv4", "notes:read", RESOURCE).await;
    for token in [&conf.access, &conf.refresh] {
        let r = revoke(&s, Auth::Public(CLIENT), token).await;
        assert_error(err(&r), 400, "unauthorized_client", &[CLIENT]);
    }

    // nothing changed
    assert!(active(
        &introspect(&s, Auth::Bearer(NOTES_SECRET), &victim.access).await
    ));
    assert!(active(
        &introspect(&s, Auth::Basic(CONF, CONF_SECRET), &conf.access).await
    ));
    refreshed(&s, &victim.refresh).await;
    let r = conf_refresh(&s, &conf.refresh).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

async fn revoking_an_unknown_token_answers_200(b: Backend) {
    let s = setup(b).start().await;
    let t = public_tokens(&s, "rv5", "notes:read").await;
    let forged = forged_like(&s, &t.access);
    for token in [
        "garbage",
        "a.b.c",
        "cyr_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        forged.as_str(),
    ] {
        for auth in [Auth::Public(CLIENT), Auth::Basic(CONF, CONF_SECRET)] {
            let r = revoke(&s, auth, token).await;
            assert_eq!(r.status, 200, "{token}: {}", r.text);
        }
    }
    // the forged copy did not get the real token revoked (same jti)
    assert!(active(
        &introspect(&s, Auth::Bearer(NOTES_SECRET), &t.access).await
    ));
    refreshed(&s, &t.refresh).await;
}

async fn revocation_requires_the_token_parameter(b: Backend) {
    let s = setup(b).start().await;
    for auth in [Auth::Public(CLIENT), Auth::Basic(CONF, CONF_SECRET)] {
        let r = post_form(&s, "/oauth2/revoke", auth, &[]).await;
        assert_error(err(&r), 400, "invalid_request", &["token"]);
        let r = post_form(&s, "/oauth2/revoke", auth, &[("token", "")]).await;
        assert_error(err(&r), 400, "invalid_request", &["token"]);
    }
    // not a form
    let r = s
        .raw(
            Method::POST,
            "/oauth2/revoke",
            &[("content-type", "application/json")],
            br#"{"token":"x","client_id":"demo-agent"}"#.to_vec(),
        )
        .await;
    assert_error(err(&r), 400, "invalid_request", &["x-www-form-urlencoded"]);
}

async fn revocation_needs_the_clients_own_authentication(b: Backend) {
    let s = setup(b).start().await;
    let conf = conf_tokens(&s, "rv6", "notes:read", RESOURCE).await;
    // an attacker who knows a confidential client's id (public) cannot revoke its tokens
    let r = revoke(&s, Auth::Public(CONF), &conf.refresh).await;
    assert_error(err(&r), 401, "invalid_client", &[CONF]);
    let r = revoke(
        &s,
        Auth::Basic(CONF, "wrong-secret-0123456789abcdefghijkl"),
        &conf.refresh,
    )
    .await;
    assert_error(err(&r), 401, "invalid_client", &[CONF]);
    // an unknown client
    let r = revoke(&s, Auth::Public("ghost"), &conf.refresh).await;
    assert_error(err(&r), 401, "invalid_client", &["ghost"]);
    // a public client may not pretend to have a secret
    let mine = public_tokens(&s, "rv6", "notes:read").await;
    let r = revoke(&s, Auth::Post(CLIENT, CONF_SECRET), &mine.refresh).await;
    assert_error(err(&r), 401, "invalid_client", &[CLIENT]);

    // nothing was revoked
    let r = conf_refresh(&s, &conf.refresh).await;
    assert_eq!(r.status, 200, "{}", r.text);
    refreshed(&s, &mine.refresh).await;
}

// ------------------------------------------------------------------------------------------
// OpenID Connect

async fn verify_id_token(s: &TestServer, token: &str, client_id: &str) -> Value {
    let header = jsonwebtoken::decode_header(token).unwrap();
    let kid = header.kid.clone().expect("kid");
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(s.jwks().await).unwrap();
    let jwk = set.find(&kid).expect("kid in JWKS");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.set_audience(&[client_id]);
    v.set_issuer(&[s.base.as_str()]);
    v.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    v.leeway = 0;
    jsonwebtoken::decode::<Value>(token, &key, &v)
        .unwrap_or_else(|e| panic!("ID token does not verify: {e}"))
        .claims
}

async fn id_token_is_issued_for_openid_and_verifies_against_jwks(b: Backend) {
    let s = setup(b).start().await;
    let before = now();
    let pkce = Pkce::new();
    let mut p = params(&pkce, "openid profile email notes:read");
    p["nonce"] = json!("n-0S6_WzA2Mj");
    let t = public_tokens_with(&s, "oi1", &pkce, &p).await;
    let id_token = t.body["id_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no id_token: {}", t.body));
    let c = verify_id_token(&s, id_token, CLIENT).await;
    assert_eq!(c["iss"], s.base);
    assert_eq!(c["aud"], CLIENT);
    assert_eq!(c["sub"], "oi1");
    assert_eq!(c["nonce"], "n-0S6_WzA2Mj");
    let auth_time = c["auth_time"].as_i64().expect("auth_time");
    assert!(
        auth_time >= before - 5 && auth_time <= c["iat"].as_i64().unwrap(),
        "{c}"
    );
    assert_eq!(c["email"], "oi1@example.com");
    assert_eq!(c["name"], "Test User");
    // the access token is unchanged in nature: for the resource, carrying the OIDC scopes
    let at = s.verify_access_token(&t.access).await;
    assert_eq!(at["scope"], "openid profile email notes:read");
    assert!(at.get("nonce").is_none());

    // an ID token is for the client, never for a resource server: a different audience fails
    let header = jsonwebtoken::decode_header(id_token).unwrap();
    assert_ne!(header.typ.as_deref(), Some("at+jwt"));

    // without nonce in the request, none in the token
    let pkce = Pkce::new();
    let t = public_tokens_with(&s, "oi1", &pkce, &params(&pkce, "openid notes:read")).await;
    let c = verify_id_token(&s, t.body["id_token"].as_str().unwrap(), CLIENT).await;
    assert!(c.get("nonce").is_none(), "{c}");
    // only openid: no profile or email claims
    assert!(c.get("email").is_none() && c.get("name").is_none(), "{c}");

    // a confidential client gets its own client_id as audience
    let t = conf_tokens(&s, "oi1", "openid email notes:read", RESOURCE).await;
    let c = verify_id_token(&s, t.body["id_token"].as_str().unwrap(), CONF).await;
    assert_eq!(c["aud"], CONF);
    assert_eq!(c["email"], "oi1@example.com");
    assert!(c.get("name").is_none(), "{c}");
}

async fn id_token_is_absent_without_openid(b: Backend) {
    let s = setup(b).start().await;
    let t = public_tokens(&s, "oi2", "notes:read").await;
    assert!(
        t.body.get("id_token").is_none() || t.body["id_token"].is_null(),
        "{}",
        t.body
    );
    // profile and email without openid release no ID token either
    let t = public_tokens(&s, "oi2", "profile email notes:read").await;
    assert!(
        t.body.get("id_token").is_none() || t.body["id_token"].is_null(),
        "{}",
        t.body
    );
}

async fn userinfo_releases_only_what_the_scopes_allow(b: Backend) {
    let s = setup(b).start().await;
    let full = public_tokens(&s, "ui1", "openid profile email notes:read").await;
    let get = get_bearer(&s, "/oauth2/userinfo", Some(&full.access)).await;
    let post = s
        .raw(
            Method::POST,
            "/oauth2/userinfo",
            &[("authorization", &format!("Bearer {}", full.access))],
            Vec::new(),
        )
        .await;
    for r in [&get, &post] {
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(
            r.json,
            json!({"sub": "ui1", "name": "Test User", "email": "ui1@example.com"})
        );
    }

    let only = public_tokens(&s, "ui1", "openid notes:read").await;
    let r = get_bearer(&s, "/oauth2/userinfo", Some(&only.access)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json, json!({"sub": "ui1"}));

    let profile = public_tokens(&s, "ui1", "openid profile").await;
    let r = get_bearer(&s, "/oauth2/userinfo", Some(&profile.access)).await;
    assert_eq!(r.json, json!({"sub": "ui1", "name": "Test User"}));

    // a refresh narrowed to drop `email` drops it from userinfo too
    let (status, body) = s
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &full.refresh),
            ("client_id", CLIENT),
            ("scope", "openid profile"),
        ])
        .await;
    assert_eq!(status, 200, "{body}");
    let r = get_bearer(&s, "/oauth2/userinfo", body["access_token"].as_str()).await;
    assert_eq!(r.json, json!({"sub": "ui1", "name": "Test User"}));
}

async fn userinfo_refuses_missing_revoked_and_non_openid_tokens(b: Backend) {
    let s = setup(b).start().await;
    // no token
    for method in [Method::GET, Method::POST] {
        let r = s.raw(method, "/oauth2/userinfo", &[], Vec::new()).await;
        assert_error(err(&r), 401, "invalid_token", &["Bearer"]);
        assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
    }
    // a token without openid
    let plain = public_tokens(&s, "ui2", "notes:read").await;
    let r = get_bearer(&s, "/oauth2/userinfo", Some(&plain.access)).await;
    assert_error(err(&r), 403, "insufficient_scope", &["openid"]);
    let www = r.header("www-authenticate").unwrap();
    assert!(
        www.contains("insufficient_scope") && www.contains("openid"),
        "{www}"
    );

    // garbage, a forged token, a session token, an ID token
    let t = public_tokens(&s, "ui2", "openid profile notes:read").await;
    let session = s.session("ui2").await;
    let forged = forged_like(&s, &t.access);
    let id_token = t.body["id_token"].as_str().unwrap().to_owned();
    for bad in [
        "garbage",
        forged.as_str(),
        session.as_str(),
        id_token.as_str(),
    ] {
        let r = get_bearer(&s, "/oauth2/userinfo", Some(bad)).await;
        assert_error(err(&r), 401, "invalid_token", &[]);
    }

    // revoked: by itself, or with its grant
    let r = get_bearer(&s, "/oauth2/userinfo", Some(&t.access)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        revoke(&s, Auth::Public(CLIENT), &t.access).await.status,
        200
    );
    let r = get_bearer(&s, "/oauth2/userinfo", Some(&t.access)).await;
    assert_error(err(&r), 401, "invalid_token", &["revoked"]);

    let g = public_tokens(&s, "ui2", "openid notes:read").await;
    assert_eq!(
        revoke(&s, Auth::Public(CLIENT), &g.refresh).await.status,
        200
    );
    let r = get_bearer(&s, "/oauth2/userinfo", Some(&g.access)).await;
    assert_error(err(&r), 401, "invalid_token", &[]);
}

async fn consent_screen_lists_openid_scopes_with_descriptions(b: Backend) {
    let s = setup(b).start().await;
    let session = s.session("cs1").await;
    let pkce = Pkce::new();
    let p = params(&pkce, "openid profile email notes:read");
    let (status, body) = s.start_flow(&session, &p).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["consent_required"], true);
    let lines = body["scope_results"].as_array().unwrap();
    for sc in ["openid", "profile", "email", "notes:read"] {
        let line = lines
            .iter()
            .find(|l| l["scope"] == sc)
            .unwrap_or_else(|| panic!("{sc} not on the consent screen: {body}"));
        assert!(
            !line["description"].as_str().unwrap_or("").is_empty(),
            "{sc} has no description: {line}"
        );
        assert_eq!(line["is_grantable"], true);
        assert_eq!(line["already_granted"], false);
    }
    let desc = |sc: &str| {
        lines.iter().find(|l| l["scope"] == sc).unwrap()["description"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(desc("email").to_lowercase().contains("email"));
    assert!(desc("profile").to_lowercase().contains("name"));

    // after consent, the OIDC scopes count as granted: the second screen marks every line
    // (CLIENT is a native public client, so the screen itself is never skipped)
    let (status, body) = s.submit(&session, &p, true).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = s
        .start_flow(
            &session,
            &params(&Pkce::new(), "openid profile email notes:read"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["scope_results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["already_granted"] == true),
        "{body}"
    );
}

// ------------------------------------------------------------------------------------------
// Connected apps

async fn connected_apps_list_what_the_user_granted(b: Backend) {
    let s = setup(b).start().await;
    let session = s.session("ca1").await;
    assert!(connected_apps(&s, &session).await.is_empty());

    let before = now();
    let t = public_tokens(&s, "ca1", "openid notes:read notes:write").await;
    let apps = connected_apps(&s, &session).await;
    assert_eq!(apps.len(), 1, "{apps:?}");
    let a = &apps[0];
    assert_eq!(a["client_id"], CLIENT);
    assert_eq!(a["client_name"], "Demo agent");
    let mut scopes = strings(&a["scopes"]);
    scopes.sort();
    assert_eq!(scopes, ["notes:read", "notes:write", "openid"]);
    // the issuer (where openid is granted) is not a resource the user should see
    assert_eq!(strings(&a["resources"]), [RESOURCE]);
    let granted_at = a["granted_at"].as_i64().unwrap();
    assert!(granted_at >= before - 1 && granted_at <= now() + 1, "{a}");
    let used = a["last_used_at"]
        .as_i64()
        .expect("last_used_at after a grant");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    refreshed(&s, &t.refresh).await;
    let apps = connected_apps(&s, &session).await;
    let a = app(&apps, CLIENT).unwrap();
    assert!(a["last_used_at"].as_i64().unwrap() > used, "{a}");
    assert_eq!(a["granted_at"].as_i64().unwrap(), granted_at, "{a}");

    // another user sees none of it
    let other = s.session("ca1-other").await;
    assert!(connected_apps(&s, &other).await.is_empty());

    // a second app shows up separately, with its own resources
    conf_tokens(&s, "ca1", "api:read", API).await;
    let apps = connected_apps(&s, &session).await;
    assert_eq!(apps.len(), 2, "{apps:?}");
    let c = app(&apps, CONF).unwrap();
    assert_eq!(c["client_name"], "Confidential app");
    assert_eq!(strings(&c["resources"]), [API]);
    assert_eq!(strings(&c["scopes"]), ["api:read"]);
}

async fn revoking_a_connected_app_kills_its_tokens_and_consent(b: Backend) {
    let s = setup(b).start().await;
    let session = s.session("ca2").await;
    let first = public_tokens(&s, "ca2", "openid notes:read").await;
    let second = refreshed(&s, &first.refresh).await;
    // a second, separate grant of the same app dies too
    let other_grant = public_tokens(&s, "ca2", "notes:read").await;
    // the user's other app is untouched
    let conf = conf_tokens(&s, "ca2", "notes:read", RESOURCE).await;

    let r = post_bearer(
        &s,
        &format!("/v1/connected_apps/{CLIENT}/revoke"),
        Some(&session),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["revoked"], true);
    assert_eq!(r.json["client_id"], CLIENT);

    let apps = connected_apps(&s, &session).await;
    assert!(app(&apps, CLIENT).is_none(), "{apps:?}");
    assert!(app(&apps, CONF).is_some(), "{apps:?}");

    for rt in [&second.refresh, &other_grant.refresh] {
        let (status, body) = s.refresh(rt, CLIENT).await;
        assert_refresh_refused((status, &body));
    }
    for at in [&first.access, &second.access, &other_grant.access] {
        assert_inactive(&introspect(&s, Auth::Bearer(NOTES_SECRET), at).await);
    }
    let r = get_bearer(&s, "/oauth2/userinfo", Some(&second.access)).await;
    assert_error(err(&r), 401, "invalid_token", &[]);

    // consent is gone: the app has to ask again
    let (status, body) = s
        .start_flow(&session, &params(&Pkce::new(), "openid notes:read"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["consent_required"], true, "{body}");
    assert!(
        body["scope_results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["already_granted"] == false),
        "{body}"
    );
    // and prompt=none cannot skip it
    let mut p = params(&Pkce::new(), "notes:read");
    p["prompt"] = json!("none");
    let (status, body) = s.start_flow(&session, &p).await;
    assert_error((status, &body), 400, "consent_required", &[]);

    // CONF is still fine
    assert!(active(
        &introspect(&s, Auth::Basic(CONF, CONF_SECRET), &conf.access).await
    ));
    let r = conf_refresh(&s, &conf.refresh).await;
    assert_eq!(r.status, 200, "{}", r.text);

    // revoking twice: nothing is connected any more
    let r = post_bearer(
        &s,
        &format!("/v1/connected_apps/{CLIENT}/revoke"),
        Some(&session),
    )
    .await;
    assert_error(err(&r), 404, "not_found", &[CLIENT]);

    // connecting again works and yields live tokens
    let again = public_tokens(&s, "ca2", "notes:read").await;
    assert!(active(
        &introspect(&s, Auth::Bearer(NOTES_SECRET), &again.access).await
    ));
}

async fn revoking_an_app_never_connected_is_404(b: Backend) {
    let s = setup(b).start().await;
    let session = s.session("ca3").await;
    public_tokens(&s, "ca3", "notes:read").await;
    for client in ["other-agent", "ghost-client", CONF] {
        let r = post_bearer(
            &s,
            &format!("/v1/connected_apps/{client}/revoke"),
            Some(&session),
        )
        .await;
        assert_error(err(&r), 404, "not_found", &[client]);
    }
    // the real one is still there
    assert!(app(&connected_apps(&s, &session).await, CLIENT).is_some());
}

async fn a_user_cannot_revoke_another_users_app(b: Backend) {
    let s = setup(b).start().await;
    let alice = s.session("alice").await;
    let bob = s.session("bob").await;
    let bobs = public_tokens(&s, "bob", "openid notes:read").await;

    let r = post_bearer(
        &s,
        &format!("/v1/connected_apps/{CLIENT}/revoke"),
        Some(&alice),
    )
    .await;
    assert_error(err(&r), 404, "not_found", &[CLIENT]);

    // Bob's app, consent and tokens are untouched
    assert!(app(&connected_apps(&s, &bob).await, CLIENT).is_some());
    assert!(active(
        &introspect(&s, Auth::Bearer(NOTES_SECRET), &bobs.access).await
    ));
    let r = get_bearer(&s, "/oauth2/userinfo", Some(&bobs.access)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    refreshed(&s, &bobs.refresh).await;
    let (status, body) = s
        .start_flow(&bob, &params(&Pkce::new(), "openid notes:read"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["scope_results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["already_granted"] == true),
        "{body}"
    );

    // even when Alice did connect the same app, her revoke only reaches her own grant
    let alices = public_tokens(&s, "alice", "notes:read").await;
    let r = post_bearer(
        &s,
        &format!("/v1/connected_apps/{CLIENT}/revoke"),
        Some(&alice),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_inactive(&introspect(&s, Auth::Bearer(NOTES_SECRET), &alices.access).await);
    assert!(app(&connected_apps(&s, &bob).await, CLIENT).is_some());
    let bobs_latest = public_tokens(&s, "bob", "notes:read").await;
    assert!(active(
        &introspect(&s, Auth::Bearer(NOTES_SECRET), &bobs_latest.access).await
    ));
}

async fn connected_apps_require_a_session(b: Backend) {
    let s = setup(b).start().await;
    let t = public_tokens(&s, "ca4", "notes:read").await;
    let path = format!("/v1/connected_apps/{CLIENT}/revoke");
    for bearer in [
        None,
        Some("garbage"),
        Some(t.access.as_str()),
        Some(ADMIN_KEY),
    ] {
        let r = get_bearer(&s, "/v1/connected_apps", bearer).await;
        assert_eq!(r.status, 401, "{bearer:?}: {}", r.text);
        assert_eq!(r.json["error"], "invalid_session", "{}", r.text);
        let r = post_bearer(&s, &path, bearer).await;
        assert_eq!(r.status, 401, "{bearer:?}: {}", r.text);
        assert_eq!(r.json["error"], "invalid_session", "{}", r.text);
    }
    // nothing was revoked
    assert!(active(
        &introspect(&s, Auth::Bearer(NOTES_SECRET), &t.access).await
    ));
    // the revoke is a POST: a GET (link, image) cannot trigger it
    let session = s.session("ca4").await;
    let r = get_bearer(&s, &path, Some(&session)).await;
    assert_eq!(r.status, 405, "{}", r.text);
    refreshed(&s, &t.refresh).await;
}

// ------------------------------------------------------------------------------------------
// Admin API

async fn admin_api_requires_the_admin_key(b: Backend) {
    let key = format!("\"{ADMIN_KEY}\"");
    let s = setup(b).top("admin_key", &key).start().await;
    let t = public_tokens(&s, "ad1", "notes:read").await;
    let session = s.session("ad1").await;
    let wrong_length = format!("{ADMIN_KEY}x");
    let bad: [Option<&str>; 6] = [
        None,
        Some("wrong"),
        Some(&ADMIN_KEY[..ADMIN_KEY.len() - 1]),
        Some(wrong_length.as_str()),
        Some(session.as_str()),
        Some(t.access.as_str()),
    ];
    let revoke_path = format!("/admin/v1/users/ad1/connected_apps/{CLIENT}/revoke");
    for bearer in bad {
        for r in [
            get_bearer(&s, "/admin/v1/users/ad1/connected_apps", bearer).await,
            post_bearer(&s, &revoke_path, bearer).await,
            get_bearer(&s, "/admin/v1/clients", bearer).await,
            get_bearer(&s, &format!("/admin/v1/clients/{CLIENT}"), bearer).await,
            delete_bearer(&s, "/admin/v1/clients/whatever", bearer).await,
        ] {
            assert_error(err(&r), 401, "invalid_token", &["admin_key"]);
        }
    }
    // Basic with the key as password is not the admin scheme either
    let r = s
        .raw(
            Method::GET,
            "/admin/v1/clients",
            &[("authorization", &basic("admin", ADMIN_KEY))],
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.text);
    // nothing happened
    assert!(active(
        &introspect(&s, Auth::Bearer(NOTES_SECRET), &t.access).await
    ));
    // the right key works
    let r = get_bearer(&s, "/admin/v1/users/ad1/connected_apps", Some(ADMIN_KEY)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // no CORS on the admin API: browsers must never be able to call it
    let r = s
        .raw(
            Method::OPTIONS,
            "/admin/v1/clients",
            &[
                ("origin", "http://127.0.0.1:3000"),
                ("access-control-request-method", "GET"),
                ("access-control-request-headers", "authorization"),
            ],
            Vec::new(),
        )
        .await;
    assert!(
        r.header("access-control-allow-origin").is_none(),
        "{:?}",
        r.headers
    );
}

async fn admin_api_is_off_without_admin_key(b: Backend) {
    let s = setup(b).start().await;
    public_tokens(&s, "ad2", "notes:read").await;
    for bearer in [None, Some(ADMIN_KEY), Some("")] {
        for r in [
            get_bearer(&s, "/admin/v1/users/ad2/connected_apps", bearer).await,
            post_bearer(
                &s,
                &format!("/admin/v1/users/ad2/connected_apps/{CLIENT}/revoke"),
                bearer,
            )
            .await,
            get_bearer(&s, "/admin/v1/clients", bearer).await,
            get_bearer(&s, &format!("/admin/v1/clients/{CLIENT}"), bearer).await,
            delete_bearer(&s, "/admin/v1/clients/whatever", bearer).await,
        ] {
            assert_error(err(&r), 404, "not_found", &["admin_key"]);
        }
    }
    let session = s.session("ad2").await;
    assert!(app(&connected_apps(&s, &session).await, CLIENT).is_some());
}

async fn admin_lists_and_revokes_a_users_connected_apps(b: Backend) {
    let key = format!("\"{ADMIN_KEY}\"");
    let s = setup(b).top("admin_key", &key).start().await;
    let t = public_tokens(&s, "ad3", "openid notes:read").await;
    let c = conf_tokens(&s, "ad3", "notes:read", RESOURCE).await;
    let untouched = public_tokens(&s, "ad3-other", "notes:read").await;

    let r = get_bearer(&s, "/admin/v1/users/ad3/connected_apps", Some(ADMIN_KEY)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let apps = r.json.as_array().unwrap().clone();
    assert_eq!(apps.len(), 2, "{apps:?}");
    let a = app(&apps, CLIENT).unwrap();
    assert_eq!(a["client_name"], "Demo agent");
    assert_eq!(strings(&a["resources"]), [RESOURCE]);
    assert!(app(&apps, CONF).is_some());
    // a user with nothing
    let r = get_bearer(&s, "/admin/v1/users/nobody/connected_apps", Some(ADMIN_KEY)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json, json!([]));

    let r = post_bearer(
        &s,
        &format!("/admin/v1/users/ad3/connected_apps/{CLIENT}/revoke"),
        Some(ADMIN_KEY),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["revoked"], true);
    assert_eq!(r.json["user_id"], "ad3");
    assert_eq!(r.json["client_id"], CLIENT);

    let (status, body) = s.refresh(&t.refresh, CLIENT).await;
    assert_refresh_refused((status, &body));
    assert_inactive(&introspect(&s, Auth::Bearer(NOTES_SECRET), &t.access).await);
    let r = get_bearer(&s, "/admin/v1/users/ad3/connected_apps", Some(ADMIN_KEY)).await;
    let apps = r.json.as_array().unwrap().clone();
    assert!(
        app(&apps, CLIENT).is_none() && app(&apps, CONF).is_some(),
        "{apps:?}"
    );
    // the user's other app and other users are untouched
    assert!(active(
        &introspect(&s, Auth::Basic(CONF, CONF_SECRET), &c.access).await
    ));
    assert!(active(
        &introspect(&s, Auth::Bearer(NOTES_SECRET), &untouched.access).await
    ));
    refreshed(&s, &untouched.refresh).await;

    // again, or for an app never connected: 404
    for (user, client) in [("ad3", CLIENT), ("ad3", "other-agent"), ("nobody", CLIENT)] {
        let r = post_bearer(
            &s,
            &format!("/admin/v1/users/{user}/connected_apps/{client}/revoke"),
            Some(ADMIN_KEY),
        )
        .await;
        assert_error(err(&r), 404, "not_found", &[client]);
    }
}

async fn admin_lists_pages_gets_and_deletes_clients(b: Backend) {
    let key = format!("\"{ADMIN_KEY}\"");
    let s = setup(b).top("admin_key", &key).start().await;
    let dcr1 = register_public(&s, "DCR one").await;
    let dcr2 = register_public(&s, "DCR two").await;
    let dcr3 = register_public(&s, "DCR three").await;

    let r = get_bearer(&s, "/admin/v1/clients", Some(ADMIN_KEY)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let all: Vec<Value> = r.json["clients"].as_array().unwrap().clone();
    let ids: Vec<String> = all
        .iter()
        .map(|c| c["client_id"].as_str().unwrap().to_owned())
        .collect();
    let mut expected: Vec<String> = [CLIENT, "native-app", "other-agent", CONF, CONF2]
        .iter()
        .map(|s| s.to_string())
        .chain([dcr1.clone(), dcr2.clone(), dcr3.clone()])
        .collect();
    expected.sort();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, expected);
    let find = |id: &str| all.iter().find(|c| c["client_id"] == id).unwrap().clone();
    assert_eq!(find(CLIENT)["source"], "config");
    assert_eq!(
        find(CONF)["token_endpoint_auth_method"],
        "client_secret_basic"
    );
    assert_eq!(find(&dcr1)["source"], "registered");
    assert_eq!(find(&dcr1)["client_name"], "DCR one");
    for c in &all {
        let text = c.to_string();
        assert!(
            !text.contains(CONF_SECRET) && !text.contains("secret_hash"),
            "a secret leaked: {text}"
        );
    }

    // paging: every client exactly once, at most `limit` per page, in client_id order
    let mut walked: Vec<String> = Vec::new();
    let mut after = String::new();
    for _ in 0..20 {
        let r = get_bearer(
            &s,
            &format!("/admin/v1/clients?limit=3&after={after}"),
            Some(ADMIN_KEY),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let page = r.json["clients"].as_array().unwrap();
        assert!(
            page.len() <= 3,
            "limit=3 but a page of {}: {}",
            page.len(),
            r.text
        );
        walked.extend(
            page.iter()
                .map(|c| c["client_id"].as_str().unwrap().to_owned()),
        );
        match r.json["next_after"].as_str() {
            Some(n) => after = n.to_owned(),
            None => break,
        }
    }
    assert_eq!(
        walked, expected,
        "paging must list every client once, in order"
    );

    // one client
    let r = get_bearer(&s, &format!("/admin/v1/clients/{dcr2}"), Some(ADMIN_KEY)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["client_id"], dcr2);
    assert_eq!(r.json["client_name"], "DCR two");
    assert_eq!(r.json["redirect_uris"], json!([REDIRECT]));
    let r = get_bearer(&s, &format!("/admin/v1/clients/{CLIENT}"), Some(ADMIN_KEY)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["source"], "config");
    let r = get_bearer(&s, "/admin/v1/clients/ghost", Some(ADMIN_KEY)).await;
    assert_error(err(&r), 404, "not_found", &["ghost"]);

    // delete a registered client that holds a grant: its tokens die
    let pkce = Pkce::new();
    let mut p = params(&pkce, "openid notes:read");
    p["client_id"] = json!(dcr1);
    let code = s.code_for("ad4", &p).await;
    let (status, body) = s.redeem(&code, &dcr1, REDIRECT, &pkce.verifier).await;
    assert_eq!(status, 200, "{body}");
    let t = tokens_of(body);
    assert!(active(
        &introspect(&s, Auth::Bearer(NOTES_SECRET), &t.access).await
    ));

    let r = delete_bearer(&s, &format!("/admin/v1/clients/{dcr1}"), Some(ADMIN_KEY)).await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_inactive(&introspect(&s, Auth::Bearer(NOTES_SECRET), &t.access).await);
    let r = get_bearer(&s, "/oauth2/userinfo", Some(&t.access)).await;
    assert_error(err(&r), 401, "invalid_token", &[]);
    let (status, _) = s.refresh(&t.refresh, &dcr1).await;
    assert!(
        status == 400 || status == 401,
        "refresh after delete: {status}"
    );
    let r = get_bearer(&s, &format!("/admin/v1/clients/{dcr1}"), Some(ADMIN_KEY)).await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = delete_bearer(&s, &format!("/admin/v1/clients/{dcr1}"), Some(ADMIN_KEY)).await;
    assert_error(err(&r), 404, "not_found", &[&dcr1]);
    let session = s.session("ad4").await;
    assert!(app(&connected_apps(&s, &session).await, &dcr1).is_none());
    // the others are still listed
    let r = get_bearer(&s, "/admin/v1/clients", Some(ADMIN_KEY)).await;
    let left: Vec<&str> = r.json["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["client_id"].as_str().unwrap())
        .collect();
    assert!(
        !left.contains(&dcr1.as_str()) && left.contains(&dcr2.as_str()),
        "{left:?}"
    );

    // a config client cannot be deleted through the API
    let r = delete_bearer(&s, &format!("/admin/v1/clients/{CLIENT}"), Some(ADMIN_KEY)).await;
    assert_error(err(&r), 400, "invalid_request", &[CLIENT, "config"]);
    public_tokens(&s, "ad4", "notes:read").await;
}

// ------------------------------------------------------------------------------------------
// Discovery and CORS

async fn discovery_advertises_the_lifecycle_endpoints(b: Backend) {
    let s = setup(b).start().await;
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let (status, m) = s.get(path).await;
        assert_eq!(status, 200, "{m}");
        let iss = &s.base;
        assert_eq!(m["issuer"], *iss);
        assert_eq!(m["registration_endpoint"], format!("{iss}/oauth2/register"));
        assert_eq!(m["revocation_endpoint"], format!("{iss}/oauth2/revoke"));
        assert_eq!(
            m["introspection_endpoint"],
            format!("{iss}/oauth2/introspect")
        );
        assert_eq!(m["userinfo_endpoint"], format!("{iss}/oauth2/userinfo"));
        assert_eq!(m["id_token_signing_alg_values_supported"], json!(["ES256"]));
        assert_eq!(m["subject_types_supported"], json!(["public"]));
        assert_eq!(m["client_id_metadata_document_supported"], true);
        let scopes = strings(&m["scopes_supported"]);
        for sc in ["openid", "profile", "email", "notes:read", "api:read"] {
            assert!(scopes.contains(&sc.to_owned()), "{sc} not in {scopes:?}");
        }
        let claims = strings(&m["claims_supported"]);
        for c in ["sub", "name", "email", "nonce", "auth_time"] {
            assert!(claims.contains(&c.to_owned()), "{c} not in {claims:?}");
        }
        // the ID token really is signed with the advertised algorithm
        let jwks = s.jwks().await;
        assert!(
            jwks["keys"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["alg"] == "ES256" || k["crv"] == "P-256"),
            "{jwks}"
        );
    }
    // the endpoints it names answer
    let (status, _) = s.get("/oauth2/userinfo").await;
    assert_eq!(status, 401);
}

async fn preflight(s: &TestServer, path: &str, origin: &str, method: &str) -> RawResponse {
    s.raw(
        Method::OPTIONS,
        path,
        &[
            ("origin", origin),
            ("access-control-request-method", method),
            (
                "access-control-request-headers",
                "authorization, content-type",
            ),
        ],
        Vec::new(),
    )
    .await
}

async fn revoke_and_introspect_allow_cors_from_any_origin(b: Backend) {
    let s = setup(b).start().await;
    for path in ["/oauth2/revoke", "/oauth2/introspect", "/oauth2/userinfo"] {
        for origin in ["https://evil.example", "http://127.0.0.1:3000", "null"] {
            let r = preflight(&s, path, origin, "POST").await;
            assert!(
                r.status < 300,
                "preflight {path} from {origin}: {}",
                r.status
            );
            assert_eq!(r.header("access-control-allow-origin"), Some("*"), "{path}");
            let methods = r
                .header("access-control-allow-methods")
                .unwrap()
                .to_ascii_uppercase();
            assert!(methods.contains("POST"), "{methods}");
            // `*` never comes with credentials
            assert_ne!(r.header("access-control-allow-credentials"), Some("true"));
        }
    }
    // the actual response carries it too
    let t = public_tokens(&s, "co1", "notes:read").await;
    let r = s
        .raw(
            Method::POST,
            "/oauth2/revoke",
            &[
                ("origin", "https://evil.example"),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            form(&[("token", &t.access), ("client_id", CLIENT)]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
}

async fn connected_apps_allow_cors_only_from_allowed_origins(b: Backend) {
    let s = setup(b).start().await;
    let revoke_path = format!("/v1/connected_apps/{CLIENT}/revoke");
    for (path, method) in [
        ("/v1/connected_apps", "GET"),
        (revoke_path.as_str(), "POST"),
    ] {
        let r = preflight(&s, path, "http://127.0.0.1:3000", method).await;
        assert!(r.status < 300, "{path}: {}", r.status);
        assert_eq!(
            r.header("access-control-allow-origin"),
            Some("http://127.0.0.1:3000"),
            "{path}"
        );
        for origin in ["https://evil.example", "http://127.0.0.1:3001", "null"] {
            let r = preflight(&s, path, origin, method).await;
            let allowed = r.header("access-control-allow-origin");
            assert!(
                allowed.is_none(),
                "{path} must not allow {origin}: {allowed:?}"
            );
        }
    }
    // an actual cross-origin read from a foreign origin gets no CORS header
    let session = s.session("co2").await;
    let r = s
        .raw(
            Method::GET,
            "/v1/connected_apps",
            &[
                ("origin", "https://evil.example"),
                ("authorization", &format!("Bearer {session}")),
            ],
            Vec::new(),
        )
        .await;
    assert!(
        r.header("access-control-allow-origin").is_none(),
        "{:?}",
        r.headers
    );
}

// ------------------------------------------------------------------------------------------
// Admin API: a user's grants

/// `POST /admin/v1/users/{user_id}/revoke`: every grant of the user, with every client, stops
/// (refresh refused, access tokens inactive); the user, their consents and other users stay.
async fn admin_revokes_every_grant_of_a_user_and_keeps_the_user(b: Backend) {
    let key = format!("\"{ADMIN_KEY}\"");
    let s = setup(b).top("admin_key", &key).start().await;
    let t1 = public_tokens(&s, "ru1", "notes:read").await;
    let t2 = public_tokens(&s, "ru1", "notes:read notes:write").await;
    let c = conf_tokens(&s, "ru1", "notes:read", RESOURCE).await;
    let other = public_tokens(&s, "ru1-other", "notes:read").await;

    let r = post_bearer(&s, "/admin/v1/users/ru1/revoke", Some(ADMIN_KEY)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json,
        json!({"user_id": "ru1", "revoked": true, "revoked_grants": 3})
    );
    for t in [&t1, &t2] {
        let (status, body) = s.refresh(&t.refresh, CLIENT).await;
        assert_refresh_refused((status, &body));
        assert_inactive(&introspect(&s, Auth::Bearer(NOTES_SECRET), &t.access).await);
    }
    assert_error(
        err(&conf_refresh(&s, &c.refresh).await),
        400,
        "invalid_grant",
        &["refresh_token"],
    );
    assert_inactive(&introspect(&s, Auth::Basic(CONF, CONF_SECRET), &c.access).await);
    // another user is untouched
    assert!(active(
        &introspect(&s, Auth::Bearer(NOTES_SECRET), &other.access).await
    ));
    refreshed(&s, &other.refresh).await;
    // the user and their consents stay: connected apps still listed, a new flow works
    let session = s.session("ru1").await;
    assert!(app(&connected_apps(&s, &session).await, CLIENT).is_some());
    let t3 = public_tokens(&s, "ru1", "notes:read").await;
    refreshed(&s, &t3.refresh).await;
    // again: nothing live but the new grant; a user never seen: 404
    let r = post_bearer(&s, "/admin/v1/users/ru1/revoke", Some(ADMIN_KEY)).await;
    assert_eq!(r.json["revoked_grants"], 1, "{}", r.text);
    let r = post_bearer(&s, "/admin/v1/users/ru1/revoke", Some(ADMIN_KEY)).await;
    assert_eq!(r.json["revoked_grants"], 0, "{}", r.text);
    let r = post_bearer(&s, "/admin/v1/users/nobody/revoke", Some(ADMIN_KEY)).await;
    assert_error(err(&r), 404, "not_found", &["'nobody'"]);
}

/// `DELETE /admin/v1/users/{user_id}`: the user, their consents and every grant go; a later
/// attestation starts them afresh, with no consent remembered.
async fn admin_deletes_a_user_with_their_consents_and_grants(b: Backend) {
    let key = format!("\"{ADMIN_KEY}\"");
    let s = setup(b).top("admin_key", &key).start().await;
    let t = public_tokens(&s, "du1", "notes:read").await;
    let c = conf_tokens(&s, "du1", "notes:read", RESOURCE).await;
    let other = public_tokens(&s, "du1-other", "notes:read").await;

    let r = delete_bearer(&s, "/admin/v1/users/du1", Some(ADMIN_KEY)).await;
    assert_eq!(r.status, 204, "{}", r.text);
    let (status, body) = s.refresh(&t.refresh, CLIENT).await;
    assert_refresh_refused((status, &body));
    assert_inactive(&introspect(&s, Auth::Bearer(NOTES_SECRET), &t.access).await);
    assert_error(
        err(&conf_refresh(&s, &c.refresh).await),
        400,
        "invalid_grant",
        &["refresh_token"],
    );
    let r = get_bearer(&s, "/admin/v1/users/du1/connected_apps", Some(ADMIN_KEY)).await;
    assert_eq!(r.json, json!([]), "{}", r.text);
    // gone: deleting again is 404
    let r = delete_bearer(&s, "/admin/v1/users/du1", Some(ADMIN_KEY)).await;
    assert_error(err(&r), 404, "not_found", &["'du1'"]);
    let r = post_bearer(&s, "/admin/v1/users/du1/revoke", Some(ADMIN_KEY)).await;
    assert_error(err(&r), 404, "not_found", &["'du1'"]);
    // another user is untouched
    refreshed(&s, &other.refresh).await;
    // the product still knows them: attesting again recreates the user, who must consent again
    let session = s.session("du1").await;
    assert!(connected_apps(&s, &session).await.is_empty());
    let pkce = Pkce::new();
    let (status, body) = s.start_flow(&session, &params(&pkce, "notes:read")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["consent_required"], true, "{body}");
    // and the old refresh token stays dead
    let (status, body) = s.refresh(&t.refresh, CLIENT).await;
    assert_refresh_refused((status, &body));
}

async fn admin_user_endpoints_require_the_admin_key(b: Backend) {
    let key = format!("\"{ADMIN_KEY}\"");
    let s = setup(b.clone()).top("admin_key", &key).start().await;
    let t = public_tokens(&s, "ak1", "notes:read").await;
    let session = s.session("ak1").await;
    for bearer in [
        None,
        Some("wrong"),
        Some(session.as_str()),
        Some(t.access.as_str()),
    ] {
        let r = post_bearer(&s, "/admin/v1/users/ak1/revoke", bearer).await;
        assert_error(err(&r), 401, "invalid_token", &["admin_key"]);
        let r = delete_bearer(&s, "/admin/v1/users/ak1", bearer).await;
        assert_error(err(&r), 401, "invalid_token", &["admin_key"]);
    }
    refreshed(&s, &t.refresh).await;
    // off without admin_key
    let off = setup(b).start().await;
    let r = post_bearer(&off, "/admin/v1/users/ak1/revoke", Some(ADMIN_KEY)).await;
    assert_error(err(&r), 404, "not_found", &["admin_key"]);
    let r = delete_bearer(&off, "/admin/v1/users/ak1", Some(ADMIN_KEY)).await;
    assert_error(err(&r), 404, "not_found", &["admin_key"]);
}

// Registered clients nobody uses

/// A dynamically registered client that never completed a flow is deleted
/// `registration.unused_client_ttl_seconds` after it registered; one that did (a code redeemed, a
/// client_credentials token) `registration.idle_client_ttl_seconds` after its last use, its
/// consents and grants going with it as with an RFC 7592 DELETE. The server's periodic purge
/// runs `consentry_server::purge_clients`; here it is run on the server's own configuration and
/// database, with the clock moved forward, while the server is stopped.
async fn unused_and_idle_registered_clients_are_deleted(b: Backend) {
    const IAT: &str = "iat-purge-0123456789abcdef-0123456789";
    let mut s = setup(b)
        .extra(&format!(
            "[registration]\nmode = \"initial_access_token\"\ninitial_access_tokens = [\"{IAT}\"]\nunused_client_ttl_seconds = 100\nidle_client_ttl_seconds = 1000"
        ))
        .start()
        .await;
    let register = |body: Value| {
        let s = &s;
        async move {
            let (status, reg) = s.post_json("/oauth2/register", Some(IAT), &body).await;
            assert_eq!(status, 201, "{reg}");
            reg
        }
    };
    let unused =
        register(json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"})).await;
    let used =
        register(json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"})).await;
    let machine = register(json!({"grant_types": ["client_credentials"]})).await;
    let id = |r: &Value| r["client_id"].as_str().unwrap().to_owned();
    let pkce = Pkce::new();
    let mut p = params(&pkce, "notes:read");
    p["client_id"] = json!(id(&used));
    let tokens = s.tokens_for("u1", &pkce, &p).await;
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let (status, tokens) = s.refresh(&refresh, &id(&used)).await;
    assert_eq!(status, 200, "{tokens}");
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let cc = s
        .raw(
            Method::POST,
            "/oauth2/token",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                (
                    "authorization",
                    &basic(&id(&machine), machine["client_secret"].as_str().unwrap()),
                ),
            ],
            form(&[("grant_type", "client_credentials"), ("resource", RESOURCE)]),
        )
        .await;
    assert_eq!(cc.status, 200, "{}", cc.text);

    s.stop();
    let cfg = consentry_server::config::Config::load(&s.config_path).unwrap();
    let state = consentry_server::state::AppState::new(cfg).await.unwrap();
    let exists = |client_id: String| {
        let state = &state;
        async move { state.store.client(&client_id).await.unwrap().is_some() }
    };
    let t = now();
    consentry_server::purge_clients(&state, t + 50).await;
    assert!(
        exists(id(&unused)).await,
        "younger than unused_client_ttl_seconds"
    );
    consentry_server::purge_clients(&state, t + 101).await;
    assert!(!exists(id(&unused)).await, "never used: deleted");
    assert!(exists(id(&used)).await, "used: kept until idle");
    assert!(
        exists(id(&machine)).await,
        "client_credentials counts as use"
    );
    consentry_server::purge_clients(&state, t + 1002).await;
    assert!(!exists(id(&used)).await, "idle: deleted");
    assert!(!exists(id(&machine)).await, "idle: deleted");
    let grant = state
        .store
        .refresh_token(&consentry_server::crypto::sha256_hex(&refresh))
        .await
        .unwrap()
        .unwrap();
    assert!(
        grant.family.revoked_at.is_some(),
        "the deleted client's grant is revoked"
    );
    drop(state);

    s.restart().await;
    let (status, e) = s.refresh(&refresh, &id(&used)).await;
    assert_error((status, &e), 401, "invalid_client", &["not registered"]);
    let r = s
        .raw(
            Method::GET,
            &format!("/oauth2/register/{}", id(&unused)),
            &[(
                "authorization",
                &format!(
                    "Bearer {}",
                    unused["registration_access_token"].as_str().unwrap()
                ),
            )],
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.text);
    // Configured clients are not registered clients: untouched.
    let pkce = Pkce::new();
    s.tokens_for("u1", &pkce, &params(&pkce, "notes:read"))
        .await;
}
