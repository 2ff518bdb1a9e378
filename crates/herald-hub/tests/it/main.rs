//! Integration tests of the hub core, in process, on a real SQLite log: the replay/live
//! hand-over under racing publishes, authorization in fan-out and replay, slow subscribers,
//! and retention.

use std::{sync::Arc, time::Duration};

use futures::{FutureExt as _, StreamExt};
use herald_hub::{
    Durability, HEARTBEAT_MIN_TICK, Hub, HubConfig, Matcher, QueueLimits, SqliteLog,
    SubscribeError, SubscribeRequest, Subscription, Update, heartbeat_slices,
};
use herald_sse::{Decoder, Item, Message};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

#[path = "../common/null_log.rs"]
mod null_log;
use null_log::NullLog;

struct TestHub {
    hub: Hub,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    _dir: tempfile::TempDir,
}

impl TestHub {
    async fn start(config: HubConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = SqliteLog::open(&dir.path().join("log.db"), Durability::Normal)
            .await
            .unwrap();
        let tracker = TaskTracker::new();
        let shutdown = CancellationToken::new();
        let hub = Hub::start(config, Arc::new(log), &tracker, shutdown.clone())
            .await
            .unwrap();
        Self {
            hub,
            shutdown,
            tracker,
            _dir: dir,
        }
    }

    async fn publish(&self, topic: &str, data: &str) -> String {
        self.publish_update(Update {
            topics: vec![topic.into()],
            data: data.into(),
            ..Update::default()
        })
        .await
    }

    async fn publish_update(&self, update: Update) -> String {
        self.hub.publish(update).await.unwrap().id.to_string()
    }

    async fn subscribe(
        &self,
        topics: &[&str],
        claims: Option<&[&str]>,
        last: Option<&str>,
    ) -> Reader {
        self.subscribe_with(SubscribeRequest {
            topics: topics.iter().map(|t| Matcher::from(*t)).collect(),
            claims: claims.map(|c| c.iter().map(|c| Matcher::from(*c)).collect()),
            last_event_id: last.map(str::to_owned),
            ..SubscribeRequest::default()
        })
        .await
    }

    async fn subscribe_with(&self, request: SubscribeRequest) -> Reader {
        let subscription = self.hub.subscribe(request).await.unwrap();
        Reader {
            subscription,
            decoder: Decoder::new(),
        }
    }
}

/// Decodes a subscription's bytes into messages.
struct Reader {
    subscription: Subscription,
    decoder: Decoder,
}

impl Reader {
    /// The next message, or `None` when the stream ended or nothing came within 5 s.
    async fn next(&mut self) -> Option<Message> {
        loop {
            match self.decoder.next_item().unwrap() {
                Some(Item::Message(message)) => return Some(message),
                Some(_) => continue,
                None => {}
            }
            let chunk = tokio::time::timeout(Duration::from_secs(5), self.subscription.next())
                .await
                .ok()??;
            self.decoder.push(&chunk);
        }
    }
}

/// The data of every message up to and including the one whose data is `sentinel`.
async fn collect(reader: &mut Reader) -> Vec<String> {
    let mut seen = Vec::new();
    while let Some(message) = reader.next().await {
        seen.push(message.data.clone());
        if message.data == "sentinel" {
            break;
        }
    }
    seen
}

