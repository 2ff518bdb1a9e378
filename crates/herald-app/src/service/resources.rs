//! The collections under `/api/workspaces/{ws}/…`: todos, channels and notes, one generic
//! CRUD over the [`Resource`] trait.

use crate::Scope;
use serde::{Serialize, de::DeserializeOwned};
use sqlx::{
    Any, Executor, FromRow,
    any::{AnyArguments, AnyRow},
    query::Query,
};

use crate::{
    App,
    error::{AppError, internal},
    model::{self, Channel, ChannelBody, NewTodo, Note, NoteBody, Todo, TodoPatch},
    policy::{Action, Actor, Kind, not_found},
    snapshot::Snapshot,
};

use super::{About, MAX_PAGE, Page, check_access, emit, emit_returning_data};

/// What every new resource starts with.
#[derive(Debug)]
pub struct Base {
    id: String,
    workspace_id: String,
    created_by: String,
    now: String,
}

/// A resource a change wrote, with its JSON: the `data` of the change's event, cut from the
/// event's JSON, which an answer sends as it is.
#[derive(Debug)]
pub struct Written<R> {
    /// The resource as stored.
    pub resource: R,
    /// Its JSON, as its event carries it.
    pub json: String,
}

/// A collection under `/api/workspaces/{ws}/…`: todos, channels or notes.
pub trait Resource:
    Serialize + for<'r> FromRow<'r, AnyRow> + Send + Sync + Unpin + 'static
{
    /// Its kind, for event types and routing.
    const KIND: Kind;
    /// Whether only its author (and admins) may see and change it.
    const PRIVATE: bool;
    /// The body that creates one.
    type Create: DeserializeOwned + Send + 'static;
    /// The body that changes one.
    type Patch: DeserializeOwned + Send + 'static;

    /// A new resource from a checked body.
    fn create(base: Base, body: Self::Create) -> Result<Self, AppError>;
    /// Applies a checked patch; refuses an empty one.
    fn apply(&mut self, patch: Self::Patch, now: String) -> Result<(), AppError>;
    /// Inserts or updates its row.
    fn save(&self) -> Query<'_, Any, AnyArguments<'_>>;
    /// Its id.
    fn id(&self) -> &str;
    /// Its author.
    fn author(&self) -> &str;
    /// Refuses deletion of what must stay.
    fn check_delete(&self) -> Result<(), AppError> {
        Ok(())
    }
}

fn empty_patch() -> AppError {
    AppError::invalid("the patch changes nothing: give at least one field")
}

impl Resource for Todo {
    const KIND: Kind = Kind::Todos;
    const PRIVATE: bool = false;
    type Create = NewTodo;
    type Patch = TodoPatch;

    fn create(base: Base, body: NewTodo) -> Result<Self, AppError> {
        model::text("title", &body.title, model::MAX_TITLE)?;
        Ok(Self {
            id: base.id,
            workspace_id: base.workspace_id,
            title: body.title,
            done: body.done,
            created_by: base.created_by,
            created_at: base.now.clone(),
            updated_at: base.now,
        })
    }

    fn apply(&mut self, patch: TodoPatch, now: String) -> Result<(), AppError> {
        if patch.title.is_none() && patch.done.is_none() {
            return Err(empty_patch());
        }
        if let Some(title) = patch.title {
            model::text("title", &title, model::MAX_TITLE)?;
            self.title = title;
        }
        if let Some(done) = patch.done {
            self.done = done;
        }
        self.updated_at = now;
        Ok(())
    }

    fn save(&self) -> Query<'_, Any, AnyArguments<'_>> {
        sqlx::query(
            "INSERT INTO todos (id, workspace_id, title, done, created_by, created_at, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO UPDATE SET \
             title = excluded.title, done = excluded.done, updated_at = excluded.updated_at",
        )
        .bind(&self.id)
        .bind(&self.workspace_id)
        .bind(&self.title)
        .bind(self.done)
        .bind(&self.created_by)
        .bind(&self.created_at)
        .bind(&self.updated_at)
    }

    fn id(&self) -> &str {
        &self.id
    }

    fn author(&self) -> &str {
        &self.created_by
    }
}

impl Resource for Channel {
    const KIND: Kind = Kind::Channels;
    const PRIVATE: bool = false;
    type Create = ChannelBody;
    type Patch = ChannelBody;

    fn create(base: Base, body: ChannelBody) -> Result<Self, AppError> {
        let name = body
            .name
            .ok_or_else(|| AppError::invalid("name is required"))?;
        model::text("name", &name, model::MAX_NAME)?;
        Ok(Self {
            id: base.id,
            workspace_id: base.workspace_id,
            name,
            is_default: false,
            created_by: base.created_by,
            created_at: base.now.clone(),
            updated_at: base.now,
        })
    }

    fn apply(&mut self, patch: ChannelBody, now: String) -> Result<(), AppError> {
        let name = patch.name.ok_or_else(empty_patch)?;
        model::text("name", &name, model::MAX_NAME)?;
        self.name = name;
        self.updated_at = now;
        Ok(())
    }

