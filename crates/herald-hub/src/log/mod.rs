//! The durable event log: the [`EventLog`] trait and its SQLite implementation,
//! [`SqliteLog`].
//!
//! The log is the source of truth. An update is acknowledged only after the transaction
//! holding it has committed, and every replay that reaches past the in-memory history
//! reads from here.
//!
//! # Repeated ids
//!
//! Every log follows one rule: an update whose id the log already holds is not stored again,
//! and its publisher is acknowledged with the position the log has for it. A shared log
//! applies it in its own append (it numbers entries); for a node's own log the hub applies
//! it before numbering a batch, with [`EventLog::positions_of`], so positions stay
//! contiguous.

use std::{
    path::Path,
    str::FromStr,
    sync::{Arc, Mutex},
    time::Duration,
};

mod writer;

use futures::future::BoxFuture;
use sqlx::{
    Any, Executor, Row,
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
    },
};

use tokio::{task::JoinHandle, time::MissedTickBehavior};
use tokio_util::sync::CancellationToken;
pub use writer::LogConnection;
use writer::Writer;

use crate::update::{Record, Update};

/// A failure of the storage under the log. Publishes fail with it; nothing is acknowledged.
#[derive(Debug, thiserror::Error)]
#[error("event log: {0}")]
pub struct LogError(Box<dyn std::error::Error + Send + Sync>);

impl LogError {
    /// A log error with `message`, for storage that reports failures as text.
    pub fn other(message: impl Into<String>) -> Self {
        Self(message.into().into())
    }
}

impl From<sqlx::Error> for LogError {
    fn from(error: sqlx::Error) -> Self {
        Self(Box::new(error))
    }
}

impl From<redis::RedisError> for LogError {
    fn from(error: redis::RedisError) -> Self {
        Self(Box::new(error))
    }
}

/// One update on its way into the log, already sequenced.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its position; the sequencer assigns these in order.
    pub seq: u64,
    /// The id subscribers will see.
    pub id: Arc<str>,
    /// What the publisher sent.
    pub update: Update,
    /// Unix time of the publish, in milliseconds.
    pub created_at_ms: i64,
}

/// Work on the log's own database that commits in the transaction of a batch of updates,
/// for a server that keeps its tables in the log's file ([`EventLog::runs_work`]): its
/// changes and their updates are stored together, or not at all. It runs under a savepoint
/// of its own, so a failing work is rolled back alone; it returns the entries of its
/// updates, which the log numbers after those before it in the batch. It must only use the
/// connection: it runs on the log's writer, holding every publish behind it.
pub type Work = Box<
    dyn for<'c> FnOnce(&'c mut LogConnection) -> BoxFuture<'c, Result<Vec<Entry>, WorkError>>
        + Send,
>;

/// Why a [`Work`] failed: its own error, handed back to whoever submitted it.
pub type WorkError = Box<dyn std::error::Error + Send + Sync>;

/// One item of a batch for [`EventLog::transact`].
pub enum Step {
    /// An update to store; the log sets its `seq`.
    Entry(Entry),
    /// Work to run; its entries are stored after it.
    Work(Work),
}

impl std::fmt::Debug for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Entry(entry) => f.debug_tuple("Entry").field(&entry.seq).finish(),
            Self::Work(_) => f.write_str("Work"),
        }
    }
}

/// What became of one [`Step`] of a committed batch.
#[derive(Debug)]
pub enum Outcome {
    /// Stored: these entries of [`Transacted::entries`], in order.
    Stored(std::ops::Range<usize>),
    /// The work failed and was rolled back; nothing of it was stored.
    Failed(WorkError),
}

/// A batch [`EventLog::transact`] committed.
#[derive(Debug)]
pub struct Transacted {
    /// Every stored entry, numbered from the batch's first position, in order.
    pub entries: Vec<Entry>,
    /// One per step, in the steps' order.
    pub outcomes: Vec<Outcome>,
}

/// How long one [`Work`] may run before it is rolled back and fails: it holds the log's
/// writer, and every change and publish behind it, meanwhile.
pub const WORK_BUDGET: Duration = Duration::from_secs(2);

