//! What the prebuilt consent UI shows, read from the server's answers. Plain data (no JS, no
//! Leptos), so the rules that matter for safety — which host the browser goes to, which scopes
//! are granted, which are not grantable, whether the client is vouched for — are unit-tested
//! natively.

use consentry_protocol::wire::NotGrantable;

use crate::error::SdkError;
use crate::http::JsonObject;

/// The app asking for access.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientView {
    /// The OAuth `client_id`.
    pub client_id: String,
    /// The client's display name (`client_name`, else its id).
    pub name: String,
    /// Only `https:` (or loopback `http:`) logos are kept: see [`safe_image_url`].
    pub logo_uri: Option<String>,
    /// The client's home page, when it gave one.
    pub client_uri: Option<String>,
    /// False when nobody vouched for the client (an unknown CIMD domain, open registration):
    /// the screen warns.
    pub verified: bool,
}

/// The account the app will act for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserView {
    /// The product's id for the user (the TAT's mapped `user_id`).
    pub user_id: String,
    /// The user's email, when the TAT carried one.
    pub email: Option<String>,
    /// The user's display name, when the TAT carried one.
    pub name: Option<String>,
}

impl UserView {
    /// How to name the account: email, else name, else the id.
    pub fn label(&self) -> &str {
        self.email
            .as_deref()
            .or(self.name.as_deref())
            .unwrap_or(&self.user_id)
    }
}

/// One requested scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeLine {
    /// The scope as requested (`notes:read`).
    pub scope: String,
    /// The server's description, or the scope itself when it has none.
    pub description: String,
    /// The resource (RFC 8707 `resource`) the scope is for.
    pub resource: String,
    /// The user already granted it to this client.
    pub already_granted: bool,
    /// Why it cannot be granted (a missing role, or the organization disallows it).
    pub not_grantable_reason: Option<NotGrantable>,
}

/// The grantable scopes of one resource (an MCP server, an API), in request order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceScopes {
    /// The resource's URI (the access token's `aud`).
    pub uri: String,
    /// The configured display name, or the URI.
    pub name: String,
    /// The scopes requested on it.
    pub scopes: Vec<ScopeLine>,
}

/// `POST /v1/oauth/authorize/start`'s answer, as the consent screen needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsentScreen {
    /// Who asks.
    pub client: ClientView,
    /// The host of the verified redirect URI: where the browser is sent either way.
    pub redirect_host: String,
    /// Who is signed in.
    pub user: UserView,
    /// False when every requested scope was granted before: the UI submits at once.
    pub consent_required: bool,
    /// What is asked, grouped by resource (grantable scopes only).
    pub resources: Vec<ResourceScopes>,
    /// Requested scopes the user may not grant (a role is missing): shown apart, never granted.
    pub not_grantable: Vec<ScopeLine>,
}

impl ConsentScreen {
    /// Read the answer of `authorize_start` (`invalid_response` when it is not one).
    pub fn from_json<J: JsonObject>(json: &J) -> Result<Self, SdkError> {
        let client = json.member("client").ok_or_else(|| missing("client"))?;
        let user = json.member("user").ok_or_else(|| missing("user"))?;
        let names: Vec<(String, String)> = json
            .member("resources")
            .map(|r| r.elements())
            .unwrap_or_default()
            .iter()
            .filter_map(|r| Some((r.str_member("uri")?, r.str_member("name")?)))
            .collect();
        let mut resources: Vec<ResourceScopes> = Vec::new();
        let mut not_grantable = Vec::new();
        for item in json
            .member("scope_results")
            .ok_or_else(|| missing("scope_results"))?
            .elements()
        {
            let scope = item
                .str_member("scope")
                .ok_or_else(|| missing("scope_results[].scope"))?;
            let resource = item.str_member("resource").unwrap_or_default();
            let description = item
                .str_member("description")
                .filter(|d| !d.trim().is_empty())
                .unwrap_or_else(|| scope.clone());
            let line = ScopeLine {
                scope,
                description,
                resource,
                already_granted: item.bool_member("already_granted").unwrap_or(false),
                not_grantable_reason: match item.str_member("not_grantable_reason").as_deref() {
                    Some("role_required") => Some(NotGrantable::RoleRequired),
                    Some("scope_not_allowed_for_org") => Some(NotGrantable::ScopeNotAllowedForOrg),
                    _ => None,
                },
            };
            if !item.bool_member("is_grantable").unwrap_or(false) {
                not_grantable.push(line);
                continue;
            }
            match resources.iter_mut().find(|r| r.uri == line.resource) {
                Some(group) => group.scopes.push(line),
                None => {
                    let name = names
                        .iter()
                        .find(|(uri, _)| *uri == line.resource)
                        .map(|(_, name)| name.clone())
                        .filter(|n| !n.is_empty())
                        .unwrap_or_else(|| line.resource.clone());
                    resources.push(ResourceScopes {
                        uri: line.resource.clone(),
                        name,
                        scopes: vec![line],
                    });
                }
            }
        }
        Ok(ConsentScreen {
            client: ClientView {
                client_id: client
                    .str_member("client_id")
                    .ok_or_else(|| missing("client.client_id"))?,
                name: client
                    .str_member("client_name")
                    .filter(|n| !n.trim().is_empty())
                    .or_else(|| client.str_member("client_id"))
                    .unwrap_or_default(),
                logo_uri: client.str_member("logo_uri").filter(|u| safe_image_url(u)),
                client_uri: client.str_member("client_uri"),
                verified: client.bool_member("verified").unwrap_or(false),
            },
            redirect_host: json
                .str_member("redirect_host")
                .ok_or_else(|| missing("redirect_host"))?,
            user: user_view(&user)?,
            consent_required: json.bool_member("consent_required").unwrap_or(true),
            resources,
            not_grantable,
        })
    }

