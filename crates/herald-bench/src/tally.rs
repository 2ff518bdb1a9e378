//! Accounting: what each subscriber received ([`Tally`]: lost, duplicated,
//! reversed), the bench payload ([`Payload`]), and latency histograms
//! ([`Latencies`], shared between subscribers through [`Recorder`]).

use std::sync::Mutex;

use hdrhistogram::Histogram;
use serde::Deserialize;

/// Highest latency a histogram tracks, in µs (one hour); larger values are
/// recorded as this.
pub const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Significant decimal digits of every histogram.
pub const SIGFIG: u8 = 3;

/// Histogram shards the subscribers record into. One histogram pair per
/// subscriber would cost ~370 KB each at µs resolution over an hour's range
/// (3.7 GB for 10,000 subscribers), so subscriber `i` records into shard
/// `i % SHARDS` under a mutex, once per socket read. With two cores the
/// lock is never contended for long.
pub const SHARDS: usize = 16;

/// The fields of the JSON payload the bench publishes; anything else
/// (`pad`) is ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub struct Payload {
    /// Global sequence number: event `k` of the run.
    pub seq: u64,
    /// Wall-clock time the publisher sent it, ns since the Unix epoch.
    pub sent_ns: u64,
    /// Wall-clock time it was scheduled for, ns since the Unix epoch.
    pub sched_ns: u64,
    /// The topic index it was published on.
    pub topic: u32,
}

impl Payload {
    /// Parses an event's data; `None` if it is not a bench payload.
    pub fn parse(data: &str) -> Option<Self> {
        serde_json::from_str(data).ok()
    }

    /// The payload as JSON, padded with a `pad` field to about `size`
    /// bytes.
    pub fn to_json(&self, size: usize) -> String {
        let Self {
            seq,
            sent_ns,
            sched_ns,
            topic,
        } = self;
        let base =
            format!(r#"{{"seq":{seq},"sent_ns":{sent_ns},"sched_ns":{sched_ns},"topic":{topic}"#);
        // `,"pad":""}` is 10 bytes.
        let pad = size.saturating_sub(base.len() + 10);
        if pad == 0 {
            format!("{base}}}")
        } else {
            format!(r#"{base},"pad":"{}"}}"#, "x".repeat(pad))
        }
    }
}

/// What one delivery was, for [`Tally::record`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// First time seen, after everything seen so far.
    New,
    /// First time seen, but a higher `seq` was delivered before it: a
    /// reversal of this event and event `after` (see [`crate::reversal`]).
    Reversal {
        /// The event it came after: of those seen with a higher `seq`, the
        /// one sent last, as far as [`Tally::record`] can tell.
        after: u64,
    },
    /// Already delivered to this subscriber.
    Duplicate,
    /// Not an event this subscriber should get: another topic, or a `seq`
    /// outside the run.
    Unexpected,
}

/// One subscriber's accounting.
///
/// A subscriber on topic `t` of `K` expects the events `k` with
/// `k % K == t`, `k < events`. Each is a bit in `seen`, at `k / K`.
#[derive(Clone, Debug)]
pub struct Tally {
    topic: u64,
    topics: u64,
    events: u64,
    /// One bit per event of this topic.
    seen: Vec<u64>,
    /// Highest `seq` delivered so far.
    max_seq: Option<u64>,
    /// The event delivered so far that was sent last: `(sent_ns, seq)`.
    last_sent: Option<(u64, u64)>,
    /// Distinct events delivered (new and reversed).
    pub delivered: u64,
    /// Deliveries of an event already delivered.
    pub duplicates: u64,
    /// Deliveries that came after a higher `seq` (concurrent or not).
    pub reversals: u64,
    /// Deliveries of events not meant for this subscriber.
    pub unexpected: u64,
    /// SSE messages whose data is not a bench payload (`connected`
    /// greetings and the like).
    pub ignored: u64,
    /// Wall-clock time of the last delivery, ns since the epoch (0: none).
    pub last_delivery_ns: u64,
}

impl Tally {
    /// Accounting for a subscriber on topic `topic` of `topics`, in a run
    /// of `events` events.
    pub fn new(topic: u64, topics: u64, events: u64) -> Self {
        let topics = topics.max(1);
        let mine = events_on_topic(topic, topics, events);
        Self {
            topic,
            topics,
            events,
            seen: vec![0; usize::try_from(mine.div_ceil(64)).unwrap_or(0)],
            max_seq: None,
            last_sent: None,
            delivered: 0,
            duplicates: 0,
            reversals: 0,
            unexpected: 0,
            ignored: 0,
            last_delivery_ns: 0,
        }
    }

