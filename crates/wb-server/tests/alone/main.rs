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
//! So a memory test first takes [`alone`]: no other test runs beside it,
//! whatever `--test-threads` says. An S3 test takes [`beside_others`], which
//! sets the environment while no other test runs, then lets the S3 tests run
//! side by side (their moto servers mostly wait).

#[path = "../server/api/harness.rs"]
mod harness;
#[path = "../server/support/moto.rs"]
mod moto;

mod console_browser;
mod counting_alloc;

use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

mod exports_memory;
mod files_memory;
mod s3;

/// The storage the test servers here run on.
const BACKEND: harness::Backend = harness::Backend::Sqlite;

/// Held by each test for its whole run: written by a test that must run
/// alone, read by tests that may run beside each other. A tokio lock: the
/// guard lives across awaits, and each test has its own runtime.
static TESTS: RwLock<()> = RwLock::const_new(());

/// Waits until no other test of this binary runs, and keeps it so until the
/// guard is dropped.
pub async fn alone() -> RwLockWriteGuard<'static, ()> {
    TESTS.write().await
}

/// Runs `prepare` while no other test of this binary runs, then keeps out
/// only the tests that must run alone until the guard is dropped.
pub async fn beside_others(prepare: fn()) -> RwLockReadGuard<'static, ()> {
    let alone = TESTS.write().await;
    prepare();
    alone.downgrade()
}
