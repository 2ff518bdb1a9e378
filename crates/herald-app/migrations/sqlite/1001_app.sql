-- The app's data: users and their credentials, workspaces and members, the three
-- collections, and the outbox that carries each change's event to the hub's log.
-- Ids are UUIDs (v7, so they sort by creation); times are RFC 3339 text in UTC.
--
-- The same schema exists for PostgreSQL (`migrations/postgres/`), and one set of queries
-- reads both through sqlx's Any driver. So: emails are stored lower-case (the app folds
-- them) instead of compared with COLLATE NOCASE, and booleans are INTEGER 0 or 1, because
-- the Any driver refuses columns declared BOOLEAN in SQLite (`Flag` decodes both).

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    password_hash TEXT NOT NULL,
    created_at    TEXT NOT NULL
);

-- Browser sessions. Only a SHA-256 of the cookie value is stored.
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

-- Bearer tokens for scripts and backends. Only a SHA-256 of the token is stored.
CREATE TABLE api_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    can_notify INTEGER NOT NULL CHECK (can_notify IN (0, 1)),
    created_at INTEGER NOT NULL
);

CREATE TABLE workspaces (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE members (
    workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role         TEXT NOT NULL CHECK (role IN ('owner', 'member')),
    added_at     TEXT NOT NULL,
    -- The event that gave the member access (members:added, workspaces:created): a
    -- stream does not replay what came before it. NULL for the first workspace.
    joined_event TEXT,
    PRIMARY KEY (workspace_id, user_id)
);
CREATE INDEX members_user ON members (user_id);

CREATE TABLE todos (
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    title        TEXT NOT NULL,
    done         INTEGER NOT NULL CHECK (done IN (0, 1)),
    created_by   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE INDEX todos_workspace ON todos (workspace_id, id);

CREATE TABLE channels (
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    is_default   INTEGER NOT NULL CHECK (is_default IN (0, 1)),
    created_by   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE INDEX channels_workspace ON channels (workspace_id, id);

CREATE TABLE notes (
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    content      TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE INDEX notes_workspace ON notes (workspace_id, created_by, id);
-- Admins list every note of a workspace.
CREATE INDEX notes_workspace_all ON notes (workspace_id, id);

-- Events written in the same transaction as their change, waiting to be sequenced into the
-- hub's log. A row leaves only once the log holds its event (`uid`).
CREATE TABLE outbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    uid        TEXT NOT NULL UNIQUE,
    topics     TEXT NOT NULL,
    type       TEXT NOT NULL,
    data       TEXT NOT NULL,
    -- JSON array of topics whose streams end after this event (revocations), or ''.
    closes     TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
