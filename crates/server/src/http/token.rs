//! `POST /oauth2/token`: authorization_code (PKCE) and refresh_token (rotation with reuse
//! detection) grants, issuing RFC 9068 JWT access tokens.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use consentry_protocol::wire::TokenResponse;
use consentry_protocol::{ErrorCode, is_valid_code_verifier, parse_scope, percent_decode};
use serde_json::{Value, json};

use crate::clients::{Client, ClientSource, quoted_list, truncate};
use crate::crypto::{pkce_s256_matches, random_token, sha256_hex};
use crate::error::{ApiError, ApiResult};
use crate::http::authorize::CodePayload;
use crate::state::{Shared, now};
use crate::store::{CodeRedemption, FamilyRow, RefreshDecision, RefreshGrant, RefreshRow};
use consentry_protocol::GrantType;

pub(crate) const REFRESH_PREFIX: &str = "cyr_";

/// A parsed `application/x-www-form-urlencoded` body. Parameters may not repeat (RFC 6749 §3.2),
/// except `resource` (RFC 8707).
pub(crate) struct Form {
    single: HashMap<String, String>,
    resources: Vec<String>,
}

impl Form {
    pub(crate) fn parse(headers: &HeaderMap, body: &[u8]) -> ApiResult<Form> {
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
        let mut single = HashMap::new();
        let mut resources = Vec::new();
        for pair in text.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let key = percent_decode(k).ok_or_else(|| {
                ApiError::invalid_request("a parameter name is badly percent-encoded")
            })?;
            let value = percent_decode(v).ok_or_else(|| {
                ApiError::invalid_request(format!("{} is badly percent-encoded", truncate(&key)))
            })?;
            if key == "resource" {
                if !value.is_empty() {
                    resources.push(value);
                }
                continue;
            }
            if value.is_empty() {
                continue;
            }
            if single.insert(key.clone(), value).is_some() {
                return Err(ApiError::invalid_request(format!(
                    "{} must appear at most once",
                    truncate(&key)
                )));
            }
        }
        Ok(Form { single, resources })
    }

    pub(crate) fn get(&self, k: &str) -> Option<&str> {
        self.single.get(k).map(String::as_str)
    }

    pub(crate) fn require(&self, k: &str) -> ApiResult<&str> {
        self.get(k)
            .ok_or_else(|| ApiError::invalid_request(format!("{k} is required")))
    }
}

pub async fn token(
    State(s): State<Shared>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    // Taken as a Result so that a body the server cannot read (over the size limit…) gets a JSON
    // error like every other failure, not axum's plain-text rejection.
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            return ApiError::new(
                e.status(),
                ErrorCode::InvalidRequest,
                format!("cannot read the request body: {}", e.body_text()),
            )
            .into_response();
        }
    };
    match handle(&s, &headers, &body).await {
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

async fn handle(s: &Shared, headers: &HeaderMap, body: &[u8]) -> ApiResult<TokenResponse> {
    let form = Form::parse(headers, body)?;
    let grant_type = form.require("grant_type")?;
    match grant_type {
        "authorization_code" => {
            let (client_id, ..) = presented_client(headers, &form)?;
            let (client, payload) = if is_metadata_document_id(&client_id) {
                // The code first: resolving this client fetches its document.
                let payload = open_code(s, &client_id, &form)?;
                (authenticate_client(s, headers, &form).await?, payload)
            } else {
                let client = authenticate_client(s, headers, &form).await?;
                let payload = open_code(s, &client.client_id, &form)?;
                (client, payload)
            };
            authorization_code(s, &client, &form, payload).await
        }
        "refresh_token" => {
            refresh_token_is_of_presented_client(s, headers, &form).await?;
            let client = authenticate_client(s, headers, &form).await?;
            refresh(s, &client, &form).await
        }
        "client_credentials" => {
            let (client_id, ..) = presented_client(headers, &form)?;
            if is_metadata_document_id(&client_id) {
                return Err(document_client_credentials(&client_id));
            }
            let client = authenticate_client(s, headers, &form).await?;
            client_credentials(s, &client, &form).await
        }
        other => Err(ApiError::bad_request(
            ErrorCode::UnsupportedGrantType,
            format!(
                "grant_type '{}' is not supported; expected authorization_code, refresh_token or client_credentials",
                truncate(other)
            ),
        )),
    }
}

fn invalid_client(msg: String) -> ApiError {
    let mut e = ApiError::unauthorized(ErrorCode::InvalidClient, msg);
    e.www_authenticate = Some("Basic realm=\"consentry\"".into());
    e
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
pub(crate) fn presented_client(
    headers: &HeaderMap,
    form: &Form,
) -> ApiResult<(String, Option<String>, &'static str)> {
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
            (id, Some(secret), "client_secret_basic")
        }
        (None, Some(secret)) => (
            form.require("client_id")?.to_owned(),
            Some(secret.to_owned()),
            "client_secret_post",
        ),
        (None, None) => (form.require("client_id")?.to_owned(), None, "none"),
    })
}

