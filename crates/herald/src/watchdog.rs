//! The watchdog of a connection served by hyper: the limits in time that the write deadline
//! cannot see.
//!
//! [`crate::limits::CountedStream`] ends a connection whose socket takes no byte for
//! `--write-timeout`. Over HTTP/2 that is not enough. A client that reads its socket but
//! never opens a stream's flow-control window (or the connection's) keeps the socket
//! writable, and hyper then waits for window space without polling the response body
//! again: without more, the stream would hold its slot, its hub subscriber and its queued
//! bytes for as long as the client stays. And hyper's `header_read_timeout` is HTTP/1's
//! only: an HTTP/2 connection without a request would have no limit at all.
//!
//! Every request hyper serves is tracked ([`Watch::open`]) from the call of the service
//! until its response body is dropped ([`Tracked`]). An HTTP/2 response body notes when it
//! has something for hyper that hyper has not taken: from its creation, from the moment its
//! inner body wakes it (a frame is ready) and from each frame it hands over, until hyper
//! polls it again. hyper polls a body as soon as its stream may send again, so a time that
//! stays set means a window that stays shut. [`Watch::verdict`], run by the connection's
//! own task, ends the connection when such a time is older than the write deadline, or when
//! no request has been open for the idle timeout.
//!
//! Nothing here runs per stream: a healthy stream costs a clock read or two per frame it
//! sends and nothing while idle, and the watchdog wakes once per half write deadline while
//! the connection has requests open, once per idle timeout while it has none.

use std::{
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    task::{Context, Poll, Wake, Waker},
    time::Duration,
};

use axum::body::Body;
use bytes::Bytes;
use futures::task::AtomicWaker;
use hyper::body::{Frame, SizeHint};
use tokio::{sync::Notify, time::Instant};

/// Largest data frame a tracked HTTP/2 body hands to hyper at once (HTTP/2's default frame
/// size). hyper polls the body again only once the previous frame has been sent in full, so
/// this is the unit of progress the deadline measures: a client must take this much per
/// write deadline, and no more than this of one body waits in hyper's buffer for a shut
/// window.
const MAX_PIECE: usize = 16 * 1024;

/// Milliseconds since the first call in this process; never 0, so 0 can mean "not set".
fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX) + 1
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Why a connection should end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// No request was open for the idle timeout: close it gracefully.
    Idle,
    /// An HTTP/2 stream had data its client did not take for the write deadline: close it
    /// now (hyper would never poll that stream's body again).
    Stalled,
}

/// The requests of one connection.
#[derive(Debug)]
pub(crate) struct Watch {
    /// Every request opened and not yet seen closed; closed ones are dropped at the next
    /// check.
    streams: Mutex<Vec<Arc<Progress>>>,
    /// When a request last opened or closed ([`now_ms`]): the start of idleness.
    last_active: AtomicU64,
    /// Set while [`Watch::verdict`] sleeps until the idle timeout (no request open): an
    /// HTTP/2 request opened meanwhile wakes it through `opened`, so that its stall is
    /// found within the write deadline, not after the idle timeout.
    idle_wait: AtomicBool,
    opened: Notify,
}

/// What one request shares with the watchdog.
#[derive(Debug)]
struct Progress {
    /// Since when ([`now_ms`]) the body has had something hyper has not taken; 0 when
    /// nothing waits.
    waiting_since: AtomicU64,
    /// Cleared when the request's response body (or, before it, the request) is dropped.
    open: AtomicBool,
    /// Whether the watchdog checks it for stalls: HTTP/2 only. An HTTP/1 socket that takes
    /// nothing is the write deadline's; hyper's HTTP/1 buffers a body's frames as long as
    /// the socket takes bytes, so a waiting body there says nothing more.
    checked: bool,
    /// The waker of hyper's task for this request, woken whenever the inner body wakes.
    task: AtomicWaker,
}

