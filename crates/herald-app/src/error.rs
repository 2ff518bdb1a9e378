//! [`AppError`]: why the app refused or failed a read or a change, in the app's own terms.
//!
//! The app knows nothing of HTTP: the server maps each [`ErrorKind`] to one status, in one
//! place. The message is meant for the client, except an [`ErrorKind::Internal`] one, which
//! the server logs and does not show.

/// A refusal or a failure of the app.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AppError {
    /// What went wrong; decides how the server answers.
    pub kind: ErrorKind,
    /// What is wrong, in a sentence the client may read.
    pub message: String,
    /// The field of the request that is wrong, for [`ErrorKind::Invalid`] errors about one.
    pub field: Option<String>,
    /// Seconds after which trying again may succeed (a busy password-hashing queue).
    pub retry_after: Option<u64>,
}

/// The kinds of [`AppError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request breaks a rule of its own: a bad field, a bad id, a limit.
    Invalid,
    /// No valid credentials: unknown, expired or revoked, or a wrong password at login.
    Unauthenticated,
    /// Valid credentials without the right.
    Forbidden,
    /// No such resource, or one the actor may not read: the two look alike.
    NotFound,
    /// The request conflicts with what is stored (a taken email, the last owner).
    Conflict,
    /// Something the app depends on does not answer now (the database, the event log, a
    /// free password-hashing turn); nothing was changed, and a retry may succeed.
    Unavailable,
    /// A bug or an unexpected failure; its message is for the log.
    Internal,
}

impl AppError {
    /// An error of `kind` saying `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    /// [`ErrorKind::Invalid`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }

    /// [`ErrorKind::Invalid`], about the request's `field`.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: Some(field.to_owned()),
            ..Self::invalid(message)
        }
    }

    /// [`ErrorKind::Unauthenticated`].
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthenticated, message)
    }

    /// [`ErrorKind::Forbidden`].
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, message)
    }

    /// [`ErrorKind::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// [`ErrorKind::Conflict`].
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }

    /// [`ErrorKind::Unavailable`].
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    /// [`ErrorKind::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// The same error, saying a retry may succeed after `secs` seconds.
    #[must_use]
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }
}

/// A storage failure: logged in full by the server, shown to the client as a plain
/// internal error.
///
/// A database that cannot be reached is [`ErrorKind::Unavailable`], not a bug: the client
/// may retry, and nothing was changed. An [`AppError`] is kept as it is (a busy hashing
/// queue, say).
pub(crate) fn internal<E: std::fmt::Display + 'static>(error: E) -> AppError {
    if let Some(error) = (&error as &dyn std::any::Any).downcast_ref::<AppError>() {
        return error.clone();
    }
    let unreachable = (&error as &dyn std::any::Any)
        .downcast_ref::<sqlx::Error>()
        .is_some_and(|e| {
            matches!(
                e,
                sqlx::Error::Io(_)
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::Protocol(_)
            )
        });
    if unreachable {
        tracing::warn!(%error, "the app's database is unavailable");
        return AppError::unavailable("the database is unavailable; nothing was changed");
    }
    AppError::internal(error.to_string())
}
