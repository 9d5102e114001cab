use super::*;

/// What `pg_dumpall --globals-only` (15) writes, with the section lifeboat appends.
const DUMP: &str = r#"--
-- PostgreSQL database cluster dump
--

SET default_transaction_read_only = off;

SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;

--
-- Roles
--

CREATE ROLE app_owner;
ALTER ROLE app_owner WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS PASSWORD 'SCRAM-SHA-256$4096:c2FsdA==$aGFzaA==:a2V5';
CREATE ROLE postgres;
ALTER ROLE postgres WITH SUPERUSER INHERIT CREATEROLE CREATEDB LOGIN REPLICATION BYPASSRLS;
CREATE ROLE readers;
ALTER ROLE readers WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB NOLOGIN NOREPLICATION NOBYPASSRLS;
CREATE ROLE "Reporting; drop";
ALTER ROLE "Reporting; drop" WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS;
CREATE ROLE root_like;
ALTER ROLE root_like WITH SUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS;
COMMENT ON ROLE readers IS 'can read;
everything';
ALTER ROLE "Reporting; drop" SET statement_timeout TO '5s';
CREATE ROLE pg_hacker;

--
-- Role memberships
--

GRANT readers TO "Reporting; drop" GRANTED BY postgres;
GRANT readers TO root_like WITH ADMIN OPTION GRANTED BY postgres;

--
-- Tablespaces
--

CREATE TABLESPACE fast OWNER postgres LOCATION '/srv/fast';

--
-- PostgreSQL database cluster dump complete
--

--
-- lifeboat: settings, owner and privileges of the backed-up database
--
ALTER DATABASE orders OWNER TO app_owner;
ALTER DATABASE orders SET "work_mem" TO '8MB';
ALTER ROLE readers IN DATABASE orders SET "search_path" TO 'app';
REVOKE ALL ON DATABASE orders FROM PUBLIC;
GRANT CONNECT ON DATABASE orders TO readers;
"#;

fn server(roles: &[&str]) -> Server {
    Server {
        provider: Some(Provider::Postgres),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        ..Default::default()
    }
}

#[test]
fn statements_are_split_on_semicolons_outside_quotes_and_comments() {
    let s = split(DUMP);
    assert!(
        s.contains(&"CREATE ROLE \"Reporting; drop\";".to_owned()),
        "{s:#?}"
    );
    assert!(
        s.contains(&"COMMENT ON ROLE readers IS 'can read;\neverything';".to_owned()),
        "{s:#?}"
    );
    assert!(s.iter().all(|x| !x.starts_with("--")), "{s:#?}");
    assert_eq!(
        split("SELECT $x$a;b$x$; SELECT E'it\\'s;'"),
        ["SELECT $x$a;b$x$;", "SELECT E'it\\'s;'"]
    );
    let stmts = parse(DUMP);
    assert_eq!(counts(&stmts), (6, 2));
    assert!(stmts.contains(&Stmt::Membership {
        role: "readers".into(),
        member: "Reporting; drop".into(),
        text: "GRANT readers TO \"Reporting; drop\";".into(),
    }));
    assert!(stmts.contains(&Stmt::Tablespace {
        name: "fast".into()
    }));
    let db: Vec<&Stmt> = stmts
        .iter()
        .filter(|s| matches!(s, Stmt::Database { .. }))
        .collect();
    assert_eq!(db.len(), 5, "{db:#?}");
    let Stmt::Database { text, name_at, .. } = db[1] else {
        unreachable!()
    };
    assert_eq!(
        Stmt::for_database(text, *name_at, "orders copy"),
        "ALTER DATABASE \"orders copy\" SET \"work_mem\" TO '8MB';"
    );
}

