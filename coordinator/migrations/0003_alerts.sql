-- lifeboat catalog, version 3: alert incidents and their notifications, when each target was
-- first seen (the grace period of a target without a backup), and the audit log of operator
-- actions. Times are Unix milliseconds.

-- One row per incident. At most one open incident per (kind, subject): the partial unique index
-- makes opening the same incident twice impossible, even with two coordinators.
CREATE TABLE alert_incidents (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    -- backup_failed, restore_failed, verify_failed, rpo_breach, agent_offline, size_anomaly
    kind            TEXT NOT NULL,
    -- a target ("ENV/NAME") or an agent name
    subject         TEXT NOT NULL,
    environment     TEXT NOT NULL DEFAULT '',
    severity        TEXT NOT NULL CHECK (severity IN ('warning', 'critical')),
    summary         TEXT NOT NULL,
    detail          TEXT NOT NULL DEFAULT '',
    opened_at_ms    INTEGER NOT NULL,
    resolved_at_ms  INTEGER,
    resolve_summary TEXT NOT NULL DEFAULT ''
);

CREATE UNIQUE INDEX alert_incidents_one_open ON alert_incidents (kind, subject)
    WHERE resolved_at_ms IS NULL;
CREATE INDEX alert_incidents_opened ON alert_incidents (opened_at_ms);

-- The outbox: one row per (incident, webhook, event), so each webhook gets exactly one
-- "firing" and one "resolved" notification per incident, delivered (and retried) after the
-- incident change is committed.
CREATE TABLE alert_notifications (
    incident_id     INTEGER NOT NULL REFERENCES alert_incidents (id),
    webhook         TEXT NOT NULL,
    event           TEXT NOT NULL CHECK (event IN ('firing', 'resolved')),
    created_at_ms   INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    delivered_at_ms INTEGER,
    last_error      TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (incident_id, webhook, event)
);

CREATE INDEX alert_notifications_pending ON alert_notifications (next_attempt_ms)
    WHERE delivered_at_ms IS NULL;

-- When the coordinator first saw each target; a target without any backup is judged against
-- its RPO from then.
CREATE TABLE target_first_seen (
    target        TEXT PRIMARY KEY NOT NULL,
    first_seen_ms INTEGER NOT NULL
);

-- Every operator action: who (certificate identity), what, on what, and how it ended.
CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms   INTEGER NOT NULL,
    actor   TEXT NOT NULL,
    role    TEXT NOT NULL DEFAULT '',
    action  TEXT NOT NULL,
    object  TEXT NOT NULL DEFAULT '',
    outcome TEXT NOT NULL CHECK (outcome IN ('ok', 'refused', 'denied')),
    reason  TEXT NOT NULL DEFAULT ''
);

CREATE INDEX audit_log_at ON audit_log (at_ms);
CREATE INDEX audit_log_actor ON audit_log (actor, at_ms);

-- The latest job of each kind and outcome per target, for health and alerts.
CREATE INDEX jobs_target_kind_state_finished ON jobs (target, kind, state, finished_at_ms);
