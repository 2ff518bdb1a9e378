//! Running `herald-bench` against a started server and collecting what it reports.
//!
//! [`Harness`] holds the paths every run needs; [`run_one`] runs one scenario against one
//! server into an [`Outcome`], reading each `herald-bench` report into its [`Report`] type;
//! [`Harness::save`] stores the outcome under `target/bench-results/` and
//! [`Harness::load_all`] reads every stored one back for rendering.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use herald_bench::{Report, procstat};

use super::{
    Options,
    outcome::{MaxConnections, Outcome},
    peers::{Peer, Server, ensure_npm, ensure_system_packages, ensure_venv},
    procs::Tree,
    scenarios::{SOURCE_IPS, Scenario},
};
use crate::{Step, target_dir};

/// Extra time a bench process gets past its own `--duration-limit` before it is killed.
pub(super) const BENCH_GRACE: Duration = Duration::from_secs(30);

/// What the harness needs for every run.
pub(super) struct Harness {
    pub(super) root: PathBuf,
    pub(super) herald: PathBuf,
    pub(super) bench: PathBuf,
    pub(super) venv_python: PathBuf,
    /// `target/bench-results`.
    pub(super) results: PathBuf,
    /// `target/bench-results/{full,quick}`.
    pub(super) results_mode: PathBuf,
    /// `target/bench-run`: servers' temporary folders.
    pub(super) run_root: PathBuf,
    pub(super) options: Options,
    pub(super) clk_tck: f64,
}

impl Harness {
    pub(super) fn prepare(root: &Path, options: &Options) -> Result<Harness> {
        let target = target_dir(root);
        let venv = target.join("bench-venv");
        if !options.report_only {
            Harness::install_and_build(root, options, &venv)?;
        }
        let release = target.join("release");
        let results = target.join("bench-results");
        let results_mode = results.join(if options.quick { "quick" } else { "full" });
        fs::create_dir_all(&results_mode)?;
        let clk_tck = procstat::clock_ticks_per_second() as f64;
        Ok(Harness {
            root: root.to_owned(),
            herald: release.join("herald"),
            bench: release.join("herald-bench"),
            venv_python: venv.join("bin/python"),
            results,
            results_mode,
            run_root: target.join("bench-run"),
            options: Options {
                report_only: options.report_only,
                quick: options.quick,
                peers: options.peers.clone(),
                scenarios: options.scenarios.clone(),
                command: options.command.clone(),
            },
            clk_tck,
        })
    }

    /// Installs the chosen servers' packages and builds herald and herald-bench in release.
    pub(super) fn install_and_build(root: &Path, options: &Options, venv: &Path) -> Result<()> {
        let step = Step::start("ensure the peers are installed");
        ensure_system_packages(&options.peers)?;
        if options.peers.contains(&Peer::Node) {
            ensure_npm(root)?;
        }
        if options.peers.contains(&Peer::Python) {
            ensure_venv(root, venv)?;
        }
        step.done();
        crate::cargo(
            root,
            &[
                "build",
                "--release",
                "--locked",
                "-p",
                "herald",
                "-p",
                "herald-bench",
            ],
        )
    }

    pub(super) fn save(&self, outcome: &Outcome) -> Result<()> {
        let dir = self.results_mode.join(&outcome.scenario);
        fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{}.json", outcome.peer));
        let text = outcome.to_json()?;
        fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    }

    /// Every stored result of this mode, by scenario then server.
    pub(super) fn load_all(&self) -> Result<BTreeMap<(Scenario, Peer), Outcome>> {
        let mut all = BTreeMap::new();
        for scenario in Scenario::DEFAULT {
            for peer in Peer::ALL {
                let path = self
                    .results_mode
                    .join(scenario.id())
                    .join(format!("{peer}.json"));
                if let Ok(text) = fs::read_to_string(&path) {
                    let outcome = Outcome::parse(&text)
                        .with_context(|| format!("{} is not a stored outcome", path.display()))?;
                    all.insert((scenario, peer), outcome);
                }
            }
        }
        Ok(all)
    }
}

