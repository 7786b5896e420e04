//! The proof that the prison network is never exposed: the real gateway in a DMZ between a
//! prison and a hospital network, each behind the firewall rules of docs/deployment.md, with
//! WebRTC clients on both sides and packet captures on both links.
//!
//! - A consultation works through the firewalls, over UDP and over TCP 443 alone, with every
//!   payload intact.
//! - Neither side's capture, nor the signalling its client received, holds any address of the
//!   other side, as text or as raw bytes.
//! - Every packet from the DMZ into the prison belongs to a flow the prison side opened, and the
//!   prison's inbound drop counter stays at zero.
//! - Candidates naming other prison hosts draw no packet towards them.
//! - A hospital client cannot get anything into the prison through the gateway.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::runtime::Runtime;

use crate::capture::{Capture, Packets};
use crate::client::{JoinOptions, Peer};
use crate::media::assert_received;
use crate::netns::{
    CONSULTANT, GATEWAY_HOSPITAL_SIDE, GATEWAY_PRISON_SIDE, HOSPITAL_ADDRESSES, MEDIA_PORT, Networks,
    OTHER_PRISON_HOST, PRISON_ADDRESSES, PRISON_HOSTS, PrisonEgress, ROOM, gateway_for_hospital, gateway_for_prison,
};
use crate::support::Gateway;

/// A room that lists other prison hosts as its own candidates, over UDP and TCP, as a
/// tampered kiosk could: the gateway must never send to them.
const ROOM_HOSTILE_CANDIDATES: &[&str] = &[
    "candidate:9001 1 udp 2130706431 10.10.0.99 22 typ host",
    "candidate:9002 1 tcp 1518280447 10.10.0.99 22 typ host tcptype passive",
    "candidate:9003 1 udp 2130706431 10.10.0.1 9090 typ host",
];

/// A consultant that claims prison addresses as its candidates, hoping the gateway sends there.
const CONSULTANT_HOSTILE_CANDIDATES: &[&str] = &[
    "candidate:9101 1 udp 2130706431 10.10.0.2 5000 typ host",
    "candidate:9102 1 udp 2130706431 10.10.0.99 22 typ host",
    "candidate:9103 1 tcp 1518280447 10.10.0.99 22 typ host tcptype passive",
];

#[test]
fn a_consultation_through_the_firewalls_exposes_nothing_of_the_prison() {
    consultation_through(PrisonEgress::HttpsAndMedia);
}

#[test]
fn with_only_tcp_443_out_of_the_prison_the_consultation_still_works() {
    consultation_through(PrisonEgress::HttpsOnly);
}