/// Ordered, durable storage of updates.
///
/// A log of one node ([`SqliteLog`]) is appended to by the hub's sequencer only, one batch at
/// a time, with the strictly increasing `seq`s the sequencer assigned. A shared log
/// ([`EventLog::is_shared`], e.g. `RedisLog`) has writers on other nodes too: it numbers
/// entries itself, and the hub fans out what it reads back with [`EventLog::follow`].
pub trait EventLog: Send + Sync + std::fmt::Debug + 'static {
    /// Stores a batch atomically; returns once it is durable, with each entry's position
    /// (for a node's own log, the `seq`s it was given).
    fn append(&self, entries: Vec<Entry>) -> BoxFuture<'_, Result<Vec<u64>, LogError>>;
    /// Records with `after < seq <= up_to`, in order: at most `limit` of them, and none
    /// after those already read hold `max_bytes` of data (the first is always read), so a
    /// page of large updates stays small.
    fn read(
        &self,
        after: u64,
        up_to: u64,
        limit: usize,
        max_bytes: usize,
    ) -> BoxFuture<'_, Result<Vec<Record>, LogError>>;
    /// The position of the latest update that carries `id`, if it is retained.
    fn latest_seq_of<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<u64>, LogError>>;
    /// For each of `ids`, the position of the latest update that carries it, if retained.
    /// The hub asks before it appends updates whose publishers chose their ids.
    fn positions_of<'a>(
        &'a self,
        ids: &'a [&'a str],
    ) -> BoxFuture<'a, Result<Vec<Option<u64>>, LogError>> {
        Box::pin(async move {
            let mut positions = Vec::with_capacity(ids.len());
            for id in ids {
                positions.push(self.latest_seq_of(id).await?);
            }
            Ok(positions)
        })
    }
    /// The highest `seq` ever appended (0 for a new log), even if since pruned.
    fn head(&self) -> BoxFuture<'_, Result<u64, LogError>>;
    /// Whether the log can take appends: it answers, and nothing has made it refuse them.
    fn check(&self) -> BoxFuture<'_, Result<(), LogError>> {
        Box::pin(async { self.head().await.map(|_| ()) })
    }
    /// Deletes records with `seq <= below_seq`, and, from the oldest on, those created
    /// before `before_ms` up to the first that was not: a record older than one kept before
    /// it (the clock stepped back) stays until that one goes. Returns how many were deleted.
    fn prune(&self, below_seq: u64, before_ms: Option<i64>)
    -> BoxFuture<'_, Result<u64, LogError>>;

    /// Ends the log's background work after a last round of it, and waits for that; reads
    /// and appends still work after. The server calls it once the hub has stored its last
    /// updates, so the process exits only after the work is done.
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    /// Whether other nodes append to this log too.
    fn is_shared(&self) -> bool {
        false
    }

    /// Whether the log runs [`Work`] in its transactions ([`EventLog::transact`]).
    fn runs_work(&self) -> bool {
        false
    }

    /// Runs `steps` in one transaction, in order, and commits once: each entry is numbered
    /// from `first` on, each work runs under a savepoint and its entries are numbered after
    /// it. A failing work is rolled back alone; the batch fails whole only when the
    /// transaction does.
    fn transact(
        &self,
        steps: Vec<Step>,
        first: u64,
    ) -> BoxFuture<'_, Result<Transacted, LogError>> {
        let _ = (steps, first);
        Box::pin(async { Err(LogError::other("this event log cannot run work")) })
    }

    /// Records after `after`, in order, at most `limit`; a shared log waits a moment for new
    /// ones when there are none yet.
    fn follow(&self, after: u64, limit: usize) -> BoxFuture<'_, Result<Vec<Record>, LogError>> {
        self.read(after, u64::MAX >> 1, limit, usize::MAX)
    }
}

/// How hard SQLite works to keep a commit across a power loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=FULL`: every commit is fsynced before the publish is acknowledged.
    #[default]
    Full,
    /// `synchronous=NORMAL`: commits survive a crash of Herald (including `kill -9`) but the
    /// last ones may be lost on power failure. Faster.
    Normal,
}

impl FromStr for Durability {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "full" => Ok(Self::Full),
            "normal" => Ok(Self::Normal),
            other => Err(format!(
                "unknown durability {other:?} (expected full or normal)"
            )),
        }
    }
}

/// SQLite's page cache per connection, in KiB.
const CACHE_KIB: u64 = 16 * 1024;

/// How much of the log file SQLite may map instead of reading it with `pread`.
const MMAP_BYTES: u64 = 256 * 1024 * 1024;

/// Connections that serve replays and id lookups, beside the one writer.
const READERS: u32 = 3;

/// The embedded event log: one SQLite file in WAL mode.
///
/// Appends and pruning go through one connection, on the writer's thread (`writer`). A
/// connection's page cache is only valid while no other connection has written: with
/// writes spread over several, every append would find its cache stale and read the id
/// index back with `pread`.
///
/// The writer answers `sqlx::Any` queries ([`LogConnection`]), so that [`Work`] written for
/// any database runs on it: a server may keep its own tables in the log's file and commit
/// its changes with their updates ([`EventLog::transact`]). Reads go through sqlx's SQLite
/// driver.
#[derive(Clone, Debug)]
pub struct SqliteLog {
    writer: Arc<Writer>,
    readers: SqlitePool,
    /// The WAL checkpoint task, shared by every clone.
    checkpoints: Arc<Checkpoints>,
}

/// The task that runs [`checkpoints`]: [`EventLog::close`] stops it and waits for its last
/// checkpoint. Dropping the last clone of the log stops it too, but nothing waits for that
/// last checkpoint, which may not finish if the runtime ends first; nothing is lost then,
/// since SQLite replays the WAL when the log is next opened.
#[derive(Debug)]
struct Checkpoints {
    stop: CancellationToken,
    /// Taken by the first [`EventLog::close`], which awaits it.
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Checkpoints {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl SqliteLog {
    /// Opens (creating if needed) the log at `path` and runs its migrations.
    ///
    /// # Errors
    ///
    /// When the file cannot be opened or migrated.
    pub async fn open(path: &Path, durability: Durability) -> Result<Self, LogError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match durability {
                Durability::Full => SqliteSynchronous::Full,
                Durability::Normal => SqliteSynchronous::Normal,
            })
            .busy_timeout(Duration::from_secs(5))
            // Publishers' own ids may be random: with SQLite's default 2 MiB page cache most
            // inserts into the id index would read B-tree pages back through `pread`, a copy
            // each. Keep the working set (100,000 retained updates by default) in memory.
            .pragma("cache_size", format!("-{}", CACHE_KIB))
            .pragma("mmap_size", MMAP_BYTES.to_string())
            // A burst grows the WAL file; once it restarts, give the space back past this.
            .pragma("journal_size_limit", WAL_LIMIT_BYTES.to_string());
        let readers = SqlitePoolOptions::new()
            .max_connections(READERS)
            .connect_with(options)
            .await?;
        // A server's own migrations may share the file's migration table: the log ignores
        // theirs, as theirs must ignore the log's.
        let mut migrator = sqlx::migrate!("./migrations/sqlite");
        migrator.set_ignore_missing(true);
        migrator
            .run(&readers)
            .await
            .map_err(|e| LogError::from(sqlx::Error::from(e)))?;
        // The writer never checkpoints on its own: SQLite would do it inside the commit that
        // crosses 1,000 WAL pages, holding that publish (and the batch behind it) for
        // milliseconds. `checkpoints` does it beside the writer instead.
        let synchronous = match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        let pragmas = vec![
            "PRAGMA journal_mode = WAL".to_owned(),
            format!("PRAGMA synchronous = {synchronous}"),
            "PRAGMA busy_timeout = 5000".to_owned(),
            format!("PRAGMA cache_size = -{CACHE_KIB}"),
            format!("PRAGMA mmap_size = {MMAP_BYTES}"),
            format!("PRAGMA journal_size_limit = {WAL_LIMIT_BYTES}"),
            "PRAGMA wal_autocheckpoint = 0".to_owned(),
            // For the tables a server keeps beside the log.
            "PRAGMA foreign_keys = ON".to_owned(),
        ];
        let writer = Arc::new(Writer::start(path, pragmas).await?);
        let stop = CancellationToken::new();
        let task = tokio::spawn(checkpoints(writer.clone(), readers.clone(), stop.clone()));
        Ok(Self {
            writer,
            readers,
            checkpoints: Arc::new(Checkpoints {
                stop,
                task: Mutex::new(Some(task)),
            }),
        })
    }
}

