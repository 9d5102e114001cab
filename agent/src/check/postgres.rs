//! `targets check` for a PostgreSQL target.

use lifeboat_common::secret::Secret;
use sqlx::postgres::PgConnection;

use super::size_finding;
use crate::{
    config::{BackupMode, TargetConfig},
    engine::postgres as pg,
    job::JobCtx,
};

/// Unreadable objects named in a finding.
const SHOWN: usize = 10;

pub(super) async fn check(ctx: &JobCtx, target: &TargetConfig, password: Option<&Secret<String>>) {
    let report = &ctx.report;
    let Some(mut conn) = report.check(
        "connection",
        pg::connect(target, password, &target.database).await,
    ) else {
        return;
    };
    report.ok(
        "connection",
        format!("connected to {}", pg::describe(target, &target.database)),
    );
    let Some(facts) = report.check("server", pg::server_facts(&mut conn).await) else {
        return;
    };
    report.ok("server", format!("PostgreSQL {}", facts.version));
    standby(ctx, &mut conn).await;
    if target.mode == BackupMode::Physical {
        crate::backup::check_physical_target(ctx, target, &mut conn, &facts).await;
        size_finding(ctx, facts.size_bytes);
        let _ = sqlx::Connection::close(conn).await;
        return;
    }

    let pg_dump = pg::tool(target, "pg_dump", facts.major);
    let dump_ok = match pg::tool_version(&pg_dump).await {
        Ok((version, major)) => match pg::check_tool_major("pg_dump", &version, major, &facts) {
            Ok(()) => {
                report.ok(
                    "dump_tool",
                    format!("pg_dump {version} ({})", pg_dump.display()),
                );
                true
            }
            Err(e) => {
                report.error("dump_tool", format!("{e:#}"));
                false
            }
        },
        Err(e) => {
            report.error("dump_tool", format!("{e:#}"));
            false
        }
    };
    let pg_restore = pg::tool(target, "pg_restore", facts.major);
    match pg::tool_version(&pg_restore).await {
        Ok((version, major)) if major >= facts.major => report.ok(
            "restore_tool",
            format!("pg_restore {version} ({})", pg_restore.display()),
        ),
        Ok((version, _)) => report.warn(
            "restore_tool",
            format!(
                "pg_restore {version} is older than the server (PostgreSQL {}); restores into this target will be refused until newer client tools are installed",
                facts.version
            ),
        ),
        Err(e) => report.warn(
            "restore_tool",
            format!("{e:#}; restores into this target need pg_restore"),
        ),
    }
    let readable = privileges(ctx, &mut conn).await;
    owners(ctx, &mut conn).await;
    size_finding(ctx, facts.size_bytes);
    let _ = sqlx::Connection::close(conn).await;
    if dump_ok && readable {
        schema_dump(ctx, target, password, &pg_dump).await;
    }
}

/// A standby serves dumps, but recovery may cancel a long one.
async fn standby(ctx: &JobCtx, conn: &mut PgConnection) {
    let row: Result<(bool, String, String), sqlx::Error> = sqlx::query_as(
        "SELECT pg_is_in_recovery(), current_setting('hot_standby_feedback'), \
         current_setting('max_standby_streaming_delay')",
    )
    .fetch_one(&mut *conn)
    .await;
    match row {
        Ok((true, feedback, delay)) => {
            if feedback == "off" && delay != "-1" {
                ctx.report.warn(
                    "server",
                    format!(
                        "the server is a standby with hot_standby_feedback = off and max_standby_streaming_delay = {delay}: recovery may cancel a long dump; set hot_standby_feedback = on, or dump from the primary"
                    ),
                );
            } else {
                ctx.report
                    .info("server", "the server is a standby (in recovery)");
            }
        }
        Ok(_) => {}
        Err(e) => ctx.report.info(
            "server",
            format!("cannot tell whether the server is a standby: {e}"),
        ),
    }
}

