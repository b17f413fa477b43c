//! Chromium, and the suites that run in it: the SDK's Playwright tests, the wasm-bindgen tests,
//! packaging, the examples' tests; `cargo xtask size`.

use crate::*;

pub(crate) fn ensure_chromium() -> Result<PathBuf> {
    ensure_debian_binary("/usr/bin/chromium", &["chromium"])
}

/// `binary`, installed with apt-get from Debian's `packages` when it is missing (as root only).
pub(crate) fn ensure_debian_binary(binary: &str, packages: &[&str]) -> Result<PathBuf> {
    let path = PathBuf::from(binary);
    if path.is_file() {
        return Ok(path);
    }
    let packages = packages.join(" ");
    if !is_root()? {
        return err(format!(
            "{binary} not found: sudo apt-get install -y {packages}"
        ));
    }
    eprintln!("    {binary} not found: installing {packages} with apt-get");
    run(Command::new("apt-get").arg("update"))?;
    run(Command::new("apt-get")
        .args(["install", "-y"])
        .args(packages.split(' '))
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    Ok(path)
}

/// tsc on the package's usage file, then Playwright in Chromium against the real server.
pub(crate) fn test_sdk() -> Result<()> {
    let package = repo_root().join(SDK_PACKAGE);
    let chromium = ensure_chromium()?;
    let server = debug_server_binary()?;
    run(Command::new(package.join("node_modules/.bin/tsc"))
        .args(["-p", "tests/tsconfig.json"])
        .current_dir(&package))?;
    // consentry/server (plain JS over jose, no browser) against the real server, in Node.
    run(Command::new("node")
        .args(["--test", "tests/server/"])
        .current_dir(&package)
        .env("CONSENTRY_BIN", &server))?;
    run(Command::new(package.join("node_modules/.bin/playwright"))
        .args(["test", "-c", "tests/playwright.config.mjs"])
        .current_dir(&package)
        .env("CONSENTRY_BIN", &server)
        .env("CHROMIUM_PATH", &chromium))
}

pub(crate) const WASM_TEST_STEP: &str = "consentry-wasm's wasm-bindgen tests in headless Chromium";

/// crates/wasm/tests/*.rs in headless Chromium: wasm-bindgen-test-runner (installed with the
/// wasm-bindgen CLI, same version) as the cargo runner, driving Debian's chromium through
/// chromedriver. Clippy on the wasm32 build of the tests first: the workspace clippy is native only.
pub(crate) fn test_wasm_in_browser() -> Result<()> {
    ensure_wasm_target()?;
    let runner = ensure_wasm_bindgen()?.with_file_name("wasm-bindgen-test-runner");
    if !runner.is_file() {
        return err(format!(
            "{} is missing: remove .tools/bin/wasm-bindgen to reinstall wasm-bindgen-cli",
            runner.display()
        ));
    }
    ensure_chromium()?;
    let chromedriver = ensure_chromedriver()?;
    run(cargo()
        .args([
            "clippy",
            "--locked",
            "-p",
            SDK_CRATE,
            "-p",
            "consentry-ui",
            "--all-targets",
        ])
        .args(["--features", "consentry-wasm/ui"])
        .args(["--target", WASM_TARGET, "--", "-D", "warnings"]))?;
    run(cargo()
        .args(["test", "--locked", "-p", SDK_CRATE, "-p", "consentry-ui"])
        .args(["--target", WASM_TARGET])
        .env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER", &runner)
        .env("CHROMEDRIVER", &chromedriver))
}

pub(crate) const SDK_PACK_STEP: &str = "packaging: npm pack -> publint, attw -> fresh Vite and Next 16 apps -> Chromium; the tarball and the binary alone (import map, CDN layout, strict CSP, require(esm))";

/// The packed package as consumers get it (packages/consentry/tests/packaging): the Playwright
/// globalSetup packs dist/, lints the tarball (publint, attw) and installs it into apps kept in a
/// temp dir (node_modules reused while nothing changed); each test builds an app, serves it and
/// runs a flow against the real server. Then [`test_standalone`] with the debug binary and a
/// tarball packed from dist/. Needs `build_sdk` first.
pub(crate) fn test_sdk_packaging() -> Result<()> {
    let package = repo_root().join(SDK_PACKAGE);
    let chromium = ensure_chromium()?;
    ensure_npm_packages()?;
    let server = debug_server_binary()?;
    run(Command::new(package.join("node_modules/.bin/playwright"))
        .args(["test", "-c", "tests/packaging/playwright.config.mjs"])
        .current_dir(&package)
        .env("CONSENTRY_BIN", &server)
        .env("CHROMIUM_PATH", &chromium)
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1"))?;
    test_standalone(&server, None)
}

/// packages/consentry/tests/standalone: `binary` copied alone into a scratch directory, the npm
/// tarball (`tarball`, else one packed from dist/) installed alone into a scratch app, plain HTML
/// pages with an import map (same origin and a CDN layout) under a strict CSP, in Chromium.
pub(crate) fn test_standalone(binary: &Path, tarball: Option<&Path>) -> Result<()> {
    let package = repo_root().join(SDK_PACKAGE);
    let chromium = ensure_chromium()?;
    let mut cmd = Command::new(package.join("node_modules/.bin/playwright"));
    cmd.args(["test", "-c", "tests/standalone/playwright.config.mjs"])
        .current_dir(&package)
        .env("CONSENTRY_STANDALONE_BIN", binary)
        .env("CHROMIUM_PATH", &chromium)
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1");
    if let Some(tarball) = tarball {
        cmd.env("CONSENTRY_STANDALONE_TGZ", tarball);
    }
    run(&mut cmd)
}

pub(crate) const EXAMPLES_TEST_STEP: &str =
    "examples: nextjs-app and vite-headless (built, in Chromium), mcp-server-ts (node:test)";
pub(crate) const EXAMPLES: [&str; 2] = ["examples/nextjs-app", "examples/vite-headless"];

/// The example apps (standalone npm projects, each with its lockfile and its own Playwright spec):
/// install, type-check, then each spec builds its app for production and runs the whole flow
/// against the real server. Needs `build_sdk` first: the apps install the SDK as a copy of its
/// packed files (`install-links` in their .npmrc), refreshed here when dist/ changed.
pub(crate) fn test_examples() -> Result<()> {
    let chromium = ensure_chromium()?;
    let server = debug_server_binary()?;
    for example in EXAMPLES {
        let dir = repo_root().join(example);
        ensure_example_packages(&dir)?;
        run(Command::new(dir.join("node_modules/.bin/tsc"))
            .arg("--noEmit")
            .current_dir(&dir))?;
        run(Command::new(dir.join("node_modules/.bin/playwright"))
            .arg("test")
            .current_dir(&dir)
            .env("CONSENTRY_BIN", &server)
            .env("CHROMIUM_PATH", &chromium)
            .env("NEXT_TELEMETRY_DISABLED", "1"))?;
    }
    // The JavaScript MCP server (consentry/server + the official MCP SDK): node:test, no browser.
    let dir = repo_root().join(MCP_SERVER_TS);
    ensure_example_packages(&dir)?;
    run(Command::new("node")
        .args(["--test", "test/"])
        .current_dir(&dir)
        .env("CONSENTRY_BIN", &server))
}

/// `npm ci` when node_modules is missing or older than package-lock.json; otherwise only the SDK
/// copy is replaced, and only when it differs from packages/consentry (a rebuilt dist/).
pub(crate) fn ensure_example_packages(dir: &Path) -> Result<()> {
    let modules = dir.join("node_modules");
    let modified = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    let fresh = match (
        modified(&dir.join("package-lock.json")),
        modified(&modules.join(".package-lock.json")),
    ) {
        (Some(lock), Some(installed)) => installed >= lock,
        _ => false,
    };
    let npm = |args: &[&str]| {
        run(Command::new("npm")
            .args(args)
            .args(["--no-audit", "--no-fund"])
            .current_dir(dir)
            .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1"))
    };
    if !fresh {
        if find_in_path("npm").is_none() {
            return err("npm not found: install Node.js 20+ (with npm) first");
        }
        return npm(&["ci"]);
    }
    let installed = modules.join("consentry");
    if same_sdk_files(&repo_root().join(SDK_PACKAGE), &installed) {
        eprintln!(
            "    {}: npm packages and the SDK copy are current",
            dir.display()
        );
        return Ok(());
    }
    eprintln!(
        "    {}: the SDK was rebuilt, reinstalling its copy",
        dir.display()
    );
    // Twice: on a shared checkout another build may be rewriting dist/ while npm packs it.
    for _ in 0..2 {
        fs::remove_dir_all(&installed)?;
        npm(&["install", "--no-save", "--prefer-offline"])?;
        if same_sdk_files(&repo_root().join(SDK_PACKAGE), &installed) {
            return Ok(());
        }
    }
    err(format!(
        "{} differs from {SDK_PACKAGE} after reinstalling (is another build rewriting dist/?)",
        installed.display()
    ))
}

/// Are the installed SDK files (package.json, dist/**) those of the source, both ways (every
/// .js, .d.ts and .wasm of the source's dist/ is installed, every installed file is the source's)?
pub(crate) fn same_sdk_files(source: &Path, installed: &Path) -> bool {
    fn files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                files(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut built = Vec::new();
    files(&source.join("dist"), &mut built);
    let shipped = |f: &&PathBuf| {
        let name = f.to_string_lossy();
        [".js", ".d.ts", ".wasm"].iter().any(|e| name.ends_with(e))
    };
    let all_installed = built.iter().filter(shipped).all(|f| {
        f.strip_prefix(source)
            .is_ok_and(|rel| installed.join(rel).is_file())
    });
    let mut copied = vec![installed.join("package.json")];
    files(&installed.join("dist"), &mut copied);
    all_installed
        && copied.len() > 1
        && copied.iter().all(|f| {
            let Ok(rel) = f.strip_prefix(installed) else {
                return false;
            };
            matches!((fs::read(f), fs::read(source.join(rel))), (Ok(a), Ok(b)) if a == b)
        })
}

/// Debian's chromedriver (package chromium-driver, the same version as its chromium).
pub(crate) fn ensure_chromedriver() -> Result<PathBuf> {
    ensure_debian_binary("/usr/bin/chromedriver", &["chromium", "chromium-driver"])
}

pub(crate) fn cmd_size() -> Result<ExitCode> {
    step("build the browser SDK", build_sdk)?;
    step("an optimised copy with function names, and twiggy", || {
        let tools = repo_root().join(".tools");
        let twiggy = tools.join("bin").join("twiggy");
        if !twiggy.is_file() {
            eprintln!("    installing twiggy into {} (once)", tools.display());
            run(cargo().args(["install", "twiggy", "--root"]).arg(&tools))?;
        }
        for (features, name) in SDK_BUILDS {
            let built = build_sdk_wasm(features)?;
            bindgen_and_optimise(
                &ensure_wasm_bindgen()?,
                &built,
                &repo_root().join(SDK_NAMED_DIR),
                name,
                true,
            )?;
        }
        Ok(())
    })?;
    step(PREBUILT_STD_STEP, check_prebuilt_std_fallback)?;
    let status = Command::new("node")
        .arg(repo_root().join(SDK_PACKAGE).join("scripts/size.mjs"))
        .current_dir(repo_root())
        .status()
        .map_err(|e| spawn_error("node", &e))?;
    Ok(exit_code(status))
}

pub(crate) fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}
