//! D18: restore into an existing, non-empty database: refused without --clean; refused by the
//! coordinator with --clean for the operator role; done with --clean by an admin, and then the
//! data is the backup's.

use lifeboat_e2e::compare::{assert_same_dump, dump_sql};
use lifeboat_e2e::fixtures::load_awkward;
use lifeboat_e2e::sandbox::find_str;
use lifeboat_e2e::{Sandbox, SandboxTarget, assert_same_data};

#[test]
fn restore_over_existing_database_needs_clean_and_admin() {
    let s = Sandbox::builder("d18")
        .target(
            SandboxTarget::new("app")
                .extra("allow_clean_restore = true\nreplaceable_databases = [\"existing\"]"),
        )
        .target(SandboxTarget::new("locked"))
        .target(SandboxTarget::new("narrow").extra("allow_clean_restore = true"))
        .operator("ops", "operator")
        .build();
    load_awkward(&s.pg, "app");
    let rec = s.backup_ok("app");
    let id = find_str(&rec, "backup_id").expect("backup_id");

    s.pg.create_db("existing");
    s.pg.psql(
        "existing",
        "CREATE TABLE precious (id int PRIMARY KEY, v text);\n\
         INSERT INTO precious SELECT i, 'keep me ' || i FROM generate_series(1, 100) i;",
    );
    let original = dump_sql(&s.pg, "existing");
    let dbs_before = s.pg.databases();

    // No --clean: refused, nothing changed.
    let out = s.restore(&id, "existing", &[]);
    assert_ne!(
        out.code, 0,
        "restore over a non-empty database without --clean: {out}"
    );
    let text = out.text_lower();
    assert!(
        text.contains("not empty") || text.contains("exists"),
        "the refusal must say the database exists and is not empty: {out}"
    );
    assert_same_dump(
        &original,
        &dump_sql(&s.pg, "existing"),
        "d18 no clean",
        s.dir.path(),
    );
    assert_eq!(
        s.pg.databases(),
        dbs_before,
        "no scratch database left behind"
    );

    // --clean by an operator: refused by the coordinator, before any job runs.
    let ops = s.ctl_as("ops");
    let out = s.restore_as(&ops, &id, "existing", &["--clean"]);
    assert_eq!(
        out.code, 1,
        "operator role must not restore with --clean: {out}"
    );
    let text = out.text_lower();
    assert!(
        text.contains("admin") || text.contains("permission"),
        "the refusal must name the missing role: {out}"
    );
    let jobs = s.admin.json(&["jobs", "list"]);
    assert!(
        !jobs
            .as_array()
            .expect("array")
            .iter()
            .any(|j| j["requested_by"] == "ops"),
        "a job was created for the refused request: {jobs}"
    );
    assert_same_dump(
        &original,
        &dump_sql(&s.pg, "existing"),
        "d18 operator",
        s.dir.path(),
    );

    // An operator may still restore into a new database.
    s.restore_as(&ops, &id, "ops_copy", &[]).assert_ok();
    assert_same_data(&s.pg, "app", "ops_copy", s.dir.path());

    // --clean by an admin onto a target whose agent config does not allow replacing
    // databases: refused by the agent, nothing changed.
    let locked = s.target("locked");
    let out = s.restore(&id, "existing", &["--clean", "--to", &locked]);
    assert_ne!(
        out.code, 0,
        "agent allowed --clean without allow_clean_restore: {out}"
    );
    assert!(
        out.text_lower().contains("allow_clean_restore"),
        "the refusal must name the agent setting: {out}"
    );
    assert_same_dump(
        &original,
        &dump_sql(&s.pg, "existing"),
        "d18 locked target",
        s.dir.path(),
    );

    // --clean onto a target that allows replacing only its own database: refused by the
    // agent for any other database, naming the setting; nothing changed.
    let narrow = s.target("narrow");
    let out = s.restore(&id, "existing", &["--clean", "--to", &narrow]);
    assert_ne!(out.code, 0, "--clean replaced a database not listed: {out}");
    assert!(
        out.text_lower().contains("replaceable_databases"),
        "the refusal must name the agent setting: {out}"
    );
    assert_same_dump(
        &original,
        &dump_sql(&s.pg, "existing"),
        "d18 narrow target",
        s.dir.path(),
    );

    // --clean by an admin: replaced, and the data is the backup's.
    let out = s.restore(&id, "existing", &["--clean"]);
    out.assert_ok();
    assert_same_data(&s.pg, "app", "existing", s.dir.path());
    let mut expected = dbs_before.clone();
    expected.push("ops_copy".to_owned());
    expected.sort();
    assert_eq!(
        s.pg.databases(),
        expected,
        "no scratch or old copy left behind"
    );

    s.shutdown();
}
