//! The rules an RFC 9068 access token must pass, as plain functions over its parts: the JOSE
//! header (typ, alg, crit) before any key is looked up, the claims after the signature verified.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use crate::error::AuthError;

/// Longest token accepted: far above any access token Consentry issues, small enough that a
/// hostile header cannot make us decode megabytes.
pub(crate) const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Asymmetric algorithms only: `none` and the HS* family are never accepted, whatever the
/// configuration says (a public key must never double as an HMAC secret).
pub const DEFAULT_ALGORITHMS: &[Algorithm] = &[
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

pub(crate) fn is_asymmetric(alg: Algorithm) -> bool {
    !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// A value from the token, made safe and short for an error description.
pub(crate) fn shown(v: &str) -> String {
    let mut out: String = v
        .chars()
        .take(80)
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .collect();
    if v.chars().count() > 80 {
        out.push_str("...");
    }
    out
}

fn shown_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("'{}'", shown(s)),
        other => shown(&other.to_string()),
    }
}

/// The parts of the JOSE header that matter here.
#[derive(Debug)]
pub(crate) struct Header {
    pub alg: Algorithm,
    pub kid: Option<String>,
}

fn decode_segment(seg: &str, what: &str) -> Result<Map<String, Value>, AuthError> {
    let bytes = URL_SAFE_NO_PAD.decode(seg).map_err(|_| {
        AuthError::MalformedToken(format!("the JWT {what} is not base64url (RFC 7515)"))
    })?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(AuthError::MalformedToken(format!(
            "the JWT {what} is not a JSON object"
        ))),
    }
}

/// A JSON object: a JOSE header or a claims set.
pub(crate) type Object = Map<String, Value>;

/// Split a compact JWS into header and payload objects (no signature check).
pub(crate) fn split(token: &str) -> Result<(Object, Object), AuthError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::MalformedToken(format!(
            "the token is {} bytes; at most {MAX_TOKEN_BYTES} are accepted",
            token.len()
        )));
    }
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        let hint = if parts.len() == 5 {
            " (an encrypted JWE is not accepted)"
        } else {
            ""
        };
        return Err(AuthError::MalformedToken(format!(
            "the token is not a JWT: expected 3 dot-separated parts, got {}{hint}",
            parts.len()
        )));
    }
    let header = decode_segment(parts[0], "header")?;
    let payload = decode_segment(parts[1], "payload")?;
    Ok((header, payload))
}

/// RFC 9068 §4: `typ` must be `at+jwt` (`application/at+jwt` is the same media type).
pub(crate) fn check_header(
    header: &Map<String, Value>,
    allowed: &[Algorithm],
) -> Result<Header, AuthError> {
    let typ = header.get("typ");
    let typ_ok = typ.and_then(Value::as_str).is_some_and(|t| {
        let t = t.to_ascii_lowercase();
        t == "at+jwt" || t == "application/at+jwt"
    });
    if !typ_ok {
        let got = typ.map_or_else(|| "absent".to_owned(), shown_value);
        return Err(AuthError::WrongTokenType(format!(
            "the JWT header typ is {got}; an access token must have typ 'at+jwt' (RFC 9068), so ID tokens and other JWTs are refused"
        )));
    }
    let alg_name = match header.get("alg") {
        Some(Value::String(a)) => a.as_str(),
        Some(other) => {
            return Err(AuthError::AlgorithmNotAllowed(format!(
                "the JWT header alg is {}; expected a string",
                shown_value(other)
            )));
        }
        None => {
            return Err(AuthError::AlgorithmNotAllowed(
                "the JWT header has no alg".into(),
            ));
        }
    };
    let allowed_list = || {
        allowed
            .iter()
            .map(|a| format!("{a:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let alg = alg_name.parse::<Algorithm>().ok();
    let Some(alg) = alg.filter(|a| allowed.contains(a) && is_asymmetric(*a)) else {
        let why = if alg_name.eq_ignore_ascii_case("none") {
            "unsigned tokens are never accepted"
        } else if alg_name.to_ascii_uppercase().starts_with("HS") {
            "HMAC algorithms are never accepted: the issuer signs with a private key"
        } else {
            "not on the allow-list"
        };
        return Err(AuthError::AlgorithmNotAllowed(format!(
            "alg '{}' is refused ({why}); allowed: {}",
            shown(alg_name),
            allowed_list()
        )));
    };
    if let Some(crit) = header.get("crit") {
        return Err(AuthError::UnsupportedCriticalHeader(format!(
            "the JWT header marks {} as critical; no critical extension is supported (RFC 7515 §4.1.11)",
            shown_value(crit)
        )));
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(other) => {
            return Err(AuthError::MalformedToken(format!(
                "the JWT header kid is {}; expected a string",
                shown_value(other)
            )));
        }
    };
    Ok(Header { alg, kid })
}

/// What the claims are checked against.
pub(crate) struct Expect<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    pub leeway: i64,
    pub now: i64,
}

fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, AuthError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => {
            let n = v
                .as_i64()
                .or_else(|| {
                    v.as_f64()
                        .filter(|f| f.is_finite() && f.abs() < 1e15)
                        .map(|f| f.floor() as i64)
                })
                .ok_or_else(|| {
                    AuthError::BadClaim(format!(
                        "claim {name} is {}; expected a NumericDate (seconds since 1970)",
                        shown_value(v)
                    ))
                })?;
            Ok(Some(n))
        }
    }
}

