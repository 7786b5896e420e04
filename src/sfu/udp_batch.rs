//! Batched sending on the media socket: up to a batch of datagrams per `sendmmsg` system call,
//! so the fan-out of one packet to its subscribers, and everything else one turn produced,
//! enters the kernel once rather than once per datagram.

use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;

use nix::sys::socket::{ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg};
use str0m::net::Transmit;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tracing::debug;

/// The most datagrams per system call; a turn rarely produces more.
const SEND_BATCH: usize = 64;

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
