//! Fuzz targets of the server and of the protocol crate's grammar (tests only; the runner is
//! `consentry_testkit::fuzz`, the budget `CONSENTRY_FUZZ_CASES` / `CONSENTRY_FUZZ_SECONDS`, the
//! long run `cargo xtask fuzz`). Seeds: `crates/server/fuzz/corpus/<target>/`, payloads of real
//! clients taken from the integration tests. Targets that reach HTTP handlers drive the real
//! router in-process (`tower::ServiceExt::oneshot`) over a real SQLite database and fail on any
//! 5xx; the others call the parser or verifier and fail on a panic or a broken invariant.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use consentry_protocol as protocol;
use consentry_testkit::fuzz::proptest;
use consentry_testkit::fuzz::{corpus_dir, mutated, mutated_text, run};
use jsonwebtoken::{Algorithm, EncodingKey};
use tower::ServiceExt;

use crate::config::{Config, TokenProfile};
use crate::state::AppState;
use crate::tat::TatVerifier;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let seeds = corpus_dir(&dir);
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

fn corpus_text(target: &str) -> Vec<String> {
    corpus(target)
        .into_iter()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .collect()
}

const URL_TOKENS: &[&str] = &[
    "response_type=",
    "client_id=",
    "redirect_uri=",
    "scope=",
    "state=",
    "code_challenge=",
    "code_challenge_method=",
    "resource=",
    "prompt=",
    "nonce=",
    "grant_type=",
    "code=",
    "code_verifier=",
    "refresh_token=",
    "client_secret=",
    "token=",
    "S256",
    "plain",
    "code",
    "none",
    "consent",
    "login",
    "openid",
    "notes:read",
    "authorization_code",
    "client_credentials",
    "com.example.app:/cb",
    "http://127.0.0.1:9999/callback",
    "https://agent.example.test/client.json",
];

const JSON_TOKENS: &[&str] = &[
    "\"client_name\":",
    "\"redirect_uris\":",
    "\"grant_types\":",
    "\"response_types\":",
    "\"token_endpoint_auth_method\":",
    "\"scope\":",
    "\"client_uri\":",
    "\"logo_uri\":",
    "\"policy_uri\":",
    "\"tos_uri\":",
    "\"jwks_uri\":",
    "\"jwks\":",
    "\"contacts\":",
    "\"application_type\":",
    "\"software_id\":",
    "\"client_id\":",
    "\"client_secret\":",
    "\"consent_granted\":true,",
    "\"kty\":",
    "\"crv\":",
    "\"kid\":",
    "\"use\":",
    "\"alg\":",
    "\"x\":",
    "\"y\":",
    "\"n\":",
    "\"e\":",
    "\"keys\":",
    "\"iss\":",
    "\"aud\":",
    "\"sub\":",
    "\"exp\":",
    "\"iat\":",
    "\"nbf\":",
    "\"jti\":",
    "\"roles\":",
    "\"email\":",
    "\"native\"",
    "\"web\"",
    "\"client_secret_basic\"",
    "\"client_secret_post\"",
    "\"EC\"",
    "\"RSA\"",
    "\"OKP\"",
    "\"P-256\"",
    "\"Ed25519\"",
    "\"ES256\"",
    "\"RS256\"",
    "\"EdDSA\"",
    "\"sig\"",
    "\"AQAB\"",
    "\"http://127.0.0.1/\"",
    "\"cursor://x/cb\"",
];

// ------------------------------------------------------------------------------------------
// The protocol crate's grammar

