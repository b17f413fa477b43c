//! The browser SDK's build (`cargo xtask sdk`): wasm, wasm-bindgen, wasm-opt, the npm package.

use crate::*;

pub(crate) const SDK_PACKAGE: &str = "packages/consentry";
pub(crate) const SDK_CRATE: &str = "consentry-wasm";
pub(crate) const SDK_WASM: &str = "consentry_wasm";
pub(crate) const SDK_PROFILE: &str = "wasm-release";
/// Where `cargo xtask size` keeps an optimised copy that still has its function names.
pub(crate) const SDK_NAMED_DIR: &str = "target/sdk-size";

pub(crate) fn no_args(cmd: &str, args: &[String]) -> Result<()> {
    match args.first() {
        Some(other) => err(format!(
            "`cargo xtask {cmd}` takes no arguments (got `{other}`)"
        )),
        None => Ok(()),
    }
}

/// The two wasm builds of consentry-wasm: (cargo features, wasm-bindgen output name). The
/// headless one backs `consentry/headless`; the full one (Leptos UI + headless) backs `consentry`
/// and `consentry/react`, so a page never loads both.
pub(crate) const SDK_BUILDS: [(&str, &str); 2] = [("headless", SDK_WASM), ("ui", SDK_FULL_WASM)];
pub(crate) const SDK_FULL_WASM: &str = "consentry_full";
/// What `dist/` ships besides the wasm-bindgen output (copied from src/).
pub(crate) const SDK_SOURCES: [&str; 9] = [
    "sdk.js",
    "headless.js",
    "headless.d.ts",
    "index.js",
    "index.d.ts",
    "react.js",
    "react.d.ts",
    "server.js",
    "server.d.ts",
];

/// Set to build the SDK's wasm against the prebuilt std (no rust-src, no unstable flags): for a
/// toolchain where the flags in [`SMALL_STD`] no longer work. About 12 KB gzip bigger.
pub(crate) const PREBUILT_STD_ENV: &str = "CONSENTRY_SDK_PREBUILT_STD";

/// How the SDK's wasm gets its standard library: rebuilt from rust-src with `panic =
/// immediate-abort` and std's `optimize_for_size`, so that no panic message, `Location`, panic
/// hook or the `core::fmt` machinery they drag in is linked (-11.5 KB gzip on the UI wasm,
/// -7.4 KB on the headless one; the SDK never panics by design, and a panic in a wasm32 build
/// was already an abort with its message printed nowhere). These are nightly flags;
/// `RUSTC_BOOTSTRAP=1` lets the stable toolchain accept them for this one build, the way
/// Firefox and the Linux kernel build on stable rustc. Only the SDK's wasm builds use it: the
/// server, the tests and the wasm-bindgen tests build with the plain stable toolchain.
pub(crate) const SMALL_STD: SmallStd = SmallStd {
    cargo_args: &[
        "-Zbuild-std=std,panic_abort",
        "-Zbuild-std-features=optimize_for_size",
    ],
    rustflags: "-Zunstable-options -Cpanic=immediate-abort",
};

pub(crate) struct SmallStd {
    cargo_args: &'static [&'static str],
    rustflags: &'static str,
}

/// Whether the SDK build rebuilds std (see [`SMALL_STD`]); installs rust-src when missing.
pub(crate) fn small_std() -> Result<bool> {
    if env::var_os(PREBUILT_STD_ENV).is_some_and(|v| !v.is_empty() && v != "0") {
        eprintln!("    {PREBUILT_STD_ENV} set: linking the prebuilt std (bigger wasm)");
        return Ok(false);
    }
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| spawn_error("rustc", &e))?;
    let library = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim())
        .join("lib/rustlib/src/rust/library");
    if !library.is_dir() {
        eprintln!(
            "    rust-src is missing (the SDK's wasm rebuilds std): rustup component add rust-src"
        );
        run(Command::new("rustup").args(["component", "add", "rust-src"]))?;
    }
    Ok(true)
}

/// Build one feature set of consentry-wasm; returns the built `.wasm`.
pub(crate) fn build_sdk_wasm(features: &str) -> Result<PathBuf> {
    build_sdk_wasm_in(features, small_std()?, &target_dir())
}

