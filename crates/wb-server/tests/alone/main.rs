//! The wb-server tests that need the process to themselves, one test binary
//! apart from `tests/server`:
//!
//! * the memory tests install a counting global allocator and measure the
//!   most heap the process held while a large attachment or export streams;
//!   another test running alongside would add its allocations;
//! * the S3 tests hand moto's fake credentials to the object store through the
//!   process environment (`std::env::set_var`), which is only sound while no
//!   other thread may be reading the environment (C's `getenv` takes no lock).
//!
//! So every test here first takes [`alone`], and they run one at a time
//! whatever `--test-threads` says.

#[path = "../server/api/harness.rs"]
mod harness;
#[path = "../server/support/moto.rs"]
mod moto;

mod counting_alloc;

mod exports_memory;
mod files_memory;
mod s3;

/// The storage the test servers here run on.
const BACKEND: harness::Backend = harness::Backend::Sqlite;

/// Held by each test for its whole run. A tokio mutex: the guard lives across
/// awaits, and the tests' runtimes are separate.
static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits until no other test of this binary runs, and keeps it so until the
/// guard is dropped.
pub async fn alone() -> tokio::sync::MutexGuard<'static, ()> {
    ALONE.lock().await
}
