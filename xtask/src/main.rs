//! Repository automation: `cargo xtask test` is the one command that checks everything.
//!
//! It runs the same steps on a developer's machine and in CI (`.ci/run`), starting from a
//! fresh clone: it installs the system packages and Node modules the tests need, then runs
//! rustfmt, cargo-deny, clippy, the Rust tests, the browser tests against the built `herald`
//! binary, and a benchmark smoke run (Herald alone, quick S1 and S5, zero loss and no
//! ordering violation asserted, speed not).
//!
//! # Layout
//!
//! - [`SYSTEM_PACKAGES`]: the Debian packages the tests need, one line each.
//! - [`test()`]: the steps of `cargo xtask test`, in order; the first failure stops the run.
//! - [`Step`]: prints a `==> …` header before a step and its elapsed time after it.
//! - [`mod@bench`]: `cargo xtask bench compare`, the side-by-side benchmark.

use std::{
    env,
    ffi::{OsStr, OsString},
    fs,
    path::{Path, PathBuf},
    process::{Command, ExitCode, Stdio},
};

use anyhow::{Context, Result, bail};

mod bench;
mod tidy;

/// System packages the tests need: (a file that exists once it is installed, Debian package).
///
/// A missing file gets its package installed with apt-get, so a fresh machine needs no
/// manual setup. Add a service the tests spawn here.
const SYSTEM_PACKAGES: &[(&str, &str)] = &[
    // Headless browser for tests/browser (playwright-core drives it; never downloaded).
    ("/usr/bin/chromium", "chromium"),
    // The Redis that cluster tests share between Herald nodes (tests/it/support/services.rs).
    ("/usr/bin/redis-server", "redis-server"),
    // The PostgreSQL the tests run throwaway clusters of (tests/it/support/services.rs finds the
    // newest /usr/lib/postgresql/<version>/bin). pg_createcluster comes with
    // postgresql-common, which only a server package pulls in, and has no version in its
    // path; /usr/lib/postgresql alone also exists with just the client installed.
    ("/usr/bin/pg_createcluster", "postgresql"),
    // Self-signed certificates for the HTTPS browser test (tests/browser/https.test.mjs).
    ("/usr/bin/openssl", "openssl"),
];

/// The Node project of the browser tests, relative to the workspace root.
const BROWSER_TESTS_DIR: &str = "tests/browser";

/// The cargo-deny release `cargo xtask test` installs into `<target dir>/tools` (once: CI
/// keeps the target directory between runs) and checks `deny.toml` with. Pinned, so every
/// machine checks alike and a new release is a decision.
const CARGO_DENY_VERSION: &str = "0.20.2";

/// Browser test files are the files in [`BROWSER_TESTS_DIR`] whose name ends with this.
const BROWSER_TEST_SUFFIX: &str = ".test.mjs";

const USAGE: &str = "\
Usage: cargo xtask <command>

Commands:
  test    Run every check, in order, stopping at the first failure:
            install missing system packages (apt-get) and Node modules (npm ci),
            cargo fmt --check, cargo deny check bans licenses sources (deny.toml;
            cargo-deny installed once into <target dir>/tools),
            cargo clippy -D warnings, cargo doc -D warnings,
            cargo test (with the tidy checks of xtask/src/tidy.rs),
            then build herald and run the browser tests (node --test tests/browser),
            then a benchmark smoke run against Herald alone (asserts zero loss
            and no ordering violation)
  ci      Same as test (what .ci/run runs)
  bench   `bench compare [--quick] [--only ..] [--scenarios ..]`: Herald side by side with
          Nchan, Pushpin, Node, Python and a raw write loop; writes BENCHMARKS.md
          (`cargo xtask bench help` for the options)
  help    Print this message

Environment:
  CARGO_TARGET_DIR  where cargo builds (absolute, or relative to the workspace root);
                    the browser tests use <target dir>/debug/herald";