fn config() -> HubConfig {
    HubConfig {
        heartbeat: None,
        ..HubConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_hands_over_to_live_without_gap_or_duplicate_while_publishes_race() {
    // A small history forces some replays through the SQLite log.
    let hub = Arc::new(
        TestHub::start(HubConfig {
            history_capacity: 64,
            ..config()
        })
        .await,
    );
    const UPDATES: usize = 1500;
    const PUBLISHERS: usize = 3;

    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let hub = hub.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0..UPDATES / PUBLISHERS {
                    let published = hub
                        .hub
                        .publish(Update {
                            topics: vec!["t".into()],
                            data: format!("{p}-{i}"),
                            ..Update::default()
                        })
                        .await
                        .unwrap();
                    acked.push((published.seq, published.id.to_string()));
                    if i % 50 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                acked
            })
        })
        .collect();

    let subscribers: Vec<_> = (0..8)
        .map(|s| {
            let hub = hub.clone();
            tokio::spawn(async move {
                let mut received: Vec<String> = Vec::new();
                let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
                let mut last: Option<String> = Some("earliest".into());
                // Read a few, drop, resume; until every update has been seen.
                while received.len() < UPDATES {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "subscriber {s} stalled after {} updates: one was lost",
                        received.len()
                    );
                    let mut reader = hub.subscribe(&["t"], None, last.as_deref()).await;
                    for _ in 0..(7 + s * 5) {
                        let Some(message) = reader.next().await else {
                            break;
                        };
                        assert_ne!(message.event, "reset", "no id may be lost");
                        received.push(message.last_event_id.clone());
                        last = Some(message.last_event_id);
                        if received.len() == UPDATES {
                            break;
                        }
                    }
                }
                received
            })
        })
        .collect();

    let mut log: Vec<(u64, String)> = Vec::new();
    for publisher in publishers {
        log.extend(publisher.await.unwrap());
    }
    log.sort();
    let expected: Vec<String> = log.into_iter().map(|(_, id)| id).collect();
    assert_eq!(expected.len(), UPDATES);
    for subscriber in subscribers {
        let received = subscriber.await.unwrap();
        assert_eq!(
            received, expected,
            "every update exactly once, in log order"
        );
    }
}

#[tokio::test]
async fn private_updates_follow_claims_live_and_in_replay() {
    let hub = TestHub::start(config()).await;
    let mut anonymous = hub
        .subscribe(&["https://e.com/books/{id}"], None, None)
        .await;
    let mut allowed = hub
        .subscribe(
            &["https://e.com/books/{id}"],
            Some(&["https://e.com/books/{id}"]),
            None,
        )
        .await;
    let mut other_claim = hub
        .subscribe(
            &["https://e.com/books/{id}"],
            Some(&["https://e.com/users/{id}"]),
            None,
        )
        .await;

    let first = hub.publish("https://e.com/books/1", "public").await;
    hub.publish_update(Update {
        topics: vec!["https://e.com/books/2".into()],
        data: "secret".into(),
        private: true,
        ..Update::default()
    })
    .await;
    hub.publish("https://e.com/books/3", "sentinel").await;

    assert_eq!(collect(&mut anonymous).await, ["public", "sentinel"]);
    assert_eq!(
        collect(&mut allowed).await,
        ["public", "secret", "sentinel"]
    );
    assert_eq!(collect(&mut other_claim).await, ["public", "sentinel"]);

    // The same rules apply to replay.
    let mut replay_anonymous = hub.subscribe(&["*"], None, Some(&first)).await;
    let mut replay_allowed = hub.subscribe(&["*"], Some(&["*"]), Some(&first)).await;
    assert_eq!(collect(&mut replay_anonymous).await, ["sentinel"]);
    assert_eq!(collect(&mut replay_allowed).await, ["secret", "sentinel"]);
}

#[tokio::test]
async fn reserved_topics_reach_only_reserved_subscriptions() {
    let hub = TestHub::start(config()).await;
    let everything = || SubscribeRequest {
        topics: vec!["*".into(), "{+any}".into()],
        claims: Some(vec!["*".into()]),
        ..SubscribeRequest::default()
    };
    let mut broad = hub.subscribe_with(everything()).await;
    let mut internal = hub
        .subscribe_with(SubscribeRequest {
            topics: vec!["herald:ws/1".into(), "public".into()],
            claims: Some(vec!["herald:ws/1".into()]),
            reserved: true,
            ..SubscribeRequest::default()
        })
        .await;
    let first = hub.publish("public", "first").await;
    for private in [false, true] {
        hub.publish_update(Update {
            topics: vec!["herald:ws/1".into(), "public".into()],
            data: format!("app private={private}"),
            private,
            ..Update::default()
        })
        .await;
    }
    hub.publish("public", "sentinel").await;

    assert_eq!(collect(&mut broad).await, ["first", "sentinel"]);
    assert_eq!(
        collect(&mut internal).await,
        ["first", "app private=false", "app private=true", "sentinel"]
    );
    // Replay follows the same rule.
    let mut replay = hub
        .subscribe_with(SubscribeRequest {
            last_event_id: Some(first),
            ..everything()
        })
        .await;
    assert_eq!(collect(&mut replay).await, ["sentinel"]);
}

