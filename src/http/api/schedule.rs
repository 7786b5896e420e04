//! Rooms, appointments and lockdowns for schedulers and security staff.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Api, ApiJson, ApiPath, Staff, blocking, no_content, schedule_error};
use crate::domain::{AppointmentId, GuestKind, LockdownScope, Room, RoomId};
use crate::http::error::{ApiError, ErrorBody};
use crate::schedule::{AppointmentView, NewAppointment};
use crate::store::{AppointmentFilter, LockdownRecord};

pub fn routes() -> OpenApiRouter<Api> {
    OpenApiRouter::new()
        .routes(routes!(list_rooms, enrol_room))
        .routes(routes!(replace_device, revoke_device))
        .routes(routes!(list_appointments, book))
        .routes(routes!(get_appointment))
        .routes(routes!(reschedule))
        .routes(routes!(cancel))
        .routes(routes!(list_lockdowns, place_lockdown))
        .routes(routes!(lift_lockdown))
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
}

fn parse_time(field: &str, value: &str) -> Result<Timestamp, ApiError> {
    value.parse().map_err(|_| bad(format!("{field}: must be an RFC 3339 time such as 2026-11-24T10:00:00Z")))
}

fn parse_id<T: std::str::FromStr>(what: &str, value: &str) -> Result<T, ApiError> {
    value.parse().map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("There is no such {what}.")))
}

/// A time shown in the room's own time zone, with its offset.
pub fn local(t: Timestamp, timezone: &str) -> String {
    match t.in_tz(timezone) {
        Ok(zoned) => zoned.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
        Err(_) => t.to_string(),
    }
}

#[derive(Serialize, ToSchema)]
pub struct RoomView {
    id: String,
    site: String,
    name: String,
    timezone: String,
    /// Whether the room holds a device credential that has not been revoked.
    device_active: bool,
}

