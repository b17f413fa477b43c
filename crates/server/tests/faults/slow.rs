//! A slow identity provider JWKS host and a slow CIMD host (both accept the connection and never
//! answer a byte): logins through that identity provider and authorization requests of that
//! document client get a bounded answer (503 / invalid_client, within the fetch timeouts, 5 s and
//! 3 s), and the server's other requests, in flight at the same time, are not slowed down.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use consentry_testkit::{Backend, Pkce, Setup, TAT_AUD, TatKeys, params, tat_claims};
use jsonwebtoken::{Algorithm, Header};
use serde_json::json;

use crate::load::{Client, Ledger, NOTES_SECRET, OPEN_REGISTRATION};
use crate::{long, say};

/// Accepts connections and holds them open without reading or writing.
async fn tarpit() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    port
}

const SLOW_ISS: &str = "https://slow-idp.example.test/";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_jwks_and_cimd_hosts_are_bounded_and_isolated() {
    consentry_testkit::use_binary(option_env!("CARGO_BIN_EXE_consentry"));
    let _serial = crate::SERIAL.lock().await;
    let pit = tarpit().await;
    let server = Setup::new(Backend::Sqlite)
        .introspection_secret(NOTES_SECRET)
        .extra(OPEN_REGISTRATION)
        .top("token_profiles_share_users", "true")
        .extra(&format!(
            "[[token_profiles]]\nid = \"slow\"\nissuer = \"{SLOW_ISS}\"\naudience = \"{TAT_AUD}\"\n\
             jwks_url = \"http://127.0.0.1:{pit}/jwks.json\"\nalgorithms = [\"ES256\"]\n\n\
             [cimd]\nenabled = true\nallow_hosts = [\"127.0.0.1:{pit}\"]\n"
        ))
        .start()
        .await;
    let client = Client::new(&server);
    let ledger = Arc::new(Mutex::new(Ledger::default()));

    // Baseline: the normal path alone.
    let mut baseline = Vec::new();
    for n in 0..5 {
        let t = Instant::now();
        client.cycle(0, n, &ledger).await.unwrap();
        baseline.push(t.elapsed());
    }
    baseline.sort();
    let base_median = baseline[baseline.len() / 2];

    // The slow requests, several at once, each timed.
    let rounds = if long() { 3 } else { 1 };
    let idp_key = TatKeys::es256();
    let mut slow = Vec::new();
    for r in 0..rounds {
        for i in 0..4 {
            let (c, key) = (client.clone(), idp_key.clone());
            slow.push(tokio::spawn(async move {
                let mut claims = tat_claims(&format!("slow-{r}-{i}"));
                claims["iss"] = json!(SLOW_ISS);
                let mut header = Header::new(Algorithm::ES256);
                header.kid = Some("idp-key-1".into());
                let tat = key.sign_with_header(header, &claims);
                let t = Instant::now();
                let a = c
                    .post_json(
                        "/v1/sessions/attest",
                        None,
                        &json!({"token": tat, "profile_id": "slow"}),
                    )
                    .await;
                ("jwks", t.elapsed(), a)
            }));
            let c = client.clone();
            slow.push(tokio::spawn(async move {
                let session = c.session(&format!("cimd-{r}-{i}")).await.unwrap();
                let pkce = Pkce::new();
                let mut p = params(&pkce, "notes:read");
                p["client_id"] = json!(format!("https://127.0.0.1:{pit}/client-{r}-{i}.json"));
                p["redirect_uri"] = json!("http://127.0.0.1:61234/callback");
                let t = Instant::now();
                let a = c
                    .post_json("/v1/oauth/authorize/start", Some(&session), &p)
                    .await;
                ("cimd", t.elapsed(), a)
            }));
        }
        // Meanwhile, the normal path keeps going.
        let mut during = Vec::new();
        let until = Instant::now() + Duration::from_secs(4);
        let mut n = 100 + r * 1000;
        while Instant::now() < until {
            n += 1;
            let t = Instant::now();
            client.cycle(1, n as u64, &ledger).await.unwrap();
            during.push(t.elapsed());
        }
        during.sort();
        let median = during[during.len() / 2];
        let worst = during[during.len() - 1];
        say!(
            "normal grant lives: alone median {base_median:?}; beside the slow hosts {} lives, \
             median {median:?}, worst {worst:?}",
            during.len()
        );
        // A whole grant life is 8 requests; none of them waited on a slow host (the shortest
        // fetch timeout is 3 s).
        assert!(
            worst < Duration::from_millis(2500),
            "a normal grant life took {worst:?} beside the slow hosts (alone: {base_median:?})"
        );
    }
    for h in slow {
        let (what, took, answer) = h.await.unwrap();
        let (status, body) = answer.unwrap_or_else(|e| panic!("{what}: {e}"));
        say!("slow {what}: {status} {} after {took:?}", body["error"]);
        match what {
            "jwks" => {
                assert_eq!(status, 503, "{body}");
                assert_eq!(body["error"], "temporarily_unavailable", "{body}");
                assert!(took < Duration::from_secs(8), "jwks wait {took:?}");
            }
            _ => {
                assert_eq!(status, 400, "{body}");
                assert_eq!(body["error"], "invalid_client", "{body}");
                assert!(took < Duration::from_secs(6), "cimd wait {took:?}");
            }
        }
    }
    let unexpected = client
        .tally
        .unexpected(&["503 temporarily_unavailable", "400 invalid_client"]);
    assert!(unexpected.is_empty(), "{unexpected:?}; {}", server.log());
}
