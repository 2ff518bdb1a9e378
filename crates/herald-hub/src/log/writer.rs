//! The embedded log's writer: one thread that owns the SQLite connection every append,
//! prune and [`Work`](super::Work) goes through.
//!
//! Through `sqlx`, every statement is a round trip to a thread of SQLite's own: a wake-up
//! and two context switches, several times per change, each one also holding up every change
//! behind it in the batch. Here a whole batch is one job on the writer's thread, and its
//! statements are direct calls into SQLite. Work is still written against `sqlx`:
//! [`LogConnection`] answers `sqlx::Any` queries ([`sqlx::Executor`]), so the same code runs on
//! PostgreSQL, and its futures are ready as soon as they are polled.

// A work's deadline is for time spent inside SQLite, which is the wall clock's: a test's
// paused tokio clock must not move it.
#![expect(
    clippy::disallowed_types,
    reason = "a deadline for time spent inside SQLite"
)]

use std::{
    borrow::Cow,
    panic::AssertUnwindSafe,
    path::Path,
    sync::{Arc, OnceLock, mpsc},
    time::Instant,
};

use futures::{StreamExt as _, future::BoxFuture, stream::BoxStream};
use rusqlite::types::ValueRef;
use sqlx::{
    Any, Describe, Either, Execute, Executor,
    error::{DatabaseError, ErrorKind},
};
// The values `Any` rows and arguments are made of: the interface between sqlx and its drivers.
use sqlx_core::{
    any::{
        AnyArguments, AnyColumn, AnyQueryResult, AnyRow, AnyStatement, AnyTypeInfo,
        AnyTypeInfoKind, AnyValue, AnyValueKind,
    },
    ext::ustr::UStr,
};
use tokio::sync::oneshot;

use super::LogError;

/// Statements each connection keeps prepared: every query the app and the log run, with
/// room to spare.
const PREPARED: usize = 256;

/// SQLite virtual machine steps between two looks at a work's deadline: a few microseconds.
const PROGRESS_STEPS: std::ffi::c_int = 1000;

/// A job for the writer's thread.
type Job = Box<dyn FnOnce(&mut LogConnection) + Send>;

/// The handle to the writer's thread. The thread ends, closing its connection, once every
/// clone of the log holding this is gone.
#[derive(Debug)]
pub(super) struct Writer {
    jobs: mpsc::Sender<Job>,
    /// Why commits are refused, once a sync of the log's files has failed
    /// ([`LogConnection::commit`]).
    failed: Arc<OnceLock<String>>,
}

impl Writer {
    /// Starts the writer's thread on the SQLite file at `path`, after running `pragmas` on
    /// its connection. The thread enters the current runtime, for work that awaits a timer.
    pub(super) async fn start(path: &Path, pragmas: Vec<String>) -> Result<Self, LogError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (opened, open) = oneshot::channel();
        let runtime = tokio::runtime::Handle::current();
        let path = path.to_owned();
        let failed = Arc::new(OnceLock::new());
        let sticky = failed.clone();
        std::thread::Builder::new()
            .name("herald-log-writer".into())
            .spawn(move || {
                let _runtime = runtime.enter();
                match LogConnection::open(&path, &pragmas, sticky) {
                    Ok(conn) => {
                        let _ = opened.send(Ok(()));
                        serve(conn, &queue);
                    }
                    Err(error) => {
                        let _ = opened.send(Err(error));
                    }
                }
            })
            .map_err(|e| LogError::other(format!("cannot start the log's writer: {e}")))?;
        open.await
            .map_err(|_| LogError::other("the log's writer stopped while opening"))??;
        Ok(Self { jobs, failed })
    }

    /// Why the writer refuses every commit, once a sync of the log's files has failed.
    pub(super) fn failed(&self) -> Option<&str> {
        self.failed.get().map(String::as_str)
    }

    /// Runs `job` on the writer's thread, after the jobs before it, and returns its answer.
    pub(super) async fn run<T, F>(&self, job: F) -> Result<T, LogError>
    where
        F: FnOnce(&mut LogConnection) -> Result<T, LogError> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Box::new(move |conn| {
                let _ = reply.send(job(conn));
            }))
            .map_err(|_| LogError::other("the log's writer has stopped"))?;
        answer
            .await
            .map_err(|_| LogError::other("the log's writer could not run it: nothing was stored"))?
    }
}

