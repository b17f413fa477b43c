//! The token endpoint's grants: `authorization_code` (PKCE), `refresh_token` (rotation with
//! reuse detection) and `client_credentials`, issuing RFC 9068 JWT access tokens. Whether a token
//! may be issued, and for what, is the one decision's ([`crate::domain::decision`]); this module
//! authenticates the client, loads and persists, and signs.

use consentry_protocol::wire::TokenResponse;
use consentry_protocol::{ErrorCode, GrantType, is_valid_code_verifier, parse_scope};
use serde_json::{Value, json};

use crate::clients::{Client, truncate};
use crate::config::DEFAULT_ORGANIZATION;
use crate::crypto::{pkce_s256_matches, random_token, sha256_hex};
use crate::domain::Denial;
use crate::domain::decision::{
    Ask, Context, Decision, Grant as Decided, Limits, Path, Subject, decide,
};
use crate::domain::events::Event;
use crate::domain::refresh::{self, Verdict};
use crate::error::{ApiError, ApiResult};
use crate::flows::authorize::CodePayload;
use crate::flows::emit;
use crate::state::{Shared, now};
use crate::store::{CodeRedemption, FamilyRow, RefreshDecision, RefreshGrant};

pub const REFRESH_PREFIX: &str = "cyr_";

/// The client a token, revocation or introspection request says it is, before anything is
/// looked up: its id, its secret (if it sent one) and how it sent it.
pub struct Presented {
    pub client_id: String,
    pub secret: Option<String>,
    /// `none`, `client_secret_basic` or `client_secret_post`.
    pub method: &'static str,
}

/// A token request, decoded (by the one form decoder) at the edge.
pub struct TokenRequest {
    pub client: Presented,
    pub grant_type: String,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    pub refresh_token: Option<String>,
    pub scope: Option<String>,
    pub resources: Vec<String>,
}

fn required<'a>(v: &'a Option<String>, name: &str) -> ApiResult<&'a str> {
    v.as_deref()
        .ok_or_else(|| ApiError::invalid_request(format!("{name} is required")))
}

fn denied(path: Path, client_id: &str, d: Denial) -> ApiError {
    emit(&Event::Denied {
        path,
        client_id: client_id.to_owned(),
        code: d.code,
    });
    d.into()
}

/// Run a token request.
pub async fn exchange(s: &Shared, req: &TokenRequest) -> ApiResult<TokenResponse> {
    let client_id = req.client.client_id.as_str();
    match req.grant_type.as_str() {
        "authorization_code" => {
            let (client, payload) = if is_metadata_document_id(client_id) {
                // The code first: resolving this client fetches its document.
                let payload = open_code(s, client_id, req)?;
                (authenticate_client(s, &req.client).await?, payload)
            } else {
                let client = authenticate_client(s, &req.client).await?;
                let payload = open_code(s, &client.client_id, req)?;
                (client, payload)
            };
            authorization_code(s, &client, req, payload).await
        }
        "refresh_token" => {
            refresh_token_is_of_presented_client(s, req).await?;
            let client = authenticate_client(s, &req.client).await?;
            refresh(s, &client, req).await
        }
        "client_credentials" => {
            if is_metadata_document_id(client_id) {
                return Err(document_client_credentials(client_id));
            }
            let client = authenticate_client(s, &req.client).await?;
            client_credentials(s, &client, req).await
        }
        other => Err(unsupported_grant_type(other)),
    }
}

/// The grant types this server runs; checked before anything else about the request.
pub fn supported_grant_type(grant_type: &str) -> ApiResult<()> {
    match grant_type {
        "authorization_code" | "refresh_token" | "client_credentials" => Ok(()),
        other => Err(unsupported_grant_type(other)),
    }
}

fn unsupported_grant_type(other: &str) -> ApiError {
    ApiError::bad_request(
        ErrorCode::UnsupportedGrantType,
        format!(
            "grant_type '{}' is not supported; expected authorization_code, refresh_token or client_credentials",
            truncate(other)
        ),
    )
}

pub fn invalid_client(msg: String) -> ApiError {
    let mut e = ApiError::unauthorized(ErrorCode::InvalidClient, msg);
    e.www_authenticate = Some("Basic realm=\"consentry\"".into());
    e
}

