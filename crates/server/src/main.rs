//! The `consentry` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use consentry_server::config::Config;
use consentry_server::operator::{self, AdminApi, PolicyEdit};
use consentry_server::{dev, keys, mint, state::now, store::Store};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(
    name = "consentry",
    version,
    about = "OAuth 2.1 for AI agents and MCP clients, on top of your existing login"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the authorization server.
    Serve {
        #[arg(
            long,
            short,
            default_value = "consentry.toml",
            env = "CONSENTRY_CONFIG"
        )]
        config: PathBuf,
    },
    /// Zero-setup local server: writes a dev config and keypair (once), starts on SQLite, prints
    /// a ready-to-paste example.
    Dev {
        /// Folder for the dev config, keys and database.
        #[arg(long, default_value = ".consentry-dev")]
        dir: PathBuf,
        #[arg(long, default_value_t = 8787)]
        port: u16,
        /// Origin of the product app whose /oauth/authorize page shows consent.
        #[arg(long, default_value = "http://127.0.0.1:3000")]
        app_origin: String,
        /// The protected resource (MCP server) tokens are for.
        #[arg(long, default_value = "http://127.0.0.1:8788/mcp")]
        resource: String,
    },
    /// Mint a short-lived Trusted Auth Token with your own private key (for logins that issue
    /// no JWTs). Prints the token.
    MintTat {
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        issuer: String,
        #[arg(long)]
        audience: String,
        #[arg(long)]
        sub: String,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        name: Option<String>,
        /// Comma-separated roles.
        #[arg(long, value_delimiter = ',')]
        roles: Vec<String>,
        #[arg(long, default_value = "10m")]
        ttl: String,
        /// Claim carrying the user id, when the token profile maps another (e.g. userId).
        #[arg(long, default_value = "sub")]
        user_id_claim: String,
        /// The user's organization (`org_id` claim).
        #[arg(long)]
        org_id: Option<String>,
        /// Its display name (`org_name` claim).
        #[arg(long)]
        org_name: Option<String>,
    },
    /// Signing key management.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Organizations of a running server (through its admin API).
    Orgs {
        #[command(subcommand)]
        command: OrgsCommand,
    },
    /// An organization's policy (through the admin API: a change revokes the grants it
    /// excludes, like the API's).
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// First-party clients (through the admin API).
    Clients {
        #[command(subcommand)]
        command: ClientsCommand,
    },
}

/// Which server's admin API: the config gives the key (admin_key) and, without --server, the
/// address (listen).
#[derive(clap::Args)]
struct Target {
    #[arg(
        long,
        short,
        default_value = "consentry.toml",
        env = "CONSENTRY_CONFIG"
    )]
    config: PathBuf,
    /// The server's base URL (default: http://<listen> from the config).
    #[arg(long, env = "CONSENTRY_SERVER_URL")]
    server: Option<String>,
}

impl Target {
    fn api(&self) -> anyhow::Result<AdminApi> {
        let cfg = Config::load(&self.config)?;
        AdminApi::new(&cfg, self.server.as_deref())
    }
}

