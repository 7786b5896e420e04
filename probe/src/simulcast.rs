//! A camera that sends in simulcast, as a browser can: three VP8 layers at clearly different
//! bitrates, each with its own SSRC, sequence numbers and RTP clock offset, named by their rid.
//!
//! Every frame fits one packet and carries a stamp whose sender names its layer, so a receiver
//! can tell which layer each frame it got came from.

use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use rtc::rtp::{Header, Packet};
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters};
use tokio::sync::watch;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;

use crate::stamp::{self, Kind, Stamp, VideoCodec};

/// The layers' tick: a layer sends a frame every `every` ticks.
const TICK: Duration = Duration::from_millis(10);
const SSRC_BASE: u32 = 0x4000_0000;
const MID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
const RID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";

/// One simulcast layer: a frame of `bytes` every `every` ticks of 10 ms.
#[derive(Debug, Clone, Copy)]
pub struct Layer {
    pub rid: &'static str,
    pub every: u32,
    pub bytes: usize,
}

/// The layers at about 80, 320 and 800 kbit/s of payload, named the way Chromium names them.
pub const LAYERS: [Layer; 3] = [
    Layer { rid: "q", every: 4, bytes: 400 },
    Layer { rid: "h", every: 1, bytes: 400 },
    Layer { rid: "f", every: 1, bytes: 1000 },
];

/// Layer `n`'s payloads carry the sender `id + LAYER_SENDER_OFFSET * (n + 1)`.
pub const LAYER_SENDER_OFFSET: u32 = 100_000;

/// The SSRC of sender `id`'s layer `index`.
fn ssrc(id: u32, index: usize) -> u32 {
    SSRC_BASE.wrapping_add(id.wrapping_mul(16)).wrapping_add(index as u32)
}

/// The camera track's encodings: one per layer, each named by its rid.
pub fn encodings(id: u32) -> Vec<RTCRtpEncodingParameters> {
    LAYERS
        .iter()
        .enumerate()
        .map(|(index, layer)| RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                rid: layer.rid.to_owned(),
                ssrc: Some(ssrc(id, index)),
                ..Default::default()
            },
            active: true,
            codec: RTCRtpCodec {
                mime_type: VideoCodec::Vp8.mime().to_owned(),
                clock_rate: 90_000,
                channels: 0,
                sdp_fmtp_line: String::new(),
                rtcp_feedback: vec![],
            },
            ..Default::default()
        })
        .collect()
}

/// What a simulcast camera's packets must carry so an SFU can tell its layers apart: the
/// m-line's mid and the layer's rid, in header extensions with the ids the offer set.
#[derive(Debug, Clone)]
pub struct Tags {
    mid: Bytes,
    mid_extension: u8,
    rid_extension: u8,
}

impl Tags {
    /// Reads the video m-line's mid and the extension ids from our own offer.
    pub fn from_offer(sdp: &str) -> Result<Tags> {
        let extension = |uri: &str| -> Result<u8> {
            sdp.lines()
                .filter_map(|l| l.strip_prefix("a=extmap:"))
                .find(|l| l.split_whitespace().nth(1) == Some(uri))
                .and_then(|l| l.split([' ', '/']).next())
                .and_then(|id| id.parse().ok())
                .with_context(|| format!("the offer maps no {uri}"))
        };
        let video = sdp.split("m=").find(|section| section.starts_with("video")).context("no video m-line")?;
        let mid = video.lines().find_map(|l| l.strip_prefix("a=mid:")).context("no mid in the video m-line")?;
        Ok(Tags {
            mid: Bytes::from(mid.trim().to_owned()),
            mid_extension: extension(MID_URI)?,
            rid_extension: extension(RID_URI)?,
        })
    }
}

/// Publishes every layer on `track` as sender `id` until `stop` turns true. Returns the number
/// of frames sent per layer.
pub async fn publish(
    track: &TrackLocalStaticRTP,
    tags: &Tags,
    id: u32,
    mut stop: watch::Receiver<bool>,
) -> Result<[u32; 3]> {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sent = [0u32; 3];
    for n in 0u32.. {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let sent_us = stamp::now_us();
        for (index, layer) in LAYERS.iter().enumerate() {
            if n % layer.every != 0 {
                continue;
            }
            let sender = id + LAYER_SENDER_OFFSET * (index as u32 + 1);
            let stamp = Stamp { sender, kind: Kind::Video, seq: sent[index], sent_us };
            let mut packet = Packet {
                header: Header {
                    version: 2,
                    marker: true,
                    payload_type: crate::payload_type::VP8,
                    sequence_number: sent[index] as u16,
                    // Each layer's RTP clock starts at an offset of its own, as a browser's do.
                    timestamp: (index as u32).wrapping_mul(1_234_567_891).wrapping_add(n.wrapping_mul(900)),
                    ssrc: ssrc(id, index),
                    ..Default::default()
                },
                payload: Bytes::from(stamp::payload(stamp, VideoCodec::Vp8, layer.bytes)),
            };
            packet.header.set_extension(tags.mid_extension, tags.mid.clone())?;
            packet.header.set_extension(tags.rid_extension, Bytes::from_static(layer.rid.as_bytes()))?;
            track.write_rtp(packet).await?;
            sent[index] += 1;
        }
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tags_come_from_the_video_section_and_the_extension_map() {
        let offer = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n\
            a=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\n\
            a=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
            a=extmap:10/sendonly urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r\n";
        let tags = Tags::from_offer(offer).unwrap();
        assert_eq!((tags.mid.as_ref(), tags.mid_extension, tags.rid_extension), (&b"1"[..], 3, 10));
        assert!(Tags::from_offer("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\n").is_err());
    }

    #[test]
    fn every_layer_has_an_ssrc_and_a_sender_of_its_own() {
        let ssrcs: Vec<Option<u32>> = encodings(7).iter().map(|e| e.rtp_coding_parameters.ssrc).collect();
        assert_eq!(ssrcs, [Some(ssrc(7, 0)), Some(ssrc(7, 1)), Some(ssrc(7, 2))]);
        assert!(ssrc(7, 2) < ssrc(8, 0), "one sender's layers overlap the next sender's");
        assert!(LAYER_SENDER_OFFSET * (LAYERS.len() as u32) < crate::SCREEN_SENDER_OFFSET);
    }
}
