//! Just enough HTTP/1.1 for an SSE subscriber on a raw socket: the request
//! it writes, the response head it reads ([`parse_head`]), and the body
//! framing ([`Body`]): `Transfer-Encoding: chunked` ([`Chunked`]),
//! `Content-Length`, or bytes until the server closes.
//!
//! Hand-written rather than hyper's client so that one subscriber costs one
//! socket, one small buffer and one task, and so that servers which do not
//! chunk (Nchan, Pushpin) read the same way.

use std::fmt::Write as _;

/// Most bytes a response head may take. A hub answers with a dozen short
/// headers; more than this is not an SSE server worth measuring.
pub const MAX_HEAD: usize = 16 * 1024;

/// Most bytes of trailer section after the last chunk.
const MAX_TRAILERS: usize = 16 * 1024;

/// The `GET` that opens an SSE stream; `cookie` is a `Cookie` header's value.
pub fn request(
    authority: &str,
    path_and_query: &str,
    token: Option<&str>,
    last_event_id: Option<&str>,
    cookie: Option<&str>,
) -> String {
    let mut req = format!(
        "GET {path_and_query} HTTP/1.1\r\nHost: {authority}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n"
    );
    if let Some(token) = token {
        let _ = write!(req, "Authorization: Bearer {token}\r\n");
    }
    if let Some(id) = last_event_id {
        let _ = write!(req, "Last-Event-ID: {id}\r\n");
    }
    if let Some(cookie) = cookie {
        let _ = write!(req, "Cookie: {cookie}\r\n");
    }
    req.push_str("\r\n");
    req
}

/// A parsed response status line and headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// The status code.
    pub status: u16,
    /// Header names (lower-cased) and values (trimmed), in order.
    pub headers: Vec<(String, String)>,
    /// How the body is framed.
    pub framing: Framing,
}

impl Head {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// How a response body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// `Content-Length: n`.
    Length(u64),
    /// Neither: the body runs until the server closes the connection.
    UntilClose,
}

/// Why [`parse_head`] did not return a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadError {
    /// The blank line ending the head has not arrived yet: read more.
    Incomplete,
    /// The head has no end within [`MAX_HEAD`] bytes.
    TooLarge,
    /// Not an HTTP/1.x response head.
    Invalid(&'static str),
}

impl std::fmt::Display for HeadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Incomplete => f.write_str("incomplete response head"),
            Self::TooLarge => write!(f, "response head larger than {MAX_HEAD} bytes"),
            Self::Invalid(why) => write!(f, "invalid response head: {why}"),
        }
    }
}

impl std::error::Error for HeadError {}

