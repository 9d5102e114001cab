//! Who may do what. Identity comes from the client certificate only; the role from the
//! coordinator's `[[operator]]` table.

use lifeboat_common::identity::Identity;

use crate::{
    config::{Config, Role},
    error::Error,
};

/// Every Control call, as far as authorization cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    WhoAmI,
    ListAgents,
    ListTargets,
    ListBackups,
    GetBackup,
    PitrWindow,
    ListJobs,
    GetJob,
    WatchJob,
    StartBackup,
    VerifyBackup,
    /// Reads a physical target's whole WAL archive back (`lifeboat pitr verify`).
    VerifyWal,
    Restore {
        clean: bool,
    },
    CancelJob,
    ListSchedules,
    NextRuns,
    ListScheduleRuns,
    SetSchedule,
    PauseSchedule,
    ResumeSchedule,
    DeleteSchedule,
    PinBackup,
    /// Makes a backup deletable again.
    UnpinBackup,
    /// A dry run only reads; a real prune deletes backups.
    Prune {
        dry_run: bool,
    },
    /// Runs list jobs on agents and (unless a dry run) writes backups into the catalog.
    RebuildCatalog {
        dry_run: bool,
    },
    /// Runs a read-only check job on the target's agent (it connects to the database).
    CheckTarget,
    /// Plans a restore (a read-only check job), with or without `--clean`.
    RestoreDryRun,
    ListAudit,
    /// Frees a target from its agent so another agent may claim it.
    ReleaseTarget,
    /// Writes a backup's decompressed dump to a file on its agent's host
    /// (`backup export`): a full copy of the data outside the database's access control.
    ExportBackup,
    /// Deletes one backup (`backup delete`).
    DeleteBackup,
    /// Lists recorded restore drills.
    ListDrills,
    /// Queues a restore drill: a restore into a new scratch database, checked, timed and
    /// dropped.
    Drill,
    /// Recreates a backup's globals (roles, memberships) on a server, alone or before a
    /// restore; `superuser`: roles with SUPERUSER may be created too.
    RestoreGlobals {
        superuser: bool,
    },
    /// Copies a backup to another repository of its agent (`backup copy`).
    CopyBackup,
    ListKeys,
    RotateKeys {
        dry_run: bool,
    },
}

impl Action {
    /// The least role allowed to perform the action.
    pub fn required_role(self) -> Role {
        match self {
            Action::WhoAmI
            | Action::ListAgents
            | Action::ListTargets
            | Action::ListBackups
            | Action::GetBackup
            | Action::PitrWindow
            | Action::ListJobs
            | Action::GetJob
            | Action::WatchJob
            | Action::ListSchedules
            | Action::NextRuns
            | Action::ListScheduleRuns
            | Action::Prune { dry_run: true }
            | Action::ListDrills
            | Action::ListKeys => Role::Viewer,
            Action::StartBackup
            | Action::VerifyBackup
            | Action::VerifyWal
            | Action::Restore { clean: false }
            | Action::CancelJob
            | Action::SetSchedule
            | Action::PauseSchedule
            | Action::ResumeSchedule
            | Action::DeleteSchedule
            | Action::PinBackup
            | Action::CheckTarget
            | Action::RestoreDryRun
            | Action::RestoreGlobals { superuser: false }
            | Action::ListAudit
            | Action::Drill
            | Action::CopyBackup
            | Action::RotateKeys { dry_run: true } => Role::Operator,
            Action::Restore { clean: true }
            | Action::RestoreGlobals { superuser: true }
            | Action::UnpinBackup
            | Action::Prune { dry_run: false }
            | Action::RebuildCatalog { .. }
            | Action::ReleaseTarget
            | Action::ExportBackup
            | Action::DeleteBackup
            | Action::RotateKeys { dry_run: false } => Role::Admin,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Action::WhoAmI => "who_am_i",
            Action::ListAgents => "list_agents",
            Action::ListTargets => "list_targets",
            Action::ListBackups => "list_backups",
            Action::GetBackup => "get_backup",
            Action::PitrWindow => "pitr_window",
            Action::ListJobs => "list_jobs",
            Action::GetJob => "get_job",
            Action::WatchJob => "watch_job",
            Action::StartBackup => "start_backup",
            Action::VerifyBackup => "verify_backup",
            Action::VerifyWal => "verify_wal",
            Action::Restore { clean: false } => "restore",
            Action::Restore { clean: true } => "restore_clean",
            Action::CancelJob => "cancel_job",
            Action::ListSchedules => "list_schedules",
            Action::NextRuns => "next_runs",
            Action::ListScheduleRuns => "list_schedule_runs",
            Action::SetSchedule => "set_schedule",
            Action::PauseSchedule => "pause_schedule",
            Action::ResumeSchedule => "resume_schedule",
            Action::DeleteSchedule => "delete_schedule",
            Action::PinBackup => "pin_backup",
            Action::UnpinBackup => "unpin_backup",
            Action::Prune { dry_run: true } => "prune_dry_run",
            Action::Prune { dry_run: false } => "prune",
            Action::RebuildCatalog { dry_run: true } => "rebuild_catalog_dry_run",
            Action::RebuildCatalog { dry_run: false } => "rebuild_catalog",
            Action::CheckTarget => "check_target",
            Action::RestoreDryRun => "restore_dry_run",
            Action::ListAudit => "list_audit",
            Action::ReleaseTarget => "release_target",
            Action::ExportBackup => "export_backup",
            Action::DeleteBackup => "delete_backup",
            Action::ListDrills => "list_drills",
            Action::Drill => "drill",
            Action::RestoreGlobals { superuser: false } => "restore_globals",
            Action::RestoreGlobals { superuser: true } => "restore_globals_superuser",
            Action::CopyBackup => "copy_backup",
            Action::ListKeys => "list_keys",
            Action::RotateKeys { dry_run: true } => "rotate_keys_dry_run",
            Action::RotateKeys { dry_run: false } => "rotate_keys",
        }
    }
}

