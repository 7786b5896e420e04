//! The audit API for security staff: search, record detail, inclusion proofs, the latest
//! checkpoint and exports. Callers are security staff (by session) or holders of a token
//! issued at the gateway's console. Every call is itself audited by the audit module; every
//! refusal is audited too.

use std::net::IpAddr;

use axum::Json;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Api, ApiPath, ClientIp, Staff, audit_error, blocking, refuse};
use crate::audit::record::{hex, timestamp};
use crate::audit::{Actor, AuditError, Event, EventKind, export::Format};
use crate::auth::policy::{Action, Credential, Principal, Reason};
use crate::auth::{Caller, api_token};
use crate::http::error::{ApiError, ErrorBody};
use crate::store::{AuditQuery, StoredRecord};

pub fn routes() -> OpenApiRouter<Api> {
    OpenApiRouter::new()
        .routes(routes!(search))
        .routes(routes!(record))
        .routes(routes!(proof))
        .routes(routes!(checkpoint))
        .routes(routes!(integrity))
        .routes(routes!(export))
}

/// An authenticated reader of the audit log: security staff, or a console-issued token.
struct AuditReader {
    actor: Actor,
    ip: IpAddr,
}

impl FromRequestParts<Api> for AuditReader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Api) -> Result<Self, ApiError> {
        let ClientIp(ip) = ClientIp::from_request_parts(parts, api).await?;
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|v| v.trim().to_owned());
        if let Some(secret) = bearer {
            let api = api.clone();
            return blocking(move || {
                let id = api_token::authenticate(api.store.as_ref(), &secret).map_err(|e| ApiError::internal(&e))?;
                match id.and_then(|id| crate::audit::Code::new(id).ok()) {
                    Some(id) => Ok(Self { actor: Actor::ApiToken { id }, ip }),
                    None => Err(refuse(
                        &api,
                        &Caller::new(Principal::Anonymous, Some(ip)),
                        EventKind::AuditAccessRefused,
                        Reason::NotAuthenticated,
                    )),
                }
            })
            .await;
        }
        let staff = Staff::from_request_parts(parts, api).await?;
        let api = api.clone();
        blocking(move || {
            let now = api.now();
            api.schedule
                .authorize(&staff.caller, Action::ReadAudit, None, Credential::Valid, now)
                .map_err(super::schedule_error)?;
            Ok(Self { actor: staff.caller.actor(), ip })
        })
        .await
    }
}

/// Filters shared by search and export. Unknown parameters are refused.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct Filters {
    from: Option<String>,
    to: Option<String>,
    kind: Option<String>,
    outcome: Option<String>,
    actor: Option<String>,
    appointment: Option<String>,
    room: Option<String>,
    after_seq: Option<u64>,
    limit: Option<usize>,
    format: Option<String>,
}

impl Filters {
    fn to_query(&self) -> Result<AuditQuery, ApiError> {
        let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, "invalid_filter", message);
        let time = |name: &str, value: &Option<String>| -> Result<Option<String>, ApiError> {
            value
                .as_deref()
                .map(|v| {
                    time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
                        .ok()
                        // A time whose offset takes it past the calendar's last year has no UTC.
                        .and_then(|t| t.checked_to_offset(time::UtcOffset::UTC))
                        .map(timestamp::format)
                        .ok_or_else(|| bad(format!("{name} must be an RFC 3339 time such as 2026-11-24T09:00:00Z")))
                })
                .transpose()
        };
        if let Some(kind) = &self.kind
            && crate::audit::EventKind::from_code(kind).is_none()
        {
            return Err(bad(format!("{kind:?} is not an audit event kind")));
        }
        if let Some(outcome) = &self.outcome
            && !["success", "refused", "failed"].contains(&outcome.as_str())
        {
            return Err(bad("outcome must be success, refused or failed".into()));
        }
        for (name, value) in [("actor", &self.actor), ("appointment", &self.appointment), ("room", &self.room)] {
            if value.as_ref().is_some_and(|v| crate::audit::Code::new(v.as_str()).is_err()) {
                return Err(bad(format!("{name} must be an identifier")));
            }
        }
        let limit = self.limit.unwrap_or(100);
        if !(1..=crate::audit::MAX_PAGE).contains(&limit) {
            return Err(bad(format!("limit must be between 1 and {}", crate::audit::MAX_PAGE)));
        }
        Ok(AuditQuery {
            from: time("from", &self.from)?,
            to: time("to", &self.to)?,
            kind: self.kind.clone(),
            outcome: self.outcome.clone(),
            actor: self.actor.clone(),
            appointment: self.appointment.clone(),
            room: self.room.clone(),
            after_seq: self.after_seq,
            limit,
        })
    }
}