/// Parses a response head at the start of `buf`. Returns it and the number
/// of bytes it took; what follows belongs to the body. Lines may end in
/// CRLF or a bare LF.
///
/// # Errors
///
/// [`HeadError::Incomplete`] when `buf` does not yet hold the whole head
/// (and is shorter than [`MAX_HEAD`]), otherwise [`HeadError::TooLarge`]
/// or [`HeadError::Invalid`].
pub fn parse_head(buf: &[u8]) -> Result<(Head, usize), HeadError> {
    let Some(len) = head_len(buf) else {
        return Err(if buf.len() >= MAX_HEAD {
            HeadError::TooLarge
        } else {
            HeadError::Incomplete
        });
    };
    if len > MAX_HEAD {
        return Err(HeadError::TooLarge);
    }
    let text = std::str::from_utf8(&buf[..len]).map_err(|_| HeadError::Invalid("not UTF-8"))?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(HeadError::Invalid("not an HTTP/1.x status line"));
    }
    let status = parts
        .next()
        .filter(|s| s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or(HeadError::Invalid("bad status code"))?;
    let mut headers = Vec::new();
    for line in lines.take_while(|l| !l.is_empty()) {
        if line.starts_with([' ', '\t']) {
            return Err(HeadError::Invalid("folded header line"));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or(HeadError::Invalid("header line without ':'"))?;
        if name.is_empty() || name.bytes().any(|b| b <= b' ') {
            return Err(HeadError::Invalid("bad header name"));
        }
        headers.push((
            name.to_ascii_lowercase(),
            value.trim_matches([' ', '\t']).to_owned(),
        ));
    }
    let framing = framing(&headers, version == "HTTP/1.1")?;
    Ok((
        Head {
            status,
            headers,
            framing,
        },
        len,
    ))
}

/// The length of the head including its blank line, if it is complete.
fn head_len(buf: &[u8]) -> Option<usize> {
    let window = &buf[..buf.len().min(MAX_HEAD + 4)];
    let mut from = 0;
    while let Some(i) = window[from..].iter().position(|&b| b == b'\n') {
        let end = from + i + 1;
        match &window[end..] {
            [b'\n', ..] => return Some(end + 1),
            [b'\r', b'\n', ..] => return Some(end + 2),
            _ => from = end,
        }
    }
    None
}

fn framing(headers: &[(String, String)], http11: bool) -> Result<Framing, HeadError> {
    let mut chunked = false;
    let mut length = None;
    for (name, value) in headers {
        match name.as_str() {
            "transfer-encoding" if http11 => {
                // The last coding decides; anything but chunked last means
                // the body runs until close (RFC 9112 §6.3).
                chunked = value
                    .rsplit(',')
                    .next()
                    .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
                if !chunked {
                    return Ok(Framing::UntilClose);
                }
            }
            "content-length" => {
                let n = value
                    .parse::<u64>()
                    .map_err(|_| HeadError::Invalid("bad content-length"))?;
                if length.is_some_and(|l| l != n) {
                    return Err(HeadError::Invalid("conflicting content-length"));
                }
                length = Some(n);
            }
            _ => {}
        }
    }
    Ok(match (chunked, length) {
        (true, _) => Framing::Chunked,
        (false, Some(n)) => Framing::Length(n),
        (false, None) => Framing::UntilClose,
    })
}

/// Error in a chunked body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkError(pub &'static str);

impl std::fmt::Display for ChunkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid chunked body: {}", self.0)
    }
}

impl std::error::Error for ChunkError {}

/// Incremental decoder of `Transfer-Encoding: chunked`. Feed it bytes split
/// anywhere; it hands out the body's bytes as slices of the input, without
/// copying.
#[derive(Clone, Debug, Default)]
pub struct Chunked {
    state: ChunkState,
}

#[derive(Clone, Copy, Debug)]
enum ChunkState {
    /// Reading the hex size; `digits` so far.
    Size { size: u64, digits: u8 },
    /// In a chunk extension, after the size.
    Ext { size: u64 },
    /// After the size line's CR.
    SizeLf { size: u64 },
    /// Inside chunk data.
    Data { remaining: u64 },
    /// After chunk data, expecting CRLF.
    DataCr,
    /// After chunk data and CR.
    DataLf,
    /// In the trailer section; `line` bytes into the current line, `total`
    /// bytes of trailers so far.
    Trailer { line: usize, total: usize },
    /// After a CR in the trailer section.
    TrailerLf { line: usize, total: usize },
    /// The last chunk and its trailers have been read.
    Done,
}

impl Default for ChunkState {
    fn default() -> Self {
        Self::Size { size: 0, digits: 0 }
    }
}

impl Chunked {
    /// A decoder at the start of a chunked body.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the terminating zero-size chunk (and trailers) was read.
    pub fn is_done(&self) -> bool {
        matches!(self.state, ChunkState::Done)
    }

