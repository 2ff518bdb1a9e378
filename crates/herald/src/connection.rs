//! One accepted TCP connection.
//!
//! A plain HTTP/1 subscribe request (`GET /.well-known/mercure` from the same origin, over
//! HTTP/1.1 or HTTP/1.0: the body ends with the connection either way) is answered here: its head is parsed once, the subscription is opened with the same
//! [`mercure::open_stream`] the router uses, the response head is written, and from then on
//! the subscription's frames go straight to the socket, one write per batch. Nothing of an
//! HTTP implementation stays allocated for the life of the stream, which is most of what an
//! idle subscriber costs under hyper (an 8 KiB read buffer and an 8 KiB header buffer).
//!
//! A plain HTTP/1.1 publish (`POST /.well-known/mercure` with a `Content-Length`, from the
//! same origin) is answered here too, with the router's own [`mercure::authorize_publish`]
//! and [`mercure::publish_form`], and the connection is kept for the next request. A
//! publisher's requests are the hot path of durable publishing, and hyper, the router and
//! its layers cost more per request than the publish itself.
//!
//! Every other request (metrics, the app, cross-origin requests that need CORS headers,
//! long-polls, `Expect: 100-continue`, chunked bodies, HTTP/1.0 publishes, HTTP/2) goes to
//! hyper and the axum router, which first re-read the bytes this module already took from
//! the socket.
//!
//! With TLS, the handshake runs here first, within [`HANDSHAKE_TIMEOUT`], over the
//! [`CountedStream`] (whose write deadline stays below TLS). A client that chose `h2` by
//! ALPN goes to hyper's HTTP/2; any other is served as a plain connection is, the direct
//! paths included. The code is generic over the connection's [`Io`], so a plain TCP
//! connection pays nothing for TLS.

use std::{
    cell::RefCell,
    io,
    net::SocketAddr,
    time::{Duration, SystemTime},
};

use axum::{
    Router,
    extract::ConnectInfo,
    http::{HeaderMap, HeaderName, HeaderValue, Uri, Version, header},
    response::{IntoResponse, Response},
};
use bytes::{Bytes, BytesMut};
use futures::{FutureExt, StreamExt};
use http_body_util::BodyExt;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::Watcher},
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    time::{Instant, timeout},
};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::{
    error::{ApiError, ErrorCode},
    limits::{ClientAddr, CountedStream},
    mercure::{self, OpenStream},
    state::{AppState, body_timed_out, shutting_down},
    watchdog::{Tracked, Verdict, Watch},
};

/// Longest request head read before deciding; anything longer is not a subscribe request
/// this module serves, and hyper applies its own limits to it.
const MAX_HEAD: usize = 8 * 1024;

/// Most request headers parsed here; a request with more goes to hyper.
const MAX_HEADERS: usize = 48;

/// How long a client has to send its request head (and, on a kept connection, the next
/// one); also how long a connection served by hyper may have no request open (HTTP/2 has
/// no request head to time). A body has `--body-timeout`; writes have `--write-timeout`,
/// enforced by [`CountedStream`] for every protocol.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client has to complete its TLS handshake, from the moment it is accepted: as
/// long as for a request head. A client that opens a connection and sends nothing holds a
/// slot no longer over TLS than without it.
const HANDSHAKE_TIMEOUT: Duration = HEAD_TIMEOUT;

/// What a connection is read from and written to: a [`CountedStream`], or TLS over one.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// What every connection task needs.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) state: AppState,
    pub(crate) router: Router,
    /// Cancelled when the server stops: a kept publish connection closes between requests,
    /// a body still arriving is cut short, and hyper's connections close gracefully.
    pub(crate) shutdown: CancellationToken,
    /// The TLS handshake of every connection, when the server speaks HTTPS.
    pub(crate) tls: Option<TlsAcceptor>,
    /// `--write-timeout`: also how long an HTTP/2 stream may have data waiting for a window
    /// its client keeps shut ([`crate::watchdog`]).
    pub(crate) write_timeout: Duration,
}

