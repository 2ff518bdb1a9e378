//! Who is subscribed: the [`Registry`], and registering, unregistering and closing
//! subscribers.
//!
//! The registry sits behind a std `RwLock` in the hub. Fan-out holds the read lock for one
//! batch and moves `head` to the batch's last `seq` before releasing it; registration takes
//! the write lock, inserts the subscriber and reads `head` there. So every update is either
//! at or below the head a subscriber starts from (replayed from history or log) or reaches
//! its queue live, never both and never neither.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use super::Hub;
use crate::subscriber::Subscriber;

#[derive(Debug, Default)]
pub(super) struct Registry {
    /// The `seq` of the newest update fanned out. Written under the read lock by the
    /// sequencer (the only writer), read under the write lock by registration.
    pub(super) head: AtomicU64,
    pub(super) all: AllSubscribers,
    /// Subscribers whose selectors are all exact topics, by topic.
    pub(super) by_topic: HashMap<Box<str>, HashMap<u64, Arc<Subscriber>>>,
    /// Subscribers with a `*` or template selector; checked against every update.
    pub(super) patterns: HashMap<u64, Arc<Subscriber>>,
    /// Set at shutdown: late registrations are closed at once instead of hanging forever.
    pub(super) closed: bool,
}

impl Hub {
    /// Adds the subscriber to the registry; returns the head at that instant.
    pub(super) fn register(&self, subscriber: &Arc<Subscriber>) -> u64 {
        let mut registry = self.shared.registry.write().expect("registry poisoned");
        let id = subscriber.id;
        registry.all.insert(subscriber.clone());
        if subscriber.filter.is_exact() {
            for selector in &subscriber.filter.selectors {
                registry
                    .by_topic
                    .entry(selector.as_str().into())
                    .or_default()
                    .insert(id, subscriber.clone());
            }
        } else {
            registry.patterns.insert(id, subscriber.clone());
        }
        if registry.closed {
            subscriber.close();
        }
        registry.head.load(Ordering::Acquire)
    }

    /// Removes a subscriber; called when its stream is dropped.
    pub(crate) fn unregister(&self, subscriber: &Subscriber) {
        let mut registry = self.shared.registry.write().expect("registry poisoned");
        if !registry.all.remove(subscriber.id) {
            return;
        }
        if subscriber.filter.is_exact() {
            for selector in &subscriber.filter.selectors {
                if let Some(subs) = registry.by_topic.get_mut(selector.as_str()) {
                    subs.remove(&subscriber.id);
                    if subs.is_empty() {
                        registry.by_topic.remove(selector.as_str());
                    }
                }
            }
        } else {
            registry.patterns.remove(&subscriber.id);
        }
        drop(registry);
        self.shared.metrics.subscribers.dec();
    }

    pub(super) fn close_all(&self) {
        let mut registry = self.shared.registry.write().expect("registry poisoned");
        registry.closed = true;
        for subscriber in registry.all.iter() {
            subscriber.close();
        }
    }
}

/// Buckets of [`AllSubscribers`]: a power of two, so that any power of two up to it cuts
/// them into equal slices.
pub(super) const BUCKETS: usize = 128;

/// Every registered subscriber, in [`BUCKETS`] maps by id modulo [`BUCKETS`]: the heartbeat
/// reaches a share of them without walking the others.
#[derive(Debug)]
pub(super) struct AllSubscribers {
    buckets: Vec<HashMap<u64, Arc<Subscriber>>>,
}

impl Default for AllSubscribers {
    fn default() -> Self {
        Self {
            buckets: std::iter::repeat_with(HashMap::new).take(BUCKETS).collect(),
        }
    }
}

impl AllSubscribers {
    fn bucket_of(id: u64) -> usize {
        (id % BUCKETS as u64) as usize
    }

    fn insert(&mut self, subscriber: Arc<Subscriber>) {
        self.buckets[Self::bucket_of(subscriber.id)].insert(subscriber.id, subscriber);
    }

    /// Whether the subscriber `id` was registered.
    fn remove(&mut self, id: u64) -> bool {
        self.buckets[Self::bucket_of(id)].remove(&id).is_some()
    }

    pub(super) fn len(&self) -> usize {
        self.buckets.iter().map(HashMap::len).sum()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Arc<Subscriber>> {
        self.buckets.iter().flat_map(HashMap::values)
    }

    /// The subscribers of slice `slice` out of `slices` (a power of two up to [`BUCKETS`]):
    /// those whose id modulo `slices` is `slice`.
    pub(super) fn slice(
        &self,
        slice: usize,
        slices: usize,
    ) -> impl Iterator<Item = &Arc<Subscriber>> {
        debug_assert!(slices.is_power_of_two() && slices <= BUCKETS && slice < slices);
        self.buckets
            .iter()
            .skip(slice)
            .step_by(slices)
            .flat_map(HashMap::values)
    }
}