impl SqliteLog {
    /// The log's head as `conn` sees it: for a server whose tables share the log's file, a
    /// read transaction that asks this first gets the position its snapshot is consistent
    /// with, exactly (an update is in it exactly when the change it came with is).
    ///
    /// # Errors
    ///
    /// When the query fails, or `conn` is not on a log's file.
    pub async fn head_in<'c>(conn: impl Executor<'c, Database = Any>) -> Result<u64, LogError> {
        let seq: i64 = sqlx::query_scalar(
            "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'updates'), 0)",
        )
        .fetch_one(conn)
        .await?;
        Ok(seq_from_sql(seq))
    }

    /// Whether the log holds an update with `id`, as `conn` (on the log's file, inside a
    /// [`Work`]) sees it.
    ///
    /// # Errors
    ///
    /// When the query fails, or `conn` is not on a log's file.
    pub async fn holds_in<'c>(
        conn: impl Executor<'c, Database = Any>,
        id: &str,
    ) -> Result<bool, LogError> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT seq FROM updates WHERE uid = $1 LIMIT 1")
                .bind(id)
                .fetch_optional(conn)
                .await?;
        Ok(found.is_some())
    }
}

/// How often the WAL is copied back into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// WAL pages past which the writer itself checkpoints, between two appends.
const WAL_LIMIT_PAGES: i64 = 4_096;

/// The size a WAL file is truncated to when it restarts.
const WAL_LIMIT_BYTES: i64 = WAL_LIMIT_PAGES * 4096;

/// Keeps the WAL short without stalling appends: a `PASSIVE` checkpoint on a reader
/// connection copies committed pages while the writer goes on. Under a constant stream of
/// appends a passive checkpoint may never catch up with the end of the WAL, which then
/// never restarts; past [`WAL_LIMIT_PAGES`] (16 MiB) the writer runs a `PASSIVE` checkpoint
/// itself, between two batches, as SQLite's automatic checkpoint would have, but rarely:
/// nothing is appended meanwhile, so it catches up (it has little left to copy), and the next
/// batch restarts the WAL. It never waits for readers. Only a WAL that still grows past four
/// times the limit (readers holding old snapshots all along) gets a `RESTART`, which waits
/// for them and holds every batch meanwhile.
///
/// When `stop` is cancelled, a last `TRUNCATE` checkpoint copies everything into the
/// database file and empties the WAL: the file alone then holds the whole log.
async fn checkpoints(writer: Arc<Writer>, readers: SqlitePool, stop: CancellationToken) {
    let mut every = tokio::time::interval(CHECKPOINT_EVERY);
    every.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = every.tick() => {}
        }
        let passive: Result<(i64, i64, i64), _> = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&readers)
            .await;
        match passive {
            Ok((_, wal_pages, _)) if wal_pages > WAL_LIMIT_PAGES => {
                let mode = if wal_pages > 4 * WAL_LIMIT_PAGES {
                    "RESTART"
                } else {
                    "PASSIVE"
                };
                if let Err(error) = writer.run(move |conn| checkpoint(conn, mode)).await {
                    tracing::warn!(%error, "event log: WAL checkpoint failed");
                }
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "event log: WAL checkpoint failed"),
        }
    }
    if let Err(error) = writer.run(|conn| checkpoint(conn, "TRUNCATE")).await {
        tracing::warn!(%error, "event log: the last WAL checkpoint failed");
    }
}

/// A checkpoint of `mode` on the writer's connection.
fn checkpoint(conn: &mut LogConnection, mode: &str) -> Result<(), LogError> {
    conn.sqlite()
        .query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(()))?;
    Ok(())
}

