//! The static web client, embedded in the binary so the gateway runs from any folder.

use super::api::ApiPath;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "web-client/"]
struct WebClient;

/// The sign-in page.
pub async fn index() -> Response {
    serve_file("index.html")
}

/// The room kiosk page.
pub async fn room() -> Response {
    serve_file("room.html")
}

/// The consultant's and guests' page; the link token is read from the path by the page.
pub async fn join() -> Response {
    serve_file("join.html")
}

/// The staff console: schedulers and security officers.
pub async fn console() -> Response {
    serve_file("console.html")
}

/// Any other file of the web client, by its path under `web-client/`.
pub async fn static_file(ApiPath(path): ApiPath<String>) -> Response {
    serve_file(&path)
}

fn serve_file(path: &str) -> Response {
    let Some(file) = WebClient::get(path) else {
        return super::error::ApiError::not_found().into_response();
    };
    let mime = file.metadata.mimetype();
    let mut response = (StatusCode::OK, file.data.into_owned()).into_response();
    if let Ok(value) = HeaderValue::from_str(mime) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}
