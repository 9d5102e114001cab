//! The built binary without a coordinator: the PKI end to end, exit statuses and messages for
//! configuration mistakes and an unreachable coordinator, and help for every group.

mod util;

use std::os::unix::fs::PermissionsExt;

use lifeboat_common::{identity::Identity, pki::pem_to_der};
use util::{run, s};

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn pki_init_and_issue_end_to_end() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("ca");
    let d = s(&dir);

    let r = run(&["pki", "init", "--dir", d]);
    r.expect_code(0);
    assert!(r.stdout.contains("ca.pem"), "{r:#?}");
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("ca.key")), 0o600);
    let ca_key = std::fs::read_to_string(dir.join("ca.key")).expect("ca.key");

    // A second init refuses and leaves the CA alone.
    let r = run(&["pki", "init", "--dir", d]);
    r.expect_code(2);
    assert!(r.stderr.starts_with("error: "), "{r:#?}");
    assert!(r.stderr.contains("refusing to overwrite"), "{r:#?}");
    assert_eq!(
        std::fs::read_to_string(dir.join("ca.key")).expect("ca.key"),
        ca_key
    );

    let r = run(&[
        "pki", "issue", "--dir", d, "--kind", "operator", "--name", "alice",
    ]);
    r.expect_code(0);
    assert!(r.stdout.contains("lifeboat://operator/alice"), "{r:#?}");
    assert_eq!(mode(&dir.join("alice.key")), 0o600);
    let pem = std::fs::read_to_string(dir.join("alice.pem")).expect("alice.pem");
    let der = pem_to_der(&pem).expect("der");
    assert_eq!(
        lifeboat_common::identity::from_der(&der),
        Ok(Identity::Operator("alice".into()))
    );

    let out = tmp.path().join("agents");
    let r = run(&[
        "pki",
        "issue",
        "--dir",
        d,
        "--kind",
        "agent",
        "--name",
        "prod-1",
        "--out-dir",
        s(&out),
        "--days",
        "10",
        "--output",
        "json",
    ]);
    r.expect_code(0);
    let v = r.json();
    assert_eq!(v["identity"], "lifeboat://agent/prod-1");
    assert_eq!(v["kind"], "agent");
    assert_eq!(v["key"], s(&out.join("prod-1.key")));
    let days = (v["not_after_ms"].as_i64().expect("ms") - v["not_before_ms"].as_i64().expect("ms"))
        / 86_400_000;
    assert_eq!(days, 10);
    assert_eq!(mode(&out.join("prod-1.key")), 0o600);

    let r = run(&[
        "pki",
        "issue",
        "--dir",
        d,
        "--kind",
        "coordinator",
        "--name",
        "coord",
        "--san",
        "coord.example",
        "--san",
        "10.0.0.7",
    ]);
    r.expect_code(0);
    assert!(r.stdout.contains("coord.example, 10.0.0.7"), "{r:#?}");

    // Never overwrite, never print a key.
    let r = run(&[
        "pki", "issue", "--dir", d, "--kind", "operator", "--name", "alice",
    ]);
    r.expect_code(2);
    assert!(r.stderr.contains("already exists"), "{r:#?}");
    let all_keys = ["ca.key", "alice.key", "coord.key"]
        .map(|k| std::fs::read_to_string(dir.join(k)).expect("key"));
    for key in &all_keys {
        let body = key.lines().nth(1).expect("key body");
        assert!(!r.stdout.contains(body) && !r.stderr.contains(body));
    }

    // --san is for coordinators only; a missing CA names the fix.
    let r = run(&[
        "pki", "issue", "--dir", d, "--kind", "agent", "--name", "x", "--san", "h",
    ]);
    r.expect_code(2);
    let r = run(&[
        "pki",
        "issue",
        "--dir",
        s(&tmp.path().join("nope")),
        "--kind",
        "agent",
        "--name",
        "x",
    ]);
    r.expect_code(2);
    assert!(r.stderr.contains("lifeboat pki init"), "{r:#?}");
}

