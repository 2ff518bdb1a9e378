//! Accounts: argon2 password hashes, browser sessions, API tokens, and the first admin.
//!
//! Session cookies and API tokens are 256 random bits; the database keeps only their
//! SHA-256, so a copy of it opens no session. Passwords are hashed with argon2id on threads
//! of their own, since one hash takes tens of milliseconds of CPU, and at most one hash per
//! core at a time (see [`HASH_WAIT`]).

use argon2::{
    Algorithm, Argon2, Block, Params, PasswordHash, Version,
    password_hash::{
        self, Output, ParamsString, Salt, SaltString,
        rand_core::{OsRng, RngCore},
    },
};
use sha2::{Digest, Sha256};
use sqlx::AnyPool;
use std::{sync::LazyLock, time::Duration};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::{
    app::{
        db::{Flag, Writer},
        internal,
        model::{self, NewUser, User},
        policy::Actor,
    },
    error::{ApiError, ErrorCode},
};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "herald_session";

/// How long a session lasts without a new login.
pub const SESSION_TTL_SECS: i64 = 30 * 24 * 3600;

/// Every API token starts with this, so leaked ones are easy to find in code and logs
/// scanners, and so a JWT is never mistaken for one.
pub const TOKEN_PREFIX: &str = "hrld_";

/// How long a request waits for its turn to hash a password before it is answered 503.
///
/// Each argon2id hash holds 19 MiB (argon2's default memory cost) and a core for tens of
/// milliseconds, so hashes run at most one per core at a time (`hashing_permits`): more
/// in parallel would add memory, not throughput. A flood of logins then waits here, in a
/// queue that costs a few hundred bytes per request, and what cannot be served within this
/// time is refused instead of queued without end.
pub const HASH_WAIT: Duration = Duration::from_secs(3);

/// The `Retry-After` of a login or password change refused because every hashing slot stayed
/// busy for [`HASH_WAIT`].
const HASH_RETRY_AFTER_SECS: u64 = 2;

/// Password hashes computed at once: one per core.
fn hashing_permits() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
}

/// The turns to hash a password, shared by every login, new user and password change of
/// the process.
static HASHING: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(hashing_permits()));

/// A password hash to compute.
type HashJob = Box<dyn FnOnce() + Send>;

/// The threads that compute password hashes, one per hashing turn, fed through this
/// channel.
///
/// Long-lived threads of their own, not tokio's blocking pool: each keeps its argon2
/// memory from one hash to the next (see `argon2id`), so the process holds that memory
/// once per turn, however many hashes it computes and on whichever threads tokio would
/// have run them.
static HASHERS: LazyLock<std::sync::mpsc::Sender<HashJob>> = LazyLock::new(|| {
    let (jobs, queue) = std::sync::mpsc::channel::<HashJob>();
    let queue = std::sync::Arc::new(std::sync::Mutex::new(queue));
    for n in 0..hashing_permits() {
        let queue = queue.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("herald-hash-{n}"))
            .spawn(move || {
                loop {
                    let job = queue.lock().map(|queue| queue.recv());
                    let Ok(Ok(job)) = job else { return };
                    // A panicking hash fails its request (its answer channel drops), not
                    // the thread.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                }
            });
        if let Err(error) = spawned {
            tracing::error!(%error, "cannot start a password-hashing thread");
        }
    }
    jobs
});

/// Runs `work` (one argon2 computation) on a hashing thread once a hashing turn is free.
/// The turn is held until the hash is done, so a request that goes away mid-hash does not
/// free it early.
async fn hashing<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    let turn = tokio::time::timeout(HASH_WAIT, HASHING.acquire())
        .await
        .map_err(|_| {
            ApiError::unavailable(
                "too many passwords are being checked right now; retry in a moment",
            )
            .retry_after(HASH_RETRY_AFTER_SECS)
        })?
        .map_err(internal)?;
    let (done, result) = tokio::sync::oneshot::channel();
    HASHERS
        .send(Box::new(move || {
            let _ = done.send(work());
            drop(turn);
        }))
        .map_err(|_| internal("the password-hashing threads are gone"))?;
    result.await.map_err(|_| internal("a password hash failed"))
}

