//! Persistence for staff, rooms, appointments, join links and lockdowns, and the SQLite engine
//! for it. Rules about who may do what live in `auth` and `schedule`, not here; the one rule
//! enforced here is the one that needs a transaction: a room is never double-booked.

use jiff::Timestamp;
use rusqlite::{OptionalExtension, Row, params};

use super::StoreError;
use super::sqlite::SqliteStore;
use crate::domain::{
    Appointment, AppointmentId, AppointmentStatus, Guest, GuestKind, LinkId, Lockdown, LockdownScope, ParticipantId,
    ParticipantRole, Room, RoomId, StaffId, StaffRole,
};

/// A staff account as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct StaffRecord {
    pub id: StaffId,
    pub username: String,
    pub display_name: String,
    pub role: StaffRole,
    pub password_hash: String,
    pub totp_secret: Option<String>,
    pub totp_last_step: Option<u64>,
    pub disabled: bool,
    pub failed_sign_ins: u32,
    pub first_failure_at: Option<i64>,
    pub locked_until: Option<i64>,
    pub created_at: i64,
}

impl std::fmt::Debug for StaffRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Hashes and secrets stay out of debug output.
        f.debug_struct("StaffRecord").field("id", &self.id).field("role", &self.role).finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub staff_id: StaffId,
    pub csrf_token: String,
    pub created_at: i64,
    pub last_seen_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRecord {
    pub id: LinkId,
    pub appointment: AppointmentId,
    pub participant: ParticipantId,
    pub role: ParticipantRole,
    pub issued_at: i64,
    pub revoked_at: Option<i64>,
    pub bound_browser: Option<[u8; 32]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockdownRecord {
    pub id: uuid::Uuid,
    pub lockdown: Lockdown,
    pub placed_by: StaffId,
}

/// Narrows an appointment listing.
#[derive(Debug, Clone, Default)]
pub struct AppointmentFilter {
    pub room: Option<RoomId>,
    /// Appointments ending after this.
    pub from: Option<Timestamp>,
    /// Appointments starting before this.
    pub to: Option<Timestamp>,
    pub status: Option<&'static str>,
    pub limit: usize,
}

/// Staff accounts and their signed-in sessions.
pub trait StaffStore: Send + Sync {
    fn insert_staff(&self, staff: &StaffRecord) -> Result<(), StoreError>;
    fn staff_by_username(&self, username: &str) -> Result<Option<StaffRecord>, StoreError>;
    fn staff_by_id(&self, id: StaffId) -> Result<Option<StaffRecord>, StoreError>;
    fn list_staff(&self) -> Result<Vec<StaffRecord>, StoreError>;
    /// Writes every mutable field of `staff`.
    fn update_staff(&self, staff: &StaffRecord) -> Result<(), StoreError>;
    fn insert_session(&self, token_hash: &[u8; 32], session: &SessionRecord) -> Result<(), StoreError>;
    fn session(&self, token_hash: &[u8; 32]) -> Result<Option<SessionRecord>, StoreError>;
    fn touch_session(&self, token_hash: &[u8; 32], now: i64) -> Result<(), StoreError>;
    fn delete_session(&self, token_hash: &[u8; 32]) -> Result<(), StoreError>;
    fn delete_sessions_of(&self, staff: StaffId) -> Result<(), StoreError>;
}

/// Rooms, appointments, join links and lockdowns.
pub trait ScheduleStore: Send + Sync {
    fn insert_room(&self, room: &Room, device_hash: &[u8; 32], now: i64) -> Result<(), StoreError>;
    fn room(&self, id: RoomId) -> Result<Option<Room>, StoreError>;
    fn rooms(&self) -> Result<Vec<Room>, StoreError>;
    fn room_by_device(&self, device_hash: &[u8; 32]) -> Result<Option<Room>, StoreError>;
    /// Replaces (Some) or revokes (None) a room's device credential; the old one is remembered
    /// as revoked.
    fn set_room_device(&self, id: RoomId, device_hash: Option<&[u8; 32]>, now: i64) -> Result<(), StoreError>;
    /// The room whose replaced or revoked credential this was.
    fn revoked_device(&self, device_hash: &[u8; 32]) -> Result<Option<RoomId>, StoreError>;

    /// Inserts the appointment unless a booked appointment of the same room overlaps it.
    fn insert_appointment(&self, appointment: &Appointment, now: i64) -> Result<(), StoreError>;
    /// Moves an appointment unless that makes it overlap another booking of its room.
    fn reschedule(&self, id: AppointmentId, start: Timestamp, end: Timestamp, now: i64) -> Result<(), StoreError>;
    fn set_status(&self, id: AppointmentId, status: &AppointmentStatus, now: i64) -> Result<(), StoreError>;
    fn appointment(&self, id: AppointmentId) -> Result<Option<Appointment>, StoreError>;
    fn appointments(&self, filter: &AppointmentFilter) -> Result<Vec<Appointment>, StoreError>;

    fn insert_link(&self, link: &LinkRecord) -> Result<(), StoreError>;
    fn link(&self, id: LinkId) -> Result<Option<LinkRecord>, StoreError>;
    fn links_for(&self, appointment: AppointmentId) -> Result<Vec<LinkRecord>, StoreError>;
    fn revoke_link(&self, id: LinkId, now: i64) -> Result<(), StoreError>;
    /// Binds the link to a browser if it is not bound yet; returns the binding that holds.
    fn bind_link(&self, id: LinkId, browser: &[u8; 32]) -> Result<Option<[u8; 32]>, StoreError>;

    fn insert_lockdown(&self, record: &LockdownRecord) -> Result<(), StoreError>;
    fn lift_lockdown(&self, id: uuid::Uuid, by: StaffId, now: i64) -> Result<bool, StoreError>;
    fn active_lockdowns(&self) -> Result<Vec<LockdownRecord>, StoreError>;
}

fn parse_id<T: std::str::FromStr>(text: String) -> rusqlite::Result<T> {
    text.parse().map_err(|_| rusqlite::Error::InvalidColumnType(0, "id".into(), rusqlite::types::Type::Text))
}

fn hash32(bytes: Option<Vec<u8>>) -> Option<[u8; 32]> {
    bytes.and_then(|b| b.try_into().ok())
}

fn ts(seconds: i64) -> Timestamp {
    Timestamp::from_second(seconds).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn staff_row(row: &Row<'_>) -> rusqlite::Result<StaffRecord> {
    let role: String = row.get("role")?;
    Ok(StaffRecord {
        id: parse_id(row.get("id")?)?,
        username: row.get("username")?,
        display_name: row.get("display_name")?,
        role: StaffRole::parse(&role)
            .ok_or_else(|| rusqlite::Error::InvalidColumnType(0, "role".into(), rusqlite::types::Type::Text))?,
        password_hash: row.get("password_hash")?,
        totp_secret: row.get("totp_secret")?,
        totp_last_step: row.get::<_, Option<i64>>("totp_last_step")?.map(|s| s as u64),
        disabled: row.get("disabled")?,
        failed_sign_ins: row.get::<_, i64>("failed_sign_ins")? as u32,
        first_failure_at: row.get("first_failure_at")?,
        locked_until: row.get("locked_until")?,
        created_at: row.get("created_at")?,
    })
}

fn room_row(row: &Row<'_>) -> rusqlite::Result<Room> {
    Ok(Room {
        id: parse_id(row.get("id")?)?,
        site: row.get("site")?,
        name: row.get("name")?,
        timezone: row.get("timezone")?,
        device_active: row.get::<_, Option<Vec<u8>>>("device_hash")?.is_some(),
    })
}

fn link_row(row: &Row<'_>) -> rusqlite::Result<LinkRecord> {
    let role: String = row.get("role")?;
    Ok(LinkRecord {
        id: parse_id(row.get("id")?)?,
        appointment: parse_id(row.get("appointment_id")?)?,
        participant: parse_id(row.get("participant_id")?)?,
        role: ParticipantRole::parse(&role)
            .ok_or_else(|| rusqlite::Error::InvalidColumnType(0, "role".into(), rusqlite::types::Type::Text))?,
        issued_at: row.get("issued_at")?,
        revoked_at: row.get("revoked_at")?,
        bound_browser: hash32(row.get("bound_browser")?),
    })
}

fn appointment_row(row: &Row<'_>) -> rusqlite::Result<Appointment> {
    let status: String = row.get("status")?;
    let reason: Option<String> = row.get("status_reason")?;
    let reason = reason.unwrap_or_default();
    Ok(Appointment {
        id: parse_id(row.get("id")?)?,
        room: parse_id(row.get("room_id")?)?,
        start: ts(row.get("start_at")?),
        end: ts(row.get("end_at")?),
        clinician_id: parse_id(row.get("clinician_id")?)?,
        clinician_name: row.get("clinician_name")?,
        clinician_email: row.get("clinician_email")?,
        patient_pseudonym: row.get("patient_pseudonym")?,
        escort_name: row.get("escort_name")?,
        guests: Vec::new(),
        status: match status.as_str() {
            "cancelled" => AppointmentStatus::Cancelled { reason },
            "ended" => AppointmentStatus::Ended,
            "terminated" => AppointmentStatus::Terminated { reason },
            _ => AppointmentStatus::Booked,
        },
        booked_by: parse_id(row.get("booked_by")?)?,
    })
}

fn lockdown_row(row: &Row<'_>) -> rusqlite::Result<LockdownRecord> {
    let scope: String = row.get("scope")?;
    let target: String = row.get("target")?;
    Ok(LockdownRecord {
        id: parse_id(row.get("id")?)?,
        lockdown: Lockdown {
            scope: if scope == "room" { LockdownScope::Room(parse_id(target)?) } else { LockdownScope::Site(target) },
            reason: row.get("reason")?,
            since: ts(row.get("placed_at")?),
        },
        placed_by: parse_id(row.get("placed_by")?)?,
    })
}

/// Maps a uniqueness violation to a conflict the caller can explain.
fn unique(e: rusqlite::Error, what: &str) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
            StoreError::Conflict(what.to_owned())
        }
        _ => StoreError::Sqlite(e),
    }
}

