//! Trusted Auth Token and session rules, attacked over real HTTP: every test is named after the
//! rule it defends and asserts the exact status, `error` code and that `error_description` names
//! the thing at fault. Every test but the first runs on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use consentry_server::keys::{SigningAlg, SigningKey};
use consentry_testkit::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

// Sessions are minute-granular (1 minute is the shortest), so rather than wait a minute the test
// ages the session it got: the same claims, issued and expiring 61 s earlier, sealed with the
// server's own session key (`TestServer::aged_session`). SQLite only: session expiry is checked by
// the HMAC'd token itself, not by the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_expires_after_session_duration_minutes() {
    let s = Setup::new(Backend::Sqlite).start().await;
    let pkce = Pkce::new();
    let p = params(&pkce, "notes:read");
    let (status, att) = attest_as(&s, "default", &s.keys.tat("exp-user"), Some(1)).await;
    assert_eq!(status, 200, "{att}");
    let session = att["session_token"].as_str().unwrap().to_owned();
    let expires_at = att["expires_at"].as_i64().unwrap();
    assert!(
        (now() + 55..=now() + 60).contains(&expires_at),
        "1 minute session: {att}"
    );
    // still good before the minute is up
    let (status, body) = s.submit(&session, &p, true).await;
    assert_eq!(status, 200, "{body}");
    let session = s.aged_session(&session, 61).await;
    let r = s.submit(&session, &p, true).await;
    refused(&r, 401, "session_expired", &["expired"]);
    let r = s.start_flow(&session, &p).await;
    refused(&r, 401, "session_expired", &["expired"]);
}

on_both_backends!(
    alg_none_is_refused,
    hs256_keyed_with_the_public_key_pem_is_refused,
    alg_must_be_one_the_profile_allows,
    signature_by_another_key_is_refused,
    tampered_payload_is_refused,
    malformed_tokens_are_refused_and_the_server_stays_up,
    iss_must_equal_the_profile_issuer,
    aud_must_be_or_contain_the_profile_audience,
    exp_is_required_and_enforced_with_60s_leeway,
    nbf_in_the_future_beyond_leeway_is_refused,
    iat_in_the_future_beyond_leeway_is_refused,
    lifetime_over_max_lifetime_seconds_is_refused,
    extreme_numeric_dates_are_refused_not_crashed,
    user_id_claim_is_required,
    jti_is_single_use_across_attest_and_one_round_trip_start,
    single_use_jti_false_profile_accepts_reuse,
    jti_is_single_use_across_profiles_of_one_issuer,
    unknown_profile_id_is_400_listing_the_configured_ones,
    jit_provisioning_false_refuses_unknown_users_and_accepts_known_ones,
    claims_mapping_reads_user_id_and_roles_from_configured_claims,
    session_duration_minutes_must_be_within_1_and_max,
    tampered_session_token_is_invalid_session,
    session_token_from_another_server_is_invalid_session,
    missing_or_non_bearer_authorization_is_invalid_session,
    jwks_profile_verifies_by_kid_and_ignores_header_keys,
    jwks_rotation_refetches_on_unknown_kid_at_most_once_per_10s,
    jwks_unreachable_is_503_temporarily_unavailable,
    single_use_jti_refuses_a_tat_without_jti,
    typ_must_be_absent_or_jwt_unless_allowed_types_says_otherwise,
);

// ------------------------------------------------------------------------------------------
// helpers

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn b64_json(v: &Value) -> String {
    b64(&serde_json::to_vec(v).unwrap())
}

/// POST /v1/sessions/attest with an explicit profile and duration.
async fn attest_as(
    s: &TestServer,
    profile_id: &str,
    tat: &str,
    minutes: Option<u32>,
) -> (u16, Value) {
    let mut body = json!({"token": tat, "profile_id": profile_id});
    if let Some(m) = minutes {
        body["session_duration_minutes"] = json!(m);
    }
    s.post_json("/v1/sessions/attest", None, &body).await
}

/// Assert a refusal: exact status, exact `error`, and a description mentioning every needle.
#[track_caller]
fn refused(got: &(u16, Value), status: u16, error: &str, mentions: &[&str]) {
    let (st, body) = got;
    assert_eq!(*st, status, "status; body: {body}");
    assert_eq!(body["error"], error, "error code; body: {body}");
    let desc = body["error_description"]
        .as_str()
        .unwrap_or_else(|| panic!("no error_description: {body}"));
    for m in mentions {
        assert!(
            desc.contains(m),
            "error_description should mention {m:?}: {desc:?}"
        );
    }
}

#[track_caller]
fn bad_tat(got: &(u16, Value), mentions: &[&str]) {
    refused(got, 401, "invalid_trusted_auth_token", mentions);
}

#[track_caller]
fn accepted(got: &(u16, Value), user: &str) {
    let (st, body) = got;
    assert_eq!(*st, 200, "expected acceptance: {body}");
    assert_eq!(body["user"]["user_id"], user, "{body}");
    assert!(
        body["session_token"]
            .as_str()
            .is_some_and(|t| t.starts_with("cys_")),
        "{body}"
    );
}

async fn assert_healthy(s: &TestServer) {
    let (status, h) = s.get("/healthz").await;
    assert_eq!((status, h["status"].as_str()), (200, Some("ok")), "{h}");
}

/// `tat_claims` with some claims replaced (`Value::Null` removes the claim).
fn claims_with(user: &str, changes: &[(&str, Value)]) -> Value {
    let mut c = tat_claims(user);
    let m = c.as_object_mut().unwrap();
    for (k, v) in changes {
        if v.is_null() {
            m.remove(*k);
        } else {
            m.insert((*k).to_owned(), v.clone());
        }
    }
    c
}

/// A second token profile accepting the same tokens as "default" (issuer, audience, key).
fn profile_toml(id: &str, more: &str) -> String {
    format!(
        r#"
[[token_profiles]]
id = "{id}"
issuer = "{TAT_ISS}"
audience = "{TAT_AUD}"
public_key_pem_file = "tat_public.pem"
algorithms = ["ES256"]
{more}
"#
    )
}

/// A fresh key for a JWKS: signing keys (PKCS#8 PEM) and its public JWK with `kid`.
fn jwk_key(alg: SigningAlg) -> (TatKeys, Value, String) {
    let (key, der) = SigningKey::generate(alg).unwrap();
    let private_pem = pem::encode(&pem::Pem::new("PRIVATE KEY", der));
    let alg = match alg {
        SigningAlg::RS256 => Algorithm::RS256,
        SigningAlg::ES256 => Algorithm::ES256,
        SigningAlg::EdDSA => panic!("not used here"),
    };
    (
        TatKeys {
            private_pem,
            public_pem: String::new(),
            alg,
        },
        key.public_jwk.clone(),
        key.kid.clone(),
    )
}

fn header_with_kid(alg: Algorithm, kid: &str) -> Header {
    let mut h = Header::new(alg);
    h.kid = Some(kid.to_owned());
    h
}

