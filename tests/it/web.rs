//! The web client's HTTP surface without a browser: every page carries the strict
//! Content-Security-Policy and holds no inline script or style, and the endpoints the pages
//! need for their device checks and door sentences answer as documented.

use serde_json::json;

use crate::schedule::Desk;
use crate::support::Response;

const PAGES: [&str; 4] = ["/", "/room", "/join/some-link-token", "/console"];

/// The policy every page must carry: scripts and everything else from the gateway's own
/// origin only, nothing inline.
fn assert_strict_csp(response: &Response, path: &str) {
    let csp = response.header("content-security-policy").unwrap_or_else(|| panic!("{path} has no CSP"));
    let directives: Vec<&str> = csp.split(';').map(str::trim).collect();
    for required in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(directives.contains(&required), "{path}: CSP lacks {required:?}: {csp}");
    }
    for loose in ["'unsafe-inline'", "'unsafe-eval'", "*", "http:", "https:", "data: 'self'"] {
        assert!(
            !directives
                .iter()
                .filter(|d| d.starts_with("script-src") || d.starts_with("default-src") || d.starts_with("connect-src"))
                .any(|d| d.split_whitespace().any(|w| w == loose)),
            "{path}: CSP allows {loose}: {csp}"
        );
    }
}

/// Every `<script>` has a same-origin `src` and no body; no element has an event-handler or
/// `style` attribute; no `javascript:` URL.
fn assert_no_inline_code(html: &str, path: &str) {
    let lower = html.to_ascii_lowercase();
    let mut rest = lower.as_str();
    while let Some(at) = rest.find("<script") {
        let tag_end = rest[at..].find('>').map(|e| at + e).expect("an unterminated script tag");
        let tag = &rest[at..=tag_end];
        assert!(tag.contains("src=\"/static/"), "{path}: a script without a same-origin src: {tag}");
        assert!(rest[tag_end + 1..].trim_start().starts_with("</script>"), "{path}: a script with inline code");
        rest = &rest[tag_end..];
    }
    for tag in lower.split('<').skip(1) {
        let tag = tag.split('>').next().unwrap_or_default();
        for attribute in tag.split_whitespace().skip(1) {
            let name = attribute.split('=').next().unwrap_or_default();
            assert!(!(name.starts_with("on") && name.len() > 2), "{path}: an inline event handler in <{tag}>");
            assert!(name != "style", "{path}: an inline style in <{tag}>");
        }
    }
    assert!(!lower.contains("javascript:"), "{path}: a javascript: URL");
    assert!(!lower.contains("<style"), "{path}: an inline <style> block");
}

#[test]
fn every_page_carries_a_strict_csp_and_holds_no_inline_script() {
    let desk = Desk::new();
    for path in PAGES {
        let response = desk.gw.request("GET", path, &[], None);
        assert_eq!(response.status, 200, "{path}: {}", response.body);
        assert!(response.header("content-type").unwrap_or_default().starts_with("text/html"), "{path}");
        assert_strict_csp(&response, path);
        assert_no_inline_code(&response.body, path);
        // Every script and stylesheet a page names is served by the gateway itself.
        for reference in response.body.split("/static/").skip(1) {
            let file = reference.split('"').next().unwrap();
            let asset = desk.gw.request("GET", &format!("/static/{file}"), &[], None);
            assert_eq!(asset.status, 200, "{path} names /static/{file}");
            assert_strict_csp(&asset, file);
        }
    }
    // The JSON API and the errors carry the same policy.
    assert_strict_csp(&desk.gw.request("GET", "/api/openapi.json", &[], None), "/api/openapi.json");
    assert_strict_csp(&desk.gw.request("GET", "/no/such/page", &[], None), "a 404");
}