/// An operator allowed to make a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub name: String,
    pub role: Role,
}

/// Decides whether `identity` may perform `action` on the Control API.
pub fn authorize(config: &Config, identity: &Identity, action: Action) -> Result<Operator, Error> {
    let name = match identity {
        Identity::Operator(name) => name,
        Identity::Agent(name) => {
            return Err(Error::PermissionDenied(format!(
                "agent certificate (agent {name}) may not call the Control API; agents may only \
                 open the agent session, operators need an operator certificate"
            )));
        }
    };
    // Refusals name the identity and the missing grant, never the coordinator's config file
    // or its layout (L9).
    let Some(role) = config.role_of(name) else {
        return Err(Error::PermissionDenied(format!(
            "operator {name} has no role on this coordinator; ask an administrator to grant \
             operator {name} a role (viewer, operator or admin)"
        )));
    };
    let needed = action.required_role();
    if role < needed {
        let what = match action {
            Action::Restore { clean: true } => "restore with --clean over an existing database",
            Action::Prune { dry_run: false } => "prune (deleting backups)",
            Action::UnpinBackup => "unpin (making a backup deletable)",
            Action::DeleteBackup => "deleting a backup",
            Action::RotateKeys { dry_run: false } => {
                "key rotation (changing who can decrypt backups)"
            }
            Action::RebuildCatalog { .. } => "catalog rebuild",
            Action::ReleaseTarget => "releasing a target to another agent",
            Action::RestoreGlobals { superuser: true } => {
                "restoring globals with --allow-superuser (creating SUPERUSER roles)"
            }
            Action::ExportBackup => {
                "export (a full copy of the data in a file on the agent's host)"
            }
            _ => action.name(),
        };
        return Err(Error::PermissionDenied(format!(
            "operator {name} has role {role}; {what} needs role {needed}; ask an administrator \
             to grant operator {name} role {needed}"
        )));
    }
    Ok(Operator {
        name: name.clone(),
        role,
    })
}

/// Whether `operator`'s role applies in `environment` (`[[operator]] environments`; an
/// operator without the key has its role everywhere).
pub fn in_environment(config: &Config, operator: &str, environment: &str) -> bool {
    config
        .environments_of(operator)
        .is_none_or(|envs| envs.iter().any(|e| e == environment))
}

/// Whether `operator`'s role applies in every environment.
pub fn is_unscoped(config: &Config, operator: &str) -> bool {
    config.environments_of(operator).is_none()
}

/// Refuses `what` in `environment` unless the operator's role applies there (M12).
pub fn check_environment(
    config: &Config,
    op: &Operator,
    environment: &str,
    what: &str,
) -> Result<(), Error> {
    if in_environment(config, &op.name, environment) {
        return Ok(());
    }
    let scope = config
        .environments_of(&op.name)
        .unwrap_or_default()
        .join(", ");
    Err(Error::PermissionDenied(format!(
        "operator {} has role {} only in environment(s) {scope}; {what} is in environment \
         {environment}; ask an administrator to grant operator {} environment {environment}",
        op.name, op.role, op.name
    )))
}

