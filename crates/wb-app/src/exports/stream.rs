//! Writing an export as a stream, in bounded memory: tar → age → a
//! multipart upload.
//!
//! The archive is written by synchronous code (`tar`, `age`) in a blocking
//! task. Its encrypted output goes, in 64 KiB pieces, through a bounded
//! channel to the async side, which feeds an object store multipart upload
//! (5 MiB parts, at most [`PARTS_IN_FLIGHT`] uploading): when the upload is
//! slow the channel fills and the writer waits. The attachments the archive
//! carries are read in the blocking task from their async download streams
//! (`Handle::block_on`, one piece at a time), decrypted and authenticated
//! chunk by chunk by `crate::files::download`.

use std::io::{self, Read, Write};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use sha2::{Digest, Sha256};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use wb_crypto::CompanyKeys;
use wb_store::FileRecord;

use super::archive::{write_archive, Part};
use super::storage::Prepared;
use super::{encrypting_writer, ExportFile, ExportKey, ExportRecord, FileRef, Manifest};
use crate::files::{self, DownloadError, PART_BYTES};

/// Multipart parts uploading at once.
const PARTS_IN_FLIGHT: usize = 2;
/// Bytes of one piece sent from the writer to the upload.
const PIECE: usize = 64 * 1024;
/// Pieces waiting in the channel (so at most 1 MiB between the two sides).
const CHANNEL_DEPTH: usize = 16;

/// What was written: the encrypted file's size and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub size: u64,
    pub sha256: String,
}

/// Where the attachments' contents come from: the company's object store
/// and data key.
pub(super) struct Source {
    pub objects: Arc<dyn ObjectStore>,
    pub key: CompanyKeys,
    pub company_id: String,
    pub files: Vec<ExportFile>,
}

impl ExportFile {
    /// The record `files::download` opens (it reads the id, address and size).
    fn record(&self) -> FileRecord {
        FileRecord {
            id: self.id,
            address: self.address.clone(),
            name: self.name.clone(),
            content_type: self.content_type.clone(),
            size: self.size,
            entry_id: self.entry_id,
            created_at: time::OffsetDateTime::UNIX_EPOCH,
            created_by: String::new(),
        }
    }
}

impl Source {
    async fn open(
        &self,
        file: &ExportFile,
    ) -> Result<BoxStream<'static, Result<Bytes, DownloadError>>, DownloadError> {
        files::download(
            self.objects.clone(),
            &self.key,
            &self.company_id,
            &file.record(),
        )
        .await
    }

    /// The first pass: downloads, decrypts and hashes every attachment
    /// (storing nothing) for the manifest.
    pub(super) async fn digests(&self) -> Result<Vec<FileRef>, DownloadError> {
        let mut refs = Vec::with_capacity(self.files.len());
        for file in &self.files {
            let mut plain = self.open(file).await?;
            let mut digest = Sha256::new();
            while let Some(piece) = plain.next().await {
                digest.update(&piece?);
            }
            refs.push(file.file_ref(hex::encode(digest.finalize())));
        }
        Ok(refs)
    }
}

/// An async plaintext stream read from a blocking thread.
struct BlockingStream {
    handle: Handle,
    stream: BoxStream<'static, Result<Bytes, DownloadError>>,
    current: Bytes,
}

