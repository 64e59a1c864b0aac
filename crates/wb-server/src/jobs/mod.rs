//! Background jobs started with the server, stopped with it.

pub mod export_pusher;
pub mod forwarder;
pub mod shipper;
pub mod snapshotter;
pub mod verifier;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::platform::Platform;

/// Running background jobs; `stop` ends them after their current step.
pub struct Jobs {
    stop: watch::Sender<bool>,
    handles: Vec<JoinHandle<()>>,
}

impl Jobs {
    pub fn start(platform: Arc<Platform>) -> Jobs {
        let (stop, watch) = watch::channel(false);
        let handles = vec![
            shipper::spawn(platform.clone(), shipper::SHIP_EVERY, watch.clone()),
            crate::backup::audit_trail::spawn(platform.clone(), watch.clone()),
            crate::dr::spawn(
                platform.clone(),
                crate::dr::CONFIG_BACKUP_EVERY,
                watch.clone(),
            ),
            forwarder::spawn(
                platform,
                Duration::from_millis(200),
                forwarder::CHECKPOINT_EVERY,
                watch,
            ),
        ];
        Jobs { stop, handles }
    }

    pub fn add(&mut self, handle: JoinHandle<()>) {
        self.handles.push(handle);
    }

    pub fn stopper(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for handle in self.handles {
            let _ = handle.await;
        }
    }
}

/// How long a job's lease lasts; the holder renews it every round, and another
/// node takes the job over this long after the holder stops renewing.
pub const LEASE_TTL: Duration = Duration::from_secs(15);

/// True when this node holds (or has just taken) the lease `name`: jobs that
/// must run on one node at a time (checkpoints, monitor, drains, shipping a
/// company) do their round only then. Leases live in the control store, so
/// every node against the same control plane takes turns.
pub async fn hold_lease(control: &dyn wb_store::ControlStore, node: &str, name: &str) -> bool {
    // Wall-clock time: leases are compared across nodes, not with a test clock.
    let now = time::OffsetDateTime::now_utc();
    match control.try_lease(name, node, now, now + LEASE_TTL).await {
        Ok(held) => held,
        Err(e) => {
            tracing::warn!(lease = name, error = %e, "cannot take or renew a job lease");
            false
        }
    }
}

/// Sleeps for `period`, returning true when asked to stop instead.
pub async fn pause(stop: &mut watch::Receiver<bool>, period: Duration) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(period) => false,
        _ = stop.changed() => true,
    }
}