/// [`build_sdk_wasm`] with std rebuilt or not, into `target`.
fn build_sdk_wasm_in(features: &str, small_std: bool, target: &Path) -> Result<PathBuf> {
    let mut cmd = cargo();
    cmd.env("CARGO_TARGET_DIR", target);
    // `cargo rustc --crate-type cdylib`: the crate is also an rlib (for its wasm-bindgen tests),
    // and building both types defeats part of LTO (+10 KB raw, +4 KB gzip on the headless wasm).
    cmd.args([
        "rustc",
        "--crate-type",
        "cdylib",
        "--locked",
        "-p",
        SDK_CRATE,
        "--lib",
        "--target",
        WASM_TARGET,
        "--profile",
        SDK_PROFILE,
        "--no-default-features",
        "--features",
        features,
    ]);
    if small_std {
        cmd.args(SMALL_STD.cargo_args)
            .env("RUSTC_BOOTSTRAP", "1")
            // Target-scoped, so build scripts and proc macros (host) build as usual.
            .env(
                "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS",
                SMALL_STD.rustflags,
            );
    }
    run(&mut cmd)?;
    Ok(target
        .join(WASM_TARGET)
        .join(SDK_PROFILE)
        .join(format!("{SDK_WASM}.wasm")))
}

pub(crate) fn build_sdk() -> Result<()> {
    let root = repo_root();
    let package = root.join(SDK_PACKAGE);
    ensure_wasm_target()?;
    let wasm_bindgen = ensure_wasm_bindgen()?;
    ensure_npm_packages()?;

    // Built next to dist/ and swapped in whole: whoever packs or serves dist/ meanwhile (another
    // test run, `npm pack`) sees the old build or the new one, never half of one.
    let dist = package.join("dist");
    let staging = package.join(format!("dist.tmp-{}", std::process::id()));
    if staging.exists() {
        fs::remove_dir_all(&staging)?;
    }
    let wasm_dir = staging.join("wasm");
    for (features, name) in SDK_BUILDS {
        // Both feature sets write the same artifact: bind each before building the next.
        let built = build_sdk_wasm(features)?;
        bindgen_and_optimise(&wasm_bindgen, &built, &wasm_dir, name, false)?;
        let wasm_bytes = fs::metadata(wasm_dir.join(format!("{name}_bg.wasm")))?.len();
        eprintln!("    {name}: {wasm_bytes} bytes of wasm");
    }
    for file in SDK_SOURCES {
        let source = package.join("src").join(file);
        if source.is_file() {
            fs::copy(source, staging.join(file))?;
        }
    }
    let old = package.join(format!("dist.old-{}", std::process::id()));
    if dist.exists() {
        fs::rename(&dist, &old)?;
    }
    fs::rename(&staging, &dist)?;
    if old.exists() {
        fs::remove_dir_all(&old)?;
    }
    eprintln!("    {} (sizes: cargo xtask size)", dist.display());
    Ok(())
}

pub(crate) const PREBUILT_STD_STEP: &str =
    "the CONSENTRY_SDK_PREBUILT_STD fallback: full wasm against the prebuilt std (size printed)";

/// The fallback of [`SMALL_STD`] ([`PREBUILT_STD_ENV`]) built in the test command, so that it
/// cannot rot unnoticed: the full (UI) wasm against the prebuilt std, in a target directory of its
/// own (its artifacts would otherwise replace the small-std ones and rebuild both every run),
/// through wasm-bindgen and wasm-opt like the shipped one. Its size is printed next to the
/// shipped build's, not checked against a budget. Needs `build_sdk` first (the tools, dist/).
pub(crate) fn check_prebuilt_std_fallback() -> Result<()> {
    let (features, name) = SDK_BUILDS[1];
    let target = target_dir().join("sdk-prebuilt-std");
    let built = build_sdk_wasm_in(features, false, &target)?;
    let out = target.join("out");
    bindgen_and_optimise(&ensure_wasm_bindgen()?, &built, &out, name, false)?;
    let file = format!("{name}_bg.wasm");
    let shipped = repo_root().join(SDK_PACKAGE).join("dist/wasm").join(&file);
    for (what, wasm) in [
        ("prebuilt std", out.join(&file)),
        ("shipped (std rebuilt)", shipped),
    ] {
        let bytes = fs::read(&wasm)?;
        let gzipped = Command::new("gzip")
            .args(["-9c"])
            .arg(&wasm)
            .output()
            .map_err(|e| spawn_error("gzip", &e))?;
        eprintln!(
            "    {file}, {what}: {} bytes, {} gzip -9",
            bytes.len(),
            gzipped.stdout.len()
        );
    }
    Ok(())
}