    /// Accounts for one delivered payload.
    ///
    /// A reversal names the event it came after. Whether it breaks the order
    /// the server owed depends on whether some event `b > seq` seen before it
    /// was sent after `seq` was acknowledged ([`crate::reversal::kind`]); the
    /// one most likely to be is the one sent last. The tally keeps two
    /// candidates: the event sent last (by the payloads' `sent_ns`), when its
    /// `seq` is higher, else the highest `seq`. That finds a violation whenever
    /// one exists, unless the event sent last has a lower `seq`; and then that
    /// event, sent after this one was acknowledged, was delivered before it:
    /// the server's order broken too, though not in a way `seq`s show.
    pub fn record(&mut self, payload: &Payload) -> Verdict {
        let seq = payload.seq;
        if seq >= self.events
            || seq % self.topics != self.topic
            || u64::from(payload.topic) != self.topic
        {
            self.unexpected += 1;
            return Verdict::Unexpected;
        }
        let bit = seq / self.topics;
        let (word, mask) = ((bit / 64) as usize, 1u64 << (bit % 64));
        if self.seen[word] & mask != 0 {
            self.duplicates += 1;
            return Verdict::Duplicate;
        }
        self.seen[word] |= mask;
        self.delivered += 1;
        let verdict = match self.max_seq {
            Some(max) if seq < max => {
                self.reversals += 1;
                let after = match self.last_sent {
                    Some((_, last)) if last > seq => last,
                    _ => max,
                };
                Verdict::Reversal { after }
            }
            _ => {
                self.max_seq = Some(seq);
                Verdict::New
            }
        };
        if self
            .last_sent
            .is_none_or(|(sent_ns, _)| payload.sent_ns > sent_ns)
        {
            self.last_sent = Some((payload.sent_ns, seq));
        }
        verdict
    }

    /// Whether event `seq` was delivered.
    pub fn saw(&self, seq: u64) -> bool {
        if seq >= self.events || seq % self.topics != self.topic {
            return false;
        }
        let bit = seq / self.topics;
        self.seen[(bit / 64) as usize] & (1 << (bit % 64)) != 0
    }

    /// How many events with `seq < end` were delivered.
    pub fn seen_before(&self, end: u64) -> u64 {
        let bits = events_on_topic(self.topic, self.topics, end.min(self.events));
        let (words, rest) = ((bits / 64) as usize, bits % 64);
        let full: u64 = self.seen[..words]
            .iter()
            .map(|w| u64::from(w.count_ones()))
            .sum();
        let partial = if rest > 0 {
            u64::from((self.seen[words] & ((1u64 << rest) - 1)).count_ones())
        } else {
            0
        };
        full + partial
    }

    /// Of the events in `published` (sorted `seq`s that the server
    /// acknowledged), how many this subscriber should have received, and how
    /// many of those it did not.
    pub fn expected_and_lost(&self, published: &[u64]) -> (u64, u64) {
        let mut expected = 0;
        let mut lost = 0;
        for &seq in published {
            if seq % self.topics == self.topic {
                expected += 1;
                if !self.saw(seq) {
                    lost += 1;
                }
            }
        }
        (expected, lost)
    }

    /// The topic index.
    pub fn topic(&self) -> u64 {
        self.topic
    }
}

/// How many of events `0..events` fall on `topic` of `topics`.
pub fn events_on_topic(topic: u64, topics: u64, events: u64) -> u64 {
    let topics = topics.max(1);
    events / topics + u64::from(topic < events % topics)
}

/// Latency from send and from schedule, in µs.
#[derive(Clone, Debug)]
pub struct Latencies {
    /// Delivery time minus the publisher's send time.
    pub from_send: Histogram<u64>,
    /// Delivery time minus the time the event was scheduled for.
    pub from_sched: Histogram<u64>,
}

impl Default for Latencies {
    fn default() -> Self {
        Self {
            from_send: histogram(),
            from_sched: histogram(),
        }
    }
}

impl Latencies {
    /// Records one delivery received at `now_ns`. A timestamp from the
    /// future (clock stepped) counts as zero.
    pub fn record(&mut self, now_ns: u64, payload: &Payload) {
        self.from_send
            .saturating_record(now_ns.saturating_sub(payload.sent_ns) / 1_000);
        self.from_sched
            .saturating_record(now_ns.saturating_sub(payload.sched_ns) / 1_000);
    }

