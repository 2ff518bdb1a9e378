//! Deadlines and the connection limit: a client that takes no data has its stream ended
//! after `--write-timeout` (direct HTTP/1, hyper's HTTP/1 and HTTP/2 alike); a body that
//! trickles in is answered 408 after `--body-timeout` (direct path and router alike), and is
//! cut at once when the server shuts down; `--max-tcp-connections` holds new connections
//! until one closes.

use std::time::Duration;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
    time::{Instant, sleep, timeout},
};

use crate::support::{ITEM_TIMEOUT, TestServer, admin_token};

const T: &str = "https://example.com/deadline";
const ENCODED: &str = "https%3A%2F%2Fexample.com%2Fdeadline";

/// Updates published at a client that takes nothing, and their size: 5 MiB, more than the
/// kernel takes into the server's send buffer (at most `net.ipv4.tcp_wmem`'s 4 MiB, of which
/// it counts overhead too), so writes wait; and what it does not take stays under the
/// subscriber queue's byte limit (4 MiB), so the queue never overflows and only the write
/// deadline can end the stream.
const UPDATES: usize = 80;
const SIZE: usize = 64 * 1024;

/// A connection with a small receive buffer (which also turns off its autotuning), so the
/// kernel absorbs little of what the server sends.
async fn small_window(server: &TestServer) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(server.addr()).await.unwrap()
}

/// Publishes [`UPDATES`] updates of [`SIZE`] bytes to [`T`], with ids that begin with
/// `prefix` (a repeated id would be stored, and delivered, only once).
async fn flood(server: &TestServer, prefix: &str) {
    let data = "x".repeat(SIZE);
    for n in 0..UPDATES {
        let id = format!("{prefix}{n}");
        server
            .publish(&[("topic", T), ("id", &id), ("data", &data)])
            .await;
    }
}

/// Waits until the server holds `n` streams.
async fn streams_open(server: &TestServer, n: f64, within: Duration) {
    server
        .wait_metric("herald_streams_open", within, |v| v == n)
        .await;
}

