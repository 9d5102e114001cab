//! Authentication secrets in `SHOW CREATE USER` and `SHOW GRANTS` text: which alternatives of
//! an `IDENTIFIED …` clause hold a password or hash, and the statements without them.

use super::PASSWORD_LEFT_OUT;
use super::tokens::{Tok, Token, tokenize};

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
pub(super) fn identified(t: &[Token]) -> Option<(usize, usize)> {
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
pub(super) fn alternatives(t: &[Token]) -> Vec<(usize, usize)> {
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
pub(super) fn alternative_has_secret(t: &[Token]) -> bool {
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
