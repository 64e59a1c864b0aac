//! Pushes due export schedules to the buckets customers named
//! (`crate::export_push`), every minute. A round's failure is logged and the
//! next round tries again; it never stops the job. Each push is a unit of
//! work of its own (`crate::runner::unit`, in `push_due`), and so is each round: a
//! panic is caught, recorded and alerted, and the job goes on.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::export_push::push::JOB;
use crate::export_push::push_due;
use crate::platform::Platform;

pub const EVERY: Duration = Duration::from_secs(60);

pub fn spawn(
    platform: Arc<Platform>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if crate::runner::pause(&mut stop, every).await {
                return;
            }
            // Wall-clock time: schedules are compared across nodes.
            let round = push_due(&platform, time::OffsetDateTime::now_utc());
            match crate::runner::unit(&platform, JOB, "round", None, round).await {
                Ok(Ok(report)) if !report.pushed.is_empty() || !report.failed.is_empty() => {
                    tracing::info!(
                        pushed = report.pushed.len(),
                        failed = report.failed.len(),
                        "export push round"
                    );
                }
                Ok(Ok(_)) | Err(_) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "export push round failed"),
            }
        }
    })
}
