//! MySQL/MariaDB accounts and their grants as lifeboat stores and restores them: for each
//! account, `CREATE ROLE` (MariaDB roles) or `SHOW CREATE USER`, then its `SHOW GRANTS`. Pure
//! text work, no I/O: statements are tokenized and classified here, [`strip_credentials`]
//! takes the password hashes out at capture, and [`plan`] decides what a restore runs on a
//! given server (skip what exists, refuse system, provider and admin accounts) and why.
//!
//! MySQL DDL is not transactional: a restore creates every account first, then applies the
//! grants, and drops the accounts it created if anything fails, so a failed run leaves the
//! server as it was and a second run starts from the same place.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::provider::Provider;

use super::quote_ident;

/// The comment a capture puts where it left a password out.
pub const PASSWORD_LEFT_OUT: &str = "/* lifeboat: password left out */";

/// An account: `user@host`, or a MariaDB role (no host).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Account {
    pub user: String,
    pub host: Option<String>,
}

impl Account {
    pub fn user(user: &str, host: &str) -> Self {
        Self {
            user: user.to_owned(),
            host: Some(host.to_owned()),
        }
    }

    pub fn role(name: &str) -> Self {
        Self {
            user: name.to_owned(),
            host: None,
        }
    }

    /// The account as SQL names it: `` `user`@`host` `` or `` `role` ``.
    pub fn sql(&self) -> String {
        match &self.host {
            Some(h) => format!("{}@{}", quote_ident(&self.user), quote_ident(h)),
            None => quote_ident(&self.user),
        }
    }
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Some(h) => write!(f, "'{}'@'{}'", self.user, h),
            None => f.write_str(&self.user),
        }
    }
}

/// One SQL token of MySQL's dialect.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    /// A backticked identifier, unescaped.
    Ident(String),
    /// A string literal, unescaped.
    Str(String),
    /// A `/* … */` comment, as written.
    Comment(String),
    Sym(char),
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    start: usize,
    end: usize,
}

impl Token {
    fn is_kw(&self, kw: &str) -> bool {
        matches!(&self.tok, Tok::Word(w) if w.eq_ignore_ascii_case(kw))
    }

    fn is_sym(&self, c: char) -> bool {
        self.tok == Tok::Sym(c)
    }

    /// A name: an identifier, a string or a bare word.
    fn name(&self) -> Option<String> {
        match &self.tok {
            Tok::Word(w) | Tok::Ident(w) | Tok::Str(w) => Some(w.clone()),
            _ => None,
        }
    }
}

/// Where a quoted run opening at `i` with `q` ends (just past its closing quote); `''`-style
/// doubling and (outside backticks) backslash escapes are respected.
fn quoted_end(b: &[u8], i: usize, q: u8) -> usize {
    let mut j = i + 1;
    while j < b.len() {
        if b[j] == b'\\' && q != b'`' {
            j += 2;
            continue;
        }
        if b[j] == q {
            if b.get(j + 1) == Some(&q) {
                j += 2;
                continue;
            }
            return j + 1;
        }
        j += 1;
    }
    b.len()
}

fn unquote(inner: &str, q: char) -> String {
    let doubled = format!("{q}{q}");
    let s = inner.replace(&doubled, &q.to_string());
    if q == '`' {
        return s;
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('0') => out.push('\0'),
                Some(o) => out.push(o),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn tokenize(s: &str) -> Vec<Token> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'#' || (c == b'-' && b.get(i + 1) == Some(&b'-')) {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let start = i;
        let tok = if c == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                i += 1;
            }
            i = (i + 2).min(b.len());
            Tok::Comment(s[start..i].to_owned())
        } else if matches!(c, b'`' | b'\'' | b'"') {
            i = quoted_end(b, i, c);
            let inner = &s[start + 1..i.saturating_sub(1).max(start + 1)];
            if c == b'`' {
                Tok::Ident(unquote(inner, '`'))
            } else {
                Tok::Str(unquote(inner, c as char))
            }
        } else if c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80 {
            while i < b.len()
                && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'$' || b[i] >= 0x80)
            {
                i += 1;
            }
            Tok::Word(s[start..i].to_owned())
        } else {
            let ch = s[i..].chars().next().unwrap_or(' ');
            i += ch.len_utf8();
            Tok::Sym(ch)
        };
        out.push(Token { tok, start, end: i });
    }
    out
}

