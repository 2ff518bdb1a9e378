//! `cargo xtask bench app`: the app's write path, for one or two `herald` binaries side by
//! side, alternating, in one run.
//!
//! For each round, setup (one node on SQLite; clusters of 1-3 nodes on a shared PostgreSQL
//! and Redis) and measurement, every binary in turn on fresh data: start the nodes pinned
//! to CPU 0 (PostgreSQL and Redis there too), measure from CPU 1, stop them by PID.
//!
//! - `wrkN`: Debian's `wrk` with N connections and `bench/app_post.lua`: the admin creates
//!   todos in one workspace as fast as the server answers (changes/s, POST latency, non-2xx
//!   answers, server CPU per change: every node, PostgreSQL and Redis).
//! - `fanout`: `herald-bench app`: members' `/api/events` streams, one per membership, and
//!   todos created at a fixed open-loop rate over many workspaces (change-to-event latency
//!   on the other users' streams, lost, duplicated, out of order).
//!
//! Raw results go to `<target>/bench-results/app/{full,quick}/<time>.json`; the table goes to
//! stdout.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::{
    cluster::{ADMIN_EMAIL, ADMIN_PASSWORD, Backend, Nodes, Postgres, Redis, admin_workspace},
    harness::{run_bench, utc_now},
    procs::{Stolen, Tree},
};
use crate::{Step, install_packages, target_dir};

pub(super) const USAGE: &str = "\
Usage: cargo xtask bench app [--bin NAME=PATH]... [--rounds N] [--quick]
                             [--setups single,c1,c2,c3] [--measures wrk1,wrk8,wrk64,fanout]
                             [--rate R]

  Measures the app's write path of each binary, alternating binaries within each round:
  wrk (1, 8, 64 connections) creating todos as the admin, and `herald-bench app` (members'
  streams, todos at a fixed rate, change-to-event latency, loss). `single` is one node on
  SQLite; cN is N nodes sharing PostgreSQL and Redis. Servers run on CPU 0, the load on
  CPU 1. Prints a table with each binary's numbers and, with two binaries, second/first.

  --bin       a herald binary to measure, as NAME=PATH (repeatable; default: the current
              tree's release build, as `current`); the ratio is the last over the first
  --rounds    rounds of every measurement (default 2)
  --quick     short runs and 100 streams instead of 1,000: to try it out
  --setups    which setups (default: all)
  --measures  which measurements (default: all)
  --rate      the fanout's changes per second (default 1000; quick 200)";

/// A topology of nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Setup {
    /// One node, SQLite.
    Single,
    /// N nodes on PostgreSQL and Redis.
    Cluster(usize),
}

impl Setup {
    const ALL: [Setup; 4] = [
        Setup::Single,
        Setup::Cluster(1),
        Setup::Cluster(2),
        Setup::Cluster(3),
    ];

    fn parse(s: &str) -> Result<Setup> {
        Setup::ALL
            .into_iter()
            .find(|x| x.id() == s.trim())
            .with_context(|| format!("unknown setup `{s}` (single, c1, c2, c3)"))
    }

    fn id(self) -> String {
        match self {
            Setup::Single => "single".into(),
            Setup::Cluster(n) => format!("c{n}"),
        }
    }

    fn title(self) -> String {
        match self {
            Setup::Single => "1 node, SQLite".into(),
            Setup::Cluster(1) => "cluster of 1 (PostgreSQL + Redis)".into(),
            Setup::Cluster(n) => format!("cluster of {n} (PostgreSQL + Redis)"),
        }
    }

    fn nodes(self) -> usize {
        match self {
            Setup::Single => 1,
            Setup::Cluster(n) => n,
        }
    }
}

/// A measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Measure {
    /// wrk with this many connections.
    Wrk(u32),
    /// herald-bench app.
    Fanout,
}

impl Measure {
    const ALL: [Measure; 4] = [
        Measure::Wrk(1),
        Measure::Wrk(8),
        Measure::Wrk(64),
        Measure::Fanout,
    ];

