//! [`ServerState`]: what the handlers share, as substates that each handler takes on its
//! own (`State<App>`, `State<Tokens>`, …) through axum's `FromRef`.
//!
//! This module sits above the others: it uses `auth`, `limits`, `metrics` and
//! `ratelimit`, and none of them uses it; the routes and the connection use it.

use std::{net::IpAddr, sync::Arc, time::Duration};

use axum::{
    extract::FromRef,
    http::{HeaderMap, header},
};
use herald_app::App;
use herald_hub::Hub;
use tokio_util::sync::CancellationToken;

use crate::{
    auth::Tokens,
    config::Config,
    error::{ApiError, ErrorCode},
    limits::{Refused, StreamLimiter, StreamPermit},
    metrics::ServerMetrics,
    ratelimit::RateLimits,
};

/// Shared state of the HTTP handlers: one reference count to clone, which axum does for
/// every request; each field of [`Shared`] is a substate.
#[derive(Clone, Debug)]
pub struct ServerState(Arc<Shared>);

impl std::ops::Deref for ServerState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// Each substate is taken from the state by cloning it alone.
macro_rules! substates {
    ($($field:ident: $type:ty),* $(,)?) => {
        $(impl FromRef<ServerState> for $type {
            fn from_ref(state: &ServerState) -> Self {
                state.$field.clone()
            }
        })*
    };
}

substates!(
    hub: Hub,
    app: App,
    tokens: Tokens,
    streams: Streams,
    bodies: Bodies,
    origins: Origins,
    metrics: Arc<ServerMetrics>,
    rates: Arc<RateLimits>,
);

/// What [`ServerState`] holds.
#[derive(Clone, Debug)]
pub struct Shared {
    /// The hub.
    pub hub: Hub,
    /// The product: users, workspaces, collections and their streams.
    pub app: App,
    /// Verifies Mercure tokens and what they allow.
    pub tokens: Tokens,
    /// Admits streams against the connection limits; reads resume ids.
    pub streams: Streams,
    /// How large and how slow a request body may be.
    pub bodies: Bodies,
    /// Which origins may use cookie credentials, and how session cookies are set.
    pub origins: Origins,
    /// Counters of the HTTP layer.
    pub metrics: Arc<ServerMetrics>,
    /// Rate limits of logins, app changes and publishes.
    pub rates: Arc<RateLimits>,
    /// The registry of active subscriptions, when Mercure subscriptions are announced
    /// (`--subscription-events`); without it the subscriptions API answers 404.
    pub subscriptions: Option<herald_hub::presence::Registry>,
    /// The registry where the app's streams show their users as online; without it, nobody
    /// is.
    pub presence: Option<herald_hub::presence::Registry>,
}

impl ServerState {
    /// State for `hub` and `app` under `config`; `shutdown` is the server's shutdown
    /// signal.
    pub fn new(hub: Hub, app: App, config: &Config, shutdown: CancellationToken) -> Self {
        let limiter = Arc::new(StreamLimiter::new(
            config.max_connections,
            config.max_connections_per_ip,
        ));
        let metrics = Arc::new(ServerMetrics::new(&hub, &limiter));
        Self(Arc::new(Shared {
            streams: Streams {
                limiter,
                metrics: metrics.clone(),
                max_id_len: hub.config().limits.max_id_len,
                poll_timeout: config.poll_timeout,
            },
            hub,
            app,
            tokens: Tokens::new(config),
            bodies: Bodies {
                max_body: config.max_body,
                body_timeout: config.body_timeout,
                shutdown,
            },
            origins: Origins {
                allowed: config.cors_origins.clone().into(),
                https: config.tls.is_some(),
            },
            metrics,
            rates: Arc::new(RateLimits::new(&config.rates)),
            subscriptions: None,
            presence: None,
        }))
    }

    /// The same state, showing who is online in the app's workspaces in `registry`.
    #[must_use]
    pub fn with_presence(mut self, registry: herald_hub::presence::Registry) -> Self {
        Arc::make_mut(&mut self.0).presence = Some(registry);
        self
    }

    /// The same state, announcing and listing Mercure subscriptions in `registry`.
    #[must_use]
    pub fn with_subscriptions(mut self, registry: herald_hub::presence::Registry) -> Self {
        Arc::make_mut(&mut self.0).subscriptions = Some(registry);
        self
    }
}

/// The limits of request bodies.
#[derive(Clone, Debug)]
pub struct Bodies {
    /// Largest request body, in bytes; also the most a long-poll answers.
    pub max_body: usize,
    /// Longest time a request body may take to arrive.
    pub body_timeout: Duration,
    /// Cancelled when the server starts shutting down: bodies still arriving are cut then.
    pub shutdown: CancellationToken,
}

