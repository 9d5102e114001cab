//! The MySQL/MariaDB engine against a real MariaDB (a throwaway instance per test) and the real
//! `mariadb-dump` / `mariadb` tools: dump → restore into a scratch database → swap into place →
//! dump again → no diff (D20); row counts from the stream agree with COUNT(*) in the source and
//! in the restored copy; a failing or killed dump tool and a truncated dump are refused (D14,
//! D15); an existing database is replaced only through the swap, and nothing is half-restored.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use lifeboat_agent::engine::mysql::{
    self, ClientTool, ConnParams, DefaultsFile, DumpPlan, RowCountKind, ServerFacts,
    stream::{CheckedDumpReader, DumpFormatError, DumpSummary},
    swap::{SwapPlan, swap_in},
};
use lifeboat_agent::process::{stderr_tail, stdin_file, stdout_file};
use lifeboat_common::secret::Secret;
use lifeboat_e2e::mariadb::MariaDb;

struct World {
    db: MariaDb,
    state: tempfile::TempDir,
}

impl World {
    fn start() -> Self {
        Self::with_password(&format!("pw-{}", lifeboat_e2e::random_hex(8)))
    }

    fn with_password(pw: &str) -> Self {
        let db = MariaDb::start_with_password(pw);
        let state = tempfile::tempdir().expect("state dir");
        Self { db, state }
    }

    fn params(&self, database: &str) -> ConnParams {
        let url = url::Url::parse(&self.db.url(database)).expect("url");
        ConnParams::from_url(&url).expect("params")
    }

    fn password(&self) -> Secret<String> {
        Secret::new(self.db.password().to_owned())
    }

    fn state(&self) -> &Path {
        self.state.path()
    }
}

/// Awkward content: 4-byte UTF-8, quotes, backslashes, NUL, parentheses and semicolons inside
/// strings, binary, JSON, generated columns, a foreign key, an odd table name, an empty table,
/// enough rows for several extended INSERTs, a partitioned, a system-versioned and a FULLTEXT
/// table, views on views and on a function, triggers with an order, a procedure, a function,
/// an event and a sequence.
const FIXTURE: &str = r#"
CREATE TABLE parent (id INT PRIMARY KEY, name VARCHAR(100)) ENGINE=InnoDB;
CREATE TABLE child (
  id INT AUTO_INCREMENT PRIMARY KEY, pid INT, note MEDIUMTEXT, b BLOB,
  g INT AS (pid * 2) VIRTUAL, s INT AS (pid + 1) STORED, j JSON,
  FOREIGN KEY (pid) REFERENCES parent (id)
) ENGINE=InnoDB;
CREATE TABLE `we``ird tbl (x)` (`col; (y)` VARCHAR(20), z LONGBLOB);
CREATE TABLE empty_t (x INT);
CREATE TABLE big (id INT PRIMARY KEY, v CHAR(32), r VARBINARY(64));
INSERT INTO parent VALUES (1, 'emoji 😀 (paren'), (2, 'quote \' and \\ back'), (3, NULL),
  (4, 'tab\tnl\ncr\r nul\0 end'), (5, 'ünïcödé ✓ 𝄞');
INSERT INTO child (pid, note, b, j) VALUES
  (1, 'a),(b', 0x00FF2829, '{"k": "v 😀"}'), (2, 'line\nbreak', NULL, NULL),
  (3, REPEAT('x;', 40000), RANDOM_BYTES(1000), '[1, 2, 3]');
INSERT INTO `we``ird tbl (x)` VALUES ('a', NULL), ('b;c', 0x0001020304), (');', '');
INSERT INTO big SELECT seq, MD5(seq), RANDOM_BYTES(16 + seq % 32) FROM seq_1_to_30000;
CREATE VIEW v AS SELECT p.name, c.note FROM parent p JOIN child c ON c.pid = p.id;
CREATE VIEW v2 AS SELECT * FROM v;
CREATE VIEW z_base AS SELECT 1 AS one;
CREATE VIEW a_top AS SELECT one FROM z_base;
CREATE FUNCTION f1(x INT) RETURNS INT DETERMINISTIC RETURN x + 1;
CREATE VIEW vf AS SELECT f1(id) AS n FROM parent;
CREATE PROCEDURE p1() SELECT COUNT(*) FROM parent;
CREATE TRIGGER trg BEFORE INSERT ON child FOR EACH ROW SET NEW.note = CONCAT(NEW.note, '!');
CREATE TRIGGER trg2 BEFORE INSERT ON child FOR EACH ROW FOLLOWS trg SET NEW.note = CONCAT(NEW.note, '?');
CREATE EVENT e1 ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01 00:00:00' DO DELETE FROM child WHERE id < 0;
CREATE TABLE part (id INT, d DATE, PRIMARY KEY (id, d))
  PARTITION BY RANGE (YEAR(d)) (PARTITION p2020 VALUES LESS THAN (2021), PARTITION pmax VALUES LESS THAN MAXVALUE);
