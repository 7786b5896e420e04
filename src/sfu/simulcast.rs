//! Simulcast layer selection: which one of a publisher's simulcast layers each subscriber gets.
//!
//! A browser that publishes in simulcast sends the same camera two or three times on one
//! m-line, each copy (a layer, named by its rid) at another resolution and bitrate. A
//! subscriber's one outgoing track can carry exactly one of them at a time. Per subscriber
//! and per source track, this module:
//!
//! - measures each layer's bitrate over a sliding window from the frames that pass through,
//!   and orders the layers by it (rid names vary between browsers: q/h/f, 0/1/2, l/m/h);
//! - drops a layer that stopped arriving (the publisher's own uplink shed it) from the choice;
//! - shares the subscriber's bandwidth estimate between its simulcast tracks ([`allocate`]),
//!   with hysteresis: a layer is kept while it fits, but taken up only with headroom, and not
//!   soon after a step down;
//! - switches only at a keyframe of the new layer (one that does not depend on frames of
//!   another layer), and keeps the old layer flowing until then;
//! - rewrites media time across a switch, so the subscriber sees one continuous timeline
//!   although each layer has its own RTP clock offset.
//!
//! Pure logic: time and sizes are passed in; nothing here touches str0m's state machine.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use str0m::media::{MediaTime, Rid};

/// How far back a bitrate is measured: long enough that one keyframe does not reorder layers.
pub(crate) const RATE_WINDOW: Duration = Duration::from_secs(2);

/// A layer must have been seen this long before it is chosen: its first frames (a keyframe,
/// usually) say little about its rate.
pub(crate) const MIN_OBSERVED: Duration = Duration::from_millis(500);

/// A layer with no frame for this long has stopped arriving and cannot be chosen.
pub(crate) const STALE_AFTER: Duration = Duration::from_secs(1);

/// A higher layer is taken only when the budget exceeds its rate by this factor; the current
/// layer is kept while its plain rate fits. The gap between the two is the hysteresis band.
pub(crate) const UPGRADE_HEADROOM: f64 = 1.25;

/// After stepping down, no step up for this long, so an estimate near a threshold cannot
/// make the picture flap.
pub(crate) const UPGRADE_HOLD: Duration = Duration::from_secs(4);

/// How often a subscriber's layers are reconsidered (on the next frame after this long).
pub(crate) const ALLOCATION_INTERVAL: Duration = Duration::from_millis(250);

/// While a switch waits for its keyframe, the request is repeated this often (the publisher's
/// throttle coalesces repeats), in case a request or the keyframe itself was lost.
pub(crate) const KEYFRAME_RETRY: Duration = Duration::from_secs(1);

/// Frames are summed in slots this long: the window is measured to within one slot, in
/// memory that does not grow with the frame rate.
const RATE_SLOT: Duration = Duration::from_millis(100);

/// A bitrate measured over a sliding window of recent frames.
#[derive(Debug, Default)]
pub(crate) struct RateMeter {
    /// When each slot inside the window opened, and the bytes of the frames that fell in it.
    slots: VecDeque<(Instant, usize)>,
    /// When the first frame was seen, so a young meter divides by its real age.
    first: Option<Instant>,
    /// When the last frame was seen.
    last: Option<Instant>,
}

impl RateMeter {
    pub(crate) fn record(&mut self, now: Instant, bytes: usize) {
        self.first.get_or_insert(now);
        self.last = Some(now);
        match self.slots.back_mut() {
            Some((opened, sum)) if now.saturating_duration_since(*opened) < RATE_SLOT => *sum += bytes,
            _ => self.slots.push_back((now, bytes)),
        }
        while self.slots.front().is_some_and(|(t, _)| now.saturating_duration_since(*t) > RATE_WINDOW) {
            self.slots.pop_front();
        }
    }

    /// Bits per second over the window (or over the meter's age, if younger, but never less
    /// than [`MIN_OBSERVED`], so one early frame does not read as a huge rate).
    pub(crate) fn bitrate(&self, now: Instant) -> u64 {
        let Some(first) = self.first else {
            return 0;
        };
        let bytes: usize =
            self.slots.iter().filter(|(t, _)| now.saturating_duration_since(*t) <= RATE_WINDOW).map(|(_, b)| *b).sum();
        let span = now.saturating_duration_since(first).clamp(MIN_OBSERVED, RATE_WINDOW);
        (bytes as f64 * 8.0 / span.as_secs_f64()) as u64
    }

