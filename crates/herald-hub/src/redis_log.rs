//! [`RedisLog`]: the event log shared by the nodes of a cluster, in a Redis Stream.
//!
//! Every node appends to one stream and every node reads it back in order, so all nodes fan
//! out the same updates in the same order, under the same positions and ids; a client may
//! resume on any node.
//!
//! # Layout in Redis (`{prefix}` defaults to `herald`)
//!
//! - `{prefix}:log` — the stream. An update at position `seq` has the entry id `{seq}-0`, so
//!   positions are contiguous and `XRANGE`/`XREAD` speak in positions directly. Fields: `u`
//!   (id), `t` (topics, JSON), `d` (data), `p` (private, `0`/`1`), `y` (type, empty when
//!   none), `r` (retry, empty when none), `c` (Unix milliseconds), `x` (topics whose
//!   subscribers end after it, JSON, empty when none).
//! - `{prefix}:head` — the last position ever assigned (it survives trimming).
//! - `{prefix}:ids` — a hash from update id to its latest position, for `Last-Event-ID`.
//!
//! Appends run as one Lua script, so a batch is numbered and stored atomically, and an
//! update whose id the log already holds is acknowledged with its existing position instead
//! of being stored twice: a publisher (or the app's outbox relay, on any node) may retry
//! without creating duplicates.
//!
//! Durability is Redis's: acknowledged means Redis replied, so run Redis with
//! `appendonly yes` and `appendfsync always` for "acknowledged means on disk".

use std::time::Duration;

use futures::future::BoxFuture;
use redis::{
    AsyncCommands, Client, Script,
    aio::{ConnectionManager, ConnectionManagerConfig},
    streams::{StreamId, StreamRangeReply, StreamReadReply},
};

use crate::{
    log::{Entry, EventLog, LogError},
    update::{Record, Update},
};

/// How long one blocking read waits for new entries before it asks again. Short enough
/// that shutdown and lag reporting stay prompt.
const FOLLOW_BLOCK: Duration = Duration::from_secs(1);

/// How long any command may take before it fails (and the publish with it: 503).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Most entries one retention pass deletes, so one pass never stalls Redis for long.
const PRUNE_MAX: usize = 10_000;