#[test]
fn missing_connection_options_exit_2_and_name_them() {
    let r = run(&["agents", "list"]);
    r.expect_code(2);
    assert!(
        r.stderr.starts_with("error: missing connection options"),
        "{r:#?}"
    );
    for name in [
        "--coordinator",
        "LIFEBOAT_COORDINATOR",
        "--ca",
        "--cert",
        "--key",
        "LIFEBOAT_KEY",
    ] {
        assert!(r.stderr.contains(name), "{name} not named: {r:#?}");
    }
    assert_eq!(
        r.stderr.lines().count(),
        1,
        "error printed more than once: {r:#?}"
    );
    assert!(r.stdout.is_empty());

    // Only the missing one is named.
    let r = util::command(&["whoami", "--ca", "a", "--cert", "b", "--key", "c"])
        .output()
        .expect("run");
    let r = util::Run::from(r);
    r.expect_code(2);
    assert!(r.stderr.contains("--coordinator"), "{r:#?}");
    assert!(!r.stderr.contains("--cert"), "{r:#?}");
}

#[test]
fn configuration_mistakes_exit_2() {
    let pki = util::Pki::new();
    let (cert, key) = pki.operator("alice");
    let ca = pki.ca();
    let base = |url: &'static str| {
        vec![
            "whoami".to_owned(),
            "--coordinator".into(),
            url.into(),
            "--ca".into(),
            s(&ca).into(),
            "--cert".into(),
            s(&cert).into(),
            "--key".into(),
            s(&key).into(),
        ]
    };
    let run_owned = |args: Vec<String>| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&refs)
    };

    let r = run_owned(base("http://127.0.0.1:1"));
    r.expect_code(2);
    assert!(r.stderr.contains("https://"), "{r:#?}");

    let mut args = base("https://127.0.0.1:1");
    args[6] = "/nonexistent/alice.pem".into();
    let r = run_owned(args);
    r.expect_code(2);
    assert!(r.stderr.contains("/nonexistent/alice.pem"), "{r:#?}");

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let r = run_owned(base("https://127.0.0.1:1"));
    r.expect_code(2);
    assert!(r.stderr.contains("chmod 600"), "{r:#?}");

    // Bad input never reaches the network.
    let r = run(&["backup", "run", "orders"]);
    r.expect_code(2);
    assert!(r.stderr.contains("ENV/NAME"), "{r:#?}");
    let r = run(&["restore", "20261127T233000Z-7f3a9c", "--clean"]);
    r.expect_code(2);
    assert!(r.stderr.contains("--database"), "{r:#?}");
}

#[test]
fn unreachable_coordinator_exits_1_with_a_hint() {
    let pki = util::Pki::new();
    let (cert, key) = pki.operator("alice");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let url = format!("https://127.0.0.1:{port}");
    let mut cmd = util::command(&["agents", "list"]);
    cmd.env("LIFEBOAT_COORDINATOR", &url)
        .env("LIFEBOAT_CA", pki.ca())
        .env("LIFEBOAT_CERT", &cert)
        .env("LIFEBOAT_KEY", &key);
    let r = util::Run::from(cmd.output().expect("run"));
    r.expect_code(1);
    assert!(
        r.stderr
            .starts_with(&format!("error: cannot reach the coordinator at {url}")),
        "{r:#?}"
    );
    assert!(r.stderr.contains("is it running?"), "{r:#?}");
    assert_eq!(r.stderr.lines().count(), 1, "{r:#?}");
}

#[test]
fn help_for_every_group() {
    let r = run(&["--help"]);
    r.expect_code(0);
    for group in [
        "pki", "whoami", "agents", "targets", "backup", "restore", "jobs",
    ] {
        assert!(r.stdout.contains(group), "{group} missing from --help");
    }
    let cases: &[(&[&str], &[&str])] = &[
        (&["pki", "--help"], &["init", "issue"]),
        (
            &["pki", "issue", "--help"],
            &["--kind", "--san", "--days", "--out-dir"],
        ),
        (&["whoami", "--help"], &["--coordinator", "--output"]),
        (&["agents", "--help"], &["list"]),
        (&["targets", "--help"], &["list"]),
        (&["backup", "--help"], &["run", "list", "show", "verify"]),
        (&["backup", "run", "--help"], &["TARGET", "--wait"]),
        (
            &["restore", "--help"],
            &["--to", "--database", "--clean", "--wait"],
        ),
        (&["jobs", "--help"], &["list", "show", "cancel", "watch"]),
        (
            &["jobs", "list", "--help"],
            &["--active", "--limit", "--target"],
        ),
    ];
    for (args, needles) in cases {
        let r = run(args);
        r.expect_code(0);
        for n in *needles {
            assert!(
                r.stdout.contains(n),
                "{n} missing from {args:?}: {}",
                r.stdout
            );
        }
    }
    run(&["--version"]).expect_code(0);
    run(&["nonsense"]).expect_code(2);
    run(&[]).expect_code(2);
}
