//! Organizations and their policy, attacked over HTTP against the real server on both backends:
//! a member is (organization, user id); an organization admin reaches only their own
//! organization and only while they hold an admin role; a policy change is versioned
//! (`If-Match`) and revokes at once every grant it excludes; the one decision applies the
//! policy at consent, code redemption, refresh and client_credentials.

use consentry_testkit::*;
use reqwest::Method;
use serde_json::{Value, json};

on_both_backends!(
    the_same_user_id_in_two_organizations_is_two_members,
    a_token_without_the_required_organization_claim_is_refused,
    organization_api_is_for_admins_of_the_sessions_own_organization,
    a_demoted_admin_loses_the_organization_api_with_the_next_session,
    a_policy_change_needs_the_current_version,
    restricting_third_party_apps_revokes_and_refuses_them_in_that_organization_only,
    allow_lists_admit_listed_clients_and_metadata_hosts_only,
    a_disallowed_scope_is_not_grantable_and_its_grants_are_revoked,
    organization_required_roles_override_the_servers,
    organization_limits_shorten_lifetimes,
    the_policy_is_evaluated_on_refresh_and_code_redemption_at_its_current_version,
    invalid_policies_are_refused_naming_the_field_and_change_nothing,
    admin_api_lists_organizations_and_manages_any_organizations_policy_and_apps,
    admin_created_clients_are_first_party,
    client_credentials_follow_the_implicit_organizations_policy,
    admin_user_endpoints_address_a_member_by_organization,
    a_policy_changed_on_one_instance_holds_on_another_at_once,
);

const ADMIN_KEY: &str = "admin-key-0123456789abcdefghijklmnopqrstuv";
const NOTES_SECRET: &str = "notes-introspection-secret-0123456789abcdef";

fn setup(b: Backend) -> Setup {
    Setup::new(b)
        .introspection_secret(NOTES_SECRET)
        .top("admin_key", &format!("\"{ADMIN_KEY}\""))
        .configure(|c| {
            let p = &mut c.token_profiles[0];
            p.claims = Some(consentry_server::config::builder::Claims {
                organization_id: Some("org_id".into()),
                organization_name: Some("org_name".into()),
                ..Default::default()
            });
        })
}

/// A TAT for `user`, a member of `org` with `roles`.
fn member_tat(s: &TestServer, user: &str, org: &str, roles: &[&str]) -> String {
    let mut claims = tat_claims(user);
    claims["org_id"] = json!(org);
    claims["org_name"] = json!(format!("{org} Inc"));
    claims["roles"] = json!(roles);
    s.keys.sign(&claims)
}

async fn member(s: &TestServer, user: &str, org: &str, roles: &[&str]) -> String {
    let (status, body) = s.attest(&member_tat(s, user, org, roles)).await;
    assert_eq!(status, 200, "attest: {body}");
    body["session_token"].as_str().unwrap().to_owned()
}

/// A full flow for `session` with `params`: (tokens, the access token's claims).
async fn connect(s: &TestServer, session: &str, pkce: &Pkce, params: &Value) -> Value {
    let (status, body) = s.start_flow(session, params).await;
    assert_eq!(status, 200, "start: {body}");
    let (status, body) = s.submit(session, params, true).await;
    assert_eq!(status, 200, "submit: {body}");
    let loc = body["redirect_uri"].as_str().unwrap();
    let code = query(loc).get("code").cloned().expect("a code");
    let (status, body) = s
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", params["client_id"].as_str().unwrap()),
            ("redirect_uri", params["redirect_uri"].as_str().unwrap()),
            ("code_verifier", &pkce.verifier),
        ])
        .await;
    assert_eq!(status, 200, "token: {body}");
    body
}

async fn send(
    s: &TestServer,
    method: Method,
    path: &str,
    bearer: &str,
    extra: &[(&str, &str)],
    body: Option<&Value>,
) -> RawResponse {
    let auth = format!("Bearer {bearer}");
    let mut headers = vec![("authorization", auth.as_str())];
    headers.extend_from_slice(extra);
    let bytes = match body {
        Some(b) => {
            headers.push(("content-type", "application/json"));
            serde_json::to_vec(b).unwrap()
        }
        None => Vec::new(),
    };
    s.raw(method, path, &headers, bytes).await
}

async fn get(s: &TestServer, path: &str, bearer: &str) -> RawResponse {
    send(s, Method::GET, path, bearer, &[], None).await
}

/// `PUT` a policy with `If-Match` set to the current ETag (read first).
async fn put_policy(s: &TestServer, path: &str, bearer: &str, policy: &Value) -> RawResponse {
    let current = get(s, path, bearer).await;
    assert_eq!(current.status, 200, "{}", current.text);
    let etag = current.header("etag").unwrap().to_owned();
    send(
        s,
        Method::PUT,
        path,
        bearer,
        &[("if-match", &etag)],
        Some(policy),
    )
    .await
}