const STAFF_COLUMNS: &str = "id, username, display_name, role, password_hash, totp_secret, totp_last_step, disabled, \
                             failed_sign_ins, first_failure_at, locked_until, created_at";
const ROOM_COLUMNS: &str = "id, site, name, timezone, device_hash";
const LINK_COLUMNS: &str = "id, appointment_id, participant_id, role, issued_at, revoked_at, bound_browser";
const APPOINTMENT_COLUMNS: &str = "id, room_id, start_at, end_at, clinician_id, clinician_name, clinician_email, \
                                   patient_pseudonym, escort_name, status, status_reason, booked_by";

impl StaffStore for SqliteStore {
    fn insert_staff(&self, s: &StaffRecord) -> Result<(), StoreError> {
        self.lock()
            .execute(
                &format!(
                    "INSERT INTO staff ({STAFF_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
                ),
                params![
                    s.id.to_string(),
                    s.username,
                    s.display_name,
                    s.role.as_str(),
                    s.password_hash,
                    s.totp_secret,
                    s.totp_last_step.map(|v| v as i64),
                    s.disabled,
                    s.failed_sign_ins,
                    s.first_failure_at,
                    s.locked_until,
                    s.created_at
                ],
            )
            .map_err(|e| unique(e, "a staff account with that username already exists"))?;
        Ok(())
    }

