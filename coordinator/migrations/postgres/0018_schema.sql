-- The PostgreSQL catalog: the SQLite catalog's schema as of its migration 18, in one step.
-- Later migrations are added for both backends under the same number.
--
-- Conventions shared with the SQLite catalog (the code runs the same SQL on both):
--   * integers are BIGINT (milliseconds since the epoch, sizes, counts);
--   * flags are 0/1 BIGINT, not BOOLEAN;
--   * text compares and sorts byte-wise (COLLATE "C"), as SQLite's BINARY collation does, so
--     lists and keyset pages have the same order on both backends.

CREATE TABLE agents (
    name                TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    environment         TEXT COLLATE "C" NOT NULL,
    version             TEXT NOT NULL,
    last_seen_ms        BIGINT NOT NULL,
    clock_skew_ms       BIGINT NOT NULL DEFAULT 0,
    max_concurrent_jobs BIGINT NOT NULL DEFAULT 1
);

CREATE TABLE targets (
    -- "ENV/NAME"
    full_name     TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    environment   TEXT COLLATE "C" NOT NULL,
    name          TEXT COLLATE "C" NOT NULL,
    agent         TEXT COLLATE "C" NOT NULL REFERENCES agents (name),
    engine        TEXT NOT NULL CHECK (engine IN ('postgres', 'mysql')),
    provider      TEXT NOT NULL,
    repository    TEXT COLLATE "C" NOT NULL,
    database_name TEXT COLLATE "C" NOT NULL,
    copy_to       TEXT NOT NULL DEFAULT '',
    encryption    TEXT NOT NULL DEFAULT '',
    UNIQUE (environment, name)
);
CREATE INDEX targets_agent ON targets (agent);

