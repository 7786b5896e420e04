//! The connection probe: a participant's device check downloads a few blocks of bytes from the
//! gateway to measure bandwidth and round-trip time. Only a room's kiosk or the holder of an
//! authentic join link may use it, and each answer is bounded.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Api, ApiJson, ClientIp, blocking, schedule_error};
use crate::audit::{EventKind, Object};
use crate::auth::Caller;
use crate::auth::policy::{Principal, Reason};
use crate::http::error::{ApiError, ErrorBody};

/// The most one probe answer holds: enough to time on a slow prison link, too little to be a
/// useful amplifier.
pub const MAX_PROBE_BYTES: usize = 1024 * 1024;

pub fn routes() -> OpenApiRouter<Api> {
    OpenApiRouter::new().routes(routes!(probe))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProbeRequest {
    /// A room kiosk's credential...
    #[schema(max_length = 128)]
    device_credential: Option<String>,
    /// ...or a join link's token.
    #[schema(max_length = 2048)]
    link: Option<String>,
    /// How many bytes to send back (0 to 1048576); 0 measures the round trip alone.
    bytes: usize,
}

/// Sends back `bytes` random bytes, uncompressible, for the device check to time.
#[utoipa::path(post, path = "/api/v1/probe", tag = "schedule", request_body = ProbeRequest,
    responses((status = 200, description = "The bytes", content_type = "application/octet-stream"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn probe(
    State(api): State<Api>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<ProbeRequest>,
) -> Result<Response, ApiError> {
    if body.bytes > MAX_PROBE_BYTES {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("bytes: at most {MAX_PROBE_BYTES}"),
        ));
    }
    let now = api.now();
    blocking(move || {
        match (body.device_credential, body.link) {
            (Some(credential), None) => {
                api.schedule.room_of_device(&credential, Some(ip)).map_err(schedule_error)?;
            }
            (None, Some(token)) => {
                if api.schedule.link_context(&token, now).map_err(schedule_error)?.is_none() {
                    let anonymous = Caller::new(Principal::Anonymous, Some(ip));
                    let refusal =
                        api.schedule.refuse(&anonymous, EventKind::LinkRefused, Reason::LinkInvalid, Object::default());
                    return Err(schedule_error(refusal));
                }
            }
            _ => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "Give exactly one of device_credential and link.",
                ));
            }
        }
        Ok(())
    })
    .await?;
    let mut bytes = vec![0u8; body.bytes];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| ApiError::internal(&"the system random generator failed"))?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream"), (header::CACHE_CONTROL, "no-store")], bytes)
        .into_response())
}
