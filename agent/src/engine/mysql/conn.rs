//! Connecting: URL parameters, TLS modes, the sqlx connection, and the option file and
//! environment the client tools get (so no secret is ever on a command line).

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use lifeboat_common::secret::Secret;
use sqlx::{
    Connection,
    mysql::{MySqlConnectOptions, MySqlConnection, MySqlSslMode},
};

use super::{ClientFlavor, DEFAULT_PORT, DEFAULTS_FILE_PREFIX, SYSTEM_CA_BUNDLE};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// TLS for the connection, with the same names as MySQL's `--ssl-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    Disabled,
    Preferred,
    Required,
    VerifyCa,
    VerifyIdentity,
}

impl TlsMode {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().replace('-', "_").as_str() {
            "disabled" | "disable" => Self::Disabled,
            "preferred" | "prefer" => Self::Preferred,
            "required" | "require" => Self::Required,
            "verify_ca" => Self::VerifyCa,
            "verify_identity" | "verify_full" => Self::VerifyIdentity,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disabled => "DISABLED",
            Self::Preferred => "PREFERRED",
            Self::Required => "REQUIRED",
            Self::VerifyCa => "VERIFY_CA",
            Self::VerifyIdentity => "VERIFY_IDENTITY",
        }
    }

    /// The mode when the URL names none: `VERIFY_IDENTITY` (against `ssl-ca` or the system
    /// CA bundle) for any host that is not this machine, so that nobody in the path can
    /// downgrade or impersonate the server; `PREFERRED` over a socket or to loopback.
    pub fn default_for(host: &str, socket: bool, has_ca: bool) -> Self {
        if has_ca || !(socket || crate::dbhost::is_local_host(host)) {
            Self::VerifyIdentity
        } else {
            Self::Preferred
        }
    }

    /// Whether the connection fails rather than go unencrypted.
    pub fn requires_tls(self) -> bool {
        matches!(self, Self::Required | Self::VerifyCa | Self::VerifyIdentity)
    }

    pub fn verifies_certificate(self) -> bool {
        matches!(self, Self::VerifyCa | Self::VerifyIdentity)
    }

    fn sqlx(self) -> MySqlSslMode {
        match self {
            Self::Disabled => MySqlSslMode::Disabled,
            Self::Preferred => MySqlSslMode::Preferred,
            Self::Required => MySqlSslMode::Required,
            Self::VerifyCa => MySqlSslMode::VerifyCa,
            Self::VerifyIdentity => MySqlSslMode::VerifyIdentity,
        }
    }
}

/// Where and how to connect. Holds no password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnParams {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// The database named in the URL (the one backed up).
    pub database: String,
    /// A Unix socket instead of TCP (`?socket=/run/mysqld/mysqld.sock`).
    pub socket: Option<PathBuf>,
    pub tls: TlsMode,
    /// CA bundle to verify the server certificate with (`?ssl-ca=/path`).
    pub ssl_ca: Option<PathBuf>,
}

/// URL query parameters lifeboat understands. Anything else is refused: a typo must not
/// silently weaken TLS, and nothing may redirect the connection or carry a secret.
const URL_PARAMS: [&str; 4] = ["ssl-mode", "sslmode", "ssl-ca", "socket"];

