//! The follower: with a shared log, the task that reads the log and fans out every record in
//! its order, whichever node appended it.

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

use super::Hub;
use crate::{subscriber::Memo, update::Record};

impl Hub {
    /// In a cluster: reads the shared log from `after` on, and fans out every record in
    /// order, whichever node appended it. It is the only task that fans out, so the
    /// registration hand-over works as on a single node. When the log is unreachable it
    /// retries with backoff; open streams stay up meanwhile.
    pub(super) async fn follower(self, mut after: u64, shutdown: CancellationToken) {
        const BACKOFF_MIN: Duration = Duration::from_millis(100);
        const BACKOFF_MAX: Duration = Duration::from_secs(2);
        let config = &self.shared.config;
        let log = self.shared.log.clone();
        let mut memo = Memo::default();
        let mut backoff = BACKOFF_MIN;
        loop {
            let read = tokio::select! {
                () = shutdown.cancelled() => return,
                read = log.follow(after, config.max_batch) => read,
            };
            let records = match read {
                Ok(records) => {
                    backoff = BACKOFF_MIN;
                    records
                }
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "cannot read the shared event log");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            };
            let Some(last) = records.last().map(|r| r.seq) else {
                self.shared.metrics.log_lag.set(0);
                continue;
            };
            let records: Vec<Arc<Record>> = records.into_iter().map(Arc::new).collect();
            {
                let mut history = self.shared.history.lock().expect("history poisoned");
                if records[0].seq != after + 1 {
                    // Retention removed records this node had not read yet; the history
                    // must stay contiguous, and replays of those read the log (and reset).
                    history.clear();
                }
                for record in &records {
                    history.push(record.clone());
                }
            }
            self.fan_out(&records, &mut memo);
            after = last;
            if records.len() == config.max_batch
                && let Ok(head) = log.head().await
            {
                self.shared
                    .metrics
                    .log_lag
                    .set(i64::try_from(head.saturating_sub(after)).unwrap_or(i64::MAX));
            } else {
                self.shared.metrics.log_lag.set(0);
            }
        }
    }
}
