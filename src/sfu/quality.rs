//! A participant's connection quality in plain numbers, gathered from str0m's periodic
//! statistics and reported once per statistics interval.
//!
//! str0m emits, every [`STATS_INTERVAL`], one `PeerStats` followed by a `MediaIngressStats`
//! per incoming stream and a `MediaEgressStats` per outgoing one, all before its next timeout.
//! The meter folds them into one [`LinkQuality`] that is taken when the participant has been
//! driven to its timeout. Losses of several streams are weighted by each stream's packets in
//! the interval, so a busy video stream counts for more than a quiet audio one. Incoming loss
//! is measured on the transport-wide sequence numbers when the client sends them, since they
//! see every packet lost on the path, retransmissions included.

use std::time::{Duration, Instant};

use str0m::media::{Mid, Rid};
use str0m::stats::{MediaEgressStats, MediaIngressStats, PeerStats};

/// How often str0m computes statistics, and so how often each participant's quality is
/// reported: often enough for a console that refreshes every few seconds, rarely enough to
/// cost nothing next to the media.
pub(crate) const STATS_INTERVAL: Duration = Duration::from_secs(2);

/// One participant's connection over the last statistics interval, as the gateway sees it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LinkQuality {
    /// Round-trip time between the gateway and the client, from the client's RTCP receiver
    /// reports of the interval on what the gateway sends it. None while the client receives
    /// nothing (or reports nothing).
    pub rtt: Option<Duration>,
    /// Fraction (0 to 1) of the client's packets that never reached the gateway. From a
    /// client that numbers its packets transport-wide (browsers do), this is the path's loss
    /// before any retransmission; otherwise it is what the gateway's own receiver reports
    /// count, where a packet repaired on its own stream counts as received. None while the
    /// client sends nothing.
    pub loss_in: Option<f32>,
    /// Fraction (0 to 1) of the gateway's packets that the client reported lost in its
    /// receiver reports. None while the client receives nothing or reports nothing.
    pub loss_out: Option<f32>,
    /// Media received from the client, in bits per second.
    pub bitrate_in: u64,
    /// Media sent to the client, in bits per second.
    pub bitrate_out: u64,
    /// The send-side bandwidth estimate towards the client (TWCC), in bits per second.
    pub estimate: Option<u64>,
}

/// Folds one interval's statistics events into a [`LinkQuality`].
#[derive(Debug, Default)]
pub(crate) struct QualityMeter {
    /// Media byte totals (in, out) at the previous report and when it was taken: bitrates are
    /// their growth over the interval.
    totals: Option<(Instant, u64, u64)>,
    /// Packets counted on each stream at the previous report, for the weight of its loss.
    packets: Vec<StreamCount>,
    /// The report being assembled, from a `PeerStats` until the participant's next timeout.
    building: Option<Building>,
    /// The latest round trip measured and when: an interval whose reports gave none (lost on
    /// the way, or a round trip below the reports' resolution) repeats it for a while rather
    /// than show no figure.
    last_rtt: Option<(Instant, Duration)>,
}

/// How long a measured round trip stands in for intervals that measure none.
const RTT_KEPT_FOR: Duration = Duration::from_secs(10);

/// One stream's packet count, named by direction, m-line and simulcast layer.
#[derive(Debug)]
struct StreamCount {
    incoming: bool,
    mid: Mid,
    rid: Option<Rid>,
    packets: u64,
}

#[derive(Debug)]
struct Building {
    /// When str0m took the interval's statistics.
    at: Instant,
    report: LinkQuality,
    /// Incoming loss on the transport-wide sequence numbers, when the client sends them.
    transport_loss_in: Option<f32>,
    loss_in: Weighted,
    loss_out: Weighted,
    rtt: Weighted,
}

/// A weighted mean under construction.
#[derive(Debug, Default)]
struct Weighted {
    sum: f64,
    weight: u64,
}

impl Weighted {
    fn add(&mut self, value: f64, weight: u64) {
        self.sum += value * weight as f64;
        self.weight += weight;
    }

    fn mean(&self) -> Option<f64> {
        (self.weight > 0).then(|| self.sum / self.weight as f64)
    }
}