impl ConnParams {
    /// Parses `mysql://USER@HOST[:PORT]/DATABASE[?ssl-mode=…&ssl-ca=…&socket=…]` (also
    /// `mariadb://`). A password in the URL is refused without echoing it.
    pub fn from_url(url: &url::Url) -> Result<Self> {
        if !matches!(url.scheme(), "mysql" | "mariadb") {
            bail!("the URL must start with mysql:// or mariadb://");
        }
        if url.password().is_some() {
            bail!("the URL contains a password; remove it and put it in password_file (chmod 600)");
        }
        let mut tls = None;
        let mut ssl_ca = None;
        let mut socket = None;
        for (k, v) in url.query_pairs() {
            match k.as_ref() {
                "ssl-mode" | "sslmode" => {
                    tls = Some(TlsMode::parse(&v).with_context(|| {
                        format!(
                            "unknown ssl-mode {v:?}; use disabled, preferred, required, verify_ca or verify_identity"
                        )
                    })?);
                }
                "ssl-ca" => ssl_ca = Some(PathBuf::from(v.as_ref())),
                "socket" => socket = Some(PathBuf::from(v.as_ref())),
                other => bail!(
                    "the URL parameter {other:?} is not supported; use only {}",
                    URL_PARAMS.join(", ")
                ),
            }
        }
        for p in [&ssl_ca, &socket].into_iter().flatten() {
            if !p.is_absolute() || p.components().any(|c| c == std::path::Component::ParentDir) {
                bail!("{} must be an absolute path without '..'", p.display());
            }
        }
        let user = percent_decode(url.username());
        if user.is_empty() {
            bail!("the URL names no user; use mysql://USER@HOST:PORT/DATABASE");
        }
        let database = percent_decode(url.path().trim_start_matches('/'));
        if database.is_empty() || database.contains('/') {
            bail!("the URL names no database; use mysql://USER@HOST:PORT/DATABASE");
        }
        let host = url
            .host_str()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        let tls =
            tls.unwrap_or_else(|| TlsMode::default_for(&host, socket.is_some(), ssl_ca.is_some()));
        Ok(Self {
            host,
            port: url.port().unwrap_or(DEFAULT_PORT),
            user,
            database,
            socket,
            tls,
            ssl_ca,
        })
    }

    /// `user@host:port/database` for messages. Never includes a password.
    pub fn describe(&self, database: &str) -> String {
        match &self.socket {
            Some(s) => format!("{}@{}/{database}", self.user, s.display()),
            None => format!("{}@{}:{}/{database}", self.user, self.host, self.port),
        }
    }

    /// The CA file to verify with: the configured one, else the system bundle.
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.ssl_ca.clone().or_else(|| {
            let p = Path::new(SYSTEM_CA_BUNDLE);
            (self.tls.verifies_certificate() && p.is_file()).then(|| p.to_owned())
        })
    }
}

/// Decodes `%XX` escapes (URL user names and database names); invalid escapes stay as they are.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Connects with sqlx, to `database` (or none). The session gets utf8mb4 and no other
/// changes (no sql_mode or time zone tweaks: objects re-created through it keep theirs).
pub async fn connect(
    params: &ConnParams,
    password: Option<&Secret<String>>,
    database: Option<&str>,
) -> Result<MySqlConnection> {
    let mut opts = MySqlConnectOptions::new()
        .username(&params.user)
        .ssl_mode(params.tls.sqlx())
        .charset("utf8mb4")
        .pipes_as_concat(false)
        .no_engine_substitution(false)
        .timezone(None)
        .statement_cache_capacity(0);
    opts = match &params.socket {
        Some(s) => opts.socket(s),
        None => opts.host(&params.host).port(params.port),
    };
    if let Some(ca) = params.ca_file()
        && params.tls.verifies_certificate()
    {
        opts = opts.ssl_ca(ca);
    }
    if let Some(p) = password {
        opts = opts.password(p.expose());
    }
    if let Some(db) = database {
        opts = opts.database(db);
    }
    let where_ = params.describe(database.unwrap_or(""));
    match tokio::time::timeout(CONNECT_TIMEOUT, MySqlConnection::connect_with(&opts)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => match crate::dbhost::mysql_tls_hint(&e.to_string()) {
            Some(hint) => Err(anyhow::Error::new(e).context(format!(
                "cannot connect to MySQL/MariaDB at {where_} (ssl-mode {}): {hint}",
                params.tls.as_str()
            ))),
            None => bail!(
                "cannot connect to MySQL/MariaDB at {where_} (ssl-mode {}): {e}; check that the server is up, the URL, the TLS settings and the password file",
                params.tls.as_str()
            ),
        },
        Err(_) => bail!(
            "cannot connect to MySQL/MariaDB at {where_}: no answer within {}s; check the host, port and firewall",
            CONNECT_TIMEOUT.as_secs()
        ),
    }
}

/// A 0600 option file for one child process, removed on drop. It carries the user, password,
/// host, port and TLS settings so that none of them is on the command line.
#[derive(Debug)]
pub struct DefaultsFile {
    file: tempfile::TempPath,
}

