//! MySQL/MariaDB accounts from a backup's globals onto a destination server. MySQL DDL is not
//! transactional, so the order makes a failure recoverable: every account is created first
//! (roles, then users), then the grants and default roles are applied; if any statement
//! fails, the accounts this run created are dropped again (lifeboat drops only what it
//! created), so the server is as it was and a second run starts over. Accounts that exist are
//! never altered, not even granted anything. A restore `--with-globals` applies the grants on
//! the backed-up database after the database is restored, to the name it was restored under
//! (table grants need their tables). Statements are never logged or reported as text.

use std::collections::BTreeSet;

use anyhow::{Context, Result, bail};
use sqlx::{AssertSqlSafe, mysql::MySqlConnection};

use crate::{
    config::TargetConfig,
    engine::mysql::{
        self as my, accounts,
        globals::{self as myg, Account, Fate},
    },
    job::JobCtx,
    work::RestoreWork,
};

pub(crate) struct Loaded {
    conn: MySqlConnection,
    stmts: Vec<myg::Stmt>,
    pub plan: myg::Plan,
    /// The backed-up database, in a restore `--with-globals`.
    database: Option<String>,
}

impl Loaded {
    /// The accounts the plan creates, as the report names them.
    pub fn created(&self) -> Vec<String> {
        self.plan.created().map(|a| a.account.to_string()).collect()
    }
}

/// Connects to the destination and decides what to create there. `deferred`: the backed-up
/// database, in a restore `--with-globals`.
pub(super) async fn load(
    ctx: &JobCtx,
    spec: &RestoreWork,
    target: &TargetConfig,
    text: &str,
    deferred: Option<&str>,
) -> Result<Loaded> {
    let stmts = myg::parse(text);
    ctx.set_phase("checking the destination's accounts");
    let params = target
        .mysql
        .as_ref()
        .context("target has no MySQL connection parameters")?;
    let password = target.password()?;
    let mut conn = my::connect(params, password.as_ref(), None).await?;
    let facts = my::server_facts(&mut conn, None).await?;
    let existing = accounts::list(&mut conn, facts.flavor)
        .await
        .map_err(|e| e.context("the restoring user may not read the accounts: it needs SELECT on mysql.user and CREATE USER"))?;
    let databases: BTreeSet<&str> = stmts
        .iter()
        .filter_map(|s| match s {
            myg::Stmt::Grant(g) if matches!(g.on, myg::GrantOn::Object { .. }) => g.database(),
            _ => None,
        })
        .collect();
    let mut objects = BTreeSet::new();
    for db in databases {
        objects.extend(accounts::objects(&mut conn, db).await?);
    }
    let server = myg::Server {
        provider: Some(target.profile),
        accounts: existing.into_iter().map(|(a, _)| a).collect(),
        objects,
        allow_superuser: spec.allow_superuser && !target.profile.is_managed(),
        deferred_database: deferred.map(str::to_owned),
    };
    let plan = myg::plan(&stmts, &server);
    super::warn_managed_superuser(ctx, spec, target);
    Ok(Loaded {
        conn,
        stmts,
        plan,
        database: deferred.map(str::to_owned),
    })
}

fn kind(is_role: bool) -> &'static str {
    if is_role { "role" } else { "account" }
}

/// Each account and role grant in the job's report: created (or would be), skipped because
/// it exists, or refused, with why; grants left for later; a step line with the totals.
pub(super) fn report(ctx: &JobCtx, loaded: &Loaded, dry_run: bool) {
    let r = &ctx.report;
    let plan = &loaded.plan;
    let create = if dry_run {
        "would be created"
    } else {
        "created"
    };
    let (mut made, mut skipped, mut refused, mut locked) = (0, 0, 0, 0);
    for a in &plan.accounts {
        let what = format!("{} {}", kind(a.is_role), a.account);
        match &a.fate {
            Fate::Create => {
                made += 1;
                r.ok("globals", format!("{what}: {create}"));
                if a.password_left_out {
                    locked += 1;
                    r.warn(
                        "globals",
                        format!(
                            "{what}: its password is not in the backup; set one with ALTER USER {} IDENTIFIED BY …, then ALTER USER {} ACCOUNT UNLOCK",
                            a.account.sql(),
                            a.account.sql()
                        ),
                    );
                }
            }
            Fate::Exists => {
                skipped += 1;
                r.info("globals", format!("{what}: skipped (exists)"));
            }
            Fate::Refused(why) => {
                refused += 1;
                r.warn("globals", format!("{what}: refused ({why})"));
            }
        }
    }
    for ((role, grantee), fate) in &plan.role_grants {
        match fate {
            Fate::Create | Fate::Exists => {
                r.ok(
                    "globals",
                    format!("role {role} granted to {grantee}: {create}"),
                );
            }
            Fate::Refused(why) => {
                r.warn(
                    "globals",
                    format!("role {role} granted to {grantee}: refused ({why})"),
                );
            }
        }
    }
    for (grantee, object) in &plan.missing_objects {
        r.info(
            "globals",
            format!(
                "grant on {object} to {grantee}: left out ({object} does not exist on this server); restore its database with --with-globals, or grant it by hand"
            ),
        );
    }
    r.step(format!(
        "{} {made} account(s) and role(s), then {} grant(s){}; {skipped} skipped (exist), {refused} refused{}{}",
        if dry_run { "create" } else { "created" },
        plan.grants.len(),
        if plan.passwords {
            ", with the password hashes from the backup"
        } else {
            ""
        },
        if locked > 0 {
            format!("; {locked} created without their password and locked until one is set")
        } else {
            String::new()
        },
        if plan.deferred.is_empty() {
            String::new()
        } else {
            format!(
                "; {} grant(s) on the backed-up database follow once it is restored",
                plan.deferred.len()
            )
        },
    ));
}