fn main() -> ExitCode {
    match run_cli() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}` prints the whole context chain on one line, without a backtrace.
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Dispatches the command line to a subcommand.
fn run_cli() -> Result<()> {
    let args: Vec<String> = env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None | Some("help" | "-h" | "--help") => {
            println!("{USAGE}");
            Ok(())
        }
        Some("test" | "ci") => {
            if let Some(extra) = args.get(1) {
                bail!("unexpected argument `{extra}`\n\n{USAGE}");
            }
            test(&workspace_root()?)
        }
        Some("bench") => bench::main(&workspace_root()?, &args[1..]),
        Some(other) => bail!("unknown command `{other}`\n\n{USAGE}"),
    }
}

/// Runs every check, in order, and stops at the first failure.
fn test(root: &Path) -> Result<()> {
    let total = Step::start("cargo xtask test");

    let step = Step::start("ensure system packages");
    ensure_system_packages()?;
    step.done();

    let step = Step::start(&format!("ensure Node modules in {BROWSER_TESTS_DIR}"));
    ensure_node_modules(root)?;
    step.done();

    cargo(root, &["fmt", "--all", "--", "--check"])
        .context("code is not formatted: run `cargo fmt --all`")?;
    // The advisories check needs the RustSec database, fetched from GitHub; the other three
    // read only Cargo.lock and the registry's metadata. A duplicate crate is a warning of a
    // few lines; its whole inclusion graph would bury the rest of the log.
    let mut deny = Command::new(ensure_cargo_deny(root)?);
    deny.current_dir(root).args([
        "check",
        "--hide-inclusion-graph",
        "bans",
        "licenses",
        "sources",
    ]);
    run_titled(&mut deny, "cargo deny check bans licenses sources")?;
    cargo(
        root,
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    // The API docs build without a warning: no broken or ambiguous link.
    let mut doc = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    doc.current_dir(root)
        .args(["doc", "--workspace", "--no-deps", "--locked"])
        .env("RUSTDOCFLAGS", "-D warnings");
    run_titled(
        &mut doc,
        "RUSTDOCFLAGS='-D warnings' cargo doc --workspace --no-deps --locked",
    )?;
    cargo(root, &["test", "--workspace", "--locked"])?;

    cargo(
        root,
        &["build", "--locked", "-p", "herald", "--bin", "herald"],
    )?;
    let herald = target_dir(root)
        .join("debug")
        .join(format!("herald{}", env::consts::EXE_SUFFIX));
    if !herald.is_file() {
        bail!(
            "cargo build succeeded but {} does not exist (is CARGO_TARGET_DIR or build.target-dir set differently?)",
            herald.display()
        );
    }
    let tests = browser_test_files(root)?;
    let mut node = Command::new("node");
    node.current_dir(root)
        .args(["--test", "--test-reporter=spec"])
        .args(&tests)
        .env("HERALD_BIN", &herald);
    run(&mut node, &format!("HERALD_BIN={}", herald.display())).context("browser tests failed")?;

    bench::smoke(root).context("the benchmark smoke run failed")?;

    total.done();
    Ok(())
}

/// The cargo-deny binary of [`CARGO_DENY_VERSION`] in `<target dir>/tools/bin`, installed
/// there with `cargo install --locked` unless it already is.
fn ensure_cargo_deny(root: &Path) -> Result<PathBuf> {
    let tools = target_dir(root).join("tools");
    let bin = tools
        .join("bin")
        .join(format!("cargo-deny{}", env::consts::EXE_SUFFIX));
    let installed = Command::new(&bin)
        .arg("--version")
        .output()
        .is_ok_and(|out| {
            String::from_utf8_lossy(&out.stdout).trim()
                == format!("cargo-deny {CARGO_DENY_VERSION}")
        });
    if !installed {
        let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut install = Command::new(cargo);
        install
            .current_dir(root)
            .args(["install", "cargo-deny", "--locked", "--force", "--version"])
            .arg(format!("={CARGO_DENY_VERSION}"))
            .arg("--root")
            .arg(&tools)
            // Build in a temporary folder that cargo removes: only the binary is kept.
            .env_remove("CARGO_TARGET_DIR");
        run(&mut install, "")?;
    }
    Ok(bin)
}

/// Installs the packages of [`SYSTEM_PACKAGES`] whose file is missing, with one apt-get call.
fn ensure_system_packages() -> Result<()> {
    install_packages(SYSTEM_PACKAGES)
}

/// Installs, with one apt-get call, the package of each `(file, package)` pair whose file
/// is missing, and checks that the files then exist.
fn install_packages(needed: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = needed
        .iter()
        .filter(|(path, _)| !Path::new(path).exists())
        .map(|&(_, package)| package)
        .collect();
    if missing.is_empty() {
        let packages: Vec<&str> = needed.iter().map(|&(_, p)| p).collect();
        println!("all present: {}", packages.join(", "));
        return Ok(());
    }
    let packages = missing.join(" ");
    if !is_root()? {
        bail!(
            "missing system packages: {packages}; install them with `sudo apt-get update && sudo apt-get install -y --no-install-recommends {packages}`"
        );
    }
    println!("installing missing system packages: {packages}");
    let mut update = Command::new("apt-get");
    update
        .arg("update")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null());
    run(&mut update, "")?;
    let mut install = Command::new("apt-get");
    install
        .args(["install", "-y", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null());
    run(&mut install, "")?;
    for (path, package) in needed {
        if !Path::new(path).exists() {
            bail!("apt-get installed {package} but {path} still does not exist");
        }
    }
    Ok(())
}

/// Runs `npm ci` in the browser tests' folder unless its node_modules is installed and at
/// least as new as package-lock.json (so a changed lock file reinstalls).
fn ensure_node_modules(root: &Path) -> Result<()> {
    let dir = root.join(BROWSER_TESTS_DIR);
    let lock = dir.join("package-lock.json");
    let installed = dir.join("node_modules/playwright-core");
    // npm writes this copy of the lock file on every install.
    let installed_lock = dir.join("node_modules/.package-lock.json");
    let up_to_date = installed.is_dir()
        && match (modified(&lock), modified(&installed_lock)) {
            (Some(lock), Some(installed)) => installed >= lock,
            _ => true,
        };
    if up_to_date {
        println!("up to date: {}", installed.display());
        return Ok(());
    }
    let mut npm = Command::new("npm");
    npm.current_dir(&dir)
        .args(["ci", "--no-audit", "--no-fund"])
        // Chromium comes from Debian; playwright-core downloads nothing, but make sure.
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .stdin(Stdio::null());
    run(&mut npm, &format!("in {BROWSER_TESTS_DIR}"))
}

/// The browser test files, sorted, as paths relative to the workspace root.
///
/// Listed here rather than passing the folder to `node --test`, whose handling of a folder
/// argument differs between Node versions.
fn browser_test_files(root: &Path) -> Result<Vec<PathBuf>> {
    let dir = root.join(BROWSER_TESTS_DIR);
    let mut files = Vec::new();
    for entry in fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().ends_with(BROWSER_TEST_SUFFIX) && entry.path().is_file() {
            files.push(Path::new(BROWSER_TESTS_DIR).join(name));
        }
    }
    if files.is_empty() {
        bail!("no *{BROWSER_TEST_SUFFIX} files in {}", dir.display());
    }
    files.sort();
    Ok(files)
}

/// Runs `cargo <args>` in the workspace root as one step.
fn cargo(root: &Path, args: &[&str]) -> Result<()> {
    // Under `cargo xtask`, CARGO is the cargo that runs us; use the same toolchain.
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root).args(args);
    // Print `cargo`, not the absolute path CARGO may hold.
    run_titled(&mut cmd, &format!("cargo {}", args.join(" ")))
}

/// Runs `cmd` as one step titled by its command line, followed by `note` if not empty.
fn run(cmd: &mut Command, note: &str) -> Result<()> {
    let mut title = display_command(cmd);
    if !note.is_empty() {
        title = format!("{title}  ({note})");
    }
    run_titled(cmd, &title)
}

/// Runs `cmd` as one step: header, inherited stdio, elapsed time, error on a non-zero exit.
fn run_titled(cmd: &mut Command, title: &str) -> Result<()> {
    let step = Step::start(title);
    let program = cmd.get_program().to_string_lossy().into_owned();
    let status = cmd
        .status()
        .with_context(|| format!("cannot run `{program}`: is it installed and on PATH?"))?;
    if !status.success() {
        bail!("`{title}` failed ({status}) after {}", step.elapsed());
    }
    step.done();
    Ok(())
}

/// `program arg arg…`, for headers.
fn display_command(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(
        cmd.get_args()
            .map(|a: &OsStr| a.to_string_lossy().into_owned()),
    );
    parts.join(" ")
}

/// The workspace root: the parent of this crate's folder. `cargo xtask` runs us through
/// `cargo run`, which names that folder in `CARGO_MANIFEST_DIR` at run time; the path
/// compiled in is only a fallback, since a build from another checkout that shares the
/// target dir would point it there.
fn workspace_root() -> Result<PathBuf> {
    let manifest_dir = env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), PathBuf::from);
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .context("xtask's manifest dir has no parent")
}

/// Where cargo puts build output: `CARGO_TARGET_DIR` (relative to the root, where cargo runs),
/// else `<root>/target`.
fn target_dir(root: &Path) -> PathBuf {
    target_dir_from(root, env::var_os("CARGO_TARGET_DIR"))
}

/// [`target_dir`] given the value of `CARGO_TARGET_DIR`; an absolute value replaces `root`.
fn target_dir_from(root: &Path, cargo_target_dir: Option<OsString>) -> PathBuf {
    match cargo_target_dir {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    }
}

/// Whether we run as root, which apt-get needs.
fn is_root() -> Result<bool> {
    let out = Command::new("id")
        .arg("-u")
        .output()
        .context("cannot run `id -u` to check for root")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim() == "0")
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// A step of the run: prints `==> title` when it starts and the seconds it took when it ends.
struct Step {
    title: String,
    // The clippy.toml ban of std's Instant is for tokio code whose tests pause time; xtask has
    // no runtime and only prints these durations.
    #[allow(clippy::disallowed_types)]
    started: std::time::Instant,
}

impl Step {
    #[allow(clippy::disallowed_types)]
    fn start(title: &str) -> Step {
        println!("==> {title}");
        Step {
            title: title.to_owned(),
            started: std::time::Instant::now(),
        }
    }

    fn elapsed(&self) -> String {
        format!("{:.1}s", self.started.elapsed().as_secs_f64())
    }

    fn done(self) {
        println!("<== {} ({})", self.title, self.elapsed());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_dir_follows_cargo_target_dir() {
        let root = Path::new("/repo");
        let check = |value: Option<&str>, expect: &str| {
            assert_eq!(
                target_dir_from(root, value.map(OsString::from)),
                PathBuf::from(expect),
                "CARGO_TARGET_DIR={value:?}"
            );
        };
        check(None, "/repo/target");
        check(Some(""), "/repo/target");
        check(Some("build"), "/repo/build");
        check(Some("/var/cache/herald-target"), "/var/cache/herald-target");
    }

    #[test]
    fn browser_tests_are_found() {
        let files = browser_test_files(&workspace_root().unwrap()).unwrap();
        assert!(
            files.contains(&PathBuf::from("tests/browser/hub.test.mjs")),
            "{files:?}"
        );
    }
}
