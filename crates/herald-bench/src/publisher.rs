//! The open-loop publisher: event `k` is due at `start + k / rate`, whatever
//! happened to event `k - 1`, so a server that slows its publisher down
//! shows up as publisher lag and as latency from the schedule.
//!
//! `publishers` tasks take the next `k` from a shared counter, wait until it
//! is due, and send it; each holds at most one request in flight. Each
//! request's send and acknowledgement times are kept ([`Attempt`]): with
//! several publishers, events `k` and `k + 1` may be in flight at once, and
//! only these times tell whether the server was free to order them either way
//! (see [`crate::reversal`]).

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::{
    args::{PublishKind, RunArgs},
    tally::{self, Payload},
    target::{self, Target},
    wall_ns,
};

/// Error messages kept as samples for the report.
const MAX_SAMPLES: usize = 5;

/// What publishing did.
#[derive(Debug)]
pub struct Published {
    /// `seq`s the server acknowledged (2xx), sorted.
    pub acked: Vec<u64>,
    /// Every request sent, sorted by `seq`.
    pub attempts: Vec<Attempt>,
    /// Requests sent (acknowledged or not).
    pub attempted: u64,
    /// Requests that failed: transport error, timeout or non-2xx.
    pub errors: u64,
    /// The first few error messages.
    pub error_samples: Vec<String>,
    /// How late each send was against its schedule, µs.
    pub lag: Histogram<u64>,
    /// Wall-clock time of the first send, ns since the epoch.
    pub first_send_ns: Option<u64>,
    /// Time from the first send to the last answer, seconds.
    pub elapsed_s: f64,
    /// The schedule ran into the deadline.
    pub hit_deadline: bool,
}

/// One publish request: when it was sent, and when the server acknowledged it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// The event.
    pub seq: u64,
    /// Wall-clock time just before the request was handed to the HTTP client (the
    /// payload's `sent_ns`), ns since the epoch.
    pub sent_ns: u64,
    /// Wall-clock time just after a 2xx response was read, ns since the epoch (`None`:
    /// the request failed, timed out, or got another status).
    pub acked_ns: Option<u64>,
}

/// The HTTP request that publishes one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Where to POST.
    pub url: String,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its body.
    pub body: String,
}

/// Builds the request of `kind` publishing `payload` on topic `topic`.
pub fn request(
    kind: PublishKind,
    url_template: &str,
    topic_template: &str,
    topic: u64,
    seq: u64,
    payload: &str,
) -> Request {
    let url = target::expand(url_template, topic, seq);
    let name = target::expand(topic_template, topic, seq);
    let (content_type, body) = match kind {
        PublishKind::Mercure => (
            "application/x-www-form-urlencoded",
            form_urlencoded::Serializer::new(String::new())
                .append_pair("topic", &name)
                .append_pair("data", payload)
                .finish(),
        ),
        PublishKind::Nchan => ("application/json", payload.to_owned()),
        PublishKind::Pushpin => (
            "application/json",
            to_json(&PushpinPublish {
                items: [PushpinItem {
                    channel: &name,
                    formats: PushpinFormats {
                        http_stream: PushpinContent {
                            content: format!("event: message\ndata: {payload}\n\n"),
                        },
                    },
                }],
            }),
        ),
        PublishKind::Json => (
            "application/json",
            to_json(&JsonPublish {
                topic: &name,
                data: payload,
            }),
        ),
    };
    Request {
        url,
        content_type,
        body,
    }
}

/// Pushpin's publish body.
#[derive(Serialize)]
struct PushpinPublish<'a> {
    items: [PushpinItem<'a>; 1],
}

#[derive(Serialize)]
struct PushpinItem<'a> {
    channel: &'a str,
    formats: PushpinFormats,
}

#[derive(Serialize)]
struct PushpinFormats {
    #[serde(rename = "http-stream")]
    http_stream: PushpinContent,
}

#[derive(Serialize)]
struct PushpinContent {
    content: String,
}

/// The plain JSON publish body.
#[derive(Serialize)]
struct JsonPublish<'a> {
    topic: &'a str,
    data: &'a str,
}

fn to_json(value: &impl Serialize) -> String {
    serde_json::to_string(value).expect("plain structs serialize")
}

/// The HTTP client for publishing: keep-alive, a pool as large as the
/// number of publishers, no proxy, no redirects (a redirect could lead off
/// this machine), and `localhost` pinned to 127.0.0.1.
///
/// # Errors
///
/// When the client cannot be built.
pub fn client(publishers: usize) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(publishers)
        .tcp_nodelay(true)
        .resolve("localhost", ([127, 0, 0, 1], 0).into())
        .build()
        .context("build the HTTP client")
}

/// Publishes `args.events` events on schedule, stopping at `deadline`.
///
/// # Errors
///
/// When the HTTP client cannot be built.
pub async fn publish(args: &RunArgs, deadline: Instant) -> anyhow::Result<Published> {
    publish_range(args, 0..args.events, deadline).await
}

