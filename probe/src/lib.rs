//! A WebRTC client on webrtc-rs, an independent stack from the gateway's str0m, that joins a
//! consultation the way a browser does, publishes stamped audio and video, and records what
//! arrives and when. The integration tests and the `gatehouse-load` tool both use it.
//!
//! - `stamp.rs`: the payload format (sender, kind, sequence, send time) and the shared clock.
//! - `peer.rs`: one peer connection, its published tracks and what it received.
//! - `gateway.rs`: joining through Gatehouse's WebSocket signalling.
//! - `tls.rs`: trusting the gateway's CA; `tcp_runtime.rs`: ICE-TCP from a chosen address.

pub mod gateway;
pub mod peer;
pub mod stamp;
mod tcp_runtime;
pub mod tls;

pub use gateway::{GatewayPeer, Target};
pub use peer::{Arrival, Ledger, Peer, PeerOptions, Plan, SCREEN_SENDER_OFFSET};
pub use stamp::{Kind, Stamp};
