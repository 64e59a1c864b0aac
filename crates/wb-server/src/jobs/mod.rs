//! Background jobs started with the server, stopped with it.

pub mod forwarder;
pub mod shipper;

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
