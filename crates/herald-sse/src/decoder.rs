//! Reading SSE: an incremental [`Decoder`] that follows the WHATWG HTML
//! "event stream interpretation" rules.
//!
//! Bytes go in with [`Decoder::push`] in chunks of any size, split anywhere;
//! [`Item`]s come out of [`Decoder::next_item`]. The decoder works a line at
//! a time. CR and LF are ASCII and never occur inside a multi-byte UTF-8
//! sequence, so decoding each complete line with replacement gives the same
//! text as decoding the whole stream first, as the spec describes, and a
//! character split across chunks is never cut.

use std::{borrow::Cow, fmt, mem};

use memchr::{memchr, memchr2};

/// What the [`Decoder`] yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// A dispatched event: a blank line ended a block that had at least one
    /// `data` field (WHATWG "dispatch the event").
    Message(Message),
    /// A `retry:` field whose value is one or more ASCII digits and fits in
    /// a `u64`, in milliseconds. Yielded when the field's line is read, so
    /// it comes before the [`Item::Message`] of its block. Any other value
    /// (empty, signed, spaced, or too large) is ignored.
    Retry(u64),
    /// A comment line: everything after the leading `:`, verbatim (a space
    /// after the colon is kept). Clients ignore these; they are yielded so a
    /// caller can watch heartbeats.
    Comment(String),
}

/// A dispatched event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Event type; `"message"` when the block had no (or an empty) `event`
    /// field.
    pub event: String,
    /// The block's `data` fields joined with LF.
    pub data: String,
    /// The decoder's last event ID at dispatch time. It persists across
    /// events, as in the spec: a block without an `id` field inherits it.
    pub last_event_id: String,
}

