//! Limits on open streams (globally and per client IP), the file-descriptor limit, and a
//! listener that counts and limits open TCP connections and puts a deadline on every write
//! to them.

use std::{
    collections::HashMap,
    io,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use prometheus_client::metrics::gauge::Gauge;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
    time::Sleep,
};

/// Raises this process's soft limit on open files to its hard limit; returns the limit in
/// force. Each stream costs one descriptor.
pub fn raise_fd_limit() -> usize {
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    usize::try_from(limit).unwrap_or(usize::MAX)
}

/// Why a stream was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The server holds as many streams as it may.
    Global,
    /// This client IP holds as many streams as it may.
    PerIp,
}

/// Counts open streams, globally and per client IP.
#[derive(Debug)]
pub struct StreamLimiter {
    max: usize,
    max_per_ip: usize,
    state: Mutex<LimiterState>,
    /// Exported as `herald_streams_open`.
    pub open: Gauge,
}

#[derive(Debug, Default)]
struct LimiterState {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// One admitted stream. Dropping it frees the slot.
#[derive(Debug)]
pub struct StreamPermit {
    limiter: Arc<StreamLimiter>,
    ip: IpAddr,
}

impl StreamLimiter {
    /// A limiter for `max` streams in all and `max_per_ip` per address.
    pub fn new(max: usize, max_per_ip: usize) -> Self {
        Self {
            max,
            max_per_ip,
            state: Mutex::default(),
            open: Gauge::default(),
        }
    }

    /// Admits one more stream from `ip`, or says why not.
    ///
    /// # Errors
    ///
    /// [`Refused`] when a limit is reached; nothing is counted then.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<StreamPermit, Refused> {
        let mut state = self.state.lock().expect("limiter poisoned");
        if state.total >= self.max {
            return Err(Refused::Global);
        }
        let count = state.per_ip.entry(ip).or_insert(0);
        if *count >= self.max_per_ip {
            return Err(Refused::PerIp);
        }
        *count += 1;
        state.total += 1;
        drop(state);
        self.open.inc();
        Ok(StreamPermit {
            limiter: self.clone(),
            ip,
        })
    }
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut state = self.limiter.state.lock().expect("limiter poisoned");
        state.total -= 1;
        if let Some(count) = state.per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                state.per_ip.remove(&self.ip);
            }
        }
        drop(state);
        self.limiter.open.dec();
    }
}

/// What every accepted connection shares: its count, the free slots, and the write
/// deadline. One pointer per connection.
#[derive(Debug)]
struct Connections {
    /// Exported as `herald_connections_open`.
    open: Gauge,
    /// One permit per connection that may still be accepted.
    free: Semaphore,
    /// How long a socket may stay unwritable while there is something to write to it.
    write_timeout: Duration,
    /// Most connections one client address holds (IPv6 by its /64): one address cannot take
    /// every slot.
    max_per_ip: usize,
    /// Open connections per client address; addresses with none are removed.
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

impl Connections {
    /// Counts one more connection from `ip`, unless it holds `max_per_ip` already.
    fn admit(&self, ip: IpAddr) -> bool {
        let mut per_ip = self.per_ip.lock().expect("connection counts poisoned");
        let count = per_ip.entry(ip).or_insert(0);
        if *count >= self.max_per_ip {
            return false;
        }
        *count += 1;
        true
    }

    fn release(&self, ip: IpAddr) {
        let mut per_ip = self.per_ip.lock().expect("connection counts poisoned");
        if let Some(count) = per_ip.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&ip);
            }
        }
    }
}

/// A TCP listener that keeps `herald_connections_open` current, accepts at most
/// `max_connections` connections at once, and disables Nagle's algorithm, so small SSE
/// frames leave at once.
///
/// When every slot is taken it stops accepting until a connection closes: new connections
/// wait in the kernel's accept queue (they are neither refused nor answered), so a burst of
/// reconnections is served as slots free, and a flood of idle sockets costs this process no
/// descriptor past the limit. Accepting to answer 503 would cost a descriptor and a task per
/// refused connection, and closing with its request unread resets it, often before the
/// client reads the answer. While full, `/healthz` waits too; the default limit leaves room
/// above the stream limit so that streams alone never fill it, and idle connections are
/// closed after 10 s without a request head.
#[derive(Debug)]
pub struct CountingListener {
    inner: TcpListener,
    shared: Arc<Connections>,
    /// When the listener last said it was full: at most once per [`FULL_WARNING_EVERY`].
    warned_full: Option<tokio::time::Instant>,
}

/// How often a listener that stays full says so in the log: under a flood of connections it
/// is full again after every close.
const FULL_WARNING_EVERY: Duration = Duration::from_secs(60);

impl CountingListener {
    /// Wraps `inner`; `open` counts live connections, of which there are at most
    /// `max_connections`, and at most `max_per_ip` from one client address (a connection
    /// over it is closed as soon as it is accepted); each gets `write_timeout` as its write
    /// deadline.
    pub fn new(
        inner: TcpListener,
        open: Gauge,
        max_connections: usize,
        max_per_ip: usize,
        write_timeout: Duration,
    ) -> Self {
        let max_connections = max_connections.min(Semaphore::MAX_PERMITS);
        Self {
            inner,
            shared: Arc::new(Connections {
                open,
                free: Semaphore::new(max_connections),
                write_timeout,
                max_per_ip,
                per_ip: Mutex::default(),
            }),
            warned_full: None,
        }
    }
}

