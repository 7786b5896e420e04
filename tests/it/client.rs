//! A webrtc-rs peer (an independent WebRTC stack) that joins a consultation the way a browser
//! does: over the gateway's WebSocket signalling with a real credential. It publishes synthetic
//! Opus and VP8 whose bodies can be checked byte for byte, and records what it receives and
//! every message the gateway sends it.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use rtc::ice::mdns::MulticastDnsMode;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::RTCOfferOptions;
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
use webrtc::rtp_transceiver::RtpSender;

use crate::support::{Gateway, client_config};

/// Payload types of `MediaEngine::register_default_codecs`, which str0m's answer keeps.
const OPUS_PT: u8 = 111;
const VP8_PT: u8 = 96;
/// H.264 constrained baseline, packetization mode 1.
const H264_PT: u8 = 102;
/// NAL unit header of an IDR slice: nal_ref_idc 3, type 5.
const H264_IDR_HEADER: u8 = 0x65;
const MAGIC: &[u8; 4] = b"GHTS";
/// Screen-share payloads carry the sharer's id plus this, to tell them from its camera's.
pub const SCREEN_SENDER_OFFSET: u8 = 100;
const SCREEN_SSRC_BASE: u32 = 0x3000_0000;
/// magic, sender, kind, sequence (u32), send time in microseconds (u64).
const BODY_HEADER: usize = 4 + 1 + 1 + 4 + 8;
/// A VP8 keyframe's first ten bytes: frame tag (key frame, shown), start code, 320x240.
const VP8_KEYFRAME_HEADER: [u8; 10] = [0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00];
const SIMULCAST_SSRC_BASE: u32 = 0x4000_0000;
const MID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
const RID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";

/// One simulcast layer of a test camera: a frame of `bytes` every `every` 10 ms ticks.
#[derive(Debug, Clone, Copy)]
pub struct Layer {
    pub rid: &'static str,
    pub every: u32,
    pub bytes: usize,
}

/// A simulcast camera's layers at clearly different bitrates (about 80, 320 and 800 kbit/s of
/// payload), named the way Chromium names them. Every frame fits one packet, so a receiver can
/// check each one.
pub const LAYERS: [Layer; 3] = [
    Layer { rid: "q", every: 4, bytes: 400 },
    Layer { rid: "h", every: 1, bytes: 400 },
    Layer { rid: "f", every: 1, bytes: 1000 },
];

/// Layer `n`'s payloads carry the sender byte `id + LAYER_SENDER_OFFSET * (n + 1)`.
pub const LAYER_SENDER_OFFSET: u8 = 10;

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
    /// When the sender built it, in microseconds from the test's epoch.
    pub sent_us: u64,
    /// The body arrived byte-for-byte as the sender built it.
    pub intact: bool,
    /// It came as an H.264 NAL unit (otherwise VP8, for video).
    pub h264: bool,
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
    Some(Received { kind, sender, seq, sent_us, intact, h264: false })
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
        Kind::Video if payload.first() == Some(&H264_IDR_HEADER) => {
            decode_body(kind, &unescape_nal(&payload[1..])).map(|r| Received { h264: true, ..r })
        }
        Kind::Video => {
            let frame = vp8_frame(payload)?;
            if frame.len() < VP8_KEYFRAME_HEADER.len() || frame[..10] != VP8_KEYFRAME_HEADER {
                return None;
            }
            decode_body(kind, &frame[10..])
        }
    }
}

/// An H.264 IDR slice NAL unit carrying `body`, with emulation-prevention bytes inserted as an
/// encoder does (H.264 §7.4.1), so no start code appears inside it.
fn h264_idr_nal(body: &[u8]) -> Vec<u8> {
    let mut nal = vec![H264_IDR_HEADER];
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

/// Adds transport-wide sequence numbers to every packet the peer sends, as browsers do, so
/// the gateway sees each packet lost on the way, retransmissions included. (webrtc-rs by
/// default only gives feedback on what it receives, and retransmits on the original stream,
/// where a repaired packet counts as received.)
fn send_side_twcc(registry: Registry, media: &mut MediaEngine) -> Registry {
    rtc::peer_connection::configuration::interceptor_registry::configure_twcc_sender_only(registry, media).unwrap()
}

/// A shared screen's track and the sender that carries it, so sharing can stop.
type ScreenShare = (Arc<TrackLocalStaticRTP>, Arc<dyn RtpSender>);

/// How a test peer joins, beyond its address and credential.
#[derive(Debug, Clone, Copy, Default)]
pub struct JoinOptions {
    /// Publish a screen-share track beside the camera from the start.
    pub share_screen: bool,
    /// No UDP at all (ICE-TCP only), as behind a firewall that blocks UDP.
    pub tcp_only: bool,
    /// The camera's codec.
    pub camera: VideoCodec,
    /// The camera sends the three [`LAYERS`] in simulcast (VP8), as a browser can.
    pub simulcast: bool,
    /// Reach the gateway's media port only through this UDP address (a relay the test runs):
    /// the gateway's candidates are rewritten to it in every SDP the peer applies.
    pub via: Option<SocketAddr>,
    /// Where to reach the gateway, when not at its own listening address (from another
    /// network, say); the TLS name checked is still `localhost`.
    pub gateway: Option<SocketAddr>,
    /// Candidate lines (`candidate:...`) added to the offer and trickled too, as a hostile
    /// client could: addresses the gateway must never send to.
    pub extra_candidates: &'static [&'static str],
    /// Number outgoing packets transport-wide (TWCC), as browsers do; see [`send_side_twcc`].
    pub transport_cc: bool,
}

