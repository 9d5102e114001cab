//! Following a job until it ends (`--wait`, `jobs watch`): the WatchJob stream, live progress
//! on stderr, and the final summary and exit status.

use std::{
    collections::VecDeque,
    io::{IsTerminal, Write},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use lifeboat_proto as pb;
use tonic::Code;

use crate::{
    cli::OutputFormat,
    client::Conn,
    error,
    output::{self, human_duration_ms, human_rate, human_ratio, human_size, key_values, or_none},
    report_views::ReportView,
    views::{JobView, is_terminal, kind_word, state_word, verify_word},
};

/// How progress is shown while waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    /// Nothing (JSON output: only the final job is printed).
    Quiet,
    /// One line on stderr per change of state or phase.
    Lines,
    /// A live indicatif spinner on stderr.
    Bar,
}

impl Display {
    pub fn for_output(format: OutputFormat) -> Self {
        match format {
            OutputFormat::Json => Self::Quiet,
            OutputFormat::Table if std::io::stderr().is_terminal() => Self::Bar,
            OutputFormat::Table => Self::Lines,
        }
    }
}

/// Bytes per second over the last few seconds of progress reports.
#[derive(Debug, Default)]
pub struct RateMeter {
    samples: VecDeque<(Instant, u64)>,
}

impl RateMeter {
    const WINDOW: Duration = Duration::from_secs(10);

    pub fn add(&mut self, at: Instant, bytes: u64) -> Option<f64> {
        if self.samples.back().is_some_and(|&(_, b)| bytes < b) {
            self.samples.clear(); // a new phase counts from zero again
        }
        self.samples.push_back((at, bytes));
        while self
            .samples
            .front()
            .is_some_and(|&(t, _)| at.duration_since(t) > Self::WINDOW)
            && self.samples.len() > 2
        {
            self.samples.pop_front();
        }
        let (&(t0, b0), &(t1, b1)) = (self.samples.front()?, self.samples.back()?);
        let secs = t1.duration_since(t0).as_secs_f64();
        #[allow(clippy::cast_precision_loss)] // display only
        (secs >= 0.5).then(|| (b1 - b0) as f64 / secs)
    }
}

/// The state, phase, sizes and rate of a job, e.g.
/// `backup running (dumping) · raw 10.0 MiB · stored 2.0 MiB · 1.0 MiB/s`.
pub fn progress_message(job: &pb::Job, rate: Option<f64>) -> String {
    let mut s = format!("{} {}", kind_word(job.kind), state_word(job.state));
    // Checks and pin markers move no data: their byte counters say nothing.
    let moves_data = !matches!(
        pb::JobKind::try_from(job.kind),
        Ok(pb::JobKind::Check | pb::JobKind::Pin)
    );
    if let Some(p) = &job.progress
        && !p.phase.is_empty()
    {
        s.push_str(&format!(" ({})", p.phase));
    }
    if let Some(p) = job.progress.as_ref().filter(|_| moves_data) {
        s.push_str(&format!(
            " · raw {} · stored {}",
            human_size(p.raw_bytes),
            human_size(p.stored_bytes)
        ));
    }
    if let Some(r) = rate {
        s.push_str(&format!(" · {}", human_rate(r)));
    }
    s
}

/// One line for a change of state or phase, for logs: the time, the job id, the progress.
pub fn change_line(job: &pb::Job, now_ms: i64) -> String {
    format!(
        "{} {}: {}",
        output::rfc3339_text(now_ms),
        job.job_id,
        progress_message(job, None)
    )
}

struct Reporter {
    display: Display,
    bar: Option<ProgressBar>,
    last_change: Option<(i32, String)>,
    rate: RateMeter,
    elapsed_set: bool,
}