/// Whether `error` says that SQLite could not sync a file (`fsync`, `fdatasync`).
fn is_failed_sync(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error().map(|e| e.extended_code),
        Some(rusqlite::ffi::SQLITE_IOERR_FSYNC | rusqlite::ffi::SQLITE_IOERR_DIR_FSYNC)
    )
}

/// The writer's loop. A job that panics (a bug) is dropped with its answer, and whatever
/// transaction it left open is rolled back, so that the next job starts clean.
fn serve(mut conn: LogConnection, queue: &mpsc::Receiver<Job>) {
    for job in queue {
        if !conn.ensure_clean() {
            // Dropped unrun: its caller hears that nothing was stored.
            continue;
        }
        if std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut conn))).is_err() {
            tracing::error!("event log: a job of the writer panicked");
            conn.budget(None);
            conn.roll_back();
        }
    }
}

/// The writer's connection to the log's SQLite file: what a [`Work`](super::Work) runs its
/// statements on.
///
/// `&mut LogConnection` is a [`sqlx::Executor`] for [`sqlx::Any`]. Parameters are numbered
/// as sqlx's SQLite driver numbers them (`$N`, `?N`, bare `?`), and a value is read by the
/// type SQLite stored it as (integer, real, text, blob or null), so a boolean reads as an
/// integer. It differs from that driver in three ways: a query runs whole when it is made,
/// even when its rows are streamed; a query of two statements is refused (so is a
/// `CREATE TRIGGER`, whose body holds several); and a column's declared type does not
/// matter. The futures it returns are ready at once.
pub struct LogConnection {
    conn: rusqlite::Connection,
    /// The file and the pragmas it was opened with, to open it again.
    path: std::path::PathBuf,
    pragmas: Vec<String>,
    /// When the running work's budget ends: its queries are refused after it, and a
    /// statement still running then is interrupted.
    deadline: Option<Instant>,
    /// Whether a query of the running work failed past its deadline.
    overran: std::cell::Cell<bool>,
    /// The column names of persistent statements, by their text ([`Self::columns_of`]);
    /// at most [`PREPARED`].
    columns: std::cell::RefCell<sqlx_core::HashMap<Box<str>, Columns>>,
    /// Why commits are refused, once a sync has failed; kept when the connection is
    /// replaced.
    failed: Arc<OnceLock<String>>,
    /// Makes the next commits fail as a failed sync of the WAL does.
    #[cfg(test)]
    pub(super) fail_syncs: std::cell::Cell<bool>,
}

/// The index of a row's columns by name, shared by the rows of a statement.
type ColumnIndex = Arc<sqlx_core::HashMap<UStr, usize>>;

/// A statement's column names, in order and by name.
type Columns = (Arc<[UStr]>, ColumnIndex);

impl std::fmt::Debug for LogConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogConnection").finish_non_exhaustive()
    }
}

impl LogConnection {
    fn open(
        path: &Path,
        pragmas: &[String],
        failed: Arc<OnceLock<String>>,
    ) -> Result<Self, LogError> {
        let conn = rusqlite::Connection::open(path)?;
        conn.set_prepared_statement_cache_capacity(PREPARED);
        for pragma in pragmas {
            // Some pragmas answer with a row (journal_mode), which `execute` refuses.
            let mut statement = conn.prepare(pragma)?;
            let mut rows = statement.query([])?;
            while rows.next()?.is_some() {}
        }
        Ok(Self {
            conn,
            path: path.to_owned(),
            pragmas: pragmas.to_vec(),
            deadline: None,
            overran: std::cell::Cell::new(false),
            columns: std::cell::RefCell::default(),
            failed,
            #[cfg(test)]
            fail_syncs: std::cell::Cell::new(false),
        })
    }

