//! Writing results: one JSON document, or aligned text for people. Sizes, times, durations and
//! empty values are formatted here and nowhere else.

use std::io::Write;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cli::OutputFormat;

/// Something that can be printed either as JSON or as text.
pub trait Render: Serialize {
    /// The text form, ending with a newline.
    fn table(&self) -> String;
}

/// One line of a list: its columns in text output.
pub trait Row: Serialize {
    const HEADER: &'static [&'static str];
    fn cells(&self) -> Vec<String>;
}

/// A list is a JSON array, or a table with a header row.
impl<T: Row> Render for Vec<T> {
    fn table(&self) -> String {
        let mut table = Table::new(T::HEADER);
        for row in self {
            table.row(row.cells());
        }
        table.render()
    }
}

/// Writes `value` in `format` to `out`.
pub fn emit(out: &mut dyn Write, format: OutputFormat, value: &impl Render) -> Result<()> {
    match format {
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, value)
                .map_err(std::io::Error::from)
                .context("write output")?;
            writeln!(out).context("write output")?;
        }
        OutputFormat::Table => out
            .write_all(terminal_safe(&value.table()).as_bytes())
            .context("write output")?,
    }
    out.flush().context("write output")
}

/// Text made safe for a terminal: control characters other than newline and tab (terminal
/// escapes, carriage returns, C1 codes, DEL) become visible escapes such as `\u{1b}`, so a name
/// or an error from the server cannot recolour, move the cursor or overwrite what was printed.
pub fn terminal_safe(s: &str) -> String {
    if !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' | '\t' => out.push(c),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    out
}

/// One table cell: also newlines and tabs become visible, so a value cannot break the row.
fn cell_safe(s: String) -> String {
    if !s.chars().any(char::is_control) {
        return s;
    }
    s.replace('\n', "\\n").replace('\t', "\\t")
}

/// Writes one line to stderr; a closed stderr is ignored (there is nowhere left to report it).
pub fn stderr_line(line: &str) {
    let _ = writeln!(std::io::stderr(), "{}", terminal_safe(line));
}

/// A list cut at its limit: how to get the next page (on stderr, so JSON on stdout stays one
/// array; a script pages with `--after` set to the last id it read).
pub fn more_hint(what: &str, last_id: &str) {
    stderr_line(&format!(
        "more {what} follow; the next page: the same command with --after {last_id}"
    ));
}

/// Shown for an empty value in text output.
pub const NONE: &str = "-";

/// Columns aligned on the widest cell. The last column is not padded.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Self {
            rows: vec![header.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells.into_iter().map(cell_safe).collect());
    }

    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0; columns];
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut s = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                if i + 1 < row.len() {
                    let pad = widths[i] - cell.chars().count();
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            s.push_str(line.trim_end());
            s.push('\n');
        }
        s
    }
}

/// `key  value` lines, keys aligned.
pub fn key_values(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut s = String::new();
    for (k, v) in pairs {
        s.push_str(format!("{k:<width$}  {v}").trim_end());
        s.push('\n');
    }
    s
}

/// `value`, or "-" if it is empty.
pub fn or_none(value: &str) -> String {
    if value.is_empty() {
        NONE.to_owned()
    } else {
        value.to_owned()
    }
}

/// `Some(value)` unless it is empty: empty strings are `null` in JSON.
pub fn non_empty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_owned())
}

/// A byte count with binary units: `512 B`, `1.5 KiB`, `3.2 GiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    #[allow(clippy::cast_precision_loss)] // display only
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    // 1023.95 KiB would print as "1024.0 KiB"; move it up a unit.
    if format!("{value:.1}") == "1024.0" && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Bytes per second, e.g. `12.5 MiB/s`.