/// What to do with a connection once its request head is read.
enum Next<I> {
    /// Stream this subscription.
    Stream(I, OpenStream),
    /// Hand the connection to hyper, with the bytes already read from it.
    Router(I, Bytes),
    /// Nothing (answered already, or the client left).
    Done,
}

/// Serves one connection until it closes.
///
/// The task lives as long as the connection, and a future is as large as its largest
/// phase: the setup and the hyper connection are boxed so that an idle subscription keeps
/// only the small state of [`stream_to`].
pub(crate) async fn serve(context: Shared, watcher: Watcher, io: CountedStream, peer: SocketAddr) {
    if let Some(acceptor) = context.tls.clone() {
        // Boxed: TLS state is far larger than a TCP connection's, and a plain connection's
        // task must not carry room for it.
        return Box::pin(serve_tls(context, watcher, acceptor, io, peer)).await;
    }
    serve_http(context, watcher, io, peer).await;
}

/// Serves HTTP/1 (or whatever hyper recognizes) on `io` until it closes.
async fn serve_http<I: Io>(context: Shared, watcher: Watcher, io: I, peer: SocketAddr) {
    match Box::pin(accept(&context.state, &context.shutdown, io, peer)).await {
        Next::Stream(io, stream) => stream_to(io, stream).await,
        Next::Router(io, read) => Box::pin(route(context, watcher, io, read, peer, false)).await,
        Next::Done => {}
    }
}

/// Runs the TLS handshake, then serves HTTP/2 if the client chose it by ALPN, and
/// otherwise HTTP/1 as on a plain connection.
async fn serve_tls(
    context: Shared,
    watcher: Watcher,
    acceptor: TlsAcceptor,
    io: CountedStream,
    peer: SocketAddr,
) {
    let handshake = tokio::select! {
        done = timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)) => done,
        () = context.shutdown.cancelled() => return,
    };
    let io = match handshake {
        Ok(Ok(io)) => io,
        Ok(Err(error)) => {
            tracing::debug!(%peer, %error, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "no TLS handshake in time");
            return;
        }
    };
    if io.get_ref().1.alpn_protocol() == Some(crate::tls::ALPN_H2) {
        // Boxed, as in `serve_http`: a TLS connection on the direct path must not keep room
        // for hyper's connection.
        Box::pin(route(context, watcher, io, Bytes::new(), peer, true)).await;
    } else {
        serve_http(context, watcher, io, peer).await;
    }
}

/// Reads request heads: serves publishes until the connection closes or brings another
/// request, and opens a subscription.
async fn accept<I: Io>(
    state: &AppState,
    shutdown: &CancellationToken,
    mut io: I,
    peer: SocketAddr,
) -> Next<I> {
    let mut buffer = BytesMut::with_capacity(1024);
    loop {
        let read = tokio::select! {
            read = timeout(HEAD_TIMEOUT, read_head(&mut io, &mut buffer)) => read,
            // Between requests only: one that has begun is answered first.
            () = shutdown.cancelled(), if buffer.is_empty() => return Next::Done,
        };
        let request = match read {
            Ok(Ok(request)) => request,
            // Silent, broken or closed before a request: nothing to answer.
            Ok(Err(error)) => {
                tracing::debug!(%peer, %error, read = buffer.len(), "no request head");
                return Next::Done;
            }
            Err(_) => {
                tracing::debug!(%peer, read = buffer.len(), "no request head in time");
                return Next::Done;
            }
        };
        match request {
            Direct::Subscribe(headers, uri) => {
                drop(buffer);
                return match mercure::open_stream(state, peer.ip(), &headers, &uri).await {
                    Ok(stream) => Next::Stream(io, stream),
                    Err(error) => {
                        write_error(io, error).await;
                        Next::Done
                    }
                };
            }
            Direct::Publish(publish) => {
                if !serve_publish(state, shutdown, &mut io, &mut buffer, publish).await {
                    linger(io).await;
                    return Next::Done;
                }
            }
            Direct::No => return Next::Router(io, buffer.freeze()),
        }
    }
}