    /// How long frames have been seen for.
    fn age(&self, now: Instant) -> Duration {
        self.first.map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
    }

    /// How long since the last frame.
    fn silence(&self, now: Instant) -> Duration {
        self.last.map_or(Duration::MAX, |t| now.saturating_duration_since(t))
    }
}

/// What [`allocate`] knows of one simulcast track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Candidates {
    /// The layers that can be chosen, as bitrates in ascending order.
    pub(crate) rates: Vec<u64>,
    /// The layer chosen last time, if it can still be chosen.
    pub(crate) current: Option<usize>,
    /// False shortly after a step down (see [`UPGRADE_HOLD`]).
    pub(crate) may_upgrade: bool,
}

impl Candidates {
    /// What this track would take with ample bandwidth: enough to step up to its top layer.
    pub(crate) fn wanted(&self) -> u64 {
        self.rates.last().map_or(0, |top| (*top as f64 * UPGRADE_HEADROOM) as u64)
    }

    /// What taking `layer` counts against the budget, or `None` if it may not be taken.
    ///
    /// The lowest layer and any layer up to the current one cost their rate; a layer above the
    /// current one costs its rate plus headroom, and only when upgrades are allowed.
    fn cost(&self, layer: usize) -> Option<u64> {
        let rate = *self.rates.get(layer)?;
        let held = layer == 0 || self.current.is_some_and(|c| layer <= c);
        if held {
            Some(rate)
        } else if self.may_upgrade {
            Some((rate as f64 * UPGRADE_HEADROOM) as u64)
        } else {
            None
        }
    }
}

/// Shares `budget` (bits per second) between a subscriber's simulcast tracks: the index of the
/// chosen layer in each track's `rates`, or `None` for a track with nothing to choose from.
///
/// Every track gets at least its lowest layer, even over budget: in a consultation a picture
/// that stutters is better than none, and the lowest layer is small. The rest is raised one
/// step at a time, round robin, while the steps fit, so two tracks share a tight budget
/// rather than one taking it all.
pub(crate) fn allocate(budget: u64, tracks: &[Candidates]) -> Vec<Option<usize>> {
    let mut chosen: Vec<Option<usize>> = tracks.iter().map(|t| (!t.rates.is_empty()).then_some(0)).collect();
    let mut spent: u64 = tracks.iter().filter_map(|t| t.cost(0)).sum();
    loop {
        let mut raised = false;
        for (track, choice) in tracks.iter().zip(chosen.iter_mut()) {
            let Some(layer) = *choice else {
                continue;
            };
            let (Some(now), Some(next)) = (track.cost(layer), track.cost(layer + 1)) else {
                continue;
            };
            let step = next.saturating_sub(now);
            if spent.saturating_add(step) <= budget {
                *choice = Some(layer + 1);
                spent += step;
                raised = true;
            }
        }
        if !raised {
            return chosen;
        }
    }
}

/// One layer of a source, as one subscriber sees it.
#[derive(Debug)]
struct Layer {
    rid: Rid,
    meter: RateMeter,
}

/// The layer a subscriber should get, and when it was last asked for.
#[derive(Debug, Clone, Copy)]
struct Target {
    rid: Rid,
    /// When a keyframe of this layer was last requested; `None` once it is being forwarded.
    requested: Option<Instant>,
}

/// One simulcast source track as one subscriber receives it.
#[derive(Debug, Default)]
pub(crate) struct SimulcastForwarder {
    /// Every layer seen so far, in order of first appearance.
    layers: Vec<Layer>,
    /// The layer whose frames are written to the subscriber now.
    forwarding: Option<Rid>,
    /// The layer chosen by the last allocation; differs from `forwarding` while its keyframe
    /// is awaited.
    target: Option<Target>,
    /// When the target last stepped down, for [`UPGRADE_HOLD`].
    last_step_down: Option<Instant>,
    timeline: Timeline,
}

