//! Writing SSE frames: [`Event`], [`comment`] and [`retry`].
//!
//! Every frame is a run of `name: value` lines ended by a blank line. A field
//! with an empty value is written as `name:` with no trailing space; the
//! parser reads both forms as the empty string.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};
use memchr::{memchr2, memchr2_iter, memchr3};

/// An event to write on the wire.
///
/// Build one with [`Event::new`] and the `with_*` helpers, check it with
/// [`Event::validate`] if its fields come from outside, then frame it with
/// [`Event::encode`] or [`Event::encode_into`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// The `id:` field. A client stores it and sends it back as
    /// `Last-Event-ID` when it reconnects. `Some("")` resets the client's
    /// last event ID; `None` leaves it as it was. Must not contain CR, LF or
    /// NUL.
    pub id: Option<String>,
    /// The `event:` field, the event type. `None` and `Some("")` both reach
    /// the client as `"message"`. Must not contain CR or LF.
    pub event: Option<String>,
    /// The payload. It may contain anything, but SSE cannot carry a CR:
    /// every line break (CRLF, lone CR or LF) is split into its own `data:`
    /// line, and the client joins the lines with LF. So a client sees this
    /// text with CRLF and CR replaced by LF.
    pub data: String,
    /// The `retry:` field: the client's reconnection delay, in milliseconds.
    pub retry: Option<u64>,
}

impl Event {
    /// An event carrying `data`, with no id, type or retry.
    pub fn new(data: impl Into<String>) -> Self {
        Self {
            data: data.into(),
            ..Self::default()
        }
    }

    /// Sets the `id:` field.
    #[must_use]
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Sets the `event:` field (the event type).
    #[must_use]
    pub fn with_event(mut self, event: impl Into<String>) -> Self {
        self.event = Some(event.into());
        self
    }

    /// Sets the `retry:` field, in milliseconds.
    #[must_use]
    pub fn with_retry(mut self, retry_ms: u64) -> Self {
        self.retry = Some(retry_ms);
        self
    }

    /// Checks that the fields can be framed: `id` must not contain CR, LF or
    /// NUL (a client ignores an id with NUL), and `event` must not contain CR
    /// or LF. `data` may contain anything.
    ///
    /// # Errors
    ///
    /// [`InvalidEvent`] names the first field that cannot be framed, the
    /// offending byte and where it is.
    pub fn validate(&self) -> Result<(), InvalidEvent> {
        if let Some(id) = &self.id
            && let Some(position) = memchr3(b'\r', b'\n', 0, id.as_bytes())
        {
            return Err(InvalidEvent::new("id", id.as_bytes(), position));
        }
        if let Some(event) = &self.event
            && let Some(position) = memchr2(b'\r', b'\n', event.as_bytes())
        {
            return Err(InvalidEvent::new("event", event.as_bytes(), position));
        }
        Ok(())
    }

    /// Appends the frame to `buf`, reserving the space once.
    ///
    /// Fields are written in the order `id: `, `event: `, `retry: `, then one
    /// `data: ` line per line of [`data`](Self::data) (split on CRLF, CR or
    /// LF), then a blank line. Empty data still gets one `data:` line, so the
    /// client dispatches the event. Data that starts with a space survives,
    /// because the parser strips exactly one space after the colon.
    ///
    /// # Panics
    ///
    /// In debug builds, if [`validate`](Self::validate) fails. Calling this
    /// on an invalid event is a bug: in release builds an id or type holding
    /// a line break would inject extra lines into the frame.
    pub fn encode_into(&self, buf: &mut BytesMut) {
        debug_assert!(
            self.validate().is_ok(),
            "encoding an invalid event: {:?}",
            self.validate()
        );
        buf.reserve(self.encoded_len_bound());
        if let Some(id) = &self.id {
            put_field(buf, b"id:", id.as_bytes());
        }
        if let Some(event) = &self.event {
            put_field(buf, b"event:", event.as_bytes());
        }
        if let Some(ms) = self.retry {
            put_retry(buf, ms);
        }
        for_each_line(self.data.as_bytes(), |line| put_field(buf, b"data:", line));
        buf.put_u8(b'\n');
    }

    /// The frame as bytes. See [`encode_into`](Self::encode_into).
    ///
    /// # Panics
    ///
    /// In debug builds, if [`validate`](Self::validate) fails.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        self.encode_into(&mut buf);
        buf.freeze()
    }

    /// An upper bound on the frame's length, so `encode_into` reserves once.
    ///
    /// Each line of data costs `data: ` plus LF (7 bytes) on top of its
    /// text. Counting every CR and LF as a line break overcounts CRLF by
    /// one line, which only over-reserves.
    fn encoded_len_bound(&self) -> usize {
        let data = self.data.as_bytes();
        let lines = memchr2_iter(b'\n', b'\r', data).count() + 1;
        let mut len = data.len() + lines * "data: \n".len() + 1;
        if let Some(id) = &self.id {
            len += "id: \n".len() + id.len();
        }
        if let Some(event) = &self.event {
            len += "event: \n".len() + event.len();
        }
        if self.retry.is_some() {
            len += "retry: \n".len() + U64_MAX_DIGITS;
        }
        len
    }
}