impl Progress {
    /// Something is waiting for hyper from now, unless it was already.
    fn waiting(&self) {
        // Every wake-up of a stream comes here: no clock read when it is already waiting.
        if self.waiting_since.load(Ordering::Relaxed) == 0 {
            let _ = self.waiting_since.compare_exchange(
                0,
                now_ms(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }
}

impl Wake for Progress {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.waiting();
        self.task.wake();
    }
}

impl Watch {
    /// A connection's watch; its idle time starts now.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            streams: Mutex::default(),
            last_active: AtomicU64::new(now_ms()),
            idle_wait: AtomicBool::new(false),
            opened: Notify::new(),
        })
    }

    /// Tracks a request from now until the returned guard (or the [`Tracked`] body it goes
    /// into) is dropped; `http2` requests are checked for stalls.
    pub(crate) fn open(self: &Arc<Self>, http2: bool) -> StreamGuard {
        let progress = Arc::new(Progress {
            waiting_since: AtomicU64::new(0),
            open: AtomicBool::new(true),
            checked: http2,
            task: AtomicWaker::new(),
        });
        self.last_active.store(now_ms(), Ordering::Relaxed);
        let mut streams = self.streams.lock().expect("watch poisoned");
        // Closed requests leave before the list grows: it stays within twice the open
        // ones (at most 100 streams over HTTP/2), however many requests come between checks.
        if streams.len() == streams.capacity() {
            streams.retain(|p| p.open.load(Ordering::Relaxed));
        }
        streams.push(progress.clone());
        // Under the lock, as `verdict` sets it: a watchdog that saw no request is woken.
        let wake = http2 && self.idle_wait.swap(false, Ordering::Relaxed);
        drop(streams);
        if wake {
            self.opened.notify_one();
        }
        StreamGuard {
            progress,
            watch: self.clone(),
        }
    }

    /// Resolves when the connection should end: when no request has been open for `idle`
    /// (counted from `quiet_from` ([`now_ms`]) at the earliest), or when an HTTP/2 stream has
    /// had data waiting for `stall`. Sleeps between checks: until the earliest moment either
    /// could be true, at most `stall / 2` while requests are open (a stream may start
    /// waiting at any time; it is found before its deadline). An HTTP/2 request that opens
    /// while it sleeps until the idle timeout wakes it.
    pub(crate) async fn verdict(
        &self,
        quiet_from: u64,
        idle: Duration,
        stall: Duration,
    ) -> Verdict {
        let (idle, stall) = (millis(idle), millis(stall));
        loop {
            let now = now_ms();
            let (next, idle_wait) = {
                let mut streams = self.streams.lock().expect("watch poisoned");
                streams.retain(|p| p.open.load(Ordering::Relaxed));
                if streams.is_empty() {
                    let quiet = self.last_active.load(Ordering::Relaxed).max(quiet_from);
                    let at = quiet.saturating_add(idle);
                    if at <= now {
                        return Verdict::Idle;
                    }
                    self.idle_wait.store(true, Ordering::Relaxed);
                    (at, true)
                } else {
                    let mut at = now + (stall / 2).max(1);
                    for progress in streams.iter().filter(|p| p.checked) {
                        let since = progress.waiting_since.load(Ordering::Relaxed);
                        if since != 0 {
                            let deadline = since.saturating_add(stall);
                            if deadline <= now {
                                return Verdict::Stalled;
                            }
                            at = at.min(deadline);
                        }
                    }
                    (at, false)
                }
            };
            let sleep = tokio::time::sleep(Duration::from_millis(next - now));
            if idle_wait {
                tokio::select! {
                    () = sleep => {}
                    () = self.opened.notified() => {}
                }
                self.idle_wait.store(false, Ordering::Relaxed);
            } else {
                sleep.await;
            }
        }
    }

    /// Now, as [`Watch::verdict`] counts.
    pub(crate) fn now() -> u64 {
        now_ms()
    }
}

/// One open request; dropping it closes it.
#[derive(Debug)]
pub(crate) struct StreamGuard {
    progress: Arc<Progress>,
    watch: Arc<Watch>,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.progress.open.store(false, Ordering::Relaxed);
        self.progress.waiting_since.store(0, Ordering::Relaxed);
        self.watch.last_active.store(now_ms(), Ordering::Relaxed);
    }
}

/// A response body that keeps its request open until it is dropped and, over HTTP/2, notes
/// when it has something hyper has not taken (see the module's documentation).
///
/// Beside the body it holds its guard (two pointers), a waker (two) and what is left of a
/// frame larger than [`MAX_PIECE`] (one `Bytes`, empty when none): 64 bytes, and on the
/// heap 56 for what it shares with the watchdog and a pointer in the connection's list.
pub(crate) struct Tracked {
    inner: Body,
    guard: StreamGuard,
    /// Wakes hyper's task through [`Progress`]; made once, so polling allocates nothing.
    waker: Waker,
    /// The rest of a data frame handed over in pieces.
    rest: Bytes,
}

