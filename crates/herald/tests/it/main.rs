//! Integration tests of the `herald` binary: each test starts a real `herald serve` on its
//! own port and data directory and talks to it over HTTP, as Mercure publishers and
//! subscribers do, asserting exact statuses, bodies and bytes on the wire.
//!
//! One test binary for the crate: one link step instead of one per file. The harness lives in
//! `support`; each other module covers one area of behaviour.

mod app;
mod app_accounts;
mod app_commits;
mod app_positions;
mod app_postgres;
mod app_presence;
mod app_streams;
mod auth;
mod cli;
mod cluster;
mod cluster_app;
mod cluster_subscriptions;
mod conformance_auth;
mod conformance_subscribe;
mod conformance_subscriptions;
mod datadir;
mod deadlines;
mod durability;
mod handover;
mod heartbeat;
mod hostile;
mod http2;
mod ids;
mod inprocess;
mod kept;
mod leak;
mod limits;
mod ops;
mod poll;
mod private;
mod pubsub;
mod rate_limits;
mod replay;
mod reserved;
mod retention;
mod slow;
mod support;
mod tls;