/// Whether `client_id` names a Client ID Metadata Document, which resolving it fetches (see
/// `AppState::client`). Such a client is public: it has no secret and cannot introspect or use
/// client_credentials, so those requests are refused without fetching anything.
pub(crate) fn is_metadata_document_id(client_id: &str) -> bool {
    client_id.starts_with("https://")
}

fn document_client_credentials(client_id: &str) -> ApiError {
    ApiError::bad_request(
        ErrorCode::UnauthorizedClient,
        format!(
            "client '{}' is identified by a client metadata document, a public client: it may not use the client_credentials grant",
            truncate(client_id)
        ),
    )
}

/// Identify the client and check its credentials against the method it registered: `none`
/// (client_id only; PKCE proves possession), `client_secret_basic` or `client_secret_post`.
pub(crate) async fn authenticate_client(
    s: &Shared,
    headers: &HeaderMap,
    form: &Form,
) -> ApiResult<Client> {
    let (client_id, secret, method) = presented_client(headers, form)?;
    if secret.is_some() && is_metadata_document_id(&client_id) {
        return Err(invalid_client(format!(
            "client '{}' is identified by a client metadata document, a public client (token_endpoint_auth_method 'none'): send client_id only, no credentials",
            truncate(&client_id)
        )));
    }
    let client = s.client(&client_id).await?.ok_or_else(|| {
        invalid_client(format!(
            "client_id '{}' is not registered with this server",
            truncate(&client_id)
        ))
    })?;
    if client.token_endpoint_auth_method.as_str() != method {
        let how = match client.token_endpoint_auth_method.as_str() {
            "none" => "it is a public client (token_endpoint_auth_method 'none'): send client_id only, no credentials".to_owned(),
            m => format!("it must authenticate with {m}"),
        };
        return Err(invalid_client(format!(
            "client '{}' sent {method} credentials but {how}",
            client.client_id
        )));
    }
    if let Some(secret) = secret {
        let ok = client.secret_hash.as_ref().is_some_and(|h| {
            aws_lc_rs::constant_time::verify_slices_are_equal(
                h.as_bytes(),
                sha256_hex(&secret).as_bytes(),
            )
            .is_ok()
        });
        if !ok {
            return Err(invalid_client(format!(
                "client authentication failed for client '{}'",
                client.client_id
            )));
        }
    }
    Ok(client)
}

