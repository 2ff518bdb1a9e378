//! The sequencer: the one task that orders, stores and fans out updates.
//!
//! Publishers hand it [`PublishRequest`]s over a bounded channel. It takes them in batches
//! ([`gather`] lets more join while publishes arrive together), stores each batch in one log
//! transaction, and only after the commit pushes the records into the history, fans them out
//! and acknowledges their publishers, in `seq` order. With a shared log it only stores and
//! acknowledges; the follower fans out. Between batches it runs retention.

use std::{
    collections::HashMap,
    sync::{Arc, atomic::Ordering},
};

use tokio::{
    sync::{mpsc, oneshot},
    time::{Instant, MissedTickBehavior},
};
use tokio_util::sync::CancellationToken;

use super::{Hub, Published, TransactError};
use crate::{
    log::{Entry, LogError, Outcome, Step, Work},
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
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                received = requests.recv_many(&mut batch, config.max_batch) => {
                    if received == 0 {
                        break;
                    }
                    if received > 1 || last_batch > 1 {
                        gather(&mut requests, &mut batch, config.max_batch).await;
                    }
                    last_batch = batch.len();
                    head = self.commit(&mut batch, head, &mut memo).await;
                }
                _ = prune.tick() => self.prune(head).await,
            }
        }
        // Store what publishers already handed over, then end every stream.
        requests.close();
        while requests.recv_many(&mut batch, config.max_batch).await > 0 {
            head = self.commit(&mut batch, head, &mut memo).await;
        }
        self.close_all();
    }

    /// Stores one batch, then fans it out; returns the new head.
    async fn commit(&self, batch: &mut Vec<Request>, head: u64, memo: &mut Memo) -> u64 {
        if batch.iter().any(|r| matches!(r, Request::Work(_))) {
            return self.commit_work(batch, head, memo).await;
        }
        let mut publishes = batch
            .drain(..)
            .filter_map(|request| match request {
                Request::Publish(publish) => Some(publish),
                Request::Work(_) => None,
            })
            .collect();
        self.commit_publishes(&mut publishes, head, memo).await
    }

    /// Stores a batch of publishes, then fans it out; returns the new head.
    async fn commit_publishes(
        &self,
        batch: &mut Vec<PublishRequest>,
        head: u64,
        memo: &mut Memo,
    ) -> u64 {
        if self.shared.log.is_shared() {
            self.commit_shared(batch).await;
            return self
                .shared
                .registry
                .read()
                .expect("registry poisoned")
                .head
                .load(Ordering::Acquire);
        }
        // An id the log already holds is not stored again: its publisher is answered with
        // the position it has, as a shared log does.
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
                return head;
            }
        };
        // Take the batch apart rather than copy it: the entries (with their data) go to the
        // log, the records (with their encoded frames) to fan-out.
        let mut entries = Vec::with_capacity(batch.len());
        let mut records = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        let mut repeated = Vec::new();
        let mut chosen = HashMap::new();
        let mut next = head + 1;
        for request in batch.drain(..) {
            if let Some(&seq) = known.get(&request.entry.id) {
                let _ = request.reply.send(Ok(seq));
                continue;
            }
            if request.chosen_id {
                if let Some(&seq) = chosen.get(&request.entry.id) {
                    // Repeated within this batch: answered with the first one's position
                    // once that is stored.
                    repeated.push((request.reply, seq));
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
            records.push(Arc::new(record));
            replies.push(reply);
        }
        if entries.is_empty() {
            return head;
        }
        let stored = self.timed(self.shared.log.append(entries)).await;
        if let Err(error) = stored {
            tracing::error!(%error, updates = replies.len(), "event log append failed");
            let message = error.to_string();
            for reply in replies
                .into_iter()
                .chain(repeated.into_iter().map(|(r, _)| r))
            {
                let _ = reply.send(Err(message.clone()));
            }
            return self.resync_head(head).await;
        }
        let count = self.deliver(&records, memo);
        for (reply, record) in replies.into_iter().zip(&records) {
            let _ = reply.send(Ok(record.seq));
        }
        for (reply, seq) in repeated {
            let _ = reply.send(Ok(seq));
        }
        head + count
    }

    /// Stores a batch that holds work in one log transaction ([`EventLog::transact`]), then
    /// fans out what it stored, in order, and answers each request; returns the new head.
    async fn commit_work(&self, batch: &mut Vec<Request>, head: u64, memo: &mut Memo) -> u64 {
        if !self.shared.log.runs_work() {
            for request in batch.drain(..) {
                match request {
                    Request::Publish(publish) => {
                        let _ = publish
                            .reply
                            .send(Err("the event log cannot run work".into()));
                    }
                    Request::Work(work) => {
                        let _ = work.reply.send(Err(TransactError::Unavailable(
                            "the event log cannot run work".into(),
                        )));
                    }
                }
            }
            return head;
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
                return head;
            }
        };
        // What each stored step answers, in the steps' order.
        enum Waiting {
            Publish(oneshot::Sender<Result<u64, String>>, Record),
            Work(oneshot::Sender<Result<Vec<Published>, TransactError>>),
        }
        let mut steps = Vec::with_capacity(batch.len());
        let mut waiting = Vec::with_capacity(batch.len());
        let mut repeated = Vec::new();
        let mut chosen = HashMap::new();
        for request in batch.drain(..) {
            match request {
                Request::Publish(publish) => {
                    if let Some(&seq) = known.get(&publish.entry.id) {
                        let _ = publish.reply.send(Ok(seq));
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
        let transacted = self.timed(self.shared.log.transact(steps, head + 1)).await;
        let transacted = match transacted {
            Ok(transacted) => transacted,
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
                for (reply, _) in repeated {
                    let _ = reply.send(Err(message.clone()));
                }
                return self.resync_head(head).await;
            }
        };
        let entries = transacted.entries;
        let mut records = Vec::with_capacity(entries.len());
        let mut answers = Vec::with_capacity(waiting.len());
        let mut step_seqs = Vec::with_capacity(waiting.len());
        for (waiting, outcome) in waiting.into_iter().zip(transacted.outcomes) {
            match (waiting, outcome) {
                (Waiting::Publish(reply, mut record), Outcome::Stored(range)) => {
                    record.seq = entries[range.start].seq;
                    step_seqs.push(Some(record.seq));
                    answers.push(Answer::Publish(reply, record.seq));
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
                    let _ = reply.send(Err(error.to_string()));
                }
            }
        }
        drop(entries);
        let count = self.deliver(&records, memo);
        for answer in answers {
            match answer {
                Answer::Publish(reply, seq) => {
                    let _ = reply.send(Ok(seq));
                }
                Answer::Work(reply, result) => {
                    let _ = reply.send(result);
                }
            }
        }
        for (reply, step) in repeated {
            let answer = step_seqs
                .get(step)
                .copied()
                .flatten()
                .ok_or_else(|| "the first publish of this id failed".to_owned());
            let _ = reply.send(answer);
        }
        head + count
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

    /// Runs `commit`, a write to the log, timed into the commit histogram.
    async fn timed<T>(&self, commit: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let done = commit.await;
        self.shared
            .metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        done
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
        let stored = self.timed(self.shared.log.append(entries)).await;
        match stored {
            Ok(seqs) => {
                self.shared
                    .metrics
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

    /// After a failed append, asks the log where it stands: a commit can fail after the
    /// data reached the disk (an fsync error), and reusing those positions would make every
    /// later append fail too. Such updates were refused to their publishers but are in the
    /// log; replay serves them, live delivery does not.
    async fn resync_head(&self, head: u64) -> u64 {
        match self.shared.log.head().await {
            Ok(stored) if stored > head => {
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
                stored
            }
            _ => head,
        }
    }
}

/// An answer the sequencer sends once a batch is fanned out.
enum Answer {
    Publish(oneshot::Sender<Result<u64, String>>, u64),
    Work(
        oneshot::Sender<Result<Vec<Published>, TransactError>>,
        Result<Vec<Published>, TransactError>,
    ),
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
/// A commit costs about the same for one update as for a hundred (one fsync), so bigger
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
