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

mod credentials;
mod tokens;

pub use credentials::{strip_credentials, strip_grant_identified};
pub use tokens::split;

use credentials::{alternative_has_secret, alternatives, identified};
use tokens::{Tok, Token, tokenize};

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
