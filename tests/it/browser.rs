//! Real Chromium, end to end, against the real gateway: the journeys each kind of user makes
//! through their own page. A scheduler books and issues a link in the console; the room kiosk
//! waits, checks its devices and joins when the window opens; the consultant passes the device
//! check, admits the room, and both see and hear each other until the window closes. Security
//! terminates and locks down from the console; an auditor finds, exports and verifies the
//! records. Every page is checked with axe-core in its main states, and screenshots of them go
//! to target/screenshots.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::schedule::{Desk, PASSWORD};
use crate::support::{media_heavy, totp_now};
use crate::webdriver::{Browser, Driver, available, keys};

const WAIT: Duration = Duration::from_secs(20);

/// Inbound media counters from the page's peer connection: decoded video frames and received
/// audio packets.
const STATS: &str = r#"
const done = arguments[arguments.length - 1];
const pc = window.gatehouseCall && window.gatehouseCall.pc;
if (!pc) { done(null); return; }
pc.getStats().then((stats) => {
  let frames = 0, audio = 0;
  stats.forEach((r) => {
    if (r.type === 'inbound-rtp' && r.kind === 'video') frames += r.framesDecoded || 0;
    if (r.type === 'inbound-rtp' && r.kind === 'audio') audio += r.packetsReceived || 0;
  });
  done({ frames, audio });
});
"#;

/// How many inbound video streams have decoded frames (camera, and screen when shared).
const DECODING_VIDEO_STREAMS: &str = r#"
const done = arguments[arguments.length - 1];
window.gatehouseCall.pc.getStats().then((stats) => {
  let streams = 0;
  stats.forEach((r) => { if (r.type === 'inbound-rtp' && r.kind === 'video' && r.framesDecoded > 0) streams += 1; });
  done(streams);
});
"#;

/// True once the live sessions view grades every member's connection on real figures, the
/// round trip included (a kiosk that has just reloaded is graded on its losses before its first
/// round trip is measured).
const MEMBERS_GRADED: &str = r#"
const grades = [...document.querySelectorAll('#live-body .link-grade')];
return grades.length >= 2
  && grades.every((g) => g.dataset.grade !== 'unknown' && g.parentElement.textContent.includes('round trip'));
"#;

/// Shares a painted canvas as the screen, the way the Share screen button shares a display
/// (headless Chromium has no screen to pick).
const SHARE_CANVAS: &str = r#"
const canvas = document.createElement('canvas');
canvas.width = 640; canvas.height = 360;
const ctx = canvas.getContext('2d');
let n = 0;
window.canvasPainter = setInterval(() => { ctx.fillStyle = (n++ % 2) ? '#1d4f91' : '#f2f2f2'; ctx.fillRect(0, 0, 640, 360); }, 50);
window.gatehouseCall.setScreen(canvas.captureStream(10));
return true;
"#;

/// The camera layers the page sends: rid, current width, frames encoded so far, and the
/// keyframe requests (PLI or FIR) that reached that layer.
const SENT_LAYERS: &str = r#"
const done = arguments[arguments.length - 1];
window.gatehouseCall.pc.getStats().then((stats) => {
  const layers = [];
  stats.forEach((r) => {
    if (r.type === 'outbound-rtp' && r.kind === 'video' && r.rid) {
      layers.push({
        rid: r.rid, width: r.frameWidth || 0, frames: r.framesEncoded || 0,
        keyframe_requests: (r.pliCount || 0) + (r.firCount || 0),
      });
    }
  });
  done(layers);
});
"#;

/// The one inbound camera stream: frames decoded, width, and picture-loss reports sent.
const RECEIVED_CAMERA: &str = r#"
const done = arguments[arguments.length - 1];
window.gatehouseCall.pc.getStats().then((stats) => {
  const streams = [];
  stats.forEach((r) => {
    if (r.type === 'inbound-rtp' && r.kind === 'video') {
      streams.push({ frames: r.framesDecoded || 0, width: r.frameWidth || 0, plis: r.pliCount || 0 });
    }
  });
  done(streams);
});
"#;

pub fn chromium_here() -> bool {
    if available() {
        return true;
    }
    // scripts/test installs Chromium; CI must never skip this silently.
    assert!(std::env::var_os("CI").is_none(), "Chromium and chromedriver are required in CI");
    eprintln!("skipped: /usr/bin/chromium or /usr/bin/chromedriver is missing (run scripts/test)");
    false
}

fn base(desk: &Desk) -> String {
    format!("https://localhost:{}", desk.gw.public.port())
}

fn media(browser: &Browser<'_>) -> (u64, u64) {
    let stats = browser.run_async(STATS);
    (stats["frames"].as_u64().unwrap_or(0), stats["audio"].as_u64().unwrap_or(0))
}

