//! D20, the oracle: awkward content → backup → restore into a fresh database → plain pg_dump
//! of both → no difference; the manifest's row counts match both databases; verify passes.

use lifeboat_e2e::fixtures::{load_awkward, load_bulk};
use lifeboat_e2e::sandbox::find_str;
use lifeboat_e2e::{Sandbox, SandboxTarget, assert_row_counts_match, assert_same_data};

#[test]
fn awkward_database_survives_backup_and_restore_unchanged() {
    let s = Sandbox::builder("d20")
        .target(SandboxTarget::new("awkward"))
        .build();
    load_awkward(&s.pg, "awkward");
    load_bulk(&s.pg, "awkward", "rows", 5000);

    let rec = s.backup_ok("awkward");
    let id = find_str(&rec, "backup_id").expect("backup_id");
    assert_row_counts_match(&s.pg, "awkward", &rec);

    let v = s.admin.run_json(&["backup", "verify", &id, "--wait"]);
    v.assert_ok();
    assert_eq!(
        find_str(&s.backup_show(&id), "verify_status").as_deref(),
        Some("ok")
    );

    let r = s.restore(&id, "awkward_copy", &[]);
    r.assert_ok();
    assert_eq!(
        find_str(&r.json(), "state").as_deref(),
        Some("succeeded"),
        "{r}"
    );
    assert_same_data(&s.pg, "awkward", "awkward_copy", s.dir.path());
    assert_row_counts_match(&s.pg, "awkward_copy", &rec);

    // Large objects keep their contents (the plain dump already compares them; this says so
    // in a way that reads on its own).
    let q = "SELECT string_agg(md5(lo_get(doc)), ',' ORDER BY id) FROM docs;";
    assert_eq!(
        s.pg.query_one("awkward", q),
        s.pg.query_one("awkward_copy", q)
    );
    // The sequence resumes where it was.
    assert_eq!(
        s.pg.query_one("awkward_copy", "SELECT nextval('counter');"),
        "123463"
    );

    s.shutdown();
}
