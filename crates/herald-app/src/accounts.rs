//! Accounts: users, browser sessions, API tokens, and the first admin.
//!
//! Session cookies and API tokens are 256 random bits; the database keeps only their
//! SHA-256 (see `passwords`). [`Accounts`] reads and writes them.

use std::sync::Arc;

use sqlx::{AnyConnection, AnyPool};
use tokio_util::task::TaskTracker;

use crate::{
    auth_cache::{self, AuthCache},
    db::{Flag, Locks, Writer},
    error::{AppError, internal},
    model::{self, NewUser, User},
    passwords::{hash_password, random_secret, secret_hash, verify_password},
    policy::Actor,
};

/// The write lock's key that the making of the first admin holds; no change's scope has
/// it (those are `ws:…` and `user:…`).
pub(crate) const BOOTSTRAP_KEY: &str = "bootstrap";

/// Users, sessions and API tokens in the app's database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Accounts {
    pub(crate) pool: AnyPool,
    /// Where the record of an API token's use, and the release of a write lock left
    /// behind, run: tasks that shutdown waits for.
    pub(crate) tasks: TaskTracker,
    /// This process's side of the write locks, shared with the app.
    pub(crate) locks: Locks,
    /// Recent authentications, reused for a second (`auth_cache`).
    pub(crate) recent: Arc<AuthCache>,
}

/// The refusal of a session or token that does not (or no longer) stand for anyone.
pub(crate) fn unknown_credentials() -> AppError {
    AppError::unauthenticated("the session or token is unknown or expired; sign in again")
}

impl Accounts {
    /// The accounts in `pool`; background writes join `tasks`.
    pub fn new(pool: AnyPool, tasks: TaskTracker) -> Self {
        Self {
            pool,
            tasks,
            locks: Locks::default(),
            recent: Arc::default(),
        }
    }

    /// Inserts a user, hashing its password. Its email is stored in lower case.
    ///
    /// # Errors
    ///
    /// `Invalid` for bad fields, `Conflict` when the email is taken (in any case).
    pub async fn add_user(&self, new: NewUser) -> Result<User, AppError> {
        new.validate()?;
        let hash = hash_password(new.password).await?;
        let user = User {
            id: model::new_id(),
            email: model::normalize_email(&new.email),
            name: new.name,
            role: new.role,
        };
        let inserted = sqlx::query(
            "INSERT INTO users (id, email, name, role, password_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (email) DO NOTHING",
        )
        .bind(&user.id)
        .bind(&user.email)
        .bind(&user.name)
        .bind(user.role)
        .bind(hash)
        .bind(model::now())
        .execute(&self.pool)
        .await
        .map_err(internal)?;
        if inserted.rows_affected() == 0 {
            return Err(AppError::conflict(format!(
                "a user with email {:?} already exists",
                user.email
            )));
        }
        Ok(user)
    }

    /// Every user, active or not, by name then email.
    ///
    /// # Errors
    ///
    /// When the database fails.
    pub async fn users(&self) -> Result<Vec<model::Account>, AppError> {
        let mut conn = self.pool.acquire().await.map_err(internal)?;
        users_on(&mut conn).await
    }

    /// Makes an API token for the user with `email`; returns it, the secret shown only this
    /// once.
    ///
    /// # Errors
    ///
    /// `NotFound` when there is no such user; `Invalid` for a bad name; `Conflict` when the
    /// user holds [`MAX_TOKENS_PER_USER`] tokens.
    pub async fn create_token(
        &self,
        email: &str,
        spec: TokenSpec,
    ) -> Result<NewTokenSecret, AppError> {
        let user_id: Option<String> = sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
            .bind(model::normalize_email(email))
            .fetch_optional(&self.pool)
            .await
            .map_err(internal)?;
        let user_id =
            user_id.ok_or_else(|| AppError::not_found(format!("no user with email {email:?}")))?;
        self.add_token(&user_id, spec).await
    }

