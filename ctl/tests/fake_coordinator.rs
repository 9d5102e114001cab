//! The built binary against a scripted Control server over real mutual TLS: output shapes,
//! `--wait`, exit statuses from job states, and the hints for refused requests and certificates.
//! The real coordinator is tested end to end elsewhere; this fake only plays back jobs.

mod fake;
mod util;

use fake::*;
use lifeboat_proto as pb;
use util::{Pki, Run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whoami_in_both_formats() {
    let srv = default_server().await;
    let r = srv.run(&["whoami"]).await;
    r.expect_code(0);
    assert_eq!(
        r.stdout,
        "name          alice\nrole          operator\nenvironments  all\n"
    );
    let r = srv.run(&["whoami", "--output", "json"]).await;
    r.expect_code(0);
    assert_eq!(
        r.json(),
        serde_json::json!({"name": "alice", "role": "operator", "environments": null})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_run_wait_json_prints_the_final_job() {
    let srv = default_server().await;
    let r = srv
        .run(&["backup", "run", "prod/orders", "--wait", "--output", "json"])
        .await;
    r.expect_code(0);
    let v = r.json();
    assert_eq!(v["job_id"], J_OK);
    assert_eq!(v["state"], "succeeded");
    assert_eq!(v["kind"], "backup");
    assert_eq!(v["backup_id"], B_OK);
    assert_eq!(v["duration_ms"], 83_000);
    assert_eq!(v["finished_at"], "2026-11-27T23:31:24.000Z");
    assert!(r.stderr.is_empty(), "progress in JSON mode: {r:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_run_wait_text_logs_changes_and_summarises() {
    let srv = default_server().await;
    let r = srv.run(&["backup", "run", "prod/orders", "--wait"]).await;
    r.expect_code(0);
    // stderr is not a terminal here: one line per change of state or phase.
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 4, "{r:#?}");
    assert!(
        lines[0].ends_with(&format!("{J_OK}: backup queued")),
        "{r:#?}"
    );
    assert!(
        lines[1].contains("running (dumping) · raw 40.0 MiB · stored 10.0 MiB"),
        "{r:#?}"
    );
    assert!(lines[2].contains("running (uploading)"), "{r:#?}");
    assert!(lines[3].contains("succeeded (done)"), "{r:#?}");
    for needle in [
        &format!("backup       {B_OK}"),
        "raw size     40.0 MiB",
        "stored size  10.0 MiB",
        "ratio        4.0x",
        "duration     1m 23s",
        &format!("sha256       {} (stored data)", "5".repeat(64)),
    ] {
        assert!(r.stdout.contains(needle), "missing {needle:?}: {r:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_job_exits_1_with_its_error() {
    let srv = default_server().await;
    for output in ["table", "json"] {
        let r = srv
            .run(&["backup", "run", "prod/broken", "--wait", "--output", output])
            .await;
        r.expect_code(1);
        let last = r.stderr.lines().last().expect("an error line");
        assert_eq!(
            last,
            format!(
                "error: backup job {J_FAIL} failed: pg_dump exited with status 1: permission \
                 denied for table x"
            ),
            "{r:#?}"
        );
        assert_eq!(r.stderr.matches("error:").count(), 1, "{r:#?}");
        if output == "json" {
            assert_eq!(r.json()["state"], "failed");
        } else {
            assert!(r.stdout.is_empty(), "{r:#?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_wait_prints_the_ids() {
    let srv = default_server().await;
    let r = srv.run(&["backup", "run", "prod/orders"]).await;
    r.expect_code(0);
    assert!(r.stdout.contains(&format!("job     {J_OK}")), "{r:#?}");
    assert!(r.stdout.contains(&format!("backup  {B_OK}")), "{r:#?}");
    assert!(
        r.stdout.contains(&format!("lifeboat jobs watch {J_OK}")),
        "{r:#?}"
    );
    let r = srv
        .run(&["backup", "run", "prod/orders", "--output", "json"])
        .await;
    r.expect_code(0);
    assert_eq!(r.json()["state"], "queued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permission_denied_is_explained() {
    let srv = default_server().await;
    let r = srv.run(&["backup", "run", "prod/secret"]).await;
    r.expect_code(1);
    assert!(
        r.stderr.starts_with(
            "error: start backup: the coordinator refused this operator certificate's request: \
             operator alice has role viewer"
        ),
        "{r:#?}"
    );
    let r = srv.run(&["backup", "run", "prod/nothing"]).await;
    r.expect_code(1);
    assert_eq!(r.stderr, "error: start backup: no target prod/nothing\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_survives_a_broken_stream() {
    let srv = default_server().await;
    let r = srv.run(&["jobs", "watch", J_FLAKY]).await;
    r.expect_code(0);
    assert!(r.stderr.contains("interrupted"), "{r:#?}");
    assert_eq!(srv.fake.watches.lock().expect("lock")[J_FLAKY], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_of_a_corrupt_backup_fails() {
    let srv = default_server().await;
    let r = srv.run(&["backup", "verify", B_CORRUPT, "--wait"]).await;
    r.expect_code(1);
    assert!(r.stdout.contains("verify status  corrupt"), "{r:#?}");
    assert!(
        r.stderr.ends_with(&format!(
            "error: backup {B_CORRUPT} is corrupt: stored sha256 mismatch\n"
        )),
        "{r:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_sends_the_options_and_names_the_database() {
    let srv = default_server().await;
    let r = srv
        .run(&[
            "restore",
            B_OK,
            "--to",
            "staging/orders",
            "--database",
            "orders_copy",
            "--clean",
            "--wait",
        ])
        .await;
    r.expect_code(0);
    assert!(
        r.stdout.contains("restored into  orders_restore_1"),
        "{r:#?}"
    );
    let sent = srv.fake.restores.lock().expect("lock").clone();
    assert_eq!(
        sent,
        vec![pb::RestoreRequest {
            backup_id: B_OK.into(),
            to_target: "staging/orders".into(),
            database: "orders_copy".into(),
            clean: true,
            ..Default::default()
        }]
    );
}

/// A coordinator without the dry run refuses it: no real restore is started instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_is_never_a_restore() {
    let srv = default_server().await;
    let r = srv
        .run(&[
            "restore",
            B_OK,
            "--database",
            "orders_copy",
            "--clean",
            "--dry-run",
        ])
        .await;
    r.expect_code(1);
    assert!(r.stderr.contains("plan restore"), "{r:#?}");
    assert!(
        srv.fake.restores.lock().expect("lock").is_empty(),
        "a dry run started a restore"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_and_cancel() {
    let srv = default_server().await;
    let r = srv.run(&["jobs", "list", "--output", "json"]).await;
    r.expect_code(0);
    assert_eq!(r.json()[0]["progress"]["phase"], "dumping");
    let r = srv.run(&["backup", "list"]).await;
    r.expect_code(0);
    assert!(r.stdout.starts_with("BACKUP "), "{r:#?}");
    assert!(r.stdout.contains("4.0x"), "{r:#?}");
    assert!(!r.stderr.contains("more backups"), "{r:#?}");
    // A full page says how to get the next one, on stderr (JSON stays one array).
    let r = srv
        .run(&["backup", "list", "--limit", "1", "--output", "json"])
        .await;
    r.expect_code(0);
    assert_eq!(r.json()[0]["backup_id"], B_OK);
    assert!(
        r.stderr.contains(&format!(
            "more backups follow; the next page: the same command with --after {B_OK}"
        )),
        "{r:#?}"
    );
    let r = srv
        .run(&["backup", "list", "--after", B_OK, "--output", "json"])
        .await;
    r.expect_code(0);
    assert_eq!(r.json().as_array().map(Vec::len), Some(0), "{r:#?}");
    let r = srv.run(&["backup", "list", "--after", "not-an-id"]).await;
    r.expect_code(2);
    let r = srv.run(&["jobs", "cancel", J_OK]).await;
    r.expect_code(0);
    assert!(r.stdout.contains("asked the agent to cancel"), "{r:#?}");
    let r = srv.run(&["targets", "list"]).await;
    r.expect_code(1);
    assert!(r.stderr.contains("not implemented"), "{r:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_stdout_is_not_an_error() {
    use std::process::Stdio;
    let srv = default_server().await;
    let mut cmd = tokio::process::Command::from(srv.command(&["agents", "list"]));
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    drop(child.stdout.take()); // the reader goes away before anything is written
    let out = child.wait_with_output().await.expect("wait");
    let r = Run::from(out);
    r.expect_code(0);
    assert!(r.stderr.is_empty(), "{r:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_applies_to_requests() {
    let srv = start(
        Fake {
            slow: true,
            ..Fake::default()
        },
        &["127.0.0.1"],
    )
    .await;
    let r = srv.run(&["whoami", "--timeout", "1"]).await;
    r.expect_code(1);
    assert!(r.stderr.contains("did not answer"), "{r:#?}");
    assert!(r.stderr.contains("--timeout"), "{r:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_from_another_ca_is_explained() {
    let srv = default_server().await;
    let other = Pki::new();
    let (cert, key) = other.operator("mallory");
    let mut cmd = srv.command(&["whoami"]);
    cmd.env("LIFEBOAT_CERT", &cert).env("LIFEBOAT_KEY", &key);
    let r = util::run_async(cmd).await;
    r.expect_code(1);
    assert!(
        r.stderr.contains("refused this client certificate"),
        "{r:#?}"
    );
    assert_eq!(r.stderr.lines().count(), 1, "{r:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_name_override() {
    let srv = start(Fake::default(), &["coord.internal"]).await;
    let r = srv.run(&["whoami"]).await;
    r.expect_code(1);
    assert!(r.stderr.contains("--server-name"), "{r:#?}");
    let r = srv
        .run(&["whoami", "--server-name", "coord.internal"])
        .await;
    r.expect_code(0);
    // A CA that did not sign the coordinator's certificate.
    let other = Pki::new();
    let mut cmd = srv.command(&["whoami", "--server-name", "coord.internal"]);
    cmd.env("LIFEBOAT_CA", other.ca());
    let r = util::run_async(cmd).await;
    r.expect_code(1);
    assert!(
        r.stderr.contains("is --ca the CA that signed it?"),
        "{r:#?}"
    );
}

/// On a terminal, `--wait` draws a live spinner line instead of logging changes. Runs the binary
/// under `script(1)` to give it a pseudo-terminal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_on_a_terminal_shows_live_progress() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: script(1) is not installed");
        return;
    }
    let srv = default_server().await;
    let line = format!("{} backup run prod/slow --wait", util::BIN);
    let mut script = std::process::Command::new("script");
    util::clean_env(&mut script);
    script
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .envs(srv.envs())
        .env("TERM", "xterm");
    let r = util::run_async(script).await;
    r.expect_code(0);
    let screen = &r.stdout;
    assert!(screen.contains("\u{1b}["), "no terminal drawing: {r:#?}");
    assert!(
        screen.contains("running (dumping) · raw 40.0 MiB · stored 10.0 MiB"),
        "{r:#?}"
    );
    assert!(screen.contains("[00:00:0"), "no elapsed time: {r:#?}");
    assert!(
        !screen.contains("Z 2026"),
        "change lines on a terminal: {r:#?}"
    );
    assert!(screen.contains("sha256"), "no summary: {r:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_dry_run_shows_each_decision_and_why() {
    let srv = default_server().await;
    let r = srv
        .run(&["prune", "--target", "prod/orders", "--dry-run"])
        .await;
    r.expect_code(0);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(
        lines[0].starts_with("TARGET") && lines[0].contains("REASONS"),
        "{r:#?}"
    );
    assert!(
        lines[1].contains("20261128T013000Z-00000a")
            && lines[1].contains("keep")
            && lines[1].contains("newest,last"),
        "{r:#?}"
    );
    assert!(
        lines[2].contains("delete") && lines[2].contains("expired"),
        "{r:#?}"
    );
    assert!(
        r.stdout
            .contains("1 kept, would delete 1 (1.0 KiB); dry run, nothing deleted"),
        "{r:#?}"
    );
    assert!(
        r.stdout.contains("dev/scratch: no retention policy"),
        "{r:#?}"
    );

    let r = srv.run(&["prune", "--dry-run", "--output", "json"]).await;
    r.expect_code(0);
    let v = r.json();
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["keep"], 1);
    assert_eq!(v["delete"], 1);
    assert_eq!(v["delete_bytes"], 1024);
    assert_eq!(v["decisions"][1]["action"], "delete");
    assert_eq!(v["decisions"][1]["reasons"], serde_json::json!(["expired"]));
    assert_eq!(v["decisions"][1]["job_id"], serde_json::Value::Null);
    assert_eq!(v["decisions"][0]["verify_status"], "ok");
    assert_eq!(
        v["targets_without_policy"],
        serde_json::json!(["dev/scratch"])
    );

    let r = srv.run(&["prune", "--output", "json"]).await;
    r.expect_code(0);
    assert_eq!(
        r.json()["decisions"][1]["job_id"],
        "20261128T020000Z-00000d"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_commands() {
    let srv = default_server().await;
    let r = srv
        .run(&["schedule", "next", "prod/orders", "--count", "2"])
        .await;
    r.expect_code(0);
    assert!(
        r.stdout
            .contains("prod/orders: \"30 2 * * *\" in Europe/Berlin"),
        "{r:#?}"
    );
    assert!(r.stdout.contains("2026-03-29 03:00:00 CEST"), "{r:#?}");

    let r = srv.run(&["schedule", "list", "--output", "json"]).await;
    r.expect_code(0);
    let v = r.json();
    assert_eq!(v[0]["target"], "prod/orders");
    assert_eq!(v[0]["jitter_secs"], 600);
    assert_eq!(v[0]["paused"], false);
    assert_eq!(v[0]["last_run"]["outcome"], "skipped");
    assert_eq!(v[0]["last_run"]["job_id"], serde_json::Value::Null);

    let r = srv.run(&["schedule", "list"]).await;
    r.expect_code(0);
    assert!(
        r.stdout.contains("10m") && r.stdout.contains("active"),
        "{r:#?}"
    );
    assert!(
        r.stdout.contains("skipped: a backup of prod/orders"),
        "{r:#?}"
    );

    let r = srv
        .run(&[
            "schedule",
            "set",
            "prod/orders",
            "--cron",
            "30 2 * * *",
            "--tz",
            "Mars/Olympus",
        ])
        .await;
    // Refused by the coordinator: the operation failed (1), not the command line (2).
    r.expect_code(1);
    assert!(r.stderr.contains("IANA"), "{r:#?}");

    let r = srv.run(&["schedule", "delete", "prod/orders"]).await;
    r.expect_code(1);
    assert!(r.stderr.contains("has no schedule"), "{r:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_confirms_in_one_line() {
    let srv = default_server().await;
    let r = srv
        .run(&[
            "backup",
            "pin",
            "20261127T233000Z-7f3a9c",
            "--reason",
            "audit",
        ])
        .await;
    r.expect_code(0);
    assert_eq!(r.stdout.lines().count(), 1, "{}", r.stdout);
    assert!(
        r.stdout
            .starts_with("pinned 20261127T233000Z-7f3a9c (prod/orders, finished ")
            && r.stdout.contains("backup unpin 20261127T233000Z-7f3a9c"),
        "{}",
        r.stdout
    );
    let r = srv
        .run(&[
            "backup",
            "pin",
            "20261127T233000Z-7f3a9c",
            "--reason",
            "audit",
            "--output",
            "json",
        ])
        .await;
    r.expect_code(0);
    assert_eq!(r.json()["pinned"], true, "{}", r.stdout);
    assert_eq!(r.json()["backup_id"], "20261127T233000Z-7f3a9c");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_cursors_are_positive_ids() {
    let srv = default_server().await;
    for bad in ["0", "-3", "abc"] {
        for cmd in [
            &["audit", "list", "--after", bad][..],
            &["schedule", "runs", "prod/orders", "--after", bad][..],
        ] {
            let r = srv.run(cmd).await;
            r.expect_code(2);
            assert!(
                r.stderr.contains("--after") || r.stderr.contains(bad),
                "{cmd:?}: {r:#?}"
            );
        }
    }
    // A drill cursor is a job id.
    let r = srv.run(&["drill", "list", "--after", "../x"]).await;
    r.expect_code(2);
    assert!(r.stderr.contains("--after"), "{r:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_list_reads_every_page_or_one_with_limit() {
    let srv = default_server().await;
    // Without --limit: every agent, across the coordinator's pages, each once, in name order.
    let r = srv.run(&["agents", "list", "--output", "json"]).await;
    r.expect_code(0);
    let names: Vec<String> = r
        .json()
        .as_array()
        .expect("an array")
        .iter()
        .map(|a| a["name"].as_str().expect("name").to_owned())
        .collect();
    assert_eq!(names.len(), 2000);
    assert!(names.windows(2).all(|w| w[0] < w[1]), "not in name order");
    assert!(!r.stderr.contains("more agents"), "{}", r.stderr);
    // With --limit: one page and how to get the next.
    let r = srv
        .run(&["agents", "list", "--limit", "3", "--output", "json"])
        .await;
    r.expect_code(0);
    assert_eq!(r.json().as_array().map(Vec::len), Some(3));
    assert!(
        r.stderr
            .contains(&format!("the same command with --after {}", names[2])),
        "{}",
        r.stderr
    );
    let r = srv
        .run(&[
            "agents", "list", "--limit", "3", "--after", &names[2], "--output", "json",
        ])
        .await;
    r.expect_code(0);
    assert_eq!(r.json()[0]["name"], names[3].as_str());
    for bad in [
        &["agents", "list", "--limit", "0"][..],
        &["targets", "list", "--after", "nope"][..],
    ] {
        srv.run(bad).await.expect_code(2);
    }
}

#[tokio::test]
async fn a_call_a_standby_refuses_goes_to_the_next_coordinator_given() {
    let srv = start(
        Fake {
            standby_refusals: 1.into(),
            ..Fake::default()
        },
        &["localhost", "127.0.0.1"],
    )
    .await;
    // The same server under two URLs: the CLI cannot tell, and must send the call on.
    let both = format!("{},{}", srv.url(), srv.url());
    let r = srv
        .run(&["--coordinator", &both, "prune", "--dry-run"])
        .await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.contains("20261127T013000Z-00000b"), "{}", r.stdout);
    assert_eq!(
        srv.fake
            .standby_refusals
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    // With no other URL the refusal is the answer.
    srv.fake
        .standby_refusals
        .store(1, std::sync::atomic::Ordering::SeqCst);
    let r = srv.run(&["prune", "--dry-run"]).await;
    assert_ne!(r.code, Some(0), "{}", r.stdout);
    assert!(r.stderr.contains("standing by"), "{}", r.stderr);
}
