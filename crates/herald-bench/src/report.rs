//! The result of a run: one JSON object ([`Report`]) and a readable
//! summary of it.
//!
//! `run` and `idle` share the shape; fields that do not apply are `null`.
//! Latencies and lag are in µs, memory in bytes, CPU in seconds.
//!
//! The types also deserialize, so that `cargo xtask bench` reads the JSON
//! back into them. Every field has a default, so a report of an older
//! herald-bench, which lacks the fields added since, still reads.

use std::{collections::BTreeMap, fmt::Write as _};

use hdrhistogram::Histogram;
use serde::{Deserialize, Deserializer, Serialize, de::Error as _};

use crate::publisher::Lag;

/// A name from the fixed set herald-bench writes in a field (`run`, `h2c`, ...).
///
/// Deserializing finds the JSON string in that set (see `one_of`). It is an alias rather
/// than `&'static str` in the fields themselves because serde's derive borrows a field
/// written as `&str` from the input, which would let only a `'static` input deserialize.
pub type Name = &'static str;

/// One run's result.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Report {
    /// `run`, `idle` or `app`.
    #[serde(deserialize_with = "mode")]
    pub mode: Name,
    /// Connections.
    pub subscribers: Subscribers,
    /// The reconnect storm (`run --reconnect-after`).
    pub reconnect: Option<Reconnect>,
    /// Publishing (`run` only).
    pub events: Option<Events>,
    /// Deliveries and losses (`run` only).
    pub deliveries: Option<Deliveries>,
    /// Delivery latency (`run` only).
    pub latency_us: Option<LatencyReport>,
    /// How far behind schedule the publisher sent (`run` only).
    pub publisher_lag_us: Option<Lag>,
    /// The server's memory and CPU (with `--server-pid`).
    pub server: Option<Server>,
    /// CPU seconds herald-bench itself spent (all its threads) from the first publish to
    /// the end of the drain (`run` only). Close to that window's wall time per runtime
    /// thread, the bench rather than the server set the pace.
    pub bench_cpu_s: Option<f64>,
    /// What limited the run.
    pub limits: Limits,
    /// Wall time of the whole run, seconds.
    pub duration_s: f64,
}

/// Connection counts.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Subscribers {
    /// How subscribers connected: `http/1.1` (one connection each) or `h2c` (`--http2`:
    /// HTTP/2 with prior knowledge, one stream each).
    #[serde(deserialize_with = "protocol")]
    pub protocol: Name,
    /// `--streams-per-connection` (1 for HTTP/1).
    pub streams_per_connection: u64,
    /// TCP connections opened, reconnects included (HTTP/2: shared by the streams).
    pub connections: u64,
    /// `--subscribers`.
    pub requested: u64,
    /// Subscribers attempted: `requested`, or fewer when the fd limit capped it.
    pub attempted: u64,
    /// `--index-offset`: this process's subscribers are `index_offset..index_offset+attempted`.
    pub index_offset: u64,
    /// Streams opened (status 200).
    pub connected: u64,
    /// Attempts that got no stream.
    pub failed: u64,
    /// Of those: connection refused.
    pub refused: u64,
    /// No response head within `--connect-timeout` (or the run's deadline).
    pub timed_out: u64,
    /// No local port or address available.
    pub no_local_port: u64,
    /// Out of file descriptors.
    pub no_fd: u64,
    /// Answered with a status other than 200, by status.
    pub status: BTreeMap<String, u64>,
    /// Other failures.
    pub other: u64,
    /// The first few failure messages.
    pub failure_samples: Vec<String>,
    /// Seconds from the first attempt until every attempt had an answer.
    pub connect_s: f64,
    /// Streams that ended before the bench closed them.
    pub ended_early: u64,
    /// The first few reasons streams ended early.
    pub ended_samples: Vec<String>,
    /// Streams still open when the bench stopped.
    pub open_at_end: u64,
}

