//! Every way a call can end, mapped to one stable code; and what each call sends.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use consentry_core::{
    AuthorizeParams, Client, HttpResponse, Method, SdkError, SdkErrorCode, Session, TatLogin,
    TransportError, WireValue, base64url_decode, decode_trusted_auth_token,
};
use consentry_protocol::ErrorCode;
use consentry_testkit::platform;
use consentry_testkit::platform::{FakeJson, FakePlatform, NOW, b64, block_on, jwt, no_body};
use serde_json::json;

const BASE: &str = "https://auth.example.com/";

fn login(exp: f64) -> TatLogin {
    TatLogin {
        trusted_auth_token: jwt(json!({"sub": "u1", "exp": exp, "email": "a@example.com"})),
        profile_id: "default".to_owned(),
        session_duration_minutes: Some(10),
    }
}

fn params() -> AuthorizeParams {
    AuthorizeParams {
        client_id: Some("demo-agent".to_owned()),
        redirect_uri: Some("http://127.0.0.1:9999/callback".to_owned()),
        scope: Some("notes:read".to_owned()),
        resource: vec!["http://127.0.0.1:8788/mcp".to_owned()],
        ..AuthorizeParams::default()
    }
}

fn signed_in(platform: FakePlatform) -> Client<FakePlatform> {
    let client = Client::new(platform, BASE);
    client.set_session(Some(Session {
        token: "sess".to_owned(),
        expires_at: Some(NOW + 600.0),
    }));
    client
}

/// Every call that reaches the network, for the error-mapping tables.
fn every_call(
    response: Result<HttpResponse<FakeJson>, TransportError>,
) -> Vec<(&'static str, SdkError)> {
    calls(
        response,
        &["attest", "start", "start+tat", "submit", "list", "revoke"],
    )
}

fn calls(
    response: Result<HttpResponse<FakeJson>, TransportError>,
    which: &[&'static str],
) -> Vec<(&'static str, SdkError)> {
    let mut out = Vec::new();
    let run = |c: &Client<FakePlatform>, which: &'static str| -> Result<(), SdkError> {
        block_on(async {
            match which {
                "attest" => c.attest(&login(NOW + 300.0)).await.map(drop),
                "start" => c.authorize_start(&params(), None).await.map(drop),
                "start+tat" => c
                    .authorize_start(&params(), Some(&login(NOW + 300.0)))
                    .await
                    .map(drop),
                "submit" => c.authorize_submit(&params(), true).await.map(drop),
                "list" => c.connected_apps().await.map(drop),
                _ => c.revoke_connected_app("demo-agent").await,
            }
        })
    };
    for &which in which {
        let client = signed_in(FakePlatform::answering([response.clone()]));
        let error = run(&client, which).expect_err(which);
        assert_eq!(client.platform().requests.borrow().len(), 1, "{which}");
        out.push((which, error));
    }
    out
}

#[test]
fn every_server_error_code_maps_to_the_same_sdk_code() {
    for code in ErrorCode::ALL {
        for status in [400, 401, 403, 404, 429, 500, 503] {
            let body = json!({
                "error": code.as_str(),
                "error_description": "redirect_uri 'x' is not registered",
                "redirect_uri": "http://127.0.0.1:9999/callback?error=x"
            });
            for (call, error) in every_call(platform::json(status, body)) {
                assert_eq!(error.code, SdkErrorCode::Server(code), "{call} {status}");
                assert_eq!(error.code.as_str(), code.as_str());
                assert_eq!(error.status, Some(status), "{call}");
                assert_eq!(error.description, "redirect_uri 'x' is not registered");
                assert_eq!(
                    error.redirect_uri.as_deref(),
                    Some("http://127.0.0.1:9999/callback?error=x")
                );
            }
        }
    }
}

