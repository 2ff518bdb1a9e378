//! The replay-to-live hand-over under racing publishes: subscribers that keep
//! disconnecting and resuming by id while publishers publish as fast as they can must
//! still see exactly the log, in order, with no gap and no duplicate.

use std::collections::{HashMap, HashSet};

use crate::support::{SubscribeReq, TestServer, admin_token, token};

const A: &str = "https://example.com/race/a";
const B: &str = "https://example.com/race/b";
const ANY: &str = "https://example.com/race/{which}";
/// The selectors subscribers use, round robin.
const SELECTORS: [&str; 3] = [A, B, ANY];
const UPDATES: usize = 500;
const PUBLISHERS: usize = 4;
const SUBSCRIBERS: usize = 20;
/// The last update, on every topic; subscribers stop when they see it.
const END: &str = "end";

/// The topics of update `n` of a publisher: mostly A, some B, some both.
fn topics_of(n: usize) -> &'static [&'static str] {
    match n % 5 {
        0 | 1 => &[A],
        2 | 3 => &[B],
        _ => &[A, B],
    }
}

fn selects(selector: &str, topics: &[&str]) -> bool {
    selector == ANY || topics.contains(&selector)
}

/// Publishes `count` updates as fast as acknowledgements come; returns the ids in ack
/// order.
async fn publisher(http: reqwest::Client, hub: String, index: usize, count: usize) -> Vec<String> {
    let token = admin_token();
    let mut acked = Vec::with_capacity(count);
    for n in 0..count {
        let id = format!("p{index}-{n}");
        let mut form: Vec<(&str, &str)> = topics_of(n).iter().map(|t| ("topic", *t)).collect();
        form.push(("id", &id));
        form.push(("data", &id));
        let response = http
            .post(&hub)
            .bearer_auth(&token)
            .form(&form)
            .send()
            .await
            .expect("publish");
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), id);
        acked.push(id);
    }
    acked
}

/// Reads a few events, drops the connection, resumes after the last id received, and so
/// on until [`END`]; returns every id received, in order.
async fn subscriber(base: SubscribeReq, index: usize, first: crate::support::Sse) -> Vec<String> {
    let mut received: Vec<String> = Vec::new();
    let mut sse = first;
    for round in 0usize.. {
        // 0 to 8 events per connection; 0 means connect and drop at once.
        let quota = (index * 7 + round * 3) % 9;
        for _ in 0..quota {
            let id = sse.next_message().await.last_event_id;
            let done = id == END;
            received.push(id);
            if done {
                return received;
            }
        }
        drop(sse);
        let request = base.clone();
        sse = match received.last() {
            // Nothing received yet: everything retained (all of it was published after
            // this subscriber first registered).
            None => request.query("lastEventID", "earliest"),
            Some(last) if round % 2 == 0 => request.last_event_id(last),
            Some(last) => request.query("lastEventID", last),
        }
        .open()
        .await;
    }
    unreachable!()
}

async fn race(args: &[&str]) {
    let server = TestServer::with_args(args).await;
    let subscriber_token = token(&[], &[]);

    // Every subscriber registers before the first publish, so it must see all of them.
    let mut subscribers = Vec::new();
    for index in 0..SUBSCRIBERS {
        let selector = SELECTORS[index % SELECTORS.len()];
        let base = server.subscribe().topic(selector).bearer(&subscriber_token);
        let first = base.clone().open().await;
        subscribers.push((selector, tokio::spawn(subscriber(base, index, first))));
    }
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|index| {
            tokio::spawn(publisher(
                server.http.clone(),
                server.hub_url(),
                index,
                UPDATES / PUBLISHERS,
            ))
        })
        .collect();
    let mut acked = Vec::new();
    for publisher in publishers {
        acked.push(publisher.await.expect("publisher"));
    }
    server
        .publish(&[("topic", A), ("topic", B), ("id", END)])
        .await;

    // The log's order, as an `earliest` reader sees it.
    let mut reader = server
        .subscribe()
        .topic(ANY)
        .bearer(&subscriber_token)
        .query("lastEventID", "earliest")
        .open()
        .await;
    let log = reader.ids_until(END).await;
    assert_eq!(log.len(), UPDATES + 1);
    let unique: HashSet<&String> = log.iter().collect();
    assert_eq!(unique.len(), log.len(), "an id appears twice in the log");
    // Each publisher waited for each ack: its updates are in the log in ack order.
    let position: HashMap<&str, usize> = log
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    for ids in &acked {
        let positions: Vec<usize> = ids.iter().map(|id| position[id.as_str()]).collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "acks out of log order"
        );
    }
    let topics: HashMap<String, &[&str]> = acked
        .iter()
        .flat_map(|ids| {
            ids.iter()
                .enumerate()
                .map(|(n, id)| (id.clone(), topics_of(n)))
        })
        .chain([(END.to_owned(), &[A, B][..])])
        .collect();

    for (index, (selector, task)) in subscribers.into_iter().enumerate() {
        let received = task.await.expect("subscriber");
        let expected: Vec<&String> = log
            .iter()
            .filter(|id| selects(selector, topics[*id]))
            .collect();
        let received: Vec<&String> = received.iter().collect();
        if received != expected {
            let first_difference = received
                .iter()
                .zip(&expected)
                .position(|(a, b)| a != b)
                .unwrap_or(received.len().min(expected.len()));
            panic!(
                "subscriber {index} ({selector}) received {} events, expected {}; \
                 first difference at {first_difference}: got {:?}, expected {:?}",
                received.len(),
                expected.len(),
                received.get(first_difference..(first_difference + 5).min(received.len())),
                expected.get(first_difference..(first_difference + 5).min(expected.len())),
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_subscribers_see_the_log_exactly() {
    race(&[]).await;
}

/// With a tiny in-memory history, most replays read the SQLite log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_subscribers_see_the_log_exactly_when_replaying_from_disk() {
    race(&["--history-size", "8"]).await;
}
