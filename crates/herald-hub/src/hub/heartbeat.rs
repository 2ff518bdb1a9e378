//! Heartbeats: a comment frame pushed to every open stream once per interval
//! ([`HubConfig::heartbeat`](super::HubConfig::heartbeat)), so that an idle stream still
//! carries bytes; a client reopens a stream that stays silent too long.
//!
//! The interval is cut into ticks of [`HEARTBEAT_TICK`], and each tick reaches one slice of
//! the subscribers (subscriber id modulo [`heartbeat_slices`]): a node with many streams
//! never wakes and writes to all of them at once, which would queue every event's delivery
//! behind that burst (100,000 streams would be seconds of writes). Each stream still gets
//! one heartbeat per interval, the first within an interval of opening.

use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::Hub;

/// How often the heartbeat task wakes; each time it reaches one slice of the subscribers.
pub const HEARTBEAT_TICK: Duration = Duration::from_millis(100);

/// Into how many slices the subscribers are cut for a heartbeat every `every`: one per
/// [`HEARTBEAT_TICK`], at least one.
pub fn heartbeat_slices(every: Duration) -> u32 {
    u32::try_from(every.as_millis() / HEARTBEAT_TICK.as_millis())
        .unwrap_or(u32::MAX)
        .max(1)
}

impl Hub {
    /// Pushes a heartbeat to every subscriber once every `every`, one slice at a time,
    /// until `shutdown`.
    pub(super) async fn heartbeat(self, every: Duration, shutdown: CancellationToken) {
        let frame = herald_sse::comment("");
        let slices = heartbeat_slices(every);
        let tick = (every / slices).max(Duration::from_millis(1));
        let mut ticks = tokio::time::interval_at(Instant::now() + tick, tick);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let slices = u64::from(slices);
        let mut slice = 0;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => {
                    let registry = self.shared.registry.read().expect("registry poisoned");
                    for (&id, subscriber) in &registry.all {
                        if id % slices == slice {
                            subscriber.push_heartbeat(&frame);
                        }
                    }
                    drop(registry);
                    slice = (slice + 1) % slices;
                }
            }
        }
    }
}
