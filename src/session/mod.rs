//! Live consultations: the waiting room, admission, timers, termination and reconnection, and
//! the media session behind each. A live session is an actor task per appointment; connections
//! talk to it through a [`Connection`] handle. It drives the media core through its handle and
//! knows nothing of HTTP, JSON or WebSockets.

pub mod event;
mod gauges;
mod live;
pub mod quality;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub use event::{EndReason, PeerView, SessionEvent, Warning};
pub use gauges::SessionGauges;
use live::{Command, Live};
pub use live::{MemberSummary, Summary};
pub use quality::{Grade, Quality};

use crate::auth::Caller;
use crate::clock::Clock;
use crate::domain::AppointmentId;
use crate::schedule::{Admission, Schedule, ScheduleError};
use crate::sfu::{ParticipantKey, SessionKey, SfuEvent, SfuHandle};

/// Identifies one connection of one member; a reconnect gets a new one.
pub type ConnId = u64;

/// How many events may wait for one connection. A client that falls this far behind is
/// disconnected (and shown as away) rather than let the gateway's memory grow.
pub const EVENT_QUEUE: usize = 64;
/// How many commands may wait for one live session. Senders wait for room, which slows a
/// flooding client down rather than queueing without bound.
const COMMAND_QUEUE: usize = 256;

/// What every live session shares.
pub(crate) struct Shared {
    schedule: Schedule,
    sfu: SfuHandle,
    clock: Clock,
    /// The live sessions, by appointment. A std mutex: held only to look up or insert.
    live: Mutex<HashMap<AppointmentId, mpsc::Sender<Command>>>,
    /// Which session each media participant belongs to, to route the media core's events.
    media: Mutex<HashMap<ParticipantKey, AppointmentId>>,
    next_id: AtomicU64,
    /// Once cancelled, no session starts: one started during the drain would never hear of it.
    shutdown: CancellationToken,
    gauges: SessionGauges,
}

impl Shared {
    fn next_conn(&self) -> ConnId {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn new_media_key(&self, appointment: AppointmentId) -> ParticipantKey {
        let key = ParticipantKey(self.next_id.fetch_add(1, Ordering::Relaxed));
        self.media.lock().unwrap_or_else(|p| p.into_inner()).insert(key, appointment);
        key
    }

    fn forget_media(&self, key: ParticipantKey) {
        self.media.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
    }

    fn forget(&self, appointment: AppointmentId) {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).remove(&appointment);
    }

    fn session_of(&self, key: ParticipantKey) -> Option<mpsc::Sender<Command>> {
        let appointment = *self.media.lock().unwrap_or_else(|p| p.into_inner()).get(&key)?;
        self.live.lock().unwrap_or_else(|p| p.into_inner()).get(&appointment).cloned()
    }

    fn all(&self) -> Vec<mpsc::Sender<Command>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }
}

/// The registry of live sessions.
#[derive(Clone)]
pub struct Sessions {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sessions")
    }
}

