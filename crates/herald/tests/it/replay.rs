//! Reconnection: `Last-Event-ID` (header) and `lastEventID` (query) replay exactly what a
//! subscriber missed and may see, then hand over to live updates; `earliest` replays
//! everything retained; an unknown id gets a `reset` event.

use herald_sse::Item;

use crate::support::{Sse, TestServer, token};

const T: &str = "https://example.com/feed";
const X: &str = "https://example.com/x";
const Y: &str = "https://example.com/y";

/// How a test resumes.
#[derive(Clone, Copy, Debug)]
enum Via {
    Header,
    Query,
}

/// Publishes r1..r3, reads them, disconnects, publishes r4..r6, resumes after r3 `via`
/// the header or the query, and checks it gets r4..r6 then the live r7.
async fn missed_then_live(via: Via) {
    let server = TestServer::start().await;
    let t = token(&[], &[]);
    let mut first = server.subscribe().topic(T).bearer(&t).open().await;
    for id in ["r1", "r2", "r3"] {
        server.publish_id(T, id).await;
    }
    assert_eq!(first.ids_until("r3").await, ["r1", "r2", "r3"]);
    drop(first);
    for id in ["r4", "r5", "r6"] {
        server.publish_id(T, id).await;
    }
    let request = server.subscribe().topic(T).bearer(&t);
    let request = match via {
        Via::Header => request.last_event_id("r3"),
        Via::Query => request.query("lastEventID", "r3"),
    };
    let mut again = request.open().await;
    assert_eq!(again.next_item().await, Some(Item::Retry(3000)));
    assert_eq!(again.ids_until("r6").await, ["r4", "r5", "r6"], "{via:?}");
    server.publish_id(T, "r7").await;
    // The next event is the live one: nothing replayed twice, nothing skipped.
    assert_eq!(again.next_message().await.last_event_id, "r7");
    assert_eq!(server.metric("herald_replays_total").await, 1.0);
    assert_eq!(server.metric("herald_replayed_updates_total").await, 3.0);
}

#[tokio::test]
async fn resume_with_last_event_id_header() {
    missed_then_live(Via::Header).await;
}

#[tokio::test]
async fn resume_with_last_event_id_query() {
    missed_then_live(Via::Query).await;
}

#[tokio::test]
async fn header_wins_over_query_and_earliest_gets_all() {
    let server = TestServer::start().await;
    let t = token(&[], &[]);
    for id in ["e1", "e2", "e3", "e4", "e5"] {
        server.publish_id(T, id).await;
    }
    let mut both = server
        .subscribe()
        .topic(T)
        .bearer(&t)
        .last_event_id("e4")
        .query("lastEventID", "e1")
        .open()
        .await;
    let mut earliest_query = server
        .subscribe()
        .topic(T)
        .bearer(&t)
        .query("lastEventID", "earliest")
        .open()
        .await;
    let mut earliest_header = server
        .subscribe()
        .topic(T)
        .bearer(&t)
        .last_event_id("earliest")
        .open()
        .await;
    // Resuming from the newest id: nothing to replay, live from here.
    let mut at_head = server
        .subscribe()
        .topic(T)
        .bearer(&t)
        .last_event_id("e5")
        .open()
        .await;
    server.publish_id(T, "live").await;
    assert_eq!(both.ids_until("live").await, ["e5", "live"]);
    let all = ["e1", "e2", "e3", "e4", "e5", "live"];
    assert_eq!(earliest_query.ids_until("live").await, all);
    assert_eq!(earliest_header.ids_until("live").await, all);
    assert_eq!(at_head.ids_until("live").await, ["live"]);
}

