//! Organizations: the calls (paths, bearer, If-Match, the body), the policy document's JSON both
//! ways (checked against the protocol crate's serde, the contract), and the error codes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use consentry_core::{
    AppMode, AppRule, Client, Method, OrgAppView, OrgPolicy, Policy, PolicyLimits, PolicyView,
    SdkErrorCode, Session, policy_etag, policy_from_json, policy_to_json,
};
use consentry_protocol::ErrorCode;
use consentry_protocol::policy::ScopeRules;
use consentry_testkit::platform::{FakeJson, FakePlatform, NOW, block_on, json};
use serde_json::json;

fn signed_in(platform: FakePlatform) -> Client<FakePlatform> {
    let client = Client::new(platform, "https://auth.example.com");
    client.set_session(Some(Session {
        token: "sess".to_owned(),
        expires_at: Some(NOW + 600.0),
    }));
    client
}

fn full_policy() -> OrgPolicy {
    let mut roles = BTreeMap::new();
    roles.insert(
        "notes:write".to_owned(),
        vec!["editor".to_owned(), "a\"b\\c\n".to_owned()],
    );
    OrgPolicy {
        first_party: AppRule {
            mode: AppMode::NotAllowed,
            ..AppRule::default()
        },
        third_party: AppRule {
            mode: AppMode::Restricted,
            allow_clients: vec!["cyc-1".to_owned(), "ünï\u{1}".to_owned()],
            allow_hosts: vec!["claude.ai".to_owned(), "*.example.com".to_owned()],
        },
        scopes: ScopeRules {
            disallowed: vec!["notes:delete".to_owned()],
            required_roles: roles,
        },
        limits: PolicyLimits {
            access_token_ttl_seconds: Some(900),
            grant_max_lifetime_seconds: Some(-5),
        },
    }
}

#[test]
fn the_policy_round_trips_through_the_contract() {
    for contract in [OrgPolicy::default(), full_policy()] {
        // What the server writes reads back as the same document …
        let served = serde_json::to_value(&contract).unwrap();
        let held: Policy = policy_from_json(&FakeJson(served));
        assert_eq!(held.disallowed, contract.scopes.disallowed);
        assert_eq!(
            held.required_roles.len(),
            contract.scopes.required_roles.len()
        );
        // … and what the browser writes is what the server parses (serde, deny_unknown_fields).
        let text = policy_to_json(&held);
        let parsed: OrgPolicy = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed, contract, "{text}");
    }
    assert_eq!(
        policy_to_json(&Policy::default()),
        r#"{"first_party":{"mode":"all_allowed"},"third_party":{"mode":"all_allowed"},"scopes":{},"limits":{}}"#
    );
    assert_eq!(policy_etag(42), "\"42\"");
    // Lenient reading: wrong types are defaults, the server names the error on save.
    let odd = policy_from_json(&FakeJson(
        json!({"first_party": {"mode": 3}, "limits": "x"}),
    ));
    assert_eq!(odd, Policy::default());
}

