//! `cargo xtask bench compare`: Herald side by side with Nchan, Pushpin, an Express server,
//! an sse-starlette server and a raw write loop (the ceiling), on this machine, in one run.
//!
//! For each scenario and each server, one after another: start the server on loopback pinned
//! to CPU 0 (`taskset -c 0`), wait until it answers, run `herald-bench` pinned to CPU 1 with
//! `--server-pid`, keep its JSON result, stop the server by PID and wait for it to exit. A
//! server still running when something fails is stopped by [`Server`](peers::Server)'s `Drop`.
//!
//! # Layout
//!
//! - `mod.rs`: the command line ([`Options`]), the dispatch, and the smoke run of
//!   `cargo xtask test`.
//! - `peers.rs`: [`Peer`], the servers; [`Server`](peers::Server), one running, with its
//!   URLs and how to stop it; installing what they need.
//! - `scenarios.rs`: [`Scenario`], S1-S6 (BENCHMARKS.md says what each measures) plus
//!   S1-max, and the `herald-bench` runs each one makes.
//! - `harness.rs`: [`Harness`] runs `herald-bench` against a server and
//!   reads each report into herald-bench's own [`herald_bench::Report`].
//! - `outcome.rs`: [`Outcome`], one server's result in one scenario, as
//!   stored under `target/bench-results/` and read back for rendering.
//! - `procs.rs`: [`Tree`](procs::Tree), RSS and CPU of a server's whole process tree
//!   (Pushpin runs five processes), and the other `/proc` lookups: descendants, names,
//!   liveness.
//! - `render.rs`: BENCHMARKS.md from the stored outcomes, and the figures' formatting;
//!   `tables.rs`: the table of each kind of scenario.
//! - `plot.rs`: the SVG plot BENCHMARKS.md shows.
//! - `raw.rs`: the raw limit, run as `cargo xtask bench raw-server --port N`.
//! - `app.rs`: `cargo xtask bench app`, the app's write path for one or two `herald`
//!   binaries, alternating; `cluster.rs`: the nodes, PostgreSQL and Redis it runs against.

// xtask has no async runtime; std's Instant only times the steps and the server start.
#![allow(clippy::disallowed_types)]

mod app;
mod cluster;
mod harness;
mod outcome;
mod peers;
mod plot;
mod procs;
mod raw;
mod render;
mod scenarios;
mod tables;

use std::{fs, path::Path};

use anyhow::{Context, Result, bail};

use crate::{Step, target_dir};
use harness::{Harness, run_one};
use outcome::Outcome;
use peers::Peer;
use plot::plot;
use raw::raw_server;
use render::render;
use scenarios::Scenario;

pub(crate) const USAGE: &str = "\
Usage: cargo xtask bench compare [--quick] [--only herald,nchan,pushpin,node,python,raw]
                                 [--scenarios s1,s1max,s2,s3,s4,s5,s6]
       cargo xtask bench report [--quick]
       cargo xtask bench app [--bin NAME=PATH]... [--rounds N] [--quick] (`bench app help`)

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
        let outcome = Outcome::parse(&text)?;
        if let Some(error) = &outcome.error {
            bail!("smoke run {scenario}: {error}");
        }
        let Some(d) = outcome
            .reports
            .get("run")
            .and_then(|r| r.deliveries.as_ref())
        else {
            bail!("smoke run {scenario} reported no deliveries");
        };
        // A report's counts default to zero when absent, so "nothing expected" must fail
        // rather than pass as "nothing lost".
        if d.expected > 0
            && d.expected == d.delivered
            && d.lost == 0
            && d.duplicated == 0
            && d.out_of_order == 0
        {
            println!(
                "smoke {scenario}: {} of {} delivered, none lost, duplicated or out of order \
                 ({} reversals by concurrent publishes)",
                d.delivered, d.expected, d.out_of_order_concurrent
            );
        } else {
            bail!(
                "smoke run {scenario} lost, duplicated or misordered deliveries: {}",
                serde_json::to_string(d)?
            );
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
    if args.first().map(String::as_str) == Some("app") {
        return app::main(root, &args[1..]);
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
}
