//! The connection probe: a participant's device check downloads a few blocks of bytes from the
//! gateway, and uploads a few to it, to measure bandwidth both ways and the round-trip time.
//! Only a room's kiosk or the holder of an authentic join link may use it, and each transfer is
//! bounded.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Api, ApiJson, ClientIp, blocking, schedule_error};
use crate::http::error::{ApiError, ErrorBody};
use crate::schedule::DeviceCheckCredential;

/// The most one probe transfer holds, either way: enough to time on a slow prison link, too
/// little to be a useful amplifier or a way to fill the gateway's memory.
pub const MAX_PROBE_BYTES: usize = 1024 * 1024;

/// The headers that carry the credential of an upload, whose body is the bytes themselves.
pub const DEVICE_CREDENTIAL_HEADER: &str = "x-device-credential";
pub const JOIN_LINK_HEADER: &str = "x-join-link";

pub fn routes() -> OpenApiRouter<Api> {
    OpenApiRouter::new().routes(routes!(probe)).routes(routes!(upload))
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

/// What the gateway received of an upload.
#[derive(Serialize, ToSchema)]
pub struct UploadReceipt {
    received: usize,
}

/// Sends back `bytes` random bytes, uncompressible, for the device check to time.
#[utoipa::path(post, path = "/api/v1/probe", tag = "schedule", request_body = ProbeRequest,
    responses((status = 200, description = "The bytes", content_type = "application/octet-stream"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 429, description = "`rate_limited`: this address presented too many refused credentials; a valid credential is still answered", body = ErrorBody, headers(("Retry-After" = u64, description = "Whole seconds until an attempt can be let through again")))))]
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
    authorise(&api, ip, body.device_credential, body.link).await?;
    let mut bytes = vec![0u8; body.bytes];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| ApiError::internal(&"the system random generator failed"))?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream"), (header::CACHE_CONTROL, "no-store")], bytes)
        .into_response())
}

/// Receives up to 1 MiB and says how much arrived, for the device check to time the upload.
/// The credential travels in a header (`X-Device-Credential` or `X-Join-Link`) and is checked
/// before a byte of the body is read; the bytes are counted and dropped.
#[utoipa::path(post, path = "/api/v1/probe/upload", tag = "schedule",
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    params(("x-device-credential" = Option<String>, Header, description = "A room kiosk's credential"),
        ("x-join-link" = Option<String>, Header, description = "A join link's token")),
    responses((status = 200, body = UploadReceipt), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 429, description = "`rate_limited`: this address presented too many refused credentials; a valid credential is still answered", body = ErrorBody, headers(("Retry-After" = u64, description = "Whole seconds until an attempt can be let through again")))))]
async fn upload(
    State(api): State<Api>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Body,
) -> Result<axum::Json<UploadReceipt>, ApiError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    authorise(&api, ip, header(DEVICE_CREDENTIAL_HEADER), header(JOIN_LINK_HEADER)).await?;
    let received = axum::body::to_bytes(body, MAX_PROBE_BYTES).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("An upload check sends at most {} KiB.", MAX_PROBE_BYTES / 1024),
        )
    })?;
    Ok(axum::Json(UploadReceipt { received: received.len() }))
}

/// Lets a transfer through only for a room's kiosk or the holder of an authentic join link;
/// a refusal is audited where the credential is checked, and limited per address there.
async fn authorise(
    api: &Api,
    ip: std::net::IpAddr,
    credential: Option<String>,
    link: Option<String>,
) -> Result<(), ApiError> {
    let now = api.now();
    let api = api.clone();
    blocking(move || {
        let presented = match (&credential, &link) {
            (Some(credential), None) => DeviceCheckCredential::Room(credential),
            (None, Some(token)) => DeviceCheckCredential::Link(token),
            _ => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "Give exactly one credential: a room's device credential or a join link.",
                ));
            }
        };
        api.schedule.allow_device_check(presented, Some(ip), now).map_err(schedule_error)
    })
    .await
}
