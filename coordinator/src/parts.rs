//! The coordinator's parts, made once at start-up (`lib.rs`). The gRPC and HTTP edges hold
//! them all, as an HTTP framework's shared state; each loop below the edges (dispatcher,
//! leases, scheduler, retention, alerts, history, rebuild) is handed only the parts it uses,
//! so its signature says what it touches.

use std::sync::Arc;

use crate::{
    audit::queue::DeniedQueue,
    catalog::Catalog,
    claims::TargetClaims,
    config::Config,
    hub::{Hub, WatchSlots},
    jobs::Jobs,
    metrics::Metrics,
    rebuild::listings::Listings,
    scheduler::health::HealthCell,
};

#[derive(Clone)]
pub struct Parts {
    pub config: Arc<Config>,
    pub catalog: Catalog,
    pub metrics: Arc<Metrics>,
    /// Agent sessions and job events.
    pub hub: Arc<Hub>,
    pub jobs: Jobs,
    /// Agents' repositories and the list jobs a catalog rebuild waits for.
    pub listings: Arc<Listings>,
    /// What the scheduler's last passes found (`/health/detailed`).
    pub scheduler: Arc<HealthCell>,
    /// Targets connected agents declared but another agent owns (`targets release`).
    pub claims: Arc<TargetClaims>,
    /// Refused calls waiting to be audited.
    pub denied: Arc<DeniedQueue>,
    /// Open `WatchJob` streams per operator.
    pub watches: Arc<WatchSlots>,
    /// Physical targets' WAL archives as their agents last reported them.
    pub wal: Arc<crate::pitr::WalBoard>,
}

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parts").finish_non_exhaustive()
    }
}

impl Parts {
    pub fn new(config: Arc<Config>, catalog: Catalog, metrics: Arc<Metrics>) -> Self {
        let hub = Arc::new(Hub::new(metrics.clone()));
        Self {
            jobs: Jobs::new(catalog.clone(), hub.clone(), metrics.clone()),
            config,
            catalog,
            metrics,
            hub,
            listings: Arc::default(),
            scheduler: Arc::default(),
            claims: Arc::default(),
            denied: Arc::default(),
            watches: Arc::default(),
            wal: Arc::default(),
        }
    }

    /// What a catalog rebuild works with.
    pub fn rebuilder(&self) -> crate::rebuild::Rebuilder {
        crate::rebuild::Rebuilder {
            hub: self.hub.clone(),
            catalog: self.catalog.clone(),
            jobs: self.jobs.clone(),
            listings: self.listings.clone(),
            max_clock_skew: self.config.health.max_clock_skew,
        }
    }
}
