//! A webrtc-rs peer (an independent WebRTC stack) that joins a consultation the way a browser
//! does: over the gateway's WebSocket signalling with a real credential. It publishes synthetic
//! Opus and VP8 whose bodies can be checked byte for byte, and records what it receives and
//! every message the gateway sends it.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use rtc::ice::mdns::MulticastDnsMode;
use rtc::media_stream::MediaStreamTrack;
use rtc::rtp::{Header, Packet};
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceCandidateInit, RTCIceGatheringState, RTCPeerConnectionState, RTCSessionDescription, Registry,
    SettingEngineBuilder, register_default_interceptors,
};

use crate::support::{Gateway, client_config};

/// Payload types of `MediaEngine::register_default_codecs`, which str0m's answer keeps.
const OPUS_PT: u8 = 111;
const VP8_PT: u8 = 96;
const MAGIC: &[u8; 4] = b"GHTS";
/// Screen-share payloads carry the sharer's id plus this, to tell them from its camera's.
pub const SCREEN_SENDER_OFFSET: u8 = 100;
const SCREEN_SSRC_BASE: u32 = 0x3000_0000;
/// magic, sender, kind, sequence (u32), send time in microseconds (u64).
const BODY_HEADER: usize = 4 + 1 + 1 + 4 + 8;
/// A VP8 keyframe's first ten bytes: frame tag (key frame, shown), start code, 320x240.
const VP8_KEYFRAME_HEADER: [u8; 10] = [0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Audio = 0,
    Video = 1,
}

/// One received payload, decoded back into what the sender embedded.
#[derive(Debug, Clone)]
pub struct Received {
    pub kind: Kind,
    pub sender: u8,
    pub seq: u32,
    /// The body arrived byte-for-byte as the sender built it.
    pub intact: bool,
}

/// The test body: a header naming sender, kind, sequence and send time, then filler that is
/// a function of those, so the receiver can rebuild it and compare every byte.
pub fn body(sender: u8, kind: Kind, seq: u32, sent_us: u64, len: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(len);
    b.extend_from_slice(MAGIC);
    b.push(sender);
    b.push(kind as u8);
    b.extend_from_slice(&seq.to_be_bytes());
    b.extend_from_slice(&sent_us.to_be_bytes());
    let mut i = 0u32;
    while b.len() < len {
        b.push((seq.wrapping_mul(31).wrapping_add(i.wrapping_mul(7)).wrapping_add(u32::from(sender))) as u8);
        i += 1;
    }
    b
}

fn decode_body(kind: Kind, b: &[u8]) -> Option<Received> {
    if b.len() < BODY_HEADER || &b[..4] != MAGIC || b[5] != kind as u8 {
        return None;
    }
    let sender = b[4];
    let seq = u32::from_be_bytes(b[6..10].try_into().ok()?);
    let sent_us = u64::from_be_bytes(b[10..18].try_into().ok()?);
    let intact = body(sender, kind, seq, sent_us, b.len()) == b;
    Some(Received { kind, sender, seq, intact })
}

/// Skips the VP8 payload descriptor (RFC 7741 §4.2), which the gateway may rewrite.
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

fn decode(kind: Kind, payload: &[u8]) -> Option<Received> {
    match kind {
        Kind::Audio => decode_body(kind, payload),
        Kind::Video => {
            let frame = vp8_frame(payload)?;
            if frame.len() < VP8_KEYFRAME_HEADER.len() || frame[..10] != VP8_KEYFRAME_HEADER {
                return None;
            }
            decode_body(kind, &frame[10..])
        }
    }
}

struct Handler {
    gathered: mpsc::UnboundedSender<()>,
    connected: watch::Sender<bool>,
    received: Arc<Mutex<Vec<Received>>>,
    undecodable: Arc<Mutex<usize>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(());
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        if state == RTCPeerConnectionState::Connected {
            let _ = self.connected.send(true);
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let received = self.received.clone();
        let undecodable = self.undecodable.clone();
        tokio::spawn(async move {
            let kind = if track.kind().await == RtpCodecKind::Audio { Kind::Audio } else { Kind::Video };
            while let Some(event) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(packet) = event {
                    if packet.payload.is_empty() {
                        continue; // padding
                    }
                    match decode(kind, &packet.payload) {
                        Some(r) => received.lock().unwrap().push(r),
                        None => *undecodable.lock().unwrap() += 1,
                    }
                }
            }
        });
    }
}

