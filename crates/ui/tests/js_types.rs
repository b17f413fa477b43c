//! The npm package's TypeScript declarations must list exactly the string keys and theme names the
//! Rust tables define (a key missing in TS cannot be overridden without a cast; one missing in
//! Rust would be silently ignored).

#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use consentry_ui::strings::DEFAULTS;
use consentry_ui::style::THEME_VARS;

fn index_dts() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../packages/consentry/src/index.d.ts"
    );
    std::fs::read_to_string(path).expect("index.d.ts")
}

/// The member names of `export interface <name> { ... }` (one member per line).
fn members(dts: &str, name: &str) -> Vec<String> {
    let start = dts
        .find(&format!("export interface {name} "))
        .unwrap_or_else(|| panic!("no interface {name}"));
    let body = &dts[start..];
    let body = &body[body.find('{').unwrap() + 1..body.find("\n}").unwrap()];
    let mut out: Vec<String> = body
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("/**") && !l.starts_with('*') && !l.starts_with('['))
        .filter_map(|l| {
            l.split_once("?:")
                .map(|(k, _)| k.trim().trim_matches('\'').to_owned())
        })
        .collect();
    out.sort();
    out
}

#[test]
fn typescript_string_keys_match_the_rust_defaults() {
    let mut rust: Vec<String> = DEFAULTS.iter().map(|(k, _)| (*k).to_owned()).collect();
    rust.sort();
    assert_eq!(members(&index_dts(), "ConsentryStrings"), rust);
}

#[test]
fn typescript_theme_names_match_the_rust_table() {
    let mut rust: Vec<String> = THEME_VARS.iter().map(|(k, _)| (*k).to_owned()).collect();
    rust.sort();
    assert_eq!(members(&index_dts(), "ConsentryThemeColors"), rust);
}

#[test]
fn every_default_string_fills_only_known_placeholders() {
    for (key, text) in DEFAULTS {
        let filled = consentry_ui::strings::fill(
            text,
            &[
                ("app", "A"),
                ("host", "H"),
                ("account", "U"),
                ("date", "D"),
                ("code", "C"),
                ("org", "O"),
                ("count", "N"),
            ],
        );
        assert!(!filled.contains('{'), "{key}: {filled}");
    }
}
