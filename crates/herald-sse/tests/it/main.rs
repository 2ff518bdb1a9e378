//! Property tests through the public API: what the encoder writes, the
//! decoder reads back, however the bytes are split.

use herald_sse::{DecodeError, Decoder, Event, Item, Message, comment, retry};
use proptest::prelude::*;
use proptest::sample::Index;

/// Pieces that stress the framing: every line break, spaces, colons,
/// multi-byte characters, NUL, a BOM, and field names.
const PIECES: &[&str] = &[
    "\n", "\r", "\r\n", "\n\r", " ", "  ", ":", ": ", "a", "xyz", "é", "€", "😀", "\0", "\u{feff}",
    "data:", "id: ", "event", "retry: 5", "",
];

/// Byte pieces for streams that are not necessarily valid: line ends,
/// fields, a BOM, and halves of a UTF-8 character.
const BYTE_PIECES: &[&[u8]] = &[
    b"\n",
    b"\r",
    b"\r\n",
    b"\n\r",
    b":",
    b" ",
    b"data",
    b"data: x",
    b"id: 1",
    b"id:\0",
    b"event: e",
    b"retry: 7",
    b"retry: x",
    b"\xEF\xBB\xBF",
    b"\xEF",
    b"\xC3",
    b"\xA9",
    b"\xFF",
];

/// Text built from [`PIECES`] or arbitrary Unicode.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        prop::collection::vec(prop::sample::select(PIECES), 0..12).prop_map(|p| p.concat()),
    ]
}

/// Text without the given characters, which a field cannot carry.
fn text_without(banned: &'static [char]) -> impl Strategy<Value = String> {
    text().prop_map(move |s| s.replace(banned, ""))
}

fn event() -> impl Strategy<Value = Event> {
    (
        prop::option::of(text_without(&['\r', '\n', '\0'])),
        prop::option::of(text_without(&['\r', '\n'])),
        text(),
        prop::option::of(any::<u64>()),
    )
        .prop_map(|(id, event, data, retry)| Event {
            id,
            event,
            data,
            retry,
        })
}

/// One frame of a stream.
#[derive(Clone, Debug)]
enum Frame {
    Event(Event),
    Comment(String),
    Retry(u64),
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        4 => event().prop_map(Frame::Event),
        1 => text().prop_map(Frame::Comment),
        1 => any::<u64>().prop_map(Frame::Retry),
    ]
}

/// Splits `bytes` at the given positions and decodes the pieces with a
/// fresh decoder, draining it after each push.
fn decode_split(limit: usize, bytes: &[u8], splits: &[Index]) -> (Vec<Item>, Option<DecodeError>) {
    let mut cuts: Vec<usize> = splits.iter().map(|i| i.index(bytes.len() + 1)).collect();
    cuts.sort_unstable();
    let mut chunks = Vec::new();
    let mut start = 0;
    for cut in cuts {
        chunks.push(&bytes[start..cut]);
        start = cut;
    }
    chunks.push(&bytes[start..]);
    decode_chunks(limit, &chunks)
}

fn decode_chunks(limit: usize, chunks: &[&[u8]]) -> (Vec<Item>, Option<DecodeError>) {
    let mut decoder = Decoder::with_limit(limit);
    let mut items = Vec::new();
    for chunk in chunks {
        decoder.push(chunk);
        loop {
            match decoder.next_item() {
                Ok(Some(item)) => items.push(item),
                Ok(None) => break,
                Err(e) => return (items, Some(e)),
            }
        }
    }
    (items, None)
}

/// Decodes `bytes` split at `splits`, and a byte at a time, and checks both
/// give `expect` with no error.
fn assert_decodes(bytes: &[u8], splits: &[Index], expect: &[Item]) -> Result<(), TestCaseError> {
    let (items, err) = decode_split(Decoder::DEFAULT_LIMIT, bytes, splits);
    prop_assert_eq!(err, None);
    prop_assert_eq!(&items[..], expect, "split {:?}", splits);
    let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
    let (items, err) = decode_chunks(Decoder::DEFAULT_LIMIT, &bytewise);
    prop_assert_eq!(err, None);
    prop_assert_eq!(&items[..], expect, "a byte at a time");
    Ok(())
}

/// What SSE can carry of `data`: line breaks become LF.
fn normalize(data: &str) -> String {
    data.replace("\r\n", "\n").replace('\r', "\n")
}

/// The lines of comment text, split as [`comment`] splits them.
fn lines(text: &str) -> Vec<String> {
    normalize(text).split('\n').map(String::from).collect()
}

