//! Tests of the media loop through its handle, with str0m itself playing the clients' offers
//! (no network traffic is needed to reach the code under test).

use std::time::{Duration, Instant};

use str0m::Rtc;
use str0m::media::{Direction, MediaKind};

use super::*;

/// An offer as a browser would send it: audio, camera and screen share.
fn client_offer() -> String {
    let mut rtc = Rtc::builder().build(Instant::now());
    let mut change = rtc.sdp_api();
    change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    change.add_media(MediaKind::Video, Direction::SendRecv, None, None, None);
    change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    let (offer, _pending) = change.apply().unwrap();
    offer.to_sdp_string()
}

async fn start() -> SfuHandle {
    let (sfu, _task) = Sfu::start(SfuConfig::new("127.0.0.1:0".parse().unwrap())).await.unwrap();
    sfu
}

async fn next_event(events: &mut mpsc::UnboundedReceiver<SfuEvent>) -> SfuEvent {
    tokio::time::timeout(Duration::from_secs(5), events.recv()).await.unwrap().unwrap()
}

#[tokio::test]
async fn a_panic_ends_only_that_participant() {
    let sfu = start().await;
    let mut events = sfu.events();
    let (one, two) = (ParticipantKey(1), ParticipantKey(2));
    sfu.add_participant(SessionKey(1), one, client_offer()).await.unwrap();
    sfu.add_participant(SessionKey(1), two, client_offer()).await.unwrap();
    sfu.set_forwarding(one, true).await.unwrap();
    sfu.set_forwarding(two, true).await.unwrap();

    sfu.inject_panic(one);
    assert_eq!(next_event(&mut events).await, SfuEvent::Failed { participant: one, reason: FailureReason::Panicked });

    // The failed participant is gone; the other is still served, and newcomers are too.
    assert!(matches!(sfu.set_forwarding(one, false).await, Err(SfuError::UnknownParticipant(_))));
    sfu.set_forwarding(two, false).await.unwrap();
    let answer = sfu.add_participant(SessionKey(1), ParticipantKey(3), client_offer()).await.unwrap();
    assert!(answer.contains("a=ice-lite"));
    sfu.remove_participant(two).await.unwrap();
}

#[tokio::test]
async fn answers_carry_only_the_gateways_candidates_and_support_the_three_codecs() {
    let sfu = start().await;
    let answer = sfu.add_participant(SessionKey(1), ParticipantKey(1), client_offer()).await.unwrap();
    let port = sfu.local_addr().port();
    let candidates: Vec<&str> = answer.lines().filter(|l| l.starts_with("a=candidate")).collect();
    assert!(!candidates.is_empty());
    assert!(candidates.iter().all(|c| c.contains(&format!(" 127.0.0.1 {port} typ host"))), "{candidates:?}");
    for codec in ["opus/48000", "VP8/90000", "H264/90000"] {
        assert!(answer.contains(codec), "{codec} missing from the answer");
    }
    // Loss repair and bandwidth estimation are negotiated.
    assert!(answer.contains("transport-cc") && answer.contains("nack") && answer.contains("rtx/90000"));
}

#[tokio::test]
async fn public_ips_are_advertised_instead_of_the_bound_address() {
    let config = SfuConfig {
        udp_bind: "127.0.0.1:0".parse().unwrap(),
        public_ips: vec!["203.0.113.7".parse().unwrap()],
        ice_tcp: IceTcp::Off,
    };
    let (sfu, _task) = Sfu::start(config).await.unwrap();
    let answer = sfu.add_participant(SessionKey(1), ParticipantKey(1), client_offer()).await.unwrap();
    let port = sfu.local_addr().port();
    assert!(answer.contains(&format!(" 203.0.113.7 {port} typ host")));
    assert!(!answer.lines().any(|l| l.starts_with("a=candidate") && l.contains("127.0.0.1")));
}

