//! One signalling connection: waits for `join`, asks the schedule whether this credential may
//! enter now, connects to the live session, then relays session events out and client
//! messages in. Bad input gets an `error` message with a code; repeated abuse or a flood closes
//! the connection with a documented close code.

use std::net::IpAddr;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::mpsc;

use super::protocol::{self, ClientMessage, Credential};
use crate::audit::EventKind;
use crate::auth::Caller;
use crate::auth::policy::{Principal, Reason};
use crate::clock::Clock;
use crate::rate::{Rate, RetryAfter, TokenBucket};
use crate::schedule::{Schedule, ScheduleError};
use crate::session::{Connection, EndReason, SessionEvent, Sessions};

/// The first message must arrive by then.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);
/// A steady rate and a burst; more is a flood.
const MESSAGES: Rate = Rate { per_second: 20.0, burst: 40.0 };
/// Each offer builds a new peer connection in the media core, so offers have a lower limit of
/// their own: a start and a few restarts, then one every 10 seconds.
const OFFERS: Rate = Rate { per_second: 0.1, burst: 3.0 };
/// This many refused messages close the connection.
const MAX_STRIKES: u32 = 10;
/// A client that says nothing for this long (clients ping every 20 s) has gone; its member is
/// then away and may reconnect.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Close codes (documented in docs/protocol.md).
pub mod close {
    /// The consultation ended, or the client left.
    pub const NORMAL: u16 = 1000;
    /// The credential was refused, or `join` did not come in time.
    pub const REFUSED: u16 = 4401;
    /// Too many invalid messages.
    pub const ABUSE: u16 = 4400;
    /// Messages arrived faster than allowed for too long.
    pub const FLOOD: u16 = 4429;
    /// Nothing arrived for 60 seconds.
    pub const IDLE: u16 = 4408;
    /// The client did not take its messages in time: a send stalled, or its queue filled.
    pub const TOO_SLOW: u16 = 4504;
}

/// Why the gateway closed a connection on the client: recorded in the audit log with the
/// code, as the member's leaving or, before a join, as a refused access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CutOff {
    /// Messages kept coming faster than allowed (closed with 4429).
    Flood,
    /// Too many invalid messages (closed with 4400).
    Abuse,
}

impl CutOff {
    fn code(self) -> &'static str {
        match self {
            Self::Flood => "signalling_flood",
            Self::Abuse => "signalling_abuse",
        }
    }
}

/// A frame from the client, as the transport sees it.
#[derive(Debug)]
pub enum Frame {
    Text(String),
    /// Binary frames are not part of the protocol.
    Binary,
    /// A frame larger than the transport accepts.
    TooLarge,
    Close,
}

/// The transport under a signalling connection (a WebSocket in production).
#[allow(async_fn_in_trait)]
pub trait Socket: Send {
    async fn recv(&mut self) -> Option<Frame>;
    /// False when the connection is gone.
    async fn send(&mut self, text: String) -> bool;
    async fn close(&mut self, code: u16, reason: &str);
}

/// Who is connecting, as far as the transport knows.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The client's own address, for its own audit records only.
    pub ip: Option<IpAddr>,
    /// The gateway's address the client reached: its media candidates use this one.
    pub gateway_ip: Option<IpAddr>,
    /// The hash of the browser cookie that binds join links to one browser; None when the
    /// client sent none (a kiosk needs none, a link holder does).
    pub browser: Option<[u8; 32]>,
}