/// Splits SQL text into statements (each ending in `;`), leaving out blank text and
/// comment-only lines. Quotes are respected.
pub fn split(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut from = 0;
    let mut last_end = 0;
    let mut has_code = false;
    for t in tokenize(sql) {
        if t.is_sym(';') {
            if has_code {
                out.push(format!("{};", sql[from..t.start].trim()));
            }
            from = t.end;
            has_code = false;
        } else {
            if !has_code {
                from = t.start;
            }
            has_code = true;
        }
        last_end = t.end;
    }
    if has_code {
        out.push(sql[from..last_end].trim().to_owned());
    }
    out
}

/// Reads an account at `t[i]`: `name`, `name@host`; how many tokens it took.
fn account_at(t: &[Token], i: usize) -> Option<(Account, usize)> {
    let user = t.get(i)?.name()?;
    if t.get(i + 1).is_some_and(|x| x.is_sym('@')) {
        let host = t.get(i + 2)?.name()?;
        return Some((
            Account {
                user,
                host: Some(host),
            },
            3,
        ));
    }
    Some((Account { user, host: None }, 1))
}

/// What a grant is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantOn {
    /// `*.*`
    Global,
    /// `` `db`.* ``; `at` is the byte range of the database's name.
    Database { name: String, at: (usize, usize) },
    /// A table, its columns or a routine in `database`.
    Object {
        database: String,
        name: String,
        at: (usize, usize),
    },
    /// `GRANT role TO account`.
    Role(Account),
    /// `GRANT PROXY ON …`.
    Proxy,
    /// Anything lifeboat does not recognise (applied as written).
    Other,
}

/// One `GRANT` of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub grantee: Account,
    pub on: GrantOn,
    pub text: String,
    /// Why this grant makes its account an administrator of the server, if it does.
    pub admin: Option<String>,
}

impl Grant {
    /// The grant's database, if it is on one database or an object in it.
    pub fn database(&self) -> Option<&str> {
        match &self.on {
            GrantOn::Database { name, .. } => Some(name),
            GrantOn::Object { database, .. } => Some(database),
            _ => None,
        }
    }

    /// The grant's text with its database replaced by `database`.
    pub fn for_database(&self, database: &str) -> String {
        match &self.on {
            GrantOn::Database { at, .. } | GrantOn::Object { at, .. } => format!(
                "{}{}{}",
                &self.text[..at.0],
                quote_ident(database),
                &self.text[at.1..]
            ),
            _ => self.text.clone(),
        }
    }
}

/// What one statement of a globals object is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stmt {
    /// `CREATE USER account …`.
    CreateUser {
        account: Account,
        text: String,
        /// The statement holds a credential (a password hash or plugin secret).
        password: bool,
        /// The capture left its password out (and locked the account).
        password_left_out: bool,
    },
    /// `CREATE ROLE role` (MariaDB).
    CreateRole {
        account: Account,
        text: String,
    },
    Grant(Grant),
    /// `SET DEFAULT ROLE role FOR account` (MariaDB).
    DefaultRole {
        account: Account,
        role: Account,
        text: String,
    },
    /// Anything else: not run by a restore.
    Other(String),
}

/// Privileges that, granted on `*.*`, make an account an administrator of the server.
fn is_admin_privilege(p: &str) -> bool {
    matches!(
        p,
        "ALL"
            | "ALL PRIVILEGES"
            | "SUPER"
            | "CREATE USER"
            | "FILE"
            | "SHUTDOWN"
            | "GRANT OPTION"
            | "SYSTEM_USER"
            | "SET USER"
            | "PROCESS"
            | "RELOAD"
    ) || p.contains("ADMIN")
}