#[test]
fn statuses_without_a_consentry_error_body_map_by_status() {
    let table: &[(u16, SdkErrorCode)] = &[
        (400, SdkErrorCode::Server(ErrorCode::InvalidRequest)),
        (401, SdkErrorCode::Server(ErrorCode::InvalidSession)),
        (403, SdkErrorCode::Server(ErrorCode::AccessDenied)),
        (404, SdkErrorCode::Server(ErrorCode::NotFound)),
        (405, SdkErrorCode::Server(ErrorCode::MethodNotAllowed)),
        (429, SdkErrorCode::Server(ErrorCode::RateLimited)),
        (500, SdkErrorCode::Server(ErrorCode::ServerError)),
        (502, SdkErrorCode::Server(ErrorCode::ServerError)),
        (503, SdkErrorCode::Server(ErrorCode::TemporarilyUnavailable)),
        (504, SdkErrorCode::Server(ErrorCode::ServerError)),
        (302, SdkErrorCode::InvalidResponse),
        (418, SdkErrorCode::InvalidResponse),
    ];
    for &(status, code) in table {
        let bodies = [
            no_body(status),
            // JSON, but not a Consentry error: an unknown code, no code, an array.
            platform::json(status, json!({"error": "teapot_overflow"})),
            platform::json(status, json!({"message": "Bad Gateway"})),
            platform::json(status, json!([])),
        ];
        for response in bodies {
            for (call, error) in every_call(response) {
                assert_eq!(error.code, code, "{call} {status}");
                assert_eq!(error.status, Some(status), "{call} {status}");
                assert!(!error.description.is_empty());
                assert_eq!(error.redirect_uri, None);
            }
        }
    }
}

#[test]
fn a_success_without_json_is_invalid_response() {
    for response in [
        no_body(200),
        platform::json(200, json!("ok")),
        platform::json(200, json!(1)),
    ] {
        for (call, error) in every_call(response) {
            assert_eq!(error.code, SdkErrorCode::InvalidResponse, "{call}");
            assert_eq!(error.status, Some(200));
        }
    }
}

#[test]
fn a_success_missing_what_the_call_needs_is_invalid_response() {
    // attest/start+tat need session_token, start needs redirect_host, submit redirect_uri,
    // list an array; revoke takes any JSON.
    let response = platform::json(200, json!({"unexpected": true}));
    for (call, error) in calls(
        response,
        &["attest", "start", "start+tat", "submit", "list"],
    ) {
        assert_eq!(error.code, SdkErrorCode::InvalidResponse, "{call}");
        assert!(
            error.description.contains("no ") || error.description.contains("array"),
            "{call}: {}",
            error.description
        );
    }
}

#[test]
fn a_network_failure_is_network_error() {
    let failure = Err(TransportError {
        detail: "Failed to fetch".to_owned(),
    });
    for (call, error) in every_call(failure) {
        assert_eq!(error.code, SdkErrorCode::NetworkError, "{call}");
        assert_eq!(error.code.as_str(), "network_error");
        assert_eq!(error.status, None);
        assert!(error.description.contains("Failed to fetch"));
        assert!(error.description.contains("allowed_origins"));
    }
}

#[test]
fn calls_needing_a_session_fail_without_one_before_any_request() {
    let client = Client::new(FakePlatform::default(), BASE);
    let errors = block_on(async {
        vec![
            client.authorize_start(&params(), None).await.map(drop),
            client.authorize_submit(&params(), true).await.map(drop),
            client.connected_apps().await.map(drop),
            client.revoke_connected_app("x").await,
        ]
    });
    for error in errors {
        let error = error.expect_err("no session");
        assert_eq!(error.code, SdkErrorCode::SessionMissing);
        assert_eq!(error.code.as_str(), "session_missing");
    }
    assert!(client.platform().requests.borrow().is_empty());
}

#[test]
fn an_expired_session_fails_locally_as_session_expired() {
    let client = Client::new(FakePlatform::default(), BASE);
    client.set_session(Some(Session {
        token: "s".to_owned(),
        expires_at: Some(NOW - 1.0),
    }));
    let error = block_on(client.connected_apps()).expect_err("expired");
    assert_eq!(error.code, SdkErrorCode::Server(ErrorCode::SessionExpired));
    assert!(client.platform().requests.borrow().is_empty());
}

