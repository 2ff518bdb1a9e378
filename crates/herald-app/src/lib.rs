//! Herald's app, on the hub: users and sessions, workspaces and members, todos, channels
//! and notes, with every change streamed live to whoever may see it.
//!
//! [`App`] is the product: its database, the hub its events go to, and every read and
//! change. It knows nothing of HTTP: errors are [`AppError`]s, which the server turns into
//! answers in one place.
//!
//! # Layout
//!
//! - `change`: `Change`, a change in progress: its connection and the events it emits.
//! - `conn`: `Conn`, the connection a change's body runs its queries on, either way.
//! - `db`: the database (SQLite in the log's file, or PostgreSQL, one set of queries), its
//!   migrations, the import of an older `app.db`, and the outbox path's write locks.
//! - `data_dir`: the data directory and its private SQLite files, shared with the server.
//! - `model`: resources, request bodies and field checks.
//! - `policy`: [`Actor`], read and write rules, and the routing of events to hub topics.
//! - `passwords`: argon2id hashing on threads of its own, and the secrets of sessions and
//!   tokens.
//! - `accounts`: [`Accounts`]: users, sessions, API tokens, the first admin.
//! - `credentials`: revoking a token, changing a password, deactivating a user — each ends
//!   the streams it makes wrong.
//! - `service`: every read and change, each change in one transaction with its events
//!   (`App::transact`): `workspaces` (workspaces and members), `resources` (todos, channels, notes),
//!   `messages` (notifications, broadcasts, logout).
//! - `snapshot`: `App::read_snapshot`, the one place where a read takes the log position
//!   it is consistent with ([`snapshot::Snapshot`]).
//! - `streams`: a user's stream: the topics it follows, and how it ends when they change.
//! - `error`: [`AppError`].
//!
//! # How a change becomes an event
//!
//! Every change is a body run by `App::transact` on a transaction, which makes its writes
//! and `Change::emit`s its events. How it commits depends on where the app's tables are
//! ([`Commits`]):
//!
//! - **With the log** (the default: the app's tables are in the event log's SQLite file).
//!   The body is handed to the hub's sequencer ([`Hub::transact`]), which runs it inside the
//!   transaction of its next batch under a savepoint of its own, and stores its events in
//!   that same transaction. The batch runs on the log's writer thread, where the body's
//!   queries are direct calls into SQLite (`Conn::Log`), not round trips between threads.
//!   The change and its events commit together, with the changes and publishes of the
//!   same batch, with one fsync; a change that fails is rolled back alone.
//!   The log orders events exactly as the database ordered their changes, since one writer
//!   makes both.
//! - **Through the outbox** (PostgreSQL, or a log in Redis). A `Change` holds the write
//!   locks of its `Scope` (see `db`) and a transaction; its events are written to the
//!   `outbox` table in that transaction, with the scope, so an event exists exactly when its
//!   change does. After the commit they are handed to the hub's sequencer, and the change
//!   waits for the log to acknowledge them and deletes their outbox rows before it releases
//!   its locks (on PostgreSQL in the statement that releases them, committed just after
//!   the unlock without waiting for the disk: a change of the same keys that starts in
//!   that moment, or after a crash lost the delete, finds rows whose events the log holds,
//!   and deletes them). If Herald dies in between, the relay at the next start (and every
//!   second while running, on every node) publishes what the outbox still holds and the
//!   log lacks.
//!
//! # The cluster's ordering invariant
//!
//! The log orders the events of two changes that share a scope key (`ws:<id>`,
//! `user:<id>`) as the database committed them; changes with disjoint scopes run in
//! parallel, on one node and across nodes. A change holds its keys from before its
//! transaction begins until the log has acknowledged its events; with several nodes
//! appending to a shared log, releasing them any earlier would let another node's later
//! change of a key reach the log first. Every writer takes its keys in sorted order, so
//! changes never deadlock.
//!
//! Rows left in the outbox (a node died between its commit and the acknowledgement) keep
//! that order too: whoever takes a key next, a change or the relay, first publishes the
//! older rows that share one of its keys, in outbox order, holding every key of each (see
//! `App::writer`). The log drops a second copy of an id, so rows relayed by two nodes at
//! once are stored once.
//!
//! Changes made outside a server (`herald user deactivate`) always go through the outbox,
//! and the relay of the running server publishes them.

