//! Table-driven tests of the public grammar: `parse_query`, `AuthorizeRequest::parse`, the
//! redirect-URI helpers, `ParamError`'s messages and the serde shapes. Every case carries a label
//! so that a failure names the case, not just the line of the loop.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use consentry_protocol::authorize::{validate_client_id, validate_redirect_uri};
use consentry_protocol::wire::{AuthorizeStartRequest, AuthorizeSubmitRequest};
use consentry_protocol::{
    AuthorizeParams, AuthorizeRequest, ErrorBody, ErrorCode, ParamError, ParamProblem, Prompt,
    UriParts, append_query, is_loopback_host, is_valid_code_verifier, parse_query, parse_scope,
    percent_decode, percent_encode, redirect_host, redirect_uri_matches, split_uri,
};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// RFC 7636 Appendix B: BASE64URL(SHA256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")).
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// Build raw params from `(field, value)` pairs; `resource` may repeat.
fn ap(fields: &[(&str, &str)]) -> AuthorizeParams {
    let mut p = AuthorizeParams::default();
    for &(k, v) in fields {
        let v = v.to_owned();
        match k {
            "client_id" => p.client_id = Some(v),
            "redirect_uri" => p.redirect_uri = Some(v),
            "response_type" => p.response_type = Some(v),
            "scope" => p.scope = Some(v),
            "state" => p.state = Some(v),
            "code_challenge" => p.code_challenge = Some(v),
            "code_challenge_method" => p.code_challenge_method = Some(v),
            "prompt" => p.prompt = Some(v),
            "nonce" => p.nonce = Some(v),
            "resource" => p.resource.push(v),
            other => panic!("test helper ap(): unknown field {other}"),
        }
    }
    p
}

