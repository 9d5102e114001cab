//! A scrape: the registry's text exposition, then the fleet's series written from the health
//! report (see [`super::fleet`]).

use super::*;

impl Metrics {
    /// Mirrors which keys protect how many kept backups (`keys list`).
    pub fn set_key_usage(&self, usage: &crate::catalog::keys::KeyUsage) {
        // Under the scrape's lock, so a concurrent scrape never renders the gauges emptied.
        let _guard = self
            .scrape
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
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

    /// Renders everything: the fleet's series from the health report (see [`super::fleet`]).
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
        self.evict_repositories(
            &report
                .agents
                .iter()
                .filter(|a| a.state != AgentState::Offline)
                .map(|a| a.name.as_str())
                .collect(),
        );
        for w in &alerts.webhooks {
            for outcome in ["delivered", "failed"] {
                self.notifications_total
                    .with_label_values(&[w.name.as_str(), outcome]);
            }
            self.notifications_pending
                .with_label_values(&[w.name.as_str()]);
        }
        self.render_report(report)
    }

    /// The Prometheus text exposition of every metric; the fleet's series only as far as the
    /// counters know them (no health report).
    pub fn render(&self) -> Result<String> {
        self.render_report(&Report::default())
    }

    fn render_report(&self, report: &Report) -> Result<String> {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .context("encode metrics")?;
        let mut out = String::from_utf8(out).context("metrics are not UTF-8")?;
        let lock = |m: &Mutex<fleet::Outcomes>| {
            m.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
        };
        // Copies, so no lock is held while the text is written (a scrape can take a while).
        let (backups, drills) = (lock(&self.backups), lock(&self.drills));
        let repos = self
            .repo_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        fleet::write(&mut out, report, &backups, &drills, &repos);
        Ok(out)
    }
}
