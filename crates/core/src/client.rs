//! The browser API calls, with the session kept in memory.

use core::cell::RefCell;
use core::future::Future;

use consentry_protocol::{AuthorizeParams, ErrorCode, percent_encode};

use crate::error::{SdkError, SdkErrorCode};
use crate::http::{
    HttpRequest, HttpResponse, JsonObject, Method, Platform, WireObject, WireValue, error_body,
};
use crate::org::{Policy, policy_etag, policy_to_json};
use crate::params::authorize_params_wire;
use crate::tat::check_usable;

/// A browser session from `attest` (or a one-round-trip `authorize_start`).
#[derive(Clone, Debug, PartialEq)]
pub struct Session {
    /// The bearer token for the browser API.
    pub token: String,
    /// Unix seconds, when the server said.
    pub expires_at: Option<f64>,
}

/// Sign in and start in one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TatLogin {
    /// The Trusted Auth Token (a JWT for the signed-in user).
    pub trusted_auth_token: String,
    /// The `[[token_profiles]] id` that verifies it.
    pub profile_id: String,
    /// How long the session may last, in minutes (the server caps it).
    pub session_duration_minutes: Option<u32>,
}

/// The browser API client. Responses are handed back as the platform's JSON (the JS layer only
/// renames their members); the client reads from them only what it must check or keep.
pub struct Client<P: Platform> {
    platform: P,
    base_url: String,
    session: RefCell<Option<Session>>,
}

impl<P: Platform> Client<P> {
    /// `base_url`: the Consentry server, e.g. `https://auth.example.com` (a trailing `/` is fine).
    pub fn new(platform: P, base_url: &str) -> Self {
        Client {
            platform,
            base_url: base_url.trim_end_matches('/').to_owned(),
            session: RefCell::new(None),
        }
    }

    /// The transport this client sends through.
    pub fn platform(&self) -> &P {
        &self.platform
    }

    /// The current session, if signed in.
    pub fn session(&self) -> Option<Session> {
        self.session.borrow().clone()
    }

    /// Restore a session kept elsewhere (e.g. sessionStorage, when the page opted in).
    pub fn set_session(&self, session: Option<Session>) {
        *self.session.borrow_mut() = session;
    }

    /// `POST /v1/sessions/attest`: trade a Trusted Auth Token for a session (kept in memory).
    pub async fn attest(&self, login: &TatLogin) -> Result<P::Json, SdkError> {
        check_usable(&self.platform, &login.trusted_auth_token)?;
        let mut body = WireObject::default();
        body.push("token", WireValue::Str(login.trusted_auth_token.clone()));
        body.push("profile_id", WireValue::Str(login.profile_id.clone()));
        if let Some(m) = login.session_duration_minutes {
            body.push("session_duration_minutes", WireValue::U32(m));
        }
        let (status, json) = self
            .call(Method::Post, "/v1/sessions/attest", None, Some(body))
            .await?;
        self.keep_session(status, &json, "expires_at")?;
        Ok(json)
    }

    /// `POST /v1/oauth/authorize/start`, with the session, or with `login` in the same request
    /// (the session the server returns is then kept).
    pub async fn authorize_start(
        &self,
        params: &AuthorizeParams,
        login: Option<&TatLogin>,
    ) -> Result<P::Json, SdkError> {
        let mut body = WireObject::default();
        authorize_params_wire(params, &mut body);
        let bearer = match login {
            Some(login) => {
                check_usable(&self.platform, &login.trusted_auth_token)?;
                body.push(
                    "trusted_auth_token",
                    WireValue::Str(login.trusted_auth_token.clone()),
                );
                body.push("profile_id", WireValue::Str(login.profile_id.clone()));
                if let Some(m) = login.session_duration_minutes {
                    body.push("session_duration_minutes", WireValue::U32(m));
                }
                None
            }
            None => Some(self.bearer()?),
        };
        let with_login = bearer.is_none();
        let (status, json) = self
            .call(
                Method::Post,
                "/v1/oauth/authorize/start",
                bearer,
                Some(body),
            )
            .await?;
        if json.str_member("redirect_host").is_none() {
            return Err(SdkError::invalid_response(status, "no redirect_host"));
        }
        if with_login {
            self.keep_session(status, &json, "session_expires_at")?;
        }
        Ok(json)
    }

    /// `POST /v1/oauth/authorize/submit`: returns the location to navigate to; never navigates.
    pub async fn authorize_submit(
        &self,
        params: &AuthorizeParams,
        consent_granted: bool,
    ) -> Result<String, SdkError> {
        let bearer = self.bearer()?;
        let mut body = WireObject::default();
        authorize_params_wire(params, &mut body);
        body.push("consent_granted", WireValue::Bool(consent_granted));
        let (status, json) = self
            .call(
                Method::Post,
                "/v1/oauth/authorize/submit",
                Some(bearer),
                Some(body),
            )
            .await?;
        json.str_member("redirect_uri")
            .ok_or_else(|| SdkError::invalid_response(status, "no redirect_uri"))
    }

    /// `GET /v1/connected_apps`: the apps the signed-in user granted access to.
    pub async fn connected_apps(&self) -> Result<P::Json, SdkError> {
        let bearer = self.bearer()?;
        let (status, json) = self
            .call(Method::Get, "/v1/connected_apps", Some(bearer), None)
            .await?;
        if !json.is_array() {
            return Err(SdkError::invalid_response(status, "expected an array"));
        }
        Ok(json)
    }