impl Read for BlockingStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.handle.block_on(self.stream.next()) {
                None => return Ok(0),
                Some(Err(e)) => return Err(io::Error::other(e.to_string())),
                Some(Ok(piece)) => self.current = piece,
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

/// Counts and hashes the encrypted output on its way out.
struct Counting<W> {
    inner: W,
    digest: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digest.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Sends what is written, in pieces, to the async upload; waits while the
/// channel is full. Fails once the upload has stopped.
struct ChannelWriter {
    tx: mpsc::Sender<Bytes>,
    buffer: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let piece = std::mem::replace(&mut self.buffer, Vec::with_capacity(PIECE));
        self.tx
            .blocking_send(Bytes::from(piece))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload stopped"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(PIECE - self.buffer.len());
        self.buffer.extend_from_slice(&buf[..n]);
        if self.buffer.len() >= PIECE {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// What the blocking task needs to write an archive.
pub(super) struct Job {
    pub manifest: Manifest,
    pub parts: Vec<Part>,
    pub key: ExportKey,
    pub source: Option<Source>,
}

impl Job {
    /// Writes the encrypted archive to `out` (blocking: call it off the
    /// async runtime, from a thread that may use `handle.block_on`).
    fn run<W: Write>(self, out: W, handle: &Handle) -> anyhow::Result<(Written, W)> {
        let counting = Counting {
            inner: out,
            digest: Sha256::new(),
            bytes: 0,
        };
        let encrypting = encrypting_writer(counting, &self.key)?;
        let source = self.source.as_ref();
        let mut open = |file: &FileRef| -> io::Result<Box<dyn Read>> {
            let found = source.and_then(|s| {
                s.files
                    .iter()
                    .find(|f| f.id.to_string() == file.id)
                    .map(|f| (s, f))
            });
            let Some((source, export_file)) = found else {
                return Err(io::Error::other(format!("no source for {}", file.path)));
            };
            let stream = handle
                .block_on(source.open(export_file))
                .map_err(|e| io::Error::other(e.to_string()))?;
            Ok(Box::new(BlockingStream {
                handle: handle.clone(),
                stream,
                current: Bytes::new(),
            }))
        };
        let encrypting = write_archive(encrypting, &self.manifest, &self.parts, &mut open)?;
        let mut counting = encrypting.finish()?;
        counting.flush()?;
        let written = Written {
            size: counting.bytes,
            sha256: hex::encode(counting.digest.finalize()),
        };
        Ok((written, counting.inner))
    }
}

/// A multipart upload; dropped unfinished (the request was cancelled), it
/// is aborted.
struct Upload {
    path: ObjectPath,
    writer: Option<WriteMultipart>,
}

impl Drop for Upload {
    fn drop(&mut self) {
        let (Some(writer), Ok(runtime)) =
            (self.writer.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let path = self.path.clone();
        runtime.spawn(async move {
            if let Err(e) = writer.abort().await {
                tracing::warn!(path = %path, error = %e, "aborting a cancelled export upload failed");
            }
        });
    }
}

impl Upload {
    async fn start(target: &dyn ObjectStore, path: &ObjectPath) -> object_store::Result<Upload> {
        let upload = target.put_multipart(path).await?;
        Ok(Upload {
            path: path.clone(),
            writer: Some(WriteMultipart::new_with_chunk_size(upload, PART_BYTES)),
        })
    }

    async fn put(&mut self, piece: Bytes) -> object_store::Result<()> {
        if let Some(writer) = self.writer.as_mut() {
            writer.wait_for_capacity(PARTS_IN_FLIGHT).await?;
            writer.put(piece);
        }
        Ok(())
    }

    async fn finish(mut self) -> object_store::Result<()> {
        if let Some(writer) = self.writer.take() {
            writer.finish().await?;
        }
        Ok(())
    }

    async fn abort(mut self) {
        if let Some(writer) = self.writer.take() {
            if let Err(e) = writer.abort().await {
                tracing::warn!(path = %self.path, error = %e, "aborting an export upload failed");
            }
        }
    }
}

/// Writes the encrypted export to `path` in `target` (the platform's object
/// store, or a customer's bucket), streaming; nothing is left there when it
/// fails. Returns the export's record (size and SHA-256 of what was stored).
pub async fn write_to_store(
    prepared: Prepared,
    target: Arc<dyn ObjectStore>,
    path: &ObjectPath,
) -> anyhow::Result<ExportRecord> {
    let (pending, job) = prepared.into_job();
    let mut upload = Upload::start(&*target, path).await?;
    let (tx, mut rx) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
    let handle = Handle::current();
    let build = tokio::task::spawn_blocking(move || {
        let out = ChannelWriter {
            tx,
            buffer: Vec::with_capacity(PIECE),
        };
        job.run(out, &handle).map(|(written, _)| written)
    });
    let uploaded: object_store::Result<()> = async {
        while let Some(piece) = rx.recv().await {
            upload.put(piece).await?;
        }
        Ok(())
    }
    .await;
    // The writer stops (its next send fails) if the upload did.
    drop(rx);
    let built = build
        .await
        .map_err(|e| anyhow::anyhow!("writing an export: {e}"));
    match (uploaded, built) {
        (Ok(()), Ok(Ok(written))) => {
            upload.finish().await?;
            Ok(pending.record(written))
        }
        (Err(e), _) => {
            upload.abort().await;
            Err(e.into())
        }
        (Ok(()), Err(e) | Ok(Err(e))) => {
            upload.abort().await;
            Err(e)
        }
    }
}