#[tokio::test]
async fn commands_name_their_mistakes() {
    let sfu = start().await;
    let key = ParticipantKey(7);
    sfu.add_participant(SessionKey(1), key, client_offer()).await.unwrap();
    let again = sfu.add_participant(SessionKey(2), key, client_offer()).await;
    assert!(matches!(again, Err(SfuError::DuplicateParticipant(k)) if k == key));
    let unsolicited = sfu.answer(key, client_offer().replace("a=setup:actpass", "a=setup:active")).await;
    assert!(matches!(unsolicited, Err(SfuError::BadSdp(_)) | Err(SfuError::NoPendingOffer(_))), "{unsolicited:?}");
    assert!(matches!(sfu.remove_participant(ParticipantKey(8)).await, Err(SfuError::UnknownParticipant(_))));
    sfu.remove_participant(key).await.unwrap();
}

#[tokio::test]
async fn the_loop_stops_when_every_handle_is_gone() {
    let (sfu, task) = Sfu::start(SfuConfig::new("127.0.0.1:0".parse().unwrap())).await.unwrap();
    let events = sfu.events();
    drop(sfu);
    tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
    drop(events);
}

#[tokio::test]
async fn the_gateway_never_sends_first_to_an_address_a_client_supplied() {
    // A client that lists a candidate but never sends: ICE-lite must leave that address alone.
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut rtc = Rtc::builder().build(Instant::now());
    rtc.add_local_candidate(str0m::Candidate::host(silent.local_addr().unwrap(), "udp").unwrap()).unwrap();
    let mut change = rtc.sdp_api();
    change.add_media(MediaKind::Video, Direction::SendRecv, None, None, None);
    let (offer, _pending) = change.apply().unwrap();
    let offer = offer.to_sdp_string();
    assert!(offer.contains(&silent.local_addr().unwrap().port().to_string()));

    let sfu = start().await;
    sfu.add_participant(SessionKey(1), ParticipantKey(1), offer).await.unwrap();
    sfu.set_forwarding(ParticipantKey(1), true).await.unwrap();
    let mut buf = [0u8; 1500];
    let heard = tokio::time::timeout(Duration::from_millis(700), silent.recv_from(&mut buf)).await;
    assert!(heard.is_err(), "the gateway sent a packet to a client-supplied address");
}

fn tcp_config() -> SfuConfig {
    SfuConfig {
        ice_tcp: IceTcp::OwnPort("127.0.0.1:0".parse().unwrap()),
        ..SfuConfig::new("127.0.0.1:0".parse().unwrap())
    }
}

#[tokio::test]
async fn ice_tcp_adds_a_passive_candidate_on_the_advertised_addresses() {
    let config = SfuConfig { public_ips: vec!["203.0.113.7".parse().unwrap()], ..tcp_config() };
    let (sfu, _task) = Sfu::start(config).await.unwrap();
    let answer = sfu.add_participant(SessionKey(1), ParticipantKey(1), client_offer()).await.unwrap();
    let (udp_port, tcp_port) = (sfu.local_addr().port(), sfu.local_tcp_addr().unwrap().port());
    let candidates: Vec<&str> = answer.lines().filter(|l| l.starts_with("a=candidate")).collect();
    assert_eq!(candidates.len(), 2, "{candidates:?}");
    let udp = candidates.iter().find(|c| c.contains(" udp ")).unwrap();
    assert!(udp.contains(&format!(" 203.0.113.7 {udp_port} typ host ")), "{udp}");
    let tcp = candidates.iter().find(|c| c.contains(" tcp ")).unwrap();
    assert!(tcp.contains(&format!(" 203.0.113.7 {tcp_port} typ host tcptype passive ")), "{tcp}");
    assert!(!answer.contains("127.0.0.1"));

    // Without a TCP listener, only the UDP candidate is offered.
    let sfu = start().await;
    assert_eq!(sfu.local_tcp_addr(), None);
    let answer = sfu.add_participant(SessionKey(1), ParticipantKey(1), client_offer()).await.unwrap();
    assert!(!answer.contains(" tcp ") && !answer.contains("tcptype"));
}

