//! The audit record: typed event kinds, outcomes, actors and objects, serialised canonically
//! (RFC 8785) exactly as it is hashed and stored. There is deliberately no free-text field, so
//! media, chat, SDP, keys, tokens or clinical text have nowhere to travel.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::canonical;
use super::merkle::{self, Hash};

/// The format version written into every record.
pub const RECORD_VERSION: u8 = 1;
/// Records larger than this are refused: nothing legitimate is this big, and a bound keeps
/// export and verification predictable.
pub const MAX_RECORD_BYTES: usize = 4096;

/// Declares the event kinds once: the enum, its stable codes and the list of all of them.
macro_rules! event_kinds {
    ($($(#[$doc:meta])* $variant:ident => $code:literal,)*) => {
        /// What happened. The string is the stable code written into records.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum EventKind {
            $($(#[$doc])* #[serde(rename = $code)] $variant,)*
        }

        impl EventKind {
            pub const ALL: &[EventKind] = &[$(Self::$variant,)*];

            pub fn code(self) -> &'static str {
                match self {
                    $(Self::$variant => $code,)*
                }
            }
        }
    };
}

// Adding an event is one line here.
event_kinds! {
    GatewayStarted => "gateway.started",
    GatewayStopped => "gateway.stopped",
    AuditRead => "audit.read",
    AuditExported => "audit.exported",
    CheckpointSigned => "audit.checkpoint_signed",
    AuditKeyRotated => "audit.key_rotated",
    AuditTokenIssued => "audit.token_issued",
    AuditAccessRefused => "audit.access_refused",
    StaffCreated => "staff.created",
    StaffDisabled => "staff.disabled",
    StaffTotpReset => "staff.totp_reset",
    StaffSignedIn => "staff.signed_in",
    StaffSignInFailed => "staff.sign_in_failed",
    StaffLockedOut => "staff.locked_out",
    StaffSignedOut => "staff.signed_out",
    RoomEnrolled => "room.enrolled",
    RoomDeviceReplaced => "room.device_replaced",
    RoomDeviceRevoked => "room.device_revoked",
    AppointmentBooked => "appointment.booked",
    AppointmentRescheduled => "appointment.rescheduled",
    AppointmentCancelled => "appointment.cancelled",
    LinkIssued => "link.issued",
    LinkUsed => "link.used",
    LinkRefused => "link.refused",
    LinkRevoked => "link.revoked",
    LinkKeyRotated => "link.key_rotated",
    LockdownPlaced => "lockdown.placed",
    LockdownLifted => "lockdown.lifted",
    AccessDenied => "access.denied",
    SessionJoined => "session.joined",
    SessionWaiting => "session.waiting",
    SessionAdmitted => "session.admitted",
    SessionLeft => "session.left",
    SessionReconnected => "session.reconnected",
    SessionWarned => "session.warned",
    SessionEnded => "session.ended",
    SessionTerminated => "session.terminated",
    SessionRefused => "session.refused",
    MediaFailed => "media.failed",
}

impl EventKind {
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.code() == code)
    }
}

/// Whether the action succeeded, or was refused and why (a stable reason code).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case", deny_unknown_fields)]
pub enum Outcome {
    Success,
    Refused { reason: Code },
    Failed { reason: Code },
}

/// Who did it. Identifiers only; never a name, a token or a credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Actor {
    /// The gateway itself (start, stop, checkpoints).
    System,
    /// Someone at the gateway's own console, using the CLI.
    Operator,
    Staff {
        id: Code,
        role: Code,
    },
    Room {
        id: Code,
    },
    Participant {
        id: Code,
        role: Code,
    },
    /// A holder of an API token issued with `gatehouse audit token`.
    ApiToken {
        id: Code,
    },
    /// A caller who could not be identified (a refused request).
    Anonymous,
}

/// What it was done to: appointment, session and room identifiers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Object {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appointment: Option<Code>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<Code>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<Code>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participant: Option<Code>,
    /// The staff account concerned (created, disabled, signed in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staff: Option<Code>,
    /// The id (never the secret) of an API token, link, lockdown or device credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<Code>,
}

