//! The archive's table of contents, without the entries that would create the source
//! provider's left-out schemas and the extensions installed in them.

use std::{path::Path, process::Stdio};

use anyhow::{Context, Result, bail};
use tokio::io::AsyncReadExt;

use super::super::{Prepared, open_data};
use crate::{
    engine::postgres as pg,
    job::JobCtx,
    pipeline::{self, Counters, PipelineError},
    process::{describe_status, stderr_tail, stdin_file, stdout_file},
};

/// The archive's table of contents (`pg_restore --list`), read from the start of the stream.
/// pg_restore stops reading once it has the table of contents; the hashes are checked by the
/// restore that follows, which reads everything.
/// With `verbose`, each entry is followed by the entries it depends on
/// (`;\tdepends on: 12 34`).
pub(super) async fn read_toc(
    ctx: &JobCtx,
    p: &Prepared<'_>,
    pg_restore: &Path,
    verbose: bool,
) -> Result<String> {
    let loc = &p.loc;
    let file = open_data(loc)
        .await?
        .with_context(|| format!("data file {} is missing", loc.data_key))?;
    let mut child = pg::child_command(pg_restore, None)
        .arg("--list")
        .args(verbose.then_some("--verbose"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("start {} --list", pg_restore.display()))?;
    let stderr = stderr_tail(child.stderr.take().context("pg_restore stderr")?);
    let mut stdout = tokio::fs::File::from_std(stdout_file(
        child.stdout.take().context("pg_restore stdout")?,
    )?);
    let listing = tokio::spawn(async move { read_bounded(&mut stdout, MAX_TOC_BYTES).await });
    let stdin = stdin_file(child.stdin.take().context("pg_restore stdin")?)?;
    let expected = loc.expected.clone();
    let cancel = ctx.cancel.clone();
    let pipeline = tokio::task::spawn_blocking(move || {
        let counters = std::sync::Arc::new(Counters::default());
        pipeline::decompress(file, stdin, pg::PGDMP_MAGIC, &expected, &counters, &cancel).map(drop)
    });
    // The listing first: it ends at pg_restore's end of output, or at the bound, in which case
    // pg_restore is stopped rather than left blocked on a full pipe.
    let listing = listing.await.context("listing task panicked")?;
    if listing.is_err() {
        let _ = child.kill().await;
    }
    let status = child.wait().await.context("wait for pg_restore --list")?;
    let result = pipeline.await.context("pipeline task panicked")?;
    let stderr = stderr.await.unwrap_or_default();
    let listing = listing.with_context(|| {
        format!(
            "the archive's table of contents (pg_restore --list) is larger than {} MiB, far more than any real database's; the archive is not what lifeboat wrote — restore another backup, or restore without leaving schemas out",
            MAX_TOC_BYTES >> 20
        )
    })?;
    if !status.success() {
        bail!(
            "pg_restore --list failed ({}): {stderr}",
            describe_status(&status)
        );
    }
    match result {
        // pg_restore closed its input once it had the table of contents.
        Ok(()) | Err(PipelineError::Output(_)) => {}
        Err(e) => return Err(e).with_context(|| format!("read {}", loc.data_key)),
    }
    Ok(listing)
}

/// The most `pg_restore --list` output read into memory: ~100 bytes per entry, so room for
/// millions of tables, functions and grants.
const MAX_TOC_BYTES: u64 = 256 << 20;

/// Reads `reader` to its end as text, refusing more than `limit` bytes (without reading
/// past `limit + 1`).
async fn read_bounded<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut R,
    limit: u64,
) -> Result<String> {
    let mut buf = Vec::new();
    reader
        .take(limit + 1)
        .read_to_end(&mut buf)
        .await
        .context("read pg_restore --list output")?;
    if buf.len() as u64 > limit {
        bail!("more than {limit} bytes of output");
    }
    String::from_utf8(buf).context("pg_restore --list printed text that is not UTF-8")
}

