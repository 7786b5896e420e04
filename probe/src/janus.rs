//! Joining a Janus VideoRoom with the same peers and payloads, so Janus and Gatehouse carry
//! identical media in a side-by-side run: one Janus session over its WebSocket API
//! (`janus-protocol`), a publisher handle with its own peer connection, and a subscriber
//! handle whose peer connection receives the partner's feed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::peer::{Peer, PeerOptions};

/// Janus ends a session silent for 60 s.
const KEEPALIVE: Duration = Duration::from_secs(20);
const REPLY_LIMIT: Duration = Duration::from_secs(15);
/// How long to wait for the partner's feed to be published before subscribing.
const FEED_LIMIT: Duration = Duration::from_secs(60);
/// VideoRoom's "no such feed": the partner's publisher is not up yet.
const NO_SUCH_FEED: i64 = 428;
/// VideoRoom's "room already exists": the partner created it first.
const ROOM_EXISTS: i64 = 427;

/// One participant in a VideoRoom: it publishes on `publisher` and receives on `subscriber`.
pub struct JanusPeer {
    pub publisher: Arc<Peer>,
    pub subscriber: Arc<Peer>,
    _session: Session,
}

impl JanusPeer {
    /// Joins VideoRoom `room` at `url` (`ws://host:8188`) as feed `id`, publishes, then
    /// subscribes to feed `partner` once it is up.
    pub async fn join(url: &str, room: u64, id: u32, partner: u32, ip: IpAddr) -> Result<JanusPeer> {
        let session = Session::open(url).await?;
        let publishing = session.attach().await?;
        let create = json!({
            "request": "create", "room": room, "publishers": 2,
            "audiocodec": "opus", "videocodec": "vp8", "bitrate": 0,
        });
        let created = session.message(publishing, create, None).await?;
        if let Some(code) = plugin_error(&created)
            && code != ROOM_EXISTS
        {
            bail!("Janus could not create room {room}: {created}");
        }
        let join = json!({ "request": "join", "ptype": "publisher", "room": room, "id": id });
        let joined = session.message(publishing, join, None).await?;
        if plugin_error(&joined).is_some() {
            bail!("Janus refused the publisher: {joined}");
        }
        let publisher = Arc::new(Peer::new(id, PeerOptions::udp(ip)).await?);
        let offer = publisher.offer().await?;
        let configure = json!({ "request": "configure", "audio": true, "video": true });
        let configured = session.message(publishing, configure, Some(json!({ "type": "offer", "sdp": offer }))).await?;
        let answer = configured["jsep"]["sdp"].as_str().ok_or_else(|| anyhow!("Janus sent no answer: {configured}"))?;
        publisher.accept_answer(answer.to_owned()).await?;

        let subscribing = session.attach().await?;
        let deadline = tokio::time::Instant::now() + FEED_LIMIT;
        let attached = loop {
            let join =
                json!({ "request": "join", "ptype": "subscriber", "room": room, "streams": [{ "feed": partner }] });
            let reply = session.message(subscribing, join, None).await?;
            match plugin_error(&reply) {
                None => break reply,
                Some(NO_SUCH_FEED) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Some(_) => bail!("Janus refused the subscription: {reply}"),
            }
        };
        let offer = attached["jsep"]["sdp"].as_str().ok_or_else(|| anyhow!("Janus sent no offer: {attached}"))?;
        let subscriber = Arc::new(Peer::new(id, PeerOptions { publish: false, ..PeerOptions::udp(ip) }).await?);
        let answer = subscriber.answer(offer.to_owned()).await?;
        let started = session
            .message(subscribing, json!({ "request": "start" }), Some(json!({ "type": "answer", "sdp": answer })))
            .await?;
        if plugin_error(&started).is_some() {
            bail!("Janus would not start the subscription: {started}");
        }
        Ok(JanusPeer { publisher, subscriber, _session: session })
    }
}

/// The VideoRoom error code in a plugin reply, if it is an error.
fn plugin_error(reply: &Value) -> Option<i64> {
    let data = &reply["plugindata"]["data"];
    if data["videoroom"] == "event" && data["error_code"].is_i64() { data["error_code"].as_i64() } else { None }
}

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Value>>>>;

/// A Janus session over one WebSocket; closing the socket (on drop) ends it.
struct Session {
    id: u64,
    outgoing: mpsc::UnboundedSender<Message>,
    pending: Pending,
    next: AtomicU64,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Session {
    async fn open(url: &str) -> Result<Session> {
        let mut request = url.into_client_request()?;
        request.headers_mut().insert("Sec-WebSocket-Protocol", "janus-protocol".parse()?);
        let (ws, _) = tokio_tungstenite::connect_async(request).await.context("opening Janus's WebSocket")?;
        let (mut sink, mut stream) = ws.split();
        let (outgoing, mut outgoing_rx) = mpsc::unbounded_channel::<Message>();
        let writer = tokio::spawn(async move {
            while let Some(message) = outgoing_rx.recv().await {
                if sink.send(message).await.is_err() {
                    break;
                }
            }
        });
        let pending: Pending = Arc::default();
        let replies = pending.clone();
        let reader = tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                let Message::Text(text) = message else { continue };
                let Ok(message) = serde_json::from_str::<Value>(&text) else { continue };
                // An "ack" only says an asynchronous request was received; its "event" follows.
                if message["janus"] == "ack" {
                    continue;
                }
                let Some(transaction) = message["transaction"].as_str() else { continue };
                if let Some(reply) = replies.lock().unwrap().remove(transaction) {
                    let _ = reply.send(message);
                }
            }
        });
        let mut session = Session { id: 0, outgoing, pending, next: AtomicU64::new(1), tasks: vec![writer, reader] };
        let created = session.request(json!({ "janus": "create" })).await?;
        session.id = created["data"]["id"].as_u64().ok_or_else(|| anyhow!("Janus made no session: {created}"))?;
        let (keepalive_out, id) = (session.outgoing.clone(), session.id);
        session.tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(KEEPALIVE);
            loop {
                tick.tick().await;
                let ping = json!({ "janus": "keepalive", "session_id": id, "transaction": "keepalive" });
                if keepalive_out.send(Message::Text(ping.to_string().into())).is_err() {
                    break;
                }
            }
        }));
        Ok(session)
    }

    /// Sends a request and waits for its reply (a "success", an "error" or a plugin "event").
    async fn request(&self, mut body: Value) -> Result<Value> {
        let transaction = format!("t{}", self.next.fetch_add(1, Ordering::Relaxed));
        body["transaction"] = json!(transaction);
        if self.id != 0 {
            body["session_id"] = json!(self.id);
        }
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(transaction, tx);
        self.outgoing.send(Message::Text(body.to_string().into()))?;
        let reply = tokio::time::timeout(REPLY_LIMIT, rx).await.context("Janus did not answer in time")??;
        if reply["janus"] == "error" {
            bail!("Janus refused {}: {}", body["janus"], reply["error"]);
        }
        Ok(reply)
    }

    async fn attach(&self) -> Result<u64> {
        let attached = self.request(json!({ "janus": "attach", "plugin": "janus.plugin.videoroom" })).await?;
        attached["data"]["id"].as_u64().ok_or_else(|| anyhow!("Janus attached no handle: {attached}"))
    }

    /// A message to the VideoRoom plugin on `handle`, with an optional JSEP.
    async fn message(&self, handle: u64, body: Value, jsep: Option<Value>) -> Result<Value> {
        let mut message = json!({ "janus": "message", "handle_id": handle, "body": body });
        if let Some(jsep) = jsep {
            message["jsep"] = jsep;
        }
        self.request(message).await
    }
}