    /// Decodes `input`, calling `out` with each run of body bytes. Bytes
    /// after the end of the body are ignored.
    ///
    /// # Errors
    ///
    /// On malformed framing; the decoder should then be dropped.
    pub fn decode<'a>(
        &mut self,
        input: &'a [u8],
        mut out: impl FnMut(&'a [u8]),
    ) -> Result<(), ChunkError> {
        use ChunkState::*;
        let mut i = 0;
        while i < input.len() {
            if let Data { remaining } = self.state {
                let n = usize::try_from(remaining)
                    .unwrap_or(usize::MAX)
                    .min(input.len() - i);
                out(&input[i..i + n]);
                i += n;
                let remaining = remaining - n as u64;
                self.state = if remaining == 0 {
                    DataCr
                } else {
                    Data { remaining }
                };
                continue;
            }
            let b = input[i];
            i += 1;
            self.state = match self.state {
                Size { size, digits } => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        if digits >= 15 {
                            return Err(ChunkError("chunk size too large"));
                        }
                        let d = (b as char).to_digit(16).unwrap_or(0);
                        Size {
                            size: size * 16 + u64::from(d),
                            digits: digits + 1,
                        }
                    }
                    _ if digits == 0 => return Err(ChunkError("missing chunk size")),
                    b';' | b' ' | b'\t' => Ext { size },
                    b'\r' => SizeLf { size },
                    b'\n' => after_size(size),
                    _ => return Err(ChunkError("bad chunk size")),
                },
                Ext { size } => match b {
                    b'\r' => SizeLf { size },
                    b'\n' => after_size(size),
                    _ => Ext { size },
                },
                SizeLf { size } => match b {
                    b'\n' => after_size(size),
                    _ => return Err(ChunkError("CR without LF after chunk size")),
                },
                DataCr => match b {
                    b'\r' => DataLf,
                    b'\n' => Size { size: 0, digits: 0 },
                    _ => return Err(ChunkError("chunk data longer than its size")),
                },
                DataLf => match b {
                    b'\n' => Size { size: 0, digits: 0 },
                    _ => return Err(ChunkError("CR without LF after chunk data")),
                },
                Trailer { line, total } => {
                    if total >= MAX_TRAILERS {
                        return Err(ChunkError("trailers too large"));
                    }
                    match b {
                        b'\r' => TrailerLf { line, total },
                        b'\n' if line == 0 => Done,
                        b'\n' => Trailer {
                            line: 0,
                            total: total + 1,
                        },
                        _ => Trailer {
                            line: line + 1,
                            total: total + 1,
                        },
                    }
                }
                TrailerLf { line, total } => match b {
                    b'\n' if line == 0 => Done,
                    b'\n' => Trailer {
                        line: 0,
                        total: total + 1,
                    },
                    _ => return Err(ChunkError("CR without LF in trailers")),
                },
                Done => return Ok(()),
                Data { .. } => unreachable!("handled above"),
            };
        }
        Ok(())
    }
}

fn after_size(size: u64) -> ChunkState {
    if size == 0 {
        ChunkState::Trailer { line: 0, total: 0 }
    } else {
        ChunkState::Data { remaining: size }
    }
}

/// A response body decoder for any [`Framing`].
#[derive(Clone, Debug)]
pub enum Body {
    /// Chunked transfer coding.
    Chunked(Chunked),
    /// `remaining` bytes of a `Content-Length` body.
    Length(u64),
    /// Everything until the connection closes.
    UntilClose,
}

impl Body {
    /// A decoder for a body framed as `framing`.
    pub fn new(framing: Framing) -> Self {
        match framing {
            Framing::Chunked => Self::Chunked(Chunked::new()),
            Framing::Length(n) => Self::Length(n),
            Framing::UntilClose => Self::UntilClose,
        }
    }

    /// Decodes `input`, calling `out` with body bytes.
    ///
    /// # Errors
    ///
    /// On malformed chunked framing.
    pub fn decode<'a>(
        &mut self,
        input: &'a [u8],
        mut out: impl FnMut(&'a [u8]),
    ) -> Result<(), ChunkError> {
        match self {
            Self::Chunked(chunked) => chunked.decode(input, out),
            Self::Length(remaining) => {
                let n = usize::try_from(*remaining)
                    .unwrap_or(usize::MAX)
                    .min(input.len());
                if n > 0 {
                    out(&input[..n]);
                }
                *remaining -= n as u64;
                Ok(())
            }
            Self::UntilClose => {
                if !input.is_empty() {
                    out(input);
                }
                Ok(())
            }
        }
    }

