-- lifeboat catalog, version 15: off-site copies. The job kind copy (a backup copied to another
-- repository of its agent), the repository a job works on when it is not the backup's own,
-- each target's copy_to, and the copies themselves with their own verify state.
--
-- Like versions 2, 4 and 11, this runs outside sqlx's transaction: changing the kind CHECK
-- constraint means rebuilding the jobs table with foreign keys off. The ALTER TABLE on targets
-- is not repeatable; the whole file runs in one transaction, so it either all applied or none.
-- A migration that adds columns to jobs before this one must add them here too.

PRAGMA foreign_keys = OFF;

BEGIN IMMEDIATE;

DROP TABLE IF EXISTS jobs_v15;

CREATE TABLE jobs_v15 (
    id                       TEXT PRIMARY KEY NOT NULL,
    kind                     TEXT NOT NULL
                             CHECK (kind IN ('backup', 'restore', 'verify', 'delete', 'list',
                                             'check', 'pin', 'export', 'copy')),
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
    export_raw_sha256        TEXT NOT NULL DEFAULT '',
    restore_tables           TEXT NOT NULL DEFAULT '',
    restore_schemas          TEXT NOT NULL DEFAULT '',
    into_schema              TEXT NOT NULL DEFAULT '',
    drill_of                 TEXT NOT NULL DEFAULT '',
    globals                  TEXT NOT NULL DEFAULT '',
    allow_superuser          INTEGER NOT NULL DEFAULT 0,
    -- The repository the job reads or writes when it is not the backup's own: a copy's
    -- destination; the copy a restore, verify, export or delete works on. '' otherwise.
    repository               TEXT NOT NULL DEFAULT ''
);

INSERT INTO jobs_v15 (id, kind, state, target, agent, backup_id, requested_by, created_at_ms,
    dispatched_at_ms, started_at_ms, finished_at_ms, error, progress_raw_bytes,
    progress_stored_bytes, progress_phase, detail, database_name, clean, owners,
    include_provider_schemas, report, data_dir, recovery_target, recovery_action, start_port,
    export_path, export_raw_bytes, export_raw_sha256, restore_tables, restore_schemas,
    into_schema, drill_of, globals, allow_superuser)
SELECT id, kind, state, target, agent, backup_id, requested_by, created_at_ms,
    dispatched_at_ms, started_at_ms, finished_at_ms, error, progress_raw_bytes,
    progress_stored_bytes, progress_phase, detail, database_name, clean, owners,
    include_provider_schemas, report, data_dir, recovery_target, recovery_action, start_port,
    export_path, export_raw_bytes, export_raw_sha256, restore_tables, restore_schemas,
    into_schema, drill_of, globals, allow_superuser
FROM jobs;

DROP TABLE jobs;

ALTER TABLE jobs_v15 RENAME TO jobs;

CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state);
CREATE INDEX IF NOT EXISTS jobs_agent_state ON jobs (agent, state);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at_ms);
CREATE INDEX IF NOT EXISTS jobs_target_kind_state_finished
    ON jobs (target, kind, state, finished_at_ms);

-- At most one unfinished backup per target, enforced by the database itself.
CREATE UNIQUE INDEX IF NOT EXISTS jobs_one_active_backup ON jobs (target)
    WHERE kind = 'backup' AND state IN ('queued', 'running');

-- At most one unfinished delete per backup and repository (the backup's own: '').
CREATE UNIQUE INDEX IF NOT EXISTS jobs_one_active_delete ON jobs (backup_id, repository)
    WHERE kind = 'delete' AND state IN ('queued', 'running');

-- At most one unfinished copy per backup and destination.
CREATE UNIQUE INDEX IF NOT EXISTS jobs_one_active_copy ON jobs (backup_id, repository)
    WHERE kind = 'copy' AND state IN ('queued', 'running');

-- A target's copy_to (its agent's config): repository names, one per line.
ALTER TABLE targets ADD COLUMN copy_to TEXT NOT NULL DEFAULT '';

-- Each copy of a backup in another repository. The backup's own repository is
-- backups.repository; a copy has its own verify state and its own retention.
CREATE TABLE IF NOT EXISTS backup_copies (
    backup_id      TEXT NOT NULL REFERENCES backups (backup_id) ON DELETE CASCADE,
    repository     TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('copying', 'stored', 'deleting')),
    -- The copy job that made it.
    job_id         TEXT NOT NULL,
    created_at_ms  INTEGER NOT NULL,
    stored_at_ms   INTEGER,
    verify_status  TEXT NOT NULL DEFAULT 'unverified'
                   CHECK (verify_status IN ('unverified', 'ok', 'corrupt', 'missing')),
    verified_at_ms INTEGER,
    verify_detail  TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (backup_id, repository)
);

CREATE INDEX IF NOT EXISTS backup_copies_repository ON backup_copies (repository, state);

COMMIT;

PRAGMA foreign_keys = ON;
