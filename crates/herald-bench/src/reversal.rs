//! Reversals: an event delivered after a later one, and whether the server
//! owed the other order.
//!
//! A delivery of event `a` to a subscriber that already got an event `b > a`
//! is a *reversal*. With several publishers (`--publishers`), events `k` and
//! `k + 1` can be in flight on two connections at once and reach the server in
//! either order, and the server may order them either way: such a reversal is
//! *concurrent*. Only a reversal of an event whose publish had been
//! acknowledged before the later one's was sent is an ordering *violation*
//! ([`kind`] holds the rule).
//!
//! A server may deliver an event before it answers its publish, so whether a
//! reversal is a violation is often not known when it is delivered.
//! Subscribers record `(a, b)` pairs ([`Reversals`]), and the run classifies
//! them at the end ([`classify`]), when every send and acknowledgement time is
//! known.

use std::{
    collections::{HashMap, hash_map::Entry},
    sync::Mutex,
};

use crate::{publisher::Attempt, tally::SHARDS};

/// Violating pairs kept as samples for the report.
pub const MAX_SAMPLES: usize = 5;

/// What a reversal is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The two publishes overlapped (or the earlier one's outcome is
    /// unknown): the server was free to order them either way.
    Concurrent,
    /// The earlier event was acknowledged before the later one was sent: the
    /// server delivered them in an order it had no right to.
    Violation,
}

/// The ordering rule: what a delivery of event `a` after event `b > a` is,
/// given the requests that published them (`None`: no request of this run
/// did).
///
/// It is a [`Kind::Violation`] when `a`'s publish was acknowledged (a 2xx
/// response received) before `b`'s was sent: the server had taken `a` before
/// it could know of `b`, so `a` comes first. In every other case it is
/// [`Kind::Concurrent`]:
///
/// - `b` was sent while `a` was still in flight, or before `a` was sent: the
///   requests overlapped and the server chose the order.
/// - `a` was never acknowledged (its request failed, timed out or got another
///   status, yet the event was delivered): the server may have taken it at any
///   time up to the answer that never came, so nothing shows that it came
///   first, whenever `b` was sent.
/// - Either request is unknown: nothing to judge by.
///
/// The times err the same way: `sent_ns` is taken before the request goes to
/// the HTTP client and `acked_ns` after the response is read, so a violation
/// is certain, and only one within the bench's own few microseconds of
/// overhead passes for concurrent.
pub fn kind(a: Option<&Attempt>, b: Option<&Attempt>) -> Kind {
    match (a.and_then(|a| a.acked_ns), b) {
        (Some(acked_ns), Some(b)) if acked_ns < b.sent_ns => Kind::Violation,
        _ => Kind::Concurrent,
    }
}

/// The reversal pairs `(a, b)` of a run, with how many deliveries made each;
/// subscriber `i` records into shard `i % SHARDS` once per socket read, like
/// [`Recorder`](crate::tally::Recorder).
///
/// Memory grows with the distinct pairs, not with the deliveries: the
/// subscribers of a topic see the same server order and share their pairs, and
/// a concurrent pair forms only between events in flight together, so there
/// are at most a few per event and publisher. Only a server that really
/// reorders makes more, one per delivery at worst, and each of those is a
/// finding.
#[derive(Debug)]
pub struct Reversals {
    shards: Vec<Mutex<HashMap<(u64, u64), u64>>>,
}

impl Default for Reversals {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

impl Reversals {
    /// Records reversals `(a, b)` delivered to subscriber `index`.
    pub fn record(&self, index: u64, pairs: &[(u64, u64)]) {
        if pairs.is_empty() {
            return;
        }
        let shard = &self.shards[(index % SHARDS as u64) as usize];
        let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
        for &pair in pairs {
            *shard.entry(pair).or_default() += 1;
        }
    }

    /// All shards merged: pair -> deliveries.
    pub fn merged(&self) -> HashMap<(u64, u64), u64> {
        let mut all = HashMap::new();
        for shard in &self.shards {
            for (&pair, &n) in shard.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                match all.entry(pair) {
                    Entry::Occupied(mut e) => *e.get_mut() += n,
                    Entry::Vacant(e) => {
                        e.insert(n);
                    }
                }
            }
        }
        all
    }
}

