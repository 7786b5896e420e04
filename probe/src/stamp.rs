//! The stamped payload every probe publishes, and the one clock that stamps it.
//!
//! A payload names its sender, its kind, its sequence number and its send time, then carries
//! filler that is a function of those, so a receiver can rebuild the whole body and compare
//! every byte. Video payloads sit behind a VP8 payload descriptor and keyframe header, or
//! inside an H.264 IDR slice, so an SFU that parses the codec (as the gateway's str0m core
//! does) forwards them as real frames.

use std::borrow::Cow;
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
/// NAL unit header of an H.264 IDR slice: nal_ref_idc 3, type 5. A VP8 payload descriptor
/// never starts so (its reserved bit 0x40 is set), so a receiver tells the codecs apart by it.
const H264_IDR_HEADER: u8 = 0x65;

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

/// The codec a camera's payloads are framed in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum VideoCodec {
    #[default]
    Vp8,
    /// Constrained baseline, packetization mode 1: each payload is one IDR slice NAL unit.
    H264,
}

impl VideoCodec {
    pub fn mime(self) -> &'static str {
        match self {
            VideoCodec::Vp8 => "video/VP8",
            VideoCodec::H264 => "video/H264",
        }
    }
}

/// What a receiver learns from one payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub sender: u32,
    pub kind: Kind,
    pub seq: u32,
    pub sent_us: u64,
}

/// The RTP payload for `stamp`, video framed in `codec`: `len` bytes long in all (at least the
/// header's length), or for H.264 a few more where emulation prevention needs them.
pub fn payload(stamp: Stamp, codec: VideoCodec, len: usize) -> Vec<u8> {
    match (stamp.kind, codec) {
        (Kind::Audio, _) => body(stamp, len),
        (Kind::Video, VideoCodec::Vp8) => {
            let mut frame = Vec::with_capacity(len);
            frame.push(VP8_DESCRIPTOR_START);
            frame.extend_from_slice(&VP8_KEYFRAME_HEADER);
            frame.extend(body(stamp, len.saturating_sub(VIDEO_PREFIX_LEN)));
            frame
        }
        // One IDR slice as a single NAL unit packet (RFC 6184 §5.6).
        (Kind::Video, VideoCodec::H264) => h264_idr_nal(&body(stamp, len.saturating_sub(1))),
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

/// What a receiver reads back from one payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    pub stamp: Stamp,
    /// Every byte is as the sender built it.
    pub intact: bool,
    /// The codec a video payload came in; `None` for audio.
    pub codec: Option<VideoCodec>,
}

/// Reads a payload of `kind` back. `None` when it is not a probe payload of that kind at all.
pub fn read(kind: Kind, payload: &[u8]) -> Option<Reading> {
    let (body, codec) = match kind {
        Kind::Audio => (Cow::Borrowed(payload), None),
        Kind::Video if payload.first() == Some(&H264_IDR_HEADER) => {
            (Cow::Owned(unescape_nal(&payload[1..])), Some(VideoCodec::H264))
        }
        Kind::Video => {
            let frame = vp8_frame(payload)?;
            (Cow::Borrowed(frame.strip_prefix(&VP8_KEYFRAME_HEADER[..])?), Some(VideoCodec::Vp8))
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
    let intact = self::body(stamp, body.len()) == *body;
    Some(Reading { stamp, intact, codec })
}

/// An H.264 IDR slice NAL unit carrying `body`, with emulation-prevention bytes inserted as an
/// encoder does (H.264 §7.4.1), so no start code appears inside it.
fn h264_idr_nal(body: &[u8]) -> Vec<u8> {
    let mut nal = Vec::with_capacity(body.len() + body.len() / 64 + 1);
    nal.push(H264_IDR_HEADER);
    let mut zeros = 0;
    for &byte in body {
        if zeros >= 2 && byte <= 3 {
            nal.push(3);
            zeros = 0;
        }
        nal.push(byte);
        zeros = if byte == 0 { zeros + 1 } else { 0 };
    }
    nal
}

/// Removes the emulation-prevention bytes that [`h264_idr_nal`] inserted.
fn unescape_nal(escaped: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(escaped.len());
    let mut zeros = 0;
    for &byte in escaped {
        if zeros >= 2 && byte == 3 {
            zeros = 0;
            continue;
        }
        body.push(byte);
        zeros = if byte == 0 { zeros + 1 } else { 0 };
    }
    body
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

    fn check(kind: Kind, codec: VideoCodec, len: usize) {
        let stamp = Stamp { sender: 70_000, kind, seq: 12_345, sent_us: 987_654_321 };
        let p = payload(stamp, codec, len);
        assert!(p.len() >= len);
        let codec = (kind == Kind::Video).then_some(codec);
        assert_eq!(read(kind, &p), Some(Reading { stamp, intact: true, codec }));
        let mut damaged = p.clone();
        *damaged.last_mut().unwrap() ^= 1;
        assert_eq!(read(kind, &damaged), Some(Reading { stamp, intact: false, codec }));
        let other = match kind {
            Kind::Audio => Kind::Video,
            Kind::Video => Kind::Audio,
        };
        assert_eq!(read(other, &p), None);
    }

    #[test]
    fn payloads_read_back_and_damage_shows() {
        check(Kind::Audio, VideoCodec::Vp8, 120);
        check(Kind::Video, VideoCodec::Vp8, 1_100);
        check(Kind::Video, VideoCodec::H264, 1_100);
    }

    #[test]
    fn an_h264_body_holds_no_start_code() {
        // Sequence 0 from sender 0 puts runs of zero bytes in the header.
        let stamp = Stamp { sender: 0, kind: Kind::Video, seq: 0, sent_us: 0 };
        let p = payload(stamp, VideoCodec::H264, 600);
        assert!(!p.windows(3).any(|w| w[0] == 0 && w[1] == 0 && w[2] <= 2), "a start code inside the NAL unit");
        assert_eq!(read(Kind::Video, &p).map(|r| r.intact), Some(true));
    }

    #[test]
    fn a_rewritten_vp8_descriptor_is_skipped() {
        let stamp = Stamp { sender: 1, kind: Kind::Video, seq: 2, sent_us: 3 };
        let mut p = payload(stamp, VideoCodec::Vp8, 200);
        // Extended descriptor with a 15-bit picture id, as an SFU may add.
        p.splice(0..1, [0x90, 0x80, 0x81, 0x23]);
        assert_eq!(read(Kind::Video, &p), Some(Reading { stamp, intact: true, codec: Some(VideoCodec::Vp8) }));
    }
}