/// What a simulcast camera's packets must carry so the gateway can tell its layers apart: the
/// m-line's mid and the layer's rid, in header extensions with the ids the offer set.
#[derive(Debug, Clone)]
struct SimulcastTags {
    mid: String,
    mid_extension: u8,
    rid_extension: u8,
}

impl SimulcastTags {
    fn from_offer(sdp: &str) -> Self {
        let extension = |uri: &str| -> u8 {
            sdp.lines()
                .filter_map(|l| l.strip_prefix("a=extmap:"))
                .find(|l| l.split_whitespace().nth(1) == Some(uri))
                .and_then(|l| l.split([' ', '/']).next())
                .and_then(|id| id.parse().ok())
                .unwrap_or_else(|| panic!("the offer maps no {uri}"))
        };
        let video = sdp.split("m=").find(|section| section.starts_with("video")).expect("a video m-line");
        let mid = video.lines().find_map(|l| l.strip_prefix("a=mid:")).expect("a mid").trim().to_owned();
        SimulcastTags { mid, mid_extension: extension(MID_URI), rid_extension: extension(RID_URI) }
    }
}

/// Points every UDP candidate in `sdp` at `via` and drops the others, so the peer can reach the
/// gateway only through the relay at `via`.
fn through(sdp: &str, via: Option<SocketAddr>) -> String {
    let Some(via) = via else {
        return sdp.to_owned();
    };
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.split_inclusive('\n') {
        if line.starts_with("a=candidate") {
            let mut fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 6 || !fields[2].eq_ignore_ascii_case("udp") {
                continue;
            }
            let (ip, port) = (via.ip().to_string(), via.port().to_string());
            fields[4] = &ip;
            fields[5] = &port;
            out.push_str(&fields.join(" "));
            out.push_str("\r\n");
        } else {
            out.push_str(line);
        }
    }
    out
}

/// The codec a test peer's camera sends in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum VideoCodec {
    #[default]
    Vp8,
    H264,
}

impl VideoCodec {
    fn mime(self) -> &'static str {
        match self {
            VideoCodec::Vp8 => "video/VP8",
            VideoCodec::H264 => "video/H264",
        }
    }
}

