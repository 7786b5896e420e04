//! The `/ws` endpoint: checks that the request comes from the gateway's own pages, upgrades to a
//! WebSocket and hands it to the signalling layer, with the client's own address, the gateway
//! address it reached and the browser cookie that binds join links.

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::api::{Api, ClientIp, ReachedIp, browser_cookie, forbid};
use super::error::ApiError;
use crate::auth::Caller;
use crate::auth::digest;
use crate::auth::policy::Principal;
use crate::signal::{self, Frame, Peer, protocol};

/// The WebSocket layer's own limit: a little above the protocol's, so that an oversized
/// message is answered with an error message rather than a dropped connection.
const MAX_FRAME_BYTES: usize = protocol::MAX_MESSAGE_BYTES * 2;
/// What each connection's read buffer holds from the start. Signalling messages are a few
/// kilobytes; the library's default of 128 KiB per connection would be a tenth of a
/// consultation's memory. A larger message still arrives whole, over several reads.
const READ_BUFFER_BYTES: usize = 8 * 1024;
/// A send that has not gone out by then means the client stopped reading: the connection is
/// given up rather than let its buffers hold the signalling task.
const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub async fn upgrade(
    State(api): State<Api>,
    ClientIp(ip): ClientIp,
    ReachedIp(gateway_ip): ReachedIp,
    headers: HeaderMap,
    uri: Uri,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    // A request that is no WebSocket opening never reaches signalling, from anywhere.
    let Ok(ws) = ws else {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "websocket_expected",
            "This address is the signalling WebSocket; open it as a WebSocket.",
        )
        .into_response();
    };
    // Browsers send cookies with a WebSocket from any page, so a page elsewhere could act
    // with this browser's link binding: only the gateway's own pages may open one.
    if !same_origin(&headers, &uri) {
        let caller = Caller::new(Principal::Anonymous, Some(ip));
        let message = "Signalling is open to the gateway's own pages only.";
        return forbid(&api, caller, "origin_forbidden", message).await.into_response();
    }
    let peer =
        Peer { ip: Some(ip), gateway_ip: Some(gateway_ip), browser: browser_cookie(&headers).map(|c| digest(&c)) };
    let (schedule, sessions, clock) = (api.schedule.clone(), api.sessions.clone(), api.clock.clone());
    let ws = ws.read_buffer_size(READ_BUFFER_BYTES).max_message_size(MAX_FRAME_BYTES).max_frame_size(MAX_FRAME_BYTES);
    ws.on_upgrade(move |socket| async move {
        signal::run(AxumSocket(socket), peer, schedule, sessions, clock).await;
    })
}

/// Whether the request's Origin is the site it was sent to: `https://` and the Host (or, over
/// HTTP/2, the authority), with the default port written or not. No Origin is no match.
fn same_origin(headers: &HeaderMap, uri: &Uri) -> bool {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).or_else(|| uri.authority().map(|a| a.as_str()));
    let (Some(origin), Some(host)) = (origin, host) else { return false };
    let Some(origin_host) = origin.strip_prefix("https://") else { return false };
    let without_default_port = |h: &str| h.strip_suffix(":443").unwrap_or(h).to_ascii_lowercase();
    without_default_port(origin_host) == without_default_port(host)
}

struct AxumSocket(WebSocket);

impl signal::Socket for AxumSocket {
    async fn recv(&mut self) -> Option<Frame> {
        loop {
            return match self.0.recv().await? {
                Ok(Message::Text(text)) => Some(Frame::Text(text.to_string())),
                Ok(Message::Binary(_)) => Some(Frame::Binary),
                Ok(Message::Close(_)) => Some(Frame::Close),
                Ok(Message::Ping(_) | Message::Pong(_)) => continue,
                Err(e) if e.to_string().contains("too long") || e.to_string().contains("size") => Some(Frame::TooLarge),
                Err(_) => None,
            };
        }
    }

    async fn send(&mut self, text: String) -> bool {
        matches!(tokio::time::timeout(SEND_TIMEOUT, self.0.send(Message::Text(text.into()))).await, Ok(Ok(())))
    }

    async fn close(&mut self, code: u16, reason: &str) {
        let frame = axum::extract::ws::CloseFrame { code, reason: reason.to_owned().into() };
        let _ = tokio::time::timeout(SEND_TIMEOUT, self.0.send(Message::Close(Some(frame)))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_sites_own_origin_is_the_same_origin() {
        let check = |origin: Option<&str>, host: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::HOST, host.parse().unwrap());
            if let Some(origin) = origin {
                headers.insert(header::ORIGIN, origin.parse().unwrap());
            }
            same_origin(&headers, &Uri::from_static("/ws"))
        };
        assert!(check(Some("https://gw.example:8443"), "gw.example:8443"));
        assert!(check(Some("https://GW.example"), "gw.example:443"));
        assert!(!check(Some("http://gw.example:8443"), "gw.example:8443"));
        assert!(!check(Some("https://evil.example"), "gw.example"));
        assert!(!check(Some("https://gw.example.evil.example"), "gw.example"));
        assert!(!check(Some("null"), "gw.example"));
        assert!(!check(None, "gw.example"));
    }
}
