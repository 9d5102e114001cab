//! A real S3-compatible server on loopback: `s3s-fs` (it checks SigV4, supports multipart
//! uploads, ranges and aborts, and keeps objects as plain files, so tests can damage them at
//! rest). `tests/run.sh` installs it; the binary is found through `LIFEBOAT_S3S_FS` or in the
//! cache directory it installs into.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::pg::free_port;
use crate::process::Proc;

/// Where `tests/run.sh` installs s3s-fs: `$LIFEBOAT_TOOLS_DIR` (default
/// `$HOME/.cache/lifeboat-tools`)`/s3s-fs-0.14.1/bin/s3s-fs`.
pub fn default_s3s_fs() -> PathBuf {
    let tools = std::env::var_os("LIFEBOAT_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/lifeboat-tools")
        });
    tools.join("s3s-fs-0.14.1/bin/s3s-fs")
}

pub fn s3s_fs_binary() -> PathBuf {
    let p = std::env::var_os("LIFEBOAT_S3S_FS")
        .map(PathBuf::from)
        .unwrap_or_else(default_s3s_fs);
    assert!(
        p.is_file(),
        "the S3 test server s3s-fs is not installed at {}; run ./tests/run.sh (it installs it), or `cargo install s3s-fs@0.14.1 --locked --features binary --root DIR` and set LIFEBOAT_S3S_FS=DIR/bin/s3s-fs",
        p.display()
    );
    p
}

/// A running s3s-fs with its own data directory and random credentials.
pub struct S3Server {
    proc: Proc,
    port: u16,
    data: PathBuf,
    dir: PathBuf,
    access_key: String,
    secret_key: String,
}

impl S3Server {
    /// Starts a server with files under `dir` and waits until it accepts connections.
    pub fn start(dir: &Path) -> S3Server {
        let bin = s3s_fs_binary();
        let data = dir.join("s3-data");
        std::fs::create_dir_all(&data).expect("create s3 data dir");
        let access_key = format!("LBTEST{:08X}", rand_u32());
        let secret_key = format!("secret-{:016x}{:016x}", rand_u64(), rand_u64());
        for _ in 0..5 {
            let port = free_port();
            let mut cmd = Command::new(&bin);
            cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--access-key", &access_key, "--secret-key", &secret_key])
                .arg(&data)
                .env("RUST_LOG", "warn");
            let mut proc = Proc::spawn("s3s-fs", cmd, dir);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return S3Server {
                        proc,
                        port,
                        data,
                        dir: dir.to_owned(),
                        access_key,
                        secret_key,
                    };
                }
                if proc.try_status().is_some() {
                    break; // port taken: try another
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = proc.kill();
        }
        panic!("s3s-fs did not start; see {}", dir.display());
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// Creates a bucket (s3s-fs keeps a bucket as a directory).
    pub fn create_bucket(&self, name: &str) {
        std::fs::create_dir_all(self.data.join(name)).expect("create bucket dir");
    }

    /// The file holding `key` of `bucket`, for damaging objects at rest.
    pub fn object_path(&self, bucket: &str, key: &str) -> PathBuf {
        self.data.join(bucket).join(key)
    }

    /// Multipart uploads the server still holds (started and neither completed nor aborted),
    /// by upload id: s3s-fs keeps each as `.upload_id-<uuid>.part-N` files and a
    /// `.upload-<uuid>` metadata file.
    pub fn open_multipart_uploads(&self) -> Vec<String> {
        let mut out = std::collections::BTreeSet::new();
        let mut stack = vec![self.data.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(i) = name.find(".upload") {
                    let rest = &name[i..];
                    let id = rest
                        .trim_start_matches(".upload_id-")
                        .trim_start_matches(".upload-");
                    out.insert(id.chars().take(36).collect::<String>());
                } else if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
        out.into_iter().collect()
    }

    /// Writes the access key id and secret (mode 0600) into `dir`; returns their paths.
    pub fn credential_files(&self, dir: &Path) -> (PathBuf, PathBuf) {
        write_credentials(dir, &self.access_key, &self.secret_key)
    }

    /// The `[[repository]]` body (after name and kind) for `bucket` at `endpoint` (the server
    /// itself or a proxy in front of it), credentials written into `dir`.
    pub fn repository_toml(
        &self,
        dir: &Path,
        bucket: &str,
        endpoint: &str,
        extra: &[&str],
    ) -> String {
        let (id, secret) = self.credential_files(dir);
        let mut s = format!(
            "bucket = {bucket:?}\nprefix = \"lifeboat\"\nregion = \"us-east-1\"\nendpoint = {endpoint:?}\npath_style = true\naccess_key_id_file = {:?}\nsecret_access_key_file = {:?}\n",
            id.display().to_string(),
            secret.display().to_string()
        );
        for l in extra {
            s.push_str(l);
            s.push('\n');
        }
        s
    }

    /// Like [`S3Server::repository_toml`], with the credentials taken from the agent's
    /// environment (`credentials = "env"` or `"chain"`) instead of files.
    pub fn repository_toml_without_files(
        &self,
        bucket: &str,
        endpoint: &str,
        extra: &[&str],
    ) -> String {
        let mut s = format!(
            "bucket = {bucket:?}\nprefix = \"lifeboat\"\nregion = \"us-east-1\"\nendpoint = {endpoint:?}\npath_style = true\n"
        );
        for l in extra {
            s.push_str(l);
            s.push('\n');
        }
        s
    }

    pub fn logs(&self) -> String {
        self.proc.logs()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Where an agent keeps the journal of its open multipart uploads to `repository`.
pub fn agent_upload_journal(state_dir: &Path, repository: &str) -> PathBuf {
    state_dir.join("s3-uploads").join(repository)
}

/// `Ok` once the upload journal in `dir` holds at least one open multipart upload and all of
/// them started more than `age` ago: what the janitor compares with `stale_upload_age` (an
/// upload is stale when its journal entry's `started_ms` is before now minus the age). The
/// journal is one `<hash>.json` per open upload, `{"key", "upload_id", "started_ms"}`.
pub fn journaled_uploads_older_than(dir: &Path, age: Duration) -> anyhow::Result<()> {
    let now_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis(),
    )?;
    let age_ms = i64::try_from(age.as_millis())?;
    let mut started = Vec::new();
    for e in std::fs::read_dir(dir)?.flatten() {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(e.path())?)?;
        let ms = v["started_ms"].as_i64().ok_or_else(|| {
            anyhow::anyhow!("no started_ms in journal entry {}: {v}", e.path().display())
        })?;
        started.push(ms);
    }
    match started.iter().max() {
        None => anyhow::bail!("no open upload in the journal {}", dir.display()),
        Some(&youngest) if now_ms - youngest <= age_ms => anyhow::bail!(
            "the youngest journaled upload is {} ms old, not older than {age:?}",
            now_ms - youngest
        ),
        Some(_) => Ok(()),
    }
}

pub fn write_credentials(dir: &Path, id: &str, secret: &str) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).expect("create credentials dir");
    let id_path = dir.join("s3-access-key-id");
    let secret_path = dir.join("s3-secret-access-key");
    std::fs::write(&id_path, id).expect("write access key id");
    std::fs::write(&secret_path, secret).expect("write secret");
    std::fs::set_permissions(&secret_path, std::fs::Permissions::from_mode(0o600))
        .expect("chmod secret");
    (id_path, secret_path)
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

fn rand_u32() -> u32 {
    (rand_u64() >> 32) as u32
}
