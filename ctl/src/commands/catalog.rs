//! `lifeboat catalog rebuild [--agent A] [--repository R] [--dry-run]`.
//!
//! Prints one line per backup the rebuild touched or looked at, then a summary. Exits 1 if any
//! repository could not be listed (the rebuild is then incomplete), after printing the rest.

use std::io::Write;

use anyhow::{Result, bail};
use lifeboat_proto as pb;
use serde::Serialize;

use crate::{
    cli::{CatalogCommand, CatalogRebuildArgs, GlobalArgs},
    client::Conn,
    output::{self, Render, Table, human_size, json_time, non_empty, or_none, rfc3339_text},
    views::verify_word,
};

pub async fn run(cmd: CatalogCommand, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    match cmd {
        CatalogCommand::Rebuild(args) => rebuild(args, global, out).await,
    }
}

async fn rebuild(args: CatalogRebuildArgs, global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    let conn = Conn::connect(global).await?;
    let msg = pb::RebuildCatalogRequest {
        agent: args.agent.unwrap_or_default(),
        repository: args.repository.unwrap_or_default(),
        dry_run: args.dry_run,
        trust_cross_environment: args.trust_cross_environment,
    };
    let resp = conn
        .unary_active("rebuild the catalog", |mut c| {
            let req = conn.request(msg.clone());
            async move { c.rebuild_catalog(req).await }
        })
        .await?;
    let view = RebuildView::from(&resp);
    output::emit(out, global.output, &view)?;
    let failed: Vec<String> = view
        .listings
        .iter()
        .filter_map(|l| {
            l.error
                .as_ref()
                .map(|e| format!("{} of agent {}: {e}", l.repository, l.agent))
        })
        .collect();
    if !failed.is_empty() {
        bail!(
            "{} repository listing(s) failed, so the rebuild is incomplete ({}); fix the cause \
             and run `lifeboat catalog rebuild` again",
            failed.len(),
            failed.join("; ")
        );
    }
    Ok(())
}

fn outcome_word(v: i32) -> &'static str {
    match pb::RebuildOutcome::try_from(v) {
        Ok(pb::RebuildOutcome::Added) => "added",
        Ok(pb::RebuildOutcome::Updated) => "updated",
        Ok(pb::RebuildOutcome::Unchanged) => "unchanged",
        Ok(pb::RebuildOutcome::Conflict) => "conflict",
        Ok(pb::RebuildOutcome::Missing) => "missing",
        Ok(pb::RebuildOutcome::Skipped) => "skipped",
        Ok(pb::RebuildOutcome::Refused) => "refused",
        Ok(pb::RebuildOutcome::Unspecified) | Err(_) => "unknown",
    }
}

