//! A throwaway PostgreSQL 15 instance per test.
//!
//! `initdb` refuses to run as root, so the data directory belongs to the `postgres` OS user and
//! the server runs as that user. Host connections (what the agent uses) need a SCRAM password;
//! local socket connections (what the harness uses) are trusted.

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::PG_BIN;

/// The superuser role the agent connects as.
pub const ROLE: &str = "lifeboat";

pub struct Pg {
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    port: u16,
    password: String,
    stopped: bool,
    /// The socket directory of a server started by something else ([`Pg::attach_running`]).
    sock: Option<PathBuf>,
    /// Another address the server listens on besides 127.0.0.1 ([`Pg::serve_on`]).
    also_listen: Option<std::net::IpAddr>,
}

/// An address of this machine that is not loopback (the first global IPv4 address of an
/// interface), for tests of what lifeboat does with a remote host. Panics when the machine
/// has none: such a test cannot run honestly without one.
pub fn non_loopback_ip() -> std::net::IpAddr {
    let out = Command::new("hostname")
        .arg("-I")
        .output()
        .expect("run hostname -I");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|w| w.parse::<std::net::IpAddr>().ok())
        .find(|a| a.is_ipv4() && !a.is_loopback())
        .expect("this machine has no non-loopback IPv4 address (hostname -I)")
}

/// A port nobody listens on right now (bound and released; a race is retried by the caller).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

fn run_as_postgres(dir: &Path, program: &str, args: &[&str]) -> Output {
    Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(Path::new(PG_BIN).join(program))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {program} as postgres: {e}"))
}

