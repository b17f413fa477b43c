//! Headless logic of the Consentry browser SDK, with no JavaScript in it.
//!
//! - [`parse_authorize_params`]: the authorization URL's parameters through the very grammar the
//!   server runs (`consentry_protocol::parse_query` + `AuthorizeRequest::parse`).
//! - [`Client`]: the browser API calls (attest, authorize start/submit, connected apps), holding
//!   the session in memory.
//! - [`decode_trusted_auth_token`]: an untrusted look at a TAT's claims (who is signing in, and
//!   whether it has already expired, so no request is sent that must fail).
//! - [`ConsentScreen`], [`ConnectedAppView`]: what the prebuilt UI shows, read from the answers.
//! - [`PolicyView`], [`OrgAppView`], [`policy_to_json`]: organizations (the admin's connected apps
//!   and policy; the policy document written as JSON by hand).
//! - [`SdkError`]: one error with a stable [`SdkErrorCode`], the server's codes plus the SDK's own.
//!
//! Everything that touches the outside world (HTTP, JSON parsing, the clock) goes through the
//! [`Platform`] trait: `consentry-wasm` implements it with the browser's `fetch`/`JSON`/`Date`, and
//! the unit tests with a scripted fake. Keeping JSON behind the trait is what keeps `serde_json`
//! (and its number formatting) out of the browser bundle.
//!
//! ```
//! use consentry_core::{ErrorCode, SdkErrorCode, parse_authorize_params};
//!
//! // No client_id: refused locally, and never redirected (nothing verified the client).
//! let parsed = parse_authorize_params("https://app.example/oauth/authorize?response_type=code");
//! let error = parsed.error.expect("a request without client_id is refused");
//! assert_eq!(error.code, SdkErrorCode::Server(ErrorCode::InvalidRequest));
//! assert!(!parsed.redirectable);
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod client;
mod error;
mod http;
mod org;
mod params;
mod tat;
mod view;

pub use client::{Client, Session, TatLogin};
pub use error::{SdkError, SdkErrorCode};
pub use http::{
    HttpRequest, HttpResponse, JsonObject, Method, Platform, TransportError, WireObject, WireValue,
};
pub use org::{
    OrgAppView, OrgMemberView, Policy, PolicyScopeView, PolicyView, policy_etag, policy_from_json,
    policy_to_json,
};
pub use params::{ParsedParams, authorize_params_wire, parse_authorize_params};
pub use tat::{TAT_EXPIRY_LEEWAY_SECONDS, TatInfo, base64url_decode, decode_trusted_auth_token};
pub use view::{
    ClientView, ConnectedAppView, ConsentItem, ConsentScreen, ConsentSection, ResourceScopes,
    ScopeLine, UserView, safe_image_url,
};

pub use consentry_protocol::wire::NotGrantable;
pub use consentry_protocol::{
    AppMode, AppRule, AuthorizeParams, ErrorCode, OrgPolicy, PolicyLimits,
    is_forbidden_redirect_scheme, redirect_host,
};
