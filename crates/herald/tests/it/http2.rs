//! HTTP/2 (prior knowledge, as hyper detects it) keeps every property of the HTTP/1 paths:
//! heartbeats, the stream limits with the same answers, publishes larger than a receive
//! window and the body limit's answer, replay from `lastEventID`, the end
//! of app streams at logout, the end of streams at shutdown; and what only HTTP/2 needs: a
//! stream whose client keeps its flow-control window shut ends after `--write-timeout`, and
//! a connection without a request is closed after the idle timeout (GOAWAY). The write
//! deadline over HTTP/2 is in `deadlines`. And the direct HTTP/1 path and the router (which
//! serves HTTP/2) answer the same subscription requests with the same status, headers and
//! body.

use std::{net::IpAddr, time::Duration};

use axum::http::{Request, StatusCode, response::Parts};
use bytes::Bytes;
use herald_sse::{Decoder, Item, Message};
use reqwest::Method;
use tokio::{
    net::{TcpSocket, TcpStream},
    task::JoinHandle,
    time::{Instant, timeout},
};

use crate::support::{AppClient, AppWorld, ITEM_TIMEOUT, PASSWORD, TestServer, admin_token, token};

const T: &str = "https://example.com/h2";
const ENCODED: &str = "https%3A%2F%2Fexample.com%2Fh2";

/// The hub's subscribe path for [`T`].
fn hub_path(extra: &str) -> String {
    format!("/.well-known/mercure?topic={ENCODED}{extra}")
}

/// How long the server keeps an HTTP/2 connection without a request (the request-head
/// timeout of HTTP/1).
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// One HTTP/2 connection; a task drives it and ends with it.
struct H2 {
    client: h2::client::SendRequest<Bytes>,
    driver: JoinHandle<Result<(), h2::Error>>,
}

impl H2 {
    /// Connects from `127.0.0.1` with default settings.
    async fn connect(server: &TestServer) -> Self {
        let io = TcpStream::connect(server.addr()).await.unwrap();
        Self::handshake(h2::client::Builder::new(), io).await
    }

    /// Connects from `local` (another loopback address has its own stream allowance).
    async fn connect_from(server: &TestServer, local: IpAddr) -> Self {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind((local, 0).into()).unwrap();
        let io = socket.connect(server.addr()).await.unwrap();
        Self::handshake(h2::client::Builder::new(), io).await
    }

    async fn handshake(builder: h2::client::Builder, io: TcpStream) -> Self {
        let (client, connection) = builder
            .handshake::<_, Bytes>(io)
            .await
            .expect("an HTTP/2 handshake (prior knowledge)");
        Self {
            client,
            driver: tokio::spawn(connection),
        }
    }