/// `client_credentials`: a confidential client acting for itself (no user, no refresh token).
async fn client_credentials(s: &Shared, client: &Client, form: &Form) -> ApiResult<TokenResponse> {
    if !client.is_confidential() || !client.allows_grant(GrantType::ClientCredentials) {
        return Err(ApiError::bad_request(
            ErrorCode::UnauthorizedClient,
            format!(
                "client '{}' may not use the client_credentials grant (it needs a secret and client_credentials in its grant_types)",
                client.client_id
            ),
        ));
    }
    let cfg = &s.cfg;
    let self_registered = client.source != ClientSource::Config;
    if self_registered && cfg.registration.mode == consentry_protocol::RegistrationMode::Open {
        // Registered before the server opened its registration, or through an older release
        // that allowed it: anyone can register under open registration.
        return Err(ApiError::bad_request(
            ErrorCode::UnauthorizedClient,
            format!(
                "client '{}' may not use the client_credentials grant: it registered itself and registration.mode is \"open\"; expected a client from [[clients]] or registration.mode = \"initial_access_token\"",
                client.client_id
            ),
        ));
    }
    let all: Vec<String> = cfg.resources.iter().map(|r| r.uri.clone()).collect();
    let audience = if form.resources.is_empty() {
        match all.as_slice() {
            [only] => vec![only.clone()],
            _ => {
                return Err(ApiError::bad_request(
                    ErrorCode::InvalidTarget,
                    format!(
                        "resource is required; expected one of: {}",
                        quoted_list(&all)
                    ),
                ));
            }
        }
    } else {
        narrow_resources(&form.resources, &all)?
    };
    let available: Vec<String> = audience
        .iter()
        .filter_map(|a| cfg.resource(a))
        .flat_map(|r| r.scopes.clone())
        .collect();
    let requested = parse_scope(form.get("scope"))?;
    let scopes: Vec<String> = if requested.is_empty() {
        audience
            .iter()
            .filter_map(|a| cfg.resource(a))
            .flat_map(|r| r.default_scopes.clone())
            .filter(|sc| {
                client
                    .scope
                    .as_ref()
                    .is_none_or(|allowed| allowed.contains(sc))
            })
            .collect()
    } else {
        requested
    };
    for sc in &scopes {
        if !available.contains(sc) {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidScope,
                format!(
                    "scope '{}' is not available on the requested resource; expected some of: {}",
                    truncate(sc),
                    quoted_list(&available)
                ),
            ));
        }
        // A role-gated scope is granted by a user who holds the role; a client acting for
        // itself has none. Only the operator's own clients ([[clients]]) are trusted with one.
        if self_registered
            && let Some(def) = cfg.scopes.get(sc)
            && !def.required_roles.is_empty()
        {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidScope,
                format!(
                    "scope '{}' needs a user with one of the roles {}: a self-registered client cannot get it with client_credentials",
                    truncate(sc),
                    quoted_list(&def.required_roles)
                ),
            ));
        }
        if let Some(allowed) = &client.scope
            && !allowed.contains(sc)
        {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidScope,
                format!(
                    "scope '{}' is not registered for client '{}'; registered: {}",
                    truncate(sc),
                    client.client_id,
                    quoted_list(allowed)
                ),
            ));
        }
    }
    let grant = Grant {
        subject: &client.client_id,
        client_id: &client.client_id,
        grant_id: None,
    };
    let response = issue(s, &grant, &scopes, &audience, None, None, now()).await?;
    if self_registered {
        // Used: not deleted as unused or idle (registration.*_client_ttl_seconds). The token is
        // issued already; a failed write only risks an earlier deletion, so it is logged.
        if let Err(e) = s.store.touch_client(&client.client_id, now()).await {
            tracing::warn!(client_id = %client.client_id, "recording the client's use: {e}");
        }
    }
    Ok(response)
}

/// The requested `resource` values must be a subset of what was authorized; none means all.
fn narrow_resources(requested: &[String], authorized: &[String]) -> ApiResult<Vec<String>> {
    if requested.is_empty() {
        return Ok(authorized.to_vec());
    }
    let mut out = Vec::new();
    for r in requested {
        if !authorized.contains(r) {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidTarget,
                format!(
                    "resource '{}' was not part of this authorization; expected one of: {}",
                    truncate(r),
                    quoted_list(authorized)
                ),
            ));
        }
        if !out.contains(r) {
            out.push(r.clone());
        }
    }
    Ok(out)
}

/// The authorization code, if it opens (issued by this server, unaltered) and was issued to
/// `client_id`. For a metadata-document client this runs before the client is resolved, so a
/// forged code, or another client's, never makes the server fetch the document.
fn open_code(s: &Shared, client_id: &str, form: &Form) -> ApiResult<CodePayload> {
    let code = form.require("code")?;
    let payload: CodePayload = s.sealer.open(code).ok_or_else(|| {
        ApiError::invalid_grant("code is invalid: it was not issued by this server or was altered")
    })?;
    if payload.client_id != client_id {
        return Err(ApiError::invalid_grant(format!(
            "code was issued to another client, not to '{}'",
            truncate(client_id)
        )));
    }
    Ok(payload)
}