impl EventLog for SqliteLog {
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.checkpoints.stop.cancel();
            let task = self
                .checkpoints
                .task
                .lock()
                .expect("checkpoint task poisoned")
                .take();
            if let Some(task) = task
                && let Err(error) = task.await
            {
                tracing::error!(%error, "event log: the checkpoint task failed");
            }
        })
    }

    fn append(&self, entries: Vec<Entry>) -> BoxFuture<'_, Result<Vec<u64>, LogError>> {
        Box::pin(self.writer.run(move |conn| {
            conn.batch("BEGIN IMMEDIATE")?;
            let stored = insert(conn, &entries).and_then(|()| conn.commit());
            if stored.is_err() {
                conn.roll_back();
            }
            stored.map(|()| entries.iter().map(|e| e.seq).collect())
        }))
    }

    fn runs_work(&self) -> bool {
        true
    }

    fn check(&self) -> BoxFuture<'_, Result<(), LogError>> {
        Box::pin(async {
            if let Some(why) = self.writer.failed() {
                return Err(LogError::other(why));
            }
            self.head().await.map(|_| ())
        })
    }

    fn transact(
        &self,
        steps: Vec<Step>,
        first: u64,
    ) -> BoxFuture<'_, Result<Transacted, LogError>> {
        Box::pin(self.writer.run(move |conn| {
            // Nothing of the batch stands unless all of it commits.
            let committed = run_steps(conn, steps, first);
            if committed.is_err() {
                conn.roll_back();
            }
            committed
        }))
    }

    fn read(
        &self,
        after: u64,
        up_to: u64,
        limit: usize,
        max_bytes: usize,
    ) -> BoxFuture<'_, Result<Vec<Record>, LogError>> {
        Box::pin(async move {
            // The page ends at the last row whose predecessors in it hold less than
            // `max_bytes` (data, id and topics: what a record holds in memory); sizes are
            // read without loading the data (`octet_length`), so rows past the bound never
            // leave SQLite.
            let rows = sqlx::query(
                "SELECT seq, uid, topics, data, private, type, retry, created_at, closes FROM updates \
                 WHERE seq > ?1 AND seq <= (SELECT MAX(seq) FROM ( \
                     SELECT seq, SUM(size) OVER (ORDER BY seq ROWS BETWEEN UNBOUNDED PRECEDING \
                         AND 1 PRECEDING) AS before FROM ( \
                         SELECT seq, octet_length(data) + octet_length(uid) + octet_length(topics) \
                             + COALESCE(octet_length(closes), 0) AS size FROM updates \
                         WHERE seq > ?1 AND seq <= ?2 ORDER BY seq LIMIT ?3)) \
                     WHERE COALESCE(before, 0) < ?4) \
                 ORDER BY seq",
            )
            .bind(seq_to_sql(after))
            .bind(seq_to_sql(up_to))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .bind(i64::try_from(max_bytes.max(1)).unwrap_or(i64::MAX))
            .fetch_all(&self.readers)
            .await?;
            rows.iter().map(record_from_row).collect()
        })
    }

    fn latest_seq_of<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<u64>, LogError>> {
        Box::pin(async move {
            let seq: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM updates WHERE uid = ?")
                .bind(id)
                .fetch_one(&self.readers)
                .await?;
            Ok(seq.map(seq_from_sql))
        })
    }

    fn positions_of<'a>(
        &'a self,
        ids: &'a [&'a str],
    ) -> BoxFuture<'a, Result<Vec<Option<u64>>, LogError>> {
        // On the writer's connection: its cache holds the id index the appends just wrote,
        // and replays on the readers cannot make the sequencer wait.
        let ids: Vec<String> = ids.iter().map(|id| (*id).to_owned()).collect();
        Box::pin(self.writer.run(move |conn| {
            let mut latest = conn
                .sqlite()
                .prepare_cached("SELECT MAX(seq) FROM updates WHERE uid = ?1")?;
            ids.iter()
                .map(|id| {
                    let seq: Option<i64> = latest.query_row([id], |row| row.get(0))?;
                    Ok(seq.map(seq_from_sql))
                })
                .collect()
        }))
    }

    fn head(&self) -> BoxFuture<'_, Result<u64, LogError>> {
        Box::pin(async move {
            let seq: i64 = sqlx::query_scalar(
                "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'updates'), 0)",
            )
            .fetch_one(&self.readers)
            .await?;
            Ok(seq_from_sql(seq))
        })
    }

    fn prune(
        &self,
        below_seq: u64,
        before_ms: Option<i64>,
    ) -> BoxFuture<'_, Result<u64, LogError>> {
        Box::pin(self.writer.run(move |conn| {
            // In a transaction of its own, so that its commit is refused, and its sync
            // checked, as every commit of the writer is.
            conn.batch("BEGIN IMMEDIATE")?;
            // One range of `seq`s: the age bound is found by walking from the oldest record
            // to the first young enough to keep, which reads about as many rows as it
            // deletes.
            let pruned = conn.sqlite().execute(
                "DELETE FROM updates WHERE seq <= MAX(?1, COALESCE( \
                     (SELECT seq - 1 FROM updates WHERE created_at >= ?2 ORDER BY seq LIMIT 1), \
                     (SELECT MAX(seq) FROM updates)))",
                (seq_to_sql(below_seq), before_ms.unwrap_or(i64::MIN)),
            );
            let pruned = pruned
                .map_err(LogError::from)
                .and_then(|pruned| conn.commit().map(|()| pruned));
            if pruned.is_err() {
                conn.roll_back();
            }
            Ok(u64::try_from(pruned?).unwrap_or(u64::MAX))
        }))
    }
}

/// Runs the steps of [`EventLog::transact`] in one transaction on `conn`, stores their
/// entries and commits. Each work runs under the savepoint `work`, which a failing work is
/// rolled back to, and which is released after it either way.
///
/// A work's future is driven here, on the writer's thread: its queries are answered as it
/// makes them, so it is ready at once unless it waits for something else. [`WORK_BUDGET`]
/// bounds both: a wait by a timer, and its queries by a deadline, past which they are
/// refused and a statement still running is interrupted.
///
/// On an error the transaction may be open: the caller rolls it back.
fn run_steps(
    conn: &mut LogConnection,
    steps: Vec<Step>,
    first: u64,
) -> Result<Transacted, LogError> {
    conn.batch("BEGIN IMMEDIATE")?;
    let mut entries: Vec<Entry> = Vec::with_capacity(steps.len());
    let mut outcomes = Vec::with_capacity(steps.len());
    for step in steps {
        let start = entries.len();
        match step {
            Step::Entry(entry) => entries.push(entry),
            Step::Work(work) => {
                conn.batch("SAVEPOINT work")?;
                conn.budget(Some(WORK_BUDGET));
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    futures::executor::block_on(tokio::time::timeout(WORK_BUDGET, work(&mut *conn)))
                }));
                conn.budget(None);
                if conn.sqlite().is_autocommit() {
                    // SQLite ended the transaction: it interrupted a write of this work
                    // (see `LogConnection::budget`), or the work ended it itself.
                    return Err(LogError::other(
                        "a work ended the batch's transaction (a write of it overran its \
                         budget, or it committed or rolled back): nothing of the batch stands",
                    ));
                }
                let failed: WorkError = match ran {
                    Ok(Ok(Ok(made))) if !conn.overran() => {
                        conn.batch("RELEASE work")?;
                        entries.extend(made);
                        outcomes.push(Outcome::Stored(start..entries.len()));
                        continue;
                    }
                    Err(_) => "the work panicked".into(),
                    Ok(Ok(Err(error))) if !conn.overran() => error,
                    // Timed out waiting, or a query of it was refused or interrupted.
                    Ok(_) => {
                        format!("the work took longer than {} ms", WORK_BUDGET.as_millis()).into()
                    }
                };
                conn.batch("ROLLBACK TO work; RELEASE work")?;
                outcomes.push(Outcome::Failed(failed));
                continue;
            }
        }
        outcomes.push(Outcome::Stored(start..entries.len()));
    }
    for (entry, seq) in entries.iter_mut().zip(first..) {
        entry.seq = seq;
    }
    insert(conn, &entries)?;
    conn.commit()?;
    Ok(Transacted { entries, outcomes })
}

