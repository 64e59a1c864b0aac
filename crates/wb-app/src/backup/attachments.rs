//! Attachments in a restore. Backups hold the journal, which records each
//! file (`file_added`) but not its content: the content is the company's
//! immutable object in the object store. So a restore checks that every
//! file it replayed still has its object (of the size its record needs),
//! and a restore into a new company re-seals each object under the new
//! company's key and path (the source's key may be destroyed later), keeping
//! the address its record names.

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use futures_util::stream::{self, StreamExt};
use object_store::ObjectStoreExt;
use wb_store::{CompanyRecord, FilePage, FileRecord, TenantStore};

use crate::files::{self, object_path, sealed_size};
use crate::platform::Platform;

/// Objects checked at once.
const HEADS_AT_ONCE: usize = 8;
/// Objects re-sealed at once (each holds a few multipart parts in memory).
const COPIES_AT_ONCE: usize = 2;
const PAGE: u32 = 1000;

type Work<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send + 'a>>;

/// A page of the store's files after `after`, one per address.
async fn page(
    store: &Arc<dyn TenantStore>,
    after: Option<i64>,
) -> anyhow::Result<Option<(i64, Vec<FileRecord>)>> {
    let page = store
        .files(FilePage {
            after,
            limit: PAGE,
            entry_id: None,
        })
        .await?;
    let Some(last) = page.last().map(|f| f.id) else {
        return Ok(None);
    };
    let mut seen = HashSet::new();
    let distinct = page
        .into_iter()
        .filter(|f| seen.insert(f.address.clone()))
        .collect();
    Ok(Some((last, distinct)))
}

/// Runs the work, `at_once` at a time, stopping at the first failure.
async fn run(work: Vec<Work<'_>>, at_once: usize) -> anyhow::Result<()> {
    let mut running = stream::iter(work).buffer_unordered(at_once);
    while let Some(done) = running.next().await {
        done?;
    }
    Ok(())
}

async fn head(platform: &Platform, company_id: &str, file: FileRecord) -> anyhow::Result<()> {
    let path = object_path(company_id, &file.address);
    let meta = match platform.objects.head(&path).await {
        Ok(meta) => meta,
        Err(object_store::Error::NotFound { .. }) => bail!(
            "attachment file {} of company {company_id} is missing: its object {path} \
             is not in the object store",
            file.id
        ),
        Err(e) => bail!("checking the object of attachment file {}: {e}", file.id),
    };
    let expected = sealed_size(file.size);
    // An object sealed under key version 2 or later carries the version's
    // envelope in front.
    if meta.size != expected && meta.size != expected + wb_crypto::ENVELOPE_LEN as u64 {
        bail!(
            "attachment file {} of company {company_id} is damaged: its object {path} \
             holds {} bytes, not {expected}",
            file.id,
            meta.size
        );
    }
    Ok(())
}

/// Checks that the object of every file of `store` is in `company_id`'s
/// namespace with the size its record needs. Returns the number of files.
pub(crate) async fn check(
    platform: &Platform,
    company_id: &str,
    store: &Arc<dyn TenantStore>,
) -> anyhow::Result<usize> {
    let (mut after, mut count) = (None, 0);
    while let Some((last, batch)) = page(store, after).await? {
        after = Some(last);
        count += batch.len();
        let work = batch
            .into_iter()
            .map(|file| Box::pin(head(platform, company_id, file)) as Work<'_>)
            .collect();
        run(work, HEADS_AT_ONCE).await?;
    }
    Ok(count)
}

/// Re-seals the object of every file of `store` (restored from `source_id`)
/// for the restored company `target`. Returns the number of files.
pub(crate) async fn copy(
    platform: &Platform,
    source_id: &str,
    target: &CompanyRecord,
    store: &Arc<dyn TenantStore>,
) -> anyhow::Result<usize> {
    let source_key = platform
        .company_key(source_id)
        .await
        .map_err(|e| anyhow!("the key of company {source_id}: {e}"))?;
    let target_key = wb_crypto::CompanyKeys::single(
        platform
            .keyring()
            .company_key(&target.id, &target.wrapped_dek)
            .map_err(|e| anyhow!("the key of the restored company: {e}"))?,
    );
    let (mut after, mut count) = (None, 0);
    while let Some((last, batch)) = page(store, after).await? {
        after = Some(last);
        count += batch.len();
        let work = batch
            .into_iter()
            .map(|file| {
                let (source_key, target_key) = (&source_key, &target_key);
                Box::pin(async move {
                    files::reseal(
                        platform.objects.clone(),
                        (source_key, source_id),
                        (target_key, &target.id),
                        &file,
                    )
                    .await
                    .map(drop)
                    .with_context(|| {
                        format!(
                            "copying attachment file {} into the restored company",
                            file.id
                        )
                    })
                }) as Work<'_>
            })
            .collect();
        run(work, COPIES_AT_ONCE).await?;
    }
    Ok(count)
}

/// Deletes what `copy` wrote for a restore that did not complete.
pub(crate) async fn discard(platform: &Platform, company_id: &str) {
    if let Err(e) = files::delete_all(&*platform.objects, company_id).await {
        tracing::warn!(company = company_id, error = %e,
            "deleting the attachments of a failed restore failed");
    }
}
