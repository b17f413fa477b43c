//! `POST /oauth2/token`: authorization_code (PKCE) and refresh_token (rotation with reuse
//! detection) grants, issuing RFC 9068 JWT access tokens.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use consentry_protocol::wire::TokenResponse;
use consentry_protocol::{ErrorCode, is_valid_code_verifier, parse_scope, percent_decode};
use serde_json::{Value, json};

use crate::app::{Shared, now};
use crate::authorize::CodePayload;
use crate::clients::{Client, quoted_list, truncate};
use crate::crypto::{pkce_s256_matches, random_token, sha256_hex};
use crate::db::{CodeRedemption, FamilyRow};
use crate::error::{ApiError, ApiResult};

const REFRESH_PREFIX: &str = "cyr_";

/// A parsed `application/x-www-form-urlencoded` body. Parameters may not repeat (RFC 6749 §3.2),
/// except `resource` (RFC 8707).
struct Form {
    single: HashMap<String, String>,
    resources: Vec<String>,
}

impl Form {
    fn parse(headers: &HeaderMap, body: &[u8]) -> ApiResult<Form> {
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

    fn get(&self, k: &str) -> Option<&str> {
        self.single.get(k).map(String::as_str)
    }

    fn require(&self, k: &str) -> ApiResult<&str> {
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
            let client = authenticate_client(s, headers, &form).await?;
            authorization_code(s, &client, &form).await
        }
        "refresh_token" => {
            let client = authenticate_client(s, headers, &form).await?;
            refresh(s, &client, &form).await
        }
        other => Err(ApiError::bad_request(
            ErrorCode::UnsupportedGrantType,
            format!(
                "grant_type '{}' is not supported; expected authorization_code or refresh_token",
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

/// Public clients identify themselves with `client_id` and prove possession with PKCE.
async fn authenticate_client(s: &Shared, headers: &HeaderMap, form: &Form) -> ApiResult<Client> {
    let client_id = form.require("client_id")?;
    let client = s.client(client_id).await?.ok_or_else(|| {
        invalid_client(format!(
            "client_id '{}' is not registered with this server",
            truncate(client_id)
        ))
    })?;
    if client.token_endpoint_auth_method == "none"
        && (headers.contains_key(header::AUTHORIZATION) || form.get("client_secret").is_some())
    {
        return Err(invalid_client(format!(
            "client '{}' is a public client (token_endpoint_auth_method 'none'); send no client credentials",
            client.client_id
        )));
    }
    Ok(client)
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

async fn authorization_code(s: &Shared, client: &Client, form: &Form) -> ApiResult<TokenResponse> {
    let code = form.require("code")?;
    let now = now();
    let payload: CodePayload = s.sealer.open(code).ok_or_else(|| {
        ApiError::invalid_grant("code is invalid: it was not issued by this server or was altered")
    })?;
    if payload.expires_at <= now {
        return Err(ApiError::invalid_grant(format!(
            "code expired {}s ago; codes are valid for {}s",
            now - payload.expires_at,
            s.cfg.authorization_code_ttl_seconds
        )));
    }
    if payload.client_id != client.client_id {
        return Err(ApiError::invalid_grant(format!(
            "code was issued to another client, not to '{}'",
            client.client_id
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
    issue(s, &family, &payload.scopes, &audience, Some(refresh), now).await
}

async fn refresh(s: &Shared, client: &Client, form: &Form) -> ApiResult<TokenResponse> {
    let presented = form.require("refresh_token")?;
    let now = now();
    let hash = sha256_hex(presented);
    let unknown =
        || ApiError::invalid_grant("refresh_token is invalid, expired or revoked; authorize again");
    let row = s.store.refresh_token(&hash).await?.ok_or_else(unknown)?;
    if row.family.client_id != client.client_id {
        return Err(ApiError::invalid_grant(format!(
            "refresh_token was issued to another client, not to '{}'",
            client.client_id
        )));
    }
    if row.family.revoked_at.is_some() {
        return Err(ApiError::invalid_grant(
            "refresh_token was revoked; authorize again",
        ));
    }
    if row.expires_at <= now {
        return Err(ApiError::invalid_grant(
            "refresh_token expired; authorize again",
        ));
    }
    let grace = s.cfg.refresh_reuse_grace_seconds;
    let in_grace = match row.rotated_at {
        None => false,
        Some(t) if grace > 0 && now - t <= grace => true,
        Some(_) => {
            s.store
                .revoke_family(&row.family.family_id, "refresh_reuse", now)
                .await?;
            tracing::warn!(client_id = %client.client_id, "refresh token reused; grant revoked");
            return Err(ApiError::invalid_grant(
                "refresh_token was already used; every token of this grant has been revoked",
            ));
        }
    };

    let granted: Vec<String> = parse_scope(Some(&row.family.scope)).unwrap_or_default();
    let scopes = match form.get("scope") {
        None => granted.clone(),
        Some(requested) => {
            let requested = parse_scope(Some(requested))?;
            if let Some(extra) = requested.iter().find(|sc| !granted.contains(sc)) {
                return Err(ApiError::bad_request(
                    ErrorCode::InvalidScope,
                    format!(
                        "scope '{}' was not granted; a refresh may only narrow the scope to some of: {}",
                        truncate(extra),
                        quoted_list(&granted)
                    ),
                ));
            }
            if requested.is_empty() {
                granted.clone()
            } else {
                requested
            }
        }
    };
    let audience = narrow_resources(&form.resources, &row.family.resources)?;

    let next = format!("{REFRESH_PREFIX}{}", random_token(32));
    let rotated = s
        .store
        .rotate_refresh(
            &hash,
            in_grace,
            &row.family.family_id,
            &sha256_hex(&next),
            now + s.cfg.refresh_token_ttl_seconds,
            now,
        )
        .await?;
    if !rotated {
        // Another request rotated this token between our read and our write: that is reuse
        // (unless the grant was revoked meanwhile, which revoking again leaves as it is).
        s.store
            .revoke_family(&row.family.family_id, "refresh_reuse", now)
            .await?;
        return Err(ApiError::invalid_grant(
            "refresh_token was already used; every token of this grant has been revoked",
        ));
    }
    issue(s, &row.family, &scopes, &audience, Some(next), now).await
}

/// Sign an RFC 9068 access token for a grant.
async fn issue(
    s: &Shared,
    family: &FamilyRow,
    scopes: &[String],
    audience: &[String],
    refresh_token: Option<String>,
    now: i64,
) -> ApiResult<TokenResponse> {
    let ttl = s.cfg.access_token_ttl_seconds;
    // A token carries only the scopes that mean something to its audience (RFC 8707 §2.2):
    // a token for the files server does not also say "notes:write".
    let scope = scopes
        .iter()
        .filter(|sc| {
            audience
                .iter()
                .any(|a| s.cfg.resource(a).is_some_and(|r| r.scopes.contains(sc)))
        })
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" ");
    let aud: Value = match audience {
        [one] => json!(one),
        many => json!(many),
    };
    let claims = json!({
        "iss": s.cfg.issuer,
        "sub": family.user_id,
        "aud": aud,
        "exp": now + ttl,
        "iat": now,
        "nbf": now,
        "jti": random_token(16),
        "client_id": family.client_id,
        "scope": scope,
        // The grant this token belongs to, so revoking the grant can be reflected for the
        // token (introspection) without a row per access token.
        "gid": family.family_id,
    });
    let keys = s.keys.current().await;
    let access_token = keys.current.sign_jwt("at+jwt", &claims)?;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer".into(),
        expires_in: ttl,
        refresh_token,
        scope,
        id_token: None,
    })
}