    /// Whether the body has ended by its own framing (not by a close).
    pub fn is_done(&self) -> bool {
        match self {
            Self::Chunked(chunked) => chunked.is_done(),
            Self::Length(remaining) => *remaining == 0,
            Self::UntilClose => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `expect` is `status framing [name=value ...] +consumed`, or the error.
    fn check_head(input: &str, expect: &str) {
        let got = match parse_head(input.as_bytes()) {
            Ok((head, consumed)) => {
                let mut s = format!("{} {:?}", head.status, head.framing);
                for (n, v) in &head.headers {
                    let _ = write!(s, " {n}={v}");
                }
                let _ = write!(s, " +{consumed}");
                s
            }
            Err(e) => format!("{e:?}"),
        };
        assert_eq!(got, expect, "{input:?}");
    }

    #[test]
    fn response_heads() {
        let table = [
            (
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
                "200 Chunked content-type=text/event-stream transfer-encoding=chunked +80",
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\nid: 1\n",
                "200 UntilClose content-type=text/event-stream +52",
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n",
                "200 Length(12) content-length=12 +39",
            ),
            // Bare LF line ends (some small servers).
            ("HTTP/1.1 200 OK\nX:  a b \n\n", "200 UntilClose x=a b +26"),
            ("HTTP/1.0 200 OK\r\n\r\n", "200 UntilClose +19"),
            // No reason phrase.
            ("HTTP/1.1 204\r\n\r\n", "204 UntilClose +16"),
            (
                "HTTP/1.1 429 Too Many Requests\r\nContent-Length: 2\r\n\r\n{}",
                "429 Length(2) content-length=2 +53",
            ),
            // Chunked wins over Content-Length; gzip-then-chunked is chunked.
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n",
                "200 Chunked content-length=5 transfer-encoding=gzip, Chunked +72",
            ),
            // Transfer-Encoding is ignored in HTTP/1.0.
            (
                "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                "200 UntilClose transfer-encoding=chunked +47",
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                "200 UntilClose transfer-encoding=gzip +44",
            ),
            ("HTTP/1.1 200 OK\r\nContent-Type: text/event", "Incomplete"),
            ("HTTP/1.1 200 OK\r\n", "Incomplete"),
            ("", "Incomplete"),
            (
                "HTTP/2 200\r\n\r\n",
                "Invalid(\"not an HTTP/1.x status line\")",
            ),
            (
                "ICY 200 OK\r\n\r\n",
                "Invalid(\"not an HTTP/1.x status line\")",
            ),
            ("HTTP/1.1 20 OK\r\n\r\n", "Invalid(\"bad status code\")"),
            ("HTTP/1.1 OK\r\n\r\n", "Invalid(\"bad status code\")"),
            (
                "HTTP/1.1 200 OK\r\nNoColon\r\n\r\n",
                "Invalid(\"header line without ':'\")",
            ),
            (
                "HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n",
                "Invalid(\"folded header line\")",
            ),
            (
                "HTTP/1.1 200 OK\r\nBad Name: b\r\n\r\n",
                "Invalid(\"bad header name\")",
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
                "Invalid(\"bad content-length\")",
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                "Invalid(\"conflicting content-length\")",
            ),
        ];
        for (input, expect) in table {
            check_head(input, expect);
        }
    }

    #[test]
    fn head_limit() {
        let mut big = b"HTTP/1.1 200 OK\r\n".to_vec();
        while big.len() < MAX_HEAD {
            big.extend_from_slice(b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert_eq!(parse_head(&big), Err(HeadError::TooLarge));
        big.extend_from_slice(b"\r\n");
        assert_eq!(parse_head(&big), Err(HeadError::TooLarge));
    }

    #[test]
    fn requests() {
        assert_eq!(
            request(
                "127.0.0.1:8080",
                "/.well-known/mercure?topic=a",
                None,
                None,
                None
            ),
            "GET /.well-known/mercure?topic=a HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
        );
        assert_eq!(
            request("localhost", "/", Some("tok"), Some("urn:x"), Some("s=1")),
            "GET / HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\nAuthorization: Bearer tok\r\nLast-Event-ID: urn:x\r\nCookie: s=1\r\n\r\n"
        );
    }

    /// Decodes `input` fed in pieces cut at `cuts`; returns the body and
    /// whether the end was seen, or the error.
    fn decode_split(input: &[u8], cuts: &[usize]) -> Result<(Vec<u8>, bool), ChunkError> {
        let mut decoder = Chunked::new();
        let mut body = Vec::new();
        let mut from = 0;
        for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
            decoder.decode(&input[from..cut], |b| body.extend_from_slice(b))?;
            from = cut;
        }
        Ok((body, decoder.is_done()))
    }

    #[test]
    fn chunked_bodies() {
        /// Input, then the body and whether it ended, or the error.
        type Case = (&'static str, Result<(&'static str, bool), &'static str>);
        let table: &[Case] = &[
            (
                "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
                Ok(("hello world", true)),
            ),
            ("A\r\n0123456789\r\n", Ok(("0123456789", false))),
            (
                "a;name=value\r\nabcdefghij\r\n0\r\n\r\n",
                Ok(("abcdefghij", true)),
            ),
            ("3 \r\nabc\r\n0\r\n\r\n", Ok(("abc", true))),
            // Bare LF framing.
            ("3\nabc\n0\n\n", Ok(("abc", true))),
            // Trailers.
            ("1\r\nx\r\n0\r\nA: b\r\nC: d\r\n\r\n", Ok(("x", true))),
            // Bytes after the end are ignored.
            ("1\r\nx\r\n0\r\n\r\nGARBAGE", Ok(("x", true))),
            // Unfinished: an SSE stream never ends by itself.
            ("1f\r\n", Ok(("", false))),
            ("5\r\nhel", Ok(("hel", false))),
            ("\r\n", Err("missing chunk size")),
            ("g\r\n", Err("missing chunk size")),
            ("5x\r\n", Err("bad chunk size")),
            ("3\r\nabcd\r\n", Err("chunk data longer than its size")),
            ("3\rX", Err("CR without LF after chunk size")),
            ("3\r\nabc\rX", Err("CR without LF after chunk data")),
            ("1000000000000000\r\n", Err("chunk size too large")),
        ];
        for (input, expect) in table {
            let bytes = input.as_bytes();
            let want = expect
                .map(|(body, done)| (body.as_bytes().to_vec(), done))
                .map_err(ChunkError);
            // Whole, and split at every single point, and split into bytes.
            assert_eq!(decode_split(bytes, &[]), want, "{input:?} whole");
            for cut in 0..=bytes.len() {
                assert_eq!(decode_split(bytes, &[cut]), want, "{input:?} cut at {cut}");
            }
            let every: Vec<usize> = (1..bytes.len()).collect();
            assert_eq!(decode_split(bytes, &every), want, "{input:?} bytewise");
        }
    }

    #[test]
    fn chunked_sse_stream_split_everywhere() {
        // A realistic stream: several chunks, each holding one SSE frame.
        let frames = [
            "retry: 3000\n\n",
            "id: a\ndata: {\"seq\":0}\n\n",
            ": hb\n\n",
            "id: b\ndata: {\"seq\":1}\n\n",
        ];
        let mut wire = Vec::new();
        for f in frames {
            wire.extend_from_slice(format!("{:x}\r\n{f}\r\n", f.len()).as_bytes());
        }
        let want: String = frames.concat();
        for a in 0..=wire.len() {
            for b in a..=wire.len() {
                let (body, done) = decode_split(&wire, &[a, b]).unwrap();
                assert_eq!(String::from_utf8(body).unwrap(), want, "cuts {a} {b}");
                assert!(!done);
            }
        }
    }

    #[test]
    fn identity_bodies() {
        let mut body = Body::new(Framing::Length(5));
        let mut out = Vec::new();
        body.decode(b"abc", |b| out.extend_from_slice(b)).unwrap();
        assert!(!body.is_done());
        body.decode(b"defgh", |b| out.extend_from_slice(b)).unwrap();
        assert!(body.is_done());
        assert_eq!(out, b"abcde");

        let mut body = Body::new(Framing::UntilClose);
        let mut out = Vec::new();
        body.decode(b"data: x\n", |b| out.extend_from_slice(b))
            .unwrap();
        body.decode(b"\n", |b| out.extend_from_slice(b)).unwrap();
        assert!(!body.is_done());
        assert_eq!(out, b"data: x\n\n");
    }
}
