//! The JSON API under `/api/v1`: shared state, the extractors that establish who is calling,
//! strict JSON bodies, error mapping, and the OpenAPI document generated from the handlers.

pub mod audit;
pub mod kiosk;
pub mod links;
pub mod probe;
pub mod schedule;
pub mod session;
pub mod sessions;

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde::de::DeserializeOwned;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use super::error::ApiError;
use super::listener::ClientAddr;
use crate::audit::{AuditError, AuditLog, Event, EventKind, Object};
use crate::auth::policy::{Principal, Reason};
use crate::auth::staff::{StaffAccounts, StaffError, StaffSession};
use crate::auth::{Caller, digest};
use crate::rate::RetryAfter;
use crate::schedule::{Schedule, ScheduleError};
use crate::store::Store;

/// The most a JSON request body may hold.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The staff session cookie.
pub const SESSION_COOKIE: &str = "gh_session";
/// The header that carries the CSRF token on state-changing requests.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Everything the API handlers reach.
#[derive(Clone)]
pub struct Api {
    pub store: Arc<dyn Store>,
    pub audit: AuditLog,
    pub staff: StaffAccounts,
    pub schedule: Schedule,
    pub sessions: crate::session::Sessions,
    /// The clock, passed in so tests can control it; production reads the system clock.
    pub clock: crate::clock::Clock,
}

impl Api {
    pub fn now(&self) -> Timestamp {
        (self.clock)()
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Gatehouse API", description = "Scheduling, authorisation and audit for secure clinical video consultations."),
    tags(
        (name = "session", description = "Staff sign-in"),
        (name = "schedule", description = "Rooms, appointments, links and lockdowns"),
        (name = "sessions", description = "Live consultations, as metadata"),
        (name = "audit", description = "The tamper-evident audit log"),
    )
)]
struct ApiDoc;

/// The API routes and their OpenAPI document, built from the same handler list.
pub fn router(api: Api) -> (axum::Router, utoipa::openapi::OpenApi) {
    let (router, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(session::routes())
        .merge(schedule::routes())
        .merge(links::routes())
        .merge(kiosk::routes())
        .merge(probe::routes())
        .merge(sessions::routes())
        .merge(audit::routes())
        .with_state(api)
        .split_for_parts();
    (router.layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES)), doc)
}

/// The caller's own address, from the accepted connection.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        connection(parts).map(|c| Self(c.remote.ip()))
    }
}

/// The gateway's own address that the caller's connection reached.
#[derive(Debug, Clone, Copy)]
pub struct ReachedIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ReachedIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        connection(parts).map(|c| Self(c.local.ip()))
    }
}

fn connection(parts: &Parts) -> Result<ClientAddr, ApiError> {
    parts
        .extensions
        .get::<ConnectInfo<ClientAddr>>()
        .map(|ConnectInfo(client)| *client)
        .ok_or_else(|| ApiError::internal(&"no client address on the request"))
}

/// A signed-in staff member. State-changing requests must also carry the session's CSRF
/// token; a missing or wrong one is refused and audited.
pub struct Staff {
    pub session: StaffSession,
    pub caller: Caller,
    pub token: String,
}

/// The browser cookie that binds join links, if the request carries a usable one.
pub fn browser_cookie(headers: &HeaderMap) -> Option<String> {
    cookie(headers, links::BROWSER_COOKIE).filter(|c| c.len() <= 128 && !c.is_empty())
}

pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

impl FromRequestParts<Api> for Staff {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Api) -> Result<Self, ApiError> {
        let ClientIp(ip) = ClientIp::from_request_parts(parts, api).await?;
        let anonymous = Caller::new(Principal::Anonymous, Some(ip));
        let token = cookie(&parts.headers, SESSION_COOKIE);
        let staff = api.staff.clone();
        let now = api.now();
        let session = match token.clone() {
            Some(token) => blocking(move || staff.authenticate(&token, now).map_err(staff_error)).await?,
            None => None,
        };
        let (Some(session), Some(token)) = (session, token) else {
            let api = api.clone();
            return Err(blocking(move || {
                Ok(refuse(&api, &anonymous, EventKind::AccessDenied, Reason::NotAuthenticated))
            })
            .await?);
        };
        let caller = Caller::new(session.principal(), Some(ip));
        if !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
            let presented = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
            let matches =
                aws_lc_rs::constant_time::verify_slices_are_equal(&digest(presented), &digest(&session.csrf_token))
                    .is_ok();
            if !matches {
                let message = "This request did not carry the page's security token. Reload the page and try again.";
                return Err(forbid(api, caller, "csrf_failed", message).await);
            }
        }
        Ok(Self { session, caller, token })
    }
}

/// Audits a refused request (one by one up to its address's share of records, then in the
/// address's summary: see `Schedule::refuse_request`) and returns `refused`, or the error
/// that stopped it being recorded.
fn refuse_request(api: &Api, caller: &Caller, refusal: Event, refused: ApiError) -> ApiError {
    match api.schedule.refuse_request(caller.ip, refusal, api.now()) {
        Ok(()) => refused,
        Err(e) => schedule_error(e),
    }
}

