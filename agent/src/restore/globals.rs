//! Restoring a backup's globals onto a destination server: `lifeboat globals restore` (only
//! them) and `lifeboat restore --with-globals` (them first, the database next, then the
//! database's own settings and grants). The object is read whole and checked against both
//! hashes the catalog recorded before anything is applied. PostgreSQL: roles that exist are
//! left as they are, reserved and SUPERUSER roles are refused ([`pgg::plan`]), and everything
//! that is created is created in one transaction. MySQL/MariaDB: see [`mysql`]. Statements are
//! never logged or reported as text: they may hold password hashes.

mod mysql;

use std::{collections::BTreeSet, io::Cursor, sync::Arc};

use anyhow::{Context, Result, bail};
use lifeboat_proto::domain::{Globals, GlobalsObject, OwnerPolicy, Restored};
use sqlx::{AssertSqlSafe, Row, postgres::PgConnection};

use crate::{
    config::{Engine, TargetConfig},
    engine::postgres::{self as pg, globals as pgg},
    job::JobCtx,
    pipeline::{self, Digest, Expected},
    work::RestoreWork,
};

/// The backup's globals, read and checked, with the destination's connection and the plan.
pub(crate) enum Loaded<'a> {
    Pg(PgLoaded<'a>),
    My(mysql::Loaded),
}

impl Loaded<'_> {
    /// Roles (accounts) the plan creates.
    pub fn created_roles(&self) -> Vec<String> {
        match self {
            Loaded::Pg(l) => l.plan.created_roles().map(str::to_owned).collect(),
            Loaded::My(l) => l.created(),
        }
    }
}

pub(crate) struct PgLoaded<'a> {
    target: &'a TargetConfig,
    stmts: Vec<pgg::Stmt>,
    conn: PgConnection,
    plan: pgg::Plan,
    /// The source's provider (from the manifest), for `--owners auto`.
    source_provider: String,
}

/// The globals object's text, read and checked, and the target it is restored onto.
struct Checked<'a> {
    target: &'a TargetConfig,
    text: String,
    source_provider: String,
}

/// `lifeboat globals restore`: recreates the globals and reports each role and membership.
pub(crate) async fn run_only(ctx: &JobCtx, spec: &RestoreWork) -> Result<Restored> {
    match load(ctx, spec, false).await? {
        Loaded::Pg(mut loaded) => {
            report(ctx, &loaded.plan, false);
            apply(ctx, &mut loaded).await?;
            close(loaded).await;
        }
        Loaded::My(mut loaded) => {
            mysql::report(ctx, &loaded, false);
            mysql::apply(ctx, &mut loaded).await?;
            mysql::close(loaded).await;
        }
    }
    let raw = match &spec.backup.globals {
        Globals::Captured(o) => o.raw_size,
        _ => 0,
    };
    Ok(Restored {
        database: String::new(),
        data_dir: None,
        row_counts: Vec::new(),
        raw_bytes: raw,
    })
}

/// The dry run of a globals restore: what would be created, skipped and refused.
pub(crate) async fn dry_run_only(ctx: &JobCtx, spec: &RestoreWork) -> Result<()> {
    match load(ctx, spec, false).await? {
        Loaded::Pg(loaded) => {
            report(ctx, &loaded.plan, true);
            close(loaded).await;
        }
        Loaded::My(loaded) => {
            mysql::report(ctx, &loaded, true);
            mysql::close(loaded).await;
        }
    }
    ctx.report.bail_on_errors("the globals restore would fail")
}

/// Before a restore `--with-globals`: recreates the roles and memberships (or, in a dry run,
/// says which would be created). The result applies the database's own statements after the
/// database is restored ([`apply_database`]).
pub(crate) async fn before_restore<'a>(
    ctx: &'a JobCtx,
    spec: &'a RestoreWork,
    dry_run: bool,
) -> Result<Loaded<'a>> {
    let mut loaded = load(ctx, spec, true).await?;
    match &mut loaded {
        Loaded::Pg(l) => {
            report(ctx, &l.plan, dry_run);
            if !dry_run {
                apply(ctx, l).await?;
            }
        }
        Loaded::My(l) => {
            mysql::report(ctx, l, dry_run);
            if !dry_run {
                mysql::apply(ctx, l).await?;
            }
        }
    }
    Ok(loaded)
}

