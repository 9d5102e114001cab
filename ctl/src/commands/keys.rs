//! `lifeboat keys generate|list|rotate|escrow` (client-side encryption with age).

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use lifeboat_proto as pb;
use serde::Serialize;

use crate::{
    cli::{
        GlobalArgs, KeysCommand, KeysEscrowArgs, KeysGenerateArgs, KeysListArgs, KeysRotateArgs,
    },
    client::Conn,
    error::usage,
    output::{self, Render, Table},
    progress,
};

pub async fn run(cmd: KeysCommand, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    match cmd {
        KeysCommand::Generate(args) => generate(&args, global, out),
        KeysCommand::List(args) => list(args, global, out).await,
        KeysCommand::Rotate(args) => rotate(args, global, out).await,
        KeysCommand::Escrow(args) => escrow(&args, global, out).await,
    }
}

/// A new identity file.
#[derive(Debug, Serialize)]
struct Generated {
    file: String,
    recipient: String,
    key_id: String,
}

impl Render for Generated {
    fn table(&self) -> String {
        format!(
            "created {} (mode 0600): a private key; keep it secret, and a copy offline\n\
             public key (recipient): {}\n\
             key id: {}\n\
             Put the public key in the agents' encryption.recipients; put the file (identity_file) \
             only on agents that restore.\n",
            self.file, self.recipient, self.key_id
        )
    }
}

fn generate(args: &KeysGenerateArgs, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    let recipient = lifeboat_common::keys::generate_identity_file(&args.out).map_err(usage)?;
    output::emit(
        out,
        global.output,
        &Generated {
            file: args.out.display().to_string(),
            key_id: lifeboat_common::keys::key_id(&recipient),
            recipient,
        },
    )
}

/// `keys list`: the keys and the plaintext backups.
#[derive(Debug, Serialize)]
pub struct KeysView {
    pub keys: Vec<KeyView>,
    pub plaintext: Vec<PlaintextView>,
}

