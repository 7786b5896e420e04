//! The public TLS listener: accepts TCP, tells TLS from ICE-TCP media by each connection's first
//! bytes (`demux.rs`), completes the rustls handshake off the accept loop, and hands finished
//! connections to axum. ICE-TCP connections go to the media core's intake as raw TCP streams.
//! Every HTTPS connection holds a drain token until it closes, so shutdown can wait for open
//! connections, upgraded WebSockets included.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::{TaskTracker, task_tracker::TaskTrackerToken};

use super::demux::{self, Opening, Outcome, PortSharing, Prefixed, Replay};
use super::wrapped::{Prepend, Wrapped};

/// A client that has not finished its handshake by then is dropped; it holds memory and a slot.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bounds the memory that unauthenticated, half-open connections (ICE-TCP ones until they are
/// handed over) can take.
const MAX_CONCURRENT_HANDSHAKES: usize = 1024;

/// A listener axum can serve from, yielding TLS connections that completed their handshake.
pub struct TlsListener {
    incoming: mpsc::Receiver<(TrackedStream, SocketAddr)>,
    local_addr: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `tcp` until `shutdown` fires. Every accepted HTTPS connection, from
    /// its first byte to its close, counts as open work on `connections`; `sharing` says what
    /// becomes of the others.
    pub fn spawn(
        tcp: TcpListener,
        tls: Arc<rustls::ServerConfig>,
        sharing: PortSharing,
        connections: TaskTracker,
        shutdown: CancellationToken,
    ) -> io::Result<Self> {
        let local_addr = tcp.local_addr()?;
        // A small queue: back-pressure belongs in the kernel's accept queue, not here.
        let (tx, incoming) = mpsc::channel(64);
        tokio::spawn(accept_loop(tcp, TlsAcceptor::from(tls), sharing, connections, shutdown, tx));
        Ok(Self { incoming, local_addr })
    }
}

async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    sharing: PortSharing,
    connections: TaskTracker,
    shutdown: CancellationToken,
    tx: mpsc::Sender<(TrackedStream, SocketAddr)>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_CONCURRENT_HANDSHAKES));
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => return,
            permit = handshakes.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let (mut stream, peer) = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = tcp.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Usually EMFILE: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let token = connections.token();
        let acceptor = acceptor.clone();
        let sharing = sharing.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let Ok(local) = stream.local_addr() else { return };
            let first_bytes = match demux::read_opening_in_time(&mut stream).await {
                Ok((Opening::Tls, first_bytes)) => first_bytes,
                Ok((Opening::IceTcp, first_bytes)) => {
                    // Media is not HTTP work: the media core bounds and ends its connections.
                    drop((permit, token));
                    let outcome = match &sharing.ice_tcp {
                        Some(intake) => match intake.take(stream, peer, first_bytes) {
                            Ok(()) => Outcome::IceTcp,
                            Err(_) => Outcome::IceTcpRefused,
                        },
                        None => Outcome::IceTcpNotHere,
                    };
                    sharing.metrics.count(outcome);
                    return;
                }
                Err(refusal) => {
                    tracing::debug!(?refusal, "connection on the public port refused");
                    sharing.metrics.count(Outcome::Refused(refusal));
                    return;
                }
            };
            sharing.metrics.count(Outcome::Tls);
            let stream = Prefixed::new(stream, Replay::new(first_bytes));
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    drop(permit);
                    // If the server has stopped taking connections, this one is simply closed.
                    let _ = tx.send((TrackedStream::new(tls, Tracking { local, _open: token }), peer)).await;
                }
                // Failed handshakes are routine (scanners, plain HTTP, old TLS versions): debug only.
                Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!("TLS handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TrackedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.incoming.recv().await {
            Some(conn) => conn,
            // The accept loop has stopped for shutdown; axum stops calling us at the same time.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

/// A TLS connection that keeps the drain token alive for exactly as long as it is open.
pub type TrackedStream = Wrapped<TlsStream<Prefixed<TcpStream>>, Tracking>;

/// What an open HTTPS connection carries along.
pub struct Tracking {
    /// The gateway's own address that the client reached.
    local: SocketAddr,
    _open: TaskTrackerToken,
}

impl Prepend for Tracking {}

/// Both ends of an accepted connection. Handlers read it through `ConnectInfo<ClientAddr>`.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr {
    /// The client's own address; recorded only for the client's own audit records.
    pub remote: SocketAddr,
    /// The gateway's address that the client reached, which on a gateway with an address
    /// towards each network names the client's side.
    pub local: SocketAddr,
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>> for ClientAddr {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        Self { remote: *stream.remote_addr(), local: stream.io().wrapper().local }
    }
}
