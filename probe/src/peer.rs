//! One webrtc-rs peer connection that publishes stamped audio and video (optionally a screen
//! track) and records every payload it receives, with its arrival time.
//!
//! Signalling is someone else's job (`gateway.rs`, `janus.rs`, or a direct offer/answer):
//! this type only makes and takes SDP.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use rtc::ice::mdns::MulticastDnsMode;
use rtc::media_stream::MediaStreamTrack;
use rtc::rtp::{Header, Packet};
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind};
use tokio::sync::watch;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceCandidateInit, RTCIceGatheringState, RTCPeerConnectionState, RTCSessionDescription, Registry,
    SettingEngineBuilder, register_default_interceptors,
};

use crate::inbox::{Arrival, Inbox};
use crate::pace::{self, Ledger, Outlet, Plan, Track};
use crate::stamp::Kind;

/// Payload types of `MediaEngine::register_default_codecs`, which str0m's and Janus's answers keep.
const OPUS_PT: u8 = 111;
const VP8_PT: u8 = 96;
const AUDIO_SSRC_BASE: u32 = 0x1000_0000;
const VIDEO_SSRC_BASE: u32 = 0x2000_0000;
const SCREEN_SSRC_BASE: u32 = 0x3000_0000;

/// How the peer reaches the network.
#[derive(Debug, Clone, Copy)]
pub struct PeerOptions {
    /// The one local address it gathers candidates on, so address-leak checks can fail.
    pub ip: IpAddr,
    /// Publish a second video track, as a screen share is.
    pub share_screen: bool,
    /// No UDP at all: ICE-TCP only, as behind a firewall that blocks UDP.
    pub tcp_only: bool,
    /// Add the audio and camera tracks; a receive-only connection (a Janus subscriber) has none.
    pub publish: bool,
}

impl PeerOptions {
    pub fn udp(ip: IpAddr) -> Self {
        PeerOptions { ip, share_screen: false, tcp_only: false, publish: true }
    }
}

struct Handler {
    gathered: watch::Sender<bool>,
    connected: watch::Sender<bool>,
    inbox: Arc<Inbox>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        let _ = self.gathered.send(state == RTCIceGatheringState::Complete);
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        if state == RTCPeerConnectionState::Connected {
            let _ = self.connected.send(true);
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let inbox = self.inbox.clone();
        tokio::spawn(async move {
            let kind = if track.kind().await == RtpCodecKind::Audio { Kind::Audio } else { Kind::Video };
            while let Some(event) = track.poll().await {
                let TrackRemoteEvent::OnRtpPacket(packet) = event else {
                    continue;
                };
                if packet.payload.is_empty() {
                    continue; // padding, as bandwidth probes send
                }
                inbox.record(kind, &packet.payload);
            }
        });
    }
}

/// A peer connection with its published tracks and what it has received.
pub struct Peer {
    /// The sender id embedded in every payload this peer publishes.
    pub id: u32,
    pc: Arc<dyn PeerConnection>,
    audio: LocalTrack,
    video: LocalTrack,
    screen: Option<LocalTrack>,
    connected: watch::Receiver<bool>,
    /// True while ICE gathering is complete; renegotiation keeps the candidates gathered.
    gathered: watch::Receiver<bool>,
    pub inbox: Arc<Inbox>,
    options: PeerOptions,
}

impl Peer {
    /// Builds the peer connection and adds its tracks; nothing is sent until it is signalled.
    pub async fn new(id: u32, options: PeerOptions) -> Result<Peer> {
        let mut media = MediaEngine::default();
        media.register_default_codecs()?;
        let registry = register_default_interceptors(Registry::new(), &mut media)?;
        let settings = SettingEngineBuilder::new()
            .with_multicast_dns_mode(MulticastDnsMode::Disabled)
            .with_include_loopback_candidate(true)
            .build();
        let (gathered_tx, gathered) = watch::channel(false);
        let (connected_tx, connected) = watch::channel(false);
        let inbox = Arc::new(Inbox::default());
        let handler = Handler { gathered: gathered_tx, connected: connected_tx, inbox: inbox.clone() };
        let ip = options.ip;
        let builder = PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(media)
            .with_setting_engine(settings)
            .with_interceptor_registry(registry)
            .with_handler(Arc::new(handler));
        let builder = if options.tcp_only {
            builder
                .with_tcp_addrs(vec![format!("{ip}:0")])
                .with_runtime(Arc::new(crate::tcp_runtime::BoundTcpRuntime { local_ip: ip }))
        } else {
            builder.with_udp_addrs(vec![format!("{ip}:0")])
        };
        let pc: Arc<dyn PeerConnection> = Arc::new(builder.build().await.context("building the peer connection")?);
        let audio = LocalTrack::new(id, "audio", RtpCodecKind::Audio, AUDIO_SSRC_BASE.wrapping_add(id));
        let video = LocalTrack::new(id, "camera", RtpCodecKind::Video, VIDEO_SSRC_BASE.wrapping_add(id));
        if options.publish {
            pc.add_track(audio.track.clone() as Arc<dyn TrackLocal>).await?;
            pc.add_track(video.track.clone() as Arc<dyn TrackLocal>).await?;
        }
        let screen = if options.share_screen && options.publish {
            let track = LocalTrack::new(id, "screen", RtpCodecKind::Video, SCREEN_SSRC_BASE.wrapping_add(id));
            pc.add_track(track.track.clone() as Arc<dyn TrackLocal>).await?;
            Some(track)
        } else {
            None
        };
        Ok(Peer { id, pc, audio, video, screen, connected, gathered, inbox, options })
    }

