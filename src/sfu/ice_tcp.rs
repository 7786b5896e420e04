//! ICE-TCP, passive only (RFC 6544 with RFC 4571 framing): the fallback for networks that
//! let only outbound TCP through.
//!
//! Connections arrive through an [`IceTcpIntake`]: handed over by the shared HTTPS port, which
//! recognises them by their first bytes ([`opens_ice_tcp`]), or accepted on a port of ICE-TCP's
//! own. One task per connection reads frames and writes the frames the media loop queues for it. They never touch an `Rtc`: every received packet goes to the
//! media loop as a [`TcpEvent`], and the media loop hands each connection a bounded queue of
//! packets to send. The gateway only answers here as on UDP: it never dials a client.
//!
//! Resource bounds, since any host on the network can open connections (see [`LIMITS`]):
//! - at most 1024 connections at once; further ones are closed at once;
//! - frames above [`framing::MAX_FRAME_BYTES`] close the connection;
//! - a connection must carry a STUN binding request that a participant accepts within 10 s,
//!   and then stay active;
//! - the write queue holds [`WRITE_QUEUE_PACKETS`]; the media loop drops packets beyond it, as
//!   a congested UDP path would, and a write that stalls for [`WRITE_TIMEOUT`] closes.
//!
//! Nothing here logs an address: addresses only travel to the media loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use str0m::net::DatagramSend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use tracing::debug;

use super::framing::{self, FrameDecoder};

/// The bounds on what clients can hold open. Tests shrink them; the gateway uses [`LIMITS`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Concurrent connections, validated or not.
    pub(crate) max_connections: usize,
    /// How long a new connection may go without a STUN binding request that a participant
    /// accepts.
    pub(crate) validation_timeout: Duration,
    /// How long a validated connection may stay silent.
    pub(crate) idle_timeout: Duration,
}

/// The gateway's bounds.
pub(crate) const LIMITS: Limits = Limits {
    // A call needs one connection per participant on TCP; this leaves room for many sessions
    // while capping what a flood of connections can hold open.
    max_connections: 1024,
    // A real client sends its first binding request at once and retries well within this.
    validation_timeout: Duration::from_secs(10),
    // ICE consent checks (RFC 7675) arrive every few seconds while a call lasts, so silence
    // this long means the client is gone.
    idle_timeout: Duration::from_secs(30),
};

/// Packets queued for one connection. About a second of a video call: enough to ride out a
/// brief stall, small enough that a client that stops reading cannot grow memory.
pub(crate) const WRITE_QUEUE_PACKETS: usize = 256;

/// A write that makes no progress for this long means the client stopped reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Events queued towards the media loop from all connections. Bounded, so that when the media
/// loop falls behind, connections stop reading and TCP flow control slows the clients.
pub(crate) const EVENT_QUEUE: usize = 1024;

/// One read's worth of bytes. Several frames usually arrive together over TCP.
const READ_BUFFER_BYTES: usize = 16 * 1024;

/// A pause after a failed accept (for example, out of file descriptors), so that the failure
/// does not turn into a busy loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Names one TCP connection for its whole life, so that the media loop can tell a closed
/// connection from a newer one that reuses the same remote address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnId(u64);

/// What the TCP side tells the media loop, in order per connection.
#[derive(Debug)]
pub(crate) enum TcpEvent {
    /// A client connected. `outgoing` is the connection's bounded write queue; `validated` is
    /// fired once a participant accepts a STUN binding request from it, which lifts the
    /// validation deadline.
    Opened { conn: ConnId, remote: SocketAddr, outgoing: mpsc::Sender<DatagramSend>, validated: oneshot::Sender<()> },
    /// One framed packet from a connection.
    Packet { conn: ConnId, remote: SocketAddr, data: Vec<u8> },
    /// The connection is gone; nothing more can be sent to it.
    Closed { conn: ConnId, remote: SocketAddr },
}