/// A reconnect storm: every subscriber drops after event `after_event`, `missed` events
/// are published, then all reconnect with `Last-Event-ID`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Reconnect {
    /// `--reconnect-after`: events published (and drained) before the drop.
    pub after_event: u64,
    /// `--missed`: events published while every subscriber was away.
    pub missed: u64,
    /// Events `0..boundary` were published before the reconnects started.
    pub boundary: u64,
    /// Seconds from the drop to the reconnects.
    pub away_s: f64,
    /// Streams closed by the drop.
    pub dropped: u64,
    /// Of those, subscribers that had no event id to send as `Last-Event-ID`.
    pub without_id: u64,
    /// Streams reopened (status 200).
    pub reconnected: u64,
    /// Reconnects that failed.
    pub failed: u64,
    /// The first few reconnect failures.
    pub failure_samples: Vec<String>,
    /// Reconnected subscribers that received every event before `boundary`.
    pub caught_up: u64,
    /// Seconds from the reconnect signal until the last dropped subscriber was caught up
    /// (`null`: not all were, within `--catch-up-limit`).
    pub all_caught_up_s: Option<f64>,
    /// Per caught-up subscriber, µs from the reconnect signal to catching up.
    pub catch_up_us: Percentiles,
    /// The machine's `ListenOverflows` during the catch-up (`/proc/net/netstat`): SYNs
    /// dropped by a full accept queue; each makes a client wait ≥ 1 s to retry.
    pub listen_overflows: Option<u64>,
    /// The machine's `TCPSynRetrans` during the catch-up.
    pub syn_retransmits: Option<u64>,
    /// Subscribers missing at least one acknowledged event at the end of the run.
    pub subscribers_with_loss: u64,
    /// Subscribers that got at least one event twice.
    pub subscribers_with_duplicates: u64,
    /// Subscribers that got at least one event after a later one, concurrent or not
    /// (`deliveries` tells the kinds apart, over all subscribers).
    pub subscribers_with_reversals: u64,
    /// The most events one subscriber lost.
    pub most_lost_by_one: u64,
}

/// Publishing.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Events {
    /// `--events`.
    pub requested: u64,
    /// Acknowledged by the server (2xx).
    pub published: u64,
    /// Failed: transport error, timeout, non-2xx.
    pub errors: u64,
    /// Not sent because the run's deadline came first.
    pub unsent: u64,
    /// The first few error messages.
    pub error_samples: Vec<String>,
    /// `--rate` (0: unthrottled).
    pub rate: f64,
    /// `--publishers`.
    pub publishers: u64,
    /// `--publish-kind`.
    pub kind: String,
    /// `--payload-bytes`.
    pub payload_bytes: usize,
    /// Seconds from the first send to the last answer.
    pub publish_s: f64,
    /// Acknowledged publishes per second over `publish_s`.
    pub published_per_sec: f64,
}

/// Deliveries, summed over subscribers.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Deliveries {
    /// Acknowledged events times the connected subscribers of their topic.
    pub expected: u64,
    /// Distinct events delivered.
    pub delivered: u64,
    /// Expected but never delivered.
    pub lost: u64,
    /// Deliveries of an event a subscriber already had.
    pub duplicated: u64,
    /// Ordering violations: deliveries of an event after a later one although its
    /// publish had been acknowledged before the later one's was sent (see
    /// [`crate::reversal::kind`]).
    pub out_of_order: u64,
    /// Deliveries of an event after a later one whose publishes overlapped (or whose
    /// own publish was never acknowledged): the server may order those either way.
    pub out_of_order_concurrent: u64,
    /// The first few violations `[a, b]`: event `a` delivered after event `b`.
    pub out_of_order_samples: Vec<[u64; 2]>,
    /// Deliveries of events not meant for the subscriber.
    pub unexpected: u64,
    /// SSE messages that were not bench payloads (greetings, ...).
    pub ignored_messages: u64,
    /// `delivered / window_s`.
    pub per_sec: f64,
    /// Seconds from the first send to the last delivery.
    pub window_s: f64,
}

