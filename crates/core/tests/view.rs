//! What the prebuilt consent screen shows, read from server answers: grouping, the scopes that
//! are never granted, the client's trust, and the URLs that may reach an `<img src>`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use consentry_core::{ConnectedAppView, ConsentScreen, SdkErrorCode, safe_image_url};
use consentry_testkit::platform::FakeJson;
use serde_json::{Value, json};

fn start_answer() -> Value {
    json!({
        "user": {"user_id": "u1", "email": "alice@example.com", "name": "Alice", "roles": []},
        "client": {"client_id": "c1", "client_name": "Notes Agent", "logo_uri": "https://agent.example/logo.png",
                   "client_uri": "https://agent.example", "verified": true},
        "redirect_host": "agent.example",
        "consent_required": true,
        "scope_results": [
            {"scope": "notes:read", "description": "Read your notes", "resource": "https://mcp.example/mcp", "is_grantable": true, "already_granted": true},
            {"scope": "files:read", "description": "", "resource": "https://files.example/", "is_grantable": true, "already_granted": false},
            {"scope": "notes:write", "description": "Write notes", "resource": "https://mcp.example/mcp", "is_grantable": true, "already_granted": false},
            {"scope": "admin", "description": "Administer", "resource": "https://mcp.example/mcp", "is_grantable": false, "already_granted": false}
        ],
        "resources": [{"uri": "https://mcp.example/mcp", "name": "Notes"}, {"uri": "https://files.example/", "name": ""}]
    })
}

#[test]
fn scopes_group_by_resource_in_request_order_and_ungrantable_ones_stand_apart() {
    let screen = ConsentScreen::from_json(&FakeJson(start_answer())).unwrap();
    assert_eq!(screen.client.name, "Notes Agent");
    assert!(screen.client.verified);
    assert_eq!(screen.redirect_host, "agent.example");
    assert_eq!(screen.user.label(), "alice@example.com");
    let groups: Vec<(&str, Vec<&str>)> = screen
        .resources
        .iter()
        .map(|r| {
            (
                r.name.as_str(),
                r.scopes.iter().map(|s| s.scope.as_str()).collect(),
            )
        })
        .collect();
    assert_eq!(
        groups,
        vec![
            ("Notes", vec!["notes:read", "notes:write"]),
            // No display name: the URI stands in.
            ("https://files.example/", vec!["files:read"])
        ]
    );
    // An empty description falls back to the scope itself.
    assert_eq!(screen.resources[1].scopes[0].description, "files:read");
    assert!(screen.resources[0].scopes[0].already_granted);
    assert_eq!(screen.not_grantable.len(), 1);
    assert_eq!(screen.not_grantable[0].scope, "admin");
    // What Allow grants never includes the ungrantable scope.
    assert!(screen.grantable_scopes().all(|s| s.scope != "admin"));
    let sections = screen.default_sections();
    assert_eq!(sections[0].header.as_deref(), Some("Notes"));
    assert_eq!(sections[0].items[0].text, "Read your notes");
    assert!(sections[0].items[0].already_granted);
}

#[test]
fn missing_trust_flags_and_names_fall_back_to_the_careful_side() {
    let mut v = start_answer();
    v["client"] = json!({"client_id": "https://cimd.example/client.json", "client_name": "  "});
    v["user"] = json!({"user_id": "u1"});
    v.as_object_mut().unwrap().remove("consent_required");
    v["scope_results"][0]
        .as_object_mut()
        .unwrap()
        .remove("is_grantable");
    let screen = ConsentScreen::from_json(&FakeJson(v)).unwrap();
    assert!(!screen.client.verified, "no verified flag means unverified");
    assert_eq!(screen.client.name, "https://cimd.example/client.json");
    assert_eq!(screen.client.logo_uri, None);
    assert!(screen.consent_required, "no flag means ask");
    assert_eq!(screen.user.label(), "u1");
    assert!(
        screen.not_grantable.iter().any(|s| s.scope == "notes:read"),
        "no is_grantable means not grantable"
    );
}

#[test]
fn answers_without_what_the_screen_must_show_are_invalid_responses() {
    for field in ["client", "user", "redirect_host", "scope_results"] {
        let mut v = start_answer();
        v.as_object_mut().unwrap().remove(field);
        let e = ConsentScreen::from_json(&FakeJson(v)).unwrap_err();
        assert_eq!(e.code, SdkErrorCode::InvalidResponse, "{field}");
        assert!(e.description.contains(field), "{field}: {}", e.description);
    }
    let mut v = start_answer();
    v["client"].as_object_mut().unwrap().remove("client_id");
    let e = ConsentScreen::from_json(&FakeJson(v)).unwrap_err();
    assert!(
        e.description.contains("client.client_id"),
        "{}",
        e.description
    );
}

#[test]
fn only_https_or_loopback_http_images_are_kept() {
    let table = [
        ("https://agent.example/logo.png", true),
        ("HTTPS://agent.example/logo.png", true),
        ("http://127.0.0.1:3000/logo.png", true),
        ("http://localhost/logo.png", true),
        ("http://[::1]:8080/logo.png", true),
        ("http://agent.example/logo.png", false),
        ("http://localhost.evil.example/logo.png", false),
        ("javascript:alert(1)", false),
        ("data:image/svg+xml,<svg onload=alert(1)>", false),
        ("file:///etc/passwd", false),
        ("//agent.example/logo.png", false),
        ("https://", false),
        ("https://agent.example/a b.png", false),
        ("", false),
    ];
    for (url, ok) in table {
        assert_eq!(safe_image_url(url), ok, "{url}");
    }
}

#[test]
fn connected_apps_keep_revocable_entries_only() {
    let list = json!([
        {"client_id": "c1", "client_name": "Notes Agent", "logo_uri": "javascript:x", "scopes": ["notes:read", 7],
         "resources": ["https://mcp.example/mcp"], "granted_at": 1_800_000_000, "last_used_at": null},
        {"client_name": "no id"},
        {"client_id": "c2", "scopes": [], "resources": [], "granted_at": 1_800_000_100, "last_used_at": 1_800_000_200}
    ]);
    let apps = ConnectedAppView::list_from_json(&FakeJson(list));
    assert_eq!(apps.len(), 2);
    assert_eq!(apps[0].name, "Notes Agent");
    assert_eq!(apps[0].logo_uri, None);
    assert_eq!(apps[0].scopes, vec!["notes:read"]);
    assert_eq!(apps[0].last_used_at, None);
    assert_eq!(apps[1].name, "c2");
    assert_eq!(apps[1].last_used_at, Some(1_800_000_200.0));
    assert!(ConnectedAppView::list_from_json(&FakeJson(json!({"not": "a list"}))).is_empty());
}