pub mod accounts;
mod auth_cache;
mod change;
mod conn;
mod credentials;
pub mod data_dir;
pub mod db;
mod envelope;
pub mod error;
pub mod model;
pub mod passwords;
pub mod policy;
pub mod presence;
mod scope;
pub mod service;
pub mod snapshot;
pub mod streams;

use std::{collections::HashSet, sync::Arc, time::Duration};

use futures::future::BoxFuture;
use herald_hub::{Hub, LogConnection, PublishError, TransactError, Update};
use sqlx::AnyPool;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

pub use accounts::{Accounts, Bootstrap, TokenSpec};
pub(crate) use change::Change;
pub(crate) use conn::Conn;
pub use db::{APP_FILE, Backend, describe_url, open_db};
pub use error::{AppError, ErrorKind};
pub use model::{NewUser, UserRole};
pub use policy::Actor;
pub(crate) use scope::Scope;
use scope::shares_keys;

use crate::error::internal;

/// How often the relay looks for events whose publish failed or was cut short.
const RELAY_INTERVAL: Duration = Duration::from_secs(1);

/// Outbox rows the relay takes per round.
const RELAY_BATCH: i64 = 256;

/// How the app commits a change with its events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Commits {
    /// The app's tables are in the event log's own SQLite file: each change runs inside
    /// the hub's batch transaction, and commits with its events.
    WithLog,
    /// The app's database is not the log's: each change writes its events to the outbox
    /// and hands them to the hub after it commits.
    Outbox,
}

/// The app: its database and the hub its events go to. Cheap to clone.
#[derive(Clone, Debug)]
pub struct App {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: AnyPool,
    hub: Hub,
    /// This process's side of the write locks (see [`db::Writer`]), shared with
    /// `accounts`: the one write turn on SQLite, a turn per scope key on PostgreSQL.
    locks: db::Locks,
    /// Outbox rows a request is publishing right now; the relay leaves them alone.
    inflight: std::sync::Mutex<HashSet<String>>,
    /// The server's tasks, which shutdown waits for: the relay, each change's commit, the
    /// record of an API token's use, and the release of a write lock a failed change left.
    tasks: TaskTracker,
    /// Users, sessions and API tokens.
    accounts: Accounts,
    /// How changes commit.
    commits: Commits,
}

impl App {
    /// The app on `pool`, sending its events to `hub`. Relays what the outbox still holds
    /// from a previous run before returning, then keeps relaying until `shutdown`. Its
    /// tasks join `tasks`, which the server waits for when it stops.
    ///
    /// # Errors
    ///
    /// When the outbox cannot be read or the hub refuses its events.
    pub async fn start(
        pool: AnyPool,
        hub: Hub,
        commits: Commits,
        tasks: &TaskTracker,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        if commits == Commits::WithLog && !hub.runs_work() {
            anyhow::bail!("the event log cannot commit the app's changes with their events");
        }
        let accounts = Accounts::new(pool.clone(), tasks.clone());
        // Every change that ends a session or token emits an update that ends its streams,
        // on whichever node or process made it: the authentications reused here are
        // forgotten before any of those streams ends.
        let recent = accounts.recent.clone();
        hub.before_closing(move || recent.forget_all());
        let app = Self {
            inner: Arc::new(Inner {
                pool: pool.clone(),
                hub,
                locks: accounts.locks.clone(),
                inflight: std::sync::Mutex::default(),
                tasks: tasks.clone(),
                accounts,
                commits,
            }),
        };
        for expired in [
            "DELETE FROM sessions WHERE expires_at < $1",
            "DELETE FROM api_tokens WHERE expires_at < $1",
        ] {
            sqlx::query(expired)
                .bind(unix_ms() / 1000)
                .execute(&app.inner.pool)
                .await?;
        }
        // Everything a previous run left, before any request is served.
        let mut relayed = 0;
        loop {
            let round = app.relay().await?;
            relayed += round;
            if round < RELAY_BATCH as usize {
                break;
            }
        }
        if relayed > 0 {
            tracing::info!(
                relayed,
                "published events left in the outbox by the last run"
            );
        }
        app.inner.tasks.spawn(app.clone().relay_forever(shutdown));
        Ok(app)
    }