impl Sessions {
    /// Starts the registry and the tasks that route media events and schedule changes to the
    /// live sessions they concern.
    pub fn start(
        schedule: Schedule,
        sfu: SfuHandle,
        mut sfu_events: mpsc::UnboundedReceiver<SfuEvent>,
        clock: Clock,
        shutdown: CancellationToken,
        gauges: SessionGauges,
    ) -> Self {
        let shared = Arc::new(Shared {
            schedule: schedule.clone(),
            sfu,
            clock,
            live: Mutex::new(HashMap::new()),
            media: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            shutdown: shutdown.clone(),
            gauges,
        });
        let media = shared.clone();
        tokio::spawn(async move {
            while let Some(event) = sfu_events.recv().await {
                let (key, command) = match event {
                    SfuEvent::Offer { participant, sdp } => {
                        (participant, Command::MediaOffer { key: participant, sdp })
                    }
                    SfuEvent::Connected { participant } => (participant, Command::MediaConnected { key: participant }),
                    SfuEvent::Disconnected { participant, .. } => {
                        (participant, Command::MediaLost { key: participant, failed: false })
                    }
                    SfuEvent::Failed { participant, .. } => {
                        (participant, Command::MediaLost { key: participant, failed: true })
                    }
                    SfuEvent::Quality { participant, quality } => {
                        (participant, Command::MediaQuality { key: participant, quality })
                    }
                };
                if let Some(session) = media.session_of(key) {
                    let _ = session.send(command).await;
                }
            }
        });
        let changes_shared = shared.clone();
        let mut changes = schedule.subscribe();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => {
                        for session in changes_shared.all() {
                            let _ = session.send(Command::Shutdown).await;
                        }
                        break;
                    }
                    change = changes.recv() => match change {
                        Ok(change) => {
                            // Waiting for room here delays a change, never loses it.
                            for session in changes_shared.all() {
                                let _ = session.send(Command::Changed(Some(change.clone()))).await;
                            }
                        }
                        // Missed changes: everyone re-checks everything.
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            for session in changes_shared.all() {
                                let _ = session.send(Command::Changed(None)).await;
                            }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                    }
                }
            }
        });
        Self { shared }
    }

    /// Connects an admitted member to its appointment's live session, starting the session if
    /// this is its first member. Events for the member arrive on `events`.
    pub async fn connect(
        &self,
        admission: Admission,
        ip: Option<std::net::IpAddr>,
        gateway_ip: Option<std::net::IpAddr>,
        events: mpsc::Sender<SessionEvent>,
    ) -> Result<Connection, EndReason> {
        let appointment = admission.view.appointment.id;
        let session = {
            let mut live = self.shared.live.lock().unwrap_or_else(|p| p.into_inner());
            // Checked under the lock the shutdown's round of the sessions takes, so a session is
            // either refused here or told to end there.
            if self.shared.shutdown.is_cancelled() {
                return Err(EndReason::Shutdown);
            }
            match live.get(&appointment).filter(|s| !s.is_closed()) {
                Some(session) => session.clone(),
                None => {
                    let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
                    let key = SessionKey(self.shared.next_id.fetch_add(1, Ordering::Relaxed));
                    let actor = Live::new(self.shared.clone(), &admission, key);
                    tokio::spawn(actor.run(rx));
                    live.insert(appointment, tx.clone());
                    tx
                }
            }
        };
        let (reply, answer) = oneshot::channel();
        session
            .send(Command::Connect { admission: Box::new(admission), ip, gateway_ip, events, reply })
            .await
            .map_err(|_| EndReason::Shutdown)?;
        let conn = answer.await.map_err(|_| EndReason::Shutdown)??;
        Ok(Connection { conn, session, cut_off_for: None })
    }

    /// The live sessions, as metadata for security staff.
    pub async fn list(&self) -> Vec<Summary> {
        let mut out = Vec::new();
        for session in self.shared.all() {
            let (reply, answer) = oneshot::channel();
            if session.send(Command::Describe { reply }).await.is_ok()
                && let Ok(summary) = answer.await
            {
                out.push(summary);
            }
        }
        out.sort_by_key(|s| s.started);
        out
    }

    /// Ends a live session on security staff's order, with the reason shown to everyone.
    pub async fn terminate(
        &self,
        caller: Caller,
        appointment: AppointmentId,
        reason: String,
    ) -> Result<(), ScheduleError> {
        let session = self.shared.live.lock().unwrap_or_else(|p| p.into_inner()).get(&appointment).cloned();
        let Some(session) = session else { return Err(ScheduleError::NotFound("live session")) };
        let (reply, answer) = oneshot::channel();
        session
            .send(Command::Terminate { caller, reason, reply })
            .await
            .map_err(|_| ScheduleError::NotFound("live session"))?;
        answer.await.map_err(|_| ScheduleError::NotFound("live session"))?
    }
}

/// One member's connection to its live session. Dropping it tells the session the member left
/// (or dropped, and may reconnect).
#[derive(Debug)]
pub struct Connection {
    conn: ConnId,
    session: mpsc::Sender<Command>,
    /// Set when the gateway closes the connection for the client's misbehaviour: the code the
    /// member's departure is recorded with.
    cut_off_for: Option<&'static str>,
}

impl Connection {
    pub async fn offer(&self, sdp: String) {
        let _ = self.session.send(Command::Offer { conn: self.conn, sdp }).await;
    }

    pub async fn answer(&self, sdp: String) {
        let _ = self.session.send(Command::Answer { conn: self.conn, sdp }).await;
    }

    /// Admits a waiting member (clinicians only; the policy decides).
    pub async fn admit(&self, member: String) {
        let _ = self.session.send(Command::Admit { conn: self.conn, member }).await;
    }

    /// Asks for a listed guest's join link to pass on (clinicians only; the policy decides).
    pub async fn invite(&self, guest: String) {
        let _ = self.session.send(Command::Invite { conn: self.conn, guest }).await;
    }

    /// Ends the consultation for everyone (clinicians only; the policy decides).
    pub async fn end(&self) {
        let _ = self.session.send(Command::End { conn: self.conn }).await;
    }

    /// Lets go of a connection the gateway closed for the client's misbehaviour (`code`, such
    /// as a flood): the member leaves as on any other drop, and the record of its leaving is a
    /// refusal that names why.
    pub fn cut_off(mut self, code: &'static str) {
        self.cut_off_for = Some(code);
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let left = Command::Disconnected { conn: self.conn, cut_off_for: self.cut_off_for };
        // The session must hear of every departure, so a full queue is waited on elsewhere.
        if let Err(mpsc::error::TrySendError::Full(left)) = self.session.try_send(left) {
            let session = self.session.clone();
            tokio::spawn(async move {
                let _ = session.send(left).await;
            });
        }
    }
}
