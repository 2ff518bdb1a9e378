//! Heartbeats: a comment frame pushed to every open stream once per interval
//! ([`HubConfig::heartbeat`](super::HubConfig::heartbeat)), so that an idle stream still
//! carries bytes; a client reopens a stream that stays silent too long.
//!
//! The interval is cut into [`heartbeat_slices`] ticks of at least [`HEARTBEAT_MIN_TICK`],
//! and each tick reaches one slice of the subscribers (subscriber id modulo the slices,
//! kept apart in the registry so that a tick walks its own slice only): a node with many
//! streams never wakes and writes to all of them at once, which would queue every event's
//! delivery behind that burst (100,000 streams would be seconds of writes). Each stream
//! still gets one heartbeat per interval, the first within an interval of opening.

use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::{Hub, registry::BUCKETS};

/// The shortest time between two ticks of the heartbeat.
pub const HEARTBEAT_MIN_TICK: Duration = Duration::from_millis(100);

/// Into how many slices the subscribers are cut for a heartbeat every `every`: as many
/// ticks of [`HEARTBEAT_MIN_TICK`] as fit in it, at most 128, rounded down to a power of
/// two; at least one.
pub fn heartbeat_slices(every: Duration) -> u32 {
    let ticks = (every.as_millis() / HEARTBEAT_MIN_TICK.as_millis()).clamp(1, BUCKETS as u128);
    let ticks = u32::try_from(ticks).expect("at most BUCKETS");
    1 << ticks.ilog2()
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
        let slices = slices as usize;
        let mut slice = 0;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => {
                    let registry = self.shared.registry.read().expect("registry poisoned");
                    for subscriber in registry.all.slice(slice, slices) {
                        subscriber.push_heartbeat(&frame);
                    }
                    drop(registry);
                    slice = (slice + 1) % slices;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_are_ticks_of_at_least_the_minimum_up_to_the_buckets() {
        let ms = Duration::from_millis;
        for (every, slices) in [
            (ms(1), 1),
            (ms(50), 1),
            (ms(200), 2),
            (ms(1_000), 8),
            (ms(15_000), 128),
            (Duration::from_secs(3_600), 128),
        ] {
            assert_eq!(heartbeat_slices(every), slices, "{every:?}");
            assert!(every / slices >= HEARTBEAT_MIN_TICK || slices == 1);
            assert_eq!(BUCKETS as u32 % slices, 0);
        }
    }
}
