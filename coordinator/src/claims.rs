//! Targets a connected agent declared but could not register because another agent owns the
//! name (M6). They wait here, in memory, for the agent's session: an admin's
//! `targets release` hands the target to the waiting agent without a reconnect. Lost on
//! restart; the agent declares them again when it reconnects.

use std::{
    collections::BTreeMap,
    sync::{Mutex, MutexGuard},
};

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
    waiting: Mutex<BTreeMap<String, Vec<Claim>>>,
}

impl TargetClaims {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Vec<Claim>>> {
        // Single inserts and removes: a poisoned map is still consistent.
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Replaces `agent`'s waiting claims with `claims` (full name, declaration).
    pub fn set(&self, agent: &str, claims: Vec<(String, TargetDecl)>) {
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

    /// The agents waiting for `full_name`.
    pub fn waiting(&self, full_name: &str) -> Vec<Claim> {
        self.lock().get(full_name).cloned().unwrap_or_default()
    }

    /// Removes and returns `agent`'s claim on `full_name`.
    pub fn take(&self, full_name: &str, agent: &str) -> Option<Claim> {
        let mut waiting = self.lock();
        let list = waiting.get_mut(full_name)?;
        let at = list.iter().position(|c| c.agent == agent)?;
        let claim = list.remove(at);
        if list.is_empty() {
            waiting.remove(full_name);
        }
        Some(claim)
    }
}

fn remove_agent(waiting: &mut BTreeMap<String, Vec<Claim>>, agent: &str) {
    waiting.retain(|_, list| {
        list.retain(|c| c.agent != agent);
        !list.is_empty()
    });
}
