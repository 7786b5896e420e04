//! How the two participants of one consultation meet, per mode: through the gateway's real
//! signalling, in a Janus VideoRoom (the peer to measure against), directly with no server at
//! all (the clients' own floor), or as plain UDP endpoints through the bare relay (the
//! machine's forwarding ceiling).
//!
//! Each participant starts publishing as soon as its own connection is up, as a browser
//! does; the run's measurement window opens only once every consultation is up.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use gatehouse_probe::{Arrival, GatewayPeer, JanusPeer, Ledger, Peer, PeerOptions, Plan, Target, UdpPeer, stamp};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::Credentials;

/// How long one participant may take to connect.
const CONNECT_LIMIT: Duration = Duration::from_secs(30);

/// A participant's client: a WebRTC peer; a pair of them (Janus publishes and subscribes on
/// separate connections); or a plain UDP endpoint for the bare relay.
#[derive(Clone)]
pub enum Endpoint {
    WebRtc(Arc<Peer>),
    Split { publisher: Arc<Peer>, subscriber: Arc<Peer> },
    Udp(Arc<UdpPeer>),
}

impl Endpoint {
    pub fn id(&self) -> u32 {
        match self {
            Endpoint::WebRtc(p) | Endpoint::Split { publisher: p, .. } => p.id,
            Endpoint::Udp(p) => p.id,
        }
    }

    pub fn take_arrivals(&self) -> Vec<Arrival> {
        match self {
            Endpoint::WebRtc(p) | Endpoint::Split { subscriber: p, .. } => p.take_arrivals(),
            Endpoint::Udp(p) => p.take_arrivals(),
        }
    }

    pub fn undecodable(&self) -> usize {
        match self {
            Endpoint::WebRtc(p) | Endpoint::Split { subscriber: p, .. } => p.undecodable(),
            Endpoint::Udp(p) => p.undecodable(),
        }
    }

    pub async fn close(&self) {
        match self {
            Endpoint::WebRtc(p) => p.close().await,
            Endpoint::Split { publisher, subscriber } => {
                publisher.close().await;
                subscriber.close().await;
            }
            Endpoint::Udp(p) => p.close(),
        }
    }
}

/// One participant of a running consultation.
pub struct Member {
    pub peer: Endpoint,
    /// When it started to join (the probe clock), for the join-to-first-media figure.
    pub join_started_us: u64,
    pub publishing: JoinHandle<Ledger>,
}

/// A running consultation: its two members, and whatever keeps their signalling open.
pub struct Consultation {
    /// The room, then the clinician.
    pub members: [Member; 2],
    /// Dropped at the end of the run; until then the signalling connections stay open.
    pub _signalling: Vec<Box<dyn std::any::Any + Send + Sync>>,
}

/// What every mode needs to start publishing.
#[derive(Clone)]
pub struct Publishing {
    pub plan: Plan,
    pub stop: watch::Receiver<bool>,
    pub client_ip: IpAddr,
}

impl Publishing {
    fn start(&self, peer: &Endpoint) -> JoinHandle<Ledger> {
        let (peer, plan, stop) = (peer.clone(), self.plan, self.stop.clone());
        tokio::spawn(async move {
            match peer {
                Endpoint::WebRtc(p) | Endpoint::Split { publisher: p, .. } => p.publish(plan, 1, stop).await,
                Endpoint::Udp(p) => p.publish(plan, 1, stop).await,
            }
        })
    }
}

