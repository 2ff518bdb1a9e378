//! The `herald-bench` binary: parses the command line, runs, prints the
//! JSON result on stdout and a summary on stderr.

use std::process::ExitCode;

use clap::Parser as _;
use herald_bench::{Cli, Command};

/// Exit status for bad arguments (`EX_USAGE`).
const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let checked = match &cli.command {
        Command::Run(args) => herald_bench::check_run(args),
        Command::Idle(args) => herald_bench::check_idle(args),
        Command::App(args) => herald_bench::check_app(args),
    };
    if let Err(e) = checked {
        eprintln!("error: {e:#}");
        return ExitCode::from(EXIT_USAGE);
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if cli.threads > 0 {
        builder.worker_threads(cli.threads);
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => herald_bench::run(args).await,
            Command::Idle(args) => herald_bench::idle(args).await,
            Command::App(args) => herald_bench::app(args).await,
        }
    });
    // Subscriber tasks are stopped by now; do not wait on anything left.
    runtime.shutdown_background();
    match result {
        Ok(report) => {
            eprintln!("{}", report.summary());
            match serde_json::to_string(&report) {
                Ok(json) => {
                    println!("{json}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: cannot serialize the report: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
