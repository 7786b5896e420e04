//! Scheduling and authorisation over real HTTPS: staff sign-in, CSRF, lockout and session
//! timeouts, rooms, appointments, links, lockdowns, and every refusal reason produced by the
//! situation it names and audited.

use serde_json::{Value, json};

use crate::support::{Gateway, Response, Session};

pub const PASSWORD: &str = "correct horse battery staple";

/// A gateway with a scheduler and a security officer signed in and one room enrolled.
pub struct Desk {
    pub gw: Gateway,
    _dir: tempfile::TempDir,
    pub scheduler: Session,
    pub security: Session,
    pub room: Value,
    pub kiosk: String,
}

impl Desk {
    pub fn new() -> Self {
        Self::with_settings(&[])
    }

    /// A desk on a gateway started with the extra `serve` flags `settings`.
    pub fn with_settings(settings: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let gw = Gateway::start_in(dir.path(), settings);
        gw.add_staff("sched", "scheduler", PASSWORD, false);
        let security_totp = gw.add_staff("officer", "security", PASSWORD, false).expect("security gets TOTP");
        let scheduler = gw.sign_in("sched", PASSWORD, None);
        let security = gw.sign_in("officer", PASSWORD, Some(&security_totp));
        let enrolled = gw.staff_request(
            &scheduler,
            "POST",
            "/api/v1/rooms",
            Some(json!({ "site": "HMP Test", "name": "Room 1", "timezone": "Europe/London" })),
        );
        assert_eq!(enrolled.status, 201, "{}", enrolled.body);
        let enrolled = enrolled.json();
        Self {
            kiosk: enrolled["device_credential"].as_str().unwrap().to_owned(),
            room: enrolled["room"].clone(),
            gw,
            _dir: dir,
            scheduler,
            security,
        }
    }

    pub fn room_id(&self) -> &str {
        self.room["id"].as_str().unwrap()
    }

    /// Books an appointment in this desk's room from `start_min` to `end_min` minutes from now.
    pub fn book(&self, start_min: i64, end_min: i64) -> Response {
        let now = jiff::Timestamp::now();
        let at = |m: i64| (now + jiff::SignedDuration::from_mins(m)).to_string();
        self.gw.staff_request(
            &self.scheduler,
            "POST",
            "/api/v1/appointments",
            Some(json!({
                "room_id": self.room_id(),
                "start": at(start_min),
                "end": at(end_min),
                "clinician": { "name": "Dr Test", "email": "dr.test@hospital.example" },
                "patient_pseudonym": "PT-0042",
                "escort_name": "Officer Test",
                "guests": [{ "name": "An Interpreter", "kind": "interpreter" }],
            })),
        )
    }

    pub fn booked(&self, start_min: i64, end_min: i64) -> Value {
        let response = self.book(start_min, end_min);
        assert_eq!(response.status, 201, "{}", response.body);
        response.json()
    }

    /// Issues the clinician's link for `appointment`; returns the token.
    pub fn link(&self, appointment: &Value) -> (String, String) {
        let id = appointment["id"].as_str().unwrap();
        let body = json!({ "participant_id": appointment["clinician"]["id"] });
        let issued =
            self.gw.staff_request(&self.scheduler, "POST", &format!("/api/v1/appointments/{id}/links"), Some(body));
        assert_eq!(issued.status, 201, "{}", issued.body);
        let issued = issued.json();
        let url = issued["url"].as_str().unwrap();
        assert!(url.starts_with("https://localhost/join/"), "{url}");
        (url.rsplit('/').next().unwrap().to_owned(), issued["link_id"].as_str().unwrap().to_owned())
    }

    /// Issues the (first) guest's link for `appointment`; returns the token.
    pub fn guest_link(&self, appointment: &Value) -> String {
        let id = appointment["id"].as_str().unwrap();
        let body = json!({ "participant_id": appointment["guests"][0]["id"] });
        let issued =
            self.gw.staff_request(&self.scheduler, "POST", &format!("/api/v1/appointments/{id}/links"), Some(body));
        assert_eq!(issued.status, 201, "{}", issued.body);
        issued.json()["url"].as_str().unwrap().rsplit('/').next().unwrap().to_owned()
    }

    /// Presents a link from the browser holding `browser_cookie` (None: a new browser).
    pub fn join(&self, token: &str, browser_cookie: Option<&str>) -> Response {
        let headers: Vec<(&str, &str)> = browser_cookie.map(|c| ("Cookie", c)).into_iter().collect();
        self.gw.request("POST", "/api/v1/join/link", &headers, Some(&json!({ "token": token })))
    }

    pub fn join_room(&self, credential: &str) -> Response {
        self.gw.request("POST", "/api/v1/join/room", &[], Some(&json!({ "device_credential": credential })))
    }

    /// The audit records of `kind` with outcome `reason`, read as security staff.
    pub fn refusals(&self, kind: &str, reason: &str) -> Vec<Value> {
        let page = self.gw.staff_request(
            &self.security,
            "GET",
            &format!("/api/v1/audit/records?kind={kind}&outcome=refused&limit=1000"),
            None,
        );
        assert_eq!(page.status, 200, "{}", page.body);
        page.json()["records"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["record"]["outcome"]["reason"] == reason)
            .cloned()
            .collect()
    }