/// Waits until both pages decode the other's video and receive their audio.
fn assert_media_flows(kiosk: &Browser<'_>, consultant: &Browser<'_>) {
    let deadline = std::time::Instant::now() + WAIT;
    let (mut k, mut c) = ((0, 0), (0, 0));
    while std::time::Instant::now() < deadline {
        k = media(kiosk);
        c = media(consultant);
        if k.0 > 0 && k.1 > 0 && c.0 > 0 && c.1 > 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("the kiosk decoded {} frames and got {} audio packets; the consultant {} and {}", k.0, k.1, c.0, c.1);
}

/// Waits until the `<video>` that `selector` names is playing a picture a person can see.
fn assert_video_plays(browser: &Browser<'_>, selector: &str) {
    let playing = format!(
        "const v = document.querySelector('{selector}'); return !!v && !v.paused && v.videoWidth > 0 && v.currentTime > 0;"
    );
    let deadline = std::time::Instant::now() + WAIT;
    while browser.run(&playing) != json!(true) {
        if std::time::Instant::now() > deadline {
            let state = browser.run(&format!(
                "const v = document.querySelector('{selector}'); const mine = v && v.srcObject ? v.srcObject.getTracks()[0] : null; \
                 return {{ paused: v && v.paused, ready: v && v.readyState, shown: mine && mine.id, \
                 receivers: window.gatehouseCall.pc.getReceivers().map((r) => [r.track.kind, r.track.id, r.track.muted, r.track.readyState]) }};"
            ));
            panic!("{selector} plays no picture: {state}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The kiosk page as staff first meet it: they enter the room's credential once.
fn set_up_kiosk(kiosk: &Browser<'_>, desk: &Desk) {
    kiosk.goto(&format!("{}/room", base(desk)));
    kiosk.wait_text("#setup", "enter the room credential", WAIT);
    kiosk.assert_accessible("the kiosk's set-up screen");
    kiosk.fill("#credential-input", &desk.kiosk);
    kiosk.click("#setup-form button[type=submit]");
    kiosk.wait_text("#room-name", "Room 1", WAIT);
}

/// The consultant opens the link and passes the device check.
fn through_device_check(consultant: &Browser<'_>, link_url: &str) {
    consultant.goto(link_url);
    consultant.wait_text("#check-verdict", "Pass", WAIT);
    // Measured both ways: the gateway counted the upload's bytes.
    consultant.wait_text("#connection-result", "upload", WAIT);
}

/// Signs in at the console with username, password and TOTP, using the keyboard only.
fn sign_in_with_keyboard(console: &Browser<'_>, desk: &Desk, username: &str, totp_secret: &str) {
    console.goto(&format!("{}/console", base(desk)));
    console.wait_text("#signin", "Sign in", WAIT);
    console.wait_for("the username field to have the focus", "return document.activeElement.id === 'username';", WAIT);
    console.keys(username);
    console.keys(keys::TAB);
    console.keys(PASSWORD);
    console.keys(keys::TAB);
    // The focus is visible where the keyboard puts it.
    let outline = console.run("return getComputedStyle(document.activeElement).outlineStyle;");
    assert_ne!(outline, json!("none"), "the focused code field shows no focus ring");
    console.keys(&totp_now(totp_secret));
    console.keys(keys::ENTER);
    console.wait_text("#who", "Signed in as", WAIT);
}

/// "2026-11-24" and "14:15" for `minutes` from now in the room's time zone, to the minute.
fn room_time(minutes: i64) -> (String, String) {
    let at = jiff::Timestamp::now() + jiff::SignedDuration::from_mins(minutes);
    let zoned = at.in_tz("Europe/London").unwrap();
    (zoned.strftime("%Y-%m-%d").to_string(), zoned.strftime("%H:%M").to_string())
}

/// Checks the page reflows at 200% zoom on a 1280x720 screen: nothing runs off sideways.
fn assert_reflows_at_200_percent(browser: &Browser<'_>, what: &str, screenshot: &str) {
    browser.emulate_viewport(640, 360, 2.0);
    std::thread::sleep(Duration::from_millis(300));
    let overflow = browser.run("return document.documentElement.scrollWidth - window.innerWidth;");
    browser.screenshot(screenshot);
    browser.reset_viewport();
    assert!(overflow.as_i64().unwrap_or(0) <= 1, "{what} scrolls sideways by {overflow} px at 200% zoom");
}

#[test]
fn an_appointment_is_booked_joined_admitted_warned_and_closed_by_its_window() {
    if !chromium_here() {
        return;
    }
    let _heavy = media_heavy();
    let desk = Desk::new();
    let planner_totp = desk.gw.add_staff("planner", "scheduler", PASSWORD, true).expect("TOTP was asked for");
    let driver = Driver::start();

    // The scheduler books 20 minutes ahead in the console and issues the clinician's link.
    let console = driver.browser();
    sign_in_with_keyboard(&console, &desk, "planner", &planner_totp);
    console.assert_accessible("the console's day view");
    let (date, start) = room_time(20);
    let (_, end) = room_time(50);
    console.fill("#book-date", &date);
    console.fill("#book-start", &start);
    console.fill("#book-end", &end);
    console.fill("#book-clinician", "Dr Ada Okafor");
    console.fill("#book-email", "ada.okafor@hospital.example");
    console.fill("#book-patient", "PT-0042");
    console.fill("#book-escort", "Nurse Test");
    console.click("#book-form button[type=submit]");
    console.wait_text("#appointment-dialog", "Join links", WAIT);
    console.click("#links button.primary");
    console.wait_text("#issued-label", "Dr Ada Okafor", WAIT);
    let link_url = console.run("return document.getElementById('issued-url').value;").as_str().unwrap().to_owned();
    assert!(link_url.contains("/join/"), "{link_url}");
    console.assert_accessible("the console's appointment dialog");
    console.screenshot("console-link-issued");
    console.click("#issued-copy");
    console.wait_text("#issued-copied", "Copied", WAIT);
    // Reissued, the first link stops working; revoked and reissued again, the last one counts.
    console.click("#links button.primary");
    console.wait_for(
        "a new link",
        &format!("return document.getElementById('issued-url').value !== {};", json!(link_url)),
        WAIT,
    );
    console.click("#links button.danger");
    console.wait_text("#appointment-result", "link was revoked", WAIT);
    console.wait_text("#links", "No link", WAIT);
    console.click("#links button.primary");
    console.wait_text("#links", "not opened yet", WAIT);
    let reissued = console.run("return document.getElementById('issued-url').value;").as_str().unwrap().to_owned();
    assert_ne!(reissued, link_url);
    let revoked = desk.join(link_url.rsplit('/').next().unwrap(), None);
    assert_eq!(revoked.json()["code"], "link_revoked", "{}", revoked.body);
    let link_url = reissued;
    console.click("#appointment-close");

    // A second booking is moved, then cancelled with a reason.
    // (Each on its start's date: the end may fall after midnight, on the next day.)
    let (later_date, later_start) = room_time(120);
    let (_, later_end) = room_time(140);
    console.fill("#book-date", &later_date);
    console.fill("#book-start", &later_start);
    console.fill("#book-end", &later_end);
    console.click("#book-form button[type=submit]");
    console.wait_text("#appointment-title", &later_start, WAIT);
    let (moved_date, moved_start) = room_time(150);
    let (_, moved_end) = room_time(170);
    console.fill("#reschedule-date", &moved_date);
    console.fill("#reschedule-start", &moved_start);
    console.fill("#reschedule-end", &moved_end);
    console.click("#reschedule-form button[type=submit]");
    console.wait_text("#appointment-title", &moved_start, WAIT);
    console.fill("#cancel-reason", "the clinic was moved");
    console.click("#cancel-form button[type=submit]");
    console.wait_text("#appointment-facts", "Cancelled (the clinic was moved)", WAIT);
    console.click("#appointment-close");
    console.wait_text("#day-view", "Cancelled", WAIT);

    // Rooms: a new room is enrolled, its credential shown once, then revoked.
    console.click("#tabs button:nth-child(2)");
    console.fill("#enrol-site", "HMP Test");
    console.fill("#enrol-name", "Room 2");
    console.click("#enrol-form button[type=submit]");
    console.wait_text("#credential-title", "Credential for Room 2", WAIT);
    let credential = console.run("return document.getElementById('credential-value').value;");
    assert!(credential.as_str().unwrap().starts_with("ghr_"), "{credential}");
    console.assert_accessible("the rooms");
    console.screenshot("console-rooms");
    console.click("#rooms-body tr:last-child button.danger");
    console.wait_text("#rooms-body", "Revoked", WAIT);
    let refused = desk.join_room(credential.as_str().unwrap());
    assert_eq!(refused.json()["code"], "device_revoked", "{}", refused.body);
    console.click("#tabs button:nth-child(1)");
    console.wait_text("#day-view", "Dr Ada Okafor", WAIT);
    console.run("window.scrollTo(0, 0); return true;");
    console.screenshot("console-day-view");
    assert_reflows_at_200_percent(&console, "the console's day view", "console-day-view-200-percent");
    drop(console);
    let link_url = link_url.replace("https://localhost/", &format!("{}/", base(&desk)));

    // The kiosk shows the room, the appointment in the room's time and its device check.
    let kiosk = driver.browser();
    set_up_kiosk(&kiosk, &desk);
    kiosk.wait_text("#next-time", &format!("{start} to {end}"), WAIT);
    kiosk.wait_text("#countdown", "Starts in", WAIT);
    kiosk.wait_text("#check-verdict", "Pass", WAIT);
    let connection = kiosk.text("#connection-result");
    assert!(connection.contains("Download") && connection.contains("upload"), "{connection}");
    assert!(kiosk.text("#camera-result").contains("working"));
    kiosk.click("#speaker-test");
    kiosk.wait_text("#speaker-result", "a chime was played", WAIT);
    kiosk.assert_accessible("the kiosk's waiting screen");
    kiosk.screenshot("room-waiting");
    assert_reflows_at_200_percent(&kiosk, "the kiosk's waiting screen", "room-waiting-200-percent");
    // A reload keeps the credential.
    kiosk.goto(&format!("{}/room", base(&desk)));
    kiosk.wait_text("#next-time", &start, WAIT);

    // Too early: the consultant's page says when the link opens.
    let consultant = driver.browser();
    consultant.goto(&link_url);
    let opens = consultant.wait_text("#refused-reason", "This link opens at", WAIT);
    let (_, opening) = room_time(5);
    assert!(opens.contains(&opening) || opens.contains(&room_time(4).1), "{opens}");
    consultant.assert_accessible("the consultant's refusal");
    consultant.screenshot("consultant-not-open-yet");

    // The window opens: the kiosk joins by itself and waits for the clinician.
    desk.gw.set_clock_offset(6 * 60);
    kiosk.wait_text("#lobby-title", "Waiting for the clinician", WAIT);
    kiosk.assert_accessible("the kiosk's waiting-for-the-clinician screen");
    kiosk.screenshot("room-waiting-for-clinician");

    // The consultant passes the device check, sees the room arrive and admits it.
    through_device_check(&consultant, &link_url);
    // Choosing a camera and a microphone opens them again, and the preview goes on.
    let cameras =
        consultant.run("return [...document.querySelectorAll('#camera-select option')].map((o) => o.textContent);");
    assert!(!cameras.as_array().unwrap().is_empty(), "no camera to choose: {cameras}");
    consultant.run(
        "const s = document.getElementById('microphone-select'); s.dispatchEvent(new Event('change')); return true;",
    );
    consultant.wait_for(
        "the devices to reopen",
        "return !!localStorage.getItem('gatehouse.consultant.devices') && document.getElementById('preview').srcObject.getVideoTracks()[0].readyState === 'live';",
        WAIT,
    );
    assert_video_plays(&consultant, "#preview");
    consultant.assert_accessible("the consultant's device check");
    consultant.screenshot("consultant-device-check");
    assert_reflows_at_200_percent(&consultant, "the consultant's device check", "consultant-device-check-200-percent");
    consultant.click("#continue");
    consultant.wait_text("#arrival", "Room 1 has arrived", WAIT);
    consultant.assert_accessible("the consultant's waiting room");
    consultant.screenshot("consultant-waiting-room");
    consultant.click("#admit-list button");
    kiosk.wait_for("the call screen", "return !document.getElementById('call').hidden;", WAIT);
    consultant.wait_for("the call screen", "return !document.getElementById('in-call').hidden;", WAIT);
    assert_media_flows(&kiosk, &consultant);
    assert_video_plays(&kiosk, "#remote");
    assert_video_plays(&consultant, "#remote");
    kiosk.wait_text("#call-timer", "00:0", WAIT);
    kiosk.wait_text("#quality", "Connection: good", WAIT);
    consultant.wait_text("#remaining", "min", WAIT);
    // The controls act on the tracks: muting stops the microphone, camera off the camera.
    consultant.click("#mute");
    consultant.click("#camera");
    let (audio, video) = (
        consultant.run("return window.gatehouseCall.stream.getAudioTracks()[0].enabled;"),
        consultant.run("return window.gatehouseCall.stream.getVideoTracks()[0].enabled;"),
    );
    assert_eq!((audio, video), (json!(false), json!(false)), "mute and camera off left a track on");
    assert_eq!(consultant.text("#mute"), "Unmute");
    consultant.click("#mute");
    consultant.click("#camera");
    assert_eq!(consultant.run("return window.gatehouseCall.stream.getTracks().every((t) => t.enabled);"), json!(true));
    // When nothing arrives from the clinician any more, the kiosk says the connection is poor.
    consultant.run("window.held = window.gatehouseCall.pc.getSenders().map((s) => [s, s.track]); window.held.forEach(([s]) => s.replaceTrack(null)); return true;");
    kiosk.wait_text("#quality", "Connection: poor", WAIT);
    kiosk.screenshot("room-poor-connection");
    consultant.run("window.held.forEach(([s, t]) => s.replaceTrack(t)); return true;");
    kiosk.wait_text("#quality", "Connection: good", WAIT);
    kiosk.assert_accessible("the kiosk in the call");
    consultant.assert_accessible("the consultant in the call");
    kiosk.screenshot("room-in-call");
    consultant.screenshot("consultant-in-call");

    // The consultant shares a screen: the same connection carries it, and the kiosk decodes it.
    kiosk.run("window.connectionBeforeSharing = window.gatehouseCall.pc; return true;");
    consultant.run(SHARE_CANVAS);
    let streams = |b: &Browser<'_>| b.run_async(DECODING_VIDEO_STREAMS).as_u64().unwrap_or(0);
    let deadline = std::time::Instant::now() + WAIT;
    while streams(&kiosk) < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(streams(&kiosk), 2, "the kiosk does not decode the shared screen beside the camera");
    assert_video_plays(&kiosk, "#shared video");
    kiosk.screenshot("room-sees-shared-screen");
    assert_eq!(kiosk.run("return window.gatehouseCall.pc === window.connectionBeforeSharing;"), json!(true));

    // Five minutes before the end, both are warned; at the end, told; at the hard end, closed.
    desk.gw.set_clock_offset(45 * 60 + 30);
    kiosk.wait_text("#banner", "5 minutes left", WAIT);
    consultant.wait_text("#banner", "5 minutes left", WAIT);
    kiosk.screenshot("room-five-minute-warning");
    consultant.screenshot("consultant-five-minute-warning");
    desk.gw.set_clock_offset(50 * 60 + 30);
    kiosk.wait_text("#banner", "booked time is over", WAIT);
    consultant.wait_text("#banner", "booked time is over", WAIT);
    desk.gw.set_clock_offset(61 * 60);
    kiosk.wait_text("#ended-reason", "The time for this consultation has passed", WAIT);
    consultant.wait_text("#ended-reason", "The time for this consultation has passed", WAIT);
    kiosk.assert_accessible("the kiosk's end screen");
    consultant.assert_accessible("the consultant's end screen");
    kiosk.screenshot("room-ended");
    consultant.screenshot("consultant-ended");

    // The kiosk goes back to waiting for the next appointment by itself.
    kiosk.wait_text("#next-time", "No appointment booked", Duration::from_secs(30));
}

/// Security officers' consoles sign in with their own account (a TOTP code works once).
fn security_console<'a>(driver: &'a Driver, desk: &Desk, username: &str) -> Browser<'a> {
    let totp = desk.gw.add_staff(username, "security", PASSWORD, false).expect("security gets TOTP");
    let console = driver.browser();
    // A wrong code is refused with a sentence.
    console.goto(&format!("{}/console", base(desk)));
    console.fill("#username", username);
    console.fill("#password", PASSWORD);
    console.fill("#totp", "000000");
    console.click("#signin-form button[type=submit]");
    console.wait_text("#signin-error", "The username, password or code is not right", WAIT);
    console.assert_accessible("the console's sign-in, refused");
    sign_in_with_keyboard(&console, desk, username, &totp);
    console
}

/// The kiosk (set up by fragment, as staff may) and the consultant in an admitted call.
fn admitted_call<'a>(driver: &'a Driver, desk: &Desk, appointment: &Value) -> (Browser<'a>, Browser<'a>) {
    let (token, _) = desk.link(appointment);
    let kiosk = driver.browser();
    kiosk.goto(&format!("{}/room#credential={}", base(desk), desk.kiosk));
    kiosk.wait_text("#lobby-title", "Waiting for the clinician", WAIT);
    assert!(!kiosk.run("return location.href").as_str().unwrap().contains("credential"));
    let consultant = driver.browser();
    admit_the_waiting_room(&consultant, &kiosk, &format!("{}/join/{token}", base(desk)));
    (kiosk, consultant)
}

/// The consultant opens the link, passes the device check and admits the kiosk waiting in the
/// lobby; both pages then show the call.
pub fn admit_the_waiting_room(consultant: &Browser<'_>, kiosk: &Browser<'_>, link_url: &str) {
    through_device_check(consultant, link_url);
    consultant.click("#continue");
    consultant.wait_text("#arrival", "has arrived", WAIT);
    consultant.click("#admit-list button");
    kiosk.wait_for("the call screen", "return !document.getElementById('call').hidden;", WAIT);
    consultant.wait_for("the call screen", "return !document.getElementById('in-call').hidden;", WAIT);
}

#[test]
fn security_terminates_a_live_session_and_locks_the_room_down() {
    if !chromium_here() {
        return;
    }
    let _heavy = media_heavy();
    let desk = Desk::new();
    let appointment = desk.booked(-5, 25);
    let driver = Driver::start();
    let (kiosk, consultant) = admitted_call(&driver, &desk, &appointment);

    // A network drop: the kiosk reconnects by itself, comes back admitted, and media resumes.
    kiosk.run("window.gatehouseCall.ws.close(3000, 'network drop'); return true;");
    kiosk.wait_text("#banner", "Reconnecting", WAIT);
    kiosk.wait_for(
        "the call screen again",
        "return !document.getElementById('call').hidden && document.getElementById('banner').hidden;",
        WAIT,
    );
    // A reload: the credential is kept, the kiosk rejoins and is still admitted.
    kiosk.goto(&format!("{}/room", base(&desk)));
    kiosk.wait_for("the call screen after a reload", "return !document.getElementById('call').hidden;", WAIT);
    assert_media_flows(&kiosk, &consultant);
    assert_video_plays(&kiosk, "#remote");
    assert_video_plays(&consultant, "#remote");

    let console = security_console(&driver, &desk, "guard");

    // Live sessions, as metadata: the room, who is in it, and its history.
    console.wait_text("#live-body", "Room 1", WAIT);
    let row = console.text("#live-body");
    assert!(row.contains("Dr Test (clinician)") && row.contains("Room 1 (room)"), "{row}");
    assert!(row.contains("connected"), "{row}");
    // Each member's connection quality, as a word and figures, once the media core has
    // measured it: never a colour alone.
    console.wait_for("every member's connection graded", MEMBERS_GRADED, WAIT);
    let quality = console.text("#live-body .link-quality");
    for role in ["room", "clinician"] {
        let line = quality.lines().find(|l| l.starts_with(role)).unwrap_or_else(|| panic!("{quality}"));
        assert!(["Good", "Fair", "Poor"].iter().any(|grade| line.contains(grade)), "{line}");
        assert!(line.contains("round trip") && line.contains("lost from them"), "{line}");
    }
    console.click("#live-body details summary");
    console.wait_text("#live-body details", "admitted", WAIT);
    console.assert_accessible("the live sessions");
    console.screenshot("console-live-sessions");

    console.click("#live-body button.danger");
    console.wait_text("#terminate-dialog", "End this consultation now?", WAIT);
    console.assert_accessible("the terminate dialog");
    console.fill("#terminate-reason", "an incident on the wing");
    console.click("#terminate-confirm");
    for (page, what) in [(&kiosk, "kiosk"), (&consultant, "consultant")] {
        let shown = page.wait_text("#ended-reason", "Security staff ended this consultation", WAIT);
        assert!(shown.contains("an incident on the wing"), "the {what} shows {shown:?}");
    }
    kiosk.screenshot("room-terminated");
    consultant.screenshot("consultant-terminated");
    console.wait_text("#live-status", "No consultation is live now", WAIT);

    // Lockdown of the room: the consultant's next join says so.
    console.click("#tabs button:nth-child(2)");
    console.wait_text("#lockdown-list", "No lockdown in force", WAIT);
    console.fill("#lockdown-reason", "the prison is in lockdown");
    console.click("#lockdown-form button[type=submit]");
    console.wait_text("#lockdown-list", "Room 1", WAIT);
    console.assert_accessible("the lockdowns");
    console.screenshot("console-lockdown");
    consultant.goto(consultant.run("return location.href;").as_str().unwrap());
    let shown =
        consultant.wait_text("#refused-reason", "This appointment was cancelled: the prison is in lockdown", WAIT);
    // The lockdown's own reason, not the earlier termination's.
    assert!(shown.ends_with("Reason given: the prison is in lockdown"), "{shown}");
    consultant.screenshot("consultant-lockdown");
    console.click("#lockdown-list button");
    console.wait_text("#lockdown-list", "No lockdown in force", WAIT);
    // A whole site, likewise.
    console.fill("#lockdown-scope", "site");
    console.fill("#lockdown-reason", "a search of the whole prison");
    console.click("#lockdown-form button[type=submit]");
    console.wait_text("#lockdown-list", "all of HMP Test", WAIT);
    console.click("#lockdown-list button");
    console.wait_text("#lockdown-list", "No lockdown in force", WAIT);

    // The room's credential is revoked: the kiosk asks staff for a new one, and says why.
    let revoked =
        desk.gw.staff_request(&desk.scheduler, "DELETE", &format!("/api/v1/rooms/{}/device", desk.room_id()), None);
    assert_eq!(revoked.status, 204);
    kiosk.wait_text("#setup-reason", "credential was withdrawn", WAIT);
    kiosk.screenshot("room-credential-withdrawn");
}

#[test]
fn an_auditor_finds_exports_and_verifies_the_records_and_every_refusal_reads_as_a_sentence() {
    if !chromium_here() {
        return;
    }
    let _heavy = media_heavy();
    let desk = Desk::new();
    let appointment = desk.booked(-5, 25);
    let appointment_id = appointment["id"].as_str().unwrap().to_owned();
    let (token, _) = desk.link(&appointment);
    let driver = Driver::start();
    let link_url = format!("{}/join/{token}", base(&desk));

    // The consultant's browser takes the link; a second browser is refused with a sentence.
    let consultant = driver.browser();
    consultant.goto(&link_url);
    consultant.wait_text("#check-verdict", "", WAIT);
    consultant.wait_text("#status", "Welcome, Dr Test", WAIT);
    let other = driver.browser();
    other.goto(&link_url);
    other.wait_text("#refused-reason", "already opened in another browser", WAIT);
    // A mistyped link.
    other.goto(&format!("{}/join/not-a-real-link", base(&desk)));
    other.wait_text("#refused-reason", "This link is not valid", WAIT);
    other.screenshot("consultant-link-invalid");
    // A cancelled appointment says why.
    let later = desk.booked(30, 45);
    let (cancelled_token, _) = desk.link(&later);
    let cancelled = desk.gw.staff_request(
        &desk.scheduler,
        "POST",
        &format!("/api/v1/appointments/{}/cancel", later["id"].as_str().unwrap()),
        Some(json!({ "reason": "the patient was transferred" })),
    );
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    other.goto(&format!("{}/join/{cancelled_token}", base(&desk)));
    other.wait_text("#refused-reason", "This appointment was cancelled: the patient was transferred", WAIT);
    // Every reason code the gateway can give reads as its own sentence, never a code.
    let mut codes: Vec<&str> = gatehouse::auth::policy::Reason::ALL.iter().map(|r| r.code()).collect();
    codes.extend([
        "already_connected",
        "ended_by_clinician",
        "terminated",
        "left",
        "gateway_shutdown",
        "media_failed",
        "media_lost",
        "origin_forbidden",
        "audit_unavailable",
        "offer_rate_limited",
        "join_timeout",
        "invalid_json",
        "invalid_message",
        "unknown_type",
        "unsupported_version",
        "too_large",
        "bad_sdp",
        "not_joined",
        "already_joined",
        "not_found",
        "guest_link_revoked",
    ]);
    let sentences = other.run_async(
        "const done = arguments[arguments.length - 1];
         import('/static/js/reasons.js').then((m) => done(Object.fromEntries(arguments[0].map((c) => [c, m.CODES.includes(c) ? m.sentence(c) : null]))));"
            .replace("arguments[0]", &serde_json::to_string(&codes).unwrap())
            .as_str(),
    );
    for code in &codes {
        let sentence = sentences[code].as_str().unwrap_or_else(|| panic!("{code} has no sentence: {sentences}"));
        assert!(sentence.ends_with('.') && sentence.len() > 20 && !sentence.contains('_'), "{code}: {sentence}");
    }
    drop(other);

    // The auditor finds the appointment's records, reads one, pages, and exports.
    let console = security_console(&driver, &desk, "auditor");
    console.click("#tabs button:nth-child(3)");
    console.wait_text("#audit-status", "Records", WAIT);
    console.fill("#audit-appointment", &appointment_id);
    console.fill("#audit-limit", "25");
    console.click("#audit-form button[type=submit]");
    console.wait_for(
        "the appointment's records alone",
        "const t = document.getElementById('audit-body').innerText; return t.includes('link.used') && !t.includes('gateway.started');",
        WAIT,
    );
    let found = console.text("#audit-body");
    assert!(found.contains("link.refused") && found.contains("refused: link_bound_elsewhere"), "{found}");
    assert!(found.contains("appointment.booked") && found.contains("link.issued"), "{found}");
    console.click("#audit-body button");
    console.wait_text("#record-body", "leaf hash", WAIT);
    let detail = console.text("#record-body");
    assert!(detail.contains(&appointment_id), "{detail}");
    console.assert_accessible("an audit record's detail");
    console.screenshot("console-audit-record");
    console.click("#record-close");
    console.assert_accessible("the audit search");
    console.run("document.getElementById('audit-status').scrollIntoView(); return true;");
    console.screenshot("console-audit");
    // Paging through the whole log.
    console.fill("#audit-appointment", "");
    console.fill("#audit-limit", "25");
    console.click("#audit-form button[type=submit]");
    console.wait_for("a next page", "return !document.getElementById('audit-next').disabled;", WAIT);
    let first = console.text("#audit-body tr:first-child td:first-child");
    console.click("#audit-next");
    console.wait_for(
        "the second page",
        &format!("const c = document.querySelector('#audit-body tr td'); return c && c.innerText !== '{first}';"),
        WAIT,
    );
    console.click("#audit-prev");
    console.wait_text("#audit-body tr:first-child td:first-child", &first, WAIT);

    // The integrity status names the last verified checkpoint.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        console.click("#integrity-check");
        let status = console.wait_text("#integrity-status", "Verified", WAIT);
        if status.contains("last verified checkpoint at tree size") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no checkpoint verified: {status}");
        std::thread::sleep(Duration::from_secs(1));
    }

    // Exports of the appointment's records, and of the whole log, which verifies.
    // The page hands the export to the browser's downloads as a blob; keep a hold of it.
    console.run("const make = URL.createObjectURL; URL.createObjectURL = (blob) => { window.exported = blob; return make(blob); }; return true;");
    let export = |format: &str, appointment: &str| -> String {
        console.fill("#audit-appointment", appointment);
        console.fill("#export-format", format);
        console.run("document.getElementById('export-status').textContent = ''; return true;");
        console.click("#export");
        console.wait_text("#export-status", "Exported", WAIT);
        console
            .run_async("const done = arguments[arguments.length - 1]; window.exported.text().then(done);")
            .as_str()
            .unwrap()
            .to_owned()
    };
    let csv = export("csv", &appointment_id);
    assert!(csv.lines().count() > 3 && csv.contains("link.used"), "{csv}");
    let fhir: Value = serde_json::from_str(&export("fhir", &appointment_id)).unwrap();
    assert_eq!(fhir["resourceType"], "Bundle");
    assert!(fhir["entry"].as_array().unwrap().iter().all(|e| e["resource"]["resourceType"] == "AuditEvent"));
    console.screenshot("console-audit-exported");
    let checkpoint = console.run_async(
        "const done = arguments[arguments.length - 1]; fetch('/api/v1/audit/checkpoint').then((r) => r.json()).then((c) => done(c.note));",
    );
    let jsonl = export("jsonl", "");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("export.jsonl"), &jsonl).unwrap();
    std::fs::write(dir.path().join("checkpoint.txt"), checkpoint.as_str().unwrap()).unwrap();
    let data = desk.gw.dir.join("data");
    let (code, out, err) = crate::support::run_cli(
        &[
            "audit",
            "verify",
            "--data-dir",
            data.to_str().unwrap(),
            "--export",
            dir.path().join("export.jsonl").to_str().unwrap(),
            "--pin",
            dir.path().join("checkpoint.txt").to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 0, "the exported log does not verify: {out}{err}");
    assert!(out.starts_with("OK"), "{out}");
}

#[test]
fn a_guest_invited_from_the_call_page_waits_until_admitted_and_the_clinicians_end_closes_the_call_for_both() {
    if !chromium_here() {
        return;
    }
    let _heavy = media_heavy();
    let desk = Desk::new();
    let appointment = desk.booked(-5, 25);
    let id = appointment["id"].as_str().unwrap();
    let (token, _) = desk.link(&appointment);
    let driver = Driver::start();

    let clinician = driver.browser();
    through_device_check(&clinician, &format!("{}/join/{token}", base(&desk)));
    clinician.click("#continue");
    clinician.wait_text("#arrival", "The room has not arrived yet", WAIT);

    // The booking lists an interpreter, whom the clinician invites from the page: the gateway
    // gives the page the interpreter's link to pass on.
    clinician.wait_text("#waiting-room .invite-list", "Guests on this booking", WAIT);
    clinician.click("#waiting-room .invite button");
    clinician.wait_text("#waiting-room .invite", "Send this link to An Interpreter", WAIT);
    clinician.assert_accessible("the clinician's waiting room with a guest's link");
    clinician.screenshot("consultant-invites-guest");
    let guest_url = clinician.run("return document.querySelector('#waiting-room .invite input').value;");
    let guest_url = guest_url.as_str().unwrap().to_owned();
    assert!(guest_url.starts_with(&format!("{}/join/", base(&desk))), "{guest_url}");
    // A dropped connection comes back by itself, and the link stays on the page.
    clinician.run("window.gatehouseCall.ws.close(); return null;");
    clinician.wait_text("#banner", "Reconnecting", WAIT);
    clinician.wait_for("the reconnection", "return document.getElementById('banner').hidden;", WAIT);
    let still_shown = clinician.run("return document.querySelector('#waiting-room .invite input')?.value ?? null;");
    assert_eq!(still_shown.as_str(), Some(guest_url.as_str()), "the link was lost on reconnecting");

    // The interpreter waits, sees no one, and is told so.
    let guest = driver.browser();
    through_device_check(&guest, &guest_url);
    assert!(guest.text("#status").contains("Welcome, An Interpreter"), "{}", guest.text("#status"));
    guest.click("#continue");
    guest.wait_text("#status", "The clinician will let you in", WAIT);
    assert_eq!(guest.run("return document.getElementById('end').hidden;"), json!(true), "a guest may not end the call");
    guest.assert_accessible("a guest's waiting room");
    guest.screenshot("guest-waiting-room");

    clinician.wait_text("#admit-list", "Admit An Interpreter", WAIT);
    clinician.click("#admit-list button");
    guest.wait_for("the call screen", "return !document.getElementById('in-call').hidden;", WAIT);
    clinician.wait_for("the call screen", "return !document.getElementById('in-call').hidden;", WAIT);
    assert_video_plays(&guest, "#remote");
    assert_video_plays(&clinician, "#remote");

    // End consultation asks first; keeping talking keeps the call.
    clinician.click("#end");
    clinician.wait_text("#end-dialog", "End the consultation for everyone?", WAIT);
    clinician.assert_accessible("the end-consultation question");
    clinician.click("#end-cancel");
    assert_eq!(clinician.run("return document.getElementById('in-call').hidden;"), json!(false));
    clinician.click("#end");
    clinician.click("#end-confirm");
    guest.wait_text("#ended-reason", "The clinician ended the consultation", WAIT);
    clinician.wait_text("#ended-reason", "The clinician ended the consultation", WAIT);
    let shown = desk.gw.staff_request(&desk.scheduler, "GET", &format!("/api/v1/appointments/{id}"), None);
    assert_eq!(shown.json()["status"], "ended", "{}", shown.body);
}

/// The widths of the layers `browser` is sending now, and how many layers are flowing.
fn sent_layers(browser: &Browser<'_>) -> (BTreeSet<u64>, usize) {
    let layers = browser.run_async(SENT_LAYERS);
    let layers = layers.as_array().cloned().unwrap_or_default();
    let flowing = layers.iter().filter(|l| l["frames"].as_u64().unwrap_or(0) > 0).count();
    let widths = layers.iter().filter_map(|l| l["width"].as_u64()).filter(|w| *w > 0).collect();
    (widths, flowing)
}

/// `browser`'s one inbound camera stream: (frames decoded, width, picture-loss reports).
fn received_camera(browser: &Browser<'_>) -> (u64, u64, u64) {
    let streams = browser.run_async(RECEIVED_CAMERA);
    let streams = streams.as_array().cloned().unwrap_or_default();
    assert!(streams.len() <= 1, "one camera arrived as several streams: {streams:?}");
    let field = |name: &str| streams.first().and_then(|s: &Value| s[name].as_u64()).unwrap_or(0);
    (field("frames"), field("width"), field("plis"))
}

/// `viewer` decodes exactly one clean layer of `sender`'s simulcast camera, and on loopback the
/// bandwidth estimate lets it reach the top layer.
fn decodes_one_clean_layer(viewer: &Browser<'_>, sender: &Browser<'_>, who: &str) {
    // The sender really publishes in simulcast: at least two layers flow.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut sent = sent_layers(sender);
    while sent.1 < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        sent = sent_layers(sender);
    }
    assert!(sent.1 >= 2, "{who}: the camera is not sent in simulcast: {sent:?}");

    // Every width the viewer decodes is one of the layers' widths, and it reaches the top one.
    let mut layer_widths = BTreeSet::new();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let top = loop {
        let (widths, _) = sent_layers(sender);
        layer_widths.extend(widths.iter().copied());
        let (_, width, _) = received_camera(viewer);
        if width > 0 {
            seen.push(width);
        }
        let top = widths.last().copied().unwrap_or(0);
        if width > 0 && width == top {
            break top;
        }
        assert!(Instant::now() < deadline, "{who}: never got the top layer ({top} wide); decoded {seen:?}");
        std::thread::sleep(Duration::from_millis(250));
    };
    eprintln!("{who}: layers {layer_widths:?}, {} flowing; decoded widths {seen:?}", sent.1);
    assert!(top >= 320, "{who}: the top layer is only {top} pixels wide");
    // The switch to it waited for a keyframe the gateway asked of that very layer, by its rid.
    let layers = sender.run_async(SENT_LAYERS);
    let top_layer = layers.as_array().into_iter().flatten().find(|l| l["width"].as_u64() == Some(top));
    let requests = top_layer.and_then(|l| l["keyframe_requests"].as_u64()).unwrap_or(0);
    assert!(requests >= 1, "{who}: no keyframe request reached the top layer: {layers}");
    assert!(
        seen.iter().all(|w| layer_widths.contains(w)),
        "{who}: decoded widths {seen:?} are not all layer widths {layer_widths:?}"
    );

    // From there the picture runs clean: frames keep coming, at the top layer's width, and the
    // decoder never reports a lost picture (which mixed layers would cause at once).
    let (frames_before, _, plis_before) = received_camera(viewer);
    for _ in 0..12 {
        std::thread::sleep(Duration::from_millis(250));
        let (widths, _) = sent_layers(sender);
        layer_widths.extend(widths);
        let (_, width, _) = received_camera(viewer);
        assert!(layer_widths.contains(&width), "{who}: decoding {width} wide; the layers are {layer_widths:?}");
    }
    let (frames_after, _, plis_after) = received_camera(viewer);
    assert!(frames_after >= frames_before + 30, "{who}: only {} frames in 3 s", frames_after - frames_before);
    assert!(plis_after <= plis_before + 1, "{who}: {} picture-loss reports in 3 s", plis_after - plis_before);
}

