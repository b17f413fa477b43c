//! The authorization URL the agent opened, read by the server's own grammar.

use consentry_protocol::{AuthorizeParams, AuthorizeRequest, parse_query};

use crate::error::SdkError;
use crate::http::{WireObject, WireValue};

/// The outcome of [`parse_authorize_params`]: the raw parameters (what the browser API takes)
/// whenever the query could be split, and the first error the server would report, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedParams {
    /// `None` only when the query itself is malformed (bad percent-encoding, a repeated parameter).
    pub params: Option<AuthorizeParams>,
    /// Why the request cannot go on, if it cannot.
    pub error: Option<SdkError>,
    /// False when the error concerns the client or its redirect URI: show it, never redirect.
    pub redirectable: bool,
}

/// Parse a URL (or `?query`, or bare query) exactly as the server will: `parse_query` splits and
/// decodes, `AuthorizeRequest::parse` validates. The raw parameters are returned even when
/// validation fails, so that the page can still call the server and get its redirect location.
pub fn parse_authorize_params(input: &str) -> ParsedParams {
    let params = match parse_query(input) {
        Ok(params) => params,
        Err(e) => {
            let redirectable = e.is_redirectable();
            return ParsedParams {
                params: None,
                error: Some(e.into()),
                redirectable,
            };
        }
    };
    match AuthorizeRequest::parse(&params) {
        Ok(_) => ParsedParams {
            params: Some(params),
            error: None,
            redirectable: true,
        },
        Err(e) => ParsedParams {
            params: Some(params),
            redirectable: e.is_redirectable(),
            error: Some(e.into()),
        },
    }
}

/// Append the authorization parameters to a request body, snake_case, leaving out absent ones.
pub fn authorize_params_wire(params: &AuthorizeParams, body: &mut WireObject) {
    body.push_opt("client_id", params.client_id.as_deref());
    body.push_opt("redirect_uri", params.redirect_uri.as_deref());
    body.push_opt("response_type", params.response_type.as_deref());
    body.push_opt("scope", params.scope.as_deref());
    body.push_opt("state", params.state.as_deref());
    body.push_opt("code_challenge", params.code_challenge.as_deref());
    body.push_opt(
        "code_challenge_method",
        params.code_challenge_method.as_deref(),
    );
    if !params.resource.is_empty() {
        body.push("resource", WireValue::StrList(params.resource.clone()));
    }
    body.push_opt("prompt", params.prompt.as_deref());
    body.push_opt("nonce", params.nonce.as_deref());
}
