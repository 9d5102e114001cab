//! D19: a restore cancelled midway (pg_restore stalled after part of the archive) ends
//! cancelled or failed, and the database is not there under its name (nor a scratch copy);
//! running the restore again succeeds and the data matches.

use anyhow::bail;
use lifeboat_e2e::fixtures::{load_awkward, load_bulk};
use lifeboat_e2e::sandbox::find_str;
use lifeboat_e2e::wrappers::{PgBinDir, pg_restore};
use lifeboat_e2e::{Sandbox, SandboxTarget, TestDir, assert_same_data};

use crate::engine_faults::interrupted_restore_leaves_nothing;

#[test]
fn cancelled_restore_leaves_no_database_and_rerun_succeeds() {
    let dir = TestDir::new("d19");
    let bin = PgBinDir::new(&dir.path().join("bin"));
    bin.wrap("pg_restore", &pg_restore::stall_when_marked(256 * 1024, 90));
    let s = Sandbox::builder("d19")
        .dir(dir)
        .target(SandboxTarget::new("app").pg_bin_dir(bin.path()))
        .build();
    load_awkward(&s.pg, "app");
    load_bulk(&s.pg, "app", "rows", 20_000);
    let rec = s.backup_ok("app");
    let id = find_str(&rec, "backup_id").expect("backup_id");
    let dbs_before = s.pg.databases();

    // Nothing half-restored under the requested name or a scratch name; pg_restore is gone.
    interrupted_restore_leaves_nothing(
        &s,
        bin.path(),
        &["restore", &id, "--database", "d19_copy"],
        || {
            let dbs = s.pg.databases();
            if dbs != dbs_before {
                bail!("databases {dbs:?}, before {dbs_before:?}");
            }
            let n = s.pg.query_one(
                "postgres",
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_restore';",
            );
            if n != "0" {
                bail!("{n} pg_restore sessions still open");
            }
            Ok(())
        },
    );

    // Run it again, without the stall.
    let out = s.restore(&id, "d19_copy", &[]);
    out.assert_ok();
    assert_same_data(&s.pg, "app", "d19_copy", s.dir.path());

    s.shutdown();
}