/// Removes from a `pg_restore --list` listing the entries that create the left-out schemas
/// and extensions, with their comments and privileges. (`--exclude-schema` leaves out the
/// objects in a schema, but still creates the schema and the extensions installed in it.)
/// Returns the listing to restore and how many entries were removed.
pub(super) fn filter_toc_listing(
    listing: &str,
    schemas: &[String],
    extensions: &[String],
) -> (String, usize) {
    let is = |list: &[String], name: &str| list.iter().any(|x| x == name);
    let mut out = String::with_capacity(listing.len());
    let mut removed = 0;
    for line in listing.lines() {
        let words: Vec<&str> = line
            .split_once(';')
            .filter(|(id, _)| id.trim().chars().all(|c| c.is_ascii_digit()) && !id.is_empty())
            .map(|(_, rest)| rest.split_whitespace().skip(2).collect())
            .unwrap_or_default();
        let drop = match words.as_slice() {
            ["SCHEMA", "-", s, ..] => is(schemas, s),
            ["EXTENSION", "-", e, ..] => is(extensions, e),
            ["COMMENT" | "ACL", "-", "SCHEMA", s, ..] => is(schemas, s),
            ["COMMENT", "-", "EXTENSION", e, ..] => is(extensions, e),
            _ => false,
        };
        if drop {
            removed += 1;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    (out, removed)
}

/// A 0600 file in `dir`, removed when dropped.
pub(super) fn write_private(dir: &Path, bytes: &[u8]) -> Result<tempfile::TempPath> {
    use std::io::Write;
    let mut f = tempfile::Builder::new()
        .prefix(".lifeboat-toc-")
        .tempfile_in(dir)
        .with_context(|| format!("create a list file in {}", dir.display()))?;
    f.write_all(bytes).context("write the list file")?;
    f.flush().context("write the list file")?;
    Ok(f.into_temp_path())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_endless_listing_is_cut_at_the_bound() {
        // A real process that never stops writing, as a hostile archive could make pg_restore.
        let mut child = tokio::process::Command::new("yes")
            .arg("1; 2615 2200 SCHEMA - public postgres")
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("run yes");
        let mut out = child.stdout.take().expect("stdout");
        let err = read_bounded(&mut out, 1 << 20).await.expect_err("bounded");
        assert!(
            err.to_string().contains("more than 1048576 bytes"),
            "{err:#}"
        );
        let _ = child.kill().await;
        let mut small: &[u8] = b"; Archive created at ...\n1; 2615 2200 SCHEMA - public postgres\n";
        let text = read_bounded(&mut small, 1 << 20)
            .await
            .expect("small listing");
        assert!(text.contains("SCHEMA - public"));
    }

    #[test]
    fn left_out_schemas_and_extensions_leave_the_listing() {
        let listing = "\
;
; Archive created at 2026-12-01 19:00:00 UTC
;
7; 2615 16388 SCHEMA - auth supabase_admin
8; 2615 16390 SCHEMA - storage supabase_admin
9; 2615 16391 SCHEMA - extensions postgres
3390; 0 0 ACL - SCHEMA auth supabase_admin
3391; 0 0 COMMENT - SCHEMA storage supabase_admin
2; 3079 16389 EXTENSION - pg_graphql 
3389; 0 0 COMMENT - EXTENSION pg_graphql 
4; 3079 16392 EXTENSION - pgcrypto 
217; 1259 16429 TABLE public profiles postgres
216; 1259 16426 TABLE auth users supabase_admin
";
        let schemas = vec![
            "auth".to_owned(),
            "storage".to_owned(),
            "graphql".to_owned(),
        ];
        let (kept, removed) = filter_toc_listing(listing, &schemas, &["pg_graphql".to_owned()]);
        assert_eq!(removed, 6, "{kept}");
        assert!(kept.contains("SCHEMA - extensions postgres"));
        assert!(kept.contains("EXTENSION - pgcrypto"));
        assert!(kept.contains("TABLE public profiles"));
        // Objects inside left-out schemas are --exclude-schema's job.
        assert!(kept.contains("TABLE auth users"));
        assert!(!kept.contains("SCHEMA - auth"));
        assert!(!kept.contains("pg_graphql"));
        assert!(kept.starts_with(";\n; Archive created"));
        let (same, none) = filter_toc_listing(listing, &[], &[]);
        assert_eq!((same.as_str(), none), (listing, 0));
    }
}
