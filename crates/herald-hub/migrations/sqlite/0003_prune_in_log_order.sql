-- Retention by age deletes from the oldest update on, up to the first one young enough to
-- keep, walking the log in `seq` order: no index on created_at is needed, and none is
-- written to on every append.
DROP INDEX IF EXISTS updates_created_at;
