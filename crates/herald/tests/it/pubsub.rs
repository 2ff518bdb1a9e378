//! Publish and subscribe basics: selectors, the exact wire format of events, the stream's
//! headers, and the ids the hub answers.

use futures::StreamExt;
use herald_client::{Client, Publication};
use herald_sse::{Item, Message};

use crate::support::{TestServer, admin_token, header, token};

const BOOK: &str = "https://example.com/books/1";
const USER: &str = "https://example.com/users/1";
const BOOKS: &str = "https://example.com/books/{id}";

fn message(id: &str, event: &str, data: &str) -> Message {
    Message {
        event: event.to_owned(),
        data: data.to_owned(),
        last_event_id: id.to_owned(),
    }
}

#[tokio::test]
async fn stream_headers_and_prelude() {
    let server = TestServer::start().await;
    let mut sse = server
        .subscribe()
        .topic(BOOK)
        .bearer(&token(&[], &[]))
        .open()
        .await;
    assert_eq!(sse.status, 200);
    let h = &sse.headers;
    assert_eq!(
        header(h, "content-type"),
        "text/event-stream; charset=utf-8"
    );
    assert_eq!(header(h, "cache-control"), "no-cache, no-transform");
    assert_eq!(header(h, "x-accel-buffering"), "no");
    assert_eq!(header(h, "link"), "</.well-known/mercure>; rel=\"mercure\"");
    // Nothing published yet: no Last-Event-ID header.
    assert_eq!(header(h, "last-event-id"), "");

    assert_eq!(sse.next_item().await, Some(Item::Retry(3000)));
    assert_eq!(sse.raw, b"retry: 3000\n\n");

    // Once something is published, a new stream names the newest id in Last-Event-ID.
    server.publish_id(BOOK, "first").await;
    let later = server
        .subscribe()
        .topic(BOOK)
        .bearer(&token(&[], &[]))
        .open()
        .await;
    assert_eq!(header(&later.headers, "last-event-id"), "first");
}

#[tokio::test]
async fn event_fields_and_data_come_back_exactly() {
    let server = TestServer::start().await;
    let mut sse = server
        .subscribe()
        .topic(BOOK)
        .bearer(&token(&[], &[]))
        .open()
        .await;
    assert_eq!(sse.next_item().await, Some(Item::Retry(3000)));

    let id = server
        .publish(&[
            ("topic", BOOK),
            ("data", "a\n\nb\n"),
            ("id", "book-1-v2"),
            ("type", "book.updated"),
            ("retry", "1500"),
        ])
        .await;
    assert_eq!(id, "book-1-v2");
    // `retry:` is reported as its own item, before the event of its block.
    assert_eq!(sse.next_item().await, Some(Item::Retry(1500)));
    assert_eq!(
        sse.next_item().await,
        Some(Item::Message(message(
            "book-1-v2",
            "book.updated",
            "a\n\nb\n"
        )))
    );
    let after_prelude = &sse.raw[b"retry: 3000\n\n".len()..];
    assert_eq!(
        std::str::from_utf8(after_prelude).unwrap(),
        "id: book-1-v2\nevent: book.updated\nretry: 1500\ndata: a\ndata:\ndata: b\ndata:\n\n"
    );

    // No type: the default event name; empty data still dispatches; CRLF becomes LF;
    // leading spaces and colons in data survive.
    server.publish(&[("topic", BOOK), ("id", "plain")]).await;
    assert_eq!(sse.next_message().await, message("plain", "message", ""));
    server
        .publish(&[("topic", BOOK), ("id", "odd"), ("data", " x: y\r\nz\r")])
        .await;
    assert_eq!(
        sse.next_message().await,
        message("odd", "message", " x: y\nz\n")
    );
    // UTF-8 in ids, types and data.
    server
        .publish(&[
            ("topic", BOOK),
            ("id", "ünïcode-€"),
            ("type", "état"),
            ("data", "😀 日本"),
        ])
        .await;
    assert_eq!(
        sse.next_message().await,
        message("ünïcode-€", "état", "😀 日本")
    );
}

