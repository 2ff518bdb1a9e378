//! Publishing over one kept HTTP/1.1 connection, as publishers with a connection pool do,
//! byte for byte: pipelined requests, a body that arrives in pieces, a refused publish that
//! keeps the connection, a hand-over to the router for the next request, and the cases that
//! end the connection.

use std::time::Duration;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::timeout,
};

use crate::support::{ITEM_TIMEOUT, TestServer, admin_token};

const TOPIC: &str = "https://example.com/kept";
const ENCODED: &str = "https%3A%2F%2Fexample.com%2Fkept";

/// One HTTP response as read off the wire.
#[derive(Debug)]
struct Reply {
    status: u16,
    /// Lower-cased names, in order.
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A raw client connection that reads responses delimited by `Content-Length`.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(server: &TestServer) -> Self {
        Self {
            stream: TcpStream::connect(server.addr()).await.expect("connect"),
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Reads more bytes; false at EOF.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        let n = timeout(ITEM_TIMEOUT, self.stream.read(&mut chunk))
            .await
            .expect("the server went silent")
            .unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    async fn reply(&mut self) -> Reply {
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            assert!(self.fill().await, "EOF before a response head");
        };
        let head = String::from_utf8(self.buf[..head_end].to_vec()).expect("ASCII head");
        self.buf.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
        let status = status_line[9..12].parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|line| {
                let (name, value) = line.split_once(':').expect("a header line");
                (name.to_ascii_lowercase(), value.trim().to_owned())
            })
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .expect("a Content-Length")
            .1
            .parse()
            .unwrap();
        while self.buf.len() < length {
            assert!(self.fill().await, "EOF inside a body");
        }
        let body = String::from_utf8(self.buf.drain(..length).collect()).unwrap();
        Reply {
            status,
            headers,
            body,
        }
    }

    /// Asserts the server closes the connection with nothing more to say.
    async fn expect_closed(&mut self) {
        assert!(!self.fill().await, "more bytes: {:?}", self.buf);
        assert!(self.buf.is_empty());
    }
}

fn publish(form: &str, token: &str, extra: &str) -> String {
    format!(
        "POST /.well-known/mercure HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\n{extra}Content-Length: {}\r\n\r\n{form}",
        form.len()
    )
}

fn form(id: &str) -> String {
    format!("topic={ENCODED}&id={id}&data=hello+{id}")
}

#[tokio::test]
async fn one_connection_carries_many_publishes_in_order() {
    let server = TestServer::with_args(&["--anonymous"]).await;
    let mut sse = server.subscribe().topic(TOPIC).open().await;
    let token = admin_token();
    let mut conn = Conn::open(&server).await;

    // A body that arrives in pieces.
    let request = publish(&form("k1"), &token, "");
    let (first, rest) = request.split_at(request.len() - 5);
    conn.send(first.as_bytes()).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    conn.send(rest.as_bytes()).await;
    let reply = conn.reply().await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "k1"));
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(
        reply.header("link"),
        Some("</.well-known/mercure>; rel=\"mercure\"")
    );
    assert!(reply.header("date").is_some_and(|d| d.ends_with(" GMT")));
    assert_eq!(reply.header("connection"), None);

    // A refused publish whose body was read keeps the connection.
    conn.send(publish(&format!("{}&id=again", form("k2")), &token, "").as_bytes())
        .await;
    let refused = conn.reply().await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_eq!(refused.header("content-type"), Some("application/json"));
    assert!(refused.body.contains("\"error\""), "{}", refused.body);

    // Pipelined: two publishes and a request for the router, in one write.
    let mut pipelined = publish(&form("k3"), &token, "");
    pipelined.push_str(&publish(&form("k4"), &token, ""));
    pipelined.push_str("GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n");
    conn.send(pipelined.as_bytes()).await;
    for want in ["k3", "k4", "ok"] {
        let reply = conn.reply().await;
        assert_eq!((reply.status, reply.body.as_str()), (200, want));
    }
    // The router keeps serving the connection, publishes included.
    conn.send(publish(&form("k5"), &token, "").as_bytes()).await;
    assert_eq!(conn.reply().await.body, "k5");

    assert_eq!(sse.ids_until("k5").await, ["k1", "k3", "k4", "k5"]);
}

#[tokio::test]
async fn refusals_before_the_body_and_close_end_the_connection() {
    let server = TestServer::with_args(&["--max-body", "64"]).await;
    let token = admin_token();

    // No token: refused before the body is read, so the connection ends.
    let mut conn = Conn::open(&server).await;
    conn.send(
        b"POST /.well-known/mercure HTTP/1.1\r\nHost: hub\r\n\
          Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 3\r\n\r\na=b",
    )
    .await;
    let reply = conn.reply().await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.header("connection"), Some("close"));
    conn.expect_closed().await;

    // A declared length over --max-body.
    let mut conn = Conn::open(&server).await;
    let long = format!("topic={ENCODED}&data={}", "x".repeat(100));
    conn.send(publish(&long, &token, "").as_bytes()).await;
    let reply = conn.reply().await;
    assert_eq!(reply.status, 413);
    assert!(
        reply.body.contains("larger than 64 bytes"),
        "{}",
        reply.body
    );
    conn.expect_closed().await;

    // A large body the server will not read: the refusal still reaches the client, which
    // is still sending (closing with unread bytes would reset the connection).
    let (mut reader, mut writer) = TcpStream::connect(server.addr())
        .await
        .unwrap()
        .into_split();
    let body = vec![b'x'; 4 << 20];
    let head = format!(
        "POST /.well-known/mercure HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let sending = tokio::spawn(async move {
        writer.write_all(head.as_bytes()).await?;
        writer.write_all(&body).await
    });
    let mut answer = Vec::new();
    timeout(ITEM_TIMEOUT, reader.read_to_end(&mut answer))
        .await
        .expect("the refusal and the close")
        .expect("no reset");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    assert!(answer.contains("larger than 64 bytes"), "{answer}");
    let _ = sending.await;

    // `Connection: close` is honoured after the answer.
    let mut conn = Conn::open(&server).await;
    conn.send(publish(&form("c1"), &token, "Connection: close\r\n").as_bytes())
        .await;
    let reply = conn.reply().await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "c1"));
    assert_eq!(reply.header("connection"), Some("close"));
    conn.expect_closed().await;
}

#[tokio::test]
async fn a_content_length_that_is_not_digits_gets_400_on_every_path() {
    let server = TestServer::start().await;
    let token = admin_token();
    let body = form("plus");
    // The same bytes, on a kept connection after a publish the direct path answered, and
    // from another origin (hyper and the router from the start).
    let mut n = 0;
    for origin in ["", "Origin: http://elsewhere.example\r\n"] {
        for length in ["+24", "-3", "2 4", "0x18", "99999999999999999999999"] {
            n += 1;
            let mut conn = Conn::open(&server).await;
            conn.send(publish(&form(&format!("first-{n}")), &token, origin).as_bytes())
                .await;
            let first = conn.reply().await;
            assert_eq!(first.status, 200, "{origin:?}: {}", first.body);
            let head = format!(
                "POST /.well-known/mercure HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {token}\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\n{origin}Content-Length: {length}\r\n\r\n{body}"
            );
            conn.send(head.as_bytes()).await;
            let mut answer = Vec::new();
            let _ = timeout(ITEM_TIMEOUT, conn.stream.read_to_end(&mut answer)).await;
            let answer = String::from_utf8_lossy(&answer);
            assert!(
                answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
                "{origin:?} {length:?}: {answer}"
            );
        }
    }
}