    /// Checks that the app's database answers; for readiness probes.
    ///
    /// # Errors
    ///
    /// The database's error when it does not.
    pub async fn check_db(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1")
            .execute(&self.inner.pool)
            .await
            .map(|_| ())
    }

    /// Users, sessions and API tokens.
    pub fn accounts(&self) -> &Accounts {
        &self.inner.accounts
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.inner.pool
    }

    pub(crate) fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// How changes commit.
    pub(crate) fn commits(&self) -> Commits {
        self.inner.commits
    }

    /// Waits for the write locks of `scope` (see [`db::Writer`]), widened to the keys of
    /// every outbox row that shares one of them: such rows are left by a change whose node
    /// died before the log acknowledged them (or, rarely, by one whose delete has not yet
    /// committed, or was lost in a crash: rows the log holds), and whoever holds one of
    /// their keys publishes them first, which keeps the order of each of their keys only if
    /// it holds all of them.
    /// When it finds more keys, it lets go and takes the wider scope, still in sorted order
    /// (so, no deadlock), until the rows it shares keys with add none. Once a writer holds a
    /// key, only it can store rows of that key, so the set cannot grow meanwhile.
    async fn writer(&self, scope: Scope) -> Result<db::Writer, sqlx::Error> {
        let mut scope = scope;
        loop {
            let mut writer = db::Writer::acquire(
                &self.inner.locks,
                &self.inner.pool,
                &self.inner.tasks,
                scope.keys(),
            )
            .await?;
            if writer.holds_everything() {
                return Ok(writer);
            }
            let (condition, binds) = shares_keys(writer.keys(), false, 1);
            let sql = format!("SELECT DISTINCT scope FROM outbox WHERE {condition}");
            let mut query = sqlx::query_scalar::<_, String>(&sql);
            for bind in binds {
                query = query.bind(bind);
            }
            let stored = query.fetch_all(&mut *writer).await?;
            let wider = stored.iter().fold(scope.clone(), |wider, row| {
                wider.union(&Scope::from_stored(row))
            });
            if wider == scope {
                if stored.is_empty() {
                    writer.holds_no_older_rows();
                }
                return Ok(writer);
            }
            writer.release().await;
            scope = wider;
        }
    }

    /// Runs `body` as one change, in one transaction with the events it emits, and returns
    /// what it returns once the change and its events are stored. `scope` says what the
    /// change may touch: changes that share a key are ordered, on every node.
    ///
    /// The body must only use the change's connection: with [`Commits::WithLog`] it runs on
    /// the log's writer thread, inside the transaction of its batch, holding the batch
    /// behind it, with [`herald_hub::WORK_BUDGET`] to finish. Hash passwords and call other
    /// services before.
    ///
    /// # Errors
    ///
    /// The body's own error, after which nothing of the change stands; `Unavailable` when
    /// the database or the event log cannot store it now.
    pub(crate) async fn transact<T, F>(&self, scope: Scope, body: F) -> Result<T, AppError>
    where
        T: Send + 'static,
        F: for<'a, 'c> FnOnce(&'a mut Change<'c>) -> BoxFuture<'a, Result<T, AppError>>
            + Send
            + 'static,
    {
        match self.inner.commits {
            Commits::WithLog => self.transact_with_log(body).await,
            Commits::Outbox => self.transact_outbox(scope, body).await,
        }
    }

