//! The HTTP layer: axum routers for the public HTTPS listener and the admin listener. It is the
//! only module that knows HTTP, status codes and JSON wire types.

pub mod admin;
pub mod api;
mod assets;
pub mod demux;
pub mod error;
pub mod listener;
pub mod observe;
mod wrapped;
mod ws;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;

use observe::{HttpMetrics, Observer, observe};

/// The public router: the web client and, as later parts land, the API and signalling.
pub fn public_router(http_metrics: Arc<HttpMetrics>, api: api::Api) -> Router {
    // `any`: browsers may open the WebSocket over HTTP/2 (RFC 8441 extended CONNECT), not only GET.
    let ws_routes = Router::new().route("/ws", axum::routing::any(ws::upgrade)).with_state(api.clone());
    let (api_routes, openapi) = api::router(api);
    let openapi = Arc::new(openapi);
    Router::new()
        .merge(api_routes)
        .merge(ws_routes)
        .route("/api/openapi.json", get(move || async move { axum::Json(openapi.as_ref().clone()) }))
        .route("/", get(assets::index))
        .route("/room", get(assets::room))
        .route("/console", get(assets::console))
        .route("/join/{link}", get(assets::join))
        .route("/static/{*path}", get(assets::static_file))
        .fallback(|| async { error::ApiError::not_found() })
        .method_not_allowed_fallback(|| async {
            error::ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "This address does not take that method.",
            )
        })
        .layer(axum::middleware::from_fn(security_headers))
        .layer(axum::middleware::from_fn_with_state(Observer { listener: "public", metrics: http_metrics }, observe))
}

/// Headers every public response carries. The CSP allows only the gateway's own origin and no
/// inline script; `no-referrer` keeps join links out of other sites' logs.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let set = |headers: &mut axum::http::HeaderMap, name: HeaderName, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(headers, header::STRICT_TRANSPORT_SECURITY, "max-age=31536000");
    set(
        headers,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; media-src 'self' blob:; object-src 'none'; base-uri 'none'; \
         frame-ancestors 'none'; form-action 'self'",
    );
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::REFERRER_POLICY, "no-referrer");
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(
        headers,
        HeaderName::from_static("permissions-policy"),
        "camera=(self), microphone=(self), display-capture=(self)",
    );
    set(headers, HeaderName::from_static("cross-origin-opener-policy"), "same-origin");
    response
}