/// A tiny identity provider on loopback serving `/jwks.json` from shared state, counting hits.
struct JwksServer {
    url: String,
    body: Arc<Mutex<Value>>,
    hits: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(initial: Value) -> JwksServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let body = Arc::new(Mutex::new(initial));
        let hits = Arc::new(AtomicUsize::new(0));
        let (b, h) = (body.clone(), hits.clone());
        let app = axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                let (b, h) = (b.clone(), h.clone());
                async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    let v = b.lock().unwrap().clone();
                    axum::Json(v)
                }
            }),
        );
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        JwksServer {
            url: format!("http://127.0.0.1:{port}/jwks.json"),
            body,
            hits,
        }
    }

    fn set(&self, v: Value) {
        *self.body.lock().unwrap() = v;
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

const IDP_ISS: &str = "https://idp.example.test/";

fn jwks_profile_toml(id: &str, url: &str) -> String {
    format!(
        r#"
[[token_profiles]]
id = "{id}"
issuer = "{IDP_ISS}"
audience = "{TAT_AUD}"
jwks_url = "{url}"
algorithms = ["ES256", "RS256"]
"#
    )
}

fn idp_claims(user: &str) -> Value {
    claims_with(user, &[("iss", json!(IDP_ISS))])
}

// ------------------------------------------------------------------------------------------
// signature and algorithm

async fn alg_none_is_refused(b: Backend) {
    let s = Setup::new(b).start().await;
    let payload = b64_json(&tat_claims("mallory"));
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = b64_json(&json!({"alg": alg, "typ": "JWT"}));
        // empty signature, as RFC 7519 §6.1 unsecured JWTs have
        let r = s.attest(&format!("{header}.{payload}.")).await;
        bad_tat(&r, &["alg", &format!("'{alg}'"), "ES256"]);
        // and with a signature taken from a real token
        let real = s.keys.tat("mallory");
        let sig = real.rsplit('.').next().unwrap();
        let r = s.attest(&format!("{header}.{payload}.{sig}")).await;
        bad_tat(&r, &["alg", &format!("'{alg}'")]);
    }
    // no alg at all
    let header = b64_json(&json!({"typ": "JWT"}));
    let r = s.attest(&format!("{header}.{payload}.")).await;
    bad_tat(&r, &["alg"]);
}

async fn hs256_keyed_with_the_public_key_pem_is_refused(b: Backend) {
    // The classic key-confusion attack: the public key is public, so an attacker HMACs with it
    // and hopes the verifier uses the configured "key" as an HMAC secret.
    let s = Setup::new(b).start().await;
    let pem = s.keys.public_pem.clone();
    let pem_variants = [pem.clone(), pem.trim_end().to_owned()];
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        for secret in &pem_variants {
            let tat = jsonwebtoken::encode(
                &Header::new(alg),
                &tat_claims("mallory"),
                &EncodingKey::from_secret(secret.as_bytes()),
            )
            .unwrap();
            let r = s.attest(&tat).await;
            bad_tat(&r, &["alg", &format!("'{alg:?}'"), "ES256"]);
        }
    }
    let (status, _) = s
        .post_json(
            "/v1/sessions/attest",
            None,
            &json!({"token": s.keys.tat("legit"), "profile_id": "default"}),
        )
        .await;
    assert_eq!(status, 200, "a genuine token still works");
}

async fn alg_must_be_one_the_profile_allows(b: Backend) {
    // ES256-only profile: an RS256 token (validly signed by an RSA key) is refused.
    let s = Setup::new(b.clone()).start().await;
    let rsa = TatKeys::rs256();
    let r = s.attest(&rsa.tat("mallory")).await;
    bad_tat(&r, &["alg", "'RS256'", "'default'", "ES256"]);
    // other algorithms of the same family as the key, not listed, are refused too
    for alg in ["ES384", "PS256", "EdDSA"] {
        let real = s.keys.tat("mallory");
        let mut parts = real.split('.');
        parts.next();
        let rest: Vec<&str> = parts.collect();
        let header = b64_json(&json!({"alg": alg, "typ": "JWT"}));
        let r = s.attest(&format!("{header}.{}", rest.join("."))).await;
        bad_tat(&r, &["alg", &format!("'{alg}'")]);
    }
    // and the genuine ES256 token is fine
    accepted(&s.attest(&s.keys.tat("ann")).await, "ann");

    // RS256-only profile on a second server: an ES256 token is refused.
    let mut setup = Setup::new(b);
    setup.keys = TatKeys::rs256();
    setup.profile_algorithms = vec!["RS256".into()];
    let rs = setup.start().await;
    accepted(&rs.attest(&rs.keys.tat("ann")).await, "ann");
    let ec = TatKeys::es256();
    let r = rs.attest(&ec.tat("mallory")).await;
    bad_tat(&r, &["alg", "'ES256'", "RS256"]);
    // PS256 with the right RSA key is still a different algorithm than the one allowed
    let ps = rs
        .keys
        .sign_with_header(Header::new(Algorithm::PS256), &tat_claims("m"));
    bad_tat(&rs.attest(&ps).await, &["alg", "'PS256'"]);
    // HS256 keyed with the RSA public key PEM
    let tat = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &tat_claims("mallory"),
        &EncodingKey::from_secret(rs.keys.public_pem.as_bytes()),
    )
    .unwrap();
    bad_tat(&rs.attest(&tat).await, &["alg", "'HS256'"]);
}

async fn signature_by_another_key_is_refused(b: Backend) {
    let s = Setup::new(b).start().await;
    let other = TatKeys::es256();
    let r = s.attest(&other.tat("mallory")).await;
    bad_tat(&r, &["signature", "'default'"]);
    // ... even when the header carries the attacker's own key (jwk) or points at it (jku, x5u):
    // a PEM profile has exactly one key and takes none from the token.
    let (_, attacker_jwk, attacker_kid) = jwk_key(SigningAlg::ES256);
    let (attacker, _, _) = jwk_key(SigningAlg::ES256);
    let mut h = header_with_kid(Algorithm::ES256, &attacker_kid);
    h.jwk = Some(serde_json::from_value(attacker_jwk).unwrap());
    h.jku = Some("http://127.0.0.1:1/jwks.json".into());
    h.x5u = Some("http://127.0.0.1:1/cert.pem".into());
    let r = s
        .attest(&attacker.sign_with_header(h, &tat_claims("mallory")))
        .await;
    bad_tat(&r, &["signature"]);
    // the signature of one genuine token on another genuine payload
    let t1 = s.keys.tat("ann");
    let t2 = s.keys.tat("mallory");
    let p1: Vec<&str> = t1.split('.').collect();
    let p2: Vec<&str> = t2.split('.').collect();
    let r = s.attest(&format!("{}.{}.{}", p2[0], p2[1], p1[2])).await;
    bad_tat(&r, &["signature"]);
    // an empty signature with a real alg
    let r = s.attest(&format!("{}.{}.", p2[0], p2[1])).await;
    bad_tat(&r, &["signature"]);
    // a genuinely signed token whose header demands an extension (RFC 7515 crit) is refused:
    // Consentry understands none, so it must not pretend to
    let mut h = json!({"alg": "ES256", "typ": "JWT", "crit": ["exp"]});
    let input = format!("{}.{}", b64_json(&h), b64_json(&tat_claims("ann")));
    let t = jsonwebtoken::crypto::sign(input.as_bytes(), &s.keys.encoding_key(), Algorithm::ES256)
        .unwrap();
    bad_tat(&s.attest(&format!("{input}.{t}")).await, &["crit"]);
    h["crit"] = json!(["b64"]);
    h["b64"] = json!(false);
    let claims = tat_claims("ann").to_string();
    let signing_input = format!("{}.{claims}", b64_json(&h));
    let t = jsonwebtoken::crypto::sign(
        signing_input.as_bytes(),
        &s.keys.encoding_key(),
        Algorithm::ES256,
    )
    .unwrap();
    bad_tat(
        &s.attest(&format!("{}.{}.{t}", b64_json(&h), b64(claims.as_bytes())))
            .await,
        &["crit"],
    );
}

async fn tampered_payload_is_refused(b: Backend) {
    let s = Setup::new(b).start().await;
    let real = s.keys.tat("ann");
    let parts: Vec<&str> = real.split('.').collect();
    // re-encode the payload with a different user, keep header and signature
    let mut claims = jwt_claims(&real);
    claims["sub"] = json!("admin");
    claims["roles"] = json!(["admin"]);
    let forged = format!("{}.{}.{}", parts[0], b64_json(&claims), parts[2]);
    bad_tat(&s.attest(&forged).await, &["signature"]);
    // flip one character in the middle of the payload
    let mut p = parts[1].as_bytes().to_vec();
    let i = p.len() / 2;
    p[i] = if p[i] == b'A' { b'B' } else { b'A' };
    let flipped = format!(
        "{}.{}.{}",
        parts[0],
        String::from_utf8(p).unwrap(),
        parts[2]
    );
    let r = s.attest(&flipped).await;
    assert_eq!(r.0, 401, "{}", r.1);
    assert_eq!(r.1["error"], "invalid_trusted_auth_token");
    // flip one character of the signature
    let mut sig = parts[2].as_bytes().to_vec();
    sig[5] = if sig[5] == b'A' { b'B' } else { b'A' };
    let r = s
        .attest(&format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            String::from_utf8(sig).unwrap()
        ))
        .await;
    bad_tat(&r, &["signature"]);
    // the untouched token is still good
    accepted(&s.attest(&real).await, "ann");
}

