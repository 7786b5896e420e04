//! The admin listener's routes: liveness, readiness and Prometheus metrics. Plain HTTP, meant
//! for loopback or a private management network only.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::error::ApiError;
use super::observe::{HttpMetrics, Observer, observe};
use crate::health::Readiness;
use crate::metrics::Metrics;
use crate::store::Store;

#[derive(Clone)]
pub struct AdminState {
    pub readiness: Arc<Readiness>,
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    pub audit: crate::audit::AuditLog,
}

pub fn router(state: AdminState, http_metrics: Arc<HttpMetrics>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::not_found() })
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(Observer { listener: "admin", metrics: http_metrics }, observe))
}

/// The process is alive and its runtime answers; says nothing about dependencies.
async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AdminState>) -> Response {
    if let Err(not_ready) = state.readiness.check() {
        return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, not_ready.code(), not_ready.message()).into_response();
    }
    if !state.audit.is_healthy() {
        return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable", "The audit log cannot be written.")
            .into_response();
    }
    let store = state.store.clone();
    match tokio::task::spawn_blocking(move || store.check()).await {
        Ok(Ok(())) => (StatusCode::OK, axum::Json(serde_json::json!({ "ready": true }))).into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: store check failed");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", "The database does not answer.")
                .into_response()
        }
        Err(e) => ApiError::internal(&e).into_response(),
    }
}

async fn metrics(State(state): State<AdminState>) -> Response {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.encode())
        .into_response()
}
