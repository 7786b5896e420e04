//! One live consultation: an actor task that owns its members, the waiting room, the timers and
//! the media session, and ends connections when the policy no longer allows them. Everything
//! reaches it as a closed `Command`, so its state needs no lock.

use std::sync::atomic::{AtomicBool, Ordering};

use jiff::{SignedDuration, Timestamp};
use tokio::sync::{mpsc, oneshot};

use super::event::{EndReason, PeerView, SessionEvent, Warning};
use super::quality::Quality;
use super::{ConnId, Shared};
use crate::audit::{AuditError, EventKind, Object};
use crate::auth::policy::{self, Action, Credential, Principal, Reason};
use crate::auth::{Caller, code};
use crate::domain::{AppointmentId, AppointmentStatus, ParticipantId};
use crate::schedule::{Admission, Change, ScheduleError};
use crate::sfu::{LinkQuality, ParticipantKey, SessionKey, SfuError};

/// How often the timers are checked: warnings and the hard end are at most this late.
const TICK: std::time::Duration = std::time::Duration::from_millis(500);
/// What a member hears when something cannot be done for want of its audit record.
const AUDIT_UNAVAILABLE: &str =
    "The gateway cannot record this right now, so it cannot be done. Try again in a minute.";
/// The first warning, before the booked end.
const WARN_BEFORE_END: SignedDuration = SignedDuration::from_mins(5);

pub(super) enum Command {
    Connect {
        admission: Box<Admission>,
        ip: Option<std::net::IpAddr>,
        gateway_ip: Option<std::net::IpAddr>,
        events: mpsc::Sender<SessionEvent>,
        reply: oneshot::Sender<Result<ConnId, EndReason>>,
    },
    Offer {
        conn: ConnId,
        sdp: String,
    },
    Answer {
        conn: ConnId,
        sdp: String,
    },
    Admit {
        conn: ConnId,
        member: String,
    },
    Invite {
        conn: ConnId,
        guest: String,
    },
    End {
        conn: ConnId,
    },
    /// The connection closed; `cut_off_for` names the client's misbehaviour when the gateway
    /// closed it for that.
    Disconnected {
        conn: ConnId,
        cut_off_for: Option<&'static str>,
    },
    Terminate {
        caller: Caller,
        reason: String,
        reply: oneshot::Sender<Result<(), ScheduleError>>,
    },
    /// Something changed that may end connections; None when changes were missed, so every
    /// member is checked again.
    Changed(Option<Change>),
    /// The media core asks this connection's browser to renegotiate.
    MediaOffer {
        key: ParticipantKey,
        sdp: String,
    },
    /// The member's media is up (again).
    MediaConnected {
        key: ParticipantKey,
    },
    /// The member's media went quiet or broke and has left the media core; `failed` when on
    /// an error.
    MediaLost {
        key: ParticipantKey,
        failed: bool,
    },
    /// The member's connection figures over the media core's last statistics interval.
    MediaQuality {
        key: ParticipantKey,
        quality: LinkQuality,
    },
    Describe {
        reply: oneshot::Sender<Summary>,
    },
    Shutdown,
}

/// Metadata about a live session for security staff: never media, never addresses.
#[derive(Debug, Clone)]
pub struct Summary {
    pub appointment: AppointmentId,
    pub room: String,
    pub started: Timestamp,
    pub ends_at: Timestamp,
    pub hard_end: Timestamp,
    pub members: Vec<MemberSummary>,
    /// Joins, admissions and departures, oldest first.
    pub history: Vec<(Timestamp, String)>,
}

/// One member of a live session for security staff: who, their state, and how their
/// connection is doing (figures about the connection, never its media or address).
#[derive(Debug, Clone)]
pub struct MemberSummary {
    pub peer: PeerView,
    pub quality: Quality,
}

