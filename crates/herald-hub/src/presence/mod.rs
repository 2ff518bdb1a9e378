//! Presence: the active subscriptions of the whole deployment, and the events that announce
//! each one's start and end.
//!
//! Every entry is one matcher of one connection ([`Entry`]): the subscriber id the hub made
//! for that connection (`urn:uuid:<v4>`, shared by its entries), the matcher's kind and
//! text, an optional payload, the node that holds the connection, and the topic its events
//! go to. A connection joins with all its entries and holds a [`Presence`] guard; dropping
//! the guard (the stream ended) leaves.
//!
//! Entries with the same topic and subscriber on one node are one entry, counted: the first
//! join announces it, the last leave ends it. A Mercure connection's subscriber id is its
//! own, so nothing is shared there; the app gives every stream of one user the same id on a
//! node ([`Registry::shared_subscriber`]), so a user's tenth tab costs the log nothing.
//!
//! On one node the registry is this process's memory. In a cluster each node also mirrors
//! its entries into Redis (`cluster`), under a lease the node refreshes: a node that dies
//! takes its subscribers with it, because readers ignore the entries of a node without a
//! lease, and one survivor claims the dead node, announces the end of each of its entries
//! and deletes them.
//!
//! # Invariants
//!
//! - The registry changes before the event that announces the change is published. A reader
//!   that takes the hub's head ([`Hub::head_id`]) before it reads the registry, then
//!   subscribes after that head, misses no change: a change whose event lies at or below the
//!   head is in what it read, every later one reaches its stream (some may do both;
//!   `active` is a state, so a repeat is harmless).
//! - Joining never waits on the log: the events are handed to one task per node, which
//!   publishes them in batches through the hub's sequencer.
//! - Everything is bounded: a node's entries by its connection limits, a read by
//!   [`MAX_LISTED`].

mod cluster;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use self::cluster::Cluster;
pub use self::cluster::LEASE_TTL;
use crate::{Hub, LogError, Update};

/// The most entries one read returns; a read that stops there says so
/// ([`Listing::truncated`]).
pub const MAX_LISTED: usize = 1000;

/// The path under which Mercure subscription events and documents live.
pub const SUBSCRIPTIONS_PATH: &str = "/.well-known/mercure/subscriptions";

/// The JSON-LD context of subscription documents.
pub const CONTEXT: &str = "https://mercure.rocks/";

/// Pending joins and leaves a node's publishing task holds before a leave spawns a task to
/// wait for room (a join waits in its own request).
const OPS_CAPACITY: usize = 1024;

/// The most changes the publishing task takes at once.
const OPS_BATCH: usize = 256;

/// One active subscription: one matcher of one connection.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The hub-made id of the connection (`urn:uuid:<v4>`).
    pub subscriber: String,
    /// The matcher's kind: `exact`, `urlpattern` or `template`.
    pub match_type: String,
    /// The matcher's text.
    pub matcher: String,
    /// What the subscriber's token says about it, if anything.
    pub payload: Option<Value>,
    /// The node that holds the connection.
    pub node: String,
    /// Where the entry's events go; also its address in the registry with `subscriber`.
    pub topic: String,
}

impl Entry {
    /// A Mercure subscription's entry: its events go to
    /// `/.well-known/mercure/subscriptions/{match_type}/{match}/{subscriber}`.
    pub fn mercure(
        subscriber: &str,
        match_type: &str,
        matcher: &str,
        payload: Option<Value>,
    ) -> Self {
        Self {
            topic: subscription_topic(match_type, matcher, subscriber),
            subscriber: subscriber.to_owned(),
            match_type: match_type.to_owned(),
            matcher: matcher.to_owned(),
            payload,
            node: String::new(),
        }
    }

    /// The subscription document (JSON-LD) of this entry.
    pub fn document(&self, active: bool) -> Value {
        let mut document = json!({
            "@context": CONTEXT,
            "id": self.topic,
            "type": "Subscription",
            "match_type": self.match_type,
            "match": self.matcher,
            "subscriber": self.subscriber,
            "active": active,
        });
        if let Some(payload) = &self.payload {
            document["payload"] = payload.clone();
        }
        document
    }

    /// The private update that announces this entry's start or end: of type `mercure`, or
    /// `presence` for an entry of a reserved topic (the app's).
    pub fn event(&self, active: bool) -> Update {
        let event_type = match crate::is_reserved(&self.topic) {
            true => "presence",
            false => "mercure",
        };
        Update {
            topics: vec![self.topic.clone()],
            data: self.document(active).to_string(),
            private: true,
            id: None,
            event_type: Some(event_type.to_owned()),
            retry: None,
            closes: Vec::new(),
        }
    }

