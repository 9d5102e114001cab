-- lifeboat catalog, version 11: the job kind export (`lifeboat backup export ID --to PATH`):
-- the file asked for on the agent's host and, once the export succeeded, the size and SHA-256
-- of what was written.
--
-- Like versions 2 and 4, this runs outside sqlx's transaction: changing the kind CHECK
-- constraint means rebuilding the jobs table with foreign keys off. Every statement is safe to
-- run again. A migration that adds columns to jobs before this one must add them here too.

PRAGMA foreign_keys = OFF;

BEGIN IMMEDIATE;

DROP TABLE IF EXISTS jobs_v11;

CREATE TABLE jobs_v11 (
    id                       TEXT PRIMARY KEY NOT NULL,
    kind                     TEXT NOT NULL
                             CHECK (kind IN ('backup', 'restore', 'verify', 'delete', 'list',
                                             'check', 'pin', 'export')),
    state                    TEXT NOT NULL
                             CHECK (state IN ('queued', 'running', 'succeeded', 'failed',
                                              'cancelled')),
    target                   TEXT NOT NULL REFERENCES targets (full_name),
    agent                    TEXT NOT NULL,
    backup_id                TEXT NOT NULL,
    requested_by             TEXT NOT NULL,
    created_at_ms            INTEGER NOT NULL,
    dispatched_at_ms         INTEGER,
    started_at_ms            INTEGER,
    finished_at_ms           INTEGER,
    error                    TEXT NOT NULL DEFAULT '',
    progress_raw_bytes       INTEGER NOT NULL DEFAULT 0,
    progress_stored_bytes    INTEGER NOT NULL DEFAULT 0,
    progress_phase           TEXT NOT NULL DEFAULT '',
    detail                   TEXT NOT NULL DEFAULT '',
    database_name            TEXT NOT NULL DEFAULT '',
    clean                    INTEGER NOT NULL DEFAULT 0,
    owners                   TEXT NOT NULL DEFAULT 'auto'
                             CHECK (owners IN ('auto', 'keep', 'drop')),
    include_provider_schemas INTEGER NOT NULL DEFAULT 0,
    report                   TEXT NOT NULL DEFAULT '',
    data_dir                 TEXT NOT NULL DEFAULT '',
    recovery_target          TEXT NOT NULL DEFAULT '',
    recovery_action          TEXT NOT NULL DEFAULT '',
    start_port               INTEGER NOT NULL DEFAULT 0,
    -- Export: the file asked for on the agent's host; on success the file written, its size
    -- and SHA-256.
    export_path              TEXT NOT NULL DEFAULT '',
    export_raw_bytes         INTEGER NOT NULL DEFAULT 0,
    export_raw_sha256        TEXT NOT NULL DEFAULT ''
);

INSERT INTO jobs_v11 (id, kind, state, target, agent, backup_id, requested_by, created_at_ms,
    dispatched_at_ms, started_at_ms, finished_at_ms, error, progress_raw_bytes,
    progress_stored_bytes, progress_phase, detail, database_name, clean, owners,
    include_provider_schemas, report, data_dir, recovery_target, recovery_action, start_port)
SELECT id, kind, state, target, agent, backup_id, requested_by, created_at_ms,
    dispatched_at_ms, started_at_ms, finished_at_ms, error, progress_raw_bytes,
    progress_stored_bytes, progress_phase, detail, database_name, clean, owners,
    include_provider_schemas, report, data_dir, recovery_target, recovery_action, start_port
FROM jobs;

DROP TABLE jobs;

ALTER TABLE jobs_v11 RENAME TO jobs;

CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state);
CREATE INDEX IF NOT EXISTS jobs_agent_state ON jobs (agent, state);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at_ms);
CREATE INDEX IF NOT EXISTS jobs_target_kind_state_finished
    ON jobs (target, kind, state, finished_at_ms);

-- At most one unfinished backup per target, enforced by the database itself.
CREATE UNIQUE INDEX IF NOT EXISTS jobs_one_active_backup ON jobs (target)
    WHERE kind = 'backup' AND state IN ('queued', 'running');

-- At most one unfinished delete per backup.
CREATE UNIQUE INDEX IF NOT EXISTS jobs_one_active_delete ON jobs (backup_id)
    WHERE kind = 'delete' AND state IN ('queued', 'running');

COMMIT;

PRAGMA foreign_keys = ON;
