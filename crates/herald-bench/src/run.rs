//! The phases of a run: check the arguments, raise the fd limit, connect
//! the subscribers (`Fleet`), settle, publish, drain, stop, count.

use std::{
    sync::{Arc, Mutex, atomic::Ordering},
    time::Duration,
};

use anyhow::{Context as _, bail};
use tokio::{
    task::{JoinHandle, JoinSet},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use crate::{
    args::{IdleArgs, RunArgs, SubscribeArgs},
    h2c,
    procstat::{self, Sample},
    publisher::{self, Lag},
    report::{
        Deliveries, Events, LatencyReport, Limits, Percentiles, Reconnect, Report, Server,
        Subscribers,
    },
    reversal,
    subscriber::{self, Outcome, Shared, Spec},
    tally,
    target::{self, Target},
};

/// File descriptors kept back from the subscribers: stdio, the runtime's
/// epoll and wakers, `/proc` reads, and slack.
pub const FD_RESERVE: u64 = 64;

/// Most topics: the bench keeps a counter and a list per topic.
pub const MAX_TOPICS: u64 = 1_000_000;

/// Most memory the per-subscriber "seen" bitsets may take.
pub const MAX_BITSET_BYTES: u64 = 2 << 30;

/// How often the drain and connect phases look at their counters, and the
/// server's RSS is sampled.
const POLL: Duration = Duration::from_millis(10);

/// How long the subscribers get to close their streams in a reconnect storm.
const DROP_WAIT: Duration = Duration::from_secs(5);

/// How often the server's RSS peak is sampled.
const RSS_SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// How long stopping the subscribers may take.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Reasons streams ended early, kept as samples.
const MAX_SAMPLES: usize = 5;

/// Checks `run`'s arguments without touching the network.
///
/// # Errors
///
/// On a non-loopback or malformed URL, or out-of-range numbers.
pub fn check_run(args: &RunArgs) -> anyhow::Result<()> {
    check_subscribe(&args.sub)?;
    for topic in [0, args.sub.topics - 1] {
        let url = target::expand(&args.pub_url, topic, 0);
        Target::parse(&url).context("--pub-url")?;
    }
    if !args.rate.is_finite() || args.rate < 0.0 {
        bail!("--rate must be a non-negative number");
    }
    if let Some(k) = args.reconnect_after
        && k.saturating_add(args.missed) > args.events
    {
        bail!("--reconnect-after plus --missed must be at most --events");
    }
    if args.sub.topics > u64::from(u32::MAX) {
        bail!("--topics must fit in 32 bits");
    }
    let per_sub = args.events.div_ceil(args.sub.topics).div_ceil(64) * 8;
    if per_sub.saturating_mul(args.sub.subscribers) > MAX_BITSET_BYTES {
        bail!(
            "--events {} over --topics {} for {} subscribers needs more than {} MiB of loss bitsets",
            args.events,
            args.sub.topics,
            args.sub.subscribers,
            MAX_BITSET_BYTES >> 20
        );
    }
    Ok(())
}

/// Checks `idle`'s arguments.
///
/// # Errors
///
/// As [`check_run`].
pub fn check_idle(args: &IdleArgs) -> anyhow::Result<()> {
    check_subscribe(&args.sub)
}

fn check_subscribe(args: &SubscribeArgs) -> anyhow::Result<()> {
    if args.topics == 0 || args.topics > MAX_TOPICS {
        bail!("--topics must be 1..={MAX_TOPICS}");
    }
    // The host may only depend on the template through `{topic}` or `{i}`;
    // check the first and last of each. Every URL is checked again on use.
    let last = args.index_offset + args.subscribers.saturating_sub(1);
    for (topic, index) in [
        (0, args.index_offset),
        (args.topics - 1, last),
        (last % args.topics, last),
    ] {
        let url = target::expand(&args.sub_url, topic, index);
        let target = Target::parse(&url).context("--sub-url")?;
        if args.source_ips > 1 && !target.addr.is_ipv4() {
            bail!("--source-ips needs an IPv4 target");
        }
    }
    Ok(())
}

/// One bounded `run`: connect, publish, drain, report.
///
/// # Errors
///
/// On bad arguments (see [`check_run`]) or when the HTTP client cannot be
/// built. Connection and publish failures are counted, not returned.
pub async fn run(args: RunArgs) -> anyhow::Result<Report> {
    check_run(&args)?;
    let started = Instant::now();
    let deadline = started + args.sub.duration_limit;
    let mut limits = Limits::default();
    let attempted = fd_budget(&args.sub, args.publishers, &mut limits);
    let pid = args.sub.server_pid;
    let rss = RssPeak::start(pid);
    let before = pid.and_then(procstat::sample);

    let fleet = Fleet::connect(
        &args.sub,
        attempted,
        args.events,
        args.reconnect_after.is_some(),
        deadline,
    )
    .await;
    limits.duration_limit_hit |= fleet.hit_deadline;
    let connected = pid.and_then(procstat::sample);
    tokio::time::sleep_until(deadline.min(Instant::now() + args.settle)).await;
    let idle = pid.and_then(procstat::sample);
    let own_idle = procstat::sample(std::process::id());

    let mut reconnect = None;
    let published = if Instant::now() < deadline {
        Some(match args.reconnect_after {
            None => publisher::publish(&args, deadline).await?,
            Some(k) => {
                let (published, storm) = storm(&args, &fleet.shared, k, deadline).await?;
                limits.duration_limit_hit |= storm.hit_deadline;
                reconnect = Some(storm);
                published
            }
        })
    } else {
        None
    };
    if published.as_ref().is_some_and(|p| p.hit_deadline) {
        limits.duration_limit_hit = true;
    }
    let acked = published.as_ref().map_or(&[][..], |p| &p.acked[..]);
    let by_topic = by_topic(acked, args.sub.topics);

    // Drain: until every expected delivery arrived, or --drain passed.
    let expected = expected_deliveries(&fleet.shared, &by_topic);
    limits.duration_limit_hit |= drain(
        &fleet.shared,
        expected,
        Instant::now() + args.drain,
        deadline,
    )
    .await;
    let end = pid.and_then(procstat::sample);
    let own_end = procstat::sample(std::process::id());
    let rss_sampled = rss.stop().await;
    let rss_peak = [before, connected, idle, end]
        .iter()
        .flatten()
        .map(|s| s.rss_bytes)
        .chain(rss_sampled)
        .max();
    let shared = fleet.shared.clone();
    let stopped = fleet.stop().await;

    // Count.
    let mut deliveries = Deliveries::default();
    let mut last_delivery_ns = 0;
    for tally in &stopped.tallies {
        let (e, lost) = tally.expected_and_lost(&by_topic[tally.topic() as usize]);
        if let Some(r) = reconnect.as_mut() {
            r.report.subscribers_with_loss += u64::from(lost > 0);
            r.report.subscribers_with_duplicates += u64::from(tally.duplicates > 0);
            r.report.subscribers_with_reversals += u64::from(tally.reversals > 0);
            r.report.most_lost_by_one = r.report.most_lost_by_one.max(lost);
        }
        deliveries.expected += e;
        deliveries.lost += lost;
        deliveries.delivered += tally.delivered;
        deliveries.duplicated += tally.duplicates;
        deliveries.unexpected += tally.unexpected;
        deliveries.ignored_messages += tally.ignored;
        last_delivery_ns = last_delivery_ns.max(tally.last_delivery_ns);
    }
    // Every send and acknowledgement time is known now.
    let attempts = published.as_ref().map_or(&[][..], |p| &p.attempts[..]);
    let reversals = reversal::classify(&shared.reversals.merged(), attempts);
    deliveries.out_of_order = reversals.violations;
    deliveries.out_of_order_concurrent = reversals.concurrent;
    deliveries.out_of_order_samples = reversals.samples.iter().map(|&(a, b)| [a, b]).collect();
    let first_send_ns = published.as_ref().and_then(|p| p.first_send_ns);
    if let Some(first) = first_send_ns {
        deliveries.window_s = last_delivery_ns.saturating_sub(first) as f64 / 1e9;
        if deliveries.window_s > 0.0 {
            deliveries.per_sec = (deliveries.delivered as f64 / deliveries.window_s).round();
        }
    }
    let latencies = shared.recorder.merged();
    let events = published.as_ref().map_or_else(
        || Events {
            requested: args.events,
            unsent: args.events,
            ..Events::default()
        },
        |p| Events {
            requested: args.events,
            published: p.acked.len() as u64,
            errors: p.errors,
            unsent: args.events - p.attempted,
            error_samples: p.error_samples.clone(),
            rate: args.rate,
            publishers: args.publishers,
            kind: format!("{:?}", args.publish_kind).to_lowercase(),
            payload_bytes: args.payload_bytes,
            publish_s: p.elapsed_s,
            published_per_sec: if p.elapsed_s > 0.0 {
                (p.acked.len() as f64 / p.elapsed_s).round()
            } else {
                0.0
            },
        },
    );
    let server = pid.map(|pid| {
        let cpu_s = idle.zip(end).map(|(a, b)| b.cpu_s - a.cpu_s);
        Server {
            pid,
            rss_before: before.map(|s| s.rss_bytes),
            rss_idle: idle.map(|s| s.rss_bytes),
            rss_end: end.map(|s| s.rss_bytes),
            rss_peak,
            rss_per_conn_bytes: per_conn(before, idle, stopped.subscribers.connected),
            connect_cpu_s: before.zip(connected).map(|(a, b)| b.cpu_s - a.cpu_s),
            cpu_s,
            cpu_s_per_million: cpu_s
                .filter(|_| deliveries.delivered > 0)
                .map(|c| c / (deliveries.delivered as f64 / 1e6)),
        }
    });
    if pid.is_some() && end.is_none() {
        limits
            .notes
            .push("the server process could not be read at the end (gone?)".to_owned());
    }
    Ok(Report {
        mode: "run",
        subscribers: stopped.subscribers,
        reconnect: reconnect.map(|r| r.report),
        events: Some(events),
        deliveries: Some(deliveries),
        latency_us: Some(LatencyReport {
            from_send: Percentiles::of(&latencies.from_send),
            from_schedule: Percentiles::of(&latencies.from_sched),
        }),
        publisher_lag_us: Some(
            published
                .as_ref()
                .map_or_else(Lag::default, |p| Lag::of(&p.lag)),
        ),
        server,
        bench_cpu_s: own_idle.zip(own_end).map(|(a, b)| b.cpu_s - a.cpu_s),
        limits,
        duration_s: started.elapsed().as_secs_f64(),
    })
}

/// `idle`: connect, hold, measure the server's memory, stop.
///
/// # Errors
///
/// On bad arguments (see [`check_idle`]).
pub async fn idle(args: IdleArgs) -> anyhow::Result<Report> {
    check_idle(&args)?;
    let started = Instant::now();
    let deadline = started + args.sub.duration_limit;
    let mut limits = Limits::default();
    let attempted = fd_budget(&args.sub, 0, &mut limits);
    let pid = args.sub.server_pid;
    let rss = RssPeak::start(pid);
    let before = pid.and_then(procstat::sample);
    let fleet = Fleet::connect(&args.sub, attempted, 0, false, deadline).await;
    limits.duration_limit_hit |= fleet.hit_deadline;
    let connected = pid.and_then(procstat::sample);
    let hold_until = Instant::now() + args.hold;
    if hold_until > deadline {
        limits.duration_limit_hit = true;
    }
    tokio::time::sleep_until(hold_until.min(deadline)).await;
    let idle = pid.and_then(procstat::sample);
    let rss_sampled = rss.stop().await;
    let rss_peak = [before, connected, idle]
        .iter()
        .flatten()
        .map(|s| s.rss_bytes)
        .chain(rss_sampled)
        .max();
    let stopped = fleet.stop().await;
    let server = pid.map(|pid| Server {
        pid,
        rss_before: before.map(|s| s.rss_bytes),
        rss_idle: idle.map(|s| s.rss_bytes),
        rss_end: idle.map(|s| s.rss_bytes),
        rss_peak,
        rss_per_conn_bytes: per_conn(before, idle, stopped.subscribers.open_at_end),
        connect_cpu_s: before.zip(connected).map(|(a, b)| b.cpu_s - a.cpu_s),
        cpu_s: connected.zip(idle).map(|(a, b)| b.cpu_s - a.cpu_s),
        cpu_s_per_million: None,
    });
    Ok(Report {
        mode: "idle",
        subscribers: stopped.subscribers,
        reconnect: None,
        events: None,
        deliveries: None,
        latency_us: None,
        publisher_lag_us: None,
        server,
        bench_cpu_s: None,
        limits,
        duration_s: started.elapsed().as_secs_f64(),
    })
}

/// Raises the soft fd limit to the hard one and returns how many
/// subscribers fit (each HTTP/2 connection holds --streams-per-connection), noting a cap
/// in `limits`.
fn fd_budget(args: &SubscribeArgs, publishers: u64, limits: &mut Limits) -> u64 {
    let nofile = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            limits
                .notes
                .push(format!("could not raise the fd limit: {e}"));
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    };
    limits.nofile = nofile;
    let per_fd = if args.http2 {
        args.streams_per_connection
    } else {
        1
    };
    let fit = nofile
        .saturating_sub(FD_RESERVE + publishers)
        .saturating_mul(per_fd);
    if args.subscribers > fit {
        limits.fd_capped = true;
        limits.notes.push(format!(
            "--subscribers {} capped to {fit}: the fd limit is {nofile} (hard limit; run more bench processes with --index-offset)",
            args.subscribers
        ));
        fit
    } else {
        args.subscribers
    }
}

