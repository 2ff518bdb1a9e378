//! Subscriptions across a cluster: three `--subscription-events` nodes on one Redis list
//! each other's subscriptions, and a node that dies takes its subscribers with it: a
//! survivor announces the end of each of its subscriptions, once, and the API stops listing
//! them.

use std::{collections::HashSet, time::Duration};

use herald_sse::Item;
use serde_json::{Value, json};
use tokio::time::{Instant, sleep};

use crate::support::{Redis, Sse, TestServer, token};

/// How long a dead node's ends may take: its lease's time to live (10 s), the reaper's
/// round (2 s), and room for a slow machine.
const REAP_TIMEOUT: Duration = Duration::from_secs(40);

const WATCH: &str = "/.well-known/mercure/subscriptions/{type}/{match}/{subscriber}";
const SENTINEL: &str = "https://example.com/sentinel";

async fn node(redis: &Redis) -> TestServer {
    let url = redis.url();
    TestServer::with_args(&["--redis-url", &url, "--subscription-events"]).await
}

/// The next subscription event not about the watcher's own subscriptions; `None` at [`SENTINEL`]'s
/// update.
async fn next_event(sse: &mut Sse) -> Option<Value> {
    loop {
        let message = match sse.next_item_within(REAP_TIMEOUT).await {
            Ok(Some(Item::Message(message))) => message,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended while waiting for an event"),
            Err(()) => panic!("no event within {REAP_TIMEOUT:?}"),
        };
        if message.event != "mercure" {
            assert_eq!(message.last_event_id, "end");
            return None;
        }
        let data: Value = serde_json::from_str(&message.data).expect("JSON data");
        if data["match"] != WATCH && data["match"] != SENTINEL {
            return Some(data);
        }
    }
}

async fn listed(server: &TestServer) -> Value {
    let response = crate::support::http_client()
        .get(format!(
            "{}/.well-known/mercure/subscriptions",
            server.url()
        ))
        .bearer_auth(token(&[], &["*"]))
        .send()
        .await
        .expect("GET the subscriptions API");
    crate::conformance_subscriptions::json(response).await
}

// Rule: when a node dies, exactly one survivor announces `active: false` for each of its
// subscriptions, and no node lists them any more.
#[tokio::test]
async fn a_dead_node_takes_its_subscribers_with_it() {
    let redis = Redis::start().await;
    let mut one = node(&redis).await;
    let two = node(&redis).await;
    let _three = node(&redis).await;
    let mut watch = two
        .subscribe()
        .topic(WATCH)
        .topic(SENTINEL)
        .bearer(&token(&[], &[WATCH]))
        .open()
        .await;

    let _a = one
        .subscribe()
        .topic("https://example.com/a")
        .bearer(&token(&[], &[]))
        .open()
        .await;
    let _b = one
        .subscribe()
        .topic("https://example.com/b/{id}")
        .bearer(&token(&[], &[]))
        .open()
        .await;
    let mut started = HashSet::new();
    while started.len() < 2 {
        let event = next_event(&mut watch).await.expect("a start");
        assert_eq!(event["active"], true, "{event}");
        started.insert(event["id"].as_str().expect("an id").to_owned());
    }
    let before = listed(&two).await;
    for id in &started {
        assert!(before.to_string().contains(id.as_str()), "{before}");
    }

    one.kill9().await;
    let mut ended = HashSet::new();
    while ended.len() < 2 {
        let event = next_event(&mut watch).await.expect("an end");
        assert_eq!(event["active"], false, "{event}");
        assert!(
            ended.insert(event["id"].as_str().expect("an id").to_owned()),
            "{event}"
        );
    }
    assert_eq!(ended, started);

    let after = listed(&two).await;
    for id in &ended {
        assert!(!after.to_string().contains(id.as_str()), "{after}");
    }
    // Once: nothing more about them up to an update published after the check.
    two.publish_id(SENTINEL, "end").await;
    assert_eq!(next_event(&mut watch).await, None);
}

