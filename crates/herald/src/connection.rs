//! One accepted TCP connection.
//!
//! A plain HTTP/1 subscribe request (`GET /.well-known/mercure` from the same origin) is
//! answered here: its head is parsed once, the subscription is opened with the same
//! [`mercure::open_stream`] the router uses, the response head is written, and from then on
//! the subscription's frames go straight to the socket, one write per batch. Nothing of an
//! HTTP implementation stays allocated for the life of the stream, which is most of what an
//! idle subscriber costs under hyper (an 8 KiB read buffer and an 8 KiB header buffer).
//!
//! Every other request (publishes, metrics, cross-origin subscriptions that need CORS
//! headers, HTTP/2) goes to hyper and the axum router, which first re-read the bytes this
//! module already took from the socket.

use std::{io, net::SocketAddr, time::Duration};

use axum::{
    Router,
    extract::ConnectInfo,
    http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, header},
    response::IntoResponse,
};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http_body_util::BodyExt;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::Watcher},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    time::timeout,
};
use tower::ServiceExt;

use crate::{
    error::ApiError,
    limits::{ClientAddr, CountedStream},
    mercure::{self, OpenStream},
    state::AppState,
};

/// Longest request head read before deciding; anything longer is not a subscribe request
/// this module serves, and hyper applies its own limits to it.
const MAX_HEAD: usize = 8 * 1024;

/// Most request headers parsed here; a request with more goes to hyper.
const MAX_HEADERS: usize = 48;

/// How long a client has to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one write to a subscriber may take. A peer that accepts nothing for this long
/// is gone (or hostile); its stream ends and frees its resources.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// What every connection task needs.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) state: AppState,
    pub(crate) router: Router,
}

/// What to do with a connection once its request head is read.
enum Next {
    /// Stream this subscription.
    Stream(CountedStream, OpenStream),
    /// Hand the connection to hyper, with the bytes already read from it.
    Router(CountedStream, Bytes),
    /// Nothing (answered already, or the client left).
    Done,
}

/// Serves one connection until it closes.
///
/// The task lives as long as the connection, and a future is as large as its largest
/// phase: the setup and the hyper connection are boxed so that an idle subscription keeps
/// only the small state of [`stream_to`].
pub(crate) async fn serve(context: Shared, watcher: Watcher, io: CountedStream, peer: SocketAddr) {
    match Box::pin(accept(&context.state, io, peer)).await {
        Next::Stream(io, stream) => stream_to(io, stream).await,
        Next::Router(io, read) => Box::pin(route(context.router, watcher, io, read, peer)).await,
        Next::Done => {}
    }
}

/// Reads the request head and, for a subscription, opens it.
async fn accept(state: &AppState, mut io: CountedStream, peer: SocketAddr) -> Next {
    let mut head = BytesMut::with_capacity(1024);
    let request = match timeout(HEAD_TIMEOUT, read_head(&mut io, &mut head)).await {
        Ok(Ok(request)) => request,
        // Silent, broken or closed before a request: nothing to answer.
        Ok(Err(_)) | Err(_) => return Next::Done,
    };
    let Some((headers, uri)) = request else {
        return Next::Router(io, head.freeze());
    };
    drop(head);
    match mercure::open_stream(state, peer.ip(), &headers, &uri).await {
        Ok(stream) => Next::Stream(io, stream),
        Err(error) => {
            write_error(io, error).await;
            Next::Done
        }
    }
}

/// Serves the connection with hyper and the router.
async fn route(router: Router, watcher: Watcher, io: CountedStream, read: Bytes, peer: SocketAddr) {
    // hyper reads the request again from its first byte: what was read, then the socket.
    let (reader, writer) = tokio::io::split(io);
    let io = tokio::io::join(std::io::Cursor::new(read).chain(reader), writer);
    let service =
        hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request
                .extensions_mut()
                .insert(ConnectInfo(ClientAddr(peer)));
            router.clone().oneshot(request)
        });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A slow client gets as long for each later request head as for the first.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT);
    let connection = builder.serve_connection(TokioIo::new(io), service);
    if let Err(error) = watcher.watch(connection).await {
        tracing::debug!(%error, "connection ended with an error");
    }
}