impl Object {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Typed facts some events carry. Every field is a number, a code or a hash: never prose.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Details {
    /// The gateway's version (started, stopped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<Code>,
    /// Tree size of a signed checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree_size: Option<u64>,
    /// Root hash (hex) of a signed checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<Code>,
    /// Signing key id (hex) of a checkpoint or a rotated key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<Code>,
    /// Export format (jsonl, csv, fhir).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Code>,
    /// How many records a read or export returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<u64>,
    /// The filter fields a query used (their names, not values that could carry text).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Code>,
    /// How many refused attempts a summary record stands for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u64>,
}

impl Details {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A short identifier-like string: letters, digits and `._:-/+@`, at most 128 characters.
/// Codes, ids, roles and hashes are all of this shape; prose is not, which keeps it out.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Code(String);

impl Code {
    pub const MAX_LEN: usize = 128;

    pub fn new(s: impl Into<String>) -> Result<Self, RecordError> {
        let s = s.into();
        let ok = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:-/+@".contains(&b));
        if ok { Ok(Self(s)) } else { Err(RecordError::BadCode(s.chars().take(40).collect())) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Code {
    type Error = RecordError;
    fn try_from(s: String) -> Result<Self, RecordError> {
        Self::new(s)
    }
}

impl From<Code> for String {
    fn from(c: Code) -> String {
        c.0
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An event as the rest of the gateway reports it; the writer adds position, time and chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub outcome: Outcome,
    pub actor: Actor,
    /// The actor's own address, never another party's.
    pub ip: Option<IpAddr>,
    pub object: Object,
    pub details: Details,
    /// When it happened, if that differs from when it was recorded.
    pub occurred: Option<OffsetDateTime>,
}

impl Event {
    /// A successful event by `actor`, with nothing else set.
    pub fn new(kind: EventKind, actor: Actor) -> Self {
        Self {
            kind,
            outcome: Outcome::Success,
            actor,
            ip: None,
            object: Object::default(),
            details: Details::default(),
            occurred: None,
        }
    }

    pub fn refused(mut self, reason: &str) -> Self {
        self.outcome = Outcome::Refused { reason: Code::new(reason).unwrap_or_else(|_| fallback_code()) };
        self
    }

    pub fn from_ip(mut self, ip: IpAddr) -> Self {
        self.ip = Some(ip);
        self
    }

    pub fn with_details(mut self, details: Details) -> Self {
        self.details = details;
        self
    }

    pub fn with_object(mut self, object: Object) -> Self {
        self.object = object;
        self
    }
}

fn fallback_code() -> Code {
    Code("invalid_code".to_owned())
}

/// The stored record, field for field as it is serialised and hashed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub v: u8,
    pub seq: u64,
    #[serde(with = "timestamp")]
    pub recorded: OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "timestamp::option")]
    pub occurred: Option<OffsetDateTime>,
    pub kind: EventKind,
    pub outcome: Outcome,
    pub actor: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Object::is_empty")]
    pub object: Object,
    #[serde(default, skip_serializing_if = "Details::is_empty")]
    pub details: Details,
    /// Hex of the previous record's leaf hash; all zeros for the first record.
    pub prev: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{0:?} is not a code: use letters, digits and ._:-/+@ only, at most 128 characters")]
    BadCode(String),
    #[error("the record is {0} bytes; audit records are limited to {MAX_RECORD_BYTES}")]
    TooLarge(usize),
    #[error("the record cannot be serialised: {0}")]
    Serialise(String),
    #[error("the record is not valid: {0}")]
    Parse(String),
    #[error("the record is not in canonical form")]
    NotCanonical,
}

impl Record {
    pub fn from_event(event: Event, seq: u64, recorded: OffsetDateTime, prev: &Hash) -> Self {
        Self {
            v: RECORD_VERSION,
            seq,
            recorded,
            occurred: event.occurred.filter(|o| *o != recorded),
            kind: event.kind,
            outcome: event.outcome,
            actor: event.actor,
            ip: event.ip,
            object: event.object,
            details: event.details,
            prev: hex(prev),
        }
    }

