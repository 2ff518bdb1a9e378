//! [`Sse`]: an event stream read through an HTTP client, decoded item by item, with every
//! byte kept for exact checks.

use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, stream::BoxStream};
use herald_sse::{Decoder, Item, Message};
use reqwest::{StatusCode, header::HeaderMap};
use tokio::time::Instant;

use super::ITEM_TIMEOUT;

/// An open event stream, decoded item by item, with the raw bytes kept for exact checks.
pub(crate) struct Sse {
    /// The response status.
    pub(crate) status: StatusCode,
    /// The response headers.
    pub(crate) headers: HeaderMap,
    body: BoxStream<'static, Result<Bytes, BodyError>>,
    decoder: Decoder,
    /// Every byte received so far.
    pub(crate) raw: Vec<u8>,
    ended: bool,
}

/// Why a response body broke off.
pub(crate) type BodyError = Box<dyn std::error::Error + Send + Sync>;

impl Sse {
    pub(crate) fn new(response: reqwest::Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .bytes_stream()
            .map(|chunk| chunk.map_err(Into::into));
        Self::from_parts(status, headers, body.boxed())
    }

    /// A stream of the body `body`, of a response of another client than reqwest.
    pub(crate) fn from_parts(
        status: StatusCode,
        headers: HeaderMap,
        body: BoxStream<'static, Result<Bytes, BodyError>>,
    ) -> Self {
        Self {
            status,
            headers,
            body,
            decoder: Decoder::new(),
            raw: Vec::new(),
            ended: false,
        }
    }

    /// The next item, waiting at most `within`. `Ok(None)` at the end of the stream;
    /// `Err(())` on timeout.
    pub(crate) async fn next_item_within(&mut self, within: Duration) -> Result<Option<Item>, ()> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(item) = self.decoder.next_item().expect("a well-formed stream") {
                return Ok(Some(item));
            }
            if self.ended {
                return Ok(None);
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Err(_) => return Err(()),
                Ok(Some(Ok(chunk))) => {
                    self.raw.extend_from_slice(&chunk);
                    self.decoder.push(&chunk);
                }
                // A reset connection counts as the end, like EOF.
                Ok(Some(Err(_)) | None) => self.ended = true,
            }
        }
    }

    /// The next item, or `None` at the end of the stream.
    ///
    /// # Panics
    ///
    /// After [`ITEM_TIMEOUT`] without one.
    pub(crate) async fn next_item(&mut self) -> Option<Item> {
        self.next_item_within(ITEM_TIMEOUT)
            .await
            .unwrap_or_else(|()| panic!("no SSE item within {ITEM_TIMEOUT:?}"))
    }

    /// The next event, skipping `retry:` frames and comments.
    ///
    /// # Panics
    ///
    /// At the end of the stream, or after [`ITEM_TIMEOUT`] without an item.
    pub(crate) async fn next_message(&mut self) -> Message {
        loop {
            match self.next_item().await {
                Some(Item::Message(message)) => return message,
                Some(_) => {}
                None => panic!("the stream ended while waiting for an event"),
            }
        }
    }

    /// The ids of the events up to and including the one with id `last`.
    ///
    /// # Panics
    ///
    /// When the stream ends, or no item arrives within [`ITEM_TIMEOUT`], first; the
    /// message lists the ids received so far.
    pub(crate) async fn ids_until(&mut self, last: &str) -> Vec<String> {
        let mut ids = Vec::new();
        loop {
            match self.next_item_within(ITEM_TIMEOUT).await {
                Ok(Some(Item::Message(message))) => {
                    ids.push(message.last_event_id);
                    if ids.last().is_some_and(|id| id == last) {
                        return ids;
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => panic!("the stream ended before {last:?}; received {ids:?}"),
                Err(()) => panic!(
                    "no event within {ITEM_TIMEOUT:?} while waiting for {last:?}; received {ids:?}"
                ),
            }
        }
    }

    /// Asserts that the stream ends (EOF) within `within`, after only comments.
    pub(crate) async fn expect_end(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_item_within(left).await {
                Ok(None) => return,
                Ok(Some(Item::Comment(_))) => {}
                Ok(Some(item)) => panic!("expected the end of the stream, got {item:?}"),
                Err(()) => panic!("the stream did not end within {within:?}"),
            }
        }
    }
}

/// `(id, data)` pairs of messages, for comparisons.
pub(crate) fn ids(messages: &[Message]) -> Vec<&str> {
    messages.iter().map(|m| m.last_event_id.as_str()).collect()
}
