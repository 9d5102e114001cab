//! H1 (security review 2026-12) and L11: a MySQL/MariaDB backup stream is data, never
//! commands for the SQL client. A compromised agent (here: a `mariadb-dump` wrapper in the
//! source target's `mysql_bin_dir`) writes backups whose streams carry the client's `\!`,
//! `system` and `tee` commands and no sandbox-mode line; the agent hashes them itself, so the
//! catalog's hashes match the bytes. Restoring each through the real agent and the real
//! `mariadb` client must fail, run nothing (the marker files never appear) and leave no
//! database behind. An honest backup taken the same way still restores, and its data is equal.
//! The client's command line (recorded by a pass-through wrapper around the real client)
//! carries `--binary-mode` and `--sandbox`, and a `--max-allowed-packet` bounded by the backup's
//! size instead of 1 GiB (L11). A client that does not know `--binary-mode` is refused before
//! anything is written.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use lifeboat_e2e::sandbox::find_str;
use lifeboat_e2e::{Sandbox, SandboxTarget};

const FIXTURE: &str = r#"
CREATE TABLE parent (id INT PRIMARY KEY, name VARCHAR(100)) ENGINE=InnoDB;
CREATE TABLE child (id INT AUTO_INCREMENT PRIMARY KEY, pid INT, note TEXT, b BLOB,
  FOREIGN KEY (pid) REFERENCES parent (id)) ENGINE=InnoDB;
INSERT INTO parent VALUES (1, 'emoji 😀 (paren'), (2, 'quote \' and \\ back'), (3, 'cr\r\nlf');
INSERT INTO child (pid, note, b) VALUES (1, 'a),(b', 0x00FF0D0A2829), (2, 'x;y', NULL);
CREATE TRIGGER trg BEFORE INSERT ON child FOR EACH ROW SET NEW.note = CONCAT(NEW.note, '!');
CREATE PROCEDURE p1() SELECT COUNT(*) FROM parent;
"#;

fn write_script(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write wrapper");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

fn which(program: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(program))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| panic!("{program} is not installed"))
}

/// A `mariadb-dump` that runs the real one, drops its sandbox-mode first line and puts the
/// lines of `inject` right after the `-- MariaDB dump` header: a hostile but well-formed dump.
fn hostile_dump_tool(dir: &Path, inject: &Path) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let script = format!(
        r#"#!/bin/bash
REAL={real:?}
case "${{1:-}}" in --version|--help) exec "$REAL" "$@";; esac
set -o pipefail
"$REAL" "$@" | awk -v inj={inject:?} '
  NR == 1 && /enable the sandbox mode/ {{ next }}
  {{ print }}
  /^-- MariaDB dump/ && !done {{ while ((getline l < inj) > 0) print l; done = 1 }}'
"#,
        real = which("mariadb-dump").display().to_string(),
        inject = inject.display().to_string(),
    );
    write_script(&dir.join("mariadb-dump"), &script);
}

/// A `mariadb` that hides `--binary-mode` from its `--help`, like clients older than it.
fn old_client(dir: &Path) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let script = format!(
        "#!/bin/bash\ncase \"$*\" in *--help*) {real:?} \"$@\" | grep -v -- binary-mode; exit 0;; esac\nexec {real:?} \"$@\"\n",
        real = which("mariadb").display().to_string(),
    );
    write_script(&dir.join("mariadb"), &script);
}

/// A `mariadb` that records its arguments in `argv` and runs the real client.
fn recording_client(dir: &Path, argv: &Path) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let script = format!(
        "#!/bin/bash\nprintf '%s\\n' \"$*\" >> {argv:?}\nexec {real:?} \"$@\"\n",
        argv = argv.display().to_string(),
        real = which("mariadb").display().to_string(),
    );
    write_script(&dir.join("mariadb"), &script);
}

