//! Exact row counts of a PostgreSQL logical backup against a real PostgreSQL 15, driving the
//! agent's job functions in-process with a real fs repository. Counts are normally read from
//! pg_dump's archive as it streams; when the archive cannot be read that way (here pg_dump is
//! made to compress its archive, which the stream reader does not decode), every table is
//! counted with `count(*)` in the dump's snapshot instead. Both paths must give the real counts,
//! and the fallback's backup must restore to the same rows.

use std::sync::Arc;

use lifeboat_agent::{
    config::Config,
    job::JobCtx,
    manifest::Manifest,
    work::{BackupWork, RestoreWork},
};
use lifeboat_common::ids::BackupId;
use lifeboat_e2e::pg::{Pg, ROLE, write_private};
use lifeboat_e2e::wrappers::PgBinDir;
use lifeboat_proto::domain::{BackupRecord, OwnerPolicy};
use tokio_util::sync::CancellationToken;

const TABLES: &str = "
CREATE TABLE items (id int PRIMARY KEY, label text);
INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 2345) g;
CREATE TABLE empty_one (x int);
CREATE SCHEMA \"Odd Schema\";
CREATE TABLE \"Odd Schema\".\"Mixed Case\" (v text);
INSERT INTO \"Odd Schema\".\"Mixed Case\" SELECT repeat('x', g) FROM generate_series(1, 7) g;
CREATE TABLE measurements (at date, v int) PARTITION BY RANGE (at);
CREATE TABLE measurements_2025 PARTITION OF measurements FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE measurements_2026 PARTITION OF measurements FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
INSERT INTO measurements SELECT date '2025-06-01' + (g % 400), g FROM generate_series(1, 999) g;
";

/// Every table's real count, `schema.table rows` per line, sorted.
const COUNTS: &str = "
SELECT string_agg(format('%s.%s %s', n.nspname, c.relname,
         (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', n.nspname, c.relname), false, true, '')))[1]::text),
       E'\\n' ORDER BY n.nspname, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'";

struct World {
    pg: Pg,
    dir: tempfile::TempDir,
    bins: PgBinDir,
    config: Arc<Config>,
    _bins_dir: tempfile::TempDir,
}

fn new_id() -> String {
    lifeboat_common::ids::new_id(time::OffsetDateTime::now_utc())
}

impl World {
    fn start() -> World {
        let pg = Pg::start();
        pg.create_db("app");
        pg.psql("app", TABLES);
        let bins_dir = tempfile::tempdir().expect("tempdir");
        let bins = PgBinDir::new(&bins_dir.path().join("bin"));
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        for f in ["ca.pem", "agent.pem"] {
            std::fs::write(d.join(f), "unused").expect("write");
        }
        write_private(&d.join("agent.key"), "unused");
        write_private(&d.join("super.pass"), pg.password());
        let text = format!(
            r#"name = "a"
environment = "test"
coordinator = "https://127.0.0.1:1"
state_dir = "state"
[tls]
ca = "ca.pem"
cert = "agent.pem"
key = "agent.key"

[[repository]]
name = "local"
kind = "fs"
path = "repo"

[[target]]
name = "app"
engine = "postgres"
repository = "local"
url = "postgres://{ROLE}@127.0.0.1:{port}/app"
password_file = "super.pass"
row_counts = "exact"
pg_bin_dir = {bin:?}
"#,
            port = pg.port(),
            bin = bins.path().display().to_string(),
        );
        let config = lifeboat_agent::config::parse(&d.join("agent.toml"), &text).expect("config");
        World {
            pg,
            dir,
            bins,
            config: Arc::new(config),
            _bins_dir: bins_dir,
        }
    }

    fn ctx(&self) -> JobCtx {
        JobCtx::new(new_id(), Arc::clone(&self.config), CancellationToken::new())
    }

    async fn backup(&self) -> BackupRecord {
        let work = BackupWork {
            backup_id: BackupId::parse(&new_id()).expect("id"),
            target: "app".into(),
        };
        lifeboat_agent::backup::run(&self.ctx(), &work)
            .await
            .expect("backup")
    }

    async fn restore(&self, backup: &BackupRecord, database: &str) {
        let work = RestoreWork {
            fallbacks: Vec::new(),
            jobs: None,
            backup: backup.clone(),
            target: "app".into(),
            database: Some(database.into()),
            clean: false,
            owners: OwnerPolicy::Auto,
            include_provider_schemas: false,
            data_dir: None,
            recovery: None,
            start_port: None,
            partial: None,
            drill: false,
            globals: Default::default(),
            allow_superuser: false,
        };
        lifeboat_agent::restore::run(&self.ctx(), &work)
            .await
            .expect("restore");
    }

    fn manifest(&self, rec: &BackupRecord) -> Manifest {
        let path = self.dir.path().join("repo").join(&rec.manifest_key);
        Manifest::from_json(&std::fs::read(path).expect("manifest")).expect("parse")
    }
}

/// The record's counts in the form of [`COUNTS`].
fn recorded(rec: &BackupRecord) -> String {
    let mut lines: Vec<String> = rec
        .row_counts
        .iter()
        .map(|r| format!("{}.{} {}", r.schema, r.table, r.rows))
        .collect();
    lines.sort();
    lines.join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_counts_fall_back_to_count_star_when_the_archive_cannot_be_read_as_it_streams() {
    let w = World::start();
    let truth = w.pg.query_one("app", COUNTS);
    assert!(truth.contains("public.items 2345"), "{truth}");

    // Counted from the archive as it streamed.
    let streamed = w.backup().await;
    assert_eq!(recorded(&streamed), truth);
    assert_eq!(w.manifest(&streamed).row_counts_kind, "exact");

    // pg_dump compresses its archive: the stream reader cannot count it, count(*) does.
    w.bins.wrap(
        "pg_dump",
        "touch \"$HERE/compressed\"; exec \"$REAL\" \"$@\" --compress=1",
    );
    // Rows written after the first backup: the counts must be this backup's, not the last.
    w.pg.psql(
        "app",
        "DELETE FROM items WHERE id > 2000; INSERT INTO empty_one VALUES (1), (2);",
    );
    let truth = w.pg.query_one("app", COUNTS);
    let counted = w.backup().await;
    assert!(w.bins.marker("compressed").exists(), "the wrapper ran");
    assert_eq!(recorded(&counted), truth);
    assert!(truth.contains("public.items 2000") && truth.contains("public.empty_one 2"));
    assert_eq!(w.manifest(&counted).row_counts_kind, "exact");

    // That backup restores to the same rows.
    w.restore(&counted, "copy").await;
    assert_eq!(w.pg.query_one("copy", COUNTS), truth);
    assert_eq!(
        w.pg.query_one(
            "copy",
            "SELECT md5(string_agg(label, ',' ORDER BY id)) FROM items"
        ),
        w.pg.query_one(
            "app",
            "SELECT md5(string_agg(label, ',' ORDER BY id)) FROM items"
        )
    );
}
