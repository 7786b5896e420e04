//! Join links (issue, list, revoke) and the door: a link holder or a room's kiosk asks to
//! enter an appointment, and learns why not when it may not.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Api, ApiJson, ApiPath, ClientIp, Staff, blocking, browser_cookie, no_content, schedule_error};
use crate::auth::policy::Reason;
use crate::auth::{digest, new_secret};
use crate::domain::{AppointmentId, LinkId, ParticipantId};
use crate::http::error::{ApiError, ErrorBody};
use crate::schedule::{Admission, LinkContext, ScheduleError};
use crate::store::LinkRecord;

/// Identifies a browser, so that a join link works only from the first browser that used it.
pub const BROWSER_COOKIE: &str = "gh_browser";

pub fn routes() -> OpenApiRouter<Api> {
    OpenApiRouter::new()
        .routes(routes!(list_links, issue_link))
        .routes(routes!(revoke_link))
        .routes(routes!(join_with_link))
        .routes(routes!(join_as_room))
}

fn not_found(what: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("There is no such {what}."))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueLink {
    /// The appointment's clinician id or one of its guests' ids.
    participant_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct IssuedLinkView {
    link_id: String,
    participant_id: String,
    role: String,
    display_name: String,
    /// Send this to the participant. It is shown once and not stored.
    url: String,
}

#[derive(Serialize, ToSchema)]
pub struct LinkView {
    id: String,
    participant_id: String,
    role: String,
    issued_at: String,
    revoked_at: Option<String>,
    /// Whether a browser has already used (and so holds) the link.
    used: bool,
}

impl LinkView {
    fn of(r: &LinkRecord) -> Self {
        let time = |s: i64| jiff::Timestamp::from_second(s).map(|t| t.to_string()).unwrap_or_default();
        Self {
            id: r.id.to_string(),
            participant_id: r.participant.to_string(),
            role: r.role.as_str().into(),
            issued_at: time(r.issued_at),
            revoked_at: r.revoked_at.map(time),
            used: r.bound_browser.is_some(),
        }
    }
}

/// The host the caller reached us by, for building link URLs.
fn host(headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| h.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c)))
        .unwrap_or("localhost")
        .to_owned()
}

