//! Background jobs started with the server, stopped with it. This module
//! only starts and stops them: each capability owns its job (the shipper and
//! snapshotter in `backup`, the forwarder, the verifier in `backup_verify`,
//! the pusher in `export_push`) and runs its units through `crate::runner`.
//! Nothing in this crate imports `jobs`.

pub use crate::backup::{shipper, snapshotter};
pub use crate::backup_verify::verifier;
pub use crate::export_push::pusher as export_pusher;
pub use crate::forwarder;
pub use crate::runner::JOB_PANIC_RULE;

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
            crate::keys_handover::spawn(
                platform.clone(),
                crate::keys_handover::LOOK_EVERY,
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
