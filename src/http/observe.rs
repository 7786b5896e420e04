//! Per-request observability: one tracing span and one metrics sample per request, keyed by the
//! route template so that paths carrying tokens (`/join/<link>`) never reach logs or labels.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tracing::Instrument;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    listener: &'static str,
    method: String,
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    listener: &'static str,
    method: String,
    route: String,
}

/// HTTP request counts and latencies by listener, method, route template and status.
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Histogram>,
}

impl HttpMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let duration = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            // 0.5 ms to about 16 s.
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register("http_requests", "HTTP requests by route template and status", requests.clone());
        registry.register("http_request_duration_seconds", "HTTP request latency by route template", duration.clone());
        Self { requests, duration }
    }
}

/// State for [`observe`]: which listener it runs on, and where to count.
#[derive(Debug, Clone)]
pub struct Observer {
    pub listener: &'static str,
    pub metrics: Arc<HttpMetrics>,
}

pub async fn observe(State(observer): State<Observer>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    // Unmatched paths share one label: a scanner must not be able to grow the label set.
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_owned();
    let span = tracing::info_span!("http", listener = observer.listener, method = %method, route = %route);
    let response = next.run(request).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    span.in_scope(|| {
        tracing::info!(status, latency_ms = elapsed.as_secs_f64() * 1000.0, "request");
    });
    let metrics = &observer.metrics;
    metrics
        .requests
        .get_or_create(&RequestLabels {
            listener: observer.listener,
            method: method.clone(),
            route: route.clone(),
            status,
        })
        .inc();
    metrics
        .duration
        .get_or_create(&RouteLabels { listener: observer.listener, method, route })
        .observe(elapsed.as_secs_f64());
    response
}
