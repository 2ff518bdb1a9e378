//! The hub: sequencing publishes into the log, fanning them out, and registering
//! subscribers so that replay hands over to live delivery with no gap and no duplicate.
//!
//! One task, the sequencer, owns the order of updates. It takes publishes from a bounded
//! channel in batches, stores each batch in one log transaction, and only then pushes the
//! batch into the history and into subscriber queues, under the registry's read lock. A new
//! subscriber registers under the write lock and reads the head position there, so every
//! update is either at or below that head (replayed from history or log) or above it
//! (queued live): the hand-over is exact.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, RwLock, Weak,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use tokio::{
    sync::{mpsc, oneshot},
    time::{Instant, MissedTickBehavior},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    history::History,
    log::{Entry, EventLog, LogError},
    metrics::HubMetrics,
    selector::{Selector, SelectorError},
    subscriber::{ClaimSet, Filter, Memo, Pushed, QueueLimits, Subscriber},
    subscription::{REPLAY_PAGE_BYTES, Resume, Subscription},
    update::{EARLIEST, InvalidUpdate, Record, Update, UpdateLimits, now_ms},
};

/// How the hub behaves. Every field has a default that suits a single node.
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// Records kept in memory for fast replay.
    pub history_capacity: usize,
    /// Bytes of records ([`Record::size`]) kept in memory for fast replay; the oldest leave
    /// first when either this or `history_capacity` is reached.
    pub history_bytes: usize,
    /// Most records the log retains; older ones are pruned. `None`: no count limit.
    pub retention_count: Option<u64>,
    /// Oldest record the log retains. `None`: no age limit.
    pub retention_age: Option<Duration>,
    /// How often retention runs.
    pub prune_interval: Duration,
    /// Bounds on each subscriber's queue.
    pub queue: QueueLimits,
    /// Interval of comment heartbeats on idle streams; `None` disables them.
    pub heartbeat: Option<Duration>,
    /// The `retry:` hint each stream starts with.
    pub retry_hint: Duration,
    /// Limits on each update.
    pub limits: UpdateLimits,
    /// Most topic selectors in one subscription.
    pub max_selectors: usize,
    /// Most bytes of compiled templates ([`Selector::cost`]) one subscription may hold,
    /// its claims' included. A client chooses its templates, and their matching runs on
    /// the sequencer for every update: the budget bounds what one subscriber makes every
    /// publish pay. Over it, the subscription is refused ([`SubscribeError::OverBudget`]).
    pub selector_budget: usize,
    /// Most bytes of compiled templates the whole hub holds (each distinct template counted
    /// once). Bounds the memory of all selectors and the matching work of each update, whoever
    /// subscribes; over it, new templates are refused ([`SubscribeError::SelectorsFull`])
    /// until subscriptions end.
    pub selector_budget_total: usize,
    /// Publishes waiting for the sequencer. When full, publishers wait: backpressure, not
    /// unbounded memory.
    pub publish_queue: usize,
    /// Most publishes stored in one transaction.
    pub max_batch: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            history_capacity: 10_000,
            history_bytes: 64 << 20,
            retention_count: Some(100_000),
            retention_age: Some(Duration::from_secs(24 * 3600)),
            prune_interval: Duration::from_secs(5),
            queue: QueueLimits::default(),
            heartbeat: Some(Duration::from_secs(15)),
            retry_hint: Duration::from_secs(3),
            limits: UpdateLimits::default(),
            max_selectors: 64,
            selector_budget: SELECTOR_BUDGET,
            selector_budget_total: SELECTOR_BUDGET_TOTAL,
            publish_queue: 16_384,
            max_batch: 1_024,
        }
    }
}

/// Default of [`HubConfig::selector_budget`], in bytes of regex source ([`Selector::cost`]):
/// 64 templates such as `https://example.com/books/{id}/reviews{/rid}{?page,size}` (about
/// 400 each) fit with room to spare; of the costliest templates the selector limits allow
/// (a query expression of 64 exploded variables, cost about 21,000, 45 ms to compile and
/// about 570 KiB of memory each) three do.
pub const SELECTOR_BUDGET: usize = 64 * 1024;

