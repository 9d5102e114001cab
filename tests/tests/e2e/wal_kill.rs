//! The agent killed (SIGKILL) while it stores a WAL file for PostgreSQL's `archive_command`.
//!
//! A real server archives through `lifeboat-agent wal-push`; for the kills the target
//! compresses at zstd level 19, so each push stays in flight for seconds. Three times, the
//! agent is killed while a push is being written (its temporary file is in the repository: as
//! soon as it appears, once it holds bytes, once it holds more), rows are committed while it is
//! down, and it comes back (compressing fast) to catch up before the next round, so each kill
//! cuts another segment. What must hold:
//!
//! - the `wal-push` fails: PostgreSQL counts the failure in `pg_stat_archiver`, keeps the
//!   segment (`.ready`) and the bytes it wrote;
//! - nothing partial is ever stored under a final WAL key: every stored object decompresses to
//!   bytes whose SHA-256 is the one in its key, and each interrupted segment ends up stored
//!   exactly as PostgreSQL wrote it;
//! - once the agent is back, archiving catches up with no gap: the archive holds every segment
//!   from the base backup's to the one `pg_switch_wal()` just completed, and `pitr window`
//!   says the same;
//! - `restore --latest` recovers every row, those committed after each kill included.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use lifeboat_e2e::Sandbox;
use lifeboat_e2e::pg::Pg;
use lifeboat_e2e::poll::{eventually, scaled};
use lifeboat_e2e::sandbox::{ENV, find_str};
use lifeboat_e2e::wal::{Tools, archive_through_agent, archiver, physical_target, wait_archived};
use sha2::{Digest, Sha256};

/// Row content of the whole table, to compare a source with a restored copy.
const CONTENT: &str = "SELECT count(*) || ' ' || md5(string_agg(k || '|' || note || '|' || pad, ',' \
                       ORDER BY k)) FROM t;";

/// The compression level of the fast phases (the sandbox default) and of the kills.
const FAST: i32 = 3;
const SLOW: i32 = 19;

fn sha256(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn wal_root(s: &Sandbox) -> PathBuf {
    s.repo.join(ENV).join("main/wal")
}

/// Every file under the target's WAL directory: (final objects, temporaries).
fn wal_files(s: &Sandbox) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let (mut objects, mut temps) = (Vec::new(), Vec::new());
    let Ok(dirs) = std::fs::read_dir(wal_root(s)) else {
        return (objects, temps);
    };
    for d in dirs.flatten() {
        let Ok(files) = std::fs::read_dir(d.path()) else {
            continue;
        };
        for f in files.flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                temps.push(f.path());
            } else {
                objects.push(f.path());
            }
        }
    }
    objects.sort();
    temps.sort();
    (objects, temps)
}

/// The WAL file name a repository temporary belongs to (`.NAME-SHA256.zst.RAND.tmp`).
fn temp_wal_name(p: &Path) -> String {
    let n = p.file_name().and_then(|n| n.to_str()).expect("name");
    n.trim_start_matches('.')
        .split('-')
        .next()
        .expect("a WAL name")
        .to_owned()
}

/// The stored objects of WAL file `name`.
fn stored(s: &Sandbox, name: &str) -> Vec<PathBuf> {
    wal_files(s)
        .0
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{name}-")))
        })
        .collect()
}

/// `NAME` and `SHA256` of a stored object `NAME-SHA256.zst`.
fn split_key(p: &Path) -> (String, String) {
    let n = p.file_name().and_then(|n| n.to_str()).expect("name");
    let stem = n
        .strip_suffix(".zst")
        .unwrap_or_else(|| panic!("a stored WAL object not ending in .zst: {}", p.display()));
    let (name, sha) = stem
        .rsplit_once('-')
        .unwrap_or_else(|| panic!("a stored WAL object without a hash: {}", p.display()));
    (name.to_owned(), sha.to_owned())
}

