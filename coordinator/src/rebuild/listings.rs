//! The agents' repositories and the list jobs a catalog rebuild waits for: shared between the
//! agent sessions (which deliver listings) and the rebuild, and depending on neither.

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard},
};

use tokio::sync::oneshot;

/// The agents' repositories (from their `Hello`) and the list jobs a rebuild waits for. Lost
/// on restart: a list job queued before a restart fails when it would be handed out.
#[derive(Debug, Default)]
pub struct Listings {
    repositories: Mutex<HashMap<String, Vec<String>>>,
    pending: Mutex<HashMap<String, Pending>>,
    /// One rebuild at a time.
    pub(crate) running: tokio::sync::Mutex<()>,
}

/// What one listing found: every backup, with the pin its marker records.
pub type ListedBackups = Vec<lifeboat_proto::domain::Listed>;

#[derive(Debug)]
struct Pending {
    repository: String,
    reply: Option<oneshot::Sender<ListedBackups>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Single inserts and removes: a panic cannot leave the map inconsistent.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Listings {
    /// Records the repositories an agent declared in its `Hello`.
    pub fn set_repositories(&self, agent: &str, repositories: &[String]) {
        lock(&self.repositories).insert(agent.to_owned(), repositories.to_vec());
    }

    pub(crate) fn repositories_of(&self, agent: &str) -> Vec<String> {
        lock(&self.repositories)
            .get(agent)
            .cloned()
            .unwrap_or_default()
    }

    /// The repository a list job lists; None if no rebuild is waiting for it.
    pub fn repository_of(&self, job_id: &str) -> Option<String> {
        lock(&self.pending)
            .get(job_id)
            .map(|p| p.repository.clone())
    }

    /// Hands a list job's manifests to the rebuild waiting for them (if it still waits).
    pub fn deliver(&self, job_id: &str, backups: ListedBackups) {
        let reply = lock(&self.pending)
            .get_mut(job_id)
            .and_then(|p| p.reply.take());
        if let Some(reply) = reply {
            let _ = reply.send(backups);
        }
    }

    pub(crate) fn expect(
        &self,
        job_id: &str,
        repository: &str,
    ) -> oneshot::Receiver<ListedBackups> {
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(
            job_id.to_owned(),
            Pending {
                repository: repository.to_owned(),
                reply: Some(tx),
            },
        );
        rx
    }

    pub(crate) fn forget(&self, job_ids: &[String]) {
        let mut pending = lock(&self.pending);
        for id in job_ids {
            pending.remove(id);
        }
    }
}