/// Makes `redis` hold a node that died with `entries` (JSON texts), under the default key
/// prefix: a member of the node set with a hash of entries, and no lease.
async fn dead_node(redis: &Redis, node: &str, entries: &[Value]) {
    redis
        .command(&["SADD", "herald:presence:nodes", node])
        .await;
    let hash = format!("herald:presence:node:{node}");
    let mut args = vec!["HSET".to_owned(), hash];
    for entry in entries {
        args.push(format!("{} {}", entry["subscriber"], entry["topic"]));
        args.push(entry.to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    redis.command(&args).await;
}

/// A stored entry of `node`, whose events go to `topic`.
fn stored(node: &str, subscriber: &str, topic: &str) -> Value {
    json!({
        "subscriber": subscriber,
        "match_type": "exact",
        "match": "https://example.com/x",
        "payload": null,
        "node": node,
        "topic": topic,
    })
}

/// Waits until `condition` holds, for at most [`REAP_TIMEOUT`].
async fn until<F: AsyncFn() -> bool>(what: &str, condition: F) {
    let deadline = Instant::now() + REAP_TIMEOUT;
    while !condition().await {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {REAP_TIMEOUT:?}"
        );
        sleep(Duration::from_millis(100)).await;
    }
}

// Rule: an end the hub refuses for good (its topic over the limit) does not keep a dead
// node in Redis: the reaper deletes its entries anyway, once.
#[tokio::test]
async fn a_dead_node_whose_ends_cannot_be_published_is_still_forgotten() {
    let redis = Redis::start().await;
    let _survivor = node(&redis).await;
    let node_id = "urn:uuid:00000000-0000-4000-8000-000000000001";
    let too_long = format!(
        "/.well-known/mercure/subscriptions/exact/{}/urn%3Auuid%3A1",
        "%2F".repeat(1000)
    );
    dead_node(&redis, node_id, &[stored(node_id, "urn:uuid:1", &too_long)]).await;
    let hash = format!("herald:presence:node:{node_id}");
    until("the dead node's hash is deleted", async || {
        redis.command(&["EXISTS", &hash]).await == ":0"
    })
    .await;
    assert_eq!(
        redis
            .command(&["SISMEMBER", "herald:presence:nodes", node_id])
            .await,
        ":0"
    );
}

// Rule: a node that takes its lease again while a survivor ends its subscriptions keeps
// its entries: the survivor deletes them only while the lease is still absent.
#[tokio::test]
async fn a_node_that_comes_back_during_its_reaping_keeps_its_entries() {
    let redis = Redis::start().await;
    let survivor = node(&redis).await;
    let mut watch = survivor
        .subscribe()
        .topic(WATCH)
        .bearer(&token(&[], &[WATCH]))
        .open()
        .await;
    let node_id = "urn:uuid:00000000-0000-4000-8000-000000000002";
    // Enough entries that the survivor is still publishing their ends when the node
    // comes back.
    let entries: Vec<Value> = (0..20_000)
        .map(|i| {
            let subscriber = format!("urn:uuid:{i}");
            let topic = format!(
                "/.well-known/mercure/subscriptions/exact/https%3A%2F%2Fexample.com%2Fx/urn%3Auuid%3A{i}"
            );
            stored(node_id, &subscriber, &topic)
        })
        .collect();
    for chunk in entries.chunks(1000) {
        dead_node(&redis, node_id, chunk).await;
    }
    let first = next_event(&mut watch).await.expect("an end");
    assert_eq!(first["active"], false, "{first}");
    let lease = format!("herald:presence:lease:{node_id}");
    redis.command(&["SET", &lease, node_id]).await;

    until("the survivor sees the node come back", async || {
        survivor.stderr().contains("a node came back")
    })
    .await;
    let hash = format!("herald:presence:node:{node_id}");
    assert_eq!(redis.command(&["HLEN", &hash]).await, ":20000");
    assert_eq!(
        redis
            .command(&["SISMEMBER", "herald:presence:nodes", node_id])
            .await,
        ":1"
    );
}
