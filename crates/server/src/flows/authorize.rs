//! The consent screen's two steps: `start` (what to show) and `submit` (the user's answer, and
//! the code). The client and its redirect URI are resolved first (errors shown, never
//! redirected); the rest is the one decision's ([`crate::domain::decision`]).

use consentry_protocol::authorize::validate_client_id;
use consentry_protocol::wire::{
    AuthorizeStartResponse, AuthorizeSubmitResponse, ClientInfo, ResourceInfo, ScopeResult,
};
use consentry_protocol::{
    AuthorizeParams, AuthorizeRequest, ErrorCode, append_query, redirect_host,
};
use serde::{Deserialize, Serialize};

use crate::clients::{Client, truncate};
use crate::crypto::SessionClaims;
use crate::domain::decision::{Ask, Context, Decision, Path, Subject, client_may_use, decide};
use crate::domain::events::Event;
use crate::error::{ApiError, ApiResult};
use crate::flows::attest::{attest_tat, session_user, wire_user};
use crate::flows::emit;
use crate::state::{Shared, now};
use crate::store::UserRow;

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
    /// The member's organization (codes sealed before organizations carry none: `default`).
    #[serde(default = "default_org")]
    pub organization_id: String,
    pub user_id: String,
    pub nonce: Option<String>,
    pub auth_time: i64,
    pub expires_at: i64,
}

fn default_org() -> String {
    crate::config::DEFAULT_ORGANIZATION.to_owned()
}

