//! Chromium's room kiosk behind a real impaired network: headless Chromium runs the kiosk inside
//! the prison namespace of the three-network harness, the consultant joins from the hospital,
//! and the prison's link to the gateway drops a fifth of its media packets, both ways, at
//! random.
//!
//! - The kiosk's own poor-connection indicator (with a webrtc-rs consultant): the kiosk says the
//!   connection is good, then poor while the link is lossy, then good again once it is
//!   repaired; the live sessions API grades the room alike, with losses near what the link
//!   drops, and the security console (Chromium on the hospital's network) says the room's
//!   connection is poor.
//! - Retransmission towards and from a browser (with a Chromium consultant, whose camera sends
//!   real VP8): Chromium's own statistics show that the kiosk asked for lost video again, that
//!   the gateway's resends reached it and that it kept decoding; and, the other way, that the
//!   gateway asked the kiosk for its lost video and the kiosk resent it. It prints the figures
//!   (docs/BENCHMARKS.md, "Towards a browser") and asserts none about timing.
//!
//! Needs root, nftables and Chromium: without them it skips, unless `CI` is set, where it fails.

use std::process::{Command, Stdio};
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::browser::{admit_the_waiting_room, chromium_here};
use crate::client::{JoinOptions, Peer};
use crate::netns::{CONSULTANT, Networks, PrisonEgress, gateway_for_hospital, gateway_for_prison, nft};
use crate::schedule::PASSWORD;
use crate::support::{Gateway, Session, media_heavy, totp_now};
use crate::webdriver::{Browser, Driver};

/// What the impaired link drops, each way.
const LOSS_PERCENT: u32 = 20;
const WAIT: Duration = Duration::from_secs(30);
/// How long the consultant publishes at most; the test ends well before.
const PUBLISH_FOR: Duration = Duration::from_secs(120);

/// The three networks with the real gateway in the DMZ (the demo's room, appointment and
/// consultant link) and chromedriver in the prison for the room's kiosk. Fields drop in order:
/// the browsers and the gateway stop before their namespaces go.
struct Harness {
    prison_browsers: Driver,
    gw: Arc<Gateway>,
    kiosk_credential: String,
    /// The consultant's join link token.
    link: String,
    _data: tempfile::TempDir,
    networks: Networks,
    _heavy: MutexGuard<'static, ()>,
}

impl Harness {
    /// Sets everything up, or returns `None` (having said why) where this machine cannot run
    /// it and `CI` is not set.
    fn set_up() -> Option<Harness> {
        if !chromium_here() {
            return None;
        }
        let heavy = media_heavy();
        let networks = Networks::create(PrisonEgress::HttpsAndMedia)?;
        let data = tempfile::tempdir().unwrap();
        let (gw, kiosk_credential, link) = networks.start_gateway(data.path());
        let prison_browsers = Driver::start_in_netns(&networks.prison);
        Some(Harness {
            prison_browsers,
            gw: Arc::new(gw),
            kiosk_credential,
            link,
            _data: data,
            networks,
            _heavy: heavy,
        })
    }

    /// Chromium in the prison opens the room's kiosk page, which waits for the clinician.
    fn kiosk_in_the_waiting_room(&self) -> Browser<'_> {
        let kiosk = self.prison_browsers.browser();
        kiosk.goto(&format!("https://{}/room#credential={}", gateway_for_prison(), self.kiosk_credential));
        kiosk.wait_for("the waiting room", "return !document.getElementById('lobby').hidden;", WAIT);
        kiosk
    }

    /// Drops `loss_percent` of the UDP packets (the media) on the prison's link to the gateway,
    /// both ways, at random: where each side receives them, with nftables' random number
    /// generator, so that neither sender learns of the loss from its own socket (as it would if
    /// the packets were dropped on their way out). `None` repairs the link. (Random loss by
    /// `tc netem` would do as well, where the kernel has it; nftables is here wherever the
    /// harness runs.)
    fn impair_prison_link(&self, loss_percent: Option<u32>) {
        let networks = &self.networks;
        // The room receives on its only link; the gateway on its prison-side one.
        for (ns, link) in [(&networks.prison, "eth0"), (&networks.dmz, "prison0")] {
            let _ = Command::new("ip")
                .args(["netns", "exec", ns, "nft", "delete", "table", "inet", "impairment"])
                .stderr(Stdio::null())
                .status();
            let Some(loss) = loss_percent else { continue };
            let ruleset = format!(
                "table inet impairment {{
    chain arriving {{
        type filter hook input priority -10;
        iifname \"{link}\" meta l4proto udp numgen random mod 100 < {loss} drop
    }}
}}"
            );
            nft(ns, &ruleset);
        }
    }
}

