//! `[[clients]]` under the one client rule (issue 12 item 4).

use super::*;

const BASE: &str = r#"
issuer = "https://auth.example.com"
authorization_url = "https://app.example.com/oauth/authorize"
database_url = "sqlite://consentry.db"

[[scopes]]
name = "notes:read"
description = "Read your notes"

[[resources]]
uri = "https://mcp.example.com/mcp"
name = "Notes"
scopes = ["notes:read"]
"#;

fn with_client(client: &str) -> anyhow::Result<Config> {
    let text = format!("{BASE}\n[[clients]]\nclient_id = \"c\"\n{client}\n");
    Config::from_toml(&text, Path::new("/tmp"), Vec::new())
}

/// `[[clients]]` goes through the validator of registered and document clients (operator
/// trust). Each of these started before (issue 12 item 4); each is refused naming the key.
#[test]
fn operator_clients_follow_the_one_client_rule() {
    let uris = "redirect_uris = [\"https://a.example/cb\"]";
    let cases: Vec<(String, &str)> = vec![
        (format!("client_name = \"  \"\n{uris}"), "clients[0].client_name"),
        (
            format!("client_name = \"App\\u202eX\"\n{uris}"),
            "clients[0].client_name",
        ),
        (
            format!("client_name = \"App\\u200eX\"\n{uris}"),
            "clients[0].client_name",
        ),
        (
            format!("client_name = \"App\\nAllow\"\n{uris}"),
            "clients[0].client_name",
        ),
        (
            format!("client_name = \"{}\"\n{uris}", "n".repeat(201)),
            "clients[0].client_name",
        ),
        (
            format!("client_name = \"A\"\n{uris}\nlogo_uri = \"javascript:alert(1)\""),
            "clients[0].logo_uri",
        ),
        (
            format!("client_name = \"A\"\n{uris}\nclient_uri = \"http://a.example/\""),
            "clients[0].client_uri",
        ),
        (
            "client_name = \"A\"\nredirect_uris = [\"http://a.example/cb\"]".into(),
            "clients[0].redirect_uris[0]",
        ),
        (
            format!("client_name = \"A\"\n{uris}\ngrant_types = [\"refresh_token\"]"),
            "clients[0].grant_types",
        ),
        (
            format!("client_name = \"A\"\n{uris}\ngrant_types = []"),
            "clients[0].grant_types",
        ),
        (
            "client_name = \"A\"\napplication_type = \"web\"\nredirect_uris = [\"com.example.app:/cb\"]"
                .into(),
            "clients[0].redirect_uris[0]",
        ),
        (
            format!(
                "client_name = \"A\"\nredirect_uris = [{}]",
                (0..21)
                    .map(|i| format!("\"https://a.example/{i}\""))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            "clients[0].redirect_uris",
        ),
    ];
    for (client, key) in &cases {
        let err = with_client(client).expect_err(client);
        let msg = format!("{err:#}");
        assert!(msg.contains(key), "{client}\n  got: {msg}\n  want: {key}");
    }
    // Still fine: loopback and private-use URIs (native by default), a confidential
    // client_credentials client without redirect URIs.
    let c = with_client(
        "client_name = \"Native\"\nredirect_uris = [\"http://127.0.0.1/cb\", \"com.example.app:/cb\"]",
    )
    .unwrap();
    assert_eq!(c.clients["c"].client_name, "Native");
    with_client(&format!(
        "client_name = \"Svc\"\nredirect_uris = []\ntoken_endpoint_auth_method = \"client_secret_basic\"\nclient_secret = \"{}\"\ngrant_types = [\"client_credentials\"]",
        "s".repeat(32)
    ))
    .unwrap();
}
