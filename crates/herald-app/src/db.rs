//! The app's database: SQLite by default, in the event log's own file
//! (`<data-dir>/herald.db`, so that a change and its events commit in one transaction), or
//! PostgreSQL, which the nodes of a cluster share. Both are reached through `sqlx::Any`, with
//! one set of queries, and the migrations of the backend in use run at every start.
//!
//! # Sharing the log's file
//!
//! The app's SQLite migrations are numbered from 1001, the log's from 1, and each side
//! ignores the other's in the file's one migration table. Older versions kept the app's data
//! in `<data-dir>/app.db` with its migrations numbered 1 and 2: at the first start on such a
//! directory, the data is copied into `herald.db` in one transaction and `app.db` is renamed
//! `app.db.imported`.
//!
//! # One set of queries for both
//!
//! - Placeholders are `$1, $2, …`, PostgreSQL's syntax; SQLite binds `$N` by its number
//!   too. `sqlx::QueryBuilder` would write `?`: lists of values use `placeholders`.
//! - Values are TEXT, integers (`i64`) and booleans. PostgreSQL declares booleans BOOLEAN.
//!   SQLite declares them INTEGER (0 or 1): the Any driver refuses a column declared BOOLEAN
//!   in SQLite, and reads SQLite's booleans as integers, so they are decoded as a `Flag`.
//!   Roles are TEXT (see `model::UserRole`).
//! - Emails are stored and looked up in lower case, rather than compared with SQLite's
//!   `COLLATE NOCASE`.
//!
//! # The write locks
//!
//! A change declares its scope before it starts: sorted keys, `ws:<id>` for a workspace and
//! `user:<id>` for a user's own topics. Changes that share a key are serialized, each
//! holding its keys until the event log has acknowledged its events, so the log orders the
//! events of a workspace (or of a user's topics) as the database ordered their changes;
//! changes with disjoint scopes run side by side, on one node and across nodes. A `Writer`
//! holds the keys of one change:
//!
//! - On PostgreSQL, for each key in sorted order, first an in-process async mutex of that
//!   key (so waiters of one node do not each hold a pooled connection), then a
//!   session-level advisory lock `pg_advisory_lock(lock_key(key))` on the very connection
//!   the change runs on, taken before its transaction begins. `lock_key` is the first 8
//!   bytes of the SHA-256 of the key's UTF-8 text, read big-endian as an `i64`: the same on
//!   every node and in every version. Every writer takes its keys in sorted order, so no
//!   two writers wait for each other in a cycle: there is no deadlock between changes.
//! - On SQLite, the process's one write turn (SQLite has one writer anyway), whatever the
//!   keys.
//!
//! The locks are released on every path: explicitly after the acknowledgement
//! (`pg_advisory_unlock_all`), from `Drop` (asynchronously, or by closing the connection)
//! on errors and cancellation; and if the process dies, its sessions end and PostgreSQL
//! releases them.

use std::collections::HashMap;
use std::sync::Arc;
use std::{path::Path, str::FromStr, time::Duration};

use sha2::{Digest as _, Sha256};

use anyhow::Context as _;
use sqlx::{
    Any, AnyConnection, AnyPool, ConnectOptions as _, Connection as _, Decode,
    TransactionManager as _, Type, ValueRef as _,
    any::{
        AnyConnectOptions, AnyPoolOptions, AnyTransactionManager, AnyTypeInfo, AnyTypeInfoKind,
        AnyValueRef,
    },
    error::BoxDynError,
    pool::PoolConnection,
};
use tokio_util::task::TaskTracker;

/// The file in the data directory where older versions kept the app's data; its data is
/// imported into the log's file ([`crate::data_dir::LOG_FILE`]) at the first start.
pub const APP_FILE: &str = "app.db";

/// What an imported [`APP_FILE`] is renamed to.
pub const IMPORTED_APP_FILE: &str = "app.db.imported";