#[test]
fn the_kiosk_learns_its_room_and_next_appointment_by_its_credential_only() {
    let desk = Desk::new();
    let kiosk = |credential: &str| {
        desk.gw.request("POST", "/api/v1/kiosk", &[], Some(&json!({ "device_credential": credential })))
    };
    let empty = kiosk(&desk.kiosk);
    assert_eq!(empty.status, 200, "{}", empty.body);
    let empty = empty.json();
    assert_eq!(empty["room"]["name"], "Room 1");
    assert_eq!(empty["room"]["timezone"], "Europe/London");
    assert!(empty["next"].is_null());
    assert!(empty["server_time"].as_str().unwrap().parse::<jiff::Timestamp>().is_ok());

    let later = desk.booked(60, 90);
    desk.booked(120, 150);
    let shown = kiosk(&desk.kiosk).json();
    assert_eq!(shown["next"]["id"], later["id"], "{shown}");
    assert_eq!(shown["next"]["status"], "booked");
    // Times only: nothing about who is in the appointment.
    for secret in ["PT-0042", "Officer Test", "dr.test@hospital.example", "Dr Test"] {
        assert!(!shown.to_string().contains(secret), "the kiosk view shows {secret}: {shown}");
    }

    for (credential, status, code) in [("ghr_forged", 401, "not_authenticated"), ("nonsense", 401, "not_authenticated")]
    {
        let refused = kiosk(credential);
        assert_eq!(refused.status, status, "{}", refused.body);
        assert_eq!(refused.json()["code"], code);
    }
    let revoked =
        desk.gw.staff_request(&desk.scheduler, "DELETE", &format!("/api/v1/rooms/{}/device", desk.room_id()), None);
    assert_eq!(revoked.status, 204);
    let refused = kiosk(&desk.kiosk);
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(refused.json()["code"], "device_revoked");
    assert_eq!(desk.refusals("access.denied", "device_revoked").len(), 1);
}

#[test]
fn the_probe_answers_kiosks_and_link_holders_with_bounded_random_bytes() {
    let desk = Desk::new();
    let appointment = desk.booked(60, 90);
    // The link is not open yet, but it is authentic: its holder may check the connection.
    let (token, _) = desk.link(&appointment);
    let probe = |body: serde_json::Value| desk.gw.request("POST", "/api/v1/probe", &[], Some(&body));
    let by_kiosk = probe(json!({ "device_credential": desk.kiosk, "bytes": 65536 }));
    assert_eq!(by_kiosk.status, 200);
    assert_eq!(by_kiosk.header("content-type"), Some("application/octet-stream"));
    assert_eq!(by_kiosk.header("content-length"), Some("65536"));
    let by_link = probe(json!({ "link": token, "bytes": 0 }));
    assert_eq!(by_link.status, 200, "{}", by_link.body);

    let too_many = probe(json!({ "device_credential": desk.kiosk, "bytes": 1024 * 1024 + 1 }));
    assert_eq!(too_many.status, 400);
    assert_eq!(probe(json!({ "bytes": 10 })).status, 400);
    assert_eq!(probe(json!({ "device_credential": desk.kiosk, "link": token, "bytes": 10 })).status, 400);
    let forged = probe(json!({ "link": "eyJhbGciOiJFZERTQSJ9.e30.AAAA", "bytes": 10 }));
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert_eq!(forged.json()["code"], "link_invalid");
    let stranger = probe(json!({ "device_credential": "ghr_unknown", "bytes": 10 }));
    assert_eq!(stranger.status, 401);
    assert_eq!(desk.refusals("link.refused", "link_invalid").len(), 1);
}

