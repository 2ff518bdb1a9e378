//! Publish latency while hostile subscribers are open: `connections` subscriptions, each with
//! `templates` of the costliest URI templates a client may send (distinct per connection, so
//! the hub cannot share their compiled form), against a hub on a real SQLite log.
//!
//! ```text
//! cargo run --release -p herald-hub --example hostile -- [connections] [templates] [publishes]
//! ```
//!
//! Defaults: 20 connections × 64 templates, 500 publishes. One publisher publishes a normal
//! update (one topic, no subscriber of its own) every 2 ms, first while the hostile
//! subscriptions are being opened, then with them all open; the latency of each publish
//! (from the call to its acknowledgement, which comes after fan-out) is reported as p50, p99
//! and max for each phase, with the subscriptions refused and the growth of the resident set.

use std::{sync::Arc, time::Duration};

use futures::{FutureExt, StreamExt};
use herald_hub::{Durability, Hub, HubConfig, Matcher, SqliteLog, SubscribeRequest, Update};
use tokio::time::Instant;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// The normal publisher's topic: a URL whose start every hostile template could expand to,
/// so no literal prefix rules them out.
const TOPIC: &str = "https://example.com/books/12345/reviews/67890?page=2&size=50";

/// One hostile template, number `n` of connection `c`: one query expression with the most
/// variables the selector limits allow (64), each exploded and with a long name, close to
/// the 2,048-byte limit. Of the shapes tried (reserved expansions between literals, plain
/// and exploded query and path expressions) it is the costliest to compile and to hold.
fn hostile(c: usize, n: usize) -> String {
    let names: Vec<String> = (0..64)
        .map(|v| format!("{:_<26}*", format!("c{c}_n{n}_v{v}")))
        .collect();
    format!("{{?{}}}", names.join(","))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().strip_suffix("kB"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

async fn publish_every(hub: &Hub, count: usize, every: Duration) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(count);
    let mut ticks = tokio::time::interval(every);
    for i in 0..count {
        ticks.tick().await;
        let update = Update {
            topics: vec![TOPIC.into()],
            data: format!("normal {i}"),
            ..Update::default()
        };
        let started = Instant::now();
        hub.publish(update).await.expect("publish");
        latencies.push(started.elapsed());
    }
    latencies.sort();
    latencies
}

fn report(phase: &str, latencies: &[Duration]) {
    println!(
        "{phase}: publishes {} p50 {:.3} ms p99 {:.3} ms max {:.3} ms",
        latencies.len(),
        percentile(latencies, 0.50).as_secs_f64() * 1e3,
        percentile(latencies, 0.99).as_secs_f64() * 1e3,
        percentile(latencies, 1.0).as_secs_f64() * 1e3,
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numeric arguments"))
        .collect();
    let connections = args.first().copied().unwrap_or(20);
    let templates = args.get(1).copied().unwrap_or(64);
    let publishes = args.get(2).copied().unwrap_or(500);

    // One template alone: what compiling and matching it costs.
    let started = Instant::now();
    let selector = herald_hub::selector::Selector::parse(&hostile(0, 0));
    let compiled = started.elapsed();
    match selector {
        Ok(selector) => {
            let started = Instant::now();
            let rounds = 200;
            for _ in 0..rounds {
                assert!(!selector.matches(std::hint::black_box(TOPIC)));
            }
            println!(
                "one hostile template ({} bytes, cost {}): compiled in {:.3} ms, matched in {:.1} us",
                hostile(0, 0).len(),
                selector.cost(),
                compiled.as_secs_f64() * 1e3,
                started.elapsed().as_secs_f64() * 1e6 / f64::from(rounds),
            );
        }
        Err(error) => println!("one hostile template: refused in {compiled:?}: {error}"),
    }

    let dir = tempfile::tempdir().expect("temporary directory");
    let log = SqliteLog::open(&dir.path().join("log.db"), Durability::Normal)
        .await
        .expect("open the log");
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    let config = HubConfig {
        heartbeat: None,
        ..HubConfig::default()
    };
    let hub = Hub::start(config, Arc::new(log), &tracker, shutdown.clone())
        .await
        .expect("start the hub");

    // Warm up the log and the publisher's path.
    publish_every(&hub, 50, Duration::from_millis(1)).await;
    let baseline = publish_every(&hub, publishes, Duration::from_millis(2)).await;
    report("no hostile subscribers", &baseline);

    let rss_before = rss_kib();
    let opened = Instant::now();
    let openers: Vec<_> = (0..connections)
        .map(|c| {
            let hub = hub.clone();
            tokio::spawn(async move {
                let request = SubscribeRequest {
                    topics: (0..templates)
                        .map(|n| Matcher::template(hostile(c, n)))
                        .collect(),
                    ..SubscribeRequest::default()
                };
                let result = hub.subscribe(request).await;
                (result, Instant::now())
            })
        })
        .collect();
    let during = publish_every(&hub, publishes, Duration::from_millis(2)).await;
    let mut streams = Vec::new();
    let mut refused = Vec::new();
    let mut last_open = opened;
    for opener in openers {
        let (result, at) = opener.await.expect("subscribe task");
        last_open = last_open.max(at);
        match result {
            Ok(subscription) => streams.push(subscription),
            Err(error) => refused.push(error.to_string()),
        }
    }
    report("while hostile subscriptions open", &during);
    let open = publish_every(&hub, publishes, Duration::from_millis(2)).await;
    report("hostile subscriptions open", &open);
    // Drain what the hostile streams hold, so none was cut off for not reading.
    for stream in &mut streams {
        while let Some(Some(_)) = stream.next().now_or_never() {}
    }
    println!(
        "hostile subscriptions: {} accepted, {} refused{}; all answered after {:.1} ms; \
         VmRSS {} KiB -> {} KiB ({:+} KiB)",
        streams.len(),
        refused.len(),
        refused
            .first()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default(),
        (last_open - opened).as_secs_f64() * 1e3,
        rss_before,
        rss_kib(),
        rss_kib() as i64 - rss_before as i64,
    );
    drop(streams);
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
}
