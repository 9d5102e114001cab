//! The harness checks itself: the data oracle must see no difference between a database and a
//! faithful copy, and must fail on a one-byte difference. Needs PostgreSQL, not lifeboat.

use std::panic::{AssertUnwindSafe, catch_unwind};

use lifeboat_e2e::compare::{assert_same_data, user_tables};
use lifeboat_e2e::fixtures::load_awkward;
use lifeboat_e2e::{Pg, TestDir, assert_row_counts_match};
use serde_json::json;

/// Copies `src` into a new database `dst` with the real pg_dump -Fc | pg_restore.
fn copy_db(pg: &Pg, src: &str, dst: &str) {
    let dump = pg.client("pg_dump", &["-d", src, "-Fc", "-Z0"], b"");
    assert!(
        dump.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&dump.stderr)
    );
    assert!(
        dump.stdout.starts_with(b"PGDMP"),
        "not a custom-format archive"
    );
    pg.create_db(dst);
    let restore = pg.client("pg_restore", &["-d", dst, "--exit-on-error"], &dump.stdout);
    assert!(
        restore.status.success(),
        "pg_restore: {}",
        String::from_utf8_lossy(&restore.stderr)
    );
}

fn fails(f: impl FnOnce()) -> bool {
    catch_unwind(AssertUnwindSafe(f)).is_err()
}

#[test]
fn oracle_accepts_a_faithful_copy_and_rejects_a_one_byte_change() {
    let dir = TestDir::new("harness-oracle");
    let pg = Pg::start();
    pg.create_db("src");
    load_awkward(&pg, "src");
    copy_db(&pg, "src", "copy");
    assert_same_data(&pg, "src", "copy", dir.path());

    // Row counts as the agent records them (ordinary tables and leaf partitions).
    let counts: Vec<_> = user_tables(&pg, "src")
        .into_iter()
        .map(|(s, t)| {
            let n = lifeboat_e2e::compare::count_rows(&pg, "src", &s, &t);
            json!({"schema": s, "table": t, "rows": n})
        })
        .collect();
    assert!(counts.len() >= 8, "fixture tables: {counts:?}");
    let record = json!({ "row_counts": counts });
    assert_row_counts_match(&pg, "copy", &record);

    // One byte of a bytea value.
    pg.psql(
        "copy",
        "UPDATE \"Weird \"\"Table\"\"\" SET b = '\\x00010200fe00'::bytea WHERE id = 1;",
    );
    assert!(
        fails(|| assert_same_data(&pg, "src", "copy", dir.path())),
        "a changed bytea byte went unnoticed"
    );

    // A large object's content.
    copy_db(&pg, "src", "copy2");
    pg.psql(
        "copy2",
        "SELECT lo_put(doc, 1, '\\xee'::bytea) FROM docs WHERE id = 1;",
    );
    assert!(
        fails(|| assert_same_data(&pg, "src", "copy2", dir.path())),
        "a changed large object went unnoticed"
    );

    // A sequence position.
    copy_db(&pg, "src", "copy3");
    pg.psql("copy3", "SELECT nextval('counter');");
    assert!(
        fails(|| assert_same_data(&pg, "src", "copy3", dir.path())),
        "an advanced sequence went unnoticed"
    );

    // A missing row fails the row-count check.
    pg.psql("copy3", "DELETE FROM events WHERE id = 1;");
    assert!(
        fails(|| assert_row_counts_match(&pg, "copy3", &record)),
        "a missing row went unnoticed by the row-count check"
    );
}