    /// The canonical bytes: what is hashed, stored and exported.
    pub fn canonical(&self) -> Result<String, RecordError> {
        let value = serde_json::to_value(self).map_err(|e| RecordError::Serialise(e.to_string()))?;
        let text = canonical::to_canonical_string(&value).map_err(|e| RecordError::Serialise(e.to_string()))?;
        if text.len() > MAX_RECORD_BYTES {
            return Err(RecordError::TooLarge(text.len()));
        }
        Ok(text)
    }

    /// Parses stored or exported bytes strictly: unknown fields and oversized records are refused.
    pub fn parse(text: &str) -> Result<Self, RecordError> {
        if text.len() > MAX_RECORD_BYTES {
            return Err(RecordError::TooLarge(text.len()));
        }
        serde_json::from_str(text).map_err(|e| RecordError::Parse(e.to_string()))
    }

    pub fn prev_hash(&self) -> Option<Hash> {
        unhex(&self.prev)
    }
}

/// Record times: UTC, always nine fractional digits, so that the text form is canonical and
/// sorts in time order (which the search index relies on).
pub mod timestamp {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::format_description::FormatItem;
    use time::macros::format_description;
    use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

    const FORMAT: &[FormatItem<'static>] =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z");

    pub fn format(t: OffsetDateTime) -> String {
        t.to_offset(UtcOffset::UTC).format(FORMAT).unwrap_or_default()
    }

    pub fn parse(text: &str) -> Option<OffsetDateTime> {
        PrimitiveDateTime::parse(text, FORMAT).ok().map(PrimitiveDateTime::assume_utc)
    }

    pub fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).ok_or_else(|| serde::de::Error::custom("not a canonical UTC timestamp"))
    }

    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(t: &Option<OffsetDateTime>, s: S) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => super::serialize(t, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<OffsetDateTime>, D::Error> {
            super::deserialize(d).map(Some)
        }
    }
}

/// The leaf hash of a record's canonical bytes: its identity in the chain and the tree.
pub fn record_hash(canonical: &str) -> Hash {
    merkle::leaf_hash(canonical.as_bytes())
}

pub fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// A 32-byte hash from lower- or upper-case hex.
pub fn unhex(text: &str) -> Option<Hash> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Record {
        let event = Event::new(EventKind::GatewayStarted, Actor::System)
            .with_details(Details { version: Some(Code::new("0.1.0").unwrap()), ..Details::default() });
        Record::from_event(event, 7, time::macros::datetime!(2026-11-24 10:00:00.123456789 UTC), &[0; 32])
    }

    #[test]
    fn canonical_round_trip_is_stable() {
        let record = sample();
        let text = record.canonical().unwrap();
        assert!(
            text.starts_with(r#"{"actor":{"type":"system"},"details":{"version":"0.1.0"},"kind":"gateway.started""#)
        );
        let parsed = Record::parse(&text).unwrap();
        assert_eq!(parsed, record);
        assert_eq!(parsed.canonical().unwrap(), text);
    }

    #[test]
    fn unknown_fields_and_prose_are_refused() {
        let text = sample().canonical().unwrap();
        let extra = text.replacen('{', r#"{"chat":"hello",  "#, 1);
        assert!(Record::parse(&extra).is_err());
        assert!(Code::new("window not open").is_err());
        assert!(Code::new("x".repeat(129)).is_err());
        assert!(Code::new("window_not_open").is_ok());
    }

    #[test]
    fn oversized_records_are_refused() {
        let mut record = sample();
        record.details.filters = (0..100).map(|i| Code::new(format!("filter-{i:0>40}")).unwrap()).collect();
        assert!(matches!(record.canonical(), Err(RecordError::TooLarge(_))));
    }

    #[test]
    fn every_kind_has_its_code() {
        for kind in EventKind::ALL {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.code());
            assert_eq!(EventKind::from_code(kind.code()), Some(*kind));
        }
    }
}