impl QualityMeter {
    /// The start of an interval's statistics: totals, bitrates and the bandwidth estimate.
    pub(crate) fn peer(&mut self, stats: &PeerStats) {
        let mut report = LinkQuality { estimate: stats.bwe_tx.map(|b| b.as_u64()), ..LinkQuality::default() };
        if let Some((at, bytes_in, bytes_out)) = self.totals {
            let seconds = stats.timestamp.saturating_duration_since(at).as_secs_f64();
            if seconds > 0.0 {
                let rate = |now: u64, before: u64| (now.saturating_sub(before) as f64 * 8.0 / seconds) as u64;
                report.bitrate_in = rate(stats.bytes_rx, bytes_in);
                report.bitrate_out = rate(stats.bytes_tx, bytes_out);
            }
        }
        self.totals = Some((stats.timestamp, stats.bytes_rx, stats.bytes_tx));
        let transport_loss_in = stats.ingress_loss_fraction;
        self.building = Some(Building {
            at: stats.timestamp,
            report,
            transport_loss_in,
            loss_in: Weighted::default(),
            loss_out: Weighted::default(),
            rtt: Weighted::default(),
        });
    }

    /// One incoming stream: its loss is what the gateway's own receiver report measured.
    pub(crate) fn ingress(&mut self, stats: &MediaIngressStats) {
        let sent = self.packets_since(true, stats.mid, stats.rid, stats.packets);
        if let (Some(building), Some(loss)) = (self.building.as_mut(), stats.loss) {
            building.loss_in.add(f64::from(loss), sent);
        }
    }

    /// One outgoing stream: its loss and round-trip time are what the client's receiver
    /// reports said.
    pub(crate) fn egress(&mut self, stats: &MediaEgressStats) {
        let sent = self.packets_since(false, stats.mid, stats.rid, stats.packets);
        let Some(building) = self.building.as_mut() else { return };
        // str0m gives a loss only when a receiver report came in the interval; the round trip
        // it keeps is the last report's, so without a new report it would be stale.
        if let Some(loss) = stats.loss {
            building.loss_out.add(f64::from(loss), sent);
            if let Some(rtt) = stats.rtt {
                building.rtt.add(rtt.as_secs_f64(), 1);
            }
        }
    }

    /// The finished report of the interval whose statistics have all been seen, once.
    pub(crate) fn take(&mut self) -> Option<LinkQuality> {
        let building = self.building.take()?;
        let fraction = |w: &Weighted| w.mean().map(|m| m.clamp(0.0, 1.0) as f32);
        let at = building.at;
        let rtt = match building.rtt.mean().map(Duration::from_secs_f64) {
            Some(rtt) => {
                self.last_rtt = Some((at, rtt));
                Some(rtt)
            }
            None => {
                self.last_rtt.filter(|(measured, _)| at.duration_since(*measured) <= RTT_KEPT_FOR).map(|(_, rtt)| rtt)
            }
        };
        Some(LinkQuality {
            loss_in: building.transport_loss_in.map(|l| l.clamp(0.0, 1.0)).or(fraction(&building.loss_in)),
            loss_out: fraction(&building.loss_out),
            rtt,
            ..building.report
        })
    }

