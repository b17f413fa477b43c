//! The identity-provider recipes of docs/idp-recipes.md, tested as written: each TOML block of the
//! document is the token profile of a real `consentry` server (only its `jwks_url` host is swapped
//! for a loopback stand-in), the stand-in serves the provider's JWKS document in its real format at
//! its real path, and tokens of the provider's real shape (header, claims, lifetime) are attested.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use consentry_server::keys::{SigningAlg, SigningKey};
use consentry_testkit::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const DOC: &str = include_str!("../../../../docs/idp-recipes.md");

/// The TOML block after `<!-- recipe: {name} -->`.
fn recipe(name: &str) -> String {
    let marker = format!("<!-- recipe: {name} -->");
    let rest = &DOC[DOC
        .find(&marker)
        .unwrap_or_else(|| panic!("no recipe {name}"))..];
    let start = rest.find("```toml\n").unwrap() + "```toml\n".len();
    let end = start + rest[start..].find("```").unwrap();
    rest[start..end].to_owned()
}

fn field(toml: &str, key: &str) -> String {
    let line = toml
        .lines()
        .find(|l| l.starts_with(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("no {key} in\n{toml}"));
    let v = line.split_once(" = ").unwrap().1;
    v.split('"').nth(1).unwrap().to_owned()
}

/// A signing key of the provider and its public JWK.
struct Key {
    encoding: EncodingKey,
    alg: Algorithm,
    kid: String,
    jwk: Value,
}

fn key(alg: SigningAlg, kid: &str) -> Key {
    let (k, der) = SigningKey::generate(alg).unwrap();
    let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", der));
    let (encoding, jalg) = match alg {
        SigningAlg::RS256 => (
            EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
            Algorithm::RS256,
        ),
        SigningAlg::ES256 => (
            EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
            Algorithm::ES256,
        ),
        SigningAlg::EdDSA => (
            EncodingKey::from_ed_pem(pem.as_bytes()).unwrap(),
            Algorithm::EdDSA,
        ),
    };
    let mut jwk = k.public_jwk.clone();
    jwk["kid"] = json!(kid);
    Key {
        encoding,
        alg: jalg,
        kid: kid.to_owned(),
        jwk,
    }
}

fn sign(k: &Key, typ: Option<&str>, claims: &Value) -> String {
    let mut h = Header::new(k.alg);
    h.kid = Some(k.kid.clone());
    h.typ = typ.map(str::to_owned);
    jsonwebtoken::encode(&h, claims, &k.encoding).unwrap()
}

/// The provider's JWKS document, served on loopback at `path`.
async fn stand_in(path: &str, jwks: Value) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new().route(
        path,
        axum::routing::get(move || {
            let jwks = jwks.clone();
            async move {
                (
                    [("content-type", "application/json; charset=utf-8")],
                    jwks.to_string(),
                )
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://127.0.0.1:{port}{path}")
}

/// A server whose config has the recipe's profile, its `jwks_url` pointing at the stand-in
/// serving `jwks`; returns the server and the recipe's issuer and audience.
async fn server_for(name: &str, jwks: Value) -> (TestServer, String, String) {
    let toml = recipe(name);
    let real = field(&toml, "jwks_url");
    let path = format!(
        "/{}",
        real.split_once("://").unwrap().1.split_once('/').unwrap().1
    );
    let url = stand_in(&path, jwks).await;
    let toml = toml.replace(&real, &url);
    let (issuer, audience) = (field(&toml, "issuer"), field(&toml, "audience"));
    let s = Setup::new(Backend::Sqlite)
        .top("token_profiles_share_users", "true")
        .extra(&toml)
        .start()
        .await;
    (s, issuer, audience)
}

async fn attest(s: &TestServer, profile: &str, token: &str) -> (u16, Value) {
    s.post_json(
        "/v1/sessions/attest",
        None,
        &json!({"token": token, "profile_id": profile}),
    )
    .await
}

fn x5c() -> Value {
    // The shape of an x5c member (base64 DER); Consentry reads n/e, never the certificate.
    json!([STANDARD.encode(b"not parsed: Consentry verifies with n and e")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth0_id_token_with_a_namespaced_roles_claim_and_no_jti() {
    let k = key(SigningAlg::RS256, "Qz1B7bK_dEc1jVnKzvRb2");
    let mut jwk = k.jwk.clone();
    jwk["use"] = json!("sig");
    jwk["alg"] = json!("RS256");
    jwk["x5t"] = json!("aGVsbG8");
    jwk["x5c"] = x5c();
    let (s, iss, aud) = server_for("auth0", json!({"keys": [jwk]})).await;
    let now = now();
    let claims = json!({
        "https://your-app.example.com/roles": ["admin", "editor"],
        "nickname": "ada", "name": "Ada Lovelace", "picture": "https://s.gravatar.com/avatar/x.png",
        "updated_at": "2026-12-01T10:00:00.000Z", "email": "ada@example.com", "email_verified": true,
        "iss": iss, "aud": aud, "sub": "auth0|64f1c0ffee", "iat": now, "exp": now + 36000,
        "sid": "Yx9cH3", "nonce": "n-0S6_WzA2Mj",
    });
    let t = sign(&k, Some("JWT"), &claims);
    let (st, body) = attest(&s, "auth0", &t).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["user"]["user_id"], "auth0|64f1c0ffee");
    assert_eq!(body["user"]["email"], "ada@example.com");
    assert_eq!(body["user"]["roles"], json!(["admin", "editor"]));
    // No jti and single_use_jti = false: the documented cost, the same token attests again.
    assert_eq!(attest(&s, "auth0", &t).await.0, 200);
    // Longer than the recipe's max_lifetime_seconds: refused.
    let mut long = claims.clone();
    long["exp"] = json!(now + 36000 + 120);
    let (st, body) = attest(&s, "auth0", &sign(&k, Some("JWT"), &long)).await;
    assert_eq!(st, 401, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("max_lifetime_seconds")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clerk_jwt_template_token_is_single_use() {
    let k = key(SigningAlg::RS256, "ins_2abcDEFghiJKLmnoPQRstuVWX");
    let mut jwk = k.jwk.clone();
    jwk["use"] = json!("sig");
    jwk["alg"] = json!("RS256");
    let (s, iss, aud) = server_for("clerk", json!({"keys": [jwk]})).await;
    let now = now();
    let t = sign(
        &k,
        Some("JWT"),
        &json!({
            "aud": aud, "azp": "https://app.your-domain.com", "email": "grace@example.com",
            "exp": now + 60, "iat": now, "iss": iss, "jti": "e3a1b9c8d7f6a5b4c3d2", "name": "Grace Hopper",
            "nbf": now - 5, "roles": ["member"], "sid": "sess_2abc", "sub": "user_2xyzABC",
        }),
    );
    let (st, body) = attest(&s, "clerk", &t).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["user"]["user_id"], "user_2xyzABC");
    assert_eq!(body["user"]["roles"], json!(["member"]));
    let (st, body) = attest(&s, "clerk", &t).await;
    assert_eq!(
        st, 401,
        "a Clerk template token carries a jti: it is used once ({body})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supabase_access_token_es256_with_roles_in_app_metadata() {
    let k = key(SigningAlg::ES256, "a7c0a3b1-2f1e-4c5d-9e8f-0a1b2c3d4e5f");
    let mut jwk = k.jwk.clone();
    jwk["alg"] = json!("ES256");
    jwk["ext"] = json!(true);
    jwk["key_ops"] = json!(["verify"]);
    jwk["use"] = json!("sig");
    let (s, iss, aud) = server_for("supabase", json!({"keys": [jwk]})).await;
    let now = now();
    let t = sign(
        &k,
        Some("JWT"),
        &json!({
            "iss": iss, "sub": "0b6f3c1e-8d2a-4f5b-9c7e-1a2b3c4d5e6f", "aud": aud, "exp": now + 3600,
            "iat": now, "email": "linus@example.com", "phone": "",
            "app_metadata": {"provider": "email", "providers": ["email"], "roles": ["owner"]},
            "user_metadata": {"email_verified": true}, "role": "authenticated", "aal": "aal1",
            "amr": [{"method": "password", "timestamp": now}], "session_id": "4d3c2b1a",
            "is_anonymous": false,
        }),
    );
    let (st, body) = attest(&s, "supabase", &t).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        body["user"]["user_id"],
        "0b6f3c1e-8d2a-4f5b-9c7e-1a2b3c4d5e6f"
    );
    assert_eq!(body["user"]["roles"], json!(["owner"]));
    // The legacy HS256 project secret is never accepted, even by this profile.
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &jwt_claims(&t),
        &EncodingKey::from_secret(b"super-secret-jwt-token-with-at-least-32-characters-long"),
    )
    .unwrap();
    assert_eq!(attest(&s, "supabase", &hs).await.0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firebase_id_token_from_the_google_jwk_endpoint() {
    let k = key(
        SigningAlg::RS256,
        "c8f7e6d5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9",
    );
    let mut jwk = k.jwk.clone();
    jwk["alg"] = json!("RS256");
    jwk["use"] = json!("sig");
    let other = key(
        SigningAlg::RS256,
        "0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b",
    );
    let mut jwk2 = other.jwk.clone();
    jwk2["alg"] = json!("RS256");
    jwk2["use"] = json!("sig");
    let (s, iss, aud) = server_for("firebase", json!({"keys": [jwk2, jwk]})).await;
    let now = now();
    let t = sign(
        &k,
        Some("JWT"),
        &json!({
            "name": "Alan Turing", "picture": "https://lh3.googleusercontent.com/a/x", "roles": ["analyst"],
            "iss": iss, "aud": aud, "auth_time": now - 30, "user_id": "kT9zQ2wXyZ1aB3cD4eF5gH6iJ7k2",
            "sub": "kT9zQ2wXyZ1aB3cD4eF5gH6iJ7k2", "iat": now, "exp": now + 3600, "email": "alan@example.com",
            "email_verified": true,
            "firebase": {"identities": {"email": ["alan@example.com"]}, "sign_in_provider": "password"},
        }),
    );
    let (st, body) = attest(&s, "firebase", &t).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["user"]["user_id"], "kT9zQ2wXyZ1aB3cD4eF5gH6iJ7k2");
    assert_eq!(body["user"]["name"], "Alan Turing");
    assert_eq!(body["user"]["roles"], json!(["analyst"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keycloak_id_token_with_realm_roles_and_an_encryption_key_in_the_set() {
    let k = key(SigningAlg::RS256, "kC7v2Yp8QxL3mN9rT5uW1zA4bD6eF0gH");
    let mut sig = k.jwk.clone();
    sig["alg"] = json!("RS256");
    sig["use"] = json!("sig");
    sig["x5c"] = x5c();
    sig["x5t"] = json!("aGVsbG8");
    sig["x5t#S256"] = json!("d29ybGQ");
    let enc_key = key(SigningAlg::RS256, "enc-Vb2Xy7Qp1Lm");
    let mut enc = enc_key.jwk.clone();
    enc["alg"] = json!("RSA-OAEP");
    enc["use"] = json!("enc");
    enc["x5c"] = x5c();
    let (s, iss, aud) = server_for("keycloak", json!({"keys": [enc, sig]})).await;
    let now = now();
    let t = sign(
        &k,
        Some("JWT"),
        &json!({
            "exp": now + 300, "iat": now, "auth_time": now - 10, "jti": "onrtac:4f5e6d7c-8b9a-0f1e-2d3c-4b5a69788796",
            "iss": iss, "aud": aud, "sub": "f3b2a1c0-9d8e-7f6a-5b4c-3d2e1f0a9b8c", "typ": "ID", "azp": aud,
            "sid": "0c1d2e3f", "at_hash": "x4Yz", "email_verified": true, "name": "Barbara Liskov",
            "preferred_username": "barbara", "given_name": "Barbara", "family_name": "Liskov",
            "email": "barbara@example.com", "realm_access": {"roles": ["offline_access", "manager"]},
        }),
    );
    let (st, body) = attest(&s, "keycloak", &t).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        body["user"]["user_id"],
        "f3b2a1c0-9d8e-7f6a-5b4c-3d2e1f0a9b8c"
    );
    assert_eq!(body["user"]["name"], "barbara");
    assert_eq!(body["user"]["roles"], json!(["offline_access", "manager"]));
    // A token signed by the encryption key's private half (kid of the enc key) is refused.
    let forged = sign(
        &enc_key,
        Some("JWT"),
        &json!({"iss": iss, "aud": aud, "sub": "mallory", "iat": now, "exp": now + 60, "jti": random_id()}),
    );
    let (st, body) = attest(&s, "keycloak", &forged).await;
    assert_eq!(st, 401, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("not a signature key"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_id_token_keys_without_alg_and_uti_used_once() {
    let k = key(SigningAlg::RS256, "L1KfKFI_jnXbwWc22xZxw1sUHH0");
    let mut jwk = k.jwk.clone();
    if let Value::Object(m) = &mut jwk {
        m.remove("alg");
    }
    jwk["use"] = json!("sig");
    jwk["x5t"] = json!("L1KfKFI_jnXbwWc22xZxw1sUHH0");
    jwk["x5c"] = x5c();
    jwk["cloud_instance_name"] = json!("microsoftonline.com");
    // Entra's keys have no `alg` (the profile's algorithms and the key type decide) and carry an
    // `issuer` member with a {tenantid} template, which Consentry does not read.
    jwk["issuer"] = json!("https://login.microsoftonline.com/{tenantid}/v2.0");
    let (s, iss, aud) = server_for("entra", json!({"keys": [jwk]})).await;
    let now = now();
    let claims = json!({
        "aud": aud, "iss": iss, "iat": now, "nbf": now, "exp": now + 3600, "name": "Katherine Johnson",
        "oid": "00000000-0000-0000-66f3-3332eca7ea81", "preferred_username": "katherine@contoso.example",
        "rh": "0.AXkA", "sid": "00a1b2c3", "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
        "tid": "9122040d-6c67-4c5b-b112-36a304b66dad", "uti": "AbCdEfGhIjKlMnOpQrStUv", "ver": "2.0",
        "roles": ["Notes.Admin"],
    });
    let t = sign(&k, Some("JWT"), &claims);
    let (st, body) = attest(&s, "entra", &t).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        body["user"]["user_id"],
        "00000000-0000-0000-66f3-3332eca7ea81"
    );
    assert_eq!(body["user"]["email"], "katherine@contoso.example");
    assert_eq!(body["user"]["roles"], json!(["Notes.Admin"]));
    // uti is the jti: the same token is used once.
    let (st, body) = attest(&s, "entra", &t).await;
    assert_eq!(st, 401, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("already used"),
        "{body}"
    );
    // A token without uti is refused: single use needs it.
    let mut no_uti = claims.clone();
    no_uti.as_object_mut().unwrap().remove("uti");
    let (st, body) = attest(&s, "entra", &sign(&k, Some("JWT"), &no_uti)).await;
    assert_eq!(st, 401, "{body}");
    assert!(
        body["error_description"].as_str().unwrap().contains("uti"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hosted_products_attribute_mapping_names_are_accepted() {
    let k = key(SigningAlg::ES256, "hosted-1");
    let url = stand_in("/jwks.json", json!({"keys": [k.jwk.clone()]})).await;
    let s = Setup::new(Backend::Sqlite)
        .top("token_profiles_share_users", "true")
        .extra(&format!(
            r#"
[[token_profiles]]
id = "hosted"
issuer = "https://login.example.test"
audience = "consentry"
jwks_url = "{url}"
algorithms = ["ES256"]
[token_profiles.attribute_mapping]
external_user_id = "userId"
email = "email_address"
role_ids = "/app/role_ids"
token_id = "token_id"
"#
        ))
        .start()
        .await;
    let now = now();
    let claims = json!({
        "iss": "https://login.example.test", "aud": "consentry", "iat": now, "exp": now + 60,
        "userId": "ext-42", "email_address": "ext@example.com", "app": {"role_ids": ["admin"]},
        "token_id": random_id(),
    });
    let t = sign(&k, None, &claims);
    let (st, body) = attest(&s, "hosted", &t).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["user"]["user_id"], "ext-42");
    assert_eq!(body["user"]["email"], "ext@example.com");
    assert_eq!(body["user"]["roles"], json!(["admin"]));
    assert_eq!(attest(&s, "hosted", &t).await.0, 401, "token_id is the jti");
}

#[test]
fn every_recipe_of_the_document_is_tested_here() {
    let tested = [
        "auth0", "clerk", "supabase", "firebase", "keycloak", "entra",
    ];
    let in_doc: Vec<&str> = DOC
        .match_indices("<!-- recipe: ")
        .map(|(i, m)| {
            let rest = &DOC[i + m.len()..];
            &rest[..rest.find(" -->").unwrap()]
        })
        .collect();
    assert_eq!(in_doc, tested);
}