/// For a metadata-document client, the refresh token is looked up before the client is
/// resolved: an unknown token, or one issued to another client, is refused without fetching
/// the document. (Other clients are found without a fetch; `refresh` judges their tokens.)
async fn refresh_token_is_of_presented_client(
    s: &Shared,
    headers: &HeaderMap,
    form: &Form,
) -> ApiResult<()> {
    let (client_id, ..) = presented_client(headers, form)?;
    if !is_metadata_document_id(&client_id) {
        return Ok(());
    }
    let presented = form.require("refresh_token")?;
    match s.store.refresh_token(&sha256_hex(presented)).await? {
        None => Err(ApiError::invalid_grant(
            "refresh_token is invalid, expired or revoked; authorize again",
        )),
        Some(row) if row.family.client_id != client_id => Err(ApiError::invalid_grant(format!(
            "refresh_token was issued to another client, not to '{}'",
            truncate(&client_id)
        ))),
        Some(_) => Ok(()),
    }
}

async fn authorization_code(
    s: &Shared,
    client: &Client,
    form: &Form,
    payload: CodePayload,
) -> ApiResult<TokenResponse> {
    let now = now();
    if payload.expires_at <= now {
        return Err(ApiError::invalid_grant(format!(
            "code expired {}s ago; codes are valid for {}s",
            now - payload.expires_at,
            s.cfg.authorization_code_ttl_seconds
        )));
    }
    match form.get("redirect_uri") {
        Some(r) if r != payload.redirect_uri => {
            return Err(ApiError::invalid_grant(format!(
                "redirect_uri '{}' does not match the authorization request's; expected '{}'",
                truncate(r),
                payload.redirect_uri
            )));
        }
        None if payload.redirect_uri_sent => {
            return Err(ApiError::invalid_request(format!(
                "redirect_uri is required because the authorization request carried it; expected '{}'",
                payload.redirect_uri
            )));
        }
        _ => {}
    }
    let verifier = form
        .get("code_verifier")
        .ok_or_else(|| ApiError::invalid_request("code_verifier is required (PKCE S256)"))?;
    if !is_valid_code_verifier(verifier) {
        return Err(ApiError::invalid_request(
            "code_verifier must be 43-128 characters from A-Z a-z 0-9 - . _ ~ (RFC 7636)",
        ));
    }
    if !pkce_s256_matches(verifier, &payload.challenge) {
        return Err(ApiError::invalid_grant(
            "code_verifier does not match the code_challenge of the authorization request",
        ));
    }
    let audience = narrow_resources(&form.resources, &payload.resources)?;

    let family = FamilyRow {
        family_id: random_token(16),
        user_id: payload.user_id.clone(),
        client_id: client.client_id.clone(),
        scope: payload.scopes.join(" "),
        resources: payload.resources.clone(),
        revoked_at: None,
    };
    let refresh = format!("{REFRESH_PREFIX}{}", random_token(32));
    let outcome = s
        .store
        .redeem_code(
            &payload.id,
            payload.expires_at + 60,
            &family,
            &sha256_hex(&refresh),
            now + s.cfg.refresh_token_ttl_seconds,
            now,
        )
        .await?;
    if let CodeRedemption::Replayed = outcome {
        tracing::warn!(client_id = %client.client_id, "authorization code replayed; grant revoked");
        return Err(ApiError::invalid_grant(
            "code was already used; the tokens issued for it have been revoked",
        ));
    }
    let id = IdTokenInput {
        nonce: payload.nonce.as_deref(),
        auth_time: payload.auth_time,
    };
    // A client that did not register the refresh_token grant gets none (the grant's row is kept
    // all the same: revocation and connected apps work on it).
    let refresh = client
        .allows_grant(GrantType::RefreshToken)
        .then_some(refresh);
    issue(
        s,
        &Grant::of(&family),
        &payload.scopes,
        &audience,
        refresh,
        Some(id),
        now,
    )
    .await
}

