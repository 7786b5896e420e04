//! Rewriting SDP text the way some clients need: one that reaches the gateway only through a
//! UDP relay, and a hostile one that claims addresses of others as its own candidates.

use std::net::SocketAddr;

/// Points every UDP candidate in `sdp` at `relay` and drops the others, so a peer applying it
/// can reach the remote side only through the relay.
pub fn through_relay(sdp: &str, relay: SocketAddr) -> String {
    let (ip, port) = (relay.ip().to_string(), relay.port().to_string());
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.split_inclusive('\n') {
        if !line.starts_with("a=candidate") {
            out.push_str(line);
            continue;
        }
        // candidate:<foundation> <component> <transport> <priority> <address> <port> ...
        let mut fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 6 || !fields[2].eq_ignore_ascii_case("udp") {
            continue;
        }
        fields[4] = &ip;
        fields[5] = &port;
        out.push_str(&fields.join(" "));
        out.push_str("\r\n");
    }
    out
}

/// Adds `candidates` (`candidate:...` values) to the first media section, beside the peer's
/// own; with every section bundled, they stand for all of them.
pub fn with_candidates(sdp: &str, candidates: &[&str]) -> String {
    let mut sdp = sdp.to_owned();
    for candidate in candidates {
        sdp = sdp.replacen("a=candidate", &format!("a={candidate}\r\na=candidate"), 1);
    }
    sdp
}

/// The passive TCP candidates of `sdp`, as `candidate:...` values to trickle.
pub fn passive_tcp_candidates(sdp: &str) -> impl Iterator<Item = &str> {
    sdp.lines()
        .filter(|l| l.starts_with("a=candidate") && l.contains(" tcp ") && l.contains("tcptype passive"))
        .map(|l| l.trim_start_matches("a="))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDP: &str = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
        a=candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host\r\n\
        a=candidate:2 1 tcp 1518280447 10.0.0.1 443 typ host tcptype passive\r\n\
        a=mid:0\r\n";

    #[test]
    fn a_relay_replaces_every_udp_candidate_and_tcp_ones_go() {
        let relayed = through_relay(SDP, "127.0.0.5:7000".parse().unwrap());
        assert!(relayed.contains("a=candidate:1 1 udp 2130706431 127.0.0.5 7000 typ host\r\n"));
        assert!(!relayed.contains("10.0.0.1") && !relayed.contains(" tcp "));
        assert!(relayed.ends_with("a=mid:0\r\n"));
    }

    #[test]
    fn extra_candidates_stand_before_the_peers_own() {
        let sdp = with_candidates(SDP, &["candidate:9 1 udp 1 10.9.9.9 22 typ host"]);
        let first = sdp.lines().find(|l| l.starts_with("a=candidate")).unwrap();
        assert_eq!(first, "a=candidate:9 1 udp 1 10.9.9.9 22 typ host");
        assert_eq!(sdp.lines().filter(|l| l.starts_with("a=candidate")).count(), 3);
    }

    #[test]
    fn only_passive_tcp_candidates_are_picked() {
        let picked: Vec<&str> = passive_tcp_candidates(SDP).collect();
        assert_eq!(picked, ["candidate:2 1 tcp 1518280447 10.0.0.1 443 typ host tcptype passive"]);
    }
}