/// Runs one scenario against one server; failures are recorded in the outcome.
pub(super) fn run_one(ctx: &Harness, scenario: Scenario, peer: Peer) -> Outcome {
    let mut outcome = Outcome {
        scenario: scenario.id().to_owned(),
        peer: peer.name().to_owned(),
        date: utc_now(),
        ..Outcome::default()
    };
    if let Err(err) = run_one_inner(ctx, scenario, peer, &mut outcome) {
        outcome.error = Some(format!("{err:#}"));
    }
    outcome
}

pub(super) fn run_one_inner(
    ctx: &Harness,
    scenario: Scenario,
    peer: Peer,
    outcome: &mut Outcome,
) -> Result<()> {
    let dir = ctx.results_mode.join(scenario.id());
    fs::create_dir_all(&dir)?;
    let durabilities: &[&str] = if scenario == Scenario::S6 {
        &["full", "normal"]
    } else {
        &["normal"]
    };
    for &durability in durabilities {
        let server = Server::start(ctx, peer, durability, scenario)?;
        outcome.server_command = server.command.clone();
        println!("server: {} (measured pid {})", server.command, server.pid);
        for (label, mode, args) in scenario.runs(ctx.options.quick) {
            let label = if scenario == Scenario::S6 {
                format!("{durability}-{label}")
            } else {
                label
            };
            let log = dir.join(format!("{peer}-{label}.log"));
            let (cmd, display) = bench_command(ctx, &server, mode, &args);
            outcome.bench_commands.insert(label.clone(), display);
            let sampler = Tree::sample(server.tree_roots.clone(), ctx.clk_tck);
            let report = run_bench(cmd, &log, &args);
            outcome.trees.insert(label.clone(), sampler.finish());
            outcome.reports.insert(label, report?);
        }
        if scenario == Scenario::S3 && peer == Peer::Herald {
            outcome.extra = Some(herald_max_connections(ctx, &server, &dir)?);
        }
        server.stop()?;
    }
    Ok(())
}