/// The app's tables, parents before children: the order of an import.
const TABLES: [&str; 8] = [
    "users",
    "sessions",
    "api_tokens",
    "workspaces",
    "members",
    "todos",
    "channels",
    "notes",
];

/// Most connections to an SQLite file: one writer at a time, a few readers.
const SQLITE_CONNECTIONS: u32 = 4;

/// Most connections of one node to PostgreSQL. A change holds one for its duration, every
/// read borrows one briefly.
const POSTGRES_CONNECTIONS: u32 = 16;

/// How long SQLite waits for another process (`herald user add`, say) to finish writing.
const SQLITE_BUSY_TIMEOUT_MS: u32 = 5_000;

/// The PostgreSQL advisory lock for the text `key` of a scope (see the module docs): the
/// first 8 bytes of its SHA-256, big-endian. Stable across nodes and versions.
pub fn lock_key(key: &str) -> i64 {
    let digest = Sha256::digest(key.as_bytes());
    let mut first = [0_u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// How long releasing the advisory lock of an abandoned change may take before its
/// connection is closed instead (which releases it too).
const UNLOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// The database behind the app's pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// One file, one node.
    Sqlite,
    /// A server, possibly shared by several nodes.
    Postgres,
}

impl Backend {
    /// The backend a database URL names, by its scheme: `sqlite:`, `postgres:` or
    /// `postgresql:`.
    ///
    /// # Errors
    ///
    /// A message naming the accepted schemes, without the URL (it may hold a password).
    pub fn of_url(url: &str) -> Result<Self, String> {
        let scheme = url.split_once(':').map(|(scheme, _)| scheme);
        match scheme.map(str::to_ascii_lowercase).as_deref() {
            Some("sqlite") => Ok(Self::Sqlite),
            Some("postgres" | "postgresql") => Ok(Self::Postgres),
            _ => Err(
                "--database-url must start with sqlite:, postgres: or postgresql: \
                 (for example postgres://herald:secret@db.example.com/herald)"
                    .to_owned(),
            ),
        }
    }

    /// The backend of `pool`.
    pub fn of(pool: &AnyPool) -> Self {
        match pool.connect_options().database_url.scheme() {
            "sqlite" => Self::Sqlite,
            _ => Self::Postgres,
        }
    }
}

/// A database URL as it may be logged: the backend, host, port and database, without the
/// user, password or parameters.
pub fn describe_url(url: &str) -> String {
    let rest = url.split_once(':').map_or("", |(_, rest)| rest);
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    match Backend::of_url(url) {
        Ok(Backend::Sqlite) => format!("SQLite {}", rest.trim_start_matches("//")),
        Ok(Backend::Postgres) => {
            let rest = rest.trim_start_matches("//");
            let (authority, database) = rest.split_once('/').unwrap_or((rest, ""));
            // The user and password come before the last `@`.
            let host = authority.rsplit('@').next().unwrap_or_default();
            let host = if host.is_empty() { "localhost" } else { host };
            format!("PostgreSQL {host}/{database}")
        }
        Err(_) => "an unknown database".to_owned(),
    }
}

/// Opens the app database and runs its migrations: PostgreSQL or SQLite as `database_url`
/// says, or else SQLite in the event log's file `data_dir/herald.db` (creating the
/// directory and the file, and importing an older `app.db`).
///
/// SQLite connections run in WAL mode with `synchronous=FULL`, foreign keys on and a busy
/// timeout.
///
/// # Errors
///
/// When the database cannot be reached, opened or migrated. The message never holds the
/// URL's password.
pub async fn open_db(database_url: Option<&str>, data_dir: &Path) -> anyhow::Result<AnyPool> {
    sqlx::any::install_default_drivers();
    let url = match database_url {
        Some(url) => url.to_owned(),
        None => {
            let path = data_dir.join(crate::data_dir::LOG_FILE);
            crate::data_dir::create_data_dir(data_dir)?;
            crate::data_dir::private_db_file(&path)?;
            sqlite_url(&path)?
        }
    };
    let backend = Backend::of_url(&url).map_err(anyhow::Error::msg)?;
    let url = match backend {
        // Create the file if it is missing, unless the URL says otherwise.
        Backend::Sqlite if !url.contains("mode=") => {
            let separator = if url.contains('?') { '&' } else { '?' };
            format!("{url}{separator}mode=rwc")
        }
        _ => url,
    };
    let described = describe_url(&url);
    // Parse errors of a URL may quote it: keep them out of the message.
    let options = AnyConnectOptions::from_str(&url)
        .map_err(|_| anyhow::anyhow!("the database URL of {described} is not valid"))?;
    // One connection first: a pool that cannot connect retries until it times out and then
    // says only that, where this says why (refused, bad password, no such database).
    options
        .connect()
        .await
        .with_context(|| format!("cannot connect to {described}"))?
        .close()
        .await
        .with_context(|| format!("cannot connect to {described}"))?;
    let pool = match backend {
        Backend::Sqlite => AnyPoolOptions::new()
            .max_connections(SQLITE_CONNECTIONS)
            .after_connect(|conn, _| Box::pin(sqlite_pragmas(conn))),
        Backend::Postgres => AnyPoolOptions::new().max_connections(POSTGRES_CONNECTIONS),
    }
    // A database that went away fails requests in seconds (`Unavailable`), rather than
    // holding them.
    .acquire_timeout(ACQUIRE_TIMEOUT)
    .connect_with(options)
    .await
    .with_context(|| format!("cannot connect to {described}"))?;
    match backend {
        Backend::Sqlite => {
            renumber_old_migrations(&pool)
                .await
                .with_context(|| format!("cannot migrate {described}"))?;
            // The file may be the event log's, whose migrations this one does not know.
            let mut migrator = sqlx::migrate!("./migrations/sqlite");
            migrator.set_ignore_missing(true);
            migrator.run(&pool).await
        }
        Backend::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await,
    }
    .with_context(|| format!("cannot migrate {described}"))?;
    if database_url.is_none() {
        import_old_app_file(&pool, data_dir).await?;
    }
    Ok(pool)
}

/// Older versions numbered the app's SQLite migrations 1 and 2, which the log's own now
/// use: a file migrated by them gets the numbers of today's (1001 and 1002).
async fn renumber_old_migrations(pool: &AnyPool) -> Result<(), sqlx::Error> {
    let table: Option<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    )
    .fetch_optional(pool)
    .await?;
    if table.is_some() {
        sqlx::query(
            "UPDATE _sqlx_migrations SET version = version + 1000 \
             WHERE version < 1000 AND description IN ('app', 'accounts')",
        )
        .execute(pool)
        .await?;
    }
    Ok(())
}

