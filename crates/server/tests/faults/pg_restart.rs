//! PostgreSQL stopped under load, left down, started again: meanwhile the server answers
//! `503 temporarily_unavailable` (never a 500, never a hang past the pool's acquire timeout), does
//! not exit, and serves again once the database is back, with no restart of its own.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use consentry_testkit::{Backend, Setup};

use crate::load::{Client, Ledger, Load, NOTES_SECRET, OPEN_REGISTRATION, wait_until};
use crate::pg::Cluster;
use crate::{long, say};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_and_restarted_under_load() {
    consentry_testkit::use_binary(option_env!("CARGO_BIN_EXE_consentry"));
    let _serial = crate::SERIAL.lock().await;
    let cluster = match Cluster::start() {
        Ok(c) => c,
        Err(reason) => {
            if std::env::var("CONSENTRY_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                panic!("CONSENTRY_REQUIRE_POSTGRES=1 but no PostgreSQL of our own: {reason}");
            }
            say!("SKIPPED postgres_stopped_and_restarted_under_load: {reason}");
            return;
        }
    };
    let mut server = Setup::new(Backend::Postgres(cluster.url()))
        .introspection_secret(NOTES_SECRET)
        .extra(OPEN_REGISTRATION)
        .start()
        .await;

    // Rounds: (stop mode, how long the database stays down).
    let rounds: &[(&str, Duration)] = if long() {
        &[
            ("fast", Duration::from_secs(12)),
            ("immediate", Duration::from_secs(12)),
            ("fast", Duration::from_secs(3)),
        ]
    } else {
        &[("fast", Duration::from_secs(8))]
    };
    for (mode, down_for) in rounds {
        let client = Client::new(&server);
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let load = Load::start(&client, 8, &ledger);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let before = client.tally.ok.load(std::sync::atomic::Ordering::Relaxed);
        assert!(before > 0, "no successful request before the stop");

        let stopped = Instant::now();
        let c = &cluster;
        tokio::task::block_in_place(|| c.stop(mode));
        say!(
            "postgres stopped (-m {mode}) in {:?}, down for {down_for:?}",
            stopped.elapsed()
        );
        // While it is down: health says 503, and the server lives.
        tokio::time::sleep(*down_for / 2).await;
        let health = client.get("/healthz", None).await;
        assert!(
            matches!(&health, Ok((503, b)) if b["error"] == "temporarily_unavailable"),
            "healthz while the database is down: {health:?}"
        );
        // A write is answered 503 temporarily_unavailable with Retry-After, within the pool's
        // acquire timeout.
        let asked = Instant::now();
        let r = client
            .http
            .post(format!("{}/oauth2/register", client.base))
            .json(&serde_json::json!({
                "client_name": "during the outage",
                "redirect_uris": [consentry_testkit::REDIRECT],
                "token_endpoint_auth_method": "none",
            }))
            .send()
            .await
            .unwrap();
        let waited = asked.elapsed();
        let retry_after = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body: serde_json::Value = r.json().await.unwrap_or_default();
        assert_eq!(
            (body["error"].as_str(), retry_after.as_deref()),
            (Some("temporarily_unavailable"), Some("1")),
            "a write while the database is down: {body}"
        );
        assert!(
            waited < Duration::from_secs(8),
            "the write waited {waited:?}"
        );
        say!("a write while down: 503 temporarily_unavailable, Retry-After: 1, after {waited:?}");
        assert!(server.is_running(), "the server exited: {}", server.log());
        tokio::time::sleep(down_for.saturating_sub(stopped.elapsed())).await;
        tokio::task::block_in_place(|| c.start_again());
        let restarted = Instant::now();
        say!("postgres started again");

        // Recovery by itself: a whole grant life succeeds again.
        let probe = Client::new(&server);
        let ledger2 = Mutex::new(Ledger::default());
        let recovered = wait_until(Duration::from_secs(30), || {
            let (probe, ledger2) = (&probe, &ledger2);
            async move { probe.cycle(99, 0, ledger2).await.is_ok() }
        })
        .await;
        let load_ok = load.finish().await;
        let Some(took) = recovered else {
            panic!(
                "no recovery within 30 s of the database's return: {:?}; {}",
                probe.tally.kinds(),
                server.log()
            );
        };
        say!(
            "recovered {took:?} after the database came back ({:?} since the stop); answers during \
             the round: {:?}; slowest {} ms; {load_ok} whole grant lives",
            restarted.duration_since(stopped) + took,
            client.tally.kinds(),
            client
                .tally
                .slowest_ms
                .load(std::sync::atomic::Ordering::Relaxed)
        );
        assert!(server.is_running(), "the server exited: {}", server.log());
        let kinds = client.tally.kinds();
        assert!(
            kinds
                .get("503 temporarily_unavailable")
                .is_some_and(|n| *n > 0),
            "no 503 temporarily_unavailable while the database was down: {kinds:?}"
        );
        // A request cut in the middle of a grant's life can leave the next step of that life
        // refused (a code whose redemption was lost...), never a 500 or a dropped connection.
        let unexpected = client.tally.unexpected(&[
            "503 temporarily_unavailable",
            "400 invalid_grant",
            "401 invalid_token",
        ]);
        assert!(
            unexpected.is_empty(),
            "answers other than 2xx and 503 temporarily_unavailable: {unexpected:?}; {}",
            server.log()
        );
        let slowest = client
            .tally
            .slowest_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            slowest < 15_000,
            "a request waited {slowest} ms: waits must be bounded by the acquire timeout"
        );
    }
    // After every round the server still runs and the data written before is intact.
    assert!(server.is_running());
    server.kill9();
}
