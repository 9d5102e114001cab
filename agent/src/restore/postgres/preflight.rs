//! The destination's checks before a PostgreSQL restore writes anything: the database name
//! and whether it may be replaced, privileges, locale, owners' roles, provider schemas and
//! extensions.

use std::collections::{BTreeSet, HashSet};

use anyhow::Result;
use lifeboat_common::secret::Secret;
use sqlx::postgres::PgConnection;

use super::super::Prepared;
use crate::{
    config::TargetConfig,
    engine::postgres::{self as pg, objects},
    job::JobCtx,
    provider::{self, Provider},
    work::RestoreWork,
};

/// Whether the destination exists, and whether it may be replaced.
pub(super) async fn destination(
    ctx: &JobCtx,
    spec: &RestoreWork,
    target: &TargetConfig,
    password: Option<&Secret<String>>,
    admin: &mut PgConnection,
    database: &str,
) -> Result<bool> {
    let report = &ctx.report;
    let exists = pg::database_exists(admin, database).await?;
    if pg::is_template(admin, database).await? {
        report.error(
            "destination",
            format!("{database} is a template database; lifeboat never restores over one"),
        );
    } else if exists && !spec.clean {
        // Any existing database, even an empty-looking one, is only replaced on an explicit
        // --clean (which the coordinator allows only to admins).
        let empty = match pg::connect(target, password, database).await {
            Ok(mut existing) => {
                let empty = pg::database_is_empty(&mut existing).await.unwrap_or(false);
                let _ = sqlx::Connection::close(existing).await;
                empty
            }
            Err(_) => false,
        };
        report.error(
            "destination",
            format!(
                "database {database} already exists{}; restore into a new database with --database NAME, or replace it with --clean (admin role)",
                if empty { "" } else { " and is not empty" }
            ),
        );
    } else if exists {
        let open = pg::connection_count(admin, database).await?;
        report.info(
            "destination",
            format!("database {database} exists and is replaced (--clean)"),
        );
        if open > 0 {
            report.warn(
                "destination",
                format!(
                    "database {database} has {open} open connection(s) now; the swap at the end fails unless they are closed by then"
                ),
            );
        }
    } else {
        report.ok(
            "destination",
            format!("database {database} does not exist yet and is created"),
        );
    }
    Ok(exists)
}

/// The restoring user must be able to create the scratch database.
pub(super) async fn privileges(ctx: &JobCtx, admin: &mut PgConnection) {
    match pg::can_create_databases(admin).await {
        Ok((user, true)) => ctx
            .report
            .ok("privileges", format!("{user} may create databases")),
        Ok((user, false)) => ctx.report.error(
            "privileges",
            format!(
                "{user} may not create databases, and a restore goes into a new scratch database first; ALTER ROLE {user} CREATEDB"
            ),
        ),
        Err(e) => ctx
            .report
            .warn("privileges", format!("cannot read this user's privileges: {e}")),
    }
}

/// The scratch database is created with the backup's locale: warn if the server may lack it.
pub(super) async fn locale(
    ctx: &JobCtx,
    admin: &mut PgConnection,
    like: &crate::manifest::ServerInfo,
) {
    let collate = like.collate.as_str();
    if collate.is_empty() || matches!(collate, "C" | "POSIX" | "C.UTF-8" | "C.utf8") {
        return;
    }
    let known: Result<i64, sqlx::Error> = sqlx::query_scalar(
        "SELECT count(*) FROM pg_collation WHERE collcollate = $1 \
         UNION ALL SELECT count(*) FROM pg_database WHERE datcollate = $1",
    )
    .bind(collate)
    .fetch_all(&mut *admin)
    .await
    .map(|v: Vec<i64>| v.iter().sum());
    if known.is_ok_and(|n| n == 0) {
        ctx.report.warn(
            "locale",
            format!(
                "the backup's databases use the locale {collate}, which this server shows no sign of; creating the scratch database fails if the operating system lacks it"
            ),
        );
    }
}