/// Build the location that sends an error back to the client (RFC 6749 §4.1.2.1 + RFC 9207 iss).
/// An organization's refusal reaches the client as `access_denied` ([`ErrorCode::oauth`]).
fn error_location(
    s: &Shared,
    redirect_uri: &str,
    state: Option<&str>,
    code: ErrorCode,
    description: &str,
) -> String {
    let description = oauth_description(description);
    let mut pairs = vec![
        ("error", code.oauth().as_str()),
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

/// How the user is signed in for `start`: a session already, or a Trusted Auth Token to attest
/// in the same round trip.
pub enum Signin<'a> {
    Session(SessionClaims),
    Attest {
        tat: &'a str,
        profile_id: &'a str,
        minutes: Option<u32>,
    },
}

/// The client, where its codes and errors go, and what this user already granted it there.
struct Resolved {
    client: Client,
    redirect_uri: String,
    /// What remembered consent is bound to: the registered redirect URI that matched and the
    /// client's metadata fingerprint.
    consent_redirect_uri: String,
    fingerprint: String,
    granted: Vec<(String, String)>,
    /// Errors may go back to the client: someone vouched for it, or this user consented to it
    /// at this redirect URI as it is registered now. Anyone can register a client or host a
    /// metadata document: an error sent to an unknown client's redirect URI would make this
    /// server an open redirector (RFC 9700 §4.11.2), so such an error is shown instead.
    errors_to_client: bool,
}

/// The client and its redirect URI: failures here are shown, never redirected.
async fn resolve(s: &Shared, raw: &AuthorizeParams, user: &UserRow) -> ApiResult<Resolved> {
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
    client_may_use(&client, Path::Authorize).map_err(ApiError::from)?;
    let redirect_uri = client.resolve_redirect_uri(raw.redirect_uri.as_deref())?;
    let consent_redirect_uri = client.registered_redirect_uri(&redirect_uri);
    let fingerprint = client.consent_fingerprint();
    let granted = s
        .store
        .granted(
            &user.organization_id,
            &user.user_id,
            &client.client_id,
            &consent_redirect_uri,
            &fingerprint,
        )
        .await?;
    Ok(Resolved {
        errors_to_client: client.verified || !granted.is_empty(),
        client,
        redirect_uri,
        consent_redirect_uri,
        fingerprint,
        granted,
    })
}

/// A request run through the one decision.
struct Decided {
    r: Resolved,
    req: AuthorizeRequest,
    decision: Decision,
}

async fn decide_request(
    s: &Shared,
    raw: &AuthorizeParams,
    user: &UserRow,
    attested_at: i64,
    consent: Option<bool>,
) -> ApiResult<Decided> {
    let r = resolve(s, raw, user).await?;
    let org = s.store.policy(&user.organization_id).await?;
    let state = echo_state(raw);
    let back = |e: ApiError| {
        if r.errors_to_client {
            redirected(s, e, &r.redirect_uri, state)
        } else {
            e
        }
    };
    let req = AuthorizeRequest::parse(raw).map_err(|e| back(e.into()))?;
    let cx = Context {
        cfg: &s.cfg,
        client: &r.client,
        subject: Some(Subject {
            user_id: &user.user_id,
            roles: &user.roles,
        }),
        org: crate::flows::org_of(&org),
        now: now(),
    };
    let decision = decide(
        &cx,
        &Ask::Authorize {
            req: &req,
            redirect_uri: &r.redirect_uri,
            attested_at,
            granted: &r.granted,
            consent,
        },
    );
    if let Decision::Deny(d) = &decision {
        emit(&Event::Denied {
            path: Path::Authorize,
            client_id: r.client.client_id.clone(),
            code: d.code,
        });
        return Err(back(ApiError::from(d.clone())));
    }
    Ok(Decided { r, req, decision })
}

/// `start`: what the consent screen shows, and whether the user must answer.
pub async fn start(
    s: &Shared,
    signin: Signin<'_>,
    raw: &AuthorizeParams,
) -> ApiResult<AuthorizeStartResponse> {
    let (session, new_session) = match signin {
        Signin::Attest {
            tat,
            profile_id,
            minutes,
        } => {
            let (token, claims) = attest_tat(s, tat, profile_id, minutes).await?;
            let exp = claims.e;
            (claims, Some((token, exp)))
        }
        Signin::Session(claims) => (claims, None),
    };
    let user = session_user(&session);
    let Decided { r, decision, .. } = decide_request(s, raw, &user, session.i, None).await?;
    let (screen, consent_required) = match decision {
        Decision::NeedsConsent { screen } => (screen, true),
        Decision::Issue {
            screen: Some(screen),
            ..
        } => (screen, false),
        Decision::Issue { screen: None, .. } | Decision::Deny(_) | Decision::Declined(_) => {
            return Err(ApiError::internal(
                "the authorization decision returned no screen at start",
            ));
        }
    };
    let (session_token, session_expires_at) = match new_session {
        Some((t, e)) => (Some(t), Some(e)),
        None => (None, None),
    };
    let client = r.client;
    Ok(AuthorizeStartResponse {
        user: wire_user(user, session.on.clone()),
        client: ClientInfo {
            client_id: client.client_id,
            client_name: client.client_name,
            client_uri: client.client_uri,
            logo_uri: client.logo_uri,
            verified: client.verified,
        },
        redirect_host: redirect_host(&r.redirect_uri).unwrap_or_default(),
        consent_required,
        scope_results: screen
            .lines
            .into_iter()
            .map(|l| ScopeResult {
                scope: l.scope,
                description: l.description,
                resource: l.resource,
                is_grantable: l.grantable,
                already_granted: l.already,
                not_grantable_reason: l.reason,
            })
            .collect(),
        resources: screen
            .resources
            .into_iter()
            .map(|r| ResourceInfo {
                uri: r.uri,
                name: r.name,
            })
            .collect(),
        session_token,
        session_expires_at,
    })
}

/// `submit`: the user's answer. Where the browser goes next: the client's redirect URI with a
/// code, or with `access_denied`.
pub async fn submit(
    s: &Shared,
    session: &SessionClaims,
    raw: &AuthorizeParams,
    consent_granted: bool,
) -> ApiResult<AuthorizeSubmitResponse> {
    let user = session_user(session);
    let Decided { r, req, decision } =
        decide_request(s, raw, &user, session.i, Some(consent_granted)).await?;
    let state = req.state.as_deref();
    let grant = match decision {
        Decision::Issue { grant, .. } => grant,
        Decision::Declined(d) => {
            // The user's refusal (or nothing grantable) always goes back to the client.
            emit(&Event::ConsentDenied {
                user_id: user.user_id.clone(),
                client_id: r.client.client_id.clone(),
            });
            let loc = error_location(s, &r.redirect_uri, state, d.code, &d.description);
            return Ok(AuthorizeSubmitResponse { redirect_uri: loc });
        }
        Decision::NeedsConsent { .. } | Decision::Deny(_) => {
            return Err(ApiError::internal(
                "the authorization decision asked for consent, or refused, after it was checked",
            ));
        }
    };
    let now = now();
    s.store
        .grant(
            &user.organization_id,
            &user.user_id,
            &r.client.client_id,
            &r.consent_redirect_uri,
            &r.fingerprint,
            &grant.new_consent,
            now,
        )
        .await?;
    if !grant.new_consent.is_empty() {
        emit(&Event::ConsentGranted {
            user_id: user.user_id.clone(),
            client_id: r.client.client_id.clone(),
            scopes: grant.new_consent.iter().map(|(_, sc)| sc.clone()).collect(),
        });
    }
    let payload = CodePayload {
        id: crate::crypto::random_token(16),
        client_id: r.client.client_id.clone(),
        redirect_uri: r.redirect_uri.clone(),
        redirect_uri_sent: req.redirect_uri.is_some(),
        challenge: req.code_challenge.as_str().to_owned(),
        scopes: grant.scopes,
        resources: grant.audience,
        organization_id: user.organization_id.clone(),
        user_id: user.user_id.clone(),
        nonce: req.nonce.clone(),
        auth_time: session.i,
        expires_at: now + s.cfg.authorization_code_ttl_seconds,
    };
    let code = s.sealer.seal(&payload)?;
    emit(&Event::CodeIssued {
        user_id: user.user_id,
        client_id: r.client.client_id,
    });
    let mut pairs = vec![("code", code.as_str())];
    if let Some(st) = state {
        pairs.push(("state", st));
    }
    pairs.push(("iss", &s.cfg.issuer));
    Ok(AuthorizeSubmitResponse {
        redirect_uri: append_query(&r.redirect_uri, &pairs),
    })
}