/// The URL of the SQLite file at `path` for `sqlx::Any`: absolute and percent-encoded, and
/// creating the file if it is missing.
///
/// # Errors
///
/// When the path cannot be made absolute.
pub fn sqlite_url(path: &Path) -> Result<String, LogError> {
    let path = std::path::absolute(path)
        .map_err(|e| LogError::other(format!("cannot resolve {}: {e}", path.display())))?;
    let mut url = String::from("sqlite://");
    for &byte in path.as_os_str().as_encoded_bytes() {
        if byte.is_ascii_alphanumeric() || b"/-._~".contains(&byte) {
            url.push(char::from(byte));
        } else {
            url.push_str(&format!("%{byte:02X}"));
        }
    }
    url.push_str("?mode=rwc");
    Ok(url)
}

/// Inserts `entries`, one prepared statement each: direct calls into SQLite, inside the
/// caller's transaction.
fn insert(conn: &LogConnection, entries: &[Entry]) -> Result<(), LogError> {
    let mut insert = conn.sqlite().prepare_cached(
        "INSERT INTO updates (seq, uid, topics, data, private, type, retry, created_at, closes) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    for e in entries {
        let topics =
            serde_json::to_string(&e.update.topics).expect("a list of strings always serializes");
        let closes = (!e.update.closes.is_empty())
            .then(|| serde_json::to_string(&e.update.closes).expect("strings always serialize"));
        insert.execute(rusqlite::params![
            seq_to_sql(e.seq),
            &*e.id,
            topics,
            e.update.data,
            e.update.private,
            e.update.event_type.as_deref(),
            e.update.retry.map(|r| i64::try_from(r).unwrap_or(i64::MAX)),
            e.created_at_ms,
            closes,
        ])?;
    }
    Ok(())
}

fn record_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Record, LogError> {
    let topics: String = row.try_get("topics")?;
    let topics: Vec<String> = serde_json::from_str(&topics)
        .map_err(|e| LogError::from(sqlx::Error::Decode(Box::new(e))))?;
    let retry: Option<i64> = row.try_get("retry")?;
    let closes: Option<String> = row.try_get("closes")?;
    let closes: Vec<String> = match closes {
        Some(json) => serde_json::from_str(&json)
            .map_err(|e| LogError::from(sqlx::Error::Decode(Box::new(e))))?,
        None => Vec::new(),
    };
    let update = Update {
        closes,
        topics,
        data: row.try_get("data")?,
        private: row.try_get("private")?,
        id: None,
        event_type: row.try_get("type")?,
        retry: retry.map(|r| u64::try_from(r).unwrap_or(0)),
    };
    let id: String = row.try_get("uid")?;
    Ok(Record::new(
        seq_from_sql(row.try_get("seq")?),
        id.into(),
        &update,
        row.try_get("created_at")?,
    ))
}

