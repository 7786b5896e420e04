//! Settings of the media core, and the addresses it advertises as ICE candidates.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::ice_tcp::IceTcpConnections;

/// How the media core binds and what it tells clients.
#[derive(Debug)]
pub struct SfuConfig {
    /// The one UDP socket every participant's media uses. Port 0 picks a free port.
    pub udp_bind: SocketAddr,
    /// Public addresses of a 1:1 NAT in front of the gateway. When non-empty, candidates carry
    /// these addresses with the bound port instead of the bound address (UDP and TCP alike).
    pub public_ips: Vec<IpAddr>,
    /// Where ICE-TCP connections (passive, RFC 4571 framing) come from, for networks that
    /// block UDP. Unless it is off, every answer also offers a passive TCP host candidate,
    /// which clients rank below the UDP one.
    pub ice_tcp: IceTcp,
}

/// Where the media core gets its ICE-TCP connections.
#[derive(Debug)]
pub enum IceTcp {
    /// Nowhere: UDP only.
    Off,
    /// A listener of its own, bound to this address. Port 0 picks a free port.
    OwnPort(SocketAddr),
    /// Another listener shares its port and hands over, through an
    /// [`IceTcpIntake`](super::IceTcpIntake), the connections whose first bytes open ICE-TCP.
    /// `port_of` is that listener's bound address, advertised like a bound address of our own.
    Shared { port_of: SocketAddr, connections: IceTcpConnections },
}

impl SfuConfig {
    /// A configuration that advertises the bound address itself (no NAT), UDP only.
    pub fn new(udp_bind: SocketAddr) -> Self {
        SfuConfig { udp_bind, public_ips: Vec::new(), ice_tcp: IceTcp::Off }
    }
}

/// The gateway's own candidate addresses, per transport; the only addresses in our SDP.
#[derive(Debug, Clone, Default)]
pub(crate) struct Advertised {
    pub(crate) udp: Vec<SocketAddr>,
    /// Empty when ICE-TCP is off.
    pub(crate) tcp: Vec<SocketAddr>,
}

/// The addresses to put in host candidates for a socket bound to `bound`.
///
/// With a 1:1 NAT the public addresses are advertised with the bound port (the NAT keeps
/// ports). Without one, the bound address is advertised; an unspecified bind (`0.0.0.0` or
/// `::`) has no address a client could reach, so it falls back to `127.0.0.1`, which is only
/// useful for tests on one machine. Production sets `public_ips` or binds a concrete address.
pub(crate) fn advertised_addrs(bound: SocketAddr, public_ips: &[IpAddr]) -> Vec<SocketAddr> {
    if !public_ips.is_empty() {
        return public_ips.iter().map(|ip| SocketAddr::new(*ip, bound.port())).collect();
    }
    if bound.ip().is_unspecified() {
        return vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), bound.port())];
    }
    vec![bound]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(bound: &str, public: &[&str], expected: &[&str]) {
        let bound: SocketAddr = bound.parse().unwrap();
        let public: Vec<IpAddr> = public.iter().map(|p| p.parse().unwrap()).collect();
        let expected: Vec<SocketAddr> = expected.iter().map(|e| e.parse().unwrap()).collect();
        assert_eq!(advertised_addrs(bound, &public), expected);
    }

    #[test]
    fn concrete_bind_is_advertised_as_is() {
        check("10.0.0.5:4000", &[], &["10.0.0.5:4000"]);
    }

    #[test]
    fn unspecified_bind_falls_back_to_loopback() {
        check("0.0.0.0:4000", &[], &["127.0.0.1:4000"]);
    }

    #[test]
    fn public_ips_replace_the_bound_address_and_keep_the_port() {
        check("10.0.0.5:4000", &["203.0.113.7", "2001:db8::7"], &["203.0.113.7:4000", "[2001:db8::7]:4000"]);
    }
}
