//! The server's routes: Mercure, the app's REST API and web UI, and operations.
//!
//! - `mercure`: the Mercure publish and subscribe endpoints.
//! - `app`: the app's REST API over [`herald_app::App`]: thin handlers that parse, check
//!   the caller and call the app.
//! - `assets`: the web UI and `herald.js`, compiled in.

pub mod app;
pub mod assets;
pub mod mercure;
