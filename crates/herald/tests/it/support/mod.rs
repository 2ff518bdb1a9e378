//! The shared harness: [`TestServer`] runs the real `herald` binary on its own port and
//! data directory; [`Sse`] reads a stream exactly as it arrives on the wire; token and
//! publish helpers. For the app: [`AppClient`] is one signed-in user speaking JSON,
//! [`AppStream`] one of its event streams, [`AppWorld`] the users and workspaces most app
//! tests start from. [`Redis`] and [`Postgres`] are the real backing services.
//!
//! Every test starts its own server, so tests run in parallel without sharing anything.
//!
//! # Layout
//!
//! - `server`: the `herald` process: start, restart, signals, stderr; `run_herald` for
//!   one-shot commands.
//! - `metrics`: reading `/metrics`.
//! - `hub`: tokens, API errors, publishing, and building subscription requests.
//! - `sse`: [`Sse`], an event stream read through an HTTP client.
//! - `raw`: [`RawStream`], an event stream read over a bare TCP connection.
//! - `app`: the app's users, JSON answers and event streams.
//! - `services`: Redis and PostgreSQL processes.

use std::time::Duration;

mod app;
mod hub;
mod metrics;
mod raw;
mod server;
mod services;
mod sse;

pub(crate) use app::{
    ADMIN_EMAIL, ADMIN_PASSWORD, AppClient, AppEvent, AppStream, AppWorld, PASSWORD, Reply,
    SESSION_COOKIE, assert_utc_timestamp, id_of, keys, text,
};
pub(crate) use hub::{
    ApiError, SubscribeReq, access_token, admin_token, header, token, token_with,
};
pub(crate) use raw::RawStream;
pub(crate) use server::{
    TestServer, herald_command, http_client, keep_tail, run_herald, run_herald_with,
};
pub(crate) use services::{PG_SESSION_NAME, Postgres, Redis};
pub(crate) use sse::{Sse, ids};

/// The HS256 key every test server verifies tokens with.
pub(crate) const KEY: &str = "integration-tests-key-0123456789abcdef";

/// How long [`Sse`] waits for one item before failing the test. Generous: two cores run
/// the test binary and several debug servers at once.
pub(crate) const ITEM_TIMEOUT: Duration = Duration::from_secs(10);
