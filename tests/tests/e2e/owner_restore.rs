//! The normal managed-PostgreSQL setup (Supabase, Neon, Railway, least-privilege self-hosted):
//! the database is owned by a role that is not a superuser and logs in with a password. That
//! role backs up, `targets check` passes, and the default restore (owners kept) into a new
//! database succeeds: the built-in `pg_database_owner` (owner of `public` since PostgreSQL 15)
//! and other `pg_*` roles are the server's own and never block the pre-flight. The restored
//! database equals the source (pg_dump diff, owners and privileges included).

use lifeboat_e2e::compare::assert_same_data;
use lifeboat_e2e::sandbox::find_str;
use lifeboat_e2e::{Sandbox, SandboxTarget};

#[test]
fn a_non_superuser_owner_restores_with_owners_kept() {
    let s = Sandbox::builder("owner-restore")
        .pg_password("super-pw-1")
        .target(
            SandboxTarget::new("app")
                .database("app")
                .user("app_owner", "owner-pw-1"),
        )
        .build();
    s.pg.psql(
        "postgres",
        "CREATE ROLE app_owner LOGIN CREATEDB PASSWORD 'owner-pw-1';
         CREATE ROLE app_reader NOLOGIN;
         GRANT app_reader TO app_owner;
         ALTER DATABASE app OWNER TO app_owner;",
    );
    s.pg.psql(
        "app",
        "SET ROLE app_owner;
         CREATE TABLE orders (id int PRIMARY KEY, customer text, total numeric(10,2));
         INSERT INTO orders SELECT g, 'customer ' || g, g / 7.0 FROM generate_series(1, 2000) g;
         CREATE SCHEMA reporting;
         CREATE VIEW reporting.big_orders AS SELECT * FROM orders WHERE total > 100;
         GRANT USAGE ON SCHEMA reporting TO app_reader;
         GRANT SELECT ON reporting.big_orders TO app_reader;
         GRANT SELECT ON orders TO pg_read_all_data;",
    );
    // Sanity: the setup is the one this test is about.
    assert_eq!(
        s.pg.query_one(
            "app",
            "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'public'"
        ),
        "pg_database_owner"
    );
    assert_eq!(
        s.pg.query_one(
            "app",
            "SELECT rolsuper FROM pg_roles WHERE rolname = 'app_owner'"
        ),
        "f"
    );

    // targets check predicts what the restore pre-flight decides: owners can be restored.
    let check = s.admin.json(&["targets", "check", &s.target("app")]);
    assert_eq!(check["state"], "succeeded", "{check}");
    let owners = check.to_string();
    assert!(
        owners.contains("\"owners\""),
        "targets check must report on owners: {check}"
    );
    assert!(
        !owners.contains("pg_database_owner"),
        "a built-in role was named as a problem: {check}"
    );

    let backup = s.backup_ok("app");
    let id = find_str(&backup, "backup_id").expect("backup id");
    let out = s.restore(&id, "app_copy", &[]);
    assert!(
        out.success(),
        "the default restore (owners kept) was refused or failed: {out}"
    );
    assert!(!out.text_lower().contains("pg_database_owner"), "{out}");
    assert_same_data(&s.pg, "app", "app_copy", s.dir.path());
    assert_eq!(
        s.pg.query_one(
            "app_copy",
            "SELECT relowner::regrole::text FROM pg_class WHERE relname = 'orders'"
        ),
        "app_owner"
    );

    // A role the backup needs that the destination lacks is still refused by name.
    s.pg.psql("app", "DROP OWNED BY app_reader;");
    s.pg.psql("app_copy", "DROP OWNED BY app_reader;");
    s.pg.psql(
        "postgres",
        "REVOKE app_reader FROM app_owner; DROP ROLE app_reader;",
    );
    let out = s.restore(&id, "app_copy2", &[]);
    assert!(!out.success(), "a missing role must refuse: {out}");
    assert!(out.text_lower().contains("app_reader"), "{out}");
    assert!(!out.text_lower().contains("pg_database_owner"), "{out}");
    assert!(!s.pg.database_exists("app_copy2"));

    // A role the owner is not a member of owns a table: targets check says that a restore
    // will be refused, naming the role, and the restore is refused for that very role.
    s.pg.psql(
        "app",
        "CREATE ROLE app_auditor NOLOGIN;
         CREATE TABLE audit_trail (id int);
         ALTER TABLE audit_trail OWNER TO app_auditor;
         GRANT SELECT ON audit_trail TO app_owner;",
    );
    let check = s.admin.json(&["targets", "check", &s.target("app")]);
    let owners: Vec<_> = check["report"]["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["check"] == "owners")
        .collect();
    assert_eq!(owners.len(), 1, "{check}");
    assert_eq!(owners[0]["severity"], "warning", "{check}");
    let said = owners[0]["message"].as_str().unwrap_or_default();
    assert!(
        said.contains("app_auditor") && !said.contains("pg_"),
        "{check}"
    );
    let backup = s.backup_ok("app");
    let id = find_str(&backup, "backup_id").expect("backup id");
    let out = s.restore(&id, "app_copy3", &[]);
    assert!(!out.success(), "{out}");
    assert!(out.text_lower().contains("app_auditor"), "{out}");
    assert!(!s.pg.database_exists("app_copy3"));
}
