//! Batched I/O on the media socket: every datagram waiting in the socket, up to a batch, comes
//! out in one `recvmmsg` system call, and the fan-out of one packet to its subscribers, with
//! everything else one turn produced, goes in with one `sendmmsg`, rather than one system call
//! per datagram either way.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use nix::sys::socket::{ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};
use str0m::net::Transmit;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tracing::debug;

/// The most datagrams per system call; a turn rarely produces more.
const SEND_BATCH: usize = 64;

/// The most datagrams taken per wake-up of the loop, before it looks at its commands, timers and
/// ICE-TCP again: a batch is a few hundred microseconds of work.
const RECV_BATCH: usize = 64;
/// Each datagram's room: more than any datagram on a 1500-byte path. A longer one is cut short
/// by the kernel and then refused by str0m as malformed, as it would be with one buffer.
const RECV_SLOT_BYTES: usize = 2048;

/// Receive buffers for a batch, allocated once, and where each received datagram lies in them.
pub(super) struct ReceiveBatch {
    buffers: Vec<u8>,
    /// (slot, length, source) of each datagram of the last batch, in arrival order.
    received: Vec<(usize, usize, SocketAddr)>,
}

impl ReceiveBatch {
    pub(super) fn new() -> Self {
        ReceiveBatch { buffers: vec![0; RECV_BATCH * RECV_SLOT_BYTES], received: Vec::with_capacity(RECV_BATCH) }
    }

    /// Takes what waits in the socket, up to a batch, with one `recvmmsg`. `WouldBlock` when
    /// nothing waits (the socket's readiness is then cleared, so the loop sleeps on it again).
    pub(super) fn receive(&mut self, socket: &UdpSocket) -> io::Result<()> {
        self.received.clear();
        let ReceiveBatch { buffers, received } = self;
        socket.try_io(Interest::READABLE, || {
            let mut slots = buffers.chunks_exact_mut(RECV_SLOT_BYTES);
            let mut slices: [[IoSliceMut<'_>; 1]; RECV_BATCH] =
                std::array::from_fn(|_| [IoSliceMut::new(slots.next().unwrap_or_default())]);
            // The headers hold raw pointers, so they cannot be kept in the loop's state (which
            // must be `Send`): one small allocation per batch, never per datagram.
            let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(RECV_BATCH, None);
            let messages = recvmmsg(socket.as_raw_fd(), &mut headers, slices.iter_mut(), MsgFlags::MSG_DONTWAIT, None)?;
            for (slot, message) in messages.enumerate() {
                // A datagram always has a source; one without is nothing to answer.
                if let Some(source) = message.address.as_ref().and_then(socket_addr) {
                    received.push((slot, message.bytes.min(RECV_SLOT_BYTES), source));
                }
            }
            Ok(())
        })
    }

    /// The datagrams of the last batch, with their sources, in arrival order.
    pub(super) fn datagrams(&self) -> impl Iterator<Item = (&[u8], SocketAddr)> + '_ {
        self.received.iter().map(|&(slot, len, source)| {
            let start = slot * RECV_SLOT_BYTES;
            (&self.buffers[start..start + len], source)
        })
    }
}

fn socket_addr(address: &SockaddrStorage) -> Option<SocketAddr> {
    match (address.as_sockaddr_in(), address.as_sockaddr_in6()) {
        (Some(v4), _) => Some(SocketAddr::V4((*v4).into())),
        (_, Some(v6)) => Some(SocketAddr::V6((*v6).into())),
        _ => None,
    }
}

/// Sends every one of `datagrams` on `socket`, waiting while the socket's buffer is full. A
/// datagram the kernel refuses (no route, too large) is dropped, as the network would drop it.
pub(super) async fn send_all(socket: &UdpSocket, datagrams: &[Transmit]) {
    let mut sent = 0;
    while sent < datagrams.len() {
        let batch = &datagrams[sent..datagrams.len().min(sent + SEND_BATCH)];
        match socket.try_io(Interest::WRITABLE, || send_batch(socket, batch)) {
            Ok(count) => sent += count,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if let Err(e) = socket.writable().await {
                    debug!(error = %e, "media socket not writable");
                    return;
                }
            }
            Err(e) => {
                // The kernel stopped at the batch's first datagram; the rest may still go.
                debug!(error = %e, "media datagram not sent");
                sent += 1;
            }
        }
    }
}

/// One `sendmmsg` call: how many of `batch`, from its start, the kernel took.
fn send_batch(socket: &UdpSocket, batch: &[Transmit]) -> io::Result<usize> {
    let slices: Vec<[IoSlice<'_>; 1]> = batch.iter().map(|t| [IoSlice::new(&t.contents)]).collect();
    let addresses: Vec<Option<SockaddrStorage>> =
        batch.iter().map(|t| Some(SockaddrStorage::from(t.destination))).collect();
    let mut headers = MultiHeaders::preallocate(batch.len(), None);
    let no_control: [ControlMessage<'_>; 0] = [];
    let sent = sendmmsg(socket.as_raw_fd(), &mut headers, &slices, &addresses, no_control, MsgFlags::empty())?;
    match sent.count() {
        // Not expected from the kernel; wait for the socket rather than spin.
        0 => Err(io::ErrorKind::WouldBlock.into()),
        count => Ok(count),
    }
}
