//! hyper and the router: every request the direct paths leave, HTTP/2 included, with the
//! HTTP/2 settings and the watchdog that ends what hyper would not.

use super::*;

/// Serves the connection with hyper and the router, until it closes, the server stops, no
/// request is open for [`HEAD_TIMEOUT`], or an HTTP/2 stream takes no data for
/// `--write-timeout` (see [`crate::watchdog`]).
/// Only HTTP/2 when `http2_only` (the client chose it by ALPN).
pub(super) async fn route<I: Io>(
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
pub(super) fn host_from_authority<B>(request: &mut hyper::Request<B>) {
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
pub(super) const H2_MAX_CONCURRENT_STREAMS: u32 = 100;

/// Largest header list (names, values and 32 bytes each, decompressed) a request may send
/// over HTTP/2; over it, 431, as hyper answers an HTTP/1 head that overflows its buffer.
/// Room for an 8 KiB JWT (the longest accepted), a session cookie and a browser's usual
/// headers. Kept small because one connection holds up to
/// [`H2_MAX_CONCURRENT_STREAMS`] requests at once, each with its headers, for as long as a
/// body takes to arrive (`--body-timeout`), and HPACK lets a few bytes on the wire name a
/// large header list: 100 × 16 KiB is what one connection can pin.
pub(super) const H2_MAX_HEADER_LIST: u32 = 16 * 1024;

/// Most bytes of one stream's response hyper buffers before it waits to send them: four
/// frames of [`crate::watchdog`]'s size, so a healthy stream always has the next frame
/// queued, and a slow connection holds little per stream (hyper's default is 400 KiB).
pub(super) const H2_MAX_SEND_BUF: usize = 64 * 1024;

/// Receive windows: what a client may send before Herald has read it. Clients upload little
/// (a publish is at most `--max-body`, 1 MiB by default, an app body 64 KiB): a stream gets
/// HTTP/2's initial 64 KiB, the connection four streams' worth, and the windows reopen as
/// handlers read (hyper's defaults are 1 MiB each).
pub(super) const H2_STREAM_WINDOW: u32 = 64 * 1024;
pub(super) const H2_CONNECTION_WINDOW: u32 = 256 * 1024;

/// A connection that has not been heard from for this long is sent a PING, and closed if no
/// answer comes within [`H2_KEEP_ALIVE_TIMEOUT`]: a peer that vanished without a FIN (a
/// dropped NAT mapping, a dead host) is found in under a minute, instead of when TCP gives
/// up retransmitting heartbeats (about 15 minutes). An open stream's heartbeats do not
/// count: only frames received do.
pub(super) const H2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
pub(super) const H2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Streams a client may open and reset before hyper has accepted them (the 2023 "rapid
/// reset" attack); past it, the connection ends with GOAWAY. hyper's default, made explicit.
pub(super) const H2_MAX_PENDING_ACCEPT_RESETS: usize = 20;

/// Streams hyper may reset because the client broke the protocol on them (the "made you
/// reset" attack) before it ends the connection; a well-behaved client causes none. hyper's
/// default is 1,024.
pub(super) const H2_MAX_LOCAL_ERROR_RESETS: usize = 64;

/// hyper's HTTP/2 settings, all in one place.
pub(super) fn http2_settings(http2: &mut auto::Http2Builder<'_, TokioExecutor>) {
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
