//! A sandbox on disk: its own data directory with its own master key, an
//! embedded store and a local object store, and `sandbox.json` saying what
//! it holds and when it ends. Destroying it removes the master key first
//! (without it nothing in the directory opens), then everything else.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use wb_crypto::MasterKey;

use crate::clock::Clock;
use crate::platform::Platform;
use crate::storage::StorageConfig;

const MANIFEST: &str = "sandbox.json";
const MASTER_KEY: &str = "master.key";

/// What a sandbox directory holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SandboxManifest {
    pub format: u32,
    /// The company's id in the sandbox.
    pub company: String,
    /// The production company it was restored from.
    pub source_company: String,
    pub reason: String,
    pub approver: String,
    pub approval: String,
    pub created_at: String,
    pub expires_at: String,
    /// The production data directory (where its destruction is reported).
    pub production_data: String,
}

impl SandboxManifest {
    pub fn expires(&self) -> anyhow::Result<OffsetDateTime> {
        OffsetDateTime::parse(
            &self.expires_at,
            &time::format_description::well_known::Rfc3339,
        )
        .context("the sandbox's expiry is unreadable")
    }
}

/// What destroying a sandbox removed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Destroyed {
    pub sandbox: String,
    pub manifest: Option<SandboxManifest>,
    pub files: u64,
    pub bytes: u64,
    pub destroyed_at: String,
    /// Why: "expired" or "by hand".
    pub cause: String,
}

/// Refuses every address but a loopback one: a sandbox holds production
/// data and must not be reachable from another machine.
pub fn loopback_only(listen: SocketAddr) -> anyhow::Result<()> {
    if !listen.ip().is_loopback() {
        bail!("a sandbox serves on a loopback address only (127.0.0.0/8 or ::1), not {listen}");
    }
    Ok(())
}

/// The control-store cursor holding a sandbox's expiry (Unix seconds):
/// inside its encrypted store, so editing `sandbox.json` extends nothing.
pub(crate) const EXPIRY_CURSOR: &str = "sandbox-expires-at";

/// Whether `dir` is a sandbox (it has a manifest).
pub fn is_sandbox(dir: &Path) -> bool {
    dir.join(MANIFEST).exists()
}

/// A sandbox's expiry: the earlier of its manifest's and its store's.
pub async fn expiry(platform: &Platform, dir: &Path) -> anyhow::Result<OffsetDateTime> {
    let manifest = read_manifest(dir)?.expires()?;
    let stored = platform.control.cursor(EXPIRY_CURSOR).await?;
    let stored = OffsetDateTime::from_unix_timestamp(stored).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    Ok(manifest.min(stored))
}

/// For a server about to serve `dir`: None when it is no sandbox; for a
/// sandbox, refuses a non-loopback address and an expired sandbox.
pub async fn guard(
    platform: &Platform,
    dir: &Path,
    listen: SocketAddr,
) -> anyhow::Result<Option<()>> {
    if !is_sandbox(dir) {
        return Ok(None);
    }
    loopback_only(listen)?;
    let expires = expiry(platform, dir).await?;
    if platform.now() >= expires {
        bail!(
            "this sandbox expired at {}; destroy it (workbooks sandbox destroy)",
            crate::dto::rfc3339(expires)
        );
    }
    Ok(Some(()))
}

pub fn read_manifest(dir: &Path) -> anyhow::Result<SandboxManifest> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "{} is not a sandbox (no readable {MANIFEST})",
            dir.display()
        )
    })?;
    serde_json::from_str(&text).with_context(|| format!("{} is unreadable", path.display()))
}