/// Default of [`HubConfig::selector_budget_total`]: about 10,000 distinct everyday
/// templates, or 200 of the costliest, which hold about 110 MiB.
pub const SELECTOR_BUDGET_TOTAL: usize = 4 << 20;

/// A publish the hub refused.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The update itself is wrong; nothing was stored.
    #[error(transparent)]
    Invalid(#[from] InvalidUpdate),
    /// The log could not store it, or the hub is shutting down; nothing was acknowledged.
    #[error("the update was not stored: {0}")]
    Unavailable(String),
}

/// A subscription the hub refused.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    /// No `topic` selector.
    #[error("at least one topic selector is required")]
    NoTopic,
    /// Too many selectors.
    #[error("too many topic selectors: {count} (the limit is {limit})")]
    TooManySelectors {
        /// How many were given.
        count: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A selector that does not parse.
    #[error("invalid topic selector {selector:?}: {error}")]
    InvalidSelector {
        /// The selector as given.
        selector: String,
        /// What is wrong with it.
        error: SelectorError,
    },
    /// The subscription's templates cost more than [`HubConfig::selector_budget`].
    #[error(
        "the topic selectors are too costly: their compiled templates exceed {limit} bytes \
         (use fewer, shorter or simpler templates)"
    )]
    OverBudget {
        /// The configured budget.
        limit: usize,
    },
    /// The hub holds [`HubConfig::selector_budget_total`] bytes of compiled templates
    /// already; the subscription may succeed once others end.
    #[error("the hub cannot take more topic templates now; retry later")]
    SelectorsFull,
    /// The log could not be read to resolve `Last-Event-ID`.
    #[error("history is unavailable: {0}")]
    Unavailable(#[from] LogError),
}

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
    /// Topic selectors: exact topics, `*`, or URI templates.
    pub topics: Vec<String>,
    /// The selectors of the subscriber's `mercure.subscribe` claim, if it presented one;
    /// they decide which private updates it receives.
    pub claims: Option<Vec<String>>,
    /// `Last-Event-ID` (or `lastEventID`): resume after this update, `earliest` for all
    /// retained updates.
    pub last_event_id: Option<String>,
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
    publish_tx: mpsc::Sender<PublishRequest>,
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
}

#[derive(Debug, Default)]
struct Registry {
    /// The `seq` of the newest update fanned out. Written under the read lock by the
    /// sequencer (the only writer), read under the write lock by registration.
    head: AtomicU64,
    all: HashMap<u64, Arc<Subscriber>>,
    /// Subscribers whose selectors are all exact topics, by topic.
    by_topic: HashMap<Box<str>, HashMap<u64, Arc<Subscriber>>>,
    /// Subscribers with a `*` or template selector; checked against every update.
    patterns: HashMap<u64, Arc<Subscriber>>,
    /// Set at shutdown: late registrations are closed at once instead of hanging forever.
    closed: bool,
}

#[derive(Debug, Default)]
struct Interner {
    selectors: HashMap<Box<str>, Weak<Compiled>>,
    claims: HashMap<Box<[Box<str>]>, Weak<ClaimSet>>,
}

/// A selector as the hub holds it: interned, with its compiled cost charged to the hub's
/// budget for as long as any subscriber holds it.
#[derive(Debug)]
pub(crate) struct Compiled {
    selector: Selector,
    /// What it was charged ([`Selector::cost`]); given back when the last holder drops it.
    charged: usize,
    budget: Arc<AtomicUsize>,
}

impl std::ops::Deref for Compiled {
    type Target = Selector;

    fn deref(&self) -> &Selector {
        &self.selector
    }
}

impl Drop for Compiled {
    fn drop(&mut self) {
        self.budget.fetch_sub(self.charged, Ordering::Relaxed);
    }
}