/// `iss` and `aud`: checked first, on claims not yet verified, to refuse foreign tokens without
/// fetching keys for them (refusing on unverified data is safe; accepting never happens here).
pub(crate) fn check_iss_aud(claims: &Map<String, Value>, e: &Expect<'_>) -> Result<(), AuthError> {
    match claims.get("iss") {
        Some(Value::String(iss)) if iss == e.issuer => {}
        Some(other) => {
            return Err(AuthError::WrongIssuer(format!(
                "iss is {}; expected '{}'",
                shown_value(other),
                e.issuer
            )));
        }
        None => {
            return Err(AuthError::BadClaim(format!(
                "claim iss is missing; expected '{}'",
                e.issuer
            )));
        }
    }
    let ok = match claims.get("aud") {
        Some(Value::String(a)) => a == e.audience,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(e.audience)),
        None => {
            return Err(AuthError::BadClaim(format!(
                "claim aud is missing; expected '{}'",
                e.audience
            )));
        }
        Some(_) => false,
    };
    if !ok {
        return Err(AuthError::WrongAudience(format!(
            "aud is {}, which does not include this resource; expected '{}' (request the token with resource={})",
            shown_value(claims.get("aud").unwrap_or(&Value::Null)),
            e.audience,
            e.audience
        )));
    }
    Ok(())
}

/// `exp`, `nbf`, `iat` with leeway, overflow-safe.
pub(crate) fn check_times(claims: &Map<String, Value>, e: &Expect<'_>) -> Result<(), AuthError> {
    let exp = numeric_date(claims, "exp")?.ok_or_else(|| {
        AuthError::BadClaim("claim exp is missing; access tokens must expire (RFC 9068)".into())
    })?;
    if e.now.saturating_sub(e.leeway) >= exp {
        return Err(AuthError::Expired(format!(
            "the token expired {}s ago (exp {exp}, leeway {}s); refresh it",
            e.now.saturating_sub(exp),
            e.leeway
        )));
    }
    for name in ["nbf", "iat"] {
        if let Some(t) = numeric_date(claims, name)?
            && t > e.now.saturating_add(e.leeway)
        {
            return Err(AuthError::NotYetValid(format!(
                "claim {name} is {}s in the future (leeway {}s); check the clocks of issuer and resource",
                t.saturating_sub(e.now),
                e.leeway
            )));
        }
    }
    Ok(())
}

/// The RFC 9068 claims a caller is made of.
#[derive(Debug)]
pub(crate) struct CallerClaims {
    pub subject: String,
    pub client_id: String,
    pub token_id: String,
    pub scopes: Vec<String>,
    pub grant_id: Option<String>,
    pub expires_at: i64,
}

