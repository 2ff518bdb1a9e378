//! Herald's server: the HTTP API over the hub, authorization, limits, metrics, and the
//! command-line interface.
//!
//! This is the only crate that knows about HTTP, axum and status codes. The app (users,
//! workspaces, collections and their streams) is `herald-app`; its errors become answers
//! in one place, `impl From<AppError> for ApiError` in `error`.
//!
//! # Layout
//!
//! - `config`: flags and environment variables, validated into a [`config::Config`].
//! - `server`: the router ([`server::router`]), the accept loop and graceful shutdown.
//! - `routes`: the handlers: Mercure and long-polling, the app's REST API over
//!   [`herald_app::App`] and its web UI, and operations (`/healthz`, `/readyz`,
//!   `/metrics`).
//! - `credentials`: finding a request's credentials (bearer header, cookie, query), for
//!   Mercure and the app alike.
//! - `connection`: one connection: plain HTTP/1 subscriptions streamed directly, the rest
//!   through hyper and the router.
//! - `watchdog`: what ends a connection served by hyper besides its socket: no request
//!   for a while, or an HTTP/2 stream whose client keeps its window shut.
//! - `auth`: verifying JWTs, and [`auth::Tokens`], the keys and rules of Mercure tokens.
//! - `limits`: stream limits and the connection-counting listener.
//! - `tls`: HTTPS: the certificate and key, checked at start and reloaded on SIGHUP.
//! - `metrics`: Prometheus export.
//! - `ratelimit`: keyed token buckets for logins, app changes and publishes.
//! - `error`: [`error::ApiError`], the one error type of the API.
//! - `state`: [`state::ServerState`], shared by handlers as substates (`FromRef`).
//! - `cli`: the `herald` command and its subcommands.

pub mod auth;
pub mod cli;
pub mod config;
mod connection;
pub mod credentials;
pub mod error;
pub mod limits;
pub mod metrics;
pub mod ratelimit;
pub mod routes;
pub mod server;
pub mod state;
pub mod tls;
mod watchdog;
