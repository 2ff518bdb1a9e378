//! `cargo xtask bench compare`: Herald side by side with Nchan, Pushpin, an Express server,
//! an sse-starlette server and a raw write loop (the ceiling), on this machine, in one run.
//!
//! For each scenario and each server, one after another: start the server on loopback pinned
//! to CPU 0 (`taskset -c 0`), wait until it answers, run `herald-bench` pinned to CPU 1 with
//! `--server-pid`, keep its JSON result, stop the server by PID and wait for it to exit. A
//! server still running when something fails is stopped by [`Server`]'s `Drop`.
//!
//! # Layout
//!
//! - [`Options`]: the command line.
//! - [`Peer`]: the servers; [`Server`]: one running, with its URLs and how to stop it.
//! - [`Scenario`]: S1-S6 (BENCHMARKS.md says what each measures), plus S1-max, and the
//!   `herald-bench` runs each one makes.
//! - [`raw_server`]: the raw limit, run as `cargo xtask bench raw-server --port N`.
//! - [`Outcome`]: one server's result in one scenario, as stored under
//!   `target/bench-results/` and rendered into `BENCHMARKS.md` by [`render`].
//! - [`Tree`]: RSS and CPU of a server's whole process tree (Pushpin runs five processes).

// xtask has no async runtime; std's Instant only times the steps and the server start.
#![allow(clippy::disallowed_types)]

use std::{
    collections::BTreeMap,
    env, fmt,
    fmt::Write as _,
    fs,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::{Step, install_packages, modified, run, target_dir};

pub(crate) const USAGE: &str = "\
Usage: cargo xtask bench compare [--quick] [--only herald,nchan,pushpin,node,python,raw]
                                 [--scenarios s1,s1max,s2,s3,s4,s5,s6]
       cargo xtask bench report [--quick]

  Installs what is missing (apt-get: nginx, libnginx-mod-nchan, pushpin; npm ci; a Python
  venv in <target>/bench-venv), builds herald and herald-bench in release, then runs every
  scenario against every server, one at a time: server on CPU 0, herald-bench on CPU 1.
  Raw results go to <target>/bench-results/{full,quick}/<scenario>/<server>.json; a full run
  rewrites BENCHMARKS.md from every full result there, --quick writes
  <target>/bench-results/BENCHMARKS-quick.md instead.

  --quick       about 10x fewer subscribers and seconds: a smoke run
  --only        servers to run (default: all)
  --scenarios   scenarios to run (default: all)

  `report` only renders BENCHMARKS.md (or the quick one) and the plot again from the stored
  results, e.g. after editing bench/notes.md.";

/// The plot of a full run, relative to the workspace root (BENCHMARKS.md shows it).
const PLOT: &str = "bench/benchmarks.svg";

/// The JWT key Herald runs with in the benchmark (at least 32 bytes; never a secret).
const HERALD_KEY: &str = "herald-bench-key-not-a-secret-0123456789";

/// Subscribers' source addresses: 127.0.0.1 .. 127.0.0.N, so no run runs out of ports.
const SOURCE_IPS: &str = "4";

/// Publish requests in flight at once in S1, S2 and S4.
///
/// With one, a server that acknowledges a publish only after fanning it out (Nchan does, in
/// its one worker) caps the rate at one event per fan-out time, whatever its throughput; a
/// real application publishes from several processes. The open-loop schedule is unchanged:
/// the extra publishers only send events that are already due.
const PUBLISHERS: &str = "4";

/// How long a server may take to answer its first request.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a server may take to exit after SIGTERM before it gets SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Extra time a bench process gets past its own `--duration-limit` before it is killed.
const BENCH_GRACE: Duration = Duration::from_secs(30);

/// Nchan's message buffer in S5 (`bench/peers/nchan/nginx.conf` keeps 100): every event
/// of the run, so a subscriber that resumes finds what it missed.
const NCHAN_S5_BUFFER: u32 = 200;

/// Where Debian's nginx keeps the Nchan module.
const NCHAN_MODULE: &str = "/usr/lib/nginx/modules/ngx_nchan_module.so";

/// Entry point of `cargo xtask bench …`.
/// Scenarios of the smoke run in `cargo xtask test`: fan-out, and the reconnect storm that
/// resumes every subscriber by `Last-Event-ID`.
const SMOKE_SCENARIOS: [&str; 2] = ["s1", "s5"];

/// The benchmark smoke run of `cargo xtask test`: the quick comparison against Herald
/// alone, which fails on any lost, duplicated or missing delivery and on any ordering
/// violation (reversals that concurrent publishes allow are fine). Speed is not judged: a
/// timed test on a shared machine would fail for the machine's reasons.
pub(crate) fn smoke(root: &Path) -> Result<()> {
    let results = target_dir(root).join("bench-results").join("quick");
    for scenario in SMOKE_SCENARIOS {
        // A stale result must not pass for this run's.
        let _ = fs::remove_file(results.join(scenario).join("herald.json"));
    }
    let args = [
        "compare",
        "--quick",
        "--only",
        "herald",
        "--scenarios",
        &SMOKE_SCENARIOS.join(","),
    ]
    .map(str::to_owned);
    main(root, &args)?;
    for scenario in SMOKE_SCENARIOS {
        let path = results.join(scenario).join("herald.json");
        let text = fs::read_to_string(&path)
            .with_context(|| format!("the smoke run wrote no {}", path.display()))?;
        let result: Value = serde_json::from_str(&text)?;
        if let Some(error) = result["error"].as_str() {
            bail!("smoke run {scenario}: {error}");
        }
        let d = &result["reports"]["run"]["deliveries"];
        let count = |key: &str| d[key].as_u64();
        match (
            count("expected"),
            count("delivered"),
            count("lost"),
            count("duplicated"),
            count("out_of_order"),
        ) {
            (Some(expected), Some(delivered), Some(0), Some(0), Some(0))
                if expected == delivered =>
            {
                println!(
                    "smoke {scenario}: {delivered} of {expected} delivered, none lost, duplicated \
                     or out of order ({} reversals by concurrent publishes)",
                    count("out_of_order_concurrent").unwrap_or(0)
                );
            }
            _ => bail!("smoke run {scenario} lost, duplicated or misordered deliveries: {d}"),
        }
    }
    Ok(())
}

pub(crate) fn main(root: &Path, args: &[String]) -> Result<()> {
    if args.first().map(String::as_str) == Some("raw-server") {
        let port = match args.get(1..3) {
            Some([flag, port]) if flag == "--port" => port.parse().context("--port")?,
            _ => bail!("usage: cargo xtask bench raw-server --port <port>"),
        };
        return raw_server(port);
    }
    let options = Options::parse(args)?;
    let total = Step::start(&options.command);
    let ctx = Harness::prepare(root, &options)?;
    let mut outcomes = Vec::new();
    let scenarios = if options.report_only {
        &[][..]
    } else {
        &options.scenarios[..]
    };
    for &scenario in scenarios {
        for &peer in &options.peers {
            if !scenario.applies_to(peer) {
                continue;
            }
            let step = Step::start(&format!("{} against {}", scenario.title(), peer.name()));
            let mut outcome = run_one(&ctx, scenario, peer);
            outcome.command = options.command.clone();
            if let Some(error) = &outcome.error {
                println!("FAILED: {error}");
            }
            ctx.save(&outcome)?;
            outcomes.push(outcome);
            step.done();
        }
    }
    let all = ctx.load_all()?;
    let (out, svg) = if options.quick {
        (
            ctx.results.join("BENCHMARKS-quick.md"),
            ctx.results.join("benchmarks-quick.svg"),
        )
    } else {
        (root.join("BENCHMARKS.md"), root.join(PLOT))
    };
    let markdown = render(&ctx, &all)?;
    fs::write(&out, markdown).with_context(|| format!("cannot write {}", out.display()))?;
    fs::write(&svg, plot(&all)).with_context(|| format!("cannot write {}", svg.display()))?;
    println!("wrote {} and {}", out.display(), svg.display());
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|o| o.error.is_some())
        .map(|o| format!("{} {}", o.scenario, o.peer))
        .collect();
    if !failed.is_empty() {
        println!("failed runs (recorded as such): {}", failed.join(", "));
    }
    total.done();
    Ok(())
}

/// `cargo xtask bench compare` options.
struct Options {
    /// `bench report`: only render BENCHMARKS.md from the stored results.
    report_only: bool,
    quick: bool,
    peers: Vec<Peer>,
    scenarios: Vec<Scenario>,
    /// The command as typed, for BENCHMARKS.md.
    command: String,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options> {
        let mut args = args.iter();
        let report_only = match args.next().map(String::as_str) {
            Some("compare") => false,
            Some("report") => true,
            None | Some("help" | "-h" | "--help") => bail!("{USAGE}"),
            Some(other) => bail!("unknown bench command `{other}`\n\n{USAGE}"),
        };
        let mut options = Options {
            report_only,
            quick: false,
            peers: Peer::ALL.to_vec(),
            scenarios: Scenario::DEFAULT.to_vec(),
            command: String::from(if report_only {
                "cargo xtask bench report"
            } else {
                "cargo xtask bench compare"
            }),
        };
        while let Some(arg) = args.next() {
            let mut value = |name: &str| {
                args.next()
                    .cloned()
                    .with_context(|| format!("{name} needs a value\n\n{USAGE}"))
            };
            match arg.as_str() {
                "--quick" => {
                    options.quick = true;
                    options.command.push_str(" --quick");
                }
                "--only" => {
                    let v = value("--only")?;
                    options.peers = v.split(',').map(Peer::parse).collect::<Result<_>>()?;
                    options.command.push_str(&format!(" --only {v}"));
                }
                "--scenarios" => {
                    let v = value("--scenarios")?;
                    options.scenarios = v.split(',').map(Scenario::parse).collect::<Result<_>>()?;
                    options.command.push_str(&format!(" --scenarios {v}"));
                }
                other => bail!("unexpected argument `{other}`\n\n{USAGE}"),
            }
        }
        Ok(options)
    }
}

/// A server in the comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Peer {
    Herald,
    Nchan,
    Pushpin,
    Node,
    Python,
    /// The raw limit: [`raw_server`] writes each frame to every socket, nothing else.
    Raw,
}

impl Peer {
    const ALL: [Peer; 6] = [
        Peer::Herald,
        Peer::Nchan,
        Peer::Pushpin,
        Peer::Node,
        Peer::Python,
        Peer::Raw,
    ];

    fn parse(s: &str) -> Result<Peer> {
        Peer::ALL
            .into_iter()
            .find(|p| p.name() == s.trim())
            .with_context(|| {
                format!("unknown server `{s}` (herald, nchan, pushpin, node, python, raw)")
            })
    }

