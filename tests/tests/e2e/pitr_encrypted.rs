//! Point-in-time recovery of an encrypted physical target (ADR 0026), through the real CLI,
//! coordinator, agent and PostgreSQL archiving.
//!
//! A backup-only agent (recipients, no identity) takes an encrypted base backup and archives
//! WAL encrypted to a WAL key of its own: nothing it stores is plaintext, its `pitr verify`
//! says which files it could not read back, and a restore on it is refused naming the key id
//! it lacks, writing nothing. Given the identity and restarted (a second WAL key), the agent
//! restores to moments whose WAL lies under either key, compared row for row. The archive is
//! read back whole; a flipped byte in an encrypted segment is named. The by-hand procedure of
//! docs/DISASTER_RECOVERY.md recovers the cluster to a moment with only `age`, `zstd` and
//! `tar`. A key rotation re-seals the WAL keys: afterwards the new key opens them and the old
//! one none, and no segment was rewritten.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use lifeboat_e2e::fsutil::files_under;
use lifeboat_e2e::pg::Pg;
use lifeboat_e2e::poll::eventually;
use lifeboat_e2e::sandbox::{ENV, find_str};
use lifeboat_e2e::wal::{Tools, archive_through_agent, archiver, physical_target, wait_archived};
use lifeboat_e2e::{Sandbox, TestDir};

use crate::by_hand_restore::{block, run_bash, substitute};
use crate::encryption::{age_opens, give_identity, key_id, keygen};
use crate::pitr::{
    between, commit, keys, restore_and_start, switch_and_wait, upto, wait_recovered,
};

const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";

/// Every object of the target's WAL archive: (WAL keys, archived files).
fn wal_objects(s: &Sandbox) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let root = s.repo.join(ENV).join("main/wal");
    let (mut keys, mut files) = (Vec::new(), Vec::new());
    for rel in files_under(&root) {
        let path = root.join(&rel);
        if rel.starts_with("keys") {
            keys.push(path);
        } else {
            files.push(path);
        }
    }
    keys.sort();
    files.sort();
    (keys, files)
}

fn fingerprints(files: &[PathBuf]) -> Vec<(PathBuf, Vec<u8>)> {
    files
        .iter()
        .map(|f| (f.clone(), std::fs::read(f).expect("read")))
        .collect()
}

/// A sandbox whose physical target `main` (with `extra` lines) archives through its agent
/// (into S3 with `s3`), table `t` created; the WAL client's copy is kept with it.
fn archiving(dir: TestDir, name: &str, extra: Option<String>, s3: bool) -> (Sandbox, Tools) {
    let tools = Tools::new();
    let mut target = physical_target("main");
    if let Some(line) = &extra {
        target = target.extra(line);
    }
    let mut b = Sandbox::builder(name)
        .dir(dir)
        .target(target)
        .agent_wal_socket_group("postgres")
        .agent_wal_client(&tools.bin());
    if s3 {
        b = b.s3(&[]);
    }
    let mut s = b.build();
    archive_through_agent(&mut s, &tools, "main");
    s.pg.psql(
        "main",
        "CREATE TABLE t (k int PRIMARY KEY, at timestamptz NOT NULL);",
    );
    (s, tools)
}

