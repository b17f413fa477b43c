//! Reading a Trusted Auth Token without verifying it. The server verifies; the SDK only looks,
//! to show who is signing in and to refuse an expired token before any request.

use crate::error::{SdkError, SdkErrorCode};
use crate::http::{JsonObject, Platform};
use consentry_protocol::ErrorCode;

/// The server accepts a TAT until `exp` + this many seconds (`crates/server/src/tat.rs`); the SDK
/// refuses locally only what the server would refuse too.
pub const TAT_EXPIRY_LEEWAY_SECONDS: f64 = 60.0;

/// A TAT's claims, unverified.
#[derive(Clone, Debug, PartialEq)]
pub struct TatInfo<J> {
    /// The payload as JSON: whatever claims the product put in.
    pub claims: J,
    /// `exp`, Unix seconds, when the token has one.
    pub expires_at: Option<f64>,
    /// True when `exp` has passed beyond the leeway: the server would refuse it.
    pub expired: bool,
}

/// Decode a compact JWS's payload. Errors are `invalid_trusted_auth_token`.
pub fn decode_trusted_auth_token<P: Platform>(
    platform: &P,
    token: &str,
) -> Result<TatInfo<P::Json>, SdkError> {
    let malformed = |what: &str| {
        let mut d = String::from("trusted auth token is not a JWT: ");
        d.push_str(what);
        SdkError::local(SdkErrorCode::Server(ErrorCode::InvalidTrustedAuthToken), d)
    };
    let mut parts = token.trim().split('.');
    let (Some(_header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("expected three dot-separated parts"));
    };
    let bytes =
        base64url_decode(payload).ok_or_else(|| malformed("the payload is not base64url"))?;
    let text = String::from_utf8(bytes).map_err(|_| malformed("the payload is not UTF-8"))?;
    let claims = platform
        .parse_json(&text)
        .filter(JsonObject::is_object)
        .ok_or_else(|| malformed("the payload is not a JSON object"))?;
    let expires_at = claims.num_member("exp");
    let expired = expires_at
        .is_some_and(|exp| exp + TAT_EXPIRY_LEEWAY_SECONDS <= platform.now_unix_seconds());
    Ok(TatInfo {
        claims,
        expires_at,
        expired,
    })
}

/// Refuse a token that is malformed or expired, before any network call.
pub(crate) fn check_usable<P: Platform>(platform: &P, token: &str) -> Result<(), SdkError> {
    let info = decode_trusted_auth_token(platform, token)?;
    if info.expired {
        return Err(SdkError::local(
            SdkErrorCode::TrustedAuthTokenExpired,
            "trusted auth token has expired (exp is in the past): mint a fresh one",
        ));
    }
    Ok(())
}

/// RFC 4648 §5 base64url, padding optional. `None` on any other character or a dangling bit.
pub fn base64url_decode(input: &str) -> Option<Vec<u8>> {
    let input = input.trim_end_matches('=');
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for b in input.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    // A length of 4n+1 leaves 6 bits: not a valid encoding.
    if bits >= 6 {
        return None;
    }
    Some(out)
}