/// Latency from send and from schedule.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LatencyReport {
    /// Delivery time minus the payload's `sent_ns`.
    pub from_send: Percentiles,
    /// Delivery time minus the payload's `sched_ns`.
    pub from_schedule: Percentiles,
}

/// Percentiles of a histogram, µs.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Percentiles {
    /// Values recorded.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Maximum.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

impl Percentiles {
    /// Summarizes `histogram`.
    pub fn of(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Self::default();
        }
        Self {
            count: histogram.len(),
            p50: histogram.value_at_quantile(0.5),
            p90: histogram.value_at_quantile(0.9),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
            mean: (histogram.mean() * 10.0).round() / 10.0,
        }
    }
}

/// The server process, from `/proc`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Server {
    /// `--server-pid`.
    pub pid: u32,
    /// RSS before any subscriber connected.
    pub rss_before: Option<u64>,
    /// RSS with every subscriber connected, before publishing (`idle`: after `--hold`).
    pub rss_idle: Option<u64>,
    /// RSS at the end, subscribers still connected.
    pub rss_end: Option<u64>,
    /// Highest RSS seen (sampled every 250 ms).
    pub rss_peak: Option<u64>,
    /// `(rss_idle - rss_before) / connected`: per subscriber, so per stream with `--http2`.
    pub rss_per_conn_bytes: Option<f64>,
    /// CPU seconds the server spent while subscribers connected.
    pub connect_cpu_s: Option<f64>,
    /// CPU seconds the server spent from the first publish to the end of the drain
    /// (`idle`: during the hold).
    pub cpu_s: Option<f64>,
    /// `cpu_s` per million deliveries.
    pub cpu_s_per_million: Option<f64>,
}

/// What limited the run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// This process's file-descriptor limit after raising it.
    pub nofile: u64,
    /// Subscribers were capped to fit the fd limit.
    pub fd_capped: bool,
    /// `--duration-limit` cut the run short.
    pub duration_limit_hit: bool,
    /// Explanations.
    pub notes: Vec<String>,
}