    fn name(self) -> &'static str {
        match self {
            Peer::Herald => "herald",
            Peer::Nchan => "nchan",
            Peer::Pushpin => "pushpin",
            Peer::Node => "node",
            Peer::Python => "python",
            Peer::Raw => "raw",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Peer::Herald => "Herald",
            Peer::Nchan => "Nchan",
            Peer::Pushpin => "Pushpin",
            Peer::Node => "Node (Express)",
            Peer::Python => "Python (sse-starlette)",
            Peer::Raw => "raw limit",
        }
    }

    /// The port its subscribers connect to.
    fn port(self) -> u16 {
        match self {
            Peer::Herald => 18080,
            Peer::Nchan => 18081,
            Peer::Pushpin => 18082,
            Peer::Node => 18083,
            Peer::Python => 18084,
            Peer::Raw => 18085,
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Pushpin's other loopback ports: origin, publish (HTTP), ZeroMQ push, sub and command.
const PUSHPIN_ORIGIN_PORT: u16 = 18090;
const PUSHPIN_PUBLISH_PORT: u16 = 18561;
const PUSHPIN_ZMQ_PORTS: [u16; 3] = [18560, 18562, 18563];

/// The scenarios, S1-S6 and S1-max.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Scenario {
    S1,
    /// S1 with five times the events per second: what each server delivers when the offered
    /// load (1,000,000 deliveries/s) is more than any of them can.
    S1Max,
    S2,
    S3,
    S4,
    /// Reconnect storm: every subscriber drops, misses events, resumes with `Last-Event-ID`.
    S5,
    S6,
}

impl Scenario {
    const DEFAULT: [Scenario; 7] = [
        Scenario::S1,
        Scenario::S1Max,
        Scenario::S2,
        Scenario::S3,
        Scenario::S4,
        Scenario::S5,
        Scenario::S6,
    ];

    fn parse(s: &str) -> Result<Scenario> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "s1" => Scenario::S1,
            "s1max" => Scenario::S1Max,
            "s2" => Scenario::S2,
            "s3" => Scenario::S3,
            "s4" => Scenario::S4,
            "s5" => Scenario::S5,
            "s6" => Scenario::S6,
            _ => bail!("unknown scenario `{s}` (s1, s1max, s2, s3, s4, s5, s6)"),
        })
    }

    fn id(self) -> &'static str {
        match self {
            Scenario::S1 => "s1",
            Scenario::S1Max => "s1max",
            Scenario::S2 => "s2",
            Scenario::S3 => "s3",
            Scenario::S4 => "s4",
            Scenario::S5 => "s5",
            Scenario::S6 => "s6",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Scenario::S1 => "S1 fan-out",
            Scenario::S1Max => "S1-max fan-out at saturation",
            Scenario::S2 => "S2 wide",
            Scenario::S3 => "S3 idle memory",
            Scenario::S4 => "S4 many topics",
            Scenario::S5 => "S5 reconnect storm",
            Scenario::S6 => "S6 durable publish throughput",
        }
    }

    fn applies_to(self, peer: Peer) -> bool {
        match self {
            Scenario::S6 => peer == Peer::Herald,
            // The raw limit is about delivery; its memory per connection means nothing, and
            // it keeps no history to resume from.
            Scenario::S3 | Scenario::S5 => peer != Peer::Raw,
            _ => true,
        }
    }

    /// The `herald-bench` runs of this scenario: (label, subcommand, arguments).
    ///
    /// `--sub-url`, `--pub-url`, `--publish-kind`, `--server-pid` and `--threads` are added
    /// per server by [`bench_command`].
    fn runs(self, quick: bool) -> Vec<(String, &'static str, Vec<String>)> {
        let q = |full: u64, quick_value: u64| if quick { quick_value } else { full };
        let args = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        match self {
            // 1,000 subscribers, one topic, 200 events/s for 10 s.
            Scenario::S1 => vec![(
                "run".into(),
                "run",
                [
                    args(&["--subscribers", &q(1000, 100).to_string(), "--topics", "1"]),
                    args(&["--events", &q(2000, 200).to_string(), "--rate", "200"]),
                    args(&["--publishers", PUBLISHERS]),
                    args(&["--drain", "10s", "--duration-limit", "90s"]),
                ]
                .concat(),
            )],
            // 1,000 subscribers, one topic, 1,000 events/s for 5 s.
            Scenario::S1Max => vec![(
                "run".into(),
                "run",
                [
                    args(&["--subscribers", &q(1000, 100).to_string(), "--topics", "1"]),
                    args(&["--events", &q(5000, 500).to_string(), "--rate", "1000"]),
                    args(&["--publishers", PUBLISHERS]),
                    args(&["--drain", "10s", "--duration-limit", "90s"]),
                ]
                .concat(),
            )],
            // 10,000 subscribers, 20 events/s for 10 s.
            Scenario::S2 => vec![(
                "run".into(),
                "run",
                [
                    args(&[
                        "--subscribers",
                        &q(10_000, 1000).to_string(),
                        "--topics",
                        "1",
                    ]),
                    args(&["--events", &q(200, 20).to_string(), "--rate", "20"]),
                    args(&["--publishers", PUBLISHERS]),
                    args(&["--source-ips", SOURCE_IPS, "--connect-timeout", "30s"]),
                    args(&["--drain", "10s", "--duration-limit", "150s"]),
                ]
                .concat(),
            )],
            // 10,000 idle connections, one topic.
            Scenario::S3 => vec![(
                "idle".into(),
                "idle",
                [
                    args(&[
                        "--subscribers",
                        &q(10_000, 1000).to_string(),
                        "--topics",
                        "1",
                    ]),
                    args(&["--source-ips", SOURCE_IPS, "--connect-timeout", "30s"]),
                    args(&["--hold", "5s", "--duration-limit", "120s"]),
                ]
                .concat(),
            )],
            // 10,000 subscribers each on its own topic; 1,000 events/s for 10 s, one per topic.
            Scenario::S4 => vec![(
                "run".into(),
                "run",
                [
                    args(&["--subscribers", &q(10_000, 1000).to_string()]),
                    args(&["--topics", &q(10_000, 1000).to_string()]),
                    args(&["--events", &q(10_000, 1000).to_string(), "--rate", "1000"]),
                    args(&["--publishers", PUBLISHERS]),
                    args(&["--source-ips", SOURCE_IPS, "--connect-timeout", "30s"]),
                    args(&["--drain", "10s", "--duration-limit", "150s"]),
                ]
                .concat(),
            )],
            // 10,000 subscribers, one topic, 20 events/s: all drop after event 50, miss 100,
            // reconnect with Last-Event-ID while the last 50 are published.
            Scenario::S5 => vec![(
                "run".into(),
                "run",
                [
                    args(&[
                        "--subscribers",
                        &q(10_000, 500).to_string(),
                        "--topics",
                        "1",
                    ]),
                    args(&["--events", "200", "--rate", "20"]),
                    args(&["--reconnect-after", "50", "--missed", "100"]),
                    args(&["--publishers", "1"]),
                    args(&["--source-ips", SOURCE_IPS, "--connect-timeout", "30s"]),
                    args(&["--connect-concurrency", "1024"]),
                    args(&["--drain", "10s", "--catch-up-limit", "15s"]),
                    args(&["--duration-limit", "150s"]),
                ]
                .concat(),
            )],
            // Acknowledged publishes per second, unthrottled, 1 / 16 / 64 publishers.
            Scenario::S6 => [(1, 10_000), (16, 60_000), (64, 120_000)]
                .into_iter()
                .map(|(publishers, events)| {
                    (
                        format!("publishers-{publishers}"),
                        "run",
                        [
                            args(&["--subscribers", "1", "--topics", "1", "--rate", "0"]),
                            args(&["--publishers", &publishers.to_string()]),
                            args(&["--events", &q(events, events / 10).to_string()]),
                            args(&["--settle", "200ms", "--drain", "5s"]),
                            args(&["--duration-limit", "40s"]),
                        ]
                        .concat(),
                    )
                })
                .collect(),
        }
    }
}

/// What the harness needs for every run.
struct Harness {
    root: PathBuf,
    herald: PathBuf,
    bench: PathBuf,
    venv_python: PathBuf,
    /// `target/bench-results`.
    results: PathBuf,
    /// `target/bench-results/{full,quick}`.
    results_mode: PathBuf,
    /// `target/bench-run`: servers' temporary folders.
    run_root: PathBuf,
    options: Options,
    clk_tck: f64,
}

