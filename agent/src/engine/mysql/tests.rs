use std::path::Path;

use lifeboat_common::secret::Secret;

use super::*;

fn url(s: &str) -> url::Url {
    url::Url::parse(s).expect("url")
}

pub(crate) fn tool(version_text: &str, help: &str) -> ClientTool {
    ClientTool::from_outputs(Path::new("/usr/bin/mysqldump"), version_text, help).expect("parse")
}

pub(crate) const MARIADB_DUMP: &str =
    "mariadb-dump  Ver 10.19 Distrib 10.11.19-MariaDB, for debian-linux-gnu (x86_64)";
pub(crate) const MYSQL_DUMP_80: &str =
    "mysqldump  Ver 8.0.36 for Linux on x86_64 (MySQL Community Server - GPL)";
pub(crate) const MYSQL_HELP: &str =
    "  --set-gtid-purged[=name]\n  --column-statistics  Add ANALYZE\n  --single-transaction\n";

pub(crate) fn server(flavor: ServerFlavor, version: &str) -> ServerFacts {
    ServerFacts {
        version_string: version.into(),
        version: Version::parse_prefix(version).expect("version"),
        flavor,
        version_comment: String::new(),
        character_set: "utf8mb4".into(),
        collation: "utf8mb4_unicode_ci".into(),
        server_identity: "1".into(),
        gtid_mode: None,
        lower_case_table_names: 0,
        size_bytes: 0,
    }
}

#[test]
fn urls() {
    let p = ConnParams::from_url(&url("mysql://backup@db.example:3307/orders")).expect("ok");
    assert_eq!(
        (
            p.host.as_str(),
            p.port,
            p.user.as_str(),
            p.database.as_str()
        ),
        ("db.example", 3307, "backup", "orders")
    );
    // Another host and no ssl-mode: verified by default.
    assert_eq!(p.tls, TlsMode::VerifyIdentity);
    assert_eq!(p.describe("orders"), "backup@db.example:3307/orders");

    let p = ConnParams::from_url(&url(
        "mariadb://b%40ck@127.0.0.1/my%20db?ssl-mode=verify_identity&ssl-ca=/etc/ca.pem",
    ))
    .expect("ok");
    assert_eq!((p.user.as_str(), p.database.as_str()), ("b@ck", "my db"));
    assert_eq!(p.port, DEFAULT_PORT);
    assert_eq!(p.tls, TlsMode::VerifyIdentity);
    assert_eq!(p.ssl_ca.as_deref(), Some(Path::new("/etc/ca.pem")));

    // An ssl-ca alone means "verify".
    let p = ConnParams::from_url(&url("mysql://u@h/d?ssl-ca=/etc/ca.pem")).expect("ok");
    assert_eq!(p.tls, TlsMode::VerifyIdentity);
    let p = ConnParams::from_url(&url("mysql://u@h/d?socket=/run/mysqld/mysqld.sock")).expect("ok");
    assert_eq!(p.describe("d"), "u@/run/mysqld/mysqld.sock/d");
}

#[test]
fn bad_urls_are_refused_without_echoing_secrets() {
    for (u, needle) in [
        ("postgres://u@h/d", "mysql://"),
        ("mysql://u:SENTINEL-77@h/d", "password"),
        ("mysql://h/d", "no user"),
        ("mysql://u@h/", "no database"),
        ("mysql://u@h/d?ssl-mode=sometimes", "ssl-mode"),
        ("mysql://u@h/d?password=x", "not supported"),
        ("mysql://u@h/d?host=elsewhere", "not supported"),
        ("mysql://u@h/d?ssl-ca=relative.pem", "absolute"),
        ("mysql://u@h/d?socket=/run/../etc/x", "absolute"),
    ] {
        let e = format!("{:#}", ConnParams::from_url(&url(u)).expect_err(u));
        assert!(e.contains(needle), "{u}: {e}");
        assert!(!e.contains("SENTINEL"), "{u}: {e}");
    }
}

