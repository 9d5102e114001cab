use super::*;
use crate::engine::mysql::{ClientTool, ServerFacts, Version};
use std::path::Path;

fn ep(host: &str, port: u16, tls: TlsLevel) -> Endpoint<'_> {
    Endpoint {
        host,
        port,
        tls,
        own_ca: false,
    }
}

fn check(p: Provider, host: &str, port: u16, tls: TlsLevel) -> Result<Vec<String>, ProviderError> {
    check_connection(p, p.engine(), &ep(host, port, tls))
}

fn mysql_tool(version: &str, help: &str) -> ClientTool {
    ClientTool::from_outputs(Path::new("/usr/bin/mysqldump"), version, help).expect("tool")
}

fn server(flavor: ServerFlavor, v: &str) -> ServerFacts {
    ServerFacts {
        version_string: v.into(),
        version: Version::parse_prefix(v).expect("v"),
        flavor,
        version_comment: String::new(),
        character_set: "utf8mb4".into(),
        collation: "utf8mb4_0900_ai_ci".into(),
        server_identity: String::new(),
        gtid_mode: Some("ON".into()),
        lower_case_table_names: 0,
        size_bytes: 0,
    }
}

const MYSQL80: &str = "mysqldump  Ver 8.0.36 for Linux on x86_64 (MySQL Community Server - GPL)";
const MYSQL80_HELP: &str = "  --set-gtid-purged[=name]\n  --column-statistics\n";
const MARIADB: &str =
    "mariadb-dump  Ver 10.19 Distrib 10.11.19-MariaDB, for debian-linux-gnu (x86_64)";

#[test]
fn names_round_trip_and_engines() {
    for p in Provider::ALL {
        assert_eq!(Provider::parse(p.as_str()), Some(p));
    }
    assert_eq!(Provider::parse("aurora"), None);
    assert_eq!(
        parse_for_engine("neon", Engine::Postgres),
        Ok(Provider::Neon)
    );
    let e = parse_for_engine("planetscale", Engine::Postgres).expect_err("wrong engine");
    assert!(e.to_string().contains("mysql engine"), "{e}");
    let e = parse_for_engine("aurora", Engine::Mysql).expect_err("unknown");
    assert!(e.to_string().contains("planetscale"), "{e}");
    assert_eq!(Provider::default_for(Engine::Mysql), Provider::Mysql);
    assert!(!Provider::Planetscale.can_create_databases());
    assert!(Provider::Mariadb.can_create_databases() && Provider::Supabase.can_create_databases());
    assert!(
        check_connection(
            Provider::Neon,
            Engine::Mysql,
            &ep("h", 1, TlsLevel::VerifyFull)
        )
        .is_err()
    );
}

#[test]
fn tls_levels() {
    assert_eq!(
        TlsLevel::from_pg_sslmode(None),
        Some(TlsLevel::Opportunistic)
    );
    assert_eq!(
        TlsLevel::from_pg_sslmode(Some("require")),
        Some(TlsLevel::Required)
    );
    assert_eq!(
        TlsLevel::from_pg_sslmode(Some("verify-full")),
        Some(TlsLevel::VerifyFull)
    );
    assert_eq!(TlsLevel::from_pg_sslmode(Some("bogus")), None);
    assert!(TlsLevel::Off < TlsLevel::Opportunistic && TlsLevel::Required < TlsLevel::VerifyCa);
}

#[test]
fn plain_profiles_accept_anything() {
    for p in [Provider::Postgres, Provider::Mysql, Provider::Mariadb] {
        assert_eq!(check(p, "10.0.0.5", 6543, TlsLevel::Off), Ok(vec![]), "{p}");
    }
}

