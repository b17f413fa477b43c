//! Dynamic Client Registration (RFC 7591) at `POST /oauth2/register` and its management protocol
//! (RFC 7592: `GET`/`PUT`/`DELETE` on the registration_client_uri, authorized by the
//! registration_access_token).

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;

use crate::http::extract::PathParams;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use consentry_protocol::authorize::{split_uri, validate_redirect_uri};
use consentry_protocol::{ErrorCode, is_forbidden_redirect_scheme, is_loopback_host, parse_scope};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::clients::{Client, ClientSource, truncate};
use crate::crypto::{random_token, sha256_hex};
use crate::error::{ApiError, ApiResult};
use crate::http::client_ip::ClientIp;
use crate::http::extract::bearer;
use crate::state::{Shared, now};
use crate::store::ClientRow;

/// The metadata a client registers (RFC 7591 §2), as stored and returned.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ClientMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub grant_types: Vec<String>,
    #[serde(default)]
    pub response_types: Vec<String>,
    #[serde(default)]
    pub token_endpoint_auth_method: String,
    #[serde(default)]
    pub application_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contacts: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tos_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_version: Option<String>,
}

impl ClientMetadata {
    pub fn into_client(self, client_id: String, secret_hash: Option<String>) -> Client {
        Client {
            client_name: self
                .client_name
                .clone()
                .unwrap_or_else(|| client_id.clone()),
            client_id,
            redirect_uris: self.redirect_uris,
            token_endpoint_auth_method: self.token_endpoint_auth_method,
            client_uri: self.client_uri,
            logo_uri: self.logo_uri,
            verified: false,
            secret_hash,
            grant_types: self.grant_types,
            scope: self
                .scope
                .as_deref()
                .map(|s| s.split_ascii_whitespace().map(str::to_owned).collect()),
            source: ClientSource::Registered,
        }
    }
}

pub fn client_from_row(row: &ClientRow) -> ApiResult<Client> {
    let md: ClientMetadata = serde_json::from_str(&row.metadata)
        .map_err(|e| ApiError::internal(format!("stored client metadata is corrupt: {e}")))?;
    Ok(md.into_client(row.client_id.clone(), row.secret_hash.clone()))
}

fn bad_metadata(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(ErrorCode::InvalidClientMetadata, msg)
}

fn bad_redirect(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(ErrorCode::InvalidRedirectUri, msg)
}

fn check_redirect_uri(uri: &str, application_type: &str) -> ApiResult<()> {
    redirect_uri_problem(uri, application_type)
        .map_or(Ok(()), |p| Err(bad_redirect(format!("redirect_uris: {p}"))))
}

/// What is wrong with `uri` as a redirect URI of a client of `application_type` ("web" or
/// "native"), or `None`. One rule for every client that is not the operator's own: registered
/// (RFC 7591) and metadata-document clients alike.
pub(crate) fn redirect_uri_problem(uri: &str, application_type: &str) -> Option<String> {
    if let Err(e) = validate_redirect_uri(uri) {
        return Some(e.to_string());
    }
    let Some(parts) = split_uri(uri) else {
        return Some(format!("'{}' is not an absolute URI", truncate(uri)));
    };
    let scheme = parts.scheme.to_ascii_lowercase();
    if is_forbidden_redirect_scheme(&scheme) {
        return Some(format!(
            "scheme '{scheme}' of '{}' is never allowed",
            truncate(uri)
        ));
    }
    let loopback = parts.host.is_some_and(is_loopback_host);
    let ok = match application_type {
        "web" => scheme == "https" || (scheme == "http" && loopback),
        // RFC 8252: loopback http (§7.3, any port at authorization time), a private-use scheme
        // (§7.1) or a claimed https URI (§7.2). VS Code registers as native with
        // https://vscode.dev/redirect next to its loopback URIs.
        _ => scheme != "http" || loopback,
    };
    if !ok {
        let expected = if application_type == "web" {
            "https, or http on a loopback host (127.0.0.1, [::1], localhost)"
        } else {
            "https, http on a loopback host, or a private-use scheme such as com.example.app:/callback"
        };
        return Some(format!(
            "'{}' is not allowed for application_type '{application_type}'; expected {expected}",
            truncate(uri)
        ));
    }
    if parts.host.is_none() && scheme.contains("http") {
        return Some(format!("'{}' has no host", truncate(uri)));
    }
    None
}

