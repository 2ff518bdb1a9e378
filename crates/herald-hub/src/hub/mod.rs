//! The hub: sequencing publishes into the log, fanning them out, and registering
//! subscribers so that replay hands over to live delivery with no gap and no duplicate.
//!
//! One task, the sequencer, owns the order of updates. It takes publishes from a bounded
//! channel in batches, stores each batch in one log transaction, and only then pushes the
//! batch into the history and into subscriber queues, under the registry's read lock. A new
//! subscriber registers under the write lock and reads the head position there, so every
//! update is either at or below that head (replayed from history or log) or above it
//! (queued live): the hand-over is exact.
//!
//! # Layout
//!
//! - this file: [`Hub`] and its public API (start, publish, subscribe, look-ups), with
//!   [`SubscribeRequest`], [`ReplayFilter`] and [`Published`].
//! - `config`: [`HubConfig`] and the default selector budgets.
//! - `errors`: [`PublishError`] and [`SubscribeError`].
//! - `registry`: who is subscribed, and the registration that reads the head.
//! - `interner`: interned selectors and claim sets, charged to the selector budgets.
//! - `sequencer`: the task that batches, stores and acknowledges publishes.
//! - `fanout`: pushing stored records into subscriber queues.
//! - `follower`: with a shared log, the task that fans out what the log holds.
//! - `retention`: pruning the history and the log.
//! - `heartbeat`: comment frames on idle streams.

mod config;
mod errors;
mod fanout;
mod follower;
mod heartbeat;
mod interner;
mod registry;
mod retention;
mod sequencer;

pub use config::{HubConfig, SELECTOR_BUDGET, SELECTOR_BUDGET_TOTAL};
pub use errors::{PublishError, SubscribeError, TransactError};
pub use heartbeat::{HEARTBEAT_MIN_TICK, heartbeat_slices};
pub(crate) use interner::Compiled;

use std::sync::{
    Arc, Mutex, RwLock,
    atomic::{AtomicU64, AtomicUsize, Ordering},
};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use self::{
    interner::{COMPILE_CONCURRENCY, Interner},
    registry::Registry,
    sequencer::{PublishRequest, Request, WorkRequest},
};
use crate::{
    history::History,
    log::{Entry, EventLog, LogConnection, LogError, Work, WorkError},
    matcher::Matcher,
    metrics::HubMetrics,
    subscriber::{Filter, Subscriber},
    subscription::{REPLAY_PAGE_BYTES, Resume, Subscription},
    update::{EARLIEST, Record, Update, now_ms},
};

/// A server's own rule on which records a resume replays ([`SubscribeRequest::replay_filter`]).
#[derive(Clone)]
pub struct ReplayFilter(pub Arc<dyn Fn(&Record) -> bool + Send + Sync>);

impl std::fmt::Debug for ReplayFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReplayFilter")
    }
}

/// What a subscriber asks for.
#[derive(Clone, Debug, Default)]
pub struct SubscribeRequest {
    /// What the subscriber asked for: 0.x `topic` selectors, 1.0 exact topics or URL
    /// Patterns. It receives an update when one of them matches one of the update's topics.
    pub topics: Vec<Matcher>,
    /// What its token lets it read, if it presented one: a private update reaches it only
    /// when one of these matches one of the update's topics.
    pub claims: Option<Vec<Matcher>>,
    /// `Last-Event-ID` (or `lastEventID`): resume after this update, `earliest` for all
    /// retained updates. It wins over [`Self::after`]: it is what a client that already
    /// received events resumes from.
    pub last_event_id: Option<String>,
    /// Start after this log position (a `seq`, as [`Hub::head`] gives it), with the same
    /// replay as a resume from an id. A position whose next records retention removed
    /// starts like an unknown id: a `reset` event, then live updates. A position beyond the
    /// log's head is refused ([`SubscribeError::FuturePosition`]). Ignored when
    /// [`Self::last_event_id`] is given.
    pub after: Option<u64>,
    /// Decides, for each record a resume would replay, whether it is replayed. A server
    /// built on the hub uses it where access began at some position: a new member is not
    /// replayed what happened before they could see it. Live delivery is not filtered.
    pub replay_filter: Option<ReplayFilter>,
    /// Overrides [`HubConfig::max_selectors`] for subscriptions the server builds itself
    /// (an app stream covers every workspace its user may read), never for a client's own.
    pub max_selectors: Option<usize>,
    /// Lets updates on reserved topics ([`crate::RESERVED_PREFIX`]) reach this subscription.
    /// For the streams a server builds itself; a subscription made from a client's own
    /// selectors must leave it unset, so that no selector or claim reaches them.
    pub reserved: bool,
}

