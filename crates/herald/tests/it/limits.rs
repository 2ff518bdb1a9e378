//! Limits and bad input: each refusal has the right status and a JSON body that says what
//! is wrong, and changes nothing. Stream limits, globally and per client address, free
//! their slot when a stream closes.

use std::net::IpAddr;

use crate::support::{ApiError, ITEM_TIMEOUT, TestServer, admin_token, http_client, token};

const T: &str = "https://example.com/limited";

fn bad_request(message: &str) -> ApiError {
    ApiError::new(400, "bad_request", message)
}

/// POSTs `body` as it is, with `content_type` (if any), with a token that may publish
/// anywhere.
async fn post_raw(server: &TestServer, content_type: Option<&str>, body: Vec<u8>) -> ApiError {
    let mut request = server
        .http
        .post(server.hub_url())
        .bearer_auth(admin_token())
        .body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let response = request.send().await.expect("POST the hub");
    ApiError::read(response).await
}

#[tokio::test]
async fn bad_publishes_are_refused_and_store_nothing() {
    let server = TestServer::with_args(&["--max-body", "1024", "--max-topics", "3"]).await;
    let form = Some("application/x-www-form-urlencoded");
    let long_id = "i".repeat(257);
    let too_big = format!("topic=a&data={}", "x".repeat(2000));
    let cases: Vec<(Option<&str>, Vec<u8>, ApiError)> = vec![
        (
            form,
            too_big.into_bytes(),
            ApiError::new(
                413,
                "payload_too_large",
                "the body is larger than 1024 bytes",
            ),
        ),
        (
            form,
            b"topic=a&topic=b&topic=c&topic=d".to_vec(),
            ApiError::new(
                413,
                "payload_too_large",
                "too many topics: 4 (the limit is 3)",
            ),
        ),
        (
            form,
            b"data=x".to_vec(),
            bad_request("at least one topic is required"),
        ),
        (
            form,
            b"".to_vec(),
            bad_request("at least one topic is required"),
        ),
        (
            form,
            b"topic=&data=x".to_vec(),
            bad_request("invalid topic: must not be empty"),
        ),
        (
            form,
            b"topic=a&data=1&data=2".to_vec(),
            bad_request("the field \"data\" is given more than once"),
        ),
        (
            form,
            b"topic=a&id=1&id=2".to_vec(),
            bad_request("the field \"id\" is given more than once"),
        ),
        (
            form,
            b"topic=a&retry=abc".to_vec(),
            bad_request("retry must be a number of milliseconds, not \"abc\""),
        ),
        (
            form,
            b"topic=a&retry=99999999999999999999999".to_vec(),
            bad_request("retry is too large"),
        ),
        (
            form,
            b"topic=a&id=a%0Ab".to_vec(),
            bad_request("invalid id: must not contain CR, LF or NUL"),
        ),
        (
            form,
            b"topic=a&id=a%0Db".to_vec(),
            bad_request("invalid id: must not contain CR, LF or NUL"),
        ),
        (
            form,
            b"topic=a&id=a%00b".to_vec(),
            bad_request("invalid id: must not contain CR, LF or NUL"),
        ),
        (
            form,
            b"topic=a&id=".to_vec(),
            bad_request("invalid id: must not be empty"),
        ),
        (
            form,
            format!("topic=a&id={long_id}").into_bytes(),
            ApiError::new(
                413,
                "payload_too_large",
                "invalid id: longer than 256 bytes",
            ),
        ),
        (
            form,
            b"topic=a&id=earliest".to_vec(),
            bad_request("invalid id: \"earliest\" is reserved"),
        ),
        (
            form,
            b"topic=a&type=a%0Ab".to_vec(),
            bad_request("invalid type: must not contain CR, LF or NUL"),
        ),
        (
            form,
            b"topic=a&data=\xff".to_vec(),
            bad_request("the body is not valid UTF-8"),
        ),
        (
            Some("application/json"),
            br#"{"topic":"a","data":"x"}"#.to_vec(),
            ApiError::new(
                415,
                "unsupported_media_type",
                "the body must be application/x-www-form-urlencoded",
            ),
        ),
        (
            None,
            b"topic=a".to_vec(),
            ApiError::new(
                415,
                "unsupported_media_type",
                "the body must be application/x-www-form-urlencoded",
            ),
        ),
    ];
    for (content_type, body, want) in cases {
        let shown = String::from_utf8_lossy(&body[..body.len().min(60)]).into_owned();
        assert_eq!(post_raw(&server, content_type, body).await, want, "{shown}");
    }
    // A charset parameter on the right type is fine.
    let response = server
        .http
        .post(server.hub_url())
        .bearer_auth(admin_token())
        .header(
            "content-type",
            "application/x-www-form-urlencoded; charset=UTF-8",
        )
        .body(format!("topic={T}&id=with-charset"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "with-charset");

    // Nothing else was stored.
    assert_eq!(
        server.stored_ids_then(T, "end").await,
        ["with-charset", "end"]
    );
    assert_eq!(server.metric("herald_updates_published_total").await, 2.0);
}

#[tokio::test]
async fn bad_subscriptions_are_refused() {
    let server = TestServer::with_args(&["--max-selectors", "3"]).await;
    let t = token(&[], &[]);
    let cases = [
        (
            server.subscribe(),
            bad_request("at least one topic selector is required"),
        ),
        (
            server.subscribe().query("lastEventID", "x"),
            bad_request("at least one topic selector is required"),
        ),
        (
            server
                .subscribe()
                .topic("a")
                .topic("b")
                .topic("c")
                .topic("d"),
            bad_request("too many topic selectors: 4 (the limit is 3)"),
        ),
        (
            server.subscribe().topic(T).last_event_id(&"i".repeat(257)),
            bad_request("the last event id is too long"),
        ),
    ];
    for (request, want) in cases {
        assert_eq!(request.bearer(&t).error().await, want);
    }
    // A claim with more selectors than allowed.
    assert_eq!(
        server
            .subscribe()
            .topic(T)
            .bearer(&token(&[], &["a", "b", "c", "d"]))
            .error()
            .await,
        bad_request("too many topic selectors: 4 (the limit is 3)")
    );
    // A selector that does not parse: the message names it and says why.
    let error = server.subscribe().topic("{").bearer(&t).error().await;
    assert_eq!((error.status, error.code.as_str()), (400, "bad_request"));
    let reason = error
        .message
        .strip_prefix("invalid topic selector \"{\": ")
        .unwrap_or_else(|| panic!("{}", error.message));
    assert!(!reason.is_empty());
    for selector in ["https://example.com/{id", "https://example.com/{}"] {
        let error = server.subscribe().topic(selector).bearer(&t).error().await;
        assert_eq!(error.status, 400, "{selector}: {}", error.message);
        assert!(
            error
                .message
                .starts_with(&format!("invalid topic selector {selector:?}: ")),
            "{}",
            error.message
        );
    }
    assert_eq!(server.metric("herald_streams_open").await, 0.0);
    assert_eq!(server.metric("herald_subscribers").await, 0.0);
}

#[tokio::test]
async fn unknown_routes_are_json_404s() {
    let server = TestServer::start().await;
    for path in ["/nope", "/.well-known/mercure/extra", "/healthz/x"] {
        let response = server
            .http
            .get(format!("{}{path}", server.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(
            ApiError::read(response).await,
            ApiError::new(404, "not_found", "no such route"),
            "{path}"
        );
    }
    let response = server
        .http
        .put(format!("{}/.well-known/mercure", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        ApiError::read(response).await,
        ApiError::new(
            405,
            "method_not_allowed",
            "this route does not accept that method"
        )
    );
}

#[tokio::test]
async fn global_stream_limit_answers_503_and_frees_slots() {
    let server = TestServer::with_args(&["--max-connections", "2", "--anonymous"]).await;
    let first = server.subscribe().topic(T).open().await;
    let _second = server.subscribe().topic(T).open().await;
    assert_eq!(
        server.subscribe().topic(T).error().await,
        ApiError::new(
            503,
            "unavailable",
            "the server holds as many streams as it may; retry later"
        )
    );
    assert_eq!(
        server
            .metric("herald_streams_refused_total{reason=\"global\"}")
            .await,
        1.0
    );
    // Publishing and metrics are not streams: they still work at the limit.
    server.publish_id(T, "at-limit").await;

    drop(first);
    server
        .wait_metric("herald_streams_open", ITEM_TIMEOUT, |v| v == 1.0)
        .await;
    let mut third = server.subscribe().topic(T).open().await;
    server.publish_id(T, "after").await;
    assert_eq!(third.next_message().await.last_event_id, "after");
}

#[tokio::test]
async fn per_address_stream_limit_answers_429_and_frees_slots() {
    let server = TestServer::with_args(&["--max-connections-per-ip", "2", "--anonymous"]).await;
    let first = server.subscribe().topic(T).open().await;
    let _second = server.subscribe().topic(T).open().await;
    assert_eq!(
        server.subscribe().topic(T).error().await,
        ApiError::new(
            429,
            "too_many_connections",
            "too many open streams from this address"
        )
    );
    assert_eq!(
        server
            .metric("herald_streams_refused_total{reason=\"per_ip\"}")
            .await,
        1.0
    );

    // Another source address has its own allowance.
    let other: IpAddr = "127.0.0.2".parse().unwrap();
    let elsewhere = reqwest::Client::builder()
        .no_proxy()
        .local_address(other)
        .build()
        .unwrap();
    let mut from_other = server.subscribe().client(elsewhere).topic(T).open().await;
    assert_eq!(server.metric("herald_streams_open").await, 3.0);

    drop(first);
    server
        .wait_metric("herald_streams_open", ITEM_TIMEOUT, |v| v == 2.0)
        .await;
    let mut again = server
        .subscribe()
        .client(http_client())
        .topic(T)
        .open()
        .await;
    server.publish_id(T, "after").await;
    assert_eq!(again.next_message().await.last_event_id, "after");
    assert_eq!(from_other.next_message().await.last_event_id, "after");
}
