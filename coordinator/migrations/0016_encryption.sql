-- lifeboat catalog, version 16: client-side encryption (age). The job kind rotate_keys (a
-- target's key objects re-encrypted to other recipients), each backup's encryption (its key
-- object and the recipients and key ids it is encrypted to; NULL: stored in plaintext) and
-- each target's encryption as its agent declares it.
--
-- Like version 15, this runs outside sqlx's transaction: changing the kind CHECK constraint
-- means rebuilding the jobs table with foreign keys off. The whole file runs in one
-- transaction, so it either all applied or none.
-- A migration that adds columns to jobs before this one must add them here too.

PRAGMA foreign_keys = OFF;

BEGIN IMMEDIATE;

DROP TABLE IF EXISTS jobs_v16;

CREATE TABLE jobs_v16 (
    id                       TEXT PRIMARY KEY NOT NULL,
    kind                     TEXT NOT NULL
                             CHECK (kind IN ('backup', 'restore', 'verify', 'delete', 'list',
                                             'check', 'pin', 'export', 'copy', 'rotate_keys')),
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
    repository               TEXT NOT NULL DEFAULT '',
    -- A key rotation: {"add": [...], "remove": [...], "dry_run": bool} as JSON; '' otherwise.
    key_rotation             TEXT NOT NULL DEFAULT '',
    -- A verify that must decrypt an encrypted backup (`backup verify --decrypt`).
    decrypt                  INTEGER NOT NULL DEFAULT 0
);

INSERT INTO jobs_v16 (id, kind, state, target, agent, backup_id, requested_by, created_at_ms,
    dispatched_at_ms, started_at_ms, finished_at_ms, error, progress_raw_bytes,
    progress_stored_bytes, progress_phase, detail, database_name, clean, owners,
    include_provider_schemas, report, data_dir, recovery_target, recovery_action, start_port,
    export_path, export_raw_bytes, export_raw_sha256, restore_tables, restore_schemas,
    into_schema, drill_of, globals, allow_superuser, repository)
SELECT id, kind, state, target, agent, backup_id, requested_by, created_at_ms,
    dispatched_at_ms, started_at_ms, finished_at_ms, error, progress_raw_bytes,
    progress_stored_bytes, progress_phase, detail, database_name, clean, owners,
    include_provider_schemas, report, data_dir, recovery_target, recovery_action, start_port,
    export_path, export_raw_bytes, export_raw_sha256, restore_tables, restore_schemas,
    into_schema, drill_of, globals, allow_superuser, repository
FROM jobs;

DROP TABLE jobs;

ALTER TABLE jobs_v16 RENAME TO jobs;

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

-- At most one unfinished key rotation per target.
CREATE UNIQUE INDEX IF NOT EXISTS jobs_one_active_rotation ON jobs (target)
    WHERE kind = 'rotate_keys' AND state IN ('queued', 'running');

-- At most one unfinished copy per backup and destination.
CREATE UNIQUE INDEX IF NOT EXISTS jobs_one_active_copy ON jobs (backup_id, repository)
    WHERE kind = 'copy' AND state IN ('queued', 'running');

-- A backup's encryption: {"key_object": "...", "recipients": [...], "key_ids": [...]} as JSON;
-- NULL for a backup stored in plaintext.
ALTER TABLE backups ADD COLUMN encryption TEXT;

-- A target's encryption as its agent declares it: {"recipients": [...], "key_ids": [...],
-- "can_decrypt": bool} as JSON; '' when its backups are not encrypted.
ALTER TABLE targets ADD COLUMN encryption TEXT NOT NULL DEFAULT '';

COMMIT;

PRAGMA foreign_keys = ON;
