//! [`AppState`]: what every handler shares.

use std::sync::Arc;

use axum::http::{HeaderMap, header};
use herald_hub::Hub;

use crate::{
    auth::Verifier, config::Config, error::ApiError, limits::StreamLimiter, mercure::SelectorCache,
    metrics::ServerMetrics,
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
    /// Compiled `mercure.publish` selectors.
    pub publish_selectors: SelectorCache,
    /// Origins allowed to use cookie credentials from another site.
    pub cors_origins: Vec<String>,
    /// Counters of the HTTP layer.
    pub metrics: ServerMetrics,
}

impl std::ops::Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl AppState {
    /// State for `hub` under `config`.
    pub fn new(hub: Hub, config: &Config) -> Self {
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
                publish_selectors: SelectorCache::default(),
                cors_origins: config.cors_origins.clone(),
                metrics,
            }),
        }
    }

    /// Whether a `mercure.publish` claim allows publishing to `topic`.
    pub fn may_publish(&self, allowed: &[String], topic: &str) -> bool {
        self.publish_selectors.any_matches(allowed, topic)
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
                "cookie-authenticated publishes are not allowed from origin {origin:?}"
            )))
        }
    }
}
