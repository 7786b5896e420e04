//! Media through the real gateway: two independent WebRTC peers (webrtc-rs) join one
//! appointment over the signalling WebSocket with real credentials, and each receives the
//! other's payloads intact and in order, without ever learning the other's address.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::client::{JoinOptions, Kind, Peer, VideoCodec};
use crate::schedule::Desk;

const ROOM_IP: &str = "127.0.0.2";
const CLINICIAN_IP: &str = "127.0.0.3";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Checks that `peer` received `from`'s payloads: most of them, every one intact, and in order.
pub fn assert_received(peer: &Peer, from: &Peer, sent: (u32, u32)) {
    let received = peer.received();
    for (kind, sent) in [(Kind::Audio, sent.0), (Kind::Video, sent.1)] {
        let got: Vec<_> = received.iter().filter(|r| r.kind == kind && r.sender == from.id).collect();
        assert!(got.iter().all(|r| r.intact), "peer {} got a damaged {kind:?} payload", peer.id);
        assert!(got.windows(2).all(|w| w[0].seq < w[1].seq), "peer {} got {kind:?} out of order", peer.id);
        // The first packets may go before renegotiation completes; the rest must arrive.
        assert!(got.len() as u32 * 10 >= sent * 8, "peer {} got {} of {sent} {kind:?} payloads", peer.id, got.len());
    }
    assert!(received.iter().all(|r| r.sender != peer.id), "peer {} received its own media back", peer.id);
    assert_eq!(peer.undecodable(), 0, "peer {} received payloads that are not what anyone sent", peer.id);
}

/// The room joins and waits; the clinician joins and admits it (both with `options`, but only
/// the clinician shares a screen); both peer connections are up and renegotiation has settled.
async fn admitted_pair(desk: &Desk, token: &str, options: JoinOptions) -> (Arc<Peer>, Arc<Peer>) {
    admitted_pair_with(desk, token, JoinOptions { share_screen: false, ..options }, options).await
}

/// [`admitted_pair`] with each side's own options.
pub async fn admitted_pair_with(
    desk: &Desk,
    token: &str,
    room_options: JoinOptions,
    options: JoinOptions,
) -> (Arc<Peer>, Arc<Peer>) {
    let gw = &desk.gw;
    let room = Peer::join_with(gw, ROOM_IP.parse().unwrap(), json!({ "device": desk.kiosk }), 1, room_options).await;
    room.expect("waiting").await;
    let clinician = Peer::join_with(gw, CLINICIAN_IP.parse().unwrap(), json!({ "link": token }), 2, options).await;
    let room_id = room.joined["participant_id"].as_str().unwrap().to_owned();
    clinician.send(json!({ "type": "admit", "participant_id": room_id }));
    room.expect("admitted").await;
    room.wait_connected().await;
    clinician.wait_connected().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    (room, clinician)
}

