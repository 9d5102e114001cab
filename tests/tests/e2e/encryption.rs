//! Client-side encryption with age (ADR 0025) through the real CLI, coordinator and agent.
//!
//! On a filesystem repository: an encrypted backup restores (data compared with the source),
//! verifies by decrypting, and restores by hand with the `age` command-line tool as
//! docs/DISASTER_RECOVERY.md says; no byte of a sentinel row value is anywhere in the
//! repository or the catalog, and no table name in the repository; the wrong key, a missing
//! `key.age`, a cut or changed ciphertext each give a clear error and restore nothing.
//!
//! On S3 with the repository's own encryption: a backup-only agent (recipients, no identity)
//! backs up and verifies stored bytes, and its restores and decrypting verifies are refused
//! naming the key ids; then, with an identity, 50 backups are rotated from an old key to a new
//! one without rewriting any data object; an agent killed during a rotation leaves every key
//! object readable by the old key or the new; the finished rotation leaves the old key useless
//! and the new one restoring.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use lifeboat_e2e::compare::assert_same_data;
use lifeboat_e2e::fixtures::{load_awkward, load_bulk};
use lifeboat_e2e::fsutil::files_under;
use lifeboat_e2e::http::http_get;
use lifeboat_e2e::poll::eventually;
use lifeboat_e2e::s3proxy::{Action, Rule};
use lifeboat_e2e::sandbox::find_str;
use lifeboat_e2e::{Sandbox, SandboxTarget, TestDir};
use serde_json::Value;

use crate::by_hand_restore::{block, pg_env, run_bash, substitute};

const DB: &str = "orders";
/// A row value that must never be stored in readable form.
const SENTINEL: &str = "sentinel-4111-1111-1111-1111-cvv-737";
/// A table name that must not be readable in the repository (the manifest seals it).
const SECRET_TABLE: &str = "payroll_ledger_q4";

