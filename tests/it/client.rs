//! The tests' WebRTC peer: the probe's webrtc-rs peer (an independent WebRTC stack), joined
//! through the gateway's WebSocket signalling with a real credential, with conveniences for
//! tests: it panics instead of returning errors, waits with fixed limits, publishes for a
//! duration, and reads what it received as flat [`Received`] records.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use gatehouse_probe::simulcast::{LAYER_SENDER_OFFSET, LAYERS};
pub use gatehouse_probe::stamp::now_us;
use gatehouse_probe::{Arrival, GatewayPeer, Plan, Target};
pub use gatehouse_probe::{Kind, SCREEN_SENDER_OFFSET, VideoCodec};
use serde_json::Value;
use tokio::sync::watch;

use crate::support::Gateway;

/// How long a test waits for the gateway's messages and for media to connect.
const LIMIT: Duration = Duration::from_secs(10);
/// What [`Peer::publish`] sends: Opus-sized audio at 50/s and a one-packet camera frame at
/// 25/s (plus, when sharing, a screen frame at 5/s).
const PLAN: Plan = Plan { audio_len: 100, video_len: 611, video_bps: 611 * 8 * 25 };

/// One received payload, decoded back into what the sender embedded.
#[derive(Debug, Clone)]
pub struct Received {
    pub kind: Kind,
    pub sender: u32,
    pub seq: u32,
    /// When the sender built it, on the probe's clock ([`now_us`]).
    pub sent_us: u64,
    /// When it arrived, on the same clock.
    pub received_us: u64,
    /// The body arrived byte-for-byte as the sender built it.
    pub intact: bool,
    /// It came as an H.264 NAL unit (otherwise VP8, for video).
    pub h264: bool,
}

impl From<Arrival> for Received {
    fn from(arrival: Arrival) -> Self {
        let stamp = arrival.stamp;
        Received {
            kind: stamp.kind,
            sender: stamp.sender,
            seq: stamp.seq,
            sent_us: stamp.sent_us,
            received_us: arrival.received_us,
            intact: arrival.intact,
            h264: arrival.codec == Some(VideoCodec::H264),
        }
    }
}

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
    /// Number outgoing packets transport-wide (TWCC), as browsers do.
    pub transport_cc: bool,
}

/// A participant joined through the gateway.
pub struct Peer {
    /// The sender embedded in every payload this peer publishes.
    pub id: u32,
    /// The `joined` message.
    pub joined: Value,
    /// Every text message the gateway sent, as received.
    pub from_gateway: Arc<Mutex<Vec<String>>>,
    gateway: GatewayPeer,
}

impl Peer {
    /// Joins through the gateway's WebSocket with `credential` (the `join` message's fields),
    /// from a peer connection bound to `ip` (explicitly, so address-leak checks can fail).
    pub async fn join(gw: &Gateway, ip: IpAddr, credential: Value, id: u32) -> Arc<Peer> {
        Self::join_with(gw, ip, credential, id, JoinOptions::default()).await
    }

    /// [`Peer::join`] with [`JoinOptions`].
    pub async fn join_with(gw: &Gateway, ip: IpAddr, credential: Value, id: u32, options: JoinOptions) -> Arc<Peer> {
        let JoinOptions { share_screen, tcp_only, camera, simulcast, via, gateway, extra_candidates, transport_cc } =
            options;
        let address = gateway.unwrap_or(gw.public);
        let target = Target {
            ws_url: format!("wss://localhost:{}/ws", address.port()),
            tls: gatehouse_probe::tls::trusting(&gw.ca_path()).unwrap(),
            connect_to: Some(address),
        };
        let options = gatehouse_probe::PeerOptions {
            share_screen,
            tcp_only,
            camera,
            simulcast,
            relay: via,
            extra_candidates,
            transport_cc,
            ..gatehouse_probe::PeerOptions::udp(ip)
        };
        let gateway = GatewayPeer::join(&target, credential, id, options).await.unwrap();
        let (joined, from_gateway) = (gateway.joined.clone(), gateway.from_gateway.clone());
        Arc::new(Peer { id, joined, from_gateway, gateway })
    }

