//! Why the hub refuses a publish ([`PublishError`]) or a subscription ([`SubscribeError`]).

use crate::{
    log::{LogError, WorkError},
    selector::SelectorError,
    update::InvalidUpdate,
};

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

/// Why [`Hub::transact`](super::Hub::transact) stored nothing.
#[derive(Debug, thiserror::Error)]
pub enum TransactError {
    /// The work failed, with its own error; it was rolled back.
    #[error("{0}")]
    Work(WorkError),
    /// The log's transaction failed, or the hub cannot run work or is stopping.
    #[error("the change was not stored: {0}")]
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
    /// The subscription's templates cost more than [`HubConfig::selector_budget`](super::HubConfig::selector_budget).
    #[error(
        "the topic selectors are too costly: their compiled templates exceed {limit} bytes \
         (use fewer, shorter or simpler templates)"
    )]
    OverBudget {
        /// The configured budget.
        limit: usize,
    },
    /// The hub holds [`HubConfig::selector_budget_total`](super::HubConfig::selector_budget_total) bytes of compiled templates
    /// already; the subscription may succeed once others end.
    #[error("the hub cannot take more topic templates now; retry later")]
    SelectorsFull,
    /// [`SubscribeRequest::after`](super::SubscribeRequest::after) names a position the log
    /// has not reached.
    #[error("the position {after} is beyond the newest in the log ({head})")]
    FuturePosition {
        /// The position asked for.
        after: u64,
        /// The log's newest position.
        head: u64,
    },
    /// The log could not be read to resolve `Last-Event-ID`.
    #[error("history is unavailable: {0}")]
    Unavailable(#[from] LogError),
}
