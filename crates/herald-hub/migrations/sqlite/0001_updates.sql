-- The hub's event log: one row per acknowledged update, in publish order.
CREATE TABLE IF NOT EXISTS updates (
    -- Position in the log. AUTOINCREMENT keeps it monotonic even after every row is pruned.
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The update's id as subscribers see it (publisher-supplied or a generated urn:uuid).
    uid        TEXT    NOT NULL,
    -- JSON array of topic strings.
    topics     TEXT    NOT NULL,
    data       TEXT    NOT NULL,
    private    INTEGER NOT NULL,
    type       TEXT,
    retry      INTEGER,
    -- Unix time in milliseconds, for age-based retention.
    created_at INTEGER NOT NULL
);
-- Last-Event-ID lookups: the latest use of an id.
CREATE INDEX IF NOT EXISTS updates_uid ON updates (uid, seq);
CREATE INDEX IF NOT EXISTS updates_created_at ON updates (created_at);
