//! Server-Sent Events wire format: framing [`Event`]s into bytes, and an
//! incremental [`Decoder`] that turns bytes back into [`Item`]s following
//! the WHATWG HTML "event stream interpretation" rules exactly.
//!
//! No I/O and no async runtime: the hub writes the bytes this crate
//! produces, and the client feeds the bytes it reads. Every buffer the
//! decoder grows has a limit.
//!
//! ```
//! use herald_sse::{Decoder, Event, Item};
//!
//! let frame = Event::new("hello\nworld").with_id("42").with_event("greeting").encode();
//! assert_eq!(&frame[..], b"id: 42\nevent: greeting\ndata: hello\ndata: world\n\n");
//!
//! let mut decoder = Decoder::new();
//! // Bytes may arrive split anywhere.
//! decoder.push(&frame[..10]);
//! assert_eq!(decoder.next_item(), Ok(None));
//! decoder.push(&frame[10..]);
//! let Ok(Some(Item::Message(message))) = decoder.next_item() else { panic!() };
//! assert_eq!(message.event, "greeting");
//! assert_eq!(message.data, "hello\nworld");
//! assert_eq!(message.last_event_id, "42");
//! ```
//!
//! # Layout
//!
//! - `event.rs`: [`Event`] and its encoder, [`InvalidEvent`], and the
//!   [`comment`] and [`retry`] frames.
//! - `decoder.rs`: [`Decoder`], which yields [`Item`]s ([`Message`]s,
//!   [`Item::Retry`] and [`Item::Comment`]) or a [`DecodeError`].
//!
//! # What survives a round trip
//!
//! SSE cannot carry a CR in data: every line break becomes its own `data:`
//! line and the client joins them with LF. So an event's data comes back
//! with CRLF and lone CR replaced by LF. Ids, event types and everything
//! else come back unchanged, except that an empty event type reads as
//! `"message"`.

mod decoder;
mod event;

pub use decoder::{DecodeError, Decoder, Item, Message};
pub use event::{Event, InvalidEvent, comment, retry};