impl DefaultsFile {
    pub fn create(
        state_dir: &Path,
        params: &ConnParams,
        password: Option<&Secret<String>>,
        client: ClientFlavor,
    ) -> Result<Self> {
        use std::io::Write;
        std::fs::create_dir_all(state_dir)
            .with_context(|| format!("create state_dir {}", state_dir.display()))?;
        let mut f = tempfile::Builder::new()
            .prefix(DEFAULTS_FILE_PREFIX)
            .suffix(".cnf")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .tempfile_in(state_dir)
            .with_context(|| format!("create an option file in {}", state_dir.display()))?;
        let text = render_defaults(params, password, client);
        f.write_all(text.expose().as_bytes())
            .and_then(|()| f.flush())
            .context("write option file")?;
        Ok(Self {
            file: f.into_temp_path(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.file
    }

    /// `--defaults-extra-file=PATH`: must be the first argument of the tool.
    pub fn arg(&self) -> OsString {
        let mut a = OsString::from("--defaults-extra-file=");
        a.push(self.file.as_os_str());
        a
    }
}

/// Quotes an option-file value: double quotes, with `\` `"` and control characters escaped
/// (the option-file parser understands `\\ \" \n \r \t \b`); `#` and spaces are safe inside
/// the quotes.
pub fn quote_option_value(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            '\u{8}' => s.push_str("\\b"),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// The option file's text. The `[client]` group is read by every client program.
pub fn render_defaults(
    params: &ConnParams,
    password: Option<&Secret<String>>,
    client: ClientFlavor,
) -> Secret<String> {
    let mut s =
        String::from("# written by lifeboat-agent for one command; removed after it\n[client]\n");
    s.push_str(&format!("user={}\n", quote_option_value(&params.user)));
    if let Some(p) = password {
        s.push_str(&format!("password={}\n", quote_option_value(p.expose())));
    }
    match &params.socket {
        Some(sock) => {
            s.push_str("protocol=SOCKET\n");
            s.push_str(&format!(
                "socket={}\n",
                quote_option_value(&sock.to_string_lossy())
            ));
        }
        None => {
            s.push_str("protocol=TCP\n");
            s.push_str(&format!("host={}\n", quote_option_value(&params.host)));
            s.push_str(&format!("port={}\n", params.port));
        }
    }
    let ca = params.ca_file();
    match client {
        ClientFlavor::MySql => {
            s.push_str(&format!("ssl-mode={}\n", params.tls.as_str()));
            if let Some(ca) = &ca
                && params.tls != TlsMode::Disabled
            {
                s.push_str(&format!(
                    "ssl-ca={}\n",
                    quote_option_value(&ca.to_string_lossy())
                ));
            }
        }
        ClientFlavor::MariaDb => match params.tls {
            TlsMode::Disabled => s.push_str("skip-ssl\n"),
            TlsMode::Preferred => {}
            TlsMode::Required | TlsMode::VerifyCa | TlsMode::VerifyIdentity => {
                s.push_str("ssl\n");
                if let Some(ca) = &ca {
                    s.push_str(&format!(
                        "ssl-ca={}\n",
                        quote_option_value(&ca.to_string_lossy())
                    ));
                }
                // Explicit both ways: MariaDB 11.4+ clients verify by default, 10.x do not.
                if params.tls.verifies_certificate() {
                    s.push_str("ssl-verify-server-cert\n");
                } else {
                    s.push_str("skip-ssl-verify-server-cert\n");
                }
            }
        },
    }
    Secret::new(s)
}

/// A command for a MySQL/MariaDB client program: no inherited `MYSQL_*`/`MARIADB_*` variables
/// (`MYSQL_PWD`, `MYSQL_HOST` would redirect it), `HOME` pointed at the state dir so no
/// `~/.my.cnf` or `~/.mylogin.cnf` overrides the option file, stdin closed, killed on drop.
///
/// Only allow-listed variables are inherited ([`crate::process::tool_command`]): no cloud
/// credentials, and no `LIBMYSQL_ENABLE_CLEARTEXT_PLUGIN` (which would send the password in
/// clear).
pub fn child_command(program: &Path, state_dir: &Path) -> tokio::process::Command {
    let mut cmd = crate::process::tool_command(program);
    cmd.env("HOME", state_dir)
        .env("MYSQL_HISTFILE", "/dev/null")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}
