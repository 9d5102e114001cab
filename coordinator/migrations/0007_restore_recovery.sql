-- lifeboat catalog, version 7: a restore of a physical base backup may recover to a point in
-- time: the target (latest, time:MICROS, lsn:X/Y, xid:N, name:NAME; empty: none) and the
-- action there (promote, pause, shutdown).
ALTER TABLE jobs ADD COLUMN recovery_target TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN recovery_action TEXT NOT NULL DEFAULT '';