impl Report {
    /// A multi-line summary for people.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let sub = &self.subscribers;
        let _ = writeln!(
            s,
            "{} over {}: {} of {} subscribers connected (indexes {}..{}, {} connections) in {:.2} s; {} failed {}",
            self.mode,
            sub.protocol,
            sub.connected,
            sub.requested,
            sub.index_offset,
            sub.index_offset + sub.attempted,
            sub.connections,
            sub.connect_s,
            sub.failed,
            if sub.failed > 0 {
                format!(
                    "(refused {}, timed out {}, no port {}, no fd {}, status {:?}, other {})",
                    sub.refused, sub.timed_out, sub.no_local_port, sub.no_fd, sub.status, sub.other
                )
            } else {
                String::new()
            }
        );
        if sub.ended_early > 0 {
            let _ = writeln!(
                s,
                "  {} streams ended early: {:?}",
                sub.ended_early, sub.ended_samples
            );
        }
        if let Some(r) = &self.reconnect {
            let _ = writeln!(
                s,
                "reconnect storm: dropped {} after event {}, {} missed over {:.2} s; {} reconnected ({} without an id), {} failed {:?}; {} caught up, all in {}; catch-up p50 {} p99 {} max {}; subscribers with loss {} (at most {} each), with duplicates {}, with reversals {}; listen overflows {:?}, SYN retransmits {:?}",
                r.dropped,
                r.after_event,
                r.missed,
                r.away_s,
                r.reconnected,
                r.without_id,
                r.failed,
                r.failure_samples,
                r.caught_up,
                r.all_caught_up_s
                    .map_or("(not all)".to_owned(), |s| format!("{s:.3} s")),
                ms(r.catch_up_us.p50),
                ms(r.catch_up_us.p99),
                ms(r.catch_up_us.max),
                r.subscribers_with_loss,
                r.most_lost_by_one,
                r.subscribers_with_duplicates,
                r.subscribers_with_reversals,
                r.listen_overflows,
                r.syn_retransmits,
            );
        }
        if let Some(e) = &self.events {
            let _ = writeln!(
                s,
                "events: {} of {} published ({} errors, {} unsent) in {:.2} s, {:.0}/s acknowledged",
                e.published, e.requested, e.errors, e.unsent, e.publish_s, e.published_per_sec
            );
        }
        if let Some(lag) = &self.publisher_lag_us {
            let _ = writeln!(s, "publisher lag: p99 {} max {}", ms(lag.p99), ms(lag.max));
        }
        if let Some(d) = &self.deliveries {
            let _ = writeln!(
                s,
                "deliveries: {} of {} expected, {:.0}/s over {:.2} s; lost {}, duplicated {}, out of order {} (+{} concurrent){}, unexpected {}",
                d.delivered,
                d.expected,
                d.per_sec,
                d.window_s,
                d.lost,
                d.duplicated,
                d.out_of_order,
                d.out_of_order_concurrent,
                if d.out_of_order_samples.is_empty() {
                    String::new()
                } else {
                    let pairs: Vec<String> = d
                        .out_of_order_samples
                        .iter()
                        .map(|[a, b]| format!("{a} after {b}"))
                        .collect();
                    format!(" (e.g. {})", pairs.join(", "))
                },
                d.unexpected
            );
        }
        if let Some(l) = &self.latency_us {
            for (name, p) in [
                ("from send", &l.from_send),
                ("from schedule", &l.from_schedule),
            ] {
                let _ = writeln!(
                    s,
                    "latency {name}: p50 {} p90 {} p99 {} p99.9 {} max {}",
                    ms(p.p50),
                    ms(p.p90),
                    ms(p.p99),
                    ms(p.p999),
                    ms(p.max)
                );
            }
        }
        if let Some(server) = &self.server {
            let mib = |b: Option<u64>| {
                b.map_or("?".to_owned(), |b| {
                    format!("{:.1} MiB", b as f64 / 1048576.0)
                })
            };
            let _ = writeln!(
                s,
                "server {}: RSS before {}, idle {}, end {}, peak {}; {} per connection; CPU {} s{}",
                server.pid,
                mib(server.rss_before),
                mib(server.rss_idle),
                mib(server.rss_end),
                mib(server.rss_peak),
                server
                    .rss_per_conn_bytes
                    .map_or("?".to_owned(), |b| format!("{:.2} KiB", b / 1024.0)),
                server.cpu_s.map_or("?".to_owned(), |c| format!("{c:.2}")),
                server.cpu_s_per_million.map_or(String::new(), |c| format!(
                    ", {c:.2} s per million deliveries"
                )),
            );
        }
        if let Some(cpu) = self.bench_cpu_s {
            let _ = writeln!(s, "herald-bench: CPU {cpu:.2} s");
        }
        let _ = write!(s, "limits: nofile {}", self.limits.nofile);
        if self.limits.fd_capped {
            s.push_str(", subscribers capped by the fd limit");
        }
        if self.limits.duration_limit_hit {
            s.push_str(", duration limit hit");
        }
        for note in &self.limits.notes {
            let _ = write!(s, "\n  {note}");
        }
        let _ = write!(s, "\ntook {:.2} s", self.duration_s);
        s
    }
}

/// [`Report::mode`] from JSON: one of the names herald-bench writes.
fn mode<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Name, D::Error> {
    one_of(deserializer, &["run", "idle", "app"])
}

/// [`Subscribers::protocol`] from JSON: one of the names herald-bench writes.
fn protocol<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Name, D::Error> {
    one_of(deserializer, &["http/1.1", "h2c"])
}

/// The name in `names` that the JSON string equals.
fn one_of<'de, D: Deserializer<'de>>(deserializer: D, names: &[Name]) -> Result<Name, D::Error> {
    let name = String::deserialize(deserializer)?;
    names
        .iter()
        .find(|&&known| known == name)
        .copied()
        .ok_or_else(|| {
            D::Error::custom(format!("unknown name `{name}`, expected one of {names:?}"))
        })
}

/// µs as milliseconds, for the summary.
fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}
