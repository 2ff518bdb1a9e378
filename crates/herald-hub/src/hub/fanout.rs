//! Fan-out: pushing each stored record's shared frame into the queue of every subscriber
//! that may see it, and moving the registry's head past it under the same read lock.
//!
//! Only one task fans out: the sequencer on a single node, the follower with a shared log.
//! Pushing never waits: a subscriber whose queue is full is cut off, to resume from the log
//! by id.

use std::{
    collections::HashMap,
    sync::{Arc, atomic::Ordering},
};

use super::Hub;
use crate::{
    subscriber::{Memo, Pushed},
    update::Record,
};

impl Hub {
    /// Pushes each record's shared frame into the queue of every subscriber that may see it.
    pub(super) fn fan_out(&self, records: &[Arc<Record>], memo: &mut Memo) {
        let Some(last) = records.last() else { return };
        let registry = self.shared.registry.read().expect("registry poisoned");
        let mut delivered = 0u64;
        let mut lagged = 0u64;
        let mut count = |pushed: Pushed| match pushed {
            Pushed::Queued => delivered += 1,
            Pushed::Overflowed => lagged += 1,
            Pushed::Skipped => {}
        };
        for record in records {
            memo.clear();
            if !record.closes.is_empty() {
                let hooks = self.shared.before_closing.read().expect("hooks poisoned");
                for hook in hooks.iter() {
                    (hook.0)();
                }
            }
            for topic in &record.topics {
                let Some(subscribers) = registry.by_topic.get(topic) else {
                    continue;
                };
                for subscriber in subscribers.values() {
                    if subscriber.filter.accepts(record, memo, true) {
                        count(subscriber.push(record.seq, &record.frame));
                    }
                }
            }
            for subscriber in registry.patterns.values() {
                if subscriber.filter.accepts(record, memo, false) {
                    count(subscriber.push(record.seq, &record.frame));
                }
            }
            // After the pushes: a closed subscriber still gets this record if it matched.
            for topic in &record.closes {
                for subscriber in registry
                    .by_topic
                    .get(topic)
                    .into_iter()
                    .flat_map(HashMap::values)
                {
                    subscriber.close();
                }
            }
        }
        registry.head.store(last.seq, Ordering::Release);
        drop(registry);
        let metrics = &self.shared.metrics;
        metrics.deliveries.inc_by(delivered);
        metrics.slow_disconnects.inc_by(lagged);
        if lagged > 0 {
            tracing::debug!(lagged, "slow subscribers cut off");
        }
    }
}
