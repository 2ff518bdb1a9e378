//! In-process tests of the app: its services and policy on a temporary SQLite database,
//! with a real hub and no server. One module per subject; helpers in `support`.

mod accounts;
mod migration;
mod services;
mod support;
