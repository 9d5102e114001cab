use super::*;

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("lifeboat").chain(args.iter().copied()))
}

fn parse_err(args: &[&str]) -> clap::Error {
    match parse(args) {
        Ok(cli) => panic!("{args:?} accepted as {cli:?}"),
        Err(e) => e,
    }
}

#[test]
fn command_definition_is_consistent() {
    use clap::CommandFactory;
    Cli::command().debug_assert();
}

#[test]
fn backup_run_takes_a_valid_target() {
    let cli = parse(&["backup", "run", "prod/orders", "--wait"]).expect("valid");
    let Command::Backup(BackupCommand::Run(args)) = cli.command else {
        panic!("wrong command: {cli:?}");
    };
    assert_eq!(args.target.to_string(), "prod/orders");
    assert!(args.wait.wait);
    assert_eq!(cli.global.output, OutputFormat::Table);
    assert_eq!(cli.global.timeout, 30);
}

#[test]
fn targets_release_takes_a_target_and_an_optional_agent() {
    let cli = parse(&["targets", "release", "prod/orders"]).expect("valid");
    let Command::Targets(TargetsCommand::Release(args)) = cli.command else {
        panic!("wrong command: {cli:?}");
    };
    assert_eq!(args.target.to_string(), "prod/orders");
    assert_eq!(args.to_agent, None);
    let cli = parse(&["targets", "release", "prod/orders", "--to", "prod-1"]).expect("valid");
    let Command::Targets(TargetsCommand::Release(args)) = cli.command else {
        panic!("wrong command: {cli:?}");
    };
    assert_eq!(args.to_agent.as_deref(), Some("prod-1"));
    parse_err(&["targets", "release", "orders"]);
}

#[test]
fn bad_target_names_are_usage_errors() {
    for bad in [
        "orders",
        "prod/",
        "Prod/orders",
        "prod/orders/x",
        "../x",
        "prod/a b",
    ] {
        let e = parse_err(&["backup", "run", bad]);
        assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation, "{bad}");
        assert_eq!(e.exit_code(), 2);
    }
    let e = parse_err(&["backup", "run", "orders"]).to_string();
    assert!(e.contains("ENV/NAME"), "{e}");
    parse_err(&["restore", "20261127T233000Z-7f3a9c", "--to", "nope"]);
    parse_err(&["jobs", "list", "--target", "x/"]);
    parse_err(&["backup", "list", "--target", "/x"]);
}

#[test]
fn bad_ids_and_database_names_are_usage_errors() {
    parse_err(&["backup", "show", "../../etc/passwd"]);
    parse_err(&["backup", "verify", "20261127T233000Z-7F3A9C"]);
    parse_err(&["jobs", "watch", "123"]);
    parse_err(&["jobs", "cancel", ""]);
    parse_err(&["restore", "20261127T233000Z-7f3a9c", "--database", "a;drop"]);
    parse(&["jobs", "show", "20261127T233000Z-7f3a9c"]).expect("valid id");
}

#[test]
fn clean_requires_a_database() {
    let e = parse_err(&["restore", "20261127T233000Z-7f3a9c", "--clean"]);
    assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    let cli = parse(&[
        "restore",
        "20261127T233000Z-7f3a9c",
        "--to",
        "staging/orders",
        "--database",
        "orders_copy",
        "--clean",
        "--wait",
    ])
    .expect("valid");
    let Command::Restore(args) = cli.command else {
        panic!("wrong command");
    };
    assert!(args.clean && args.wait.wait);
    assert_eq!(args.database.as_deref(), Some("orders_copy"));
    assert_eq!(
        args.to.map(|t| t.to_string()).as_deref(),
        Some("staging/orders")
    );
}

#[test]
fn numbers_are_bounded() {
    parse_err(&["jobs", "list", "--limit", "0"]);
    parse_err(&["jobs", "list", "--limit", "-1"]);
    parse_err(&["--timeout", "0", "whoami"]);
    parse_err(&[
        "pki", "issue", "--dir", "d", "--kind", "agent", "--name", "a", "--days", "0",
    ]);
    let cli = parse(&[
        "jobs", "list", "--active", "--limit", "5", "--output", "json",
    ])
    .expect("valid");
    assert_eq!(cli.global.output, OutputFormat::Json);
    let Command::Jobs(JobsCommand::List(args)) = cli.command else {
        panic!("wrong command");
    };
    assert!(args.active);
    assert_eq!(args.limit.limit, Some(5));
}