    /// Moves the clock past the summary interval and waits for the address's one summary of
    /// the `rate_limited` refusals of `kind` after the first of the run: its record.
    pub fn rate_limited_summary(&self, kind: &str) -> Value {
        self.gw.set_clock_offset(61);
        let limited = self.awaited_refusals(kind, "rate_limited", 2);
        assert_eq!(limited.len(), 2, "one summary per address per minute: {limited:#?}");
        limited[1]["record"].clone()
    }

    /// Moves the clock past the summary interval and waits for the summary of the refused
    /// requests that went beyond their address's share of records: its record.
    pub fn repeated_refusals_summary(&self) -> Value {
        self.gw.set_clock_offset(61);
        let summaries = self.awaited_refusals("access.denied", "repeated_refusals", 1);
        assert_eq!(summaries.len(), 1, "one summary per address per minute: {summaries:#?}");
        summaries[0]["record"].clone()
    }

    /// [`Self::refusals`] once there are at least `count` of them, for records written as
    /// something ends rather than before an answer.
    pub fn awaited_refusals(&self, kind: &str, reason: &str, count: usize) -> Vec<Value> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let refused = self.refusals(kind, reason);
            if refused.len() >= count {
                return refused;
            }
            assert!(std::time::Instant::now() < deadline, "{refused:#?}: fewer than {count} {kind} {reason}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

fn assert_refused(response: &Response, status: u16, code: &str) {
    assert_eq!(response.status, status, "expected {code}: {}", response.body);
    let body = response.json();
    assert_eq!(body["code"], code, "{}", response.body);
    assert!(!body["message"].as_str().unwrap_or_default().is_empty());
}

fn browser_cookie(response: &Response) -> String {
    response.header("set-cookie").expect("a browser cookie").split(';').next().unwrap().to_owned()
}

#[test]
fn failed_sign_ins_are_limited_per_address_and_their_refusals_summarised_in_the_audit() {
    let desk = Desk::with_settings(&["--sign-in-burst", "3", "--sign-in-refill", "1h"]);
    let gw = &desk.gw;
    let sign_in = |username: &str, password: &str| {
        gw.request("POST", "/api/v1/session", &[], Some(&json!({ "username": username, "password": password })))
    };
    // Guesses sprayed across usernames, so that no one account's lockout is reached.
    for username in ["nobody", "noone", "nemo"] {
        assert_refused(&sign_in(username, PASSWORD), 401, "not_authenticated");
    }
    // The address has spent its allowance: even the right password is refused unchecked,
    // with the wait of a whole refill.
    let limited = sign_in("sched", PASSWORD);
    assert_refused(&limited, 429, "rate_limited");
    let wait = limited.retry_after();
    assert!((3500..=3600).contains(&wait), "Retry-After: {wait}");
    let message = limited.json()["message"].as_str().unwrap().to_owned();
    assert_eq!(message, "Too many failed sign-ins from this network. Try again in 60 minutes.");
    for _ in 0..4 {
        assert_refused(&sign_in("nobody", PASSWORD), 429, "rate_limited");
    }
    // Staff already signed in carry on.
    assert_eq!(gw.staff_request(&desk.scheduler, "GET", "/api/v1/session", None).status, 200);
    // The first refusal of the run is recorded at once, the other four in the address's summary.
    let limited = desk.refusals("staff.sign_in_failed", "rate_limited");
    assert_eq!(limited.len(), 1, "{limited:#?}");
    assert_eq!(limited[0]["record"]["ip"], "127.0.0.1");
    assert!(limited[0]["record"]["details"]["attempts"].is_null(), "{limited:#?}");
    assert_eq!(desk.refusals("staff.sign_in_failed", "not_authenticated").len(), 3);
    let summary = desk.rate_limited_summary("staff.sign_in_failed");
    assert_eq!(summary["ip"], "127.0.0.1", "{summary}");
    assert_eq!(summary["details"]["attempts"], 4, "{summary}");
    // Once the wait is over, the right password is let through again.
    gw.set_clock_offset(i64::try_from(wait).unwrap());
    gw.sign_in("sched", PASSWORD, None);
    // The operators' metrics count the same records, by kind, outcome and reason.
    let metrics = gw.admin_get("/metrics").body;
    for (reason, count) in [("not_authenticated", 3), ("rate_limited", 2)] {
        let series = format!(
            r#"gatehouse_audit_records_total{{kind="staff.sign_in_failed",outcome="refused",reason="{reason}"}} {count}"#
        );
        assert!(metrics.lines().any(|l| l == series), "no {series} in:\n{metrics}");
    }
}

#[test]
fn sign_ins_sent_at_once_cannot_all_pass_on_the_addresss_last_failures() {
    let desk = Desk::with_settings(&["--sign-in-burst", "3", "--sign-in-refill", "1h"]);
    let body = json!({ "username": "nobody", "password": PASSWORD });
    // Twelve guesses at once, while each one's password check is still running.
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let guesses: Vec<_> = (0..12)
            .map(|_| scope.spawn(|| desk.gw.request("POST", "/api/v1/session", &[], Some(&body)).status))
            .collect();
        guesses.into_iter().map(|g| g.join().unwrap()).collect()
    });
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((checked, limited), (3, 9), "{statuses:?}");
}

