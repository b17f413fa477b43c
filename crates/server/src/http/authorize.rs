//! The browser API the consent page calls: attest a Trusted Auth Token into a session, start an
//! authorization (what to show), submit the user's decision (where to go).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use consentry_protocol::authorize::validate_client_id;
use consentry_protocol::wire::{
    AttestRequest, AttestResponse, AuthorizeStartRequest, AuthorizeStartResponse,
    AuthorizeSubmitRequest, AuthorizeSubmitResponse, ClientInfo, ResourceInfo, ScopeResult, User,
};
use consentry_protocol::{
    AuthorizeParams, AuthorizeRequest, ErrorCode, append_query, redirect_host,
};
use serde::{Deserialize, Serialize};

use crate::clients::{Client, quoted_list, truncate};
use crate::config::ResourceConfig;
use crate::crypto::SessionClaims;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{AuthorizeBody, JsonBody, Session, session_from_token};
use crate::state::{Shared, now};
use crate::store::{AttestOutcome, UserRow};
use crate::tat::TatError;

const DEFAULT_SESSION_MINUTES: u32 = 10;

/// What an authorization code carries, sealed (see `crypto`).
#[derive(Serialize, Deserialize)]
pub struct CodePayload {
    /// code id (single use is recorded under it)
    pub id: String,
    pub client_id: String,
    /// the redirect URI the code was issued for
    pub redirect_uri: String,
    /// whether the authorization request carried redirect_uri (then the token request must too)
    pub redirect_uri_sent: bool,
    pub challenge: String,
    pub scopes: Vec<String>,
    pub resources: Vec<String>,
    pub user_id: String,
    pub nonce: Option<String>,
    pub auth_time: i64,
    pub expires_at: i64,
}

/// `POST /v1/sessions/attest`
pub async fn attest(
    State(s): State<Shared>,
    JsonBody(req): JsonBody<AttestRequest>,
) -> ApiResult<Json<AttestResponse>> {
    let (token, claims) = attest_tat(
        &s,
        &req.token,
        &req.profile_id,
        req.session_duration_minutes,
    )
    .await?;
    Ok(Json(AttestResponse {
        session_token: token,
        expires_at: claims.e,
        user: wire_user(session_user(&claims)),
    }))
}

async fn attest_tat(
    s: &Shared,
    tat: &str,
    profile_id: &str,
    minutes: Option<u32>,
) -> ApiResult<(String, SessionClaims)> {
    let minutes = minutes.unwrap_or(DEFAULT_SESSION_MINUTES);
    let max = s.cfg.max_session_duration_minutes;
    if !(1..=max).contains(&minutes) {
        return Err(ApiError::invalid_request(format!(
            "session_duration_minutes {minutes} is out of range; expected 1..={max}"
        )));
    }
    let profile = s.cfg.profile(profile_id).ok_or_else(|| {
        ApiError::invalid_request(format!(
            "profile_id '{}' is not a configured token profile; expected one of: {}",
            truncate(profile_id),
            quoted_list(
                &s.cfg
                    .token_profiles
                    .iter()
                    .map(|p| p.id.clone())
                    .collect::<Vec<_>>()
            )
        ))
    })?;
    let now = now();
    let v = s.tat.verify(profile, tat, now).await.map_err(|e| match e {
        TatError::Invalid(m) => ApiError::unauthorized(ErrorCode::InvalidTrustedAuthToken, m),
        TatError::Unavailable(m) => ApiError::unavailable(m),
    })?;
    let row = UserRow {
        user_id: v.user_id.clone(),
        email: v.email.clone(),
        name: v.name.clone(),
        roles: v.roles.clone(),
    };
    let jti = v.jti.clone().filter(|_| profile.single_use_jti);
    let outcome = s
        .store
        .attest(
            &profile.issuer,
            jti.as_deref(),
            v.exp.saturating_add(crate::tat::LEEWAY_SECONDS),
            &row,
            &profile.id,
            profile.jit_provisioning,
            now,
        )
        .await?;
    match outcome {
        AttestOutcome::Recorded => {}
        AttestOutcome::Replayed => {
            return Err(ApiError::unauthorized(
                ErrorCode::InvalidTrustedAuthToken,
                format!(
                    "trusted auth token jti '{}' was already used; mint a fresh token for each attempt",
                    truncate(jti.as_deref().unwrap_or(""))
                ),
            ));
        }
        AttestOutcome::UnknownUser => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::AccessDenied,
                format!(
                    "user '{}' does not exist and token profile '{}' has jit_provisioning = false",
                    truncate(&v.user_id),
                    profile.id
                ),
            ));
        }
    }
    let expires_at = now + i64::from(minutes) * 60;
    let claims = SessionClaims {
        u: v.user_id,
        p: profile.id.clone(),
        e: expires_at,
        i: now,
        m: v.email,
        n: v.name,
        r: v.roles,
    };
    let token = s.sealer.session_token(&claims)?;
    Ok((token, claims))
}