/// Runs the connection to its end.
pub async fn run(mut socket: impl Socket, peer: Peer, schedule: Schedule, sessions: Sessions, clock: Clock) {
    let mut limiter = Limiter::new(clock.clone());
    let credential = match tokio::time::timeout(JOIN_TIMEOUT, first_join(&mut socket, &mut limiter)).await {
        Ok(Ok(credential)) => credential,
        Ok(Err(None)) => return,
        Ok(Err(Some(cut_off))) => {
            // Not in a session yet: a refused access from the client's address, recorded like
            // any other refused request (one by one up to the address's share, then summarised).
            let refusal =
                Caller::new(Principal::Anonymous, peer.ip).event(EventKind::AccessDenied).refused(cut_off.code());
            let (schedule, ip, now) = (schedule.clone(), peer.ip, clock());
            let _ = tokio::task::spawn_blocking(move || schedule.refuse_request(ip, refusal, now)).await;
            return;
        }
        Err(_) => {
            let message = "Send a join message first.";
            socket.send(protocol::error_message("join_timeout", message)).await;
            socket.close(close::REFUSED, "join timeout").await;
            return;
        }
    };
    let now = clock();
    let admission = {
        let (schedule, peer) = (schedule.clone(), peer.clone());
        tokio::task::spawn_blocking(move || admit(&schedule, credential, &peer, now)).await
    };
    let admission = match admission {
        Ok(Ok(admission)) => admission,
        Ok(Err(ScheduleError::Denied(reason))) => {
            socket.send(protocol::error_message(reason.code(), reason.message())).await;
            socket.close(close::REFUSED, reason.code()).await;
            return;
        }
        Ok(Err(ScheduleError::RateLimited(retry_after))) => {
            let code = Reason::RateLimited.code();
            let message = retry_after.message();
            socket.send(protocol::retry_later_message(code, &message, retry_after.whole_seconds())).await;
            socket.close(close::REFUSED, code).await;
            return;
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot admit a signalling connection");
            socket.send(protocol::error_message("unavailable", "The gateway cannot admit anyone right now.")).await;
            socket.close(close::REFUSED, "unavailable").await;
            return;
        }
        Err(_) => return,
    };
    let (events_tx, mut events) = mpsc::channel(crate::session::EVENT_QUEUE);
    let connection = match sessions.connect(admission, peer.ip, peer.gateway_ip, events_tx).await {
        Ok(connection) => connection,
        Err(reason) => {
            socket.send(protocol::error_message(reason.code(), &reason.message())).await;
            socket.close(close::REFUSED, reason.code()).await;
            return;
        }
    };
    let mut last_heard = tokio::time::Instant::now();
    let mut cut_off = None;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(last_heard + IDLE_TIMEOUT) => {
                socket.close(close::IDLE, "idle").await;
                break;
            }
            event = events.recv() => {
                let Some(event) = event else {
                    // The session let go of this connection without ending it: it fell behind.
                    socket.close(close::TOO_SLOW, "too slow").await;
                    break;
                };
                let ended = matches!(event, SessionEvent::Ended(_));
                // A send that fails or stalls (see the transport's timeout) ends the connection;
                // the member is then away and may reconnect.
                if !socket.send(protocol::event_message(&event)).await {
                    break;
                }
                if ended {
                    socket.close(close::NORMAL, "ended").await;
                    break;
                }
            }
            frame = socket.recv() => {
                let Some(frame) = frame else { break };
                last_heard = tokio::time::Instant::now();
                match handle(frame, &connection, &mut limiter, &mut socket).await {
                    Flow::Continue => {}
                    Flow::Stop => break,
                    Flow::CutOff(why) => {
                        cut_off = Some(why);
                        break;
                    }
                }
            }
        }
    }
    // Letting go of the connection tells the session this member left (or dropped).
    match cut_off {
        Some(why) => connection.cut_off(why.code()),
        None => drop(connection),
    }
}

enum Flow {
    Continue,
    Stop,
    /// The gateway closed the connection for the client's misbehaviour.
    CutOff(CutOff),
}

/// The credential of the client's `join`; otherwise an error, naming why the gateway cut the
/// client off if it did.
async fn first_join(socket: &mut impl Socket, limiter: &mut Limiter) -> Result<Credential, Option<CutOff>> {
    loop {
        let frame = socket.recv().await.ok_or(None)?;
        // Before the join, as after it: a flood is cut off.
        if !limiter.allow() {
            limiter.refuse_message(socket).await;
            if limiter.flooding() {
                socket.close(close::FLOOD, "flood").await;
                return Err(Some(CutOff::Flood));
            }
            continue;
        }
        let refused = match frame {
            Frame::Close => return Err(None),
            Frame::Text(text) => match protocol::parse(&text) {
                Ok(ClientMessage::Join(credential)) => return Ok(credential),
                Ok(ClientMessage::Ping { id }) => {
                    socket.send(protocol::pong(id)).await;
                    continue;
                }
                Ok(_) => ("not_joined", "Send a join message first.".to_owned()),
                Err(e) => (e.code, e.message),
            },
            Frame::Binary => ("invalid_message", "Binary frames are not part of this protocol.".to_owned()),
            Frame::TooLarge => ("too_large", "That message is too large.".to_owned()),
        };
        if !limiter.strike(socket, refused.0, &refused.1).await {
            return Err(Some(CutOff::Abuse));
        }
    }
}

fn admit(
    schedule: &Schedule,
    credential: Credential,
    peer: &Peer,
    now: Timestamp,
) -> Result<crate::schedule::Admission, ScheduleError> {
    match credential {
        Credential::Link { token, appointment_id } => {
            schedule.redeem_link(&token, appointment_id.as_deref(), peer.browser.as_ref(), peer.ip, now)
        }
        Credential::Device { credential } => schedule.admit_room(&credential, peer.ip, now)?.1,
    }
}

