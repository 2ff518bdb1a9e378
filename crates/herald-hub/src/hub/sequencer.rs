//! The sequencer: the one task that orders, stores and fans out updates.
//!
//! Publishers hand it [`PublishRequest`]s over a bounded channel. It takes them in batches
//! ([`gather`] lets more join while publishes arrive together), stores each batch in one log
//! transaction, and only once the batch is durable pushes its records into the history,
//! fans them out and acknowledges their publishers, in `seq` order. With a shared log it only
//! stores and acknowledges; the follower fans out. Between batches it runs retention.
//!
//! A batch is committed first and made durable after ([`EventLog::append_staged`]): while
//! the disk syncs, the next batches are committed. At most [`MAX_SYNCING`] batches wait for
//! their sync ([`Pending`]), and batches are fanned out in the order they were committed.
//!
//! [`EventLog::append_staged`]: crate::EventLog::append_staged

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, atomic::Ordering},
};

use tokio::{
    sync::{mpsc, oneshot},
    time::{Instant, MissedTickBehavior},
};
use tokio_util::sync::CancellationToken;

use super::{Hub, Published, TransactError};
use crate::{
    log::{Durable, Entry, LogError, Outcome, Step, Work},
    subscriber::Memo,
    update::Record,
};

/// What the sequencer takes from its channel. Publishes, the common case, are not boxed:
/// that would cost an allocation each.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub(super) enum Request {
    Publish(PublishRequest),
    Work(WorkRequest),
}

/// A [`Work`] and where its result goes.
pub(super) struct WorkRequest {
    pub(super) work: Work,
    pub(super) reply: oneshot::Sender<Result<Vec<Published>, TransactError>>,
}

impl std::fmt::Debug for WorkRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WorkRequest")
    }
}

#[derive(Debug)]
pub(super) struct PublishRequest {
    /// Whether the publisher chose the id: only such an id can already be in the log.
    pub(super) chosen_id: bool,
    pub(super) entry: Entry,
    pub(super) record: Record,
    pub(super) reply: oneshot::Sender<Result<u64, String>>,
}

