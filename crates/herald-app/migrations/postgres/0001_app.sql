-- The app's data: users and their credentials, workspaces and members, the three
-- collections, and the outbox that carries each change's event to the hub's log.
-- Ids are UUIDs (v7, so they sort by creation); times are RFC 3339 text in UTC.
--
-- The same schema as `migrations/sqlite/`, in PostgreSQL's types, read by the same queries
-- through sqlx's Any driver: TEXT, BIGINT (i64) and BOOLEAN only. Emails are stored
-- lower-case (the app folds them). Text that is sorted or compared by range (ids, names,
-- emails, times) uses the "C" collation, so it orders byte by byte exactly as in SQLite,
-- whatever the cluster's locale.

CREATE TABLE users (
    id            TEXT COLLATE "C" PRIMARY KEY,
    email         TEXT COLLATE "C" NOT NULL UNIQUE,
    name          TEXT COLLATE "C" NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    password_hash TEXT NOT NULL,
    created_at    TEXT COLLATE "C" NOT NULL
);

-- Browser sessions. Only a SHA-256 of the cookie value is stored.
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

-- Bearer tokens for scripts and backends. Only a SHA-256 of the token is stored.
CREATE TABLE api_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    can_notify BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE workspaces (
    id         TEXT COLLATE "C" PRIMARY KEY,
    name       TEXT COLLATE "C" NOT NULL,
    created_by TEXT COLLATE "C" NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL,
    updated_at TEXT COLLATE "C" NOT NULL
);

CREATE TABLE members (
    workspace_id TEXT COLLATE "C" NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id      TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role         TEXT NOT NULL CHECK (role IN ('owner', 'member')),
    added_at     TEXT COLLATE "C" NOT NULL,
    -- The event that gave the member access (members:added, workspaces:created): a
    -- stream does not replay what came before it. NULL for the first workspace.
    joined_event TEXT,
    PRIMARY KEY (workspace_id, user_id)
);
CREATE INDEX members_user ON members (user_id);

CREATE TABLE todos (
    id           TEXT COLLATE "C" PRIMARY KEY,
    workspace_id TEXT COLLATE "C" NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    title        TEXT NOT NULL,
    done         BOOLEAN NOT NULL,
    created_by   TEXT COLLATE "C" NOT NULL,
    created_at   TEXT COLLATE "C" NOT NULL,
    updated_at   TEXT COLLATE "C" NOT NULL
);
CREATE INDEX todos_workspace ON todos (workspace_id, id);

CREATE TABLE channels (
    id           TEXT COLLATE "C" PRIMARY KEY,
    workspace_id TEXT COLLATE "C" NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name         TEXT COLLATE "C" NOT NULL,
    is_default   BOOLEAN NOT NULL,
    created_by   TEXT COLLATE "C" NOT NULL,
    created_at   TEXT COLLATE "C" NOT NULL,
    updated_at   TEXT COLLATE "C" NOT NULL
);
CREATE INDEX channels_workspace ON channels (workspace_id, id);

CREATE TABLE notes (
    id           TEXT COLLATE "C" PRIMARY KEY,
    workspace_id TEXT COLLATE "C" NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    content      TEXT NOT NULL,
    created_by   TEXT COLLATE "C" NOT NULL,
    created_at   TEXT COLLATE "C" NOT NULL,
    updated_at   TEXT COLLATE "C" NOT NULL
);
CREATE INDEX notes_workspace ON notes (workspace_id, created_by, id);
-- Admins list every note of a workspace.
CREATE INDEX notes_workspace_all ON notes (workspace_id, id);

-- Events written in the same transaction as their change, waiting to be sequenced into the
-- hub's log. A row leaves only once the log holds its event (`uid`). Rows are numbered
-- under the app's write lock, so `seq` orders them as their changes committed.
CREATE TABLE outbox (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    uid        TEXT NOT NULL UNIQUE,
    topics     TEXT NOT NULL,
    type       TEXT NOT NULL,
    data       TEXT NOT NULL,
    -- JSON array of topics whose streams end after this event (revocations), or ''.
    closes     TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