/// Answers one publish whose head is at the start of `buffer`, leaving in `buffer` whatever
/// the client sent after its body. Returns whether the connection stays open.
async fn serve_publish<I: Io>(
    state: &AppState,
    shutdown: &CancellationToken,
    io: &mut I,
    buffer: &mut BytesMut,
    publish: Publish,
) -> bool {
    let started = Instant::now();
    let Publish {
        headers,
        uri,
        head_len,
        body_len,
        keep_alive,
    } = publish;
    let authorized = mercure::authorize_publish(state, &headers, uri.query()).and_then(|p| {
        if body_len > state.max_body {
            let limit = state.max_body;
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("the body is larger than {limit} bytes"),
            ));
        }
        Ok(p)
    });
    let publisher = match authorized {
        Ok(publisher) => publisher,
        Err(error) => {
            // Refused before its body is read: the body stays unread, so the connection ends.
            write_response(io, error.into_response(), false).await;
            return false;
        }
    };
    drop(headers);
    let _ = buffer.split_to(head_len);
    let read = async {
        while buffer.len() < body_len {
            buffer.reserve(body_len - buffer.len());
            if io.read_buf(buffer).await? == 0 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
            }
        }
        Ok(())
    };
    // The same deadline, and the same cut at shutdown, as the router's bodies.
    let refused = tokio::select! {
        read = timeout(state.body_timeout, read) => match read {
            Ok(Ok(())) => None,
            // Broken or closed: nobody to answer.
            Ok(Err(_)) => return false,
            Err(_) => Some(body_timed_out(state.body_timeout)),
        },
        () = shutdown.cancelled() => Some(shutting_down()),
    };
    if let Some(error) = refused {
        // The rest of the body may still come: the connection ends, with a lingering close.
        write_response(io, error.into_response(), false).await;
        return false;
    }
    let body = buffer.split_to(body_len);
    match mercure::publish_form(state, &publisher, &body, started).await {
        Ok(id) => {
            let mut out = BytesMut::with_capacity(256 + id.len());
            out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
            put_header(
                &mut out,
                header::CONTENT_TYPE.as_str(),
                mercure::PUBLISHED_CONTENT_TYPE.as_bytes(),
            );
            finish_head(&mut out, id.len(), keep_alive);
            out.extend_from_slice(id.as_bytes());
            write(io, &out).await && keep_alive
        }
        Err(error) => write_response(io, error.into_response(), keep_alive).await && keep_alive,
    }
}

/// How long a connection that is being closed is read from (and what it sends discarded),
/// at most.
const LINGER: Duration = Duration::from_secs(2);

/// Closes a connection whose last answer may still be in flight while the client is still
/// sending (a refused publish's body): closing a socket with unread bytes resets it, and a
/// reset can destroy the answer before the client reads it. So: end our side, then read and
/// discard until the client closes too, for [`LINGER`] at most.
async fn linger<I: Io>(mut io: I) {
    let _ = timeout(LINGER, async {
        io.shutdown().await?;
        let mut sink = [0u8; 4096];
        while io.read(&mut sink).await? > 0 {}
        io::Result::Ok(())
    })
    .await;
}

