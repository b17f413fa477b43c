//! `cargo xtask dist`: the release artifacts, from one command, into `dist/`:
//!
//! - `consentry-<version>-x86_64-unknown-linux-musl.tar.gz`: the `consentry` server, a static
//!   binary (musl; aws-lc and the bundled SQLite build with musl-gcc), stripped, with LICENSE and
//!   README.md. With `--glibc` (or when the musl toolchain cannot be had: not root, no apt-get)
//!   a glibc build instead, named `…-x86_64-unknown-linux-gnu-glibc<oldest glibc it needs>`
//!   (the newest `GLIBC_x.y` symbol version it references);
//! - `consentry-<version>.tgz`: the npm package (`npm pack`; its `prepack` refuses an unbuilt dist);
//! - `SHA256SUMS` (`sha256sum -c SHA256SUMS`).
//!
//! Then it checks what it made the way a user gets it: the archive unpacked into a scratch
//! directory, the tarball installed into a scratch app, a flow in Chromium (tests/standalone).

use crate::*;
use std::process::Stdio;

pub(crate) const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";
const DIST_DIR: &str = "dist";

pub(crate) fn cmd_dist(args: &[String]) -> Result<ExitCode> {
    let glibc = match args {
        [] => false,
        [flag] if flag == "--glibc" => true,
        [other, ..] => {
            return err(format!(
                "unknown option `{other}` for `cargo xtask dist` (only --glibc)"
            ));
        }
    };
    let started = Instant::now();
    let root = repo_root();
    let version = step("versions: Cargo.toml and package.json", versions)?;
    let (binary, platform) = step("the release binary", || release_binary(glibc))?;
    step("build the browser SDK", build_sdk)?;

    let out = root.join(DIST_DIR);
    if out.exists() {
        fs::remove_dir_all(&out)?;
    }
    fs::create_dir_all(&out)?;
    let archive = step("server archive", || {
        server_archive(&binary, &platform, &version, &out)
    })?;
    let tarball = step("npm pack", || npm_pack(&out))?;
    step("SHA256SUMS", || {
        let mut sums = Command::new("sha256sum");
        sums.current_dir(&out).args([&archive, &tarball]);
        let output = sums.output().map_err(|e| spawn_error("sha256sum", &e))?;
        check_status("sha256sum", output.status)?;
        fs::write(out.join("SHA256SUMS"), &output.stdout)?;
        eprint!("{}", String::from_utf8_lossy(&output.stdout));
        Ok(())
    })?;
    step(
        "check: the archive unpacked and the tarball installed alone, a flow in Chromium",
        || {
            let scratch = target_dir().join("dist-check");
            if scratch.exists() {
                fs::remove_dir_all(&scratch)?;
            }
            fs::create_dir_all(&scratch)?;
            run(Command::new("tar")
                .arg("-xzf")
                .arg(out.join(&archive))
                .arg("-C")
                .arg(&scratch))?;
            let unpacked = scratch
                .join(archive.trim_end_matches(".tar.gz"))
                .join("consentry");
            run(Command::new(&unpacked).arg("--version"))?;
            test_standalone(&unpacked, Some(&out.join(&tarball)))
        },
    )?;

    eprintln!("\n==> dist/ ({})", fmt_duration(started.elapsed()));
    for name in [archive.as_str(), tarball.as_str(), "SHA256SUMS"] {
        eprintln!("    {name}: {} bytes", fs::metadata(out.join(name))?.len());
    }
    Ok(ExitCode::SUCCESS)
}

/// The workspace version, which the npm package must share.
fn versions() -> Result<String> {
    let root = repo_root();
    let cargo_toml = fs::read_to_string(root.join("Cargo.toml"))?;
    let cargo_version = cargo_toml
        .split("[workspace.package]")
        .nth(1)
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("version = \"")))
        .and_then(|v| v.strip_suffix('"'));
    let package_json = fs::read_to_string(root.join(SDK_PACKAGE).join("package.json"))?;
    let npm_version = package_json
        .lines()
        .find_map(|l| l.trim().strip_prefix("\"version\": \""))
        .and_then(|v| v.strip_suffix("\","));
    match (cargo_version, npm_version) {
        (Some(c), Some(n)) if c == n => {
            eprintln!("    {c}");
            Ok(c.to_owned())
        }
        (c, n) => err(format!(
            "Cargo.toml [workspace.package] version {c:?} and {SDK_PACKAGE}/package.json version {n:?} must be equal"
        )),
    }
}

/// The release `consentry` and its platform name: static musl, else glibc (see the module doc).
fn release_binary(glibc: bool) -> Result<(PathBuf, String)> {
    if !glibc {
        match musl_toolchain() {
            Ok(()) => {
                run(cargo()
                    .args(["build", "--release", "--locked", "-p", "consentry-server"])
                    .args(["--bin", "consentry", "--target", MUSL_TARGET]))?;
                let binary = target_dir()
                    .join(MUSL_TARGET)
                    .join("release")
                    .join("consentry");
                if has_interpreter(&binary)? {
                    return err(format!(
                        "{} is dynamically linked: expected a static musl binary",
                        binary.display()
                    ));
                }
                eprintln!("    {}: static (no ELF interpreter)", binary.display());
                return Ok((binary, MUSL_TARGET.to_owned()));
            }
            Err(why) => eprintln!("    no musl toolchain ({why}): a glibc build instead"),
        }
    }
    run(cargo().args([
        "build",
        "--release",
        "--locked",
        "-p",
        "consentry-server",
        "--bin",
        "consentry",
    ]))?;
    let binary = target_dir().join("release").join("consentry");
    let oldest = oldest_glibc(&fs::read(&binary)?)
        .ok_or_else(|| Error(format!("no GLIBC_ symbol versions in {}", binary.display())))?;
    eprintln!("    {}: needs glibc >= {oldest}", binary.display());
    Ok((binary, format!("x86_64-unknown-linux-gnu-glibc{oldest}")))
}

