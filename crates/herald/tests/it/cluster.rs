//! Clustering: several `herald serve --redis-url …` nodes, each with its own data directory
//! and the same JWT key, share one event log through a real Redis. Every node fans out every
//! update in the same order under the same id; a client resumes on any node by
//! `Last-Event-ID` with no gap and no duplicate, also after its node was killed; while Redis
//! is down publishes are refused (503) and `/readyz` says so, open streams stay up, and all
//! of it recovers when Redis returns, without restarting Herald.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use herald_sse::{Item, Message};
use reqwest::StatusCode;
use tokio::time::{Instant, sleep, timeout};
use tokio_util::task::AbortOnDropHandle;

use crate::support::{
    ApiError, ITEM_TIMEOUT, Redis, Sse, SubscribeReq, TestServer, admin_token, token,
};

const T: &str = "https://example.com/cluster";

/// The last update of a run; readers stop when they see it.
const END: &str = "end";

/// How long one publish or `/readyz` may take to answer, even while Redis is down: twice
/// the 5 s that Herald allows a Redis command before it gives up and answers 503. A client
/// waiting longer would time out rather than learn that the hub is unavailable.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the cluster may take to notice that Redis went away or came back.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Spawns `task`, which is aborted if the test ends first (a failing test then shows its
/// own panic, not those of helpers that outlived the nodes).
fn spawn<T: Send + 'static>(
    task: impl Future<Output = T> + Send + 'static,
) -> AbortOnDropHandle<T> {
    AbortOnDropHandle::new(tokio::spawn(task))
}

/// A node of the cluster that shares `redis`.
async fn node(redis: &Redis) -> TestServer {
    node_with(redis, &[]).await
}

/// A node of the cluster that shares `redis`, with extra `serve` flags.
async fn node_with(redis: &Redis, args: &[&str]) -> TestServer {
    let url = redis.url();
    let mut all = vec!["--redis-url", &url];
    all.extend_from_slice(args);
    TestServer::with_args(&all).await
}

/// A subscription to [`T`] on `server`, for public updates.
fn on_t(server: &TestServer) -> SubscribeReq {
    server.subscribe().topic(T).bearer(&token(&[], &[]))
}

/// Publishes `count` updates `{prefix}{n}` to [`T`] on `hub`, each once the previous one
/// was answered; returns the ids acknowledged (200), in ack order.
async fn publisher(
    http: reqwest::Client,
    hub: String,
    prefix: String,
    count: usize,
) -> Vec<String> {
    let token = admin_token();
    let mut acked = Vec::with_capacity(count);
    for n in 0..count {
        let id = format!("{prefix}{n}");
        let response = http
            .post(&hub)
            .bearer_auth(&token)
            .form(&[("topic", T), ("id", &id), ("data", &id)])
            .send()
            .await
            .expect("publish");
        assert_eq!(response.status(), StatusCode::OK, "publish {id} on {hub}");
        assert_eq!(response.text().await.unwrap(), id);
        acked.push(id);
    }
    acked
}