/// `lifeboat keys generate --out PATH`: the identity file and its recipient (public key).
pub(crate) fn keygen(path: &Path) -> String {
    let out = Command::new(lifeboat_e2e::bin("lifeboat"))
        .args(["keys", "generate", "--out"])
        .arg(path)
        .output()
        .expect("run lifeboat keys generate");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "keys generate failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.split_whitespace()
        .find(|w| w.starts_with("age1"))
        .unwrap_or_else(|| panic!("keys generate printed no recipient: {text}"))
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

/// A recipient's key id, as docs/encryption.md says to compute it.
pub(crate) fn key_id(recipient: &str) -> String {
    lifeboat_common::keys::key_id(recipient)
}

/// Every file under `root` that contains `needle`.
fn files_containing(root: &Path, needle: &[u8]) -> Vec<PathBuf> {
    files_under(root)
        .into_iter()
        .map(|rel| root.join(rel))
        .filter(|p| {
            std::fs::read(p)
                .map(|b| b.windows(needle.len()).any(|w| w == needle))
                .unwrap_or(false)
        })
        .collect()
}

fn load_secrets(s: &Sandbox) {
    s.pg.psql(
        DB,
        &format!(
            "CREATE TABLE {SECRET_TABLE} (id int PRIMARY KEY, card text);
             INSERT INTO {SECRET_TABLE} SELECT g, '{SENTINEL}-' || g FROM generate_series(1, 500) g;"
        ),
    );
}

/// `age -d -i IDENTITY FILE` succeeds.
pub(crate) fn age_opens(identity: &Path, file: &Path) -> bool {
    Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(identity)
        .arg(file)
        .output()
        .expect("run age (apt-get install age)")
        .status
        .success()
}

/// Restarts the agent with `identity` added to its `encryption = { recipients = [recipient] }`.
pub(crate) fn give_identity(s: &mut Sandbox, recipient: &str, identity: &Path) {
    s.agent.stop();
    let config = std::fs::read_to_string(s.agent.config_path()).expect("config");
    let needle = format!("recipients = [\"{recipient}\"] }}");
    assert!(config.contains(&needle), "{config}");
    let config = config.replace(
        &needle,
        &format!(
            "recipients = [\"{recipient}\"], identity_file = \"{}\" }}",
            identity.display()
        ),
    );
    std::fs::write(s.agent.config_path(), config).expect("write config");
    s.agent.restart(&s.admin);
}

fn id_of(rec: &Value) -> String {
    find_str(rec, "backup_id").expect("backup_id")
}

/// The job a `--wait --output json` command printed, with its error text.
fn failed_job(out: &lifeboat_e2e::ctl::CtlOutput) -> String {
    assert_eq!(out.code, 1, "expected a failed job: {out}");
    out.to_string()
}

#[test]
fn encrypted_backups_restore_verify_and_leak_nothing() {
    let dir = TestDir::new("encryption_fs");
    let keys = dir.sub("keys");
    let ops_key = keys.join("ops.key");
    let ops = keygen(&ops_key);
    let escrow = keygen(&keys.join("escrow.key"));
    let mut s = Sandbox::builder("encryption_fs")
        .dir(dir)
        .target(SandboxTarget::new(DB).extra(&format!(
            "encryption = {{ recipients = [\"{ops}\", \"{escrow}\"], identity_file = \"{}\" }}",
            ops_key.display()
        )))
        .build();
    load_awkward(&s.pg, DB);
    load_bulk(&s.pg, DB, "lines", 20_000);
    load_secrets(&s);

    // `targets check` says what this agent can do.
    let check = s.admin.run_json(&["targets", "check", &s.target(DB)]);
    check.assert_ok();
    let text = check.to_string();
    assert!(
        text.contains(&key_id(&ops)) && text.contains("can restore"),
        "{text}"
    );

    let rec = s.backup_ok(DB);
    let id = id_of(&rec);
    let shown = rec.to_string();
    assert!(
        shown.contains(&key_id(&ops)) && shown.contains(&key_id(&escrow)),
        "backup show names the key ids: {shown}"
    );
    // The catalog keeps what the agent reported: the table and its rows are listed.
    let contents = s.admin.run_json(&["backup", "contents", &id]);
    contents.assert_ok();
    assert!(contents.to_string().contains(SECRET_TABLE), "{contents}");

    // What the repository holds: ciphertext and a manifest without the names.
    let bdir = s.backup_dir(DB, &id);
    let mut names: Vec<String> = files_under(&bdir)
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "data.pgdump.zst.age",
            "globals.sql.zst.age",
            "key.age",
            "manifest.json"
        ],
        "objects of an encrypted backup"
    );
    assert!(files_containing(&s.repo, SENTINEL.as_bytes()).is_empty());
    assert!(
        files_containing(&s.repo, SECRET_TABLE.as_bytes()).is_empty(),
        "a table name is readable in the repository"
    );
    assert!(
        files_containing(s.coordinator.dir(), SENTINEL.as_bytes()).is_empty(),
        "a row value reached the coordinator's catalog"
    );
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(bdir.join("manifest.json")).expect("manifest"))
            .expect("manifest json");
    assert_eq!(manifest["encryption"]["key_ids"][0], key_id(&ops));
    assert!(manifest["sealed"].is_string(), "{manifest}");
    assert_eq!(manifest["row_counts"], Value::Array(vec![]));

    // The keys in use, and a recovery kit naming them (no private key in it).
    let listed = s.admin.run_json(&["keys", "list"]);
    listed.assert_ok();
    let in_use = listed.json();
    assert_eq!(in_use["keys"].as_array().map(Vec::len), Some(2), "{in_use}");
    assert!(listed.to_string().contains(&escrow), "{listed}");
    let kit = s.dir.path().join("kit.txt");
    s.admin
        .run(&["keys", "escrow", "--out", &kit.display().to_string()])
        .assert_ok();
    let text = std::fs::read_to_string(&kit).expect("kit");
    assert!(
        text.contains(&key_id(&ops)) && text.contains(&escrow),
        "{text}"
    );
    for key in [&ops_key, &keys.join("escrow.key")] {
        let secret = std::fs::read_to_string(key).expect("key");
        let secret = secret
            .lines()
            .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
            .expect("a secret key line");
        assert!(!text.contains(secret), "a private key is in the kit");
    }
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&kit).expect("meta").permissions().mode() & 0o777,
        0o600
    );
    s.admin
        .run(&["keys", "escrow", "--out", &kit.display().to_string()])
        .assert_code(2);

    // Restore: the data is the source's.
    s.restore(&id, "orders_back", &[]).assert_ok();
    assert_same_data(&s.pg, DB, "orders_back", &s.dir.sub("cmp1"));
    // Verify decrypts and decodes.
    s.admin
        .run(&["backup", "verify", &id, "--decrypt", "--wait"])
        .assert_ok();
    let after = s.backup_show(&id);
    assert_eq!(after["verify_status"], "ok", "{after}");

    // By hand with the age tool, as docs/DISASTER_RECOVERY.md says, with the escrow key.
    let work = s.dir.sub("by-hand");
    let run = substitute(
        &block("pg-age"),
        &[
            ("B", &bdir.display().to_string()),
            ("K", &keys.join("escrow.key").display().to_string()),
            ("W", &work.join("w").display().to_string()),
            ("DB", "orders_by_hand"),
        ],
    );
    let out = run_bash(&run, &pg_env(&s.pg), &work);
    assert!(
        out.status.success(),
        "the by-hand procedure failed:\n{run}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_same_data(&s.pg, DB, "orders_by_hand", &s.dir.sub("cmp2"));

    // The wrong key: the identity file now holds a stranger's key (it is read at each job).
    let saved = std::fs::read(&ops_key).expect("key");
    std::fs::remove_file(&ops_key).expect("rm");
    keygen(&ops_key);
    let out = s.restore(&id, "orders_wrong_key", &[]);
    let err = failed_job(&out);
    assert!(
        err.contains(&key_id(&ops)) && err.contains(&key_id(&escrow)),
        "the error lists the key ids the backup needs: {err}"
    );
    assert!(!s.pg.database_exists("orders_wrong_key"));
    let out = s
        .admin
        .run_json(&["backup", "verify", &id, "--decrypt", "--wait"]);
    assert!(
        failed_job(&out).contains("identity"),
        "verify --decrypt names the missing identity: {out}"
    );
    write_key(&ops_key, &saved);

    // A missing key object: nothing restores, verify says missing.
    let key_obj = bdir.join("key.age");
    let aside = s.dir.path().join("key.age.aside");
    std::fs::rename(&key_obj, &aside).expect("move key.age");
    let err = failed_job(&s.restore(&id, "orders_no_key", &[]));
    assert!(err.contains("key.age") && err.contains("missing"), "{err}");
    assert!(!s.pg.database_exists("orders_no_key"));
    s.admin.run(&["backup", "verify", &id, "--wait"]);
    assert_eq!(s.backup_show(&id)["verify_status"], "missing");
    std::fs::rename(&aside, &key_obj).expect("restore key.age");

    // A cut ciphertext, then one changed byte: corrupt, nothing restored.
    let data = bdir.join("data.pgdump.zst.age");
    let good = std::fs::read(&data).expect("data");
    for (what, bad) in [
        ("cut", good[..good.len() - 1000].to_vec()),
        ("flipped", {
            let mut b = good.clone();
            let mid = b.len() / 2;
            b[mid] ^= 0x10;
            b
        }),
    ] {
        std::fs::write(&data, &bad).expect("damage");
        let db = format!("orders_{what}");
        let out = s.restore(&id, &db, &[]);
        assert_eq!(out.code, 1, "{what}: {out}");
        assert!(!s.pg.database_exists(&db), "{what}: a database was made");
        s.admin.run(&["backup", "verify", &id, "--wait"]);
        assert_eq!(s.backup_show(&id)["verify_status"], "corrupt", "{what}");
    }
    std::fs::write(&data, &good).expect("repair");
    s.admin
        .run(&["backup", "verify", &id, "--wait"])
        .assert_ok();
    assert_eq!(s.backup_show(&id)["verify_status"], "ok");
    s.agent.stop();
}

