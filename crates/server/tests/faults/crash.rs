//! `kill -9` of the server under load, then a restart on the same database, then every
//! operation the server had acknowledged is checked against the new process.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use consentry_testkit::{Backend, Setup};

use crate::load::{Client, Ledger, Load, NOTES_SECRET, OPEN_REGISTRATION, check_ledger};
use crate::{long, say};

async fn kill9_under_load(backend: Backend) {
    let _serial = crate::SERIAL.lock().await;
    let name = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres(_) => "postgres",
    };
    let mut server = Setup::new(backend)
        .introspection_secret(NOTES_SECRET)
        .extra(OPEN_REGISTRATION)
        .start()
        .await;
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let (kills, load_for) = if long() {
        (3, Duration::from_secs(8))
    } else {
        (1, Duration::from_secs(3))
    };
    for round in 1..=kills {
        let client = Client::new(&server);
        let load = Load::start(&client, 12, &ledger);
        tokio::time::sleep(load_for).await;
        server.kill9();
        let cycles = load.finish().await;
        say!(
            "{name}: kill -9 #{round} after {load_for:?} of load ({cycles} whole grant lives, \
             requests in flight cut)"
        );
        server.restart().await;
    }

    let client = Client::new(&server);
    let copy = ledger.lock().unwrap().clone();
    say!(
        "{name}: checking {} registrations, {} used codes, {} rotated refresh tokens, {} revoked grants",
        copy.registrations.len(),
        copy.used_codes.len(),
        copy.rotated.len(),
        copy.revoked.len()
    );
    assert!(
        !(copy.registrations.is_empty()
            || copy.used_codes.is_empty()
            || copy.rotated.is_empty()
            || copy.revoked.is_empty()),
        "the load acknowledged too little to check; {}",
        server.log()
    );
    let bad = check_ledger(&client, &copy).await;
    assert!(
        bad.is_empty(),
        "{} acknowledged operations did not hold after kill -9: {:#?}",
        bad.len(),
        &bad[..bad.len().min(20)]
    );
    let unexpected = client.tally.unexpected(&["400 invalid_grant"]);
    assert!(
        unexpected.is_empty(),
        "unexpected answers while checking: {unexpected:?}; {}",
        server.log()
    );
    say!("{name}: every acknowledged operation held");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_under_load_sqlite() {
    consentry_testkit::use_binary(option_env!("CARGO_BIN_EXE_consentry"));
    kill9_under_load(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_under_load_postgres() {
    consentry_testkit::use_binary(option_env!("CARGO_BIN_EXE_consentry"));
    if let Some(b) = Backend::postgres() {
        kill9_under_load(b).await;
    }
}