#[test]
fn each_side_decodes_one_clean_layer_of_the_others_simulcast_camera() {
    if !chromium_here() {
        return;
    }
    let _heavy = media_heavy();
    let desk = Desk::new();
    let driver = Driver::start();
    let appointment = desk.booked(-5, 25);
    let (kiosk, consultant) = admitted_call(&driver, &desk, &appointment);
    decodes_one_clean_layer(&kiosk, &consultant, "the kiosk");
    decodes_one_clean_layer(&consultant, &kiosk, "the consultant");
    kiosk.screenshot("room-sees-simulcast-camera");
}

#[test]
fn a_kiosk_behind_a_limited_address_is_still_answered_and_a_refused_credential_is_asked_for_again() {
    if !chromium_here() {
        return;
    }
    let _heavy = media_heavy();
    // The kiosks' shared address has used up its allowance of refused credentials, for an hour.
    let desk = Desk::with_settings(&["--join-burst", "1", "--join-refill", "1h"]);
    let lookup = |credential: &str| {
        desk.gw.request("POST", "/api/v1/kiosk", &[], Some(&json!({ "device_credential": credential })))
    };
    assert_eq!(lookup("ghr_made-up").status, 401);
    assert_eq!(lookup("ghr_made-up").status, 429);
    let driver = Driver::start();
    let kiosk = driver.browser();
    // The room's real kiosk still learns its room and measures its connection both ways.
    set_up_kiosk(&kiosk, &desk);
    kiosk.wait_text("#connection-result", "upload", WAIT);
    // A refused credential gets the limit's sentence, and the kiosk asks staff for the right one.
    // (Away first: from the same page a new fragment alone would not load it again.)
    kiosk.goto("about:blank");
    kiosk.goto(&format!("{}/room#credential=ghr_made-up", base(&desk)));
    // The wait comes from the answer's Retry-After: most of the hour's refill.
    let shown = kiosk.wait_text("#setup-reason", "Too many attempts. Try again in ", WAIT);
    assert!(shown.contains(" minutes. Staff: enter the room credential again."), "{shown}");
}