    /// Sends `GET path` with `headers`; resolves with the response head and body.
    async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> (Parts, h2::RecvStream) {
        let mut request = Request::get(format!("http://hub{path}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(()).unwrap();
        let client = self.client.clone().ready().await.expect("a free stream");
        self.client = client;
        let (response, _) = self
            .client
            .send_request(request, true)
            .expect("send a request");
        let response = timeout(ITEM_TIMEOUT, response)
            .await
            .expect("a response in time")
            .expect("a response");
        response.into_parts()
    }

    /// Sends `GET path`; returns the status, the content type and the whole body.
    async fn fetch(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, String, String) {
        let (parts, body) = self.get(path, headers).await;
        let content_type = parts
            .headers
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let mut stream = H2Sse::new(body);
        let mut text = Vec::new();
        while let Some(Ok(chunk)) = timeout(ITEM_TIMEOUT, stream.body.data())
            .await
            .expect("the body in time")
        {
            let _ = stream.body.flow_control().release_capacity(chunk.len());
            text.extend_from_slice(&chunk);
        }
        (
            parts.status,
            content_type,
            String::from_utf8(text).expect("a text body"),
        )
    }

    /// Sends `POST path` with `headers` and `body`, as fast as the server's windows allow
    /// (it may answer, and stop reading, before the end); returns the status, the content
    /// type and the whole answer.
    async fn post(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> (StatusCode, String, String) {
        let mut request = Request::post(format!("http://hub{path}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let client = self.client.clone().ready().await.expect("a free stream");
        self.client = client;
        let (response, mut send) = self
            .client
            .send_request(request.body(()).unwrap(), false)
            .expect("send a request");
        let mut rest = body;
        while !rest.is_empty() {
            send.reserve_capacity(rest.len());
            let granted = timeout(
                ITEM_TIMEOUT,
                std::future::poll_fn(|cx| send.poll_capacity(cx)),
            )
            .await
            .expect("the server opens its window in time");
            let Some(Ok(granted)) = granted else { break };
            let chunk = rest.split_to(granted.min(rest.len()));
            if send.send_data(chunk, rest.is_empty()).is_err() {
                break;
            }
        }
        let (parts, body) = timeout(ITEM_TIMEOUT, response)
            .await
            .expect("a response in time")
            .expect("a response")
            .into_parts();
        let content_type = parts
            .headers
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let mut body = H2Sse::new(body);
        let mut text = Vec::new();
        while let Some(Ok(chunk)) = timeout(ITEM_TIMEOUT, body.body.data())
            .await
            .expect("the body in time")
        {
            let _ = body.body.flow_control().release_capacity(chunk.len());
            text.extend_from_slice(&chunk);
        }
        (
            parts.status,
            content_type,
            String::from_utf8(text).expect("a text body"),
        )
    }

    /// Opens an event stream at `path` with `headers`, asserting 200.
    async fn stream(&mut self, path: &str, headers: &[(&str, &str)]) -> H2Sse {
        let (parts, body) = self.get(path, headers).await;
        assert_eq!(parts.status, StatusCode::OK, "GET {path}");
        H2Sse::new(body)
    }

    /// Waits until the server has closed the connection; returns how it ended. The client
    /// keeps its handle meanwhile: an h2 client with none left would close by itself.
    async fn closed_within(self, within: Duration) -> Result<(), h2::Error> {
        let Self { client, driver } = self;
        let ended = timeout(within, driver)
            .await
            .unwrap_or_else(|_| panic!("the connection is still open after {within:?}"))
            .expect("the connection task");
        drop(client);
        ended
    }
}

/// An event stream received over HTTP/2, decoded item by item.
struct H2Sse {
    body: h2::RecvStream,
    decoder: Decoder,
    ended: bool,
}

impl H2Sse {
    fn new(body: h2::RecvStream) -> Self {
        Self {
            body,
            decoder: Decoder::new(),
            ended: false,
        }
    }

    /// The next item, waiting at most `within`; `Ok(None)` at the end of the stream (or its
    /// reset), `Err(())` on timeout.
    async fn next_item_within(&mut self, within: Duration) -> Result<Option<Item>, ()> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(item) = self.decoder.next_item().expect("a well-formed stream") {
                return Ok(Some(item));
            }
            if self.ended {
                return Ok(None);
            }
            match tokio::time::timeout_at(deadline, self.body.data()).await {
                Err(_) => return Err(()),
                Ok(Some(Ok(chunk))) => {
                    let _ = self.body.flow_control().release_capacity(chunk.len());
                    self.decoder.push(&chunk);
                }
                Ok(Some(Err(_)) | None) => self.ended = true,
            }
        }
    }

    async fn next_item(&mut self) -> Option<Item> {
        self.next_item_within(ITEM_TIMEOUT)
            .await
            .unwrap_or_else(|()| panic!("no SSE item within {ITEM_TIMEOUT:?}"))
    }

    /// The next event, skipping `retry:` hints and comments.
    async fn next_message(&mut self) -> Message {
        loop {
            match self.next_item().await {
                Some(Item::Message(message)) => return message,
                Some(_) => {}
                None => panic!("the stream ended while waiting for an event"),
            }
        }
    }

    /// Asserts that the stream ends within `within`, after comments only.
    async fn expect_end(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_item_within(left).await {
                Ok(None) => return,
                Ok(Some(Item::Comment(_) | Item::Retry(_))) => {}
                Ok(Some(item)) => panic!("expected the end of the stream, got {item:?}"),
                Err(()) => panic!("the stream did not end within {within:?}"),
            }
        }
    }
}

/// Waits until the server holds `n` streams.
async fn streams_open(server: &TestServer, n: f64) {
    server
        .wait_metric("herald_streams_open", ITEM_TIMEOUT, |v| v == n)
        .await;
}

#[tokio::test]
async fn idle_http2_streams_get_heartbeats() {
    let server = TestServer::with_args(&["--heartbeat", "200ms"]).await;
    let mut h2 = H2::connect(&server).await;
    let bearer = format!("Bearer {}", token(&[], &[]));
    let mut sse = h2
        .stream(&hub_path(""), &[("authorization", &bearer)])
        .await;
    assert_eq!(sse.next_item().await, Some(Item::Retry(3000)));
    for _ in 0..3 {
        let item = sse
            .next_item_within(Duration::from_secs(2))
            .await
            .expect("a heartbeat within 2 s");
        assert_eq!(item, Some(Item::Comment(String::new())));
    }
}

#[tokio::test]
async fn stream_limits_answer_over_http2_as_over_http1() {
    let server = TestServer::with_args(&[
        "--anonymous",
        "--max-connections",
        "2",
        "--max-connections-per-ip",
        "1",
    ])
    .await;
    let mut h2 = H2::connect(&server).await;
    let mut first = h2.stream(&hub_path(""), &[]).await;
    assert_eq!(first.next_item().await, Some(Item::Retry(3000)));

    // The address's share is taken: 429 on both protocols, byte for byte.
    let http1 = server.subscribe().topic(T).send().await;
    let http1 = (
        http1.status(),
        http1.headers()["content-type"].to_str().unwrap().to_owned(),
        http1.text().await.unwrap(),
    );
    assert_eq!(http1.0, StatusCode::TOO_MANY_REQUESTS, "{http1:?}");
    assert_eq!(h2.fetch(&hub_path(""), &[]).await, http1);

    // Another address takes the last slot; then every stream is refused: 503 on both.
    let other: IpAddr = "127.0.0.2".parse().unwrap();
    let mut elsewhere = H2::connect_from(&server, other).await;
    let mut second = elsewhere.stream(&hub_path(""), &[]).await;
    assert_eq!(second.next_item().await, Some(Item::Retry(3000)));
    let third: IpAddr = "127.0.0.3".parse().unwrap();
    let http1 = server
        .subscribe()
        .client(
            reqwest::Client::builder()
                .no_proxy()
                .local_address(third)
                .build()
                .unwrap(),
        )
        .topic(T)
        .send()
        .await;
    let http1 = (
        http1.status(),
        http1.headers()["content-type"].to_str().unwrap().to_owned(),
        http1.text().await.unwrap(),
    );
    assert_eq!(http1.0, StatusCode::SERVICE_UNAVAILABLE, "{http1:?}");
    let mut from_third = H2::connect_from(&server, third).await;
    assert_eq!(from_third.fetch(&hub_path(""), &[]).await, http1);
    assert_eq!(server.metric("herald_streams_open").await, 2.0);
}

#[tokio::test]
async fn publishes_larger_than_the_receive_window_are_taken_over_http2() {
    let server = TestServer::with_args(&["--max-body", "262144"]).await;
    let bearer = format!("Bearer {}", admin_token());
    // The subscriber on a connection of its own: on the publisher's, the update it is sent
    // while nobody reads it would fill the connection's window before the answer.
    let mut reader = H2::connect(&server).await;
    let mut sse = reader
        .stream(&hub_path(""), &[("authorization", &bearer)])
        .await;
    let mut h2 = H2::connect(&server).await;
    let headers = [
        ("authorization", bearer.as_str()),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    // 200 KiB: three times a stream's receive window, which reopens as the body is read.
    let data = "x".repeat(200 * 1024);
    let form = format!("topic={ENCODED}&id=big&data={data}");
    let answer = h2.post("/.well-known/mercure", &headers, form.into()).await;
    assert_eq!(
        answer,
        (
            StatusCode::OK,
            "text/plain; charset=utf-8".into(),
            "big".into()
        )
    );
    let message = sse.next_message().await;
    assert_eq!(
        (message.last_event_id.as_str(), message.data.len()),
        ("big", data.len())
    );

    // Past `--max-body`: the same answer as over HTTP/1.
    let form = format!("topic={ENCODED}&data={}", "x".repeat(300 * 1024));
    let (status, content_type, body) = h2.post("/.well-known/mercure", &headers, form.into()).await;
    assert_eq!(
        (status, content_type.as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "application/json")
    );
    assert_eq!(
        body,
        r#"{"error":"payload_too_large","message":"the body is larger than 262144 bytes"}"#
    );
}

#[tokio::test]
async fn http2_connections_advertise_a_bounded_number_of_streams() {
    let server = TestServer::start().await;
    let io = TcpStream::connect(server.addr()).await.unwrap();
    let (client, connection) = h2::client::handshake(io).await.unwrap();
    let mut connection = Box::pin(connection);
    let mut client = client.ready().await.unwrap();
    let (response, _) = client
        .send_request(Request::get("http://hub/healthz").body(()).unwrap(), true)
        .unwrap();
    // The server's SETTINGS came before its answer.
    let response = tokio::select! {
        response = response => response.expect("a response"),
        ended = &mut connection => panic!("the connection ended: {ended:?}"),
    };
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(connection.max_concurrent_send_streams(), 100);
}

/// Streams whose client keeps a flow-control window shut, while it reads its socket (so
/// the write deadline below HTTP/2 never starts): with a stream window of 0 from the start,
/// and with the connection's window used up by data never acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_whose_window_stays_shut_end_after_the_write_deadline() {
    let server = TestServer::with_args(&["--anonymous", "--write-timeout", "2s"]).await;
    // A healthy subscriber beside them, over HTTP/1, and one over HTTP/2.
    let mut healthy = server.subscribe().topic(T).open().await;
    let mut healthy_h2 = H2::connect(&server).await;
    let mut healthy_h2_sse = healthy_h2.stream(&hub_path(""), &[]).await;
    streams_open(&server, 2.0).await;
    let data = "x".repeat(16 * 1024);

    for (case, builder) in [
        ("stream window 0", {
            let mut builder = h2::client::Builder::new();
            builder.initial_window_size(0);
            builder
        }),
        ("connection window used up", h2::client::Builder::new()),
    ] {
        let io = TcpStream::connect(server.addr()).await.unwrap();
        let mut stalled = H2::handshake(builder, io).await;
        // The response head needs no window; the body is never read, so never acknowledged.
        let (parts, _body) = stalled.get(&hub_path(""), &[]).await;
        assert_eq!(parts.status, StatusCode::OK, "{case}");
        // The stream can stall from here on: the server's watchdog must find it within
        // the write deadline (2 s) and its check interval (1 s), not after the 10 s a
        // connection may stay without a request (the bound leaves 5 s for a busy machine).
        let started = Instant::now();
        if case != "stream window 0" {
            // Its window must fill from the publishes below. (With a window of 0 it is
            // stalled from the start, and may be gone before a look at the metric.)
            streams_open(&server, 3.0).await;
        }
        // 96 KiB: more than the connection's initial window of 64 KiB.
        for n in 0..6 {
            let id = format!("{case}-{n}");
            server
                .publish(&[("topic", T), ("id", &id), ("data", &data)])
                .await;
            assert_eq!(healthy.next_message().await.last_event_id, id, "{case}");
            assert_eq!(healthy_h2_sse.next_message().await.last_event_id, id);
        }
        // The stalled stream and its subscriber are freed; the connection is closed.
        streams_open(&server, 2.0).await;
        assert_eq!(server.metric("herald_subscribers").await, 2.0, "{case}");
        let _ = stalled.closed_within(ITEM_TIMEOUT).await;
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "{case}: took {:?}",
            started.elapsed()
        );
        assert_eq!(
            server
                .metric("herald_slow_subscriber_disconnects_total")
                .await,
            0.0,
            "{case}: the queue never overflowed; the window did it"
        );
    }
    // The others never noticed.
    server.publish_id(T, "after").await;
    assert_eq!(healthy.next_message().await.last_event_id, "after");
    assert_eq!(healthy_h2_sse.next_message().await.last_event_id, "after");
}

#[tokio::test]
async fn http2_connections_without_a_request_are_closed_after_the_idle_timeout() {
    let server = TestServer::with_args(&["--anonymous", "--heartbeat", "1s"]).await;
    // One that never sends a request, one that sent one and sits, one with a stream open.
    let silent = H2::connect(&server).await;
    let mut done = H2::connect(&server).await;
    let (status, _, _) = done.fetch("/healthz", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let mut streaming = H2::connect(&server).await;
    let mut sse = streaming.stream(&hub_path(""), &[]).await;
    assert_eq!(sse.next_item().await, Some(Item::Retry(3000)));

    // Gracefully: GOAWAY, then the end, which the client sees as a clean close.
    let slack = IDLE_TIMEOUT + Duration::from_secs(5);
    silent.closed_within(slack).await.expect("a graceful close");
    done.closed_within(slack).await.expect("a graceful close");
    // A stream open is not idle: it is still served, past the idle timeout.
    server.publish_id(T, "still").await;
    assert_eq!(sse.next_message().await.last_event_id, "still");
    assert!(!streaming.driver.is_finished());
}

#[tokio::test]
async fn app_streams_over_http2_end_at_logout() {
    let world = AppWorld::start().await;
    let bob = AppClient::login(&world.server, "bob@example.com", PASSWORD).await;
    let mut h2 = H2::connect(&world.server).await;
    let cookie = bob.cookie();
    let mut events = h2
        .stream(
            "/api/events",
            &[("cookie", &cookie), ("accept", "text/event-stream")],
        )
        .await;
    let connected = events.next_message().await;
    assert_eq!(connected.event, "connected", "{connected:?}");
    let started = Instant::now();
    bob.call(Method::POST, "/api/logout", None)
        .await
        .expect(204);
    events
        .expect_end((started + Duration::from_secs(1)).saturating_duration_since(Instant::now()))
        .await;
    // The same connection is refused a new stream, as HTTP/1 is.
    let (status, _, body) = h2
        .fetch(
            "/api/events",
            &[("cookie", &cookie), ("accept", "text/event-stream")],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.contains("\"error\":\"unauthorized\""), "{body}");
}

#[tokio::test]
async fn http2_streams_replay_from_last_event_id_and_end_at_shutdown() {
    let mut server = TestServer::with_args(&["--shutdown-grace", "5s"]).await;
    for id in ["r1", "r2", "r3"] {
        server.publish_id(T, id).await;
    }
    let mut h2 = H2::connect(&server).await;
    let bearer = format!("Bearer {}", admin_token());
    let mut sse = h2
        .stream(&hub_path("&lastEventID=r1"), &[("authorization", &bearer)])
        .await;
    assert_eq!(sse.next_message().await.last_event_id, "r2");
    assert_eq!(sse.next_message().await.last_event_id, "r3");
    server.publish_id(T, "live").await;
    assert_eq!(sse.next_message().await.last_event_id, "live");

    let started = Instant::now();
    let status = server.terminate().await;
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the server exits within the grace period: {:?}",
        started.elapsed()
    );
    assert!(
        !server.stderr().contains("grace period elapsed"),
        "{}",
        server.stderr()
    );
    // The stream ended, and the connection with it (GOAWAY, then the close).
    sse.expect_end(Duration::from_secs(5)).await;
    let _ = h2.closed_within(Duration::from_secs(5)).await;
}

/// The headers that say what a subscription's answer is (hop-by-hop and framing headers,
/// which differ between HTTP/1 and HTTP/2 by design, are left out).
const ANSWER_HEADERS: [&str; 10] = [
    "content-type",
    "cache-control",
    "x-accel-buffering",
    "vary",
    "last-event-id",
    "mercure-last-event-id",
    "accept-query",
    "link",
    "retry-after",
    "www-authenticate",
];

/// `headers`' values of [`ANSWER_HEADERS`], in order.
fn answer_headers(headers: &axum::http::HeaderMap) -> Vec<(&'static str, Vec<String>)> {
    ANSWER_HEADERS
        .iter()
        .map(|name| {
            let values = headers
                .get_all(*name)
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect();
            (*name, values)
        })
        .collect()
}

/// A request of the parity test: what it is, its path and its headers.
type Case = (&'static str, String, Vec<(&'static str, String)>);

