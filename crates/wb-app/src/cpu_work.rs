//! CPU-heavy request work (Argon2id, zxcvbn) off the async runtime, bounded.
//!
//! Every passphrase hash, verification and strength check of a request runs
//! here: on tokio's blocking pool, at most one job per core at a time. A
//! request that cannot start its job within `wait` is answered 503 with
//! Retry-After instead of queueing without bound, so a flood of logins or
//! signups neither stalls the runtime's worker threads nor fills the
//! blocking pool.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::error::{ServiceError, ServiceResult};

/// How long a request waits for a free core before it is refused.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(5);
/// What a refused request is told to wait before retrying, in seconds.
const RETRY_AFTER_SECS: u64 = 2;

#[derive(Debug, Clone)]
pub struct CpuWork {
    permits: Arc<Semaphore>,
    jobs: usize,
    wait: Duration,
}

impl CpuWork {
    /// At most `jobs` jobs at once (at least one); a job waits at most `wait` to start.
    pub fn new(jobs: usize, wait: Duration) -> CpuWork {
        let jobs = jobs.max(1);
        CpuWork {
            permits: Arc::new(Semaphore::new(jobs)),
            jobs,
            wait,
        }
    }

    /// One job per core of this machine.
    pub fn per_core() -> CpuWork {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        CpuWork::new(cores, DEFAULT_WAIT)
    }

    /// How many jobs may run at once.
    pub fn jobs(&self) -> usize {
        self.jobs
    }

    /// Runs `job` on the blocking pool once a core is free. The permit is
    /// held by the job itself, so a request abandoned mid-way (its client
    /// gone) still counts until its job really ends.
    pub async fn run<T, F>(&self, job: F) -> ServiceResult<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let permit =
            match tokio::time::timeout(self.wait, self.permits.clone().acquire_owned()).await {
                Ok(Ok(permit)) => permit,
                // Timed out, or (never: the semaphore is not closed) closed.
                Ok(Err(_)) | Err(_) => {
                    tracing::warn!(
                        jobs = self.jobs,
                        "CPU work refused: every core stayed busy for {:?}",
                        self.wait
                    );
                    let mut e = ServiceError::unavailable("the server is busy; retry shortly");
                    e.retry_after_secs = Some(RETRY_AFTER_SECS);
                    return Err(e);
                }
            };
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            job()
        })
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "CPU work failed");
            ServiceError::internal()
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_at_most_its_jobs_at_once_and_refuses_after_the_wait() {
        let work = CpuWork::new(2, Duration::from_millis(200));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        // Two jobs that hold their cores until released.
        let mut releases = Vec::new();
        let mut held = Vec::new();
        let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
        for _ in 0..2 {
            let (release, wait) = mpsc::channel::<()>();
            releases.push(release);
            let (work, running, most, started_tx) = (
                work.clone(),
                running.clone(),
                most.clone(),
                started_tx.clone(),
            );
            held.push(tokio::spawn(async move {
                work.run(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    started_tx.send(()).unwrap();
                    wait.recv().unwrap();
                    running.fetch_sub(1, Ordering::SeqCst);
                    7
                })
                .await
            }));
        }
        for _ in 0..2 {
            started.recv().await.unwrap();
        }
        // A third job finds no free core within the wait: 503, Retry-After.
        let refused = work.run(|| 0).await.unwrap_err();
        assert_eq!(refused.kind, crate::error::ErrorKind::Unavailable);
        assert_eq!(refused.retry_after_secs, Some(RETRY_AFTER_SECS));

        // Once one is released, the next job runs.
        releases.pop().unwrap().send(()).unwrap();
        let next = {
            let (running, most) = (running.clone(), most.clone());
            work.run(move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                running.fetch_sub(1, Ordering::SeqCst);
                9
            })
            .await
            .unwrap()
        };
        assert_eq!(next, 9);
        releases.pop().unwrap().send(()).unwrap();
        for h in held {
            assert_eq!(h.await.unwrap().unwrap(), 7);
        }
        assert_eq!(
            most.load(Ordering::SeqCst),
            2,
            "never more than two at once"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_abandoned_request_keeps_its_core_until_its_job_ends() {
        let work = CpuWork::new(1, Duration::from_millis(100));
        let (release, wait) = mpsc::channel::<()>();
        let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
        let abandoned = {
            let work = work.clone();
            tokio::spawn(async move {
                work.run(move || {
                    started_tx.send(()).unwrap();
                    wait.recv().unwrap();
                })
                .await
            })
        };
        started.recv().await.unwrap();
        abandoned.abort();
        let _ = abandoned.await;
        // The job still runs, so its core is still taken.
        assert_eq!(
            work.run(|| ()).await.unwrap_err().kind,
            crate::error::ErrorKind::Unavailable
        );
        release.send(()).unwrap();
        // Bounded poll: the core comes back once the job has ended.
        let mut freed = false;
        for _ in 0..100 {
            if work.run(|| ()).await.is_ok() {
                freed = true;
                break;
            }
        }
        assert!(freed);
    }
}
