//! Targets a connected agent declared but could not register because another agent owns the
//! name (M6). They wait here, in memory, for the agent's session: an admin's
//! `targets release` hands the target to the waiting agent without a reconnect. Lost on
//! restart; the agent declares them again when it reconnects.

use std::{
    collections::BTreeMap,
    sync::{Mutex, MutexGuard},
};

use lifeboat_common::names::TargetName;

use crate::model::TargetDecl;

/// A refused declaration: which agent wants the target, and how it declared it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub agent: String,
    pub decl: TargetDecl,
}

/// Full target name → the connected agents waiting for it.
#[derive(Debug, Default)]
pub struct TargetClaims {
    waiting: Mutex<BTreeMap<TargetName, Vec<Claim>>>,
}

impl TargetClaims {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<TargetName, Vec<Claim>>> {
        // Single inserts and removes: a poisoned map is still consistent.
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Replaces `agent`'s waiting claims with `claims` (target, declaration).
    pub fn set(&self, agent: &str, claims: Vec<(TargetName, TargetDecl)>) {
        let mut waiting = self.lock();
        remove_agent(&mut waiting, agent);
        for (full, decl) in claims {
            waiting.entry(full).or_default().push(Claim {
                agent: agent.to_owned(),
                decl,
            });
        }
    }

    /// Forgets `agent`'s claims (its session ended).
    pub fn drop_agent(&self, agent: &str) {
        remove_agent(&mut self.lock(), agent);
    }

    /// The agents waiting for `target`.
    pub fn waiting(&self, target: &TargetName) -> Vec<Claim> {
        self.lock().get(target).cloned().unwrap_or_default()
    }

    /// Removes and returns `agent`'s claim on `target`.
    pub fn take(&self, target: &TargetName, agent: &str) -> Option<Claim> {
        let mut waiting = self.lock();
        let list = waiting.get_mut(target)?;
        let at = list.iter().position(|c| c.agent == agent)?;
        let claim = list.remove(at);
        if list.is_empty() {
            waiting.remove(target);
        }
        Some(claim)
    }
}

fn remove_agent(waiting: &mut BTreeMap<TargetName, Vec<Claim>>, agent: &str) {
    waiting.retain(|_, list| {
        list.retain(|c| c.agent != agent);
        !list.is_empty()
    });
}