fn write_key(path: &Path, bytes: &[u8]) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, bytes).expect("write key");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// The S3 file of each kept backup's `file`, by backup id.
fn s3_files(s: &Sandbox, ids: &[String], file: &str) -> Vec<PathBuf> {
    let s3 = s.s3.as_ref().expect("s3");
    ids.iter()
        .map(|id| s3.object_path(&format!("test/{DB}/{id}/{file}")))
        .collect()
}

/// `keys rotate ENV/orders --add NEW --remove OLD [extra…]` as admin.
fn rotate(s: &Sandbox, new: &str, old: &str, extra: &[&str]) -> lifeboat_e2e::ctl::CtlOutput {
    let target = s.target(DB);
    let mut args = vec!["keys", "rotate", &target, "--add", new, "--remove", old];
    args.extend_from_slice(extra);
    s.admin.run(&args)
}

/// Size, modification time and content hash of each file.
fn fingerprints(files: &[PathBuf]) -> Vec<(u64, std::time::SystemTime, String)> {
    use sha2::Digest as _;
    files
        .iter()
        .map(|f| {
            let m = std::fs::metadata(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            let bytes = std::fs::read(f).expect("read");
            (
                m.len(),
                m.modified().expect("mtime"),
                hex::encode(sha2::Sha256::digest(&bytes)),
            )
        })
        .collect()
}

#[test]
fn backup_only_agent_then_rotation_rewrites_no_data() {
    let dir = TestDir::new("encryption_s3");
    let keys = dir.sub("keys");
    let old_key = keys.join("old.key");
    let old = keygen(&old_key);
    let new_key = keys.join("new.key");
    let new = keygen(&new_key);
    let mut s = Sandbox::builder("encryption_s3")
        .dir(dir)
        .target(SandboxTarget::new(DB))
        .s3(&[&format!("encryption = {{ recipients = [\"{old}\"] }}")])
        .build();
    load_secrets(&s);

    // 1. A backup-only agent: backs up, checks stored bytes, cannot restore.
    let check = s.admin.run_json(&["targets", "check", &s.target(DB)]);
    check.assert_ok();
    assert!(check.to_string().contains("backup-only"), "{check}");
    let first = id_of(&s.backup_ok(DB));
    s.admin
        .run(&["backup", "verify", &first, "--wait"])
        .assert_ok();
    let shown = s.backup_show(&first);
    assert_eq!(shown["verify_status"], "ok", "{shown}");
    assert!(
        shown.to_string().contains("not decrypted"),
        "the verdict says what was not checked: {shown}"
    );
    let out = s
        .admin
        .run_json(&["backup", "verify", &first, "--decrypt", "--wait"]);
    let err = failed_job(&out);
    assert!(
        err.contains("identity") && err.contains(&key_id(&old)),
        "{err}"
    );
    let err = failed_job(&s.restore(&first, "orders_refused", &[]));
    assert!(
        err.contains(&key_id(&old)) && err.contains("backup-only"),
        "{err}"
    );
    assert!(!s.pg.database_exists("orders_refused"));
    let grep = files_containing(&s.dir.sub("s3"), SENTINEL.as_bytes());
    assert!(grep.is_empty(), "plaintext in the bucket: {grep:?}");

    // 2. The agent gets the old identity; 49 more backups.
    give_identity(&mut s, &old, &old_key);
    let mut ids = vec![first];
    for _ in 0..49 {
        ids.push(find_str(&s.backup_run(DB).assert_ok().json(), "backup_id").expect("backup_id"));
    }
    let data = s3_files(&s, &ids, "data.pgdump.zst.age");
    let before = fingerprints(&data);
    let key_objects = s3_files(&s, &ids, "key.age");
    assert!(key_objects.iter().all(|k| age_opens(&old_key, k)));

    // 3. A dry run changes nothing.
    let keys_before = fingerprints(&key_objects);
    rotate(&s, &new, &old, &["--dry-run", "--wait"]).assert_ok();
    assert_eq!(fingerprints(&key_objects), keys_before, "a dry run wrote");

    // 4. Killed during a rotation: the 21st key object's write never returns.
    let proxy = &s.s3.as_ref().expect("s3").proxy;
    let key_puts = || {
        proxy
            .log()
            .iter()
            .filter(|l| l.contains("PUT") && l.contains("key.age"))
            .count()
    };
    let before_rotation = key_puts();
    proxy.add(
        Rule::new(Action::Hang)
            .method("PUT")
            .path("key.age")
            .skip(20),
    );
    rotate(&s, &new, &old, &[]).assert_ok();
    eventually(
        "the rotation reaches the hung write",
        Duration::from_secs(60),
        || {
            let puts = key_puts() - before_rotation;
            anyhow::ensure!(puts > 20, "{puts} key object writes so far");
            Ok(())
        },
    );
    s.agent.kill();
    proxy.clear();
    let (mut by_old, mut by_new) = (0, 0);
    for k in &key_objects {
        let (o, n) = (age_opens(&old_key, k), age_opens(&new_key, k));
        assert!(o || n, "{} opens with neither key", k.display());
        by_old += usize::from(o);
        by_new += usize::from(n);
    }
    assert!(by_old > 0 && by_new > 0, "old {by_old}, new {by_new}");

    // 5. The rotation again, to the end: the new key opens every key object, the old none,
    // and no data object was rewritten.
    s.agent.restart(&s.admin);
    rotate(&s, &new, &old, &["--wait"]).assert_ok();
    for k in &key_objects {
        assert!(age_opens(&new_key, k), "{} not rotated", k.display());
        assert!(
            !age_opens(&old_key, k),
            "{} still opens with the old key",
            k.display()
        );
    }
    assert_eq!(fingerprints(&data), before, "a data object was rewritten");
    let listed = s.admin.run_json(&["keys", "list", &s.target(DB)]);
    listed.assert_ok();
    assert!(listed.to_string().contains(&key_id(&new)), "{listed}");
    let (_, metrics) = http_get(s.coordinator.http_addr(), "/metrics");
    assert!(
        metrics.contains(&format!(
            "lifeboat_backups_by_key{{key_id=\"{}\"}} 50",
            key_id(&new)
        )),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("by_key"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // 6. The agent's identity is still the old key: restores fail. With the new key they work.
    let err = failed_job(&s.restore(&ids[10], "orders_old_key", &[]));
    assert!(err.contains(&key_id(&new)), "{err}");
    let new_bytes = std::fs::read(&new_key).expect("new key");
    write_key(&old_key, &new_bytes);
    s.restore(&ids[10], "orders_new_key", &[]).assert_ok();
    assert_same_data(&s.pg, DB, "orders_new_key", &s.dir.sub("cmp"));
    s.agent.stop();
}

#[test]
fn mariadb_encrypted_backup_round_trips() {
    let dir = TestDir::new("encryption_mariadb");
    let key = dir.sub("keys").join("ops.key");
    let ops = keygen(&key);
    let s = Sandbox::builder("encryption_mariadb")
        .dir(dir)
        .mariadb_target(SandboxTarget::new("shop").extra(&format!(
            "encryption = {{ recipients = [\"{ops}\"], identity_file = \"{}\" }}",
            key.display()
        )))
        .build();
    let my = s.mariadb.as_ref().expect("mariadb");
    my.sql(
        "shop",
        &format!(
            "CREATE TABLE {SECRET_TABLE} (id INT PRIMARY KEY, card VARCHAR(100));
             INSERT INTO {SECRET_TABLE} SELECT seq, CONCAT('{SENTINEL}-', seq) FROM seq_1_to_2000;
             CREATE TABLE big (id INT PRIMARY KEY, v CHAR(32));
             INSERT INTO big SELECT seq, MD5(seq) FROM seq_1_to_20000;"
        ),
    );
    let rec = s.backup_ok("shop");
    let id = id_of(&rec);
    let bdir = s.backup_dir("shop", &id);
    assert!(
        bdir.join("data.sql.zst.age").is_file(),
        "{}",
        bdir.display()
    );
    assert!(bdir.join("key.age").is_file());
    assert!(files_containing(&s.repo, SENTINEL.as_bytes()).is_empty());
    assert!(files_containing(&s.repo, SECRET_TABLE.as_bytes()).is_empty());
    s.admin
        .run(&["backup", "verify", &id, "--decrypt", "--wait"])
        .assert_ok();
    s.restore(&id, "shop_copy", &[]).assert_ok();
    assert_eq!(
        my.dump_sql("shop"),
        my.dump_sql("shop_copy"),
        "the restored database differs from the source"
    );
}