/// The object decompressed with the real `zstd` (which checks the frame's checksum too).
fn decompress(p: &Path) -> Result<Vec<u8>, String> {
    let out = Command::new("zstd")
        .args(["-q", "-d", "-c"])
        .arg(p)
        .output()
        .expect("run zstd");
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A segment's number on its timeline (16 MiB segments: 256 per log file).
fn segment_number(name: &str) -> u64 {
    let log = u64::from_str_radix(&name[8..16], 16).expect("log");
    let seg = u64::from_str_radix(&name[16..24], 16).expect("seg");
    log * 0x100 + seg
}

fn is_segment(name: &str) -> bool {
    name.len() == 24 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Rows `from..from+n` with a note and a pad that compresses poorly enough to keep a level-19
/// push busy for seconds.
fn insert(pg: &Pg, from: u32, n: u32, note: &str) {
    pg.psql(
        "main",
        &format!(
            "INSERT INTO t SELECT g, '{note}', md5(g::text) || md5((g * 7)::text) \
             FROM generate_series({from}, {}) g;",
            from + n - 1
        ),
    );
}

/// Sets `compression_level` of the target in the agent's config (read at its next start).
fn set_level(s: &Sandbox, level: i32) {
    let path = s.agent.config_path();
    let text = std::fs::read_to_string(path).expect("read agent.toml");
    let mut found = false;
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("compression_level = ") {
                found = true;
                format!("compression_level = {level}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    assert!(found, "no compression_level in {}", path.display());
    std::fs::write(path, text).expect("write agent.toml");
}

/// How far into a push the agent is killed.
#[derive(Debug, Clone, Copy)]
enum When {
    /// As soon as the temporary file is there (the write just began).
    Opened,
    /// Once the temporary file holds some compressed bytes.
    Writing,
    /// Once it holds at least this many bytes, or the push finished first.
    AtLeast(u64),
}

/// Waits for a push to be in flight (a temporary file not in `known`) and for the moment
/// `when`; returns its temporary file, or `None` if that push finished before the moment
/// came (then the kill lands between pushes).
fn wait_for_push(s: &Sandbox, known: &BTreeSet<PathBuf>, when: When) -> Option<PathBuf> {
    let deadline = Instant::now() + scaled(Duration::from_secs(120));
    let mut seen: Option<PathBuf> = None;
    loop {
        assert!(
            Instant::now() < deadline,
            "no WAL push was in flight within 120 s (temporaries: {:?}, archiver: {:?})",
            wal_files(s).1,
            archiver(&s.pg)
        );
        let (_, temps) = wal_files(s);
        match &seen {
            None => seen = temps.into_iter().find(|t| !known.contains(t)),
            Some(t) if !t.exists() => return None,
            Some(_) => {}
        }
        if let Some(t) = &seen {
            let size = std::fs::metadata(t).map(|m| m.len()).unwrap_or(0);
            let now = match when {
                When::Opened => true,
                When::Writing => size > 0,
                When::AtLeast(n) => size >= n,
            };
            if now {
                return seen;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn restore_latest_and_start(s: &Sandbox) -> Pg {
    let root = Pg::empty_root();
    let data = root.path().join("data").display().to_string();
    let target = s.target("main");
    let out = s.admin.run_json(&[
        "restore",
        "--target",
        &target,
        "--data-dir",
        &data,
        "--latest",
        "--wait",
    ]);
    out.assert_ok();
    assert!(
        root.path().join("data/recovery.signal").is_file(),
        "recovery.signal: {out}"
    );
    let pg = Pg::start_existing(root, s.pg.password());
    eventually("recovery to end", Duration::from_secs(120), || {
        let out = pg.try_psql("postgres", "SELECT pg_is_in_recovery();");
        let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        anyhow::ensure!(state == "f", "in recovery: {state:?}");
        Ok(())
    });
    pg
}

#[test]
fn agent_killed_mid_push_loses_nothing_and_stores_nothing_partial() {
    let tools = Tools::new();
    let mut s = Sandbox::builder("wal-kill")
        .target(physical_target("main").compression_level(FAST))
        .agent_wal_socket_group("postgres")
        .agent_wal_client(&tools.bin())
        .build();
    archive_through_agent(&mut s, &tools, "main");
    s.pg.psql(
        "main",
        "CREATE TABLE t (k int PRIMARY KEY, note text NOT NULL, pad text NOT NULL);",
    );
    insert(&s.pg, 1, 1000, "before the base backup");
    let backup = s.backup_ok("main");
    assert!(find_str(&backup, "backup_id").is_some(), "{backup}");
    let backup_start = s.pg.query_one(
        "postgres",
        "SELECT pg_walfile_name(redo_lsn) FROM pg_control_checkpoint();",
    );
    insert(&s.pg, 1001, 1000, "after the base backup");
    let name =
        s.pg.query_one("main", "SELECT pg_walfile_name(pg_switch_wal());");
    wait_archived(&s.pg, &name);

    // Slow pushes from here on: each stays in flight for seconds.
    s.agent.stop();
    set_level(&s, SLOW);
    s.agent.restart(&s.admin);

    let mut known: BTreeSet<PathBuf> = wal_files(&s).1.into_iter().collect();
    // Segments a kill interrupted, with the bytes PostgreSQL wrote (read while it keeps them).
    let mut interrupted: Vec<(String, Vec<u8>)> = Vec::new();
    // Kills that cut a write.
    let mut cut = 0;
    let mut after_kill_keys = Vec::new();
    let rounds = [When::Opened, When::Writing, When::AtLeast(256 * 1024)];
    for (round, when) in rounds.into_iter().enumerate() {
        let base = 100_000 * (round as u32 + 1);
        let (_, _, failed_before, _) = archiver(&s.pg);
        insert(
            &s.pg,
            base,
            20_000,
            &format!("round {round}, before the kill"),
        );
        s.pg.psql("main", "SELECT pg_switch_wal();");
        let in_flight = wait_for_push(&s, &known, when);
        let status = s.agent.kill();
        assert!(!status.success(), "the agent was killed: {status}");
        let temps_after: BTreeSet<PathBuf> = wal_files(&s).1.into_iter().collect();
        eprintln!("round {round} ({when:?}): killed with {in_flight:?} in flight");

        // PostgreSQL counts the failed archive_command, and keeps the segment.
        let (_, _, _, failing) = eventually(
            "archive_command to fail once the agent is gone",
            scaled(Duration::from_secs(60)),
            || {
                let a = archiver(&s.pg);
                anyhow::ensure!(a.2 > failed_before && !a.3.is_empty(), "{a:?}");
                Ok(a)
            },
        );
        assert!(
            s.pg.data_dir()
                .join("pg_wal/archive_status")
                .join(format!("{failing}.ready"))
                .is_file(),
            "PostgreSQL keeps {failing} for a retry"
        );
        assert!(
            stored(&s, &failing).is_empty(),
            "{failing} failed to archive, yet it is stored: {:?}",
            stored(&s, &failing)
        );
        if let Some(t) = &in_flight {
            let wal = temp_wal_name(t);
            // The kill cut the write: its temporary is left, never renamed into place.
            if temps_after.contains(t) {
                cut += 1;
                assert_eq!(wal, failing, "the push in flight is the one that failed");
                assert!(
                    stored(&s, &wal).is_empty(),
                    "an interrupted push of {wal} left an object under a final key"
                );
                let bytes = std::fs::read(s.pg.data_dir().join("pg_wal").join(&wal))
                    .expect("PostgreSQL keeps the segment it could not archive");
                if !interrupted.iter().any(|(n, _)| *n == wal) {
                    interrupted.push((wal, bytes));
                }
            }
        }
        known = temps_after;

        // Written while the agent is down.
        insert(
            &s.pg,
            base + 20_000,
            100,
            &format!("round {round}, after the kill"),
        );
        after_kill_keys.push(base + 20_000);
        // Back with fast pushes: the archive catches up (a new segment wakes the archiver,
        // which waits a minute after three failures in a row), then the next round's pushes
        // are slow again, so each kill cuts another segment.
        set_level(&s, FAST);
        s.agent.restart(&s.admin);
        let name =
            s.pg.query_one("main", "SELECT pg_walfile_name(pg_switch_wal());");
        wait_archived(&s.pg, &name);
        if round + 1 < rounds.len() {
            s.agent.stop();
            set_level(&s, SLOW);
            s.agent.restart(&s.admin);
        }
    }
    // The first two kills come while the write has only begun: they must have cut it.
    assert!(
        cut >= 2 && interrupted.len() == cut,
        "only {cut} kills cut a write in flight; interrupted: {:?}",
        interrupted.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );

    // Committed after the last kill; then the archive catches up to the current segment.
    insert(&s.pg, 1_000_000, 100, "after the agent came back");
    let current =
        s.pg.query_one("main", "SELECT pg_walfile_name(pg_switch_wal());");
    wait_archived(&s.pg, &current);
    let (_, _, failed, _) = archiver(&s.pg);
    assert!(
        failed >= rounds.len() as u64,
        "each kill failed a push: {failed} failures"
    );
    assert!(
        s.pg.log().contains("archive command failed"),
        "PostgreSQL logs the failed archive_command"
    );

    // Nothing partial or corrupt under a final key: each object decompresses to bytes whose
    // hash is the one in its key, and each interrupted segment is stored exactly once, as
    // PostgreSQL wrote it.
    let (objects, temps) = wal_files(&s);
    eprintln!(
        "{} objects, {} temporaries left by the kills: {temps:?}",
        objects.len(),
        temps.len()
    );
    let mut segments = Vec::new();
    for o in &objects {
        let (name, sha) = split_key(o);
        let bytes =
            decompress(o).unwrap_or_else(|e| panic!("{} does not decompress: {e}", o.display()));
        assert_eq!(
            sha256(&bytes),
            sha,
            "{} holds other bytes than its key says",
            o.display()
        );
        if is_segment(&name) {
            assert_eq!(
                bytes.len(),
                16 * 1024 * 1024,
                "{} is a whole segment",
                o.display()
            );
            segments.push(name);
        }
    }
    for (name, bytes) in &interrupted {
        let found = stored(&s, name);
        assert_eq!(found.len(), 1, "{name} stored once: {found:?}");
        assert_eq!(
            split_key(&found[0]).1,
            sha256(bytes),
            "{name} is stored as PostgreSQL wrote it"
        );
    }

    // No gap: every segment from the base backup's to the current one, on timeline 1.
    segments.sort();
    segments.dedup();
    assert!(
        segments.iter().all(|n| n.starts_with("00000001")),
        "{segments:?}"
    );
    let first = segments.first().expect("segments").clone();
    let last = segments.last().expect("segments").clone();
    assert!(
        first <= backup_start,
        "the archive starts at or before the base backup's {backup_start}: {segments:?}"
    );
    assert_eq!(
        last, current,
        "the newest archived segment is the current one"
    );
    let missing: Vec<u64> = (segment_number(&first)..=segment_number(&last))
        .filter(|n| !segments.iter().any(|s| segment_number(s) == *n))
        .collect();
    assert!(
        missing.is_empty(),
        "segments missing: {missing:x?} in {segments:?}"
    );
    let target = s.target("main");
    eventually(
        "pitr window to reach the current segment",
        scaled(Duration::from_secs(90)),
        || {
            let w = s.admin.json(&["pitr", "window", &target]);
            anyhow::ensure!(
                find_str(&w, "last_archived").as_deref() == Some(current.as_str()),
                "{w}"
            );
            anyhow::ensure!(w["gaps"].as_array().is_some_and(Vec::is_empty), "{w}");
            Ok(())
        },
    );

    // Everything archived comes back, the rows committed after each kill included.
    let copy = restore_latest_and_start(&s);
    for k in after_kill_keys.iter().copied().chain([1_000_000]) {
        assert_eq!(
            copy.query_one("main", &format!("SELECT note FROM t WHERE k = {k};")),
            s.pg.query_one("main", &format!("SELECT note FROM t WHERE k = {k};")),
            "row {k} in the restored copy"
        );
    }
    assert_eq!(
        copy.query_one("main", CONTENT),
        s.pg.query_one("main", CONTENT),
        "the restored copy holds exactly the source's rows"
    );
    drop(copy);
    s.shutdown();
}