/// Reads `sse` until [`END`]. Whenever the stream ends, reconnects with `resume`, sending
/// `Last-Event-ID` of the last event received (`lastEventID=earliest` when none was), and
/// retrying for at most [`RECOVERY_TIMEOUT`] while the node refuses. Returns every id
/// received, in order, and how many times it reconnected.
///
/// # Panics
///
/// When a resume answers `reset` (the node did not know the id), or nothing arrives for
/// [`ITEM_TIMEOUT`].
async fn follow(mut sse: Sse, resume: SubscribeReq, name: String) -> (Vec<String>, usize) {
    let mut ids: Vec<String> = Vec::new();
    let mut reconnects = 0;
    loop {
        match sse.next_item_within(ITEM_TIMEOUT).await {
            Ok(Some(Item::Message(message))) => {
                assert_ne!(
                    message.event,
                    "reset",
                    "{name}: resuming after {:?} answered reset {message:?}",
                    ids.last()
                );
                let done = message.last_event_id == END;
                ids.push(message.last_event_id);
                if done {
                    return (ids, reconnects);
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                reconnects += 1;
                assert!(
                    reconnects <= 10,
                    "{name}: the stream keeps ending; received {ids:?}"
                );
                let request = resume.clone();
                let request = match ids.last() {
                    Some(last) => request.last_event_id(last),
                    None => request.query("lastEventID", "earliest"),
                };
                sse = reopen(request, &name).await;
            }
            Err(()) => panic!(
                "{name}: no event within {ITEM_TIMEOUT:?}; received {} events, the last {:?}",
                ids.len(),
                ids.last()
            ),
        }
    }
}

/// Opens `request`, retrying while the node answers anything but 200, for at most
/// [`RECOVERY_TIMEOUT`].
async fn reopen(request: SubscribeReq, name: &str) -> Sse {
    let deadline = Instant::now() + RECOVERY_TIMEOUT;
    loop {
        let (status, body) = match request.clone().try_open().await {
            Ok(sse) => return sse,
            Err(refused) => refused,
        };
        assert!(
            Instant::now() < deadline,
            "{name}: resuming still answers {status} after {RECOVERY_TIMEOUT:?}: {body}"
        );
        sleep(Duration::from_millis(100)).await;
    }
}

/// Asserts that `received` is `expected`, showing the first difference.
#[track_caller]
fn assert_same_ids(name: &str, received: &[String], expected: &[String]) {
    if received == expected {
        return;
    }
    let first_difference = received
        .iter()
        .zip(expected)
        .position(|(a, b)| a != b)
        .unwrap_or(received.len().min(expected.len()));
    let around = |ids: &[String]| {
        let from = first_difference.saturating_sub(2);
        ids.get(from..(first_difference + 3).min(ids.len()))
            .map(<[String]>::to_vec)
            .unwrap_or_default()
    };
    panic!(
        "{name}: received {} events, expected {}; first difference at {first_difference}: \
         got {:?}, expected {:?}",
        received.len(),
        expected.len(),
        around(received),
        around(expected),
    );
}

/// The status and body of `GET /readyz`.
async fn readyz(server: &TestServer) -> (StatusCode, reqwest::Response) {
    let response = timeout(
        ANSWER_TIMEOUT,
        server.http.get(format!("{}/readyz", server.url())).send(),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "/readyz of {} took more than {ANSWER_TIMEOUT:?}",
            server.url()
        )
    })
    .expect("GET /readyz");
    (response.status(), response)
}

/// Polls `/readyz` until it answers `status`, for at most [`RECOVERY_TIMEOUT`]; returns
/// that response.
async fn wait_readyz(server: &TestServer, status: StatusCode) -> reqwest::Response {
    let deadline = Instant::now() + RECOVERY_TIMEOUT;
    loop {
        let (got, response) = readyz(server).await;
        if got == status {
            return response;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz of {} still answers {got}, not {status}, after {RECOVERY_TIMEOUT:?}",
            server.url()
        );
        sleep(Duration::from_millis(50)).await;
    }
}

/// Publishes update `id` to [`T`] on `server`, bounded by [`ANSWER_TIMEOUT`]; returns the
/// response.
async fn try_publish(server: &TestServer, id: &str) -> reqwest::Response {
    timeout(
        ANSWER_TIMEOUT,
        server.publish_with(
            Some(&admin_token()),
            &[("topic", T), ("id", id), ("data", id)],
        ),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "publishing {id} to {} took more than {ANSWER_TIMEOUT:?}",
            server.url()
        )
    })
}

