//! The service layer: every read applies the policy, and every change runs in one
//! transaction with the event it emits (see `Change`). The server's handlers only parse
//! and call these.
//!
//! - `workspaces`: workspaces and their members.
//! - `resources`: the collections (todos, channels, notes), one generic CRUD.
//! - `messages`: notifications, broadcasts, and logging out.
//!
//! This module holds what they share: access checks, event envelopes and `emit`.

mod messages;
mod resources;
mod workspaces;

pub use resources::{Base, Resource, Written};

use std::sync::LazyLock;

use serde::Serialize;
use sqlx::{Any, Executor, FromRow};

use crate::{
    App, Change,
    change::Emitted,
    envelope::Envelope,
    error::{AppError, internal},
    model::{MemberRole, Workspace},
    policy::{self, Access, Action, Actor, Kind},
};

/// One page of a collection.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    /// The items, oldest first.
    pub items: Vec<T>,
    /// Pass as `after` for the next page; `None` on the last.
    pub next_cursor: Option<String>,
}

/// Most items on one page.
pub const MAX_PAGE: u32 = 200;

/// What an event is about, for its type and its routing.
struct About<'a> {
    kind: Kind,
    action: Action,
    ws: &'a str,
    /// The resource's author: notes are routed by it.
    author: &'a str,
    /// A user whose own streams must hear of it (added, removed, creator).
    concerns: Option<&'a str>,
}

/// Emits `kind:action` about `data`, routed by the policy; returns the event's id.
fn emit(
    change: &mut Change<'_>,
    actor: &Actor,
    about: About<'_>,
    data: &impl Serialize,
) -> Result<String, AppError> {
    Ok(emit_about(change, actor, about, data, false)?.id)
}

/// [`emit`], returning `data`'s JSON as the event carries it: serialized once, for the event
/// and for an answer.
fn emit_returning_data(
    change: &mut Change<'_>,
    actor: &Actor,
    about: About<'_>,
    data: &impl Serialize,
) -> Result<String, AppError> {
    emit_about(change, actor, about, data, true)?
        .data
        .ok_or_else(|| internal("the event's data was not written"))
}

/// Emits the envelope of `kind:action` about `data` and its routing
/// ([`Change::emit_event`]).
fn emit_about(
    change: &mut Change<'_>,
    actor: &Actor,
    about: About<'_>,
    data: &impl Serialize,
    keep_data: bool,
) -> Result<Emitted, AppError> {
    let About {
        kind,
        action,
        ws,
        author,
        concerns,
    } = about;
    let event_type = format!("{}:{}", kind.as_str(), action.as_str());
    let topics = policy::route(kind, ws, author, concerns);
    let closes = policy::closes(kind, action, ws, concerns);
    let mut envelope = Envelope::new(&event_type, actor);
    envelope.action = Some(action.as_str());
    envelope.resource_type = Some(kind.as_str());
    envelope.workspace_id = Some(ws);
    envelope.data = Some(data);
    change.emit_event(topics, closes, &envelope, keep_data)
}

/// Records the event that gave `user` access to `ws`; replays do not reach before it.
async fn joined_at(
    change: &mut Change<'_>,
    ws: &str,
    user: &str,
    event: &str,
) -> Result<(), AppError> {
    sqlx::query("UPDATE members SET joined_event = $1 WHERE workspace_id = $2 AND user_id = $3")
        .bind(event)
        .bind(ws)
        .bind(user)
        .execute(&mut change.tx)
        .await
        .map_err(internal)?;
    Ok(())
}

const WORKSPACE_COLUMNS: &str = "w.id, w.name, w.created_by, w.created_at, w.updated_at";

/// Whether the actor may read workspace `ws`: `NotFound` otherwise, like any read of it.
///
/// The rule of [`access`], reading only whether the workspace exists and the actor's role:
/// a change to a collection checks this, and needs nothing else of the workspace.
pub(crate) async fn check_access(
    conn: impl Executor<'_, Database = Any>,
    actor: &Actor,
    ws: &str,
) -> Result<(), AppError> {
    let row: Option<Option<MemberRole>> = sqlx::query_scalar(
        "SELECT m.role FROM workspaces w LEFT JOIN members m \
         ON m.workspace_id = w.id AND m.user_id = $1 WHERE w.id = $2",
    )
    .bind(&actor.user.id)
    .bind(ws)
    .fetch_optional(conn)
    .await
    .map_err(internal)?;
    Access::permits(actor, row.is_some(), row.flatten())
}

/// The actor's access to workspace `ws`, read on `conn` (inside a change's transaction for
/// writes, so the check and the write see the same state).
async fn access(
    conn: impl Executor<'_, Database = Any>,
    actor: &Actor,
    ws: &str,
) -> Result<Access, AppError> {
    // Every change runs it: its text is made once.
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT {WORKSPACE_COLUMNS}, m.role FROM workspaces w LEFT JOIN members m \
             ON m.workspace_id = w.id AND m.user_id = $1 WHERE w.id = $2"
        )
    });
    let row: Option<WorkspaceRow> = sqlx::query_as(SQL.as_str())
        .bind(&actor.user.id)
        .bind(ws)
        .fetch_optional(conn)
        .await
        .map_err(internal)?;
    match row {
        Some(row) => Access::check(actor, Some(row.workspace), row.role),
        None => Access::check(actor, None, None),
    }
}

#[derive(FromRow)]
struct WorkspaceRow {
    #[sqlx(flatten)]
    workspace: Workspace,
    role: Option<MemberRole>,
}

impl App {
    /// The actor's read access to workspace `ws`.
    ///
    /// # Errors
    ///
    /// `NotFound` without it.
    pub async fn read_access(&self, actor: &Actor, ws: &str) -> Result<Access, AppError> {
        let mut conn = self.pool().acquire().await.map_err(internal)?;
        access(&mut *conn, actor, ws).await
    }
}
