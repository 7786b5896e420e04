//! The stamped payload every probe publishes, and the one clock that stamps it.
//!
//! A payload names its sender, its kind, its sequence number and its send time, then carries
//! filler that is a function of those, so a receiver can rebuild the whole body and compare
//! every byte. Video payloads sit behind a VP8 payload descriptor and keyframe header, so an
//! SFU that parses VP8 (as the gateway's str0m core does) forwards them as real frames.

use std::sync::OnceLock;
use std::time::Instant;

const MAGIC: &[u8; 4] = b"GHTS";
/// magic, sender (u32), kind, sequence (u32), send time in microseconds (u64).
pub const HEADER_LEN: usize = 4 + 4 + 1 + 4 + 8;
/// A VP8 keyframe's first ten bytes: frame tag (key frame, shown), start code, 320x240.
const VP8_KEYFRAME_HEADER: [u8; 10] = [0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00];
/// The VP8 payload descriptor of a packet that starts partition 0 (RFC 7741 §4.2).
const VP8_DESCRIPTOR_START: u8 = 0x10;
/// What a video payload carries before its stamped body: descriptor and keyframe header.
pub const VIDEO_PREFIX_LEN: usize = 1 + VP8_KEYFRAME_HEADER.len();

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Audio = 0,
    Video = 1,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Audio => "audio",
            Kind::Video => "video",
        }
    }
}

/// Microseconds since the first call in this process. Senders and receivers share the
/// process, so a receive time minus the embedded send time is the one-way latency.
pub fn now_us() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_micros() as u64
}

/// What a receiver learns from one payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub sender: u32,
    pub kind: Kind,
    pub seq: u32,
    pub sent_us: u64,
}

/// The RTP payload for `stamp`, `len` bytes long in all (at least the header's length).
pub fn payload(stamp: Stamp, len: usize) -> Vec<u8> {
    match stamp.kind {
        Kind::Audio => body(stamp, len),
        Kind::Video => {
            let mut frame = Vec::with_capacity(len);
            frame.push(VP8_DESCRIPTOR_START);
            frame.extend_from_slice(&VP8_KEYFRAME_HEADER);
            frame.extend(body(stamp, len.saturating_sub(VIDEO_PREFIX_LEN)));
            frame
        }
    }
}

fn body(stamp: Stamp, len: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(len.max(HEADER_LEN));
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&stamp.sender.to_be_bytes());
    b.push(stamp.kind as u8);
    b.extend_from_slice(&stamp.seq.to_be_bytes());
    b.extend_from_slice(&stamp.sent_us.to_be_bytes());
    let mut i = 0u32;
    while b.len() < len {
        b.push(stamp.seq.wrapping_mul(31).wrapping_add(i.wrapping_mul(7)).wrapping_add(stamp.sender) as u8);
        i += 1;
    }
    b
}

/// Reads a payload of `kind` back: its stamp, and whether every byte is as the sender built it.
/// `None` when it is not a probe payload of that kind at all.
pub fn read(kind: Kind, payload: &[u8]) -> Option<(Stamp, bool)> {
    let body = match kind {
        Kind::Audio => payload,
        Kind::Video => {
            let frame = vp8_frame(payload)?;
            frame.strip_prefix(&VP8_KEYFRAME_HEADER[..])?
        }
    };
    if body.len() < HEADER_LEN || &body[..4] != MAGIC || body[8] != kind as u8 {
        return None;
    }
    let stamp = Stamp {
        sender: u32::from_be_bytes(body[4..8].try_into().ok()?),
        kind,
        seq: u32::from_be_bytes(body[9..13].try_into().ok()?),
        sent_us: u64::from_be_bytes(body[13..21].try_into().ok()?),
    };
    let intact = self::body(stamp, body.len()) == body;
    Some((stamp, intact))
}

/// Skips the VP8 payload descriptor (RFC 7741 §4.2), which an SFU may rewrite.
fn vp8_frame(payload: &[u8]) -> Option<&[u8]> {
    let first = *payload.first()?;
    let mut at = 1;
    if first & 0x80 != 0 {
        let ext = *payload.get(1)?;
        at = 2;
        if ext & 0x80 != 0 {
            at += if payload.get(at)? & 0x80 != 0 { 2 } else { 1 };
        }
        if ext & 0x40 != 0 {
            at += 1;
        }
        if ext & 0x30 != 0 {
            at += 1;
        }
    }
    payload.get(at..)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(kind: Kind, len: usize) {
        let stamp = Stamp { sender: 70_000, kind, seq: 12_345, sent_us: 987_654_321 };
        let p = payload(stamp, len);
        assert_eq!(p.len(), len);
        assert_eq!(read(kind, &p), Some((stamp, true)));
        let mut damaged = p.clone();
        *damaged.last_mut().unwrap() ^= 1;
        assert_eq!(read(kind, &damaged), Some((stamp, false)));
        let other = match kind {
            Kind::Audio => Kind::Video,
            Kind::Video => Kind::Audio,
        };
        assert_eq!(read(other, &p), None);
    }

    #[test]
    fn payloads_read_back_and_damage_shows() {
        check(Kind::Audio, 120);
        check(Kind::Video, 1_100);
    }

    #[test]
    fn a_rewritten_vp8_descriptor_is_skipped() {
        let stamp = Stamp { sender: 1, kind: Kind::Video, seq: 2, sent_us: 3 };
        let mut p = payload(stamp, 200);
        // Extended descriptor with a 15-bit picture id, as an SFU may add.
        p.splice(0..1, [0x90, 0x80, 0x81, 0x23]);
        assert_eq!(read(Kind::Video, &p), Some((stamp, true)));
    }
}