/// Reads until the request head is complete. Returns its headers and target when it is a
/// subscribe request this module serves, `None` when hyper should serve it.
async fn read_head(
    io: &mut CountedStream,
    head: &mut BytesMut,
) -> io::Result<Option<(HeaderMap, Uri)>> {
    loop {
        if head.capacity() == head.len() {
            head.reserve(1024);
        }
        if io.read_buf(head).await? == 0 {
            return if head.is_empty() {
                Err(io::ErrorKind::UnexpectedEof.into())
            } else {
                Ok(None)
            };
        }
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut slots);
        match request.parse(head) {
            Ok(httparse::Status::Complete(_)) => return Ok(subscribe_request(&request)),
            Ok(httparse::Status::Partial) if head.len() < MAX_HEAD => continue,
            // Too long, too many headers, or malformed: hyper answers it properly.
            _ => return Ok(None),
        }
    }
}

/// The headers and target of `request` if it is a same-origin HTTP/1 subscription.
fn subscribe_request(request: &httparse::Request<'_, '_>) -> Option<(HeaderMap, Uri)> {
    if request.method != Some(Method::GET.as_str()) {
        return None;
    }
    let target = request.path?;
    if target.split('?').next() != Some(mercure::PATH) {
        return None;
    }
    let mut headers = HeaderMap::with_capacity(request.headers.len());
    for h in request.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(h.value).ok()?;
        headers.append(name, value);
    }
    // Cross-origin requests need the router's CORS layer; requests with a body or an
    // upgrade are not plain subscriptions.
    let declines = [header::ORIGIN, header::UPGRADE, header::TRANSFER_ENCODING];
    if declines.iter().any(|name| headers.contains_key(name))
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
    {
        return None;
    }
    Some((headers, target.parse().ok()?))
}

/// Writes the response head, then every batch of frames, until the subscription ends, the
/// client goes away or a write stalls.
async fn stream_to(mut io: CountedStream, stream: OpenStream) {
    let OpenStream {
        headers,
        mut frames,
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
    let _ = timeout(WRITE_TIMEOUT, io.shutdown()).await;
}

/// Answers a refused subscription with the same JSON body the router would send.
async fn write_error(mut io: CountedStream, error: ApiError) {
    let response = error.into_response();
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
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
        put_header(&mut out, name.as_str(), value.as_bytes());
    }
    put_header(&mut out, "link", mercure::LINK.as_bytes());
    put_header(
        &mut out,
        "content-length",
        body.len().to_string().as_bytes(),
    );
    put_header(&mut out, "connection", b"close");
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body);
    if write(&mut io, &out).await {
        let _ = timeout(WRITE_TIMEOUT, io.shutdown()).await;
    }
}

fn put_header(out: &mut BytesMut, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Writes all of `bytes`; false when the peer is gone or stalled past [`WRITE_TIMEOUT`].
async fn write(io: &mut CountedStream, bytes: &[u8]) -> bool {
    matches!(
        timeout(WRITE_TIMEOUT, io.write_all(bytes)).await,
        Ok(Ok(()))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(raw: &str) -> Option<(HeaderMap, Uri)> {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut slots);
        assert!(request.parse(raw.as_bytes()).unwrap().is_complete());
        subscribe_request(&request)
    }

    #[test]
    fn which_requests_take_the_direct_path() {
        let direct = |raw: &str| decide(raw).is_some();
        assert!(direct(
            "GET /.well-known/mercure?topic=a HTTP/1.1\r\nHost: x\r\n\r\n"
        ));
        assert!(direct("GET /.well-known/mercure HTTP/1.0\r\n\r\n"));
        assert!(direct(
            "GET /.well-known/mercure?topic=a HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
        ));
        // Everything else is the router's.
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
        let (headers, uri) =
            decide("GET /.well-known/mercure?topic=a&topic=b HTTP/1.1\r\nLast-Event-ID: 7\r\n\r\n")
                .unwrap();
        assert_eq!(headers["last-event-id"], "7");
        assert_eq!(uri.query(), Some("topic=a&topic=b"));
    }
}