#[tokio::test]
async fn a_subscriber_that_falls_behind_is_cut_off_and_resumes_by_id() {
    let hub = TestHub::start(HubConfig {
        queue: QueueLimits {
            max_frames: 4,
            max_bytes: 1 << 20,
        },
        ..config()
    })
    .await;
    let mut slow = hub.subscribe(&["t"], None, None).await;
    let mut fast = hub.subscribe(&["t"], None, None).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(hub.publish("t", &i.to_string()).await);
        // The fast reader keeps up.
        assert_eq!(fast.next().await.unwrap().data, i.to_string());
    }
    for i in 3..10 {
        ids.push(hub.publish("t", &i.to_string()).await);
        assert_eq!(fast.next().await.unwrap().data, i.to_string());
    }
    // The slow one never read: its queue overflowed at the fifth update, and its stream
    // ends after the prelude instead of growing.
    assert!(slow.next().await.is_none());
    assert_eq!(hub.hub.metrics().slow_disconnects.get(), 1);
    drop(slow);
    // Resuming from the last id it saw (none) with earliest brings everything back.
    let mut resumed = hub.subscribe(&["t"], None, Some("earliest")).await;
    for id in &ids {
        assert_eq!(&resumed.next().await.unwrap().last_event_id, id);
    }
}

#[tokio::test]
async fn retention_prunes_and_unknown_ids_reset() {
    let hub = TestHub::start(HubConfig {
        retention_count: Some(3),
        prune_interval: Duration::from_millis(20),
        history_capacity: 2,
        ..config()
    })
    .await;
    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(hub.publish("t", &i.to_string()).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut all = hub.subscribe(&["t"], None, Some("earliest")).await;
    for i in 5..8 {
        assert_eq!(all.next().await.unwrap().data, i.to_string());
    }
    let mut expired = hub.subscribe(&["t"], None, Some(&ids[0])).await;
    let reset = expired.next().await.unwrap();
    assert_eq!(reset.event, "reset");
    assert_eq!(
        reset.last_event_id, ids[7],
        "a reconnect after the reset resumes from the head"
    );
    hub.publish("t", "live").await;
    assert_eq!(expired.next().await.unwrap().data, "live");
    assert_eq!(all.next().await.unwrap().data, "live");
}

/// A subscription to `t` after log position `after` (and `Last-Event-ID` `last`, if any).
fn after(after: u64, last: Option<&str>) -> SubscribeRequest {
    SubscribeRequest {
        topics: vec!["t".into()],
        after: Some(after),
        last_event_id: last.map(str::to_owned),
        ..SubscribeRequest::default()
    }
}

#[tokio::test]
async fn a_subscription_after_a_position_replays_exactly_what_follows_it() {
    // A history of two: the replays below read the log.
    let hub = TestHub::start(HubConfig {
        history_capacity: 2,
        ..config()
    })
    .await;
    assert_eq!(hub.hub.head(), 0, "an empty log");
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(hub.publish("t", &i.to_string()).await);
    }
    assert_eq!(hub.hub.head(), 5, "the head is the newest position");

    let mut from_two = hub.subscribe_with(after(2, None)).await;
    let mut from_head = hub.subscribe_with(after(5, None)).await;
    let mut from_zero = hub.subscribe_with(after(0, None)).await;
    // `Last-Event-ID` wins over a position.
    let mut by_id = hub.subscribe_with(after(0, Some(&ids[3]))).await;
    let sentinel = hub.publish("t", "sentinel").await;
    assert_eq!(collect(&mut from_two).await, ["2", "3", "4", "sentinel"]);
    assert_eq!(collect(&mut from_head).await, ["sentinel"]);
    assert_eq!(
        collect(&mut from_zero).await,
        ["0", "1", "2", "3", "4", "sentinel"]
    );
    assert_eq!(collect(&mut by_id).await, ["4", "sentinel"]);

    // Beyond the head: refused, saying where the head is.
    match hub.hub.subscribe(after(7, None)).await {
        Err(SubscribeError::FuturePosition { after: 7, head: 6 }) => {}
        other => panic!("expected FuturePosition, got {other:?}"),
    }
    // The same position with an id to resume from is the id's business.
    let mut resumed = hub.subscribe_with(after(7, Some(&ids[4]))).await;
    assert_eq!(resumed.next().await.unwrap().last_event_id, sentinel);
}