impl Hub {
    /// The sequencer: the one task that orders, stores and fans out updates.
    pub(super) async fn sequencer(
        self,
        mut requests: mpsc::Receiver<Request>,
        mut head: u64,
        shutdown: CancellationToken,
    ) {
        let config = &self.shared.config;
        let mut prune = tokio::time::interval(config.prune_interval);
        prune.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut batch = Vec::with_capacity(config.max_batch);
        let mut memo = Memo::default();
        let mut last_batch = 0;
        // Batches committed and waiting for their sync, oldest first.
        let mut syncing: VecDeque<Pending> = VecDeque::with_capacity(MAX_SYNCING);
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                durable = async {
                    syncing.front_mut().expect("guarded").durable.as_mut().await
                }, if !syncing.is_empty() => {
                    let settled = syncing.pop_front().expect("guarded");
                    self.settle(settled, durable, &mut memo);
                }
                received = requests.recv_many(&mut batch, config.max_batch) => {
                    if received == 0 {
                        break;
                    }
                    let together = received > 1 || last_batch > 1;
                    if together {
                        gather(&mut requests, &mut batch, config.max_batch).await;
                    }
                    last_batch = batch.len();
                    // While changes arrive together, the next batch commits during this
                    // one's sync; a lone one is synced by the writer, without a trip to
                    // the syncer's thread.
                    let overlap = together || !syncing.is_empty();
                    let staging = self.stage(&mut batch, head, overlap);
                    let staged = self.settling(staging, &mut syncing, &mut memo).await;
                    head = self.queue(staged, head, &mut syncing, &mut memo).await;
                }
                _ = prune.tick() => {
                    self.settling(self.prune(head), &mut syncing, &mut memo).await;
                }
            }
        }
        // Store what publishers already handed over, then end every stream.
        requests.close();
        while requests.recv_many(&mut batch, config.max_batch).await > 0 {
            let staged = self.stage(&mut batch, head, true).await;
            head = self.queue(staged, head, &mut syncing, &mut memo).await;
        }
        while let Some(oldest) = syncing.pop_front() {
            self.settle_when_durable(oldest, &mut memo).await;
        }
        self.close_all();
    }

    /// Runs `work` on the writer, settling the batches that become durable meanwhile: they
    /// are not held up by it.
    async fn settling<T>(
        &self,
        work: impl Future<Output = T>,
        syncing: &mut VecDeque<Pending>,
        memo: &mut Memo,
    ) -> T {
        tokio::pin!(work);
        loop {
            tokio::select! {
                biased;
                durable = async {
                    syncing.front_mut().expect("guarded").durable.as_mut().await
                }, if !syncing.is_empty() => {
                    let settled = syncing.pop_front().expect("guarded");
                    self.settle(settled, durable, memo);
                }
                done = &mut work => return done,
            }
        }
    }

    /// Commits one batch: without waiting for it to be durable when it may `overlap` the
    /// next, else durable once this returns.
    async fn stage(&self, batch: &mut Vec<Request>, head: u64, overlap: bool) -> Staged {
        if batch.iter().any(|r| matches!(r, Request::Work(_))) {
            return self.stage_work(batch, head, overlap).await;
        }
        let mut publishes = batch
            .drain(..)
            .filter_map(|request| match request {
                Request::Publish(publish) => Some(publish),
                Request::Work(_) => None,
            })
            .collect();
        self.stage_publishes(&mut publishes, head, overlap).await
    }

    /// Puts a staged batch behind those `syncing`, and returns the head after it. Past
    /// [`MAX_SYNCING`] batches the oldest is waited for first. A batch that failed to
    /// commit sets the head from the log ([`Self::resync_head`]), once every batch before it
    /// is settled, so that the head only moves forward.
    async fn queue(
        &self,
        staged: Staged,
        head: u64,
        syncing: &mut VecDeque<Pending>,
        memo: &mut Memo,
    ) -> u64 {
        match staged {
            Staged::Pending(pending) => {
                if syncing.len() >= MAX_SYNCING
                    && let Some(oldest) = syncing.pop_front()
                {
                    self.settle_when_durable(oldest, memo).await;
                }
                let head = pending.head;
                syncing.push_back(pending);
                head
            }
            Staged::Done(head) => head,
            Staged::Failed => {
                while let Some(oldest) = syncing.pop_front() {
                    self.settle_when_durable(oldest, memo).await;
                }
                self.resync_head(head).await
            }
        }
    }

    /// Waits until `pending` is durable, then fans it out and answers it.
    async fn settle_when_durable(&self, mut pending: Pending, memo: &mut Memo) {
        let durable = pending.durable.as_mut().await;
        self.settle(pending, durable, memo);
    }

    /// Fans out a batch that is durable and answers its requests, in order; or, when it could
    /// not be made durable, refuses every request of it. Such a batch is in the log, but it
    /// is not fanned out: the log refuses every commit after it, and the hub's head stays
    /// below it.
    fn settle(&self, pending: Pending, durable: Result<(), LogError>, memo: &mut Memo) {
        self.shared
            .metrics
            .commit_seconds
            .observe(pending.started.elapsed().as_secs_f64());
        if let Err(error) = durable {
            tracing::error!(%error, updates = pending.records.len(), "event log sync failed");
            let message = error.to_string();
            for answer in pending.answers {
                answer.refuse(&message);
            }
            return;
        }
        self.deliver(&pending.records, memo);
        for answer in pending.answers {
            answer.send();
        }
    }

    /// Commits a batch of publishes ([`Self::stage`]).
    async fn stage_publishes(
        &self,
        batch: &mut Vec<PublishRequest>,
        head: u64,
        overlap: bool,
    ) -> Staged {
        if self.shared.log.is_shared() {
            self.commit_shared(batch).await;
            let registry = self.shared.registry.read().expect("registry poisoned");
            return Staged::Done(registry.head.load(Ordering::Acquire));
        }
        // An id the log already holds is not stored again: its publisher is answered with
        // the position it has, as a shared log does; once this batch is durable, as that
        // position may be the batch's before it, still syncing.
        let chosen_ids = batch
            .iter()
            .filter(|r| r.chosen_id)
            .map(|r| &*r.entry.id)
            .collect();
        let known = match self.known_ids(chosen_ids).await {
            Ok(known) => known,
            Err(error) => {
                tracing::error!(%error, updates = batch.len(), "event log id lookup failed");
                let message = error.to_string();
                for request in batch.drain(..) {
                    let _ = request.reply.send(Err(message.clone()));
                }
                return Staged::Done(head);
            }
        };
        // Take the batch apart rather than copy it: the entries (with their data) go to the
        // log, the records (with their encoded frames) to fan-out.
        let mut entries = Vec::with_capacity(batch.len());
        let mut records = Vec::with_capacity(batch.len());
        let mut answers = Vec::with_capacity(batch.len());
        let mut chosen = HashMap::new();
        let mut next = head + 1;
        for request in batch.drain(..) {
            if let Some(&seq) = known.get(&request.entry.id) {
                answers.push(Answer::Publish(request.reply, Ok(seq)));
                continue;
            }
            if request.chosen_id {
                if let Some(&seq) = chosen.get(&request.entry.id) {
                    // Repeated within this batch: answered with the first one's position.
                    answers.push(Answer::Publish(request.reply, Ok(seq)));
                    continue;
                }
                chosen.insert(request.entry.id.clone(), next);
            }
            let PublishRequest {
                mut entry,
                mut record,
                reply,
                ..
            } = request;
            entry.seq = next;
            record.seq = next;
            next += 1;
            entries.push(entry);
            answers.push(Answer::Publish(reply, Ok(record.seq)));
            records.push(Arc::new(record));
        }
        let started = Instant::now();
        if entries.is_empty() {
            // Only ids the log holds: answered once what it holds is durable.
            return Staged::Pending(Pending {
                head,
                records: Vec::new(),
                answers,
                durable: self.shared.log.visible_durable(),
                started,
            });
        }
        let log = &self.shared.log;
        let stored = if overlap {
            log.append_staged(entries).await
        } else {
            log.append(entries)
                .await
                .map(|seqs| (seqs, already_durable()))
        };
        match stored {
            Ok((_, durable)) => Staged::Pending(Pending {
                head: next - 1,
                records,
                answers,
                durable,
                started,
            }),
            Err(error) => {
                tracing::error!(%error, updates = records.len(), "event log append failed");
                let message = error.to_string();
                for answer in answers {
                    answer.refuse(&message);
                }
                Staged::Failed
            }
        }
    }

    /// Commits a batch that holds work in one log transaction ([`Self::stage`],
    /// [`EventLog::transact_staged`]).
    ///
    /// [`EventLog::transact_staged`]: crate::EventLog::transact_staged
    async fn stage_work(&self, batch: &mut Vec<Request>, head: u64, overlap: bool) -> Staged {
        if !self.shared.log.runs_work() {
            fail_all(batch, "the event log cannot run work");
            return Staged::Done(head);
        }
        let chosen_ids = batch
            .iter()
            .filter_map(|r| match r {
                Request::Publish(publish) if publish.chosen_id => Some(&*publish.entry.id),
                _ => None,
            })
            .collect();
        let known = match self.known_ids(chosen_ids).await {
            Ok(known) => known,
            Err(error) => {
                tracing::error!(%error, "event log id lookup failed");
                fail_all(batch, &error.to_string());
                return Staged::Done(head);
            }
        };
        // What each step answers, in the steps' order.
        enum Waiting {
            Publish(oneshot::Sender<Result<u64, String>>, Record),
            Work(oneshot::Sender<Result<Vec<Published>, TransactError>>),
        }
        let mut steps = Vec::with_capacity(batch.len());
        let mut waiting = Vec::with_capacity(batch.len());
        let mut known_answers = Vec::new();
        let mut repeated = Vec::new();
        let mut chosen = HashMap::new();
        for request in batch.drain(..) {
            match request {
                Request::Publish(publish) => {
                    if let Some(&seq) = known.get(&publish.entry.id) {
                        known_answers.push(Answer::Publish(publish.reply, Ok(seq)));
                        continue;
                    }
                    if publish.chosen_id {
                        if let Some(&step) = chosen.get(&publish.entry.id) {
                            repeated.push((publish.reply, step));
                            continue;
                        }
                        chosen.insert(publish.entry.id.clone(), steps.len());
                    }
                    steps.push(Step::Entry(publish.entry));
                    waiting.push(Waiting::Publish(publish.reply, publish.record));
                }
                Request::Work(work) => {
                    steps.push(Step::Work(work.work));
                    waiting.push(Waiting::Work(work.reply));
                }
            }
        }
        let started = Instant::now();
        let log = &self.shared.log;
        let stored = if overlap {
            log.transact_staged(steps, head + 1).await
        } else {
            let transacted = log.transact(steps, head + 1).await;
            transacted.map(|transacted| (transacted, already_durable()))
        };
        let (transacted, durable) = match stored {
            Ok(staged) => staged,
            Err(error) => {
                tracing::error!(%error, "event log transaction failed");
                let message = error.to_string();
                for waiting in waiting {
                    match waiting {
                        Waiting::Publish(reply, _) => {
                            let _ = reply.send(Err(message.clone()));
                        }
                        Waiting::Work(reply) => {
                            let _ = reply.send(Err(TransactError::Unavailable(message.clone())));
                        }
                    }
                }
                for answer in known_answers {
                    answer.refuse(&message);
                }
                for (reply, _) in repeated {
                    let _ = reply.send(Err(message.clone()));
                }
                return Staged::Failed;
            }
        };
        let entries = transacted.entries;
        let mut records = Vec::with_capacity(entries.len());
        let mut answers = Vec::with_capacity(waiting.len() + repeated.len());
        let mut step_seqs = Vec::with_capacity(waiting.len());
        for (waiting, outcome) in waiting.into_iter().zip(transacted.outcomes) {
            match (waiting, outcome) {
                (Waiting::Publish(reply, mut record), Outcome::Stored(range)) => {
                    record.seq = entries[range.start].seq;
                    step_seqs.push(Some(record.seq));
                    answers.push(Answer::Publish(reply, Ok(record.seq)));
                    records.push(Arc::new(record));
                }
                (Waiting::Work(reply), Outcome::Stored(range)) => {
                    let mut published = Vec::with_capacity(range.len());
                    for entry in &entries[range] {
                        records.push(Arc::new(Record::new(
                            entry.seq,
                            entry.id.clone(),
                            &entry.update,
                            entry.created_at_ms,
                        )));
                        published.push(Published {
                            id: entry.id.clone(),
                            seq: entry.seq,
                        });
                    }
                    step_seqs.push(None);
                    answers.push(Answer::Work(reply, Ok(published)));
                }
                (Waiting::Work(reply), Outcome::Failed(error)) => {
                    step_seqs.push(None);
                    answers.push(Answer::Work(reply, Err(TransactError::Work(error))));
                }
                (Waiting::Publish(reply, _), Outcome::Failed(error)) => {
                    step_seqs.push(None);
                    answers.push(Answer::Publish(reply, Err(error.to_string())));
                }
            }
        }
        drop(entries);
        for (reply, step) in repeated {
            let answer = step_seqs
                .get(step)
                .copied()
                .flatten()
                .ok_or_else(|| "the first publish of this id failed".to_owned());
            answers.push(Answer::Publish(reply, answer));
        }
        answers.extend(known_answers);
        Staged::Pending(Pending {
            head: head + u64::try_from(records.len()).unwrap_or(u64::MAX),
            records,
            answers,
            durable,
            started,
        })
    }

    /// Hands stored records on: into the history, then to every matching subscriber.
    /// Returns how many there were.
    fn deliver(&self, records: &[Arc<Record>], memo: &mut Memo) -> u64 {
        {
            let mut history = self.shared.history.lock().expect("history poisoned");
            for record in records {
                history.push(record.clone());
            }
        }
        self.fan_out(records, memo);
        let count = u64::try_from(records.len()).unwrap_or(u64::MAX);
        self.shared.metrics.published.inc_by(count);
        count
    }

    /// The positions in the log of the ids publishers `chosen`, for those the log holds. Generated ids are new by construction and never looked up.
    async fn known_ids(&self, chosen: Vec<&str>) -> Result<HashMap<Arc<str>, u64>, LogError> {
        if chosen.is_empty() {
            return Ok(HashMap::new());
        }
        let positions = self.shared.log.positions_of(&chosen).await?;
        Ok(chosen
            .into_iter()
            .zip(positions)
            .filter_map(|(id, seq)| Some((Arc::from(id), seq?)))
            .collect())
    }

    /// Stores one batch in a shared log and acknowledges it. The log numbers the updates;
    /// the follower fans them out when it reads them back, in the log's order, together with
    /// those of other nodes.
    async fn commit_shared(&self, batch: &mut Vec<PublishRequest>) {
        let mut entries = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        for request in batch.drain(..) {
            entries.push(request.entry);
            replies.push(request.reply);
        }
        let started = Instant::now();
        let stored = self.shared.log.append(entries).await;
        let metrics = &self.shared.metrics;
        metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        match stored {
            Ok(seqs) => {
                metrics
                    .published
                    .inc_by(u64::try_from(seqs.len()).unwrap_or(u64::MAX));
                for (reply, seq) in replies.into_iter().zip(seqs) {
                    let _ = reply.send(Ok(seq));
                }
            }
            Err(error) => {
                tracing::error!(%error, updates = replies.len(), "shared event log append failed");
                let message = error.to_string();
                for reply in replies {
                    let _ = reply.send(Err(message.clone()));
                }
            }
        }
    }

    /// After a failed append, asks the log where it stands: a commit can fail after its
    /// data reached the log, and reusing those positions would make every later append fail
    /// too. Such updates were refused to their publishers but are in the log; once they are
    /// durable, replay serves them, live delivery does not.
    async fn resync_head(&self, head: u64) -> u64 {
        match self.shared.log.head().await {
            Ok(stored) if stored > head => {
                if let Err(error) = self.shared.log.visible_durable().await {
                    tracing::error!(%error, "a failed append reached the log, but not the disk");
                    return head;
                }
                tracing::warn!(
                    head,
                    stored,
                    "a failed append reached the log; moving past it"
                );
                self.shared
                    .history
                    .lock()
                    .expect("history poisoned")
                    .clear();
                let registry = self.shared.registry.read().expect("registry poisoned");
                registry.head.store(stored, Ordering::Release);
                drop(registry);
                self.shared.head_moved.notify_waiters();
                stored
            }
            _ => head,
        }
    }
}

