//! Live sessions for security staff: metadata only (who, when, for how long, how each
//! member's connection is doing), and termination with a reason. Security never sees or hears
//! media.

use axum::Json;
use axum::extract::State;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Api, ApiJson, ApiPath, Staff, blocking, no_content, schedule_error};
use crate::auth::policy::{Action, Credential};
use crate::domain::AppointmentId;
use crate::http::error::{ApiError, ErrorBody};
use crate::session::{Grade, Quality};

pub fn routes() -> OpenApiRouter<Api> {
    OpenApiRouter::new().routes(routes!(list_sessions)).routes(routes!(terminate))
}

#[derive(Serialize, ToSchema)]
pub struct MemberView {
    display_name: String,
    /// room, clinician or guest
    role: String,
    /// waiting, admitted or away
    state: String,
    quality: QualityView,
}

/// How a member's connection to the gateway is doing: figures about the connection only,
/// never its media or its address. All figures are absent when the grade is `unknown`.
#[derive(Serialize, ToSchema)]
pub struct QualityView {
    grade: GradeView,
    /// Round-trip time between the gateway and the member, in milliseconds.
    rtt_ms: Option<u64>,
    /// Percent of the member's packets that did not reach the gateway.
    loss_in_percent: Option<f64>,
    /// Percent of the gateway's packets that the member reported lost.
    loss_out_percent: Option<f64>,
    /// Media received from the member, in kilobits per second.
    bitrate_in_kbps: Option<u64>,
    /// Media sent to the member, in kilobits per second.
    bitrate_out_kbps: Option<u64>,
    /// The gateway's estimate of the bandwidth towards the member, in kilobits per second.
    estimate_kbps: Option<u64>,
}

/// good, fair or poor by the losses and the round trip; unknown when there are no recent
/// figures (not connected, media stopped, or nothing sent either way yet).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GradeView {
    Good,
    Fair,
    Poor,
    Unknown,
}

impl From<Grade> for GradeView {
    fn from(grade: Grade) -> Self {
        match grade {
            Grade::Good => GradeView::Good,
            Grade::Fair => GradeView::Fair,
            Grade::Poor => GradeView::Poor,
            Grade::Unknown => GradeView::Unknown,
        }
    }
}

impl From<Quality> for QualityView {
    fn from(quality: Quality) -> Self {
        let figures = quality.figures;
        // One decimal: finer than that is noise over a two-second interval.
        let percent = |fraction: Option<f32>| fraction.map(|f| (f64::from(f) * 1000.0).round() / 10.0);
        QualityView {
            grade: quality.grade.into(),
            rtt_ms: figures.and_then(|f| f.rtt).map(|rtt| rtt.as_millis() as u64),
            loss_in_percent: percent(figures.and_then(|f| f.loss_in)),
            loss_out_percent: percent(figures.and_then(|f| f.loss_out)),
            bitrate_in_kbps: figures.map(|f| f.bitrate_in / 1000),
            bitrate_out_kbps: figures.map(|f| f.bitrate_out / 1000),
            estimate_kbps: figures.and_then(|f| f.estimate).map(|e| e / 1000),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct HistoryEntry {
    at: String,
    what: String,
}

#[derive(Serialize, ToSchema)]
pub struct LiveSessionView {
    /// The appointment's id, which is also the session's.
    id: String,
    room: String,
    started: String,
    ends_at: String,
    hard_end: String,
    /// Seconds until the session ends for everyone.
    remaining_seconds: i64,
    members: Vec<MemberView>,
    history: Vec<HistoryEntry>,
}

/// The live sessions, as metadata.
#[utoipa::path(get, path = "/api/v1/sessions", tag = "sessions",
    responses((status = 200, body = Vec<LiveSessionView>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_sessions(State(api): State<Api>, staff: Staff) -> Result<Json<Vec<LiveSessionView>>, ApiError> {
    let now = api.now();
    let schedule = api.schedule.clone();
    blocking(move || {
        schedule
            .authorize(&staff.caller, Action::ViewLiveSessions, None, Credential::Valid, now)
            .map_err(schedule_error)
    })
    .await?;
    let sessions = api.sessions.list().await;
    Ok(Json(
        sessions
            .into_iter()
            .map(|s| LiveSessionView {
                id: s.appointment.to_string(),
                room: s.room,
                started: s.started.to_string(),
                ends_at: s.ends_at.to_string(),
                hard_end: s.hard_end.to_string(),
                remaining_seconds: s.hard_end.duration_since(now).as_secs().max(0),
                members: s
                    .members
                    .into_iter()
                    .map(|m| MemberView {
                        display_name: m.peer.display_name,
                        role: m.peer.role.into(),
                        state: m.peer.state.into(),
                        quality: m.quality.into(),
                    })
                    .collect(),
                history: s.history.into_iter().map(|(at, what)| HistoryEntry { at: at.to_string(), what }).collect(),
            })
            .collect(),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Terminate {
    /// Shown to everyone in the session and recorded.
    #[schema(max_length = 200)]
    reason: String,
}

/// Ends a live session now, with a reason shown to its participants.
#[utoipa::path(post, path = "/api/v1/sessions/{id}/terminate", tag = "sessions", params(("id" = String, Path)), request_body = Terminate,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 500, description = "The termination could not be stored; the session goes on. Retry.", body = ErrorBody)))]
async fn terminate(
    State(api): State<Api>,
    staff: Staff,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<Terminate>,
) -> Result<Response, ApiError> {
    // The role first: whether a session exists is not for everyone to learn.
    let (schedule, caller, now) = (api.schedule.clone(), staff.caller.clone(), api.now());
    blocking(move || {
        schedule.authorize(&caller, Action::TerminateSession, None, Credential::Valid, now).map_err(schedule_error)
    })
    .await?;
    let id: AppointmentId = id.parse().map_err(|_| ApiError::not_found())?;
    let reason = crate::schedule::validate::text("reason", &body.reason, 200)
        .map_err(|e| ApiError::new(axum::http::StatusCode::BAD_REQUEST, "invalid_request", e.to_string()))?;
    api.sessions.terminate(staff.caller, id, reason).await.map_err(schedule_error)?;
    Ok(no_content())
}
