//! [`HubConfig`]: how the hub behaves, with defaults that suit a single node, and the
//! default selector budgets that bound what subscribers' templates cost the hub.

use std::time::Duration;

use url::Url;

use crate::{subscriber::QueueLimits, update::UpdateLimits};

/// How the hub behaves. Every field has a default that suits a single node.
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// Records kept in memory for fast replay.
    pub history_capacity: usize,
    /// Bytes of records ([`Record::size`](crate::Record::size)) kept in memory for fast replay; the oldest leave
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
    /// Most bytes of compiled templates ([`Selector::cost`](crate::selector::Selector::cost)) one subscription may hold,
    /// its claims' included. A client chooses its templates, and their matching runs on
    /// the sequencer for every update: the budget bounds what one subscriber makes every
    /// publish pay. Over it, the subscription is refused ([`SubscribeError::OverBudget`](super::SubscribeError::OverBudget)).
    pub selector_budget: usize,
    /// Most bytes of compiled templates the whole hub holds (each distinct template counted
    /// once). Bounds the memory of all selectors and the matching work of each update, whoever
    /// subscribes; over it, new templates are refused ([`SubscribeError::SelectorsFull`](super::SubscribeError::SelectorsFull))
    /// until subscriptions end.
    pub selector_budget_total: usize,
    /// Publishes waiting for the sequencer. When full, publishers wait: backpressure, not
    /// unbounded memory.
    pub publish_queue: usize,
    /// Most publishes stored in one transaction.
    pub max_batch: usize,
    /// The hub's own URL: what relative URL Patterns ([`crate::MatchKind::UrlPattern`]) and
    /// the relative topics they are matched with resolve against. Default
    /// [`crate::urlpattern::DEFAULT_HUB_URL`].
    pub base_url: Url,
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
            base_url: crate::urlpattern::default_hub_url(),
        }
    }
}

/// Default of [`HubConfig::selector_budget`], in bytes of regex source ([`Selector::cost`](crate::selector::Selector::cost)):
/// 64 templates such as `https://example.com/books/{id}/reviews{/rid}{?page,size}` (about
/// 400 each) fit with room to spare; of the costliest templates the selector limits allow
/// (a query expression of 64 exploded variables, cost about 21,000, 45 ms to compile and
/// about 570 KiB of memory each) three do.
pub const SELECTOR_BUDGET: usize = 64 * 1024;

/// Default of [`HubConfig::selector_budget_total`]: about 10,000 distinct everyday
/// templates, or 200 of the costliest, which hold about 110 MiB.
pub const SELECTOR_BUDGET_TOTAL: usize = 4 << 20;