/// Error from [`Event::validate`]: a field holds a byte that cannot be
/// framed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidEvent {
    /// `"id"` or `"event"`.
    field: &'static str,
    /// The offending byte: `b'\r'`, `b'\n'` or `0`.
    byte: u8,
    /// Byte offset of `byte` within the field's value.
    position: usize,
}

impl InvalidEvent {
    fn new(field: &'static str, value: &[u8], position: usize) -> Self {
        Self {
            field,
            byte: value[position],
            position,
        }
    }

    /// The field that cannot be framed: `"id"` or `"event"`.
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// The offending byte: `b'\r'`, `b'\n'` or `0` (NUL, only in `id`).
    pub fn byte(&self) -> u8 {
        self.byte
    }

    /// Byte offset of the offending byte within the field's value.
    pub fn position(&self) -> usize {
        self.position
    }
}

impl fmt::Display for InvalidEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.byte {
            b'\r' => "a carriage return",
            b'\n' => "a line feed",
            _ => "a NUL",
        };
        write!(
            f,
            "SSE `{}` field contains {} at byte {}",
            self.field, what, self.position
        )
    }
}

impl std::error::Error for InvalidEvent {}

/// A comment frame: each line of `text` (split on CRLF, CR or LF) prefixed
/// with `:`, then a blank line. Clients ignore comments, so
/// `comment("")` (`":\n\n"`) is the usual heartbeat that keeps proxies from
/// closing an idle stream.
///
/// No space is added after the colon: the [`Decoder`](crate::Decoder)
/// yields the text after the colon verbatim, so a comment round-trips.
pub fn comment(text: &str) -> Bytes {
    let text = text.as_bytes();
    let lines = memchr2_iter(b'\n', b'\r', text).count() + 1;
    let mut buf = BytesMut::with_capacity(text.len() + lines * ":\n".len() + 1);
    for_each_line(text, |line| {
        buf.put_u8(b':');
        buf.put_slice(line);
        buf.put_u8(b'\n');
    });
    buf.put_u8(b'\n');
    buf.freeze()
}

/// A frame that only sets the client's reconnection delay, in milliseconds:
/// `retry(3000)` is `"retry: 3000\n\n"`. It dispatches no event.
pub fn retry(ms: u64) -> Bytes {
    let mut buf = BytesMut::with_capacity("retry: \n\n".len() + U64_MAX_DIGITS);
    put_retry(&mut buf, ms);
    buf.put_u8(b'\n');
    buf.freeze()
}

/// Decimal digits in `u64::MAX`.
const U64_MAX_DIGITS: usize = 20;

/// Writes `name` (which ends with `:`), then a space and `value` unless
/// `value` is empty, then LF.
fn put_field(buf: &mut BytesMut, name: &[u8], value: &[u8]) {
    buf.put_slice(name);
    if !value.is_empty() {
        buf.put_u8(b' ');
        buf.put_slice(value);
    }
    buf.put_u8(b'\n');
}

/// Writes `retry: <ms>` and LF without going through `fmt`.
fn put_retry(buf: &mut BytesMut, mut ms: u64) {
    let mut digits = [0u8; U64_MAX_DIGITS];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (ms % 10) as u8;
        ms /= 10;
        if ms == 0 {
            break;
        }
    }
    put_field(buf, b"retry:", &digits[start..]);
}

