//! Continuous WAL archiving through the agent: PostgreSQL's `archive_command` runs
//! `lifeboat-agent wal-push` as the server's OS user, which hands each segment to the running
//! agent over its Unix socket; `wal-fetch` hands it back. What is stored is compared with the
//! bytes PostgreSQL wrote; the agent or the coordinator being down must never lose a segment.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use lifeboat_e2e::poll::eventually;
use lifeboat_e2e::sandbox::ENV;
use lifeboat_e2e::wal::{
    AS_POSTGRES, Tools, archiver, chown_postgres, run_as, text, wait_archived,
};
use lifeboat_e2e::{Sandbox, SandboxTarget};
use sha2::{Digest, Sha256};

fn sha256(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn zstd_decompress(path: &Path) -> Vec<u8> {
    let out = Command::new("zstd")
        .args(["-q", "-d", "-c"])
        .arg(path)
        .output()
        .expect("run zstd");
    assert!(out.status.success(), "zstd -d {}", path.display());
    out.stdout
}

/// The stored objects of WAL file `name` in the fs repository.
fn stored(s: &Sandbox, name: &str) -> Vec<PathBuf> {
    let dir = s.repo.join(ENV).join("main/wal").join(&name[..16]);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{name}-")))
        })
        .collect()
}

/// Writes some WAL, then switches to a new segment: returns the name and bytes of the one
/// that was just completed (read before it can be archived and recycled).
fn complete_a_segment(s: &Sandbox, round: u32) -> (String, Vec<u8>) {
    s.pg.psql(
        "main",
        &format!("INSERT INTO events SELECT g, 'round {round}' FROM generate_series(1, 2000) g;"),
    );
    // pg_switch_wal() returns the end of the segment it completed; its file name is that one's.
    let name =
        s.pg.query_one("main", "SELECT pg_walfile_name(pg_switch_wal());");
    let bytes = std::fs::read(s.pg.data_dir().join("pg_wal").join(&name)).expect("read segment");
    (name, bytes)
}

/// The stored copy of `name` decompresses to exactly `bytes`, and its key carries their hash.
fn assert_stored(s: &Sandbox, name: &str, bytes: &[u8]) {
    let found = stored(s, name);
    assert_eq!(found.len(), 1, "one stored copy of {name}: {found:?}");
    let file = found[0].file_name().and_then(|n| n.to_str()).expect("name");
    assert_eq!(file, format!("{name}-{}.zst", sha256(bytes)));
    assert_eq!(zstd_decompress(&found[0]), bytes, "stored {name} differs");
}

