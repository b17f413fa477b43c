//! Consentry's wire protocol: the JSON shapes the browser SDK and the server exchange, the OAuth
//! error codes, and the grammar of an OAuth 2.1 authorization request.
//!
//! This crate is the single source of truth shared by `consentry-server` and the browser SDK, so
//! the two cannot drift. It depends only on `serde` and must keep compiling for
//! `wasm32-unknown-unknown`: no URL crate (its IDNA tables cost the browser tens of KB), no JSON
//! library, no I/O.
//!
//! ```
//! use consentry_protocol::{ErrorCode, parse_query, redirect_host};
//!
//! let params = parse_query("https://app.example/oauth/authorize?client_id=agent&state=s1")?;
//! assert_eq!(params.client_id.as_deref(), Some("agent"));
//! assert_eq!(redirect_host("http://127.0.0.1:9999/cb").as_deref(), Some("127.0.0.1"));
//! assert_eq!(ErrorCode::from_wire("access_denied"), Some(ErrorCode::AccessDenied));
//! # Ok::<(), consentry_protocol::ParamError>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod authorize;
pub mod client;
pub mod error;
pub mod form;
pub mod policy;
pub mod wire;

pub use authorize::{
    AuthorizeParams, AuthorizeRequest, CodeChallenge, FORBIDDEN_REDIRECT_SCHEMES, ParamError,
    ParamProblem, Prompt, UriParts, append_query, is_forbidden_redirect_scheme, is_loopback_host,
    is_valid_code_verifier, parse_query, parse_scope, percent_decode, percent_encode,
    redirect_host, redirect_uri_matches, split_uri,
};
pub use client::{ApplicationType, ClientAuthMethod, GrantType, RegistrationMode, UnknownValue};
pub use error::{ErrorBody, ErrorCode, Refusal};
pub use form::Form;
pub use policy::{AppMode, AppRule, OrgPolicy, PolicyError, PolicyLimits, ScopeRules};
