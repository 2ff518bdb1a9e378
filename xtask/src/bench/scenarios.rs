//! The scenarios ([`Scenario`]): which servers each applies to, the `herald-bench` runs it
//! makes, and how BENCHMARKS.md describes it.

use anyhow::{Result, bail};

use super::peers::Peer;

/// Subscribers' source addresses: 127.0.0.1 .. 127.0.0.N, so no run runs out of ports.
pub(super) const SOURCE_IPS: &str = "4";

/// Publish requests in flight at once in S1, S2 and S4.
///
/// With one, a server that acknowledges a publish only after fanning it out (Nchan does, in
/// its one worker) caps the rate at one event per fan-out time, whatever its throughput; a
/// real application publishes from several processes. The open-loop schedule is unchanged:
/// the extra publishers only send events that are already due.
pub(super) const PUBLISHERS: &str = "4";

/// The scenarios, S1-S6 and S1-max.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Scenario {
    S1,
    /// S1 with five times the events per second: what each server delivers when the offered
    /// load (1,000,000 deliveries/s) is more than any of them can.
    S1Max,
    S2,
    S3,
    S4,
    /// Reconnect storm: every subscriber drops, misses events, resumes with `Last-Event-ID`.
    S5,
    S6,
}

impl Scenario {
    pub(super) const DEFAULT: [Scenario; 7] = [
        Scenario::S1,
        Scenario::S1Max,
        Scenario::S2,
        Scenario::S3,
        Scenario::S4,
        Scenario::S5,
        Scenario::S6,
    ];

    pub(super) fn parse(s: &str) -> Result<Scenario> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "s1" => Scenario::S1,
            "s1max" => Scenario::S1Max,
            "s2" => Scenario::S2,
            "s3" => Scenario::S3,
            "s4" => Scenario::S4,
            "s5" => Scenario::S5,
            "s6" => Scenario::S6,
            _ => bail!("unknown scenario `{s}` (s1, s1max, s2, s3, s4, s5, s6)"),
        })
    }

    pub(super) fn id(self) -> &'static str {
        match self {
            Scenario::S1 => "s1",
            Scenario::S1Max => "s1max",
            Scenario::S2 => "s2",
            Scenario::S3 => "s3",
            Scenario::S4 => "s4",
            Scenario::S5 => "s5",
            Scenario::S6 => "s6",
        }
    }

    pub(super) fn title(self) -> &'static str {
        match self {
            Scenario::S1 => "S1 fan-out",
            Scenario::S1Max => "S1-max fan-out at saturation",
            Scenario::S2 => "S2 wide",
            Scenario::S3 => "S3 idle memory",
            Scenario::S4 => "S4 many topics",
            Scenario::S5 => "S5 reconnect storm",
            Scenario::S6 => "S6 durable publish throughput",
        }
    }

    pub(super) fn applies_to(self, peer: Peer) -> bool {
        match self {
            Scenario::S6 => peer == Peer::Herald,
            // The raw limit is about delivery; its memory per connection means nothing, and
            // it keeps no history to resume from.
            Scenario::S3 | Scenario::S5 => peer != Peer::Raw,
            _ => true,
        }
    }

    /// The `herald-bench` runs of this scenario: (label, subcommand, arguments).
    ///
    /// `--sub-url`, `--pub-url`, `--publish-kind`, `--server-pid` and `--threads` are added
    /// per server by [`bench_command`](super::harness::bench_command).
    pub(super) fn runs(self, quick: bool) -> Vec<(String, &'static str, Vec<String>)> {
        let q = |full: u64, quick_value: u64| if quick { quick_value } else { full };
        let args = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        match self {
            // 1,000 subscribers, one topic, 200 events/s for 10 s.
            Scenario::S1 => vec![(
                "run".into(),
                "run",
                [
                    args(&["--subscribers", &q(1000, 100).to_string(), "--topics", "1"]),
                    args(&["--events", &q(2000, 200).to_string(), "--rate", "200"]),
                    args(&["--publishers", PUBLISHERS]),
                    args(&["--drain", "10s", "--duration-limit", "90s"]),
                ]
                .concat(),
            )],
            // 1,000 subscribers, one topic, 1,000 events/s for 5 s.
            Scenario::S1Max => vec![(
                "run".into(),
                "run",
                [
                    args(&["--subscribers", &q(1000, 100).to_string(), "--topics", "1"]),
                    args(&["--events", &q(5000, 500).to_string(), "--rate", "1000"]),
                    args(&["--publishers", PUBLISHERS]),
                    args(&["--drain", "10s", "--duration-limit", "90s"]),
                ]
                .concat(),
            )],
            // 10,000 subscribers, 20 events/s for 10 s.
            Scenario::S2 => vec![(
                "run".into(),
                "run",
                [
                    args(&[
                        "--subscribers",
                        &q(10_000, 1000).to_string(),
                        "--topics",
                        "1",
                    ]),
                    args(&["--events", &q(200, 20).to_string(), "--rate", "20"]),
                    args(&["--publishers", PUBLISHERS]),
                    args(&["--source-ips", SOURCE_IPS, "--connect-timeout", "30s"]),
                    args(&["--drain", "10s", "--duration-limit", "150s"]),
                ]
                .concat(),
            )],
            // 10,000 idle connections, one topic.
            Scenario::S3 => vec![(
                "idle".into(),
                "idle",
                [
                    args(&[
                        "--subscribers",
                        &q(10_000, 1000).to_string(),
                        "--topics",
                        "1",
                    ]),
                    args(&["--source-ips", SOURCE_IPS, "--connect-timeout", "30s"]),
                    args(&["--hold", "5s", "--duration-limit", "120s"]),
                ]
                .concat(),
            )],
            // 10,000 subscribers each on its own topic; 1,000 events/s for 10 s, one per topic.
            Scenario::S4 => vec![(
                "run".into(),
                "run",
                [
                    args(&["--subscribers", &q(10_000, 1000).to_string()]),
                    args(&["--topics", &q(10_000, 1000).to_string()]),
                    args(&["--events", &q(10_000, 1000).to_string(), "--rate", "1000"]),
                    args(&["--publishers", PUBLISHERS]),
                    args(&["--source-ips", SOURCE_IPS, "--connect-timeout", "30s"]),
                    args(&["--drain", "10s", "--duration-limit", "150s"]),
                ]
                .concat(),
            )],
            // 10,000 subscribers, one topic, 20 events/s: all drop after event 50, miss 100,
            // reconnect with Last-Event-ID while the last 50 are published.
            Scenario::S5 => vec![(
                "run".into(),
                "run",
                [
                    args(&[
                        "--subscribers",
                        &q(10_000, 500).to_string(),
                        "--topics",
                        "1",
                    ]),
                    args(&["--events", "200", "--rate", "20"]),
                    args(&["--reconnect-after", "50", "--missed", "100"]),
                    args(&["--publishers", "1"]),
                    args(&["--source-ips", SOURCE_IPS, "--connect-timeout", "30s"]),
                    args(&["--connect-concurrency", "1024"]),
                    args(&["--drain", "10s", "--catch-up-limit", "15s"]),
                    args(&["--duration-limit", "150s"]),
                ]
                .concat(),
            )],
            // Acknowledged publishes per second, unthrottled, 1 / 16 / 64 publishers.
            Scenario::S6 => [(1, 10_000), (16, 60_000), (64, 120_000)]
                .into_iter()
                .map(|(publishers, events)| {
                    (
                        format!("publishers-{publishers}"),
                        "run",
                        [
                            args(&["--subscribers", "1", "--topics", "1", "--rate", "0"]),
                            args(&["--publishers", &publishers.to_string()]),
                            args(&["--events", &q(events, events / 10).to_string()]),
                            args(&["--settle", "200ms", "--drain", "5s"]),
                            args(&["--duration-limit", "40s"]),
                        ]
                        .concat(),
                    )
                })
                .collect(),
        }
    }
}