/// Templates compiled at the same time, by all subscribers together. Compiling is CPU work
/// that subscribers cause; one at a time leaves the runtime's workers the other cores.
const COMPILE_CONCURRENCY: usize = 1;

/// Interned entries are weak; sweep the dead ones when the map doubles past this.
const INTERNER_SWEEP_MIN: usize = 1024;

#[derive(Debug)]
struct PublishRequest {
    /// Whether the publisher chose the id: only such an id can already be in the log.
    chosen_id: bool,
    entry: Entry,
    record: Record,
    reply: oneshot::Sender<Result<u64, String>>,
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

    /// Checks that the log answers; for readiness probes.
    ///
    /// # Errors
    ///
    /// The log's error when it does not.
    pub async fn check_log(&self) -> Result<(), LogError> {
        self.shared.log.head().await.map(|_| ())
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
        let id: Arc<str> = match update.id.take() {
            Some(id) => id.into(),
            // Time-ordered (v7), so the log's id index grows at its right edge: a random id
            // would dirty a different index page per update, and each is written to the WAL.
            None => format!("urn:uuid:{}", uuid::Uuid::now_v7()).into(),
        };
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
            .send(request)
            .await
            .map_err(|_| stopping())?;
        Ok(async move {
            match acked.await.map_err(|_| stopping())? {
                Ok(seq) => Ok(Published { id, seq }),
                Err(error) => Err(PublishError::Unavailable(error)),
            }
        })
    }