/// Copies the data of an older version's `app.db` in `data_dir` into the app's tables of
/// `pool`, in one transaction, then renames the file [`IMPORTED_APP_FILE`]. Does nothing
/// when there is no such file. When the log's file already holds every user of the old
/// one, an earlier import stopped before the rename: only the rename is left. Refuses when
/// the log's file holds other users: that is two installations, which an operator must
/// untangle.
async fn import_old_app_file(pool: &AnyPool, data_dir: &Path) -> anyhow::Result<()> {
    let old = data_dir.join(APP_FILE);
    if !old.is_file() {
        return Ok(());
    }
    // The old file is migrated as it would have been, so its columns are today's. Opened
    // without creating it: another process may have imported and renamed it meanwhile.
    {
        let url = sqlite_url(&old)?.replace("mode=rwc", "mode=rw");
        let old_pool = AnyPoolOptions::new()
            .max_connections(1)
            .after_connect(|conn, _| Box::pin(sqlite_pragmas(conn)))
            .connect(&url)
            .await
            .with_context(|| format!("cannot open {}", old.display()))?;
        renumber_old_migrations(&old_pool).await?;
        let mut migrator = sqlx::migrate!("./migrations/sqlite");
        migrator.set_ignore_missing(true);
        migrator
            .run(&old_pool)
            .await
            .with_context(|| format!("cannot migrate {}", old.display()))?;
        // Everything into the main file, so that the copy below sees it all.
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&old_pool)
            .await?;
        old_pool.close().await;
    }
    let mut conn = pool.acquire().await?;
    let path = old
        .to_str()
        .context("the path of the old app database is not UTF-8")?;
    sqlx::query("ATTACH DATABASE $1 AS old")
        .bind(path)
        .execute(&mut *conn)
        .await?;
    // The check and the copy in one IMMEDIATE transaction: two processes starting at once
    // (a server and `herald user …`) cannot both copy.
    let copied = async {
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
        let (users, missing): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM main.users), \
             (SELECT COUNT(*) FROM old.users WHERE id NOT IN (SELECT id FROM main.users))",
        )
        .fetch_one(&mut *conn)
        .await?;
        let copy = match (users, missing) {
            (0, _) => true,
            (_, 0) => false,
            _ => {
                sqlx::query("ROLLBACK").execute(&mut *conn).await?;
                return Ok(Err(users));
            }
        };
        if copy {
            for table in TABLES.iter().chain(["outbox"].iter()) {
                sqlx::query(&format!(
                    "INSERT INTO main.{table} SELECT * FROM old.{table}"
                ))
                .execute(&mut *conn)
                .await?;
            }
        }
        sqlx::query("COMMIT").execute(&mut *conn).await?;
        Ok::<_, sqlx::Error>(Ok(()))
    }
    .await;
    if copied.is_err() {
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
    }
    sqlx::query("DETACH DATABASE old")
        .execute(&mut *conn)
        .await?;
    if let Err(users) = copied.with_context(|| format!("cannot import {}", old.display()))? {
        anyhow::bail!(
            "{} holds the app's data of an older version, and {} holds {users} other users \
             already; move one of them away",
            old.display(),
            data_dir.join(crate::data_dir::LOG_FILE).display()
        );
    }
    for suffix in ["", "-wal", "-shm"] {
        let from = data_dir.join(format!("{APP_FILE}{suffix}"));
        if from.exists() {
            std::fs::rename(&from, data_dir.join(format!("{IMPORTED_APP_FILE}{suffix}")))
                .with_context(|| format!("cannot rename {}", from.display()))?;
        }
    }
    // The renames survive a power loss only once the directory is on disk.
    std::fs::File::open(data_dir)
        .and_then(|dir| dir.sync_all())
        .with_context(|| format!("cannot sync {}", data_dir.display()))?;
    tracing::info!(
        from = %old.display(),
        "imported the app's data of an older version into the event log's file"
    );
    Ok(())
}