/// After the flood, the stalled stream must end within the deadline plus a margin for a
/// busy machine; and it is the write deadline that ended it, not the queue's overflow.
async fn assert_ended_by_the_deadline(server: &TestServer) {
    streams_open(server, 0.0, Duration::from_secs(15)).await;
    assert_eq!(
        server
            .metric("herald_slow_subscriber_disconnects_total")
            .await,
        0.0,
        "the queue never overflowed"
    );
    assert_eq!(server.metric("herald_subscribers").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_streams_that_take_no_data_end_after_the_write_deadline() {
    let server = TestServer::with_args(&["--anonymous", "--write-timeout", "2s"]).await;
    // Without `Origin`, the direct path; with it, hyper and the router.
    for (path, origin) in [
        ("direct", ""),
        ("router", "Origin: http://elsewhere.example\r\n"),
    ] {
        let mut stalled = small_window(&server).await;
        let request = format!(
            "GET /.well-known/mercure?topic={ENCODED} HTTP/1.1\r\nHost: hub\r\n\
             Accept: text/event-stream\r\n{origin}\r\n"
        );
        stalled.write_all(request.as_bytes()).await.unwrap();
        streams_open(&server, 1.0, ITEM_TIMEOUT).await;
        flood(&server, path).await;
        assert_ended_by_the_deadline(&server).await;
        // The server closed the connection: what it had sent, then the end.
        let mut received = Vec::new();
        let _ = timeout(ITEM_TIMEOUT, stalled.read_to_end(&mut received))
            .await
            .unwrap_or_else(|_| panic!("{origin:?}: the connection is closed"));
        assert!(received.starts_with(b"HTTP/1.1 200 OK\r\n"), "{origin:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_that_take_no_data_end_after_the_write_deadline() {
    let server = TestServer::with_args(&["--anonymous", "--write-timeout", "2s"]).await;
    let io = small_window(&server).await;
    // Large flow-control windows, so that only the socket can hold the server back.
    let (mut client, connection) = h2::client::Builder::new()
        .initial_window_size(16 << 20)
        .initial_connection_window_size(16 << 20)
        .handshake::<_, bytes::Bytes>(io)
        .await
        .expect("an HTTP/2 handshake (prior knowledge)");
    let mut connection = Box::pin(connection);
    let request =
        axum::http::Request::get(format!("http://hub/.well-known/mercure?topic={ENCODED}"))
            .body(())
            .unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    // Drive the connection until the response head arrives, then never read again.
    let response = tokio::select! {
        response = response => response.expect("a response"),
        result = &mut connection => panic!("the connection ended: {result:?}"),
    };
    assert_eq!(response.status(), 200);
    streams_open(&server, 1.0, ITEM_TIMEOUT).await;
    flood(&server, "h2-").await;
    assert_ended_by_the_deadline(&server).await;
    drop(response);
    drop(client);
}

/// A publish request head for a body of `len` bytes.
fn publish_head(len: usize, extra: &str) -> String {
    format!(
        "POST /.well-known/mercure HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\n{extra}Content-Length: {len}\r\n\r\n",
        admin_token()
    )
}

/// A login request head for a body of `len` bytes (the app's `JsonBody`).
fn login_head(len: usize) -> String {
    format!(
        "POST /api/login HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\n\
         Content-Length: {len}\r\n\r\n"
    )
}

/// Sends `head`, then `body` one byte every `pace`, and returns everything the server
/// answered until it closed the connection, and how long that took from the head.
async fn trickle(
    server: &TestServer,
    head: String,
    body: &'static [u8],
    pace: Duration,
) -> (String, Duration) {
    let (mut reader, mut writer) = TcpStream::connect(server.addr())
        .await
        .unwrap()
        .into_split();
    writer.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let sending = tokio::spawn(async move {
        for byte in body {
            sleep(pace).await;
            if writer.write_all(std::slice::from_ref(byte)).await.is_err() {
                break;
            }
        }
        // Keep the connection open, without sending more.
        sleep(Duration::from_secs(60)).await;
    });
    let mut answer = Vec::new();
    // A reset after the answer is fine: the server stops reading what it refused.
    let _ = timeout(Duration::from_secs(20), async {
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = reader.read(&mut chunk).await {
            answer.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    let took = started.elapsed();
    sending.abort();
    (String::from_utf8_lossy(&answer).into_owned(), took)
}

/// Asserts `answer` is one response with `status`, whose JSON body has `code`.
fn assert_refused(answer: &str, status: &str, code: &str) {
    assert!(
        answer.starts_with(&format!("HTTP/1.1 {status}")),
        "{answer}"
    );
    let lower = answer.to_ascii_lowercase();
    assert!(
        lower.contains("\r\ncontent-type: application/json\r\n"),
        "{answer}"
    );
    assert!(
        answer.contains(&format!("\"error\":\"{code}\"")),
        "{answer}"
    );
}

const FORM: &[u8] = b"topic=https%3A%2F%2Fexample.com%2Fdeadline&data=slow";
const LOGIN: &[u8] = br#"{"email":"nobody@example.com","password":"not-this-one"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_that_trickle_in_get_408_after_the_body_deadline() {
    let server = TestServer::with_args(&["--body-timeout", "2s", "--anonymous"]).await;
    let pace = Duration::from_secs(1);
    let cases = [
        // The direct path, hyper with the router (Mercure), and the app's JSON bodies.
        ("direct publish", publish_head(FORM.len(), ""), FORM),
        (
            "routed publish",
            publish_head(FORM.len(), "Origin: http://elsewhere.example\r\n"),
            FORM,
        ),
        ("app login", login_head(LOGIN.len()), LOGIN),
    ];
    let runs = cases.map(|(what, head, body)| {
        let server = &server;
        async move { (what, trickle(server, head, body, pace).await) }
    });
    for (what, (answer, took)) in futures::future::join_all(runs).await {
        assert_refused(&answer, "408 Request Timeout", "request_timeout");
        // The rest of the body may still come: the connection cannot carry another request.
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("\r\nconnection: close\r\n"),
            "{what}: {answer}"
        );
        assert!(
            answer.contains("the request body did not arrive within 2s"),
            "{what}: {answer}"
        );
        assert!(
            took >= Duration::from_millis(1500) && took < Duration::from_secs(10),
            "{what}: answered after {took:?}"
        );
    }
    // Nothing was published.
    let mut all = server
        .subscribe()
        .topic(T)
        .query("lastEventID", "earliest")
        .open()
        .await;
    server.publish_id(T, "after").await;
    assert_eq!(all.ids_until("after").await, ["after"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cuts_bodies_still_arriving_and_does_not_wait_for_them() {
    // Deadlines far longer than the test: only the shutdown can end these requests early.
    let mut server =
        TestServer::with_args(&["--body-timeout", "60s", "--shutdown-grace", "30s"]).await;
    let pace = Duration::from_secs(2);
    let heads = [
        publish_head(FORM.len(), ""),
        publish_head(FORM.len(), "Origin: http://elsewhere.example\r\n"),
        login_head(LOGIN.len()),
    ];
    let bodies = [FORM, FORM, LOGIN];
    let mut runs = Vec::new();
    for (head, body) in heads.into_iter().zip(bodies) {
        let addr = server.addr();
        runs.push(tokio::spawn(async move {
            let (mut reader, mut writer) = TcpStream::connect(addr).await.unwrap().into_split();
            writer.write_all(head.as_bytes()).await.unwrap();
            let sending = tokio::spawn(async move {
                for byte in body {
                    if writer.write_all(std::slice::from_ref(byte)).await.is_err() {
                        break;
                    }
                    sleep(pace).await;
                }
            });
            let mut answer = Vec::new();
            let mut chunk = [0u8; 4096];
            // Until the server closes the connection (an end or a reset), or goes silent.
            let closed = loop {
                match timeout(ITEM_TIMEOUT, reader.read(&mut chunk)).await {
                    Ok(Ok(n @ 1..)) => answer.extend_from_slice(&chunk[..n]),
                    Ok(_) => break true,
                    Err(_) => break false,
                }
            };
            sending.abort();
            (String::from_utf8_lossy(&answer).into_owned(), closed)
        }));
    }
    // Every request is waiting for its body.
    sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    let status = server.terminate().await;
    let took = started.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(
        took < Duration::from_secs(6),
        "the server took {took:?} to stop (grace 30 s)"
    );
    for run in runs {
        let (answer, closed) = run.await.unwrap();
        assert_refused(&answer, "503 Service Unavailable", "unavailable");
        assert!(answer.contains("shutting down"), "{answer}");
        assert!(closed, "the connection ended after the answer: {answer}");
    }
}

/// Sends `GET /healthz` on `conn` and says whether the answer came within `within`.
async fn healthz(conn: &mut TcpStream, within: Duration) -> bool {
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n")
        .await
        .unwrap();
    let mut chunk = [0u8; 1024];
    match timeout(within, conn.read(&mut chunk)).await {
        Ok(Ok(n)) => {
            assert!(chunk[..n].starts_with(b"HTTP/1.1 200 OK\r\n"));
            true
        }
        Ok(Err(error)) => panic!("{error}"),
        Err(_) => false,
    }
}

#[tokio::test]
async fn connections_past_the_limit_wait_until_one_closes() {
    let server = TestServer::with_args(&["--max-tcp-connections", "3"]).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut conn = TcpStream::connect(server.addr()).await.unwrap();
        assert!(healthz(&mut conn, ITEM_TIMEOUT).await, "within the limit");
        held.push(conn);
    }
    // The kernel completes the handshake, but the server does not take the connection.
    let mut waiting = TcpStream::connect(server.addr()).await.unwrap();
    assert!(
        !healthz(&mut waiting, Duration::from_millis(1500)).await,
        "a fourth connection was served"
    );
    // One closes: the waiting one is served at once.
    drop(held.pop());
    let mut chunk = [0u8; 1024];
    let n = timeout(ITEM_TIMEOUT, waiting.read(&mut chunk))
        .await
        .expect("served once a slot is free")
        .unwrap();
    assert!(chunk[..n].starts_with(b"HTTP/1.1 200 OK\r\n"));
}

/// A connection to the server from the loopback address `source`.
async fn connect_from(server: &TestServer, source: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(std::net::SocketAddr::new(source.parse().unwrap(), 0))
        .unwrap();
    socket.connect(server.addr()).await.unwrap()
}

/// One address cannot take every connection slot: past its share, its connections are
/// closed as soon as they are accepted, while another address is served. (127.0.0.3 and .4:
/// the harness's own client keeps connections from 127.0.0.1.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_holds_at_most_its_share_of_connections() {
    let server = TestServer::with_args(&["--max-tcp-connections-per-ip", "3"]).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut conn = connect_from(&server, "127.0.0.3").await;
        assert!(healthz(&mut conn, ITEM_TIMEOUT).await, "within the share");
        held.push(conn);
    }
    // The fourth is closed unread.
    let mut over = connect_from(&server, "127.0.0.3").await;
    let _ = over
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n")
        .await;
    let mut chunk = [0u8; 1024];
    let read = timeout(ITEM_TIMEOUT, over.read(&mut chunk))
        .await
        .expect("the server closes it");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "a fourth connection was served: {read:?}"
    );
    // Another address is served at once.
    let mut other = connect_from(&server, "127.0.0.4").await;
    assert!(healthz(&mut other, ITEM_TIMEOUT).await, "another address");
    // One closes: the first address may connect again.
    drop(held.pop());
    sleep(Duration::from_millis(200)).await;
    let mut again = connect_from(&server, "127.0.0.3").await;
    assert!(healthz(&mut again, ITEM_TIMEOUT).await, "a freed share");
}
