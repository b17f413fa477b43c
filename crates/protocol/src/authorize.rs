//! The grammar of an OAuth 2.1 authorization request (RFC 6749 §4.1.1, RFC 7636, RFC 8707,
//! OpenID Connect `prompt`/`nonce`), tolerant of what real MCP clients send.
//!
//! Two stages: [`parse_query`] turns a URL or query string into raw [`AuthorizeParams`] (the same
//! struct the JSON API carries), and [`AuthorizeRequest::parse`] validates them. Validation runs
//! in a fixed order — `client_id`, then `redirect_uri`, then everything else — so that a caller
//! can tell errors that must be shown to the user (the client or its redirect URI cannot be
//! trusted: [`ParamError::is_redirectable`] is false) from errors that go back to the client.

use core::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::ErrorCode;

/// Parameters exactly as they arrive, before validation. `scope` is the space-delimited string
/// from the URL; `resource` may repeat (RFC 8707) and, in JSON, may be a string or an array.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizeParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// `client_id`.
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// `redirect_uri`.
    pub redirect_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// `response_type` (only `code` is supported).
    pub response_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// `scope`: space-separated scope tokens.
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// `state`, returned to the client unchanged.
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// `code_challenge` (PKCE).
    pub code_challenge: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// `code_challenge_method` (only `S256` is accepted).
    pub code_challenge_method: Option<String>,
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    /// `resource` (RFC 8707); may repeat.
    pub resource: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// `prompt` (OpenID Connect).
    pub prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// `nonce` (OpenID Connect), echoed in the ID token.
    pub nonce: Option<String>,
}

/// A PKCE S256 challenge that passed the grammar: 43 base64url characters. `plain` never gets
/// here, so code holding a `CodeChallenge` cannot be handed a plain-text verifier by mistake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeChallenge(String);

impl CodeChallenge {
    /// The challenge as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The OpenID Connect `prompt` values Consentry acts on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Prompt {
    /// `prompt=none`: never show a screen.
    pub none: bool,
    /// `prompt=login`: a recent sign-in is required.
    pub login: bool,
    /// `prompt=consent`: ask even if consent was remembered.
    pub consent: bool,
    /// `prompt=select_account`.
    pub select_account: bool,
    /// `prompt=create`.
    pub create: bool,
}

/// A validated authorization request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthorizeRequest {
    /// The client asking.
    pub client_id: String,
    /// `None` when the client omitted it (allowed only if it registered exactly one).
    pub redirect_uri: Option<String>,
    /// Requested scopes, de-duplicated, in request order. Empty means "the defaults".
    pub scopes: Vec<String>,
    /// `state`, returned unchanged.
    pub state: Option<String>,
    /// The verified PKCE S256 challenge.
    pub code_challenge: CodeChallenge,
    /// Requested resource indicators, de-duplicated, in request order.
    pub resources: Vec<String>,
    /// The `prompt` values.
    pub prompt: Prompt,
    /// `nonce`, for the ID token.
    pub nonce: Option<String>,
}

/// Which parameter is wrong and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamError {
    /// The parameter's name (`redirect_uri`).
    pub param: &'static str,
    /// What is wrong with it.
    pub problem: ParamProblem,
}

