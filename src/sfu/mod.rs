//! The media core (SFU): forwards each participant's audio and video to the other admitted
//! participants of the same session, over one UDP port (and optionally ICE-TCP), on str0m.
//!
//! Architecture invariant: this module knows nothing of HTTP, tokens, schedules or
//! appointments. It is driven through [`SfuHandle`] and reports through [`SfuEvent`]; the
//! caller decides who belongs to which session and who is admitted.
//!
//! - `media_loop.rs`: the one task that owns the socket and every participant. Its handlers
//!   take the time from the loop's `now`, which `run` reads from the clock once per turn and
//!   tests set by hand (`virtual_time_tests.rs` drives the loop with no socket, in virtual time).
//! - `ice_tcp.rs`, `framing.rs`: ICE-TCP connections and their RFC 4571 framing. Connections
//!   come through an `IceTcpIntake`, handed over by the shared HTTPS port (which only learns
//!   from `opens_ice_tcp` which connections are ours) or accepted on a port of ICE-TCP's own;
//!   they pass packets to the media loop over channels and never touch a participant.
//! - `udp_batch.rs`: receiving and sending datagrams with as few system calls as possible.
//! - `participant.rs`: one peer connection, its tracks and its renegotiation.
//! - `simulcast.rs`: which layer of a simulcast source each subscriber gets.
//! - `keyframe.rs`: the keyframe-request throttle, per stream (per layer in simulcast).
//! - `resend_history.rs`: how long each subscriber's video is kept to answer its NACKs, from
//!   its round trip.
//! - `quality.rs`: each connection's round-trip time, losses and bitrates, from str0m's
//!   statistics, reported as [`SfuEvent::Quality`] every few seconds.
//! - `sans_io.rs` (only with the `bench` feature): the loop driven by hand, for benchmarks.
//! - `handle.rs`: the command handle; `config.rs`, `event.rs`, `error.rs`, `ids.rs`: the API.
//!
//! Forwarding uses str0m's frame API (`Event::MediaData` in, `Writer::write` out) rather than
//! RTP mode. str0m then owns each leg's sequence numbers, timestamps, payload-type mapping
//! (`match_params`), RTX and NACK handling, so a subscriber that joins mid-stream or
//! negotiated other payload types still gets a valid stream. The cost is reassembling video
//! frames before forwarding them, which adds at most a frame's packet spread of delay.
//!
//! Simulcast: a publisher may send a video track in several layers (rids on one m-line, as
//! browsers do). Each subscriber gets exactly one layer per source: the highest whose
//! measured bitrate fits that subscriber's own send-side bandwidth estimate (str0m's TWCC
//! estimator, or REMB), shared between its simulcast sources after its plain tracks. Layers
//! are ordered by their measured bitrate, never by name; one that stopped arriving is not
//! chosen. A layer is kept while its rate fits and taken up only with headroom and not soon
//! after a step down, so the picture does not flap. A switch waits for a keyframe of the new
//! layer, asked of the publisher for that rid through the per-layer throttle, and the media
//! time is rewritten so the subscriber sees one continuous stream. The estimator is told the
//! rate being sent and the rate the top layers would need, so it probes upwards. Tracks
//! without layers are forwarded as before. Forwarded video is not paced again: the
//! publisher's own pacer has shaped it, and the layers fit each subscriber's estimate.
//!
//! Privacy: the gateway is ICE-lite and only answers; it never sends a packet to an address it
//! has not heard from, and never opens a TCP connection (ICE-TCP is passive only). Answers and offers carry only the gateway's own candidates. Nothing at
//! info level or above logs SDP, candidates or addresses.

mod config;
mod error;
mod event;
mod framing;
mod handle;
mod ice_tcp;
mod ids;
mod keyframe;
mod media_loop;
mod participant;
mod quality;
mod resend_history;
#[cfg(feature = "bench")]
#[doc(hidden)]
pub mod sans_io;
mod simulcast;
mod udp_batch;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod virtual_time_tests;

