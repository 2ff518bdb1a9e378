//! A Rust client for Herald, and for any Mercure hub: publish updates, and subscribe to
//! topic selectors as a [`Stream`](futures::Stream) of events that resumes by
//! `Last-Event-ID` after a disconnect.
//!
//! ```no_run
//! # async fn run() -> Result<(), herald_client::Error> {
//! use futures::StreamExt;
//! use herald_client::{Client, Publication};
//!
//! let client = Client::new("http://127.0.0.1:8080").with_token("<jwt>");
//! let mut events = client.subscribe(["https://example.com/books/{id}"]).stream();
//! let id = client.publish(&Publication::new("https://example.com/books/1", "hello")).await?;
//! while let Some(event) = events.next().await {
//!     println!("{}: {}", event?.last_event_id, id);
//! }
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - [`Client`]: the hub's address and credentials; [`Client::publish`].
//! - [`Subscribe`]: a subscription being set up; [`Subscribe::stream`] connects lazily.
//! - [`Error`]: what can go wrong.
//!
//! # Cancel safety
//!
//! Dropping the stream closes the connection. Polling it with `select!` is cancel safe: an
//! event is removed from the stream only when `poll_next` returns it.

use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, stream::BoxStream};
use herald_sse::{Decoder, Item, Message};

/// The hub's path under its origin.
pub const HUB_PATH: &str = "/.well-known/mercure";

/// Delay before reconnecting when the server has not sent a `retry:` hint.
const DEFAULT_RETRY: Duration = Duration::from_secs(3);

/// A failure of the client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The connection failed or broke.
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    /// The hub answered with an error status.
    #[error("the hub answered {status}: {body}")]
    Status {
        /// The HTTP status code.
        status: u16,
        /// The body, which says what is wrong.
        body: String,
    },
    /// The stream broke the SSE framing limits.
    #[error("stream: {0}")]
    Decode(#[from] herald_sse::DecodeError),
}

impl Error {
    /// The HTTP status, when the hub answered with an error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// An update to publish.
#[derive(Debug, Clone, Default)]
pub struct Publication {
    /// The update's topics.
    pub topics: Vec<String>,
    /// The payload.
    pub data: String,
    /// Restrict it to authorized subscribers.
    pub private: bool,
    /// The id; the hub generates one when absent.
    pub id: Option<String>,
    /// The SSE event type.
    pub event_type: Option<String>,
    /// The SSE `retry:` value.
    pub retry: Option<u64>,
}

impl Publication {
    /// A public update of `data` on `topic`.
    pub fn new(topic: impl Into<String>, data: impl Into<String>) -> Self {
        Self {
            topics: vec![topic.into()],
            data: data.into(),
            ..Self::default()
        }
    }
}

/// A hub and the credentials to use with it.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    hub: String,
    token: Option<String>,
}

impl Client {
    /// A client for the hub at `url`: either the origin (`http://host:port`) or the full
    /// hub URL ending in `/.well-known/mercure`.
    pub fn new(url: impl Into<String>) -> Self {
        let url = url.into();
        let hub = if url.trim_end_matches('/').ends_with(HUB_PATH) {
            url.trim_end_matches('/').to_owned()
        } else {
            format!("{}{HUB_PATH}", url.trim_end_matches('/'))
        };
        Self {
            http: reqwest::Client::new(),
            hub,
            token: None,
        }
    }

    /// Sends `token` as `Authorization: Bearer` with every request.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The hub URL requests go to.
    pub fn hub_url(&self) -> &str {
        &self.hub
    }

    /// Publishes `update`; returns its id once the hub has stored it.
    ///
    /// # Errors
    ///
    /// [`Error::Status`] when the hub refuses it, [`Error::Http`] when it cannot be reached.
    pub async fn publish(&self, update: &Publication) -> Result<String, Error> {
        let mut form: Vec<(&str, String)> =
            update.topics.iter().map(|t| ("topic", t.clone())).collect();
        form.push(("data", update.data.clone()));
        if update.private {
            form.push(("private", "on".into()));
        }
        if let Some(id) = &update.id {
            form.push(("id", id.clone()));
        }
        if let Some(ty) = &update.event_type {
            form.push(("type", ty.clone()));
        }
        if let Some(retry) = update.retry {
            form.push(("retry", retry.to_string()));
        }
        let mut request = self.http.post(&self.hub).form(&form);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        let status = response.status();
        let body = response.text().await?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(Error::Status {
                status: status.as_u16(),
                body,
            })
        }
    }

    /// Starts setting up a subscription to `topics` (selectors).
    pub fn subscribe<I, S>(&self, topics: I) -> Subscribe
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Subscribe {
            client: self.clone(),
            topics: topics.into_iter().map(Into::into).collect(),
            last_event_id: None,
            reconnect: true,
        }
    }
}

/// A subscription being set up.
#[derive(Debug, Clone)]
pub struct Subscribe {
    client: Client,
    topics: Vec<String>,
    last_event_id: Option<String>,
    reconnect: bool,
}

impl Subscribe {
    /// Resume after this event id (`earliest` for all retained updates).
    pub fn last_event_id(mut self, id: impl Into<String>) -> Self {
        self.last_event_id = Some(id.into());
        self
    }