async fn malformed_tokens_are_refused_and_the_server_stays_up(b: Backend) {
    let s = Setup::new(b).start().await;
    let real = s.keys.tat("ann");
    let parts: Vec<&str> = real.split('.').collect();
    let padded = {
        let mut c = tat_claims("ann");
        c["padding"] = json!("x".repeat(20 * 1024));
        s.keys.sign(&c)
    };
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        ("empty", String::new(), vec!["empty"]),
        ("whitespace", "   ".into(), vec!["empty"]),
        ("garbage", "garbage".into(), vec!["JWS compact"]),
        (
            "2 parts",
            format!("{}.{}", parts[0], parts[1]),
            vec!["JWS compact"],
        ),
        ("4 parts", format!("{real}.AAAA"), vec!["JWS compact"]),
        (
            "5 parts (JWE)",
            format!("{real}.AAAA.BBBB"),
            vec!["JWS compact"],
        ),
        ("dots only", "..".into(), vec!["header"]),
        ("non-base64", "!!!.@@@.###".into(), vec!["header"]),
        (
            "non-base64 payload",
            format!("{}.%%%.{}", parts[0], parts[2]),
            vec!["trusted auth token"],
        ),
        (
            "non-base64 signature",
            format!("{}.{}.***", parts[0], parts[1]),
            vec!["trusted auth token"],
        ),
        (
            "header is a JSON array",
            format!("{}.{}.{}", b64(b"[1,2]"), parts[1], parts[2]),
            vec!["header"],
        ),
        (
            "header is not JSON",
            format!("{}.{}.{}", b64(b"\xff\xfe"), parts[1], parts[2]),
            vec!["header"],
        ),
        (
            "payload is not JSON",
            format!("{}.{}.{}", parts[0], b64(b"not json"), parts[2]),
            vec!["trusted auth token"],
        ),
        ("20 KB of a", "a".repeat(20 * 1024), vec!["16384 bytes"]),
        ("20 KB signed token", padded, vec!["16384 bytes"]),
        ("unicode", "é.é.é".into(), vec!["header"]),
    ];
    for (what, tat, mentions) in &cases {
        let (status, body) = s.attest(tat).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(
            body["error"], "invalid_trusted_auth_token",
            "{what}: {body}"
        );
        let desc = body["error_description"].as_str().unwrap_or("");
        for m in mentions {
            assert!(desc.contains(m), "{what}: should mention {m:?}: {desc}");
        }
    }
    // a token that is a JSON number / object instead of a string → 400 naming the field
    let (status, body) = s
        .post_json(
            "/v1/sessions/attest",
            None,
            &json!({"token": {"alg": "none"}, "profile_id": "default"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_request");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("token"),
        "{body}"
    );
    assert_healthy(&s).await;
    accepted(&s.attest(&real).await, "ann");
}

// ------------------------------------------------------------------------------------------
// claims

async fn iss_must_equal_the_profile_issuer(b: Backend) {
    let s = Setup::new(b).start().await;
    for (iss, shown) in [
        (json!("urn:test:evil"), "'urn:test:evil'"),
        (json!("urn:test:issuer/"), "'urn:test:issuer/'"),
        (json!("URN:TEST:ISSUER"), "'URN:TEST:ISSUER'"),
        (json!(""), "''"),
        (Value::Null, "(missing)"),
        (json!(["urn:test:issuer"]), "(missing)"),
    ] {
        let tat = s.keys.sign(&claims_with("ann", &[("iss", iss.clone())]));
        bad_tat(
            &s.attest(&tat).await,
            &["iss", shown, &format!("'{TAT_ISS}'")],
        );
    }
}

async fn aud_must_be_or_contain_the_profile_audience(b: Backend) {
    let s = Setup::new(b).start().await;
    for aud in [
        json!("urn:test:other"),
        json!(["urn:test:other", "urn:test:another"]),
        json!([]),
        json!(""),
        json!("urn:test:audience "),
        Value::Null,
    ] {
        let tat = s.keys.sign(&claims_with("ann", &[("aud", aud.clone())]));
        bad_tat(&s.attest(&tat).await, &["aud", &format!("'{TAT_AUD}'")]);
    }
    // an array containing the right audience is fine (RFC 7519 §4.1.3)
    let tat = s.keys.sign(&claims_with(
        "ann",
        &[("aud", json!(["urn:test:other", TAT_AUD]))],
    ));
    accepted(&s.attest(&tat).await, "ann");
}

async fn exp_is_required_and_enforced_with_60s_leeway(b: Backend) {
    let s = Setup::new(b).start().await;
    let n = now();
    // missing
    let tat = s.keys.sign(&claims_with("ann", &[("exp", Value::Null)]));
    bad_tat(&s.attest(&tat).await, &["exp"]);
    // not a NumericDate
    for bad in [json!("9999999999"), json!(true), json!([n + 300])] {
        let tat = s.keys.sign(&claims_with("ann", &[("exp", bad)]));
        bad_tat(&s.attest(&tat).await, &["exp", "NumericDate"]);
    }
    // 120 s in the past: beyond the 60 s leeway
    let tat = s.keys.sign(&claims_with(
        "ann",
        &[("exp", json!(n - 120)), ("iat", json!(n - 400))],
    ));
    bad_tat(&s.attest(&tat).await, &["exp", &(n - 120).to_string()]);
    // 30 s in the past: within the leeway
    let tat = s.keys.sign(&claims_with(
        "ann",
        &[("exp", json!(n - 30)), ("iat", json!(n - 300))],
    ));
    accepted(&s.attest(&tat).await, "ann");
}

async fn nbf_in_the_future_beyond_leeway_is_refused(b: Backend) {
    let s = Setup::new(b).start().await;
    let n = now();
    let tat = s.keys.sign(&claims_with("ann", &[("nbf", json!(n + 120))]));
    bad_tat(&s.attest(&tat).await, &["nbf", &(n + 120).to_string()]);
    let tat = s.keys.sign(&claims_with("ann", &[("nbf", json!("soon"))]));
    bad_tat(&s.attest(&tat).await, &["nbf", "NumericDate"]);
    let tat = s.keys.sign(&claims_with("ann", &[("nbf", json!(n + 30))]));
    accepted(&s.attest(&tat).await, "ann");
}

async fn iat_in_the_future_beyond_leeway_is_refused(b: Backend) {
    let s = Setup::new(b).start().await;
    let n = now();
    let tat = s.keys.sign(&claims_with(
        "ann",
        &[("iat", json!(n + 120)), ("exp", json!(n + 300))],
    ));
    bad_tat(&s.attest(&tat).await, &["iat", &(n + 120).to_string()]);
    let tat = s.keys.sign(&claims_with(
        "ann",
        &[("iat", json!(n + 30)), ("exp", json!(n + 300))],
    ));
    accepted(&s.attest(&tat).await, "ann");
}

async fn lifetime_over_max_lifetime_seconds_is_refused(b: Backend) {
    let s = Setup::new(b).start().await;
    let n = now();
    // exp - iat = 2000 > 900
    let tat = s.keys.sign(&claims_with(
        "ann",
        &[("iat", json!(n)), ("exp", json!(n + 2000))],
    ));
    bad_tat(
        &s.attest(&tat).await,
        &["lifetime", "max_lifetime_seconds", "900", "'default'"],
    );
    // without iat the lifetime is counted from now
    let tat = s.keys.sign(&claims_with(
        "ann",
        &[("iat", Value::Null), ("exp", json!(n + 2000))],
    ));
    bad_tat(&s.attest(&tat).await, &["max_lifetime_seconds"]);
    // an old iat with a still-valid exp: the token lived too long
    let tat = s.keys.sign(&claims_with(
        "ann",
        &[("iat", json!(n - 1000)), ("exp", json!(n + 100))],
    ));
    bad_tat(&s.attest(&tat).await, &["max_lifetime_seconds"]);
    // a 900 s lifetime is exactly allowed
    let tat = s.keys.sign(&claims_with(
        "ann",
        &[("iat", json!(n)), ("exp", json!(n + 900))],
    ));
    accepted(&s.attest(&tat).await, "ann");
}

async fn extreme_numeric_dates_are_refused_not_crashed(b: Backend) {
    // Arithmetic on attacker-chosen NumericDates must not overflow: in a debug build that is a
    // panic (500), in release it wraps and a wrapped lifetime could pass max_lifetime_seconds.
    let s = Setup::new(b).start().await;
    let n = now();
    let cases: Vec<(&str, Value, Vec<&str>)> = vec![
        (
            "iat = i64::MIN",
            claims_with("ann", &[("iat", json!(i64::MIN)), ("exp", json!(n + 300))]),
            vec!["max_lifetime_seconds"],
        ),
        (
            "iat = i64::MIN, exp = i64::MAX",
            claims_with("ann", &[("iat", json!(i64::MIN)), ("exp", json!(i64::MAX))]),
            vec!["max_lifetime_seconds"],
        ),
        (
            "exp = i64::MAX",
            claims_with("ann", &[("exp", json!(i64::MAX))]),
            vec!["max_lifetime_seconds"],
        ),
        (
            "exp = u64::MAX",
            claims_with("ann", &[("exp", json!(u64::MAX))]),
            vec!["max_lifetime_seconds"],
        ),
        (
            "exp = 1e300",
            claims_with("ann", &[("exp", json!(1e300))]),
            vec!["max_lifetime_seconds"],
        ),
        (
            "exp = i64::MIN",
            claims_with("ann", &[("exp", json!(i64::MIN))]),
            vec!["exp"],
        ),
        (
            "exp = -1e300",
            claims_with("ann", &[("exp", json!(-1e300))]),
            vec!["exp"],
        ),
        (
            "nbf = i64::MAX",
            claims_with("ann", &[("nbf", json!(i64::MAX))]),
            vec!["nbf"],
        ),
        (
            "iat = i64::MAX",
            claims_with("ann", &[("iat", json!(i64::MAX))]),
            vec!["iat"],
        ),
    ];
    for (what, claims, mentions) in &cases {
        let (status, body) = s.attest(&s.keys.sign(claims)).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(
            body["error"], "invalid_trusted_auth_token",
            "{what}: {body}"
        );
        let desc = body["error_description"].as_str().unwrap_or("");
        for m in mentions {
            assert!(desc.contains(m), "{what}: should mention {m:?}: {desc}");
        }
    }
    // nbf far in the past and a fractional exp are harmless
    let tat = s.keys.sign(&claims_with(
        "ann",
        &[("nbf", json!(i64::MIN)), ("exp", json!(n as f64 + 300.5))],
    ));
    accepted(&s.attest(&tat).await, "ann");
    assert_healthy(&s).await;
}

async fn user_id_claim_is_required(b: Backend) {
    let s = Setup::new(b).start().await;
    for sub in [
        Value::Null,
        json!(""),
        json!("   "),
        json!(["ann"]),
        json!({"id": "ann"}),
        json!(true),
        json!("x".repeat(256)),
    ] {
        let tat = s.keys.sign(&claims_with("ann", &[("sub", sub.clone())]));
        bad_tat(&s.attest(&tat).await, &["user id", "'sub'"]);
    }
    // 255 bytes is the most
    let long = "x".repeat(255);
    accepted(
        &s.attest(&s.keys.sign(&claims_with("ann", &[("sub", json!(long))])))
            .await,
        &long,
    );
}

async fn jti_is_single_use_across_attest_and_one_round_trip_start(b: Backend) {
    let s = Setup::new(b).start().await;
    let pkce = Pkce::new();
    let tat = s.keys.tat("ann");
    let jti = jwt_claims(&tat)["jti"].as_str().unwrap().to_owned();
    accepted(&s.attest(&tat).await, "ann");
    bad_tat(
        &s.attest(&tat).await,
        &["jti", &format!("'{jti}'"), "already used"],
    );
    // the same used token through the one-round-trip start form
    let mut body = params(&pkce, "notes:read");
    body["trusted_auth_token"] = json!(tat);
    body["profile_id"] = json!("default");
    let r = s.post_json("/v1/oauth/authorize/start", None, &body).await;
    bad_tat(&r, &["jti", &format!("'{jti}'")]);

    // and the other way round: first used by start, then refused by attest and start
    let tat2 = s.keys.tat("bob");
    body["trusted_auth_token"] = json!(tat2);
    let (status, st) = s.post_json("/v1/oauth/authorize/start", None, &body).await;
    assert_eq!(status, 200, "{st}");
    let r = s.post_json("/v1/oauth/authorize/start", None, &body).await;
    bad_tat(&r, &["jti"]);
    bad_tat(&s.attest(&tat2).await, &["jti"]);

    // the jti is what is single use: a different token reusing a jti is refused too
    let tat3 = s.keys.sign(&claims_with("carl", &[("jti", json!(jti))]));
    bad_tat(&s.attest(&tat3).await, &["jti"]);
    // a malformed jti
    for bad in [json!(""), json!(42), json!("j".repeat(256))] {
        let t = s.keys.sign(&claims_with("ann", &[("jti", bad)]));
        bad_tat(&s.attest(&t).await, &["jti"]);
    }
}

async fn jti_is_single_use_across_profiles_of_one_issuer(b: Backend) {
    // Two profiles trusting the same issuer: a token used on one is a replay on the other.
    let s = Setup::new(b)
        .extra(&profile_toml("second", ""))
        .start()
        .await;
    let tat = s.keys.tat("ann");
    accepted(&s.attest(&tat).await, "ann");
    bad_tat(
        &attest_as(&s, "second", &tat, None).await,
        &["jti", "already used"],
    );
}

async fn single_use_jti_false_profile_accepts_reuse(b: Backend) {
    let s = Setup::new(b)
        .extra(&profile_toml("reusable", "single_use_jti = false"))
        .start()
        .await;
    let tat = s.keys.tat("ann");
    for _ in 0..3 {
        accepted(&attest_as(&s, "reusable", &tat, None).await, "ann");
    }
    // the default profile still enforces single use on the same token
    accepted(&s.attest(&tat).await, "ann");
    bad_tat(&s.attest(&tat).await, &["jti"]);
    // and reuse does not lift any other rule
    let expired = s.keys.sign(&claims_with(
        "ann",
        &[("exp", json!(now() - 120)), ("iat", json!(now() - 400))],
    ));
    bad_tat(&attest_as(&s, "reusable", &expired, None).await, &["exp"]);
}

async fn unknown_profile_id_is_400_listing_the_configured_ones(b: Backend) {
    let s = Setup::new(b)
        .extra(&profile_toml("reusable", "single_use_jti = false"))
        .start()
        .await;
    for pid in ["nope", "", "DEFAULT", "default "] {
        let r = attest_as(&s, pid, &s.keys.tat("ann"), None).await;
        refused(
            &r,
            400,
            "invalid_request",
            &["profile_id", &format!("'{pid}'"), "'default'", "'reusable'"],
        );
    }
    // the one-round-trip start form too
    let pkce = Pkce::new();
    let mut body = params(&pkce, "notes:read");
    body["trusted_auth_token"] = json!(s.keys.tat("ann"));
    body["profile_id"] = json!("nope");
    let r = s.post_json("/v1/oauth/authorize/start", None, &body).await;
    refused(
        &r,
        400,
        "invalid_request",
        &["profile_id", "'nope'", "'default'"],
    );
    // profile_id missing from attest → 400 naming it
    let (status, e) = s
        .post_json(
            "/v1/sessions/attest",
            None,
            &json!({"token": s.keys.tat("ann")}),
        )
        .await;
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"], "invalid_request");
    assert!(
        e["error_description"]
            .as_str()
            .unwrap()
            .contains("profile_id"),
        "{e}"
    );
}

async fn jit_provisioning_false_refuses_unknown_users_and_accepts_known_ones(b: Backend) {
    let s = Setup::new(b)
        .extra(&profile_toml("strict", "jit_provisioning = false"))
        .start()
        .await;
    let user = format!("newcomer-{}", random_id());
    let r = attest_as(&s, "strict", &s.keys.tat(&user), None).await;
    refused(
        &r,
        403,
        "access_denied",
        &[&format!("'{user}'"), "jit_provisioning", "'strict'"],
    );
    // the refusal did not create the user: still refused with a fresh token
    let r = attest_as(&s, "strict", &s.keys.tat(&user), None).await;
    refused(&r, 403, "access_denied", &["jit_provisioning"]);
    // the one-round-trip start form refuses too, and hands out no session
    let pkce = Pkce::new();
    let mut body = params(&pkce, "notes:read");
    body["trusted_auth_token"] = json!(s.keys.tat(&user));
    body["profile_id"] = json!("strict");
    let r = s.post_json("/v1/oauth/authorize/start", None, &body).await;
    refused(&r, 403, "access_denied", &["jit_provisioning"]);
    assert!(r.1.get("session_token").is_none());

    // once provisioned through the JIT profile, the strict profile accepts them
    accepted(&s.attest(&s.keys.tat(&user)).await, &user);
    let mut claims = tat_claims(&user);
    claims["email"] = json!("changed@example.com");
    let r = attest_as(&s, "strict", &s.keys.sign(&claims), None).await;
    accepted(&r, &user);
    assert_eq!(r.1["user"]["email"], "changed@example.com");
    let session = r.1["session_token"].as_str().unwrap();
    let (status, st) = s.start_flow(session, &params(&pkce, "notes:read")).await;
    assert_eq!(status, 200, "{st}");
    assert_eq!(st["user"]["email"], "changed@example.com");
}

async fn claims_mapping_reads_user_id_and_roles_from_configured_claims(b: Backend) {
    let s = Setup::new(b)
        .extra(&profile_toml(
            "seed",
            "[token_profiles.claims]\nuser_id = \"userId\"",
        ))
        .start()
        .await;
    let n = now();
    // the seed product's token shape
    let claims = json!({
        "iss": TAT_ISS, "aud": TAT_AUD, "iat": n, "exp": n + 300, "jti": random_id(),
        "userId": "user-42", "email": "seed@example.com", "roles": ["admin", "user"],
    });
    let (status, att) = attest_as(&s, "seed", &s.keys.sign(&claims), None).await;
    assert_eq!(status, 200, "{att}");
    assert_eq!(att["user"]["user_id"], "user-42");
    assert_eq!(att["user"]["email"], "seed@example.com");
    assert_eq!(att["user"]["roles"], json!(["admin", "user"]));
    // the roles reach the consent screen: admin may grant notes:admin
    let pkce = Pkce::new();
    let (status, st) = s
        .start_flow(
            att["session_token"].as_str().unwrap(),
            &params(&pkce, "notes:admin"),
        )
        .await;
    assert_eq!(status, 200, "{st}");
    assert_eq!(st["user"]["user_id"], "user-42");
    assert_eq!(st["scope_results"][0]["is_grantable"], true, "{st}");
    // numeric user ids are accepted as their decimal text
    let mut numeric = claims.clone();
    numeric["userId"] = json!(4242);
    numeric["jti"] = json!(random_id());
    accepted(
        &attest_as(&s, "seed", &s.keys.sign(&numeric), None).await,
        "4242",
    );
    // on this profile `sub` is not the user id: a token with only sub is refused naming userId
    let mut only_sub = claims.clone();
    only_sub.as_object_mut().unwrap().remove("userId");
    only_sub["sub"] = json!("user-42");
    only_sub["jti"] = json!(random_id());
    bad_tat(
        &attest_as(&s, "seed", &s.keys.sign(&only_sub), None).await,
        &["'userId'"],
    );
    // and the default profile (user id in sub) refuses the seed shape naming sub
    let mut c = claims.clone();
    c["jti"] = json!(random_id());
    bad_tat(&s.attest(&s.keys.sign(&c)).await, &["'sub'"]);
}

// ------------------------------------------------------------------------------------------
// sessions

async fn session_duration_minutes_must_be_within_1_and_max(b: Backend) {
    let s = Setup::new(b).start().await;
    for m in [0u32, 61, 1441, u32::MAX] {
        let r = attest_as(&s, "default", &s.keys.tat("ann"), Some(m)).await;
        refused(
            &r,
            400,
            "invalid_request",
            &["session_duration_minutes", &m.to_string(), "1..=60"],
        );
    }
    // not a u32 at all → 400 naming the field
    for bad in [json!(-1), json!(1.5), json!("10"), json!(1u64 << 40)] {
        let (status, e) = s
            .post_json(
                "/v1/sessions/attest",
                None,
                &json!({"token": s.keys.tat("ann"), "profile_id": "default",
                        "session_duration_minutes": bad}),
            )
            .await;
        assert_eq!(status, 400, "{bad}: {e}");
        assert_eq!(e["error"], "invalid_request");
        assert!(
            e["error_description"]
                .as_str()
                .unwrap()
                .contains("session_duration_minutes"),
            "{e}"
        );
    }
    // the one-round-trip start form checks it too
    let pkce = Pkce::new();
    let mut body = params(&pkce, "notes:read");
    body["trusted_auth_token"] = json!(s.keys.tat("ann"));
    body["profile_id"] = json!("default");
    body["session_duration_minutes"] = json!(61);
    let r = s.post_json("/v1/oauth/authorize/start", None, &body).await;
    refused(&r, 400, "invalid_request", &["session_duration_minutes"]);
    // the bounds themselves are fine
    for (m, secs) in [(1, 60), (60, 3600)] {
        let before = now();
        let (status, att) = attest_as(&s, "default", &s.keys.tat("ann"), Some(m)).await;
        assert_eq!(status, 200, "{att}");
        let exp = att["expires_at"].as_i64().unwrap();
        assert!(
            (before + secs..=now() + secs).contains(&exp),
            "{m} min → {exp}"
        );
    }
}

async fn tampered_session_token_is_invalid_session(b: Backend) {
    let s = Setup::new(b).start().await;
    let pkce = Pkce::new();
    let p = params(&pkce, "notes:read");
    let session = s.session("ann").await;
    let (status, _) = s.start_flow(&session, &p).await;
    assert_eq!(status, 200);
    let (payload, tag) = session
        .strip_prefix("cys_")
        .unwrap()
        .split_once('.')
        .unwrap();
    let flip = |s: &str, i: usize| {
        let mut b = s.as_bytes().to_vec();
        b[i] = if b[i] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).unwrap()
    };
    // extend the session: re-encode the payload with a later expiry, keep the tag
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["e"] = json!(now() + 86_400 * 365);
    claims["u"] = json!("admin");
    let forged = format!("cys_{}.{tag}", b64_json(&claims));
    let tampered = [
        format!("cys_{}.{tag}", flip(payload, payload.len() / 2)),
        format!("cys_{payload}.{}", flip(tag, 3)),
        forged,
        format!("cys_{payload}."),
        format!("cys_{payload}"),
        format!("cys_.{tag}"),
        format!("{payload}.{tag}"),
        format!("cyc_{payload}.{tag}"),
        format!("cys_{payload}.{tag}{tag}"),
        "cys_".into(),
        "garbage".into(),
    ];
    for t in &tampered {
        let r = s.submit(t, &p, true).await;
        refused(&r, 401, "invalid_session", &["session"]);
        let r = s.start_flow(t, &p).await;
        refused(&r, 401, "invalid_session", &["session"]);
    }
    // the genuine one still works
    let (status, body) = s.submit(&session, &p, true).await;
    assert_eq!(status, 200, "{body}");
}