#[derive(Debug, Serialize)]
pub struct KeyView {
    pub key_id: String,
    pub recipient: String,
    pub backups: u64,
    pub targets: Vec<String>,
    pub oldest_backup: Option<String>,
    pub newest_backup: Option<String>,
    pub configured_for: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct PlaintextView {
    pub target: String,
    pub backups: u64,
    pub newest_backup: Option<String>,
}

fn time(ms: i64) -> Option<String> {
    (ms > 0).then(|| output::rfc3339_text(ms))
}

impl From<&pb::ListKeysResponse> for KeysView {
    fn from(r: &pb::ListKeysResponse) -> Self {
        Self {
            keys: r
                .keys
                .iter()
                .map(|k| KeyView {
                    key_id: k.key_id.clone(),
                    recipient: k.recipient.clone(),
                    backups: k.backups,
                    targets: k.targets.clone(),
                    oldest_backup: time(k.oldest_backup_ms),
                    newest_backup: time(k.newest_backup_ms),
                    configured_for: k.configured_for.clone(),
                })
                .collect(),
            plaintext: r
                .plaintext
                .iter()
                .map(|p| PlaintextView {
                    target: p.target.clone(),
                    backups: p.backups,
                    newest_backup: time(p.newest_backup_ms),
                })
                .collect(),
        }
    }
}

/// `age1` and the last characters: enough to tell keys apart in a table.
fn short(recipient: &str) -> String {
    if recipient.len() <= 20 {
        return recipient.to_owned();
    }
    format!("age1…{}", &recipient[recipient.len() - 12..])
}

impl Render for KeysView {
    fn table(&self) -> String {
        let mut t = Table::new(&[
            "KEY ID",
            "RECIPIENT",
            "BACKUPS",
            "TARGETS",
            "NEWEST",
            "CONFIGURED FOR",
        ]);
        for k in &self.keys {
            t.row(vec![
                k.key_id.clone(),
                short(&k.recipient),
                k.backups.to_string(),
                list_or_dash(&k.targets),
                k.newest_backup.clone().unwrap_or_else(|| "-".into()),
                list_or_dash(&k.configured_for),
            ]);
        }
        let mut s = if self.keys.is_empty() {
            "no encrypted backup and no target configured for encryption\n".to_owned()
        } else {
            t.render()
        };
        if !self.plaintext.is_empty() {
            let mut p = Table::new(&["TARGET", "PLAINTEXT BACKUPS", "NEWEST"]);
            for b in &self.plaintext {
                p.row(vec![
                    b.target.clone(),
                    b.backups.to_string(),
                    b.newest_backup.clone().unwrap_or_else(|| "-".into()),
                ]);
            }
            s.push_str("\nstored without client-side encryption:\n");
            s.push_str(&p.render());
        }
        s
    }
}

fn list_or_dash(v: &[String]) -> String {
    if v.is_empty() {
        "-".into()
    } else {
        v.join(",")
    }
}

async fn fetch_keys(conn: &Conn, target: String) -> Result<pb::ListKeysResponse> {
    let req = conn.request(pb::ListKeysRequest { target });
    conn.unary("list keys", |mut c| async move { c.list_keys(req).await })
        .await
}

async fn list(args: KeysListArgs, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    let conn = Conn::connect(global).await?;
    let resp = fetch_keys(
        &conn,
        args.target.map(|t| t.to_string()).unwrap_or_default(),
    )
    .await?;
    output::emit(out, global.output, &KeysView::from(&resp))
}

async fn rotate(args: KeysRotateArgs, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    for r in args.add.iter().chain(&args.remove) {
        lifeboat_common::keys::parse_recipient(r).map_err(usage)?;
    }
    if args.add.is_empty() && args.remove.is_empty() {
        return Err(crate::error::usage_msg(
            "name the recipients to --add and/or --remove",
        ));
    }
    let conn = Conn::connect(global).await?;
    let req = conn.request(pb::RotateKeysRequest {
        target: args.target.to_string(),
        add: args.add.clone(),
        remove: args.remove.clone(),
        dry_run: args.dry_run,
    });
    let job = conn
        .unary("start key rotation", |mut c| async move {
            c.rotate_keys(req).await
        })
        .await?;
    progress::follow(&conn, &job, args.wait.wait, out, global.output).await
}

/// The recovery kit: what a person needs, with the private keys, to decrypt any backup by
/// hand. Written create-only and 0600 (it names every key in use).
pub fn kit_text(coordinator: &str, now_ms: i64, keys: &pb::ListKeysResponse) -> String {
    let mut s = format!(
        "LIFEBOAT RECOVERY KIT\n\
         generated: {}\n\
         coordinator: {coordinator}\n\n\
         This kit names the keys that protect your encrypted backups. It holds no private key:\n\
         the identity files (AGE-SECRET-KEY-1…) are kept apart, offline. Where they are kept:\n\n\
         ______________________________________________________________________________\n\n\
         ______________________________________________________________________________\n\n\
         KEYS IN USE\n",
        output::rfc3339_text(now_ms)
    );
    if keys.keys.is_empty() {
        s.push_str("  (none: no encrypted backup, no target configured for encryption)\n");
    }
    for k in &keys.keys {
        s.push_str(&format!(
            "\n  key id:     {}\n  public key: {}\n  protects:   {} kept backup(s){}{}\n  configured: {}\n",
            k.key_id,
            k.recipient,
            k.backups,
            if k.targets.is_empty() {
                String::new()
            } else {
                format!(" of {}", k.targets.join(", "))
            },
            time(k.newest_backup_ms)
                .map(|t| format!(", newest {t}"))
                .unwrap_or_default(),
            list_or_dash(&k.configured_for),
        ));
    }
    if !keys.plaintext.is_empty() {
        s.push_str("\nBACKUPS STORED WITHOUT ENCRYPTION\n");
        for p in &keys.plaintext {
            s.push_str(&format!("  {}: {} backup(s)\n", p.target, p.backups));
        }
    }
    s.push_str(
        "\nDECRYPTING A BACKUP BY HAND (needs age or rage, zstd, sha256sum, jq)\n\
         Each backup's directory, ROOT/ENV/TARGET/BACKUP_ID/, holds manifest.json, key.age (the\n\
         backup's own key, encrypted to the keys above) and its objects ending in .age.\n\
         Which keys open key.age: jq -r '.encryption.key_ids[]' manifest.json (as of the backup;\n\
         a rotation since then changed them); a public key's id: printf %s age1… | sha256sum | cut -c1-16\n\n\
         \x20 B=ROOT/ENV/TARGET/BACKUP_ID      K=/path/to/identity.key      W=/some/empty/dir\n\
         \x20 umask 077\n\
         \x20 echo \"$(jq -r .stored_sha256 $B/manifest.json)  $B/$(jq -r .data_file $B/manifest.json)\" | sha256sum -c -\n\
         \x20 age -d -i $K -o $W/backup.key $B/key.age\n\
         \x20 age -d -i $W/backup.key $B/data.pgdump.zst.age | zstd -d -o $W/data.pgdump   # PostgreSQL\n\
         \x20 age -d -i $W/backup.key $B/data.sql.zst.age | zstd -d -o $W/data.sql         # MariaDB/MySQL\n\
         \x20 echo \"$(jq -r .raw_sha256 $B/manifest.json)  $W/data.pgdump\" | sha256sum -c -\n\
         \x20 createdb NEW && pg_restore --exit-on-error --no-owner -d NEW $W/data.pgdump   # or: mariadb NEW < $W/data.sql\n\
         \x20 age -d -i $W/backup.key $B/globals.sql.zst.age | zstd -d                       # roles/accounts, if any\n\
         \x20 jq -r .sealed $B/manifest.json | base64 -d | age -d -i $W/backup.key           # table names, row counts\n\n\
         A physical target's base backup is data.tar.zst.age (the same steps, then tar -x into an\n\
         empty data directory). Its WAL archive, ROOT/ENV/TARGET/wal/, holds each file as\n\
         NAME-SHA256.zst.age, encrypted to a WAL key in wal/keys/ID.age (encrypted to the keys above):\n\
         \x20 for k in ROOT/ENV/TARGET/wal/keys/*.age; do age -d -i $K $k; done > $W/wal.keys\n\
         \x20 age -d -i $W/wal.keys FILE.zst.age | zstd -d -o $W/wal/NAME    # restore_command = 'cp $W/wal/%f %p'\n\n\
         The full procedure: docs/DISASTER_RECOVERY.md, \"Encrypted backups without lifeboat\".\n\
         Destroying every identity file listed for a backup destroys the backup.\n",
    );
    s
}

/// Writes `text` to a new file `path`, mode 0600, never replacing one.
fn write_new_private(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| {
            format!(
                "create {} (an existing file is never replaced)",
                path.display()
            )
        })
        .map_err(usage)?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("write {}", path.display()))
}

