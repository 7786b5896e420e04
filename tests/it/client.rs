//! The tests' view of a webrtc-rs peer (the `gatehouse-probe` crate, an independent WebRTC
//! stack) joined to the test gateway: it publishes stamped Opus- and VP8-sized payloads that
//! can be checked byte for byte, and records what it receives and every message the gateway
//! sends it. Failures panic, as a test's should.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gatehouse_probe::{GatewayPeer, PeerOptions, Plan, Target};
pub use gatehouse_probe::{Kind, SCREEN_SENDER_OFFSET};
use serde_json::Value;
use tokio::sync::watch;

use crate::support::Gateway;

/// What the tests publish: small payloads, 50 audio and 25 video packets a second.
const TEST_PLAN: Plan = Plan { audio_len: 100, video_len: 611, video_bps: 611 * 8 * 25 };

/// One received payload, decoded back into what the sender embedded.
#[derive(Debug, Clone)]
pub struct Received {
    pub kind: Kind,
    pub sender: u32,
    pub seq: u32,
    /// The body arrived byte-for-byte as the sender built it.
    pub intact: bool,
}

pub struct Peer {
    /// The sender id embedded in every payload this peer publishes.
    pub id: u32,
    inner: GatewayPeer,
    /// Every text message the gateway sent, as received.
    pub from_gateway: Arc<Mutex<Vec<String>>>,
    /// The `joined` message.
    pub joined: Value,
}

impl Peer {
    /// Joins through the gateway's WebSocket with `credential` (the `join` message's fields),
    /// from a peer connection bound to `ip` (explicitly, so address-leak checks can fail).
    pub async fn join(gw: &Gateway, ip: IpAddr, credential: Value, id: u32) -> Arc<Peer> {
        Self::join_with(gw, ip, credential, id, false, false).await
    }

    /// [`Peer::join`], optionally publishing a screen-share track beside the camera, and
    /// optionally with no UDP at all (ICE-TCP only, as behind a firewall that blocks UDP).
    pub async fn join_with(
        gw: &Gateway,
        ip: IpAddr,
        credential: Value,
        id: u32,
        share_screen: bool,
        tcp_only: bool,
    ) -> Arc<Peer> {
        let target = Target {
            ws_url: format!("wss://localhost:{}/ws", gw.public.port()),
            tls: gatehouse_probe::tls::trusting(&gw.ca_path()).unwrap(),
        };
        let options = PeerOptions { ip, share_screen, tcp_only, publish: true };
        let inner = GatewayPeer::join(&target, credential, id, options).await.unwrap();
        Arc::new(Peer { id, from_gateway: inner.from_gateway.clone(), joined: inner.joined.clone(), inner })
    }

    /// Sends a protocol message (`v` is added).
    pub fn send(&self, message: Value) {
        self.inner.send(message);
    }

    /// Waits for the next message of `kind` from the gateway, skipping others.
    pub async fn expect(&self, kind: &str) -> Value {
        self.inner.expect(kind, Duration::from_secs(10)).await.unwrap()
    }

    pub async fn wait_connected(&self) {
        self.inner.peer.wait_connected(Duration::from_secs(10)).await.unwrap();
    }

    /// Publishes for `duration`: Opus-sized audio at 50/s and a small VP8 keyframe at 25/s,
    /// plus, when sharing, a screen frame at 5/s whose sender id is the peer's plus
    /// [`SCREEN_SENDER_OFFSET`]. Sequence numbers start at `first_seq`. Returns the number of
    /// (audio, video) payloads sent.
    pub async fn publish(&self, first_seq: u32, duration: Duration) -> (u32, u32) {
        let (stop_tx, stop) = watch::channel(false);
        let stopper = tokio::spawn(async move {
            tokio::time::sleep(duration).await;
            let _ = stop_tx.send(true);
        });
        let ledger = self.inner.peer.publish(TEST_PLAN, first_seq, stop).await;
        let _ = stopper.await;
        (ledger.audio.len() as u32, ledger.video.len() as u32)
    }

    pub fn received(&self) -> Vec<Received> {
        let arrivals = self.inner.peer.arrivals();
        arrivals
            .into_iter()
            .map(|a| Received { kind: a.stamp.kind, sender: a.stamp.sender, seq: a.stamp.seq, intact: a.intact })
            .collect()
    }

    pub fn undecodable(&self) -> usize {
        self.inner.peer.undecodable()
    }

    /// Drops off the network: the peer connection and the WebSocket both close.
    pub async fn close(&self) {
        self.inner.close().await;
    }
}
