//! The browser API the consent page calls: attest a Trusted Auth Token into a session, start an
//! authorization (what to show), submit the user's decision (where to go).

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use consentry_protocol::ErrorCode;
use consentry_protocol::wire::{
    AttestRequest, AttestResponse, AuthorizeStartRequest, AuthorizeStartResponse,
    AuthorizeSubmitRequest, AuthorizeSubmitResponse,
};

use crate::error::{ApiError, ApiResult};
use crate::flows::attest::{attest_tat, session_user, wire_user};
use crate::flows::authorize::{self, Signin};
use crate::http::extract::{AuthorizeBody, JsonBody, Session, bearer, session_from_token};
use crate::state::Shared;

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
        user: wire_user(session_user(&claims), claims.on.clone()),
    }))
}

/// `POST /v1/oauth/authorize/start`: bearer session, or a Trusted Auth Token in the body.
pub async fn start(
    State(s): State<Shared>,
    headers: HeaderMap,
    AuthorizeBody(body): AuthorizeBody<AuthorizeStartRequest>,
) -> ApiResult<Json<AuthorizeStartResponse>> {
    let signin = match (&body.trusted_auth_token, bearer(&headers)) {
        (Some(tat), _) => Signin::Attest {
            tat,
            profile_id: body.profile_id.as_deref().ok_or_else(|| {
                ApiError::invalid_request("profile_id is required with trusted_auth_token")
            })?,
            minutes: body.session_duration_minutes,
        },
        (None, Some(token)) => Signin::Session(session_from_token(&s, token)?),
        (None, None) => {
            return Err(ApiError::unauthorized(
                ErrorCode::InvalidSession,
                "send Authorization: Bearer <session_token>, or trusted_auth_token and profile_id in the body",
            ));
        }
    };
    authorize::start(&s, signin, &body.params).await.map(Json)
}

/// `POST /v1/oauth/authorize/submit`
pub async fn submit(
    State(s): State<Shared>,
    Session(session): Session,
    AuthorizeBody(body): AuthorizeBody<AuthorizeSubmitRequest>,
) -> ApiResult<Json<AuthorizeSubmitResponse>> {
    authorize::submit(&s, &session, &body.params, body.consent_granted)
        .await
        .map(Json)
}
