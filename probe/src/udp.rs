//! A plain UDP endpoint that sends the same stamped payloads in bare RTP headers, with no
//! ICE, DTLS or SRTP: the client side of the bare-relay measurement.
//!
//! It introduces itself to the relay with [`hello`] naming its pair; the relay forwards
//! everything else it sends to the other member of the pair.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::Result;
use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::inbox::{Arrival, Inbox};
use crate::pace::{self, Ledger, Outlet, Plan, Track};
use crate::payload_type;
use crate::stamp::Kind;

/// The first bytes of a hello datagram; RTP never starts this way (its version bits are 2).
pub const HELLO_MAGIC: &[u8; 4] = b"HELO";
const RTP_HEADER_LEN: usize = 12;

/// The hello datagram for member of pair `pair`.
pub fn hello(pair: u32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(HELLO_MAGIC);
    b[4..].copy_from_slice(&pair.to_be_bytes());
    b
}

/// Reads a hello datagram's pair number.
pub fn read_hello(datagram: &[u8]) -> Option<u32> {
    let rest = datagram.strip_prefix(HELLO_MAGIC)?;
    Some(u32::from_be_bytes(rest.try_into().ok()?))
}

pub struct UdpPeer {
    pub id: u32,
    socket: Arc<UdpSocket>,
    pub inbox: Arc<Inbox>,
    receiving: tokio::task::JoinHandle<()>,
}

impl UdpPeer {
    /// Binds on `ip`, says hello to `relay` for `pair`, and starts recording what arrives.
    pub async fn join(id: u32, ip: IpAddr, relay: SocketAddr, pair: u32) -> Result<UdpPeer> {
        let socket = Arc::new(UdpSocket::bind((ip, 0)).await?);
        socket.connect(relay).await?;
        socket.send(&hello(pair)).await?;
        let inbox = Arc::new(Inbox::default());
        let (reader, record) = (socket.clone(), inbox.clone());
        let receiving = tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok(len) = reader.recv(&mut buf).await {
                let Some(payload) = buf[..len].get(RTP_HEADER_LEN..) else {
                    continue;
                };
                let kind = if buf[1] & 0x7f == payload_type::OPUS { Kind::Audio } else { Kind::Video };
                record.record(kind, payload);
            }
        });
        Ok(UdpPeer { id, socket, inbox, receiving })
    }

    pub async fn publish(&self, plan: Plan, first_seq: u32, stop: watch::Receiver<bool>) -> Ledger {
        pace::publish(self, self.id, plan, false, first_seq, stop).await
    }

    pub fn take_arrivals(&self) -> Vec<Arrival> {
        self.inbox.take_arrivals()
    }

    pub fn undecodable(&self) -> usize {
        self.inbox.undecodable()
    }

    pub fn close(&self) {
        self.receiving.abort();
    }
}

impl Outlet for UdpPeer {
    async fn send(&self, track: Track, seq: u32, timestamp: u32, payload: Vec<u8>) {
        let pt = if track == Track::Audio { payload_type::OPUS } else { payload_type::VP8 };
        let ssrc = self.id.wrapping_mul(4).wrapping_add(track as u32);
        let mut datagram = Vec::with_capacity(RTP_HEADER_LEN + payload.len());
        datagram.extend_from_slice(&[0x80, 0x80 | pt]);
        datagram.extend_from_slice(&(seq as u16).to_be_bytes());
        datagram.extend_from_slice(&timestamp.to_be_bytes());
        datagram.extend_from_slice(&ssrc.to_be_bytes());
        datagram.extend_from_slice(&payload);
        let _ = self.socket.send(&datagram).await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hellos_read_back_and_rtp_is_not_one() {
        assert_eq!(super::read_hello(&super::hello(77)), Some(77));
        assert_eq!(super::read_hello(&[0x80, 0xe0, 0, 1, 0, 0, 0, 0]), None);
    }
}
