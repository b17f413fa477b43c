//! Token state: whether an access token is active (introspection, userinfo) and revocation
//! (RFC 7009) once the caller is authenticated.

use consentry_protocol::ErrorCode;
use serde_json::{Map, Value};

use crate::clients::Client;
use crate::crypto::sha256_hex;
use crate::domain::events::Event;
use crate::error::{ApiError, ApiResult};
use crate::flows::emit;
use crate::flows::token::REFRESH_PREFIX;
use crate::state::{Shared, now};

/// Verify an access token this server signed and check it was not revoked (one by one, or with
/// its grant). `None` when it is not active.
pub async fn active_access_token(s: &Shared, token: &str) -> ApiResult<Option<Map<String, Value>>> {
    let keys = s.keys.current().await;
    let Some(claims) = keys.verify_access_token(token, &s.cfg.issuer, now()) else {
        return Ok(None);
    };
    let jti = claims.get("jti").and_then(Value::as_str).unwrap_or("");
    let gid = claims.get("gid").and_then(Value::as_str);
    if s.store.access_token_revoked(jti, gid).await? {
        return Ok(None);
    }
    Ok(Some(Map::clone(&claims)))
}

/// The client a token was issued to, if it is a live token of this server (a refresh token
/// this server stores, or an active access token).
pub async fn token_client(s: &Shared, token: &str) -> ApiResult<Option<String>> {
    if token.starts_with(REFRESH_PREFIX) {
        return Ok(s
            .store
            .refresh_token(&sha256_hex(token))
            .await?
            .map(|row| row.family.client_id));
    }
    Ok(active_access_token(s, token).await?.and_then(|c| {
        c.get("client_id")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }))
}

/// Revoke `token` for `client`: a refresh token revokes its whole grant (and with it every
/// access token issued from it); an access token goes on the deny-list until it expires. Another
/// client's token is refused; an unknown one changes nothing (RFC 7009 §2.2).
pub async fn revoke(s: &Shared, client: &Client, token: &str) -> ApiResult<()> {
    let now = now();
    let foreign = || {
        ApiError::bad_request(
            ErrorCode::UnauthorizedClient,
            format!("the token was not issued to client '{}'", client.client_id),
        )
    };
    if token.starts_with(REFRESH_PREFIX) {
        if let Some(row) = s.store.refresh_token(&sha256_hex(token)).await? {
            if row.family.client_id != client.client_id {
                return Err(foreign());
            }
            s.store
                .revoke_family(&row.family.family_id, "revoked_by_client", now)
                .await?;
            emit(&Event::GrantsRevoked {
                user_id: Some(row.family.user_id),
                client_id: Some(row.family.client_id),
                reason: "revoked_by_client",
                count: 1,
            });
        }
    } else if let Some(claims) = active_access_token(s, token).await? {
        if claims.get("client_id").and_then(Value::as_str) != Some(client.client_id.as_str()) {
            return Err(foreign());
        }
        if let (Some(jti), Some(exp)) = (
            claims.get("jti").and_then(Value::as_str),
            claims.get("exp").and_then(Value::as_i64),
        ) {
            s.store.revoke_access_token(jti, exp).await?;
            emit(&Event::TokenRevoked {
                client_id: client.client_id.clone(),
            });
        }
    }
    Ok(())
}