/// The items a decoder should yield for `frames`.
fn expected(frames: &[Frame]) -> Vec<Item> {
    let mut items = Vec::new();
    let mut last_event_id = String::new();
    for frame in frames {
        match frame {
            Frame::Event(event) => {
                if let Some(ms) = event.retry {
                    items.push(Item::Retry(ms));
                }
                if let Some(id) = &event.id {
                    last_event_id.clone_from(id);
                }
                items.push(Item::Message(Message {
                    event: match event.event.as_deref() {
                        None | Some("") => "message".into(),
                        Some(t) => t.into(),
                    },
                    data: normalize(&event.data),
                    last_event_id: last_event_id.clone(),
                }));
            }
            Frame::Comment(text) => items.extend(lines(text).into_iter().map(Item::Comment)),
            Frame::Retry(ms) => items.push(Item::Retry(*ms)),
        }
    }
    items
}

fn encode(frames: &[Frame]) -> Vec<u8> {
    let mut out = bytes::BytesMut::new();
    for frame in frames {
        match frame {
            Frame::Event(event) => event.encode_into(&mut out),
            Frame::Comment(text) => out.extend_from_slice(&comment(text)),
            Frame::Retry(ms) => out.extend_from_slice(&retry(*ms)),
        }
    }
    out.to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn event_round_trips(event in event(), splits in prop::collection::vec(any::<Index>(), 0..8)) {
        prop_assert_eq!(event.validate(), Ok(()));
        let bytes = event.encode();
        assert_decodes(&bytes, &splits, &expected(&[Frame::Event(event)]))?;
    }

    #[test]
    fn stream_round_trips(
        bom in any::<bool>(),
        frames in prop::collection::vec(frame(), 0..8),
        splits in prop::collection::vec(any::<Index>(), 0..16),
    ) {
        let mut bytes = if bom { b"\xEF\xBB\xBF".to_vec() } else { Vec::new() };
        bytes.extend(encode(&frames));
        assert_decodes(&bytes, &splits, &expected(&frames))?;
    }

    /// The encoder ends lines with LF; a stream that ends them with any mix
    /// of CRLF, CR and LF decodes the same.
    #[test]
    fn any_line_end_works(
        frames in prop::collection::vec(frame(), 0..8),
        line_ends in prop::collection::vec(prop::sample::select(&["\n", "\r", "\r\n"][..]), 1..16),
        splits in prop::collection::vec(any::<Index>(), 0..16),
    ) {
        let mut bytes = Vec::new();
        for (i, line) in encode(&frames).split_inclusive(|&b| b == b'\n').enumerate() {
            prop_assert_eq!(line.last(), Some(&b'\n'));
            let text = &line[..line.len() - 1];
            let mut end = line_ends[i % line_ends.len()];
            // A lone CR then an empty line ended by LF would be one CRLF.
            if end == "\n" && text.is_empty() && bytes.last() == Some(&b'\r') {
                end = "\r\n";
            }
            bytes.extend_from_slice(text);
            bytes.extend_from_slice(end.as_bytes());
        }
        assert_decodes(&bytes, &splits, &expected(&frames))?;
    }

    /// On any input, the decoder never panics and its output does not
    /// depend on how the input was split, limit errors included.
    #[test]
    fn split_does_not_matter(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            prop::collection::vec(prop::sample::select(BYTE_PIECES), 0..24).prop_map(|p| p.concat()),
            prop::collection::vec(frame(), 0..6).prop_map(|f| encode(&f)),
        ],
        limit in prop_oneof![Just(Decoder::DEFAULT_LIMIT), 0usize..32],
        splits in prop::collection::vec(any::<Index>(), 0..16),
    ) {
        let whole = decode_chunks(limit, &[&bytes]);
        prop_assert_eq!(decode_split(limit, &bytes, &splits), whole.clone());
        let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
        prop_assert_eq!(decode_chunks(limit, &bytewise), whole);
    }
}

#[test]
fn leading_space_in_data_survives() {
    for data in [" x", "  x", " ", " a\n b", "\n x"] {
        let bytes = Event::new(data).encode();
        let (items, err) = decode_chunks(Decoder::DEFAULT_LIMIT, &[&bytes]);
        assert_eq!(err, None);
        assert_eq!(
            items,
            [Item::Message(Message {
                event: "message".into(),
                data: data.into(),
                last_event_id: String::new(),
            })],
            "data {data:?}"
        );
    }
}
