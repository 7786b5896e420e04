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
///
/// An unspecified address (`0.0.0.0` or `::`: the socket listens on every address of the
/// gateway) stands for the gateway address that each participant's signalling reached; see
/// [`Advertised::for_participant`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Advertised {
    pub(crate) udp: Vec<SocketAddr>,
    /// Empty when ICE-TCP is off.
    pub(crate) tcp: Vec<SocketAddr>,
}

impl Advertised {
    /// The candidates one participant is given, `reached` being the gateway address its
    /// signalling connection reached. On a gateway with an address towards each network (a
    /// prison side and a hospital side), each participant so learns only the address on its
    /// own side, never one that names the other network. Without a known address, loopback:
    /// only tests on one machine get there.
    pub(crate) fn for_participant(&self, reached: Option<IpAddr>) -> Advertised {
        let resolve = |addrs: &[SocketAddr]| -> Vec<SocketAddr> {
            addrs
                .iter()
                .map(|addr| match reached {
                    _ if !addr.ip().is_unspecified() => *addr,
                    // A dual-stack listener sees an IPv4 client at an IPv4-mapped address.
                    Some(ip) => SocketAddr::new(ip.to_canonical(), addr.port()),
                    None => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port()),
                })
                .collect()
        };
        Advertised { udp: resolve(&self.udp), tcp: resolve(&self.tcp) }
    }

    /// The address a participant's packets on `proto` were sent to, as its candidate names it:
    /// str0m only answers checks that arrive on one of its participant's own candidates.
    pub(crate) fn destination(&self, proto: str0m::net::Protocol, source: SocketAddr) -> Option<SocketAddr> {
        let addrs = if proto == str0m::net::Protocol::Tcp { &self.tcp } else { &self.udp };
        addrs.iter().find(|a| a.is_ipv4() == source.is_ipv4()).copied()
    }
}

/// The addresses to put in host candidates for a socket bound to `bound`.
///
/// With a 1:1 NAT the public addresses are advertised with the bound port (the NAT keeps
/// ports). Without one, the bound address is advertised, unspecified or not: an unspecified
/// one becomes, per participant, the address that participant reached.
pub(crate) fn advertised_addrs(bound: SocketAddr, public_ips: &[IpAddr]) -> Vec<SocketAddr> {
    if !public_ips.is_empty() {
        return public_ips.iter().map(|ip| SocketAddr::new(*ip, bound.port())).collect();
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
    fn an_unspecified_bind_becomes_the_address_each_participant_reached() {
        check("0.0.0.0:4000", &[], &["0.0.0.0:4000"]);
        let fixed: SocketAddr = "10.0.0.5:443".parse().unwrap();
        let advertised = Advertised { udp: vec!["0.0.0.0:4000".parse().unwrap()], tcp: vec![fixed] };
        let reached = |ip: Option<&str>| {
            let resolved = advertised.for_participant(ip.map(|ip| ip.parse().unwrap()));
            (resolved.udp[0].to_string(), resolved.tcp[0])
        };
        assert_eq!(reached(Some("10.10.0.1")), ("10.10.0.1:4000".into(), fixed));
        assert_eq!(reached(Some("10.20.0.1")), ("10.20.0.1:4000".into(), fixed));
        assert_eq!(reached(Some("::ffff:10.20.0.1")), ("10.20.0.1:4000".into(), fixed));
        assert_eq!(reached(None), ("127.0.0.1:4000".into(), fixed));
    }

    #[test]
    fn public_ips_replace_the_bound_address_and_keep_the_port() {
        check("10.0.0.5:4000", &["203.0.113.7", "2001:db8::7"], &["203.0.113.7:4000", "[2001:db8::7]:4000"]);
    }
}
