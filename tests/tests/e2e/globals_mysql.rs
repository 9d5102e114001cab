//! MySQL/MariaDB globals: each logical backup captures the server's accounts, roles and
//! grants (without password hashes by default) beside the data, and `lifeboat globals
//! restore` recreates them on a freshly installed server: the grants come back exactly,
//! accounts that exist are skipped and never changed, administrator accounts are refused
//! without `--allow-superuser`, an account whose password was left out is locked, and a hash
//! is restored only from a `globals = "with-passwords"` backup and never appears in a log, a
//! job report or the CLI's output. `restore --with-globals` applies the database's grants to
//! the name it is restored under.

use std::process::{Command, Stdio};

use lifeboat_e2e::mariadb::MariaDb;
use lifeboat_e2e::sandbox::find_str;
use lifeboat_e2e::{Agent, Sandbox, SandboxTarget, TargetConfig};
use serde_json::Value;

use super::globals::{globals_findings, said, zstd_decode};

const APP_PASSWORD: &str = "app-secret-pw-1";

const SOURCE: &str = "
CREATE TABLE shop.orders (id INT PRIMARY KEY, customer VARCHAR(20));
INSERT INTO shop.orders SELECT seq, CONCAT('c', seq) FROM seq_1_to_500;
CREATE TABLE shop.audit (id INT, note VARCHAR(20));
CREATE ROLE readers;
GRANT SELECT ON shop.* TO readers;
CREATE USER 'app'@'%' IDENTIFIED BY 'app-secret-pw-1';
GRANT SELECT, INSERT, UPDATE ON shop.* TO 'app'@'%';
CREATE USER 'reporting'@'127.0.0.1';
GRANT readers TO 'reporting'@'127.0.0.1';
SET DEFAULT ROLE readers FOR 'reporting'@'127.0.0.1';
GRANT SELECT (id), INSERT ON shop.audit TO 'reporting'@'127.0.0.1';
CREATE USER 'root_like'@'localhost';
GRANT ALL PRIVILEGES ON *.* TO 'root_like'@'localhost' WITH GRANT OPTION;
";

fn said_prefix(job: &Value, severity: &str, prefix: &str) -> bool {
    globals_findings(job)
        .iter()
        .any(|(s, m)| s == severity && m.starts_with(prefix))
}

/// `SHOW GRANTS FOR account`, sorted, without the `IDENTIFIED …` part (its hash).
fn grants(my: &MariaDb, account: &str) -> Vec<String> {
    let mut v: Vec<String> = my
        .sql("", &format!("SHOW GRANTS FOR {account};"))
        .lines()
        .map(|l| match l.find(" IDENTIFIED BY PASSWORD '") {
            Some(i) => {
                let rest = &l[i + " IDENTIFIED BY PASSWORD '".len()..];
                let end = rest.find('\'').map_or(rest.len(), |e| e + 1);
                format!("{}{}", &l[..i], &rest[end..])
            }
            None => l.to_owned(),
        })
        .collect();
    v.sort();
    v
}

/// Accounts of a server, the harness's and the engine's aside.
fn accounts(my: &MariaDb) -> String {
    my.query_one(
        "",
        "SELECT COALESCE(GROUP_CONCAT(CONCAT(User, '@', Host) ORDER BY User, Host SEPARATOR ' '), '') FROM mysql.user \
         WHERE User NOT IN ('root', 'mariadb.sys', 'lifeboat')",
    )
}

/// Whether `user` can log in over TCP with `password` (given through the environment).
fn can_log_in(my: &MariaDb, user: &str, password: &str) -> bool {
    Command::new("mariadb")
        .arg("--no-defaults")
        .args(["-h", "127.0.0.1", "-P", &my.port().to_string(), "-u", user])
        .args(["-e", "SELECT 1"])
        .env("MYSQL_PWD", password)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run mariadb")
        .success()
}

fn globals_restore(s: &Sandbox, id: &str, extra: &[&str]) -> (bool, Value, String) {
    let mut args = vec!["globals", "restore", id, "--target", "staging/fresh"];
    args.extend_from_slice(extra);
    let out = s.admin.run_json(&args);
    (out.success(), out.json(), out.to_string())
}