    /// Sends a protocol message (`v` is added).
    pub fn send(&self, message: Value) {
        self.gateway.send(message);
    }

    /// Waits for the next message of `kind` from the gateway, skipping others.
    pub async fn expect(&self, kind: &str) -> Value {
        self.gateway.expect(kind, LIMIT).await.unwrap()
    }

    pub async fn wait_connected(&self) {
        self.gateway.peer.wait_connected(LIMIT).await.unwrap();
    }

    /// Publishes for `duration`: Opus-sized audio at 50/s and a small camera keyframe at 25/s,
    /// plus, when sharing, a screen frame at 5/s whose sender is the peer's id plus
    /// [`SCREEN_SENDER_OFFSET`]. Sequence numbers start at `first_seq`. Returns the number of
    /// (audio, video) payloads sent.
    pub async fn publish(&self, first_seq: u32, duration: Duration) -> (u32, u32) {
        let ledger = for_a_while(duration, |stop| self.gateway.peer.publish(PLAN, first_seq, stop)).await;
        (ledger.audio.len() as u32, ledger.video.len() as u32)
    }

    /// Publishes the simulcast camera's [`LAYERS`] for `duration`. Returns the number of frames
    /// sent per layer.
    pub async fn publish_simulcast(&self, duration: Duration) -> [u32; 3] {
        for_a_while(duration, |stop| self.gateway.peer.publish_simulcast(stop)).await.unwrap()
    }

    /// Starts sharing a screen on the existing peer connection, by renegotiating it.
    pub async fn start_screen_share(&self) {
        let offer = self.gateway.peer.start_screen_share().await.unwrap();
        self.gateway.send_offer(offer);
    }

    /// Stops sharing the screen, by renegotiating the existing peer connection.
    pub async fn stop_screen_share(&self) {
        let offer = self.gateway.peer.stop_screen_share().await.unwrap();
        self.gateway.send_offer(offer);
    }

    /// Restarts ICE on the existing peer connection (new credentials, same DTLS session).
    pub async fn restart_ice(&self) {
        let offer = self.gateway.peer.renegotiate(true).await.unwrap();
        self.gateway.send_offer(offer);
    }

    /// The renegotiation offers the gateway sent this peer.
    pub fn sdp_offers(&self) -> Vec<String> {
        self.gateway.sdp_from_gateway("offer")
    }

    /// The gateway's answers to this peer's offers.
    pub fn sdp_answers(&self) -> Vec<String> {
        self.gateway.sdp_from_gateway("answer")
    }

    /// Waits until the gateway has answered every offer this peer sent.
    pub async fn expect_sdp_answer(&self) {
        self.gateway.wait_answered(LIMIT).await.unwrap();
    }

    pub fn received(&self) -> Vec<Received> {
        self.gateway.peer.arrivals().into_iter().map(Received::from).collect()
    }

    /// How many received video payloads were H.264.
    pub fn h264_frames(&self) -> usize {
        self.received().iter().filter(|r| r.h264).count()
    }

    pub fn undecodable(&self) -> usize {
        self.gateway.peer.undecodable()
    }

    /// Loses its media only: the peer connection closes, the WebSocket stays.
    pub async fn drop_media(&self) {
        self.gateway.peer.close().await;
    }

    /// Drops off the network: the peer connection and the WebSocket both close.
    pub async fn close(&self) {
        self.gateway.close().await;
    }
}

/// Runs `publishing` until `duration` has passed, then tells it to stop and returns what it
/// returns.
async fn for_a_while<F: Future>(duration: Duration, publishing: impl FnOnce(watch::Receiver<bool>) -> F) -> F::Output {
    let (stop, stopped) = watch::channel(false);
    let (output, ()) = tokio::join!(publishing(stopped), async {
        tokio::time::sleep(duration).await;
        let _ = stop.send(true);
    });
    output
}
