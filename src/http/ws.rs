//! The `/ws` endpoint: upgrades to a WebSocket and hands it to the signalling layer, with the
//! client's own address and the browser cookie that binds join links.

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;

use super::api::links::BROWSER_COOKIE;
use super::api::{Api, ClientIp, cookie};
use crate::auth::digest;
use crate::signal::{self, Frame, Peer, protocol};

/// The WebSocket layer's own limit: a little above the protocol's, so that an oversized
/// message is answered with an error message rather than a dropped connection.
const MAX_FRAME_BYTES: usize = protocol::MAX_MESSAGE_BYTES * 2;
/// A send that has not gone out by then means the client stopped reading: the connection is
/// given up rather than let its buffers hold the signalling task.
const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub async fn upgrade(
    State(api): State<Api>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    // A browser without the cookie gets a fresh identity: a link it presents binds to this
    // connection only, and the consultant page fetches /api/v1/join/link first to set it.
    let browser = cookie(&headers, BROWSER_COOKIE).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let peer = Peer { ip: Some(ip), browser: digest(&browser) };
    let (schedule, sessions, clock) = (api.schedule.clone(), api.sessions.clone(), api.clock.clone());
    ws.max_message_size(MAX_FRAME_BYTES).max_frame_size(MAX_FRAME_BYTES).on_upgrade(move |socket| async move {
        signal::run(AxumSocket(socket), peer, schedule, sessions, clock).await;
    })
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