/// How long a request waits for a database connection before it fails.
const ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The URL of the SQLite file at `path`, made absolute and percent-encoded, creating a
/// missing file.
fn sqlite_url(path: &Path) -> anyhow::Result<String> {
    Ok(herald_hub::sqlite_url(path)?)
}

/// What every SQLite connection needs; the URL cannot say it.
async fn sqlite_pragmas(conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
    for pragma in [
        "PRAGMA journal_mode = WAL".to_owned(),
        "PRAGMA synchronous = FULL".to_owned(),
        "PRAGMA foreign_keys = ON".to_owned(),
        format!("PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}"),
    ] {
        sqlx::query(&pragma).execute(&mut *conn).await?;
    }
    Ok(())
}

/// `$first, $first+1, …` for `count` values: a list for `IN (…)`.
pub(crate) fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A boolean column: BOOLEAN in PostgreSQL, INTEGER 0 or 1 in SQLite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Flag(pub(crate) bool);

impl From<Flag> for bool {
    fn from(flag: Flag) -> Self {
        flag.0
    }
}

impl Type<Any> for Flag {
    fn type_info() -> AnyTypeInfo {
        <bool as Type<Any>>::type_info()
    }

    fn compatible(ty: &AnyTypeInfo) -> bool {
        ty.kind() == AnyTypeInfoKind::Bool || ty.kind().is_integer()
    }
}