#[test]
fn an_encrypted_wal_archive_recovers_to_a_point_with_the_key_only() {
    let dir = TestDir::new("pitr_encrypted");
    let keys_dir = dir.sub("keys");
    let ops_key = keys_dir.join("ops.key");
    let ops = keygen(&ops_key);
    let new_key = keys_dir.join("new.key");
    let new = keygen(&new_key);
    let (mut s, _tools) = archiving(
        dir,
        "pitr_encrypted",
        Some(format!("encryption = {{ recipients = [\"{ops}\"] }}")),
        false,
    );
    let target = s.target("main");

    // 1. A backup-only agent: an encrypted base backup, six commits over two segments.
    let rec = s.backup_ok("main");
    let id = find_str(&rec, "backup_id").expect("backup_id");
    let shown = s.backup_show(&id);
    assert_eq!(
        shown["encryption"]["key_ids"][0].as_str(),
        Some(key_id(&ops).as_str()),
        "{shown}"
    );
    let bdir = s.repo.join(ENV).join("main").join(&id);
    let data = bdir.join("data.tar.zst.age");
    assert!(
        std::fs::read(&data)
            .expect("base backup")
            .starts_with(AGE_MAGIC),
        "the base backup is not an age file"
    );
    assert!(!bdir.join("data.tar.zst").exists());
    for k in 1..=6 {
        commit(&s.pg, k);
        if k == 3 {
            switch_and_wait(&s.pg);
        }
    }
    switch_and_wait(&s.pg);
    let t5 = between(&s.pg, 5, 6);
    let (wal_keys, files) = wal_objects(&s);
    assert_eq!(wal_keys.len(), 1, "one WAL key per agent run: {wal_keys:?}");
    assert!(files.len() >= 3, "{files:?}");
    for f in &files {
        let name = f.display().to_string();
        assert!(name.ends_with(".zst.age"), "{name} is not encrypted");
        let bytes = std::fs::read(f).expect("read");
        assert!(bytes.starts_with(AGE_MAGIC), "{name} is not an age file");
    }
    assert!(
        age_opens(&ops_key, &wal_keys[0]),
        "the WAL key opens with ops"
    );
    assert!(!age_opens(&new_key, &wal_keys[0]));

    let check = s.admin.run_json(&["targets", "check", &target]);
    check.assert_ok();
    assert!(
        check.stdout.contains("base backups and the WAL archive")
            && check.stdout.contains("backup-only"),
        "{check}"
    );
    // It verifies the base backup's stored bytes only; it cannot read its archive back (it
    // says so), nor restore (refused, naming the key).
    let out = s.admin.run_json(&["backup", "verify", &id, "--wait"]);
    out.assert_ok();
    assert!(
        out.stdout
            .contains("encrypted to WAL keys this agent holds no identity for"),
        "{out}"
    );
    let out = s.admin.run_json(&["pitr", "verify", &target, "--wait"]);
    out.assert_ok();
    assert!(
        out.stdout.contains("were not read back") && out.stdout.contains("backup-only"),
        "{out}"
    );
    let root = Pg::empty_root();
    let refused_dir = root.path().join("data");
    let out = s.admin.run_json(&[
        "restore",
        "--target",
        &target,
        "--data-dir",
        &refused_dir.display().to_string(),
        "--to-time",
        &t5,
        "--wait",
    ]);
    assert!(!out.success(), "a backup-only agent restored: {out}");
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains(&key_id(&ops)) && all.contains("backup-only"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_dir(&refused_dir).expect("list").count(),
        0,
        "a refused restore wrote into the data directory"
    );
    drop(root);

    // 2. The agent gets the identity (a new run: a second WAL key); three more commits.
    give_identity(&mut s, &ops, &ops_key);
    for k in 7..=9 {
        commit(&s.pg, k);
    }
    switch_and_wait(&s.pg);
    let t8 = between(&s.pg, 8, 9);
    let (wal_keys, files) = wal_objects(&s);
    assert_eq!(wal_keys.len(), 2, "{wal_keys:?}");

    // Restores to a moment under the first WAL key, and to one past the second's start.
    let copy = restore_and_start(&s, &["--to-time", &t5], false);
    assert_eq!(keys(&copy), upto(5), "--to-time {t5}");
    drop(copy);
    let copy = restore_and_start(&s, &["--to-time", &t8], false);
    assert_eq!(keys(&copy), upto(8), "--to-time {t8}");
    drop(copy);

    // The base backup verifies whole (decrypted, pg_verifybackup), with the WAL it spans.
    let out = s
        .admin
        .run_json(&["backup", "verify", &id, "--decrypt", "--wait"]);
    out.assert_ok();
    assert!(
        out.stdout.contains("archived WAL segment(s) from")
            && out.stdout.contains("match their SHA-256"),
        "{out}"
    );
    // The whole archive reads back now; a flipped byte in a segment is named.
    let out = s.admin.run_json(&["pitr", "verify", &target, "--wait"]);
    out.assert_ok();
    assert!(
        out.stdout.contains("each matching its SHA-256") && !out.stdout.contains("not read back"),
        "{out}"
    );
    let victim = files
        .iter()
        .find(|f| !f.display().to_string().contains("/history/"))
        .expect("a segment");
    let good = std::fs::read(victim).expect("read");
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x01;
    std::fs::set_permissions(victim, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::fs::write(victim, &bad).expect("damage");
    let out = s.admin.run_json(&["pitr", "verify", &target, "--wait"]);
    assert!(!out.success(), "{out}");
    let victim_name = victim.file_name().and_then(|n| n.to_str()).expect("name");
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains(victim_name) && all.contains("damaged"),
        "{out}"
    );
    std::fs::write(victim, &good).expect("repair");

    // 3. By hand, as docs/DISASTER_RECOVERY.md says: only age, zstd and tar.
    let work = tempfile::Builder::new()
        .prefix("lifeboat-by-hand-")
        .tempdir_in("/tmp")
        .expect("work dir");
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o711)).expect("chmod");
    let root = Pg::empty_root();
    // PostgreSQL's own spelling of the moment, as the procedure shows it.
    let moment = t5.replacen('T', " ", 1).replace('Z', "+00");
    let run = substitute(
        &block("pg-wal-age"),
        &[
            ("B", &bdir.display().to_string()),
            (
                "A",
                &s.repo.join(ENV).join("main/wal").display().to_string(),
            ),
            ("K", &ops_key.display().to_string()),
            ("W", &work.path().join("w").display().to_string()),
            ("D", &root.path().join("data").display().to_string()),
            ("T", &moment),
        ],
    );
    let out = run_bash(&run, &[], work.path());
    assert!(
        out.status.success(),
        "the by-hand procedure failed:\n{run}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let by_hand = Pg::start_existing(root, s.pg.password());
    wait_recovered(&by_hand, false);
    assert_eq!(keys(&by_hand), upto(5), "by hand to {t5}");
    drop(by_hand);

    // 4. A rotation to a new key re-seals the WAL keys in place; no archived file changes.
    let before = fingerprints(&files);
    let out = s.admin.run_json(&[
        "keys", "rotate", &target, "--add", &new, "--remove", &ops, "--wait",
    ]);
    out.assert_ok();
    assert!(out.stdout.contains("2 WAL key object(s)"), "{out}");
    for k in &wal_keys {
        assert!(age_opens(&new_key, k), "{} not rotated", k.display());
        assert!(
            !age_opens(&ops_key, k),
            "{} still opens with ops",
            k.display()
        );
    }
    assert!(age_opens(&new_key, &bdir.join("key.age")));
    assert_eq!(
        fingerprints(&files),
        before,
        "an archived file was rewritten"
    );
}

