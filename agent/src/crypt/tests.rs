use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::pipeline::{self, Compression, Counters, Expected, PipelineError};

fn recipients(ids: &[&age::x25519::Identity]) -> Recipients {
    Recipients::parse(
        &ids.iter()
            .map(|i| i.to_public().to_string())
            .collect::<Vec<_>>(),
    )
    .expect("recipients")
}

#[test]
fn a_key_object_opens_with_any_recipient_and_names_its_key_ids() {
    let ops = age::x25519::Identity::generate();
    let escrow = age::x25519::Identity::generate();
    let stranger = age::x25519::Identity::generate();
    let to = recipients(&[&ops, &escrow]);
    let key = BackupKey::generate();
    let object = seal_key(&key, &to, "B1").expect("seal");

    assert_eq!(key_ids_of(&object), to.key_ids());
    assert_eq!(recipients_of(&object), to.strings());
    for id in [&ops, &escrow] {
        let (opened, listed) =
            open_key("key.age", &object, std::slice::from_ref(id)).expect("open");
        assert_eq!(listed, to.strings());
        assert_eq!(
            opened.recipient().to_string(),
            key.recipient().to_string(),
            "another key came out"
        );
    }
    let err = open_key("key.age", &object, &[stranger]).expect_err("a stranger opened it");
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            KeyError::NoIdentity {
                backup_only: false,
                ..
            }
        ),
        "{msg}"
    );
    for id in to.key_ids() {
        assert!(msg.contains(&id), "{msg} lacks {id}");
    }
    let err = open_key("key.age", &object, &[]).expect_err("opened with no key");
    assert!(err.to_string().contains("backup-only"), "{err}");
    // The backup key itself never appears in the object.
    let secret = key.identity().to_string();
    let secret = secret.expose_secret().as_bytes();
    assert!(!object.windows(secret.len()).any(|w| w == secret));
}

#[test]
fn a_damaged_key_object_is_called_damaged() {
    let ops = age::x25519::Identity::generate();
    let object = seal_key(&BackupKey::generate(), &recipients(&[&ops]), "B1").expect("seal");
    let mut flipped = object.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    let err = open_key("key.age", &flipped, std::slice::from_ref(&ops)).expect_err("opened");
    assert!(matches!(err, KeyError::Damaged(..)), "{err}");
    let err =
        open_key("key.age", b"not age at all", std::slice::from_ref(&ops)).expect_err("opened");
    assert!(matches!(err, KeyError::Damaged(..)), "{err}");
}

#[test]
fn sealed_sections_open_only_with_their_key() {
    let key = BackupKey::generate();
    let sealed = seal(b"{\"row_counts\":[]}", &key.recipient()).expect("seal");
    assert_eq!(
        unseal(&sealed, &key, 1024).expect("unseal"),
        b"{\"row_counts\":[]}"
    );
    assert!(unseal(&sealed, &BackupKey::generate(), 1024).is_err());
}

fn compress(input: &[u8], to: Option<&BackupKey>) -> pipeline::Compressed<Vec<u8>> {
    pipeline::compress(
        std::io::Cursor::new(input.to_vec()),
        Vec::new(),
        b"PGDMP",
        Compression {
            level: 3,
            adaptive: false,
            threads: 1,
            encrypt_to: to.map(BackupKey::recipient),
        },
        &Arc::default(),
        &CancellationToken::new(),
    )
    .expect("compress")
}

fn decompress(stored: &[u8], expected: &Expected) -> Result<Vec<u8>, PipelineError> {
    pipeline::decompress(
        stored,
        Vec::new(),
        b"PGDMP",
        expected,
        &Arc::<Counters>::default(),
        &CancellationToken::new(),
    )
}

#[test]
fn the_pipeline_encrypts_and_checks_before_anything_is_trusted() {
    let mut input = b"PGDMP".to_vec();
    for i in 0..200_000u32 {
        input.extend_from_slice(format!("row {i} sentinel-4242-secret\n").as_bytes());
    }
    let key = BackupKey::generate();
    let c = compress(&input, Some(&key));
    let plain = compress(&input, None);
    // Stored bytes are ciphertext: no trace of the rows, and no zstd frame a reader could
    // decode without the key.
    assert!(!c.sink.windows(14).any(|w| w == b"sentinel-4242-"));
    assert!(c.sink.starts_with(b"age-encryption.org/v1"));
    assert_eq!(c.stored.size, c.sink.len() as u64);
    assert!(
        c.sink.len() < plain.sink.len() + plain.sink.len() / 50 + 1024,
        "age overhead too large"
    );
    let good = Expected {
        stored: c.stored.clone(),
        raw: c.raw.clone(),
        key: Some(key.clone()),
    };
    assert_eq!(decompress(&c.sink, &good).expect("round trip"), input);

    // Another backup's key: the stored hash matches, the bytes do not decrypt.
    let wrong = Expected {
        key: Some(BackupKey::generate()),
        ..good.clone()
    };
    let r = decompress(&c.sink, &wrong);
    assert!(matches!(r, Err(PipelineError::Decrypt(_))), "{r:?}");
    // No key: zstd refuses what it cannot read.
    let none = Expected {
        key: None,
        ..good.clone()
    };
    assert!(decompress(&c.sink, &none).is_err());

    // A flipped ciphertext byte, or a cut stream: a mismatch with the catalog, as in plaintext.
    let mut flipped = c.sink.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    let r = decompress(&flipped, &good);
    assert!(matches!(r, Err(PipelineError::Mismatch { .. })), "{r:?}");
    let r = decompress(&c.sink[..c.sink.len() - 100], &good);
    assert!(matches!(r, Err(PipelineError::Mismatch { .. })), "{r:?}");

    // Without the key the stored bytes can still be checked.
    let counters = Arc::<Counters>::default();
    pipeline::check_stored(&c.sink[..], &none, &counters, &CancellationToken::new())
        .expect("stored bytes");
    let r = pipeline::check_stored(&flipped[..], &none, &counters, &CancellationToken::new());
    assert!(matches!(r, Err(PipelineError::Mismatch { .. })), "{r:?}");
}
