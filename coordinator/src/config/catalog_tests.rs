//! `[catalog]` with a PostgreSQL URL.

use super::*;

fn with_catalog(lines: &str) -> String {
    minimal("").replace("[catalog]\nurl = \"sqlite://catalog.db\"\n", lines)
}

#[test]
fn postgres_catalog_defaults_to_verified_tls() {
    let c = parse(
        Path::new("/etc/lifeboat/coordinator.toml"),
        &with_catalog(
            "[catalog]\nurl = \"postgres://lifeboat@db.internal:5432/lifeboat\"\n\
             password_file = \"catalog.password\"\nca = \"catalog-ca.pem\"\n",
        ),
    )
    .expect("valid");
    assert_eq!(
        c.catalog,
        CatalogLocation::Postgres(PostgresLocation {
            url: "postgres://lifeboat@db.internal:5432/lifeboat".into(),
            password_file: Some("/etc/lifeboat/catalog.password".into()),
            tls: crate::catalog::PostgresTls::VerifyFull {
                ca: Some("/etc/lifeboat/catalog-ca.pem".into())
            },
        })
    );
    let c = parse(
        Path::new("/etc/lifeboat/coordinator.toml"),
        &with_catalog("[catalog]\nurl = \"postgresql://lb@127.0.0.1/cat\"\ntls = \"disable\"\n"),
    )
    .expect("valid");
    let CatalogLocation::Postgres(pg) = c.catalog else {
        panic!("not postgres: {:?}", c.catalog);
    };
    assert_eq!(pg.tls, crate::catalog::PostgresTls::Disable);
    assert_eq!(pg.password_file, None);
}

#[test]
fn bad_postgres_catalogs_are_refused_without_echoing_secrets() {
    for (lines, key, says) in [
        (
            "url = \"postgres://lb:hunter2-secret@db/cat\"\n",
            "catalog.url",
            "password_file",
        ),
        (
            "url = \"postgres://lb@db/cat?sslmode=disable\"\n",
            "catalog.url",
            "catalog.tls",
        ),
        ("url = \"postgres://db/cat\"\n", "catalog.url", "no user"),
        ("url = \"postgres://lb@db\"\n", "catalog.url", "no database"),
        (
            "url = \"postgres://lb@db/cat\"\ntls = \"require\"\n",
            "catalog.tls",
            "verify-full",
        ),
        (
            "url = \"postgres://lb@db/cat\"\ntls = \"disable\"\nca = \"ca.pem\"\n",
            "catalog.tls",
            "catalog.ca",
        ),
        (
            "url = \"sqlite://catalog.db\"\npassword_file = \"pw\"\n",
            "catalog.password_file",
            "PostgreSQL",
        ),
        (
            "url = \"postgres://lb@db/cat\"\nport = 5\n",
            "port",
            "unknown",
        ),
    ] {
        let e = err(&with_catalog(&format!("[catalog]\n{lines}")));
        assert!(e.contains(key) && e.contains(says), "{lines}: {e}");
        assert!(!e.contains("hunter2-secret"), "the password is echoed: {e}");
    }
}

#[test]
fn postgres_password_file_must_be_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let pw = dir.path().join("catalog.password");
    std::fs::write(&pw, "s3cret\n").expect("write");
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let location = CatalogLocation::Postgres(PostgresLocation {
        url: "postgres://lb@db/cat".into(),
        password_file: Some(pw.clone()),
        tls: crate::catalog::PostgresTls::Disable,
    });
    let e = format!(
        "{}",
        location
            .check_files(Path::new("/etc/lifeboat/coordinator.toml"))
            .expect_err("a world-readable password file accepted")
    );
    assert!(
        e.contains("catalog.password_file") && e.contains("chmod 600"),
        "{e}"
    );
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    location
        .check_files(Path::new("/etc/lifeboat/coordinator.toml"))
        .expect("a private password file");
    let CatalogLocation::Postgres(pg) = &location else {
        unreachable!()
    };
    let settings = pg.connect_settings().expect("read");
    assert_eq!(
        settings.password.as_ref().map(|p| p.expose().as_str()),
        Some("s3cret")
    );
    assert!(!format!("{settings:?}").contains("s3cret"), "{settings:?}");
}
