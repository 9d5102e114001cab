//! The no-lifeboat restore of docs/DISASTER_RECOVERY.md ("Restoring without lifeboat") run as
//! written, on backups taken by the real agent, with the coordinator and the agent stopped.
//!
//! # The convention
//!
//! A shell block of that document is a *by-hand procedure* when the line right before its
//! opening ```sh fence is `<!-- by-hand pg -->` or `<!-- by-hand mariadb -->` (invisible when
//! rendered). The test takes the block as it is, replaces the values of its variable lines
//! (`B=…` the backup's directory, `W=…` a work directory, `DB=…` the new database, `CNF=…` the
//! MariaDB option file; each must be there exactly once, at the start of a line) and runs it with
//! `bash -euo pipefail`. PostgreSQL's connection comes from `PGHOST`/`PGPORT`/`PGUSER`, as the
//! document says. The restore is proven by comparing the data with the source (a plain dump of
//! each) and the row counts with the manifest, not by the exit status. A stored file with one
//! byte changed must stop the procedure at step 1 (`sha256sum -c` prints `FAILED`), before
//! anything is decompressed or created.

use std::path::Path;
use std::process::{Command, Output};

use lifeboat_e2e::compare::{assert_row_counts_match, assert_same_data, assert_same_dump};
use lifeboat_e2e::fixtures::{load_awkward, load_bulk};
use lifeboat_e2e::pg::{Pg, ROLE};
use lifeboat_e2e::sandbox::find_str;
use lifeboat_e2e::{PG_BIN, Sandbox, SandboxTarget};

const DOC: &str = "docs/DISASTER_RECOVERY.md";

fn doc_text() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent");
    std::fs::read_to_string(root.join(DOC)).expect("read the disaster recovery document")
}

/// The shell block right after `<!-- by-hand NAME -->`.
pub fn block(name: &str) -> String {
    let text = doc_text();
    let marker = format!("<!-- by-hand {name} -->");
    let lines: Vec<&str> = text.lines().collect();
    let at: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].trim() == marker)
        .collect();
    assert_eq!(
        at.len(),
        1,
        "{DOC} must hold exactly one {marker} block, found {}",
        at.len()
    );
    let start = at[0] + 1;
    assert_eq!(
        lines.get(start).map(|l| l.trim()),
        Some("```sh"),
        "{DOC}:{}: {marker} must be followed by a ```sh fence",
        start
    );
    let body: Vec<&str> = lines[start + 1..]
        .iter()
        .take_while(|l| l.trim() != "```")
        .copied()
        .collect();
    assert!(
        start + 1 + body.len() < lines.len(),
        "{DOC}: the {marker} block is never closed"
    );
    body.join("\n") + "\n"
}

/// `script` with each `VAR=…` line's value replaced (the rest of the line, comment included,
/// goes); panics unless each variable is set on exactly one line.
pub fn substitute(script: &str, vars: &[(&str, &str)]) -> String {
    let mut lines: Vec<String> = script.lines().map(str::to_owned).collect();
    for (var, value) in vars {
        let prefix = format!("{var}=");
        let hits: Vec<usize> = (0..lines.len())
            .filter(|&i| lines[i].starts_with(&prefix))
            .collect();
        assert_eq!(
            hits.len(),
            1,
            "the procedure must set {var} on exactly one line; found {}:\n{script}",
            hits.len()
        );
        lines[hits[0]] = format!("{var}='{}'", value.replace('\'', r"'\''"));
    }
    lines.join("\n") + "\n"
}

/// Runs `script` with `bash -euo pipefail` in `dir`, with `env` added.
pub fn run_bash(script: &str, env: &[(&str, String)], dir: &Path) -> Output {
    let path = format!(
        "{PG_BIN}:{}",
        std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into())
    );
    let mut cmd = Command::new("bash");
    cmd.args(["-euo", "pipefail", "-c", script])
        .current_dir(dir)
        .env("PATH", path);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run bash")
}

/// libpq's connection defaults for the sandbox's PostgreSQL (the socket is trusted).
pub fn pg_env(pg: &Pg) -> Vec<(&'static str, String)> {
    vec![
        ("PGHOST", pg.sock_dir().display().to_string()),
        ("PGPORT", pg.port().to_string()),
        ("PGUSER", ROLE.to_owned()),
        ("PGCONNECT_TIMEOUT", "10".to_owned()),
    ]
}

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Changes one byte in the middle of `path`, keeping its size.
fn flip_a_byte(path: &Path) {
    let mut bytes = std::fs::read(path).expect("read the stored file");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x20;
    std::fs::write(path, bytes).expect("write the stored file");
}

/// Stops the agent, then the coordinator (both must exit 0): the procedure needs neither.
fn stop_lifeboat(s: &mut Sandbox) {
    let a = s.agent.stop();
    assert!(a.success(), "agent did not stop cleanly: {a}");
    let c = s.coordinator.stop();
    assert!(c.success(), "coordinator did not stop cleanly: {c}");
}

/// The tampered copy must stop at step 1: `sha256sum -c` reports FAILED, nothing was
/// decompressed into `work`, no database named `db` was made (`exists`).
fn assert_stopped_at_step_1(out: &Output, work: &Path, db: &str, exists: bool) {
    assert!(
        !out.status.success(),
        "the procedure went on with a tampered stored file: {}",
        show(out)
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("FAILED"),
        "sha256sum -c did not report the mismatch: {}",
        show(out)
    );
    let left: Vec<_> = std::fs::read_dir(work)
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "step 2 ran after step 1 failed: {left:?} in {}",
        work.display()
    );
    assert!(!exists, "database {db} was created after step 1 failed");
}

