//! The `consentry` command line: bad configs fail at start naming the key, `mint-tat` tokens are
//! accepted, `keys rotate` keeps old keys published, `dev` comes up with a working walkthrough.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use consentry_testkit::*;
use serde_json::json;

const GOOD: &str = r#"
issuer = "http://127.0.0.1:1"
listen = "127.0.0.1:1"
authorization_url = "http://127.0.0.1:3000/oauth/authorize"
database_url = "sqlite://c.db"

[[token_profiles]]
id = "default"
issuer = "urn:i"
audience = "urn:a"
public_key_pem_file = "tat_public.pem"
algorithms = ["ES256"]

[[scopes]]
name = "notes:read"
description = "Read your notes"

[[resources]]
uri = "http://127.0.0.1:8788/mcp"
name = "Notes"
scopes = ["notes:read"]
"#;

/// Run `consentry serve` on a config and return (exit success, stderr).
fn serve_with(config: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tat_public.pem"),
        TatKeys::es256().public_pem,
    )
    .unwrap();
    let path = dir.path().join("consentry.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(binary())
        .args(["serve", "--config"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            return (
                status.success(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("consentry kept running on a config that should have been refused");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn bad_config_fails_at_start_naming_the_key() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "HS256 refused",
            r#"algorithms = ["ES256"]"#,
            r#"algorithms = ["HS256"]"#,
        ),
        (
            "none refused",
            r#"algorithms = ["ES256"]"#,
            r#"algorithms = ["none"]"#,
        ),
        (
            "algorithms required",
            "algorithms = [\"ES256\"]\n",
            "algorithms = []\n",
        ),
        (
            "key type must fit algorithms",
            r#"algorithms = ["ES256"]"#,
            r#"algorithms = ["RS256"]"#,
        ),
        (
            "undeclared scope",
            r#"scopes = ["notes:read"]"#,
            r#"scopes = ["notes:write"]"#,
        ),
        (
            "bad issuer",
            r#"issuer = "http://127.0.0.1:1""#,
            r#"issuer = "not a url""#,
        ),
        ("unknown key", "database_url", "databse_url"),
        (
            "bad signing alg",
            "database_url",
            "signing_alg = \"HS256\"\ndatabase_url",
        ),
        (
            "grace out of range",
            "database_url",
            "refresh_reuse_grace_seconds = -1\ndatabase_url",
        ),
        ("missing key file", "tat_public.pem", "missing.pem"),
    ];
    let expect = [
        "token_profiles[0].algorithms",
        "token_profiles[0].algorithms",
        "token_profiles[0].algorithms",
        "token_profiles[0]",
        "resources[0].scopes",
        "issuer",
        "databse_url",
        "signing_alg",
        "refresh_reuse_grace_seconds",
        "public_key_pem_file",
    ];
    for ((label, from, to), want) in cases.iter().zip(expect) {
        assert!(GOOD.contains(from), "{label}: fixture lacks '{from}'");
        let (ok, stderr) = serve_with(&GOOD.replacen(from, to, 1));
        assert!(!ok, "{label}: server started");
        assert!(
            stderr.contains(want),
            "{label}: stderr does not name '{want}': {stderr}"
        );
    }
    // Profiles of two issuers: the same user id from both would be one user unless the
    // operator says so.
    let second = "\n[[token_profiles]]\nid = \"idp\"\nissuer = \"https://idp.example\"\naudience = \"urn:a\"\njwks_url = \"https://idp.example/jwks\"\nalgorithms = [\"RS256\"]\n";
    let two = GOOD.replacen(
        "\n[[token_profiles]]",
        &format!("{second}\n[[token_profiles]]"),
        1,
    );
    assert_ne!(two, GOOD);
    let (ok, stderr) = serve_with(&two);
    assert!(!ok, "two issuers without the statement: server started");
    assert!(
        stderr.contains("token_profiles_share_users") && stderr.contains("different issuers"),
        "{stderr}"
    );
    // A key set over plain http from another host: whoever rewrites it signs anyone in.
    let (ok, stderr) = serve_with(&GOOD.replacen(
        r#"public_key_pem_file = "tat_public.pem""#,
        r#"jwks_url = "http://idp.example/.well-known/jwks.json""#,
        1,
    ));
    assert!(!ok, "an http jwks_url off loopback: server started");
    assert!(
        stderr.contains("token_profiles[0].jwks_url") && stderr.contains("plain http"),
        "{stderr}"
    );
    // A redirect URI with a script scheme, even for the operator's own client.
    for uri in ["javascript:alert(1)//", "DATA:text/html,x", "vbscript:x"] {
        let cfg = format!(
            "{GOOD}[[clients]]\nclient_id = \"c\"\nclient_name = \"C\"\nredirect_uris = [\"{uri}\"]\n"
        );
        let (ok, stderr) = serve_with(&cfg);
        assert!(!ok, "{uri}: server started");
        assert!(
            stderr.contains("clients[0].redirect_uris")
                && stderr.contains("never a redirect target"),
            "{uri}: {stderr}"
        );
    }
}

/// The keys of issue 11's items 4, 6 and 7: each bad value fails the start naming the key.
#[test]
fn grant_lifetime_allowed_types_and_extra_ca_file_are_validated_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("not-a-ca.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let ca_a = dir.path().join("a.pem");
    let ca_b = dir.path().join("b.pem");
    let ca = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .self_signed(&rcgen::KeyPair::generate().unwrap())
        .unwrap()
        .pem();
    std::fs::write(&ca_a, &ca).unwrap();
    std::fs::write(&ca_b, &ca).unwrap();
    let top = |line: &str| format!("{line}\n{GOOD}");
    let in_profile = |line: &str| {
        GOOD.replacen(
            "algorithms = [\"ES256\"]\n",
            &format!("algorithms = [\"ES256\"]\n{line}\n"),
            1,
        )
    };
    let cases: Vec<(String, &[&str])> = vec![
        (
            top("grant_max_lifetime_seconds = 9"),
            &["grant_max_lifetime_seconds", "10..="],
        ),
        (
            top("grant_max_lifetime_seconds = 63072001"),
            &["grant_max_lifetime_seconds"],
        ),
        (
            in_profile("allowed_types = []"),
            &["token_profiles[0].allowed_types", "at least one"],
        ),
        (
            in_profile("allowed_types = [\"\"]"),
            &["token_profiles[0].allowed_types", "''"],
        ),
        (
            in_profile("allowed_types = [\"text/jwt\"]"),
            &["token_profiles[0].allowed_types", "'text/jwt'"],
        ),
        (
            top("extra_ca_file = \"missing.pem\""),
            &["extra_ca_file", "cannot read", "missing.pem"],
        ),
        (
            top(&format!("extra_ca_file = \"{}\"", not_pem.display())),
            &["extra_ca_file", "no certificate"],
        ),
        (
            format!(
                "{GOOD}\n[cimd]\nextra_ca_file = \"{}\"\n",
                not_pem.display()
            ),
            &["cimd.extra_ca_file", "no certificate"],
        ),
        (
            format!(
                "extra_ca_file = \"{}\"\n{GOOD}\n[cimd]\nextra_ca_file = \"{}\"\n",
                ca_a.display(),
                ca_b.display()
            ),
            &["extra_ca_file", "cimd.extra_ca_file", "different files"],
        ),
    ];
    for (config, want) in cases {
        let (ok, stderr) = serve_with(&config);
        assert!(!ok, "server started on:\n{config}");
        for w in want {
            assert!(stderr.contains(w), "stderr does not name '{w}': {stderr}");
        }
    }
}

/// Initial access tokens are secrets like admin_key: at least 32 characters (an empty one let
/// any registration without Authorization through). Proxies and client lifetimes are checked
/// too. Messages name the key, never the token.
#[test]
fn registration_settings_are_checked_at_start() {
    let iat = |tokens: &str| {
        format!(
            "{GOOD}[registration]\nmode = \"initial_access_token\"\ninitial_access_tokens = {tokens}\n"
        )
    };
    let short = "s3cret-but-only-31-characters-x";
    assert_eq!(short.len(), 31);
    let long = "a-long-enough-initial-access-token-0123";
    let cases = [
        (
            iat(r#"[""]"#),
            "registration.initial_access_tokens[0]: must be at least 32 characters",
        ),
        (
            iat(&format!(r#"["{long}", "{short}"]"#)),
            "registration.initial_access_tokens[1]: must be at least 32 characters",
        ),
        (
            format!("{GOOD}[registration]\ninitial_access_tokens = [\"{short}\"]\n"),
            "registration.initial_access_tokens[0]",
        ),
        (
            GOOD.replacen(
                "database_url",
                "trusted_proxies = [\"proxy.internal\"]\ndatabase_url",
                1,
            ),
            "trusted_proxies[0]: 'proxy.internal' is not a CIDR block",
        ),
        (
            GOOD.replacen(
                "database_url",
                "trusted_proxies = [\"10.0.0.0/33\"]\ndatabase_url",
                1,
            ),
            "trusted_proxies[0]",
        ),
        (
            format!("{GOOD}[registration]\nunused_client_ttl_seconds = 0\n"),
            "registration.unused_client_ttl_seconds",
        ),
        (
            format!("{GOOD}[registration]\nidle_client_ttl_seconds = -5\n"),
            "registration.idle_client_ttl_seconds",
        ),
        (
            format!("{GOOD}[registration]\nglobal_rate_limit_per_minute = 0\n"),
            "registration.global_rate_limit_per_minute",
        ),
    ];
    for (config, want) in &cases {
        let (ok, stderr) = serve_with(config);
        assert!(!ok, "{want}: server started");
        assert!(
            stderr.contains(want),
            "stderr does not say '{want}': {stderr}"
        );
        assert!(!stderr.contains(short), "the token leaked: {stderr}");
    }
}

#[test]
fn env_overrides_a_scalar_and_is_validated() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tat_public.pem"),
        TatKeys::es256().public_pem,
    )
    .unwrap();
    let path = dir.path().join("consentry.toml");
    std::fs::write(&path, GOOD).unwrap();
    let out = Command::new(binary())
        .args(["serve", "--config"])
        .arg(&path)
        .env("CONSENTRY_ACCESS_TOKEN_TTL_SECONDS", "ten")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("CONSENTRY_ACCESS_TOKEN_TTL_SECONDS"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_override_takes_effect() {
    consentry_server::install_crypto_providers();
    // CONSENTRY_ACCESS_TOKEN_TTL_SECONDS changes expires_in; proven through a real flow.
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let keys = TatKeys::es256();
    std::fs::write(dir.path().join("tat_public.pem"), &keys.public_pem).unwrap();
    let cfg = GOOD
        .replace("http://127.0.0.1:1", &format!("http://127.0.0.1:{port}"))
        .replace("127.0.0.1:1\"", &format!("127.0.0.1:{port}\""))
        + "[[clients]]\nclient_id = \"c\"\nclient_name = \"C\"\nredirect_uris = [\"http://127.0.0.1:9/cb\"]\n";
    std::fs::write(dir.path().join("consentry.toml"), cfg).unwrap();
    let mut child = Command::new(binary())
        .args(["serve", "--config"])
        .arg(dir.path().join("consentry.toml"))
        .env("CONSENTRY_ACCESS_TOKEN_TTL_SECONDS", "120")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let mut up = false;
    for _ in 0..200 {
        if http.get(format!("{base}/healthz")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "server did not start");
    let pkce = Pkce::new();
    let tat = keys.sign(
        &json!({"iss": "urn:i", "aud": "urn:a", "sub": "u", "iat": now(), "exp": now() + 60, "jti": random_id()}),
    );
    let p = json!({"client_id": "c", "redirect_uri": "http://127.0.0.1:9/cb", "scope": "notes:read", "code_challenge": pkce.challenge,
        "code_challenge_method": "S256", "trusted_auth_token": tat, "profile_id": "default"});
    let st: serde_json::Value = http
        .post(format!("{base}/v1/oauth/authorize/start"))
        .json(&p)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut sub = p.clone();
    sub["consent_granted"] = json!(true);
    let r: serde_json::Value = http
        .post(format!("{base}/v1/oauth/authorize/submit"))
        .bearer_auth(st["session_token"].as_str().unwrap())
        .json(&sub)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let code = query(r["redirect_uri"].as_str().unwrap())["code"].clone();
    let t: serde_json::Value = http
        .post(format!("{base}/oauth2/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", "c"),
            ("redirect_uri", "http://127.0.0.1:9/cb"),
            ("code_verifier", &pkce.verifier),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(t["expires_in"], 120, "{t}");
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mint_tat_output_is_accepted_by_attest() {
    let s = Setup::new(Backend::Sqlite).start().await;
    let key = s.dir().join("tat_private.pem");
    std::fs::write(&key, &s.keys.private_pem).unwrap();
    let out = Command::new(binary())
        .args(["mint-tat", "--key"])
        .arg(&key)
        .args([
            "--issuer",
            TAT_ISS,
            "--audience",
            TAT_AUD,
            "--sub",
            "zoe",
            "--email",
            "zoe@example.com",
            "--roles",
            "admin,user",
            "--ttl",
            "5m",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tat = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let claims = jwt_claims(&tat);
    // a jti (profiles have single_use_jti on by default, which needs one) and typ JWT
    assert!(
        claims["jti"].as_str().is_some_and(|j| j.len() >= 16),
        "{claims}"
    );
    assert_eq!(
        jsonwebtoken::decode_header(&tat).unwrap().typ.as_deref(),
        Some("JWT")
    );
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        300
    );
    let (status, att) = s.attest(&tat).await;
    assert_eq!(status, 200, "{att}");
    assert_eq!(att["user"]["user_id"], "zoe");
    assert_eq!(att["user"]["roles"], json!(["admin", "user"]));
    let (status, e) = s.attest(&tat).await;
    assert_eq!(status, 401, "a minted token is single use: {e}");
    // --ttl longer than the profile allows is refused at attest
    let out = Command::new(binary())
        .args(["mint-tat", "--key"])
        .arg(&key)
        .args([
            "--issuer",
            TAT_ISS,
            "--audience",
            TAT_AUD,
            "--sub",
            "zoe",
            "--ttl",
            "1h",
        ])
        .output()
        .unwrap();
    let (status, e) = s
        .attest(String::from_utf8(out.stdout).unwrap().trim())
        .await;
    assert_eq!(status, 401);
    assert!(
        e["error_description"]
            .as_str()
            .unwrap()
            .contains("max_lifetime_seconds"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_keeps_the_old_key_published() {
    let mut s = Setup::new(Backend::Sqlite).start().await;
    let pkce = Pkce::new();
    let before = s
        .tokens_for("rot", &pkce, &params(&pkce, "notes:read"))
        .await;
    let old_at = before["access_token"].as_str().unwrap().to_owned();
    let old_kid = jsonwebtoken::decode_header(&old_at).unwrap().kid.unwrap();

    let out = Command::new(binary())
        .args(["keys", "rotate", "--config"])
        .arg(&s.config_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.restart().await;

    let jwks = s.jwks().await;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids.len(), 2, "{jwks}");
    assert!(
        kids.contains(&old_kid.as_str()),
        "the retired key stays published"
    );
    let pkce = Pkce::new();
    let after = s
        .tokens_for("rot", &pkce, &params(&pkce, "notes:read"))
        .await;
    let new_kid = jsonwebtoken::decode_header(after["access_token"].as_str().unwrap())
        .unwrap()
        .kid
        .unwrap();
    assert_ne!(new_kid, old_kid, "the new key signs");
    // tokens signed before the rotation still verify
    s.verify_access_token(&old_at).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_command_writes_config_and_serves() {
    use std::io::BufRead;
    consentry_server::install_crypto_providers();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = Command::new(binary())
        .args(["dev", "--dir"])
        .arg(dir.path().join("dev"))
        .args(["--port", &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut tat = None;
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while tat.is_none() && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push_str(&line);
            seen.push('\n');
            tat = line.trim().strip_prefix("TAT=").map(str::to_owned);
        }
    }
    let tat = tat.unwrap_or_else(|| panic!("no TAT printed: {seen}"));
    for f in [
        "consentry.toml",
        "tat_private.pem",
        "tat_public.pem",
        "consentry.db",
    ] {
        assert!(dir.path().join("dev").join(f).exists(), "{f} not written");
    }
    // The printed token is accepted by the server it was printed for.
    let base = format!("http://127.0.0.1:{port}");
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/sessions/attest"))
        .json(&json!({"token": tat, "profile_id": "default"}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body: serde_json::Value = r.json().await.unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["user_id"], "demo-user");
}

/// `consentry orgs|policy|clients` drive a running server through its admin API: the same
/// validation, the same revocations, the version check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_commands_manage_organizations_policies_and_clients() {
    const KEY: &str = "admin-key-0123456789abcdefghijklmnopqrstuv";
    let s = Setup::new(Backend::Sqlite)
        .top("admin_key", &format!("\"{KEY}\""))
        .configure(|c| {
            c.token_profiles[0].claims = Some(consentry_server::config::builder::Claims {
                organization_id: Some("org_id".into()),
                ..Default::default()
            });
        })
        .start()
        .await;
    let run = |args: &[&str]| {
        let out = Command::new(binary())
            .args(args)
            .arg("--config")
            .arg(&s.config_path)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let mut claims = tat_claims("ana");
    claims["org_id"] = json!("acme");
    let (status, body) = s.attest(&s.keys.sign(&claims)).await;
    assert_eq!(status, 200, "{body}");
    let session = body["session_token"].as_str().unwrap().to_owned();
    let pkce = Pkce::new();
    let (status, _) = s.start_flow(&session, &params(&pkce, "notes:read")).await;
    assert_eq!(status, 200);

    let (ok, out, err) = run(&["orgs", "list"]);
    assert!(ok, "{err}");
    assert!(out.contains("acme") && out.contains("members 1"), "{out}");

    let (ok, out, err) = run(&[
        "policy",
        "set",
        "--org",
        "acme",
        "--first-party",
        "restricted",
        "--allow-first-party",
        "other-agent",
        "--disallow-scope",
        "notes:write",
    ]);
    assert!(ok, "{err}");
    assert!(err.contains("version 2"), "{err}");
    let state: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(state["policy"]["first_party"]["mode"], "restricted");
    // The change holds on the server at once: the demo agent is no longer allowed.
    let (status, body) = s.start_flow(&session, &params(&pkce, "notes:read")).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "app_not_allowed_for_org");

    let (ok, out, _) = run(&["policy", "get", "--org", "acme"]);
    assert!(ok);
    assert!(out.contains("\"notes:write\""), "{out}");
    // A bad value is the server's error, named, and exits non-zero.
    let (ok, _, err) = run(&[
        "policy",
        "set",
        "--org",
        "acme",
        "--allow-host",
        "https://x",
    ]);
    assert!(!ok);
    assert!(err.contains("third_party.allow_hosts[0]"), "{err}");

    let (ok, out, err) = run(&[
        "clients",
        "create",
        "--name",
        "Company Agent",
        "--redirect-uri",
        "http://127.0.0.1:9999/company",
    ]);
    assert!(ok, "{err}");
    let created: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = created["client_id"].as_str().unwrap();
    assert_eq!(created["first_party"], true);
    let (ok, _, err) = run(&["clients", "delete", id]);
    assert!(ok, "{err}");
    // Without an admin key in the config: a clear refusal, no request.
    let (ok, _, err) = {
        let cfg = std::fs::read_to_string(&s.config_path)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("admin_key"))
            .collect::<Vec<_>>()
            .join("\n");
        let path = s.dir().join("no-admin.toml");
        std::fs::write(&path, cfg).unwrap();
        let out = Command::new(binary())
            .args(["orgs", "list", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::new(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert!(!ok);
    assert!(err.contains("admin_key"), "{err}");
}
