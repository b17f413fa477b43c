//! Consentry's authorization server: Trusted Auth Tokens in, OAuth 2.1 tokens out.
//!
//! Layers (imports go one way, checked by `layering`'s test): `http` (router, extractors, thin
//! handlers) → `flows` (load, decide, persist, emit events) → `domain` (pure rules: the one
//! authorization decision, refresh judging, events) and `store` (SQLite / PostgreSQL by
//! aggregate). Beside them: `config` (consentry.toml and its builder), `clients` (the one client
//! model and validator), `cimd` (Client ID Metadata Documents and the address guard), `tat`
//! (Trusted Auth Token verification), `keys` (signing keys, JWKS), `crypto` (sessions, sealed
//! codes, PKCE), `limits` (rate limiters, the request's client address), `state` (what flows
//! share), `clock`, `error`, `mint` (TATs for `consentry mint-tat`), `dev` (`consentry dev`),
//! `operator` (`consentry orgs|policy|clients`, a client of the admin API); `fuzz` (tests only)
//! the fuzz targets.
//! HACKING.md at the repository root says where a new rule, endpoint, table or event goes.

pub mod cimd;
pub mod clients;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod dev;
pub mod domain;
pub mod error;
pub mod flows;
#[cfg(test)]
mod fuzz;
pub mod http;
pub mod keys;
mod layering;
pub mod limits;
pub mod mint;
pub mod operator;
pub mod state;
pub mod store;
pub mod tat;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::config::Config;
use crate::state::{AppState, now};

/// Process-wide crypto providers: aws-lc for both jsonwebtoken and rustls.
pub fn install_crypto_providers() {
    // Err means one was installed already, which is fine.
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Start serving; returns when `shutdown` resolves.
pub async fn serve(
    cfg: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    install_crypto_providers();
    let listen = cfg.listen.clone();
    let state = Arc::new(AppState::new(cfg).await?);
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("listen: cannot bind {listen}"))?;
    let local = listener.local_addr()?;
    tracing::info!(
        issuer = %state.cfg.issuer,
        database = %store::redact(&state.cfg.database_url),
        "consentry listening on http://{local}"
    );
    spawn_maintenance(state.clone());
    // Small request/response exchanges on keep-alive connections: without TCP_NODELAY, Nagle's
    // algorithm holds a response segment back until the previous one is acknowledged.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY: {e}");
        }
    });
    axum::serve(
        listener,
        http::router(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await?;
    Ok(())
}

/// Background upkeep: pick up rotated keys (other instances, `consentry keys rotate`) and purge
/// rows that can no longer matter.
fn spawn_maintenance(state: Arc<AppState>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        let mut n: u64 = 0;
        loop {
            tick.tick().await;
            n += 1;
            let cfg = &state.cfg;
            let t = now();
            if let Err(e) = state
                .keys
                .reload(&state.store, cfg.signing_alg, cfg.max_signed_token_ttl(), t)
                .await
            {
                tracing::warn!("reloading signing keys: {e:#}");
            }
            // At start (the first tick is immediate), then every ten ticks (5 minutes).
            if n % 10 == 1 {
                let started = std::time::Instant::now();
                match state.store.purge_expired(t).await {
                    Ok(rows) => tracing::info!(
                        target: "consentry::purge",
                        rows,
                        ms = started.elapsed().as_millis() as u64,
                        "purged expired rows"
                    ),
                    Err(e) => tracing::warn!("purging expired rows: {e}"),
                }
                purge_clients(&state, t).await;
                let _ = state
                    .store
                    .purge_signing_keys(t - cfg.max_signed_token_ttl())
                    .await;
            }
        }
    });
}

/// Delete dynamically registered clients never used within `registration.unused_client_ttl_seconds`
/// of registering, or idle for `registration.idle_client_ttl_seconds`.
pub async fn purge_clients(state: &AppState, now: i64) {
    let reg = &state.cfg.registration;
    match state
        .store
        .purge_clients(
            now - reg.unused_client_ttl_seconds,
            now - reg.idle_client_ttl_seconds,
            now,
        )
        .await
    {
        Ok(ids) if !ids.is_empty() => {
            tracing::info!(
                count = ids.len(),
                "deleted unused or idle registered clients"
            );
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("purging unused registered clients: {e}"),
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
