//! An MCP server over Streamable HTTP (rmcp) whose tools are per-user notes, protected by
//! Consentry access tokens through consentry-resource.
//!
//! ```text
//! consentry dev                                  # issuer on http://127.0.0.1:8787
//! cargo run -p consentry-example-mcp-server      # MCP endpoint http://127.0.0.1:8788/mcp
//! ```

mod notes;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use clap::Parser;
use consentry_resource::ProtectedResource;
use consentry_resource::mcp::ToolScopes;
use http::{HeaderName, Method, header};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use crate::notes::{NotesServer, READ, Store, WRITE};

#[derive(Parser, Debug)]
#[command(
    name = "consentry-example-mcp-server",
    version,
    about = "Example MCP server (per-user notes) protected by Consentry"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "MCP_LISTEN", default_value = "127.0.0.1:8788")]
    listen: SocketAddr,
    /// Consentry's issuer URL (its `issuer` setting).
    #[arg(
        long,
        env = "CONSENTRY_ISSUER",
        default_value = "http://127.0.0.1:8787"
    )]
    issuer: String,
    /// This server's canonical resource URI: the MCP endpoint's URL, exactly as listed in
    /// Consentry's `[[resources]] uri`. Its path is where the MCP endpoint is served.
    #[arg(
        long,
        env = "MCP_RESOURCE",
        default_value = "http://127.0.0.1:8788/mcp"
    )]
    resource: String,
    /// The resource's `introspection_secret` in Consentry's config: when set, every token is
    /// also checked for revocation (answers cached 10 s).
    #[arg(long, env = "CONSENTRY_INTROSPECTION_SECRET", hide_env_values = true)]
    introspection_secret: Option<String>,
    /// Host names (or host:port) the MCP endpoint answers to (DNS-rebinding protection).
    /// Default: the resource URL's host and the loopback names.
    #[arg(long, env = "MCP_ALLOWED_HOSTS", value_delimiter = ',')]
    allowed_hosts: Vec<String>,
}

fn protected_resource(args: &Args) -> Result<ProtectedResource, String> {
    let mut b = ProtectedResource::builder(&args.resource, &args.issuer)
        .resource_name("Consentry example notes")
        .scopes_supported([READ, WRITE])
        // Every MCP request (initialize, tools/list…) needs at least read access; the 401
        // challenge names it, so clients ask for it up front.
        .required_scopes([READ]);
    if let Some(secret) = &args.introspection_secret {
        b = b.introspection(secret);
    }
    b.build().map_err(|e| e.to_string())
}

fn app(
    args: &Args,
    resource: &ProtectedResource,
    shutdown: CancellationToken,
) -> Result<Router, String> {
    let url = url::Url::parse(&args.resource).map_err(|e| format!("--resource: {e}"))?;
    let path = match url.path() {
        "" => "/",
        p => p,
    }
    .to_owned();
    let mut hosts = args.allowed_hosts.clone();
    if hosts.is_empty() {
        hosts.extend(url.host_str().map(str::to_owned));
        hosts.extend(["localhost", "127.0.0.1", "::1"].map(String::from));
    }
    let store = Store::default();
    let mcp = StreamableHttpService::new(
        move || Ok(NotesServer::new(store.clone())),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default()
            .with_allowed_hosts(hosts)
            .with_cancellation_token(shutdown),
    );
    // Browser-based MCP clients (e.g. MCP Inspector) need to read the challenge and session id.
    let cors = tower_http::cors::CorsLayer::new()
        .allow_origin(tower_http::cors::Any)
        .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            HeaderName::from_static("mcp-session-id"),
            HeaderName::from_static("mcp-protocol-version"),
            HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([
            header::WWW_AUTHENTICATE,
            HeaderName::from_static("mcp-session-id"),
        ])
        .max_age(Duration::from_secs(600));
    let tools = ToolScopes::new()
        .tool("list_notes", [READ])
        .tool("add_note", [WRITE]);
    Ok(Router::new()
        .route_service(&path, mcp)
        // Inner to outer: per-tool scopes need the caller the bearer layer verified.
        .layer(tools)
        .layer(resource.layer())
        .merge(resource.metadata_router())
        .layer(cors))
}

async fn shutdown_signal() {
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

async fn run(args: Args) -> Result<(), String> {
    let resource = protected_resource(&args)?;
    let shutdown = CancellationToken::new();
    let router = app(&args, &resource, shutdown.child_token())?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("--listen: cannot bind {}: {e}", args.listen))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(
        resource = %resource.resource(),
        issuer = %resource.issuer(),
        metadata = %resource.metadata_url(),
        "MCP server listening on http://{local}"
    );
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            shutdown.cancel();
        })
        .await
        .map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("MCP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("consentry-example-mcp-server: {e}");
            ExitCode::FAILURE
        }
    }
}