struct Conn {
    id: ConnId,
    /// Bounded: a connection that cannot keep up is let go rather than queued for.
    events: mpsc::Sender<SessionEvent>,
    /// Its queue was full: it is disconnected once the current command is handled.
    stalled: AtomicBool,
    /// The member's peer connection in the media core, once it has sent its offer.
    media: Option<ParticipantKey>,
    /// Its media went quiet or broke: the others see the member away until media is back
    /// (a new offer connects) or it reconnects.
    media_lost: bool,
    ip: Option<std::net::IpAddr>,
    /// The gateway's address this connection reached; the media core advertises it.
    gateway_ip: Option<std::net::IpAddr>,
    /// The media core's latest figures for this connection's media and when they came, so
    /// that figures which stopped coming read as unknown rather than as the last good ones.
    quality: Option<(Timestamp, LinkQuality)>,
    /// Counts this connection in the gauges while it lasts.
    _counted: super::gauges::Held,
}

struct Member {
    id: String,
    principal: Principal,
    display_name: String,
    role: &'static str,
    admitted: bool,
    conn: Option<Conn>,
}

impl Member {
    fn caller(&self) -> Caller {
        Caller::new(self.principal.clone(), self.conn.as_ref().and_then(|c| c.ip))
    }

    fn send(&self, event: SessionEvent) {
        if let Some(conn) = &self.conn
            && let Err(mpsc::error::TrySendError::Full(_)) = conn.events.try_send(event)
        {
            // A closed connection is noticed through its Disconnected command; a full one has
            // fallen behind.
            conn.stalled.store(true, Ordering::Relaxed);
        }
    }

    fn view(&self) -> PeerView {
        let state = match (&self.conn, self.admitted) {
            (None, _) => "away",
            (Some(conn), _) if conn.media_lost => "away",
            (Some(_), false) => "waiting",
            (Some(_), true) => "admitted",
        };
        PeerView { id: self.id.clone(), display_name: self.display_name.clone(), role: self.role, state }
    }

    /// What security staff see of this member at `now`.
    fn summary(&self, now: Timestamp) -> MemberSummary {
        let figures = self.conn.as_ref().filter(|c| !c.media_lost).and_then(|c| c.quality);
        MemberSummary { peer: self.view(), quality: Quality::at(figures, now) }
    }
}

pub(super) struct Live {
    shared: std::sync::Arc<Shared>,
    appointment: AppointmentId,
    media_session: SessionKey,
    members: Vec<Member>,
    started: Timestamp,
    ends_at: Timestamp,
    hard_end: Timestamp,
    room: crate::domain::Room,
    warned_five: bool,
    warned_end: bool,
    history: Vec<(Timestamp, String)>,
    /// Counts this session in the gauges while its actor runs.
    _counted: super::gauges::Held,
}

impl Live {
    pub(super) fn new(shared: std::sync::Arc<Shared>, admission: &Admission, media_session: SessionKey) -> Self {
        let now = (shared.clock)();
        let counted = shared.gauges.session();
        Self {
            shared,
            appointment: admission.view.appointment.id,
            media_session,
            members: Vec::new(),
            started: now,
            ends_at: admission.view.window.end,
            hard_end: admission.view.window.hard_end,
            room: admission.view.room.clone(),
            warned_five: false,
            warned_end: false,
            history: Vec::new(),
            _counted: counted,
        }
    }