    fn parse(s: &str) -> Result<Measure> {
        Measure::ALL
            .into_iter()
            .find(|x| x.id() == s.trim())
            .with_context(|| format!("unknown measurement `{s}` (wrk1, wrk8, wrk64, fanout)"))
    }

    fn id(self) -> String {
        match self {
            Measure::Wrk(c) => format!("wrk{c}"),
            Measure::Fanout => "fanout".into(),
        }
    }
}

/// `cargo xtask bench app` options.
#[derive(Debug)]
struct Options {
    /// `None`: build and measure the current tree.
    bins: Option<Vec<(String, PathBuf)>>,
    rounds: u32,
    quick: bool,
    setups: Vec<Setup>,
    measures: Vec<Measure>,
    rate: Option<f64>,
    command: String,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options> {
        let mut options = Options {
            bins: None,
            rounds: 2,
            quick: false,
            setups: Setup::ALL.to_vec(),
            measures: Measure::ALL.to_vec(),
            rate: None,
            command: "cargo xtask bench app".into(),
        };
        let mut args = args.iter();
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
                    continue;
                }
                "--bin" => {
                    let v = value("--bin")?;
                    let (name, path) = v
                        .split_once('=')
                        .with_context(|| format!("--bin takes NAME=PATH, not `{v}`"))?;
                    if name.is_empty() || options.bins.iter().flatten().any(|(n, _)| n == name) {
                        bail!("--bin names must be unique and not empty: `{v}`");
                    }
                    options
                        .bins
                        .get_or_insert_with(Vec::new)
                        .push((name.to_owned(), PathBuf::from(path)));
                    options.command.push_str(&format!(" --bin {v}"));
                }
                "--rounds" => {
                    let v = value("--rounds")?;
                    options.rounds =
                        v.parse().ok().filter(|&n| n >= 1).with_context(|| {
                            format!("--rounds takes a positive number, not `{v}`")
                        })?;
                    options.command.push_str(&format!(" --rounds {v}"));
                }
                "--setups" => {
                    let v = value("--setups")?;
                    options.setups = v.split(',').map(Setup::parse).collect::<Result<_>>()?;
                    options.command.push_str(&format!(" --setups {v}"));
                }
                "--measures" => {
                    let v = value("--measures")?;
                    options.measures = v.split(',').map(Measure::parse).collect::<Result<_>>()?;
                    options.command.push_str(&format!(" --measures {v}"));
                }
                "--rate" => {
                    let v = value("--rate")?;
                    options.rate = Some(
                        v.parse()
                            .ok()
                            .filter(|r: &f64| r.is_finite() && *r > 0.0)
                            .with_context(|| {
                                format!("--rate takes a positive number, not `{v}`")
                            })?,
                    );
                    options.command.push_str(&format!(" --rate {v}"));
                }
                "help" | "-h" | "--help" => bail!("{USAGE}"),
                other => bail!("unexpected argument `{other}`\n\n{USAGE}"),
            }
        }
        Ok(options)
    }
}

/// The sizes of the runs.
struct Sizes {
    wrk_seconds: u32,
    users: u64,
    workspaces: u64,
    members: u64,
    rate: f64,
    fanout_seconds: f64,
}

impl Sizes {
    fn of(options: &Options) -> Sizes {
        if options.quick {
            Sizes {
                wrk_seconds: 3,
                users: 20,
                workspaces: 20,
                members: 5,
                rate: options.rate.unwrap_or(200.0),
                fanout_seconds: 3.0,
            }
        } else {
            Sizes {
                wrk_seconds: 10,
                users: 100,
                workspaces: 100,
                members: 10,
                rate: options.rate.unwrap_or(1000.0),
                fanout_seconds: 5.0,
            }
        }
    }
}