#[derive(Clone, Debug, PartialEq, Eq)]
/// What is wrong with a parameter (see [`ParamError`]).
pub enum ParamProblem {
    /// Required and absent.
    Missing,
    /// Given more than once.
    Repeated,
    /// Given, but empty.
    Empty,
    /// Longer than the grammar allows.
    TooLong {
        /// The longest value accepted, in bytes.
        max: usize,
    },
    /// Control characters or bytes outside what the parameter's grammar allows.
    BadCharacters {
        /// What the parameter may contain.
        expected: &'static str,
    },
    /// Percent-encoding that does not decode to UTF-8.
    BadEncoding,
    /// A `response_type` other than `code`.
    UnsupportedResponseType(String),
    /// A `code_challenge_method` other than `S256`.
    UnsupportedChallengeMethod(String),
    /// A `code_challenge` without `code_challenge_method=S256`.
    ChallengeMethodMissing,
    /// A `code_challenge` that is not 43 base64url characters.
    ChallengeFormat,
    /// A scope token with characters RFC 6749 §3.3 does not allow.
    ScopeToken(String),
    /// More values than allowed (scopes, resources).
    TooMany {
        /// The most accepted.
        max: usize,
    },
    /// A URI that must be absolute is not.
    NotAbsoluteUri(String),
    /// A URI that must not carry a fragment does.
    HasFragment(String),
    /// A `prompt` value Consentry does not know.
    PromptValue(String),
    /// `prompt=none` together with other values.
    PromptNoneWithOthers,
}

const MAX_URI: usize = 2048;
const MAX_OPAQUE: usize = 2048;
const MAX_SCOPE: usize = 4096;
const MAX_SCOPES: usize = 64;
const MAX_RESOURCES: usize = 16;
const MAX_ID: usize = 2048;

impl ParamError {
    pub(crate) fn new(param: &'static str, problem: ParamProblem) -> Self {
        ParamError { param, problem }
    }

    /// The OAuth error code for this problem.
    pub fn code(&self) -> ErrorCode {
        match (&self.problem, self.param) {
            (_, "redirect_uri") => ErrorCode::InvalidRedirectUri,
            (ParamProblem::UnsupportedResponseType(_), _) => ErrorCode::UnsupportedResponseType,
            (_, "scope") => ErrorCode::InvalidScope,
            (_, "resource") => ErrorCode::InvalidTarget,
            _ => ErrorCode::InvalidRequest,
        }
    }

    /// False when the client or its redirect URI is at fault: such errors are shown to the user
    /// and must never be sent to the (untrusted) redirect URI.
    pub fn is_redirectable(&self) -> bool {
        !matches!(self.param, "client_id" | "redirect_uri" | "query")
    }
}

/// Quote a received value for an error description, cut so a huge input cannot make a huge error.
struct Shown<'a>(&'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX: usize = 120;
        match self.0.char_indices().nth(MAX) {
            Some((cut, _)) => write!(f, "'{}...'", &self.0[..cut]),
            None => write!(f, "'{}'", self.0),
        }
    }
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.param;
        match &self.problem {
            ParamProblem::Missing => write!(f, "{p} is required"),
            ParamProblem::Repeated => write!(f, "{p} must appear at most once"),
            ParamProblem::Empty => write!(f, "{p} must not be empty"),
            ParamProblem::TooLong { max } => write!(f, "{p} must be at most {max} bytes"),
            ParamProblem::BadCharacters { expected } => {
                write!(
                    f,
                    "{p} contains characters that are not allowed; expected {expected}"
                )
            }
            ParamProblem::BadEncoding => write!(f, "{p} is not valid percent-encoded UTF-8"),
            ParamProblem::UnsupportedResponseType(v) => {
                write!(
                    f,
                    "response_type {} is not supported; expected 'code'",
                    Shown(v)
                )
            }
            ParamProblem::UnsupportedChallengeMethod(v) => write!(
                f,
                "code_challenge_method {} is not supported; expected 'S256'",
                Shown(v)
            ),
            ParamProblem::ChallengeMethodMissing => write!(
                f,
                "code_challenge_method is required and must be 'S256' (PKCE plain is not allowed)"
            ),
            ParamProblem::ChallengeFormat => write!(
                f,
                "code_challenge must be the base64url-encoded SHA-256 of the code_verifier: \
                 43 characters from A-Z a-z 0-9 - _"
            ),
            ParamProblem::ScopeToken(v) => write!(
                f,
                "scope {} is not a valid scope token; expected printable ASCII other than double quote and backslash",
                Shown(v)
            ),
            ParamProblem::TooMany { max } => write!(f, "{p} may list at most {max} values"),
            ParamProblem::NotAbsoluteUri(v) => {
                write!(
                    f,
                    "{p} {} must be an absolute URI (scheme:...) whose host a browser reads as written: \
                     no userinfo, percent-encoding or characters other than letters, digits, '-', '.' \
                     and '_' in the host, IPv4 as four decimals, IPv6 in canonical form, a port up to \
                     65535, '//' after http: and https:",
                    Shown(v)
                )
            }
            ParamProblem::HasFragment(v) => {
                write!(f, "{p} {} must not contain a fragment ('#')", Shown(v))
            }
            ParamProblem::PromptValue(v) => write!(
                f,
                "prompt {} is not supported; expected none, login, consent, select_account or create",
                Shown(v)
            ),
            ParamProblem::PromptNoneWithOthers => {
                write!(
                    f,
                    "prompt 'none' cannot be combined with other prompt values"
                )
            }
        }
    }
}

