//! `keys list` and `keys rotate`: which keys protect which backups, and the job that
//! re-encrypts a target's key objects to other recipients (ADR 0025). The coordinator never
//! holds a key: it records key ids and public keys, and the agent does the cryptography.

use lifeboat_common::names::TargetName;
use lifeboat_proto::v1 as pb;

use super::{Control, parse_target};
use crate::{
    error::{Error, Result},
    grpc::authz::Operator,
    model::{Job, JobKind, KeyRotation},
};

impl Control {
    pub(super) async fn list_keys(
        &self,
        op: &Operator,
        req: &pb::ListKeysRequest,
    ) -> Result<pb::ListKeysResponse> {
        let target = if req.target.is_empty() {
            None
        } else {
            let name = parse_target(&req.target)?;
            self.scope(op, &name, &format!("the keys of {name}"))?;
            Some(name)
        };
        let usage = self
            .parts
            .catalog
            .key_usage(target.as_ref().map(TargetName::as_str))
            .await?;
        // Which targets' agents encrypt new backups to each key id.
        let targets = self.parts.catalog.list_targets().await?;
        let configured = |key_id: &str| -> Vec<String> {
            targets
                .iter()
                .filter(|t| self.sees(op, &t.target.name))
                .filter(|t| {
                    t.target
                        .encryption
                        .as_ref()
                        .is_some_and(|e| e.key_ids.iter().any(|k| k == key_id))
                })
                .map(|t| t.target.name.to_string())
                .collect()
        };
        let mut keys: Vec<pb::KeyUsage> = Vec::new();
        for k in usage.keys.into_values() {
            let seen: Vec<String> = k
                .targets
                .iter()
                .filter(|t| {
                    t.parse::<TargetName>()
                        .is_ok_and(|name| self.sees(op, &name))
                })
                .cloned()
                .collect();
            if seen.is_empty() {
                continue;
            }
            keys.push(pb::KeyUsage {
                configured_for: configured(&k.key_id),
                key_id: k.key_id,
                recipient: k.recipient,
                targets: seen,
                backups: k.backups,
                oldest_backup_ms: k.oldest_ms,
                newest_backup_ms: k.newest_ms,
            });
        }
        // Keys configured on agents that protect no kept backup yet.
        for t in targets.iter().filter(|t| self.sees(op, &t.target.name)) {
            if target.as_ref().is_some_and(|want| *want != t.target.name) {
                continue;
            }
            let Some(e) = &t.target.encryption else {
                continue;
            };
            for (id, recipient) in e.key_ids.iter().zip(&e.recipients) {
                if !keys.iter().any(|k| &k.key_id == id) {
                    keys.push(pb::KeyUsage {
                        key_id: id.clone(),
                        recipient: recipient.clone(),
                        configured_for: configured(id),
                        ..Default::default()
                    });
                }
            }
        }
        keys.sort_by(|a, b| a.key_id.cmp(&b.key_id));
        let plaintext = usage
            .plaintext
            .into_iter()
            .filter(|(t, _)| {
                t.parse::<TargetName>()
                    .is_ok_and(|name| self.sees(op, &name))
            })
            .map(|(target, p)| pb::PlaintextBackups {
                target,
                backups: p.backups,
                newest_backup_ms: p.newest_ms,
            })
            .collect();
        Ok(pb::ListKeysResponse { keys, plaintext })
    }

    /// Queues the rotation of a target's key objects on its agent.
    pub(super) async fn rotate_keys(
        &self,
        op: &Operator,
        req: &pb::RotateKeysRequest,
    ) -> Result<Job> {
        let name = parse_target(&req.target)?;
        self.scope(op, &name, &format!("rotating the keys of {name}"))?;
        for r in req.add.iter().chain(&req.remove) {
            lifeboat_common::keys::parse_recipient(r)
                .map_err(|e| Error::InvalidArgument(format!("{e:#}")))?;
        }
        if req.add.is_empty() && req.remove.is_empty() {
            return Err(Error::InvalidArgument(
                "nothing to rotate: name recipients with --add and/or --remove".into(),
            ));
        }
        if let Some(r) = req.add.iter().find(|r| req.remove.contains(r)) {
            return Err(Error::InvalidArgument(format!(
                "{r} is both added and removed"
            )));
        }
        let target = self.target(&name).await?;
        if self
            .parts
            .catalog
            .encrypted_backups(name.as_str())
            .await?
            .is_empty()
        {
            return Err(Error::FailedPrecondition(format!(
                "{name} has no encrypted backup in the catalog; there is nothing to rotate"
            )));
        }
        if let Some(active) = self
            .parts
            .catalog
            .unfinished_jobs()
            .await?
            .into_iter()
            .find(|j| j.kind == JobKind::RotateKeys && j.target == name)
        {
            return Err(Error::AlreadyExists(format!(
                "the keys of {name} are already being rotated by job {}; watch it with `lifeboat jobs watch {}`",
                active.id, active.id
            )));
        }
        let mut job = self.new_job(op, JobKind::RotateKeys, &target);
        job.rotation = Some(KeyRotation {
            add: req.add.iter().map(|r| r.trim().to_owned()).collect(),
            remove: req.remove.iter().map(|r| r.trim().to_owned()).collect(),
            dry_run: req.dry_run,
        });
        self.create(job).await
    }
}
