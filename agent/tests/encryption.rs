//! Encrypted backups (age) against a real PostgreSQL 15, driving the agent's job functions
//! in-process with a real fs repository: a backup is stored as ciphertext with its key object,
//! restores to the same data, verifies with and without a key, and its key object rotates to a
//! new recipient without its data object being rewritten.

use std::path::Path;
use std::sync::Arc;

use lifeboat_agent::{
    config::Config,
    job::JobCtx,
    work::{BackupWork, RestoreWork, RotateKeysWork},
};
use lifeboat_common::ids::BackupId;
use lifeboat_e2e::pg::{Pg, ROLE, write_private};
use lifeboat_proto::domain::{BackupRecord, OwnerPolicy, VerifyStatus};
use tokio_util::sync::CancellationToken;

const SENTINEL: &str = "sentinel-5500-0000-0000-0004";

struct World {
    pg: Pg,
    dir: tempfile::TempDir,
    config: Arc<Config>,
}

fn new_id() -> String {
    lifeboat_common::ids::new_id(time::OffsetDateTime::now_utc())
}

/// A new identity file in `dir`; its recipient.
fn identity(dir: &Path, name: &str) -> String {
    lifeboat_common::keys::generate_identity_file(&dir.join(name)).expect("key")
}

impl World {
    /// One logical target encrypted to `recipients`, with `identity_file` when given.
    fn start(recipients: &[&str], identity_file: Option<&str>, dir: tempfile::TempDir) -> World {
        let pg = Pg::start();
        pg.create_db("app");
        let d = dir.path();
        for f in ["ca.pem", "agent.pem"] {
            std::fs::write(d.join(f), "unused").expect("write");
        }
        write_private(&d.join("agent.key"), "unused");
        write_private(&d.join("super.pass"), pg.password());
        let recipients = recipients
            .iter()
            .map(|r| format!("\"{r}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let identity = identity_file
            .map(|f| format!(", identity_file = \"{f}\""))
            .unwrap_or_default();
        let text = format!(
            r#"name = "a"
environment = "test"
coordinator = "https://127.0.0.1:1"
state_dir = "state"
[tls]
ca = "ca.pem"
cert = "agent.pem"
key = "agent.key"

[[repository]]
name = "local"
kind = "fs"
path = "repo"

[[target]]
name = "app"
engine = "postgres"
repository = "local"
url = "postgres://{ROLE}@127.0.0.1:{port}/app"
password_file = "super.pass"
encryption = {{ recipients = [{recipients}]{identity} }}
"#,
            port = pg.port()
        );
        let config = lifeboat_agent::config::parse(&d.join("agent.toml"), &text).expect("config");
        World {
            pg,
            dir,
            config: Arc::new(config),
        }
    }

    fn ctx(&self) -> JobCtx {
        JobCtx::new(new_id(), Arc::clone(&self.config), CancellationToken::new())
    }

    async fn backup(&self) -> BackupRecord {
        let work = BackupWork {
            backup_id: BackupId::parse(&new_id()).expect("id"),
            target: "app".into(),
        };
        lifeboat_agent::backup::run(&self.ctx(), &work)
            .await
            .expect("backup")
    }

    async fn restore(&self, backup: &BackupRecord, database: &str) -> anyhow::Result<()> {
        let work = RestoreWork {
            fallbacks: Vec::new(),
            jobs: None,
            backup: backup.clone(),
            target: "app".into(),
            database: Some(database.into()),
            clean: false,
            owners: OwnerPolicy::Auto,
            include_provider_schemas: false,
            data_dir: None,
            recovery: None,
            start_port: None,
            partial: None,
            drill: false,
            globals: Default::default(),
            allow_superuser: false,
        };
        lifeboat_agent::restore::run(&self.ctx(), &work)
            .await
            .map(drop)
    }

    fn repo_file(&self, key: &str) -> std::path::PathBuf {
        self.dir.path().join("repo").join(key)
    }
}

const CONTENT: &str = "SELECT string_agg(format('%s|%s', id, card), ',' ORDER BY id) FROM cards;";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_backup_restores_verifies_and_rotates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ops = identity(dir.path(), "ops.key");
    let next = identity(dir.path(), "next.key");
    let w = World::start(&[&ops], Some("ops.key"), dir);
    w.pg.psql(
        "app",
        &format!(
            "CREATE TABLE cards (id int PRIMARY KEY, card text);
             INSERT INTO cards SELECT g, '{SENTINEL}-' || g FROM generate_series(1, 3000) g;"
        ),
    );
    let rec = w.backup().await;
    let enc = rec.encryption.clone().expect("the record says encrypted");
    assert_eq!(enc.key_ids, [lifeboat_common::keys::key_id(&ops)]);
    assert!(
        rec.data_key.ends_with("data.pgdump.zst.age"),
        "{}",
        rec.data_key
    );
    // The catalog's record keeps the row counts; the stored manifest does not.
    assert!(
        rec.row_counts
            .iter()
            .any(|r| r.table == "cards" && r.rows == 3000)
    );
    let manifest = std::fs::read_to_string(w.repo_file(&rec.manifest_key)).expect("manifest");
    assert!(!manifest.contains("cards"), "{manifest}");
    let data = std::fs::read(w.repo_file(&rec.data_key)).expect("data");
    assert!(data.starts_with(b"age-encryption.org/v1"));
    assert!(
        !data
            .windows(SENTINEL.len())
            .any(|x| x == SENTINEL.as_bytes())
    );

    w.restore(&rec, "app_back").await.expect("restore");
    assert_eq!(w.pg.psql("app", CONTENT), w.pg.psql("app_back", CONTENT));

    let v = lifeboat_agent::verify::run(&w.ctx(), &rec, true)
        .await
        .expect("verify");
    assert_eq!(v.status, VerifyStatus::Ok, "{}", v.detail);
    assert!(v.raw_bytes > 0, "decoded: {}", v.detail);

    // Rotation: the key object now opens with `next` only; the data object is untouched.
    let data_meta = std::fs::metadata(w.repo_file(&rec.data_key)).expect("meta");
    let work = RotateKeysWork {
        target: "app".into(),
        items: vec![(rec.clone(), vec!["local".into()])],
        add: vec![next.clone()],
        remove: vec![ops.clone()],
        dry_run: false,
    };
    let rotated = lifeboat_agent::keys::rotate(&w.ctx(), &work)
        .await
        .expect("rotate");
    assert_eq!(rotated.len(), 1);
    assert!(
        rotated[0].changed && rotated[0].error.is_empty(),
        "{rotated:?}"
    );
    assert_eq!(rotated[0].recipients, std::slice::from_ref(&next));
    // Run again (as after a rotation cut short): its header shows it done, so it is left
    // alone, although the agent's identity (`ops`) no longer opens it.
    let again = lifeboat_agent::keys::rotate(&w.ctx(), &work)
        .await
        .expect("rotate again");
    assert!(!again[0].changed && again[0].error.is_empty(), "{again:?}");
    // Removing `next` as well would need to open it: refused, naming the key it needs.
    let mut further = work.clone();
    further.remove = vec![next.clone()];
    further.add = vec![ops.clone()];
    let refused = lifeboat_agent::keys::rotate(&w.ctx(), &further)
        .await
        .expect("rotate");
    assert!(
        refused[0]
            .error
            .contains(&lifeboat_common::keys::key_id(&next)),
        "{refused:?}"
    );
    let after = std::fs::metadata(w.repo_file(&rec.data_key)).expect("meta");
    assert_eq!(data_meta.modified().ok(), after.modified().ok());
    let key_object = std::fs::read(w.repo_file(&enc.key_object)).expect("key.age");
    let next_id =
        lifeboat_common::keys::read_identity_file(&w.dir.path().join("next.key")).expect("next");
    let ops_id =
        lifeboat_common::keys::read_identity_file(&w.dir.path().join("ops.key")).expect("ops");
    assert!(lifeboat_agent::crypt::open_key("key.age", &key_object, &next_id).is_ok());
    assert!(lifeboat_agent::crypt::open_key("key.age", &key_object, &ops_id).is_err());

    // With `ops` only, the restore now fails naming the key id it needs, and makes nothing.
    let err = w.restore(&rec, "app_refused").await.expect_err("restored");
    let msg = format!("{err:#}");
    assert!(msg.contains(&lifeboat_common::keys::key_id(&next)), "{msg}");
    assert!(!w.pg.database_exists("app_refused"));
    // A stored-bytes verify still passes; a decrypting one fails.
    let v = lifeboat_agent::verify::run(&w.ctx(), &rec, false)
        .await
        .expect("verify");
    assert_eq!(v.status, VerifyStatus::Ok);
    assert!(v.detail.contains("not decrypted"), "{}", v.detail);
    assert!(
        lifeboat_agent::verify::run(&w.ctx(), &rec, true)
            .await
            .is_err()
    );

    // The identity file is read at each job: with `next` in it, the restore works.
    let next_text = std::fs::read_to_string(w.dir.path().join("next.key")).expect("read");
    write_private(&w.dir.path().join("ops.key"), &next_text);
    w.restore(&rec, "app_again").await.expect("restore");
    assert_eq!(w.pg.psql("app", CONTENT), w.pg.psql("app_again", CONTENT));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_only_agent_backs_up_and_refuses_to_restore() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ops = identity(dir.path(), "ops.key");
    let w = World::start(&[&ops], None, dir);
    w.pg.psql("app", "CREATE TABLE t (x int); INSERT INTO t VALUES (1);");
    let rec = w.backup().await;
    let err = w.restore(&rec, "app_back").await.expect_err("restored");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("backup-only") && msg.contains(&lifeboat_common::keys::key_id(&ops)),
        "{msg}"
    );
    assert!(!w.pg.database_exists("app_back"));
    let v = lifeboat_agent::verify::run(&w.ctx(), &rec, false)
        .await
        .expect("verify");
    assert_eq!(v.status, VerifyStatus::Ok);
    assert!(v.detail.contains("not decrypted"), "{}", v.detail);
    // A changed byte is still caught without the key.
    let path = w.repo_file(&rec.data_key);
    let mut bytes = std::fs::read(&path).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&path, bytes).expect("write");
    let v = lifeboat_agent::verify::run(&w.ctx(), &rec, false)
        .await
        .expect("verify");
    assert_eq!(v.status, VerifyStatus::Corrupt, "{}", v.detail);
}