/// One measurement of one binary.
#[derive(Debug, Serialize)]
struct Record {
    round: u32,
    setup: String,
    measure: String,
    bin: String,
    /// What it measured, in the table's order.
    values: Vec<(String, f64)>,
    /// The load generator's command line.
    command: String,
    /// The first node's command line.
    server_command: String,
    error: Option<String>,
    /// The load generator's own result: wrk's RESULT line, or herald-bench's report.
    raw: serde_json::Value,
}

pub(super) fn main(root: &Path, args: &[String]) -> Result<()> {
    let options = Options::parse(args)?;
    let total = Step::start(&options.command);
    install_packages(&[("/usr/bin/wrk", "wrk"), ("/usr/bin/taskset", "util-linux")])?;
    let target = target_dir(root);
    let release = target.join("release");
    let bins = match &options.bins {
        Some(bins) => {
            crate::cargo(
                root,
                &["build", "--release", "--locked", "-p", "herald-bench"],
            )?;
            for (name, path) in bins {
                if !path.is_file() {
                    bail!("--bin {name}={}: no such file", path.display());
                }
            }
            bins.clone()
        }
        None => {
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
            )?;
            vec![("current".to_owned(), release.join("herald"))]
        }
    };
    let bench = release.join("herald-bench");
    let sizes = Sizes::of(&options);
    let run_root = target.join("bench-run").join("app");
    let results = target
        .join("bench-results")
        .join("app")
        .join(if options.quick { "quick" } else { "full" });
    fs::create_dir_all(&results)?;
    let clusters = options
        .setups
        .iter()
        .any(|s| matches!(s, Setup::Cluster(_)));
    let services = if clusters {
        let step = Step::start("start PostgreSQL and Redis (CPU 0)");
        let pg = Postgres::start(&run_root.join("postgres"))?;
        let redis = Redis::start(&run_root.join("redis"))?;
        step.done();
        Some((pg, redis))
    } else {
        None
    };
    let ctx = Ctx {
        root,
        bench: &bench,
        run_root: &run_root,
        sizes: &sizes,
        services: services.as_ref(),
        clk_tck: herald_bench::procstat::clock_ticks_per_second() as f64,
    };
    let started = utc_now();
    let mut records = Vec::new();
    let mut serial = 0;
    for round in 1..=options.rounds {
        for &setup in &options.setups {
            for &measure in &options.measures {
                for (name, bin) in &bins {
                    serial += 1;
                    let step = Step::start(&format!(
                        "round {round}: {} {} on {name}",
                        setup.id(),
                        measure.id()
                    ));
                    let record = ctx.measure(round, setup, measure, name, bin, serial);
                    match &record.error {
                        Some(error) => println!("FAILED: {error}"),
                        None => println!("{}", one_line(&record.values)),
                    }
                    records.push(record);
                    step.done();
                }
            }
        }
    }
    drop(services);
    let path = results.join(format!("{}.json", started.replace([' ', ':'], "-")));
    let stored = serde_json::json!({
        "command": options.command,
        "started": started,
        "bins": bins.iter().map(|(n, p)| (n.clone(), p.display().to_string())).collect::<BTreeMap<_, _>>(),
        "records": records,
    });
    fs::write(&path, serde_json::to_string_pretty(&stored)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!("raw results: {}", path.display());
    println!();
    println!("{}", table(&options, &bins, &records));
    total.done();
    Ok(())
}

/// What every measurement needs.
struct Ctx<'a> {
    root: &'a Path,
    bench: &'a Path,
    run_root: &'a Path,
    sizes: &'a Sizes,
    services: Option<&'a (Postgres, Redis)>,
    clk_tck: f64,
}