#[test]
fn segments_are_archived_durably_fetched_back_and_never_lost() {
    let tools = Tools::new();
    let mut s = Sandbox::builder("wal-archive")
        .target(SandboxTarget::new("main").extra("mode = \"physical\""))
        .agent_wal_socket_group("postgres")
        .build();
    // The server's user must reach the socket: let it through the test's directories.
    for d in [s.dir.path(), s.agent.dir()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o711)).expect("chmod");
    }
    let socket = s.agent.wal_socket().display().to_string();
    let bin = tools.bin();
    s.pg.enable_archiving(&format!(
        "{} wal-push --socket {socket} --target main %p",
        bin.display()
    ));
    s.pg.psql("main", "CREATE TABLE events (id int, what text);");

    // 1. Segments reach the repository exactly as PostgreSQL wrote them.
    let mut segments = Vec::new();
    for round in 0..3 {
        segments.push(complete_a_segment(&s, round));
    }
    wait_archived(&s.pg, &segments[2].0);
    for (name, bytes) in &segments {
        assert_stored(&s, name, bytes);
    }

    // 2. wal-fetch writes them back, as restore_command would.
    let out_dir = tools.scratch("fetched");
    let (name, bytes) = &segments[1];
    let dest = out_dir.join(name);
    let dest_arg = dest.display().to_string();
    let o = run_as(
        AS_POSTGRES,
        &bin,
        &[
            "wal-fetch",
            "--socket",
            &socket,
            "--target",
            "main",
            name,
            &dest_arg,
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(&std::fs::read(&dest).expect("fetched"), bytes);
    // A file the archive does not have: exit 1, a message, nothing written.
    let absent = "0000000100000000000000FE";
    let absent_dest = out_dir.join(absent).display().to_string();
    let o = run_as(
        AS_POSTGRES,
        &bin,
        &[
            "wal-fetch",
            "--socket",
            &socket,
            "--target",
            "main",
            absent,
            &absent_dest,
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("not in the repository"), "{}", text(&o));
    assert_eq!(
        std::fs::read_dir(&out_dir).expect("dir").count(),
        1,
        "only the fetched file"
    );

    // 3. Pushing the same file again succeeds; other content under its name is refused.
    let copy_dir = tools.scratch("copies");
    let copy = copy_dir.join(name);
    std::fs::write(&copy, bytes).expect("copy");
    chown_postgres(&copy);
    let copy_arg = copy.display().to_string();
    let push = |path: &str| {
        run_as(
            AS_POSTGRES,
            &bin,
            &["wal-push", "--socket", &socket, "--target", "main", path],
        )
    };
    let o = push(&copy_arg);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("already archived"), "{}", text(&o));
    let mut other = bytes.clone();
    other[100] ^= 0xff;
    std::fs::write(&copy, &other).expect("change");
    let o = push(&copy_arg);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("different content"), "{}", text(&o));
    assert_stored(&s, name, bytes);

    // 4. Only the server's user: another user cannot reach the socket (mode 0660), and a
    //    process that can (the socket's group) but runs as another user is refused by the
    //    agent's peer check.
    let o = run_as(
        &["runuser", "-u", "nobody", "--"],
        &bin,
        &[
            "wal-push", "--socket", &socket, "--target", "main", &copy_arg,
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("permission denied"), "{}", text(&o));
    let gid = Command::new("id")
        .args(["-g", "postgres"])
        .output()
        .expect("id");
    let gid = String::from_utf8_lossy(&gid.stdout).trim().to_owned();
    let o = run_as(
        &[
            "setpriv",
            "--reuid=65534",
            &format!("--regid={gid}"),
            "--clear-groups",
        ],
        &bin,
        &[
            "wal-fetch",
            "--socket",
            &socket,
            "--target",
            "main",
            name,
            "/dev/null",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("may not use the WAL socket"),
        "{}",
        text(&o)
    );

    // 5. The agent stopped: archive_command fails, PostgreSQL keeps the segment and retries;
    //    once the agent is back the archive catches up with no gap.
    s.agent.stop();
    let (failed_before, _) = {
        let (_, _, f, l) = archiver(&s.pg);
        (f, l)
    };
    let (down, down_bytes) = complete_a_segment(&s, 10);
    eventually("archive_command to fail", Duration::from_secs(60), || {
        let (_, _, failed, last_failed) = archiver(&s.pg);
        anyhow::ensure!(
            failed > failed_before && last_failed == down,
            "{failed} {last_failed}"
        );
        Ok(())
    });
    assert!(
        stored(&s, &down).is_empty(),
        "nothing stored while the agent is down"
    );
    assert!(
        s.pg.data_dir()
            .join("pg_wal/archive_status")
            .join(format!("{down}.ready"))
            .is_file(),
        "PostgreSQL keeps the segment for a retry"
    );
    s.agent.restart(&s.admin);
    // After three failures in a row the archiver sleeps up to a minute unless new WAL wakes
    // it, as it does on a busy server.
    let (after, after_bytes) = complete_a_segment(&s, 12);
    wait_archived(&s.pg, &after);
    assert_stored(&s, &down, &down_bytes);
    assert_stored(&s, &after, &after_bytes);

    // 6. The coordinator stopped: archiving does not need it.
    s.coordinator.proc().stop();
    let (later, later_bytes) = complete_a_segment(&s, 11);
    wait_archived(&s.pg, &later);
    assert_stored(&s, &later, &later_bytes);
}

/// S9 for WAL: a repository with no room. The push fails (exit 1, the reason in PostgreSQL's
/// log), PostgreSQL keeps the segment, and nothing that looks archived is left behind.
#[test]
fn a_full_repository_fails_the_push_and_stores_nothing() {
    let tools = Tools::new();
    let mount = tempfile::Builder::new()
        .prefix("lifeboat-wal-full-")
        .tempdir_in("/tmp")
        .expect("tempdir");
    // Room for the directories, not for the first segment (about 2 MB compressed).
    let tmpfs = lifeboat_e2e::tmpfs::Tmpfs::mount(&mount.path().join("repo"), "512k");
    let mut s = Sandbox::builder("wal-full")
        .target(SandboxTarget::new("main").extra("mode = \"physical\""))
        .agent_wal_socket_group("postgres")
        .repo_path(tmpfs.path())
        .build();
    for d in [s.dir.path(), s.agent.dir()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o711)).expect("chmod");
    }
    let socket = s.agent.wal_socket().display().to_string();
    s.pg.enable_archiving(&format!(
        "{} wal-push --socket {socket} --target main %p",
        tools.bin().display()
    ));
    s.pg.psql("main", "CREATE TABLE events (id int, what text);");
    let (name, _) = complete_a_segment(&s, 0);
    eventually("archive_command to fail", Duration::from_secs(60), || {
        let (_, _, failed, last_failed) = archiver(&s.pg);
        anyhow::ensure!(failed > 0 && last_failed == name, "{failed} {last_failed}");
        Ok(())
    });
    let log = s.pg.log();
    assert!(log.contains("No space left on device"), "{log}");
    assert!(
        s.pg.data_dir()
            .join("pg_wal/archive_status")
            .join(format!("{name}.ready"))
            .is_file(),
        "PostgreSQL keeps the segment for a retry"
    );
    // Nothing under the repository but directories: no object, no temporary file.
    let mut files = Vec::new();
    let mut dirs = vec![tmpfs.path().to_owned()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            if e.file_type().expect("type").is_dir() {
                dirs.push(e.path());
            } else {
                files.push(e.path());
            }
        }
    }
    assert!(files.is_empty(), "left in the full repository: {files:?}");
    let (_, last, _, _) = archiver(&s.pg);
    assert!(
        last.is_empty() || last.as_str() < name.as_str(),
        "{name} counted archived: {last}"
    );
}
