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
    pub(super) all: HashMap<u64, Arc<Subscriber>>,
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
        registry.all.insert(id, subscriber.clone());
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
        if registry.all.remove(&subscriber.id).is_none() {
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
        for subscriber in registry.all.values() {
            subscriber.close();
        }
    }
}
