//! Retention: pruning records past the configured count or age, from the history first and
//! then from the log. The sequencer runs it between batches, counting back from the head it
//! has committed.

use super::Hub;
use crate::update::now_ms;

impl Hub {
    /// Prunes the history and the log to the retention limits, counted back from `head`.
    pub(super) async fn prune(&self, head: u64) {
        let config = &self.shared.config;
        let below_seq = config
            .retention_count
            .map_or(0, |keep| head.saturating_sub(keep));
        let before_ms = config
            .retention_age
            .map(|age| now_ms().saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX)));
        if below_seq == 0 && before_ms.is_none() {
            return;
        }
        // Memory first: a replay must never find in memory what the log no longer has.
        self.shared
            .history
            .lock()
            .expect("history poisoned")
            .prune(below_seq, before_ms);
        match self.shared.log.prune(below_seq, before_ms).await {
            Ok(0) => {}
            Ok(pruned) => tracing::debug!(pruned, "retention pruned the log"),
            Err(error) => tracing::warn!(%error, "retention failed"),
        }
    }
}