/// The privileges of `GRANT p1, p2 (cols), … ON`, upper-cased, column lists left out.
fn privileges(t: &[Token], text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Vec<&str> = Vec::new();
    let mut depth = 0usize;
    for x in t {
        match &x.tok {
            Tok::Sym('(') => depth += 1,
            Tok::Sym(')') => depth = depth.saturating_sub(1),
            Tok::Sym(',') if depth == 0 => {
                out.push(cur.join(" ").to_ascii_uppercase());
                cur.clear();
            }
            Tok::Word(_) if depth == 0 => cur.push(&text[x.start..x.end]),
            _ => {}
        }
    }
    if !cur.is_empty() {
        out.push(cur.join(" ").to_ascii_uppercase());
    }
    out
}

fn classify_grant(text: &str, t: &[Token]) -> Stmt {
    let other = || Stmt::Other(text.to_owned());
    let mut depth = 0usize;
    let mut on = None;
    let mut to = None;
    for (i, x) in t.iter().enumerate() {
        match x.tok {
            Tok::Sym('(') => depth += 1,
            Tok::Sym(')') => depth = depth.saturating_sub(1),
            _ if depth > 0 => {}
            _ if x.is_kw("ON") && on.is_none() && to.is_none() => on = Some(i),
            _ if x.is_kw("TO") && to.is_none() => to = Some(i),
            _ => {}
        }
    }
    let Some(to) = to else { return other() };
    let Some((grantee, _)) = account_at(t, to + 1) else {
        return other();
    };
    let Some(on_at) = on else {
        // GRANT role TO account [WITH ADMIN OPTION]
        return match account_at(t, 1) {
            Some((role, n)) if 1 + n == to => Stmt::Grant(Grant {
                grantee,
                on: GrantOn::Role(role),
                text: text.to_owned(),
                admin: None,
            }),
            _ => other(),
        };
    };
    let privs = privileges(&t[1..on_at], text);
    let with_grant = t[to..]
        .windows(3)
        .any(|w| w[0].is_kw("WITH") && w[1].is_kw("GRANT") && w[2].is_kw("OPTION"));
    let mut k = on_at + 1;
    while t.get(k).is_some_and(|x| {
        ["TABLE", "PROCEDURE", "FUNCTION", "PACKAGE", "BODY"]
            .iter()
            .any(|w| x.is_kw(w))
    }) {
        k += 1;
    }
    let target = &t[k..to];
    let on = if privs.first().is_some_and(|p| p == "PROXY") {
        GrantOn::Proxy
    } else {
        match target {
            [a, d, b] if a.is_sym('*') && d.is_sym('.') && b.is_sym('*') => GrantOn::Global,
            [db, d, b] if d.is_sym('.') && b.is_sym('*') && db.name().is_some() => {
                GrantOn::Database {
                    name: db.name().unwrap_or_default(),
                    at: (db.start, db.end),
                }
            }
            [db, d, obj] if d.is_sym('.') && db.name().is_some() && obj.name().is_some() => {
                GrantOn::Object {
                    database: db.name().unwrap_or_default(),
                    name: obj.name().unwrap_or_default(),
                    at: (db.start, db.end),
                }
            }
            _ => GrantOn::Other,
        }
    };
    let admin = match &on {
        GrantOn::Proxy => Some("a PROXY grant (it may act as other accounts)".to_owned()),
        GrantOn::Global => {
            let mut found: Vec<String> = privs
                .iter()
                .filter(|p| is_admin_privilege(p))
                .cloned()
                .collect();
            if with_grant {
                found.push("WITH GRANT OPTION".into());
            }
            (!found.is_empty()).then(|| format!("{} ON *.*", found.join(", ")))
        }
        GrantOn::Database { name, .. } | GrantOn::Object { database: name, .. }
            if name.eq_ignore_ascii_case("mysql") && privs.iter().any(|p| p != "SELECT") =>
        {
            Some("write access to the mysql system database".to_owned())
        }
        _ => None,
    };
    Stmt::Grant(Grant {
        grantee,
        on,
        text: text.to_owned(),
        admin,
    })
}