#[test]
fn an_expired_tat_fails_fast_before_any_request() {
    let client = Client::new(FakePlatform::default(), BASE);
    // The server's leeway is 60 s: 61 s past exp is refused, 59 s past is sent.
    let expired = login(NOW - 61.0);
    let e1 = block_on(client.attest(&expired)).expect_err("expired");
    let e2 = block_on(client.authorize_start(&params(), Some(&expired))).expect_err("expired");
    for e in [e1, e2] {
        assert_eq!(e.code, SdkErrorCode::TrustedAuthTokenExpired);
        assert_eq!(e.code.as_str(), "trusted_auth_token_expired");
        assert_eq!(e.status, None);
    }
    assert!(client.platform().requests.borrow().is_empty());

    let client = Client::new(
        FakePlatform::answering([platform::json(
            200,
            json!({"session_token": "s", "expires_at": NOW + 600.0, "user": {"user_id": "u1"}}),
        )]),
        BASE,
    );
    block_on(client.attest(&login(NOW - 59.0))).expect("within the leeway");
}

#[test]
fn a_malformed_tat_is_invalid_trusted_auth_token_before_any_request() {
    let client = Client::new(FakePlatform::default(), BASE);
    let not_json = format!("e30.{}.sig", b64(b"not json"));
    let not_object = format!("e30.{}.sig", b64(b"[1]"));
    for token in [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "e30.!!!.sig",
        &not_json,
        &not_object,
    ] {
        let login = TatLogin {
            trusted_auth_token: token.to_owned(),
            profile_id: "default".to_owned(),
            session_duration_minutes: None,
        };
        let error = block_on(client.attest(&login)).expect_err(token);
        assert_eq!(
            error.code,
            SdkErrorCode::Server(ErrorCode::InvalidTrustedAuthToken),
            "{token}"
        );
    }
    assert!(client.platform().requests.borrow().is_empty());
}

#[test]
fn sdk_codes_are_distinct_from_the_servers() {
    let mut all: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    all.extend(SdkErrorCode::SDK_ONLY.iter().map(|c| c.as_str()));
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), n);
    assert_eq!(n, 32);
}

#[test]
fn attest_sends_snake_case_and_keeps_the_session() {
    let client = Client::new(
        FakePlatform::answering([platform::json(
            200,
            json!({"session_token": "s1", "expires_at": NOW + 600.0, "user": {"user_id": "u1"}}),
        )]),
        BASE,
    );
    let tat = login(NOW + 300.0);
    let body = block_on(client.attest(&tat)).expect("attest");
    assert_eq!(body.0["user"]["user_id"], "u1");
    assert_eq!(
        client.session(),
        Some(Session {
            token: "s1".to_owned(),
            expires_at: Some(NOW + 600.0)
        })
    );
    let requests = client.platform().requests.borrow();
    let request = &requests[0];
    assert_eq!(request.method, Method::Post);
    assert_eq!(request.url, "https://auth.example.com/v1/sessions/attest");
    assert_eq!(request.bearer, None);
    let body = request.body.as_ref().expect("a body");
    assert_eq!(
        body.get("token"),
        Some(&WireValue::Str(tat.trusted_auth_token.clone()))
    );
    assert_eq!(
        body.get("profile_id"),
        Some(&WireValue::Str("default".into()))
    );
    assert_eq!(
        body.get("session_duration_minutes"),
        Some(&WireValue::U32(10))
    );
}