/// Appends a batch atomically: numbers new ids after `head`, skips known ids.
/// KEYS: log, head, ids. ARGV: 8 fields per entry (u, t, d, p, y, r, c, x).
/// Returns each entry's position.
const APPEND: &str = r"
local head = tonumber(redis.call('GET', KEYS[2]) or '0')
local seqs = {}
for i = 1, #ARGV, 8 do
  local known = redis.call('HGET', KEYS[3], ARGV[i])
  if known then
    seqs[#seqs + 1] = tonumber(known)
  else
    head = head + 1
    redis.call('XADD', KEYS[1], head .. '-0', 'u', ARGV[i], 't', ARGV[i + 1], 'd', ARGV[i + 2],
      'p', ARGV[i + 3], 'y', ARGV[i + 4], 'r', ARGV[i + 5], 'c', ARGV[i + 6], 'x', ARGV[i + 7])
    redis.call('HSET', KEYS[3], ARGV[i], head)
    seqs[#seqs + 1] = head
  end
end
redis.call('SET', KEYS[2], head)
return seqs
";

/// Reads entries from ARGV[1] to ARGV[2] (stream ids, inclusive), at most ARGV[3] of them,
/// stopping once those read hold ARGV[4] bytes of id and data (the first is always read),
/// in small steps, so a page of large entries never crosses the network whole.
/// KEYS: log. Returns the entries as `XRANGE` does.
const READ: &str = r"
local from, to = ARGV[1], ARGV[2]
local left, most = tonumber(ARGV[3]), tonumber(ARGV[4])
local entries, bytes = {}, 0
while left > 0 do
  local chunk = redis.call('XRANGE', KEYS[1], from, to, 'COUNT', math.min(left, 16))
  if #chunk == 0 then return entries end
  for _, entry in ipairs(chunk) do
    if #entries > 0 and bytes >= most then return entries end
    entries[#entries + 1] = entry
    local fields = entry[2]
    for f = 1, #fields, 2 do
      local name = fields[f]
      if name == 'u' or name == 'd' or name == 't' or name == 'x' then
        bytes = bytes + #fields[f + 1]
      end
    end
  end
  left = left - #chunk
  from = (tonumber(string.match(chunk[#chunk][1], '^(%d+)')) + 1) .. '-0'
end
return entries
";

/// Deletes the oldest entries while their position is `<= ARGV[1]` or their time is
/// `< ARGV[2]`, at most ARGV[3] of them, and their ids from the index (unless reused).
/// KEYS: log, ids. Returns how many were deleted.
const PRUNE: &str = r"
local below, before, most = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local deleted = 0
while deleted < most do
  local entries = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 100)
  if #entries == 0 then return deleted end
  for _, entry in ipairs(entries) do
    local id, fields = entry[1], entry[2]
    local seq = tonumber(string.match(id, '^(%d+)'))
    local uid, created
    for f = 1, #fields, 2 do
      if fields[f] == 'u' then uid = fields[f + 1] end
      if fields[f] == 'c' then created = tonumber(fields[f + 1]) end
    end
    if seq > below and created >= before then return deleted end
    redis.call('XDEL', KEYS[1], id)
    if uid and redis.call('HGET', KEYS[2], uid) == tostring(seq) then
      redis.call('HDEL', KEYS[2], uid)
    end
    deleted = deleted + 1
  end
end
return deleted
";

/// The shared event log of a cluster, in Redis.
#[derive(Clone)]
pub struct RedisLog {
    /// Appends, reads and lookups; multiplexed, reconnects by itself.
    conn: ConnectionManager,
    /// Blocking reads of new entries, on a connection of their own so they never hold up
    /// appends.
    follow_conn: ConnectionManager,
    keys: Keys,
    append: Script,
    read: Script,
    prune: Script,
}

#[derive(Clone, Debug)]
struct Keys {
    log: String,
    head: String,
    ids: String,
}

impl std::fmt::Debug for RedisLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: show the keys only.
        f.debug_struct("RedisLog")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl RedisLog {
    /// Connects to the Redis at `url`, keeping the log under keys `{prefix}:…`.
    ///
    /// # Errors
    ///
    /// When the URL is invalid or Redis does not answer.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, LogError> {
        let client = Client::open(url).map_err(LogError::from)?;
        // Fail fast while Redis is away: one reconnection attempt per command, so a publish
        // is refused (503) in about a connect timeout instead of waiting through a long
        // series of retries; the next command tries again.
        let config = |timeout: Duration| {
            ConnectionManagerConfig::new()
                .set_response_timeout(Some(timeout))
                .set_connection_timeout(Some(Duration::from_secs(1)))
                .set_number_of_retries(1)
                .set_min_delay(Duration::from_millis(50))
                .set_max_delay(Duration::from_millis(500))
        };
        let conn = ConnectionManager::new_with_config(client.clone(), config(RESPONSE_TIMEOUT))
            .await
            .map_err(LogError::from)?;
        let follow_conn =
            ConnectionManager::new_with_config(client, config(FOLLOW_BLOCK + RESPONSE_TIMEOUT))
                .await
                .map_err(LogError::from)?;
        Ok(Self {
            conn,
            follow_conn,
            keys: Keys {
                log: format!("{prefix}:log"),
                head: format!("{prefix}:head"),
                ids: format!("{prefix}:ids"),
            },
            append: Script::new(APPEND),
            read: Script::new(READ),
            prune: Script::new(PRUNE),
        })
    }

    fn range_start(after: u64) -> String {
        format!("{}-0", after.saturating_add(1))
    }
}

/// Decodes one stream entry into a record.
fn record_of(entry: &StreamId) -> Result<Record, LogError> {
    let bad = |what: &str| {
        LogError::other(format!(
            "redis log entry {}: bad or missing {what}",
            entry.id
        ))
    };
    let seq: u64 = entry
        .id
        .split('-')
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("id"))?;
    let text = |field: &str| entry.get::<String>(field).ok_or_else(|| bad(field));
    let topics: Vec<String> = serde_json::from_str(&text("t")?).map_err(|_| bad("topics"))?;
    let event_type = text("y")?;
    let retry = text("r")?;
    let closes = text("x").unwrap_or_default();
    let closes = if closes.is_empty() {
        Vec::new()
    } else {
        serde_json::from_str(&closes).map_err(|_| bad("closes"))?
    };
    let update = Update {
        topics,
        closes,
        data: text("d")?,
        private: text("p")? == "1",
        id: None,
        event_type: (!event_type.is_empty()).then_some(event_type),
        retry: if retry.is_empty() {
            None
        } else {
            Some(retry.parse().map_err(|_| bad("retry"))?)
        },
    };
    let created_at_ms = text("c")?.parse().map_err(|_| bad("time"))?;
    Ok(Record::new(seq, text("u")?.into(), &update, created_at_ms))
}

fn records_of(entries: &[StreamId]) -> Result<Vec<Record>, LogError> {
    entries.iter().map(record_of).collect()
}

impl EventLog for RedisLog {
    fn append(&self, entries: Vec<Entry>) -> BoxFuture<'_, Result<Vec<u64>, LogError>> {
        Box::pin(async move {
            let mut invocation = self.append.prepare_invoke();
            invocation
                .key(&self.keys.log)
                .key(&self.keys.head)
                .key(&self.keys.ids);
            for e in &entries {
                let topics = serde_json::to_string(&e.update.topics)
                    .expect("a list of strings always serializes");
                invocation
                    .arg(&*e.id)
                    .arg(topics)
                    .arg(&e.update.data)
                    .arg(if e.update.private { "1" } else { "0" })
                    .arg(e.update.event_type.as_deref().unwrap_or(""))
                    .arg(e.update.retry.map(|r| r.to_string()).unwrap_or_default())
                    .arg(e.created_at_ms)
                    .arg(if e.update.closes.is_empty() {
                        String::new()
                    } else {
                        serde_json::to_string(&e.update.closes)
                            .expect("a list of strings always serializes")
                    });
            }
            let mut conn = self.conn.clone();
            invocation
                .invoke_async(&mut conn)
                .await
                .map_err(LogError::from)
        })
    }

    fn read(
        &self,
        after: u64,
        up_to: u64,
        limit: usize,
        max_bytes: usize,
    ) -> BoxFuture<'_, Result<Vec<Record>, LogError>> {
        Box::pin(async move {
            if up_to <= after || limit == 0 {
                return Ok(Vec::new());
            }
            let mut conn = self.conn.clone();
            let reply: StreamRangeReply = self
                .read
                .key(&self.keys.log)
                .arg(Self::range_start(after))
                .arg(format!("{up_to}-0"))
                .arg(limit)
                .arg(max_bytes)
                .invoke_async(&mut conn)
                .await
                .map_err(LogError::from)?;
            records_of(&reply.ids)
        })
    }

    fn latest_seq_of<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<u64>, LogError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            conn.hget(&self.keys.ids, id).await.map_err(LogError::from)
        })
    }

    fn head(&self) -> BoxFuture<'_, Result<u64, LogError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let head: Option<u64> = conn.get(&self.keys.head).await.map_err(LogError::from)?;
            Ok(head.unwrap_or(0))
        })
    }

    fn prune(
        &self,
        below_seq: u64,
        before_ms: Option<i64>,
    ) -> BoxFuture<'_, Result<u64, LogError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            self.prune
                .key(&self.keys.log)
                .key(&self.keys.ids)
                .arg(below_seq)
                .arg(before_ms.unwrap_or(i64::MIN))
                .arg(PRUNE_MAX)
                .invoke_async(&mut conn)
                .await
                .map_err(LogError::from)
        })
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn follow(&self, after: u64, limit: usize) -> BoxFuture<'_, Result<Vec<Record>, LogError>> {
        Box::pin(async move {
            let mut conn = self.follow_conn.clone();
            let block = u64::try_from(FOLLOW_BLOCK.as_millis()).unwrap_or(1000);
            let reply: Option<StreamReadReply> = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(limit)
                .arg("BLOCK")
                .arg(block)
                .arg("STREAMS")
                .arg(&self.keys.log)
                .arg(format!("{after}-0"))
                .query_async(&mut conn)
                .await
                .map_err(LogError::from)?;
            match reply {
                Some(reply) => {
                    let entries: Vec<StreamId> =
                        reply.keys.into_iter().flat_map(|key| key.ids).collect();
                    records_of(&entries)
                }
                None => Ok(Vec::new()),
            }
        })
    }
}
