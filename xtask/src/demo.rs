//! `cargo xtask demo`: consentry (dev mode), the example MCP server and the Next.js app together,
//! supervised: Ctrl-C, or any one of them exiting, stops all three.

use crate::*;

pub(crate) const DEMO_CONSENTRY_PORT: u16 = 8787;
pub(crate) const DEMO_MCP_PORT: u16 = 8788;
pub(crate) const DEMO_APP_PORT: u16 = 3000;
pub(crate) const NEXT_APP: &str = "examples/nextjs-app";
pub(crate) const AGENT: &str = "examples/agent";
pub(crate) const MCP_SERVER_TS: &str = "examples/mcp-server-ts";
pub(crate) const E2E_DIR: &str = "tests";

/// `cargo xtask demo`: build what the demo needs, then run consentry (dev mode, SQLite), the
/// example MCP server and the Next.js app together; Ctrl-C stops all three.
pub(crate) fn cmd_demo(rest: &[String]) -> Result<ExitCode> {
    no_args("demo", rest)?;
    let root = repo_root();
    for port in [DEMO_CONSENTRY_PORT, DEMO_MCP_PORT, DEMO_APP_PORT] {
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            return err(format!(
                "127.0.0.1:{port} is in use (the demo needs {DEMO_CONSENTRY_PORT}, {DEMO_MCP_PORT} and {DEMO_APP_PORT}); is a demo already running?"
            ));
        }
    }
    let (consentry, mcp_server) = step(
        "build consentry and the example MCP server",
        build_demo_binaries,
    )?;
    step("build the browser SDK", build_sdk)?;
    step("npm packages of the Next.js app and the agent", || {
        ensure_example_packages(&root.join(NEXT_APP))?;
        npm_ci_if_stale(&root.join(AGENT))
    })?;
    step(
        "production build of the Next.js app (when stale)",
        build_next_app,
    )?;

    let issuer = format!("http://127.0.0.1:{DEMO_CONSENTRY_PORT}");
    let mcp_url = format!("http://127.0.0.1:{DEMO_MCP_PORT}/mcp");
    let app_origin = format!("http://127.0.0.1:{DEMO_APP_PORT}");
    let dev_dir = root.join(".consentry-dev");
    let logs = dev_dir.join("logs");
    fs::create_dir_all(&logs)?;
    let mut demo = Demo::start(&DemoLayout {
        consentry: &consentry,
        mcp_server: &mcp_server,
        dev_dir: &dev_dir,
        logs: &logs,
        app_dir: &root.join(NEXT_APP),
        issuer: &issuer,
        mcp_url: &mcp_url,
        app_origin: &app_origin,
    })?;

    eprintln!(
        "
==> starting consentry, the MCP server and the Next.js app (logs in {})",
        logs.display()
    );
    let ready = [
        ("consentry", DEMO_CONSENTRY_PORT, "/healthz"),
        (
            "MCP server",
            DEMO_MCP_PORT,
            "/.well-known/oauth-protected-resource/mcp",
        ),
        ("Next.js app", DEMO_APP_PORT, "/login"),
    ]
    .iter()
    .all(|(name, port, path)| {
        let up = wait_http_ok(*port, path, &mut demo);
        if !up {
            eprintln!("xtask: {name} did not start on 127.0.0.1:{port}");
        }
        up
    });
    if !ready {
        demo.stop();
        for log in ["consentry", "mcp-server", "nextjs-app"] {
            let text = fs::read_to_string(logs.join(format!("{log}.log"))).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            eprintln!("--- {log}.log (last lines)");
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
        return err("the demo did not start");
    }
    println!(
        "
Consentry demo is running (Ctrl-C stops everything):

  Consentry (authorization server)  {issuer}        dev config, keys, SQLite: .consentry-dev/
  MCP server (notes)                {mcp_url}
  Product app (login, consent)      {app_origin}        sign in as alice / wonderland (or bob / builder)
  Connected apps (revoke access)    {app_origin}/settings/connected-apps

Next, in another terminal, run the agent (official MCP TypeScript SDK client):

  node examples/agent/agent.mjs --mcp-url {mcp_url}

It prints a consent URL: open it, sign in, Allow. It then lists your notes and adds one
(asking again for notes:write: step-up). Or point the MCP Inspector at {mcp_url}:
  npx @modelcontextprotocol/inspector

Logs: {logs}/{{consentry,mcp-server,nextjs-app}}.log",
        logs = logs.display()
    );
    let exited = demo.wait_any();
    demo.stop();
    eprintln!(
        "xtask: {exited} exited, so the demo stopped; see the logs in {}",
        logs.display()
    );
    Ok(ExitCode::FAILURE)
}

