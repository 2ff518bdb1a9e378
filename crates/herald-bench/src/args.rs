//! The command line: `herald-bench run` and `herald-bench idle`.

use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

/// Load generator for Herald and other SSE hubs (loopback only).
#[derive(Debug, Parser)]
#[command(name = "herald-bench", version, about)]
pub struct Cli {
    /// Worker threads of the bench's runtime (0: one per available CPU).
    #[arg(long, global = true, default_value_t = 0)]
    pub threads: usize,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Connect subscribers, publish events at a fixed rate, measure deliveries; print one
    /// JSON result (last line of stdout) and a summary (stderr).
    Run(RunArgs),
    /// Connect subscribers and hold them idle, measuring the server's memory.
    Idle(IdleArgs),
    /// The app's write path: set up members and workspaces through the REST API, open one
    /// `/api/events` stream per membership, create todos at a fixed rate as the admin,
    /// measure each change's delivery to every member's stream.
    App(crate::app::AppArgs),
}

/// How subscribers connect; shared by `run` and `idle`.
#[derive(Clone, Debug, clap::Args)]
pub struct SubscribeArgs {
    /// SSE connections to open.
    #[arg(long, default_value_t = 100)]
    pub subscribers: u64,
    /// Subscribe URL; `{topic}` is the subscriber's index modulo --topics, `{i}` its index.
    #[arg(
        long,
        default_value = "http://127.0.0.1:8080/.well-known/mercure?topic=bench-{topic}"
    )]
    pub sub_url: String,
    /// Number of topics; event k goes to topic k % topics, subscriber i listens on i % topics.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub topics: u64,
    /// Spread connections over source addresses 127.0.0.1 ... 127.0.0.N (max 254), so
    /// more than one address's ephemeral ports (and per-IP limits) can be used.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=254))]
    pub source_ips: u8,
    /// Index of this process's first subscriber, for running several bench processes
    /// side by side: the second of two takes --index-offset N.
    #[arg(long, default_value_t = 0)]
    pub index_offset: u64,
    /// Send `Authorization: Bearer <token>` with each subscription.
    #[arg(long)]
    pub sub_token: Option<String>,
    /// Send `Last-Event-ID` with each subscription.
    #[arg(long)]
    pub last_event_id: Option<String>,
    /// Connection attempts in flight at once.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub connect_concurrency: u64,
    /// Time allowed for one connection to be answered with its response head.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,
    /// Subscribe over HTTP/2 with prior knowledge (h2c: cleartext, no upgrade), each
    /// subscriber a stream; connections are shared by --streams-per-connection subscribers.
    #[arg(long)]
    pub http2: bool,
    /// With --http2: subscribers multiplexed over one connection, each on its own stream.
    #[arg(
        long,
        default_value_t = 1,
        requires = "http2",
        value_parser = clap::value_parser!(u64).range(1..=crate::h2c::MAX_STREAMS_PER_CONNECTION)
    )]
    pub streams_per_connection: u64,
    /// Process id of the server, to read its RSS and CPU time from /proc.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Hard limit on the whole run.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub duration_limit: Duration,
    /// `app` mode: the world its setup made; the subscribers are the members' app streams,
    /// the publishes are todos.
    #[arg(skip)]
    pub app: Option<std::sync::Arc<crate::app::World>>,
}

/// `herald-bench run`.
#[derive(Clone, Debug, Parser)]
pub struct RunArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub sub: SubscribeArgs,
    /// Publish URL; `{topic}` is replaced (e.g. for Nchan: http://127.0.0.1:8081/pub?id=bench-{topic}).
    #[arg(long, default_value = "http://127.0.0.1:8080/.well-known/mercure")]
    pub pub_url: String,
    /// Topic (or channel) name published to; `{topic}` is the event's topic index.
    #[arg(long, default_value = "bench-{topic}")]
    pub pub_topic: String,
    /// The publish request's shape.
    #[arg(long, value_enum, default_value_t = PublishKind::Mercure)]
    pub publish_kind: PublishKind,
    /// Publisher JWT, sent as `Authorization: Bearer` (mercure kind; any kind if given).
    #[arg(long, env = "HERALD_BENCH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Events to publish.
    #[arg(long, default_value_t = 1000)]
    pub events: u64,
    /// Events per second, on an open-loop schedule (0: as fast as the publishers go).
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Concurrent publishing tasks (each holds at most one request in flight).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub publishers: u64,
    /// Pad each payload to about this many bytes.
    #[arg(long, default_value_t = 0)]
    pub payload_bytes: usize,
    /// Pause between the last subscriber connecting and the first publish.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub settle: Duration,
    /// After the last publish, wait at most this long for deliveries.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub drain: Duration,
    /// Time allowed for one publish request.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub publish_timeout: Duration,
    /// Reconnect storm: once events 0..K are published and delivered (or --drain passed),
    /// every subscriber closes its stream at once; --missed more events are published while
    /// they are away; then all reconnect with `Last-Event-ID` (the `id` of the last event
    /// each received) while the rest of --events is published.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..))]
    pub reconnect_after: Option<u64>,
    /// Events published while the subscribers are disconnected (with --reconnect-after).
    #[arg(
        long,
        value_name = "M",
        default_value_t = 0,
        requires = "reconnect_after"
    )]
    pub missed: u64,
    /// With --reconnect-after: how long the reconnected subscribers get to catch up.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub catch_up_limit: Duration,
}

/// `herald-bench idle`.
#[derive(Clone, Debug, Parser)]
pub struct IdleArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub sub: SubscribeArgs,
    /// How long to hold the connections before measuring.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub hold: Duration,
}

/// The shape of a publish request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PublishKind {
    /// Mercure: form `topic=<pub-topic>&data=<payload>`, with the bearer token.
    Mercure,
    /// Nchan publisher location: the raw payload, `{topic}` in the URL.
    Nchan,
    /// Pushpin publish API: `{"items":[{"channel":..,"formats":{"http-stream":..}}]}`.
    Pushpin,
    /// Plain JSON `{"topic":..,"data":..}` (small reference servers).
    Json,
}
