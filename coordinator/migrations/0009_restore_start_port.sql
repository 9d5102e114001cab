-- lifeboat catalog, version 9: a restore into a data directory may start the server on a port
-- and wait for recovery to reach its target (0: not started).
ALTER TABLE jobs ADD COLUMN start_port INTEGER NOT NULL DEFAULT 0;
