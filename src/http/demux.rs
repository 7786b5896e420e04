//! One public TCP port for HTTPS and ICE-TCP media: each new connection is told apart by its
//! first bytes, so that a network that lets only TCP 443 out still carries a whole consultation.
//!
//! A TLS ClientHello record starts `0x16 0x03`; an ICE-TCP connection starts with an RFC 4571
//! frame holding a STUN binding request, which the media core recognises
//! ([`crate::sfu::opens_ice_tcp`]). Both kinds of client speak first, so the listener reads
//! just enough to decide, within [`FIRST_BYTES_TIMEOUT`], and hands those bytes along with the
//! stream: replayed in front of it for TLS ([`Replay`]), or given to the media core's intake.
//! Anything else is closed unanswered.
//!
//! Refusals here are network noise (scanners, plain HTTP, silent sockets), as failed TLS
//! handshakes are: they are counted in a metric and logged at debug level, not audited, so that
//! a flood of them cannot flood the audit log.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use super::wrapped::{Prepend, Wrapped};
use crate::sfu::{self, IceTcpIntake};

/// A browser sends its ClientHello as soon as TCP connects, and an ICE-TCP client its first
/// binding request within its first check interval; a connection silent this long is neither.
pub const FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(5);

/// Enough bytes to tell every protocol served here apart.
const MAX_FIRST_BYTES: usize =
    if sfu::OPENING_BYTES > TLS_OPENING_BYTES { sfu::OPENING_BYTES } else { TLS_OPENING_BYTES };

/// A TLS record of type handshake (22) with a 3.x record version.
const TLS_OPENING: [u8; 2] = [0x16, 0x03];
const TLS_OPENING_BYTES: usize = TLS_OPENING.len();

/// What a connection opened with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opening {
    Tls,
    IceTcp,
}

/// Why a connection was closed before either protocol took it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its first bytes open neither TLS nor ICE-TCP.
    Unrecognised,
    /// It sent too little within [`FIRST_BYTES_TIMEOUT`].
    Silent,
    /// It closed (or failed) before saying enough.
    Closed,
}

/// What a connection's first bytes open, or `None` while they are too few to tell.
pub fn classify(first_bytes: &[u8]) -> Option<Result<Opening, Refusal>> {
    let tls = match first_bytes.len() {
        0 => None,
        1 => (first_bytes[0] != TLS_OPENING[0]).then_some(false),
        _ => Some(first_bytes[..TLS_OPENING_BYTES] == TLS_OPENING),
    };
    match (tls, sfu::opens_ice_tcp(first_bytes)) {
        (Some(true), _) => Some(Ok(Opening::Tls)),
        (_, Some(true)) => Some(Ok(Opening::IceTcp)),
        (Some(false), Some(false)) => Some(Err(Refusal::Unrecognised)),
        _ => None,
    }
}

/// Reads from `io` until its first bytes tell what it opens, and returns them with the answer.
/// Never reads past what is needed to decide. The caller bounds the time it may take.
pub async fn read_opening<R: AsyncRead + Unpin>(io: &mut R) -> Result<(Opening, Vec<u8>), Refusal> {
    let mut first_bytes = [0u8; MAX_FIRST_BYTES];
    let mut len = 0;
    loop {
        if let Some(decided) = classify(&first_bytes[..len]) {
            return decided.map(|opening| (opening, first_bytes[..len].to_vec()));
        }
        // Some protocol is still undecided, so fewer than MAX_FIRST_BYTES have arrived.
        match io.read(&mut first_bytes[len..]).await {
            Ok(0) | Err(_) => return Err(Refusal::Closed),
            Ok(n) => len += n,
        }
    }
}

/// [`read_opening`] within [`FIRST_BYTES_TIMEOUT`].
pub async fn read_opening_in_time<R: AsyncRead + Unpin>(io: &mut R) -> Result<(Opening, Vec<u8>), Refusal> {
    tokio::time::timeout(FIRST_BYTES_TIMEOUT, read_opening(io)).await.unwrap_or(Err(Refusal::Silent))
}

/// A stream whose first bytes were already read: they are read again first, then the stream.
pub type Prefixed<S> = Wrapped<S, Replay>;

/// The first bytes of a stream, already read, and how many of them have been read again.
#[derive(Debug)]
pub struct Replay {
    prefix: Vec<u8>,
    replayed: usize,
}

impl Replay {
    pub fn new(prefix: Vec<u8>) -> Self {
        Self { prefix, replayed: 0 }
    }
}

impl Prepend for Replay {
    fn prepend(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        let left = &self.prefix[self.replayed..];
        if left.is_empty() {
            return false;
        }
        let n = left.len().min(buf.remaining());
        buf.put_slice(&left[..n]);
        self.replayed += n;
        true
    }
}