/// Classifies one statement.
pub fn classify(text: &str) -> Stmt {
    let t = tokenize(text);
    let kw = |i: usize, k: &str| t.get(i).is_some_and(|x| x.is_kw(k));
    let other = || Stmt::Other(text.to_owned());
    if kw(0, "CREATE") && kw(1, "USER") {
        let Some((account, _)) = account_at(&t, 2) else {
            return other();
        };
        let password = identified(&t).is_some_and(|(a, b)| {
            let clause = &t[a + 1..b];
            alternatives(clause)
                .iter()
                .any(|(x, y)| alternative_has_secret(&clause[*x..*y]))
        });
        let password_left_out = t
            .iter()
            .any(|x| matches!(&x.tok, Tok::Comment(c) if c == PASSWORD_LEFT_OUT));
        return Stmt::CreateUser {
            account,
            text: text.to_owned(),
            password,
            password_left_out,
        };
    }
    if kw(0, "CREATE") && kw(1, "ROLE") {
        return match account_at(&t, 2) {
            Some((account, _)) => Stmt::CreateRole {
                account,
                text: text.to_owned(),
            },
            None => other(),
        };
    }
    if kw(0, "GRANT") {
        return classify_grant(text, &t);
    }
    if kw(0, "SET") && kw(1, "DEFAULT") && kw(2, "ROLE") {
        let Some((role, n)) = account_at(&t, 3) else {
            return other();
        };
        if !kw(3 + n, "FOR") {
            return other();
        }
        return match account_at(&t, 4 + n) {
            Some((account, _)) => Stmt::DefaultRole {
                account,
                role,
                text: text.to_owned(),
            },
            None => other(),
        };
    }
    other()
}

/// Parses a globals object's text.
pub fn parse(sql: &str) -> Vec<Stmt> {
    split(sql).iter().map(|s| classify(s)).collect()
}

/// Accounts (users and roles) and role grants an object holds: the manifest's `roles` and
/// `memberships`.
pub fn counts(stmts: &[Stmt]) -> (u32, u32) {
    let n = |f: fn(&Stmt) -> bool| {
        u32::try_from(stmts.iter().filter(|s| f(s)).count()).unwrap_or(u32::MAX)
    };
    (
        n(|s| matches!(s, Stmt::CreateUser { .. } | Stmt::CreateRole { .. })),
        n(|s| {
            matches!(
                s,
                Stmt::Grant(Grant {
                    on: GrantOn::Role(_),
                    ..
                })
            )
        }),
    )
}

/// Words that start the clause after an `IDENTIFIED …` one.
const AFTER_IDENTIFIED: [&str; 9] = [
    "REQUIRE",
    "WITH",
    "PASSWORD",
    "ACCOUNT",
    "DEFAULT",
    "COMMENT",
    "ATTRIBUTE",
    "FAILED_LOGIN_ATTEMPTS",
    "PASSWORD_LOCK_TIME",
];

/// The token range `[IDENTIFIED, end)` of the authentication clause.
fn identified(t: &[Token]) -> Option<(usize, usize)> {
    let a = t.iter().position(|x| x.is_kw("IDENTIFIED"))?;
    // `IDENTIFIED WITH plugin` / `IDENTIFIED BY PASSWORD '…'`: the word after IDENTIFIED
    // and after BY, OR and AND belongs to the clause.
    let mut i = a + 2;
    while let Some(x) = t.get(i) {
        let continues = ["BY", "OR", "AND"].iter().any(|k| t[i - 1].is_kw(k));
        if x.is_sym(';') || (!continues && AFTER_IDENTIFIED.iter().any(|k| x.is_kw(k))) {
            break;
        }
        i += 1;
    }
    Some((a, i))
}

