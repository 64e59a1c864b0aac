//! Attachments in the object store: `companies/{id}/files/{address}`, each an
//! object sealed in 64 KiB chunks under the company's DEK (`wb_crypto`'s
//! `ChunkSealer`), named by its keyed content address.
//!
//! An upload streams: each piece of the request body is sealed and handed to
//! a multipart upload of a temporary object (`files/tmp/{uuid}`), so memory
//! holds one multipart part (5 MiB, S3's smallest) and at most
//! `PARTS_IN_FLIGHT` more, whatever the file's size. When the body ends, the
//! object is copied to its address unless one is there already (the same
//! content, stored before: uploads deduplicate) and the temporary object is
//! deleted. A download opens the object chunk by chunk and fails, mid-stream
//! if need be, on the first chunk that does not authenticate.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{BoxStream, Stream, StreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use wb_crypto::{
    CompanyKeys, FileCryptoError, VersionedOpener, CHUNK_LEN, HEADER_LEN, SEALED_CHUNK_LEN,
};
use wb_store::FileRecord;

/// Bytes of one multipart part.
pub const PART_BYTES: usize = 5 * 1024 * 1024;
/// Parts uploading at once; the body is read no faster than they complete.
const PARTS_IN_FLIGHT: usize = 2;
/// The default largest file.
pub const DEFAULT_MAX_BYTES: u64 = 1024 * 1024 * 1024;

pub fn files_prefix(company_id: &str) -> ObjectPath {
    ObjectPath::from(format!("companies/{company_id}/files"))
}

pub fn object_path(company_id: &str, address: &str) -> ObjectPath {
    ObjectPath::from(format!("companies/{company_id}/files/{address}"))
}

fn temporary_path(company_id: &str) -> ObjectPath {
    ObjectPath::from(format!(
        "companies/{company_id}/files/tmp/{}",
        uuid::Uuid::new_v4()
    ))
}

/// The size of the object holding `size` plaintext bytes.
pub fn sealed_size(size: u64) -> u64 {
    let chunk = CHUNK_LEN as u64;
    let chunks = size.div_ceil(chunk).max(1);
    HEADER_LEN as u64 + size + chunks * (SEALED_CHUNK_LEN - CHUNK_LEN) as u64
}

/// How much an upload may send, and how long it may pause.
#[derive(Debug, Clone, Copy)]
pub struct UploadLimits {
    pub max_bytes: u64,
    /// The longest wait for the next piece of the body.
    pub idle: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("the file is larger than the limit of {0} bytes")]
    TooLarge(u64),
    #[error("the upload sent nothing for {0:?} and was abandoned")]
    Idle(Duration),
    #[error("the request body could not be read: {0}")]
    Body(String),
    #[error("the object store failed: {0}")]
    Store(#[from] object_store::Error),
    #[error(transparent)]
    Crypto(#[from] FileCryptoError),
}

/// What an upload stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub address: String,
    pub size: u64,
    /// True when an object with this content was there already.
    pub deduplicated: bool,
}

/// A temporary object being written by a multipart upload. Dropped
/// unfinished (the request was cancelled), it aborts the upload.
struct Staging {
    path: ObjectPath,
    writer: Option<WriteMultipart>,
}

impl Drop for Staging {
    fn drop(&mut self) {
        let (Some(writer), Ok(runtime)) =
            (self.writer.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let path = self.path.clone();
        runtime.spawn(async move {
            if let Err(e) = writer.abort().await {
                tracing::warn!(path = %path, error = %e, "aborting a cancelled file upload failed");
            }
        });
    }
}

impl Staging {
    async fn start(objects: &dyn ObjectStore, company_id: &str) -> Result<Staging, UploadError> {
        let path = temporary_path(company_id);
        let upload = objects.put_multipart(&path).await?;
        Ok(Staging {
            path,
            writer: Some(WriteMultipart::new_with_chunk_size(upload, PART_BYTES)),
        })
    }

    async fn write(&mut self, sealed: &[u8]) -> Result<(), UploadError> {
        if let (false, Some(writer)) = (sealed.is_empty(), self.writer.as_mut()) {
            writer.wait_for_capacity(PARTS_IN_FLIGHT).await?;
            writer.write(sealed);
        }
        Ok(())
    }

