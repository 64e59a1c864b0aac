//! The application log the export-push stories search for secrets: every
//! event of this test process at debug and finer, written to one file.
//!
//! One per process, not per backend module: a tracing subscriber is global,
//! so only the first `try_init` installs one, and both backends' stories must
//! read the file that one writes to.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The application log of this test binary (every test's events, at debug
/// and finer), so stories can check what never reaches it.
pub fn log_file() -> &'static Path {
    static LOG: OnceLock<PathBuf> = OnceLock::new();
    LOG.get_or_init(|| {
        let path = std::env::temp_dir().join(format!(
            "wb-export-push-{}-{}.log",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        let file = std::fs::File::create(&path).unwrap();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "trace,rustls=debug,h2=debug,hyper=debug,tokio_postgres=debug",
            ))
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(file))
            .try_init();
        path
    })
}
