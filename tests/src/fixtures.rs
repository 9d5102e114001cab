//! Test data: awkward content for the D20 oracle, and bulk rows to make dumps big enough to
//! fail midway.

use crate::pg::Pg;

/// Everything a logical backup tends to get wrong: NUL bytes in bytea, unicode text and
/// identifiers, quoted identifiers, large objects, a sequence advanced mid-value, a partitioned
/// table with rows in several partitions, views, a materialized view, plpgsql functions,
/// triggers, extensions shipped with PostgreSQL (pgcrypto, hstore), an enum, a domain,
/// constraints, comments.
pub const AWKWARD_SQL: &str = r#"
CREATE EXTENSION pgcrypto;
CREATE EXTENSION hstore;

CREATE SCHEMA "sch€ma_ünï";
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN positive_int AS integer CHECK (VALUE > 0);

CREATE TABLE "Weird ""Table""" (
    id integer PRIMARY KEY,
    "Col ""q"" ü" text,
    b bytea
);

CREATE TABLE audit (
    id serial PRIMARY KEY,
    tbl text NOT NULL,
    op text NOT NULL,
    n integer
);

CREATE FUNCTION log_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit (tbl, op, n) VALUES (TG_TABLE_NAME, TG_OP, NEW.id);
    RETURN NEW;
END
$$;

CREATE TRIGGER weird_audit AFTER INSERT OR UPDATE ON "Weird ""Table"""
    FOR EACH ROW EXECUTE FUNCTION log_change();

INSERT INTO "Weird ""Table""" VALUES
    (1, 'plain', '\x00010200ff'::bytea),
    (2, E'tab\there\nnewline\r\nCRLF', decode('00000000', 'hex')),
    (3, NULL, NULL),
    (4, E'backslash \\ quote '' dquote " semicolon ; dollar $$', ''::bytea),
    (5, '日本語 テキスト — emoji 🦀🐘', convert_to('ünïcödé', 'UTF8')),
    (6, repeat('long ', 5000), decode(repeat('00ff', 4096), 'hex'));
UPDATE "Weird ""Table""" SET b = b || '\x00'::bytea WHERE id = 1;

CREATE TABLE "sch€ma_ünï"."Ta ble ✓" (
    id bigserial PRIMARY KEY,
    t text,
    h hstore,
    j jsonb,
    ts timestamptz,
    n numeric,
    f double precision,
    m mood,
    arr integer[]
);
INSERT INTO "sch€ma_ünï"."Ta ble ✓" (t, h, j, ts, n, f, m, arr) VALUES
    ('Ωmega', 'a=>1, "b c"=>NULL, "ü"=>"✓"', '{"k": "ü\"q", "arr": [1, 2.50, null], "e": {}}',
     '2024-02-29 12:34:56.789+00', 12345678901234567890.123456789, 1.0e-300, 'happy', '{1,2,3}'),
    ('', '', '{}', '-infinity', 'NaN', '-0', 'sad', '{}'),
    (NULL, NULL, NULL, NULL, NULL, 'Infinity', NULL, NULL);

CREATE TABLE people (
    id positive_int PRIMARY KEY,
    name text NOT NULL CHECK (name <> ''),
    m mood,
    parent integer REFERENCES people (id),
    secret bytea
);
COMMENT ON TABLE people IS 'people — with a comment ''quoted''';
COMMENT ON COLUMN people.name IS 'ünïcödé comment';
INSERT INTO people VALUES (1, 'root', 'ok', NULL, digest('one', 'sha256'));
INSERT INTO people SELECT i, 'p' || i, (ARRAY['sad', 'ok', 'happy'])[1 + i % 3]::mood, 1,
    digest(i::text, 'sha256') FROM generate_series(2, 500) i;
CREATE INDEX people_name_idx ON people (lower(name));

-- Large objects, one with NUL bytes, one bigger than a page.
CREATE TABLE docs (id integer PRIMARY KEY, doc oid NOT NULL);
INSERT INTO docs VALUES
    (1, lo_from_bytea(0, '\x00deadbeef00'::bytea)),
    (2, lo_from_bytea(0, convert_to(repeat('large object ✓ ', 10000), 'UTF8')));

-- A sequence advanced mid-value, and a serial's sequence with gaps.
CREATE SEQUENCE counter START 1000 INCREMENT 7;
SELECT setval('counter', 123456, true);
SELECT nextval('audit_id_seq') FROM generate_series(1, 13);

-- A partitioned table with rows in several partitions (and the default one).
CREATE TABLE events (
    id bigserial,
    at timestamptz NOT NULL,
    kind text NOT NULL,
    payload bytea,
    PRIMARY KEY (id, at)
) PARTITION BY RANGE (at);
CREATE TABLE events_2023 PARTITION OF events FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE events_other PARTITION OF events DEFAULT;
INSERT INTO events (at, kind, payload)
    SELECT timestamptz '2023-06-01 00:00:00+00' + i * interval '1 day', 'k' || (i % 5),
           gen_random_bytes(16)
    FROM generate_series(1, 700) i;

CREATE VIEW event_kinds AS SELECT kind, count(*) AS n FROM events GROUP BY kind;
CREATE MATERIALIZED VIEW event_months AS
    SELECT date_trunc('month', at AT TIME ZONE 'UTC') AS month, count(*) AS n FROM events GROUP BY 1;
CREATE MATERIALIZED VIEW never_filled AS SELECT 1 AS x WITH NO DATA;

CREATE FUNCTION people_named(p text) RETURNS SETOF people LANGUAGE sql STABLE AS
    $$ SELECT * FROM people WHERE name = p $$;
CREATE FUNCTION "sch€ma_ünï".add(a integer, b integer) RETURNS integer LANGUAGE plpgsql
    IMMUTABLE AS $$ BEGIN RETURN a + b; END $$;
"#;

/// Loads [`AWKWARD_SQL`] into `db`.
pub fn load_awkward(pg: &Pg, db: &str) {
    pg.psql(db, AWKWARD_SQL);
}

/// A table `bulk_NAME` of `rows` rows of ~100 bytes of text each that compresses only about
/// 2× (md5 hex), so `rows` ≈ size/100.
pub fn load_bulk(pg: &Pg, db: &str, name: &str, rows: u64) {
    pg.psql(
        db,
        &format!(
            "CREATE TABLE bulk_{name} (id bigint PRIMARY KEY, a text, b text, n numeric);\n\
             INSERT INTO bulk_{name} SELECT i, md5(random()::text) || md5(i::text), \
             md5(random()::text), round((random() * 1e6)::numeric, 3) \
             FROM generate_series(1, {rows}) i;"
        ),
    );
}

/// A table `noise_NAME` of `rows` rows of 1 KiB of random bytes each: incompressible, so
/// `rows` KiB in the repository.
pub fn load_noise(pg: &Pg, db: &str, name: &str, rows: u64) {
    pg.psql(
        db,
        &format!(
            "CREATE EXTENSION IF NOT EXISTS pgcrypto;\n\
             CREATE TABLE noise_{name} (id bigint PRIMARY KEY, b bytea);\n\
             ALTER TABLE noise_{name} ALTER COLUMN b SET STORAGE EXTERNAL;\n\
             INSERT INTO noise_{name} SELECT i, gen_random_bytes(1024) \
             FROM generate_series(1, {rows}) i;"
        ),
    );
}
