//! Getting the extracted files to disk without stopping the extraction for it (ADR 0033).
//!
//! With a lot of memory the kernel starts writing dirty pages back only past a few GB, so a
//! file synced as it is closed reaches the disk inside that sync, in series with the
//! decompression. Here the extractor asks for writeback of each range as soon as it is written
//! (`sync_file_range(SYNC_FILE_RANGE_WRITE)`: a request, no wait) and hands each closed file to
//! a few sync threads; the restore waits for all of them before it writes `PG_VERSION`, so a
//! directory that can be started is still one whose every file was synced.

use std::{
    fs::File,
    io::{self, Write},
    path::PathBuf,
    sync::{Arc, Mutex, mpsc},
    thread::JoinHandle,
};

use anyhow::{Context, Result, anyhow};

/// Writeback is requested for each range of this many bytes once it is written.
const WRITEBACK_EVERY: u64 = 8 * 1024 * 1024;

/// Files waiting for a sync thread: bounds the descriptors held open.
const QUEUE: usize = 64;

/// Asks the kernel to start writing `len` bytes of `file` from `offset` back to disk, without
/// waiting. Only a hint: an I/O error surfaces at the file's sync.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: the descriptor is borrowed from a live `File` for the length of the call and
    // sync_file_range takes no pointers; its result is only a hint, so it is ignored.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// Elsewhere the sync threads do all of it.
#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _offset: u64, _len: u64) {}

/// A file being written: each [`WRITEBACK_EVERY`] bytes written are handed to the kernel's
/// writeback at once.
pub(super) struct Writing {
    file: File,
    written: u64,
    requested: u64,
}

impl Writing {
    pub(super) fn new(file: File) -> Self {
        Self {
            file,
            written: 0,
            requested: 0,
        }
    }

    /// The file, with writeback requested for what is left.
    pub(super) fn into_file(self) -> File {
        if self.written > self.requested {
            start_writeback(&self.file, self.requested, self.written - self.requested);
        }
        self.file
    }
}

impl Write for Writing {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written - self.requested >= WRITEBACK_EVERY {
            start_writeback(&self.file, self.requested, self.written - self.requested);
            self.requested = self.written;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

type Job = (File, PathBuf);

/// Threads that sync the files handed to them; the first failure is kept and reported by the
/// next [`Syncer::submit`] and by [`Syncer::finish`].
pub(super) struct Syncer {
    queue: Option<mpsc::SyncSender<Job>>,
    threads: Vec<JoinHandle<()>>,
    failed: Arc<Mutex<Option<String>>>,
}

impl Syncer {
    pub(super) fn new(threads: usize) -> Result<Self> {
        let (queue, jobs) = mpsc::sync_channel::<Job>(QUEUE);
        let jobs = Arc::new(Mutex::new(jobs));
        let failed = Arc::new(Mutex::new(None));
        let mut syncer = Self {
            queue: Some(queue),
            threads: Vec::new(),
            failed: failed.clone(),
        };
        for i in 0..threads.max(1) {
            let (jobs, failed) = (jobs.clone(), failed.clone());
            let t = std::thread::Builder::new()
                .name(format!("restore-sync-{i}"))
                .spawn(move || {
                    loop {
                        // The lock is held only to take the next file.
                        let next = jobs.lock().map_or(None, |j| j.recv().ok());
                        let Some((file, path)) = next else { break };
                        if let Err(e) = file.sync_all()
                            && let Ok(mut f) = failed.lock()
                            && f.is_none()
                        {
                            *f = Some(format!("sync {}: {e}", path.display()));
                        }
                    }
                })
                .context("start a sync thread")?;
            syncer.threads.push(t);
        }
        Ok(syncer)
    }

    fn failure(&self) -> Option<String> {
        self.failed
            .lock()
            .map_or_else(|_| Some("a sync thread panicked".to_owned()), |f| f.clone())
    }

    /// Queues `file` (written to its end) for its sync; waits while [`QUEUE`] files wait.
    pub(super) fn submit(&self, file: File, path: PathBuf) -> Result<()> {
        if let Some(e) = self.failure() {
            return Err(anyhow!(e));
        }
        self.queue
            .as_ref()
            .context("the syncer is finished")?
            .send((file, path))
            .map_err(|_| anyhow!("the sync threads stopped"))
    }

    /// Waits until every queued file is synced; the first failure if one was not.
    pub(super) fn finish(mut self) -> Result<()> {
        self.stop();
        match self.failure() {
            Some(e) => Err(anyhow!(e)),
            None => Ok(()),
        }
    }

    fn stop(&mut self) {
        self.queue = None;
        let mut panicked = false;
        for t in self.threads.drain(..) {
            panicked |= t.join().is_err();
        }
        if panicked && let Ok(mut f) = self.failed.lock() {
            f.get_or_insert_with(|| "a sync thread panicked".to_owned());
        }
    }
}

impl Drop for Syncer {
    /// A restore that failed still waits for its syncs: nothing is left writing into the
    /// directory it is about to remove.
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_written_through_and_synced_before_finish_returns() {
        let dir = tempfile::tempdir().expect("tempdir");
        let syncer = Syncer::new(3).expect("syncer");
        for i in 0..20u8 {
            let path = dir.path().join(format!("f{i}"));
            let mut w = Writing::new(File::create(&path).expect("create"));
            // Past one writeback range for some files.
            let data = vec![i; if i % 5 == 0 { 9 << 20 } else { 1000 }];
            w.write_all(&data).expect("write");
            syncer.submit(w.into_file(), path).expect("submit");
        }
        syncer.finish().expect("synced");
        for i in 0..20u8 {
            let data = std::fs::read(dir.path().join(format!("f{i}"))).expect("read");
            assert_eq!(data.len(), if i % 5 == 0 { 9 << 20 } else { 1000 });
            assert!(data.iter().all(|b| *b == i));
        }
    }

    #[test]
    fn a_failed_sync_is_reported_by_the_next_submit_and_by_finish() {
        let dir = tempfile::tempdir().expect("tempdir");
        let syncer = Syncer::new(1).expect("syncer");
        // A pipe cannot be fsync'ed: EINVAL, as a failing disk would give EIO.
        let (r, _w) = io::pipe().expect("pipe");
        let bad = File::from(std::os::fd::OwnedFd::from(r));
        syncer
            .submit(bad, dir.path().join("the-pipe"))
            .expect("queued");
        let e = loop {
            let ok = File::create(dir.path().join("ok")).expect("create");
            match syncer.submit(ok, dir.path().join("ok")) {
                Ok(()) => std::thread::yield_now(),
                Err(e) => break e,
            }
        };
        assert!(format!("{e:#}").contains("the-pipe"), "{e:#}");
        let e = syncer.finish().expect_err("failed");
        assert!(format!("{e:#}").contains("sync"), "{e:#}");
    }
}
