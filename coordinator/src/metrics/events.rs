//! What the coordinator's parts tell the metrics as things happen: jobs ending, sessions,
//! agents' repository reports, alert passes and deliveries.

use super::*;

impl Metrics {
    /// Counts a job that reached a terminal state.
    pub fn job_finished(&self, job: &Job) {
        if !job.state.is_terminal() {
            return;
        }
        self.jobs_total
            .with_label_values(&[job.kind.as_str(), job.state.as_str()])
            .inc();
        let count = |counts: &Mutex<fleet::Outcomes>,
                     target: &lifeboat_common::names::TargetName| {
            if let Some(i) = fleet::outcome_index(job.state) {
                counts
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .entry((target.env().to_owned(), target.name().to_owned()))
                    .or_default()[i] += 1;
            }
        };
        if job.kind == JobKind::Backup {
            count(&self.backups, &job.target);
        }
        if let Some(of) = job.restore.as_ref().and_then(|r| r.drill_of.as_ref()) {
            count(&self.drills, of);
        }
        if let (Some(start), Some(end)) = (job.started_at_ms, job.finished_at_ms) {
            self.job_duration
                .with_label_values(&[job.kind.as_str()])
                .observe(secs((end - start).max(0)));
        }
    }

    pub fn set_catalog_up(&self, up: bool) {
        self.catalog_up.set(i64::from(up));
    }

    pub fn set_agents_connected(&self, n: usize) {
        self.agents_connected
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Sets the running-jobs gauge of every kind (kinds not listed are zero).
    pub fn set_running(&self, counts: &[(JobKind, i64)]) {
        for kind in JobKind::ALL {
            let n = counts
                .iter()
                .find(|(k, _)| k == kind)
                .map_or(0, |(_, n)| *n);
            self.jobs_running.with_label_values(&[kind.as_str()]).set(n);
        }
    }

    /// Records the repositories an agent declared in its Hello: only their stats become
    /// metrics. (The Hello's list is capped, see [`crate::wire::MAX_REPOSITORIES`].)
    pub fn declare_repositories(&self, agent: &str, repositories: &[String]) {
        let declared: HashSet<String> = repositories.iter().cloned().collect();
        self.repo_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|(a, r), _| a != agent || declared.contains(r));
        self.declared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(agent.to_owned(), declared);
    }

    /// A physical target's WAL archive as its agent reported it.
    pub fn set_wal_status(
        &self,
        target: &lifeboat_common::names::TargetName,
        s: &lifeboat_proto::domain::WalStatus,
    ) {
        let labels = [target.env(), target.name()];
        if let Some((_, at)) = &s.last_archived {
            self.pitr_last_archived
                .with_label_values(&labels)
                .set(*at as f64 / 1000.0);
        }
        self.pitr_gaps
            .with_label_values(&labels)
            .set(i64::try_from(s.gaps.len()).unwrap_or(i64::MAX));
        self.pitr_pending.with_label_values(&labels).set(
            s.pending_segments
                .map_or(-1, |p| i64::try_from(p).unwrap_or(i64::MAX)),
        );
        self.pitr_failed
            .with_label_values(&labels)
            .set(i64::try_from(s.failed_count).unwrap_or(i64::MAX));
    }

    /// Records the housekeeping counters an agent reported in a heartbeat. Stats of
    /// repositories it did not declare are dropped and counted, so an agent cannot grow the
    /// coordinator's memory or `/metrics` with made-up names (M11).
    pub fn set_repository_stats(&self, agent: &str, stats: &[RepositoryStats]) {
        let declared = self
            .declared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(agent)
            .cloned()
            .unwrap_or_default();
        let mut seen = self
            .repo_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut dropped = 0_u64;
        for s in stats {
            if !declared.contains(&s.name) {
                dropped += 1;
                continue;
            }
            let key = (agent.to_owned(), s.name.clone());
            let Some(r) = seen.get_mut(&key) else {
                // The first report: the totals start at the agent's counters.
                seen.insert(
                    key,
                    fleet::RepoSeries {
                        last: s.clone(),
                        stale_uploads_aborted: s.stale_uploads_aborted,
                        janitor_errors: s.janitor_errors,
                        janitor_last_success_ms: s.janitor_last_success_ms,
                    },
                );
                continue;
            };
            // A counter lower than last time: the agent restarted and began again at 0.
            let advance = |total: &mut u64, now: u64, before: u64| {
                *total = match now.checked_sub(before) {
                    Some(more) => total.saturating_add(more),
                    None => now,
                };
            };
            advance(
                &mut r.stale_uploads_aborted,
                s.stale_uploads_aborted,
                r.last.stale_uploads_aborted,
            );
            advance(
                &mut r.janitor_errors,
                s.janitor_errors,
                r.last.janitor_errors,
            );
            if s.janitor_last_success_ms.is_some() {
                r.janitor_last_success_ms = s.janitor_last_success_ms;
            }
            r.last = s.clone();
        }
        if dropped > 0 {
            self.reports_dropped
                .with_label_values(&[DROPPED_UNDECLARED])
                .inc_by(dropped);
            tracing::debug!(
                %agent,
                dropped,
                "ignored heartbeat stats of repositories the agent did not declare"
            );
        }
    }

    /// Drops the repository series of agents that are not connected (they come back with the
    /// agent's next heartbeat), so agents that come and go do not pile up series.
    pub(super) fn evict_repositories(&self, connected: &HashSet<&str>) {
        let mut seen = self
            .repo_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.retain(|(agent, _), _| connected.contains(agent.as_str()));
    }

    /// The last housekeeping counters of every agent's repositories.
    pub fn repository_stats(&self) -> BTreeMap<(String, String), RepositoryStats> {
        self.repo_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), v.last.clone()))
            .collect()
    }

    pub fn set_open_incidents(&self, open: &[Incident]) {
        for kind in IncidentKind::ALL {
            let n = open.iter().filter(|i| i.kind == *kind).count();
            self.incidents_open
                .with_label_values(&[kind.as_str()])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Counts an agent update (one of [`AGENT_UPDATES`]) the catalog could not record.
    pub fn agent_update_dropped(&self, kind: &'static str) {
        self.agent_updates_dropped.with_label_values(&[kind]).inc();
    }

    /// Observes how long recording an agent update (one of [`AGENT_UPDATES`]) took.
    pub fn agent_update_recorded(&self, kind: &'static str, took: std::time::Duration) {
        self.agent_update_seconds
            .with_label_values(&[kind])
            .observe(took.as_secs_f64());
    }

    pub fn notification_sent(&self, webhook: &str, delivered: bool) {
        let outcome = if delivered { "delivered" } else { "failed" };
        self.notifications_total
            .with_label_values(&[webhook, outcome])
            .inc();
    }

    /// Counts a finished pass of the alert evaluator.
    pub fn alert_evaluated(&self, ok: bool) {
        self.alert_evaluations
            .with_label_values(&[if ok { "ok" } else { "error" }])
            .inc();
    }

    /// Counts a finished pass of the webhook notifier.
    pub fn alert_delivery_pass(&self, ok: bool) {
        self.alert_delivery_passes
            .with_label_values(&[if ok { "ok" } else { "error" }])
            .inc();
    }

    pub fn set_pending_notifications(&self, cfg: &AlertsConfig, pending: &[(String, i64)]) {
        for w in &cfg.webhooks {
            let n = pending
                .iter()
                .find(|(name, _)| *name == w.name)
                .map_or(0, |(_, n)| *n);
            self.notifications_pending
                .with_label_values(&[w.name.as_str()])
                .set(n);
        }
    }
}