/// Calls `f` on each line of `text`, where lines end with CRLF, CR or LF.
/// Like `str::split`, `n` line breaks give `n + 1` lines, so `""` is one
/// empty line and `"a\n"` is `"a"` then `""`.
fn for_each_line(text: &[u8], mut f: impl FnMut(&[u8])) {
    let mut rest = text;
    while let Some(i) = memchr2(b'\n', b'\r', rest) {
        f(&rest[..i]);
        let crlf = rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n');
        rest = &rest[i + 1 + usize::from(crlf)..];
    }
    f(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(event: Event, expect: &str) {
        let got = event.encode();
        assert_eq!(
            std::str::from_utf8(&got).unwrap(),
            expect,
            "encoding {event:?}"
        );
        assert!(
            got.len() <= event.encoded_len_bound(),
            "bound too small for {event:?}"
        );
    }

    #[test]
    fn encode() {
        let cases: &[(Event, &str)] = &[
            (Event::new("hi"), "data: hi\n\n"),
            (Event::new(""), "data:\n\n"),
            (Event::new(" x"), "data:  x\n\n"),
            (Event::new("a:b"), "data: a:b\n\n"),
            (Event::new("a\nb"), "data: a\ndata: b\n\n"),
            (Event::new("a\r\nb"), "data: a\ndata: b\n\n"),
            (Event::new("a\rb"), "data: a\ndata: b\n\n"),
            (Event::new("a\n"), "data: a\ndata:\n\n"),
            (Event::new("\n"), "data:\ndata:\n\n"),
            (Event::new("\r\n"), "data:\ndata:\n\n"),
            (Event::new("\n\r"), "data:\ndata:\ndata:\n\n"),
            (Event::new("a\n\nb"), "data: a\ndata:\ndata: b\n\n"),
            (Event::new("é😀"), "data: é😀\n\n"),
            (Event::new("x").with_id("7"), "id: 7\ndata: x\n\n"),
            (Event::new("x").with_id(""), "id:\ndata: x\n\n"),
            (
                Event::new("x").with_event("tick"),
                "event: tick\ndata: x\n\n",
            ),
            (Event::new("x").with_retry(0), "retry: 0\ndata: x\n\n"),
            (
                Event::new("x").with_retry(u64::MAX),
                "retry: 18446744073709551615\ndata: x\n\n",
            ),
            (
                Event::new("a\nb")
                    .with_retry(1500)
                    .with_event("kind")
                    .with_id("id-5"),
                "id: id-5\nevent: kind\nretry: 1500\ndata: a\ndata: b\n\n",
            ),
        ];
        for (event, expect) in cases {
            check(event.clone(), expect);
        }
    }

    #[test]
    fn encode_into_appends() {
        let mut buf = BytesMut::from(&b"prefix\n"[..]);
        Event::new("x").encode_into(&mut buf);
        Event::new("y").encode_into(&mut buf);
        assert_eq!(&buf[..], b"prefix\ndata: x\n\ndata: y\n\n");
    }

    #[test]
    fn validate() {
        /// An event and the (field, byte, position) validation reports.
        type Case = (Event, Option<(&'static str, u8, usize)>);
        let cases: &[Case] = &[
            (Event::new("any\r\n\0thing"), None),
            (Event::new("").with_id("").with_event(""), None),
            (Event::new("").with_event("a\0b"), None),
            (Event::new("").with_id("a\nb"), Some(("id", b'\n', 1))),
            (Event::new("").with_id("ab\r"), Some(("id", b'\r', 2))),
            (Event::new("").with_id("\0"), Some(("id", 0, 0))),
            (Event::new("").with_event("a\rb"), Some(("event", b'\r', 1))),
            (Event::new("").with_event("\n"), Some(("event", b'\n', 0))),
            // The id is checked first.
            (
                Event::new("").with_id("\n").with_event("\n"),
                Some(("id", b'\n', 0)),
            ),
        ];
        for (event, expect) in cases {
            let got = event
                .validate()
                .err()
                .map(|e| (e.field(), e.byte(), e.position()));
            assert_eq!(got, *expect, "validating {event:?}");
        }
    }

    #[test]
    fn invalid_event_display() {
        let err = Event::new("").with_id("ab\n").validate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "SSE `id` field contains a line feed at byte 2"
        );
        let err = Event::new("").with_id("\0").validate().unwrap_err();
        assert_eq!(err.to_string(), "SSE `id` field contains a NUL at byte 0");
        let err = Event::new("").with_event("\r").validate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "SSE `event` field contains a carriage return at byte 0"
        );
    }

    #[test]
    fn comments() {
        let cases: &[(&str, &str)] = &[
            ("", ":\n\n"),
            ("hi", ":hi\n\n"),
            (" hi", ": hi\n\n"),
            ("a\nb", ":a\n:b\n\n"),
            ("a\r\nb\rc", ":a\n:b\n:c\n\n"),
            ("a\n", ":a\n:\n\n"),
        ];
        for (text, expect) in cases {
            assert_eq!(comment(text), expect.as_bytes(), "comment({text:?})");
        }
    }

    #[test]
    fn retry_frames() {
        let cases: &[(u64, &str)] = &[
            (3000, "retry: 3000\n\n"),
            (0, "retry: 0\n\n"),
            (10, "retry: 10\n\n"),
            (u64::MAX, "retry: 18446744073709551615\n\n"),
        ];
        for (ms, expect) in cases {
            assert_eq!(retry(*ms), expect.as_bytes(), "retry({ms})");
        }
    }
}