    fn key(&self) -> (String, String) {
        (self.topic.clone(), self.subscriber.clone())
    }

    fn to_json(&self) -> String {
        json!({
            "subscriber": self.subscriber,
            "match_type": self.match_type,
            "match": self.matcher,
            "payload": self.payload,
            "node": self.node,
            "topic": self.topic,
        })
        .to_string()
    }

    fn from_json(text: &str) -> Option<Self> {
        let value: Value = serde_json::from_str(text).ok()?;
        let text = |name: &str| value.get(name)?.as_str().map(str::to_owned);
        Some(Self {
            subscriber: text("subscriber")?,
            match_type: text("match_type")?,
            matcher: text("match")?,
            payload: value.get("payload").filter(|p| !p.is_null()).cloned(),
            node: text("node")?,
            topic: text("topic")?,
        })
    }
}

/// `/.well-known/mercure/subscriptions/{match_type}/{match}/{subscriber}`, with the match
/// and the subscriber percent-encoded once, as whole strings.
pub fn subscription_topic(match_type: &str, matcher: &str, subscriber: &str) -> String {
    format!(
        "{SUBSCRIPTIONS_PATH}/{}/{}/{}",
        encode_segment(match_type),
        encode_segment(matcher),
        encode_segment(subscriber)
    )
}

/// Percent-encodes every byte of `text` but the unreserved characters of RFC 3986
/// (`A-Z a-z 0-9 - . _ ~`), so the result is one path segment whatever `text` holds.
pub fn encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A new subscriber id: `urn:uuid:<v4>`, random so that it reveals nothing.
pub fn subscriber_id() -> String {
    format!("urn:uuid:{}", uuid::Uuid::new_v4())
}

/// What a read found.
#[derive(Debug, Default)]
pub struct Listing {
    /// The entries, at most [`MAX_LISTED`], ordered by topic then subscriber.
    pub entries: Vec<Entry>,
    /// Whether more entries matched than were returned.
    pub truncated: bool,
}

/// The deployment's registry of active subscriptions, as seen from this node. Cheap to
/// clone.
#[derive(Clone, Debug)]
pub struct Registry {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// This node's id (`urn:uuid:<v4>`, new at each start).
    node: String,
    /// This node's entries, each with the number of joins that hold it. A std lock: held
    /// for map operations only.
    local: Mutex<BTreeMap<(String, String), (Entry, usize)>>,
    /// The other nodes' entries and this node's mirror, in a cluster.
    cluster: Option<Cluster>,
    /// To the task that records changes in the cluster and publishes their events.
    ops: mpsc::Sender<Op>,
}

#[derive(Debug)]
enum Op {
    Join(Vec<Entry>),
    Leave(Vec<Entry>),
    /// This node's lease had lapsed: write its entries again and announce them again.
    Reassert,
    /// The node stops: end every entry, announce the ends, and answer once the log has
    /// acknowledged them (or refused them).
    Depart(oneshot::Sender<()>),
}