    /// Creates an offer and returns it once every candidate is in it (no trickle needed).
    pub async fn offer(&self) -> Result<String> {
        let offer = self.pc.create_offer(None).await?;
        self.pc.set_local_description(offer).await?;
        self.gathered_sdp().await
    }

    /// Applies a remote offer and returns the complete answer.
    pub async fn answer(&self, offer: String) -> Result<String> {
        self.pc.set_remote_description(RTCSessionDescription::offer(offer)?).await?;
        let answer = self.pc.create_answer(None).await?;
        self.pc.set_local_description(answer).await?;
        self.gathered_sdp().await
    }

    /// Applies the remote side's answer to our offer.
    pub async fn accept_answer(&self, sdp: String) -> Result<()> {
        self.pc.set_remote_description(RTCSessionDescription::answer(sdp.clone())?).await?;
        if self.options.tcp_only {
            // webrtc-rs dials a passive TCP candidate only when it is trickled, not when it
            // comes inside the SDP, so hand the remote side's over again.
            for line in sdp.lines().filter(|l| l.contains(" tcp ") && l.contains("tcptype passive")) {
                let candidate = RTCIceCandidateInit {
                    candidate: line.trim_start_matches("a=").to_owned(),
                    sdp_mid: Some("0".to_owned()),
                    sdp_mline_index: Some(0),
                    ..Default::default()
                };
                self.pc.add_ice_candidate(candidate).await?;
            }
        }
        Ok(())
    }

    /// The local description once gathering has completed, checked to offer only our address.
    async fn gathered_sdp(&self) -> Result<String> {
        let mut gathered = self.gathered.clone();
        tokio::time::timeout(Duration::from_secs(5), gathered.wait_for(|g| *g))
            .await
            .context("ICE gathering did not complete")??;
        let sdp = self.pc.local_description().await.context("no local description")?.sdp;
        if !sdp.contains(&self.options.ip.to_string()) {
            bail!("the peer did not offer its own address {}", self.options.ip);
        }
        if self.options.tcp_only
            && sdp.lines().any(|l| l.starts_with("a=candidate") && l.to_lowercase().contains(" udp "))
        {
            bail!("a TCP-only peer offered a UDP candidate");
        }
        Ok(sdp)
    }

    /// Waits until ICE and DTLS are up.
    pub async fn wait_connected(&self, limit: Duration) -> Result<()> {
        let mut connected = self.connected.clone();
        tokio::time::timeout(limit, connected.wait_for(|c| *c))
            .await
            .context("the peer connection did not come up in time")??;
        Ok(())
    }

    pub fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }

    /// Publishes `plan` (and, when sharing, a screen frame five times a second) until `stop`
    /// turns true. Sequence numbers start at `first_seq`. Returns every payload's send time.
    pub async fn publish(&self, plan: Plan, first_seq: u32, stop: watch::Receiver<bool>) -> Ledger {
        pace::publish(self, self.id, plan, self.screen.is_some(), first_seq, stop).await
    }

    /// Every payload received so far, in arrival order.
    pub fn arrivals(&self) -> Vec<Arrival> {
        self.inbox.arrivals()
    }

    pub fn take_arrivals(&self) -> Vec<Arrival> {
        self.inbox.take_arrivals()
    }

    pub fn undecodable(&self) -> usize {
        self.inbox.undecodable()
    }

    pub async fn close(&self) {
        let _ = self.pc.close().await;
    }
}

impl Outlet for Peer {
    async fn send(&self, track: Track, seq: u32, timestamp: u32, payload: Vec<u8>) {
        let (local, pt) = match track {
            Track::Audio => (&self.audio, OPUS_PT),
            Track::Video => (&self.video, VP8_PT),
            Track::Screen => match &self.screen {
                Some(screen) => (screen, VP8_PT),
                None => return,
            },
        };
        let packet = Packet {
            header: Header {
                version: 2,
                marker: true,
                payload_type: pt,
                sequence_number: seq as u16,
                timestamp,
                ssrc: local.ssrc,
                ..Default::default()
            },
            payload: Bytes::from(payload),
        };
        let _ = local.track.write_rtp(packet).await;
    }
}

/// A track this peer publishes, with the SSRC its packets carry.
struct LocalTrack {
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
}

impl LocalTrack {
    fn new(id: u32, name: &str, kind: RtpCodecKind, ssrc: u32) -> LocalTrack {
        let (mime, clock_rate, channels) =
            if kind == RtpCodecKind::Audio { ("audio/opus", 48_000, 2) } else { ("video/VP8", 90_000, 0) };
        let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            format!("stream-{id}"),
            format!("{name}-{id}"),
            format!("{name}-{id}"),
            kind,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() },
                active: true,
                codec: RTCRtpCodec {
                    mime_type: mime.to_owned(),
                    clock_rate,
                    channels,
                    sdp_fmtp_line: String::new(),
                    rtcp_feedback: vec![],
                },
                ..Default::default()
            }],
        )));
        LocalTrack { track, ssrc }
    }
}
