//! One server's result in one scenario ([`Outcome`]), as stored under
//! `target/bench-results/{full,quick}/<scenario>/<server>.json` and read back for rendering.
//!
//! Its reports are herald-bench's own [`Report`] type, so a field renamed there fails to
//! compile here, and a stored result is checked against the types as it is read.

use std::collections::{BTreeMap, BTreeSet};

use herald_bench::Report;
use serde::{Deserialize, Serialize};

use super::procs::TreeSample;

/// One server's result in one scenario.
///
/// Every field has a default, so a result stored by an older harness still reads.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub(super) struct Outcome {
    /// The `cargo xtask bench …` command that ran it.
    pub(super) command: String,
    /// [`Scenario::id`](super::scenarios::Scenario::id).
    pub(super) scenario: String,
    /// [`Peer::name`](super::peers::Peer::name).
    pub(super) peer: String,
    /// When it ran, `YYYY-MM-DD HH:MM UTC`.
    pub(super) date: String,
    /// How the server was started, for BENCHMARKS.md.
    pub(super) server_command: String,
    /// Label -> the `herald-bench` command line.
    pub(super) bench_commands: BTreeMap<String, String>,
    /// Label -> herald-bench's report.
    pub(super) reports: BTreeMap<String, Report>,
    /// Label -> RSS and CPU of the whole process tree around that run (`None`: the sampler
    /// failed).
    pub(super) trees: BTreeMap<String, Option<TreeSample>>,
    /// Scenario-specific figures: S3's most connections, for Herald.
    pub(super) extra: Option<MaxConnections>,
    /// Why the run failed, if it did; the reports before the failure are kept.
    pub(super) error: Option<String>,
    /// Labels of reports from a herald-bench that did not yet tell ordering violations from
    /// reversals of concurrent publishes: their `out_of_order` counts every reversal. Found
    /// when reading, never stored.
    #[serde(skip)]
    pub(super) unclassified: BTreeSet<String>,
}

/// S3 for Herald: the most connections one process holds, with two bench processes at once.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub(super) struct MaxConnections {
    /// Subscribers asked for, both processes together.
    pub(super) requested: u64,
    /// Streams open, both processes together.
    pub(super) connected: u64,
    /// The server's RSS before the first process connected, bytes.
    pub(super) rss_before: Option<f64>,
    /// The server's RSS with both processes connected, bytes.
    pub(super) rss_held: Option<f64>,
    /// `(rss_held - rss_before) / connected`.
    pub(super) rss_per_conn_bytes: Option<f64>,
    /// `rss_before + 1,000,000 × rss_per_conn_bytes`.
    pub(super) projection_1m_bytes: Option<f64>,
    /// The two `herald-bench` command lines.
    pub(super) bench_commands: Vec<String>,
    /// The two processes' reports.
    pub(super) reports: Vec<Report>,
}

impl Outcome {
    /// Reads a stored outcome.
    ///
    /// # Errors
    ///
    /// When `text` is not JSON of an outcome's shape.
    pub(super) fn parse(text: &str) -> serde_json::Result<Outcome> {
        let mut outcome: Outcome = serde_json::from_str(text)?;
        let view: UnclassifiedView = serde_json::from_str(text)?;
        outcome.unclassified = view
            .reports
            .into_iter()
            .filter(|(_, r)| {
                r.deliveries
                    .as_ref()
                    .is_some_and(|d| d.out_of_order_concurrent.is_none())
            })
            .map(|(label, _)| label)
            .collect();
        Ok(outcome)
    }

    /// The JSON stored: pretty, keys in alphabetical order.
    ///
    /// # Errors
    ///
    /// Never in practice: every field serializes.
    pub(super) fn to_json(&self) -> serde_json::Result<String> {
        // Through a `Value`, whose objects keep their keys sorted: the layout results have
        // always been stored in.
        serde_json::to_string_pretty(&serde_json::to_value(self)?)
    }

    /// Whether the report under `label` tells ordering violations from reversals of
    /// concurrent publishes (see [`Outcome::unclassified`]).
    pub(super) fn classified(&self, label: &str) -> bool {
        !self.unclassified.contains(label)
    }
}

/// The one thing [`Report`]'s defaults hide: whether a stored report has
/// `deliveries.out_of_order_concurrent` at all.
#[derive(Deserialize)]
struct UnclassifiedView {
    #[serde(default)]
    reports: BTreeMap<String, ReportView>,
}

#[derive(Deserialize)]
struct ReportView {
    #[serde(default)]
    deliveries: Option<DeliveriesView>,
}

#[derive(Deserialize)]
struct DeliveriesView {
    #[serde(default)]
    out_of_order_concurrent: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A result stored by the harness before its reports were typed (an S5 quick run of
    /// Herald) reads into the types and writes back byte for byte.
    #[test]
    fn stored_outcome_round_trips() {
        let text = include_str!("testdata/outcome-s5-quick.json");
        let outcome = Outcome::parse(text).unwrap();
        let run = &outcome.reports["run"];
        assert_eq!(run.mode, "run");
        assert_eq!(run.subscribers.protocol, "http/1.1");
        assert!(run.reconnect.is_some());
        assert!(outcome.classified("run"));
        assert_eq!(outcome.to_json().unwrap(), text);
    }

    /// A report with a mode herald-bench never writes is refused, not read as empty.
    #[test]
    fn unknown_mode_is_refused() {
        let err = Outcome::parse(r#"{"reports": {"run": {"mode": "walk"}}}"#).unwrap_err();
        assert!(err.to_string().contains("unknown name `walk`"), "{err}");
    }
}
