//! `gatehouse serve --demo`: on an empty data folder, seeds a room, an appointment whose window
//! is open now, its clinician's join link, and a scheduler and a security account, so a newcomer
//! can try the whole product from one command. Nothing is seeded without `--demo`.

use jiff::{SignedDuration, Timestamp};

use crate::auth::policy::Principal;
use crate::auth::staff::{NewStaff, StaffAccounts};
use crate::auth::{Caller, new_secret};
use crate::domain::{GuestKind, StaffRole};
use crate::schedule::{NewAppointment, Schedule};
use crate::store::Store;

/// What a newcomer needs to try the product; printed once.
#[derive(Debug)]
pub struct DemoSeed {
    pub kiosk_credential: String,
    pub room_name: String,
    pub clinician_link_token: String,
    pub scheduler: (String, String),
    pub security: (String, String, String),
}

/// Seeds the demo unless the data folder already has staff or rooms.
pub fn seed(
    store: &dyn Store,
    staff: &StaffAccounts,
    schedule: &Schedule,
    now: Timestamp,
) -> anyhow::Result<Option<DemoSeed>> {
    if !store.list_staff()?.is_empty() || !store.rooms()?.is_empty() {
        return Ok(None);
    }
    let console = Caller::console();
    let password = || new_secret("").map(|s| s[..16].to_owned()).map_err(|_| anyhow::anyhow!("no randomness"));
    let scheduler_password = password()?;
    let scheduler = NewStaff {
        username: "scheduler",
        display_name: "Demo Scheduler",
        role: StaffRole::Scheduler,
        with_totp: false,
    };
    let (scheduler, _) = staff.create(&console, &scheduler, &scheduler_password, now)?;
    let security_password = password()?;
    let security = NewStaff {
        username: "security",
        display_name: "Demo Security Officer",
        role: StaffRole::Security,
        with_totp: true,
    };
    let (_, security_uri) = staff.create(&console, &security, &security_password, now)?;
    let as_scheduler = Caller::new(Principal::Staff { id: scheduler.id, role: scheduler.role }, None);
    let (room, kiosk_credential) =
        schedule.enrol_room(&as_scheduler, "HMP Demo", "Healthcare Room 1", "Europe/London", now)?;
    let view = schedule.book(
        &as_scheduler,
        NewAppointment {
            room: room.id,
            start: now - SignedDuration::from_mins(5),
            end: now + SignedDuration::from_mins(55),
            clinician_name: "Dr Ada Demo".into(),
            clinician_email: "ada.demo@hospital.example".into(),
            patient_pseudonym: "DEMO-0001".into(),
            escort_name: "Nurse Demo".into(),
            guests: vec![("Demo Interpreter".into(), GuestKind::Interpreter)],
        },
        now,
    )?;
    let link = schedule.issue_link(&as_scheduler, view.appointment.id, view.appointment.clinician_id, now)?;
    Ok(Some(DemoSeed {
        kiosk_credential,
        room_name: room.name,
        clinician_link_token: link.token,
        scheduler: ("scheduler".into(), scheduler_password),
        security: ("security".into(), security_password, security_uri.unwrap_or_default()),
    }))
}