/// `[start, end)` ranges of the alternatives of an authentication clause (`… OR …`).
fn alternatives(t: &[Token]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut from = 0;
    for (i, x) in t.iter().enumerate() {
        if x.is_kw("OR") || x.is_kw("AND") {
            out.push((from, i));
            from = i + 1;
        }
    }
    out.push((from, t.len()));
    out
}

/// Plugins whose `USING`/`AS` string is configuration (a service or principal name), not a
/// secret.
const NO_SECRET_PLUGINS: [&str; 10] = [
    "unix_socket",
    "auth_socket",
    "pam",
    "authentication_pam",
    "gssapi",
    "named_pipe",
    "authentication_windows",
    "authentication_kerberos",
    "authentication_ldap_simple",
    "authentication_ldap_sasl",
];

/// Whether one alternative (`BY …`, `VIA plugin USING '…'`, `WITH plugin AS '…'`) carries
/// a password or a password hash.
fn alternative_has_secret(t: &[Token]) -> bool {
    match t.first() {
        Some(x) if x.is_kw("BY") => true,
        Some(x) if x.is_kw("VIA") || x.is_kw("WITH") => {
            let plugin = t.get(1).and_then(Token::name).unwrap_or_default();
            let has_value = t.iter().skip(2).any(|x| {
                matches!(x.tok, Tok::Str(_))
                    || matches!(&x.tok, Tok::Word(w) if w.starts_with("0x"))
            });
            has_value
                && !NO_SECRET_PLUGINS
                    .iter()
                    .any(|p| plugin.eq_ignore_ascii_case(p))
        }
        _ => false,
    }
}

/// A `CREATE USER` (from `SHOW CREATE USER`) without its passwords: the alternatives of the
/// authentication clause that hold a secret are left out. When nothing that can
/// authenticate is left, the account is locked (`ACCOUNT LOCK`): an account without a
/// password would let anyone in. A comment marks where the password was. `None`: nothing to
/// leave out.
pub fn strip_credentials(create_user: &str) -> Option<String> {
    let t = tokenize(create_user);
    let (a, b) = identified(&t)?;
    let alts = alternatives(&t[a + 1..b]);
    let has_and = t[a + 1..b].iter().any(|x| x.is_kw("AND"));
    let secret: Vec<bool> = alts
        .iter()
        .map(|(x, y)| alternative_has_secret(&t[a + 1 + x..a + 1 + y]))
        .collect();
    if !secret.contains(&true) {
        return None;
    }
    let kept: Vec<&str> = if has_and {
        Vec::new()
    } else {
        alts.iter()
            .zip(&secret)
            .filter(|(_, s)| !**s)
            .filter(|((x, y), _)| y > x)
            .map(|((x, y), _)| &create_user[t[a + 1 + x].start..t[a + 1 + y - 1].end])
            .collect()
    };
    let head = create_user[..t[a].start].trim_end();
    let tail = t.get(b).map_or("", |x| &create_user[x.start..]);
    let mut out = if kept.is_empty() {
        format!("{head} {PASSWORD_LEFT_OUT}")
    } else {
        format!(
            "{head} IDENTIFIED {} {PASSWORD_LEFT_OUT}",
            kept.join(" OR ")
        )
    };
    let rest = if kept.is_empty() {
        lock(tail)
    } else {
        tail.to_owned()
    };
    if !rest.is_empty() {
        out.push(' ');
        out.push_str(&rest);
    }
    Some(out)
}

/// The option clauses of a `CREATE USER` (no final `;`) with the account locked.
fn lock(options: &str) -> String {
    let t = tokenize(options);
    if let Some(w) = t.windows(2).find(|w| w[0].is_kw("ACCOUNT")) {
        if w[1].is_kw("LOCK") {
            return options.to_owned();
        }
        if w[1].is_kw("UNLOCK") {
            return format!("{}LOCK{}", &options[..w[1].start], &options[w[1].end..]);
        }
    }
    let at = t.iter().find(|x| {
        [
            "PASSWORD",
            "COMMENT",
            "ATTRIBUTE",
            "FAILED_LOGIN_ATTEMPTS",
            "PASSWORD_LOCK_TIME",
        ]
        .iter()
        .any(|k| x.is_kw(k))
    });
    match at {
        Some(x) => format!(
            "{}ACCOUNT LOCK {}",
            &options[..x.start],
            &options[x.start..]
        ),
        None if options.trim().is_empty() => "ACCOUNT LOCK".to_owned(),
        None => format!("{} ACCOUNT LOCK", options.trim_end()),
    }
}