/// Both publish for three seconds at once; returns what each sent.
async fn exchange(room: &Arc<Peer>, clinician: &Arc<Peer>) -> ((u32, u32), (u32, u32)) {
    let (a, b) = (room.clone(), clinician.clone());
    let sent = tokio::join!(async move { a.publish(1, Duration::from_secs(3)).await }, async move {
        b.publish(1, Duration::from_secs(3)).await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    sent
}

#[test]
fn two_webrtc_peers_exchange_intact_media_without_learning_each_others_address() {
    let desk = Desk::new();
    let appointment = desk.booked(-5, 25);
    let (token, _) = desk.link(&appointment);
    runtime().block_on(async {
        let room_ip: IpAddr = ROOM_IP.parse().unwrap();
        let clinician_ip: IpAddr = CLINICIAN_IP.parse().unwrap();
        let room = Peer::join(&desk.gw, room_ip, json!({ "device": desk.kiosk }), 1).await;
        assert_eq!(room.joined["role"], "room");
        room.expect("waiting").await;
        let clinician = Peer::join(&desk.gw, clinician_ip, json!({ "link": token }), 2).await;
        assert_eq!(clinician.joined["admitted"], true);
        // The clinician admits the room from the waiting room.
        let room_id = room.joined["participant_id"].as_str().unwrap().to_owned();
        sees(&clinician, &room_id, "waiting", Duration::from_secs(10)).await;
        clinician.send(json!({ "type": "admit", "participant_id": room_id }));
        room.expect("admitted").await;
        room.wait_connected().await;
        clinician.wait_connected().await;
        // Renegotiation (each side gets the other's tracks) settles before publishing.
        tokio::time::sleep(Duration::from_millis(500)).await;

        let (room_sent, clinician_sent) = exchange(&room, &clinician).await;
        assert_received(&room, &clinician, clinician_sent);
        assert_received(&clinician, &room, room_sent);

        // Nothing the gateway sent either of them names the other's address.
        let seen_by_room = room.from_gateway.lock().unwrap().join("\n");
        let seen_by_clinician = clinician.from_gateway.lock().unwrap().join("\n");
        assert!(seen_by_room.contains("a=candidate"), "the room got no SDP at all");
        assert!(!seen_by_room.contains(CLINICIAN_IP), "the room learned the clinician's address");
        assert!(!seen_by_clinician.contains(ROOM_IP), "the clinician learned the room's address");
        room.close().await;
        clinician.close().await;
        let _ = Arc::strong_count(&room);
    });
    // Nor did the gateway's log.
    let log = desk.gw.log.lock().unwrap().join("\n");
    assert!(!log.contains(ROOM_IP) && !log.contains(CLINICIAN_IP), "a participant's address reached the log");
}

#[test]
fn a_peer_for_another_appointment_or_still_waiting_receives_no_media() {
    let desk = Desk::new();
    let first = desk.booked(-5, 25);
    let (first_token, _) = desk.link(&first);
    // A second room with its own appointment at the same time.
    let other_room = desk
        .gw
        .staff_request(
            &desk.scheduler,
            "POST",
            "/api/v1/rooms",
            Some(json!({ "site": "HMP Test", "name": "Room 2", "timezone": "Europe/London" })),
        )
        .json();
    let now = jiff::Timestamp::now();
    let at = |m: i64| (now + jiff::SignedDuration::from_mins(m)).to_string();
    let second = desk
        .gw
        .staff_request(
            &desk.scheduler,
            "POST",
            "/api/v1/appointments",
            Some(json!({
                "room_id": other_room["room"]["id"], "start": at(-5), "end": at(25),
                "clinician": { "name": "Dr Other", "email": "other@hospital.example" },
                "patient_pseudonym": "PT-0777", "escort_name": "Officer Other",
            })),
        )
        .json();
    let (second_token, _) = desk.link(&second);
    runtime().block_on(async {
        let clinician = Peer::join(&desk.gw, "127.0.0.3".parse().unwrap(), json!({ "link": first_token }), 2).await;
        // Never admitted: waits in the first appointment's waiting room.
        let waiting = Peer::join(&desk.gw, "127.0.0.2".parse().unwrap(), json!({ "device": desk.kiosk }), 1).await;
        waiting.expect("waiting").await;
        // In another appointment altogether.
        let stranger = Peer::join(&desk.gw, "127.0.0.4".parse().unwrap(), json!({ "link": second_token }), 3).await;
        clinician.wait_connected().await;
        stranger.wait_connected().await;
        let (c, s, w) = (clinician.clone(), stranger.clone(), waiting.clone());
        tokio::join!(
            async move { c.publish(1, Duration::from_secs(2)).await },
            async move { s.publish(1, Duration::from_secs(2)).await },
            async move { w.publish(1, Duration::from_secs(2)).await },
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(waiting.received().is_empty(), "a waiting participant received media");
        assert!(stranger.received().is_empty(), "media crossed into another appointment");
        assert!(
            clinician.received().is_empty(),
            "the clinician received media from the waiting room or another appointment"
        );
    });
}

#[test]
fn a_dropped_room_reconnects_within_the_window_without_being_admitted_again() {
    let desk = Desk::new();
    let appointment = desk.booked(-5, 25);
    let (token, _) = desk.link(&appointment);
    runtime().block_on(async {
        let room = Peer::join(&desk.gw, ROOM_IP.parse().unwrap(), json!({ "device": desk.kiosk }), 1).await;
        room.expect("waiting").await;
        let clinician = Peer::join(&desk.gw, CLINICIAN_IP.parse().unwrap(), json!({ "link": token }), 2).await;
        let room_id = room.joined["participant_id"].as_str().unwrap().to_owned();
        clinician.send(json!({ "type": "admit", "participant_id": room_id }));
        room.expect("admitted").await;
        room.wait_connected().await;

        // The kiosk's network drops: its WebSocket and peer connection are gone.
        room.close().await;
        sees(&clinician, &room_id, "away", Duration::from_secs(10)).await;
        // It comes back with the same credential: admitted at once, and media flows again.
        let back = Peer::join(&desk.gw, ROOM_IP.parse().unwrap(), json!({ "device": desk.kiosk }), 3).await;
        assert_eq!(back.joined["admitted"], true, "{}", back.joined);
        back.expect("admitted").await;
        back.wait_connected().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let sent = clinician.publish(1, Duration::from_secs(2)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_received(&back, &clinician, sent);
    });
}

#[test]
fn a_shared_screen_reaches_the_room_as_its_own_video_track() {
    let desk = Desk::new();
    let appointment = desk.booked(-5, 25);
    let (token, _) = desk.link(&appointment);
    runtime().block_on(async {
        let (room, clinician) =
            admitted_pair(&desk, &token, JoinOptions { share_screen: true, ..Default::default() }).await;
        let sent = clinician.publish(1, Duration::from_secs(3)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_received(&room, &clinician, sent);
        let screen = screen_frames(&room, &clinician);
        // 3 s at 5 frames a second; the first may precede the renegotiation.
        assert!(screen.len() >= 12, "the room got {} screen frames", screen.len());
        assert!(screen.iter().all(|r| r.intact) && screen.windows(2).all(|w| w[0].seq < w[1].seq));
    });
}

#[test]
fn without_udp_the_consultation_runs_over_ice_tcp() {
    let desk = Desk::new();
    let appointment = desk.booked(-5, 25);
    let (token, _) = desk.link(&appointment);
    runtime().block_on(async {
        let (room, clinician) =
            admitted_pair(&desk, &token, JoinOptions { tcp_only: true, ..Default::default() }).await;
        let (room_sent, clinician_sent) = exchange(&room, &clinician).await;
        assert_received(&room, &clinician, clinician_sent);
        assert_received(&clinician, &room, room_sent);
        let seen_by_room = room.from_gateway.lock().unwrap().join("\n");
        // One TCP port for everything: the candidate is the HTTPS listener's own address.
        let tcp_candidates: Vec<&str> = seen_by_room.lines().filter(|l| l.contains("tcptype passive")).collect();
        assert!(!tcp_candidates.is_empty(), "the gateway offered no ICE-TCP candidate");
        let https = format!(" 127.0.0.1 {} typ host tcptype passive", desk.gw.public.port());
        assert!(tcp_candidates.iter().all(|c| c.contains(&https)), "{tcp_candidates:?}");
        assert!(!seen_by_room.contains(CLINICIAN_IP));
        assert!(!clinician.from_gateway.lock().unwrap().join("\n").contains(ROOM_IP));
    });
}

/// How many peer connections the media core has set up so far, from its log.
fn peer_connections_added(desk: &Desk) -> usize {
    desk.gw.log.lock().unwrap().iter().filter(|l| l.contains("participant added")).count()
}

/// Screen frames from `sharer` that `peer` received.
fn screen_frames(peer: &Peer, sharer: &Peer) -> Vec<crate::client::Received> {
    let screen_sender = sharer.id + crate::client::SCREEN_SENDER_OFFSET;
    peer.received().into_iter().filter(|r| r.kind == Kind::Video && r.sender == screen_sender).collect()
}

#[test]
fn a_screen_share_started_and_stopped_mid_call_renegotiates_the_same_connection() {
    let desk = Desk::new();
    let appointment = desk.booked(-5, 25);
    let (token, _) = desk.link(&appointment);
    runtime().block_on(async {
        let (room, clinician) = admitted_pair(&desk, &token, JoinOptions::default()).await;
        assert_eq!(peer_connections_added(&desk), 2);

        clinician.start_screen_share().await;
        clinician.expect_sdp_answer().await;
        let sent = clinician.publish(1, Duration::from_secs(3)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        // The camera and microphone carried on through the renegotiation, and the screen arrived.
        assert_received(&room, &clinician, sent);
        let screen = screen_frames(&room, &clinician);
        assert!(screen.len() >= 12, "the room got {} screen frames", screen.len());
        assert!(screen.iter().all(|r| r.intact) && screen.windows(2).all(|w| w[0].seq < w[1].seq));
        // Renegotiated in place: no new peer connection, and none of the room's m-lines stopped.
        assert_eq!(peer_connections_added(&desk), 2, "the re-offer replaced the peer connection");
        assert!(!room.sdp_offers().iter().any(|sdp| sdp.contains("m=video 0 ") || sdp.contains("m=audio 0 ")));

        clinician.stop_screen_share().await;
        clinician.expect_sdp_answer().await;
        tokio::time::sleep(Duration::from_millis(1000)).await;
        // The room is told the screen track stopped: its m-line is closed (port 0).
        assert!(room.sdp_offers().iter().any(|sdp| sdp.contains("m=video 0 ")), "the screen m-line was not stopped");
        let before = room.received().len();
        let sent = clinician.publish(1000, Duration::from_secs(2)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after: Vec<_> = room.received().into_iter().skip(before).collect();
        let camera = after.iter().filter(|r| r.kind == Kind::Video && r.sender == clinician.id).count() as u32;
        assert!(camera * 10 >= sent.1 * 8, "the camera stopped with the screen share: {camera} of {}", sent.1);
        assert_eq!(peer_connections_added(&desk), 2);
    });
}

#[test]
fn an_ice_restart_keeps_the_call_on_the_same_connection() {
    let desk = Desk::new();
    let appointment = desk.booked(-5, 25);
    let (token, _) = desk.link(&appointment);
    runtime().block_on(async {
        let (room, clinician) = admitted_pair(&desk, &token, JoinOptions::default()).await;
        let first = clinician.sdp_answers();
        clinician.restart_ice().await;
        clinician.expect_sdp_answer().await;
        let answers = clinician.sdp_answers();
        let ufrag = |sdp: &str| sdp.lines().find(|l| l.starts_with("a=ice-ufrag:")).map(str::to_owned);
        assert_ne!(ufrag(&first[0]), ufrag(answers.last().unwrap()), "the gateway kept its ICE credentials");
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let (to_clinician, to_room) = exchange(&room, &clinician).await;
        assert_received(&room, &clinician, to_room);
        assert_received(&clinician, &room, to_clinician);
        assert_eq!(peer_connections_added(&desk), 2, "the ICE restart replaced the peer connection");
    });
}

#[test]
fn a_consultation_in_h264_reaches_both_sides_intact() {
    let desk = Desk::new();
    let appointment = desk.booked(-5, 25);
    let (token, _) = desk.link(&appointment);
    runtime().block_on(async {
        let options = JoinOptions { camera: VideoCodec::H264, ..Default::default() };
        let (room, clinician) = admitted_pair(&desk, &token, options).await;
        let (to_clinician, to_room) = exchange(&room, &clinician).await;
        assert_received(&room, &clinician, to_room);
        assert_received(&clinician, &room, to_clinician);
        // What arrived was H.264 (an IDR NAL unit each), not VP8.
        assert!(room.h264_frames() > 0 && clinician.h264_frames() > 0);
    });
}

/// Waits until `observer` sees `member` in `state` (participants updates, up to `limit`).
async fn sees(observer: &Peer, member: &str, state: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let participants = observer.expect("participants").await;
        let list = participants["participants"].as_array().unwrap();
        if list.iter().any(|p| p["id"] == member && p["state"] == state) {
            return;
        }
        assert!(Instant::now() < deadline, "peer {} never saw {member} {state}: {participants}", observer.id);
    }
}

#[test]
fn a_member_whose_media_goes_quiet_shows_away_until_it_reconnects() {
    let desk = Desk::new();
    let appointment = desk.booked(-5, 25);
    let (token, _) = desk.link(&appointment);
    runtime().block_on(async {
        let (room, clinician) = admitted_pair(&desk, &token, JoinOptions::default()).await;
        let room_id = room.joined["participant_id"].as_str().unwrap().to_owned();
        sees(&clinician, &room_id, "admitted", Duration::from_secs(10)).await;

        // The kiosk's media stops while its signalling stays: away for the others, and the
        // kiosk is asked to offer again.
        room.drop_media().await;
        sees(&clinician, &room_id, "away", Duration::from_secs(30)).await;
        let told = room.expect("error").await;
        assert!(["media_lost", "media_failed"].contains(&told["code"].as_str().unwrap()), "{told}");

        // It comes back: admitted again for the others, and media flows.
        room.close().await;
        let back = Peer::join(&desk.gw, ROOM_IP.parse().unwrap(), json!({ "device": desk.kiosk }), 3).await;
        back.expect("admitted").await;
        back.wait_connected().await;
        sees(&clinician, &room_id, "admitted", Duration::from_secs(10)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let sent = clinician.publish(1, Duration::from_secs(2)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_received(&back, &clinician, sent);
    });
}