/// An acknowledged publish.
#[derive(Clone, Debug)]
pub struct Published {
    /// The id subscribers see.
    pub id: Arc<str>,
    /// Its position in the log.
    pub seq: u64,
}

/// The hub. Cheap to clone; every clone is the same hub.
#[derive(Clone, Debug)]
pub struct Hub {
    pub(crate) shared: Arc<Shared>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: HubConfig,
    pub(crate) log: Arc<dyn EventLog>,
    /// Who is subscribed. A std lock: it is held only for short, non-async sections (fan-out
    /// of one batch, one registration), never across an await or a socket write.
    registry: RwLock<Registry>,
    /// The newest records, for replay without touching the log.
    pub(crate) history: Mutex<History>,
    publish_tx: mpsc::Sender<Request>,
    /// Interned selectors and claim sets, so equal ones share one compiled regex and one
    /// memo slot during fan-out. Held only to look up and insert: selectors are compiled
    /// outside it.
    interner: Mutex<Interner>,
    /// Bytes of compiled templates alive in the hub ([`HubConfig::selector_budget_total`]).
    selector_bytes: Arc<AtomicUsize>,
    /// Templates compiled at once ([`COMPILE_CONCURRENCY`]).
    compile_permits: Arc<tokio::sync::Semaphore>,
    next_subscriber: AtomicU64,
    pub(crate) metrics: HubMetrics,
    /// `retry:` hint, encoded once.
    pub(crate) retry_frame: Bytes,
    /// What [`Hub::before_closing`] asked to run before an update that ends streams is
    /// fanned out. Read only for such updates, which are rare.
    pub(crate) before_closing: RwLock<Vec<ClosingHook>>,
}

/// The hook of [`Hub::before_closing`].
pub(crate) struct ClosingHook(pub(crate) Box<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for ClosingHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClosingHook")
    }
}

