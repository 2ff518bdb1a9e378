-- Accounts that an admin can switch off, and API tokens that can be listed, revoked and
-- made to expire.

-- 0 for a deactivated user: no login, and their sessions and tokens stop working.
ALTER TABLE users ADD COLUMN active INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1));

-- A token's public id: what lists show and revocation names, never the secret or its hash.
-- Tokens made before it get a random UUID (version 4).
ALTER TABLE api_tokens ADD COLUMN id TEXT;
UPDATE api_tokens SET id = lower(
    hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2)
    || '-' || substr('89ab', 1 + abs(random()) % 4, 1) || substr(hex(randomblob(2)), 2)
    || '-' || hex(randomblob(6))
);
CREATE UNIQUE INDEX api_tokens_id ON api_tokens (id);
CREATE INDEX api_tokens_user ON api_tokens (user_id);
-- Unix seconds after which the token is refused; NULL: it does not expire.
ALTER TABLE api_tokens ADD COLUMN expires_at INTEGER;
-- Unix seconds of its last use, to the minute; NULL: never used.
ALTER TABLE api_tokens ADD COLUMN last_used_at INTEGER;