pub struct Peer {
    /// The sender byte embedded in every payload this peer publishes.
    pub id: u8,
    camera: VideoCodec,
    pc: Arc<dyn PeerConnection>,
    audio: Arc<TrackLocalStaticRTP>,
    video: Arc<TrackLocalStaticRTP>,
    audio_ssrc: u32,
    video_ssrc: u32,
    /// Present when the camera sends in simulcast.
    simulcast: Option<SimulcastTags>,
    /// A second video track, as a screen share is, while the peer shares its screen.
    screen: Mutex<Option<ScreenShare>>,
    connected: watch::Receiver<bool>,
    received: Arc<Mutex<Vec<Received>>>,
    undecodable: Arc<Mutex<usize>>,
    /// How many offers this peer has sent the gateway.
    offers_sent: Mutex<usize>,
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
        Self::join_with(gw, ip, credential, id, JoinOptions::default()).await
    }

    /// [`Peer::join`] with [`JoinOptions`].
    pub async fn join_with(gw: &Gateway, ip: IpAddr, credential: Value, id: u8, options: JoinOptions) -> Arc<Peer> {
        let JoinOptions { share_screen, tcp_only, camera, simulcast, via, gateway, extra_candidates, transport_cc } =
            options;
        let gateway = gateway.unwrap_or(gw.public);
        let mut request = format!("wss://localhost:{}/ws", gateway.port()).into_client_request().unwrap();
        // As the gateway's own page in this peer's own browser.
        let origin = format!("https://localhost:{}", gateway.port());
        request.headers_mut().insert("Origin", origin.parse().unwrap());
        request.headers_mut().insert("Cookie", format!("gh_browser=webrtc-peer-{id}").parse().unwrap());
        let connector = tokio_tungstenite::Connector::Rustls(client_config(&gw.ca_path(), &rustls::version::TLS13));
        let tcp = tokio::net::TcpStream::connect(gateway).await.unwrap();
        let (ws, _) =
            tokio_tungstenite::client_async_tls_with_config(request, tcp, None, Some(connector)).await.unwrap();
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
        let mut registry = register_default_interceptors(Registry::new(), &mut media).unwrap();
        if transport_cc {
            registry = send_side_twcc(registry, &mut media);
        }
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
                .with_runtime(Arc::new(gatehouse_probe::tcp_runtime::BoundTcpRuntime { local_ip: ip }))
        } else {
            builder.with_udp_addrs(vec![format!("{ip}:0")])
        };
        let pc: Arc<dyn PeerConnection> = Arc::new(builder.build().await.unwrap());
        let audio_ssrc = 0x1000_0000 + u32::from(id);
        let video_ssrc = 0x2000_0000 + u32::from(id);
        let audio = local_track(id, "audio", RtpCodecKind::Audio, audio_ssrc, "audio/opus", 48_000, 2);
        let video = if simulcast {
            simulcast_track(id)
        } else {
            local_track(id, "camera", RtpCodecKind::Video, video_ssrc, camera.mime(), 90_000, 0)
        };
        pc.add_track(audio.clone() as Arc<dyn TrackLocal>).await.unwrap();
        pc.add_track(video.clone() as Arc<dyn TrackLocal>).await.unwrap();
        let screen = if share_screen { Some(add_screen(&pc, id).await) } else { None };
        let offer = pc.create_offer(None).await.unwrap();
        pc.set_local_description(offer).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), gathered_rx.recv()).await.unwrap();
        let mut offer = pc.local_description().await.unwrap().sdp;
        assert!(offer.contains(&ip.to_string()), "the peer must offer its own address");
        if tcp_only {
            let udp = offer.lines().filter(|l| l.starts_with("a=candidate") && l.to_lowercase().contains(" udp "));
            assert_eq!(udp.count(), 0, "a TCP-only peer offered a UDP candidate");
        }
        let simulcast = simulcast.then(|| SimulcastTags::from_offer(&offer));
        // Into the first media section, beside the peer's own (all sections are bundled).
        for candidate in extra_candidates {
            offer = offer.replacen("a=candidate", &format!("a={candidate}\r\na=candidate"), 1);
        }
        outgoing.send(Message::Text(json!({ "v": 1, "type": "offer", "sdp": offer }).to_string().into())).unwrap();
        for candidate in extra_candidates {
            let trickled =
                json!({ "v": 1, "type": "candidate", "candidate": candidate, "sdpMid": "0", "sdpMLineIndex": 0 });
            outgoing.send(Message::Text(trickled.to_string().into())).unwrap();
        }

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
                        let sdp = through(message["sdp"].as_str().unwrap(), via);
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
                        let offer =
                            RTCSessionDescription::offer(through(message["sdp"].as_str().unwrap(), via)).unwrap();
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
            camera,
            pc,
            audio,
            video,
            audio_ssrc,
            video_ssrc,
            simulcast,
            screen: Mutex::new(screen),
            offers_sent: Mutex::new(1),
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
                let frame_body = body(self.id, Kind::Video, video_seq, sent_us, 600);
                let (pt, frame) = match self.camera {
                    VideoCodec::Vp8 => {
                        let mut frame = vec![0x10]; // VP8 descriptor: start of partition 0
                        frame.extend_from_slice(&VP8_KEYFRAME_HEADER);
                        frame.extend(frame_body);
                        (VP8_PT, frame)
                    }
                    // One IDR slice as a single NAL unit packet (RFC 6184 §5.6).
                    VideoCodec::H264 => (H264_PT, h264_idr_nal(&frame_body)),
                };
                self.video
                    .write_rtp(packet(pt, self.video_ssrc, video_seq, video_seq * 3600, true, frame))
                    .await
                    .unwrap();
                video_seq += 1;
            }
            let screen = self.screen.lock().unwrap().as_ref().map(|(track, _)| track.clone());
            if let Some(screen) = screen
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

    /// Publishes the simulcast camera's [`LAYERS`] for `duration`, each with its own SSRC, its
    /// own sequence numbers and an RTP clock offset of its own, as a browser's layers have.
    /// Returns the number of frames sent per layer.
    pub async fn publish_simulcast(&self, epoch: Instant, duration: Duration) -> [u32; 3] {
        let tags = self.simulcast.as_ref().expect("the peer joined with a simulcast camera");
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sent = [0u32; 3];
        for n in 0..(duration.as_millis() / 10) as u32 {
            tick.tick().await;
            let sent_us = epoch.elapsed().as_micros() as u64;
            for (index, layer) in LAYERS.iter().enumerate() {
                if n % layer.every != 0 {
                    continue;
                }
                let sender = self.id + LAYER_SENDER_OFFSET * (index as u8 + 1);
                let mut frame = vec![0x10];
                frame.extend_from_slice(&VP8_KEYFRAME_HEADER);
                frame.extend(body(sender, Kind::Video, sent[index], sent_us, layer.bytes));
                let timestamp = (index as u32).wrapping_mul(1_234_567_891).wrapping_add(n * 900);
                let ssrc = SIMULCAST_SSRC_BASE + u32::from(self.id) * 16 + index as u32;
                let mut packet = packet(VP8_PT, ssrc, sent[index], timestamp, true, frame);
                packet.header.set_extension(tags.mid_extension, Bytes::from(tags.mid.clone())).unwrap();
                packet.header.set_extension(tags.rid_extension, Bytes::from_static(layer.rid.as_bytes())).unwrap();
                self.video.write_rtp(packet).await.unwrap();
                sent[index] += 1;
            }
        }
        sent
    }

    /// Starts sharing a screen on the existing peer connection, by renegotiating it.
    pub async fn start_screen_share(&self) {
        let screen = add_screen(&self.pc, self.id).await;
        *self.screen.lock().unwrap() = Some(screen);
        self.reoffer(false).await;
    }

    /// Stops sharing the screen, by renegotiating the existing peer connection.
    pub async fn stop_screen_share(&self) {
        let screen = self.screen.lock().unwrap().take();
        if let Some((_, sender)) = screen {
            self.pc.remove_track(&sender).await.unwrap();
        }
        self.reoffer(false).await;
    }

    /// Restarts ICE on the existing peer connection (new credentials, same DTLS session).
    pub async fn restart_ice(&self) {
        self.reoffer(true).await;
    }

    /// Sends a further offer on the same peer connection; the reader applies the answer.
    async fn reoffer(&self, ice_restart: bool) {
        let offer = self.pc.create_offer(Some(RTCOfferOptions { ice_restart })).await.unwrap();
        self.pc.set_local_description(offer).await.unwrap();
        let sdp = self.pc.local_description().await.unwrap().sdp;
        *self.offers_sent.lock().unwrap() += 1;
        self.send(json!({ "type": "offer", "sdp": sdp }));
    }

    /// The SDP of every message of `kind` (`offer` or `answer`) the gateway sent, in order.
    fn sdp_of(&self, kind: &str) -> Vec<String> {
        let log = self.from_gateway.lock().unwrap();
        let messages = log.iter().filter_map(|text| serde_json::from_str::<Value>(text).ok());
        messages.filter(|m| m["type"] == kind).filter_map(|m| m["sdp"].as_str().map(str::to_owned)).collect()
    }

    /// The renegotiation offers the gateway sent this peer.
    pub fn sdp_offers(&self) -> Vec<String> {
        self.sdp_of("offer")
    }

    /// The gateway's answers to this peer's offers.
    pub fn sdp_answers(&self) -> Vec<String> {
        self.sdp_of("answer")
    }

    /// Waits until the gateway has answered every offer this peer sent.
    pub async fn expect_sdp_answer(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.sdp_answers().len() < *self.offers_sent.lock().unwrap() {
            assert!(Instant::now() < deadline, "peer {}: the gateway did not answer its offer", self.id);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// How many received video payloads were H.264.
    pub fn h264_frames(&self) -> usize {
        self.received.lock().unwrap().iter().filter(|r| r.h264).count()
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

/// Adds a screen-share video track (its own SSRC) to `pc`.
async fn add_screen(pc: &Arc<dyn PeerConnection>, id: u8) -> ScreenShare {
    let ssrc = SCREEN_SSRC_BASE + u32::from(id);
    let track = local_track(id, "screen", RtpCodecKind::Video, ssrc, "video/VP8", 90_000, 0);
    let sender = pc.add_track(track.clone() as Arc<dyn TrackLocal>).await.unwrap();
    (track, sender)
}

/// A VP8 camera track with one encoding per simulcast layer, each named by its rid.
fn simulcast_track(id: u8) -> Arc<TrackLocalStaticRTP> {
    let encodings = LAYERS
        .iter()
        .enumerate()
        .map(|(index, layer)| RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                rid: layer.rid.to_owned(),
                ssrc: Some(SIMULCAST_SSRC_BASE + u32::from(id) * 16 + index as u32),
                ..Default::default()
            },
            active: true,
            codec: RTCRtpCodec {
                mime_type: "video/VP8".to_owned(),
                clock_rate: 90_000,
                channels: 0,
                sdp_fmtp_line: String::new(),
                rtcp_feedback: vec![],
            },
            ..Default::default()
        })
        .collect();
    Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        format!("stream-{id}"),
        format!("camera-{id}"),
        format!("camera-{id}"),
        RtpCodecKind::Video,
        encodings,
    )))
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