CREATE TABLE jobs (
    id                       TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    kind                     TEXT COLLATE "C" NOT NULL
                             CHECK (kind IN ('backup', 'restore', 'verify', 'delete', 'list',
                                             'check', 'pin', 'export', 'copy', 'rotate_keys')),
    state                    TEXT COLLATE "C" NOT NULL
                             CHECK (state IN ('queued', 'running', 'succeeded', 'failed',
                                              'cancelled')),
    target                   TEXT COLLATE "C" NOT NULL REFERENCES targets (full_name),
    agent                    TEXT COLLATE "C" NOT NULL,
    backup_id                TEXT COLLATE "C" NOT NULL,
    requested_by             TEXT COLLATE "C" NOT NULL,
    created_at_ms            BIGINT NOT NULL,
    dispatched_at_ms         BIGINT,
    started_at_ms            BIGINT,
    finished_at_ms           BIGINT,
    error                    TEXT NOT NULL DEFAULT '',
    progress_raw_bytes       BIGINT NOT NULL DEFAULT 0,
    progress_stored_bytes    BIGINT NOT NULL DEFAULT 0,
    progress_phase           TEXT NOT NULL DEFAULT '',
    detail                   TEXT NOT NULL DEFAULT '',
    database_name            TEXT COLLATE "C" NOT NULL DEFAULT '',
    clean                    BIGINT NOT NULL DEFAULT 0,
    owners                   TEXT NOT NULL DEFAULT 'auto'
                             CHECK (owners IN ('auto', 'keep', 'drop')),
    include_provider_schemas BIGINT NOT NULL DEFAULT 0,
    report                   TEXT NOT NULL DEFAULT '',
    data_dir                 TEXT NOT NULL DEFAULT '',
    recovery_target          TEXT NOT NULL DEFAULT '',
    recovery_action          TEXT NOT NULL DEFAULT '',
    start_port               BIGINT NOT NULL DEFAULT 0,
    export_path              TEXT NOT NULL DEFAULT '',
    export_raw_bytes         BIGINT NOT NULL DEFAULT 0,
    export_raw_sha256        TEXT NOT NULL DEFAULT '',
    restore_tables           TEXT NOT NULL DEFAULT '',
    restore_schemas          TEXT NOT NULL DEFAULT '',
    into_schema              TEXT NOT NULL DEFAULT '',
    drill_of                 TEXT COLLATE "C" NOT NULL DEFAULT '',
    globals                  TEXT NOT NULL DEFAULT '',
    allow_superuser          BIGINT NOT NULL DEFAULT 0,
    repository               TEXT COLLATE "C" NOT NULL DEFAULT '',
    key_rotation             TEXT NOT NULL DEFAULT '',
    decrypt                  BIGINT NOT NULL DEFAULT 0,
    restore_jobs             BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX jobs_state ON jobs (state);
CREATE INDEX jobs_agent_state ON jobs (agent, state);
CREATE INDEX jobs_target_kind_state_finished ON jobs (target, kind, state, finished_at_ms);
CREATE UNIQUE INDEX jobs_one_active_backup ON jobs (target)
    WHERE kind = 'backup' AND state IN ('queued', 'running');
CREATE UNIQUE INDEX jobs_one_active_delete ON jobs (backup_id, repository)
    WHERE kind = 'delete' AND state IN ('queued', 'running');
CREATE UNIQUE INDEX jobs_one_active_rotation ON jobs (target)
    WHERE kind = 'rotate_keys' AND state IN ('queued', 'running');
CREATE UNIQUE INDEX jobs_one_active_copy ON jobs (backup_id, repository)
    WHERE kind = 'copy' AND state IN ('queued', 'running');
CREATE INDEX jobs_target_created_id ON jobs (target, created_at_ms, id);
CREATE INDEX jobs_created_id ON jobs (created_at_ms, id);
CREATE INDEX jobs_unfinished ON jobs (state, created_at_ms, id)
    WHERE state IN ('queued', 'running');

CREATE TABLE backups (
    backup_id         TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    target            TEXT COLLATE "C" NOT NULL REFERENCES targets (full_name),
    environment       TEXT COLLATE "C" NOT NULL,
    agent             TEXT COLLATE "C" NOT NULL,
    repository        TEXT COLLATE "C" NOT NULL,
    engine            TEXT NOT NULL CHECK (engine IN ('postgres', 'mysql')),
    provider          TEXT NOT NULL,
    database_name     TEXT COLLATE "C" NOT NULL,
    server_version    TEXT NOT NULL,
    system_identifier TEXT NOT NULL,
    dump_tool         TEXT NOT NULL,
    dump_tool_version TEXT NOT NULL,
    format            TEXT NOT NULL,
    compression       TEXT NOT NULL,
    compression_level BIGINT NOT NULL,
    raw_size          BIGINT NOT NULL CHECK (raw_size > 0),
    stored_size       BIGINT NOT NULL CHECK (stored_size > 0),
    raw_sha256        TEXT NOT NULL,
    stored_sha256     TEXT NOT NULL,
    started_at_ms     BIGINT NOT NULL,
    finished_at_ms    BIGINT NOT NULL,
    -- JSON array of {"schema", "table", "rows"}
    row_counts        TEXT NOT NULL,
    data_key          TEXT NOT NULL,
    manifest_key      TEXT NOT NULL,
    verify_status     TEXT NOT NULL
                      CHECK (verify_status IN ('unverified', 'ok', 'corrupt', 'missing')),
    verified_at_ms    BIGINT,
    verify_detail     TEXT NOT NULL DEFAULT '',
    job_id            TEXT COLLATE "C" NOT NULL UNIQUE REFERENCES jobs (id),
    wal_start         TEXT NOT NULL DEFAULT '',
    globals           TEXT NOT NULL DEFAULT '',
    encryption        TEXT,
    recorded_at_ms    BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX backups_target_finished_id ON backups (target, finished_at_ms, backup_id);
CREATE INDEX backups_finished_id ON backups (finished_at_ms, backup_id);
CREATE INDEX backups_target_recorded ON backups (target, recorded_at_ms, backup_id);
CREATE INDEX backups_target_repository ON backups (target, repository);

CREATE TABLE backup_pins (
    backup_id    TEXT COLLATE "C" PRIMARY KEY NOT NULL REFERENCES backups (backup_id),
    pinned_by    TEXT NOT NULL,
    pinned_at_ms BIGINT NOT NULL,
    reason       TEXT NOT NULL
);

CREATE TABLE backup_deletions (
    backup_id    TEXT COLLATE "C" PRIMARY KEY NOT NULL REFERENCES backups (backup_id),
    marked_by    TEXT NOT NULL,
    marked_at_ms BIGINT NOT NULL
);

CREATE TABLE backup_rebuilt (
    backup_id     TEXT COLLATE "C" PRIMARY KEY NOT NULL REFERENCES backups (backup_id),
    rebuilt_by    TEXT NOT NULL,
    listed_by     TEXT NOT NULL,
    rebuilt_at_ms BIGINT NOT NULL
);

CREATE TABLE backup_copies (
    backup_id      TEXT COLLATE "C" NOT NULL REFERENCES backups (backup_id) ON DELETE CASCADE,
    repository     TEXT COLLATE "C" NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('copying', 'stored', 'deleting')),
    job_id         TEXT COLLATE "C" NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    stored_at_ms   BIGINT,
    verify_status  TEXT NOT NULL DEFAULT 'unverified'
                   CHECK (verify_status IN ('unverified', 'ok', 'corrupt', 'missing')),
    verified_at_ms BIGINT,
    verify_detail  TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (backup_id, repository)
);
CREATE INDEX backup_copies_repository ON backup_copies (repository, state);

CREATE TABLE alert_incidents (
    id              BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    kind            TEXT COLLATE "C" NOT NULL,
    subject         TEXT COLLATE "C" NOT NULL,
    environment     TEXT COLLATE "C" NOT NULL DEFAULT '',
    severity        TEXT NOT NULL CHECK (severity IN ('warning', 'critical')),
    summary         TEXT NOT NULL,
    detail          TEXT NOT NULL DEFAULT '',
    opened_at_ms    BIGINT NOT NULL,
    resolved_at_ms  BIGINT,
    resolve_summary TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX alert_incidents_one_open ON alert_incidents (kind, subject)
    WHERE resolved_at_ms IS NULL;
CREATE INDEX alert_incidents_opened ON alert_incidents (opened_at_ms);

CREATE TABLE alert_notifications (
    incident_id     BIGINT NOT NULL REFERENCES alert_incidents (id),
    webhook         TEXT COLLATE "C" NOT NULL,
    event           TEXT NOT NULL CHECK (event IN ('firing', 'resolved')),
    created_at_ms   BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL,
    delivered_at_ms BIGINT,
    last_error      TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (incident_id, webhook, event)
);
CREATE INDEX alert_notifications_pending ON alert_notifications (next_attempt_ms)
    WHERE delivered_at_ms IS NULL;

CREATE TABLE target_first_seen (
    target        TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    first_seen_ms BIGINT NOT NULL
);

CREATE TABLE audit_log (
    id      BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    at_ms   BIGINT NOT NULL,
    actor   TEXT COLLATE "C" NOT NULL,
    role    TEXT NOT NULL DEFAULT '',
    action  TEXT COLLATE "C" NOT NULL,
    object  TEXT COLLATE "C" NOT NULL DEFAULT '',
    outcome TEXT NOT NULL CHECK (outcome IN ('ok', 'refused', 'denied')),
    reason  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_at ON audit_log (at_ms);
CREATE INDEX audit_log_actor ON audit_log (actor, at_ms);

CREATE TABLE schedules (
    target        TEXT COLLATE "C" NOT NULL REFERENCES targets (full_name),
    kind          TEXT COLLATE "C" NOT NULL CHECK (kind IN ('backup', 'verify', 'drill')),
    cron          TEXT NOT NULL,
    -- IANA name; '' is UTC.
    timezone      TEXT NOT NULL,
    jitter_secs   BIGINT NOT NULL DEFAULT 0 CHECK (jitter_secs >= 0),
    cover_secs    BIGINT NOT NULL DEFAULT 0 CHECK (cover_secs >= 0),
    updated_by    TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    drill_into    TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (target, kind)
);

CREATE TABLE schedule_state (
    target       TEXT COLLATE "C" NOT NULL,
    kind         TEXT COLLATE "C" NOT NULL,
    cursor_ms    BIGINT NOT NULL,
    paused       BIGINT NOT NULL DEFAULT 0,
    paused_by    TEXT NOT NULL DEFAULT '',
    paused_at_ms BIGINT,
    PRIMARY KEY (target, kind)
);

CREATE TABLE schedule_runs (
    id              BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    target          TEXT COLLATE "C" NOT NULL,
    kind            TEXT COLLATE "C" NOT NULL DEFAULT 'backup',
    scheduled_at_ms BIGINT NOT NULL,
    decided_at_ms   BIGINT NOT NULL,
    outcome         TEXT NOT NULL CHECK (outcome IN ('started', 'skipped')),
    job_id          TEXT COLLATE "C",
    reason          TEXT NOT NULL DEFAULT '',
    -- One decision per occurrence, whatever restarts or second coordinators do.
    UNIQUE (target, kind, scheduled_at_ms)
);
CREATE INDEX schedule_runs_target_decided ON schedule_runs (target, kind, decided_at_ms);

CREATE TABLE drills (
    job_id         TEXT COLLATE "C" PRIMARY KEY,
    target         TEXT COLLATE "C" NOT NULL,
    backup_id      TEXT COLLATE "C" NOT NULL,
    drill_target   TEXT COLLATE "C" NOT NULL,
    database_name  TEXT NOT NULL,
    requested_by   TEXT NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    outcome        TEXT NOT NULL DEFAULT ''
                   CHECK (outcome IN ('', 'succeeded', 'failed', 'cancelled')),
    rto_ms         BIGINT CHECK (rto_ms IS NULL OR rto_ms >= 0),
    finished_at_ms BIGINT,
    error          TEXT NOT NULL DEFAULT ''
);
CREATE INDEX drills_target_finished ON drills (target, finished_at_ms);
