//! Messages that change no resource: notifications to a user, broadcasts to a workspace,
//! and logging out.

use crate::{
    App, Scope,
    envelope::Envelope,
    error::{AppError, internal},
    model,
    policy::{self, Actor, Kind, not_found},
};

use super::access;

impl App {
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
        let actor = actor.clone();
        self.transact(Scope::user(&user_id), move |change| {
            Box::pin(async move {
                let actor = &actor;
                let exists: Option<String> =
                    sqlx::query_scalar("SELECT id FROM users WHERE id = $1")
                        .bind(&user_id)
                        .fetch_optional(&mut change.tx)
                        .await
                        .map_err(internal)?;
                if exists.is_none() {
                    return Err(not_found("user"));
                }
                let mut envelope = Envelope::new("notification", actor);
                envelope.user_id = Some(&user_id);
                envelope.data = Some(&data);
                let id =
                    change.emit(policy::route_notification(&user_id), Vec::new(), &envelope)?;
                Ok(id)
            })
        })
        .await
    }

    /// Sends `data` to every member of a workspace; its owners, admins, `--notify` tokens.
    pub async fn broadcast(
        &self,
        actor: &Actor,
        ws: &str,
        data: serde_json::Value,
    ) -> Result<String, AppError> {
        let actor = actor.clone();
        let ws = ws.to_owned();
        self.transact(Scope::workspace(&ws), move |change| {
            Box::pin(async move {
                let actor = &actor;
                let ws = ws.as_str();
                if actor.can_notify {
                    // A token made to notify may broadcast to any workspace that exists.
                    let exists: Option<String> =
                        sqlx::query_scalar("SELECT id FROM workspaces WHERE id = $1")
                            .bind(ws)
                            .fetch_optional(&mut change.tx)
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
                let mut envelope = Envelope::new("announcement", actor);
                envelope.workspace_id = Some(ws);
                envelope.data = Some(&data);
                let topics = policy::route(Kind::Announcements, ws, &actor.user.id, None);
                let id = change.emit(topics, Vec::new(), &envelope)?;
                Ok(id)
            })
        })
        .await
    }
}

impl App {
    /// Ends the actor's session, and with it every stream it opened, on every node: the
    /// session's row goes, and a control event ends the streams following its topic.
    pub async fn logout(&self, actor: &Actor) -> Result<(), AppError> {
        let Some(session) = &actor.session else {
            return Ok(());
        };
        let actor = actor.clone();
        let session = session.clone();
        self.transact_ending_credentials(Scope::user(&actor.user.id), move |change| {
            Box::pin(async move {
                let actor = &actor;
                let session = &session;
                sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
                    .bind(session)
                    .execute(&mut change.tx)
                    .await
                    .map_err(internal)?;
                let envelope: Envelope<'_> = Envelope::new("sessions:ended", actor);
                change.emit(
                    vec![policy::CONTROL_TOPIC.to_owned()],
                    vec![policy::session_topic(session)],
                    &envelope,
                )?;
                Ok(())
            })
        })
        .await
    }
}