    /// Makes sure the connection is outside any transaction: one that is still inside (its
    /// ROLLBACK failed) is closed, which rolls the transaction back, and opened afresh.
    /// Whether it is clean now.
    fn ensure_clean(&mut self) -> bool {
        if self.conn.is_autocommit() {
            return true;
        }
        tracing::error!("event log: the writer was left inside a transaction; reopening it");
        match Self::open(&self.path, &self.pragmas, self.failed.clone()) {
            Ok(fresh) => {
                *self = fresh;
                true
            }
            Err(error) => {
                tracing::error!(%error, "event log: cannot reopen the writer");
                false
            }
        }
    }

    /// Gives the work about to run `budget` from now: past it, its queries are refused and
    /// a statement still running is interrupted. `None` lifts the budget, and leaves
    /// [`Self::overran`] as the work left it.
    ///
    /// SQLite rolls back the whole transaction when it interrupts a statement that writes,
    /// so a write that overruns loses the batch; one that reads fails alone.
    pub(super) fn budget(&mut self, budget: Option<std::time::Duration>) {
        self.deadline = budget.map(|budget| Instant::now() + budget);
        if budget.is_some() {
            self.overran.set(false);
        }
        match self.deadline {
            Some(deadline) => self
                .conn
                .progress_handler(PROGRESS_STEPS, Some(move || Instant::now() >= deadline)),
            None => self.conn.progress_handler(0, None::<fn() -> bool>),
        }
    }

    /// Whether a query of the work under the budget failed past its deadline: refused, or
    /// interrupted. Such a work fails, whatever it returns.
    pub(super) fn overran(&self) -> bool {
        self.overran.get()
    }

    /// The connection, for the log's own statements.
    pub(super) fn sqlite(&self) -> &rusqlite::Connection {
        &self.conn
    }

    /// Runs `sql`, statements without parameters that return no rows (BEGIN, SAVEPOINT,
    /// COMMIT...). A single statement stays prepared: a batch runs several per change, and
    /// preparing them again each time would cost more than running them.
    pub(super) fn batch(&self, sql: &str) -> Result<(), LogError> {
        if sql.contains(';') {
            self.conn.execute_batch(sql)?;
        } else {
            self.conn.prepare_cached(sql)?.execute([])?;
        }
        Ok(())
    }

    /// Commits the open transaction, unless a commit's sync failed before. Every commit of
    /// the writer goes through here: appends, batches with work, and pruning.
    ///
    /// A failed sync is final. The kernel may have dropped the pages it could not write
    /// while reporting the error only once, so a later sync that succeeds would not prove
    /// that the WAL on disk holds what was acknowledged before it. From then on every commit
    /// is refused, and the log reports itself unavailable ([`EventLog::check`]), until the
    /// process restarts. What was acknowledged before the failure had been synced; the
    /// failed commit never reached the WAL's index, so it is not part of the log.
    ///
    /// Commits sync only with `synchronous=FULL` (`Durability::Full`). Other connections
    /// to the same file (the checkpoints on the readers, a server's own tables beside the
    /// log) are not covered: a checkpoint whose sync fails leaves the WAL as it was.
    ///
    /// [`EventLog::check`]: super::EventLog::check
    pub(super) fn commit(&self) -> Result<(), LogError> {
        if let Some(why) = self.failed.get() {
            return Err(LogError::other(why.clone()));
        }
        let committed = self.run_commit();
        if let Err(error) = &committed
            && is_failed_sync(error)
        {
            let why = format!(
                "a sync of the event log's files failed ({error}): no write is taken until \
                 Herald restarts"
            );
            tracing::error!("event log: {why}");
            let _ = self.failed.set(why.clone());
            return Err(LogError::other(why));
        }
        Ok(committed?)
    }

