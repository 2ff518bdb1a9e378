//! Hostile subscribers: twenty anonymous connections, each asking for 64 of the costliest
//! URI templates the selector limits allow, must not stall publishes or `/healthz`, nor
//! grow the server's memory without bound; their cost is refused or paid by them.

use std::time::Duration;

use futures::future::join_all;
use reqwest::StatusCode;
use tokio::time::{Instant, sleep};

use crate::support::TestServer;

const CONNECTIONS: usize = 20;
const TEMPLATES: usize = 64;
/// What a publish or a health check may take while the hostile subscribers arrive and stay:
/// generous for a debug server on a busy machine; without selector budgets it takes seconds.
const LATENCY_BOUND: Duration = Duration::from_secs(1);
/// Allowed growth of the server's resident set.
const RSS_BOUND_KIB: u64 = 64 * 1024;

/// Template `n` of connection `c`: one query expression with the most variables the
/// selector limits allow, each exploded (the costliest shape to compile and to hold; see
/// `herald-hub`'s `hostile` example, whose names are longer: an exploded variable matches
/// any key, so its name changes nothing of the regex, and short names keep the 64 templates
/// of one request within the longest URL a client sends).
fn hostile(c: usize, n: usize) -> String {
    let names: Vec<String> = (0..64).map(|v| format!("c{c}n{n}v{v}*")).collect();
    format!("{{?{}}}", names.join(","))
}

/// The slowest of a publish and a health check, done one after the other.
async fn probe(server: &TestServer, n: usize) -> Duration {
    let started = Instant::now();
    server
        .publish(&[
            (
                "topic",
                "https://example.com/books/12345/reviews/67890?page=2&size=50",
            ),
            ("data", &format!("normal {n}")),
        ])
        .await;
    let published = started.elapsed();
    let started = Instant::now();
    let health = server
        .http
        .get(format!("{}/healthz", server.url()))
        .send()
        .await
        .expect("GET /healthz");
    assert_eq!(health.status(), StatusCode::OK);
    published.max(started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn costly_templates_neither_stall_others_nor_grow_memory() {
    let server = TestServer::with_args(&["--anonymous"]).await;
    probe(&server, 0).await;
    let rss_before = server.memory_kib("VmRSS");

    let hostile_subscribers = join_all((0..CONNECTIONS).map(|c| {
        let mut request = server.subscribe();
        for n in 0..TEMPLATES {
            request = request.topic(&hostile(c, n));
        }
        async move {
            match request.try_open().await {
                // Held open, unread, until the probes are done.
                Ok(sse) => (StatusCode::OK, Some(sse)),
                Err((status, _)) => (status, None),
            }
        }
    }));
    let probes = async {
        let mut slowest = Duration::ZERO;
        for n in 1..=20 {
            slowest = slowest.max(probe(&server, n).await);
            sleep(Duration::from_millis(100)).await;
        }
        slowest
    };
    let (hostile_subscribers, slowest_while_arriving) = tokio::join!(hostile_subscribers, probes);
    let mut slowest_while_open = Duration::ZERO;
    for n in 21..=40 {
        slowest_while_open = slowest_while_open.max(probe(&server, n).await);
    }
    let rss_after = server.memory_kib("VmRSS");
    let statuses: Vec<StatusCode> = hostile_subscribers.iter().map(|(s, _)| *s).collect();
    eprintln!(
        "hostile subscribers answered {statuses:?}; slowest probe {slowest_while_arriving:?} \
         while they arrived, {slowest_while_open:?} with them open; VmRSS {rss_before} KiB -> \
         {rss_after} KiB"
    );
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::OK || *s == StatusCode::BAD_REQUEST),
        "{statuses:?}"
    );
    assert!(
        slowest_while_arriving < LATENCY_BOUND,
        "a probe took {slowest_while_arriving:?} while hostile subscribers arrived"
    );
    assert!(
        slowest_while_open < LATENCY_BOUND,
        "a probe took {slowest_while_open:?} with hostile subscribers open"
    );
    assert!(
        rss_after < rss_before + RSS_BOUND_KIB,
        "VmRSS grew from {rss_before} KiB to {rss_after} KiB"
    );
}

#[tokio::test]
async fn a_subscription_over_its_selector_budget_is_refused_and_an_ordinary_one_is_not() {
    let server = TestServer::with_args(&["--anonymous"]).await;
    let mut costly = server.subscribe();
    for n in 0..TEMPLATES {
        costly = costly.topic(&hostile(0, n));
    }
    let error = costly.error().await;
    assert_eq!(error.status, 400);
    assert_eq!(error.code, "bad_request");
    assert!(
        error.message.contains("too costly"),
        "unexpected message: {}",
        error.message
    );

    // As many everyday templates as a subscription may have fit in the budget.
    let mut ordinary = server.subscribe();
    for n in 0..TEMPLATES {
        ordinary = ordinary.topic(&format!(
            "https://example.com/tenants/{n}/books/{{id}}/reviews{{/rid}}{{?page,size}}"
        ));
    }
    let mut sse = ordinary.open().await;
    server
        .publish(&[
            (
                "topic",
                "https://example.com/tenants/63/books/7/reviews/3?page=1",
            ),
            ("data", "seen"),
        ])
        .await;
    assert_eq!(sse.next_message().await.data, "seen");
}

/// Twenty clients that resume from the start of a log of large updates and never read
/// hold at most a page of their replay each, not the whole replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_read_pin_a_page_each_not_their_replay() {
    const UPDATES: usize = 60;
    const SIZE: usize = 256 * 1024;
    let server = TestServer::with_args(&["--anonymous"]).await;
    let data = "x".repeat(SIZE);
    for n in 0..UPDATES {
        server
            .publish(&[("topic", "https://example.com/big"), ("data", &data)])
            .await;
        if n == 0 {
            // Warm up the replay path once, so its one-time allocations are not counted.
            let mut sse = server
                .subscribe()
                .topic("*")
                .query("lastEventID", "earliest")
                .open()
                .await;
            sse.next_message().await;
        }
    }
    let rss_before = server.memory_kib("VmRSS");
    let mut streams = Vec::new();
    for _ in 0..CONNECTIONS {
        streams.push(
            crate::support::RawStream::get(
                server.addr(),
                "/.well-known/mercure?topic=*&lastEventID=earliest",
                &[],
                4096,
            )
            .await,
        );
    }
    // Every stream has started its replay: the first page of each was read and queued.
    server
        .wait_metric(
            "herald_replayed_updates_total",
            crate::support::ITEM_TIMEOUT,
            |v| v >= (1 + CONNECTIONS) as f64,
        )
        .await;
    sleep(Duration::from_millis(500)).await;
    let rss_after = server.memory_kib("VmRSS");
    eprintln!(
        "{CONNECTIONS} never-reading replays of {UPDATES} x {SIZE} bytes: VmRSS {rss_before} KiB \
         -> {rss_after} KiB"
    );
    // The whole replay is 15 MiB per client, 300 MiB for all of them.
    assert!(
        rss_after < rss_before + RSS_BOUND_KIB,
        "VmRSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    drop(streams);
}