async fn refresh(s: &Shared, client: &Client, form: &Form) -> ApiResult<TokenResponse> {
    let presented = form.require("refresh_token")?;
    if !client.allows_grant(GrantType::RefreshToken) {
        return Err(ApiError::bad_request(
            ErrorCode::UnauthorizedClient,
            format!(
                "client '{}' may not use the refresh_token grant (not in its grant_types)",
                client.client_id
            ),
        ));
    }
    let now = now();
    let next = format!("{REFRESH_PREFIX}{}", random_token(32));
    // Judged inside the one transaction that reads and rotates the token (one round trip).
    let decide = {
        let client_id = client.client_id.clone();
        let grace = s.cfg.refresh_reuse_grace_seconds;
        let requested_scope = form.get("scope").map(str::to_owned);
        let requested_resources = form.resources.clone();
        let cfg = s.cfg.clone();
        move |row: &RefreshRow| {
            judge_refresh(
                row,
                &client_id,
                grace,
                requested_scope.as_deref(),
                &requested_resources,
                now,
                &cfg,
            )
        }
    };
    let outcome = s
        .store
        .refresh_grant(
            &sha256_hex(presented),
            &sha256_hex(&next),
            now + s.cfg.refresh_token_ttl_seconds,
            s.cfg.grant_max_lifetime_seconds,
            now,
            decide,
        )
        .await?;
    let (row, (scopes, audience)) = match outcome {
        RefreshGrant::Rotated { row, plan } => (row, plan),
        RefreshGrant::Unknown => {
            return Err(ApiError::invalid_grant(
                "refresh_token is invalid, expired or revoked; authorize again",
            ));
        }
        RefreshGrant::Refused { error, revoked } => {
            if revoked {
                tracing::warn!(client_id = %client.client_id, "refresh token reused; grant revoked");
            }
            return Err(error);
        }
        RefreshGrant::LostRace => {
            // Another request rotated this token between our read and our write: that is reuse
            // (unless the grant was revoked meanwhile, which revoking again leaves as it is).
            let hash = sha256_hex(presented);
            if let Some(row) = s.store.refresh_token(&hash).await? {
                s.store
                    .revoke_family(&row.family.family_id, "refresh_reuse", now)
                    .await?;
            }
            return Err(reused());
        }
    };
    issue(
        s,
        &Grant::of(&row.family),
        &scopes,
        &audience,
        Some(next),
        None,
        now,
    )
    .await
}

fn reused() -> ApiError {
    ApiError::invalid_grant(
        "refresh_token was already used; every token of this grant has been revoked",
    )
}

/// The refresh grant's rules for the token presented (`row`): issued to this client, not
/// revoked or expired, its grant younger than `grant_max_lifetime_seconds` and its user still
/// there, not rotated already (beyond the reuse grace window, which revokes the grant), scope
/// and resources only narrowed, and only the scopes the user's current roles allow. Rotating
/// yields the new token's (scopes, audience).
fn judge_refresh(
    row: &RefreshRow,
    client_id: &str,
    grace: i64,
    requested_scope: Option<&str>,
    requested_resources: &[String],
    now: i64,
    cfg: &crate::config::Config,
) -> RefreshDecision<(Vec<String>, Vec<String>), ApiError> {
    use RefreshDecision::{Refuse, RevokeAndRefuse, Rotate};
    if row.family.client_id != client_id {
        return Refuse(ApiError::invalid_grant(format!(
            "refresh_token was issued to another client, not to '{client_id}'"
        )));
    }
    if row.family.revoked_at.is_some() {
        return Refuse(ApiError::invalid_grant(
            "refresh_token was revoked; authorize again",
        ));
    }
    let max_age = cfg.grant_max_lifetime_seconds;
    if now.saturating_sub(row.family_created_at) >= max_age {
        return Refuse(ApiError::invalid_grant(format!(
            "refresh_token belongs to a grant older than grant_max_lifetime_seconds ({max_age}s); authorize again"
        )));
    }
    let Some(roles) = &row.user_roles else {
        return Refuse(ApiError::invalid_grant(
            "refresh_token belongs to a user who no longer exists; authorize again",
        ));
    };
    if row.expires_at <= now {
        return Refuse(ApiError::invalid_grant(
            "refresh_token expired; authorize again",
        ));
    }
    let in_grace = match row.rotated_at {
        None => false,
        Some(t) if grace > 0 && now - t <= grace => true,
        Some(_) => return RevokeAndRefuse(reused()),
    };
    let granted: Vec<String> = parse_scope(Some(&row.family.scope)).unwrap_or_default();
    let scopes = match requested_scope {
        None => granted,
        Some(requested) => {
            let requested = match parse_scope(Some(requested)) {
                Ok(r) => r,
                Err(e) => return Refuse(e.into()),
            };
            if let Some(extra) = requested.iter().find(|sc| !granted.contains(sc)) {
                return Refuse(ApiError::bad_request(
                    ErrorCode::InvalidScope,
                    format!(
                        "scope '{}' was not granted; a refresh may only narrow the scope to some of: {}",
                        truncate(extra),
                        quoted_list(&granted)
                    ),
                ));
            }
            if requested.is_empty() {
                granted
            } else {
                requested
            }
        }
    };
    // Roles are read again at every refresh (the user's row holds those of their last
    // attestation): a scope whose required_roles the user no longer holds is left out.
    let (scopes, dropped): (Vec<String>, Vec<String>) = scopes.into_iter().partition(|sc| {
        cfg.scopes.get(sc).is_none_or(|d| {
            d.required_roles.is_empty() || d.required_roles.iter().any(|r| roles.contains(r))
        })
    });
    if scopes.is_empty() {
        return Refuse(ApiError::invalid_grant(format!(
            "refresh_token grants nothing the user may still have: scope {} requires a role the user no longer holds ({}); authorize again",
            quoted_list(&dropped),
            quoted_list(
                &dropped
                    .iter()
                    .filter_map(|sc| cfg.scopes.get(sc))
                    .flat_map(|d| d.required_roles.clone())
                    .collect::<Vec<_>>()
            )
        )));
    }
    match narrow_resources(requested_resources, &row.family.resources) {
        Ok(audience) => Rotate {
            plan: (scopes, audience),
            allow_rotated: in_grace,
        },
        Err(e) => Refuse(e),
    }
}