/// The authorization-parameter grammar: query decoding, every parameter rule, URI splitting
/// and matching; and percent-encoding round-trips.
#[test]
fn fuzz_authorize_params() {
    let seeds = corpus_text("authorize");
    let seeds: Vec<&str> = seeds.iter().map(String::as_str).collect();
    run(
        "authorize_params",
        mutated_text(&seeds, URL_TOKENS),
        |input: &String| {
            if let Ok(raw) = protocol::parse_query(input) {
                let _ = protocol::authorize::AuthorizeRequest::parse(&raw);
                let _ = protocol::authorize::validate_client_id(raw.client_id.as_deref());
                if let Some(uri) = raw.redirect_uri.as_deref() {
                    let _ = protocol::authorize::validate_redirect_uri(uri);
                    let _ = protocol::redirect_host(uri);
                    let _ = protocol::split_uri(uri);
                    let _ = protocol::redirect_uri_matches(uri, uri);
                }
                let _ = protocol::parse_scope(raw.scope.as_deref());
            }
            for piece in input.split(['&', '=']) {
                let _ = protocol::authorize::validate_redirect_uri(piece);
                let _ = protocol::split_uri(piece);
                let _ = protocol::redirect_uri_matches("http://127.0.0.1/cb", piece);
                let _ = protocol::is_valid_code_verifier(piece);
                let _ = protocol::parse_scope(Some(piece));
                // Whatever is encoded decodes back to itself.
                let mut encoded = String::new();
                protocol::percent_encode(piece, &mut encoded);
                assert_eq!(
                    protocol::percent_decode(&encoded).as_deref(),
                    Some(piece),
                    "percent round trip of {piece:?} via {encoded:?}"
                );
                let _ = protocol::percent_decode(piece);
            }
            let _ = protocol::append_query(input, &[("code", input), ("state", "s")]);
        },
    );
}

/// The one form decoder (token, introspection and revocation bodies).
#[test]
fn fuzz_form_decoder() {
    let seeds = corpus_text("form");
    let seeds: Vec<&str> = seeds.iter().map(String::as_str).collect();
    run(
        "form_decoder",
        mutated_text(&seeds, URL_TOKENS),
        |input: &String| {
            if let Ok(form) = protocol::Form::parse(input, "fuzz") {
                for name in [
                    "grant_type",
                    "code",
                    "client_id",
                    "resource",
                    "scope",
                    "redirect_uri",
                ] {
                    let one = form.one(name);
                    let all = form.all(name);
                    // A name given once reads the same both ways.
                    if let (Ok(Some(v)), Ok(list)) = (&one, &all) {
                        assert_eq!(list.as_slice(), std::slice::from_ref(v), "{name}");
                    }
                }
                let _ = form.first_repeated(&["grant_type", "code", "client_id"]);
            }
        },
    );
}

// ------------------------------------------------------------------------------------------
// Trusted Auth Tokens and JWKS documents

struct TatSetup {
    verifier: TatVerifier,
    profile: TokenProfile,
    key: EncodingKey,
    rt: tokio::runtime::Runtime,
}

fn tat_setup() -> &'static TatSetup {
    static SETUP: OnceLock<TatSetup> = OnceLock::new();
    SETUP.get_or_init(|| {
        crate::install_crypto_providers();
        let (private_pem, public_pem) =
            crate::keys::generate_pem_keypair(crate::keys::SigningAlg::ES256).unwrap();
        let toml = format!(
            "{BASE_CONFIG}\n[[token_profiles]]\nid = \"default\"\nissuer = \"urn:test:issuer\"\n\
             audience = \"urn:test:audience\"\npublic_key_pem = \"\"\"\n{public_pem}\"\"\"\n\
             algorithms = [\"ES256\"]\n[token_profiles.claims]\nroles = \"/realm_access/roles\"\n",
        );
        let cfg = Config::from_toml(&toml, Path::new("/tmp"), Vec::new()).unwrap();
        let verifier = TatVerifier::new(&cfg.token_profiles, reqwest::Client::new()).unwrap();
        TatSetup {
            verifier,
            profile: cfg.token_profiles[0].clone(),
            key: EncodingKey::from_ec_pem(private_pem.as_bytes()).unwrap(),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        }
    })
}

const BASE_CONFIG: &str = r#"
issuer = "http://127.0.0.1:1"
authorization_url = "http://127.0.0.1:3000/oauth/authorize"
database_url = "sqlite://unused.db"

[[scopes]]
name = "notes:read"
description = "Read your notes"
"#;

fn signed(header: &[u8], payload: &[u8], key: &EncodingKey) -> String {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), key, Algorithm::ES256).unwrap();
    format!("{message}.{sig}")
}

