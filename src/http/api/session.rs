//! Staff sign-in and sign-out. A session is an HttpOnly, Secure, SameSite=Strict cookie; the
//! CSRF token returned at sign-in must accompany every state-changing request.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Api, ApiJson, ClientIp, SESSION_COOKIE, Staff, blocking, no_content, staff_error};
use crate::auth::Caller;
use crate::auth::policy::Principal;
use crate::http::error::{ApiError, ErrorBody};
use crate::store::StaffRecord;

pub fn routes() -> OpenApiRouter<Api> {
    OpenApiRouter::new().routes(routes!(sign_in, who_am_i, sign_out))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    #[schema(max_length = 64)]
    username: String,
    #[schema(max_length = 256)]
    password: String,
    /// The six-digit code from the authenticator app; required for security and admin.
    totp: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct StaffView {
    id: String,
    username: String,
    display_name: String,
    role: String,
}

impl StaffView {
    pub fn of(r: &StaffRecord) -> Self {
        Self {
            id: r.id.to_string(),
            username: r.username.clone(),
            display_name: r.display_name.clone(),
            role: r.role.as_str().into(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SessionView {
    staff: StaffView,
    /// Send this as the `X-CSRF-Token` header on every request that changes anything.
    csrf_token: String,
}

fn session_cookie(value: &str) -> String {
    format!("{SESSION_COOKIE}={value}; Path=/; HttpOnly; Secure; SameSite=Strict")
}

/// Signs in with username, password and (where enrolled) a TOTP code.
#[utoipa::path(post, path = "/api/v1/session", tag = "session", request_body = SignIn,
    responses(
        (status = 200, description = "Signed in; the session cookie is set", body = SessionView),
        (status = 401, description = "Wrong username, password or code", body = ErrorBody),
        (status = 429, description = "`rate_limited`: the account is locked after repeated failures, or its address has made too many failed sign-ins", body = ErrorBody, headers(("Retry-After" = u64, description = "Whole seconds until an attempt can be let through again"))),
    ))]
async fn sign_in(
    State(api): State<Api>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<SignIn>,
) -> Result<Response, ApiError> {
    let now = api.now();
    let staff = api.staff.clone();
    let signed_in = blocking(move || {
        let caller = Caller::new(Principal::Anonymous, Some(ip));
        staff.sign_in(&caller, &body.username, &body.password, body.totp.as_deref(), now).map_err(staff_error)
    })
    .await?;
    let view = SessionView { staff: StaffView::of(&signed_in.staff), csrf_token: signed_in.csrf_token };
    Ok(([(header::SET_COOKIE, session_cookie(&signed_in.session_token))], Json(view)).into_response())
}

/// The signed-in staff member, with the CSRF token to use.
#[utoipa::path(get, path = "/api/v1/session", tag = "session",
    responses((status = 200, body = SessionView), (status = 401, body = ErrorBody)))]
async fn who_am_i(staff: Staff) -> Json<SessionView> {
    Json(SessionView { staff: StaffView::of(&staff.session.staff), csrf_token: staff.session.csrf_token })
}

/// Signs out and clears the cookie.
#[utoipa::path(delete, path = "/api/v1/session", tag = "session",
    responses((status = 204, description = "Signed out"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn sign_out(State(api): State<Api>, staff: Staff) -> Result<Response, ApiError> {
    let accounts = api.staff.clone();
    blocking(move || accounts.sign_out(&staff.session, &staff.token, &staff.caller).map_err(staff_error)).await?;
    let mut response = no_content();
    if let Ok(value) = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0").parse() {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}