/// The links issued for an appointment.
#[utoipa::path(get, path = "/api/v1/appointments/{id}/links", tag = "schedule", params(("id" = String, Path)),
    responses((status = 200, body = Vec<LinkView>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_links(
    State(api): State<Api>,
    staff: Staff,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Vec<LinkView>>, ApiError> {
    let id: AppointmentId = id.parse().map_err(|_| not_found("appointment"))?;
    let now = api.now();
    let links = blocking(move || api.schedule.links(&staff.caller, id, now).map_err(schedule_error)).await?;
    Ok(Json(links.iter().map(LinkView::of).collect()))
}

/// Issues (or reissues) the join link of the appointment's clinician or a guest. Any earlier
/// link of theirs stops working.
#[utoipa::path(post, path = "/api/v1/appointments/{id}/links", tag = "schedule", params(("id" = String, Path)), request_body = IssueLink,
    responses((status = 201, body = IssuedLinkView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn issue_link(
    State(api): State<Api>,
    staff: Staff,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<IssueLink>,
) -> Result<Response, ApiError> {
    let id: AppointmentId = id.parse().map_err(|_| not_found("appointment"))?;
    let participant: ParticipantId = body.participant_id.parse().map_err(|_| not_found("participant"))?;
    let now = api.now();
    let issued =
        blocking(move || api.schedule.issue_link(&staff.caller, id, participant, now).map_err(schedule_error)).await?;
    let view = IssuedLinkView {
        link_id: issued.record.id.to_string(),
        participant_id: issued.record.participant.to_string(),
        role: issued.record.role.as_str().into(),
        display_name: issued.display_name,
        url: format!("https://{}/join/{}", host(&headers), issued.token),
    };
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// Revokes a link: it stops working at once and a live connection made with it ends.
#[utoipa::path(delete, path = "/api/v1/links/{id}", tag = "schedule", params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn revoke_link(State(api): State<Api>, staff: Staff, ApiPath(id): ApiPath<String>) -> Result<Response, ApiError> {
    let id: LinkId = id.parse().map_err(|_| not_found("link"))?;
    let now = api.now();
    blocking(move || api.schedule.revoke_link(&staff.caller, id, now).map_err(schedule_error)).await?;
    Ok(no_content())
}

/// What a participant learns at the door: their own role and name, the room's name and the
/// appointment's times. Never another person's e-mail, the patient's pseudonym or the escort.
#[derive(Serialize, ToSchema)]
pub struct AdmissionView {
    /// clinician, guest or room
    role: String,
    /// The name the other participants will see.
    display_name: String,
    appointment: JoinAppointmentView,
    /// The gateway's clock, so the page can count down to the appointment's times.
    server_time: String,
}

#[derive(Serialize, ToSchema)]
pub struct JoinAppointmentView {
    id: String,
    room_name: String,
    start: String,
    end: String,
    /// Joining opens.
    opens: String,
    /// The session ends for everyone.
    hard_end: String,
    /// booked, open, ended, cancelled or terminated
    status: String,
}

fn admission_json(admission: &Admission, role: &str, now: jiff::Timestamp) -> AdmissionView {
    let view = &admission.view;
    AdmissionView {
        role: role.into(),
        display_name: admission.display_name.clone(),
        appointment: JoinAppointmentView {
            id: view.appointment.id.to_string(),
            room_name: view.room.name.clone(),
            start: view.appointment.start.to_string(),
            end: view.appointment.end.to_string(),
            opens: view.window.opens.to_string(),
            hard_end: view.window.hard_end.to_string(),
            status: view.effective_status(now).into(),
        },
        server_time: now.to_string(),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkJoin {
    /// The token from the link's URL (the part after /join/).
    #[schema(max_length = 2048)]
    token: String,
    /// The appointment the page expects, if it knows; a link for another one is refused.
    appointment_id: Option<String>,
}

/// A link holder asks to enter. The first browser to use a link is bound to it; any other
/// browser gets `link_bound_elsewhere`.
#[utoipa::path(post, path = "/api/v1/join/link", tag = "schedule", request_body = LinkJoin,
    responses((status = 200, body = AdmissionView), (status = 403, description = "Refused, with the reason code; an authentic link also learns `opens` (for `window_not_open`) or `status_reason` (for a cancellation or lockdown) and `server_time`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many join attempts from this address", body = ErrorBody, headers(("Retry-After" = u64, description = "Whole seconds until an attempt can be let through again")))))]
async fn join_with_link(
    State(api): State<Api>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    ApiJson(body): ApiJson<LinkJoin>,
) -> Result<Response, ApiError> {
    let (browser, new_cookie) = match browser_cookie(&headers) {
        Some(id) => (id, None),
        None => {
            let id = new_secret("ghb_").map_err(|e| ApiError::internal(&e))?;
            (id.clone(), Some(id))
        }
    };
    let now = api.now();
    let result = blocking(move || {
        let expected = body.appointment_id.as_deref();
        match api.schedule.redeem_link(&body.token, expected, Some(&digest(&browser)), Some(ip), now) {
            Ok(admission) => Ok(admission),
            Err(ScheduleError::Denied(reason)) => {
                let context = api.schedule.link_context(&body.token, now).map_err(schedule_error)?;
                Err(with_context(schedule_error(ScheduleError::Denied(reason)), reason, context, now))
            }
            Err(e) => Err(schedule_error(e)),
        }
    })
    .await;
    let mut response = match result {
        Ok(admission) => Json(admission_json(&admission, admission.role(), now)).into_response(),
        Err(e) => e.into_response(),
    };
    if let Some(id) = new_cookie
        && let Ok(value) =
            format!("{BROWSER_COOKIE}={id}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=31536000").parse()
    {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// Adds what the holder of an authentic link may learn about a refusal: `opens` (when joining
/// opens, RFC 3339) for `window_not_open`, and `status_reason` (the reason given) for a
/// cancellation, termination or lockdown.
fn with_context(error: ApiError, reason: Reason, context: Option<LinkContext>, now: jiff::Timestamp) -> ApiError {
    let Some(context) = context else { return error };
    let error = error.with_detail("server_time", now.to_string());
    let why = match reason {
        Reason::WindowNotOpen => return error.with_detail("opens", context.opens.to_string()),
        Reason::RoomLockedDown => context.lockdown_reason,
        Reason::AppointmentCancelled | Reason::AppointmentEnded => context.status_reason,
        _ => None,
    };
    match why {
        Some(why) => error.with_detail("status_reason", why),
        None => error,
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoomJoin {
    /// The credential given when the room was enrolled.
    #[schema(max_length = 128)]
    device_credential: String,
}

/// A room's kiosk asks to enter its current appointment.
#[utoipa::path(post, path = "/api/v1/join/room", tag = "schedule", request_body = RoomJoin,
    responses((status = 200, body = AdmissionView), (status = 401, body = ErrorBody), (status = 403, description = "Refused, with the reason code", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many join attempts from this address", body = ErrorBody, headers(("Retry-After" = u64, description = "Whole seconds until an attempt can be let through again")))))]
async fn join_as_room(
    State(api): State<Api>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<RoomJoin>,
) -> Result<Json<AdmissionView>, ApiError> {
    let now = api.now();
    let admission = blocking(move || {
        let (_, admission) = api.schedule.admit_room(&body.device_credential, Some(ip), now).map_err(schedule_error)?;
        admission.map_err(schedule_error)
    })
    .await?;
    Ok(Json(admission_json(&admission, admission.role(), now)))
}