impl<'r> Decode<'r, Any> for Flag {
    fn decode(value: AnyValueRef<'r>) -> Result<Self, BoxDynError> {
        if value.type_info().kind() == AnyTypeInfoKind::Bool {
            <bool as Decode<Any>>::decode(value).map(Flag)
        } else {
            <i64 as Decode<Any>>::decode(value).map(|n| Flag(n != 0))
        }
    }
}

/// The in-process side of the write locks, shared by the app and its accounts: the
/// process's one write turn (SQLite), and an async mutex per key (PostgreSQL), each in the
/// map only while a writer holds it or waits for it. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub(crate) struct Locks {
    turn: Arc<tokio::sync::Mutex<()>>,
    keys: Arc<std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

impl Locks {
    /// Waits for this process's turn on `key`.
    async fn hold(&self, key: &str) -> KeyHold {
        let mutex = self
            .keys
            .lock()
            .expect("key locks poisoned")
            .entry(key.to_owned())
            .or_default()
            .clone();
        // Declared before the wait, so that it is dropped after the waiting future (which
        // holds a reference) when the wait is cancelled.
        let entry = KeyEntry {
            key: key.to_owned(),
            locks: self.clone(),
        };
        let guard = mutex.lock_owned().await;
        KeyHold {
            _guard: guard,
            _entry: entry,
        }
    }

    /// Waits for the process's write turn.
    pub(crate) async fn turn(&self) -> tokio::sync::OwnedMutexGuard<()> {
        self.turn.clone().lock_owned().await
    }

    /// How many keys are held or waited for in this process.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.keys.lock().expect("key locks poisoned").len()
    }
}

/// A key's mutex held in this process. Its fields drop in order: the guard, then the map
/// entry if nobody else holds or waits for it.
struct KeyHold {
    _guard: tokio::sync::OwnedMutexGuard<()>,
    _entry: KeyEntry,
}

/// Removes its key from the map when no one else uses it.
struct KeyEntry {
    key: String,
    locks: Locks,
}

impl Drop for KeyEntry {
    fn drop(&mut self) {
        let mut keys = self.locks.keys.lock().expect("key locks poisoned");
        // The map's own reference is the last one: nobody holds or awaits the mutex.
        if keys
            .get(&self.key)
            .is_some_and(|mutex| Arc::strong_count(mutex) == 1)
        {
            keys.remove(&self.key);
        }
    }
}