impl Hub {
    /// Opens the hub on `log`: warms the history from it and starts the sequencer and the
    /// heartbeat on `tracker`. They stop when `shutdown` is cancelled, after storing what
    /// was already submitted; open streams then end.
    ///
    /// # Errors
    ///
    /// When the log cannot be read.
    pub async fn start(
        config: HubConfig,
        log: Arc<dyn EventLog>,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Result<Self, LogError> {
        let head = log.head().await?;
        let mut history = History::new(config.history_capacity, config.history_bytes);
        // In pages bounded like a replay's, up to the head: the history ends at the head, and
        // its byte bound evicts what does not fit.
        let warm = u64::try_from(config.history_capacity).unwrap_or(u64::MAX);
        let mut after = head.saturating_sub(warm);
        while after < head && config.history_capacity > 0 {
            let page = log
                .read(after, head, config.history_capacity, REPLAY_PAGE_BYTES)
                .await?;
            let Some(last) = page.last().map(|r| r.seq) else {
                break;
            };
            for record in page {
                if history.next_seq().is_some_and(|next| next != record.seq) {
                    history.clear(); // A hole that retention left: start a new run.
                }
                history.push(Arc::new(record));
            }
            after = last;
        }
        let (publish_tx, publish_rx) = mpsc::channel(config.publish_queue.max(1));
        let retry_frame =
            herald_sse::retry(u64::try_from(config.retry_hint.as_millis()).unwrap_or(u64::MAX));
        let hub = Self {
            shared: Arc::new(Shared {
                log,
                registry: RwLock::new(Registry {
                    head: AtomicU64::new(head),
                    ..Registry::default()
                }),
                history: Mutex::new(history),
                publish_tx,
                interner: Mutex::default(),
                selector_bytes: Arc::default(),
                compile_permits: Arc::new(tokio::sync::Semaphore::new(COMPILE_CONCURRENCY)),
                next_subscriber: AtomicU64::new(1),
                metrics: HubMetrics::default(),
                retry_frame,
                before_closing: RwLock::default(),
                config,
            }),
        };
        if hub.shared.log.is_shared() {
            // Other nodes append too: fan out what the log says, in its order.
            tracker.spawn(hub.clone().follower(head, shutdown.clone()));
        }
        tracker.spawn(hub.clone().sequencer(publish_rx, head, shutdown.clone()));
        if let Some(every) = hub.shared.config.heartbeat {
            tracker.spawn(hub.clone().heartbeat(every, shutdown));
        }
        Ok(hub)
    }

    /// The hub's counters, for export.
    pub fn metrics(&self) -> &HubMetrics {
        &self.shared.metrics
    }

    /// Checks that the log answers and takes appends; for readiness probes.
    ///
    /// # Errors
    ///
    /// The log's error when it does not.
    pub async fn check_log(&self) -> Result<(), LogError> {
        self.shared.log.check().await
    }

    /// The configuration the hub runs with.
    pub fn config(&self) -> &HubConfig {
        &self.shared.config
    }

    /// Stores `update` durably, then delivers it to every matching subscriber.
    ///
    /// # Errors
    ///
    /// [`PublishError::Invalid`] when the update breaks a limit or cannot be framed;
    /// [`PublishError::Unavailable`] when the log failed or the hub is stopping. In both
    /// cases nothing was acknowledged.
    pub async fn publish(&self, update: Update) -> Result<Published, PublishError> {
        self.enqueue(update).await?.await
    }

    /// Hands `update` to the sequencer and returns a future of its acknowledgement.
    ///
    /// Updates enqueued one after another, by one task or under one lock, are sequenced in
    /// that order: a caller that must keep its own order (the app, relaying changes in
    /// commit order) enqueues under its lock and awaits the acknowledgement outside it.
    ///
    /// # Errors
    ///
    /// As [`Hub::publish`].
    pub async fn enqueue(
        &self,
        mut update: Update,
    ) -> Result<impl Future<Output = Result<Published, PublishError>> + Send + 'static, PublishError>
    {
        update.validate(&self.shared.config.limits)?;
        let chosen_id = update.id.is_some();
        let id = take_id(&mut update);
        let created_at_ms = now_ms();
        // Encode here, on the publisher's task, so the sequencer only stores and fans out.
        let record = Record::new(0, id.clone(), &update, created_at_ms);
        let entry = Entry {
            seq: 0,
            id: id.clone(),
            update,
            created_at_ms,
        };
        let (reply, acked) = oneshot::channel();
        let request = PublishRequest {
            chosen_id,
            entry,
            record,
            reply,
        };
        self.shared
            .publish_tx
            .send(Request::Publish(request))
            .await
            .map_err(|_| stopping())?;
        Ok(async move {
            match acked.await.map_err(|_| stopping())? {
                Ok(seq) => Ok(Published { id, seq }),
                Err(error) => Err(PublishError::Unavailable(error)),
            }
        })
    }

    /// Runs `hook` on the task that fans out, before each update that ends streams (one
    /// with `closes`) reaches any subscriber: stored here or, with a shared log, by any
    /// node. A server that keeps what such an update revokes (a session, a token) forgets
    /// it there, so that no client sees its stream end and then its credential accepted.
    /// The hook must be quick: fan-out waits for it.
    pub fn before_closing(&self, hook: impl Fn() + Send + Sync + 'static) {
        self.shared
            .before_closing
            .write()
            .expect("hooks poisoned")
            .push(ClosingHook(Box::new(hook)));
    }

    /// Whether [`Hub::transact`] works: the log runs work in its transactions.
    pub fn runs_work(&self) -> bool {
        self.shared.log.runs_work()
    }

    /// Runs `work` on the log's database inside the transaction of the sequencer's next
    /// batch, and stores the updates it returns in that same transaction: the work's
    /// changes and its updates commit together, with the batch's other publishes and work,
    /// or not at all. A work that fails (or breaks an update limit) is rolled back alone.
    /// The updates are then fanned out like publishes; the answer gives their positions.
    ///
    /// The work runs on the log's writer, inside the batch: it must only use the connection,
    /// whose queries it makes are answered at once, and it has
    /// [`WORK_BUDGET`](crate::log::WORK_BUDGET) to finish.
    ///
    /// # Errors
    ///
    /// [`TransactError::Work`] with the work's own error when it failed;
    /// [`TransactError::Unavailable`] when the transaction failed, the log runs no work
    /// ([`Hub::runs_work`]) or the hub is stopping. In every case nothing was stored.
    pub async fn transact<F>(&self, work: F) -> Result<Vec<Published>, TransactError>
    where
        F: for<'c> FnOnce(
                &'c mut LogConnection,
            )
                -> futures::future::BoxFuture<'c, Result<Vec<Update>, WorkError>>
            + Send
            + 'static,
    {
        if !self.runs_work() {
            return Err(TransactError::Unavailable(
                "the event log cannot run work".into(),
            ));
        }
        let limits = self.shared.config.limits.clone();
        let work: Work = Box::new(move |conn| {
            Box::pin(async move {
                let updates = work(conn).await?;
                let created_at_ms = now_ms();
                let mut entries = Vec::with_capacity(updates.len());
                for mut update in updates {
                    update.validate(&limits)?;
                    entries.push(Entry {
                        seq: 0,
                        id: take_id(&mut update),
                        update,
                        created_at_ms,
                    });
                }
                Ok(entries)
            })
        });
        let (reply, answer) = oneshot::channel();
        self.shared
            .publish_tx
            .send(Request::Work(WorkRequest { work, reply }))
            .await
            .map_err(|_| TransactError::Unavailable(stopping().to_string()))?;
        answer
            .await
            .map_err(|_| TransactError::Unavailable(stopping().to_string()))?
    }