    /// Registers a subscriber and returns its stream of SSE bytes: the `retry:` hint, then
    /// what it missed since `last_event_id` (or a `reset` event when that id is no longer
    /// known), then live updates.
    ///
    /// # Errors
    ///
    /// When the selectors are invalid or too many, or the log cannot resolve the id.
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
        let resume = match request.last_event_id.as_deref() {
            None | Some("") => None,
            Some(EARLIEST) => Some(Resume::After(0)),
            Some(id) => Some(match self.latest_seq_of(id).await? {
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

    /// Adds the subscriber to the registry; returns the head at that instant.
    fn register(&self, subscriber: &Arc<Subscriber>) -> u64 {
        let mut registry = self.shared.registry.write().expect("registry poisoned");
        let id = subscriber.id;
        registry.all.insert(id, subscriber.clone());
        if subscriber.filter.is_exact() {
            for selector in &subscriber.filter.selectors {
                registry
                    .by_topic
                    .entry(selector.as_str().into())
                    .or_default()
                    .insert(id, subscriber.clone());
            }
        } else {
            registry.patterns.insert(id, subscriber.clone());
        }
        if registry.closed {
            subscriber.close();
        }
        registry.head.load(Ordering::Acquire)
    }

    /// Removes a subscriber; called when its stream is dropped.
    pub(crate) fn unregister(&self, subscriber: &Subscriber) {
        let mut registry = self.shared.registry.write().expect("registry poisoned");
        if registry.all.remove(&subscriber.id).is_none() {
            return;
        }
        if subscriber.filter.is_exact() {
            for selector in &subscriber.filter.selectors {
                if let Some(subs) = registry.by_topic.get_mut(selector.as_str()) {
                    subs.remove(&subscriber.id);
                    if subs.is_empty() {
                        registry.by_topic.remove(selector.as_str());
                    }
                }
            }
        } else {
            registry.patterns.remove(&subscriber.id);
        }
        drop(registry);
        self.shared.metrics.subscribers.dec();
    }

    /// Interns `sources`, compiling those not interned yet outside every lock, and adds
    /// their cost to `spent`, which must stay within [`HubConfig::selector_budget`].
    async fn intern_all(
        &self,
        sources: &[String],
        spent: &mut usize,
    ) -> Result<Box<[Arc<Compiled>]>, SubscribeError> {
        let config = &self.shared.config;
        let mut found: Vec<Option<Arc<Compiled>>> = {
            let interner = self.shared.interner.lock().expect("interner poisoned");
            sources
                .iter()
                .map(|source| {
                    interner
                        .selectors
                        .get(source.as_str())
                        .and_then(Weak::upgrade)
                })
                .collect()
        };
        for compiled in found.iter().flatten() {
            *spent += compiled.charged;
        }
        if *spent > config.selector_budget {
            return Err(SubscribeError::OverBudget {
                limit: config.selector_budget,
            });
        }
        // What is missing is priced first, which costs microseconds, so a subscription over
        // its budget is refused before anything is compiled.
        let mut first_of: HashMap<&str, usize> = HashMap::new();
        for (index, source) in sources.iter().enumerate() {
            if found[index].is_some() || first_of.contains_key(source.as_str()) {
                continue;
            }
            first_of.insert(source, index);
            *spent +=
                Selector::cost_of(source).map_err(|error| SubscribeError::InvalidSelector {
                    selector: source.clone(),
                    error,
                })?;
        }
        if *spent > config.selector_budget {
            return Err(SubscribeError::OverBudget {
                limit: config.selector_budget,
            });
        }
        let mut fresh = Vec::with_capacity(first_of.len());
        for &index in first_of.values() {
            let source = &sources[index];
            let parsed = if source.contains('{') {
                // A template: compiling one can take tens of milliseconds. It runs on the
                // blocking pool, so no runtime worker waits for it, one at a time, so that
                // however many subscribers compile at once the workers keep a core. The
                // compile holds the permit itself: a client that gives up while it runs
                // cannot start another beside it.
                let permit = self
                    .shared
                    .compile_permits
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the compile semaphore is never closed");
                let owned = source.clone();
                tokio::task::spawn_blocking(move || {
                    let parsed = Selector::parse(&owned);
                    drop(permit);
                    parsed
                })
                .await
                .expect("compiling a selector does not panic")
            } else {
                Selector::parse(source)
            };
            let selector = parsed.map_err(|error| SubscribeError::InvalidSelector {
                selector: source.clone(),
                error,
            })?;
            fresh.push((index, selector));
        }
        if !fresh.is_empty() {
            let mut interner = self.shared.interner.lock().expect("interner poisoned");
            for (index, selector) in fresh {
                found[index] = Some(interner.insert(selector, &self.shared)?);
            }
        }
        Ok((0..sources.len())
            .map(|index| {
                let first = first_of.get(sources[index].as_str()).copied();
                found[index]
                    .clone()
                    .or_else(|| first.and_then(|first| found[first].clone()))
                    .expect("every distinct source was interned")
            })
            .collect())
    }

    async fn intern_claims(
        &self,
        sources: Vec<String>,
        spent: &mut usize,
    ) -> Result<Arc<ClaimSet>, SubscribeError> {
        let key: Box<[Box<str>]> = sources.iter().map(|s| s.as_str().into()).collect();
        let existing = self
            .shared
            .interner
            .lock()
            .expect("interner poisoned")
            .claims
            .get(&key)
            .and_then(Weak::upgrade);
        if let Some(set) = existing {
            *spent += set.selectors.iter().map(|c| c.charged).sum::<usize>();
            if *spent > self.shared.config.selector_budget {
                return Err(SubscribeError::OverBudget {
                    limit: self.shared.config.selector_budget,
                });
            }
            return Ok(set);
        }
        let selectors = self.intern_all(&sources, spent).await?;
        let set = Arc::new(ClaimSet { selectors });
        let mut interner = self.shared.interner.lock().expect("interner poisoned");
        if let Some(set) = interner.claims.get(&key).and_then(Weak::upgrade) {
            return Ok(set);
        }
        if interner.claims.len() >= INTERNER_SWEEP_MIN {
            interner.claims.retain(|_, weak| weak.strong_count() > 0);
        }
        interner.claims.insert(key, Arc::downgrade(&set));
        Ok(set)
    }

    /// The sequencer: the one task that orders, stores and fans out updates.
    async fn sequencer(
        self,
        mut requests: mpsc::Receiver<PublishRequest>,
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
    async fn commit(&self, batch: &mut Vec<PublishRequest>, head: u64, memo: &mut Memo) -> u64 {
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
        let known = match self.known_ids(batch).await {
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
        let started = Instant::now();
        let stored = self.shared.log.append(&entries).await;
        drop(entries);
        let metrics = &self.shared.metrics;
        metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
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
        {
            let mut history = self.shared.history.lock().expect("history poisoned");
            for record in &records {
                history.push(record.clone());
            }
        }
        self.fan_out(&records, memo);
        let count = u64::try_from(records.len()).unwrap_or(u64::MAX);
        metrics.published.inc_by(count);
        for (reply, record) in replies.into_iter().zip(&records) {
            let _ = reply.send(Ok(record.seq));
        }
        for (reply, seq) in repeated {
            let _ = reply.send(Ok(seq));
        }
        head + count
    }

    /// The positions in the log of the ids that publishers of `batch` chose, for those the
    /// log holds. Generated ids are new by construction and never looked up.
    async fn known_ids(
        &self,
        batch: &[PublishRequest],
    ) -> Result<HashMap<Arc<str>, u64>, LogError> {
        let chosen: Vec<&str> = batch
            .iter()
            .filter(|r| r.chosen_id)
            .map(|r| &*r.entry.id)
            .collect();
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
        let stored = self.shared.log.append(&entries).await;
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

    /// In a cluster: reads the shared log from `after` on, and fans out every record in
    /// order, whichever node appended it. It is the only task that fans out, so the
    /// registration hand-over works as on a single node. When the log is unreachable it
    /// retries with backoff; open streams stay up meanwhile.
    async fn follower(self, mut after: u64, shutdown: CancellationToken) {
        const BACKOFF_MIN: Duration = Duration::from_millis(100);
        const BACKOFF_MAX: Duration = Duration::from_secs(2);
        let config = &self.shared.config;
        let log = self.shared.log.clone();
        let mut memo = Memo::default();
        let mut backoff = BACKOFF_MIN;
        loop {
            let read = tokio::select! {
                () = shutdown.cancelled() => return,
                read = log.follow(after, config.max_batch) => read,
            };
            let records = match read {
                Ok(records) => {
                    backoff = BACKOFF_MIN;
                    records
                }
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "cannot read the shared event log");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            };
            let Some(last) = records.last().map(|r| r.seq) else {
                self.shared.metrics.log_lag.set(0);
                continue;
            };
            let records: Vec<Arc<Record>> = records.into_iter().map(Arc::new).collect();
            {
                let mut history = self.shared.history.lock().expect("history poisoned");
                if records[0].seq != after + 1 {
                    // Retention removed records this node had not read yet; the history
                    // must stay contiguous, and replays of those read the log (and reset).
                    history.clear();
                }
                for record in &records {
                    history.push(record.clone());
                }
            }
            self.fan_out(&records, &mut memo);
            after = last;
            if records.len() == config.max_batch
                && let Ok(head) = log.head().await
            {
                self.shared
                    .metrics
                    .log_lag
                    .set(i64::try_from(head.saturating_sub(after)).unwrap_or(i64::MAX));
            } else {
                self.shared.metrics.log_lag.set(0);
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

    /// Pushes each record's shared frame into the queue of every subscriber that may see it.
    fn fan_out(&self, records: &[Arc<Record>], memo: &mut Memo) {
        let Some(last) = records.last() else { return };
        let registry = self.shared.registry.read().expect("registry poisoned");
        let mut delivered = 0u64;
        let mut lagged = 0u64;
        let mut count = |pushed: Pushed| match pushed {
            Pushed::Queued => delivered += 1,
            Pushed::Overflowed => lagged += 1,
            Pushed::Skipped => {}
        };
        for record in records {
            memo.clear();
            for topic in &record.topics {
                let Some(subscribers) = registry.by_topic.get(topic) else {
                    continue;
                };
                for subscriber in subscribers.values() {
                    if subscriber.filter.accepts(record, memo, true) {
                        count(subscriber.push(record.seq, &record.frame));
                    }
                }
            }
            for subscriber in registry.patterns.values() {
                if subscriber.filter.accepts(record, memo, false) {
                    count(subscriber.push(record.seq, &record.frame));
                }
            }
            // After the pushes: a closed subscriber still gets this record if it matched.
            for topic in &record.closes {
                for subscriber in registry
                    .by_topic
                    .get(topic)
                    .into_iter()
                    .flat_map(HashMap::values)
                {
                    subscriber.close();
                }
            }
        }
        registry.head.store(last.seq, Ordering::Release);
        drop(registry);
        let metrics = &self.shared.metrics;
        metrics.deliveries.inc_by(delivered);
        metrics.slow_disconnects.inc_by(lagged);
        if lagged > 0 {
            tracing::debug!(lagged, "slow subscribers cut off");
        }
    }

    async fn prune(&self, head: u64) {
        let config = &self.shared.config;
        let below_seq = config
            .retention_count
            .map_or(0, |keep| head.saturating_sub(keep));
        let before_ms = config
            .retention_age
            .map(|age| now_ms().saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX)));
        if below_seq == 0 && before_ms.is_none() {
            return;
        }
        // Memory first: a replay must never find in memory what the log no longer has.
        self.shared
            .history
            .lock()
            .expect("history poisoned")
            .prune(below_seq, before_ms);
        match self.shared.log.prune(below_seq, before_ms).await {
            Ok(0) => {}
            Ok(pruned) => tracing::debug!(pruned, "retention pruned the log"),
            Err(error) => tracing::warn!(%error, "retention failed"),
        }
    }

    async fn heartbeat(self, every: Duration, shutdown: CancellationToken) {
        let frame = herald_sse::comment("");
        let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => {
                    let registry = self.shared.registry.read().expect("registry poisoned");
                    for subscriber in registry.all.values() {
                        subscriber.push_heartbeat(&frame);
                    }
                }
            }
        }
    }

    fn close_all(&self) {
        let mut registry = self.shared.registry.write().expect("registry poisoned");
        registry.closed = true;
        for subscriber in registry.all.values() {
            subscriber.close();
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
    requests: &mut mpsc::Receiver<PublishRequest>,
    batch: &mut Vec<PublishRequest>,
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

fn stopping() -> PublishError {
    PublishError::Unavailable("the hub is shutting down".into())
}

impl Interner {
    /// Interns a freshly compiled selector, unless an equal one was interned meanwhile (then
    /// that one is shared and this one dropped), charging its cost to the hub's budget.
    fn insert(
        &mut self,
        selector: Selector,
        shared: &Shared,
    ) -> Result<Arc<Compiled>, SubscribeError> {
        if let Some(compiled) = self
            .selectors
            .get(selector.as_str())
            .and_then(Weak::upgrade)
        {
            return Ok(compiled);
        }
        let cost = selector.cost();
        let budget = &shared.selector_bytes;
        // Under the interner's lock, the only place that adds: no charge can race this one.
        if budget.load(Ordering::Relaxed) + cost > shared.config.selector_budget_total {
            return Err(SubscribeError::SelectorsFull);
        }
        budget.fetch_add(cost, Ordering::Relaxed);
        let compiled = Arc::new(Compiled {
            selector,
            charged: cost,
            budget: budget.clone(),
        });
        if self.selectors.len() >= INTERNER_SWEEP_MIN && self.selectors.len().is_power_of_two() {
            self.selectors.retain(|_, weak| weak.strong_count() > 0);
        }
        self.selectors
            .insert(compiled.as_str().into(), Arc::downgrade(&compiled));
        Ok(compiled)
    }
}
