//! Leak check: a thousand streams opened and dropped leave no subscriber, stream, task or
//! significant memory behind.

use std::time::Duration;

use futures::future::join_all;
use herald_sse::Item;

use crate::support::{ITEM_TIMEOUT, TestServer};

const T: &str = "https://example.com/churn";
const BATCH: usize = 50;
/// Allowed growth of the resident set over the 1,000 cycles.
const RSS_BOUND_KIB: u64 = 16 * 1024;
/// Allowed difference in live runtime tasks (scrape connections come and go).
const TASK_SLACK: f64 = 4.0;

/// Opens `count` streams, `BATCH` at a time; each reads its first bytes and is dropped.
/// A third resume from the oldest update and a third from an unknown id, so replays and
/// resets churn too.
async fn cycles(server: &TestServer, count: usize) {
    for batch in 0..count / BATCH {
        let streams = (0..BATCH).map(|i| {
            let request = server.subscribe().topic(T);
            let request = match i % 3 {
                0 => request,
                1 => request.query("lastEventID", "earliest"),
                _ => request.last_event_id("unknown"),
            };
            async move {
                let mut sse = request.open().await;
                assert_eq!(sse.next_item().await, Some(Item::Retry(3000)));
            }
        });
        join_all(streams).await;
        if batch % 5 == 0 {
            server.publish(&[("topic", T), ("data", "churn")]).await;
        }
    }
}

async fn settled(server: &TestServer) {
    for name in ["herald_subscribers", "herald_streams_open"] {
        server.wait_metric(name, ITEM_TIMEOUT, |v| v == 0.0).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_streams_leave_nothing_behind() {
    let server = TestServer::with_args(&["--anonymous"]).await;
    for n in 0..3 {
        server
            .publish(&[("topic", T), ("data", &format!("seed {n}"))])
            .await;
    }
    cycles(&server, 100).await;
    settled(&server).await;
    let tasks_before = server
        .wait_metric("herald_runtime_alive_tasks", ITEM_TIMEOUT, |_| true)
        .await;
    let rss_before = server.memory_kib("VmRSS");

    cycles(&server, 1000).await;
    settled(&server).await;
    // Connection tasks end shortly after their stream; poll rather than sleep.
    let tasks_after = server
        .wait_metric("herald_runtime_alive_tasks", Duration::from_secs(10), |v| {
            v <= tasks_before + TASK_SLACK
        })
        .await;
    let rss_after = server.memory_kib("VmRSS");
    let connections = server.metric("herald_connections_open").await;
    eprintln!(
        "leak check: runtime tasks {tasks_before} -> {tasks_after}; \
         VmRSS {rss_before} KiB -> {rss_after} KiB ({:+} KiB); connections open {connections}",
        rss_after as i64 - rss_before as i64
    );
    assert!(
        rss_after < rss_before + RSS_BOUND_KIB,
        "VmRSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    // The scrape's connection and the few the test client keeps alive, not the streams'.
    assert!(connections < 8.0, "{connections} connections still open");
    let resets_per_batch = (0..BATCH).filter(|i| i % 3 == 2).count();
    assert_eq!(
        server.metric("herald_resets_total").await,
        (1100 / BATCH * resets_per_batch) as f64
    );
}