#[derive(Debug, Serialize)]
struct Escrowed {
    file: String,
    keys: usize,
}

impl Render for Escrowed {
    fn table(&self) -> String {
        format!(
            "wrote the recovery kit to {} ({} key(s)); print it and store it with your disaster recovery papers\n",
            self.file, self.keys
        )
    }
}

async fn escrow(args: &KeysEscrowArgs, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    if args.out.exists() {
        return Err(crate::error::usage_msg(format!(
            "{} exists; the kit is never written over an existing file",
            args.out.display()
        )));
    }
    let conn = Conn::connect(global).await?;
    let keys = fetch_keys(&conn, String::new()).await?;
    let text = kit_text(
        &global.coordinator.clone().unwrap_or_default(),
        lifeboat_common::time::now_ms(),
        &keys,
    );
    write_new_private(&args.out, &text)?;
    output::emit(
        out,
        global.output,
        &Escrowed {
            file: args.out.display().to_string(),
            keys: keys.keys.len(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kit_names_every_key_and_the_procedure_and_no_secret() {
        let keys = pb::ListKeysResponse {
            keys: vec![pb::KeyUsage {
                key_id: "0123456789abcdef".into(),
                recipient: "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p".into(),
                targets: vec!["prod/orders".into()],
                backups: 12,
                newest_backup_ms: 1_800_000_000_000,
                configured_for: vec!["prod/orders".into()],
                ..Default::default()
            }],
            plaintext: vec![pb::PlaintextBackups {
                target: "dev/scratch".into(),
                backups: 3,
                newest_backup_ms: 0,
            }],
        };
        let kit = kit_text("https://coord:7443", 1_800_000_000_000, &keys);
        for want in [
            "0123456789abcdef",
            "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
            "12 kept backup(s) of prod/orders",
            "dev/scratch: 3 backup(s)",
            "age -d -i $K -o $W/backup.key $B/key.age",
            "wal/keys/ID.age",
            "https://coord:7443",
        ] {
            assert!(kit.contains(want), "{want:?} missing from:\n{kit}");
        }
        assert!(!kit.contains("AGE-SECRET-KEY-1Q"), "{kit}");
    }

    #[test]
    fn escrow_and_generate_never_replace_a_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("kit.txt");
        write_new_private(&path, "first").expect("write");
        let err = write_new_private(&path, "second").expect_err("replaced");
        assert!(format!("{err:#}").contains("never replaced"), "{err:#}");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "first");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn recipients_are_shortened_in_tables_only() {
        let r = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
        assert_eq!(short(r), "age1…sfn9aqmcac8p");
        let view = KeysView::from(&pb::ListKeysResponse {
            keys: vec![pb::KeyUsage {
                key_id: "0123456789abcdef".into(),
                recipient: r.into(),
                ..Default::default()
            }],
            plaintext: Vec::new(),
        });
        assert!(view.table().contains(&short(r)));
        assert!(!view.table().contains(r));
        let json = serde_json::to_string(&view).expect("json");
        assert!(json.contains(r), "{json}");
    }
}
