//! Integration tests: the bench against the real `herald` binary, against a
//! small in-test server that does not chunk its streams (as Nchan and
//! Pushpin may not), and against a closed port.
//!
//! Small and bounded: tens of subscribers, hundreds of events, no speed
//! assertions.

mod mini;

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Mutex, OnceLock},
    time::Duration,
};

use clap::Parser as _;
use herald_bench::{IdleArgs, Report, RunArgs};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

/// The key the test server verifies tokens with.
const KEY: &str = "herald-bench-integration-key-0123456789";

/// How long the server may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The `herald` binary of this build profile: `target/<profile>/herald`,
/// next to the `deps/` folder this test runs from. Built once with the
/// same cargo and profile if it is not there (a `cargo test -p
/// herald-bench` does not build other packages' binaries).
fn herald_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    static BUILD: Mutex<()> = Mutex::new(());
    BIN.get_or_init(|| {
        let _once = BUILD.lock().unwrap_or_else(|e| e.into_inner());
        let exe = std::env::current_exe().expect("the test's own path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("tests run from target/<profile>/deps");
        let bin = profile_dir.join(format!("herald{}", std::env::consts::EXE_SUFFIX));
        if !bin.exists() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
            let profile = profile_dir
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("debug");
            let mut build = std::process::Command::new(cargo);
            build.args(["build", "-p", "herald", "--bin", "herald"]);
            match profile {
                "debug" => {}
                "release" => {
                    build.arg("--release");
                }
                other => {
                    build.args(["--profile", other]);
                }
            }
            let status = build.status().expect("run cargo build -p herald");
            assert!(status.success(), "cargo build -p herald failed");
            assert!(
                bin.exists(),
                "cargo build -p herald did not produce {}",
                bin.display()
            );
        }
        bin
    })
    .clone()
}

/// A `herald serve` on a free loopback port, killed when dropped.
struct Herald {
    child: Child,
    addr: String,
    _data_dir: tempfile::TempDir,
}

impl Herald {
    async fn start() -> Self {
        Self::start_with(&[], &[]).await
    }