/// Batches committed and waiting for their sync at most. One sync makes every batch
/// committed before it durable, so a few are enough for the disk to never hold the writer
/// up; each waiting batch holds its records in memory.
const MAX_SYNCING: usize = 4;

/// What [`Hub::stage`] made of a batch.
enum Staged {
    /// Committed: fanned out and answered once it is durable.
    Pending(Pending),
    /// Answered already, nothing to wait for; the head after it.
    Done(u64),
    /// Its commit failed, and its requests were refused; the log may hold some of it
    /// ([`Hub::resync_head`]).
    Failed,
}

/// A batch committed to the log, and what to do once it is durable.
struct Pending {
    /// The head once it is fanned out.
    head: u64,
    /// Its records, in order, to fan out.
    records: Vec<Arc<Record>>,
    /// Its answers, sent after the fan-out.
    answers: Vec<Answer>,
    durable: Durable,
    /// When it began to be stored.
    started: Instant,
}

/// An answer the sequencer sends once a batch is fanned out.
enum Answer {
    Publish(oneshot::Sender<Result<u64, String>>, Result<u64, String>),
    Work(
        oneshot::Sender<Result<Vec<Published>, TransactError>>,
        Result<Vec<Published>, TransactError>,
    ),
}

impl Answer {
    fn send(self) {
        match self {
            Self::Publish(reply, answer) => {
                let _ = reply.send(answer);
            }
            Self::Work(reply, answer) => {
                let _ = reply.send(answer);
            }
        }
    }

