//! Fuzz targets of the resource crate (tests only; runner and budget: `consentry_testkit::fuzz`,
//! long run: `cargo xtask fuzz`). Seeds: `crates/resource/fuzz/corpus/<target>/`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use consentry_testkit::fuzz::{corpus_dir, mutated, run};
use http::{HeaderMap, HeaderValue, header};

use crate::ProtectedResource;
use crate::verify::{
    DEFAULT_ALGORITHMS, Expect, caller_claims, check_header, check_iss_aud, check_times, split,
};

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let seeds = corpus_dir(&dir);
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

const TOKENS: &[&str] = &[
    "Bearer ",
    "bearer ",
    "Basic ",
    "DPoP ",
    "eyJ",
    ".",
    "-",
    "_",
    "~",
    "+",
    "/",
    "=",
    "\"",
    "\"typ\":\"at+jwt\"",
    "\"alg\":",
    "\"kid\":",
    "\"crit\":[]",
    "\"aud\":",
    "\"exp\":",
    "\"nbf\":",
    "\"iat\":",
    "\"scope\":",
    "\"client_id\":",
    "\"kty\":",
    "\"use\":\"enc\"",
];

/// The `Authorization` header (one or two of them, any bytes) through the bearer parser, then the
/// token through every check that runs before and after the signature (header, issuer and
/// audience, times, caller claims) on its unverified parts.
#[test]
fn fuzz_bearer() {
    let e = Expect {
        issuer: "https://issuer.example",
        audience: "https://mcp.example/mcp",
        leeway: 30,
        now: 1_800_000_000,
    };
    run(
        "resource_bearer",
        (mutated(corpus("bearer"), TOKENS), any_bool()),
        |(input, twice): &(Vec<u8>, bool)| {
            let mut headers = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_bytes(input) {
                headers.append(header::AUTHORIZATION, v.clone());
                if *twice {
                    headers.append(header::AUTHORIZATION, v);
                }
            }
            if let Ok(token) = ProtectedResource::bearer_token(&headers) {
                assert!(!token.is_empty());
                if let Ok((h, claims)) = split(token) {
                    let _ = check_header(&h, DEFAULT_ALGORITHMS);
                    let _ = check_iss_aud(&claims, &e);
                    let _ = check_times(&claims, &e);
                    let _ = caller_claims(&claims);
                }
            }
            // The token alone, as an introspection cache key or a log line would see it.
            let _ = split(&String::from_utf8_lossy(input));
        },
    );
}

fn any_bool() -> impl consentry_testkit::fuzz::proptest::strategy::Strategy<Value = bool> {
    consentry_testkit::fuzz::proptest::prelude::any::<bool>()
}

/// An issuer's JWKS document through the resource's key parser.
#[test]
fn fuzz_jwks() {
    run(
        "resource_jwks",
        mutated(corpus("jwks"), TOKENS),
        |input: &Vec<u8>| {
            if let Ok(doc) = serde_json::from_slice::<serde_json::Value>(input)
                && let Ok(keys) = crate::jwks::parse_jwks(&doc)
            {
                for k in keys.values() {
                    assert!(!k.algs.is_empty(), "a key with no algorithm");
                }
            }
        },
    );
}
