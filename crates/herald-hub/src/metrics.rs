//! The hub's counters, gauges and histograms, in `prometheus-client` types so the server can
//! register them as they are.

use prometheus_client::{
    metrics::{
        counter::Counter,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

/// What the hub counts. Counters are atomics: fan-out adds to them once per batch.
#[derive(Debug)]
pub struct HubMetrics {
    /// Updates stored and fanned out.
    pub published: Counter,
    /// Frames queued to subscribers, live (one per update per subscriber).
    pub deliveries: Counter,
    /// Subscribers registered now.
    pub subscribers: Gauge,
    /// In a cluster: positions of the shared log this node has not fanned out yet.
    pub log_lag: Gauge,
    /// Subscriptions that asked to resume (`Last-Event-ID`).
    pub replays: Counter,
    /// Updates sent by replays.
    pub replayed: Counter,
    /// `reset` events sent: the client's id was unknown or past retention.
    pub resets: Counter,
    /// Subscribers cut off because their queue overflowed.
    pub slow_disconnects: Counter,
    /// Time to store one batch durably.
    pub commit_seconds: Histogram,
}

impl Default for HubMetrics {
    fn default() -> Self {
        Self {
            published: Counter::default(),
            deliveries: Counter::default(),
            subscribers: Gauge::default(),
            log_lag: Gauge::default(),
            replays: Counter::default(),
            replayed: Counter::default(),
            resets: Counter::default(),
            slow_disconnects: Counter::default(),
            commit_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
        }
    }
}

impl HubMetrics {
    /// Adds every metric to `registry` (under the registry's prefix).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "log_lag_updates",
            "In a cluster: updates in the shared log this node has not fanned out yet",
            self.log_lag.clone(),
        );
        registry.register(
            "updates_published",
            "Updates stored in the event log and fanned out",
            self.published.clone(),
        );
        registry.register(
            "deliveries",
            "Update frames queued to live subscribers",
            self.deliveries.clone(),
        );
        registry.register(
            "subscribers",
            "Subscribers registered now",
            self.subscribers.clone(),
        );
        registry.register(
            "replays",
            "Subscriptions that resumed with Last-Event-ID",
            self.replays.clone(),
        );
        registry.register(
            "replayed_updates",
            "Updates sent to subscribers by replay",
            self.replayed.clone(),
        );
        registry.register(
            "resets",
            "Reset events sent because the last event id was unknown or expired",
            self.resets.clone(),
        );
        registry.register(
            "slow_subscriber_disconnects",
            "Subscribers cut off because their queue overflowed",
            self.slow_disconnects.clone(),
        );
        registry.register(
            "log_commit_seconds",
            "Time to store one batch of updates durably",
            self.commit_seconds.clone(),
        );
    }
}
