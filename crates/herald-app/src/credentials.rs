//! Changes to what lets a user in: revoking an API token, changing a password, and
//! deactivating (or reactivating) a user.
//!
//! Each runs as a [`Change`](crate::Change): the database change and a control event
//! in one transaction. The event reaches no stream (`policy::CONTROL_TOPIC`); it exists for
//! its closing topics (`Update::closes`), so that every node ends the streams the change
//! made wrong right after fanning it out — the token's streams, or every stream of the user.
//! A stream registered while the change landed re-checks its credentials and ends itself
//! (`streams.rs`), and a request or reconnection after the commit is refused as `Unauthenticated`.
//!
//! `herald user deactivate` makes the same change from outside a server: its event waits in
//! the outbox, and the outbox relay of the running nodes publishes it within a second.

use crate::{Conn, Scope};
use herald_hub::Update;
use serde_json::json;

use crate::{
    Accounts, App, Change,
    accounts::{NewTokenSecret, TokenSpec, parse_ttl},
    db::Writer,
    envelope::Envelope,
    error::{AppError, internal},
    model::{self, Account, NewToken, NewUser, TokenInfo, User},
    policy::{self, Actor, not_found},
    snapshot::Snapshot,
    store_event,
};

impl App {
    /// Every user, for any signed-in actor (the people one may add to a workspace).
    ///
    /// # Errors
    ///
    /// When the database fails.
    pub async fn users(&self, _actor: &Actor) -> Result<Snapshot<Vec<Account>>, AppError> {
        let mut read = self.read_snapshot().await?;
        let users = crate::accounts::users_on(read.conn()).await?;
        read.finish(users).await
    }

    /// The actor's own account, read again, with the log position it is consistent with.
    ///
    /// # Errors
    ///
    /// `Unauthenticated` when the user is gone or inactive; when the database fails.
    pub async fn me(&self, actor: &Actor) -> Result<Snapshot<User>, AppError> {
        let mut read = self.read_snapshot().await?;
        let user: Option<User> =
            sqlx::query_as("SELECT id, email, name, role FROM users WHERE id = $1 AND active")
                .bind(&actor.user.id)
                .fetch_optional(read.conn())
                .await
                .map_err(internal)?;
        let user = user.ok_or_else(|| {
            AppError::unauthenticated("this account is no longer active; sign in again")
        })?;
        read.finish(user).await
    }

    /// Creates a user; admins only.
    ///
    /// # Errors
    ///
    /// `Forbidden` for anyone else; `Invalid` for bad fields; `Conflict` when the email is taken.
    pub async fn create_user(&self, actor: &Actor, new: NewUser) -> Result<User, AppError> {
        if !actor.is_admin() {
            return Err(AppError::forbidden("only admins may create users"));
        }
        self.accounts().add_user(new).await
    }

    /// The API tokens of `user` (the actor's own by default; someone else's for admins),
    /// that have not expired.
    ///
    /// # Errors
    ///
    /// `Invalid` for a bad user id, `Forbidden` for someone else's tokens unless the actor
    /// is an admin.
    pub async fn tokens(
        &self,
        actor: &Actor,
        user: Option<&str>,
    ) -> Result<Snapshot<Vec<TokenInfo>>, AppError> {
        let user = match user {
            Some(user) => {
                let user = model::id("user", user)?;
                if user != actor.user.id && !actor.is_admin() {
                    return Err(AppError::forbidden("only admins may list others' tokens"));
                }
                user
            }
            None => actor.user.id.clone(),
        };
        let mut read = self.read_snapshot().await?;
        let tokens = crate::accounts::tokens_on(read.conn(), &user).await?;
        read.finish(tokens).await
    }

