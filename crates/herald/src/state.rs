//! [`AppState`]: what every handler shares.

use std::{net::IpAddr, sync::Arc, time::Duration};

use axum::http::{HeaderMap, header};
use herald_app::App;
use herald_hub::Hub;
use tokio_util::sync::CancellationToken;

use crate::{
    auth::Verifier,
    config::Config,
    error::{ApiError, ErrorCode},
    limits::{Refused, StreamLimiter, StreamPermit},
    metrics::ServerMetrics,
    ratelimit::RateLimits,
    routes::mercure::SelectorCache,
};

/// Shared state of the HTTP handlers. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<Inner>,
}

/// The fields of [`AppState`].
#[derive(Debug)]
pub struct Inner {
    /// The hub.
    pub hub: Hub,
    /// Verifies publisher tokens.
    pub publisher: Verifier,
    /// Verifies subscriber tokens.
    pub subscriber: Verifier,
    /// Whether subscribers may connect without a token.
    pub anonymous: bool,
    /// Counts open streams against the limits.
    pub limiter: Arc<StreamLimiter>,
    /// Largest request body.
    pub max_body: usize,
    /// Longest time a request body may take to arrive.
    pub body_timeout: Duration,
    /// Longest time a long-poll waits for an event.
    pub poll_timeout: Duration,
    /// Cancelled when the server starts shutting down: bodies still arriving are cut then.
    pub shutdown: CancellationToken,
    /// Compiled `mercure.publish` selectors.
    pub publish_selectors: SelectorCache,
    /// Origins allowed to use cookie credentials from another site.
    pub cors_origins: Vec<String>,
    /// Counters of the HTTP layer.
    pub metrics: ServerMetrics,
    /// The app: users, workspaces, collections and their streams.
    pub app: App,
    /// Rate limits of logins, app changes and publishes.
    pub rates: RateLimits,
    /// Whether the server serves HTTPS: its session cookie is then `Secure`, so a browser
    /// never sends it over plain HTTP.
    pub https: bool,
}

impl std::ops::Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl AppState {
    /// State for `hub` under `config`; `shutdown` is the server's shutdown signal.
    pub fn new(hub: Hub, app: App, config: &Config, shutdown: CancellationToken) -> Self {
        let limiter = Arc::new(StreamLimiter::new(
            config.max_connections,
            config.max_connections_per_ip,
        ));
        let metrics = ServerMetrics::new(&hub, &limiter);
        Self {
            inner: Arc::new(Inner {
                hub,
                publisher: Verifier::new(&config.publisher_key),
                subscriber: Verifier::new(&config.subscriber_key),
                anonymous: config.anonymous,
                limiter,
                max_body: config.max_body,
                body_timeout: config.body_timeout,
                poll_timeout: config.poll_timeout,
                shutdown,
                publish_selectors: SelectorCache::default(),
                cors_origins: config.cors_origins.clone(),
                metrics,
                app,
                rates: RateLimits::new(&config.rates),
                https: config.tls.is_some(),
            }),
        }
    }

    /// Runs `read`, which reads a request body, within the body deadline; cut short when the
    /// server starts shutting down, so a body that trickles in cannot hold a shutdown.
    ///
    /// # Errors
    ///
    /// 408 when the deadline passes first, 503 when the server shuts down first.
    pub async fn read_body_within<T>(&self, read: impl Future<Output = T>) -> Result<T, ApiError> {
        tokio::select! {
            read = tokio::time::timeout(self.body_timeout, read) => {
                read.map_err(|_| body_timed_out(self.body_timeout))
            }
            () = self.shutdown.cancelled() => Err(shutting_down()),
        }
    }

    /// Whether a `mercure.publish` claim allows publishing to `topic`.
    pub fn may_publish(&self, allowed: &[String], topic: &str) -> bool {
        self.publish_selectors.any_matches(allowed, topic)
    }

    /// Admits one more stream from `peer` against the global and per-address limits; the
    /// permit frees its slot when dropped.
    ///
    /// # Errors
    ///
    /// 503 when the server is full, 429 when `peer` holds too many streams.
    pub fn admit_stream(&self, peer: IpAddr) -> Result<StreamPermit, ApiError> {
        self.limiter.try_acquire(peer).map_err(|refused| {
            self.metrics.refused(refused);
            match refused {
                Refused::Global => {
                    ApiError::unavailable("the server holds as many streams as it may; retry later")
                }
                Refused::PerIp => ApiError::new(
                    ErrorCode::TooManyConnections,
                    "too many open streams from this address",
                ),
            }
        })
    }

    /// The id a reconnecting subscriber resumes after: the `Last-Event-ID` header, which
    /// wins over `from_query` as the Mercure spec says.
    ///
    /// # Errors
    ///
    /// 400 when it is not text or longer than an update id may be.
    pub fn last_event_id(
        &self,
        headers: &HeaderMap,
        from_query: Option<String>,
    ) -> Result<Option<String>, ApiError> {
        let id = match headers.get("last-event-id") {
            Some(value) => Some(
                value
                    .to_str()
                    .map_err(|_| {
                        ApiError::bad_request("the Last-Event-ID header is not valid text")
                    })?
                    .to_owned(),
            ),
            None => from_query,
        };
        // An empty id is no id, for the hub as for a browser.
        let id = id.filter(|id| !id.is_empty());
        if id
            .as_ref()
            .is_some_and(|id| id.len() > self.hub.config().limits.max_id_len)
        {
            return Err(ApiError::bad_request("the last event id is too long"));
        }
        Ok(id)
    }

    /// A publish authenticated by cookie must come from an allowed origin: otherwise any
    /// site could make a logged-in browser publish (CSRF). Requests without `Origin` come
    /// from non-browser clients or same-origin navigations.
    ///
    /// # Errors
    ///
    /// 403 when the origin is not allowed.
    pub fn check_cookie_origin(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
            return Ok(());
        };
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
        let same_origin = host.is_some_and(|host| {
            origin
                .split_once("://")
                .is_some_and(|(_, authority)| authority == host)
        });
        if same_origin || self.cors_origins.iter().any(|o| o == origin) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "cookie-authenticated requests that change something are not allowed from \
                 origin {origin:?}"
            )))
        }
    }
}

/// The answer to a body that did not arrive within `deadline`.
pub(crate) fn body_timed_out(deadline: Duration) -> ApiError {
    ApiError::new(
        ErrorCode::RequestTimeout,
        format!(
            "the request body did not arrive within {}",
            humantime::format_duration(deadline)
        ),
    )
}

/// The answer to a request whose body was still arriving when shutdown began.
pub(crate) fn shutting_down() -> ApiError {
    ApiError::unavailable("the server is shutting down; retry on another node or later")
}
