//! The `[[retention]]` entries of the coordinator config: one per environment, and optionally
//! one per target that replaces its environment's policy as a whole.
//!
//! ```toml
//! [[retention]]
//! environment = "prod"
//! keep_last = 7
//! keep_daily = 14
//! keep_weekly = 8
//! keep_monthly = 12
//! keep_within = "2d"
//! min_keep = 3
//!
//! [[retention]]
//! target = "prod/orders"
//! keep_daily = 30
//! min_keep = 5
//!
//! [[retention]]                # backups and copies in repository "offsite" of prod
//! environment = "prod"
//! repository = "offsite"
//! keep_monthly = 24
//! min_keep = 3
//! ```
//!
//! Each repository's backups and copies of a target are planned on their own, with the most
//! specific policy: the target's for that repository, the environment's for that repository,
//! the target's, then the environment's.

use std::collections::BTreeMap;

use lifeboat_common::{
    config::ConfigError,
    names::{TargetName, validate_simple},
};
use serde::Deserialize;
use toml::Spanned;

use super::Policy;
use crate::{
    config::at::At,
    schedule::{CronSpec, parse_duration},
};

/// Largest count accepted for any keep rule; larger values are typos.
const MAX_KEEP: u32 = 100_000;

/// The validated retention policies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionConfig {
    pub environments: BTreeMap<String, Policy>,
    /// `ENV/NAME` → its own policy (replaces the environment's).
    pub targets: BTreeMap<String, Policy>,
    /// (environment, repository) → the policy of that environment's backups and copies in
    /// that repository.
    pub environment_repositories: BTreeMap<(String, String), Policy>,
    /// (`ENV/NAME`, repository) → the target's policy in that repository.
    pub target_repositories: BTreeMap<(String, String), Policy>,
    /// When the coordinator applies the policies itself (`[prune]`).
    pub auto: AutoPrune,
}

/// `[prune]`: when the coordinator applies retention on its own, with the same plan, floor
/// and two-phase delete as `lifeboat prune`.
///
/// ```toml
/// [prune]
/// after_backup = true          # a target's policy, after each of its backups succeeds
/// cron = "15 4 * * *"          # every target's, daily ("" turns the daily run off)
/// timezone = "UTC"
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoPrune {
    pub after_backup: bool,
    /// The daily (or other) run over every target; None: off.
    pub schedule: Option<CronSpec>,
}

/// The daily run's default time: 04:15 UTC, after the usual night's backups.
pub const DEFAULT_PRUNE_CRON: &str = "15 4 * * *";