    fn staff_by_username(&self, username: &str) -> Result<Option<StaffRecord>, StoreError> {
        let sql = format!("SELECT {STAFF_COLUMNS} FROM staff WHERE username = ?1");
        Ok(self.lock().query_row(&sql, [username], staff_row).optional()?)
    }

    fn staff_by_id(&self, id: StaffId) -> Result<Option<StaffRecord>, StoreError> {
        let sql = format!("SELECT {STAFF_COLUMNS} FROM staff WHERE id = ?1");
        Ok(self.lock().query_row(&sql, [id.to_string()], staff_row).optional()?)
    }

    fn list_staff(&self) -> Result<Vec<StaffRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!("SELECT {STAFF_COLUMNS} FROM staff ORDER BY username"))?;
        Ok(stmt.query_map([], staff_row)?.collect::<Result<_, _>>()?)
    }

    fn update_staff(&self, s: &StaffRecord) -> Result<(), StoreError> {
        self.lock().execute(
            "UPDATE staff SET display_name = ?2, role = ?3, password_hash = ?4, totp_secret = ?5, totp_last_step = ?6,
             disabled = ?7, failed_sign_ins = ?8, first_failure_at = ?9, locked_until = ?10 WHERE id = ?1",
            params![
                s.id.to_string(),
                s.display_name,
                s.role.as_str(),
                s.password_hash,
                s.totp_secret,
                s.totp_last_step.map(|v| v as i64),
                s.disabled,
                s.failed_sign_ins,
                s.first_failure_at,
                s.locked_until
            ],
        )?;
        Ok(())
    }

    fn insert_session(&self, token_hash: &[u8; 32], s: &SessionRecord) -> Result<(), StoreError> {
        self.lock().execute(
            "INSERT INTO staff_sessions (token_hash, staff_id, csrf_token, created_at, last_seen_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![token_hash.as_slice(), s.staff_id.to_string(), s.csrf_token, s.created_at, s.last_seen_at],
        )?;
        Ok(())
    }

    fn session(&self, token_hash: &[u8; 32]) -> Result<Option<SessionRecord>, StoreError> {
        Ok(self
            .lock()
            .query_row(
                "SELECT staff_id, csrf_token, created_at, last_seen_at FROM staff_sessions WHERE token_hash = ?1",
                [token_hash.as_slice()],
                |row| {
                    Ok(SessionRecord {
                        staff_id: parse_id(row.get(0)?)?,
                        csrf_token: row.get(1)?,
                        created_at: row.get(2)?,
                        last_seen_at: row.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    fn touch_session(&self, token_hash: &[u8; 32], now: i64) -> Result<(), StoreError> {
        self.lock().execute(
            "UPDATE staff_sessions SET last_seen_at = ?2 WHERE token_hash = ?1",
            params![token_hash.as_slice(), now],
        )?;
        Ok(())
    }

    fn delete_session(&self, token_hash: &[u8; 32]) -> Result<(), StoreError> {
        self.lock().execute("DELETE FROM staff_sessions WHERE token_hash = ?1", [token_hash.as_slice()])?;
        Ok(())
    }

    fn delete_sessions_of(&self, staff: StaffId) -> Result<(), StoreError> {
        self.lock().execute("DELETE FROM staff_sessions WHERE staff_id = ?1", [staff.to_string()])?;
        Ok(())
    }
}

/// The id of a booked appointment of `room` overlapping [start, end), other than `except`.
fn clash(
    conn: &rusqlite::Connection,
    room: RoomId,
    start: Timestamp,
    end: Timestamp,
    except: AppointmentId,
) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT id FROM appointments WHERE room_id = ?1 AND status = 'booked' AND start_at < ?3 AND end_at > ?2
             AND id != ?4 ORDER BY start_at LIMIT 1",
            params![room.to_string(), start.as_second(), end.as_second(), except.to_string()],
            |row| row.get(0),
        )
        .optional()?)
}

impl ScheduleStore for SqliteStore {
    fn insert_room(&self, room: &Room, device_hash: &[u8; 32], now: i64) -> Result<(), StoreError> {
        self.lock()
            .execute(
                "INSERT INTO rooms (id, site, name, timezone, device_hash, device_issued_at, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                params![room.id.to_string(), room.site, room.name, room.timezone, device_hash.as_slice(), now],
            )
            .map_err(|e| unique(e, "a room with that name is already enrolled at that site"))?;
        Ok(())
    }

    fn room(&self, id: RoomId) -> Result<Option<Room>, StoreError> {
        Ok(self
            .lock()
            .query_row(
                "SELECT id, site, name, timezone, device_hash FROM rooms WHERE id = ?1",
                [id.to_string()],
                room_row,
            )
            .optional()?)
    }

    fn rooms(&self) -> Result<Vec<Room>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!("SELECT {ROOM_COLUMNS} FROM rooms ORDER BY site, name"))?;
        Ok(stmt.query_map([], room_row)?.collect::<Result<_, _>>()?)
    }

    fn room_by_device(&self, device_hash: &[u8; 32]) -> Result<Option<Room>, StoreError> {
        Ok(self
            .lock()
            .query_row(
                &format!("SELECT {ROOM_COLUMNS} FROM rooms WHERE device_hash = ?1"),
                [device_hash.as_slice()],
                room_row,
            )
            .optional()?)
    }

    fn set_room_device(&self, id: RoomId, device_hash: Option<&[u8; 32]>, now: i64) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT OR IGNORE INTO revoked_devices (device_hash, room_id, revoked_at)
             SELECT device_hash, id, ?2 FROM rooms WHERE id = ?1 AND device_hash IS NOT NULL",
            params![id.to_string(), now],
        )?;
        tx.execute(
            "UPDATE rooms SET device_hash = ?2, device_issued_at = ?3 WHERE id = ?1",
            params![id.to_string(), device_hash.map(|h| h.as_slice()), device_hash.map(|_| now)],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn revoked_device(&self, device_hash: &[u8; 32]) -> Result<Option<RoomId>, StoreError> {
        let room: Option<String> = self
            .lock()
            .query_row("SELECT room_id FROM revoked_devices WHERE device_hash = ?1", [device_hash.as_slice()], |r| {
                r.get(0)
            })
            .optional()?;
        Ok(room.map(parse_id).transpose()?)
    }

    fn insert_appointment(&self, a: &Appointment, now: i64) -> Result<(), StoreError> {
        let mut conn = self.lock();
        // IMMEDIATE: the overlap check and the insert must see the same bookings.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if let Some(other) = clash(&tx, a.room, a.start, a.end, a.id)? {
            return Err(StoreError::Clash(other));
        }
        tx.execute(
            &format!(
                "INSERT INTO appointments ({APPOINTMENT_COLUMNS}, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, NULL, ?11, ?12, ?12)"
            ),
            params![
                a.id.to_string(),
                a.room.to_string(),
                a.start.as_second(),
                a.end.as_second(),
                a.clinician_id.to_string(),
                a.clinician_name,
                a.clinician_email,
                a.patient_pseudonym,
                a.escort_name,
                a.status.code(),
                a.booked_by.to_string(),
                now
            ],
        )?;
        for (position, g) in a.guests.iter().enumerate() {
            tx.execute(
                "INSERT INTO appointment_guests (id, appointment_id, display_name, kind, position) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![g.id.to_string(), a.id.to_string(), g.display_name, g.kind.as_str(), position as i64],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn reschedule(&self, id: AppointmentId, start: Timestamp, end: Timestamp, now: i64) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let room: String =
            tx.query_row("SELECT room_id FROM appointments WHERE id = ?1", [id.to_string()], |r| r.get(0))?;
        let room: RoomId = parse_id(room)?;
        if let Some(other) = clash(&tx, room, start, end, id)? {
            return Err(StoreError::Clash(other));
        }
        tx.execute(
            "UPDATE appointments SET start_at = ?2, end_at = ?3, updated_at = ?4 WHERE id = ?1",
            params![id.to_string(), start.as_second(), end.as_second(), now],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn set_status(&self, id: AppointmentId, status: &AppointmentStatus, now: i64) -> Result<(), StoreError> {
        let reason = match status {
            AppointmentStatus::Cancelled { reason } | AppointmentStatus::Terminated { reason } => Some(reason.as_str()),
            _ => None,
        };
        self.lock().execute(
            // Only a booked appointment changes status: an ending never overwrites a cancellation.
            "UPDATE appointments SET status = ?2, status_reason = ?3, updated_at = ?4 WHERE id = ?1 AND status = 'booked'",
            params![id.to_string(), status.code(), reason, now],
        )?;
        Ok(())
    }

    fn appointment(&self, id: AppointmentId) -> Result<Option<Appointment>, StoreError> {
        let conn = self.lock();
        let sql = format!("SELECT {APPOINTMENT_COLUMNS} FROM appointments WHERE id = ?1");
        let Some(mut appointment) = conn.query_row(&sql, [id.to_string()], appointment_row).optional()? else {
            return Ok(None);
        };
        appointment.guests = guests(&conn, id)?;
        Ok(Some(appointment))
    }

    fn appointments(&self, f: &AppointmentFilter) -> Result<Vec<Appointment>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT {APPOINTMENT_COLUMNS} FROM appointments
             WHERE (?1 IS NULL OR room_id = ?1) AND (?2 IS NULL OR end_at > ?2) AND (?3 IS NULL OR start_at < ?3)
             AND (?4 IS NULL OR status = ?4) ORDER BY start_at, id LIMIT ?5"
        ))?;
        let rows = stmt.query_map(
            params![
                f.room.map(|r| r.to_string()),
                f.from.map(|t| t.as_second()),
                f.to.map(|t| t.as_second()),
                f.status,
                f.limit.max(1) as i64
            ],
            appointment_row,
        )?;
        let mut out: Vec<Appointment> = rows.collect::<Result<_, _>>()?;
        for a in &mut out {
            a.guests = guests(&conn, a.id)?;
        }
        Ok(out)
    }

    fn insert_link(&self, l: &LinkRecord) -> Result<(), StoreError> {
        self.lock().execute(
            "INSERT INTO join_links (id, appointment_id, participant_id, role, issued_at, revoked_at, bound_browser)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                l.id.to_string(),
                l.appointment.to_string(),
                l.participant.to_string(),
                l.role.as_str(),
                l.issued_at,
                l.revoked_at,
                l.bound_browser.as_ref().map(|b| b.as_slice())
            ],
        )?;
        Ok(())
    }

    fn link(&self, id: LinkId) -> Result<Option<LinkRecord>, StoreError> {
        Ok(self
            .lock()
            .query_row(&format!("SELECT {LINK_COLUMNS} FROM join_links WHERE id = ?1"), [id.to_string()], link_row)
            .optional()?)
    }

    fn links_for(&self, appointment: AppointmentId) -> Result<Vec<LinkRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT {LINK_COLUMNS} FROM join_links WHERE appointment_id = ?1 ORDER BY issued_at, id"
        ))?;
        Ok(stmt.query_map([appointment.to_string()], link_row)?.collect::<Result<_, _>>()?)
    }

    fn revoke_link(&self, id: LinkId, now: i64) -> Result<(), StoreError> {
        self.lock().execute(
            "UPDATE join_links SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            params![id.to_string(), now],
        )?;
        Ok(())
    }

    fn bind_link(&self, id: LinkId, browser: &[u8; 32]) -> Result<Option<[u8; 32]>, StoreError> {
        let conn = self.lock();
        // One statement, so two browsers racing for a fresh link cannot both win.
        conn.execute(
            "UPDATE join_links SET bound_browser = ?2 WHERE id = ?1 AND bound_browser IS NULL",
            params![id.to_string(), browser.as_slice()],
        )?;
        let bound: Option<Option<Vec<u8>>> = conn
            .query_row("SELECT bound_browser FROM join_links WHERE id = ?1", [id.to_string()], |r| r.get(0))
            .optional()?;
        Ok(bound.and_then(hash32))
    }

    fn insert_lockdown(&self, r: &LockdownRecord) -> Result<(), StoreError> {
        let (scope, target) = match &r.lockdown.scope {
            LockdownScope::Room(id) => ("room", id.to_string()),
            LockdownScope::Site(site) => ("site", site.clone()),
        };
        self.lock().execute(
            "INSERT INTO lockdowns (id, scope, target, reason, placed_by, placed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                r.id.to_string(),
                scope,
                target,
                r.lockdown.reason,
                r.placed_by.to_string(),
                r.lockdown.since.as_second()
            ],
        )?;
        Ok(())
    }

    fn lift_lockdown(&self, id: uuid::Uuid, by: StaffId, now: i64) -> Result<bool, StoreError> {
        let changed = self.lock().execute(
            "UPDATE lockdowns SET lifted_by = ?2, lifted_at = ?3 WHERE id = ?1 AND lifted_at IS NULL",
            params![id.to_string(), by.to_string(), now],
        )?;
        Ok(changed == 1)
    }

    fn active_lockdowns(&self) -> Result<Vec<LockdownRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT id, scope, target, reason, placed_by, placed_at FROM lockdowns WHERE lifted_at IS NULL ORDER BY placed_at",
        )?;
        Ok(stmt.query_map([], lockdown_row)?.collect::<Result<_, _>>()?)
    }
}

fn guests(conn: &rusqlite::Connection, appointment: AppointmentId) -> Result<Vec<Guest>, StoreError> {
    let mut stmt = conn
        .prepare("SELECT id, display_name, kind FROM appointment_guests WHERE appointment_id = ?1 ORDER BY position")?;
    let rows = stmt.query_map([appointment.to_string()], |row| {
        let kind: String = row.get(2)?;
        Ok(Guest {
            id: parse_id(row.get(0)?)?,
            display_name: row.get(1)?,
            kind: GuestKind::parse(&kind).unwrap_or(GuestKind::Clinician),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