/// The room joins and waits; the clinician joins and admits it; both publish from the moment
/// their own connection is up.
pub async fn through_gateway(
    target: &Target,
    credentials: &Credentials,
    ids: [u32; 2],
    publishing: &Publishing,
) -> Result<Consultation> {
    let options = PeerOptions::udp(publishing.client_ip);
    let room_started = stamp::now_us();
    let room = GatewayPeer::join(target, json!({ "device": credentials.device }), ids[0], options)
        .await
        .context("the room could not join")?;
    room.expect("waiting", CONNECT_LIMIT).await?;
    let clinician_started = stamp::now_us();
    let clinician = GatewayPeer::join(target, json!({ "link": credentials.link }), ids[1], options)
        .await
        .context("the clinician could not join")?;
    let room_id = room.joined["participant_id"].as_str().unwrap_or_default().to_owned();
    clinician.send(json!({ "type": "admit", "participant_id": room_id }));
    room.expect("admitted", CONNECT_LIMIT).await?;
    clinician.peer.wait_connected(CONNECT_LIMIT).await.context("the clinician's media did not connect")?;
    let peer = Endpoint::WebRtc(clinician.peer.clone());
    let clinician_member = Member { publishing: publishing.start(&peer), peer, join_started_us: clinician_started };
    room.peer.wait_connected(CONNECT_LIMIT).await.context("the room's media did not connect")?;
    let peer = Endpoint::WebRtc(room.peer.clone());
    let room_member = Member { publishing: publishing.start(&peer), peer, join_started_us: room_started };
    Ok(Consultation {
        members: [room_member, clinician_member],
        _signalling: vec![Box::new(room), Box::new(clinician)],
    })
}

/// The same two clients connected to each other, with no server between them.
pub async fn direct(ids: [u32; 2], publishing: &Publishing) -> Result<Consultation> {
    let options = PeerOptions::udp(publishing.client_ip);
    let started = stamp::now_us();
    let (a, b) = (Arc::new(Peer::new(ids[0], options).await?), Arc::new(Peer::new(ids[1], options).await?));
    let offer = a.offer().await?;
    let answer = b.answer(offer).await?;
    a.accept_answer(answer).await?;
    let (up_a, up_b) = tokio::join!(a.wait_connected(CONNECT_LIMIT), b.wait_connected(CONNECT_LIMIT));
    if up_a.is_err() || up_b.is_err() {
        bail!("the direct connection did not come up");
    }
    let (a, b) = (Endpoint::WebRtc(a), Endpoint::WebRtc(b));
    let members = [
        Member { publishing: publishing.start(&a), peer: a, join_started_us: started },
        Member { publishing: publishing.start(&b), peer: b, join_started_us: started },
    ];
    Ok(Consultation { members, _signalling: Vec::new() })
}

/// The room and the clinician join VideoRoom `room` at `url`, each publishing and then
/// subscribing to the other; each publishes once its own publisher connection is up.
pub async fn through_janus(url: &str, room: u64, ids: [u32; 2], publishing: &Publishing) -> Result<Consultation> {
    let ip = publishing.client_ip;
    let started = stamp::now_us();
    let (a, b) =
        tokio::join!(JanusPeer::join(url, room, ids[0], ids[1], ip), JanusPeer::join(url, room, ids[1], ids[0], ip));
    let (a, b) = (a.context("the room could not join Janus")?, b.context("the clinician could not join Janus")?);
    let mut members = Vec::with_capacity(2);
    for peer in [&a, &b] {
        peer.publisher.wait_connected(CONNECT_LIMIT).await.context("a Janus publisher did not connect")?;
        peer.subscriber.wait_connected(CONNECT_LIMIT).await.context("a Janus subscriber did not connect")?;
        let endpoint = Endpoint::Split { publisher: peer.publisher.clone(), subscriber: peer.subscriber.clone() };
        members.push(Member { publishing: publishing.start(&endpoint), peer: endpoint, join_started_us: started });
    }
    let members: [Member; 2] = members.try_into().map_err(|_| anyhow::anyhow!("two members"))?;
    Ok(Consultation { members, _signalling: vec![Box::new(a), Box::new(b)] })
}

/// Two plain UDP endpoints paired through the bare relay at `relay` as pair `pair`.
pub async fn through_relay(
    relay: SocketAddr,
    pair: u32,
    ids: [u32; 2],
    publishing: &Publishing,
) -> Result<Consultation> {
    let started = stamp::now_us();
    let a = Endpoint::Udp(Arc::new(UdpPeer::join(ids[0], publishing.client_ip, relay, pair).await?));
    let b = Endpoint::Udp(Arc::new(UdpPeer::join(ids[1], publishing.client_ip, relay, pair).await?));
    let members = [
        Member { publishing: publishing.start(&a), peer: a, join_started_us: started },
        Member { publishing: publishing.start(&b), peer: b, join_started_us: started },
    ];
    Ok(Consultation { members, _signalling: Vec::new() })
}
