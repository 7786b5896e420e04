//! The signalling protocol (docs/protocol.md) over the real `/ws` endpoint: join refusals, the
//! waiting room and admission, duplicate connections and reconnection, policy changes during a
//! call, timing, the clinician's end, bad input and floods, and the audit trail a session leaves.
//! Every connection is a real WebSocket over TLS that trusts only the gateway's development CA.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::schedule::{Desk, PASSWORD};
use crate::support::Response;

/// How long any one expected message may take to arrive.
const WAIT: Duration = Duration::from_secs(5);
/// Policy changes must reach a live call within this.
const POLICY_LATENCY: Duration = Duration::from_secs(1);

/// Loopback source addresses, so that each party's audit records can be told apart by address.
const ROOM_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const CLINICIAN_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const GUEST_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 4);

/// What the gateway sent next.
#[derive(Debug)]
enum Event {
    Message(Value),
    /// The connection closed: the close frame's code, or None if it just dropped.
    Closed(Option<u16>),
}

/// A blocking signalling client: one WebSocket with its own single-threaded runtime, so tests
/// read as plain sequences of sends and expected replies, like the rest of this crate.
struct Ws {
    // Declared before the runtime so that it is dropped first.
    stream: WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>,
    rt: tokio::runtime::Runtime,
    closed: Option<Option<u16>>,
}

impl Ws {
    /// Opens `wss://localhost:PORT/ws` from the loopback address `from`, as a page of the
    /// gateway's own in the browser holding `browser` (None: a browser that has no cookie).
    fn connect(desk: &Desk, from: Ipv4Addr, browser: Option<&str>) -> Self {
        let origin = format!("https://localhost:{}", desk.gw.public.port());
        Self::upgrade(desk, from, browser, Some(&origin)).expect("WebSocket upgrade")
    }

    /// [`Ws::connect`] with the given Origin header (None: none at all).
    fn upgrade(
        desk: &Desk,
        from: Ipv4Addr,
        browser: Option<&str>,
        origin: Option<&str>,
    ) -> Result<Self, tokio_tungstenite::tungstenite::Error> {
        let gw = &desk.gw;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let stream = rt.block_on(async {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(SocketAddr::new(from.into(), 0)).unwrap();
            let tcp =
                tokio::time::timeout(WAIT, socket.connect(gw.public)).await.expect("TCP connect in time").unwrap();
            let mut request = format!("wss://localhost:{}/ws", gw.public.port()).into_client_request().unwrap();
            if let Some(browser) = browser {
                request.headers_mut().insert("Cookie", format!("gh_browser={browser}").parse().unwrap());
            }
            if let Some(origin) = origin {
                request.headers_mut().insert("Origin", origin.parse().unwrap());
            }
            let tls = crate::support::client_config(&gw.ca_path(), &rustls::version::TLS13);
            let upgrade =
                tokio_tungstenite::client_async_tls_with_config(request, tcp, None, Some(Connector::Rustls(tls)));
            tokio::time::timeout(WAIT, upgrade).await.expect("WebSocket upgrade in time").map(|(stream, _)| stream)
        })?;
        Ok(Self { stream, rt, closed: None })
    }

    fn send(&mut self, message: Value) {
        self.send_text(message.to_string());
    }

    fn send_text(&mut self, text: String) {
        self.send_raw(Message::text(text));
    }

    fn send_raw(&mut self, message: Message) {
        let stream = &mut self.stream;
        let sent = self.rt.block_on(async { tokio::time::timeout(WAIT, stream.send(message)).await });
        sent.expect("send in time").expect("send");
    }

    /// The next message or the close, or None if nothing came within `limit`.
    fn next_event(&mut self, limit: Duration) -> Option<Event> {
        if let Some(code) = self.closed {
            return Some(Event::Closed(code));
        }
        let stream = &mut self.stream;
        let event = self.rt.block_on(async {
            let deadline = tokio::time::Instant::now() + limit;
            loop {
                let next = tokio::time::timeout_at(deadline, stream.next()).await.ok()?;
                return Some(match next {
                    Some(Ok(Message::Text(text))) => Event::Message(
                        serde_json::from_str(text.as_str()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}")),
                    ),
                    Some(Ok(Message::Close(frame))) => Event::Closed(frame.map(|f| u16::from(f.code))),
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                    Some(Ok(Message::Binary(_))) => panic!("the gateway sent a binary frame"),
                    Some(Err(_)) | None => Event::Closed(None),
                });
            }
        });
        if let Some(Event::Closed(code)) = &event {
            self.closed = Some(*code);
        }
        event
    }

    /// The next message; panics on a close or a timeout.
    fn recv(&mut self) -> Value {
        self.recv_within(WAIT)
    }

    fn recv_within(&mut self, limit: Duration) -> Value {
        match self.next_event(limit) {
            Some(Event::Message(message)) => {
                assert_eq!(message["v"], 1, "every message carries v=1: {message}");
                message
            }
            Some(Event::Closed(code)) => panic!("closed (code {code:?}) while a message was expected"),
            None => panic!("no message within {limit:?}"),
        }
    }

    /// The next message, which must be of type `kind`.
    fn expect(&mut self, kind: &str) -> Value {
        let message = self.recv();
        assert_eq!(message["type"], kind, "expected {kind}, got {message}");
        message
    }

    /// The next `error` message, which must carry `code` and a message for people.
    fn expect_error(&mut self, code: &str) -> Value {
        let error = self.expect("error");
        assert_eq!(error["code"], code, "{error}");
        assert!(!error["message"].as_str().unwrap_or_default().is_empty(), "{error}");
        error
    }

    /// The next message of type `kind` within `limit`, passing over `participants` updates
    /// (they are sent whenever anyone comes or goes, so their number depends on timing).
    fn wait_for_within(&mut self, kind: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let message = self.recv_within(deadline.saturating_duration_since(Instant::now()));
            if message["type"] == kind {
                return message;
            }
            assert_eq!(message["type"], "participants", "expected {kind}, got {message}");
        }
    }

    fn wait_for(&mut self, kind: &str) -> Value {
        self.wait_for_within(kind, WAIT)
    }

    /// The `participants` update that first satisfies `done`.
    fn participants_until(&mut self, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no participants update showed {what}");
            let message = self.recv_within(left);
            assert_eq!(message["type"], "participants", "waiting for {what}: {message}");
            let list = message["participants"].as_array().unwrap().clone();
            if done(&list) {
                return list;
            }
        }
    }

    /// The `ended` message with `reason` within `limit`, then the normal close.
    fn expect_ended_within(&mut self, reason: &str, limit: Duration) -> Value {
        let ended = self.wait_for_within("ended", limit);
        assert_eq!(ended["reason"], reason, "{ended}");
        assert!(!ended["message"].as_str().unwrap_or_default().is_empty(), "{ended}");
        assert_eq!(self.expect_close(), Some(1000), "after ended the gateway closes normally");
        ended
    }

    fn expect_ended(&mut self, reason: &str) -> Value {
        self.expect_ended_within(reason, WAIT)
    }

    /// Reads to the close frame, which must come next; returns its code.
    fn expect_close(&mut self) -> Option<u16> {
        match self.next_event(WAIT) {
            Some(Event::Closed(code)) => code,
            Some(Event::Message(message)) => panic!("expected the close, got {message}"),
            None => panic!("the connection was not closed within {WAIT:?}"),
        }
    }

    /// Closes from this side, as a browser tab does, and waits for the gateway's reply.
    fn close(mut self) {
        self.send_raw(Message::Close(None));
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            match self.next_event(deadline.saturating_duration_since(Instant::now())) {
                Some(Event::Closed(_)) | None => return,
                Some(Event::Message(_)) => {}
            }
        }
    }
}

fn join_device(credential: &str) -> Value {
    json!({ "v": 1, "type": "join", "device": credential })
}

fn join_link(token: &str) -> Value {
    json!({ "v": 1, "type": "join", "link": token })
}