#[test]
fn server_versions() {
    let (f, v) = parse_server_version("10.11.19-MariaDB-0+deb12u1", "Debian 12").expect("v");
    assert_eq!(
        (f, v.to_string()),
        (ServerFlavor::MariaDb, "10.11.19".into())
    );
    let (f, v) = parse_server_version("8.0.36", "MySQL Community Server - GPL").expect("v");
    assert_eq!((f, v.series()), (ServerFlavor::MySql, (8, 0)));
    let (f, _) = parse_server_version("8.0.34-Vitess", "Version: 19.0.0").expect("v");
    assert_eq!(f, ServerFlavor::Vitess);
    let (f, _) = parse_server_version("8.0.23", "PlanetScale").expect("v");
    assert_eq!(f, ServerFlavor::Vitess);
    // MariaDB 5.5-era replication prefix is not a thing any more, but a bare version is.
    let (f, v) = parse_server_version("11.4.2-MariaDB", "").expect("v");
    assert_eq!((f, v.series()), (ServerFlavor::MariaDb, (11, 4)));
    assert!(parse_server_version("garbage", "").is_none());
}

#[test]
fn tool_versions() {
    let cases = [
        (MARIADB_DUMP, ClientFlavor::MariaDb, "10.11.19"),
        (
            "mariadb-dump from 11.4.2-MariaDB, client 10.19 for debian-linux-gnu (x86_64)",
            ClientFlavor::MariaDb,
            "11.4.2",
        ),
        (MYSQL_DUMP_80, ClientFlavor::MySql, "8.0.36"),
        (
            "mysqldump  Ver 10.13 Distrib 5.7.44, for Linux (x86_64)",
            ClientFlavor::MySql,
            "5.7.44",
        ),
        (
            "mysql  Ver 8.4.0 for Linux on x86_64 (MySQL Community Server - GPL)",
            ClientFlavor::MySql,
            "8.4.0",
        ),
        (
            "mariadb  Ver 15.1 Distrib 10.11.19-MariaDB, for debian-linux-gnu (x86_64) using  EditLine wrapper",
            ClientFlavor::MariaDb,
            "10.11.19",
        ),
    ];
    for (text, flavor, version) in cases {
        let (f, v) = parse_tool_version(text).unwrap_or_else(|| panic!("{text}"));
        assert_eq!((f, v.to_string()), (flavor, version.to_owned()), "{text}");
    }
    assert!(parse_tool_version("").is_none());
    assert!(parse_tool_version("command not found").is_none());
    let t = tool(MYSQL_DUMP_80, MYSQL_HELP);
    assert!(t.supports("set-gtid-purged") && t.supports("column-statistics"));
    assert!(!t.supports("init-command"));
    assert!(t.needs_sandbox_filter());
    let maria_client = tool(
        "mariadb  Ver 15.1 Distrib 10.11.19-MariaDB, for debian-linux-gnu (x86_64) using  EditLine wrapper",
        "  --sandbox           Disallow commands that access the file system\n",
    );
    assert!(!maria_client.needs_sandbox_filter());
}

#[test]
fn client_compatibility_names_both_versions() {
    let maria_server = server(ServerFlavor::MariaDb, "11.4.2-MariaDB");
    let old = tool(MARIADB_DUMP, "");
    let e = check_client(&old, &maria_server)
        .expect_err("older dump tool accepted")
        .to_string();
    assert!(e.contains("10.11.19") && e.contains("11.4.2"), "{e}");

    let e = check_client(&tool(MYSQL_DUMP_80, MYSQL_HELP), &maria_server)
        .expect_err("mysqldump for MariaDB accepted")
        .to_string();
    assert!(
        e.contains("8.0.36") && e.contains("11.4.2") && e.contains("mariadb-client"),
        "{e}"
    );

    let same = server(ServerFlavor::MariaDb, "10.11.6-MariaDB");
    assert!(
        check_client(&old, &same)
            .expect("newer tool is fine")
            .is_empty()
    );

    let mysql84 = server(ServerFlavor::MySql, "8.4.3");
    let e = check_client(&tool(MYSQL_DUMP_80, MYSQL_HELP), &mysql84)
        .expect_err("8.0 tool for 8.4 server")
        .to_string();
    assert!(e.contains("8.0.36") && e.contains("8.4.3"), "{e}");
    let w = check_client(&old, &server(ServerFlavor::Vitess, "8.0.34-Vitess")).expect("warn only");
    assert_eq!(w.len(), 1, "{w:?}");
}

