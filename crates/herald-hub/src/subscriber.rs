//! One subscriber's side of fan-out: what it may receive ([`Filter`]) and its bounded queue
//! of encoded frames ([`Subscriber`]).

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use bytes::{Bytes, BytesMut};
use futures::task::AtomicWaker;

use crate::{hub::Compiled, update::Record};

/// The selectors of a subscriber's `mercure.subscribe` claim: which private updates it may
/// receive. Shared (interned) between subscribers that present the same claim.
#[derive(Debug)]
pub(crate) struct ClaimSet {
    pub(crate) selectors: Box<[Arc<Compiled>]>,
}

/// What one subscriber asked for and may see.
#[derive(Debug)]
pub(crate) struct Filter {
    /// The `topic` selectors of the subscription (interned).
    pub(crate) selectors: Box<[Arc<Compiled>]>,
    /// `None` for an anonymous subscriber or a token without a subscribe claim: public
    /// updates only.
    pub(crate) claims: Option<Arc<ClaimSet>>,
    /// Whether updates on reserved topics may reach it ([`crate::SubscribeRequest::reserved`]).
    pub(crate) reserved: bool,
}

/// Per-update cache of selector results, keyed by the address of the interned selector or
/// claim set. Thousands of subscribers usually share a few selectors; each is matched
/// against an update's topics once.
#[derive(Default)]
pub(crate) struct Memo(HashMap<usize, bool>);

impl Memo {
    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }

    fn get_or<T>(&mut self, key: &Arc<T>, compute: impl FnOnce() -> bool) -> bool {
        *self
            .0
            .entry(Arc::as_ptr(key).cast::<()>() as usize)
            .or_insert_with(compute)
    }
}

impl Filter {
    /// Whether `record` goes to this subscriber. `topic_known` is set when fan-out found the
    /// subscriber through the exact-topic index, so a topic already matched.
    pub(crate) fn accepts(&self, record: &Record, memo: &mut Memo, topic_known: bool) -> bool {
        if record.reserved && !self.reserved {
            return false;
        }
        let wanted = topic_known
            || self.selectors.iter().any(|selector| {
                memo.get_or(selector, || {
                    record.topics.iter().any(|topic| selector.matches(topic))
                })
            });
        if !wanted {
            return false;
        }
        if !record.private {
            return true;
        }
        match &self.claims {
            None => false,
            Some(claims) => memo.get_or(claims, || {
                claims
                    .selectors
                    .iter()
                    .any(|s| record.topics.iter().any(|topic| s.matches(topic)))
            }),
        }
    }

    /// True when every selector is an exact topic, so the subscriber can be indexed by topic.
    pub(crate) fn is_exact(&self) -> bool {
        self.selectors.iter().all(|s| !s.is_pattern())
    }
}

/// Most bytes one drain coalesces into a single write. A coalesced buffer is a copy that
/// belongs to one subscriber, where queued frames are shared with every other: a stream whose
/// writes stall (an HTTP/2 peer that never opens its flow-control window keeps the buffer it
/// was last given) pins at most this much of its own. Larger than any backlog a reading
/// client builds up between two writes, so coalescing still saves the writes it is for.
pub(crate) const MAX_DRAIN_BYTES: usize = 256 * 1024;

/// Bounds on one subscriber's queue. A subscriber that reaches either is cut off, and
/// resumes from the log when it reconnects.
#[derive(Clone, Copy, Debug)]
pub struct QueueLimits {
    /// Most frames waiting to be written.
    pub max_frames: usize,
    /// Most bytes waiting to be written. Frames are shared between subscribers, but a
    /// lagging subscriber keeps them alive after everyone else has moved on.
    pub max_bytes: usize,
}

impl Default for QueueLimits {
    fn default() -> Self {
        Self {
            max_frames: 4096,
            max_bytes: 4 << 20,
        }
    }
}

/// A subscriber as fan-out sees it: a filter and a bounded queue. The HTTP response body
/// drains the queue; fan-out never waits on it.
#[derive(Debug)]
pub(crate) struct Subscriber {
    pub(crate) id: u64,
    pub(crate) filter: Filter,
    queue: Mutex<Queue>,
    /// Woken when frames arrive or the queue closes.
    waker: AtomicWaker,
}