    async fn abort(mut self) {
        if let Some(writer) = self.writer.take() {
            if let Err(e) = writer.abort().await {
                tracing::warn!(path = %self.path, error = %e, "aborting a file upload failed");
            }
        }
    }

    /// Completes the upload and moves the object to `target`; false when
    /// `target` already held an object (equal content: it stays).
    async fn finish(
        mut self,
        objects: &dyn ObjectStore,
        target: &ObjectPath,
    ) -> Result<bool, UploadError> {
        if let Some(writer) = self.writer.take() {
            writer.finish().await?;
        }
        let placed = place(objects, &self.path, target).await;
        if let Err(e) = objects.delete(&self.path).await {
            tracing::warn!(path = %self.path, error = %e, "deleting a temporary file object failed");
        }
        Ok(placed?)
    }
}

/// Copies `from` to `target` unless `target` exists. Stores without an atomic
/// copy-if-absent (plain S3) check first: a race then copies an object of
/// the same content over the other, which is harmless.
async fn place(
    objects: &dyn ObjectStore,
    from: &ObjectPath,
    target: &ObjectPath,
) -> Result<bool, object_store::Error> {
    match objects.copy_if_not_exists(from, target).await {
        Ok(()) => Ok(true),
        Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
        Err(
            object_store::Error::NotSupported { .. } | object_store::Error::NotImplemented { .. },
        ) => match objects.head(target).await {
            Ok(_) => Ok(false),
            Err(object_store::Error::NotFound { .. }) => {
                objects.copy(from, target).await?;
                Ok(true)
            }
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// Seals a request body into the company's object store, streaming.
pub async fn upload<S, E>(
    objects: &dyn ObjectStore,
    key: &CompanyKeys,
    company_id: &str,
    mut body: S,
    limits: UploadLimits,
) -> Result<Stored, UploadError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut staging = Staging::start(objects, company_id).await?;
    let mut sealer = key.file_sealer(company_id);
    let sealed = async {
        loop {
            let next = tokio::time::timeout(limits.idle, body.next())
                .await
                .map_err(|_| UploadError::Idle(limits.idle))?;
            let Some(piece) = next else { break };
            let piece = piece.map_err(|e| UploadError::Body(e.to_string()))?;
            if sealer.size() + piece.len() as u64 > limits.max_bytes {
                return Err(UploadError::TooLarge(limits.max_bytes));
            }
            staging.write(&sealer.push(&piece)?).await?;
        }
        let tail = sealer.finish()?;
        staging.write(&tail.bytes).await?;
        Ok(tail)
    }
    .await;
    let tail = match sealed {
        Ok(tail) => tail,
        Err(e) => {
            staging.abort().await;
            return Err(e);
        }
    };
    let created = staging
        .finish(objects, &object_path(company_id, &tail.address))
        .await?;
    Ok(Stored {
        address: tail.address,
        size: tail.size,
        deduplicated: !created,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("file {file}: its object {path} is not in the object store")]
    Missing { file: i64, path: String },
    #[error("file {file}: {source}")]
    Corrupt {
        file: i64,
        #[source]
        source: FileCryptoError,
    },
    #[error("file {file}: the object holds {found} bytes, not the {expected} its record names")]
    WrongSize {
        file: i64,
        expected: u64,
        found: u64,
    },
    #[error("file {file}: the object store failed: {source}")]
    Store {
        file: i64,
        #[source]
        source: object_store::Error,
    },
}

/// Decrypts an object as it is read.
struct Opening {
    source: BoxStream<'static, object_store::Result<Bytes>>,
    opener: Option<VersionedOpener>,
    file: i64,
    expected: u64,
    sent: u64,
}

impl Opening {
    /// The next authenticated plaintext; `None` once the final chunk was released.
    async fn next(&mut self) -> Result<Option<Bytes>, DownloadError> {
        let file = self.file;
        loop {
            let Some(opener) = self.opener.as_mut() else {
                return Ok(None);
            };
            let plain = match self.source.next().await {
                Some(Ok(sealed)) => opener
                    .push(&sealed)
                    .map_err(|source| DownloadError::Corrupt { file, source })?,
                Some(Err(source)) => return Err(DownloadError::Store { file, source }),
                None => {
                    let last = self.opener.take().map(VersionedOpener::finish);
                    let plain = last
                        .unwrap_or(Err(FileCryptoError::Truncated))
                        .map_err(|source| DownloadError::Corrupt { file, source })?;
                    self.sent += plain.len() as u64;
                    if self.sent != self.expected {
                        return Err(DownloadError::WrongSize {
                            file,
                            expected: self.expected,
                            found: self.sent,
                        });
                    }
                    return Ok(Some(Bytes::from(plain)));
                }
            };
            if !plain.is_empty() {
                self.sent += plain.len() as u64;
                if self.sent > self.expected {
                    return Err(DownloadError::WrongSize {
                        file,
                        expected: self.expected,
                        found: self.sent,
                    });
                }
                return Ok(Some(Bytes::from(plain)));
            }
        }
    }
}

/// An attachment's plaintext, as a stream that ends with an error (never
/// quietly) when any chunk fails authentication. The first chunk is opened
/// before this returns, so an object that is missing, of another company or
/// altered at its start is an error here rather than a broken response.
pub async fn download(
    objects: Arc<dyn ObjectStore>,
    key: &CompanyKeys,
    company_id: &str,
    file: &FileRecord,
) -> Result<BoxStream<'static, Result<Bytes, DownloadError>>, DownloadError> {
    let path = object_path(company_id, &file.address);
    let found = match objects.get(&path).await {
        Ok(found) => found,
        Err(object_store::Error::NotFound { .. }) => {
            return Err(DownloadError::Missing {
                file: file.id,
                path: path.to_string(),
            })
        }
        Err(source) => {
            return Err(DownloadError::Store {
                file: file.id,
                source,
            })
        }
    };
    let mut opening = Opening {
        source: found.into_stream(),
        opener: Some(key.file_opener(company_id, &file.address)),
        file: file.id,
        expected: file.size,
        sent: 0,
    };
    let first = opening.next().await?;
    let rest = futures_util::stream::try_unfold(opening, |mut opening| async move {
        Ok(opening.next().await?.map(|plain| (plain, opening)))
    });
    Ok(futures_util::stream::iter(first.map(Ok))
        .chain(rest)
        .boxed())
}

/// Copies a file's object from one company to another, decrypting with the
/// source's key and sealing with the target's under the same address (the
/// one the file's record names), streaming. Returns false when the target
/// holds that address already.
pub async fn reseal(
    objects: Arc<dyn ObjectStore>,
    from: (&CompanyKeys, &str),
    to: (&CompanyKeys, &str),
    file: &FileRecord,
) -> Result<bool, UploadError> {
    reseal_between((objects.clone(), objects), from, to, file).await
}

/// `reseal` from one object store into another (a sandbox's own).
pub async fn reseal_between(
    (source, objects): (Arc<dyn ObjectStore>, Arc<dyn ObjectStore>),
    (from_key, from_company): (&CompanyKeys, &str),
    (to_key, to_company): (&CompanyKeys, &str),
    file: &FileRecord,
) -> Result<bool, UploadError> {
    let target = object_path(to_company, &file.address);
    match objects.head(&target).await {
        Ok(_) => return Ok(false),
        Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let mut plain = download(source, from_key, from_company, file)
        .await
        .map_err(|e| UploadError::Body(e.to_string()))?;
    let mut staging = Staging::start(&*objects, to_company).await?;
    let mut sealer = to_key.file_sealer(to_company);
    let sealed = async {
        while let Some(piece) = plain.next().await {
            let piece = piece.map_err(|e| UploadError::Body(e.to_string()))?;
            staging.write(&sealer.push(&piece)?).await?;
        }
        let tail = sealer.finish_as(&file.address)?;
        staging.write(&tail.bytes).await?;
        Ok(())
    }
    .await;
    if let Err(e) = sealed {
        staging.abort().await;
        return Err(e);
    }
    staging.finish(&*objects, &target).await
}

/// Deletes every object under a company's files prefix (a restore that failed
/// after copying some).
pub async fn delete_all(objects: &dyn ObjectStore, company_id: &str) -> object_store::Result<()> {
    let prefix = files_prefix(company_id);
    let locations = objects
        .list(Some(&prefix))
        .map(|meta| meta.map(|m| m.location))
        .boxed();
    let mut deleted = objects.delete_stream(locations);
    while let Some(result) = deleted.next().await {
        match result {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