#[test]
fn restore_source_compatibility() {
    let maria = server(ServerFlavor::MariaDb, "10.11.19-MariaDB");
    let v = |s| Version::parse_prefix(s).expect("v");
    assert!(check_restore_source(ServerFlavor::MariaDb, v("10.6.1"), &maria).is_ok());
    let e = check_restore_source(ServerFlavor::MariaDb, v("11.4.2"), &maria)
        .expect_err("newer into older")
        .to_string();
    assert!(e.contains("11.4.2") && e.contains("10.11.19"), "{e}");
    let e = check_restore_source(ServerFlavor::MySql, v("8.0.36"), &maria)
        .expect_err("mysql 8 into mariadb")
        .to_string();
    assert!(
        e.contains("8.0.36") && e.contains("MariaDB 10.11.19"),
        "{e}"
    );
    let mysql = server(ServerFlavor::Vitess, "8.0.34-Vitess");
    let w = check_restore_source(ServerFlavor::MariaDb, v("10.11.19"), &mysql).expect("warn");
    assert_eq!(w.len(), 1);
    assert!(check_restore_source(ServerFlavor::MySql, v("8.0.36"), &mysql).is_ok());
}

#[test]
fn dump_arguments() {
    let maria = server(ServerFlavor::MariaDb, "10.11.19-MariaDB");
    let t = tool(MARIADB_DUMP, "");
    let extra = vec!["--quick".to_owned(), "--skip-events".to_owned()];
    let a = dump_args(&DumpPlan {
        tool: &t,
        server: &maria,
        database: "orders",
        provider_args: &extra,
    });
    for want in [
        "--single-transaction",
        "--quick",
        "--routines",
        "--events",
        "--triggers",
        "--hex-blob",
        "--no-tablespaces",
        "--skip-lock-tables",
        "--skip-add-locks",
        "--default-character-set=utf8mb4",
        "--comments",
        "--skip-add-drop-database",
        "--skip-events",
    ] {
        assert!(a.iter().any(|x| x == want), "{want} missing from {a:?}");
    }
    assert_eq!(a.iter().filter(|x| *x == "--quick").count(), 1, "{a:?}");
    for never in [
        "--databases",
        "--set-gtid-purged=OFF",
        "--skip-comments",
        "--compact",
        "--lock-tables",
        "--column-statistics=0",
    ] {
        assert!(!a.iter().any(|x| x == never), "{never} in {a:?}");
    }

    // MySQL's tool on a MySQL server: no GTID statement, no histogram query.
    let mysql = server(ServerFlavor::MySql, "8.0.36");
    let t = tool(MYSQL_DUMP_80, MYSQL_HELP);
    let a = dump_args(&DumpPlan {
        tool: &t,
        server: &mysql,
        database: "orders",
        provider_args: &[],
    });
    assert!(a.iter().any(|x| x == "--set-gtid-purged=OFF"), "{a:?}");
    assert!(a.iter().any(|x| x == "--column-statistics=0"), "{a:?}");
    // A tool that does not know the option does not get it.
    let t = tool(MYSQL_DUMP_80, "");
    let a = dump_args(&DumpPlan {
        tool: &t,
        server: &mysql,
        database: "orders",
        provider_args: &[],
    });
    assert!(
        !a.iter().any(|x| x.starts_with("--set-gtid-purged")),
        "{a:?}"
    );
}

#[test]
fn dump_command_has_the_option_file_first_and_no_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let params = ConnParams::from_url(&url("mysql://backup@127.0.0.1:3306/orders")).expect("ok");
    let pw = Secret::new("SENTINEL-pw".to_owned());
    let defaults =
        DefaultsFile::create(dir.path(), &params, Some(&pw), ClientFlavor::MariaDb).expect("file");
    let maria = server(ServerFlavor::MariaDb, "10.11.19-MariaDB");
    let t = tool(MARIADB_DUMP, "");
    let cmd = dump_command(
        &DumpPlan {
            tool: &t,
            server: &maria,
            database: "orders",
            provider_args: &[],
        },
        &defaults,
        dir.path(),
    );
    let args: Vec<String> = cmd
        .as_std()
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        args[0],
        format!("--defaults-extra-file={}", defaults.path().display())
    );
    assert_eq!(&args[args.len() - 2..], ["--", "orders"]);
    assert!(!args.iter().any(|a| a.contains("SENTINEL")), "{args:?}");
    let envs: Vec<_> = cmd.as_std().get_envs().collect();
    assert!(
        envs.iter()
            .any(|(k, v)| *k == "HOME" && *v == Some(dir.path().as_os_str())),
        "{envs:?}"
    );
    assert!(!format!("{defaults:?}").contains("SENTINEL"));
}