/// After a restore `--with-globals`: PostgreSQL, the backed-up database's settings (always)
/// and its owner and grants (when owners are kept), applied to `database`, in one
/// transaction; MySQL/MariaDB, the accounts' grants on the backed-up database and its
/// objects, applied to `database`.
pub(crate) async fn apply_database(
    ctx: &JobCtx,
    spec: &RestoreWork,
    loaded: Loaded<'_>,
    database: &str,
) -> Result<()> {
    let mut loaded = match loaded {
        Loaded::Pg(l) => l,
        Loaded::My(l) => return mysql::apply_database(ctx, l, database).await,
    };
    let keep = match spec.owners {
        OwnerPolicy::Keep => true,
        OwnerPolicy::Drop => false,
        OwnerPolicy::Auto => loaded.source_provider == loaded.target.provider,
    };
    let roles = server_roles(&mut loaded.conn).await?;
    let mut statements = Vec::new();
    let mut skipped = 0usize;
    for s in &loaded.stmts {
        let pgg::Stmt::Database {
            text,
            name_at,
            privileges,
            role,
        } = s
        else {
            continue;
        };
        if (*privileges && !keep) || role.as_ref().is_some_and(|r| !roles.contains(r)) {
            skipped += 1;
            continue;
        }
        statements.push(pgg::Stmt::for_database(text, *name_at, database));
    }
    ctx.set_phase("applying the database's settings and grants");
    run_in_transaction(&mut loaded.conn, &statements)
        .await
        .with_context(|| {
            format!("apply the backed-up database's settings and grants to {database}")
        })?;
    ctx.report.ok(
        "globals",
        format!(
            "database {database}: {} setting(s), owner and grant(s) of the backed-up database applied{}",
            statements.len(),
            match (skipped, keep) {
                (0, _) => String::new(),
                (n, false) => format!("; {n} left out (owners and privileges are not restored)"),
                (n, true) => format!("; {n} left out (their role does not exist)"),
            }
        ),
    );
    close(loaded).await;
    Ok(())
}

/// Reads the globals object, checks it against the catalog and the manifest, connects to the
/// destination and decides what to do there. `with_database`: a restore `--with-globals`
/// (the database's own grants wait for it).
async fn load<'a>(
    ctx: &'a JobCtx,
    spec: &'a RestoreWork,
    with_database: bool,
) -> Result<Loaded<'a>> {
    let checked = read_checked(ctx, spec).await?;
    if checked.target.engine == Engine::Mysql {
        let deferred = with_database.then_some(spec.backup.database.as_str());
        return Ok(Loaded::My(
            mysql::load(ctx, spec, checked.target, &checked.text, deferred).await?,
        ));
    }
    let Checked {
        target,
        text,
        source_provider,
    } = checked;
    let stmts = pgg::parse(&text);
    drop(text);
    ctx.set_phase("checking the destination's roles");
    let password = target.password()?;
    let mut conn = pg::connect(target, password.as_ref(), &target.maintenance_database).await?;
    let server = pgg::Server {
        provider: Some(target.profile),
        roles: server_roles(&mut conn).await?,
        memberships: server_memberships(&mut conn).await?,
        allow_superuser: spec.allow_superuser && !target.profile.is_managed(),
    };
    let plan = pgg::plan(&stmts, &server);
    warn_managed_superuser(ctx, spec, target);
    Ok(Loaded::Pg(PgLoaded {
        target,
        stmts,
        conn,
        plan,
        source_provider,
    }))
}

/// `--allow-superuser` on a managed provider: said once, not applied.
fn warn_managed_superuser(ctx: &JobCtx, spec: &RestoreWork, target: &TargetConfig) {
    if spec.allow_superuser && target.profile.is_managed() {
        ctx.report.warn(
            "globals",
            format!(
                "--allow-superuser does not apply to {}: the provider allows no SUPERUSER or administrator account",
                target.profile
            ),
        );
    }
}

