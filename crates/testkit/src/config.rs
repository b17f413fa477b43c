//! The server's typed config builder (`consentry_server::config::builder`), re-exported, and the
//! harness's config on top of it ([`test_config`]).

pub use consentry_server::config::builder::*;

pub use crate::server::test_config;