#[tokio::test]
async fn a_position_whose_records_were_pruned_starts_with_a_reset() {
    let hub = TestHub::start(HubConfig {
        retention_count: Some(3),
        prune_interval: Duration::from_millis(20),
        history_capacity: 2,
        ..config()
    })
    .await;
    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(hub.publish("t", &i.to_string()).await);
    }
    // Wait for retention to keep the last three (positions 6 to 8).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut all = hub.subscribe(&["t"], None, Some("earliest")).await;
        if all.next().await.unwrap().data == "5" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never pruned");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Position 5 is the one before the oldest kept: nothing is missing.
    let mut kept = hub.subscribe_with(after(5, None)).await;
    // Position 2: positions 3 to 5 are gone. A reset at the head, as for an unknown id, and
    // none of what is left: the client reloads from a new read.
    let mut gone = hub.subscribe_with(after(2, None)).await;
    let reset = gone.next().await.unwrap();
    assert_eq!(reset.event, "reset");
    assert_eq!(
        reset.last_event_id, ids[7],
        "a reconnect resumes from the head"
    );
    // Read the replay before publishing more: retention would prune position 6.
    for i in 5..8 {
        assert_eq!(kept.next().await.unwrap().data, i.to_string());
    }
    hub.publish("t", "sentinel").await;
    assert_eq!(collect(&mut kept).await, ["sentinel"]);
    assert_eq!(collect(&mut gone).await, ["sentinel"]);
}