/// Serves the connection with hyper and the router, until it closes, the server stops, no
/// request is open for [`HEAD_TIMEOUT`], or an HTTP/2 stream takes no data for
/// `--write-timeout` (see [`crate::watchdog`]).
/// Only HTTP/2 when `http2_only` (the client chose it by ALPN).
async fn route<I: Io>(
    context: Shared,
    watcher: Watcher,
    io: I,
    read: Bytes,
    peer: SocketAddr,
    http2_only: bool,
) {
    // The server's shutdown waits until this is dropped, when the connection has ended.
    let _watcher = watcher;
    let Shared {
        router,
        shutdown,
        write_timeout,
        ..
    } = context;
    // hyper reads the request again from its first byte: what was read, then the socket.
    let (reader, writer) = tokio::io::split(io);
    let io = tokio::io::join(std::io::Cursor::new(read).chain(reader), writer);
    let watch = Watch::new();
    let requests = watch.clone();
    let service =
        hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            let guard = requests.open(request.version() == Version::HTTP_2);
            request
                .extensions_mut()
                .insert(ConnectInfo(ClientAddr(peer)));
            host_from_authority(&mut request);
            // Boxed: hyper runs each HTTP/2 stream as a task as large as this future (320
            // bytes, the request included) for the life of the stream, long after an SSE
            // response has begun; boxed, that is freed once the response starts. And a
            // combinator, not an async block, which would hold the router's future twice.
            Box::pin(router.clone().oneshot(request)).map(move |response| {
                response.map(|response| response.map(|body| Tracked::new(body, guard)))
            })
        });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    if http2_only {
        builder = builder.http2_only();
    }
    // A slow client gets as long for each later request head as for the first.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT);
    http2_settings(&mut builder.http2());
    let connection = builder.serve_connection(TokioIo::new(io), service);
    let mut connection = std::pin::pin!(connection);
    // An HTTP/2 connection without a request is waiting for one, as an HTTP/1 connection
    // between requests is: it gets as long ([`HEAD_TIMEOUT`]). (HTTP/1's is hyper's
    // `header_read_timeout`; this one closes it at the same time.)
    let ended = tokio::select! {
        ended = connection.as_mut() => Some(ended),
        () = shutdown.cancelled() => None,
        verdict = watch.verdict(0, HEAD_TIMEOUT, write_timeout) => match verdict {
            Verdict::Idle => None,
            Verdict::Stalled => {
                // hyper would never poll that stream again, nor end it: the connection
                // closes, as an HTTP/1 one whose client takes nothing does, and every stream
                // on it ends (its client resumes by id).
                tracing::debug!(%peer, "an HTTP/2 stream took no data within the write deadline");
                return;
            }
        },
    };
    let ended = match ended {
        Some(ended) => ended,
        None => {
            // GOAWAY (HTTP/2) or no keep-alive (HTTP/1): open requests finish, and streams end
            // when the server stops. What still waits for a client that takes nothing, after
            // every request has ended, is given up after the write deadline.
            connection.as_mut().graceful_shutdown();
            let closing = watch.verdict(Watch::now(), write_timeout, write_timeout);
            tokio::select! {
                ended = connection.as_mut() => ended,
                _ = closing => {
                    tracing::debug!(%peer, "a closing connection took no data within the write deadline");
                    return;
                }
            }
        }
    };
    if let Err(error) = ended {
        tracing::debug!(%error, "connection ended with an error");
    }
}

/// Gives an HTTP/2 request, which names its host in `:authority` (RFC 9113, section
/// 8.3.1), the `Host` header an HTTP/1 request has, as a proxy to HTTP/1 would: the
/// same-origin check of cookie requests compares `Origin` with `Host`.
fn host_from_authority<B>(request: &mut hyper::Request<B>) {
    if request.headers().contains_key(header::HOST) {
        return;
    }
    let host = request
        .uri()
        .authority()
        .and_then(|authority| HeaderValue::from_str(authority.as_str()).ok());
    if let Some(host) = host {
        request.headers_mut().insert(header::HOST, host);
    }
}

/// Streams one HTTP/2 connection may have open at once, as advertised in its SETTINGS: the
/// least RFC 9113 recommends. It bounds what one connection costs; the streams one address
/// holds over all its connections are bounded by `--max-connections-per-ip`, and past the
/// limit hyper refuses a stream (`REFUSED_STREAM`) before the router sees it.
const H2_MAX_CONCURRENT_STREAMS: u32 = 100;

