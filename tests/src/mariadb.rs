//! A throwaway MariaDB instance per test: `mariadb-install-db` into a temp dir, `mariadbd` on a
//! free port bound to 127.0.0.1 with its own socket, `--no-defaults` so nothing from
//! /etc/mysql leaks in. The agent connects over TCP as [`USER`] with a random password; the
//! harness itself talks to the server as root over the socket.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::pg::{free_port, write_private};
use crate::poll::scaled;

/// The account the agent connects as (all privileges, from 127.0.0.1 only).
pub const USER: &str = "lifeboat";

pub struct MariaDb {
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    port: u16,
    password: String,
    server: Option<Child>,
    tls: Option<PathBuf>,
    /// Extra server options (TLS).
    server_args: Vec<String>,
}

/// Where the MariaDB server and client programs are.
pub const MARIADBD: &str = "/usr/sbin/mariadbd";

fn check(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A data directory fresh from `mariadb-install-db`, made once per machine and copied for
/// every instance (a copy costs a fraction of an install). It is made beside its final name
/// and renamed into place, so parallel tests never see half of one.
fn template_data_dir() -> PathBuf {
    let user = current_user();
    let dir = PathBuf::from(format!("/tmp/lifeboat-mariadb-template-{user}"));
    if dir.join("mysql").is_dir() {
        return dir;
    }
    let work = tempfile::Builder::new()
        .prefix("lifeboat-mariadb-template-new-")
        .tempdir_in("/tmp")
        .expect("create template dir");
    let data = work.path().join("data");
    // Its own tmpdir: parallel bootstraps collide in a shared /tmp.
    let tmp = work.path().join("tmp");
    std::fs::create_dir(&tmp).expect("create MariaDB tmpdir");
    let out = Command::new("mariadb-install-db")
        .arg("--no-defaults")
        .arg(format!("--user={user}"))
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--tmpdir={}", tmp.display()))
        .args(["--auth-root-authentication-method=socket", "--skip-test-db"])
        .current_dir(work.path())
        .stdin(Stdio::null())
        .output()
        .expect("run mariadb-install-db (install mariadb-server)");
    check("mariadb-install-db", &out);
    // Another test may have won the race: then its template stays and ours goes.
    let _ = std::fs::rename(&data, &dir);
    dir
}

impl MariaDb {
    /// Starts an instance whose [`USER`] has a random password.
    pub fn start() -> MariaDb {
        Self::start_with_password(&format!("pw-{}", crate::random_hex(12)))
    }

    /// Starts an instance whose [`USER`] has `password`.
    pub fn start_with_password(password: &str) -> MariaDb {
        Self::start_inner(password, false)
    }

    /// Starts an instance that accepts only TLS connections (`require_secure_transport`), with
    /// a server certificate for `127.0.0.1` and `localhost` issued by a CA made for this
    /// instance ([`MariaDb::ca_file`]).
    pub fn start_tls() -> MariaDb {
        Self::start_inner(&format!("pw-{}", crate::random_hex(12)), true)
    }

    /// The CA certificate that signed the server certificate of a [`MariaDb::start_tls`]
    /// instance.
    pub fn ca_file(&self) -> Option<&Path> {
        self.tls.as_deref()
    }

    fn start_inner(password: &str, tls: bool) -> MariaDb {
        let dir = tempfile::Builder::new()
            .prefix("lifeboat-mariadb-")
            .tempdir_in("/tmp")
            .expect("create MariaDB dir");
        let root = dir.path().to_owned();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755))
            .expect("chmod MariaDB dir");
        let data = root.join("data");
        // Each instance gets its own tmpdir: parallel bootstraps collide in a shared /tmp.
        let tmp = root.join("tmp");
        std::fs::create_dir(&tmp).expect("create MariaDB tmpdir");
        crate::fsutil::copy_tree(&template_data_dir(), &data);

        let tls_args = if tls {
            let ca = lifeboat_common::pki::Ca::generate("mariadb").expect("generate CA");
            let leaf = ca
                .issue(&lifeboat_common::pki::LeafSpec::coordinator(
                    "mariadb",
                    vec!["127.0.0.1".into(), "localhost".into()],
                ))
                .expect("issue server certificate");
            let dir = root.join("tls");
            std::fs::create_dir(&dir).expect("create tls dir");
            std::fs::write(dir.join("ca.pem"), &ca.cert_pem).expect("write CA");
            std::fs::write(dir.join("server.pem"), &leaf.cert_pem).expect("write cert");
            write_private(&dir.join("server.key"), leaf.key_pem.expose());
            vec![
                format!("--ssl-ca={}", dir.join("ca.pem").display()),
                format!("--ssl-cert={}", dir.join("server.pem").display()),
                format!("--ssl-key={}", dir.join("server.key").display()),
                "--require-secure-transport=ON".to_owned(),
            ]
        } else {
            Vec::new()
        };
        let mut db = MariaDb {
            dir: Some(dir),
            tls: tls.then(|| root.join("tls").join("ca.pem")),
            root,
            port: 0,
            password: password.to_owned(),
            server: None,
            server_args: tls_args,
        };
        // A free port can be taken between our probe and the server's bind: retry.
        let mut last = String::new();
        for _ in 0..5 {
            db.port = free_port();
            let _ = std::fs::remove_file(db.log_path());
            db.spawn_server();
            match db.wait_ready() {
                Ok(()) => {
                    last.clear();
                    break;
                }
                Err(e) => {
                    last = format!("{e}\n{}", db.log());
                    db.kill_server();
                    if !last.contains("Bind on") && !last.contains("in use") {
                        break;
                    }
                }
            }
        }
        assert!(last.is_empty(), "mariadbd did not start:\n{last}");

        // The password goes through stdin, never argv (X37 scans every command line).
        let pw = password.replace('\\', "\\\\").replace('\'', "\\'");
        db.sql(
            "",
            &format!(
                "CREATE USER '{USER}'@'127.0.0.1' IDENTIFIED BY '{pw}';\n\
                 GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'127.0.0.1' WITH GRANT OPTION;\n"
            ),
        );
        db
    }

    /// Starts mariadbd on this instance's data directory and port.
    fn spawn_server(&mut self) {
        let data = self.root.join("data");
        let tmp = self.root.join("tmp");
        let child = Command::new(MARIADBD)
            .arg("--no-defaults")
            .arg(format!("--user={}", current_user()))
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!("--port={}", self.port))
            .arg("--bind-address=127.0.0.1")
            .arg(format!(
                "--pid-file={}",
                self.root.join("mysqld.pid").display()
            ))
            .arg(format!("--log-error={}", self.log_path().display()))
            .args([
                "--skip-name-resolve",
                "--innodb-buffer-pool-size=32M",
                "--innodb-log-file-size=16M",
                "--innodb-flush-log-at-trx-commit=0",
                "--sync-binlog=0",
                "--max-connections=60",
            ])
            .args(&self.server_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mariadbd");
        self.server = Some(child);
    }

    /// Makes the server also listen on `ip`, with [`USER`] allowed to log in from there (same
    /// password), and restarts it.
    pub fn serve_on(&mut self, ip: std::net::IpAddr) {
        let pw = self.password.replace('\\', "\\\\").replace('\'', "\\'");
        self.sql(
            "mysql",
            &format!(
                "CREATE USER '{USER}'@'{ip}' IDENTIFIED BY '{pw}';\n\
                 GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'{ip}' WITH GRANT OPTION;\n"
            ),
        );
        self.server_args
            .push(format!("--bind-address=127.0.0.1,{ip}"));
        self.kill_server();
        self.spawn_server();
        if let Err(e) = self.wait_ready() {
            panic!("mariadbd did not come back on {ip}: {e}\n{}", self.log());
        }
    }

    /// Kills mariadbd (SIGKILL: every session dies at once, as in a crash or a failover) and
    /// starts it again on the same port, after crash recovery (D17).
    pub fn crash_and_restart(&mut self) {
        self.kill_server();
        self.spawn_server();
        if let Err(e) = self.wait_ready() {
            panic!("mariadbd did not come back: {e}\n{}", self.log());
        }
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + scaled(Duration::from_secs(60));
        let mut interval = Duration::from_millis(20);
        loop {
            if let Some(child) = self.server.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!("mariadbd exited early ({status})"));
            }
            let ping = Command::new("mariadb-admin")
                .arg("--no-defaults")
                .arg(format!("--socket={}", self.socket().display()))
                .args(["-uroot", "ping"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if ping.is_ok_and(|s| s.success()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("mariadbd did not answer a ping within the deadline".into());
            }
            std::thread::sleep(interval);
            interval = (interval * 2).min(Duration::from_millis(200));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn socket(&self) -> PathBuf {
        self.root.join("mysqld.sock")
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    fn log_path(&self) -> PathBuf {
        self.root.join("err.log")
    }

    /// The URL an agent target uses (no password in it).
    pub fn url(&self, database: &str) -> String {
        format!("mysql://{USER}@127.0.0.1:{}/{database}", self.port)
    }

    /// Writes the password to `path` with mode 0600.
    pub fn write_password_file(&self, path: &Path) {
        write_private(path, &self.password);
    }

    /// Runs a MariaDB client program as root over the socket; `stdin` is fed to it.
    pub fn client(&self, program: &str, args: &[&str], stdin: &[u8]) -> Output {
        let mut child = Command::new(program)
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.socket().display()))
            .arg("-uroot")
            .args(args)
            .current_dir(&self.root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {program}: {e}"));
        let mut input = child.stdin.take().expect("stdin");
        let data = stdin.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = input.write_all(&data);
        });
        let out = child.wait_with_output().expect("wait for client");
        let _ = writer.join();
        out
    }

    /// Runs SQL in `db` ("" for none) with the `mariadb` client (stops at the first error) and
    /// returns the tab-separated output without column names. Panics on failure.
    pub fn sql(&self, db: &str, sql: &str) -> String {
        let out = self.try_sql(db, sql);
        check(&format!("mariadb {db}"), &out);
        String::from_utf8(out.stdout).expect("mariadb output is UTF-8")
    }

    /// Like [`MariaDb::sql`] but returns the output for the caller to judge.
    pub fn try_sql(&self, db: &str, sql: &str) -> Output {
        let mut args = vec![
            "--batch",
            "--skip-column-names",
            "--default-character-set=utf8mb4",
        ];
        if !db.is_empty() {
            args.push(db);
        }
        self.client("mariadb", &args, sql.as_bytes())
    }

    /// One value from a query.
    pub fn query_one(&self, db: &str, sql: &str) -> String {
        self.sql(db, sql).trim_end_matches('\n').to_owned()
    }

    pub fn create_db(&self, name: &str) {
        self.sql(
            "",
            &format!(
                "CREATE DATABASE `{}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;",
                name.replace('`', "``")
            ),
        );
    }

    /// Names of all databases, sorted.
    pub fn databases(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .sql("", "SHOW DATABASES;")
            .lines()
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    }

    pub fn database_exists(&self, name: &str) -> bool {
        self.databases().iter().any(|d| d == name)
    }

    /// A complete, deterministic dump of `db` for comparing two databases: schema, data,
    /// routines, events and triggers, no dump date. The database name is not in it (no
    /// `--databases`; comments naming it are neutralised), so dumps of a source and its
    /// restored copy compare equal.
    pub fn dump_sql(&self, db: &str) -> String {
        let out = self.client(
            "mariadb-dump",
            &[
                "--single-transaction",
                "--routines",
                "--events",
                "--triggers",
                "--hex-blob",
                "--skip-dump-date",
                "--default-character-set=utf8mb4",
                "--order-by-primary",
                db,
            ],
            b"",
        );
        check(&format!("mariadb-dump {db}"), &out);
        let text = String::from_utf8(out.stdout).expect("dump is UTF-8");
        // The database's name appears only in comments; make it neutral.
        let (name_in_header, name_in_section) =
            (format!("Database: {db}"), format!("for database '{db}'"));
        text.lines()
            .map(|l| {
                let l = if l.starts_with("--") {
                    l.replace(&name_in_header, "Database: DB")
                        .replace(&name_in_section, "for database 'DB'")
                } else {
                    l.to_owned()
                };
                format!("{l}\n")
            })
            .collect()
    }

    /// Asserts that [`Self::dump_sql`] of `a` and of `b` are the same (and not near empty),
    /// showing a unified diff (written under `work`) when they are not. Returns `a`'s dump.
    pub fn assert_same_dumps(&self, a: &str, b: &str, work: &std::path::Path) -> String {
        let (da, db) = (self.dump_sql(a), self.dump_sql(b));
        assert!(da.len() > 10_000, "the dump of {a} is suspiciously small");
        if da != db {
            let (pa, pb) = (work.join(format!("{a}.sql")), work.join(format!("{b}.sql")));
            std::fs::write(&pa, &da).expect("write dump");
            std::fs::write(&pb, &db).expect("write dump");
            let d = std::process::Command::new("diff")
                .arg("-u")
                .arg(&pa)
                .arg(&pb)
                .output()
                .expect("diff");
            panic!(
                "dumps of {a} and {b} differ:\n{}",
                String::from_utf8_lossy(&d.stdout)
                    .lines()
                    .take(80)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        da
    }

    /// The server's error log (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn kill_server(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A clean shutdown (`mariadb-admin shutdown`), then waits for the server to exit.
    pub fn stop(&mut self) {
        let Some(mut child) = self.server.take() else {
            return;
        };
        let out = Command::new("mariadb-admin")
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.socket().display()))
            .args(["-uroot", "shutdown"])
            .stdin(Stdio::null())
            .output();
        let deadline = Instant::now() + scaled(Duration::from_secs(60));
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => {
                    eprintln!(
                        "mariadbd did not stop after `mariadb-admin shutdown` ({out:?}); killing it"
                    );
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
            }
        }
    }
}

fn current_user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| {
            let out = Command::new("id").arg("-un").output().expect("run id -un");
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        })
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let start = log.len().saturating_sub(16 * 1024);
            let start = (start..log.len())
                .find(|i| log.is_char_boundary(*i))
                .unwrap_or(log.len());
            eprintln!(
                "----- mariadbd log ({}) -----\n{}",
                self.root.display(),
                &log[start..]
            );
        }
        self.stop();
        if let Some(dir) = self.dir.take()
            && std::env::var_os("LIFEBOAT_E2E_KEEP").is_some()
        {
            let _ = dir.keep();
        }
    }
}