/// Takes ICE-TCP connections that were accepted elsewhere and serves each one. This is how
/// the shared HTTPS port hands over a connection whose first bytes open ICE-TCP, and how this
/// module's own listener (a port of its own) serves what it accepts.
///
/// It knows nothing of where the connection came from: it gets a TCP stream, the client's
/// address and the bytes already read from the stream, which it serves as the stream's start.
#[derive(Clone)]
pub struct IceTcpIntake {
    events: mpsc::Sender<TcpEvent>,
    /// One per open connection, validated or not; see [`Limits::max_connections`].
    permits: Arc<Semaphore>,
    /// Names connections; shared by every clone so that names never repeat.
    next_id: Arc<AtomicU64>,
    limits: Limits,
}

impl std::fmt::Debug for IceTcpIntake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IceTcpIntake").finish_non_exhaustive()
    }
}

/// The media loop's end of an [`IceTcpIntake`]: every connection's events.
#[derive(Debug)]
pub struct IceTcpConnections(pub(crate) mpsc::Receiver<TcpEvent>);

/// Why the intake would not take a connection; the stream is closed either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IntakeRefusal {
    #[error("the gateway already serves its limit of ICE-TCP connections")]
    AtLimit,
    #[error("the media core has stopped")]
    Stopped,
}

impl IceTcpIntake {
    /// An intake with the gateway's bounds, and the end to give the media core.
    pub fn new() -> (IceTcpIntake, IceTcpConnections) {
        IceTcpIntake::with_limits(LIMITS)
    }

    pub(crate) fn with_limits(limits: Limits) -> (IceTcpIntake, IceTcpConnections) {
        let (events, rx) = mpsc::channel(EVENT_QUEUE);
        let intake = IceTcpIntake {
            events,
            permits: Arc::new(Semaphore::new(limits.max_connections)),
            next_id: Arc::new(AtomicU64::new(0)),
            limits,
        };
        (intake, IceTcpConnections(rx))
    }

    /// Serves `stream`, from `remote`, whose first bytes the caller already read into
    /// `first_bytes`. Over the connection limit, or once the media core has stopped, the stream
    /// is dropped (and so closed) at once.
    pub fn take(&self, stream: TcpStream, remote: SocketAddr, first_bytes: Vec<u8>) -> Result<(), IntakeRefusal> {
        if self.events.is_closed() {
            return Err(IntakeRefusal::Stopped);
        }
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            debug!("ICE-TCP connection refused: at the connection limit");
            return Err(IntakeRefusal::AtLimit);
        };
        let conn = ConnId(self.next_id.fetch_add(1, Ordering::Relaxed) + 1);
        tokio::spawn(serve(stream, remote, conn, first_bytes, self.events.clone(), self.limits, permit));
        Ok(())
    }

    /// Resolves once the media core no longer listens.
    async fn stopped(&self) {
        self.events.closed().await;
    }
}