/// A run's reversals, by [`kind`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Classified {
    /// Deliveries that were ordering violations.
    pub violations: u64,
    /// Deliveries reversed by publishes that overlapped.
    pub concurrent: u64,
    /// The first few violating pairs `(a, b)`, lowest first.
    pub samples: Vec<(u64, u64)>,
}

/// Classifies `pairs` (pair -> deliveries) against the run's publish
/// requests, `attempts` sorted by `seq`.
pub fn classify(pairs: &HashMap<(u64, u64), u64>, attempts: &[Attempt]) -> Classified {
    let find = |seq: u64| {
        attempts
            .binary_search_by_key(&seq, |a| a.seq)
            .ok()
            .map(|i| &attempts[i])
    };
    let mut classified = Classified::default();
    let mut violating = Vec::new();
    for (&(a, b), &n) in pairs {
        match kind(find(a), find(b)) {
            Kind::Concurrent => classified.concurrent += n,
            Kind::Violation => {
                classified.violations += n;
                violating.push((a, b));
            }
        }
    }
    violating.sort_unstable();
    violating.truncate(MAX_SAMPLES);
    classified.samples = violating;
    classified
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tally::{Payload, Tally, Verdict};

    /// A request for `seq` sent at `sent`, acknowledged at `acked`.
    type Publish = (u64, u64, Option<u64>);

    /// The publishes, each subscriber's deliveries, and `(violations, concurrent)`.
    type Case<'a> = (&'a [Publish], &'a [&'a [u64]], (u64, u64));

    /// Publishes `attempts` in a one-topic run, feeds each subscriber its
    /// deliveries (seqs, in order) and compares `(violations, concurrent)`.
    fn check(attempts: &[Publish], subscribers: &[&[u64]], expect: (u64, u64)) {
        let mut attempts: Vec<Attempt> = attempts
            .iter()
            .map(|&(seq, sent_ns, acked_ns)| Attempt {
                seq,
                sent_ns,
                acked_ns,
            })
            .collect();
        attempts.sort_unstable_by_key(|a| a.seq);
        let events = attempts.iter().map(|a| a.seq + 1).max().unwrap_or(0);
        let reversals = Reversals::default();
        for (index, deliveries) in subscribers.iter().enumerate() {
            let mut tally = Tally::new(0, 1, events);
            let mut pairs = Vec::new();
            for &seq in *deliveries {
                let sent_ns = attempts[seq as usize].sent_ns;
                let payload = Payload {
                    seq,
                    sent_ns,
                    sched_ns: 0,
                    topic: 0,
                };
                if let Verdict::Reversal { after } = tally.record(&payload) {
                    pairs.push((seq, after));
                }
            }
            assert_eq!(tally.reversals, pairs.len() as u64);
            reversals.record(index as u64, &pairs);
        }
        let c = classify(&reversals.merged(), &attempts);
        assert_eq!(
            (c.violations, c.concurrent),
            expect,
            "publishes {attempts:?}, deliveries {subscribers:?}"
        );
        // One sample per violating pair, and a pair may be many deliveries.
        assert_eq!(c.samples.is_empty(), c.violations == 0);
        assert!(c.samples.len() as u64 <= c.violations);
    }

    #[test]
    fn ordering_rule() {
        let table: &[Case] = &[
            // publishes (seq, sent, acked), each subscriber's deliveries:
            // (violations, concurrent)
            //
            // In order: nothing to count.
            (&[(0, 10, Some(20)), (1, 30, Some(40))], &[&[0, 1]], (0, 0)),
            // A concurrent reversal: 1 was sent while 0 was in flight.
            (&[(0, 10, Some(50)), (1, 20, Some(40))], &[&[1, 0]], (0, 1)),
            // 1 was even sent before 0.
            (&[(0, 20, Some(50)), (1, 10, Some(40))], &[&[1, 0]], (0, 1)),
            // A real one: 0 was acknowledged before 1 was sent.
            (&[(0, 10, Some(20)), (1, 30, Some(40))], &[&[1, 0]], (1, 0)),
            // Acknowledged the very nanosecond 1 was sent: not before it.
            (&[(0, 10, Some(30)), (1, 30, Some(40))], &[&[1, 0]], (0, 1)),
            // 0 was never acknowledged (failed, yet delivered): concurrent,
            // whether 1 was sent after it or before it.
            (&[(0, 10, None), (1, 30, Some(40))], &[&[1, 0]], (0, 1)),
            (&[(0, 30, None), (1, 10, Some(20))], &[&[1, 0]], (0, 1)),
            // 1 never acknowledged changes nothing: 0's ack came before it.
            (&[(0, 10, Some(20)), (1, 30, None)], &[&[1, 0]], (1, 0)),
            // Duplicates are not reversals.
            (
                &[(0, 10, Some(20)), (1, 30, Some(40))],
                &[&[0, 1, 0, 1, 1]],
                (0, 0),
            ),
            (
                &[(0, 10, Some(20)), (1, 30, Some(40))],
                &[&[1, 0, 0, 1]],
                (1, 0),
            ),
            // Counted per delivery: two subscribers, the same reversal each.
            (
                &[(0, 10, Some(50)), (1, 20, Some(40)), (2, 60, Some(70))],
                &[&[1, 0, 2], &[1, 0, 2], &[0, 1, 2]],
                (0, 2),
            ),
            // 0 came after 1 and 2. The highest, 2, was sent before 0's ack,
            // but 1 was sent after it: a violation, found through the event
            // sent last. (In the second order, 1 after 2 is concurrent.)
            (
                &[(0, 10, Some(20)), (1, 30, Some(60)), (2, 15, Some(50))],
                &[&[1, 2, 0], &[2, 1, 0]],
                (2, 1),
            ),
            // 1 came after 2 and 0, and 0 was sent last but is lower: judged
            // against 2, sent after 1's ack. 0 (never acknowledged) after 2
            // is concurrent.
            (
                &[(0, 50, None), (1, 10, Some(20)), (2, 30, Some(40))],
                &[&[2, 0, 1]],
                (1, 1),
            ),
        ];
        for (attempts, subscribers, expect) in table {
            check(attempts, subscribers, *expect);
        }
    }

    #[test]
    fn the_rule_alone() {
        let at = |seq, sent_ns, acked_ns| Attempt {
            seq,
            sent_ns,
            acked_ns,
        };
        let (a, b) = (at(0, 10, Some(20)), at(1, 30, Some(40)));
        assert_eq!(kind(Some(&a), Some(&b)), Kind::Violation);
        assert_eq!(kind(Some(&b), Some(&a)), Kind::Concurrent);
        assert_eq!(kind(None, Some(&b)), Kind::Concurrent);
        assert_eq!(kind(Some(&a), None), Kind::Concurrent);
    }

    #[test]
    fn pairs_merge_across_shards() {
        let reversals = Reversals::default();
        reversals.record(0, &[(1, 2), (3, 4)]);
        reversals.record(1, &[(1, 2)]);
        reversals.record(SHARDS as u64, &[(1, 2)]);
        reversals.record(5, &[]);
        let merged = reversals.merged();
        assert_eq!(merged.len(), 2);
        assert_eq!((merged[&(1, 2)], merged[&(3, 4)]), (3, 1));
    }

    #[test]
    fn samples_are_the_lowest_violations() {
        let attempts: Vec<Attempt> = (0..20)
            .map(|seq| Attempt {
                seq,
                sent_ns: seq * 100,
                acked_ns: Some(seq * 100 + 10),
            })
            .collect();
        let pairs: HashMap<(u64, u64), u64> = (0..10).map(|a| ((a * 2, a * 2 + 1), 3)).collect();
        let c = classify(&pairs, &attempts);
        assert_eq!((c.violations, c.concurrent), (30, 0));
        assert_eq!(c.samples, [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]);
    }
}
