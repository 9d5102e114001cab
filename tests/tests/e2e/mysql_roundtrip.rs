//! MySQL-engine targets through the real binaries against a real MariaDB: D20 (backup → verify
//! → restore into a new database → dump both → no diff), `--clean` only where the target allows
//! it, a backup of one engine refused by a target of the other, and a backup corrupted at rest
//! caught by verify and restore with nothing left behind.

use lifeboat_e2e::sandbox::find_str;
use lifeboat_e2e::{Sandbox, SandboxTarget};

/// Awkward content: 4-byte UTF-8, quotes, backslashes, NUL, binary, JSON, generated columns, a
/// foreign key, views, triggers, a procedure, a function, an event.
pub(crate) const FIXTURE: &str = r#"
CREATE TABLE parent (id INT PRIMARY KEY, name VARCHAR(100)) ENGINE=InnoDB;
CREATE TABLE child (
  id INT AUTO_INCREMENT PRIMARY KEY, pid INT, note MEDIUMTEXT, b BLOB,
  g INT AS (pid * 2) VIRTUAL, s INT AS (pid + 1) STORED, j JSON,
  FOREIGN KEY (pid) REFERENCES parent (id)
) ENGINE=InnoDB;
CREATE TABLE empty_t (x INT);
CREATE TABLE big (id INT PRIMARY KEY, v CHAR(32), r VARBINARY(64));
INSERT INTO parent VALUES (1, 'emoji 😀 (paren'), (2, 'quote \' and \\ back'), (3, NULL),
  (4, 'tab\tnl\ncr\r nul\0 end'), (5, 'ünïcödé ✓ 𝄞');
INSERT INTO child (pid, note, b, j) VALUES
  (1, 'a),(b', 0x00FF2829, '{"k": "v 😀"}'), (2, 'line\nbreak', NULL, NULL),
  (3, REPEAT('x;', 40000), RANDOM_BYTES(1000), '[1, 2, 3]');
INSERT INTO big SELECT seq, MD5(seq), RANDOM_BYTES(16 + seq % 32) FROM seq_1_to_20000;
CREATE VIEW v AS SELECT p.name, c.note FROM parent p JOIN child c ON c.pid = p.id;
CREATE FUNCTION f1(x INT) RETURNS INT DETERMINISTIC RETURN x + 1;
CREATE VIEW vf AS SELECT f1(id) AS n FROM parent;
CREATE PROCEDURE p1() SELECT COUNT(*) FROM parent;
CREATE TRIGGER trg BEFORE INSERT ON child FOR EACH ROW SET NEW.note = CONCAT(NEW.note, '!');
CREATE EVENT e1 ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01 00:00:00' DO DELETE FROM child WHERE id < 0;
"#;

