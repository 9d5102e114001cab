//! Friction item "job errors are for people": the error a failed job reports (what `jobs show`,
//! `/health/backups` and webhooks carry) is one clear sentence with what to do, then at most
//! one line of cause: at most ~300 characters, no PostgreSQL source line ("at line 948"), no
//! text said twice. The full chain stays in the agent's log. Real failures: an S3 server that
//! rejects the credentials, a missing bucket, and a PostgreSQL server that rejects the
//! password.

use lifeboat_e2e::sandbox::find_str;
use lifeboat_e2e::{Sandbox, SandboxTarget};

/// Checks a failed job's error text; returns it.
fn assert_readable(s: &Sandbox, target: &str, what: &str, out: &lifeboat_e2e::CtlOutput) -> String {
    assert_eq!(out.code, 1, "{what}: the backup must fail: {out}");
    let job = s.job_of(target, out);
    assert_eq!(find_str(&job, "state").as_deref(), Some("failed"), "{job}");
    let error = job
        .get("error")
        .and_then(|e| e.as_str())
        .unwrap_or_default()
        .to_owned();
    eprintln!("{what}: {} chars: {error}", error.chars().count());
    assert!(!error.trim().is_empty(), "{what}: no error text: {job}");
    assert!(
        error.chars().count() <= 320,
        "{what}: the job error is {} characters long: {error}",
        error.chars().count()
    );
    assert!(
        !error.contains("at line"),
        "{what}: the job error carries a server source line: {error}"
    );
    assert!(
        error.lines().count() <= 2,
        "{what}: more than one line of cause: {error}"
    );
    // No phrase of 40 characters appears twice.
    let chars: Vec<char> = error.chars().collect();
    for start in 0..chars.len().saturating_sub(40) {
        let phrase: String = chars[start..start + 40].iter().collect();
        let rest: String = chars[start + 1..].iter().collect();
        assert!(
            !rest.contains(&phrase),
            "{what}: the job error repeats {phrase:?}: {error}"
        );
    }
    error
}

#[test]
fn s3_failures_read_as_one_sentence() {
    if std::env::var_os("LIFEBOAT_S3S_FS").is_none() {
        eprintln!("skipped: LIFEBOAT_S3S_FS is not set");
        return;
    }
    let s = Sandbox::builder("error-text-s3")
        .s3(&["credentials = \"env\"", "max_attempts = 2"])
        .agent_env("AWS_ACCESS_KEY_ID", "lifeboat-wrong-key")
        .agent_env("AWS_SECRET_ACCESS_KEY", "lifeboat-wrong-secret")
        .agent_env("AWS_EC2_METADATA_DISABLED", "true")
        .target(SandboxTarget::new("app"))
        .build();
    let out = s.backup_run("app");
    let error = assert_readable(&s, "app", "wrong S3 credentials", &out);
    let lower = error.to_lowercase();
    assert!(
        lower.contains("credentials") && lower.contains("check"),
        "the error must say the credentials were rejected and what to check: {error}"
    );
    // The agent's log keeps the whole story.
    assert!(
        s.agent.logs().contains("job failed"),
        "the agent log lacks the failure"
    );
    s.shutdown();
}

#[test]
fn postgres_failures_read_without_server_source_lines() {
    let s = Sandbox::builder("error-text-pg")
        .target(SandboxTarget::new("app").wrong_password())
        .build();
    let out = s.backup_run("app");
    let error = assert_readable(&s, "app", "wrong PostgreSQL password", &out);
    assert!(
        error.to_lowercase().contains("password"),
        "the error must name the password: {error}"
    );
    s.shutdown();
}

#[test]
fn unreachable_s3_reads_as_one_sentence() {
    if std::env::var_os("LIFEBOAT_S3S_FS").is_none() {
        eprintln!("skipped: LIFEBOAT_S3S_FS is not set");
        return;
    }
    let mut s = Sandbox::builder("error-text-s3-down")
        .s3(&["max_attempts = 2"])
        .target(SandboxTarget::new("app"))
        .build();
    // The S3 server and the proxy the agent talks through go away: connection refused.
    drop(s.s3.take());
    let out = s.backup_run("app");
    let error = assert_readable(&s, "app", "S3 endpoint down", &out);
    assert!(
        error.contains("cannot reach") && error.contains("check"),
        "the error must say the endpoint cannot be reached and what to check: {error}"
    );
    s.shutdown();
}