    pub(super) async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let command = tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => command,
                    None => break,
                },
                _ = tick.tick() => {
                    if self.on_tick().await {
                        break;
                    }
                    self.let_go_of_stalled().await;
                    continue;
                }
            };
            if self.handle(command).await {
                break;
            }
            self.let_go_of_stalled().await;
        }
        for member in &mut self.members {
            if let Some(conn) = member.conn.take()
                && let Some(key) = conn.media
            {
                let _ = self.shared.sfu.remove_participant(key).await;
                self.shared.forget_media(key);
            }
        }
        self.shared.forget(self.appointment);
    }

    fn now(&self) -> Timestamp {
        (self.shared.clock)()
    }

    /// Records what a member did. What grants something (a join, an admission) goes ahead
    /// only once recorded: no audit, no action. What takes something away (leaving, endings)
    /// goes ahead regardless, since refusing to end would be worse; its failure is logged.
    async fn audit(&self, caller: &Caller, kind: EventKind, member: Option<&str>) -> Result<(), AuditError> {
        self.record(caller.event(kind).with_object(self.member_object(member))).await
    }

    /// [`Self::audit`] as a refusal with the stable `reason` code.
    async fn audit_refusal(
        &self,
        caller: &Caller,
        kind: EventKind,
        reason: &str,
        member: Option<&str>,
    ) -> Result<(), AuditError> {
        self.record(caller.event(kind).refused(reason).with_object(self.member_object(member))).await
    }

    fn member_object(&self, member: Option<&str>) -> Object {
        Object { participant: member.and_then(code), session: code(self.appointment), ..self.object() }
    }

    async fn record(&self, event: crate::audit::Event) -> Result<(), AuditError> {
        let result = self.shared.schedule.audit().append(event).await;
        if let Err(e) = &result {
            tracing::error!(error = %e, "cannot audit a session event");
        }
        result.map(drop)
    }

    fn object(&self) -> Object {
        Object { appointment: code(self.appointment), ..Object::default() }
    }

    fn note(&mut self, what: String) {
        let now = self.now();
        self.history.push((now, what));
    }

    fn broadcast_participants(&self) {
        let peers: Vec<PeerView> = self.members.iter().map(Member::view).collect();
        for member in &self.members {
            member.send(SessionEvent::Participants(peers.clone()));
        }
    }

    fn member_by_conn(&mut self, conn: ConnId) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.conn.as_ref().is_some_and(|c| c.id == conn))
    }

    /// Handles one command; true when the session is over.
    async fn handle(&mut self, command: Command) -> bool {
        match command {
            Command::Connect { admission, ip, gateway_ip, events, reply } => {
                let result = self.connect(&admission, ip, gateway_ip, events).await;
                let _ = reply.send(result);
            }
            Command::Offer { conn, sdp } => self.offer(conn, sdp).await,
            Command::Answer { conn, sdp } => {
                if let Some(key) = self.member_by_conn(conn).and_then(|m| m.conn.as_ref()).and_then(|c| c.media)
                    && let Err(e) = self.shared.sfu.answer(key, sdp).await
                {
                    self.send_error(conn, "bad_sdp", &format!("The answer could not be used: {e}"));
                }
            }
            Command::Admit { conn, member } => self.admit(conn, &member).await,
            Command::Invite { conn, guest } => self.invite(conn, &guest).await,
            Command::End { conn } => return self.end_by(conn).await,
            Command::Disconnected { conn, cut_off_for } => self.disconnected(conn, cut_off_for).await,
            Command::Terminate { caller, reason, reply } => {
                let result = self.terminate(&caller, reason).await;
                let over = result.is_ok();
                let _ = reply.send(result);
                return over;
            }
            Command::Changed(change) => {
                if change.is_none_or(|c| self.concerns(&c)) {
                    return self.schedule_changed().await;
                }
            }
            Command::MediaOffer { key, sdp } => {
                if let Some(member) =
                    self.members.iter().find(|m| m.conn.as_ref().is_some_and(|c| c.media == Some(key)))
                {
                    member.send(SessionEvent::Offer { sdp });
                }
            }
            Command::MediaConnected { key } => {
                if let Some(conn) = self.conn_by_media(key)
                    && conn.media_lost
                {
                    conn.media_lost = false;
                    self.broadcast_participants();
                }
            }
            Command::MediaLost { key, failed } => self.media_lost(key, failed).await,
            Command::MediaQuality { key, quality } => {
                let now = self.now();
                if let Some(conn) = self.conn_by_media(key) {
                    conn.quality = Some((now, quality));
                }
            }
            Command::Describe { reply } => {
                let now = self.now();
                let _ = reply.send(Summary {
                    appointment: self.appointment,
                    room: self.room.name.clone(),
                    started: self.started,
                    ends_at: self.ends_at,
                    hard_end: self.hard_end,
                    members: self.members.iter().map(|m| m.summary(now)).collect(),
                    history: self.history.clone(),
                });
            }
            Command::Shutdown => {
                self.end_all(EndReason::Shutdown).await;
                return true;
            }
        }
        false
    }

    fn send_error(&self, conn: ConnId, code: &'static str, message: &str) {
        if let Some(member) = self.members.iter().find(|m| m.conn.as_ref().is_some_and(|c| c.id == conn)) {
            member.send(SessionEvent::Error { code, message: message.to_owned() });
        }
    }

    async fn connect(
        &mut self,
        admission: &Admission,
        ip: Option<std::net::IpAddr>,
        gateway_ip: Option<std::net::IpAddr>,
        events: mpsc::Sender<SessionEvent>,
    ) -> Result<ConnId, EndReason> {
        let id = admission.member_id.to_string();
        let caller = Caller::new(admission.principal.clone(), ip);
        let role = admission.role();
        // Ask again inside the actor: a revocation or lockdown processed between the door and
        // here must not let this connection in.
        if let Err(reason) = self.allowed(&caller, Action::Remain).await {
            return Err(EndReason::Policy(reason));
        }
        let existing = self.members.iter().position(|m| m.id == id);
        if existing.is_some_and(|index| self.members[index].conn.is_some()) {
            // A second connection with the same credential is refused, never substituted.
            let refusal = caller.event(EventKind::SessionRefused).refused(EndReason::AlreadyConnected.code());
            let object = Object { participant: code(&id), ..self.object() };
            let _ = self.record(refusal.with_object(object)).await;
            return Err(EndReason::AlreadyConnected);
        }
        let reconnect = existing.is_some();
        let kind = if reconnect { EventKind::SessionReconnected } else { EventKind::SessionJoined };
        if self.audit(&caller, kind, Some(&id)).await.is_err() {
            return Err(EndReason::AuditUnavailable);
        }
        let conn = Conn {
            id: self.shared.next_conn(),
            events,
            stalled: AtomicBool::new(false),
            media: None,
            media_lost: false,
            ip,
            gateway_ip,
            quality: None,
            _counted: self.shared.gauges.connection(),
        };
        let conn_id = conn.id;
        let index = match existing {
            Some(index) => {
                let member = &mut self.members[index];
                // An admission belongs to the credential it was given to: a member back with a
                // reissued link or a replaced device waits to be admitted again.
                if member.principal != admission.principal {
                    member.admitted = role == "clinician";
                    member.principal = admission.principal.clone();
                }
                member.conn = Some(conn);
                index
            }
            None => {
                // A clinician's own join admits nobody else, but the clinician is in.
                self.members.push(Member {
                    id: id.clone(),
                    principal: admission.principal.clone(),
                    display_name: admission.display_name.clone(),
                    role,
                    admitted: role == "clinician",
                    conn: Some(conn),
                });
                self.members.len() - 1
            }
        };
        let (admitted, name) = (self.members[index].admitted, self.members[index].display_name.clone());
        self.note(format!("{name} ({role}) {}", if reconnect { "reconnected" } else { "joined" }));
        let member = &self.members[index];
        // A clinician may invite the guests listed on the booking, so is told who they are.
        let guests = match role {
            "clinician" => {
                admission.view.appointment.guests.iter().map(|g| (g.id.to_string(), g.display_name.clone())).collect()
            }
            _ => Vec::new(),
        };
        member.send(SessionEvent::Joined {
            appointment: self.appointment,
            participant_id: id.clone(),
            role,
            display_name: name,
            ends_at: self.ends_at,
            hard_end: self.hard_end,
            admitted,
            guests,
        });
        member.send(if admitted { SessionEvent::Admitted } else { SessionEvent::Waiting });
        if !admitted {
            // Waiting grants nothing, so it is not refused for want of its record.
            let _ = self.audit(&caller, EventKind::SessionWaiting, Some(&id)).await;
        }
        self.broadcast_participants();
        Ok(conn_id)
    }

    async fn offer(&mut self, conn: ConnId, sdp: String) {
        let session = self.media_session;
        let Some(member) = self.member_by_conn(conn) else { return };
        let admitted = member.admitted;
        let current = member.conn.as_ref().and_then(|c| c.media);
        let gateway_ip = member.conn.as_ref().and_then(|c| c.gateway_ip);
        if let Some(current) = current {
            // A further offer on the same peer connection (a track added or stopped, an ICE
            // restart) is applied in place, and media keeps flowing.
            match self.shared.sfu.renegotiate(current, sdp.clone()).await {
                Ok(answer) => {
                    if let Some(member) = self.member_by_conn(conn) {
                        member.send(SessionEvent::Answer { sdp: answer });
                    }
                    return;
                }
                Err(SfuError::BadSdp(e)) => {
                    self.send_error(conn, "bad_sdp", &format!("The offer could not be used: {e}"));
                    return;
                }
                // An offer from a new peer connection (the browser started afresh) replaces
                // the old one; so does one whose predecessor the media core has already ended.
                Err(_) => {
                    if let Some(c) = self.member_by_conn(conn).and_then(|m| m.conn.as_mut()) {
                        c.media = None;
                        c.quality = None;
                    }
                    let _ = self.shared.sfu.remove_participant(current).await;
                    self.shared.forget_media(current);
                }
            }
        }
        let key = self.shared.new_media_key(self.appointment);
        match self.shared.sfu.add_participant_via(session, key, sdp, gateway_ip).await {
            Ok(answer) => {
                if let Some(member) = self.member_by_conn(conn) {
                    if let Some(c) = member.conn.as_mut() {
                        c.media = Some(key);
                    }
                    member.send(SessionEvent::Answer { sdp: answer });
                }
                let _ = self.shared.sfu.set_forwarding(key, admitted).await;
            }
            Err(e) => {
                self.shared.forget_media(key);
                self.send_error(conn, "bad_sdp", &format!("The offer could not be used: {e}"));
            }
        }
    }

    async fn admit(&mut self, conn: ConnId, target: &str) {
        let Some(admitter) = self.member_by_conn(conn) else { return };
        let caller = admitter.caller();
        if let Err(refusal) = self.allowed(&caller, Action::Admit).await {
            self.send_error(conn, refusal.code(), refusal.message());
            return;
        }
        let Some(member) = self.members.iter().find(|m| m.id == target) else {
            self.send_error(conn, "not_found", "There is nobody with that id in this consultation.");
            return;
        };
        if member.admitted {
            return;
        }
        // No audit, no admission.
        if self.audit(&caller, EventKind::SessionAdmitted, Some(target)).await.is_err() {
            self.send_error(conn, "audit_unavailable", AUDIT_UNAVAILABLE);
            return;
        }
        let Some(member) = self.members.iter_mut().find(|m| m.id == target) else { return };
        member.admitted = true;
        let key = member.conn.as_ref().and_then(|c| c.media);
        member.send(SessionEvent::Admitted);
        let name = member.display_name.clone();
        if let Some(key) = key {
            let _ = self.shared.sfu.set_forwarding(key, true).await;
        }
        self.note(format!("{name} admitted"));
        self.broadcast_participants();
    }

    /// Gives a clinician the join link of a guest listed on the booking, to pass on (the
    /// schedule decides, and records it).
    async fn invite(&mut self, conn: ConnId, guest: &str) {
        let Some(inviter) = self.member_by_conn(conn) else { return };
        let caller = inviter.caller();
        let not_found = "There is no guest with that id on this booking.";
        // An id of the wrong form is no guest's, but the policy is asked first all the same,
        // so that whoever may not invite is refused, and recorded, whatever they sent.
        let guest = guest.parse::<uuid::Uuid>().unwrap_or_default();
        let (schedule, appointment, now) = (self.shared.schedule.clone(), self.appointment, self.now());
        let invited =
            tokio::task::spawn_blocking(move || schedule.invite_guest(&caller, appointment, ParticipantId(guest), now))
                .await;
        match invited {
            Ok(Ok(link)) => {
                if let Some(inviter) = self.member_by_conn(conn) {
                    inviter.send(SessionEvent::Invited {
                        participant_id: link.record.participant.to_string(),
                        display_name: link.display_name,
                        token: link.token,
                    });
                }
            }
            Ok(Err(ScheduleError::Denied(reason))) => self.send_error(conn, reason.code(), reason.message()),
            Ok(Err(ScheduleError::NotFound(_))) => self.send_error(conn, "not_found", not_found),
            Ok(Err(ScheduleError::Conflict(message))) => self.send_error(conn, "guest_link_revoked", &message),
            Ok(Err(ScheduleError::Audit(_))) => self.send_error(conn, "audit_unavailable", AUDIT_UNAVAILABLE),
            _ => self.send_error(conn, "unavailable", "The link could not be made just now. Try again."),
        }
    }

    async fn allowed(&self, caller: &Caller, action: Action) -> Result<(), Reason> {
        let schedule = self.shared.schedule.clone();
        let (caller, appointment, now) = (caller.clone(), self.appointment, self.now());
        let result = tokio::task::spawn_blocking(move || {
            let view = schedule.view(appointment)?;
            let credential = schedule.credential_state(&caller.principal)?;
            schedule.authorize(&caller, action, Some(&view), credential, now)
        })
        .await;
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(ScheduleError::Denied(reason))) => Err(reason),
            // Cannot ask (store or audit down): deny, as a secure default.
            _ => Err(Reason::NotAuthenticated),
        }
    }

    async fn end_by(&mut self, conn: ConnId) -> bool {
        let Some(member) = self.member_by_conn(conn) else { return false };
        let caller = member.caller();
        if let Err(refusal) = self.allowed(&caller, Action::EndSession).await {
            self.send_error(conn, refusal.code(), refusal.message());
            return false;
        }
        // The appointment must be marked ended first, or its links would let everyone back in.
        if self.finish(AppointmentStatus::Ended).await.is_err() {
            self.send_error(conn, "unavailable", "The consultation could not be ended just now. Try again.");
            return false;
        }
        let _ = self.audit(&caller, EventKind::SessionEnded, None).await;
        self.end_all(EndReason::EndedByClinician).await;
        true
    }

    async fn terminate(&mut self, caller: &Caller, reason: String) -> Result<(), ScheduleError> {
        let schedule = self.shared.schedule.clone();
        let (who, appointment, now) = (caller.clone(), self.appointment, self.now());
        tokio::task::spawn_blocking(move || {
            let view = schedule.view(appointment)?;
            schedule.authorize(&who, Action::TerminateSession, Some(&view), Credential::Valid, now)
        })
        .await
        .map_err(|_| ScheduleError::NotFound("live session"))??;
        // Marked first: a termination that is not stored would let everyone rejoin, so its
        // failure goes back to security staff, and the session carries on until they retry.
        self.finish(AppointmentStatus::Terminated { reason: reason.clone() }).await?;
        let _ = self.audit(caller, EventKind::SessionTerminated, None).await;
        self.end_all(EndReason::Terminated { reason }).await;
        Ok(())
    }

    /// Stores how the appointment ended.
    async fn finish(&self, status: AppointmentStatus) -> Result<(), ScheduleError> {
        let schedule = self.shared.schedule.clone();
        let (appointment, now) = (self.appointment, self.now());
        let result = tokio::task::spawn_blocking(move || schedule.mark_ended(appointment, status, now))
            .await
            .unwrap_or(Err(ScheduleError::NotFound("live session")));
        if let Err(e) = &result {
            tracing::error!(error = %e, "cannot record how a consultation ended");
        }
        result
    }

    async fn end_all(&mut self, reason: EndReason) {
        for i in 0..self.members.len() {
            self.end_member(i, reason.clone()).await;
        }
    }

    async fn end_member(&mut self, index: usize, reason: EndReason) {
        let Some(member) = self.members.get_mut(index) else { return };
        member.send(SessionEvent::Ended(reason.clone()));
        let Some(conn) = member.conn.take() else { return };
        let (caller, id) = (member.caller(), member.id.clone());
        if let Some(key) = conn.media {
            let _ = self.shared.sfu.remove_participant(key).await;
            self.shared.forget_media(key);
        }
        // Every member's leaving is on record. A member the policy no longer allows (a
        // revocation, cancellation, lockdown or the window's end), or whom security removed,
        // leaves by refusal, with the reason's code.
        let _ = match reason {
            EndReason::Policy(_) | EndReason::Terminated { .. } => {
                self.audit_refusal(&caller, EventKind::SessionLeft, reason.code(), Some(&id)).await
            }
            _ => self.audit(&caller, EventKind::SessionLeft, Some(&id)).await,
        };
    }

    fn conn_by_media(&mut self, key: ParticipantKey) -> Option<&mut Conn> {
        self.members.iter_mut().filter_map(|m| m.conn.as_mut()).find(|c| c.media == Some(key))
    }

    /// A member's media went quiet or broke. The media core has already let it go; the member
    /// shows as away and is asked to offer again, over the signalling connection it still has.
    async fn media_lost(&mut self, key: ParticipantKey, failed: bool) {
        self.shared.forget_media(key);
        let Some(conn) = self.conn_by_media(key) else { return };
        conn.media = None;
        conn.media_lost = true;
        conn.quality = None;
        let conn = conn.id;
        let (code, message) = if failed {
            ("media_failed", "The media connection failed. Send a new offer to restore it.")
        } else {
            ("media_lost", "The media connection went quiet. Send a new offer to restore it.")
        };
        self.send_error(conn, code, message);
        if failed && let Some(member) = self.member_by_conn(conn) {
            let caller = member.caller();
            let id = member.id.clone();
            let _ = self.audit(&caller, EventKind::MediaFailed, Some(&id)).await;
        }
        self.broadcast_participants();
    }

    /// Connections whose event queue filled are disconnected: the member shows as away, and
    /// its signalling connection closes (4504) once it has sent what was queued.
    async fn let_go_of_stalled(&mut self) {
        let stalled: Vec<ConnId> = self
            .members
            .iter()
            .filter_map(|m| m.conn.as_ref())
            .filter(|c| c.stalled.load(Ordering::Relaxed))
            .map(|c| c.id)
            .collect();
        for conn in stalled {
            tracing::warn!("a participant's connection fell behind its messages; disconnecting it");
            self.disconnected(conn, None).await;
        }
    }

    async fn disconnected(&mut self, conn: ConnId, cut_off_for: Option<&'static str>) {
        let Some(index) = self.members.iter().position(|m| m.conn.as_ref().is_some_and(|c| c.id == conn)) else {
            return;
        };
        let caller = self.members[index].caller();
        let id = self.members[index].id.clone();
        let name = self.members[index].display_name.clone();
        if let Some(conn) = self.members[index].conn.take()
            && let Some(key) = conn.media
        {
            let _ = self.shared.sfu.remove_participant(key).await;
            self.shared.forget_media(key);
        }
        let _ = match cut_off_for {
            Some(code) => self.audit_refusal(&caller, EventKind::SessionLeft, code, Some(&id)).await,
            None => self.audit(&caller, EventKind::SessionLeft, Some(&id)).await,
        };
        self.note(format!("{name} left"));
        self.broadcast_participants();
    }

    /// The schedule changed: reload the appointment (it may have moved, been cancelled or
    /// locked down), take on its new times, and ask the policy again for every member. True
    /// when the session is over.
    async fn schedule_changed(&mut self) -> bool {
        let schedule = self.shared.schedule.clone();
        let appointment = self.appointment;
        let view = tokio::task::spawn_blocking(move || schedule.view(appointment)).await;
        let Ok(Ok(view)) = view else {
            // Cannot reload: the policy, asked below, cannot be asked either and so ends everyone.
            self.reevaluate().await;
            return false;
        };
        self.room = view.room.clone();
        if (view.window.end, view.window.hard_end) != (self.ends_at, self.hard_end) {
            self.retime(view.window.end, view.window.hard_end);
        }
        self.reevaluate().await;
        if let Err(reason) = policy::consultation_may_continue(&view.facts(), self.now()) {
            // Nobody may be in it any more (those connected were just ended): the session is over,
            // and leaves the live list rather than lingering until its old hard end. The record
            // names the policy's reason, as a refusal to let it go on.
            let event = crate::audit::Event::new(EventKind::SessionEnded, crate::audit::Actor::System);
            let _ = self.record(event.refused(reason.code()).with_object(self.object())).await;
            self.note(format!("ended: {}", reason.code()));
            return true;
        }
        false
    }

    /// Takes on a rescheduled end: the warnings are given again for the new end, the hard end
    /// follows it, and everyone is told the new times at once.
    fn retime(&mut self, ends_at: Timestamp, hard_end: Timestamp) {
        self.ends_at = ends_at;
        self.hard_end = hard_end;
        self.warned_five = false;
        self.warned_end = false;
        for member in &self.members {
            member.send(SessionEvent::Timing { ends_at, hard_end, warning: None });
        }
        self.note("rescheduled".to_owned());
    }

    /// Asks the policy again for every connected member; those it now refuses are ended.
    async fn reevaluate(&mut self) {
        for index in 0..self.members.len() {
            if self.members[index].conn.is_none() {
                continue;
            }
            let caller = self.members[index].caller();
            if let Err(reason) = self.allowed(&caller, Action::Remain).await {
                self.end_member(index, EndReason::Policy(reason)).await;
                self.broadcast_participants();
            }
        }
    }

    /// Timers: the five-minute warning, the end warning, and the hard end. True when over.
    async fn on_tick(&mut self) -> bool {
        let now = self.now();
        if !self.warned_five && now >= self.ends_at - WARN_BEFORE_END && now < self.ends_at {
            self.warned_five = true;
            self.warn(Warning::FiveMinutes).await;
        }
        if !self.warned_end && now >= self.ends_at {
            self.warned_five = true;
            self.warned_end = true;
            self.warn(Warning::End).await;
        }
        if now >= self.hard_end {
            let event = crate::audit::Event::new(EventKind::SessionEnded, crate::audit::Actor::System);
            let _ = self.record(event.with_object(self.object())).await;
            // The window is over, so the policy refuses everyone even if this is not stored.
            let _ = self.finish(AppointmentStatus::Ended).await;
            self.end_all(EndReason::Policy(Reason::WindowClosed)).await;
            return true;
        }
        false
    }

    async fn warn(&mut self, warning: Warning) {
        for member in &self.members {
            member.send(SessionEvent::Timing {
                ends_at: self.ends_at,
                hard_end: self.hard_end,
                warning: Some(warning),
            });
        }
        let what = match warning {
            Warning::FiveMinutes => "five-minute warning",
            Warning::End => "end warning",
        };
        self.note(what.to_owned());
        let event = crate::audit::Event::new(EventKind::SessionWarned, crate::audit::Actor::System);
        let _ = self.record(event.with_object(self.object())).await;
    }

    fn concerns(&self, change: &Change) -> bool {
        match change {
            Change::Appointment(id) => *id == self.appointment,
            Change::Room(id) => *id == self.room.id,
            Change::Site(site) => *site == self.room.site,
        }
    }
}