/// A request that passes every check.
fn valid() -> AuthorizeParams {
    ap(&[
        ("client_id", "mcp-client"),
        ("redirect_uri", "https://app.example.com/cb"),
        ("response_type", "code"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ])
}

fn repeat(s: &str, n: usize) -> String {
    s.repeat(n)
}

/// What an error must look like: which parameter, which problem, which OAuth code, and whether it
/// may be sent back to the client.
#[derive(Debug)]
struct WantErr {
    param: &'static str,
    problem: ParamProblem,
    code: ErrorCode,
    redirectable: bool,
}

fn want(
    param: &'static str,
    problem: ParamProblem,
    code: ErrorCode,
    redirectable: bool,
) -> WantErr {
    WantErr {
        param,
        problem,
        code,
        redirectable,
    }
}

fn check_err(label: &str, got: &ParamError, want: &WantErr) {
    assert_eq!(got.param, want.param, "[{label}] param (got {got:?})");
    assert_eq!(got.problem, want.problem, "[{label}] problem");
    assert_eq!(got.code(), want.code, "[{label}] code() for {got:?}");
    assert_eq!(
        got.is_redirectable(),
        want.redirectable,
        "[{label}] is_redirectable() for {got:?}"
    );
    let msg = got.to_string();
    assert!(
        msg.contains(want.param),
        "[{label}] message {msg:?} does not name the parameter {}",
        want.param
    );
}

fn bad_chars_uri() -> ParamProblem {
    ParamProblem::BadCharacters {
        expected: "a URI without spaces, control or non-ASCII characters",
    }
}

fn bad_chars_opaque() -> ParamProblem {
    ParamProblem::BadCharacters {
        expected: "no control characters",
    }
}

// ---------------------------------------------------------------------------------------------
// parse_query / percent_decode
// ---------------------------------------------------------------------------------------------

#[test]
fn parse_query_accepts_urls_and_queries() {
    let cases: Vec<(&str, &str, AuthorizeParams)> = vec![
        // --- the three input forms ---
        (
            "full URL",
            "https://as.example.com/authorize?client_id=abc&state=xyz",
            ap(&[("client_id", "abc"), ("state", "xyz")]),
        ),
        (
            "?query (location.search)",
            "?client_id=abc&state=xyz",
            ap(&[("client_id", "abc"), ("state", "xyz")]),
        ),
        (
            "bare query",
            "client_id=abc&state=xyz",
            ap(&[("client_id", "abc"), ("state", "xyz")]),
        ),
        (
            "path with query",
            "/authorize?client_id=abc",
            ap(&[("client_id", "abc")]),
        ),
        ("empty input", "", AuthorizeParams::default()),
        ("lone ?", "?", AuthorizeParams::default()),
        (
            "URL without a query",
            "https://as.example.com/authorize",
            AuthorizeParams::default(),
        ),
        (
            "URL with a port and no query",
            "http://localhost:8787/authorize",
            AuthorizeParams::default(),
        ),
        // --- fragment ---
        (
            "fragment ignored after ?query",
            "?client_id=abc#state=evil",
            ap(&[("client_id", "abc")]),
        ),
        (
            "fragment ignored after full URL",
            "https://as.example.com/authorize?client_id=abc#frag",
            ap(&[("client_id", "abc")]),
        ),
        (
            "fragment ignored after bare query",
            "client_id=abc#state=evil",
            ap(&[("client_id", "abc")]),
        ),
        (
            "? inside the fragment is not a query",
            "https://as.example.com/authorize#x?client_id=abc",
            AuthorizeParams::default(),
        ),
        // --- unencoded reserved characters inside values ---
        (
            "bare query with an unencoded URL value",
            "client_id=abc&redirect_uri=https://app.example.com/cb",
            ap(&[
                ("client_id", "abc"),
                ("redirect_uri", "https://app.example.com/cb"),
            ]),
        ),
        (
            "bare query with an unencoded ? in a value",
            "client_id=abc&redirect_uri=https://app.example.com/cb?x=1",
            ap(&[
                ("client_id", "abc"),
                ("redirect_uri", "https://app.example.com/cb?x=1"),
            ]),
        ),
        (
            "full URL with an unencoded ? in a value",
            "https://as.example.com/authorize?client_id=abc&redirect_uri=https://app.example.com/cb?x=1",
            ap(&[
                ("client_id", "abc"),
                ("redirect_uri", "https://app.example.com/cb?x=1"),
            ]),
        ),
        (
            "bare query whose first value is a URL",
            "client_id=https://client.example.com/meta.json&state=s",
            ap(&[
                ("client_id", "https://client.example.com/meta.json"),
                ("state", "s"),
            ]),
        ),
        (
            "unencoded = in a value",
            "state=a=b",
            ap(&[("state", "a=b")]),
        ),
        // --- decoding ---
        (
            "+ is a space",
            "scope=openid+profile",
            ap(&[("scope", "openid profile")]),
        ),
        (
            "%20 is a space",
            "scope=openid%20profile",
            ap(&[("scope", "openid profile")]),
        ),
        ("%2B is a literal +", "state=a%2Bb", ap(&[("state", "a+b")])),
        (
            "lowercase hex escapes",
            "redirect_uri=https%3a%2f%2fapp.example.com%2fcb",
            ap(&[("redirect_uri", "https://app.example.com/cb")]),
        ),
        (
            "uppercase hex escapes",
            "redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb",
            ap(&[("redirect_uri", "https://app.example.com/cb")]),
        ),
        (
            "encoded & and = stay inside the value",
            "state=a%26b%3Dc&nonce=n",
            ap(&[("state", "a&b=c"), ("nonce", "n")]),
        ),
        (
            "UTF-8 two-byte escapes",
            "state=%C3%A9t%C3%A9",
            ap(&[("state", "été")]),
        ),
        (
            "UTF-8 three-byte escape",
            "state=%E2%9C%93",
            ap(&[("state", "✓")]),
        ),
        (
            "UTF-8 four-byte escape",
            "state=%F0%9F%98%80",
            ap(&[("state", "😀")]),
        ),
        (
            "raw (unescaped) UTF-8 passes through",
            "state=été",
            ap(&[("state", "été")]),
        ),
        (
            "%00 decodes (validation refuses it later)",
            "state=%00",
            ap(&[("state", "\0")]),
        ),
        (
            "encoded key",
            "client%5Fid=abc",
            ap(&[("client_id", "abc")]),
        ),
        // --- shapes of pairs ---
        // Sent without a value is omitted (RFC 6749 §3.1), as in a token request's body: the
        // one form decoder reads both.
        ("key without = is omitted", "prompt", ap(&[])),
        ("key with empty value is omitted", "client_id=", ap(&[])),
        (
            "empty pairs (&&) ignored",
            "&&client_id=abc&&state=s&",
            ap(&[("client_id", "abc"), ("state", "s")]),
        ),
        (
            "unknown parameters ignored",
            "foo=bar&client_id=abc&foo=baz&access_type=offline",
            ap(&[("client_id", "abc")]),
        ),
        (
            "unknown parameter with a bad escape is never decoded",
            "foo=%zz&client_id=abc",
            ap(&[("client_id", "abc")]),
        ),
        (
            "parameter names are case-sensitive (CLIENT_ID is unknown)",
            "CLIENT_ID=abc",
            AuthorizeParams::default(),
        ),
        // --- resource repeats ---
        (
            "repeated resource kept in order, duplicates too",
            "resource=https%3A%2F%2Fb.example%2F&resource=https://a.example/&resource=https%3A%2F%2Fb.example%2F",
            ap(&[
                ("resource", "https://b.example/"),
                ("resource", "https://a.example/"),
                ("resource", "https://b.example/"),
            ]),
        ),
        (
            "empty resource dropped: sent without a value is omitted (RFC 6749 §3.1)",
            "resource=&resource=https://a.example/",
            ap(&[("resource", "https://a.example/")]),
        ),
        // --- everything at once ---
        (
            "every parameter",
            "https://as.example.com/authorize?response_type=code&client_id=c&redirect_uri=http%3A%2F%2F127.0.0.1%3A5555%2Fcb\
             &scope=a+b&state=s&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256\
             &resource=https%3A%2F%2Fapi.example.com%2Fmcp&prompt=consent&nonce=n",
            ap(&[
                ("response_type", "code"),
                ("client_id", "c"),
                ("redirect_uri", "http://127.0.0.1:5555/cb"),
                ("scope", "a b"),
                ("state", "s"),
                ("code_challenge", CHALLENGE),
                ("code_challenge_method", "S256"),
                ("resource", "https://api.example.com/mcp"),
                ("prompt", "consent"),
                ("nonce", "n"),
            ]),
        ),
    ];
    for (label, input, expected) in cases {
        match parse_query(input) {
            Ok(got) => assert_eq!(got, expected, "[{label}] input {input:?}"),
            Err(e) => panic!("[{label}] input {input:?}: unexpected error {e:?} ({e})"),
        }
    }
}

#[test]
fn parse_query_refuses_bad_escapes_and_repeats() {
    use ErrorCode::*;
    use ParamProblem::*;
    let mut cases: Vec<(String, String, WantErr)> = vec![];
    let mut case = |label: &str, input: &str, w: WantErr| {
        cases.push((label.to_owned(), input.to_owned(), w));
    };

    // Bad escapes name the parameter whose value they are in.
    case(
        "%zz in state",
        "state=%zz",
        want("state", BadEncoding, InvalidRequest, true),
    );
    case(
        "truncated %4 in state",
        "state=ab%4",
        want("state", BadEncoding, InvalidRequest, true),
    );
    case(
        "lone % in state",
        "state=%",
        want("state", BadEncoding, InvalidRequest, true),
    );
    case(
        "%g0 (bad high nibble)",
        "nonce=%g0",
        want("nonce", BadEncoding, InvalidRequest, true),
    );
    case(
        "% before a multi-byte char",
        "state=%é",
        want("state", BadEncoding, InvalidRequest, true),
    );
    case(
        "lone UTF-8 lead byte %C3",
        "state=%C3",
        want("state", BadEncoding, InvalidRequest, true),
    );
    case(
        "%FF is never UTF-8",
        "state=%FF",
        want("state", BadEncoding, InvalidRequest, true),
    );
    case(
        "overlong UTF-8 %C0%AF",
        "state=%C0%AF",
        want("state", BadEncoding, InvalidRequest, true),
    );
    case(
        "UTF-16 surrogate %ED%A0%80",
        "state=%ED%A0%80",
        want("state", BadEncoding, InvalidRequest, true),
    );
    case(
        "bad escape in client_id",
        "client_id=%zz",
        want("client_id", BadEncoding, InvalidRequest, false),
    );
    case(
        "bad escape in redirect_uri",
        "client_id=c&redirect_uri=https%3A%2F%2Fa%2",
        want("redirect_uri", BadEncoding, InvalidRedirectUri, false),
    );
    case(
        "bad escape in scope",
        "scope=a%zz",
        want("scope", BadEncoding, InvalidScope, true),
    );
    case(
        "bad escape in resource",
        "resource=%zz",
        want("resource", BadEncoding, InvalidTarget, true),
    );
    case(
        "bad escape in the second resource",
        "resource=https://a.example/&resource=%4",
        want("resource", BadEncoding, InvalidTarget, true),
    );
    case(
        "bad escape in response_type",
        "response_type=%",
        want("response_type", BadEncoding, InvalidRequest, true),
    );
    case(
        "bad escape in code_challenge",
        "code_challenge=%zz",
        want("code_challenge", BadEncoding, InvalidRequest, true),
    );
    case(
        "bad escape in code_challenge_method",
        "code_challenge_method=S%2",
        want("code_challenge_method", BadEncoding, InvalidRequest, true),
    );
    case(
        "bad escape in prompt",
        "prompt=%zz",
        want("prompt", BadEncoding, InvalidRequest, true),
    );
    case(
        "bad escape in a key",
        "%zz=1",
        want("query", BadEncoding, InvalidRequest, false),
    );
    case(
        "truncated escape in a key",
        "client_id=c&cl%4=1",
        want("query", BadEncoding, InvalidRequest, false),
    );
    case(
        "bad escape in a full URL",
        "https://as.example.com/authorize?client_id=c&state=%zz",
        want("state", BadEncoding, InvalidRequest, true),
    );

    // Every single-valued parameter may appear once.
    for (param, code, redirectable) in [
        ("client_id", InvalidRequest, false),
        ("redirect_uri", InvalidRedirectUri, false),
        ("response_type", InvalidRequest, true),
        ("scope", InvalidScope, true),
        ("state", InvalidRequest, true),
        ("code_challenge", InvalidRequest, true),
        ("code_challenge_method", InvalidRequest, true),
        ("prompt", InvalidRequest, true),
        ("nonce", InvalidRequest, true),
    ] {
        case(
            &format!("{param} repeated"),
            &format!("{param}=a&{param}=b"),
            want(param, Repeated, code, redirectable),
        );
        case(
            &format!("{param} repeated, first empty"),
            &format!("{param}=&{param}=b"),
            want(param, Repeated, code, redirectable),
        );
        case(
            &format!("{param} repeated with the same value"),
            &format!("{param}=a&x=1&{param}=a"),
            want(param, Repeated, code, redirectable),
        );
    }
    case(
        "client_id repeated through an encoded key",
        "client_id=a&client%5Fid=b",
        want("client_id", Repeated, InvalidRequest, false),
    );
    case(
        "state repeated in a full URL",
        "https://as.example.com/authorize?state=a&client_id=c&state=b",
        want("state", Repeated, InvalidRequest, true),
    );

    for (label, input, w) in &cases {
        match parse_query(input) {
            Ok(p) => panic!("[{label}] input {input:?}: expected an error, got {p:?}"),
            Err(e) => check_err(label, &e, w),
        }
    }
}

#[test]
fn percent_decode_table() {
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("empty", "", Some("")),
        ("plain", "abc", Some("abc")),
        ("plus", "a+b", Some("a b")),
        ("%41", "%41", Some("A")),
        ("lowercase hex", "%2f", Some("/")),
        ("mixed case hex", "%2F%2f", Some("//")),
        ("encoded plus", "%2B", Some("+")),
        ("encoded percent", "%25", Some("%")),
        ("escape at the end", "ab%21", Some("ab!")),
        ("UTF-8", "%C3%A9", Some("é")),
        ("NUL", "%00", Some("\0")),
        ("lone %", "%", None),
        ("truncated %4", "%4", None),
        ("bad hex", "%zz", None),
        ("bad low nibble", "%4g", None),
        ("lone lead byte", "%C3", None),
        ("continuation byte alone", "%A9", None),
        ("% then multi-byte char", "%éé", None),
    ];
    for &(label, input, expected) in cases {
        assert_eq!(
            percent_decode(input).as_deref(),
            expected,
            "[{label}] {input:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// AuthorizeRequest::parse
// ---------------------------------------------------------------------------------------------

#[test]
fn valid_request_parses() {
    let req = AuthorizeRequest::parse(&valid()).unwrap();
    assert_eq!(req.client_id, "mcp-client");
    assert_eq!(
        req.redirect_uri.as_deref(),
        Some("https://app.example.com/cb")
    );
    assert_eq!(req.code_challenge.as_str(), CHALLENGE);
    assert!(req.scopes.is_empty());
    assert!(req.resources.is_empty());
    assert_eq!(req.state, None);
    assert_eq!(req.nonce, None);
    assert_eq!(req.prompt, Prompt::default());
}

/// Start from a request where everything is wrong and fix one parameter at a time: the errors must
/// come out in the documented order, client_id and redirect_uri first and never redirectable.
#[test]
fn parse_reports_errors_in_order() {
    use ErrorCode::*;
    use ParamProblem::*;
    type Fix = fn(&mut AuthorizeParams);
    let mut raw = AuthorizeParams {
        client_id: None,
        redirect_uri: Some("app.example.com/cb".into()),
        response_type: Some("token".into()),
        scope: Some("\"bad\"".into()),
        state: Some("s\n".into()),
        code_challenge: None,
        code_challenge_method: None,
        resource: vec!["relative/path".into()],
        prompt: Some("bogus".into()),
        nonce: Some("n\u{7}".into()),
    };
    let steps: Vec<(&str, WantErr, Fix)> = vec![
        (
            "1. client_id missing",
            want("client_id", Missing, InvalidRequest, false),
            |r| r.client_id = Some("mcp-client".into()),
        ),
        (
            "2. redirect_uri without scheme",
            want(
                "redirect_uri",
                NotAbsoluteUri("app.example.com/cb".into()),
                InvalidRedirectUri,
                false,
            ),
            |r| r.redirect_uri = Some("https://app.example.com/cb".into()),
        ),
        (
            "3. response_type=token",
            want(
                "response_type",
                ParamProblem::UnsupportedResponseType("token".into()),
                ErrorCode::UnsupportedResponseType,
                true,
            ),
            |r| r.response_type = None,
        ),
        (
            "4. code_challenge missing (before the method is looked at)",
            want("code_challenge", Missing, InvalidRequest, true),
            |r| r.code_challenge = Some("short".into()),
        ),
        (
            "5. code_challenge_method missing (before the challenge format)",
            want(
                "code_challenge_method",
                ChallengeMethodMissing,
                InvalidRequest,
                true,
            ),
            |r| r.code_challenge_method = Some("S256".into()),
        ),
        (
            "6. code_challenge format",
            want("code_challenge", ChallengeFormat, InvalidRequest, true),
            |r| r.code_challenge = Some(CHALLENGE.into()),
        ),
        (
            "7. scope token",
            want("scope", ScopeToken("\"bad\"".into()), InvalidScope, true),
            |r| r.scope = Some("openid".into()),
        ),
        (
            "8. resource relative",
            want(
                "resource",
                NotAbsoluteUri("relative/path".into()),
                InvalidTarget,
                true,
            ),
            |r| r.resource = vec!["https://api.example.com/mcp".into()],
        ),
        (
            "9. state control character",
            want("state", bad_chars_opaque(), InvalidRequest, true),
            |r| r.state = Some("s".into()),
        ),
        (
            "10. nonce control character",
            want("nonce", bad_chars_opaque(), InvalidRequest, true),
            |r| r.nonce = Some("n".into()),
        ),
        (
            "11. prompt value",
            want("prompt", PromptValue("bogus".into()), InvalidRequest, true),
            |r| r.prompt = Some("consent".into()),
        ),
    ];
    for (label, w, fix) in &steps {
        match AuthorizeRequest::parse(&raw) {
            Ok(req) => panic!("[{label}] expected an error, got {req:?}"),
            Err(e) => check_err(label, &e, w),
        }
        fix(&mut raw);
    }
    let req = AuthorizeRequest::parse(&raw).expect("all fixed");
    assert_eq!(req.scopes, ["openid"]);
    assert_eq!(req.resources, ["https://api.example.com/mcp"]);
    assert!(req.prompt.consent);
}

#[test]
fn client_id_table() {
    use ParamProblem::*;
    let cases: Vec<(&str, Option<String>, Result<&str, ParamProblem>)> = vec![
        ("missing", None, Err(Missing)),
        ("empty", Some(String::new()), Err(Empty)),
        ("only spaces", Some("   ".into()), Err(Empty)),
        ("plain", Some("mcp-client".into()), Ok("mcp-client")),
        ("trimmed", Some("  mcp-client\t".into()), Ok("mcp-client")),
        (
            "CIMD URL",
            Some("https://client.example.com/oauth/meta.json".into()),
            Ok("https://client.example.com/oauth/meta.json"),
        ),
        ("inner space allowed", Some("a b".into()), Ok("a b")),
        ("2048 bytes", Some(repeat("c", 2048)), Ok("")),
        (
            "2049 bytes",
            Some(repeat("c", 2049)),
            Err(TooLong { max: 2048 }),
        ),
        (
            "DEL",
            Some("abc\u{7f}".into()),
            Err(BadCharacters {
                expected: "printable ASCII",
            }),
        ),
        (
            "inner newline",
            Some("a\nb".into()),
            Err(BadCharacters {
                expected: "printable ASCII",
            }),
        ),
        (
            "non-ASCII",
            Some("clïent".into()),
            Err(BadCharacters {
                expected: "printable ASCII",
            }),
        ),
    ];
    for (label, input, expected) in cases {
        let direct = validate_client_id(input.as_deref());
        let mut raw = valid();
        raw.client_id = input.clone();
        let parsed = AuthorizeRequest::parse(&raw);
        match expected {
            Ok(v) => {
                // "" stands for "the input, unchanged" (for generated inputs).
                let v = if v.is_empty() {
                    input.clone().unwrap()
                } else {
                    v.to_owned()
                };
                assert_eq!(
                    direct.as_ref().ok(),
                    Some(&v),
                    "[{label}] validate_client_id"
                );
                assert_eq!(parsed.map(|r| r.client_id).ok(), Some(v), "[{label}] parse");
            }
            Err(problem) => {
                let w = want("client_id", problem, ErrorCode::InvalidRequest, false);
                check_err(label, &direct.unwrap_err(), &w);
                check_err(label, &parsed.unwrap_err(), &w);
            }
        }
    }
}

#[test]
fn redirect_uri_table() {
    use ParamProblem::*;
    let long = format!("https://app.example.com/{}", repeat("p", 2048));
    let cases: Vec<(&str, Option<String>, Result<(), ParamProblem>)> = vec![
        ("absent (single registered URI)", None, Ok(())),
        ("https", Some("https://app.example.com/cb".into()), Ok(())),
        (
            "https with query",
            Some("https://app.example.com/cb?tenant=a".into()),
            Ok(()),
        ),
        (
            "loopback with port",
            Some("http://127.0.0.1:51234/callback".into()),
            Ok(()),
        ),
        ("IPv6 loopback", Some("http://[::1]:8080/cb".into()), Ok(())),
        (
            "private-use scheme",
            Some("com.example.app:/oauth2redirect".into()),
            Ok(()),
        ),
        (
            "2048 bytes",
            Some(format!("https://a.example/{}", repeat("p", 2048 - 18))),
            Ok(()),
        ),
        ("empty", Some(String::new()), Err(Empty)),
        ("too long", Some(long), Err(TooLong { max: 2048 })),
        (
            "fragment",
            Some("https://app.example.com/cb#x".into()),
            Err(HasFragment("https://app.example.com/cb#x".into())),
        ),
        (
            "empty fragment",
            Some("https://app.example.com/cb#".into()),
            Err(HasFragment("https://app.example.com/cb#".into())),
        ),
        (
            "space",
            Some("https://app.example.com/my cb".into()),
            Err(bad_chars_uri()),
        ),
        (
            "leading space",
            Some(" https://app.example.com/cb".into()),
            Err(bad_chars_uri()),
        ),
        (
            "tab",
            Some("https://app.example.com/\tcb".into()),
            Err(bad_chars_uri()),
        ),
        (
            "non-ASCII host (IDN not accepted raw)",
            Some("https://äpp.example.com/cb".into()),
            Err(bad_chars_uri()),
        ),
        (
            "non-ASCII path",
            Some("https://app.example.com/café".into()),
            Err(bad_chars_uri()),
        ),
        (
            "no scheme",
            Some("app.example.com/cb".into()),
            Err(NotAbsoluteUri("app.example.com/cb".into())),
        ),
        (
            "relative path",
            Some("/cb".into()),
            Err(NotAbsoluteUri("/cb".into())),
        ),
        (
            "scheme only",
            Some("https:".into()),
            Err(NotAbsoluteUri("https:".into())),
        ),
        (
            "scheme starting with a digit",
            Some("1app://cb".into()),
            Err(NotAbsoluteUri("1app://cb".into())),
        ),
        (
            "userinfo",
            Some("https://user@app.example.com/cb".into()),
            Err(NotAbsoluteUri("https://user@app.example.com/cb".into())),
        ),
        (
            "empty host",
            Some("https:///cb".into()),
            Err(NotAbsoluteUri("https:///cb".into())),
        ),
        (
            "non-numeric port",
            Some("http://127.0.0.1:http/cb".into()),
            Err(NotAbsoluteUri("http://127.0.0.1:http/cb".into())),
        ),
    ];
    for (label, input, expected) in cases {
        let mut raw = valid();
        raw.redirect_uri = input.clone();
        let parsed = AuthorizeRequest::parse(&raw);
        match expected {
            Ok(()) => {
                if let Some(uri) = input.as_deref() {
                    assert_eq!(
                        validate_redirect_uri(uri).ok(),
                        Some(uri),
                        "[{label}] validate_redirect_uri"
                    );
                }
                assert_eq!(
                    parsed.map(|r| r.redirect_uri).ok(),
                    Some(input),
                    "[{label}] parse keeps the URI unchanged"
                );
            }
            Err(problem) => {
                let w = want(
                    "redirect_uri",
                    problem,
                    ErrorCode::InvalidRedirectUri,
                    false,
                );
                let uri = input.as_deref().unwrap();
                check_err(label, &validate_redirect_uri(uri).unwrap_err(), &w);
                check_err(label, &parsed.unwrap_err(), &w);
            }
        }
    }
}

#[test]
fn response_type_table() {
    let cases: &[(&str, Option<&str>, Option<&str>)] = &[
        ("missing: treated as code (ChatGPT quirk)", None, None),
        ("empty: treated as code", Some(""), None),
        ("code", Some("code"), None),
        ("code with stray spaces", Some(" code "), None),
        (
            "token (implicit, removed in OAuth 2.1)",
            Some("token"),
            Some("token"),
        ),
        ("id_token", Some("id_token"), Some("id_token")),
        ("hybrid", Some("code id_token"), Some("code id_token")),
        ("case matters", Some("Code"), Some("Code")),
        ("unknown", Some("device"), Some("device")),
    ];
    for &(label, input, refused) in cases {
        let mut raw = valid();
        raw.response_type = input.map(str::to_owned);
        let got = AuthorizeRequest::parse(&raw);
        match refused {
            None => assert!(got.is_ok(), "[{label}] expected ok, got {got:?}"),
            Some(v) => check_err(
                label,
                &got.unwrap_err(),
                &want(
                    "response_type",
                    ParamProblem::UnsupportedResponseType(v.into()),
                    ErrorCode::UnsupportedResponseType,
                    true,
                ),
            ),
        }
    }
}

#[test]
fn pkce_table() {
    use ParamProblem::*;
    let c42 = &CHALLENGE[..42];
    let c44 = format!("{CHALLENGE}A");
    let with = |i: usize, ch: &str| format!("{}{ch}{}", &CHALLENGE[..i], &CHALLENGE[i + 1..]);
    let all_dash_underscore = repeat("-_", 21) + "-";
    let non_ascii_43_bytes = format!("{}é", repeat("A", 41));
    /// (label, code_challenge, code_challenge_method, Ok(challenge) or Err((param, problem)))
    type PkceCase = (
        &'static str,
        Option<String>,
        Option<&'static str>,
        Result<String, (&'static str, ParamProblem)>,
    );
    let cases: Vec<PkceCase> = vec![
        (
            "valid",
            Some(CHALLENGE.into()),
            Some("S256"),
            Ok(CHALLENGE.into()),
        ),
        (
            "valid, stray spaces trimmed",
            Some(format!(" {CHALLENGE} ")),
            Some(" S256 "),
            Ok(CHALLENGE.into()),
        ),
        (
            "only - and _",
            Some(all_dash_underscore.clone()),
            Some("S256"),
            Ok(all_dash_underscore),
        ),
        (
            "challenge missing",
            None,
            Some("S256"),
            Err(("code_challenge", Missing)),
        ),
        (
            "challenge empty",
            Some(String::new()),
            Some("S256"),
            Err(("code_challenge", Missing)),
        ),
        (
            "challenge blank",
            Some("   ".into()),
            Some("S256"),
            Err(("code_challenge", Missing)),
        ),
        (
            "both missing: challenge first",
            None,
            None,
            Err(("code_challenge", Missing)),
        ),
        (
            "method missing",
            Some(CHALLENGE.into()),
            None,
            Err(("code_challenge_method", ChallengeMethodMissing)),
        ),
        (
            "method empty",
            Some(CHALLENGE.into()),
            Some(""),
            Err(("code_challenge_method", ChallengeMethodMissing)),
        ),
        (
            "plain",
            Some(CHALLENGE.into()),
            Some("plain"),
            Err((
                "code_challenge_method",
                UnsupportedChallengeMethod("plain".into()),
            )),
        ),
        (
            "plain with a verifier-shaped challenge: method reported first",
            Some(repeat("a.b~", 16)),
            Some("plain"),
            Err((
                "code_challenge_method",
                UnsupportedChallengeMethod("plain".into()),
            )),
        ),
        (
            "s256 (method is case-sensitive, RFC 7636 §4.3)",
            Some(CHALLENGE.into()),
            Some("s256"),
            Err((
                "code_challenge_method",
                UnsupportedChallengeMethod("s256".into()),
            )),
        ),
        (
            "SHA256",
            Some(CHALLENGE.into()),
            Some("SHA256"),
            Err((
                "code_challenge_method",
                UnsupportedChallengeMethod("SHA256".into()),
            )),
        ),
        (
            "42 characters",
            Some(c42.into()),
            Some("S256"),
            Err(("code_challenge", ChallengeFormat)),
        ),
        (
            "44 characters",
            Some(c44),
            Some("S256"),
            Err(("code_challenge", ChallengeFormat)),
        ),
        (
            "padded with =",
            Some(format!("{c42}=")),
            Some("S256"),
            Err(("code_challenge", ChallengeFormat)),
        ),
        (
            "standard base64 +",
            Some(with(5, "+")),
            Some("S256"),
            Err(("code_challenge", ChallengeFormat)),
        ),
        (
            "standard base64 /",
            Some(with(5, "/")),
            Some("S256"),
            Err(("code_challenge", ChallengeFormat)),
        ),
        (
            "verifier char .",
            Some(with(5, ".")),
            Some("S256"),
            Err(("code_challenge", ChallengeFormat)),
        ),
        (
            "verifier char ~",
            Some(with(5, "~")),
            Some("S256"),
            Err(("code_challenge", ChallengeFormat)),
        ),
        (
            "inner space",
            Some(with(20, " ")),
            Some("S256"),
            Err(("code_challenge", ChallengeFormat)),
        ),
        (
            "43 bytes with non-ASCII",
            Some(non_ascii_43_bytes),
            Some("S256"),
            Err(("code_challenge", ChallengeFormat)),
        ),
    ];
    for (label, challenge, method, expected) in cases {
        let mut raw = valid();
        raw.code_challenge = challenge;
        raw.code_challenge_method = method.map(str::to_owned);
        let got = AuthorizeRequest::parse(&raw);
        match expected {
            Ok(c) => assert_eq!(
                got.map(|r| r.code_challenge.as_str().to_owned()).ok(),
                Some(c),
                "[{label}]"
            ),
            Err((param, problem)) => check_err(
                label,
                &got.unwrap_err(),
                &want(param, problem, ErrorCode::InvalidRequest, true),
            ),
        }
    }
}

#[test]
fn scope_table() {
    use ParamProblem::*;
    let distinct = |n: usize| {
        (0..n)
            .map(|i| format!("s{i}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    type ScopeCase = (
        &'static str,
        Option<String>,
        Result<Vec<String>, ParamProblem>,
    );
    let cases: Vec<ScopeCase> = vec![
        ("absent", None, Ok(vec![])),
        ("empty", Some(String::new()), Ok(vec![])),
        ("only whitespace", Some(" \t\n ".into()), Ok(vec![])),
        ("one", Some("openid".into()), Ok(vec!["openid".into()])),
        (
            "two",
            Some("openid profile".into()),
            Ok(vec!["openid".into(), "profile".into()]),
        ),
        (
            "stray spaces",
            Some("  openid   profile  ".into()),
            Ok(vec!["openid".into(), "profile".into()]),
        ),
        (
            "tabs, newlines, CRLF",
            Some("a\tb\nc\r\nd".into()),
            Ok(vec!["a".into(), "b".into(), "c".into(), "d".into()]),
        ),
        (
            "duplicates removed, first occurrence kept",
            Some("b a b c a".into()),
            Ok(vec!["b".into(), "a".into(), "c".into()]),
        ),
        (
            "case matters for duplicates",
            Some("Read read".into()),
            Ok(vec!["Read".into(), "read".into()]),
        ),
        (
            "colons, slashes, URLs",
            Some("notes:read https://api.example.com/write".into()),
            Ok(vec![
                "notes:read".into(),
                "https://api.example.com/write".into(),
            ]),
        ),
        (
            "every allowed punctuation character",
            Some("!#$%&'()*+,-./:;<=>?@[]^_`{|}~".into()),
            Ok(vec!["!#$%&'()*+,-./:;<=>?@[]^_`{|}~".into()]),
        ),
        (
            "double quote refused",
            Some("openid \"quoted\"".into()),
            Err(ScopeToken("\"quoted\"".into())),
        ),
        (
            "backslash refused",
            Some("a\\b".into()),
            Err(ScopeToken("a\\b".into())),
        ),
        (
            "non-ASCII refused",
            Some("openid café".into()),
            Err(ScopeToken("café".into())),
        ),
        (
            "non-breaking space is not a separator",
            Some("read\u{a0}write".into()),
            Err(ScopeToken("read\u{a0}write".into())),
        ),
        (
            "NUL refused",
            Some("a\0b".into()),
            Err(ScopeToken("a\0b".into())),
        ),
        (
            "DEL refused",
            Some("a\u{7f}".into()),
            Err(ScopeToken("a\u{7f}".into())),
        ),
        (
            "vertical tab is not a separator",
            Some("a\u{b}b".into()),
            Err(ScopeToken("a\u{b}b".into())),
        ),
        (
            "64 distinct",
            Some(distinct(64)),
            Ok((0..64).map(|i| format!("s{i}")).collect()),
        ),
        ("65 distinct", Some(distinct(65)), Err(TooMany { max: 64 })),
        (
            "65 tokens but 64 distinct",
            Some(format!("{} s0", distinct(64))),
            Ok((0..64).map(|i| format!("s{i}")).collect()),
        ),
        (
            "4096 bytes",
            Some(repeat("a", 4096)),
            Ok(vec![repeat("a", 4096)]),
        ),
        (
            "4097 bytes",
            Some(repeat("a", 4097)),
            Err(TooLong { max: 4096 }),
        ),
    ];
    for (label, input, expected) in cases {
        let direct = parse_scope(input.as_deref());
        let mut raw = valid();
        raw.scope = input;
        let parsed = AuthorizeRequest::parse(&raw);
        match expected {
            Ok(scopes) => {
                assert_eq!(direct.as_ref().ok(), Some(&scopes), "[{label}] parse_scope");
                assert_eq!(
                    parsed.map(|r| r.scopes).ok(),
                    Some(scopes),
                    "[{label}] parse"
                );
            }
            Err(problem) => {
                let w = want("scope", problem, ErrorCode::InvalidScope, true);
                check_err(label, &direct.unwrap_err(), &w);
                check_err(label, &parsed.unwrap_err(), &w);
            }
        }
    }
}

#[test]
fn resource_table() {
    use ParamProblem::*;
    let distinct = |n: usize| -> Vec<String> {
        (0..n)
            .map(|i| format!("https://api{i}.example.com/mcp"))
            .collect()
    };
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    type ResourceCase = (&'static str, Vec<String>, Result<Vec<String>, ParamProblem>);
    let cases: Vec<ResourceCase> = vec![
        ("none", vec![], Ok(vec![])),
        (
            "one",
            s(&["https://api.example.com/mcp"]),
            Ok(s(&["https://api.example.com/mcp"])),
        ),
        (
            "order kept",
            s(&["https://b.example/", "https://a.example/"]),
            Ok(s(&["https://b.example/", "https://a.example/"])),
        ),
        (
            "duplicates removed",
            s(&[
                "https://a.example/",
                "https://b.example/",
                "https://a.example/",
            ]),
            Ok(s(&["https://a.example/", "https://b.example/"])),
        ),
        (
            "empty strings skipped",
            s(&["", "https://a.example/", "  ", ""]),
            Ok(s(&["https://a.example/"])),
        ),
        ("only empty strings", s(&["", " "]), Ok(vec![])),
        (
            "surrounding spaces trimmed",
            s(&[" https://a.example/ "]),
            Ok(s(&["https://a.example/"])),
        ),
        (
            "trimmed duplicates collapse",
            s(&["https://a.example/", " https://a.example/"]),
            Ok(s(&["https://a.example/"])),
        ),
        (
            "URN",
            s(&["urn:example:notes"]),
            Ok(s(&["urn:example:notes"])),
        ),
        (
            "query allowed",
            s(&["https://api.example.com/mcp?v=2"]),
            Ok(s(&["https://api.example.com/mcp?v=2"])),
        ),
        (
            "relative path refused",
            s(&["/mcp"]),
            Err(NotAbsoluteUri("/mcp".into())),
        ),
        (
            "bare host refused",
            s(&["api.example.com"]),
            Err(NotAbsoluteUri("api.example.com".into())),
        ),
        (
            "second one relative",
            s(&["https://a.example/", "mcp"]),
            Err(NotAbsoluteUri("mcp".into())),
        ),
        (
            "fragment refused",
            s(&["https://api.example.com/mcp#x"]),
            Err(HasFragment("https://api.example.com/mcp#x".into())),
        ),
        (
            "inner space refused",
            s(&["https://api.example.com/m cp"]),
            Err(bad_chars_uri()),
        ),
        (
            "userinfo refused",
            s(&["https://u@api.example.com/"]),
            Err(NotAbsoluteUri("https://u@api.example.com/".into())),
        ),
        (
            "too long",
            vec![format!("https://a.example/{}", repeat("p", 2048))],
            Err(TooLong { max: 2048 }),
        ),
        ("16 distinct", distinct(16), Ok(distinct(16))),
        ("17 distinct", distinct(17), Err(TooMany { max: 16 })),
        (
            "17 given, 16 distinct",
            [distinct(16), distinct(1)].concat(),
            Ok(distinct(16)),
        ),
        (
            "100 copies of one",
            vec!["https://a.example/".into(); 100],
            Ok(s(&["https://a.example/"])),
        ),
    ];
    for (label, input, expected) in cases {
        let mut raw = valid();
        raw.resource = input;
        let parsed = AuthorizeRequest::parse(&raw);
        match expected {
            Ok(r) => assert_eq!(parsed.map(|x| x.resources).ok(), Some(r), "[{label}]"),
            Err(problem) => check_err(
                label,
                &parsed.unwrap_err(),
                &want("resource", problem, ErrorCode::InvalidTarget, true),
            ),
        }
    }
}

/// A JSON body may carry any number of resources: refusing them must not cost quadratic time.
#[test]
fn many_resources_are_refused_quickly() {
    let mut raw = valid();
    raw.resource = (0..200_000)
        .map(|i| format!("https://a.example/{i}"))
        .collect();
    let start = std::time::Instant::now();
    let e = AuthorizeRequest::parse(&raw).unwrap_err();
    assert_eq!(e.problem, ParamProblem::TooMany { max: 16 });
    // Generous: linear work is milliseconds; the quadratic version took minutes.
    assert!(
        start.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn state_and_nonce_table() {
    use ParamProblem::*;
    type OpaqueCase = (
        &'static str,
        Option<String>,
        Result<Option<String>, ParamProblem>,
    );
    let cases: Vec<OpaqueCase> = vec![
        ("absent", None, Ok(None)),
        ("empty is absent", Some(String::new()), Ok(None)),
        ("plain", Some("xyz".into()), Ok(Some("xyz".into()))),
        (
            "URL-ish punctuation",
            Some("a b+c/=?&#%".into()),
            Ok(Some("a b+c/=?&#%".into())),
        ),
        (
            "non-ASCII allowed",
            Some("été ✓ 😀".into()),
            Ok(Some("été ✓ 😀".into())),
        ),
        ("single space kept", Some(" ".into()), Ok(Some(" ".into()))),
        (
            "2048 bytes",
            Some(repeat("s", 2048)),
            Ok(Some(repeat("s", 2048))),
        ),
        (
            "2049 bytes",
            Some(repeat("s", 2049)),
            Err(TooLong { max: 2048 }),
        ),
        (
            "2048 bytes of 2-byte chars is 1024 chars: fine",
            Some(repeat("é", 1024)),
            Ok(Some(repeat("é", 1024))),
        ),
        (
            "2050 bytes of 2-byte chars: too long",
            Some(repeat("é", 1025)),
            Err(TooLong { max: 2048 }),
        ),
        ("newline", Some("a\nb".into()), Err(bad_chars_opaque())),
        (
            "carriage return",
            Some("a\rb".into()),
            Err(bad_chars_opaque()),
        ),
        ("tab", Some("a\tb".into()), Err(bad_chars_opaque())),
        ("NUL", Some("\0".into()), Err(bad_chars_opaque())),
        ("ESC", Some("\u{1b}[31m".into()), Err(bad_chars_opaque())),
        ("DEL", Some("a\u{7f}".into()), Err(bad_chars_opaque())),
        ("C1 NEL", Some("a\u{85}".into()), Err(bad_chars_opaque())),
        (
            "too long wins over control characters",
            Some(format!("\n{}", repeat("s", 2048))),
            Err(TooLong { max: 2048 }),
        ),
    ];
    for param in ["state", "nonce"] {
        for (label, input, expected) in &cases {
            let label = format!("{param}: {label}");
            let mut raw = valid();
            match param {
                "state" => raw.state = input.clone(),
                _ => raw.nonce = input.clone(),
            }
            let got = AuthorizeRequest::parse(&raw);
            match expected {
                Ok(v) => {
                    let req = got.unwrap_or_else(|e| panic!("[{label}] unexpected {e:?}"));
                    let field = if param == "state" {
                        req.state
                    } else {
                        req.nonce
                    };
                    assert_eq!(&field, v, "[{label}]");
                }
                Err(problem) => check_err(
                    &label,
                    &got.unwrap_err(),
                    &want(param, problem.clone(), ErrorCode::InvalidRequest, true),
                ),
            }
        }
    }
}

#[test]
fn prompt_table() {
    use ParamProblem::*;
    let p = |none, login, consent, select_account, create| Prompt {
        none,
        login,
        consent,
        select_account,
        create,
    };
    let cases: Vec<(&str, Option<&str>, Result<Prompt, ParamProblem>)> = vec![
        ("absent", None, Ok(Prompt::default())),
        ("empty", Some(""), Ok(Prompt::default())),
        ("blank", Some("   "), Ok(Prompt::default())),
        (
            "none",
            Some("none"),
            Ok(p(true, false, false, false, false)),
        ),
        (
            "login",
            Some("login"),
            Ok(p(false, true, false, false, false)),
        ),
        (
            "consent",
            Some("consent"),
            Ok(p(false, false, true, false, false)),
        ),
        (
            "select_account",
            Some("select_account"),
            Ok(p(false, false, false, true, false)),
        ),
        (
            "create",
            Some("create"),
            Ok(p(false, false, false, false, true)),
        ),
        (
            "login consent",
            Some("login consent"),
            Ok(p(false, true, true, false, false)),
        ),
        (
            "stray whitespace",
            Some("  login\tconsent "),
            Ok(p(false, true, true, false, false)),
        ),
        (
            "all but none",
            Some("login consent select_account create"),
            Ok(p(false, true, true, true, true)),
        ),
        (
            "login twice",
            Some("login login"),
            Ok(p(false, true, false, false, false)),
        ),
        (
            "none consent",
            Some("none consent"),
            Err(PromptNoneWithOthers),
        ),
        (
            "consent none",
            Some("consent none"),
            Err(PromptNoneWithOthers),
        ),
        ("none login", Some("none login"), Err(PromptNoneWithOthers)),
        // Not "other values", but refused all the same (see report).
        ("none none", Some("none none"), Err(PromptNoneWithOthers)),
        ("unknown", Some("bogus"), Err(PromptValue("bogus".into()))),
        (
            "case matters",
            Some("None"),
            Err(PromptValue("None".into())),
        ),
        (
            "unknown after a known one",
            Some("login bogus"),
            Err(PromptValue("bogus".into())),
        ),
        (
            "unknown value reported before none-with-others",
            Some("none bogus"),
            Err(PromptValue("bogus".into())),
        ),
        (
            "comma is not a separator",
            Some("login,consent"),
            Err(PromptValue("login,consent".into())),
        ),
    ];
    for (label, input, expected) in cases {
        let mut raw = valid();
        raw.prompt = input.map(str::to_owned);
        let got = AuthorizeRequest::parse(&raw);
        match expected {
            Ok(prompt) => assert_eq!(got.map(|r| r.prompt).ok(), Some(prompt), "[{label}]"),
            Err(problem) => check_err(
                label,
                &got.unwrap_err(),
                &want("prompt", problem, ErrorCode::InvalidRequest, true),
            ),
        }
    }
}

/// Whole authorization URLs as real clients send them, through both stages.
#[test]
fn end_to_end_urls() {
    type Check = fn(&AuthorizeRequest) -> bool;
    let cases: &[(&str, &str, Check)] = &[
        (
            "MCP client, everything encoded",
            "https://auth.example.com/authorize?response_type=code&client_id=https%3A%2F%2Fclient.example.com%2Fmeta.json\
             &redirect_uri=http%3A%2F%2F127.0.0.1%3A33418%2Fcallback&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM\
             &code_challenge_method=S256&state=abc&scope=notes%3Aread+notes%3Awrite&resource=https%3A%2F%2Fapi.example.com%2Fmcp",
            |r| {
                r.client_id == "https://client.example.com/meta.json"
                    && r.redirect_uri.as_deref() == Some("http://127.0.0.1:33418/callback")
                    && r.scopes == ["notes:read", "notes:write"]
                    && r.resources == ["https://api.example.com/mcp"]
                    && r.state.as_deref() == Some("abc")
            },
        ),
        (
            "ChatGPT-style: no response_type",
            "?client_id=chatgpt&redirect_uri=https%3A%2F%2Fchatgpt.com%2Fconnector_platform_oauth_redirect\
             &code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256&state=s",
            |r| r.client_id == "chatgpt" && r.scopes.is_empty(),
        ),
        (
            "unencoded values in a bare query",
            "client_id=c&redirect_uri=https://app.example.com/cb?x=1&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM\
             &code_challenge_method=S256&resource=https://api.example.com/mcp",
            |r| {
                r.redirect_uri.as_deref() == Some("https://app.example.com/cb?x=1")
                    && r.resources == ["https://api.example.com/mcp"]
            },
        ),
        (
            "repeated identical resource collapses",
            "?client_id=c&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256\
             &resource=https%3A%2F%2Fa.example%2F&resource=https%3A%2F%2Fa.example%2F&resource=",
            |r| r.redirect_uri.is_none() && r.resources == ["https://a.example/"],
        ),
    ];
    for &(label, url, check) in cases {
        let raw = parse_query(url).unwrap_or_else(|e| panic!("[{label}] parse_query: {e}"));
        let req = AuthorizeRequest::parse(&raw).unwrap_or_else(|e| panic!("[{label}] parse: {e}"));
        assert!(check(&req), "[{label}] unexpected {req:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// ParamError Display
// ---------------------------------------------------------------------------------------------

/// Exhaustive on purpose: a new `ParamProblem` variant fails to compile here until the table
/// below covers it.
fn variant(p: &ParamProblem) -> &'static str {
    match p {
        ParamProblem::Missing => "Missing",
        ParamProblem::Repeated => "Repeated",
        ParamProblem::Empty => "Empty",
        ParamProblem::TooLong { .. } => "TooLong",
        ParamProblem::BadCharacters { .. } => "BadCharacters",
        ParamProblem::BadEncoding => "BadEncoding",
        ParamProblem::UnsupportedResponseType(_) => "UnsupportedResponseType",
        ParamProblem::UnsupportedChallengeMethod(_) => "UnsupportedChallengeMethod",
        ParamProblem::ChallengeMethodMissing => "ChallengeMethodMissing",
        ParamProblem::ChallengeFormat => "ChallengeFormat",
        ParamProblem::ScopeToken(_) => "ScopeToken",
        ParamProblem::TooMany { .. } => "TooMany",
        ParamProblem::NotAbsoluteUri(_) => "NotAbsoluteUri",
        ParamProblem::HasFragment(_) => "HasFragment",
        ParamProblem::PromptValue(_) => "PromptValue",
        ParamProblem::PromptNoneWithOthers => "PromptNoneWithOthers",
    }
}

const ALL_VARIANTS: [&str; 16] = [
    "Missing",
    "Repeated",
    "Empty",
    "TooLong",
    "BadCharacters",
    "BadEncoding",
    "UnsupportedResponseType",
    "UnsupportedChallengeMethod",
    "ChallengeMethodMissing",
    "ChallengeFormat",
    "ScopeToken",
    "TooMany",
    "NotAbsoluteUri",
    "HasFragment",
    "PromptValue",
    "PromptNoneWithOthers",
];

fn pe(param: &'static str, problem: ParamProblem) -> ParamError {
    ParamError { param, problem }
}

#[test]
fn param_error_messages_name_the_parameter() {
    use ParamProblem::*;
    // (label, error, further text the message must contain)
    let cases: Vec<(&str, ParamError, &[&str])> = vec![
        ("Missing", pe("client_id", Missing), &["required"]),
        ("Repeated", pe("state", Repeated), &["once"]),
        ("Empty", pe("redirect_uri", Empty), &["empty"]),
        ("TooLong", pe("nonce", TooLong { max: 2048 }), &["2048"]),
        (
            "BadCharacters",
            pe(
                "client_id",
                BadCharacters {
                    expected: "printable ASCII",
                },
            ),
            &["printable ASCII"],
        ),
        ("BadEncoding", pe("scope", BadEncoding), &["percent"]),
        ("BadEncoding in a key", pe("query", BadEncoding), &[]),
        (
            "UnsupportedResponseType",
            pe("response_type", UnsupportedResponseType("token".into())),
            &["'token'", "code"],
        ),
        (
            "UnsupportedChallengeMethod",
            pe(
                "code_challenge_method",
                UnsupportedChallengeMethod("plain".into()),
            ),
            &["'plain'", "S256"],
        ),
        (
            "ChallengeMethodMissing",
            pe("code_challenge_method", ChallengeMethodMissing),
            &["S256"],
        ),
        (
            "ChallengeFormat",
            pe("code_challenge", ChallengeFormat),
            &["43"],
        ),
        (
            "ScopeToken",
            pe("scope", ScopeToken("a\"b".into())),
            &["a\"b"],
        ),
        ("TooMany", pe("resource", TooMany { max: 16 }), &["16"]),
        (
            "NotAbsoluteUri",
            pe("resource", NotAbsoluteUri("/mcp".into())),
            &["'/mcp'"],
        ),
        (
            "HasFragment",
            pe("redirect_uri", HasFragment("https://a/#x".into())),
            &["'https://a/#x'"],
        ),
        (
            "PromptValue",
            pe("prompt", PromptValue("bogus".into())),
            &["'bogus'"],
        ),
        (
            "PromptNoneWithOthers",
            pe("prompt", PromptNoneWithOthers),
            &["none"],
        ),
    ];
    for (label, e, extra) in &cases {
        let msg = e.to_string();
        assert!(
            msg.contains(e.param),
            "[{label}] {msg:?} does not name {}",
            e.param
        );
        for x in *extra {
            assert!(msg.contains(x), "[{label}] {msg:?} does not contain {x:?}");
        }
    }
    for v in ALL_VARIANTS {
        assert!(
            cases.iter().any(|(_, e, _)| variant(&e.problem) == v),
            "no Display case for ParamProblem::{v}"
        );
    }
}

#[test]
fn param_error_messages_truncate_long_values() {
    use ParamProblem::*;
    let values: &[(&str, String)] = &[
        ("10 KB ASCII", repeat("x", 10 * 1024)),
        ("10 KB of 2-byte chars", repeat("é", 5 * 1024)),
        ("10 KB of 3-byte chars", repeat("✓", 3414)),
        ("10 KB of 4-byte chars", repeat("😀", 2560)),
        ("mixed widths", repeat("aé✓😀", 1024)),
    ];
    type Make = fn(String) -> ParamError;
    let makers: &[(&str, Make)] = &[
        ("UnsupportedResponseType", |v| {
            pe("response_type", UnsupportedResponseType(v))
        }),
        ("UnsupportedChallengeMethod", |v| {
            pe("code_challenge_method", UnsupportedChallengeMethod(v))
        }),
        ("ScopeToken", |v| pe("scope", ScopeToken(v))),
        ("NotAbsoluteUri", |v| pe("resource", NotAbsoluteUri(v))),
        ("HasFragment", |v| pe("redirect_uri", HasFragment(v))),
        ("PromptValue", |v| pe("prompt", PromptValue(v))),
    ];
    for (vlabel, value) in values {
        for (mlabel, make) in makers {
            let label = format!("{mlabel} / {vlabel}");
            let e = make(value.clone());
            let msg = e.to_string();
            assert!(
                msg.len() < 1024,
                "[{label}] message is {} bytes for a {}-byte value",
                msg.len(),
                value.len()
            );
            assert!(msg.contains(e.param), "[{label}] does not name {}", e.param);
            // The start of the value is still shown.
            let head: String = value.chars().take(20).collect();
            assert!(
                msg.contains(&head),
                "[{label}] does not show the value's start"
            );
        }
    }
    // Short values are shown whole.
    let e = pe("prompt", PromptValue(repeat("p", 120)));
    assert!(e.to_string().contains(&format!("'{}'", repeat("p", 120))));

    // Through the real parser: oversized inputs give bounded messages.
    let big = repeat("x", 10 * 1024);
    let through: Vec<(&str, AuthorizeParams)> = vec![
        ("response_type", ap(&[("response_type", &big)])),
        (
            "code_challenge_method",
            ap(&[("code_challenge_method", &big)]),
        ),
        ("prompt", ap(&[("prompt", &big)])),
        ("scope (too long)", ap(&[("scope", &big)])),
        (
            "scope token",
            ap(&[("scope", &format!("\"{}", repeat("x", 4000)))]),
        ),
        ("resource", ap(&[("resource", &big)])),
        ("redirect_uri", ap(&[("redirect_uri", &big)])),
        ("client_id", ap(&[("client_id", &big)])),
        ("state", ap(&[("state", &big)])),
    ];
    for (label, overrides) in through {
        let mut raw = valid();
        for (src, dst) in [
            (overrides.client_id, &mut raw.client_id),
            (overrides.redirect_uri, &mut raw.redirect_uri),
            (overrides.response_type, &mut raw.response_type),
            (overrides.scope, &mut raw.scope),
            (overrides.state, &mut raw.state),
            (
                overrides.code_challenge_method,
                &mut raw.code_challenge_method,
            ),
            (overrides.prompt, &mut raw.prompt),
        ] {
            if src.is_some() {
                *dst = src;
            }
        }
        if !overrides.resource.is_empty() {
            raw.resource = overrides.resource;
        }
        let e = AuthorizeRequest::parse(&raw).unwrap_err();
        let msg = e.to_string();
        assert!(msg.len() < 1024, "[{label}] {} bytes: {e:?}", msg.len());
    }
}

// ---------------------------------------------------------------------------------------------
// Redirect URIs
// ---------------------------------------------------------------------------------------------

#[test]
fn redirect_uri_matches_table() {
    let cases: &[(&str, &str, &str, bool)] = &[
        // --- exact ---
        (
            "exact https",
            "https://app.example.com/cb",
            "https://app.example.com/cb",
            true,
        ),
        (
            "exact with query",
            "https://app.example.com/cb?a=1",
            "https://app.example.com/cb?a=1",
            true,
        ),
        (
            "exact private-use scheme",
            "com.example.app:/cb",
            "com.example.app:/cb",
            true,
        ),
        (
            "exact loopback with port",
            "http://127.0.0.1:8080/cb",
            "http://127.0.0.1:8080/cb",
            true,
        ),
        // --- RFC 8252 §7.3 loopback: any port, same host/path/query ---
        (
            "127.0.0.1 no port -> port",
            "http://127.0.0.1/cb",
            "http://127.0.0.1:51234/cb",
            true,
        ),
        (
            "127.0.0.1 port -> other port",
            "http://127.0.0.1:8080/cb",
            "http://127.0.0.1:9090/cb",
            true,
        ),
        (
            "127.0.0.1 port -> no port",
            "http://127.0.0.1:8080/cb",
            "http://127.0.0.1/cb",
            true,
        ),
        (
            "127.0.0.1 empty port",
            "http://127.0.0.1/cb",
            "http://127.0.0.1:/cb",
            true,
        ),
        (
            "127.0.0.1 no path",
            "http://127.0.0.1",
            "http://127.0.0.1:5000",
            true,
        ),
        (
            "[::1] no port -> port",
            "http://[::1]/cb",
            "http://[::1]:8080/cb",
            true,
        ),
        (
            "[::1] port -> other port",
            "http://[::1]:1/cb",
            "http://[::1]:65535/cb",
            true,
        ),
        (
            "localhost no port -> port",
            "http://localhost/callback",
            "http://localhost:3000/callback",
            true,
        ),
        (
            "localhost port -> other port",
            "http://localhost:1/callback",
            "http://localhost:2/callback",
            true,
        ),
        (
            "localhost host case-insensitive",
            "http://localhost/cb",
            "http://LocalHost:3000/cb",
            true,
        ),
        (
            "loopback same query",
            "http://127.0.0.1/cb?a=1",
            "http://127.0.0.1:5/cb?a=1",
            true,
        ),
        // --- loopback: host must match ---
        (
            "127.0.0.1 vs localhost",
            "http://127.0.0.1/cb",
            "http://localhost:5/cb",
            false,
        ),
        (
            "localhost vs 127.0.0.1",
            "http://localhost/cb",
            "http://127.0.0.1:5/cb",
            false,
        ),
        (
            "[::1] vs 127.0.0.1",
            "http://[::1]/cb",
            "http://127.0.0.1:5/cb",
            false,
        ),
        (
            "127.0.0.2",
            "http://127.0.0.1/cb",
            "http://127.0.0.2:5/cb",
            false,
        ),
        (
            "127.1 shorthand",
            "http://127.0.0.1/cb",
            "http://127.1:5/cb",
            false,
        ),
        (
            "hex IP",
            "http://127.0.0.1/cb",
            "http://0x7f000001:5/cb",
            false,
        ),
        (
            "127.0.0.1 as a subdomain",
            "http://127.0.0.1/cb",
            "http://127.0.0.1.evil.com:5/cb",
            false,
        ),
        (
            "localhost as a subdomain",
            "http://localhost/cb",
            "http://localhost.evil.com:5/cb",
            false,
        ),
        (
            "unbracketed ::1",
            "http://[::1]/cb",
            "http://::1:5/cb",
            false,
        ),
        // --- loopback: path and query must match ---
        (
            "loopback path differs",
            "http://127.0.0.1/cb",
            "http://127.0.0.1:5/cb2",
            false,
        ),
        (
            "loopback trailing slash",
            "http://127.0.0.1/cb",
            "http://127.0.0.1:5/cb/",
            false,
        ),
        (
            "loopback path case",
            "http://127.0.0.1/cb",
            "http://127.0.0.1:5/CB",
            false,
        ),
        (
            "loopback query added",
            "http://127.0.0.1/cb",
            "http://127.0.0.1:5/cb?x=1",
            false,
        ),
        (
            "loopback query differs",
            "http://127.0.0.1/cb?a=1",
            "http://127.0.0.1:5/cb?a=2",
            false,
        ),
        (
            "loopback path added",
            "http://127.0.0.1",
            "http://127.0.0.1:5/",
            false,
        ),
        // --- loopback: only plain http gets the port exception ---
        (
            "https 127.0.0.1 port change",
            "https://127.0.0.1/cb",
            "https://127.0.0.1:8443/cb",
            false,
        ),
        (
            "https localhost port change",
            "https://localhost:3000/cb",
            "https://localhost:4000/cb",
            false,
        ),
        (
            "http registered, https requested",
            "http://127.0.0.1/cb",
            "https://127.0.0.1:5/cb",
            false,
        ),
        (
            "https registered, http requested",
            "https://127.0.0.1/cb",
            "http://127.0.0.1:5/cb",
            false,
        ),
        (
            "scheme case",
            "http://127.0.0.1/cb",
            "HTTP://127.0.0.1:5/cb",
            false,
        ),
        (
            "non-numeric port",
            "http://127.0.0.1/cb",
            "http://127.0.0.1:abc/cb",
            false,
        ),
        // --- non-loopback: exact string only ---
        (
            "port added",
            "https://app.example.com/cb",
            "https://app.example.com:8443/cb",
            false,
        ),
        (
            "default port spelled out",
            "https://app.example.com/cb",
            "https://app.example.com:443/cb",
            false,
        ),
        (
            "http non-loopback port change",
            "http://app.example.com:8080/cb",
            "http://app.example.com:9090/cb",
            false,
        ),
        (
            "trailing slash added",
            "https://app.example.com/cb",
            "https://app.example.com/cb/",
            false,
        ),
        (
            "trailing slash removed",
            "https://app.example.com/cb/",
            "https://app.example.com/cb",
            false,
        ),
        (
            "path case",
            "https://app.example.com/cb",
            "https://app.example.com/CB",
            false,
        ),
        (
            "host case (exact match only)",
            "https://app.example.com/cb",
            "https://APP.example.com/cb",
            false,
        ),
        (
            "query added",
            "https://app.example.com/cb",
            "https://app.example.com/cb?x=1",
            false,
        ),
        (
            "query differs",
            "https://app.example.com/cb?x=1",
            "https://app.example.com/cb?x=2",
            false,
        ),
        (
            "query order",
            "https://app.example.com/cb?a=1&b=2",
            "https://app.example.com/cb?b=2&a=1",
            false,
        ),
        (
            "percent-encoding differs",
            "https://app.example.com/c b",
            "https://app.example.com/c%20b",
            false,
        ),
        (
            "private-use path differs",
            "com.example.app:/cb",
            "com.example.app:/cb2",
            false,
        ),
        // --- attacks ---
        (
            "userinfo to evil host",
            "http://127.0.0.1/cb",
            "http://127.0.0.1@evil.com/cb",
            false,
        ),
        (
            "userinfo with port",
            "http://127.0.0.1/cb",
            "http://127.0.0.1:80@evil.com/cb",
            false,
        ),
        (
            "userinfo to loopback",
            "http://127.0.0.1/cb",
            "http://evil.com@127.0.0.1/cb",
            false,
        ),
        (
            "https userinfo",
            "https://app.example.com/cb",
            "https://app.example.com@evil.com/cb",
            false,
        ),
        (
            "host suffix",
            "https://app.example.com/cb",
            "https://app.example.com.evil.com/cb",
            false,
        ),
        (
            "dot-dot path",
            "https://app.example.com/cb",
            "https://app.example.com/cb/../evil",
            false,
        ),
        (
            "path prefix",
            "https://app.example.com/cb",
            "https://app.example.com/cbevil",
            false,
        ),
        (
            "open-redirect query",
            "https://app.example.com/cb",
            "https://app.example.com/cb?next=https://evil.com",
            false,
        ),
        (
            "backslash host",
            "http://127.0.0.1/cb",
            "http://127.0.0.1:5\\@evil.com/cb",
            false,
        ),
        (
            "fragment appended",
            "https://app.example.com/cb",
            "https://app.example.com/cb#x",
            false,
        ),
        (
            "loopback fragment",
            "http://127.0.0.1/cb",
            "http://127.0.0.1:5/cb#x",
            false,
        ),
        // --- garbage ---
        ("empty requested", "https://app.example.com/cb", "", false),
        (
            "unparsable requested",
            "http://127.0.0.1/cb",
            "127.0.0.1:5/cb",
            false,
        ),
    ];
    for &(label, registered, requested, expected) in cases {
        assert_eq!(
            redirect_uri_matches(registered, requested),
            expected,
            "[{label}] registered {registered:?}, requested {requested:?}"
        );
    }
}

#[test]
fn redirect_host_table() {
    let cases: &[(&str, &str, Option<&str>)] = &[
        (
            "https host",
            "https://app.example.com/cb",
            Some("app.example.com"),
        ),
        (
            "host lowercased",
            "https://App.Example.COM/cb",
            Some("app.example.com"),
        ),
        (
            "port stripped",
            "https://app.example.com:8443/cb?x=1",
            Some("app.example.com"),
        ),
        (
            "no path",
            "https://app.example.com",
            Some("app.example.com"),
        ),
        (
            "loopback IPv4",
            "http://127.0.0.1:1234/cb",
            Some("127.0.0.1"),
        ),
        (
            "loopback IPv6 kept in brackets",
            "http://[::1]:8080/cb",
            Some("[::1]"),
        ),
        (
            "IPv6 lowercased",
            "http://[2001:DB8::1]/cb",
            Some("[2001:db8::1]"),
        ),
        ("localhost", "http://LOCALHOST:3000/cb", Some("localhost")),
        (
            "HTTPS scheme case",
            "HTTPS://App.Example.com/cb",
            Some("app.example.com"),
        ),
        (
            "private-use scheme",
            "com.example.app:/cb",
            Some("com.example.app"),
        ),
        (
            "private-use scheme lowercased",
            "Com.Example.App:/cb",
            Some("com.example.app"),
        ),
        // The OS hands the URI to whichever app owns the scheme: the "host" is not where the
        // user is sent, so it must not be shown as if it were.
        (
            "private-use scheme with authority",
            "com.example.app://callback",
            Some("com.example.app"),
        ),
        (
            "private-use scheme posing as a host",
            "evil.app://accounts.example.com/cb",
            Some("evil.app"),
        ),
        ("urn", "urn:ietf:wg:oauth:2.0:oob", Some("urn")),
        ("no scheme", "app.example.com/cb", None),
        ("relative", "/cb", None),
        ("userinfo", "https://user@app.example.com/cb", None),
        ("empty", "", None),
    ];
    for &(label, uri, expected) in cases {
        assert_eq!(redirect_host(uri).as_deref(), expected, "[{label}] {uri:?}");
    }
}

#[test]
fn split_uri_table() {
    fn parts<'a>(
        scheme: &'a str,
        authority: Option<&'a str>,
        host: Option<&'a str>,
        port: Option<&'a str>,
        rest: &'a str,
    ) -> Option<UriParts<'a>> {
        Some(UriParts {
            scheme,
            authority,
            host,
            port,
            rest,
        })
    }
    let cases: Vec<(&str, &str, Option<UriParts<'_>>)> = vec![
        (
            "https with path and query",
            "https://app.example.com/cb?x=1",
            parts(
                "https",
                Some("app.example.com"),
                Some("app.example.com"),
                None,
                "/cb?x=1",
            ),
        ),
        (
            "no path",
            "https://app.example.com",
            parts(
                "https",
                Some("app.example.com"),
                Some("app.example.com"),
                None,
                "",
            ),
        ),
        (
            "query right after the authority",
            "https://app.example.com?x=1",
            parts(
                "https",
                Some("app.example.com"),
                Some("app.example.com"),
                None,
                "?x=1",
            ),
        ),
        (
            "fragment right after the authority",
            "https://app.example.com#f",
            parts(
                "https",
                Some("app.example.com"),
                Some("app.example.com"),
                None,
                "#f",
            ),
        ),
        (
            "port",
            "https://app.example.com:8443/cb",
            parts(
                "https",
                Some("app.example.com:8443"),
                Some("app.example.com"),
                Some("8443"),
                "/cb",
            ),
        ),
        (
            "empty port",
            "http://127.0.0.1:/cb",
            parts(
                "http",
                Some("127.0.0.1:"),
                Some("127.0.0.1"),
                Some(""),
                "/cb",
            ),
        ),
        (
            "five-digit port",
            "http://127.0.0.1:65535/",
            parts(
                "http",
                Some("127.0.0.1:65535"),
                Some("127.0.0.1"),
                Some("65535"),
                "/",
            ),
        ),
        (
            "IPv6 with port",
            "http://[::1]:8080/cb",
            parts(
                "http",
                Some("[::1]:8080"),
                Some("[::1]"),
                Some("8080"),
                "/cb",
            ),
        ),
        (
            "IPv6 without port",
            "http://[::1]/cb",
            parts("http", Some("[::1]"), Some("[::1]"), None, "/cb"),
        ),
        (
            "full IPv6",
            "https://[2001:db8::7]:443",
            parts(
                "https",
                Some("[2001:db8::7]:443"),
                Some("[2001:db8::7]"),
                Some("443"),
                "",
            ),
        ),
        (
            "private-use scheme",
            "com.example.app:/oauth2redirect",
            parts("com.example.app", None, None, None, "/oauth2redirect"),
        ),
        (
            "urn",
            "urn:example:notes",
            parts("urn", None, None, None, "example:notes"),
        ),
        (
            "@ outside an authority is fine",
            "mailto:a@example.com",
            parts("mailto", None, None, None, "a@example.com"),
        ),
        (
            "scheme with + - .",
            "a+b-c.d://h/",
            parts("a+b-c.d", Some("h"), Some("h"), None, "/"),
        ),
        (
            "scheme case kept",
            "HTTPS://Host/",
            parts("HTTPS", Some("Host"), Some("Host"), None, "/"),
        ),
        ("empty", "", None),
        ("no colon", "app.example.com/cb", None),
        ("empty scheme", "://host/", None),
        ("scheme only", "https:", None),
        ("scheme starts with digit", "1http://h/", None),
        ("scheme with _", "ht_tp://h/", None),
        ("relative path with a colon later", "/a?b=c:d", None),
        ("empty authority", "https:///cb", None),
        ("empty host", "https://:443/", None),
        ("userinfo", "https://user@host/", None),
        ("userinfo with password", "https://user:pw@host/", None),
        ("IPv6 unclosed", "http://[::1/cb", None),
        ("junk after IPv6", "http://[::1]x/cb", None),
        ("bad port after IPv6", "http://[::1]:8a/cb", None),
        ("non-numeric port", "http://host:abc/", None),
        ("six-digit port", "http://host:123456/", None),
    ];
    for (label, uri, expected) in cases {
        assert_eq!(split_uri(uri), expected, "[{label}] {uri:?}");
    }
}

#[test]
fn is_loopback_host_table() {
    let cases: &[(&str, bool)] = &[
        ("127.0.0.1", true),
        ("[::1]", true),
        ("localhost", true),
        ("LocalHost", true),
        ("::1", false),
        ("[::1]:80", false),
        ("127.0.0.2", false),
        ("127.1", false),
        ("0.0.0.0", false),
        ("[::ffff:127.0.0.1]", false),
        ("localhost.", false),
        ("localhost.example.com", false),
        ("", false),
    ];
    for &(host, expected) in cases {
        assert_eq!(is_loopback_host(host), expected, "[{host:?}]");
    }
}

#[test]
fn append_query_table() {
    /// (label, uri, pairs, expected)
    type AppendCase = (
        &'static str,
        &'static str,
        &'static [(&'static str, &'static str)],
        &'static str,
    );
    let cases: &[AppendCase] = &[
        (
            "no query",
            "https://app.example.com/cb",
            &[("code", "abc"), ("state", "xyz")],
            "https://app.example.com/cb?code=abc&state=xyz",
        ),
        (
            "keeps the existing query",
            "https://app.example.com/cb?tenant=a",
            &[("code", "abc")],
            "https://app.example.com/cb?tenant=a&code=abc",
        ),
        (
            "trailing ?",
            "https://app.example.com/cb?",
            &[("code", "abc")],
            "https://app.example.com/cb?code=abc",
        ),
        (
            "trailing &",
            "https://app.example.com/cb?a=1&",
            &[("code", "abc")],
            "https://app.example.com/cb?a=1&code=abc",
        ),
        (
            "no pairs",
            "https://app.example.com/cb",
            &[],
            "https://app.example.com/cb",
        ),
        (
            "empty value",
            "https://a.example/cb",
            &[("state", "")],
            "https://a.example/cb?state=",
        ),
        (
            "& = and space encoded",
            "https://a.example/cb",
            &[("state", "a&b=c d")],
            "https://a.example/cb?state=a%26b%3Dc%20d",
        ),
        (
            "+ / ? # % encoded",
            "https://a.example/cb",
            &[("state", "+/?#%")],
            "https://a.example/cb?state=%2B%2F%3F%23%25",
        ),
        (
            "non-ASCII encoded as UTF-8",
            "https://a.example/cb",
            &[("error_description", "été ✓")],
            "https://a.example/cb?error_description=%C3%A9t%C3%A9%20%E2%9C%93",
        ),
        (
            "unreserved kept",
            "https://a.example/cb",
            &[("state", "aZ09-._~")],
            "https://a.example/cb?state=aZ09-._~",
        ),
        (
            "key encoded too",
            "https://a.example/cb",
            &[("a b", "c")],
            "https://a.example/cb?a%20b=c",
        ),
        (
            "iss URL encoded",
            "http://127.0.0.1:5/cb",
            &[("code", "c"), ("iss", "https://as.example.com")],
            "http://127.0.0.1:5/cb?code=c&iss=https%3A%2F%2Fas.example.com",
        ),
        (
            "private-use scheme",
            "com.example.app:/cb",
            &[("code", "c")],
            "com.example.app:/cb?code=c",
        ),
    ];
    for &(label, uri, pairs, expected) in cases {
        assert_eq!(append_query(uri, pairs), expected, "[{label}]");
    }
}

/// What `append_query` writes, `parse_query` reads back unchanged.
#[test]
fn append_then_parse_round_trips() {
    let values: &[(&str, &str)] = &[
        ("plain", "xyz"),
        ("space and plus", "a b+c"),
        ("reserved", "a&b=c?d#e%f/g"),
        ("percent sequences", "%41%zz%"),
        ("non-ASCII", "été ✓ 😀"),
        ("quotes", "\"'\\"),
    ];
    for &(label, v) in values {
        for base in [
            "https://a.example/cb",
            "https://a.example/cb?x=1",
            "https://a.example/cb?",
        ] {
            let url = append_query(base, &[("state", v), ("nonce", v)]);
            let p = parse_query(&url).unwrap_or_else(|e| panic!("[{label}] {url}: {e}"));
            assert_eq!(p.state.as_deref(), Some(v), "[{label}] base {base}");
            assert_eq!(p.nonce.as_deref(), Some(v), "[{label}] base {base}");
        }
    }
}

#[test]
fn percent_encode_table() {
    let cases: &[(&str, &str, &str)] = &[
        ("empty", "", ""),
        ("unreserved", "AZaz09-._~", "AZaz09-._~"),
        ("space", " ", "%20"),
        ("gen-delims", ":/?#[]@", "%3A%2F%3F%23%5B%5D%40"),
        (
            "sub-delims",
            "!$&'()*+,;=",
            "%21%24%26%27%28%29%2A%2B%2C%3B%3D",
        ),
        ("percent", "%", "%25"),
        ("NUL", "\0", "%00"),
        ("UTF-8", "é", "%C3%A9"),
    ];
    for &(label, input, expected) in cases {
        let mut out = String::from(">");
        percent_encode(input, &mut out);
        assert_eq!(out, format!(">{expected}"), "[{label}] appends to out");
    }
}

#[test]
fn code_verifier_table() {
    let cases: Vec<(&str, String, bool)> = vec![
        ("empty", String::new(), false),
        ("42 chars", repeat("a", 42), false),
        ("43 chars", repeat("a", 43), true),
        ("128 chars", repeat("a", 128), true),
        ("129 chars", repeat("a", 129), false),
        (
            "RFC 7636 example",
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into(),
            true,
        ),
        (
            "all four punctuation",
            format!("{}-._~", repeat("Z", 39)),
            true,
        ),
        ("digits", repeat("9", 43), true),
        ("+", format!("{}+", repeat("a", 42)), false),
        ("/", format!("{}/", repeat("a", 42)), false),
        ("=", format!("{}=", repeat("a", 42)), false),
        ("space", format!("{} ", repeat("a", 42)), false),
        (
            "non-ASCII (43 bytes)",
            format!("{}é", repeat("a", 41)),
            false,
        ),
        (
            "non-ASCII (43 chars)",
            format!("{}é", repeat("a", 42)),
            false,
        ),
    ];
    for (label, verifier, expected) in cases {
        assert_eq!(is_valid_code_verifier(&verifier), expected, "[{label}]");
    }
}

// ---------------------------------------------------------------------------------------------
// serde
// ---------------------------------------------------------------------------------------------

#[test]
fn authorize_params_from_json() {
    let cases: &[(&str, &str, Option<AuthorizeParams>)] = &[
        ("empty object", "{}", Some(AuthorizeParams::default())),
        (
            "resource as a string",
            r#"{"resource":"https://a.example/"}"#,
            Some(ap(&[("resource", "https://a.example/")])),
        ),
        (
            "resource as an array",
            r#"{"resource":["https://a.example/","https://b.example/"]}"#,
            Some(ap(&[
                ("resource", "https://a.example/"),
                ("resource", "https://b.example/"),
            ])),
        ),
        (
            "resource as an empty array",
            r#"{"resource":[]}"#,
            Some(AuthorizeParams::default()),
        ),
        (
            "resource null",
            r#"{"resource":null}"#,
            Some(AuthorizeParams::default()),
        ),
        (
            "resource absent",
            r#"{"client_id":"c"}"#,
            Some(ap(&[("client_id", "c")])),
        ),
        ("resource as a number", r#"{"resource":1}"#, None),
        ("resource as an object", r#"{"resource":{}}"#, None),
        (
            "resource array with a number",
            r#"{"resource":["a:b",1]}"#,
            None,
        ),
        ("resource array with null", r#"{"resource":[null]}"#, None),
        (
            "client_id null",
            r#"{"client_id":null}"#,
            Some(AuthorizeParams::default()),
        ),
        ("client_id a number", r#"{"client_id":1}"#, None),
        (
            "unknown fields ignored",
            r#"{"client_id":"c","access_type":"offline"}"#,
            Some(ap(&[("client_id", "c")])),
        ),
        (
            "every field",
            r#"{"client_id":"c","redirect_uri":"https://a/cb","response_type":"code","scope":"a b",
                "state":"s","code_challenge":"x","code_challenge_method":"S256",
                "resource":"https://r/","prompt":"login","nonce":"n"}"#,
            Some(ap(&[
                ("client_id", "c"),
                ("redirect_uri", "https://a/cb"),
                ("response_type", "code"),
                ("scope", "a b"),
                ("state", "s"),
                ("code_challenge", "x"),
                ("code_challenge_method", "S256"),
                ("resource", "https://r/"),
                ("prompt", "login"),
                ("nonce", "n"),
            ])),
        ),
    ];
    for (label, json, expected) in cases {
        let got = serde_json::from_str::<AuthorizeParams>(json);
        match expected {
            Some(p) => assert_eq!(got.as_ref().ok(), Some(p), "[{label}] {got:?}"),
            None => assert!(got.is_err(), "[{label}] expected an error, got {got:?}"),
        }
    }
}

#[test]
fn authorize_params_serialize() {
    let cases: &[(&str, AuthorizeParams, &str)] = &[
        (
            "empty: every field omitted",
            AuthorizeParams::default(),
            "{}",
        ),
        (
            "resource always an array",
            ap(&[("client_id", "c"), ("resource", "https://a/")]),
            r#"{"client_id":"c","resource":["https://a/"]}"#,
        ),
    ];
    for (label, p, expected) in cases {
        let json = serde_json::to_string(p).unwrap();
        assert_eq!(json, *expected, "[{label}]");
        let back: AuthorizeParams = serde_json::from_str(&json).unwrap();
        assert_eq!(&back, p, "[{label}] round trip");
    }
}

#[test]
fn authorize_start_request_flattens_params() {
    let start = |params: AuthorizeParams,
                 trusted_auth_token: Option<&str>,
                 profile_id: Option<&str>,
                 session_duration_minutes: Option<u32>| AuthorizeStartRequest {
        params,
        trusted_auth_token: trusted_auth_token.map(str::to_owned),
        profile_id: profile_id.map(str::to_owned),
        session_duration_minutes,
    };
    let cases: Vec<(&str, &str, Option<AuthorizeStartRequest>)> = vec![
        ("empty", "{}", Some(AuthorizeStartRequest::default())),
        (
            "params with bearer session (no token)",
            r#"{"client_id":"c","state":"s"}"#,
            Some(start(
                ap(&[("client_id", "c"), ("state", "s")]),
                None,
                None,
                None,
            )),
        ),
        (
            "params + trusted_auth_token + profile_id",
            r#"{"client_id":"c","resource":"https://a/","trusted_auth_token":"t.t.t","profile_id":"default"}"#,
            Some(start(
                ap(&[("client_id", "c"), ("resource", "https://a/")]),
                Some("t.t.t"),
                Some("default"),
                None,
            )),
        ),
        (
            "resource array through flatten",
            r#"{"resource":["https://a/","https://b/"],"profile_id":"p"}"#,
            Some(start(
                ap(&[("resource", "https://a/"), ("resource", "https://b/")]),
                None,
                Some("p"),
                None,
            )),
        ),
        (
            "resource null through flatten",
            r#"{"resource":null,"trusted_auth_token":"t"}"#,
            Some(start(AuthorizeParams::default(), Some("t"), None, None)),
        ),
        (
            "session_duration_minutes",
            r#"{"client_id":"c","trusted_auth_token":"t","profile_id":"p","session_duration_minutes":30}"#,
            Some(start(
                ap(&[("client_id", "c")]),
                Some("t"),
                Some("p"),
                Some(30),
            )),
        ),
        (
            "unknown fields ignored",
            r#"{"client_id":"c","extra":true}"#,
            Some(start(ap(&[("client_id", "c")]), None, None, None)),
        ),
        (
            "resource a number through flatten",
            r#"{"resource":7}"#,
            None,
        ),
        (
            "negative duration",
            r#"{"session_duration_minutes":-1}"#,
            None,
        ),
    ];
    for (label, json, expected) in cases {
        let got = serde_json::from_str::<AuthorizeStartRequest>(json);
        match expected {
            Some(want) => {
                assert_eq!(got.as_ref().ok(), Some(&want), "[{label}] {got:?}");
                // Serialises flat, and back.
                let v = serde_json::to_value(&want).unwrap();
                assert!(v.get("params").is_none(), "[{label}] not flattened: {v}");
                if want.params.client_id.is_some() {
                    assert_eq!(v["client_id"], "c", "[{label}] {v}");
                }
                let back: AuthorizeStartRequest = serde_json::from_value(v).unwrap();
                assert_eq!(back, want, "[{label}] round trip");
            }
            None => assert!(got.is_err(), "[{label}] expected an error, got {got:?}"),
        }
    }
}

#[test]
fn authorize_submit_request_table() {
    /// (label, JSON, Some((params, consent_granted)) or None for an error)
    type SubmitCase = (&'static str, &'static str, Option<(AuthorizeParams, bool)>);
    let cases: &[SubmitCase] = &[
        (
            "granted",
            r#"{"client_id":"c","resource":["https://a/"],"consent_granted":true}"#,
            Some((ap(&[("client_id", "c"), ("resource", "https://a/")]), true)),
        ),
        (
            "denied",
            r#"{"client_id":"c","consent_granted":false}"#,
            Some((ap(&[("client_id", "c")]), false)),
        ),
        ("consent_granted required", r#"{"client_id":"c"}"#, None),
        (
            "consent_granted must be a bool",
            r#"{"consent_granted":"yes"}"#,
            None,
        ),
    ];
    for (label, json, expected) in cases {
        let got = serde_json::from_str::<AuthorizeSubmitRequest>(json);
        match expected {
            Some((params, granted)) => {
                let got = got.unwrap_or_else(|e| panic!("[{label}] {e}"));
                assert_eq!(&got.params, params, "[{label}]");
                assert_eq!(got.consent_granted, *granted, "[{label}]");
            }
            None => assert!(got.is_err(), "[{label}] expected an error, got {got:?}"),
        }
    }
}

/// The wire string of every variant, written out: the exhaustive `match` fails to compile when a
/// variant is added, which forces this table (and `ErrorCode::ALL`) to be updated.
fn documented_wire(c: ErrorCode) -> &'static str {
    match c {
        ErrorCode::InvalidRequest => "invalid_request",
        ErrorCode::InvalidClient => "invalid_client",
        ErrorCode::InvalidGrant => "invalid_grant",
        ErrorCode::UnauthorizedClient => "unauthorized_client",
        ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
        ErrorCode::InvalidScope => "invalid_scope",
        ErrorCode::AccessDenied => "access_denied",
        ErrorCode::UnsupportedResponseType => "unsupported_response_type",
        ErrorCode::ServerError => "server_error",
        ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
        ErrorCode::InvalidTarget => "invalid_target",
        ErrorCode::InvalidRedirectUri => "invalid_redirect_uri",
        ErrorCode::InvalidClientMetadata => "invalid_client_metadata",
        ErrorCode::InvalidToken => "invalid_token",
        ErrorCode::InsufficientScope => "insufficient_scope",
        ErrorCode::ConsentRequired => "consent_required",
        ErrorCode::LoginRequired => "login_required",
        ErrorCode::InvalidTrustedAuthToken => "invalid_trusted_auth_token",
        ErrorCode::SessionExpired => "session_expired",
        ErrorCode::InvalidSession => "invalid_session",
        ErrorCode::NotFound => "not_found",
        ErrorCode::MethodNotAllowed => "method_not_allowed",
        ErrorCode::RateLimited => "rate_limited",
        ErrorCode::AppNotAllowedForOrg => "app_not_allowed_for_org",
        ErrorCode::ScopeNotAllowedForOrg => "scope_not_allowed_for_org",
        ErrorCode::Forbidden => "forbidden",
        ErrorCode::PreconditionFailed => "precondition_failed",
    }
}

#[test]
fn error_code_round_trips() {
    for c in ErrorCode::ALL {
        let label = format!("{c:?}");
        let wire = c.as_str();
        assert_eq!(wire, documented_wire(c), "[{label}] as_str");
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            format!("\"{wire}\""),
            "[{label}] serde string"
        );
        assert_eq!(
            serde_json::from_str::<ErrorCode>(&format!("\"{wire}\"")).unwrap(),
            c,
            "[{label}] serde parse"
        );
        assert_eq!(ErrorCode::from_wire(wire), Some(c), "[{label}] from_wire");
        assert!(
            wire.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "[{label}] {wire:?} is not snake_case"
        );
    }
    // ALL lists each variant once (with the exhaustive match above, that means: all of them).
    for (i, a) in ErrorCode::ALL.iter().enumerate() {
        for b in &ErrorCode::ALL[i + 1..] {
            assert_ne!(a, b, "{a:?} listed twice in ErrorCode::ALL");
            assert_ne!(
                a.as_str(),
                b.as_str(),
                "{a:?} and {b:?} share a wire string"
            );
        }
    }
    for unknown in [
        "",
        "Invalid_Request",
        "invalid-request",
        "INVALID_REQUEST",
        " invalid_request",
    ] {
        assert_eq!(ErrorCode::from_wire(unknown), None, "[{unknown:?}]");
        assert!(
            serde_json::from_str::<ErrorCode>(&format!("\"{unknown}\"")).is_err(),
            "[{unknown:?}] serde"
        );
    }
}

#[test]
fn error_body_table() {
    let cases: &[(&str, ErrorBody, &str)] = &[
        (
            "without redirect",
            ErrorBody {
                error: ErrorCode::InvalidClient,
                error_description: "client_id 'x' is not registered".into(),
                redirect_uri: None,
                client_name: None,
                organization_name: None,
            },
            r#"{"error":"invalid_client","error_description":"client_id 'x' is not registered"}"#,
        ),
        (
            "with redirect",
            ErrorBody {
                error: ErrorCode::AccessDenied,
                error_description: "denied".into(),
                redirect_uri: Some("https://a/cb?error=access_denied".into()),
                client_name: None,
                organization_name: None,
            },
            r#"{"error":"access_denied","error_description":"denied","redirect_uri":"https://a/cb?error=access_denied"}"#,
        ),
    ];
    for (label, body, json) in cases {
        assert_eq!(serde_json::to_string(body).unwrap(), *json, "[{label}]");
        let back: ErrorBody = serde_json::from_str(json).unwrap();
        assert_eq!(&back, body, "[{label}] round trip");
    }
}

// ---------------------------------------------------------------------------------------------
// Our host against a browser's (WHATWG URL, the `url` crate)
// ---------------------------------------------------------------------------------------------

/// Tricky URIs, each with what we do: `Some(host)` accepted and shown as `host`, `None` refused.
/// For every one, where a browser's parser sees another host (or no URL at all), ours must refuse;
/// where we accept, the browser goes where the consent screen says.
#[test]
fn redirect_host_agrees_with_whatwg_url() {
    let cases: &[(&str, &str, Option<&str>)] = &[
        (
            "plain https",
            "https://good.example/cb",
            Some("good.example"),
        ),
        // backslash: a browser reads it as '/'
        (
            "backslash in host",
            "https://evil.example\\good.example/cb",
            None,
        ),
        (
            "backslash before @",
            "https://evil.example\\@good.example/cb",
            None,
        ),
        ("backslash in path", "https://good.example/a\\b", None),
        (
            "backslashes after scheme",
            "https:\\\\evil.example/cb",
            None,
        ),
        ("slash backslash", "https:/\\evil.example/cb", None),
        // tab, CR, LF: a browser strips them
        ("tab in host", "https://evil.exa\tmple/cb", None),
        (
            "CR LF in host",
            "https://good.example\r\n.evil.example/cb",
            None,
        ),
        ("newline in scheme", "htt\nps://evil.example/cb", None),
        // percent-encoding: a browser decodes the host
        ("%2e in host", "https://evil%2eexample/cb", None),
        (
            "%2E in host",
            "https://good.example%2Eevil.example/cb",
            None,
        ),
        ("percent-encoded host", "https://%65vil.example/cb", None),
        (
            "%00 in host",
            "https://good.example%00.evil.example/cb",
            None,
        ),
        (
            "%2e%2e in path",
            "https://good.example/x/%2e%2e/cb",
            Some("good.example"),
        ),
        // userinfo
        ("userinfo", "https://good.example@evil.example/cb", None),
        (
            "userinfo with password",
            "https://good.example:443@evil.example/cb",
            None,
        ),
        (
            "@ after ?",
            "https://evil.example?@good.example/cb",
            Some("evil.example"),
        ),
        (
            "@ in path",
            "https://evil.example/@good.example",
            Some("evil.example"),
        ),
        ("@ after #", "https://evil.example#@good.example", None),
        // IPv6 literals
        ("IPv6 loopback", "http://[::1]:8080/cb", Some("[::1]")),
        (
            "IPv6 uppercase",
            "http://[2001:DB8::A]/cb",
            Some("[2001:db8::a]"),
        ),
        ("IPv6 not compressed", "http://[0:0:0:0:0:0:0:1]/cb", None),
        ("IPv6 leading zeros", "http://[::0001]/cb", None),
        ("IPv6 embedded IPv4", "http://[::ffff:127.0.0.1]/cb", None),
        (
            "IPv6 IPv4-mapped in hex",
            "http://[::ffff:a00:5]/cb",
            Some("[::ffff:a00:5]"),
        ),
        (
            "IPv6 IPv4-mapped uncompressed",
            "http://[0:0:0:0:0:ffff:a00:5]/cb",
            None,
        ),
        (
            "IPv6 IPv4-compatible",
            "http://[::102:304]/cb",
            Some("[::102:304]"),
        ),
        ("IPv6 zone id", "http://[fe80::1%25eth0]/cb", None),
        ("IPv6 unclosed", "http://[::1/cb", None),
        ("IPv6 then junk", "http://[::1]evil.example/cb", None),
        ("IPvFuture", "http://[v1.x]/cb", None),
        // IPv4 in the forms a browser turns into an address
        ("IPv4", "http://127.0.0.1:5000/cb", Some("127.0.0.1")),
        ("IPv4 short", "http://127.1/cb", None),
        ("IPv4 hex", "http://0x7f.0.0.1/cb", None),
        ("IPv4 one number", "http://2130706433/cb", None),
        ("IPv4 octal", "http://0177.0.0.1/cb", None),
        ("IPv4 trailing dot", "http://127.0.0.1./cb", None),
        ("IPv4 five parts", "https://1.2.3.4.5/cb", None),
        ("ends in a number", "https://evil.example.123/cb", None),
        ("ends in 0x", "https://evil.0x/cb", None),
        (
            "not a number",
            "https://good.example.0x1g/cb",
            Some("good.example.0x1g"),
        ),
        // trailing dots
        (
            "trailing dot",
            "https://good.example./cb",
            Some("good.example."),
        ),
        (
            "localhost trailing dot",
            "http://localhost./cb",
            Some("localhost."),
        ),
        // uppercase schemes and hosts
        (
            "uppercase scheme",
            "HTTPS://Good.Example/cb",
            Some("good.example"),
        ),
        (
            "mixed-case scheme",
            "hTtP://127.0.0.1:1/cb",
            Some("127.0.0.1"),
        ),
        (
            "uppercase private-use scheme",
            "Com.Example.App:/cb",
            Some("com.example.app"),
        ),
        // a special scheme without '//': a browser still finds a host
        ("https without slashes", "https:evil.example/cb", None),
        ("HTTP without slashes", "HTTP:evil.example/cb", None),
        ("https one slash", "https:/evil.example/cb", None),
        ("https three slashes", "https:///evil.example/cb", None),
        ("wss without slashes", "wss:evil.example/cb", None),
        // ports
        (
            "default port",
            "https://good.example:443/cb",
            Some("good.example"),
        ),
        (
            "other port",
            "https://good.example:8443/cb",
            Some("good.example"),
        ),
        (
            "empty port",
            "https://good.example:/cb",
            Some("good.example"),
        ),
        ("port too large", "https://good.example:99999/cb", None),
        ("port 65536", "https://good.example:65536/cb", None),
        ("hex port", "https://good.example:0x50/cb", None),
        ("two colons", "https://evil.example:good.example:1/cb", None),
        // other host characters
        (
            "underscore",
            "https://my_app.example/cb",
            Some("my_app.example"),
        ),
        (
            "leading hyphen",
            "https://-good.example/cb",
            Some("-good.example"),
        ),
        (
            "punycode",
            "https://xn--mnchen-3ya.example/cb",
            Some("xn--mnchen-3ya.example"),
        ),
        ("non-ASCII host", "https://evil\u{ff0e}example/cb", None),
        (
            "sub-delims in host",
            "https://evil.example!$&'()*+,;=/cb",
            None,
        ),
        ("space in host", "https://evil example/cb", None),
        ("empty host", "https:///cb", None),
        // private-use schemes: the app that claims the scheme gets it, whatever the authority
        (
            "private-use",
            "com.example.app:/oauth/cb",
            Some("com.example.app"),
        ),
        (
            "private-use with host",
            "com.example.app://evil.example/cb",
            Some("com.example.app"),
        ),
        (
            "private-use with encoded host",
            "com.example.app://evil%2eexample/cb",
            None,
        ),
    ];
    for &(label, uri, expected) in cases {
        let ours = validate_redirect_uri(uri)
            .ok()
            .and_then(|u| split_uri(u).map(|_| u))
            .and_then(redirect_host);
        assert_eq!(ours.as_deref(), expected, "[{label}] {uri:?}: ours");
        let Some(ours) = ours else { continue };
        // Accepted: a browser must parse it to the same place.
        let browser = url::Url::parse(uri)
            .unwrap_or_else(|e| panic!("[{label}] {uri:?}: we accept, a browser refuses: {e}"));
        let scheme = split_uri(uri).unwrap().scheme.to_ascii_lowercase();
        assert_eq!(browser.scheme(), scheme, "[{label}] {uri:?}: scheme");
        if scheme == "http" || scheme == "https" {
            assert_eq!(
                browser.host_str(),
                Some(ours.as_str()),
                "[{label}] {uri:?}: a browser goes elsewhere"
            );
        } else {
            // What the screen shows for a private-use URI is its scheme (see redirect_host).
            assert_eq!(ours, browser.scheme(), "[{label}] {uri:?}: scheme shown");
        }
    }
}