/// Connects the room's kiosk and joins; returns the connection and its `joined` message. The
/// kiosk then waits (it is not admitted yet).
fn room_joins(desk: &Desk) -> (Ws, Value) {
    let mut room = Ws::connect(desk, ROOM_IP, None);
    room.send(join_device(&desk.kiosk));
    let joined = room.expect("joined");
    assert_eq!(joined["role"], "room", "{joined}");
    assert_eq!(joined["admitted"], false, "{joined}");
    room.expect("waiting");
    room.expect("participants");
    (room, joined)
}

/// Connects a browser holding `browser` and joins with the link `token`; returns the
/// connection and its `joined` message, having read the `admitted`/`waiting` that follows.
fn link_joins(desk: &Desk, from: Ipv4Addr, token: &str, browser: &str) -> (Ws, Value) {
    let mut ws = Ws::connect(desk, from, Some(browser));
    ws.send(join_link(token));
    let joined = ws.expect("joined");
    ws.expect(if joined["admitted"] == true { "admitted" } else { "waiting" });
    (ws, joined)
}

/// A consultation in progress: the room joined, the clinician joined and admitted it.
struct Call {
    room: Ws,
    clinician: Ws,
    room_joined: Value,
    clinician_joined: Value,
    /// The clinician's link (issuing another would replace it).
    token: String,
}

fn admitted_call(desk: &Desk, appointment: &Value) -> Call {
    let (mut room, room_joined) = room_joins(desk);
    let (token, _) = desk.link(appointment);
    let (mut clinician, clinician_joined) = link_joins(desk, CLINICIAN_IP, &token, "clinician-browser");
    clinician.send(json!({ "v": 1, "type": "admit", "participant_id": room_joined["participant_id"] }));
    room.wait_for("admitted");
    Call { room, clinician, room_joined, clinician_joined, token }
}

fn member<'a>(list: &'a [Value], id: &Value) -> Option<&'a Value> {
    list.iter().find(|p| p["id"] == *id)
}

fn state_of<'a>(list: &'a [Value], id: &Value) -> &'a str {
    member(list, id).map(|p| p["state"].as_str().unwrap()).unwrap_or("absent")
}

/// The admin listener's live-session gauges: (consultations in progress, members connected).
fn gauges(desk: &Desk) -> (u64, u64) {
    let metrics = desk.gw.admin_get("/metrics").body;
    let value = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{metrics}"))
    };
    (value("gatehouse_live_sessions"), value("gatehouse_connected_participants"))
}

fn assert_status(response: &Response, status: u16) {
    assert_eq!(response.status, status, "{}", response.body);
}

fn get_appointment(desk: &Desk, id: &str) -> Value {
    let shown = desk.gw.staff_request(&desk.scheduler, "GET", &format!("/api/v1/appointments/{id}"), None);
    assert_status(&shown, 200);
    shown.json()
}

