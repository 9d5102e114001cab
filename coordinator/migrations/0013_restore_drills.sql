-- lifeboat catalog, version 13: restore drills. A drill is a restore job (kind 'restore')
-- into a new scratch database, checked, timed and dropped by the agent; jobs.drill_of names
-- the target whose backup it drills. Each drill is recorded in `drills`, which outlives the
-- job row (history pruning removes old jobs; health and alerts need the last drill). A drill
-- schedule names the target it restores into (schedules.drill_into; '' for other kinds and
-- for a drill into the target itself).

ALTER TABLE jobs ADD COLUMN drill_of TEXT NOT NULL DEFAULT '';

ALTER TABLE schedules ADD COLUMN drill_into TEXT NOT NULL DEFAULT '';

CREATE TABLE drills (
    job_id         TEXT PRIMARY KEY,
    -- The target whose backup is drilled.
    target         TEXT NOT NULL,
    backup_id      TEXT NOT NULL,
    -- The target restored into.
    drill_target   TEXT NOT NULL,
    database_name  TEXT NOT NULL,
    requested_by   TEXT NOT NULL,
    created_at_ms  INTEGER NOT NULL,
    -- '' until the job ends.
    outcome        TEXT NOT NULL DEFAULT ''
                   CHECK (outcome IN ('', 'succeeded', 'failed', 'cancelled')),
    -- Job start to a restored, checked database; only for a drill that succeeded.
    rto_ms         INTEGER CHECK (rto_ms IS NULL OR rto_ms >= 0),
    finished_at_ms INTEGER,
    error          TEXT NOT NULL DEFAULT ''
);

CREATE INDEX drills_target_finished ON drills (target, finished_at_ms);