/// Largest header list (names, values and 32 bytes each, decompressed) a request may send
/// over HTTP/2; over it, 431, as hyper answers an HTTP/1 head that overflows its buffer.
/// Room for an 8 KiB JWT (the longest accepted), a session cookie and a browser's usual
/// headers. Kept small because one connection holds up to
/// [`H2_MAX_CONCURRENT_STREAMS`] requests at once, each with its headers, for as long as a
/// body takes to arrive (`--body-timeout`), and HPACK lets a few bytes on the wire name a
/// large header list: 100 × 16 KiB is what one connection can pin.
const H2_MAX_HEADER_LIST: u32 = 16 * 1024;

/// Most bytes of one stream's response hyper buffers before it waits to send them: four
/// frames of [`crate::watchdog`]'s size, so a healthy stream always has the next frame
/// queued, and a slow connection holds little per stream (hyper's default is 400 KiB).
const H2_MAX_SEND_BUF: usize = 64 * 1024;

/// Receive windows: what a client may send before Herald has read it. Clients upload little
/// (a publish is at most `--max-body`, 1 MiB by default, an app body 64 KiB): a stream gets
/// HTTP/2's initial 64 KiB, the connection four streams' worth, and the windows reopen as
/// handlers read (hyper's defaults are 1 MiB each).
const H2_STREAM_WINDOW: u32 = 64 * 1024;
const H2_CONNECTION_WINDOW: u32 = 256 * 1024;

