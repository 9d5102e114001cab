-- lifeboat catalog, version 8: a physical base backup records the WAL segment its replay
-- starts in (empty for logical backups and for base backups recorded before version 8), so a
-- prune's plan can name the archived WAL that goes with the backups it deletes.
ALTER TABLE backups ADD COLUMN wal_start TEXT NOT NULL DEFAULT '';