async fn register_dcr(s: &TestServer, name: &str) -> String {
    let (status, reg) = s
        .post_json(
            "/oauth2/register",
            None,
            &json!({
                "client_name": name,
                "redirect_uris": ["http://127.0.0.1:9999/dcr"],
                "token_endpoint_auth_method": "none",
            }),
        )
        .await;
    assert_eq!(status, 201, "register: {reg}");
    reg["client_id"].as_str().unwrap().to_owned()
}

fn dcr_params(pkce: &Pkce, client_id: &str) -> Value {
    let mut p = params(pkce, "notes:read");
    p["client_id"] = json!(client_id);
    p["redirect_uri"] = json!("http://127.0.0.1:9999/dcr");
    p
}

fn err(r: &RawResponse) -> (u16, &Value) {
    (r.status, &r.json)
}

async fn the_same_user_id_in_two_organizations_is_two_members(b: Backend) {
    let s = setup(b).start().await;
    let pkce = Pkce::new();
    let ana_a = member(&s, "ana", "org-a", &[]).await;
    let ana_b = member(&s, "ana", "org-b", &[]).await;
    let tokens_a = connect(&s, &ana_a, &pkce, &params(&pkce, "notes:read")).await;
    // The access token says which organization the user acts in; so does introspection.
    let claims = s
        .verify_access_token(tokens_a["access_token"].as_str().unwrap())
        .await;
    assert_eq!(claims["org_id"], "org-a");
    assert_eq!(claims["sub"], "ana");
    // The other member with the same user id has nothing connected, and consent is theirs to
    // give: the screen asks again.
    let apps_b = get(&s, "/v1/connected_apps", &ana_b).await;
    assert_eq!(apps_b.json, json!([]), "{}", apps_b.text);
    let (status, start_b) = s.start_flow(&ana_b, &params(&pkce, "notes:read")).await;
    assert_eq!(status, 200);
    assert_eq!(start_b["consent_required"], true, "{start_b}");
    assert_eq!(start_b["user"]["organization_id"], "org-b");
    assert_eq!(start_b["user"]["organization_name"], "org-b Inc");
    // Revoking the app as one member leaves the other's grant alone.
    let tokens_b = connect(&s, &ana_b, &pkce, &params(&pkce, "notes:read")).await;
    let r = send(
        &s,
        Method::POST,
        &format!("/v1/connected_apps/{CLIENT}/revoke"),
        &ana_a,
        &[],
        Some(&json!({})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let (status, _) = s
        .refresh(tokens_a["refresh_token"].as_str().unwrap(), CLIENT)
        .await;
    assert_eq!(status, 400);
    let (status, body) = s
        .refresh(tokens_b["refresh_token"].as_str().unwrap(), CLIENT)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        jwt_claims(body["access_token"].as_str().unwrap())["org_id"],
        "org-b"
    );
    assert_eq!(
        s.db_text("SELECT CAST(COUNT(*) AS TEXT) FROM users WHERE user_id = 'ana'")
            .await,
        "2"
    );
}

async fn a_token_without_the_required_organization_claim_is_refused(b: Backend) {
    let s = setup(b.clone())
        .configure(|c| c.token_profiles[0].require_organization = Some(true))
        .start()
        .await;
    let (status, body) = s.attest(&s.keys.tat("no-org")).await;
    assert_error(
        (status, &body),
        401,
        "invalid_trusted_auth_token",
        &["org_id", "require_organization"],
    );
    // An empty organization claim is no organization either.
    let mut claims = tat_claims("empty-org");
    claims["org_id"] = json!("  ");
    let (status, body) = s.attest(&s.keys.sign(&claims)).await;
    assert_error(
        (status, &body),
        401,
        "invalid_trusted_auth_token",
        &["org_id"],
    );
    assert_eq!(
        s.db_text("SELECT CAST(COUNT(*) AS TEXT) FROM users").await,
        "0",
        "a refused token records no one"
    );
    // Without require_organization such a token is a member of the implicit organization.
    let s2 = setup(b).start().await;
    let session = s2.session("plain").await;
    let info = get(&s2, "/v1/organization", &session).await;
    assert_eq!(info.json["organization_id"], "default", "{}", info.text);
}

async fn organization_api_is_for_admins_of_the_sessions_own_organization(b: Backend) {
    let s = setup(b).start().await;
    let pkce = Pkce::new();
    let admin_a = member(&s, "boss-a", "org-a", &["admin"]).await;
    let user_a = member(&s, "ana", "org-a", &["editor"]).await;
    let admin_b = member(&s, "boss-b", "org-b", &["admin"]).await;
    let user_b = member(&s, "bob", "org-b", &[]).await;
    connect(&s, &user_a, &pkce, &params(&pkce, "notes:read")).await;
    let tokens_b = connect(&s, &user_b, &pkce, &params(&pkce, "notes:read")).await;

    let info = get(&s, "/v1/organization", &admin_a).await;
    assert_eq!(
        info.json,
        json!({"organization_id": "org-a", "organization_name": "org-a Inc", "is_admin": true})
    );
    let info = get(&s, "/v1/organization", &user_a).await;
    assert_eq!(info.json["is_admin"], false);

    // A member without an admin role: 403 on everything that manages the organization.
    for r in [
        get(&s, "/v1/organization/connected_apps", &user_a).await,
        get(&s, "/v1/organization/policy", &user_a).await,
        send(
            &s,
            Method::PUT,
            "/v1/organization/policy",
            &user_a,
            &[("if-match", "\"1\"")],
            Some(&json!({"third_party": {"mode": "not_allowed"}})),
        )
        .await,
        send(
            &s,
            Method::POST,
            &format!("/v1/organization/connected_apps/{CLIENT}/revoke"),
            &user_a,
            &[],
            Some(&json!({})),
        )
        .await,
    ] {
        assert_error(err(&r), 403, "forbidden", &["admin_roles"]);
    }

    // Admin A sees A's apps and members only.
    let apps = get(&s, "/v1/organization/connected_apps", &admin_a).await;
    assert_eq!(apps.status, 200, "{}", apps.text);
    assert_eq!(apps.json["organization_id"], "org-a");
    let members: Vec<&str> = apps.json["apps"][0]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(members, ["ana"]);
    assert_eq!(apps.json["apps"][0]["first_party"], true);
    // Admin A revokes the app for everyone in A: B's member keeps theirs.
    let r = send(
        &s,
        Method::POST,
        &format!("/v1/organization/connected_apps/{CLIENT}/revoke"),
        &admin_a,
        &[],
        Some(&json!({})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["revoked_grants"], 1);
    let (status, body) = s
        .refresh(tokens_b["refresh_token"].as_str().unwrap(), CLIENT)
        .await;
    assert_eq!(status, 200, "org-b untouched: {body}");
    // Admin A's policy change is A's: B's version does not move.
    let r = put_policy(
        &s,
        "/v1/organization/policy",
        &admin_a,
        &json!({"first_party": {"mode": "not_allowed"}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["organization_id"], "org-a");
    let pb = get(&s, "/v1/organization/policy", &admin_b).await;
    assert_eq!(pb.json["version"], 1, "{}", pb.text);
    assert_eq!(pb.json["policy"]["first_party"]["mode"], "all_allowed");
    // There is no way to name another organization in the browser API.
    let r = get(&s, "/v1/organization/org-b/policy", &admin_a).await;
    assert_eq!(r.status, 404);
    let r = get(
        &s,
        "/v1/organization/policy?organization_id=org-b",
        &admin_a,
    )
    .await;
    assert_eq!(r.json["organization_id"], "org-a");
    // Nor does the admin API accept a session.
    let r = get(&s, "/admin/v1/organizations/org-b/policy", &admin_a).await;
    assert_error(err(&r), 401, "invalid_token", &["admin_key"]);
}

async fn a_demoted_admin_loses_the_organization_api_with_the_next_session(b: Backend) {
    let s = setup(b).start().await;
    let admin = member(&s, "carol", "org-a", &["admin"]).await;
    assert_eq!(get(&s, "/v1/organization/policy", &admin).await.status, 200);
    let demoted = member(&s, "carol", "org-a", &["viewer"]).await;
    let r = get(&s, "/v1/organization/policy", &demoted).await;
    assert_error(err(&r), 403, "forbidden", &[]);
    let info = get(&s, "/v1/organization", &demoted).await;
    assert_eq!(info.json["is_admin"], false);
}

async fn a_policy_change_needs_the_current_version(b: Backend) {
    let s = setup(b).start().await;
    let admin = member(&s, "boss", "org-a", &["admin"]).await;
    let current = get(&s, "/v1/organization/policy", &admin).await;
    assert_eq!(current.header("etag"), Some("\"1\""));
    let policy = json!({"third_party": {"mode": "not_allowed"}});
    // Missing If-Match: 428, nothing changes.
    let r = send(
        &s,
        Method::PUT,
        "/v1/organization/policy",
        &admin,
        &[],
        Some(&policy),
    )
    .await;
    assert_error(err(&r), 428, "precondition_failed", &["If-Match"]);
    // The current version: applied, version 2.
    let r = send(
        &s,
        Method::PUT,
        "/v1/organization/policy",
        &admin,
        &[("if-match", "\"1\"")],
        Some(&policy),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("etag"), Some("\"2\""));
    assert_eq!(r.json["revoked_grants"], 0);
    // A second admin still holding version 1: 412, their change is not applied.
    let r = send(
        &s,
        Method::PUT,
        "/v1/organization/policy",
        &admin,
        &[("if-match", "\"1\"")],
        Some(&json!({})),
    )
    .await;
    assert_error(err(&r), 412, "precondition_failed", &["version 2"]);
    let now = get(&s, "/v1/organization/policy", &admin).await;
    assert_eq!(now.json["policy"]["third_party"]["mode"], "not_allowed");
    assert_eq!(now.json["version"], 2);
    // A malformed If-Match names the header.
    let r = send(
        &s,
        Method::PUT,
        "/v1/organization/policy",
        &admin,
        &[("if-match", "2")],
        Some(&json!({})),
    )
    .await;
    assert_error(err(&r), 400, "invalid_request", &["If-Match"]);
}

async fn restricting_third_party_apps_revokes_and_refuses_them_in_that_organization_only(
    b: Backend,
) {
    let s = setup(b).start().await;
    let pkce = Pkce::new();
    let dcr = register_dcr(&s, "Acme Agent").await;
    let admin_a = member(&s, "boss", "org-a", &["admin"]).await;
    let ana = member(&s, "ana", "org-a", &[]).await;
    let bob = member(&s, "bob", "org-b", &[]).await;
    let before_a = connect(&s, &ana, &pkce, &dcr_params(&pkce, &dcr)).await;
    let first_party = connect(&s, &ana, &pkce, &params(&pkce, "notes:read")).await;
    let before_b = connect(&s, &bob, &pkce, &dcr_params(&pkce, &dcr)).await;

    let r = put_policy(
        &s,
        "/v1/organization/policy",
        &admin_a,
        &json!({"third_party": {"mode": "restricted", "allow_clients": ["cyc-someone-else"]}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json["revoked_grants"], 1,
        "only the third-party grant in org-a"
    );

    // The app connected before the change: its refresh token and access token are dead.
    let (status, body) = s
        .refresh(before_a["refresh_token"].as_str().unwrap(), &dcr)
        .await;
    assert_error((status, &body), 400, "invalid_grant", &[]);
    let intro = s
        .raw(
            Method::POST,
            "/oauth2/introspect",
            &[
                ("authorization", &format!("Bearer {NOTES_SECRET}")),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            form_body(&[("token", before_a["access_token"].as_str().unwrap())]),
        )
        .await;
    assert_eq!(intro.status, 200, "{}", intro.text);
    assert_eq!(intro.json["active"], false, "{}", intro.text);
    // At consent: refused with the app and the organization named; never the allow-list.
    let ana2 = member(&s, "ana", "org-a", &[]).await;
    let (status, body) = s.start_flow(&ana2, &dcr_params(&pkce, &dcr)).await;
    assert_error(
        (status, &body),
        403,
        "app_not_allowed_for_org",
        &["org-a Inc", "Acme Agent", "third_party"],
    );
    assert_eq!(body["client_name"], "Acme Agent");
    assert_eq!(body["organization_name"], "org-a Inc");
    assert!(
        !body.to_string().contains("cyc-someone-else"),
        "the allow-list is never shown: {body}"
    );
    // The first-party app is untouched.
    let (status, body) = s
        .refresh(first_party["refresh_token"].as_str().unwrap(), CLIENT)
        .await;
    assert_eq!(status, 200, "{body}");
    // The other organization is unaffected.
    let (status, body) = s
        .refresh(before_b["refresh_token"].as_str().unwrap(), &dcr)
        .await;
    assert_eq!(status, 200, "{body}");
    let bob2 = member(&s, "bob", "org-b", &[]).await;
    let (status, body) = s.start_flow(&bob2, &dcr_params(&pkce, &dcr)).await;
    assert_eq!(status, 200, "{body}");
}

async fn allow_lists_admit_listed_clients_and_metadata_hosts_only(b: Backend) {
    let s = setup(b).start().await;
    let pkce = Pkce::new();
    let listed = register_dcr(&s, "Listed").await;
    let unlisted = register_dcr(&s, "Unlisted").await;
    let admin = member(&s, "boss", "org-a", &["admin"]).await;
    let r = put_policy(
        &s,
        "/v1/organization/policy",
        &admin,
        &json!({
            "first_party": {"mode": "restricted", "allow_clients": [CLIENT]},
            "third_party": {"mode": "restricted", "allow_clients": [listed], "allow_hosts": ["claude.ai"]}
        }),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let ana = member(&s, "ana", "org-a", &[]).await;
    connect(&s, &ana, &pkce, &dcr_params(&pkce, &listed)).await;
    connect(&s, &ana, &pkce, &params(&pkce, "notes:read")).await;
    let (status, body) = s.start_flow(&ana, &dcr_params(&pkce, &unlisted)).await;
    assert_error(
        (status, &body),
        403,
        "app_not_allowed_for_org",
        &["Unlisted"],
    );
    // Another first-party app, not on the first-party list.
    let mut other = params(&pkce, "notes:read");
    other["client_id"] = json!("other-agent");
    other["redirect_uri"] = json!("https://other.example.com/cb");
    let (status, body) = s.start_flow(&ana, &other).await;
    assert_error(
        (status, &body),
        403,
        "app_not_allowed_for_org",
        &["first_party"],
    );
    // A registered client's name is not its host: allow_hosts does not admit a DCR client
    // whatever it calls itself.
    let claude = register_dcr(&s, "claude.ai").await;
    let (status, body) = s.start_flow(&ana, &dcr_params(&pkce, &claude)).await;
    assert_error((status, &body), 403, "app_not_allowed_for_org", &[]);
}

async fn a_disallowed_scope_is_not_grantable_and_its_grants_are_revoked(b: Backend) {
    let s = setup(b).start().await;
    let pkce = Pkce::new();
    let admin = member(&s, "boss", "org-a", &["admin"]).await;
    let ana = member(&s, "ana", "org-a", &[]).await;
    let writer = connect(&s, &ana, &pkce, &params(&pkce, "notes:read notes:write")).await;
    let reader = {
        let mut p = params(&pkce, "notes:read");
        p["client_id"] = json!("other-agent");
        p["redirect_uri"] = json!("https://other.example.com/cb");
        connect(&s, &ana, &pkce, &p).await
    };
    let r = put_policy(
        &s,
        "/v1/organization/policy",
        &admin,
        &json!({"scopes": {"disallowed": ["notes:write"]}}),
    )
    .await;
    assert_eq!(r.json["revoked_grants"], 1, "{}", r.text);
    let (status, _) = s
        .refresh(writer["refresh_token"].as_str().unwrap(), CLIENT)
        .await;
    assert_eq!(status, 400);
    let (status, body) = s
        .refresh(reader["refresh_token"].as_str().unwrap(), "other-agent")
        .await;
    assert_eq!(status, 200, "{body}");
    // The screen shows it as not grantable (why), the rest can still be granted.
    let (status, start) = s
        .start_flow(&ana, &params(&pkce, "notes:read notes:write"))
        .await;
    assert_eq!(status, 200, "{start}");
    let line = |sc: &str| {
        start["scope_results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["scope"] == sc)
            .cloned()
            .unwrap()
    };
    assert_eq!(line("notes:write")["is_grantable"], false);
    assert_eq!(
        line("notes:write")["not_grantable_reason"],
        "scope_not_allowed_for_org"
    );
    assert_eq!(line("notes:read")["is_grantable"], true);
    let (status, body) = s
        .submit(&ana, &params(&pkce, "notes:read notes:write"), true)
        .await;
    assert_eq!(status, 200, "{body}");
    let code = query(body["redirect_uri"].as_str().unwrap())["code"].clone();
    let (status, body) = s.redeem(&code, CLIENT, REDIRECT, &pkce.verifier).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "notes:read");
}

async fn organization_required_roles_override_the_servers(b: Backend) {
    let s = setup(b).start().await;
    let pkce = Pkce::new();
    let admin = member(&s, "boss", "org-a", &["admin"]).await;
    let r = put_policy(
        &s,
        "/v1/organization/policy",
        &admin,
        &json!({"scopes": {"required_roles": {"notes:write": ["editor"], "notes:admin": ["owner"]}}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let viewer = member(&s, "vi", "org-a", &["viewer"]).await;
    let (_, start) = s
        .start_flow(&viewer, &params(&pkce, "notes:read notes:write"))
        .await;
    let write = start["scope_results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["scope"] == "notes:write")
        .cloned()
        .unwrap();
    assert_eq!(write["is_grantable"], false, "{start}");
    assert_eq!(write["not_grantable_reason"], "role_required");
    let editor = member(&s, "ed", "org-a", &["editor"]).await;
    let tokens = connect(&s, &editor, &pkce, &params(&pkce, "notes:read notes:write")).await;
    assert_eq!(tokens["scope"], "notes:read notes:write");
    // The server's own role for notes:admin ("admin") no longer suffices in this organization.
    let admin2 = member(&s, "boss", "org-a", &["admin"]).await;
    let (_, start) = s.start_flow(&admin2, &params(&pkce, "notes:admin")).await;
    assert_eq!(start["scope_results"][0]["is_grantable"], false, "{start}");
    // The editor demoted: a policy change revokes nothing by itself, but the grant now needs a
    // role the member no longer holds; revoking is what the next change does.
    member(&s, "ed", "org-a", &["viewer"]).await;
    let r = put_policy(&s, "/v1/organization/policy", &admin, &r.json["policy"]).await;
    assert_eq!(r.json["revoked_grants"], 1, "{}", r.text);
    let (status, _) = s
        .refresh(tokens["refresh_token"].as_str().unwrap(), CLIENT)
        .await;
    assert_eq!(status, 400);
}

async fn organization_limits_shorten_lifetimes(b: Backend) {
    let s = setup(b).start().await;
    let pkce = Pkce::new();
    let admin = member(&s, "boss", "org-a", &["admin"]).await;
    let ana = member(&s, "ana", "org-a", &[]).await;
    let old = connect(&s, &ana, &pkce, &params(&pkce, "notes:read")).await;
    s.age_grant_of(old["refresh_token"].as_str().unwrap(), 7200)
        .await;
    let r = put_policy(
        &s,
        "/v1/organization/policy",
        &admin,
        &json!({"limits": {"access_token_ttl_seconds": 120, "grant_max_lifetime_seconds": 3600}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["revoked_grants"], 1, "the grant older than an hour");
    let tokens = connect(&s, &ana, &pkce, &params(&pkce, "notes:read")).await;
    assert_eq!(tokens["expires_in"], 120);
    let claims = jwt_claims(tokens["access_token"].as_str().unwrap());
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        120
    );
    // A member of another organization keeps the server's lifetimes.
    let bob = member(&s, "bob", "org-b", &[]).await;
    let tokens = connect(&s, &bob, &pkce, &params(&pkce, "notes:read")).await;
    assert_ne!(tokens["expires_in"], 120);
    // Limits may only shorten the server's own.
    let r = put_policy(
        &s,
        "/v1/organization/policy",
        &admin,
        &json!({"limits": {"access_token_ttl_seconds": 999_999}}),
    )
    .await;
    assert_error(
        err(&r),
        400,
        "invalid_request",
        &["limits.access_token_ttl_seconds"],
    );
}

async fn the_policy_is_evaluated_on_refresh_and_code_redemption_at_its_current_version(b: Backend) {
    let s = setup(b).start().await;
    let pkce = Pkce::new();
    let ana = member(&s, "ana", "org-a", &[]).await;
    let tokens = connect(&s, &ana, &pkce, &params(&pkce, "notes:read")).await;
    // A code issued before the change.
    let (status, _) = s.start_flow(&ana, &params(&pkce, "notes:read")).await;
    assert_eq!(status, 200);
    let (_, body) = s.submit(&ana, &params(&pkce, "notes:read"), true).await;
    let code = query(body["redirect_uri"].as_str().unwrap())["code"].clone();
    // The policy changed behind the server's back (no revocation, no notification): the token
    // paths read the version with their row and judge by the stored policy.
    s.db_exec(
        "UPDATE organizations SET policy = '{\"first_party\":{\"mode\":\"not_allowed\"}}', \
         version = version + 1 WHERE organization_id = 'org-a'",
    )
    .await;
    let (status, body) = s
        .refresh(tokens["refresh_token"].as_str().unwrap(), CLIENT)
        .await;
    assert_error((status, &body), 400, "invalid_grant", &["first_party"]);
    let (status, body) = s.redeem(&code, CLIENT, REDIRECT, &pkce.verifier).await;
    assert_error((status, &body), 400, "invalid_grant", &["first_party"]);
}

async fn invalid_policies_are_refused_naming_the_field_and_change_nothing(b: Backend) {
    let s = setup(b).start().await;
    let admin = member(&s, "boss", "org-a", &["admin"]).await;
    for (policy, field) in [
        (
            json!({"third_party": {"mode": "sometimes"}}),
            "third_party.mode",
        ),
        (
            json!({"third_party": {"mode": "restricted", "allow_hosts": ["https://claude.ai"]}}),
            "third_party.allow_hosts[0]",
        ),
        (
            json!({"first_party": {"mode": "all_allowed", "allow_clients": ["x"]}}),
            "first_party.allow_clients",
        ),
        (
            json!({"scopes": {"disallowed": ["notes:nope"]}}),
            "scopes.disallowed[0]",
        ),
        (json!({"unknown": true}), "unknown"),
        (
            json!({"limits": {"grant_max_lifetime_seconds": -5}}),
            "limits.grant_max_lifetime_seconds",
        ),
    ] {
        let r = send(
            &s,
            Method::PUT,
            "/v1/organization/policy",
            &admin,
            &[("if-match", "\"1\"")],
            Some(&policy),
        )
        .await;
        assert_error(err(&r), 400, "invalid_request", &[field]);
    }
    let now = get(&s, "/v1/organization/policy", &admin).await;
    assert_eq!(now.json["version"], 1, "{}", now.text);
}

fn admin_req<'a>() -> Vec<(&'a str, &'a str)> {
    Vec::new()
}

async fn admin_api_lists_organizations_and_manages_any_organizations_policy_and_apps(b: Backend) {
    let s = setup(b).start().await;
    let pkce = Pkce::new();
    let ana = member(&s, "ana", "org-a", &[]).await;
    member(&s, "bob", "org-b", &[]).await;
    let tokens = connect(&s, &ana, &pkce, &params(&pkce, "notes:read")).await;
    let list = get(&s, "/admin/v1/organizations", ADMIN_KEY).await;
    assert_eq!(list.status, 200, "{}", list.text);
    let ids: Vec<&str> = list.json["organizations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["organization_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["org-a", "org-b"]);
    let one = get(&s, "/admin/v1/organizations/org-a", ADMIN_KEY).await;
    assert_eq!(one.json["members"], 1);
    assert_eq!(one.json["organization_name"], "org-a Inc");
    assert_eq!(
        get(&s, "/admin/v1/organizations/nope", ADMIN_KEY)
            .await
            .status,
        404
    );
    assert_eq!(
        get(&s, "/admin/v1/organizations/nope/policy", ADMIN_KEY)
            .await
            .status,
        404
    );
    // An organization nobody has signed in to yet: created with If-None-Match: *, once.
    let pre = json!({"third_party": {"mode": "not_allowed"}});
    let r = send(
        &s,
        Method::PUT,
        "/admin/v1/organizations/org-new/policy",
        ADMIN_KEY,
        &[("if-none-match", "*")],
        Some(&pre),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["version"], 1);
    let r = send(
        &s,
        Method::PUT,
        "/admin/v1/organizations/org-new/policy",
        ADMIN_KEY,
        &[("if-none-match", "*")],
        Some(&pre),
    )
    .await;
    assert_error(err(&r), 412, "precondition_failed", &["If-Match"]);
    // Its first member is under it from the start.
    let nina = member(&s, "nina", "org-new", &[]).await;
    let dcr = register_dcr(&s, "Early Agent").await;
    let (status, body) = s.start_flow(&nina, &dcr_params(&pkce, &dcr)).await;
    assert_error((status, &body), 403, "app_not_allowed_for_org", &[]);
    // The org's apps, and revoking one for the whole org.
    let apps = get(
        &s,
        "/admin/v1/organizations/org-a/connected_apps",
        ADMIN_KEY,
    )
    .await;
    assert_eq!(apps.json["apps"][0]["client_id"], CLIENT, "{}", apps.text);
    let r = send(
        &s,
        Method::POST,
        &format!("/admin/v1/organizations/org-b/connected_apps/{CLIENT}/revoke"),
        ADMIN_KEY,
        &admin_req(),
        Some(&json!({})),
    )
    .await;
    assert_eq!(r.status, 404, "nothing of org-b's to revoke: {}", r.text);
    let r = send(
        &s,
        Method::POST,
        &format!("/admin/v1/organizations/org-a/connected_apps/{CLIENT}/revoke"),
        ADMIN_KEY,
        &admin_req(),
        Some(&json!({})),
    )
    .await;
    assert_eq!(r.json["revoked_grants"], 1, "{}", r.text);
    let (status, _) = s
        .refresh(tokens["refresh_token"].as_str().unwrap(), CLIENT)
        .await;
    assert_eq!(status, 400);
    // Without the admin key: nothing.
    let r = get(&s, "/admin/v1/organizations", "wrong").await;
    assert_error(err(&r), 401, "invalid_token", &[]);
}

async fn admin_created_clients_are_first_party(b: Backend) {
    let s = setup(b).start().await;
    let pkce = Pkce::new();
    let r = send(
        &s,
        Method::POST,
        "/admin/v1/clients",
        ADMIN_KEY,
        &[],
        Some(&json!({
            "client_name": "Company Agent",
            "redirect_uris": ["http://127.0.0.1:9999/company"],
            "token_endpoint_auth_method": "none",
        })),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(r.json.get("registration_access_token").is_none());
    let id = r.json["client_id"].as_str().unwrap().to_owned();
    let shown = get(&s, &format!("/admin/v1/clients/{id}"), ADMIN_KEY).await;
    assert_eq!(shown.json["first_party"], true, "{}", shown.text);
    assert_eq!(shown.json["source"], "admin");
    let admin = member(&s, "boss", "org-a", &["admin"]).await;
    let r = put_policy(
        &s,
        "/v1/organization/policy",
        &admin,
        &json!({"first_party": {"mode": "not_allowed"}}),
    )
    .await;
    assert_eq!(r.status, 200);
    let mut p = params(&pkce, "notes:read");
    p["client_id"] = json!(id);
    p["redirect_uri"] = json!("http://127.0.0.1:9999/company");
    let ana = member(&s, "ana", "org-a", &[]).await;
    let (status, body) = s.start_flow(&ana, &p).await;
    assert_error(
        (status, &body),
        403,
        "app_not_allowed_for_org",
        &["first_party"],
    );
    // Updated and deleted through the admin API; a self-registered client is not the admin
    // API's to update.
    let r = send(
        &s,
        Method::PUT,
        &format!("/admin/v1/clients/{id}"),
        ADMIN_KEY,
        &[],
        Some(&json!({
            "client_name": "Company Agent 2",
            "redirect_uris": ["http://127.0.0.1:9999/company"],
            "token_endpoint_auth_method": "none",
        })),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["client_name"], "Company Agent 2");
    let dcr = register_dcr(&s, "Self").await;
    let r = send(
        &s,
        Method::PUT,
        &format!("/admin/v1/clients/{dcr}"),
        ADMIN_KEY,
        &[],
        Some(&json!({"redirect_uris": ["http://127.0.0.1:9999/x"]})),
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = send(
        &s,
        Method::DELETE,
        &format!("/admin/v1/clients/{id}"),
        ADMIN_KEY,
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text);
}

async fn client_credentials_follow_the_implicit_organizations_policy(b: Backend) {
    let secret = "svc-secret-0123456789abcdefghijklmnopqrstuv";
    let s = setup(b)
        .extra(&format!(
            r#"
[[clients]]
client_id = "svc"
client_name = "Service"
redirect_uris = ["https://svc.example/cb"]
grant_types = ["client_credentials"]
token_endpoint_auth_method = "client_secret_post"
client_secret = "{secret}"
"#
        ))
        .start()
        .await;
    let cc = |scope: &'static str| {
        [
            ("grant_type", "client_credentials"),
            ("client_id", "svc"),
            ("client_secret", secret),
            ("scope", scope),
            ("resource", RESOURCE),
        ]
    };
    let (status, body) = s.token(&cc("notes:write")).await;
    assert_eq!(status, 200, "{body}");
    let r = send(
        &s,
        Method::PUT,
        "/admin/v1/organizations/default/policy",
        ADMIN_KEY,
        &[("if-none-match", "*")],
        Some(&json!({"scopes": {"disallowed": ["notes:write"]}, "limits": {"access_token_ttl_seconds": 60}})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let (status, body) = s.token(&cc("notes:write")).await;
    assert_error(
        (status, &body),
        400,
        "invalid_scope",
        &["notes:write", "scopes.disallowed"],
    );
    let (status, body) = s.token(&cc("notes:read")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_in"], 60);
    let r = put_policy(
        &s,
        "/admin/v1/organizations/default/policy",
        ADMIN_KEY,
        &json!({"first_party": {"mode": "not_allowed"}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let (status, body) = s.token(&cc("notes:read")).await;
    assert_error(
        (status, &body),
        400,
        "unauthorized_client",
        &["first_party"],
    );
}

async fn admin_user_endpoints_address_a_member_by_organization(b: Backend) {
    let s = setup(b).start().await;
    let pkce = Pkce::new();
    let ana_a = member(&s, "ana", "org-a", &[]).await;
    let ana_b = member(&s, "ana", "org-b", &[]).await;
    let a = connect(&s, &ana_a, &pkce, &params(&pkce, "notes:read")).await;
    let b_tokens = connect(&s, &ana_b, &pkce, &params(&pkce, "notes:read")).await;
    let apps = get(
        &s,
        "/admin/v1/users/ana/connected_apps?organization_id=org-a",
        ADMIN_KEY,
    )
    .await;
    assert_eq!(apps.json.as_array().unwrap().len(), 1, "{}", apps.text);
    // Without organization_id: the implicit organization, where this ana is not.
    let apps = get(&s, "/admin/v1/users/ana/connected_apps", ADMIN_KEY).await;
    assert_eq!(apps.json, json!([]));
    let r = send(
        &s,
        Method::POST,
        "/admin/v1/users/ana/revoke?organization_id=org-a",
        ADMIN_KEY,
        &[],
        Some(&json!({})),
    )
    .await;
    assert_eq!(r.json["revoked_grants"], 1, "{}", r.text);
    assert_eq!(
        s.refresh(a["refresh_token"].as_str().unwrap(), CLIENT)
            .await
            .0,
        400
    );
    let (status, body) = s
        .refresh(b_tokens["refresh_token"].as_str().unwrap(), CLIENT)
        .await;
    assert_eq!(status, 200, "{body}");
}

async fn a_policy_changed_on_one_instance_holds_on_another_at_once(b: Backend) {
    if matches!(b, Backend::Sqlite) {
        return; // one process per SQLite file
    }
    let setup = setup(b);
    let a = setup.clone().start().await;
    let other = a.sibling(&setup).await;
    let pkce = Pkce::new();
    let dcr = register_dcr(&a, "Roaming Agent").await;
    let ana = member(&other, "ana", "org-a", &[]).await;
    let tokens = connect(&other, &ana, &pkce, &dcr_params(&pkce, &dcr)).await;
    // `other` has the policy cached now (it showed the consent screen).
    let admin = member(&a, "boss", "org-a", &["admin"]).await;
    let r = put_policy(
        &a,
        "/v1/organization/policy",
        &admin,
        &json!({"third_party": {"mode": "not_allowed"}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // The next requests on the other instance: refresh (version read with the row) and the
    // consent screen (its cached policy dropped by the notification).
    let (status, _) = other
        .refresh(tokens["refresh_token"].as_str().unwrap(), &dcr)
        .await;
    assert_eq!(status, 400);
    let mut refused = false;
    for _ in 0..50 {
        let (status, body) = other.start_flow(&ana, &dcr_params(&pkce, &dcr)).await;
        if status == 403 && body["error"] == "app_not_allowed_for_org" {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        refused,
        "the other instance kept a stale policy for a second"
    );
}
