//! Turns what receivers recorded and what senders sent into loss, latency and join figures,
//! counting only payloads sent inside the measurement window.

use std::collections::HashSet;

use gatehouse_probe::{Arrival, Kind, Ledger};
use serde_json::{Value, json};

/// The measured stretch of a run, in the probe clock's microseconds.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub from_us: u64,
    pub until_us: u64,
}

impl Window {
    fn holds(&self, t: u64) -> bool {
        (self.from_us..self.until_us).contains(&t)
    }

    pub fn seconds(&self) -> f64 {
        (self.until_us - self.from_us) as f64 / 1e6
    }
}

/// Totals for one kind of stream over every receiver.
#[derive(Debug, Default)]
pub struct KindTally {
    pub sent: u64,
    pub received: u64,
    pub damaged: u64,
    pub duplicates: u64,
    /// The worst single stream's loss, as a fraction.
    pub worst_stream_loss: f64,
    pub streams: u64,
    pub streams_with_loss: u64,
    pub latencies_us: Vec<u64>,
}

/// Everything a run measured at its receivers.
#[derive(Debug, Default)]
pub struct Tally {
    pub audio: KindTally,
    pub video: KindTally,
    /// Payloads from someone other than the receiver's partner: media that crossed consultations.
    pub foreign: u64,
    pub undecodable: u64,
}

impl Tally {
    /// Adds one receiver: what it got from its partner `sender`, against the partner's ledger.
    pub fn add(&mut self, arrivals: &[Arrival], undecodable: usize, sender: u32, ledger: &Ledger, window: Window) {
        self.undecodable += undecodable as u64;
        self.foreign += arrivals.iter().filter(|a| a.stamp.sender != sender).count() as u64;
        for kind in [Kind::Audio, Kind::Video] {
            let sent_times = ledger.of(kind);
            let in_window = |seq: u32| {
                let index = seq.wrapping_sub(ledger.first_seq) as usize;
                sent_times.get(index).is_some_and(|t| window.holds(*t))
            };
            let sent = sent_times.iter().filter(|t| window.holds(**t)).count() as u64;
            let tally = match kind {
                Kind::Audio => &mut self.audio,
                Kind::Video => &mut self.video,
            };
            let mut seen = HashSet::new();
            for a in arrivals.iter().filter(|a| a.stamp.sender == sender && a.stamp.kind == kind) {
                if !in_window(a.stamp.seq) {
                    continue;
                }
                if !a.intact {
                    tally.damaged += 1;
                    continue;
                }
                if !seen.insert(a.stamp.seq) {
                    tally.duplicates += 1;
                    continue;
                }
                tally.latencies_us.push(a.received_us.saturating_sub(a.stamp.sent_us));
            }
            let received = seen.len() as u64;
            let loss = if sent == 0 { 0.0 } else { 1.0 - received as f64 / sent as f64 };
            tally.sent += sent;
            tally.received += received;
            tally.streams += 1;
            if received < sent {
                tally.streams_with_loss += 1;
            }
            tally.worst_stream_loss = tally.worst_stream_loss.max(loss);
        }
    }

    pub fn sent(&self) -> u64 {
        self.audio.sent + self.video.sent
    }

    pub fn received(&self) -> u64 {
        self.audio.received + self.video.received
    }

    pub fn loss(&self) -> f64 {
        loss(self.sent(), self.received())
    }

    /// Every payload's latency, audio and video together, sorted.
    pub fn latencies_us(&self) -> Vec<u64> {
        let mut all: Vec<u64> = self.audio.latencies_us.iter().chain(&self.video.latencies_us).copied().collect();
        all.sort_unstable();
        all
    }

    pub fn json(&mut self) -> Value {
        let all = self.latencies_us();
        json!({
            "sent": self.sent(),
            "received": self.received(),
            "loss": self.loss(),
            "latency_ms": percentiles_ms(&all),
            "audio": self.audio.json(),
            "video": self.video.json(),
            "foreign": self.foreign,
            "undecodable": self.undecodable,
        })
    }
}

impl KindTally {
    fn json(&mut self) -> Value {
        self.latencies_us.sort_unstable();
        json!({
            "streams": self.streams,
            "sent": self.sent,
            "received": self.received,
            "loss": loss(self.sent, self.received),
            "streams_with_loss": self.streams_with_loss,
            "worst_stream_loss": self.worst_stream_loss,
            "damaged": self.damaged,
            "duplicates": self.duplicates,
            "latency_ms": percentiles_ms(&self.latencies_us),
        })
    }
}

fn loss(sent: u64, received: u64) -> f64 {
    if sent == 0 { 0.0 } else { 1.0 - received as f64 / sent as f64 }
}

/// p50, p95, p99 and max of sorted microsecond values, in milliseconds; nulls when empty.
pub fn percentiles_ms(sorted_us: &[u64]) -> Value {
    let at = |q: f64| -> Option<f64> {
        if sorted_us.is_empty() {
            return None;
        }
        let rank = ((q * sorted_us.len() as f64).ceil() as usize).clamp(1, sorted_us.len());
        Some(sorted_us[rank - 1] as f64 / 1000.0)
    };
    json!({ "p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "max": at(1.0), "count": sorted_us.len() })
}

#[cfg(test)]
mod tests {
    use gatehouse_probe::Stamp;

    use super::*;

    fn arrival(sender: u32, kind: Kind, seq: u32, sent_us: u64, latency: u64) -> Arrival {
        Arrival {
            stamp: Stamp { sender, kind, seq, sent_us },
            received_us: sent_us + latency,
            intact: true,
            codec: None,
        }
    }

    #[test]
    fn loss_and_latency_count_only_the_window() {
        // Audio seq 1..=10 sent at 0, 100, ..., 900 µs; the window is [200, 800).
        let ledger = Ledger { first_seq: 1, audio: (0..10).map(|i| i * 100).collect(), ..Ledger::default() };
        let window = Window { from_us: 200, until_us: 800 };
        let mut arrivals: Vec<Arrival> =
            (1..=10).map(|s| arrival(7, Kind::Audio, s, (s as u64 - 1) * 100, 50)).collect();
        arrivals.retain(|a| a.stamp.seq != 5); // one lost inside the window
        arrivals.push(arrival(7, Kind::Audio, 4, 300, 60)); // a duplicate
        arrivals.push(arrival(9, Kind::Audio, 4, 300, 60)); // from another consultation
        let mut tally = Tally::default();
        tally.add(&arrivals, 2, 7, &ledger, window);
        assert_eq!((tally.audio.sent, tally.audio.received, tally.audio.duplicates), (6, 5, 1));
        assert_eq!((tally.foreign, tally.undecodable), (1, 2));
        assert!((tally.audio.worst_stream_loss - 1.0 / 6.0).abs() < 1e-9);
        assert_eq!(tally.audio.latencies_us, vec![50; 5]);
        assert_eq!(tally.video.sent, 0);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        let p = percentiles_ms(&v);
        assert_eq!((p["p50"].as_f64(), p["p99"].as_f64(), p["max"].as_f64()), (Some(50.0), Some(99.0), Some(100.0)));
        assert!(percentiles_ms(&[])["p50"].is_null());
    }
}