/// The application type of a client that did not say: "native" when a redirect URI uses a
/// private-use scheme, else "web".
pub(crate) fn default_application_type(redirect_uris: &[String]) -> &'static str {
    let private_use = redirect_uris.iter().any(|u| {
        split_uri(u).is_some_and(|p| {
            !p.scheme.eq_ignore_ascii_case("http") && !p.scheme.eq_ignore_ascii_case("https")
        })
    });
    if private_use { "native" } else { "web" }
}

/// The scheme of `uri` when it is one that is never a redirect target (checked again when a
/// code or an error is sent, and for `[[clients]]` at load, whatever registered the client).
pub(crate) fn forbidden_scheme(uri: &str) -> Option<&str> {
    let (scheme, _) = uri.split_once(':')?;
    is_forbidden_redirect_scheme(scheme).then_some(scheme)
}

fn check_url_field(field: &str, value: &Option<String>) -> ApiResult<()> {
    if let Some(v) = value {
        let ok = split_uri(v).is_some_and(|p| {
            (p.scheme == "https" || (p.scheme == "http" && p.host.is_some_and(is_loopback_host)))
                && p.host.is_some()
        }) && v.len() <= 2048
            && !v.chars().any(|c| c.is_whitespace() || c.is_control());
        if !ok {
            return Err(bad_metadata(format!(
                "{field}: '{}' must be an https URL (http only on loopback hosts)",
                truncate(v)
            )));
        }
    }
    Ok(())
}

/// Unicode bidirectional embeddings, overrides and isolates: they reorder what follows them, so
/// a client_name could render on the consent screen as something other than its characters.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

fn check_text(field: &str, value: &Option<String>, max: usize) -> ApiResult<()> {
    if let Some(v) = value
        && (v.trim().is_empty()
            || v.len() > max
            || v.chars().any(|c| c.is_control() || is_bidi_control(c)))
    {
        return Err(bad_metadata(format!(
            "{field} must be non-empty text of at most {max} bytes without control or bidirectional override characters"
        )));
    }
    Ok(())
}

