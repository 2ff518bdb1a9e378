//! The registry's cluster half: each node's entries in Redis, under a lease.
//!
//! # Layout in Redis (`{prefix}` as the log's)
//!
//! - `{prefix}:presence:nodes` — a set of the nodes that may have entries.
//! - `{prefix}:presence:node:{node}` — a hash of one node's entries, from
//!   `"{subscriber} {topic}"` to the entry as JSON.
//! - `{prefix}:presence:lease:{node}` — present while the node lives: it sets it again every
//!   [`LEASE_REFRESH`] with a time-to-live of [`LEASE_TTL`].
//! - `{prefix}:presence:reaper:{node}` — the claim of the one survivor that ends a dead
//!   node's entries (`SET NX` with [`CLAIM_TTL`], so a reaper that dies is replaced).
//!
//! A reader ignores the hash of a node without a lease: for readers, a node's entries end
//! when its lease expires, before any survivor announces their end.
//!
//! # A node that comes back
//!
//! A node whose lease lapsed without it dying (a stall, a Redis failover longer than
//! [`LEASE_TTL`]) finds out at its next renewal, and writes and announces its entries again.
//! The reaper deletes a dead node's hash in one script that first checks that the lease is
//! still absent, so a node that renewed in time keeps its entries. What remains: the reaper
//! may have published the ends of entries the node announces again, and the two may
//! interleave in the log (a watcher can see an end after the new start; the API lists the
//! entry), and a join the node records between the lapse and its renewal may be deleted
//! with the hash until the renewal writes it again.

use std::{collections::BTreeMap, time::Duration};

use redis::{
    Client,
    aio::{ConnectionManager, ConnectionManagerConfig},
};
use tokio_util::sync::CancellationToken;

use super::{Entry, Op, Registry};
use crate::{Hub, LogError, PublishError};

/// How long a node's lease lasts without being renewed: how long after its death its
/// subscribers are still listed.
/// Long enough that a short Redis failover or a stall of a few seconds does not end every
/// node's subscriptions.
pub const LEASE_TTL: Duration = Duration::from_secs(10);

/// How often a node renews its lease, and how often it looks for dead nodes.
const LEASE_REFRESH: Duration = Duration::from_secs(2);

/// How long a survivor's claim on a dead node lasts: if it dies while ending the node's
/// entries, another survivor takes over after that.
const CLAIM_TTL: Duration = Duration::from_secs(30);

/// Deletes a dead node's hash and its membership, only while its lease is still absent.
/// `KEYS`: the lease, the hash, the set of nodes; `ARGV[1]`: the node. Answers 1 when it
/// deleted, 0 when the node came back.
const FORGET_DEAD_NODE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[3], ARGV[1])
return 1
";

/// Redis for the registry, with this node's keys.
#[derive(Clone, Debug)]
pub(super) struct Cluster {
    conn: ConnectionManager,
    prefix: String,
    node: String,
}

impl Cluster {
    /// Connects, and takes this node's lease before any entry is written, so a node that
    /// dies at once leaves nothing behind.
    pub(super) async fn connect(url: &str, prefix: &str, node: &str) -> Result<Self, LogError> {
        let client = Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_with_config(client, config).await?;
        let cluster = Self {
            conn,
            prefix: prefix.to_owned(),
            node: node.to_owned(),
        };
        cluster.renew().await?;
        Ok(cluster)
    }

    fn nodes_key(&self) -> String {
        format!("{}:presence:nodes", self.prefix)
    }

    fn hash_key(&self, node: &str) -> String {
        format!("{}:presence:node:{node}", self.prefix)
    }

    fn lease_key(&self, node: &str) -> String {
        format!("{}:presence:lease:{node}", self.prefix)
    }

    fn claim_key(&self, node: &str) -> String {
        format!("{}:presence:reaper:{node}", self.prefix)
    }

    /// Sets this node's lease; answers whether it was still there.
    async fn renew(&self) -> Result<bool, LogError> {
        let mut conn = self.conn.clone();
        let (previous, _): (Option<String>, i64) = redis::pipe()
            .cmd("SET")
            .arg(self.lease_key(&self.node))
            .arg(&self.node)
            .arg("PX")
            .arg(millis(LEASE_TTL))
            .arg("GET")
            .cmd("SADD")
            .arg(self.nodes_key())
            .arg(&self.node)
            .query_async(&mut conn)
            .await?;
        Ok(previous.is_some())
    }