impl Harness {
    fn prepare(root: &Path, options: &Options) -> Result<Harness> {
        let target = target_dir(root);
        let venv = target.join("bench-venv");
        if !options.report_only {
            Harness::install_and_build(root, options, &venv)?;
        }
        let release = target.join("release");
        let results = target.join("bench-results");
        let results_mode = results.join(if options.quick { "quick" } else { "full" });
        fs::create_dir_all(&results_mode)?;
        let clk_tck = command_output(Command::new("getconf").arg("CLK_TCK"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0);
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
    fn install_and_build(root: &Path, options: &Options, venv: &Path) -> Result<()> {
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

    fn save(&self, outcome: &Outcome) -> Result<()> {
        let dir = self.results_mode.join(&outcome.scenario);
        fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{}.json", outcome.peer));
        let text = serde_json::to_string_pretty(&outcome.to_json())?;
        fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    }

    /// Every stored result of this mode, by scenario then server.
    fn load_all(&self) -> Result<BTreeMap<(Scenario, Peer), Value>> {
        let mut all = BTreeMap::new();
        for scenario in Scenario::DEFAULT {
            for peer in Peer::ALL {
                let path = self
                    .results_mode
                    .join(scenario.id())
                    .join(format!("{peer}.json"));
                if let Ok(text) = fs::read_to_string(&path) {
                    let value: Value = serde_json::from_str(&text)
                        .with_context(|| format!("{} is not JSON", path.display()))?;
                    all.insert((scenario, peer), value);
                }
            }
        }
        Ok(all)
    }
}

/// One server's result in one scenario.
struct Outcome {
    /// The `cargo xtask bench …` command that ran it.
    command: String,
    scenario: String,
    peer: String,
    date: String,
    server_command: String,
    /// Label -> the `herald-bench` command line.
    bench_commands: Vec<(String, String)>,
    /// Label -> herald-bench's JSON result.
    reports: Vec<(String, Value)>,
    /// Label -> RSS and CPU of the whole process tree around that run.
    trees: Vec<(String, Value)>,
    /// Scenario-specific figures (S3's most connections).
    extra: Value,
    error: Option<String>,
}

impl Outcome {
    fn to_json(&self) -> Value {
        json!({
            "command": self.command,
            "scenario": self.scenario,
            "peer": self.peer,
            "date": self.date,
            "server_command": self.server_command,
            "bench_commands": self.bench_commands.iter().cloned().collect::<BTreeMap<_, _>>(),
            "reports": self.reports.iter().cloned().collect::<BTreeMap<_, _>>(),
            "trees": self.trees.iter().cloned().collect::<BTreeMap<_, _>>(),
            "extra": self.extra,
            "error": self.error,
        })
    }
}

/// Runs one scenario against one server; failures are recorded in the outcome.
fn run_one(ctx: &Harness, scenario: Scenario, peer: Peer) -> Outcome {
    let mut outcome = Outcome {
        command: String::new(),
        scenario: scenario.id().to_owned(),
        peer: peer.name().to_owned(),
        date: utc_now(),
        server_command: String::new(),
        bench_commands: Vec::new(),
        reports: Vec::new(),
        trees: Vec::new(),
        extra: Value::Null,
        error: None,
    };
    if let Err(err) = run_one_inner(ctx, scenario, peer, &mut outcome) {
        outcome.error = Some(format!("{err:#}"));
    }
    outcome
}

fn run_one_inner(
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
            outcome.bench_commands.push((label.clone(), display));
            let sampler = Tree::sample(server.tree_roots.clone(), ctx.clk_tck);
            let report = run_bench(cmd, &log, &args);
            outcome.trees.push((label.clone(), sampler.finish()));
            outcome.reports.push((label, report?));
        }
        if scenario == Scenario::S3 && peer == Peer::Herald {
            outcome.extra = herald_max_connections(ctx, &server, &dir)?;
        }
        server.stop()?;
    }
    Ok(())
}

/// S3 for Herald: the most connections one process holds, with two bench processes (each
/// has the same 20,000-descriptor hard limit) connected at the same time.
fn herald_max_connections(ctx: &Harness, server: &Server, dir: &Path) -> Result<Value> {
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
    let connected = |r: &Value| r["subscribers"]["connected"].as_u64().unwrap_or(0);
    let total = connected(&report_a) + connected(&report_b);
    let before = report_a["server"]["rss_before"].as_f64();
    let held = report_b["server"]["rss_idle"].as_f64();
    let per_conn = match (before, held) {
        (Some(before), Some(held)) if total > 0 => Some((held - before) / total as f64),
        _ => None,
    };
    let projection = per_conn.and_then(|p| before.map(|b| b + p * 1_000_000.0));
    Ok(json!({
        "requested": 2 * per_process,
        "connected": total,
        "rss_before": before,
        "rss_held": held,
        "rss_per_conn_bytes": per_conn,
        "projection_1m_bytes": projection,
        "bench_commands": [display_a, display_b],
        "reports": [report_a, report_b],
    }))
}

/// Open file descriptors of `pid` (0 when unreadable).
fn count_fds(pid: u32) -> u64 {
    fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
}

/// The `herald-bench` command for `server`, and how to print it (the token elided).
fn bench_command(ctx: &Harness, server: &Server, mode: &str, args: &[String]) -> (Command, String) {
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

/// Runs a bench process to the end and returns its JSON result.
fn run_bench(cmd: Command, log: &Path, args: &[String]) -> Result<Value> {
    let child = spawn_bench(cmd, log)?;
    wait_bench(child, log, args)
}

/// A bench process writing stdout to `<log>.json-lines` and stderr to `log`.
fn spawn_bench(mut cmd: Command, log: &Path) -> Result<Child> {
    let stderr = fs::File::create(log)?;
    let stdout = fs::File::create(log.with_extension("stdout"))?;
    cmd.stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .context("cannot start herald-bench under taskset")
}

/// Waits for a bench process (killing it past its duration limit) and parses its result.
fn wait_bench(mut child: Child, log: &Path, args: &[String]) -> Result<Value> {
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
    match last.map(serde_json::from_str::<Value>) {
        Some(Ok(value)) if status.success() => Ok(value),
        Some(Ok(value)) => {
            println!("herald-bench exited with {status} but printed a result");
            Ok(value)
        }
        _ => bail!(
            "herald-bench failed ({status}) without a JSON result: {}",
            tail(&stderr, 5)
        ),
    }
}

/// A server under test.
struct Server {
    peer: Peer,
    /// The processes started, main one first (Pushpin's origin second).
    children: Vec<Child>,
    /// The PID herald-bench measures (for Pushpin: condure, which holds the connections).
    pid: u32,
    /// Roots of the process trees whose RSS and CPU [`Tree`] sums.
    tree_roots: Vec<u32>,
    run_dir: PathBuf,
    command: String,
    sub_url: String,
    pub_url: String,
    publish_kind: &'static str,
    token: Option<String>,
    /// `target/bench-run/<peer>.pids`, removed once the server is stopped.
    pids_file: Option<PathBuf>,
    stopped: bool,
}

impl Server {
    fn start(ctx: &Harness, peer: Peer, durability: &str, scenario: Scenario) -> Result<Server> {
        let run_dir = ctx.run_root.join(peer.name());
        let pids_file = ctx.run_root.join(format!("{peer}.pids"));
        stop_leftovers(&pids_file);
        if run_dir.exists() {
            fs::remove_dir_all(&run_dir)?;
        }
        fs::create_dir_all(&run_dir)?;
        let mut ports = vec![peer.port()];
        if peer == Peer::Pushpin {
            ports.extend([PUSHPIN_ORIGIN_PORT, PUSHPIN_PUBLISH_PORT]);
            ports.extend(PUSHPIN_ZMQ_PORTS);
        }
        for port in ports {
            if TcpListener::bind(("127.0.0.1", port)).is_err() {
                bail!("port 127.0.0.1:{port} is in use: is a server of an earlier run still up?");
            }
        }
        let port = peer.port();
        let base = format!("http://127.0.0.1:{port}");
        let peers_dir = ctx.root.join("bench/peers");
        let mut server = Server {
            peer,
            children: Vec::new(),
            pid: 0,
            tree_roots: Vec::new(),
            run_dir: run_dir.clone(),
            command: String::new(),
            sub_url: String::new(),
            pub_url: String::new(),
            publish_kind: "json",
            token: None,
            pids_file: None,
            stopped: false,
        };
        let log = |name: &str| -> Result<(Stdio, Stdio)> {
            let file = fs::File::create(run_dir.join(name))?;
            Ok((file.try_clone()?.into(), file.into()))
        };
        match peer {
            Peer::Herald => {
                let data = run_dir.join("data");
                let args: Vec<String> = [
                    "serve",
                    "--listen",
                    &format!("127.0.0.1:{port}"),
                    "--data-dir",
                    &data.to_string_lossy(),
                    "--jwt-key",
                    HERALD_KEY,
                    "--anonymous",
                    "--durability",
                    durability,
                    "--max-connections-per-ip",
                    "100000",
                ]
                .iter()
                .map(|s| (*s).to_owned())
                .collect();
                let token = command_output(
                    Command::new(&ctx.herald)
                        .args(["token", "--publish", "*", "--ttl", "4h", "--jwt-key"])
                        .arg(HERALD_KEY),
                )
                .context("herald token")?;
                server.token = Some(token.trim().to_owned());
                server.spawn(pinned(&ctx.herald, &args), log("server.log")?, &ctx.root)?;
                server.command = format!(
                    "taskset -c 0 target/release/herald {}",
                    args.join(" ")
                        .replace(&*run_dir.to_string_lossy(), "<tmp>")
                        .replace(HERALD_KEY, "<key>")
                );
                server.sub_url = format!("{base}/.well-known/mercure?topic=bench-{{topic}}");
                server.pub_url = format!("{base}/.well-known/mercure");
                server.publish_kind = "mercure";
                wait_http(&mut server, port, "/healthz")?;
            }
            Peer::Nchan => {
                let template = fs::read_to_string(peers_dir.join("nchan/nginx.conf"))?;
                let mut conf = template
                    .replace("@NCHAN_MODULE@", NCHAN_MODULE)
                    .replace("@RUN_DIR@", &run_dir.to_string_lossy())
                    .replace("@PORT@", &port.to_string());
                let mut shown = String::new();
                if scenario == Scenario::S5 {
                    // Resuming needs the missed events still buffered while the next ones
                    // are published: keep every event of the run.
                    let line = "nchan_message_buffer_length 100;";
                    if !conf.contains(line) {
                        bail!("bench/peers/nchan/nginx.conf has no `{line}` to raise for S5");
                    }
                    conf = conf.replace(
                        line,
                        &format!("nchan_message_buffer_length {NCHAN_S5_BUFFER};"),
                    );
                    shown = format!(", with nchan_message_buffer_length {NCHAN_S5_BUFFER}");
                }
                let conf_path = run_dir.join("nginx.conf");
                fs::write(&conf_path, conf)?;
                let args: Vec<String> = vec![
                    "-p".into(),
                    run_dir.to_string_lossy().into_owned(),
                    "-e".into(),
                    run_dir.join("error.log").to_string_lossy().into_owned(),
                    "-c".into(),
                    conf_path.to_string_lossy().into_owned(),
                ];
                server.spawn(
                    pinned(Path::new("nginx"), &args),
                    log("server.log")?,
                    &run_dir,
                )?;
                server.command = format!(
                    "taskset -c 0 nginx -p <tmp> -e <tmp>/error.log -c <tmp>/nginx.conf (bench/peers/nchan/nginx.conf{shown})"
                );
                server.sub_url = format!("{base}/sub?id=bench-{{topic}}");
                server.pub_url = format!("{base}/pub?id=bench-{{topic}}");
                server.publish_kind = "nchan";
                wait_http(&mut server, port, "/healthz")?;
            }
            Peer::Pushpin => {
                // The origin first, then pushpin in front of it.
                let origin_args = vec![
                    peers_dir
                        .join("pushpin/origin.mjs")
                        .to_string_lossy()
                        .into_owned(),
                    "--port".into(),
                    PUSHPIN_ORIGIN_PORT.to_string(),
                ];
                let mut origin = pinned(Path::new("node"), &origin_args);
                let (out, err) = log("origin.log")?;
                let origin = origin
                    .current_dir(&run_dir)
                    .stdin(Stdio::null())
                    .stdout(out)
                    .stderr(err)
                    .spawn()
                    .context("cannot start the Pushpin origin (node)")?;
                let origin_pid = origin.id();
                // Owned by the server from here on, so a failed start stops it too.
                server.children.push(origin);
                server.tree_roots.push(origin_pid);
                let template = fs::read_to_string(peers_dir.join("pushpin/pushpin.conf"))?;
                let conf = template
                    .replace("@RUN_DIR@", &run_dir.to_string_lossy())
                    .replace("@PORT@", &port.to_string())
                    .replace("@PUBLISH_PORT@", &PUSHPIN_PUBLISH_PORT.to_string())
                    .replace("@ZMQ_PUSH_PORT@", &PUSHPIN_ZMQ_PORTS[0].to_string())
                    .replace("@ZMQ_SUB_PORT@", &PUSHPIN_ZMQ_PORTS[1].to_string())
                    .replace("@ZMQ_COMMAND_PORT@", &PUSHPIN_ZMQ_PORTS[2].to_string());
                fs::create_dir_all(run_dir.join("run"))?;
                fs::create_dir_all(run_dir.join("log"))?;
                fs::write(run_dir.join("pushpin.conf"), conf)?;
                fs::write(
                    run_dir.join("routes"),
                    format!("* 127.0.0.1:{PUSHPIN_ORIGIN_PORT}\n"),
                )?;
                let args = vec![
                    "--config".into(),
                    run_dir.join("pushpin.conf").to_string_lossy().into_owned(),
                ];
                server.spawn(
                    pinned(Path::new("pushpin"), &args),
                    log("server.log")?,
                    &run_dir,
                )?;
                server.command = format!(
                    "taskset -c 0 pushpin --config <tmp>/pushpin.conf (bench/peers/pushpin/pushpin.conf; routes `* 127.0.0.1:{PUSHPIN_ORIGIN_PORT}`), origin: taskset -c 0 node bench/peers/pushpin/origin.mjs --port {PUSHPIN_ORIGIN_PORT}"
                );
                server.sub_url = format!("{base}/events?topic=bench-{{topic}}");
                server.pub_url = format!("http://127.0.0.1:{PUSHPIN_PUBLISH_PORT}/publish/");
                server.publish_kind = "pushpin";
                // Through pushpin to the origin: the whole chain answers.
                wait_http(&mut server, port, "/healthz")?;
                wait_http(&mut server, PUSHPIN_PUBLISH_PORT, "/")?;
                let launcher = server.children[0].id();
                server.pid = descendants(launcher)
                    .into_iter()
                    .find(|&pid| comm(pid).as_deref() == Some("condure"))
                    .context("pushpin is up but has no condure process")?;
            }
            Peer::Node => {
                let args = vec![
                    peers_dir
                        .join("node/server.mjs")
                        .to_string_lossy()
                        .into_owned(),
                    "--port".into(),
                    port.to_string(),
                ];
                server.spawn(
                    pinned(Path::new("node"), &args),
                    log("server.log")?,
                    &run_dir,
                )?;
                server.command =
                    format!("taskset -c 0 node bench/peers/node/server.mjs --port {port}");
                server.sub_url = format!("{base}/events?topic=bench-{{topic}}");
                server.pub_url = format!("{base}/publish");
                wait_http(&mut server, port, "/healthz")?;
            }
            Peer::Raw => {
                let exe = env::current_exe().context("cannot find the xtask binary")?;
                let args = vec![
                    "bench".into(),
                    "raw-server".into(),
                    "--port".into(),
                    port.to_string(),
                ];
                server.spawn(pinned(&exe, &args), log("server.log")?, &run_dir)?;
                server.command = format!(
                    "taskset -c 0 target/debug/xtask bench raw-server --port {port} (xtask/src/bench.rs, raw_server)"
                );
                server.sub_url = format!("{base}/events?topic=bench-{{topic}}");
                server.pub_url = format!("{base}/publish");
                wait_http(&mut server, port, "/healthz")?;
            }
            Peer::Python => {
                let args = vec![
                    peers_dir
                        .join("python/server.py")
                        .to_string_lossy()
                        .into_owned(),
                    "--port".into(),
                    port.to_string(),
                ];
                server.spawn(
                    pinned(&ctx.venv_python, &args),
                    log("server.log")?,
                    &run_dir,
                )?;
                server.command = format!(
                    "taskset -c 0 target/bench-venv/bin/python bench/peers/python/server.py --port {port}"
                );
                server.sub_url = format!("{base}/events?topic=bench-{{topic}}");
                server.pub_url = format!("{base}/publish");
                wait_http(&mut server, port, "/healthz")?;
            }
        }
        server.record_pids(&pids_file);
        Ok(server)
    }

    /// Writes `pid comm` of every process of the server, so that the next run can stop the
    /// ones an interrupted run (Ctrl-C in another terminal, `kill` of xtask) left behind.
    fn record_pids(&mut self, path: &Path) {
        let mut lines = String::new();
        for &root in &self.tree_roots {
            for pid in std::iter::once(root).chain(descendants(root)) {
                if let Some(name) = comm(pid) {
                    let _ = writeln!(lines, "{pid} {name}");
                }
            }
        }
        if fs::write(path, lines).is_ok() {
            self.pids_file = Some(path.to_owned());
        }
    }

    /// Starts the main process.
    fn spawn(&mut self, mut cmd: Command, (out, err): (Stdio, Stdio), dir: &Path) -> Result<()> {
        let program = display_command_short(&cmd);
        let child = cmd
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("cannot start {program}"))?;
        self.pid = child.id();
        self.tree_roots.insert(0, child.id());
        self.children.insert(0, child);
        Ok(())
    }

    /// Stops every process by PID: SIGTERM, then SIGKILL after [`STOP_TIMEOUT`]; Pushpin's
    /// children are checked too, in case the launcher left one behind.
    fn stop(mut self) -> Result<()> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<()> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        let mut leftovers = Vec::new();
        for child in &self.children {
            leftovers.extend(descendants(child.id()));
        }
        let mut problems = Vec::new();
        for child in &mut self.children {
            let pid = child.id();
            signal(pid, "TERM");
            let started = Instant::now();
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if started.elapsed() < STOP_TIMEOUT => {
                        thread::sleep(Duration::from_millis(50));
                    }
                    _ => {
                        problems.push(format!(
                            "{} pid {pid} ignored SIGTERM for {STOP_TIMEOUT:?}; killed",
                            self.peer
                        ));
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        for pid in leftovers {
            let started = Instant::now();
            while alive(pid) && started.elapsed() < STOP_TIMEOUT {
                thread::sleep(Duration::from_millis(50));
            }
            if alive(pid) {
                problems.push(format!(
                    "{} child pid {pid} outlived its parent; killed",
                    self.peer
                ));
                signal(pid, "KILL");
            }
        }
        let _ = fs::remove_dir_all(self.run_dir.join("data"));
        if let Some(path) = &self.pids_file {
            let _ = fs::remove_file(path);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            // Stopped all the same; say so in the output but do not fail the run.
            println!("warning: {}", problems.join("; "));
            Ok(())
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

/// Stops the processes listed in a `.pids` file that still run under the same name: what an
/// interrupted run left behind.
fn stop_leftovers(pids_file: &Path) {
    let Ok(text) = fs::read_to_string(pids_file) else {
        return;
    };
    for line in text.lines() {
        let Some((pid, name)) = line.split_once(' ') else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if alive(pid) && comm(pid).as_deref() == Some(name) {
            println!("stopping {name} (pid {pid}) left over from an interrupted run");
            signal(pid, "TERM");
            let started = Instant::now();
            while alive(pid) && started.elapsed() < STOP_TIMEOUT {
                thread::sleep(Duration::from_millis(50));
            }
            if alive(pid) {
                signal(pid, "KILL");
            }
        }
    }
    let _ = fs::remove_file(pids_file);
}

/// `taskset -c 0 <program> <args>`.
fn pinned(program: &Path, args: &[String]) -> Command {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", "0"]).arg(program).args(args);
    cmd
}

/// Polls `GET path` on the port until it answers with an HTTP status line, or fails when the
/// server exits or [`START_TIMEOUT`] passes.
fn wait_http(server: &mut Server, port: u16, path: &str) -> Result<()> {
    let started = Instant::now();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    loop {
        for child in &mut server.children {
            if let Some(status) = child.try_wait()? {
                let log = fs::read_to_string(server.run_dir.join("server.log")).unwrap_or_default();
                bail!(
                    "{} exited during start ({status}): {}",
                    server.peer,
                    tail(&log, 10)
                );
            }
        }
        if let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let request = format!(
                "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
            );
            if stream.write_all(request.as_bytes()).is_ok() {
                let mut head = [0u8; 12];
                if stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") {
                    return Ok(());
                }
            }
        }
        if started.elapsed() > START_TIMEOUT {
            bail!(
                "{} did not answer GET {path} on port {port} within {START_TIMEOUT:?}",
                server.peer
            );
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// RSS and CPU time of whole process trees, sampled every 250 ms while a bench runs.
struct Tree {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<Value>,
}

impl Tree {
    fn sample(roots: Vec<u32>, clk_tck: f64) -> Tree {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = thread::spawn(move || {
            let measure = || {
                let mut pids = roots.clone();
                for &root in &roots {
                    pids.extend(descendants(root));
                }
                let mut rss_kib = 0;
                let mut ticks = 0;
                for pid in &pids {
                    if let Some((r, t)) = rss_and_ticks(*pid) {
                        rss_kib += r;
                        ticks += t;
                    }
                }
                (pids.len(), rss_kib, ticks)
            };
            let cpus_before = cpu_busy_ticks();
            let (processes, rss_before, ticks_before) = measure();
            let mut peak = rss_before;
            let mut last = (processes, rss_before, ticks_before);
            while !flag.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(250));
                let now = measure();
                peak = peak.max(now.1);
                last = now;
            }
            let cpus_after = cpu_busy_ticks();
            let busy = |i: usize| {
                cpus_after
                    .get(i)
                    .zip(cpus_before.get(i))
                    .map(|(a, b)| a.saturating_sub(*b) as f64 / clk_tck)
            };
            json!({
                "processes": processes,
                "rss_before_bytes": rss_before * 1024,
                "rss_peak_bytes": peak * 1024,
                "cpu_s": (last.2.saturating_sub(ticks_before)) as f64 / clk_tck,
                // Busy time of CPU 0 (the server's) and CPU 1 (the bench's), all processes,
                // interrupts included: more than the server's and the bench's own means
                // something else ran there too.
                "cpu0_busy_s": busy(0),
                "cpu1_busy_s": busy(1),
            })
        });
        Tree { stop, handle }
    }

    fn finish(self) -> Value {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or(Value::Null)
    }
}

/// Busy clock ticks of each CPU (`cpuN` lines of /proc/stat: everything but idle and iowait).
fn cpu_busy_ticks() -> Vec<u64> {
    let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
    stat.lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            let get = |i: usize| v.get(i).copied().unwrap_or(0);
            // user nice system idle iowait irq softirq steal
            get(0) + get(1) + get(2) + get(5) + get(6) + get(7)
        })
        .collect()
}

/// VmRSS (KiB) and utime + stime (clock ticks) of `pid`.
fn rss_and_ticks(pid: u32) -> Option<(u64, u64)> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let fields = stat_fields(pid)?;
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some((rss, ticks))
}

/// The fields of `/proc/<pid>/stat` after the command name: state, ppid, ...
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// Whether `pid` runs (a zombie does not).
fn alive(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|f| f.first().is_some_and(|s| s != "Z" && s != "X"))
}

