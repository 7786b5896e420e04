//! Exports of audit records: JSON Lines (the authoritative form, verifiable offline), CSV for
//! spreadsheets (with formula injection neutralised) and a FHIR R4 Bundle of AuditEvent resources.

use serde_json::{Value, json};

use super::record::{Actor, Outcome, Record, hex, record_hash};

/// The export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Csv,
    Fhir,
}

impl Format {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "jsonl" => Some(Self::Jsonl),
            "csv" => Some(Self::Csv),
            "fhir" => Some(Self::Fhir),
            _ => None,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Self::Jsonl => "jsonl",
            Self::Csv => "csv",
            Self::Fhir => "fhir",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Jsonl => "application/jsonl",
            Self::Csv => "text/csv; charset=utf-8",
            Self::Fhir => "application/fhir+json",
        }
    }
}

/// The local code system for Gatehouse event kinds in FHIR exports.
pub const FHIR_EVENT_SYSTEM: &str = "urn:gatehouse:audit-event";

/// One exported record: its canonical body, exactly as stored, and the parsed record.
pub struct Exported<'a> {
    pub body: &'a str,
    pub record: &'a Record,
}

pub fn jsonl(records: &[Exported<'_>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.iter().map(|r| r.body.len() + 1).sum());
    for r in records {
        out.extend_from_slice(r.body.as_bytes());
        out.push(b'\n');
    }
    out
}

const CSV_HEADER: [&str; 19] = [
    "seq",
    "recorded",
    "occurred",
    "kind",
    "outcome",
    "reason",
    "actor_type",
    "actor_id",
    "actor_role",
    "ip",
    "appointment",
    "session",
    "room",
    "participant",
    "staff",
    "credential",
    "details",
    "prev",
    "hash",
];

pub fn csv(records: &[Exported<'_>]) -> Vec<u8> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let _ = writer.write_record(CSV_HEADER);
    for r in records {
        let rec = r.record;
        let (actor_type, actor_id, actor_role) = actor_parts(&rec.actor);
        let (outcome, reason) = outcome_parts(&rec.outcome);
        let object = &rec.object;
        let fields = [
            rec.seq.to_string(),
            super::record::timestamp::format(rec.recorded),
            rec.occurred.map(super::record::timestamp::format).unwrap_or_default(),
            rec.kind.code().to_owned(),
            outcome.to_owned(),
            reason,
            actor_type.to_owned(),
            actor_id,
            actor_role,
            rec.ip.map(|ip| ip.to_string()).unwrap_or_default(),
            object.appointment.as_ref().map(ToString::to_string).unwrap_or_default(),
            object.session.as_ref().map(ToString::to_string).unwrap_or_default(),
            object.room.as_ref().map(ToString::to_string).unwrap_or_default(),
            object.participant.as_ref().map(ToString::to_string).unwrap_or_default(),
            object.staff.as_ref().map(ToString::to_string).unwrap_or_default(),
            object.credential.as_ref().map(ToString::to_string).unwrap_or_default(),
            serde_json::to_string(&rec.details).unwrap_or_default(),
            rec.prev.clone(),
            hex(&record_hash(r.body)),
        ];
        let _ = writer.write_record(fields.iter().map(|f| neutralise_formula(f)));
    }
    writer.into_inner().unwrap_or_default()
}

/// Spreadsheets run cells starting with these as formulas; a leading apostrophe makes them text
/// (the OWASP CSV-injection advice).
fn neutralise_formula(cell: &str) -> String {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}"),
        _ => cell.to_owned(),
    }
}

fn actor_parts(actor: &Actor) -> (&'static str, String, String) {
    match actor {
        Actor::System => ("system", String::new(), String::new()),
        Actor::Operator => ("operator", String::new(), String::new()),
        Actor::Anonymous => ("anonymous", String::new(), String::new()),
        Actor::Staff { id, role } => ("staff", id.to_string(), role.to_string()),
        Actor::Room { id } => ("room", id.to_string(), "room".to_owned()),
        Actor::Participant { id, role } => ("participant", id.to_string(), role.to_string()),
        Actor::ApiToken { id } => ("api_token", id.to_string(), String::new()),
    }
}