    /// Whether to reconnect (with `Last-Event-ID`) when the stream ends or breaks. On by
    /// default; an error status from the hub always ends the stream.
    pub fn reconnect(mut self, reconnect: bool) -> Self {
        self.reconnect = reconnect;
        self
    }

    /// The events, as they arrive. Connects on first poll.
    pub fn stream(self) -> BoxStream<'static, Result<Message, Error>> {
        let state = State {
            decoder: Decoder::new(),
            body: None,
            retry: DEFAULT_RETRY,
            done: false,
            connected_once: false,
            sub: self,
        };
        futures::stream::unfold(state, State::next).boxed()
    }
}

struct State {
    sub: Subscribe,
    decoder: Decoder,
    body: Option<BoxStream<'static, reqwest::Result<Bytes>>>,
    retry: Duration,
    done: bool,
    connected_once: bool,
}

impl State {
    async fn next(mut self) -> Option<(Result<Message, Error>, Self)> {
        loop {
            if self.done {
                return None;
            }
            match self.decoder.next_item() {
                Ok(Some(Item::Message(message))) => {
                    if !message.last_event_id.is_empty() {
                        self.sub.last_event_id = Some(message.last_event_id.clone());
                    }
                    return Some((Ok(message), self));
                }
                Ok(Some(Item::Retry(ms))) => {
                    self.retry = Duration::from_millis(ms);
                    continue;
                }
                Ok(Some(Item::Comment(_))) => continue,
                Ok(None) => {}
                Err(error) => {
                    self.body = None;
                    self.done = !self.sub.reconnect;
                    return Some((Err(error.into()), self));
                }
            }
            let Some(body) = &mut self.body else {
                if self.connected_once {
                    if !self.sub.reconnect {
                        self.done = true;
                        return None;
                    }
                    tokio::time::sleep(self.retry).await;
                }
                self.connected_once = true;
                match connect(&self.sub).await {
                    Ok(body) => {
                        self.decoder = Decoder::new();
                        self.body = Some(body);
                    }
                    Err(error) => {
                        // The hub said no: reconnecting would not change its mind.
                        self.done = error.status().is_some_and(|s| (400..500).contains(&s));
                        return Some((Err(error), self));
                    }
                }
                continue;
            };
            match body.next().await {
                Some(Ok(chunk)) => self.decoder.push(&chunk),
                Some(Err(error)) => {
                    self.body = None;
                    if !self.sub.reconnect {
                        self.done = true;
                    }
                    return Some((Err(error.into()), self));
                }
                None => self.body = None,
            }
        }
    }
}

/// Opens one connection of a subscription.
async fn connect(sub: &Subscribe) -> Result<BoxStream<'static, reqwest::Result<Bytes>>, Error> {
    let client = &sub.client;
    let query: Vec<(&str, &str)> = sub.topics.iter().map(|t| ("topic", t.as_str())).collect();
    let mut request = client
        .http
        .get(&client.hub)
        .query(&query)
        .header("accept", "text/event-stream");
    if let Some(token) = &client.token {
        request = request.bearer_auth(token);
    }
    if let Some(id) = &sub.last_event_id {
        request = request.header("last-event-id", id);
    }
    let response = request.send().await?;
    let status = response.status();
    if !status.is_success() {
        return Err(Error::Status {
            status: status.as_u16(),
            body: response.text().await.unwrap_or_default(),
        });
    }
    Ok(response.bytes_stream().boxed())
}

/// The type of events the stream yields.
pub type Event = Message;

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::{TcpListener, TcpStream},
        time::Instant,
    };

    /// Reads a request's head.
    async fn request_head(stream: &mut TcpStream) -> String {
        let mut head = Vec::new();
        let mut chunk = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the request ended early");
            head.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8(head).unwrap().to_ascii_lowercase()
    }

    #[tokio::test(start_paused = true)]
    async fn an_ended_stream_reconnects_after_the_retry_hint_from_the_last_id() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // A hub that answers each connection with one body, then closes it.
        let hub = tokio::spawn(async move {
            let mut requests = Vec::new();
            for body in ["retry: 5000\n\nid: 1\ndata: a\n\n", "id: 2\ndata: b\n\n"] {
                let (mut stream, _) = listener.accept().await.unwrap();
                requests.push((request_head(&mut stream).await, Instant::now()));
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(response.as_bytes()).await.unwrap();
            }
            requests
        });
        let mut events = Client::new(format!("http://{addr}"))
            .subscribe(["t"])
            .stream();
        assert_eq!(events.next().await.unwrap().unwrap().data, "a");
        assert_eq!(events.next().await.unwrap().unwrap().data, "b");
        let requests = hub.await.unwrap();
        assert!(
            !requests[0].0.contains("last-event-id"),
            "{}",
            requests[0].0
        );
        assert!(
            requests[1].0.contains("\r\nlast-event-id: 1\r\n"),
            "{}",
            requests[1].0
        );
        let waited = requests[1].1 - requests[0].1;
        assert!(
            waited >= Duration::from_secs(5) && waited < Duration::from_secs(6),
            "reconnected after {waited:?}"
        );
    }
}