#[derive(Serialize, ToSchema)]
struct RecordView {
    seq: u64,
    leaf_hash: String,
    /// The record as stored (canonical JSON).
    #[schema(value_type = Object)]
    record: Value,
}

#[derive(Serialize, ToSchema)]
struct RecordPage {
    records: Vec<RecordView>,
    /// Pass as `after_seq` for the next page; absent on the last page.
    next_after_seq: Option<u64>,
}

#[derive(Serialize, ToSchema)]
struct ProofView {
    seq: u64,
    tree_size: u64,
    leaf_hash: String,
    root: String,
    /// The RFC 9162 inclusion path, hex.
    path: Vec<String>,
}

#[derive(Serialize, ToSchema)]
struct CheckpointView {
    tree_size: u64,
    /// The C2SP signed note.
    note: String,
}

impl RecordView {
    fn of(stored: &StoredRecord) -> Self {
        Self {
            seq: stored.seq,
            leaf_hash: hex(&stored.hash),
            record: serde_json::from_str(&stored.body).unwrap_or(Value::Null),
        }
    }
}

/// Searches the audit log, in `seq` order.
#[utoipa::path(get, path = "/api/v1/audit/records", tag = "audit", params(Filters),
    responses((status = 200, body = RecordPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn search(
    reader: AuditReader,
    State(api): State<Api>,
    filters: Result<Query<Filters>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let filters = filters.map_err(query_error)?.0;
    if filters.format.is_some() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_filter", "format belongs to the export endpoint."));
    }
    let query = filters.to_query()?;
    let audit = api.audit.clone();
    let records = run(move || audit.query(reader.actor, Some(reader.ip), &query)).await?;
    let next = (records.len() == filters.limit.unwrap_or(100)).then(|| records.last().map(|r| r.seq)).flatten();
    let views: Vec<RecordView> = records.iter().map(RecordView::of).collect();
    Ok(Json(RecordPage { records: views, next_after_seq: next }).into_response())
}

/// One record with its leaf hash.
#[utoipa::path(get, path = "/api/v1/audit/records/{seq}", tag = "audit", params(("seq" = u64, Path)),
    responses((status = 200, body = RecordView), (status = 404, body = ErrorBody)))]
async fn record(reader: AuditReader, State(api): State<Api>, ApiPath(seq): ApiPath<u64>) -> Result<Response, ApiError> {
    let audit = api.audit.clone();
    let stored = run(move || audit.record(reader.actor, Some(reader.ip), seq)).await?;
    Ok(Json(RecordView::of(&stored)).into_response())
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct ProofParams {
    tree_size: Option<u64>,
}

/// An RFC 9162 inclusion proof of one record (default: in the latest checkpoint's tree).
#[utoipa::path(get, path = "/api/v1/audit/records/{seq}/proof", tag = "audit", params(("seq" = u64, Path), ProofParams),
    responses((status = 200, body = ProofView), (status = 400, body = ErrorBody)))]
async fn proof(
    reader: AuditReader,
    State(api): State<Api>,
    ApiPath(seq): ApiPath<u64>,
    params: Result<Query<ProofParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let params = params.map_err(query_error)?.0;
    let audit = api.audit.clone();
    let proof = run(move || {
        let tree_size = match params.tree_size {
            Some(size) => size,
            None => audit
                .latest_checkpoint()?
                .map(|(_, size)| size)
                .ok_or(AuditError::BadRequest("no checkpoint has been signed yet; give tree_size".into()))?,
        };
        audit.record(reader.actor, Some(reader.ip), seq)?;
        audit.inclusion_proof(seq, tree_size)
    })
    .await?;
    Ok(Json(ProofView {
        seq: proof.seq,
        tree_size: proof.tree_size,
        leaf_hash: hex(&proof.leaf_hash),
        root: hex(&proof.root),
        path: proof.path.iter().map(|h| hex(h)).collect(),
    })
    .into_response())
}

/// The latest signed checkpoint, to keep as a pin.
#[utoipa::path(get, path = "/api/v1/audit/checkpoint", tag = "audit",
    responses((status = 200, body = CheckpointView), (status = 404, body = ErrorBody)))]