pub fn human_rate(bytes_per_sec: f64) -> String {
    if !bytes_per_sec.is_finite() || bytes_per_sec < 0.0 {
        return NONE.to_owned();
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // rounded, non-negative
    let bytes = bytes_per_sec.round() as u64;
    format!("{}/s", human_size(bytes))
}

/// Raw size over stored size, e.g. `4.2x`; `None` when nothing was stored.
pub fn ratio(raw: u64, stored: u64) -> Option<f64> {
    #[allow(clippy::cast_precision_loss)] // display only
    (stored > 0).then(|| raw as f64 / stored as f64)
}

pub fn human_ratio(raw: u64, stored: u64) -> String {
    ratio(raw, stored).map_or_else(|| NONE.to_owned(), |r| format!("{r:.1}x"))
}

/// A duration in milliseconds for people: `850ms`, `42s`, `3m 07s`, `2h 05m`, `3d 04h`.
pub fn human_duration_ms(ms: i64) -> String {
    if ms < 0 {
        return NONE.to_owned();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// Milliseconds between two Unix-ms times, if both are set.
pub fn duration_ms(start_ms: i64, end_ms: i64) -> Option<i64> {
    (start_ms > 0 && end_ms >= start_ms).then(|| end_ms - start_ms)
}

/// RFC 3339 UTC with milliseconds (`2026-11-27T23:30:00.123Z`) for JSON; `None` if unset (0).
pub fn rfc3339_ms(ms: i64) -> Option<String> {
    (ms > 0)
        .then(|| lifeboat_common::time::rfc3339_millis(ms))
        .flatten()
}

/// RFC 3339 UTC to the second (`2026-11-27T23:30:00Z`) for text, "-" if unset.
pub fn rfc3339_text(ms: i64) -> String {
    (ms > 0)
        .then(|| lifeboat_common::time::rfc3339_seconds(ms))
        .flatten()
        .unwrap_or_else(|| NONE.to_owned())
}

/// A time as JSON needs it: the RFC 3339 string and the raw milliseconds, both `null` if unset.
pub fn json_time(ms: i64) -> (Option<String>, Option<i64>) {
    (rfc3339_ms(ms), (ms > 0).then_some(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_text_cannot_drive_the_terminal() {
        let mut t = Table::new(&["TARGET", "ERROR"]);
        t.row(vec![
            "prod/\x1b[31mred".into(),
            "line one\nline two\rover".into(),
        ]);
        let text = terminal_safe(&t.render());
        assert!(!text.contains('\x1b'), "{text:?}");
        assert!(!text.contains('\r'), "{text:?}");
        assert_eq!(text.lines().count(), 2, "{text:?}");
        assert!(text.contains("prod/\\u{1b}[31mred"), "{text:?}");
        assert!(text.contains("line one\\nline two\\rover"), "{text:?}");
        assert_eq!(terminal_safe("a\tb\nc"), "a\tb\nc");
        assert_eq!(terminal_safe("\u{9b}2J\u{7f}"), "\\u{9b}2J\\u{7f}");
    }

    #[test]
    fn sizes() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1024), "1.0 KiB");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(1024 * 1024 - 1), "1.0 MiB");
        assert_eq!(human_size(5 * 1024 * 1024), "5.0 MiB");
        assert_eq!(human_size(3_435_973_837), "3.2 GiB");
        assert_eq!(human_size(1 << 40), "1.0 TiB");
        assert_eq!(human_size(u64::MAX), "16.0 EiB");
        assert_eq!(human_rate(2.5 * 1024.0 * 1024.0), "2.5 MiB/s");
        assert_eq!(human_rate(f64::NAN), "-");
    }

    #[test]
    fn ratios() {
        assert_eq!(human_ratio(4200, 1000), "4.2x");
        assert_eq!(human_ratio(10, 0), "-");
        assert_eq!(ratio(0, 0), None);
    }

    #[test]
    fn durations() {
        assert_eq!(human_duration_ms(850), "850ms");
        assert_eq!(human_duration_ms(42_000), "42s");
        assert_eq!(human_duration_ms(187_000), "3m 07s");
        assert_eq!(human_duration_ms(7_500_000), "2h 05m");
        assert_eq!(human_duration_ms(3 * 86_400_000 + 4 * 3_600_000), "3d 04h");
        assert_eq!(human_duration_ms(-1), "-");
        assert_eq!(duration_ms(1000, 3500), Some(2500));
        assert_eq!(duration_ms(0, 3500), None);
        assert_eq!(duration_ms(4000, 3500), None);
    }

    #[test]
    fn times_are_rfc3339_utc() {
        // 2026-11-27T23:30:00.123Z
        let ms = 1_795_822_200_123;
        assert_eq!(rfc3339_ms(ms).as_deref(), Some("2026-11-27T23:30:00.123Z"));
        assert_eq!(rfc3339_text(ms), "2026-11-27T23:30:00Z");
        assert_eq!(
            rfc3339_ms(1_795_822_200_000).as_deref(),
            Some("2026-11-27T23:30:00.000Z")
        );
        assert_eq!(
            rfc3339_ms(1_795_822_200_970).as_deref(),
            Some("2026-11-27T23:30:00.970Z")
        );
        assert_eq!(
            rfc3339_ms(1_795_822_200_007).as_deref(),
            Some("2026-11-27T23:30:00.007Z")
        );
        assert_eq!(rfc3339_ms(0), None);
        assert_eq!(rfc3339_text(0), "-");
        assert_eq!(
            json_time(ms),
            (Some("2026-11-27T23:30:00.123Z".into()), Some(ms))
        );
        assert_eq!(json_time(0), (None, None));
        // Parses back.
        let parsed = time::OffsetDateTime::parse(
            "2026-11-27T23:30:00.123Z",
            &time::format_description::well_known::Rfc3339,
        )
        .expect("parse");
        assert_eq!(parsed.unix_timestamp_nanos() / 1_000_000, i128::from(ms));
    }

    #[test]
    fn tables_align() {
        let mut t = Table::new(&["NAME", "STATE", "NOTE"]);
        t.row(vec!["a".into(), "running".into(), "x".into()]);
        t.row(vec!["longer-name".into(), "ok".into(), NONE.into()]);
        assert_eq!(
            t.render(),
            "NAME         STATE    NOTE\n\
             a            running  x\n\
             longer-name  ok       -\n"
        );
        assert_eq!(
            key_values(&[("name", "alice".into()), ("role", "admin".into())]),
            "name  alice\nrole  admin\n"
        );
        assert_eq!(or_none(""), "-");
        assert_eq!(non_empty(""), None);
    }
}
