//! Three networks in Linux network namespaces that the test creates and removes: a prison
//! (a room client), a DMZ (the real gateway binary, with one address towards each side) and a
//! hospital (a consultant client), with the firewalls a prison would put up, in nftables.
//!
//! ```text
//!  prison 10.10.0.0/24            dmz                          hospital 10.20.0.0/24
//!  room 10.10.0.2 eth0 ──veth── prison0 10.10.0.1 │ gatehouse │ hosp0 10.20.0.1 ──veth── eth0 10.20.0.2
//!  (and 10.10.0.99:                forwarding off, and a forward chain that drops
//!   another prison host)
//! ```
//!
//! Clients run on a tokio runtime whose threads entered their namespace before any socket was
//! made ([`Networks::runtime`]); the gateway runs under `ip netns exec`. Creating namespaces
//! needs root: without it the harness skips with a message, unless `CI` is set, where it fails.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::support::Gateway;

pub const GATEWAY_PRISON_SIDE: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 1);
pub const ROOM: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 2);
/// Another prison host, which no one outside the prison may reach.
pub const OTHER_PRISON_HOST: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 99);
pub const GATEWAY_HOSPITAL_SIDE: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 1);
pub const CONSULTANT: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 2);
/// The prison's own hosts.
pub const PRISON_HOSTS: [Ipv4Addr; 2] = [ROOM, OTHER_PRISON_HOST];
/// Every address on the prison side, the gateway's own prison-facing one included.
pub const PRISON_ADDRESSES: [Ipv4Addr; 3] = [GATEWAY_PRISON_SIDE, ROOM, OTHER_PRISON_HOST];
/// Every address on the hospital side, the gateway's own hospital-facing one included.
pub const HOSPITAL_ADDRESSES: [Ipv4Addr; 2] = [GATEWAY_HOSPITAL_SIDE, CONSULTANT];
/// The real ports, as in production.
pub const HTTPS_PORT: u16 = 443;
pub const MEDIA_PORT: u16 = 8443;

/// Every namespace this harness makes is named `<PREFIX><pid>x<n>-<side>`, so that a later run
/// can tell its own leftovers from a concurrent run's.
const PREFIX: &str = "ghnet";

/// One set of networks at a time: each starts a gateway and two WebRTC clients, which is all
/// that two cores carry without making media timing flaky.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// What the prison lets out towards the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrisonEgress {
    /// TCP 443 and UDP to the media port.
    HttpsAndMedia,
    /// TCP 443 alone.
    HttpsOnly,
}

/// The three namespaces, removed on drop (even when a check fails).
pub struct Networks {
    pub prison: String,
    pub dmz: String,
    pub hospital: String,
    _one_at_a_time: std::sync::MutexGuard<'static, ()>,
}

impl Networks {
    /// Creates the networks and their firewalls, or returns `None` (having said why) when this
    /// machine cannot make namespaces and `CI` is not set.
    pub fn create(egress: PrisonEgress) -> Option<Networks> {
        let guard = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Err(why) = can_make_namespaces() {
            assert!(std::env::var_os("CI").is_none(), "the three-network harness cannot run, and CI is set: {why}");
            eprintln!(
                "SKIPPED: the three-network harness needs root, iproute2, nftables and tcpdump ({why}); run scripts/test as root"
            );
            return None;
        }
        remove_stale_namespaces();
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = |side: &str| format!("{PREFIX}{}x{n}-{side}", std::process::id());
        let networks =
            Networks { prison: name("prison"), dmz: name("dmz"), hospital: name("hospital"), _one_at_a_time: guard };
        networks.build(egress);
        Some(networks)
    }

