//! Argument values checked as clap parses them: bad input exits with status 2 before any
//! connection is made.

use std::net::IpAddr;

use lifeboat_common::names::TargetName;

pub(super) fn parse_target(s: &str) -> Result<TargetName, String> {
    TargetName::parse(s).map_err(|e| e.to_string())
}

pub(super) fn parse_agent(s: &str) -> Result<String, String> {
    lifeboat_common::names::validate_simple("agent name", s).map_err(|e| e.to_string())?;
    Ok(s.to_owned())
}

pub(super) fn parse_backup_id(s: &str) -> Result<String, String> {
    lifeboat_common::ids::validate_id("backup id", s).map_err(|e| e.to_string())?;
    Ok(s.to_owned())
}

pub(super) fn parse_export_path(s: &str) -> Result<String, String> {
    lifeboat_proto::domain::ExportPath::parse(s.to_owned()).map_err(|e| e.0)?;
    Ok(s.to_owned())
}

pub(super) fn parse_repository(s: &str) -> Result<String, String> {
    lifeboat_common::names::validate_simple("repository name", s).map_err(|e| e.to_string())?;
    Ok(s.to_owned())
}

pub(super) fn parse_job_id(s: &str) -> Result<String, String> {
    lifeboat_common::ids::validate_id("job id", s).map_err(|e| e.to_string())?;
    Ok(s.to_owned())
}

pub(super) fn parse_actor(s: &str) -> Result<String, String> {
    let name = s.strip_prefix("operator/").unwrap_or(s);
    if let Some(schedule) = s.strip_prefix("schedule/") {
        lifeboat_common::names::validate_simple("schedule name", schedule)
            .map_err(|e| e.to_string())?;
        return Ok(s.to_owned());
    }
    if let Some(agent) = s.strip_prefix("agent/") {
        lifeboat_common::names::validate_simple("agent name", agent).map_err(|e| e.to_string())?;
        return Ok(s.to_owned());
    }
    lifeboat_common::names::validate_simple("operator name", name).map_err(|e| e.to_string())?;
    Ok(name.to_owned())
}

pub(super) fn parse_action(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 64 || !s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        return Err(format!(
            "{s:?} is not an action name; actions are lowercase words joined by _, e.g. restore_clean"
        ));
    }
    Ok(s.to_owned())
}

/// `24h` → seconds.
pub(super) fn parse_since(s: &str) -> Result<u64, String> {
    let d = lifeboat_common::duration::parse_duration(s)?;
    if d.as_secs() == 0 {
        return Err(format!("{s:?} is no time at all; give e.g. 24h or 7d"));
    }
    Ok(d.as_secs())
}

pub(super) fn parse_database(s: &str) -> Result<String, String> {
    lifeboat_common::names::validate_database(s).map_err(|e| e.to_string())?;
    Ok(s.to_owned())
}

/// Five fields (or an @nickname); the coordinator checks the rest and the time zone.
pub(super) fn parse_cron(s: &str) -> Result<String, String> {
    let s = s.trim();
    let fields = s.split_whitespace().count();
    if s.starts_with('@') && fields == 1 {
        return Ok(s.to_owned());
    }
    if fields != 5 {
        return Err(format!(
            "{s:?} has {fields} fields; write five (minute hour day-of-month month \
             day-of-week), e.g. \"30 2 * * *\" for 02:30 every day"
        ));
    }
    Ok(s.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// A jitter such as `10m`, in seconds; at most six hours.
pub(super) fn parse_jitter(s: &str) -> Result<u32, String> {
    let d = lifeboat_common::duration::parse_duration(s)?;
    if d.as_secs() > 6 * 3600 {
        return Err("jitter must be at most 6h".into());
    }
    u32::try_from(d.as_secs()).map_err(|_| "jitter is too long".to_owned())
}

pub(super) fn parse_cover(s: &str) -> Result<u64, String> {
    let d = lifeboat_common::duration::parse_duration(s)?;
    if d.as_secs() < 3600 || d.as_secs() > 366 * 86_400 {
        return Err("cover must be between 1h and 366d, e.g. 7d".into());
    }
    Ok(d.as_secs())
}

pub(super) fn parse_reason(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("give a reason, e.g. --reason \"before the 2026 schema migration\"".into());
    }
    if s.chars().any(char::is_control) || s.len() > 256 {
        return Err("the reason must be one line of at most 256 bytes".into());
    }
    Ok(s.to_owned())
}

pub(super) fn parse_simple_name(s: &str) -> Result<String, String> {
    lifeboat_common::names::validate_simple("name", s).map_err(|e| e.to_string())?;
    Ok(s.to_owned())
}

/// An IP address, or a DNS name (optionally a `*.` wildcard) of letters, digits and hyphens.
pub(super) fn parse_san(s: &str) -> Result<String, String> {
    if s.parse::<IpAddr>().is_ok() {
        return Ok(s.to_owned());
    }
    let host = s.strip_prefix("*.").unwrap_or(s);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if s.len() <= 253 && host.split('.').all(label_ok) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(format!(
            "{s:?} is neither an IP address nor a DNS name (letters, digits, '-' and '.')"
        ))
    }
}