/// Whether `client_id` names a Client ID Metadata Document, which resolving it fetches (see
/// `AppState::client`). Such a client is public: it has no secret and cannot introspect or use
/// client_credentials, so those requests are refused without fetching anything.
pub fn is_metadata_document_id(client_id: &str) -> bool {
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
pub async fn authenticate_client(s: &Shared, presented: &Presented) -> ApiResult<Client> {
    let Presented {
        client_id,
        secret,
        method,
    } = presented;
    let method = *method;
    if secret.is_some() && is_metadata_document_id(client_id) {
        return Err(invalid_client(format!(
            "client '{}' is identified by a client metadata document, a public client (token_endpoint_auth_method 'none'): send client_id only, no credentials",
            truncate(client_id)
        )));
    }
    let client = s.client(client_id).await?.ok_or_else(|| {
        invalid_client(format!(
            "client_id '{}' is not registered with this server",
            truncate(client_id)
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
                sha256_hex(secret).as_bytes(),
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
async fn client_credentials(
    s: &Shared,
    client: &Client,
    req: &TokenRequest,
) -> ApiResult<TokenResponse> {
    let requested = parse_scope(req.scope.as_deref())?;
    // A client acting for itself acts in no member's organization: the implicit one's policy.
    let org = s.store.policy(DEFAULT_ORGANIZATION).await?;
    let cx = Context {
        cfg: &s.cfg,
        client,
        subject: None,
        org: crate::flows::org_of(&org),
        now: now(),
    };
    let ask = Ask::ClientCredentials {
        requested_scopes: &requested,
        requested_resources: &req.resources,
    };
    let grant = match decide(&cx, &ask) {
        Decision::Issue { grant, .. } => grant,
        Decision::Deny(d) => return Err(denied(Path::ClientCredentials, &client.client_id, d)),
        Decision::NeedsConsent { .. } | Decision::Declined(_) => {
            return Err(ApiError::internal(
                "client_credentials cannot ask for consent",
            ));
        }
    };
    let subject = Grant {
        subject: &client.client_id,
        client_id: &client.client_id,
        grant_id: None,
        organization_id: None,
    };
    let response = issue(
        s,
        &subject,
        &grant.scopes,
        &grant.audience,
        grant.limits,
        None,
        None,
        now(),
    )
    .await?;
    emit(&Event::TokensIssued {
        path: Path::ClientCredentials,
        client_id: client.client_id.clone(),
        subject: client.client_id.clone(),
        grant_id: None,
        scopes: grant.scopes,
    });
    if client.source != crate::clients::ClientSource::Config {
        // (Registered and admin-created clients have a row to touch.)
        // Used: not deleted as unused or idle (registration.*_client_ttl_seconds). The token is
        // issued already; a failed write only risks an earlier deletion, so it is logged.
        if let Err(e) = s.store.touch_client(&client.client_id, now()).await {
            tracing::warn!(client_id = %client.client_id, "recording the client's use: {e}");
        }
    }
    Ok(response)
}

async fn authorization_code(
    s: &Shared,
    client: &Client,
    req: &TokenRequest,
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
    match req.redirect_uri.as_deref() {
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
    let verifier = req
        .code_verifier
        .as_deref()
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
    // The one decision, against the member, the client and the organization's policy as they
    // are now (the policy's version is read with the member: no extra round trip).
    let member = s
        .store
        .member(&payload.organization_id, &payload.user_id)
        .await?;
    let org = s.store.policies().resolve(
        &payload.organization_id,
        &member.as_ref().map(|(_, o)| o.clone()).unwrap_or_default(),
    );
    let cx = Context {
        cfg: &s.cfg,
        client,
        subject: member.as_ref().map(|(u, _)| Subject {
            user_id: &u.user_id,
            roles: &u.roles,
        }),
        org: crate::flows::org_of(&org),
        now,
    };
    let ask = Ask::Code {
        scopes: &payload.scopes,
        resources: &payload.resources,
        requested_resources: &req.resources,
    };
    let decided: Decided = match decide(&cx, &ask) {
        Decision::Issue { grant, .. } => grant,
        Decision::Deny(d) => return Err(denied(Path::CodeRedemption, &client.client_id, d)),
        Decision::NeedsConsent { .. } | Decision::Declined(_) => {
            return Err(ApiError::internal(
                "a code redemption cannot ask for consent",
            ));
        }
    };

    let family = FamilyRow {
        family_id: random_token(16),
        organization_id: payload.organization_id.clone(),
        user_id: payload.user_id.clone(),
        client_id: client.client_id.clone(),
        scope: decided.scopes.join(" "),
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
            now + s
                .cfg
                .refresh_token_ttl_seconds
                .min(decided.limits.grant_max_lifetime_seconds),
            now,
        )
        .await?;
    if let CodeRedemption::Replayed = outcome {
        emit(&Event::CodeReplayed {
            client_id: client.client_id.clone(),
        });
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
    let response = issue(
        s,
        &Grant::of(&family),
        &decided.scopes,
        &decided.audience,
        decided.limits,
        refresh,
        Some(id),
        now,
    )
    .await?;
    emit(&Event::TokensIssued {
        path: Path::CodeRedemption,
        client_id: client.client_id.clone(),
        subject: family.user_id,
        grant_id: Some(family.family_id),
        scopes: decided.scopes,
    });
    Ok(response)
}

async fn refresh(s: &Shared, client: &Client, req: &TokenRequest) -> ApiResult<TokenResponse> {
    let presented = required(&req.refresh_token, "refresh_token")?;
    let requested_scopes = match req.scope.as_deref() {
        Some(sc) => Some(parse_scope(Some(sc))?),
        None => None,
    };
    let now = now();
    let next = format!("{REFRESH_PREFIX}{}", random_token(32));
    // Judged inside the one transaction that reads and rotates the token (one round trip).
    let decide = {
        let client = client.clone();
        let requested_resources = req.resources.clone();
        let cfg = s.cfg.clone();
        let store = s.store.clone();
        move |row: &crate::store::RefreshRow| {
            // The organization's policy at the version read with the row.
            let org = store
                .policies()
                .resolve(&row.family.organization_id, &row.org);
            let org = crate::flows::org_of(&org);
            let scopes: Vec<String> = parse_scope(Some(&row.family.scope)).unwrap_or_default();
            let token = refresh::Presented {
                client_id: &row.family.client_id,
                user_id: &row.family.user_id,
                user_roles: row.user_roles.as_deref(),
                scopes: &scopes,
                resources: &row.family.resources,
                revoked: row.family.revoked_at.is_some(),
                expires_at: row.expires_at,
                rotated_at: row.rotated_at,
                grant_created_at: row.family_created_at,
            };
            let ask = refresh::Request {
                client: &client,
                scopes: requested_scopes.as_deref(),
                resources: &requested_resources,
            };
            match refresh::judge(&cfg, org, &token, &ask, now) {
                Verdict::Rotate { grant, in_grace } => RefreshDecision::Rotate {
                    max_family_age: grant.limits.grant_max_lifetime_seconds,
                    plan: grant,
                    allow_rotated: in_grace,
                },
                Verdict::Refuse(d) => RefreshDecision::Refuse(d),
                Verdict::RevokeAndRefuse(d) => RefreshDecision::RevokeAndRefuse(d),
            }
        }
    };
    let outcome = s
        .store
        .refresh_grant(
            &sha256_hex(presented),
            &sha256_hex(&next),
            now + s.cfg.refresh_token_ttl_seconds,
            now,
            decide,
        )
        .await?;
    let (row, grant) = match outcome {
        RefreshGrant::Rotated { row, plan } => (row, plan),
        RefreshGrant::Unknown => {
            return Err(ApiError::invalid_grant(
                "refresh_token is invalid, expired or revoked; authorize again",
            ));
        }
        RefreshGrant::Refused { error, revoked } => {
            if revoked {
                emit(&Event::RefreshReuseDetected {
                    client_id: client.client_id.clone(),
                    grant_id: None,
                });
                return Err(error.into());
            }
            return Err(denied(Path::Refresh, &client.client_id, error));
        }
        RefreshGrant::LostRace => {
            // Another request rotated this token between our read and our write: that is reuse
            // (unless the grant was revoked meanwhile, which revoking again leaves as it is).
            let hash = sha256_hex(presented);
            if let Some(row) = s.store.refresh_token(&hash).await? {
                s.store
                    .revoke_family(&row.family.family_id, "refresh_reuse", now)
                    .await?;
                emit(&Event::RefreshReuseDetected {
                    client_id: client.client_id.clone(),
                    grant_id: Some(row.family.family_id),
                });
            }
            return Err(refresh::reused().into());
        }
    };
    let response = issue(
        s,
        &Grant::of(&row.family),
        &grant.scopes,
        &grant.audience,
        grant.limits,
        Some(next),
        None,
        now,
    )
    .await?;
    emit(&Event::RefreshRotated {
        client_id: client.client_id.clone(),
        grant_id: row.family.family_id.clone(),
    });
    Ok(response)
}

/// The authorization code, if it opens (issued by this server, unaltered) and was issued to
/// `client_id`. For a metadata-document client this runs before the client is resolved, so a
/// forged code, or another client's, never makes the server fetch the document.
fn open_code(s: &Shared, client_id: &str, req: &TokenRequest) -> ApiResult<CodePayload> {
    let code = required(&req.code, "code")?;
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
async fn refresh_token_is_of_presented_client(s: &Shared, req: &TokenRequest) -> ApiResult<()> {
    let client_id = &req.client.client_id;
    if !is_metadata_document_id(client_id) {
        return Ok(());
    }
    let presented = required(&req.refresh_token, "refresh_token")?;
    match s.store.refresh_token(&sha256_hex(presented)).await? {
        None => Err(ApiError::invalid_grant(
            "refresh_token is invalid, expired or revoked; authorize again",
        )),
        Some(row) if row.family.client_id != *client_id => Err(ApiError::invalid_grant(format!(
            "refresh_token was issued to another client, not to '{}'",
            truncate(client_id)
        ))),
        Some(_) => Ok(()),
    }
}

/// Who a token is for: a user's grant, or a client acting for itself.
struct Grant<'a> {
    subject: &'a str,
    client_id: &'a str,
    /// The token family (user grants only): revoking it reaches the token through `gid`.
    grant_id: Option<&'a str>,
    /// The member's organization (`org_id` claim), unless it is the implicit one.
    organization_id: Option<&'a str>,
}

impl<'a> Grant<'a> {
    fn of(f: &'a FamilyRow) -> Grant<'a> {
        Grant {
            subject: &f.user_id,
            client_id: &f.client_id,
            grant_id: Some(&f.family_id),
            organization_id: Some(f.organization_id.as_str())
                .filter(|o| *o != DEFAULT_ORGANIZATION),
        }
    }
}

/// For an ID token: the nonce of the authorization request and when the user authenticated.
struct IdTokenInput<'a> {
    nonce: Option<&'a str>,
    auth_time: i64,
}

/// Sign an RFC 9068 access token (and an ID token when `openid` was granted).
#[allow(clippy::too_many_arguments)]
async fn issue(
    s: &Shared,
    grant: &Grant<'_>,
    scopes: &[String],
    audience: &[String],
    limits: Limits,
    refresh_token: Option<String>,
    id: Option<IdTokenInput<'_>>,
    now: i64,
) -> ApiResult<TokenResponse> {
    let ttl = limits.access_token_ttl_seconds;
    // A token carries only the scopes that mean something to its audience (RFC 8707 §2.2):
    // a token for the files server does not also say "notes:write". OpenID scopes stay: they
    // are for this server's userinfo endpoint.
    let kept: Vec<String> = scopes
        .iter()
        .filter(|sc| {
            crate::domain::is_oidc_scope(sc)
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
    if let (Some(org), Value::Object(m)) = (grant.organization_id, &mut claims) {
        m.insert("org_id".into(), json!(org));
    }
    let keys = s.keys.current().await;
    let access_token = keys.current.sign_jwt("at+jwt", &claims)?;
    let id_token = match id {
        Some(input) if kept.iter().any(|sc| sc == "openid") => Some(
            crate::flows::oidc::id_token(
                s,
                grant.subject,
                grant.organization_id,
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
