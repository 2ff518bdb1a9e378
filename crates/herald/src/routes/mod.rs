//! The server's routes: Mercure, the app's REST API and web UI, and operations. Each
//! handler takes the substates of [`ServerState`](crate::state::ServerState) it needs.
//!
//! - `mercure`: the Mercure publish and subscribe endpoints.
//! - `poll`: long-polling, the JSON answer to a stream URL for clients behind proxies
//!   that buffer streams.
//! - `app`: the app's REST API over [`herald_app::App`]: thin handlers that find the
//!   caller, parse the request and call the app.
//! - `assets`: the web UI and `herald.js`, compiled in.
//! - `ops`: `/healthz`, `/readyz`, `/metrics`.

pub mod app;
pub mod assets;
pub mod mercure;
pub mod ops;
pub mod poll;