/// Hashes a password with argon2id and a random salt.
///
/// # Errors
///
/// 503 when no hashing turn frees up within [`HASH_WAIT`]; argon2 itself fails only on
/// absurd parameters (500).
pub async fn hash_password(password: String) -> Result<String, ApiError> {
    hashing(move || {
        new_hash(&password).map_err(|e| internal(format!("cannot hash the password: {e}")))
    })
    .await?
}

/// A new argon2id hash of `password`, with argon2's default parameters and a random salt, in
/// the PHC string format.
fn new_hash(password: &str) -> password_hash::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    let defaults = Argon2::default();
    argon2id(
        password.as_bytes(),
        Algorithm::default(),
        Version::default(),
        defaults.params().clone(),
        salt.as_salt(),
    )
    .map(|hash| hash.to_string())
}

/// Whether `password` matches `stored`, a PHC string (which names its algorithm, version
/// and parameters).
fn matches(password: &str, stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let settings = Algorithm::try_from(parsed.algorithm).and_then(|algorithm| {
        let version = parsed
            .version
            .map(Version::try_from)
            .transpose()?
            .unwrap_or_default();
        Ok((algorithm, version, Params::try_from(&parsed)?))
    });
    let Ok((algorithm, version, params)) = settings else {
        return false;
    };
    // `Output`'s equality is constant-time.
    argon2id(password.as_bytes(), algorithm, version, params, salt)
        .is_ok_and(|computed| computed.hash == Some(expected))
}

/// What `Argon2::hash_password` computes, in this thread's own argon2 memory instead of a
/// fresh 19 MiB allocation per hash: glibc does not reuse the freed, 64-byte-aligned block
/// for the next one (each hash grew the process by its 19 MiB, for good), and keeping the
/// block costs each hashing thread 19 MiB once.
fn argon2id<'a>(
    password: &[u8],
    algorithm: Algorithm,
    version: Version,
    params: Params,
    salt: Salt<'a>,
) -> password_hash::Result<PasswordHash<'a>> {
    thread_local! {
        static MEMORY: std::cell::RefCell<Vec<Block>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let mut salt_bytes = [0u8; Salt::MAX_LENGTH];
    let salt_bytes = salt.decode_b64(&mut salt_bytes)?;
    let output_len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let hasher = Argon2::new(algorithm, version, params.clone());
    let output = Output::init_with(output_len, |out| {
        MEMORY.with_borrow_mut(|memory| {
            if memory.len() < params.block_count() {
                *memory = vec![Block::default(); params.block_count()];
            }
            hasher
                .hash_password_into_with_memory(password, salt_bytes, out, &mut memory[..])
                .map_err(password_hash::Error::from)
        })
    })?;
    Ok(PasswordHash {
        algorithm: algorithm.ident(),
        version: Some(version.into()),
        params: ParamsString::try_from(&params)?,
        salt: Some(salt),
        hash: Some(output),
    })
}

/// Checks `password` against a stored hash; `None` (no such user) still costs one hash, so
/// response times do not tell which emails exist.
///
/// # Errors
///
/// 503 when no hashing turn frees up within [`HASH_WAIT`].
async fn verify_password(password: String, hash: Option<String>) -> Result<bool, ApiError> {
    /// A hash of a random password, made once, for timing-equal misses.
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    hashing(move || {
        let found = hash.is_some();
        let stored = hash.unwrap_or_else(|| {
            DECOY
                .get_or_init(|| new_hash(&random_secret()).unwrap_or_default())
                .clone()
        });
        matches(&password, &stored) && found
    })
    .await
}

/// 256 random bits as hex.
fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    hex(&bytes)
}

/// The stored form of a session cookie or an API token.
pub fn secret_hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn unix_now() -> i64 {
    super::unix_ms() / 1000
}

/// Inserts a user, hashing its password. Its email is stored in lower case.
///
/// # Errors
///
/// 400 for bad fields, 409 when the email is taken (in any case).
pub async fn add_user(pool: &AnyPool, new: NewUser) -> Result<User, ApiError> {
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
    .execute(pool)
    .await
    .map_err(internal)?;
    if inserted.rows_affected() == 0 {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!("a user with email {:?} already exists", user.email),
        ));
    }
    Ok(user)
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