    /// A server with more environment and arguments.
    async fn start_with(env: &[(&str, &str)], args: &[&str]) -> Self {
        let bin = herald_bin();
        let data_dir = tempfile::tempdir().expect("temporary data directory");
        let mut child = Command::new(&bin)
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--jwt-key", KEY, "--anonymous"])
            .args(["--durability", "normal"])
            .args(args)
            .arg("--data-dir")
            .arg(data_dir.path())
            .envs(env.iter().copied())
            .env("HERALD_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn herald serve");
        // The first line on stdout names the bound address.
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let line = tokio::time::timeout(START_TIMEOUT, lines.next_line())
            .await
            .expect("herald printed its address in time")
            .expect("read herald's stdout")
            .expect("herald printed a line");
        let addr = line
            .strip_prefix("Herald hub at http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .split(['/', ' '])
            .next()
            .expect("an address")
            .to_owned();
        // Keep draining stdout so the server never blocks on it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            child,
            addr,
            _data_dir: data_dir,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id().expect("herald is running")
    }

    fn hub(&self) -> String {
        format!("http://{}/.well-known/mercure", self.addr)
    }

    /// A publisher JWT, minted by `herald token`.
    async fn publisher_token(&self) -> String {
        let out = Command::new(herald_bin())
            .args(["token", "--publish", "*", "--jwt-key", KEY])
            .output()
            .await
            .expect("run herald token");
        assert!(out.status.success(), "herald token failed: {out:?}");
        String::from_utf8(out.stdout)
            .expect("UTF-8 token")
            .trim()
            .to_owned()
    }
}

fn print(report: &Report) {
    eprintln!("{}", report.summary());
    eprintln!("{}", serde_json::to_string_pretty(report).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_run_loses_nothing() {
    let herald = Herald::start().await;
    let token = herald.publisher_token().await;
    let sub_url = format!("{}?topic=bench-{{topic}}", herald.hub());
    let pid = herald.pid().to_string();
    let args = RunArgs::parse_from([
        "run",
        "--sub-url",
        &sub_url,
        "--pub-url",
        &herald.hub(),
        "--token",
        &token,
        "--subscribers",
        "20",
        "--topics",
        "2",
        "--source-ips",
        "3",
        "--events",
        "200",
        "--rate",
        "500",
        "--payload-bytes",
        "200",
        "--settle",
        "200ms",
        "--drain",
        "10s",
        "--duration-limit",
        "60s",
        "--server-pid",
        &pid,
    ]);
    let report = herald_bench::run(args).await.expect("the run completes");
    print(&report);
    let subs = &report.subscribers;
    assert_eq!((subs.connected, subs.failed), (20, 0), "{subs:?}");
    assert_eq!(
        (subs.protocol, subs.connections),
        ("http/1.1", 20),
        "{subs:?}"
    );
    assert_eq!(subs.ended_early, 0, "{subs:?}");
    let events = report.events.as_ref().unwrap();
    assert_eq!((events.published, events.errors), (200, 0), "{events:?}");
    let d = report.deliveries.as_ref().unwrap();
    // 10 subscribers on each topic, 100 events on each topic.
    assert_eq!(d.expected, 2_000);
    assert_eq!(d.delivered, d.expected, "{d:?}");
    assert_eq!(
        (d.lost, d.duplicated, d.out_of_order, d.unexpected),
        (0, 0, 0, 0),
        "{d:?}"
    );
    let latency = report.latency_us.as_ref().unwrap();
    assert_eq!(latency.from_send.count, 2_000);
    assert_eq!(latency.from_schedule.count, 2_000);
    let server = report.server.as_ref().unwrap();
    assert!(server.rss_before.is_some_and(|b| b > 0), "{server:?}");
    assert!(server.cpu_s.is_some(), "{server:?}");
    assert!(!report.limits.duration_limit_hit);
}

/// `--http2`: 24 subscribers as HTTP/2 streams, 8 to a connection, on Herald's plain port
/// (prior knowledge); every delivery is counted as over HTTP/1.
/// `app`: the setup through the REST API, the members' app streams, todos at a fixed rate:
/// every todo reaches exactly the streams of its workspace's members, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_app_delivers_each_change_to_its_members_streams() {
    let (email, password) = ("admin@bench.example", "bench-admin-password");
    let herald = Herald::start_with(
        &[
            ("HERALD_ADMIN_EMAIL", email),
            ("HERALD_ADMIN_PASSWORD", password),
        ],
        &[
            "--app-change-rate",
            "0",
            "--workspace-change-rate",
            "0",
            "--login-ip-rate",
            "0",
        ],
    )
    .await;
    let node = format!("http://{}", herald.addr);
    let pid = herald.pid().to_string();
    let args = herald_bench::AppArgs::parse_from([
        "app",
        "--nodes",
        &node,
        "--admin-email",
        email,
        "--admin-password",
        password,
        "--users",
        "3",
        "--workspaces",
        "2",
        "--members",
        "2",
        "--events",
        "40",
        "--rate",
        "100",
        "--publishers",
        "4",
        "--settle",
        "200ms",
        "--drain",
        "10s",
        "--duration-limit",
        "60s",
        "--server-pid",
        &pid,
    ]);
    let report = herald_bench::app(args)
        .await
        .expect("the app run completes");
    print(&report);
    assert_eq!(report.mode, "app");
    let subs = &report.subscribers;
    assert_eq!(
        (subs.connected, subs.failed, subs.ended_early),
        (4, 0, 0),
        "{subs:?}"
    );
    let events = report.events.as_ref().unwrap();
    assert_eq!((events.published, events.errors), (40, 0), "{events:?}");
    let d = report.deliveries.as_ref().unwrap();
    // Each todo reaches the 2 streams of its workspace, and no other.
    assert_eq!(d.expected, 80, "{d:?}");
    assert_eq!(
        (
            d.delivered,
            d.lost,
            d.duplicated,
            d.out_of_order,
            d.unexpected
        ),
        (80, 0, 0, 0, 0),
        "{d:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_run_over_http2_streams() {
    let herald = Herald::start().await;
    let token = herald.publisher_token().await;
    let sub_url = format!("{}?topic=bench-{{topic}}", herald.hub());
    let pid = herald.pid().to_string();
    let args = RunArgs::parse_from([
        "run",
        "--http2",
        "--streams-per-connection",
        "8",
        "--sub-url",
        &sub_url,
        "--pub-url",
        &herald.hub(),
        "--token",
        &token,
        "--subscribers",
        "24",
        "--topics",
        "2",
        "--source-ips",
        "2",
        "--events",
        "100",
        "--rate",
        "500",
        "--settle",
        "200ms",
        "--drain",
        "10s",
        "--duration-limit",
        "60s",
        "--server-pid",
        &pid,
    ]);
    let report = herald_bench::run(args).await.expect("the run completes");
    print(&report);
    let subs = &report.subscribers;
    assert_eq!(
        (subs.protocol, subs.streams_per_connection, subs.connections),
        ("h2c", 8, 3),
        "{subs:?}"
    );
    assert_eq!((subs.connected, subs.failed, subs.ended_early), (24, 0, 0));
    let d = report.deliveries.as_ref().unwrap();
    // 12 subscribers on each topic, 50 events on each topic.
    assert_eq!((d.expected, d.delivered), (1_200, 1_200), "{d:?}");
    assert_eq!(
        (d.lost, d.duplicated, d.out_of_order, d.unexpected),
        (0, 0, 0, 0),
        "{d:?}"
    );
    assert_eq!(report.latency_us.as_ref().unwrap().from_send.count, 1_200);
}

/// `idle --http2`: the streams stay open, and the connections are shared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_idle_over_http2_streams() {
    let herald = Herald::start().await;
    let sub_url = format!("{}?topic=bench-{{i}}", herald.hub());
    let args = IdleArgs::parse_from([
        "idle",
        "--http2",
        "--streams-per-connection",
        "10",
        "--sub-url",
        &sub_url,
        "--subscribers",
        "25",
        "--hold",
        "200ms",
    ]);
    let report = herald_bench::idle(args).await.expect("the run completes");
    print(&report);
    let subs = &report.subscribers;
    assert_eq!((subs.connected, subs.open_at_end), (25, 25), "{subs:?}");
    assert_eq!(subs.connections, 3, "{subs:?}");
}

/// S5 in small: every subscriber drops after 20 events, 30 are published while they are
/// away, and Herald replays them after `Last-Event-ID`: nothing lost, nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_reconnect_storm_resumes() {
    let herald = Herald::start().await;
    let token = herald.publisher_token().await;
    let sub_url = format!("{}?topic=bench-{{topic}}", herald.hub());
    let args = RunArgs::parse_from([
        "run",
        "--sub-url",
        &sub_url,
        "--pub-url",
        &herald.hub(),
        "--token",
        &token,
        "--subscribers",
        "20",
        "--topics",
        "2",
        "--events",
        "70",
        "--rate",
        "200",
        "--reconnect-after",
        "20",
        "--missed",
        "30",
        "--settle",
        "200ms",
        "--drain",
        "10s",
        "--catch-up-limit",
        "10s",
        "--duration-limit",
        "60s",
    ]);
    let report = herald_bench::run(args).await.expect("the run completes");
    print(&report);
    let r = report.reconnect.as_ref().unwrap();
    assert_eq!((r.after_event, r.missed, r.boundary), (20, 30, 50), "{r:?}");
    assert_eq!((r.dropped, r.reconnected, r.failed), (20, 20, 0), "{r:?}");
    assert_eq!((r.without_id, r.caught_up), (0, 20), "{r:?}");
    assert!(r.all_caught_up_s.is_some(), "{r:?}");
    assert_eq!(report.subscribers.ended_early, 0);
    let d = report.deliveries.as_ref().unwrap();
    // 10 subscribers on each topic, 35 events on each topic.
    assert_eq!((d.expected, d.delivered), (700, 700), "{d:?}");
    assert_eq!((d.lost, d.duplicated, d.out_of_order), (0, 0, 0), "{d:?}");
    assert_eq!(
        (r.subscribers_with_loss, r.subscribers_with_duplicates),
        (0, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_idle_holds_connections() {
    let herald = Herald::start().await;
    let sub_url = format!("{}?topic=bench-{{i}}", herald.hub());
    let pid = herald.pid().to_string();
    let args = IdleArgs::parse_from([
        "idle",
        "--sub-url",
        &sub_url,
        "--subscribers",
        "30",
        "--index-offset",
        "1000",
        "--hold",
        "300ms",
        "--server-pid",
        &pid,
    ]);
    let report = herald_bench::idle(args).await.expect("the run completes");
    print(&report);
    assert_eq!(report.subscribers.connected, 30);
    assert_eq!(report.subscribers.open_at_end, 30);
    assert_eq!(report.subscribers.index_offset, 1000);
    let server = report.server.as_ref().unwrap();
    assert!(server.rss_per_conn_bytes.is_some(), "{server:?}");
}

/// A server that streams without chunking and takes plain JSON publishes:
/// the identity-body path and the `json` publish kind, end to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_stream_and_json_publish() {
    let server = mini::Server::start().await;
    let args = json_run(
        &server,
        &[
            "--subscribers",
            "12",
            "--topics",
            "3",
            "--events",
            "90",
            "--publishers",
            "2",
        ],
    );
    let report = herald_bench::run(args).await.expect("the run completes");
    print(&report);
    assert_eq!(report.subscribers.connected, 12);
    let d = report.deliveries.as_ref().unwrap();
    assert_eq!(d.expected, 12 * 30);
    assert_eq!(
        (d.delivered, d.lost, d.duplicated, d.unexpected),
        (360, 0, 0, 0),
        "{d:?}"
    );
    // It fans out before it answers: whatever the two publishers overlap, it breaks no
    // order it owed.
    assert_eq!(d.out_of_order, 0, "{d:?}");
    // Each stream opens with a non-payload `connected` event.
    assert_eq!(d.ignored_messages, 12);
}

/// Unthrottled, from 16 publishers at once: events overtake each other on the way to
/// Herald, which may order them either way, but never against an acknowledged publish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_concurrent_publishes_break_no_order() {
    let herald = Herald::start().await;
    let token = herald.publisher_token().await;
    let sub_url = format!("{}?topic=bench-{{topic}}", herald.hub());
    let args = RunArgs::parse_from([
        "run",
        "--sub-url",
        &sub_url,
        "--pub-url",
        &herald.hub(),
        "--token",
        &token,
        "--subscribers",
        "4",
        "--source-ips",
        "2",
        "--events",
        "600",
        "--rate",
        "0",
        "--publishers",
        "16",
        "--settle",
        "200ms",
        "--drain",
        "10s",
        "--duration-limit",
        "60s",
    ]);
    let report = herald_bench::run(args).await.expect("the run completes");
    print(&report);
    let events = report.events.as_ref().unwrap();
    assert_eq!((events.published, events.errors), (600, 0), "{events:?}");
    let d = report.deliveries.as_ref().unwrap();
    assert_eq!((d.expected, d.delivered), (2_400, 2_400), "{d:?}");
    assert_eq!((d.lost, d.duplicated, d.out_of_order), (0, 0, 0), "{d:?}");
    assert!(d.out_of_order_samples.is_empty(), "{d:?}");
}

/// A server that delivers every other event after the next one, though it acknowledged
/// it before the next one was even sent (one publisher): every such delivery is an
/// ordering violation, none is put down to concurrency.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_reorders_is_caught() {
    let server = mini::Server::start_swapping().await;
    let args = json_run(&server, &["--subscribers", "3", "--events", "40"]);
    let report = herald_bench::run(args).await.expect("the run completes");
    print(&report);
    let d = report.deliveries.as_ref().unwrap();
    assert_eq!((d.delivered, d.lost, d.duplicated), (120, 0, 0), "{d:?}");
    // Events 0, 2, ..., 38, each to 3 subscribers.
    assert_eq!(
        (d.out_of_order, d.out_of_order_concurrent),
        (60, 0),
        "{d:?}"
    );
    assert_eq!(
        d.out_of_order_samples,
        [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]],
        "{d:?}"
    );
}

