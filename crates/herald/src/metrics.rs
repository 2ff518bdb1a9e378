//! Prometheus metrics of the server: the hub's own, plus connections, streams, publish
//! latency and refusals, rendered in the text exposition format at `/metrics`.

use std::sync::{Arc, Mutex};

use herald_hub::Hub;
use prometheus_client::{
    encoding::text::encode,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

use crate::limits::{Refused, StreamLimiter};

/// The server's metrics and the registry that exports them.
#[derive(Debug)]
pub struct ServerMetrics {
    registry: Mutex<Registry>,
    /// Open TCP connections.
    pub connections: Gauge,
    /// Time from receiving a publish to acknowledging it.
    pub publish_seconds: Histogram,
    /// Streams refused by a limit, by reason.
    refused: Family<Vec<(&'static str, &'static str)>, Counter>,
    /// Requests refused by a rate limit, by limit.
    rate_limited: Family<Vec<(&'static str, &'static str)>, Counter>,
    /// Live tasks of the runtime, read at scrape time: a leak shows here first.
    tasks: Gauge,
}

impl ServerMetrics {
    /// The metrics in the text exposition format, the process's live tasks updated first.
    pub fn render(&self) -> String {
        let tasks = tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks();
        self.tasks.set(i64::try_from(tasks).unwrap_or(i64::MAX));
        let mut text = String::new();
        encode(&mut text, &self.registry.lock().expect("metrics poisoned"))
            .expect("writing to a String cannot fail");
        text
    }

    /// Registers the hub's and the server's metrics under the `herald_` prefix.
    pub fn new(hub: &Hub, limiter: &Arc<StreamLimiter>) -> Self {
        let mut registry = Registry::with_prefix("herald");
        hub.metrics().register(&mut registry);
        let metrics = Self {
            registry: Mutex::new(Registry::default()),
            connections: Gauge::default(),
            publish_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 18)),
            refused: Family::default(),
            rate_limited: Family::default(),
            tasks: Gauge::default(),
        };
        registry.register(
            "connections_open",
            "Open TCP connections",
            metrics.connections.clone(),
        );
        registry.register("streams_open", "Open event streams", limiter.open.clone());
        registry.register(
            "publish_duration_seconds",
            "Time from receiving a publish to acknowledging it (stored durably)",
            metrics.publish_seconds.clone(),
        );
        registry.register(
            "streams_refused",
            "Streams refused by a connection limit",
            metrics.refused.clone(),
        );
        registry.register(
            "rate_limited",
            "Requests refused by a rate limit (429), by limit: login_ip, login_failure, \
             login_account, app_change, workspace_change, publish",
            metrics.rate_limited.clone(),
        );
        registry.register(
            "runtime_alive_tasks",
            "Live tasks of the async runtime",
            metrics.tasks.clone(),
        );
        *metrics.registry.lock().expect("metrics poisoned") = registry;
        metrics
    }

    /// Counts a refused stream.
    pub fn refused(&self, why: Refused) {
        let reason = match why {
            Refused::Global => "global",
            Refused::PerIp => "per_ip",
        };
        self.refused.get_or_create(&vec![("reason", reason)]).inc();
    }

    /// Counts a request refused by the rate limit `limit`.
    pub fn rate_limited(&self, limit: &'static str) {
        self.rate_limited
            .get_or_create(&vec![("limit", limit)])
            .inc();
    }
}
