//! A scrape: the gauges that mirror the catalog, rebuilt from a health report, then the text
//! exposition of every metric.

use super::*;

impl Metrics {
    /// Mirrors which keys protect how many kept backups (`keys list`).
    pub fn set_key_usage(&self, usage: &crate::catalog::keys::KeyUsage) {
        self.backups_by_key.reset();
        self.backups_plaintext.reset();
        for k in usage.keys.values() {
            self.backups_by_key
                .with_label_values(&[k.key_id.as_str()])
                .set(i64::try_from(k.backups).unwrap_or(i64::MAX));
        }
        for (target, p) in &usage.plaintext {
            self.backups_plaintext
                .with_label_values(&[target.as_str()])
                .set(i64::try_from(p.backups).unwrap_or(i64::MAX));
        }
    }

    /// Rebuilds the catalog-mirroring gauges from a health report, then renders everything.
    pub fn render_with(
        &self,
        report: &Report,
        running: &[(JobKind, i64)],
        connected: usize,
        alerts: &AlertsConfig,
    ) -> Result<String> {
        let _guard = self
            .scrape
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.set_running(running);
        self.set_agents_connected(connected);
        for g in [
            &self.backup_last_success,
            &self.backup_last_duration,
            &self.backup_last_size,
            &self.recovery_point_age,
            &self.rpo,
            &self.rto,
            &self.verify_last_success,
            &self.restore_last_duration,
            &self.drill_last_success,
            &self.copy_last_success,
            &self.drill_duration,
            &self.agent_last_seen,
            &self.agent_clock_skew,
        ] {
            g.reset();
        }
        self.target_status.reset();
        self.agent_connected.reset();
        for t in &report.targets {
            let l = [t.environment.as_str(), t.name.as_str()];
            for outcome in OUTCOMES {
                self.backups_total
                    .with_label_values(&[l[0], l[1], outcome.as_str()]);
            }
            self.rpo
                .with_label_values(&l)
                .set(t.objective.rpo.as_secs_f64());
            self.rto
                .with_label_values(&l)
                .set(t.objective.rto.as_secs_f64());
            for s in Status::ALL {
                self.target_status
                    .with_label_values(&[l[0], l[1], s.as_str()])
                    .set(i64::from(t.status == s));
            }
            if let Some(b) = &t.last_backup {
                self.backup_last_success
                    .with_label_values(&l)
                    .set(secs(b.recorded_at_ms));
                self.backup_last_duration
                    .with_label_values(&l)
                    .set(secs((b.finished_at_ms - b.started_at_ms).max(0)));
                #[allow(clippy::cast_precision_loss)]
                {
                    self.backup_last_size
                        .with_label_values(&[l[0], l[1], "raw"])
                        .set(b.raw_size as f64);
                    self.backup_last_size
                        .with_label_values(&[l[0], l[1], "stored"])
                        .set(b.stored_size as f64);
                }
            }
            if let Some(age) = t.recovery_point_age_ms {
                self.recovery_point_age.with_label_values(&l).set(secs(age));
            }
            if let Some(v) = &t.last_verify
                && v.state == JobState::Succeeded
            {
                self.verify_last_success
                    .with_label_values(&l)
                    .set(secs(v.finished_at_ms));
            }
            if t.drill.expected() {
                for outcome in OUTCOMES {
                    self.drills_total
                        .with_label_values(&[l[0], l[1], outcome.as_str()]);
                }
            }
            for c in &t.copies {
                self.copy_last_success
                    .with_label_values(&[l[0], l[1], c.repository.as_str()])
                    .set(c.newest.as_ref().map_or(0.0, |(_, at)| secs(*at)));
            }
            if let Some(at) = t.drill.last_success.as_ref().and_then(|s| s.finished_at_ms) {
                self.drill_last_success.with_label_values(&l).set(secs(at));
            }
            if let Some(m) = t.drill.measured_rto {
                self.drill_duration
                    .with_label_values(&l)
                    .set(m.as_secs_f64());
            }
            if let Some(d) = t.last_restore.as_ref().and_then(|r| r.duration_ms()) {
                self.restore_last_duration
                    .with_label_values(&l)
                    .set(secs(d));
            }
        }
        self.evict_repositories(
            &report
                .agents
                .iter()
                .filter(|a| a.state != AgentState::Offline)
                .map(|a| a.name.as_str())
                .collect(),
        );
        for a in &report.agents {
            let l = [a.name.as_str(), a.environment.as_str()];
            self.agent_connected
                .with_label_values(&l)
                .set(i64::from(a.state != AgentState::Offline));
            self.agent_last_seen
                .with_label_values(&l)
                .set(secs(a.last_seen_ms));
            self.agent_clock_skew
                .with_label_values(&l)
                .set(secs(a.clock_skew_ms));
        }
        for w in &alerts.webhooks {
            for outcome in ["delivered", "failed"] {
                self.notifications_total
                    .with_label_values(&[w.name.as_str(), outcome]);
            }
            self.notifications_pending
                .with_label_values(&[w.name.as_str()]);
        }
        self.render()
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Result<String> {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .context("encode metrics")?;
        String::from_utf8(out).context("metrics are not UTF-8")
    }
}