impl AuthorizeRequest {
    /// Validate raw parameters. Errors come in a fixed order: `client_id`, `redirect_uri`, then
    /// the rest, so the first error tells whether it may be redirected.
    pub fn parse(raw: &AuthorizeParams) -> Result<AuthorizeRequest, ParamError> {
        let client_id = validate_client_id(raw.client_id.as_deref())?;
        let redirect_uri = match raw.redirect_uri.as_deref() {
            None => None,
            Some(uri) => Some(validate_redirect_uri(uri)?.to_owned()),
        };

        match raw.response_type.as_deref().map(str::trim) {
            // ChatGPT has been seen omitting response_type: `code` is the only one we support.
            None | Some("") | Some("code") => {}
            Some(other) => {
                return Err(ParamError::new(
                    "response_type",
                    ParamProblem::UnsupportedResponseType(other.to_owned()),
                ));
            }
        }

        let code_challenge = validate_pkce(
            raw.code_challenge.as_deref(),
            raw.code_challenge_method.as_deref(),
        )?;
        let scopes = parse_scope(raw.scope.as_deref())?;
        let resources = validate_resources(&raw.resource)?;
        let state = validate_opaque("state", raw.state.as_deref())?;
        let nonce = validate_opaque("nonce", raw.nonce.as_deref())?;
        let prompt = parse_prompt(raw.prompt.as_deref())?;

        Ok(AuthorizeRequest {
            client_id,
            redirect_uri,
            scopes,
            state,
            code_challenge,
            resources,
            prompt,
            nonce,
        })
    }
}

/// `client_id`: required, printable, bounded. (CIMD client IDs are URLs, so no narrower grammar.)
pub fn validate_client_id(value: Option<&str>) -> Result<String, ParamError> {
    let v = value.ok_or(ParamError::new("client_id", ParamProblem::Missing))?;
    let v = v.trim();
    if v.is_empty() {
        return Err(ParamError::new("client_id", ParamProblem::Empty));
    }
    if v.len() > MAX_ID {
        return Err(ParamError::new(
            "client_id",
            ParamProblem::TooLong { max: MAX_ID },
        ));
    }
    if !v.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(ParamError::new(
            "client_id",
            ParamProblem::BadCharacters {
                expected: "printable ASCII",
            },
        ));
    }
    Ok(v.to_owned())
}

/// `redirect_uri` (and any absolute URI Consentry accepts): absolute, no fragment, no spaces or
/// control characters, bounded.
pub fn validate_redirect_uri(uri: &str) -> Result<&str, ParamError> {
    validate_absolute_uri("redirect_uri", uri)
}

