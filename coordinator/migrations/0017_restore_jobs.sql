-- lifeboat catalog, version 17: a logical PostgreSQL restore may run pg_restore with several
-- jobs (0: the target's default).
ALTER TABLE jobs ADD COLUMN restore_jobs INTEGER NOT NULL DEFAULT 0;
