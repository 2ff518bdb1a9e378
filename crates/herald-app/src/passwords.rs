//! Passwords and secrets: argon2id hashes computed on threads of their own, at most one
//! per core at a time (see [`HASH_WAIT`]), and the random secrets of sessions and API
//! tokens, stored only as their SHA-256, so a copy of the database opens no session.

use argon2::{
    Algorithm, Argon2, Block, Params, PasswordHash, Version,
    password_hash::{
        self, Output, ParamsString, Salt, SaltString,
        rand_core::{OsRng, RngCore},
    },
};
use sha2::{Digest, Sha256};
use std::{sync::LazyLock, time::Duration};
use tokio::sync::Semaphore;

use crate::error::{AppError, internal};

/// How long a request waits for its turn to hash a password before it is answered `Unavailable`.
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
) -> Result<T, AppError> {
    let turn = tokio::time::timeout(HASH_WAIT, HASHING.acquire())
        .await
        .map_err(|_| {
            AppError::unavailable(
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
/// `Unavailable` when no hashing turn frees up within [`HASH_WAIT`]; argon2 itself fails only on
/// absurd parameters (`Internal`).
pub async fn hash_password(password: String) -> Result<String, AppError> {
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
/// `Unavailable` when no hashing turn frees up within [`HASH_WAIT`].
pub(crate) async fn verify_password(
    password: String,
    hash: Option<String>,
) -> Result<bool, AppError> {
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
pub(crate) fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The stored form of a session cookie or an API token.
pub fn secret_hash(secret: &str) -> String {
    // Every authenticated request hashes its secret: encode into a buffer, not a char at a
    // time into a growing string.
    let mut hex = [0u8; 64];
    hex::encode_to_slice(Sha256::digest(secret.as_bytes()), &mut hex)
        .expect("a SHA-256 digest is 32 bytes: 64 hex digits");
    String::from_utf8_lossy(&hex).into_owned()
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
        // Stored hashes must not change form: SHA-256 in lower-case hex.
        assert_eq!(
            secret_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
