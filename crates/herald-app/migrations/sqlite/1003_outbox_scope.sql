-- The scope of the change that stored an outbox row: its keys (`ws:<id>`, `user:<id>`),
-- each preceded and followed by a space, so that `scope LIKE '% ws:<id> %'` finds the rows
-- of a key. '' for rows stored before scopes were recorded. Numbered from 1001 on, like
-- every app migration in the log's file (see `db.rs`).
ALTER TABLE outbox ADD COLUMN scope TEXT NOT NULL DEFAULT '';