/// Encryption turned on for a physical target that already archives: the plaintext base
/// backup and WAL stay readable, new WAL is encrypted, and a restore from the plaintext backup
/// replays both kinds to the moment asked for, warning that the backup is plaintext.
#[test]
fn encryption_turned_on_keeps_the_archive_recoverable() {
    let dir = TestDir::new("pitr_encryption_on");
    let ops_key = dir.sub("keys").join("ops.key");
    let ops = keygen(&ops_key);
    let (mut s, _tools) = archiving(dir, "pitr_encryption_on", None, false);
    let rec = s.backup_ok("main");
    let id = find_str(&rec, "backup_id").expect("backup_id");
    for k in 1..=3 {
        commit(&s.pg, k);
    }
    switch_and_wait(&s.pg);
    let (_, plain) = wal_objects(&s);
    assert!(
        plain
            .iter()
            .all(|f| f.display().to_string().ends_with(".zst")),
        "{plain:?}"
    );

    s.agent.stop();
    let config = std::fs::read_to_string(s.agent.config_path()).expect("config");
    let mode = "mode = \"physical\"";
    assert_eq!(config.matches(mode).count(), 1, "{config}");
    let recipients_file = s.dir.sub("keys").join("recipients.txt");
    std::fs::write(&recipients_file, format!("{ops}\n")).expect("recipients file");
    let config = config.replace(
        mode,
        &format!(
            "{mode}\nencryption = {{ recipients_file = \"{}\", identity_file = \"{}\" }}",
            recipients_file.display(),
            ops_key.display()
        ),
    );
    std::fs::write(s.agent.config_path(), config).expect("write config");
    s.agent.restart(&s.admin);
    for k in 4..=6 {
        commit(&s.pg, k);
    }
    switch_and_wait(&s.pg);
    let t5 = between(&s.pg, 5, 6);
    // The recipients file loses its recipient: pushes fail, PostgreSQL keeps the segment and
    // nothing of it is stored; once the file is back, archiving catches up, encrypted.
    std::fs::write(&recipients_file, "# nobody\n").expect("empty the recipients file");
    let (_, _, failed_before, _) = archiver(&s.pg);
    commit(&s.pg, 7);
    let held =
        s.pg.query_one("main", "SELECT pg_walfile_name(pg_switch_wal());");
    eventually("the push to fail", Duration::from_secs(60), || {
        let (_, _, failed, _) = archiver(&s.pg);
        anyhow::ensure!(failed > failed_before, "failed_count {failed}");
        Ok(())
    });
    let stored_held = || {
        wal_objects(&s)
            .1
            .iter()
            .any(|f| f.display().to_string().contains(&format!("/{held}-")))
    };
    assert!(!stored_held(), "{held} was stored without a recipient");
    assert!(
        s.agent.logs().contains("no recipient"),
        "the agent's log says why the push failed"
    );
    std::fs::write(&recipients_file, format!("{ops}\n")).expect("restore the recipients file");
    wait_archived(&s.pg, &held);
    assert!(stored_held());
    let (wal_keys, files) = wal_objects(&s);
    assert_eq!(wal_keys.len(), 1, "{wal_keys:?}");
    let encrypted = files
        .iter()
        .filter(|f| f.display().to_string().ends_with(".zst.age"))
        .count();
    assert!(encrypted >= 1 && encrypted < files.len(), "{files:?}");

    let root = Pg::empty_root();
    let data = root.path().join("data").display().to_string();
    let out = s.admin.run_json(&[
        "restore",
        "--target",
        &s.target("main"),
        &id,
        "--data-dir",
        &data,
        "--to-time",
        &t5,
        "--wait",
    ]);
    out.assert_ok();
    assert!(out.stdout.contains("is stored in plaintext"), "{out}");
    let copy = Pg::start_existing(root, s.pg.password());
    wait_recovered(&copy, false);
    assert_eq!(
        keys(&copy),
        upto(5),
        "--to-time {t5} across plaintext and encrypted WAL"
    );
    drop(copy);
    let out = s
        .admin
        .run_json(&["pitr", "verify", &s.target("main"), "--wait"]);
    out.assert_ok();
    assert!(out.stdout.contains("each matching its SHA-256"), "{out}");
}