/// Validate and normalise registration metadata (defaults per RFC 7591 §2).
pub fn validate_metadata(s: &Shared, mut md: ClientMetadata) -> ApiResult<ClientMetadata> {
    if md.application_type.is_empty() {
        // RFC 7591 has no application_type; OpenID Connect Registration defaults it to "web".
        // A client that omits it but lists a private-use scheme redirect URI (Cursor registers
        // cursor://anysphere.cursor-mcp/oauth/callback this way) is a native app: defaulting it
        // to "web" would refuse every such client.
        md.application_type = default_application_type(&md.redirect_uris).into();
    }
    if !["web", "native"].contains(&md.application_type.as_str()) {
        return Err(bad_metadata(format!(
            "application_type: '{}' is not supported; expected 'web' or 'native'",
            truncate(&md.application_type)
        )));
    }
    if md.token_endpoint_auth_method.is_empty() {
        md.token_endpoint_auth_method = "client_secret_basic".into();
    }
    if !["none", "client_secret_basic", "client_secret_post"]
        .contains(&md.token_endpoint_auth_method.as_str())
    {
        return Err(bad_metadata(format!(
            "token_endpoint_auth_method: '{}' is not supported; expected none, client_secret_basic or client_secret_post",
            truncate(&md.token_endpoint_auth_method)
        )));
    }
    if md.grant_types.is_empty() {
        md.grant_types = vec!["authorization_code".into()];
    }
    for g in &md.grant_types {
        match g.as_str() {
            "authorization_code" | "refresh_token" => {}
            "client_credentials" if md.token_endpoint_auth_method == "none" => {
                return Err(bad_metadata(
                    "grant_types: client_credentials needs a confidential client (token_endpoint_auth_method client_secret_basic or client_secret_post)",
                ));
            }
            // Open registration lets anyone register: a client_credentials client would get
            // tokens with no user and no consent behind them.
            "client_credentials" if s.cfg.registration.mode == "open" => {
                return Err(bad_metadata(
                    "grant_types: client_credentials is not available through open registration (registration.mode = \"open\"); expected authorization_code and refresh_token, or register with an initial access token (registration.mode = \"initial_access_token\")",
                ));
            }
            "client_credentials" => {}
            other => {
                return Err(bad_metadata(format!(
                    "grant_types: '{}' is not supported; expected authorization_code, refresh_token or client_credentials",
                    truncate(other)
                )));
            }
        }
    }
    // A client that can get codes may refresh: every MCP client expects refresh tokens.
    if md.grant_types.iter().any(|g| g == "authorization_code")
        && !md.grant_types.iter().any(|g| g == "refresh_token")
    {
        md.grant_types.push("refresh_token".into());
    }
    if md.response_types.is_empty() {
        md.response_types = vec!["code".into()];
    }
    if let Some(bad) = md.response_types.iter().find(|r| *r != "code") {
        return Err(bad_metadata(format!(
            "response_types: '{}' is not supported; expected 'code'",
            truncate(bad)
        )));
    }
    let uses_code = md.grant_types.iter().any(|g| g == "authorization_code");
    if uses_code && md.redirect_uris.is_empty() {
        return Err(bad_redirect(
            "redirect_uris is required for the authorization_code grant",
        ));
    }
    if md.redirect_uris.len() > 20 {
        return Err(bad_redirect("redirect_uris may list at most 20 URIs"));
    }
    for uri in &md.redirect_uris {
        check_redirect_uri(uri, &md.application_type)?;
    }
    check_text("client_name", &md.client_name, 200)?;
    check_text("software_id", &md.software_id, 200)?;
    check_text("software_version", &md.software_version, 100)?;
    for (f, v) in [
        ("client_uri", &md.client_uri),
        ("logo_uri", &md.logo_uri),
        ("policy_uri", &md.policy_uri),
        ("tos_uri", &md.tos_uri),
    ] {
        check_url_field(f, v)?;
    }
    if md.contacts.len() > 10 || md.contacts.iter().any(|c| c.is_empty() || c.len() > 320) {
        return Err(bad_metadata(
            "contacts must list at most 10 non-empty addresses",
        ));
    }
    if let Some(scope) = &md.scope {
        let scopes = parse_scope(Some(scope)).map_err(|e| bad_metadata(e.to_string()))?;
        if let Some(unknown) = scopes
            .iter()
            .find(|sc| !s.cfg.scopes.contains_key(*sc) && !crate::domain::is_oidc_scope(sc))
        {
            return Err(bad_metadata(format!(
                "scope: '{}' is not offered by this server; offered: {}",
                truncate(unknown),
                s.cfg.scopes.keys().cloned().collect::<Vec<_>>().join(" ")
            )));
        }
        md.scope = if scopes.is_empty() {
            None
        } else {
            Some(scopes.join(" "))
        };
    }
    Ok(md)
}

/// The metadata of a registration or update body. A field of the wrong type is
/// `invalid_client_metadata` naming the field (RFC 7591 §3.2.2), like any other bad value.
fn parse_metadata(body: &Value) -> ApiResult<ClientMetadata> {
    if !body.is_object() {
        return Err(bad_metadata(
            "the client metadata must be a JSON object (RFC 7591 §2)",
        ));
    }
    serde_path_to_error::deserialize(body)
        .map_err(|e| bad_metadata(format!("{}: {}", e.path(), e.inner())))
}

/// The largest registration or RFC 7592 update body accepted, in bytes.
pub const MAX_REGISTRATION_BYTES: usize = 16 * 1024;

/// Registration and RFC 7592 bodies over [`MAX_REGISTRATION_BYTES`] are refused before the
/// handler runs, as invalid client metadata naming the limit.
pub const BODY_LIMIT: crate::http::body_limit::Limit = crate::http::body_limit::Limit {
    max: MAX_REGISTRATION_BYTES,
    refuse: |max| {
        bad_metadata(format!(
            "the client metadata is larger than the limit of {max} bytes (16 KB)"
        ))
    },
};

