-- The gateway's own facts about this data folder.
CREATE TABLE gateway_meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) STRICT;