/// Poll `http://127.0.0.1:{port}{path}` (plain std HTTP/1.0) until it answers 200, for up to 60 s.
pub(crate) fn wait_http_ok(port: u16, path: &str, demo: &mut Demo) -> bool {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if demo.exited().is_some() {
            return false;
        }
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
            let mut head = [0u8; 12];
            if stream.write_all(request.as_bytes()).is_ok()
                && stream.read_exact(&mut head).is_ok()
                && head.ends_with(b" 200")
            {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// Where the demo's processes and files are.
pub(crate) struct DemoLayout<'a> {
    pub(crate) consentry: &'a Path,
    pub(crate) mcp_server: &'a Path,
    pub(crate) dev_dir: &'a Path,
    pub(crate) logs: &'a Path,
    pub(crate) app_dir: &'a Path,
    pub(crate) issuer: &'a str,
    pub(crate) mcp_url: &'a str,
    pub(crate) app_origin: &'a str,
}

/// The demo's three processes, supervised.
///
/// They stay in xtask's process group, so the terminal's Ctrl-C (SIGINT to the foreground group)
/// reaches each of them and each shuts down on its own; xtask (std only and `unsafe`-free: it
/// cannot catch a signal) dies with them. When one of them exits by itself, xtask stops the
/// others: SIGTERM, then SIGKILL after 5 s. A SIGTERM for the whole demo goes to the group:
/// `kill -TERM -- -<pgid>`.
pub(crate) struct Demo {
    processes: Vec<(&'static str, std::process::Child)>,
}

impl Demo {
    pub(crate) fn start(l: &DemoLayout<'_>) -> Result<Demo> {
        let log = |name: &str| -> Result<std::process::Stdio> {
            Ok(fs::File::create(l.logs.join(format!("{name}.log")))?.into())
        };
        let mut demo = Demo {
            processes: Vec::new(),
        };
        let consentry = Command::new(l.consentry)
            .arg("dev")
            .arg("--dir")
            .arg(l.dev_dir)
            .args(["--port", &DEMO_CONSENTRY_PORT.to_string()])
            .args(["--app-origin", l.app_origin, "--resource", l.mcp_url])
            .stdout(log("consentry")?)
            .stderr(log("consentry")?)
            .spawn()
            .map_err(|e| spawn_error(&l.consentry.display().to_string(), &e))?;
        demo.processes.push(("consentry", consentry));

        // consentry dev writes the resource's introspection secret on first start: with it the
        // MCP server checks revocation (a revoked agent stops at once, not when its token
        // expires).
        let secret_file = l.dev_dir.join("introspection_secret");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut secret = String::new();
        while Instant::now() < deadline && demo.exited().is_none() {
            secret = fs::read_to_string(&secret_file).unwrap_or_default();
            if !secret.trim().is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut mcp = Command::new(l.mcp_server);
        mcp.args(["--listen", &format!("127.0.0.1:{DEMO_MCP_PORT}")])
            .args(["--issuer", l.issuer, "--resource", l.mcp_url])
            .stdout(log("mcp-server")?)
            .stderr(log("mcp-server")?);
        if !secret.trim().is_empty() {
            mcp.env("CONSENTRY_INTROSPECTION_SECRET", secret.trim());
        }
        let mcp = mcp
            .spawn()
            .map_err(|e| spawn_error(&l.mcp_server.display().to_string(), &e));
        match mcp {
            Ok(child) => demo.processes.push(("the MCP server", child)),
            Err(e) => {
                demo.stop();
                return Err(e);
            }
        }

        let app = Command::new(l.app_dir.join("node_modules/.bin/next"))
            .args(["start", "--hostname", "127.0.0.1"])
            .args(["--port", &DEMO_APP_PORT.to_string()])
            .current_dir(l.app_dir)
            // The Next app's defaults match this layout; said explicitly so they cannot drift.
            .env("CONSENTRY_URL", l.issuer)
            .env(
                "CONSENTRY_TAT_PRIVATE_KEY_FILE",
                l.dev_dir.join("tat_private.pem"),
            )
            .env("NEXT_TELEMETRY_DISABLED", "1")
            .stdout(log("nextjs-app")?)
            .stderr(log("nextjs-app")?)
            .spawn()
            .map_err(|e| spawn_error("next", &e));
        match app {
            Ok(child) => demo.processes.push(("the Next.js app", child)),
            Err(e) => {
                demo.stop();
                return Err(e);
            }
        }
        Ok(demo)
    }

    /// The name of a process that has exited, if one has.
    pub(crate) fn exited(&mut self) -> Option<&'static str> {
        self.processes
            .iter_mut()
            .find_map(|(name, child)| (!matches!(child.try_wait(), Ok(None))).then_some(*name))
    }

    /// Block until one of the processes exits; its name.
    pub(crate) fn wait_any(&mut self) -> &'static str {
        loop {
            if let Some(name) = self.exited() {
                return name;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGTERM to every process still running, SIGKILL to those still there 5 s later.
    pub(crate) fn stop(&mut self) {
        for (_, child) in &mut self.processes {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline
            && self
                .processes
                .iter_mut()
                .any(|(_, child)| matches!(child.try_wait(), Ok(None)))
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        for (_, child) in &mut self.processes {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}