/// With owners kept, every role that owns an object of the backup (or is granted one) must
/// exist on the destination.
pub(super) async fn owners(ctx: &JobCtx, admin: &mut PgConnection, p: &Prepared<'_>) {
    let report = &ctx.report;
    let Some(objs) = &p.manifest.objects else {
        report.warn(
            "owners",
            "owners and privileges are restored, but this backup does not list its roles (it was written by an older lifeboat): a role missing on the destination fails the restore; --owners drop restores without them",
        );
        return;
    };
    let user = p.target.url.username();
    match objects::owner_verdict(admin, &objs.roles).await {
        Ok(objects::OwnerVerdict::Fine) => report.ok(
            "owners",
            format!(
                "owners and privileges are restored; the {} role(s) they name exist",
                objs.roles.len()
            ),
        ),
        Ok(objects::OwnerVerdict::NotMember(cannot)) => report.error(
            "owners",
            format!(
                "the restoring user {user} may not give objects to role(s) {} (ALTER … OWNER needs superuser or membership in the role); restore as a superuser, GRANT those roles to {user}, or restore with --owners drop",
                cannot.join(", "),
            ),
        ),
        Ok(objects::OwnerVerdict::Missing(missing))
            if missing.iter().all(|m| p.planned_roles.contains(m)) =>
        {
            report.ok(
                "owners",
                format!(
                    "owners and privileges are restored; role(s) {} are created from the backup's globals first",
                    missing.join(", ")
                ),
            );
        }
        Ok(objects::OwnerVerdict::Missing(missing)) => report.error(
            "owners",
            format!(
                "role(s) {} own objects in the backup or hold privileges on them but do not exist on the destination server; create them first, or restore with --owners drop",
                missing.join(", ")
            ),
        ),
        Err(e) => report.warn("owners", format!("cannot check the server's roles: {e:#}")),
    }
}

/// Reports the schemas left out and checks the extensions the restore creates; returns the
/// extensions installed in left-out schemas, and whether the archive's table of contents can
/// be filtered.
pub(super) async fn schemas_and_extensions(
    ctx: &JobCtx,
    admin: &mut PgConnection,
    p: &Prepared<'_>,
    skip: &[String],
) -> (Vec<String>, bool) {
    let report = &ctx.report;
    let Some(objs) = &p.manifest.objects else {
        if !skip.is_empty() {
            report.info(
                "schemas",
                format!(
                    "the {} provider's own schemas are left out (if the backup has them): {}",
                    p.source,
                    skip.join(", ")
                ),
            );
        }
        report.info(
            "extensions",
            "this backup does not list its extensions (written by an older lifeboat); one the destination lacks fails the restore",
        );
        return (Vec::new(), false);
    };
    let skipped: BTreeSet<&str> = skip.iter().map(String::as_str).collect();
    let present: Vec<&str> = objs
        .schemas
        .iter()
        .map(String::as_str)
        .filter(|s| skipped.contains(s))
        .collect();
    if !present.is_empty() {
        report.info(
            "schemas",
            format!(
                "left out: {} ({}'s own; --include-provider-schemas restores them)",
                present.join(", "),
                p.source
            ),
        );
    }
    let reserved: HashSet<&str> = reserved_schemas(p.target.profile).iter().copied().collect();
    let clash: Vec<&str> = objs
        .schemas
        .iter()
        .map(String::as_str)
        .filter(|s| reserved.contains(s) && !skipped.contains(s) && p.source != p.target.profile)
        .collect();
    if !clash.is_empty() {
        report.warn(
            "schemas",
            format!(
                "schema(s) {} have the names of {}'s own schemas; they are restored into the new database, not into {}'s",
                clash.join(", "),
                p.target.profile,
                p.target.profile
            ),
        );
    }
    let (left_out, wanted): (Vec<_>, Vec<_>) = objs
        .extensions
        .iter()
        .partition(|e| skipped.contains(e.schema.as_str()));
    let left_out: Vec<String> = left_out.iter().map(|e| e.name.clone()).collect();
    if !left_out.is_empty() {
        report.info(
            "extensions",
            format!("left out with their schemas: {}", left_out.join(", ")),
        );
    }
    match objects::available_extensions(admin).await {
        Ok(available) => {
            let missing: Vec<String> = wanted
                .iter()
                .filter(|e| !available.contains_key(&e.name))
                .map(|e| format!("{} (schema {})", e.name, e.schema))
                .collect();
            if missing.is_empty() {
                if !wanted.is_empty() {
                    report.ok(
                        "extensions",
                        format!(
                            "available on the destination: {}",
                            wanted
                                .iter()
                                .map(|e| e.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    );
                }
            } else {
                report.error(
                    "extensions",
                    format!(
                        "the backup needs extension(s) {} that the destination server does not have; install them there first",
                        missing.join(", ")
                    ),
                );
            }
        }
        Err(e) => report.warn("extensions", format!("{e:#}")),
    }
    (left_out, true)
}

/// Schemas a provider keeps for its own services.
pub(super) fn reserved_schemas(p: Provider) -> &'static [&'static str] {
    match p {
        Provider::Supabase => &provider::SUPABASE_MANAGED_SCHEMAS,
        _ => &[],
    }
}