impl Bodies {
    /// Runs `read`, which reads a request body, within the body deadline; cut short when
    /// the server starts shutting down, so a body that trickles in cannot hold a shutdown.
    ///
    /// # Errors
    ///
    /// 408 when the deadline passes first, 503 when the server shuts down first.
    pub async fn read_within<T>(&self, read: impl Future<Output = T>) -> Result<T, ApiError> {
        tokio::select! {
            read = tokio::time::timeout(self.body_timeout, read) => {
                read.map_err(|_| body_timed_out(self.body_timeout))
            }
            () = self.shutdown.cancelled() => Err(shutting_down()),
        }
    }
}

/// What admits a stream, and what it resumes from.
#[derive(Clone, Debug)]
pub struct Streams {
    /// Counts open streams against the limits.
    pub limiter: Arc<StreamLimiter>,
    /// Counts refused streams.
    metrics: Arc<ServerMetrics>,
    /// Longest update id, so the longest `Last-Event-ID`.
    max_id_len: usize,
    /// Longest time a long-poll waits for an event.
    pub poll_timeout: Duration,
}

impl Streams {
    /// Admits one more stream from `peer` against the global and per-address limits; the
    /// permit frees its slot when dropped.
    ///
    /// # Errors
    ///
    /// 503 when the server is full, 429 when `peer` holds too many streams.
    pub fn admit(&self, peer: IpAddr) -> Result<StreamPermit, ApiError> {
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
        if id.as_ref().is_some_and(|id| id.len() > self.max_id_len) {
            return Err(ApiError::bad_request("the last event id is too long"));
        }
        Ok(id)
    }
}

/// The origins allowed to use cookie credentials, and whether cookies are `Secure`.
#[derive(Clone, Debug)]
pub struct Origins {
    /// Origins allowed to use cookie credentials from another site (`--cors-origin`).
    pub allowed: Arc<[String]>,
    /// Whether the server serves HTTPS: its session cookie is then `Secure`, so a browser
    /// never sends it over plain HTTP.
    pub https: bool,
}

impl Origins {
    /// A request authenticated by cookie that changes something must come from an allowed
    /// origin: otherwise any site could make a logged-in browser act (CSRF). Requests
    /// without `Origin` come from non-browser clients or same-origin navigations. An
    /// `Origin` that is not text, or more than one, is refused: no browser sends either.
    /// The same origin is an `http` or `https` origin whose host and port are the request's
    /// `Host` (either scheme, since a proxy in front may terminate TLS).
    ///
    /// # Errors
    ///
    /// 403 when the origin is not allowed.
    pub fn check_cookie_origin(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let mut origins = headers.get_all(header::ORIGIN).iter();
        let Some(origin) = origins.next() else {
            return Ok(());
        };
        let origin = match (origin.to_str(), origins.next()) {
            (Ok(origin), None) => origin,
            _ => {
                return Err(ApiError::forbidden(
                    "cookie-authenticated requests that change something need one Origin \
                     header of plain text",
                ));
            }
        };
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
        let same_origin = host.is_some_and(|host| {
            origin.split_once("://").is_some_and(|(scheme, authority)| {
                matches!(scheme, "http" | "https") && authority == host
            })
        });
        if same_origin || self.allowed.iter().any(|o| o == origin) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "cookie-authenticated requests that change something are not allowed from \
                 origin {origin:?}"
            )))
        }
    }

    /// The session cookie's `Secure` attribute, over HTTPS: a browser then never sends the
    /// cookie over plain HTTP, where anyone on the path could read it.
    pub fn secure(&self) -> &'static str {
        if self.https { "; Secure" } else { "" }
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

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn check(origins: &[&'static [u8]]) -> Result<(), ApiError> {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("herald.test:8080"));
        for origin in origins {
            headers.append(header::ORIGIN, HeaderValue::from_bytes(origin).unwrap());
        }
        Origins {
            allowed: Arc::from(vec!["https://app.example".to_owned()]),
            https: false,
        }
        .check_cookie_origin(&headers)
    }

    #[test]
    fn cookie_writes_come_from_the_same_or_an_allowed_origin() {
        assert!(
            check(&[]).is_ok(),
            "no Origin: not a cross-site browser request"
        );
        assert!(check(&[b"http://herald.test:8080"]).is_ok());
        assert!(
            check(&[b"https://herald.test:8080"]).is_ok(),
            "TLS ended by a proxy"
        );
        assert!(check(&[b"https://app.example"]).is_ok(), "listed");
        for refused in [
            &b"http://evil.example"[..],
            b"null",
            b"",
            b"evil://herald.test:8080",
            b"http://herald.test:8080.evil.example",
            b"http://herald.test",
            b"http://evil.\xc3\xa9xample",
            b"https://app.example.evil",
        ] {
            assert!(check(&[refused]).is_err(), "{refused:?}");
        }
        assert!(
            check(&[b"http://herald.test:8080", b"http://evil.example"]).is_err(),
            "two Origin headers"
        );
    }
}