INSERT INTO part VALUES (1, '2020-05-01'), (2, '2024-01-01'), (3, '1999-12-31');
CREATE TABLE hist (id INT PRIMARY KEY, v INT) WITH SYSTEM VERSIONING;
INSERT INTO hist VALUES (1, 1), (2, 2);
UPDATE hist SET v = 3 WHERE id = 1;
CREATE TABLE doc (id INT PRIMARY KEY, body TEXT, FULLTEXT KEY ft (body)) ENGINE=InnoDB;
INSERT INTO doc VALUES (1, 'the quick brown fox'), (2, 'lazy dogs');
CREATE SEQUENCE seq1 START WITH 100 INCREMENT BY 5;
SELECT NEXTVAL(seq1);
"#;

struct Dumped {
    bytes: Vec<u8>,
    summary: DumpSummary,
    facts: ServerFacts,
    tool: ClientTool,
}

impl std::fmt::Debug for Dumped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Dumped({} bytes, {:?})",
            self.bytes.len(),
            self.summary.rows
        )
    }
}

/// What a backup job does: facts, tool check, option file, dump through the stream check.
async fn dump(
    w: &World,
    database: &str,
    password: &Secret<String>,
    bin_dir: Option<&Path>,
) -> Result<Dumped> {
    let params = w.params(database);
    let mut conn = mysql::connect(&params, Some(password), Some(database)).await?;
    let facts = mysql::server_facts(&mut conn, Some(database)).await?;
    let path = mysql::find_dump_tool(bin_dir, facts.flavor)?;
    let tool = ClientTool::probe(&path).await?;
    mysql::check_client(&tool, &facts)?;
    let defaults = DefaultsFile::create(w.state(), &params, Some(password), tool.flavor)?;
    let plan = DumpPlan {
        tool: &tool,
        server: &facts,
        database,
        provider_args: &[],
    };
    let mut child = mysql::dump_command(&plan, &defaults, w.state())
        .spawn()
        .context("start dump")?;
    let stderr = stderr_tail(child.stderr.take().context("stderr")?);
    let (reader, handle) =
        CheckedDumpReader::new(stdout_file(child.stdout.take().context("stdout")?)?);
    let read = tokio::task::spawn_blocking(move || {
        let mut reader = reader;
        let mut out = Vec::new();
        let r = reader.read_to_end(&mut out);
        (out, r)
    })
    .await?;
    let status = child.wait().await?;
    let stderr = stderr.await.unwrap_or_default();
    drop(defaults);
    let summary = mysql::dump_verdict(&tool.name, &status, &stderr, handle.take())?;
    read.1.context("read the dump")?;
    Ok(Dumped {
        bytes: read.0,
        summary,
        facts,
        tool,
    })
}

/// What a restore job does before the swap: the dump into a fresh scratch database.
async fn load(w: &World, scratch: &str, sql: Vec<u8>, facts: &ServerFacts) -> Result<()> {
    let params = w.params(scratch);
    let pw = w.password();
    let client = ClientTool::probe(&mysql::find_client_tool(None, facts.flavor)?).await?;
    anyhow::ensure!(
        !client.needs_sandbox_filter(),
        "this MariaDB client ({}) should know the sandbox-mode line",
        client.describe()
    );
    let defaults = DefaultsFile::create(w.state(), &params, Some(&pw), client.flavor)?;
    let mut child =
        mysql::restore_command(&client, &defaults, w.state(), scratch, sql.len() as u64)
            .spawn()
            .context("start client")?;
    let stderr = stderr_tail(child.stderr.take().context("stderr")?);
    let stdin = stdin_file(child.stdin.take().context("stdin")?)?;
    let wrote = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut stdin = stdin;
        stdin.write_all(&sql)
    })
    .await?;
    let status = child.wait().await?;
    let stderr = stderr.await.unwrap_or_default();
    anyhow::ensure!(
        status.success(),
        "{} failed ({status}): {stderr}",
        client.name
    );
    wrote.context("write to the client")?;
    Ok(())
}