#[test]
fn start_with_a_tat_signs_in_in_the_same_request() {
    let client = Client::new(
        FakePlatform::answering([
            platform::json(
                200,
                json!({"redirect_host": "127.0.0.1:9999", "session_token": "s2", "session_expires_at": NOW + 600.0}),
            ),
            platform::json(
                200,
                json!({"redirect_uri": "http://127.0.0.1:9999/callback?code=c"}),
            ),
        ]),
        BASE,
    );
    block_on(client.authorize_start(&params(), Some(&login(NOW + 300.0)))).expect("start");
    assert_eq!(client.session().map(|s| s.token).as_deref(), Some("s2"));
    let location = block_on(client.authorize_submit(&params(), true)).expect("submit");
    assert_eq!(location, "http://127.0.0.1:9999/callback?code=c");

    let requests = client.platform().requests.borrow();
    let start = requests[0].body.as_ref().expect("body");
    assert_eq!(requests[0].bearer, None);
    assert!(matches!(
        start.get("trusted_auth_token"),
        Some(WireValue::Str(_))
    ));
    assert_eq!(
        start.get("client_id"),
        Some(&WireValue::Str("demo-agent".into()))
    );
    assert_eq!(
        start.get("resource"),
        Some(&WireValue::StrList(vec![
            "http://127.0.0.1:8788/mcp".into()
        ]))
    );
    // Absent parameters are left out, not sent as null.
    assert_eq!(start.get("state"), None);
    assert_eq!(
        requests[1].url,
        "https://auth.example.com/v1/oauth/authorize/submit"
    );
    assert_eq!(requests[1].bearer.as_deref(), Some("s2"));
    let submit = requests[1].body.as_ref().expect("body");
    assert_eq!(submit.get("consent_granted"), Some(&WireValue::Bool(true)));
    assert_eq!(submit.get("trusted_auth_token"), None);
}

#[test]
fn connected_apps_list_and_revoke_use_the_session() {
    let client = signed_in(FakePlatform::answering([
        platform::json(200, json!([{"client_id": "a b/c"}])),
        platform::json(200, json!({"revoked": true})),
    ]));
    let apps = block_on(client.connected_apps()).expect("list");
    assert_eq!(apps.0[0]["client_id"], "a b/c");
    block_on(client.revoke_connected_app("a b/c")).expect("revoke");
    let requests = client.platform().requests.borrow();
    assert_eq!(requests[0].method, Method::Get);
    assert_eq!(
        requests[0].url,
        "https://auth.example.com/v1/connected_apps"
    );
    assert_eq!(requests[0].body, None);
    assert_eq!(
        requests[1].url,
        "https://auth.example.com/v1/connected_apps/a%20b%2Fc/revoke"
    );
    assert_eq!(requests[1].bearer.as_deref(), Some("sess"));
}

#[test]
fn tat_claims_decode_without_verification() {
    let platform = FakePlatform::default();
    let token = jwt(json!({"sub": "u1", "email": "a@example.com", "exp": NOW + 300.0}));
    let info = decode_trusted_auth_token(&platform, &token).expect("decodes");
    assert_eq!(info.claims.0["email"], "a@example.com");
    assert_eq!(info.expires_at, Some(NOW + 300.0));
    assert!(!info.expired);
    let no_exp = decode_trusted_auth_token(&platform, &jwt(json!({"sub": "u1"}))).expect("decodes");
    assert_eq!(no_exp.expires_at, None);
    assert!(!no_exp.expired);
    let old =
        decode_trusted_auth_token(&platform, &jwt(json!({"exp": NOW - 61.0}))).expect("decodes");
    assert!(old.expired);
}

#[test]
fn base64url_decoding_follows_rfc_4648() {
    let cases: &[(&str, Option<&[u8]>)] = &[
        ("", Some(b"")),
        ("Zg", Some(b"f")),
        ("Zg==", Some(b"f")),
        ("Zm8", Some(b"fo")),
        ("Zm9v", Some(b"foo")),
        ("-_8", Some(&[0xfb, 0xff])),
        ("Z", None),
        ("Zm9v+", None),
        ("Zm/v", None),
    ];
    for (input, expected) in cases {
        assert_eq!(base64url_decode(input).as_deref(), *expected, "{input}");
    }
}