    /// Registers a subscriber and returns its stream of SSE bytes: the `retry:` hint, then
    /// what it missed since `last_event_id` or `after` (or a `reset` event when that id is
    /// no longer known, or the records after that position are gone), then live updates.
    ///
    /// # Errors
    ///
    /// When the selectors are invalid or too many, the position is beyond the log's head,
    /// or the log cannot resolve the id.
    pub async fn subscribe(
        &self,
        request: SubscribeRequest,
    ) -> Result<Subscription, SubscribeError> {
        let config = &self.shared.config;
        let max_selectors = request.max_selectors.unwrap_or(config.max_selectors);
        if request.topics.is_empty() {
            return Err(SubscribeError::NoTopic);
        }
        if request.topics.len() > max_selectors {
            return Err(SubscribeError::TooManySelectors {
                count: request.topics.len(),
                limit: max_selectors,
            });
        }
        if let Some(claims) = &request.claims
            && claims.len() > max_selectors
        {
            return Err(SubscribeError::TooManySelectors {
                count: claims.len(),
                limit: max_selectors,
            });
        }
        // One budget for the topics and the claims of this subscription.
        let mut spent = 0;
        let selectors = self.intern_all(&request.topics, &mut spent).await?;
        let claims = match request.claims {
            None => None,
            Some(claims) => Some(self.intern_claims(claims, &mut spent).await?),
        };
        let resume = match (request.last_event_id.as_deref(), request.after) {
            (None | Some(""), None) => None,
            (None | Some(""), Some(after)) => {
                self.check_position(after).await?;
                Some(Resume::Position(after))
            }
            (Some(EARLIEST), _) => Some(Resume::After(0)),
            (Some(id), _) => Some(match self.latest_seq_of(id).await? {
                Some(seq) => Resume::After(seq),
                None => Resume::Unknown(id.into()),
            }),
        };

        let filter = Filter {
            selectors,
            claims,
            reserved: request.reserved,
        };
        let id = self.shared.next_subscriber.fetch_add(1, Ordering::Relaxed);
        let subscriber = Arc::new(Subscriber::new(id, filter, config.queue));
        let head = self.register(&subscriber);
        self.shared.metrics.subscribers.inc();
        if resume.is_some() {
            self.shared.metrics.replays.inc();
        }
        let head_id = self
            .shared
            .history
            .lock()
            .expect("history poisoned")
            .id_at(head);
        Ok(Subscription::new(
            self.clone(),
            subscriber,
            resume,
            head,
            head_id,
            request.replay_filter,
        ))
    }

