//! [`RawStream`]: an event stream read over a bare TCP connection.

use std::net::SocketAddr;

use herald_sse::{Decoder, Item};
use tokio::{io::AsyncReadExt, time::timeout};

use super::ITEM_TIMEOUT;

/// A stream read over a raw TCP connection, for clients that must misbehave (stop
/// reading) in ways an HTTP library does not allow. Speaks just enough HTTP/1.1: one GET,
/// a chunked or connection-delimited response.
pub(crate) struct RawStream {
    stream: tokio::net::TcpStream,
    buf: Vec<u8>,
    /// The status line and headers, once read.
    pub(crate) head: String,
    decoder: Decoder,
    /// Bytes left in the current chunk.
    remaining: usize,
    /// The CRLF after a chunk's data is still to be skipped.
    crlf_pending: bool,
    /// Whether the body is chunked; otherwise it ends when the connection does.
    chunked: bool,
    ended: bool,
}

impl RawStream {
    /// Connects with a receive buffer of `recv_buffer` bytes (which also turns off the
    /// kernel's autotuning, so the connection holds little unread data) and sends
    /// `GET <path_and_query>` with `headers`. Reads nothing.
    pub(crate) async fn get(
        addr: SocketAddr,
        path_and_query: &str,
        headers: &[(&str, &str)],
        recv_buffer: u32,
    ) -> Self {
        use tokio::io::AsyncWriteExt;
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(recv_buffer).unwrap();
        let mut stream = socket.connect(addr).await.expect("connect");
        let mut request = format!("GET {path_and_query} HTTP/1.1\r\nHost: {addr}\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        Self {
            stream,
            buf: Vec::new(),
            head: String::new(),
            decoder: Decoder::new(),
            remaining: 0,
            crlf_pending: false,
            chunked: false,
            ended: false,
        }
    }

    /// Reads more bytes; false at EOF.
    async fn fill(&mut self) -> bool {
        let mut chunk = vec![0; 64 * 1024];
        let n = timeout(ITEM_TIMEOUT, self.stream.read(&mut chunk))
            .await
            .expect("the raw stream stalled")
            .expect("read the raw stream");
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    /// Takes one CRLF-terminated line from the buffer, reading as needed.
    async fn line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8(self.buf[..i].to_vec()).expect("ASCII line");
                self.buf.drain(..i + 2);
                return Some(line);
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// The next SSE item of the body; `None` when the response or the connection ends.
    pub(crate) async fn next_item(&mut self) -> Option<Item> {
        if self.head.is_empty() {
            loop {
                let line = self.line().await.expect("a response head");
                if line.is_empty() {
                    break;
                }
                self.head.push_str(&line);
                self.head.push('\n');
            }
            let head = self.head.to_ascii_lowercase();
            self.chunked = head.contains("transfer-encoding: chunked");
            assert!(
                self.chunked || head.contains("connection: close"),
                "a body must be chunked or end with the connection: {}",
                self.head
            );
        }
        loop {
            if let Some(item) = self.decoder.next_item().expect("a well-formed stream") {
                return Some(item);
            }
            if self.ended {
                return None;
            }
            if !self.chunked {
                // The body is everything until the server closes the connection.
                if self.buf.is_empty() && !self.fill().await {
                    self.ended = true;
                    continue;
                }
                self.decoder.push(&self.buf);
                self.buf.clear();
                continue;
            }
            if self.remaining == 0 {
                if self.crlf_pending {
                    let empty = self.line().await?;
                    assert!(empty.is_empty(), "chunk data too long");
                    self.crlf_pending = false;
                }
                let size = self.line().await?;
                let size = usize::from_str_radix(size.trim(), 16).expect("a chunk size");
                if size == 0 {
                    self.ended = true;
                    continue;
                }
                self.remaining = size;
            }
            if self.buf.is_empty() && !self.fill().await {
                return None;
            }
            let n = self.remaining.min(self.buf.len());
            self.decoder.push(&self.buf[..n]);
            self.buf.drain(..n);
            self.remaining -= n;
            self.crlf_pending = self.remaining == 0;
        }
    }
}