#[test]
fn staff_sign_in_needs_password_and_totp_and_locks_after_ten_failures() {
    let desk = Desk::new();
    let gw = &desk.gw;
    // Security staff cannot sign in without the second factor.
    let no_totp =
        gw.request("POST", "/api/v1/session", &[], Some(&json!({ "username": "officer", "password": PASSWORD })));
    assert_refused(&no_totp, 401, "not_authenticated");
    let unknown =
        gw.request("POST", "/api/v1/session", &[], Some(&json!({ "username": "nobody", "password": PASSWORD })));
    assert_refused(&unknown, 401, "not_authenticated");
    // Longer than any password can be: refused unread, and audited like any other failure.
    let over_long =
        gw.request("POST", "/api/v1/session", &[], Some(&json!({ "username": "sched", "password": "x".repeat(300) })));
    assert_refused(&over_long, 401, "not_authenticated");
    for _ in 0..10 {
        let wrong = gw.request(
            "POST",
            "/api/v1/session",
            &[],
            Some(&json!({ "username": "sched", "password": "wrong password!!" })),
        );
        assert_refused(&wrong, 401, "not_authenticated");
    }
    // Locked: even the right password is refused for 15 minutes.
    let locked =
        gw.request("POST", "/api/v1/session", &[], Some(&json!({ "username": "sched", "password": PASSWORD })));
    assert_refused(&locked, 429, "rate_limited");
    // Retry-After says when the lock lifts: 15 minutes after the tenth failure.
    let wait = locked.retry_after();
    assert!((14 * 60..=15 * 60).contains(&wait), "Retry-After: {wait}");
    assert!(locked.json()["message"].as_str().unwrap().contains("15 minutes"), "{}", locked.body);
    let wait = i64::try_from(wait).unwrap();
    gw.set_clock_offset(wait - 2);
    let still_locked =
        gw.request("POST", "/api/v1/session", &[], Some(&json!({ "username": "sched", "password": PASSWORD })));
    assert!(still_locked.retry_after() <= 2, "{still_locked:?}");
    gw.set_clock_offset(wait);
    gw.sign_in("sched", PASSWORD, None);
    gw.set_clock_offset(0);
    assert!(desk.refusals("staff.sign_in_failed", "not_authenticated").len() >= 13);
    assert_eq!(desk.refusals("staff.locked_out", "rate_limited").len(), 1);
    let log = gw.log.lock().unwrap().join("\n");
    assert!(!log.contains(PASSWORD) && !log.contains("wrong password"), "a password reached the log");
}

#[test]
fn the_session_cookie_is_strict_and_state_changes_need_the_csrf_token() {
    let desk = Desk::new();
    let gw = &desk.gw;
    let response =
        gw.request("POST", "/api/v1/session", &[], Some(&json!({ "username": "sched", "password": PASSWORD })));
    let cookie = response.header("set-cookie").unwrap();
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let session = &desk.scheduler;
    let body = json!({ "site": "HMP Test", "name": "Room 2", "timezone": "Europe/London" });
    let forged = gw.request("POST", "/api/v1/rooms", &[("Cookie", session.cookie.as_str())], Some(&body));
    assert_refused(&forged, 403, "csrf_failed");
    let wrong = gw.request(
        "POST",
        "/api/v1/rooms",
        &[("Cookie", session.cookie.as_str()), ("X-CSRF-Token", "nope")],
        Some(&body),
    );
    assert_refused(&wrong, 403, "csrf_failed");
    // Reads need no token.
    assert_eq!(gw.request("GET", "/api/v1/rooms", &[("Cookie", session.cookie.as_str())], None).status, 200);
    assert_eq!(gw.staff_request(session, "POST", "/api/v1/rooms", Some(body)).status, 201);
    assert_eq!(desk.refusals("access.denied", "csrf_failed").len(), 2);
}

#[test]
fn sessions_end_after_15_idle_minutes_and_after_8_hours() {
    let desk = Desk::new();
    let gw = &desk.gw;
    let session = gw.sign_in("sched", PASSWORD, None);
    gw.set_clock_offset(14 * 60);
    assert_eq!(gw.staff_request(&session, "GET", "/api/v1/rooms", None).status, 200);
    gw.set_clock_offset(14 * 60 + 15 * 60 + 1);
    assert_refused(&gw.staff_request(&session, "GET", "/api/v1/rooms", None), 401, "not_authenticated");

    // Busy all day: kept alive every 10 minutes, it still ends at 8 hours.
    gw.set_clock_offset(0);
    let busy = gw.sign_in("sched", PASSWORD, None);
    let mut offset = 0;
    while offset < 8 * 3600 - 600 {
        offset += 600;
        gw.set_clock_offset(offset);
        assert_eq!(gw.staff_request(&busy, "GET", "/api/v1/rooms", None).status, 200, "at {offset} s");
    }
    gw.set_clock_offset(8 * 3600);
    assert_refused(&gw.staff_request(&busy, "GET", "/api/v1/rooms", None), 401, "not_authenticated");
}

