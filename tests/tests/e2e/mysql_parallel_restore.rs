//! `restore --jobs N` of a MariaDB backup: the tables load over N connections at once, then the
//! views, routines and events; the copy equals the source (plain dumps compared), and a damaged
//! archive fails every connection with nothing left behind.

use lifeboat_e2e::sandbox::find_str;
use lifeboat_e2e::{Sandbox, SandboxTarget};

use super::mysql_roundtrip::{FIXTURE, assert_corrupt_restore_leaves_nothing};

/// More tables of different sizes, so that each connection gets some.
const MORE: &str = r#"
CREATE TABLE orders (id INT PRIMARY KEY, customer INT, total DECIMAL(10,2), note TEXT);
INSERT INTO orders SELECT seq, seq % 97, seq * 1.25, REPEAT('o', seq % 50) FROM seq_1_to_30000;
CREATE TABLE lines_t (id INT PRIMARY KEY, order_id INT, sku CHAR(8),
  FOREIGN KEY (order_id) REFERENCES orders (id));
INSERT INTO lines_t SELECT seq, 1 + seq % 30000, LEFT(MD5(seq), 8) FROM seq_1_to_40000;
CREATE TABLE tiny (k VARCHAR(10) PRIMARY KEY);
INSERT INTO tiny VALUES ('a'), ('b');
CREATE TABLE `odd ``name` (x INT);
INSERT INTO `odd ``name` VALUES (1), (2), (3);
CREATE VIEW order_totals AS SELECT customer, SUM(total) AS t FROM orders GROUP BY customer;
"#;

/// Loads the fixture and the extra tables into `shop` and backs it up; returns the backup id.
fn load_and_back_up(s: &Sandbox) -> String {
    let my = s.mariadb.as_ref().expect("mariadb");
    my.sql("shop", FIXTURE);
    my.sql("shop", MORE);
    let rec = s.backup_ok("shop");
    find_str(&rec, "backup_id").expect("backup_id")
}

#[test]
fn mariadb_tables_load_over_several_connections_and_equal_the_source() {
    let s = Sandbox::builder("mysql_jobs")
        .mariadb_target(SandboxTarget::new("shop").extra("restore_jobs = 2"))
        .build();
    let my = s.mariadb.as_ref().expect("mariadb");
    let id = load_and_back_up(&s);

    let plan = s.restore(&id, "shop_plan", &["--jobs", "3", "--dry-run"]);
    plan.assert_ok();
    assert!(
        plan.to_string().contains("over 3 connection(s)"),
        "the dry run names the connections: {plan}"
    );

    // --jobs 3, then the target's default of 2, then one stream: all three equal the source.
    for (db, extra) in [
        ("shop_j3", &["--jobs", "3"][..]),
        ("shop_j2", &[][..]),
        ("shop_j1", &["--jobs", "1"][..]),
    ] {
        let r = s.restore(&id, db, extra);
        r.assert_ok();
        assert_eq!(
            find_str(&r.json(), "state").as_deref(),
            Some("succeeded"),
            "{db}: {r}"
        );
        my.assert_same_dumps("shop", db, s.dir.path());
    }
    // The connections really ran at once: the agent says how many it used.
    let log = s.agent.logs();
    assert!(
        log.contains("loading the dump's tables over several connections")
            && log.contains("connections=3"),
        "no parallel load in the agent's log"
    );
    let dbs = my.databases();
    assert!(
        !dbs.iter()
            .any(|d| d.starts_with("lifeboat_") || d == "shop_plan"),
        "leftover databases: {dbs:?}"
    );

    // A partial restore stays on one connection: --jobs with --table is refused.
    let r = s.restore(&id, "shop_part", &["--table", "orders", "--jobs", "2"]);
    assert!(!r.success(), "{r}");
    assert!(r.to_string().contains("one connection"), "{r}");
    assert!(!my.database_exists("shop_part"));
}

#[test]
fn a_damaged_archive_fails_every_connection_and_leaves_nothing() {
    let s = Sandbox::builder("mysql_jobs_bad")
        .mariadb_target(SandboxTarget::new("shop"))
        .build();
    let id = load_and_back_up(&s);
    let data = s.backup_dir("shop", &id).join("data.sql.zst");
    let mut bytes = std::fs::read(&data).expect("read data");
    let at = bytes.len() * 3 / 4;
    bytes[at] ^= 0x5a;
    std::fs::write(&data, &bytes).expect("write");

    assert_corrupt_restore_leaves_nothing(&s, &id, "shop_bad", &["--jobs", "3"]);
}
