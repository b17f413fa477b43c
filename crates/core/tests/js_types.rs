//! The npm package's TypeScript union of error codes must list exactly the codes Rust produces.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use consentry_core::SdkErrorCode;
use consentry_protocol::ErrorCode;

#[test]
fn typescript_error_codes_match_the_rust_codes() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../packages/consentry/src/headless.d.ts"
    );
    let dts = std::fs::read_to_string(path).expect("headless.d.ts");
    let mut in_ts: Vec<&str> = dts
        .lines()
        .filter_map(|l| l.trim().strip_prefix("| '"))
        .filter_map(|l| l.strip_suffix("'").or_else(|| l.strip_suffix("';")))
        .collect();
    let mut in_rust: Vec<&str> = ErrorCode::ALL
        .iter()
        .map(|c| c.as_str())
        .chain(SdkErrorCode::SDK_ONLY.iter().map(|c| c.as_str()))
        .collect();
    in_ts.sort_unstable();
    in_rust.sort_unstable();
    assert_eq!(in_ts, in_rust);
}