/// The write locks of one change (or one relay round): on PostgreSQL the keys of its
/// scope, in this process and as advisory locks taken on the connection the change runs on;
/// on SQLite the process's write turn. Derefs to that connection.
///
/// The transaction is opened and committed on the connection itself rather than through a
/// `sqlx::Transaction`, which would keep the connection until the commit and then hand it
/// back to the pool: the locks must be released on the same connection after the commit.
pub(crate) struct Writer {
    /// The connection; `None` once released.
    conn: Option<PoolConnection<Any>>,
    /// The keys held, sorted.
    keys: Vec<String>,
    /// Whether the connection may hold advisory locks. Set before the first is asked for,
    /// so that a writer dropped while waiting for one still releases them.
    advisory: bool,
    /// Whether a transaction is open on the connection.
    in_transaction: bool,
    /// Whether outbox rows that share one of its keys may be older than its own: until
    /// [`Writer::holds_no_older_rows`] says none were there when its keys were taken.
    older_rows: bool,
    backend: Backend,
    /// Where the release of abandoned locks runs (see `Drop`): a task that shutdown
    /// waits for, so a process that stops does not leave them to the session's end.
    tasks: TaskTracker,
    /// This process's turns on the keys. Released after the connection (see `Drop`).
    /// Owned, so a change can finish in a task of its own when its request goes away.
    _held: Vec<KeyHold>,
    /// The process's write turn, on SQLite.
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Writer {
    /// Waits for the write locks of `keys` (sorted, without repeats): on PostgreSQL each
    /// key's turn in this process, then a connection of `pool`, then each key's advisory
    /// lock on that connection, in order; on SQLite the process's turn and a connection.
    /// Locks left behind by a failed or cancelled change are released in a task of `tasks`.
    ///
    /// # Errors
    ///
    /// When no connection can be had or a lock cannot be asked for.
    pub(crate) async fn acquire(
        locks: &Locks,
        pool: &AnyPool,
        tasks: &TaskTracker,
        keys: &[String],
    ) -> Result<Self, sqlx::Error> {
        debug_assert!(keys.is_sorted(), "keys are taken in sorted order");
        let backend = Backend::of(pool);
        let (mut held, mut turn) = (Vec::new(), None);
        match backend {
            Backend::Sqlite => turn = Some(locks.turn().await),
            Backend::Postgres => {
                for key in keys {
                    held.push(locks.hold(key).await);
                }
            }
        }
        let conn = pool.acquire().await?;
        let mut writer = Self {
            conn: Some(conn),
            keys: keys.to_vec(),
            advisory: false,
            in_transaction: false,
            older_rows: true,
            backend,
            tasks: tasks.clone(),
            _held: held,
            _turn: turn,
        };
        if backend == Backend::Postgres {
            for key in keys {
                writer.advisory = true;
                sqlx::query("SELECT pg_advisory_lock($1)")
                    .bind(lock_key(key))
                    .execute(&mut *writer)
                    .await?;
            }
        }
        Ok(writer)
    }

    /// The keys held, sorted.
    pub(crate) fn keys(&self) -> &[String] {
        &self.keys
    }

    /// Whether the writer holds every key at once: the process's turn on SQLite.
    pub(crate) fn holds_everything(&self) -> bool {
        self.backend == Backend::Sqlite
    }

    /// Records that no outbox row shared one of its keys once it held them all. On
    /// PostgreSQL only the holder of a key's advisory lock stores rows of that key, so none
    /// older than its own can appear. Not on SQLite, whose write turn is this process's
    /// alone (the CLI stores rows from another).
    pub(crate) fn holds_no_older_rows(&mut self) {
        debug_assert!(
            !self.holds_everything(),
            "only advisory locks keep other writers out"
        );
        self.older_rows = false;
    }

    /// Whether outbox rows sharing one of its keys, older than its own, may exist.
    pub(crate) fn may_follow_older_rows(&self) -> bool {
        self.older_rows
    }

    /// Opens a transaction on the connection. On SQLite it takes the database's write lock
    /// at once (`BEGIN IMMEDIATE`): a deferred transaction that reads first and then writes
    /// fails with SQLITE_BUSY, without waiting, when another connection (a login, the CLI)
    /// wrote in between.
    ///
    /// # Errors
    ///
    /// When the database refuses.
    pub(crate) async fn begin(&mut self) -> Result<(), sqlx::Error> {
        let statement = match self.backend {
            Backend::Sqlite => Some("BEGIN IMMEDIATE".into()),
            Backend::Postgres => None,
        };
        AnyTransactionManager::begin(self, statement).await?;
        self.in_transaction = true;
        Ok(())
    }

    /// Commits the transaction; the locks stay held.
    ///
    /// # Errors
    ///
    /// When the commit fails; dropping the writer then rolls back.
    pub(crate) async fn commit(&mut self) -> Result<(), sqlx::Error> {
        AnyTransactionManager::commit(self).await?;
        self.in_transaction = false;
        Ok(())
    }

    /// Runs `cleanup` (a DELETE or UPDATE whose binds are `binds`, outside any
    /// transaction) and then releases the locks. On PostgreSQL both go in one statement,
    /// committed right after the unlock without waiting for the disk: for work whose loss
    /// in a crash is repaired later, such as deleting the outbox rows of events the log
    /// holds. A failure closes the connection, which releases the locks too.
    ///
    /// # Errors
    ///
    /// When `cleanup` fails; the locks are released all the same.
    pub(crate) async fn release_after(
        mut self,
        cleanup: &str,
        binds: &[i64],
    ) -> Result<(), sqlx::Error> {
        debug_assert!(!self.in_transaction, "cleanup runs after the commit");
        if !self.advisory {
            let mut query = sqlx::query(cleanup);
            for bind in binds {
                query = query.bind(bind);
            }
            let cleaned = query.execute(&mut *self).await.map(|_| ());
            self.release().await;
            return cleaned;
        }
        let Some(mut conn) = self.conn.take() else {
            return Ok(());
        };
        // The unlock is computed from the count of `cleanup`'s rows, so `cleanup` has run
        // to its end first (one left unread would run after the main query, unlocked).
        let sql = format!(
            "WITH cleanup AS ({cleanup} RETURNING 1) \
             SELECT pg_advisory_unlock_all() \
             FROM (SELECT count(*) FROM cleanup) AS cleaned, \
             (SELECT set_config('synchronous_commit', 'off', true)) AS unhurried"
        );
        let mut query = sqlx::query(&sql);
        for bind in binds {
            query = query.bind(bind);
        }
        match tokio::time::timeout(UNLOCK_TIMEOUT, query.execute(&mut *conn)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => {
                conn.close_on_drop();
                Err(error)
            }
            Err(_) => {
                conn.close_on_drop();
                Err(sqlx::Error::Protocol(
                    "releasing the write locks timed out".into(),
                ))
            }
        }
    }

    /// Releases the locks now, rolling back a transaction still open.
    pub(crate) async fn release(mut self) {
        if let Some(mut conn) = self.conn.take() {
            if self.in_transaction {
                AnyTransactionManager::start_rollback(&mut conn);
            }
            if self.advisory {
                unlock(conn).await;
            }
        }
    }
}

impl std::ops::Deref for Writer {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        self.conn.as_ref().expect("the writer's connection is held")
    }
}