#[derive(Debug)]
struct Queue {
    /// `(seq, frame)`; `seq` 0 marks a heartbeat, which carries no update.
    items: VecDeque<(u64, Bytes)>,
    bytes: usize,
    /// The newest `seq` queued, so an update matched through several topics is queued once.
    last_seq: u64,
    state: State,
    limits: QueueLimits,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    Open,
    /// Fell behind; the stream ends and the client resumes by id.
    Lagged,
    /// The hub is shutting down; the stream ends after what is queued.
    Closed,
}

/// What [`Subscriber::push`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    Queued,
    /// Skipped: already queued, or the queue no longer accepts frames.
    Skipped,
    /// The queue overflowed just now; the subscriber is cut off.
    Overflowed,
}

/// What the stream gets from [`Subscriber::poll_drain`].
#[derive(Debug)]
pub(crate) enum Drained {
    /// Frames to write, coalesced into one buffer, and the newest `seq` among them.
    Frames(Bytes, Option<u64>),
    /// Nothing more will come.
    End(State),
}

impl Subscriber {
    pub(crate) fn new(id: u64, filter: Filter, limits: QueueLimits) -> Self {
        Self {
            id,
            filter,
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                bytes: 0,
                last_seq: 0,
                state: State::Open,
                limits,
            }),
            waker: AtomicWaker::new(),
        }
    }

    /// Queues the frame of update `seq`. Never blocks beyond a short, uncontended lock.
    pub(crate) fn push(&self, seq: u64, frame: &Bytes) -> Pushed {
        let mut queue = self.queue.lock().expect("subscriber queue poisoned");
        if queue.state != State::Open || queue.last_seq >= seq {
            return Pushed::Skipped;
        }
        queue.last_seq = seq;
        if queue.items.len() >= queue.limits.max_frames
            || queue.bytes + frame.len() > queue.limits.max_bytes
        {
            queue.state = State::Lagged;
            queue.items = VecDeque::new();
            queue.bytes = 0;
            drop(queue);
            self.waker.wake();
            return Pushed::Overflowed;
        }
        queue.bytes += frame.len();
        queue.items.push_back((seq, frame.clone()));
        drop(queue);
        self.waker.wake();
        Pushed::Queued
    }

    /// Queues a heartbeat unless something is already waiting to be written (which will
    /// show the peer is alive just as well).
    pub(crate) fn push_heartbeat(&self, frame: &Bytes) {
        let mut queue = self.queue.lock().expect("subscriber queue poisoned");
        if queue.state == State::Open && queue.items.is_empty() {
            queue.bytes += frame.len();
            queue.items.push_back((0, frame.clone()));
            drop(queue);
            self.waker.wake();
        }
    }

    /// Stops the queue; what is queued is still written, then the stream ends.
    pub(crate) fn close(&self) {
        let mut queue = self.queue.lock().expect("subscriber queue poisoned");
        if queue.state == State::Open {
            queue.state = State::Closed;
        }
        drop(queue);
        self.waker.wake();
    }

    /// Takes every queued frame after `cursor` as one buffer, so a subscriber that fell
    /// behind gets one write instead of one per update.
    pub(crate) fn poll_drain(&self, cx: &mut Context<'_>, cursor: u64) -> Poll<Drained> {
        let mut queue = self.queue.lock().expect("subscriber queue poisoned");
        let mut newest = None;
        let mut first: Option<Bytes> = None;
        let mut joined: Option<BytesMut> = None;
        let queued_bytes = queue.bytes;
        let mut taken = 0;
        while let Some((seq, frame)) = queue.items.pop_front() {
            if first.is_some() && taken + frame.len() > MAX_DRAIN_BYTES {
                // Enough for one write; the rest waits for the next drain.
                queue.items.push_front((seq, frame));
                break;
            }
            taken += frame.len();
            if seq != 0 {
                if seq <= cursor {
                    continue; // Already sent by the replay.
                }
                newest = Some(seq);
            }
            match (&mut first, &mut joined) {
                (None, _) => first = Some(frame),
                (Some(head), None) => {
                    let mut buf = BytesMut::with_capacity(queued_bytes.min(MAX_DRAIN_BYTES));
                    buf.extend_from_slice(head);
                    buf.extend_from_slice(&frame);
                    joined = Some(buf);
                }
                (Some(_), Some(buf)) => buf.extend_from_slice(&frame),
            }
        }
        queue.bytes -= taken;
        if let Some(frames) = joined.map(BytesMut::freeze).or(first) {
            return Poll::Ready(Drained::Frames(frames, newest));
        }
        match queue.state {
            State::Open => {
                // Registered under the lock, so a push cannot slip between the check and
                // the registration.
                self.waker.register(cx.waker());
                Poll::Pending
            }
            ended => Poll::Ready(Drained::End(ended)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::task::Waker;

    use super::*;

    fn subscriber(max_frames: usize) -> Subscriber {
        let filter = Filter {
            selectors: Box::new([]),
            claims: None,
            reserved: false,
        };
        Subscriber::new(
            1,
            filter,
            QueueLimits {
                max_frames,
                max_bytes: 1 << 20,
            },
        )
    }

    fn drain(sub: &Subscriber, cursor: u64) -> Poll<Drained> {
        sub.poll_drain(&mut Context::from_waker(Waker::noop()), cursor)
    }

    #[test]
    fn coalesces_and_skips_what_replay_sent() {
        let sub = subscriber(8);
        for seq in 1..=4 {
            assert_eq!(
                sub.push(seq, &Bytes::from(format!("{seq};"))),
                Pushed::Queued
            );
        }
        assert_eq!(sub.push(4, &Bytes::from_static(b"dup")), Pushed::Skipped);
        match drain(&sub, 2) {
            Poll::Ready(Drained::Frames(bytes, newest)) => {
                assert_eq!(&bytes[..], b"3;4;");
                assert_eq!(newest, Some(4));
            }
            other => panic!("{other:?}"),
        }
        assert!(drain(&sub, 4).is_pending());
        sub.close();
        assert!(matches!(
            drain(&sub, 4),
            Poll::Ready(Drained::End(State::Closed))
        ));
    }

    #[test]
    fn one_drain_coalesces_at_most_max_drain_bytes() {
        let sub = Subscriber::new(
            1,
            Filter {
                selectors: Box::new([]),
                claims: None,
                reserved: false,
            },
            QueueLimits {
                max_frames: 1024,
                max_bytes: 4 * MAX_DRAIN_BYTES,
            },
        );
        let frame = Bytes::from(vec![b'x'; MAX_DRAIN_BYTES / 4 + 1]);
        for seq in 1..=10 {
            assert_eq!(sub.push(seq, &frame), Pushed::Queued);
        }
        let mut drained = Vec::new();
        while let Poll::Ready(Drained::Frames(bytes, newest)) = drain(&sub, 0) {
            assert!(bytes.len() <= MAX_DRAIN_BYTES, "{}", bytes.len());
            drained.push((bytes.len() / frame.len(), newest));
        }
        // Three frames fit in one write, a fourth would not; nothing is lost or reordered.
        assert_eq!(
            drained,
            [(3, Some(3)), (3, Some(6)), (3, Some(9)), (1, Some(10))]
        );
        // Its byte count went back to zero: fifteen frames fit again, of sixteen.
        for seq in 11..=25 {
            assert_eq!(sub.push(seq, &frame), Pushed::Queued, "{seq}");
        }
        assert_eq!(sub.push(26, &frame), Pushed::Overflowed);
    }

    #[test]
    fn overflow_cuts_the_subscriber_off() {
        let sub = subscriber(2);
        assert_eq!(sub.push(1, &Bytes::from_static(b"a")), Pushed::Queued);
        assert_eq!(sub.push(2, &Bytes::from_static(b"b")), Pushed::Queued);
        assert_eq!(sub.push(3, &Bytes::from_static(b"c")), Pushed::Overflowed);
        assert_eq!(sub.push(4, &Bytes::from_static(b"d")), Pushed::Skipped);
        assert!(matches!(
            drain(&sub, 0),
            Poll::Ready(Drained::End(State::Lagged))
        ));
    }

    #[test]
    fn heartbeat_only_when_idle() {
        let sub = subscriber(8);
        let beat = Bytes::from_static(b":\n\n");
        sub.push_heartbeat(&beat);
        sub.push_heartbeat(&beat);
        match drain(&sub, 0) {
            Poll::Ready(Drained::Frames(bytes, newest)) => {
                assert_eq!(&bytes[..], b":\n\n");
                assert_eq!(newest, None);
            }
            other => panic!("{other:?}"),
        }
    }
}
