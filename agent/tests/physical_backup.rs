//! Physical base backups against a real PostgreSQL 15 (a throwaway instance per test, a
//! non-superuser role with REPLICATION, replication allowed in pg_hba.conf) and the real
//! `pg_basebackup` / `pg_verifybackup`, driving the agent's job functions in-process with a
//! real fs repository: a base backup restored into an empty directory starts as a server
//! holding exactly the data of the backup; what a base backup or its restore must refuse is
//! refused with a message that says what to do, and a failed restore leaves nothing behind.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use lifeboat_agent::{
    config::Config,
    job::JobCtx,
    manifest::Manifest,
    work::{BackupWork, CheckWork, RestoreWork},
};
use lifeboat_common::ids::BackupId;
use lifeboat_e2e::pg::{Pg, ROLE, write_private};
use lifeboat_proto::domain::{BackupRecord, DataDir, OwnerPolicy, VerifyStatus};
use tokio_util::sync::CancellationToken;

const REPLICATOR: &str = "replicator";

/// An agent's config with one physical target (`phys`, as `role`) and one logical target
/// (`logical`, as the superuser) on `pg`, over an fs repository, in a temporary directory.
struct World {
    pg: Pg,
    dir: tempfile::TempDir,
    config: Arc<Config>,
}

impl World {
    fn start(role: &str, role_sql: &str) -> World {
        Self::start_with_hba(role, role_sql, true)
    }

    /// With `replication_hba` false, pg_hba.conf allows the role no replication connection.
    fn start_with_hba(role: &str, role_sql: &str, replication_hba: bool) -> World {
        Self::start_with(role, role_sql, replication_hba, "")
    }

    /// `phys_extra`: more lines for the physical target (a `pg_bin_dir`).
    fn start_with(role: &str, role_sql: &str, replication_hba: bool, phys_extra: &str) -> World {
        let pg = Pg::start();
        if replication_hba {
            pg.allow_replication();
        }
        let role_pw = format!("rp-{}", lifeboat_e2e::random_hex(8));
        pg.psql(
            "postgres",
            &format!("CREATE ROLE {role} LOGIN {role_sql} PASSWORD '{role_pw}';"),
        );
        pg.create_db("app");
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        for f in ["ca.pem", "agent.pem"] {
            std::fs::write(d.join(f), "unused").expect("write");
        }
        write_private(&d.join("agent.key"), "unused");
        write_private(&d.join("role.pass"), &role_pw);
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
name = "phys"
engine = "postgres"
mode = "physical"
repository = "local"
url = "postgres://{role}@127.0.0.1:{port}/app"
password_file = "role.pass"
restore_data_dirs = ["/tmp"]
{phys_extra}

[[target]]
name = "logical"
engine = "postgres"
repository = "local"
url = "postgres://{ROLE}@127.0.0.1:{port}/app"
password_file = "super.pass"
"#,
            port = pg.port()
        );
        let config = lifeboat_agent::config::parse(&d.join("agent.toml"), &text).expect("config");
        World {
            pg,
            dir,
            config: Arc::new(config),
        }
    }

    /// [`World::start`] with the physical target's PostgreSQL programs in a directory of their
    /// own (kept alive by the returned `TempDir`), so a test can wrap them; the fixture loaded.
    fn with_wrappable_tools() -> (tempfile::TempDir, lifeboat_e2e::wrappers::PgBinDir, World) {
        let bins = tempfile::tempdir().expect("tempdir");
        let bin = lifeboat_e2e::wrappers::PgBinDir::new(&bins.path().join("bin"));
        let w = World::start_with(
            REPLICATOR,
            "REPLICATION",
            true,
            &format!("pg_bin_dir = {:?}", bin.path().display().to_string()),
        );
        w.pg.psql("app", FIXTURE);
        (bins, bin, w)
    }

    fn ctx(&self) -> JobCtx {
        JobCtx::new(new_id(), Arc::clone(&self.config), CancellationToken::new())
    }

    async fn backup(&self, target: &str) -> anyhow::Result<BackupRecord> {
        let work = BackupWork {
            backup_id: BackupId::parse(&new_id()).expect("id"),
            target: target.into(),
        };
        lifeboat_agent::backup::run(&self.ctx(), &work).await
    }

    async fn restore(
        &self,
        backup: &BackupRecord,
        data_dir: Option<&Path>,
    ) -> anyhow::Result<lifeboat_proto::domain::Restored> {
        let work = RestoreWork {
            fallbacks: Vec::new(),
            jobs: None,
            backup: backup.clone(),
            target: "phys".into(),
            database: None,
            clean: false,
            owners: OwnerPolicy::Auto,
            include_provider_schemas: false,
            data_dir: data_dir
                .map(|d| DataDir::parse(d.display().to_string()).expect("a valid data dir")),
            recovery: None,
            start_port: None,
            partial: None,
            drill: false,
            globals: Default::default(),
            allow_superuser: false,
        };
        let ctx = self.ctx();
        let r = lifeboat_agent::restore::run(&ctx, &work).await;
        if let Err(e) = &r {
            eprintln!("restore failed: {e:#}; report: {:?}", ctx.report.to_pb());
        }
        r
    }

    fn repo_file(&self, key: &str) -> PathBuf {
        self.dir.path().join("repo").join(key)
    }
}

