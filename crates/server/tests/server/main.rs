//! The server's integration tests, one test binary (one link, one process: tests of every area
//! run in parallel instead of one binary after another). Each test starts the real `consentry`
//! binary on a free loopback port through `consentry-testkit` and talks HTTP to it; most run on
//! SQLite and on PostgreSQL (`on_both_backends!`: `<area>::sqlite::<test>` and
//! `<area>::postgres::<test>`).
//!
//! Run one area: `cargo test -p consentry-server --test server token::`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// `/v1` browser API: authorization requests, redirect URI rules, CORS, malformed input.
mod authorize;
/// Client ID Metadata Documents over real HTTPS (loopback), the SSRF guard, fetch limits.
mod cimd;
/// The `consentry` CLI: config errors at start, env overrides, `mint-tat`, `keys`, `dev`.
mod cli;
/// Complete flows, consent memory, prompts, discovery, several instances.
mod flow;
/// Token profiles for real identity providers, as `docs/idp-recipes.md` writes them.
mod idp_recipes;
/// Introspection, revocation, OIDC, connected apps, the admin API, client expiry.
mod lifecycle;
/// Organizations: members, the organization API, policies and their enforcement.
mod orgs;
/// Batched purge of expired rows.
mod purge;
/// Dynamic Client Registration (RFC 7591/7592), client authentication, client_credentials.
mod register;
/// Trusted Auth Tokens and browser sessions.
mod tat;
/// The token endpoint: PKCE, codes, refresh rotation.
mod token;
