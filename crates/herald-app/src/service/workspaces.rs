//! Workspaces and their members: reads, and changes with their events.

use crate::Scope;
use crate::{
    App,
    error::{AppError, internal},
    model::{self, Channel, Member, MemberRole, NewMember, User, Workspace, WorkspaceView},
    policy::{Action, Actor, Kind, not_found},
    snapshot::Snapshot,
};

use super::{
    About, Resource as _, WORKSPACE_COLUMNS, WorkspaceRow, access, check_access, emit, joined_at,
};

impl App {
    /// The workspaces the actor may read: its memberships, or every one for an admin; and
    /// the log position they are consistent with.
    pub async fn workspaces(
        &self,
        actor: &Actor,
    ) -> Result<Snapshot<Vec<WorkspaceView>>, AppError> {
        let mut read = self.read_snapshot().await?;
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
        .fetch_all(read.conn())
        .await
        .map_err(internal)?;
        let views = rows
            .into_iter()
            .map(|row| WorkspaceView {
                workspace: row.workspace,
                role: row.role,
            })
            .collect();
        read.finish(views).await
    }

    /// One workspace, with the actor's role, and the log position it is consistent with.
    pub async fn workspace(
        &self,
        actor: &Actor,
        ws: &str,
    ) -> Result<Snapshot<WorkspaceView>, AppError> {
        let mut read = self.read_snapshot().await?;
        let access = access(read.conn(), actor, ws).await?;
        read.finish(WorkspaceView {
            workspace: access.workspace,
            role: access.role,
        })
        .await
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
        let actor = actor.clone();
        self.transact(Scope::user(&actor.user.id).and_workspace(&workspace.id), move |change| { Box::pin(async move {
        let actor = &actor;
        sqlx::query(
            "INSERT INTO workspaces (id, name, created_by, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&workspace.id)
        .bind(&workspace.name)
        .bind(&workspace.created_by)
        .bind(&workspace.created_at)
        .bind(&workspace.updated_at)
        .execute(&mut change.tx)
        .await
        .map_err(internal)?;
        sqlx::query(
            "INSERT INTO members (workspace_id, user_id, role, added_at) VALUES ($1, $2, 'owner', $3)",
        )
        .bind(&workspace.id)
        .bind(&actor.user.id)
        .bind(&now)
        .execute(&mut change.tx)
        .await
        .map_err(internal)?;
        general
            .save()
            .execute(&mut change.tx)
            .await
            .map_err(internal)?;
        let ws = workspace.id.clone();
        let me = Some(actor.user.id.as_str());
        let joined = emit(
            change,
            actor,
            About {
                kind: Kind::Workspaces,
                action: Action::Created,
                ws: &ws,
                author: &actor.user.id,
                concerns: me,
            },
            &workspace,
        )?;
        joined_at(change, &ws, &actor.user.id, &joined).await?;
        emit(
            change,
            actor,
            About {
                kind: Kind::Channels,
                action: Action::Created,
                ws: &ws,
                author: &actor.user.id,
                concerns: None,
            },
            &general,
        )?;
        Ok(WorkspaceView {
            workspace,
            role: Some(MemberRole::Owner),
        })        })}).await
    }

    /// Renames a workspace; owners and admins.
    pub async fn rename_workspace(
        &self,
        actor: &Actor,
        ws: &str,
        name: String,
    ) -> Result<WorkspaceView, AppError> {
        model::text("name", &name, model::MAX_NAME)?;
        let actor = actor.clone();
        let ws = ws.to_owned();
        self.transact(Scope::workspace(&ws), move |change| {
            Box::pin(async move {
                let actor = &actor;
                let ws = ws.as_str();
                let access = access(&mut change.tx, actor, ws).await?;
                access.require_owner("rename it")?;
                let mut workspace = access.workspace;
                workspace.name = name;
                workspace.updated_at = model::now();
                sqlx::query("UPDATE workspaces SET name = $1, updated_at = $2 WHERE id = $3")
                    .bind(&workspace.name)
                    .bind(&workspace.updated_at)
                    .bind(ws)
                    .execute(&mut change.tx)
                    .await
                    .map_err(internal)?;
                emit(
                    change,
                    actor,
                    About {
                        kind: Kind::Workspaces,
                        action: Action::Updated,
                        ws,
                        author: &actor.user.id,
                        concerns: None,
                    },
                    &workspace,
                )?;
                Ok(WorkspaceView {
                    workspace,
                    role: access.role,
                })
            })
        })
        .await
    }

    /// Deletes a workspace and everything in it; owners and admins.
    pub async fn delete_workspace(&self, actor: &Actor, ws: &str) -> Result<(), AppError> {
        let actor = actor.clone();
        let ws = ws.to_owned();
        self.transact(Scope::workspace(&ws), move |change| {
            Box::pin(async move {
                let actor = &actor;
                let ws = ws.as_str();
                let access = access(&mut change.tx, actor, ws).await?;
                access.require_owner("delete it")?;
                sqlx::query("DELETE FROM workspaces WHERE id = $1")
                    .bind(ws)
                    .execute(&mut change.tx)
                    .await
                    .map_err(internal)?;
                let last = access.workspace;
                emit(
                    change,
                    actor,
                    About {
                        kind: Kind::Workspaces,
                        action: Action::Deleted,
                        ws,
                        author: &actor.user.id,
                        concerns: None,
                    },
                    &last,
                )?;
                Ok(())
            })
        })
        .await
    }

    /// The members of a workspace, and the log position they are consistent with.
    pub async fn members(
        &self,
        actor: &Actor,
        ws: &str,
    ) -> Result<Snapshot<Vec<Member>>, AppError> {
        let mut read = self.read_snapshot().await?;
        check_access(read.conn(), actor, ws).await?;
        let members = sqlx::query_as(
            "SELECT m.workspace_id, m.user_id, u.name, u.email, m.role, m.added_at \
             FROM members m JOIN users u ON u.id = m.user_id WHERE m.workspace_id = $1 \
             ORDER BY m.added_at, u.name",
        )
        .bind(ws)
        .fetch_all(read.conn())
        .await
        .map_err(internal)?;
        read.finish(members).await
    }

    /// Adds a member; owners and admins.
    pub async fn add_member(
        &self,
        actor: &Actor,
        ws: &str,
        new: NewMember,
    ) -> Result<Member, AppError> {
        let user_id = model::id("userId", &new.user_id)?;
        let actor = actor.clone();
        let ws = ws.to_owned();
        self.transact(Scope::workspace(&ws).and_user(&user_id), move |change| {
            Box::pin(async move {
                let actor = &actor;
                let ws = ws.as_str();
                access(&mut change.tx, actor, ws)
                    .await?
                    .require_owner("add members")?;
                let user: Option<User> =
                    sqlx::query_as("SELECT id, email, name, role FROM users WHERE id = $1")
                        .bind(&user_id)
                        .fetch_optional(&mut change.tx)
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
        .execute(&mut change.tx)
        .await
        .map_err(internal)?;
                if inserted.rows_affected() == 0 {
                    return Err(AppError::conflict("that user is already a member"));
                }
                let concerns = Some(member.user_id.as_str());
                let joined = emit(
                    change,
                    actor,
                    About {
                        kind: Kind::Members,
                        action: Action::Added,
                        ws,
                        author: &actor.user.id,
                        concerns,
                    },
                    &member,
                )?;
                joined_at(change, ws, &member.user_id, &joined).await?;
                Ok(member)
            })
        })
        .await
    }

    /// Removes a member; owners and admins, or members leaving. The last owner stays.
    pub async fn remove_member(
        &self,
        actor: &Actor,
        ws: &str,
        user_id: &str,
    ) -> Result<(), AppError> {
        let user_id = model::id("userId", user_id)?;
        let actor = actor.clone();
        let ws = ws.to_owned();
        self.transact(Scope::workspace(&ws).and_user(&user_id), move |change| {
            Box::pin(async move {
                let actor = &actor;
                let ws = ws.as_str();
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
                .fetch_optional(&mut change.tx)
                .await
                .map_err(internal)?;
                let member = member.ok_or_else(|| not_found("member"))?;
                if member.role == MemberRole::Owner {
                    let owners: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM members WHERE workspace_id = $1 AND role = 'owner'",
                    )
                    .bind(ws)
                    .fetch_one(&mut change.tx)
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
                    .execute(&mut change.tx)
                    .await
                    .map_err(internal)?;
                let concerns = Some(user_id.as_str());
                emit(
                    change,
                    actor,
                    About {
                        kind: Kind::Members,
                        action: Action::Removed,
                        ws,
                        author: &actor.user.id,
                        concerns,
                    },
                    &member,
                )?;
                Ok(())
            })
        })
        .await
    }
}
