use super::*;

const EXAMPLE: &str = include_str!("../../../deploy/coordinator.example.toml");

fn minimal(extra: &str) -> String {
    format!(
        "[server]\ngrpc_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n\
             [tls]\nca = \"ca.pem\"\ncert = \"c.pem\"\nkey = \"c.key\"\n\
             [catalog]\nurl = \"sqlite://catalog.db\"\n{extra}"
    )
}

fn err(text: &str) -> String {
    format!(
        "{:#}",
        parse(Path::new("/etc/lifeboat/coordinator.toml"), text).expect_err("config accepted")
    )
}

#[test]
fn example_parses() {
    let c = parse(Path::new("/etc/lifeboat/coordinator.toml"), EXAMPLE).expect("example");
    assert_eq!(c.grpc_listen, "0.0.0.0:7443".parse().expect("addr"));
    assert_eq!(c.http_listen, "127.0.0.1:9187".parse().expect("addr"));
    assert_eq!(
        c.catalog,
        CatalogLocation::Sqlite("/var/lib/lifeboat/catalog.db".into())
    );
    assert_eq!(c.tls.key, PathBuf::from("/etc/lifeboat/coordinator.key"));
    assert_eq!(c.jobs.agent_lease, Duration::from_secs(300));
    assert_eq!(c.jobs.heartbeat_interval, Duration::from_secs(10));
    assert_eq!(c.jobs.queue_timeout, Duration::from_secs(3600));
    assert_eq!(c.role_of("alice"), Some(Role::Admin));
    assert_eq!(c.role_of("grafana-bot"), Some(Role::Viewer));
    assert_eq!(c.role_of("mallory"), None);
}

