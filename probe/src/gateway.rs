//! Joining a Gatehouse consultation the way a browser does: a WebSocket to `/ws`, a `join`
//! with a real credential, an offer, and answers to the gateway's renegotiation offers
//! (protocol version 1, docs/protocol.md).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::peer::{Peer, PeerOptions};

/// How long the gateway has to answer `join`.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);
/// The protocol closes a connection silent for 60 s; a ping every 20 s keeps it open.
const PING_INTERVAL: Duration = Duration::from_secs(20);

/// Where the gateway's signalling lives, and the TLS settings to reach it.
#[derive(Clone)]
pub struct Target {
    /// `wss://host:port/ws`
    pub ws_url: String,
    pub tls: Arc<rustls::ClientConfig>,
    /// Where to open the connection, when not where the URL's host leads (a gateway reached
    /// on its address towards another network); the TLS name checked is still the URL's host.
    pub connect_to: Option<SocketAddr>,
}

/// A participant joined through the gateway's signalling, with its peer connection.
pub struct GatewayPeer {
    pub peer: Arc<Peer>,
    /// The `joined` message.
    pub joined: Value,
    /// Every text message the gateway sent, as received.
    pub from_gateway: Arc<Mutex<Vec<String>>>,
    /// Messages other than SDP, for the caller to wait on. A close arrives as `{"type":"closed"}`
    /// and a failure to apply the gateway's SDP as `{"type":"probe_error"}`.
    events: tokio::sync::Mutex<mpsc::UnboundedReceiver<Value>>,
    outgoing: mpsc::UnboundedSender<Message>,
    /// How many offers this participant has sent the gateway.
    offers_sent: AtomicUsize,
}

impl GatewayPeer {
    /// Opens the WebSocket, joins with `credential` (the `join` message's fields), then builds
    /// the peer connection and sends its offer. Renegotiation is answered in the background.
    pub async fn join(target: &Target, credential: Value, id: u32, options: PeerOptions) -> Result<GatewayPeer> {
        let mut request = target.ws_url.as_str().into_client_request()?;
        // As the gateway's own page would, in a browser of its own: the gateway opens
        // signalling only to its own origin, and binds a join link to the browser's cookie.
        let origin = target.ws_url.replacen("wss://", "https://", 1).trim_end_matches("/ws").to_owned();
        request.headers_mut().insert("Origin", origin.parse()?);
        request.headers_mut().insert("Cookie", format!("gh_browser=probe-peer-{id}").parse()?);
        let connector = Some(tokio_tungstenite::Connector::Rustls(target.tls.clone()));
        let (ws, _) = match target.connect_to {
            Some(address) => {
                let tcp = tokio::net::TcpStream::connect(address).await.context("reaching the gateway")?;
                tokio_tungstenite::client_async_tls_with_config(request, tcp, None, connector).await
            }
            None => tokio_tungstenite::connect_async_tls_with_config(request, None, false, connector).await,
        }
        .context("opening the signalling WebSocket")?;
        let (mut sink, mut stream) = ws.split();
        let (outgoing, mut outgoing_rx) = mpsc::unbounded_channel::<Message>();
        tokio::spawn(async move {
            let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_INTERVAL, PING_INTERVAL);
            loop {
                let message = tokio::select! {
                    message = outgoing_rx.recv() => match message {
                        Some(message) => message,
                        None => break,
                    },
                    _ = ping.tick() => Message::Text(json!({ "v": 1, "type": "ping" }).to_string().into()),
                };
                let closing = matches!(message, Message::Close(_));
                if sink.send(message).await.is_err() || closing {
                    break;
                }
            }
        });
        let mut join = credential;
        join["v"] = json!(1);
        join["type"] = json!("join");
        outgoing.send(Message::Text(join.to_string().into()))?;
        let from_gateway = Arc::new(Mutex::new(Vec::new()));
        let mut early = Vec::new();
        let joined = loop {
            let next = tokio::time::timeout(JOIN_TIMEOUT, stream.next()).await.context("no answer to join")?;
            let Some(Ok(Message::Text(text))) = next else {
                bail!("the gateway closed the connection before joined");
            };
            from_gateway.lock().unwrap().push(text.to_string());
            let message: Value = serde_json::from_str(&text)?;
            match message["type"].as_str() {
                Some("joined") => break message,
                Some("error") => bail!("join refused: {message}"),
                _ => early.push(message),
            }
        };