#[test]
fn option_file_is_private_quoted_and_removed() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let params =
        ConnParams::from_url(&url("mysql://backup@db:3307/orders?ssl-mode=required")).expect("ok");
    let pw = Secret::new("a\"b\\c #d e\n".to_owned());
    let f =
        DefaultsFile::create(dir.path(), &params, Some(&pw), ClientFlavor::MariaDb).expect("file");
    let mode = std::fs::metadata(f.path())
        .expect("meta")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(f.path()).expect("read");
    assert!(text.contains("[client]\n"), "{text}");
    assert!(
        text.contains("password=\"a\\\"b\\\\c #d e\\n\"\n"),
        "{text}"
    );
    assert!(text.contains("host=\"db\"\nport=3307\n"), "{text}");
    assert!(
        text.contains("\nssl\nskip-ssl-verify-server-cert\n"),
        "{text}"
    );
    assert!(f.path().starts_with(dir.path()));
    assert!(
        f.path()
            .file_name()
            .expect("name")
            .to_string_lossy()
            .starts_with(DEFAULTS_FILE_PREFIX)
    );
    let path = f.path().to_owned();
    drop(f);
    assert!(!path.exists(), "option file left behind");
}

#[test]
fn option_file_tls_per_client_flavour() {
    let p = |q: &str| ConnParams::from_url(&url(&format!("mysql://u@h/d{q}"))).expect("ok");
    let text = |q: &str, c| render_defaults(&p(q), None, c).expose().clone();

    let t = text(
        "?ssl-mode=verify_identity&ssl-ca=/etc/ca.pem",
        ClientFlavor::MySql,
    );
    assert!(
        t.contains("ssl-mode=VERIFY_IDENTITY\nssl-ca=\"/etc/ca.pem\"\n"),
        "{t}"
    );
    let t = text(
        "?ssl-mode=verify_identity&ssl-ca=/etc/ca.pem",
        ClientFlavor::MariaDb,
    );
    assert!(
        t.contains("ssl\nssl-ca=\"/etc/ca.pem\"\nssl-verify-server-cert\n")
            && !t.contains("ssl-mode"),
        "{t}"
    );
    let t = text("?ssl-mode=disabled", ClientFlavor::MariaDb);
    assert!(t.contains("skip-ssl\n"), "{t}");
    let t = text("?ssl-mode=disabled", ClientFlavor::MySql);
    assert!(
        t.contains("ssl-mode=DISABLED\n") && !t.contains("ssl-ca"),
        "{t}"
    );
    assert!(!text("", ClientFlavor::MariaDb).contains("password"));
    let t = text("?socket=/run/mysqld/mysqld.sock", ClientFlavor::MariaDb);
    assert!(
        t.contains("protocol=SOCKET\nsocket=\"/run/mysqld/mysqld.sock\"\n") && !t.contains("host="),
        "{t}"
    );
}

#[test]
fn restore_arguments() {
    let maria = ClientTool::from_outputs(
        std::path::Path::new("/usr/bin/mariadb"),
        "mariadb  Ver 15.1 Distrib 10.11.19-MariaDB, for debian-linux-gnu (x86_64)",
        "  --binary-mode       Binary mode\n  --sandbox           Disallow commands that access the file system\n",
    )
    .expect("tool");
    let a = restore_args(&maria, "orders_restore", 10 << 20);
    assert!(a.contains(&"--database=orders_restore".to_owned()), "{a:?}");
    assert!(a.contains(&"--skip-reconnect".to_owned()), "{a:?}");
    assert!(a.contains(&"--batch".to_owned()), "{a:?}");
    assert!(!a.iter().any(|x| x == "--force" || x == "-f"), "{a:?}");
    // H1: the stream is data, never client commands.
    assert!(a.contains(&"--binary-mode".to_owned()), "{a:?}");
    assert!(a.contains(&"--sandbox".to_owned()), "{a:?}");
    assert!(
        !a.iter().any(|x| x.starts_with("--system-command")),
        "{a:?}"
    );
    // L11: the packet limit follows the dump's size, within bounds.
    assert!(
        a.contains(&"--max-allowed-packet=16777216".to_owned()),
        "{a:?}"
    );
    let packet = |n: u64| restore_max_allowed_packet(n);
    assert_eq!(packet(0), 16 << 20);
    assert_eq!(packet((100 << 20) + 1), 101 << 20);
    assert_eq!(packet(u64::MAX), 1 << 30);
    assert!((0..40u32).all(|k| {
        let n = 1u64 << k;
        packet(n) <= 1 << 30 && packet(n) >= n.min(1 << 30)
    }));

    // MySQL 8.0.40 and later: no shell; an older MySQL client still gets --binary-mode.
    let mysql = |help: &str| {
        ClientTool::from_outputs(
            std::path::Path::new("/usr/bin/mysql"),
            "mysql  Ver 8.0.40 for Linux on x86_64 (MySQL Community Server - GPL)",
            help,
        )
        .expect("tool")
    };
    let a = restore_args(
        &mysql(
            "  --binary-mode  x\n  --system-command  Enable (by default) or disable the system mysql command.\n",
        ),
        "db",
        1,
    );
    assert!(
        a.contains(&"--system-command=OFF".to_owned()) && a.contains(&"--binary-mode".to_owned()),
        "{a:?}"
    );
    assert!(!a.contains(&"--sandbox".to_owned()), "{a:?}");
    let a = restore_args(&mysql("  --binary-mode  x\n"), "db", 1);
    assert!(a.contains(&"--binary-mode".to_owned()), "{a:?}");
    assert!(
        !a.iter().any(|x| x.starts_with("--system-command")),
        "{a:?}"
    );
}

