//! A subscriber's stream of SSE bytes: the prelude, the replay of what it missed, then live
//! updates from its queue.

use std::{
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, ready},
};

use bytes::{Bytes, BytesMut};
use futures::{Stream, future::BoxFuture};

use crate::{
    hub::{Hub, ReplayFilter},
    log::LogError,
    subscriber::{Drained, Memo, State, Subscriber},
    update::Record,
};

/// Records fetched per replay step: large enough to amortize a log query, small enough
/// that a replay of a long history streams instead of buffering.
const REPLAY_PAGE: usize = 512;

/// Bytes of frames after which a replay page ends (it holds at least one record). A page is
/// what one stream holds while its client has not read it yet, so this, not the record
/// count, bounds the memory a client that never reads can pin: 512 records of up to
/// `--max-body` each would be hundreds of MiB.
pub(crate) const REPLAY_PAGE_BYTES: usize = 256 * 1024;

/// Where a subscriber resumes.
#[derive(Debug)]
pub(crate) enum Resume {
    /// After this `seq` (0: from the oldest retained update).
    After(u64),
    /// After this position, which a client read with its data: when retention removed the
    /// records right after it, the stream starts with a `reset` at the head, as for an
    /// unknown id.
    Position(u64),
    /// The subscriber's `Last-Event-ID` is not (or no longer) in the log.
    Unknown(Arc<str>),
}

/// The stream of one subscriber. Yields SSE bytes, ready to write; each item may hold many
/// events. Ends when the subscriber fell too far behind (it resumes by reconnecting with
/// its last event id) or when the hub shuts down. Dropping it unsubscribes.
pub struct Subscription {
    hub: Hub,
    subscriber: Arc<Subscriber>,
    /// The `retry:` hint and, when resuming from an unknown id, the `reset` event.
    prelude: Option<Bytes>,
    /// The `seq` of the newest update this subscriber has been given (or skipped as not
    /// its own). Live frames at or below it were already sent by the replay.
    cursor: u64,
    /// The head when the subscriber registered: the replay covers `(cursor, replay_to]`,
    /// the queue everything after.
    replay_to: u64,
    page: Option<BoxFuture<'static, Result<Vec<Arc<Record>>, LogError>>>,
    memo: Memo,
    /// The server's rule on what a resume replays, if any.
    replay_filter: Option<ReplayFilter>,
    head_id: Option<Arc<str>>,
    /// Resuming from a [`Resume::Position`] whose first page has not been read yet.
    from_position: bool,
    reset: bool,
    ended: bool,
    /// Told the newest record the replay has passed, when someone asked ([`Self::passed`]).
    passed: Option<Passed>,
}

/// The id of the newest record a [`Subscription`]'s replay has passed, whether or not the
/// subscriber could see it: where a client that saw nothing since may resume without
/// replaying the same records again. Readable while the stream is consumed elsewhere.
#[derive(Clone, Debug, Default)]
pub struct Passed(Arc<Mutex<Option<Arc<str>>>>);

impl Passed {
    /// The id, once the replay has passed a record.
    pub fn get(&self) -> Option<Arc<str>> {
        self.0.lock().expect("passed poisoned").clone()
    }

    fn set(&self, id: Arc<str>) {
        *self.0.lock().expect("passed poisoned") = Some(id);
    }
}

impl Subscription {
    pub(crate) fn new(
        hub: Hub,
        subscriber: Arc<Subscriber>,
        resume: Option<Resume>,
        head: u64,
        head_id: Option<Arc<str>>,
        replay_filter: Option<ReplayFilter>,
    ) -> Self {
        let mut prelude = BytesMut::from(&hub.shared.retry_frame[..]);
        let from_position = matches!(resume, Some(Resume::Position(_)));
        let (cursor, reset) = match resume {
            None => (head, false),
            Some(Resume::After(seq) | Resume::Position(seq)) => (seq, false),
            Some(Resume::Unknown(id)) => {
                hub.shared.metrics.resets.inc();
                prelude.extend_from_slice(&reset_frame(
                    head_id.as_deref(),
                    "unknown-id",
                    Some(&id),
                ));
                (head, true)
            }
        };
        Self {
            hub,
            subscriber,
            prelude: Some(prelude.freeze()),
            cursor,
            replay_to: head,
            page: None,
            memo: Memo::default(),
            replay_filter,
            head_id,
            from_position,
            reset,
            ended: false,
            passed: None,
        }
    }

    /// A handle on the newest record the replay passes from now on (see [`Passed`]).
    pub fn passed(&mut self) -> Passed {
        self.passed.get_or_insert_with(Passed::default).clone()
    }

    /// The id of the newest update in the log when the subscription started (Mercure's
    /// `Last-Event-ID` response header), if it is known.
    pub fn head_id(&self) -> Option<&str> {
        self.head_id.as_deref()
    }

    /// A handle that ends this stream from elsewhere, after what is already queued for it
    /// has been yielded: the app ends a user's streams when their access changes.
    pub fn closer(&self) -> Closer {
        Closer(self.subscriber.clone())
    }

    /// The log's head when the subscription registered: the replay ends there, live
    /// delivery starts after it.
    pub fn head(&self) -> u64 {
        self.replay_to
    }