#[test]
fn global_options_go_anywhere() {
    let cli = parse(&[
        "agents",
        "list",
        "--coordinator",
        "https://c:7443",
        "--output",
        "json",
        "--timeout",
        "5",
    ])
    .expect("valid");
    assert_eq!(cli.global.coordinator.as_deref(), Some("https://c:7443"));
    assert_eq!(cli.global.timeout, 5);
    parse_err(&["--output", "yaml", "whoami"]);
}

#[test]
fn pki_arguments() {
    let cli = parse(&[
        "pki",
        "issue",
        "--dir",
        "/tmp/ca",
        "--kind",
        "coordinator",
        "--name",
        "coord",
        "--san",
        "Coord.Example",
        "--san",
        "10.0.0.1",
        "--san",
        "::1",
    ])
    .expect("valid");
    let Command::Pki(PkiCommand::Issue(args)) = cli.command else {
        panic!("wrong command");
    };
    assert_eq!(args.kind, CertKind::Coordinator);
    assert_eq!(args.sans, ["coord.example", "10.0.0.1", "::1"]);
    assert_eq!(args.days, 365);
    parse_err(&[
        "pki", "issue", "--dir", "d", "--kind", "root", "--name", "a",
    ]);
    parse_err(&[
        "pki", "issue", "--dir", "d", "--kind", "agent", "--name", "../a",
    ]);
    parse_err(&[
        "pki", "issue", "--dir", "d", "--kind", "agent", "--name", "A",
    ]);
    parse_err(&[
        "pki",
        "issue",
        "--dir",
        "d",
        "--kind",
        "coordinator",
        "--name",
        "c",
        "--san",
        "a b",
    ]);
    parse_err(&[
        "pki",
        "issue",
        "--dir",
        "d",
        "--kind",
        "coordinator",
        "--name",
        "c",
        "--san",
        "-x.com",
    ]);
    parse_err(&["pki", "init"]);
}

#[test]
fn schedule_arguments() {
    let cli = parse(&[
        "schedule",
        "set",
        "prod/orders",
        "--cron",
        " 30  2 * * * ",
        "--tz",
        "Europe/Berlin",
        "--jitter",
        "10m",
    ])
    .expect("valid");
    let Command::Schedule(ScheduleCommand::Set(args)) = cli.command else {
        panic!("wrong command");
    };
    assert_eq!(args.cron, "30 2 * * *");
    assert_eq!(args.timezone, "Europe/Berlin");
    assert_eq!(args.jitter, Some(600));
    let cli = parse(&["schedule", "set", "prod/orders", "--cron", "@daily"]).expect("valid");
    let Command::Schedule(ScheduleCommand::Set(args)) = cli.command else {
        panic!("wrong command");
    };
    assert_eq!(args.timezone, "UTC");
    assert_eq!(args.jitter, None);
    for bad in [
        vec!["schedule", "set", "prod/orders", "--cron", "30 2 * *"],
        vec!["schedule", "set", "orders", "--cron", "30 2 * * *"],
        vec![
            "schedule",
            "set",
            "prod/orders",
            "--cron",
            "30 2 * * *",
            "--jitter",
            "10",
        ],
        vec![
            "schedule",
            "set",
            "prod/orders",
            "--cron",
            "30 2 * * *",
            "--jitter",
            "7h",
        ],
        vec!["schedule", "set", "prod/orders"],
        vec!["schedule", "next", "prod/orders", "--count", "0"],
        vec!["schedule", "next", "prod/orders", "--count", "101"],
        vec!["schedule", "pause"],
    ] {
        assert_eq!(parse_err(&bad).exit_code(), 2, "{bad:?}");
    }
    let cli = parse(&["schedule", "next", "prod/orders"]).expect("valid");
    let Command::Schedule(ScheduleCommand::Next(args)) = cli.command else {
        panic!("wrong command");
    };
    assert_eq!(args.count, 5);
}