async fn session_token_from_another_server_is_invalid_session(b: Backend) {
    // Another instance with its own database has its own session HMAC key.
    let s = Setup::new(b.clone()).start().await;
    let mut other_setup = Setup::new(b);
    other_setup.keys = s.keys.clone();
    let other = other_setup.start().await;
    let pkce = Pkce::new();
    let p = params(&pkce, "notes:read");
    let foreign = other.session("ann").await;
    // the user exists on `s` too, so only the key can refuse it
    let own = s.session("ann").await;
    let r = s.submit(&foreign, &p, true).await;
    refused(&r, 401, "invalid_session", &["session"]);
    let r = s.start_flow(&foreign, &p).await;
    refused(&r, 401, "invalid_session", &["session"]);
    let r = other.submit(&own, &p, true).await;
    refused(&r, 401, "invalid_session", &["session"]);
    assert_eq!(s.submit(&own, &p, true).await.0, 200);
    assert_eq!(other.submit(&foreign, &p, true).await.0, 200);
}

async fn missing_or_non_bearer_authorization_is_invalid_session(b: Backend) {
    let s = Setup::new(b).start().await;
    let pkce = Pkce::new();
    let mut body = params(&pkce, "notes:read");
    body["consent_granted"] = json!(true);
    let session = s.session("ann").await;
    let send = |auth: Option<String>, path: &'static str| {
        let mut req = s.http.post(s.url(path)).json(&body);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let www = r
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, r.json::<Value>().await.unwrap(), www)
        }
    };
    let basic = format!("Basic {}", base64_std(&format!("ann:{session}")));
    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("Basic", Some(basic)),
        ("Basic with the session", Some(format!("Basic {session}"))),
        ("no scheme", Some(session.clone())),
        ("Token scheme", Some(format!("Token {session}"))),
        ("Bearer without token", Some("Bearer".into())),
        ("Bearer empty", Some("Bearer ".into())),
        ("Bearer garbage", Some("Bearer not-a-session".into())),
    ];
    for path in ["/v1/oauth/authorize/submit", "/v1/oauth/authorize/start"] {
        for (what, auth) in &cases {
            let (status, e, www) = send(auth.clone(), path).await;
            assert_eq!(status, 401, "{path} {what}: {e}");
            assert_eq!(e["error"], "invalid_session", "{path} {what}: {e}");
            let desc = e["error_description"].as_str().unwrap();
            assert!(
                desc.contains("session") || desc.contains("Bearer"),
                "{path} {what}: {desc}"
            );
            assert!(
                www.as_deref()
                    .is_some_and(|w| w.starts_with("Bearer error=\"invalid_session\"")),
                "{path} {what}: WWW-Authenticate {www:?}"
            );
        }
    }
    // the scheme is case-insensitive (RFC 7235 §2.1)
    let (status, e, _) = send(
        Some(format!("bearer {session}")),
        "/v1/oauth/authorize/submit",
    )
    .await;
    assert_eq!(status, 200, "{e}");
}

