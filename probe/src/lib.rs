//! A WebRTC client on webrtc-rs, an independent stack from the gateway's str0m, that joins a
//! consultation the way a browser does, publishes stamped audio and video, and records what
//! arrives and when. The integration tests and the `gatehouse-load` tool both use it.
//!
//! - `stamp.rs`: the payload format (sender, kind, sequence, send time) and the shared clock.
//! - `pace.rs`: what to publish and at what rate; `inbox.rs`: what arrived and when;
//!   `payload_type.rs`: the RTP payload types it sends.
//! - `peer.rs`: one webrtc-rs peer connection with its published tracks, built from
//!   `PeerOptions` (codec, simulcast, screen share, TCP only, a relay, hostile candidates,
//!   transport-wide sequence numbers);
//!   `simulcast.rs`: a camera's three layers; `sdp.rs`: the SDP rewriting those options need.
//! - `gateway.rs`: joining through Gatehouse's WebSocket signalling; `janus.rs`: the same
//!   peers in a Janus VideoRoom, for side-by-side measurements.
//! - `udp.rs`: the same payloads over plain UDP, for the bare relay.
//! - `tls.rs`: trusting the gateway's CA; `tcp_runtime.rs`: ICE-TCP from a chosen address.

pub mod gateway;
pub mod inbox;
pub mod janus;
pub mod pace;
pub mod payload_type;
pub mod peer;
pub mod sdp;
pub mod simulcast;
pub mod stamp;
pub mod tcp_runtime;
pub mod tls;
pub mod udp;

pub use gateway::{GatewayPeer, Target};
pub use inbox::{Arrival, Inbox};
pub use janus::JanusPeer;
pub use pace::{Ledger, Outlet, Plan, SCREEN_SENDER_OFFSET, Track};
pub use peer::{Peer, PeerOptions};
pub use stamp::{Kind, Stamp, VideoCodec};
pub use udp::UdpPeer;
