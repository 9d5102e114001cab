//! Declared recovery objectives (RPO, RTO) per target, and the health settings that judge
//! agents. Parsed from `[objectives]` and `[health]` in the coordinator config; durations are
//! written like `"26h"`, `"90m"`, `"1h 30m"`.
//!
//! An objective is looked up most specific first: `[objectives.target."ENV/NAME"]`, then
//! `[objectives.environment.ENV]`, then `[objectives]`.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use lifeboat_common::{
    config::ConfigError,
    names::{TargetName, validate_simple},
};
use serde::Deserialize;
use toml::Spanned;

/// Daily backups with two hours of slack.
pub const DEFAULT_RPO: Duration = Duration::from_secs(26 * 3600);
pub const DEFAULT_RTO: Duration = Duration::from_secs(4 * 3600);
/// A target whose recovery point is older than this share of its RPO is a warning.
pub const DEFAULT_WARNING_PERCENT: u8 = 80;
/// Upper bound on every duration: a year. Larger values are typos.
const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// The objectives of one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Objective {
    /// Recovery point objective: the newest complete backup may be at most this old.
    pub rpo: Duration,
    /// Recovery time objective: a restore should finish within this.
    pub rto: Duration,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Override {
    rpo: Option<Duration>,
    rto: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Objectives {
    default: Objective,
    /// Percent of the RPO after which the recovery point age is a warning.
    pub warning_percent: u8,
    environments: BTreeMap<String, Override>,
    targets: BTreeMap<String, Override>,
}

impl Default for Objectives {
    fn default() -> Self {
        Self {
            default: Objective {
                rpo: DEFAULT_RPO,
                rto: DEFAULT_RTO,
            },
            warning_percent: DEFAULT_WARNING_PERCENT,
            environments: BTreeMap::new(),
            targets: BTreeMap::new(),
        }
    }
}

impl Objectives {
    /// The objectives of `target`: its own, else its environment's, else the defaults.
    pub fn for_target(&self, target: &TargetName) -> Objective {
        let t = self
            .targets
            .get(target.as_str())
            .copied()
            .unwrap_or_default();
        let e = self
            .environments
            .get(target.env())
            .copied()
            .unwrap_or_default();
        Objective {
            rpo: t.rpo.or(e.rpo).unwrap_or(self.default.rpo),
            rto: t.rto.or(e.rto).unwrap_or(self.default.rto),
        }
    }

    /// The age at which a recovery point becomes a warning for an RPO.
    pub fn warning_age(&self, rpo: Duration) -> Duration {
        rpo.mul_f64(f64::from(self.warning_percent) / 100.0)
    }
}

/// How agents are judged in `/health/detailed` and by the alerts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// A connected agent silent this long is stale. Default: three heartbeat intervals.
    pub agent_stale_after: Option<Duration>,
    /// Clock skew beyond this (either way) is a warning.
    pub max_clock_skew: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            agent_stale_after: None,
            max_clock_skew: Duration::from_secs(30),
        }
    }
}