impl Default for AutoPrune {
    fn default() -> Self {
        Self {
            after_backup: true,
            schedule: CronSpec::parse(DEFAULT_PRUNE_CRON, "").ok(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePrune {
    after_backup: Option<bool>,
    cron: Option<Spanned<String>>,
    timezone: Option<Spanned<String>>,
}

/// Validates `[prune]`.
pub(crate) fn validate_auto(at: &At<'_>, f: &FilePrune) -> Result<AutoPrune, ConfigError> {
    let tz = f
        .timezone
        .as_ref()
        .map(|t| t.get_ref().as_str())
        .unwrap_or("");
    let schedule = match &f.cron {
        None => CronSpec::parse(DEFAULT_PRUNE_CRON, tz)
            .map(Some)
            .map_err(|e| match &f.timezone {
                Some(t) => at.err("prune.timezone", t, e),
                None => ConfigError::new(at.file, "prune", e),
            })?,
        Some(c) if c.get_ref().trim().is_empty() => None,
        Some(c) => Some(CronSpec::parse(c.get_ref(), tz).map_err(|e| {
            match (&f.timezone, e.starts_with("time zone")) {
                (Some(t), true) => at.err("prune.timezone", t, e),
                _ => at.err("prune.cron", c, e),
            }
        })?),
    };
    Ok(AutoPrune {
        after_backup: f.after_backup.unwrap_or(true),
        schedule,
    })
}

/// Where a target's policy comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicySource {
    Target,
    Environment,
    TargetRepository,
    EnvironmentRepository,
}

impl RetentionConfig {
    /// The policy for `target`, and where it comes from; None if it has none.
    pub fn policy_for(&self, target: &TargetName) -> Option<(&Policy, PolicySource)> {
        if let Some(p) = self.targets.get(&target.to_string()) {
            return Some((p, PolicySource::Target));
        }
        self.environments
            .get(target.env())
            .map(|p| (p, PolicySource::Environment))
    }

    /// The policy for `target`'s backups and copies in `repository`: the target's for that
    /// repository, the environment's for that repository, then [`Self::policy_for`].
    pub fn policy_for_repository(
        &self,
        target: &TargetName,
        repository: &str,
    ) -> Option<(&Policy, PolicySource)> {
        let key = |scope: &str| (scope.to_owned(), repository.to_owned());
        if let Some(p) = self.target_repositories.get(&key(target.as_str())) {
            return Some((p, PolicySource::TargetRepository));
        }
        if let Some(p) = self.environment_repositories.get(&key(target.env())) {
            return Some((p, PolicySource::EnvironmentRepository));
        }
        self.policy_for(target)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRetention {
    environment: Option<Spanned<String>>,
    target: Option<Spanned<String>>,
    /// Only the backups and copies in this repository (an agent's repository name).
    repository: Option<Spanned<String>>,
    keep_last: Option<Spanned<i64>>,
    keep_hourly: Option<Spanned<i64>>,
    keep_daily: Option<Spanned<i64>>,
    keep_weekly: Option<Spanned<i64>>,
    keep_monthly: Option<Spanned<i64>>,
    keep_yearly: Option<Spanned<i64>>,
    keep_within: Option<Spanned<String>>,
    min_keep: Option<Spanned<i64>>,
}

pub(crate) fn validate(
    at: &At<'_>,
    entries: &[FileRetention],
) -> Result<RetentionConfig, ConfigError> {
    let mut out = RetentionConfig::default();
    for (i, r) in entries.iter().enumerate() {
        let key = |k: &str| format!("retention[{i}].{k}");
        let n = |k: &str, v: &Option<Spanned<i64>>| -> Result<u32, ConfigError> {
            match v {
                None => Ok(0),
                Some(v) if *v.get_ref() < 0 => Err(at.err(
                    &key(k),
                    v,
                    "must not be negative; write 0 (or leave it out) to not use this rule".into(),
                )),
                Some(v) if *v.get_ref() > i64::from(MAX_KEEP) => {
                    Err(at.err(&key(k), v, format!("must be at most {MAX_KEEP}")))
                }
                Some(v) => Ok(u32::try_from(*v.get_ref()).unwrap_or(MAX_KEEP)),
            }
        };
        let keep_within = match &r.keep_within {
            None => None,
            Some(v) => {
                let d = parse_duration(v.get_ref())
                    .map_err(|e| at.err(&key("keep_within"), v, format!("keep_within {e}")))?;
                if d.is_zero() {
                    return Err(at.err(
                        &key("keep_within"),
                        v,
                        "must be longer than 0; leave it out to not use this rule".into(),
                    ));
                }
                Some(d)
            }
        };
        let policy = Policy {
            keep_last: n("keep_last", &r.keep_last)?,
            keep_hourly: n("keep_hourly", &r.keep_hourly)?,
            keep_daily: n("keep_daily", &r.keep_daily)?,
            keep_weekly: n("keep_weekly", &r.keep_weekly)?,
            keep_monthly: n("keep_monthly", &r.keep_monthly)?,
            keep_yearly: n("keep_yearly", &r.keep_yearly)?,
            keep_within,
            min_keep: n("min_keep", &r.min_keep)?,
        };
        let scope_err = |msg: &str| {
            ConfigError::new(
                at.file,
                format!("retention[{i}]"),
                format!("{msg}; write environment = \"prod\" or target = \"prod/orders\""),
            )
        };
        if policy.is_empty() {
            let (k, span) = match (&r.environment, &r.target) {
                (Some(e), _) => ("environment", e),
                (None, Some(t)) => ("target", t),
                (None, None) => return Err(scope_err("names neither an environment nor a target")),
            };
            return Err(at.err(
                &key(k),
                span,
                "has no keep rule (keep_last, keep_hourly, keep_daily, keep_weekly, \
                 keep_monthly, keep_yearly or keep_within); a policy must keep something"
                    .into(),
            ));
        }
        let repository = match &r.repository {
            None => None,
            Some(repo) => {
                validate_simple("repository", repo.get_ref())
                    .map_err(|e| at.err(&key("repository"), repo, e.to_string()))?;
                Some(repo)
            }
        };
        match (&r.environment, &r.target) {
            (Some(env), None) if repository.is_some() => {
                validate_simple("environment", env.get_ref())
                    .map_err(|e| at.err(&key("environment"), env, e.to_string()))?;
                let repo = repository.map(|r| r.get_ref().clone()).unwrap_or_default();
                if out
                    .environment_repositories
                    .insert((env.get_ref().clone(), repo.clone()), policy)
                    .is_some()
                {
                    return Err(at.err(
                        &key("environment"),
                        env,
                        format!(
                            "environment {:?} has two [[retention]] entries for repository {repo:?}; keep one",
                            env.get_ref()
                        ),
                    ));
                }
            }
            (None, Some(t)) if repository.is_some() => {
                let name = TargetName::parse(t.get_ref())
                    .map_err(|e| at.err(&key("target"), t, e.to_string()))?;
                let repo = repository.map(|r| r.get_ref().clone()).unwrap_or_default();
                if out
                    .target_repositories
                    .insert((name.to_string(), repo.clone()), policy)
                    .is_some()
                {
                    return Err(at.err(
                        &key("target"),
                        t,
                        format!(
                            "target {name} has two [[retention]] entries for repository {repo:?}; keep one"
                        ),
                    ));
                }
            }
            (Some(env), None) => {
                validate_simple("environment", env.get_ref())
                    .map_err(|e| at.err(&key("environment"), env, e.to_string()))?;
                if out
                    .environments
                    .insert(env.get_ref().clone(), policy)
                    .is_some()
                {
                    return Err(at.err(
                        &key("environment"),
                        env,
                        format!(
                            "environment {:?} has two [[retention]] entries; keep one",
                            env.get_ref()
                        ),
                    ));
                }
            }
            (None, Some(t)) => {
                let name = TargetName::parse(t.get_ref())
                    .map_err(|e| at.err(&key("target"), t, e.to_string()))?;
                if out.targets.insert(name.to_string(), policy).is_some() {
                    return Err(at.err(
                        &key("target"),
                        t,
                        format!("target {name} has two [[retention]] entries; keep one"),
                    ));
                }
            }
            (Some(_), Some(_)) => {
                return Err(scope_err("names both an environment and a target"));
            }
            (None, None) => return Err(scope_err("names neither an environment nor a target")),
        }
    }
    Ok(out)
}
