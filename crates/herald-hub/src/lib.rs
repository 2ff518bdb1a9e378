//! Herald's hub core: publish/subscribe on topics, with a durable, replayable event log.
//!
//! No HTTP here. The server crate turns requests into [`Update`]s and
//! [`SubscribeRequest`]s, and writes a [`Subscription`]'s bytes to the socket.
//!
//! # Layout
//!
//! - `matcher`: [`Matcher`], a selector's text and its [`MatchKind`] (0.x selector, exact,
//!   URL Pattern).
//! - [`selector`]: compiled selectors (exact, `*`, RFC 6570 URI templates).
//! - `update`: [`Update`] (what a publisher sends) and [`Record`] (sequenced, encoded once).
//! - `log`: the [`EventLog`] trait and [`SqliteLog`], the embedded durable log.
//! - `redis_log`: [`RedisLog`], the log a cluster's nodes share, in a Redis Stream.
//! - `history`: the newest records in memory, for cheap replay.
//! - `subscriber`: a subscriber's filter and bounded queue.
//! - `subscription`: the stream of one subscriber (prelude, replay, live).
//! - `hub`: [`Hub`] and its tasks, one job per file: `config` ([`HubConfig`]), `errors`,
//!   `registry` (registration and the head), `interner` (selectors and their budgets),
//!   `sequencer`, `fanout`, `follower` (with a shared log), `retention`, `heartbeat`.
//! - [`presence`]: the active subscriptions of the whole deployment (`Registry`), and the
//!   events that announce them.
//! - `metrics`: [`HubMetrics`].
//!
//! # Invariants
//!
//! - Updates are acknowledged only after their log transaction has committed, and are
//!   fanned out only after that, in `seq` order.
//! - Publishing never waits on a subscriber: queues are bounded and a subscriber that
//!   overflows is cut off, to resume from the log by id.
//! - Every update is delivered to a subscriber at most once: replay covers positions up to
//!   the head seen at registration, the queue everything after.

mod history;
mod hub;
mod log;
mod matcher;
mod metrics;
pub mod presence;
mod redis_log;
pub mod selector;
mod subscriber;
mod subscription;
mod update;
pub mod urlpattern;

pub use hub::{
    HEARTBEAT_MIN_TICK, Hub, HubConfig, PublishError, Published, ReplayFilter, SELECTOR_BUDGET,
    SELECTOR_BUDGET_TOTAL, SubscribeError, SubscribeRequest, TransactError, heartbeat_slices,
};
pub use log::{
    Durability, Entry, EventLog, LogConnection, LogError, Outcome, SqliteLog, Step, Transacted,
    WORK_BUDGET, Work, WorkError, sqlite_url,
};
pub use matcher::{MatchKind, Matcher};
pub use metrics::HubMetrics;
pub use redis_log::RedisLog;
pub use subscriber::QueueLimits;
pub use subscription::{Closer, Passed, Subscription};
pub use update::{
    EARLIEST, InvalidUpdate, RESERVED_PREFIX, Record, Update, UpdateLimits, is_reserved,
};