/// The globals object of the backup, read whole and checked against the catalog's and the
/// manifest's sizes and hashes, and the target it goes to (of the backup's engine).
async fn read_checked<'a>(ctx: &'a JobCtx, spec: &'a RestoreWork) -> Result<Checked<'a>> {
    let rec = &spec.backup;
    let target = ctx
        .config
        .targets
        .get(&spec.target)
        .with_context(|| format!("this agent has no target {:?}", spec.target))?;
    if target.engine != rec.engine {
        bail!(
            "backup {} is a {} backup and target {} is {}: globals are restored onto a server of the same engine",
            rec.backup_id,
            rec.engine.as_str(),
            target.name,
            target.engine.as_str()
        );
    }
    let obj = match &rec.globals {
        Globals::Captured(o) => o,
        Globals::NotCaptured(why) => bail!(
            "backup {} has no globals: they were not captured ({why}); create the roles by hand, or restore with --owners drop",
            rec.backup_id
        ),
        Globals::Absent => bail!(
            "backup {} has no globals: it was taken before lifeboat captured them; create the roles by hand, or restore with --owners drop",
            rec.backup_id
        ),
    };
    ctx.set_phase("reading the globals");
    let loc = super::locate_readable(ctx, rec, &spec.fallbacks).await?;
    let manifest = super::read_manifest(&loc).await?.with_context(|| {
        format!(
            "backup {} has no manifest in {}; it is incomplete or was deleted",
            rec.backup_id,
            loc.repo.describe()
        )
    })?;
    let agrees = manifest.globals.as_ref().is_some_and(|g| {
        format!(
            "{}/{}",
            crate::repo::dir_of(&loc.manifest_key).unwrap_or_default(),
            g.file
        ) == obj.key
            && g.raw_size == obj.raw_size
            && g.raw_sha256 == obj.raw_sha256
            && g.stored_size == obj.stored_size
            && g.stored_sha256 == obj.stored_sha256
    });
    if !agrees {
        bail!(
            "manifest.json disagrees with the catalog about the globals object; the backup was changed after it was written"
        );
    }
    let text = read_object(ctx, &loc.repo, obj, loc.expected.key.as_ref())
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}; nothing was created"))?;
    Ok(Checked {
        target,
        text,
        source_provider: manifest.provider,
    })
}

/// The object's bytes through the restore direction of the pipeline, checked against the
/// catalog's sizes and hashes; a damaged object is a hash or size mismatch naming it.
pub(crate) async fn read_object(
    ctx: &JobCtx,
    repo: &crate::repo::Repository,
    obj: &GlobalsObject,
    key: Option<&crate::crypt::BackupKey>,
) -> Result<String> {
    let stored = repo
        .get_bytes(&obj.key, obj.stored_size)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "{}: stored data does not match the catalog: {e} (the stored copy is corrupt or was changed; restore another backup)",
                obj.key
            )
        })?
        .with_context(|| format!("globals object {} is missing from {}", obj.key, repo.describe()))?;
    let expected = Expected {
        stored: Digest {
            size: obj.stored_size,
            sha256: obj.stored_sha256.clone(),
        },
        raw: Digest {
            size: obj.raw_size,
            sha256: obj.raw_sha256.clone(),
        },
        key: key.cloned(),
    };
    let cancel = ctx.cancel.clone();
    let key = obj.key.clone();
    let raw = tokio::task::spawn_blocking(move || {
        pipeline::decompress(
            Cursor::new(stored),
            Vec::new(),
            b"",
            &expected,
            &Arc::new(pipeline::Counters::default()),
            &cancel,
        )
    })
    .await
    .context("read the globals")?
    .map_err(|e| anyhow::anyhow!("globals object {key}: {e}"))?;
    String::from_utf8(raw).context("the globals object is not UTF-8 text")
}

/// Each role, membership and tablespace in the job's report: created (or would be),
/// skipped because it exists, or refused, with why.
fn report(ctx: &JobCtx, plan: &pgg::Plan, dry_run: bool) {
    let r = &ctx.report;
    let create = if dry_run {
        "would be created"
    } else {
        "created"
    };
    let (mut made, mut skipped, mut refused) = (0, 0, 0);
    for (role, fate) in &plan.roles {
        match fate {
            pgg::Fate::Create => {
                made += 1;
                r.ok("globals", format!("role {role}: {create}"));
            }
            pgg::Fate::Exists => {
                skipped += 1;
                r.info("globals", format!("role {role}: skipped (exists)"));
            }
            pgg::Fate::Refused(why) => {
                refused += 1;
                r.warn("globals", format!("role {role}: refused ({why})"));
            }
        }
    }
    for ((role, member), fate) in &plan.memberships {
        match fate {
            pgg::Fate::Create => {
                r.ok(
                    "globals",
                    format!("membership {member} in {role}: {create}"),
                );
            }
            pgg::Fate::Exists => {
                r.info(
                    "globals",
                    format!("membership {member} in {role}: skipped (exists)"),
                );
            }
            pgg::Fate::Refused(why) => {
                r.warn(
                    "globals",
                    format!("membership {member} in {role}: refused ({why})"),
                );
            }
        }
    }
    for t in &plan.tablespaces {
        r.info(
            "globals",
            format!(
                "tablespace {t}: not created (its directory is on the source host); create the directory and the tablespace by hand if the backup needs it"
            ),
        );
    }
    let memberships = plan
        .memberships
        .iter()
        .filter(|(_, f)| *f == pgg::Fate::Create)
        .count();
    r.step(format!(
        "{} {made} role(s) and {memberships} membership(s) in one transaction{}; {skipped} role(s) skipped (exist), {refused} refused",
        if dry_run { "create" } else { "created" },
        if plan.passwords {
            ", with the password hashes from the backup"
        } else {
            ", without passwords (set them with ALTER ROLE … PASSWORD)"
        },
    ));
}