async fn checkpoint(reader: AuditReader, State(api): State<Api>) -> Result<Response, ApiError> {
    let audit = api.audit.clone();
    let latest = run(move || {
        let latest = audit.latest_checkpoint()?;
        let read = Event::new(EventKind::AuditRead, reader.actor).from_ip(reader.ip);
        audit.append_blocking(read)?;
        Ok(latest)
    })
    .await?;
    match latest {
        Some((note, tree_size)) => {
            Ok(Json(serde_json::json!({ "tree_size": tree_size, "note": note })).into_response())
        }
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "no_checkpoint", "No checkpoint has been signed yet.")),
    }
}

#[derive(Serialize, ToSchema)]
struct IntegrityView {
    /// Whether the whole log verified: chain, Merkle tree and every signed checkpoint.
    verified: bool,
    /// When the gateway checked (now).
    checked_at: String,
    /// Records in the log.
    records: u64,
    /// The tree size of the last signed checkpoint that verified.
    last_checkpoint_tree_size: Option<u64>,
    /// That checkpoint's signed note, to keep as a pin.
    last_checkpoint_note: Option<String>,
    /// Records after it, not yet covered by a signature.
    unsigned: u64,
    /// The Merkle root over every record, hex.
    root: Option<String>,
    /// What failed, when the log did not verify.
    failure: Option<IntegrityFailure>,
}

#[derive(Serialize, ToSchema)]
struct IntegrityFailure {
    /// The kind of damage, such as `changed_record` or `truncated`.
    class: String,
    /// The first record that fails.
    seq: u64,
    message: String,
}

/// Verifies the whole log now, as `gatehouse audit verify` does, and reports the last verified
/// checkpoint.
#[utoipa::path(get, path = "/api/v1/audit/integrity", tag = "audit",
    responses((status = 200, body = IntegrityView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn integrity(reader: AuditReader, State(api): State<Api>) -> Result<Response, ApiError> {
    let audit = api.audit.clone();
    let checked_at = api.now().to_string();
    let (outcome, latest) = run(move || {
        let outcome = audit.verify_now(reader.actor, Some(reader.ip))?;
        Ok((outcome, audit.latest_checkpoint()?))
    })
    .await?;
    let view = match outcome {
        Ok(summary) => IntegrityView {
            verified: true,
            checked_at,
            records: summary.records,
            last_checkpoint_tree_size: summary.last_checkpoint,
            // The latest stored note is the one the verifier checked last.
            last_checkpoint_note: latest.filter(|(_, size)| Some(*size) == summary.last_checkpoint).map(|(n, _)| n),
            unsigned: summary.unsigned,
            root: Some(hex(&summary.root)),
            failure: None,
        },
        Err(failure) => IntegrityView {
            verified: false,
            checked_at,
            records: 0,
            last_checkpoint_tree_size: None,
            last_checkpoint_note: None,
            unsigned: 0,
            root: None,
            failure: Some(IntegrityFailure {
                class: failure.class.name().to_owned(),
                seq: failure.seq,
                message: failure.message,
            }),
        },
    };
    Ok(Json(view).into_response())
}

/// Exports matching records as JSON Lines, CSV or a FHIR R4 Bundle of AuditEvent resources.
#[utoipa::path(get, path = "/api/v1/audit/export", tag = "audit", params(Filters),
    responses((status = 200, description = "The export file"), (status = 400, body = ErrorBody)))]
async fn export(
    reader: AuditReader,
    State(api): State<Api>,
    filters: Result<Query<Filters>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let filters = filters.map_err(query_error)?.0;
    let format = Format::parse(filters.format.as_deref().unwrap_or("jsonl"))
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "invalid_filter", "format must be jsonl, csv or fhir"))?;
    if filters.limit.is_some() || filters.after_seq.is_some() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_filter",
            "An export has no paging: drop limit and after_seq.",
        ));
    }
    let query = filters.to_query()?;
    let audit = api.audit.clone();
    let bytes = run(move || audit.export(reader.actor, Some(reader.ip), format, &query)).await?;
    let extension = match format {
        Format::Jsonl => "jsonl",
        Format::Csv => "csv",
        Format::Fhir => "fhir.json",
    };
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type().to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"gatehouse-audit.{extension}\"")),
        ],
        bytes,
    )
        .into_response())
}

fn query_error(e: axum::extract::rejection::QueryRejection) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_filter",
        format!("The query string is not valid: {}", e.body_text()),
    )
}

/// Runs audit work off the async threads, mapping its errors.
async fn run<T: Send + 'static>(job: impl FnOnce() -> Result<T, AuditError> + Send + 'static) -> Result<T, ApiError> {
    blocking(move || job().map_err(audit_error)).await
}
