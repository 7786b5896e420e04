//! The signalling protocol, version 1: JSON messages `{"v":1,"type":...}` over a WebSocket.
//! Parsing is strict (unknown types and fields are refused) and bounded; docs/protocol.md is
//! the full description.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::session::{EndReason, SessionEvent, Warning};

pub const VERSION: u64 = 1;
/// The largest message accepted: an SDP offer with simulcast is well under this.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// How the client proves who it is, in its first message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Link { token: String, appointment_id: Option<String> },
    Device { credential: String },
}

/// Everything a client may send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    Join(Credential),
    Offer {
        sdp: String,
    },
    Answer {
        sdp: String,
    },
    /// A trickled ICE candidate. The gateway is ICE-lite: it never connects to a candidate,
    /// so it only checks the message's shape.
    Candidate,
    Admit {
        participant_id: String,
    },
    /// Clinicians only: the join link of a guest listed on the booking, to pass on.
    Invite {
        participant_id: String,
    },
    End,
    Leave,
    Ping {
        id: Option<u64>,
    },
}

/// Why a message was refused; the code is sent back in an `error` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    pub code: &'static str,
    pub message: String,
}

fn error(code: &'static str, message: impl Into<String>) -> ProtocolError {
    ProtocolError { code, message: message.into() }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinBody {
    link: Option<String>,
    device: Option<String>,
    appointment_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SdpBody {
    sdp: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // The fields are checked for shape, not used: the gateway is ICE-lite.
struct CandidateBody {
    candidate: String,
    #[serde(rename = "sdpMid")]
    sdp_mid: Option<String>,
    #[serde(rename = "sdpMLineIndex")]
    sdp_mline_index: Option<u16>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ParticipantBody {
    participant_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PingBody {
    id: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

fn body<T: for<'de> Deserialize<'de>>(kind: &str, rest: Map<String, Value>) -> Result<T, ProtocolError> {
    serde_json::from_value(Value::Object(rest))
        .map_err(|e| error("invalid_message", format!("The {kind} message is not valid: {e}")))
}

/// Parses one client message.
pub fn parse(text: &str) -> Result<ClientMessage, ProtocolError> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(error("too_large", format!("Messages are limited to {} KiB.", MAX_MESSAGE_BYTES / 1024)));
    }
    let value: Value =
        serde_json::from_str(text).map_err(|_| error("invalid_json", "The message is not valid JSON."))?;
    let Value::Object(mut map) = value else {
        return Err(error("invalid_message", "A message is a JSON object."));
    };
    match map.remove("v") {
        Some(Value::Number(v)) if v.as_u64() == Some(VERSION) => {}
        _ => return Err(error("unsupported_version", "Send \"v\": 1; this gateway speaks version 1.")),
    }
    let kind = match map.remove("type") {
        Some(Value::String(kind)) => kind,
        _ => return Err(error("invalid_message", "A message needs a \"type\".")),
    };
    let sdp_ok = |sdp: String| {
        if sdp.trim_start().starts_with("v=0") {
            Ok(sdp)
        } else {
            Err(error("bad_sdp", "That is not an SDP description."))
        }
    };
    Ok(match kind.as_str() {
        "join" => {
            let b: JoinBody = body(&kind, map)?;
            match (b.link, b.device) {
                (Some(token), None) => Credential::Link { token, appointment_id: b.appointment_id },
                (None, Some(credential)) if b.appointment_id.is_none() => Credential::Device { credential },
                _ => return Err(error("invalid_message", "Join with exactly one of \"link\" and \"device\".")),
            }
            .into()
        }
        "offer" => ClientMessage::Offer { sdp: sdp_ok(body::<SdpBody>(&kind, map)?.sdp)? },
        "answer" => ClientMessage::Answer { sdp: sdp_ok(body::<SdpBody>(&kind, map)?.sdp)? },
        "candidate" => {
            let c: CandidateBody = body(&kind, map)?;
            if c.candidate.len() > 1024 {
                return Err(error("invalid_message", "That candidate is too long."));
            }
            ClientMessage::Candidate
        }
        "admit" => ClientMessage::Admit { participant_id: body::<ParticipantBody>(&kind, map)?.participant_id },
        "invite" => ClientMessage::Invite { participant_id: body::<ParticipantBody>(&kind, map)?.participant_id },
        "end" => body::<Empty>(&kind, map).map(|_| ClientMessage::End)?,
        "leave" => body::<Empty>(&kind, map).map(|_| ClientMessage::Leave)?,
        "ping" => ClientMessage::Ping { id: body::<PingBody>(&kind, map)?.id },
        other => {
            let shown: String = other.chars().take(32).collect();
            return Err(error("unknown_type", format!("Unknown message type {shown:?}.")));
        }
    })
}

impl From<Credential> for ClientMessage {
    fn from(c: Credential) -> Self {
        Self::Join(c)
    }
}

/// A server message, as JSON text.
#[derive(Debug, Serialize)]
struct Out<'a> {
    v: u64,
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(flatten)]
    body: Value,
}

fn out(kind: &str, body: Value) -> String {
    serde_json::to_string(&Out { v: VERSION, kind, body }).unwrap_or_default()
}

pub fn error_message(code: &str, message: &str) -> String {
    out("error", json!({ "code": code, "message": message }))
}

/// An error that ends with a limit: `retry_after_s` is how many whole seconds to wait before
/// trying again.
pub fn retry_later_message(code: &str, message: &str, retry_after_s: u64) -> String {
    out("error", json!({ "code": code, "message": message, "retry_after_s": retry_after_s }))
}

pub fn pong(id: Option<u64>) -> String {
    out("pong", json!({ "id": id }))
}

/// The wire form of a session event.
pub fn event_message(event: &SessionEvent) -> String {
    match event {
        SessionEvent::Joined {
            appointment,
            participant_id,
            role,
            display_name,
            ends_at,
            hard_end,
            admitted,
            guests,
        } => {
            let mut joined = json!({
                "appointment_id": appointment.to_string(),
                "participant_id": participant_id,
                "role": role,
                "display_name": display_name,
                "ends_at": ends_at.to_string(),
                "hard_end": hard_end.to_string(),
                "admitted": admitted,
            });
            if *role == "clinician" {
                joined["guests"] =
                    guests.iter().map(|(id, name)| json!({ "participant_id": id, "display_name": name })).collect();
            }
            out("joined", joined)
        }
        SessionEvent::Waiting => out("waiting", json!({})),
        SessionEvent::Admitted => out("admitted", json!({})),
        SessionEvent::Participants(peers) => out(
            "participants",
            json!({ "participants": peers.iter().map(|p| json!({
                "id": p.id, "display_name": p.display_name, "role": p.role, "state": p.state,
            })).collect::<Vec<_>>() }),
        ),
        SessionEvent::Answer { sdp } => out("answer", json!({ "sdp": sdp })),
        SessionEvent::Offer { sdp } => out("offer", json!({ "sdp": sdp })),
        SessionEvent::Timing { ends_at, hard_end, warning } => out(
            "timing",
            json!({
                "ends_at": ends_at.to_string(),
                "hard_end": hard_end.to_string(),
                "warning": warning.map(|w| match w { Warning::FiveMinutes => "five_minutes", Warning::End => "end" }),
            }),
        ),
        SessionEvent::Error { code, message } => error_message(code, message),
        SessionEvent::Ended(reason) => ended(reason),
        SessionEvent::Invited { participant_id, display_name, token } => {
            out("invited", json!({ "participant_id": participant_id, "display_name": display_name, "link": token }))
        }
    }
}

pub fn ended(reason: &EndReason) -> String {
    out("ended", json!({ "reason": reason.code(), "message": reason.message() }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn well_formed_messages_parse() {
        assert_eq!(
            parse(r#"{"v":1,"type":"join","link":"abc"}"#).unwrap(),
            ClientMessage::Join(Credential::Link { token: "abc".into(), appointment_id: None })
        );
        assert_eq!(parse(r#"{"v":1,"type":"ping","id":7}"#).unwrap(), ClientMessage::Ping { id: Some(7) });
        assert_eq!(
            parse(r#"{"v":1,"type":"offer","sdp":"v=0\r\n"}"#).unwrap(),
            ClientMessage::Offer { sdp: "v=0\r\n".into() }
        );
        assert_eq!(
            parse(r#"{"v":1,"type":"candidate","candidate":"candidate:1 1 udp 1 10.0.0.1 9 typ host","sdpMid":"0"}"#)
                .unwrap(),
            ClientMessage::Candidate
        );
    }

    #[test]
    fn bad_messages_get_codes() {
        let code = |t: &str| parse(t).unwrap_err().code;
        assert_eq!(code("nope"), "invalid_json");
        assert_eq!(code("[1]"), "invalid_message");
        assert_eq!(code(r#"{"type":"ping"}"#), "unsupported_version");
        assert_eq!(code(r#"{"v":2,"type":"ping"}"#), "unsupported_version");
        assert_eq!(code(r#"{"v":1}"#), "invalid_message");
        assert_eq!(code(r#"{"v":1,"type":"hack"}"#), "unknown_type");
        assert_eq!(code(r#"{"v":1,"type":"ping","extra":1}"#), "invalid_message");
        assert_eq!(code(r#"{"v":1,"type":"join","link":"a","device":"b"}"#), "invalid_message");
        assert_eq!(code(r#"{"v":1,"type":"offer","sdp":"hello"}"#), "bad_sdp");
        assert_eq!(code(&format!(r#"{{"v":1,"type":"offer","sdp":"v=0{}"}}"#, "a".repeat(70_000))), "too_large");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Whatever arrives, parsing returns a message or a coded error; it never panics.
        #[test]
        fn arbitrary_text_never_panics(text in ".{0,300}") {
            let _ = parse(&text);
        }

        #[test]
        fn arbitrary_json_objects_never_panic(
            kind in prop::sample::select(vec!["join", "offer", "answer", "candidate", "admit", "invite", "end", "leave", "ping", "x"]),
            key in "[a-z_]{1,12}",
            value in prop_oneof![Just(json!(null)), any::<i64>().prop_map(|n| json!(n)), ".{0,20}".prop_map(|s| json!(s)), Just(json!([1, {"a": 2}]))],
        ) {
            let mut map = Map::new();
            map.insert("v".into(), json!(1));
            map.insert("type".into(), json!(kind));
            map.insert(key, value);
            let _ = parse(&Value::Object(map).to_string());
        }
    }
}