#[test]
fn mariadb_accounts_are_captured_and_recreated_on_a_fresh_server() {
    let s = Sandbox::builder("globals_mysql")
        .mariadb_target(SandboxTarget::new("shop"))
        .mariadb_target(
            SandboxTarget::new("shop_pw")
                .database("shop")
                .no_create()
                .extra("globals = \"with-passwords\""),
        )
        .build();
    let my = s.mariadb.as_ref().expect("mariadb");
    my.sql("shop", SOURCE);
    let hash = my.query_one(
        "",
        "SELECT authentication_string FROM mysql.user WHERE User = 'app'",
    );
    assert!(hash.starts_with('*') && hash.len() == 41, "{hash}");

    // A freshly installed second server, on an agent of another environment sharing the
    // repository.
    let my2 = MariaDb::start();
    my2.create_db("landing");
    let pw = s.dir.sub("secrets").join("fresh.pass");
    my2.write_password_file(&pw);
    let staging = Agent::builder(
        &s.dir.sub("agent-2"),
        &s.pki,
        &s.coordinator.url(),
        "agent-2",
        "staging",
    )
    .fs_repository("local", &s.repo)
    .target(TargetConfig::mysql(
        "fresh",
        &my2.url("landing"),
        &pw,
        "mariadb",
    ))
    .start(&s.admin);
    assert_eq!(accounts(&my2), "");

    // Captured with the backup, as its own object, without the hash.
    let rec = s.backup_ok("shop");
    let id = find_str(&rec, "backup_id").expect("backup_id");
    let shown = s.backup_show(&id);
    assert_eq!(shown["globals"]["status"], "captured", "{shown}");
    // readers, app, reporting, root_like and the harness's own account.
    assert_eq!(shown["globals"]["roles"].as_u64(), Some(5), "{shown}");
    assert_eq!(shown["globals"]["memberships"].as_u64(), Some(1), "{shown}");
    assert_eq!(shown["globals"]["with_passwords"], false, "{shown}");
    let object = s.backup_dir("shop", &id).join("globals.sql.zst");
    let raw = zstd_decode(&std::fs::read(&object).expect("the globals object"));
    assert!(raw.contains("CREATE ROLE `readers`;"), "{raw}");
    assert!(
        !raw.contains(&hash[1..]),
        "a password hash was captured by default"
    );
    assert!(!raw.contains("mariadb.sys"), "{raw}");

    // The dry run names what it would do and changes nothing.
    let (ok, job, out) = globals_restore(&s, &id, &["--dry-run"]);
    assert!(ok, "{out}");
    assert!(
        said(&job, "ok", "account 'app'@'%': would be created"),
        "{job}"
    );
    assert_eq!(accounts(&my2), "", "a dry run created accounts");

    // The globals restore: created, skipped and refused, each by name.
    let (ok, job, out) = globals_restore(&s, &id, &["--wait"]);
    assert!(ok, "{out}");
    for a in [
        "role readers",
        "account 'app'@'%'",
        "account 'reporting'@'127.0.0.1'",
    ] {
        assert!(said(&job, "ok", &format!("{a}: created")), "{a}: {job}");
    }
    assert!(
        said(
            &job,
            "info",
            "account 'lifeboat'@'127.0.0.1': skipped (exists)"
        ),
        "{job}"
    );
    assert!(
        said_prefix(
            &job,
            "warning",
            "account 'root_like'@'localhost': refused (administrator privileges (ALL PRIVILEGES, WITH GRANT OPTION ON *.*)"
        ),
        "{job}"
    );
    assert!(
        said(
            &job,
            "ok",
            "role readers granted to 'reporting'@'127.0.0.1': created"
        ),
        "{job}"
    );
    assert!(
        said_prefix(
            &job,
            "warning",
            "account 'app'@'%': its password is not in the backup"
        ),
        "{job}"
    );
    // shop.audit is not on this server yet: its column grant waits for the database.
    assert!(
        said_prefix(
            &job,
            "info",
            "grant on shop.audit to 'reporting'@'127.0.0.1': left out"
        ),
        "{job}"
    );
    assert_eq!(
        accounts(&my2),
        "app@% readers@ reporting@127.0.0.1",
        "accounts after the globals restore"
    );
    assert_eq!(grants(&my2, "readers"), grants(my, "readers"));
    assert_eq!(grants(&my2, "'app'@'%'"), grants(my, "'app'@'%'"));
    // No hash, locked: the old password does not open it.
    assert_eq!(
        my2.query_one(
            "",
            "SELECT CONCAT(COALESCE(JSON_VALUE(Priv, '$.authentication_string'), ''), '|', JSON_VALUE(Priv, '$.account_locked')) \
             FROM mysql.global_priv WHERE User = 'app'"
        ),
        "|1"
    );
    assert!(
        can_log_in(my, "app", APP_PASSWORD),
        "the source account works"
    );
    assert!(!can_log_in(&my2, "app", APP_PASSWORD));
    assert!(!can_log_in(&my2, "app", ""));

    // Again: everything exists, nothing changes.
    let before = accounts(&my2);
    let (ok, job, out) = globals_restore(&s, &id, &["--wait"]);
    assert!(ok, "{out}");
    assert!(
        !globals_findings(&job)
            .iter()
            .any(|(_, m)| m.ends_with(": created")),
        "{job}"
    );
    for a in [
        "role readers",
        "account 'app'@'%'",
        "account 'reporting'@'127.0.0.1'",
    ] {
        assert!(
            said(&job, "info", &format!("{a}: skipped (exists)")),
            "{a}: {job}"
        );
    }
    assert_eq!(accounts(&my2), before);

    // restore --with-globals: the accounts exist (skipped), the database is restored, then its
    // grants are applied; the data and every grant match the source.
    let out = s.admin.run_json(&[
        "restore",
        &id,
        "--to",
        "staging/fresh",
        "--database",
        "shop",
        "--with-globals",
        "--wait",
    ]);
    assert!(out.success(), "{out}");
    assert_eq!(my2.dump_sql("shop"), my.dump_sql("shop"));
    for a in ["readers", "'app'@'%'", "'reporting'@'127.0.0.1'"] {
        assert_eq!(grants(&my2, a), grants(my, a), "grants of {a}");
    }
    // Under another name, the database's grants follow it.
    let out = s.admin.run_json(&[
        "restore",
        &id,
        "--to",
        "staging/fresh",
        "--database",
        "shop_two",
        "--with-globals",
        "--wait",
    ]);
    assert!(out.success(), "{out}");
    let app = grants(&my2, "'app'@'%'");
    assert!(
        app.contains(&"GRANT SELECT, INSERT, UPDATE ON `shop_two`.* TO `app`@`%`".to_owned()),
        "{app:?}"
    );

    // An administrator account only with --allow-superuser.
    let (ok, job, out) = globals_restore(&s, &id, &["--allow-superuser", "--wait"]);
    assert!(ok, "{out}");
    assert!(
        said(&job, "ok", "account 'root_like'@'localhost': created"),
        "{job}"
    );
    assert_eq!(
        grants(&my2, "'root_like'@'localhost'"),
        grants(my, "'root_like'@'localhost'")
    );

    // With passwords: the hash comes back only from a with-passwords backup.
    my2.sql("", "DROP USER 'app'@'%';");
    let rec = s.backup_ok("shop_pw");
    let with_pw = find_str(&rec, "backup_id").expect("backup_id");
    assert_eq!(s.backup_show(&with_pw)["globals"]["with_passwords"], true);
    let (ok, job, out) = globals_restore(&s, &with_pw, &["--wait"]);
    assert!(ok, "{out}");
    assert!(said(&job, "ok", "account 'app'@'%': created"), "{job}");
    assert_eq!(
        my2.query_one(
            "",
            "SELECT authentication_string FROM mysql.user WHERE User = 'app'"
        ),
        hash
    );
    assert!(can_log_in(&my2, "app", APP_PASSWORD));

    // The hash is a secret: in no log, no job report, no CLI output.
    let mut seen = vec![
        ("agent log".to_owned(), s.agent.logs()),
        ("staging agent log".to_owned(), staging.logs()),
        ("coordinator log".to_owned(), s.coordinator.logs()),
        ("cli output".to_owned(), out),
    ];
    let jobs = s.admin.run_json(&["jobs", "list"]);
    seen.push(("jobs list".into(), jobs.to_string()));
    for j in jobs.json().as_array().into_iter().flatten() {
        let id = j["job_id"].as_str().unwrap_or_default();
        seen.push((
            format!("job {id}"),
            s.admin.run_json(&["jobs", "show", id]).to_string(),
        ));
    }
    for (what, text) in &seen {
        assert!(
            !text.contains(&hash[1..]),
            "the password hash appears in the {what}"
        );
        assert!(
            !text.contains(APP_PASSWORD),
            "the password appears in the {what}"
        );
    }
    s.shutdown();
}