/// The command name of `pid`.
fn comm(pid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Every descendant of `root`, from /proc.
fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let pid = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok());
            let ppid = pid
                .and_then(stat_fields)
                .and_then(|f| f.get(1)?.parse::<u32>().ok());
            if let (Some(pid), Some(ppid)) = (pid, ppid) {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parent_of
                .iter()
                .filter(|&&(_, ppid)| ppid == parent)
                .map(|&(pid, _)| pid),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// `kill -<sig> <pid>`.
fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status();
}

/// Installs the Debian packages the chosen servers need, when missing.
fn ensure_system_packages(peers: &[Peer]) -> Result<()> {
    let mut needed: Vec<(&str, &str)> = Vec::new();
    if peers.contains(&Peer::Nchan) {
        needed.push(("/usr/sbin/nginx", "nginx"));
        needed.push((NCHAN_MODULE, "libnginx-mod-nchan"));
    }
    if peers.contains(&Peer::Pushpin) {
        needed.push(("/usr/bin/pushpin", "pushpin"));
    }
    if peers
        .iter()
        .any(|p| matches!(p, Peer::Pushpin | Peer::Node))
    {
        needed.push(("/usr/bin/node", "nodejs"));
    }
    needed.push(("/usr/bin/taskset", "util-linux"));
    install_packages(&needed)
}

/// `npm ci` in bench/peers/node unless express is installed from the current lock file.
fn ensure_npm(root: &Path) -> Result<()> {
    let dir = root.join("bench/peers/node");
    let up_to_date = dir.join("node_modules/express").is_dir()
        && match (
            modified(&dir.join("package-lock.json")),
            modified(&dir.join("node_modules/.package-lock.json")),
        ) {
            (Some(lock), Some(installed)) => installed >= lock,
            _ => false,
        };
    if up_to_date {
        println!("up to date: bench/peers/node/node_modules");
        return Ok(());
    }
    let mut npm = Command::new("npm");
    npm.current_dir(&dir)
        .args(["ci", "--no-audit", "--no-fund"])
        .stdin(Stdio::null());
    run(&mut npm, "in bench/peers/node")
}