#[tokio::test]
async fn a_shared_port_is_advertised_as_the_tcp_candidate() {
    let (_intake, connections) = IceTcpIntake::new();
    let shared: std::net::SocketAddr = "10.0.0.5:443".parse().unwrap();
    let config = SfuConfig {
        public_ips: vec!["203.0.113.7".parse().unwrap()],
        ice_tcp: IceTcp::Shared { port_of: shared, connections },
        ..SfuConfig::new("127.0.0.1:0".parse().unwrap())
    };
    let (sfu, _task) = Sfu::start(config).await.unwrap();
    assert_eq!(sfu.local_tcp_addr(), Some(shared));
    let answer = sfu.add_participant(SessionKey(1), ParticipantKey(1), client_offer()).await.unwrap();
    let tcp: Vec<&str> = answer.lines().filter(|l| l.starts_with("a=candidate") && l.contains(" tcp ")).collect();
    assert_eq!(tcp.len(), 1, "{tcp:?}");
    assert!(tcp[0].contains(" 203.0.113.7 443 typ host tcptype passive"), "{tcp:?}");
}

#[tokio::test]
async fn the_gateway_never_opens_a_tcp_connection() {
    // A client that offers TCP candidates of every kind, each on a listener that records
    // connections, and never connects itself: the gateway must not dial any of them.
    let mut recorders = Vec::new();
    let mut rtc = Rtc::builder().build(Instant::now());
    for tcptype in [str0m::net::TcpType::Passive, str0m::net::TcpType::Active, str0m::net::TcpType::So] {
        let recorder = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = recorder.local_addr().unwrap();
        let candidate = str0m::Candidate::builder().tcp().host(addr).tcptype(tcptype).build().unwrap();
        rtc.add_local_candidate(candidate).unwrap();
        recorders.push(recorder);
    }
    let mut change = rtc.sdp_api();
    change.add_media(MediaKind::Video, Direction::SendRecv, None, None, None);
    let (offer, _pending) = change.apply().unwrap();
    let offer = offer.to_sdp_string();
    for tcptype in ["passive", "active", "so"] {
        assert!(offer.contains(&format!("tcptype {tcptype}")), "{offer}");
    }

    let (sfu, _task) = Sfu::start(tcp_config()).await.unwrap();
    sfu.add_participant(SessionKey(1), ParticipantKey(1), offer).await.unwrap();
    sfu.set_forwarding(ParticipantKey(1), true).await.unwrap();
    let any_dialled = async {
        tokio::select! {
            _ = recorders[0].accept() => {}
            _ = recorders[1].accept() => {}
            _ = recorders[2].accept() => {}
        }
    };
    let dialled = tokio::time::timeout(Duration::from_millis(1500), any_dialled).await;
    assert!(dialled.is_err(), "the gateway opened a TCP connection to a client-supplied address");
}

#[tokio::test]
async fn a_further_offer_renegotiates_in_place_only_from_the_same_peer_connection() {
    let sfu = start().await;
    let key = ParticipantKey(1);
    let mut client = Rtc::builder().build(Instant::now());
    let mut change = client.sdp_api();
    change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    let (offer, pending) = change.apply().unwrap();
    let answer = sfu.add_participant(SessionKey(1), key, offer.to_sdp_string()).await.unwrap();
    client.sdp_api().accept_answer(pending, str0m::change::SdpAnswer::from_sdp_string(&answer).unwrap()).unwrap();

    // The same client adds a camera: answered in place, with the new m-line accepted.
    let mut change = client.sdp_api();
    change.add_media(MediaKind::Video, Direction::SendRecv, None, None, None);
    let (offer, _pending) = change.apply().unwrap();
    let answer = sfu.renegotiate(key, offer.to_sdp_string()).await.unwrap();
    assert_eq!(answer.lines().filter(|l| l.starts_with("m=")).count(), 2, "{answer}");

    // A different peer connection (another DTLS certificate) cannot renegotiate this one.
    assert!(matches!(sfu.renegotiate(key, client_offer()).await, Err(SfuError::NewPeerConnection(k)) if k == key));
    assert!(matches!(sfu.renegotiate(ParticipantKey(9), client_offer()).await, Err(SfuError::UnknownParticipant(_))));
}
