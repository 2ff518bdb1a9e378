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
//!
//! By job: this module accepts (TLS, the publish loop, the hand-off); `head` reads a request
//! head and decides whether the direct paths answer it; `respond` writes their answers;
//! `router` serves the rest with hyper and the router. A test in `tests/it/http2.rs` sends
//! the same subscription requests down the direct path and the router, and compares them.

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

mod head;
mod respond;
mod router;

use head::{Direct, Publish, read_head};
use respond::{finish_head, put_header, stream_to, write, write_error, write_response};
use router::route;

use crate::{
    error::{ApiError, ErrorCode},
    limits::{ClientAddr, CountedStream},
    routes::mercure::{self, OpenStream},
    state::{ServerState, body_timed_out, shutting_down},
    watchdog::{Tracked, Verdict, Watch},
};

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
    pub(crate) state: ServerState,
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
    state: &ServerState,
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
                        let host = crate::auth::request_host(&headers, &uri);
                        write_error(io, mercure::challenge(state, host, error)).await;
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
    state: &ServerState,
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
    let authorized = mercure::authorize_publish(state, &headers, &uri).and_then(|p| {
        if body_len > state.bodies.max_body {
            let limit = state.bodies.max_body;
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
            let host = crate::auth::request_host(&headers, &uri);
            let error = mercure::challenge(state, host, error);
            write_response(io, error.into_response(), false).await;
            return false;
        }
    };
    // Kept for the challenge of a refused update: a cheap clone of shared bytes.
    let host = headers.get(header::HOST).cloned();
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
        read = timeout(state.bodies.body_timeout, read) => match read {
            Ok(Ok(())) => None,
            // Broken or closed: nobody to answer.
            Ok(Err(_)) => return false,
            Err(_) => Some(body_timed_out(state.bodies.body_timeout)),
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
        Err(error) => {
            let host = crate::auth::host_of(host.as_ref(), &uri);
            let error = mercure::challenge(state, host, error);
            write_response(io, error.into_response(), keep_alive).await && keep_alive
        }
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
