//! Long-polling: a stream URL asked for with `Accept: application/json`.
//!
//! Some proxies and CDNs hold a response until it ends, so a stream delivers nothing through
//! them, not even heartbeats. A client behind one asks the same URL for JSON instead. The
//! server opens the same subscription as for a stream (same authorization, limits, replay and
//! `reset`), waits up to `--poll-timeout` for an event, and answers with what it has as one
//! JSON document, which such a proxy passes on because it ends:
//!
//! ```json
//! {"events": [{"type": "todos:created", "id": "…", "data": "{\"id\":…}"}],
//!  "lastEventId": "…", "retry": 3000}
//! ```
//!
//! - `type` is the event's type (`"message"` when it has none); `id` is absent for an event
//!   without one (the app's `connected`); `data` is the event's data as the stream sends it.
//! - `lastEventId` is where the next poll resumes: the last event's id; else, when no event
//!   came, the newest record the replay passed (one the client may not see moves its cursor
//!   too, so the next poll does not read it again), else the id this poll resumed from, else
//!   the newest event in the log when the poll began. It is `null` when the log is empty,
//!   after a `reset` without an id (the resume point is unknown), and after a poll from a
//!   position (`?after=`) that nothing moved past: the next poll starts from that position
//!   again.
//! - `retry` is the reconnection delay a stream suggests, in milliseconds.
//!
//! A poll answers as soon as an event other than the app's `connected` arrives, with every
//! event that is ready at that moment, up to [`MAX_ANSWER_BYTES`] of them; the rest waits for
//! the next poll. A poll that resumes from no id answers at once, with what is ready (the
//! app's `connected`) and the log head to resume from: it is how a client that never had a
//! stream gets its first cursor without waiting for an event. It answers early, with what it has, when its stream would have ended (the
//! user's rights changed, the token expired, the server shuts down). While it waits it holds
//! one stream slot, as a stream does.

use std::time::Duration;

use axum::{
    Json,
    http::{HeaderMap, HeaderValue, header},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use futures::{FutureExt as _, StreamExt as _, stream::BoxStream};
use herald_hub::Passed;
use herald_sse::{Decoder, Item};
use serde::Serialize;

/// Most SSE bytes one answer carries; the events after them wait for the next poll. One
/// event larger than this still goes out, alone.
pub const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// Whether a request for a stream URL asks for a long-poll answer: its `Accept` names
/// `application/json` and not `text/event-stream`.
pub fn wants_poll(headers: &HeaderMap) -> bool {
    let mut json = false;
    for value in headers.get_all(header::ACCEPT) {
        let Ok(value) = value.to_str() else {
            continue;
        };
        for range in value.split(',') {
            let media = range.split(';').next().unwrap_or("").trim();
            if media.eq_ignore_ascii_case("text/event-stream") {
                return false;
            }
            json |= media.eq_ignore_ascii_case("application/json");
        }
    }
    json
}

/// One event of an answer.
#[derive(Debug, Serialize)]
struct PollEvent {
    #[serde(rename = "type")]
    kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    data: String,
}

/// The JSON answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    events: Vec<PollEvent>,
    last_event_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry: Option<u64>,
}

/// What [`answer`] needs to know of the subscription besides its frames.
#[derive(Debug)]
pub struct Cursor {
    /// Whether the client resumed from an id or a position: if not, the answer comes at
    /// once.
    pub resumed: bool,
    /// Where the next poll resumes if nothing moves it: the id this one resumed from, else
    /// the log's newest when it subscribed.
    pub resume_id: Option<String>,
    /// The newest record the replay passed.
    pub passed: Option<Passed>,
}

/// Collects the events of one subscription's `frames` and answers with them as JSON.
///
/// `wait` is `--poll-timeout`; `max_event` the largest event the stream can carry, in bytes.
pub async fn answer(
    mut frames: BoxStream<'static, Bytes>,
    cursor: Cursor,
    wait: Duration,
    max_event: usize,
) -> Response {
    let Cursor {
        resumed,
        resume_id,
        passed,
    } = cursor;
    let deadline = tokio::time::Instant::now() + wait;
    let mut collector = Collector::new(resume_id, max_event);
    // A first poll waits for nothing: the prelude (`retry:`, the app's `connected`) is
    // ready at once.
    collector.woken = !resumed;
    while !collector.woken {
        match tokio::time::timeout_at(deadline, frames.next()).await {
            Ok(Some(bytes)) => collector.push(&bytes),
            // The stream ended (rights changed, token expired, shutdown), or nothing came.
            Ok(None) | Err(_) => break,
        }
    }
    // Whatever else is ready now goes in the same answer.
    while collector.woken && collector.bytes < MAX_ANSWER_BYTES {
        match frames.next().now_or_never() {
            Some(Some(bytes)) => collector.push(&bytes),
            Some(None) | None => break,
        }
    }
    // Dropping the subscription (and its stream slot) before the answer is written.
    drop(frames);
    if !collector.moved
        && let Some(id) = passed.as_ref().and_then(Passed::get)
    {
        collector.last_event_id = Some(id.to_string());
    }
    collector.finish()
}