#[test]
fn prune_and_pin_arguments() {
    let cli = parse(&["prune", "--target", "prod/orders", "--dry-run"]).expect("valid");
    let Command::Prune(args) = cli.command else {
        panic!("wrong command");
    };
    assert!(args.dry_run);
    parse_err(&["prune", "--target", "orders"]);
    let cli = parse(&[
        "catalog",
        "rebuild",
        "--agent",
        "prod-1",
        "--repository",
        "offsite",
        "--dry-run",
    ])
    .expect("valid");
    let Command::Catalog(CatalogCommand::Rebuild(args)) = cli.command else {
        panic!("wrong command");
    };
    assert_eq!(args.agent.as_deref(), Some("prod-1"));
    assert_eq!(args.repository.as_deref(), Some("offsite"));
    assert!(args.dry_run);
    parse_err(&["catalog", "rebuild", "--agent", "../etc"]);
    parse_err(&["catalog", "rebuild", "--repository", "a/b"]);
    parse(&[
        "backup",
        "pin",
        "20261127T233000Z-7f3a9c",
        "--reason",
        "audit",
    ])
    .expect("valid");
    parse_err(&["backup", "pin", "20261127T233000Z-7f3a9c"]);
    parse_err(&["backup", "pin", "20261127T233000Z-7f3a9c", "--reason", "  "]);
    parse_err(&["backup", "unpin", "nope/../x"]);
}

#[test]
fn san_values() {
    assert_eq!(parse_san("*.example.com").as_deref(), Ok("*.example.com"));
    assert_eq!(parse_san("localhost").as_deref(), Ok("localhost"));
    assert!(parse_san("").is_err());
    assert!(parse_san("a..b").is_err());
    assert!(parse_san("a_b.com").is_err());
}

#[test]
fn restore_into_a_data_directory() {
    let cli = parse(&[
        "restore",
        "--target",
        "prod/orders",
        "--data-dir",
        "/srv/pg/recovered",
        "--wait",
    ])
    .expect("valid");
    let Command::Restore(args) = cli.command else {
        panic!("wrong command: {cli:?}");
    };
    assert_eq!(args.id, None, "the newest backup of the target");
    assert_eq!(
        args.to.map(|t| t.to_string()).as_deref(),
        Some("prod/orders")
    );
    assert_eq!(args.data_dir.as_deref(), Some("/srv/pg/recovered"));
    let cli = parse(&[
        "restore",
        "20261127T233000Z-7f3a9c",
        "--to",
        "prod/orders",
        "--data-dir",
        "/srv/pg/recovered",
    ])
    .expect("an id and --to");
    let Command::Restore(args) = cli.command else {
        panic!("wrong command: {cli:?}");
    };
    assert_eq!(args.id.as_deref(), Some("20261127T233000Z-7f3a9c"));
    // --start-port: with --data-dir only, a port from 1024.
    let cli = parse(&[
        "restore",
        "--target",
        "prod/main",
        "--data-dir",
        "/srv/pg/recovered",
        "--to-time",
        "2026-12-03 14:03:27+01",
        "--start-port",
        "5499",
    ])
    .expect("a start port");
    let Command::Restore(args) = cli.command else {
        panic!("wrong command: {cli:?}");
    };
    assert_eq!(args.start_port, Some(5499));
    // --jobs: 1 to 64, not with --data-dir.
    let cli = parse(&["restore", "20261127T233000Z-7f3a9c", "--jobs", "4"]).expect("jobs");
    let Command::Restore(args) = cli.command else {
        panic!("wrong command: {cli:?}");
    };
    assert_eq!(args.jobs, Some(4));
    for bad in ["0", "65", "many"] {
        parse_err(&["restore", "20261127T233000Z-7f3a9c", "--jobs", bad]);
    }
    parse_err(&[
        "restore",
        "20261127T233000Z-7f3a9c",
        "--data-dir",
        "/srv/pg/recovered",
        "--jobs",
        "2",
    ]);
    parse_err(&["restore", "20261127T233000Z-7f3a9c", "--start-port", "5499"]);
    for bad in ["80", "0", "65536", "port"] {
        parse_err(&[
            "restore",
            "20261127T233000Z-7f3a9c",
            "--data-dir",
            "/srv/pg/recovered",
            "--start-port",
            bad,
        ]);
    }
    // Neither an id nor a target; a data directory with database options.
    parse_err(&["restore", "--data-dir", "/srv/pg/recovered"]);
    parse_err(&[
        "restore",
        "20261127T233000Z-7f3a9c",
        "--data-dir",
        "/srv/pg/recovered",
        "--database",
        "orders",
    ]);
}
