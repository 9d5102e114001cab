//! Durations as people write them in config files and on the command line: `90s`, `10m`,
//! `2h`, `7d`, `4w`, or sums such as `1h30m`.

use std::time::Duration;

/// Parses a duration written as a number with a unit: `90s`, `10m`, `2h`, `7d`, `4w`, or a
/// sum of those (`1h30m`). Refuses negative, unit-less and empty values.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("is empty; write a number with a unit, e.g. \"10m\", \"2h\" or \"7d\"".into());
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => {
                return Err(format!(
                    "{t:?} is not a duration; write a number with a unit s, m, h, d or w, e.g. \
                     \"10m\" or \"1h30m\""
                ));
            }
        };
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("{t:?} is not a duration; every unit needs a number before it"))?;
        digits.clear();
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("{t:?} is too long"))?;
    }
    if !digits.is_empty() {
        return Err(format!(
            "{t:?} has no unit; write e.g. \"{digits}s\" or \"{digits}m\""
        ));
    }
    Ok(Duration::from_secs(total))
}

/// Formats a duration the way `parse_duration` reads it (`1h30m`, `0s`).
pub fn format_duration(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, n) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= n {
            out.push_str(&format!("{}{unit}", secs / n));
            secs %= n;
        }
    }
    out
}