#[tokio::test]
async fn refused_connections_are_counted() {
    // A port nobody listens on: bind, note it, close.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let args = IdleArgs::parse_from([
        "idle",
        "--sub-url",
        &format!("http://127.0.0.1:{port}/sse"),
        "--subscribers",
        "5",
        "--hold",
        "10ms",
    ]);
    let report = herald_bench::idle(args).await.expect("the run completes");
    let subs = &report.subscribers;
    assert_eq!(
        (subs.connected, subs.failed, subs.refused),
        (0, 5, 5),
        "{subs:?}"
    );
}

#[test]
fn non_loopback_targets_are_refused() {
    for url in [
        "http://10.1.2.3:8080/.well-known/mercure",
        "http://example.com/",
    ] {
        let args = RunArgs::parse_from(["run", "--sub-url", url]);
        assert!(herald_bench::check_run(&args).is_err(), "{url}");
        let args = RunArgs::parse_from(["run", "--pub-url", url]);
        assert!(herald_bench::check_run(&args).is_err(), "{url}");
    }
    let args = RunArgs::parse_from([
        "run",
        "--pub-url",
        "http://127.0.0.{topic}:1/",
        "--topics",
        "300",
    ]);
    assert!(herald_bench::check_run(&args).is_err());
}

/// A run against a mini server: subscribers on `/sse`, JSON publishes to `/publish` at
/// 1,000/s, then `extra`.
fn json_run(server: &mini::Server, extra: &[&str]) -> RunArgs {
    let sub_url = format!("http://{}/sse?topic=bench-{{topic}}", server.addr);
    let pub_url = format!("http://{}/publish", server.addr);
    let mut args = vec![
        "run",
        "--sub-url",
        &sub_url,
        "--pub-url",
        &pub_url,
        "--publish-kind",
        "json",
        "--rate",
        "1000",
        "--settle",
        "100ms",
        "--drain",
        "10s",
    ];
    args.extend_from_slice(extra);
    RunArgs::parse_from(args)
}