/// Publishes events `range` on schedule (event `k` due at `(k - range.start) / rate`
/// after the call), stopping at `deadline`.
///
/// # Errors
///
/// When the HTTP client cannot be built.
pub async fn publish_range(
    args: &RunArgs,
    range: std::ops::Range<u64>,
    deadline: Instant,
) -> anyhow::Result<Published> {
    let client = client(args.publishers as usize)?;
    let start = Instant::now();
    let start_ns = wall_ns();
    let first = range.start;
    let end = range.end;
    let shared = Arc::new(State {
        next: AtomicU64::new(first),
        results: Mutex::new(Results::default()),
    });
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.publishers {
        let (client, shared, args) = (client.clone(), shared.clone(), args.clone());
        tasks.spawn(async move {
            let mut lag = tally::histogram();
            let mut acked = Vec::new();
            let mut attempts = Vec::new();
            let mut hit_deadline = false;
            loop {
                let k = shared.next.fetch_add(1, Ordering::Relaxed);
                if k >= end {
                    break;
                }
                let (due, sched_ns) = schedule(start, start_ns, args.rate, k - first);
                if due >= deadline {
                    hit_deadline = true;
                    break;
                }
                tokio::time::sleep_until(due).await;
                let now = Instant::now();
                let sent_ns = wall_ns();
                // Unthrottled: the schedule is "now".
                let sched_ns = sched_ns.unwrap_or(sent_ns);
                lag.saturating_record(now.saturating_duration_since(due).as_micros() as u64);
                let result = send(&client, &args, k, sent_ns, sched_ns, deadline).await;
                attempts.push(Attempt {
                    seq: k,
                    sent_ns,
                    acked_ns: result.is_ok().then(wall_ns),
                });
                shared.note(k, sent_ns, result, &mut acked);
            }
            (lag, acked, attempts, hit_deadline)
        });
    }
    let mut lag = tally::histogram();
    let mut acked = Vec::new();
    let mut attempts = Vec::new();
    let mut hit_deadline = false;
    while let Some(joined) = tasks.join_next().await {
        let (l, a, t, h) = joined.context("a publisher task panicked")?;
        let _ = lag.add(&l);
        acked.extend(a);
        attempts.extend(t);
        hit_deadline |= h;
    }
    acked.sort_unstable();
    attempts.sort_unstable_by_key(|a| a.seq);
    let elapsed_s = start.elapsed().as_secs_f64();
    let results = std::mem::take(&mut *shared.results.lock().unwrap_or_else(|e| e.into_inner()));
    let first_send_ns = results.first_send_ns;
    let elapsed_s = match first_send_ns {
        Some(first) => (wall_ns().saturating_sub(first)) as f64 / 1e9,
        None => elapsed_s,
    };
    Ok(Published {
        acked,
        attempts,
        attempted: results.attempted,
        errors: results.errors,
        error_samples: results.samples,
        lag,
        first_send_ns,
        elapsed_s,
        hit_deadline,
    })
}

impl Published {
    /// Nothing published (yet).
    pub fn empty() -> Self {
        Self {
            acked: Vec::new(),
            attempts: Vec::new(),
            attempted: 0,
            errors: 0,
            error_samples: Vec::new(),
            lag: tally::histogram(),
            first_send_ns: None,
            elapsed_s: 0.0,
            hit_deadline: false,
        }
    }

    /// Adds a later phase's publishing to this one. `elapsed_s` becomes the time from the
    /// first send of either to now.
    pub fn merge(&mut self, later: Published) {
        self.acked.extend(later.acked);
        self.acked.sort_unstable();
        self.attempts.extend(later.attempts);
        self.attempts.sort_unstable_by_key(|a| a.seq);
        self.attempted += later.attempted;
        self.errors += later.errors;
        for sample in later.error_samples {
            if self.error_samples.len() < MAX_SAMPLES && !self.error_samples.contains(&sample) {
                self.error_samples.push(sample);
            }
        }
        let _ = self.lag.add(&later.lag);
        self.first_send_ns = match (self.first_send_ns, later.first_send_ns) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.elapsed_s = match self.first_send_ns {
            Some(first) => wall_ns().saturating_sub(first) as f64 / 1e9,
            None => self.elapsed_s + later.elapsed_s,
        };
        self.hit_deadline |= later.hit_deadline;
    }
}

/// When event `k` is due, and its wall-clock schedule (`None` at rate 0:
/// due at once).
fn schedule(start: Instant, start_ns: u64, rate: f64, k: u64) -> (Instant, Option<u64>) {
    if rate <= 0.0 {
        return (start, None);
    }
    let offset = Duration::from_secs_f64(k as f64 / rate);
    (start + offset, Some(start_ns + offset.as_nanos() as u64))
}

struct State {
    next: AtomicU64,
    results: Mutex<Results>,
}

#[derive(Default)]
struct Results {
    attempted: u64,
    errors: u64,
    samples: Vec<String>,
    first_send_ns: Option<u64>,
}