    fn build(&self, egress: PrisonEgress) {
        let (p, d, h) = (self.prison.as_str(), self.dmz.as_str(), self.hospital.as_str());
        for ns in [p, d, h] {
            run(&["ip", "netns", "add", ns]);
            // IPv4 only, so that no IPv6 neighbour discovery adds traffic nobody asked for.
            for setting in ["net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"] {
                run(&["ip", "netns", "exec", ns, "sysctl", "-qw", setting]);
            }
            run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        // The DMZ routes nothing between the two sides.
        run(&["ip", "netns", "exec", d, "sysctl", "-qw", "net.ipv4.ip_forward=0"]);
        run(&["ip", "link", "add", "eth0", "netns", p, "type", "veth", "peer", "name", "prison0", "netns", d]);
        run(&["ip", "link", "add", "hosp0", "netns", d, "type", "veth", "peer", "name", "eth0", "netns", h]);
        for (ns, dev, addr) in [
            (p, "eth0", format!("{ROOM}/24")),
            (d, "prison0", format!("{GATEWAY_PRISON_SIDE}/24")),
            (d, "hosp0", format!("{GATEWAY_HOSPITAL_SIDE}/24")),
            (h, "eth0", format!("{CONSULTANT}/24")),
        ] {
            run(&["ip", "-n", ns, "addr", "add", &addr, "dev", dev]);
            run(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        // Another prison host, on the prison's side of the link (an address of the prison
        // namespace, which answers ARP for it): a packet the gateway sent it would cross the
        // prison link, and its capture, like any other.
        run(&["ip", "-n", p, "addr", "add", &format!("{OTHER_PRISON_HOST}/32"), "dev", "lo"]);
        nft(p, &prison_firewall(egress));
        nft(d, DMZ_FIREWALL);
    }

    /// A multi-threaded tokio runtime whose threads all live in namespace `ns`: every socket
    /// made on it (by `spawn`ed tasks) belongs to that network.
    pub fn runtime(ns: &str) -> tokio::runtime::Runtime {
        let path = format!("/var/run/netns/{ns}");
        std::thread::spawn(move || {
            let namespace = std::fs::File::open(&path).unwrap();
            nix::sched::setns(&namespace, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            // The worker threads start now, from this thread, and so inherit its namespace.
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
        })
        .join()
        .unwrap()
    }

    /// Runs `work` on a thread of its own inside namespace `ns`, for blocking socket calls.
    pub fn within<T: Send>(ns: &str, work: impl FnOnce() -> T + Send) -> T {
        let path = format!("/var/run/netns/{ns}");
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    let namespace = std::fs::File::open(&path).unwrap();
                    nix::sched::setns(&namespace, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                    work()
                })
                .join()
                .unwrap()
        })
    }

    /// Starts the real gateway in the DMZ on the production ports, with the demo's room,
    /// appointment and consultant link, and returns it with the room's device credential and
    /// the consultant's link token.
    pub fn start_gateway(&self, dir: &Path) -> (Gateway, String, String) {
        let https = format!("0.0.0.0:{HTTPS_PORT}");
        let media = MEDIA_PORT.to_string();
        let args = ["--demo", "--listen", &https, "--admin-listen", "127.0.0.1:9090", "--media-port", &media];
        let gw = Gateway::start_in_netns(&self.dmz, dir, &args);
        let deadline = Instant::now() + Duration::from_secs(30);
        let printed = loop {
            let printed = gw.printed.lock().unwrap().join("\n");
            if printed.contains("These passwords are shown once") {
                break printed;
            }
            assert!(Instant::now() < deadline, "the demo was not seeded:\n{printed}");
            std::thread::sleep(Duration::from_millis(50));
        };
        let after = |marker: &str| {
            let rest = printed.split(marker).nth(1).unwrap_or_else(|| panic!("no {marker} in:\n{printed}"));
            rest.split_whitespace().next().unwrap().to_owned()
        };
        (gw, after("#credential="), after("/join/"))
    }

    /// How many packets an nftables counter has counted.
    pub fn counter(ns: &str, table: &str, counter: &str) -> u64 {
        let out = output(&["ip", "netns", "exec", ns, "nft", "list", "counter", "inet", table, counter]);
        let packets = out.split("packets ").nth(1).unwrap_or_else(|| panic!("no counter {counter}: {out}"));
        packets.split_whitespace().next().unwrap().parse().unwrap()
    }
}

impl Drop for Networks {
    fn drop(&mut self) {
        for ns in [&self.prison, &self.dmz, &self.hospital] {
            remove_namespace(ns);
        }
    }
}

/// The gateway's address as each side reaches it.
pub fn gateway_for_prison() -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(GATEWAY_PRISON_SIDE, HTTPS_PORT))
}

pub fn gateway_for_hospital() -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(GATEWAY_HOSPITAL_SIDE, HTTPS_PORT))
}

/// The prison's perimeter: out, only new connections to the gateway's HTTPS port (and, if
/// allowed, datagrams to its media port); in, only packets of flows the prison side opened.
/// What either direction refuses is counted.
fn prison_firewall(egress: PrisonEgress) -> String {
    let media = match egress {
        PrisonEgress::HttpsAndMedia => format!("ip daddr {GATEWAY_PRISON_SIDE} udp dport {MEDIA_PORT} accept"),
        PrisonEgress::HttpsOnly => String::new(),
    };
    format!(
        r#"table inet perimeter {{
    counter inbound_refused {{ }}
    counter outbound_refused {{ }}
    chain inbound {{
        type filter hook input priority filter; policy drop;
        iif "lo" accept
        ct state established,related accept
        counter name "inbound_refused" drop
    }}
    chain outbound {{
        type filter hook output priority filter; policy drop;
        oif "lo" accept
        ct state established,related accept
        ip daddr {GATEWAY_PRISON_SIDE} tcp dport {HTTPS_PORT} accept
        {media}
        counter name "outbound_refused" drop
    }}
}}
"#
    )
}

/// The DMZ forwards nothing from one side to the other (forwarding is off as well).
const DMZ_FIREWALL: &str = r#"table inet dmz {
    counter forward_refused { }
    chain forward {
        type filter hook forward priority filter; policy drop;
        counter name "forward_refused" drop
    }
}
"#;

fn can_make_namespaces() -> Result<(), String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Err("not running as root".into());
    }
    for tool in ["ip", "nft", "tcpdump"] {
        let found = Command::new(tool).arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
            || Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
        if !found {
            return Err(format!("{tool} is not installed"));
        }
    }
    let probe = format!("{PREFIX}{}probe", std::process::id());
    let added = Command::new("ip").args(["netns", "add", &probe]).stderr(Stdio::null()).status();
    if !added.is_ok_and(|s| s.success()) {
        return Err("`ip netns add` failed".into());
    }
    remove_namespace(&probe);
    Ok(())
}

/// Removes namespaces left by runs of this harness whose process is gone (killed mid-run),
/// and anything still running inside them.
fn remove_stale_namespaces() {
    let list = output(&["ip", "netns", "list"]);
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(rest) = name.strip_prefix(PREFIX) else { continue };
        let pid: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if !pid.is_empty() && !Path::new(&format!("/proc/{pid}")).exists() {
            remove_namespace(name);
        }
    }
}

fn remove_namespace(ns: &str) {
    let pids = Command::new("ip").args(["netns", "pids", ns]).output().map(|o| o.stdout).unwrap_or_default();
    for pid in String::from_utf8_lossy(&pids).split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
    let _ = Command::new("ip").args(["netns", "del", ns]).stderr(Stdio::null()).status();
}

fn run(args: &[&str]) {
    output(args);
}

fn output(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Loads `ruleset` into the nftables of namespace `ns`.
pub fn nft(ns: &str, ruleset: &str) {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(ruleset.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "nft refused the ruleset: {}\n{ruleset}", String::from_utf8_lossy(&out.stderr));
}