/// A venv with bench/peers/python/requirements.txt installed (reinstalled when it changes).
fn ensure_venv(root: &Path, venv: &Path) -> Result<()> {
    let requirements = root.join("bench/peers/python/requirements.txt");
    let wanted = fs::read_to_string(&requirements)?;
    let marker = venv.join("installed-requirements.txt");
    if venv.join("bin/python").exists() && fs::read_to_string(&marker).ok() == Some(wanted.clone())
    {
        println!("up to date: {}", venv.display());
        return Ok(());
    }
    if !venv.join("bin/python").exists() {
        let mut create = Command::new("python3");
        create.arg("-m").arg("venv").arg(venv).stdin(Stdio::null());
        run(&mut create, "")?;
    }
    let mut pip = Command::new(venv.join("bin/pip"));
    pip.args(["install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(&requirements)
        .stdin(Stdio::null());
    run(&mut pip, "")?;
    fs::write(marker, wanted)?;
    Ok(())
}

/// Runs a command and returns its stdout.
fn command_output(cmd: &mut Command) -> Result<String> {
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

fn display_command_short(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(
        cmd.get_args()
            .take(3)
            .map(|a| a.to_string_lossy().into_owned()),
    );
    format!("`{}`", parts.join(" "))
}

/// The last `n` lines of `text`, on one line.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// `YYYY-MM-DD HH:MM UTC`.
fn utc_now() -> String {
    command_output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown date".into())
}

// ---------------------------------------------------------------------------------------------
// BENCHMARKS.md

/// Renders every stored result into BENCHMARKS.md.
fn render(ctx: &Harness, all: &BTreeMap<(Scenario, Peer), Value>) -> Result<String> {
    let mut s = String::new();
    let quick = if ctx.options.quick {
        " (--quick smoke run)"
    } else {
        ""
    };
    writeln!(s, "# Benchmarks{quick}\n")?;
    writeln!(
        s,
        "Herald side by side with Nchan, Pushpin, a plain Express server, an \
         sse-starlette server and a raw write loop (the raw limit), on this machine, with `herald-bench` as the load generator. \
         Generated by `cargo xtask bench compare` (see `xtask/src/bench.rs`); raw JSON results \
         are in `target/bench-results/`.\n"
    )?;
    writeln!(s, "## Machine\n")?;
    writeln!(s, "{}\n", machine())?;
    writeln!(s, "- Generated: {}", utc_now())?;
    let mut commands: Vec<&str> = all.values().filter_map(|v| v["command"].as_str()).collect();
    commands.sort_unstable();
    commands.dedup();
    let commands: Vec<String> = commands.iter().map(|c| format!("`{c}`")).collect();
    writeln!(s, "- Results of: {}", commands.join(", "))?;
    writeln!(s, "- Versions: {}\n", versions(ctx))?;
    writeln!(
        s,
        "![Deliveries per second and latency from send, per server and scenario]({PLOT})\n"
    )?;
    writeln!(s, "## Method\n")?;
    let unclassified_note = if all.values().any(unclassified) {
        " (results marked \"unclassified\" predate that split and count every reversal)"
    } else {
        ""
    };
    writeln!(
        s,
        "Each server runs alone, on loopback, pinned to CPU 0 (`taskset -c 0`); `herald-bench` \
         runs pinned to CPU 1 with one runtime thread, and reads the server's RSS and CPU time \
         from `/proc/<pid>`. Servers run one after another and are stopped by PID between runs. \
         Subscribers connect from 127.0.0.1-127.0.0.{SOURCE_IPS}. The publisher is open-loop: \
         event k is due at start + k/rate whatever happened to event k-1, so latency \"from \
         schedule\" shows a server that slows its publisher down. Each payload carries a \
         sequence number and its send time; lost, duplicated and out-of-order deliveries are \
         counted per subscriber. In S1, S2 and S4 up to {PUBLISHERS} publish requests are in \
         flight at once (an event is only sent when it is due): with one, a server that answers \
         a publish only after its fan-out caps the event rate at its fan-out time. Two events \
         in flight on different connections may reach the server in either order, and the \
         server may order them either way. So an event delivered after a later one counts as \
         out of order only if its publish had been acknowledged before the later one's was \
         sent; reversals of publishes that overlapped are shown apart, as \"(+N \
         concurrent)\"{unclassified_note}. Events still undelivered when the drain ends are \
         counted as lost.\n\n\
         - Herald: `herald serve --anonymous --durability normal --max-connections-per-ip \
         100000`, publishing through Mercure with a publisher JWT (`--durability full` too in S6).\n\
         - Nchan: nginx with `libnginx-mod-nchan`, one process (`master_process off`), \
         `bench/peers/nchan/nginx.conf`; EventSource subscribers, publishes to its publisher \
         location.\n\
         - Pushpin: Debian's defaults with every port on loopback \
         (`bench/peers/pushpin/pushpin.conf`, log level 1), in front of \
         `bench/peers/pushpin/origin.mjs` which answers with `Grip-Hold: stream`. Pushpin is five \
         processes (condure, zurl, proxy, handler, and the runner) plus the origin: herald-bench \
         measures condure, which holds the client connections, so its columns below are \
         condure's alone; the **whole** rows add every process of the tree (RSS peak during the \
         run minus RSS before, and CPU over the whole bench run, connects included).\n\
         - Node: `bench/peers/node/server.mjs`, Express, one `Set` of responses per topic.\n\
         - Python: `bench/peers/python/server.py`, sse-starlette on uvicorn (uvloop, httptools), \
         one `asyncio.Queue` per subscriber.\n\
         - raw limit: `cargo xtask bench raw-server` (`raw_server` in `xtask/src/bench.rs`, a \
         debug build of std-only Rust), which answers subscribers with SSE headers and writes \
         each published frame to every socket of its topic with one blocking `write_all`, from \
         one thread, and nothing else: the cost of the writes alone. It does not coalesce \
         queued events into one write, so a server that does can pass it under backlog.\n\n\
         Latency is in milliseconds. \"RSS/conn\" is (RSS with every subscriber connected − RSS \
         before) / connected. \"CPU s/M\" is the server's CPU seconds from the first publish to \
         the end of the drain, per million deliveries.\n"
    )?;
    for scenario in Scenario::DEFAULT {
        let rows: Vec<(Peer, &Value)> = Peer::ALL
            .into_iter()
            .filter_map(|p| all.get(&(scenario, p)).map(|v| (p, v)))
            .collect();
        writeln!(s, "## {}\n", scenario.title())?;
        writeln!(s, "{}\n", scenario_description(scenario, ctx.options.quick))?;
        if rows.is_empty() {
            writeln!(s, "Not run yet.\n")?;
            continue;
        }
        match scenario {
            Scenario::S1 | Scenario::S1Max | Scenario::S2 | Scenario::S4 => {
                render_run(&mut s, scenario, &rows)?;
            }
            Scenario::S3 => render_idle(&mut s, &rows)?,
            Scenario::S5 => render_storm(&mut s, &rows)?,
            Scenario::S6 => render_publish(&mut s, &rows)?,
        }
        for (peer, v) in &rows {
            if let Some(cmds) = v["bench_commands"].as_object() {
                writeln!(
                    s,
                    "<details><summary>{} commands ({})</summary>\n",
                    peer.title(),
                    v["date"].as_str().unwrap_or("?")
                )?;
                writeln!(s, "```sh\n{}", v["server_command"].as_str().unwrap_or(""))?;
                for cmd in cmds.values() {
                    writeln!(s, "{}", cmd.as_str().unwrap_or(""))?;
                }
                writeln!(s, "```\n")?;
                for (label, tree) in v["trees"].as_object().into_iter().flatten() {
                    if let (Some(cpu0), Some(cpu1), Some(server)) = (
                        tree["cpu0_busy_s"].as_f64(),
                        tree["cpu1_busy_s"].as_f64(),
                        tree["cpu_s"].as_f64(),
                    ) {
                        writeln!(
                            s,
                            "- {label}: CPU 0 busy {cpu0:.1} s, of which the server's processes {server:.1} s (the rest is interrupts, the kernel's network work, and anything else that ran there); CPU 1 (herald-bench) busy {cpu1:.1} s.",
                        )?;
                    }
                }
                writeln!(s, "\n</details>\n")?;
            }
        }
    }
    // The notes describe the full run; a smoke run's numbers mean nothing to them.
    if let Some(notes) = (!ctx.options.quick)
        .then(|| fs::read_to_string(ctx.root.join("bench/notes.md")).ok())
        .flatten()
    {
        writeln!(s, "{}\n", notes.trim_end())?;
    }
    Ok(s)
}

fn scenario_description(scenario: Scenario, quick: bool) -> String {
    let full = match scenario {
        Scenario::S1 => {
            "1,000 subscribers on one topic, 200 events/s for 10 s (2,000 events): 200,000 \
             deliveries/s offered, so a server that keeps up delivers exactly that."
        }
        Scenario::S1Max => {
            "Beyond S1's load: S1 at 1,000 events/s for 5 s (5,000 events), 1,000,000 \
             deliveries/s offered, more than any server here (or herald-bench on one core) can \
             take: deliveries/s is each server's ceiling, latency is mostly backlog."
        }
        Scenario::S2 => {
            "10,000 subscribers on one topic, 20 events/s for 10 s (200 events): 200,000 \
             deliveries/s offered."
        }
        Scenario::S3 => {
            "10,000 idle connections on one topic, held 5 s; RSS per connection. For Herald also \
             the most connections one process holds (two bench processes of 9,900, each with \
             the 20,000-descriptor hard limit), with a projection for 1,000,000."
        }
        Scenario::S4 => {
            "10,000 subscribers each on its own topic; 1,000 events/s for 10 s, event k on topic \
             k mod 10,000 (each subscriber gets one event)."
        }
        Scenario::S5 => {
            "10,000 subscribers on one topic, 20 events/s (200 events). After event 50 has \
             reached every subscriber, all close their streams at once; 100 events are published \
             while they are away; then all reconnect at once (at most 1,024 connects in flight) \
             with `Last-Event-ID` set to the `id` of the last event each received, while the last \
             50 events are published. \"All caught up\" is the time from the reconnect signal \
             until the last subscriber has every event published before it; lost / dup / out of \
             order count over the whole run, per subscriber; catch-up times include herald-bench's \
             own reading of every replayed event on its one core. Nchan runs with \
             `nchan_message_buffer_length 200` here (100 in the other scenarios), so every \
             event of the run stays buffered. Target for Herald: all caught up within 2 s, zero \
             loss, zero duplicates."
        }
        Scenario::S6 => {
            "Herald only: acknowledged publishes per second, unthrottled, with 1, 16 and 64 \
             concurrent publishers (one subscriber listening), `--durability full` (fsync per \
             commit) and `normal`."
        }
    };
    if quick {
        format!("{full} **Quick run: about a tenth of the subscribers and events.**")
    } else {
        full.to_owned()
    }
}

/// Formats µs as ms.
fn ms(v: &Value) -> String {
    match v.as_f64() {
        Some(us) if us >= 100_000.0 => format!("{:.0}", us / 1000.0),
        Some(us) if us >= 10_000.0 => format!("{:.1}", us / 1000.0),
        Some(us) => format!("{:.2}", us / 1000.0),
        None => "?".into(),
    }
}

fn num(v: &Value) -> String {
    if let Some(n) = v.as_u64() {
        return group(n);
    }
    match v.as_f64() {
        Some(x) if x >= 100.0 => group(x.round() as u64),
        Some(x) if x >= 10.0 => format!("{x:.1}"),
        Some(x) => format!("{x:.2}"),
        None => "?".into(),
    }
}

/// 1234567 as "1,234,567".
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The out-of-order figure of a report's deliveries: the ordering violations, then the
/// reversals that concurrent publishes allow, "0 (+1,000 concurrent)". A result from before
/// herald-bench told them apart counts every reversal: "1,000 (unclassified)".
fn out_of_order(d: &Value) -> String {
    let violations = num(&d["out_of_order"]);
    match d.get("out_of_order_concurrent") {
        None if d["out_of_order"].as_u64() == Some(0) => violations,
        None => format!("{violations} (unclassified)"),
        Some(concurrent) if concurrent.as_u64() == Some(0) => violations,
        Some(concurrent) => format!("{violations} (+{} concurrent)", num(concurrent)),
    }
}

/// Whether a stored result has reversals counted before herald-bench told concurrent ones
/// apart.
fn unclassified(v: &Value) -> bool {
    v["reports"]
        .as_object()
        .into_iter()
        .flatten()
        .any(|(_, r)| {
            let d = &r["deliveries"];
            d["out_of_order"].as_u64().is_some_and(|n| n > 0)
                && d.get("out_of_order_concurrent").is_none()
        })
}

fn kib(bytes: Option<f64>) -> String {
    bytes.map_or("?".into(), |b| format!("{:.1} KiB", b / 1024.0))
}

/// S5: one row per server that ran, then the servers that cannot resume.
fn render_storm(s: &mut String, rows: &[(Peer, &Value)]) -> Result<()> {
    writeln!(
        s,
        "| server | connected, in | reconnected / failed | all caught up | catch-up p50 / p99 (ms) | subscribers with loss (most lost) | lost / dup / out of order |"
    )?;
    writeln!(s, "|---|---|---|---|---|---|---|")?;
    for (peer, v) in rows {
        let r = &v["reports"]["run"];
        if r.is_null() {
            writeln!(
                s,
                "| {} | **failed**: {} | | | | | |",
                peer.title(),
                v["error"].as_str().unwrap_or("no result").replace('|', "/")
            )?;
            continue;
        }
        let sub = &r["subscribers"];
        let d = &r["deliveries"];
        let rc = &r["reconnect"];
        let connected = format!(
            "{} / {} in {:.1} s",
            num(&sub["connected"]),
            num(&sub["requested"]),
            sub["connect_s"].as_f64().unwrap_or(f64::NAN)
        );
        let mut reconnected = format!("{} / {}", num(&rc["reconnected"]), num(&rc["failed"]));
        if let Some(sample) = rc["failure_samples"].get(0).and_then(Value::as_str) {
            write!(reconnected, " ({})", sample.replace('|', "/"))?;
        }
        let caught_up = match rc["all_caught_up_s"].as_f64() {
            Some(secs) => format!("{secs:.2} s"),
            None => format!(
                "**no**: {} of {} within 15 s",
                num(&rc["caught_up"]),
                num(&rc["dropped"]),
            ),
        };
        let mut caught_up = caught_up;
        if rc["listen_overflows"].as_u64().unwrap_or(0) > 0 {
            write!(
                caught_up,
                " ({} SYNs dropped by full accept queues)",
                num(&rc["listen_overflows"])
            )?;
        }
        let mut loss = format!(
            "{} / {} / {}",
            num(&d["lost"]),
            num(&d["duplicated"]),
            out_of_order(d)
        );
        let events = &r["events"];
        if events["errors"].as_u64().unwrap_or(0) > 0 || events["unsent"].as_u64().unwrap_or(0) > 0
        {
            write!(
                loss,
                " ({} publish errors, {} unsent)",
                num(&events["errors"]),
                num(&events["unsent"])
            )?;
        }
        if r["limits"]["duration_limit_hit"].as_bool() == Some(true) {
            loss.push_str(" (duration limit hit)");
        }
        let catch_up = if rc["catch_up_us"]["count"].as_u64().unwrap_or(0) == 0 {
            "none caught up".to_owned()
        } else {
            format!(
                "{} / {}",
                ms(&rc["catch_up_us"]["p50"]),
                ms(&rc["catch_up_us"]["p99"])
            )
        };
        writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} ({}) | {} |",
            peer.title(),
            connected,
            reconnected,
            caught_up,
            catch_up,
            num(&rc["subscribers_with_loss"]),
            num(&rc["most_lost_by_one"]),
            loss,
        )?;
    }
    writeln!(s)?;
    let cannot: Vec<String> = Peer::ALL
        .into_iter()
        .filter_map(|p| {
            let ran = rows.iter().any(|(r, _)| *r == p);
            cannot_resume(p).map(|why| {
                format!(
                    "- {}{}: {why}",
                    p.title(),
                    if ran { "" } else { " (not run)" }
                )
            })
        })
        .collect();
    writeln!(
        s,
        "Servers that cannot resume (their losses above are what they could not replay):\n\n{}\n\
         - raw limit: not applicable: it keeps no history, it only measures writes.\n",
        cannot.join("\n")
    )?;
    Ok(())
}

/// Why a server cannot resume a stream after a reconnect (`None`: it can).
fn cannot_resume(peer: Peer) -> Option<&'static str> {
    match peer {
        Peer::Herald | Peer::Nchan | Peer::Raw => None,
        Peer::Pushpin => Some(
            "cannot resume: a GRIP stream channel has no history, and the origin \
             (`bench/peers/pushpin/origin.mjs`) ignores `Last-Event-ID`; every event published \
             while a subscriber is away is lost to it.",
        ),
        Peer::Node => Some(
            "cannot resume: `bench/peers/node/server.mjs` keeps no history and ignores \
             `Last-Event-ID`; every event published while a subscriber is away is lost to it.",
        ),
        Peer::Python => Some(
            "cannot resume: `bench/peers/python/server.py` keeps no history and ignores \
             `Last-Event-ID`; every event published while a subscriber is away is lost to it.",
        ),
    }
}