#[test]
fn bookings_are_validated_and_overlaps_get_409_with_the_clashing_id() {
    let desk = Desk::new();
    let first = desk.booked(60, 90);
    let clash = desk.book(75, 120);
    assert_refused(&clash, 409, "appointment_clash");
    assert_eq!(clash.json()["clashing_appointment"], first["id"]);
    assert_eq!(desk.book(90, 120).status, 201, "back-to-back bookings do not overlap");
    assert_refused(&desk.book(200, 190), 400, "invalid_request");
    assert_refused(&desk.book(200, 200 + 4 * 60 + 1), 400, "invalid_request");
    assert_refused(&desk.book(-120, -60), 400, "invalid_request");
    assert_eq!(first["start_local"].as_str().unwrap().len(), 25, "{first}");
    assert_eq!(first["status"], "booked");

    let gw = &desk.gw;
    let mut bad = desk.book(300, 330).json();
    let _ = &mut bad;
    for (body, code) in [
        (json!({ "room_id": desk.room_id() }), "invalid_request"),
        (
            json!({ "room_id": desk.room_id(), "start": "x", "end": "y", "clinician": { "name": "a", "email": "b@c.d" },
                 "patient_pseudonym": "PT-1", "escort_name": "e", "extra": 1 }),
            "invalid_request",
        ),
        (
            json!({ "room_id": desk.room_id(), "start": "2030-01-01T10:00:00Z", "end": "2030-01-01T10:30:00Z",
                 "clinician": { "name": "a", "email": "b@c.d" }, "patient_pseudonym": "A1234BC", "escort_name": "e" }),
            "invalid_request",
        ),
    ] {
        assert_refused(&gw.staff_request(&desk.scheduler, "POST", "/api/v1/appointments", Some(body)), 400, code);
    }
    let headers = [("Cookie", desk.scheduler.cookie.as_str()), ("X-CSRF-Token", desk.scheduler.csrf.as_str())];
    let mut head = String::from("POST /api/v1/appointments HTTP/1.1\r\nContent-Type: application/json\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let malformed = crate::support::https_request_with_body(
        gw.public,
        &gw.ca_path(),
        &format!("{head}Content-Length: 9\r\n"),
        b"{\"room_id",
    );
    assert_refused(&malformed, 400, "invalid_json");
    let huge = vec![b' '; 100 * 1024];
    let oversized = crate::support::https_request_with_body(
        gw.public,
        &gw.ca_path(),
        &format!("{head}Content-Length: {}\r\n", huge.len()),
        &huge,
    );
    assert_refused(&oversized, 400, "too_large");
}