    fn run_commit(&self) -> Result<(), rusqlite::Error> {
        #[cfg(test)]
        if self.fail_syncs.get() {
            self.conn.execute_batch("ROLLBACK")?;
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR_FSYNC),
                Some("disk I/O error".into()),
            ));
        }
        self.conn.prepare_cached("COMMIT")?.execute([])?;
        Ok(())
    }

    /// Rolls back the open transaction, if any. Should that fail, the next job finds the
    /// connection still inside it, and replaces it.
    pub(super) fn roll_back(&self) {
        if !self.conn.is_autocommit()
            && let Err(error) = self.conn.execute_batch("ROLLBACK")
        {
            tracing::error!(%error, "event log: cannot roll back");
        }
    }

    /// Runs the one statement of `sql` with `arguments`: every row it returns, then what it
    /// changed.
    fn query(
        &self,
        sql: &str,
        persistent: bool,
        arguments: Option<AnyArguments<'_>>,
    ) -> Result<(Vec<AnyRow>, AnyQueryResult), sqlx::Error> {
        if self
            .deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
        {
            return Err(sqlx::Error::Protocol(
                "the work is over its time budget".into(),
            ));
        }
        // SQLite prepares the first statement of a string and leaves the rest: refuse a
        // second rather than run half of what was asked.
        if has_second_statement(sql) {
            return Err(sqlx::Error::Protocol(
                "the event log's connection runs one statement per query".into(),
            ));
        }
        let (mut cached, mut fresh);
        let statement: &mut rusqlite::Statement<'_> = if persistent {
            cached = self.conn.prepare_cached(sql).map_err(database)?;
            &mut cached
        } else {
            fresh = self.conn.prepare(sql).map_err(database)?;
            &mut fresh
        };
        let values = arguments.map(|a| a.values.0).unwrap_or_default();
        let mut bare = 0;
        for index in 1..=statement.parameter_count() {
            // As sqlx's driver numbers them: `$N` and `?N` take value N, each bare `?` the
            // next of its own count; from the first parameter without a value on, they
            // stay NULL.
            let position = match statement.parameter_name(index) {
                Some(name) => name
                    .strip_prefix(['$', '?'])
                    .and_then(|n| n.parse::<usize>().ok())
                    .ok_or_else(|| {
                        sqlx::Error::Protocol(format!("unsupported SQL parameter {name}"))
                    })?,
                None => {
                    bare += 1;
                    bare
                }
            };
            let Some(value) = values.get(position.wrapping_sub(1)) else {
                break;
            };
            bind(statement, index, value)?;
        }
        let mut found = Vec::new();
        let mut rows = statement.raw_query();
        // Read once a row is there: SQLite prepares a statement again at its first step
        // after a schema change, which may change its columns.
        let mut named = None;
        while let Some(row) = rows.next().map_err(database)? {
            let (names, by_name) =
                named.get_or_insert_with(|| self.columns_of(sql, persistent, row.as_ref()));
            let mut columns = Vec::with_capacity(names.len());
            let mut values = Vec::with_capacity(names.len());
            for (ordinal, name) in names.iter().enumerate() {
                let kind = value_of(row.get_ref(ordinal).map_err(database)?)?;
                columns.push(AnyColumn {
                    ordinal,
                    name: name.clone(),
                    type_info: AnyTypeInfo {
                        kind: kind_of(&kind),
                    },
                });
                values.push(AnyValue { kind });
            }
            found.push(AnyRow {
                column_names: by_name.clone(),
                columns,
                values,
            });
        }
        drop(rows);
        let done = AnyQueryResult {
            rows_affected: self.conn.changes(),
            last_insert_id: Some(self.conn.last_insert_rowid()),
        };
        Ok((found, done))
    }

    /// The names of `statement`'s columns, and each one's index, as rows carry them. Those
    /// of a persistent statement are kept, keyed by its text, and handed out again while
    /// SQLite still gives the same names (a schema change may alter them): a row's names
    /// are then shared, not allocated afresh for every query.
    fn columns_of(
        &self,
        sql: &str,
        persistent: bool,
        statement: &rusqlite::Statement<'_>,
    ) -> Columns {
        let fresh = statement.column_names();
        let mut kept = self.columns.borrow_mut();
        if persistent
            && let Some((names, by_name)) = kept.get(sql)
            && names.len() == fresh.len()
            && names.iter().zip(&fresh).all(|(kept, now)| &**kept == *now)
        {
            return (names.clone(), by_name.clone());
        }
        let names: Arc<[UStr]> = fresh.into_iter().map(UStr::new).collect();
        let by_name: ColumnIndex = Arc::new(
            names
                .iter()
                .enumerate()
                .map(|(i, name)| (name.clone(), i))
                .collect(),
        );
        if persistent {
            if kept.len() >= PREPARED {
                kept.clear();
            }
            kept.insert(sql.into(), (names.clone(), by_name.clone()));
        }
        (names, by_name)
    }

    /// [`Self::query`] for an sqlx query.
    fn run_query<'q>(
        &self,
        mut query: impl Execute<'q, Any>,
    ) -> Result<(Vec<AnyRow>, AnyQueryResult), sqlx::Error> {
        let arguments = query.take_arguments().map_err(sqlx::Error::Encode)?;
        let done = self.query(query.sql(), query.persistent(), arguments);
        if done.is_err()
            && self
                .deadline
                .is_some_and(|deadline| Instant::now() >= deadline)
        {
            self.overran.set(true);
        }
        done
    }
}