/// Audit records of `kind` for `appointment`, read as security staff.
fn session_records(desk: &Desk, kind: &str, appointment: &str) -> Vec<Value> {
    let page =
        desk.gw.staff_request(&desk.security, "GET", &format!("/api/v1/audit/records?kind={kind}&limit=1000"), None);
    assert_status(&page, 200);
    page.json()["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["record"].clone())
        .filter(|r| r["object"]["appointment"] == appointment)
        .collect()
}

#[test]
fn join_refusals_carry_the_policy_code_and_close_with_4401() {
    let desk = Desk::new();
    // window_not_open: the window opens 15 minutes before a start an hour away.
    let later = desk.booked(60, 90);
    let (later_token, _) = desk.link(&later);
    // link_revoked: a link for an appointment happening now, revoked before it is used.
    let now_appt = desk.booked(-5, 25);
    let (revoked_token, revoked_id) = desk.link(&now_appt);
    assert_status(&desk.gw.staff_request(&desk.scheduler, "DELETE", &format!("/api/v1/links/{revoked_id}"), None), 204);

    for (join, code) in [
        (join_link(&later_token), "window_not_open"),
        (join_device("ghr_made-up"), "not_authenticated"),
        (join_link(&revoked_token), "link_revoked"),
    ] {
        let mut ws = Ws::connect(&desk, CLINICIAN_IP, None);
        ws.send(join);
        ws.expect_error(code);
        assert_eq!(ws.expect_close(), Some(4401), "a refused join closes with 4401 ({code})");
    }
}

#[test]
fn the_room_waits_until_the_clinician_admits_it_and_a_guest_cannot_admit() {
    let desk = Desk::new();
    let appointment = desk.booked(-5, 25);
    let (mut room, room_joined) = room_joins(&desk);
    assert_eq!(room_joined["appointment_id"], appointment["id"]);
    let room_id = room_joined["participant_id"].clone();

    let (token, _) = desk.link(&appointment);
    let (mut clinician, clinician_joined) = link_joins(&desk, CLINICIAN_IP, &token, "clinician-browser");
    assert_eq!(clinician_joined["role"], "clinician", "{clinician_joined}");
    assert_eq!(clinician_joined["admitted"], true, "{clinician_joined}");
    assert_eq!(clinician_joined["display_name"], "Dr Test");
    assert_eq!(clinician_joined["appointment_id"], appointment["id"]);
    let clinician_id = clinician_joined["participant_id"].clone();

    let seen = clinician.expect("participants");
    let list = seen["participants"].as_array().unwrap();
    assert_eq!(state_of(list, &room_id), "waiting", "{seen}");
    assert_eq!(state_of(list, &clinician_id), "admitted", "{seen}");
    assert_eq!(member(list, &room_id).unwrap()["role"], "room");
    assert_eq!(member(list, &room_id).unwrap()["display_name"], room_joined["display_name"]);
    // Nothing about anyone but a display name, a role and a state: no addresses, no email,
    // no patient pseudonym, no escort.
    for entry in list {
        let mut keys: Vec<&str> = entry.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["display_name", "id", "role", "state"], "{entry}");
    }
    let text = seen.to_string();
    for secret in ["127.0.0.", "dr.test@hospital.example", "PT-0042", "Officer Test"] {
        assert!(!text.contains(secret), "{secret} reached a participant: {text}");
    }

    // A guest (the interpreter) waits too, and may not admit anyone.
    let guest_link = desk.gw.staff_request(
        &desk.scheduler,
        "POST",
        &format!("/api/v1/appointments/{}/links", appointment["id"].as_str().unwrap()),
        Some(json!({ "participant_id": appointment["guests"][0]["id"] })),
    );
    assert_status(&guest_link, 201);
    let guest_token = guest_link.json()["url"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
    let (mut guest, guest_joined) = link_joins(&desk, GUEST_IP, &guest_token, "guest-browser");
    assert_eq!(guest_joined["role"], "guest", "{guest_joined}");
    assert_eq!(guest_joined["admitted"], false, "{guest_joined}");
    guest.expect("participants");
    guest.send(json!({ "v": 1, "type": "admit", "participant_id": room_id }));
    guest.expect_error("role_forbidden");
    // The session handles commands in order, so after the refusal the room must still wait.
    let live = desk.gw.staff_request(&desk.security, "GET", "/api/v1/sessions", None);
    assert_status(&live, 200);
    let room_member = live.json()[0]["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "room")
        .cloned()
        .expect("the room is in the live session");
    assert_eq!(room_member["state"], "waiting", "the guest's admit must not have worked");

    clinician.send(json!({ "v": 1, "type": "admit", "participant_id": room_id }));
    room.wait_for("admitted");
    let list = clinician.participants_until("the room admitted", |l| state_of(l, &room_id) == "admitted");
    assert_eq!(state_of(&list, &guest_joined["participant_id"]), "waiting", "admitting the room admits nobody else");
}

#[test]
fn a_second_connection_with_the_same_credential_is_refused_and_a_reconnect_comes_back_admitted() {
    let desk = Desk::new();
    let appointment = desk.booked(-5, 25);
    let Call { room, mut clinician, room_joined, clinician_joined, token } = admitted_call(&desk, &appointment);
    let room_id = room_joined["participant_id"].clone();

    // Same device credential, same link (from the same browser): refused, never substituted.
    let mut second_room = Ws::connect(&desk, ROOM_IP, None);
    second_room.send(join_device(&desk.kiosk));
    second_room.expect_error("already_connected");
    assert_eq!(second_room.expect_close(), Some(4401));
    let mut second_clinician = Ws::connect(&desk, CLINICIAN_IP, Some("clinician-browser"));
    second_clinician.send(join_link(&token));
    second_clinician.expect_error("already_connected");
    assert_eq!(second_clinician.expect_close(), Some(4401));
    // Both refusals are audited against the member, from the address that tried.
    let refused = session_records(&desk, "session.refused", appointment["id"].as_str().unwrap());
    let mut seen: Vec<(String, String)> = refused
        .iter()
        .map(|r| {
            assert_eq!(r["outcome"]["reason"], "already_connected", "{r}");
            (r["object"]["participant"].as_str().unwrap().to_owned(), r["ip"].as_str().unwrap().to_owned())
        })
        .collect();
    seen.sort();
    let mut expected = vec![
        (room_id.as_str().unwrap().to_owned(), ROOM_IP.to_string()),
        (clinician_joined["participant_id"].as_str().unwrap().to_owned(), CLINICIAN_IP.to_string()),
    ];
    expected.sort();
    assert_eq!(seen, expected);

    // The room drops; the clinician sees it away, and it comes back admitted by itself.
    room.close();
    clinician.participants_until("the room away", |l| state_of(l, &room_id) == "away");
    let mut room = Ws::connect(&desk, ROOM_IP, None);
    room.send(join_device(&desk.kiosk));
    let rejoined = room.expect("joined");
    assert_eq!(rejoined["admitted"], true, "{rejoined}");
    assert_eq!(rejoined["participant_id"], room_id, "the same member comes back");
    room.expect("admitted");
    clinician.participants_until("the room back", |l| state_of(l, &room_id) == "admitted");

    // The clinician's window closes and the same browser reopens it.
    clinician.close();
    room.participants_until("the clinician away", |l| state_of(l, &clinician_joined["participant_id"]) == "away");
    let (_clinician, rejoined) = link_joins(&desk, CLINICIAN_IP, &token, "clinician-browser");
    assert_eq!(rejoined["admitted"], true, "{rejoined}");
    assert_eq!(rejoined["participant_id"], clinician_joined["participant_id"]);
}

#[test]
fn a_clinician_invites_a_listed_guest_who_joins_with_the_link_and_waits_to_be_admitted() {
    let desk = Desk::new();
    let appointment = desk.booked(-5, 25);
    let id = appointment["id"].as_str().unwrap();
    let Call { mut room, mut clinician, room_joined, clinician_joined, .. } = admitted_call(&desk, &appointment);
    let guest = &appointment["guests"][0];
    let invite = |who: &Value| json!({ "v": 1, "type": "invite", "participant_id": who });
    // The clinician is told whom the booking lists; nobody else is.
    let listed = json!([{ "participant_id": guest["id"], "display_name": guest["name"] }]);
    assert_eq!(clinician_joined["guests"], listed, "{clinician_joined}");
    assert!(room_joined.get("guests").is_none(), "{room_joined}");

    // Only a clinician may invite, and only someone the booking lists.
    room.send(invite(&guest["id"]));
    assert_eq!(room.wait_for("error")["code"], "role_forbidden");
    room.send(invite(&json!("not an id")));
    assert_eq!(room.wait_for("error")["code"], "role_forbidden");
    assert_eq!(desk.refusals("access.denied", "role_forbidden").len(), 2);
    clinician.send(invite(&json!("0191f4c2-0000-7000-8000-000000000000")));
    assert_eq!(clinician.wait_for("error")["code"], "not_found");
    clinician.send(invite(&json!("not an id")));
    assert_eq!(clinician.wait_for("error")["code"], "not_found");
    clinician.send(invite(&appointment["clinician"]["id"]));
    assert_eq!(clinician.wait_for("error")["code"], "not_found");

    // The clinician gets the guest's link, and nobody else hears of it.
    clinician.send(invite(&guest["id"]));
    let invited = clinician.wait_for("invited");
    assert_eq!(invited["participant_id"], guest["id"], "{invited}");
    assert_eq!(invited["display_name"], guest["name"], "{invited}");
    let token = invited["link"].as_str().unwrap().to_owned();
    room.send(json!({ "v": 1, "type": "ping", "id": 9 }));
    assert_eq!(room.wait_for("pong")["id"], 9);

    // The guest joins with it and waits to be admitted.
    let (mut guest_ws, guest_joined) = link_joins(&desk, GUEST_IP, &token, "guest-browser");
    assert_eq!((guest_joined["role"].as_str(), guest_joined["admitted"].as_bool()), (Some("guest"), Some(false)));
    assert_eq!(guest_joined["participant_id"], guest["id"]);
    // Inviting again gives the same link and leaves the guest connected.
    clinician.send(invite(&guest["id"]));
    assert_eq!(clinician.wait_for("invited")["link"], invited["link"]);
    guest_ws.send(json!({ "v": 1, "type": "ping", "id": 3 }));
    assert_eq!(guest_ws.wait_for("pong")["id"], 3);
    clinician.send(json!({ "v": 1, "type": "admit", "participant_id": guest["id"] }));
    guest_ws.wait_for("admitted");

    // Each invitation is recorded as a link issued by the clinician.
    let issued: Vec<Value> =
        session_records(&desk, "link.issued", id).into_iter().filter(|r| r["actor"]["type"] == "participant").collect();
    assert_eq!(issued.len(), 2, "{issued:#?}");
    assert!(issued.iter().all(|r| r["ip"] == CLINICIAN_IP.to_string()), "{issued:#?}");
    assert!(!format!("{issued:?}").contains(&token), "a link reached the audit log");
    assert!(!desk.gw.log.lock().unwrap().join("\n").contains(&token), "a link reached the gateway's log");

    // A link the booking team withdrew stays withdrawn: only they may issue another.
    let links = desk.gw.staff_request(&desk.scheduler, "GET", &format!("/api/v1/appointments/{id}/links"), None);
    let links = links.json();
    let guest_link = links.as_array().unwrap().iter().find(|l| l["participant_id"] == guest["id"]).unwrap();
    let path = format!("/api/v1/links/{}", guest_link["id"].as_str().unwrap());
    assert_status(&desk.gw.staff_request(&desk.scheduler, "DELETE", &path, None), 204);
    guest_ws.expect_ended_within("link_revoked", POLICY_LATENCY);
    let before = desk.refusals("access.denied", "link_revoked").len();
    clinician.send(invite(&guest["id"]));
    let refused = clinician.wait_for("error");
    assert_eq!(refused["code"], "guest_link_revoked", "{refused}");
    assert_eq!(desk.refusals("access.denied", "link_revoked").len(), before + 1, "the refusal is recorded");
}

#[test]
fn revoking_the_clinicians_link_or_the_rooms_device_ends_that_member_within_a_second() {
    let desk = Desk::new();
    let appointment = desk.booked(-5, 25);
    let (mut room, _) = room_joins(&desk);
    let (token, link_id) = desk.link(&appointment);
    let (mut clinician, clinician_joined) = link_joins(&desk, CLINICIAN_IP, &token, "clinician-browser");

    assert_status(&desk.gw.staff_request(&desk.scheduler, "DELETE", &format!("/api/v1/links/{link_id}"), None), 204);
    clinician.expect_ended_within("link_revoked", POLICY_LATENCY);
    // Only the clinician: the room is still connected and sees the clinician gone.
    room.participants_until("the clinician away", |l| state_of(l, &clinician_joined["participant_id"]) == "away");

    let revoked =
        desk.gw.staff_request(&desk.scheduler, "DELETE", &format!("/api/v1/rooms/{}/device", desk.room_id()), None);
    assert_status(&revoked, 204);
    room.expect_ended_within("device_revoked", POLICY_LATENCY);
    // Each leaving is on record with the policy's reason.
    desk.awaited_refusals("session.left", "link_revoked", 1);
    desk.awaited_refusals("session.left", "device_revoked", 1);
}

/// An admitted call that staff end by `act` (answered `status`): both members hear `reason`
/// within [`POLICY_LATENCY`].
fn staff_end_the_call(act: impl FnOnce(&Desk, &Value) -> Response, status: u16, reason: &str) {
    let desk = Desk::new();
    let appointment = desk.booked(-5, 25);
    let Call { mut room, mut clinician, .. } = admitted_call(&desk, &appointment);
    assert_status(&act(&desk, &appointment), status);
    room.expect_ended_within(reason, POLICY_LATENCY);
    clinician.expect_ended_within(reason, POLICY_LATENCY);
    // The session's own end is on record, with the policy's reason, once its members are gone;
    // so is each member's leaving.
    desk.awaited_refusals("session.ended", reason, 1);
    let left = desk.awaited_refusals("session.left", reason, 2);
    let mut who: Vec<&str> = left.iter().map(|r| r["record"]["actor"]["type"].as_str().unwrap()).collect();
    who.sort_unstable();
    assert_eq!(who, ["participant", "room"], "{left:#?}");
}

#[test]
fn a_lockdown_ends_the_call_for_everyone_within_a_second() {
    let lock_down = |desk: &Desk, _: &Value| {
        let lockdown = json!({ "room_id": desk.room_id(), "reason": "Incident on the wing" });
        desk.gw.staff_request(&desk.security, "POST", "/api/v1/lockdowns", Some(lockdown))
    };
    staff_end_the_call(lock_down, 201, "room_locked_down");
}

#[test]
fn cancelling_the_appointment_ends_the_call_for_everyone_within_a_second() {
    let cancel = |desk: &Desk, appointment: &Value| {
        let path = format!("/api/v1/appointments/{}/cancel", appointment["id"].as_str().unwrap());
        desk.gw.staff_request(&desk.scheduler, "POST", &path, Some(json!({ "reason": "Patient transferred" })))
    };
    staff_end_the_call(cancel, 200, "appointment_cancelled");
}

#[test]
fn security_sees_live_sessions_as_metadata_only_and_terminates_with_a_reason_everyone_sees() {
    let desk = Desk::new();
    let appointment = desk.booked(-5, 25);
    let id = appointment["id"].as_str().unwrap();
    let Call { mut room, mut clinician, room_joined, .. } = admitted_call(&desk, &appointment);
    clinician.participants_until("the room admitted", |l| state_of(l, &room_joined["participant_id"]) == "admitted");

    let live = desk.gw.staff_request(&desk.security, "GET", "/api/v1/sessions", None);
    assert_status(&live, 200);
    let sessions = live.json();
    assert_eq!(sessions.as_array().unwrap().len(), 1, "{sessions}");
    // The operators' gauges say the same.
    assert_eq!(gauges(&desk), (1, 2));
    let session = &sessions[0];
    assert_eq!(session["id"], id);
    let mut members: Vec<(String, String, String)> = session["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m.as_object().unwrap().len(), 4, "a member is a name, a role, a state and a quality: {m}");
            // The quality is figures about the connection, nothing that names where it comes from.
            let mut quality: Vec<&str> = m["quality"].as_object().unwrap().keys().map(String::as_str).collect();
            quality.sort_unstable();
            let figures = [
                "bitrate_in_kbps",
                "bitrate_out_kbps",
                "estimate_kbps",
                "grade",
                "loss_in_percent",
                "loss_out_percent",
                "rtt_ms",
            ];
            assert_eq!(quality, figures, "{m}");
            let field = |k: &str| m[k].as_str().unwrap().to_owned();
            (field("display_name"), field("role"), field("state"))
        })
        .collect();
    members.sort();
    let room_name = room_joined["display_name"].as_str().unwrap().to_owned();
    let mut expected = vec![
        ("Dr Test".to_owned(), "clinician".to_owned(), "admitted".to_owned()),
        (room_name, "room".to_owned(), "admitted".to_owned()),
    ];
    expected.sort();
    assert_eq!(members, expected);
    let history: Vec<&str> =
        session["history"].as_array().unwrap().iter().map(|h| h["what"].as_str().unwrap()).collect();
    assert!(history.iter().filter(|w| w.contains("joined")).count() >= 2, "{history:?}");
    assert!(history.iter().any(|w| w.contains("admitted")), "{history:?}");
    // Metadata only: never an address (the parties connect from 127.0.0.2 and .3).
    assert!(!live.body.contains("127.0.0."), "an address reached security: {}", live.body);
    assert!(!live.body.contains("\"ip\""), "{}", live.body);

    let as_scheduler = desk.gw.staff_request(&desk.scheduler, "GET", "/api/v1/sessions", None);
    assert_status(&as_scheduler, 403);
    assert_eq!(as_scheduler.json()["code"], "role_forbidden");

    let reason = "Escort called away to an incident";
    let terminated = desk.gw.staff_request(
        &desk.security,
        "POST",
        &format!("/api/v1/sessions/{id}/terminate"),
        Some(json!({ "reason": reason })),
    );
    assert_status(&terminated, 204);
    for ws in [&mut room, &mut clinician] {
        let ended = ws.expect_ended_within("terminated", POLICY_LATENCY);
        assert!(ended["message"].as_str().unwrap().contains(reason), "{ended}");
    }
    assert_eq!(get_appointment(&desk, id)["status"], "terminated");
    // The session is over: it leaves the list and the gauges, and each member's leaving is
    // on record, with the code but not security's words.
    assert_no_live_session(&desk);
    let deadline = Instant::now() + WAIT;
    while gauges(&desk) != (0, 0) {
        assert!(Instant::now() < deadline, "the gauges still say {:?}", gauges(&desk));
        std::thread::sleep(Duration::from_millis(100));
    }
    let left = desk.awaited_refusals("session.left", "terminated", 2);
    assert!(!format!("{left:?}").contains("Escort"), "{left:#?}");
}

#[test]
fn timing_warnings_come_five_minutes_before_and_at_the_end_and_the_hard_end_closes_the_call() {
    let desk = Desk::new();
    let appointment = desk.booked(-5, 25);
    let Call { mut room, mut clinician, .. } = admitted_call(&desk, &appointment);
    // As stored (whole seconds; the booking reply echoes the sub-second times it was sent).
    let stored = get_appointment(&desk, appointment["id"].as_str().unwrap());
    let ends_at: jiff::Timestamp = stored["end"].as_str().unwrap().parse().unwrap();
    let hard_end: jiff::Timestamp = stored["window"]["hard_end"].as_str().unwrap().parse().unwrap();
    assert_eq!(hard_end - ends_at, jiff::SignedDuration::from_mins(10), "the overrun is 10 minutes");

    // The session checks its timers twice a second, so each step shows within WAIT.
    for (offset_min, warning) in [(21, "five_minutes"), (25, "end")] {
        desk.gw.set_clock_offset(offset_min * 60);
        for ws in [&mut room, &mut clinician] {
            let timing = ws.wait_for("timing");
            assert_eq!(timing["warning"], warning, "{timing}");
            let shown = |k: &str| timing[k].as_str().unwrap().parse::<jiff::Timestamp>().unwrap();
            assert_eq!(shown("ends_at"), ends_at, "{timing}");
            assert_eq!(shown("hard_end"), hard_end, "{timing}");
        }
    }
    desk.gw.set_clock_offset(36 * 60);
    room.expect_ended("window_closed");
    clinician.expect_ended("window_closed");
    // Staff sessions lapse after 15 idle minutes of gateway time: sign in again to look.
    let scheduler = desk.gw.sign_in("sched", PASSWORD, None);
    let shown = desk.gw.staff_request(
        &scheduler,
        "GET",
        &format!("/api/v1/appointments/{}", stored["id"].as_str().unwrap()),
        None,
    );
    assert_status(&shown, 200);
    assert_eq!(shown.json()["status"], "ended", "{}", shown.body);
}

#[test]
fn the_clinicians_end_ends_the_session_for_everyone_and_marks_the_appointment_ended() {
    let desk = Desk::new();
    let appointment = desk.booked(-5, 25);
    let Call { mut room, mut clinician, .. } = admitted_call(&desk, &appointment);
    // Only a clinician may end the consultation.
    room.send(json!({ "v": 1, "type": "end" }));
    assert_eq!(room.wait_for("error")["code"], "role_forbidden");
    clinician.send(json!({ "v": 1, "type": "end" }));
    clinician.expect_ended("ended_by_clinician");
    room.expect_ended("ended_by_clinician");
    assert_eq!(get_appointment(&desk, appointment["id"].as_str().unwrap())["status"], "ended");
}

#[test]
fn bad_messages_get_coded_errors_and_ten_of_them_close_with_4400() {
    let desk = Desk::new();
    desk.booked(-5, 25);
    let (mut room, _) = room_joins(&desk);
    let oversized = json!({ "v": 1, "type": "ping", "pad": "x".repeat(70 * 1024) }).to_string();
    for (text, code) in [
        ("{\"v\":1,\"type\":".to_owned(), "invalid_json"),
        (json!({ "v": 1, "type": "dance" }).to_string(), "unknown_type"),
        (json!({ "v": 2, "type": "ping" }).to_string(), "unsupported_version"),
        (json!({ "v": 1, "type": "ping", "id": 1, "colour": "red" }).to_string(), "invalid_message"),
        (oversized, "too_large"),
    ] {
        room.send_text(text);
        room.expect_error(code);
    }
    // Still open and answering: a ping's id comes back in the pong.
    room.send(json!({ "v": 1, "type": "ping", "id": 4242 }));
    assert_eq!(room.expect("pong")["id"], 4242);

    // Five more refusals make ten: the tenth is answered, then the connection closes.
    room.send_raw(Message::binary(vec![1, 2, 3]));
    room.expect_error("invalid_message");
    room.send(join_device(&desk.kiosk));
    room.expect_error("already_joined");
    room.send(json!({ "v": 1, "type": "offer", "sdp": "hello" }));
    room.expect_error("bad_sdp");
    for _ in 0..2 {
        room.send_text("not json".to_owned());
        room.expect_error("invalid_json");
    }
    assert_eq!(room.expect_close(), Some(4400));
    // The room's leaving is recorded as the gateway's refusal to keep it, with why.
    let cut_off = desk.awaited_refusals("session.left", "signalling_abuse", 1);
    assert_eq!(cut_off.len(), 1, "{cut_off:#?}");
    assert_eq!(cut_off[0]["record"]["actor"]["type"], "room", "{cut_off:#?}");

    // Before a join there is no session: the same closure is a refused access from the address.
    let mut anonymous = Ws::connect(&desk, GUEST_IP, None);
    for _ in 0..10 {
        anonymous.send_text("not json".to_owned());
        anonymous.expect_error("invalid_json");
    }
    assert_eq!(anonymous.expect_close(), Some(4400));
    let cut_off = desk.awaited_refusals("access.denied", "signalling_abuse", 1);
    assert_eq!(cut_off[0]["record"]["ip"], GUEST_IP.to_string(), "{cut_off:#?}");
}

/// Sends 200 pings in one go and reads what comes back until the close or the 200th answer:
/// the pong ids and the number of `rate_limited` errors, and the close code if it closed.
fn flood(ws: &mut Ws) -> (Vec<u64>, usize, Option<Option<u16>>) {
    let stream = &mut ws.stream;
    ws.rt.block_on(async {
        for id in 0..200u64 {
            // The gateway may close mid-flood; what it answered is read below.
            if stream.feed(Message::text(json!({ "v": 1, "type": "ping", "id": id }).to_string())).await.is_err() {
                break;
            }
        }
        let _ = tokio::time::timeout(WAIT, stream.flush()).await;
    });
    let (mut pongs, mut limited) = (Vec::new(), 0);
    while pongs.len() + limited < 200 {
        match ws.next_event(WAIT) {
            Some(Event::Message(m)) if m["type"] == "pong" => pongs.push(m["id"].as_u64().unwrap()),
            Some(Event::Message(m)) if m["type"] == "error" => {
                assert_eq!(m["code"], "rate_limited", "{m}");
                assert!(m["retry_after_s"].as_u64().is_some_and(|s| s >= 1), "no wait: {m}");
                limited += 1;
            }
            Some(Event::Message(m)) => assert_eq!(m["type"], "participants", "{m}"),
            Some(Event::Closed(code)) => return (pongs, limited, Some(code)),
            None => panic!("the gateway went quiet after {} pongs and {limited} refusals", pongs.len()),
        }
    }
    (pongs, limited, None)
}

#[test]
fn a_ping_flood_is_rate_limited_and_the_gateway_stays_healthy() {
    let desk = Desk::new();
    let appointment = desk.booked(-5, 25);
    let (mut room, _) = room_joins(&desk);
    let (pongs, limited, closed) = flood(&mut room);
    // The burst of 40 messages (the join among them) is answered in order; the rest is
    // refused, and a client that keeps flooding is cut off with 4429.
    assert!(pongs.len() >= 39, "the burst allowance was not honoured: {} pongs", pongs.len());
    assert!(pongs.windows(2).all(|w| w[0] < w[1]) && pongs[0] == 0, "{pongs:?}");
    assert!(limited >= 1, "200 pings at once were never refused ({} pongs)", pongs.len());
    assert!(matches!(closed, None | Some(Some(4429))), "closed with {closed:?}");
    if closed.is_some() {
        desk.awaited_refusals("session.left", "signalling_flood", 1);
    }

    // The gateway is fine: its readiness holds and a new connection joins and is answered.
    assert_eq!(desk.gw.admin_get("/readyz").status, 200);
    let (token, _) = desk.link(&appointment);
    let (mut clinician, joined) = link_joins(&desk, CLINICIAN_IP, &token, "clinician-browser");
    assert_eq!(joined["role"], "clinician");
    clinician.send(json!({ "v": 1, "type": "ping", "id": 1 }));
    assert_eq!(clinician.wait_for("pong")["id"], 1);
}

#[test]
fn a_ping_flood_before_join_is_rate_limited_too() {
    let desk = Desk::new();
    let mut anonymous = Ws::connect(&desk, GUEST_IP, None);
    let (pongs, limited, closed) = flood(&mut anonymous);
    // An unauthenticated connection may not do what an admitted one may not.
    assert!(limited >= 1, "an unauthenticated client got {} pongs for 200 pings at once, none refused", pongs.len());
    assert!(matches!(closed, None | Some(Some(4429))), "closed with {closed:?}");
    if closed.is_some() {
        let cut_off = desk.awaited_refusals("access.denied", "signalling_flood", 1);
        assert_eq!(cut_off[0]["record"]["ip"], GUEST_IP.to_string(), "{cut_off:#?}");
    }
}

#[test]
fn session_audit_records_carry_only_their_own_actors_address() {
    let desk = Desk::new();
    let appointment = desk.booked(-5, 25);
    let id = appointment["id"].as_str().unwrap();
    let Call { mut room, clinician, room_joined, clinician_joined, .. } = admitted_call(&desk, &appointment);
    room.send(json!({ "v": 1, "type": "leave" }));
    room.expect_ended("left");
    clinician.close();

    let (room_ip, clinician_ip) = (ROOM_IP.to_string(), CLINICIAN_IP.to_string());
    let (room_id, clinician_id) = (&room_joined["participant_id"], &clinician_joined["participant_id"]);
    // Both departures are recorded once the session has noticed them.
    let deadline = Instant::now() + WAIT;
    let left = loop {
        let left = session_records(&desk, "session.left", id);
        if left.len() >= 2 || Instant::now() > deadline {
            break left;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let expectations = [
        ("session.joined", vec![(room_id, &room_ip), (clinician_id, &clinician_ip)]),
        ("session.waiting", vec![(room_id, &room_ip)]),
        // The clinician admits the room: the clinician's address, the room as the object.
        ("session.admitted", vec![(room_id, &clinician_ip)]),
        ("session.left", vec![(room_id, &room_ip), (clinician_id, &clinician_ip)]),
    ];
    for (kind, expected) in expectations {
        let records = if kind == "session.left" { left.clone() } else { session_records(&desk, kind, id) };
        assert_eq!(records.len(), expected.len(), "{kind}: {records:#?}");
        for (participant, ip) in expected {
            let record = records
                .iter()
                .find(|r| r["object"]["participant"] == *participant)
                .unwrap_or_else(|| panic!("no {kind} record for {participant}: {records:#?}"));
            assert_eq!(record["ip"], ip.as_str(), "{kind}: {record}");
            let other = if *ip == room_ip { &clinician_ip } else { &room_ip };
            assert!(!record.to_string().contains(other.as_str()), "{kind} carries another party's address: {record}");
        }
    }
}

#[test]
fn replacing_the_rooms_device_credential_ends_the_kiosk_on_the_old_one_and_it_cannot_rejoin() {
    let desk = Desk::new();
    let appointment = desk.booked(-5, 25);
    let Call { mut room, mut clinician, room_joined, .. } = admitted_call(&desk, &appointment);
    let room_id = room_joined["participant_id"].clone();

    let replaced =
        desk.gw.staff_request(&desk.scheduler, "POST", &format!("/api/v1/rooms/{}/device", desk.room_id()), None);
    assert_status(&replaced, 200);
    room.expect_ended_within("device_revoked", POLICY_LATENCY);
    // Only the kiosk: the clinician stays and sees the room away.
    clinician.participants_until("the room away", |l| state_of(l, &room_id) == "away");

    // The old credential cannot come back, even within the window.
    let mut old = Ws::connect(&desk, ROOM_IP, None);
    old.send(join_device(&desk.kiosk));
    old.expect_error("device_revoked");
    assert_eq!(old.expect_close(), Some(4401));

    // The new one is the room's now, but its admission was the old credential's: it waits.
    let new_kiosk = replaced.json()["device_credential"].as_str().unwrap().to_owned();
    let mut room = Ws::connect(&desk, ROOM_IP, None);
    room.send(join_device(&new_kiosk));
    let joined = room.expect("joined");
    assert_eq!(joined["participant_id"], room_id, "the same room, as the same member");
    assert_eq!(joined["admitted"], false, "{joined}");
    room.expect("waiting");
    clinician.participants_until("the room waiting", |l| state_of(l, &room_id) == "waiting");
    clinician.send(json!({ "v": 1, "type": "admit", "participant_id": room_id }));
    room.wait_for("admitted");
}

#[test]
fn a_guest_back_with_a_reissued_link_waits_to_be_admitted_again() {
    let desk = Desk::new();
    let appointment = desk.booked(-5, 25);
    let id = appointment["id"].as_str().unwrap();
    let guest_link = || {
        let issued = desk.gw.staff_request(
            &desk.scheduler,
            "POST",
            &format!("/api/v1/appointments/{id}/links"),
            Some(json!({ "participant_id": appointment["guests"][0]["id"] })),
        );
        assert_status(&issued, 201);
        issued.json()["url"].as_str().unwrap().rsplit('/').next().unwrap().to_owned()
    };
    let Call { mut clinician, .. } = admitted_call(&desk, &appointment);
    let (guest, joined) = link_joins(&desk, GUEST_IP, &guest_link(), "guest-browser");
    let guest_id = joined["participant_id"].clone();
    clinician.participants_until("the guest waiting", |l| state_of(l, &guest_id) == "waiting");
    clinician.send(json!({ "v": 1, "type": "admit", "participant_id": guest_id }));
    clinician.participants_until("the guest admitted", |l| state_of(l, &guest_id) == "admitted");
    guest.close();
    clinician.participants_until("the guest away", |l| state_of(l, &guest_id) == "away");

    let (_guest, rejoined) = link_joins(&desk, GUEST_IP, &guest_link(), "guest-browser");
    assert_eq!(rejoined["participant_id"], guest_id, "the same guest");
    assert_eq!(rejoined["admitted"], false, "a new link is admitted afresh: {rejoined}");
    clinician.participants_until("the guest waiting again", |l| state_of(l, &guest_id) == "waiting");
}

/// Waits until security's list of live sessions is empty.
fn assert_no_live_session(desk: &Desk) {
    let deadline = Instant::now() + WAIT;
    loop {
        let live = desk.gw.staff_request(&desk.security, "GET", "/api/v1/sessions", None);
        assert_status(&live, 200);
        if live.json().as_array().unwrap().is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "a session that is over is still listed: {}", live.body);
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_rescheduled_live_session_takes_the_new_times_and_ends_at_the_new_hard_end() {
    let desk = Desk::new();
    let appointment = desk.booked(-5, 25);
    let id = appointment["id"].as_str().unwrap();
    let Call { mut room, mut clinician, .. } = admitted_call(&desk, &appointment);

    // Moved to end in three minutes: everyone hears the new times at once, then the
    // five-minute warning, which is due already.
    let now = jiff::Timestamp::now();
    let moved = desk.gw.staff_request(
        &desk.scheduler,
        "POST",
        &format!("/api/v1/appointments/{id}/reschedule"),
        Some(json!({
            "start": (now - jiff::SignedDuration::from_mins(5)).to_string(),
            "end": (now + jiff::SignedDuration::from_mins(3)).to_string(),
        })),
    );
    assert_status(&moved, 200);
    let stored = get_appointment(&desk, id);
    let ends_at: jiff::Timestamp = stored["end"].as_str().unwrap().parse().unwrap();
    let hard_end: jiff::Timestamp = stored["window"]["hard_end"].as_str().unwrap().parse().unwrap();
    for ws in [&mut room, &mut clinician] {
        let timing = ws.wait_for_within("timing", POLICY_LATENCY);
        assert_eq!(timing["warning"], Value::Null, "{timing}");
        assert_eq!(timing["ends_at"].as_str().unwrap().parse::<jiff::Timestamp>().unwrap(), ends_at, "{timing}");
        assert_eq!(timing["hard_end"].as_str().unwrap().parse::<jiff::Timestamp>().unwrap(), hard_end, "{timing}");
        assert_eq!(ws.wait_for("timing")["warning"], "five_minutes");
    }
    let live = desk.gw.staff_request(&desk.security, "GET", "/api/v1/sessions", None).json();
    assert_eq!(live[0]["hard_end"].as_str().unwrap().parse::<jiff::Timestamp>().unwrap(), hard_end, "{live}");

    // Past the new hard end (the old one is 22 minutes later): over for everyone.
    desk.gw.set_clock_offset(14 * 60);
    for ws in [&mut room, &mut clinician] {
        assert_eq!(ws.wait_for("timing")["warning"], "end");
        ws.expect_ended("window_closed");
    }
    assert_no_live_session(&desk);
}

#[test]
fn a_cancelled_live_session_ends_even_for_members_who_are_away() {
    let desk = Desk::new();
    let appointment = desk.booked(-5, 25);
    let Call { room, mut clinician, room_joined, .. } = admitted_call(&desk, &appointment);
    room.close();
    clinician.participants_until("the room away", |l| state_of(l, &room_joined["participant_id"]) == "away");
    let cancelled = desk.gw.staff_request(
        &desk.scheduler,
        "POST",
        &format!("/api/v1/appointments/{}/cancel", appointment["id"].as_str().unwrap()),
        Some(json!({ "reason": "Patient transferred" })),
    );
    assert_status(&cancelled, 200);
    clinician.expect_ended_within("appointment_cancelled", POLICY_LATENCY);
    // The session is over, not waiting for the away room until its hard end.
    assert_no_live_session(&desk);
    let mut room = Ws::connect(&desk, ROOM_IP, None);
    room.send(join_device(&desk.kiosk));
    room.expect_error("room_not_booked");
}

/// Makes the gateway's database refuse `statement`'s writes (as a failing disk would) until
/// the returned guard is dropped.
struct Refusing {
    db: rusqlite::Connection,
    name: &'static str,
}

impl Refusing {
    fn writes(desk: &Desk, name: &'static str, trigger: &str) -> Self {
        let db = rusqlite::Connection::open(desk.gw.dir.join("data/gatehouse.db")).unwrap();
        db.execute_batch(&format!("CREATE TRIGGER {name} {trigger} BEGIN SELECT RAISE(ABORT, 'disk says no'); END;"))
            .unwrap();
        Self { db, name }
    }
}

impl Drop for Refusing {
    fn drop(&mut self) {
        self.db.execute_batch(&format!("DROP TRIGGER {};", self.name)).unwrap();
    }
}

#[test]
fn no_audit_no_join_and_no_admission_in_a_live_session() {
    let desk = Desk::new();
    let appointment = desk.booked(-5, 25);

    // The join cannot be recorded: refused with its code, and nobody is in the session.
    let failing =
        Refusing::writes(&desk, "no_joins", "BEFORE INSERT ON audit_records WHEN NEW.kind = 'session.joined'");
    let mut room = Ws::connect(&desk, ROOM_IP, None);
    room.send(join_device(&desk.kiosk));
    room.expect_error("audit_unavailable");
    assert_eq!(room.expect_close(), Some(4401));
    drop(failing);
    let (mut room, room_joined) = room_joins(&desk);

    // The admission cannot be recorded: the clinician is told, and the room still waits.
    let (token, _) = desk.link(&appointment);
    let (mut clinician, _) = link_joins(&desk, CLINICIAN_IP, &token, "clinician-browser");
    let failing =
        Refusing::writes(&desk, "no_admissions", "BEFORE INSERT ON audit_records WHEN NEW.kind = 'session.admitted'");
    clinician.send(json!({ "v": 1, "type": "admit", "participant_id": room_joined["participant_id"] }));
    assert_eq!(clinician.wait_for("error")["code"], "audit_unavailable");
    let live = desk.gw.staff_request(&desk.security, "GET", "/api/v1/sessions", None).json();
    let room_member = live[0]["members"].as_array().unwrap().iter().find(|m| m["role"] == "room").cloned();
    assert_eq!(room_member.unwrap()["state"], "waiting", "{live}");
    drop(failing);
    clinician.send(json!({ "v": 1, "type": "admit", "participant_id": room_joined["participant_id"] }));
    room.wait_for("admitted");
}

#[test]
fn a_termination_that_cannot_be_stored_is_reported_and_the_session_carries_on_until_retried() {
    let desk = Desk::new();
    let appointment = desk.booked(-5, 25);
    let id = appointment["id"].as_str().unwrap();
    let Call { mut room, mut clinician, .. } = admitted_call(&desk, &appointment);
    let terminate = || {
        desk.gw.staff_request(
            &desk.security,
            "POST",
            &format!("/api/v1/sessions/{id}/terminate"),
            Some(json!({ "reason": "Escort called away" })),
        )
    };
    let failing = Refusing::writes(&desk, "no_status", "BEFORE UPDATE ON appointments");
    let refused = terminate();
    assert_status(&refused, 500);
    assert!(!refused.json()["message"].as_str().unwrap().is_empty());
    assert_eq!(get_appointment(&desk, id)["status"], "open");
    room.send(json!({ "v": 1, "type": "ping", "id": 7 }));
    assert_eq!(room.wait_for("pong")["id"], 7, "the session carries on");
    drop(failing);
    assert_status(&terminate(), 204);
    room.expect_ended_within("terminated", POLICY_LATENCY);
    clinician.expect_ended_within("terminated", POLICY_LATENCY);
    assert_eq!(get_appointment(&desk, id)["status"], "terminated");
}

#[test]
fn offers_have_their_own_low_rate_limit() {
    let desk = Desk::new();
    desk.booked(-5, 25);
    let (mut room, _) = room_joins(&desk);
    // Each offer rebuilds a peer connection: three at once are taken (these are not usable,
    // so the media core refuses them), the fourth is refused before it reaches the media core.
    for _ in 0..4 {
        room.send(json!({ "v": 1, "type": "offer", "sdp": "v=0\r\n" }));
    }
    let errors: Vec<Value> = (0..4).map(|_| room.wait_for("error")).collect();
    let mut codes: Vec<&str> = errors.iter().map(|e| e["code"].as_str().unwrap()).collect();
    codes.sort();
    assert_eq!(codes, ["bad_sdp", "bad_sdp", "bad_sdp", "offer_rate_limited"]);
    // The refusal says when the next offer will be taken: one every 10 seconds.
    let refused = errors.iter().find(|e| e["code"] == "offer_rate_limited").unwrap();
    let wait = refused["retry_after_s"].as_i64().unwrap_or_else(|| panic!("no wait: {refused}"));
    assert!((1..=10).contains(&wait), "{refused}");
    assert!(refused["message"].as_str().unwrap().contains(&format!("Try again in {wait} seconds")), "{refused}");
    // Refused, not punished: the connection carries on.
    room.send(json!({ "v": 1, "type": "ping", "id": 5 }));
    assert_eq!(room.wait_for("pong")["id"], 5);
    // A second before the wait is over the offer is still refused; once it is over, taken.
    desk.gw.set_clock_offset(wait - 1);
    room.send(json!({ "v": 1, "type": "offer", "sdp": "v=0\r\n" }));
    assert_eq!(room.wait_for("error")["code"], "offer_rate_limited");
    desk.gw.set_clock_offset(wait);
    room.send(json!({ "v": 1, "type": "offer", "sdp": "v=0\r\n" }));
    assert_eq!(room.wait_for("error")["code"], "bad_sdp");
}

#[test]
fn the_join_limit_per_address_is_a_setting() {
    let desk = Desk::with_settings(&["--join-burst", "3", "--join-refill", "1h"]);
    desk.booked(-5, 25);
    for _ in 0..3 {
        assert_eq!(desk.join_room("ghr_made-up").status, 401);
    }
    let limited = desk.join_room("ghr_made-up");
    // A whole refill from an empty bucket: an hour, less what the test has taken so far.
    let wait = limited.retry_after();
    assert!((3500..=3600).contains(&wait), "Retry-After: {wait}");
    // The room's real credential from the same address is refused too, over the WebSocket,
    // with the same wait.
    let mut ws = Ws::connect(&desk, Ipv4Addr::LOCALHOST, None);
    ws.send(join_device(&desk.kiosk));
    let refused = ws.expect_error("rate_limited");
    let told = refused["retry_after_s"].as_u64().unwrap_or_else(|| panic!("no wait: {refused}"));
    assert!((wait - 1..=wait).contains(&told), "told {told}s over the WebSocket, {wait}s over HTTPS");
    assert_eq!(ws.expect_close(), Some(4401));
    assert_eq!(desk.refusals("access.denied", "rate_limited").len(), 1);

    // Retry-After is when the next attempt is let through: still refused two seconds before,
    // answered on its merits once it has passed.
    let wait = i64::try_from(wait).unwrap();
    desk.gw.set_clock_offset(wait - 2);
    assert_status(&desk.join_room("ghr_made-up"), 429);
    desk.gw.set_clock_offset(wait);
    assert_status(&desk.join_room("ghr_made-up"), 401);
}

#[test]
fn a_join_refused_for_its_address_is_let_through_after_its_retry_after() {
    // One attempt at once, then one every 3 seconds, so that the real wait is short.
    let desk = Desk::with_settings(&["--join-burst", "1", "--join-refill", "3s"]);
    desk.booked(-5, 25);
    assert_status(&desk.join_room("ghr_made-up"), 401);
    let wait = desk.join_room("ghr_made-up").retry_after();
    assert!(wait <= 3, "never longer than the refill: {wait}");
    std::thread::sleep(Duration::from_secs(wait));
    assert_status(&desk.join_room("ghr_made-up"), 401);
}

#[test]
fn join_attempts_are_limited_per_address_and_their_refusals_summarised_in_the_audit() {
    // The default burst, with no refill during the test however slowly the machine runs it.
    let desk = Desk::with_settings(&["--join-refill", "1h"]);
    desk.booked(-5, 25);
    // A burst of 30 attempts from one address is answered on its merits; then 429.
    for _ in 0..30 {
        assert_eq!(desk.join_room("ghr_made-up").status, 401);
    }
    for _ in 0..10 {
        let limited = desk.join_room("ghr_made-up");
        assert!(limited.retry_after() > 3500, "{limited:?}");
    }
    // The same address over the WebSocket, even with the room's real credential.
    let mut ws = Ws::connect(&desk, Ipv4Addr::LOCALHOST, None);
    ws.send(join_device(&desk.kiosk));
    ws.expect_error("rate_limited");
    assert_eq!(ws.expect_close(), Some(4401));
    // Another address is not affected.
    room_joins(&desk);

    // The first of the eleven refusals is recorded at once; the other ten wait for the address's
    // summary.
    let limited = desk.refusals("access.denied", "rate_limited");
    assert_eq!(limited.len(), 1, "{limited:#?}");
    assert_eq!(limited[0]["record"]["ip"], "127.0.0.1");
    assert!(limited[0]["record"]["details"]["attempts"].is_null(), "{limited:#?}");
    let summary = desk.rate_limited_summary("access.denied");
    assert_eq!(summary["ip"], "127.0.0.1", "{summary}");
    assert_eq!(summary["details"]["attempts"], 10, "{summary}");
}

#[test]
fn refused_requests_beyond_their_addresss_share_of_records_are_summarised_and_answered_as_before() {
    let desk = Desk::with_settings(&["--join-burst", "3", "--join-refill", "1h"]);
    desk.booked(-5, 25);
    let no_session = || desk.gw.request("GET", "/api/v1/rooms", &[], None);
    let forged_token = || desk.gw.api_get("/api/v1/audit/records", "gha_forged");
    let foreign_page = || match Ws::upgrade(&desk, Ipv4Addr::LOCALHOST, None, Some("https://evil.example")) {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body: Value = serde_json::from_slice(response.body().as_deref().unwrap_or_default()).unwrap();
            (response.status().as_u16(), body["code"].as_str().unwrap_or_default().to_owned())
        }
        other => panic!("a WebSocket from another site's page: {:?}", other.map(|_| ())),
    };
    // Three rounds from one address: each refusal is answered on its merits every time, so
    // that a page elsewhere cannot shut the address out by sending them.
    for _ in 0..3 {
        assert_status(&no_session(), 401);
        assert_status(&forged_token(), 401);
        assert_eq!(foreign_page(), (403, "origin_forbidden".to_owned()));
    }
    // The joins from that address have their own allowance, untouched.
    let mut room = Ws::connect(&desk, Ipv4Addr::LOCALHOST, None);
    room.send(join_device(&desk.kiosk));
    assert_eq!(room.expect("joined")["role"], "room");
    // The first three are recorded one by one, and so is the first beyond the share; the
    // other five are counted in the address's summary.
    assert_eq!(desk.refusals("access.denied", "not_authenticated").len(), 2);
    assert_eq!(desk.refusals("audit.access_refused", "not_authenticated").len(), 1);
    assert_eq!(desk.refusals("access.denied", "origin_forbidden").len(), 1);
    let summary = desk.repeated_refusals_summary();
    assert_eq!(summary["ip"], "127.0.0.1", "{summary}");
    assert_eq!(summary["details"]["attempts"], 5, "{summary}");
}

#[test]
fn only_the_gateways_own_pages_may_open_signalling_and_a_link_needs_a_browser_cookie() {
    let desk = Desk::new();
    let appointment = desk.booked(-5, 25);
    // Another site's page, or no Origin at all: 403 before any upgrade, and audited.
    for origin in [Some("https://evil.example"), Some("http://localhost"), None] {
        match Ws::upgrade(&desk, GUEST_IP, Some("guest-browser"), origin) {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 403, "{origin:?}");
                let body: Value = serde_json::from_slice(response.body().as_deref().unwrap_or_default()).unwrap();
                assert_eq!(body["code"], "origin_forbidden", "{origin:?}");
            }
            Ok(_) => panic!("a WebSocket from origin {origin:?} was accepted"),
            Err(e) => panic!("{origin:?}: {e}"),
        }
    }
    let refused = desk.refusals("access.denied", "origin_forbidden");
    assert_eq!(refused.len(), 3, "{refused:#?}");
    assert!(refused.iter().all(|r| r["record"]["ip"] == GUEST_IP.to_string()), "{refused:#?}");

    // A link first used without a browser cookie is refused and stays unbound...
    let (token, _) = desk.link(&appointment);
    let mut cookieless = Ws::connect(&desk, CLINICIAN_IP, None);
    cookieless.send(join_link(&token));
    cookieless.expect_error("browser_unknown");
    assert_eq!(cookieless.expect_close(), Some(4401));
    assert_eq!(desk.refusals("link.refused", "browser_unknown").len(), 1);
    // ... so the consultant's own browser can still take it, and then only that browser.
    let (_clinician, joined) = link_joins(&desk, CLINICIAN_IP, &token, "clinician-browser");
    assert_eq!(joined["role"], "clinician");
    let mut elsewhere = Ws::connect(&desk, GUEST_IP, Some("another-browser"));
    elsewhere.send(join_link(&token));
    elsewhere.expect_error("link_bound_elsewhere");
    // A kiosk needs no cookie.
    room_joins(&desk);
}

#[test]
fn a_terminated_appointment_in_its_overrun_gives_the_room_to_the_next_one() {
    let desk = Desk::new();
    let first = desk.booked(-5, 25);
    let next = desk.booked(27, 60);
    let (mut room, _) = room_joins(&desk);
    let terminated = desk.gw.staff_request(
        &desk.security,
        "POST",
        &format!("/api/v1/sessions/{}/terminate", first["id"].as_str().unwrap()),
        Some(json!({ "reason": "Escort called away" })),
    );
    assert_status(&terminated, 204);
    room.expect_ended("terminated");
    // Within the first one's overrun, and the next one's early join.
    desk.gw.set_clock_offset(26 * 60);
    let mut room = Ws::connect(&desk, ROOM_IP, None);
    room.send(join_device(&desk.kiosk));
    assert_eq!(room.expect("joined")["appointment_id"], next["id"]);
}

#[test]
fn terminating_is_refused_by_role_before_anything_about_the_session_is_told() {
    let desk = Desk::new();
    let appointment = desk.booked(-5, 25);
    let (_room, _) = room_joins(&desk);
    let live = appointment["id"].as_str().unwrap().to_owned();
    for id in [live.as_str(), "not-an-id", "0190b6e2-0000-7000-8000-000000000000"] {
        let response = desk.gw.staff_request(
            &desk.scheduler,
            "POST",
            &format!("/api/v1/sessions/{id}/terminate"),
            Some(json!({ "reason": "Curious" })),
        );
        assert_status(&response, 403);
        assert_eq!(response.json()["code"], "role_forbidden", "{id}");
    }
    let missing = desk.gw.staff_request(
        &desk.security,
        "POST",
        "/api/v1/sessions/0190b6e2-0000-7000-8000-000000000000/terminate",
        Some(json!({ "reason": "Drill" })),
    );
    assert_status(&missing, 404);
}

#[test]
fn a_join_during_the_shutdown_drain_is_told_the_gateway_is_going() {
    let desk = Desk::new();
    desk.booked(-5, 25);
    // Open before the stop, joining after it: the drain keeps the connection open.
    let mut room = Ws::connect(&desk, ROOM_IP, None);
    desk.gw.terminate();
    let deadline = Instant::now() + WAIT;
    while desk.gw.admin_get("/readyz").status != 503 {
        assert!(Instant::now() < deadline, "readiness never dropped");
        std::thread::sleep(Duration::from_millis(20));
    }
    room.send(join_device(&desk.kiosk));
    room.expect_error("gateway_shutdown");
    assert_eq!(room.expect_close(), Some(4401));
}
