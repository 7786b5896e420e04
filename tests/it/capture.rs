//! Packet captures with tcpdump inside a network namespace, and the little of the pcap format
//! (Ethernet, IPv4, TCP, UDP, ICMP) that the checks on them need.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// tcpdump writing every frame on one interface to a file, until [`Capture::finish`].
pub struct Capture {
    child: Child,
    path: PathBuf,
}

impl Capture {
    /// Starts capturing on `iface` in namespace `ns`; returns once tcpdump is listening.
    pub fn start(ns: &str, iface: &str, path: &Path) -> Capture {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "tcpdump", "-i", iface, "-n", "-s", "0", "-U", "-w"])
            .arg(path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tcpdump");
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        while stderr.read_line(&mut line).unwrap_or(0) > 0 && !line.contains("listening on") {
            line.clear();
        }
        assert!(line.contains("listening on"), "tcpdump did not start in {ns}");
        // Keep draining, so that a chatty tcpdump never blocks on a full pipe.
        std::thread::spawn(move || for _ in stderr.lines() {});
        Capture { child, path: path.to_owned() }
    }

    /// Stops tcpdump (it flushes on SIGINT) and reads what it captured.
    pub fn finish(mut self) -> Packets {
        // Frames still in flight on the veth reach tcpdump within this.
        std::thread::sleep(Duration::from_millis(300));
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let _ = self.child.wait();
        Packets::parse(&std::fs::read(&self.path).unwrap())
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One IPv4 packet's addressing: enough to name its flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    pub proto: u8,
    pub src: Ipv4Addr,
    pub src_port: u16,
    pub dst: Ipv4Addr,
    pub dst_port: u16,
}

impl Flow {
    pub fn reversed(self) -> Flow {
        Flow { proto: self.proto, src: self.dst, src_port: self.dst_port, dst: self.src, dst_port: self.src_port }
    }
}

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;

/// A captured IPv4 packet.
#[derive(Debug, Clone)]
pub struct Packet {
    pub flow: Flow,
    /// For an ICMP error, the flow of the packet it reports on (from the quoted header).
    pub quoted: Option<Flow>,
}

/// Everything one capture holds.
#[derive(Debug, Default)]
pub struct Packets {
    /// Every captured frame's bytes, back to back: what the leak checks search.
    pub bytes: Vec<u8>,
    pub ipv4: Vec<Packet>,
}

impl Packets {
    fn parse(file: &[u8]) -> Packets {
        assert!(file.len() >= 24, "not a pcap file");
        let little = match file[..4] {
            [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
            [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
            _ => panic!("not a pcap file"),
        };
        let u32_at = |b: &[u8], at: usize| {
            let word = [b[at], b[at + 1], b[at + 2], b[at + 3]];
            if little { u32::from_le_bytes(word) } else { u32::from_be_bytes(word) }
        };
        assert_eq!(u32_at(file, 20), 1, "tcpdump should capture Ethernet frames on a veth");
        let mut packets = Packets::default();
        let mut at = 24;
        while at + 16 <= file.len() {
            let len = u32_at(file, at + 8) as usize;
            let frame = &file[at + 16..(at + 16 + len).min(file.len())];
            at += 16 + len;
            packets.bytes.extend_from_slice(frame);
            if frame.len() > 14
                && frame[12..14] == [0x08, 0x00]
                && let Some(packet) = parse_ipv4(&frame[14..])
            {
                packets.ipv4.push(packet);
            }
        }
        packets
    }

    /// Whether any frame mentions `addr`, as text or as its four bytes.
    pub fn mentions(&self, addr: Ipv4Addr) -> bool {
        let text = addr.to_string();
        contains(&self.bytes, text.as_bytes()) || contains(&self.bytes, &addr.octets())
    }

    /// Packets from `from` (any of those addresses) to `to` that do not belong to a flow that
    /// `to`'s side opened: the first packet of a flow names who opened it.
    pub fn unsolicited(&self, from: &[Ipv4Addr], to: &[Ipv4Addr]) -> Vec<Packet> {
        let mut opened_by_to = HashSet::new();
        let mut seen = HashSet::new();
        let mut unsolicited = Vec::new();
        for packet in &self.ipv4 {
            let flow = packet.flow;
            let first = !seen.contains(&flow) && !seen.contains(&flow.reversed());
            seen.insert(flow);
            if to.contains(&flow.src) && from.contains(&flow.dst) && first {
                opened_by_to.insert(flow);
            }
            if from.contains(&flow.src) && to.contains(&flow.dst) {
                // An ICMP error is related to the flow it quotes.
                let belongs = match packet.quoted {
                    Some(quoted) => opened_by_to.contains(&quoted),
                    None => opened_by_to.contains(&flow.reversed()),
                };
                if !belongs {
                    unsolicited.push(packet.clone());
                }
            }
        }
        unsolicited
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn parse_ipv4(ip: &[u8]) -> Option<Packet> {
    let flow = flow_of(ip)?;
    let header = usize::from(ip[0] & 0x0f) * 4;
    let quoted = match (flow.proto, ip.get(header)) {
        // Destination unreachable, time exceeded, parameter problem: the quoted header follows.
        (ICMP, Some(3 | 11 | 12)) => ip.get(header + 8..).and_then(flow_of),
        _ => None,
    };
    Some(Packet { flow, quoted })
}

fn flow_of(ip: &[u8]) -> Option<Flow> {
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        return None;
    }
    let header = usize::from(ip[0] & 0x0f) * 4;
    let proto = ip[9];
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let (src_port, dst_port) = match (proto, ip.get(header..header + 4)) {
        (TCP | UDP, Some(ports)) => {
            (u16::from_be_bytes([ports[0], ports[1]]), u16::from_be_bytes([ports[2], ports[3]]))
        }
        _ => (0, 0),
    };
    Some(Flow { proto, src, src_port, dst, dst_port })
}