/// A new security officer, signed in through the API from the DMZ (where the gateway listens).
fn security_officer(gw: &Gateway, dmz: &str) -> Session {
    let totp = gw.add_staff("officer", "security", PASSWORD, false).expect("security gets TOTP");
    Networks::within(dmz, || gw.sign_in("officer", PASSWORD, Some(&totp)))
}

/// The room's connection quality in the live sessions API, asked from the DMZ.
fn room_quality(gw: &Gateway, dmz: &str, officer: &Session) -> Value {
    let live = Networks::within(dmz, || gw.staff_request(officer, "GET", "/api/v1/sessions", None)).json();
    let members = live[0]["members"].as_array().cloned().unwrap_or_default();
    members.into_iter().find(|m| m["role"] == "room").map(|m| m["quality"].clone()).unwrap_or(Value::Null)
}

/// Polls the room's quality, bounded, until `wanted` holds, and returns it.
fn await_room_quality(gw: &Gateway, dmz: &str, officer: &Session, wanted: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let quality = room_quality(gw, dmz, officer);
        if wanted(&quality) {
            return quality;
        }
        assert!(Instant::now() < deadline, "the room's quality stayed {quality}");
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn the_kiosk_says_the_connection_is_poor_while_its_link_drops_a_fifth_of_its_packets() {
    let Some(harness) = Harness::set_up() else { return };
    let (networks, gw) = (&harness.networks, &harness.gw);
    let kiosk = harness.kiosk_in_the_waiting_room();

    // The consultant, a webrtc-rs peer in the hospital, admits the room and sends media.
    let hospital = Networks::runtime(&networks.hospital);
    let (g, link) = (gw.clone(), harness.link.clone());
    // Spawned, not run by `block_on`: only the runtime's own threads are in the hospital.
    let joining = hospital.spawn(async move {
        let options = JoinOptions { gateway: Some(gateway_for_hospital()), ..JoinOptions::default() };
        let consultant = Peer::join_with(&g, CONSULTANT.into(), json!({ "link": link }), 2, options).await;
        let room_id = loop {
            let message = consultant.expect("participants").await;
            let room = message["participants"].as_array().unwrap().iter().find(|p| p["role"] == "room").cloned();
            if let Some(room) = room {
                break room["id"].as_str().unwrap().to_owned();
            }
        };
        consultant.send(json!({ "type": "admit", "participant_id": room_id }));
        consultant.wait_connected().await;
        consultant
    });
    let consultant = hospital.block_on(joining).unwrap();
    let c = consultant.clone();
    let publishing = hospital.spawn(async move { c.publish(1, PUBLISH_FOR).await });
    kiosk.wait_for("the call screen", "return !document.getElementById('call').hidden;", WAIT);
    // The page shows "good" until it measures otherwise: give it a few samples (one every two
    // seconds) of the clean link first.
    std::thread::sleep(Duration::from_secs(7));
    assert_eq!(kiosk.text("#quality"), "Connection: good", "the kiosk misjudges a clean link");
    // Security staff's view agrees, from what the gateway measured of the browser's connection.
    let officer = security_officer(gw, &networks.dmz);
    await_room_quality(gw, &networks.dmz, &officer, |q| q["grade"] == "good");

    harness.impair_prison_link(Some(LOSS_PERCENT));
    kiosk.wait_text("#quality", "Connection: poor", WAIT);
    kiosk.screenshot("room-poor-connection-lossy-link");
    // Chromium numbers its packets transport-wide, so the gateway counts what the link lost
    // on the way in before any retransmission, and the kiosk's receiver reports count what it
    // lost on the way out: each well above a clean link's, and not above what the link drops
    // by more than chance. (The first report after the change may cover a clean part of its
    // interval, and one interval's count of a few hundred packets varies.)
    let lossy = |q: &Value, field: &str| q[field].as_f64().is_some_and(|loss| loss >= 5.0);
    let poor = await_room_quality(gw, &networks.dmz, &officer, |q| {
        q["grade"] == "poor" && lossy(q, "loss_in_percent") && lossy(q, "loss_out_percent")
    });
    eprintln!("the room behind the lossy link: {poor}");
    for field in ["loss_in_percent", "loss_out_percent"] {
        let loss = poor[field].as_f64().unwrap();
        assert!(loss <= 35.0, "the room's {field} is {loss}; its link drops {LOSS_PERCENT}%");
    }
    // And the security console, in a browser on the hospital's network, says so in words.
    let staff_driver = Driver::start_in_netns(&networks.hospital);
    let console = staff_driver.browser();
    console.goto(&format!("https://{}/console", gateway_for_hospital()));
    let totp = gw.add_staff("guard", "security", PASSWORD, false).expect("security gets TOTP");
    console.fill("#username", "guard");
    console.fill("#password", PASSWORD);
    console.fill("#totp", &totp_now(&totp));
    console.click("#signin-form button[type=submit]");
    // A report without one of the losses (an interval with no receiver report) shows the grade
    // with fewer figures; wait for one with both.
    console.wait_for(
        "the room graded poor with its losses both ways",
        r#"const q = document.querySelector('#live-body .link-quality');
           const t = q ? q.textContent : '';
           return t.includes('room: Poor') && t.includes('lost from them') && t.includes('lost to them');"#,
        WAIT,
    );
    console.assert_accessible("the live sessions with a poor connection");
    console.screenshot("console-live-sessions-poor");

    harness.impair_prison_link(None);
    kiosk.wait_text("#quality", "Connection: good", WAIT);
    await_room_quality(gw, &networks.dmz, &officer, |q| q["grade"] == "good");

    publishing.abort();
    let closing = hospital.spawn(async move { consultant.close().await });
    hospital.block_on(closing).unwrap();
    hospital.shutdown_background();
}

/// Chromium's own counters for a page's video, summed over its streams: what it received
/// (`inbound-rtp`) and what it sent (`outbound-rtp`, one per simulcast layer). A counter this
/// Chromium does not report is left out. Beside them, the width of the widest video received
/// now (which simulcast layer the gateway forwards).
const VIDEO_COUNTERS: &str = r#"
const done = arguments[arguments.length - 1];
const counters = {
  'inbound-rtp': ['framesReceived', 'framesDecoded', 'framesDropped', 'packetsReceived', 'packetsLost', 'nackCount', 'pliCount',
    'retransmittedPacketsReceived', 'retransmittedBytesReceived', 'freezeCount', 'totalFreezesDuration',
    'jitterBufferDelay', 'jitterBufferEmittedCount'],
  'outbound-rtp': ['framesEncoded', 'packetsSent', 'nackCount', 'pliCount', 'retransmittedPacketsSent', 'retransmittedBytesSent'],
};
window.gatehouseCall.pc.getStats().then((stats) => {
  const totals = { 'inbound-rtp': {}, 'outbound-rtp': {}, width: 0 };
  stats.forEach((r) => {
    if (r.kind !== 'video' || !counters[r.type]) return;
    if (r.type === 'inbound-rtp') totals.width = Math.max(totals.width, r.frameWidth || 0);
    for (const name of counters[r.type]) {
      if (typeof r[name] === 'number') totals[r.type][name] = (totals[r.type][name] || 0) + r[name];
    }
  });
  done(totals);
});
"#;

/// How long each period of the retransmission measurement lasts: the clean one as long as the
/// lossy one, so that their counts compare.
const LOSSY_STEP: Duration = Duration::from_secs(5);
const LOSSY_STEPS: u32 = 3;
const CLEAN_FOR: Duration = LOSSY_STEP.saturating_mul(LOSSY_STEPS);
const REPAIRED_FOR: Duration = Duration::from_secs(10);

/// One page's video counters at one moment ([`VIDEO_COUNTERS`]).
struct VideoCounters(Value);

impl VideoCounters {
    fn read(page: &Browser<'_>) -> Self {
        Self(page.run_async(VIDEO_COUNTERS))
    }

    /// How much the received video's counter `name` grew since `earlier` (`None` when this
    /// Chromium does not report it).
    fn inbound(&self, earlier: &Self, name: &str) -> Option<f64> {
        self.growth(earlier, "inbound-rtp", name)
    }

    /// How much the sent video's counter `name` grew since `earlier`, all layers together.
    fn outbound(&self, earlier: &Self, name: &str) -> Option<f64> {
        self.growth(earlier, "outbound-rtp", name)
    }

    fn growth(&self, earlier: &Self, direction: &str, name: &str) -> Option<f64> {
        Some(self.0[direction][name].as_f64()? - earlier.0[direction][name].as_f64()?)
    }
}

/// Both pages' counters at one moment.
struct Sample {
    kiosk: VideoCounters,
    consultant: VideoCounters,
}

impl Sample {
    fn take(kiosk: &Browser<'_>, consultant: &Browser<'_>) -> Self {
        Sample { kiosk: VideoCounters::read(kiosk), consultant: VideoCounters::read(consultant) }
    }
}

/// Prints what each browser's counters say of the period from `from` to `to`.
fn print_period(period: &str, from: &Sample, to: &Sample) {
    let figure = |growth: Option<f64>| growth.map_or_else(|| "not reported".to_owned(), |g| format!("{g:.0}"));
    let received = |now: &VideoCounters, then: &VideoCounters| {
        let per_frame_ms = match (now.inbound(then, "jitterBufferDelay"), now.inbound(then, "jitterBufferEmittedCount"))
        {
            (Some(delay), Some(frames)) if frames > 0.0 => format!("{:.0}", delay * 1000.0 / frames),
            _ => "-".to_owned(),
        };
        format!(
            "{} frames received, {} decoded ({} px wide at the end), {} dropped; {} packets received, {} lost; {} NACKs sent, {} packets ({} bytes) \
             retransmitted received; {} PLIs sent; {} freezes ({:.1} s); jitter buffer {per_frame_ms} ms per frame",
            figure(now.inbound(then, "framesReceived")),
            figure(now.inbound(then, "framesDecoded")),
            now.0["width"],
            figure(now.inbound(then, "framesDropped")),
            figure(now.inbound(then, "packetsReceived")),
            figure(now.inbound(then, "packetsLost")),
            figure(now.inbound(then, "nackCount")),
            figure(now.inbound(then, "retransmittedPacketsReceived")),
            figure(now.inbound(then, "retransmittedBytesReceived")),
            figure(now.inbound(then, "pliCount")),
            figure(now.inbound(then, "freezeCount")),
            now.inbound(then, "totalFreezesDuration").unwrap_or(0.0),
        )
    };
    let (kiosk, kiosk_then) = (&to.kiosk, &from.kiosk);
    eprintln!("{period}:");
    eprintln!("  kiosk, the consultant's video: {}", received(kiosk, kiosk_then));
    eprintln!(
        "  kiosk, its own video: {} frames encoded (all layers), {} packets sent; {} NACKs received, {} packets ({} bytes) retransmitted; {} PLIs received",
        figure(kiosk.outbound(kiosk_then, "framesEncoded")),
        figure(kiosk.outbound(kiosk_then, "packetsSent")),
        figure(kiosk.outbound(kiosk_then, "nackCount")),
        figure(kiosk.outbound(kiosk_then, "retransmittedPacketsSent")),
        figure(kiosk.outbound(kiosk_then, "retransmittedBytesSent")),
        figure(kiosk.outbound(kiosk_then, "pliCount")),
    );
    eprintln!("  consultant, the kiosk's video: {}", received(&to.consultant, &from.consultant));
}

#[test]
fn the_gateways_resends_keep_a_browsers_video_decoding_behind_a_lossy_link() {
    let Some(harness) = Harness::set_up() else { return };
    let kiosk = harness.kiosk_in_the_waiting_room();
    // The consultant is Chromium too, in the hospital: its camera sends real VP8, in frames of
    // several packets that depend on earlier ones, which the kiosk must decode (the probe's
    // stamped frames are not pictures a decoder accepts).
    let hospital_browsers = Driver::start_in_netns(&harness.networks.hospital);
    let consultant = hospital_browsers.browser();
    let link_url = format!("https://{}/join/{}", gateway_for_hospital(), harness.link);
    admit_the_waiting_room(&consultant, &kiosk, &link_url);
    for (who, page) in [("the kiosk", &kiosk), ("the consultant", &consultant)] {
        let deadline = Instant::now() + WAIT;
        while VideoCounters::read(page).0["inbound-rtp"]["framesDecoded"].as_f64().unwrap_or(0.0) == 0.0 {
            assert!(Instant::now() < deadline, "{who} decodes no video on a clean link");
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    let start = Sample::take(&kiosk, &consultant);
    std::thread::sleep(CLEAN_FOR);
    let impaired = Sample::take(&kiosk, &consultant);
    harness.impair_prison_link(Some(LOSS_PERCENT));
    let mut steps = vec![impaired];
    for _ in 0..LOSSY_STEPS {
        std::thread::sleep(LOSSY_STEP);
        steps.push(Sample::take(&kiosk, &consultant));
    }
    harness.impair_prison_link(None);
    std::thread::sleep(REPAIRED_FOR);
    let end = Sample::take(&kiosk, &consultant);
    let (impaired, repaired) = (&steps[0], &steps[steps.len() - 1]);
    print_period("clean link", &start, impaired);
    print_period(&format!("link dropping {LOSS_PERCENT}% each way"), impaired, repaired);
    print_period("link repaired", repaired, &end);

    // Towards the browser: the kiosk asked again for what the link lost, and the gateway's
    // resends reached it. Bandwidth probes travel as retransmissions too, on a clean link as
    // well: padding (many packets, no payload bytes) or copies of packets already sent. So
    // resent packets only have to grow; resent payload bytes have to grow beyond those of a
    // clean period of the same length.
    let lossy = (&repaired.kiosk, &impaired.kiosk);
    let clean = (&impaired.kiosk, &start.kiosk);
    let counted = |growth: Option<f64>, name: &str| growth.unwrap_or_else(|| panic!("this Chromium reports no {name}"));
    let received = |(now, then): (&VideoCounters, &VideoCounters), name: &str| counted(now.inbound(then, name), name);
    let sent = |(now, then): (&VideoCounters, &VideoCounters), name: &str| counted(now.outbound(then, name), name);
    assert!(received(lossy, "nackCount") > 0.0, "the kiosk sent no NACK behind a lossy link");
    assert!(received(lossy, "retransmittedPacketsReceived") > 0.0, "no resent video reached the kiosk");
    let resent_in = "retransmittedBytesReceived";
    assert!(
        received(lossy, resent_in) > received(clean, resent_in),
        "the kiosk received no more resent video behind the lossy link than on a clean one"
    );
    // From the browser: the gateway asked the kiosk again for its video that the link lost,
    // and the kiosk resent it.
    assert!(sent(lossy, "nackCount") > 0.0, "the gateway sent the kiosk no NACK behind a lossy link");
    assert!(sent(lossy, "retransmittedPacketsSent") > 0.0, "the kiosk resent no video");
    let resent_out = "retransmittedBytesSent";
    assert!(
        sent(lossy, resent_out) > sent(clean, resent_out),
        "the kiosk resent no more video behind the lossy link than on a clean one"
    );
    // And both pictures went on: each browser decoded the other's video through every step
    // of the lossy period.
    for step in steps.windows(2) {
        let (before, after) = (&step[0], &step[1]);
        let grew = |growth: Option<f64>| growth.is_some_and(|g| g > 0.0);
        assert!(grew(after.kiosk.inbound(&before.kiosk, "framesDecoded")), "the kiosk stopped decoding video");
        assert!(
            grew(after.consultant.inbound(&before.consultant, "framesDecoded")),
            "the consultant stopped decoding the kiosk's video"
        );
    }
}