impl Reporter {
    fn new(display: Display) -> Self {
        let bar = (display == Display::Bar).then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner:.cyan} {msg} [{elapsed_precise}]")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_message("waiting for the first report");
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Self {
            display,
            bar,
            last_change: None,
            rate: RateMeter::default(),
            elapsed_set: false,
        }
    }

    fn update(&mut self, job: &pb::Job) {
        let phase = job
            .progress
            .as_ref()
            .map(|p| p.phase.clone())
            .unwrap_or_default();
        let change = (job.state, phase);
        let changed = self.last_change.as_ref() != Some(&change);
        self.last_change = Some(change);
        match self.display {
            Display::Quiet => {}
            Display::Lines => {
                if changed {
                    output::stderr_line(&change_line(job, lifeboat_common::time::now_ms()));
                }
            }
            Display::Bar => {
                let raw = job.progress.as_ref().map_or(0, |p| p.raw_bytes);
                let rate = self
                    .rate
                    .add(Instant::now(), raw)
                    .filter(|_| !is_terminal(job.state));
                if let Some(bar) = &self.bar {
                    if !self.elapsed_set && job.started_at_ms > 0 {
                        let ms = lifeboat_common::time::now_ms().saturating_sub(job.started_at_ms);
                        bar.set_elapsed(Duration::from_millis(u64::try_from(ms).unwrap_or(0)));
                        self.elapsed_set = true;
                    }
                    bar.set_message(progress_message(job, rate));
                }
            }
        }
    }

    fn note(&self, msg: &str) {
        match &self.bar {
            Some(bar) => bar.println(format!("note: {msg}")),
            None if self.display == Display::Lines => output::stderr_line(&format!("note: {msg}")),
            None => {}
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Reconnects allowed after the watch was established, before giving up.
const MAX_RETRIES: u32 = 5;

/// Follows `job_id` until it reaches a final state and returns that state. A watch that breaks
/// after it started is re-opened a few times (the coordinator may restart); one that cannot be
/// opened at all fails at once.
pub async fn watch(conn: &Conn, job_id: &str, display: Display) -> Result<pb::Job> {
    let mut reporter = Reporter::new(display);
    let result = tokio::select! {
        r = watch_inner(conn, job_id, &mut reporter) => r,
        Ok(()) = tokio::signal::ctrl_c() => Err(anyhow::anyhow!(
            "interrupted: stopped waiting for job {job_id}, which keeps running (follow it with \
             `lifeboat jobs watch {job_id}`, stop it with `lifeboat jobs cancel {job_id}`)"
        )),
    };
    reporter.finish();
    result
}

async fn watch_inner(conn: &Conn, job_id: &str, reporter: &mut Reporter) -> Result<pb::Job> {
    let mut seen_any = false;
    let mut retries = 0;
    loop {
        let why = match conn.watch_job(job_id).await {
            Ok(mut stream) => loop {
                match stream.message().await {
                    Ok(Some(job)) => {
                        seen_any = true;
                        retries = 0;
                        reporter.update(&job);
                        if is_terminal(job.state) {
                            return Ok(job);
                        }
                    }
                    Ok(None) if !seen_any => bail!(
                        "watch job: the coordinator at {} ended the watch on job {job_id} \
                         without reporting its state",
                        conn.url()
                    ),
                    Ok(None) => break "the stream ended before the job did".to_owned(),
                    Err(status) => {
                        if !seen_any || !transient(status.code()) {
                            return Err(error::rpc_error(conn.url(), "watch job", &status));
                        }
                        break status.message().to_owned();
                    }
                }
            },
            Err(status) => {
                if !seen_any || !transient(status.code()) {
                    return Err(error::rpc_error(conn.url(), "watch job", &status));
                }
                status.message().to_owned()
            }
        };
        retries += 1;
        if retries > MAX_RETRIES {
            bail!(
                "lost the watch on job {job_id} {MAX_RETRIES} times ({why}); the job may still \
                 be running: check it with `lifeboat jobs show {job_id}`"
            );
        }
        reporter.note(&format!(
            "watch on job {job_id} interrupted ({why}); reconnecting"
        ));
        tokio::time::sleep(Duration::from_secs(1 << (retries - 1).min(4))).await;
    }
}

fn transient(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::Unknown
            | Code::Cancelled
            | Code::DeadlineExceeded
            | Code::Aborted
    )
}

/// Waits for `job_id`, prints the summary (or the final job as JSON) and fails unless the job
/// succeeded.
pub async fn wait_and_report(
    conn: &Conn,
    job_id: &str,
    out: &mut dyn Write,
    format: OutputFormat,
) -> Result<()> {
    let job = watch(conn, job_id, Display::for_output(format)).await?;
    report_final(conn, &job, out, format).await
}

/// A job just started: with `wait`, [`wait_and_report`]; without, print that it started.
pub async fn follow(
    conn: &Conn,
    job: &pb::Job,
    wait: bool,
    out: &mut dyn Write,
    format: OutputFormat,
) -> Result<()> {
    if wait {
        wait_and_report(conn, &job.job_id, out, format).await
    } else {
        crate::commands::jobs::print_started(out, format, job)
    }
}

/// Prints a finished job and turns its state into the result.
pub async fn report_final(
    conn: &Conn,
    job: &pb::Job,
    out: &mut dyn Write,
    format: OutputFormat,
) -> Result<()> {
    let succeeded = job.state == pb::JobState::Succeeded as i32;
    let kind = pb::JobKind::try_from(job.kind).unwrap_or(pb::JobKind::Unspecified);
    // The catalog's record of the backup: sizes and hash after a backup, status after a verify,
    // the engine (how to restore the file by hand) after an export.
    let backup = if succeeded
        && matches!(
            kind,
            pb::JobKind::Backup | pb::JobKind::Verify | pb::JobKind::Export
        ) {
        fetch_backup(conn, &job.backup_id).await
    } else {
        None
    };
    let report = job.report.as_ref().map(ReportView::from);
    match format {
        OutputFormat::Json => output::emit(out, format, &JobView::from(job))?,
        OutputFormat::Table => {
            let mut text = if succeeded && kind != pb::JobKind::Check {
                summary(job, backup.as_ref())
            } else {
                String::new()
            };
            if let Some(r) = &report {
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(&r.text());
            }
            if succeeded && kind == pb::JobKind::Check {
                let warnings = report.as_ref().map_or(0, |r| r.count("warning"));
                text.push_str(&format!(
                    "\n{} passed{}\n",
                    if job.backup_id.is_empty() {
                        format!("check of {}", job.target)
                    } else {
                        format!(
                            "dry run of the restore of {} into {}",
                            job.backup_id, job.target
                        )
                    },
                    match warnings {
                        0 => String::new(),
                        n => format!(" with {n} warning(s)"),
                    }
                ));
            }
            out.write_all(text.as_bytes()).context("write output")?;
            out.flush().context("write output")?;
        }
    }
    if !succeeded {
        let what = format!("{} job {}", kind_word(job.kind), job.job_id);
        bail!(
            "{what} {}: {}",
            state_word(job.state),
            if job.error.is_empty() {
                "no reason given"
            } else {
                &job.error
            }
        );
    }
    if kind == pb::JobKind::Verify
        && let Some(b) = &backup
        && matches!(
            pb::VerifyStatus::try_from(b.verify_status),
            Ok(pb::VerifyStatus::Corrupt | pb::VerifyStatus::Missing)
        )
    {
        bail!(
            "backup {} is {}: {}",
            b.backup_id,
            verify_word(b.verify_status),
            or_none(&b.verify_detail)
        );
    }
    Ok(())
}

async fn fetch_backup(conn: &Conn, backup_id: &str) -> Option<pb::BackupRecord> {
    if backup_id.is_empty() {
        return None;
    }
    let req = conn.request(pb::GetBackupRequest {
        backup_id: backup_id.to_owned(),
    });
    match conn
        .unary(
            "show backup",
            |mut c| async move { c.get_backup(req).await },
        )
        .await
    {
        Ok(b) => Some(b),
        Err(e) => {
            output::stderr_line(&format!(
                "warning: the job succeeded but its backup record could not be read: {e:#}"
            ));
            None
        }
    }
}

/// The text printed when a job succeeded.
pub fn summary(job: &pb::Job, backup: Option<&pb::BackupRecord>) -> String {
    let kind = pb::JobKind::try_from(job.kind).unwrap_or(pb::JobKind::Unspecified);
    let duration = output::duration_ms(job.started_at_ms, job.finished_at_ms)
        .map_or_else(|| "-".into(), human_duration_ms);
    let mut pairs = vec![
        (
            "job",
            format!("{} ({} succeeded)", job.job_id, kind_word(job.kind)),
        ),
        ("target", or_none(&job.target)),
        ("backup", or_none(&job.backup_id)),
    ];
    match (kind, backup) {
        (pb::JobKind::Backup, Some(b)) => {
            pairs.push(("raw size", human_size(b.raw_size)));
            pairs.push(("stored size", human_size(b.stored_size)));
            pairs.push(("ratio", human_ratio(b.raw_size, b.stored_size)));
            pairs.push(("duration", duration));
            pairs.push((
                "sha256",
                format!("{} (stored data)", or_none(&b.stored_sha256)),
            ));
        }
        (pb::JobKind::Verify, Some(b)) => {
            pairs.push(("verify status", verify_word(b.verify_status).to_owned()));
            pairs.push(("verify detail", or_none(&b.verify_detail)));
            pairs.push(("duration", duration));
        }
        (pb::JobKind::Export, _) => {
            pairs.push(("exported to", or_none(&job.export_path)));
            pairs.push((
                "manifest",
                format!(
                    "{}{}",
                    job.export_path,
                    lifeboat_proto::domain::EXPORT_MANIFEST_SUFFIX
                ),
            ));
            pairs.push((
                "raw size",
                format!(
                    "{} ({} bytes)",
                    human_size(job.export_raw_bytes),
                    job.export_raw_bytes
                ),
            ));
            pairs.push(("raw sha256", or_none(&job.export_raw_sha256)));
            pairs.push(("duration", duration));
            let mut text = key_values(&pairs);
            text.push_str(&crate::export_hint::restore_by_hand(job, backup));
            return text;
        }
        (pb::JobKind::Restore, _) => {
            let database = if job.detail.is_empty() {
                &job.database
            } else {
                &job.detail
            };
            pairs.push(("restored into", or_none(database)));
            if let Some(p) = &job.progress {
                pairs.push(("raw size", human_size(p.raw_bytes)));
            }
            pairs.push(("duration", duration));
        }
        _ => {
            if let Some(p) = &job.progress {
                pairs.push(("raw size", human_size(p.raw_bytes)));
                pairs.push(("stored size", human_size(p.stored_bytes)));
            }
            pairs.push(("detail", or_none(&job.detail)));
            pairs.push(("duration", duration));
        }
    }
    key_values(&pairs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::tests::{sample_backup, sample_job};

    #[test]
    fn rate_over_a_window() {
        let mut m = RateMeter::default();
        let t0 = Instant::now();
        assert_eq!(m.add(t0, 0), None);
        assert_eq!(m.add(t0 + Duration::from_millis(100), 100), None);
        let r = m.add(t0 + Duration::from_secs(2), 2 << 20).expect("rate");
        assert!((r - f64::from(1 << 20)).abs() < 1.0, "{r}");
        // Old samples fall out of the window.
        let r = m.add(t0 + Duration::from_secs(30), 32 << 20).expect("rate");
        assert!((r - f64::from(30 << 20) / 28.0).abs() < 1.0, "{r}");
        // A counter that restarts starts a new measurement.
        assert_eq!(m.add(t0 + Duration::from_secs(31), 5), None);
    }

    #[test]
    fn progress_lines() {
        let job = sample_job();
        let s = progress_message(&job, Some(1024.0 * 1024.0));
        assert_eq!(
            s,
            "backup running (dumping) · raw 10.0 MiB · stored 2.0 MiB · 1.0 MiB/s"
        );
        let line = change_line(&job, 1_795_822_200_123);
        assert_eq!(
            line,
            "2026-11-27T23:30:00Z 20261127T233000Z-aaaaaa: backup running (dumping) · raw 10.0 MiB \
             · stored 2.0 MiB"
        );
        let mut queued = sample_job();
        queued.state = pb::JobState::Queued as i32;
        queued.progress = None;
        assert_eq!(progress_message(&queued, None), "backup queued");
    }

    #[test]
    fn backup_summary() {
        let mut job = sample_job();
        job.state = pb::JobState::Succeeded as i32;
        job.finished_at_ms = job.started_at_ms + 83_000;
        let s = summary(&job, Some(&sample_backup()));
        for needle in [
            "backup       20261127T233000Z-bbbbbb",
            "raw size     4.1 KiB",
            "stored size  1000 B",
            "ratio        4.2x",
            "duration     1m 23s",
            &format!("sha256       {} (stored data)", "b".repeat(64)),
        ] {
            assert!(s.contains(needle), "missing {needle:?} in\n{s}");
        }
    }

    #[test]
    fn restore_summary_names_the_database() {
        let mut job = sample_job();
        job.kind = pb::JobKind::Restore as i32;
        job.state = pb::JobState::Succeeded as i32;
        job.detail = "orders_restore_20261127".into();
        let s = summary(&job, None);
        assert!(s.contains("restored into  orders_restore_20261127"), "{s}");
    }
}