impl Registry {
    /// Starts the registry of one node: in memory, or shared through the Redis at
    /// `redis` (`(url, key prefix)`), with its tasks on `tracker` until `shutdown`.
    ///
    /// # Errors
    ///
    /// When Redis cannot be reached.
    pub async fn start(
        hub: Hub,
        redis: Option<(&str, &str)>,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Result<Self, LogError> {
        let node = subscriber_id();
        let cluster = match redis {
            Some((url, prefix)) => Some(Cluster::connect(url, prefix, &node).await?),
            None => None,
        };
        let (ops, rx) = mpsc::channel(OPS_CAPACITY);
        let registry = Self {
            shared: Arc::new(Shared {
                node,
                local: Mutex::new(BTreeMap::new()),
                cluster,
                ops,
            }),
        };
        tracker.spawn(publish_changes(
            registry.clone(),
            hub.clone(),
            rx,
            shutdown.clone(),
        ));
        if let Some(cluster) = &registry.shared.cluster {
            tracker.spawn(
                cluster
                    .clone()
                    .keep_lease(registry.clone(), shutdown.clone()),
            );
            tracker.spawn(cluster.clone().reap(hub, shutdown));
        }
        Ok(registry)
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.shared.node
    }

    /// A subscriber id that stands for `key` (say, a user) on this node, the same at every
    /// call: `urn:uuid:<v4 form>`, derived from `key` and this node's random id, so it
    /// reveals neither.
    pub fn shared_subscriber(&self, key: &str) -> String {
        use std::hash::{Hash, Hasher};
        let half = |salt: u8| {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            (&self.shared.node, key, salt).hash(&mut hasher);
            hasher.finish().to_be_bytes()
        };
        let mut bytes = [0; 16];
        bytes[..8].copy_from_slice(&half(0));
        bytes[8..].copy_from_slice(&half(1));
        format!(
            "urn:uuid:{}",
            uuid::Builder::from_random_bytes(bytes).into_uuid()
        )
    }

    /// Records `entries` (one connection's) as active and announces those that were not
    /// already; they stay until the returned guard is dropped. Waits only for room in the
    /// publishing task's queue.
    pub async fn join(&self, entries: Vec<Entry>) -> Presence {
        match self.join_charged(entries, |_| Ok::<(), ()>(())).await {
            Ok(presence) => presence,
            Err(()) => unreachable!("joining without a charge never fails"),
        }
    }

    /// [`Registry::join`], after `charge` agreed to the number of entries the join would
    /// announce (those not already held on this node); when it refuses, nothing is recorded
    /// or announced, and its error is returned.
    ///
    /// # Errors
    ///
    /// `charge`'s.
    pub async fn join_charged<E>(
        &self,
        mut entries: Vec<Entry>,
        charge: impl FnOnce(usize) -> Result<(), E>,
    ) -> Result<Presence, E> {
        for entry in &mut entries {
            entry.node.clone_from(&self.shared.node);
        }
        let announced: Vec<Entry> = {
            let mut local = self.shared.local.lock().expect("presence poisoned");
            let new = entries
                .iter()
                .filter(|entry| !local.contains_key(&entry.key()))
                .count();
            charge(new)?;
            entries
                .iter()
                .filter(|entry| {
                    let held = local
                        .entry(entry.key())
                        .or_insert_with(|| ((*entry).clone(), 0));
                    held.1 += 1;
                    held.1 == 1
                })
                .cloned()
                .collect()
        };
        if !announced.is_empty() {
            // The task is gone only when the server stops; nothing to announce then.
            let _ = self.shared.ops.send(Op::Join(announced)).await;
        }
        Ok(Presence {
            registry: self.clone(),
            entries,
        })
    }

    /// The active entries whose topic begins with `prefix`, from every live node, at most
    /// [`MAX_LISTED`].
    ///
    /// # Errors
    ///
    /// When the cluster's Redis cannot be read.
    pub async fn list(&self, prefix: &str) -> Result<Listing, LogError> {
        let mut all: BTreeMap<(String, String), Entry> = match &self.shared.cluster {
            Some(cluster) => cluster.entries().await?,
            None => BTreeMap::new(),
        };
        // This node's own entries come from memory, which changes first.
        all.retain(|_, entry| entry.node != self.shared.node);
        {
            let local = self.shared.local.lock().expect("presence poisoned");
            let held = local
                .range((prefix.to_owned(), String::new())..)
                .take_while(|((topic, _), _)| topic.starts_with(prefix));
            for (key, (entry, _)) in held {
                all.insert(key.clone(), entry.clone());
            }
        }
        let mut listing = Listing::default();
        for (_, entry) in in_prefix(&all, prefix) {
            if listing.entries.len() == MAX_LISTED {
                listing.truncated = true;
                break;
            }
            listing.entries.push(entry.clone());
        }
        Ok(listing)
    }

    /// Ends every entry of this node and announces their end, after the changes already
    /// queued; returns once the log has acknowledged the announcements (or refused them).
    /// For a graceful stop, before the hub's sequencer stops: a client that resumes after
    /// a restart learns that the node's subscribers left. Streams that end afterwards
    /// announce nothing more; a stream that joins afterwards is announced as usual.
    pub async fn depart(&self) {
        let (reply, done) = oneshot::channel();
        if self.shared.ops.send(Op::Depart(reply)).await.is_ok() {
            let _ = done.await;
        }
    }

    fn local_entries(&self) -> Vec<Entry> {
        let local = self.shared.local.lock().expect("presence poisoned");
        local.values().map(|(entry, _)| entry.clone()).collect()
    }
}

/// The entries whose topic begins with `prefix`, in order.
fn in_prefix<'a>(
    map: &'a BTreeMap<(String, String), Entry>,
    prefix: &'a str,
) -> impl Iterator<Item = (&'a (String, String), &'a Entry)> {
    map.range((prefix.to_owned(), String::new())..)
        .take_while(move |((topic, _), _)| topic.starts_with(prefix))
}

