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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// The organization the user signed in as a member of (the TAT's organization claim);
    /// absent on a server whose token profile maps none (one implicit organization).
    pub organization_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Its display name, when the TAT carried one.
    pub organization_name: Option<String>,
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
    /// False when the user may not grant it (the scope requires a role the user lacks, or the
    /// organization disallows it); such scopes are left out of the grant.
    pub is_grantable: bool,
    /// True when the user granted it to this client before.
    pub already_granted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Why it is not grantable.
    pub not_grantable_reason: Option<NotGrantable>,
}

/// Why a scope cannot be granted on the consent screen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotGrantable {
    /// It requires a role the user does not hold.
    RoleRequired,
    /// The user's organization disallows it for agents.
    ScopeNotAllowedForOrg,
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

// --- organizations ---

/// `GET /v1/organization`: the signed-in member's organization.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrganizationInfo {
    /// The organization's id (the TAT claim's value; `default` for the implicit organization of
    /// a server whose token profile maps no organization claim).
    pub organization_id: String,
    #[serde(default)]
    /// Its display name, when known.
    pub organization_name: Option<String>,
    /// Whether the member holds one of the token profile's `admin_roles` (then the
    /// organization's connected apps and policy are theirs to manage).
    pub is_admin: bool,
}

/// A scope an organization's policy can govern.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyScope {
    /// The scope token.
    pub scope: String,
    /// What it allows, in words.
    pub description: String,
    /// The server's own `required_roles` for it (the policy's override replaces them).
    #[serde(default)]
    pub required_roles: Vec<String>,
}

/// `GET`/`PUT` of an organization's policy (`/admin/v1/organizations/{id}/policy`,
/// `/v1/organization/policy`). The `ETag` header carries `version`, quoted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyState {
    /// The organization.
    pub organization_id: String,
    #[serde(default)]
    /// Its display name, when known.
    pub organization_name: Option<String>,
    /// Incremented by every change; `If-Match: "<version>"` on a `PUT`.
    pub version: i64,
    /// The policy document.
    pub policy: crate::policy::OrgPolicy,
    #[serde(default)]
    /// Scopes served here, for editors.
    pub available_scopes: Vec<PolicyScope>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// On a `PUT`: how many grants the new policy revoked.
    pub revoked_grants: Option<u64>,
}

/// One member's grant to an app, in an organization's view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgAppMember {
    /// The member's user id.
    pub user_id: String,
    #[serde(default)]
    /// Their email, as last attested.
    pub email: Option<String>,
    #[serde(default)]
    /// Their name, as last attested.
    pub name: Option<String>,
    /// Scopes they granted.
    pub scopes: Vec<String>,
    /// Resources the app may access for them.
    pub resources: Vec<String>,
    /// When they first granted access (Unix seconds).
    pub granted_at: i64,
    #[serde(default)]
    /// When the app last used their grant (Unix seconds).
    pub last_used_at: Option<i64>,
}

/// An app connected by members of an organization.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgConnectedApp {
    /// The app's OAuth `client_id`.
    pub client_id: String,
    /// Its display name.
    pub client_name: String,
    #[serde(default)]
    /// Its logo.
    pub logo_uri: Option<String>,
    #[serde(default)]
    /// Its home page.
    pub client_uri: Option<String>,
    /// True for the operator's apps, false for self-registered and metadata-document ones.
    pub first_party: bool,
    #[serde(default)]
    /// For a Client ID Metadata Document app: its host (what `allow_hosts` matches).
    pub host: Option<String>,
    /// The members who connected it.
    pub members: Vec<OrgAppMember>,
}

/// `GET /v1/organization/connected_apps`, `GET /admin/v1/organizations/{id}/connected_apps`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgConnectedApps {
    /// The organization.
    pub organization_id: String,
    /// Its apps, by name.
    pub apps: Vec<OrgConnectedApp>,
}

/// `GET /admin/v1/organizations` item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrganizationSummary {
    /// The organization's id.
    pub organization_id: String,
    #[serde(default)]
    /// Its display name, when known.
    pub organization_name: Option<String>,
    /// Members seen (signed in at least once).
    pub members: i64,
    /// The policy's version.
    pub policy_version: i64,
    /// First seen (Unix seconds).
    pub created_at: i64,
    /// Last policy change or name change (Unix seconds).
    pub updated_at: i64,
}
