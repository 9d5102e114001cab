-- lifeboat catalog, version 12: a partial restore names tables (SCHEMA.TABLE) and schemas,
-- one per line, and may restore into a new schema of the target's database.
ALTER TABLE jobs ADD COLUMN restore_tables TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN restore_schemas TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN into_schema TEXT NOT NULL DEFAULT '';
