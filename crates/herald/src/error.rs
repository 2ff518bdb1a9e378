//! [`ApiError`]: every error the HTTP API returns, with a stable code tied to one status and
//! a message that says what is wrong. Bodies are JSON: `{"error": code, "message": text}`.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

/// An error answered to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// Which kind of error; decides the status.
    pub code: ErrorCode,
    /// Human-readable detail, safe to show to the client.
    pub message: String,
    /// Seconds the client should wait before trying again, sent as `Retry-After`.
    pub retry_after: Option<u64>,
    /// A 401 for a token that was presented and failed, rather than for a missing one.
    pub invalid_token: bool,
    /// The `WWW-Authenticate` challenge to send, set by [`ApiError::bearer_challenge`].
    pub challenge: Option<HeaderValue>,
}

/// Stable error codes, each tied to one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 400: the request is malformed or breaks a limit.
    BadRequest,
    /// 401: no valid credentials.
    Unauthorized,
    /// 403: valid credentials without the right.
    Forbidden,
    /// 404: no such route or resource.
    NotFound,
    /// 405: the route exists, the method does not.
    MethodNotAllowed,
    /// 408: the request body did not arrive in time; the connection is closed.
    RequestTimeout,
    /// 409: the request conflicts with the current state (a taken email, the last owner).
    Conflict,
    /// 413: the body is too large.
    PayloadTooLarge,
    /// 415: the body is not of a supported type.
    UnsupportedMediaType,
    /// 429: this client holds too many streams.
    TooManyConnections,
    /// 429: this client, user, workspace or account made too many requests of one kind
    /// lately; `Retry-After` says when to come back.
    RateLimited,
    /// 503: the server holds too many streams, or storage is unavailable.
    Unavailable,
    /// 500: a bug or an unexpected failure; details go to the log, not the client.
    Internal,
}

impl ErrorCode {
    /// The HTTP status of this code.
    pub fn status(self) -> StatusCode {
        match self {
            Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::Conflict => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooManyConnections | Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The code as it appears in the body.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::RequestTimeout => "request_timeout",
            Self::Conflict => "conflict",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::TooManyConnections => "too_many_connections",
            Self::RateLimited => "rate_limited",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }
}

impl ApiError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after: None,
            invalid_token: false,
            challenge: None,
        }
    }

    /// 401 for a token that was presented and is not valid.
    pub fn invalid_token(message: impl Into<String>) -> Self {
        Self {
            invalid_token: true,
            ..Self::unauthorized(message)
        }
    }

    /// The same error with the RFC 6750 `WWW-Authenticate: Bearer` challenge of a resource
    /// protected by bearer tokens, whose metadata is at `resource_metadata`: a 401 without
    /// a token gets a bare challenge, a bad token `invalid_token`, a 403
    /// `insufficient_scope`, a 400 `invalid_request`. Other statuses get none. The
    /// challenge never says why a token failed.
    #[must_use]
    pub fn bearer_challenge(mut self, resource_metadata: Option<&str>) -> Self {
        let error = match self.code {
            ErrorCode::BadRequest => Some("invalid_request"),
            ErrorCode::Unauthorized if self.invalid_token => Some("invalid_token"),
            ErrorCode::Unauthorized => None,
            ErrorCode::Forbidden => Some("insufficient_scope"),
            _ => return self,
        };
        let mut params = Vec::new();
        if let Some(error) = error {
            params.push(format!("error=\"{error}\""));
        }
        if let Some(url) = resource_metadata {
            params.push(format!("resource_metadata=\"{url}\""));
        }
        let value = if params.is_empty() {
            "Bearer".to_owned()
        } else {
            format!("Bearer {}", params.join(", "))
        };
        self.challenge = HeaderValue::from_str(&value).ok();
        self
    }

    /// 429 `rate_limited`, to retry after `limited` says.
    pub fn rate_limited(message: impl Into<String>, limited: crate::ratelimit::Limited) -> Self {
        Self::new(ErrorCode::RateLimited, message).retry_after(limited.retry_after_secs())
    }

    /// The same error, telling the client to retry after `secs` seconds.
    #[must_use]
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    /// 409.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }

    /// 503.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.code == ErrorCode::Internal {
            tracing::error!(message = %self.message, "internal error");
        }
        let message = if self.code == ErrorCode::Internal {
            "internal error; see the server log".to_owned()
        } else {
            self.message
        };
        let body = serde_json::json!({ "error": self.code.as_str(), "message": message });
        let mut response = (self.code.status(), Json(body)).into_response();
        if let Some(challenge) = self.challenge {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge);
        }
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.code == ErrorCode::RequestTimeout {
            // The rest of the body may still come: the connection cannot carry another
            // request. (HTTP/2 drops the header and resets just the stream.)
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// The one place where the app's errors become answers: each kind has its status, the
/// message is the app's, and a busy hashing queue's `Retry-After` goes along.
impl From<herald_app::AppError> for ApiError {
    fn from(error: herald_app::AppError) -> Self {
        use herald_app::ErrorKind;
        let code = match error.kind {
            ErrorKind::Invalid => ErrorCode::BadRequest,
            ErrorKind::Unauthenticated => ErrorCode::Unauthorized,
            ErrorKind::Forbidden => ErrorCode::Forbidden,
            ErrorKind::NotFound => ErrorCode::NotFound,
            ErrorKind::Conflict => ErrorCode::Conflict,
            ErrorKind::Unavailable => ErrorCode::Unavailable,
            ErrorKind::Internal => ErrorCode::Internal,
        };
        Self {
            retry_after: error.retry_after,
            ..Self::new(code, error.message)
        }
    }
}