/// A connection that has not been heard from for this long is sent a PING, and closed if no
/// answer comes within [`H2_KEEP_ALIVE_TIMEOUT`]: a peer that vanished without a FIN (a
/// dropped NAT mapping, a dead host) is found in under a minute, instead of when TCP gives
/// up retransmitting heartbeats (about 15 minutes). An open stream's heartbeats do not
/// count: only frames received do.
const H2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
const H2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Streams a client may open and reset before hyper has accepted them (the 2023 "rapid
/// reset" attack); past it, the connection ends with GOAWAY. hyper's default, made explicit.
const H2_MAX_PENDING_ACCEPT_RESETS: usize = 20;

/// Streams hyper may reset because the client broke the protocol on them (the "made you
/// reset" attack) before it ends the connection; a well-behaved client causes none. hyper's
/// default is 1,024.
const H2_MAX_LOCAL_ERROR_RESETS: usize = 64;

/// hyper's HTTP/2 settings, all in one place.
fn http2_settings(http2: &mut auto::Http2Builder<'_, TokioExecutor>) {
    http2
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
        .max_header_list_size(H2_MAX_HEADER_LIST)
        .max_send_buf_size(H2_MAX_SEND_BUF)
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .keep_alive_interval(H2_KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(H2_KEEP_ALIVE_TIMEOUT)
        .max_pending_accept_reset_streams(H2_MAX_PENDING_ACCEPT_RESETS)
        .max_local_error_reset_streams(H2_MAX_LOCAL_ERROR_RESETS)
        .timer(TokioTimer::new());
}

/// A request this module answers itself.
enum Direct {
    /// A same-origin HTTP/1 subscription: its headers and target.
    Subscribe(HeaderMap, Uri),
    /// A plain HTTP/1.1 publish.
    Publish(Publish),
    /// Anything else: hyper's.
    No,
}

/// The head of a publish this module answers.
struct Publish {
    headers: HeaderMap,
    uri: Uri,
    /// Bytes of the head, at the start of the buffer.
    head_len: usize,
    /// The `Content-Length`.
    body_len: usize,
    /// Whether the connection stays open after the answer.
    keep_alive: bool,
}

/// Reads until a request head is complete (starting with what `head` already holds), and
/// says whether this module answers it.
async fn read_head<I: Io>(io: &mut I, head: &mut BytesMut) -> io::Result<Direct> {
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
fn direct(request: &httparse::Request<'_, '_>, head_len: usize) -> Direct {
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
            if crate::poll::wants_poll(&headers) {
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
fn content_length(value: &[u8]) -> Option<usize> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

fn header_map(parsed: &[httparse::Header<'_>]) -> Option<HeaderMap> {
    let mut headers = HeaderMap::with_capacity(parsed.len());
    for h in parsed {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(h.value).ok()?;
        headers.append(name, value);
    }
    Some(headers)
}

/// Writes the response head, then every batch of frames, until the subscription ends, the
/// client goes away or the socket takes nothing for the write deadline.
async fn stream_to<I: Io>(mut io: I, stream: OpenStream) {
    let OpenStream {
        headers,
        mut frames,
        ..
    } = stream;
    let mut head = BytesMut::with_capacity(256);
    head.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    for (name, value) in &headers {
        put_header(&mut head, name.as_str(), value.as_bytes());
    }
    put_header(&mut head, "link", mercure::LINK.as_bytes());
    // The body ends when the connection does: no chunk framing on every write.
    put_header(&mut head, "connection", b"close");
    head.extend_from_slice(b"\r\n");
    drop(headers);
    if !write(&mut io, &head).await {
        return;
    }
    drop(head);
    // Client bytes are not expected; reading them tells us when the client has gone.
    let mut probe = [0u8; 32];
    loop {
        let next = tokio::select! {
            frames = frames.next() => Ok(frames),
            read = io.read(&mut probe) => Err(read),
        };
        match next {
            Ok(Some(bytes)) => {
                if !write(&mut io, &bytes).await {
                    return;
                }
            }
            Ok(None) | Err(Ok(0) | Err(_)) => break,
            Err(Ok(_)) => {} // Ignored: a subscription takes no input.
        }
    }
    let _ = io.shutdown().await;
}

/// Answers a refused subscription with the same JSON body the router would send.
async fn write_error<I: Io>(mut io: I, error: ApiError) {
    if write_response(&mut io, error.into_response(), false).await {
        let _ = io.shutdown().await;
    }
}

/// Writes a whole response, as the router would, with a `Content-Length`; false when the
/// peer is gone or stalled.
async fn write_response<I: Io>(io: &mut I, response: Response, keep_alive: bool) -> bool {
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    // A response that must end its connection says so (`ApiError`'s 408).
    let keep_alive = keep_alive && !parts.headers.contains_key(header::CONNECTION);
    let mut out = BytesMut::with_capacity(256 + body.len());
    let status = parts.status;
    out.extend_from_slice(
        format!(
            "HTTP/1.1 {} {}\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        )
        .as_bytes(),
    );
    for (name, value) in &parts.headers {
        if name != header::CONNECTION {
            put_header(&mut out, name.as_str(), value.as_bytes());
        }
    }
    finish_head(&mut out, body.len(), keep_alive);
    out.extend_from_slice(&body);
    write(io, &out).await
}

/// Ends a response head: `Link`, `Date`, `Content-Length` and, unless the connection stays
/// open, `Connection: close`.
fn finish_head(out: &mut BytesMut, body_len: usize, keep_alive: bool) {
    put_header(out, "link", mercure::LINK.as_bytes());
    DATE.with_borrow_mut(|date| put_header(out, "date", date.now()));
    put_header(out, "content-length", body_len.to_string().as_bytes());
    if !keep_alive {
        put_header(out, "connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
}

/// The `Date` header's value, formatted once a second per thread (as hyper does).
struct Date {
    second: u64,
    value: String,
}

impl Date {
    fn now(&mut self) -> &[u8] {
        let now = SystemTime::now();
        let second = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if second != self.second || self.value.is_empty() {
            self.second = second;
            self.value = httpdate::fmt_http_date(now);
        }
        self.value.as_bytes()
    }
}

thread_local! {
    static DATE: RefCell<Date> = const { RefCell::new(Date { second: 0, value: String::new() }) };
}

fn put_header(out: &mut BytesMut, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Writes all of `bytes`; false when the peer is gone, or took nothing for the write
/// deadline ([`CountedStream`] enforces it without a timer per write). The flush costs
/// nothing on TCP; TLS may keep records it could not write at once, which must not wait
/// for the next frame.
async fn write<I: Io>(io: &mut I, bytes: &[u8]) -> bool {
    io.write_all(bytes).await.is_ok() && io.flush().await.is_ok()
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