        let peer = Peer::new(id, options).await?;
        let offer = peer.offer().await?;
        outgoing.send(Message::Text(json!({ "v": 1, "type": "offer", "sdp": offer }).to_string().into()))?;
        // The extra candidates are in the offer; a client trickles its candidates too.
        for candidate in options.extra_candidates {
            let trickled =
                json!({ "v": 1, "type": "candidate", "candidate": candidate, "sdpMid": "0", "sdpMLineIndex": 0 });
            outgoing.send(Message::Text(trickled.to_string().into()))?;
        }

        let peer = Arc::new(peer);
        let (events_tx, events) = mpsc::unbounded_channel();
        for message in early {
            let _ = events_tx.send(message);
        }
        // Reads the gateway's messages: SDP goes to the peer connection, the rest to the caller.
        let (reader_peer, reader_out, log) = (peer.clone(), outgoing.clone(), from_gateway.clone());
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                let text = match message {
                    Message::Text(text) => text.to_string(),
                    Message::Close(frame) => {
                        let code = frame.map(|f| u16::from(f.code)).unwrap_or(1005);
                        let _ = events_tx.send(json!({ "type": "closed", "code": code }));
                        break;
                    }
                    _ => continue,
                };
                log.lock().unwrap().push(text.clone());
                let Ok(message) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                let sdp = message["sdp"].as_str().unwrap_or_default().to_owned();
                match message["type"].as_str() {
                    Some("answer") => {
                        if let Err(e) = reader_peer.accept_answer(sdp).await {
                            let _ = events_tx.send(json!({ "type": "probe_error", "message": e.to_string() }));
                        }
                    }
                    Some("offer") => match reader_peer.answer(sdp).await {
                        Ok(answer) => {
                            let answer = json!({ "v": 1, "type": "answer", "sdp": answer }).to_string();
                            let _ = reader_out.send(Message::Text(answer.into()));
                        }
                        Err(e) => {
                            let _ = events_tx.send(json!({ "type": "probe_error", "message": e.to_string() }));
                        }
                    },
                    _ => {
                        let _ = events_tx.send(message);
                    }
                }
            }
        });
        Ok(GatewayPeer {
            peer,
            joined,
            from_gateway,
            events: tokio::sync::Mutex::new(events),
            outgoing,
            offers_sent: AtomicUsize::new(1),
        })
    }

    /// Sends a protocol message (`v` is added).
    pub fn send(&self, mut message: Value) {
        message["v"] = json!(1);
        let _ = self.outgoing.send(Message::Text(message.to_string().into()));
    }

    /// Waits for the next message of `kind` from the gateway, skipping others.
    pub async fn expect(&self, kind: &str, limit: Duration) -> Result<Value> {
        let mut events = self.events.lock().await;
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let message = tokio::time::timeout_at(deadline, events.recv())
                .await
                .map_err(|_| anyhow!("peer {} never got {kind}", self.peer.id))?
                .ok_or_else(|| anyhow!("peer {}: the connection closed before {kind}", self.peer.id))?;
            if message["type"] == kind {
                return Ok(message);
            }
        }
    }

    /// Sends a further offer made by the peer (see [`Peer::renegotiate`]); the answer is
    /// applied in the background.
    pub fn send_offer(&self, sdp: String) {
        self.offers_sent.fetch_add(1, Ordering::SeqCst);
        self.send(json!({ "type": "offer", "sdp": sdp }));
    }

    /// The SDP of every message of `kind` (`offer` or `answer`) the gateway sent, in order.
    pub fn sdp_from_gateway(&self, kind: &str) -> Vec<String> {
        let log = self.from_gateway.lock().unwrap();
        let messages = log.iter().filter_map(|text| serde_json::from_str::<Value>(text).ok());
        messages.filter(|m| m["type"] == kind).filter_map(|m| m["sdp"].as_str().map(str::to_owned)).collect()
    }

    /// Waits until the gateway has answered every offer this participant sent.
    pub async fn wait_answered(&self, limit: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + limit;
        while self.sdp_from_gateway("answer").len() < self.offers_sent.load(Ordering::SeqCst) {
            if tokio::time::Instant::now() >= deadline {
                bail!("peer {}: the gateway did not answer its offer", self.peer.id);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Drops off the network: the peer connection and the WebSocket both close.
    pub async fn close(&self) {
        self.peer.close().await;
        let _ = self.outgoing.send(Message::Close(None));
    }
}
