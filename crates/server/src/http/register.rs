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
use consentry_protocol::{ClientAuthMethod, ErrorCode, RegistrationMode};
use serde_json::{Value, json};

use crate::clients::{ClientMetadata as RawMetadata, ProblemKind, Trust};
use crate::crypto::sha256_hex;
use crate::error::{ApiError, ApiResult};
use crate::http::client_ip::ClientIp;
use crate::http::extract::bearer;
use crate::state::Shared;
use crate::store::ClientRow;

/// The metadata a client registers (RFC 7591 §2), as stored and returned.
pub use crate::clients::ValidClientMetadata as ClientMetadata;

pub use crate::clients::client_from_row;

fn bad_metadata(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(ErrorCode::InvalidClientMetadata, msg)
}

/// Validate and normalise registration metadata (defaults per RFC 7591 §2) under the one client
/// rule (`clients::validate`, registered trust).
pub fn validate_metadata(s: &Shared, md: RawMetadata) -> ApiResult<ClientMetadata> {
    let offered = |sc: &str| s.cfg.scopes.contains_key(sc) || crate::domain::is_oidc_scope(sc);
    let offered_list = s.cfg.scopes.keys().cloned().collect::<Vec<_>>().join(" ");
    let trust = Trust::Registered {
        mode: s.cfg.registration.mode,
        offered_scope: &offered,
        offered_list: &offered_list,
    };
    validated(md, trust)
}

fn validated(md: RawMetadata, trust: Trust<'_>) -> ApiResult<ClientMetadata> {
    crate::clients::validate(md, trust).map_err(|e| {
        let code = match e.kind {
            ProblemKind::RedirectUri => ErrorCode::InvalidRedirectUri,
            ProblemKind::Metadata => ErrorCode::InvalidClientMetadata,
        };
        let description = e.to_string();
        ApiError::bad_request(code, description)
    })
}

/// The metadata of a registration or update body. A field of the wrong type is
/// `invalid_client_metadata` naming the field (RFC 7591 §3.2.2), like any other bad value.
fn parse_metadata(body: &Value) -> ApiResult<RawMetadata> {
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
        Err(e) => return Err(crate::http::extract::unreadable_body(e)),
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
    match reg.mode {
        RegistrationMode::Disabled => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::AccessDenied,
                "dynamic client registration is disabled on this server",
            ));
        }
        RegistrationMode::InitialAccessToken => check_initial_access_token(&s, &headers, ip)?,
        RegistrationMode::Open => {}
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
    let created = crate::flows::register::register(&s, &md, false).await?;
    let now = created.created_at;
    let (client_id, secret, reg_token) = (
        created.client_id,
        created.secret,
        created.registration_token,
    );
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
    let public = |m: ClientAuthMethod| !m.is_confidential();
    if public(md.token_endpoint_auth_method) != public(old.token_endpoint_auth_method) {
        return Err(bad_metadata(
            "token_endpoint_auth_method cannot change between public (none) and confidential; register a new client",
        ));
    }
    crate::flows::register::update(&s, &client_id, &md).await?;
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
    crate::flows::apps::delete_client(&s, &client_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// --- first-party clients through the admin API ---

/// `POST /admin/v1/clients`: create a first-party client (the operator's, like `[[clients]]`:
/// an organization's `first_party` rule governs it). The body is RFC 7591 client metadata,
/// validated at the operator's trust; the answer carries the secret once.
pub async fn admin_create(
    State(s): State<Shared>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    crate::http::apps::admin(&s, &headers)?;
    let body = registration_body(body)?;
    let md = validated(parse_metadata(&body)?, Trust::Operator)?;
    let created = crate::flows::register::register(&s, &md, true).await?;
    let mut v = registration_response(
        &s,
        &created.client_id,
        created.created_at,
        &md,
        created.secret.as_deref(),
        None,
    );
    if let Value::Object(m) = &mut v {
        // Managed through the admin API, not RFC 7592.
        m.remove("registration_client_uri");
        m.insert("first_party".into(), json!(true));
    }
    Ok(no_store(StatusCode::CREATED, v))
}

/// `PUT /admin/v1/clients/{client_id}`: replace an admin-created client's metadata.
pub async fn admin_update(
    State(s): State<Shared>,
    headers: HeaderMap,
    PathParams(client_id): PathParams<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    crate::http::apps::admin(&s, &headers)?;
    let row = s
        .store
        .client(&client_id)
        .await?
        .filter(|r| r.first_party)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                format!(
                    "no client '{}' created through the admin API ([[clients]] change in the config file, self-registered clients through RFC 7592)",
                    crate::clients::truncate(&client_id)
                ),
            )
        })?;
    let body = registration_body(body)?;
    let old: ClientMetadata = serde_json::from_str(&row.metadata).map_err(ApiError::internal)?;
    let md = validated(parse_metadata(&body)?, Trust::Operator)?;
    let public = |m: ClientAuthMethod| !m.is_confidential();
    if public(md.token_endpoint_auth_method) != public(old.token_endpoint_auth_method) {
        return Err(bad_metadata(
            "token_endpoint_auth_method cannot change between public (none) and confidential; create a new client",
        ));
    }
    crate::flows::register::update(&s, &client_id, &md).await?;
    let mut v = registration_response(&s, &client_id, row.created_at, &md, None, None);
    if let Value::Object(m) = &mut v {
        m.remove("registration_client_uri");
        m.insert("first_party".into(), json!(true));
    }
    Ok(no_store(StatusCode::OK, v))
}