/// What the public listener does with connections that are not TLS, and where it counts them.
#[derive(Debug, Clone)]
pub struct PortSharing {
    /// The media core's intake when ICE-TCP shares this port; `None` refuses ICE-TCP here.
    pub ice_tcp: Option<IceTcpIntake>,
    pub metrics: PortMetrics,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// Connections on the public port by what became of them, so that operators can see ICE-TCP
/// use and the noise the port receives.
#[derive(Debug, Clone, Default)]
pub struct PortMetrics {
    connections: Family<OutcomeLabels, Counter>,
}

/// Every value of the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Tls,
    IceTcp,
    Refused(Refusal),
    /// ICE-TCP is not served on this port (`--media-tcp-port` gives it another or none).
    IceTcpNotHere,
    /// The media core would not take it (at its connection limit, or stopping).
    IceTcpRefused,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Tls => "tls",
            Outcome::IceTcp => "ice_tcp",
            Outcome::Refused(Refusal::Unrecognised) => "unrecognised",
            Outcome::Refused(Refusal::Silent) => "silent",
            Outcome::Refused(Refusal::Closed) => "closed",
            Outcome::IceTcpNotHere => "ice_tcp_not_served",
            Outcome::IceTcpRefused => "ice_tcp_refused",
        }
    }
}

impl PortMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "public_connections",
            "Connections on the public port by what their first bytes opened, or why they were closed",
            metrics.connections.clone(),
        );
        metrics
    }

    pub fn count(&self, outcome: Outcome) {
        self.connections.get_or_create(&OutcomeLabels { outcome: outcome.label() }).inc();
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    /// The first bytes of a framed STUN binding request with no attributes.
    const ICE_TCP: [u8; 10] = [0x00, 0x14, 0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];

    #[test]
    fn tls_and_ice_tcp_are_told_apart_by_their_first_bytes() {
        assert_eq!(classify(&[0x16, 0x03, 0x01]), Some(Ok(Opening::Tls)));
        assert_eq!(classify(&[0x16, 0x03]), Some(Ok(Opening::Tls)));
        assert_eq!(classify(&[0x16]), None);
        assert_eq!(classify(&[]), None);
        assert_eq!(classify(&ICE_TCP), Some(Ok(Opening::IceTcp)));
        for short in 1..ICE_TCP.len() {
            assert_eq!(classify(&ICE_TCP[..short]), None, "decided on {short} bytes");
        }
        for other in [&b"GET / HTTP/1.1\r\n"[..], b"SSH-2.0-", &[0x16, 0x02], &[0x00, 0x14, 0x00, 0x03]] {
            assert_eq!(classify(other), Some(Err(Refusal::Unrecognised)), "{other:?}");
        }
    }

    #[tokio::test]
    async fn reading_stops_as_soon_as_the_opening_is_known() {
        let (mut client, mut server) = tokio::io::duplex(64);
        // A ClientHello's first bytes, arriving one at a time, and the rest of the stream.
        client.write_all(&[0x16]).await.unwrap();
        let reading = tokio::spawn(async move {
            let opened = read_opening(&mut server).await;
            (opened, server)
        });
        tokio::task::yield_now().await;
        client.write_all(&[0x03, 0x01, 0xaa, 0xbb]).await.unwrap();
        let (opened, server) = reading.await.unwrap();
        let (opening, first_bytes) = opened.unwrap();
        assert_eq!(opening, Opening::Tls);
        // Whatever was read comes first again, then the rest, with nothing lost or repeated.
        let mut replayed = Prefixed::new(server, Replay::new(first_bytes));
        drop(client);
        let mut all = Vec::new();
        replayed.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, [0x16, 0x03, 0x01, 0xaa, 0xbb]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_or_closing_connection_is_refused() {
        let (client, mut server) = tokio::io::duplex(64);
        assert_eq!(read_opening_in_time(&mut server).await, Err(Refusal::Silent));
        drop(client);
        assert_eq!(read_opening_in_time(&mut server).await, Err(Refusal::Closed));
    }

    #[test]
    fn refusals_are_counted_by_outcome() {
        let mut registry = Registry::default();
        let metrics = PortMetrics::register(&mut registry);
        metrics.count(Outcome::IceTcp);
        metrics.count(Outcome::Refused(Refusal::Unrecognised));
        metrics.count(Outcome::Refused(Refusal::Unrecognised));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("public_connections_total{outcome=\"ice_tcp\"} 1"), "{text}");
        assert!(text.contains("public_connections_total{outcome=\"unrecognised\"} 2"), "{text}");
    }
}