fn base64_std(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

// ------------------------------------------------------------------------------------------
// JWKS-verified profile (the identity provider's keys)

async fn jwks_profile_verifies_by_kid_and_ignores_header_keys(b: Backend) {
    let (a_keys, a_jwk, a_kid) = jwk_key(SigningAlg::ES256);
    let (r_keys, r_jwk, r_kid) = jwk_key(SigningAlg::RS256);
    // noise a real identity provider publishes: an encryption key, an unsupported curve
    let noise = json!([
        {"kty": "RSA", "use": "enc", "alg": "RSA-OAEP", "kid": "enc-1",
         "n": r_jwk["n"], "e": r_jwk["e"]},
        {"kty": "OKP", "crv": "X25519", "kid": "x25519-1", "x": b64(&[7u8; 32])},
        {"kty": "EC", "crv": "secp256k1", "kid": "k1",
         "x": a_jwk["x"], "y": a_jwk["y"]},
    ]);
    let mut keys = vec![a_jwk.clone(), r_jwk.clone()];
    keys.extend(noise.as_array().unwrap().iter().cloned());
    let idp = JwksServer::start(json!({ "keys": keys })).await;
    let attacker_idp = JwksServer::start(json!({"keys": []})).await;
    let s = Setup::new(b)
        .top("token_profiles_share_users", "true")
        .extra(&jwks_profile_toml("idp", &idp.url))
        .start()
        .await;
    assert_eq!(idp.hits(), 0, "no JWKS fetch before a token needs it");

    let tat = a_keys.sign_with_header(
        header_with_kid(Algorithm::ES256, &a_kid),
        &idp_claims("jw-ann"),
    );
    accepted(&attest_as(&s, "idp", &tat, None).await, "jw-ann");
    let tat = r_keys.sign_with_header(
        header_with_kid(Algorithm::RS256, &r_kid),
        &idp_claims("jw-rob"),
    );
    accepted(&attest_as(&s, "idp", &tat, None).await, "jw-rob");
    assert_eq!(idp.hits(), 1, "the JWKS is cached");

    // unknown kid → refused naming the kid
    let tat = a_keys.sign_with_header(
        header_with_kid(Algorithm::ES256, "kid-nobody-knows"),
        &idp_claims("jw-ann"),
    );
    bad_tat(
        &attest_as(&s, "idp", &tat, None).await,
        &["kid", "'kid-nobody-knows'", &idp.url],
    );
    // the right kid, the wrong key
    let (attacker, attacker_jwk, _) = jwk_key(SigningAlg::ES256);
    let tat = attacker.sign_with_header(
        header_with_kid(Algorithm::ES256, &a_kid),
        &idp_claims("jw-ann"),
    );
    bad_tat(
        &attest_as(&s, "idp", &tat, None).await,
        &["signature", "'idp'"],
    );
    // an ES256 header on the RSA key's kid
    let tat = a_keys.sign_with_header(
        header_with_kid(Algorithm::ES256, &r_kid),
        &idp_claims("jw-ann"),
    );
    let r = attest_as(&s, "idp", &tat, None).await;
    bad_tat(&r, &["ES256", &format!("'{r_kid}'")]);
    // the token's own key (jwk) or key URL (jku) are never trusted
    attacker_idp.set(json!({"keys": [attacker_jwk.clone()]}));
    let mut h = header_with_kid(Algorithm::ES256, "attacker");
    h.jwk = Some(serde_json::from_value(attacker_jwk).unwrap());
    h.jku = Some(attacker_idp.url.clone());
    let tat = attacker.sign_with_header(h, &idp_claims("jw-ann"));
    bad_tat(
        &attest_as(&s, "idp", &tat, None).await,
        &["kid", "'attacker'"],
    );
    assert_eq!(attacker_idp.hits(), 0, "jku must never be fetched");
    // kid of the encryption key / of the unsupported curve
    for kid in ["enc-1", "k1", "x25519-1"] {
        let tat = r_keys.sign_with_header(
            header_with_kid(Algorithm::RS256, kid),
            &idp_claims("jw-ann"),
        );
        let r = attest_as(&s, "idp", &tat, None).await;
        assert_eq!(r.0, 401, "{kid}: {}", r.1);
        assert_eq!(r.1["error"], "invalid_trusted_auth_token", "{kid}");
    }
    // no kid and more than one candidate key → refused naming kid
    let tat = a_keys.sign(&idp_claims("jw-ann"));
    bad_tat(&attest_as(&s, "idp", &tat, None).await, &["kid"]);
    // the claim rules apply to JWKS profiles just the same
    let tat = a_keys.sign_with_header(
        header_with_kid(Algorithm::ES256, &a_kid),
        &claims_with("jw-ann", &[("iss", json!(TAT_ISS))]),
    );
    bad_tat(&attest_as(&s, "idp", &tat, None).await, &["iss", IDP_ISS]);
    // a token minted for the PEM profile is not accepted by the JWKS profile, and vice versa
    bad_tat(
        &attest_as(&s, "idp", &s.keys.tat("ann"), None).await,
        &["kid"],
    );
    let tat = a_keys.sign_with_header(
        header_with_kid(Algorithm::ES256, &a_kid),
        &claims_with("jw-ann", &[("iss", json!(TAT_ISS))]),
    );
    bad_tat(&s.attest(&tat).await, &["signature"]);
    assert_eq!(idp.hits(), 1, "made-up kids within 10 s caused no refetch");
}

async fn jwks_rotation_refetches_on_unknown_kid_at_most_once_per_10s(b: Backend) {
    let (a_keys, a_jwk, a_kid) = jwk_key(SigningAlg::ES256);
    let (b_keys, b_jwk, b_kid) = jwk_key(SigningAlg::ES256);
    let idp = JwksServer::start(json!({"keys": [a_jwk.clone()]})).await;
    let s = Setup::new(b)
        .top("token_profiles_share_users", "true")
        .extra(&jwks_profile_toml("idp", &idp.url))
        .start()
        .await;
    let with_kid = |keys: &TatKeys, kid: &str, user: &str| {
        keys.sign_with_header(header_with_kid(Algorithm::ES256, kid), &idp_claims(user))
    };

    // first use fetches the JWKS (key A only)
    accepted(
        &attest_as(&s, "idp", &with_kid(&a_keys, &a_kid, "rot-1"), None).await,
        "rot-1",
    );
    let first_fetch_done = Instant::now();
    assert_eq!(idp.hits(), 1);

    // the identity provider rotates: it now publishes A and B
    idp.set(json!({"keys": [a_jwk.clone(), b_jwk.clone()]}));
    // within 10 s of the last fetch an unknown kid causes no refetch, however many arrive
    let r = attest_as(&s, "idp", &with_kid(&b_keys, &b_kid, "rot-2"), None).await;
    bad_tat(&r, &["kid", &format!("'{b_kid}'")]);
    for i in 0..5 {
        let kid = format!("made-up-{i}");
        let r = attest_as(&s, "idp", &with_kid(&a_keys, &kid, "rot-x"), None).await;
        bad_tat(&r, &["kid", &format!("'{kid}'")]);
    }
    assert_eq!(idp.hits(), 1, "no refetch within 10 s of the last fetch");

    // after the window, the unknown kid B triggers one refetch and is accepted
    let wait = Duration::from_millis(10_500).saturating_sub(first_fetch_done.elapsed());
    tokio::time::sleep(wait).await;
    accepted(
        &attest_as(&s, "idp", &with_kid(&b_keys, &b_kid, "rot-2"), None).await,
        "rot-2",
    );
    assert_eq!(idp.hits(), 2, "exactly one refetch for the rotated kid");

    // a flood of made-up kids right after the refetch: still no more requests to the IdP
    for i in 0..5 {
        let kid = format!("flood-{i}");
        let r = attest_as(&s, "idp", &with_kid(&b_keys, &kid, "rot-x"), None).await;
        bad_tat(&r, &["kid", &format!("'{kid}'")]);
    }
    // both keys keep working from the cache
    accepted(
        &attest_as(&s, "idp", &with_kid(&a_keys, &a_kid, "rot-3"), None).await,
        "rot-3",
    );
    accepted(
        &attest_as(&s, "idp", &with_kid(&b_keys, &b_kid, "rot-4"), None).await,
        "rot-4",
    );
    assert_eq!(idp.hits(), 2, "refetched only once in all");
}

async fn jwks_unreachable_is_503_temporarily_unavailable(b: Backend) {
    // a loopback port with nothing listening
    let dead_port = free_port();
    let dead_url = format!("http://127.0.0.1:{dead_port}/jwks.json");
    // and an identity provider answering with an error / with something that is not a JWK Set
    let broken = JwksServer::start(json!({"not": "a jwk set"})).await;
    let s = Setup::new(b)
        .top("token_profiles_share_users", "true")
        .extra(&jwks_profile_toml("down", &dead_url))
        .extra(&jwks_profile_toml("broken", &broken.url))
        .start()
        .await;
    let (keys, _, kid) = jwk_key(SigningAlg::ES256);
    let tat = keys.sign_with_header(header_with_kid(Algorithm::ES256, &kid), &idp_claims("u"));
    for _ in 0..2 {
        let r = attest_as(&s, "down", &tat, None).await;
        refused(&r, 503, "temporarily_unavailable", &["JWKS", &dead_url]);
    }
    let r = attest_as(&s, "broken", &tat, None).await;
    refused(
        &r,
        503,
        "temporarily_unavailable",
        &["JWKS", &broken.url, "JWK Set"],
    );
    // the one-round-trip start form reports the same
    let pkce = Pkce::new();
    let mut body = params(&pkce, "notes:read");
    body["trusted_auth_token"] = json!(tat);
    body["profile_id"] = json!("down");
    let r = s.post_json("/v1/oauth/authorize/start", None, &body).await;
    refused(&r, 503, "temporarily_unavailable", &["JWKS"]);
    // a token fault is still reported as such before any fetch (alg checked first)
    let unsigned = format!(
        "{}.{}.",
        b64_json(&json!({"alg": "none"})),
        b64_json(&idp_claims("u"))
    );
    bad_tat(&attest_as(&s, "down", &unsigned, None).await, &["alg"]);
    // other profiles are unaffected
    accepted(&s.attest(&s.keys.tat("ann")).await, "ann");
    assert_healthy(&s).await;
}

// ------------------------------------------------------------------------------------------
// jti required, typ

/// Without a jti a token cannot be single use: a leaked ID token would attest again and again.
async fn single_use_jti_refuses_a_tat_without_jti(b: Backend) {
    let s = Setup::new(b)
        .extra(&profile_toml("no-jti", "single_use_jti = false"))
        .start()
        .await;
    let no_jti = s.keys.sign(&claims_with("nj", &[("jti", Value::Null)]));
    // the default profile has single_use_jti on (the default): refused, saying why, every time
    for _ in 0..2 {
        bad_tat(
            &s.attest(&no_jti).await,
            &["no jti", "single_use_jti", "'default'"],
        );
    }
    // the one-round-trip start form applies the same rule
    let pkce = Pkce::new();
    let mut body = params(&pkce, "notes:read");
    body["trusted_auth_token"] = json!(no_jti);
    body["profile_id"] = json!("default");
    let r = s.post_json("/v1/oauth/authorize/start", None, &body).await;
    bad_tat(&r, &["jti", "single_use_jti"]);
    // a profile that says single_use_jti = false accepts it, again and again: what that costs
    for _ in 0..2 {
        accepted(&attest_as(&s, "no-jti", &no_jti, None).await, "nj");
    }
    // and a token with a jti is accepted by the default profile
    accepted(&s.attest(&s.keys.tat("nj")).await, "nj");
}

/// Sign `claims` under a header given as JSON (for headers `jsonwebtoken::Header` cannot hold).
fn sign_raw_header(keys: &TatKeys, header: &Value, claims: &Value) -> String {
    let message = format!("{}.{}", b64_json(header), b64_json(claims));
    let sig =
        jsonwebtoken::crypto::sign(message.as_bytes(), &keys.encoding_key(), keys.alg).unwrap();
    format!("{message}.{sig}")
}

/// An access token (`at+jwt`) or a logout token (`logout+jwt`) from the same identity provider,
/// for the same audience, must not log anyone in.
async fn typ_must_be_absent_or_jwt_unless_allowed_types_says_otherwise(b: Backend) {
    let s = Setup::new(b)
        .extra(&profile_toml(
            "typed",
            r#"allowed_types = ["tat+jwt", "application/JWT"]"#,
        ))
        .start()
        .await;
    let with_typ = |user: &str, typ: Option<&str>| {
        let mut h = Header::new(Algorithm::ES256);
        h.typ = typ.map(str::to_owned);
        s.keys.sign_with_header(h, &tat_claims(user))
    };
    // default: no typ, or JWT in any case, with or without the application/ prefix
    let fine = [
        None,
        Some("JWT"),
        Some("jwt"),
        Some("application/jwt"),
        Some("Application/JWT"),
    ];
    for (i, typ) in fine.iter().enumerate() {
        let user = format!("ty{i}");
        accepted(&s.attest(&with_typ(&user, *typ)).await, &user);
    }
    // any other type is refused, naming it
    for typ in [
        "at+jwt",
        "application/at+jwt",
        "logout+jwt",
        "secevent+jwt",
        "JWS",
        "text/jwt",
        "",
    ] {
        bad_tat(
            &s.attest(&with_typ("ty-bad", Some(typ))).await,
            &["typ", &format!("'{typ}'"), "'default'", "'JWT'"],
        );
    }
    let five = sign_raw_header(
        &s.keys,
        &json!({"alg": "ES256", "typ": 5}),
        &tat_claims("ty-bad"),
    );
    bad_tat(&s.attest(&five).await, &["typ", "string"]);
    // allowed_types replaces the default: these types only, and a typ is required
    for (user, typ) in [
        ("ty5", "tat+jwt"),
        ("ty6", "application/TAT+JWT"),
        ("ty7", "JWT"),
    ] {
        accepted(
            &attest_as(&s, "typed", &with_typ(user, Some(typ)), None).await,
            user,
        );
    }
    bad_tat(
        &attest_as(&s, "typed", &with_typ("ty8", None), None).await,
        &["no typ", "'typed'", "allowed_types"],
    );
    bad_tat(
        &attest_as(&s, "typed", &with_typ("ty8", Some("at+jwt")), None).await,
        &["typ", "'at+jwt'", "'tat+jwt'", "'typed'"],
    );
}

// ------------------------------------------------------------------------------------------
// JWKS fetch: size cap on a streamed body, extra CA

/// An identity provider whose `/jwks.json` answers 200 with a chunked body that never ends.
async fn endless_jwks_host() -> (String, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
                if tcp.write_all(head).await.is_err() {
                    return;
                }
                let mut chunk = format!("{:x}\r\n", 16 * 1024).into_bytes();
                chunk.extend(std::iter::repeat_n(b' ', 16 * 1024));
                chunk.extend_from_slice(b"\r\n");
                while tcp.write_all(&chunk).await.is_ok() {
                    counter.fetch_add(16 * 1024, Ordering::SeqCst);
                }
            });
        }
    });
    (format!("http://127.0.0.1:{port}/jwks.json"), sent)
}