impl Tracked {
    /// Wraps `inner`, the response to the request `guard` tracks.
    pub(crate) fn new(inner: Body, guard: StreamGuard) -> Self {
        let waker = Waker::from(guard.progress.clone());
        if guard.progress.checked {
            // hyper has not taken anything yet.
            guard.progress.waiting();
        }
        Self {
            inner,
            guard,
            waker,
            rest: Bytes::new(),
        }
    }
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let progress = &this.guard.progress;
        if !progress.checked {
            return std::pin::Pin::new(&mut this.inner).poll_frame(cx);
        }
        // Registered before the inner body is polled, so that a wake-up racing with this
        // poll reaches hyper.
        progress.task.register(cx.waker());
        progress.waiting_since.store(0, Ordering::Relaxed);
        if !this.rest.is_empty() {
            let piece = this.rest.split_to(this.rest.len().min(MAX_PIECE));
            progress.waiting();
            return Poll::Ready(Some(Ok(Frame::data(piece))));
        }
        let mut inner_cx = Context::from_waker(&this.waker);
        let polled = std::pin::Pin::new(&mut this.inner).poll_frame(&mut inner_cx);
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                progress.waiting();
                let frame = match frame.into_data() {
                    Ok(mut data) => {
                        if data.len() > MAX_PIECE {
                            this.rest = data.split_off(MAX_PIECE);
                        }
                        Frame::data(data)
                    }
                    Err(frame) => frame,
                };
                Poll::Ready(Some(Ok(frame)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.inner.size_hint();
        let rest = self.rest.len() as u64;
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + rest);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + rest);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use hyper::body::Body as _;

    #[test]
    fn a_tracked_body_costs_four_pointers_and_a_bytes_beside_the_body() {
        assert_eq!(
            std::mem::size_of::<Tracked>(),
            std::mem::size_of::<Body>() + 4 * std::mem::size_of::<usize>() + 32
        );
        // Behind its `Arc`'s two counts.
        assert_eq!(std::mem::size_of::<Progress>(), 40);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_found_after_the_idle_timeout() {
        let watch = Watch::new();
        let verdict = watch.verdict(0, Duration::from_millis(50), Duration::from_secs(60));
        assert_eq!(verdict.await, Verdict::Idle);
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_request_is_not_idle_and_a_waiting_http2_body_is_stalled() {
        let watch = Watch::new();
        let guard = watch.open(true);
        // Created and never polled: waiting from the start.
        let body = Tracked::new(Body::from("x"), guard);
        let verdict = watch.verdict(0, Duration::from_millis(10), Duration::from_millis(100));
        assert_eq!(verdict.await, Verdict::Stalled);
        drop(body);
        let verdict = watch.verdict(0, Duration::from_millis(10), Duration::from_millis(100));
        assert_eq!(verdict.await, Verdict::Idle);
    }

    #[tokio::test(start_paused = true)]
    async fn an_http2_request_opened_while_the_watchdog_waits_for_idleness_is_checked() {
        let watch = Watch::new();
        let (idle, stall) = (Duration::from_secs(10), Duration::from_secs(2));
        let started = Instant::now();
        let verdict = tokio::spawn({
            let watch = watch.clone();
            async move { watch.verdict(0, idle, stall).await }
        });
        // The watchdog is asleep until the idle timeout when the request comes.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _body = Tracked::new(Body::from("x"), watch.open(true));
        assert_eq!(verdict.await.unwrap(), Verdict::Stalled);
        let took = started.elapsed();
        assert!(took < Duration::from_secs(4), "stalled after {took:?}");
    }

    #[test]
    fn closed_requests_do_not_pile_up_between_checks() {
        let watch = Watch::new();
        let _open = watch.open(true);
        for _ in 0..10_000 {
            drop(watch.open(true));
        }
        assert!(watch.streams.lock().unwrap().capacity() <= 4);
    }

    #[tokio::test(start_paused = true)]
    async fn an_http1_body_is_never_stalled() {
        let watch = Watch::new();
        let _body = Tracked::new(Body::from("x"), watch.open(false));
        let verdict = watch.verdict(0, Duration::from_millis(10), Duration::from_millis(20));
        assert!(
            tokio::time::timeout(Duration::from_millis(200), verdict)
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn large_frames_are_handed_over_in_pieces() {
        let watch = Watch::new();
        let data = Bytes::from(vec![7u8; 2 * MAX_PIECE + 1]);
        let mut body = Tracked::new(Body::from(data.clone()), watch.open(true));
        assert_eq!(body.size_hint().exact(), Some(data.len() as u64));
        let mut pieces = Vec::new();
        while let Some(frame) = body.frame().await {
            pieces.push(frame.unwrap().into_data().unwrap());
        }
        let lengths: Vec<usize> = pieces.iter().map(Bytes::len).collect();
        assert_eq!(lengths, [MAX_PIECE, MAX_PIECE, 1]);
        assert_eq!(pieces.concat(), data);
        assert!(body.is_end_stream());
    }
}
