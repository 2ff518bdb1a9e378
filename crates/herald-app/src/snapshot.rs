//! Reads that say which log position they are consistent with: a client loads data, then
//! subscribes after that position (`SubscribeRequest::after`), and misses no change made in
//! between.
//!
//! `App::read_snapshot` is the one place where that position is taken; every read that
//! reports one runs its queries on the `Read` it returns, in one read transaction.
//!
//! When the app's tables are in the event log's file ([`Commits::WithLog`]), a change and
//! its events commit together, so the read asks the log's head first, inside its own
//! transaction: the position is exact. Every change the read sees has its events at or
//! below it, and every change it does not see has them above.
//!
//! Otherwise the rule, correct on every backend: the position is the hub's head ([`Hub::head`],
//! the newest update fanned out) read *before* the read transaction begins. Every update
//! above it is streamed to a subscription that starts after it. An update at or below it
//! was fanned out before the read began, and its change committed before it was handed to
//! the hub, so the read sees that change. A change that commits after the read began is
//! handed to the hub after the position was taken, so its update lies above it. The
//! position may be older than the read: a change the read already saw may be streamed
//! again, and clients apply an update no newer than what they hold as a no-op (the web
//! UI compares `updatedAt`).
//!
//! [`Hub::head`]: herald_hub::Hub::head
//! [`Commits::WithLog`]: crate::Commits::WithLog

use sqlx::{Any, AnyConnection, Transaction};

use herald_hub::SqliteLog;

use crate::{
    App, Commits,
    db::Backend,
    error::{AppError, internal},
};

/// Data read from the app, and the log position it is consistent with.
#[derive(Debug)]
pub struct Snapshot<T> {
    /// What was read.
    pub data: T,
    /// Subscribe after this position to get every change the data does not hold.
    pub position: u64,
}

impl<T> Snapshot<T> {
    /// The same position with other data.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Snapshot<U> {
        Snapshot {
            data: f(self.data),
            position: self.position,
        }
    }
}

/// A read in progress: its position and its read transaction.
pub(crate) struct Read {
    position: u64,
    tx: Transaction<'static, Any>,
}

impl App {
    /// Starts a read whose result is consistent with a log position; see the module's
    /// documentation for why the position is taken where it is.
    ///
    /// # Errors
    ///
    /// `Internal` when the database cannot begin a transaction.
    pub(crate) async fn read_snapshot(&self) -> Result<Read, AppError> {
        if self.commits() == Commits::WithLog {
            // SQLite's deferred transaction takes its snapshot at the first read: the head.
            let mut tx = self.pool().begin_with("BEGIN").await.map_err(internal)?;
            let position = SqliteLog::head_in(&mut *tx).await.map_err(internal)?;
            return Ok(Read { position, tx });
        }
        let position = self.hub().head();
        // One snapshot for every statement of the read: SQLite's deferred transaction takes
        // it at the first read; PostgreSQL's default (read committed) would take one per
        // statement.
        let begin = match Backend::of(self.pool()) {
            Backend::Sqlite => "BEGIN",
            Backend::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        };
        let tx = self.pool().begin_with(begin).await.map_err(internal)?;
        Ok(Read { position, tx })
    }
}

impl Read {
    /// The connection every query of the read runs on.
    pub(crate) fn conn(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }

    /// Ends the read and pairs `data` with its position.
    ///
    /// # Errors
    ///
    /// `Internal` when the read transaction cannot be ended.
    pub(crate) async fn finish<T>(self, data: T) -> Result<Snapshot<T>, AppError> {
        self.tx.commit().await.map_err(internal)?;
        Ok(Snapshot {
            data,
            position: self.position,
        })
    }
}
