//! How long the video forwarded to one subscriber is kept to answer its NACKs: a few of that
//! subscriber's own round trips, never less than half a second.
//!
//! A NACK reaches the gateway about one round trip after the packet it names was sent, and a
//! receiver asks again once a round trip has passed without the resend. A history of
//! [`ROUND_TRIPS`] round trips therefore answers the first request and the repeats that follow
//! a lost resend, as libwebrtc sizes its own (three round trips). The floor covers every round
//! trip up to about 150 ms, which is most consultations, at half the memory of libwebrtc's one
//! second: the history is most of what a consultation costs the gateway. Janus likewise sizes
//! its queue to the round trip, never under 200 ms.
//!
//! str0m drops a stream's history when its length changes, so it only ever grows, in whole
//! steps, and only when a measured round trip needs more: a link that slowed once stays served
//! for the rest of the consultation.

use std::time::Duration;

/// The shortest history, kept before any round trip is measured and on every short one.
const FLOOR: Duration = Duration::from_millis(500);
/// The longest: str0m's own default, and as much as any receiver's jitter buffer waits.
const CEILING: Duration = Duration::from_secs(3);
/// How many round trips of packets are kept.
const ROUND_TRIPS: u32 = 3;
/// The history grows in steps of this much, so a round trip that wanders does not drop it
/// each time.
const STEP: Duration = Duration::from_millis(250);
/// At most this many packets per second of history (str0m's default count per second),
/// reached only above about 8 Mbit/s.
const PACKETS_PER_SECOND: f64 = 1000.0;

/// One subscriber's resend history length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ResendHistory {
    kept: Duration,
}

impl Default for ResendHistory {
    fn default() -> Self {
        ResendHistory { kept: FLOOR }
    }
}

impl ResendHistory {
    /// How long sent packets are kept.
    pub(crate) fn kept(&self) -> Duration {
        self.kept
    }

    /// The most packets kept: a bound that only a very high bitrate reaches before the age does.
    pub(crate) fn packets(&self) -> usize {
        (self.kept.as_secs_f64() * PACKETS_PER_SECOND) as usize
    }

    /// Lengthens the history to cover `rtt`, if it does not already. True when it grew, and
    /// the streams must be given the new length.
    pub(crate) fn cover(&mut self, rtt: Duration) -> bool {
        let needed = rtt.saturating_mul(ROUND_TRIPS);
        if needed <= self.kept || self.kept >= CEILING {
            return false;
        }
        let steps = needed.as_nanos().div_ceil(STEP.as_nanos());
        let rounded = STEP.saturating_mul(u32::try_from(steps).unwrap_or(u32::MAX));
        self.kept = rounded.min(CEILING);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_floor_is_kept_until_a_round_trip_needs_more() {
        let mut history = ResendHistory::default();
        assert_eq!(history.kept(), ms(500));
        assert_eq!(history.packets(), 500);
        for rtt in [ms(0), ms(20), ms(150), ms(166)] {
            assert!(!history.cover(rtt), "{rtt:?}");
            assert_eq!(history.kept(), ms(500));
        }
    }

    #[test]
    fn a_long_round_trip_lengthens_it_to_three_round_trips_in_whole_steps() {
        let mut history = ResendHistory::default();
        assert!(history.cover(ms(200)));
        assert_eq!(history.kept(), ms(750), "600 ms, rounded up to a step");
        assert!(!history.cover(ms(240)), "720 ms is already covered");
        assert!(history.cover(ms(300)));
        assert_eq!(history.kept(), ms(1000));
        assert_eq!(history.packets(), 1000);
    }

    #[test]
    fn it_never_shrinks() {
        let mut history = ResendHistory::default();
        assert!(history.cover(ms(400)));
        assert_eq!(history.kept(), ms(1250));
        assert!(!history.cover(ms(10)));
        assert_eq!(history.kept(), ms(1250));
    }

    #[test]
    fn it_stops_at_the_ceiling_however_long_the_round_trip() {
        let mut history = ResendHistory::default();
        assert!(history.cover(ms(5000)));
        assert_eq!(history.kept(), Duration::from_secs(3));
        assert!(!history.cover(Duration::MAX));
        assert_eq!(history.kept(), Duration::from_secs(3));
    }
}
