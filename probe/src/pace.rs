//! Publishing at a steady rate: what to send (`Plan`), the pacing loop, and the ledger of
//! every payload's send time. The transport is whatever implements [`Outlet`].

use std::time::Duration;

use tokio::sync::watch;

use crate::stamp::{self, Kind, Stamp, VideoCodec};

/// The publishing tick: one Opus packet per 20 ms, as browsers send.
const TICK: Duration = Duration::from_millis(20);
/// A screen frame every tenth tick (5 a second).
const SCREEN_EVERY_TICKS: u64 = 10;
const SCREEN_LEN: usize = 900;
/// Screen-share payloads carry the sharer's id plus this, to tell them from its camera's.
pub const SCREEN_SENDER_OFFSET: u32 = 1_000_000;

/// What to publish: Opus-sized audio at 50 packets a second plus video at `video_bps` in
/// packets of `video_len` bytes. Each video packet is a one-packet frame (VP8, or H.264 where
/// the outlet's camera sends it), so its stamp survives an SFU that reassembles and
/// re-packetizes frames.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub audio_len: usize,
    pub video_len: usize,
    pub video_bps: u64,
}

impl Plan {
    /// The video packets sent per second.
    pub fn video_packets_per_second(&self) -> f64 {
        self.video_bps as f64 / 8.0 / self.video_len as f64
    }
}

/// Which of a publisher's tracks a payload goes out on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    Audio,
    Video,
    Screen,
}

/// Something that puts one RTP payload on the wire.
pub trait Outlet {
    /// Sends `payload` on `track` with RTP sequence number and timestamp as given. A failed
    /// send (the connection is going away) is not an error here: the receiver's loss tells.
    fn send(&self, track: Track, seq: u32, timestamp: u32, payload: Vec<u8>) -> impl Future<Output = ()> + Send;

    /// The codec the camera track's payloads are framed in; a screen is always VP8.
    fn camera(&self) -> VideoCodec {
        VideoCodec::Vp8
    }
}

/// The send time of every payload, by kind, indexed by sequence number minus the first.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    pub first_seq: u32,
    pub audio: Vec<u64>,
    pub video: Vec<u64>,
    pub screen: Vec<u64>,
}

impl Ledger {
    pub fn of(&self, kind: Kind) -> &[u64] {
        match kind {
            Kind::Audio => &self.audio,
            Kind::Video => &self.video,
        }
    }
}

/// Publishes `plan` as sender `id` (and, with `screen`, a screen frame five times a second)
/// until `stop` turns true. Sequence numbers start at `first_seq`.
pub async fn publish(
    outlet: &impl Outlet,
    id: u32,
    plan: Plan,
    screen: bool,
    first_seq: u32,
    mut stop: watch::Receiver<bool>,
) -> Ledger {
    let mut ledger = Ledger { first_seq, ..Ledger::default() };
    let mut tick = tokio::time::interval(TICK);
    let bytes_per_tick = plan.video_bps as f64 / 8.0 * TICK.as_secs_f64();
    let mut video_budget = 0.0;
    let mut last_video_ts = 0u32;
    for n in 0u64.. {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let seq = first_seq + ledger.audio.len() as u32;
        let sent_us = send(outlet, Track::Audio, id, seq, seq.wrapping_mul(960), plan.audio_len).await;
        ledger.audio.push(sent_us);
        video_budget += bytes_per_tick;
        while video_budget >= plan.video_len as f64 {
            video_budget -= plan.video_len as f64;
            let seq = first_seq + ledger.video.len() as u32;
            // Every packet is its own frame, so each needs its own timestamp (90 kHz).
            let ts = ((stamp::now_us() * 9 / 100) as u32).max(last_video_ts.wrapping_add(1));
            last_video_ts = ts;
            let sent_us = send(outlet, Track::Video, id, seq, ts, plan.video_len).await;
            ledger.video.push(sent_us);
        }
        if screen && n % SCREEN_EVERY_TICKS == 0 {
            let seq = first_seq + ledger.screen.len() as u32;
            let sender = id + SCREEN_SENDER_OFFSET;
            let sent_us = send(outlet, Track::Screen, sender, seq, seq.wrapping_mul(18_000), SCREEN_LEN).await;
            ledger.screen.push(sent_us);
        }
    }
    ledger
}

/// Stamps and sends one payload; returns its send time.
async fn send(outlet: &impl Outlet, track: Track, sender: u32, seq: u32, timestamp: u32, len: usize) -> u64 {
    let kind = if track == Track::Audio { Kind::Audio } else { Kind::Video };
    let codec = if track == Track::Video { outlet.camera() } else { VideoCodec::Vp8 };
    let sent_us = stamp::now_us();
    let payload = stamp::payload(Stamp { sender, kind, seq, sent_us }, codec, len);
    outlet.send(track, seq, timestamp, payload).await;
    sent_us
}
