//! Request heads: read one, and decide whether the direct paths answer it.

use super::*;

/// Longest request head read before deciding; anything longer is not a subscribe request
/// this module serves, and hyper applies its own limits to it.
pub(super) const MAX_HEAD: usize = 8 * 1024;

/// Most request headers parsed here; a request with more goes to hyper.
pub(super) const MAX_HEADERS: usize = 48;

/// A request this module answers itself.
pub(super) enum Direct {
    /// A same-origin HTTP/1 subscription: its headers and target.
    Subscribe(HeaderMap, Uri),
    /// A plain HTTP/1.1 publish.
    Publish(Publish),
    /// Anything else: hyper's.
    No,
}

/// The head of a publish this module answers.
pub(super) struct Publish {
    pub(super) headers: HeaderMap,
    pub(super) uri: Uri,
    /// Bytes of the head, at the start of the buffer.
    pub(super) head_len: usize,
    /// The `Content-Length`.
    pub(super) body_len: usize,
    /// Whether the connection stays open after the answer.
    pub(super) keep_alive: bool,
}

/// Reads until a request head is complete (starting with what `head` already holds), and
/// says whether this module answers it.
pub(super) async fn read_head<I: Io>(io: &mut I, head: &mut BytesMut) -> io::Result<Direct> {
    loop {
        if !head.is_empty() {
            let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut request = httparse::Request::new(&mut slots);
            match request.parse(head) {
                Ok(httparse::Status::Complete(len)) => return Ok(direct(&request, len)),
                Ok(httparse::Status::Partial) if head.len() < MAX_HEAD => {}
                // Too long, too many headers, or malformed: hyper answers it properly.
                _ => return Ok(Direct::No),
            }
        }
        if head.capacity() == head.len() {
            head.reserve(1024);
        }
        if io.read_buf(head).await? == 0 {
            return if head.is_empty() {
                Err(io::ErrorKind::UnexpectedEof.into())
            } else {
                Ok(Direct::No)
            };
        }
    }
}

/// Whether `request`, whose head is `head_len` bytes, is one this module answers.
pub(super) fn direct(request: &httparse::Request<'_, '_>, head_len: usize) -> Direct {
    let Some(target) = request.path else {
        return Direct::No;
    };
    if target.split('?').next() != Some(mercure::PATH) {
        return Direct::No;
    }
    let Some(headers) = header_map(request.headers) else {
        return Direct::No;
    };
    // Cross-origin requests need the router's CORS layer; upgrades are not ours.
    if headers.contains_key(header::ORIGIN) || headers.contains_key(header::UPGRADE) {
        return Direct::No;
    }
    let Ok(uri) = target.parse::<Uri>() else {
        return Direct::No;
    };
    match request.method {
        Some("GET") => {
            // Requests with a body are not plain subscriptions.
            if headers.contains_key(header::TRANSFER_ENCODING)
                || headers
                    .get(header::CONTENT_LENGTH)
                    .is_some_and(|v| v.as_bytes() != b"0")
            {
                return Direct::No;
            }
            // A long-poll answers JSON: the router's.
            if crate::routes::poll::wants_poll(&headers) {
                return Direct::No;
            }
            Direct::Subscribe(headers, uri)
        }
        // HTTP/1.1 only, so that keeping the connection is the default; a chunked body, or
        // one that waits for `100 Continue`, is hyper's.
        Some("POST") if request.version == Some(1) => {
            if headers.contains_key(header::TRANSFER_ENCODING)
                || headers.contains_key(header::EXPECT)
            {
                return Direct::No;
            }
            let mut lengths = headers.get_all(header::CONTENT_LENGTH).iter();
            let body_len = match (lengths.next(), lengths.next()) {
                (Some(value), None) => content_length(value.as_bytes()),
                _ => None,
            };
            let Some(body_len) = body_len else {
                return Direct::No;
            };
            let keep_alive = !headers
                .get_all(header::CONNECTION)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .any(|token| token.trim().eq_ignore_ascii_case("close"));
            Direct::Publish(Publish {
                headers,
                uri,
                head_len,
                body_len,
                keep_alive,
            })
        }
        _ => Direct::No,
    }
}

/// A `Content-Length` value: one or more ASCII digits (RFC 9110, section 8.6) that fit a
/// `usize`. Anything else (a sign, inner spaces, an empty value, an overflow) is `None`, and
/// the request goes to hyper, which answers 400, so every path answers the same.
pub(super) fn content_length(value: &[u8]) -> Option<usize> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