impl std::ops::DerefMut for Writer {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        self.conn.as_mut().expect("the writer's connection is held")
    }
}

impl Drop for Writer {
    /// A writer dropped unreleased (a change that failed or was cancelled): roll back, and
    /// release the advisory locks in a tracked task (shutdown waits for it), or close the
    /// connection so that PostgreSQL releases them. The process's turns pass on at once;
    /// the next writer of a key then waits for its advisory lock.
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        if self.in_transaction {
            AnyTransactionManager::start_rollback(&mut conn);
        }
        if self.advisory {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    self.tasks.spawn_on(unlock(conn), &runtime);
                }
                Err(_) => conn.close_on_drop(),
            }
        }
    }
}

/// Releases every advisory lock held by `conn`'s session; closes the connection (ending
/// the session, which releases them too) when that fails or takes too long, so no pooled
/// connection ever keeps one.
async fn unlock(mut conn: PoolConnection<Any>) {
    let unlocked = tokio::time::timeout(
        UNLOCK_TIMEOUT,
        sqlx::query("SELECT pg_advisory_unlock_all()").execute(&mut *conn),
    )
    .await;
    match unlocked {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => {
            tracing::warn!(%error, "cannot release the app's write locks; closing its connection");
            conn.close_on_drop();
        }
        Err(_) => {
            tracing::warn!("releasing the app's write locks timed out; closing its connection");
            conn.close_on_drop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_backend_and_are_described_without_secrets() {
        let cases: &[(&str, Result<Backend, ()>, &str)] = &[
            (
                "postgres://herald:s3cret@db.example.com:6432/app?sslmode=require&password=x",
                Ok(Backend::Postgres),
                "PostgreSQL db.example.com:6432/app",
            ),
            (
                "postgresql://herald:s3cret@db/app",
                Ok(Backend::Postgres),
                "PostgreSQL db/app",
            ),
            (
                "sqlite:///var/lib/herald/app.db?mode=rwc",
                Ok(Backend::Sqlite),
                "SQLite /var/lib/herald/app.db",
            ),
            ("sqlite:app.db", Ok(Backend::Sqlite), "SQLite app.db"),
            ("mysql://root:s3cret@db/app", Err(()), "an unknown database"),
            ("app.db", Err(()), "an unknown database"),
        ];
        for (url, backend, described) in cases {
            assert_eq!(&Backend::of_url(url).map_err(|_| ()), backend, "{url}");
            assert_eq!(describe_url(url), *described, "{url}");
            assert!(!describe_url(url).contains("s3cret"), "{url}");
        }
        assert_eq!(placeholders(3, 3), "$3, $4, $5");
    }

    /// The SQLite settings the app relies on hold on every connection of the pool, and the
    /// file lands where it should even when its path needs escaping.
    #[tokio::test]
    async fn sqlite_connections_are_durable_and_check_foreign_keys() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data dir?#%");
        let pool = open_db(None, &data_dir).await.unwrap();
        assert!(data_dir.join(crate::data_dir::LOG_FILE).is_file());
        assert_eq!(Backend::of(&pool), Backend::Sqlite);
        let mut conns = Vec::new();
        for _ in 0..SQLITE_CONNECTIONS {
            let mut conn = pool.acquire().await.unwrap();
            let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            assert_eq!(mode, "wal");
            for (pragma, want) in [
                ("synchronous", 2), // FULL
                ("foreign_keys", 1),
                ("busy_timeout", i64::from(SQLITE_BUSY_TIMEOUT_MS)),
            ] {
                let got: i64 = sqlx::query_scalar(&format!("PRAGMA {pragma}"))
                    .fetch_one(&mut *conn)
                    .await
                    .unwrap();
                assert_eq!(got, want, "PRAGMA {pragma}");
            }
            conns.push(conn);
        }
        drop(conns);

        // `$N` placeholders bind by number, in any order and repeated.
        let got: (String, i64, String) = sqlx::query_as("SELECT $2, $1, $2 || $3")
            .bind(7_i64)
            .bind("a")
            .bind("b")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(got, ("a".to_owned(), 7, "ab".to_owned()));

        // Booleans go in as bool and come back as a Flag (SQLite answers integers).
        let flags: (Flag, Flag) = sqlx::query_as("SELECT $1, FALSE")
            .bind(true)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(flags, (Flag(true), Flag(false)));
    }

    /// The advisory lock of a key is fixed: nodes of different versions must agree.
    #[test]
    fn lock_keys_are_stable() {
        // `printf 'ws:a' | sha256sum` starts with b83466084f03d372.
        assert_eq!(lock_key("ws:a"), 0xb834_6608_4f03_d372_u64.cast_signed());
        assert_ne!(lock_key("ws:a"), lock_key("ws:b"));
        assert_ne!(lock_key("ws:a"), lock_key("user:a"));
    }

    /// A key's mutex serializes its holders, other keys go ahead, and the map forgets a key
    /// nobody holds or waits for (a cancelled waiter included).
    #[tokio::test]
    async fn key_turns_serialize_one_key_and_are_forgotten_when_unused() {
        let locks = Locks::default();
        let first = locks.hold("ws:a").await;
        let other = locks.hold("ws:b").await;
        assert_eq!(locks.len(), 2);
        let waiting = tokio::time::timeout(Duration::from_millis(50), locks.hold("ws:a")).await;
        assert!(waiting.is_err(), "a second holder of a key went ahead");
        assert_eq!(
            locks.len(),
            2,
            "the cancelled waiter left the key to its holder"
        );
        drop(other);
        assert_eq!(locks.len(), 1);
        let next = {
            let locks = locks.clone();
            tokio::spawn(async move {
                let _held = locks.hold("ws:a").await;
            })
        };
        tokio::task::yield_now().await;
        drop(first);
        next.await.unwrap();
        assert_eq!(locks.len(), 0, "unused keys are forgotten");
    }
}
