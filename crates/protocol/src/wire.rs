//! JSON bodies of Consentry's browser API (`/v1`) and of the OAuth endpoints. snake_case on the
//! wire; the JS layer converts to camelCase. Times are Unix seconds.

use serde::{Deserialize, Serialize};

use crate::authorize::AuthorizeParams;

/// `POST /v1/sessions/attest`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestRequest {
    /// The Trusted Auth Token (a JWT from the product's identity provider or minted by it).
    pub token: String,
    pub profile_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_duration_minutes: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestResponse {
    pub session_token: String,
    pub expires_at: i64,
    pub user: User,
}

/// The end user as asserted by the Trusted Auth Token.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub user_id: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
}

/// `POST /v1/oauth/authorize/start`: the authorization parameters, authenticated either by a
/// bearer session or by a Trusted Auth Token in the body (attest and start in one round trip).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizeStartRequest {
    #[serde(flatten)]
    pub params: AuthorizeParams,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_auth_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_duration_minutes: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientInfo {
    pub client_id: String,
    pub client_name: String,
    #[serde(default)]
    pub client_uri: Option<String>,
    #[serde(default)]
    pub logo_uri: Option<String>,
    /// False for clients whose identity nobody vouched for (e.g. an unknown CIMD domain): the
    /// consent screen warns.
    pub verified: bool,
}

/// One requested scope on one requested resource.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeResult {
    pub scope: String,
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
pub struct ResourceInfo {
    pub uri: String,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizeStartResponse {
    pub user: User,
    pub client: ClientInfo,
    /// Where the browser will be sent: always shown to the user (anti-phishing).
    pub redirect_host: String,
    pub consent_required: bool,
    pub scope_results: Vec<ScopeResult>,
    pub resources: Vec<ResourceInfo>,
    /// Present when the request carried a Trusted Auth Token (the one-round-trip form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_expires_at: Option<i64>,
}

/// `POST /v1/oauth/authorize/submit`
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizeSubmitRequest {
    #[serde(flatten)]
    pub params: AuthorizeParams,
    pub consent_granted: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizeSubmitResponse {
    /// The full location to navigate to (carries `code`/`state`/`iss`, or `error`/`state`/`iss`).
    pub redirect_uri: String,
}

/// `POST /oauth2/token` success body (RFC 6749 §5.1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

/// `GET /v1/connected_apps` item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectedApp {
    pub client_id: String,
    pub client_name: String,
    #[serde(default)]
    pub logo_uri: Option<String>,
    pub scopes: Vec<String>,
    pub resources: Vec<String>,
    pub granted_at: i64,
    #[serde(default)]
    pub last_used_at: Option<i64>,
}