/// Accepts connections on a port of ICE-TCP's own until the media loop stops listening.
pub(crate) async fn accept_loop(listener: TcpListener, intake: IceTcpIntake) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = intake.stopped() => break,
        };
        match accepted {
            // A refused stream is already closed; the intake said why at debug level.
            Ok((stream, remote)) => drop(intake.take(stream, remote, Vec::new())),
            Err(e) => {
                debug!(error = %e, "ICE-TCP accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
    debug!("ICE-TCP listener stopped");
}

/// How many bytes [`opens_ice_tcp`] needs to decide: a frame's length and a STUN header up to
/// the end of its magic cookie.
pub const OPENING_BYTES: usize = 10;

/// Whether a connection's first bytes open ICE-TCP: an RFC 4571 frame holding a STUN binding
/// request (a length of 20 to [`framing::MAX_FRAME_BYTES`], the binding-request type, a STUN
/// length that fills the frame, and the magic cookie). `None` while too few bytes have arrived
/// to tell; each byte is checked as soon as it arrives, so most other protocols are told apart
/// by their first byte or two.
pub fn opens_ice_tcp(first_bytes: &[u8]) -> Option<bool> {
    // Each check runs as soon as its bytes are in, so that another protocol is told apart
    // early: a TLS record or an HTTP request already by its first byte.
    if let Some(&high) = first_bytes.first()
        && usize::from(high) > framing::MAX_FRAME_BYTES >> 8
    {
        return Some(false);
    }
    let frame_len = usize::from(u16::from_be_bytes(*first_bytes.first_chunk::<2>()?));
    if !(STUN_HEADER_BYTES..=framing::MAX_FRAME_BYTES).contains(&frame_len) {
        return Some(false);
    }
    let stun = &first_bytes[2..];
    if stun.len() >= 2 && stun[..2] != BINDING_REQUEST {
        return Some(false);
    }
    if stun.len() >= 4 && usize::from(u16::from_be_bytes([stun[2], stun[3]])) + STUN_HEADER_BYTES != frame_len {
        return Some(false);
    }
    let cookie = stun.get(4..8)?;
    Some(cookie == STUN_MAGIC_COOKIE)
}

/// Why a connection ended; only ever logged at debug level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CloseReason {
    ClientClosed,
    ReadFailed,
    WriteFailed,
    BadFrame,
    NotValidated,
    Idle,
    /// The media loop stopped, or dropped this connection's queue.
    MediaLoopGone,
}

/// Runs one connection: frames in, frames out, deadlines. Holds `_permit` for its lifetime so
/// the connection counts against the limit until it is really gone.
async fn serve(
    stream: TcpStream,
    remote: SocketAddr,
    conn: ConnId,
    first_bytes: Vec<u8>,
    events: mpsc::Sender<TcpEvent>,
    limits: Limits,
    _permit: OwnedSemaphorePermit,
) {
    // Media is latency-bound: send each packet at once rather than batching small ones.
    if let Err(e) = stream.set_nodelay(true) {
        debug!(error = %e, "ICE-TCP could not disable Nagle's algorithm");
    }
    let (outgoing, queue) = mpsc::channel(WRITE_QUEUE_PACKETS);
    let (validated, on_validated) = oneshot::channel();
    if events.send(TcpEvent::Opened { conn, remote, outgoing, validated }).await.is_err() {
        return;
    }
    let upstream = Upstream { conn, remote, events };
    let reason = run_connection(stream, &upstream, first_bytes, queue, on_validated, limits).await;
    debug!(?reason, "ICE-TCP connection closed");
    // Best effort: if the media loop has stopped there is no one left to tell.
    let _ = upstream.events.send(TcpEvent::Closed { conn, remote }).await;
}

/// Where one connection's packets go: the media loop, named by connection and client address.
struct Upstream {
    conn: ConnId,
    remote: SocketAddr,
    events: mpsc::Sender<TcpEvent>,
}

impl Upstream {
    /// Sends every whole frame the decoder holds to the media loop.
    async fn forward(&self, decoder: &mut FrameDecoder) -> Result<(), CloseReason> {
        loop {
            let data = match decoder.next_frame() {
                Ok(Some(frame)) => frame.to_vec(),
                Ok(None) => return Ok(()),
                Err(_) => return Err(CloseReason::BadFrame),
            };
            let packet = TcpEvent::Packet { conn: self.conn, remote: self.remote, data };
            if self.events.send(packet).await.is_err() {
                return Err(CloseReason::MediaLoopGone);
            }
        }
    }
}

async fn run_connection(
    stream: TcpStream,
    upstream: &Upstream,
    first_bytes: Vec<u8>,
    mut queue: mpsc::Receiver<DatagramSend>,
    mut on_validated: oneshot::Receiver<()>,
    limits: Limits,
) -> CloseReason {
    let (mut reader, mut writer) = stream.into_split();
    let mut decoder = FrameDecoder::new();
    // The bytes another listener read to recognise the connection are its stream's start.
    decoder.extend(&first_bytes);
    if let Err(reason) = upstream.forward(&mut decoder).await {
        return reason;
    }
    let mut buf = vec![0u8; READ_BUFFER_BYTES];
    let opened = Instant::now();
    let mut last_read = opened;
    let mut validated = false;
    // The oneshot resolves once; polling it again after that would panic.
    let mut awaiting_validation = true;
    loop {
        let deadline = if validated { last_read + limits.idle_timeout } else { opened + limits.validation_timeout };
        tokio::select! {
            read = reader.read(&mut buf) => {
                let n = match read {
                    Ok(0) => return CloseReason::ClientClosed,
                    Ok(n) => n,
                    Err(_) => return CloseReason::ReadFailed,
                };
                last_read = Instant::now();
                decoder.extend(&buf[..n]);
                if let Err(reason) = upstream.forward(&mut decoder).await {
                    return reason;
                }
            }
            packet = queue.recv() => {
                let Some(packet) = packet else {
                    return CloseReason::MediaLoopGone;
                };
                let Ok(frame) = framing::encode(&packet) else {
                    // str0m's packets stay under the MTU; an unframeable one is dropped alone.
                    debug!("ICE-TCP packet too large to frame; dropped");
                    continue;
                };
                match tokio::time::timeout(WRITE_TIMEOUT, writer.write_all(&frame)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) | Err(_) => return CloseReason::WriteFailed,
                }
            }
            result = &mut on_validated, if awaiting_validation => {
                awaiting_validation = false;
                // An error means the media loop dropped this connection without validating it;
                // the validation deadline then still applies.
                validated = result.is_ok();
            }
            () = tokio::time::sleep_until(deadline) => {
                return if validated { CloseReason::Idle } else { CloseReason::NotValidated };
            }
        }
    }
}

