//! What a room's kiosk asks of the gateway while it waits: its room, the gateway's clock and
//! the room's current or next appointment, by the kiosk's device credential.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Api, ApiJson, ClientIp, blocking, schedule::local, schedule_error};
use crate::http::error::{ApiError, ErrorBody};

pub fn routes() -> OpenApiRouter<Api> {
    OpenApiRouter::new().routes(routes!(kiosk))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KioskRequest {
    /// The credential given when the room was enrolled.
    #[schema(max_length = 128)]
    device_credential: String,
}

#[derive(Serialize, ToSchema)]
pub struct KioskRoomView {
    name: String,
    site: String,
    /// IANA time zone name; the kiosk shows times in it.
    timezone: String,
}

/// The room's appointment as its kiosk shows it: times only, never who is in it.
#[derive(Serialize, ToSchema)]
pub struct KioskAppointmentView {
    id: String,
    start: String,
    end: String,
    /// Start and end in the room's time zone, with their offset.
    start_local: String,
    end_local: String,
    /// Joining opens.
    opens: String,
    /// The session ends for everyone.
    hard_end: String,
    /// booked, open or cancelled (cancelled while a lockdown covers it)
    status: String,
    status_reason: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct KioskView {
    room: KioskRoomView,
    /// The gateway's clock, so the kiosk counts down by the gateway's time, not its own.
    server_time: String,
    /// The current or next booked appointment, if any.
    next: Option<KioskAppointmentView>,
}

/// The kiosk's room and its current or next appointment.
#[utoipa::path(post, path = "/api/v1/kiosk", tag = "schedule", request_body = KioskRequest,
    responses((status = 200, body = KioskView), (status = 401, body = ErrorBody), (status = 403, description = "The credential was revoked (device_revoked)", body = ErrorBody),
        (status = 429, description = "`rate_limited`: this address presented too many refused credentials; a valid credential is still answered", body = ErrorBody, headers(("Retry-After" = u64, description = "Whole seconds until an attempt can be let through again")))))]
async fn kiosk(
    State(api): State<Api>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<KioskRequest>,
) -> Result<Json<KioskView>, ApiError> {
    let now = api.now();
    let (room, next) =
        blocking(move || api.schedule.kiosk_view(&body.device_credential, Some(ip), now).map_err(schedule_error))
            .await?;
    let next = next.map(|view| {
        let a = &view.appointment;
        KioskAppointmentView {
            id: a.id.to_string(),
            start: a.start.to_string(),
            end: a.end.to_string(),
            start_local: local(a.start, &room.timezone),
            end_local: local(a.end, &room.timezone),
            opens: view.window.opens.to_string(),
            hard_end: view.window.hard_end.to_string(),
            status: view.effective_status(now).into(),
            status_reason: view.status_reason().map(str::to_owned),
        }
    });
    Ok(Json(KioskView {
        room: KioskRoomView { name: room.name, site: room.site, timezone: room.timezone },
        server_time: now.to_string(),
        next,
    }))
}