#[derive(Debug, Serialize)]
pub struct RebuildListingView {
    pub agent: String,
    pub repository: String,
    pub job_id: Option<String>,
    pub backups: u32,
    /// Why the listing failed; null on success.
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct RebuildBackupView {
    pub backup_id: String,
    pub target: String,
    pub agent: String,
    pub repository: String,
    /// `added`, `updated`, `unchanged`, `conflict`, `missing`, `skipped` or `refused`.
    pub outcome: &'static str,
    pub verify_status: &'static str,
    pub detail: Option<String>,
    pub stored_size: u64,
    pub finished_at: Option<String>,
    pub finished_at_ms: Option<i64>,
    /// Its pin was found in the repository (`pin.json`) and recorded again.
    pub pin_restored: bool,
}

#[derive(Debug, Serialize)]
pub struct RebuildView {
    pub dry_run: bool,
    pub added: u32,
    pub updated: u32,
    pub unchanged: u32,
    pub conflicts: u32,
    pub missing: u32,
    pub skipped: u32,
    pub refused: u32,
    pub damaged: u32,
    pub pins_restored: u32,
    pub listings: Vec<RebuildListingView>,
    pub backups: Vec<RebuildBackupView>,
}

impl From<&pb::RebuildCatalogResponse> for RebuildView {
    fn from(r: &pb::RebuildCatalogResponse) -> Self {
        Self {
            dry_run: r.dry_run,
            added: r.added,
            updated: r.updated,
            unchanged: r.unchanged,
            conflicts: r.conflicts,
            missing: r.missing,
            skipped: r.skipped,
            refused: r.refused,
            damaged: r.damaged,
            pins_restored: r.pins_restored,
            listings: r
                .listings
                .iter()
                .map(|l| RebuildListingView {
                    agent: l.agent.clone(),
                    repository: l.repository.clone(),
                    job_id: non_empty(&l.job_id),
                    backups: l.backups,
                    error: non_empty(&l.error),
                })
                .collect(),
            backups: r
                .backups
                .iter()
                .map(|b| {
                    let (finished_at, finished_at_ms) = json_time(b.finished_at_ms);
                    RebuildBackupView {
                        backup_id: b.backup_id.clone(),
                        target: b.target.clone(),
                        agent: b.agent.clone(),
                        repository: b.repository.clone(),
                        outcome: outcome_word(b.outcome),
                        verify_status: verify_word(b.verify_status),
                        detail: non_empty(&b.detail),
                        stored_size: b.stored_size,
                        finished_at,
                        finished_at_ms,
                        pin_restored: b.pin_restored,
                    }
                })
                .collect(),
        }
    }
}

impl Render for RebuildView {
    fn table(&self) -> String {
        let mut t = Table::new(&["REPOSITORY", "AGENT", "MANIFESTS", "JOB", "LISTING"]);
        for l in &self.listings {
            t.row(vec![
                l.repository.clone(),
                l.agent.clone(),
                l.backups.to_string(),
                or_none(l.job_id.as_deref().unwrap_or_default()),
                l.error
                    .as_deref()
                    .map_or_else(|| "ok".to_owned(), |e| format!("failed: {e}")),
            ]);
        }
        let mut s = t.render();
        s.push('\n');
        if !self.backups.is_empty() {
            let mut t = Table::new(&[
                "TARGET", "BACKUP", "FINISHED", "STORED", "OUTCOME", "VERIFY", "DETAIL",
            ]);
            for b in &self.backups {
                t.row(vec![
                    b.target.clone(),
                    b.backup_id.clone(),
                    rfc3339_text(b.finished_at_ms.unwrap_or(0)),
                    human_size(b.stored_size),
                    b.outcome.to_owned(),
                    b.verify_status.to_owned(),
                    match (b.pin_restored, b.detail.as_deref()) {
                        (true, Some(d)) => format!("pin restored; {d}"),
                        (true, None) => "pin restored".to_owned(),
                        (false, d) => or_none(d.unwrap_or_default()),
                    },
                ]);
            }
            s.push_str(&t.render());
            s.push('\n');
        }
        s.push_str(&format!(
            "{} added, {} updated, {} unchanged, {} conflicting, {} missing from storage, {} \
             skipped",
            self.added, self.updated, self.unchanged, self.conflicts, self.missing, self.skipped
        ));
        if self.refused > 0 {
            s.push_str(&format!(", {} refused", self.refused));
        }
        s.push_str(if self.dry_run {
            "; dry run, nothing written\n"
        } else {
            "\n"
        });
        if self.pins_restored > 0 {
            s.push_str(&format!(
                "{} pin(s) recorded again from the pin markers in the repositories{}\n",
                self.pins_restored,
                if self.dry_run { " (on a real run)" } else { "" }
            ));
        }
        if self.damaged > 0 {
            s.push_str(&format!(
                "{} backup(s) have data that is gone or of the wrong size (verify status \
                 missing or corrupt); retention deletes them unless pinned\n",
                self.damaged
            ));
        }
        if self.refused > 0 {
            s.push_str(
                "refused backups were not recorded (nor their pins): their manifest names \
                 another environment than the agent that listed it, or a finish time in the \
                 future; the DETAIL column says which\n",
            );
        }
        if self.conflicts > 0 {
            s.push_str(
                "conflicting backups were not changed: the repository holds other bytes than \
                 the catalog recorded; verify them (`lifeboat backup verify ID`) before relying \
                 on them\n",
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_outcomes_and_failed_listings() {
        let resp = pb::RebuildCatalogResponse {
            dry_run: false,
            listings: vec![
                pb::RebuildListing {
                    agent: "prod-1".into(),
                    repository: "local".into(),
                    job_id: "20261128T020000Z-00000d".into(),
                    backups: 2,
                    error: String::new(),
                },
                pb::RebuildListing {
                    agent: "prod-1".into(),
                    repository: "offsite".into(),
                    job_id: "20261128T020000Z-00000e".into(),
                    backups: 0,
                    error: "the list job failed: access denied".into(),
                },
            ],
            backups: vec![
                pb::RebuildBackup {
                    backup_id: "20261127T013000Z-00000a".into(),
                    target: "prod/orders".into(),
                    agent: "prod-1".into(),
                    repository: "local".into(),
                    outcome: pb::RebuildOutcome::Added.into(),
                    verify_status: pb::VerifyStatus::Unverified.into(),
                    detail: String::new(),
                    stored_size: 2048,
                    finished_at_ms: 1_794_969_000_000,
                    ..Default::default()
                },
                pb::RebuildBackup {
                    backup_id: "20261127T023000Z-00000b".into(),
                    target: "prod/orders".into(),
                    agent: "prod-1".into(),
                    repository: "local".into(),
                    outcome: pb::RebuildOutcome::Updated.into(),
                    verify_status: pb::VerifyStatus::Missing.into(),
                    detail: "data is missing".into(),
                    stored_size: 4096,
                    finished_at_ms: 1_794_972_600_000,
                    ..Default::default()
                },
            ],
            added: 1,
            updated: 1,
            damaged: 1,
            ..Default::default()
        };
        let text = RebuildView::from(&resp).table();
        for want in [
            "failed: the list job failed: access denied",
            "20261127T013000Z-00000a",
            "added",
            "updated  missing",
            "1 added, 1 updated, 0 unchanged, 0 conflicting, 0 missing from storage, 0 skipped",
            "1 backup(s) have data that is gone",
        ] {
            assert!(text.contains(want), "{want:?} not in:\n{text}");
        }
        let json = serde_json::to_value(RebuildView::from(&resp)).expect("json");
        assert_eq!(json["backups"][1]["outcome"], "updated");
        assert_eq!(json["refused"], 0);
        assert_eq!(json["listings"][0]["error"], serde_json::Value::Null);
        assert_eq!(json["damaged"], 1);
    }

    #[test]
    fn refused_backups_are_counted_and_explained() {
        let resp = pb::RebuildCatalogResponse {
            backups: vec![pb::RebuildBackup {
                backup_id: "20261127T013000Z-00000a".into(),
                target: "prod/orders".into(),
                agent: "prod-1".into(),
                repository: "shared".into(),
                outcome: pb::RebuildOutcome::Refused.into(),
                verify_status: pb::VerifyStatus::Unverified.into(),
                detail: "not recorded: its manifest is of environment prod".into(),
                ..Default::default()
            }],
            refused: 1,
            ..Default::default()
        };
        let text = RebuildView::from(&resp).table();
        for want in [
            "refused",
            "0 skipped, 1 refused",
            "not recorded (nor their pins)",
        ] {
            assert!(text.contains(want), "{want:?} not in:\n{text}");
        }
        let json = serde_json::to_value(RebuildView::from(&resp)).expect("json");
        assert_eq!(json["backups"][0]["outcome"], "refused");
        assert_eq!(json["refused"], 1);
    }
}