#[tokio::test]
async fn generated_ids_are_urn_uuids() {
    let server = TestServer::start().await;
    let mut sse = server
        .subscribe()
        .topic(BOOK)
        .bearer(&token(&[], &[]))
        .open()
        .await;
    let first = server.publish(&[("topic", BOOK), ("data", "x")]).await;
    let second = server.publish(&[("topic", BOOK), ("data", "y")]).await;
    for id in [&first, &second] {
        let uuid = id
            .strip_prefix("urn:uuid:")
            .unwrap_or_else(|| panic!("{id} is not a urn:uuid"));
        uuid::Uuid::parse_str(uuid).unwrap_or_else(|e| panic!("{id}: {e}"));
    }
    assert_ne!(first, second);
    assert_eq!(sse.next_message().await, message(&first, "message", "x"));
    assert_eq!(sse.next_message().await, message(&second, "message", "y"));
}

#[tokio::test]
async fn selectors_exact_wildcard_and_template() {
    let server = TestServer::start().await;
    let t = token(&[], &[]);
    let mut exact = server.subscribe().topic(BOOK).bearer(&t).open().await;
    let mut all = server.subscribe().topic("*").bearer(&t).open().await;
    let mut books = server.subscribe().topic(BOOKS).bearer(&t).open().await;
    let mut users = server.subscribe().topic(USER).bearer(&t).open().await;
    let mut both = server
        .subscribe()
        .topic(BOOK)
        .topic(USER)
        .bearer(&t)
        .open()
        .await;

    server.publish_id(USER, "u1").await;
    server.publish_id("https://example.com/books/2", "b2").await;
    server.publish_id(BOOK, "b1").await;
    server.publish_id("urn:other", "o1").await;
    // One update on two topics a subscriber selects both of: delivered once.
    server
        .publish(&[
            ("topic", BOOK),
            ("topic", USER),
            ("id", "bu"),
            ("data", "bu"),
        ])
        .await;
    // A sentinel every subscriber selects ends each stream's expectations.
    server
        .publish(&[
            ("topic", BOOK),
            ("topic", USER),
            ("id", "end"),
            ("data", "end"),
        ])
        .await;

    assert_eq!(exact.ids_until("end").await, ["b1", "bu", "end"]);
    assert_eq!(
        all.ids_until("end").await,
        ["u1", "b2", "b1", "o1", "bu", "end"]
    );
    // The template matches books/1 and books/2, not users/1 or urn:other.
    assert_eq!(books.ids_until("end").await, ["b2", "b1", "bu", "end"]);
    assert_eq!(users.ids_until("end").await, ["u1", "bu", "end"]);
    assert_eq!(both.ids_until("end").await, ["u1", "b1", "bu", "end"]);
}

#[tokio::test]
async fn herald_client_round_trip() {
    let server = TestServer::start().await;
    let client = Client::new(server.url()).with_token(admin_token());
    assert_eq!(client.hub_url(), server.hub_url());
    let mut events = client.subscribe([BOOKS]).reconnect(false).stream();
    // The client connects lazily, on first poll: wait until the hub has registered it.
    let first = tokio::spawn(async move {
        let event = events.next().await;
        (event, events)
    });
    server
        .wait_metric("herald_subscribers", crate::support::ITEM_TIMEOUT, |v| {
            v == 1.0
        })
        .await;
    let mut publication = Publication::new(BOOK, "line 1\nline 2");
    publication.event_type = Some("book.created".into());
    publication.id = Some("c1".into());
    assert_eq!(client.publish(&publication).await.unwrap(), "c1");
    let generated = client
        .publish(&Publication::new("https://example.com/books/2", "two"))
        .await
        .unwrap();
    assert!(generated.starts_with("urn:uuid:"), "{generated}");

    let (event, mut events) = first.await.unwrap();
    assert_eq!(
        event.unwrap().unwrap(),
        message("c1", "book.created", "line 1\nline 2")
    );
    assert_eq!(
        events.next().await.unwrap().unwrap(),
        message(&generated, "message", "two")
    );

    // A refusal is an error with the status.
    let error = Client::new(server.url())
        .publish(&Publication::new(BOOK, "x"))
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(401));
}