fn new_id() -> String {
    lifeboat_common::ids::new_id(time::OffsetDateTime::now_utc())
}

/// What the test compares: every row of every table, in order.
const CONTENT: &str =
    "SELECT string_agg(format('%s|%s|%s', id, name, md5(blob::text)), ',' ORDER BY id) FROM items;
SELECT count(*) FROM wide;
SELECT sum(hashtext(v))::text FROM wide;";

const FIXTURE: &str = "
CREATE TABLE items (id int PRIMARY KEY, name text, blob bytea);
INSERT INTO items SELECT g, 'ünïcode ✓ ' || g, decode(md5(g::text), 'hex') FROM generate_series(1, 500) g;
CREATE TABLE wide (id bigserial PRIMARY KEY, v text);
INSERT INTO wide (v) SELECT repeat(md5(g::text), 20) FROM generate_series(1, 20000) g;
CREATE INDEX wide_v ON wide (v);";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_backup_restores_into_an_empty_data_directory() {
    let w = World::start(REPLICATOR, "REPLICATION");
    w.pg.psql("app", FIXTURE);
    // Data in another database of the cluster: a physical backup holds them all.
    w.pg.create_db("other");
    w.pg.psql(
        "other",
        "CREATE TABLE t (x int); INSERT INTO t VALUES (42);",
    );
    let before = w.pg.psql("app", CONTENT);

    let rec = w.backup("phys").await.expect("base backup");
    assert!(rec.is_physical(), "format {}", rec.format);
    assert_eq!(rec.format, "pg_basebackup-tar");
    assert_eq!(rec.dump_tool, "pg_basebackup");
    assert!(
        rec.row_counts.is_empty(),
        "a physical backup counts no rows"
    );
    assert!(rec.data_key.ends_with("/data.tar.zst"), "{}", rec.data_key);
    let manifest_path = w.repo_file(&rec.manifest_key);
    let m = Manifest::from_json(&std::fs::read(&manifest_path).expect("manifest")).expect("parse");
    // The oldest version with a physical section, unless adaptive compression used several
    // levels and lists them (7).
    let want = if m.compression.levels.is_some() { 7 } else { 3 };
    assert_eq!(m.schema_version, want, "{:?}", m.compression);
    assert_eq!(m.row_counts_kind, "none");
    let phys = m.physical.clone().expect("physical section");
    assert_eq!(phys.timeline, 1);
    assert_eq!(phys.wal, "fetch");
    assert!(
        phys.start_lsn.contains('/') && phys.stop_lsn.contains('/'),
        "{phys:?}"
    );
    assert!(!phys.data_checksums, "initdb ran without checksums");
    assert_eq!(
        m.server.system_identifier,
        w.pg.query_one(
            "app",
            "SELECT system_identifier::text FROM pg_control_system()"
        )
    );
    // The stored tar carries PostgreSQL's own backup_manifest.
    let stored = std::fs::File::open(w.repo_file(&rec.data_key)).expect("data");
    let names: Vec<String> = tar::Archive::new(zstd::Decoder::new(stored).expect("zstd"))
        .entries()
        .expect("entries")
        .map(|e| {
            e.expect("entry")
                .path()
                .expect("path")
                .display()
                .to_string()
        })
        .collect();
    for want in [
        "backup_manifest",
        "PG_VERSION",
        "global/pg_control",
        "backup_label",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from the tar"
        );
    }
    assert!(
        names.iter().any(|n| n.starts_with("pg_wal/0000000100")),
        "-X fetch puts the WAL in the tar"
    );

    // `backup verify` re-reads and re-hashes it.
    let verified = lifeboat_agent::verify::run(&w.ctx(), &rec, false)
        .await
        .expect("verify");
    assert_eq!(verified.status, VerifyStatus::Ok, "{}", verified.detail);

    // Changed after the backup: not in the restored copy.
    w.pg.psql(
        "app",
        "INSERT INTO items VALUES (9999, 'after the backup', NULL);",
    );

    // Refusals first: without --data-dir, into a non-empty directory, over a data directory.
    let e = format!(
        "{:#}",
        w.restore(&rec, None).await.expect_err("no data dir")
    );
    assert!(e.contains("--data-dir"), "{e}");
    let busy = w.dir.path().join("busy");
    std::fs::create_dir(&busy).expect("mkdir");
    std::fs::write(busy.join("keep.txt"), "mine").expect("write");
    let e = format!(
        "{:#}",
        w.restore(&rec, Some(&busy)).await.expect_err("not empty")
    );
    assert!(e.contains("not empty") && e.contains("keep.txt"), "{e}");
    assert_eq!(
        std::fs::read_to_string(busy.join("keep.txt")).expect("kept"),
        "mine"
    );
    assert_eq!(
        std::fs::read_dir(&busy).expect("list").count(),
        1,
        "nothing added"
    );
    // Outside the directories the target allows restores into.
    let e = format!(
        "{:#}",
        w.restore(&rec, Some(Path::new("/var/tmp/lifeboat-not-allowed")))
            .await
            .expect_err("not allowed")
    );
    assert!(
        e.contains("is not under") && e.contains("restore_data_dirs"),
        "{e}"
    );
    assert!(!Path::new("/var/tmp/lifeboat-not-allowed").exists());
    let source_data = w.pg.root().join("data");
    let e = format!(
        "{:#}",
        w.restore(&rec, Some(&source_data))
            .await
            .expect_err("a running cluster's directory")
    );
    assert!(
        e.contains("postmaster.pid") && e.contains("never touches"),
        "{e}"
    );

    // The restore, into an empty directory owned by postgres.
    let root = Pg::empty_root();
    let data = root.path().join("data");
    let restored = w.restore(&rec, Some(&data)).await.expect("restore");
    assert_eq!(
        restored.data_dir.as_ref().map(DataDir::path),
        Some(data.as_path())
    );
    assert!(restored.database.is_empty());
    for f in ["PG_VERSION", "backup_label", "base", "global/pg_control"] {
        let meta = std::fs::metadata(data.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        use std::os::unix::fs::MetadataExt;
        let pg_uid = std::fs::metadata(root.path()).expect("root").uid();
        assert_eq!(meta.uid(), pg_uid, "{f} belongs to the directory's owner");
    }

    let copy = Pg::start_existing(root, w.pg.password());
    assert_eq!(
        copy.psql("app", CONTENT),
        before,
        "the restored rows differ"
    );
    assert_eq!(copy.query_one("other", "SELECT x FROM t"), "42");
    assert_eq!(
        copy.query_one("app", "SELECT count(*) FROM items WHERE id = 9999"),
        "0",
        "a row written after the backup is in the restore"
    );
    // The index came back with the pages: an index scan finds rows.
    assert_eq!(
        copy.query_one(
            "app",
            "SET enable_seqscan = off; SELECT count(*) FROM wide WHERE v = repeat(md5('7'), 20)"
        ),
        "1"
    );

    // A logical backup asked into a data directory names the flag to leave out.
    let logical = w.backup("logical").await.expect("logical backup");
    assert!(!logical.is_physical());
    let e = format!(
        "{:#}",
        w.restore(&logical, Some(&w.dir.path().join("fresh")))
            .await
            .expect_err("logical into a data dir")
    );
    assert!(
        e.contains("logical dump") && e.contains("leave out --data-dir"),
        "{e}"
    );
    assert!(!w.dir.path().join("fresh").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_base_backup_leaves_no_data_directory_behind() {
    let w = World::start(REPLICATOR, "REPLICATION");
    w.pg.psql("app", FIXTURE);
    let rec = w.backup("phys").await.expect("base backup");
    // One byte flipped in the middle of the stored object (its size unchanged).
    let path = w.repo_file(&rec.data_key);
    let mut bytes = std::fs::read(&path).expect("read");
    let at = bytes.len() / 2;
    bytes[at] ^= 0x5a;
    std::fs::write(&path, &bytes).expect("write");

    let verified = lifeboat_agent::verify::run(&w.ctx(), &rec, false)
        .await
        .expect("verify");
    assert_eq!(
        verified.status,
        VerifyStatus::Corrupt,
        "{}",
        verified.detail
    );

    // Into a directory the restore creates: gone afterwards.
    let created = w.dir.path().join("created");
    let e = format!(
        "{:#}",
        w.restore(&rec, Some(&created)).await.expect_err("corrupt")
    );
    assert!(e.contains("does not match the catalog"), "{e}");
    assert!(e.contains("was removed"), "{e}");
    assert!(
        !created.exists(),
        "the directory the restore created is left"
    );

    // Into the operator's empty directory: kept, and empty.
    let root = Pg::empty_root();
    let data = root.path().join("data");
    let e = format!(
        "{:#}",
        w.restore(&rec, Some(&data)).await.expect_err("corrupt")
    );
    assert!(e.contains("does not match the catalog"), "{e}");
    assert!(data.is_dir(), "the operator's directory is kept");
    let left: Vec<_> = std::fs::read_dir(&data)
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_without_replication_is_refused_naming_the_grant() {
    let w = World::start("plain", "");
    let e = format!("{:#}", w.backup("phys").await.expect_err("no REPLICATION"));
    assert!(
        e.contains("role plain lacks the REPLICATION privilege")
            && e.contains("ALTER ROLE \"plain\" WITH REPLICATION")
            && e.contains("pg_hba.conf"),
        "{e}"
    );
    let left = std::fs::read_dir(w.dir.path().join("repo"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(left, 0, "a refused backup wrote to the repository");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_with_a_tablespace_is_refused_naming_it() {
    let w = World::start(REPLICATOR, "REPLICATION");
    let space = w.pg.root().join("space");
    std::fs::create_dir(&space).expect("mkdir");
    let chown = std::process::Command::new("chown")
        .arg("postgres:postgres")
        .arg(&space)
        .status()
        .expect("chown");
    assert!(chown.success());
    w.pg.psql(
        "postgres",
        &format!("CREATE TABLESPACE fast LOCATION '{}';", space.display()),
    );
    let e = format!("{:#}", w.backup("phys").await.expect_err("a tablespace"));
    assert!(
        e.contains("tablespaces besides pg_default and pg_global")
            && e.contains(&format!("fast ({})", space.display()))
            && e.contains("mode = \"logical\""),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_refusing_the_replication_connection_is_explained() {
    let w = World::start_with_hba(REPLICATOR, "REPLICATION", false);
    let e = format!(
        "{:#}",
        w.backup("phys")
            .await
            .expect_err("no replication in pg_hba")
    );
    assert!(
        e.contains("pg_basebackup failed")
            && e.contains("no pg_hba.conf entry for replication connection")
            && e.contains("host replication ROLE AGENT_ADDRESS/32"),
        "{e}"
    );
    let stored: Vec<_> = walk(&w.dir.path().join("repo"));
    assert!(stored.is_empty(), "a failed backup left {stored:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_check_warns_that_archiving_is_off_with_the_lines_to_add() {
    let w = World::start(REPLICATOR, "REPLICATION");
    let ctx = w.ctx();
    let checked = lifeboat_agent::check::run(&ctx, &CheckWork::Target("phys".into())).await;
    let report = ctx.report.to_pb().expect("a report");
    assert!(
        checked.is_ok(),
        "archiving off is no error: {checked:?} {report:?}"
    );
    let archiving: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.check == "archiving")
        .collect();
    assert_eq!(archiving.len(), 1, "{report:?}");
    let f = archiving[0];
    assert_eq!(f.severity(), lifeboat_proto::Severity::Warning, "{f:?}");
    assert!(
        f.message.contains("archive_mode = on")
            && f.message.contains("archive_command = '")
            && f.message.contains("wal-push --target phys %p'")
            && f.message.contains("restart"),
        "{}",
        f.message
    );
}

/// Every file under `dir` (none if it does not exist).
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// pg_basebackup wrapped: its output cut short (failing, or claiming success), or run without
/// its manifest. Each backup fails naming why, and nothing is left in the repository.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_or_incomplete_pg_basebackup_is_refused() {
    let (_bins, bin, w) = World::with_wrappable_tools();
    let cases = [
        (
            "set -o pipefail; \"$REAL\" \"$@\" | head -c 300000; exit 3",
            "pg_basebackup failed (exit status 3)",
        ),
        (
            "\"$REAL\" \"$@\" | head -c 300000; exit 0",
            "end-of-archive",
        ),
        (
            "exec \"$REAL\" \"$@\" --no-manifest",
            "holds no backup_manifest",
        ),
        ("echo not a tar; exit 0", "not a tar archive"),
    ];
    for (body, needle) in cases {
        bin.wrap("pg_basebackup", body);
        let e = format!("{:#}", w.backup("phys").await.expect_err(needle));
        assert!(e.contains(needle), "{body}: {e}");
        let stored = walk(&w.dir.path().join("repo"));
        assert!(stored.is_empty(), "{body}: a failed backup left {stored:?}");
    }
    // The real tool through the same directory: a backup.
    bin.wrap("pg_basebackup", "exec \"$REAL\" \"$@\"");
    w.backup("phys").await.expect("the real pg_basebackup");
}

/// The last step of a restore fails (pg_verifybackup finds a difference) or the job is
/// cancelled while it runs: everything was extracted and PG_VERSION written by then, and all
/// of it is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_failing_or_cancelled_at_its_last_step_removes_everything() {
    let (_bins, bin, w) = World::with_wrappable_tools();
    let rec = w.backup("phys").await.expect("base backup");

    bin.wrap(
        "pg_verifybackup",
        "echo 'pg_verifybackup: error: \"base/1/112\" has size 1 on disk but size 8192 in the manifest' >&2; exit 1",
    );
    let root = Pg::empty_root();
    let data = root.path().join("data");
    let e = format!(
        "{:#}",
        w.restore(&rec, Some(&data))
            .await
            .expect_err("verify fails")
    );
    assert!(
        e.contains("pg_verifybackup found") && e.contains("base/1/112"),
        "{e}"
    );
    assert_eq!(
        std::fs::read_dir(&data).expect("list").count(),
        0,
        "left behind"
    );

    // Cancelled while pg_verifybackup runs.
    bin.wrap(
        "pg_verifybackup",
        "touch \"$HERE/verifying\"; sleep 60; exec \"$REAL\" \"$@\"",
    );
    let ctx = w.ctx();
    let work = RestoreWork {
        fallbacks: Vec::new(),
        jobs: None,
        backup: rec.clone(),
        target: "phys".into(),
        database: None,
        clean: false,
        owners: OwnerPolicy::Auto,
        include_provider_schemas: false,
        data_dir: Some(DataDir::parse(data.display().to_string()).expect("dir")),
        recovery: None,
        start_port: None,
        partial: None,
        drill: false,
        globals: Default::default(),
        allow_superuser: false,
    };
    let cancel = ctx.cancel.clone();
    let marker = bin.marker("verifying");
    let running = tokio::spawn(async move { lifeboat_agent::restore::run(&ctx, &work).await });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !marker.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "pg_verifybackup never ran"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        data.join("PG_VERSION").is_file(),
        "extracted before the check"
    );
    cancel.cancel();
    let e = format!(
        "{:#}",
        tokio::time::timeout(std::time::Duration::from_secs(30), running)
            .await
            .expect("the cancelled restore ends")
            .expect("join")
            .expect_err("cancelled")
    );
    assert!(e.contains("cancelled"), "{e}");
    assert_eq!(
        std::fs::read_dir(&data).expect("list").count(),
        0,
        "left behind"
    );
}

/// Each restored file's CRC-32C is checked against PostgreSQL's `backup_manifest` as it is
/// extracted, so `pg_verifybackup` runs without reading the files back; and a backup whose
/// hashes match the catalog but whose files are not the ones its `backup_manifest` lists (a
/// base backup damaged before it was hashed) is refused naming the file, nothing left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restored_files_are_checked_against_backup_manifest_as_they_are_extracted() {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let (_bins, bin, w) = World::with_wrappable_tools();
    let before = w.pg.psql("app", CONTENT);
    let rec = w.backup("phys").await.expect("base backup");
    bin.wrap(
        "pg_verifybackup",
        "printf '%s\\n' \"$@\" > \"$HERE/args\"; exec \"$REAL\" \"$@\"",
    );
    let root = Pg::empty_root();
    let data = root.path().join("data");
    w.restore(&rec, Some(&data)).await.expect("restore");
    let args = std::fs::read_to_string(bin.marker("args")).expect("pg_verifybackup ran");
    assert!(
        args.lines().any(|a| a == "--skip-checksums"),
        "checksums were checked while extracting: {args}"
    );
    let copy = Pg::start_existing(root, w.pg.password());
    assert_eq!(
        copy.psql("app", CONTENT),
        before,
        "the restored rows differ"
    );
    drop(copy);

    // The stored tar rewritten with one byte of a relation file changed (its size kept), and
    // the sizes and hashes in the catalog record and manifest.json made to match it.
    let data_path = w.repo_file(&rec.data_key);
    let mut tar_bytes = Vec::new();
    zstd::Decoder::new(std::fs::File::open(&data_path).expect("data"))
        .expect("zstd")
        .read_to_end(&mut tar_bytes)
        .expect("decode");
    let mut changed = None;
    let mut offset = 0usize;
    while offset + 512 <= tar_bytes.len() && tar_bytes[offset] != 0 {
        let header = tar::Header::from_byte_slice(&tar_bytes[offset..offset + 512]);
        let name = header.path().expect("name").display().to_string();
        let size = usize::try_from(header.size().expect("size")).expect("size");
        if changed.is_none() && name.starts_with("base/") && size >= 8192 {
            tar_bytes[offset + 512 + 100] ^= 0x5a;
            changed = Some(name);
        }
        offset += 512 + size.div_ceil(512) * 512;
    }
    let changed = changed.expect("a relation file in the tar");
    let stored = zstd::encode_all(&tar_bytes[..], 3).expect("encode");
    std::fs::write(&data_path, &stored).expect("rewrite");
    let mut tampered = rec.clone();
    tampered.raw_size = tar_bytes.len() as u64;
    tampered.raw_sha256 = hex::encode(Sha256::digest(&tar_bytes));
    tampered.stored_size = stored.len() as u64;
    tampered.stored_sha256 = hex::encode(Sha256::digest(&stored));
    let manifest_path = w.repo_file(&rec.manifest_key);
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).expect("manifest")).expect("json");
    m["raw_size"] = tampered.raw_size.into();
    m["raw_sha256"] = tampered.raw_sha256.clone().into();
    m["stored_size"] = tampered.stored_size.into();
    m["stored_sha256"] = tampered.stored_sha256.clone().into();
    std::fs::write(&manifest_path, serde_json::to_vec(&m).expect("json")).expect("write");

    let root = Pg::empty_root();
    let data = root.path().join("data");
    let e = format!(
        "{:#}",
        w.restore(&tampered, Some(&data))
            .await
            .expect_err("files differ from backup_manifest")
    );
    assert!(
        e.contains(&changed) && e.contains("CRC-32C") && e.contains("backup_manifest"),
        "{e}"
    );
    assert_eq!(
        std::fs::read_dir(&data).map_or(0, |d| d.count()),
        0,
        "left behind"
    );
}
