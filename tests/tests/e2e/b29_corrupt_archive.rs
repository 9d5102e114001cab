//! B29 (and S3/S4): the stored archive is corrupted at rest in four ways — random bytes, a
//! valid zstd stream of other content, truncated, one byte flipped. Each time: `restore --wait`
//! fails naming the hash/size mismatch and leaves no database behind; `backup verify` reports
//! it corrupt and exits 1. Put back, the backup verifies and restores again. A sweep of
//! single-byte flips over the first 16 KiB checks that the hash error is what the user sees
//! even when the damage makes pg_restore fail first.

use std::path::Path;
use std::process::Command;

use lifeboat_e2e::fixtures::{load_awkward, load_bulk};
use lifeboat_e2e::sandbox::find_str;
use lifeboat_e2e::{Sandbox, SandboxTarget, assert_same_data};

fn zstd_of(bytes: &[u8], work: &Path) -> Vec<u8> {
    let input = work.join("other.bin");
    std::fs::write(&input, bytes).expect("write");
    let out = Command::new("zstd")
        .args(["-q", "-3", "-c"])
        .arg(&input)
        .output()
        .expect("run zstd (apt-get install zstd)");
    assert!(out.status.success());
    out.stdout
}

fn random_bytes(n: usize) -> Vec<u8> {
    let hex = lifeboat_e2e::random_hex(n);
    (0..n)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

fn flip(bytes: &[u8], at: usize) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[at] ^= 0x01;
    b
}

/// `restore --wait` of the corrupt backup must fail naming the hash/size mismatch (not a zstd
/// or pg_restore error) and leave no database behind.
fn assert_restore_refused(s: &Sandbox, id: &str, db: &str, what: &str, dbs_before: &[String]) {
    let r = s.restore(id, db, &[]);
    assert_eq!(
        r.code, 1,
        "{what}: restoring a corrupt archive must fail: {r}"
    );
    // The job's reason and what the CLI printed about it; the job's report lists the checks
    // made before (the tools found, the manifest read), which are not the reason.
    let reason = r
        .try_json()
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or_default();
    let text = format!("{reason}\n{}", r.stderr).to_lowercase();
    let names_check = ["sha256", "sha-256", "hash", "size", "bytes"]
        .iter()
        .any(|w| text.contains(w));
    let says_mismatch = ["match", "corrupt"].iter().any(|w| text.contains(w));
    assert!(
        names_check && says_mismatch,
        "{what}: the failure must name the hash/size mismatch: {r}"
    );
    assert!(
        !text.contains("zstd") && !text.contains("decompress") && !text.contains("pg_restore"),
        "{what}: the user must see the hash error, not a zstd or pg_restore error: {r}"
    );
    assert_eq!(
        s.pg.databases(),
        dbs_before,
        "{what}: a database was left behind by the failed restore"
    );
}

#[test]
fn corrupt_archive_is_caught_by_verify_and_restore() {
    let s = Sandbox::builder("b29")
        .target(SandboxTarget::new("app"))
        .build();
    load_awkward(&s.pg, "app");
    load_bulk(&s.pg, "app", "rows", 5000);
    let rec = s.backup_ok("app");
    let id = find_str(&rec, "backup_id").expect("backup_id");
    let data = s.backup_dir("app", &id).join("data.pgdump.zst");
    let pristine = std::fs::read(&data).expect("read stored data");
    let n = pristine.len();
    assert!(n > 32 * 1024, "stored data is only {n} bytes");
    let dbs_before = s.pg.databases();

    // A valid zstd stream of a valid-looking archive of the same raw size.
    let mut other = b"PGDMP".to_vec();
    other.extend(random_bytes(n));
    let cases: Vec<(String, Vec<u8>)> = vec![
        ("random bytes".into(), random_bytes(n)),
        (
            "valid zstd of other content".into(),
            zstd_of(&other, s.dir.path()),
        ),
        ("truncated".into(), pristine[..n / 2].to_vec()),
        (
            format!("one byte flipped at {} of {n}", n / 2),
            flip(&pristine, n / 2),
        ),
    ];

    for (i, (what, bytes)) in cases.iter().enumerate() {
        std::fs::write(&data, bytes).expect("corrupt the stored data");
        assert_restore_refused(&s, &id, &format!("b29_restore_{i}"), what, &dbs_before);

        let v = s.admin.run_json(&["backup", "verify", &id, "--wait"]);
        assert_eq!(
            v.code, 1,
            "{what}: verify of a corrupt archive must exit 1: {v}"
        );
        let shown = s.backup_show(&id);
        assert_eq!(
            find_str(&shown, "verify_status").as_deref(),
            Some("corrupt"),
            "{what}: {shown}"
        );

        // Put it back: the same backup verifies again.
        std::fs::write(&data, &pristine).expect("restore the stored data");
        s.admin
            .run_json(&["backup", "verify", &id, "--wait"])
            .assert_ok();
        assert_eq!(
            find_str(&s.backup_show(&id), "verify_status").as_deref(),
            Some("ok"),
            "{what}: verify after repair"
        );
    }

    // Near the start, a flipped byte reaches pg_restore's table of contents or the first
    // table's rows long before the end of the stream is hashed.
    for (k, at) in (64..n.min(16 * 1024)).step_by(512).enumerate() {
        std::fs::write(&data, flip(&pristine, at)).expect("corrupt the stored data");
        let what = format!("one byte flipped at {at} of {n}");
        assert_restore_refused(&s, &id, &format!("b29_sweep_{k}"), &what, &dbs_before);
    }
    std::fs::write(&data, &pristine).expect("restore the stored data");

    // And the repaired backup restores faithfully.
    s.restore(&id, "b29_final", &[]).assert_ok();
    assert_same_data(&s.pg, "app", "b29_final", s.dir.path());
    s.shutdown();
}