#[test]
fn mariadb_database_survives_backup_and_restore_unchanged() {
    let s = Sandbox::builder("mysql_d20")
        .mariadb_target(
            SandboxTarget::new("shop")
                .extra("allow_clean_restore = true\nreplaceable_databases = [\"shop_copy\"]"),
        )
        .mariadb_target(SandboxTarget::new("shop_strict").database("shop"))
        .target(SandboxTarget::new("orders"))
        .build();
    let my = s.mariadb.as_ref().expect("mariadb");
    my.sql("shop", FIXTURE);

    let rec = s.backup_ok("shop");
    let id = find_str(&rec, "backup_id").expect("backup_id");
    assert_eq!(find_str(&rec, "engine").as_deref(), Some("mysql"), "{rec}");
    let dir = s.backup_dir("shop", &id);
    assert!(
        dir.join("data.sql.zst").is_file(),
        "no data.sql.zst in {}",
        dir.display()
    );
    let manifest = std::fs::read_to_string(dir.join("manifest.json")).expect("manifest");
    assert!(manifest.contains("\"engine\": \"mysql\""), "{manifest}");
    assert!(
        manifest.contains("\"row_counts_kind\": \"exact\""),
        "{manifest}"
    );
    assert!(manifest.contains("\"rows\": 20000"), "{manifest}");

    let v = s.admin.run_json(&["backup", "verify", &id, "--wait"]);
    v.assert_ok();
    assert_eq!(
        find_str(&s.backup_show(&id), "verify_status").as_deref(),
        Some("ok")
    );

    let r = s.restore(&id, "shop_copy", &[]);
    r.assert_ok();
    assert_eq!(
        find_str(&r.json(), "state").as_deref(),
        Some("succeeded"),
        "{r}"
    );
    let a = my.assert_same_dumps("shop", "shop_copy", s.dir.path());
    // No scratch or replaced copies are left behind.
    let dbs = my.databases();
    assert!(
        !dbs.iter().any(|d| d.starts_with("lifeboat_")),
        "leftover databases: {dbs:?}"
    );

    // An existing database is replaced only with --clean, and only where the target allows it.
    let r = s.restore(&id, "shop_copy", &[]);
    assert!(!r.success(), "{r}");
    assert!(r.to_string().contains("already exists"), "{r}");
    let r = s.restore(
        &id,
        "shop_copy",
        &["--clean", "--to", &s.target("shop_strict")],
    );
    assert!(!r.success(), "{r}");
    assert!(r.to_string().contains("allow_clean_restore"), "{r}");
    my.sql(
        "shop_copy",
        "DELETE FROM big WHERE id < 100; CREATE TABLE extra_t (x INT);",
    );
    let r = s.restore(&id, "shop_copy", &["--clean"]);
    r.assert_ok();
    assert_eq!(
        find_str(&r.json(), "state").as_deref(),
        Some("succeeded"),
        "{r}"
    );
    assert_eq!(
        my.dump_sql("shop_copy"),
        a,
        "--clean restore differs from the source"
    );
    let dbs = my.databases();
    assert!(
        !dbs.iter().any(|d| d.starts_with("lifeboat_")),
        "leftover databases: {dbs:?}"
    );

    // Engine mismatch, both ways: refused with a clear error, nothing created.
    let r = s.restore(&id, "orders_from_mysql", &["--to", &s.target("orders")]);
    let text = r.to_string();
    assert!(!r.success(), "{text}");
    assert!(
        text.contains("mysql backup") && text.contains("postgres"),
        "{text}"
    );
    assert!(!s.pg.database_exists("orders_from_mysql"));
    s.pg.psql(
        "orders",
        "CREATE TABLE t (x int); INSERT INTO t VALUES (1);",
    );
    let pg_rec = s.backup_ok("orders");
    let pg_id = find_str(&pg_rec, "backup_id").expect("backup_id");
    let r = s.restore(&pg_id, "shop_from_pg", &["--to", &s.target("shop")]);
    let text = r.to_string();
    assert!(!r.success(), "{text}");
    assert!(
        text.contains("postgres backup") && text.contains("mysql"),
        "{text}"
    );
    assert!(!my.database_exists("shop_from_pg"));

    s.shutdown();
}

/// Restores the damaged backup `id` into `db` (with `extra` arguments): the restore fails
/// naming the mismatch, and neither `db` nor a scratch database exists afterwards.
pub(crate) fn assert_corrupt_restore_leaves_nothing(
    s: &Sandbox,
    id: &str,
    db: &str,
    extra: &[&str],
) {
    let my = s.mariadb.as_ref().expect("mariadb");
    let r = s.restore(id, db, extra);
    assert!(!r.success(), "restore of a corrupt backup succeeded: {r}");
    let text = r.text_lower();
    assert!(
        text.contains("match") || text.contains("corrupt"),
        "the reason must name the mismatch: {r}"
    );
    let dbs = my.databases();
    assert!(
        !dbs.iter().any(|d| d == db || d.starts_with("lifeboat_")),
        "a corrupt restore left databases: {dbs:?}"
    );
}

#[test]
fn corrupt_mariadb_backup_is_caught_by_verify_and_restore() {
    let s = Sandbox::builder("mysql_corrupt")
        .mariadb_target(SandboxTarget::new("shop"))
        .build();
    let my = s.mariadb.as_ref().expect("mariadb");
    my.sql("shop", FIXTURE);
    let rec = s.backup_ok("shop");
    let id = find_str(&rec, "backup_id").expect("backup_id");
    let data = s.backup_dir("shop", &id).join("data.sql.zst");
    let good = std::fs::read(&data).expect("read data");
    // One byte flipped in the middle: same size, different hash.
    let mut bad = good.clone();
    let at = bad.len() / 2;
    bad[at] ^= 0x5a;
    std::fs::write(&data, &bad).expect("write");

    let v = s.admin.run_json(&["backup", "verify", &id, "--wait"]);
    assert!(!v.success(), "verify of a corrupt backup succeeded: {v}");
    assert_eq!(
        find_str(&s.backup_show(&id), "verify_status").as_deref(),
        Some("corrupt")
    );
    assert_corrupt_restore_leaves_nothing(&s, &id, "shop_bad", &[]);

    // Put back, it verifies and restores again.
    std::fs::write(&data, &good).expect("write");
    s.admin
        .run_json(&["backup", "verify", &id, "--wait"])
        .assert_ok();
    s.restore(&id, "shop_good", &[]).assert_ok();
    assert_eq!(my.dump_sql("shop"), my.dump_sql("shop_good"));

    s.shutdown();
}
