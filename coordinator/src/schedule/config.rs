//! The `[scheduler]` and `[[schedule]]` parts of the coordinator config.
//!
//! ```toml
//! [scheduler]
//! catch_up = "run_once"        # or "skip": what to do with runs missed while stopped
//! misfire_grace_secs = 300     # a run this late still counts as on time
//!
//! [[schedule]]                 # default for every target of an environment
//! environment = "prod"
//! cron = "30 2 * * *"
//! timezone = "Europe/Berlin"
//! jitter = "10m"
//!
//! [[schedule]]                 # a verify schedule: every kept backup read back weekly
//! environment = "prod"
//! kind = "verify"
//! cron = "0 5 * * *"
//! cover = "7d"
//! ```

use std::{collections::BTreeMap, time::Duration};

use lifeboat_common::{config::ConfigError, names::validate_simple};
use serde::Deserialize;
use toml::Spanned;

use super::{
    CronSpec, DEFAULT_COVER, MAX_JITTER, ScheduleDef, ScheduleKind, parse_cover, parse_duration,
};
use crate::config::at::At;

/// What to do with occurrences that were missed (the coordinator was stopped, or the run is
/// later than the misfire grace for another reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// Run once for all missed occurrences of a schedule.
    RunOnce,
    /// Record the missed occurrences as skipped and wait for the next one.
    Skip,
}

impl CatchUp {
    pub fn as_str(self) -> &'static str {
        match self {
            CatchUp::RunOnce => "run_once",
            CatchUp::Skip => "skip",
        }
    }
}

/// The validated scheduler settings and environment defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerConfig {
    pub catch_up: CatchUp,
    /// A run started at most this long after its time is on time, not a catch-up.
    pub misfire_grace: Duration,
    /// (environment, kind) → its default schedule (for targets without their own of that
    /// kind).
    pub defaults: BTreeMap<(String, ScheduleKind), ScheduleDef>,
}