/// Error from [`Decoder::next_item`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// An unfinished line plus the event's data so far grew past the
    /// decoder's limit. The decoder has dropped its buffers and returns this
    /// error from then on; drop the stream.
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { limit } => {
                write!(f, "SSE event or line is larger than the {limit}-byte limit")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// An incremental SSE parser. No I/O: feed it bytes with
/// [`push`](Self::push), then call [`next_item`](Self::next_item) until it
/// returns `Ok(None)`.
///
/// Memory is bounded: the current line plus the current event's data may
/// not exceed the limit (see [`with_limit`](Self::with_limit)), and the
/// input buffer holds at most the unfinished line plus the last chunk
/// pushed, as long as `next_item` is drained to `Ok(None)` before each
/// `push`.
///
/// An event left unfinished when the stream ends is never dispatched: there
/// is nothing to call at end of stream, just drop the decoder.
#[derive(Clone, Debug)]
pub struct Decoder {
    /// Pushed bytes; `input[pos..]` is not yet consumed.
    input: Vec<u8>,
    /// Start of the unconsumed input, which is the start of the current
    /// line.
    pos: usize,
    /// `input[pos..scan]` is known to hold no CR or LF, so a long line that
    /// arrives in many chunks is scanned once, not once per chunk.
    /// Invariant: `pos <= scan <= input.len()`.
    scan: usize,
    /// The last line ended with a CR that was the last byte pushed. If the
    /// next byte is LF, it is the second half of that CRLF. Ending the line
    /// at the CR at once, rather than waiting for the next byte, means a
    /// stream that uses bare CRs never stalls.
    skip_lf: bool,
    /// Still at stream start, where a UTF-8 BOM is stripped. Stays set
    /// while the input is a proper prefix of the BOM.
    at_start: bool,
    /// Cap on the bytes of the current line plus the data buffer.
    limit: usize,
    /// Set once the limit is exceeded; the decoder is then dead.
    failed: bool,
    /// The spec's buffers.
    state: State,
}

impl Decoder {
    /// The default [`limit`](Self::limit): 1 MiB. Large enough for any
    /// event a hub should carry, small enough that a peer that never sends
    /// a line break cannot make a client buffer without bound.
    pub const DEFAULT_LIMIT: usize = 1024 * 1024;

    /// A decoder with the [default limit](Self::DEFAULT_LIMIT).
    pub fn new() -> Self {
        Self::with_limit(Self::DEFAULT_LIMIT)
    }

    /// A decoder that fails with [`DecodeError::TooLarge`] once an
    /// unfinished line plus the current event's data buffer exceeds
    /// `max_bytes`. Line terminators do not count; the data buffer counts
    /// one LF per `data` line. The check does not depend on how the input
    /// was split into chunks.
    pub fn with_limit(max_bytes: usize) -> Self {
        Self {
            input: Vec::new(),
            pos: 0,
            scan: 0,
            skip_lf: false,
            at_start: true,
            limit: max_bytes,
            failed: false,
            state: State::default(),
        }
    }

    /// The limit set by [`with_limit`](Self::with_limit), in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Feeds bytes as they arrive. Chunks may split anywhere, including
    /// inside a UTF-8 character, inside the BOM, or between the CR and LF
    /// of a line end. Bytes pushed after an error are dropped.
    pub fn push(&mut self, chunk: &[u8]) {
        if self.failed {
            return;
        }
        if self.pos == self.input.len() {
            self.input.clear();
            self.pos = 0;
            self.scan = 0;
        } else if self.pos > 0 {
            self.input.drain(..self.pos);
            self.scan -= self.pos;
            self.pos = 0;
        }
        self.input.extend_from_slice(chunk);
    }

    /// The next item, or `Ok(None)` when more bytes are needed.
    ///
    /// # Errors
    ///
    /// [`DecodeError::TooLarge`] when the current line plus the current
    /// event's data exceeds the limit. The decoder then drops its buffers
    /// and keeps returning the error.
    pub fn next_item(&mut self) -> Result<Option<Item>, DecodeError> {
        if self.failed {
            return Err(self.too_large());
        }
        if self.at_start && !self.strip_bom() {
            return Ok(None);
        }
        loop {
            if self.skip_lf {
                let Some(&byte) = self.input.get(self.pos) else {
                    return Ok(None);
                };
                self.skip_lf = false;
                if byte == b'\n' {
                    self.pos += 1;
                    self.scan = self.scan.max(self.pos);
                }
            }
            let Some(offset) = memchr2(b'\n', b'\r', &self.input[self.scan..]) else {
                self.scan = self.input.len();
                if self.input.len() - self.pos > self.limit.saturating_sub(self.state.data.len()) {
                    return Err(self.fail());
                }
                return Ok(None);
            };
            let (start, end) = (self.pos, self.scan + offset);
            let next = match (self.input[end], self.input.get(end + 1)) {
                (b'\r', Some(b'\n')) => end + 2,
                (b'\r', None) => {
                    self.skip_lf = true;
                    end + 1
                }
                _ => end + 1,
            };
            self.pos = next;
            self.scan = next;
            if end - start > self.limit.saturating_sub(self.state.data.len()) {
                return Err(self.fail());
            }
            if let Some(item) = self.state.line(&self.input[start..end]) {
                return Ok(Some(item));
            }
        }
    }

    /// The last event ID string, as of the last blank line.
    ///
    /// This is what a client sends as `Last-Event-ID` when it reconnects.
    /// As in the spec it is only updated when a block ends (even a block
    /// with no data), so an `id` field of an event cut off mid-block is not
    /// reported.
    pub fn last_event_id(&self) -> &str {
        &self.state.last_event_id
    }

    /// Strips a UTF-8 BOM at stream start. Returns false while the input is
    /// still a proper prefix of the BOM, so more bytes are needed to decide.
    fn strip_bom(&mut self) -> bool {
        const BOM: &[u8] = b"\xEF\xBB\xBF";
        let rest = &self.input[self.pos..];
        let n = rest.len().min(BOM.len());
        if rest[..n] != BOM[..n] {
            self.at_start = false;
            return true;
        }
        if n < BOM.len() {
            return false;
        }
        self.at_start = false;
        self.pos += BOM.len();
        self.scan = self.scan.max(self.pos);
        true
    }

    /// Kills the decoder and frees its buffers.
    fn fail(&mut self) -> DecodeError {
        self.failed = true;
        self.input = Vec::new();
        self.pos = 0;
        self.scan = 0;
        self.state.data = String::new();
        self.state.event_type = String::new();
        self.too_large()
    }

    fn too_large(&self) -> DecodeError {
        DecodeError::TooLarge { limit: self.limit }
    }
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

/// The buffers of the spec's "event stream interpretation", named as there.
#[derive(Clone, Debug, Default)]
struct State {
    /// The data buffer: each `data` value followed by LF.
    data: String,
    /// The event type buffer.
    event_type: String,
    /// The last event ID buffer, set by each `id` field.
    last_event_id_buffer: String,
    /// The last event ID string, copied from the buffer at each blank line.
    last_event_id: String,
}

impl State {
    /// Processes one line, without its terminator.
    fn line(&mut self, line: &[u8]) -> Option<Item> {
        let (name, value) = match line {
            [] => return self.dispatch().map(Item::Message),
            [b':', text @ ..] => return Some(Item::Comment(lossy(text).into_owned())),
            _ => match memchr(b':', line) {
                Some(colon) => {
                    let value = &line[colon + 1..];
                    (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
                }
                None => (line, &b""[..]),
            },
        };
        // Comparing bytes is the same as comparing decoded text: replacement
        // characters never match these ASCII names.
        match name {
            b"data" => {
                let value = lossy(value);
                self.data.reserve(value.len() + 1);
                self.data.push_str(&value);
                self.data.push('\n');
            }
            b"event" => {
                self.event_type.clear();
                self.event_type.push_str(&lossy(value));
            }
            // An id with NUL is ignored, so it falls through to `_`.
            b"id" if memchr(0, value).is_none() => {
                self.last_event_id_buffer.clear();
                self.last_event_id_buffer.push_str(&lossy(value));
            }
            b"retry" => return parse_retry(value).map(Item::Retry),
            _ => {}
        }
        None
    }

    /// The spec's "dispatch the event", run on a blank line.
    fn dispatch(&mut self) -> Option<Message> {
        self.last_event_id.clone_from(&self.last_event_id_buffer);
        if self.data.is_empty() {
            self.event_type.clear();
            return None;
        }
        let mut data = mem::take(&mut self.data);
        data.pop();
        let event = if self.event_type.is_empty() {
            String::from("message")
        } else {
            mem::take(&mut self.event_type)
        };
        Some(Message {
            event,
            data,
            last_event_id: self.last_event_id.clone(),
        })
    }
}

/// A `retry` value: ASCII digits only, at least one. Values that overflow
/// `u64` are ignored like any other invalid value.
fn parse_retry(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// UTF-8 decode with replacement. `from_utf8_lossy` walks valid input in
/// small chunks; `from_utf8` checks it several times faster, so try it
/// first.
fn lossy(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(event: &str, data: &str, id: &str) -> Item {
        Item::Message(Message {
            event: event.into(),
            data: data.into(),
            last_event_id: id.into(),
        })
    }

    fn cmt(text: &str) -> Item {
        Item::Comment(text.into())
    }

    /// Decodes `chunks` in order, draining after each push. Stops at the
    /// first error, which is returned with the items before it.
    fn decode(limit: usize, chunks: &[&[u8]]) -> (Vec<Item>, Option<DecodeError>, Decoder) {
        let mut decoder = Decoder::with_limit(limit);
        let mut items = Vec::new();
        for chunk in chunks {
            decoder.push(chunk);
            loop {
                match decoder.next_item() {
                    Ok(Some(item)) => items.push(item),
                    Ok(None) => break,
                    Err(e) => return (items, Some(e), decoder),
                }
            }
        }
        (items, None, decoder)
    }

    /// Checks that `input` decodes to `expect` (and `err`) when pushed
    /// whole, a byte at a time, and split in two at every position.
    fn check_with(limit: usize, input: &[u8], expect: &[Item], err: Option<DecodeError>) {
        let whole = decode(limit, &[input]);
        assert_eq!(
            (&whole.0[..], whole.1),
            (expect, err),
            "input {input:?} whole"
        );
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        let bytewise = decode(limit, &bytes);
        assert_eq!(
            (&bytewise.0[..], bytewise.1),
            (expect, err),
            "input {input:?} a byte at a time"
        );
        for at in 0..=input.len() {
            let (a, b) = input.split_at(at);
            let split = decode(limit, &[a, b]);
            assert_eq!(
                (&split.0[..], split.1),
                (expect, err),
                "input {input:?} split at {at}"
            );
        }
    }

    fn check(input: impl AsRef<[u8]>, expect: &[Item]) {
        check_with(Decoder::DEFAULT_LIMIT, input.as_ref(), expect, None);
    }

    #[test]
    fn line_ends() {
        let cases: &[(&str, &[Item])] = &[
            ("data: a\n\n", &[msg("message", "a", "")]),
            ("data: a\r\n\r\n", &[msg("message", "a", "")]),
            ("data: a\r\r", &[msg("message", "a", "")]),
            ("data: a\r\n\n", &[msg("message", "a", "")]),
            ("data: a\n\r", &[msg("message", "a", "")]),
            (
                "data: a\r\rdata: b\r\r",
                &[msg("message", "a", ""), msg("message", "b", "")],
            ),
            // CR LF is one line end, not a line end and an empty line.
            ("data: a\r\ndata: b\r\n\r\n", &[msg("message", "a\nb", "")]),
            // LF CR is two line ends.
            (
                "data: a\n\rdata: b\n\n",
                &[msg("message", "a", ""), msg("message", "b", "")],
            ),
            // A lone CR followed by other bytes is a line end.
            ("data: a\rdata: b\r\r", &[msg("message", "a\nb", "")]),
            (
                "data: a\r\n\rdata: b\n\r\n",
                &[msg("message", "a", ""), msg("message", "b", "")],
            ),
            // Nothing dispatches without a blank line.
            ("data: a\n", &[]),
            ("data: a\r\n", &[]),
            ("data: a", &[]),
            ("", &[]),
        ];
        for (input, expect) in cases {
            check(input, expect);
        }
    }

    #[test]
    fn crlf_split_across_pushes() {
        let cases: &[(&[&[u8]], &[Item])] = &[
            (
                &[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"],
                &[msg("message", "a\nb", "")],
            ),
            (&[b"data: a\r", b"\r"], &[msg("message", "a", "")]),
            (
                &[b"data: a\r", b"", b"\n", b"\r", b"\n"],
                &[msg("message", "a", "")],
            ),
            (
                &[b"data: a\r", b"\r\n", b"data: b\n\n"],
                &[msg("message", "a", ""), msg("message", "b", "")],
            ),
        ];
        for (chunks, expect) in cases {
            let (items, err, _) = decode(Decoder::DEFAULT_LIMIT, chunks);
            assert_eq!((&items[..], err), (*expect, None), "chunks {chunks:?}");
        }
    }

    #[test]
    fn lone_cr_does_not_wait() {
        // The line ending in CR is processed before the next byte arrives.
        let mut decoder = Decoder::new();
        decoder.push(b"data: a\n\r");
        assert_eq!(decoder.next_item(), Ok(Some(msg("message", "a", ""))));
        assert_eq!(decoder.next_item(), Ok(None));
        decoder.push(b":c\r");
        assert_eq!(decoder.next_item(), Ok(Some(cmt("c"))));
        assert_eq!(decoder.next_item(), Ok(None));
    }

    #[test]
    fn bom() {
        let cases: &[(&[u8], &[Item])] = &[
            (b"\xEF\xBB\xBFdata: a\n\n", &[msg("message", "a", "")]),
            (b"\xEF\xBB\xBF:c\n", &[cmt("c")]),
            (b"\xEF\xBB\xBF\n", &[]),
            // Only one BOM is stripped: the second is part of the field name.
            (b"\xEF\xBB\xBF\xEF\xBB\xBFdata: a\n\n", &[]),
            (b"\xEF\xBB\xBF\xEF\xBB\xBF:c\n", &[]),
            // Not at stream start: kept.
            (b":\xEF\xBB\xBFc\n", &[cmt("\u{feff}c")]),
            (
                b"data: a\n\n\xEF\xBB\xBFdata: b\n\n",
                &[msg("message", "a", "")],
            ),
            // A partial BOM is not a BOM; its bytes are invalid UTF-8.
            (b"\xEF\xBB:c\n", &[]),
            (b"\xEF\xBBdata: a\n\n", &[]),
            (b"\xEF\n:c\n", &[cmt("c")]),
        ];
        for (input, expect) in cases {
            check(input, expect);
        }
        // The BOM split across pushes, and a comment to show what follows.
        let (items, _, _) = decode(
            Decoder::DEFAULT_LIMIT,
            &[b"\xEF", b"", b"\xBB", b"\xBF:", b"c\n"],
        );
        assert_eq!(items, [cmt("c")]);
        // A partial BOM, then other bytes: the line's name is U+FFFD.
        let (items, _, _) = decode(Decoder::DEFAULT_LIMIT, &[b"\xEF\xBB", b":c\n:d\n"]);
        assert_eq!(items, [cmt("d")]);
    }

    #[test]
    fn utf8() {
        let cases: &[(&[u8], &[Item])] = &[
            ("data: é€😀\n\n".as_bytes(), &[msg("message", "é€😀", "")]),
            (
                "event: ü\nid: 😀\ndata: x\n\n".as_bytes(),
                &[msg("ü", "x", "😀")],
            ),
            // Invalid sequences become U+FFFD, one per maximal subpart.
            (b"data: a\xFFb\n\n", &[msg("message", "a\u{fffd}b", "")]),
            (b"data: \xF0\x9F\x98\n\n", &[msg("message", "\u{fffd}", "")]),
            (
                b"data: \xF0\x9F\x98x\n\n",
                &[msg("message", "\u{fffd}x", "")],
            ),
            (b"data: \xC3\n\n", &[msg("message", "\u{fffd}", "")]),
            (
                b"data: \xED\xA0\x80\n\n",
                &[msg("message", "\u{fffd}\u{fffd}\u{fffd}", "")],
            ),
            (b":\xC3\xA9\xC3\n", &[cmt("é\u{fffd}")]),
            // An incomplete sequence just before the colon.
            (b"data\xC3: x\n\n", &[]),
            (b"\xC3\n:ok\n", &[cmt("ok")]),
            // A NUL is valid UTF-8 in data and comments.
            (b"data: \0\n\n", &[msg("message", "\0", "")]),
        ];
        for (input, expect) in cases {
            check(input, expect);
        }
    }

    #[test]
    fn fields() {
        let cases: &[(&str, &[Item])] = &[
            // One leading space is stripped from the value, no more.
            ("data:a\n\n", &[msg("message", "a", "")]),
            ("data: a\n\n", &[msg("message", "a", "")]),
            ("data:  a \n\n", &[msg("message", " a ", "")]),
            ("data:\ta\n\n", &[msg("message", "\ta", "")]),
            // Only the first colon splits.
            ("data: a:b: c\n\n", &[msg("message", "a:b: c", "")]),
            ("data::\n\n", &[msg("message", ":", "")]),
            // No colon: the whole line is the name and the value is empty.
            ("data\n\n", &[msg("message", "", "")]),
            ("data\ndata\n\n", &[msg("message", "\n", "")]),
            ("data:\n\n", &[msg("message", "", "")]),
            ("data: \n\n", &[msg("message", "", "")]),
            // Names are case sensitive and exact.
            ("Data: a\n\n", &[]),
            ("data : a\n\n", &[]),
            (" data: a\n\n", &[]),
            ("datas: a\n\n", &[]),
            // Unknown fields are ignored.
            ("foo: bar\ndata: a\nbaz\n\n", &[msg("message", "a", "")]),
            // Data lines join with LF; one trailing LF is stripped.
            ("data: a\ndata: b\n\n", &[msg("message", "a\nb", "")]),
            ("data: a\ndata:\n\n", &[msg("message", "a\n", "")]),
            ("data:\ndata:\ndata:\n\n", &[msg("message", "\n\n", "")]),
            // Field order within a block does not matter.
            ("data: a\nevent: e\nid: 1\n\n", &[msg("e", "a", "1")]),
        ];
        for (input, expect) in cases {
            check(input, expect);
        }
    }

    #[test]
    fn comments() {
        let cases: &[(&str, &[Item])] = &[
            (":\n", &[cmt("")]),
            (":hi\n", &[cmt("hi")]),
            (": hi \n", &[cmt(" hi ")]),
            ("::x:\n", &[cmt(":x:")]),
            (":a\r:b\r\n:c\n", &[cmt("a"), cmt("b"), cmt("c")]),
            // Comments do not end a block or touch its buffers.
            (
                "data: a\n:c\ndata: b\n\n",
                &[cmt("c"), msg("message", "a\nb", "")],
            ),
            (":c\n\n", &[cmt("c")]),
        ];
        for (input, expect) in cases {
            check(input, expect);
        }
    }

    #[test]
    fn event_type() {
        let cases: &[(&str, &[Item])] = &[
            ("event: tick\ndata: a\n\n", &[msg("tick", "a", "")]),
            ("event:tick\ndata: a\n\n", &[msg("tick", "a", "")]),
            ("event:  tick\ndata: a\n\n", &[msg(" tick", "a", "")]),
            // Empty or absent means "message".
            ("event:\ndata: a\n\n", &[msg("message", "a", "")]),
            ("event\ndata: a\n\n", &[msg("message", "a", "")]),
            // The last one wins.
            ("event: a\nevent: b\ndata: x\n\n", &[msg("b", "x", "")]),
            ("event: a\nevent:\ndata: x\n\n", &[msg("message", "x", "")]),
            // The type is reset after each block, dispatched or not.
            (
                "event: a\ndata: x\n\ndata: y\n\n",
                &[msg("a", "x", ""), msg("message", "y", "")],
            ),
            ("event: a\n\ndata: y\n\n", &[msg("message", "y", "")]),
            // A type without data dispatches nothing.
            ("event: a\n\n", &[]),
        ];
        for (input, expect) in cases {
            check(input, expect);
        }
    }

    #[test]
    fn last_event_id() {
        let cases: &[(&str, &[Item])] = &[
            ("id: 1\ndata: a\n\n", &[msg("message", "a", "1")]),
            ("id:1\ndata: a\n\n", &[msg("message", "a", "1")]),
            ("id:  1 \ndata: a\n\n", &[msg("message", "a", " 1 ")]),
            // It persists across events.
            (
                "id: 1\ndata: a\n\ndata: b\n\n",
                &[msg("message", "a", "1"), msg("message", "b", "1")],
            ),
            // An empty value resets it.
            (
                "id: 1\ndata: a\n\nid\ndata: b\n\n",
                &[msg("message", "a", "1"), msg("message", "b", "")],
            ),
            (
                "id: 1\ndata: a\n\nid:\ndata: b\n\n",
                &[msg("message", "a", "1"), msg("message", "b", "")],
            ),
            // A value with NUL is ignored.
            (
                "id: 1\ndata: a\n\nid: 2\0\ndata: b\n\n",
                &[msg("message", "a", "1"), msg("message", "b", "1")],
            ),
            ("id: \0\ndata: b\n\n", &[msg("message", "b", "")]),
            // A block without data still sets it, for the next event.
            ("id: 1\n\ndata: b\n\n", &[msg("message", "b", "1")]),
            // The last one wins.
            ("id: 1\nid: 2\ndata: a\n\n", &[msg("message", "a", "2")]),
        ];
        for (input, expect) in cases {
            check(input, expect);
        }
    }

    #[test]
    fn last_event_id_updates_at_block_end() {
        let mut decoder = Decoder::new();
        decoder.push(b"id: 1\ndata: a\n\nid: 2\ndata: b\n");
        assert_eq!(decoder.next_item(), Ok(Some(msg("message", "a", "1"))));
        assert_eq!(decoder.next_item(), Ok(None));
        // The second block has not ended, so its id is not reported.
        assert_eq!(decoder.last_event_id(), "1");
        decoder.push(b"\n");
        assert_eq!(decoder.next_item(), Ok(Some(msg("message", "b", "2"))));
        assert_eq!(decoder.last_event_id(), "2");
        // A block without data updates it too.
        decoder.push(b"id: 3\n\n");
        assert_eq!(decoder.next_item(), Ok(None));
        assert_eq!(decoder.last_event_id(), "3");
    }

    #[test]
    fn retry() {
        let cases: &[(&str, &[Item])] = &[
            ("retry: 3000\n", &[Item::Retry(3000)]),
            ("retry:3000\n", &[Item::Retry(3000)]),
            ("retry: 0\n", &[Item::Retry(0)]),
            ("retry: 007\n", &[Item::Retry(7)]),
            ("retry: 18446744073709551615\n", &[Item::Retry(u64::MAX)]),
            // Anything but ASCII digits is ignored.
            ("retry:\n", &[]),
            ("retry\n", &[]),
            ("retry: \n", &[]),
            ("retry:  1\n", &[]),
            ("retry: 1 \n", &[]),
            ("retry: -1\n", &[]),
            ("retry: +1\n", &[]),
            ("retry: 1.5\n", &[]),
            ("retry: 1e3\n", &[]),
            ("retry: ١\n", &[]),
            // Overflow is ignored too.
            ("retry: 18446744073709551616\n", &[]),
            ("retry: 99999999999999999999999\n", &[]),
            // Yielded when read, before the block's message.
            (
                "data: a\nretry: 10\n\n",
                &[Item::Retry(10), msg("message", "a", "")],
            ),
            // A retry-only block dispatches nothing.
            ("retry: 10\n\n", &[Item::Retry(10)]),
        ];
        for (input, expect) in cases {
            check(input, expect);
        }
    }

    #[test]
    fn dispatch() {
        let cases: &[(&str, &[Item])] = &[
            // Blank lines without data dispatch nothing.
            ("\n\n\n", &[]),
            ("data: a\n\n\n\n", &[msg("message", "a", "")]),
            // Empty data still dispatches.
            ("data\n\n", &[msg("message", "", "")]),
            // Buffers are reset after each dispatch.
            (
                "data: a\n\ndata: b\n\n",
                &[msg("message", "a", ""), msg("message", "b", "")],
            ),
            // An unfinished block at the end is not dispatched.
            ("data: a\n\ndata: b\n", &[msg("message", "a", "")]),
            ("data: a\n\nevent: x\ndata: b", &[msg("message", "a", "")]),
        ];
        for (input, expect) in cases {
            check(input, expect);
        }
    }

    #[test]
    fn limit() {
        let too_large = |limit| Some(DecodeError::TooLarge { limit });
        let cases: &[(usize, &str, &[Item], Option<DecodeError>)] = &[
            // A line of exactly the limit is fine, one more byte is not.
            (8, "data: ab\n\n", &[msg("message", "ab", "")], None),
            (8, "data: abc\n\n", &[], too_large(8)),
            (8, "data: abc", &[], too_large(8)),
            (8, ":1234567\n", &[cmt("1234567")], None),
            (8, ":12345678\n", &[], too_large(8)),
            (8, ":12345678", &[], too_large(8)),
            // Terminators do not count.
            (8, ":1234567\r\n", &[cmt("1234567")], None),
            // The data buffer counts, with one LF per line: "a\nb\n" is 4,
            // so the next line may be 4 bytes long.
            (
                8,
                "data:a\ndata:b\n:123\n\n",
                &[cmt("123"), msg("message", "a\nb", "")],
                None,
            ),
            (8, "data:a\ndata:b\n:1234\n\n", &[], too_large(8)),
            (
                8,
                "data:a\ndata:b\ndata\n\n",
                &[msg("message", "a\nb\n", "")],
                None,
            ),
            (8, "data:a\ndata:b\ndata:\n", &[], too_large(8)),
            // The data buffer empties at each block end.
            (
                8,
                "data: ab\n\ndata: ab\n\n",
                &[msg("message", "ab", ""), msg("message", "ab", "")],
                None,
            ),
            // Items before the error are still yielded.
            (4, ":a\n:abcde\n", &[cmt("a")], too_large(4)),
            (0, "\n\n", &[], None),
            (0, ":", &[], too_large(0)),
        ];
        for (limit, input, expect, err) in cases {
            check_with(*limit, input.as_bytes(), expect, *err);
        }
    }

    #[test]
    fn error_is_sticky() {
        let mut decoder = Decoder::with_limit(4);
        decoder.push(b":abcde");
        let err = DecodeError::TooLarge { limit: 4 };
        assert_eq!(decoder.next_item(), Err(err));
        decoder.push(b"\n:ok\n");
        assert_eq!(decoder.next_item(), Err(err));
        assert!(decoder.input.is_empty());
        assert_eq!(
            err.to_string(),
            "SSE event or line is larger than the 4-byte limit"
        );
    }

    #[test]
    fn long_line_in_small_chunks_is_scanned_once() {
        let mut decoder = Decoder::new();
        for _ in 0..1000 {
            decoder.push(b"data: xxxxxxxxxx");
            assert_eq!(decoder.next_item(), Ok(None));
            assert_eq!(decoder.scan, decoder.input.len());
        }
        decoder.push(b"\n\n");
        let Ok(Some(Item::Message(m))) = decoder.next_item() else {
            panic!("no message");
        };
        assert_eq!(m.data.len(), 10 + 16 * 999);
    }

    #[test]
    fn defaults() {
        assert_eq!(Decoder::new().limit(), 1 << 20);
        assert_eq!(Decoder::default().limit(), Decoder::DEFAULT_LIMIT);
        assert_eq!(Decoder::with_limit(5).limit(), 5);
        assert_eq!(Decoder::new().last_event_id(), "");
    }
}
