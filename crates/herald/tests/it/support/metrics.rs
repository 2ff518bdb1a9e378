//! Reading a server's `/metrics`: one sample, or waiting until one reaches a value.

use std::time::Duration;

use reqwest::StatusCode;
use tokio::time::{Instant, sleep};

use super::TestServer;

impl TestServer {
    /// The text of `GET /metrics`.
    pub(crate) async fn metrics_text(&self) -> String {
        let response = self
            .http
            .get(format!("{}/metrics", self.url()))
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.expect("read /metrics")
    }

    /// The value of the sample `name`, with its labels if any, exactly as exported.
    ///
    /// # Panics
    ///
    /// If the server does not export it.
    pub(crate) async fn metric(&self, name: &str) -> f64 {
        let text = self.metrics_text().await;
        sample(&text, name).unwrap_or_else(|| panic!("no metric {name:?} in:\n{text}"))
    }

    /// Polls the metric `name` until `accept` holds, for at most `within`; returns the last
    /// value seen.
    ///
    /// # Panics
    ///
    /// When the deadline passes first.
    pub(crate) async fn wait_metric(
        &self,
        name: &str,
        within: Duration,
        accept: impl Fn(f64) -> bool,
    ) -> f64 {
        let deadline = Instant::now() + within;
        loop {
            let value = self.metric(name).await;
            if accept(value) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "metric {name} is still {value} after {within:?}"
            );
            sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The sample `name` in an OpenMetrics text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| {
            value
                .parse()
                .unwrap_or_else(|_| panic!("metric {name} has value {value:?}"))
        })
}
