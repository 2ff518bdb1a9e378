//! Heartbeats: a comment frame pushed to every open stream at a fixed interval
//! ([`HubConfig::heartbeat`](super::HubConfig::heartbeat)), so that an idle stream still
//! carries bytes; a client reopens a stream that stays silent too long.

use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::Hub;

impl Hub {
    /// Pushes a heartbeat to every subscriber every `every`, until `shutdown`.
    pub(super) async fn heartbeat(self, every: Duration, shutdown: CancellationToken) {
        let frame = herald_sse::comment("");
        let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => {
                    let registry = self.shared.registry.read().expect("registry poisoned");
                    for subscriber in registry.all.values() {
                        subscriber.push_heartbeat(&frame);
                    }
                }
            }
        }
    }
}