/// The same on S3: the base backup and every archived file in the bucket are age files, the
/// WAL key is there, and a restore to a moment replays the encrypted archive from the bucket.
#[test]
fn an_encrypted_wal_archive_on_s3_recovers_to_a_point() {
    let dir = TestDir::new("pitr_encrypted_s3");
    let ops_key = dir.sub("keys").join("ops.key");
    let ops = keygen(&ops_key);
    let (s, _tools) = archiving(
        dir,
        "pitr_encrypted_s3",
        Some(format!(
            "encryption = {{ recipients = [\"{ops}\"], identity_file = \"{}\" }}",
            ops_key.display()
        )),
        true,
    );
    let rec = s.backup_ok("main");
    let id = find_str(&rec, "backup_id").expect("backup_id");
    for k in 1..=4 {
        commit(&s.pg, k);
        if k == 2 {
            switch_and_wait(&s.pg);
        }
    }
    switch_and_wait(&s.pg);
    let t3 = between(&s.pg, 3, 4);

    let s3 = s.s3.as_ref().expect("s3");
    let target = s.target("main");
    let base = s3.object_path(&format!("{target}/{id}/data.tar.zst.age"));
    assert!(
        std::fs::read(&base)
            .expect("base backup")
            .starts_with(AGE_MAGIC),
        "{}",
        base.display()
    );
    let wal = s3.object_path(&format!("{target}/wal"));
    let (mut keys_found, mut files) = (0, 0);
    for rel in files_under(&wal) {
        let name = rel.display().to_string();
        if name.starts_with('.') || name.contains("/.") {
            continue; // the server's own metadata
        }
        if name.starts_with("keys/") {
            keys_found += 1;
            assert!(age_opens(&ops_key, &wal.join(&rel)), "{name}");
            continue;
        }
        assert!(name.ends_with(".zst.age"), "{name} is not encrypted");
        let bytes = std::fs::read(wal.join(&rel)).expect("read");
        assert!(bytes.starts_with(AGE_MAGIC), "{name} is not an age file");
        files += 1;
    }
    assert_eq!(keys_found, 1, "one WAL key");
    assert!(files >= 2, "{files} archived files");

    let copy = restore_and_start(&s, &["--to-time", &t3], false);
    assert_eq!(keys(&copy), upto(3), "--to-time {t3} from the bucket");
}
