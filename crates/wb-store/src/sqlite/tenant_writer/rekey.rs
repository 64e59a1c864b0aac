//! Re-keying a company database while it serves.
//!
//! SQLCipher's `PRAGMA rekey` rewrites every page in one transaction: on a
//! large company that holds every write for seconds. Instead the writer
//! copies the database page by page into a new file under the new key with
//! SQLite's online backup, from its own connection, taking the writes that
//! queue up between steps as usual. SQLite applies a change made through the
//! backup's source connection to the copy as well, so the copy never
//! restarts and is complete when the last step is. Writes wait only for the
//! swap: the new file replaces the old one (readers closed first, then
//! reopened with the new key).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};
use wb_crypto::DataKey;

use super::{WriterState, MAX_BATCH_COMMANDS};
use crate::sqlite::conn::{open_encrypted, OpenMode, ReaderPool};
use crate::writer_jobs::Job;
use crate::{RekeyReport, StoreError};

/// Pages copied per step: 64 pages (256 KiB) take a few milliseconds, so a
/// write waits at most that long for a step to finish.
const PAGES_PER_STEP: std::os::raw::c_int = 64;
/// How often the copy's written pages are flushed to disk meanwhile, so the
/// flush inside the write pause is small.
const SYNC_EVERY: Duration = Duration::from_millis(250);

pub(crate) struct RekeyJob {
    pub key: DataKey,
    pub readers: Arc<ReaderPool>,
    pub reply: oneshot::Sender<Result<RekeyReport, StoreError>>,
}

/// `<path>.rekey`: the copy under construction.
pub(crate) fn copy_path(path: &Path) -> PathBuf {
    let mut copy = path.as_os_str().to_owned();
    copy.push(".rekey");
    PathBuf::from(copy)
}

/// Removes a copy and its WAL and SHM files (a copy an earlier re-key left).
pub(crate) fn remove_copy(copy: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut file = copy.as_os_str().to_owned();
        file.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(file));
    }
}

/// Flushes the copy to disk every `SYNC_EVERY` on a thread of its own while
/// the writer copies and writes.
struct Syncer {
    stop: std::sync::mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Syncer {
    fn start(copy: &Path) -> Syncer {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let copy = copy.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("rekey-sync".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(SYNC_EVERY)
                {
                    if let Ok(file) = std::fs::File::open(&copy) {
                        let _ = file.sync_data();
                    }
                }
            })
            .ok();
        Syncer { stop, thread }
    }

    fn stop(mut self) {
        let _ = self.stop.send(());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn backend(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("{what}: {e}"))
}

impl WriterState {
    /// Copies the database under `job.key`, applying writes between steps,
    /// then swaps the copy in. On an error before the swap the database is
    /// left as it was (under its old key).
    pub(super) fn rekey(
        &mut self,
        path: &Path,
        job: &RekeyJob,
        rx: &mut mpsc::Receiver<Job>,
    ) -> Result<RekeyReport, StoreError> {
        let started = Instant::now();
        let copy = copy_path(path);
        remove_copy(&copy);
        let outcome = self.copy_into(&copy, &job.key, rx);
        let (steps, paused) = match outcome {
            Ok(done) => done,
            Err(e) => {
                remove_copy(&copy);
                return Err(e);
            }
        };
        self.swap(path, &copy, job)?;
        let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        Ok(RekeyReport {
            already: false,
            bytes,
            steps,
            write_pause: paused.elapsed(),
            took: started.elapsed(),
        })
    }

