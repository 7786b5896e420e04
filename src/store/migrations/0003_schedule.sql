-- Staff accounts. Passwords are argon2id PHC strings; TOTP secrets are base32.
CREATE TABLE staff (
    id               TEXT PRIMARY KEY NOT NULL,
    username         TEXT NOT NULL UNIQUE,
    display_name     TEXT NOT NULL,
    role             TEXT NOT NULL CHECK (role IN ('scheduler', 'security', 'admin')),
    password_hash    TEXT NOT NULL,
    totp_secret      TEXT,
    totp_last_step   INTEGER,
    disabled         INTEGER NOT NULL DEFAULT 0,
    failed_sign_ins  INTEGER NOT NULL DEFAULT 0,
    first_failure_at INTEGER,
    locked_until     INTEGER,
    created_at       INTEGER NOT NULL
) STRICT;

-- Signed-in staff sessions, by the SHA-256 of the cookie value.
CREATE TABLE staff_sessions (
    token_hash   BLOB PRIMARY KEY NOT NULL,
    staff_id     TEXT NOT NULL REFERENCES staff (id),
    csrf_token   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL
) STRICT;
CREATE INDEX staff_sessions_staff ON staff_sessions (staff_id);

CREATE TABLE rooms (
    id                TEXT PRIMARY KEY NOT NULL,
    site              TEXT NOT NULL,
    name              TEXT NOT NULL,
    timezone          TEXT NOT NULL,
    device_hash       BLOB UNIQUE,
    device_issued_at  INTEGER,
    created_at        INTEGER NOT NULL,
    UNIQUE (site, name)
) STRICT;

-- Times are Unix seconds, UTC.
CREATE TABLE appointments (
    id                TEXT PRIMARY KEY NOT NULL,
    room_id           TEXT NOT NULL REFERENCES rooms (id),
    start_at          INTEGER NOT NULL,
    end_at            INTEGER NOT NULL CHECK (end_at > start_at),
    clinician_id      TEXT NOT NULL,
    clinician_name    TEXT NOT NULL,
    clinician_email   TEXT NOT NULL,
    patient_pseudonym TEXT NOT NULL,
    escort_name       TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('booked', 'cancelled', 'ended', 'terminated')),
    status_reason     TEXT,
    booked_by         TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
) STRICT;
CREATE INDEX appointments_room_time ON appointments (room_id, start_at);
CREATE INDEX appointments_time ON appointments (start_at);

CREATE TABLE appointment_guests (
    id             TEXT PRIMARY KEY NOT NULL,
    appointment_id TEXT NOT NULL REFERENCES appointments (id),
    display_name   TEXT NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('interpreter', 'clinician')),
    position       INTEGER NOT NULL
) STRICT;
CREATE INDEX appointment_guests_appointment ON appointment_guests (appointment_id);

-- Join links. The signed token is never stored; `bound_browser` is the SHA-256 of the browser
-- cookie of the first browser that used the link.
CREATE TABLE join_links (
    id             TEXT PRIMARY KEY NOT NULL,
    appointment_id TEXT NOT NULL REFERENCES appointments (id),
    participant_id TEXT NOT NULL,
    role           TEXT NOT NULL CHECK (role IN ('clinician', 'guest')),
    issued_at      INTEGER NOT NULL,
    revoked_at     INTEGER,
    bound_browser  BLOB
) STRICT;
CREATE INDEX join_links_appointment ON join_links (appointment_id);

CREATE TABLE lockdowns (
    id        TEXT PRIMARY KEY NOT NULL,
    scope     TEXT NOT NULL CHECK (scope IN ('room', 'site')),
    target    TEXT NOT NULL,
    reason    TEXT NOT NULL,
    placed_by TEXT NOT NULL,
    placed_at INTEGER NOT NULL,
    lifted_by TEXT,
    lifted_at INTEGER
) STRICT;

-- Device credentials that were replaced or revoked, so a kiosk still holding one is told so.
CREATE TABLE revoked_devices (
    device_hash BLOB PRIMARY KEY NOT NULL,
    room_id     TEXT NOT NULL REFERENCES rooms (id),
    revoked_at  INTEGER NOT NULL
) STRICT;