/// Acknowledged events times the connected subscribers of their topic.
fn expected_deliveries(shared: &Shared, by_topic: &[Vec<u64>]) -> u64 {
    let per_topic = shared
        .connected_per_topic
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    per_topic
        .iter()
        .zip(by_topic)
        .map(|(subs, events)| subs * events.len() as u64)
        .sum()
}

/// Waits until `expected` distinct deliveries arrived, or `until`; true when the run's
/// deadline cut it short.
async fn drain(shared: &Shared, expected: u64, until: Instant, deadline: Instant) -> bool {
    while shared.delivered.load(Ordering::Relaxed) < expected {
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        if now >= until {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    false
}

/// A reconnect storm's outcome, before the per-subscriber counts are added.
struct StormOutcome {
    report: Reconnect,
    hit_deadline: bool,
}

/// The publishing of a run with `--reconnect-after k`: publish `0..k`, let it drain, drop
/// every stream, publish `--missed` more, then reconnect everyone while the rest is
/// published, and time the catch-up.
async fn storm(
    args: &RunArgs,
    shared: &Arc<Shared>,
    k: u64,
    deadline: Instant,
) -> anyhow::Result<(publisher::Published, StormOutcome)> {
    let k = k.min(args.events);
    let boundary = k + args.missed.min(args.events - k);
    let storm = &shared.storm;
    let mut hit_deadline = false;

    let mut published = publisher::publish_range(args, 0..k, deadline).await?;
    let expected = expected_deliveries(shared, &by_topic(&published.acked, args.sub.topics));
    hit_deadline |= drain(shared, expected, Instant::now() + args.drain, deadline).await;

    // Drop every stream; wait until they are closed (streams that already ended early
    // never report, hence the bound).
    let streaming = shared.connected.load(Ordering::Relaxed);
    storm.drop.cancel();
    let until = Instant::now() + DROP_WAIT;
    while storm.dropped.load(Ordering::Relaxed) < streaming && Instant::now() < until {
        tokio::time::sleep(POLL).await;
    }
    let dropped_at = Instant::now();
    if dropped_at < deadline {
        published.merge(publisher::publish_range(args, k..boundary, deadline).await?);
    }
    storm.boundary.store(boundary, Ordering::Relaxed);

    // Reconnect everyone; the rest of the events are published meanwhile.
    let reconnect_at = *storm.reconnect_at.get_or_init(Instant::now);
    let away_s = (reconnect_at - dropped_at).as_secs_f64();
    let tcp_before = procstat::tcp_counters();
    storm.reconnect.cancel();
    let rest = {
        let args = args.clone();
        tokio::spawn(async move {
            publisher::publish_range(&args, boundary..args.events, deadline).await
        })
    };
    let dropped = storm.dropped.load(Ordering::Relaxed);
    let until = deadline.min(reconnect_at + args.catch_up_limit);
    loop {
        let done = storm.caught_up.load(Ordering::Relaxed) + storm.failed.load(Ordering::Relaxed);
        if done >= dropped {
            break;
        }
        if Instant::now() >= until {
            hit_deadline |= until == deadline;
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    let tcp_after = procstat::tcp_counters();
    let caught_up = storm.caught_up.load(Ordering::Relaxed);
    let catch_up_us = {
        let samples = storm.catch_up_us.lock().unwrap_or_else(|e| e.into_inner());
        let mut h = tally::histogram();
        for &us in samples.iter() {
            h.saturating_record(us);
        }
        h
    };
    let rest = rest.await.context("the publisher task panicked")??;
    published.merge(rest);
    let report = Reconnect {
        after_event: k,
        missed: boundary - k,
        boundary,
        away_s,
        dropped,
        without_id: storm.without_id.load(Ordering::Relaxed),
        reconnected: storm.reconnected.load(Ordering::Relaxed),
        failed: storm.failed.load(Ordering::Relaxed),
        failure_samples: storm
            .failure_samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
        caught_up,
        all_caught_up_s: (dropped > 0 && caught_up == dropped)
            .then(|| catch_up_us.max() as f64 / 1e6),
        catch_up_us: Percentiles::of(&catch_up_us),
        listen_overflows: tcp_before
            .zip(tcp_after)
            .map(|(a, b)| b.listen_overflows.saturating_sub(a.listen_overflows)),
        syn_retransmits: tcp_before
            .zip(tcp_after)
            .map(|(a, b)| b.syn_retransmits.saturating_sub(a.syn_retransmits)),
        ..Reconnect::default()
    };
    Ok((
        published,
        StormOutcome {
            report,
            hit_deadline,
        },
    ))
}

/// `acked` split by topic.
fn by_topic(acked: &[u64], topics: u64) -> Vec<Vec<u64>> {
    let mut by_topic = vec![Vec::new(); topics as usize];
    for &seq in acked {
        by_topic[(seq % topics) as usize].push(seq);
    }
    by_topic
}

fn per_conn(before: Option<Sample>, after: Option<Sample>, connections: u64) -> Option<f64> {
    let (before, after) = before.zip(after)?;
    (connections > 0)
        .then(|| (after.rss_bytes as f64 - before.rss_bytes as f64) / connections as f64)
}

/// The subscriber tasks of a run.
struct Fleet {
    shared: Arc<Shared>,
    /// Holds the HTTP/2 connections' counter after the subscribers are gone.
    spec: Arc<Spec>,
    tasks: JoinSet<Outcome>,
    connect_s: f64,
    hit_deadline: bool,
    requested: u64,
    index_offset: u64,
}

/// What the subscribers did, once stopped.
struct Stopped {
    subscribers: Subscribers,
    tallies: Vec<tally::Tally>,
}

impl Fleet {
    /// Starts `n` subscribers and waits until each is connected or failed,
    /// or the deadline passes.
    async fn connect(
        args: &SubscribeArgs,
        n: u64,
        events: u64,
        reconnect: bool,
        deadline: Instant,
    ) -> Self {
        let shared = Arc::new(Shared::new(args.topics, args.connect_concurrency as usize));
        let spec = Arc::new(Spec {
            sub_url: args.sub_url.clone(),
            topics: args.topics,
            events,
            token: args.sub_token.clone(),
            last_event_id: args.last_event_id.clone(),
            source_ips: args.source_ips,
            connect_timeout: args.connect_timeout,
            reconnect,
            http2: args
                .http2
                .then(|| h2c::Connections::new(n, args.index_offset, args.streams_per_connection)),
            app: args.app.clone(),
        });
        let started = Instant::now();
        let mut tasks = JoinSet::new();
        for i in 0..n {
            tasks.spawn(subscriber::subscribe(
                shared.clone(),
                spec.clone(),
                args.index_offset + i,
            ));
        }
        let mut hit_deadline = false;
        loop {
            let done =
                shared.connected.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed);
            if done >= n {
                break;
            }
            if Instant::now() >= deadline {
                hit_deadline = true;
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        Self {
            shared,
            spec,
            tasks,
            connect_s: started.elapsed().as_secs_f64(),
            hit_deadline,
            requested: args.subscribers,
            index_offset: args.index_offset,
        }
    }

    /// Cancels every subscriber and collects what they counted.
    async fn stop(mut self) -> Stopped {
        self.shared.cancel.cancel();
        let mut tallies = Vec::new();
        let mut subscribers = Subscribers {
            protocol: if self.spec.http2.is_some() {
                "h2c"
            } else {
                "http/1.1"
            },
            streams_per_connection: self.spec.http2.as_ref().map_or(1, |c| c.per_connection()),
            requested: self.requested,
            attempted: self.tasks.len() as u64,
            index_offset: self.index_offset,
            connect_s: self.connect_s,
            ..Subscribers::default()
        };
        let until = Instant::now() + STOP_GRACE;
        loop {
            let joined = match tokio::time::timeout_at(until, self.tasks.join_next()).await {
                Ok(Some(joined)) => joined,
                Ok(None) => break,
                Err(_) => {
                    // Dropping the JoinSet aborts the stragglers.
                    subscribers.ended_samples.push(format!(
                        "{} subscriber tasks did not stop within {STOP_GRACE:?}",
                        self.tasks.len()
                    ));
                    break;
                }
            };
            match joined {
                Ok(Outcome::Streamed { tally, ended }) => {
                    match ended {
                        None => subscribers.open_at_end += 1,
                        Some(why) => {
                            subscribers.ended_early += 1;
                            if subscribers.ended_samples.len() < MAX_SAMPLES
                                && !subscribers.ended_samples.contains(&why)
                            {
                                subscribers.ended_samples.push(why);
                            }
                        }
                    }
                    tallies.push(tally);
                }
                Ok(Outcome::Failed) => {}
                Err(e) => subscribers
                    .ended_samples
                    .push(format!("subscriber task: {e}")),
            }
        }
        subscribers.connected = self.shared.connected.load(Ordering::Relaxed);
        subscribers.connections = match &self.spec.http2 {
            Some(connections) => {
                connections.close().await;
                connections.opened()
            }
            None => self.shared.h1_connections.load(Ordering::Relaxed),
        };
        let failures = self
            .shared
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        // Attempts cut off by the deadline (or stop) count as timed out.
        let unanswered = subscribers
            .attempted
            .saturating_sub(subscribers.connected + self.shared.failed.load(Ordering::Relaxed));
        subscribers.failed = subscribers.attempted - subscribers.connected;
        subscribers.refused = failures.refused;
        subscribers.timed_out = failures.timed_out + unanswered;
        subscribers.no_local_port = failures.no_local_port;
        subscribers.no_fd = failures.no_fd;
        subscribers.status = failures
            .status
            .iter()
            .map(|(status, n)| (status.to_string(), *n))
            .collect();
        subscribers.other = failures.other;
        subscribers.failure_samples = failures.samples;
        Stopped {
            subscribers,
            tallies,
        }
    }
}

/// Samples the server's RSS in the background and keeps the highest.
struct RssPeak {
    peak: Arc<Mutex<Option<u64>>>,
    stop: CancellationToken,
    /// The sampling task, awaited by [`RssPeak::stop`].
    task: Option<JoinHandle<()>>,
}

impl RssPeak {
    fn start(pid: Option<u32>) -> Self {
        let peak = Arc::new(Mutex::new(None));
        let stop = CancellationToken::new();
        let task = pid.map(|pid| {
            let (peak, stop) = (peak.clone(), stop.clone());
            tokio::spawn(async move {
                while let Some(sample) = procstat::sample(pid) {
                    {
                        let mut peak = peak.lock().unwrap_or_else(|e| e.into_inner());
                        *peak =
                            Some(peak.map_or(sample.rss_bytes, |p: u64| p.max(sample.rss_bytes)));
                    }
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(RSS_SAMPLE_EVERY) => {}
                    }
                }
            })
        });
        Self { peak, stop, task }
    }

    /// Ends the sampling, waits for the task, and returns the highest sample.
    async fn stop(self) -> Option<u64> {
        self.stop.cancel();
        if let Some(task) = self.task {
            let _ = task.await;
        }
        *self.peak.lock().unwrap_or_else(|e| e.into_inner())
    }
}