    fn save(&self) -> Query<'_, Any, AnyArguments<'_>> {
        sqlx::query(
            "INSERT INTO channels (id, workspace_id, name, is_default, created_by, created_at, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO UPDATE SET \
             name = excluded.name, updated_at = excluded.updated_at",
        )
        .bind(&self.id)
        .bind(&self.workspace_id)
        .bind(&self.name)
        .bind(self.is_default)
        .bind(&self.created_by)
        .bind(&self.created_at)
        .bind(&self.updated_at)
    }

    fn id(&self) -> &str {
        &self.id
    }

    fn author(&self) -> &str {
        &self.created_by
    }

    fn check_delete(&self) -> Result<(), AppError> {
        if self.is_default {
            Err(AppError::conflict(format!(
                "{:?} is the workspace's default channel and cannot be deleted",
                self.name
            )))
        } else {
            Ok(())
        }
    }
}

impl Resource for Note {
    const KIND: Kind = Kind::Notes;
    const PRIVATE: bool = true;
    type Create = NoteBody;
    type Patch = NoteBody;

    fn create(base: Base, body: NoteBody) -> Result<Self, AppError> {
        let content = body
            .content
            .ok_or_else(|| AppError::invalid("content is required"))?;
        model::text("content", &content, model::MAX_CONTENT)?;
        Ok(Self {
            id: base.id,
            workspace_id: base.workspace_id,
            content,
            created_by: base.created_by,
            created_at: base.now.clone(),
            updated_at: base.now,
        })
    }

    fn apply(&mut self, patch: NoteBody, now: String) -> Result<(), AppError> {
        let content = patch.content.ok_or_else(empty_patch)?;
        model::text("content", &content, model::MAX_CONTENT)?;
        self.content = content;
        self.updated_at = now;
        Ok(())
    }

    fn save(&self) -> Query<'_, Any, AnyArguments<'_>> {
        sqlx::query(
            "INSERT INTO notes (id, workspace_id, content, created_by, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET \
             content = excluded.content, updated_at = excluded.updated_at",
        )
        .bind(&self.id)
        .bind(&self.workspace_id)
        .bind(&self.content)
        .bind(&self.created_by)
        .bind(&self.created_at)
        .bind(&self.updated_at)
    }

    fn id(&self) -> &str {
        &self.id
    }

    fn author(&self) -> &str {
        &self.created_by
    }
}

fn table(kind: Kind) -> &'static str {
    match kind {
        Kind::Todos => "todos",
        Kind::Channels => "channels",
        Kind::Notes => "notes",
        other => unreachable!("{other:?} is not a collection"),
    }
}

