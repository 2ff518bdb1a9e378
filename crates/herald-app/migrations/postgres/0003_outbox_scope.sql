-- The scope of the change that stored an outbox row: its keys (`ws:<id>`, `user:<id>`),
-- each preceded and followed by a space, so that `scope LIKE '% ws:<id> %'` finds the rows
-- of a key. A row is published only under the write locks of its keys, after the older rows
-- that share one. '' for rows stored before scopes were recorded: those go before any
-- change. The same as `migrations/sqlite/1003_outbox_scope.sql`.
ALTER TABLE outbox ADD COLUMN scope TEXT NOT NULL DEFAULT '';