/// The guard of one connection's entries: dropping it removes them and announces their end.
#[derive(Debug)]
pub struct Presence {
    registry: Registry,
    entries: Vec<Entry>,
}

impl Presence {
    /// The entries this guard holds.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }
}

impl Drop for Presence {
    fn drop(&mut self) {
        let shared = &self.registry.shared;
        let mut entries = std::mem::take(&mut self.entries);
        {
            let mut local = shared.local.lock().expect("presence poisoned");
            entries.retain(|entry| {
                let key = entry.key();
                match local.get_mut(&key) {
                    Some(held) if held.1 > 1 => {
                        held.1 -= 1;
                        false
                    }
                    Some(_) => {
                        local.remove(&key);
                        true
                    }
                    None => false,
                }
            });
        }
        if entries.is_empty() {
            return;
        }
        match shared.ops.try_send(Op::Leave(entries)) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(op)) => {
                // One waiting task per ended connection at most: bounded by the stream
                // limits, and only while the publishing task is behind.
                let ops = shared.ops.clone();
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move {
                        let _ = ops.send(op).await;
                    });
                }
            }
        }
    }
}

/// The task that records a node's changes in the cluster and then publishes their events,
/// in batches; the sequencer batches the publishes in turn. It never waits for their
/// acknowledgements: an event the log refused is lost like any refused publish, and the
/// registry stays right. At `shutdown` it handles what is already queued, then ends.
async fn publish_changes(
    registry: Registry,
    hub: Hub,
    mut rx: mpsc::Receiver<Op>,
    shutdown: CancellationToken,
) {
    let mut batch = Vec::with_capacity(OPS_BATCH);
    loop {
        tokio::select! {
            received = rx.recv_many(&mut batch, OPS_BATCH) => if received == 0 { return },
            () = shutdown.cancelled() => {
                while let Ok(op) = rx.try_recv() {
                    batch.push(op);
                }
                if batch.is_empty() {
                    return;
                }
            }
        }
        let mut events = Vec::new();
        let mut joined = Vec::new();
        let mut left = Vec::new();
        let mut departed = Vec::new();
        for op in batch.drain(..) {
            match op {
                Op::Join(entries) => {
                    events.extend(entries.iter().map(|e| e.event(true)));
                    joined.extend(entries);
                }
                Op::Leave(entries) => {
                    events.extend(entries.iter().map(|e| e.event(false)));
                    left.extend(entries);
                }
                Op::Reassert => {
                    let entries = registry.local_entries();
                    events.extend(entries.iter().map(|e| e.event(true)));
                    joined.extend(entries);
                }
                Op::Depart(reply) => {
                    let entries: Vec<Entry> = {
                        let mut local = registry.shared.local.lock().expect("presence poisoned");
                        std::mem::take(&mut *local)
                            .into_values()
                            .map(|(entry, _)| entry)
                            .collect()
                    };
                    events.extend(entries.iter().map(|e| e.event(false)));
                    left.extend(entries);
                    departed.push(reply);
                }
            }
        }
        if let Some(cluster) = &registry.shared.cluster
            && let Err(error) = cluster.record(&joined, &left).await
        {
            tracing::warn!(%error, "cannot record subscriptions in the cluster's registry");
        }
        let mut acks = Vec::new();
        for event in events {
            match hub.enqueue(event).await {
                Ok(ack) if !departed.is_empty() => acks.push(ack),
                Ok(_) => {}
                Err(error) => tracing::debug!(%error, "a subscription event was not published"),
            }
        }
        for ack in acks {
            if let Err(error) = ack.await {
                tracing::debug!(%error, "an end of subscription was not published");
            }
        }
        for reply in departed {
            let _ = reply.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_encode_match_and_subscriber_once_as_whole_segments() {
        assert_eq!(
            subscription_topic("exact", "https://example.com/a b/{id}", "urn:uuid:1"),
            "/.well-known/mercure/subscriptions/exact/https%3A%2F%2Fexample.com%2Fa%20b%2F%7Bid%7D/urn%3Auuid%3A1"
        );
    }

    #[test]
    fn entries_survive_their_stored_form() {
        let entry = Entry::mercure("urn:uuid:1", "exact", "/a", Some(json!({"u": 1})));
        assert_eq!(Entry::from_json(&entry.to_json()), Some(entry));
    }
}
