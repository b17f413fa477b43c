//! The parse wrapper on what real clients send: it must agree with the server's grammar.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// The case tables are tuples on purpose: one line per case reads as a table.
#![allow(clippy::type_complexity)]

use consentry_core::{SdkErrorCode, parse_authorize_params};
use consentry_protocol::ErrorCode;

const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

fn url(query: &str) -> String {
    format!("https://app.example.com/oauth/authorize?{query}")
}

fn base() -> String {
    format!(
        "client_id=demo-agent&redirect_uri=http%3A%2F%2F127.0.0.1%3A9999%2Fcallback&code_challenge={CHALLENGE}&code_challenge_method=S256&state=xyz"
    )
}

#[test]
fn real_client_quirks_parse_like_the_server() {
    // (case, query, expected scope, expected resources, expected response_type)
    let cases: &[(&str, String, Option<&str>, &[&str], Option<&str>)] = &[
        (
            "complete request",
            format!(
                "{}&response_type=code&scope=notes:read&resource=http%3A%2F%2F127.0.0.1%3A8788%2Fmcp",
                base()
            ),
            Some("notes:read"),
            &["http://127.0.0.1:8788/mcp"],
            Some("code"),
        ),
        (
            "missing response_type (ChatGPT)",
            format!("{}&scope=notes:read", base()),
            Some("notes:read"),
            &[],
            None,
        ),
        (
            "repeated resource (RFC 8707)",
            format!(
                "{}&response_type=code&resource=https%3A%2F%2Fa.example%2Fmcp&resource=https%3A%2F%2Fb.example%2Fmcp",
                base()
            ),
            None,
            &["https://a.example/mcp", "https://b.example/mcp"],
            Some("code"),
        ),
        (
            "stray spaces in scope, + and %20",
            format!(
                "{}&response_type=code&scope=+notes:read%20%20notes:write+",
                base()
            ),
            Some(" notes:read  notes:write "),
            &[],
            Some("code"),
        ),
        (
            "absent scope",
            format!("{}&response_type=code", base()),
            None,
            &[],
            Some("code"),
        ),
        (
            "unknown parameters are ignored",
            format!("{}&response_type=code&foo=bar&utm_source=x", base()),
            None,
            &[],
            Some("code"),
        ),
        (
            "stray spaces around response_type",
            format!("{}&response_type=+code+", base()),
            None,
            &[],
            Some(" code "),
        ),
    ];
    for (case, query, scope, resources, response_type) in cases {
        for input in [url(query), format!("?{query}"), query.clone()] {
            let parsed = parse_authorize_params(&input);
            assert_eq!(parsed.error, None, "{case}: {input}");
            let params = parsed.params.expect(case);
            assert_eq!(params.client_id.as_deref(), Some("demo-agent"), "{case}");
            assert_eq!(
                params.redirect_uri.as_deref(),
                Some("http://127.0.0.1:9999/callback"),
                "{case}"
            );
            assert_eq!(params.scope.as_deref(), *scope, "{case}");
            assert_eq!(params.resource, *resources, "{case}");
            assert_eq!(params.response_type.as_deref(), *response_type, "{case}");
            assert_eq!(params.state.as_deref(), Some("xyz"), "{case}");
        }
    }
}

#[test]
fn invalid_requests_get_the_servers_code_and_redirectability() {
    // (case, query, code, params kept, redirectable)
    let cases: &[(&str, String, ErrorCode, bool, bool)] = &[
        (
            "missing client_id",
            format!(
                "redirect_uri=http%3A%2F%2Fx%2Fcb&code_challenge={CHALLENGE}&code_challenge_method=S256"
            ),
            ErrorCode::InvalidRequest,
            true,
            false,
        ),
        (
            "redirect_uri with a fragment",
            format!(
                "client_id=a&redirect_uri=http%3A%2F%2Fx%2Fcb%23frag&code_challenge={CHALLENGE}&code_challenge_method=S256"
            ),
            ErrorCode::InvalidRedirectUri,
            true,
            false,
        ),
        (
            "response_type token",
            format!("{}&response_type=token", base()),
            ErrorCode::UnsupportedResponseType,
            true,
            true,
        ),
        (
            "PKCE plain",
            base().replace("S256", "plain"),
            ErrorCode::InvalidRequest,
            true,
            true,
        ),
        (
            "PKCE missing",
            "client_id=a&redirect_uri=http%3A%2F%2Fx%2Fcb".to_owned(),
            ErrorCode::InvalidRequest,
            true,
            true,
        ),
        (
            "scope with a double quote",
            format!("{}&scope=notes%22read", base()),
            ErrorCode::InvalidScope,
            true,
            true,
        ),
        (
            "relative resource",
            format!("{}&resource=%2Fmcp", base()),
            ErrorCode::InvalidTarget,
            true,
            true,
        ),
        (
            "unknown prompt",
            format!("{}&prompt=sometimes", base()),
            ErrorCode::InvalidRequest,
            true,
            true,
        ),
        (
            "repeated state",
            format!("{}&state=again", base()),
            ErrorCode::InvalidRequest,
            false,
            true,
        ),
        (
            "bad percent-encoding",
            format!("{}&nonce=%zz", base()),
            ErrorCode::InvalidRequest,
            false,
            true,
        ),
        (
            "repeated client_id",
            format!("{}&client_id=other", base()),
            ErrorCode::InvalidRequest,
            false,
            false,
        ),
    ];
    for (case, query, code, kept, redirectable) in cases {
        let parsed = parse_authorize_params(&url(query));
        let error = parsed.error.expect(case);
        assert_eq!(
            error.code,
            SdkErrorCode::Server(*code),
            "{case}: {}",
            error.description
        );
        assert_eq!(error.status, None, "{case}");
        assert!(!error.description.is_empty(), "{case}");
        assert_eq!(parsed.params.is_some(), *kept, "{case}");
        assert_eq!(parsed.redirectable, *redirectable, "{case}");
    }
}

#[test]
fn error_descriptions_name_the_parameter() {
    let parsed = parse_authorize_params(&url(&format!("{}&response_type=token", base())));
    let description = parsed.error.expect("an error").description;
    assert!(description.contains("response_type"), "{description}");
    assert!(description.contains("'token'"), "{description}");
}