pub struct Peer {
    /// The sender byte embedded in every payload this peer publishes.
    pub id: u8,
    pc: Arc<dyn PeerConnection>,
    audio: Arc<TrackLocalStaticRTP>,
    video: Arc<TrackLocalStaticRTP>,
    audio_ssrc: u32,
    video_ssrc: u32,
    /// A second video track, as a screen share is, when the peer shares its screen.
    screen: Option<Arc<TrackLocalStaticRTP>>,
    connected: watch::Receiver<bool>,
    received: Arc<Mutex<Vec<Received>>>,
    undecodable: Arc<Mutex<usize>>,
    /// Every text message the gateway sent, as received.
    pub from_gateway: Arc<Mutex<Vec<String>>>,
    /// Messages other than SDP, for the test to wait on.
    events: tokio::sync::Mutex<mpsc::UnboundedReceiver<Value>>,
    outgoing: mpsc::UnboundedSender<Message>,
    /// The `joined` message.
    pub joined: Value,
}

impl Peer {
    /// Joins through the gateway's WebSocket with `credential` (the `join` message's fields),
    /// from a peer connection bound to `ip` (explicitly, so address-leak checks can fail).
    pub async fn join(gw: &Gateway, ip: IpAddr, credential: Value, id: u8) -> Arc<Peer> {
        Self::join_with(gw, ip, credential, id, false, false).await
    }