#[test]
fn the_upload_probe_counts_what_a_kiosk_or_link_holder_sends_and_refuses_the_rest() {
    let desk = Desk::new();
    let appointment = desk.booked(60, 90);
    let (token, _) = desk.link(&appointment);
    let upload = |credential: Option<(&str, &str)>, bytes: &[u8]| {
        let mut head = format!(
            "POST /api/v1/probe/upload HTTP/1.1\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n",
            bytes.len()
        );
        if let Some((name, value)) = credential {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        crate::support::https_request_with_body(desk.gw.public, &desk.gw.ca_path(), &head, bytes)
    };
    let block = vec![0x5a; 256 * 1024];
    let by_kiosk = upload(Some(("X-Device-Credential", &desk.kiosk)), &block);
    assert_eq!(by_kiosk.status, 200, "{}", by_kiosk.body);
    assert_eq!(by_kiosk.json()["received"], 256 * 1024);
    let by_link = upload(Some(("X-Join-Link", &token)), &block[..1000]);
    assert_eq!(by_link.status, 200, "{}", by_link.body);
    assert_eq!(by_link.json()["received"], 1000);

    let nobody = upload(None, b"hello");
    assert_eq!(nobody.status, 400);
    assert_eq!(nobody.json()["code"], "invalid_request");
    let stranger = upload(Some(("X-Device-Credential", "ghr_unknown")), b"hello");
    assert_eq!(stranger.status, 401, "{}", stranger.body);
    assert_eq!(stranger.json()["code"], "not_authenticated");
    let forged = upload(Some(("X-Join-Link", "eyJhbGciOiJFZERTQSJ9.e30.AAAA")), b"hello");
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert_eq!(desk.refusals("link.refused", "link_invalid").len(), 1);
    let too_much = upload(Some(("X-Device-Credential", &desk.kiosk)), &vec![0; 1024 * 1024 + 1]);
    assert_eq!(too_much.status, 413, "{}", too_much.body);
    assert_eq!(too_much.json()["code"], "too_large");
}

#[test]
fn refused_credentials_at_the_kiosk_lookup_and_device_checks_are_limited_per_address_and_valid_ones_never() {
    // A burst of 3, and no refill however slowly the machine runs the test.
    let desk = Desk::with_settings(&["--join-burst", "3", "--join-refill", "1h"]);
    let appointment = desk.booked(60, 90);
    let (token, _) = desk.link(&appointment);
    let kiosk = |credential: &str| {
        desk.gw.request("POST", "/api/v1/kiosk", &[], Some(&json!({ "device_credential": credential })))
    };
    let probe = |body: serde_json::Value| desk.gw.request("POST", "/api/v1/probe", &[], Some(&body));
    let upload = |name: &str, value: &str| {
        let head = format!(
            "POST /api/v1/probe/upload HTTP/1.1\r\nContent-Type: application/octet-stream\r\nContent-Length: 5\r\n{name}: {value}\r\n"
        );
        crate::support::https_request_with_body(desk.gw.public, &desk.gw.ca_path(), &head, b"hello")
    };
    let forged_link = "eyJhbGciOiJFZERTQSJ9.e30.AAAA";
    let answered = |response: &Response, status: u16, code: &str| {
        assert_eq!(response.status, status, "{}", response.body);
        assert_eq!(response.json()["code"], code, "{}", response.body);
    };

    // Valid credentials spend nothing however often they come, like a ward's kiosks polling.
    for _ in 0..10 {
        let shown = kiosk(&desk.kiosk);
        assert_eq!(shown.status, 200, "{}", shown.body);
    }
    // The burst: refused credentials are answered on their merits, at each of the doors.
    answered(&kiosk("ghr_made-up"), 401, "not_authenticated");
    answered(&probe(json!({ "device_credential": "ghr_made-up", "bytes": 0 })), 401, "not_authenticated");
    answered(&upload("X-Join-Link", forged_link), 403, "link_invalid");
    // Then every refused credential from the address gets the same answer at every door,
    // whatever was wrong with it, and is told to wait for the next refill: an hour, less
    // what the test has taken so far.
    for _ in 0..2 {
        for limited in [
            kiosk("ghr_made-up"),
            probe(json!({ "link": forged_link, "bytes": 0 })),
            upload("X-Device-Credential", "ghr_made-up"),
            upload("X-Join-Link", forged_link),
        ] {
            let wait = limited.retry_after();
            assert!((3500..=3600).contains(&wait), "Retry-After: {wait}");
        }
    }
    // The room's real kiosk and an authentic link are still answered while the bucket is empty.
    let shown = kiosk(&desk.kiosk);
    assert_eq!(shown.status, 200, "{}", shown.body);
    assert_eq!(shown.json()["next"]["id"], appointment["id"]);
    assert_eq!(probe(json!({ "device_credential": desk.kiosk, "bytes": 10 })).status, 200);
    assert_eq!(probe(json!({ "link": token, "bytes": 10 })).status, 200);
    assert_eq!(upload("X-Device-Credential", &desk.kiosk).status, 200);
    // The bucket is the address's, shared with the joins, which spend before any check.
    answered(&desk.join_room(&desk.kiosk), 429, "rate_limited");

    // The burst's refusals are recorded one by one; of the nine limited ones, the first at once
    // and the rest in the address's summary a minute later.
    assert_eq!(desk.refusals("access.denied", "not_authenticated").len(), 2);
    assert_eq!(desk.refusals("link.refused", "link_invalid").len(), 1);
    let limited = desk.refusals("access.denied", "rate_limited");
    assert_eq!(limited.len(), 1, "{limited:#?}");
    assert_eq!(limited[0]["record"]["ip"], "127.0.0.1");
    let summary = desk.rate_limited_summary("access.denied");
    assert_eq!(summary["ip"], "127.0.0.1", "{summary}");
    assert_eq!(summary["details"]["attempts"], 8, "{summary}");

    // The refill is the setting's: still limited a minute on, one more try once the wait it
    // is told has passed, an hour on.
    let wait = kiosk("ghr_made-up").retry_after();
    assert!((3400..=3540).contains(&wait), "Retry-After a minute on: {wait}");
    desk.gw.set_clock_offset(61 + i64::try_from(wait).unwrap());
    answered(&kiosk("ghr_made-up"), 401, "not_authenticated");
    answered(&kiosk("ghr_made-up"), 429, "rate_limited");

    // And the API's description says so.
    let doc = desk.gw.request("GET", "/api/openapi.json", &[], None).json();
    for path in [
        "/api/v1/kiosk",
        "/api/v1/probe",
        "/api/v1/probe/upload",
        "/api/v1/join/room",
        "/api/v1/join/link",
        "/api/v1/session",
    ] {
        let limited = &doc["paths"][path]["post"]["responses"]["429"];
        assert!(limited["description"].as_str().is_some_and(|d| d.contains("rate_limited")), "{path}: {limited}");
        assert_eq!(limited["headers"]["Retry-After"]["schema"]["type"], "integer", "{path}: {limited}");
    }
}

#[test]
fn the_door_tells_an_authentic_link_when_it_opens_and_why_it_was_cancelled() {
    let desk = Desk::new();
    let early = desk.booked(60, 90);
    let (token, _) = desk.link(&early);
    let refused = desk.join(&token, None);
    assert_eq!(refused.status, 403, "{}", refused.body);
    let body = refused.json();
    assert_eq!(body["code"], "window_not_open");
    let opens: jiff::Timestamp = body["opens"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        opens.to_string(),
        early["window"]["opens"].as_str().unwrap().parse::<jiff::Timestamp>().unwrap().to_string()
    );
    assert!(body["server_time"].is_string());

    // A revoked link learns nothing more, not even at the probe.
    let (revoked, link_id) = desk.link(&early);
    assert_eq!(desk.gw.staff_request(&desk.scheduler, "DELETE", &format!("/api/v1/links/{link_id}"), None).status, 204);
    let refused = desk.join(&revoked, None).json();
    assert_eq!(refused["code"], "link_revoked", "{refused}");
    assert!(refused.get("opens").is_none() && refused.get("server_time").is_none(), "{refused}");
    let probe = desk.gw.request("POST", "/api/v1/probe", &[], Some(&json!({ "link": revoked, "bytes": 10 })));
    assert_eq!(probe.status, 403, "{}", probe.body);

    let now = desk.booked(-5, 25);
    let (token, _) = desk.link(&now);
    let placed = desk.gw.staff_request(
        &desk.security,
        "POST",
        "/api/v1/lockdowns",
        Some(json!({ "room_id": desk.room_id(), "reason": "the prison is in lockdown" })),
    );
    assert_eq!(placed.status, 201, "{}", placed.body);
    let locked = desk.join(&token, None).json();
    assert_eq!(locked["code"], "room_locked_down", "{locked}");
    assert_eq!(locked["status_reason"], "the prison is in lockdown");

    // A forged link learns nothing beyond the refusal.
    let forged = desk.join("eyJhbGciOiJFZERTQSJ9.e30.AAAA", None).json();
    assert_eq!(forged["code"], "link_invalid");
    assert!(
        forged.get("opens").is_none() && forged.get("status_reason").is_none() && forged.get("server_time").is_none()
    );
}

#[test]
fn security_sees_the_log_verified_with_its_last_checkpoint() {
    let desk = Desk::new();
    // Wait for a signed checkpoint (every few seconds while there are new records).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let integrity = loop {
        let response = desk.gw.staff_request(&desk.security, "GET", "/api/v1/audit/integrity", None);
        assert_eq!(response.status, 200, "{}", response.body);
        let body = response.json();
        if body["last_checkpoint_tree_size"].is_u64() || std::time::Instant::now() > deadline {
            break body;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    assert_eq!(integrity["verified"], true, "{integrity}");
    assert!(integrity["records"].as_u64().unwrap() >= integrity["last_checkpoint_tree_size"].as_u64().unwrap());
    assert!(
        integrity["last_checkpoint_note"]
            .as_str()
            .unwrap()
            .contains(&format!("\n{}\n", integrity["last_checkpoint_tree_size"]))
    );
    // Schedulers may not look.
    let refused = desk.gw.staff_request(&desk.scheduler, "GET", "/api/v1/audit/integrity", None);
    assert_eq!(refused.status, 403, "{}", refused.body);
}
