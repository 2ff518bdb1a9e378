//! Conformance of subscribing and publishing to the Mercure rules this hub implements, for
//! both dialects: 0.x (`topic=`) and 1.0 (`match`, `match_exact`, `match_urlpattern`), on
//! one hub at the same time. Each test states its rule in one line.

use reqwest::StatusCode;

use crate::support::{ApiError, TestServer, admin_token, header};

const BOOK: &str = "https://example.com/books/1";
const AUTHOR: &str = "https://example.com/authors/1";

fn bad_request(message: &str) -> ApiError {
    ApiError::new(400, "bad_request", message)
}

// An exact matcher selects the topic equal to it byte for byte, braces included, in
// either dialect's parameter.
#[tokio::test]
async fn exact_matchers_select_their_topic_only() {
    let server = TestServer::with_args(&["--anonymous"]).await;
    let mut by_match = server.subscribe().query("match", BOOK).open().await;
    let mut by_match_exact = server
        .subscribe()
        .query("match_exact", "https://example.com/{x}")
        .open()
        .await;
    let mut by_topic = server.subscribe().topic(BOOK).open().await;
    server.publish_id(AUTHOR, "author").await;
    server.publish_id("https://example.com/y", "y").await;
    server.publish_id("https://example.com/{x}", "braces").await;
    server.publish_id(BOOK, "book").await;
    assert_eq!(by_match.ids_until("book").await, ["book"]);
    assert_eq!(by_topic.ids_until("book").await, ["book"]);
    assert_eq!(by_match_exact.ids_until("braces").await, ["braces"]);
}

// A URL Pattern selects the topics it matches, a relative pattern or topic being resolved
// against the hub's URL; it can be mixed with 0.x selectors in one request.
#[tokio::test]
async fn url_patterns_select_matching_topics() {
    let server = TestServer::with_args(&["--anonymous"]).await;
    let mut absolute = server
        .subscribe()
        .query("match_urlpattern", "https://example.com/books/:id")
        .open()
        .await;
    let mut relative = server
        .subscribe()
        .query("match_urlpattern", "/:type(news|alerts)/:id")
        .topic(AUTHOR)
        .open()
        .await;
    server
        .publish_id("https://example.com/books/1/x", "deeper")
        .await;
    server
        .publish_id("https://example.com/Books/1", "case")
        .await;
    server.publish_id("/sport/1", "sport").await;
    server.publish_id(BOOK, "book").await;
    server.publish_id("/news/1", "news").await;
    server
        .publish_id("http://localhost/alerts/2", "alert")
        .await;
    server.publish_id(AUTHOR, "author").await;
    assert_eq!(absolute.ids_until("book").await, ["book"]);
    assert_eq!(
        relative.ids_until("author").await,
        ["news", "alert", "author"]
    );
}

// A parameter named like a matcher (any case) but not one of the three is refused.
#[tokio::test]
async fn unknown_match_parameters_are_refused() {
    let server = TestServer::with_args(&["--anonymous"]).await;
    for name in ["matchURLPattern", "MATCH", "match_regex", "Matches"] {
        let error = server
            .subscribe()
            .query(name, BOOK)
            .topic(BOOK)
            .error()
            .await;
        assert_eq!(error.status, 400, "{name}");
    }
}

// Matcher values holding C0, C1 or DEL control characters are refused, in both dialects.
#[tokio::test]
async fn control_characters_in_matchers_are_refused() {
    let server = TestServer::with_args(&["--anonymous"]).await;
    for (name, value) in [
        ("match", "a\u{1}b"),
        ("match_urlpattern", "/a\u{7f}"),
        ("topic", "a\u{85}b"),
        ("match_exact", "a\nb"),
    ] {
        let error = server.subscribe().query(name, value).error().await;
        assert_eq!(
            error,
            bad_request(&format!(
                "the value of {name:?} is not UTF-8 or holds a control character"
            ))
        );
    }
}