/// Everything pg_dump reads must be readable by the backup user; restores need CREATEDB.
/// Returns whether every schema, table and sequence is readable.
async fn privileges(ctx: &JobCtx, conn: &mut PgConnection) -> bool {
    let report = &ctx.report;
    let unreadable: Result<Vec<String>, sqlx::Error> = sqlx::query_scalar(
        "SELECT 'schema ' || quote_ident(n.nspname) FROM pg_namespace n
          WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
            AND NOT has_schema_privilege(n.oid, 'USAGE')
         UNION ALL
         SELECT CASE c.relkind WHEN 'S' THEN 'sequence ' ELSE 'table ' END
                || format('%I.%I', n.nspname, c.relname)
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind IN ('r', 'p', 'm', 'S', 'f')
            AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
            AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                              AND d.objid = c.oid AND d.deptype = 'e')
            AND NOT CASE c.relkind WHEN 'S' THEN has_sequence_privilege(c.oid, 'SELECT')
                                   ELSE has_table_privilege(c.oid, 'SELECT') END
         ORDER BY 1",
    )
    .fetch_all(&mut *conn)
    .await;
    let readable = match unreadable {
        Ok(list) if list.is_empty() => {
            report.ok(
                "privileges",
                "every schema, table and sequence is readable by the backup user",
            );
            true
        }
        Ok(list) => {
            let more = list.len().saturating_sub(SHOWN);
            report.error(
                "privileges",
                format!(
                    "the backup user cannot read {} object(s): {}{}; grant pg_read_all_data (PostgreSQL 14+) or SELECT/USAGE on them",
                    list.len(),
                    list.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", "),
                    if more > 0 { format!(" and {more} more") } else { String::new() }
                ),
            );
            false
        }
        Err(e) => {
            report.warn("privileges", format!("cannot check privileges: {e}"));
            true
        }
    };
    if let Ok((user, false)) = pg::can_create_databases(conn).await {
        report.warn(
            "privileges",
            format!(
                "{user} may not create databases: backups work, but restores into this target need CREATEDB (a restore goes into a new scratch database first)"
            ),
        );
    }
    readable
}

/// What the default restore (owners kept) into a new database on this server will decide about
/// roles: the same verdict the restore pre-flight reaches, so a refusal is known before the
/// night it is needed. Backups work either way, hence warnings.
async fn owners(ctx: &JobCtx, conn: &mut PgConnection) {
    let report = &ctx.report;
    let objects = match pg::objects::dump_objects(conn).await {
        Ok(o) => o,
        Err(e) => {
            return report.warn(
                "owners",
                format!("cannot list the roles objects belong to: {e:#}"),
            );
        }
    };
    match pg::objects::owner_verdict(conn, &objects.roles).await {
        Ok(pg::objects::OwnerVerdict::Fine) => report.ok(
            "owners",
            format!(
                "a restore into this server keeps owners and privileges; the {} role(s) they name exist and may be given objects",
                objects.roles.len()
            ),
        ),
        Ok(pg::objects::OwnerVerdict::NotMember(cannot)) => report.warn(
            "owners",
            format!(
                "restores into this server as {user} will be refused with owners kept: {user} may not give objects to role(s) {} (needs superuser or membership); GRANT those roles to {user}, or restore with --owners drop",
                cannot.join(", "),
                user = current_user(conn).await,
            ),
        ),
        Ok(pg::objects::OwnerVerdict::Missing(missing)) => report.warn(
            "owners",
            format!(
                "restores into this server will be refused with owners kept: role(s) {} are named by the database's objects but do not exist",
                missing.join(", ")
            ),
        ),
        Err(e) => report.warn("owners", format!("cannot check roles: {e:#}")),
    }
}

async fn current_user(conn: &mut PgConnection) -> String {
    sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut *conn)
        .await
        .unwrap_or_else(|_| "the target's user".to_owned())
}

/// `pg_dump --schema-only` to nowhere: the dump tool runs against this server with these
/// credentials and privileges, without reading any rows.
async fn schema_dump(
    ctx: &JobCtx,
    target: &TargetConfig,
    password: Option<&Secret<String>>,
    pg_dump: &std::path::Path,
) {
    let passfile = match password
        .map(|p| pg::PassFile::create(&ctx.config.state_dir, p))
        .transpose()
    {
        Ok(p) => p,
        Err(e) => return ctx.report.error("dump", format!("{e:#}")),
    };
    let mut cmd = pg::child_command(pg_dump, passfile.as_ref());
    cmd.arg("--schema-only")
        .arg("--no-password")
        .arg("--file=/dev/null")
        .arg("--dbname")
        .arg(pg::url_for(target, &target.database).as_str());
    super::probe_dump(ctx, cmd, "pg_dump --schema-only").await;
    drop(passfile);
}