#[test]
fn a_backup_user_that_may_not_read_accounts_still_backs_up() {
    let s = Sandbox::builder("globals_mysql_denied")
        .mariadb_target(SandboxTarget::new("shop").user("dumper", "dumper-pw-1"))
        .build();
    let my = s.mariadb.as_ref().expect("mariadb");
    my.sql(
        "",
        "CREATE TABLE shop.t (id INT PRIMARY KEY); INSERT INTO shop.t VALUES (1), (2);\n\
         CREATE USER 'dumper'@'127.0.0.1' IDENTIFIED BY 'dumper-pw-1';\n\
         GRANT SELECT, LOCK TABLES, SHOW VIEW, EVENT, TRIGGER ON shop.* TO 'dumper'@'127.0.0.1';",
    );
    let run = s.backup_run("shop");
    run.assert_ok();
    let job = s.job_of("shop", &run);
    let job = s.job(&find_str(&job, "job_id").expect("job_id"));
    let id = find_str(&run.json(), "backup_id").expect("backup_id");
    let shown = s.backup_show(&id);
    assert_eq!(shown["globals"]["status"], "not_captured", "{shown}");
    let summary = shown["globals"]["summary"].as_str().unwrap_or_default();
    assert!(summary.contains("mysql.user"), "{summary}");
    assert!(
        said_prefix(&job, "warning", "accounts and grants were not captured"),
        "{job}"
    );
    let out = s.admin.run_json(&["globals", "restore", &id, "--wait"]);
    assert!(!out.success(), "{out}");
    assert!(out.to_string().contains("not captured"), "{out}");
    s.shutdown();
}
