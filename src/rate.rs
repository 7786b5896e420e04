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

    /// Puts back one token taken for something that turned out not to count.
    pub fn give_back(&mut self, now: Timestamp) {
        self.refill(now);
        self.tokens = (self.tokens + 1.0).min(self.rate.burst);
    }

    /// Whether the bucket has refilled completely, so forgetting it changes nothing.
    pub fn is_full(&mut self, now: Timestamp) -> bool {
        self.refill(now);
        self.tokens >= self.rate.burst
    }

    /// How long until there is a token to take: zero if there is one now.
    pub fn until_next(&mut self, now: Timestamp) -> SignedDuration {
        self.until_holding(1.0, now)
    }

    /// How long until the bucket has refilled completely: zero if it is full now.
    pub fn until_full(&mut self, now: Timestamp) -> SignedDuration {
        self.until_holding(self.rate.burst, now)
    }

    fn until_holding(&mut self, tokens: f64, now: Timestamp) -> SignedDuration {
        self.refill(now);
        let missing = (tokens - self.tokens).max(0.0);
        SignedDuration::try_from_secs_f64(missing / self.rate.per_second).unwrap_or(SignedDuration::MAX)
    }

    fn refill(&mut self, now: Timestamp) {
        // A clock set back refills nothing, and counts on from the new time.
        let elapsed = now.duration_since(self.last).as_secs_f64().max(0.0);
        self.tokens = (self.tokens + elapsed * self.rate.per_second).min(self.rate.burst);
        self.last = now;
    }
}

/// How long a caller turned away by a limit must wait before its next attempt can be let
/// through, as figured from the limit's own state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(SignedDuration);

impl RetryAfter {
    pub fn new(wait: SignedDuration) -> Self {
        Self(wait)
    }

    /// The wait in whole seconds, rounded up and at least one, so that waiting this long is
    /// always enough: a caller told zero would try again at once and be refused again.
    pub fn whole_seconds(self) -> u64 {
        let seconds = self.0.as_secs().max(0).unsigned_abs();
        let part = self.0.subsec_nanos() > 0;
        (seconds + u64::from(part)).max(1)
    }

    /// The wait for a person to read, rounded up to a unit that reads well.
    pub fn in_words(self) -> String {
        let seconds = self.whole_seconds();
        match seconds {
            ..=1 => "1 second".to_owned(),
            2..=90 => format!("{seconds} seconds"),
            91..=5400 => format!("{} minutes", seconds.div_ceil(60)),
            _ => format!("{} hours", seconds.div_ceil(3600)),
        }
    }

    /// The refusal as a sentence for a person.
    pub fn message(self) -> String {
        format!("Too many attempts. Try again in {}.", self.in_words())
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

    #[test]
    fn the_wait_for_the_next_token_follows_the_refill() {
        let start = Timestamp::now();
        let mut bucket = TokenBucket::new(Rate::every(SignedDuration::from_secs(10), 2), start);
        assert_eq!(bucket.until_next(start), SignedDuration::ZERO, "a token is there now");
        assert!(bucket.take(start) && bucket.take(start));
        assert_eq!(bucket.until_next(start), SignedDuration::from_secs(10));
        let later = start + SignedDuration::from_millis(2500);
        let wait = bucket.until_next(later);
        assert_eq!(wait, SignedDuration::from_millis(7500));
        assert!(!bucket.take(later + wait - SignedDuration::from_millis(1)), "not a moment before");
        assert!(bucket.take(later + wait), "a token once the wait is over");
        // Two tokens missing: the whole bucket refills in two intervals.
        assert_eq!(bucket.until_full(later + wait), SignedDuration::from_secs(20));
        assert_eq!(bucket.until_full(later + wait + SignedDuration::from_secs(25)), SignedDuration::ZERO);
    }

    #[test]
    fn a_wait_is_told_in_whole_seconds_rounded_up() {
        let told = |wait: SignedDuration| RetryAfter::new(wait).whole_seconds();
        assert_eq!(told(SignedDuration::from_millis(1)), 1);
        assert_eq!(told(SignedDuration::ZERO), 1, "never zero: that would invite an attempt refused again");
        assert_eq!(told(SignedDuration::from_secs(2)), 2);
        assert_eq!(told(SignedDuration::from_millis(2001)), 3);
        assert_eq!(told(SignedDuration::from_mins(15)), 900);
        let message = |seconds: i64| RetryAfter::new(SignedDuration::from_secs(seconds)).message();
        assert_eq!(message(1), "Too many attempts. Try again in 1 second.");
        assert_eq!(message(90), "Too many attempts. Try again in 90 seconds.");
        assert_eq!(message(91), "Too many attempts. Try again in 2 minutes.");
        assert_eq!(message(900), "Too many attempts. Try again in 15 minutes.");
        assert_eq!(message(3600 * 5), "Too many attempts. Try again in 5 hours.");
    }
}
