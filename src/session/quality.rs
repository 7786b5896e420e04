//! A member's connection quality as security staff see it: the media core's latest figures,
//! graded good, fair or poor by one pure function, and unknown once they are stale.
//!
//! The thresholds are those of the pages' own indicator (`web-client/js/quality.js`, held to
//! the same values by a test), in the spirit of browsers' and LiveKit's connection quality: a
//! few percent of loss is already audible, a tenth breaks sound and picture up; a round trip
//! past 300 ms makes people talk over each other, past 600 ms a conversation is hard.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::sfu::LinkQuality;

/// Figures older than this read as unknown: the media core reports every two seconds while a
/// connection is up, so a few missed reports mean its media has stopped or the member left.
pub const STALE_AFTER: SignedDuration = SignedDuration::from_secs(10);

/// Loss (in either direction) up to this is good.
const GOOD_LOSS: f32 = 0.02;
/// Loss up to this is fair; beyond, poor.
const FAIR_LOSS: f32 = 0.08;
/// A round trip up to this is good.
const GOOD_RTT: Duration = Duration::from_millis(300);
/// A round trip up to this is fair; beyond, poor.
const FAIR_RTT: Duration = Duration::from_millis(600);

/// How a member's connection is doing, in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grade {
    Good,
    Fair,
    Poor,
    /// No recent figures: not connected yet, media stopped, or nothing measured yet.
    Unknown,
}

/// A member's connection quality: the grade and, when fresh, the figures it was given on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quality {
    pub grade: Grade,
    /// The latest figures, absent once stale.
    pub figures: Option<LinkQuality>,
}

impl Quality {
    pub const UNKNOWN: Quality = Quality { grade: Grade::Unknown, figures: None };

    /// The quality of figures measured at `measured`, read at `now`. Figures too old, or with
    /// nothing to grade on, are not shown at all.
    pub fn at(latest: Option<(Timestamp, LinkQuality)>, now: Timestamp) -> Quality {
        match latest {
            Some((measured, figures)) if now.duration_since(measured) <= STALE_AFTER => match grade(&figures) {
                Grade::Unknown => Quality::UNKNOWN,
                grade => Quality { grade, figures: Some(figures) },
            },
            _ => Quality::UNKNOWN,
        }
    }
}

/// Grades one interval's figures by the worse of the two losses and the round trip. Figures
/// with neither a loss nor a round trip measured (no media either way) grade unknown.
pub fn grade(figures: &LinkQuality) -> Grade {
    let loss = match (figures.loss_in, figures.loss_out) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    if loss.is_none() && figures.rtt.is_none() {
        return Grade::Unknown;
    }
    let loss = loss.unwrap_or(0.0);
    let rtt = figures.rtt.unwrap_or_default();
    if loss > FAIR_LOSS || rtt > FAIR_RTT {
        Grade::Poor
    } else if loss > GOOD_LOSS || rtt > GOOD_RTT {
        Grade::Fair
    } else {
        Grade::Good
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pages' own indicator and the console's grade must call the same call fair or poor.
    #[test]
    fn the_thresholds_are_those_of_the_pages_indicator() {
        let script = include_str!("../../web-client/js/quality.js");
        let expected = format!(
            "export const LIMITS = {{ goodLoss: {GOOD_LOSS}, fairLoss: {FAIR_LOSS}, goodRttMs: {}, fairRttMs: {} }};",
            GOOD_RTT.as_millis(),
            FAIR_RTT.as_millis()
        );
        assert!(script.contains(&expected), "web-client/js/quality.js should declare {expected}");
    }

    fn check(loss_in: Option<f32>, loss_out: Option<f32>, rtt_ms: Option<u64>, expected: Grade) {
        let figures =
            LinkQuality { loss_in, loss_out, rtt: rtt_ms.map(Duration::from_millis), ..LinkQuality::default() };
        assert_eq!(grade(&figures), expected, "{figures:?}");
    }

    #[test]
    fn a_clean_quick_link_is_good() {
        check(Some(0.0), Some(0.0), Some(20), Grade::Good);
        check(Some(0.02), Some(0.01), Some(300), Grade::Good);
    }

    #[test]
    fn a_few_percent_of_loss_or_a_slow_round_trip_is_fair() {
        check(Some(0.03), Some(0.0), Some(20), Grade::Fair);
        check(Some(0.0), Some(0.08), Some(20), Grade::Fair);
        check(Some(0.0), Some(0.0), Some(450), Grade::Fair);
    }

    #[test]
    fn heavy_loss_either_way_or_a_very_slow_round_trip_is_poor() {
        check(Some(0.15), Some(0.0), Some(20), Grade::Poor);
        check(Some(0.0), Some(0.15), Some(20), Grade::Poor);
        check(Some(0.0), Some(0.0), Some(700), Grade::Poor);
    }

    #[test]
    fn one_direction_measured_is_enough_and_none_is_unknown() {
        check(Some(0.0), None, None, Grade::Good);
        check(None, Some(0.2), None, Grade::Poor);
        check(None, None, Some(900), Grade::Poor);
        check(None, None, None, Grade::Unknown);
    }

    #[test]
    fn figures_read_as_unknown_once_stale() {
        let measured = Timestamp::from_second(1_800_000_000).unwrap();
        let clean = LinkQuality { loss_in: Some(0.0), loss_out: Some(0.0), ..LinkQuality::default() };
        let fresh = Quality::at(Some((measured, clean)), measured + SignedDuration::from_secs(9));
        assert_eq!(fresh.grade, Grade::Good);
        let stale = Quality::at(Some((measured, clean)), measured + SignedDuration::from_secs(11));
        assert_eq!(stale, Quality::UNKNOWN);
        assert_eq!(Quality::at(None, measured), Quality::UNKNOWN);
        // A connection with no media either way has nothing to grade on, and shows nothing.
        let idle = LinkQuality { bitrate_in: 0, estimate: Some(300_000), ..LinkQuality::default() };
        assert_eq!(Quality::at(Some((measured, idle)), measured), Quality::UNKNOWN);
    }
}
