//! Client-side encryption of a backup, as the catalog and the wire record it: the key object
//! beside the data and the recipients (age public keys) it is encrypted to. The agent does the
//! cryptography; these values only name what it did.

use super::record::{RecordError, dir_of, object_key};
use crate::v1 as pb;

/// Length of a key id: the first 8 bytes of the recipient's SHA-256, in hex.
pub const KEY_ID_LEN: usize = 16;
/// Most recipients one key object may be encrypted to.
pub const MAX_RECIPIENTS: usize = 64;

/// An encrypted backup's key object and its recipients, with their key ids in the same order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encryption {
    /// Object key of `key.age`, in the backup's directory.
    pub key_object: String,
    pub recipients: Vec<String>,
    pub key_ids: Vec<String>,
}

impl Encryption {
    /// Checks an encryption record as it arrives; `dir_key` is the backup's directory.
    pub fn from_wire(
        e: Option<pb::BackupEncryption>,
        dir_key: &str,
    ) -> Result<Option<Self>, RecordError> {
        let Some(e) = e else { return Ok(None) };
        if e.key_object.is_empty() && e.recipients.is_empty() && e.key_ids.is_empty() {
            return Ok(None);
        }
        let key_object = object_key("key object", e.key_object)?;
        if dir_of(&key_object) != Some(dir_key) {
            return Err(RecordError(format!(
                "key object {key_object:?} is not in the backup's directory {dir_key:?}"
            )));
        }
        check_recipients(&e.recipients, &e.key_ids)?;
        Ok(Some(Encryption {
            key_object,
            recipients: e.recipients,
            key_ids: e.key_ids,
        }))
    }

    pub fn to_wire(&self) -> pb::BackupEncryption {
        pb::BackupEncryption {
            key_object: self.key_object.clone(),
            recipients: self.recipients.clone(),
            key_ids: self.key_ids.clone(),
        }
    }

    /// `3f9a1c2b7d4e5a60, 0d1e2f3a4b5c6d7e`
    pub fn key_id_list(&self) -> String {
        self.key_ids.join(", ")
    }
}

/// Checks a recipient list and its key ids: at least one recipient, each an `age1…` string of
/// printable ASCII, ids of the right form, one per recipient.
pub fn check_recipients(recipients: &[String], key_ids: &[String]) -> Result<(), RecordError> {
    if recipients.is_empty() {
        return Err(RecordError(
            "an encrypted backup must name at least one recipient".into(),
        ));
    }
    if recipients.len() > MAX_RECIPIENTS {
        return Err(RecordError(format!(
            "{} recipients; at most {MAX_RECIPIENTS} are accepted",
            recipients.len()
        )));
    }
    if recipients.len() != key_ids.len() {
        return Err(RecordError(format!(
            "{} recipients but {} key ids",
            recipients.len(),
            key_ids.len()
        )));
    }
    for r in recipients {
        if !r.starts_with("age1") || r.len() > 256 || !r.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(RecordError(format!(
                "recipient {r:?} is not an age public key (age1…)"
            )));
        }
    }
    for id in key_ids {
        if !is_key_id(id) {
            return Err(RecordError(format!(
                "key id {id:?} is not {KEY_ID_LEN} lower-case hex digits"
            )));
        }
    }
    Ok(())
}

pub fn is_key_id(id: &str) -> bool {
    id.len() == KEY_ID_LEN && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

    fn wire() -> pb::BackupEncryption {
        pb::BackupEncryption {
            key_object: "prod/db/B1/key.age".into(),
            recipients: vec![R.into()],
            key_ids: vec!["0123456789abcdef".into()],
        }
    }

    #[test]
    fn a_record_round_trips() {
        let e = Encryption::from_wire(Some(wire()), "prod/db/B1")
            .expect("valid")
            .expect("encrypted");
        assert_eq!(e.to_wire(), wire());
        assert_eq!(Encryption::from_wire(None, "prod/db/B1").expect("ok"), None);
    }

    #[test]
    fn bad_records_are_refused_with_the_field_named() {
        type Mutation = fn(&mut pb::BackupEncryption);
        let cases: Vec<(Mutation, &str)> = vec![
            (|e| e.key_object = "prod/db/B2/key.age".into(), "directory"),
            (|e| e.recipients.clear(), "at least one recipient"),
            (
                |e| e.recipients = vec!["ssh-ed25519 AAAA".into()],
                "age public key",
            ),
            (|e| e.key_ids = vec!["XYZ".into()], "hex digits"),
            (|e| e.key_ids.push("0123456789abcdef".into()), "key ids"),
        ];
        for (mutate, want) in cases {
            let mut w = wire();
            mutate(&mut w);
            let err = Encryption::from_wire(Some(w), "prod/db/B1").expect_err(want);
            assert!(err.to_string().contains(want), "{err} lacks {want}");
        }
    }
}