/// S1, S2, S4: one row per server, then Herald's ratios.
fn render_run(s: &mut String, scenario: Scenario, rows: &[(Peer, &Value)]) -> Result<()> {
    writeln!(
        s,
        "| server | connected, in | deliveries/s | from send p50 / p99 / p99.9 | from schedule p50 / p99 / p99.9 | lost / dup / out of order | publisher lag p99 | RSS/conn | CPU s/M |"
    )?;
    writeln!(s, "|---|---|---|---|---|---|---|---|---|")?;
    let mut figures: BTreeMap<Peer, (f64, f64, f64, f64)> = BTreeMap::new();
    for (peer, v) in rows {
        let r = &v["reports"]["run"];
        if r.is_null() {
            writeln!(
                s,
                "| {} | **failed**: {} | | | | | | | |",
                peer.title(),
                v["error"].as_str().unwrap_or("no result").replace('|', "/")
            )?;
            continue;
        }
        let sub = &r["subscribers"];
        let d = &r["deliveries"];
        let l = &r["latency_us"];
        let fs_ = &l["from_send"];
        let fsch = &l["from_schedule"];
        let server = &r["server"];
        let mut connected = format!(
            "{} / {} in {:.1} s",
            num(&sub["connected"]),
            num(&sub["requested"]),
            sub["connect_s"].as_f64().unwrap_or(f64::NAN)
        );
        if sub["failed"].as_u64().unwrap_or(0) > 0 {
            write!(connected, " ({} failed)", num(&sub["failed"]))?;
        }
        let events = &r["events"];
        let mut loss = format!(
            "{} / {} / {}",
            num(&d["lost"]),
            num(&d["duplicated"]),
            out_of_order(d)
        );
        if events["errors"].as_u64().unwrap_or(0) > 0 || events["unsent"].as_u64().unwrap_or(0) > 0
        {
            write!(
                loss,
                " ({} publish errors, {} unsent)",
                num(&events["errors"]),
                num(&events["unsent"])
            )?;
        }
        if r["limits"]["duration_limit_hit"].as_bool() == Some(true) {
            loss.push_str(" (duration limit hit)");
        }
        writeln!(
            s,
            "| {} | {} | {} | {} / {} / {} | {} / {} / {} | {} | {} | {} | {} |",
            peer.title(),
            connected,
            num(&d["per_sec"]),
            ms(&fs_["p50"]),
            ms(&fs_["p99"]),
            ms(&fs_["p999"]),
            ms(&fsch["p50"]),
            ms(&fsch["p99"]),
            ms(&fsch["p999"]),
            loss,
            ms(&r["publisher_lag_us"]["p99"]),
            kib(server["rss_per_conn_bytes"].as_f64()),
            num(&server["cpu_s_per_million"]),
        )?;
        let mut rss = server["rss_per_conn_bytes"].as_f64().unwrap_or(f64::NAN);
        let mut cpu = server["cpu_s_per_million"].as_f64().unwrap_or(f64::NAN);
        if *peer == Peer::Pushpin {
            let tree = &v["trees"]["run"];
            let connected = sub["connected"].as_f64().unwrap_or(0.0);
            let delivered = d["delivered"].as_f64().unwrap_or(0.0);
            let whole_rss = match (
                tree["rss_peak_bytes"].as_f64(),
                tree["rss_before_bytes"].as_f64(),
            ) {
                (Some(p), Some(b)) if connected > 0.0 => Some((p - b) / connected),
                _ => None,
            };
            let whole_cpu = tree["cpu_s"]
                .as_f64()
                .filter(|_| delivered > 0.0)
                .map(|c| c / delivered * 1e6);
            writeln!(
                s,
                "| Pushpin, **whole** ({} processes) | | | | | | | {} (peak) | {} (whole run) |",
                num(&tree["processes"]),
                kib(whole_rss),
                whole_cpu.map_or("?".into(), |c| num(&json!(c))),
            )?;
            rss = whole_rss.unwrap_or(rss);
            cpu = whole_cpu.unwrap_or(cpu);
        }
        figures.insert(
            *peer,
            (
                d["per_sec"].as_f64().unwrap_or(f64::NAN),
                fs_["p99"].as_f64().unwrap_or(f64::NAN),
                rss,
                cpu,
            ),
        );
    }
    writeln!(s)?;
    if let Some(&(h_rate, h_p99, h_rss, h_cpu)) = figures.get(&Peer::Herald) {
        for (peer, &(rate, p99, rss, cpu)) in &figures {
            if *peer == Peer::Herald {
                continue;
            }
            // The raw limit keeps no per-connection state worth comparing.
            let rss = if *peer == Peer::Raw {
                String::new()
            } else {
                format!(" {} RSS per connection,", ratio(h_rss, rss))
            };
            writeln!(
                s,
                "- Herald/{}: {} deliveries/s (higher is better); {} p99 latency,{rss} {} CPU per delivery (lower is better)",
                peer.title(),
                ratio(h_rate, rate),
                ratio(h_p99, p99),
                ratio(h_cpu, cpu),
            )?;
        }
        let target = match scenario {
            Scenario::S1 => Some(format!(
                "Target: at least Nchan's deliveries/s with p99 ≤ 10 ms, CPU per million no more than Nchan's. Herald: {} deliveries/s, p99 {} ms.",
                num(&json!(h_rate)),
                ms(&json!(h_p99))
            )),
            Scenario::S2 => Some(format!(
                "Target: ≥ 1.8× Nchan's deliveries/s with p99 ≤ 50 ms and zero loss, at most half of Nchan's CPU per million. Herald: {} deliveries/s, p99 {} ms.",
                num(&json!(h_rate)),
                ms(&json!(h_p99))
            )),
            _ => None,
        };
        if let Some(target) = target {
            writeln!(s, "\n{target}")?;
        }
        writeln!(s)?;
    }
    Ok(())
}

/// "1.9×", or "n/a" when either side is missing.
fn ratio(a: f64, b: f64) -> String {
    if a.is_finite() && b.is_finite() && b > 0.0 {
        let r = a / b;
        if r >= 10.0 {
            format!("{r:.0}×")
        } else if r >= 0.1 {
            format!("{r:.2}×")
        } else {
            format!("{r:.3}×")
        }
    } else {
        "n/a".into()
    }
}