/// A `GRANT` from `SHOW GRANTS` without the `IDENTIFIED …` clause older servers print in it
/// (the account's `CREATE USER` carries its authentication).
pub fn strip_grant_identified(grant: &str) -> String {
    let t = tokenize(grant);
    let Some((a, b)) = identified(&t) else {
        return grant.to_owned();
    };
    let head = grant[..t[a].start].trim_end();
    match t.get(b) {
        Some(x) => format!("{head} {}", &grant[x.start..]),
        None => head.to_owned(),
    }
}

/// Accounts of the engine itself: never captured, never created.
pub fn system_account(user: &str) -> bool {
    user.is_empty()
        || matches!(
            user,
            "root"
                | "mariadb.sys"
                | "mysql.sys"
                | "mysql.session"
                | "mysql.infoschema"
                | "PUBLIC"
                | "debian-sys-maint"
        )
}

/// Why an account of the backup is not created on this server, if it is not: the engine's
/// own accounts and the provider's.
pub fn reserved_account(user: &str, provider: Provider) -> Option<&'static str> {
    if system_account(user) {
        return Some("a system account of MySQL/MariaDB");
    }
    if provider == Provider::Planetscale
        && (user.starts_with("vt_") || user.starts_with("planetscale"))
    {
        return Some("reserved by the provider");
    }
    None
}

/// What a restore does with an account (or a grant) on one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    Create,
    /// Exists on the server: left exactly as it is.
    Exists,
    /// Not created, and why.
    Refused(String),
}

/// The server a globals restore runs on, as [`plan`] needs it.
#[derive(Debug, Clone, Default)]
pub struct Server {
    pub provider: Option<Provider>,
    /// Accounts and roles (a role has no host).
    pub accounts: BTreeSet<Account>,
    /// Tables, views and routines that exist: (database, name).
    pub objects: BTreeSet<(String, String)>,
    /// The operator passed `--allow-superuser` (never on a managed provider).
    pub allow_superuser: bool,
    /// A restore `--with-globals` of this database: its grants wait until it is restored
    /// (and are applied to the name it is restored under).
    pub deferred_database: Option<String>,
}

/// One account of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedAccount {
    pub account: Account,
    pub is_role: bool,
    pub fate: Fate,
    /// Created without the password it had (and locked, unless it can authenticate by other
    /// means).
    pub password_left_out: bool,
}

/// The decided restore of a globals object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub accounts: Vec<PlannedAccount>,
    /// (role, grantee) of the created accounts' role grants, and whether they are made.
    pub role_grants: Vec<((Account, Account), Fate)>,
    /// Grants on tables or routines that do not exist here: (grantee, `db.name`).
    pub missing_objects: Vec<(Account, String)>,
    /// Grants on the deferred database, applied after it is restored.
    pub deferred: Vec<Grant>,
    /// `CREATE ROLE` then `CREATE USER`, run first, each with its account.
    pub creates: Vec<(Account, bool, String)>,
    /// Then the grants and default roles of the created accounts, each with its grantee.
    pub grants: Vec<(Account, String)>,
    /// A created account gets a password hash from the backup.
    pub passwords: bool,
}

impl Plan {
    pub fn created(&self) -> impl Iterator<Item = &PlannedAccount> {
        self.accounts.iter().filter(|a| a.fate == Fate::Create)
    }
}