    /// Refuses what was stored, with `message`: it is not durable. A work that failed on
    /// its own keeps its own error.
    fn refuse(self, message: &str) {
        match self {
            Self::Publish(reply, _) => {
                let _ = reply.send(Err(message.to_owned()));
            }
            Self::Work(reply, Ok(_)) => {
                let _ = reply.send(Err(TransactError::Unavailable(message.to_owned())));
            }
            Self::Work(reply, failed) => {
                let _ = reply.send(failed);
            }
        }
    }
}

/// The [`Durable`] of a batch stored durably already.
fn already_durable() -> Durable {
    Box::pin(std::future::ready(Ok(())))
}

/// Answers every request of `batch` with `message`: nothing of it was stored.
fn fail_all(batch: &mut Vec<Request>, message: &str) {
    for request in batch.drain(..) {
        match request {
            Request::Publish(publish) => {
                let _ = publish.reply.send(Err(message.to_owned()));
            }
            Request::Work(work) => {
                let _ = work
                    .reply
                    .send(Err(TransactError::Unavailable(message.to_owned())));
            }
        }
    }
}

/// Rounds of [`gather`] at most: bounds the wait for a batch to the time other tasks take to
/// run a few times.
const GATHER_ROUNDS: usize = 8;

/// Lets the publish handlers that are ready to run hand over their requests before a batch
/// is committed, and adds them to `batch`.
///
/// A commit costs about the same for one update as for a hundred (one sync), so bigger
/// batches are cheaper per update; but the sequencer must not wait on a clock for them. It
/// yields instead: when nothing else is ready the yield returns at once and the batch goes
/// as it is; under load every handler whose request has arrived runs first and joins this
/// batch. It stops at the first round that brings nothing. The sequencer only gathers while
/// publishes arrive together (this batch or the last one had several): a lone publish is
/// committed at once, not after the subscriber writes that the previous update woke.
async fn gather(
    requests: &mut mpsc::Receiver<Request>,
    batch: &mut Vec<Request>,
    max_batch: usize,
) {
    for _ in 0..GATHER_ROUNDS {
        if batch.len() >= max_batch {
            return;
        }
        tokio::task::yield_now().await;
        let before = batch.len();
        while batch.len() < max_batch {
            let Ok(request) = requests.try_recv() else {
                break;
            };
            batch.push(request);
        }
        if batch.len() == before {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{Mutex, mpsc as sync_mpsc},
        time::Duration,
    };

    use futures::StreamExt as _;
    use tokio_util::task::TaskTracker;

    use super::*;
    use crate::{EventLog, HubConfig, Matcher, SqliteLog, SubscribeRequest, Update};

    /// A hub on a log whose syncs run only when `release` lets them, or fail when `fails`
    /// says so for their number (from 0).
    async fn hub_on_held_log(
        fails: impl Fn(usize) -> bool + Send + 'static,
    ) -> (Hub, SqliteLog, Syncs, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let (release, held) = sync_mpsc::channel::<()>();
        let (entering, entered) = sync_mpsc::channel::<()>();
        let held = Mutex::new(held);
        let mut syncs = 0;
        let log = SqliteLog::open_synced_by(&dir.path().join("log.db"), move || {
            entering.send(()).unwrap();
            held.lock().unwrap().recv().unwrap();
            syncs += 1;
            if fails(syncs - 1) {
                Err(std::io::Error::other("the disk is gone"))
            } else {
                Ok(())
            }
        })
        .await
        .unwrap();
        let config = HubConfig {
            heartbeat: None,
            ..HubConfig::default()
        };
        let hub = Hub::start(
            config,
            Arc::new(log.clone()),
            &TaskTracker::new(),
            CancellationToken::new(),
        )
        .await
        .unwrap();
        (hub, log, Syncs { release, entered }, dir)
    }

    /// The held syncs of [`hub_on_held_log`].
    struct Syncs {
        release: sync_mpsc::Sender<()>,
        entered: sync_mpsc::Receiver<()>,
    }

    impl Syncs {
        /// Lets the next sync go.
        fn release(&self) {
            self.release.send(()).unwrap();
        }

        /// Waits until a sync has begun: what was committed before it is covered by it.
        async fn entered(&self) {
            for _ in 0..500 {
                if self.entered.try_recv().is_ok() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("no sync began");
        }
    }

    fn update(data: &str) -> Update {
        Update {
            topics: vec!["t".into()],
            data: data.into(),
            ..Update::default()
        }
    }

    /// Waits until the log holds `seq`: committed, whether or not it is durable yet.
    async fn committed(log: &SqliteLog, seq: u64) {
        for _ in 0..500 {
            if log.head().await.unwrap() >= seq {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the log never held {seq}");
    }

    /// A committed batch is neither acknowledged, nor fanned out, nor reported as caught up
    /// until its sync completes. A lone publish is synced by the writer, which holds the
    /// next batch; publishes that arrive together commit while the batch before them syncs.
    /// Batches are delivered in order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_is_answered_and_fanned_out_only_once_it_is_durable() {
        let (hub, log, syncs, _dir) = hub_on_held_log(|_| false).await;
        let mut stream = hub
            .subscribe(SubscribeRequest {
                topics: vec![Matcher::from("t")],
                ..SubscribeRequest::default()
            })
            .await
            .unwrap();
        let zero = hub.enqueue(update("zero")).await.unwrap();
        committed(&log, 1).await;
        // Queued while the writer syncs the lone one: they make one batch.
        let one = tokio::spawn(hub.enqueue(update("one")).await.unwrap());
        let two = tokio::spawn(hub.enqueue(update("two")).await.unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(log.head().await.unwrap(), 1, "committed behind a sync");
        assert_eq!(hub.head(), 0);
        syncs.entered().await;
        syncs.release();
        assert_eq!(zero.await.unwrap().seq, 1);
        committed(&log, 3).await;
        syncs.entered().await;
        // Committed while the batch before it syncs.
        let three = tokio::spawn(hub.enqueue(update("three")).await.unwrap());
        committed(&log, 4).await;
        assert!(!one.is_finished() && !two.is_finished() && !three.is_finished());
        assert_eq!(hub.head(), 1);
        assert!(!hub.caught_up(2, Duration::from_millis(50)).await.unwrap());
        let mut seen = String::new();
        while let Ok(Some(chunk)) =
            tokio::time::timeout(Duration::from_millis(50), stream.next()).await
        {
            seen.push_str(std::str::from_utf8(&chunk).unwrap());
        }
        assert!(seen.contains("data: zero"), "{seen}");
        assert!(
            !seen.contains("data: one"),
            "delivered before it was durable: {seen}"
        );

        syncs.release();
        assert_eq!(one.await.unwrap().unwrap().seq, 2);
        assert_eq!(two.await.unwrap().unwrap().seq, 3);
        assert_eq!(hub.head(), 3);
        assert!(!three.is_finished());
        // A reader of the log may see the last batch: it waits for that one too.
        assert!(!hub.caught_up(3, Duration::from_millis(50)).await.unwrap());
        syncs.release();
        assert_eq!(three.await.unwrap().unwrap().seq, 4);
        assert!(hub.caught_up(4, Duration::from_secs(5)).await.unwrap());
        while !seen.contains("data: three") {
            let chunk = tokio::time::timeout(Duration::from_secs(5), stream.next())
                .await
                .unwrap()
                .unwrap();
            seen.push_str(std::str::from_utf8(&chunk).unwrap());
        }
        let at = |data: &str| seen.find(&format!("data: {data}\n")).unwrap();
        assert!(
            at("zero") < at("one") && at("one") < at("two") && at("two") < at("three"),
            "out of order: {seen}"
        );
    }

    /// A batch whose sync fails is refused to its publishers and never fanned out, and the
    /// log refuses every commit after it: nothing written since the failure can be trusted
    /// to be on disk.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_sync_refuses_its_batch_and_every_later_commit() {
        let (hub, log, syncs, _dir) = hub_on_held_log(|n| n == 1).await;
        syncs.release();
        assert_eq!(hub.publish(update("kept")).await.unwrap().seq, 1);
        syncs.release();
        let failed = hub.publish(update("lost")).await.unwrap_err();
        assert!(failed.to_string().contains("the disk is gone"), "{failed}");
        assert_eq!(log.head().await.unwrap(), 2, "the batch was committed");
        let refused = hub.publish(update("after")).await.unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("refused until Herald restarts"),
            "{refused}"
        );
        assert_eq!(log.head().await.unwrap(), 2, "a commit after the failure");
        assert_eq!(hub.head(), 1);
        assert!(hub.caught_up(2, Duration::from_millis(50)).await.is_err());
    }

    fn with_id(data: &str, id: &str) -> Update {
        Update {
            id: Some(id.into()),
            ..update(data)
        }
    }

    /// An id the log holds but has not made durable is answered, and found, only once it is
    /// durable; after its sync failed, a repeat of it is refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_id_the_log_holds_is_answered_only_once_it_is_durable() {
        let (hub, log, syncs, _dir) = hub_on_held_log(|n| n == 2).await;
        syncs.release();
        hub.publish(with_id("one", "id-1")).await.unwrap();
        let first = tokio::spawn({
            let hub = hub.clone();
            async move { hub.publish(with_id("two", "id-2")).await }
        });
        committed(&log, 2).await;
        let repeat = tokio::spawn({
            let hub = hub.clone();
            async move { hub.publish(with_id("two again", "id-2")).await }
        });
        let found = tokio::spawn({
            let hub = hub.clone();
            async move { hub.contains("id-2").await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!first.is_finished() && !repeat.is_finished() && !found.is_finished());
        syncs.release();
        assert_eq!(first.await.unwrap().unwrap().seq, 2);
        assert_eq!(repeat.await.unwrap().unwrap().seq, 2);
        assert!(found.await.unwrap().unwrap());
        assert_eq!(log.head().await.unwrap(), 2, "the repeat was stored again");

        // The next sync fails: the batch and a repeat of its id are refused.
        let lost = tokio::spawn({
            let hub = hub.clone();
            async move { hub.publish(with_id("three", "id-3")).await }
        });
        committed(&log, 3).await;
        syncs.release();
        assert!(lost.await.unwrap().is_err());
        assert!(hub.publish(with_id("three again", "id-3")).await.is_err());
        assert!(hub.contains("id-3").await.is_err());
        assert_eq!(hub.head(), 2);
    }
}