#[test]
fn the_calls_send_what_the_contract_says() {
    let state = json!({
        "organization_id": "org_1", "organization_name": "Example Corp", "version": 7,
        "policy": {"first_party": {"mode": "all_allowed"}, "third_party": {"mode": "restricted", "allow_hosts": ["claude.ai"]}},
        "available_scopes": [{"scope": "notes:read", "description": "Read notes", "required_roles": []},
                             {"scope": "notes:delete", "description": ""}],
        "revoked_grants": 2
    });
    let platform = FakePlatform::answering([
        json(
            200,
            json!({"organization_id": "org_1", "organization_name": "Example Corp", "is_admin": true}),
        ),
        json(
            200,
            json!({"organization_id": "org_1", "apps": [
            {"client_id": "a1", "client_name": "Acme", "logo_uri": "javascript:x", "first_party": false, "host": "acme.example",
             "members": [{"user_id": "u1", "email": "a@x", "scopes": ["notes:read"], "resources": [], "granted_at": 1, "last_used_at": null},
                         {"user_id": "u2", "scopes": [], "resources": [], "granted_at": 2}]},
            {"client_name": "no id"}]}),
        ),
        json(
            200,
            json!({"revoked": true, "client_id": "a b", "revoked_grants": 3}),
        ),
        json(200, state.clone()),
        json(200, state),
    ]);
    let client = signed_in(platform);
    block_on(async {
        client.organization().await.unwrap();
        let apps = OrgAppView::list_from_json(&client.organization_connected_apps().await.unwrap());
        assert_eq!(apps.len(), 1);
        assert_eq!(apps[0].logo_uri, None);
        assert_eq!(apps[0].host.as_deref(), Some("acme.example"));
        assert_eq!(apps[0].members[0].label, "a@x");
        assert_eq!(apps[0].members[1].label, "u2");
        client.revoke_organization_app("a b").await.unwrap();
        let view = PolicyView::from_json(&client.organization_policy().await.unwrap()).unwrap();
        assert_eq!(view.version, 7);
        assert_eq!(view.organization_name, "Example Corp");
        assert_eq!(view.available_scopes[1].description, "notes:delete");
        assert_eq!(view.policy.third_party.allow_hosts, ["claude.ai"]);
        assert_eq!(view.revoked_grants, Some(2));
        client
            .put_organization_policy(&view.policy, view.version)
            .await
            .unwrap();
    });
    let sent = client.platform().requests.borrow();
    let paths: Vec<(Method, &str)> = sent
        .iter()
        .map(|r| {
            (
                r.method,
                r.url.strip_prefix("https://auth.example.com").unwrap(),
            )
        })
        .collect();
    assert_eq!(
        paths,
        [
            (Method::Get, "/v1/organization"),
            (Method::Get, "/v1/organization/connected_apps"),
            (Method::Post, "/v1/organization/connected_apps/a%20b/revoke"),
            (Method::Get, "/v1/organization/policy"),
            (Method::Put, "/v1/organization/policy"),
        ]
    );
    assert!(sent.iter().all(|r| r.bearer.as_deref() == Some("sess")));
    let put = &sent[4];
    assert_eq!(put.if_match.as_deref(), Some("\"7\""));
    let body: OrgPolicy = serde_json::from_str(put.json.as_deref().unwrap()).unwrap();
    assert_eq!(body.third_party.allow_hosts, ["claude.ai"]);
    assert!(sent[..4].iter().all(|r| r.if_match.is_none()));
}

#[test]
fn organization_errors_keep_their_codes() {
    let platform = FakePlatform::answering([
        json(
            403,
            json!({"error": "forbidden", "error_description": "admins only"}),
        ),
        json(
            412,
            json!({"error": "precondition_failed", "error_description": "changed"}),
        ),
        json(
            400,
            json!({"error": "invalid_request", "error_description": "third_party.allow_hosts[1]: bad"}),
        ),
        json(200, json!({"organization_id": "o"})),
    ]);
    let client = signed_in(platform);
    block_on(async {
        let e = client.organization_connected_apps().await.unwrap_err();
        assert_eq!(e.code, SdkErrorCode::Server(ErrorCode::Forbidden));
        assert_eq!(e.code.as_str(), "forbidden");
        assert_eq!(e.status, Some(403));
        let e = client
            .put_organization_policy(&Policy::default(), 1)
            .await
            .unwrap_err();
        assert_eq!(e.code.as_str(), "precondition_failed");
        let e = client
            .put_organization_policy(&Policy::default(), 1)
            .await
            .unwrap_err();
        assert_eq!(e.description, "third_party.allow_hosts[1]: bad");
        // A policy answer without a version is not one.
        let e = client.organization_policy().await.unwrap_err();
        assert_eq!(e.code, SdkErrorCode::InvalidResponse);
    });
}

#[test]
fn an_app_refused_for_the_org_carries_its_names() {
    let platform = FakePlatform::answering([json(
        403,
        json!({"error": "app_not_allowed_for_org", "error_description": "no",
               "client_name": "Acme Agent", "organization_name": "Example Corp",
               "redirect_uri": "http://127.0.0.1:9/cb?error=access_denied"}),
    )]);
    let client = signed_in(platform);
    let e = block_on(client.organization()).unwrap_err();
    assert_eq!(e.code.as_str(), "app_not_allowed_for_org");
    assert_eq!(e.client_name.as_deref(), Some("Acme Agent"));
    assert_eq!(e.organization_name.as_deref(), Some("Example Corp"));
    assert!(e.redirect_uri.is_some());
}