#[test]
fn existing_reserved_and_superuser_roles_are_not_created() {
    let p = plan(&parse(DUMP), &server(&["postgres"]));
    let fate = |r: &str| p.roles.iter().find(|(n, _)| n == r).map(|(_, f)| f.clone());
    assert_eq!(fate("app_owner"), Some(Fate::Create));
    assert_eq!(fate("readers"), Some(Fate::Create));
    assert_eq!(fate("Reporting; drop"), Some(Fate::Create));
    assert_eq!(fate("postgres"), Some(Fate::Exists));
    assert!(
        matches!(fate("root_like"), Some(Fate::Refused(why)) if why.contains("--allow-superuser"))
    );
    assert!(matches!(fate("pg_hacker"), Some(Fate::Refused(why)) if why.contains("reserved")));
    // Nothing runs for a role that exists or is refused.
    let all = p.statements.join("\n");
    assert!(!all.contains("postgres WITH"), "{all}");
    assert!(!all.contains("root_like"), "{all}");
    assert!(!all.contains("pg_hacker"), "{all}");
    assert!(!all.contains("TABLESPACE"), "{all}");
    assert!(!all.contains("GRANTED BY"), "{all}");
    // The default attributes of a new role are left out (superuser-only to name on 15).
    assert!(
        !all.contains("NOSUPERUSER") && !all.contains("NOREPLICATION"),
        "{all}"
    );
    assert!(
        all.contains("ALTER ROLE \"readers\" WITH INHERIT NOCREATEROLE NOCREATEDB NOLOGIN;"),
        "{all}"
    );
    assert!(
        all.contains("ALTER ROLE \"Reporting; drop\" SET statement_timeout TO '5s';"),
        "{all}"
    );
    assert!(p.passwords, "app_owner's hash is in this dump");
    assert_eq!(
        p.memberships,
        vec![
            (("readers".into(), "Reporting; drop".into()), Fate::Create),
            (
                ("readers".into(), "root_like".into()),
                Fate::Refused("role root_like is not created".into())
            ),
        ]
    );
    assert_eq!(p.tablespaces, ["fast"]);

    let allowed = plan(
        &parse(DUMP),
        &Server {
            allow_superuser: true,
            ..server(&["postgres"])
        },
    );
    assert!(allowed.created_roles().any(|r| r == "root_like"));
    assert!(
        allowed
            .statements
            .iter()
            .any(|s| s.contains("\"root_like\" WITH SUPERUSER"))
    );
}

#[test]
fn a_second_run_creates_nothing() {
    let stmts = parse(DUMP);
    let mut s = server(&[
        "postgres",
        "app_owner",
        "readers",
        "Reporting; drop",
        "root_like",
    ]);
    s.memberships
        .insert(("readers".into(), "Reporting; drop".into()));
    s.memberships.insert(("readers".into(), "root_like".into()));
    let p = plan(&stmts, &s);
    assert_eq!(p.created_roles().count(), 0);
    assert!(
        p.memberships.iter().all(|(_, f)| *f == Fate::Exists),
        "{:?}",
        p.memberships
    );
    assert!(
        p.statements.iter().all(|s| s.starts_with("SET ")),
        "only session settings run: {:?}",
        p.statements
    );
}

#[test]
fn managed_providers_keep_their_roles_and_never_get_a_superuser() {
    let dump = "CREATE ROLE anon;\nCREATE ROLE supabase_storage_admin;\nCREATE ROLE service_role;\nCREATE ROLE app;\nCREATE ROLE boss;\nALTER ROLE boss WITH SUPERUSER LOGIN;\n";
    let p = plan(
        &parse(dump),
        &Server {
            provider: Some(Provider::Supabase),
            allow_superuser: true,
            ..Default::default()
        },
    );
    let refused: Vec<&str> = p
        .roles
        .iter()
        .filter(|(_, f)| matches!(f, Fate::Refused(_)))
        .map(|(r, _)| r.as_str())
        .collect();
    assert_eq!(
        refused,
        ["anon", "supabase_storage_admin", "service_role", "boss"]
    );
    assert_eq!(p.created_roles().collect::<Vec<_>>(), ["app"]);
    for (provider, role) in [
        (Provider::Neon, "neon_superuser"),
        (Provider::Railway, "postgres"),
    ] {
        assert!(reserved_role(role, provider).is_some(), "{provider} {role}");
        assert!(reserved_role(role, Provider::Postgres).is_none() || role.starts_with("pg_"));
    }
}

#[test]
fn odd_statements_are_not_taken_for_roles() {
    assert_eq!(
        classify("CREATE ROLE x WITH SUPERUSER;"),
        Stmt::Other("CREATE ROLE x WITH SUPERUSER;".into())
    );
    assert!(matches!(classify("GRANT a, b TO c;"), Stmt::Other(_)));
    assert!(matches!(classify("DROP ROLE x;"), Stmt::Other(_)));
    assert!(matches!(
        classify("ALTER ROLE x WITH LOGIN PASSWORD 'secret';"),
        Stmt::RoleAttributes {
            password: true,
            superuser: false,
            ..
        }
    ));
    assert!(matches!(
        classify("ALTER ROLE x WITH NOSUPERUSER;"),
        Stmt::RoleAttributes {
            superuser: false,
            ..
        }
    ));
}
