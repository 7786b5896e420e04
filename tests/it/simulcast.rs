//! Simulcast through the real gateway: a webrtc-rs room publishes its camera in three layers at
//! clearly different bitrates; a clinician on an open path and a guest behind a slow link (a
//! bandwidth-limiting UDP relay run by the test) each get exactly one layer at a time, the one
//! their own bandwidth estimate allows.

use std::time::Duration;

use serde_json::json;

use crate::client::{JoinOptions, Kind, LAYER_SENDER_OFFSET, LAYERS, Peer, Received, now_us};
use crate::relay::{self, Impairment};
use crate::schedule::Desk;
use crate::support::media_heavy;

const ROOM_IP: &str = "127.0.0.2";
const CLINICIAN_IP: &str = "127.0.0.3";
const GUEST_IP: &str = "127.0.0.4";
const RELAY_IP: &str = "127.0.0.5";

/// The guest's link towards it: room for the middle layer, not for the top one.
const SLOW_LINK_BPS: f64 = 600_000.0;
const PUBLISH_FOR: Duration = Duration::from_secs(14);
/// What is judged: the end of the call, once estimates have settled.
const SETTLED_AFTER: Duration = Duration::from_secs(9);

/// The layer index of a frame from the room (peer 1), if it is one.
fn layer_of(frame: &Received) -> Option<usize> {
    (1..=LAYERS.len()).find(|n| frame.sender == 1 + LAYER_SENDER_OFFSET * *n as u32).map(|n| n - 1)
}

/// Checks what `peer` received of the room's camera: each frame intact and of one layer, and
/// layers following each other (one at a time), never interleaved. Returns the layer of every
/// frame, and of those sent [`SETTLED_AFTER`] the publishing began at `began_us` (the probe's clock).
fn layers_received(peer: &Peer, who: &str, began_us: u64) -> (Vec<usize>, Vec<usize>) {
    let mut frames: Vec<Received> =
        peer.received().into_iter().filter(|r| r.kind == Kind::Video && layer_of(r).is_some()).collect();
    // A repeat of a packet already received (a retransmission, or str0m padding with an old
    // packet) is dropped by any receiver; only first arrivals count.
    let mut seen = std::collections::HashSet::new();
    frames.retain(|r| seen.insert((r.sender, r.seq)));
    assert!(!frames.is_empty(), "{who} received none of the room's camera");
    assert!(frames.iter().all(|r| r.intact), "{who} got a damaged frame");
    assert_eq!(peer.undecodable(), 0, "{who} got payloads nobody sent");
    let layers: Vec<usize> = frames.iter().filter_map(layer_of).collect();
    let switches = layers.windows(2).filter(|w| w[0] != w[1]).count();
    let mut runs: Vec<(usize, usize, u64)> = Vec::new();
    for frame in &frames {
        let layer = layer_of(frame).unwrap();
        match runs.last_mut() {
            Some((l, count, _)) if *l == layer => *count += 1,
            _ => runs.push((layer, 1, (frame.sent_us - began_us) / 1000)),
        }
    }
    eprintln!("{who}: runs (layer, frames, from ms) {runs:?}");
    assert!(switches <= 6, "{who}: the layer changed {switches} times; layers are being mixed");
    let settled_from = began_us + SETTLED_AFTER.as_micros() as u64;
    let settled = frames.iter().filter(|r| r.sent_us >= settled_from).filter_map(layer_of);
    let settled: Vec<usize> = settled.collect();
    let counts: Vec<usize> = (0..LAYERS.len()).map(|l| settled.iter().filter(|x| **x == l).count()).collect();
    eprintln!("{who}: {} frames, {switches} switches; at the end, frames per layer {counts:?}", frames.len());
    (layers, settled)
}

#[test]
fn a_subscriber_behind_a_slow_link_gets_a_lower_layer_and_an_open_one_the_top() {
    let _heavy = media_heavy();
    let desk = Desk::new();
    let appointment = desk.booked(-5, 25);
    let (token, _) = desk.link(&appointment);
    let guest_token = desk.guest_link(&appointment);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let gw = &desk.gw;
        let simulcast = JoinOptions { simulcast: true, ..Default::default() };
        let room = Peer::join_with(gw, ROOM_IP.parse().unwrap(), json!({ "device": desk.kiosk }), 1, simulcast).await;
        room.expect("waiting").await;
        let clinician = Peer::join(gw, CLINICIAN_IP.parse().unwrap(), json!({ "link": token }), 2).await;
        let slow = Impairment { down_bps: Some(SLOW_LINK_BPS), ..Impairment::default() };
        let via = Some(relay::start(RELAY_IP.parse().unwrap(), gw.media, slow).await);
        let guest_options = JoinOptions { via, ..Default::default() };
        let guest =
            Peer::join_with(gw, GUEST_IP.parse().unwrap(), json!({ "link": guest_token }), 3, guest_options).await;
        for peer in [&room, &guest] {
            let id = peer.joined["participant_id"].as_str().unwrap().to_owned();
            clinician.send(json!({ "type": "admit", "participant_id": id }));
            peer.expect("admitted").await;
        }
        for peer in [&room, &clinician, &guest] {
            peer.wait_connected().await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;

        let began_us = now_us();
        let sent = room.publish_simulcast(PUBLISH_FOR).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        eprintln!("the room sent {sent:?} frames per layer");

        // On the open path the top layer flows for most of the call. (A loaded test machine can
        // delay packets enough for the estimator to see congestion for a while, and stepping
        // down then is right, so the test does not insist on the last moments.)
        let top = LAYERS.len() - 1;
        let (all, _) = layers_received(&clinician, "the clinician", began_us);
        let on_top = all.iter().filter(|l| **l == top).count();
        assert!(on_top * 10 >= all.len() * 6, "the clinician had the top layer for {on_top} of {} frames", all.len());

        // Behind the slow link, the picture goes on at a lower layer.
        let (_, slow) = layers_received(&guest, "the guest", began_us);
        assert!(slow.len() >= 100, "the guest's picture all but stopped: {} frames at the end", slow.len());
        assert!(slow.iter().all(|l| *l < top), "the guest behind a slow link still gets the top layer");
        room.close().await;
        clinician.close().await;
        guest.close().await;
    });
}