    /// [`Self::transact`] for a change that may end a session or token (logout, a password
    /// change, deactivation, revocation): once it committed, the authentications this node
    /// reuses are forgotten (other nodes forget them when its update reaches them).
    pub(crate) async fn transact_ending_credentials<T, F>(
        &self,
        scope: Scope,
        body: F,
    ) -> Result<T, AppError>
    where
        T: Send + 'static,
        F: for<'a, 'c> FnOnce(&'a mut Change<'c>) -> BoxFuture<'a, Result<T, AppError>>
            + Send
            + 'static,
    {
        let changed = self.transact(scope, body).await;
        if changed.is_ok() {
            self.accounts().forget_authentications();
        }
        changed
    }

    async fn transact_with_log<T, F>(&self, body: F) -> Result<T, AppError>
    where
        T: Send + 'static,
        F: for<'a, 'c> FnOnce(&'a mut Change<'c>) -> BoxFuture<'a, Result<T, AppError>>
            + Send
            + 'static,
    {
        let made = Arc::new(std::sync::Mutex::new(None));
        let out = made.clone();
        let stored = self
            .hub()
            .transact(move |conn: &mut LogConnection| {
                Box::pin(async move {
                    let mut change = Change {
                        tx: Conn::Log(conn),
                        events: Vec::new(),
                    };
                    let value = body(&mut change).await?;
                    *out.lock().expect("change result poisoned") = Some(value);
                    Ok(change.events)
                })
            })
            .await;
        match stored {
            Ok(_) => made
                .lock()
                .expect("change result poisoned")
                .take()
                .ok_or_else(|| internal("a stored change left no result")),
            Err(TransactError::Work(error)) => Err(match error.downcast::<AppError>() {
                Ok(error) => *error,
                // The hub's own refusals of a work: over its time budget, or a panic (a
                // bug). Either way nothing was changed.
                Err(other) if other.to_string().contains("panicked") => internal(other),
                Err(other) => AppError::unavailable(format!("nothing was changed: {other}")),
            }),
            Err(TransactError::Unavailable(message)) => Err(AppError::unavailable(format!(
                "nothing was changed: {message}"
            ))),
        }
    }

    async fn transact_outbox<T, F>(&self, scope: Scope, body: F) -> Result<T, AppError>
    where
        T: Send + 'static,
        F: for<'a, 'c> FnOnce(&'a mut Change<'c>) -> BoxFuture<'a, Result<T, AppError>>
            + Send
            + 'static,
    {
        let stored_scope = scope.stored();
        let mut writer = self.writer(scope).await.map_err(internal)?;
        writer.begin().await.map_err(internal)?;
        let mut change = Change {
            tx: Conn::Pool(&mut writer),
            events: Vec::new(),
        };
        let value = body(&mut change).await?;
        let events = change.events;
        let mut outgoing = Vec::with_capacity(events.len());
        for update in events {
            let seq = store_event(&mut writer, &update, &stored_scope).await?;
            outgoing.push(Outgoing { seq, update });
        }
        let tasks = self.inner.tasks.clone();
        tasks
            .spawn(finish(self.clone(), writer, outgoing))
            .await
            .map_err(|error| internal(format!("the change's task failed: {error}")))??;
        Ok(value)
    }

    /// Publishes outbox rows that no request is publishing and the log does not hold;
    /// deletes those it holds. Returns how many it published.
    ///
    /// For each row, oldest first, it takes the write locks of the row's scope, like a
    /// change, and publishes in outbox order every row that shares one of those keys, so
    /// their events take their place in the log between changes, in the order of each key.
    /// Several nodes may relay the same row at once; the check against the log keeps that
    /// rare, and the log drops a second copy of an id.
    async fn relay(&self) -> anyhow::Result<usize> {
        if self.inner.commits == Commits::WithLog {
            return self.relay_with_log().await;
        }
        let rows: Vec<(i64, String)> =
            sqlx::query_as("SELECT seq, scope FROM outbox ORDER BY seq LIMIT $1")
                .bind(RELAY_BATCH)
                .fetch_all(&self.inner.pool)
                .await?;
        let mut handled = HashSet::new();
        let mut published = 0;
        for (seq, stored) in rows {
            if handled.contains(&seq) {
                continue;
            }
            let mut writer = self.writer(Scope::from_stored(&stored)).await?;
            let (pending, mut done, seen) = self.enqueue_stored(&mut writer, i64::MAX).await?;
            handled.extend(seen);
            handled.insert(seq);
            published += pending.len();
            for (seq, acked) in pending {
                acked.await?;
                done.push(seq);
            }
            delete_outbox(&mut writer, &done).await?;
            writer.release().await;
        }
        Ok(published)
    }