/// S3: RSS per idle connection, and Herald's most connections.
fn render_idle(s: &mut String, rows: &[(Peer, &Value)]) -> Result<()> {
    writeln!(
        s,
        "| server | connected | RSS before | RSS with all connected | RSS/conn | whole tree RSS/conn |"
    )?;
    writeln!(s, "|---|---|---|---|---|---|")?;
    let mib = |v: &Value| {
        v.as_f64()
            .map_or("?".into(), |b| format!("{:.1} MiB", b / 1048576.0))
    };
    let mut per_conn = BTreeMap::new();
    for (peer, v) in rows {
        let r = &v["reports"]["idle"];
        if r.is_null() {
            writeln!(
                s,
                "| {} | **failed**: {} | | | | |",
                peer.title(),
                v["error"].as_str().unwrap_or("no result").replace('|', "/")
            )?;
            continue;
        }
        let sub = &r["subscribers"];
        let server = &r["server"];
        let tree = &v["trees"]["idle"];
        let connected = sub["connected"].as_f64().unwrap_or(0.0);
        let whole = match (
            tree["rss_peak_bytes"].as_f64(),
            tree["rss_before_bytes"].as_f64(),
        ) {
            (Some(p), Some(b)) if connected > 0.0 => Some((p - b) / connected),
            _ => None,
        };
        let mut connected_text = format!("{} / {}", num(&sub["connected"]), num(&sub["requested"]));
        if sub["failed"].as_u64().unwrap_or(0) > 0 {
            write!(
                connected_text,
                " ({} failed: {})",
                num(&sub["failed"]),
                failure_kinds(sub)
            )?;
        }
        writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            peer.title(),
            connected_text,
            mib(&server["rss_before"]),
            mib(&server["rss_idle"]),
            kib(server["rss_per_conn_bytes"].as_f64()),
            kib(whole),
        )?;
        let value = if *peer == Peer::Pushpin {
            whole
        } else {
            server["rss_per_conn_bytes"].as_f64()
        };
        if let Some(value) = value {
            per_conn.insert(*peer, value);
        }
    }
    writeln!(
        s,
        "\n\"Whole tree\" is the peak RSS of every process of the server during the run (Pushpin: all five and the origin) minus before, per connection.\n"
    )?;
    if let Some(&h) = per_conn.get(&Peer::Herald) {
        for (peer, &other) in &per_conn {
            if *peer != Peer::Herald {
                writeln!(
                    s,
                    "- Herald/{}: {} RSS per idle connection",
                    peer.title(),
                    ratio(h, other)
                )?;
            }
        }
        writeln!(
            s,
            "\nTarget: ≤ 4 KiB per idle connection. Herald: {}.\n",
            kib(Some(h))
        )?;
    }
    if let Some((_, v)) = rows.iter().find(|(p, _)| *p == Peer::Herald) {
        let x = &v["extra"];
        if !x.is_null() {
            writeln!(
                s,
                "**Most connections one Herald process holds here:** {} of {} requested \
                 (two bench processes at once); RSS {} before, {} with all connected, {} per \
                 connection. Projection for 1,000,000 connections: **{}** (RSS before + \
                 1,000,000 × RSS/conn; a million needs a descriptor limit above 1,000,000 and \
                 about 16 source addresses' ephemeral ports).\n",
                num(&x["connected"]),
                num(&x["requested"]),
                mib(&x["rss_before"]),
                mib(&x["rss_held"]),
                kib(x["rss_per_conn_bytes"].as_f64()),
                x["projection_1m_bytes"]
                    .as_f64()
                    .map_or("?".into(), |b| format!("{:.2} GiB", b / 1073741824.0)),
            )?;
            for r in x["reports"].as_array().into_iter().flatten() {
                let sub = &r["subscribers"];
                if sub["failed"].as_u64().unwrap_or(0) > 0 {
                    let notes: Vec<&str> = r["limits"]["notes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    writeln!(
                        s,
                        "- The bench process from index {}: {} connects failed ({}){}. A 503 is \
                         Herald refusing a stream over its `--max-connections`, which defaults \
                         to what its own 20,000-descriptor limit allows.",
                        num(&sub["index_offset"]),
                        num(&sub["failed"]),
                        failure_kinds(sub),
                        if notes.is_empty() {
                            String::new()
                        } else {
                            format!("; herald-bench notes: {}", notes.join("; "))
                        }
                    )?;
                }
            }
            writeln!(s)?;
        }
    }
    Ok(())
}

/// "refused 12, status {503: 4}" from a report's subscribers object.
fn failure_kinds(sub: &Value) -> String {
    let mut parts = Vec::new();
    for key in ["refused", "timed_out", "no_local_port", "no_fd", "other"] {
        if let Some(n) = sub[key].as_u64().filter(|&n| n > 0) {
            parts.push(format!("{} {n}", key.replace('_', " ")));
        }
    }
    if let Some(status) = sub["status"].as_object() {
        for (code, n) in status {
            parts.push(format!("HTTP {code}: {n}"));
        }
    }
    parts.join(", ")
}

/// S6: acknowledged publishes per second.
fn render_publish(s: &mut String, rows: &[(Peer, &Value)]) -> Result<()> {
    writeln!(
        s,
        "| server | durability | publishers | acknowledged/s | published | errors | delivered / lost / out of order | CPU s |"
    )?;
    writeln!(s, "|---|---|---|---|---|---|---|---|")?;
    for (peer, v) in rows {
        let Some(reports) = v["reports"].as_object().filter(|r| !r.is_empty()) else {
            writeln!(
                s,
                "| {} | **failed**: {} | | | | | | |",
                peer.title(),
                v["error"].as_str().unwrap_or("no result").replace('|', "/")
            )?;
            continue;
        };
        let mut labels: Vec<&String> = reports.keys().collect();
        labels.sort_by_key(|l| {
            let (durability, publishers) = l.split_once("-publishers-").unwrap_or((l, "0"));
            (durability != "full", publishers.parse::<u64>().unwrap_or(0))
        });
        for label in labels {
            let r = &reports[label];
            let (durability, publishers) = label.split_once("-publishers-").unwrap_or((label, "?"));
            let e = &r["events"];
            let d = &r["deliveries"];
            writeln!(
                s,
                "| {} | {durability} | {publishers} | {} | {} / {} | {} | {} / {} / {} | {} |",
                peer.title(),
                num(&e["published_per_sec"]),
                num(&e["published"]),
                num(&e["requested"]),
                num(&e["errors"]),
                num(&d["delivered"]),
                num(&d["lost"]),
                out_of_order(d),
                num(&r["server"]["cpu_s"]),
            )?;
        }
        if let Some(err) = v["error"].as_str() {
            writeln!(
                s,
                "| {} | **failed later**: {} | | | | | | |",
                peer.title(),
                err.replace('|', "/")
            )?;
        }
    }
    writeln!(
        s,
        "\nTarget: ≥ 50,000 durable publishes/s at 64 publishers.\n"
    )?;
    Ok(())
}

/// nproc, CPU model, kernel, memory.
fn machine() -> String {
    let nproc = command_output(&mut Command::new("nproc")).unwrap_or_default();
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown".into());
    let kernel = command_output(Command::new("uname").arg("-sr")).unwrap_or_default();
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or("?".into(), |kb| format!("{:.1} GiB", kb / 1048576.0));
    let nofile = command_output(Command::new("sh").args(["-c", "ulimit -Hn"])).unwrap_or_default();
    format!(
        "- CPUs: {} × {model}\n- Kernel: {}\n- Memory: {mem}\n- File descriptors per process (hard limit): {}",
        nproc.trim(),
        kernel.trim(),
        nofile.trim()
    )
}

/// One line of the servers' versions.
fn versions(ctx: &Harness) -> String {
    let first_line = |cmd: &mut Command| -> String {
        cmd.output()
            .ok()
            .map(|o| {
                let text = if o.stdout.is_empty() {
                    o.stderr
                } else {
                    o.stdout
                };
                String::from_utf8_lossy(&text)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_owned()
            })
            .unwrap_or_else(|| "?".into())
    };
    let dpkg = |package: &str| {
        first_line(Command::new("dpkg-query").args(["-W", "-f", "${Version}", package]))
    };
    let express = fs::read_to_string(
        ctx.root
            .join("bench/peers/node/node_modules/express/package.json"),
    )
    .ok()
    .and_then(|t| serde_json::from_str::<Value>(&t).ok())
    .and_then(|v| v["version"].as_str().map(str::to_owned))
    .unwrap_or_else(|| "?".into());
    let python = first_line(Command::new(&ctx.venv_python).arg("--version"));
    let pyreq = fs::read_to_string(ctx.root.join("bench/peers/python/requirements.txt"))
        .unwrap_or_default();
    let pick = |name: &str| {
        pyreq
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}==")))
            .unwrap_or("?")
            .to_owned()
    };
    format!(
        "herald {} (release build); nginx {}, libnginx-mod-nchan {}; pushpin {}; node {}, express {express}; {python}, sse-starlette {}, uvicorn {}",
        env!("CARGO_PKG_VERSION"),
        dpkg("nginx"),
        dpkg("libnginx-mod-nchan"),
        dpkg("pushpin"),
        first_line(Command::new("node").arg("--version")),
        pick("sse-starlette"),
        pick("uvicorn"),
    )
}

// ---------------------------------------------------------------------------------------------
// The plot

/// An SVG with one panel per delivery scenario: deliveries/s as bars, and latency from send
/// (p50, p99, p99.9) on a log scale, one row per server.
fn plot(all: &BTreeMap<(Scenario, Peer), Value>) -> String {
    const WIDTH: f64 = 960.0;
    const ROW: f64 = 26.0;
    const LABEL: f64 = 170.0;
    const BARS: f64 = 330.0;
    const GAP: f64 = 40.0;
    const LAT: f64 = WIDTH - LABEL - BARS - GAP - 40.0;
    // Latency axis: 0.1 ms .. 100 s, log scale.
    let lat_x = |us: f64| {
        let decades = (us.max(100.0) / 100.0).log10().min(6.0);
        LABEL + BARS + GAP + decades / 6.0 * LAT
    };
    let mut body = String::new();
    let mut y = 10.0;
    for scenario in [Scenario::S1, Scenario::S1Max, Scenario::S2, Scenario::S4] {
        let rows: Vec<(Peer, &Value)> = Peer::ALL
            .into_iter()
            .filter_map(|p| all.get(&(scenario, p)).map(|v| (p, &v["reports"]["run"])))
            .collect();
        if rows.is_empty() {
            continue;
        }
        let max_rate = rows
            .iter()
            .filter_map(|(_, r)| r["deliveries"]["per_sec"].as_f64())
            .fold(1.0, f64::max);
        let _ = writeln!(
            body,
            r#"<text x="10" y="{}" font-weight="bold">{}</text><text x="{LABEL}" y="{}">deliveries/s (max {})</text><text x="{}" y="{2}">latency from send: p50 ● p99 ◆ p99.9 ▲ (log scale)</text>"#,
            y + 14.0,
            scenario.title(),
            y + 32.0,
            group(max_rate.round() as u64),
            LABEL + BARS + GAP,
        );
        y += 42.0;
        let top = y;
        for (peer, r) in &rows {
            let _ = writeln!(
                body,
                r#"<text x="10" y="{}">{}</text>"#,
                y + 17.0,
                peer.title()
            );
            if let Some(rate) = r["deliveries"]["per_sec"].as_f64() {
                let w = rate / max_rate * BARS;
                let fill = if *peer == Peer::Herald {
                    "#d9480f"
                } else {
                    "#868e96"
                };
                let _ = writeln!(
                    body,
                    r#"<rect x="{LABEL}" y="{}" width="{w:.1}" height="{}" fill="{fill}"/><text x="{}" y="{}" font-size="11">{}</text>"#,
                    y + 4.0,
                    ROW - 8.0,
                    LABEL + w + 4.0,
                    y + 17.0,
                    group(rate.round() as u64),
                );
            } else {
                let _ = writeln!(
                    body,
                    r##"<text x="{LABEL}" y="{}" fill="#c92a2a">failed</text>"##,
                    y + 17.0
                );
            }
            let l = &r["latency_us"]["from_send"];
            if let (Some(p50), Some(p99), Some(p999)) =
                (l["p50"].as_f64(), l["p99"].as_f64(), l["p999"].as_f64())
            {
                let cy = y + ROW / 2.0;
                let _ = writeln!(
                    body,
                    r##"<line x1="{:.1}" x2="{:.1}" y1="{cy}" y2="{cy}" stroke="#adb5bd"/><circle cx="{:.1}" cy="{cy}" r="4"/><rect x="{:.1}" y="{}" width="7" height="7" transform="rotate(45 {:.1} {cy})" fill="#1c7ed6"/><path d="M{:.1},{} l4,7 h-8 z" fill="#c92a2a"/>"##,
                    lat_x(p50),
                    lat_x(p999),
                    lat_x(p50),
                    lat_x(p99) - 3.5,
                    cy - 3.5,
                    lat_x(p99),
                    lat_x(p999),
                    cy - 4.0,
                );
            }
            y += ROW;
        }
        // Decade grid of the latency axis.
        for (i, label) in ["0.1 ms", "1 ms", "10 ms", "100 ms", "1 s", "10 s", "100 s"]
            .iter()
            .enumerate()
        {
            let x = LABEL + BARS + GAP + i as f64 / 6.0 * LAT;
            let _ = writeln!(
                body,
                r##"<line x1="{x:.1}" x2="{x:.1}" y1="{top}" y2="{y}" stroke="#e9ecef"/><text x="{x:.1}" y="{}" font-size="10" text-anchor="middle">{label}</text>"##,
                y + 12.0
            );
        }
        y += 30.0;
    }
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{y}" font-family="sans-serif" font-size="13">
<rect width="100%" height="100%" fill="white"/>
{body}</svg>
"##
    )
}