/// Whether `sql` holds a statement after its first: a `;` outside quotes and comments,
/// followed by anything but blanks and comments.
fn has_second_statement(sql: &str) -> bool {
    // Statements end with `;`: without one there is no second, and no need to read the
    // text a character at a time.
    if !sql.contains(';') {
        return false;
    }
    let mut rest = sql;
    let mut ended = false;
    while let Some(c) = rest.chars().next() {
        let skip = if rest.starts_with("--") {
            rest.find('\n').map_or(rest.len(), |at| at + 1)
        } else if let Some(comment) = rest.strip_prefix("/*") {
            comment.find("*/").map_or(rest.len(), |at| at + 4)
        } else if c.is_whitespace() {
            c.len_utf8()
        } else if c == ';' {
            ended = true;
            1
        } else if ended {
            return true;
        } else if matches!(c, '\'' | '"' | '`' | '[') {
            // A doubled quote inside reads as closing and reopening: the same.
            let close = if c == '[' { ']' } else { c };
            rest[1..].find(close).map_or(rest.len(), |at| at + 2)
        } else {
            c.len_utf8()
        };
        rest = &rest[skip..];
    }
    false
}

/// Binds `value` to the parameter `index` of `statement`, as sqlx's SQLite driver stores it.
fn bind(
    statement: &mut rusqlite::Statement<'_>,
    index: usize,
    value: &AnyValueKind<'_>,
) -> Result<(), sqlx::Error> {
    match value {
        AnyValueKind::Bool(b) => statement.raw_bind_parameter(index, i64::from(*b)),
        AnyValueKind::SmallInt(n) => statement.raw_bind_parameter(index, i64::from(*n)),
        AnyValueKind::Integer(n) => statement.raw_bind_parameter(index, i64::from(*n)),
        AnyValueKind::BigInt(n) => statement.raw_bind_parameter(index, *n),
        AnyValueKind::Real(x) => statement.raw_bind_parameter(index, f64::from(*x)),
        AnyValueKind::Double(x) => statement.raw_bind_parameter(index, *x),
        AnyValueKind::Text(text) => statement.raw_bind_parameter(index, &**text),
        AnyValueKind::Blob(bytes) => statement.raw_bind_parameter(index, &**bytes),
        AnyValueKind::Null(_) => statement.raw_bind_parameter(index, rusqlite::types::Null),
        other => {
            return Err(sqlx::Error::Protocol(format!(
                "the event log's connection cannot store {other:?}"
            )));
        }
    }
    .map_err(database)
}