    /// The relay when the outbox is in the log's file: one change that takes the oldest
    /// rows out of the outbox and stores their events, in outbox order, skipping those the
    /// log already holds (a crash of a version that published after its commit). Exactly
    /// once, since the rows go in the transaction that stores their events.
    async fn relay_with_log(&self) -> anyhow::Result<usize> {
        let pending: Option<i64> = sqlx::query_scalar("SELECT MIN(seq) FROM outbox")
            .fetch_one(&self.inner.pool)
            .await?;
        if pending.is_none() {
            return Ok(0);
        }
        let relayed = self
            .transact_with_log(|change| {
                Box::pin(async move {
                    let rows: Vec<(i64, String, String, String, String, String)> = sqlx::query_as(
                        "SELECT seq, uid, topics, type, data, closes FROM outbox \
                             ORDER BY seq LIMIT $1",
                    )
                    .bind(RELAY_BATCH)
                    .fetch_all(&mut change.tx)
                    .await
                    .map_err(internal)?;
                    let mut relayed = 0;
                    for (seq, uid, topics, event_type, data, closes) in rows {
                        sqlx::query("DELETE FROM outbox WHERE seq = $1")
                            .bind(seq)
                            .execute(&mut change.tx)
                            .await
                            .map_err(internal)?;
                        if herald_hub::SqliteLog::holds_in(&mut change.tx, &uid)
                            .await
                            .map_err(internal)?
                        {
                            continue;
                        }
                        change
                            .events
                            .push(stored_update(uid, &topics, event_type, data, &closes)?);
                        relayed += 1;
                    }
                    Ok(relayed)
                })
            })
            .await
            .map_err(|error| anyhow::anyhow!(error.message))?;
        Ok(relayed)
    }

    /// Enqueues, in outbox order, the stored events before position `before` that share a
    /// key with `writer` (see [`App::writer`]), that no request is publishing and that the
    /// log does not hold yet (those it holds are returned as done); and every row it looked
    /// at. Runs under the write locks of those keys, so nothing of theirs can be enqueued
    /// in between.
    async fn enqueue_stored(
        &self,
        writer: &mut db::Writer,
        before: i64,
    ) -> anyhow::Result<(Vec<(i64, Acked)>, Vec<i64>, Vec<i64>)> {
        let (condition, binds) = shares_keys(writer.keys(), writer.holds_everything(), 3);
        let sql = format!(
            "SELECT seq, uid, topics, type, data, closes FROM outbox \
             WHERE seq < $1 AND seq > $2 AND {condition} ORDER BY seq LIMIT {RELAY_BATCH}"
        );
        let (mut done, mut pending, mut seen) = (Vec::new(), Vec::new(), Vec::new());
        let mut after = i64::MIN;
        loop {
            let mut query =
                sqlx::query_as::<_, (i64, String, String, String, String, String)>(&sql)
                    .bind(before)
                    .bind(after);
            for bind in &binds {
                query = query.bind(bind);
            }
            let rows = query.fetch_all(&mut **writer).await?;
            let Some(last) = rows.last().map(|row| row.0) else {
                break;
            };
            after = last;
            for (seq, uid, topics, event_type, data, closes) in rows {
                seen.push(seq);
                if self.inflight().contains(&uid) {
                    continue;
                }
                if self.inner.hub.contains(&uid).await? {
                    done.push(seq);
                    continue;
                }
                let update = stored_update(uid, &topics, event_type, data, &closes)?;
                pending.push((
                    seq,
                    Box::pin(self.inner.hub.enqueue(update).await?) as Acked,
                ));
            }
        }
        Ok((pending, done, seen))
    }

