//! Item 12a (review M7, size): a stored object that decodes to far more than the manifest's
//! raw size (a zstd bomb of the same stored size) is stopped as the bytes flow, not at the end
//! of the stream. `backup verify` and `restore` fail early naming the oversized stream; no more
//! than the recorded raw size was decoded and passed on (the job's raw byte count), and no
//! database is left behind. Put back, the backup restores faithfully.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use lifeboat_e2e::fixtures::load_bulk;
use lifeboat_e2e::sandbox::find_str;
use lifeboat_e2e::{Sandbox, SandboxTarget, assert_same_data};
use serde_json::Value;

/// What the bomb decodes to beyond the real archive: zeros, 256 MiB (zstd needs about 4 bytes
/// per 128 KiB block of them, and the whole bomb must fit in the stored size).
const BOMB_TAIL: u64 = 256 << 20;

/// `prefix` followed by [`BOMB_TAIL`] zero bytes, as one zstd frame.
fn bomb(prefix: &[u8]) -> Vec<u8> {
    let mut zstd = Command::new("zstd")
        .args(["-q", "-19", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run zstd (apt-get install zstd)");
    let mut stdin = zstd.stdin.take().expect("zstd stdin");
    let prefix = prefix.to_vec();
    let feeder = std::thread::spawn(move || {
        stdin.write_all(&prefix).expect("feed zstd");
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..(BOMB_TAIL >> 20) {
            stdin.write_all(&zeros).expect("feed zstd");
        }
    });
    let out = zstd.wait_with_output().expect("zstd");
    feeder.join().expect("feeder");
    assert!(out.status.success(), "zstd failed");
    out.stdout
}

/// Pads `frame` to exactly `size` bytes with a zstd skippable frame (decoders ignore it), so
/// the object has the stored size the catalog records.
fn pad_to(mut frame: Vec<u8>, size: usize) -> Vec<u8> {
    assert!(
        frame.len() + 8 <= size,
        "the bomb ({} bytes) does not fit in the stored size {size}",
        frame.len()
    );
    let pad = size - frame.len() - 8;
    frame.extend_from_slice(&0x184D_2A50u32.to_le_bytes());
    frame.extend_from_slice(&u32::try_from(pad).expect("pad").to_le_bytes());
    frame.resize(size, 0);
    frame
}

fn decoded(stored: &Path) -> Vec<u8> {
    let out = Command::new("zstd")
        .args(["-q", "-d", "-c"])
        .arg(stored)
        .output()
        .expect("run zstd");
    assert!(out.status.success(), "zstd -d failed");
    out.stdout
}

/// `key` in `v`, the shallowest first: a backup's own `raw_size`, not its globals object's.
fn number(v: &Value, key: &str) -> Option<u64> {
    match v {
        Value::Object(m) => m
            .get(key)
            .and_then(|x| {
                x.as_u64()
                    .or_else(|| x.as_str().and_then(|s| s.parse().ok()))
            })
            .or_else(|| m.values().find_map(|x| number(x, key))),
        Value::Array(a) => a.iter().find_map(|x| number(x, key)),
        _ => None,
    }
}

/// The job's error or verdict text plus what the CLI printed, lowercased.
fn said(out: &lifeboat_e2e::CtlOutput) -> String {
    let v = out.try_json().unwrap_or(Value::Null);
    format!("{v}\n{}", out.stderr).to_lowercase()
}

#[test]
fn zstd_bomb_is_stopped_as_bytes_flow() {
    let s = Sandbox::builder("zstd_bomb")
        .target(SandboxTarget::new("app").compression_level(1))
        .build();
    load_bulk(&s.pg, "app", "rows", 20_000);
    // Rows repeated ~700 KB apart: beyond what the stored level-1 frame can refer back to
    // (a 512 KiB window), within level 19's. The bomb (the archive re-compressed at level 19,
    // then the zeros) therefore always fits in the stored size with room to spare.
    s.pg.psql(
        "app",
        "CREATE TABLE echo (k int, v text);\
         INSERT INTO echo SELECT g, md5(g::text) || md5((g * 7)::text) \
         FROM generate_series(1, 10000) g;\
         INSERT INTO echo SELECT k, v FROM echo;",
    );
    let rec = s.backup_ok("app");
    let id = find_str(&rec, "backup_id").expect("backup_id");
    let raw_size = number(&rec, "raw_size").expect("raw_size in backup show");
    let data = s.backup_dir("app", &id).join("data.pgdump.zst");
    let pristine = std::fs::read(&data).expect("read stored data");
    let raw = decoded(&data);
    assert_eq!(raw.len() as u64, raw_size);

    // The real archive, then 256 MiB more: pg_restore sees a valid archive first.
    let bomb = pad_to(bomb(&raw), pristine.len());
    std::fs::write(&data, &bomb).expect("plant the bomb");
    let dbs_before = s.pg.databases();

    let v = s.admin.run_json(&["backup", "verify", &id, "--wait"]);
    assert_eq!(v.code, 1, "verify of a bomb must exit 1: {v}");
    let text = said(&v);
    assert!(
        text.contains(&format!(
            "decodes to more than the recorded {raw_size} raw bytes"
        )),
        "verify must name the oversized stream: {v}"
    );
    let job = s.job_of("app", &v);
    let job = s.wait_job_done(&find_str(&job, "job_id").expect("job id"), s.timeout());
    let decoded_bytes = number(&job, "raw_bytes").unwrap_or(0);
    assert!(
        decoded_bytes <= raw_size,
        "verify decoded {decoded_bytes} bytes, the catalog records {raw_size}: {job}"
    );
    assert_eq!(
        find_str(&s.backup_show(&id), "verify_status").as_deref(),
        Some("corrupt")
    );

    let r = s.restore(&id, "bomb_restore", &[]);
    assert_eq!(r.code, 1, "restoring a bomb must fail: {r}");
    let text = said(&r);
    assert!(
        text.contains(&format!(
            "decodes to more than the recorded {raw_size} raw bytes"
        )),
        "restore must name the oversized stream: {r}"
    );
    let job = s.job_of("app", &r);
    let job = s.wait_job_done(&find_str(&job, "job_id").expect("job id"), s.timeout());
    let fed = number(&job, "raw_bytes").unwrap_or(0);
    assert!(
        fed <= raw_size,
        "{fed} bytes reached pg_restore, the catalog records {raw_size}: {job}"
    );
    assert_eq!(
        s.pg.databases(),
        dbs_before,
        "the failed restore left a database behind"
    );

    std::fs::write(&data, &pristine).expect("put the stored data back");
    s.restore(&id, "bomb_final", &[]).assert_ok();
    assert_same_data(&s.pg, "app", "bomb_final", s.dir.path());
    s.shutdown();
}