#[test]
fn every_join_refusal_is_produced_by_its_situation_and_audited() {
    let desk = Desk::new();
    let gw = &desk.gw;

    // window_not_open: the link's window opens 15 minutes before a start an hour away.
    let later = desk.booked(60, 90);
    let (later_token, _) = desk.link(&later);
    assert_refused(&desk.join(&later_token, None), 403, "window_not_open");

    // Allowed now, and bound to the first browser.
    let now_appt = desk.booked(-5, 25);
    let (token, link_id) = desk.link(&now_appt);
    let first = desk.join(&token, None);
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.json()["role"], "clinician");
    assert_eq!(first.json()["display_name"], "Dr Test");
    // A participant learns nothing personal about anyone else at the door.
    for private in ["PT-0042", "dr.test@hospital.example", "Officer Test", "An Interpreter"] {
        assert!(!first.body.contains(private), "the join response carries {private}: {}", first.body);
    }
    let browser = browser_cookie(&first);
    assert_eq!(desk.join(&token, Some(&browser)).status, 200, "the same browser may come back");
    // link_bound_elsewhere: another browser.
    assert_refused(&desk.join(&token, None), 403, "link_bound_elsewhere");
    // link_invalid: presented for another appointment.
    let other = gw.request(
        "POST",
        "/api/v1/join/link",
        &[("Cookie", browser.as_str())],
        Some(&json!({ "token": token, "appointment_id": later["id"] })),
    );
    assert_refused(&other, 403, "link_invalid");
    // link_invalid, too: presented for something that is no appointment id.
    let malformed = gw.request(
        "POST",
        "/api/v1/join/link",
        &[("Cookie", browser.as_str())],
        Some(&json!({ "token": token, "appointment_id": "nope" })),
    );
    assert_refused(&malformed, 403, "link_invalid");
    // link_revoked.
    assert_eq!(gw.staff_request(&desk.scheduler, "DELETE", &format!("/api/v1/links/{link_id}"), None).status, 204);
    assert_refused(&desk.join(&token, Some(&browser)), 403, "link_revoked");

    // The room joins its current appointment; room_not_booked for a room with none.
    let room_join = desk.join_room(&desk.kiosk);
    assert_eq!(room_join.status, 200, "{}", room_join.body);
    assert_eq!(room_join.json()["appointment"]["id"], now_appt["id"]);
    let empty = gw
        .staff_request(
            &desk.scheduler,
            "POST",
            "/api/v1/rooms",
            Some(json!({ "site": "HMP Test", "name": "Empty", "timezone": "Europe/London" })),
        )
        .json();
    assert_refused(&desk.join_room(empty["device_credential"].as_str().unwrap()), 403, "room_not_booked");
    // not_authenticated: a credential nobody issued.
    assert_refused(&desk.join_room("ghr_made-up"), 401, "not_authenticated");

    // room_locked_down: the consultant's join and the room's both stop; the booking shows cancelled.
    let (fresh_token, _) = desk.link(&now_appt);
    let lockdown = gw.staff_request(
        &desk.security,
        "POST",
        "/api/v1/lockdowns",
        Some(json!({ "room_id": desk.room_id(), "reason": "Incident on the wing" })),
    );
    assert_eq!(lockdown.status, 201, "{}", lockdown.body);
    assert_refused(&desk.join(&fresh_token, None), 403, "room_locked_down");
    assert_refused(&desk.join_room(&desk.kiosk), 403, "room_locked_down");
    let shown = gw
        .staff_request(
            &desk.scheduler,
            "GET",
            &format!("/api/v1/appointments/{}", now_appt["id"].as_str().unwrap()),
            None,
        )
        .json();
    assert_eq!(shown["status"], "cancelled");
    assert_eq!(shown["status_reason"], "Incident on the wing");
    let lockdown_id = lockdown.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(
        gw.staff_request(&desk.security, "DELETE", &format!("/api/v1/lockdowns/{lockdown_id}"), None).status,
        204
    );
    let lifted = desk.join(&fresh_token, None);
    assert_eq!(lifted.status, 200, "{}", lifted.body);

    // device_revoked: a replaced credential, then a revoked one.
    let replaced = gw.staff_request(&desk.scheduler, "POST", &format!("/api/v1/rooms/{}/device", desk.room_id()), None);
    assert_eq!(replaced.status, 200, "{}", replaced.body);
    assert_refused(&desk.join_room(&desk.kiosk), 403, "device_revoked");
    let new_kiosk = replaced.json()["device_credential"].as_str().unwrap().to_owned();
    assert_eq!(desk.join_room(&new_kiosk).status, 200);
    assert_eq!(
        gw.staff_request(&desk.scheduler, "DELETE", &format!("/api/v1/rooms/{}/device", desk.room_id()), None).status,
        204
    );
    assert_refused(&desk.join_room(&new_kiosk), 403, "device_revoked");

    // appointment_cancelled.
    let cancelled = desk.booked(100, 130);
    let (cancelled_token, _) = desk.link(&cancelled);
    let id = cancelled["id"].as_str().unwrap();
    let response = gw.staff_request(
        &desk.scheduler,
        "POST",
        &format!("/api/v1/appointments/{id}/cancel"),
        Some(json!({ "reason": "Clinic closed" })),
    );
    assert_eq!(response.json()["status"], "cancelled");
    gw.set_clock_offset(95 * 60);
    assert_refused(&desk.join(&cancelled_token, None), 403, "appointment_cancelled");

    // window_closed: after the booked end, within the overrun (a refused early click did not
    // bind the link, so any browser may still present it).
    let late_token = later_token;
    assert_refused(&desk.join(&late_token, None), 403, "window_closed");
    // appointment_ended: rescheduling an appointment whose time has passed.
    let late_scheduler = gw.sign_in("sched", PASSWORD, None);
    let resched = gw.staff_request(
        &late_scheduler,
        "POST",
        &format!("/api/v1/appointments/{}/reschedule", later["id"].as_str().unwrap()),
        Some(json!({ "start": "2031-01-01T10:00:00Z", "end": "2031-01-01T10:30:00Z" })),
    );
    assert_refused(&resched, 403, "appointment_ended");
    // link_expired: after the hard end.
    gw.set_clock_offset(120 * 60);
    assert_refused(&desk.join(&late_token, None), 403, "link_expired");
    gw.set_clock_offset(0);

    // role_forbidden: security staff cannot book (a booking that would otherwise be valid,
    // tomorrow); not_authenticated: no session at all.
    let tomorrow = |m: i64| (jiff::Timestamp::now() + jiff::SignedDuration::from_mins(24 * 60 + m)).to_string();
    let forbidden = gw.staff_request(
        &desk.security,
        "POST",
        "/api/v1/appointments",
        Some(json!({
        "room_id": desk.room_id(), "start": tomorrow(0), "end": tomorrow(30),
        "clinician": { "name": "a", "email": "b@c.de" }, "patient_pseudonym": "PT-1", "escort_name": "e" })),
    );
    assert_refused(&forbidden, 403, "role_forbidden");
    // Whatever the booking says: who may book is asked first.
    let forbidden_and_invalid = gw.staff_request(
        &desk.security,
        "POST",
        "/api/v1/appointments",
        Some(json!({
        "room_id": desk.room_id(), "start": "9999-12-30T21:00:00Z", "end": "9999-12-30T21:59:59Z",
        "clinician": { "name": "a", "email": "b@c.de" }, "patient_pseudonym": "PT-1", "escort_name": "e" })),
    );
    assert_refused(&forbidden_and_invalid, 403, "role_forbidden");
    assert_refused(&gw.request("GET", "/api/v1/appointments", &[], None), 401, "not_authenticated");

    for (kind, reason) in [
        ("link.refused", "window_not_open"),
        ("link.refused", "link_bound_elsewhere"),
        ("link.refused", "link_invalid"),
        ("link.refused", "link_revoked"),
        ("link.refused", "room_locked_down"),
        ("link.refused", "appointment_cancelled"),
        ("link.refused", "window_closed"),
        ("link.refused", "link_expired"),
        ("access.denied", "room_not_booked"),
        ("access.denied", "room_locked_down"),
        ("access.denied", "device_revoked"),
        ("access.denied", "appointment_ended"),
        ("access.denied", "role_forbidden"),
        ("access.denied", "not_authenticated"),
    ] {
        let found = desk.refusals(kind, reason);
        assert!(!found.is_empty(), "no {kind} record with reason {reason}");
        assert!(found[0]["record"]["ip"].is_string(), "{kind}/{reason} has no actor address");
    }
}