/// Runs the plan's statements in one transaction.
async fn apply(ctx: &JobCtx, loaded: &mut PgLoaded<'_>) -> Result<()> {
    if loaded.plan.created_roles().next().is_none()
        && !loaded
            .plan
            .memberships
            .iter()
            .any(|(_, f)| *f == pgg::Fate::Create)
    {
        return Ok(());
    }
    ctx.set_phase("creating roles");
    run_in_transaction(&mut loaded.conn, &loaded.plan.statements)
        .await
        .context("recreate the globals (nothing was created)")
}

/// Runs `statements` in one transaction; on an error, rolls back and names the statement by
/// its kind and role, never its text (it may hold a password hash).
async fn run_in_transaction(conn: &mut PgConnection, statements: &[String]) -> Result<()> {
    // A failing statement is logged by the server with its text (log_min_error_statement):
    // keep a password hash out of the server's log where the user may change that.
    let _ = sqlx::raw_sql("SET log_min_error_statement = panic")
        .execute(&mut *conn)
        .await;
    sqlx::raw_sql("BEGIN").execute(&mut *conn).await?;
    for s in statements {
        if let Err(e) = sqlx::raw_sql(AssertSqlSafe(s.clone()))
            .execute(&mut *conn)
            .await
        {
            let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
            bail!("{} failed: {}", describe(s), db_message(&e));
        }
    }
    sqlx::raw_sql("COMMIT").execute(&mut *conn).await?;
    Ok(())
}

/// A statement for people: its first words up to the object it acts on, no values.
pub(super) fn describe(s: &str) -> String {
    let words: Vec<&str> = s.split_whitespace().take(4).collect();
    let head = words.join(" ");
    let head = head.trim_end_matches(';');
    if s.to_ascii_uppercase().contains("PASSWORD") || head.contains('\'') {
        let cut = head.split('\'').next().unwrap_or_default();
        format!("{} …", cut.trim_end())
    } else {
        format!("{head} …")
    }
}

/// The server's message only (no statement text).
fn db_message(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(d) => d.message().to_owned(),
        other => other.to_string(),
    }
}

async fn server_roles(conn: &mut PgConnection) -> Result<BTreeSet<String>> {
    Ok(
        sqlx::query_scalar::<_, String>("SELECT rolname::text FROM pg_roles")
            .fetch_all(&mut *conn)
            .await
            .context("list the destination's roles")?
            .into_iter()
            .collect(),
    )
}

async fn server_memberships(conn: &mut PgConnection) -> Result<BTreeSet<(String, String)>> {
    let rows = sqlx::query(
        "SELECT r.rolname::text AS role, m.rolname::text AS member FROM pg_auth_members a \
         JOIN pg_roles r ON r.oid = a.roleid JOIN pg_roles m ON m.oid = a.member",
    )
    .fetch_all(&mut *conn)
    .await
    .context("list the destination's role memberships")?;
    rows.iter()
        .map(|r| Ok((r.try_get("role")?, r.try_get("member")?)))
        .collect()
}

async fn close(loaded: PgLoaded<'_>) {
    let _ = sqlx::Connection::close(loaded.conn).await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn statements_are_described_without_their_values() {
        assert_eq!(
            super::describe("ALTER ROLE \"app\" WITH LOGIN PASSWORD 'SCRAM-SHA-256$4096:abc';"),
            "ALTER ROLE \"app\" WITH …"
        );
        let d = super::describe("ALTER ROLE x WITH PASSWORD 'SCRAM-SHA-256$4096:abc';");
        assert!(!d.contains("SCRAM"), "{d}");
        assert_eq!(
            super::describe("CREATE ROLE \"app\";"),
            "CREATE ROLE \"app\" …"
        );
    }
}
