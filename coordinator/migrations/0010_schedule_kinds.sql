-- lifeboat catalog, version 10: a target may have one schedule of each kind (backup, verify,
-- drill), so schedules, the scheduler's cursors and its recorded runs are keyed by target and
-- kind. A verify schedule has a coverage period: each kept backup is read back at least that
-- often. Existing rows are backup schedules.

CREATE TABLE schedules_v10 (
    target        TEXT NOT NULL REFERENCES targets (full_name),
    kind          TEXT NOT NULL CHECK (kind IN ('backup', 'verify', 'drill')),
    cron          TEXT NOT NULL,
    -- IANA name; '' is UTC.
    timezone      TEXT NOT NULL,
    jitter_secs   INTEGER NOT NULL DEFAULT 0 CHECK (jitter_secs >= 0),
    -- verify: every kept backup is verified at least once per this many seconds.
    cover_secs    INTEGER NOT NULL DEFAULT 0 CHECK (cover_secs >= 0),
    updated_by    TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (target, kind)
);

INSERT INTO schedules_v10 (target, kind, cron, timezone, jitter_secs, updated_by, updated_at_ms)
SELECT target, kind, cron, timezone, jitter_secs, updated_by, updated_at_ms FROM schedules;

DROP TABLE schedules;

ALTER TABLE schedules_v10 RENAME TO schedules;

CREATE TABLE schedule_state_v10 (
    target       TEXT NOT NULL,
    kind         TEXT NOT NULL,
    cursor_ms    INTEGER NOT NULL,
    paused       INTEGER NOT NULL DEFAULT 0,
    paused_by    TEXT NOT NULL DEFAULT '',
    paused_at_ms INTEGER,
    PRIMARY KEY (target, kind)
);

INSERT INTO schedule_state_v10 (target, kind, cursor_ms, paused, paused_by, paused_at_ms)
SELECT target, 'backup', cursor_ms, paused, paused_by, paused_at_ms FROM schedule_state;

DROP TABLE schedule_state;

ALTER TABLE schedule_state_v10 RENAME TO schedule_state;

CREATE TABLE schedule_runs_v10 (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    target          TEXT NOT NULL,
    kind            TEXT NOT NULL DEFAULT 'backup',
    scheduled_at_ms INTEGER NOT NULL,
    decided_at_ms   INTEGER NOT NULL,
    outcome         TEXT NOT NULL CHECK (outcome IN ('started', 'skipped')),
    -- The first job the run started (a verify run may start several; the reason lists them).
    job_id          TEXT,
    reason          TEXT NOT NULL DEFAULT '',
    -- One decision per occurrence, whatever restarts or second coordinators do.
    UNIQUE (target, kind, scheduled_at_ms)
);

INSERT INTO schedule_runs_v10 (id, target, kind, scheduled_at_ms, decided_at_ms, outcome, job_id,
    reason)
SELECT id, target, 'backup', scheduled_at_ms, decided_at_ms, outcome, job_id, reason
FROM schedule_runs;

DROP TABLE schedule_runs;

ALTER TABLE schedule_runs_v10 RENAME TO schedule_runs;

CREATE INDEX IF NOT EXISTS schedule_runs_target_decided
    ON schedule_runs (target, kind, decided_at_ms);