    /// Writes this node's joined entries and removes its left ones.
    pub(super) async fn record(&self, joined: &[Entry], left: &[Entry]) -> Result<(), LogError> {
        if joined.is_empty() && left.is_empty() {
            return Ok(());
        }
        let key = self.hash_key(&self.node);
        let mut pipe = redis::pipe();
        for entry in joined {
            pipe.cmd("HSET")
                .arg(&key)
                .arg(field(entry))
                .arg(entry.to_json())
                .ignore();
        }
        for entry in left {
            pipe.cmd("HDEL").arg(&key).arg(field(entry)).ignore();
        }
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    /// The entries of every node whose lease holds.
    pub(super) async fn entries(&self) -> Result<BTreeMap<(String, String), Entry>, LogError> {
        let mut conn = self.conn.clone();
        let live = self.nodes_with_lease(&mut conn).await?;
        let mut pipe = redis::pipe();
        for (node, alive) in &live {
            if *alive {
                pipe.cmd("HVALS").arg(self.hash_key(node));
            }
        }
        let hashes: Vec<Vec<String>> = pipe.query_async(&mut conn).await?;
        Ok(hashes
            .iter()
            .flatten()
            .filter_map(|text| Entry::from_json(text))
            .map(|entry| (entry.key(), entry))
            .collect())
    }

    /// Every node of the set, with whether its lease holds.
    async fn nodes_with_lease(
        &self,
        conn: &mut ConnectionManager,
    ) -> Result<Vec<(String, bool)>, LogError> {
        let nodes: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.nodes_key())
            .query_async(conn)
            .await?;
        if nodes.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for node in &nodes {
            pipe.cmd("EXISTS").arg(self.lease_key(node));
        }
        let alive: Vec<bool> = pipe.query_async(conn).await?;
        Ok(nodes.into_iter().zip(alive).collect())
    }

    /// Renews this node's lease until `shutdown`. When it finds the lease lapsed (Redis
    /// restarted, or this process stalled past [`LEASE_TTL`]), survivors may have ended its
    /// entries: it writes and announces them again.
    pub(super) async fn keep_lease(self, registry: Registry, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(LEASE_REFRESH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match self.renew().await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(
                        "this node's presence lease had lapsed; announcing its subscriptions again"
                    );
                    let _ = registry.shared.ops.send(Op::Reassert).await;
                }
                Err(error) => tracing::warn!(%error, "cannot renew this node's presence lease"),
            }
        }
    }

    /// Looks for nodes whose lease is gone until `shutdown`, and ends the entries of each
    /// one it claims.
    pub(super) async fn reap(self, hub: Hub, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(LEASE_REFRESH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(error) = self.reap_once(&hub).await {
                tracing::warn!(%error, "cannot end the subscriptions of dead nodes");
            }
        }
    }

    async fn reap_once(&self, hub: &Hub) -> Result<(), LogError> {
        let mut conn = self.conn.clone();
        for (node, alive) in self.nodes_with_lease(&mut conn).await? {
            if alive || node == self.node {
                continue;
            }
            let claimed: Option<String> = redis::cmd("SET")
                .arg(self.claim_key(&node))
                .arg(&self.node)
                .arg("NX")
                .arg("PX")
                .arg(millis(CLAIM_TTL))
                .query_async(&mut conn)
                .await?;
            if claimed.is_none() {
                continue; // Another survivor is at it.
            }
            let texts: Vec<String> = redis::cmd("HVALS")
                .arg(self.hash_key(&node))
                .query_async(&mut conn)
                .await?;
            let entries: Vec<Entry> = texts.iter().filter_map(|t| Entry::from_json(t)).collect();
            tracing::info!(%node, subscriptions = entries.len(), "a node died: ending its subscriptions");
            let mut acks = Vec::with_capacity(entries.len());
            for entry in &entries {
                acks.push(hub.enqueue(entry.event(false)).await);
            }
            let mut published = true;
            for ack in acks {
                let outcome = match ack {
                    Ok(ack) => ack.await.map(|_| ()),
                    Err(error) => Err(error),
                };
                match outcome {
                    Ok(()) => {}
                    // The event can never be published (a topic over the hub's limit):
                    // retrying would fail the same way forever.
                    Err(PublishError::Invalid(error)) => {
                        tracing::warn!(%error, %node, "an end of subscription cannot be published");
                    }
                    Err(error) => {
                        tracing::warn!(%error, %node, "an end of subscription was not published");
                        published = false;
                    }
                }
            }
            // Unpublished ends are retried by whoever claims the node after CLAIM_TTL.
            if published {
                let forgotten: i64 = redis::Script::new(FORGET_DEAD_NODE)
                    .key(self.lease_key(&node))
                    .key(self.hash_key(&node))
                    .key(self.nodes_key())
                    .arg(&node)
                    .invoke_async(&mut conn)
                    .await?;
                if forgotten == 0 {
                    tracing::warn!(%node, "a node came back while its subscriptions were ended");
                }
            }
        }
        Ok(())
    }
}

fn field(entry: &Entry) -> String {
    format!("{} {}", entry.subscriber, entry.topic)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