/// An accepted connection. It frees its slot and decrements the open-connection gauge when
/// it closes, and its writes have a deadline: a write that finds the socket full starts a
/// timer, and if the socket takes no byte before it fires, the write fails with
/// [`io::ErrorKind::TimedOut`]. Whatever serves the connection (the direct path, hyper's
/// HTTP/1 or HTTP/2) sees the error and ends it, freeing what it held.
///
/// The timer exists only while a write is pending: an idle or writable connection carries
/// one empty pointer for it, and a write that completes at once costs nothing more than
/// without a deadline.
#[derive(Debug)]
pub struct CountedStream {
    inner: TcpStream,
    shared: Arc<Connections>,
    /// The client address it is counted under ([`crate::ratelimit::client_key`]).
    ip: IpAddr,
    /// Armed when a write found the socket full; dropped as soon as one completes.
    stall: Option<Pin<Box<Sleep>>>,
}

impl CountedStream {
    /// The result of a write that returned `poll`: a completed write disarms the deadline,
    /// a pending one arms it (once) and fails when it has passed.
    fn deadline<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.stall = None;
            return poll;
        }
        let write_timeout = self.shared.write_timeout;
        let stall = self
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(write_timeout)));
        // Registers this task's waker with the timer, so whoever waits on the write is
        // polled again when the deadline passes, and sees the error.
        match stall.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.stall = None;
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the peer took no data within the write deadline",
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for CountedStream {
    fn drop(&mut self) {
        self.shared.open.dec();
        self.shared.free.add_permits(1);
        self.shared.release(self.ip);
    }
}

impl axum::serve::Listener for CountingListener {
    type Io = CountedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let slot = match self.shared.free.try_acquire() {
                Ok(slot) => slot,
                Err(_) => {
                    if self
                        .warned_full
                        .is_none_or(|at| at.elapsed() >= FULL_WARNING_EVERY)
                    {
                        self.warned_full = Some(tokio::time::Instant::now());
                        tracing::warn!(
                            "as many TCP connections open as --max-tcp-connections allows; \
                             accepting again when one closes"
                        );
                    }
                    self.shared
                        .free
                        .acquire()
                        .await
                        .expect("the connection semaphore is never closed")
                }
            };
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let ip = crate::ratelimit::client_key(addr.ip());
                    if !self.shared.admit(ip) {
                        // Closed at once, unread: this address holds its share already.
                        tracing::debug!(%addr, "too many connections from this address");
                        drop(stream);
                        continue;
                    }
                    // Given back by the stream's `Drop`.
                    slot.forget();
                    let _ = stream.set_nodelay(true);
                    self.shared.open.inc();
                    return (
                        CountedStream {
                            inner: stream,
                            shared: self.shared.clone(),
                            ip,
                            stall: None,
                        },
                        addr,
                    );
                }
                Err(error) => {
                    drop(slot);
                    // Out of descriptors or similar: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

impl AsyncRead for CountedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.deadline(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.deadline(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The peer address of a connection, put into each request as `ConnectInfo`.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_costs_two_pointers_and_its_address_beside_its_socket() {
        // The count, the slot and the write deadline share one pointer; the deadline's
        // timer is one more, empty unless a write is pending; the address is what the
        // connection is counted under.
        assert_eq!(
            std::mem::size_of::<CountedStream>(),
            (std::mem::size_of::<TcpStream>()
                + 2 * std::mem::size_of::<usize>()
                + std::mem::size_of::<IpAddr>())
            .next_multiple_of(std::mem::align_of::<usize>())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_the_peer_never_takes_fails_after_the_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut listener =
            CountingListener::new(listener, Gauge::default(), 4, 4, Duration::from_millis(300));
        // A peer that never reads.
        let _peer = TcpStream::connect(addr).await.unwrap();
        let (mut io, _) = axum::serve::Listener::accept(&mut listener).await;
        assert_eq!(listener.shared.open.get(), 1);
        let chunk = vec![0u8; 64 * 1024];
        let started = tokio::time::Instant::now();
        let error = loop {
            if let Err(error) = tokio::io::AsyncWriteExt::write_all(&mut io, &chunk).await {
                break error;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "no deadline");
        };
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "failed early"
        );
        assert!(io.stall.is_none(), "the timer is freed with the error");
        drop(io);
        assert_eq!(listener.shared.open.get(), 0);
        assert_eq!(listener.shared.free.available_permits(), 4);
    }

    #[test]
    fn limits_globally_and_per_ip() {
        let limiter = Arc::new(StreamLimiter::new(3, 2));
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let p1 = limiter.try_acquire(a).unwrap();
        let _p2 = limiter.try_acquire(a).unwrap();
        assert_eq!(limiter.try_acquire(a).unwrap_err(), Refused::PerIp);
        let _p3 = limiter.try_acquire(b).unwrap();
        assert_eq!(limiter.try_acquire(b).unwrap_err(), Refused::Global);
        drop(p1);
        let _p4 = limiter.try_acquire(a).unwrap();
        assert_eq!(limiter.open.get(), 3);
    }
}