/// TAT verification on arbitrary token text: splitting, base64, header JSON, `typ`/`crit`/`alg`
/// rules and the signature check.
#[test]
fn fuzz_tat_token() {
    let s = tat_setup();
    let now = crate::clock::now();
    let seeds: Vec<Vec<u8>> = corpus("tat_claims")
        .iter()
        .map(|claims| signed(br#"{"alg":"ES256","typ":"JWT"}"#, claims, &s.key).into_bytes())
        .collect();
    run(
        "tat_token",
        mutated(seeds, &["eyJ", ".", "..", "-", "_", "=", "+", "/"]),
        |input: &Vec<u8>| {
            let token = String::from_utf8_lossy(input);
            let _ = s.rt.block_on(s.verifier.verify(&s.profile, &token, now));
        },
    );
}

/// TAT claim rules on arbitrary (validly signed) payloads and headers: every claim of every type.
#[test]
fn fuzz_tat_claims() {
    let s = tat_setup();
    let now = crate::clock::now();
    let headers: [&[u8]; 3] = [
        br#"{"alg":"ES256","typ":"JWT"}"#,
        br#"{"alg":"ES256"}"#,
        br#"{"alg":"ES256","typ":"at+jwt"}"#,
    ];
    run(
        "tat_claims",
        (mutated(corpus("tat_claims"), JSON_TOKENS), 0..headers.len()),
        |(payload, h): &(Vec<u8>, usize)| {
            let token = signed(headers[*h], payload, &s.key);
            if let Ok(v) = s.rt.block_on(s.verifier.verify(&s.profile, &token, now)) {
                assert!(!v.user_id.is_empty(), "a verified TAT has a user");
            }
        },
    );
}

/// An identity provider's JWKS document: parsing, and choosing the key for every alg and kid.
#[test]
fn fuzz_jwks_document() {
    crate::install_crypto_providers();
    run(
        "jwks_document",
        mutated(corpus("jwks"), JSON_TOKENS),
        |input: &Vec<u8>| {
            let Ok(set) = serde_json::from_slice::<jsonwebtoken::jwk::JwkSet>(input) else {
                return;
            };
            let kids: Vec<Option<String>> = set
                .keys
                .iter()
                .map(|k| k.common.key_id.clone())
                .chain([None, Some("absent".into())])
                .collect();
            for alg in [Algorithm::ES256, Algorithm::RS256, Algorithm::EdDSA] {
                for kid in &kids {
                    let _ = crate::tat::select_jwk(&set, kid.as_deref(), alg);
                }
            }
        },
    );
}

// ------------------------------------------------------------------------------------------
// Client ID Metadata Documents

#[test]
fn fuzz_cimd_document() {
    const URL: &str = "https://agent.example.test/client.json";
    let trusted = vec!["agent.example.test".to_owned(), "*.example.test".to_owned()];
    run(
        "cimd_document",
        mutated(corpus("cimd"), JSON_TOKENS),
        |input: &Vec<u8>| {
            if let Ok(client) =
                crate::cimd::parse_document(URL, "agent.example.test", input, &trusted)
            {
                assert_eq!(client.client_id, URL);
            }
        },
    );
}

// ------------------------------------------------------------------------------------------
// HTTP handlers, in-process

struct Http {
    router: axum::Router,
    session: String,
    rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

fn http() -> &'static Http {
    static HTTP: OnceLock<Http> = OnceLock::new();
    HTTP.get_or_init(|| {
        crate::install_crypto_providers();
        let dir = fuzz_dir();
        let (private_pem, public_pem) =
            crate::keys::generate_pem_keypair(crate::keys::SigningAlg::ES256).unwrap();
        let toml = format!(
            r#"
issuer = "http://127.0.0.1:1"
authorization_url = "http://127.0.0.1:3000/oauth/authorize"
database_url = "sqlite://{db}"
allowed_origins = ["http://127.0.0.1:3000"]

[[token_profiles]]
id = "default"
issuer = "urn:test:issuer"
audience = "urn:test:audience"
public_key_pem = """
{public_pem}"""
algorithms = ["ES256"]

[[scopes]]
name = "notes:read"
description = "Read your notes"

[[resources]]
uri = "http://127.0.0.1:8788/mcp"
name = "Notes"
scopes = ["notes:read"]
default_scopes = ["notes:read"]
introspection_secret = "notes-introspection-secret-0123456789abcdef"

[[clients]]
client_id = "demo-agent"
client_name = "Demo agent"
redirect_uris = ["http://127.0.0.1:9999/callback"]
token_endpoint_auth_method = "none"

[registration]
mode = "open"
rate_limit_per_minute = 1000000000
global_rate_limit_per_minute = 1000000000

[cimd]
enabled = false
"#,
            db = dir.path().join("fuzz.db").display()
        );
        let cfg = Config::from_toml(&toml, dir.path(), Vec::new()).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let state = Arc::new(rt.block_on(AppState::new(cfg)).unwrap());
        let router = crate::http::router(state);
        // A browser session for the authorization endpoints.
        let key = EncodingKey::from_ec_pem(private_pem.as_bytes()).unwrap();
        let now = crate::clock::now();
        let claims = serde_json::json!({
            "iss": "urn:test:issuer", "aud": "urn:test:audience", "sub": "fuzz-user",
            "iat": now, "exp": now + 300, "jti": "fuzz-jti",
        });
        let tat = signed(br#"{"alg":"ES256","typ":"JWT"}"#, claims.to_string().as_bytes(), &key);
        let body = serde_json::json!({"token": tat, "profile_id": "default", "session_duration_minutes": 60});
        let (status, body) = rt.block_on(send(
            &router,
            "POST",
            "/v1/sessions/attest",
            "application/json",
            None,
            body.to_string().into_bytes(),
        ));
        assert_eq!(status, StatusCode::OK, "attest: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        Http {
            router,
            session: v["session_token"].as_str().unwrap().to_owned(),
            rt,
            _dir: dir,
        }
    })
}

/// The database folder of the HTTP targets. On tmpfs where there is one: every registration
/// commits with an fsync (synchronous = FULL), which on a disk would be most of a target's time.
/// It lives in a static, never dropped: it is named after the process, and folders of processes
/// that are gone are removed first, so runs do not pile up in memory.
fn fuzz_dir() -> tempfile::TempDir {
    const PREFIX: &str = "consentry-fuzz-";
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    for entry in std::fs::read_dir(&base).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    tempfile::Builder::new()
        .prefix(&format!("{PREFIX}{}-", std::process::id()))
        .tempdir_in(base)
        .unwrap()
}

async fn send(
    router: &axum::Router,
    method: &str,
    path: &str,
    content_type: &str,
    bearer: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, String) {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type);
    if let Some(b) = bearer {
        req = req.header("authorization", format!("Bearer {b}"));
    }
    let resp = router
        .clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// Answers by status, per HTTP target: printed after the run, so that a target whose inputs all
/// stop at the first check (a lost session, a wrong content type) shows.
static STATUSES: std::sync::Mutex<std::collections::BTreeMap<(&'static str, u16), u64>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

fn statuses(what: &'static str) -> String {
    let map = STATUSES.lock().unwrap_or_else(|e| e.into_inner());
    map.iter()
        .filter(|((w, _), _)| *w == what)
        .map(|((_, s), n)| format!("{s}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The target's answers included successes and refusals (the inputs reach the handler's logic).
fn assert_reached(what: &'static str, success: u16) {
    let shown = statuses(what);
    eprintln!("fuzz {what}: answers {{{shown}}}");
    let map = STATUSES.lock().unwrap_or_else(|e| e.into_inner());
    assert!(
        map.get(&(what, success)).is_some_and(|n| *n > 0),
        "{what}: no input was accepted ({success}); answers {{{shown}}}"
    );
}

fn no_5xx(what: &'static str, input: &[u8], (status, body): (StatusCode, String)) {
    *STATUSES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry((what, status.as_u16()))
        .or_default() += 1;
    assert!(
        !status.is_server_error(),
        "{what}: {status} {body} for input {:?}",
        String::from_utf8_lossy(input)
    );
}

/// Dynamic Client Registration bodies through `POST /oauth2/register`, and RFC 7592 updates
/// through `PUT /oauth2/register/{id}` of a registered client (with its access token).
#[test]
fn fuzz_dcr_http() {
    let h = http();
    let (status, reg) = h.rt.block_on(send(
        &h.router,
        "POST",
        "/oauth2/register",
        "application/json",
        None,
        corpus("dcr")[0].clone(),
    ));
    assert_eq!(status, StatusCode::CREATED, "{reg}");
    let reg: serde_json::Value = serde_json::from_str(&reg).unwrap();
    let client_id = reg["client_id"].as_str().unwrap().to_owned();
    let update_path = format!("/oauth2/register/{client_id}");
    let rat = reg["registration_access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    run(
        "dcr_http",
        (
            mutated(corpus("dcr"), JSON_TOKENS),
            proptest::bool::weighted(0.25),
        ),
        |(input, update): &(Vec<u8>, bool)| {
            let answer = if *update {
                // RFC 7592 §2.2: an update names the client; a JSON object that does not gets
                // the name added (the rest of the input as it is).
                let body = match serde_json::from_slice::<serde_json::Value>(input) {
                    Ok(serde_json::Value::Object(mut m)) if !m.contains_key("client_id") => {
                        m.insert("client_id".into(), client_id.clone().into());
                        serde_json::to_vec(&m).unwrap()
                    }
                    _ => input.clone(),
                };
                h.rt.block_on(send(
                    &h.router,
                    "PUT",
                    &update_path,
                    "application/json",
                    Some(&rat),
                    body,
                ))
            } else {
                h.rt.block_on(send(
                    &h.router,
                    "POST",
                    "/oauth2/register",
                    "application/json",
                    None,
                    input.clone(),
                ))
            };
            no_5xx("POST/PUT /oauth2/register", input, answer);
        },
    );
    assert_reached("POST/PUT /oauth2/register", 201);
    assert_reached("POST/PUT /oauth2/register", 200);
}

/// Form bodies and client credentials (`Authorization: Basic` or `Bearer`, any bytes) through
/// the token, introspection and revocation endpoints.
#[test]
fn fuzz_token_form_http() {
    let h = http();
    const PATHS: [&str; 3] = ["/oauth2/token", "/oauth2/introspect", "/oauth2/revoke"];
    let auth_seeds: Vec<Vec<u8>> = [
        "",
        "Basic ZGVtby1hZ2VudDpzZWNyZXQ=",
        "Basic c3ZjJTNBb3BzJTJCMSt4JTI1JTJGJTNGOnBAc3M=",
        "Bearer notes-introspection-secret-0123456789abcdef",
        "basic Og==",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    run(
        "token_form_http",
        (
            mutated(corpus("form"), URL_TOKENS),
            mutated(auth_seeds, &["Basic ", "Bearer ", ":", "%3A", "=="]),
            0..PATHS.len(),
        ),
        |(body, auth, path): &(Vec<u8>, Vec<u8>, usize)| {
            let mut req = Request::builder()
                .method("POST")
                .uri(PATHS[*path])
                .header("content-type", "application/x-www-form-urlencoded");
            if !auth.is_empty()
                && let Ok(v) = axum::http::HeaderValue::from_bytes(auth)
            {
                req = req.header("authorization", v);
            }
            let req = req.body(Body::from(body.clone())).unwrap();
            let answer = h.rt.block_on(async {
                let resp = h.router.clone().oneshot(req).await.unwrap();
                let status = resp.status();
                let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
                    .await
                    .unwrap();
                (status, String::from_utf8_lossy(&bytes).into_owned())
            });
            no_5xx("POST /oauth2/{token,introspect,revoke}", body, answer);
        },
    );
    assert_reached("POST /oauth2/{token,introspect,revoke}", 200);
}

/// Authorization requests (the query's parameters as the SDK sends them, JSON) through
/// `POST /v1/oauth/authorize/start` and `/submit` (with or without `consent_granted`) with a live
/// session.
#[test]
fn fuzz_authorize_start_http() {
    let h = http();
    let seeds: Vec<Vec<u8>> = corpus_text("authorize")
        .iter()
        .filter_map(|q| protocol::parse_query(q).ok())
        .filter_map(|p| serde_json::to_value(&p).ok())
        .flat_map(|p| {
            let mut submit = p.clone();
            submit["consent_granted"] = serde_json::Value::Bool(true);
            [p, submit]
        })
        .filter_map(|p| serde_json::to_vec(&p).ok())
        .collect();
    assert!(!seeds.is_empty());
    const PATHS: [&str; 2] = ["/v1/oauth/authorize/start", "/v1/oauth/authorize/submit"];
    run(
        "authorize_start_http",
        (mutated(seeds, JSON_TOKENS), 0..PATHS.len()),
        |(input, path): &(Vec<u8>, usize)| {
            let answer = h.rt.block_on(send(
                &h.router,
                "POST",
                PATHS[*path],
                "application/json",
                Some(&h.session),
                input.clone(),
            ));
            no_5xx("POST /v1/oauth/authorize/{start,submit}", input, answer);
        },
    );
    assert_reached("POST /v1/oauth/authorize/{start,submit}", 200);
}