pub(super) fn scenario_description(scenario: Scenario, quick: bool) -> String {
    let full = match scenario {
        Scenario::S1 => {
            "1,000 subscribers on one topic, 200 events/s for 10 s (2,000 events): 200,000 \
             deliveries/s offered, so a server that keeps up delivers exactly that."
        }
        Scenario::S1Max => {
            "Beyond S1's load: S1 at 1,000 events/s for 5 s (5,000 events), 1,000,000 \
             deliveries/s offered, more than any server here (or herald-bench on one core) can \
             take: deliveries/s is each server's ceiling, latency is mostly backlog."
        }
        Scenario::S2 => {
            "10,000 subscribers on one topic, 20 events/s for 10 s (200 events): 200,000 \
             deliveries/s offered."
        }
        Scenario::S3 => {
            "10,000 idle connections on one topic, held 5 s; RSS per connection. For Herald also \
             the most connections one process holds (two bench processes of 9,900, each with \
             the 20,000-descriptor hard limit), with a projection for 1,000,000."
        }
        Scenario::S4 => {
            "10,000 subscribers each on its own topic; 1,000 events/s for 10 s, event k on topic \
             k mod 10,000 (each subscriber gets one event)."
        }
        Scenario::S5 => {
            "10,000 subscribers on one topic, 20 events/s (200 events). After event 50 has \
             reached every subscriber, all close their streams at once; 100 events are published \
             while they are away; then all reconnect at once (at most 1,024 connects in flight) \
             with `Last-Event-ID` set to the `id` of the last event each received, while the last \
             50 events are published. \"All caught up\" is the time from the reconnect signal \
             until the last subscriber has every event published before it; lost / dup / out of \
             order count over the whole run, per subscriber; catch-up times include herald-bench's \
             own reading of every replayed event on its one core. Nchan runs with \
             `nchan_message_buffer_length 200` here (100 in the other scenarios), so every \
             event of the run stays buffered. Target for Herald: all caught up within 2 s, zero \
             loss, zero duplicates."
        }
        Scenario::S6 => {
            "Herald only: acknowledged publishes per second, unthrottled, with 1, 16 and 64 \
             concurrent publishers (one subscriber listening), `--durability full` (fsync per \
             commit) and `normal`."
        }
    };
    if quick {
        format!("{full} **Quick run: about a tenth of the subscribers and events.**")
    } else {
        full.to_owned()
    }
}
