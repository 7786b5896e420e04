//! One webrtc-rs peer connection that publishes stamped audio and video (optionally a screen
//! track) and records every payload it receives, with its arrival time.
//!
//! Signalling is someone else's job (`gateway.rs`, `janus.rs`, or a direct offer/answer):
//! this type only makes and takes SDP.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
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

use crate::stamp::{self, Kind, Stamp};

/// Payload types of `MediaEngine::register_default_codecs`, which str0m's and Janus's answers keep.
const OPUS_PT: u8 = 111;
const VP8_PT: u8 = 96;
/// Screen-share payloads carry the sharer's id plus this, to tell them from its camera's.
pub const SCREEN_SENDER_OFFSET: u32 = 1_000_000;
const AUDIO_SSRC_BASE: u32 = 0x1000_0000;
const VIDEO_SSRC_BASE: u32 = 0x2000_0000;
const SCREEN_SSRC_BASE: u32 = 0x3000_0000;
/// The publishing tick: one Opus packet per 20 ms, as browsers send.
const TICK: Duration = Duration::from_millis(20);
/// A screen frame every tenth tick (5 a second).
const SCREEN_EVERY_TICKS: u64 = 10;
const SCREEN_LEN: usize = 900;

/// How the peer reaches the network.
#[derive(Debug, Clone, Copy)]
pub struct PeerOptions {
    /// The one local address it gathers candidates on, so address-leak checks can fail.
    pub ip: IpAddr,
    /// Publish a second video track, as a screen share is.
    pub share_screen: bool,
    /// No UDP at all: ICE-TCP only, as behind a firewall that blocks UDP.
    pub tcp_only: bool,
}

impl PeerOptions {
    pub fn udp(ip: IpAddr) -> Self {
        PeerOptions { ip, share_screen: false, tcp_only: false }
    }
}

/// What to publish: Opus-sized audio at 50 packets a second plus video at `video_bps` in
/// packets of `video_len` bytes. Each video packet is a one-packet VP8 frame, so its stamp
/// survives an SFU that reassembles and re-packetizes frames.
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

/// One received payload.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    pub stamp: Stamp,
    pub received_us: u64,
    /// The body arrived byte for byte as the sender built it.
    pub intact: bool,
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

#[derive(Default)]
struct Inbox {
    arrivals: Vec<Arrival>,
    /// Payloads that are not what any probe sends: damaged beyond recognition or foreign.
    undecodable: usize,
}

struct Handler {
    gathered: watch::Sender<bool>,
    connected: watch::Sender<bool>,
    inbox: Arc<Mutex<Inbox>>,
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
                let received_us = stamp::now_us();
                let mut inbox = inbox.lock().unwrap();
                match stamp::read(kind, &packet.payload) {
                    Some((stamp, intact)) => inbox.arrivals.push(Arrival { stamp, received_us, intact }),
                    None => inbox.undecodable += 1,
                }
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
    inbox: Arc<Mutex<Inbox>>,
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
        let inbox = Arc::new(Mutex::new(Inbox::default()));
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
        pc.add_track(audio.track.clone() as Arc<dyn TrackLocal>).await?;
        pc.add_track(video.track.clone() as Arc<dyn TrackLocal>).await?;
        let screen = if options.share_screen {
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
    pub async fn publish(&self, plan: Plan, first_seq: u32, mut stop: watch::Receiver<bool>) -> Ledger {
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
            let sent_us =
                self.send(&self.audio, Kind::Audio, self.id, seq, seq.wrapping_mul(960), plan.audio_len).await;
            ledger.audio.push(sent_us);
            video_budget += bytes_per_tick;
            while video_budget >= plan.video_len as f64 {
                video_budget -= plan.video_len as f64;
                let seq = first_seq + ledger.video.len() as u32;
                // Every packet is its own frame, so each needs its own timestamp (90 kHz).
                let ts = ((stamp::now_us() * 9 / 100) as u32).max(last_video_ts.wrapping_add(1));
                last_video_ts = ts;
                let sent_us = self.send(&self.video, Kind::Video, self.id, seq, ts, plan.video_len).await;
                ledger.video.push(sent_us);
            }
            if let Some(screen) = &self.screen
                && n % SCREEN_EVERY_TICKS == 0
            {
                let seq = first_seq + ledger.screen.len() as u32;
                let sender = self.id + SCREEN_SENDER_OFFSET;
                let sent_us = self.send(screen, Kind::Video, sender, seq, seq.wrapping_mul(18_000), SCREEN_LEN).await;
                ledger.screen.push(sent_us);
            }
        }
        ledger
    }

    /// Sends one stamped payload; returns its send time. A failed write (the connection is
    /// going away) counts as sent: the receiver's loss figure is what tells.
    async fn send(&self, track: &LocalTrack, kind: Kind, sender: u32, seq: u32, timestamp: u32, len: usize) -> u64 {
        let sent_us = stamp::now_us();
        let payload = stamp::payload(Stamp { sender, kind, seq, sent_us }, len);
        let pt = if kind == Kind::Audio { OPUS_PT } else { VP8_PT };
        let packet = Packet {
            header: Header {
                version: 2,
                marker: true,
                payload_type: pt,
                sequence_number: seq as u16,
                timestamp,
                ssrc: track.ssrc,
                ..Default::default()
            },
            payload: Bytes::from(payload),
        };
        let _ = track.track.write_rtp(packet).await;
        sent_us
    }

    /// Every payload received so far, in arrival order.
    pub fn arrivals(&self) -> Vec<Arrival> {
        self.inbox.lock().unwrap().arrivals.clone()
    }

    /// Takes the payloads received so far, leaving none (cheaper than a copy for big runs).
    pub fn take_arrivals(&self) -> Vec<Arrival> {
        std::mem::take(&mut self.inbox.lock().unwrap().arrivals)
    }

    pub fn undecodable(&self) -> usize {
        self.inbox.lock().unwrap().undecodable
    }

    pub async fn close(&self) {
        let _ = self.pc.close().await;
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
