//! `consentry dev`: zero-setup local server. Writes a dev config and a Trusted Auth Token keypair
//! into a folder (once), starts the server on SQLite, and prints a ready-to-paste walkthrough.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use consentry_protocol::append_query;
use serde_json::json;

use crate::config::Config;
use crate::config::builder::{Claims, Client, ConfigBuilder, Resource, TokenProfile};
use crate::keys::{SigningAlg, generate_pem_keypair};

pub const DEV_TAT_ISSUER: &str = "urn:consentry:dev:issuer";
pub const DEV_TAT_AUDIENCE: &str = "urn:consentry:dev:audience";

pub struct DevOptions {
    pub dir: PathBuf,
    pub port: u16,
    pub app_origin: String,
    pub resource: String,
}

/// The config `consentry dev` writes: the demo's token profile, scopes, resource and client.
fn dev_config(o: &DevOptions, introspection_secret: &str) -> anyhow::Result<String> {
    let mut config = ConfigBuilder::loopback(o.port, format!("{}/oauth/authorize", o.app_origin))
        .database_url("sqlite://consentry.db")
        .allowed_origin(o.app_origin.clone())
        .token_profile(TokenProfile {
            max_lifetime_seconds: Some(900),
            jit_provisioning: Some(true),
            claims: Some(Claims {
                user_id: Some("sub".into()),
                email: Some("email".into()),
                name: Some("name".into()),
                roles: Some("roles".into()),
                jti: None,
                // Tokens that carry an organization make their user a member of it; others
                // belong to the implicit one.
                organization_id: Some("org_id".into()),
                organization_name: Some("org_name".into()),
            }),
            ..TokenProfile::with_key_file(
                "default",
                DEV_TAT_ISSUER,
                DEV_TAT_AUDIENCE,
                "tat_public.pem",
                &["ES256"],
            )
        })
        .scope("notes:read", "Read your notes")
        .scope("notes:write", "Create and change your notes")
        .resource(
            Resource::new(o.resource.clone(), "Notes", &["notes:read", "notes:write"])
                .default_scopes(&["notes:read"])
                .introspection_secret(introspection_secret),
        )
        .client(Client::public(
            "demo-agent",
            "Demo agent",
            &["http://127.0.0.1:9999/callback"],
        ));
    config.signing_alg = Some("ES256".into());
    config.access_token_ttl_seconds = Some(3600);
    config.refresh_token_ttl_seconds = Some(7_776_000);
    config.refresh_reuse_grace_seconds = Some(0);
    Ok(format!(
        "# Written by `consentry dev`. Edit freely: it is only written when missing.\n\
         # [[resources]] introspection_secret lets the MCP server check revocation at\n\
         # /oauth2/introspect (it is also in ./introspection_secret).\n{}",
        config.to_toml()?
    ))
}

/// Write the dev folder if it is missing; returns the config path.
pub fn ensure_dev_dir(o: &DevOptions) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(&o.dir)
        .with_context(|| format!("cannot create {}", o.dir.display()))?;
    let private = o.dir.join("tat_private.pem");
    let public = o.dir.join("tat_public.pem");
    if !private.exists() || !public.exists() {
        let (priv_pem, pub_pem) = generate_pem_keypair(SigningAlg::ES256)?;
        write_private(&private, &priv_pem)?;
        std::fs::write(&public, pub_pem)?;
    }
    let config = o.dir.join("consentry.toml");
    if !config.exists() {
        // The resource server's introspection secret: in the config and in a file of its own, so
        // that `cargo xtask demo` can hand it to the MCP server.
        let secret = crate::crypto::random_token(32);
        write_private(&o.dir.join("introspection_secret"), &secret)?;
        std::fs::write(&config, dev_config(o, &secret)?)?;
    }
    Ok(config)
}

