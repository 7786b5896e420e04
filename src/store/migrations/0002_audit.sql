-- The audit log. `body` holds each record's canonical JSON exactly as hashed; `hash` is its
-- RFC 6962 leaf hash. The other columns are copies of fields in `body`, kept only to search by;
-- verification never trusts them.
CREATE TABLE audit_records (
    seq         INTEGER PRIMARY KEY NOT NULL CHECK (seq >= 0),
    body        TEXT NOT NULL,
    hash        BLOB NOT NULL CHECK (length(hash) = 32),
    recorded    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    actor       TEXT,
    appointment TEXT,
    room        TEXT
) STRICT;
CREATE INDEX audit_records_recorded ON audit_records (recorded);
CREATE INDEX audit_records_kind ON audit_records (kind, seq);
CREATE INDEX audit_records_actor ON audit_records (actor, seq);
CREATE INDEX audit_records_appointment ON audit_records (appointment, seq);
CREATE INDEX audit_records_room ON audit_records (room, seq);

-- Signed checkpoints (C2SP signed notes) in the order they were made.
CREATE TABLE audit_checkpoints (
    id        INTEGER PRIMARY KEY NOT NULL,
    tree_size INTEGER NOT NULL,
    note      TEXT NOT NULL,
    signed    TEXT NOT NULL
) STRICT;

-- Append-only, enforced by the database itself.
CREATE TRIGGER audit_records_no_update BEFORE UPDATE ON audit_records
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER audit_records_no_delete BEFORE DELETE ON audit_records
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;

-- Bearer tokens for the audit API, issued from the CLI. Only a hash of each token is kept.
CREATE TABLE api_tokens (
    id      TEXT PRIMARY KEY NOT NULL,
    hash    BLOB NOT NULL UNIQUE,
    label   TEXT NOT NULL,
    created TEXT NOT NULL
) STRICT;
