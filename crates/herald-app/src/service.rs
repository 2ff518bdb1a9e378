//! The service layer: every read applies the policy, and every change runs in one
//! transaction with the event it emits (see [`Change`]). Handlers in `http` only parse and
//! call these.

use serde::{Serialize, de::DeserializeOwned};
use serde_json::json;
use sqlx::{
    Any, AnyConnection, FromRow,
    any::{AnyArguments, AnyRow},
    query::Query,
};

use crate::{
    App, Change,
    error::{AppError, internal},
    model::{
        self, Channel, ChannelBody, Member, MemberRole, NewMember, NewTodo, Note, NoteBody, Todo,
        TodoPatch, User, Workspace, WorkspaceView,
    },
    policy::{self, Access, Action, Actor, Kind, not_found},
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

/// What every new resource starts with.
#[derive(Debug)]
pub struct Base {
    id: String,
    workspace_id: String,
    created_by: String,
    now: String,
}

/// A collection under `/api/workspaces/{ws}/…`: todos, channels or notes.
pub trait Resource: Serialize + for<'r> FromRow<'r, AnyRow> + Send + Unpin + 'static {
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

/// The envelope of a workspace event (`docs/app-api.md`); `id` is filled in by
/// [`Change::emit`].
fn envelope(
    kind: Kind,
    action: Action,
    ws: &str,
    data: &impl Serialize,
    actor: &Actor,
) -> serde_json::Value {
    json!({
        "id": null,
        "type": format!("{}:{}", kind.as_str(), action.as_str()),
        "action": action.as_str(),
        "resourceType": kind.as_str(),
        "workspaceId": ws,
        "data": data,
        "user": actor.envelope(),
        "timestamp": model::now(),
    })
}

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

/// Emits `kind:action` about `data`, routed by the policy.
async fn emit(
    change: &mut Change,
    actor: &Actor,
    about: About<'_>,
    data: &impl Serialize,
) -> Result<String, AppError> {
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
    change
        .emit(
            &event_type,
            topics,
            closes,
            envelope(kind, action, ws, data, actor),
        )
        .await
}

/// Records the event that gave `user` access to `ws`; replays do not reach before it.
async fn joined_at(change: &mut Change, ws: &str, user: &str, event: &str) -> Result<(), AppError> {
    sqlx::query("UPDATE members SET joined_event = $1 WHERE workspace_id = $2 AND user_id = $3")
        .bind(event)
        .bind(ws)
        .bind(user)
        .execute(&mut *change.tx)
        .await
        .map_err(internal)?;
    Ok(())
}

const WORKSPACE_COLUMNS: &str = "w.id, w.name, w.created_by, w.created_at, w.updated_at";

/// The actor's access to workspace `ws`, read on `conn` (inside a change's transaction for
/// writes, so the check and the write see the same state).
async fn access(conn: &mut AnyConnection, actor: &Actor, ws: &str) -> Result<Access, AppError> {
    let row: Option<WorkspaceRow> = sqlx::query_as(&format!(
        "SELECT {WORKSPACE_COLUMNS}, m.role FROM workspaces w LEFT JOIN members m \
         ON m.workspace_id = w.id AND m.user_id = $1 WHERE w.id = $2"
    ))
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
    /// 404 without it.
    pub async fn read_access(&self, actor: &Actor, ws: &str) -> Result<Access, AppError> {
        let mut conn = self.pool().acquire().await.map_err(internal)?;
        access(&mut conn, actor, ws).await
    }

    /// The workspaces the actor may read: its memberships, or every one for an admin.
    pub async fn workspaces(&self, actor: &Actor) -> Result<Vec<WorkspaceView>, AppError> {
        let join = if actor.is_admin() {
            "LEFT JOIN"
        } else {
            "JOIN"
        };
        let rows: Vec<WorkspaceRow> = sqlx::query_as(&format!(
            "SELECT {WORKSPACE_COLUMNS}, m.role FROM workspaces w {join} members m \
             ON m.workspace_id = w.id AND m.user_id = $1 ORDER BY w.id"
        ))
        .bind(&actor.user.id)
        .fetch_all(self.pool())
        .await
        .map_err(internal)?;
        Ok(rows
            .into_iter()
            .map(|row| WorkspaceView {
                workspace: row.workspace,
                role: row.role,
            })
            .collect())
    }

    /// One workspace, with the actor's role.
    pub async fn workspace(&self, actor: &Actor, ws: &str) -> Result<WorkspaceView, AppError> {
        let access = self.read_access(actor, ws).await?;
        Ok(WorkspaceView {
            workspace: access.workspace,
            role: access.role,
        })
    }

    /// Creates a workspace owned by the actor, with its `general` channel.
    pub async fn create_workspace(
        &self,
        actor: &Actor,
        name: String,
    ) -> Result<WorkspaceView, AppError> {
        model::text("name", &name, model::MAX_NAME)?;
        let now = model::now();
        let workspace = Workspace {
            id: model::new_id(),
            name,
            created_by: actor.user.id.clone(),
            created_at: now.clone(),
            updated_at: now.clone(),
        };
        let general = Channel {
            id: model::new_id(),
            workspace_id: workspace.id.clone(),
            name: "general".to_owned(),
            is_default: true,
            created_by: actor.user.id.clone(),
            created_at: now.clone(),
            updated_at: now.clone(),
        };
        let mut change = self.change().await?;
        sqlx::query(
            "INSERT INTO workspaces (id, name, created_by, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&workspace.id)
        .bind(&workspace.name)
        .bind(&workspace.created_by)
        .bind(&workspace.created_at)
        .bind(&workspace.updated_at)
        .execute(&mut *change.tx)
        .await
        .map_err(internal)?;
        sqlx::query(
            "INSERT INTO members (workspace_id, user_id, role, added_at) VALUES ($1, $2, 'owner', $3)",
        )
        .bind(&workspace.id)
        .bind(&actor.user.id)
        .bind(&now)
        .execute(&mut *change.tx)
        .await
        .map_err(internal)?;
        general
            .save()
            .execute(&mut *change.tx)
            .await
            .map_err(internal)?;
        let ws = workspace.id.clone();
        let me = Some(actor.user.id.as_str());
        let joined = emit(
            &mut change,
            actor,
            About {
                kind: Kind::Workspaces,
                action: Action::Created,
                ws: &ws,
                author: &actor.user.id,
                concerns: me,
            },
            &workspace,
        )
        .await?;
        joined_at(&mut change, &ws, &actor.user.id, &joined).await?;
        emit(
            &mut change,
            actor,
            About {
                kind: Kind::Channels,
                action: Action::Created,
                ws: &ws,
                author: &actor.user.id,
                concerns: None,
            },
            &general,
        )
        .await?;
        change.commit().await?;
        Ok(WorkspaceView {
            workspace,
            role: Some(MemberRole::Owner),
        })
    }

    /// Renames a workspace; owners and admins.
    pub async fn rename_workspace(
        &self,
        actor: &Actor,
        ws: &str,
        name: String,
    ) -> Result<WorkspaceView, AppError> {
        model::text("name", &name, model::MAX_NAME)?;
        let mut change = self.change().await?;
        let access = access(&mut change.tx, actor, ws).await?;
        access.require_owner("rename it")?;
        let mut workspace = access.workspace;
        workspace.name = name;
        workspace.updated_at = model::now();
        sqlx::query("UPDATE workspaces SET name = $1, updated_at = $2 WHERE id = $3")
            .bind(&workspace.name)
            .bind(&workspace.updated_at)
            .bind(ws)
            .execute(&mut *change.tx)
            .await
            .map_err(internal)?;
        emit(
            &mut change,
            actor,
            About {
                kind: Kind::Workspaces,
                action: Action::Updated,
                ws,
                author: &actor.user.id,
                concerns: None,
            },
            &workspace,
        )
        .await?;
        change.commit().await?;
        Ok(WorkspaceView {
            workspace,
            role: access.role,
        })
    }

    /// Deletes a workspace and everything in it; owners and admins.
    pub async fn delete_workspace(&self, actor: &Actor, ws: &str) -> Result<(), AppError> {
        let mut change = self.change().await?;
        let access = access(&mut change.tx, actor, ws).await?;
        access.require_owner("delete it")?;
        sqlx::query("DELETE FROM workspaces WHERE id = $1")
            .bind(ws)
            .execute(&mut *change.tx)
            .await
            .map_err(internal)?;
        let last = access.workspace;
        emit(
            &mut change,
            actor,
            About {
                kind: Kind::Workspaces,
                action: Action::Deleted,
                ws,
                author: &actor.user.id,
                concerns: None,
            },
            &last,
        )
        .await?;
        change.commit().await?;
        Ok(())
    }

    /// The members of a workspace.
    pub async fn members(&self, actor: &Actor, ws: &str) -> Result<Vec<Member>, AppError> {
        self.read_access(actor, ws).await?;
        sqlx::query_as(
            "SELECT m.workspace_id, m.user_id, u.name, u.email, m.role, m.added_at \
             FROM members m JOIN users u ON u.id = m.user_id WHERE m.workspace_id = $1 \
             ORDER BY m.added_at, u.name",
        )
        .bind(ws)
        .fetch_all(self.pool())
        .await
        .map_err(internal)
    }

    /// Adds a member; owners and admins.
    pub async fn add_member(
        &self,
        actor: &Actor,
        ws: &str,
        new: NewMember,
    ) -> Result<Member, AppError> {
        let user_id = model::id("userId", &new.user_id)?;
        let mut change = self.change().await?;
        access(&mut change.tx, actor, ws)
            .await?
            .require_owner("add members")?;
        let user: Option<User> =
            sqlx::query_as("SELECT id, email, name, role FROM users WHERE id = $1")
                .bind(&user_id)
                .fetch_optional(&mut *change.tx)
                .await
                .map_err(internal)?;
        let user = user.ok_or_else(|| not_found("user"))?;
        let member = Member {
            workspace_id: ws.to_owned(),
            user_id: user.id,
            name: user.name,
            email: user.email,
            role: new.role,
            added_at: model::now(),
        };
        let inserted = sqlx::query(
            "INSERT INTO members (workspace_id, user_id, role, added_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
        )
        .bind(ws)
        .bind(&member.user_id)
        .bind(member.role)
        .bind(&member.added_at)
        .execute(&mut *change.tx)
        .await
        .map_err(internal)?;
        if inserted.rows_affected() == 0 {
            return Err(AppError::conflict("that user is already a member"));
        }
        let concerns = Some(member.user_id.as_str());
        let joined = emit(
            &mut change,
            actor,
            About {
                kind: Kind::Members,
                action: Action::Added,
                ws,
                author: &actor.user.id,
                concerns,
            },
            &member,
        )
        .await?;
        joined_at(&mut change, ws, &member.user_id, &joined).await?;
        change.commit().await?;
        Ok(member)
    }

    /// Removes a member; owners and admins, or members leaving. The last owner stays.
    pub async fn remove_member(
        &self,
        actor: &Actor,
        ws: &str,
        user_id: &str,
    ) -> Result<(), AppError> {
        let user_id = model::id("userId", user_id)?;
        let mut change = self.change().await?;
        let access = access(&mut change.tx, actor, ws).await?;
        if user_id != actor.user.id {
            access.require_owner("remove members")?;
        }
        let member: Option<Member> = sqlx::query_as(
            "SELECT m.workspace_id, m.user_id, u.name, u.email, m.role, m.added_at \
             FROM members m JOIN users u ON u.id = m.user_id \
             WHERE m.workspace_id = $1 AND m.user_id = $2",
        )
        .bind(ws)
        .bind(&user_id)
        .fetch_optional(&mut *change.tx)
        .await
        .map_err(internal)?;
        let member = member.ok_or_else(|| not_found("member"))?;
        if member.role == MemberRole::Owner {
            let owners: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM members WHERE workspace_id = $1 AND role = 'owner'",
            )
            .bind(ws)
            .fetch_one(&mut *change.tx)
            .await
            .map_err(internal)?;
            if owners <= 1 {
                return Err(AppError::conflict(
                    "the last owner cannot be removed; make another member owner first, or \
                     delete the workspace",
                ));
            }
        }
        sqlx::query("DELETE FROM members WHERE workspace_id = $1 AND user_id = $2")
            .bind(ws)
            .bind(&user_id)
            .execute(&mut *change.tx)
            .await
            .map_err(internal)?;
        let concerns = Some(user_id.as_str());
        emit(
            &mut change,
            actor,
            About {
                kind: Kind::Members,
                action: Action::Removed,
                ws,
                author: &actor.user.id,
                concerns,
            },
            &member,
        )
        .await?;
        change.commit().await?;
        Ok(())
    }

    /// A page of a collection, as the actor may see it.
    pub async fn list<R: Resource>(
        &self,
        actor: &Actor,
        ws: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page<R>, AppError> {
        self.read_access(actor, ws).await?;
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
        let mut items: Vec<R> = statement.fetch_all(self.pool()).await.map_err(internal)?;
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let next_cursor = if more {
            items.last().map(|item| item.id().to_owned())
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    /// One resource, if the actor may see it.
    pub async fn get<R: Resource>(&self, actor: &Actor, ws: &str, id: &str) -> Result<R, AppError> {
        self.read_access(actor, ws).await?;
        let mut conn = self.pool().acquire().await.map_err(internal)?;
        load::<R>(&mut conn, actor, ws, id).await
    }

    /// Creates a resource.
    pub async fn create<R: Resource>(
        &self,
        actor: &Actor,
        ws: &str,
        body: R::Create,
    ) -> Result<R, AppError> {
        let mut change = self.change().await?;
        // The id is made under the write lock, so ids follow commit order and a client
        // paging with `after` cannot miss an item committed after it read a later one.
        let base = Base {
            id: model::new_id(),
            workspace_id: ws.to_owned(),
            created_by: actor.user.id.clone(),
            now: model::now(),
        };
        let resource = R::create(base, body)?;
        access(&mut change.tx, actor, ws).await?;
        resource
            .save()
            .execute(&mut *change.tx)
            .await
            .map_err(internal)?;
        emit(
            &mut change,
            actor,
            About {
                kind: R::KIND,
                action: Action::Created,
                ws,
                author: resource.author(),
                concerns: None,
            },
            &resource,
        )
        .await?;
        change.commit().await?;
        Ok(resource)
    }

    /// Changes a resource the actor may see.
    pub async fn update<R: Resource>(
        &self,
        actor: &Actor,
        ws: &str,
        id: &str,
        patch: R::Patch,
    ) -> Result<R, AppError> {
        let mut change = self.change().await?;
        access(&mut change.tx, actor, ws).await?;
        let mut resource = load::<R>(&mut change.tx, actor, ws, id).await?;
        resource.apply(patch, model::now())?;
        resource
            .save()
            .execute(&mut *change.tx)
            .await
            .map_err(internal)?;
        emit(
            &mut change,
            actor,
            About {
                kind: R::KIND,
                action: Action::Updated,
                ws,
                author: resource.author(),
                concerns: None,
            },
            &resource,
        )
        .await?;
        change.commit().await?;
        Ok(resource)
    }

    /// Deletes a resource the actor may see; its event carries the last state.
    pub async fn delete<R: Resource>(
        &self,
        actor: &Actor,
        ws: &str,
        id: &str,
    ) -> Result<(), AppError> {
        let mut change = self.change().await?;
        access(&mut change.tx, actor, ws).await?;
        let resource = load::<R>(&mut change.tx, actor, ws, id).await?;
        resource.check_delete()?;
        sqlx::query(&format!("DELETE FROM {} WHERE id = $1", table(R::KIND)))
            .bind(id)
            .execute(&mut *change.tx)
            .await
            .map_err(internal)?;
        emit(
            &mut change,
            actor,
            About {
                kind: R::KIND,
                action: Action::Deleted,
                ws,
                author: resource.author(),
                concerns: None,
            },
            &resource,
        )
        .await?;
        change.commit().await
    }

    /// Sends `data` to one user's streams; admins and `--notify` tokens.
    pub async fn notify(
        &self,
        actor: &Actor,
        user_id: &str,
        data: serde_json::Value,
    ) -> Result<String, AppError> {
        if !actor.is_admin() && !actor.can_notify {
            return Err(AppError::forbidden(
                "only admins and API tokens made with --notify may send notifications",
            ));
        }
        let user_id = model::id("userId", user_id)?;
        let mut change = self.change().await?;
        let exists: Option<String> = sqlx::query_scalar("SELECT id FROM users WHERE id = $1")
            .bind(&user_id)
            .fetch_optional(&mut *change.tx)
            .await
            .map_err(internal)?;
        if exists.is_none() {
            return Err(not_found("user"));
        }
        let envelope = json!({
            "id": null,
            "type": "notification",
            "userId": user_id,
            "data": data,
            "user": actor.envelope(),
            "timestamp": model::now(),
        });
        let id = change
            .emit(
                "notification",
                policy::route_notification(&user_id),
                Vec::new(),
                envelope,
            )
            .await?;
        change.commit().await?;
        Ok(id)
    }

    /// Sends `data` to every member of a workspace; its owners, admins, `--notify` tokens.
    pub async fn broadcast(
        &self,
        actor: &Actor,
        ws: &str,
        data: serde_json::Value,
    ) -> Result<String, AppError> {
        let mut change = self.change().await?;
        if actor.can_notify {
            // A token made to notify may broadcast to any workspace that exists.
            let exists: Option<String> =
                sqlx::query_scalar("SELECT id FROM workspaces WHERE id = $1")
                    .bind(ws)
                    .fetch_optional(&mut *change.tx)
                    .await
                    .map_err(internal)?;
            if exists.is_none() {
                return Err(not_found("workspace"));
            }
        } else {
            access(&mut change.tx, actor, ws)
                .await?
                .require_owner("broadcast")?;
        }
        let envelope = json!({
            "id": null,
            "type": "announcement",
            "workspaceId": ws,
            "data": data,
            "user": actor.envelope(),
            "timestamp": model::now(),
        });
        let topics = policy::route(Kind::Announcements, ws, &actor.user.id, None);
        let id = change
            .emit("announcement", topics, Vec::new(), envelope)
            .await?;
        change.commit().await?;
        Ok(id)
    }
}

/// Loads one resource of workspace `ws` that the actor may see (404 otherwise, also for a
/// resource of another workspace).
async fn load<R: Resource>(
    conn: &mut AnyConnection,
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

impl App {
    /// Ends the actor's session, and with it every stream it opened, on every node: the
    /// session's row goes, and a control event ends the streams following its topic.
    pub async fn logout(&self, actor: &Actor) -> Result<(), AppError> {
        let Some(session) = &actor.session else {
            return Ok(());
        };
        let mut change = self.change().await?;
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(session)
            .execute(&mut *change.tx)
            .await
            .map_err(internal)?;
        let envelope = json!({
            "id": null,
            "type": "sessions:ended",
            "user": actor.envelope(),
            "timestamp": model::now(),
        });
        change
            .emit(
                "sessions:ended",
                vec![policy::CONTROL_TOPIC.to_owned()],
                vec![policy::session_topic(session)],
                envelope,
            )
            .await?;
        change.commit().await
    }
}
