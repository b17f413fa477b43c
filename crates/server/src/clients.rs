//! OAuth clients as the authorization logic sees them, whatever registered them.

use consentry_protocol::redirect_uri_matches;

use crate::config::ClientConfig;
use crate::error::{ApiError, ApiResult};
use consentry_protocol::ErrorCode;

/// Where a client's registration comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientSource {
    /// `[[clients]]` in the config: the operator vouches for it.
    Config,
    /// Dynamic Client Registration (RFC 7591): self-asserted.
    Registered,
    /// A Client ID Metadata Document fetched from the client_id URL.
    MetadataDocument,
}

#[derive(Clone, Debug)]
pub struct Client {
    pub client_id: String,
    pub client_name: String,
    pub redirect_uris: Vec<String>,
    pub token_endpoint_auth_method: String,
    pub client_uri: Option<String>,
    pub logo_uri: Option<String>,
    /// Someone vouched for this client (pre-registered by the operator, or a CIMD host in
    /// `trusted_domains`). The consent screen warns about the others.
    pub verified: bool,
    /// SHA-256 hex of the client secret, for confidential clients.
    pub secret_hash: Option<String>,
    pub grant_types: Vec<String>,
    /// Scopes the client registered for (`None`: any configured scope).
    pub scope: Option<Vec<String>>,
    pub source: ClientSource,
}

impl Client {
    pub fn from_config(c: &ClientConfig) -> Client {
        Client {
            client_id: c.client_id.clone(),
            client_name: c.client_name.clone(),
            redirect_uris: c.redirect_uris.clone(),
            token_endpoint_auth_method: c.token_endpoint_auth_method.clone(),
            client_uri: c.client_uri.clone(),
            logo_uri: c.logo_uri.clone(),
            verified: true,
            secret_hash: c.client_secret.as_deref().map(crate::crypto::sha256_hex),
            grant_types: c.grant_types.clone(),
            scope: None,
            source: ClientSource::Config,
        }
    }

    pub fn is_confidential(&self) -> bool {
        self.token_endpoint_auth_method != "none"
    }

    pub fn allows_grant(&self, grant_type: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant_type)
    }

    /// The redirect URI to use: the requested one if it matches a registered one exactly (or by
    /// the loopback rule), or the only registered one if none was requested. Never a redirect:
    /// a mismatch is shown to the user.
    pub fn resolve_redirect_uri(&self, requested: Option<&str>) -> ApiResult<String> {
        let uri = self.matching_redirect_uri(requested)?;
        // Registration refuses these schemes; checked again here, where a code or an error is
        // about to be sent, whatever registered the client and whenever.
        if let Some(scheme) = crate::register::forbidden_scheme(&uri) {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidRedirectUri,
                format!(
                    "redirect_uri '{}' of client '{}' uses the scheme '{}', which is never a redirect target; expected https, loopback http or a private-use scheme",
                    truncate(&uri),
                    self.client_id,
                    truncate(scheme)
                ),
            ));
        }
        Ok(uri)
    }

    fn matching_redirect_uri(&self, requested: Option<&str>) -> ApiResult<String> {
        match requested {
            Some(r) => {
                if self
                    .redirect_uris
                    .iter()
                    .any(|reg| redirect_uri_matches(reg, r))
                {
                    Ok(r.to_owned())
                } else {
                    Err(ApiError::bad_request(
                        ErrorCode::InvalidRedirectUri,
                        format!(
                            "redirect_uri '{}' is not registered for client '{}'; registered: {}",
                            truncate(r),
                            self.client_id,
                            quoted_list(&self.redirect_uris)
                        ),
                    ))
                }
            }
            None => match self.redirect_uris.as_slice() {
                [only] => Ok(only.clone()),
                _ => Err(ApiError::bad_request(
                    ErrorCode::InvalidRedirectUri,
                    format!(
                        "redirect_uri is required: client '{}' registered several ({})",
                        self.client_id,
                        quoted_list(&self.redirect_uris)
                    ),
                )),
            },
        }
    }
}

pub fn quoted_list(items: &[String]) -> String {
    items
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn truncate(s: &str) -> String {
    match s.char_indices().nth(200) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
}