fn required_str(claims: &Map<String, Value>, name: &str) -> Result<String, AuthError> {
    match claims.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(other) => Err(AuthError::BadClaim(format!(
            "claim {name} is {}; expected a non-empty string",
            shown_value(other)
        ))),
        None => Err(AuthError::BadClaim(format!(
            "claim {name} is missing; RFC 9068 access tokens carry it"
        ))),
    }
}

pub(crate) fn caller_claims(claims: &Map<String, Value>) -> Result<CallerClaims, AuthError> {
    let scopes = match claims.get("scope") {
        None => Vec::new(),
        Some(Value::String(s)) => s
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        Some(other) => {
            return Err(AuthError::BadClaim(format!(
                "claim scope is {}; expected a space-separated string",
                shown_value(other)
            )));
        }
    };
    if numeric_date(claims, "iat")?.is_none() {
        return Err(AuthError::BadClaim(
            "claim iat is missing; RFC 9068 access tokens carry it".into(),
        ));
    }
    let grant_id = match claims.get("gid") {
        Some(Value::String(g)) => Some(g.clone()),
        _ => None,
    };
    Ok(CallerClaims {
        subject: required_str(claims, "sub")?,
        client_id: required_str(claims, "client_id")?,
        token_id: required_str(claims, "jti")?,
        scopes,
        grant_id,
        expires_at: numeric_date(claims, "exp")?.unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    const ISS: &str = "https://issuer.example";
    const AUD: &str = "https://mcp.example/mcp";

    fn expect(now: i64) -> Expect<'static> {
        Expect {
            issuer: ISS,
            audience: AUD,
            leeway: 10,
            now,
        }
    }

    #[test]
    fn typ_must_be_at_jwt() {
        for typ in ["at+jwt", "AT+JWT", "application/at+jwt"] {
            let h = obj(json!({"alg": "ES256", "typ": typ, "kid": "k"}));
            assert!(check_header(&h, DEFAULT_ALGORITHMS).is_ok(), "{typ}");
        }
        for h in [
            json!({"alg": "ES256", "typ": "JWT"}),
            json!({"alg": "ES256"}),
            json!({"alg": "ES256", "typ": 5}),
        ] {
            let e = check_header(&obj(h), DEFAULT_ALGORITHMS).unwrap_err();
            assert_eq!(e.code(), "wrong_token_type");
            assert!(e.description().contains("at+jwt"));
        }
    }

    #[test]
    fn none_and_hmac_are_refused_even_when_configured() {
        let all = [Algorithm::HS256, Algorithm::ES256];
        for alg in ["none", "None", "HS256", "HS512", "XS256", ""] {
            let h = obj(json!({"alg": alg, "typ": "at+jwt"}));
            let e = check_header(&h, &all).unwrap_err();
            assert_eq!(e.code(), "algorithm_not_allowed", "{alg}");
        }
        let e = check_header(&obj(json!({"typ": "at+jwt"})), &all).unwrap_err();
        assert_eq!(e.code(), "algorithm_not_allowed");
    }

    #[test]
    fn crit_is_refused() {
        let h = obj(json!({"alg": "ES256", "typ": "at+jwt", "crit": ["b64"], "b64": false}));
        let e = check_header(&h, DEFAULT_ALGORITHMS).unwrap_err();
        assert_eq!(e.code(), "unsupported_critical_header");
    }

    #[test]
    fn malformed_tokens_name_the_part() {
        for (t, mention) in [
            ("abc", "3 dot-separated parts"),
            ("a.b.c.d.e", "JWE"),
            ("!!.e30.x", "header is not base64url"),
            ("e30.!!.x", "payload is not base64url"),
            ("WzFd.e30.x", "header is not a JSON object"),
        ] {
            let e = split(t).unwrap_err();
            assert_eq!(e.code(), "malformed_token", "{t}");
            assert!(
                e.description().contains(mention),
                "{t}: {}",
                e.description()
            );
        }
        let huge = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert!(split(&huge).unwrap_err().description().contains("bytes"));
    }

    #[test]
    fn audience_must_include_this_resource() {
        let ok = obj(json!({"iss": ISS, "aud": AUD}));
        assert!(check_iss_aud(&ok, &expect(0)).is_ok());
        let list = obj(json!({"iss": ISS, "aud": ["https://other", AUD]}));
        assert!(check_iss_aud(&list, &expect(0)).is_ok());
        for aud in [json!("https://mcp.example/mcp/"), json!(["x"]), json!(5)] {
            let c = obj(json!({"iss": ISS, "aud": aud}));
            let e = check_iss_aud(&c, &expect(0)).unwrap_err();
            assert_eq!(e.code(), "wrong_audience");
            assert!(e.description().contains(AUD));
        }
        let e = check_iss_aud(&obj(json!({"iss": ISS})), &expect(0)).unwrap_err();
        assert_eq!(e.code(), "invalid_claim");
    }

    #[test]
    fn issuer_must_match_exactly() {
        for iss in [json!("https://issuer.example/"), json!("evil"), json!(1)] {
            let c = obj(json!({"iss": iss, "aud": AUD}));
            let e = check_iss_aud(&c, &expect(0)).unwrap_err();
            assert_eq!(e.code(), "wrong_issuer");
            assert!(e.description().contains(ISS));
        }
    }

    #[test]
    fn expiry_and_not_before_honour_the_leeway() {
        let now = 1_000_000;
        let c = obj(json!({"exp": now - 5, "nbf": now + 5, "iat": now + 5}));
        assert!(check_times(&c, &expect(now)).is_ok(), "within leeway");
        let c = obj(json!({"exp": now - 10}));
        assert_eq!(
            check_times(&c, &expect(now)).unwrap_err().code(),
            "token_expired"
        );
        let c = obj(json!({"exp": now + 100, "nbf": now + 11}));
        assert_eq!(
            check_times(&c, &expect(now)).unwrap_err().code(),
            "token_not_yet_valid"
        );
        let c = obj(json!({"exp": now + 100, "iat": now + 60}));
        assert_eq!(
            check_times(&c, &expect(now)).unwrap_err().code(),
            "token_not_yet_valid"
        );
        let c = obj(json!({"nbf": now}));
        assert_eq!(
            check_times(&c, &expect(now)).unwrap_err().code(),
            "invalid_claim"
        );
        let c = obj(json!({"exp": "tomorrow"}));
        assert_eq!(
            check_times(&c, &expect(now)).unwrap_err().code(),
            "invalid_claim"
        );
    }

    #[test]
    fn extreme_times_do_not_overflow() {
        let c = obj(json!({"exp": i64::MAX, "nbf": i64::MIN, "iat": 1e300}));
        assert_eq!(
            check_times(&c, &expect(i64::MAX)).unwrap_err().code(),
            "invalid_claim"
        );
        let c = obj(json!({"exp": i64::MIN}));
        assert_eq!(
            check_times(&c, &expect(i64::MIN)).unwrap_err().code(),
            "token_expired"
        );
        let c = obj(json!({"exp": 1.5e9, "nbf": 1.0e9}));
        assert!(check_times(&c, &expect(1_400_000_000)).is_ok());
    }

    #[test]
    fn caller_needs_sub_client_id_jti_iat() {
        let full = json!({"sub": "u1", "client_id": "c", "jti": "j", "iat": 1, "exp": 2,
            "scope": "a  b", "gid": "g"});
        let c = caller_claims(&obj(full.clone())).unwrap();
        assert_eq!(c.scopes, vec!["a", "b"]);
        assert_eq!(c.grant_id.as_deref(), Some("g"));
        for missing in ["sub", "client_id", "jti", "iat"] {
            let mut m = obj(full.clone());
            m.remove(missing);
            let e = caller_claims(&m).unwrap_err();
            assert_eq!(e.code(), "invalid_claim");
            assert!(e.description().contains(missing));
        }
        let mut m = obj(full);
        m.insert("scope".into(), json!(["a"]));
        assert_eq!(caller_claims(&m).unwrap_err().code(), "invalid_claim");
    }
}