impl App {
    /// A page of a collection, as the actor may see it, and the log position it is
    /// consistent with.
    pub async fn list<R: Resource>(
        &self,
        actor: &Actor,
        ws: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Snapshot<Page<R>>, AppError> {
        let mut read = self.read_snapshot().await?;
        check_access(read.conn(), actor, ws).await?;
        let see_all = !R::PRIVATE || actor.is_admin();
        let limit = limit.clamp(1, MAX_PAGE);
        // Two statements rather than one with `($3 OR created_by = $4)`: the planner cannot
        // use an index through a bound OR, and would scan and sort the workspace per page.
        let table = table(R::KIND);
        let query = if see_all {
            format!(
                "SELECT * FROM {table} WHERE workspace_id = $1 AND id > $2 ORDER BY id LIMIT $3"
            )
        } else {
            format!(
                "SELECT * FROM {table} WHERE workspace_id = $1 AND id > $2 AND created_by = $4 \
                 ORDER BY id LIMIT $3"
            )
        };
        let mut statement = sqlx::query_as(&query)
            .bind(ws)
            .bind(after.unwrap_or(""))
            .bind(i64::from(limit) + 1);
        if !see_all {
            statement = statement.bind(&actor.user.id);
        }
        let mut items: Vec<R> = statement.fetch_all(read.conn()).await.map_err(internal)?;
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let next_cursor = if more {
            items.last().map(|item| item.id().to_owned())
        } else {
            None
        };
        read.finish(Page { items, next_cursor }).await
    }

    /// One resource, if the actor may see it, and the log position it is consistent with.
    pub async fn get<R: Resource>(
        &self,
        actor: &Actor,
        ws: &str,
        id: &str,
    ) -> Result<Snapshot<R>, AppError> {
        let mut read = self.read_snapshot().await?;
        check_access(read.conn(), actor, ws).await?;
        let resource = load::<R>(read.conn(), actor, ws, id).await?;
        read.finish(resource).await
    }

    /// Creates a resource.
    pub async fn create<R: Resource>(
        &self,
        actor: &Actor,
        ws: &str,
        body: R::Create,
    ) -> Result<R, AppError> {
        Ok(self.create_written::<R>(actor, ws, body).await?.resource)
    }

    /// [`App::create`], with the new resource's JSON.
    ///
    /// # Errors
    ///
    /// As [`App::create`].
    pub async fn create_written<R: Resource>(
        &self,
        actor: &Actor,
        ws: &str,
        body: R::Create,
    ) -> Result<Written<R>, AppError> {
        let actor = actor.clone();
        let ws = ws.to_owned();
        self.transact(Scope::workspace(&ws), move |change| {
            Box::pin(async move {
                let actor = &actor;
                let ws = ws.as_str();
                // The id is made inside the change, which runs in commit order (one writer, or
                // the workspace's turn), so ids follow commit order and a client paging with
                // `after` cannot miss an item committed after it read a later one.
                let base = Base {
                    id: model::new_id(),
                    workspace_id: ws.to_owned(),
                    created_by: actor.user.id.clone(),
                    now: model::now(),
                };
                let resource = R::create(base, body)?;
                check_access(&mut change.tx, actor, ws).await?;
                resource
                    .save()
                    .execute(&mut change.tx)
                    .await
                    .map_err(internal)?;
                let json = emit_returning_data(
                    change,
                    actor,
                    About {
                        kind: R::KIND,
                        action: Action::Created,
                        ws,
                        author: resource.author(),
                        concerns: None,
                    },
                    &resource,
                )?;
                Ok(Written { resource, json })
            })
        })
        .await
    }

    /// Changes a resource the actor may see.
    pub async fn update<R: Resource>(
        &self,
        actor: &Actor,
        ws: &str,
        id: &str,
        patch: R::Patch,
    ) -> Result<R, AppError> {
        Ok(self
            .update_written::<R>(actor, ws, id, patch)
            .await?
            .resource)
    }

    /// [`App::update`], with the changed resource's JSON.
    ///
    /// # Errors
    ///
    /// As [`App::update`].
    pub async fn update_written<R: Resource>(
        &self,
        actor: &Actor,
        ws: &str,
        id: &str,
        patch: R::Patch,
    ) -> Result<Written<R>, AppError> {
        let actor = actor.clone();
        let ws = ws.to_owned();
        let id = id.to_owned();
        self.transact(Scope::workspace(&ws), move |change| {
            Box::pin(async move {
                let actor = &actor;
                let ws = ws.as_str();
                let id = id.as_str();
                check_access(&mut change.tx, actor, ws).await?;
                let mut resource = load::<R>(&mut change.tx, actor, ws, id).await?;
                resource.apply(patch, model::now())?;
                resource
                    .save()
                    .execute(&mut change.tx)
                    .await
                    .map_err(internal)?;
                let json = emit_returning_data(
                    change,
                    actor,
                    About {
                        kind: R::KIND,
                        action: Action::Updated,
                        ws,
                        author: resource.author(),
                        concerns: None,
                    },
                    &resource,
                )?;
                Ok(Written { resource, json })
            })
        })
        .await
    }

    /// Deletes a resource the actor may see; its event carries the last state.
    pub async fn delete<R: Resource>(
        &self,
        actor: &Actor,
        ws: &str,
        id: &str,
    ) -> Result<(), AppError> {
        let actor = actor.clone();
        let ws = ws.to_owned();
        let id = id.to_owned();
        self.transact(Scope::workspace(&ws), move |change| {
            Box::pin(async move {
                let actor = &actor;
                let ws = ws.as_str();
                let id = id.as_str();
                check_access(&mut change.tx, actor, ws).await?;
                let resource = load::<R>(&mut change.tx, actor, ws, id).await?;
                resource.check_delete()?;
                sqlx::query(&format!("DELETE FROM {} WHERE id = $1", table(R::KIND)))
                    .bind(id)
                    .execute(&mut change.tx)
                    .await
                    .map_err(internal)?;
                emit(
                    change,
                    actor,
                    About {
                        kind: R::KIND,
                        action: Action::Deleted,
                        ws,
                        author: resource.author(),
                        concerns: None,
                    },
                    &resource,
                )?;
                Ok(())
            })
        })
        .await
    }
}

/// Loads one resource of workspace `ws` that the actor may see (`NotFound` otherwise, also for a
/// resource of another workspace).
async fn load<R: Resource>(
    conn: impl Executor<'_, Database = Any>,
    actor: &Actor,
    ws: &str,
    id: &str,
) -> Result<R, AppError> {
    let what = R::KIND.as_str().trim_end_matches('s');
    let resource: Option<R> = sqlx::query_as(&format!(
        "SELECT * FROM {} WHERE id = $1 AND workspace_id = $2",
        table(R::KIND)
    ))
    .bind(id)
    .bind(ws)
    .fetch_optional(conn)
    .await
    .map_err(internal)?;
    match resource {
        Some(r) if !R::PRIVATE || actor.may_read_note(r.author()) => Ok(r),
        _ => Err(not_found(what)),
    }
}