pub(super) fn header_map(parsed: &[httparse::Header<'_>]) -> Option<HeaderMap> {
    let mut headers = HeaderMap::with_capacity(parsed.len());
    for h in parsed {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(h.value).ok()?;
        headers.append(name, value);
    }
    Some(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(raw: &str) -> Direct {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut slots);
        let httparse::Status::Complete(len) = request.parse(raw.as_bytes()).unwrap() else {
            panic!("incomplete head: {raw:?}");
        };
        assert_eq!(len, raw.len());
        direct(&request, len)
    }

    fn subscribe(raw: &str) -> Option<(HeaderMap, Uri)> {
        match decide(raw) {
            Direct::Subscribe(headers, uri) => Some((headers, uri)),
            _ => None,
        }
    }

    fn publish(raw: &str) -> Option<Publish> {
        match decide(raw) {
            Direct::Publish(publish) => Some(publish),
            _ => None,
        }
    }

    #[test]
    fn which_subscriptions_take_the_direct_path() {
        let direct = |raw: &str| subscribe(raw).is_some();
        assert!(direct(
            "GET /.well-known/mercure?topic=a HTTP/1.1\r\nHost: x\r\n\r\n"
        ));
        assert!(direct("GET /.well-known/mercure HTTP/1.0\r\n\r\n"));
        assert!(direct(
            "GET /.well-known/mercure?topic=a HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
        ));
        // Everything else is the router's (or a publish).
        assert!(!direct("POST /.well-known/mercure HTTP/1.1\r\n\r\n"));
        assert!(!direct("GET /.well-known/mercure/x HTTP/1.1\r\n\r\n"));
        assert!(!direct("GET /healthz HTTP/1.1\r\n\r\n"));
        assert!(!direct(
            "GET /.well-known/mercure HTTP/1.1\r\nOrigin: https://a.example\r\n\r\n"
        ));
        assert!(!direct(
            "GET /.well-known/mercure HTTP/1.1\r\nUpgrade: h2c\r\n\r\n"
        ));
        assert!(!direct(
            "GET /.well-known/mercure HTTP/1.1\r\nContent-Length: 3\r\n\r\n"
        ));
        let (headers, uri) = subscribe(
            "GET /.well-known/mercure?topic=a&topic=b HTTP/1.1\r\nLast-Event-ID: 7\r\n\r\n",
        )
        .unwrap();
        assert_eq!(headers["last-event-id"], "7");
        assert_eq!(uri.query(), Some("topic=a&topic=b"));
    }

    #[test]
    fn content_lengths_are_digits_only() {
        for (value, want) in [
            ("0", Some(0)),
            ("24", Some(24)),
            ("007", Some(7)),
            ("+24", None),
            ("-3", None),
            (" 24", None),
            ("24 ", None),
            ("", None),
            ("2_4", None),
            ("\u{661}", None), // An Arabic-Indic one: a digit, not an ASCII one.
            ("18446744073709551616", None),
        ] {
            assert_eq!(content_length(value.as_bytes()), want, "{value:?}");
        }
    }

    #[test]
    fn which_publishes_take_the_direct_path() {
        let head = "POST /.well-known/mercure HTTP/1.1\r\nContent-Length: 12\r\n\r\n";
        let publish_head = publish(head).unwrap();
        assert_eq!(publish_head.head_len, head.len());
        assert_eq!(publish_head.body_len, 12);
        assert!(publish_head.keep_alive);
        let closing = publish(
            "POST /.well-known/mercure HTTP/1.1\r\nConnection: TE, Close\r\nContent-Length: 1\r\n\r\n",
        )
        .unwrap();
        assert!(!closing.keep_alive);
        // Everything else is the router's.
        for raw in [
            // No length, a chunked body, or one waiting for 100 Continue.
            "POST /.well-known/mercure HTTP/1.1\r\n\r\n",
            "POST /.well-known/mercure HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST /.well-known/mercure HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n",
            // Two lengths, or one that is not a number.
            "POST /.well-known/mercure HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
            "POST /.well-known/mercure HTTP/1.1\r\nContent-Length: -3\r\n\r\n",
            "POST /.well-known/mercure HTTP/1.1\r\nContent-Length: +24\r\n\r\n",
            "POST /.well-known/mercure HTTP/1.1\r\nContent-Length: 2 4\r\n\r\n",
            "POST /.well-known/mercure HTTP/1.1\r\nContent-Length: 0x18\r\n\r\n",
            "POST /.well-known/mercure HTTP/1.1\r\nContent-Length: \r\n\r\n",
            "POST /.well-known/mercure HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            // HTTP/1.0, another origin, another path.
            "POST /.well-known/mercure HTTP/1.0\r\nContent-Length: 3\r\n\r\n",
            "POST /.well-known/mercure HTTP/1.1\r\nOrigin: https://a.example\r\nContent-Length: 3\r\n\r\n",
            "POST /api/todos HTTP/1.1\r\nContent-Length: 3\r\n\r\n",
            "PUT /.well-known/mercure HTTP/1.1\r\nContent-Length: 3\r\n\r\n",
        ] {
            assert!(matches!(decide(raw), Direct::No), "{raw:?}");
        }
    }
}