#[derive(Subcommand)]
enum OrgsCommand {
    /// Every organization: id, name, members, policy version.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// One organization, with its policy and the apps its members connected.
    Show {
        organization_id: String,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
enum PolicyCommand {
    /// Print an organization's policy (JSON) and its version.
    Get {
        #[arg(long)]
        org: String,
        #[command(flatten)]
        target: Target,
    },
    /// Change an organization's policy: the flags edit the current one (or --file replaces
    /// it); applied only if nobody changed it meanwhile (If-Match).
    Set {
        #[arg(long)]
        org: String,
        /// A whole policy document (JSON) instead of the flags.
        #[arg(long, conflicts_with_all = ["first_party", "third_party", "allow", "allow_host", "allow_first_party"])]
        file: Option<PathBuf>,
        /// first-party apps: all_allowed | restricted | not_allowed
        #[arg(long, value_parser = operator::parse_mode)]
        first_party: Option<consentry_protocol::AppMode>,
        /// third-party apps (DCR, CIMD): all_allowed | restricted | not_allowed
        #[arg(long, value_parser = operator::parse_mode)]
        third_party: Option<consentry_protocol::AppMode>,
        /// Allow a third-party client id (repeatable; sets third-party to restricted).
        #[arg(long)]
        allow: Vec<String>,
        /// Allow a metadata-document host: claude.ai or *.example.com (repeatable).
        #[arg(long)]
        allow_host: Vec<String>,
        /// Allow a first-party client id (repeatable; sets first-party to restricted).
        #[arg(long)]
        allow_first_party: Vec<String>,
        /// Disallow a scope for agents (repeatable).
        #[arg(long)]
        disallow_scope: Vec<String>,
        /// Allow a scope again (repeatable).
        #[arg(long)]
        allow_scope: Vec<String>,
        /// scope=role1,role2 (repeatable; scope= removes the requirement).
        #[arg(long)]
        require_roles: Vec<String>,
        /// Seconds (0 removes the limit).
        #[arg(long)]
        access_token_ttl: Option<i64>,
        /// Seconds (0 removes the limit).
        #[arg(long)]
        grant_max_lifetime: Option<i64>,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Subcommand)]
enum ClientsCommand {
    /// Create a first-party client; prints it with its secret (shown once).
    Create {
        /// RFC 7591 client metadata (JSON); or the flags below.
        #[arg(long, conflicts_with_all = ["name", "redirect_uri"])]
        file: Option<PathBuf>,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        redirect_uri: Vec<String>,
        /// A confidential client (client_secret_basic) instead of a public one.
        #[arg(long)]
        confidential: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Replace a first-party client's metadata (RFC 7591 JSON).
    Update {
        client_id: String,
        #[arg(long)]
        file: PathBuf,
        #[command(flatten)]
        target: Target,
    },
    /// Delete a client created through the admin API or registered (its grants are revoked).
    Delete {
        client_id: String,
        #[command(flatten)]
        target: Target,
    },
}

fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

fn read_json(path: &std::path::Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--file: cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("--file: {} is not JSON", path.display()))
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Make a new signing key current; old keys stay in JWKS until every token they signed expired.
    Rotate {
        #[arg(
            long,
            short,
            default_value = "consentry.toml",
            env = "CONSENTRY_CONFIG"
        )]
        config: PathBuf,
    },
    /// List signing keys.
    List {
        #[arg(
            long,
            short,
            default_value = "consentry.toml",
            env = "CONSENTRY_CONFIG"
        )]
        config: PathBuf,
    },
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CONSENTRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { config } => {
            init_tracing();
            let cfg = Config::load(&config)?;
            consentry_server::serve(cfg, consentry_server::shutdown_signal()).await
        }
        Command::Dev {
            dir,
            port,
            app_origin,
            resource,
        } => {
            init_tracing();
            dev::run(dev::DevOptions {
                dir,
                port,
                app_origin,
                resource,
            })
            .await
        }
        Command::MintTat {
            key,
            issuer,
            audience,
            sub,
            email,
            name,
            roles,
            ttl,
            user_id_claim,
            org_id,
            org_name,
        } => {
            let pem = std::fs::read_to_string(&key)
                .with_context(|| format!("--key: cannot read {}", key.display()))?;
            let token = mint::mint(&mint::MintTat {
                private_key_pem: &pem,
                issuer: &issuer,
                audience: &audience,
                user_id: &sub,
                user_id_claim: &user_id_claim,
                email: email.as_deref(),
                name: name.as_deref(),
                roles: &roles,
                organization_id: org_id.as_deref(),
                organization_name: org_name.as_deref(),
                ttl_seconds: mint::parse_duration_seconds(&ttl).context("--ttl")?,
                now: now(),
            })?;
            println!("{token}");
            Ok(())
        }
        Command::Keys { command } => {
            let (config, rotate) = match command {
                KeysCommand::Rotate { config } => (config, true),
                KeysCommand::List { config } => (config, false),
            };
            let cfg = Config::load(&config)?;
            let store = Store::connect(&cfg.database_url, Some(2)).await?;
            if rotate {
                let kid = keys::rotate(&store, cfg.signing_alg, now()).await?;
                println!(
                    "new current signing key: {kid} ({})",
                    cfg.signing_alg.as_str()
                );
                println!(
                    "running servers pick it up within 30 s; retired keys stay in JWKS for {} s",
                    cfg.max_signed_token_ttl()
                );
            }
            for k in store.signing_keys().await? {
                let status = match k.retired_at {
                    None => "current".to_string(),
                    Some(t) => format!("retired at {t}"),
                };
                println!("{}  {}  created {}  {}", k.kid, k.alg, k.created_at, status);
            }
            Ok(())
        }
        Command::Orgs { command } => match command {
            OrgsCommand::List { target } => {
                let orgs = target.api()?.get("/admin/v1/organizations").await?;
                for o in orgs["organizations"].as_array().into_iter().flatten() {
                    println!(
                        "{}  {}  members {}  policy v{}",
                        o["organization_id"].as_str().unwrap_or(""),
                        o["organization_name"].as_str().unwrap_or("-"),
                        o["members"],
                        o["policy_version"]
                    );
                }
                Ok(())
            }
            OrgsCommand::Show {
                organization_id,
                target,
            } => {
                let api = target.api()?;
                let id = operator::segment(&organization_id);
                let org = api.get(&format!("/admin/v1/organizations/{id}")).await?;
                let (policy, _) = api.policy(&organization_id).await?;
                let apps = api
                    .get(&format!("/admin/v1/organizations/{id}/connected_apps"))
                    .await?;
                print_json(&json!({
                    "organization": org,
                    "policy": policy.policy,
                    "connected_apps": apps["apps"],
                }));
                Ok(())
            }
        },
        Command::Policy { command } => match command {
            PolicyCommand::Get { org, target } => {
                let (state, _) = target.api()?.policy(&org).await?;
                print_json(&serde_json::to_value(&state)?);
                Ok(())
            }
            PolicyCommand::Set {
                org,
                file,
                first_party,
                third_party,
                allow,
                allow_host,
                allow_first_party,
                disallow_scope,
                allow_scope,
                require_roles,
                access_token_ttl,
                grant_max_lifetime,
                target,
            } => {
                let api = target.api()?;
                let (mut policy, etag) = match api.policy(&org).await {
                    Ok((state, etag)) => (state.policy, Some(etag)),
                    // No member has signed in yet: create it (If-None-Match: *).
                    Err(e) if e.to_string().starts_with("404") => Default::default(),
                    Err(e) => return Err(e),
                };
                match file {
                    Some(f) => policy = serde_json::from_value(read_json(&f)?)?,
                    None => operator::apply(
                        &mut policy,
                        &PolicyEdit {
                            first_party,
                            third_party,
                            allow_first_party,
                            allow,
                            allow_hosts: allow_host,
                            disallow_scopes: disallow_scope,
                            allow_scopes: allow_scope,
                            require_roles,
                            access_token_ttl_seconds: access_token_ttl,
                            grant_max_lifetime_seconds: grant_max_lifetime,
                        },
                    )?,
                }
                let state = api.put_policy(&org, &policy, etag.as_deref()).await?;
                print_json(&serde_json::to_value(&state)?);
                eprintln!(
                    "policy of '{}' is now version {}; {} grant(s) revoked",
                    state.organization_id,
                    state.version,
                    state.revoked_grants.unwrap_or(0)
                );
                Ok(())
            }
        },
        Command::Clients { command } => match command {
            ClientsCommand::Create {
                file,
                name,
                redirect_uri,
                confidential,
                target,
            } => {
                let body = match file {
                    Some(f) => read_json(&f)?,
                    None => json!({
                        "client_name": name,
                        "redirect_uris": redirect_uri,
                        "token_endpoint_auth_method":
                            if confidential { "client_secret_basic" } else { "none" },
                    }),
                };
                print_json(&target.api()?.post("/admin/v1/clients", &body).await?);
                Ok(())
            }
            ClientsCommand::Update {
                client_id,
                file,
                target,
            } => {
                let path = format!("/admin/v1/clients/{}", operator::segment(&client_id));
                print_json(&target.api()?.put(&path, &read_json(&file)?).await?);
                Ok(())
            }
            ClientsCommand::Delete { client_id, target } => {
                let path = format!("/admin/v1/clients/{}", operator::segment(&client_id));
                target.api()?.delete(&path).await?;
                println!("deleted {client_id}");
                Ok(())
            }
        },
    }
}

/// mimalloc instead of glibc's malloc: allocation and free (malloc, _int_free,
/// malloc_consolidate, …) took ~8 % of the server's CPU per request in profiles.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    consentry_server::install_crypto_providers();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("consentry: {e:#}");
            ExitCode::FAILURE
        }
    }
}