#[test]
fn a_consultant_turned_away_by_the_door_limit_is_let_in_by_the_page_once_the_wait_is_over() {
    if !chromium_here() {
        return;
    }
    let _heavy = media_heavy();
    // One join attempt per address, then one more every 10 s.
    let desk = Desk::with_settings(&["--join-burst", "1", "--join-refill", "10s"]);
    let appointment = desk.booked(-5, 25);
    let (token, _) = desk.link(&appointment);
    // The browser starts first: on a busy machine starting it can take longer than the refill.
    let driver = Driver::start();
    let consultant = driver.browser();
    // Another attempt from the same address has just spent the allowance.
    let spent = desk.gw.request("POST", "/api/v1/join/link", &[], Some(&json!({ "token": "made-up" })));
    assert!(spent.status != 200 && spent.status != 429, "{} {}", spent.status, spent.body);
    consultant.goto(&format!("{}/join/{token}", base(&desk)));
    let shown = consultant.wait_text("#refused-reason", "Too many attempts. Try again in ", WAIT);
    assert!(shown.ends_with(". This page will try again by itself."), "{shown}");
    consultant.assert_accessible("the consultant's page turned away by the door limit");
    // Once the wait is over the page asks again by itself, and the link is let through.
    consultant.wait_text("#check-verdict", "Pass", WAIT);
}

#[test]
fn a_locked_staff_account_is_told_at_the_console_when_it_may_sign_in_again() {
    if !chromium_here() {
        return;
    }
    let _heavy = media_heavy();
    let desk = Desk::new();
    let driver = Driver::start();
    let console = driver.browser();
    console.goto(&format!("{}/console", base(&desk)));
    console.wait_text("#signin", "Sign in", WAIT);
    for _ in 0..10 {
        let body = json!({ "username": "sched", "password": "wrong password!!" });
        assert_eq!(desk.gw.request("POST", "/api/v1/session", &[], Some(&body)).status, 401);
    }
    // Even the right password is refused now, and the page says how long the lock has left,
    // from the answer's Retry-After.
    console.fill("#username", "sched");
    console.fill("#password", PASSWORD);
    console.click("#signin-form button[type=submit]");
    let shown = console.wait_text("#signin-error", "This account is locked after too many failed sign-ins.", WAIT);
    // 15 minutes, less what the test has taken since the tenth failure.
    assert!(shown.ends_with("Try again in 15 minutes.") || shown.ends_with("Try again in 14 minutes."), "{shown}");
    console.assert_accessible("the console's sign-in, locked");
}
