//! The example coordinator configs in deploy/examples/{dev,staging,prod} parse, mean what
//! their comments say, and load for real (files present, key private, certificates valid)
//! once the paths they name exist: the test copies each into a temp dir, points the systemd
//! credential and state paths there, and creates real certificates and 0600 secret files.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use lifeboat_common::{
    pki::{Ca, LeafSpec},
    secret::write_private_file,
};
use lifeboat_coordinator::{Role, config};

const CREDENTIALS: &str = "/run/credentials/lifeboat-coordinator.service/";
const STATE: &str = "/var/lib/lifeboat/";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn example(env: &str) -> String {
    std::fs::read_to_string(root().join(format!("deploy/examples/{env}/coordinator.toml")))
        .expect("read example")
}

fn parse(env: &str) -> config::Config {
    config::parse(Path::new("/etc/lifeboat/coordinator.toml"), &example(env))
        .unwrap_or_else(|e| panic!("{env}: {e:#}"))
}

/// Credential file names the config refers to.
fn credentials(text: &str) -> Vec<String> {
    text.match_indices(CREDENTIALS)
        .map(|(i, _)| {
            text[i + CREDENTIALS.len()..]
                .split('"')
                .next()
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

/// Writes the example with its paths moved under `dir`, and everything it names.
fn materialize(env: &str, dir: &Path) -> PathBuf {
    let text = example(env);
    let creds = dir.join("credentials");
    let state = dir.join("state");
    std::fs::create_dir_all(&creds).expect("mkdir");
    std::fs::create_dir_all(&state).expect("mkdir");
    let ca = Ca::generate("example").expect("CA");
    let leaf = ca
        .issue(&LeafSpec::coordinator(
            "coordinator",
            vec!["localhost".into()],
        ))
        .expect("issue");
    for name in credentials(&text) {
        let path = creds.join(&name);
        match name.as_str() {
            "ca.pem" | "catalog-ca.pem" => std::fs::write(&path, &ca.cert_pem).expect("write"),
            "coordinator.pem" => std::fs::write(&path, &leaf.cert_pem).expect("write"),
            "coordinator.key" | "catalog.password" => {
                write_private_file(&path, leaf.key_pem.expose().as_bytes()).expect("write")
            }
            n if n.ends_with(".url") => {
                write_private_file(&path, b"https://hooks.example.com/services/T0/B0/x\n")
                    .expect("write")
            }
            other => panic!("{env}: unexpected credential {other}"),
        }
    }
    let moved = text
        .replace(CREDENTIALS, &format!("{}/", creds.display()))
        .replace(STATE, &format!("{}/", state.display()));
    let path = dir.join("coordinator.toml");
    std::fs::write(&path, moved).expect("write config");
    path
}

#[test]
fn every_example_loads_for_real() {
    for env in ["dev", "staging", "prod"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = materialize(env, dir.path());
        let c = lifeboat_coordinator::load_config(&path).unwrap_or_else(|e| panic!("{env}: {e:#}"));
        assert_eq!(
            c.catalog,
            config::CatalogLocation::Sqlite(dir.path().join("state/catalog.db"))
        );
    }
}

#[test]
fn a_missing_or_readable_secret_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = materialize("prod", dir.path());
    let url = dir.path().join("credentials/oncall.url");
    std::fs::set_permissions(&url, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let e = format!(
        "{:#}",
        lifeboat_coordinator::load_config(&path).expect_err("accepted")
    );
    assert!(
        e.contains("alerts.webhook[0].url_file") && e.contains("chmod 600"),
        "{e}"
    );
    assert!(!e.contains("hooks.example.com"), "the URL leaked: {e}");
    std::fs::remove_file(&url).expect("rm");
    let e = format!(
        "{:#}",
        lifeboat_coordinator::load_config(&path).expect_err("accepted")
    );
    assert!(e.contains("alerts.webhook[0].url_file"), "{e}");
}

#[test]
fn examples_mean_what_they_say() {
    let h = |n: u64| Duration::from_secs(n * 3600);

    let dev = parse("dev");
    assert_eq!(dev.http_listen.to_string(), "127.0.0.1:9187");
    assert_eq!(
        dev.objectives
            .for_target(&"dev/app".parse().expect("target"))
            .rpo,
        h(26)
    );
    assert!(dev.alerts.webhooks.is_empty());
    assert_eq!(dev.role_of("dev"), Some(Role::Admin));

    let staging = parse("staging");
    assert_eq!(staging.alerts.webhooks.len(), 1);
    assert_eq!(staging.alerts.agent_offline_after, Duration::from_secs(900));
    assert_eq!(staging.role_of("ci"), Some(Role::Operator));
    assert_eq!(
        staging.agents.get("staging-1").map(String::as_str),
        Some("staging")
    );

    let prod = parse("prod");
    assert_eq!(
        prod.objectives
            .for_target(&"prod/orders".parse().expect("target"))
            .rpo,
        Duration::from_secs(5400)
    );
    assert_eq!(
        prod.objectives
            .for_target(&"prod/orders".parse().expect("target"))
            .rto,
        h(1)
    );
    assert_eq!(
        prod.objectives
            .for_target(&"prod/billing".parse().expect("target"))
            .rpo,
        h(25)
    );
    assert_eq!(
        prod.objectives
            .for_target(&"prod/billing".parse().expect("target"))
            .rto,
        h(2)
    );
    assert_eq!(
        prod.objectives
            .for_target(&"staging/x".parse().expect("target"))
            .rpo,
        h(26)
    );
    assert_eq!(prod.health.max_clock_skew, Duration::from_secs(15));
    assert_eq!(prod.alerts.size_change_percent, 40);
    let oncall = &prod.alerts.webhooks[0];
    assert_eq!(oncall.name, "oncall");
    assert!(oncall.wants(lifeboat_coordinator::alerts::IncidentKind::RpoBreach));
    assert!(!oncall.wants(lifeboat_coordinator::alerts::IncidentKind::SizeAnomaly));
    assert_eq!(prod.agents.len(), 2);
    assert_eq!(prod.role_of("mallory"), None);
}

#[test]
fn the_unit_loads_the_credentials_the_examples_use() {
    let unit = std::fs::read_to_string(root().join("deploy/systemd/lifeboat-coordinator.service"))
        .expect("read unit");
    for env in ["dev", "staging", "prod"] {
        for name in credentials(&example(env)) {
            if name.ends_with(".url") {
                // Webhook URLs differ per deployment: the unit shows the pattern, commented.
                assert!(
                    unit.contains("# LoadCredential="),
                    "no webhook credential pattern"
                );
                continue;
            }
            assert!(
                unit.lines()
                    .any(|l| l.starts_with(&format!("LoadCredential={name}:"))),
                "{env}: the unit does not load credential {name}"
            );
        }
    }
}

#[test]
fn unknown_keys_in_the_new_sections_are_refused() {
    for (from, to, key) in [
        (
            "warning_percent = 80",
            "warning_percent = 80\nwarn = 1",
            "warn",
        ),
        (
            "size_change_percent = 40",
            "size_change_percent = 40\nsize = 1",
            "size",
        ),
        (
            "max_clock_skew = \"15s\"",
            "max_clock_skew = \"15s\"\nskew = 1",
            "skew",
        ),
        (
            "timeout = \"10s\"",
            "timeout = \"10s\"\nretries = 3",
            "retries",
        ),
    ] {
        let text = example("prod").replacen(from, to, 1);
        assert_ne!(text, example("prod"), "{from} not in the prod example");
        let e = format!(
            "{:#}",
            config::parse(Path::new("/etc/lifeboat/coordinator.toml"), &text)
                .expect_err("unknown key accepted")
        );
        assert!(e.contains(key), "{key}: {e}");
    }
}

#[test]
fn the_annotated_example_declares_objectives() {
    let text = std::fs::read_to_string(root().join("deploy/coordinator.example.toml"))
        .expect("read example");
    let c = config::parse(Path::new("/etc/lifeboat/coordinator.toml"), &text)
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        c.objectives
            .for_target(&"prod/orders".parse().expect("target"))
            .rpo,
        Duration::from_secs(90 * 60)
    );
    assert_eq!(
        c.objectives
            .for_target(&"prod/orders".parse().expect("target"))
            .rto,
        Duration::from_secs(3600)
    );
    assert_eq!(
        c.objectives
            .for_target(&"prod/users".parse().expect("target"))
            .rpo,
        Duration::from_secs(26 * 3600)
    );
    assert_eq!(c.alerts.size_change_percent, 50);
}

#[test]
fn the_ha_example_shares_a_postgres_catalog_over_verified_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = materialize("ha", dir.path());
    let creds = dir.path().join("credentials");
    let c = lifeboat_coordinator::load_config(&path).expect("load");
    let config::CatalogLocation::Postgres(pg) = &c.catalog else {
        panic!("not a PostgreSQL catalog: {:?}", c.catalog);
    };
    assert_eq!(
        pg.url,
        "postgres://lifeboat@catalog-db.prod.internal:5432/lifeboat"
    );
    assert_eq!(
        pg.tls,
        lifeboat_coordinator::catalog::PostgresTls::VerifyFull {
            ca: Some(creds.join("catalog-ca.pem"))
        }
    );
    assert_eq!(pg.password_file, Some(creds.join("catalog.password")));
}
