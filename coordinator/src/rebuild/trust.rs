//! Which listed backups a rebuild trusts (H2): an agent is trusted with its own environment
//! only, unless the admin says otherwise, and nobody with times from the future.

use super::{CatalogView, Listed};
use crate::model::Backup;

/// How far a rebuild trusts the listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trust {
    /// Record manifests of another environment than the listing agent's.
    pub cross_environment: bool,
    /// The coordinator's time when the listings came in.
    pub now_ms: i64,
    /// How far ahead of `now_ms` a manifest's times may be (agents' clocks are not exact).
    pub max_ahead_ms: i64,
}

/// Why a listed backup is not trusted; None if it is.
pub(super) fn refusal(b: &Backup, l: &Listed, view: &CatalogView, trust: &Trust) -> Option<String> {
    let limit = trust.now_ms.saturating_add(trust.max_ahead_ms);
    if b.finished_at_ms > limit || b.started_at_ms > limit {
        let at = lifeboat_common::time::rfc3339(b.finished_at_ms).unwrap_or_else(|| "?".into());
        return Some(format!(
            "its manifest says it finished at {at}, in the future by the coordinator's clock \
             (more than {} s ahead); check the clock of agent {} and of the host that wrote \
             repository {}, and do not trust this manifest",
            trust.max_ahead_ms / 1000,
            b.agent,
            l.repository
        ));
    }
    if trust.cross_environment {
        return None;
    }
    let cross = "if the repository is shared across environments on purpose, rebuild with \
                 --trust-cross-environment";
    let Some(listing_env) = view.agent_environments.get(&l.agent) else {
        return Some(format!(
            "agent {} that listed it is not known to the catalog; {cross}",
            l.agent
        ));
    };
    if *listing_env != b.environment() {
        return Some(format!(
            "its manifest is of environment {}, but agent {} that listed it serves \
             environment {listing_env}; {cross}",
            b.environment(),
            l.agent
        ));
    }
    if let Some(env) = view.agent_environments.get(&b.agent)
        && *env != b.environment()
    {
        return Some(format!(
            "its manifest is of environment {} but names agent {}, which serves environment \
             {env}; {cross}",
            b.environment(),
            b.agent
        ));
    }
    None
}
