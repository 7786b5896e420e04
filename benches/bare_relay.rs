//! The limit: a bare, single-threaded UDP relay with no ICE, DTLS, SRTP or WebRTC, forwarding
//! each datagram to the other member of its pair with one plain `recv_from` and one
//! `send_to`. Measured with `gatehouse-load --relay ADDR`, which sends the same payloads at
//! the same rates as the WebRTC runs, it gives the machine's packet-forwarding ceiling.
//!
//! `cargo bench --bench bare_relay -- --listen 127.0.0.1:9500 [--seconds 120]` serves until
//! the time is up (default 10 minutes) or it is killed; `scripts/bench` runs it.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use gatehouse_probe::udp::read_hello;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1));
    let Some(listen) = value("--listen") else {
        println!("bare_relay: pass --listen ADDR to serve; scripts/bench drives it with gatehouse-load --relay");
        return;
    };
    let listen: SocketAddr = listen.parse().expect("--listen takes an address such as 127.0.0.1:9500");
    let seconds: u64 = value("--seconds").map_or(600, |s| s.parse().expect("--seconds takes a whole number"));
    let socket = UdpSocket::bind(listen).expect("bind the relay socket");
    // Wake now and then so the time limit holds even when nothing arrives.
    socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    println!("bare_relay listening on {}", socket.local_addr().unwrap());
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut pairs: HashMap<u32, Vec<SocketAddr>> = HashMap::new();
    let mut partner: HashMap<SocketAddr, SocketAddr> = HashMap::new();
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        let Ok((len, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        if let Some(&to) = partner.get(&from) {
            let _ = socket.send_to(&buf[..len], to);
        } else if let Some(pair) = read_hello(&buf[..len]) {
            let members = pairs.entry(pair).or_default();
            if !members.contains(&from) && members.len() < 2 {
                members.push(from);
            }
            if let [a, b] = members[..] {
                partner.insert(a, b);
                partner.insert(b, a);
            }
        }
    }
}
