//! Dynamic client registration's changes (RFC 7591 / 7592): store the validated metadata, emit
//! what happened. Rate limits, the initial access token and the body belong to the HTTP edge.

use crate::clients::ValidClientMetadata;
use crate::crypto::{random_token, sha256_hex};
use crate::domain::events::Event;
use crate::error::{ApiError, ApiResult};
use crate::flows::emit;
use crate::state::{Shared, now};
use crate::store::ClientRow;

/// A newly registered client's credentials (shown once).
pub struct Registered {
    pub client_id: String,
    pub secret: Option<String>,
    pub registration_token: String,
    pub created_at: i64,
}

/// Register a client with validated metadata: self-registered (RFC 7591, third-party) or
/// created by the operator through the admin API (`first_party`; its registration access token
/// is never handed out: the admin API manages it).
pub async fn register(
    s: &Shared,
    md: &ValidClientMetadata,
    first_party: bool,
) -> ApiResult<Registered> {
    let now = now();
    // Self-issued ids never start with https:// (those are CIMD URLs).
    let client_id = format!("cyc-{}", random_token(16));
    let secret = md
        .token_endpoint_auth_method
        .is_confidential()
        .then(|| format!("cys-{}", random_token(32)));
    let registration_token = format!("cyt-{}", random_token(32));
    let metadata = serde_json::to_string(md).map_err(ApiError::internal)?;
    s.store
        .insert_client(
            &ClientRow {
                client_id: client_id.clone(),
                secret_hash: secret.as_deref().map(sha256_hex),
                registration_token_hash: sha256_hex(&registration_token),
                metadata,
                created_at: now,
                first_party,
            },
            now,
        )
        .await?;
    emit(&Event::ClientRegistered {
        client_id: client_id.clone(),
    });
    Ok(Registered {
        client_id,
        secret,
        registration_token,
        created_at: now,
    })
}

/// Replace a registered client's metadata (RFC 7592 §2.2).
pub async fn update(s: &Shared, client_id: &str, md: &ValidClientMetadata) -> ApiResult<()> {
    let metadata = serde_json::to_string(md).map_err(ApiError::internal)?;
    s.store
        .update_client_metadata(client_id, &metadata, now())
        .await?;
    emit(&Event::ClientUpdated {
        client_id: client_id.to_owned(),
    });
    Ok(())
}
