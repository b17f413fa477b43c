//! The one client model: what a client says about itself (RFC 7591 §2), from a registration
//! body, a Client ID Metadata Document or a `[[clients]]` entry, before and after validation.

use consentry_protocol::{ApplicationType, ClientAuthMethod, GrantType};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::validate::MetadataError;
use super::{Client, ClientSource};

/// Client metadata as sent, typed but not yet checked. `None` is "not said": the validator
/// fills the default of the source ([`super::Trust`]).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ClientMetadata {
    #[serde(default)]
    pub client_name: Option<String>,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub grant_types: Option<Vec<GrantType>>,
    #[serde(default)]
    pub response_types: Option<Vec<String>>,
    #[serde(default, deserialize_with = "empty_is_none")]
    pub token_endpoint_auth_method: Option<ClientAuthMethod>,
    #[serde(default, deserialize_with = "empty_is_none")]
    pub application_type: Option<ApplicationType>,
    #[serde(default)]
    pub client_uri: Option<String>,
    #[serde(default)]
    pub logo_uri: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub contacts: Vec<String>,
    #[serde(default)]
    pub policy_uri: Option<String>,
    #[serde(default)]
    pub tos_uri: Option<String>,
    #[serde(default)]
    pub software_id: Option<String>,
    #[serde(default)]
    pub software_version: Option<String>,
}

/// `""` (or null) reads as absent: registrations have been seen sending an empty
/// `application_type`, which has always meant the default.
fn empty_is_none<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: std::str::FromStr<Err = consentry_protocol::UnknownValue>,
{
    match Option::<std::borrow::Cow<'de, str>>::deserialize(d)? {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => s.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

/// `[[clients]]` in consentry.toml: a client the operator vouches for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub client_id: String,
    pub client_name: String,
    pub redirect_uris: Vec<String>,
    #[serde(default = "default_auth_method")]
    pub token_endpoint_auth_method: ClientAuthMethod,
    /// `web` or `native`; unset: `native` when a redirect URI uses a private-use scheme.
    #[serde(default)]
    pub application_type: Option<ApplicationType>,
    #[serde(default)]
    pub client_uri: Option<String>,
    #[serde(default)]
    pub logo_uri: Option<String>,
    /// For `client_secret_basic` / `client_secret_post` clients (hashed in memory at load; prefer
    /// the `CONSENTRY_CLIENT_SECRET_<CLIENT_ID>`-style secret stores of your platform).
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default = "default_grant_types")]
    pub grant_types: Vec<GrantType>,
}

fn default_auth_method() -> ClientAuthMethod {
    ClientAuthMethod::None
}

fn default_grant_types() -> Vec<GrantType> {
    vec![GrantType::AuthorizationCode, GrantType::RefreshToken]
}

impl ClientMetadata {
    /// The metadata of a `[[clients]]` entry (its id and secret are the config's business).
    pub fn from_config(c: &ClientConfig) -> ClientMetadata {
        ClientMetadata {
            client_name: Some(c.client_name.clone()),
            redirect_uris: c.redirect_uris.clone(),
            grant_types: Some(c.grant_types.clone()),
            token_endpoint_auth_method: Some(c.token_endpoint_auth_method),
            application_type: c.application_type,
            client_uri: c.client_uri.clone(),
            logo_uri: c.logo_uri.clone(),
            ..ClientMetadata::default()
        }
    }

    /// The metadata fields of a Client ID Metadata Document (a JSON object), each of the wrong
    /// JSON type refused naming it. Fields this server does not use (contacts, software_id, …)
    /// are not read: one document serves many authorization servers. Grant types this server
    /// does not implement are skipped for the same reason; the document's own rules
    /// (`client_id`, secrets) are `cimd::document`'s.
    pub fn from_document(doc: &Map<String, Value>) -> Result<ClientMetadata, MetadataError> {
        let grant_types = string_list(doc, "grant_types")?
            .map(|list| list.iter().filter_map(|g| g.parse().ok()).collect());
        let typed =
            |field: &'static str| -> Result<Option<String>, MetadataError> { string(doc, field) };
        let parse_enum = |field: &'static str| -> Result<Option<String>, MetadataError> {
            Ok(typed(field)?.filter(|s| !s.is_empty()))
        };
        let token_endpoint_auth_method = parse_enum("token_endpoint_auth_method")?
            .map(|m| {
                m.parse().map_err(|e| {
                    MetadataError::metadata("token_endpoint_auth_method", format!("{e}"))
                })
            })
            .transpose()?;
        let application_type = parse_enum("application_type")?
            .map(|m| {
                m.parse()
                    .map_err(|e| MetadataError::metadata("application_type", format!("{e}")))
            })
            .transpose()?;
        Ok(ClientMetadata {
            client_name: typed("client_name")?,
            redirect_uris: string_list(doc, "redirect_uris")?.unwrap_or_default(),
            grant_types,
            response_types: string_list(doc, "response_types")?,
            token_endpoint_auth_method,
            application_type,
            client_uri: typed("client_uri")?,
            logo_uri: typed("logo_uri")?,
            scope: typed("scope")?,
            ..ClientMetadata::default()
        })
    }
}

fn string(doc: &Map<String, Value>, field: &'static str) -> Result<Option<String>, MetadataError> {
    match doc.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(MetadataError::metadata(
            field,
            format!("is {}, not a string", json_kind(other)),
        )),
    }
}

fn string_list(
    doc: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<Vec<String>>, MetadataError> {
    let items = match doc.get(field) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(a)) => a,
        Some(other) => {
            return Err(MetadataError::metadata(
                field,
                format!("is {}, not an array of strings", json_kind(other)),
            ));
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, v) in items.iter().enumerate() {
        let Value::String(s) = v else {
            return Err(MetadataError::metadata(
                format!("{field}[{i}]"),
                format!("is {}, not a string", json_kind(v)),
            ));
        };
        out.push(s.clone());
    }
    Ok(Some(out))
}

/// "a number", "an array"…: what a JSON value is, for error messages.
pub fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Client metadata that passed [`super::validate`], defaults filled: what a registered client
/// has stored (JSON, in the `clients` table) and what RFC 7591/7592 responses echo. The JSON
/// shape is the one stored since DCR existed, so rows written by older releases read back.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ValidClientMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub grant_types: Vec<GrantType>,
    #[serde(default)]
    pub response_types: Vec<String>,
    pub token_endpoint_auth_method: ClientAuthMethod,
    pub application_type: ApplicationType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contacts: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tos_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_version: Option<String>,
}

impl ValidClientMetadata {
    /// The runtime client. Without a client_name the client is shown by its id.
    pub fn into_client(
        self,
        client_id: String,
        secret_hash: Option<String>,
        source: ClientSource,
        verified: bool,
    ) -> Client {
        Client {
            client_name: self
                .client_name
                .clone()
                .unwrap_or_else(|| client_id.clone()),
            client_id,
            redirect_uris: self.redirect_uris,
            token_endpoint_auth_method: self.token_endpoint_auth_method,
            client_uri: self.client_uri,
            logo_uri: self.logo_uri,
            verified,
            secret_hash,
            grant_types: self.grant_types,
            scope: self
                .scope
                .as_deref()
                .map(|s| s.split_ascii_whitespace().map(str::to_owned).collect()),
            source,
        }
    }
}