#[test]
fn supabase_refuses_the_transaction_pooler() {
    for (host, port) in [
        ("aws-0-eu-central-1.pooler.supabase.com", 6543),
        ("db.abcdefgh.supabase.co", 6543),
    ] {
        let e = check(Provider::Supabase, host, port, TlsLevel::Required).expect_err(host);
        assert!(
            matches!(e, ProviderError::SupabaseTransactionPooler { .. }),
            "{e}"
        );
        let m = e.to_string();
        assert!(
            m.contains("transaction pooler") && m.contains("db.<project-ref>.supabase.co:5432"),
            "{m}"
        );
    }
    // Direct connection, verified with Supabase's CA: fine. Session pooler: fine, with a
    // note.
    assert_eq!(
        check_connection(
            Provider::Supabase,
            Engine::Postgres,
            &Endpoint {
                own_ca: true,
                ..ep("db.abcdefgh.supabase.co", 5432, TlsLevel::VerifyFull)
            }
        ),
        Ok(vec![])
    );
    let notes = check(
        Provider::Supabase,
        "aws-0-eu-central-1.pooler.supabase.com",
        5432,
        TlsLevel::Required,
    )
    .expect("session pooler");
    assert!(
        notes.iter().any(|n| n.contains("session pooler")),
        "{notes:?}"
    );
    let notes = check(
        Provider::Supabase,
        "db.abcdefgh.supabase.co",
        5432,
        TlsLevel::Opportunistic,
    )
    .expect("ok");
    assert!(
        notes.iter().any(|n| n.contains("sslmode=require")),
        "{notes:?}"
    );
}