/// Decides, for each account of `stmts`, whether it is created, exists, or is refused, and
/// the statements that do it. An account that exists is never altered (not even granted
/// anything); an account is refused when its name is reserved or it holds administrator
/// privileges (unless the operator allowed it, and never on a managed provider). A created
/// account's grants are applied except those on objects that do not exist here, and role
/// grants of roles that are neither created nor present.
pub fn plan(stmts: &[Stmt], server: &Server) -> Plan {
    let provider = server.provider.unwrap_or(Provider::Mysql);
    let mut admin: BTreeMap<&Account, &str> = BTreeMap::new();
    for s in stmts {
        if let Stmt::Grant(Grant {
            grantee,
            admin: Some(why),
            ..
        }) = s
        {
            admin.entry(grantee).or_insert(why);
        }
    }
    let mut p = Plan::default();
    let mut fates: BTreeMap<&Account, Fate> = BTreeMap::new();
    // Roles first: a user's DEFAULT ROLE and role grants name them.
    let roles = stmts
        .iter()
        .filter(|s| matches!(s, Stmt::CreateRole { .. }));
    let users = stmts
        .iter()
        .filter(|s| matches!(s, Stmt::CreateUser { .. }));
    for s in roles.chain(users) {
        let (account, text, is_role, password, left_out) = match s {
            Stmt::CreateRole { account, text } => (account, text, true, false, false),
            Stmt::CreateUser {
                account,
                text,
                password,
                password_left_out,
            } => (account, text, false, *password, *password_left_out),
            _ => continue,
        };
        if fates.contains_key(account) {
            continue;
        }
        let fate = if server.accounts.contains(account) {
            Fate::Exists
        } else if let Some(why) = reserved_account(&account.user, provider) {
            Fate::Refused(why.to_owned())
        } else if provider == Provider::Planetscale {
            Fate::Refused(
                "PlanetScale manages accounts through its dashboard and API; create it there"
                    .to_owned(),
            )
        } else if let Some(why) = admin.get(account) {
            if provider.is_managed() {
                Fate::Refused(format!(
                    "administrator privileges ({why}), which {provider} does not allow"
                ))
            } else if server.allow_superuser {
                Fate::Create
            } else {
                Fate::Refused(format!(
                    "administrator privileges ({why}); create it by hand, or pass --allow-superuser (admin role) to create it"
                ))
            }
        } else {
            Fate::Create
        };
        if fate == Fate::Create {
            p.creates.push((account.clone(), is_role, text.clone()));
            p.passwords |= password;
        }
        fates.insert(account, fate.clone());
        p.accounts.push(PlannedAccount {
            account: account.clone(),
            is_role,
            fate,
            password_left_out: left_out,
        });
    }
    let created = |a: &Account| fates.get(a) == Some(&Fate::Create);
    let present = |a: &Account| created(a) || server.accounts.contains(a);
    let mut defaults = Vec::new();
    for s in stmts {
        match s {
            Stmt::Grant(g) if created(&g.grantee) => match &g.on {
                GrantOn::Role(role) => {
                    let pair = (role.clone(), g.grantee.clone());
                    let fate = if present(role) {
                        p.grants.push((g.grantee.clone(), g.text.clone()));
                        Fate::Create
                    } else {
                        Fate::Refused(format!("role {role} is not created"))
                    };
                    p.role_grants.push((pair, fate));
                }
                GrantOn::Database { .. } | GrantOn::Object { .. }
                    if server.deferred_database.as_deref() == g.database() =>
                {
                    p.deferred.push(g.clone());
                }
                GrantOn::Object { database, name, .. }
                    if !server.objects.contains(&(database.clone(), name.clone())) =>
                {
                    p.missing_objects
                        .push((g.grantee.clone(), format!("{database}.{name}")));
                }
                _ => p.grants.push((g.grantee.clone(), g.text.clone())),
            },
            Stmt::DefaultRole {
                account,
                role,
                text,
            } if created(account) && present(role) => {
                defaults.push((account.clone(), text.clone()));
            }
            _ => {}
        }
    }
    p.grants.extend(defaults);
    p
}

#[cfg(test)]
mod tests;