/// The events decoded so far.
struct Collector {
    decoder: Decoder,
    events: Vec<PollEvent>,
    /// The decoder's last event id after the previous event: an event has an id of its own
    /// only when it differs (the decoder's is sticky, as the SSE rules say).
    previous_id: String,
    last_event_id: Option<String>,
    retry: Option<u64>,
    /// SSE bytes taken in.
    bytes: usize,
    /// Whether an event worth answering for arrived.
    woken: bool,
    /// Whether an event set the cursor (one with an id, or a `reset`).
    moved: bool,
}

impl Collector {
    fn new(resume_id: Option<String>, max_event: usize) -> Self {
        Self {
            decoder: Decoder::with_limit(max_event.max(Decoder::DEFAULT_LIMIT)),
            events: Vec::new(),
            previous_id: String::new(),
            last_event_id: resume_id,
            retry: None,
            bytes: 0,
            woken: false,
            moved: false,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.bytes += bytes.len();
        self.decoder.push(bytes);
        loop {
            match self.decoder.next_item() {
                Ok(Some(Item::Message(message))) => {
                    let id = (!message.last_event_id.is_empty()
                        && message.last_event_id != self.previous_id)
                        .then(|| message.last_event_id.clone());
                    self.previous_id = message.last_event_id;
                    if id.is_some() || message.event == "reset" {
                        // A `reset` without an id: the resume point is unknown.
                        self.last_event_id.clone_from(&id);
                        self.moved = true;
                    }
                    // The app's `connected` (which has no id) opens every stream; it is no
                    // news by itself. A published update, which always has one, is.
                    self.woken |= id.is_some() || message.event != "connected";
                    self.events.push(PollEvent {
                        kind: message.event,
                        id,
                        data: message.data,
                    });
                }
                Ok(Some(Item::Retry(ms))) => self.retry = Some(ms),
                Ok(Some(Item::Comment(_))) => {}
                Ok(None) => return,
                Err(error) => {
                    // The hub encodes every frame whole and within the limit: not expected.
                    tracing::warn!(%error, "a long-poll could not read its stream");
                    self.woken = true;
                    return;
                }
            }
        }
    }

    fn finish(self) -> Response {
        let answer = Answer {
            events: self.events,
            last_event_id: self.last_event_id,
            retry: self.retry,
        };
        (
            [
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                (header::VARY, HeaderValue::from_static("accept")),
            ],
            Json(answer),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn which_requests_are_polls() {
        assert!(wants_poll(&accept(&["application/json"])));
        assert!(wants_poll(&accept(&["Application/JSON; charset=utf-8"])));
        assert!(wants_poll(&accept(&["text/plain, application/json;q=0.9"])));
        assert!(!wants_poll(&accept(&[])));
        assert!(!wants_poll(&accept(&["text/event-stream"])));
        assert!(!wants_poll(&accept(&["*/*"])));
        assert!(!wants_poll(&accept(&[
            "application/json",
            "text/event-stream"
        ])));
        assert!(!wants_poll(&accept(&["application/jsonx"])));
    }

    fn cursor(resumed: bool, resume_id: Option<String>) -> Cursor {
        Cursor {
            resumed,
            resume_id,
            passed: None,
        }
    }

    fn frames(chunks: &[&'static str]) -> Vec<Bytes> {
        chunks
            .iter()
            .map(|c| Bytes::from_static(c.as_bytes()))
            .collect()
    }

    async fn body(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn an_answer_carries_the_events_ids_and_retry() {
        let stream = futures::stream::iter(frames(&[
            "event: connected\ndata: {\"userId\":\"u\"}\n\n",
            "retry: 3000\n\n",
            ": heartbeat\n\n",
            "id: a\nevent: todos:created\ndata: {\"n\":1}\n\n",
            "id: b\ndata: line 1\ndata: line 2\n\n",
        ]))
        .chain(futures::stream::pending())
        .boxed();
        let response = answer(
            stream,
            cursor(true, Some("z".into())),
            Duration::from_secs(60),
            1024,
        )
        .await;
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(
            body(response).await,
            serde_json::json!({
                "events": [
                    {"type": "connected", "data": "{\"userId\":\"u\"}"},
                    {"type": "todos:created", "id": "a", "data": "{\"n\":1}"},
                    {"type": "message", "id": "b", "data": "line 1\nline 2"},
                ],
                "lastEventId": "b",
                "retry": 3000,
            })
        );
    }

    #[tokio::test(start_paused = true)]
    async fn connected_alone_waits_for_the_timeout_and_keeps_the_resume_id() {
        let stream = futures::stream::iter(frames(&["event: connected\ndata: {}\n\n"]))
            .chain(futures::stream::pending())
            .boxed();
        let response = answer(
            stream,
            cursor(true, Some("head".into())),
            Duration::from_secs(25),
            1024,
        )
        .await;
        assert_eq!(
            body(response).await,
            serde_json::json!({
                "events": [{"type": "connected", "data": "{}"}],
                "lastEventId": "head",
            })
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_poll_answers_what_is_ready_at_once() {
        let stream = futures::stream::iter(frames(&[
            "event: connected\ndata: {}\n\n",
            "retry: 3000\n\n",
        ]))
        .chain(futures::stream::pending())
        .boxed();
        let started = tokio::time::Instant::now();
        let response = answer(
            stream,
            cursor(false, Some("head".into())),
            Duration::from_secs(25),
            1024,
        )
        .await;
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(
            body(response).await,
            serde_json::json!({
                "events": [{"type": "connected", "data": "{}"}],
                "lastEventId": "head",
                "retry": 3000,
            })
        );
    }

    #[tokio::test]
    async fn a_reset_without_an_id_forgets_the_resume_point() {
        let stream = futures::stream::iter(frames(&[
            "retry: 3000\n\n",
            "event: reset\ndata: {\"reason\":\"unknown-id\"}\n\n",
        ]))
        .chain(futures::stream::pending())
        .boxed();
        let response = answer(
            stream,
            cursor(true, Some("gone".into())),
            Duration::from_secs(60),
            1024,
        )
        .await;
        let body = body(response).await;
        assert_eq!(body["events"][0]["type"], "reset");
        assert_eq!(body["lastEventId"], serde_json::Value::Null);
    }

    #[tokio::test]
    async fn an_update_typed_connected_is_news() {
        let stream = futures::stream::iter(frames(&["id: u1\nevent: connected\ndata: x\n\n"]))
            .chain(futures::stream::pending())
            .boxed();
        let response = answer(
            stream,
            cursor(true, Some("u0".into())),
            Duration::from_secs(3600),
            1024,
        )
        .await;
        assert_eq!(body(response).await["lastEventId"], "u1");
    }

    #[tokio::test]
    async fn an_ended_stream_answers_at_once() {
        let stream = futures::stream::iter(frames(&["retry: 10\n\n"])).boxed();
        let response = answer(stream, cursor(true, None), Duration::from_secs(3600), 1024).await;
        assert_eq!(
            body(response).await,
            serde_json::json!({"events": [], "lastEventId": null, "retry": 10})
        );
    }

    #[tokio::test]
    async fn an_answer_stops_taking_ready_events_past_its_size() {
        let event = format!("id: {{}}\ndata: {}\n\n", "x".repeat(1000));
        let chunks: Vec<Bytes> = (0..1000)
            .map(|i| Bytes::from(event.replace("{}", &i.to_string())))
            .collect();
        let stream = futures::stream::iter(chunks).boxed();
        let body =
            body(answer(stream, cursor(true, None), Duration::from_secs(60), 4096).await).await;
        let events = body["events"].as_array().unwrap();
        assert!(events.len() < 1000, "{}", events.len());
        assert!(events.len() >= MAX_ANSWER_BYTES / 1100, "{}", events.len());
        let last = events.last().unwrap()["id"].as_str().unwrap().to_owned();
        assert_eq!(body["lastEventId"], last);
        assert_eq!(last, (events.len() - 1).to_string());
    }
}