fn write_private(path: &Path, pem: &str) -> anyhow::Result<()> {
    std::fs::write(path, pem)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

pub async fn run(o: DevOptions) -> anyhow::Result<()> {
    let config_path = ensure_dev_dir(&o)?;
    let cfg = Config::load(&config_path)?;
    let issuer = cfg.issuer.clone();
    let authorization_url = cfg.authorization_url.clone();
    let resource = cfg
        .resources
        .first()
        .map(|r| r.uri.clone())
        .unwrap_or_default();
    let server = tokio::spawn(crate::serve(cfg, crate::shutdown_signal()));

    // Wait until it answers, then print the walkthrough.
    let http = reqwest::Client::new();
    let mut up = false;
    for _ in 0..100 {
        if server.is_finished() {
            break;
        }
        if http
            .get(format!("{issuer}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if up {
        let private = std::fs::read_to_string(o.dir.join("tat_private.pem"))?;
        println!(
            "{}",
            walkthrough(&issuer, &authorization_url, &resource, &private, &o.dir)?
        );
    }
    server.await.context("server task")?
}

fn walkthrough(
    issuer: &str,
    authorization_url: &str,
    resource: &str,
    private_pem: &str,
    dir: &Path,
) -> anyhow::Result<String> {
    let now = crate::clock::now();
    let tat = crate::mint::mint(&crate::mint::MintTat {
        private_key_pem: private_pem,
        issuer: DEV_TAT_ISSUER,
        audience: DEV_TAT_AUDIENCE,
        user_id: "demo-user",
        user_id_claim: "sub",
        email: Some("demo@example.com"),
        name: Some("Demo User"),
        roles: &[],
        ttl_seconds: 600,
        now,
    })?;
    let verifier = crate::crypto::random_token(32);
    let challenge = crate::crypto::pkce_s256_challenge(&verifier);
    let redirect = "http://127.0.0.1:9999/callback";
    let url = append_query(
        authorization_url,
        &[
            ("response_type", "code"),
            ("client_id", "demo-agent"),
            ("redirect_uri", redirect),
            ("scope", "notes:read"),
            ("state", "demo-state"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("resource", resource),
        ],
    );
    let start_body = json!({
        "client_id": "demo-agent", "redirect_uri": redirect, "response_type": "code",
        "scope": "notes:read", "state": "demo-state", "code_challenge": challenge,
        "code_challenge_method": "S256", "resource": [resource],
        "trusted_auth_token": tat, "profile_id": "default",
    });
    Ok(format!(
        r#"
Consentry dev server: {issuer}   (config and keys in {dir})

A Trusted Auth Token for demo-user (valid 10 minutes, single use):
  TAT={tat}

The authorize URL an agent would open (your app's consent page renders it):
  {url}

Or drive the flow by hand:
  # 1. attest + start in one round trip (prints the consent data and a session_token)
  curl -s {issuer}/v1/oauth/authorize/start -H 'content-type: application/json' \
    -d '{start_body}'
  # 2. grant consent with the session_token from step 1 (prints redirect_uri?code=...)
  curl -s {issuer}/v1/oauth/authorize/submit -H "authorization: Bearer $SESSION" -H 'content-type: application/json' \
    -d '{{"client_id":"demo-agent","redirect_uri":"{redirect}","scope":"notes:read","state":"demo-state","code_challenge":"{challenge}","code_challenge_method":"S256","resource":["{resource}"],"consent_granted":true}}'
  # 3. exchange the code
  curl -s {issuer}/oauth2/token -d grant_type=authorization_code -d client_id=demo-agent \
    --data-urlencode redirect_uri={redirect} -d code_verifier={verifier} --data-urlencode resource={resource} -d code=$CODE

Mint more tokens:  consentry mint-tat --key {dir}/tat_private.pem --issuer {iss} --audience {aud} --sub demo-user
Ctrl-C stops the server.
"#,
        dir = dir.display(),
        iss = DEV_TAT_ISSUER,
        aud = DEV_TAT_AUDIENCE,
    ))
}