    /// Makes an API token for the user `user_id`.
    ///
    /// # Errors
    ///
    /// `Invalid` for a bad name; `Conflict` when the user holds [`MAX_TOKENS_PER_USER`] tokens.
    pub async fn add_token(
        &self,
        user_id: &str,
        spec: TokenSpec,
    ) -> Result<NewTokenSecret, AppError> {
        model::text("name", &spec.name, model::MAX_NAME)?;
        let token = format!("{TOKEN_PREFIX}{}", random_secret());
        let id = uuid::Uuid::new_v4().hyphenated().to_string();
        let now = unix_now();
        let expires_at = spec
            .ttl
            .map(|ttl| now + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2));
        // The count and the insert are one statement, so concurrent requests cannot each see
        // room for one more.
        let inserted = sqlx::query(
            "INSERT INTO api_tokens (id, token_hash, user_id, name, can_notify, created_at, \
             expires_at) SELECT $1, $2, $3, $4, $5, $6, $7 WHERE (SELECT COUNT(*) FROM api_tokens \
             WHERE user_id = $3 AND (expires_at IS NULL OR expires_at > $6)) < $8",
        )
        .bind(&id)
        .bind(secret_hash(&token))
        .bind(user_id)
        .bind(&spec.name)
        .bind(spec.can_notify)
        .bind(now)
        .bind(expires_at)
        .bind(MAX_TOKENS_PER_USER)
        .execute(&self.pool)
        .await
        .map_err(internal)?;
        if inserted.rows_affected() == 0 {
            return Err(AppError::conflict(format!(
                "this user already holds {MAX_TOKENS_PER_USER} API tokens; revoke one first \
                     (DELETE /api/tokens/{{id}})"
            )));
        }
        Ok(NewTokenSecret {
            info: model::TokenInfo {
                id,
                name: spec.name,
                notify: spec.can_notify,
                created_at: model::unix_to_rfc3339(now),
                expires_at: expires_at.map(model::unix_to_rfc3339),
                last_used_at: None,
            },
            token,
        })
    }

    /// The API tokens of `user_id` that have not expired, oldest first.
    ///
    /// # Errors
    ///
    /// When the database fails.
    pub async fn list_tokens(&self, user_id: &str) -> Result<Vec<model::TokenInfo>, AppError> {
        let mut conn = self.pool.acquire().await.map_err(internal)?;
        tokens_on(&mut conn, user_id).await
    }

    /// Whether `password` is the current password of the user `user_id`.
    ///
    /// # Errors
    ///
    /// When the database fails.
    pub async fn password_matches(
        &self,
        user_id: &str,
        password: String,
    ) -> Result<bool, AppError> {
        let hash: Option<String> =
            sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1 AND active")
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(internal)?;
        verify_password(password, hash).await
    }

    /// Checks a login; on success opens a session and returns the user and the cookie value.
    ///
    /// # Errors
    ///
    /// `Unauthenticated` for an unknown email or a wrong password, with the same message
    /// for both; `Unavailable` when no hashing turn frees up within
    /// [`HASH_WAIT`](crate::passwords::HASH_WAIT).
    pub async fn login(&self, email: &str, password: String) -> Result<(User, String), AppError> {
        let row: Option<(String, String, String, model::UserRole, String)> =
            // A deactivated user is looked up as a missing one: the same hash, the same
            // `Unauthenticated`.
            sqlx::query_as(
                "SELECT id, email, name, role, password_hash FROM users WHERE email = $1 AND active",
            )
                .bind(model::normalize_email(email))
                .fetch_optional(&self.pool)
                .await
                .map_err(internal)?;
        let (user, hash) = match row {
            Some((id, email, name, role, hash)) => (
                Some(User {
                    id,
                    email,
                    name,
                    role,
                }),
                Some(hash),
            ),
            None => (None, None),
        };
        let user = match (verify_password(password, hash).await?, user) {
            (true, Some(user)) => user,
            _ => return Err(AppError::unauthenticated("wrong email or password")),
        };
        let secret = random_secret();
        let now = unix_now();
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(secret_hash(&secret))
        .bind(&user.id)
        .bind(now)
        .bind(now + SESSION_TTL_SECS)
        .execute(&self.pool)
        .await
        .map_err(internal)?;
        Ok((user, secret))
    }

    /// The actor a session cookie or API token stands for. An answer read within the last
    /// second is reused (`auth_cache`), until a change that may end a credential commits
    /// on this node or its update, from any node, is fanned out here.
    ///
    /// # Errors
    ///
    /// `Unauthenticated` when it is unknown, expired or revoked, or its user is deactivated.
    pub async fn authenticate(&self, credentials: Credentials<'_>) -> Result<Actor, AppError> {
        /// A session's user, and when the session expires.
        #[derive(sqlx::FromRow)]
        struct SessionRow {
            #[sqlx(flatten)]
            user: User,
            expires_at: i64,
        }
        /// A token's user, and what the token is.
        #[derive(sqlx::FromRow)]
        struct TokenRow {
            #[sqlx(flatten)]
            user: User,
            can_notify: Flag,
            token_id: String,
            expires_at: Option<i64>,
            last_used_at: Option<i64>,
        }
        let now = unix_now();
        let (kind, hash) = match credentials {
            Credentials::Session(secret) => (auth_cache::Kind::Session, secret_hash(secret)),
            Credentials::Token(token) => (auth_cache::Kind::Token, secret_hash(token)),
        };
        if let Some(actor) = self.recent.get(kind, &hash, now) {
            return Ok(actor);
        }
        let generation = self.recent.generation();
        let actor = match kind {
            auth_cache::Kind::Session => {
                let row: Option<SessionRow> = sqlx::query_as(
                    "SELECT u.id, u.email, u.name, u.role, s.expires_at FROM sessions s \
                     JOIN users u ON u.id = s.user_id \
                     WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.active",
                )
                .bind(&hash)
                .bind(now)
                .fetch_optional(&self.pool)
                .await
                .map_err(internal)?;
                row.map(|row| Actor {
                    user: row.user,
                    session: Some(hash.clone()),
                    // Sessions never notify: only API tokens made with --notify do.
                    can_notify: false,
                    token: None,
                    expires_at: Some(row.expires_at),
                })
            }
            auth_cache::Kind::Token => {
                let row: Option<TokenRow> = sqlx::query_as(
                    "SELECT u.id, u.email, u.name, u.role, t.can_notify, t.id AS token_id, \
                     t.expires_at, t.last_used_at FROM api_tokens t \
                     JOIN users u ON u.id = t.user_id WHERE t.token_hash = $1 \
                     AND (t.expires_at IS NULL OR t.expires_at > $2) AND u.active",
                )
                .bind(&hash)
                .bind(now)
                .fetch_optional(&self.pool)
                .await
                .map_err(internal)?;
                if let Some(row) = &row
                    && row
                        .last_used_at
                        .is_none_or(|used| used <= now - LAST_USED_GRANULARITY_SECS)
                {
                    note_token_use(&self.tasks, self.pool.clone(), row.token_id.clone(), now);
                }
                row.map(|row| Actor {
                    user: row.user,
                    session: None,
                    can_notify: row.can_notify.into(),
                    token: Some(row.token_id),
                    expires_at: row.expires_at,
                })
            }
        };
        let actor = actor.ok_or_else(unknown_credentials)?;
        self.recent.put(kind, hash, actor.clone(), generation);
        Ok(actor)
    }

    /// Forgets the authentications [`Self::authenticate`] reuses: after any change that
    /// may end a session or token (logout, a password change, deactivation, revocation).
    pub(crate) fn forget_authentications(&self) {
        self.recent.forget_all();
    }

    /// When there is no admin yet, creates the first one (`email`, and `password` or a generated
    /// one) and a workspace it owns, with its `general` channel. Returns what it created, or
    /// `None` when an admin already exists.
    ///
    /// It holds the write lock of `BOOTSTRAP_KEY` throughout, so nodes of a cluster
    /// starting together on an empty database create one admin between them.
    ///
    /// # Errors
    ///
    /// When the database fails or the given email or password is invalid.
    pub async fn bootstrap(
        &self,
        email: Option<String>,
        password: Option<String>,
    ) -> anyhow::Result<Option<Bootstrap>> {
        let keys = [BOOTSTRAP_KEY.to_owned()];
        let mut writer = Writer::acquire(&self.locks, &self.pool, &self.tasks, &keys).await?;
        let admins: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE role = 'admin'")
            .fetch_one(&mut *writer)
            .await?;
        if admins > 0 {
            writer.release().await;
            return Ok(None);
        }
        let email = email.unwrap_or_else(|| "admin@localhost".to_owned());
        let generated = password.is_none().then(|| random_secret()[..20].to_owned());
        let password = password.or_else(|| generated.clone()).unwrap_or_default();
        let admin = self
            .add_user(NewUser {
                email,
                name: "Admin".to_owned(),
                password,
                role: model::UserRole::Admin,
            })
            .await
            .map_err(|e| anyhow::anyhow!("cannot create the first admin: {}", e.message))?;
        let (ws, now) = (model::new_id(), model::now());
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO workspaces (id, name, created_by, created_at, updated_at) \
             VALUES ($1, 'My workspace', $2, $3, $4)",
        )
        .bind(&ws)
        .bind(&admin.id)
        .bind(&now)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO members (workspace_id, user_id, role, added_at) \
             VALUES ($1, $2, 'owner', $3)",
        )
        .bind(&ws)
        .bind(&admin.id)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO channels (id, workspace_id, name, is_default, created_by, created_at, \
             updated_at) VALUES ($1, $2, 'general', $3, $4, $5, $6)",
        )
        .bind(model::new_id())
        .bind(&ws)
        .bind(true)
        .bind(&admin.id)
        .bind(&now)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        writer.release().await;
        Ok(Some(Bootstrap {
            email: admin.email,
            generated_password: generated,
        }))
    }
}

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "herald_session";

