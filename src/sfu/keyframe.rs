//! The keyframe-request throttle: at most one request per second reaches a publisher's stream.
//!
//! Every subscriber that loses a packet or joins asks for a keyframe; a keyframe is large, so a
//! burst of requests would flood the publisher's uplink (often the weak prison link). Requests
//! inside the window are not dropped but coalesced into one that goes out when it reopens, so
//! a subscriber that joins just after another still gets its picture. A simulcast track has
//! one stream per layer, each with its own encoder, so each layer (rid) is throttled apart.

use std::time::{Duration, Instant};

use str0m::media::{KeyframeRequestKind, Rid};

/// The shortest gap between two keyframe requests to the same source.
pub(crate) const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_secs(1);

/// Throttle state for one source track. Pure logic: time is always passed in.
#[derive(Debug)]
pub(crate) struct KeyframeThrottle {
    interval: Duration,
    /// When the last request went to the publisher; `None` before the first.
    last_sent: Option<Instant>,
    /// A request that arrived inside the window and waits for it to reopen.
    deferred: Option<KeyframeRequestKind>,
}

impl KeyframeThrottle {
    pub(crate) fn new(interval: Duration) -> Self {
        KeyframeThrottle { interval, last_sent: None, deferred: None }
    }

    /// Registers a request. Returns the request to send now, or `None` if it was deferred.
    pub(crate) fn request(&mut self, now: Instant, kind: KeyframeRequestKind) -> Option<KeyframeRequestKind> {
        let kind = strongest(self.deferred.take(), kind);
        if self.window_open(now) {
            self.last_sent = Some(now);
            Some(kind)
        } else {
            self.deferred = Some(kind);
            None
        }
    }

    /// Releases a deferred request once the window has reopened.
    pub(crate) fn poll(&mut self, now: Instant) -> Option<KeyframeRequestKind> {
        if self.deferred.is_some() && self.window_open(now) {
            self.last_sent = Some(now);
            return self.deferred.take();
        }
        None
    }

    /// When `poll` next has something to release.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        // A request is only ever deferred after one was sent, so `last_sent` is set here.
        self.deferred.and(self.last_sent).map(|t| t + self.interval)
    }

    fn window_open(&self, now: Instant) -> bool {
        self.last_sent.is_none_or(|t| now.saturating_duration_since(t) >= self.interval)
    }
}

/// One throttle per stream of a track: the plain stream (`None`) or each simulcast layer.
#[derive(Debug)]
pub(crate) struct LayerThrottles {
    interval: Duration,
    /// A track has at most a handful of layers; a list beats a map here.
    by_rid: Vec<(Option<Rid>, KeyframeThrottle)>,
}

impl LayerThrottles {
    pub(crate) fn new(interval: Duration) -> Self {
        LayerThrottles { interval, by_rid: Vec::new() }
    }

    /// [`KeyframeThrottle::request`] for the stream `rid`.
    pub(crate) fn request(
        &mut self,
        rid: Option<Rid>,
        now: Instant,
        kind: KeyframeRequestKind,
    ) -> Option<KeyframeRequestKind> {
        let index = match self.by_rid.iter().position(|(r, _)| *r == rid) {
            Some(index) => index,
            None => {
                self.by_rid.push((rid, KeyframeThrottle::new(self.interval)));
                self.by_rid.len() - 1
            }
        };
        self.by_rid[index].1.request(now, kind)
    }

    /// [`KeyframeThrottle::poll`] for every stream: the deferred requests now due.
    pub(crate) fn poll(&mut self, now: Instant) -> Vec<(Option<Rid>, KeyframeRequestKind)> {
        self.by_rid.iter_mut().filter_map(|(rid, t)| t.poll(now).map(|kind| (*rid, kind))).collect()
    }

    /// The earliest deadline of any stream.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.by_rid.iter().filter_map(|(_, t)| t.deadline()).min()
    }
}