/// Parses a token lifetime such as `30d`, `12h` or `90m`.
///
/// # Errors
///
/// 400 unless it is a duration from one second to [`MAX_TOKEN_TTL`].
pub fn parse_ttl(ttl: &str) -> Result<std::time::Duration, ApiError> {
    let parsed = humantime::parse_duration(ttl).map_err(|e| {
        ApiError::bad_request(format!(
            "ttl {ttl:?} is not a duration such as 30d or 12h: {e}"
        ))
    })?;
    if parsed.as_secs() == 0 || parsed > MAX_TOKEN_TTL {
        return Err(ApiError::bad_request(format!(
            "ttl must be from 1s to {}",
            humantime::format_duration(MAX_TOKEN_TTL)
        )));
    }
    Ok(parsed)
}

/// Makes an API token for the user with `email`; returns it, the secret shown only this
/// once.
///
/// # Errors
///
/// 404 when there is no such user; 400 for a bad name; 409 when the user holds
/// [`MAX_TOKENS_PER_USER`] tokens.
pub async fn create_token(
    pool: &AnyPool,
    email: &str,
    spec: TokenSpec,
) -> Result<NewTokenSecret, ApiError> {
    let user_id: Option<String> = sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
        .bind(model::normalize_email(email))
        .fetch_optional(pool)
        .await
        .map_err(internal)?;
    let user_id = user_id.ok_or_else(|| {
        ApiError::new(ErrorCode::NotFound, format!("no user with email {email:?}"))
    })?;
    add_token(pool, &user_id, spec).await
}