/// Creates the accounts, then applies their grants; on a failure, drops the accounts it
/// created and says so.
pub(super) async fn apply(ctx: &JobCtx, loaded: &mut Loaded) -> Result<()> {
    if loaded.plan.creates.is_empty() {
        return Ok(());
    }
    ctx.set_phase("creating accounts");
    let mut created: Vec<(&Account, bool)> = Vec::new();
    let mut failure = None;
    for (account, is_role, text) in &loaded.plan.creates {
        match run(&mut loaded.conn, text).await {
            Ok(()) => created.push((account, *is_role)),
            Err(e) => {
                failure = Some(format!("creating {} {account} failed: {e}", kind(*is_role)));
                break;
            }
        }
    }
    if failure.is_none() {
        ctx.set_phase("applying grants");
        for (grantee, text) in &loaded.plan.grants {
            if let Err(e) = run(&mut loaded.conn, text).await {
                failure = Some(format!(
                    "{} for {grantee} failed: {e}",
                    super::describe(text)
                ));
                break;
            }
        }
    }
    let Some(failure) = failure else {
        return Ok(());
    };
    // Undo: the accounts this run created, newest first.
    let mut left = Vec::new();
    for (account, is_role) in created.iter().rev() {
        let drop = format!(
            "DROP {} {}",
            if *is_role { "ROLE" } else { "USER" },
            account.sql()
        );
        if run(&mut loaded.conn, &drop).await.is_err() {
            left.push(account.to_string());
        }
    }
    if left.is_empty() {
        bail!(
            "recreate the accounts: {failure}; the {} account(s) created by this run were dropped again, the server is as it was",
            created.len()
        );
    }
    bail!(
        "recreate the accounts: {failure}; these accounts created by this run could not be dropped again: {} (drop them by hand before running it again)",
        left.join(", ")
    );
}

/// After a restore `--with-globals`: the accounts' grants on the backed-up database and its
/// objects, on `database`, to the accounts that exist now.
pub(super) async fn apply_database(ctx: &JobCtx, mut loaded: Loaded, database: &str) -> Result<()> {
    ctx.set_phase("applying the database's grants");
    let facts = my::server_facts(&mut loaded.conn, None).await?;
    let present: BTreeSet<Account> = accounts::list(&mut loaded.conn, facts.flavor)
        .await?
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    // The grants of every account that exists now, created by this run or before it (a
    // second run after a failed restore finds its accounts there).
    let deferred_db = loaded.database.clone();
    let grants: Vec<&myg::Grant> = loaded
        .stmts
        .iter()
        .filter_map(|s| match s {
            myg::Stmt::Grant(g) => Some(g),
            _ => None,
        })
        .filter(|g| {
            g.database().is_some()
                && g.database() == deferred_db.as_deref()
                && present.contains(&g.grantee)
        })
        .collect();
    let mut applied = 0usize;
    let mut accounts_done = BTreeSet::new();
    for g in &grants {
        let text = g.for_database(database);
        if let Err(e) = run(&mut loaded.conn, &text).await {
            let _ = sqlx::Connection::close(loaded.conn).await;
            bail!(
                "{} for {} on {database} failed: {e}; {applied} grant(s) were applied before it, grant the rest by hand",
                super::describe(&text),
                g.grantee
            );
        }
        applied += 1;
        accounts_done.insert(g.grantee.to_string());
    }
    if applied > 0 {
        ctx.report.ok(
            "globals",
            format!(
                "database {database}: {applied} grant(s) of the backed-up database applied to {}",
                accounts_done.into_iter().collect::<Vec<_>>().join(", ")
            ),
        );
    }
    close(loaded).await;
    Ok(())
}

/// Runs one statement; the error is the server's message only (no statement text).
async fn run(conn: &mut MySqlConnection, text: &str) -> Result<(), String> {
    sqlx::raw_sql(AssertSqlSafe(text.to_owned()))
        .execute(&mut *conn)
        .await
        .map(|_| ())
        .map_err(|e| match e {
            // A syntax error quotes the statement from where it failed: not that part.
            sqlx::Error::Database(d) => match d.message().split_once(" near '") {
                Some((head, _)) => format!("{head} (statement not shown)"),
                None => d.message().to_owned(),
            },
            other => other.to_string(),
        })
}

pub(super) async fn close(loaded: Loaded) {
    let _ = sqlx::Connection::close(loaded.conn).await;
}