/// Asserts that `response` is the refusal of a publish because the log is unavailable: 503,
/// with the JSON error `unavailable`.
async fn assert_unavailable(response: reqwest::Response, what: &str) {
    let status = response.status();
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{what}: {}",
        response.text().await.unwrap_or_default()
    );
    let error = ApiError::read(response).await;
    assert_eq!(error.code, "unavailable", "{what}: {error:?}");
    assert!(!error.message.is_empty(), "{what}: an empty message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_delivers_every_update_once_in_the_same_order_with_the_same_id() {
    let redis = Redis::start().await;
    let nodes = [node(&redis).await, node(&redis).await, node(&redis).await];
    let mut streams = Vec::new();
    for server in &nodes {
        streams.push(on_t(server).open().await);
    }

    // One update published on node 1 reaches every node, with all its fields.
    nodes[0]
        .publish(&[
            ("topic", T),
            ("id", "first"),
            ("type", "kind"),
            ("data", "line 1\nline 2"),
        ])
        .await;
    let first = Message {
        event: "kind".into(),
        data: "line 1\nline 2".into(),
        last_event_id: "first".into(),
    };
    for (n, sse) in streams.iter_mut().enumerate() {
        assert_eq!(sse.next_message().await, first, "node {}", n + 1);
    }
    // An id the hub generates is the same on every node.
    let generated = nodes[1].publish(&[("topic", T), ("data", "no id")]).await;
    assert!(generated.starts_with("urn:uuid:"), "{generated}");
    for (n, sse) in streams.iter_mut().enumerate() {
        let message = sse.next_message().await;
        assert_eq!(message.last_event_id, generated, "node {}", n + 1);
        assert_eq!(message.data, "no id", "node {}", n + 1);
    }

    // Publishes that take turns on the nodes arrive everywhere in the order they were
    // acknowledged.
    let mut log = vec!["first".to_owned(), generated];
    let mut turns = Vec::new();
    for n in 0..30 {
        let id = format!("turn{n}");
        nodes[n % 3].publish_id(T, &id).await;
        turns.push(id);
    }
    for (n, sse) in streams.iter_mut().enumerate() {
        assert_same_ids(
            &format!("node {}", n + 1),
            &sse.ids_until("turn29").await,
            &turns,
        );
    }
    log.extend(turns);

    // Publishers racing on all three nodes: every node delivers the same sequence, which
    // holds every acknowledged update once, and each publisher's in its ack order.
    let racing: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(n, server)| {
            spawn(publisher(
                server.http.clone(),
                server.hub_url(),
                format!("race{n}-"),
                40,
            ))
        })
        .collect();
    let mut acked = Vec::new();
    for task in racing {
        acked.push(task.await.expect("publisher"));
    }
    nodes[2].publish_id(T, END).await;
    let mut seen = Vec::new();
    for sse in &mut streams {
        seen.push(sse.ids_until(END).await);
    }
    for (n, ids) in seen.iter().enumerate().skip(1) {
        assert_same_ids(&format!("node {} against node 1", n + 1), ids, &seen[0]);
    }
    let raced = &seen[0];
    assert_eq!(raced.len(), 3 * 40 + 1, "{raced:?}");
    let unique: HashSet<&String> = raced.iter().collect();
    assert_eq!(unique.len(), raced.len(), "an update came twice: {raced:?}");
    let position: HashMap<&str, usize> = raced
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    for ids in &acked {
        let positions: Vec<usize> = ids
            .iter()
            .map(|id| {
                *position
                    .get(id.as_str())
                    .unwrap_or_else(|| panic!("{id} never came"))
            })
            .collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "a publisher's updates came out of ack order: {raced:?}"
        );
    }
    log.extend(raced.iter().cloned());

    // Nothing else is on its way: the next update is the next event on every node.
    nodes[1].publish_id(T, "last").await;
    for (n, sse) in streams.iter_mut().enumerate() {
        assert_eq!(
            sse.next_message().await.last_event_id,
            "last",
            "node {}",
            n + 1
        );
    }
    log.push("last".to_owned());

    // Every node replays the whole log, and resumes after an id another node assigned.
    for (n, server) in nodes.iter().enumerate() {
        let mut all = on_t(server).query("lastEventID", "earliest").open().await;
        assert_same_ids(
            &format!("earliest on node {}", n + 1),
            &all.ids_until("last").await,
            &log,
        );
        let after = &log[10 + n];
        let mut resumed = on_t(server).last_event_id(after).open().await;
        assert_same_ids(
            &format!("after {after} on node {}", n + 1),
            &resumed.ids_until("last").await,
            &log[11 + n..],
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_of_a_killed_node_resume_on_another_with_no_gap_and_no_duplicate() {
    const SUBSCRIBERS: usize = 100;
    const UPDATES: usize = 300;
    /// Node A is killed once this many updates were acknowledged.
    const KILL_AFTER: usize = 100;

    let redis = Redis::start().await;
    let mut a = node(&redis).await;
    let b = node(&redis).await;
    let c = node(&redis).await;

    // The log's order, as seen by a subscriber that stays on node B all along.
    let reference = on_t(&b).open().await;
    let reference = spawn(follow(reference, on_t(&b), "on B".to_owned()));
    let mut subscribers = Vec::new();
    for n in 0..SUBSCRIBERS {
        let first = on_t(&a).open().await;
        subscribers.push(spawn(follow(first, on_t(&c), format!("subscriber {n}"))));
    }

    // One publisher on node B, each publish once the previous was answered: the log's
    // order is the ack order. It may see errors; those updates are not acknowledged.
    let acked_count = Arc::new(AtomicUsize::new(0));
    let publisher = {
        let http = b.http.clone();
        let hub = b.hub_url();
        let acked_count = acked_count.clone();
        spawn(async move {
            let token = admin_token();
            let (mut acked, mut unacked) = (Vec::new(), Vec::new());
            for n in 0..UPDATES {
                let id = format!("k{n}");
                let response = http
                    .post(&hub)
                    .bearer_auth(&token)
                    .form(&[("topic", T), ("id", &id), ("data", &id)])
                    .timeout(ANSWER_TIMEOUT)
                    .send()
                    .await;
                match response {
                    Ok(response) if response.status() == StatusCode::OK => {
                        assert_eq!(response.text().await.unwrap(), id);
                        acked.push(id);
                        acked_count.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => unacked.push(id),
                }
            }
            (acked, unacked)
        })
    };

    let deadline = Instant::now() + RECOVERY_TIMEOUT;
    while acked_count.load(Ordering::Relaxed) < KILL_AFTER {
        assert!(
            Instant::now() < deadline,
            "only {} publishes acknowledged after {RECOVERY_TIMEOUT:?}",
            acked_count.load(Ordering::Relaxed)
        );
        sleep(Duration::from_millis(5)).await;
    }
    a.kill9().await;
    let (acked, unacked) = publisher.await.expect("publisher");
    assert!(
        acked.len() > KILL_AFTER,
        "node B acknowledged nothing after node A died; unacknowledged: {unacked:?}"
    );
    b.publish_id(T, END).await;

    let (log, reference_reconnects) = reference.await.expect("the subscriber on B");
    assert_eq!(reference_reconnects, 0, "the stream on node B ended");
    // Every acknowledged update is in the log once, in ack order (an unacknowledged one
    // may be there too: its answer was lost, not necessarily the update).
    let logged: Vec<String> = log
        .iter()
        .filter(|id| !unacked.contains(id))
        .cloned()
        .collect();
    let mut expected = acked.clone();
    expected.push(END.to_owned());
    assert_same_ids("on B", &logged, &expected);

    for (n, task) in subscribers.into_iter().enumerate() {
        let (ids, reconnects) = task.await.expect("subscriber");
        assert_same_ids(&format!("subscriber {n}"), &ids, &log);
        assert_eq!(
            reconnects, 1,
            "subscriber {n} reconnected {reconnects} times, not once"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_refuses_publishes_then_everything_recovers_without_restarting_herald() {
    let mut redis = Redis::start().await;
    // Heartbeats every second keep items coming on idle streams during the outage.
    let nodes = [
        node_with(&redis, &["--heartbeat", "1s"]).await,
        node_with(&redis, &["--heartbeat", "1s"]).await,
    ];
    let subscribers: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(n, server)| (on_t(server), format!("subscriber on node {}", n + 1)))
        .collect();
    let mut tasks = Vec::new();
    for (request, name) in subscribers {
        let first = request.clone().open().await;
        tasks.push(spawn(follow(first, request, name)));
    }

    let mut acked = Vec::new();
    let mut refused = Vec::new();
    let mut next = 0;
    let mut next_id = move || {
        next += 1;
        format!("u{next}")
    };
    for n in 0..6 {
        let id = next_id();
        nodes[n % 2].publish_id(T, &id).await;
        acked.push(id);
    }
    for server in &nodes {
        let (status, response) = readyz(server).await;
        assert_eq!(status, StatusCode::OK, "{}", response.text().await.unwrap());
    }

    redis.stop().await;

    // While Redis is down: every publish, on either node, is refused with 503 and a JSON
    // error, and stores nothing; /readyz answers 503 with a JSON error.
    for n in 0..6 {
        let id = next_id();
        let response = try_publish(&nodes[n % 2], &id).await;
        assert_unavailable(response, &format!("publish {id} while Redis is down")).await;
        refused.push(id);
    }
    for server in &nodes {
        let response = wait_readyz(server, StatusCode::SERVICE_UNAVAILABLE).await;
        let error = ApiError::read(response).await;
        assert_eq!(error.code, "unavailable", "{error:?}");
    }

    redis.restart().await;

    // Publishing works again on both nodes, and they are ready again, without a restart of
    // Herald. Until then a publish may still be refused, with a 503.
    for (n, server) in nodes.iter().enumerate() {
        let deadline = Instant::now() + RECOVERY_TIMEOUT;
        loop {
            let id = next_id();
            let response = try_publish(server, &id).await;
            if response.status() == StatusCode::OK {
                assert_eq!(response.text().await.unwrap(), id);
                acked.push(id);
                break;
            }
            let what = format!("publish {id} on node {} after Redis returned", n + 1);
            assert_unavailable(response, &what).await;
            refused.push(id);
            assert!(
                Instant::now() < deadline,
                "node {} still refuses publishes {RECOVERY_TIMEOUT:?} after Redis returned; \
                 Redis log:\n{}",
                n + 1,
                redis.log()
            );
            sleep(Duration::from_millis(100)).await;
        }
    }
    for server in &nodes {
        let response = wait_readyz(server, StatusCode::OK).await;
        assert_eq!(response.text().await.unwrap(), "ready");
    }
    for n in 0..6 {
        let id = next_id();
        nodes[n % 2].publish_id(T, &id).await;
        acked.push(id);
    }
    nodes[0].publish_id(T, END).await;
    acked.push(END.to_owned());

    // Every acknowledged update arrives once, in order, on the streams opened before the
    // outage, and nothing that was refused. Those streams stayed up all along: a resume by
    // id would hide that they were cut.
    for (n, task) in tasks.into_iter().enumerate() {
        let (ids, reconnects) = task.await.expect("subscriber");
        let stored_refused: Vec<&String> = ids.iter().filter(|id| refused.contains(id)).collect();
        assert!(
            stored_refused.is_empty(),
            "refused publishes were delivered: {stored_refused:?}"
        );
        let name = format!("the stream on node {} ({reconnects} reconnects)", n + 1);
        assert_same_ids(&name, &ids, &acked);
        assert_eq!(
            reconnects, 0,
            "{name}: an open stream ended during the outage"
        );
    }
    // And the log holds exactly them, on every node.
    for (n, server) in nodes.iter().enumerate() {
        let mut all = on_t(server).query("lastEventID", "earliest").open().await;
        assert_same_ids(
            &format!("earliest on node {}", n + 1),
            &all.ids_until(END).await,
            &acked,
        );
    }
}

/// The Redis log, used directly: a repeated id keeps its position (also twice in one
/// batch), and a replay page stops once it holds its byte bound.
#[tokio::test]
async fn the_redis_log_keeps_repeated_ids_once_and_bounds_pages_by_bytes() {
    use herald_hub::{Entry, EventLog, RedisLog, Update};

    let redis = Redis::start().await;
    let log = RedisLog::connect(&redis.url(), "paging").await.unwrap();
    let entry = |id: &str, data: String| Entry {
        seq: 0,
        id: id.into(),
        update: Update {
            topics: vec![T.into()],
            data,
            ..Update::default()
        },
        created_at_ms: 1,
    };
    let big = || "x".repeat(100 * 1024);
    let first = log.append(vec![entry("a", big())]).await.unwrap();
    assert_eq!(first, [1]);
    let batch: Vec<Entry> = ["a", "b", "b", "c", "d", "e"]
        .iter()
        .map(|id| entry(id, big()))
        .collect();
    assert_eq!(log.append(batch).await.unwrap(), [1, 2, 2, 3, 4, 5]);
    assert_eq!(log.head().await.unwrap(), 5);

    let seqs = |records: Vec<herald_hub::Record>| records.iter().map(|r| r.seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(log.read(0, 5, 100, usize::MAX).await.unwrap()),
        [1, 2, 3, 4, 5]
    );
    // 250 KiB: three records reach it, so the page ends after the third.
    assert_eq!(
        seqs(log.read(0, 5, 100, 250 * 1024).await.unwrap()),
        [1, 2, 3]
    );
    assert_eq!(
        seqs(log.read(0, 5, 100, 1).await.unwrap()),
        [1],
        "the first always"
    );
    assert_eq!(seqs(log.read(1, 5, 2, usize::MAX).await.unwrap()), [2, 3]);
}
