//! Update ids chosen by publishers: a publish whose id the log already holds is answered
//! with that id again and neither stored nor delivered a second time, by one node (its SQLite
//! log) as by a cluster (the Redis log).

use herald_sse::Item;

use crate::support::TestServer;

const T: &str = "https://example.com/repeated";

#[tokio::test]
async fn publishing_an_id_twice_delivers_it_once() {
    let server = TestServer::with_args(&["--anonymous"]).await;
    let mut sse = server.subscribe().topic(T).open().await;
    assert_eq!(sse.next_item().await, Some(Item::Retry(3000)));

    assert_eq!(server.publish_id(T, "once").await, "once");
    // The same id again, with other data: acknowledged the same, changing nothing.
    let again = server
        .publish(&[("topic", T), ("id", "once"), ("data", "other")])
        .await;
    assert_eq!(again, "once");
    server.publish_id(T, "after").await;

    let first = sse.next_message().await;
    assert_eq!(
        (first.last_event_id.as_str(), first.data.as_str()),
        ("once", "once")
    );
    let next = sse.next_message().await;
    assert_eq!(next.last_event_id, "after", "the repeat was delivered");
    assert_eq!(
        server.stored_ids_then(T, "sentinel").await,
        ["once", "after", "sentinel"]
    );
}

/// The same rule in a cluster, whose nodes share the Redis log: a repeat sent to another
/// node is acknowledged with the same id and stored and delivered once, on every node.
#[tokio::test]
async fn a_cluster_delivers_a_repeated_id_once_whichever_node_gets_it() {
    let redis = crate::support::Redis::start().await;
    let url = redis.url();
    let a = TestServer::with_args(&["--anonymous", "--redis-url", &url]).await;
    let b = TestServer::with_args(&["--anonymous", "--redis-url", &url]).await;
    let mut on_a = a.subscribe().topic(T).open().await;
    let mut on_b = b.subscribe().topic(T).open().await;

    assert_eq!(a.publish_id(T, "once").await, "once");
    let again = b
        .publish(&[("topic", T), ("id", "once"), ("data", "other")])
        .await;
    assert_eq!(again, "once");
    b.publish_id(T, "after").await;

    for sse in [&mut on_a, &mut on_b] {
        let first = sse.next_message().await;
        assert_eq!(
            (first.last_event_id.as_str(), first.data.as_str()),
            ("once", "once")
        );
        assert_eq!(sse.next_message().await.last_event_id, "after");
    }
    assert_eq!(
        b.stored_ids_then(T, "sentinel").await,
        ["once", "after", "sentinel"]
    );
}