async fn handle(frame: Frame, connection: &Connection, limiter: &mut Limiter, socket: &mut impl Socket) -> Flow {
    if !limiter.allow() {
        limiter.refuse_message(socket).await;
        if limiter.flooding() {
            socket.close(close::FLOOD, "flood").await;
            return Flow::CutOff(CutOff::Flood);
        }
        return Flow::Continue;
    }
    let text = match frame {
        Frame::Close => return Flow::Stop,
        Frame::Text(text) => text,
        Frame::Binary => {
            return strike(limiter, socket, "invalid_message", "Binary frames are not part of this protocol.").await;
        }
        Frame::TooLarge => return strike(limiter, socket, "too_large", "That message is too large.").await,
    };
    match protocol::parse(&text) {
        Ok(ClientMessage::Join(_)) => {
            strike(limiter, socket, "already_joined", "This connection has already joined.").await
        }
        Ok(ClientMessage::Offer { sdp }) => {
            match limiter.take_offer() {
                Ok(()) => connection.offer(sdp).await,
                Err(wait) => {
                    let message = format!(
                        "Too many offers: each one rebuilds your media connection. Try again in {}.",
                        wait.in_words()
                    );
                    socket
                        .send(protocol::retry_later_message("offer_rate_limited", &message, wait.whole_seconds()))
                        .await;
                }
            }
            Flow::Continue
        }
        Ok(ClientMessage::Answer { sdp }) => {
            connection.answer(sdp).await;
            Flow::Continue
        }
        Ok(ClientMessage::Candidate) => Flow::Continue,
        Ok(ClientMessage::Admit { participant_id }) => {
            connection.admit(participant_id).await;
            Flow::Continue
        }
        Ok(ClientMessage::Invite { participant_id }) => {
            connection.invite(participant_id).await;
            Flow::Continue
        }
        Ok(ClientMessage::End) => {
            connection.end().await;
            Flow::Continue
        }
        Ok(ClientMessage::Leave) => {
            socket.send(protocol::ended(&EndReason::Left)).await;
            socket.close(close::NORMAL, "left").await;
            Flow::Stop
        }
        Ok(ClientMessage::Ping { id }) => {
            socket.send(protocol::pong(id)).await;
            Flow::Continue
        }
        Err(e) => strike(limiter, socket, e.code, &e.message).await,
    }
}

async fn strike(limiter: &mut Limiter, socket: &mut impl Socket, code: &str, message: &str) -> Flow {
    if limiter.strike(socket, code, message).await { Flow::Continue } else { Flow::CutOff(CutOff::Abuse) }
}

/// The connection's rate limits, and a count of refused messages.
struct Limiter {
    clock: Clock,
    messages: TokenBucket,
    offers: TokenBucket,
    strikes: u32,
    /// Consecutive refusals for rate: a client that keeps flooding is cut off.
    over_limit: u32,
}

impl Limiter {
    fn new(clock: Clock) -> Self {
        let now = clock();
        Self {
            clock,
            messages: TokenBucket::new(MESSAGES, now),
            offers: TokenBucket::new(OFFERS, now),
            strikes: 0,
            over_limit: 0,
        }
    }

    fn allow(&mut self) -> bool {
        if self.messages.take((self.clock)()) {
            self.over_limit = 0;
            true
        } else {
            self.over_limit += 1;
            false
        }
    }

    /// Takes an offer from the allowance, or says how long until the next one is taken.
    fn take_offer(&mut self) -> Result<(), RetryAfter> {
        let now = (self.clock)();
        if self.offers.take(now) { Ok(()) } else { Err(RetryAfter::new(self.offers.until_next(now))) }
    }

    /// Tells a client over its message allowance when its next message will be taken.
    async fn refuse_message(&mut self, socket: &mut impl Socket) {
        let wait = RetryAfter::new(self.messages.until_next((self.clock)()));
        let message =
            protocol::retry_later_message("rate_limited", "Too many messages; slow down.", wait.whole_seconds());
        socket.send(message).await;
    }

    fn flooding(&self) -> bool {
        self.over_limit > 20
    }

    /// Sends the error and counts it; false (after closing) once the client has used up its
    /// strikes.
    async fn strike(&mut self, socket: &mut impl Socket, code: &str, message: &str) -> bool {
        self.strikes += 1;
        socket.send(protocol::error_message(code, message)).await;
        if self.strikes >= MAX_STRIKES {
            socket.close(close::ABUSE, "too many invalid messages").await;
            return false;
        }
        true
    }
}
