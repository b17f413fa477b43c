//! JSON bodies of Consentry's browser API (`/v1`) and of the OAuth endpoints. snake_case on the
//! wire; the JS layer converts to camelCase. Times are Unix seconds.

use serde::{Deserialize, Serialize};

use crate::authorize::AuthorizeParams;

/// `POST /v1/sessions/attest`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestRequest {
    /// The Trusted Auth Token (a JWT from the product's identity provider or minted by it).
    pub token: String,
    /// The `[[token_profiles]] id` that verifies the token.
    pub profile_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Requested session length in minutes (capped by the server).
    pub session_duration_minutes: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
/// `POST /v1/sessions/attest` answer.
pub struct AttestResponse {
    /// The browser session's bearer token.
    pub session_token: String,
    /// When the session ends (Unix seconds).
    pub expires_at: i64,
    /// Who signed in.
    pub user: User,
}

/// The end user as asserted by the Trusted Auth Token.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The product's id for the user.
    pub user_id: String,
    #[serde(default)]
    /// Email, when the TAT carried one.
    pub email: Option<String>,
    #[serde(default)]
    /// Display name, when the TAT carried one.
    pub name: Option<String>,
    #[serde(default)]
    /// Roles, when the TAT carried them (scope policies use them).
    pub roles: Vec<String>,
}

/// `POST /v1/oauth/authorize/start`: the authorization parameters, authenticated either by a
/// bearer session or by a Trusted Auth Token in the body (attest and start in one round trip).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizeStartRequest {
    #[serde(flatten)]
    /// The authorization request, as the page read it.
    pub params: AuthorizeParams,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// A Trusted Auth Token: attest and start in one request.
    pub trusted_auth_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Its token profile.
    pub profile_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Session length in minutes, with `trusted_auth_token`.
    pub session_duration_minutes: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
/// The client as the consent screen shows it.
pub struct ClientInfo {
    /// The OAuth `client_id`.
    pub client_id: String,
    /// Its display name.
    pub client_name: String,
    #[serde(default)]
    /// Its home page.
    pub client_uri: Option<String>,
    #[serde(default)]
    /// Its logo.
    pub logo_uri: Option<String>,
    /// False for clients whose identity nobody vouched for (e.g. an unknown CIMD domain): the
    /// consent screen warns.
    pub verified: bool,
}

/// One requested scope on one requested resource.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeResult {
    /// The scope token.
    pub scope: String,
    /// What it allows, in words (from the config).
    pub description: String,
    /// The resource (RFC 8707) this scope applies to.
    pub resource: String,
    /// False when the user may not grant it (the scope requires a role the user lacks); such
    /// scopes are left out of the grant.
    pub is_grantable: bool,
    /// True when the user granted it to this client before.
    pub already_granted: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
/// A requested resource.
pub struct ResourceInfo {
    /// Its URI (the token's `aud`).
    pub uri: String,
    /// Its display name.
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
/// `POST /v1/oauth/authorize/start` answer: what the consent screen shows.
pub struct AuthorizeStartResponse {
    /// Who is signed in.
    pub user: User,
    /// Who asks.
    pub client: ClientInfo,
    /// Where the browser will be sent: always shown to the user (anti-phishing).
    pub redirect_host: String,
    /// Whether the user must be asked (false: submit at once).
    pub consent_required: bool,
    /// Every requested scope, grantable or not.
    pub scope_results: Vec<ScopeResult>,
    /// The requested resources.
    pub resources: Vec<ResourceInfo>,
    /// Present when the request carried a Trusted Auth Token (the one-round-trip form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// When the session ends (Unix seconds), with `session_token`.
    pub session_expires_at: Option<i64>,
}

/// `POST /v1/oauth/authorize/submit`
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizeSubmitRequest {
    #[serde(flatten)]
    /// The authorization request being answered.
    pub params: AuthorizeParams,
    /// The user's answer.
    pub consent_granted: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
/// `POST /v1/oauth/authorize/submit` answer.
pub struct AuthorizeSubmitResponse {
    /// The full location to navigate to (carries `code`/`state`/`iss`, or `error`/`state`/`iss`).
    pub redirect_uri: String,
}

/// `POST /oauth2/token` success body (RFC 6749 §5.1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    /// The access token (a JWT, RFC 9068).
    pub access_token: String,
    /// `Bearer`.
    pub token_type: String,
    /// Lifetime in seconds.
    pub expires_in: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// The rotating refresh token, when granted.
    pub refresh_token: Option<String>,
    /// The granted scopes.
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// The OpenID Connect ID token, with scope `openid`.
    pub id_token: Option<String>,
}

/// `GET /v1/connected_apps` item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectedApp {
    /// The app's OAuth `client_id`.
    pub client_id: String,
    /// Its display name.
    pub client_name: String,
    #[serde(default)]
    /// Its logo.
    pub logo_uri: Option<String>,
    /// The scopes the user granted it.
    pub scopes: Vec<String>,
    /// The resources it may access.
    pub resources: Vec<String>,
    /// When the user first granted access (Unix seconds).
    pub granted_at: i64,
    #[serde(default)]
    /// When it last used its grant (Unix seconds).
    pub last_used_at: Option<i64>,
}