use std::sync::Arc;

use str0m::RtcConfig;
use str0m::bwe::Bitrate;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::info;

pub use config::{IceTcp, SfuConfig};
pub use error::SfuError;
pub use event::{DisconnectReason, FailureReason, SfuEvent};
pub use handle::SfuHandle;
pub use ice_tcp::{IceTcpConnections, IceTcpIntake, IntakeRefusal, OPENING_BYTES, opens_ice_tcp};
pub use ids::{ParticipantKey, SessionKey};
pub use quality::LinkQuality;

/// The starting point of the send-side bandwidth estimate (TWCC); it adapts from there.
const INITIAL_BITRATE_KBPS: u64 = 1_000;

/// The media core's entry point.
#[derive(Debug)]
pub struct Sfu;

impl Sfu {
    /// Binds the media socket (and ICE-TCP's own listener, if configured) and spawns the media
    /// loop on the current tokio runtime.
    ///
    /// The loop runs until every [`SfuHandle`] is dropped; the join handle completes then, and
    /// the ICE-TCP tasks wind down with it.
    pub async fn start(config: SfuConfig) -> Result<(SfuHandle, JoinHandle<()>), SfuError> {
        let socket = UdpSocket::bind(config.udp_bind).await.map_err(SfuError::Bind)?;
        let bound = socket.local_addr().map_err(SfuError::Bind)?;
        let mut advertised =
            config::Advertised { udp: config::advertised_addrs(bound, &config.public_ips), tcp: Vec::new() };
        info!(port = bound.port(), "media socket bound");

        // Bind before spawning anything, so a bad address fails the start and leaks no task.
        let (tcp_bound, tcp_events) = match config.ice_tcp {
            IceTcp::Off => (None, None),
            IceTcp::OwnPort(addr) => {
                let listener = TcpListener::bind(addr).await.map_err(SfuError::BindTcp)?;
                let tcp_bound = listener.local_addr().map_err(SfuError::BindTcp)?;
                info!(port = tcp_bound.port(), "ICE-TCP listener bound");
                let (intake, connections) = IceTcpIntake::new();
                tokio::spawn(ice_tcp::accept_loop(listener, intake));
                (Some(tcp_bound), Some(connections.0))
            }
            IceTcp::Shared { port_of, connections } => (Some(port_of), Some(connections.0)),
        };
        if let Some(tcp_bound) = tcp_bound {
            advertised.tcp = config::advertised_addrs(tcp_bound, &config.public_ips);
        }

        let (commands_tx, commands_rx) = mpsc::unbounded_channel();
        let media_loop = media_loop::MediaLoop::new(rtc_config(), advertised);
        let task = tokio::spawn(media_loop.run(socket, tcp_events, commands_rx));
        Ok((SfuHandle::new(commands_tx, bound, tcp_bound), task))
    }
}

/// The template every participant's `Rtc` is built from.
fn rtc_config() -> RtcConfig {
    RtcConfig::new()
        // ICE-lite: answer connectivity checks, never originate them (DESIGN §4).
        .set_ice_lite(true)
        // The aws-lc-rs backend selected by the Cargo feature; resolved once, shared by all.
        .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
        // What prison-room kiosks and consultants' browsers send. str0m's default video codecs
        // carry NACK and RTX; the default header extensions include transport-wide CC.
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true)
        .enable_h264(true)
        // Audio goes on as it comes, as RTP-forwarding SFUs pass it: a lost packet is never
        // retransmitted, so holding the packets after it (str0m waits for 15, 300 ms of
        // speech) only delays the voice; the listener's jitter buffer conceals the gap.
        .set_reordering_size_audio(0)
        // Send-side estimation from TWCC feedback, so a poor link is measured, not flooded.
        .enable_bwe(Some(Bitrate::kbps(INITIAL_BITRATE_KBPS)))
        // Round-trip time, losses and bitrates per connection, for the security console.
        .set_stats_interval(Some(quality::STATS_INTERVAL))
}
