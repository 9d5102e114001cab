//! What one client stream of a MySQL/MariaDB restore reads and how a cut stream (a partial
//! restore, or one connection of a parallel load) is checked and passed on.

use crate::{
    engine::mysql::{self as my, stream::SandboxLineFilter, table_filter::TableFilter},
    pipeline::{self, PipelineError},
};

/// Where one client stream reads the stored archive: the repository, or the one download of
/// a parallel load from a remote repository.
pub(super) enum Data {
    Repository(crate::repo::body::StreamReader),
    Spooled(std::fs::File),
}

impl std::io::Read for Data {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Data::Repository(r) => r.read(buf),
            Data::Spooled(f) => f.read(buf),
        }
    }
}

/// The pipeline of a cut stream (a partial restore, or one connection of a parallel load):
/// the stream, checked whole against both hashes, cut down by `cut` before it reaches the
/// client. With `must_see`, a listed table without a section in the dump fails the load.
pub(super) fn load_cut<R: std::io::Read, W: std::io::Write + Send>(
    file: R,
    cut: TableFilter<W>,
    must_see: Option<Vec<String>>,
    sandbox_filter: bool,
    expected: &pipeline::Expected,
    counters: &std::sync::Arc<pipeline::Counters>,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<(), PipelineError> {
    let cut = if sandbox_filter {
        pipeline::decompress(
            file,
            SandboxLineFilter::new(cut),
            my::MAGIC,
            expected,
            counters,
            cancel,
        )?
        .into_inner()
        .map_err(PipelineError::Output)?
    } else {
        pipeline::decompress(file, cut, my::MAGIC, expected, counters, cancel)?
    };
    let (_, seen) = cut.finish().map_err(PipelineError::Output)?;
    let wanted: std::collections::BTreeSet<String> =
        must_see.unwrap_or_default().into_iter().collect();
    let missing: Vec<&String> = wanted.difference(&seen).collect();
    if !missing.is_empty() {
        return Err(PipelineError::Mismatch {
            what: format!(
                "the dump has no section for table(s) {missing:?} that its manifest lists"
            ),
        });
    }
    Ok(())
}
