//! Connection quality as security staff see it: two webrtc-rs members in a real consultation,
//! one of them behind a relay that drops a share of its packets both ways, and the live
//! sessions API over HTTPS grading each from what the media core measured.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::client::{JoinOptions, Peer};
use crate::relay::{self, Impairment};
use crate::schedule::Desk;
use crate::support::media_heavy;

const ROOM_IP: &str = "127.0.0.2";
const CLINICIAN_IP: &str = "127.0.0.3";
const RELAY_IP: &str = "127.0.0.5";

/// What the room's relay drops, each way.
const LOSS: f64 = 0.15;
/// How long the members publish, at most; the test ends as soon as the grades are in.
const PUBLISH_FOR: Duration = Duration::from_secs(40);
/// The longest the grades may take to show (reports come every two seconds once media flows).
const REPORT_WITHIN: Duration = Duration::from_secs(30);

/// The quality the live sessions API gives the member in `role` of the only live session.
fn quality_of(live: &Value, role: &str) -> Value {
    let members = live[0]["members"].as_array().cloned().unwrap_or_default();
    members.into_iter().find(|m| m["role"] == role).map(|m| m["quality"].clone()).unwrap_or(Value::Null)
}

#[test]
fn the_live_sessions_api_grades_a_member_behind_a_lossy_link_poor_and_a_clean_one_good() {
    let _heavy = media_heavy();
    let desk = Desk::new();
    let appointment = desk.booked(-5, 25);
    let (token, _) = desk.link(&appointment);
    // The API's own description, generated from its handlers, documents the figures.
    let doc = desk.gw.request("GET", "/api/openapi.json", &[], None).json();
    let figures = &doc["components"]["schemas"]["QualityView"]["properties"];
    for field in ["grade", "rtt_ms", "loss_in_percent", "loss_out_percent"] {
        assert!(figures[field].is_object(), "the OpenAPI document lacks quality.{field}: {figures}");
    }
    let grades = &doc["components"]["schemas"]["GradeView"]["enum"];
    assert_eq!(*grades, json!(["good", "fair", "poor", "unknown"]), "the grades a client may meet");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let gw = &desk.gw;
        // Before anyone has media, the API says it does not know, not that all is well.
        let lossy = Impairment { loss: LOSS, ..Impairment::default() };
        let via = Some(relay::start(RELAY_IP.parse().unwrap(), gw.media, lossy).await);
        let room_options = JoinOptions { via, transport_cc: true, ..Default::default() };
        let room =
            Peer::join_with(gw, ROOM_IP.parse().unwrap(), json!({ "device": desk.kiosk }), 1, room_options).await;
        room.expect("waiting").await;
        let live = desk.gw.staff_request(&desk.security, "GET", "/api/v1/sessions", None).json();
        assert_eq!(quality_of(&live, "room")["grade"], "unknown", "{live}");

        let clinician = Peer::join(gw, CLINICIAN_IP.parse().unwrap(), json!({ "link": token }), 2).await;
        let id = room.joined["participant_id"].as_str().unwrap().to_owned();
        clinician.send(json!({ "type": "admit", "participant_id": id }));
        room.expect("admitted").await;
        room.wait_connected().await;
        clinician.wait_connected().await;

        let publishers: Vec<_> = [&room, &clinician]
            .into_iter()
            .map(|peer| {
                let peer = peer.clone();
                tokio::spawn(async move { peer.publish(0, PUBLISH_FOR).await })
            })
            .collect();

        // Poll, bounded, until both members have been graded on real figures.
        let deadline = Instant::now() + REPORT_WITHIN;
        let (room_quality, clinician_quality) = loop {
            let live = desk.gw.staff_request(&desk.security, "GET", "/api/v1/sessions", None).json();
            let (r, c) = (quality_of(&live, "room"), quality_of(&live, "clinician"));
            let measured = |q: &Value| {
                q["loss_in_percent"].is_number() && q["loss_out_percent"].is_number() && q["rtt_ms"].is_u64()
            };
            // The first reports of a call can catch its start; wait for a settled pair.
            if measured(&r) && measured(&c) && r["grade"] == "poor" && c["grade"] == "good" {
                break (r, c);
            }
            assert!(Instant::now() < deadline, "no settled grades within {REPORT_WITHIN:?}: room {r}, clinician {c}");
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        eprintln!("room {room_quality}\nclinician {clinician_quality}");
        for publisher in publishers {
            publisher.abort();
        }

        // The room's figures are near what its relay drops, both ways; the clinician's are clean.
        let percent = |q: &Value, field: &str| q[field].as_f64().unwrap();
        for field in ["loss_in_percent", "loss_out_percent"] {
            let loss = percent(&room_quality, field);
            assert!((5.0..=30.0).contains(&loss), "the room's {field} is {loss}, its relay drops {}%", LOSS * 100.0);
            assert!(percent(&clinician_quality, field) <= 2.0, "the clinician's {field}: {clinician_quality}");
        }
        for quality in [&room_quality, &clinician_quality] {
            assert!(quality["rtt_ms"].is_u64(), "no round-trip time: {quality}");
            assert!(quality["bitrate_in_kbps"].as_u64().unwrap() > 0, "no media in: {quality}");
            assert!(quality["bitrate_out_kbps"].as_u64().unwrap() > 0, "no media out: {quality}");
        }
        room.close().await;
        clinician.close().await;
    });
}
