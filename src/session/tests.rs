//! The live session against a real schedule, audit log and media core, for what cannot be
//! reached from outside in reasonable time: a connection that stops taking its events.

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{EVENT_QUEUE, SessionEvent, Sessions};
use crate::audit::AuditLog;
use crate::auth::Caller;
use crate::auth::links::LinkKeys;
use crate::auth::policy::Principal;
use crate::domain::{StaffId, StaffRole};
use crate::schedule::{NewAppointment, Schedule, WindowSettings};
use crate::sfu::{Sfu, SfuConfig};
use crate::store::{SqliteStore, Store};

/// A schedule in `dir` with a room booked now; returns the room's credential.
fn schedule_with_a_booking(dir: &std::path::Path) -> (Schedule, String) {
    let store = Arc::new(SqliteStore::open(dir).unwrap());
    let audit = AuditLog::open(store.database_path(), dir).unwrap();
    let links = Arc::new(LinkKeys::load(dir).unwrap());
    let schedule = Schedule::new(store, audit, WindowSettings::default(), links);
    let now = Timestamp::now();
    let scheduler = Caller::new(Principal::Staff { id: StaffId::new(), role: StaffRole::Scheduler }, None);
    let (room, kiosk) = schedule.enrol_room(&scheduler, "HMP A", "Room 1", "Europe/London", now).unwrap();
    let booking = NewAppointment {
        room: room.id,
        start: now - SignedDuration::from_mins(5),
        end: now + SignedDuration::from_mins(25),
        clinician_name: "Dr A".into(),
        clinician_email: "a@b.nhs.uk".into(),
        patient_pseudonym: "PT-1A".into(),
        escort_name: "Nurse B".into(),
        guests: vec![],
    };
    schedule.book(&scheduler, booking, now).unwrap();
    (schedule, kiosk)
}

/// The live-session side of a gateway on `schedule`, with a real media core.
async fn sessions(schedule: &Schedule) -> Sessions {
    let config = SfuConfig::new("127.0.0.1:0".parse().unwrap());
    let (sfu, _) = Sfu::start(config).await.unwrap();
    let events = sfu.events();
    Sessions::start(schedule.clone(), sfu, events, crate::clock::system(), CancellationToken::new(), Default::default())
}

#[test]
fn a_connection_that_stops_taking_its_events_is_let_go_and_shown_away() {
    let dir = tempfile::tempdir().unwrap();
    let (schedule, kiosk) = schedule_with_a_booking(dir.path());
    let admission = schedule.admit_room(&kiosk, None, Timestamp::now()).unwrap().1.unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async move {
        let sessions = sessions(&schedule).await;
        let (events, mut never_read) = mpsc::channel(EVENT_QUEUE);
        let connection = sessions.connect(admission, None, None, events).await.unwrap();
        // Every unusable offer is answered with an error event that nobody reads.
        for _ in 0..EVENT_QUEUE * 2 {
            connection.offer("v=0\r\n".to_owned()).await;
        }
        let live = sessions.list().await;
        assert_eq!(live[0].members[0].peer.state, "away", "{live:?}");
        // What was queued is still delivered, then the queue closes: the signalling layer closes
        // the socket on that.
        let mut delivered = 0;
        while let Some(event) = never_read.recv().await {
            assert!(!matches!(event, SessionEvent::Ended(_)), "{event:?}");
            delivered += 1;
        }
        assert_eq!(delivered, EVENT_QUEUE);
    });
}