impl SimulcastForwarder {
    /// Measures a frame of layer `rid`; every frame of the source passes here.
    pub(crate) fn observe(&mut self, rid: Rid, bytes: usize, now: Instant) {
        let index = match self.layers.iter().position(|l| l.rid == rid) {
            Some(index) => index,
            None => {
                self.layers.push(Layer { rid, meter: RateMeter::default() });
                self.layers.len() - 1
            }
        };
        self.layers[index].meter.record(now, bytes);
    }

    /// Decides whether a frame of layer `rid` goes to the subscriber, and at which media time.
    ///
    /// The forwarded layer passes; the target layer takes over at its first keyframe.
    pub(crate) fn pass(&mut self, rid: Rid, keyframe: bool, time: MediaTime, arrived: Instant) -> Option<MediaTime> {
        let target = self.target.as_mut()?;
        if target.rid == rid && self.forwarding != Some(rid) && keyframe {
            self.forwarding = Some(rid);
            target.requested = None;
            self.timeline.switch(time, arrived);
        }
        (self.forwarding == Some(rid)).then(|| self.timeline.map(time, arrived))
    }

    /// The layer being forwarded, whose keyframes a subscriber's picture-loss report wants.
    pub(crate) fn forwarding(&self) -> Option<Rid> {
        self.forwarding
    }

    /// The layers that can be chosen now, lowest rate first, and what [`allocate`] needs.
    pub(crate) fn candidates(&self, now: Instant) -> (Vec<Rid>, Candidates) {
        let mut eligible: Vec<(u64, Rid)> = self
            .layers
            .iter()
            .filter(|l| l.meter.age(now) >= MIN_OBSERVED && l.meter.silence(now) <= STALE_AFTER)
            .map(|l| (l.meter.bitrate(now), l.rid))
            .collect();
        eligible.sort_by_key(|(rate, _)| *rate);
        let order: Vec<Rid> = eligible.iter().map(|(_, rid)| *rid).collect();
        let current = self.target.and_then(|t| order.iter().position(|r| *r == t.rid));
        let may_upgrade = self.last_step_down.is_none_or(|t| now.saturating_duration_since(t) >= UPGRADE_HOLD);
        let rates = eligible.into_iter().map(|(rate, _)| rate).collect();
        (order, Candidates { rates, current, may_upgrade })
    }

    /// Applies an allocation's choice (an index into `order`, from [`Self::candidates`]).
    /// Returns the layer to ask the publisher for a keyframe of: a new target, or one whose
    /// keyframe is overdue.
    pub(crate) fn choose(&mut self, order: &[Rid], choice: Option<usize>, now: Instant) -> Option<Rid> {
        let Some(rid) = choice.and_then(|i| order.get(i)).copied() else {
            // Nothing can be chosen (no layer arrives): keep what flows, ask for nothing.
            return None;
        };
        match self.target {
            Some(target) if target.rid == rid => {
                let overdue = target.requested.is_some_and(|t| now.saturating_duration_since(t) >= KEYFRAME_RETRY);
                if overdue {
                    self.target = Some(Target { rid, requested: Some(now) });
                    return Some(rid);
                }
                None
            }
            previous => {
                let was = previous.and_then(|t| order.iter().position(|r| *r == t.rid));
                let now_at = order.iter().position(|r| *r == rid);
                if was.is_some_and(|was| now_at.is_some_and(|at| at < was)) {
                    self.last_step_down = Some(now);
                }
                if self.forwarding == Some(rid) {
                    // Back to the layer still flowing (a switch was abandoned): no keyframe needed.
                    self.target = Some(Target { rid, requested: None });
                    return None;
                }
                self.target = Some(Target { rid, requested: Some(now) });
                Some(rid)
            }
        }
    }
}

/// Keeps the media time written to a subscriber continuous when the forwarded layer changes.
#[derive(Debug, Default)]
struct Timeline {
    /// Added (wrapping, as RTP time wraps) to the forwarded layer's media time.
    offset: u64,
    /// The last media time written and the arrival time of its frame.
    last: Option<(MediaTime, Instant)>,
}

impl Timeline {
    /// Aligns a new layer so its first frame follows the last one written by the time that
    /// passed between their arrivals (at least one tick, so time never stands still).
    fn switch(&mut self, time: MediaTime, arrived: Instant) {
        let Some((last_time, last_arrived)) = self.last else {
            return;
        };
        let frequency = time.frequency();
        let elapsed = arrived.saturating_duration_since(last_arrived);
        let ticks = (elapsed.as_micros() * u128::from(frequency.get()) / 1_000_000).max(1) as u64;
        let follows = last_time.rebase(frequency).numer().wrapping_add(ticks);
        self.offset = follows.wrapping_sub(time.numer());
    }