    /// Whether the stream starts with a `reset` event because the requested id is unknown.
    pub fn is_reset(&self) -> bool {
        self.reset
    }

    fn fetch_page(&self) -> BoxFuture<'static, Result<Vec<Arc<Record>>, LogError>> {
        let hub = self.hub.clone();
        let (after, up_to) = (self.cursor, self.replay_to);
        Box::pin(async move {
            let in_memory = hub.shared.history.lock().expect("history poisoned").range(
                after,
                up_to,
                REPLAY_PAGE,
                REPLAY_PAGE_BYTES,
            );
            match in_memory {
                Some(records) => Ok(records),
                None => Ok(hub
                    .shared
                    .log
                    .read(after, up_to, REPLAY_PAGE, REPLAY_PAGE_BYTES)
                    .await?
                    .into_iter()
                    .map(Arc::new)
                    .collect()),
            }
        })
    }

    /// One step of the replay: the visible frames of the next page, or `None` when the
    /// page held nothing this subscriber may see.
    fn replay_step(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, LogError>> {
        let page = self
            .page
            .as_mut()
            .expect("poll_next sets the page before stepping");
        let records = ready!(page.as_mut().poll(cx))?;
        self.page = None;
        let from_position = std::mem::take(&mut self.from_position);
        let from_start = self.cursor == 0 && !from_position;
        if from_position
            && records
                .first()
                .is_none_or(|first| first.seq != self.cursor + 1)
        {
            // The records after the position are gone: what the client holds cannot be
            // brought up to date. Say so, as for an unknown id, and go on live.
            self.cursor = self.replay_to;
            if let (Some(passed), Some(head)) = (&self.passed, &self.head_id) {
                passed.set(head.clone());
            }
            return Poll::Ready(Ok(Some(self.expired())));
        }
        let Some(last) = records.last() else {
            self.cursor = self.replay_to;
            if let (Some(passed), Some(head)) = (&self.passed, &self.head_id) {
                passed.set(head.clone());
            }
            if from_start {
                return Poll::Ready(Ok(None)); // `earliest`, and nothing is retained.
            }
            // Retention removed what we were about to replay.
            return Poll::Ready(Ok(Some(self.expired())));
        };
        let mut frames = BytesMut::new();
        if !from_start && records[0].seq != self.cursor + 1 {
            // Retention pruned the log under a replay in progress: say so, then go on.
            frames.extend_from_slice(&self.expired());
        }
        self.cursor = last.seq;
        if let Some(passed) = &self.passed {
            passed.set(last.id.clone());
        }
        let mut replayed = 0;
        for record in &records {
            self.memo.clear();
            if self
                .subscriber
                .filter
                .accepts(record, &mut self.memo, false)
                && self
                    .replay_filter
                    .as_ref()
                    .is_none_or(|keep| (keep.0)(record))
            {
                frames.extend_from_slice(&record.frame);
                replayed += 1;
            }
        }
        self.hub.shared.metrics.replayed.inc_by(replayed);
        Poll::Ready(Ok((!frames.is_empty()).then(|| frames.freeze())))
    }

    /// The `reset` for updates that left the log before this subscriber got them.
    fn expired(&mut self) -> Bytes {
        self.reset = true;
        self.hub.shared.metrics.resets.inc();
        reset_frame(self.head_id.as_deref(), "expired", None)
    }
}

/// Ends a [`Subscription`] from outside it; see [`Subscription::closer`].
#[derive(Clone, Debug)]
pub struct Closer(Arc<Subscriber>);

impl Closer {
    /// Ends the stream once it has yielded every frame already queued. Idempotent.
    pub fn close(&self) {
        self.0.close();
    }
}

impl Stream for Subscription {
    type Item = Bytes;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        if let Some(prelude) = this.prelude.take() {
            return Poll::Ready(Some(prelude));
        }
        while this.cursor < this.replay_to {
            if this.page.is_none() {
                this.page = Some(this.fetch_page());
            }
            match ready!(this.replay_step(cx)) {
                Ok(Some(frames)) => return Poll::Ready(Some(frames)),
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%error, "replay failed; ending the stream so the client resumes");
                    this.ended = true;
                    return Poll::Ready(None);
                }
            }
        }
        match ready!(this.subscriber.poll_drain(cx, this.cursor)) {
            Drained::Frames(frames, newest) => {
                if let Some(seq) = newest {
                    this.cursor = seq;
                }
                Poll::Ready(Some(frames))
            }
            Drained::End(state) => {
                debug_assert_ne!(state, State::Open);
                this.ended = true;
                Poll::Ready(None)
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unregister(&self.subscriber);
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("subscriber", &self.subscriber.id)
            .field("cursor", &self.cursor)
            .field("replay_to", &self.replay_to)
            .finish_non_exhaustive()
    }
}

/// The `reset` event: the subscriber cannot be told exactly what it missed and should
/// reload its state. Its id is the newest update's, so a reconnect after it resumes from
/// here instead of resetting again.
fn reset_frame(head_id: Option<&str>, reason: &str, requested: Option<&str>) -> Bytes {
    let data = serde_json::json!({ "reason": reason, "lastEventID": requested });
    let mut event = herald_sse::Event::new(data.to_string()).with_event("reset");
    event.id = head_id.map(str::to_owned);
    event.encode()
}