/// The JSON value of a registration (or update) body of at most [`MAX_REGISTRATION_BYTES`].
fn registration_body(body: Result<Bytes, BytesRejection>) -> ApiResult<Value> {
    let too_large = |len: Option<usize>| {
        bad_metadata(format!(
            "the client metadata is {}larger than the limit of {MAX_REGISTRATION_BYTES} bytes (16 KB)",
            len.map(|n| format!("{n} bytes, ")).unwrap_or_default()
        ))
    };
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large(None)),
        Err(e) => {
            return Err(ApiError::new(
                e.status(),
                ErrorCode::InvalidRequest,
                format!("cannot read the request body: {}", e.body_text()),
            ));
        }
    };
    if body.len() > MAX_REGISTRATION_BYTES {
        return Err(too_large(Some(body.len())));
    }
    serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid_request(format!("request body is not the expected JSON: {e}"))
    })
}

/// `registration.mode = "initial_access_token"`: the bearer token must be one of the configured
/// ones. Wrong tokens are counted per client address; once its budget for the minute is spent,
/// the answer is 429 and the presented token is not even compared.
fn check_initial_access_token(s: &Shared, headers: &HeaderMap, ip: ClientIp) -> ApiResult<()> {
    let reg = &s.cfg.registration;
    let budget = reg.rate_limit_per_minute;
    if let Some(wait) = s.iat_failures.exhausted(&ip.key(), budget) {
        return Err(ApiError::rate_limited(
            format!(
                "too many wrong initial access tokens from this address; the limit is {budget} per minute"
            ),
            wait,
        ));
    }
    let presented = bearer(headers).unwrap_or("");
    let ok = !presented.is_empty()
        && reg.initial_access_tokens.iter().any(|t| {
            aws_lc_rs::constant_time::verify_slices_are_equal(t.as_bytes(), presented.as_bytes())
                .is_ok()
        });
    if ok {
        return Ok(());
    }
    // Over budget now or not, this attempt is answered 401: the next one gets the 429.
    let _ = s.iat_failures.hit(&ip.key(), budget);
    Err(ApiError::unauthorized(
        ErrorCode::InvalidToken,
        "registration requires an initial access token: Authorization: Bearer <token>",
    ))
}

fn global_limit(limit: u32, wait: Duration) -> ApiError {
    ApiError::rate_limited(
        format!("this server takes at most {limit} registrations per minute; try again later"),
        wait,
    )
}

fn registration_response(
    s: &Shared,
    client_id: &str,
    issued_at: i64,
    md: &ClientMetadata,
    secret: Option<&str>,
    reg_token: Option<&str>,
) -> Value {
    let mut v = serde_json::to_value(md).unwrap_or_else(|_| json!({}));
    if let Value::Object(m) = &mut v {
        m.insert("client_id".into(), json!(client_id));
        m.insert("client_id_issued_at".into(), json!(issued_at));
        if let Some(secret) = secret {
            m.insert("client_secret".into(), json!(secret));
            m.insert("client_secret_expires_at".into(), json!(0));
        }
        if let Some(t) = reg_token {
            m.insert("registration_access_token".into(), json!(t));
        }
        m.insert(
            "registration_client_uri".into(),
            json!(format!("{}/oauth2/register/{}", s.cfg.issuer, client_id)),
        );
    }
    v
}

fn no_store(status: StatusCode, body: Value) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

/// `POST /oauth2/register`
pub async fn register(
    State(s): State<Shared>,
    ip: ClientIp,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let reg = &s.cfg.registration;
    match reg.mode.as_str() {
        "disabled" => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::AccessDenied,
                "dynamic client registration is disabled on this server",
            ));
        }
        "initial_access_token" => check_initial_access_token(&s, &headers, ip)?,
        _ => {}
    }
    if let Err(wait) = s
        .registration_limiter
        .hit(&ip.key(), reg.rate_limit_per_minute)
    {
        return Err(ApiError::rate_limited(
            format!(
                "too many registrations from this address; the limit is {} per minute",
                reg.rate_limit_per_minute
            ),
            wait,
        ));
    }
    let global = reg.global_rate_limit_per_minute;
    if let Some(wait) = s.registration_global.exhausted(&(), global) {
        return Err(global_limit(global, wait));
    }
    let body = registration_body(body)?;
    let md = parse_metadata(&body)?;
    let md = validate_metadata(&s, md)?;
    // Counted once valid: refused requests do not use up everyone's registrations.
    if let Err(wait) = s.registration_global.hit(&(), global) {
        return Err(global_limit(global, wait));
    }
    let now = now();
    // Self-issued ids never start with https:// (those are CIMD URLs).
    let client_id = format!("cyc-{}", random_token(16));
    let secret =
        (md.token_endpoint_auth_method != "none").then(|| format!("cys-{}", random_token(32)));
    let reg_token = format!("cyt-{}", random_token(32));
    let metadata = serde_json::to_string(&md).map_err(ApiError::internal)?;
    s.store
        .insert_client(
            &ClientRow {
                client_id: client_id.clone(),
                secret_hash: secret.as_deref().map(sha256_hex),
                registration_token_hash: sha256_hex(&reg_token),
                metadata,
                created_at: now,
            },
            now,
        )
        .await?;
    tracing::info!(client_id = %client_id, client_name = ?md.client_name, "client registered");
    Ok(no_store(
        StatusCode::CREATED,
        registration_response(
            &s,
            &client_id,
            now,
            &md,
            secret.as_deref(),
            Some(&reg_token),
        ),
    ))
}