    async fn relay_forever(self, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(RELAY_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            match self.relay().await {
                Ok(0) => {}
                Ok(relayed) => tracing::info!(relayed, "relayed events from the outbox"),
                Err(error) => tracing::warn!(%error, "outbox relay failed; retrying"),
            }
        }
    }

    fn inflight(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.inner.inflight.lock().expect("inflight poisoned")
    }
}

/// Deletes the outbox rows `seqs` on the connection of `writer`, whose locks keep a change
/// of the same keys from looking at them meanwhile.
async fn delete_outbox(writer: &mut db::Writer, seqs: &[i64]) -> Result<(), sqlx::Error> {
    for chunk in seqs.chunks(RELAY_BATCH.unsigned_abs() as usize) {
        let sql = format!(
            "DELETE FROM outbox WHERE seq IN ({})",
            db::placeholders(1, chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for seq in chunk {
            query = query.bind(seq);
        }
        query.execute(&mut **writer).await?;
    }
    Ok(())
}

/// The acknowledgement of one enqueued event.
type Acked =
    std::pin::Pin<Box<dyn Future<Output = Result<herald_hub::Published, PublishError>> + Send>>;

/// An event written to the outbox, waiting for its change to commit.
#[derive(Debug)]
struct Outgoing {
    seq: i64,
    update: Update,
}

/// The event an outbox row holds.
fn stored_update(
    uid: String,
    topics: &str,
    event_type: String,
    data: String,
    closes: &str,
) -> Result<Update, AppError> {
    Ok(Update {
        topics: serde_json::from_str(topics).map_err(internal)?,
        data,
        private: true,
        id: Some(uid),
        event_type: Some(event_type),
        retry: None,
        closes: if closes.is_empty() {
            Vec::new()
        } else {
            serde_json::from_str(closes).map_err(internal)?
        },
    })
}

/// Commits a change made through the outbox and waits until the log holds its events.
///
/// The change stands once the transaction commits. If the hub then fails to store an
/// event, the event stays in the outbox and is published later — before any newer event,
/// by the next change or by the relay; the caller is told the change succeeded, because it
/// did. It runs in a task of its own, so a client that goes away mid-way cancels nothing.
///
/// # Errors
///
/// `Unavailable` when the event log does not answer just before the commit (then the change
/// is rolled back), or when the transaction does not commit; then nothing happened.
async fn finish(app: App, mut tx: db::Writer, events: Vec<Outgoing>) -> Result<(), AppError> {
    if !events.is_empty()
        && let Err(error) = app.hub().check_log().await
    {
        // Dropping `tx` rolls the change back: nothing is acknowledged whose event
        // cannot be stored now.
        return Err(AppError::unavailable(format!(
            "the event log is unavailable, so nothing was changed: {error}"
        )));
    }
    tx.commit().await.map_err(internal)?;
    // Events of earlier changes that did not reach the log go first, so the log keeps
    // the database's order. When the writer found none as it took its keys, there are
    // none: it has held them since.
    let first = events.first().map_or(i64::MAX, |e| e.seq);
    let earlier = if tx.may_follow_older_rows() {
        app.enqueue_stored(&mut tx, first).await
    } else {
        Ok(Default::default())
    };
    let (mut pending, mut done, _) = match earlier {
        Ok(stored) => stored,
        Err(error) => {
            tracing::warn!(%error, "cannot publish earlier events; the relay will retry");
            (Vec::new(), Vec::new(), Vec::new())
        }
    };
    {
        let mut inflight = app.inflight();
        for event in &events {
            inflight.insert(event.update.id.clone().unwrap_or_default());
        }
    }
    let mut uids = Vec::with_capacity(events.len());
    for event in events {
        let uid = event.update.id.clone().unwrap_or_default();
        match app.hub().enqueue(event.update).await {
            Ok(acked) => pending.push((event.seq, Box::pin(acked) as Acked)),
            Err(error) => {
                tracing::warn!(%error, "event not published; the outbox relay will retry");
            }
        }
        uids.push(uid);
    }
    // The locks stay held until the log has acknowledged the events: another node's later
    // change of the same keys appends to the log only after that.
    for (seq, acked) in pending {
        match acked.await {
            Ok(_) => done.push(seq),
            Err(error) => {
                tracing::warn!(%error, "event not stored; the outbox relay will retry");
            }
        }
    }
    {
        let mut inflight = app.inflight();
        for uid in &uids {
            inflight.remove(uid);
        }
    }
    // A row left behind is harmless: the relay finds its event in the log and deletes it.
    let cleared = if done.is_empty() {
        tx.release().await;
        Ok(())
    } else if done.len() <= RELAY_BATCH.unsigned_abs() as usize {
        let sql = format!(
            "DELETE FROM outbox WHERE seq IN ({})",
            db::placeholders(1, done.len())
        );
        tx.release_after(&sql, &done).await
    } else {
        let deleted = delete_outbox(&mut tx, &done).await;
        tx.release().await;
        deleted
    };
    if let Err(error) = cleared {
        tracing::warn!(%error, "cannot clear published events from the outbox");
    }
    Ok(())
}

/// Writes an event to the outbox on `conn`, inside the transaction of its change, with
/// the change's `scope` (as [`Scope::stored`] writes it); returns its outbox position. A change made outside a server (the CLI) leaves it to the relay of
/// the running nodes, which publishes it within [`RELAY_INTERVAL`].
async fn store_event(
    conn: &mut sqlx::AnyConnection,
    update: &Update,
    scope: &str,
) -> Result<i64, AppError> {
    let topics_json = serde_json::to_string(&update.topics).map_err(internal)?;
    let closes_json = if update.closes.is_empty() {
        String::new()
    } else {
        serde_json::to_string(&update.closes).map_err(internal)?
    };
    let (uid, event_type, data) = (
        update.id.as_deref().unwrap_or_default(),
        update.event_type.as_deref().unwrap_or_default(),
        update.data.as_str(),
    );
    sqlx::query_scalar(
        "INSERT INTO outbox (uid, topics, type, data, closes, created_at, scope) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING seq",
    )
    .bind(uid)
    .bind(topics_json)
    .bind(event_type)
    .bind(data)
    .bind(closes_json)
    .bind(unix_ms())
    .bind(scope)
    .fetch_one(conn)
    .await
    .map_err(internal)
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use herald_hub::{HubConfig, SqliteLog, SubscribeRequest};

    use super::*;

    async fn outbox_row(pool: &AnyPool, uid: &str, data: &str) {
        sqlx::query(
            "INSERT INTO outbox (uid, topics, type, data, closes, created_at) \
             VALUES ($1, $2, 'todos:created', $3, '', 0)",
        )
        .bind(uid)
        .bind(r#"["herald:ws/w"]"#)
        .bind(data)
        .execute(pool)
        .await
        .unwrap();
    }

    /// The outbox stores a change's scope, and a writer finds the rows that share one of its
    /// keys (and those stored without a scope), whatever LIKE's wildcards the keys hold.
    #[tokio::test]
    async fn outbox_rows_are_found_by_the_keys_they_share() {
        let scope = Scope::workspace("a_1").and_user("u%");
        assert_eq!(scope.stored(), " user:u% ws:a_1 ");
        assert_eq!(Scope::from_stored(&scope.stored()), scope);
        assert_eq!(Scope::from_stored(""), Scope::default());
        assert_eq!(
            Scope::workspace("b").union(&scope).keys(),
            ["user:u%", "ws:a_1", "ws:b"]
        );

        let dir = tempfile::tempdir().unwrap();
        let pool = open_db(None, dir.path()).await.unwrap();
        for (uid, stored) in [
            ("r1", " ws:a_1 "),
            ("r2", " ws:aX1 "),
            ("r3", " user:u% ws:b "),
            ("r4", ""),
            ("r5", " ws:a_10 "),
            ("r6", " user:uX "),
        ] {
            sqlx::query(
                "INSERT INTO outbox (uid, topics, type, data, closes, created_at, scope) \
                 VALUES ($1, '[]', 't', '{}', '', 0, $2)",
            )
            .bind(uid)
            .bind(stored)
            .execute(&pool)
            .await
            .unwrap();
        }
        let found = async |keys: &[&str], everything: bool| -> Vec<String> {
            let keys: Vec<String> = keys.iter().map(|&k| k.to_owned()).collect();
            let (condition, binds) = shares_keys(&keys, everything, 1);
            let sql = format!("SELECT uid FROM outbox WHERE {condition} ORDER BY seq");
            let mut query = sqlx::query_scalar::<_, String>(&sql);
            for bind in binds {
                query = query.bind(bind);
            }
            query.fetch_all(&pool).await.unwrap()
        };
        assert_eq!(found(&["ws:a_1"], false).await, ["r1", "r4"]);
        assert_eq!(found(&["user:u%"], false).await, ["r3", "r4"]);
        assert_eq!(found(&["user:u%", "ws:b"], false).await, ["r3", "r4"]);
        assert_eq!(
            found(&["ws:aX1", "ws:a_10"], false).await,
            ["r2", "r4", "r5"]
        );
        assert_eq!(found(&[], false).await, ["r4"]);
        assert_eq!(found(&[], true).await.len(), 6);
    }

    /// A crash between the app's commit and the log's acknowledgement leaves rows in the
    /// outbox. At the next start each is published exactly once: those the log lacks are
    /// published, those it already holds are only cleared.
    #[tokio::test]
    async fn the_relay_publishes_what_the_log_lacks_and_nothing_twice() {
        let dir = tempfile::tempdir().unwrap();
        let log = SqliteLog::open(&dir.path().join("log.db"), herald_hub::Durability::Normal)
            .await
            .unwrap();
        let (tracker, shutdown) = (TaskTracker::new(), CancellationToken::new());
        let hub = Hub::start(
            HubConfig::default(),
            Arc::new(log),
            &tracker,
            shutdown.clone(),
        )
        .await
        .unwrap();
        let already = hub
            .publish(Update {
                topics: vec!["herald:ws/w".into()],
                data: "already in the log".into(),
                private: true,
                id: Some("event-1".into()),
                ..Update::default()
            })
            .await
            .unwrap();

        let pool = open_db(None, dir.path()).await.unwrap();
        outbox_row(&pool, "event-1", "already in the log").await;
        outbox_row(&pool, "event-2", "lost in the crash").await;
        let hub_tasks = tracker.len();
        let app = App::start(
            pool.clone(),
            hub.clone(),
            Commits::Outbox,
            &tracker,
            shutdown.clone(),
        )
        .await
        .unwrap();
        assert_eq!(tracker.len(), hub_tasks + 1, "the relay is a tracked task");

        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(left, 0, "the outbox is empty after the relay");
        let topics = vec![herald_hub::Matcher::exact("herald:ws/w")];
        let mut replay = hub
            .subscribe(SubscribeRequest {
                claims: Some(topics.clone()),
                topics,
                last_event_id: Some("earliest".into()),
                after: None,
                max_selectors: None,
                replay_filter: None,
                reserved: true,
            })
            .await
            .unwrap();
        use futures::StreamExt as _;
        let mut text = String::new();
        while !text.contains("lost in the crash") {
            let frames = tokio::time::timeout(Duration::from_secs(5), replay.next())
                .await
                .unwrap()
                .unwrap();
            text.push_str(std::str::from_utf8(&frames).unwrap());
        }
        assert_eq!(text.matches("id: event-1").count(), 1, "{text}");
        assert_eq!(text.matches("id: event-2").count(), 1, "{text}");
        assert!(
            text.find("id: event-1") < text.find("id: event-2"),
            "{text}"
        );
        assert_eq!(already.seq, 1);
        // Shutdown ends the relay with the hub's tasks, and the server waits for them.
        drop(app);
        shutdown.cancel();
        tracker.close();
        tokio::time::timeout(Duration::from_secs(10), tracker.wait())
            .await
            .expect("the hub's and the app's tasks end at shutdown");
    }
}