impl RoomView {
    fn of(r: &Room) -> Self {
        Self {
            id: r.id.to_string(),
            site: r.site.clone(),
            name: r.name.clone(),
            timezone: r.timezone.clone(),
            device_active: r.device_active,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrolRoom {
    #[schema(max_length = 100)]
    site: String,
    #[schema(max_length = 100)]
    name: String,
    /// IANA time zone name, such as Europe/London.
    timezone: String,
}

#[derive(Serialize, ToSchema)]
pub struct EnrolledRoom {
    room: RoomView,
    /// Shown once: enter it on the room's kiosk. Only its hash is kept.
    device_credential: String,
}

/// The enrolled rooms.
#[utoipa::path(get, path = "/api/v1/rooms", tag = "schedule",
    responses((status = 200, body = Vec<RoomView>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_rooms(State(api): State<Api>, staff: Staff) -> Result<Json<Vec<RoomView>>, ApiError> {
    let now = api.now();
    let rooms = blocking(move || api.schedule.rooms(&staff.caller, now).map_err(schedule_error)).await?;
    Ok(Json(rooms.iter().map(RoomView::of).collect()))
}

/// Enrols a room; its device credential is returned once.
#[utoipa::path(post, path = "/api/v1/rooms", tag = "schedule", request_body = EnrolRoom,
    responses((status = 201, body = EnrolledRoom), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn enrol_room(
    State(api): State<Api>,
    staff: Staff,
    ApiJson(body): ApiJson<EnrolRoom>,
) -> Result<Response, ApiError> {
    let now = api.now();
    let (room, secret) = blocking(move || {
        api.schedule.enrol_room(&staff.caller, &body.site, &body.name, &body.timezone, now).map_err(schedule_error)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(EnrolledRoom { room: RoomView::of(&room), device_credential: secret }))
        .into_response())
}

#[derive(Serialize, ToSchema)]
pub struct DeviceCredential {
    /// Shown once: enter it on the room's kiosk. The previous credential no longer works.
    device_credential: String,
}

/// Issues a new device credential for the room, replacing the old one.
#[utoipa::path(post, path = "/api/v1/rooms/{id}/device", tag = "schedule", params(("id" = String, Path)),
    responses((status = 200, body = DeviceCredential), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn replace_device(
    State(api): State<Api>,
    staff: Staff,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<DeviceCredential>, ApiError> {
    let room: RoomId = parse_id("room", &id)?;
    let now = api.now();
    let secret =
        blocking(move || api.schedule.replace_device(&staff.caller, room, now).map_err(schedule_error)).await?;
    Ok(Json(DeviceCredential { device_credential: secret }))
}

/// Revokes the room's device credential: its kiosk is disconnected and cannot rejoin.
#[utoipa::path(delete, path = "/api/v1/rooms/{id}/device", tag = "schedule", params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn revoke_device(
    State(api): State<Api>,
    staff: Staff,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let room: RoomId = parse_id("room", &id)?;
    let now = api.now();
    blocking(move || api.schedule.revoke_device(&staff.caller, room, now).map_err(schedule_error)).await?;
    Ok(no_content())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GuestInput {
    #[schema(max_length = 100)]
    name: String,
    /// interpreter or clinician
    kind: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClinicianInput {
    #[schema(max_length = 100)]
    name: String,
    email: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BookAppointment {
    room_id: String,
    /// RFC 3339, e.g. 2026-11-24T10:00:00Z
    start: String,
    end: String,
    clinician: ClinicianInput,
    /// A pseudonymous identifier: never a name or prison number.
    patient_pseudonym: String,
    /// The officer or nurse in the room who vouches for the prisoner's identity.
    escort_name: String,
    #[serde(default)]
    #[schema(max_items = 4)]
    guests: Vec<GuestInput>,
}

#[derive(Serialize, ToSchema)]
pub struct GuestView {
    id: String,
    name: String,
    kind: String,
}

#[derive(Serialize, ToSchema)]
pub struct ClinicianView {
    id: String,
    name: String,
    email: String,
}

#[derive(Serialize, ToSchema)]
pub struct WindowView {
    /// Joining opens.
    opens: String,
    /// The session ends for everyone.
    hard_end: String,
}

#[derive(Serialize, ToSchema)]
pub struct AppointmentJson {
    id: String,
    room: RoomView,
    start: String,
    end: String,
    /// Start and end in the room's time zone.
    start_local: String,
    end_local: String,
    window: WindowView,
    /// booked, open, ended, cancelled or terminated (a lockdown shows as cancelled).
    status: String,
    status_reason: Option<String>,
    clinician: ClinicianView,
    patient_pseudonym: String,
    escort_name: String,
    guests: Vec<GuestView>,
}

pub fn appointment_json(view: &AppointmentView, now: Timestamp) -> AppointmentJson {
    let a = &view.appointment;
    let tz = &view.room.timezone;
    AppointmentJson {
        id: a.id.to_string(),
        room: RoomView::of(&view.room),
        start: a.start.to_string(),
        end: a.end.to_string(),
        start_local: local(a.start, tz),
        end_local: local(a.end, tz),
        window: WindowView { opens: view.window.opens.to_string(), hard_end: view.window.hard_end.to_string() },
        status: view.effective_status(now).into(),
        status_reason: view.status_reason().map(str::to_owned),
        clinician: ClinicianView {
            id: a.clinician_id.to_string(),
            name: a.clinician_name.clone(),
            email: a.clinician_email.clone(),
        },
        patient_pseudonym: a.patient_pseudonym.clone(),
        escort_name: a.escort_name.clone(),
        guests: a
            .guests
            .iter()
            .map(|g| GuestView { id: g.id.to_string(), name: g.display_name.clone(), kind: g.kind.as_str().into() })
            .collect(),
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AppointmentQuery {
    room: Option<String>,
    /// Appointments ending after this time (RFC 3339).
    from: Option<String>,
    /// Appointments starting before this time (RFC 3339).
    to: Option<String>,
    /// booked, cancelled, ended or terminated
    status: Option<String>,
    limit: Option<usize>,
}

/// Appointments, filtered by room, time and status.
#[utoipa::path(get, path = "/api/v1/appointments", tag = "schedule", params(AppointmentQuery),
    responses((status = 200, body = Vec<AppointmentJson>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_appointments(
    State(api): State<Api>,
    staff: Staff,
    query: Result<Query<AppointmentQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<AppointmentJson>>, ApiError> {
    let Query(q) = query.map_err(|e| bad(format!("The query string is not valid: {}", e.body_text())))?;
    let status = match q.status.as_deref() {
        None => None,
        Some(s @ ("booked" | "cancelled" | "ended" | "terminated")) => {
            Some(["booked", "cancelled", "ended", "terminated"].into_iter().find(|k| *k == s).unwrap_or("booked"))
        }
        Some(_) => return Err(bad("status must be booked, cancelled, ended or terminated")),
    };
    let filter = AppointmentFilter {
        room: q.room.as_deref().map(|r| parse_id("room", r)).transpose()?,
        from: q.from.as_deref().map(|t| parse_time("from", t)).transpose()?,
        to: q.to.as_deref().map(|t| parse_time("to", t)).transpose()?,
        status,
        limit: q.limit.unwrap_or(200).clamp(1, 1000),
    };
    let now = api.now();
    let views = blocking(move || api.schedule.list(&staff.caller, &filter, now).map_err(schedule_error)).await?;
    Ok(Json(views.iter().map(|v| appointment_json(v, now)).collect()))
}

/// Books an appointment. A booking that overlaps another of the same room gets 409 with the
/// clashing appointment's id.
#[utoipa::path(post, path = "/api/v1/appointments", tag = "schedule", request_body = BookAppointment,
    responses((status = 201, body = AppointmentJson), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn book(
    State(api): State<Api>,
    staff: Staff,
    ApiJson(body): ApiJson<BookAppointment>,
) -> Result<Response, ApiError> {
    let guests = body
        .guests
        .iter()
        .map(|g| {
            GuestKind::parse(&g.kind)
                .map(|kind| (g.name.clone(), kind))
                .ok_or_else(|| bad("guests: kind must be interpreter or clinician"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if guests.len() > 4 {
        return Err(bad("guests: at most 4"));
    }
    let new = NewAppointment {
        room: parse_id::<RoomId>("room", &body.room_id).map_err(|_| bad("room_id: not a room id"))?,
        start: parse_time("start", &body.start)?,
        end: parse_time("end", &body.end)?,
        clinician_name: body.clinician.name,
        clinician_email: body.clinician.email,
        patient_pseudonym: body.patient_pseudonym,
        escort_name: body.escort_name,
        guests,
    };
    let now = api.now();
    let view = blocking(move || api.schedule.book(&staff.caller, new, now).map_err(schedule_error)).await?;
    Ok((StatusCode::CREATED, Json(appointment_json(&view, now))).into_response())
}

/// One appointment.
#[utoipa::path(get, path = "/api/v1/appointments/{id}", tag = "schedule", params(("id" = String, Path)),
    responses((status = 200, body = AppointmentJson), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_appointment(
    State(api): State<Api>,
    staff: Staff,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<AppointmentJson>, ApiError> {
    let id: AppointmentId = parse_id("appointment", &id)?;
    let now = api.now();
    let view = blocking(move || api.schedule.get(&staff.caller, id, now).map_err(schedule_error)).await?;
    Ok(Json(appointment_json(&view, now)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reschedule {
    start: String,
    end: String,
}

/// Moves an appointment. Links already issued keep their original window: reissue them.
#[utoipa::path(post, path = "/api/v1/appointments/{id}/reschedule", tag = "schedule", params(("id" = String, Path)), request_body = Reschedule,
    responses((status = 200, body = AppointmentJson), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn reschedule(
    State(api): State<Api>,
    staff: Staff,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<Reschedule>,
) -> Result<Json<AppointmentJson>, ApiError> {
    let id: AppointmentId = parse_id("appointment", &id)?;
    let (start, end) = (parse_time("start", &body.start)?, parse_time("end", &body.end)?);
    let now = api.now();
    let view =
        blocking(move || api.schedule.reschedule(&staff.caller, id, start, end, now).map_err(schedule_error)).await?;
    Ok(Json(appointment_json(&view, now)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Cancel {
    /// Shown to the participants.
    #[schema(max_length = 200)]
    reason: String,
}

/// Cancels an appointment with a reason; live connections end.
#[utoipa::path(post, path = "/api/v1/appointments/{id}/cancel", tag = "schedule", params(("id" = String, Path)), request_body = Cancel,
    responses((status = 200, body = AppointmentJson), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn cancel(
    State(api): State<Api>,
    staff: Staff,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<Cancel>,
) -> Result<Json<AppointmentJson>, ApiError> {
    let id: AppointmentId = parse_id("appointment", &id)?;
    let now = api.now();
    let view =
        blocking(move || api.schedule.cancel(&staff.caller, id, &body.reason, now).map_err(schedule_error)).await?;
    Ok(Json(appointment_json(&view, now)))
}

#[derive(Serialize, ToSchema)]
pub struct LockdownView {
    id: String,
    /// room or site
    scope: String,
    /// The room id or the site name.
    target: String,
    reason: String,
    since: String,
}

impl LockdownView {
    fn of(r: &LockdownRecord) -> Self {
        let (scope, target) = match &r.lockdown.scope {
            LockdownScope::Room(id) => ("room", id.to_string()),
            LockdownScope::Site(site) => ("site", site.clone()),
        };
        Self {
            id: r.id.to_string(),
            scope: scope.into(),
            target,
            reason: r.lockdown.reason.clone(),
            since: r.lockdown.since.to_string(),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceLockdown {
    /// Lock one room down...
    room_id: Option<String>,
    /// ...or a whole site.
    site: Option<String>,
    /// Shown to the consultant.
    #[schema(max_length = 200)]
    reason: String,
}

/// Lockdowns in force.
#[utoipa::path(get, path = "/api/v1/lockdowns", tag = "schedule",
    responses((status = 200, body = Vec<LockdownView>), (status = 403, body = ErrorBody)))]
async fn list_lockdowns(State(api): State<Api>, staff: Staff) -> Result<Json<Vec<LockdownView>>, ApiError> {
    let now = api.now();
    let list = blocking(move || api.schedule.lockdowns(&staff.caller, now).map_err(schedule_error)).await?;
    Ok(Json(list.iter().map(LockdownView::of).collect()))
}

/// Puts a room or a site in lockdown: live sessions end and joins are refused until it is lifted.
#[utoipa::path(post, path = "/api/v1/lockdowns", tag = "schedule", request_body = PlaceLockdown,
    responses((status = 201, body = LockdownView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn place_lockdown(
    State(api): State<Api>,
    staff: Staff,
    ApiJson(body): ApiJson<PlaceLockdown>,
) -> Result<Response, ApiError> {
    let scope = match (body.room_id, body.site) {
        (Some(room), None) => LockdownScope::Room(parse_id("room", &room)?),
        (None, Some(site)) => LockdownScope::Site(site),
        _ => return Err(bad("give exactly one of room_id and site")),
    };
    let now = api.now();
    let record =
        blocking(move || api.schedule.place_lockdown(&staff.caller, scope, &body.reason, now).map_err(schedule_error))
            .await?;
    Ok((StatusCode::CREATED, Json(LockdownView::of(&record))).into_response())
}

/// Lifts a lockdown.
#[utoipa::path(delete, path = "/api/v1/lockdowns/{id}", tag = "schedule", params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn lift_lockdown(
    State(api): State<Api>,
    staff: Staff,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let id: uuid::Uuid = parse_id("lockdown", &id)?;
    let now = api.now();
    blocking(move || api.schedule.lift_lockdown(&staff.caller, id, now).map_err(schedule_error)).await?;
    Ok(no_content())
}