// A hostile URL Pattern is refused by the selector budget before it costs the hub.
#[tokio::test]
async fn costly_url_patterns_are_refused() {
    let server = TestServer::with_args(&["--anonymous"]).await;
    let error = server
        .subscribe()
        .query("match_urlpattern", "/:x((?:\\w{100}){100})")
        .error()
        .await;
    assert_eq!(error.status, 400, "{error:?}");
    assert!(
        error
            .message
            .starts_with("the topic selectors are too costly"),
        "{error:?}"
    );
    // The hub still serves.
    let mut sse = server.subscribe().query("match", BOOK).open().await;
    server.publish_id(BOOK, "after").await;
    assert_eq!(sse.ids_until("after").await, ["after"]);
}

// The resume id comes from the header first, then `last_event_id`, then `lastEventID`.
#[tokio::test]
async fn the_resume_id_has_one_precedence() {
    let server = TestServer::with_args(&["--anonymous"]).await;
    for id in ["1", "2", "3", "4"] {
        server.publish_id(BOOK, id).await;
    }
    let cases = [
        (Some("3"), Some("1"), Some("2"), ["4"].as_slice()),
        (None, Some("2"), Some("1"), ["3", "4"].as_slice()),
        (None, None, Some("1"), ["2", "3", "4"].as_slice()),
    ];
    for dialect in ["match", "topic"] {
        for (header_id, new_id, old_id, want) in cases {
            let mut request = server.subscribe().query(dialect, BOOK);
            if let Some(id) = header_id {
                request = request.last_event_id(id);
            }
            if let Some(id) = new_id {
                request = request.query("last_event_id", id);
            }
            if let Some(id) = old_id {
                request = request.query("lastEventID", id);
            }
            let mut sse = request.open().await;
            assert_eq!(sse.ids_until("4").await, want, "{dialect} {header_id:?}");
        }
    }
}

// A request with a resume id learns in `Mercure-Last-Event-ID` whether it was found (the
// id) or not (`earliest`); a 0.x request still gets the log's head in `Last-Event-ID`.
#[tokio::test]
async fn the_response_says_whether_the_resume_id_was_found() {
    let server = TestServer::with_args(&["--anonymous"]).await;
    server.publish_id(BOOK, "1").await;
    server.publish_id(BOOK, "2").await;
    for dialect in ["match", "topic"] {
        let found = server
            .subscribe()
            .query(dialect, BOOK)
            .query("last_event_id", "1")
            .open()
            .await;
        assert_eq!(header(&found.headers, "mercure-last-event-id"), "1");
        let unknown = server
            .subscribe()
            .query(dialect, BOOK)
            .last_event_id("nope")
            .open()
            .await;
        assert_eq!(
            header(&unknown.headers, "mercure-last-event-id"),
            "earliest"
        );
        let fresh = server.subscribe().query(dialect, BOOK).open().await;
        assert!(fresh.headers.get("mercure-last-event-id").is_none());
        let head = if dialect == "topic" { "2" } else { "" };
        assert_eq!(header(&fresh.headers, "last-event-id"), head, "{dialect}");
    }
}

// A long-poll takes 1.0 matchers and resume ids as a stream does.
#[tokio::test]
async fn a_long_poll_takes_1_0_matchers() {
    let server = TestServer::with_args(&["--anonymous"]).await;
    server.publish_id(BOOK, "1").await;
    server.publish_id(AUTHOR, "2").await;
    server.publish_id(BOOK, "3").await;
    let response = server
        .subscribe()
        .query("match_urlpattern", "https://example.com/books/*")
        .query("last_event_id", "1")
        .header("accept", "application/json")
        .send()
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    let ids: Vec<&str> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["3"], "{body}");
}

// `QUERY` subscribes with a form body whose parameters join the query string's, and
// subscription responses advertise it in `Accept-Query`.
#[tokio::test]
async fn query_subscribes_with_a_form_body() {
    let server = TestServer::with_args(&["--anonymous"]).await;
    let query = reqwest::Method::from_bytes(b"QUERY").unwrap();
    let response = server
        .http
        .request(query.clone(), server.hub_url())
        .query(&[("match", BOOK)])
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("topic={}", urlencode(AUTHOR)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(response.headers(), "accept-query"),
        "application/x-www-form-urlencoded"
    );
    let mut sse = crate::support::Sse::new(response);
    server.publish_id(AUTHOR, "author").await;
    server
        .publish_id("https://example.com/other", "other")
        .await;
    server.publish_id(BOOK, "book").await;
    assert_eq!(sse.ids_until("book").await, ["author", "book"]);

    let get = server.subscribe().query("match", BOOK).send().await;
    assert_eq!(
        header(get.headers(), "accept-query"),
        "application/x-www-form-urlencoded"
    );

    // Only a form body, and only `QUERY` beside the methods the route always had.
    let json = server
        .http
        .request(query, server.hub_url())
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(ApiError::read(json).await.status, 415);
    let delete = server.http.delete(server.hub_url()).send().await.unwrap();
    assert_eq!(ApiError::read(delete).await.status, 405);
}