fn seq_to_sql(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

fn seq_from_sql(seq: i64) -> u64 {
    u64::try_from(seq).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, id: &str, created_at_ms: i64) -> Entry {
        Entry {
            seq,
            id: id.into(),
            update: Update {
                topics: vec!["t".into(), "u".into()],
                data: format!("data {seq}\nline two"),
                private: seq.is_multiple_of(2),
                id: None,
                event_type: Some("kind".into()),
                retry: Some(1500),
                closes: if seq.is_multiple_of(3) {
                    vec!["u".into()]
                } else {
                    Vec::new()
                },
            },
            created_at_ms,
        }
    }

    #[tokio::test]
    async fn a_batch_is_stored_whole_or_not_at_all() {
        let (_dir, log) = temp_log().await;
        log.append(vec![entry(1, "a", 1)]).await.unwrap();
        // A small batch and a large one, each ending in a row that collides with seq 1.
        for size in [3, 300] {
            let mut batch: Vec<Entry> = (2..=size as u64).map(|s| entry(s, "b", 1)).collect();
            batch.push(entry(1, "dup", 1));
            assert!(log.append(batch).await.is_err(), "size {size}");
            let stored = log
                .read(0, u64::MAX >> 2, 10_000, usize::MAX)
                .await
                .unwrap();
            assert_eq!(
                stored.len(),
                1,
                "size {size}: nothing of the failed batch is stored"
            );
        }
    }

    #[tokio::test]
    async fn the_wal_is_checkpointed_beside_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.db");
        let log = SqliteLog::open(&path, Durability::Normal).await.unwrap();
        // The migrations' pages reach the file first.
        tokio::time::sleep(CHECKPOINT_EVERY * 3).await;
        let before = std::fs::metadata(&path).unwrap().len();
        // Enough pages for the database file to grow once they are copied into it; the
        // writer itself never checkpoints.
        for chunk in 0..20_u64 {
            let batch: Vec<Entry> = (1..=100)
                .map(|n| entry(chunk * 100 + n, &format!("id-{chunk}-{n}"), 1))
                .collect();
            log.append(batch).await.unwrap();
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(&path).unwrap().len() <= before {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no checkpoint within 10 s"
            );
            tokio::time::sleep(CHECKPOINT_EVERY).await;
        }
    }

    #[tokio::test]
    async fn close_waits_for_a_last_checkpoint_that_empties_the_wal() {
        let (dir, log) = temp_log().await;
        let batch: Vec<Entry> = (1..=100).map(|n| entry(n, &format!("id-{n}"), 1)).collect();
        log.append(batch).await.unwrap();
        let wal = dir.path().join("log.db-wal");
        let wal_len = || std::fs::metadata(&wal).unwrap().len();
        // A passive checkpoint copies pages but leaves the WAL file as long as it was.
        assert!(wal_len() > 0, "the appends went to the WAL");
        log.clone().close().await;
        assert_eq!(
            wal_len(),
            0,
            "no last checkpoint emptied the WAL before close returned"
        );
        assert!(log.checkpoints.task.lock().unwrap().is_none());
        // The log still serves; a second close has nothing to wait for.
        assert_eq!(log.head().await.unwrap(), 100);
        assert_eq!(log.read(0, 100, 1000, usize::MAX).await.unwrap().len(), 100);
        log.close().await;
    }

    /// A work that inserts `value` into the table `t`, then fails, panics, overruns its
    /// budget or returns one entry per item of `entries`, as `how` says. It overruns by
    /// waiting (`slow`), by one statement that never ends (`runaway`, `runaway write`) or by
    /// queries without end (`busy`, and `stubborn`, which then returns as if it had not);
    /// it panics before its first query (`panic early`) or after it.
    fn work(value: i64, how: &'static str, entries: Vec<Entry>) -> Step {
        Step::Work(Box::new(move |conn: &mut LogConnection| {
            assert_ne!(how, "panic early", "a bug in the work");
            Box::pin(async move {
                sqlx::query("INSERT INTO t (x) VALUES ($1)")
                    .bind(value)
                    .execute(&mut *conn)
                    .await?;
                match how {
                    "fail" => Err("refused".into()),
                    "panic" => panic!("a bug in the work"),
                    "slow" => {
                        tokio::time::sleep(WORK_BUDGET + Duration::from_millis(200)).await;
                        Ok(entries)
                    }
                    "runaway" => {
                        sqlx::query(
                            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) \
                             SELECT max(x) FROM c",
                        )
                        .execute(&mut *conn)
                        .await?;
                        Ok(entries)
                    }
                    "busy" => loop {
                        sqlx::query("SELECT 1").execute(&mut *conn).await?;
                    },
                    "stubborn" => {
                        while sqlx::query("SELECT 1").execute(&mut *conn).await.is_ok() {}
                        Ok(entries)
                    }
                    "runaway write" => {
                        sqlx::query(
                            "INSERT INTO t (x) SELECT x FROM (WITH RECURSIVE c(x) AS \
                             (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c)",
                        )
                        .execute(&mut *conn)
                        .await?;
                        Ok(entries)
                    }
                    _ => Ok(entries),
                }
            })
        }))
    }

    /// A fresh log in a temporary directory, which lives as long as the returned guard.
    async fn temp_log() -> (tempfile::TempDir, SqliteLog) {
        let dir = tempfile::tempdir().unwrap();
        let log = SqliteLog::open(&dir.path().join("log.db"), Durability::Normal)
            .await
            .unwrap();
        (dir, log)
    }

    /// A log in a temporary directory, with the table `t` that [`work`] writes to.
    async fn log_with_table_t() -> (tempfile::TempDir, SqliteLog) {
        let (dir, log) = temp_log().await;
        log.writer
            .run(|conn| conn.batch("CREATE TABLE t (x INTEGER NOT NULL)"))
            .await
            .unwrap();
        (dir, log)
    }

    /// The rows of the table `t` that [`work`] writes to, as the readers see them.
    async fn rows_in_t(log: &SqliteLog) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&log.readers)
            .await
            .unwrap()
    }

    /// Work and entries commit in one transaction; each work runs under its own savepoint,
    /// so one that fails, panics or overruns its budget (waiting, or in SQLite) is rolled
    /// back alone, and the others' rows and entries stand, numbered in the order of the
    /// steps.
    #[tokio::test]
    async fn work_commits_with_the_batch_and_a_failing_work_is_rolled_back_alone() {
        let (_dir, log) = log_with_table_t().await;
        assert!(log.runs_work());
        let steps = vec![
            work(1, "ok", vec![entry(0, "w1", 1)]),
            work(2, "fail", vec![entry(0, "lost", 1)]),
            Step::Entry(entry(0, "p1", 1)),
            work(3, "panic", Vec::new()),
            work(4, "slow", vec![entry(0, "late", 1)]),
            work(6, "runaway", vec![entry(0, "never", 1)]),
            work(7, "busy", Vec::new()),
            work(9, "stubborn", vec![entry(0, "stubborn", 1)]),
            work(8, "panic early", Vec::new()),
            work(5, "ok", vec![entry(0, "w5a", 1), entry(0, "w5b", 1)]),
        ];
        let done = log.transact(steps, 10).await.unwrap();
        let ids: Vec<(&str, u64)> = done.entries.iter().map(|e| (&*e.id, e.seq)).collect();
        assert_eq!(ids, [("w1", 10), ("p1", 11), ("w5a", 12), ("w5b", 13)]);
        let shapes: Vec<String> = done
            .outcomes
            .iter()
            .map(|outcome| match outcome {
                Outcome::Stored(range) => format!("{range:?}"),
                Outcome::Failed(error) => error.to_string(),
            })
            .collect();
        assert_eq!(
            shapes,
            [
                "0..1".to_owned(),
                "refused".to_owned(),
                "1..2".to_owned(),
                "the work panicked".to_owned(),
                format!("the work took longer than {} ms", WORK_BUDGET.as_millis()),
                format!("the work took longer than {} ms", WORK_BUDGET.as_millis()),
                format!("the work took longer than {} ms", WORK_BUDGET.as_millis()),
                format!("the work took longer than {} ms", WORK_BUDGET.as_millis()),
                "the work panicked".to_owned(),
                "2..4".to_owned(),
            ]
        );
        let rows: Vec<i64> = sqlx::query_scalar("SELECT x FROM t ORDER BY x")
            .fetch_all(&log.readers)
            .await
            .unwrap();
        assert_eq!(rows, [1, 5], "only the rows of the works that succeeded");
        let stored: Vec<u64> = log
            .read(0, 100, 100, usize::MAX)
            .await
            .unwrap()
            .iter()
            .map(|r| r.seq)
            .collect();
        assert_eq!(stored, [10, 11, 12, 13]);
        let seen = log
            .writer
            .run(|conn| {
                futures::executor::block_on(async {
                    Ok((
                        SqliteLog::head_in(&mut *conn).await?,
                        SqliteLog::holds_in(&mut *conn, "w5b").await?,
                        SqliteLog::holds_in(&mut *conn, "lost").await?,
                    ))
                })
            })
            .await
            .unwrap();
        assert_eq!(seen, (13, true, false));
    }

    /// A write that overruns its budget is interrupted, and SQLite then rolls back the whole
    /// transaction: the batch fails whole, saying so, and the writer serves the next one.
    #[tokio::test]
    async fn a_write_that_overruns_fails_its_batch_and_the_writer_goes_on() {
        let (_dir, log) = log_with_table_t().await;
        let steps = vec![
            work(1, "ok", vec![entry(0, "w1", 1)]),
            work(2, "runaway write", Vec::new()),
        ];
        let error = log.transact(steps, 1).await.unwrap_err();
        assert!(
            error.to_string().contains("nothing of the batch stands"),
            "{error}"
        );
        let rows = rows_in_t(&log).await;
        assert_eq!((rows, log.head().await.unwrap()), (0, 0));
        log.transact(vec![work(3, "ok", vec![entry(0, "w3", 1)])], 1)
            .await
            .unwrap();
        assert_eq!(log.head().await.unwrap(), 1);
    }

    /// A batch whose transaction fails stores nothing at all, work included.
    #[tokio::test]
    async fn a_failed_transaction_keeps_nothing_of_its_work() {
        let (_dir, log) = log_with_table_t().await;
        log.append(vec![entry(5, "taken", 1)]).await.unwrap();
        // Numbered from a position the log already holds: the INSERT of the entries fails.
        let steps = vec![work(1, "ok", vec![entry(0, "w", 1)])];
        assert!(log.transact(steps, 5).await.is_err());
        let rows = rows_in_t(&log).await;
        assert_eq!(rows, 0);
        // The writer is usable again.
        log.transact(vec![work(2, "ok", vec![entry(0, "w2", 1)])], 6)
            .await
            .unwrap();
        assert_eq!(log.head().await.unwrap(), 6);
    }

    /// Whatever shape a batch has, it commits and leaves the writer outside any transaction.
    #[tokio::test]
    async fn every_shape_of_batch_commits_and_leaves_no_transaction_open() {
        let (_dir, log) = log_with_table_t().await;
        let outside_any_transaction = || async {
            let outside = log
                .writer
                .run(|conn| Ok(conn.sqlite().is_autocommit()))
                .await
                .unwrap();
            assert!(outside, "the writer is left inside a transaction");
        };
        let count = || async {
            let rows = rows_in_t(&log).await;
            (rows, log.head().await.unwrap())
        };

        // Only works, every one failing: nothing to store, and still a clean end.
        let done = log
            .transact(vec![work(1, "fail", vec![entry(0, "no", 1)])], 1)
            .await
            .unwrap();
        assert!(done.entries.is_empty());
        outside_any_transaction().await;
        assert_eq!(count().await, (0, 0));

        // Only entries.
        let steps = vec![
            Step::Entry(entry(0, "e1", 1)),
            Step::Entry(entry(0, "e2", 1)),
        ];
        log.transact(steps, 1).await.unwrap();
        outside_any_transaction().await;
        assert_eq!(count().await, (0, 2));

        // Many entries, after a work.
        let mut steps = vec![work(7, "ok", vec![entry(0, "w", 1)])];
        steps.extend((0..300).map(|i| Step::Entry(entry(0, &format!("p{i}"), 1))));
        let done = log.transact(steps, 3).await.unwrap();
        assert_eq!(done.entries.len(), 301);
        outside_any_transaction().await;
        assert_eq!(count().await, (1, 303));
    }

    /// After a sync of the WAL fails, neither that batch nor any later one is acknowledged,
    /// even once syncs work again; what was stored before is still read, and the log says
    /// it is not ready.
    #[tokio::test]
    async fn a_failed_sync_refuses_every_later_commit() {
        let (_dir, log) = log_with_table_t().await;
        log.append(vec![entry(1, "before", 1)]).await.unwrap();
        log.check().await.unwrap();

        let fail_syncs = |fail: bool| {
            log.writer.run(move |conn| {
                conn.fail_syncs.set(fail);
                Ok(())
            })
        };
        fail_syncs(true).await.unwrap();
        let failed = log.append(vec![entry(2, "lost", 1)]).await.unwrap_err();
        assert!(failed.to_string().contains("sync"), "{failed}");
        fail_syncs(false).await.unwrap();

        let refused = log.append(vec![entry(2, "after", 1)]).await.unwrap_err();
        assert!(refused.to_string().contains("restarts"), "{refused}");
        let refused = log
            .transact(vec![work(5, "ok", vec![entry(0, "w", 1)])], 2)
            .await
            .unwrap_err();
        assert!(refused.to_string().contains("restarts"), "{refused}");
        let unready = log.check().await.unwrap_err();
        assert!(unready.to_string().contains("restarts"), "{unready}");
        let refused = log.prune(10, None).await.unwrap_err();
        assert!(refused.to_string().contains("restarts"), "{refused}");

        assert_eq!(rows_in_t(&log).await, 0, "the refused work left nothing");
        let stored = log.read(0, 10, 10, usize::MAX).await.unwrap();
        assert_eq!(
            stored.iter().map(|r| &*r.id).collect::<Vec<_>>(),
            ["before"],
            "only what was acknowledged is in the log"
        );
        assert_eq!(log.head().await.unwrap(), 1);
    }

    /// Retention by age walks the log in order and stops at the first record young enough
    /// to keep, even when older ones follow it.
    #[tokio::test]
    async fn pruning_by_age_stops_at_the_first_record_to_keep() {
        let (_dir, log) = temp_log().await;
        let created = [1, 5, 2, 9, 3];
        let entries = (1..)
            .zip(created)
            .map(|(s, at)| entry(s, &format!("id-{s}"), at));
        log.append(entries.collect()).await.unwrap();
        let left = || async {
            let records = log.read(0, 10, 10, usize::MAX).await.unwrap();
            records.iter().map(|r| r.seq).collect::<Vec<_>>()
        };

        assert_eq!(log.prune(0, None).await.unwrap(), 0);
        assert_eq!(log.prune(0, Some(4)).await.unwrap(), 1);
        assert_eq!(left().await, [2, 3, 4, 5]);
        assert_eq!(
            log.prune(0, Some(6)).await.unwrap(),
            2,
            "seq 3 goes after seq 2"
        );
        assert_eq!(left().await, [4, 5], "seq 5 waits for seq 4");
        assert_eq!(log.prune(4, Some(0)).await.unwrap(), 1, "by position alone");
        assert_eq!(left().await, [5]);
        assert_eq!(
            log.prune(0, Some(100)).await.unwrap(),
            1,
            "every record is old"
        );
        assert!(left().await.is_empty());
        assert_eq!(log.head().await.unwrap(), 5);
    }

    #[tokio::test]
    async fn append_read_lookup_prune() {
        let (_dir, log) = temp_log().await;
        assert_eq!(log.head().await.unwrap(), 0);

        let entries: Vec<Entry> = (1..=300)
            .map(|s| entry(s, &format!("id-{}", s % 7), s as i64))
            .collect();
        log.append(entries).await.unwrap();
        assert_eq!(log.head().await.unwrap(), 300);

        let page = log.read(10, 300, 5, usize::MAX).await.unwrap();
        assert_eq!(
            page.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![11, 12, 13, 14, 15]
        );
        let r = &page[1];
        assert_eq!(&*r.id, "id-5");
        assert!(r.private);
        assert_eq!(&*r.topics, &["t".into(), "u".into()] as &[Box<str>]);
        assert_eq!(&*r.closes, &["u".into()] as &[Box<str>], "seq 12 closes u");
        assert!(page[0].closes.is_empty(), "seq 11 closes nothing");
        assert_eq!(
            r.frame,
            herald_sse::Event::new("data 12\nline two")
                .with_id("id-5")
                .with_event("kind")
                .with_retry(1500)
                .encode()
        );

        // The latest use of a repeated id wins.
        assert_eq!(log.latest_seq_of("id-3").await.unwrap(), Some(297));
        assert_eq!(log.latest_seq_of("nope").await.unwrap(), None);

        // Prune by count and by age, then the head stays where it was.
        assert_eq!(log.prune(100, Some(151)).await.unwrap(), 150);
        assert_eq!(log.read(0, 300, 1, usize::MAX).await.unwrap()[0].seq, 151);
        log.prune(300, None).await.unwrap();
        assert_eq!(log.head().await.unwrap(), 300);
    }

    #[tokio::test]
    async fn pages_are_bounded_by_bytes_and_ids_are_found_in_one_query() {
        let (_dir, log) = temp_log().await;
        let entries: Vec<Entry> = (1..=5)
            .map(|seq| {
                let mut e = entry(seq, &format!("id-{seq}"), 1);
                e.update.data = "x".repeat(100 * 1024);
                e
            })
            .collect();
        log.append(entries).await.unwrap();
        let seqs = |records: Vec<Record>| records.iter().map(|r| r.seq).collect::<Vec<_>>();
        assert_eq!(
            seqs(log.read(0, 5, 100, usize::MAX).await.unwrap()),
            [1, 2, 3, 4, 5]
        );
        // Three records reach 250 KiB, so the page ends after the third.
        assert_eq!(
            seqs(log.read(0, 5, 100, 250 * 1024).await.unwrap()),
            [1, 2, 3]
        );
        assert_eq!(
            seqs(log.read(0, 5, 100, 1).await.unwrap()),
            [1],
            "the first always"
        );
        assert_eq!(seqs(log.read(2, 5, 100, 150 * 1024).await.unwrap()), [3, 4]);
        assert_eq!(seqs(log.read(1, 5, 2, usize::MAX).await.unwrap()), [2, 3]);
        assert!(log.read(5, 5, 100, 1).await.unwrap().is_empty());
        // Topics count too: tiny data under many long topics fills a page as well.
        let topical: Vec<Entry> = (6..=8)
            .map(|seq| {
                let mut e = entry(seq, &format!("id-{seq}"), 1);
                e.update.data = String::new();
                e.update.topics = (0..50).map(|n| format!("{n:_<2000}")).collect();
                e
            })
            .collect();
        log.append(topical).await.unwrap();
        assert_eq!(seqs(log.read(5, 8, 100, 150 * 1024).await.unwrap()), [6, 7]);

        assert_eq!(
            log.positions_of(&["id-4", "nope", "id-1", "id-4"])
                .await
                .unwrap(),
            [Some(4), None, Some(1), Some(4)]
        );
    }
}
