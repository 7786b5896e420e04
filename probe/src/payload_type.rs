//! The RTP payload types every probe sends: those of webrtc-rs's
//! `MediaEngine::register_default_codecs`, which str0m's and Janus's answers keep, and which
//! the bare relay's plain RTP reuses.

pub const OPUS: u8 = 111;
pub const VP8: u8 = 96;
/// H.264 constrained baseline, packetization mode 1.
pub const H264: u8 = 102;