#[test]
fn forged_and_foreign_tokens_are_refused_as_link_invalid() {
    use base64::Engine;
    let desk = Desk::new();
    let appointment = desk.booked(-5, 25);
    let (token, _) = desk.link(&appointment);
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = token.split('.').collect();
    let payload: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();

    // The payload changed to another appointment, signature kept.
    let mut other = payload.clone();
    other["apt"] = json!(uuid::Uuid::new_v4().to_string());
    let forged = format!("{}.{}.{}", parts[0], b64.encode(other.to_string()), parts[2]);
    // alg none, no signature.
    let none = format!("{}.{}.", b64.encode(r#"{"alg":"none","typ":"JWT"}"#), parts[1]);
    // Signed with a key the gateway does not know.
    let stranger = {
        use gatehouse::auth::link_token::{LinkClaims, LinkRole, LinkSigner, generate_pkcs8};
        let signer = LinkSigner::from_pkcs8(&generate_pkcs8().unwrap()).unwrap();
        let claims = LinkClaims {
            link_id: payload["lid"].as_str().unwrap().parse().unwrap(),
            appointment: payload["apt"].as_str().unwrap().parse().unwrap(),
            participant: payload["sub"].as_str().unwrap().parse().unwrap(),
            role: LinkRole::Clinician,
            not_before: payload["nbf"].as_u64().unwrap(),
            expires: payload["exp"].as_u64().unwrap(),
        };
        signer.sign(&claims).unwrap()
    };
    for bad in [forged, none, stranger, "not-a-token".to_owned()] {
        assert_refused(&desk.join(&bad, None), 403, "link_invalid");
    }
    assert!(desk.refusals("link.refused", "link_invalid").len() >= 4);
    // The real one still works.
    assert_eq!(desk.join(&token, None).status, 200);
}

#[test]
fn the_openapi_document_lists_every_route() {
    let desk = Desk::new();
    let doc = desk.gw.request("GET", "/api/openapi.json", &[], None);
    assert_eq!(doc.status, 200);
    let doc = doc.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    let paths = doc["paths"].as_object().unwrap();
    // Every API path the HTTP layer registers, found in its source.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
    let mut declared = Vec::new();
    for entry in walk(&root) {
        let text = std::fs::read_to_string(&entry).unwrap();
        for piece in text.split("path = \"").skip(1).chain(text.split(".route(\"").skip(1)) {
            let path = piece.split('"').next().unwrap();
            if path.starts_with("/api/v1") {
                declared.push(path.to_owned());
            }
        }
    }
    assert!(declared.len() >= 20, "{declared:?}");
    for path in declared {
        assert!(paths.contains_key(&path), "{path} is served but missing from /api/openapi.json");
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

#[test]
fn rooms_are_enrolled_and_appointments_listed_from_the_cli_while_the_gateway_runs() {
    let desk = Desk::new();
    let gw = &desk.gw;
    let data = gw.dir.join("data");
    let data = data.to_str().unwrap();
    let cli = |args: &[&str]| crate::support::run_cli(&[args, &["--data-dir", data]].concat(), &[]);

    // Enrolling prints the device credential once, on standard output alone.
    let (code, credential, told) =
        cli(&["rooms", "add", "--site", "HMP Test", "--name", "Room 9", "--time-zone", "Europe/London"]);
    assert_eq!(code, 0, "{told}");
    let credential = credential.trim().to_owned();
    assert!(credential.starts_with("ghr_"), "{credential}");
    assert!(told.contains("Enrolled Room 9 at HMP Test") && told.contains("shown this once"), "{told}");
    let (code, listed, _) = cli(&["rooms", "list"]);
    assert_eq!(code, 0);
    let line = listed.lines().find(|l| l.contains("\tRoom 9\t")).unwrap_or_else(|| panic!("{listed}"));
    let fields: Vec<&str> = line.split('\t').collect();
    assert_eq!(fields[1..], ["HMP Test", "Room 9", "Europe/London", "device"], "{line}");
    let room_id = fields[0].to_owned();

    // The running gateway knows the room at once: book it, and its kiosk is let in.
    let now = jiff::Timestamp::now();
    let at = |m: i64| (now + jiff::SignedDuration::from_mins(m)).to_string();
    let booking = json!({
        "room_id": room_id,
        "start": at(-5),
        "end": at(25),
        "clinician": { "name": "Dr Cli", "email": "dr.cli@hospital.example" },
        "patient_pseudonym": "PT-0099",
        "escort_name": "Officer Cli",
    });
    let booked = gw.staff_request(&desk.scheduler, "POST", "/api/v1/appointments", Some(booking));
    assert_eq!(booked.status, 201, "{}", booked.body);
    let appointment = booked.json();
    assert_eq!(desk.join_room(&credential).status, 200);

    // Listed by room, with its status now; the patient's pseudonym is not printed.
    let (code, listed, told) = cli(&["appointments", "list", "--room", &room_id]);
    assert_eq!(code, 0, "{told}");
    assert_eq!(listed.lines().count(), 1, "{listed}");
    let fields: Vec<&str> = listed.trim_end().split('\t').collect();
    assert_eq!(fields[0], appointment["id"].as_str().unwrap(), "{listed}");
    assert_eq!(fields[3..], ["Room 9", "open", "Dr Cli"], "{listed}");
    assert!(!listed.contains("PT-0099"), "{listed}");
    let (_, later, _) = cli(&["appointments", "list", "--room", &room_id, "--from", &at(60)]);
    assert!(later.is_empty(), "{later}");

    // Bad input is refused with a sentence, and changes nothing.
    let (code, _, told) =
        cli(&["rooms", "add", "--site", "HMP Test", "--name", "Room X", "--time-zone", "Mars/Olympus"]);
    assert_ne!(code, 0);
    assert!(told.contains("IANA time zone"), "{told}");
    let (code, _, told) = cli(&["appointments", "list", "--from", "yesterday"]);
    assert_ne!(code, 0);
    assert!(told.contains("RFC 3339"), "{told}");
    let (code, _, told) = cli(&["appointments", "list", "--room", "room-9"]);
    assert_ne!(code, 0);
    assert!(told.contains("not a room id"), "{told}");
    assert!(!cli(&["rooms", "list"]).1.contains("Room X"));

    // The enrolment is on record as the operator's.
    let page = gw.staff_request(&desk.security, "GET", "/api/v1/audit/records?kind=room.enrolled&limit=100", None);
    let enrolled = page.json()["records"].as_array().unwrap().clone();
    assert!(
        enrolled.iter().any(|r| r["record"]["actor"]["type"] == "operator" && r["record"]["object"]["room"] == room_id),
        "{enrolled:#?}"
    );
}

#[test]
fn staff_accounts_are_managed_from_the_cli() {
    let desk = Desk::new();
    let gw = &desk.gw;
    let data = gw.dir.join("data");
    let data = data.to_str().unwrap();
    let (code, out, _) = crate::support::run_cli(&["staff", "list", "--data-dir", data], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("sched\tscheduler\tactive\tno-totp"), "{out}");
    assert!(out.contains("officer\tsecurity\tactive\ttotp"), "{out}");
    // A weak password is refused with a reason.
    let weak = std::process::Command::new(crate::support::BINARY)
        .args(["staff", "add", "--name", "weak", "--role", "scheduler", "--data-dir", data])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(b"short\n")?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(!weak.status.success());
    assert!(String::from_utf8_lossy(&weak.stderr).contains("12"), "{}", String::from_utf8_lossy(&weak.stderr));

    // Disabling ends the account's sessions and stops sign-in.
    let session = gw.sign_in("sched", PASSWORD, None);
    let (code, _, err) = crate::support::run_cli(&["staff", "disable", "--name", "sched", "--data-dir", data], &[]);
    assert_eq!(code, 0, "{err}");
    assert_refused(&gw.staff_request(&session, "GET", "/api/v1/rooms", None), 401, "not_authenticated");
    let again = gw.request("POST", "/api/v1/session", &[], Some(&json!({ "username": "sched", "password": PASSWORD })));
    assert_refused(&again, 401, "not_authenticated");

    // A new TOTP secret replaces the old one.
    let (code, uri, _) =
        crate::support::run_cli(&["staff", "reset-totp", "--name", "officer", "--data-dir", data], &[]);
    assert_eq!(code, 0);
    let secret = uri.trim().split("secret=").nth(1).unwrap().split('&').next().unwrap().to_owned();
    let officer = gw.sign_in("officer", PASSWORD, Some(&secret));
    // Security staff read the audit log; a scheduler may not.
    let scheduler = {
        gw.add_staff("sched2", "scheduler", PASSWORD, false);
        gw.sign_in("sched2", PASSWORD, None)
    };
    assert_refused(&gw.staff_request(&scheduler, "GET", "/api/v1/audit/records", None), 403, "role_forbidden");
    let denied = gw.staff_request(&officer, "GET", "/api/v1/audit/records?kind=access.denied&outcome=refused", None);
    assert_eq!(denied.status, 200, "{}", denied.body);
    assert!(denied.body.contains("role_forbidden"), "{}", denied.body);
}

#[test]
fn appointments_are_listed_by_room_time_and_status_in_the_rooms_time_zone() {
    let desk = Desk::new();
    let gw = &desk.gw;
    let a = desk.booked(30, 60);
    let b = desk.booked(120, 150);
    let id = b["id"].as_str().unwrap();
    gw.staff_request(
        &desk.scheduler,
        "POST",
        &format!("/api/v1/appointments/{id}/cancel"),
        Some(json!({ "reason": "Patient transferred" })),
    );
    let list = |query: &str| -> Vec<String> {
        let r = gw.staff_request(&desk.scheduler, "GET", &format!("/api/v1/appointments?{query}"), None);
        assert_eq!(r.status, 200, "{}", r.body);
        r.json().as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(list(&format!("room={}", desk.room_id())).len(), 2);
    assert_eq!(list("status=cancelled"), vec![id.to_owned()]);
    assert_eq!(list("status=booked"), vec![a["id"].as_str().unwrap().to_owned()]);
    let soon = (jiff::Timestamp::now() + jiff::SignedDuration::from_mins(90)).to_string();
    assert_eq!(list(&format!("to={soon}")), vec![a["id"].as_str().unwrap().to_owned()]);
    assert_refused(
        &gw.staff_request(&desk.scheduler, "GET", "/api/v1/appointments?status=maybe", None),
        400,
        "invalid_request",
    );
    // Stored in UTC, shown in the room's zone (London is UTC+0 in winter, +1 in summer).
    let start: jiff::Timestamp = a["start"].as_str().unwrap().parse().unwrap();
    let local = start.in_tz("Europe/London").unwrap().strftime("%Y-%m-%dT%H:%M:%S%:z").to_string();
    assert_eq!(a["start_local"], local);
    assert_eq!(a["room"]["timezone"], "Europe/London");
}

#[test]
fn the_demo_seeds_a_working_consultation_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(crate::support::BINARY)
        .args(["serve", "--demo", "--media-tcp-port", "0"])
        .args(crate::support::LOOPBACK_ANY_PORTS)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--certs-dir")
        .arg(dir.path().join("certs"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let done = line.starts_with("These passwords are shown once");
        printed.push(line);
        if done {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = printed.join("\n");
    let find = |label: &str| -> String {
        printed
            .iter()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no {label} in:\n{text}"))
            .clone()
    };
    let kiosk = find("Room kiosk:");
    let credential = kiosk.split("credential=").nth(1).unwrap().trim().to_owned();
    let link = find("Consultant link:");
    let token = link.rsplit("/join/").next().unwrap().trim().to_owned();
    let scheduler_password = find("Scheduler:").split("password ").nth(1).unwrap().trim().to_owned();
    assert!(find("Security:").contains("user security"), "{text}");
    assert!(text.contains("otpauth://totp/"), "{text}");

    // The same data folder, served again (without --demo): what was printed works.
    let gw = Gateway::start_in(dir.path(), &[]);
    let room = gw.request("POST", "/api/v1/join/room", &[], Some(&json!({ "device_credential": credential })));
    assert_eq!(room.status, 200, "{}", room.body);
    assert_eq!(room.json()["appointment"]["status"], "open");
    let consultant = gw.request("POST", "/api/v1/join/link", &[], Some(&json!({ "token": token })));
    assert_eq!(consultant.status, 200, "{}", consultant.body);
    assert_eq!(consultant.json()["role"], "clinician");
    gw.sign_in("scheduler", &scheduler_password, None);
    drop(gw);

    // --demo on a folder that has data seeds nothing more.
    let (code, out, _) = crate::support::run_cli(
        &["serve", "--demo", "--listen", "127.0.0.1:1", "--admin-listen", "127.0.0.1:1"],
        &[
            ("GATEHOUSE_DATA_DIR", dir.path().join("data").to_str().unwrap()),
            ("GATEHOUSE_CERTS_DIR", dir.path().join("certs").to_str().unwrap()),
        ],
    );
    assert_ne!(code, 0, "port 1 should not be bindable: {out}");
    assert!(!out.contains("Demo seeded"), "{out}");
    let (_, list, _) =
        crate::support::run_cli(&["staff", "list", "--data-dir", dir.path().join("data").to_str().unwrap()], &[]);
    assert_eq!(list.lines().count(), 2, "{list}");
}

#[test]
fn without_demo_nothing_is_seeded() {
    let (gw, _dir) = Gateway::start();
    let data = gw.dir.join("data");
    let (_, list, _) = crate::support::run_cli(&["staff", "list", "--data-dir", data.to_str().unwrap()], &[]);
    assert!(list.trim().is_empty(), "{list}");
}

#[test]
fn a_booking_beyond_two_years_is_refused_and_the_appointment_stays_as_it_was() {
    let desk = Desk::new();
    let appointment = desk.booked(60, 90);
    let id = appointment["id"].as_str().unwrap();
    // At the calendar's end: the window's arithmetic would leave it, were it stored.
    let far = desk.gw.staff_request(
        &desk.scheduler,
        "POST",
        &format!("/api/v1/appointments/{id}/reschedule"),
        Some(json!({ "start": "9999-12-30T21:00:00Z", "end": "9999-12-30T21:59:59Z" })),
    );
    assert_refused(&far, 400, "invalid_request");
    assert!(far.json()["message"].as_str().unwrap().contains("two years"), "{}", far.body);
    let read = desk.gw.staff_request(&desk.scheduler, "GET", &format!("/api/v1/appointments/{id}"), None);
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.json()["start"], appointment["start"]);
    let listed = desk.gw.staff_request(&desk.scheduler, "GET", "/api/v1/appointments", None);
    assert_eq!(listed.status, 200, "{}", listed.body);
}
