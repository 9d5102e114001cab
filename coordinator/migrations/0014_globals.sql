-- lifeboat catalog, version 14: a logical backup records the cluster's globals captured beside
-- it (roles, memberships), or why they were not captured (JSON; empty for backups recorded
-- before version 14 and for physical base backups); a restore may recreate them first
-- ('with') or alone ('only'), and may be allowed to create SUPERUSER roles.
ALTER TABLE backups ADD COLUMN globals TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN globals TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN allow_superuser INTEGER NOT NULL DEFAULT 0;