/// S3 for Herald: the most connections one process holds, with two bench processes (each
/// has the same 20,000-descriptor hard limit) connected at the same time.
pub(super) fn herald_max_connections(
    ctx: &Harness,
    server: &Server,
    dir: &Path,
) -> Result<MaxConnections> {
    let per_process: u64 = if ctx.options.quick { 2000 } else { 9900 };
    let common = |offset: u64, hold: &str| {
        [
            "--subscribers",
            &per_process.to_string(),
            "--index-offset",
            &offset.to_string(),
            "--topics",
            "1",
            "--source-ips",
            SOURCE_IPS,
            "--connect-timeout",
            "30s",
            "--hold",
            hold,
            "--duration-limit",
            "120s",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect::<Vec<_>>()
    };
    // The first holds long enough for the second to connect and measure.
    let args_a = common(0, "40s");
    let (cmd_a, display_a) = bench_command(ctx, server, "idle", &args_a);
    let log_a = dir.join("herald-max-a.log");
    let child_a = spawn_bench(cmd_a, &log_a)?;
    let started = Instant::now();
    let fds_before = count_fds(server.pid);
    // Wait until the first process's connections are open (or 60 s).
    while count_fds(server.pid) < fds_before + per_process - 100
        && started.elapsed() < Duration::from_secs(60)
    {
        thread::sleep(Duration::from_millis(250));
    }
    let args_b = common(per_process, "5s");
    let (cmd_b, display_b) = bench_command(ctx, server, "idle", &args_b);
    let report_b = run_bench(cmd_b, &dir.join("herald-max-b.log"), &args_b);
    let report_a = wait_bench(child_a, &log_a, &args_a);
    let (report_a, report_b) = (report_a?, report_b?);
    let total = report_a.subscribers.connected + report_b.subscribers.connected;
    let before = report_a
        .server
        .as_ref()
        .and_then(|s| s.rss_before)
        .map(|b| b as f64);
    let held = report_b
        .server
        .as_ref()
        .and_then(|s| s.rss_idle)
        .map(|b| b as f64);
    let per_conn = match (before, held) {
        (Some(before), Some(held)) if total > 0 => Some((held - before) / total as f64),
        _ => None,
    };
    let projection = per_conn.and_then(|p| before.map(|b| b + p * 1_000_000.0));
    Ok(MaxConnections {
        requested: 2 * per_process,
        connected: total,
        rss_before: before,
        rss_held: held,
        rss_per_conn_bytes: per_conn,
        projection_1m_bytes: projection,
        bench_commands: vec![display_a, display_b],
        reports: vec![report_a, report_b],
    })
}

/// Open file descriptors of `pid` (0 when unreadable).
pub(super) fn count_fds(pid: u32) -> u64 {
    fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
}

/// The `herald-bench` command for `server`, and how to print it (the token elided).
pub(super) fn bench_command(
    ctx: &Harness,
    server: &Server,
    mode: &str,
    args: &[String],
) -> (Command, String) {
    let mut full: Vec<String> = vec![
        "-c".into(),
        "1".into(),
        ctx.bench.to_string_lossy().into_owned(),
        "--threads".into(),
        "1".into(),
        mode.into(),
        "--sub-url".into(),
        server.sub_url.clone(),
        "--server-pid".into(),
        server.pid.to_string(),
    ];
    if mode == "run" {
        full.extend([
            "--pub-url".into(),
            server.pub_url.clone(),
            "--publish-kind".into(),
            server.publish_kind.into(),
        ]);
    }
    full.extend(args.iter().cloned());
    let mut cmd = Command::new("taskset");
    cmd.args(&full).current_dir(&ctx.root);
    if let Some(token) = &server.token {
        cmd.env("HERALD_BENCH_TOKEN", token);
    }
    let shown = full
        .iter()
        .map(|a| {
            let root = format!("{}/", ctx.root.to_string_lossy());
            let a = a.replace(&root, "");
            if a.contains(['{', '}', '?', '&', '*']) {
                format!("'{a}'")
            } else {
                a
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    let prefix = if server.token.is_some() {
        "HERALD_BENCH_TOKEN=<publisher JWT> "
    } else {
        ""
    };
    (cmd, format!("{prefix}taskset {shown}"))
}

/// Runs a bench process to the end and returns its report.
pub(super) fn run_bench(cmd: Command, log: &Path, args: &[String]) -> Result<Report> {
    let child = spawn_bench(cmd, log)?;
    wait_bench(child, log, args)
}

/// A bench process writing stdout to `<log>.json-lines` and stderr to `log`.
pub(super) fn spawn_bench(mut cmd: Command, log: &Path) -> Result<Child> {
    let stderr = fs::File::create(log)?;
    let stdout = fs::File::create(log.with_extension("stdout"))?;
    cmd.stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .context("cannot start herald-bench under taskset")
}

/// Waits for a bench process (killing it past its duration limit) and reads its report.
pub(super) fn wait_bench(mut child: Child, log: &Path, args: &[String]) -> Result<Report> {
    let limit = args
        .iter()
        .position(|a| a == "--duration-limit")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.strip_suffix('s'))
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(120), Duration::from_secs)
        + BENCH_GRACE;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "herald-bench ran past its duration limit and was killed (log: {})",
                log.display()
            );
        }
        thread::sleep(Duration::from_millis(100));
    };
    let stderr = fs::read_to_string(log).unwrap_or_default();
    let stdout = fs::read_to_string(log.with_extension("stdout")).unwrap_or_default();
    print!("{stderr}");
    let last = stdout.lines().rev().find(|l| !l.trim().is_empty());
    match last.map(serde_json::from_str::<Report>) {
        Some(Ok(report)) if status.success() => Ok(report),
        Some(Ok(report)) => {
            println!("herald-bench exited with {status} but printed a result");
            Ok(report)
        }
        Some(Err(err)) if status.success() => {
            bail!("herald-bench printed a last line that is not its report: {err}")
        }
        _ => bail!(
            "herald-bench failed ({status}) without a JSON result: {}",
            tail(&stderr, 5)
        ),
    }
}

/// Runs a command and returns its stdout.
pub(super) fn command_output(cmd: &mut Command) -> Result<String> {
    let program = display_command_short(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(super) fn display_command_short(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(
        cmd.get_args()
            .take(3)
            .map(|a| a.to_string_lossy().into_owned()),
    );
    format!("`{}`", parts.join(" "))
}

/// The last `n` lines of `text`, on one line.
pub(super) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// `YYYY-MM-DD HH:MM UTC`.
pub(super) fn utc_now() -> String {
    command_output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown date".into())
}