/// The musl target (rustup) and musl-gcc (Debian's musl-tools, for aws-lc and SQLite's C).
fn musl_toolchain() -> Result<()> {
    ensure_target(MUSL_TARGET)?;
    ensure_debian_binary("/usr/bin/musl-gcc", &["musl-tools"]).map(|_| ())
}

/// Does the ELF file have a PT_INTERP program header (a dynamic loader)?
fn has_interpreter(binary: &Path) -> Result<bool> {
    let elf = fs::read(binary)?;
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        elf.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |o: usize| {
        elf.get(o..o + 8).map(|b| {
            let mut a = [0; 8];
            a.copy_from_slice(b);
            u64::from_le_bytes(a)
        })
    };
    // ELF64, little-endian: e_phoff at 0x20, e_phentsize at 0x36, e_phnum at 0x38.
    if elf.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1][..]) {
        return err(format!("{} is not a 64-bit ELF file", binary.display()));
    }
    let (Some(phoff), Some(size), Some(count)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else {
        return err(format!("{}: truncated ELF header", binary.display()));
    };
    let phoff = usize::try_from(phoff).map_err(|_| Error("ELF e_phoff out of range".into()))?;
    Ok((0..usize::from(count))
        .any(|i| u32_at(phoff + i * usize::from(size)) == Some(3 /* PT_INTERP */)))
}

/// The newest `GLIBC_x.y[.z]` version the binary references: the oldest glibc it runs on.
fn oldest_glibc(elf: &[u8]) -> Option<String> {
    let mut newest: Option<(Vec<u32>, String)> = None;
    let marker = b"GLIBC_";
    let mut i = 0;
    while let Some(pos) = elf[i..].windows(marker.len()).position(|w| w == marker) {
        let start = i + pos + marker.len();
        let end = elf[start..]
            .iter()
            .position(|b| !(b.is_ascii_digit() || *b == b'.'))
            .map_or(elf.len(), |n| start + n);
        let version = String::from_utf8_lossy(&elf[start..end]).into_owned();
        let parts: Option<Vec<u32>> = version.split('.').map(|p| p.parse().ok()).collect();
        if let Some(parts) = parts.filter(|p| p.len() >= 2)
            && newest.as_ref().is_none_or(|(n, _)| parts > *n)
        {
            newest = Some((parts, version));
        }
        i = start;
    }
    newest.map(|(_, v)| v)
}

/// `consentry-<version>-<platform>.tar.gz` in `out`: the stripped binary, LICENSE, README.md,
/// in a directory of that name; reproducible (sorted, owner 0, the commit's time, gzip -n).
fn server_archive(binary: &Path, platform: &str, version: &str, out: &Path) -> Result<String> {
    let name = format!("consentry-{version}-{platform}");
    let staging = target_dir().join("dist-staging");
    if staging.exists() {
        fs::remove_dir_all(&staging)?;
    }
    let dir = staging.join(&name);
    fs::create_dir_all(&dir)?;
    let copied = dir.join("consentry");
    fs::copy(binary, &copied)?;
    let before = fs::metadata(&copied)?.len();
    if find_in_path("strip").is_some() {
        run(Command::new("strip").arg(&copied))?;
    } else {
        eprintln!("    strip not found: the binary keeps its symbols");
    }
    eprintln!(
        "    consentry: {before} bytes, {} stripped",
        fs::metadata(&copied)?.len()
    );
    for file in ["LICENSE", "README.md"] {
        fs::copy(repo_root().join(file), dir.join(file))?;
    }
    let epoch = Command::new("git")
        .args(["log", "-1", "--format=%ct"])
        .current_dir(repo_root())
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "0".into());
    let archive = format!("{name}.tar.gz");
    let mut tar = Command::new("tar")
        .args(["--sort=name", "--owner=0", "--group=0", "--numeric-owner"])
        .arg(format!("--mtime=@{epoch}"))
        .arg("-cf")
        .arg("-")
        .arg("-C")
        .arg(&staging)
        .arg(&name)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| spawn_error("tar", &e))?;
    let tar_out = tar
        .stdout
        .take()
        .ok_or_else(|| Error("tar: no stdout".into()))?;
    let gzip = Command::new("gzip")
        .args(["-9", "-n"])
        .stdin(tar_out)
        .stdout(fs::File::create(out.join(&archive))?)
        .status()
        .map_err(|e| spawn_error("gzip", &e))?;
    check_status("tar", tar.wait()?)?;
    check_status("gzip", gzip)?;
    fs::remove_dir_all(&staging)?;
    Ok(archive)
}

/// `npm pack` of the built package into `out` (its `prepack` checks dist/); the file name.
fn npm_pack(out: &Path) -> Result<String> {
    let output = Command::new("npm")
        .args(["pack", "--pack-destination"])
        .arg(out)
        .current_dir(repo_root().join(SDK_PACKAGE))
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| spawn_error("npm", &e))?;
    check_status("npm pack", output.status)?;
    let name = String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .map(|l| l.trim().to_owned())
        .filter(|n| n.ends_with(".tgz") && out.join(n).is_file())
        .ok_or_else(|| Error("npm pack did not name the tarball it wrote".into()))?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oldest_glibc_is_the_newest_version_referenced() {
        let elf = b"\0GLIBC_2.2.5\0GLIBC_2.34\0GLIBC_PRIVATE\0GLIBC_2.17\0GLIBC_2.3.4\0";
        assert_eq!(oldest_glibc(elf).as_deref(), Some("2.34"));
        assert_eq!(oldest_glibc(b"no versions"), None);
    }
}