/// True for a STUN Binding request (RFC 8489 §5: method 0x001, class request, magic cookie):
/// the only packet that may validate a new connection. Integrity is checked by the
/// participant that accepts it, not here.
pub(crate) fn is_binding_request(packet: &[u8]) -> bool {
    packet.len() >= STUN_HEADER_BYTES && packet[..2] == BINDING_REQUEST && packet[4..8] == STUN_MAGIC_COOKIE
}

/// A STUN message's fixed header: type, length, magic cookie, transaction id (RFC 8489 §5).
const STUN_HEADER_BYTES: usize = 20;
/// The message type of a Binding request: method 0x001, class request.
const BINDING_REQUEST: [u8; 2] = [0x00, 0x01];
const STUN_MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];

#[cfg(test)]
mod tests {
    use super::*;

    /// Small bounds so that the deadlines pass in a fraction of a second.
    const SHORT: Limits = Limits {
        max_connections: 2,
        validation_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(600),
    };

    /// The accept loop on a fresh port, with the test playing the media loop.
    async fn start(limits: Limits) -> (SocketAddr, mpsc::Receiver<TcpEvent>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (intake, IceTcpConnections(rx)) = IceTcpIntake::with_limits(limits);
        tokio::spawn(accept_loop(listener, intake));
        (addr, rx)
    }

    async fn next(rx: &mut mpsc::Receiver<TcpEvent>) -> TcpEvent {
        tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap()
    }

    /// Connects and returns the stream with the gateway side's `Opened` parts.
    async fn connect(
        addr: SocketAddr,
        rx: &mut mpsc::Receiver<TcpEvent>,
    ) -> (TcpStream, ConnId, mpsc::Sender<DatagramSend>, oneshot::Sender<()>) {
        let stream = TcpStream::connect(addr).await.unwrap();
        match next(rx).await {
            TcpEvent::Opened { conn, remote, outgoing, validated } => {
                assert_eq!(remote, stream.local_addr().unwrap());
                (stream, conn, outgoing, validated)
            }
            other => panic!("expected Opened, got {other:?}"),
        }
    }

    /// Waits until the gateway closes `stream` (end of file or reset), discarding any data.
    async fn wait_closed(stream: &mut TcpStream, within: Duration) {
        let mut buf = [0u8; 256];
        let closed = tokio::time::timeout(within, async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "the gateway kept the connection open");
    }

    async fn still_open(stream: &mut TcpStream, during: Duration) -> bool {
        let mut buf = [0u8; 256];
        tokio::time::timeout(during, stream.read(&mut buf)).await.is_err()
    }

