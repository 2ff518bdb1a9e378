//! [`Conn`]: the connection a change runs its statements on, whichever way it commits.

use futures::{future::BoxFuture, stream::BoxStream};
use herald_hub::LogConnection;
use sqlx::{
    Any, AnyConnection, Describe, Either, Execute, Executor,
    any::{AnyQueryResult, AnyRow, AnyStatement, AnyTypeInfo},
};

/// The connection of a change: one of the app's database through the outbox, or the event
/// log's writer when the app's tables are in the log's file. Either way `&mut Conn` runs
/// `sqlx::Any` queries, so a change's body is written once.
#[derive(Debug)]
pub(crate) enum Conn<'c> {
    /// A connection of the app's pool, inside the change's transaction.
    Pool(&'c mut AnyConnection),
    /// The log's writer, inside the batch's transaction, under the change's savepoint.
    Log(&'c mut LogConnection),
}

impl<'x> Executor<'x> for &'x mut Conn<'_> {
    type Database = Any;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>>
    where
        'x: 'e,
        E: 'q + Execute<'q, Any>,
    {
        match self {
            Conn::Pool(conn) => conn.fetch_many(query),
            Conn::Log(conn) => conn.fetch_many(query),
        }
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<AnyRow>, sqlx::Error>>
    where
        'x: 'e,
        E: 'q + Execute<'q, Any>,
    {
        match self {
            Conn::Pool(conn) => conn.fetch_optional(query),
            Conn::Log(conn) => conn.fetch_optional(query),
        }
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, Result<AnyStatement<'q>, sqlx::Error>>
    where
        'x: 'e,
    {
        match self {
            Conn::Pool(conn) => conn.prepare_with(sql, parameters),
            Conn::Log(conn) => conn.prepare_with(sql, parameters),
        }
    }

    fn describe<'e, 'q: 'e>(self, sql: &'q str) -> BoxFuture<'e, Result<Describe<Any>, sqlx::Error>>
    where
        'x: 'e,
    {
        match self {
            Conn::Pool(conn) => conn.describe(sql),
            Conn::Log(conn) => conn.describe(sql),
        }
    }
}