/// FIR asks for more than PLI; when requests are merged, the stronger one wins.
fn strongest(deferred: Option<KeyframeRequestKind>, kind: KeyframeRequestKind) -> KeyframeRequestKind {
    match (deferred, kind) {
        (Some(KeyframeRequestKind::Fir), _) | (_, KeyframeRequestKind::Fir) => KeyframeRequestKind::Fir,
        _ => KeyframeRequestKind::Pli,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use KeyframeRequestKind::{Fir, Pli};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn first_request_goes_out_at_once() {
        let t0 = Instant::now();
        let mut throttle = KeyframeThrottle::new(KEYFRAME_REQUEST_INTERVAL);
        assert_eq!(throttle.request(t0, Pli), Some(Pli));
        assert_eq!(throttle.deadline(), None);
    }

    #[test]
    fn at_most_one_request_per_interval_and_bursts_coalesce() {
        let t0 = Instant::now();
        let mut throttle = KeyframeThrottle::new(KEYFRAME_REQUEST_INTERVAL);
        assert_eq!(throttle.request(t0, Pli), Some(Pli));

        // Ten subscribers complain within the window: nothing goes out yet.
        for i in 1..=10 {
            assert_eq!(throttle.request(t0 + ms(i * 50), Pli), None);
        }
        assert_eq!(throttle.deadline(), Some(t0 + ms(1000)));
        assert_eq!(throttle.poll(t0 + ms(999)), None);

        // The window reopens: exactly one coalesced request, then silence.
        assert_eq!(throttle.poll(t0 + ms(1000)), Some(Pli));
        assert_eq!(throttle.poll(t0 + ms(1500)), None);
        assert_eq!(throttle.deadline(), None);

        // The next request is again throttled relative to the released one.
        assert_eq!(throttle.request(t0 + ms(1500), Pli), None);
        assert_eq!(throttle.poll(t0 + ms(2000)), Some(Pli));
    }

    #[test]
    fn a_request_after_the_window_goes_straight_out() {
        let t0 = Instant::now();
        let mut throttle = KeyframeThrottle::new(KEYFRAME_REQUEST_INTERVAL);
        assert_eq!(throttle.request(t0, Pli), Some(Pli));
        assert_eq!(throttle.request(t0 + ms(1000), Pli), Some(Pli));
        assert_eq!(throttle.request(t0 + ms(2500), Fir), Some(Fir));
    }

    #[test]
    fn fir_wins_when_requests_merge() {
        let t0 = Instant::now();
        let mut throttle = KeyframeThrottle::new(KEYFRAME_REQUEST_INTERVAL);
        assert_eq!(throttle.request(t0, Pli), Some(Pli));
        assert_eq!(throttle.request(t0 + ms(100), Fir), None);
        assert_eq!(throttle.request(t0 + ms(200), Pli), None);
        assert_eq!(throttle.poll(t0 + ms(1000)), Some(Fir));
    }

    #[test]
    fn each_layer_is_throttled_on_its_own() {
        let t0 = Instant::now();
        let mut throttles = LayerThrottles::new(KEYFRAME_REQUEST_INTERVAL);
        let (low, high) = (Some(Rid::from("q")), Some(Rid::from("f")));
        assert_eq!(throttles.request(low, t0, Pli), Some(Pli));
        // Another layer's request is not held back by the first.
        assert_eq!(throttles.request(high, t0 + ms(10), Pli), Some(Pli));
        assert_eq!(throttles.request(low, t0 + ms(20), Fir), None);
        assert_eq!(throttles.request(high, t0 + ms(30), Pli), None);
        assert_eq!(throttles.deadline(), Some(t0 + ms(1000)));
        assert_eq!(throttles.poll(t0 + ms(1000)), vec![(low, Fir)]);
        assert_eq!(throttles.deadline(), Some(t0 + ms(1010)));
        assert_eq!(throttles.poll(t0 + ms(1010)), vec![(high, Pli)]);
        assert_eq!(throttles.deadline(), None);
    }

    #[test]
    fn released_count_over_ten_virtual_seconds_is_bounded() {
        let t0 = Instant::now();
        let mut throttle = KeyframeThrottle::new(KEYFRAME_REQUEST_INTERVAL);
        let mut sent = 0;
        // A request every 10 ms for 10 s of virtual time.
        for i in 0..1000 {
            let now = t0 + ms(i * 10);
            sent += usize::from(throttle.request(now, Pli).is_some());
            sent += usize::from(throttle.poll(now).is_some());
        }
        assert_eq!(sent, 10);
    }
}