    /// [`Peer::join`], optionally publishing a screen-share track beside the camera, and
    /// optionally with no UDP at all (ICE-TCP only, as behind a firewall that blocks UDP).
    pub async fn join_with(
        gw: &Gateway,
        ip: IpAddr,
        credential: Value,
        id: u8,
        share_screen: bool,
        tcp_only: bool,
    ) -> Arc<Peer> {
        let url = format!("wss://localhost:{}/ws", gw.public.port());
        let mut request = url.into_client_request().unwrap();
        // As the gateway's own page in this peer's own browser.
        let origin = format!("https://localhost:{}", gw.public.port());
        request.headers_mut().insert("Origin", origin.parse().unwrap());
        request.headers_mut().insert("Cookie", format!("gh_browser=webrtc-peer-{id}").parse().unwrap());
        let connector = tokio_tungstenite::Connector::Rustls(client_config(&gw.ca_path(), &rustls::version::TLS13));
        let (ws, _) =
            tokio_tungstenite::connect_async_tls_with_config(request, None, false, Some(connector)).await.unwrap();
        let (mut sink, mut stream) = ws.split();
        let (outgoing, mut outgoing_rx) = mpsc::unbounded_channel::<Message>();
        tokio::spawn(async move {
            while let Some(message) = outgoing_rx.recv().await {
                let closing = matches!(message, Message::Close(_));
                if sink.send(message).await.is_err() || closing {
                    break;
                }
            }
        });
        let mut join = credential;
        join["v"] = json!(1);
        join["type"] = json!("join");
        outgoing.send(Message::Text(join.to_string().into())).unwrap();
        let from_gateway = Arc::new(Mutex::new(Vec::new()));
        let joined = loop {
            let Some(Ok(Message::Text(text))) =
                tokio::time::timeout(Duration::from_secs(10), stream.next()).await.unwrap()
            else {
                panic!("the gateway closed before joined");
            };
            from_gateway.lock().unwrap().push(text.to_string());
            let message: Value = serde_json::from_str(&text).unwrap();
            match message["type"].as_str() {
                Some("joined") => break message,
                Some("error") => panic!("join refused: {message}"),
                _ => {}
            }
        };

        let mut media = MediaEngine::default();
        media.register_default_codecs().unwrap();
        let registry = register_default_interceptors(Registry::new(), &mut media).unwrap();
        let settings = SettingEngineBuilder::new()
            .with_multicast_dns_mode(MulticastDnsMode::Disabled)
            .with_include_loopback_candidate(true)
            .build();
        let (gathered_tx, mut gathered_rx) = mpsc::unbounded_channel();
        let (connected_tx, connected) = watch::channel(false);
        let received = Arc::new(Mutex::new(Vec::new()));
        let undecodable = Arc::new(Mutex::new(0));
        let handler = Handler {
            gathered: gathered_tx,
            connected: connected_tx,
            received: received.clone(),
            undecodable: undecodable.clone(),
        };
        let builder = PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(media)
            .with_setting_engine(settings)
            .with_interceptor_registry(registry)
            .with_handler(Arc::new(handler));
        let builder = if tcp_only {
            builder
                .with_tcp_addrs(vec![format!("{ip}:0")])
                .with_runtime(Arc::new(crate::tcp_runtime::BoundTcpRuntime { local_ip: ip }))
        } else {
            builder.with_udp_addrs(vec![format!("{ip}:0")])
        };
        let pc: Arc<dyn PeerConnection> = Arc::new(builder.build().await.unwrap());
        let audio_ssrc = 0x1000_0000 + u32::from(id);
        let video_ssrc = 0x2000_0000 + u32::from(id);
        let audio = local_track(id, "audio", RtpCodecKind::Audio, audio_ssrc, "audio/opus", 48_000, 2);
        let video = local_track(id, "camera", RtpCodecKind::Video, video_ssrc, "video/VP8", 90_000, 0);
        pc.add_track(audio.clone() as Arc<dyn TrackLocal>).await.unwrap();
        pc.add_track(video.clone() as Arc<dyn TrackLocal>).await.unwrap();
        let screen = if share_screen {
            let track = local_track(
                id,
                "screen",
                RtpCodecKind::Video,
                SCREEN_SSRC_BASE + u32::from(id),
                "video/VP8",
                90_000,
                0,
            );
            pc.add_track(track.clone() as Arc<dyn TrackLocal>).await.unwrap();
            Some(track)
        } else {
            None
        };
        let offer = pc.create_offer(None).await.unwrap();
        pc.set_local_description(offer).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), gathered_rx.recv()).await.unwrap();
        let offer = pc.local_description().await.unwrap().sdp;
        assert!(offer.contains(&ip.to_string()), "the peer must offer its own address");
        if tcp_only {
            let udp = offer.lines().filter(|l| l.starts_with("a=candidate") && l.to_lowercase().contains(" udp "));
            assert_eq!(udp.count(), 0, "a TCP-only peer offered a UDP candidate");
        }
        outgoing.send(Message::Text(json!({ "v": 1, "type": "offer", "sdp": offer }).to_string().into())).unwrap();

        // Reads the gateway's messages: SDP is handled here, the rest goes to the test.
        let (events_tx, events) = mpsc::unbounded_channel();
        let (reader_pc, reader_out, log) = (pc.clone(), outgoing.clone(), from_gateway.clone());
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                let text = match message {
                    Message::Text(text) => text.to_string(),
                    Message::Close(frame) => {
                        let code = frame.map(|f| u16::from(f.code)).unwrap_or(1005);
                        let _ = events_tx.send(json!({ "type": "closed", "code": code }));
                        break;
                    }
                    _ => continue,
                };
                log.lock().unwrap().push(text.clone());
                let message: Value = serde_json::from_str(&text).unwrap();
                match message["type"].as_str() {
                    Some("answer") => {
                        let sdp = message["sdp"].as_str().unwrap().to_owned();
                        reader_pc
                            .set_remote_description(RTCSessionDescription::answer(sdp.clone()).unwrap())
                            .await
                            .unwrap();
                        if tcp_only {
                            // webrtc-rs dials a passive TCP candidate only when it is trickled,
                            // not when it comes inside the SDP, so hand the gateway's over again.
                            for line in sdp.lines().filter(|l| l.contains(" tcp ") && l.contains("tcptype passive")) {
                                let candidate = RTCIceCandidateInit {
                                    candidate: line.trim_start_matches("a=").to_owned(),
                                    sdp_mid: Some("0".to_owned()),
                                    sdp_mline_index: Some(0),
                                    ..Default::default()
                                };
                                reader_pc.add_ice_candidate(candidate).await.unwrap();
                            }
                        }
                    }
                    Some("offer") => {
                        let offer = RTCSessionDescription::offer(message["sdp"].as_str().unwrap().to_owned()).unwrap();
                        if reader_pc.set_remote_description(offer).await.is_ok()
                            && let Ok(answer) = reader_pc.create_answer(None).await
                            && reader_pc.set_local_description(answer).await.is_ok()
                            && let Some(local) = reader_pc.local_description().await
                        {
                            let answer = json!({ "v": 1, "type": "answer", "sdp": local.sdp }).to_string();
                            let _ = reader_out.send(Message::Text(answer.into()));
                        }
                    }
                    _ => {
                        let _ = events_tx.send(message);
                    }
                }
            }
        });
        Arc::new(Peer {
            id,
            pc,
            audio,
            video,
            audio_ssrc,
            video_ssrc,
            screen,
            connected,
            received,
            undecodable,
            from_gateway,
            events: tokio::sync::Mutex::new(events),
            outgoing,
            joined,
        })
    }

    /// Sends a protocol message (`v` is added).
    pub fn send(&self, mut message: Value) {
        message["v"] = json!(1);
        let _ = self.outgoing.send(Message::Text(message.to_string().into()));
    }

    /// Waits for the next message of `kind` from the gateway, skipping others.
    pub async fn expect(&self, kind: &str) -> Value {
        let mut events = self.events.lock().await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let message = tokio::time::timeout_at(deadline, events.recv())
                .await
                .unwrap_or_else(|_| panic!("peer {} never got {kind}", self.id))
                .unwrap_or_else(|| panic!("peer {}: the connection closed before {kind}", self.id));
            if message["type"] == kind {
                return message;
            }
        }
    }

    pub async fn wait_connected(&self) {
        let mut connected = self.connected.clone();
        tokio::time::timeout(Duration::from_secs(10), connected.wait_for(|c| *c)).await.unwrap().unwrap();
    }

    /// Publishes for `duration`: Opus-sized audio at 50/s and a small VP8 keyframe at 25/s,
    /// plus, when sharing, a screen frame at 5/s whose sender byte is the peer's id + 100.
    /// Sequence numbers start at `first_seq`. Returns the number of (audio, video) payloads sent.
    pub async fn publish(&self, epoch: Instant, first_seq: u32, duration: Duration) -> (u32, u32) {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let ticks = (duration.as_millis() / 20) as u32;
        let (mut audio_seq, mut video_seq, mut screen_seq) = (first_seq, first_seq, first_seq);
        for n in 0..ticks {
            tick.tick().await;
            let sent_us = epoch.elapsed().as_micros() as u64;
            let audio = body(self.id, Kind::Audio, audio_seq, sent_us, 100);
            self.audio
                .write_rtp(packet(OPUS_PT, self.audio_ssrc, audio_seq, audio_seq * 960, true, audio))
                .await
                .unwrap();
            audio_seq += 1;
            if n % 2 == 0 {
                let mut frame = vec![0x10]; // VP8 descriptor: start of partition 0
                frame.extend_from_slice(&VP8_KEYFRAME_HEADER);
                frame.extend(body(self.id, Kind::Video, video_seq, sent_us, 600));
                self.video
                    .write_rtp(packet(VP8_PT, self.video_ssrc, video_seq, video_seq * 3600, true, frame))
                    .await
                    .unwrap();
                video_seq += 1;
            }
            if let Some(screen) = &self.screen
                && n % 10 == 0
            {
                let mut frame = vec![0x10];
                frame.extend_from_slice(&VP8_KEYFRAME_HEADER);
                frame.extend(body(self.id + SCREEN_SENDER_OFFSET, Kind::Video, screen_seq, sent_us, 900));
                let ssrc = SCREEN_SSRC_BASE + u32::from(self.id);
                screen.write_rtp(packet(VP8_PT, ssrc, screen_seq, screen_seq * 18_000, true, frame)).await.unwrap();
                screen_seq += 1;
            }
        }
        (audio_seq - first_seq, video_seq - first_seq)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn undecodable(&self) -> usize {
        *self.undecodable.lock().unwrap()
    }

    /// Loses its media only: the peer connection closes, the WebSocket stays.
    pub async fn drop_media(&self) {
        let _ = self.pc.close().await;
    }

    /// Drops off the network: the peer connection and the WebSocket both close.
    pub async fn close(&self) {
        let _ = self.pc.close().await;
        let _ = self.outgoing.send(Message::Close(None));
    }
}

fn local_track(
    id: u8,
    name: &str,
    kind: RtpCodecKind,
    ssrc: u32,
    mime: &str,
    clock_rate: u32,
    channels: u16,
) -> Arc<TrackLocalStaticRTP> {
    Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
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
    )))
}

fn packet(pt: u8, ssrc: u32, seq: u32, timestamp: u32, marker: bool, payload: Vec<u8>) -> Packet {
    Packet {
        header: Header {
            version: 2,
            marker,
            payload_type: pt,
            sequence_number: seq as u16,
            timestamp,
            ssrc,
            ..Default::default()
        },
        payload: Bytes::from(payload),
    }
}