/// [`refuse_request`] as `403` with the stable `code`, recorded as `access.denied` with that
/// code, off the async threads.
pub(crate) async fn forbid(api: &Api, caller: Caller, code: &'static str, message: &'static str) -> ApiError {
    let api = api.clone();
    blocking(move || {
        let refusal = caller.event(EventKind::AccessDenied).refused(code);
        Ok(refuse_request(&api, &caller, refusal, ApiError::new(StatusCode::FORBIDDEN, code, message)))
    })
    .await
    .unwrap_or_else(|e| e)
}

/// [`refuse_request`] for a refusal with a policy reason.
fn refuse(api: &Api, caller: &Caller, kind: EventKind, reason: Reason) -> ApiError {
    refuse_request(api, caller, caller.refusal(kind, reason, Object::default()), denied(reason))
}

/// A JSON body, parsed strictly: malformed JSON, wrong types, unknown fields and oversized
/// bodies all get a 400-class error in the one error shape.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_error(rejection)),
        }
    }
}

/// A value from the request's path, in the one error shape when it is not of the expected
/// form (a sequence number that is not a number, or a segment that is not UTF-8).
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_path",
                format!("The address is not one this gateway serves: {}", rejection.body_text()),
            )),
        }
    }
}

fn json_error(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Send the body as JSON with Content-Type: application/json.",
        ),
        JsonRejection::JsonSyntaxError(_) => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", "The body is not valid JSON.")
        }
        JsonRejection::JsonDataError(e) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!(
                "The body does not have the expected fields: {}",
                e.body_text().replace("Failed to deserialize the JSON body into the target type: ", "")
            ),
        ),
        JsonRejection::BytesRejection(_) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "too_large",
            format!("The body is larger than {} KiB.", MAX_BODY_BYTES / 1024),
        ),
        other => ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", other.body_text()),
    }
}

pub fn denied(reason: Reason) -> ApiError {
    let status = match reason {
        Reason::NotAuthenticated => StatusCode::UNAUTHORIZED,
        // Limits refuse with `RateLimited(RetryAfter)`, answered by `rate_limited` below with
        // its Retry-After; this is only the status that the bare reason stands for.
        Reason::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        Reason::RoleForbidden
        | Reason::LinkInvalid
        | Reason::LinkExpired
        | Reason::LinkRevoked
        | Reason::LinkBoundElsewhere
        | Reason::DeviceRevoked
        | Reason::RoomNotBooked
        | Reason::RoomLockedDown
        | Reason::WindowNotOpen
        | Reason::WindowClosed
        | Reason::AppointmentCancelled
        | Reason::AppointmentEnded
        | Reason::BrowserUnknown => StatusCode::FORBIDDEN,
    };
    ApiError::new(status, reason.code(), reason.message())
}

/// A refusal by a limit: 429 with `Retry-After`, so a client knows when to try again.
fn rate_limited(retry_after: RetryAfter) -> ApiError {
    ApiError::rate_limited(Reason::RateLimited.code(), retry_after.message(), retry_after.whole_seconds())
}

pub fn audit_error(e: AuditError) -> ApiError {
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

pub fn schedule_error(e: ScheduleError) -> ApiError {
    match e {
        ScheduleError::Denied(reason) => denied(reason),
        ScheduleError::RateLimited(retry_after) => rate_limited(retry_after),
        ScheduleError::NotFound(what) => {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("There is no such {what}."))
        }
        ScheduleError::Invalid(invalid) => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", format!("{}: {}", invalid.field, invalid.message))
        }
        ScheduleError::Clash(id) => ApiError::new(
            StatusCode::CONFLICT,
            "appointment_clash",
            format!("The room is already booked then, by appointment {id}."),
        )
        .with_detail("clashing_appointment", id),
        ScheduleError::Conflict(message) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
        ScheduleError::Audit(e) => audit_error(e),
        other => ApiError::internal(&other),
    }
}

pub fn staff_error(e: StaffError) -> ApiError {
    match e {
        StaffError::Denied(reason) => denied(reason),
        StaffError::RateLimited(retry_after) | StaffError::AddressLimited(retry_after) => {
            ApiError::rate_limited(Reason::RateLimited.code(), e.to_string(), retry_after.whole_seconds())
        }
        StaffError::Invalid(message) => ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message),
        StaffError::NotFound(_) => ApiError::not_found(),
        StaffError::Audit(e) => audit_error(e),
        other => ApiError::internal(&other),
    }
}

/// Runs blocking store and audit work off the async threads.
pub async fn blocking<T: Send + 'static>(
    job: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(job).await.map_err(|e| ApiError::internal(&e))?
}

/// The response for "done, nothing to say".
pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}
