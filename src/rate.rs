//! Token buckets: how often something may happen, with a burst allowance. Time is passed in
//! (the gateway's clock), so limits are tested by moving the clock rather than by sleeping.

use jiff::{SignedDuration, Timestamp};

/// A steady rate and a burst: `burst` at once, then `per_second` on average.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

impl Rate {
    /// One every `interval`, with `burst` at once.
    pub fn every(interval: SignedDuration, burst: u32) -> Self {
        Self { per_second: 1.0 / interval.as_secs_f64(), burst: f64::from(burst) }
    }
}

/// One bucket: full to start with, refilled at the rate up to the burst.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: Rate,
    tokens: f64,
    last: Timestamp,
}

impl TokenBucket {
    pub fn new(rate: Rate, now: Timestamp) -> Self {
        Self { rate, tokens: rate.burst, last: now }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Timestamp) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether the bucket has refilled completely, so forgetting it changes nothing.
    pub fn is_full(&mut self, now: Timestamp) -> bool {
        self.refill(now);
        self.tokens >= self.rate.burst
    }

    fn refill(&mut self, now: Timestamp) {
        // A clock set back refills nothing, and counts on from the new time.
        let elapsed = now.duration_since(self.last).as_secs_f64().max(0.0);
        self.tokens = (self.tokens + elapsed * self.rate.per_second).min(self.rate.burst);
        self.last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_steady_rate() {
        let start = Timestamp::now();
        let mut bucket = TokenBucket::new(Rate::every(SignedDuration::from_secs(10), 3), start);
        assert!((0..3).all(|_| bucket.take(start)));
        assert!(!bucket.take(start));
        assert!(!bucket.take(start + SignedDuration::from_secs(9)));
        assert!(bucket.take(start + SignedDuration::from_secs(11)));
        assert!(!bucket.is_full(start + SignedDuration::from_secs(20)));
        assert!(bucket.is_full(start + SignedDuration::from_secs(40)));
    }
}
