//! Retention: with `--retention-count`, the log keeps only the newest updates; `earliest`
//! replays exactly those, and an id that fell out gets a `reset`.
//!
//! Pruning runs every 5 s (there is no flag for the interval) and once at start-up, so one
//! test waits for the periodic run by polling with a deadline, and one restarts the
//! server to see the start-up run. A third holds a replay half-sent while retention prunes
//! under it: the subscriber must be told (`reset`), never skipped ahead silently.

use std::time::Duration;

use herald_sse::Item;
use tokio::time::{Instant, sleep};

use crate::support::{TestServer, token};

const T: &str = "https://example.com/retained";

fn names(range: std::ops::RangeInclusive<usize>) -> Vec<String> {
    range.map(|n| format!("k{n}")).collect()
}

/// What an `earliest` reader gets, up to and including `last`.
async fn earliest(server: &TestServer, last: &str) -> Vec<String> {
    server
        .subscribe()
        .topic(T)
        .bearer(&token(&[], &[]))
        .query("lastEventID", "earliest")
        .open()
        .await
        .ids_until(last)
        .await
}

/// Polls `earliest` until it holds exactly k16..k20, for at most `within`.
async fn wait_for_pruning(server: &TestServer, within: Duration) {
    let deadline = Instant::now() + within;
    let all = names(1..=20);
    loop {
        let got = earliest(server, "k20").await;
        if got == names(16..=20) {
            return;
        }
        // Before pruning everything is there; pruning never leaves less than the newest 5.
        assert!(all.ends_with(&got), "earliest gave {got:?}");
        assert!(
            Instant::now() < deadline,
            "not pruned within {within:?}: {got:?}"
        );
        sleep(Duration::from_millis(100)).await;
    }
}

/// Checks what a subscriber resuming from a pruned id, and one from a retained id, get.
async fn check_after_pruning(server: &TestServer) {
    let mut pruned = server
        .subscribe()
        .topic(T)
        .bearer(&token(&[], &[]))
        .last_event_id("k3")
        .open()
        .await;
    assert_eq!(pruned.next_item().await, Some(Item::Retry(3000)));
    let reset = pruned.next_message().await;
    assert_eq!(reset.event, "reset");
    assert_eq!(reset.last_event_id, "k20");
    let data: serde_json::Value = serde_json::from_str(&reset.data).unwrap();
    assert_eq!(
        data,
        serde_json::json!({"reason": "unknown-id", "lastEventID": "k3"})
    );

    let mut retained = server
        .subscribe()
        .topic(T)
        .bearer(&token(&[], &[]))
        .last_event_id("k17")
        .open()
        .await;
    server.publish_id(T, "k21").await;
    assert_eq!(
        retained.ids_until("k21").await,
        ["k18", "k19", "k20", "k21"]
    );
    assert_eq!(pruned.next_message().await.last_event_id, "k21");
}

#[tokio::test]
async fn periodic_pruning_keeps_the_newest() {
    let server = TestServer::with_args(&["--retention-count", "5"]).await;
    for id in names(1..=20) {
        server.publish_id(T, &id).await;
    }
    wait_for_pruning(&server, Duration::from_secs(12)).await;
    check_after_pruning(&server).await;
}

#[tokio::test]
async fn pruning_at_start_up() {
    let mut server = TestServer::with_args(&["--retention-count", "5"]).await;
    for id in names(1..=20) {
        server.publish_id(T, &id).await;
    }
    server.kill9().await;
    server.restart().await;
    // Start-up pruning races with the first request only briefly.
    wait_for_pruning(&server, Duration::from_secs(3)).await;
    check_after_pruning(&server).await;
}

/// Publishes `count` updates of `size` bytes on `T` from four concurrent publishers, with
/// ids `<prefix><publisher>-<n>`.
async fn publish_many(server: &TestServer, prefix: &str, count: usize, size: usize) {
    let data = "x".repeat(size);
    let publishers = (0..4).map(|p| {
        let data = &data;
        async move {
            for n in (p..count).step_by(4) {
                let id = format!("{prefix}{p}-{n}");
                server
                    .publish(&[("topic", T), ("id", &id), ("data", data)])
                    .await;
            }
        }
    });
    futures::future::join_all(publishers).await;
}

