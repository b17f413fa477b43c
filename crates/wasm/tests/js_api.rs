//! The exported functions and the `Consentry` class, in headless Chromium, as JavaScript sees them:
//! the exact members of the returned objects, the error objects' codes, and which calls reject
//! locally before any request. Only loopback is contacted: the test runner's own origin and a
//! closed port on 127.0.0.1.
//!
//! Run by `cargo xtask test` (or `cargo xtask wasm-test`) through wasm-bindgen-test-runner.

#![cfg(all(target_arch = "wasm32", feature = "headless"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use consentry_wasm::{Consentry, decode_trusted_auth_token_js, parse_authorize_params_js};
use js_sys::{Array, Object, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
/// Not in Chromium's list of restricted ports, privileged, and unused on these machines: a fetch
/// there reaches the loopback interface and is refused.
const CLOSED_LOOPBACK: &str = "http://127.0.0.1:2";

#[wasm_bindgen(inline_js = "
export function page_origin() { return location.origin; }
export function requests_under(prefix) {
  return performance.getEntriesByType('resource').filter((e) => e.name.startsWith(prefix)).length;
}
export function base64url(text) {
  const bytes = new TextEncoder().encode(text);
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\\+/g, '-').replace(/\\//g, '_').replace(/=+$/, '');
}
")]
extern "C" {
    fn page_origin() -> String;
    /// How many requests the page has made to URLs starting with `prefix` (Resource Timing).
    fn requests_under(prefix: &str) -> u32;
    fn base64url(text: &str) -> String;
}

// ---------------------------------------------------------------------------------------------
// Helpers: read JS values the way a page would.

fn get(value: &JsValue, key: &str) -> JsValue {
    Reflect::get(value, &JsValue::from_str(key)).unwrap()
}

fn string(value: &JsValue, key: &str) -> String {
    get(value, key)
        .as_string()
        .unwrap_or_else(|| panic!("`{key}` is not a string: {:?}", get(value, key)))
}

/// The object's own enumerable keys, sorted: what `Object.keys` shows a JS caller.
fn keys(value: &JsValue) -> Vec<String> {
    assert!(value.is_object(), "not an object: {value:?}");
    let mut keys: Vec<String> = Object::keys(&Object::from(value.clone()))
        .iter()
        .filter_map(|k| k.as_string())
        .collect();
    keys.sort();
    keys
}

fn strings(value: &JsValue) -> Vec<String> {
    assert!(Array::is_array(value), "not an array: {value:?}");
    Array::from(value)
        .iter()
        .map(|v| v.as_string().unwrap())
        .collect()
}

/// An SDK error object: `{ code, status, description }` (+ `redirect_uri` when the server gave one).
fn assert_error(error: &JsValue, code: &str, status: Option<f64>) {
    assert!(
        !error.is_instance_of::<js_sys::Error>(),
        "the core rejects with plain objects, the JS layer makes ConsentryErrors"
    );
    assert_eq!(string(error, "code"), code, "{error:?}");
    assert_eq!(get(error, "status").as_f64(), status, "{error:?}");
    assert!(
        !string(error, "description").is_empty(),
        "empty description: {error:?}"
    );
}

async fn rejection(promise: Promise) -> JsValue {
    match JsFuture::from(promise).await {
        Ok(v) => panic!("expected a rejection, resolved with {v:?}"),
        Err(e) => e,
    }
}

fn now() -> f64 {
    js_sys::Date::now() / 1000.0
}

/// A compact JWS with these claims. The signature is junk: the SDK only reads, the server verifies.
fn jwt(claims: &str) -> String {
    format!(
        "{}.{}.c2lnbmF0dXJl",
        base64url(r#"{"alg":"ES256","typ":"JWT"}"#),
        base64url(claims)
    )
}

fn tat(exp: f64) -> String {
    jwt(&format!(
        r#"{{"iss":"urn:consentry:dev:issuer","aud":"urn:consentry:dev:audience","sub":"alice","name":"Zoë","exp":{exp},"jti":"j-1"}}"#
    ))
}

fn query() -> String {
    format!(
        "client_id=demo-agent&redirect_uri=http%3A%2F%2F127.0.0.1%3A9999%2Fcallback&code_challenge={CHALLENGE}&code_challenge_method=S256&state=st-1"
    )
}

fn authorize_url(extra: &str) -> String {
    format!("https://app.example.com/oauth/authorize?{}{extra}", query())
}

/// A fresh base URL under the runner's own origin, so that `requests_under` sees any request.
fn base_url(test: &str) -> String {
    format!("{}/consentry-test/{test}", page_origin())
}

fn params_object() -> JsValue {
    get(&parse_authorize_params_js(&authorize_url("")), "params")
}

// ---------------------------------------------------------------------------------------------
// parseAuthorizeParams

#[wasm_bindgen_test]
fn parse_returns_snake_case_params_and_leaves_absent_ones_out() {
    // Quirks of real clients at once: no response_type (ChatGPT), `+` for spaces in scope, a
    // repeated resource (RFC 8707), an unknown parameter.
    let parsed = parse_authorize_params_js(&authorize_url(
        "&scope=notes%3Aread+notes%3Awrite&resource=http%3A%2F%2F127.0.0.1%3A8788%2Fmcp&resource=https%3A%2F%2Fother.example%2Fmcp&utm_source=x",
    ));
    assert_eq!(keys(&parsed), ["error", "params", "redirectable"]);
    assert!(get(&parsed, "error").is_null());
    assert_eq!(get(&parsed, "redirectable"), JsValue::TRUE);
    let params = get(&parsed, "params");
    assert_eq!(
        keys(&params),
        [
            "client_id",
            "code_challenge",
            "code_challenge_method",
            "redirect_uri",
            "resource",
            "scope",
            "state"
        ]
    );
    assert_eq!(string(&params, "client_id"), "demo-agent");
    assert_eq!(
        string(&params, "redirect_uri"),
        "http://127.0.0.1:9999/callback"
    );
    assert_eq!(string(&params, "scope"), "notes:read notes:write");
    assert_eq!(string(&params, "code_challenge"), CHALLENGE);
    assert_eq!(string(&params, "code_challenge_method"), "S256");
    assert_eq!(
        strings(&get(&params, "resource")),
        ["http://127.0.0.1:8788/mcp", "https://other.example/mcp"]
    );
}

#[wasm_bindgen_test]
fn parse_accepts_location_search_and_a_bare_query() {
    for input in [format!("?{}", query()), query()] {
        let parsed = parse_authorize_params_js(&input);
        assert!(get(&parsed, "error").is_null(), "{input}");
        let params = get(&parsed, "params");
        assert_eq!(string(&params, "state"), "st-1", "{input}");
        // No resource parameter: still an array, so callers can spread it.
        assert_eq!(strings(&get(&params, "resource")), Vec::<String>::new());
    }
}

#[wasm_bindgen_test]
fn parse_errors_carry_the_servers_code_and_redirectability() {
    // (case, URL, code, parameter named in the description, params kept, redirectable)
    let cases = [
        (
            "PKCE plain",
            authorize_url("").replace("S256", "plain"),
            "invalid_request",
            "code_challenge_method",
            true,
            true,
        ),
        (
            "response_type token",
            authorize_url("&response_type=token"),
            "unsupported_response_type",
            "response_type",
            true,
            true,
        ),
        (
            "relative resource",
            authorize_url("&resource=%2Fmcp"),
            "invalid_target",
            "resource",
            true,
            true,
        ),
        (
            "bad percent-encoding",
            authorize_url("&nonce=%zz"),
            "invalid_request",
            "nonce",
            false,
            true,
        ),
        (
            "repeated client_id",
            authorize_url("&client_id=other"),
            "invalid_request",
            "client_id",
            false,
            false,
        ),
    ];
    for (case, url, code, param, kept, redirectable) in cases {
        let parsed = parse_authorize_params_js(&url);
        assert_eq!(keys(&parsed), ["error", "params", "redirectable"], "{case}");
        let error = get(&parsed, "error");
        assert_error(&error, code, None);
        assert_eq!(keys(&error), ["code", "description", "status"], "{case}");
        let description = string(&error, "description");
        assert!(description.contains(param), "{case}: {description}");
        assert_eq!(!get(&parsed, "params").is_null(), kept, "{case}");
        assert_eq!(
            get(&parsed, "redirectable").as_bool(),
            Some(redirectable),
            "{case}"
        );
    }
}

#[wasm_bindgen_test]
fn parse_refuses_to_redirect_to_a_redirect_uri_with_a_fragment() {
    let parsed = parse_authorize_params_js(&authorize_url("").replace("callback", "callback%23x"));
    assert_error(&get(&parsed, "error"), "invalid_redirect_uri", None);
    assert_eq!(get(&parsed, "redirectable"), JsValue::FALSE);
    // The raw parameters are still there, for the page to ask the server what to show.
    assert_eq!(
        string(&get(&parsed, "params"), "redirect_uri"),
        "http://127.0.0.1:9999/callback#x"
    );
}

#[wasm_bindgen_test]
fn parse_of_an_empty_url_names_the_missing_client_id() {
    let parsed = parse_authorize_params_js("https://app.example.com/oauth/authorize");
    let error = get(&parsed, "error");
    assert_error(&error, "invalid_request", None);
    assert!(string(&error, "description").contains("client_id"));
    assert_eq!(get(&parsed, "redirectable"), JsValue::FALSE);
}

// ---------------------------------------------------------------------------------------------
// decodeTrustedAuthToken

#[wasm_bindgen_test]
fn decode_returns_the_claims_as_a_plain_object_with_expiry() {
    let exp = (now() + 300.0).floor();
    let decoded = decode_trusted_auth_token_js(&tat(exp)).unwrap();
    assert_eq!(keys(&decoded), ["claims", "expired", "expires_at"]);
    assert_eq!(get(&decoded, "expires_at").as_f64(), Some(exp));
    assert_eq!(get(&decoded, "expired"), JsValue::FALSE);
    let claims = get(&decoded, "claims");
    assert_eq!(
        keys(&claims),
        ["aud", "exp", "iss", "jti", "name", "sub"],
        "every claim the product put in, nothing added"
    );
    assert_eq!(string(&claims, "sub"), "alice");
    assert_eq!(string(&claims, "name"), "Zoë", "UTF-8 payloads decode");
}

#[wasm_bindgen_test]
fn decode_marks_expired_only_beyond_the_servers_leeway() {
    let expired = decode_trusted_auth_token_js(&tat((now() - 120.0).floor())).unwrap();
    assert_eq!(get(&expired, "expired"), JsValue::TRUE);
    // 30 s past exp is within the server's 60 s leeway: the server still accepts it.
    let recent = decode_trusted_auth_token_js(&tat((now() - 30.0).floor())).unwrap();
    assert_eq!(get(&recent, "expired"), JsValue::FALSE);
    // No exp at all: nothing to judge by.
    let no_exp = decode_trusted_auth_token_js(&jwt(r#"{"sub":"alice"}"#)).unwrap();
    assert!(get(&no_exp, "expires_at").is_null());
    assert_eq!(get(&no_exp, "expired"), JsValue::FALSE);
}

#[wasm_bindgen_test]
fn decode_of_a_malformed_token_throws_an_error_object_with_a_code() {
    let not_base64 = format!("{}.not*base64.sig", base64url("{}"));
    let not_object = jwt("[1,2]");
    let not_json = jwt("not json");
    for (case, token) in [
        ("empty", ""),
        ("two parts", "a.b"),
        ("four parts", "a.b.c.d"),
        ("payload not base64url", not_base64.as_str()),
        ("payload not an object", not_object.as_str()),
        ("payload not JSON", not_json.as_str()),
    ] {
        let Err(error) = decode_trusted_auth_token_js(token) else {
            panic!("{case}: decoded");
        };
        assert_error(&error, "invalid_trusted_auth_token", None);
        assert_eq!(keys(&error), ["code", "description", "status"], "{case}");
    }
}

// ---------------------------------------------------------------------------------------------
// Consentry: what is refused locally, and what a failed request looks like

#[wasm_bindgen_test]
async fn calls_that_need_a_session_reject_with_session_missing_without_a_request() {
    let base = base_url("no-session");
    let consentry = Consentry::new(&base);
    assert_eq!(consentry.session_token(), None);
    let calls = [
        consentry.connected_apps(),
        consentry.revoke_connected_app("demo-agent".into()),
        consentry.authorize_start(params_object(), None, None, None),
        consentry.authorize_submit(params_object(), true),
    ];
    for call in calls {
        assert_error(&rejection(call).await, "session_missing", None);
    }
    assert_eq!(requests_under(&base), 0);
}

#[wasm_bindgen_test]
async fn an_expired_session_rejects_with_session_expired_without_a_request() {
    let base = base_url("expired-session");
    let consentry = Consentry::new(&base);
    consentry.set_session(Some("s-1".into()), Some(now() - 1.0));
    assert_eq!(consentry.session_token().as_deref(), Some("s-1"));
    assert_error(
        &rejection(consentry.connected_apps()).await,
        "session_expired",
        None,
    );
    assert_eq!(requests_under(&base), 0);
}

#[wasm_bindgen_test]
async fn an_expired_trusted_auth_token_rejects_before_any_request() {
    let base = base_url("expired-tat");
    let consentry = Consentry::new(&base);
    let expired = tat((now() - 120.0).floor());
    let error = rejection(consentry.attest(expired.clone(), "default".into(), Some(10))).await;
    assert_error(&error, "trusted_auth_token_expired", None);
    let error = rejection(consentry.authorize_start(
        params_object(),
        Some(expired),
        Some("default".into()),
        None,
    ))
    .await;
    assert_error(&error, "trusted_auth_token_expired", None);
    let error = rejection(consentry.attest("not-a-jwt".into(), "default".into(), None)).await;
    assert_error(&error, "invalid_trusted_auth_token", None);
    assert_eq!(requests_under(&base), 0);
    assert_eq!(consentry.session_token(), None);
}

/// The control for the `requests_under(..) == 0` checks above: a usable token does go out, and a
/// server that is not Consentry (the test runner's own) gets a code from its HTTP status.
#[wasm_bindgen_test]
async fn a_usable_token_is_sent_and_a_foreign_404_becomes_not_found() {
    let base = base_url("foreign-server");
    let consentry = Consentry::new(&base);
    let error = rejection(consentry.authorize_start(
        params_object(),
        Some(tat((now() + 300.0).floor())),
        Some("default".into()),
        None,
    ))
    .await;
    assert_error(&error, "not_found", Some(404.0));
    assert_eq!(requests_under(&base), 1);
    assert_eq!(consentry.session_token(), None);
}

#[wasm_bindgen_test]
async fn a_closed_loopback_port_rejects_with_network_error() {
    let consentry = Consentry::new(CLOSED_LOOPBACK);
    let error =
        rejection(consentry.attest(tat((now() + 300.0).floor()), "default".into(), None)).await;
    assert_error(&error, "network_error", None);
    assert!(
        string(&error, "description").contains("allowed_origins"),
        "the description points at the usual cause: {error:?}"
    );

    consentry.set_session(Some("s-1".into()), None);
    assert_error(
        &rejection(consentry.connected_apps()).await,
        "network_error",
        None,
    );
    // A failed request keeps the session: the page may retry.
    assert_eq!(consentry.session_token().as_deref(), Some("s-1"));
}

#[wasm_bindgen_test]
fn set_session_restores_and_clears() {
    let consentry = Consentry::new(CLOSED_LOOPBACK);
    consentry.set_session(Some("s-2".into()), Some(1_900_000_000.0));
    assert_eq!(consentry.session_token().as_deref(), Some("s-2"));
    assert_eq!(consentry.session_expires_at(), Some(1_900_000_000.0));
    consentry.set_session(None, None);
    assert_eq!(consentry.session_token(), None);
    assert_eq!(consentry.session_expires_at(), None);
}