    fn map(&mut self, time: MediaTime, arrived: Instant) -> MediaTime {
        let mapped = MediaTime::new(time.numer().wrapping_add(self.offset), time.frequency());
        self.last = Some((mapped, arrived));
        mapped
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use str0m::media::Frequency;

    use super::*;

    const FRAME: Duration = Duration::from_millis(33);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn candidates(rates: &[u64], current: Option<usize>) -> Candidates {
        Candidates { rates: rates.to_vec(), current, may_upgrade: true }
    }

    /// Feeds `seconds` of 30 fps frames of every `(rid, kbps)` layer into `forwarder`, starting
    /// at `from`, and returns the time reached.
    fn feed(forwarder: &mut SimulcastForwarder, layers: &[(&str, u64)], from: Instant, duration: Duration) -> Instant {
        let mut now = from;
        while now < from + duration {
            for (rid, kbps) in layers {
                let bytes = (kbps * 1000 / 8 * FRAME.as_millis() as u64 / 1000) as usize;
                forwarder.observe(Rid::from(*rid), bytes, now);
            }
            now += FRAME;
        }
        now
    }

    /// One allocation for a subscriber with just this track; returns the chosen rid.
    fn reallocate(forwarder: &mut SimulcastForwarder, budget_kbps: u64, now: Instant) -> Option<Rid> {
        let (order, candidates) = forwarder.candidates(now);
        let choice = allocate(budget_kbps * 1000, std::slice::from_ref(&candidates))[0];
        forwarder.choose(&order, choice, now);
        forwarder.target.map(|t| t.rid)
    }

    #[test]
    fn a_meter_measures_its_window() {
        let t0 = Instant::now();
        let mut meter = RateMeter::default();
        assert_eq!(meter.bitrate(t0), 0);
        // 1250 bytes every 10 ms is one megabit per second.
        for i in 0..500 {
            meter.record(t0 + ms(i * 10), 1250);
        }
        let rate = meter.bitrate(t0 + ms(4990));
        assert!((990_000..=1_010_000).contains(&rate), "{rate}");
        // Frames stop: the window empties and the rate falls away.
        assert_eq!(meter.bitrate(t0 + ms(4990) + RATE_WINDOW + ms(1)), 0);
        assert!(meter.slots.len() <= 21, "the meter keeps only its window, in slots");
    }

    #[test]
    fn a_young_meter_is_not_fooled_by_its_first_frame() {
        let t0 = Instant::now();
        let mut meter = RateMeter::default();
        meter.record(t0, 50_000);
        // One 50 kB keyframe read over the minimum span, not over a microsecond.
        assert_eq!(meter.bitrate(t0 + ms(1)), 800_000);
    }

    #[test]
    fn layers_are_ordered_by_measured_rate_whatever_their_names() {
        let t0 = Instant::now();
        for names in [["q", "h", "f"], ["0", "1", "2"], ["h", "m", "l"]] {
            let mut forwarder = SimulcastForwarder::default();
            // The names' own order says nothing: here the first name is the biggest layer.
            let layers = [(names[0], 1500), (names[1], 150), (names[2], 500)];
            let now = feed(&mut forwarder, &layers, t0, ms(1000));
            let (order, candidates) = forwarder.candidates(now);
            let expected: Vec<Rid> = [names[1], names[2], names[0]].into_iter().map(Rid::from).collect();
            assert_eq!(order, expected);
            assert!(candidates.rates.windows(2).all(|w| w[0] < w[1]), "{candidates:?}");
        }
    }

    #[test]
    fn young_and_stopped_layers_cannot_be_chosen() {
        let t0 = Instant::now();
        let mut forwarder = SimulcastForwarder::default();
        let now = feed(&mut forwarder, &[("q", 150), ("f", 1500)], t0, ms(300));
        assert!(forwarder.candidates(now).0.is_empty(), "layers seen for 300 ms were chosen");
        let now = feed(&mut forwarder, &[("q", 150), ("f", 1500)], now, ms(300));
        assert_eq!(forwarder.candidates(now).0.len(), 2);
        // The publisher's uplink sheds its top layer.
        let now = feed(&mut forwarder, &[("q", 150)], now, STALE_AFTER + ms(100));
        assert_eq!(forwarder.candidates(now).0, vec![Rid::from("q")]);
        assert_eq!(reallocate(&mut forwarder, 10_000, now), Some(Rid::from("q")));
    }

    #[test]
    fn one_track_gets_the_highest_layer_that_fits() {
        let rates = [150_000, 500_000, 1_500_000];
        // From nothing, a layer above the lowest needs its rate plus headroom.
        assert_eq!(allocate(100_000, &[candidates(&rates, None)]), vec![Some(0)]);
        assert_eq!(allocate(600_000, &[candidates(&rates, None)]), vec![Some(0)]);
        assert_eq!(allocate(625_000, &[candidates(&rates, None)]), vec![Some(1)]);
        assert_eq!(allocate(1_875_000, &[candidates(&rates, None)]), vec![Some(2)]);
        // The current layer is kept while its plain rate fits.
        assert_eq!(allocate(1_500_000, &[candidates(&rates, Some(2))]), vec![Some(2)]);
        assert_eq!(allocate(1_499_999, &[candidates(&rates, Some(2))]), vec![Some(1)]);
        // A track with nothing to choose from gets nothing.
        assert_eq!(allocate(1_000_000, &[candidates(&[], None)]), vec![None]);
    }

    #[test]
    fn no_upgrade_during_the_hold_but_downgrades_still_happen() {
        let rates = [150_000, 500_000, 1_500_000];
        let held = Candidates { rates: rates.to_vec(), current: Some(1), may_upgrade: false };
        assert_eq!(allocate(10_000_000, std::slice::from_ref(&held)), vec![Some(1)]);
        assert_eq!(allocate(400_000, &[held]), vec![Some(0)]);
    }

    #[test]
    fn two_tracks_share_a_tight_budget() {
        let rates = [100_000, 300_000, 900_000];
        let both = [candidates(&rates, None), candidates(&rates, None)];
        // Enough for both at the middle layer, not for one at the top.
        assert_eq!(allocate(800_000, &both), vec![Some(1), Some(1)]);
        assert_eq!(allocate(2_400_000, &both), vec![Some(2), Some(2)]);
    }

    #[test]
    fn switches_wait_for_a_keyframe_of_the_new_layer() {
        let t0 = Instant::now();
        let mut forwarder = SimulcastForwarder::default();
        let layers = [("l", 150), ("h", 1500)];
        let now = feed(&mut forwarder, &layers, t0, ms(600));
        let time = |n: u64| MediaTime::from_90khz(n);

        // Nothing is chosen yet: nothing passes.
        assert_eq!(forwarder.pass(Rid::from("h"), true, time(0), now), None);

        // Plenty of bandwidth: the top layer is chosen and a keyframe asked of it.
        let (order, c) = forwarder.candidates(now);
        assert_eq!(forwarder.choose(&order, allocate(10_000_000, &[c])[0], now), Some(Rid::from("h")));
        assert_eq!(forwarder.pass(Rid::from("h"), false, time(3000), now), None, "a delta frame before the keyframe");
        assert_eq!(forwarder.pass(Rid::from("l"), true, time(3000), now), None, "another layer's keyframe");
        assert!(forwarder.pass(Rid::from("h"), true, time(6000), now).is_some());
        assert!(forwarder.pass(Rid::from("h"), false, time(9000), now).is_some());
        assert_eq!(forwarder.pass(Rid::from("l"), false, time(9000), now), None);
        assert_eq!(forwarder.forwarding(), Some(Rid::from("h")));

        // The estimate falls: the low layer is chosen, but the high one flows until the low
        // one's keyframe.
        let (order, c) = forwarder.candidates(now);
        assert_eq!(forwarder.choose(&order, allocate(200_000, &[c])[0], now), Some(Rid::from("l")));
        assert!(forwarder.pass(Rid::from("h"), false, time(12_000), now).is_some());
        assert_eq!(forwarder.pass(Rid::from("l"), false, time(12_000), now), None);
        assert!(forwarder.pass(Rid::from("l"), true, time(15_000), now).is_some());
        assert_eq!(forwarder.pass(Rid::from("h"), false, time(15_000), now), None);
        assert_eq!(forwarder.forwarding(), Some(Rid::from("l")));
    }

    #[test]
    fn an_overdue_keyframe_is_asked_for_again() {
        let t0 = Instant::now();
        let mut forwarder = SimulcastForwarder::default();
        let now = feed(&mut forwarder, &[("f", 1000)], t0, ms(600));
        let (order, _) = forwarder.candidates(now);
        assert_eq!(forwarder.choose(&order, Some(0), now), Some(Rid::from("f")));
        assert_eq!(forwarder.choose(&order, Some(0), now + ms(500)), None, "asked again too soon");
        assert_eq!(forwarder.choose(&order, Some(0), now + KEYFRAME_RETRY), Some(Rid::from("f")));
        // Once the keyframe came, nothing more is asked.
        forwarder.pass(Rid::from("f"), true, MediaTime::from_90khz(0), now);
        assert_eq!(forwarder.choose(&order, Some(0), now + ms(5000)), None);
    }

    #[test]
    fn an_estimate_wobbling_around_a_threshold_does_not_flap() {
        let t0 = Instant::now();
        let mut forwarder = SimulcastForwarder::default();
        let layers = [("q", 150), ("h", 500), ("f", 1500)];
        let mut now = feed(&mut forwarder, &layers, t0, ms(1000));
        let mut chosen = Vec::new();
        // The estimate swings ±10% around the top layer's rate every quarter second for 20 s.
        for step in 0..80 {
            let budget = if step % 2 == 0 { 1_650 } else { 1_350 };
            now = feed(&mut forwarder, &layers, now, ms(250));
            chosen.push(reallocate(&mut forwarder, budget, now));
        }
        let switches = chosen.windows(2).filter(|w| w[0] != w[1]).count();
        assert!(switches <= 1, "{switches} switches: {chosen:?}");

        // A swing that crosses the whole band is followed, but at most once per hold.
        let mut chosen = Vec::new();
        for step in 0..80 {
            let budget = if step % 2 == 0 { 2_000 } else { 1_000 };
            now = feed(&mut forwarder, &layers, now, ms(250));
            chosen.push(reallocate(&mut forwarder, budget, now));
        }
        let ups = chosen.windows(2).filter(|w| w[0] == Some(Rid::from("h")) && w[1] == Some(Rid::from("f"))).count();
        let limit = (80 * 250 / UPGRADE_HOLD.as_millis() + 1) as usize;
        assert!(ups <= limit, "{ups} upgrades in 20 s: {chosen:?}");
    }

    #[test]
    fn media_time_stays_continuous_across_a_switch() {
        let t0 = Instant::now();
        let mut forwarder = SimulcastForwarder::default();
        let now = feed(&mut forwarder, &[("a", 150), ("b", 1500)], t0, ms(600));
        let (order, _) = forwarder.candidates(now);
        // The two layers' RTP clocks have unrelated offsets, as they do in browsers.
        let (a_base, b_base) = (1_000_000u64, 4_000_000_000u64);
        forwarder.choose(&order, Some(0), now);
        let first = forwarder.pass(Rid::from("a"), true, MediaTime::from_90khz(a_base), now).unwrap();
        let second = forwarder.pass(Rid::from("a"), false, MediaTime::from_90khz(a_base + 3000), now + FRAME).unwrap();
        assert_eq!(second.numer() - first.numer(), 3000, "one layer keeps its own spacing");

        forwarder.choose(&order, Some(1), now + FRAME);
        let switched = forwarder.pass(Rid::from("b"), true, MediaTime::from_90khz(b_base), now + FRAME * 2).unwrap();
        assert_eq!(switched.numer().wrapping_sub(second.numer()), 2970, "33 ms later, in 90 kHz ticks");
        let next =
            forwarder.pass(Rid::from("b"), false, MediaTime::from_90khz(b_base + 3000), now + FRAME * 3).unwrap();
        assert_eq!(next.numer().wrapping_sub(switched.numer()), 3000);
        assert_eq!(next.frequency().get(), Frequency::NINETY_KHZ.get());
    }

    fn arb_candidates() -> impl Strategy<Value = Candidates> {
        (prop::collection::vec(1u64..5_000_000, 0..4), any::<Option<prop::sample::Index>>(), any::<bool>()).prop_map(
            |(mut rates, current, may_upgrade)| {
                rates.sort_unstable();
                let current = current.filter(|_| !rates.is_empty()).map(|i| i.index(rates.len()));
                Candidates { rates, current, may_upgrade }
            },
        )
    }

    proptest! {
        #[test]
        fn allocation_respects_the_budget_and_leaves_nothing_that_fits(
            budget in 0u64..20_000_000,
            tracks in prop::collection::vec(arb_candidates(), 0..4),
        ) {
            let chosen = allocate(budget, &tracks);
            prop_assert_eq!(chosen.len(), tracks.len());
            let mut spent = 0u64;
            let mut floor = 0u64;
            for (track, choice) in tracks.iter().zip(&chosen) {
                match choice {
                    None => prop_assert!(track.rates.is_empty()),
                    Some(layer) => {
                        prop_assert!(*layer < track.rates.len());
                        // Only allowed layers are chosen.
                        prop_assert!(track.cost(*layer).is_some());
                        spent += track.cost(*layer).unwrap();
                        floor += track.rates[0];
                    }
                }
            }
            prop_assert!(spent <= budget.max(floor), "spent {} of {}", spent, budget);
            // Maximal: no track could take one more step within what is left.
            for (track, choice) in tracks.iter().zip(&chosen) {
                if let Some(layer) = choice
                    && let (Some(now), Some(next)) = (track.cost(*layer), track.cost(layer + 1))
                {
                    prop_assert!(spent + (next - now) > budget, "track could still step up");
                }
            }
        }

        #[test]
        fn a_single_track_keeps_its_layer_while_it_fits(
            rates in prop::collection::vec(1u64..5_000_000, 1..4).prop_map(|mut r| { r.sort_unstable(); r }),
            current in any::<prop::sample::Index>(),
            budget in 0u64..20_000_000,
        ) {
            let current = current.index(rates.len());
            let track = Candidates { rates: rates.clone(), current: Some(current), may_upgrade: true };
            let chosen = allocate(budget, std::slice::from_ref(&track))[0].unwrap();
            if rates[current] <= budget {
                prop_assert!(chosen >= current, "dropped from {} to {} with budget {}", current, chosen, budget);
            }
            if chosen > current {
                prop_assert!((rates[chosen] as f64 * UPGRADE_HEADROOM) as u64 <= budget);
            }
        }

        #[test]
        fn only_keyframes_start_a_layer_and_time_never_goes_back(
            frames in prop::collection::vec((0usize..3, any::<bool>(), 1u64..100), 1..300),
            choices in prop::collection::vec(prop::option::of(0usize..3), 1..20),
        ) {
            let t0 = Instant::now();
            let rids = [Rid::from("a"), Rid::from("b"), Rid::from("c")];
            let mut forwarder = SimulcastForwarder::default();
            let mut clocks = [7u64, 900_000_000, 3_000_000_000];
            let mut now = t0;
            let mut last: Option<(Rid, u64)> = None;
            for (n, (layer, keyframe, gap_ms)) in frames.into_iter().enumerate() {
                now += ms(gap_ms);
                clocks[layer] += gap_ms * 90;
                if n % 15 == 0 {
                    forwarder.choose(&rids, choices[(n / 15) % choices.len()], now);
                }
                let rid = rids[layer];
                forwarder.observe(rid, 1000, now);
                if let Some(time) = forwarder.pass(rid, keyframe, MediaTime::from_90khz(clocks[layer]), now) {
                    match last {
                        None => prop_assert!(keyframe, "the first frame forwarded was not a keyframe"),
                        Some((previous, _)) if previous != rid => prop_assert!(keyframe, "switched on a delta frame"),
                        _ => {}
                    }
                    if let Some((_, previous_time)) = last {
                        // Within RTP's 32-bit wrap, later frames get later times.
                        let advance = time.numer().wrapping_sub(previous_time) as u32;
                        prop_assert!(advance > 0 && advance < u32::MAX / 2, "time went back by {}", advance);
                    }
                    last = Some((rid, time.numer()));
                }
            }
        }
    }
}