#[test]
fn health_cache_and_http_token() {
    let c = parse(Path::new("/srv/lb/coordinator.toml"), &minimal("")).expect("valid");
    assert_eq!(c.health_cache, Duration::from_secs(1));
    assert_eq!(c.http_token(), Ok(None));
    let e = err(&minimal("").replace(
        "http_listen = \"127.0.0.1:0\"\n",
        "http_listen = \"127.0.0.1:0\"\nhealth_cache_ms = 60001\n",
    ));
    assert!(
        e.contains("server.health_cache_ms") && e.contains("60000"),
        "{e}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("http.token");
    let with_token = |path: &Path| {
        parse(
            Path::new("/srv/lb/coordinator.toml"),
            &minimal("").replace(
                "http_listen = \"127.0.0.1:0\"\n",
                &format!(
                    "http_listen = \"127.0.0.1:0\"\nhttp_token_file = {:?}\n",
                    path.display().to_string()
                ),
            ),
        )
        .expect("valid")
    };
    let c = with_token(&token);
    let e = c.http_token().expect_err("missing file");
    assert!(
        e.contains("does not exist") && e.contains("openssl rand"),
        "{e}"
    );
    std::fs::write(&token, "0123456789abcdef0123\n").expect("write");
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .expect("chmod");
    let e = c.http_token().expect_err("readable by others");
    assert!(e.contains("chmod 600"), "{e}");
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    assert_eq!(
        c.http_token().expect("ok").map(|t| t.expose().clone()),
        Some("0123456789abcdef0123".to_owned())
    );
    std::fs::write(&token, "short\n").expect("write");
    let e = c.http_token().expect_err("too short");
    assert!(e.contains("at least 16"), "{e}");
    // The token never appears in an error or in Debug.
    assert!(!format!("{c:?}").contains("0123456789abcdef"));
}

#[test]
fn relative_paths_resolve_against_the_file() {
    let c = parse(Path::new("/srv/lb/coordinator.toml"), &minimal("")).expect("valid");
    assert_eq!(c.tls.ca, PathBuf::from("/srv/lb/ca.pem"));
    assert_eq!(
        c.catalog,
        CatalogLocation::Sqlite("/srv/lb/catalog.db".into())
    );
    assert_eq!(c.jobs, JobsConfig::default());
    assert!(c.operators.is_empty());
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let e = err(&minimal("[jobs]\nagent_lease_secs = 5\nlease_typo = 3\n"));
    assert!(e.contains("/etc/lifeboat/coordinator.toml"), "{e}");
    assert!(e.contains("line 12"), "{e}");
    assert!(e.contains("lease_typo"), "{e}");
    let e = err(&format!("bogus = 1\n{}", minimal("")));
    assert!(e.contains("line 1") && e.contains("bogus"), "{e}");
}

#[test]
fn bad_role_refused() {
    let e = err(&minimal("[[operator]]\nname = \"bob\"\nrole = \"root\"\n"));
    assert!(e.contains("line 12"), "{e}");
    assert!(e.contains("root") && e.contains("viewer"), "{e}");
}

#[test]
fn duplicate_operator_refused() {
    let e = err(&minimal(
        "[[operator]]\nname = \"bob\"\nrole = \"viewer\"\n\
             [[operator]]\nname = \"bob\"\nrole = \"admin\"\n",
    ));
    assert!(e.contains("operator[1].name (line 14)"), "{e}");
    assert!(e.contains("listed twice"), "{e}");
}

#[test]
fn agent_table() {
    let c = parse(
        Path::new("/etc/lifeboat/coordinator.toml"),
        &minimal("[[agent]]\nname = \"prod-1\"\nenvironment = \"prod\"\n"),
    )
    .expect("valid");
    assert_eq!(c.agents.get("prod-1").map(String::as_str), Some("prod"));
    let e = err(&minimal(
        "[[agent]]\nname = \"prod-1\"\nenvironment = \"../prod\"\n",
    ));
    assert!(e.contains("agent[0].environment"), "{e}");
    let e = err(&minimal(
        "[[agent]]\nname = \"a\"\nenvironment = \"p\"\n[[agent]]\nname = \"a\"\nenvironment = \"q\"\n",
    ));
    assert!(e.contains("listed twice"), "{e}");
}

#[test]
fn bad_operator_name_refused() {
    let e = err(&minimal(
        "[[operator]]\nname = \"../bob\"\nrole = \"viewer\"\n",
    ));
    assert!(e.contains("operator[0].name (line 11)"), "{e}");
}

#[test]
fn parent_components_refused() {
    let text = minimal("").replace("\"c.key\"", "\"../secrets/c.key\"");
    let e = err(&text);
    assert!(e.contains("tls.key (line 7)") && e.contains("'..'"), "{e}");
    let text = minimal("").replace("sqlite://catalog.db", "sqlite:///var/../etc/x.db");
    let e = err(&text);
    assert!(
        e.contains("catalog.url (line 9)") && e.contains("'..'"),
        "{e}"
    );
}

#[test]
fn bad_values_refused() {
    for (from, to, key) in [
        ("sqlite://catalog.db", "postgres://db/x", "catalog.url"),
        ("sqlite://catalog.db", "mysql://db/x", "catalog.url"),
        ("sqlite://catalog.db", "sqlite://", "catalog.url"),
        (
            "sqlite://catalog.db",
            "sqlite://c.db?mode=ro",
            "catalog.url",
        ),
        (
            "\"127.0.0.1:0\"\nhttp",
            "\"localhost\"\nhttp",
            "server.grpc_listen",
        ),
    ] {
        let e = err(&minimal("").replacen(from, to, 1));
        assert!(e.contains(key), "{to}: {e}");
    }
    let e = err(&minimal("[jobs]\nagent_lease_secs = 0\n"));
    assert!(e.contains("jobs.agent_lease_secs (line 11)"), "{e}");
    let e = err(&minimal("[jobs]\nqueue_timeout_secs = -5\n"));
    assert!(e.contains("line 11"), "{e}");
    let e = err(&minimal("[jobs]\nheartbeat_interval_secs = 99999999999\n"));
    assert!(e.contains("jobs.heartbeat_interval_secs"), "{e}");
}

#[test]
fn missing_sections_refused() {
    let e = err("[server]\ngrpc_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n");
    assert!(e.contains("tls"), "{e}");
}

#[test]
fn missing_tls_files_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("coordinator.toml");
    let open = |text: String| format!("allow_any_agent = true\n{text}");
    std::fs::write(&path, open(minimal(""))).expect("write config");
    let e = format!("{:#}", load(&path).expect_err("missing files accepted"));
    assert!(
        e.contains("coordinator.toml") && e.contains("tls.ca"),
        "{e}"
    );
    assert!(e.contains("does not exist"), "{e}");

    for f in ["ca.pem", "c.pem", "c.key"] {
        std::fs::write(dir.path().join(f), "x").expect("write");
    }
    std::fs::set_permissions(
        dir.path().join("c.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");
    let e = format!("{:#}", load(&path).expect_err("readable key accepted"));
    assert!(e.contains("tls.key") && e.contains("chmod 600"), "{e}");

    std::fs::set_permissions(
        dir.path().join("c.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .expect("chmod");
    let e = format!("{:#}", load(&path).expect_err("garbage PEM accepted"));
    assert!(e.contains("coordinator.toml: tls:"), "{e}");

    let ca = lifeboat_common::pki::Ca::generate("t").expect("ca");
    let leaf = ca
        .issue(&lifeboat_common::pki::LeafSpec::coordinator(
            "c",
            vec!["localhost".into()],
        ))
        .expect("issue");
    std::fs::write(dir.path().join("ca.pem"), &ca.cert_pem).expect("write");
    std::fs::write(dir.path().join("c.pem"), &leaf.cert_pem).expect("write");
    std::fs::write(dir.path().join("c.key"), leaf.key_pem.expose()).expect("write");
    load(&path).expect("valid");

    std::fs::write(
        &path,
        open(minimal("").replace("sqlite://catalog.db", "sqlite://nodir/catalog.db")),
    )
    .expect("write config");
    let e = format!("{:#}", load(&path).expect_err("missing dir accepted"));
    assert!(e.contains("catalog.url") && e.contains("nodir"), "{e}");
}

/// Item 10 (M6): environments are closed unless the file opens them explicitly.
#[test]
fn agents_closed_by_default() {
    let file = Path::new("/etc/lifeboat/coordinator.toml");
    let c = parse(file, &minimal("")).expect("parses");
    let e = c
        .check_agents()
        .expect_err("open environments accepted")
        .to_string();
    assert!(
        e.contains("[[agent]]") && e.contains("allow_any_agent = true"),
        "{e}"
    );
    let c = parse(file, &format!("allow_any_agent = true\n{}", minimal(""))).expect("parses");
    assert!(c.allow_any_agent);
    c.check_agents().expect("explicitly open");
    let c = parse(
        file,
        &minimal("[[agent]]\nname = \"prod-1\"\nenvironment = \"prod\"\n"),
    )
    .expect("parses");
    c.check_agents().expect("listed agents");
}

/// Item 11 (M12): `[[operator]] environments` scopes a role.
#[test]
fn operator_environments() {
    let c = parse(
        Path::new("/etc/lifeboat/coordinator.toml"),
        &minimal(
            "[[operator]]\nname = \"dana\"\nrole = \"operator\"\n\
                 environments = [\"staging\", \"dev\"]\n\
                 [[operator]]\nname = \"alice\"\nrole = \"admin\"\n",
        ),
    )
    .expect("valid");
    assert_eq!(
        c.environments_of("dana"),
        Some(&["dev".to_owned(), "staging".to_owned()][..])
    );
    assert_eq!(c.environments_of("alice"), None);
    let e = err(&minimal(
        "[[operator]]\nname = \"dana\"\nrole = \"viewer\"\nenvironments = []\n",
    ));
    assert!(
        e.contains("operator[0].environments") && e.contains("empty"),
        "{e}"
    );
    let e = err(&minimal(
        "[[operator]]\nname = \"dana\"\nrole = \"viewer\"\nenvironments = [\"a/b\"]\n",
    ));
    assert!(e.contains("operator[0].environments"), "{e}");
}

#[test]
fn roles_are_ordered() {
    assert!(Role::Viewer < Role::Operator);
    assert!(Role::Operator < Role::Admin);
}

#[path = "catalog_tests.rs"]
mod catalog;