/// Makes an API token for the user `user_id`.
///
/// # Errors
///
/// 400 for a bad name; 409 when the user holds [`MAX_TOKENS_PER_USER`] tokens.
pub(crate) async fn add_token(
    pool: &AnyPool,
    user_id: &str,
    spec: TokenSpec,
) -> Result<NewTokenSecret, ApiError> {
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
    .execute(pool)
    .await
    .map_err(internal)?;
    if inserted.rows_affected() == 0 {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!(
                "this user already holds {MAX_TOKENS_PER_USER} API tokens; revoke one first \
                 (DELETE /api/tokens/{{id}})"
            ),
        ));
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
pub(crate) async fn list_tokens(
    pool: &AnyPool,
    user_id: &str,
) -> Result<Vec<model::TokenInfo>, ApiError> {
    type Row = (String, String, Flag, i64, Option<i64>, Option<i64>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, name, can_notify, created_at, expires_at, last_used_at FROM api_tokens \
         WHERE user_id = $1 AND (expires_at IS NULL OR expires_at > $2) \
         ORDER BY created_at, id",
    )
    .bind(user_id)
    .bind(unix_now())
    .fetch_all(pool)
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

/// Whether `password` is the current password of the user `user_id`.
///
/// # Errors
///
/// When the database fails.
pub(crate) async fn password_matches(
    pool: &AnyPool,
    user_id: &str,
    password: String,
) -> Result<bool, ApiError> {
    let hash: Option<String> =
        sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1 AND active")
            .bind(user_id)
            .fetch_optional(pool)
            .await
            .map_err(internal)?;
    verify_password(password, hash).await
}

/// Checks a login; on success opens a session and returns the user and the cookie value.
///
/// # Errors
///
/// 401 for an unknown email or a wrong password, with the same message for both; 503 when
/// no hashing turn frees up within [`HASH_WAIT`].
pub async fn login(
    pool: &AnyPool,
    email: &str,
    password: String,
) -> Result<(User, String), ApiError> {
    let row: Option<(String, String, String, model::UserRole, String)> =
        // A deactivated user is looked up as a missing one: the same hash, the same 401.
        sqlx::query_as(
            "SELECT id, email, name, role, password_hash FROM users WHERE email = $1 AND active",
        )
            .bind(model::normalize_email(email))
            .fetch_optional(pool)
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
        _ => return Err(ApiError::unauthorized("wrong email or password")),
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
    .execute(pool)
    .await
    .map_err(internal)?;
    Ok((user, secret))
}

/// Credentials presented with a request.
#[derive(Debug)]
pub enum Credentials<'a> {
    /// The session cookie's value.
    Session(&'a str),
    /// A bearer API token.
    Token(&'a str),
}

/// The actor a session cookie or API token stands for.
///
/// # Errors
///
/// 401 when it is unknown, expired or revoked, or its user is deactivated.
pub async fn authenticate(
    pool: &AnyPool,
    tasks: &TaskTracker,
    credentials: Credentials<'_>,
) -> Result<Actor, ApiError> {
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
    let actor = match credentials {
        Credentials::Session(secret) => {
            let hash = secret_hash(secret);
            let row: Option<SessionRow> = sqlx::query_as(
                "SELECT u.id, u.email, u.name, u.role, s.expires_at FROM sessions s \
                 JOIN users u ON u.id = s.user_id \
                 WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.active",
            )
            .bind(&hash)
            .bind(now)
            .fetch_optional(pool)
            .await
            .map_err(internal)?;
            row.map(|row| Actor {
                user: row.user,
                session: Some(hash),
                // Sessions never notify: only API tokens made with --notify do.
                can_notify: false,
                token: None,
                expires_at: Some(row.expires_at),
            })
        }
        Credentials::Token(token) => {
            let row: Option<TokenRow> = sqlx::query_as(
                "SELECT u.id, u.email, u.name, u.role, t.can_notify, t.id AS token_id, \
                 t.expires_at, t.last_used_at FROM api_tokens t \
                 JOIN users u ON u.id = t.user_id WHERE t.token_hash = $1 \
                 AND (t.expires_at IS NULL OR t.expires_at > $2) AND u.active",
            )
            .bind(secret_hash(token))
            .bind(now)
            .fetch_optional(pool)
            .await
            .map_err(internal)?;
            if let Some(row) = &row
                && row
                    .last_used_at
                    .is_none_or(|used| used <= now - LAST_USED_GRANULARITY_SECS)
            {
                note_token_use(tasks, pool.clone(), row.token_id.clone(), now);
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
    actor.ok_or_else(|| {
        ApiError::unauthorized("the session or token is unknown or expired; sign in again")
    })
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

/// When there is no admin yet, creates the first one (`email`, and `password` or a generated
/// one) and a workspace it owns, with its `general` channel. Returns what it created, or
/// `None` when an admin already exists.
///
/// It holds the write lock throughout, so nodes of a cluster starting together on an empty
/// database create one admin between them.
///
/// # Errors
///
/// When the database fails or the given email or password is invalid.
pub async fn bootstrap(
    pool: &AnyPool,
    email: Option<String>,
    password: Option<String>,
) -> anyhow::Result<Option<Bootstrap>> {
    let turn = std::sync::Arc::new(tokio::sync::Mutex::new(()));
    let mut writer = Writer::acquire(&turn, pool).await?;
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
    let admin = add_user(
        pool,
        NewUser {
            email,
            name: "Admin".to_owned(),
            password,
            role: model::UserRole::Admin,
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot create the first admin: {}", e.message))?;
    let (ws, now) = (model::new_id(), model::now());
    let mut tx = pool.begin().await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passwords_verify_and_misses_fail() {
        let hash = hash_password("correct horse".into()).await.unwrap();
        assert!(
            verify_password("correct horse".into(), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(!verify_password("wrong".into(), Some(hash)).await.unwrap());
        assert!(!verify_password("anything".into(), None).await.unwrap());
    }

    /// Hashes made here verify with argon2's own verifier and the other way round, so
    /// passwords stored before and after computing in reused memory keep working.
    #[test]
    fn hashes_agree_with_argon2s_own() {
        use argon2::{PasswordHasher, PasswordVerifier};
        for _ in 0..2 {
            let ours = new_hash("correct horse").unwrap();
            let parsed = PasswordHash::new(&ours).unwrap();
            assert!(
                Argon2::default()
                    .verify_password(b"correct horse", &parsed)
                    .is_ok()
            );
            let theirs = Argon2::default()
                .hash_password(b"battery staple", &SaltString::generate(&mut OsRng))
                .unwrap()
                .to_string();
            assert!(matches("battery staple", &theirs));
            assert!(!matches("battery stapler", &theirs));
            assert!(!matches("correct horse", &theirs));
        }
        assert!(!matches("x", "not a hash"));
        assert!(!matches("x", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ"));
    }

    #[test]
    fn secrets_are_random_and_stored_hashed() {
        let (a, b) = (random_secret(), random_secret());
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_eq!(secret_hash(&a).len(), 64);
        assert_ne!(secret_hash(&a), a);
    }
}