/// A full consultation between a room in the prison and a consultant in the hospital, the
/// prison letting out what `egress` says, and every check on what crossed.
fn consultation_through(egress: PrisonEgress) {
    let Some(networks) = Networks::create(egress) else { return };
    let dir = tempfile::tempdir().unwrap();
    let (gw, kiosk, link) = networks.start_gateway(dir.path());
    let gw = Arc::new(gw);
    let prison_capture = Capture::start(&networks.prison, "eth0", &dir.path().join("prison.pcap"));
    let hospital_capture = Capture::start(&networks.hospital, "eth0", &dir.path().join("hospital.pcap"));
    let prison = Networks::runtime(&networks.prison);
    let hospital = Networks::runtime(&networks.hospital);
    let tcp_only = egress == PrisonEgress::HttpsOnly;

    let main = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (room, consultant) = main.block_on(async {
        let options = JoinOptions {
            gateway: Some(gateway_for_prison()),
            tcp_only,
            extra_candidates: ROOM_HOSTILE_CANDIDATES,
            ..JoinOptions::default()
        };
        let room = join_from(&prison, &gw, ROOM.into(), json!({ "device": kiosk }), 1, options).await;
        room.expect("waiting").await;
        let consultant = hostile_consultant_joins(&hospital, &gw, link).await;
        let room_id = room.joined["participant_id"].as_str().unwrap().to_owned();
        consultant.send(json!({ "type": "admit", "participant_id": room_id }));
        room.expect("admitted").await;
        room.wait_connected().await;
        consultant.wait_connected().await;
        // Renegotiation (each side gets the other's tracks) settles before publishing.
        tokio::time::sleep(Duration::from_millis(500)).await;

        let (r, c) = (room.clone(), consultant.clone());
        let room_sent = prison.spawn(async move { r.publish(1, Duration::from_secs(3)).await });
        let consultant_sent = hospital.spawn(async move { c.publish(1, Duration::from_secs(3)).await });
        let (room_sent, consultant_sent) = (room_sent.await.unwrap(), consultant_sent.await.unwrap());
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_received(&room, &consultant, consultant_sent);
        assert_received(&consultant, &room, room_sent);
        (room, consultant)
    });

    // The prison cannot reach the hospital at all, not even through the gateway's host.
    let reached = Networks::within(&networks.prison, || {
        let hospital = SocketAddr::V4(SocketAddrV4::new(CONSULTANT, 443));
        let tcp = TcpStream::connect_timeout(&hospital, Duration::from_secs(1)).is_ok();
        let udp = UdpSocket::bind("0.0.0.0:0").unwrap().send_to(b"hello", hospital).is_ok();
        tcp || udp
    });
    assert!(!reached, "the prison has a route to the hospital");

    // The clients' signalling, as each received it, written out as a client would log it.
    let room_signalling = signalling_log(&room, &dir.path().join("room-signalling.jsonl"));
    let consultant_signalling = signalling_log(&consultant, &dir.path().join("consultant-signalling.jsonl"));
    main.block_on(async {
        room.close().await;
        consultant.close().await;
    });
    prison.shutdown_background();
    hospital.shutdown_background();
    let prison_packets = prison_capture.finish();
    let hospital_packets = hospital_capture.finish();

    if tcp_only {
        let udp = prison_packets.ipv4.iter().filter(|p| p.flow.proto == crate::capture::UDP).count();
        assert_eq!(udp, 0, "UDP crossed the prison link although only TCP 443 is let out");
        assert!(room_signalling.contains("tcptype passive"), "the room was offered no ICE-TCP candidate");
    }
    assert_no_address_leaks(&prison_packets, &hospital_packets, &room_signalling, &consultant_signalling);
    assert_nothing_dialled_into_the_prison(&networks, &prison_packets);
    assert_never_sent_to(&prison_packets, OTHER_PRISON_HOST);
    // Nor did the gateway's log name either client.
    let log = gw.log.lock().unwrap().join("\n");
    assert!(
        !log.contains(&ROOM.to_string()) && !log.contains(&CONSULTANT.to_string()),
        "a client's address was logged"
    );
}