/// How long a session lasts without a new login.
pub const SESSION_TTL_SECS: i64 = 30 * 24 * 3600;

/// Every API token starts with this, so leaked ones are easy to find in code and logs
/// scanners, and so a JWT is never mistaken for one.
pub const TOKEN_PREFIX: &str = "hrld_";
fn unix_now() -> i64 {
    super::unix_ms() / 1000
}

/// Most API tokens one user may hold at once (expired ones do not count): each is a row,
/// and a script that makes one per run without revoking them would grow the table forever.
pub const MAX_TOKENS_PER_USER: i64 = 100;

/// Longest lifetime a token may be given: ten years. Longer is the same as none (leave
/// `ttl` out), and keeps expiry times far from overflow.
pub const MAX_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(3650 * 24 * 3600);

/// How stale a token's `last_used_at` may be: it is written at most once a minute per token,
/// so using a token costs no write per request.
const LAST_USED_GRANULARITY_SECS: i64 = 60;

/// What a new API token is.
#[derive(Debug)]
pub struct TokenSpec {
    /// Its label.
    pub name: String,
    /// Whether it may send notifications and broadcasts.
    pub can_notify: bool,
    /// Its lifetime; `None`: until revoked.
    pub ttl: Option<std::time::Duration>,
}

/// A token just made: what lists show, and the secret, shown only this once.
#[derive(Debug, serde::Serialize)]
pub struct NewTokenSecret {
    /// What lists show.
    #[serde(flatten)]
    pub info: model::TokenInfo,
    /// The bearer token itself.
    pub token: String,
}

