//! The product's vocabulary: identifiers, roles, rooms, appointments and their windows. No IO,
//! no clock reads and no wire formats: time is always passed in.

mod appointment;
mod ids;
mod role;

pub use appointment::{
    Appointment, AppointmentStatus, Guest, GuestKind, Lockdown, LockdownScope, Room, Window, WindowPosition,
};
pub use ids::{AppointmentId, LinkId, ParticipantId, RoomId, StaffId};
pub use role::{ParticipantRole, Role, StaffRole};