fn wire_user(u: UserRow) -> User {
    User {
        user_id: u.user_id,
        email: u.email,
        name: u.name,
        roles: u.roles,
    }
}

/// One requested (resource, scope) pair, evaluated for this user and client.
struct ScopeLine {
    resource: String,
    scope: String,
    description: String,
    grantable: bool,
    already: bool,
}

/// A request whose client and redirect URI are trusted and whose parameters are valid.
struct Evaluated {
    req: AuthorizeRequest,
    client: Client,
    redirect_uri: String,
    resources: Vec<ResourceConfig>,
    lines: Vec<ScopeLine>,
    consent_required: bool,
    /// What remembered consent is bound to: the registered redirect URI that matched and the
    /// client's metadata fingerprint.
    consent_redirect_uri: String,
    fingerprint: String,
}

/// Build the location that sends an error back to the client (RFC 6749 §4.1.2.1 + RFC 9207 iss).
fn error_location(
    s: &Shared,
    redirect_uri: &str,
    state: Option<&str>,
    code: ErrorCode,
    description: &str,
) -> String {
    let description = oauth_description(description);
    let mut pairs = vec![
        ("error", code.as_str()),
        ("error_description", description.as_str()),
    ];
    if let Some(st) = state {
        pairs.push(("state", st));
    }
    pairs.push(("iss", &s.cfg.issuer));
    append_query(redirect_uri, &pairs)
}