impl State {
    fn note(&self, k: u64, sent_ns: u64, result: Result<(), String>, acked: &mut Vec<u64>) {
        let mut results = self.results.lock().unwrap_or_else(|e| e.into_inner());
        results.attempted += 1;
        results.first_send_ns = Some(results.first_send_ns.map_or(sent_ns, |f| f.min(sent_ns)));
        match result {
            Ok(()) => acked.push(k),
            Err(message) => {
                results.errors += 1;
                if results.samples.len() < MAX_SAMPLES && !results.samples.contains(&message) {
                    results.samples.push(message);
                }
            }
        }
    }
}

/// Sends event `k`; `Err` describes a failure.
async fn send(
    client: &reqwest::Client,
    args: &RunArgs,
    k: u64,
    sent_ns: u64,
    sched_ns: u64,
    deadline: Instant,
) -> Result<(), String> {
    let topic = k % args.sub.topics;
    let payload = Payload {
        seq: k,
        sent_ns,
        sched_ns,
        topic: topic as u32,
    }
    .to_json(args.payload_bytes);
    let req = match &args.sub.app {
        Some(world) => Request {
            url: world.todo_url(topic, k),
            content_type: "application/json",
            body: serde_json::json!({ "title": payload }).to_string(),
        },
        None => request(
            args.publish_kind,
            &args.pub_url,
            &args.pub_topic,
            topic,
            k,
            &payload,
        ),
    };
    // Checked up front for topic 0; checked again in case `{topic}` sits
    // in the host.
    Target::parse(&req.url).map_err(|e| format!("{e:#}"))?;
    let mut builder = client
        .post(&req.url)
        .header(reqwest::header::CONTENT_TYPE, req.content_type)
        .body(req.body);
    if let Some(token) = &args.token {
        builder = builder.bearer_auth(token);
    }
    if let Some(world) = &args.sub.app {
        builder = builder.header(reqwest::header::COOKIE, &world.admin_cookie);
    }
    let until = deadline.min(Instant::now() + args.publish_timeout);
    let exchange = async {
        let response = builder.send().await.map_err(|e| format!("send: {e}"))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| format!("read: {e}"))?;
        if status.is_success() {
            Ok(())
        } else {
            let body = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            Err(format!("status {}: {}", status.as_u16(), body.trim()))
        }
    };
    tokio::time::timeout_at(until, exchange)
        .await
        .unwrap_or_else(|_| Err("timed out".to_owned()))
}

/// The publisher's lag in the report, µs.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Lag {
    /// 99th percentile.
    pub p99: u64,
    /// Maximum.
    pub max: u64,
}

impl Lag {
    /// Summarizes a lag histogram.
    pub fn of(histogram: &Histogram<u64>) -> Self {
        Self {
            p99: histogram.value_at_quantile(0.99),
            max: histogram.max(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_kinds() {
        let payload = r#"{"seq":1,"sent_ns":2,"sched_ns":3,"topic":1}"#;
        let table = [
            (
                PublishKind::Mercure,
                "http://127.0.0.1:8080/.well-known/mercure",
                "http://127.0.0.1:8080/.well-known/mercure",
                "application/x-www-form-urlencoded",
                "topic=bench-1&data=%7B%22seq%22%3A1%2C%22sent_ns%22%3A2%2C%22sched_ns%22%3A3%2C%22topic%22%3A1%7D",
            ),
            (
                PublishKind::Nchan,
                "http://127.0.0.1:8081/pub?id=bench-{topic}",
                "http://127.0.0.1:8081/pub?id=bench-1",
                "application/json",
                payload,
            ),
            (
                PublishKind::Pushpin,
                "http://127.0.0.1:5561/publish/",
                "http://127.0.0.1:5561/publish/",
                "application/json",
                r#"{"items":[{"channel":"bench-1","formats":{"http-stream":{"content":"event: message\ndata: {\"seq\":1,\"sent_ns\":2,\"sched_ns\":3,\"topic\":1}\n\n"}}}]}"#,
            ),
            (
                PublishKind::Json,
                "http://localhost:3000/publish",
                "http://localhost:3000/publish",
                "application/json",
                r#"{"topic":"bench-1","data":"{\"seq\":1,\"sent_ns\":2,\"sched_ns\":3,\"topic\":1}"}"#,
            ),
        ];
        for (kind, url, want_url, want_type, want_body) in table {
            let req = request(kind, url, "bench-{topic}", 1, 7, payload);
            assert_eq!(
                (req.url.as_str(), req.content_type, req.body.as_str()),
                (want_url, want_type, want_body),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn open_loop_schedule() {
        let start = Instant::now();
        let (due, sched) = schedule(start, 1_000_000_000, 200.0, 0);
        assert_eq!((due, sched), (start, Some(1_000_000_000)));
        let (due, sched) = schedule(start, 1_000_000_000, 200.0, 3);
        assert_eq!(due - start, Duration::from_millis(15));
        assert_eq!(sched, Some(1_015_000_000));
        assert_eq!(schedule(start, 5, 0.0, 1_000), (start, None));
    }
}
