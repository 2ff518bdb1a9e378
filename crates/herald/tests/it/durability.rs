//! Durability: an acknowledged update survives `kill -9`, replays exactly after a restart,
//! and a graceful shutdown (SIGTERM) ends open streams and exits 0 promptly.

use std::time::Duration;

use herald_sse::Message;
use tokio::time::Instant;

use crate::support::{TestServer, token};

const T: &str = "https://example.com/durable";

#[tokio::test]
async fn acknowledged_updates_survive_kill_9() {
    let mut server = TestServer::start().await;
    let ids: Vec<String> = (1..=10).map(|n| format!("d{n}")).collect();
    for id in &ids[..5] {
        server.publish_id(T, id).await;
    }
    // Every field survives, and a private update stays private.
    server
        .publish(&[
            ("topic", T),
            ("topic", "urn:second"),
            ("id", "full"),
            ("type", "kind"),
            ("retry", "2500"),
            ("private", "on"),
            ("data", "line 1\n\nline 3"),
        ])
        .await;
    for id in &ids[5..] {
        server.publish_id(T, id).await;
    }
    let pid = server.pid();
    server.kill9().await;
    server.restart().await;
    assert_ne!(server.pid(), pid);

    let public = token(&[], &[]);
    let mut from_d3 = server
        .subscribe()
        .topic(T)
        .bearer(&public)
        .last_event_id("d3")
        .open()
        .await;
    let mut everything = server
        .subscribe()
        .topic("urn:second")
        .topic(T)
        .bearer(&token(&[], &["urn:second"]))
        .query("lastEventID", "earliest")
        .open()
        .await;
    // Generated ids keep working after the restart.
    let generated = server
        .publish(&[("topic", T), ("data", "after restart")])
        .await;
    assert!(generated.starts_with("urn:uuid:"), "{generated}");

    let mut expected: Vec<&str> = ids[3..].iter().map(String::as_str).collect();
    expected.push(&generated);
    assert_eq!(from_d3.ids_until(&generated).await, expected);

    let mut all: Vec<Message> = Vec::new();
    loop {
        let message = everything.next_message().await;
        let done = message.last_event_id == generated;
        all.push(message);
        if done {
            break;
        }
    }
    let mut expected: Vec<&str> = ids[..5].iter().map(String::as_str).collect();
    expected.push("full");
    expected.extend(ids[5..].iter().map(String::as_str));
    expected.push(&generated);
    assert_eq!(crate::support::ids(&all), expected);
    assert_eq!(
        all[5],
        Message {
            event: "kind".into(),
            data: "line 1\n\nline 3".into(),
            last_event_id: "full".into(),
        }
    );
    assert_eq!(all[0].data, "d1");
    assert_eq!(all.last().unwrap().data, "after restart");
    // The retry field was stored too.
    let raw = String::from_utf8_lossy(&everything.raw);
    assert!(
        raw.contains("id: full\nevent: kind\nretry: 2500\ndata: line 1\ndata:\ndata: line 3\n\n"),
        "{raw}"
    );

    // Resuming after an id generated since the restart works.
    let mut after_generated = server
        .subscribe()
        .topic(T)
        .bearer(&public)
        .last_event_id(&generated)
        .open()
        .await;
    server.publish_id(T, "d11").await;
    assert_eq!(after_generated.ids_until("d11").await, ["d11"]);
}

#[tokio::test]
async fn sigterm_ends_open_streams_and_exits_zero() {
    let mut server = TestServer::start().await;
    let mut sse = server
        .subscribe()
        .topic(T)
        .bearer(&token(&[], &[]))
        .open()
        .await;
    server.publish_id(T, "before").await;
    assert_eq!(sse.next_message().await.last_event_id, "before");

    let started = Instant::now();
    let status = server.terminate().await;
    let took = started.elapsed();
    assert_eq!(
        status.code(),
        Some(0),
        "{status:?}; stderr:\n{}",
        server.stderr()
    );
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    // The stream ends instead of hanging; the client will reconnect and resume by id.
    sse.expect_end(Duration::from_secs(5)).await;

    // What was acknowledged before the shutdown is there after a restart.
    server.restart().await;
    let mut again = server
        .subscribe()
        .topic(T)
        .bearer(&token(&[], &[]))
        .query("lastEventID", "earliest")
        .open()
        .await;
    assert_eq!(again.next_message().await.last_event_id, "before");
}

/// A client that stops reading cannot hold a graceful shutdown hostage: after
/// `--shutdown-grace` the server exits anyway, with status 0.
#[tokio::test]
async fn sigterm_with_a_stalled_client_is_bounded_by_the_grace_period() {
    let mut server = TestServer::with_args(&["--shutdown-grace", "1s", "--anonymous"]).await;
    let stalled = crate::support::RawStream::get(
        server.addr(),
        "/.well-known/mercure?topic=https%3A%2F%2Fexample.com%2Fdurable",
        &[],
        4096,
    )
    .await;
    server
        .wait_metric("herald_subscribers", crate::support::ITEM_TIMEOUT, |v| {
            v == 1.0
        })
        .await;
    // More than the socket buffers hold: the response cannot finish while nobody reads.
    let data = "x".repeat(512 * 1024);
    for n in 0..12 {
        server
            .publish(&[("topic", T), ("id", &format!("big{n}")), ("data", &data)])
            .await;
    }
    let started = Instant::now();
    let status = server.terminate().await;
    let took = started.elapsed();
    assert_eq!(
        status.code(),
        Some(0),
        "{status:?}; stderr:\n{}",
        server.stderr()
    );
    assert!(
        (Duration::from_secs(1)..Duration::from_secs(5)).contains(&took),
        "shutdown took {took:?} with a 1 s grace period"
    );
    assert!(
        server.stderr().contains("shutdown grace period elapsed"),
        "{}",
        server.stderr()
    );
    drop(stalled);
}