fn check(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A data directory fresh from `initdb`, made once per machine (and PostgreSQL binary
/// directory) and copied for every instance: a copy costs a fraction of an `initdb`. It is made
/// beside its final name and renamed into place, so parallel tests never see half of one.
fn template_data_dir() -> PathBuf {
    let dir = PathBuf::from(format!(
        "/tmp/lifeboat-pg-template-{}",
        PG_BIN.trim_matches('/').replace('/', "-")
    ));
    if dir.join("PG_VERSION").is_file() {
        return dir;
    }
    let work = tempfile::Builder::new()
        .prefix("lifeboat-pg-template-new-")
        .tempdir_in("/tmp")
        .expect("create template dir");
    let chown = Command::new("chown")
        .args(["postgres:postgres"])
        .arg(work.path())
        .status()
        .expect("run chown");
    assert!(
        chown.success(),
        "chown {} to postgres",
        work.path().display()
    );
    let data = work.path().join("data");
    let out = run_as_postgres(
        work.path(),
        "initdb",
        &[
            "-D",
            data.to_str().expect("utf-8 path"),
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
            "--no-instructions",
        ],
    );
    check("initdb", &out);
    // Another test may have won the race: then its template stays and ours goes.
    let _ = std::fs::rename(&data, &dir);
    dir
}

impl Pg {
    /// Starts an instance whose `lifeboat` role has a random password.
    pub fn start() -> Pg {
        Self::start_with_password(&format!("pw-{}", crate::random_hex(12)))
    }

    /// Starts an instance whose `lifeboat` role has `password`.
    pub fn start_with_password(password: &str) -> Pg {
        let dir = tempfile::Builder::new()
            .prefix("lifeboat-pg-")
            .tempdir_in("/tmp")
            .expect("create PostgreSQL dir");
        let root = dir.path().to_owned();
        std::fs::create_dir(root.join("sock")).expect("create socket dir");
        let chown = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&root)
            .status()
            .expect("run chown");
        assert!(chown.success(), "chown {} to postgres", root.display());

        let data = root.join("data");
        crate::fsutil::copy_tree(&template_data_dir(), &data);
        // Writing into the existing file keeps its owner (postgres).
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\n\
             host all all 127.0.0.1/32 scram-sha-256\n\
             host all all ::1/128 scram-sha-256\n",
        )
        .expect("write pg_hba.conf");

        let mut pg = Pg {
            dir: Some(dir),
            root,
            port: 0,
            password: password.to_owned(),
            stopped: true,
            also_listen: None,
            sock: None,
        };
        pg.launch();

        // The password goes through stdin, never argv (X37 scans every command line).
        let sql = format!(
            "CREATE ROLE {ROLE} LOGIN SUPERUSER PASSWORD '{}';",
            password.replace('\'', "''")
        );
        let out = pg.client_as(
            "postgres",
            "psql",
            &[
                "-d",
                "postgres",
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-f",
                "-",
            ],
            sql.as_bytes(),
        );
        check("create role", &out);
        pg
    }

    /// A directory for a data directory made by someone else (a physical restore): `ROOT`
    /// owned by the `postgres` OS user, with `ROOT/sock` and an empty `ROOT/data` (mode 0700,
    /// owned by `postgres`). Start a server on it with [`Pg::start_existing`].
    pub fn empty_root() -> tempfile::TempDir {
        let dir = tempfile::Builder::new()
            .prefix("lifeboat-pg-restored-")
            .tempdir_in("/tmp")
            .expect("create PostgreSQL dir");
        std::fs::create_dir(dir.path().join("sock")).expect("create socket dir");
        std::fs::create_dir(dir.path().join("data")).expect("create data dir");
        std::fs::set_permissions(
            dir.path().join("data"),
            std::fs::Permissions::from_mode(0o700),
        )
        .expect("chmod data dir");
        let chown = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status()
            .expect("run chown");
        assert!(
            chown.success(),
            "chown {} to postgres",
            dir.path().display()
        );
        dir
    }

    /// Starts a server on `ROOT/data` of a root from [`Pg::empty_root`] that something else
    /// filled (a restored base backup), on a free port. Its `lifeboat` role keeps the
    /// password it had on the source (`password`).
    pub fn start_existing(dir: tempfile::TempDir, password: &str) -> Pg {
        let root = dir.path().to_owned();
        let mut pg = Pg {
            dir: Some(dir),
            root,
            port: 0,
            password: password.to_owned(),
            stopped: true,
            also_listen: None,
            sock: None,
        };
        pg.launch();
        pg
    }

    /// A server something else started (`lifeboat restore --start-port`) on `ROOT/data` of a
    /// root from [`Pg::empty_root`], on `port` with its socket in `sock`; stopped on drop like
    /// any other.
    pub fn attach_running(dir: tempfile::TempDir, port: u16, password: &str, sock: &Path) -> Pg {
        let root = dir.path().to_owned();
        Pg {
            dir: Some(dir),
            root,
            port,
            password: password.to_owned(),
            stopped: false,
            also_listen: None,
            sock: Some(sock.to_owned()),
        }
    }

    /// Lets password logins open replication connections (pg_basebackup) from loopback and
    /// reloads the configuration.
    pub fn allow_replication(&self) {
        let hba = self.root.join("data").join("pg_hba.conf");
        let mut text = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
        text.push_str("host replication all 127.0.0.1/32 scram-sha-256\n");
        std::fs::write(&hba, text).expect("write pg_hba.conf");
        self.psql("postgres", "SELECT pg_reload_conf();");
    }

    /// `pg_ctl start` on `ROOT/data` with this instance's options, on a free port (retried
    /// when another process takes it first).
    fn launch(&mut self) {
        let data = self.root.join("data");
        // A free port can be taken between our probe and the server's bind: retry.
        let mut last = String::new();
        for _ in 0..5 {
            self.port = free_port();
            let opts = self.server_options();
            let log = self.root.join("postgres.log");
            let out = run_as_postgres(
                &self.root,
                "pg_ctl",
                &[
                    "-D",
                    data.to_str().expect("utf-8 path"),
                    "-l",
                    log.to_str().expect("utf-8 path"),
                    "-w",
                    "-t",
                    "120",
                    "-o",
                    &opts,
                    "start",
                ],
            );
            if out.status.success() {
                self.stopped = false;
                break;
            }
            last = format!(
                "{}{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            if !last.contains("could not bind") && !last.contains("already in use") {
                break;
            }
        }
        assert!(!self.stopped, "pg_ctl start failed:\n{last}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn sock_dir(&self) -> PathBuf {
        self.sock.clone().unwrap_or_else(|| self.root.join("sock"))
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    /// The URL an agent target uses (no password in it).
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{ROLE}@127.0.0.1:{}/{database}", self.port)
    }

    /// Writes the role's password to `path` with mode 0600.
    pub fn write_password_file(&self, path: &Path) {
        write_private(path, &self.password);
    }

    /// Runs a PostgreSQL client program as the `postgres` OS user over the socket, connected
    /// as the `lifeboat` role; `stdin` is fed to it. Returns the raw output.
    pub fn client(&self, program: &str, args: &[&str], stdin: &[u8]) -> Output {
        self.client_as(ROLE, program, args, stdin)
    }

    /// [`Pg::client`] connected as database role `role`.
    pub fn client_as(&self, role: &str, program: &str, args: &[&str], stdin: &[u8]) -> Output {
        let mut child = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(Path::new(PG_BIN).join(program))
            .arg("-h")
            .arg(self.sock_dir())
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-U")
            .arg(role)
            .args(args)
            .current_dir(&self.root)
            .env("PGCONNECT_TIMEOUT", "10")
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

    /// Runs SQL with psql in `db` (stops at the first error) and returns the unaligned,
    /// tuples-only output. Panics on failure.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = self.try_psql(db, sql);
        check(&format!("psql -d {db}"), &out);
        String::from_utf8(out.stdout).expect("psql output is UTF-8")
    }

    /// Like [`Pg::psql`] but returns the output for the caller to judge.
    pub fn try_psql(&self, db: &str, sql: &str) -> Output {
        self.client(
            "psql",
            &[
                "-d",
                db,
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-f",
                "-",
            ],
            sql.as_bytes(),
        )
    }

    /// One value from a query.
    pub fn query_one(&self, db: &str, sql: &str) -> String {
        self.psql(db, sql).trim().to_owned()
    }

    pub fn create_db(&self, name: &str) {
        self.psql(
            "postgres",
            &format!("CREATE DATABASE \"{}\";", name.replace('"', "\"\"")),
        );
    }

    /// Names of all databases, sorted.
    pub fn databases(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .psql("postgres", "SELECT datname FROM pg_database ORDER BY 1;")
            .lines()
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    }

    pub fn database_exists(&self, name: &str) -> bool {
        self.databases().iter().any(|d| d == name)
    }

    /// The server's log (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("postgres.log")).unwrap_or_default()
    }

    /// The server's command-line options (`pg_ctl -o`).
    fn server_options(&self) -> String {
        let listen = match self.also_listen {
            Some(ip) => format!("127.0.0.1,{ip}"),
            None => "127.0.0.1".to_owned(),
        };
        format!(
            "-p {} -k {} -c listen_addresses={listen} -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=32MB \
             -c max_connections=60 -c max_wal_size=256MB",
            self.port,
            self.sock_dir().display()
        )
    }

    /// Makes the server also listen on `ip` (password logins from that address), with TLS
    /// when `tls` holds a PEM certificate and key (ssl=on; plain connections are still
    /// accepted, as on a default server with ssl enabled), and restarts it.
    pub fn serve_on(&mut self, ip: std::net::IpAddr, tls: Option<(&str, &str)>) {
        let data = self.root.join("data");
        let hba = data.join("pg_hba.conf");
        let mut text = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
        text.push_str(&format!("host all all {ip}/32 scram-sha-256\n"));
        std::fs::write(&hba, text).expect("write pg_hba.conf");
        if let Some((cert, key)) = tls {
            let c = data.join("server.crt");
            let k = data.join("server.key");
            std::fs::write(&c, cert).expect("write server.crt");
            write_private(&k, key);
            let chown = Command::new("chown")
                .arg("postgres:postgres")
                .arg(&c)
                .arg(&k)
                .status()
                .expect("run chown");
            assert!(chown.success(), "chown server key");
            self.psql(
                "postgres",
                "ALTER SYSTEM SET ssl = on; ALTER SYSTEM SET ssl_cert_file = 'server.crt'; ALTER SYSTEM SET ssl_key_file = 'server.key';",
            );
        }
        self.also_listen = Some(ip);
        self.restart("fast");
    }

    /// `pg_ctl restart -m immediate`: every session dies at once, as in a crash or a
    /// failover, and the server comes back on the same port (D17). What was committed before
    /// survives: these servers run with `synchronous_commit=off`, whose last commits an
    /// immediate stop would lose (they may still sit in WAL buffers), so a CHECKPOINT writes
    /// them out first, as a durable server would have on commit.
    pub fn restart_immediate(&mut self) {
        self.psql("postgres", "CHECKPOINT");
        self.restart("immediate");
    }

    /// `pg_ctl restart -m MODE` with this instance's options.
    fn restart(&mut self, mode: &str) {
        let data = self.root.join("data");
        let log = self.root.join("postgres.log");
        let opts = self.server_options();
        let out = run_as_postgres(
            &self.root,
            "pg_ctl",
            &[
                "-D",
                data.to_str().expect("utf-8 path"),
                "-l",
                log.to_str().expect("utf-8 path"),
                "-m",
                mode,
                "-w",
                "-t",
                "120",
                "-o",
                &opts,
                "restart",
            ],
        );
        check("pg_ctl restart", &out);
        self.stopped = false;
    }

    /// `pg_ctl stop -m fast`.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        let data = self.root.join("data");
        let out = run_as_postgres(
            &self.root,
            "pg_ctl",
            &[
                "-D",
                data.to_str().expect("utf-8 path"),
                "-m",
                "fast",
                "-w",
                "-t",
                "60",
                "stop",
            ],
        );
        self.stopped = true;
        if !out.status.success() {
            eprintln!(
                "pg_ctl stop failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let start = log.len().saturating_sub(16 * 1024);
            let start = (start..log.len())
                .find(|i| log.is_char_boundary(*i))
                .unwrap_or(log.len());
            eprintln!(
                "----- postgres log ({}) -----\n{}",
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

/// Writes `contents` to `path` with mode 0600 (set before any byte is written).
pub fn write_private(path: &Path, contents: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    f.write_all(contents.as_bytes())
        .expect("write private file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
}

impl Pg {
    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// Turns WAL archiving on with `command` as `archive_command` (and `archive_timeout`
    /// off), and restarts the server.
    pub fn enable_archiving(&mut self, command: &str) {
        self.psql(
            "postgres",
            &format!(
                "ALTER SYSTEM SET archive_mode = on; ALTER SYSTEM SET archive_command = '{}';",
                command.replace('\'', "''")
            ),
        );
        self.restart("fast");
    }
}