fn validate_absolute_uri<'u>(param: &'static str, uri: &'u str) -> Result<&'u str, ParamError> {
    if uri.is_empty() {
        return Err(ParamError::new(param, ParamProblem::Empty));
    }
    if uri.len() > MAX_URI {
        return Err(ParamError::new(
            param,
            ParamProblem::TooLong { max: MAX_URI },
        ));
    }
    if !uri.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return Err(ParamError::new(
            param,
            ParamProblem::BadCharacters {
                expected: "a URI without spaces, control or non-ASCII characters",
            },
        ));
    }
    // Browsers (WHATWG URL) read `\` as `/` in http(s) URLs: `https://evil.example\good.example`
    // goes to evil.example. RFC 3986 does not allow it anywhere in a URI.
    if uri.contains('\\') {
        return Err(ParamError::new(
            param,
            ParamProblem::BadCharacters {
                expected: "a URI without '\\' (browsers read it as '/')",
            },
        ));
    }
    if uri.contains('#') {
        return Err(ParamError::new(
            param,
            ParamProblem::HasFragment(uri.to_owned()),
        ));
    }
    if split_uri(uri).is_none() {
        return Err(ParamError::new(
            param,
            ParamProblem::NotAbsoluteUri(uri.to_owned()),
        ));
    }
    Ok(uri)
}

fn validate_pkce(
    challenge: Option<&str>,
    method: Option<&str>,
) -> Result<CodeChallenge, ParamError> {
    let challenge = challenge
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .ok_or(ParamError::new("code_challenge", ParamProblem::Missing))?;
    match method.map(str::trim) {
        Some("S256") => {}
        None | Some("") => {
            return Err(ParamError::new(
                "code_challenge_method",
                ParamProblem::ChallengeMethodMissing,
            ));
        }
        Some(other) => {
            return Err(ParamError::new(
                "code_challenge_method",
                ParamProblem::UnsupportedChallengeMethod(other.to_owned()),
            ));
        }
    }
    if challenge.len() != 43 || !challenge.bytes().all(is_base64url) {
        return Err(ParamError::new(
            "code_challenge",
            ParamProblem::ChallengeFormat,
        ));
    }
    Ok(CodeChallenge(challenge.to_owned()))
}

/// RFC 7636 §4.1: `code_verifier` is 43–128 characters of `[A-Z a-z 0-9 - . _ ~]`.
pub fn is_valid_code_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// RFC 6749 §3.3: space-delimited tokens of `%x21 / %x23-5B / %x5D-7E`. Any run of ASCII
/// whitespace separates tokens (clients send stray spaces, tabs, `+` decoded to space).
pub fn parse_scope(scope: Option<&str>) -> Result<Vec<String>, ParamError> {
    let Some(scope) = scope else {
        return Ok(Vec::new());
    };
    if scope.len() > MAX_SCOPE {
        return Err(ParamError::new(
            "scope",
            ParamProblem::TooLong { max: MAX_SCOPE },
        ));
    }
    let mut out: Vec<String> = Vec::new();
    for token in scope.split_ascii_whitespace() {
        let ok = token
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
        if !ok {
            return Err(ParamError::new(
                "scope",
                ParamProblem::ScopeToken(token.to_owned()),
            ));
        }
        if !out.iter().any(|s| s == token) {
            out.push(token.to_owned());
        }
    }
    if out.len() > MAX_SCOPES {
        return Err(ParamError::new(
            "scope",
            ParamProblem::TooMany { max: MAX_SCOPES },
        ));
    }
    Ok(out)
}

fn validate_resources(resources: &[String]) -> Result<Vec<String>, ParamError> {
    let mut out: Vec<String> = Vec::new();
    for r in resources {
        let r = r.trim();
        if r.is_empty() {
            continue;
        }
        validate_absolute_uri("resource", r)?;
        if !out.iter().any(|s| s == r) {
            // Refuse as soon as the limit is passed: the de-duplication is quadratic, and a JSON
            // body may carry hundreds of thousands of resources.
            if out.len() == MAX_RESOURCES {
                return Err(ParamError::new(
                    "resource",
                    ParamProblem::TooMany { max: MAX_RESOURCES },
                ));
            }
            out.push(r.to_owned());
        }
    }
    Ok(out)
}

