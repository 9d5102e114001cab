-- Keyset pagination of `drill list` (newest first, ties broken by the job id), with and
-- without the drilled target's filter: each page is an index range, not a sort of every drill.
CREATE INDEX IF NOT EXISTS drills_target_created_id ON drills (target, created_at_ms, job_id);
CREATE INDEX IF NOT EXISTS drills_created_id ON drills (created_at_ms, job_id);

-- A cancel asked of a coordinator standing by (ADR 0038): the operator who asked; the active
-- coordinator, which holds the agents' sessions, carries it out. '' when none was asked.
ALTER TABLE jobs ADD COLUMN cancel_requested_by TEXT NOT NULL DEFAULT '';
