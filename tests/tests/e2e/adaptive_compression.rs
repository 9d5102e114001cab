//! `compression_level = "auto"`: a backup whose zstd level follows the spare CPU restores to
//! the same data, and its manifest says which levels compressed how much of the stream.
//! (Which levels it picks depends on the machine's load; what is checked is what holds for
//! any: every byte booked to one level within 1..=9, and the catalog showing the main one.)

use lifeboat_e2e::fixtures::{load_awkward, load_bulk};
use lifeboat_e2e::sandbox::find_str;
use lifeboat_e2e::{Sandbox, SandboxTarget, assert_row_counts_match, assert_same_data};
use serde_json::Value;

#[test]
fn an_adaptive_backup_records_its_levels_and_restores_the_same_data() {
    let s = Sandbox::builder("adaptive")
        .target(SandboxTarget::new("shop").extra("compression_level = \"auto\""))
        .build();
    load_awkward(&s.pg, "shop");
    // Enough stream for several of the controller's windows.
    load_bulk(&s.pg, "shop", "rows", 150_000);

    let rec = s.backup_ok("shop");
    let id = find_str(&rec, "backup_id").expect("backup_id");
    assert_row_counts_match(&s.pg, "shop", &rec);

    let text = std::fs::read_to_string(s.backup_dir("shop", &id).join("manifest.json"))
        .expect("read manifest.json");
    let m: Value = serde_json::from_str(&text).expect("manifest.json is JSON");
    let raw_size = m["raw_size"].as_u64().expect("raw_size");
    // One level all the way: the manifest says it in `level` and keeps the older format;
    // several: schema 7 lists the bytes each compressed.
    let levels: Vec<(i64, u64)> = match m["compression"]["levels"].as_array() {
        None => {
            assert!(m["schema_version"].as_u64() < Some(7), "{m}");
            vec![(m["compression"]["level"].as_i64().expect("level"), raw_size)]
        }
        Some(list) => {
            assert_eq!(m["schema_version"], 7, "{m}");
            assert!(list.len() > 1, "a list of one level: {m}");
            list.iter()
                .map(|l| {
                    let bytes = l["raw_bytes"].as_u64().expect("raw_bytes");
                    assert!(bytes > 0, "{m}");
                    (l["level"].as_i64().expect("level"), bytes)
                })
                .collect()
        }
    };
    let mut booked = 0;
    let mut most = (0, 0);
    for (level, bytes) in levels {
        assert!((1..=9).contains(&level), "level {level} outside 1..=9: {m}");
        booked += bytes;
        if bytes > most.1 {
            most = (level, bytes);
        }
    }
    assert_eq!(booked, raw_size, "{m}");
    assert_eq!(
        m["compression"]["level"], most.0,
        "the level that did the most: {m}"
    );
    let shown = s.backup_show(&id);
    assert_eq!(shown["compression_level"], most.0, "{shown}");

    let r = s.restore(&id, "shop_copy", &[]);
    r.assert_ok();
    assert_same_data(&s.pg, "shop", "shop_copy", s.dir.path());
    assert_row_counts_match(&s.pg, "shop_copy", &rec);
}