fn counts(map: &DumpSummary) -> Vec<(String, i64)> {
    map.rows.iter().map(|(k, v)| (k.clone(), *v)).collect()
}

async fn exact_counts(w: &World, database: &str) -> Vec<(String, i64)> {
    let pw = w.password();
    let mut conn = mysql::connect(&w.params(database), Some(&pw), Some(database))
        .await
        .expect("connect");
    mysql::begin_consistent_snapshot(&mut conn)
        .await
        .expect("snapshot");
    mysql::row_counts(&mut conn, database, true)
        .await
        .expect("counts")
        .into_iter()
        .map(|r| (r.table, r.rows))
        .collect()
}

fn assert_same_dump(expected: &str, actual: &str, work: &Path) {
    assert!(expected.len() > 10_000, "source dump is suspiciously small");
    if expected == actual {
        return;
    }
    let (a, b) = (work.join("expected.sql"), work.join("actual.sql"));
    std::fs::write(&a, expected).expect("write");
    std::fs::write(&b, actual).expect("write");
    let diff = std::process::Command::new("diff")
        .arg("-u")
        .arg(&a)
        .arg(&b)
        .output()
        .expect("diff");
    let text = String::from_utf8_lossy(&diff.stdout);
    panic!(
        "dumps differ:\n{}",
        text.lines().take(120).collect::<Vec<_>>().join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d20_dump_restore_dump_has_no_diff() {
    let w = World::start();
    w.db.create_db("src");
    w.db.sql("src", FIXTURE);
    let pw = w.password();

    let d = dump(&w, "src", &pw, None).await.expect("dump");
    assert_eq!(d.facts.flavor, mysql::ServerFlavor::MariaDb);
    assert_eq!(d.facts.character_set, "utf8mb4");
    assert!(d.tool.name.starts_with("mariadb-dump") || d.tool.name == "mysqldump");
    let text = String::from_utf8_lossy(&d.bytes);
    assert!(
        !text.contains("CREATE DATABASE") && !text.contains("\nUSE "),
        "the dump must not pick its database"
    );
    assert!(
        !text.contains("LOCK TABLES"),
        "no LOCK TABLES in the output"
    );

    // Row counts from the stream = COUNT(*) in the source (quiet database).
    let stream_counts = counts(&d.summary);
    assert_eq!(stream_counts, exact_counts(&w, "src").await);
    assert!(
        stream_counts.contains(&("big".into(), 30_000)),
        "{stream_counts:?}"
    );
    assert!(
        stream_counts.contains(&("empty_t".into(), 0)),
        "{stream_counts:?}"
    );
    assert!(
        stream_counts.contains(&("we`ird tbl (x)".into(), 3)),
        "{stream_counts:?}"
    );

    // Restore: scratch database with the backup's character set, load, verify, swap in.
    let mut admin = mysql::connect(&w.params("src"), Some(&pw), None)
        .await
        .expect("connect");
    mysql::create_database(
        &mut admin,
        "lifeboat_restore_j1",
        &d.facts.character_set,
        &d.facts.collation,
    )
    .await
    .expect("create scratch");
    load(&w, "lifeboat_restore_j1", d.bytes.clone(), &d.facts)
        .await
        .expect("restore");
    assert_eq!(exact_counts(&w, "lifeboat_restore_j1").await, stream_counts);
    swap_in(
        &mut admin,
        &SwapPlan {
            scratch: "lifeboat_restore_j1",
            dest: "copy",
            old: None,
            character_set: &d.facts.character_set,
            collation: &d.facts.collation,
        },
    )
    .await
    .expect("swap");
    assert!(
        mysql::database_is_empty(&mut admin, "lifeboat_restore_j1")
            .await
            .expect("inspect"),
        "the scratch database still holds objects after the swap"
    );
    mysql::drop_database(&mut admin, "lifeboat_restore_j1")
        .await
        .expect("drop scratch");

    // The oracle: dumps of source and copy are identical.
    assert_same_dump(&w.db.dump_sql("src"), &w.db.dump_sql("copy"), w.db.root());
    // And the objects work in their new home.
    assert_eq!(w.db.query_one("copy", "CALL p1();"), "5");
    assert_eq!(w.db.query_one("copy", "SELECT f1(41);"), "42");
    assert_eq!(w.db.query_one("copy", "SELECT COUNT(*) FROM vf;"), "5");
    assert_eq!(w.db.query_one("copy", "SELECT one FROM a_top;"), "1");
    w.db.sql("copy", "INSERT INTO child (pid, note) VALUES (1, 'new');");
    assert_eq!(
        w.db.query_one("copy", "SELECT note FROM child WHERE note LIKE 'new%';"),
        "new!?",
        "triggers fire in their order"
    );
    // A sequence is dumped at its next uncached value: the copy never hands out a value the
    // source may already have used.
    let next_copy: i64 =
        w.db.query_one("copy", "SELECT NEXTVAL(seq1);")
            .parse()
            .expect("int");
    let next_src: i64 =
        w.db.query_one("src", "SELECT NEXTVAL(seq1);")
            .parse()
            .expect("int");
    assert!(
        next_copy >= next_src,
        "copy {next_copy} < source {next_src}"
    );
    assert_eq!(
        w.db.query_one("copy", "SELECT DEFAULT_CHARACTER_SET_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'copy';"),
        "utf8mb4"
    );
    assert!(
        std::fs::read_dir(w.state())
            .expect("state")
            .next()
            .is_none(),
        "option files left in the state dir"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_replace_swaps_tables_and_objects_and_keeps_the_old_copy_aside() {
    let w = World::start();
    w.db.create_db("src");
    w.db.sql("src", FIXTURE);
    w.db.create_db("app");
    w.db.sql(
        "app",
        "CREATE TABLE parent (id INT PRIMARY KEY, old_col INT);\n\
         INSERT INTO parent VALUES (1, 1);\n\
         CREATE TABLE only_old (x INT);\n\
         CREATE TRIGGER old_trg BEFORE INSERT ON only_old FOR EACH ROW SET NEW.x = 1;\n\
         CREATE VIEW v AS SELECT 'old' AS which;\n\
         CREATE PROCEDURE p1() SELECT 'old';",
    );
    let pw = w.password();
    let d = dump(&w, "src", &pw, None).await.expect("dump");
    let mut admin = mysql::connect(&w.params("src"), Some(&pw), None)
        .await
        .expect("connect");
    mysql::create_database(
        &mut admin,
        "scratch_2",
        &d.facts.character_set,
        &d.facts.collation,
    )
    .await
    .expect("create scratch");
    load(&w, "scratch_2", d.bytes.clone(), &d.facts)
        .await
        .expect("restore");

    // A name for the old copy that is taken: the swap fails before anything moves.
    w.db.create_db("taken_old");
    let e = swap_in(
        &mut admin,
        &SwapPlan {
            scratch: "scratch_2",
            dest: "app",
            old: Some("taken_old"),
            character_set: "utf8mb4",
            collation: "utf8mb4_unicode_ci",
        },
    )
    .await
    .expect_err("swap with a taken old name");
    assert!(format!("{e:#}").contains("taken_old"), "{e:#}");
    assert!(
        w.db.database_exists("taken_old"),
        "a database the swap did not create was dropped"
    );
    assert_eq!(
        w.db.query_one("app", "SELECT which FROM v;"),
        "old",
        "app changed by a failed swap"
    );
    assert_eq!(w.db.query_one("app", "CALL p1();"), "old");

    swap_in(
        &mut admin,
        &SwapPlan {
            scratch: "scratch_2",
            dest: "app",
            old: Some("old_2"),
            character_set: "utf8mb4",
            collation: "utf8mb4_unicode_ci",
        },
    )
    .await
    .expect("swap");
    assert_same_dump(&w.db.dump_sql("src"), &w.db.dump_sql("app"), w.db.root());
    // The replaced tables are aside, without their (dropped) objects, for the caller to drop.
    assert_eq!(w.db.query_one("old_2", "SELECT old_col FROM parent;"), "1");
    assert_eq!(
        w.db.query_one(
            "",
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'old_2';"
        ),
        "2"
    );
    // Emptying a database in place (servers without CREATE/DROP DATABASE).
    mysql::swap::empty_database(&mut admin, "app")
        .await
        .expect("empty");
    assert!(
        mysql::database_is_empty(&mut admin, "app")
            .await
            .expect("inspect")
    );
    assert!(w.db.database_exists("app"));
    // Without --clean, an existing database is refused.
    mysql::create_database(&mut admin, "scratch_3", "utf8mb4", "")
        .await
        .expect("create");
    let e = swap_in(
        &mut admin,
        &SwapPlan {
            scratch: "scratch_3",
            dest: "app",
            old: None,
            character_set: "utf8mb4",
            collation: "",
        },
    )
    .await
    .expect_err("replace without --clean");
    assert!(format!("{e:#}").contains("--clean"), "{e:#}");
}

/// A directory with a fake `mariadb-dump` that runs the real one and then misbehaves.
fn wrapped_dump_tool(dir: &Path, body: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("mkdir");
    let real = mysql::find_dump_tool(None, mysql::ServerFlavor::MariaDb).expect("real tool");
    let script = format!(
        "#!/bin/bash\nREAL={real:?}\ncase \"${{1:-}}\" in --version|--help) exec \"$REAL\" \"$@\";; esac\n{body}\n",
        real = real.display().to_string()
    );
    let path = dir.join("mariadb-dump");
    std::fs::write(&path, script).expect("write wrapper");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d14_failing_or_killed_dump_tool_is_an_error_with_its_stderr() {
    let w = World::start();
    w.db.create_db("src");
    w.db.sql("src", FIXTURE);

    // Wrong password: sqlx refuses first (pre-flight, D16); the tool itself also fails.
    let wrong = Secret::new("wrong-password".to_owned());
    let e = dump(&w, "src", &wrong, None)
        .await
        .expect_err("wrong password");
    assert!(format!("{e:#}").contains("Access denied"), "{e:#}");

    // The tool exits non-zero after part of its output: the exit status decides, with stderr.
    let bin = wrapped_dump_tool(
        &w.state().join("bin-fail"),
        "\"$REAL\" \"$@\" | head -c 5000\necho 'mariadb-dump: Error 2013: Lost connection to server during query' >&2\nexit 2",
    );
    let e = dump(&w, "src", &w.password(), Some(&bin))
        .await
        .expect_err("failing tool");
    let m = format!("{e:#}");
    assert!(
        m.contains("failed (exit status 2)") && m.contains("Lost connection"),
        "{m}"
    );

    // Killed mid-stream.
    let bin = wrapped_dump_tool(
        &w.state().join("bin-kill"),
        "\"$REAL\" \"$@\" | head -c 5000\nkill -9 $$",
    );
    let e = dump(&w, "src", &w.password(), Some(&bin))
        .await
        .expect_err("killed tool");
    assert!(format!("{e:#}").contains("killed by signal 9"), "{e:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d15_truncated_or_empty_dump_with_exit_0_is_refused() {
    let w = World::start();
    w.db.create_db("src");
    w.db.sql("src", FIXTURE);

    let bin = wrapped_dump_tool(
        &w.state().join("bin-trunc"),
        "\"$REAL\" \"$@\" | head -c 20000\nexit 0",
    );
    let e = dump(&w, "src", &w.password(), Some(&bin))
        .await
        .expect_err("truncated dump");
    let m = format!("{e:#}");
    assert!(
        m.contains("Dump completed") && m.contains("truncated"),
        "{m}"
    );

    let bin = wrapped_dump_tool(&w.state().join("bin-empty"), "exit 0");
    let e = dump(&w, "src", &w.password(), Some(&bin))
        .await
        .expect_err("empty dump");
    assert!(format!("{e:#}").contains("no output"), "{e:#}");

    let bin = wrapped_dump_tool(
        &w.state().join("bin-garbage"),
        "echo 'hello world'\necho '-- Dump completed'\nexit 0",
    );
    let e = dump(&w, "src", &w.password(), Some(&bin))
        .await
        .expect_err("garbage");
    assert!(
        format!("{e:#}").contains("does not start like a mysqldump"),
        "{e:#}"
    );
    let _ = DumpFormatError::Empty;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awkward_password_reaches_the_tools_through_the_option_file_only() {
    let pw = "p\"w\\#1 x'y ;$(id)";
    let w = World::with_password(pw);
    w.db.create_db("src");
    w.db.sql(
        "src",
        "CREATE TABLE t (x INT); INSERT INTO t VALUES (1), (2);",
    );
    let d = dump(&w, "src", &Secret::new(pw.to_owned()), None)
        .await
        .expect("dump with an awkward password");
    assert_eq!(counts(&d.summary), vec![("t".to_owned(), 2)]);
    assert!(!String::from_utf8_lossy(&d.bytes).contains(pw));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn estimates_and_snapshot_counts_are_labelled() {
    let w = World::start();
    w.db.create_db("src");
    w.db.sql("src", FIXTURE);
    let pw = w.password();
    let mut conn = mysql::connect(&w.params("src"), Some(&pw), Some("src"))
        .await
        .expect("connect");
    let est = mysql::row_counts(&mut conn, "src", false)
        .await
        .expect("estimates");
    assert_eq!(est.len(), 8, "{est:?}");
    assert_eq!(RowCountKind::Estimate.as_str(), "estimate");
    assert!(
        mysql::non_transactional_tables(&mut conn, "src")
            .await
            .expect("engines")
            .is_empty()
    );
    w.db.sql("src", "CREATE TABLE legacy (x INT) ENGINE=MyISAM;");
    assert_eq!(
        mysql::non_transactional_tables(&mut conn, "src")
            .await
            .expect("engines"),
        vec![("legacy".to_owned(), "MyISAM".to_owned())]
    );
    let facts = mysql::server_facts(&mut conn, Some("src"))
        .await
        .expect("facts");
    assert!(facts.size_bytes > 0, "{facts:?}");
    assert!(facts.version_string.contains("MariaDB"), "{facts:?}");
    let e = mysql::server_facts(&mut conn, Some("nope"))
        .await
        .expect_err("missing db");
    assert!(format!("{e:#}").contains("does not exist"), "{e:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_that_fails_half_way_puts_the_original_back() {
    let w = World::start();
    w.db.create_db("src");
    w.db.sql("src", FIXTURE);
    // A user that may do everything the swap does except create objects for another definer
    // (no SUPER / SET USER): re-creating the restored objects (definer root) fails after the
    // tables have moved, which must put everything back.
    w.db.sql(
        "",
        "CREATE USER 'swapper'@'127.0.0.1' IDENTIFIED BY 'swap-pw';\n\
         GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, INDEX, CREATE VIEW, SHOW VIEW,\n\
           CREATE ROUTINE, ALTER ROUTINE, TRIGGER, EVENT, REFERENCES, EXECUTE, PROCESS\n\
           ON *.* TO 'swapper'@'127.0.0.1';",
    );
    w.db.create_db("app");
    let swapper = Secret::new("swap-pw".to_owned());
    let mut params = w.params("app");
    params.user = "swapper".into();
    let mut conn = mysql::connect(&params, Some(&swapper), Some("app"))
        .await
        .expect("connect as swapper");
    for sql in [
        "CREATE TABLE parent (id INT PRIMARY KEY, old_col INT)",
        "INSERT INTO parent VALUES (1, 1)",
        "CREATE TABLE only_old (x INT)",
        "CREATE TRIGGER old_trg BEFORE INSERT ON only_old FOR EACH ROW SET NEW.x = 7",
        "CREATE VIEW v AS SELECT 'old' AS which",
        "CREATE FUNCTION f_old() RETURNS INT DETERMINISTIC RETURN 1",
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let before = w.db.dump_sql("app");

    let d = dump(&w, "src", &w.password(), None).await.expect("dump");
    let mut admin = mysql::connect(&w.params("src"), Some(&w.password()), None)
        .await
        .expect("connect");
    mysql::create_database(&mut admin, "scratch_4", "utf8mb4", "utf8mb4_unicode_ci")
        .await
        .expect("create scratch");
    load(&w, "scratch_4", d.bytes.clone(), &d.facts)
        .await
        .expect("restore");
    let scratch_tables = mysql::list_tables_and_sequences(&mut admin, "scratch_4")
        .await
        .expect("tables");

    let e = swap_in(
        &mut conn,
        &SwapPlan {
            scratch: "scratch_4",
            dest: "app",
            old: Some("old_4"),
            character_set: "utf8mb4",
            collation: "utf8mb4_unicode_ci",
        },
    )
    .await
    .expect_err("the swap cannot re-create root's objects");
    let m = format!("{e:#}");
    assert!(m.contains("put back") && m.contains("Access denied"), "{m}");
    assert!(
        !w.db.database_exists("old_4"),
        "the empty old database was left behind"
    );
    assert_same_dump_small(&before, &w.db.dump_sql("app"));
    assert_eq!(w.db.query_one("app", "SELECT f_old();"), "1");
    w.db.sql("app", "INSERT INTO only_old VALUES (1);");
    assert_eq!(
        w.db.query_one("app", "SELECT x FROM only_old;"),
        "7",
        "old trigger back"
    );
    assert_eq!(
        mysql::list_tables_and_sequences(&mut admin, "scratch_4")
            .await
            .expect("tables"),
        scratch_tables,
        "the restored tables are back in the scratch database"
    );
}

fn assert_same_dump_small(expected: &str, actual: &str) {
    assert!(expected.contains("CREATE TABLE `parent`"), "{expected}");
    assert_eq!(expected, actual, "the original database changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_settings_reach_both_the_agent_and_the_dump_tool() {
    let db = MariaDb::start_tls();
    let state = tempfile::tempdir().expect("state dir");
    let w = World { db, state };
    w.db.create_db("src");
    w.db.sql(
        "src",
        "CREATE TABLE t (x INT); INSERT INTO t VALUES (1), (2), (3);",
    );
    let ca = w.db.ca_file().expect("ca").to_owned();
    let pw = w.password();
    let with = |q: String| {
        ConnParams::from_url(&url::Url::parse(&format!("{}?{q}", w.db.url("src"))).expect("url"))
            .expect("params")
    };

    // Verified TLS: the agent's own session is encrypted, and the dump tool (the server
    // refuses anything else) gets through with the same settings from the option file.
    let verified = with(format!("ssl-mode=verify_identity&ssl-ca={}", ca.display()));
    let mut conn = mysql::connect(&verified, Some(&pw), Some("src"))
        .await
        .expect("verified TLS");
    let cipher: String = sqlx::query_scalar("SELECT CAST(VARIABLE_VALUE AS CHAR) FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'SSL_CIPHER'")
        .fetch_one(&mut conn)
        .await
        .expect("cipher");
    assert!(!cipher.is_empty(), "the agent's session is not encrypted");
    let facts = mysql::server_facts(&mut conn, Some("src"))
        .await
        .expect("facts");
    let tool = ClientTool::probe(&mysql::find_dump_tool(None, facts.flavor).expect("tool"))
        .await
        .expect("probe");
    let defaults =
        DefaultsFile::create(w.state(), &verified, Some(&pw), tool.flavor).expect("file");
    let out = mysql::dump_command(
        &DumpPlan {
            tool: &tool,
            server: &facts,
            database: "src",
            provider_args: &[],
        },
        &defaults,
        w.state(),
    )
    .output()
    .await
    .expect("run dump");
    assert!(
        out.status.success(),
        "dump over verified TLS failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("INSERT INTO `t` VALUES"));

    // No TLS: the server refuses, and the error says where and with which ssl-mode.
    let plain = with("ssl-mode=disabled".into());
    let e = mysql::connect(&plain, Some(&pw), Some("src"))
        .await
        .expect_err("plaintext accepted");
    let m = format!("{e:#}");
    assert!(
        m.contains("ssl-mode DISABLED") && m.contains("127.0.0.1"),
        "{m}"
    );

    // A CA that did not sign the server certificate: refused.
    let other = lifeboat_common::pki::Ca::generate("other").expect("ca");
    let other_ca = w.state().join("other-ca.pem");
    std::fs::write(&other_ca, &other.cert_pem).expect("write");
    let wrong = with(format!("ssl-mode=verify_ca&ssl-ca={}", other_ca.display()));
    mysql::connect(&wrong, Some(&pw), Some("src"))
        .await
        .expect_err("unknown CA accepted");
    // The dump tool honours the option file's verification too, not only the agent.
    let defaults = DefaultsFile::create(w.state(), &wrong, Some(&pw), tool.flavor).expect("file");
    let out = mysql::dump_command(
        &DumpPlan {
            tool: &tool,
            server: &facts,
            database: "src",
            provider_args: &[],
        },
        &defaults,
        w.state(),
    )
    .output()
    .await
    .expect("run dump");
    assert!(
        !out.status.success(),
        "the dump tool accepted a server certificate from an unknown CA"
    );
}
