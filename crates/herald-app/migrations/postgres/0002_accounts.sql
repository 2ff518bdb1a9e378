-- Accounts that an admin can switch off, and API tokens that can be listed, revoked and
-- made to expire. The same as `migrations/sqlite/0002_accounts.sql`.

-- FALSE for a deactivated user: no login, and their sessions and tokens stop working.
ALTER TABLE users ADD COLUMN active BOOLEAN NOT NULL DEFAULT TRUE;

-- A token's public id: what lists show and revocation names, never the secret or its hash.
-- Tokens made before it get a random UUID.
ALTER TABLE api_tokens ADD COLUMN id TEXT COLLATE "C";
UPDATE api_tokens SET id = gen_random_uuid()::text;
CREATE UNIQUE INDEX api_tokens_id ON api_tokens (id);
CREATE INDEX api_tokens_user ON api_tokens (user_id);
-- Unix seconds after which the token is refused; NULL: it does not expire.
ALTER TABLE api_tokens ADD COLUMN expires_at BIGINT;
-- Unix seconds of its last use, to the minute; NULL: never used.
ALTER TABLE api_tokens ADD COLUMN last_used_at BIGINT;