fn outcome_parts(outcome: &Outcome) -> (&'static str, String) {
    match outcome {
        Outcome::Success => ("success", String::new()),
        Outcome::Refused { reason } => ("refused", reason.to_string()),
        Outcome::Failed { reason } => ("failed", reason.to_string()),
    }
}

/// A FHIR R4 `Bundle` (type `collection`) of `AuditEvent` resources.
pub fn fhir(records: &[Exported<'_>], gateway: &str) -> Vec<u8> {
    let entries: Vec<Value> = records.iter().map(|r| json!({ "resource": audit_event(r, gateway) })).collect();
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": super::record::timestamp::format(time::OffsetDateTime::now_utc()),
        "entry": entries,
    });
    serde_json::to_vec_pretty(&bundle).unwrap_or_default()
}

fn audit_event(r: &Exported<'_>, gateway: &str) -> Value {
    let rec = r.record;
    let kind = rec.kind.code();
    let category = kind.split('.').next().unwrap_or(kind);
    let (outcome, reason) = outcome_parts(&rec.outcome);
    // FHIR AuditEventOutcome: 0 success, 4 minor failure (a refusal), 8 serious failure.
    let outcome_code = match outcome {
        "success" => "0",
        "refused" => "4",
        _ => "8",
    };
    let (actor_type, actor_id, actor_role) = actor_parts(&rec.actor);
    let mut agent = json!({
        "type": { "text": actor_type },
        "requestor": !matches!(rec.actor, Actor::System),
    });
    if !actor_id.is_empty() {
        agent["who"] = json!({ "identifier": { "system": format!("urn:gatehouse:{actor_type}"), "value": actor_id } });
    }
    if !actor_role.is_empty() {
        agent["role"] = json!([{ "text": actor_role }]);
    }
    if let Some(ip) = rec.ip {
        // AuditEventAgentNetworkType 2: IP address.
        agent["network"] = json!({ "address": ip.to_string(), "type": "2" });
    }
    let mut entities = vec![json!({
        "what": { "identifier": { "system": "urn:gatehouse:audit-seq", "value": rec.seq.to_string() } },
        "type": { "code": "record", "display": "Gatehouse audit record" },
        "detail": [
            { "type": "leaf_hash", "valueString": hex(&record_hash(r.body)) },
            { "type": "prev", "valueString": rec.prev },
        ],
    })];
    for (what, id) in [
        ("appointment", &rec.object.appointment),
        ("session", &rec.object.session),
        ("room", &rec.object.room),
        ("participant", &rec.object.participant),
        ("staff", &rec.object.staff),
        ("credential", &rec.object.credential),
    ] {
        if let Some(id) = id {
            entities.push(json!({ "what": { "identifier": { "system": format!("urn:gatehouse:{what}"), "value": id.to_string() } } }));
        }
    }
    let mut event = json!({
        "resourceType": "AuditEvent",
        "id": format!("gatehouse-audit-{}", rec.seq),
        "type": { "system": FHIR_EVENT_SYSTEM, "code": category },
        "subtype": [{ "system": FHIR_EVENT_SYSTEM, "code": kind }],
        "action": fhir_action(kind),
        "recorded": super::record::timestamp::format(rec.recorded),
        "outcome": outcome_code,
        "agent": [agent],
        "source": {
            "observer": { "display": gateway },
            "type": [{
                "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                "code": "4",
                "display": "Application Server",
            }],
        },
        "entity": entities,
    });
    if !reason.is_empty() {
        event["outcomeDesc"] = json!(reason);
    }
    if let Some(occurred) = rec.occurred {
        event["period"] = json!({ "start": super::record::timestamp::format(occurred) });
    }
    event
}

/// FHIR AuditEventAction: C create, R read, U update, D delete, E execute.
fn fhir_action(kind: &str) -> &'static str {
    match kind {
        "audit.read" | "audit.exported" => "R",
        k if k.ends_with(".booked") || k.ends_with(".issued") || k.ends_with(".enrolled") => "C",
        k if k.ends_with(".changed") || k.ends_with(".rescheduled") => "U",
        k if k.ends_with(".cancelled") || k.ends_with(".revoked") => "D",
        _ => "E",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_neutralised() {
        assert_eq!(neutralise_formula("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(neutralise_formula("+1"), "'+1");
        assert_eq!(neutralise_formula("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(neutralise_formula("gateway.started"), "gateway.started");
    }
}