fn validate_opaque(param: &'static str, value: Option<&str>) -> Result<Option<String>, ParamError> {
    let Some(v) = value else { return Ok(None) };
    if v.is_empty() {
        return Ok(None);
    }
    if v.len() > MAX_OPAQUE {
        return Err(ParamError::new(
            param,
            ParamProblem::TooLong { max: MAX_OPAQUE },
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(ParamError::new(
            param,
            ParamProblem::BadCharacters {
                expected: "no control characters",
            },
        ));
    }
    Ok(Some(v.to_owned()))
}

fn parse_prompt(value: Option<&str>) -> Result<Prompt, ParamError> {
    let mut p = Prompt::default();
    let mut count = 0;
    for v in value.unwrap_or("").split_ascii_whitespace() {
        count += 1;
        match v {
            "none" => p.none = true,
            "login" => p.login = true,
            "consent" => p.consent = true,
            "select_account" => p.select_account = true,
            "create" => p.create = true,
            other => {
                return Err(ParamError::new(
                    "prompt",
                    ParamProblem::PromptValue(other.to_owned()),
                ));
            }
        }
    }
    if p.none && count > 1 {
        return Err(ParamError::new(
            "prompt",
            ParamProblem::PromptNoneWithOthers,
        ));
    }
    Ok(p)
}

/// Parse the query of an authorization URL (a full URL, `?query` or `query`) into raw
/// parameters. `+` means space and `%XX` is decoded (application/x-www-form-urlencoded); every
/// parameter but `resource` may appear once; unknown parameters are ignored (RFC 6749 §3.1).
///
/// Written by hand rather than with the `url` crate: that crate's IDNA tables would add tens of KB
/// to the browser SDK for the one thing needed here, which is splitting and percent-decoding.
pub fn parse_query(input: &str) -> Result<AuthorizeParams, ParamError> {
    let form = crate::form::Form::parse(query_part(input), "query")?;
    Ok(AuthorizeParams {
        client_id: form.one("client_id")?,
        redirect_uri: form.one("redirect_uri")?,
        response_type: form.one("response_type")?,
        scope: form.one("scope")?,
        state: form.one("state")?,
        code_challenge: form.one("code_challenge")?,
        code_challenge_method: form.one("code_challenge_method")?,
        resource: form.all("resource")?,
        prompt: form.one("prompt")?,
        nonce: form.one("nonce")?,
    })
}

/// The query of `input`: a URL (absolute, or a path), `?query`, or a bare `query`.
///
/// The fragment is cut first (a `?` after `#` belongs to the fragment). The input is a URL when it
/// starts with `/`, or when the first of `:`, `=`, `&`, `?` is a `?` (`?query`, `path?query`) or is
/// the `:` ending a valid scheme; its query then follows the first `?`. Anything else is a bare
/// query, whose values may hold unencoded `://` and `?` (both are legal in a query).
fn query_part(input: &str) -> &str {
    let input = input.split('#').next().unwrap_or("");
    let is_url = input.starts_with('/')
        || input.find([':', '=', '&', '?']).is_some_and(|i| {
            input[i..].starts_with('?') || (input[i..].starts_with(':') && is_scheme(&input[..i]))
        });
    if is_url {
        input.split_once('?').map_or("", |(_, q)| q)
    } else {
        input
    }
}

/// RFC 3986 `scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
fn is_scheme(s: &str) -> bool {
    let mut b = s.bytes();
    b.next().is_some_and(|c| c.is_ascii_alphabetic())
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
}

/// application/x-www-form-urlencoded decoding. `None` on a bad escape or non-UTF-8 result.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = hex_val(*bytes.get(i + 1)?)?;
                let lo = hex_val(*bytes.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-encode a query component (everything but RFC 3986 unreserved characters).
pub fn percent_encode(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
}

/// Append `key=value` pairs to a URI's query, keeping what is there (RFC 6749 §4.1.2: the
/// redirect URI's own query is retained).
pub fn append_query(uri: &str, pairs: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(uri.len() + 64);
    out.push_str(uri);
    let mut sep = if uri.contains('?') {
        if uri.ends_with('?') || uri.ends_with('&') {
            ""
        } else {
            "&"
        }
    } else {
        "?"
    };
    for (k, v) in pairs {
        out.push_str(sep);
        percent_encode(k, &mut out);
        out.push('=');
        percent_encode(v, &mut out);
        sep = "&";
    }
    out
}

/// The parts of an absolute URI that redirect matching needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UriParts<'a> {
    /// The scheme, as written.
    pub scheme: &'a str,
    /// `host[:port]` when the URI has an authority (`scheme://…`).
    pub authority: Option<&'a str>,
    /// The host without port; IPv6 literals keep their brackets.
    pub host: Option<&'a str>,
    /// The port, when given.
    pub port: Option<&'a str>,
    /// Path and query: everything after the authority.
    pub rest: &'a str,
}

/// Split an absolute URI (RFC 3986 `scheme ":" hier-part`). `None` if there is no valid scheme
/// or the authority is malformed (userinfo is refused: it only ever serves to confuse readers).
///
/// The host is the one a browser (the WHATWG URL Standard) goes to, or the URI is refused: no
/// `\`, no percent-encoded or other unusual host characters, IP addresses only in their
/// canonical form (a browser reads `0x7f.1` or `2130706433` as 127.0.0.1), a port that fits 16
/// bits, and `http`/`https` (the browser's "special" schemes) only with `//` (a browser reads
/// `https:evil.example` as `https://evil.example`).
pub fn split_uri(uri: &str) -> Option<UriParts<'_>> {
    let colon = uri.find(':')?;
    let scheme = &uri[..colon];
    if !is_scheme(scheme) || uri.contains('\\') {
        return None;
    }
    let after = &uri[colon + 1..];
    let Some(hier) = after.strip_prefix("//") else {
        if after.is_empty() || is_special_scheme(scheme) {
            return None;
        }
        return Some(UriParts {
            scheme,
            authority: None,
            host: None,
            port: None,
            rest: after,
        });
    };
    let end = hier.find(['/', '?', '#']).unwrap_or(hier.len());
    let authority = &hier[..end];
    let rest = &hier[end..];
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let close = v6.find(']')?;
        let host = &authority[..close + 2];
        match &authority[close + 2..] {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':')?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() || !is_browser_host(host) {
        return None;
    }
    if let Some(p) = port
        && !p.is_empty()
        && (!p.bytes().all(|b| b.is_ascii_digit()) || p.len() > 5 || p.parse::<u16>().is_err())
    {
        return None;
    }
    Some(UriParts {
        scheme,
        authority: Some(authority),
        host: Some(host),
        port,
        rest,
    })
}

/// The WHATWG URL Standard's "special" schemes (`file` is never a redirect target anyway): a
/// browser parses their authority even without `//`.
fn is_special_scheme(scheme: &str) -> bool {
    ["http", "https", "ws", "wss", "ftp", "file"]
        .iter()
        .any(|s| s.eq_ignore_ascii_case(scheme))
}

/// Whether a browser's URL parser keeps `host` as it is written (up to ASCII case): letters,
/// digits, `-`, `.` and `_`; an IPv4 address only as four canonical decimals (the WHATWG parser
/// turns any host whose last label is a number into an address: `127.1`, `0x7f.0.0.1`,
/// `2130706433`, `127.0.0.1.` all become 127.0.0.1); an IPv6 literal only in its canonical form
/// (RFC 5952: lowercase, shortest, in hex even when IPv4-mapped). Anything else (percent-encoding, which a
/// browser decodes, sub-delimiters, zone IDs) is refused rather than guessed at.
fn is_browser_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[') {
        let Some(inner) = inner.strip_suffix(']') else {
            return false;
        };
        let Ok(addr) = inner.parse::<std::net::Ipv6Addr>() else {
            return false;
        };
        // Rust writes an IPv4-mapped address with dots; a browser in hex (`::ffff:a00:5`).
        let canonical = match addr.to_ipv4_mapped() {
            Some(_) => {
                let s = addr.segments();
                format!("::ffff:{:x}:{:x}", s[6], s[7])
            }
            None => addr.to_string(),
        };
        return !inner.contains('.') && canonical == inner.to_ascii_lowercase();
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        return false;
    }
    let last = host
        .strip_suffix('.')
        .unwrap_or(host)
        .rsplit('.')
        .next()
        .unwrap_or("");
    let hex = last.len() >= 2
        && last[..2].eq_ignore_ascii_case("0x")
        && last[2..].bytes().all(|b| b.is_ascii_hexdigit());
    let ends_in_number = !last.is_empty() && (last.bytes().all(|b| b.is_ascii_digit()) || hex);
    !ends_in_number || host.parse::<std::net::Ipv4Addr>().is_ok()
}

