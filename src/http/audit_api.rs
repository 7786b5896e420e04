//! The audit API for security staff: search, record detail, inclusion proofs, the latest
//! checkpoint and exports. Every call is itself audited by the audit module; every refusal is
//! audited here.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::ApiError;
use super::listener::ClientAddr;
use crate::audit::record::{hex, timestamp};
use crate::audit::{Actor, AuditError, AuditLog, Event, EventKind, export::Format};
use crate::auth::api_token;
use crate::store::{AuditQuery, Store, StoredRecord};

#[derive(Clone)]
pub struct AuditApi {
    pub audit: AuditLog,
    pub store: Arc<dyn Store>,
}

pub fn routes(state: AuditApi) -> Router {
    Router::new()
        .route("/api/v1/audit/records", get(search))
        .route("/api/v1/audit/records/{seq}", get(record))
        .route("/api/v1/audit/records/{seq}/proof", get(proof))
        .route("/api/v1/audit/checkpoint", get(checkpoint))
        .route("/api/v1/audit/export", get(export))
        .with_state(state)
}

/// An authenticated caller of the audit API: today a CLI-issued token; staff accounts with the
/// `security` role replace it.
struct AuditReader {
    actor: Actor,
    ip: IpAddr,
}

impl FromRequestParts<AuditApi> for AuditReader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AuditApi) -> Result<Self, ApiError> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<ClientAddr>>()
            .map(|ConnectInfo(ClientAddr(addr))| addr.ip())
            .ok_or_else(|| ApiError::internal(&"no client address on the request"))?;
        let secret = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .map(str::to_owned);
        let store = state.store.clone();
        let id = match secret {
            Some(secret) => blocking(move || Ok(api_token::authenticate(store.as_ref(), &secret)?)).await?,
            None => None,
        };
        match id.and_then(|id| crate::audit::Code::new(id).ok()) {
            Some(id) => Ok(Self { actor: Actor::ApiToken { id }, ip }),
            None => {
                let refusal = Event::new(EventKind::AuditAccessRefused, Actor::Anonymous).refused("not_authenticated");
                state.audit.append(refusal.from_ip(ip)).await.map_err(audit_error)?;
                Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "not_authenticated",
                    "Sign in first: this needs a valid audit token (Authorization: Bearer ...).",
                ))
            }
        }
    }
}

/// Filters shared by search and export. Unknown parameters are refused.
#[derive(Debug, Default, Deserialize)]
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
                        .map(timestamp::format)
                        .map_err(|_| bad(format!("{name} must be an RFC 3339 time such as 2026-11-24T09:00:00Z")))
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

#[derive(Serialize)]
struct RecordView {
    seq: u64,
    leaf_hash: String,
    record: Value,
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

async fn search(
    reader: AuditReader,
    State(api): State<AuditApi>,
    filters: Result<Query<Filters>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let filters = filters.map_err(query_error)?.0;
    if filters.format.is_some() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_filter", "format belongs to the export endpoint."));
    }
    let query = filters.to_query()?;
    let audit = api.audit.clone();
    let records = blocking(move || audit.query(reader.actor, Some(reader.ip), &query)).await?;
    let next = (records.len() == filters.limit.unwrap_or(100)).then(|| records.last().map(|r| r.seq)).flatten();
    let views: Vec<RecordView> = records.iter().map(RecordView::of).collect();
    Ok(Json(serde_json::json!({ "records": views, "next_after_seq": next })).into_response())
}

async fn record(reader: AuditReader, State(api): State<AuditApi>, Path(seq): Path<u64>) -> Result<Response, ApiError> {
    let audit = api.audit.clone();
    let stored = blocking(move || audit.record(reader.actor, Some(reader.ip), seq)).await?;
    Ok(Json(RecordView::of(&stored)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProofParams {
    tree_size: Option<u64>,
}

async fn proof(
    reader: AuditReader,
    State(api): State<AuditApi>,
    Path(seq): Path<u64>,
    params: Result<Query<ProofParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let params = params.map_err(query_error)?.0;
    let audit = api.audit.clone();
    let proof = blocking(move || {
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
    Ok(Json(serde_json::json!({
        "seq": proof.seq,
        "tree_size": proof.tree_size,
        "leaf_hash": hex(&proof.leaf_hash),
        "root": hex(&proof.root),
        "path": proof.path.iter().map(|h| hex(h)).collect::<Vec<_>>(),
    }))
    .into_response())
}

async fn checkpoint(reader: AuditReader, State(api): State<AuditApi>) -> Result<Response, ApiError> {
    let audit = api.audit.clone();
    let latest = blocking(move || {
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

async fn export(
    reader: AuditReader,
    State(api): State<AuditApi>,
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
    let bytes = blocking(move || audit.export(reader.actor, Some(reader.ip), format, &query)).await?;
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

fn audit_error(e: AuditError) -> ApiError {
    match e {
        AuditError::Unavailable => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit_unavailable",
            "The audit log cannot be written right now, so nothing can be done. Tell the operator.",
        ),
        AuditError::NoSuchRecord(seq) => {
            ApiError::new(StatusCode::NOT_FOUND, "no_such_record", format!("There is no audit record {seq}."))
        }
        AuditError::BadRequest(message) => ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message),
        other => ApiError::internal(&other),
    }
}

/// Runs blocking store work off the async threads.
async fn blocking<T: Send + 'static>(
    job: impl FnOnce() -> Result<T, AuditError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(job).await.map_err(|e| ApiError::internal(&e))?.map_err(audit_error)
}