/// Every user, read on `conn`.
pub(crate) async fn users_on(conn: &mut AnyConnection) -> Result<Vec<model::Account>, AppError> {
    sqlx::query_as("SELECT id, email, name, role, active FROM users ORDER BY name, email")
        .fetch_all(conn)
        .await
        .map_err(internal)
}

/// The API tokens of `user_id` that have not expired, oldest first, read on `conn`.
pub(crate) async fn tokens_on(
    conn: &mut AnyConnection,
    user_id: &str,
) -> Result<Vec<model::TokenInfo>, AppError> {
    type Row = (String, String, Flag, i64, Option<i64>, Option<i64>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, name, can_notify, created_at, expires_at, last_used_at FROM api_tokens \
         WHERE user_id = $1 AND (expires_at IS NULL OR expires_at > $2) \
         ORDER BY created_at, id",
    )
    .bind(user_id)
    .bind(unix_now())
    .fetch_all(conn)
    .await
    .map_err(internal)?;
    Ok(rows
        .into_iter()
        .map(
            |(id, name, notify, created, expires, used)| model::TokenInfo {
                id,
                name,
                notify: notify.into(),
                created_at: model::unix_to_rfc3339(created),
                expires_at: expires.map(model::unix_to_rfc3339),
                last_used_at: used.map(model::unix_to_rfc3339),
            },
        )
        .collect())
}

/// Parses a token lifetime such as `30d`, `12h` or `90m`.
///
/// # Errors
///
/// `Invalid` unless it is a duration from one second to [`MAX_TOKEN_TTL`].
pub fn parse_ttl(ttl: &str) -> Result<std::time::Duration, AppError> {
    let parsed = humantime::parse_duration(ttl).map_err(|e| {
        AppError::invalid(format!(
            "ttl {ttl:?} is not a duration such as 30d or 12h: {e}"
        ))
    })?;
    if parsed.as_secs() == 0 || parsed > MAX_TOKEN_TTL {
        return Err(AppError::invalid(format!(
            "ttl must be from 1s to {}",
            humantime::format_duration(MAX_TOKEN_TTL)
        )));
    }
    Ok(parsed)
}

/// Credentials presented with a request.
#[derive(Debug)]
pub enum Credentials<'a> {
    /// The session cookie's value.
    Session(&'a str),
    /// A bearer API token.
    Token(&'a str),
}

/// Records that token `id` was used at `now`, in the background: the request does not wait
/// for the write, and a failure costs only a stale "last used".
fn note_token_use(tasks: &TaskTracker, pool: AnyPool, id: String, now: i64) {
    tasks.spawn(async move {
        let written = sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
            .bind(now)
            .bind(&id)
            .execute(&pool)
            .await;
        if let Err(error) = written {
            tracing::debug!(%error, "cannot record an API token's use");
        }
    });
}

/// What the first start created.
#[derive(Debug)]
pub struct Bootstrap {
    /// The admin's email.
    pub email: String,
    /// The admin's password, when it was generated (not taken from the environment).
    pub generated_password: Option<String>,
}
