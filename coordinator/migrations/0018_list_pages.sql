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

-- When the coordinator recorded each backup (its job's end, on the coordinator's clock; the
-- backup's own end where no job is left), kept as a column so that each target's most recent
-- backups are an index lookup for health instead of a ranking of every backup.
ALTER TABLE backups ADD COLUMN recorded_at_ms INTEGER NOT NULL DEFAULT 0;
UPDATE backups SET recorded_at_ms = COALESCE(
    (SELECT j.finished_at_ms FROM jobs j WHERE j.id = backups.job_id), finished_at_ms);
CREATE INDEX IF NOT EXISTS backups_target_recorded ON backups (target, recorded_at_ms, backup_id);
-- Backups that live on in another repository than their target's (health's copies).
CREATE INDEX IF NOT EXISTS backups_target_repository ON backups (target, repository);

-- The unfinished jobs (queued or running) are few among millions of finished ones. Once
-- SQLite has statistics (ANALYZE) saying that nearly every job has the same state, it stops
-- using jobs_state and walks a whole time index instead; this partial index holds only the
-- unfinished jobs, so every query of them stays a lookup whatever the statistics say.
CREATE INDEX IF NOT EXISTS jobs_unfinished ON jobs (state, created_at_ms, id)
    WHERE state IN ('queued', 'running');
