//! `restore --jobs N` of a MariaDB backup: the tables load over N connections at once, then the
//! views, routines and events; the copy equals the source (plain dumps compared), and a damaged
//! archive fails every connection with nothing left behind.

use lifeboat_e2e::sandbox::{ENV, find_str};
use lifeboat_e2e::{Sandbox, SandboxTarget};

use super::mysql_roundtrip::{FIXTURE, assert_corrupt_restore_leaves_nothing};
use super::parallel_restore::{scratch_dir, spools};

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

/// The data object's GETs in the S3 proxy's log from line `from` on.
fn data_gets(s: &Sandbox, from: usize) -> Vec<String> {
    let s3 = s.s3.as_ref().expect("s3");
    s3.proxy.log()[from..]
        .iter()
        .filter(|l| l.starts_with("GET ") && l.contains("/data.sql.zst"))
        .cloned()
        .collect()
}

#[test]
fn from_s3_the_archive_is_downloaded_once_for_all_connections() {
    let s = Sandbox::builder("mysql_jobs_s3")
        .s3(&[])
        .mariadb_target(SandboxTarget::new("shop"))
        .build();
    let my = s.mariadb.as_ref().expect("mariadb");
    let id = load_and_back_up(&s);
    let scratch = scratch_dir(&s);
    let s3 = s.s3.as_ref().expect("s3");

    let from = s3.proxy.log().len();
    let r = s.restore(&id, "shop_s3", &["--jobs", "3"]);
    r.assert_ok();
    my.assert_same_dumps("shop", "shop_s3", s.dir.path());
    let gets = data_gets(&s, from);
    assert_eq!(
        gets.len(),
        1,
        "four streams (three connections and the rest) from one download: {gets:?}"
    );
    assert!(s.agent.logs().contains("connections=3"), "no parallel load");
    assert!(spools(&scratch).is_empty(), "{:?}", spools(&scratch));

    // One stream needs no spool: it reads the repository directly, once.
    let from = s3.proxy.log().len();
    s.restore(&id, "shop_s3_one", &["--jobs", "1"]).assert_ok();
    my.assert_same_dumps("shop", "shop_s3_one", s.dir.path());
    assert_eq!(data_gets(&s, from).len(), 1);

    // A damaged object fails the download's own check: no connection starts, nothing stays.
    let object = s3.object_path(&format!("{ENV}/shop/{id}/data.sql.zst"));
    let mut bytes = std::fs::read(&object).expect("read object");
    let at = bytes.len() / 2;
    bytes[at] ^= 0x5a;
    std::fs::write(&object, &bytes).expect("write object");
    assert_corrupt_restore_leaves_nothing(&s, &id, "shop_s3_bad", &["--jobs", "3"]);
    assert!(spools(&scratch).is_empty(), "{:?}", spools(&scratch));
    assert!(
        !s.agent.logs().contains("loading connection"),
        "a connection started on a damaged download"
    );
}