/// Schemes that are never a redirect target, whatever the client: they run script in the page
/// or show something other than the client's redirect URI.
pub const FORBIDDEN_REDIRECT_SCHEMES: [&str; 6] =
    ["javascript", "data", "vbscript", "file", "about", "blob"];

/// Whether `scheme` (any case) is one of [`FORBIDDEN_REDIRECT_SCHEMES`].
pub fn is_forbidden_redirect_scheme(scheme: &str) -> bool {
    FORBIDDEN_REDIRECT_SCHEMES
        .iter()
        .any(|f| f.eq_ignore_ascii_case(scheme))
}

/// The loopback hosts of RFC 8252 §7.3 (plus `localhost`, which MCP clients use).
pub fn is_loopback_host(host: &str) -> bool {
    host == "127.0.0.1" || host == "[::1]" || host.eq_ignore_ascii_case("localhost")
}

/// Exact string comparison, except that for an `http` loopback redirect URI the port may differ
/// (RFC 8252 §7.3: native apps get an ephemeral port at run time). Host, path and query must
/// still match exactly.
pub fn redirect_uri_matches(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    let (Some(reg), Some(req)) = (split_uri(registered), split_uri(requested)) else {
        return false;
    };
    let loopback = |p: &UriParts<'_>| p.scheme == "http" && p.host.is_some_and(is_loopback_host);
    loopback(&reg)
        && loopback(&req)
        && reg.host.map(str::to_ascii_lowercase) == req.host.map(str::to_ascii_lowercase)
        && reg.rest == req.rest
}

/// What the consent screen shows as "where you will be sent": the host of an `http(s)` redirect
/// URI, or the scheme of a private-use URI scheme (`com.example.app:/cb` → `com.example.app`).
/// A private-use URI goes to whichever app claimed the scheme, so its authority, if any, is not
/// shown: `evil.app://accounts.example.com/cb` → `evil.app`.
pub fn redirect_host(uri: &str) -> Option<String> {
    let parts = split_uri(uri)?;
    let web =
        parts.scheme.eq_ignore_ascii_case("https") || parts.scheme.eq_ignore_ascii_case("http");
    Some(match parts.host {
        Some(h) if web => h.to_ascii_lowercase(),
        _ => parts.scheme.to_ascii_lowercase(),
    })
}

/// Accept a JSON string or array of strings (or null) for a repeatable parameter.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string or an array of strings")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(vec![v.to_owned()])
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(vec![v])
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_any(V)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(s) = seq.next_element::<String>()? {
                out.push(s);
            }
            Ok(out)
        }
    }
    d.deserialize_any(V)
}
