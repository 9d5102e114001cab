-- lifeboat catalog, version 2: schedules, scheduler runs, pinned backups, deletions, and the
-- job kinds delete and list.
--
-- This migration runs outside sqlx's transaction: rebuilding the jobs table (SQLite cannot
-- change a CHECK constraint in place) needs foreign keys off, which SQLite only allows outside
-- a transaction. Every statement is safe to run again, so a crash before the migration is
-- recorded only repeats it.

PRAGMA foreign_keys = OFF;

BEGIN IMMEDIATE;

-- A target's own schedule (environment defaults live in the coordinator config).
CREATE TABLE IF NOT EXISTS schedules (
    target        TEXT PRIMARY KEY NOT NULL REFERENCES targets (full_name),
    cron          TEXT NOT NULL,
    -- IANA name; '' is UTC.
    timezone      TEXT NOT NULL,
    jitter_secs   INTEGER NOT NULL DEFAULT 0 CHECK (jitter_secs >= 0),
    kind          TEXT NOT NULL CHECK (kind IN ('backup')),
    updated_by    TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL
);

-- The scheduler's memory per target, for own and default schedules alike: occurrences at or
-- before cursor_ms are handled. Moved compare-and-set together with the run it records.
CREATE TABLE IF NOT EXISTS schedule_state (
    target       TEXT PRIMARY KEY NOT NULL,
    cursor_ms    INTEGER NOT NULL,
    paused       INTEGER NOT NULL DEFAULT 0,
    paused_by    TEXT NOT NULL DEFAULT '',
    paused_at_ms INTEGER
);

-- Every scheduler decision: a job started, or an occurrence skipped and why.
CREATE TABLE IF NOT EXISTS schedule_runs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    target          TEXT NOT NULL,
    scheduled_at_ms INTEGER NOT NULL,
    decided_at_ms   INTEGER NOT NULL,
    outcome         TEXT NOT NULL CHECK (outcome IN ('started', 'skipped')),
    job_id          TEXT,
    reason          TEXT NOT NULL DEFAULT '',
    -- One decision per occurrence, whatever restarts or second coordinators do.
    UNIQUE (target, scheduled_at_ms)
);

CREATE INDEX IF NOT EXISTS schedule_runs_target_decided ON schedule_runs (target, decided_at_ms);

-- Pinned backups are never deleted by retention.
CREATE TABLE IF NOT EXISTS backup_pins (
    backup_id    TEXT PRIMARY KEY NOT NULL REFERENCES backups (backup_id),
    pinned_by    TEXT NOT NULL,
    pinned_at_ms INTEGER NOT NULL,
    reason       TEXT NOT NULL
);

-- Backups marked for deletion (first phase); the row goes, with the backup's, once the agent
-- reports the delete done.
CREATE TABLE IF NOT EXISTS backup_deletions (
    backup_id    TEXT PRIMARY KEY NOT NULL REFERENCES backups (backup_id),
    marked_by    TEXT NOT NULL,
    marked_at_ms INTEGER NOT NULL
);

-- jobs: allow the kinds delete and list (the 12-step table change from the SQLite manual).
DROP TABLE IF EXISTS jobs_v2;

CREATE TABLE jobs_v2 (
    id                    TEXT PRIMARY KEY NOT NULL,
    kind                  TEXT NOT NULL
                          CHECK (kind IN ('backup', 'restore', 'verify', 'delete', 'list')),
    state                 TEXT NOT NULL
                          CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    target                TEXT NOT NULL REFERENCES targets (full_name),
    agent                 TEXT NOT NULL,
    backup_id             TEXT NOT NULL,
    requested_by          TEXT NOT NULL,
    created_at_ms         INTEGER NOT NULL,
    dispatched_at_ms      INTEGER,
    started_at_ms         INTEGER,
    finished_at_ms        INTEGER,
    error                 TEXT NOT NULL DEFAULT '',
    progress_raw_bytes    INTEGER NOT NULL DEFAULT 0,
    progress_stored_bytes INTEGER NOT NULL DEFAULT 0,
    progress_phase        TEXT NOT NULL DEFAULT '',
    detail                TEXT NOT NULL DEFAULT '',
    database_name         TEXT NOT NULL DEFAULT '',
    clean                 INTEGER NOT NULL DEFAULT 0
);

INSERT INTO jobs_v2 (id, kind, state, target, agent, backup_id, requested_by, created_at_ms,
    dispatched_at_ms, started_at_ms, finished_at_ms, error, progress_raw_bytes,
    progress_stored_bytes, progress_phase, detail, database_name, clean)
SELECT id, kind, state, target, agent, backup_id, requested_by, created_at_ms,
    dispatched_at_ms, started_at_ms, finished_at_ms, error, progress_raw_bytes,
    progress_stored_bytes, progress_phase, detail, database_name, clean
FROM jobs;

DROP TABLE jobs;

ALTER TABLE jobs_v2 RENAME TO jobs;

CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state);
CREATE INDEX IF NOT EXISTS jobs_agent_state ON jobs (agent, state);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at_ms);

-- At most one unfinished backup per target, enforced by the database itself.
CREATE UNIQUE INDEX IF NOT EXISTS jobs_one_active_backup ON jobs (target)
    WHERE kind = 'backup' AND state IN ('queued', 'running');

-- At most one unfinished delete per backup.
CREATE UNIQUE INDEX IF NOT EXISTS jobs_one_active_delete ON jobs (backup_id)
    WHERE kind = 'delete' AND state IN ('queued', 'running');

COMMIT;

PRAGMA foreign_keys = ON;