pub(crate) fn write_manifest(dir: &Path, manifest: &SandboxManifest) -> anyhow::Result<()> {
    let path = dir.join(MANIFEST);
    std::fs::write(&path, serde_json::to_vec_pretty(manifest)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// Creates the directory for a new sandbox, private; refuses one that
/// exists (so two restores never share one). True: it was created here.
pub(crate) fn create_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir(dir).with_context(|| {
        format!(
            "cannot create {} (a sandbox needs a new directory of its own)",
            dir.display()
        )
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting {}", dir.display()))?;
    }
    Ok(())
}

/// Removes a sandbox directory this process created and could not finish
/// (its key shredded first).
pub(crate) fn discard(dir: &Path) -> anyhow::Result<()> {
    let key = dir.join(MASTER_KEY);
    if key.exists() {
        shred(&key)?;
    }
    std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))
}

/// Opens (or, in a new directory, creates) the sandbox's own deployment:
/// its own master key, embedded stores and object store, no mail.
pub async fn open(dir: &Path, clock: Arc<dyn Clock>) -> anyhow::Result<Platform> {
    let key = MasterKey::load_or_create(&dir.join(MASTER_KEY))?;
    let platform = Platform::open(
        dir,
        key,
        clock,
        time::Duration::hours(12),
        &StorageConfig::Embedded,
    )
    .await?;
    let objects = crate::objects::open(None, dir)?;
    Ok(platform.with_object_store(objects))
}

fn tally(dir: &Path, files: &mut u64, bytes: &mut u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        // Never through a link: only what the sandbox itself holds.
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            tally(&entry.path(), files, bytes);
        } else {
            *files += 1;
            *bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
        }
    }
}

/// Overwrites a key file in place (same blocks, flushed) before removing it.
fn shred(path: &Path) -> anyhow::Result<()> {
    use std::io::Write;
    let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.write_all(&vec![0u8; usize::try_from(len).unwrap_or(0)])
        .with_context(|| format!("overwriting {}", path.display()))?;
    file.sync_all()
        .with_context(|| format!("flushing {}", path.display()))?;
    drop(file);
    std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))
}

/// Destroys the sandbox at `dir`: its master key (overwritten in place,
/// flushed, removed), then every file. Refused for a path that is a link or
/// holds no manifest (it may not be a sandbox), and while a server holds it.
pub fn destroy(dir: &Path, cause: &str, now: OffsetDateTime) -> anyhow::Result<Destroyed> {
    let meta = std::fs::symlink_metadata(dir)
        .with_context(|| format!("{} does not exist", dir.display()))?;
    if !meta.is_dir() {
        bail!(
            "{} is not a sandbox directory (a link or a file)",
            dir.display()
        );
    }
    let dir = dir
        .canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))?;
    let manifest = read_manifest(&dir)?;
    let lock = crate::data_lock::lock(&dir)
        .context("the sandbox is being served; stop it first (or let it expire)")?;
    let (mut files, mut bytes) = (0, 0);
    tally(&dir, &mut files, &mut bytes);
    let key = dir.join(MASTER_KEY);
    if key.exists() {
        shred(&key)?;
    }
    std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    drop(lock);
    Ok(Destroyed {
        sandbox: dir.display().to_string(),
        manifest: Some(manifest),
        files,
        bytes,
        destroyed_at: crate::dto::rfc3339(now),
        cause: cause.to_string(),
    })
}

/// Destroys the sandbox when its time is up at `now`; None while it lives.
pub fn expire_if_due(dir: &Path, now: OffsetDateTime) -> anyhow::Result<Option<Destroyed>> {
    let manifest = read_manifest(dir)?;
    if now < manifest.expires()? {
        return Ok(None);
    }
    destroy(dir, "expired", now).map(Some)
}

/// Where a sandbox destroyed without the production data directory at hand
/// leaves its record, for `sandbox list` to carry into the production
/// trail: beside the destroyed directory, never inside it.
pub fn destruction_record_path(dir: &Path) -> PathBuf {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "sandbox".into());
    dir.with_file_name(format!("{name}.destroyed.json"))
}

pub fn write_destruction_record(destroyed: &Destroyed) -> anyhow::Result<PathBuf> {
    let path = destruction_record_path(Path::new(&destroyed.sandbox));
    std::fs::write(&path, serde_json::to_vec_pretty(destroyed)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}