    /// Makes an API token for the actor, who must be signed in with a session: a token
    /// that could make tokens would outlive its own revocation or expiry. Only admins make
    /// tokens that notify.
    ///
    /// # Errors
    ///
    /// `Forbidden` from a token, or for a notifying token by a non-admin; `Invalid` for a
    /// bad name or lifetime; `Conflict` when the actor holds too many tokens.
    pub async fn create_token(
        &self,
        actor: &Actor,
        new: NewToken,
    ) -> Result<NewTokenSecret, AppError> {
        if actor.session.is_none() {
            return Err(AppError::forbidden(
                "API tokens are made from a signed-in session, or with `herald user token`",
            ));
        }
        if new.notify && !actor.is_admin() {
            return Err(AppError::forbidden(
                "only admins may make tokens that notify",
            ));
        }
        self.require_alive(actor).await?;
        let ttl = new.ttl.as_deref().map(parse_ttl).transpose()?;
        let spec = TokenSpec {
            name: new.name,
            can_notify: new.notify,
            ttl,
        };
        self.accounts().add_token(&actor.user.id, spec).await
    }

    /// Revokes API token `id`: the actor's own, or anyone's for an admin. Streams opened
    /// with it end on every node.
    ///
    /// # Errors
    ///
    /// `NotFound` when there is no such token, or it belongs to someone else and the actor is not
    /// an admin.
    pub async fn revoke_token(&self, actor: &Actor, id: &str) -> Result<(), AppError> {
        let actor = actor.clone();
        let id = id.to_owned();
        self.transact_ending_credentials(Scope::user(&actor.user.id), move |change| {
            Box::pin(async move {
                let actor = &actor;
                let id = id.as_str();
                let owner: Option<String> =
                    sqlx::query_scalar("SELECT user_id FROM api_tokens WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&mut change.tx)
                        .await
                        .map_err(internal)?;
                match owner {
                    Some(owner) if owner == actor.user.id || actor.is_admin() => {}
                    _ => return Err(not_found("token")),
                }
                sqlx::query("DELETE FROM api_tokens WHERE id = $1")
                    .bind(id)
                    .execute(&mut change.tx)
                    .await
                    .map_err(internal)?;
                emit_control(
                    change,
                    "tokens:revoked",
                    actor,
                    vec![policy::token_topic(id)],
                )?;
                Ok(())
            })
        })
        .await
    }

    /// Refuses an actor whose session or token no longer exists, or whose user was
    /// deactivated, read from the database: an authentication reused from `auth_cache`
    /// may be up to a second old on a node that has not yet seen the change that ended
    /// it, and what makes or replaces a credential must not outlive that change.
    async fn require_alive(&self, actor: &Actor) -> Result<(), AppError> {
        if self.credentials_alive(actor).await? {
            Ok(())
        } else {
            Err(crate::accounts::unknown_credentials())
        }
    }

    /// Changes the actor's password after checking the current one. Every other session of
    /// the user is deleted, and every stream of the user ends on every node; the session
    /// making the request stays (its streams reconnect at once), and so do API tokens.
    ///
    /// # Errors
    ///
    /// `Invalid` when the new password is too short or too long; `Forbidden` when `current`
    /// is wrong.
    pub async fn change_password(
        &self,
        actor: &Actor,
        current: String,
        new: String,
    ) -> Result<(), AppError> {
        model::password("the new password", &new)?;
        self.require_alive(actor).await?;
        if !self
            .accounts()
            .password_matches(&actor.user.id, current)
            .await?
        {
            return Err(AppError::forbidden("the current password is not right"));
        }
        let hash = crate::passwords::hash_password(new)
            .await
            .map_err(internal)?;
        let actor = actor.clone();
        self.transact_ending_credentials(Scope::user(&actor.user.id), move |change| {
            Box::pin(async move {
                let actor = &actor;
                sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
                    .bind(hash)
                    .bind(&actor.user.id)
                    .execute(&mut change.tx)
                    .await
                    .map_err(internal)?;
                // The session of this request stays; an empty hash matches none.
                sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND token_hash <> $2")
                    .bind(&actor.user.id)
                    .bind(actor.session.as_deref().unwrap_or_default())
                    .execute(&mut change.tx)
                    .await
                    .map_err(internal)?;
                emit_control(
                    change,
                    "passwords:changed",
                    actor,
                    vec![policy::user_topic(&actor.user.id)],
                )?;
                Ok(())
            })
        })
        .await
    }

    /// Deactivates (`active: false`) or reactivates user `id`; admins only. A deactivated
    /// user cannot sign in, their sessions are deleted, their API tokens are refused until
    /// they are reactivated, and their streams end on every node.
    ///
    /// # Errors
    ///
    /// `Forbidden` for non-admins; `NotFound` when there is no such user; `Conflict` when
    /// an admin deactivates themselves (nobody could undo it if they were the last).
    pub async fn set_active(
        &self,
        actor: &Actor,
        id: &str,
        active: bool,
    ) -> Result<Account, AppError> {
        if !actor.is_admin() {
            return Err(AppError::forbidden(
                "only admins may deactivate or activate users",
            ));
        }
        if !active && id == actor.user.id {
            return Err(AppError::conflict(
                "you cannot deactivate yourself; ask another admin",
            ));
        }
        let actor = actor.clone();
        let id = id.to_owned();
        self.transact_ending_credentials(Scope::user(&id), move |change| {
            Box::pin(async move {
                let actor = &actor;
                let id = id.as_str();
                let user = switch_active(&mut change.tx, id, active).await?;
                if !active {
                    emit_control(
                        change,
                        "users:deactivated",
                        actor,
                        vec![policy::user_topic(id)],
                    )?;
                }
                Ok(Account { user, active })
            })
        })
        .await
    }
}

impl Accounts {
    /// Deactivates or reactivates the user with `email` from outside a server (`herald user
    /// deactivate`): the change `App::set_active` makes, under the same write lock (the
    /// user's key). Its
    /// control event waits in the outbox for the relay of the running nodes, which publishes it
    /// within a second and so ends the user's streams on every node.
    ///
    /// # Errors
    ///
    /// `NotFound` when there is no such user; when the database fails.
    pub async fn set_active_by_email(
        &self,
        email: &str,
        active: bool,
    ) -> Result<Account, AppError> {
        let id: Option<String> = sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
            .bind(model::normalize_email(email))
            .fetch_optional(&self.pool)
            .await
            .map_err(internal)?;
        let id = id.ok_or_else(|| AppError::not_found(format!("no user with email {email:?}")))?;
        // A user's id never changes: the lock of its key, taken before the transaction,
        // orders this change with the user's others.
        let scope = Scope::user(&id);
        let mut writer = Writer::acquire(&self.locks, &self.pool, &self.tasks, scope.keys())
            .await
            .map_err(internal)?;
        writer.begin().await.map_err(internal)?;
        let user = switch_active(&mut Conn::Pool(&mut writer), &id, active).await?;
        if !active {
            let uid = model::new_id();
            let event_type = "users:deactivated";
            let envelope = json!({
                "id": uid,
                "type": event_type,
                "user": null,
                "timestamp": model::now(),
            });
            store_event(
                &mut writer,
                &Update {
                    topics: vec![policy::CONTROL_TOPIC.to_owned()],
                    data: envelope.to_string(),
                    private: true,
                    id: Some(uid),
                    event_type: Some(event_type.to_owned()),
                    retry: None,
                    closes: vec![policy::user_topic(&id)],
                },
                &scope.stored(),
            )
            .await?;
        }
        writer.commit().await.map_err(internal)?;
        writer.release().await;
        self.forget_authentications();
        Ok(Account { user, active })
    }
}

/// Sets user `id`'s `active` flag on `conn`, inside a change; deactivation also deletes the
/// user's sessions. Returns the user.
async fn switch_active(conn: &mut Conn<'_>, id: &str, active: bool) -> Result<User, AppError> {
    let user: Option<User> =
        sqlx::query_as("SELECT id, email, name, role FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(internal)?;
    let user = user.ok_or_else(|| not_found("user"))?;
    sqlx::query("UPDATE users SET active = $1 WHERE id = $2")
        .bind(active)
        .bind(id)
        .execute(&mut *conn)
        .await
        .map_err(internal)?;
    if !active {
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(id)
            .execute(&mut *conn)
            .await
            .map_err(internal)?;
    }
    Ok(user)
}

/// Emits a control event of `event_type` by `actor`, which ends the streams following
/// `closes`.
fn emit_control(
    change: &mut Change<'_>,
    event_type: &str,
    actor: &Actor,
    closes: Vec<String>,
) -> Result<String, AppError> {
    let envelope: Envelope<'_> = Envelope::new(event_type, actor);
    change.emit(vec![policy::CONTROL_TOPIC.to_owned()], closes, &envelope)
}
