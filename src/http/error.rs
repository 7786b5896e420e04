//! The one error type that every API handler returns: an HTTP status, a stable machine-readable
//! code and a sentence a person understands. Internal details are logged, never sent.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra machine-readable facts, such as the id of a clashing booking.
    pub details: serde_json::Map<String, serde_json::Value>,
    /// For a refusal by a limit: whole seconds until the caller may try again, sent as
    /// `Retry-After` (RFC 9110 §10.2.3) and in the body as `retry_after_s`.
    pub retry_after_s: Option<u64>,
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(flatten)]
    details: &'a serde_json::Map<String, serde_json::Value>,
}

/// The error body every endpoint returns, as documented in the OpenAPI description.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A stable, machine-readable code such as `window_not_open`.
    pub code: String,
    /// A sentence for a person.
    pub message: String,
    /// Only on `429 rate_limited`: whole seconds until an attempt from the caller can be let
    /// through again, the same figure as the `Retry-After` header.
    #[schema(minimum = 1)]
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), details: serde_json::Map::new(), retry_after_s: None }
    }

    /// A `429 rate_limited` refusal that tells the caller when to try again.
    pub fn rate_limited(code: &'static str, message: impl Into<String>, retry_after_s: u64) -> Self {
        let error = Self::new(StatusCode::TOO_MANY_REQUESTS, code, message).with_detail("retry_after_s", retry_after_s);
        Self { retry_after_s: Some(retry_after_s), ..error }
    }

    pub fn with_detail(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "There is nothing at this address.")
    }

    /// For failures the caller cannot fix; the cause goes to the log only.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Something went wrong on the gateway. Try again; if it keeps happening, tell the operator.",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(Body { code: self.code, message: &self.message, details: &self.details });
        match self.retry_after_s {
            Some(seconds) => (self.status, [(header::RETRY_AFTER, seconds.to_string())], body).into_response(),
            None => (self.status, body).into_response(),
        }
    }
}
