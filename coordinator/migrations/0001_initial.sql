-- lifeboat catalog, version 1: agents, targets, jobs and backups.
-- Times are Unix milliseconds. Enum columns hold the lowercase names used in the code.

CREATE TABLE agents (
    name                TEXT PRIMARY KEY NOT NULL,
    environment         TEXT NOT NULL,
    version             TEXT NOT NULL,
    last_seen_ms        INTEGER NOT NULL,
    clock_skew_ms       INTEGER NOT NULL DEFAULT 0,
    max_concurrent_jobs INTEGER NOT NULL DEFAULT 1
);

CREATE TABLE targets (
    -- "ENV/NAME"
    full_name     TEXT PRIMARY KEY NOT NULL,
    environment   TEXT NOT NULL,
    name          TEXT NOT NULL,
    agent         TEXT NOT NULL REFERENCES agents (name),
    engine        TEXT NOT NULL CHECK (engine IN ('postgres', 'mysql')),
    provider      TEXT NOT NULL,
    repository    TEXT NOT NULL,
    database_name TEXT NOT NULL,
    UNIQUE (environment, name)
);

CREATE INDEX targets_agent ON targets (agent);

CREATE TABLE jobs (
    id                    TEXT PRIMARY KEY NOT NULL,
    kind                  TEXT NOT NULL CHECK (kind IN ('backup', 'restore', 'verify')),
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

CREATE INDEX jobs_state ON jobs (state);
CREATE INDEX jobs_agent_state ON jobs (agent, state);
CREATE INDEX jobs_created ON jobs (created_at_ms);

-- At most one unfinished backup per target, enforced by the database itself.
CREATE UNIQUE INDEX jobs_one_active_backup ON jobs (target)
    WHERE kind = 'backup' AND state IN ('queued', 'running');

CREATE TABLE backups (
    backup_id         TEXT PRIMARY KEY NOT NULL,
    target            TEXT NOT NULL REFERENCES targets (full_name),
    environment       TEXT NOT NULL,
    agent             TEXT NOT NULL,
    repository        TEXT NOT NULL,
    engine            TEXT NOT NULL CHECK (engine IN ('postgres', 'mysql')),
    provider          TEXT NOT NULL,
    database_name     TEXT NOT NULL,
    server_version    TEXT NOT NULL,
    system_identifier TEXT NOT NULL,
    dump_tool         TEXT NOT NULL,
    dump_tool_version TEXT NOT NULL,
    format            TEXT NOT NULL,
    compression       TEXT NOT NULL,
    compression_level INTEGER NOT NULL,
    raw_size          INTEGER NOT NULL CHECK (raw_size > 0),
    stored_size       INTEGER NOT NULL CHECK (stored_size > 0),
    raw_sha256        TEXT NOT NULL,
    stored_sha256     TEXT NOT NULL,
    started_at_ms     INTEGER NOT NULL,
    finished_at_ms    INTEGER NOT NULL,
    -- JSON array of {"schema", "table", "rows"}
    row_counts        TEXT NOT NULL,
    data_key          TEXT NOT NULL,
    manifest_key      TEXT NOT NULL,
    verify_status     TEXT NOT NULL
                      CHECK (verify_status IN ('unverified', 'ok', 'corrupt', 'missing')),
    verified_at_ms    INTEGER,
    verify_detail     TEXT NOT NULL DEFAULT '',
    job_id            TEXT NOT NULL UNIQUE REFERENCES jobs (id)
);

CREATE INDEX backups_target_finished ON backups (target, finished_at_ms);
CREATE INDEX backups_finished ON backups (finished_at_ms);