    fn copy_into(
        &mut self,
        copy: &Path,
        key: &DataKey,
        rx: &mut mpsc::Receiver<Job>,
    ) -> Result<(u64, Instant), StoreError> {
        let mut target = open_encrypted(copy, key, OpenMode::Create)?;
        // The copy is thrown away if anything stops it: no journal, and its
        // pages reach the disk through the syncer below and one last flush.
        target.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;")?;
        let syncer = Syncer::start(copy);
        // SAFETY: `source` shares this writer's SQLite handle without owning
        // it (dropping it closes nothing) and is used only on this thread,
        // between the writer's own uses of the handle, never at the same
        // time: sharing the handle is what makes SQLite carry the writes
        // below into the copy instead of restarting it.
        let source = unsafe { Connection::from_handle(self.conn.handle()) }
            .map_err(|e| backend("sharing the writer's connection", e))?;
        let mut steps = 0u64;
        {
            let backup =
                Backup::new(&source, &mut target).map_err(|e| backend("starting the copy", e))?;
            loop {
                steps += 1;
                match backup
                    .step(PAGES_PER_STEP)
                    .map_err(|e| backend("copying the database", e))?
                {
                    StepResult::Done => break,
                    StepResult::More => {}
                    // Only this connection writes the database; a reader's
                    // checkpoint can hold a lock for a moment.
                    StepResult::Busy | StepResult::Locked => {
                        std::thread::sleep(Duration::from_millis(1))
                    }
                    _ => {}
                }
                self.apply_waiting(rx);
            }
        }
        // From here writes wait until the swap is done.
        let paused = Instant::now();
        drop(source);
        syncer.stop();
        target
            .close()
            .map_err(|(_, e)| backend("closing the copy", e))?;
        std::fs::File::open(copy)
            .and_then(|file| file.sync_all())
            .map_err(|e| backend("syncing the copy", e))?;
        Ok((steps, paused))
    }

    /// Applies the writes queued meanwhile, as one batch, and answers them.
    fn apply_waiting(&mut self, rx: &mut mpsc::Receiver<Job>) {
        let mut jobs = Vec::new();
        while jobs.len() < MAX_BATCH_COMMANDS {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        if jobs.is_empty() {
            return;
        }
        let (replies, work): (Vec<_>, Vec<_>) = jobs
            .into_iter()
            .map(|j| (j.reply, (j.command, j.ctx)))
            .unzip();
        let results = self.apply_batch(work);
        for (reply, result) in replies.into_iter().zip(results) {
            let _ = reply.send(result);
        }
    }

    /// Closes readers and the old database, puts the copy in its place and
    /// opens it with the new key. The copy goes in only once the old
    /// database left no WAL or SHM behind (they would be taken for the
    /// copy's); otherwise the old database is opened again as it was.
    fn swap(&mut self, path: &Path, copy: &Path, job: &RekeyJob) -> Result<(), StoreError> {
        let closed = job.readers.close_all()?;
        let old_key = job.readers.current_key()?;
        let placeholder =
            Connection::open_in_memory().map_err(|e| backend("a placeholder connection", e))?;
        let old = std::mem::replace(&mut self.conn, placeholder);
        // The last connection to close checkpoints the WAL and removes it.
        let closed_old = old.close();
        let leftovers = ["-wal", "-shm"].iter().any(|suffix| {
            let mut file = path.as_os_str().to_owned();
            file.push(suffix);
            PathBuf::from(file).exists()
        });
        let renamed = match closed_old {
            Err((old, e)) => {
                self.conn = old;
                remove_copy(copy);
                return Err(backend("closing the database", e));
            }
            Ok(()) if leftovers => {
                remove_copy(copy);
                Err(StoreError::Backend(
                    "another connection still has the database open: re-key it again".into(),
                ))
            }
            Ok(()) => std::fs::rename(copy, path)
                .map_err(|e| backend("replacing the database with its re-keyed copy", e)),
        };
        let key = if renamed.is_ok() {
            job.key.clone()
        } else {
            remove_copy(copy);
            old_key
        };
        if let Some(dir) = path.parent() {
            if let Ok(dir) = std::fs::File::open(dir) {
                let _ = dir.sync_all();
            }
        }
        // If this fails the writer stops (`Reopen`): the store is dropped
        // and opened afresh on its next use.
        let conn = open_encrypted(path, &key, OpenMode::Existing)
            .and_then(|c| {
                c.execute_batch(super::NORMAL_CACHE)
                    .map(|_| c)
                    .map_err(Into::into)
            })
            .map_err(|e| {
                StoreError::Backend(format!("reopening the database after its re-key: {e}"))
            })
            .inspect_err(|_| self.broken = true)?;
        self.conn = conn;
        self.reload();
        job.readers.set_key(&closed, key);
        drop(closed);
        renamed
    }
}