#[test]
fn a_hospital_client_cannot_reach_the_prison_through_the_gateway() {
    let Some(networks) = Networks::create(PrisonEgress::HttpsAndMedia) else { return };
    let dir = tempfile::tempdir().unwrap();
    let (gw, _kiosk, link) = networks.start_gateway(dir.path());
    let gw = Arc::new(gw);
    let prison_capture = Capture::start(&networks.prison, "eth0", &dir.path().join("prison.pcap"));

    // Relay requests of every kind a relay would understand, and some it would not, naming
    // prison hosts as the peer: to the media port, over ICE-TCP on 443, and over HTTPS.
    let ca = gw.ca_path();
    let answers = Networks::within(&networks.hospital, || {
        let mut answers = Vec::new();
        let media = SocketAddr::V4(SocketAddrV4::new(GATEWAY_HOSPITAL_SIDE, MEDIA_PORT));
        let udp = UdpSocket::bind(SocketAddr::V4(SocketAddrV4::new(CONSULTANT, 0))).unwrap();
        udp.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        for datagram in relay_requests() {
            udp.send_to(&datagram, media).unwrap();
            let mut reply = [0u8; 1500];
            if let Ok((n, _)) = udp.recv_from(&mut reply) {
                answers.push(format!("UDP answer of {n} bytes"));
            }
        }
        let mut tcp = TcpStream::connect(gateway_for_hospital()).unwrap();
        tcp.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        for datagram in relay_requests() {
            let mut frame = u16::try_from(datagram.len()).unwrap().to_be_bytes().to_vec();
            frame.extend(datagram);
            let _ = tcp.write_all(&frame);
        }
        let mut reply = [0u8; 1500];
        if let Ok(n @ 1..) = tcp.read(&mut reply) {
            answers.push(format!("ICE-TCP answer of {n} bytes"));
        }
        // As a forward proxy would be asked. A request in absolute form is served as the
        // gateway's own path (the gateway fetches nothing); a tunnel is refused.
        let gateway = gateway_for_hospital();
        for head in [
            "CONNECT 10.10.0.99:22 HTTP/1.1\r\n",
            "GET http://10.10.0.2/ HTTP/1.1\r\n",
            "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Forwarded-For: 10.10.0.2\r\n",
        ] {
            let (response, _) = crate::support::https_request(gateway, &ca, head, &rustls::version::TLS13);
            answers.push(format!("{head:?} answered {}", response.status));
            if head.starts_with("CONNECT") {
                assert!(!(200..300).contains(&response.status), "a tunnel was opened: {}", response.status);
            }
        }
        answers
    });

    // A real consultant who claims prison addresses as its own candidates, connected to the
    // media core for a while.
    let hospital = Networks::runtime(&networks.hospital);
    let main = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    main.block_on(async {
        let consultant = hostile_consultant_joins(&hospital, &gw, link).await;
        consultant.wait_connected().await;
        let c = consultant.clone();
        hospital.spawn(async move { c.publish(1, Duration::from_secs(2)).await }).await.unwrap();
        consultant.close().await;
    });
    hospital.shutdown_background();

    assert!(answers.iter().all(|a| a.contains("answered")), "relay requests were answered: {answers:?}");
    let prison_packets = prison_capture.finish();
    let into_prison: Vec<_> = prison_packets.ipv4.iter().filter(|p| !PRISON_HOSTS.contains(&p.flow.src)).collect();
    assert!(into_prison.is_empty(), "the gateway sent into the prison ({answers:?}): {into_prison:?}");
    assert_eq!(Networks::counter(&networks.prison, "perimeter", "inbound_refused"), 0);
    assert_eq!(Networks::counter(&networks.dmz, "dmz", "forward_refused"), 0);
}

/// Joins on `network`'s runtime, so that the peer's sockets live in that network.
async fn join_from(
    network: &Runtime,
    gw: &Arc<Gateway>,
    ip: IpAddr,
    credential: Value,
    id: u32,
    options: JoinOptions,
) -> Arc<Peer> {
    let gw = gw.clone();
    network.spawn(async move { Peer::join_with(&gw, ip, credential, id, options).await }).await.unwrap()
}

/// A consultant in the hospital that claims prison addresses as its candidates joins with `link`.
async fn hostile_consultant_joins(hospital: &Runtime, gw: &Arc<Gateway>, link: String) -> Arc<Peer> {
    let options = JoinOptions {
        gateway: Some(gateway_for_hospital()),
        extra_candidates: CONSULTANT_HOSTILE_CANDIDATES,
        ..JoinOptions::default()
    };
    join_from(hospital, gw, CONSULTANT.into(), json!({ "link": link }), 2, options).await
}

/// Writes every signalling message `peer` received to `path`, one per line, and returns the
/// file's text as read back.
fn signalling_log(peer: &Peer, path: &std::path::Path) -> String {
    let messages = peer.from_gateway.lock().unwrap().join("\n");
    std::fs::write(path, &messages).unwrap();
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains("a=candidate"), "no SDP reached the client");
    text
}