// ---------------------------------------------------------------------------------------------
// The raw limit

/// The ceiling no SSE server here can pass: accepts subscribers (`GET /events?topic=T`,
/// answered with SSE headers) and JSON publishes (`POST /publish {topic, data}`, the `json`
/// publish kind), and writes each frame to every socket of its topic with one blocking
/// `write_all` each, from one thread; nothing else. Loopback only; stops on SIGTERM.
fn raw_server(port: u16) -> Result<()> {
    use std::{collections::HashMap, io::BufRead as _, io::BufReader, sync::Mutex};

    type Topics = Arc<Mutex<HashMap<String, Vec<TcpStream>>>>;
    let listener = TcpListener::bind(("127.0.0.1", port))
        .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
    let topics: Topics = Arc::default();

    /// Reads one request head and body; `None` at end of stream.
    fn read_request(reader: &mut BufReader<TcpStream>) -> Option<(String, Vec<u8>)> {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let request_line = line.trim_end().to_owned();
        let mut length = 0;
        loop {
            line.clear();
            if reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().ok()?;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).ok()?;
        Some((request_line, body))
    }

    fn publish(topics: &Topics, body: &[u8]) -> usize {
        let Ok(value) = serde_json::from_slice::<Value>(body) else {
            return 0;
        };
        let (Some(topic), Some(data)) = (value["topic"].as_str(), value["data"].as_str()) else {
            return 0;
        };
        let frame = format!("data: {data}\n\n");
        let mut topics = topics.lock().unwrap_or_else(|e| e.into_inner());
        let Some(subs) = topics.get_mut(topic) else {
            return 0;
        };
        subs.retain_mut(|s| s.write_all(frame.as_bytes()).is_ok());
        subs.len()
    }

    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let _ = stream.set_nodelay(true);
        let Ok(read_half) = stream.try_clone() else {
            continue;
        };
        let mut reader = BufReader::new(read_half);
        let Some((request_line, body)) = read_request(&mut reader) else {
            continue;
        };
        let mut stream = stream;
        if let Some(target) = request_line.strip_prefix("GET /events?") {
            let query = target.split(' ').next().unwrap_or("");
            let topic = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("topic="))
                .unwrap_or("")
                .to_owned();
            let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\r\n";
            if stream.write_all(head.as_bytes()).is_ok() {
                let mut map = topics.lock().unwrap_or_else(|e| e.into_inner());
                map.entry(topic).or_default().push(stream);
            }
        } else if request_line.starts_with("POST /publish") {
            // A publisher keeps its connection: serve it on its own thread.
            let topics = Arc::clone(&topics);
            thread::spawn(move || {
                let mut next = Some((request_line, body));
                while let Some((_, body)) = next {
                    let n = publish(&topics, &body);
                    let reply = format!("{{\"delivered\":{n}}}");
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{reply}",
                        reply.len()
                    );
                    if stream.write_all(head.as_bytes()).is_err() {
                        return;
                    }
                    next = read_request(&mut reader);
                }
            });
        } else {
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn options_parse() {
        let o = Options::parse(&args(
            "compare --quick --only herald,nchan --scenarios s1,s3",
        ))
        .unwrap();
        assert!(o.quick && !o.report_only);
        assert_eq!(o.peers, [Peer::Herald, Peer::Nchan]);
        assert_eq!(o.scenarios, [Scenario::S1, Scenario::S3]);
        assert_eq!(
            o.command,
            "cargo xtask bench compare --quick --only herald,nchan --scenarios s1,s3"
        );
        assert!(Options::parse(&args("report")).unwrap().report_only);
        for bad in [
            "",
            "compare --only mercure",
            "compare --scenarios s7",
            "compare --only",
            "run",
        ] {
            assert!(Options::parse(&args(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn numbers() {
        let check = |v: Value, expect: &str| assert_eq!(num(&v), expect, "{v}");
        check(json!(0), "0");
        check(json!(999), "999");
        check(json!(1000), "1,000");
        check(json!(1234567), "1,234,567");
        check(json!(12.34), "12.3");
        check(json!(1.234), "1.23");
        check(json!(199596.4), "199,596");
        check(Value::Null, "?");
        assert_eq!(ms(&json!(1234)), "1.23");
        assert_eq!(ms(&json!(88_700)), "88.7");
        assert_eq!(ms(&json!(5_468_000)), "5468");
        assert_eq!(ratio(200.0, 100.0), "2.00×");
        assert_eq!(ratio(1.0, 0.0), "n/a");
        assert_eq!(ratio(f64::NAN, 1.0), "n/a");
    }

    /// S5: a server that resumed, one that could not, and the reasons listed below.
    #[test]
    fn storm_rows_are_rendered() {
        let run = |caught_up: Value, count: u64, lost: u64| {
            json!({"reports": {"run": {
                "subscribers": {"connected": 10, "requested": 10, "connect_s": 0.1},
                "deliveries": {"lost": lost, "duplicated": 0, "out_of_order": 0},
                "reconnect": {"reconnected": 10, "failed": 0, "failure_samples": [],
                              "all_caught_up_s": caught_up, "caught_up": count, "dropped": 10,
                              "catch_up_us": {"count": count, "p50": 1500, "p99": 2500},
                              "subscribers_with_loss": lost / 100, "most_lost_by_one": 100,
                              "listen_overflows": 0},
                "events": {"errors": 0, "unsent": 0},
                "limits": {"duration_limit_hit": false}
            }}})
        };
        let herald = run(json!(0.0025), 10, 0);
        let node = run(Value::Null, 0, 1000);
        let mut s = String::new();
        render_storm(&mut s, &[(Peer::Herald, &herald), (Peer::Node, &node)]).unwrap();
        assert!(
            s.contains("| Herald | 10 / 10 in 0.1 s | 10 / 0 | 0.00 s | 1.50 / 2.50 | 0 (100) | 0 / 0 / 0 |"),
            "{s}"
        );
        assert!(
            s.contains("| Node (Express) | 10 / 10 in 0.1 s | 10 / 0 | **no**: 0 of 10 within 15 s | none caught up | 10 (100) | 1,000 / 0 / 0 |"),
            "{s}"
        );
        assert!(s.contains("- Node (Express): cannot resume"), "{s}");
        assert!(
            s.contains("- Python (sse-starlette) (not run): cannot resume"),
            "{s}"
        );
        assert!(!s.contains("- Herald"), "{s}");
    }

    /// Ordering violations first, reversals by concurrent publishes apart; a result from
    /// before the split says it is unclassified.
    #[test]
    fn out_of_order_figures() {
        let table = [
            (
                json!({"out_of_order": 0, "out_of_order_concurrent": 0}),
                "0",
            ),
            (
                json!({"out_of_order": 0, "out_of_order_concurrent": 1000}),
                "0 (+1,000 concurrent)",
            ),
            (
                json!({"out_of_order": 3, "out_of_order_concurrent": 98765}),
                "3 (+98,765 concurrent)",
            ),
            (
                json!({"out_of_order": 2, "out_of_order_concurrent": 0}),
                "2",
            ),
            (json!({"out_of_order": 0}), "0"),
            (json!({"out_of_order": 1000}), "1,000 (unclassified)"),
        ];
        for (d, expect) in table {
            assert_eq!(out_of_order(&d), expect, "{d}");
        }
        let old = json!({"reports": {"run": {"deliveries": {"out_of_order": 5}}}});
        let new = json!({"reports": {"run": {"deliveries":
            {"out_of_order": 0, "out_of_order_concurrent": 5}}}});
        let idle = json!({"reports": {"idle": {"deliveries": null}}});
        assert!(unclassified(&old));
        assert!(!unclassified(&new));
        assert!(!unclassified(&idle));
    }

    /// S6 shows each configuration's ordering too.
    #[test]
    fn publish_rows_are_rendered() {
        let report = |concurrent: u64| {
            json!({
                "events": {"published_per_sec": 30000.0, "published": 20000, "requested": 20000,
                           "errors": 0},
                "deliveries": {"delivered": 20000, "lost": 0, "out_of_order": 0,
                               "out_of_order_concurrent": concurrent},
                "server": {"cpu_s": 1.5}
            })
        };
        let herald = json!({"reports": {
            "full-publishers-1": report(0),
            "full-publishers-64": report(4321),
        }});
        let mut s = String::new();
        render_publish(&mut s, &[(Peer::Herald, &herald)]).unwrap();
        assert!(
            s.contains(
                "| Herald | full | 1 | 30,000 | 20,000 / 20,000 | 0 | 20,000 / 0 / 0 | 1.50 |"
            ),
            "{s}"
        );
        assert!(
            s.contains(
                "| Herald | full | 64 | 30,000 | 20,000 / 20,000 | 0 | 20,000 / 0 / 0 (+4,321 concurrent) | 1.50 |"
            ),
            "{s}"
        );
    }

    /// A failed server gets a row that says so, next to one that ran.
    #[test]
    fn failed_rows_are_rendered() {
        let ok = json!({
            "reports": {"run": {
                "subscribers": {"connected": 10, "requested": 10, "failed": 0, "connect_s": 0.1},
                "deliveries": {"per_sec": 2000.0, "delivered": 20000, "lost": 0, "duplicated": 0,
                               "out_of_order": 0, "out_of_order_concurrent": 1200},
                "latency_us": {"from_send": {"p50": 500, "p99": 900, "p999": 1000},
                               "from_schedule": {"p50": 600, "p99": 1000, "p999": 1100}},
                "events": {"errors": 0, "unsent": 0},
                "publisher_lag_us": {"p99": 100},
                "server": {"rss_per_conn_bytes": 2048.0, "cpu_s_per_million": 3.0},
                "limits": {"duration_limit_hit": false}
            }},
            "trees": {}
        });
        let failed = json!({"reports": {}, "error": "nchan exited during start"});
        let mut s = String::new();
        render_run(
            &mut s,
            Scenario::S1,
            &[(Peer::Herald, &ok), (Peer::Nchan, &failed)],
        )
        .unwrap();
        assert!(
            s.contains(
                "| Herald | 10 / 10 in 0.1 s | 2,000 | 0.50 / 0.90 / 1.00 | 0.60 / 1.00 / 1.10 | 0 / 0 / 0 (+1,200 concurrent) |"
            ),
            "{s}"
        );
        assert!(
            s.contains("| Nchan | **failed**: nchan exited during start |"),
            "{s}"
        );
    }
}