#[test]
fn neon_refuses_pooler_endpoints_and_plaintext() {
    let e = check(
        Provider::Neon,
        "ep-cool-darkness-123456-pooler.us-east-2.aws.neon.tech",
        5432,
        TlsLevel::VerifyFull,
    )
    .expect_err("pooler");
    assert!(matches!(e, ProviderError::NeonPooler { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("ep-cool-darkness-123456.us-east-2.aws.neon.tech"),
        "{e}"
    );

    for tls in [TlsLevel::Off, TlsLevel::Opportunistic] {
        let e = check(
            Provider::Neon,
            "ep-cool-darkness-123456.us-east-2.aws.neon.tech",
            5432,
            tls,
        )
        .expect_err("no tls");
        assert!(matches!(e, ProviderError::TlsRequired { .. }), "{e}");
        assert!(e.to_string().contains("sslmode=require"), "{e}");
    }
    let notes = check(
        Provider::Neon,
        "ep-x.us-east-2.aws.neon.tech",
        5432,
        TlsLevel::Required,
    )
    .expect("ok");
    assert!(notes.iter().any(|n| n.contains("verify-full")), "{notes:?}");
    assert_eq!(
        check(
            Provider::Neon,
            "ep-x.us-east-2.aws.neon.tech",
            5432,
            TlsLevel::VerifyFull
        ),
        Ok(vec![])
    );
}

#[test]
fn railway_needs_tls_on_the_public_proxy_and_notes_private_networking() {
    let e = check(
        Provider::Railway,
        "roundhouse.proxy.rlwy.net",
        41234,
        TlsLevel::Opportunistic,
    )
    .expect_err("plaintext proxy");
    assert!(matches!(e, ProviderError::TlsRequired { .. }), "{e}");
    let notes = check(
        Provider::Railway,
        "roundhouse.proxy.rlwy.net",
        41234,
        TlsLevel::Required,
    )
    .expect("ok");
    assert!(
        notes.iter().any(|n| n.contains("railway.internal")),
        "{notes:?}"
    );
    let notes = check(
        Provider::Railway,
        "postgres.railway.internal",
        5432,
        TlsLevel::Opportunistic,
    )
    .expect("ok");
    assert!(
        notes.iter().any(|n| n.contains("private network")),
        "{notes:?}"
    );
}

#[test]
fn planetscale_requires_tls() {
    for tls in [TlsLevel::Off, TlsLevel::Opportunistic] {
        let e =
            check(Provider::Planetscale, "aws.connect.psdb.cloud", 3306, tls).expect_err("no tls");
        assert!(e.to_string().contains("ssl-mode=required"), "{e}");
    }
    let notes = check(
        Provider::Planetscale,
        "aws.connect.psdb.cloud",
        3306,
        TlsLevel::Required,
    )
    .expect("ok");
    assert!(
        notes.iter().any(|n| n.contains("verify_identity")),
        "{notes:?}"
    );
    assert_eq!(
        check(
            Provider::Planetscale,
            "aws.connect.psdb.cloud",
            3306,
            TlsLevel::VerifyFull
        ),
        Ok(vec![])
    );
}

#[test]
fn planetscale_dump_args() {
    let vitess = server(ServerFlavor::Vitess, "8.0.34-Vitess");
    let a = dump_args(
        Provider::Planetscale,
        &mysql_tool(MYSQL80, MYSQL80_HELP),
        &vitess,
    );
    assert_eq!(
        a,
        [
            "--single-transaction",
            "--skip-lock-tables",
            "--skip-add-locks",
            "--set-gtid-purged=OFF"
        ]
    );
    let a = dump_args(
        Provider::Planetscale,
        &mysql_tool(MYSQL80, "  --set-gtid-purged\n  --init-command=name\n"),
        &vitess,
    );
    assert_eq!(
        a.last().map(String::as_str),
        Some("--init-command=SET workload = 'olap'")
    );
    // MariaDB's tool has no --set-gtid-purged.
    let a = dump_args(Provider::Planetscale, &mysql_tool(MARIADB, ""), &vitess);
    assert_eq!(
        a,
        [
            "--single-transaction",
            "--skip-lock-tables",
            "--skip-add-locks"
        ]
    );
}

#[test]
fn mysql_and_mariadb_dump_args() {
    let mysql = server(ServerFlavor::MySql, "8.0.36");
    assert_eq!(
        dump_args(Provider::Mysql, &mysql_tool(MYSQL80, MYSQL80_HELP), &mysql),
        ["--set-gtid-purged=OFF"]
    );
    let maria = server(ServerFlavor::MariaDb, "10.11.19-MariaDB");
    assert!(dump_args(Provider::Mysql, &mysql_tool(MYSQL80, MYSQL80_HELP), &maria).is_empty());
    assert!(dump_args(Provider::Mariadb, &mysql_tool(MARIADB, ""), &maria).is_empty());
    assert_eq!(
        session_init_sql(Provider::Planetscale),
        Some("SET workload = 'olap'")
    );
    assert_eq!(session_init_sql(Provider::Mysql), None);
}

#[test]
fn row_limit_check() {
    let vitess = server(ServerFlavor::Vitess, "8.0.34-Vitess");
    let old = mysql_tool(MYSQL80, MYSQL80_HELP);
    let e = check_row_limit(
        Provider::Planetscale,
        &old,
        &vitess,
        Some(("events", 2_500_000)),
    )
    .expect_err("over the limit");
    assert!(
        e.contains("events") && e.contains("100000") && e.contains("init-command"),
        "{e}"
    );
    check_row_limit(
        Provider::Planetscale,
        &old,
        &vitess,
        Some(("small", 99_999)),
    )
    .expect("under");
    let new = mysql_tool(MYSQL80, "  --init-command=name\n");
    check_row_limit(
        Provider::Planetscale,
        &new,
        &vitess,
        Some(("events", 2_500_000)),
    )
    .expect("olap");
    let maria = server(ServerFlavor::MariaDb, "10.11.19");
    check_row_limit(Provider::Mariadb, &old, &maria, Some(("events", 2_500_000)))
        .expect("not vitess");
}

#[test]
fn supabase_schemas_are_skipped_only_into_another_provider() {
    let d = RestoreOptions::default();
    let s = skipped_schemas(Provider::Supabase, Provider::Postgres, &d);
    for want in [
        "auth",
        "storage",
        "realtime",
        "supabase_functions",
        "vault",
        "pgsodium",
        "net",
        "cron",
        "supabase_migrations",
        "graphql",
        "graphql_public",
        "pgbouncer",
        "_realtime",
        "_analytics",
        "pgsodium_masks",
    ] {
        assert!(s.contains(&want), "{want} not skipped: {s:?}");
    }
    assert!(
        !s.contains(&"public") && !s.contains(&"extensions"),
        "{s:?}"
    );
    assert!(skipped_schemas(Provider::Supabase, Provider::Supabase, &d).is_empty());
    assert!(skipped_schemas(Provider::Neon, Provider::Postgres, &d).is_empty());
    let incl = RestoreOptions {
        include_managed_schemas: true,
        ..d.clone()
    };
    assert!(skipped_schemas(Provider::Supabase, Provider::Neon, &incl).is_empty());
}

#[test]
fn restore_argument_lists() {
    let d = RestoreOptions::default();
    assert_eq!(
        restore_args(Provider::Postgres, Provider::Postgres, &d),
        ["--no-owner", "--no-privileges"]
    );
    assert_eq!(
        restore_args(Provider::Neon, Provider::Railway, &d),
        ["--no-owner", "--no-privileges"]
    );
    let a = restore_args(Provider::Supabase, Provider::Neon, &d);
    assert_eq!(&a[..2], ["--no-owner", "--no-privileges"]);
    assert!(
        a.contains(&"--exclude-schema=auth".to_owned())
            && a.contains(&"--exclude-schema=storage".to_owned()),
        "{a:?}"
    );
    assert_eq!(a.len(), 2 + SUPABASE_MANAGED_SCHEMAS.len());
    let keep = RestoreOptions {
        keep_owners_and_privileges: true,
        include_managed_schemas: true,
    };
    assert!(restore_args(Provider::Supabase, Provider::Neon, &keep).is_empty());
    assert_eq!(
        restore_args(Provider::Supabase, Provider::Supabase, &d),
        ["--no-owner", "--no-privileges"]
    );
    assert!(restore_args(Provider::Mariadb, Provider::Planetscale, &d).is_empty());
    assert!(check_restore_pair(Provider::Supabase, Provider::Planetscale).is_err());
    assert!(check_restore_pair(Provider::Mariadb, Provider::Planetscale).is_ok());
}

#[test]
fn urls_are_checked_with_their_tls_settings() {
    let u = |s: &str| url::Url::parse(s).expect("url");
    let e = check_url(Provider::Supabase, &u("postgres://postgres.ref@aws-0-eu-west-1.pooler.supabase.com:6543/postgres?sslmode=require"))
        .expect_err("transaction pooler");
    assert!(
        matches!(e, ProviderError::SupabaseTransactionPooler { .. }),
        "{e}"
    );
    assert!(
        check_url(
            Provider::Neon,
            &u("postgres://a@ep-x.eu-central-1.aws.neon.tech/app?sslmode=prefer")
        )
        .is_err(),
        "sslmode=prefer can be downgraded"
    );
    assert!(
        check_url(
            Provider::Neon,
            &u("postgresql://a@ep-x.eu-central-1.aws.neon.tech/app?sslmode=verify-full")
        )
        .is_ok()
    );
    let e = check_url(
        Provider::Neon,
        &u("postgres://a@ep-x.aws.neon.tech/app?sslmode=sure"),
    )
    .expect_err("bad mode");
    assert!(matches!(e, ProviderError::BadTlsMode(_)), "{e}");
    assert!(
        check_url(
            Provider::Planetscale,
            &u("mysql://u@aws.connect.psdb.cloud/shop?ssl-mode=preferred")
        )
        .is_err()
    );
    assert!(
        check_url(
            Provider::Planetscale,
            &u("mysql://u@aws.connect.psdb.cloud/shop?ssl-mode=verify_identity")
        )
        .is_ok()
    );
    assert!(
        check_url(
            Provider::Planetscale,
            &u("mysql://u@aws.connect.psdb.cloud/shop?ssl-ca=/etc/ssl/certs/ca-certificates.crt")
        )
        .is_ok()
    );
    let e = check_url(
        Provider::Planetscale,
        &u("postgres://u@h/d?sslmode=require"),
    )
    .expect_err("engine");
    assert!(matches!(e, ProviderError::WrongEngine { .. }), "{e}");
    assert_eq!(
        check_url(Provider::Mariadb, &u("mariadb://u@10.0.0.1/app")),
        Ok(vec![])
    );
}

#[test]
fn only_this_machine_is_local() {
    for h in [
        "",
        "localhost",
        "LOCALHOST",
        "127.0.0.1",
        "127.3.2.1",
        "[::1]",
        "::1",
        "%2Fvar%2Frun%2Fpostgresql",
        "/run/mysqld",
        "::ffff:127.0.0.1",
    ] {
        assert!(is_local_host(h), "{h:?} is this machine");
    }
    for h in [
        "db",
        "10.0.0.5",
        "192.168.1.2",
        "db.internal",
        "localhost.evil.example",
        "[2001:db8::1]",
        "0.0.0.0",
        "ep-x.neon.tech",
    ] {
        assert!(!is_local_host(h), "{h:?} is another machine");
    }
}

fn pg_defaults(url: &str) -> String {
    let mut u = url::Url::parse(url).expect("url");
    pg_tls_defaults(&mut u).expect("defaults");
    u.to_string()
}

#[test]
fn postgres_urls_verify_remote_hosts_by_default() {
    let bundle = format!("sslrootcert={}", SYSTEM_CA_BUNDLE.replace('/', "%2F"));
    let remote = pg_defaults("postgres://u@db.example.com:5432/app");
    assert!(remote.contains("sslmode=verify-full"), "{remote}");
    assert!(remote.contains(&bundle), "{remote}");
    // Loopback and sockets keep libpq's default.
    for local in [
        "postgres://u@127.0.0.1:5432/app",
        "postgres://u@localhost/app",
    ] {
        assert_eq!(pg_defaults(local), local);
    }
    // A mode named in the URL is kept; its own CA is kept.
    let explicit = "postgres://u@db/app?sslmode=prefer";
    assert_eq!(pg_defaults(explicit), explicit);
    let own = "postgres://u@db/app?sslmode=verify-ca&sslrootcert=/etc/lifeboat/ca.pem";
    assert_eq!(pg_defaults(own), own);
    // Verifying to loopback with no CA gets the bundle too (not ~/.postgresql/root.crt).
    let v = pg_defaults("postgres://u@127.0.0.1/app?sslmode=verify-full");
    assert!(v.contains(&bundle), "{v}");
    // The profiles judge the defaulted URL: a remote host without a mode is verify-full.
    let neon = url::Url::parse("postgres://a@ep-x.eu-central-1.aws.neon.tech/app").expect("url");
    let notes = check_url(Provider::Neon, &neon).expect("verify-full by default is enough");
    assert!(notes.is_empty(), "{notes:?}");
}

#[test]
fn providers_with_a_private_ca_need_it_named_or_require() {
    let u = |s: &str| url::Url::parse(s).expect("url");
    for url in [
        "postgres://postgres@db.abcd.supabase.co:5432/postgres",
        "postgres://postgres@db.abcd.supabase.co:5432/postgres?sslmode=verify-full",
    ] {
        let e = check_url(Provider::Supabase, &u(url)).expect_err(url);
        assert!(matches!(e, ProviderError::SupabaseCa { .. }), "{e}");
        assert!(
            e.to_string().contains("sslrootcert=") && e.to_string().contains("sslmode=require"),
            "{e}"
        );
    }
    check_url(
        Provider::Supabase,
        &u("postgres://postgres@db.abcd.supabase.co:5432/postgres?sslmode=verify-full&sslrootcert=/etc/lifeboat/supabase.crt"),
    )
    .expect("Supabase's own CA");
    check_url(
        Provider::Supabase,
        &u("postgres://postgres@db.abcd.supabase.co:5432/postgres?sslmode=require"),
    )
    .expect("require");
    let e = check_url(
        Provider::Railway,
        &u("postgres://postgres@x.proxy.rlwy.net:40000/railway"),
    )
    .expect_err("self-signed");
    assert!(e.to_string().contains("sslmode=require"), "{e}");
    check_url(
        Provider::Railway,
        &u("postgres://postgres@x.proxy.rlwy.net:40000/railway?sslmode=require"),
    )
    .expect("require");
}

#[test]
fn mysql_urls_verify_remote_hosts_by_default() {
    use crate::engine::mysql::{ConnParams, TlsMode};
    let p = |s: &str| ConnParams::from_url(&url::Url::parse(s).expect("url")).expect("params");
    assert_eq!(
        p("mysql://u@db.example.com/app").tls,
        TlsMode::VerifyIdentity
    );
    assert_eq!(p("mysql://u@127.0.0.1/app").tls, TlsMode::Preferred);
    assert_eq!(
        p("mysql://u@db/app?socket=/run/mysqld/mysqld.sock").tls,
        TlsMode::Preferred
    );
    assert_eq!(
        p("mysql://u@db/app?ssl-mode=preferred").tls,
        TlsMode::Preferred
    );
    let remote = url::Url::parse("mysql://u@aws.connect.psdb.cloud/shop").expect("url");
    assert!(
        check_url(Provider::Planetscale, &remote)
            .expect("verified")
            .is_empty()
    );
}

#[test]
fn tls_failures_get_a_next_step() {
    use crate::dbhost::{mysql_tls_hint, pg_tls_hint};
    let h = pg_tls_hint("error communicating with database: server does not support TLS")
        .expect("no tls");
    assert!(h.contains("sslmode=prefer"), "{h}");
    let h = mysql_tls_hint(
        "error occurred while attempting to establish a TLS connection: invalid peer certificate: UnknownIssuer",
    )
    .expect("cert");
    assert!(h.contains("ssl-ca="), "{h}");
    assert_eq!(
        pg_tls_hint("password authentication failed for user \"u\""),
        None
    );
}
