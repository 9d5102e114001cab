-- lifeboat catalog, version 5: backups a catalog rebuild recorded (from a repository listing,
-- i.e. from what an agent said). Retention keeps them but does not count them toward the keep
-- rules until a verify of them passes (verify status ok).
CREATE TABLE IF NOT EXISTS backup_rebuilt (
    backup_id     TEXT PRIMARY KEY NOT NULL REFERENCES backups (backup_id),
    -- The admin who ran the rebuild, and the agent whose listing it came from.
    rebuilt_by    TEXT NOT NULL,
    listed_by     TEXT NOT NULL,
    rebuilt_at_ms INTEGER NOT NULL
);
