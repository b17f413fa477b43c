//! Pure rules: no axum, no database, no clock (time is a parameter).
//!
//! - [`decision`]: the one authorization decision every token path calls (a new rule, such as an
//!   organization policy, is a function called from `decision::decide`).
//! - [`refresh`]: whether a presented refresh token may rotate (then the decision runs on it).
//! - [`events`]: what happened, as typed events the flows emit.

pub mod decision;
pub mod events;
pub mod refresh;

use consentry_protocol::ErrorCode;

/// A refusal: the OAuth error code and a description naming what was wrong and what was
/// expected. The HTTP layer picks the status and whether it goes back to the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    pub code: ErrorCode,
    pub description: String,
    /// For an organization's refusal on the consent screen: who refused what.
    pub refusal: Option<Refusal>,
}

pub use consentry_protocol::Refusal;

impl Denial {
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        Denial {
            code,
            description: description.into(),
            refusal: None,
        }
    }
}

/// The OpenID Connect scopes this server understands, with what the consent screen says.
pub const OIDC_SCOPES: [(&str, &str); 3] = [
    ("openid", "Sign you in with your account"),
    ("profile", "See your name"),
    ("email", "See your email address"),
];

pub fn is_oidc_scope(scope: &str) -> bool {
    OIDC_SCOPES.iter().any(|(s, _)| *s == scope)
}

pub fn oidc_description(scope: &str) -> Option<&'static str> {
    OIDC_SCOPES
        .iter()
        .find(|(s, _)| *s == scope)
        .map(|(_, d)| *d)
}