/// A replay that is still running when retention prunes part of what it was about to send
/// must not skip those updates silently: the subscriber must get them, or be told to
/// reload with a `reset` event. The subscriber here reads the first replay page slowly
/// (its socket is full), so the second page is read after a prune has removed its start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_overtaken_by_retention_is_never_silently_incomplete() {
    let server = TestServer::with_args(&["--retention-count", "600", "--anonymous"]).await;
    server.publish_id(T, "g0").await;
    // Positions 2..=600; the replay (599 updates of 16 KiB, in pages of 256 KiB) cannot fit
    // in the socket buffers, so the server holds its later pages back until the client reads.
    publish_many(&server, "a", 599, 16 * 1024).await;

    let mut slow = crate::support::RawStream::get(
        server.addr(),
        "/.well-known/mercure?topic=https%3A%2F%2Fexample.com%2Fretained",
        &[("Last-Event-ID", "g0")],
        4096,
    )
    .await;
    // The first page (16 updates) has been read from the log and handed to the socket.
    server
        .wait_metric(
            "herald_replayed_updates_total",
            crate::support::ITEM_TIMEOUT,
            |v| v >= 16.0,
        )
        .await;
    // A reader that keeps up records the log's order.
    let mut witness = server
        .subscribe()
        .topic(T)
        .query("lastEventID", "earliest")
        .open()
        .await;
    // It finishes its own replay before anything can be pruned (the log holds 600).
    let mut replayed = Vec::new();
    while replayed.len() < 600 {
        replayed.push(witness.next_message().await.last_event_id);
    }
    let witness = tokio::spawn(async move {
        replayed.extend(witness.ids_until("last").await);
        replayed
    });

    // Positions 601..=1151: the next prune keeps 552..=1151, cutting into the range the
    // slow subscriber's replay has yet to send (its socket buffers hold a few MiB at most,
    // a few hundred of these updates).
    publish_many(&server, "b", 550, 10).await;
    server.publish_id(T, "last").await;
    let log = witness.await.unwrap();
    assert_eq!(log.len(), 1151);
    let deadline = Instant::now() + Duration::from_secs(12);
    loop {
        let first = server
            .subscribe()
            .topic(T)
            .query("lastEventID", "earliest")
            .open()
            .await
            .next_message()
            .await
            .last_event_id;
        if first == log[551] {
            break;
        }
        assert!(Instant::now() < deadline, "not pruned in time");
        sleep(Duration::from_millis(100)).await;
    }

    // Now read what the slow subscriber gets: the log in order, except that it may skip
    // ahead right after a `reset` that says why.
    let mut next = 1; // Index in `log` of the update due next (after g0).
    let mut resets = 0;
    let mut reset_pending = false;
    loop {
        match slow.next_item().await {
            Some(Item::Message(message)) if message.event == "reset" => {
                let data: serde_json::Value = serde_json::from_str(&message.data).unwrap();
                assert_eq!(data["reason"], "expired", "{}", message.data);
                resets += 1;
                reset_pending = true;
            }
            Some(Item::Message(message)) => {
                let id = message.last_event_id;
                let at = log
                    .iter()
                    .position(|l| *l == id)
                    .unwrap_or_else(|| panic!("{id} is not in the log"));
                assert!(
                    at == next || (at > next && reset_pending),
                    "after log position {next}, got position {}: the updates in between were \
                     skipped without a reset event",
                    at + 1
                );
                reset_pending = false;
                next = at + 1;
                if id == "last" {
                    break;
                }
            }
            Some(_) => {}
            None => panic!("the stream ended before the last update (next was {next})"),
        }
    }
    // Retention did cut into the replay (the test set that up), and it was said once.
    assert_eq!(resets, 1);
}