/// Who a token is for: a user's grant, or a client acting for itself.
struct Grant<'a> {
    subject: &'a str,
    client_id: &'a str,
    /// The token family (user grants only): revoking it reaches the token through `gid`.
    grant_id: Option<&'a str>,
}

impl<'a> Grant<'a> {
    fn of(f: &'a FamilyRow) -> Grant<'a> {
        Grant {
            subject: &f.user_id,
            client_id: &f.client_id,
            grant_id: Some(&f.family_id),
        }
    }
}

/// For an ID token: the nonce of the authorization request and when the user authenticated.
struct IdTokenInput<'a> {
    nonce: Option<&'a str>,
    auth_time: i64,
}

/// Sign an RFC 9068 access token (and an ID token when `openid` was granted).
async fn issue(
    s: &Shared,
    grant: &Grant<'_>,
    scopes: &[String],
    audience: &[String],
    refresh_token: Option<String>,
    id: Option<IdTokenInput<'_>>,
    now: i64,
) -> ApiResult<TokenResponse> {
    let ttl = s.cfg.access_token_ttl_seconds;
    // A token carries only the scopes that mean something to its audience (RFC 8707 §2.2):
    // a token for the files server does not also say "notes:write". OpenID scopes stay: they
    // are for this server's userinfo endpoint.
    let kept: Vec<String> = scopes
        .iter()
        .filter(|sc| {
            crate::http::oidc::is_oidc_scope(sc)
                || audience
                    .iter()
                    .any(|a| s.cfg.resource(a).is_some_and(|r| r.scopes.contains(sc)))
        })
        .cloned()
        .collect();
    let scope = kept.join(" ");
    let aud: Value = match audience {
        [one] => json!(one),
        many => json!(many),
    };
    let mut claims = json!({
        "iss": s.cfg.issuer,
        "sub": grant.subject,
        "aud": aud,
        "exp": now + ttl,
        "iat": now,
        "nbf": now,
        "jti": random_token(16),
        "client_id": grant.client_id,
        "scope": scope,
    });
    if let (Some(gid), Value::Object(m)) = (grant.grant_id, &mut claims) {
        // The grant this token belongs to, so revoking the grant reaches the token
        // (introspection) without a row per access token.
        m.insert("gid".into(), json!(gid));
    }
    let keys = s.keys.current().await;
    let access_token = keys.current.sign_jwt("at+jwt", &claims)?;
    let id_token = match id {
        Some(input) if kept.iter().any(|sc| sc == "openid") => Some(
            crate::http::oidc::id_token(
                s,
                grant.subject,
                grant.client_id,
                &kept,
                input.nonce,
                input.auth_time,
                now,
            )
            .await?,
        ),
        _ => None,
    };
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer".into(),
        expires_in: ttl,
        refresh_token,
        scope,
        id_token,
    })
}
