//! `herald-bench`: a load generator for Herald and other SSE hubs, for this
//! machine's loopback only.
//!
//! `run` opens N SSE subscribers over raw TCP sockets, publishes M events at
//! R per second on an open-loop schedule through one of several publish
//! APIs (Mercure, Nchan, Pushpin, plain JSON), and measures every delivery:
//! latency from send and from schedule (HDR histograms), loss, duplicates,
//! reordering (told apart from the reversals that concurrent publishes may
//! cause), the publisher's lag, and the server's RSS and CPU time from
//! `/proc`. `idle` holds N connections to measure memory per connection.
//! `--http2` subscribes over HTTP/2 with prior knowledge (h2c), with
//! `--streams-per-connection` subscribers multiplexed on each connection.
//! `run --reconnect-after K --missed M` is a reconnect storm: every subscriber
//! drops after event K, M events are published while they are away, and all
//! reconnect with `Last-Event-ID`; the report says how long until all had
//! caught up, and what each lost or got twice.
//! `app` measures Herald's app instead: it sets up members and workspaces through the
//! REST API, opens the members' `/api/events` streams, and creates todos on the open-loop
//! schedule, each todo's title a payload (see `app.rs`).
//! Each prints one JSON [`Report`].
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use clap::Parser as _;
//! let args = herald_bench::RunArgs::parse_from([
//!     "run", "--subscribers", "100", "--events", "200", "--rate", "100",
//!     "--token", "<publisher JWT>",
//! ]);
//! let report = herald_bench::run(args).await?;
//! assert_eq!(report.deliveries.unwrap().lost, 0);
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - `args.rs`: the command line ([`Cli`], [`RunArgs`], [`IdleArgs`]).
//! - `app.rs`: `app`: the setup through the REST API and the app's streams and writes.
//! - `run.rs`: the phases of a run ([`run()`], [`idle()`]) and the fd budget.
//! - `subscriber.rs`: one subscriber: connect from a source address, write
//!   the request, read the head and the stream.
//! - `h2c.rs`: `--http2`: connections shared by HTTP/2 streams, flow-control windows.
//! - `http.rs`: the request, the response head parser and body framing
//!   (chunked, length, until close).
//! - `tally.rs`: the payload, per-subscriber accounting, latency histograms.
//! - `reversal.rs`: events delivered after a later one, and the rule that
//!   tells an ordering violation from concurrent publishes.
//! - `publisher.rs`: the open-loop publisher and the publish request kinds.
//! - `procstat.rs`: the server's RSS and CPU time from `/proc`.
//! - `target.rs`: URL templates, parsing, and the loopback-only guard.
//! - `report.rs`: the JSON result and its summary.
//!
//! # Clocks
//!
//! Payload timestamps are wall-clock (`SystemTime`) nanoseconds, so that
//! the publishing and subscribing processes (or several bench processes)
//! compare them directly; schedules and timeouts use the monotonic
//! `tokio::time::Instant`.

pub mod app;
pub mod args;
pub mod h2c;
pub mod http;
pub mod procstat;
pub mod publisher;
pub mod report;
pub mod reversal;
pub mod run;
pub mod subscriber;
pub mod tally;
pub mod target;

pub use app::{AppArgs, app, check_app};
pub use args::{Cli, Command, IdleArgs, PublishKind, RunArgs, SubscribeArgs};
pub use report::Report;
pub use run::{check_idle, check_run, idle, run};

/// Wall-clock time in ns since the Unix epoch (0 if the clock is before
/// it).
pub fn wall_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