pub const DEFAULT_MISFIRE_GRACE_SECS: u64 = 300;

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            catch_up: CatchUp::RunOnce,
            misfire_grace: Duration::from_secs(DEFAULT_MISFIRE_GRACE_SECS),
            defaults: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileScheduler {
    catch_up: Option<CatchUp>,
    misfire_grace_secs: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSchedule {
    environment: Spanned<String>,
    cron: Spanned<String>,
    #[serde(default)]
    timezone: Option<Spanned<String>>,
    #[serde(default)]
    jitter: Option<Spanned<String>>,
    #[serde(default)]
    kind: Option<Spanned<String>>,
    /// Verify schedules: each kept backup is verified at least once per this period.
    #[serde(default)]
    cover: Option<Spanned<String>>,
}

/// Validates `[scheduler]` and every `[[schedule]]`.
pub(crate) fn validate(
    at: &At<'_>,
    scheduler: &FileScheduler,
    schedules: &[FileSchedule],
) -> Result<SchedulerConfig, ConfigError> {
    let misfire_grace = match &scheduler.misfire_grace_secs {
        None => Duration::from_secs(DEFAULT_MISFIRE_GRACE_SECS),
        Some(v) if *v.get_ref() == 0 || *v.get_ref() > 7 * 86_400 => {
            return Err(at.err(
                "scheduler.misfire_grace_secs",
                v,
                "must be between 1 and 604800 seconds (a week)".into(),
            ));
        }
        Some(v) => Duration::from_secs(*v.get_ref()),
    };
    let mut defaults = BTreeMap::new();
    for (i, s) in schedules.iter().enumerate() {
        let key = |k: &str| format!("schedule[{i}].{k}");
        validate_simple("environment", s.environment.get_ref())
            .map_err(|e| at.err(&key("environment"), &s.environment, e.to_string()))?;
        let tz = s
            .timezone
            .as_ref()
            .map(|t| t.get_ref().as_str())
            .unwrap_or("");
        let spec = CronSpec::parse(s.cron.get_ref(), tz).map_err(|e| {
            match (&s.timezone, e.starts_with("time zone")) {
                (Some(t), true) => at.err(&key("timezone"), t, e),
                _ => at.err(&key("cron"), &s.cron, e),
            }
        })?;
        let jitter = match &s.jitter {
            None => Duration::ZERO,
            Some(j) => {
                let d = parse_duration(j.get_ref())
                    .map_err(|e| at.err(&key("jitter"), j, format!("jitter {e}")))?;
                if d > MAX_JITTER {
                    return Err(at.err(
                        &key("jitter"),
                        j,
                        format!("must be at most {}h", MAX_JITTER.as_secs() / 3600),
                    ));
                }
                spec.check_jitter(d)
                    .map_err(|e| at.err(&key("jitter"), j, e))?;
                d
            }
        };
        let kind = match &s.kind {
            None => ScheduleKind::Backup,
            Some(k) => ScheduleKind::parse(k.get_ref()).ok_or_else(|| {
                at.err(
                    &key("kind"),
                    k,
                    format!(
                        "{:?} is not a schedule kind; write \"backup\", \"verify\" or \"drill\"",
                        k.get_ref()
                    ),
                )
            })?,
        };
        let cover = match (&s.cover, kind) {
            (None, ScheduleKind::Verify) => DEFAULT_COVER,
            (None, _) => Duration::ZERO,
            (Some(c), ScheduleKind::Verify) => {
                parse_cover(c.get_ref()).map_err(|e| at.err(&key("cover"), c, e))?
            }
            (Some(c), other) => {
                return Err(at.err(
                    &key("cover"),
                    c,
                    format!(
                        "cover applies to verify schedules only, and this one is a {other} \
                         schedule; remove it, or set kind = \"verify\""
                    ),
                ));
            }
        };
        let def = ScheduleDef {
            spec,
            jitter,
            kind,
            cover,
            drill_into: None,
        };
        if defaults
            .insert((s.environment.get_ref().clone(), kind), def)
            .is_some()
        {
            return Err(at.err(
                &key("environment"),
                &s.environment,
                format!(
                    "environment {:?} has two [[schedule]] entries of kind {kind}; keep one \
                     per environment and kind (set per-target schedules with `lifeboat \
                     schedule set`)",
                    s.environment.get_ref()
                ),
            ));
        }
    }
    Ok(SchedulerConfig {
        catch_up: scheduler.catch_up.unwrap_or(CatchUp::RunOnce),
        misfire_grace,
        defaults,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::{config::parse, retention::Policy};

    use super::*;

    fn minimal(extra: &str) -> String {
        format!(
            "[server]\ngrpc_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n\
             [tls]\nca = \"ca.pem\"\ncert = \"c.pem\"\nkey = \"c.key\"\n\
             [catalog]\nurl = \"sqlite://catalog.db\"\n{extra}"
        )
    }

    fn err(extra: &str) -> String {
        format!(
            "{:#}",
            parse(Path::new("/etc/lifeboat/coordinator.toml"), &minimal(extra))
                .expect_err("config accepted")
        )
    }

    #[test]
    fn defaults_without_sections() {
        let c = parse(Path::new("/c.toml"), &minimal("")).expect("valid");
        assert_eq!(c.scheduler, SchedulerConfig::default());
        assert_eq!(c.scheduler.catch_up, CatchUp::RunOnce);
        assert!(c.retention.environments.is_empty() && c.retention.targets.is_empty());
    }

    #[test]
    fn schedules_and_retention_parse() {
        let c = parse(
            Path::new("/c.toml"),
            &minimal(
                "[scheduler]\ncatch_up = \"skip\"\nmisfire_grace_secs = 120\n\
                 [[schedule]]\nenvironment = \"prod\"\ncron = \"30 2 * * *\"\n\
                 timezone = \"Europe/Berlin\"\njitter = \"10m\"\n\
                 [[schedule]]\nenvironment = \"dev\"\ncron = \"@daily\"\n\
                 [[schedule]]\nenvironment = \"prod\"\ncron = \"0 5 * * *\"\nkind = \"verify\"\n\
                 cover = \"3d\"\n\
                 [[schedule]]\nenvironment = \"dev\"\ncron = \"0 5 * * 0\"\nkind = \"verify\"\n\
                 [[retention]]\nenvironment = \"prod\"\nkeep_last = 7\nkeep_daily = 14\n\
                 keep_within = \"2d\"\nmin_keep = 3\n\
                 [[retention]]\ntarget = \"prod/orders\"\nkeep_monthly = 12\n",
            ),
        )
        .expect("valid");
        assert_eq!(c.scheduler.catch_up, CatchUp::Skip);
        assert_eq!(c.scheduler.misfire_grace, Duration::from_secs(120));
        let d = |env: &str, kind| &c.scheduler.defaults[&(env.to_owned(), kind)];
        let prod = d("prod", ScheduleKind::Backup);
        assert_eq!(prod.spec.timezone(), "Europe/Berlin");
        assert_eq!(prod.jitter, Duration::from_secs(600));
        assert_eq!(prod.cover, Duration::ZERO);
        assert_eq!(d("dev", ScheduleKind::Backup).spec.timezone(), "UTC");
        let verify = d("prod", ScheduleKind::Verify);
        assert_eq!(verify.spec.expr(), "0 5 * * *");
        assert_eq!(verify.cover, Duration::from_secs(3 * 86_400));
        assert_eq!(d("dev", ScheduleKind::Verify).cover, DEFAULT_COVER);
        assert_eq!(
            c.retention.environments["prod"],
            Policy {
                keep_last: 7,
                keep_daily: 14,
                keep_within: Some(Duration::from_secs(2 * 86_400)),
                min_keep: 3,
                ..Policy::default()
            }
        );
        let orders = lifeboat_common::names::TargetName::parse("prod/orders").expect("name");
        let users = lifeboat_common::names::TargetName::parse("prod/users").expect("name");
        let stage = lifeboat_common::names::TargetName::parse("stage/users").expect("name");
        assert_eq!(
            c.retention.policy_for(&orders).map(|(p, _)| p.keep_monthly),
            Some(12)
        );
        assert_eq!(
            c.retention.policy_for(&users).map(|(p, _)| p.keep_last),
            Some(7)
        );
        assert!(c.retention.policy_for(&stage).is_none());
    }

    #[test]
    fn retention_per_repository_takes_the_most_specific_policy() {
        let c = parse(
            Path::new("/c.toml"),
            &minimal(
                "[[retention]]\nenvironment = \"prod\"\nkeep_last = 7\n\
                 [[retention]]\nenvironment = \"prod\"\nrepository = \"offsite\"\n\
                 keep_monthly = 24\n\
                 [[retention]]\ntarget = \"prod/orders\"\nkeep_daily = 30\n\
                 [[retention]]\ntarget = \"prod/orders\"\nrepository = \"vault\"\n\
                 keep_yearly = 5\n",
            ),
        )
        .expect("valid");
        let name = |t: &str| lifeboat_common::names::TargetName::parse(t).expect("name");
        let policy = |t: &str, repo: &str| {
            let (p, _) = c
                .retention
                .policy_for_repository(&name(t), repo)
                .expect("a policy");
            (p.keep_last, p.keep_daily, p.keep_monthly, p.keep_yearly)
        };
        assert_eq!(policy("prod/users", "local"), (7, 0, 0, 0));
        assert_eq!(policy("prod/users", "offsite"), (0, 0, 24, 0));
        assert_eq!(policy("prod/orders", "local"), (0, 30, 0, 0));
        assert_eq!(
            policy("prod/orders", "offsite"),
            (0, 0, 24, 0),
            "the environment's off-site policy before the target's general one"
        );
        assert_eq!(policy("prod/orders", "vault"), (0, 0, 0, 5));
        for (extra, want) in [
            (
                "[[retention]]\nenvironment = \"prod\"\nrepository = \"off site\"\nkeep_last = 1\n",
                "repository",
            ),
            (
                "[[retention]]\nenvironment = \"prod\"\nrepository = \"offsite\"\nkeep_last = 1\n\
                 [[retention]]\nenvironment = \"prod\"\nrepository = \"offsite\"\nkeep_last = 2\n",
                "two [[retention]] entries for repository \"offsite\"",
            ),
        ] {
            let e = parse(Path::new("/c.toml"), &minimal(extra))
                .expect_err(extra)
                .to_string();
            assert!(e.contains(want), "{want:?} not in: {e}");
        }
    }

    #[test]
    fn hostile_values_are_refused_with_key_and_line() {
        for (extra, want) in [
            ("[scheduler]\ncatch_up = \"twice\"\n", "twice"),
            (
                "[scheduler]\nmisfire_grace_secs = 0\n",
                "scheduler.misfire_grace_secs (line 11)",
            ),
            ("[scheduler]\ntypo = 1\n", "typo"),
            (
                "[[schedule]]\nenvironment = \"prod\"\ncron = \"* * * * *\"\n",
                "schedule[0].cron (line 12)",
            ),
            (
                "[[schedule]]\nenvironment = \"prod\"\ncron = \"\"\n",
                "schedule[0].cron",
            ),
            (
                "[[schedule]]\nenvironment = \"prod\"\ncron = \"0 3 * * *\"\ntimezone = \"Berlin\"\n",
                "schedule[0].timezone (line 13)",
            ),
            (
                "[[schedule]]\nenvironment = \"prod\"\ncron = \"0 3 * * *\"\njitter = \"10\"\n",
                "schedule[0].jitter",
            ),
            (
                "[[schedule]]\nenvironment = \"prod\"\ncron = \"0 3 * * *\"\njitter = \"12h\"\n",
                "at most 6h",
            ),
            (
                "[[schedule]]\nenvironment = \"prod\"\ncron = \"*/15 * * * *\"\njitter = \"15m\"\n",
                "not shorter than the gap",
            ),
            (
                "[[schedule]]\nenvironment = \"prod\"\ncron = \"0 3 * * *\"\n\
                 [[schedule]]\nenvironment = \"prod\"\ncron = \"0 4 * * *\"\n",
                "two [[schedule]]",
            ),
            (
                "[[schedule]]\nenvironment = \"prod\"\ncron = \"0 3 * * *\"\nkind = \"restore\"\n",
                "schedule kind",
            ),
            (
                "[[schedule]]\nenvironment = \"prod\"\ncron = \"0 3 * * *\"\ncover = \"7d\"\n",
                "cover applies to verify schedules only",
            ),
            (
                "[[schedule]]\nenvironment = \"prod\"\ncron = \"0 3 * * *\"\nkind = \"verify\"\n\
                 cover = \"5m\"\n",
                "schedule[0].cover",
            ),
            (
                "[[schedule]]\nenvironment = \"prod\"\ncron = \"0 3 * * *\"\nkind = \"verify\"\n\
                 [[schedule]]\nenvironment = \"prod\"\ncron = \"0 4 * * *\"\nkind = \"verify\"\n",
                "of kind verify",
            ),
            (
                "[[retention]]\nenvironment = \"prod\"\nkeep_last = -1\n",
                "retention[0].keep_last (line 12)",
            ),
            ("[[retention]]\nenvironment = \"prod\"\n", "no keep rule"),
            (
                "[[retention]]\nkeep_last = 3\n",
                "neither an environment nor a target",
            ),
            (
                "[[retention]]\nenvironment = \"prod\"\ntarget = \"prod/x\"\nkeep_last = 3\n",
                "both",
            ),
            (
                "[[retention]]\ntarget = \"orders\"\nkeep_last = 3\n",
                "retention[0].target",
            ),
            (
                "[[retention]]\nenvironment = \"prod\"\nkeep_within = \"0s\"\n",
                "longer than 0",
            ),
            (
                "[[retention]]\nenvironment = \"prod\"\nkeep_daily = 3\nkeep_forever = true\n",
                "keep_forever",
            ),
            (
                "[[retention]]\nenvironment = \"prod\"\nkeep_last = 1\n\
                 [[retention]]\nenvironment = \"prod\"\nkeep_last = 2\n",
                "two [[retention]]",
            ),
        ] {
            let e = err(extra);
            assert!(e.contains(want), "{extra:?}: {e}");
        }
    }
}