/// wasm-bindgen --target web, then wasm-opt -Oz. `keep_names` keeps the name section (for size
/// analysis); the shipped build drops it (~130 KB raw).
pub(crate) fn bindgen_and_optimise(
    wasm_bindgen: &Path,
    built: &Path,
    out_dir: &Path,
    out_name: &str,
    keep_names: bool,
) -> Result<()> {
    let mut bindgen = Command::new(wasm_bindgen);
    bindgen
        .arg(built)
        .args(["--target", "web", "--no-typescript", "--out-name", out_name])
        .args(["--out-dir"])
        .arg(out_dir);
    if !keep_names {
        bindgen.args(["--remove-name-section", "--remove-producers-section"]);
    }
    run(&mut bindgen)?;
    let wasm = out_dir.join(format!("{out_name}_bg.wasm"));
    let wasm_opt = repo_root()
        .join(SDK_PACKAGE)
        .join("node_modules/.bin/wasm-opt");
    let mut opt = Command::new(&wasm_opt);
    // `--low-memory-unused`: rustc's layout puts the stack first and data at 1 MiB, so the low
    // 1 KiB is never addressed and binaryen may fold constant offsets into loads and stores.
    // -Oz twice: the second round finds more after the first (≈ 0.5 KB gzip on the full wasm).
    opt.args(["--low-memory-unused", "-Oz", "-Oz"])
        // The features rustc enables by default for wasm32-unknown-unknown.
        .args([
            "--enable-bulk-memory",
            "--enable-nontrapping-float-to-int",
            "--enable-sign-ext",
            "--enable-mutable-globals",
            "--enable-reference-types",
            "--enable-multivalue",
        ])
        .arg(&wasm)
        .arg("-o")
        .arg(&wasm);
    if keep_names {
        opt.arg("--debuginfo");
    } else {
        opt.arg("--strip-debug").arg("--strip-producers");
    }
    run(&mut opt)
}

/// The version of the `wasm-bindgen` crate in Cargo.lock: the CLI must be exactly the same.
pub(crate) fn locked_wasm_bindgen_version() -> Result<String> {
    let lock = fs::read_to_string(repo_root().join("Cargo.lock"))?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == "name = \"wasm-bindgen\""
            && let Some(v) = lines
                .next()
                .and_then(|l| l.strip_prefix("version = \""))
                .and_then(|l| l.strip_suffix('"'))
        {
            return Ok(v.to_owned());
        }
    }
    err("no wasm-bindgen in Cargo.lock")
}

/// `.tools/bin/wasm-bindgen` at the locked version, installed with cargo if missing. Not
/// `--locked`: the CLI's lockfile pins crates the registry mirror lacks.
pub(crate) fn ensure_wasm_bindgen() -> Result<PathBuf> {
    let version = locked_wasm_bindgen_version()?;
    let tools = repo_root().join(".tools");
    let bin = tools.join("bin").join("wasm-bindgen");
    let installed = Command::new(&bin).arg("--version").output().is_ok_and(|o| {
        String::from_utf8_lossy(&o.stdout).trim() == format!("wasm-bindgen {version}")
    });
    if installed {
        eprintln!("    wasm-bindgen {version} already in {}", tools.display());
        return Ok(bin);
    }
    eprintln!(
        "    installing wasm-bindgen-cli {version} into {} (a few minutes, once)",
        tools.display()
    );
    run(cargo()
        .args([
            "install",
            "wasm-bindgen-cli",
            "--version",
            &version,
            "--root",
        ])
        .arg(&tools))?;
    Ok(bin)
}

/// The package's devDependencies in its own node_modules (`--workspaces=false`: the root
/// package.json declares workspaces, which would otherwise hoist them to /node_modules).
pub(crate) fn ensure_npm_packages() -> Result<()> {
    let package = repo_root().join(SDK_PACKAGE);
    let modules = package.join("node_modules");
    let lock = package.join("package-lock.json");
    let installed_lock = modules.join(".package-lock.json");
    let fresh = match (fs::metadata(&lock), fs::metadata(&installed_lock)) {
        (Ok(l), Ok(i)) => match (l.modified(), i.modified()) {
            (Ok(l), Ok(i)) => i >= l,
            _ => false,
        },
        _ => false,
    };
    let tools_present = ["wasm-opt", "tsc", "playwright", "esbuild"]
        .iter()
        .all(|b| modules.join(".bin").join(b).exists());
    if fresh && tools_present {
        eprintln!("    npm devDependencies already installed");
        return Ok(());
    }
    if find_in_path("npm").is_none() {
        return err("npm not found: install Node.js 20+ (with npm) first");
    }
    run(Command::new("npm")
        .args(["ci", "--workspaces=false", "--no-audit", "--no-fund"])
        .current_dir(&package)
        // Playwright drives Debian's Chromium; its own browser downloads fail here.
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1"))
}