    /// Adds another set of histograms into this one.
    pub fn merge(&mut self, other: &Self) {
        // Same bounds on both sides, so `add` cannot fail.
        let _ = self.from_send.add(&other.from_send);
        let _ = self.from_sched.add(&other.from_sched);
    }
}

/// A histogram of µs values from 1 µs to [`MAX_LATENCY_US`].
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, SIGFIG).expect("valid histogram bounds")
}

/// [`SHARDS`] latency histograms the subscribers share.
#[derive(Debug)]
pub struct Recorder {
    shards: Vec<Mutex<Latencies>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

impl Recorder {
    /// Records deliveries of subscriber `index`, all received at `now_ns`.
    pub fn record(&self, index: u64, now_ns: u64, payloads: &[Payload]) {
        if payloads.is_empty() {
            return;
        }
        let shard = &self.shards[(index % SHARDS as u64) as usize];
        let mut latencies = shard.lock().unwrap_or_else(|e| e.into_inner());
        for payload in payloads {
            latencies.record(now_ns, payload);
        }
    }

    /// All shards merged.
    pub fn merged(&self) -> Latencies {
        let mut all = Latencies::default();
        for shard in &self.shards {
            all.merge(&shard.lock().unwrap_or_else(|e| e.into_inner()));
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(seq: u64, topic: u32) -> Payload {
        Payload {
            seq,
            sent_ns: 0,
            sched_ns: 0,
            topic,
        }
    }

    /// Feeds `seqs` to a subscriber of topic 0 of `topics` in a run of
    /// `events`; compares `delivered dup reversed unexpected lost` (lost against
    /// every event published).
    fn check(topics: u64, events: u64, seqs: &[u64], expect: [u64; 5]) {
        let mut tally = Tally::new(0, topics, events);
        for &seq in seqs {
            tally.record(&payload(seq, (seq % topics) as u32));
        }
        let published: Vec<u64> = (0..events).collect();
        let (expected, lost) = tally.expected_and_lost(&published);
        assert_eq!(expected, events_on_topic(0, topics, events));
        let got = [
            tally.delivered,
            tally.duplicates,
            tally.reversals,
            tally.unexpected,
            lost,
        ];
        assert_eq!(
            got, expect,
            "topics {topics}, events {events}, seqs {seqs:?}"
        );
    }

    #[test]
    fn accounting() {
        let table: &[(u64, u64, &[u64], [u64; 5])] = &[
            // topics, events, deliveries: [delivered, dup, reversed, unexpected, lost]
            (1, 5, &[0, 1, 2, 3, 4], [5, 0, 0, 0, 0]),
            // One lost event.
            (1, 5, &[0, 1, 3, 4], [4, 0, 0, 0, 1]),
            // Lost at the very end and at the start.
            (1, 5, &[1, 2, 3], [3, 0, 0, 0, 2]),
            // One duplicated event: it is not a reversal, and not lost.
            (1, 5, &[0, 1, 1, 2, 3, 4], [5, 1, 0, 0, 0]),
            // A late duplicate of an old event is a duplicate only.
            (1, 5, &[0, 1, 2, 3, 4, 0], [5, 1, 0, 0, 0]),
            // One reordered event: 2 after 3.
            (1, 5, &[0, 1, 3, 2, 4], [5, 0, 1, 0, 0]),
            // Everything after a jump back counts: 1 and 2 both came after 3.
            (1, 5, &[0, 3, 1, 2, 4], [5, 0, 2, 0, 0]),
            // All three at once.
            (1, 6, &[0, 2, 1, 2, 4, 5], [5, 1, 1, 0, 1]),
            // Nothing received.
            (1, 3, &[], [0, 0, 0, 0, 3]),
            // Outside the run.
            (1, 3, &[0, 1, 2, 3], [3, 0, 0, 1, 0]),
            // Two topics: this subscriber wants the even ones.
            (2, 6, &[0, 2, 4], [3, 0, 0, 0, 0]),
            (2, 6, &[0, 1, 4], [2, 0, 0, 1, 1]),
            (2, 7, &[0, 2, 4, 6, 6], [4, 1, 0, 0, 0]),
            // Beyond 64 events: the bitset spans words.
            (
                1,
                130,
                &(0..130).rev().collect::<Vec<_>>(),
                [130, 0, 129, 0, 0],
            ),
        ];
        for (topics, events, seqs, expect) in table {
            check(*topics, *events, seqs, *expect);
        }
    }

    #[test]
    fn seen_before_counts_a_prefix() {
        let mut tally = Tally::new(1, 2, 200);
        for seq in [1, 3, 7, 129, 131, 199] {
            tally.record(&payload(seq, 1));
        }
        let table = [
            (0, 0),
            (1, 0),
            (2, 1),
            (4, 2),
            (8, 3),
            (129, 3),
            (130, 4),
            (132, 5),
            (199, 5),
            (200, 6),
            (1_000, 6),
        ];
        for (end, want) in table {
            assert_eq!(tally.seen_before(end), want, "end {end}");
        }
    }

    #[test]
    fn payload_topic_must_match() {
        let mut tally = Tally::new(1, 2, 10);
        assert_eq!(tally.record(&payload(3, 1)), Verdict::New);
        // Right seq parity but the payload says topic 0.
        assert_eq!(tally.record(&payload(5, 0)), Verdict::Unexpected);
        assert_eq!(tally.record(&payload(4, 0)), Verdict::Unexpected);
        assert_eq!(tally.record(&payload(1, 1)), Verdict::Reversal { after: 3 });
        assert_eq!(tally.record(&payload(3, 1)), Verdict::Duplicate);
        // Only acknowledged events are expected.
        assert_eq!(tally.expected_and_lost(&[1, 2, 3, 7]), (3, 1));
    }

    #[test]
    fn events_per_topic() {
        let table = [
            (0, 1, 10, 10),
            (0, 3, 10, 4),
            (1, 3, 10, 3),
            (2, 3, 10, 3),
            (5, 10, 3, 0),
            (0, 0, 4, 4),
        ];
        for (topic, topics, events, want) in table {
            assert_eq!(
                events_on_topic(topic, topics, events),
                want,
                "{topic} {topics} {events}"
            );
        }
    }

    #[test]
    fn payloads() {
        let p = Payload {
            seq: 7,
            sent_ns: 1_700_000_000_000_000_000,
            sched_ns: 1_699_999_999_999_000_000,
            topic: 3,
        };
        let small = p.to_json(0);
        assert_eq!(
            small,
            r#"{"seq":7,"sent_ns":1700000000000000000,"sched_ns":1699999999999000000,"topic":3}"#
        );
        assert_eq!(Payload::parse(&small), Some(p));
        for size in [100, 200, 1024, 4096] {
            let padded = p.to_json(size);
            assert_eq!(padded.len(), size, "size {size}");
            assert_eq!(Payload::parse(&padded), Some(p));
        }
        for junk in [
            "",
            "hello",
            "{}",
            r#"{"seq":1}"#,
            "[1,2]",
            r#"{"seq":-1,"sent_ns":0,"sched_ns":0,"topic":0}"#,
        ] {
            assert_eq!(Payload::parse(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn latency_recording() {
        let mut latencies = Latencies::default();
        let p = Payload {
            seq: 0,
            sent_ns: 10_000_000,
            sched_ns: 5_000_000,
            topic: 0,
        };
        // 1 ms after send, 6 ms after schedule.
        latencies.record(11_000_000, &p);
        // Clock went backwards: counts as zero, no panic.
        latencies.record(1_000, &p);
        assert_eq!(latencies.from_send.len(), 2);
        let h = &latencies.from_send;
        assert!(h.equivalent(h.max(), 1_000), "{}", h.max());
        assert_eq!(h.min(), 0);
        let h = &latencies.from_sched;
        assert!(h.equivalent(h.max(), 6_000), "{}", h.max());

        let recorder = Recorder::default();
        let late = Payload {
            sent_ns: 0,
            sched_ns: 0,
            ..p
        };
        recorder.record(0, 2_000_000, &[late, late]);
        recorder.record(5, 4_000_000, &[late]);
        // Beyond the histogram's range: saturates at the maximum.
        recorder.record(17, u64::MAX, &[late]);
        let merged = recorder.merged();
        assert_eq!(merged.from_send.len(), 4);
        let h = &merged.from_send;
        assert!(h.equivalent(h.value_at_quantile(0.5), 2_000));
        assert!(merged.from_send.max() >= MAX_LATENCY_US);
        assert!(
            merged
                .from_send
                .equivalent(merged.from_send.max(), MAX_LATENCY_US)
        );
    }
}