/// A chunked JWKS response without Content-Length is read only up to the cap (512 KiB), not
/// until the fetch times out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_endless_chunked_body_fails_fast_with_the_size_error() {
    let (url, sent) = endless_jwks_host().await;
    let s = Setup::new(Backend::Sqlite)
        .top("token_profiles_share_users", "true")
        .extra(&jwks_profile_toml("endless", &url))
        .start()
        .await;
    let (keys, _, kid) = jwk_key(SigningAlg::ES256);
    let tat = keys.sign_with_header(header_with_kid(Algorithm::ES256, &kid), &idp_claims("u"));
    let started = Instant::now();
    let r = attest_as(&s, "endless", &tat, None).await;
    let took = started.elapsed();
    refused(
        &r,
        503,
        "temporarily_unavailable",
        &["JWKS", &url, "larger than 524288 bytes"],
    );
    // The cap ended the fetch, not the 5 s request timeout (which the size error also proves).
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(sent.load(Ordering::SeqCst) > 0, "the host sent its body");
    assert_healthy(&s).await;
}

/// A test CA and a certificate it signed for 127.0.0.1.
fn pki() -> pki::TestPki {
    pki::TestPki::new("consentry internal IdP test CA", &["127.0.0.1"])
}

/// An identity provider on an internal CA: trusted through the top-level `extra_ca_file` (or
/// its alias `[cimd] extra_ca_file`), refused without.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_host_on_a_private_ca_is_trusted_with_extra_ca_file_only() {
    let pki = pki();
    let (keys, jwk, kid) = jwk_key(SigningAlg::ES256);
    let (port, served) =
        pki::json_tls_host(&pki, Arc::new(Mutex::new(json!({"keys": [jwk]})))).await;
    let url = format!("https://127.0.0.1:{port}/jwks.json");
    let ca_dir = tempfile::tempdir().unwrap();
    let ca_path = ca_dir.path().join("internal-ca.pem");
    std::fs::write(&ca_path, &pki.ca_pem).unwrap();
    let ca = format!("\"{}\"", ca_path.display());
    let tat = || {
        keys.sign_with_header(
            header_with_kid(Algorithm::ES256, &kid),
            &idp_claims("ca-user"),
        )
    };
    let setup = || {
        Setup::new(Backend::Sqlite)
            .top("token_profiles_share_users", "true")
            .extra(&jwks_profile_toml("internal", &url))
    };

    // without: the certificate is not trusted, nothing is served
    let s = setup().start().await;
    let r = attest_as(&s, "internal", &tat(), None).await;
    refused(&r, 503, "temporarily_unavailable", &["JWKS", &url]);
    assert_eq!(served.load(Ordering::SeqCst), 0);
    drop(s);

    // with the top-level extra_ca_file
    let s = setup().top("extra_ca_file", &ca).start().await;
    accepted(&attest_as(&s, "internal", &tat(), None).await, "ca-user");
    assert_eq!(served.load(Ordering::SeqCst), 1);
    drop(s);

    // with the alias alone, and with both naming the same file
    let alias = format!("\n[cimd]\nextra_ca_file = {ca}\n");
    let s = setup().extra(&alias).start().await;
    accepted(&attest_as(&s, "internal", &tat(), None).await, "ca-user");
    drop(s);
    let s = setup()
        .top("extra_ca_file", &ca)
        .extra(&alias)
        .start()
        .await;
    accepted(&attest_as(&s, "internal", &tat(), None).await, "ca-user");
    assert_eq!(served.load(Ordering::SeqCst), 3);
}