#[tokio::test]
async fn shutdown_stores_pending_publishes_and_ends_streams() {
    let hub = TestHub::start(config()).await;
    let mut reader = hub.subscribe(&["t"], None, None).await;
    hub.publish("t", "before").await;
    hub.shutdown.cancel();
    hub.tracker.close();
    hub.tracker.wait().await;
    assert_eq!(reader.next().await.unwrap().data, "before");
    assert!(reader.next().await.is_none(), "the stream ends at shutdown");
    assert!(
        hub.hub
            .publish(Update {
                topics: vec!["t".into()],
                ..Update::default()
            })
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_closing_update_ends_the_streams_of_its_topics_right_after_itself() {
    let hub = TestHub::start(config()).await;
    // `closing` follows the control topic `u` and sees the closing update; `filtered`
    // follows `u` but not `a`, so it does not see it and still ends there; `other` goes on.
    let mut closing = hub.subscribe(&["a", "u"], None, None).await;
    let mut filtered = hub.subscribe(&["b", "u"], None, None).await;
    let mut other = hub.subscribe(&["a"], None, None).await;
    hub.publish("a", "before").await;
    // Concurrent publishers race the closing update; nothing after it may reach `closing`.
    let racer = {
        let hub = hub.hub.clone();
        tokio::spawn(async move {
            for i in 0..50 {
                let update = Update {
                    topics: vec!["a".into()],
                    data: format!("race {i}"),
                    ..Update::default()
                };
                hub.publish(update).await.unwrap();
            }
        })
    };
    hub.publish_update(Update {
        topics: vec!["a".into()],
        data: "the end".into(),
        closes: vec!["u".into()],
        ..Update::default()
    })
    .await;
    racer.await.unwrap();
    hub.publish("a", "after").await;

    let mut seen = Vec::new();
    while let Some(message) = closing.next().await {
        seen.push(message.data);
    }
    assert_eq!(seen.first().map(String::as_str), Some("before"));
    assert_eq!(seen.last().map(String::as_str), Some("the end"), "{seen:?}");
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while filtered.subscription.next().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the stream of `b` ends too");
    let mut rest = Vec::new();
    while let Some(message) = other.next().await {
        rest.push(message.data);
        if rest.last().is_some_and(|d| d == "after") {
            break;
        }
    }
    assert!(rest.contains(&"the end".to_owned()));

    // Replaying the closing update ends nothing: the new stream computed its rights after.
    let mut replay = hub.subscribe(&["a", "u"], None, Some("earliest")).await;
    let mut replayed = Vec::new();
    while let Some(message) = replay.next().await {
        replayed.push(message.data);
        if replayed.last().is_some_and(|d| d == "after") {
            break;
        }
    }
    assert!(replayed.contains(&"the end".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_id_is_stored_and_delivered_once() {
    let hub = TestHub::start(config()).await;
    let mut reader = hub.subscribe(&["t"], None, None).await;
    let update = |id: &str, data: &str| Update {
        topics: vec!["t".into()],
        data: data.into(),
        id: Some(id.into()),
        ..Update::default()
    };
    let first = hub.hub.publish(update("a", "first")).await.unwrap();
    let again = hub.hub.publish(update("a", "again")).await.unwrap();
    assert_eq!((&*again.id, again.seq), (&*first.id, first.seq));
    // Twice in one batch: enqueued together, before the sequencer takes either.
    let one = hub.hub.enqueue(update("b", "one")).await.unwrap();
    let two = hub.hub.enqueue(update("b", "two")).await.unwrap();
    let generated = hub.hub.enqueue(update("c", "three")).await.unwrap();
    let (one, two, generated) = (
        one.await.unwrap(),
        two.await.unwrap(),
        generated.await.unwrap(),
    );
    assert_eq!(one.seq, two.seq);
    assert_eq!(generated.seq, one.seq + 1, "positions stay contiguous");

    let seen: Vec<(String, String)> = {
        let mut seen = Vec::new();
        for _ in 0..3 {
            let m = reader.next().await.unwrap();
            seen.push((m.last_event_id, m.data));
        }
        seen
    };
    assert_eq!(
        seen,
        [("a", "first"), ("b", "one"), ("c", "three")].map(|(i, d)| (i.into(), d.into()))
    );
    // Nothing else was stored: a replay from the start holds the same three.
    let mut replay = hub.subscribe(&["t"], None, Some("earliest")).await;
    for (id, data) in seen {
        let m = replay.next().await.unwrap();
        assert_eq!((m.last_event_id, m.data), (id, data));
    }
    assert_eq!(
        hub.publish("t", "end").await,
        replay.next().await.unwrap().last_event_id
    );
}

#[tokio::test]
async fn selector_budgets_refuse_costly_subscriptions_and_are_given_back() {
    let template = |n: usize| format!("https://example.com/{n}/{{+a}}/{{+b}}{{?c,d}}");
    let cost = herald_hub::selector::Selector::parse(&template(0))
        .unwrap()
        .cost();
    assert!(cost > 0);
    let hub = TestHub::start(HubConfig {
        selector_budget: 3 * cost,
        selector_budget_total: 5 * cost,
        ..config()
    })
    .await;
    let subscribe = |templates: Vec<String>| {
        hub.hub.subscribe(SubscribeRequest {
            topics: templates.into_iter().map(Matcher::from).collect(),
            ..SubscribeRequest::default()
        })
    };
    // Per subscriber: three fit, four do not; exact topics and `*` cost nothing.
    let mut topics: Vec<String> = (0..3).map(template).collect();
    topics.extend(["*".into(), "exact".into()]);
    let three = subscribe(topics).await.unwrap();
    let error = subscribe((10..14).map(template).collect())
        .await
        .unwrap_err();
    assert!(
        matches!(error, herald_hub::SubscribeError::OverBudget { limit } if limit == 3 * cost),
        "{error}"
    );
    // The same templates again are shared, and charged to the hub once.
    let shared = subscribe((0..3).map(template).collect()).await.unwrap();
    // For the hub: five distinct templates in all.
    let two = subscribe((3..5).map(template).collect()).await.unwrap();
    let error = subscribe(vec![template(5)]).await.unwrap_err();
    assert!(
        matches!(error, herald_hub::SubscribeError::SelectorsFull),
        "{error}"
    );
    // Given back when the last subscriber holding them ends.
    drop(two);
    subscribe(vec![template(5)]).await.unwrap();
    drop((three, shared));
    subscribe((6..9).map(template).collect()).await.unwrap();
}

#[tokio::test]
async fn replay_pages_are_bounded_by_bytes() {
    // No history: the replay reads the log.
    let hub = TestHub::start(HubConfig {
        history_capacity: 0,
        ..config()
    })
    .await;
    let big = "x".repeat(100 * 1024);
    for _ in 0..10 {
        hub.publish("t", &big).await;
    }
    let mut subscription = hub
        .hub
        .subscribe(SubscribeRequest {
            topics: vec!["t".into()],
            last_event_id: Some("earliest".into()),
            ..SubscribeRequest::default()
        })
        .await
        .unwrap();
    let _prelude = subscription.next().await.unwrap();
    let mut events = 0;
    while events < 10 {
        let chunk = tokio::time::timeout(Duration::from_secs(5), subscription.next())
            .await
            .unwrap()
            .unwrap();
        assert!(
            chunk.len() < 512 * 1024,
            "a replay chunk of {} bytes",
            chunk.len()
        );
        events += chunk.windows(5).filter(|w| w == b"data:").count();
    }
}

/// A hub on a log that stores nothing, with a heartbeat every `every`.
async fn hub_with_heartbeat(every: Duration) -> (Hub, TaskTracker, CancellationToken) {
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    let hub = Hub::start(
        HubConfig {
            heartbeat: Some(every),
            ..HubConfig::default()
        },
        Arc::new(NullLog::default()),
        &tracker,
        shutdown.clone(),
    )
    .await
    .unwrap();
    (hub, tracker, shutdown)
}

/// Each tick of the heartbeat reaches one slice of the streams, never all of them at once,
/// and every stream gets exactly one heartbeat per interval.
#[tokio::test(start_paused = true)]
async fn heartbeats_are_spread_over_the_interval() {
    // Ticks of whole milliseconds, as the timer counts them.
    let every = Duration::from_millis(12_800);
    let slices = heartbeat_slices(every);
    assert_eq!(slices, 128);
    let tick = every / slices;
    assert!(tick >= HEARTBEAT_MIN_TICK);
    let (hub, tracker, shutdown) = hub_with_heartbeat(every).await;
    let streams = 4 * slices as usize;
    let mut subscriptions = Vec::with_capacity(streams);
    for _ in 0..streams {
        subscriptions.push(
            hub.subscribe(SubscribeRequest {
                topics: vec!["t".into()],
                ..SubscribeRequest::default()
            })
            .await
            .unwrap(),
        );
    }
    // Each stream's heartbeats so far, counted from the comment frames it was handed.
    let mut counts = vec![0usize; streams];
    let mut count_new = |subscriptions: &mut Vec<Subscription>| {
        let mut reached = 0;
        for (subscription, count) in subscriptions.iter_mut().zip(counts.iter_mut()) {
            while let Some(Some(chunk)) = subscription.next().now_or_never() {
                let comments = chunk
                    .split(|&b| b == b'\n')
                    .filter(|l| l.first() == Some(&b':'))
                    .count();
                *count += comments;
                reached += comments;
            }
        }
        reached
    };
    count_new(&mut subscriptions);
    for _ in 0..2 * slices {
        tokio::time::sleep(tick).await;
        tokio::task::yield_now().await;
        let reached = count_new(&mut subscriptions);
        assert_eq!(reached, streams / slices as usize, "one slice per tick");
    }
    assert!(
        counts.iter().all(|&c| c == 2),
        "two intervals, two heartbeats each: {counts:?}"
    );
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
}

#[tokio::test(start_paused = true)]
async fn an_idle_stream_gets_a_heartbeat_each_interval_until_shutdown() {
    let every = Duration::from_secs(15);
    let (hub, tracker, shutdown) = hub_with_heartbeat(every).await;
    let started = tokio::time::Instant::now();
    let mut reader = Reader {
        subscription: hub
            .subscribe(SubscribeRequest {
                topics: vec!["t".into()],
                ..SubscribeRequest::default()
            })
            .await
            .unwrap(),
        decoder: Decoder::new(),
    };
    // The time each of the first two comments arrived at, other items skipped.
    let mut heartbeats = Vec::new();
    while heartbeats.len() < 2 {
        match reader.decoder.next_item().unwrap() {
            Some(Item::Comment(_)) => heartbeats.push(started.elapsed()),
            Some(item) => assert!(matches!(item, Item::Retry(_)), "{item:?}"),
            None => {
                let chunk = reader
                    .subscription
                    .next()
                    .await
                    .expect("the stream is open");
                reader.decoder.push(&chunk);
            }
        }
    }
    // The first within an interval of opening, then exactly one interval apart.
    assert!(heartbeats[0] <= every, "{heartbeats:?}");
    assert_eq!(heartbeats[1] - heartbeats[0], every);

    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
    assert!(
        reader.subscription.next().await.is_none(),
        "the stream ends at shutdown"
    );
}
