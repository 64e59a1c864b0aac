//! What each destruction step removes, and where. Every step may be taken
//! again after a crash: what is already gone counts as nothing.

use object_store::path::Path as ObjectPath;
use wb_core::lifecycle::DestructionStep;

use crate::error::ServiceResult;
use crate::platform::Platform;

/// What one step removed.
#[derive(Debug, Default)]
pub(super) struct Removed {
    pub items: u64,
    pub bytes: u64,
    pub names: Vec<String>,
}

pub(super) async fn take(
    platform: &Platform,
    company_id: &str,
    step: DestructionStep,
) -> ServiceResult<Removed> {
    let objects = |prefix: ObjectPath| delete_prefix(platform, prefix);
    Ok(match step {
        DestructionStep::Database => {
            let gone = platform.tenants.destroy(company_id).await?;
            Removed {
                items: gone.items,
                bytes: gone.bytes,
                names: gone.names,
            }
        }
        DestructionStep::Attachments => objects(crate::files::files_prefix(company_id)).await?,
        DestructionStep::JournalSegments => {
            objects(crate::backup::shipper::journal_prefix(company_id)).await?
        }
        DestructionStep::Snapshots => {
            objects(crate::backup::snapshot::snapshots_prefix(company_id)).await?
        }
        DestructionStep::AuditSegments => {
            objects(crate::backup::audit_trail::prefix(company_id)).await?
        }
        DestructionStep::Exports => objects(crate::exports::storage::prefix(company_id)).await?,
        DestructionStep::OtherObjects => {
            objects(ObjectPath::from(format!("companies/{company_id}"))).await?
        }
        DestructionStep::ConfigBackups => {
            let (items, bytes) = crate::dr::scrub_company(platform, company_id).await?;
            Removed {
                items,
                bytes,
                names: Vec::new(),
            }
        }
        DestructionStep::Keys => {
            // The object store's copy goes first; the control store's copy
            // goes in the same transaction that records this step.
            let bytes = crate::dr::delete_company_key(platform, company_id).await?;
            let versions = platform.control.company_key_versions(company_id).await?;
            let mut names = Vec::new();
            let (mut items, mut in_control) = (u64::from(bytes > 0), 0u64);
            if let Some(v) = &versions {
                names.push(format!(
                    "company key version {} (current)",
                    v.current_version
                ));
                if !v.current_wrapped.is_empty() {
                    items += 1;
                    in_control += v.current_wrapped.len() as u64;
                }
                for retired in &v.retired {
                    names.push(match retired.destroyed_at {
                        Some(_) => format!(
                            "company key version {} (destroyed before, when nothing needed it)",
                            retired.version
                        ),
                        None => format!("company key version {} (retired)", retired.version),
                    });
                    if !retired.wrapped_dek.is_empty() {
                        items += 1;
                        in_control += retired.wrapped_dek.len() as u64;
                    }
                }
            }
            if in_control > 0 {
                names.push("their wrappings in the control store".into());
            }
            if bytes > 0 {
                names.push(format!(
                    "their wrappings at keys/companies/{company_id}.dek and .v*.dek"
                ));
            }
            Removed {
                items,
                bytes: in_control + bytes,
                names,
            }
        }
    })
}

/// The last look under the company's prefix and at its wrapped key.
pub(super) async fn sweep(platform: &Platform, company_id: &str) -> ServiceResult<()> {
    let late = delete_prefix(
        platform,
        ObjectPath::from(format!("companies/{company_id}")),
    )
    .await?;
    if late.items > 0 {
        tracing::warn!(
            company = company_id,
            objects = late.items,
            "objects written during a destruction were swept"
        );
    }
    crate::dr::delete_company_key(platform, company_id).await?;
    Ok(())
}

/// Deletes every object under `prefix`, counting them and their bytes.
async fn delete_prefix(platform: &Platform, prefix: ObjectPath) -> anyhow::Result<Removed> {
    let (items, bytes) = crate::objects::delete_under(&*platform.objects, &prefix).await?;
    Ok(Removed {
        items,
        bytes,
        names: Vec::new(),
    })
}
