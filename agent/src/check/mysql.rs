//! `targets check` for a MySQL/MariaDB target.

use lifeboat_common::secret::Secret;
use sqlx::mysql::MySqlConnection;

use super::size_finding;
use crate::{
    backup::init_mysql_session,
    config::TargetConfig,
    engine::mysql::{self as my, ClientTool, DefaultsFile, DumpPlan, ServerFacts, objects},
    job::JobCtx,
    provider::{self, Provider},
};

pub(super) async fn check(ctx: &JobCtx, target: &TargetConfig, password: Option<&Secret<String>>) {
    let report = &ctx.report;
    let Some(params) = target.mysql.as_ref() else {
        return report.error("connection", "target has no MySQL connection parameters");
    };
    let Some(mut conn) = report.check(
        "connection",
        my::connect(params, password, Some(&target.database)).await,
    ) else {
        return;
    };
    if report
        .check(
            "connection",
            init_mysql_session(&mut conn, target.profile).await,
        )
        .is_none()
    {
        return;
    }
    report.ok(
        "connection",
        format!("connected to {}", params.describe(&target.database)),
    );
    let Some(facts) = report.check(
        "server",
        my::server_facts(&mut conn, Some(&target.database)).await,
    ) else {
        return;
    };
    report.ok(
        "server",
        format!("{} ({})", facts.describe(), facts.version_string),
    );

    let tool = probe_tool(
        ctx,
        "dump_tool",
        my::find_dump_tool(target.mysql_bin_dir.as_deref(), facts.flavor),
        &facts,
        true,
    )
    .await;
    let _client = probe_tool(
        ctx,
        "restore_tool",
        my::find_client_tool(target.mysql_bin_dir.as_deref(), facts.flavor),
        &facts,
        false,
    )
    .await;
    let granted = privileges(ctx, &mut conn, &target.database).await;
    match my::non_transactional_tables(&mut conn, &target.database).await {
        Ok(list) if !list.is_empty() => {
            let names: Vec<String> = list.iter().map(|(t, e)| format!("{t} ({e})")).collect();
            report.warn(
                "consistency",
                format!(
                    "tables without transactions are dumped as they are when read, not in the dump's snapshot: {}",
                    names.join(", ")
                ),
            );
        }
        Ok(_) => report.ok(
            "consistency",
            "every table is transactional: the dump is one consistent snapshot",
        ),
        Err(e) => report.warn("consistency", format!("{e:#}")),
    }
    if let Some(tool) = &tool
        && (target.profile == Provider::Planetscale || facts.flavor == my::ServerFlavor::Vitess)
    {
        match my::row_counts(&mut conn, &target.database, false).await {
            Ok(est) => {
                let largest = est.iter().max_by_key(|r| r.rows);
                if let Err(e) = provider::check_row_limit(
                    target.profile,
                    tool,
                    &facts,
                    largest.map(|r| (r.table.as_str(), r.rows)),
                ) {
                    report.error("row_limit", e);
                }
            }
            Err(e) => report.warn("row_limit", format!("{e:#}")),
        }
    }
    size_finding(ctx, facts.size_bytes);
    let _ = sqlx::Connection::close(conn).await;
    if let Some(tool) = tool
        && granted
    {
        schema_dump(ctx, target, password, &tool, &facts).await;
    }
}

/// Finds and probes a client tool and checks it against the server. A dump tool that cannot
/// be used is an error; a restore tool only a warning (backups still work).
async fn probe_tool(
    ctx: &JobCtx,
    check: &str,
    found: anyhow::Result<std::path::PathBuf>,
    facts: &ServerFacts,
    required: bool,
) -> Option<ClientTool> {
    let report = &ctx.report;
    let bad = |msg: String| {
        if required {
            report.error(check, msg);
        } else {
            report.warn(check, format!("{msg}; restores into this target need it"));
        }
    };
    let tool = match found {
        Ok(path) => match ClientTool::probe(&path).await {
            Ok(t) => t,
            Err(e) => {
                bad(format!("{e:#}"));
                return None;
            }
        },
        Err(e) => {
            bad(format!("{e:#}"));
            return None;
        }
    };
    match my::check_client(&tool, facts) {
        Ok(warnings) => {
            report.ok(
                check,
                format!("{} ({})", tool.describe(), tool.path.display()),
            );
            for w in warnings {
                report.warn(check, w);
            }
            Some(tool)
        }
        Err(e) => {
            bad(format!("{e:#}"));
            None
        }
    }
}

/// The privileges a dump needs on the database, granted globally or on the database. Returns
/// false when some are certainly missing.
async fn privileges(ctx: &JobCtx, conn: &mut MySqlConnection, database: &str) -> bool {
    let report = &ctx.report;
    let have = match objects::privileges(conn, database).await {
        Ok(h) => h,
        Err(e) => {
            report.warn("privileges", format!("{e:#}"));
            return true;
        }
    };
    let lacking = objects::lacking(&objects::DUMP_PRIVILEGES, &have);
    if lacking.is_empty() {
        report.ok(
            "privileges",
            format!("{} on {database}", objects::DUMP_PRIVILEGES.join(", ")),
        );
        return true;
    }
    // Privileges that come through a role are not visible in information_schema.
    let role: Option<String> = sqlx::query_scalar("SELECT CAST(CURRENT_ROLE() AS CHAR)")
        .fetch_one(&mut *conn)
        .await
        .ok()
        .flatten()
        .filter(|r: &String| !r.is_empty() && r != "NONE");
    let msg = format!(
        "the backup user lacks {} on {database} (granted globally or on the database); GRANT {} ON `{database}`.* TO the backup user{}",
        lacking.join(", "),
        objects::DUMP_PRIVILEGES.join(", "),
        if lacking.contains(&"SELECT") {
            "; tables granted one by one are invisible to the dump when they are missing a grant"
        } else {
            ""
        }
    );
    match role {
        Some(r) => {
            report.warn(
                "privileges",
                format!("{msg} (role {r} is active and may grant them)"),
            );
            true
        }
        None => {
            report.error("privileges", msg);
            false
        }
    }
}

/// The dump tool with `--no-data`, to nowhere: it runs against this server with these
/// credentials and privileges, and reads every definition, but no rows.
async fn schema_dump(
    ctx: &JobCtx,
    target: &TargetConfig,
    password: Option<&Secret<String>>,
    tool: &ClientTool,
    facts: &ServerFacts,
) {
    let Some(params) = target.mysql.as_ref() else {
        return;
    };
    let defaults = match DefaultsFile::create(&ctx.config.state_dir, params, password, tool.flavor)
    {
        Ok(d) => d,
        Err(e) => return ctx.report.error("dump", format!("{e:#}")),
    };
    let mut extra = provider::dump_args(target.profile, tool, facts);
    extra.push("--no-data".into());
    let plan = DumpPlan {
        tool,
        server: facts,
        database: &target.database,
        provider_args: &extra,
    };
    let cmd = my::dump_command(&plan, &defaults, &ctx.config.state_dir);
    super::probe_dump(ctx, cmd, &format!("{} --no-data", tool.name)).await;
    drop(defaults);
}
