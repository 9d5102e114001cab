//! B30: the coordinator and the agent refuse a malformed or hostile config at start-up with
//! exit code 2 and a message naming the file and the key. A valid config next to each bad one
//! starts, so each refusal is caused by the one change.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use lifeboat_e2e::agent::{AgentBuilder, TargetConfig};
use lifeboat_e2e::coordinator::CoordinatorBuilder;
use lifeboat_e2e::pg::write_private;
use lifeboat_e2e::{Ctl, Pki, Proc, TestDir, bin};

/// Starts `program --config FILE` and expects it to exit 2 at once, naming `file` and `key`.
fn assert_refused(program: &str, dir: &Path, case: &str, text: &str, key: &str) -> String {
    let file = dir.join(format!("{case}.toml"));
    std::fs::write(&file, text).expect("write config");
    let mut cmd = Command::new(bin(program));
    cmd.arg("--config").arg(&file).current_dir(dir);
    let mut p = Proc::spawn(&format!("{program}-{case}"), cmd, dir);
    let status = p.wait_exit(Duration::from_secs(20));
    let logs = p.logs();
    let Some(status) = status else {
        p.stop();
        panic!("{program} started with a bad config ({case}):\n{text}\n{logs}");
    };
    assert_eq!(
        status.code(),
        Some(2),
        "{program} ({case}) must exit 2 on a bad config:\n{logs}"
    );
    assert!(
        logs.contains(&file.display().to_string()),
        "{program} ({case}): the message must name the file {}:\n{logs}",
        file.display()
    );
    assert!(
        logs.contains(key),
        "{program} ({case}): the message must name the key {key:?}:\n{logs}"
    );
    logs
}

fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} not in config:\n{text}");
    text.replacen(from, to, 1)
}

#[test]
fn bad_configs_are_refused_at_start_up() {
    let dir = TestDir::new("b30");
    let pki = Pki::init(&dir.path().join("pki"));
    let admin = pki.operator("admin");

    // Coordinator: the valid config starts and stops cleanly.
    let cdir = dir.sub("coordinator");
    let cb = CoordinatorBuilder::new(&cdir, &pki).operator("admin", "admin");
    let good = cb.config_toml();
    let key_path = pki.dir().join("coordinator.key");
    let mut coordinator = cb.start();

    // Agent: the valid config connects.
    let adir = dir.sub("agent");
    let pw = adir.join("db.pass");
    write_private(&pw, "not-used-here");
    let mut target = TargetConfig::new("app", "postgres://lifeboat@127.0.0.1:5999/app", &pw);
    target.compression_level = Some(3);
    let ab = AgentBuilder::new(&adir, &pki, &coordinator.url(), "agent-1", "test")
        .fs_repository("local", &dir.sub("repo"))
        .target(target);
    let agent_good = ab.config_toml();
    let state_dir = ab.state_dir();
    let ctl = Ctl::new(&coordinator.url(), pki.ca(), admin);
    let mut agent = ab.start(&ctl);
    assert!(agent.stop().success(), "agent exits 0 on SIGTERM");

    // Coordinator refusals.
    let c = "lifeboat-coordinator";
    assert_refused(
        c,
        &cdir,
        "unknown-key",
        &replace_once(&good, "[server]\n", "[server]\nbogus_key = 1\n"),
        "bogus_key",
    );
    let key_str = key_path.display().to_string();
    let dotdot = key_str.replace("/pki/", "/pki/../pki/");
    assert_refused(
        c,
        &cdir,
        "dotdot-key",
        &replace_once(
            &good,
            &format!("key = {key_str:?}"),
            &format!("key = {dotdot:?}"),
        ),
        "tls.key",
    );
    assert_refused(
        c,
        &cdir,
        "dotdot-catalog",
        &replace_once(
            &good,
            "/coordinator/catalog.db",
            "/coordinator/../coordinator/catalog.db",
        ),
        "catalog.url",
    );
    assert_refused(
        c,
        &cdir,
        "zero-lease",
        &replace_once(&good, "agent_lease_secs = 30", "agent_lease_secs = 0"),
        "agent_lease_secs",
    );
    let open_key = cdir.join("readable.key");
    std::fs::copy(&key_path, &open_key).expect("copy key");
    std::fs::set_permissions(&open_key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    assert_refused(
        c,
        &cdir,
        "key-0644",
        &replace_once(
            &good,
            &format!("key = {key_str:?}"),
            &format!("key = {:?}", open_key.display().to_string()),
        ),
        "tls.key",
    );

    // Agent refusals.
    let a = "lifeboat-agent";
    assert_refused(
        a,
        &adir,
        "unknown-key",
        &format!("bogus_key = 1\n{agent_good}"),
        "bogus_key",
    );
    let state = state_dir.display().to_string();
    assert_refused(
        a,
        &adir,
        "dotdot-state-dir",
        &replace_once(
            &agent_good,
            &format!("state_dir = {state:?}"),
            &format!("state_dir = {:?}", format!("{state}/../elsewhere")),
        ),
        "state_dir",
    );
    let open_pw = adir.join("open.pass");
    std::fs::write(&open_pw, "secret").expect("write");
    std::fs::set_permissions(&open_pw, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    assert_refused(
        a,
        &adir,
        "password-file-0644",
        &replace_once(
            &agent_good,
            &format!("password_file = {:?}", pw.display().to_string()),
            &format!("password_file = {:?}", open_pw.display().to_string()),
        ),
        "password_file",
    );
    let logs = assert_refused(
        a,
        &adir,
        "password-in-url",
        &replace_once(
            &agent_good,
            "postgres://lifeboat@",
            "postgres://lifeboat:hunter2-in-url@",
        ),
        "url",
    );
    assert!(
        !logs.contains("hunter2-in-url"),
        "the refusal must not echo the password:\n{logs}"
    );
    assert_refused(
        a,
        &adir,
        "zero-jobs",
        &replace_once(
            &agent_good,
            "max_concurrent_jobs = 2",
            "max_concurrent_jobs = 0",
        ),
        "max_concurrent_jobs",
    );
    for level in ["0", "23"] {
        assert_refused(
            a,
            &adir,
            &format!("compression-{level}"),
            &replace_once(
                &agent_good,
                "compression_level = 3",
                &format!("compression_level = {level}"),
            ),
            "compression_level",
        );
    }

    assert!(
        coordinator.stop().success(),
        "coordinator exits 0 on SIGTERM"
    );
}
