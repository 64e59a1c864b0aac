//! How running nodes learn a new master key while a rotation runs.
//!
//! A node holds its master key in memory; after a rotation its company keys,
//! sealed secrets and certificates are under a key it never read. So the
//! rotation first publishes the new key wrapped under the old one at
//! `keys/master-handover.kek` in the shared object store, waits long enough
//! for every running node to look (`LOOK_EVERY`, twice over), and only then
//! re-wraps. A node that finds the handover makes the new key current (new
//! wrappings and sealings use it from then on, so nothing is written under
//! the old key after the rotation's sweep) and keeps the old one to open what
//! is not re-wrapped yet; it re-wraps its own `node.key`, which only it can
//! reach. The rotation deletes the handover when everything is moved: from
//! then on the old key opens nothing the deployment still uses.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use wb_crypto::MasterKey;

use crate::keyring::Wrapped;
use crate::platform::Platform;

/// Where the handover waits while a rotation runs.
pub const HANDOVER: &str = "keys/master-handover.kek";
/// The deployment's current KEK id, written when a rotation completes (an
/// id, not a key): a node holding none of it stops wrapping keys.
pub const KEK_ID: &str = "keys/kek.id";
/// How often a running node looks for a handover.
pub const LOOK_EVERY: Duration = Duration::from_secs(5);

fn path() -> ObjectPath {
    ObjectPath::from(HANDOVER)
}

/// Publishes `next` for running nodes (wrapped under the key it replaces);
/// false when the keyring holds no other key (nothing to hand over).
pub async fn publish(platform: &Platform, next: &MasterKey) -> anyhow::Result<bool> {
    let Some(wrapped) = platform.keyring().handover(next)? else {
        return Ok(false);
    };
    // One rotation at a time: a handover of another key means another
    // rotation (or an interrupted one with another key file) is under way;
    // finishing it first keeps every key under one of two master keys.
    if let Ok(found) = platform.objects.get(&path()).await {
        let published = found.bytes().await?;
        let other = platform
            .keyring()
            .open_handover_any(&published)
            .map(|key| key.id())
            .ok()
            .filter(|id| *id != next.id());
        if let Some(other) = other {
            anyhow::bail!(
                "a rotation to master key {other} is under way (its handover is published): finish it by running rotate-master again with that key file"
            );
        }
    }
    platform
        .objects
        .put(&path(), PutPayload::from(wrapped))
        .await
        .context("publishing the master-key handover")?;
    Ok(true)
}

/// Whether a handover is published.
pub async fn published(platform: &Platform) -> anyhow::Result<bool> {
    match platform.objects.head(&path()).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(anyhow!("reading {HANDOVER}: {e}")),
    }
}

/// Records the current KEK id, then deletes the handover (the rotation is
/// complete).
pub async fn withdraw(platform: &Platform) -> anyhow::Result<()> {
    platform
        .objects
        .put(
            &ObjectPath::from(KEK_ID),
            PutPayload::from(platform.keyring().current_kek().to_string().into_bytes()),
        )
        .await
        .with_context(|| format!("writing {KEK_ID}"))?;
    match platform.objects.delete(&path()).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(anyhow!("deleting {HANDOVER}: {e}")),
    }
}

/// Looks once: learns the handed-over key if there is one this node does not
/// hold yet, and re-wraps this node's `node.key` under it. True when it
/// learned a key.
pub async fn learn_once(platform: &Platform) -> anyhow::Result<bool> {
    let wrapped = match platform.objects.get(&path()).await {
        Ok(found) => found.bytes().await?,
        Err(object_store::Error::NotFound { .. }) => {
            check_retired(platform).await?;
            return Ok(false);
        }
        Err(e) => return Err(anyhow!("reading {HANDOVER}: {e}")),
    };
    let next = platform.keyring().open_handover(&wrapped).map_err(|_| {
        anyhow!("the master-key handover does not open with this node's current master key (not for this node, or replayed)")
    })?;
    let id = next.id();
    let held = platform.keyring().held_keks();
    if held[1..].contains(&id) {
        return Err(anyhow!(
            "the master-key handover names {id}, a key this node rotated away from: refused"
        ));
    }
    let learned = !held.contains(&id);
    platform.keyring().learn(next);
    rewrap_file(
        platform,
        &platform.data_dir().join("node.key"),
        Wrapped::Node,
    )?;
    if learned {
        tracing::info!(kek = %id, "learned the new master key from a rotation's handover");
    }
    Ok(learned)
}

/// Without a handover: a node that missed a whole rotation holds none of
/// the deployment's current key; it says so and wraps nothing from now on.
async fn check_retired(platform: &Platform) -> anyhow::Result<()> {
    let current = match platform.objects.get(&ObjectPath::from(KEK_ID)).await {
        Ok(found) => found.bytes().await?,
        Err(object_store::Error::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(anyhow!("reading {KEK_ID}: {e}")),
    };
    let current: String = String::from_utf8_lossy(&current)
        .trim()
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(64)
        .collect();
    if platform.keyring().current_kek().to_string() == current {
        // The rotation completed: keys rotated away from are not trusted.
        let dropped = platform.keyring().forget_older();
        if dropped > 0 {
            tracing::info!(kek = %current, dropped, "a master-key rotation completed: older keys dropped");
        }
        return Ok(());
    }
    if platform.keyring().note_deployment_kek(&current) {
        return Err(anyhow!(
            "this node's master key was rotated away (the deployment's is {current}); it wraps no key until restarted with the current one"
        ));
    }
    Ok(())
}

/// Re-wraps a key file in place under the current key (written beside it,
/// then renamed over it, so a crash leaves the old or the new, never half).
/// True when it changed.
pub(crate) fn rewrap_file(
    platform: &Platform,
    file: &std::path::Path,
    kind: Wrapped<'_>,
) -> anyhow::Result<bool> {
    if !file.exists() {
        return Ok(false);
    }
    let wrapped = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let Some(rewrapped) = platform
        .keyring()
        .rewrap(kind, &wrapped)
        .with_context(|| format!("re-wrapping {}", file.display()))?
    else {
        return Ok(false);
    };
    // A name of its own per writer (the server's handover job and the CLI
    // may both re-wrap `node.key`), and the directory synced after the
    // rename, so a power loss keeps the new wrapping once it is reported.
    let temporary = file.with_extension(format!("rewrapping-{}", uuid::Uuid::new_v4()));
    wb_crypto::write_private_file(&temporary, &rewrapped)
        .and_then(|_| std::fs::rename(&temporary, file))
        .with_context(|| format!("writing {}", file.display()))?;
    if let Some(dir) = file.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing {}", dir.display()))?;
    }
    Ok(true)
}

/// Looks for a handover every `every` until stopped.
pub fn spawn(
    platform: Arc<Platform>,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Err(e) = learn_once(&platform).await {
                tracing::error!(error = %e, "master-key handover");
            }
            if crate::runner::pause(&mut stop, every).await {
                return;
            }
        }
    })
}