#[test]
fn postgres_backup_restores_by_hand_with_lifeboat_stopped() {
    let mut s = Sandbox::builder("by_hand_pg")
        .target(SandboxTarget::new("orders"))
        .build();
    load_awkward(&s.pg, "orders");
    load_bulk(&s.pg, "orders", "lines", 20_000);
    let rec = s.backup_ok("orders");
    let id = find_str(&rec, "backup_id").expect("backup_id");
    let backup = s.backup_dir("orders", &id);
    stop_lifeboat(&mut s);

    let script = block("pg");
    let work = s.dir.sub("by-hand");
    let w = work.join("w");
    let run = substitute(
        &script,
        &[
            ("B", &backup.display().to_string()),
            ("W", &w.display().to_string()),
            ("DB", "orders_by_hand"),
        ],
    );
    let out = run_bash(&run, &pg_env(&s.pg), &work);
    assert!(
        out.status.success(),
        "the by-hand procedure failed:\n{run}\n{}",
        show(&out)
    );
    assert_same_data(&s.pg, "orders", "orders_by_hand", &work);
    assert_row_counts_match(&s.pg, "orders_by_hand", &rec);

    flip_a_byte(&backup.join("data.pgdump.zst"));
    let w2 = work.join("w2");
    let run = substitute(
        &script,
        &[
            ("B", &backup.display().to_string()),
            ("W", &w2.display().to_string()),
            ("DB", "orders_tampered"),
        ],
    );
    let out = run_bash(&run, &pg_env(&s.pg), &work);
    assert_stopped_at_step_1(
        &out,
        &w2,
        "orders_tampered",
        s.pg.database_exists("orders_tampered"),
    );
}

/// Tables, awkward values, a view and a trigger: what a plain SQL dump must carry.
const SHOP: &str = r#"
CREATE TABLE parent (id INT PRIMARY KEY, name VARCHAR(100)) ENGINE=InnoDB;
CREATE TABLE child (id INT AUTO_INCREMENT PRIMARY KEY, pid INT, note MEDIUMTEXT, b BLOB,
  FOREIGN KEY (pid) REFERENCES parent (id)) ENGINE=InnoDB;
CREATE TABLE big (id INT PRIMARY KEY, v CHAR(32));
INSERT INTO parent VALUES (1, 'emoji 😀'), (2, 'quote \' and \\ back'), (3, NULL),
  (4, 'tab\tnl\ncr\r nul\0 end');
INSERT INTO child (pid, note, b) VALUES (1, 'a),(b', 0x00FF2829), (2, 'line\nbreak', NULL);
INSERT INTO big SELECT seq, MD5(seq) FROM seq_1_to_20000;
CREATE VIEW v AS SELECT p.name, c.note FROM parent p JOIN child c ON c.pid = p.id;
CREATE TRIGGER trg BEFORE INSERT ON child FOR EACH ROW SET NEW.note = CONCAT(NEW.note, '!');
"#;

#[test]
fn mariadb_backup_restores_by_hand_with_lifeboat_stopped() {
    let mut s = Sandbox::builder("by_hand_mariadb")
        .mariadb_target(SandboxTarget::new("shop"))
        .build();
    s.mariadb.as_ref().expect("mariadb").sql("shop", SHOP);
    let rec = s.backup_ok("shop");
    let id = find_str(&rec, "backup_id").expect("backup_id");
    let backup = s.backup_dir("shop", &id);
    stop_lifeboat(&mut s);

    let my = s.mariadb.as_ref().expect("mariadb");
    let work = s.dir.sub("by-hand");
    let cnf = work.join("client.cnf");
    lifeboat_e2e::pg::write_private(
        &cnf,
        &format!("[client]\nsocket={}\nuser=root\n", my.socket().display()),
    );
    let script = block("mariadb");
    let w = work.join("w");
    let run = substitute(
        &script,
        &[
            ("B", &backup.display().to_string()),
            ("W", &w.display().to_string()),
            ("DB", "shop_by_hand"),
            ("CNF", &cnf.display().to_string()),
        ],
    );
    let out = run_bash(&run, &[], &work);
    assert!(
        out.status.success(),
        "the by-hand procedure failed:\n{run}\n{}",
        show(&out)
    );
    assert_same_dump(
        &my.dump_sql("shop"),
        &my.dump_sql("shop_by_hand"),
        "shop vs shop_by_hand",
        &work,
    );
    // Row counts against the manifest (exact: counted in the dump stream).
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(backup.join("manifest.json")).expect("read the manifest"),
    )
    .expect("the manifest is JSON");
    let counts = manifest["row_counts"].as_array().expect("row_counts");
    assert!(counts.len() >= 3, "{manifest}");
    for c in counts {
        let table = c["table"].as_str().expect("table");
        let rows = c["rows"].as_i64().expect("rows");
        let got = my.query_one("shop_by_hand", &format!("SELECT COUNT(*) FROM `{table}`"));
        assert_eq!(got, rows.to_string(), "rows of {table}");
    }

    flip_a_byte(&backup.join("data.sql.zst"));
    let w2 = work.join("w2");
    let run = substitute(
        &script,
        &[
            ("B", &backup.display().to_string()),
            ("W", &w2.display().to_string()),
            ("DB", "shop_tampered"),
            ("CNF", &cnf.display().to_string()),
        ],
    );
    let out = run_bash(&run, &[], &work);
    assert_stopped_at_step_1(
        &out,
        &w2,
        "shop_tampered",
        my.database_exists("shop_tampered"),
    );
}