impl HealthConfig {
    pub fn stale_after(&self, heartbeat: Duration) -> Duration {
        self.agent_stale_after.unwrap_or(heartbeat * 3)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileObjectives {
    rpo: Option<Spanned<String>>,
    rto: Option<Spanned<String>>,
    warning_percent: Option<Spanned<i64>>,
    #[serde(default)]
    environment: BTreeMap<String, FileOverride>,
    #[serde(default)]
    target: BTreeMap<String, FileOverride>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileOverride {
    rpo: Option<Spanned<String>>,
    rto: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileHealth {
    agent_stale_after: Option<Spanned<String>>,
    max_clock_skew: Option<Spanned<String>>,
}

/// Builds `FILE: KEY (line N): MESSAGE` errors for values read with their span.
pub(crate) struct Located<'a> {
    pub file: &'a Path,
    pub text: &'a str,
}

impl Located<'_> {
    pub fn err<T>(&self, key: &str, spanned: &Spanned<T>, message: String) -> ConfigError {
        let start = spanned.span().start.min(self.text.len());
        let line = self.text[..start].matches('\n').count() + 1;
        ConfigError::new(self.file, format!("{key} (line {line})"), message)
    }

    pub fn plain(&self, key: &str, message: String) -> ConfigError {
        ConfigError::new(self.file, key, message)
    }

    /// A duration like `"26h"` or `"90s"`: more than zero, at most a year.
    pub fn duration(&self, key: &str, value: &Spanned<String>) -> Result<Duration, ConfigError> {
        let d = humantime::parse_duration(value.get_ref().trim()).map_err(|e| {
            self.err(
                key,
                value,
                format!(
                    "{:?} is not a duration ({e}); write e.g. \"26h\", \"90m\" or \"30s\"",
                    value.get_ref()
                ),
            )
        })?;
        if d.is_zero() {
            return Err(self.err(key, value, "must be longer than zero".into()));
        }
        if d > MAX_DURATION {
            return Err(self.err(key, value, "must be at most a year (\"366d\")".into()));
        }
        Ok(d)
    }

    pub fn opt_duration(
        &self,
        key: &str,
        value: Option<&Spanned<String>>,
    ) -> Result<Option<Duration>, ConfigError> {
        value.map(|v| self.duration(key, v)).transpose()
    }

    /// A path that must not be empty or contain `..`, resolved against the config's directory.
    pub fn path(&self, key: &str, value: &Spanned<PathBuf>) -> Result<PathBuf, ConfigError> {
        let p = value.get_ref();
        if p.as_os_str().is_empty() {
            return Err(self.err(key, value, "must not be empty; give a file path".into()));
        }
        lifeboat_common::config::check_no_parent(self.file, key, p)
            .map_err(|e| self.err(key, value, e.message))?;
        Ok(lifeboat_common::config::resolve(self.file, p))
    }
}

impl FileObjectives {
    pub(crate) fn validate(self, at: &Located<'_>) -> Result<Objectives, ConfigError> {
        let mut out = Objectives::default();
        if let Some(rpo) = at.opt_duration("objectives.rpo", self.rpo.as_ref())? {
            out.default.rpo = rpo;
        }
        if let Some(rto) = at.opt_duration("objectives.rto", self.rto.as_ref())? {
            out.default.rto = rto;
        }
        if let Some(p) = &self.warning_percent {
            let v = *p.get_ref();
            if !(1..=99).contains(&v) {
                return Err(at.err(
                    "objectives.warning_percent",
                    p,
                    format!("{v} is out of range; use 1 to 99 (percent of the RPO)"),
                ));
            }
            out.warning_percent = u8::try_from(v).unwrap_or(DEFAULT_WARNING_PERCENT);
        }
        for (env, o) in self.environment {
            validate_simple("environment", &env)
                .map_err(|e| at.plain(&format!("objectives.environment.{env}"), e.to_string()))?;
            let key = format!("objectives.environment.{env}");
            out.environments.insert(env, o.validate(at, &key)?);
        }
        for (target, o) in self.target {
            let key = format!("objectives.target.\"{target}\"");
            TargetName::parse(&target).map_err(|e| {
                at.plain(
                    &key,
                    format!("{e}; name targets as \"ENV/NAME\", e.g. [objectives.target.\"prod/orders\"]"),
                )
            })?;
            out.targets.insert(target, o.validate(at, &key)?);
        }
        Ok(out)
    }
}

impl FileOverride {
    fn validate(self, at: &Located<'_>, key: &str) -> Result<Override, ConfigError> {
        Ok(Override {
            rpo: at.opt_duration(&format!("{key}.rpo"), self.rpo.as_ref())?,
            rto: at.opt_duration(&format!("{key}.rto"), self.rto.as_ref())?,
        })
    }
}

impl FileHealth {
    pub(crate) fn validate(self, at: &Located<'_>) -> Result<HealthConfig, ConfigError> {
        let mut out = HealthConfig {
            agent_stale_after: at
                .opt_duration("health.agent_stale_after", self.agent_stale_after.as_ref())?,
            ..HealthConfig::default()
        };
        if let Some(skew) =
            at.opt_duration("health.max_clock_skew", self.max_clock_skew.as_ref())?
        {
            out.max_clock_skew = skew;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Objectives, String> {
        #[derive(Deserialize)]
        struct W {
            #[serde(default)]
            objectives: FileObjectives,
        }
        let w: W = toml::from_str(text).map_err(|e| e.to_string())?;
        let at = Located {
            file: Path::new("/etc/c.toml"),
            text,
        };
        w.objectives.validate(&at).map_err(|e| e.to_string())
    }

    #[test]
    fn most_specific_objective_wins() {
        let o = parse(
            "[objectives]\nrpo = \"26h\"\nrto = \"4h\"\n\
             [objectives.environment.dev]\nrpo = \"7d\"\n\
             [objectives.target.\"prod/orders\"]\nrpo = \"1h\"\nrto = \"30m\"\n",
        )
        .expect("valid");
        let h = |n: u64| Duration::from_secs(n * 3600);
        assert_eq!(
            o.for_target(&"prod/users".parse().expect("target")).rpo,
            h(26)
        );
        assert_eq!(
            o.for_target(&"prod/orders".parse().expect("target")).rpo,
            h(1)
        );
        assert_eq!(
            o.for_target(&"prod/orders".parse().expect("target")).rto,
            Duration::from_secs(1800)
        );
        assert_eq!(
            o.for_target(&"dev/x".parse().expect("target")).rpo,
            h(7 * 24)
        );
        assert_eq!(
            o.for_target(&"dev/x".parse().expect("target")).rto,
            h(4),
            "rto falls back to the default"
        );
        assert_eq!(o.warning_age(h(10)), h(8));
    }

    #[test]
    fn defaults_without_a_section() {
        let o = parse("").expect("valid");
        assert_eq!(
            o.for_target(&"a/b".parse().expect("target")).rpo,
            DEFAULT_RPO
        );
        assert_eq!(o.warning_percent, 80);
    }

    #[test]
    fn bad_values_name_key_and_line() {
        let e = parse("[objectives]\nrpo = \"soon\"\n").expect_err("accepted");
        assert!(
            e.contains("objectives.rpo (line 2)") && e.contains("26h"),
            "{e}"
        );
        let e = parse("[objectives]\nrpo = \"0s\"\n").expect_err("accepted");
        assert!(e.contains("longer than zero"), "{e}");
        let e = parse("[objectives]\nwarning_percent = 100\n").expect_err("accepted");
        assert!(e.contains("warning_percent (line 2)"), "{e}");
        let e = parse("[objectives.target.orders]\nrpo = \"1h\"\n").expect_err("accepted");
        assert!(e.contains("objectives.target.\"orders\""), "{e}");
        let e = parse("[objectives.environment.prod]\nrpo = \"1h\"\nbogus = 1\n")
            .expect_err("accepted");
        assert!(e.contains("bogus"), "{e}");
        let e = parse("[objectives.environment.prod]\nrto = \"400d\"\n").expect_err("accepted");
        assert!(
            e.contains("objectives.environment.prod.rto (line 2)"),
            "{e}"
        );
    }
}
