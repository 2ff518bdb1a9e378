//! Answers the direct paths write themselves: a stream, a response, an error.

use super::*;

/// Writes the response head, then every batch of frames, until the subscription ends, the
/// client goes away or the socket takes nothing for the write deadline.
pub(super) async fn stream_to<I: Io>(mut io: I, stream: OpenStream) {
    let OpenStream {
        headers,
        mut frames,
        ..
    } = stream;
    let mut head = BytesMut::with_capacity(256);
    head.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    for (name, value) in &headers {
        put_header(&mut head, name.as_str(), value.as_bytes());
    }
    put_header(&mut head, "link", mercure::LINK.as_bytes());
    // The body ends when the connection does: no chunk framing on every write.
    put_header(&mut head, "connection", b"close");
    head.extend_from_slice(b"\r\n");
    drop(headers);
    if !write(&mut io, &head).await {
        return;
    }
    drop(head);
    // Client bytes are not expected; reading them tells us when the client has gone.
    let mut probe = [0u8; 32];
    loop {
        let next = tokio::select! {
            frames = frames.next() => Ok(frames),
            read = io.read(&mut probe) => Err(read),
        };
        match next {
            Ok(Some(bytes)) => {
                if !write(&mut io, &bytes).await {
                    return;
                }
            }
            Ok(None) | Err(Ok(0) | Err(_)) => break,
            Err(Ok(_)) => {} // Ignored: a subscription takes no input.
        }
    }
    let _ = io.shutdown().await;
}

/// Answers a refused subscription with the same JSON body the router would send.
pub(super) async fn write_error<I: Io>(mut io: I, error: ApiError) {
    if write_response(&mut io, error.into_response(), false).await {
        let _ = io.shutdown().await;
    }
}

/// Writes a whole response, as the router would, with a `Content-Length`; false when the
/// peer is gone or stalled.
pub(super) async fn write_response<I: Io>(
    io: &mut I,
    response: Response,
    keep_alive: bool,
) -> bool {
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    // A response that must end its connection says so (`ApiError`'s 408).
    let keep_alive = keep_alive && !parts.headers.contains_key(header::CONNECTION);
    let mut out = BytesMut::with_capacity(256 + body.len());
    let status = parts.status;
    out.extend_from_slice(
        format!(
            "HTTP/1.1 {} {}\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        )
        .as_bytes(),
    );
    for (name, value) in &parts.headers {
        if name != header::CONNECTION {
            put_header(&mut out, name.as_str(), value.as_bytes());
        }
    }
    finish_head(&mut out, body.len(), keep_alive);
    out.extend_from_slice(&body);
    write(io, &out).await
}

/// Ends a response head: `Link`, `Date`, `Content-Length` and, unless the connection stays
/// open, `Connection: close`.
pub(super) fn finish_head(out: &mut BytesMut, body_len: usize, keep_alive: bool) {
    put_header(out, "link", mercure::LINK.as_bytes());
    DATE.with_borrow_mut(|date| put_header(out, "date", date.now()));
    put_header(out, "content-length", body_len.to_string().as_bytes());
    if !keep_alive {
        put_header(out, "connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
}

/// The `Date` header's value, formatted once a second per thread (as hyper does).
pub(super) struct Date {
    second: u64,
    value: String,
}

impl Date {
    fn now(&mut self) -> &[u8] {
        let now = SystemTime::now();
        let second = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if second != self.second || self.value.is_empty() {
            self.second = second;
            self.value = httpdate::fmt_http_date(now);
        }
        self.value.as_bytes()
    }
}

thread_local! {
    static DATE: RefCell<Date> = const { RefCell::new(Date { second: 0, value: String::new() }) };
}

pub(super) fn put_header(out: &mut BytesMut, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Writes all of `bytes`; false when the peer is gone, or took nothing for the write
/// deadline ([`CountedStream`] enforces it without a timer per write). The flush costs
/// nothing on TCP; TLS may keep records it could not write at once, which must not wait
/// for the next frame.
pub(super) async fn write<I: Io>(io: &mut I, bytes: &[u8]) -> bool {
    io.write_all(bytes).await.is_ok() && io.flush().await.is_ok()
}