#[tokio::test]
async fn replay_respects_claims_and_selectors() {
    let server = TestServer::start().await;
    server.publish_id(X, "x-pub").await;
    server
        .publish(&[("topic", X), ("id", "x-priv"), ("private", "on")])
        .await;
    server.publish_id(Y, "y-pub").await;
    server
        .publish(&[("topic", Y), ("id", "y-priv"), ("private", "on")])
        .await;
    server.publish_id(X, "x-pub2").await;

    let earliest = |selector: &str, claim: &[&str]| {
        server
            .subscribe()
            .topic(selector)
            .bearer(&token(&[], claim))
            .query("lastEventID", "earliest")
            .open()
    };
    let mut x_claimed = earliest(X, &[X]).await;
    let mut x_public = earliest(X, &[]).await;
    let mut all_y_claimed = earliest("*", &[Y]).await;
    let mut template_all_claims = earliest("https://example.com/{which}", &["*"]).await;
    // Resuming in the middle applies the same rules.
    let mut x_from_middle = server
        .subscribe()
        .topic(X)
        .bearer(&token(&[], &[]))
        .last_event_id("x-priv")
        .open()
        .await;
    server
        .publish(&[("topic", X), ("topic", Y), ("id", "end")])
        .await;

    assert_eq!(
        x_claimed.ids_until("end").await,
        ["x-pub", "x-priv", "x-pub2", "end"]
    );
    assert_eq!(x_public.ids_until("end").await, ["x-pub", "x-pub2", "end"]);
    assert_eq!(
        all_y_claimed.ids_until("end").await,
        ["x-pub", "y-pub", "y-priv", "x-pub2", "end"]
    );
    assert_eq!(
        template_all_claims.ids_until("end").await,
        ["x-pub", "x-priv", "y-pub", "y-priv", "x-pub2", "end"]
    );
    assert_eq!(x_from_middle.ids_until("end").await, ["x-pub2", "end"]);
}

/// A repeated id is not stored again, so it names its first use.
#[tokio::test]
async fn repeated_id_resumes_after_its_only_use() {
    let server = TestServer::start().await;
    for id in ["dup", "m1", "dup", "m2"] {
        server.publish_id(T, id).await;
    }
    let mut sse = server
        .subscribe()
        .topic(T)
        .bearer(&token(&[], &[]))
        .last_event_id("dup")
        .open()
        .await;
    server.publish_id(T, "m3").await;
    assert_eq!(sse.ids_until("m3").await, ["m1", "m2", "m3"]);
}

/// Reads the prelude and the `reset` event; returns the event's parsed data.
async fn expect_reset(sse: &mut Sse, head_id: &str) -> serde_json::Value {
    assert_eq!(sse.next_item().await, Some(Item::Retry(3000)));
    let reset = sse.next_message().await;
    assert_eq!(reset.event, "reset");
    // The reset carries the newest id, so the next reconnect resumes from there.
    assert_eq!(reset.last_event_id, head_id);
    serde_json::from_str(&reset.data).expect("reset data is JSON")
}

#[tokio::test]
async fn unknown_id_gets_a_reset_then_live_updates() {
    let server = TestServer::start().await;
    server.publish_id(T, "known").await;
    let mut sse = server
        .subscribe()
        .topic(T)
        .bearer(&token(&[], &[]))
        .last_event_id("never-published")
        .open()
        .await;
    let data = expect_reset(&mut sse, "known").await;
    assert_eq!(
        data,
        serde_json::json!({"reason": "unknown-id", "lastEventID": "never-published"})
    );
    server.publish_id(T, "after").await;
    assert_eq!(sse.next_message().await.last_event_id, "after");
    assert_eq!(server.metric("herald_resets_total").await, 1.0);

    // Resuming from the reset's id replays nothing and resets nothing.
    let mut again = server
        .subscribe()
        .topic(T)
        .bearer(&token(&[], &[]))
        .last_event_id("known")
        .open()
        .await;
    server.publish_id(T, "later").await;
    assert_eq!(again.ids_until("later").await, ["after", "later"]);
    assert_eq!(server.metric("herald_resets_total").await, 1.0);
}
