-- lifeboat catalog, version 6: a restore of a physical base backup goes into a data directory
-- on the agent's host (empty for a logical restore, which goes into a database).
ALTER TABLE jobs ADD COLUMN data_dir TEXT NOT NULL DEFAULT '';