fn assert_no_address_leaks(prison: &Packets, hospital: &Packets, room_signalling: &str, consultant_signalling: &str) {
    assert!(!prison.ipv4.is_empty() && !hospital.ipv4.is_empty(), "a capture is empty");
    for addr in PRISON_ADDRESSES {
        assert!(!hospital.mentions(addr), "the hospital's capture holds the prison address {addr}");
        assert!(!consultant_signalling.contains(&addr.to_string()), "the consultant was told {addr}");
    }
    for addr in HOSPITAL_ADDRESSES {
        assert!(!prison.mentions(addr), "the prison's capture holds the hospital address {addr}");
        assert!(!room_signalling.contains(&addr.to_string()), "the room was told {addr}");
    }
}

/// Every packet from the DMZ into the prison answers a flow the prison side opened, and the
/// prison's perimeter refused nothing inbound (so nothing else was even tried).
fn assert_nothing_dialled_into_the_prison(networks: &Networks, prison: &Packets) {
    let outside = [GATEWAY_PRISON_SIDE, GATEWAY_HOSPITAL_SIDE, CONSULTANT];
    let unsolicited = prison.unsolicited(&outside, &PRISON_HOSTS);
    assert!(unsolicited.is_empty(), "packets into the prison that it did not ask for: {unsolicited:?}");
    assert_eq!(
        Networks::counter(&networks.prison, "perimeter", "inbound_refused"),
        0,
        "the perimeter refused inbound packets"
    );
    assert_eq!(Networks::counter(&networks.dmz, "dmz", "forward_refused"), 0);
}

fn assert_never_sent_to(prison: &Packets, addr: Ipv4Addr) {
    let sent: Vec<_> = prison.ipv4.iter().filter(|p| p.flow.dst == addr).collect();
    assert!(sent.is_empty(), "packets went to {addr}: {sent:?}");
}

/// STUN and TURN requests (RFC 8489, RFC 8656) that ask for a relay to prison hosts, and a
/// datagram that is neither.
fn relay_requests() -> Vec<Vec<u8>> {
    let room = (ROOM, 5000);
    let other = (OTHER_PRISON_HOST, 22);
    vec![
        stun(0x0001, &[(0x0006, b"gatehouse:guess".to_vec())]),
        // Allocate, asking for a UDP relay.
        stun(0x0003, &[(0x0019, vec![17, 0, 0, 0])]),
        // CreatePermission and ChannelBind for prison peers.
        stun(0x0008, &[(0x0012, xor_peer_address(room))]),
        stun(0x0009, &[(0x000c, vec![0x40, 0x00, 0, 0]), (0x0012, xor_peer_address(other))]),
        // A Send indication carrying data for a prison host, and ChannelData on the channel.
        stun(0x0016, &[(0x0012, xor_peer_address(other)), (0x0013, b"SSH-2.0-relay\r\n".to_vec())]),
        [&[0x40, 0x00, 0x00, 0x0f][..], b"SSH-2.0-relay\r\n", &[0]].concat(),
        format!("please forward to {OTHER_PRISON_HOST}:22").into_bytes(),
    ]
}

/// A STUN message with a random-enough transaction id and the given attributes.
fn stun(message_type: u16, attributes: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (kind, value) in attributes {
        body.extend(kind.to_be_bytes());
        body.extend(u16::try_from(value.len()).unwrap().to_be_bytes());
        body.extend(value);
        body.resize(body.len().div_ceil(4) * 4, 0);
    }
    let mut message = message_type.to_be_bytes().to_vec();
    message.extend(u16::try_from(body.len()).unwrap().to_be_bytes());
    message.extend([0x21, 0x12, 0xa4, 0x42]);
    message.extend(*b"relayattempt");
    message.extend(body);
    message
}

/// XOR-PEER-ADDRESS (RFC 8656 §18.3) for an IPv4 peer.
fn xor_peer_address((ip, port): (Ipv4Addr, u16)) -> Vec<u8> {
    let cookie = [0x21, 0x12, 0xa4, 0x42];
    let port = port ^ 0x2112;
    let mut value = vec![0, 0x01];
    value.extend(port.to_be_bytes());
    value.extend(ip.octets().iter().zip(cookie).map(|(a, b)| a ^ b));
    value
}
