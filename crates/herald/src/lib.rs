//! Herald's server: the HTTP API over the hub, authorization, limits, metrics, and the
//! command-line interface.
//!
//! This is the only crate that knows about HTTP, axum and status codes.
//!
//! # Layout
//!
//! - `config`: flags and environment variables, validated into a [`config::Config`].
//! - `server`: the router ([`server::app`]), the accept loop and graceful shutdown.
//! - `connection`: one connection: plain HTTP/1 subscriptions streamed directly, the rest
//!   through hyper and the router.
//! - `watchdog`: what ends a connection served by hyper besides its socket: no request
//!   for a while, or an HTTP/2 stream whose client keeps its window shut.
//! - `mercure`: the Mercure publish and subscribe endpoints.
//! - `poll`: long-polling, the JSON answer to a stream URL for clients behind proxies
//!   that buffer streams.
//! - `auth`: finding and verifying JWTs.
//! - `limits`: stream limits and the connection-counting listener.
//! - `tls`: HTTPS: the certificate and key, checked at start and reloaded on SIGHUP.
//! - `metrics`: Prometheus export.
//! - `ratelimit`: keyed token buckets for logins, app changes and publishes.
//! - `error`: [`error::ApiError`], the one error type of the API.
//! - `state`: [`state::AppState`], shared by handlers.
//! - `cli`: the `herald` command and its subcommands.
//! - `app`: the app built on the hub — users, workspaces, collections, their streams and
//!   the web UI.

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
mod connection;
pub mod error;
pub mod limits;
pub mod mercure;
pub mod metrics;
pub mod poll;
pub mod ratelimit;
pub mod server;
pub mod state;
pub mod tls;
mod watchdog;
