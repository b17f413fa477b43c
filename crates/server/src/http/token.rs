//! `POST /oauth2/token`: the form decoded by the one decoder, the client's credentials read,
//! the grant run by [`crate::flows::token`].

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use consentry_protocol::percent_decode;

use crate::clients::truncate;
use crate::error::{ApiError, ApiResult};
use crate::flows::token::{
    Presented, TokenRequest, exchange, invalid_client, supported_grant_type,
};
use crate::state::Shared;

/// The parameters the token, introspection and revocation endpoints read. Each may appear once
/// (RFC 6749 §3.2), `resource` any number of times (RFC 8707).
const SINGLE: [&str; 10] = [
    "grant_type",
    "code",
    "redirect_uri",
    "code_verifier",
    "client_id",
    "client_secret",
    "refresh_token",
    "scope",
    "token",
    "token_type_hint",
];

/// An `application/x-www-form-urlencoded` body, read by the one form decoder
/// ([`consentry_protocol::Form`]).
pub struct Form {
    single: std::collections::HashMap<&'static str, String>,
    pub resources: Vec<String>,
}

impl Form {
    pub fn parse(headers: &HeaderMap, body: &[u8]) -> ApiResult<Form> {
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !ct.split(';').next().is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        }) {
            return Err(ApiError::invalid_request(
                "the token request must be sent as application/x-www-form-urlencoded",
            ));
        }
        let text = std::str::from_utf8(body)
            .map_err(|_| ApiError::invalid_request("the request body is not UTF-8"))?;
        // Every problem here is invalid_request, whichever parameter it names.
        let bad = |e: consentry_protocol::ParamError| ApiError::invalid_request(e.to_string());
        let form = consentry_protocol::Form::parse(text, "body").map_err(bad)?;
        if let Some(name) = form.first_repeated(&SINGLE) {
            return Err(ApiError::invalid_request(format!(
                "{name} must appear at most once"
            )));
        }
        let mut single = std::collections::HashMap::new();
        for name in SINGLE {
            if let Some(v) = form.one(name).map_err(bad)? {
                single.insert(name, v);
            }
        }
        Ok(Form {
            single,
            resources: form.all("resource").map_err(bad)?,
        })
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.single.get(k).map(String::as_str)
    }

    pub fn require(&self, k: &str) -> ApiResult<&str> {
        self.get(k)
            .ok_or_else(|| ApiError::invalid_request(format!("{k} is required")))
    }

    fn take(&mut self, k: &str) -> Option<String> {
        self.single.remove(k)
    }
}

pub async fn token(
    State(s): State<Shared>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    // Taken as a Result so that a body the server cannot read gets a JSON error like every
    // other failure, not axum's plain-text rejection.
    let body = match body {
        Ok(b) => b,
        Err(e) => return crate::http::extract::unreadable_body(e).into_response(),
    };
    let result = match request(&headers, &body) {
        Ok(req) => exchange(&s, &req).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(t) => {
            let mut r = Json(t).into_response();
            let h = r.headers_mut();
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            r
        }
        Err(e) => e.into_response(),
    }
}

fn request(headers: &HeaderMap, body: &[u8]) -> ApiResult<TokenRequest> {
    let mut form = Form::parse(headers, body)?;
    let grant_type = form.require("grant_type")?.to_owned();
    supported_grant_type(&grant_type)?;
    let client = presented_client(headers, &form)?;
    Ok(TokenRequest {
        client,
        grant_type,
        code: form.take("code"),
        redirect_uri: form.take("redirect_uri"),
        code_verifier: form.take("code_verifier"),
        refresh_token: form.take("refresh_token"),
        scope: form.take("scope"),
        resources: std::mem::take(&mut form.resources),
    })
}

/// `Authorization: Basic` credentials (RFC 6749 §2.3.1: both parts form-urlencoded).
fn basic_credentials(headers: &HeaderMap) -> ApiResult<Option<(String, String)>> {
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = || {
        invalid_client(
            "the Authorization header is not valid HTTP Basic client authentication".into(),
        )
    };
    let v = v.to_str().map_err(|_| bad())?;
    let (scheme, rest) = v.split_once(' ').ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(invalid_client(format!(
            "client authentication scheme '{}' is not supported; use HTTP Basic or client_secret in the body",
            truncate(scheme)
        )));
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (id, secret) = text.split_once(':').ok_or_else(bad)?;
    let id = percent_decode(id).ok_or_else(bad)?;
    let secret = percent_decode(secret).ok_or_else(bad)?;
    Ok(Some((id, secret)))
}

/// The client a token, revocation or introspection request says it is: (client_id, secret,
/// authentication method), before anything is looked up.
pub fn presented_client(headers: &HeaderMap, form: &Form) -> ApiResult<Presented> {
    let basic = basic_credentials(headers)?;
    Ok(match (basic, form.get("client_secret")) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid_request(
                "use one client authentication method: HTTP Basic or client_secret in the body, not both",
            ));
        }
        (Some((id, secret)), None) => {
            if let Some(fid) = form.get("client_id")
                && fid != id
            {
                return Err(invalid_client(
                    "client_id in the body differs from the HTTP Basic client id".into(),
                ));
            }
            Presented {
                client_id: id,
                secret: Some(secret),
                method: "client_secret_basic",
            }
        }
        (None, Some(secret)) => Presented {
            client_id: form.require("client_id")?.to_owned(),
            secret: Some(secret.to_owned()),
            method: "client_secret_post",
        },
        (None, None) => Presented {
            client_id: form.require("client_id")?.to_owned(),
            secret: None,
            method: "none",
        },
    })
}
