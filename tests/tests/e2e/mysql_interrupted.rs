//! D19 for MySQL-engine targets: a restore interrupted midway (the SQL client stalled after
//! part of the dump, then the job cancelled) is never reported restored and leaves no database
//! under its name nor a scratch copy; an interrupted `--clean` restore leaves the database it
//! was replacing as it was; running either again succeeds with data equal to the source.

use lifeboat_e2e::sandbox::find_str;
use lifeboat_e2e::wrappers::{MariaDbBinDir, mariadb};
use lifeboat_e2e::{Sandbox, SandboxTarget, TestDir};

use crate::engine_faults::interrupted_restore_leaves_nothing;

#[test]
fn interrupted_mariadb_restores_leave_nothing_half_done() {
    let dir = TestDir::new("mysql-d19");
    let bin = MariaDbBinDir::new(&dir.path().join("bin"));
    bin.wrap("mariadb", &mariadb::stall_when_marked(128 * 1024, 90));
    let s = Sandbox::builder("mysql-d19")
        .dir(dir)
        .mariadb_target(
            SandboxTarget::new("shop")
                .pg_bin_dir(bin.path())
                .extra("allow_clean_restore = true\nreplaceable_databases = [\"shop_copy\"]"),
        )
        .build();
    let my = s.mariadb.as_ref().expect("mariadb");
    my.sql(
        "shop",
        "CREATE TABLE rows_t (id INT PRIMARY KEY, v CHAR(64)) ENGINE=InnoDB;
         INSERT INTO rows_t SELECT seq, SHA2(seq, 256) FROM seq_1_to_20000;
         CREATE VIEW v AS SELECT COUNT(*) AS n FROM rows_t;",
    );
    let source = my.dump_sql("shop");
    let rec = s.backup_ok("shop");
    let id = find_str(&rec, "backup_id").expect("backup_id");
    let databases_are = |want: Vec<String>| {
        move || {
            let dbs = my.databases();
            if dbs == want {
                Ok(())
            } else {
                anyhow::bail!("databases {dbs:?}, before {want:?}")
            }
        }
    };

    // A new database: interrupted, nothing is left; again, it is restored.
    interrupted_restore_leaves_nothing(
        &s,
        bin.path(),
        &["restore", &id, "--database", "shop_copy"],
        databases_are(my.databases()),
    );
    s.restore(&id, "shop_copy", &[]).assert_ok();
    assert_eq!(my.dump_sql("shop_copy"), source);

    // Replacing it: interrupted, the database being replaced is as it was.
    my.sql("shop_copy", "DELETE FROM rows_t WHERE id > 19000;");
    let replaced = my.dump_sql("shop_copy");
    assert_ne!(replaced, source);
    interrupted_restore_leaves_nothing(
        &s,
        bin.path(),
        &["restore", &id, "--database", "shop_copy", "--clean"],
        databases_are(my.databases()),
    );
    assert_eq!(
        my.dump_sql("shop_copy"),
        replaced,
        "an interrupted --clean restore changed the database it was replacing"
    );
    s.restore(&id, "shop_copy", &["--clean"]).assert_ok();
    assert_eq!(my.dump_sql("shop_copy"), source);
    s.shutdown();
}
