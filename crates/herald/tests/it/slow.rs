//! Slow subscribers: one that stops reading is cut off once its bounded queue overflows,
//! while publishing goes on unblocked and other subscribers get everything in order.

use std::time::Duration;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpSocket,
    time::timeout,
};

use crate::support::{ITEM_TIMEOUT, TestServer};

const T: &str = "https://example.com/firehose";
const UPDATES: usize = 60;
const SIZE: usize = 200 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_subscriber_is_cut_off_and_others_get_everything() {
    let server = TestServer::with_args(&["--subscriber-queue", "8", "--anonymous"]).await;

    // A subscriber that sends its request and never reads. A small receive buffer (which
    // also turns off its autotuning) keeps the kernel from absorbing the whole test.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(server.addr()).await.unwrap();
    let request = format!(
        "GET /.well-known/mercure?topic={} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\
         Connection: close\r\n\r\n",
        "https%3A%2F%2Fexample.com%2Ffirehose",
        server.addr()
    );
    stalled.write_all(request.as_bytes()).await.unwrap();
    server
        .wait_metric("herald_subscribers", ITEM_TIMEOUT, |v| v == 1.0)
        .await;

    let mut normal = server.subscribe().topic(T).open().await;
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        for _ in 0..UPDATES {
            let message = normal.next_message().await;
            assert_eq!(message.data.len(), SIZE);
            got.push(message.last_event_id);
        }
        got
    });

    let data = "x".repeat(SIZE);
    let ids: Vec<String> = (1..=UPDATES).map(|n| format!("s{n}")).collect();
    let publishing = async {
        for id in &ids {
            let got = server
                .publish(&[("topic", T), ("id", id), ("data", &data)])
                .await;
            assert_eq!(&got, id);
        }
    };
    timeout(Duration::from_secs(30), publishing)
        .await
        .expect("publishing must never wait on a subscriber");

    assert_eq!(reader.await.unwrap(), ids, "the normal subscriber");
    let cut = server
        .wait_metric(
            "herald_slow_subscriber_disconnects_total",
            ITEM_TIMEOUT,
            |v| v >= 1.0,
        )
        .await;
    assert_eq!(cut, 1.0, "only the stalled subscriber was cut off");

    // Read what the stalled subscriber was sent: the server ended its response.
    let mut received = Vec::new();
    timeout(Duration::from_secs(10), stalled.read_to_end(&mut received))
        .await
        .expect("the server closes the stalled connection")
        .unwrap();
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{}", &text[..200]);
    let head = text[..text.find("\r\n\r\n").expect("a response head")].to_ascii_lowercase();
    if head.contains("transfer-encoding: chunked") {
        assert!(
            text.ends_with("\r\n0\r\n\r\n"),
            "the chunked body ends properly"
        );
    } else {
        // The body is delimited by the close that read_to_end just saw.
        assert!(head.contains("connection: close"), "{head}");
    }
    let events = text.matches("id: s").count();
    assert!(
        events < UPDATES,
        "the stalled subscriber was cut off, yet got all {events} updates"
    );
    eprintln!("stalled subscriber: received {events} of {UPDATES} updates before the cut");

    // Both registrations are gone (the normal subscriber's stream was dropped with its
    // task).
    server
        .wait_metric("herald_subscribers", ITEM_TIMEOUT, |v| v == 0.0)
        .await;
}