    /// `POST /v1/connected_apps/{client_id}/revoke`: removes the consent and its tokens.
    pub async fn revoke_connected_app(&self, client_id: &str) -> Result<(), SdkError> {
        let bearer = self.bearer()?;
        let mut path = String::from("/v1/connected_apps/");
        percent_encode(client_id, &mut path);
        path.push_str("/revoke");
        self.call(Method::Post, &path, Some(bearer), None).await?;
        Ok(())
    }

    /// `GET /v1/organization`: the signed-in member's organization and whether they administer it.
    pub async fn organization(&self) -> Result<P::Json, SdkError> {
        self.get_object("/v1/organization", "organization_id").await
    }

    /// `GET /v1/organization/connected_apps` (admins): every app the members connected, and who.
    pub async fn organization_connected_apps(&self) -> Result<P::Json, SdkError> {
        self.get_object("/v1/organization/connected_apps", "organization_id")
            .await
    }

    /// `POST /v1/organization/connected_apps/{client_id}/revoke` (admins): revokes the app for
    /// every member; answers `{ revoked, client_id, revoked_grants }`.
    pub async fn revoke_organization_app(&self, client_id: &str) -> Result<P::Json, SdkError> {
        let bearer = self.bearer()?;
        let mut path = String::from("/v1/organization/connected_apps/");
        percent_encode(client_id, &mut path);
        path.push_str("/revoke");
        let (_, json) = self.call(Method::Post, &path, Some(bearer), None).await?;
        Ok(json)
    }

    /// `GET /v1/organization/policy` (admins): the policy, its version and the scopes served.
    pub async fn organization_policy(&self) -> Result<P::Json, SdkError> {
        self.get_object("/v1/organization/policy", "version").await
    }

    /// `PUT /v1/organization/policy` with `If-Match: "<version>"` (admins). A policy changed since
    /// `version` was read is refused with `precondition_failed` (HTTP 412), never overwritten.
    pub async fn put_organization_policy(
        &self,
        policy: &Policy,
        version: i64,
    ) -> Result<P::Json, SdkError> {
        self.put_organization_policy_json(policy_to_json(policy), version)
            .await
    }

    /// [`Client::put_organization_policy`] with the document already as JSON text (the page's
    /// own object, stringified by the browser).
    pub async fn put_organization_policy_json(
        &self,
        policy: String,
        version: i64,
    ) -> Result<P::Json, SdkError> {
        let bearer = self.bearer()?;
        let (status, json) = self
            .send(HttpRequest {
                method: Method::Put,
                url: self.url("/v1/organization/policy"),
                bearer: Some(bearer),
                body: None,
                json: Some(policy),
                if_match: Some(policy_etag(version)),
            })
            .await?;
        if json.num_member("version").is_none() {
            return Err(SdkError::invalid_response(status, "no version"));
        }
        Ok(json)
    }

    /// A bearer `GET` whose answer must be an object with `required`.
    async fn get_object(&self, path: &str, required: &str) -> Result<P::Json, SdkError> {
        let bearer = self.bearer()?;
        let (status, json) = self.call(Method::Get, path, Some(bearer), None).await?;
        if json.member(required).is_none() {
            let mut what = String::from("no ");
            what.push_str(required);
            return Err(SdkError::invalid_response(status, &what));
        }
        Ok(json)
    }

    /// The session token, refusing locally when there is none or it has expired.
    fn bearer(&self) -> Result<String, SdkError> {
        let session = self.session.borrow();
        let Some(session) = session.as_ref() else {
            return Err(SdkError::local(
                SdkErrorCode::SessionMissing,
                "no session: call session.attest() (or authorizeStart with a trustedAuthToken) first",
            ));
        };
        if session
            .expires_at
            .is_some_and(|at| at <= self.platform.now_unix_seconds())
        {
            return Err(SdkError::local(
                SdkErrorCode::Server(ErrorCode::SessionExpired),
                "the session has expired: attest again with a fresh trusted auth token",
            ));
        }
        Ok(session.token.clone())
    }

    fn keep_session(&self, status: u16, json: &P::Json, expiry: &str) -> Result<(), SdkError> {
        let token = json
            .str_member("session_token")
            .ok_or_else(|| SdkError::invalid_response(status, "no session_token"))?;
        self.set_session(Some(Session {
            token,
            expires_at: json.num_member(expiry),
        }));
        Ok(())
    }

    /// Send, and turn every outcome but a 2xx JSON answer into an [`SdkError`]. Not `async`
    /// itself: the one state machine is [`Client::send`]'s (a second would cost bytes in the
    /// browser bundle).
    fn call(
        &self,
        method: Method,
        path: &str,
        bearer: Option<String>,
        body: Option<WireObject>,
    ) -> impl Future<Output = Result<(u16, P::Json), SdkError>> + '_ {
        self.send(HttpRequest {
            method,
            url: self.url(path),
            bearer,
            body,
            json: None,
            if_match: None,
        })
    }

    fn url(&self, path: &str) -> String {
        let mut url = self.base_url.clone();
        url.push_str(path);
        url
    }

    async fn send(&self, request: HttpRequest) -> Result<(u16, P::Json), SdkError> {
        let response = self
            .platform
            .send(request)
            .await
            .map_err(|e| SdkError::network(&e.detail))?;
        check_response(response)
    }
}

/// A 2xx with a JSON body is the answer; anything else becomes the error it stands for.
pub(crate) fn check_response<J: JsonObject>(
    response: HttpResponse<J>,
) -> Result<(u16, J), SdkError> {
    let HttpResponse { status, body } = response;
    if (200..300).contains(&status) {
        return match body {
            Some(json) if json.is_object() || json.is_array() => Ok((status, json)),
            _ => Err(SdkError::invalid_response(status, "the body is not JSON")),
        };
    }
    Err(SdkError::from_http(
        status,
        body.as_ref().and_then(error_body),
    ))
}
