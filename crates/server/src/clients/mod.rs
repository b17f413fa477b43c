//! OAuth clients as the authorization logic sees them, whatever registered them.
//!
//! `metadata` is the one client model (a registration body, a metadata document and a
//! `[[clients]]` entry all become a [`ClientMetadata`]); `validate` is the one validator, with a
//! [`Trust`] level saying which source's rules apply where they differ on purpose. This module
//! imports nothing from `http`: the HTTP layer, the config and the document resolver call it.

pub mod metadata;
pub mod validate;

use consentry_protocol::{
    ClientAuthMethod, GrantType, is_loopback_host, redirect_uri_matches, split_uri,
};

use crate::error::{ApiError, ApiResult};
use consentry_protocol::ErrorCode;

pub use metadata::{ClientConfig, ClientMetadata, ValidClientMetadata};
pub use validate::{MetadataError, ProblemKind, Trust, validate};

/// Where a client's registration comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientSource {
    /// `[[clients]]` in the config: the operator vouches for it.
    Config,
    /// Dynamic Client Registration (RFC 7591): self-asserted.
    Registered,
    /// A Client ID Metadata Document fetched from the client_id URL.
    MetadataDocument,
    /// Created by the operator through the admin API (first-party, like `[[clients]]`).
    Admin,
}

impl ClientSource {
    /// A stable name for the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientSource::Config => "config",
            ClientSource::Registered => "registered",
            ClientSource::MetadataDocument => "metadata_document",
            ClientSource::Admin => "admin",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Client {
    pub client_id: String,
    pub client_name: String,
    pub redirect_uris: Vec<String>,
    pub token_endpoint_auth_method: ClientAuthMethod,
    pub client_uri: Option<String>,
    pub logo_uri: Option<String>,
    /// Someone vouched for this client (pre-registered by the operator, or a CIMD host in
    /// `trusted_domains`). The consent screen warns about the others.
    pub verified: bool,
    /// SHA-256 hex of the client secret, for confidential clients.
    pub secret_hash: Option<String>,
    pub grant_types: Vec<GrantType>,
    /// Scopes the client registered for (`None`: any configured scope).
    pub scope: Option<Vec<String>>,
    pub source: ClientSource,
}

impl Client {
    /// The operator's own app (`[[clients]]`, or created through the admin API): an
    /// organization's `first_party` rule governs it; every other app is third-party.
    pub fn is_first_party(&self) -> bool {
        matches!(self.source, ClientSource::Config | ClientSource::Admin)
    }

    /// For a metadata-document client, its document's host (what an organization's
    /// `third_party.allow_hosts` matches).
    pub fn metadata_host(&self) -> Option<String> {
        if self.source != ClientSource::MetadataDocument {
            return None;
        }
        let parts = consentry_protocol::split_uri(&self.client_id)?;
        Some(parts.host?.to_ascii_lowercase())
    }

    pub fn is_confidential(&self) -> bool {
        self.token_endpoint_auth_method.is_confidential()
    }

    pub fn allows_grant(&self, grant_type: GrantType) -> bool {
        self.grant_types.contains(&grant_type)
    }

    /// The redirect URI to use: the requested one if it matches a registered one exactly (or by
    /// the loopback rule), or the only registered one if none was requested. Never a redirect:
    /// a mismatch is shown to the user.
    pub fn resolve_redirect_uri(&self, requested: Option<&str>) -> ApiResult<String> {
        let uri = self.matching_redirect_uri(requested)?;
        // Registration refuses these schemes; checked again here, where a code or an error is
        // about to be sent, whatever registered the client and whenever.
        if let Some(scheme) = validate::forbidden_scheme(&uri) {
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

    /// SHA-256 (hex) over what the consent screen shows of the client and where its codes may
    /// go: the registered redirect URIs (sorted, de-duplicated), client_name, client_uri,
    /// logo_uri and token_endpoint_auth_method, as a JSON array. Remembered consent is bound to
    /// it, so a client whose registration changes (an RFC 7592 update, an edited metadata
    /// document or `[[clients]]` entry) asks again.
    pub fn consent_fingerprint(&self) -> String {
        let mut uris: Vec<&str> = self.redirect_uris.iter().map(String::as_str).collect();
        uris.sort_unstable();
        uris.dedup();
        let canonical = serde_json::json!([
            uris,
            self.client_name,
            self.client_uri,
            self.logo_uri,
            self.token_endpoint_auth_method,
        ]);
        crate::crypto::sha256_hex(&canonical.to_string())
    }

    /// The registered redirect URI that `redirect_uri` (resolved) matched: what remembered
    /// consent is bound to. For loopback http it is port-free (RFC 8252 §7.3: a new port on
    /// each run), so one registered entry stands for all of them.
    pub fn registered_redirect_uri(&self, redirect_uri: &str) -> String {
        self.redirect_uris
            .iter()
            .find(|reg| redirect_uri_matches(reg, redirect_uri))
            .cloned()
            .unwrap_or_else(|| redirect_uri.to_owned())
    }

    /// A public client (no secret) sending its codes to a loopback or private-use-scheme
    /// redirect URI: any local program, or any app that claims the scheme, can use its
    /// client_id with a PKCE pair of its own (RFC 8252 §8.6), so consent is never silent.
    pub fn is_native_public(&self, redirect_uri: &str) -> bool {
        if self.is_confidential() {
            return false;
        }
        split_uri(redirect_uri).is_some_and(|p| {
            let web =
                p.scheme.eq_ignore_ascii_case("http") || p.scheme.eq_ignore_ascii_case("https");
            !web || p.host.is_some_and(is_loopback_host)
        })
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

/// A dynamically registered client as stored: its validated metadata, read back.
pub fn client_from_row(row: &crate::store::ClientRow) -> ApiResult<Client> {
    let md: ValidClientMetadata = serde_json::from_str(&row.metadata)
        .map_err(|e| ApiError::internal(format!("stored client metadata is corrupt: {e}")))?;
    Ok(md.into_client(
        row.client_id.clone(),
        row.secret_hash.clone(),
        if row.first_party {
            ClientSource::Admin
        } else {
            ClientSource::Registered
        },
        row.first_party,
    ))
}
