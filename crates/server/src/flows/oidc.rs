//! OpenID Connect on top of the code flow: the ID token (aud = client_id, `nonce`,
//! `auth_time`) and the claims `profile` and `email` release.

use serde_json::{Map, Value, json};

use crate::error::ApiResult;
use crate::state::Shared;

/// Claims about the member (the user in `organization_id`, the implicit organization when
/// `None`) that `scopes` release, with `org_id` when the organization is not the implicit one.
pub async fn user_claims(
    s: &Shared,
    user_id: &str,
    organization_id: Option<&str>,
    scopes: &[String],
) -> ApiResult<Map<String, Value>> {
    let mut m = Map::new();
    m.insert("sub".into(), json!(user_id));
    if let Some(org) = organization_id {
        m.insert("org_id".into(), json!(org));
    }
    let org = organization_id.unwrap_or(crate::config::DEFAULT_ORGANIZATION);
    let Some((user, _)) = s.store.member(org, user_id).await? else {
        return Ok(m);
    };
    if scopes.iter().any(|sc| sc == "profile")
        && let Some(name) = user.name
    {
        m.insert("name".into(), json!(name));
    }
    if scopes.iter().any(|sc| sc == "email")
        && let Some(email) = user.email
    {
        m.insert("email".into(), json!(email));
    }
    Ok(m)
}

/// An ID token for a grant that includes `openid`.
#[allow(clippy::too_many_arguments)]
pub async fn id_token(
    s: &Shared,
    user_id: &str,
    organization_id: Option<&str>,
    client_id: &str,
    scopes: &[String],
    nonce: Option<&str>,
    auth_time: i64,
    now: i64,
) -> ApiResult<String> {
    let mut claims = user_claims(s, user_id, organization_id, scopes).await?;
    claims.insert("iss".into(), json!(s.cfg.issuer));
    claims.insert("aud".into(), json!(client_id));
    claims.insert("iat".into(), json!(now));
    claims.insert(
        "exp".into(),
        json!(now + s.cfg.access_token_ttl_seconds.min(3600)),
    );
    claims.insert("auth_time".into(), json!(auth_time));
    if let Some(n) = nonce {
        claims.insert("nonce".into(), json!(n));
    }
    let keys = s.keys.current().await;
    Ok(keys.current.sign_jwt("JWT", &Value::Object(claims))?)
}
