//! One webrtc-rs peer connection that publishes stamped audio and video (optionally a screen
//! track) and records every payload it receives, with its arrival time.
//!
//! Signalling is someone else's job (`gateway.rs`, `janus.rs`, or a direct offer/answer):
//! this type only makes and takes SDP.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use rtc::ice::mdns::MulticastDnsMode;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::RTCOfferOptions;
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
use webrtc::rtp_transceiver::RtpSender;

use crate::inbox::{Arrival, Inbox};
use crate::pace::{self, Ledger, Outlet, Plan, Track};
use crate::payload_type;
use crate::sdp;
use crate::simulcast::{self, Tags};
use crate::stamp::{Kind, VideoCodec};

const AUDIO_SSRC_BASE: u32 = 0x1000_0000;
const VIDEO_SSRC_BASE: u32 = 0x2000_0000;
const SCREEN_SSRC_BASE: u32 = 0x3000_0000;

/// What the peer publishes and how it reaches the network. Start from [`PeerOptions::udp`] and
/// change what differs.
#[derive(Debug, Clone, Copy)]
pub struct PeerOptions {
    /// The one local address it gathers candidates on, so address-leak checks can fail.
    pub ip: IpAddr,
    /// Publish a second video track, as a screen share is, from the start.
    pub share_screen: bool,
    /// No UDP at all: ICE-TCP only, as behind a firewall that blocks UDP.
    pub tcp_only: bool,
    /// Add the audio and camera tracks; a receive-only connection (a Janus subscriber) has none.
    pub publish: bool,
    /// The codec the camera sends in.
    pub camera: VideoCodec,
    /// The camera sends the [`simulcast::LAYERS`] (VP8), as a browser can.
    pub simulcast: bool,
    /// Reach the remote side's media only through this UDP relay: the remote candidates are
    /// pointed at it in every description the peer applies.
    pub relay: Option<SocketAddr>,
    /// Candidates (`candidate:...`) added to the offer beside the peer's own, as a hostile
    /// client could: addresses the remote side must never send to.
    pub extra_candidates: &'static [&'static str],
    /// Number every packet sent transport-wide (TWCC), as browsers do, so the remote side sees
    /// each packet lost on the way, retransmissions included; see [`send_side_twcc`].
    pub transport_cc: bool,
}

impl PeerOptions {
    pub fn udp(ip: IpAddr) -> Self {
        PeerOptions {
            ip,
            share_screen: false,
            tcp_only: false,
            publish: true,
            camera: VideoCodec::Vp8,
            simulcast: false,
            relay: None,
            extra_candidates: &[],
            transport_cc: false,
        }
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
    /// A second video track, as a screen share is, while the peer shares its screen.
    screen: Mutex<Option<ScreenShare>>,
    /// What a simulcast camera's packets carry, known once the first offer is made.
    simulcast: OnceLock<Tags>,
    connected: watch::Receiver<bool>,
    /// True while ICE gathering is complete; renegotiation keeps the candidates gathered.
    gathered: watch::Receiver<bool>,
    pub inbox: Arc<Inbox>,
    options: PeerOptions,
}

/// Adds transport-wide sequence numbers to every packet the peer sends. webrtc-rs by default
/// only gives feedback on what it receives, and retransmits on the original stream, where a
/// repaired packet counts as received: without this the remote side sees only the loss that
/// retransmission could not repair.
fn send_side_twcc(registry: Registry, media: &mut MediaEngine) -> Result<Registry> {
    Ok(rtc::peer_connection::configuration::interceptor_registry::configure_twcc_sender_only(registry, media)?)
}

/// A shared screen's track and the sender that carries it, so sharing can stop.
struct ScreenShare {
    track: LocalTrack,
    sender: Arc<dyn RtpSender>,
}

impl Peer {
    /// Builds the peer connection and adds its tracks; nothing is sent until it is signalled.
    pub async fn new(id: u32, options: PeerOptions) -> Result<Peer> {
        let mut media = MediaEngine::default();
        media.register_default_codecs()?;
        let mut registry = register_default_interceptors(Registry::new(), &mut media)?;
        if options.transport_cc {
            registry = send_side_twcc(registry, &mut media)?;
        }
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
        let audio = LocalTrack::new(id, "audio", RtpCodecKind::Audio, "audio/opus", AUDIO_SSRC_BASE.wrapping_add(id));
        let video = if options.simulcast {
            LocalTrack::simulcast_camera(id)
        } else {
            let ssrc = VIDEO_SSRC_BASE.wrapping_add(id);
            LocalTrack::new(id, "camera", RtpCodecKind::Video, options.camera.mime(), ssrc)
        };
        if options.publish {
            pc.add_track(audio.track.clone() as Arc<dyn TrackLocal>).await?;
            pc.add_track(video.track.clone() as Arc<dyn TrackLocal>).await?;
        }
        let peer = Peer {
            id,
            pc,
            audio,
            video,
            screen: Mutex::new(None),
            simulcast: OnceLock::new(),
            connected,
            gathered,
            inbox,
            options,
        };
        if options.share_screen && options.publish {
            peer.add_screen().await?;
        }
        Ok(peer)
    }

    /// Creates an offer and returns it once every candidate is in it (no trickle needed), with
    /// the [`PeerOptions::extra_candidates`] beside the peer's own.
    pub async fn offer(&self) -> Result<String> {
        let offer = self.pc.create_offer(None).await?;
        self.pc.set_local_description(offer).await?;
        let sdp = self.gathered_sdp().await?;
        if self.options.simulcast && self.simulcast.get().is_none() {
            let _ = self.simulcast.set(Tags::from_offer(&sdp)?);
        }
        Ok(sdp::with_candidates(&sdp, self.options.extra_candidates))
    }