/// RFC 6749 §4.1.2.1: error_description is printable ASCII without `"` and `\\`. Our messages
/// quote client input, so map what does not fit instead of sending it to the client.
fn oauth_description(d: &str) -> String {
    let mut out = String::with_capacity(d.len());
    for c in d.chars() {
        match c {
            '"' => out.push('\''),
            '\\' => out.push('/'),
            '…' => out.push_str("..."),
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out
}

fn redirected(s: &Shared, e: ApiError, redirect_uri: &str, state: Option<&str>) -> ApiError {
    let loc = error_location(s, redirect_uri, state, e.code, &e.description);
    e.with_redirect(loc)
}

/// The state value to echo on an error: only if it is itself well-formed.
fn echo_state(raw: &AuthorizeParams) -> Option<&str> {
    raw.state
        .as_deref()
        .filter(|st| !st.is_empty() && st.len() <= 2048 && !st.chars().any(char::is_control))
}

/// `attested_at`: when the session's Trusted Auth Token was attested (for `prompt=login`).
async fn evaluate(
    s: &Shared,
    raw: &AuthorizeParams,
    user: &UserRow,
    attested_at: i64,
) -> ApiResult<Evaluated> {
    // 1. The client and its redirect URI: failures are shown, never redirected.
    let client_id = validate_client_id(raw.client_id.as_deref())?;
    let client = s.client(&client_id).await?.ok_or_else(|| {
        ApiError::bad_request(
            ErrorCode::InvalidClient,
            format!(
                "client_id '{}' is not registered with this server",
                truncate(&client_id)
            ),
        )
    })?;
    if let Some(r) = raw.redirect_uri.as_deref() {
        consentry_protocol::authorize::validate_redirect_uri(r)?;
    }
    // A client that may not use this flow is shown the error: its redirect URI (if any) was
    // never registered for codes.
    if !client.allows_grant(consentry_protocol::GrantType::AuthorizationCode) {
        return Err(ApiError::bad_request(
            ErrorCode::UnauthorizedClient,
            format!(
                "client '{}' is not registered for the authorization_code grant",
                client.client_id
            ),
        ));
    }
    let redirect_uri = client.resolve_redirect_uri(raw.redirect_uri.as_deref())?;
    let state = echo_state(raw);
    let consent_redirect_uri = client.registered_redirect_uri(&redirect_uri);
    let fingerprint = client.consent_fingerprint();
    let granted = s
        .store
        .granted(
            &user.user_id,
            &client.client_id,
            &consent_redirect_uri,
            &fingerprint,
        )
        .await?;

    // 2. Everything else goes back to the client with the error, if someone vouched for the
    // client or this user consented to it at this redirect URI as it is registered now. Anyone
    // can register a client or host a metadata document: an error sent to an unknown client's
    // redirect URI would make this server an open redirector (RFC 9700 §4.11.2), so such an
    // error is shown on the page instead.
    let errors_to_client = client.verified || !granted.is_empty();
    let back = |e: ApiError| {
        if errors_to_client {
            redirected(s, e, &redirect_uri, state)
        } else {
            e
        }
    };
    let req = AuthorizeRequest::parse(raw).map_err(|e| back(e.into()))?;
    // `prompt=login` asks for a fresh sign-in. Consentry's sign-in is the attestation of a
    // Trusted Auth Token: the session must have been attested recently, or the client gets
    // `login_required` (the prebuilt consent screen attests and starts in one request).
    let max_age = s.cfg.prompt_login_max_age_seconds;
    if req.prompt.login && now() - attested_at > max_age {
        let e = ApiError::bad_request(
            ErrorCode::LoginRequired,
            format!(
                "prompt=login needs a session attested within the last {max_age} s (prompt_login_max_age_seconds); attest a fresh trusted auth token"
            ),
        );
        return Err(back(e));
    }
    let cfg = &s.cfg;
    let resources: Vec<ResourceConfig> = if req.resources.is_empty() {
        match cfg.resources.as_slice() {
            [only] => vec![only.clone()],
            _ => {
                let e = ApiError::bad_request(
                    ErrorCode::InvalidTarget,
                    format!(
                        "resource is required; expected one of: {}",
                        quoted_list(
                            &cfg.resources
                                .iter()
                                .map(|r| r.uri.clone())
                                .collect::<Vec<_>>()
                        )
                    ),
                );
                return Err(back(e));
            }
        }
    } else {
        let mut out = Vec::new();
        for r in &req.resources {
            match cfg.resource(r) {
                Some(rc) => out.push(rc.clone()),
                None => {
                    let e = ApiError::bad_request(
                        ErrorCode::InvalidTarget,
                        format!(
                            "resource '{}' is not served by this authorization server; expected one of: {}",
                            truncate(r),
                            quoted_list(
                                &cfg.resources
                                    .iter()
                                    .map(|r| r.uri.clone())
                                    .collect::<Vec<_>>()
                            )
                        ),
                    );
                    return Err(back(e));
                }
            }
        }
        out
    };

    let mut scopes: Vec<String> = req
        .scopes
        .iter()
        // Refresh tokens are always issued; offline_access adds nothing to show.
        .filter(|sc| sc.as_str() != "offline_access")
        .cloned()
        .collect();
    if scopes.is_empty() {
        for r in &resources {
            for d in &r.default_scopes {
                if !scopes.contains(d) {
                    scopes.push(d.clone());
                }
            }
        }
        if scopes.is_empty() {
            let e = ApiError::bad_request(
                ErrorCode::InvalidScope,
                "scope is empty and the requested resource has no default_scopes; request a scope explicitly",
            );
            return Err(back(e));
        }
    }

    // A registered `scope` (DCR) is NOT a ceiling here: the user consents to each scope on this
    // screen, and MCP clients register with their first request's scope only, then step up
    // (403 insufficient_scope -> a new authorization request for more). The official MCP SDKs
    // dropped the same check from their own servers for this reason. Scopes must still exist on
    // the requested resources (above), and `client_credentials` — no user — keeps the ceiling.

    let mut lines = Vec::new();
    for sc in &scopes {
        // OpenID scopes are about this server's own userinfo: granted on the issuer.
        if let Some(description) = crate::http::oidc::oidc_description(sc) {
            lines.push(ScopeLine {
                resource: cfg.issuer.clone(),
                scope: sc.clone(),
                description: description.to_owned(),
                grantable: true,
                already: granted.iter().any(|(gr, gs)| *gr == cfg.issuer && gs == sc),
            });
            continue;
        }
        let on: Vec<&ResourceConfig> = resources.iter().filter(|r| r.scopes.contains(sc)).collect();
        if on.is_empty() {
            let available: Vec<String> = resources.iter().flat_map(|r| r.scopes.clone()).collect();
            let e = ApiError::bad_request(
                ErrorCode::InvalidScope,
                format!(
                    "scope '{}' is not available on {}; expected some of: {}",
                    truncate(sc),
                    quoted_list(&resources.iter().map(|r| r.uri.clone()).collect::<Vec<_>>()),
                    quoted_list(&available)
                ),
            );
            return Err(back(e));
        }
        let def = cfg.scopes.get(sc);
        let grantable = def.is_none_or(|d| {
            d.required_roles.is_empty() || d.required_roles.iter().any(|r| user.roles.contains(r))
        });
        for r in on {
            lines.push(ScopeLine {
                resource: r.uri.clone(),
                scope: sc.clone(),
                description: def.map(|d| d.description.clone()).unwrap_or_default(),
                grantable,
                already: granted.iter().any(|(gr, gs)| *gr == r.uri && gs == sc),
            });
        }
    }
    // A local program can pose as a native public client: its consent is never silent.
    let always_ask =
        client.is_native_public(&redirect_uri) && !cfg.remember_consent_for_native_clients;
    let consent_required = req.prompt.consent
        || always_ask
        || lines.iter().any(|l| l.grantable && !l.already)
        || !lines.iter().any(|l| l.grantable);
    if req.prompt.none && consent_required {
        let e = ApiError::bad_request(
            ErrorCode::ConsentRequired,
            if always_ask && !lines.iter().any(|l| l.grantable && !l.already) {
                "prompt=none was requested but the user confirms every authorization of a public client with a loopback or private-use redirect URI (any local program can use its client_id; remember_consent_for_native_clients)"
            } else {
                "prompt=none was requested but the user has not granted every requested scope"
            },
        );
        return Err(back(e));
    }
    Ok(Evaluated {
        req,
        client,
        redirect_uri,
        resources,
        lines,
        consent_required,
        consent_redirect_uri,
        fingerprint,
    })
}

/// The user as attested: the session carries the attributes, signed.
fn session_user(session: &SessionClaims) -> UserRow {
    UserRow {
        user_id: session.u.clone(),
        email: session.m.clone(),
        name: session.n.clone(),
        roles: session.r.clone(),
    }
}

/// `POST /v1/oauth/authorize/start`: bearer session, or a Trusted Auth Token in the body.
pub async fn start(
    State(s): State<Shared>,
    headers: axum::http::HeaderMap,
    AuthorizeBody(body): AuthorizeBody<AuthorizeStartRequest>,
) -> ApiResult<Json<AuthorizeStartResponse>> {
    let (session, new_session) = match (
        &body.trusted_auth_token,
        crate::http::extract::bearer(&headers),
    ) {
        (Some(tat), _) => {
            let profile_id = body.profile_id.as_deref().ok_or_else(|| {
                ApiError::invalid_request("profile_id is required with trusted_auth_token")
            })?;
            let (token, claims) =
                attest_tat(&s, tat, profile_id, body.session_duration_minutes).await?;
            let exp = claims.e;
            (claims, Some((token, exp)))
        }
        (None, Some(bearer)) => (session_from_token(&s, bearer)?, None),
        (None, None) => {
            return Err(ApiError::unauthorized(
                ErrorCode::InvalidSession,
                "send Authorization: Bearer <session_token>, or trusted_auth_token and profile_id in the body",
            ));
        }
    };
    let user = session_user(&session);
    let ev = evaluate(&s, &body.params, &user, session.i).await?;
    let (session_token, session_expires_at) = match new_session {
        Some((t, e)) => (Some(t), Some(e)),
        None => (None, None),
    };
    Ok(Json(AuthorizeStartResponse {
        user: wire_user(user),
        client: ClientInfo {
            client_id: ev.client.client_id.clone(),
            client_name: ev.client.client_name.clone(),
            client_uri: ev.client.client_uri.clone(),
            logo_uri: ev.client.logo_uri.clone(),
            verified: ev.client.verified,
        },
        redirect_host: redirect_host(&ev.redirect_uri).unwrap_or_default(),
        consent_required: ev.consent_required,
        scope_results: ev
            .lines
            .iter()
            .map(|l| ScopeResult {
                scope: l.scope.clone(),
                description: l.description.clone(),
                resource: l.resource.clone(),
                is_grantable: l.grantable,
                already_granted: l.already,
            })
            .collect(),
        resources: ev
            .resources
            .iter()
            .map(|r| ResourceInfo {
                uri: r.uri.clone(),
                name: r.name.clone(),
            })
            .collect(),
        session_token,
        session_expires_at,
    }))
}

/// `POST /v1/oauth/authorize/submit`
pub async fn submit(
    State(s): State<Shared>,
    Session(session): Session,
    AuthorizeBody(body): AuthorizeBody<AuthorizeSubmitRequest>,
) -> ApiResult<Json<AuthorizeSubmitResponse>> {
    let user = session_user(&session);
    let ev = evaluate(&s, &body.params, &user, session.i).await?;
    let state = ev.req.state.as_deref();
    if !body.consent_granted {
        let loc = error_location(
            &s,
            &ev.redirect_uri,
            state,
            ErrorCode::AccessDenied,
            "the user denied the request",
        );
        return Ok(Json(AuthorizeSubmitResponse { redirect_uri: loc }));
    }
    let grant: Vec<(String, String)> = ev
        .lines
        .iter()
        .filter(|l| l.grantable)
        .map(|l| (l.resource.clone(), l.scope.clone()))
        .collect();
    if grant.is_empty() {
        let loc = error_location(
            &s,
            &ev.redirect_uri,
            state,
            ErrorCode::AccessDenied,
            "the user may not grant any of the requested scopes",
        );
        return Ok(Json(AuthorizeSubmitResponse { redirect_uri: loc }));
    }
    let now = now();
    let new: Vec<(String, String)> = ev
        .lines
        .iter()
        .filter(|l| l.grantable && !l.already)
        .map(|l| (l.resource.clone(), l.scope.clone()))
        .collect();
    s.store
        .grant(
            &user.user_id,
            &ev.client.client_id,
            &ev.consent_redirect_uri,
            &ev.fingerprint,
            &new,
            now,
        )
        .await?;

    let mut scopes: Vec<String> = Vec::new();
    for (_, sc) in &grant {
        if !scopes.contains(sc) {
            scopes.push(sc.clone());
        }
    }
    let payload = CodePayload {
        id: crate::crypto::random_token(16),
        client_id: ev.client.client_id.clone(),
        redirect_uri: ev.redirect_uri.clone(),
        redirect_uri_sent: ev.req.redirect_uri.is_some(),
        challenge: ev.req.code_challenge.as_str().to_owned(),
        scopes,
        resources: ev.resources.iter().map(|r| r.uri.clone()).collect(),
        user_id: user.user_id.clone(),
        nonce: ev.req.nonce.clone(),
        auth_time: session.i,
        expires_at: now + s.cfg.authorization_code_ttl_seconds,
    };
    let code = s.sealer.seal(&payload)?;
    let mut pairs = vec![("code", code.as_str())];
    if let Some(st) = state {
        pairs.push(("state", st));
    }
    pairs.push(("iss", &s.cfg.issuer));
    Ok(Json(AuthorizeSubmitResponse {
        redirect_uri: append_query(&ev.redirect_uri, &pairs),
    }))
}