#[tokio::test]
async fn the_direct_path_and_the_router_answer_subscriptions_alike() {
    // A plain HTTP/1 subscription takes the direct path in `connection`; over HTTP/2 the
    // same request takes the router. Their answers must not drift apart.
    let server = TestServer::start().await;
    server.publish_id(T, "parity-1").await;
    let subscriber = token(&[], &[T]);
    let everything = token(&[], &["*"]);
    let long_id = "x".repeat(5_000);
    // Both requests name the same host: the challenges and audiences derive from it.
    let access = |aud: &str| crate::support::access_token("https://issuer.example", aud, &[], &[T]);
    let other_hub = access("http://elsewhere/.well-known/mercure");
    let access_token = access("http://hub/.well-known/mercure");
    let cases: Vec<Case> = vec![
        ("no token", hub_path(""), vec![]),
        (
            "a bad token",
            hub_path(""),
            vec![("authorization", "Bearer not-a-jwt".to_owned())],
        ),
        (
            "an invalid selector",
            "/.well-known/mercure?topic=%7B".to_owned(),
            vec![("authorization", format!("Bearer {subscriber}"))],
        ),
        (
            "a reserved topic",
            "/.well-known/mercure?topic=herald%3Ax".to_owned(),
            vec![("authorization", format!("Bearer {everything}"))],
        ),
        (
            "an over-long id",
            hub_path(&format!("&lastEventID={long_id}")),
            vec![("authorization", format!("Bearer {subscriber}"))],
        ),
        (
            "another scheme",
            hub_path(""),
            vec![("authorization", "Basic YTpi".to_owned())],
        ),
        (
            "an access token for another hub",
            hub_path(""),
            vec![("authorization", format!("Bearer {other_hub}"))],
        ),
        (
            "an access token",
            hub_path(""),
            vec![("authorization", format!("Bearer {access_token}"))],
        ),
        (
            "a stream",
            hub_path(""),
            vec![("authorization", format!("Bearer {subscriber}"))],
        ),
        (
            "an unknown match parameter",
            format!("/.well-known/mercure?matchExact={ENCODED}"),
            vec![("authorization", format!("Bearer {subscriber}"))],
        ),
        (
            "a control character in a matcher",
            "/.well-known/mercure?match=a%01b".to_owned(),
            vec![("authorization", format!("Bearer {subscriber}"))],
        ),
        (
            "a 1.0 stream resuming from a known id",
            format!("/.well-known/mercure?match={ENCODED}&last_event_id=parity-1"),
            vec![("authorization", format!("Bearer {subscriber}"))],
        ),
        (
            "a URL Pattern stream resuming from an unknown id",
            "/.well-known/mercure?match_urlpattern=https%3A%2F%2Fexample.com%2F*".to_owned(),
            vec![
                ("authorization", format!("Bearer {subscriber}")),
                ("last-event-id", "unknown".to_owned()),
            ],
        ),
    ];
    let mut h2 = H2::connect(&server).await;
    for (case, path, headers) in cases {
        let mut http1 = crate::support::http_client()
            .get(format!("{}{path}", server.url()))
            .header("host", "hub");
        for (name, value) in &headers {
            http1 = http1.header(*name, value);
        }
        let http1 = http1.send().await.unwrap();
        let h2_headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let (parts, mut body) = h2.get(&path, &h2_headers).await;
        assert_eq!(parts.status, http1.status(), "{case}: status");
        assert_eq!(
            answer_headers(&parts.headers),
            answer_headers(http1.headers()),
            "{case}: headers"
        );
        if parts.status == StatusCode::OK {
            continue; // A stream: its bytes are the same hub subscription's on both paths.
        }
        let mut h2_body = Vec::new();
        while let Some(chunk) = timeout(ITEM_TIMEOUT, body.data()).await.expect("in time") {
            let chunk = chunk.unwrap();
            let _ = body.flow_control().release_capacity(chunk.len());
            h2_body.extend_from_slice(&chunk);
        }
        assert_eq!(
            String::from_utf8(h2_body).unwrap(),
            http1.text().await.unwrap(),
            "{case}: body"
        );
    }
}
