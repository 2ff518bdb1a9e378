//! Limits on open streams (globally and per client IP), the file-descriptor limit, and a
//! listener that counts open TCP connections.

use std::{
    collections::HashMap,
    io,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use prometheus_client::metrics::gauge::Gauge;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
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

/// A TCP listener that keeps `herald_connections_open` current and disables Nagle's
/// algorithm, so small SSE frames leave at once.
#[derive(Debug)]
pub struct CountingListener {
    inner: TcpListener,
    open: Gauge,
}

impl CountingListener {
    /// Wraps `inner`; `open` counts live connections.
    pub fn new(inner: TcpListener, open: Gauge) -> Self {
        Self { inner, open }
    }
}

/// A connection that decrements the open-connection gauge when it closes.
#[derive(Debug)]
pub struct CountedStream {
    inner: TcpStream,
    open: Gauge,
}

impl Drop for CountedStream {
    fn drop(&mut self) {
        self.open.dec();
    }
}

impl axum::serve::Listener for CountingListener {
    type Io = CountedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    self.open.inc();
                    return (
                        CountedStream {
                            inner: stream,
                            open: self.open.clone(),
                        },
                        addr,
                    );
                }
                Err(error) => {
                    // Out of descriptors or similar: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
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
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
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
