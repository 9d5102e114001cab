-- Keyset pagination of `backup list` and `jobs list` (newest first, ties broken by id): one
-- index per order, with and without the target filter. They replace the indexes that only
-- led with the time.
CREATE INDEX IF NOT EXISTS backups_target_finished_id ON backups (target, finished_at_ms, backup_id);
CREATE INDEX IF NOT EXISTS backups_finished_id ON backups (finished_at_ms, backup_id);
DROP INDEX IF EXISTS backups_target_finished;
DROP INDEX IF EXISTS backups_finished;
CREATE INDEX IF NOT EXISTS jobs_target_created_id ON jobs (target, created_at_ms, id);
CREATE INDEX IF NOT EXISTS jobs_created_id ON jobs (created_at_ms, id);
DROP INDEX IF EXISTS jobs_created;