impl Ctx<'_> {
    fn measure(
        &self,
        round: u32,
        setup: Setup,
        measure: Measure,
        name: &str,
        bin: &Path,
        serial: u32,
    ) -> Record {
        let mut record = Record {
            round,
            setup: setup.id(),
            measure: measure.id(),
            bin: name.to_owned(),
            values: Vec::new(),
            command: String::new(),
            server_command: String::new(),
            error: None,
            raw: serde_json::Value::Null,
        };
        if let Err(error) = self.measure_inner(setup, measure, bin, serial, &mut record) {
            record.error = Some(format!("{error:#}"));
        }
        record
    }

    fn measure_inner(
        &self,
        setup: Setup,
        measure: Measure,
        bin: &Path,
        serial: u32,
        record: &mut Record,
    ) -> Result<()> {
        let database = format!("bench_app_{serial}");
        let backend = match (setup, self.services) {
            (Setup::Single, _) => Backend::Sqlite,
            (Setup::Cluster(_), Some((pg, redis))) => Backend::Cluster {
                database_url: pg.database(&database)?,
                redis,
                prefix: format!("bench{serial}"),
            },
            (Setup::Cluster(_), None) => bail!("no PostgreSQL and Redis were started"),
        };
        let dir = self.run_root.join("nodes");
        let result = Nodes::start(bin, setup.nodes(), &backend, &dir).and_then(|nodes| {
            record.server_command = nodes.command.clone();
            let result = match measure {
                Measure::Wrk(connections) => self.wrk(&nodes, connections, record),
                Measure::Fanout => self.fanout(&nodes, record),
            };
            nodes.stop();
            result
        });
        if let (Backend::Cluster { .. }, Some((pg, redis))) = (&backend, self.services) {
            pg.drop_database(&database);
            redis.flush();
        }
        result
    }

    /// Roots of every server process: the nodes, and PostgreSQL and Redis when in use.
    fn server_roots(&self, nodes: &Nodes) -> Vec<u32> {
        let mut roots = nodes.pids();
        if nodes.clustered
            && let Some((pg, redis)) = self.services
        {
            roots.extend([pg.proc.pid(), redis.proc.pid()]);
        }
        roots
    }

    fn wrk(&self, nodes: &Nodes, connections: u32, record: &mut Record) -> Result<()> {
        let (cookie, ws) = admin_workspace(nodes.ports[0])?;
        // One wrk thread per node, each with its share of the connections (wrk gives every
        // thread connections / threads).
        let threads = (nodes.ports.len() as u32).min(connections);
        let used = connections / threads * threads;
        let ports: Vec<String> = nodes.ports.iter().map(u16::to_string).collect();
        let seconds = self.sizes.wrk_seconds;
        let args = [
            "-c".to_owned(),
            "1".into(),
            "wrk".into(),
            "-t".into(),
            threads.to_string(),
            "-c".into(),
            used.to_string(),
            "-d".into(),
            format!("{seconds}s"),
            "--timeout".into(),
            "30s".into(),
            "-s".into(),
            "bench/app_post.lua".into(),
            format!("http://127.0.0.1:{}", nodes.ports[0]),
        ];
        record.command = format!(
            "HERALD_BENCH_WS=<ws> HERALD_BENCH_COOKIE=<admin session> HERALD_BENCH_PORTS={} taskset {}",
            ports.join(","),
            args.join(" ")
        );
        let mut cmd = Command::new("taskset");
        cmd.args(&args)
            .current_dir(self.root)
            .env("HERALD_BENCH_WS", &ws)
            .env("HERALD_BENCH_COOKIE", &cookie)
            .env("HERALD_BENCH_PORTS", ports.join(","));
        let tree = Tree::sample(self.server_roots(nodes), self.clk_tck);
        let stolen = Stolen::start();
        let out = cmd.output().context("cannot run wrk under taskset")?;
        let stolen = stolen.percent();
        let sample = tree.finish();
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "wrk failed ({}): {}{}",
                out.status,
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix("RESULT "))
            .with_context(|| format!("wrk printed no RESULT line: {}", stdout.trim()))?;
        let raw: serde_json::Value = serde_json::from_str(line).context("wrk's RESULT line")?;
        let get = |key: &str| raw[key].as_f64().unwrap_or(f64::NAN);
        let requests = get("requests");
        let seconds = get("duration_us") / 1e6;
        let errors = get("non2xx") + get("socket_errors");
        let changes = requests - get("non2xx");
        let mut values = vec![
            ("connections".to_owned(), f64::from(used)),
            ("changes/s".to_owned(), changes / seconds),
            ("POST p50 ms".to_owned(), get("p50_us") / 1000.0),
            ("POST p99 ms".to_owned(), get("p99_us") / 1000.0),
            ("errors (non-2xx, socket)".to_owned(), errors),
        ];
        if let Some(cpu) = sample.map(|s| s.cpu_s).filter(|_| changes > 0.0) {
            values.push((
                "server CPU ms per change".to_owned(),
                cpu * 1000.0 / changes,
            ));
        }
        values.extend(stolen.map(|p| (STOLEN.to_owned(), p)));
        record.values = values;
        record.raw = raw;
        Ok(())
    }

    fn fanout(&self, nodes: &Nodes, record: &mut Record) -> Result<()> {
        let s = self.sizes;
        let events = (s.rate * s.fanout_seconds).round() as u64;
        let args: Vec<String> = [
            "--nodes",
            &nodes.urls().join(","),
            "--admin-email",
            ADMIN_EMAIL,
            "--users",
            &s.users.to_string(),
            "--workspaces",
            &s.workspaces.to_string(),
            "--members",
            &s.members.to_string(),
            "--events",
            &events.to_string(),
            "--rate",
            &s.rate.to_string(),
            "--publishers",
            "64",
            "--drain",
            "30s",
            "--server-pid",
            &nodes.pids()[0].to_string(),
            "--duration-limit",
            "240s",
        ]
        .iter()
        .map(|a| (*a).to_owned())
        .collect();
        let mut full = vec![
            "-c".to_owned(),
            "1".into(),
            self.bench.to_string_lossy().into_owned(),
            "--threads".into(),
            "1".into(),
            "app".into(),
        ];
        full.extend(args.iter().cloned());
        record.command = format!("HERALD_BENCH_ADMIN_PASSWORD=… taskset {}", full.join(" "));
        let mut cmd = Command::new("taskset");
        cmd.args(&full)
            .current_dir(self.root)
            .env("HERALD_BENCH_ADMIN_PASSWORD", ADMIN_PASSWORD);
        let log = self.run_root.join("fanout.log");
        let stolen = Stolen::start();
        let report = run_bench(cmd, &log, &args)?;
        let stolen = stolen.percent();
        let d = report.deliveries.clone().unwrap_or_default();
        let e = report.events.clone().unwrap_or_default();
        let l = report.latency_us.clone().unwrap_or_default();
        let ms = |us: u64| us as f64 / 1000.0;
        let mut values = vec![
            ("streams".to_owned(), report.subscribers.connected as f64),
            ("changes/s offered".to_owned(), s.rate),
            ("changes/s acknowledged".to_owned(), e.published_per_sec),
            ("change → event p50 ms".to_owned(), ms(l.from_send.p50)),
            ("change → event p99 ms".to_owned(), ms(l.from_send.p99)),
            ("from schedule p99 ms".to_owned(), ms(l.from_schedule.p99)),
            ("deliveries/s".to_owned(), d.per_sec),
            ("lost".to_owned(), d.lost as f64),
            ("duplicated".to_owned(), d.duplicated as f64),
            ("out of order".to_owned(), d.out_of_order as f64),
            ("write errors".to_owned(), e.errors as f64),
        ];
        if let Some(cpu) = report
            .server
            .as_ref()
            .and_then(|s| s.cpu_s)
            .filter(|_| e.published > 0)
        {
            values.push((
                "node 1 CPU ms per change".to_owned(),
                cpu * 1000.0 / e.published as f64,
            ));
        }
        values.extend(stolen.map(|p| (STOLEN.to_owned(), p)));
        if d.expected == 0 || report.subscribers.failed > 0 {
            record.error = Some(format!(
                "{} of {} streams failed; {} deliveries expected",
                report.subscribers.failed, report.subscribers.requested, d.expected
            ));
        }
        record.values = values;
        record.raw = serde_json::to_value(&report)?;
        Ok(())
    }
}