/// The top-level `extra_ca_file` is the CA of client metadata document fetches too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cimd_host_on_a_private_ca_is_trusted_with_the_top_level_extra_ca_file() {
    let pki = pki();
    let doc = Arc::new(Mutex::new(Value::Null));
    let (port, served) = pki::json_tls_host(&pki, doc.clone()).await;
    let client_id = format!("https://127.0.0.1:{port}/agent.json");
    *doc.lock().unwrap() = json!({
        "client_id": client_id,
        "client_name": "Internal Agent",
        "redirect_uris": ["http://127.0.0.1/callback"],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
    });
    let ca_dir = tempfile::tempdir().unwrap();
    let ca_path = ca_dir.path().join("internal-ca.pem");
    std::fs::write(&ca_path, &pki.ca_pem).unwrap();
    let allow = format!("\n[cimd]\nallow_hosts = [\"127.0.0.1:{port}\"]\n");
    let pkce = Pkce::new();
    let mut p = params(&pkce, "notes:read");
    p["client_id"] = json!(client_id);
    p["redirect_uri"] = json!("http://127.0.0.1:61234/callback");

    let s = Setup::new(Backend::Sqlite).extra(&allow).start().await;
    let session = s.session("cimd-ca").await;
    let (status, e) = s.start_flow(&session, &p).await;
    assert_eq!(status, 400, "untrusted certificate: {e}");
    assert_eq!(served.load(Ordering::SeqCst), 0);
    drop(s);

    let s = Setup::new(Backend::Sqlite)
        .top("extra_ca_file", &format!("\"{}\"", ca_path.display()))
        .extra(&allow)
        .start()
        .await;
    let session = s.session("cimd-ca").await;
    let (status, st) = s.start_flow(&session, &p).await;
    assert_eq!(status, 200, "{st}");
    assert_eq!(st["client"]["client_name"], "Internal Agent", "{st}");
    assert_eq!(served.load(Ordering::SeqCst), 1);
}