    #[tokio::test]
    async fn frames_in_become_packets_and_packets_out_become_frames() {
        let (addr, mut rx) = start(SHORT).await;
        let (mut stream, conn, outgoing, _validated) = connect(addr, &mut rx).await;

        // Three frames, split at awkward places across three writes.
        let mut bytes = Vec::new();
        for payload in [&b"first"[..], &[9; 1500], b"third"] {
            bytes.extend(framing::encode(payload).unwrap());
        }
        for chunk in [&bytes[..1], &bytes[1..9], &bytes[9..]] {
            stream.write_all(chunk).await.unwrap();
            stream.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for expected in [&b"first"[..], &[9; 1500], b"third"] {
            match next(&mut rx).await {
                TcpEvent::Packet { conn: c, data, .. } => {
                    assert_eq!(c, conn);
                    assert_eq!(data, expected);
                }
                other => panic!("expected a packet, got {other:?}"),
            }
        }

        outgoing.try_send(DatagramSend::from(b"answer".to_vec())).unwrap();
        let mut reply = [0u8; 8];
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut reply)).await.unwrap().unwrap();
        assert_eq!(&reply, b"\x00\x06answer");
    }

    #[tokio::test]
    async fn an_oversize_frame_closes_the_connection() {
        let (addr, mut rx) = start(SHORT).await;
        let (mut stream, conn, _outgoing, validated) = connect(addr, &mut rx).await;
        validated.send(()).unwrap();
        let too_big = u16::try_from(framing::MAX_FRAME_BYTES + 1).unwrap();
        stream.write_all(&too_big.to_be_bytes()).await.unwrap();
        wait_closed(&mut stream, Duration::from_secs(5)).await;
        assert!(matches!(next(&mut rx).await, TcpEvent::Closed { conn: c, .. } if c == conn));
    }

    #[tokio::test]
    async fn a_connection_nobody_validates_is_closed_at_the_deadline() {
        let (addr, mut rx) = start(SHORT).await;
        let opened = std::time::Instant::now();
        let (mut stream, _conn, _outgoing, _validated) = connect(addr, &mut rx).await;
        // Frames alone do not count: only the media loop's word does.
        stream.write_all(&framing::encode(b"not a binding request").unwrap()).await.unwrap();
        wait_closed(&mut stream, Duration::from_secs(5)).await;
        assert!(opened.elapsed() >= SHORT.validation_timeout);
    }

    #[tokio::test]
    async fn a_validated_connection_stays_while_active_and_closes_when_idle() {
        let (addr, mut rx) = start(SHORT).await;
        let (mut stream, _conn, _outgoing, validated) = connect(addr, &mut rx).await;
        validated.send(()).unwrap();
        // Active well past the validation deadline.
        let mut last_write = std::time::Instant::now();
        for _ in 0..8 {
            stream.write_all(&framing::encode(b"consent").unwrap()).await.unwrap();
            last_write = std::time::Instant::now();
            assert!(still_open(&mut stream, Duration::from_millis(100)).await);
        }
        wait_closed(&mut stream, Duration::from_secs(5)).await;
        // Some slack for the read landing a little after the write.
        assert!(last_write.elapsed() >= SHORT.idle_timeout - Duration::from_millis(50));
    }

    #[tokio::test]
    async fn connections_beyond_the_limit_are_closed_at_once() {
        let (addr, mut rx) = start(SHORT).await;
        let (mut first, _c1, _o1, v1) = connect(addr, &mut rx).await;
        let (_second, _c2, _o2, v2) = connect(addr, &mut rx).await;
        v1.send(()).unwrap();
        v2.send(()).unwrap();

        let mut third = TcpStream::connect(addr).await.unwrap();
        wait_closed(&mut third, Duration::from_secs(2)).await;
        assert!(tokio::time::timeout(Duration::from_millis(100), rx.recv()).await.is_err(), "a third was opened");

        // A slot frees up when a connection ends.
        first.shutdown().await.unwrap();
        wait_closed(&mut first, Duration::from_secs(2)).await;
        assert!(matches!(next(&mut rx).await, TcpEvent::Closed { .. }));
        let (_fourth, _c4, _o4, _v4) = connect(addr, &mut rx).await;
    }

    #[tokio::test]
    async fn connections_end_when_the_media_loop_does() {
        let (addr, mut rx) = start(SHORT).await;
        let (mut stream, _conn, outgoing, validated) = connect(addr, &mut rx).await;
        validated.send(()).unwrap();
        drop((rx, outgoing));
        wait_closed(&mut stream, Duration::from_secs(2)).await;
        // The listener goes too, so nothing is accepted any more.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let late = TcpStream::connect(addr).await;
        assert!(late.is_err(), "the listener outlived the media loop");
    }

    #[test]
    fn only_a_binding_request_can_validate_a_connection() {
        let mut request = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
        request.extend([0; 12]);
        assert!(is_binding_request(&request));
        let mut response = request.clone();
        response[..2].copy_from_slice(&[0x01, 0x01]);
        assert!(!is_binding_request(&response));
        let mut indication = request.clone();
        indication[..2].copy_from_slice(&[0x00, 0x11]);
        assert!(!is_binding_request(&indication));
        assert!(!is_binding_request(&request[..19]));
        let mut no_cookie = request.clone();
        no_cookie[4] = 0;
        assert!(!is_binding_request(&no_cookie));
    }

    /// A framed binding request as a client's first write: frame length, STUN header, one
    /// attribute.
    fn framed_binding_request() -> Vec<u8> {
        let mut stun = vec![0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42];
        stun.extend([7; 12]); // transaction id
        stun.extend([0x00, 0x06, 0x00, 0x04, b'u', b's', b'e', b'r']); // USERNAME
        framing::encode(&stun).unwrap()
    }

    #[test]
    fn a_framed_binding_request_opens_ice_tcp_and_other_protocols_do_not() {
        let request = framed_binding_request();
        assert_eq!(opens_ice_tcp(&request), Some(true));
        assert_eq!(opens_ice_tcp(&request[..OPENING_BYTES]), Some(true));
        for short in 0..OPENING_BYTES {
            assert_eq!(opens_ice_tcp(&request[..short]), None, "decided on {short} bytes");
        }
        // A TLS ClientHello record and a plain HTTP request are told apart by their first byte.
        assert_eq!(opens_ice_tcp(&[0x16]), Some(false));
        assert_eq!(opens_ice_tcp(b"G"), Some(false));
        // Frames that are not a binding request with its cookie, as soon as that shows.
        let mut tampered = request.clone();
        tampered[3] = 0x11; // a STUN indication
        assert_eq!(opens_ice_tcp(&tampered[..4]), Some(false));
        let mut tampered = request.clone();
        tampered[5] = 0x0c; // a STUN length that does not fill the frame
        assert_eq!(opens_ice_tcp(&tampered[..6]), Some(false));
        let mut tampered = request.clone();
        tampered[9] = 0x43; // not the magic cookie
        assert_eq!(opens_ice_tcp(&tampered), Some(false));
        assert_eq!(opens_ice_tcp(&[0x00, 0x13]), Some(false), "shorter than a STUN header");
        assert_eq!(opens_ice_tcp(&[0x08, 0x01]), Some(false), "longer than the frame limit");
    }

    #[tokio::test]
    async fn a_handed_over_connection_starts_with_the_bytes_already_read() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (intake, IceTcpConnections(mut rx)) = IceTcpIntake::with_limits(SHORT);
        let mut client = TcpStream::connect(addr).await.unwrap();
        let (mut accepted, remote) = listener.accept().await.unwrap();

        // Another listener read the first frame and half of the second before handing over.
        let request = framed_binding_request();
        let second = framing::encode(b"second").unwrap();
        let mut already_read = request.clone();
        already_read.extend_from_slice(&second[..3]);
        client.write_all(&already_read).await.unwrap();
        let mut consumed = vec![0; already_read.len()];
        accepted.read_exact(&mut consumed).await.unwrap();
        intake.take(accepted, remote, consumed).unwrap();
        client.write_all(&second[3..]).await.unwrap();

        assert!(matches!(next(&mut rx).await, TcpEvent::Opened { remote: r, .. } if r == remote));
        for expected in [&request[2..], b"second"] {
            match next(&mut rx).await {
                TcpEvent::Packet { data, .. } => assert_eq!(data, expected),
                other => panic!("expected a packet, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn the_intake_refuses_beyond_the_limit_and_after_the_media_loop() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (intake, IceTcpConnections(rx)) = IceTcpIntake::with_limits(SHORT);
        let mut kept = Vec::new();
        for expected in [Ok(()), Ok(()), Err(IntakeRefusal::AtLimit)] {
            let client = TcpStream::connect(addr).await.unwrap();
            let (accepted, remote) = listener.accept().await.unwrap();
            assert_eq!(intake.take(accepted, remote, Vec::new()), expected);
            kept.push(client);
        }
        drop(rx);
        let _client = TcpStream::connect(addr).await.unwrap();
        let (accepted, remote) = listener.accept().await.unwrap();
        assert_eq!(intake.take(accepted, remote, Vec::new()), Err(IntakeRefusal::Stopped));
    }
}