/// The metric of [`Stolen`]: the share of CPU 0's time the host gave to other guests.
const STOLEN: &str = "CPU 0 stolen %";

/// `name value, …` for the progress output.
fn one_line(values: &[(String, f64)]) -> String {
    values
        .iter()
        .map(|(k, v)| format!("{k} {}", number(*v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A number as the table shows it: three significant digits, integers with separators.
fn number(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    if v.abs() >= 100.0 || v.fract() == 0.0 {
        let n = v.round() as i64;
        let digits = n.unsigned_abs().to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        if n < 0 { format!("-{out}") } else { out }
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Counts, whose ratio means nothing: the table shows their sum.
fn is_count(metric: &str) -> bool {
    matches!(
        metric,
        "lost" | "duplicated" | "out of order" | "write errors" | "errors (non-2xx, socket)"
    )
}

/// What describes the machine during a run rather than Herald: no ratio.
fn is_context(metric: &str) -> bool {
    metric == STOLEN
}

/// What a run was given rather than measured: the table shows it once.
fn is_setting(metric: &str) -> bool {
    matches!(metric, "connections" | "streams" | "changes/s offered")
}

/// The markdown table: one row per setup, measurement and metric; per binary, every
/// round's value and the mean (or, for counts, the sum); with two binaries or more, the
/// last's mean over the first's.
fn table(options: &Options, bins: &[(String, PathBuf)], records: &[Record]) -> String {
    let names: Vec<&str> = bins.iter().map(|(n, _)| n.as_str()).collect();
    let mut out = String::new();
    out.push_str(&format!(
        "`{}`\n\n| setup | measure | metric |",
        options.command
    ));
    for name in &names {
        out.push_str(&format!(" {name} |"));
    }
    let ratio = names.len() > 1;
    if ratio {
        out.push_str(&format!(" {} / {} |", names[names.len() - 1], names[0]));
    }
    out.push_str("\n|---|---|---|");
    for _ in &names {
        out.push_str("---|");
    }
    if ratio {
        out.push_str("---|");
    }
    out.push('\n');
    for &setup in &options.setups {
        for &measure in &options.measures {
            let of = |bin: &str| -> Vec<&Record> {
                records
                    .iter()
                    .filter(|r| r.setup == setup.id() && r.measure == measure.id() && r.bin == bin)
                    .collect()
            };
            let mut metrics: Vec<&str> = Vec::new();
            for r in records
                .iter()
                .filter(|r| r.setup == setup.id() && r.measure == measure.id())
            {
                for (k, _) in &r.values {
                    if !metrics.contains(&k.as_str()) {
                        metrics.push(k);
                    }
                }
            }
            for name in &names {
                for r in of(name) {
                    if let Some(error) = &r.error {
                        out.push_str(&format!(
                            "| {} | {} | FAILED (round {}) | {name}: {} |\n",
                            setup.title(),
                            measure.id(),
                            r.round,
                            error.replace('|', "/")
                        ));
                    }
                }
            }
            for metric in metrics {
                let mut row = format!("| {} | {} | {metric} |", setup.title(), measure.id());
                let mut means = Vec::new();
                for name in &names {
                    let values: Vec<f64> = of(name)
                        .iter()
                        .filter_map(|r| r.values.iter().find(|(k, _)| k == metric).map(|v| v.1))
                        .collect();
                    let summary = if is_count(metric) {
                        values.iter().sum::<f64>()
                    } else {
                        values.iter().sum::<f64>() / values.len().max(1) as f64
                    };
                    means.push(summary);
                    let mut each: Vec<String> = values.iter().map(|v| number(*v)).collect();
                    if is_setting(metric) {
                        each.dedup();
                        row.push_str(&format!(" {} |", each.join(", ")));
                    } else if values.len() > 1 {
                        let how = if is_count(metric) { "sum" } else { "mean" };
                        row.push_str(&format!(
                            " {} ({how} {}) |",
                            each.join(", "),
                            number(summary)
                        ));
                    } else {
                        row.push_str(&format!(" {} |", each.join(", ")));
                    }
                }
                if ratio {
                    let (first, last) = (means[0], means[means.len() - 1]);
                    if is_count(metric)
                        || is_setting(metric)
                        || is_context(metric)
                        || first == 0.0
                        || !first.is_finite()
                    {
                        row.push_str(" |");
                    } else {
                        row.push_str(&format!(" {:.2}× |", last / first));
                    }
                }
                out.push_str(&row);
                out.push('\n');
            }
        }
    }
    out
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
            "--bin before=/a --bin after=/b --rounds 3 --quick --setups single,c2 --measures wrk8,fanout --rate 500",
        ))
        .unwrap();
        assert_eq!(
            o.bins.unwrap(),
            [
                ("before".to_owned(), PathBuf::from("/a")),
                ("after".to_owned(), PathBuf::from("/b"))
            ]
        );
        assert_eq!((o.rounds, o.quick, o.rate), (3, true, Some(500.0)));
        assert_eq!(o.setups, [Setup::Single, Setup::Cluster(2)]);
        assert_eq!(o.measures, [Measure::Wrk(8), Measure::Fanout]);
        let o = Options::parse(&[]).unwrap();
        assert!(o.bins.is_none());
        assert_eq!((o.rounds, o.setups.len(), o.measures.len()), (2, 4, 4));
        for bad in [
            "--bin x",
            "--bin a=/x --bin a=/y",
            "--rounds 0",
            "--setups c4",
            "--measures wrk2",
            "--rate -1",
            "--rounds",
            "compare",
        ] {
            assert!(Options::parse(&args(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn numbers() {
        for (v, want) in [
            (0.0, "0"),
            (3.0, "3"),
            (1.234, "1.23"),
            (12.34, "12.3"),
            (353.4, "353"),
            (12345.6, "12,346"),
            (-1500.0, "-1,500"),
            (f64::NAN, "–"),
        ] {
            assert_eq!(number(v), want, "{v}");
        }
    }

    #[test]
    fn the_table_shows_each_round_the_mean_and_the_ratio() {
        let record = |bin: &str, round, rate, lost| Record {
            round,
            setup: "single".into(),
            measure: "wrk8".into(),
            bin: bin.into(),
            values: vec![
                ("connections".into(), 8.0),
                ("changes/s".into(), rate),
                ("lost".into(), lost),
                (STOLEN.into(), lost * 2.0),
            ],
            command: String::new(),
            server_command: String::new(),
            error: None,
            raw: serde_json::Value::Null,
        };
        let records = [
            record("before", 1, 400.0, 0.0),
            record("after", 1, 800.0, 1.0),
            record("before", 2, 600.0, 0.0),
            record("after", 2, 1200.0, 2.0),
        ];
        let options = Options::parse(&args("--setups single --measures wrk8")).unwrap();
        let bins = [
            ("before".to_owned(), PathBuf::new()),
            ("after".to_owned(), PathBuf::new()),
        ];
        let table = table(&options, &bins, &records);
        assert!(
            table.contains(
                "| 1 node, SQLite | wrk8 | changes/s | 400, 600 (mean 500) | 800, 1,200 (mean 1,000) | 2.00× |"
            ),
            "{table}"
        );
        assert!(
            table.contains("| 1 node, SQLite | wrk8 | lost | 0, 0 (sum 0) | 1, 2 (sum 3) | |"),
            "{table}"
        );
        assert!(
            table.contains("| 1 node, SQLite | wrk8 | connections | 8 | 8 | |"),
            "{table}"
        );
        // The host's steal is a mean, and no ratio: it describes the machine, not a build.
        assert!(
            table.contains(
                "| 1 node, SQLite | wrk8 | CPU 0 stolen % | 0, 0 (mean 0) | 2, 4 (mean 3) | |"
            ),
            "{table}"
        );
    }
}
