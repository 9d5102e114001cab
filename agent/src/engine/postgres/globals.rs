//! A PostgreSQL cluster's globals as lifeboat stores and restores them: `pg_dumpall
//! --globals-only` (roles, memberships, role settings, tablespaces) followed by the settings,
//! owner and grants of the backed-up database. Pure text work, no I/O: the statements are
//! split and classified here, and [`plan`] decides which of them a restore runs on a given
//! server (skip what exists, refuse reserved and SUPERUSER roles) and why.

use std::collections::BTreeSet;

use crate::provider::Provider;

/// The header of the section lifeboat appends for the backed-up database.
pub const DATABASE_SECTION: &str =
    "--\n-- lifeboat: settings, owner and privileges of the backed-up database\n--\n";

/// One SQL token: its kind and where it is in the statement.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// A bare word, as written (keywords and unquoted identifiers).
    Word(String),
    /// A double-quoted identifier, unescaped.
    Quoted(String),
    /// A string literal (its text as written).
    Str,
    /// Anything else: punctuation, numbers, operators.
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

    /// An identifier's name as PostgreSQL folds it.
    fn ident(&self) -> Option<String> {
        match &self.tok {
            Tok::Word(w) => Some(w.to_lowercase()),
            Tok::Quoted(q) => Some(q.clone()),
            _ => None,
        }
    }
}

/// Splits SQL text into statements (each with its `;`), leaving out comments and blank text.
/// Quotes (`'…'`, `E'…'`, `"…"`, `$tag$…$tag$`) are respected; a statement without a final
/// `;` is kept as it is.
pub fn split(sql: &str) -> Vec<String> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i = (i + 2).min(b.len());
                continue;
            }
            b'\'' | b'"' => {
                let backslash = c == b'\''
                    && i > 0
                    && matches!(b[i - 1], b'E' | b'e')
                    && (i < 2 || !b[i - 2].is_ascii_alphanumeric());
                let end = quoted_end(b, i, c, backslash);
                cur.push_str(&sql[i..end]);
                i = end;
                continue;
            }
            b'$' => {
                if let Some(end) = dollar_end(sql, i) {
                    cur.push_str(&sql[i..end]);
                    i = end;
                    continue;
                }
            }
            b';' => {
                cur.push(';');
                let s = cur.trim().to_owned();
                if s != ";" {
                    out.push(s);
                }
                cur.clear();
                i += 1;
                continue;
            }
            _ => {}
        }
        let ch = sql[i..].chars().next().unwrap_or(' ');
        cur.push(ch);
        i += ch.len_utf8();
    }
    let rest = cur.trim();
    if !rest.is_empty() {
        out.push(rest.to_owned());
    }
    out
}