    /// A further offer on the same connection, as tracks come and go or ICE restarts (new
    /// credentials, same DTLS session). The candidates are already gathered.
    pub async fn renegotiate(&self, ice_restart: bool) -> Result<String> {
        let offer = self.pc.create_offer(Some(RTCOfferOptions { ice_restart })).await?;
        self.pc.set_local_description(offer).await?;
        Ok(self.pc.local_description().await.context("no local description")?.sdp)
    }

    /// Applies a remote offer and returns the complete answer.
    pub async fn answer(&self, offer: String) -> Result<String> {
        let offer = self.reached(offer);
        self.pc.set_remote_description(RTCSessionDescription::offer(offer)?).await?;
        let answer = self.pc.create_answer(None).await?;
        self.pc.set_local_description(answer).await?;
        self.gathered_sdp().await
    }

    /// Applies the remote side's answer to our offer.
    pub async fn accept_answer(&self, sdp: String) -> Result<()> {
        let sdp = self.reached(sdp);
        self.pc.set_remote_description(RTCSessionDescription::answer(sdp.clone())?).await?;
        if self.options.tcp_only {
            // webrtc-rs dials a passive TCP candidate only when it is trickled, not when it
            // comes inside the SDP, so hand the remote side's over again.
            for candidate in sdp::passive_tcp_candidates(&sdp) {
                let candidate = RTCIceCandidateInit {
                    candidate: candidate.to_owned(),
                    sdp_mid: Some("0".to_owned()),
                    sdp_mline_index: Some(0),
                    ..Default::default()
                };
                self.pc.add_ice_candidate(candidate).await?;
            }
        }
        Ok(())
    }

    /// A remote description as this peer can reach it: through its relay, if it has one.
    fn reached(&self, sdp: String) -> String {
        match self.options.relay {
            Some(relay) => sdp::through_relay(&sdp, relay),
            None => sdp,
        }
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

    /// Adds a screen-share track; the caller renegotiates.
    async fn add_screen(&self) -> Result<()> {
        let ssrc = SCREEN_SSRC_BASE.wrapping_add(self.id);
        let track = LocalTrack::new(self.id, "screen", RtpCodecKind::Video, VideoCodec::Vp8.mime(), ssrc);
        let sender = self.pc.add_track(track.track.clone() as Arc<dyn TrackLocal>).await?;
        *self.screen.lock().unwrap() = Some(ScreenShare { track, sender });
        Ok(())
    }

    /// Starts sharing a screen on the existing connection; returns the offer to signal.
    pub async fn start_screen_share(&self) -> Result<String> {
        self.add_screen().await?;
        self.renegotiate(false).await
    }

    /// Stops sharing the screen on the existing connection; returns the offer to signal.
    pub async fn stop_screen_share(&self) -> Result<String> {
        let screen = self.screen.lock().unwrap().take();
        if let Some(screen) = screen {
            self.pc.remove_track(&screen.sender).await?;
        }
        self.renegotiate(false).await
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
        let sharing = self.screen.lock().unwrap().is_some();
        pace::publish(self, self.id, plan, sharing, first_seq, stop).await
    }

    /// Publishes the simulcast camera's layers until `stop` turns true. Returns the number of
    /// frames sent per layer.
    pub async fn publish_simulcast(&self, stop: watch::Receiver<bool>) -> Result<[u32; 3]> {
        let tags = self.simulcast.get().context("the peer has not offered a simulcast camera")?;
        simulcast::publish(&self.video.track, tags, self.id, stop).await
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
        let camera_pt = match self.options.camera {
            VideoCodec::Vp8 => payload_type::VP8,
            VideoCodec::H264 => payload_type::H264,
        };
        let (local, pt) = match track {
            Track::Audio => (self.audio.clone(), payload_type::OPUS),
            Track::Video => (self.video.clone(), camera_pt),
            Track::Screen => match &*self.screen.lock().unwrap() {
                Some(screen) => (screen.track.clone(), payload_type::VP8),
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

    fn camera(&self) -> VideoCodec {
        self.options.camera
    }
}

/// A track this peer publishes, with the SSRC its packets carry.
#[derive(Clone)]
struct LocalTrack {
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
}

impl LocalTrack {
    /// A track of one encoding in `mime` (Opus for audio, a video codec for video).
    fn new(id: u32, name: &str, kind: RtpCodecKind, mime: &str, ssrc: u32) -> LocalTrack {
        let (clock_rate, channels) = if kind == RtpCodecKind::Audio { (48_000, 2) } else { (90_000, 0) };
        let encoding = RTCRtpEncodingParameters {
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
        };
        LocalTrack { track: track(id, name, kind, vec![encoding]), ssrc }
    }

    /// The camera sending every simulcast layer, each with an SSRC of its own.
    fn simulcast_camera(id: u32) -> LocalTrack {
        let encodings = simulcast::encodings(id);
        let ssrc = encodings[0].rtp_coding_parameters.ssrc.unwrap_or_default();
        LocalTrack { track: track(id, "camera", RtpCodecKind::Video, encodings), ssrc }
    }
}

fn track(
    id: u32,
    name: &str,
    kind: RtpCodecKind,
    encodings: Vec<RTCRtpEncodingParameters>,
) -> Arc<TrackLocalStaticRTP> {
    Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        format!("stream-{id}"),
        format!("{name}-{id}"),
        format!("{name}-{id}"),
        kind,
        encodings,
    )))
}