/// Refuses `what` (which spans every environment) unless the operator's role applies in all.
pub fn check_unscoped(config: &Config, op: &Operator, what: &str) -> Result<(), Error> {
    if is_unscoped(config, &op.name) {
        return Ok(());
    }
    let scope = config
        .environments_of(&op.name)
        .unwrap_or_default()
        .join(", ");
    Err(Error::PermissionDenied(format!(
        "operator {} has role {} only in environment(s) {scope}; {what} spans every \
         environment; ask an administrator to grant operator {} all environments",
        op.name, op.role, op.name
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let mut c = crate::config::parse(
            std::path::Path::new("/etc/lifeboat/coordinator.toml"),
            include_str!("../../../deploy/coordinator.example.toml"),
        )
        .expect("example config");
        c.operators.insert("olga".into(), Role::Operator);
        c
    }

    const ALL: [Action; 42] = [
        Action::WhoAmI,
        Action::ListAgents,
        Action::ListTargets,
        Action::ListBackups,
        Action::GetBackup,
        Action::PitrWindow,
        Action::ListJobs,
        Action::GetJob,
        Action::WatchJob,
        Action::StartBackup,
        Action::VerifyBackup,
        Action::VerifyWal,
        Action::Restore { clean: false },
        Action::Restore { clean: true },
        Action::CancelJob,
        Action::ListSchedules,
        Action::NextRuns,
        Action::ListScheduleRuns,
        Action::Prune { dry_run: true },
        Action::SetSchedule,
        Action::PauseSchedule,
        Action::ResumeSchedule,
        Action::DeleteSchedule,
        Action::PinBackup,
        Action::UnpinBackup,
        Action::Prune { dry_run: false },
        Action::RebuildCatalog { dry_run: true },
        Action::RebuildCatalog { dry_run: false },
        Action::CheckTarget,
        Action::RestoreDryRun,
        Action::ListAudit,
        Action::ReleaseTarget,
        Action::ExportBackup,
        Action::DeleteBackup,
        Action::ListDrills,
        Action::Drill,
        Action::RestoreGlobals { superuser: false },
        Action::RestoreGlobals { superuser: true },
        Action::CopyBackup,
        Action::ListKeys,
        Action::RotateKeys { dry_run: true },
        Action::RotateKeys { dry_run: false },
    ];

    #[test]
    fn role_table() {
        let c = config();
        let allowed = |who: &str| -> Vec<&str> {
            ALL.iter()
                .filter(|a| authorize(&c, &Identity::Operator(who.into()), **a).is_ok())
                .map(|a| a.name())
                .collect()
        };
        let reads = [
            "who_am_i",
            "list_agents",
            "list_targets",
            "list_backups",
            "get_backup",
            "pitr_window",
            "list_jobs",
            "get_job",
            "watch_job",
            "list_schedules",
            "next_runs",
            "list_schedule_runs",
            "prune_dry_run",
        ];
        let mut viewer = reads.to_vec();
        viewer.extend(["list_drills", "list_keys"]);
        assert_eq!(allowed("grafana-bot"), viewer);
        let mut ops = reads.to_vec();
        ops.splice(
            9..9,
            [
                "start_backup",
                "verify_backup",
                "verify_wal",
                "restore",
                "cancel_job",
            ],
        );
        ops.extend([
            "set_schedule",
            "pause_schedule",
            "resume_schedule",
            "delete_schedule",
            "pin_backup",
            "check_target",
            "restore_dry_run",
            "list_audit",
            "list_drills",
            "drill",
            "restore_globals",
            "copy_backup",
            "list_keys",
            "rotate_keys_dry_run",
        ]);
        assert_eq!(allowed("olga"), ops);
        assert_eq!(allowed("alice").len(), ALL.len());
        assert!(allowed("mallory").is_empty());
    }

    /// Item 11 (M12): a scoped operator acts only in its environments.
    #[test]
    fn environment_scope() {
        let mut c = config();
        c.operator_environments
            .insert("olga".into(), vec!["dev".into(), "staging".into()]);
        let olga = authorize(&c, &Identity::Operator("olga".into()), Action::StartBackup)
            .expect("operator");
        check_environment(&c, &olga, "dev", "backup of dev/x").expect("in scope");
        let e = check_environment(&c, &olga, "prod", "backup of prod/x")
            .expect_err("out of scope")
            .to_string();
        assert!(
            e.contains("operator olga") && e.contains("environment prod"),
            "{e}"
        );
        assert!(e.contains("ask an administrator"), "{e}");
        check_unscoped(&c, &olga, "a catalog rebuild").expect_err("scoped rebuild");
        let alice =
            authorize(&c, &Identity::Operator("alice".into()), Action::WhoAmI).expect("admin");
        check_environment(&c, &alice, "prod", "anything").expect("unscoped");
        check_unscoped(&c, &alice, "a catalog rebuild").expect("unscoped");
    }

    #[test]
    fn refusals_say_why() {
        let c = config();
        let e = authorize(&c, &Identity::Agent("prod-1".into()), Action::WhoAmI)
            .expect_err("agent allowed");
        assert!(e.to_string().contains("agent certificate"), "{e}");
        let e = authorize(&c, &Identity::Operator("mallory".into()), Action::WhoAmI)
            .expect_err("unlisted allowed");
        let e = e.to_string();
        // L9: the identity and what to ask for; not the config file or its layout.
        assert!(
            e.contains("operator mallory") && e.contains("ask an administrator"),
            "{e}"
        );
        assert!(!e.contains("coordinator.toml") && !e.contains("[["), "{e}");
        let e = authorize(
            &c,
            &Identity::Operator("olga".into()),
            Action::Restore { clean: true },
        )
        .expect_err("operator may clean");
        let text = e.to_string();
        assert!(text.contains("needs role admin"), "{text}");
        assert!(
            text.contains("ask an administrator to grant operator olga role admin"),
            "{text}"
        );
        assert!(
            !text.contains("coordinator.toml") && !text.contains("[["),
            "{text}"
        );
        assert!(matches!(e, Error::PermissionDenied(_)));
    }
}