/// Where a quoted string or identifier that opens at `i` ends (just past its closing quote).
fn quoted_end(b: &[u8], i: usize, q: u8, backslash: bool) -> usize {
    let mut j = i + 1;
    while j < b.len() {
        if backslash && b[j] == b'\\' {
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

/// Where a dollar-quoted string that opens at `i` ends, if one opens there.
fn dollar_end(sql: &str, i: usize) -> Option<usize> {
    let rest = &sql[i + 1..];
    let tag_len = rest.find('$')?;
    let tag = &rest[..tag_len];
    if !tag.chars().all(|c| c.is_alphanumeric() || c == '_')
        || tag.starts_with(|c: char| c.is_ascii_digit())
    {
        return None;
    }
    let delim = format!("${tag}$");
    let body = i + delim.len();
    let close = sql[body..].find(&delim)?;
    Some(body + close + delim.len())
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
        let start = i;
        let tok = if c == b'"' {
            i = quoted_end(b, i, b'"', false);
            let inner = &s[start + 1..i.saturating_sub(1).max(start + 1)];
            Tok::Quoted(inner.replace("\"\"", "\""))
        } else if c == b'\'' {
            i = quoted_end(b, i, b'\'', false);
            Tok::Str
        } else if (c == b'E' || c == b'e') && b.get(i + 1) == Some(&b'\'') {
            i = quoted_end(b, i + 1, b'\'', true);
            Tok::Str
        } else if c == b'$' && dollar_end(s, i).is_some() {
            i = dollar_end(s, i).unwrap_or(b.len());
            Tok::Str
        } else if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 {
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

/// What one statement of a globals object is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stmt {
    /// `SET …` for the session.
    Session(String),
    /// `CREATE ROLE name;`
    CreateRole { role: String },
    /// `ALTER ROLE name WITH …`: its attributes, as written (password included, if any).
    RoleAttributes {
        role: String,
        attributes: Vec<String>,
        superuser: bool,
        password: bool,
    },
    /// `ALTER ROLE name SET …`, `COMMENT ON ROLE name IS …`, `SECURITY LABEL … ON ROLE`: the
    /// role's own settings, applied to a role the restore creates.
    RoleOther { role: String, text: String },
    /// `GRANT role TO member [WITH ADMIN OPTION] [GRANTED BY …]`; `text` without GRANTED BY
    /// (the grantor of the source need not exist, nor may the restoring user act as it).
    Membership {
        role: String,
        member: String,
        text: String,
    },
    /// Tablespace definitions and grants (a directory on the source host).
    Tablespace { name: String },
    /// The backed-up database's settings, owner and grants; `name_at` is the byte range of the
    /// database's name in `text`, so a restore can apply it to the database it made.
    Database {
        text: String,
        name_at: (usize, usize),
        /// `ALTER DATABASE … OWNER TO` and `GRANT`/`REVOKE`: privileges, kept only when owners
        /// are kept. Settings (`SET`) are applied either way.
        privileges: bool,
        /// `ALTER ROLE r IN DATABASE d SET`: the role it needs.
        role: Option<String>,
    },
    /// Anything else, not run by a restore (reported).
    Other(String),
}

impl Stmt {
    /// The statement with the database it names replaced by `database`.
    pub fn for_database(text: &str, name_at: (usize, usize), database: &str) -> String {
        format!(
            "{}{}{}",
            &text[..name_at.0],
            super::quote_ident(database),
            &text[name_at.1..]
        )
    }
}

/// Classifies one statement.
pub fn classify(text: &str) -> Stmt {
    let t = tokenize(text);
    let kw = |i: usize, k: &str| t.get(i).is_some_and(|x| x.is_kw(k));
    let ident = |i: usize| t.get(i).and_then(Token::ident);
    let other = || Stmt::Other(text.to_owned());
    if kw(0, "SET") {
        return Stmt::Session(text.to_owned());
    }
    if kw(0, "CREATE") && kw(1, "ROLE") {
        return match (ident(2), t.get(3).map(|x| &x.tok)) {
            (Some(role), Some(Tok::Sym(';')) | None) => Stmt::CreateRole { role },
            _ => other(),
        };
    }
    if kw(0, "ALTER") && kw(1, "ROLE") {
        let Some(role) = ident(2) else { return other() };
        if kw(3, "WITH") {
            let attributes: Vec<String> = t[4..]
                .iter()
                .filter(|x| x.tok != Tok::Sym(';'))
                .map(|x| text[x.start..x.end].to_owned())
                .collect();
            let superuser = t[4..].iter().any(|x| x.is_kw("SUPERUSER"));
            let password = t[4..]
                .windows(2)
                .any(|w| w[0].is_kw("PASSWORD") && w[1].tok == Tok::Str);
            return Stmt::RoleAttributes {
                role,
                attributes,
                superuser,
                password,
            };
        }
        if kw(3, "IN") && kw(4, "DATABASE") {
            return match t.get(5) {
                Some(d) if d.ident().is_some() => Stmt::Database {
                    text: text.to_owned(),
                    name_at: (d.start, d.end),
                    privileges: false,
                    role: Some(role),
                },
                _ => other(),
            };
        }
        return Stmt::RoleOther {
            role,
            text: text.to_owned(),
        };
    }
    if kw(0, "COMMENT") && kw(1, "ON") && kw(2, "ROLE") {
        return match ident(3) {
            Some(role) => Stmt::RoleOther {
                role,
                text: text.to_owned(),
            },
            None => other(),
        };
    }
    if kw(0, "ALTER") && kw(1, "DATABASE") {
        return match t.get(2) {
            Some(d) if d.ident().is_some() => Stmt::Database {
                text: text.to_owned(),
                name_at: (d.start, d.end),
                privileges: kw(3, "OWNER"),
                role: None,
            },
            _ => other(),
        };
    }
    if kw(0, "GRANT") || kw(0, "REVOKE") {
        if let Some(on) = t.iter().position(|x| x.is_kw("ON")) {
            if kw(on + 1, "DATABASE") {
                return match t.get(on + 2) {
                    Some(d) if d.ident().is_some() => Stmt::Database {
                        text: text.to_owned(),
                        name_at: (d.start, d.end),
                        privileges: true,
                        role: None,
                    },
                    _ => other(),
                };
            }
            if kw(on + 1, "TABLESPACE") {
                return ident(on + 2).map_or_else(other, |name| Stmt::Tablespace { name });
            }
            return other();
        }
        // GRANT role TO member [WITH ADMIN OPTION] [GRANTED BY grantor];
        if kw(0, "GRANT") && kw(2, "TO") {
            let (Some(role), Some(member)) = (ident(1), ident(3)) else {
                return other();
            };
            let end = t
                .iter()
                .position(|x| x.is_kw("GRANTED"))
                .or_else(|| t.iter().position(|x| x.tok == Tok::Sym(';')))
                .map_or(text.len(), |i| t[i].start);
            return Stmt::Membership {
                role,
                member,
                text: format!("{};", text[..end].trim_end()),
            };
        }
        return other();
    }
    if (kw(0, "CREATE") || kw(0, "ALTER")) && kw(1, "TABLESPACE")
        || kw(0, "COMMENT") && kw(1, "ON") && kw(2, "TABLESPACE")
    {
        let at = if kw(0, "COMMENT") { 3 } else { 2 };
        return ident(at).map_or_else(other, |name| Stmt::Tablespace { name });
    }
    other()
}

/// Parses a globals object's text.
pub fn parse(sql: &str) -> Vec<Stmt> {
    split(sql).iter().map(|s| classify(s)).collect()
}

/// Roles and memberships a globals object holds (for the manifest and `backup show`).
pub fn counts(stmts: &[Stmt]) -> (u32, u32) {
    let n = |f: fn(&Stmt) -> bool| {
        u32::try_from(stmts.iter().filter(|s| f(s)).count()).unwrap_or(u32::MAX)
    };
    (
        n(|s| matches!(s, Stmt::CreateRole { .. })),
        n(|s| matches!(s, Stmt::Membership { .. })),
    )
}

/// Why a role of the backup is not created on this server, if it is not: PostgreSQL's own
/// (`pg_*`) and the provider's reserved roles.
pub fn reserved_role(role: &str, provider: Provider) -> Option<&'static str> {
    if role.starts_with("pg_") {
        return Some("a role name reserved by PostgreSQL");
    }
    let provider_roles: &[&str] = match provider {
        Provider::Supabase => &[
            "postgres",
            "supabase_admin",
            "supabase_auth_admin",
            "supabase_storage_admin",
            "supabase_functions_admin",
            "supabase_realtime_admin",
            "supabase_replication_admin",
            "supabase_read_only_user",
            "supabase_etl_admin",
            "authenticator",
            "authenticated",
            "anon",
            "service_role",
            "dashboard_user",
            "pgbouncer",
            "pgsodium_keyholder",
            "pgsodium_keyiduser",
            "pgsodium_keymaker",
        ],
        Provider::Neon => &[
            "cloud_admin",
            "neon_superuser",
            "neon_service",
            "zenith_admin",
        ],
        Provider::Railway => &["postgres"],
        _ => &[],
    };
    if provider_roles.contains(&role)
        || (provider == Provider::Supabase && role.starts_with("supabase_"))
    {
        return Some("reserved by the provider");
    }
    None
}

/// What a restore does with each role and membership of a globals object on one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    Create,
    /// Exists on the server: left as it is.
    Exists,
    /// Not created, and why.
    Refused(String),
}

/// The server a globals restore runs on, as [`plan`] needs it.
#[derive(Debug, Clone, Default)]
pub struct Server {
    /// The destination's provider profile.
    pub provider: Option<Provider>,
    pub roles: BTreeSet<String>,
    /// (role, member) pairs.
    pub memberships: BTreeSet<(String, String)>,
    /// The operator passed `--allow-superuser` (never on a managed provider).
    pub allow_superuser: bool,
}

/// The decided restore of a globals object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub roles: Vec<(String, Fate)>,
    pub memberships: Vec<((String, String), Fate)>,
    /// Tablespaces in the backup: never created (their directories are on the source host).
    pub tablespaces: Vec<String>,
    /// What runs, in order, in one transaction (session settings first).
    pub statements: Vec<String>,
    /// Whether a created role gets a password hash from the backup.
    pub passwords: bool,
}

impl Plan {
    pub fn created_roles(&self) -> impl Iterator<Item = &str> {
        self.roles
            .iter()
            .filter(|(_, f)| *f == Fate::Create)
            .map(|(r, _)| r.as_str())
    }
}

/// Decides, for each role and membership of `stmts`, whether it is created, exists, or is
/// refused, and the statements that do it. A role that exists is never altered; a role is
/// refused when its name is reserved (PostgreSQL's `pg_*`, the provider's own roles) or it
/// has SUPERUSER (unless the operator allowed it, and never on a managed provider). A
/// membership is created when both its roles exist or are created and it does not exist yet.
pub fn plan(stmts: &[Stmt], server: &Server) -> Plan {
    let provider = server.provider.unwrap_or(Provider::Postgres);
    let managed = provider.is_managed();
    let superusers: BTreeSet<&str> = stmts
        .iter()
        .filter_map(|s| match s {
            Stmt::RoleAttributes {
                role,
                superuser: true,
                ..
            } => Some(role.as_str()),
            _ => None,
        })
        .collect();
    let mut p = Plan::default();
    let mut fates = std::collections::BTreeMap::<&str, Fate>::new();
    for s in stmts {
        if let Stmt::CreateRole { role } = s {
            let fate = if server.roles.contains(role) {
                Fate::Exists
            } else if let Some(why) = reserved_role(role, provider) {
                Fate::Refused(why.to_owned())
            } else if superusers.contains(role.as_str()) && managed {
                Fate::Refused(format!(
                    "SUPERUSER, which {provider} does not allow; create it without SUPERUSER by hand if it is needed"
                ))
            } else if superusers.contains(role.as_str()) && !server.allow_superuser {
                Fate::Refused(
                    "SUPERUSER; create it by hand, or pass --allow-superuser (admin role) to create it"
                        .to_owned(),
                )
            } else {
                Fate::Create
            };
            fates.insert(role, fate.clone());
            p.roles.push((role.clone(), fate));
        }
    }
    let created = |r: &str| fates.get(r) == Some(&Fate::Create);
    let present = |r: &str| created(r) || server.roles.contains(r);
    for s in stmts {
        match s {
            Stmt::Session(text) => p.statements.push(text.clone()),
            Stmt::CreateRole { role } if created(role) => {
                p.statements
                    .push(format!("CREATE ROLE {};", super::quote_ident(role)));
            }
            Stmt::RoleAttributes {
                role,
                attributes,
                password,
                ..
            } if created(role) => {
                // A new role has these already; naming them needs superuser on PostgreSQL 15
                // and older, which a managed provider's user is not.
                let kept: Vec<&str> = attributes
                    .iter()
                    .map(String::as_str)
                    .filter(|a| {
                        !["NOSUPERUSER", "NOREPLICATION", "NOBYPASSRLS"]
                            .iter()
                            .any(|d| a.eq_ignore_ascii_case(d))
                    })
                    .collect();
                p.passwords |= *password;
                if !kept.is_empty() {
                    p.statements.push(format!(
                        "ALTER ROLE {} WITH {};",
                        super::quote_ident(role),
                        kept.join(" ")
                    ));
                }
            }
            Stmt::RoleOther { role, text } if created(role) => p.statements.push(text.clone()),
            Stmt::Membership { role, member, text } => {
                let pair = (role.clone(), member.clone());
                let fate = if server.memberships.contains(&pair) {
                    Fate::Exists
                } else if !present(role) || !present(member) {
                    let missing = if present(role) { member } else { role };
                    Fate::Refused(format!("role {missing} is not created"))
                } else {
                    p.statements.push(text.clone());
                    Fate::Create
                };
                p.memberships.push((pair, fate));
            }
            Stmt::Tablespace { name } if !p.tablespaces.contains(name) => {
                p.tablespaces.push(name.clone());
            }
            _ => {}
        }
    }
    p
}

#[cfg(test)]
mod tests;