/// A column's value as sqlx's SQLite driver hands it to `Any`: by the type of the value
/// stored, not the column's declared type.
fn value_of(value: ValueRef<'_>) -> Result<AnyValueKind<'static>, sqlx::Error> {
    Ok(match value {
        ValueRef::Null => AnyValueKind::Null(AnyTypeInfoKind::Null),
        ValueRef::Integer(n) => AnyValueKind::BigInt(n),
        ValueRef::Real(x) => AnyValueKind::Double(x),
        ValueRef::Text(bytes) => AnyValueKind::Text(Cow::Owned(
            String::from_utf8(bytes.to_vec()).map_err(sqlx::Error::decode)?,
        )),
        ValueRef::Blob(bytes) => AnyValueKind::Blob(Cow::Owned(bytes.to_vec())),
    })
}

fn kind_of(value: &AnyValueKind<'_>) -> AnyTypeInfoKind {
    match value {
        AnyValueKind::BigInt(_) => AnyTypeInfoKind::BigInt,
        AnyValueKind::Double(_) => AnyTypeInfoKind::Double,
        AnyValueKind::Text(_) => AnyTypeInfoKind::Text,
        AnyValueKind::Blob(_) => AnyTypeInfoKind::Blob,
        _ => AnyTypeInfoKind::Null,
    }
}

impl<'c> Executor<'c> for &'c mut LogConnection {
    type Database = Any;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        let steps: Vec<_> = match self.run_query(query) {
            Ok((rows, done)) => rows
                .into_iter()
                .map(|row| Ok(Either::Right(row)))
                .chain(std::iter::once(Ok(Either::Left(done))))
                .collect(),
            Err(error) => vec![Err(error)],
        };
        futures::stream::iter(steps).boxed()
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        let first = self
            .run_query(query)
            .map(|(rows, _)| rows.into_iter().next());
        Box::pin(std::future::ready(first))
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        _sql: &'q str,
        _parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, Result<AnyStatement<'q>, sqlx::Error>>
    where
        'c: 'e,
    {
        Box::pin(std::future::ready(Err(unsupported("prepare"))))
    }

    fn describe<'e, 'q: 'e>(
        self,
        _sql: &'q str,
    ) -> BoxFuture<'e, Result<Describe<Any>, sqlx::Error>>
    where
        'c: 'e,
    {
        Box::pin(std::future::ready(Err(unsupported("describe"))))
    }
}

fn unsupported(what: &str) -> sqlx::Error {
    sqlx::Error::Protocol(format!(
        "the event log's connection cannot {what} a statement"
    ))
}

/// An error of SQLite, as an sqlx database error: its message, its extended result code, and
/// the kind of constraint it broke.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
struct SqliteFailure {
    message: String,
    code: Option<i32>,
}

fn database(error: rusqlite::Error) -> sqlx::Error {
    let code = match &error {
        rusqlite::Error::SqliteFailure(failure, _) => Some(failure.extended_code),
        _ => None,
    };
    sqlx::Error::Database(Box::new(SqliteFailure {
        message: error.to_string(),
        code,
    }))
}

