//! Subscriptions across a cluster: three `--subscription-events` nodes on one Redis list
//! each other's subscriptions, and a node that dies takes its subscribers with it: a
//! survivor announces the end of each of its subscriptions, once, and the API stops listing
//! them.

use std::collections::HashSet;

use serde_json::Value;

use crate::support::{Redis, Sse, TestServer, token};

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
        let message = sse.next_message().await;
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