    /// Every grantable scope, in order (what Allow grants).
    pub fn grantable_scopes(&self) -> impl Iterator<Item = &ScopeLine> {
        self.resources.iter().flat_map(|r| r.scopes.iter())
    }

    /// The sections the screen lists by default: one per resource, a line per scope.
    pub fn default_sections(&self) -> Vec<ConsentSection> {
        self.resources
            .iter()
            .map(|r| ConsentSection {
                header: Some(r.name.clone()),
                items: r
                    .scopes
                    .iter()
                    .map(|s| ConsentItem {
                        text: s.description.clone(),
                        details: Vec::new(),
                        already_granted: s.already_granted,
                    })
                    .collect(),
            })
            .collect()
    }
}

/// A block of the consent list: an optional header and its lines. The page's consent manifest
/// callback may replace the default sections with its own wording.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConsentSection {
    /// A heading (the resource's name), if any.
    pub header: Option<String>,
    /// One line per permission.
    pub items: Vec<ConsentItem>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
/// One line of the consent screen.
pub struct ConsentItem {
    /// What the user allows, in words.
    pub text: String,
    /// Smaller lines under the item.
    pub details: Vec<String>,
    /// The user already allowed it (shown with a mark).
    pub already_granted: bool,
}

/// One entry of `GET /v1/connected_apps`.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectedAppView {
    /// The OAuth `client_id`.
    pub client_id: String,
    /// The app's display name.
    pub name: String,
    /// The app's logo (`https:` or loopback `http:` only).
    pub logo_uri: Option<String>,
    /// The scopes granted to it.
    pub scopes: Vec<String>,
    /// The resources it may access.
    pub resources: Vec<String>,
    /// Unix seconds.
    pub granted_at: Option<f64>,
    /// When it last used its grant (Unix seconds); `None` if never.
    pub last_used_at: Option<f64>,
}

impl ConnectedAppView {
    /// The list the server sent; entries without a `client_id` are skipped (nothing could be
    /// revoked through them).
    pub fn list_from_json<J: JsonObject>(json: &J) -> Vec<Self> {
        json.elements()
            .iter()
            .filter_map(|app| {
                let client_id = app.str_member("client_id")?;
                let strings = |key: &str| -> Vec<String> {
                    app.member(key)
                        .map(|v| v.elements())
                        .unwrap_or_default()
                        .iter()
                        .filter_map(JsonObject::as_string)
                        .collect()
                };
                Some(ConnectedAppView {
                    name: app
                        .str_member("client_name")
                        .filter(|n| !n.trim().is_empty())
                        .unwrap_or_else(|| client_id.clone()),
                    logo_uri: app.str_member("logo_uri").filter(|u| safe_image_url(u)),
                    scopes: strings("scopes"),
                    resources: strings("resources"),
                    granted_at: app.num_member("granted_at"),
                    last_used_at: app.num_member("last_used_at"),
                    client_id,
                })
            })
            .collect()
    }
}

fn user_view<J: JsonObject>(user: &J) -> Result<UserView, SdkError> {
    Ok(UserView {
        user_id: user
            .str_member("user_id")
            .ok_or_else(|| missing("user.user_id"))?,
        email: user.str_member("email").filter(|e| !e.is_empty()),
        name: user.str_member("name").filter(|n| !n.is_empty()),
    })
}

fn missing(field: &str) -> SdkError {
    let mut what = String::from("no ");
    what.push_str(field);
    SdkError::invalid_response(200, &what)
}

/// Whether a client-supplied image URL may be put in an `<img src>`: `https:` anywhere, `http:`
/// only on loopback (local development). Clients register their own `logo_uri`, so anything
/// else (`javascript:`, `data:`, `file:`, a plain-http tracker) is dropped.
pub fn safe_image_url(url: &str) -> bool {
    let lower = url
        .get(..8)
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    if lower == "https://" {
        return url.len() > 8 && !url.contains(char::is_whitespace);
    }
    if !lower.starts_with("http://") {
        return false;
    }
    let host = consentry_protocol::redirect_host(url).unwrap_or_default();
    matches!(host.as_str(), "localhost" | "127.0.0.1" | "[::1]" | "::1")
        && !url.contains(char::is_whitespace)
}