// Publishing refuses what an event cannot carry: control characters in topics, the topic
// `*`, the event type `mercure`, ids beginning with `#` or holding CR, LF or NUL, and a
// non-digit `retry`.
#[tokio::test]
async fn publishes_with_forbidden_fields_are_refused() {
    let server = TestServer::start().await;
    for form in [
        vec![("topic", "a\u{1}")],
        vec![("topic", "a\u{85}")],
        vec![("topic", "*")],
        vec![("topic", BOOK), ("type", "mercure")],
        vec![("topic", BOOK), ("type", "a\0b")],
        vec![("topic", BOOK), ("id", "#1")],
        vec![("topic", BOOK), ("id", "a\rb")],
        vec![("topic", BOOK), ("retry", "1s")],
    ] {
        let response = server.publish_with(Some(&admin_token()), &form).await;
        assert_eq!(ApiError::read(response).await.status, 400, "{form:?}");
    }
}

// No update may be published under the hub's own path, however the topic spells it.
#[tokio::test]
async fn the_hub_namespace_is_not_publishable() {
    let server = TestServer::start().await;
    for topic in [
        "/.well-known/mercure",
        "/.well-known/mercure/subscriptions/exact/a/b",
        "https://example.com/.well-known/mercure/subscriptions",
    ] {
        let response = server
            .publish_with(Some(&admin_token()), &[("topic", topic)])
            .await;
        assert_eq!(ApiError::read(response).await.status, 403, "{topic}");
    }
    // Spelled with dot segments, a topic is refused before its path is even looked at: a
    // URL Pattern would read it without them, an exact matcher with them.
    for topic in [
        "/x/../.well-known/mercure/x",
        "/.well-known/mercure/subscriptions/x/../../../../y",
        "https://example.com/x/%2e%2E/.well-known/mercure",
    ] {
        let response = server
            .publish_with(Some(&admin_token()), &[("topic", topic)])
            .await;
        assert_eq!(ApiError::read(response).await.status, 400, "{topic}");
    }
    // A sibling path is not the hub's.
    assert!(
        !server
            .publish(&[("topic", "/.well-known/mercurex")])
            .await
            .is_empty()
    );
}

// Fields the hub does not know are ignored, and `private` counts by its presence alone,
// for subscribers of both dialects.
#[tokio::test]
async fn unknown_fields_are_ignored_and_private_is_presence() {
    let server = TestServer::with_args(&["--anonymous"]).await;
    let mut by_match = server.subscribe().query("match", BOOK).open().await;
    let mut by_topic = server.subscribe().topic(BOOK).open().await;
    server
        .publish(&[("topic", BOOK), ("id", "false"), ("private", "false")])
        .await;
    server
        .publish(&[("topic", BOOK), ("id", "colour"), ("colour", "red")])
        .await;
    assert_eq!(by_match.ids_until("colour").await, ["colour"]);
    assert_eq!(by_topic.ids_until("colour").await, ["colour"]);
}

// Publishes over the limits (too many topics, a field too long) get 413, with a body that
// says which limit.
#[tokio::test]
async fn publishes_over_the_limits_are_too_large() {
    let server = TestServer::with_args(&["--max-topics", "2"]).await;
    let long = "t".repeat(2049);
    for (form, message) in [
        (
            vec![("topic", "a"), ("topic", "b"), ("topic", "c")],
            "too many topics: 3 (the limit is 2)",
        ),
        (
            vec![("topic", long.as_str())],
            "invalid topic: longer than 2048 bytes",
        ),
    ] {
        let response = server.publish_with(Some(&admin_token()), &form).await;
        assert_eq!(
            ApiError::read(response).await,
            ApiError::new(413, "payload_too_large", message)
        );
    }
}

fn urlencode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
