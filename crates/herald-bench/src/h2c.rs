//! Subscribers over HTTP/2 with prior knowledge (h2c): the client side of `--http2`.
//!
//! Subscribers are grouped by index into connections of `--streams-per-connection`;
//! the first subscriber of a group to need the connection opens it (TCP connect from the
//! group's source address, then the HTTP/2 handshake), and every subscriber of the group
//! opens its own stream on it. A connection that cannot be opened fails every subscriber
//! of its group, with the same reason.
//!
//! Framing and flow control are the `h2` crate's, the same implementation hyper serves
//! with. The client advertises windows large enough that it never holds the server back
//! ([`STREAM_WINDOW`] per stream, that times the streams for the connection) and gives
//! the window back as soon as a DATA frame has been read, since the subscriber decodes it
//! at once.

use std::{
    io,
    sync::atomic::{AtomicU64, Ordering},
};

use bytes::Bytes;
use h2::client::SendRequest;
use tokio::sync::OnceCell;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::target::Target;

/// Most streams one connection may carry with `--streams-per-connection`. A server
/// usually allows fewer at once (hyper: 200 by default); streams over its limit wait
/// for a slot until `--connect-timeout`.
pub const MAX_STREAMS_PER_CONNECTION: u64 = 10_000;

/// The receive window of each stream: 1 MiB, more than a subscriber of the bench ever
/// has unread, so the server's sending is never limited by the stream's window.
pub const STREAM_WINDOW: u32 = 1 << 20;

/// The largest window HTTP/2 allows (RFC 9113, section 6.9.1).
const MAX_WINDOW: u32 = (1 << 31) - 1;

/// The connections of a run, each opened on first use and shared by its streams.
#[derive(Debug)]
pub struct Connections {
    /// Subscribers per connection.
    per_connection: u64,
    /// The index of this process's first subscriber.
    first_index: u64,
    /// One cell per connection: the handle to open streams with, or why it failed.
    cells: Vec<OnceCell<Result<SendRequest<Bytes>, ConnectError>>>,
    /// Connections opened (handshake done).
    opened: AtomicU64,
    /// The tasks that drive the connections; [`Connections::close`] ends them and waits.
    drivers: TaskTracker,
    /// Ends the drivers, closing their sockets.
    stop: CancellationToken,
}

/// Why a connection could not be opened; kept to fail each subscriber of its group.
#[derive(Clone, Debug)]
pub struct ConnectError {
    kind: io::ErrorKind,
    os: Option<i32>,
    message: String,
}

impl ConnectError {
    fn of(error: &io::Error) -> Self {
        Self {
            kind: error.kind(),
            os: error.raw_os_error(),
            message: error.to_string(),
        }
    }

    /// An `io::Error` of the same kind (and OS error), for the failure counters.
    pub fn to_io(&self) -> io::Error {
        match self.os {
            Some(code) => io::Error::from_raw_os_error(code),
            None => io::Error::new(self.kind, self.message.clone()),
        }
    }
}

impl Connections {
    /// Room for `subscribers` subscribers from `first_index` on, `per_connection` to a
    /// connection.
    pub fn new(subscribers: u64, first_index: u64, per_connection: u64) -> Self {
        let per_connection = per_connection.max(1);
        let n = subscribers.div_ceil(per_connection);
        Self {
            per_connection,
            first_index,
            cells: (0..n).map(|_| OnceCell::new()).collect(),
            opened: AtomicU64::new(0),
            drivers: TaskTracker::new(),
            stop: CancellationToken::new(),
        }
    }

    /// Closes every connection and waits until their tasks have ended. For after the
    /// subscribers stopped: their streams end with the connections.
    pub async fn close(&self) {
        self.stop.cancel();
        self.drivers.close();
        self.drivers.wait().await;
    }

    /// Subscribers per connection.
    pub fn per_connection(&self) -> u64 {
        self.per_connection
    }

    /// Connections opened so far.
    pub fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// The connection of subscriber `index` (global), and that connection's number, which
    /// chooses its source address.
    ///
    /// # Errors
    ///
    /// When the connection could not be opened (now or by another subscriber before).
    pub async fn get(
        &self,
        index: u64,
        target: &Target,
        source: impl FnOnce(u64) -> Option<std::net::IpAddr>,
    ) -> Result<SendRequest<Bytes>, ConnectError> {
        let group = (index - self.first_index) / self.per_connection;
        let Some(cell) = self.cells.get(group as usize) else {
            return Err(ConnectError {
                kind: io::ErrorKind::InvalidInput,
                os: None,
                message: format!("subscriber {index} has no connection"),
            });
        };
        cell.get_or_init(|| async {
            let streams = self.per_connection;
            let opened = connect(target, source(group), streams, self).await;
            if opened.is_ok() {
                self.opened.fetch_add(1, Ordering::Relaxed);
            }
            opened
        })
        .await
        .clone()
    }
}

/// Connects, performs the HTTP/2 handshake, and drives the connection in a task of
/// `connections` until every handle to it is dropped or [`Connections::close`].
async fn connect(
    target: &Target,
    source: Option<std::net::IpAddr>,
    streams: u64,
    connections: &Connections,
) -> Result<SendRequest<Bytes>, ConnectError> {
    let tcp = crate::subscriber::connect(target.addr, source)
        .await
        .map_err(|e| ConnectError::of(&e))?;
    let connection_window = u64::from(STREAM_WINDOW)
        .saturating_mul(streams)
        .min(u64::from(MAX_WINDOW)) as u32;
    let (send, connection) = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(connection_window.max(STREAM_WINDOW))
        .enable_push(false)
        .handshake::<_, Bytes>(tcp)
        .await
        .map_err(|e| h2_error(&e))?;
    let stop = connections.stop.clone();
    connections.drivers.spawn(async move {
        // Ends once every stream and handle is dropped, the server closes, or the run stops.
        tokio::select! {
            _ = connection => {}
            () = stop.cancelled() => {}
        }
    });
    Ok(send)
}

/// An `h2` error as a connect error (an I/O error keeps its kind).
pub fn h2_error(error: &h2::Error) -> ConnectError {
    match error.get_io() {
        Some(io) => ConnectError::of(io),
        None => ConnectError {
            kind: io::ErrorKind::Other,
            os: None,
            message: format!("HTTP/2: {error}"),
        },
    }
}

/// The `GET` that opens an SSE stream, as an HTTP/2 request.
///
/// # Errors
///
/// When a header value is not valid (a token with control characters, say).
pub fn request(
    target: &Target,
    token: Option<&str>,
    last_event_id: Option<&str>,
) -> Result<http::Request<()>, http::Error> {
    let uri = format!("http://{}{}", target.authority, target.path_and_query);
    let mut request = http::Request::get(uri)
        .header(http::header::ACCEPT, "text/event-stream")
        .header(http::header::CACHE_CONTROL, "no-cache");
    if let Some(token) = token {
        request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    request.body(())
}