/// Authorize an RFC 7592 call: the registration access token of exactly this client.
async fn managed_client(s: &Shared, headers: &HeaderMap, client_id: &str) -> ApiResult<ClientRow> {
    let presented = bearer(headers).ok_or_else(|| {
        ApiError::unauthorized(
            ErrorCode::InvalidToken,
            "Authorization: Bearer <registration_access_token> is required",
        )
    })?;
    let row = s.store.client(client_id).await?;
    let ok = row.as_ref().is_some_and(|r| {
        aws_lc_rs::constant_time::verify_slices_are_equal(
            r.registration_token_hash.as_bytes(),
            sha256_hex(presented).as_bytes(),
        )
        .is_ok()
    });
    match row {
        // Unknown client and wrong token answer the same, so ids cannot be probed.
        Some(r) if ok => Ok(r),
        _ => Err(ApiError::unauthorized(
            ErrorCode::InvalidToken,
            "the registration access token is not valid for this client",
        )),
    }
}

/// `GET /oauth2/register/{client_id}`
pub async fn read(
    State(s): State<Shared>,
    headers: HeaderMap,
    PathParams(client_id): PathParams<String>,
) -> ApiResult<Response> {
    let row = managed_client(&s, &headers, &client_id).await?;
    let md: ClientMetadata = serde_json::from_str(&row.metadata).map_err(ApiError::internal)?;
    Ok(no_store(
        StatusCode::OK,
        registration_response(&s, &client_id, row.created_at, &md, None, None),
    ))
}

/// `PUT /oauth2/register/{client_id}`: replace the metadata (RFC 7592 §2.2).
pub async fn update(
    State(s): State<Shared>,
    headers: HeaderMap,
    PathParams(client_id): PathParams<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let row = managed_client(&s, &headers, &client_id).await?;
    let body = registration_body(body)?;
    if body.get("client_id").and_then(Value::as_str) != Some(client_id.as_str()) {
        return Err(ApiError::invalid_request(format!(
            "client_id in the body must be '{client_id}'"
        )));
    }
    let old: ClientMetadata = serde_json::from_str(&row.metadata).map_err(ApiError::internal)?;
    let md = parse_metadata(&body)?;
    let md = validate_metadata(&s, md)?;
    if (md.token_endpoint_auth_method == "none") != (old.token_endpoint_auth_method == "none") {
        return Err(bad_metadata(
            "token_endpoint_auth_method cannot change between public (none) and confidential; register a new client",
        ));
    }
    let metadata = serde_json::to_string(&md).map_err(ApiError::internal)?;
    s.store
        .update_client_metadata(&client_id, &metadata, now())
        .await?;
    Ok(no_store(
        StatusCode::OK,
        registration_response(&s, &client_id, row.created_at, &md, None, None),
    ))
}

/// `DELETE /oauth2/register/{client_id}`: the client and every grant it holds are gone.
pub async fn delete(
    State(s): State<Shared>,
    headers: HeaderMap,
    PathParams(client_id): PathParams<String>,
) -> ApiResult<StatusCode> {
    managed_client(&s, &headers, &client_id).await?;
    s.store.delete_client(&client_id, now()).await?;
    Ok(StatusCode::NO_CONTENT)
}
