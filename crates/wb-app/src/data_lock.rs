//! One server per data directory: `serve` holds an exclusive lock on
//! `<data>/serve.lock` while it runs (the kernel releases it when the process
//! dies, even by kill -9). On the embedded store a second server, or an
//! operational command that writes into a company's books (in-place restore),
//! would run a second writer beside the server's, so they check the lock.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

use anyhow::{bail, Context};

pub const LOCK_FILE: &str = "serve.lock";

/// Takes the data directory's lock, or says who holds it.
pub fn lock(data_dir: &Path) -> anyhow::Result<File> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let path = data_dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => bail!(
            "a Work-books server is running on {} (it holds {LOCK_FILE}); stop it first",
            data_dir.display()
        ),
        Err(TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}