impl DatabaseError for SqliteFailure {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<Cow<'_, str>> {
        self.code.map(|code| Cow::Owned(code.to_string()))
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> ErrorKind {
        use rusqlite::ffi;
        match self.code {
            Some(ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY) => {
                ErrorKind::UniqueViolation
            }
            Some(ffi::SQLITE_CONSTRAINT_FOREIGNKEY) => ErrorKind::ForeignKeyViolation,
            Some(ffi::SQLITE_CONSTRAINT_NOTNULL) => ErrorKind::NotNullViolation,
            Some(ffi::SQLITE_CONSTRAINT_CHECK) => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}

impl From<rusqlite::Error> for LogError {
    fn from(error: rusqlite::Error) -> Self {
        Self::from(database(error))
    }
}

#[cfg(test)]
mod tests {
    use futures::{TryStreamExt as _, executor::block_on};
    use sqlx::{Column as _, FromRow, Row as _};

    use super::*;

    #[derive(Debug, FromRow, PartialEq)]
    struct Thing {
        id: String,
        n: i64,
        x: f64,
        note: Option<String>,
        bytes: Vec<u8>,
    }

    async fn writer() -> (tempfile::TempDir, Writer) {
        let dir = tempfile::tempdir().unwrap();
        let writer = Writer::start(&dir.path().join("w.db"), vec![])
            .await
            .unwrap();
        writer
            .run(|conn| {
                conn.batch(
                    "CREATE TABLE things (id TEXT PRIMARY KEY, n INTEGER NOT NULL, x REAL NOT NULL, \
                     note TEXT, bytes BLOB NOT NULL, flag BOOLEAN NOT NULL DEFAULT FALSE)",
                )
            })
            .await
            .unwrap();
        (dir, writer)
    }

    /// Queries written for `sqlx::Any` run on the writer as through sqlx's SQLite driver:
    /// `$N` parameters by number (in any order, used twice), a bare `?` by position, rows
    /// into `FromRow` types and scalars, and what a statement changed.
    #[tokio::test]
    async fn sqlx_queries_run_as_on_sqlxs_sqlite_driver() {
        let (_dir, writer) = writer().await;
        let got = writer
            .run(|conn| {
                block_on(async {
                    let done = sqlx::query(
                        "INSERT INTO things (n, id, x, note, bytes, flag) \
                         VALUES ($2, $1, $3, $4, $5, $6), ($2 + 1, $1 || '2', $3, NULL, $5, $6)",
                    )
                    .bind("a")
                    .bind(41_i64)
                    .bind(0.5_f64)
                    .bind("hi")
                    .bind(vec![1_u8, 2])
                    .bind(true)
                    .execute(&mut *conn)
                    .await?;
                    let things: Vec<Thing> =
                        sqlx::query_as("SELECT * FROM things WHERE x > ? ORDER BY id")
                            .bind(0.25_f64)
                            .fetch_all(&mut *conn)
                            .await?;
                    let flag: i64 = sqlx::query_scalar("SELECT flag FROM things WHERE id = $1")
                        .bind("a")
                        .fetch_one(&mut *conn)
                        .await?;
                    let none: Option<(String,)> =
                        sqlx::query_as("SELECT id FROM things WHERE id = 'nope'")
                            .fetch_optional(&mut *conn)
                            .await?;
                    let streamed: Vec<String> = sqlx::query("SELECT id FROM things ORDER BY id")
                        .fetch(&mut *conn)
                        .map_ok(|row| row.get::<String, _>("id"))
                        .try_collect()
                        .await?;
                    Ok::<_, sqlx::Error>((done.rows_affected(), things, flag, none, streamed))
                })
                .map_err(LogError::from)
            })
            .await
            .unwrap();
        let (affected, things, flag, none, streamed) = got;
        assert_eq!(affected, 2);
        assert_eq!(
            things,
            [
                Thing {
                    id: "a".into(),
                    n: 41,
                    x: 0.5,
                    note: Some("hi".into()),
                    bytes: vec![1, 2],
                },
                Thing {
                    id: "a2".into(),
                    n: 42,
                    x: 0.5,
                    note: None,
                    bytes: vec![1, 2],
                },
            ]
        );
        assert_eq!(flag, 1, "a bool is stored as an integer");
        assert_eq!(none, None);
        assert_eq!(streamed, ["a", "a2"]);
    }

    /// Rows of a statement run again share its column names, and still carry the right ones
    /// once a schema change has altered them.
    #[tokio::test]
    async fn a_statements_column_names_follow_a_schema_change() {
        let (_dir, writer) = writer().await;
        let rows = |conn: &mut LogConnection| {
            block_on(sqlx::query("SELECT * FROM things").fetch_all(&mut *conn))
                .map_err(LogError::from)
        };
        let names = |row: &AnyRow| -> Vec<String> {
            row.columns().iter().map(|c| c.name().to_owned()).collect()
        };
        let (before, again, after) = writer
            .run(move |conn| {
                conn.batch("INSERT INTO things (id, n, x, bytes) VALUES ('a', 1, 1.0, x'00')")?;
                let before = rows(conn)?;
                let again = rows(conn)?;
                conn.batch("ALTER TABLE things RENAME COLUMN note TO remark")?;
                conn.batch("ALTER TABLE things ADD COLUMN extra TEXT")?;
                Ok((before, again, rows(conn)?))
            })
            .await
            .unwrap();
        assert_eq!(names(&before[0]), ["id", "n", "x", "note", "bytes", "flag"]);
        assert!(
            Arc::ptr_eq(&before[0].column_names, &again[0].column_names),
            "a statement run again shares its column names"
        );
        assert_eq!(
            names(&after[0]),
            ["id", "n", "x", "remark", "bytes", "flag", "extra"]
        );
        assert_eq!(after[0].column_names.len(), 7);
    }

    /// Errors come back as sqlx database errors with their kind; a query with several
    /// statements is refused before any of it runs.
    #[tokio::test]
    async fn errors_keep_their_kind_and_nothing_runs_half() {
        let (_dir, writer) = writer().await;
        let errors = writer
            .run(|conn| {
                block_on(async {
                    let insert = "INSERT INTO things (id, n, x, bytes) VALUES ($1, 1, 1.0, x'00')";
                    sqlx::query(insert).bind("a").execute(&mut *conn).await?;
                    let twice = sqlx::query(insert).bind("a").execute(&mut *conn).await;
                    let two = sqlx::query("DELETE FROM things; DELETE FROM nothing")
                        .execute(&mut *conn)
                        .await;
                    let named = sqlx::query("SELECT :a")
                        .bind(1_i64)
                        .execute(&mut *conn)
                        .await;
                    let short: (i64, Option<i64>) = sqlx::query_as("SELECT $1, $2")
                        .bind(1_i64)
                        .fetch_one(&mut *conn)
                        .await?;
                    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM things")
                        .fetch_one(&mut *conn)
                        .await?;
                    Ok::<_, sqlx::Error>((
                        twice.unwrap_err(),
                        two.is_err(),
                        named.is_err(),
                        short,
                        left,
                    ))
                })
                .map_err(LogError::from)
            })
            .await
            .unwrap();
        let (twice, two, named, short, left) = errors;
        let database = twice.as_database_error().expect("a database error");
        assert!(database.is_unique_violation(), "{database}");
        assert!(database.message().contains("UNIQUE"), "{database}");
        assert!(two, "two statements in one query are refused");
        assert!(named, "named parameters are refused, as by sqlx's driver");
        assert_eq!(
            short,
            (1, None),
            "a parameter without a value is NULL, as in sqlx's"
        );
        assert_eq!(left, 1, "the refused DELETE ran no part of itself");
    }

    #[test]
    fn a_second_statement_is_told_from_a_semicolon_in_text_or_a_trailing_one() {
        for one in [
            "SELECT 1",
            "SELECT 1;",
            "SELECT 1; -- done",
            "SELECT 1 /* ; */ ;  \n /* end */",
            "SELECT 'a;b', \"c;\", [d;e], `f;g` FROM t",
            "SELECT 'it''s; fine'",
        ] {
            assert!(!has_second_statement(one), "{one}");
        }
        for two in [
            "SELECT 1; SELECT 2",
            "SELECT ';';DELETE FROM t",
            "SELECT 1;;x",
        ] {
            assert!(has_second_statement(two), "{two}");
        }
    }

    /// A job that panics loses its answer, and the writer rolls back what it left open and
    /// serves the next job.
    #[tokio::test]
    async fn a_panicking_job_leaves_the_writer_clean() {
        let (_dir, writer) = writer().await;
        let lost = writer
            .run(|conn| -> Result<(), LogError> {
                conn.batch("BEGIN; DELETE FROM things")?;
                panic!("a bug in a job");
            })
            .await;
        assert!(lost.is_err());
        let clean = writer
            .run(|conn| Ok(conn.sqlite().is_autocommit()))
            .await
            .unwrap();
        assert!(clean, "the panicking job's transaction was rolled back");
    }

    /// A job that leaves a transaction open (as a failed ROLLBACK would) does not hold the
    /// next: the connection is replaced, and what the transaction held is gone.
    #[tokio::test]
    async fn a_connection_left_inside_a_transaction_is_replaced() {
        let (_dir, writer) = writer().await;
        writer
            .run(|conn| {
                conn.batch("BEGIN; INSERT INTO things (id, n, x, bytes) VALUES ('a', 1, 1.0, x'')")
            })
            .await
            .unwrap();
        let (clean, rows) = writer
            .run(|conn| {
                let clean = conn.sqlite().is_autocommit();
                let rows: i64 =
                    conn.sqlite()
                        .query_row("SELECT COUNT(*) FROM things", [], |row| row.get(0))?;
                Ok((clean, rows))
            })
            .await
            .unwrap();
        assert!(clean);
        assert_eq!(rows, 0, "the open transaction was rolled back");
    }
}