    /// The position of the newest update fanned out on this node: every update at or below
    /// it has reached the subscribers registered before it, every later one will. A read
    /// that takes it before it starts is consistent with it in the conservative sense: a
    /// subscription with [`SubscribeRequest::after`] set to it misses no change the read did
    /// not see (it may repeat some that the read saw).
    pub fn head(&self) -> u64 {
        self.shared
            .registry
            .read()
            .expect("registry poisoned")
            .head
            .load(Ordering::Acquire)
    }

    /// The id of the newest update fanned out on this node ([`Hub::head`]), for a client to
    /// resume after with `Last-Event-ID`: from memory, else from the log; [`EARLIEST`] when
    /// there is none (or the log no longer holds it), which replays what the log retains and
    /// so loses nothing either.
    ///
    /// # Errors
    ///
    /// When the log cannot be read.
    pub async fn head_id(&self) -> Result<String, LogError> {
        let head = self.head();
        if head == 0 {
            return Ok(EARLIEST.to_owned());
        }
        let in_memory = self
            .shared
            .history
            .lock()
            .expect("history poisoned")
            .id_at(head);
        if let Some(id) = in_memory {
            return Ok(id.to_string());
        }
        let records = self.shared.log.read(head - 1, head, 1, 0).await?;
        Ok(records
            .into_iter()
            .find(|r| r.seq == head)
            .map_or_else(|| EARLIEST.to_owned(), |r| r.id.to_string()))
    }

    /// Refuses a position beyond the log's head. This node's head may trail a shared log's
    /// (its follower has not fanned out the newest yet): the log is asked before refusing.
    async fn check_position(&self, after: u64) -> Result<(), SubscribeError> {
        if after <= self.head() {
            return Ok(());
        }
        let head = self.shared.log.head().await?;
        if after <= head {
            return Ok(());
        }
        Err(SubscribeError::FuturePosition { after, head })
    }

    /// The position of the latest update that carries `id`, if the log still holds it.
    ///
    /// # Errors
    ///
    /// When the log cannot be read.
    pub async fn position(&self, id: &str) -> Result<Option<u64>, LogError> {
        self.latest_seq_of(id).await
    }

    /// Whether the log holds an update with `id`: lets a relay that may have published an
    /// update before a crash publish it again only if it is missing.
    ///
    /// # Errors
    ///
    /// When the log cannot be read.
    pub async fn contains(&self, id: &str) -> Result<bool, LogError> {
        Ok(self.latest_seq_of(id).await?.is_some())
    }

    async fn latest_seq_of(&self, id: &str) -> Result<Option<u64>, LogError> {
        let in_memory = self
            .shared
            .history
            .lock()
            .expect("history poisoned")
            .latest_seq_of(id);
        match in_memory {
            Some(seq) => Ok(Some(seq)),
            None => self.shared.log.latest_seq_of(id).await,
        }
    }

    /// How many subscribers are registered.
    pub fn subscriber_count(&self) -> usize {
        self.shared
            .registry
            .read()
            .expect("registry poisoned")
            .all
            .len()
    }
}

/// The id `update` carries, taken out of it, or a new one. New ids are time-ordered (v7),
/// so the log's id index grows at its right edge: a random id would dirty a different index
/// page per update, and each is written to the WAL.
fn take_id(update: &mut Update) -> Arc<str> {
    match update.id.take() {
        Some(id) => id.into(),
        None => format!("urn:uuid:{}", uuid::Uuid::now_v7()).into(),
    }
}

fn stopping() -> PublishError {
    PublishError::Unavailable("the hub is shutting down".into())
}