#[test]
fn client_commands_in_a_backup_stream_are_never_run() {
    let dir = lifeboat_e2e::TestDir::new("mysql_hostile");
    let evil_bin = dir.sub("evil-bin");
    let client_bin = dir.sub("client-bin");
    let inject = dir.path().join("inject.sql");
    let argv = dir.path().join("client-argv.log");
    std::fs::write(&inject, "").expect("write");
    hostile_dump_tool(&evil_bin, &inject);
    recording_client(&client_bin, &argv);
    let old_bin = dir.sub("old-bin");
    old_client(&old_bin);
    let s = Sandbox::builder("mysql_hostile")
        .dir(dir)
        .mariadb_target(SandboxTarget::new("shop").pg_bin_dir(&evil_bin))
        .mariadb_target(
            SandboxTarget::new("dst")
                .database("dst_home")
                .pg_bin_dir(&client_bin),
        )
        .mariadb_target(
            SandboxTarget::new("old")
                .database("old_home")
                .pg_bin_dir(&old_bin),
        )
        .build();
    let my = s.mariadb.as_ref().expect("mariadb");
    my.sql("shop", FIXTURE);
    let marks = s.dir.sub("marks");
    std::fs::set_permissions(&marks, std::fs::Permissions::from_mode(0o777)).expect("chmod");

    // An honest backup through the same wrapper restores, and its data is equal: the
    // options that refuse client commands do not change what a dump loads.
    let rec = s.backup_ok("shop");
    let id = find_str(&rec, "backup_id").expect("backup_id");
    let r = s.restore(&id, "shop_copy", &["--to", &s.target("dst")]);
    r.assert_ok();
    assert_eq!(
        find_str(&r.json(), "state").as_deref(),
        Some("succeeded"),
        "{r}"
    );
    assert_eq!(
        my.dump_sql("shop"),
        my.dump_sql("shop_copy"),
        "restored data differs"
    );

    let cases = [
        ("shell escape", "bang", "\\! touch {mark}"),
        ("system command", "system", "system touch {mark}"),
        ("tee to a file", "tee", "tee {mark}\nSELECT 1;"),
    ];
    for (i, (what, name, line)) in cases.iter().enumerate() {
        let mark = marks.join(name);
        std::fs::write(
            &inject,
            format!("{}\n", line.replace("{mark}", &mark.display().to_string())),
        )
        .expect("write");
        let rec = s.backup_ok("shop");
        let id = find_str(&rec, "backup_id").expect("backup_id");
        // The hostile lines made it into the stored backup, hashed by the agent itself.
        let sql = zstd_decode(&s.backup_dir("shop", &id).join("data.sql.zst"));
        assert!(
            sql.contains(&mark.display().to_string()) && !sql.contains("enable the sandbox"),
            "{what}: the wrapper did not write the hostile dump"
        );
        let dbs_before = my.databases();

        let db = format!("hostile_{i}");
        let r = s.restore(&id, &db, &["--to", &s.target("dst")]);
        assert!(
            !r.success(),
            "{what}: a restore of a stream with client commands succeeded: {r}"
        );
        let job = s.job_of("dst", &r);
        assert_eq!(find_str(&job, "state").as_deref(), Some("failed"), "{job}");
        // The client's own refusal is the reason the user reads.
        let error = job
            .get("error")
            .and_then(|e| e.as_str())
            .unwrap_or_default();
        eprintln!("{what}: {error}");
        assert!(error.contains("mariadb failed"), "{what}: {job}");
        assert!(
            !mark.exists(),
            "{what}: the client ran a command from the backup stream ({} exists)",
            mark.display()
        );
        assert_eq!(
            my.databases(),
            dbs_before,
            "{what}: the failed restore left a database behind"
        );
    }
    assert!(
        std::fs::read_dir(&marks).expect("marks").next().is_none(),
        "files appeared in {}",
        marks.display()
    );
    // A client that cannot be told so is refused before anything is written.
    let dbs_before = my.databases();
    let r = s.restore(&id, "old_copy", &["--to", &s.target("old")]);
    assert!(!r.success(), "a client without --binary-mode was used: {r}");
    assert!(r.to_string().contains("--binary-mode"), "{r}");
    assert_eq!(
        my.databases(),
        dbs_before,
        "a refused restore created a database"
    );

    // The client was told to treat its input as data (L11: and with a bounded packet).
    let args = std::fs::read_to_string(&argv).expect("the client wrapper ran");
    let load = args
        .lines()
        .find(|l| l.contains("--database="))
        .unwrap_or_else(|| panic!("no restore command line in {args}"));
    assert!(load.contains("--binary-mode"), "{load}");
    assert!(load.contains("--sandbox"), "{load}");
    let packet = load
        .split_whitespace()
        .find_map(|a| a.strip_prefix("--max-allowed-packet="))
        .unwrap_or_else(|| panic!("no --max-allowed-packet in {load}"));
    let bytes: u64 = packet.parse().unwrap_or_else(|_| panic!("{load}"));
    assert!(
        bytes <= 64 << 20,
        "a small backup asks the client for a {bytes} byte packet: {load}"
    );

    s.shutdown();
}

fn zstd_decode(path: &Path) -> String {
    let out = std::process::Command::new("zstd")
        .args(["-q", "-d", "-c"])
        .arg(path)
        .output()
        .expect("run zstd (apt-get install zstd)");
    assert!(out.status.success(), "zstd -d {}", path.display());
    String::from_utf8_lossy(&out.stdout).into_owned()
}