#[test]
fn row_count_kinds() {
    for k in [
        RowCountKind::Exact,
        RowCountKind::ExactOwnSnapshot,
        RowCountKind::Estimate,
        RowCountKind::Off,
    ] {
        assert_eq!(RowCountKind::parse(k.as_str()), Some(k));
    }
    assert!(RowCountKind::Exact.restore_must_match());
    assert!(!RowCountKind::ExactOwnSnapshot.restore_must_match());
    assert!(!RowCountKind::Estimate.restore_must_match());
}

#[test]
fn quoting() {
    assert_eq!(quote_ident("we`ird"), "`we``ird`");
    assert_eq!(quote_literal("it's").expect("ok"), "'it''s'");
    assert!(quote_literal("a\\").is_err());
    assert_eq!(quote_option_value("x"), "\"x\"");
}

#[test]
fn manifest_server_info_round_trips_the_flavour() {
    let maria = server(ServerFlavor::MariaDb, "10.11.19-MariaDB-0+deb12u1");
    let info = maria.server_info();
    assert_eq!(info.version_num, 101_119);
    assert_eq!(
        (info.encoding.as_str(), info.collate.as_str()),
        ("utf8mb4", "utf8mb4_unicode_ci")
    );
    assert_eq!(
        backup_origin(&info, "mariadb"),
        Some((ServerFlavor::MariaDb, maria.version))
    );
    let mut ps = server(ServerFlavor::Vitess, "8.0.23");
    ps.version_comment = "PlanetScale".into();
    assert_eq!(ps.server_info().version_num, 80_023);
    assert_eq!(
        backup_origin(&ps.server_info(), "planetscale").map(|o| o.0),
        Some(ServerFlavor::Vitess)
    );
    assert_eq!(
        backup_origin(&ps.server_info(), "mysql").map(|o| o.0),
        Some(ServerFlavor::MySql)
    );
}

#[test]
fn dump_verdict_puts_the_exit_status_first() {
    use std::os::unix::process::ExitStatusExt;
    use stream::{DumpFormatError, DumpSummary};
    let ok = std::process::ExitStatus::from_raw(0);
    let failed = std::process::ExitStatus::from_raw(2 << 8);
    let killed = std::process::ExitStatus::from_raw(9);
    let summary = DumpSummary::default();

    let e = dump_verdict(
        "mariadb-dump",
        &failed,
        "mariadb-dump: Got error: 1045: \"Access denied\"",
        Some(Err(DumpFormatError::NoTrailer(String::new()))),
    )
    .expect_err("failed tool")
    .to_string();
    assert!(
        e.starts_with("mariadb-dump failed (exit status 2): mariadb-dump: Got error: 1045"),
        "{e}"
    );
    let e = dump_verdict("mysqldump", &killed, "", None)
        .expect_err("killed")
        .to_string();
    assert!(
        e.contains("killed by signal 9") && e.contains("no error output"),
        "{e}"
    );
    let e = dump_verdict(
        "mysqldump",
        &ok,
        "warning: something",
        Some(Err(DumpFormatError::NoTrailer("INSERT INTO".into()))),
    )
    .expect_err("truncated")
    .to_string();
    assert!(
        e.contains("Dump completed") && e.contains("exited 0") && e.contains("warning: something"),
        "{e}"
    );
    let e = dump_verdict("mysqldump", &ok, "", None)
        .expect_err("not read to the end")
        .to_string();
    assert!(e.contains("not read to its end"), "{e}");
    assert_eq!(
        dump_verdict("mysqldump", &ok, "", Some(Ok(summary.clone()))).expect("complete"),
        summary
    );
}
