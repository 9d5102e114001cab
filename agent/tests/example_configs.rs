//! The example agent configs in deploy/examples/{dev,staging,prod} load with the agent's own
//! loader, which checks that the files they name exist and that secrets are private. Each
//! example is copied into a temp dir with its systemd credential and state paths pointed there,
//! and the credential files are created (keys and passwords with mode 0600).

use std::path::{Path, PathBuf};

use lifeboat_agent::config::{self, RepositoryConfig};
use lifeboat_common::secret::write_private_file;
use lifeboat_e2e::TestDir;

const CREDENTIALS: &str = "/run/credentials/lifeboat-agent.service/";
const STATE: &str = "/var/lib/lifeboat-agent";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn example(env: &str) -> String {
    std::fs::read_to_string(root().join(format!("deploy/examples/{env}/agent.toml")))
        .expect("read example")
}

fn credentials(text: &str) -> Vec<String> {
    let mut names: Vec<String> = text
        .match_indices(CREDENTIALS)
        .map(|(i, _)| {
            text[i + CREDENTIALS.len()..]
                .split('"')
                .next()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Writes the example with its paths under `dir` and creates what it names. `readable`: a
/// credential to create with mode 0644 instead of 0600.
fn materialize(env: &str, dir: &Path, readable: Option<&str>) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let text = example(env);
    let creds = dir.join("credentials");
    let state = dir.join("state");
    std::fs::create_dir_all(&creds).expect("mkdir");
    std::fs::create_dir_all(state.join("repo")).expect("mkdir");
    for name in credentials(&text) {
        let path = creds.join(&name);
        if name.ends_with(".pem") {
            std::fs::write(&path, "-----BEGIN CERTIFICATE-----\n").expect("write");
        } else {
            write_private_file(&path, b"not-a-real-secret\n").expect("write");
        }
        if readable == Some(name.as_str()) {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        }
    }
    let moved = text
        .replace(CREDENTIALS, &format!("{}/", creds.display()))
        .replace(STATE, &state.display().to_string());
    assert!(
        !moved.contains("/run/credentials"),
        "{env}: a path was not moved"
    );
    let path = dir.join("agent.toml");
    std::fs::write(&path, moved).expect("write config");
    path
}

#[test]
fn every_example_loads() {
    for env in ["dev", "staging", "prod"] {
        let dir = TestDir::new(&format!("example-agent-{env}"));
        let path = materialize(env, dir.path(), None);
        let c = config::load(&path).unwrap_or_else(|e| panic!("{env}: {e:#}"));
        assert_eq!(c.environment, env);
        assert!(!c.targets.is_empty(), "{env}: no targets");
        for t in c.targets.values() {
            assert!(
                c.repositories.contains_key(&t.repository),
                "{env}: target {} names an unknown repository",
                t.name
            );
            assert!(
                t.password_file.is_some(),
                "{env}: {} has no password_file",
                t.name
            );
        }
        match (env, c.repositories.values().next()) {
            ("dev", Some(RepositoryConfig::Fs { path })) => {
                assert_eq!(path, &dir.path().join("state/repo"));
            }
            ("staging" | "prod", Some(RepositoryConfig::S3(_))) => {}
            (env, other) => panic!("{env}: unexpected repository {other:?}"),
        }
    }
}

#[test]
fn production_never_replaces_a_database() {
    let dir = TestDir::new("example-agent-prod-clean");
    let c = config::load(&materialize("prod", dir.path(), None)).expect("load");
    assert!(c.targets.values().all(|t| !t.allow_clean_restore));
}

#[test]
fn a_readable_secret_or_key_is_refused() {
    for (env, name, key) in [
        ("dev", "app.pass", "password_file"),
        ("staging", "s3-secret-access-key", "secret_access_key_file"),
        ("prod", "agent.key", "tls.key"),
    ] {
        let dir = TestDir::new(&format!("example-agent-{env}-readable"));
        let path = materialize(env, dir.path(), Some(name));
        let e = format!(
            "{:#}",
            config::load(&path).expect_err("readable secret accepted")
        );
        assert!(e.contains(key) && e.contains("chmod 600"), "{env}: {e}");
    }
}

#[test]
fn the_unit_loads_the_tls_credentials_the_examples_use() {
    let unit = std::fs::read_to_string(root().join("deploy/systemd/lifeboat-agent.service"))
        .expect("read unit");
    for env in ["dev", "staging", "prod"] {
        for name in credentials(&example(env)) {
            if name.ends_with(".pem") || name.ends_with(".key") {
                assert!(
                    unit.lines()
                        .any(|l| l.starts_with(&format!("LoadCredential={name}:"))),
                    "{env}: the unit does not load credential {name}"
                );
            }
        }
    }
}

#[test]
fn the_ha_example_lists_both_coordinators() {
    let dir = TestDir::new("example-agent-ha");
    let path = materialize("ha", dir.path(), None);
    let c = config::load(&path).unwrap_or_else(|e| panic!("ha: {e:#}"));
    assert_eq!(
        c.coordinators,
        [
            "https://coord-a.prod.internal:7443",
            "https://coord-b.prod.internal:7443"
        ]
    );
}