    /// Packets on a stream since the previous report, remembering the new count.
    fn packets_since(&mut self, incoming: bool, mid: Mid, rid: Option<Rid>, packets: u64) -> u64 {
        let known = self.packets.iter_mut().find(|s| s.incoming == incoming && s.mid == mid && s.rid == rid);
        match known {
            Some(stream) => {
                let since = packets.saturating_sub(stream.packets);
                stream.packets = packets;
                since
            }
            None => {
                self.packets.push(StreamCount { incoming, mid, rid, packets });
                packets
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use str0m::bwe::Bitrate;

    fn peer(at: Instant, bytes_rx: u64, bytes_tx: u64) -> PeerStats {
        PeerStats {
            peer_bytes_rx: 0,
            peer_bytes_tx: 0,
            bytes_rx,
            bytes_tx,
            timestamp: at,
            bwe_tx: Some(Bitrate::kbps(800)),
            egress_loss_fraction: None,
            ingress_loss_fraction: None,
            rtt: None,
            selected_candidate_pair: None,
        }
    }

    fn ingress(mid: &str, packets: u64, loss: Option<f32>, at: Instant) -> MediaIngressStats {
        MediaIngressStats {
            mid: Mid::from(mid),
            rid: None,
            bytes: packets * 100,
            packets,
            firs: 0,
            plis: 0,
            nacks: 0,
            jitter: 0,
            rtt: None,
            loss,
            timestamp: at,
            remote: None,
        }
    }

    fn egress(mid: &str, packets: u64, loss: Option<f32>, rtt_ms: u64, at: Instant) -> MediaEgressStats {
        MediaEgressStats {
            mid: Mid::from(mid),
            rid: None,
            bytes: packets * 100,
            packets,
            firs: 0,
            plis: 0,
            nacks: 0,
            rtt: Some(Duration::from_millis(rtt_ms)),
            loss,
            timestamp: at,
            remote: None,
        }
    }

    #[test]
    fn nothing_is_reported_until_an_interval_starts_and_each_interval_once() {
        let mut meter = QualityMeter::default();
        assert_eq!(meter.take(), None);
        meter.peer(&peer(Instant::now(), 0, 0));
        assert!(meter.take().is_some());
        assert_eq!(meter.take(), None);
    }

    #[test]
    fn bitrates_are_the_growth_of_the_totals_over_the_interval() {
        let t0 = Instant::now();
        let mut meter = QualityMeter::default();
        meter.peer(&peer(t0, 1_000, 2_000));
        assert_eq!(meter.take().unwrap().bitrate_in, 0, "no rate from a single total");
        meter.peer(&peer(t0 + Duration::from_secs(2), 51_000, 127_000));
        let report = meter.take().unwrap();
        assert_eq!((report.bitrate_in, report.bitrate_out), (200_000, 500_000));
        assert_eq!(report.estimate, Some(800_000));
    }

    #[test]
    fn losses_are_weighted_by_each_streams_packets_in_the_interval() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(2);
        let mut meter = QualityMeter::default();
        meter.peer(&peer(t0, 0, 0));
        meter.ingress(&ingress("0", 100, Some(0.0), t0));
        meter.ingress(&ingress("1", 1_000, Some(0.0), t0));
        meter.take();
        meter.peer(&peer(t1, 0, 0));
        // Audio: 100 more packets, none lost; video: 300 more, a fifth lost.
        meter.ingress(&ingress("0", 200, Some(0.0), t1));
        meter.ingress(&ingress("1", 1_300, Some(0.2), t1));
        // Two streams went out, the client reported a tenth of one lost and none of the other;
        // a third had no report this interval, so its last round trip is not current.
        meter.egress(&egress("2", 500, Some(0.1), 40, t1));
        meter.egress(&egress("3", 500, Some(0.0), 60, t1));
        meter.egress(&egress("4", 50, None, 900, t1));
        let report = meter.take().unwrap();
        assert!((report.loss_in.unwrap() - 0.15).abs() < 1e-6, "{report:?}");
        assert!((report.loss_out.unwrap() - 0.05).abs() < 1e-6, "{report:?}");
        assert_eq!(report.rtt, Some(Duration::from_millis(50)));
    }

    #[test]
    fn incoming_loss_on_transport_wide_numbers_wins_over_receiver_reports() {
        let t0 = Instant::now();
        let mut meter = QualityMeter::default();
        meter.peer(&PeerStats { ingress_loss_fraction: Some(0.15), ..peer(t0, 0, 0) });
        // The stream's own count saw the lost packets repaired.
        meter.ingress(&ingress("0", 100, Some(0.0), t0));
        assert_eq!(meter.take().unwrap().loss_in, Some(0.15));
    }

    #[test]
    fn a_round_trip_stands_in_for_intervals_without_one_for_a_while() {
        let t0 = Instant::now();
        let mut meter = QualityMeter::default();
        let interval = |meter: &mut QualityMeter, secs: u64, rtt_ms: Option<u64>| {
            let at = t0 + Duration::from_secs(secs);
            meter.peer(&peer(at, 0, 0));
            if let Some(rtt_ms) = rtt_ms {
                meter.egress(&egress("0", secs * 10, Some(0.0), rtt_ms, at));
            }
            meter.take().unwrap().rtt
        };
        assert_eq!(interval(&mut meter, 0, None), None);
        assert_eq!(interval(&mut meter, 2, Some(80)), Some(Duration::from_millis(80)));
        assert_eq!(interval(&mut meter, 4, None), Some(Duration::from_millis(80)));
        assert_eq!(interval(&mut meter, 12, None), Some(Duration::from_millis(80)));
        assert_eq!(interval(&mut meter, 14, None), None, "a round trip measured 12 s ago is not current");
    }

    #[test]
    fn a_direction_without_reports_has_no_loss_rather_than_none_lost() {
        let mut meter = QualityMeter::default();
        meter.peer(&peer(Instant::now(), 0, 0));
        meter.ingress(&ingress("0", 10, None, Instant::now()));
        let report = meter.take().unwrap();
        assert_eq!((report.loss_in, report.loss_out, report.rtt), (None, None, None));
    }
}
