//! `workbooks keys status`: which master key wraps how many keys, and
//! whether a key other than the current one is still needed. Reads headers
//! (each wrapping names its KEK) and tries the current key's derived keys on
//! sealed secrets; prints ids and counts, never key material.

use std::collections::BTreeMap;

use anyhow::{anyhow, Context};
use object_store::path::Path as ObjectPath;
use object_store::ObjectStoreExt;
use serde::Serialize;
use wb_crypto::WrappedBy;
use wb_store::SealedColumn;

use crate::keyring::{outbox_message_aad, totp_secret_aad, Derived, Wrapped};
use crate::platform::Platform;

/// The deployment's master-key position.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct KeyStatus {
    /// The id of the master key this command was given (the current one).
    pub kek: String,
    /// Wrapped keys by the id of the KEK that wrapped them ("legacy": written
    /// before wrappings named their KEK).
    pub wrapped: BTreeMap<String, usize>,
    /// Wrapped keys and sealed secrets the current key alone does not open.
    pub need_other_kek: usize,
    /// A rotation's handover to running nodes is still published.
    pub handover: bool,
    /// "complete": the current key alone opens everything; "in-progress": not yet.
    pub rotation: &'static str,
    /// The deployment's certification key (public, hex): what signs node
    /// certificates and so certificates of destruction; the operator
    /// publishes it for `workbooks certificate verify --deployment-key`.
    pub deployment_key: String,
}

/// One wrapped key found, where it is and what it is.
pub(crate) struct Found {
    pub place: String,
    pub wrapped: Vec<u8>,
    pub company: Option<String>,
}

impl Found {
    pub fn kind(&self) -> Wrapped<'_> {
        match (self.place.as_str(), &self.company) {
            (_, Some(id)) => Wrapped::Company(id),
            ("control.key", None) => Wrapped::Control,
            ("node.key", None) => Wrapped::Node,
            _ => Wrapped::PlatformBackup,
        }
    }
}

/// Whether a company's destruction has begun or is done (a key object with
/// no company record at all is still re-wrapped: nothing says it is dead).
pub(crate) async fn being_destroyed(platform: &Platform, company_id: &str) -> anyhow::Result<bool> {
    let company = platform.control.company(company_id).await?;
    let begun = platform
        .control
        .deprovisioning(company_id)
        .await?
        .is_some_and(|d| d.destruction_started_at.is_some());
    Ok(begun
        || company.is_some_and(|c| {
            c.status == wb_store::CompanyStatus::Destroyed || c.wrapped_dek.is_empty()
        }))
}

/// Every company key wrapped in the object store (`keys/companies/{id}.dek`).
pub(crate) async fn object_company_keys(platform: &Platform) -> anyhow::Result<Vec<Found>> {
    let listed = platform
        .objects
        .list_with_delimiter(Some(&ObjectPath::from("keys/companies")))
        .await
        .context("listing wrapped company keys")?;
    let mut found = Vec::new();
    for meta in listed.objects {
        let Some(id) = meta
            .location
            .filename()
            .and_then(|n| n.strip_suffix(".dek"))
            // `{id}.v{n}.dek`: a retired version, wrapped for the same company.
            .map(|n| n.split_once(".v").map_or(n, |(id, _)| id).to_string())
        else {
            continue;
        };
        // A company whose destruction began: its copy is the destruction's
        // to delete, never re-wrapped (nor counted as needing a key).
        if being_destroyed(platform, &id).await? {
            continue;
        }
        let wrapped = match platform.objects.get(&meta.location).await {
            Ok(found) => found.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(e) => return Err(anyhow::anyhow!("reading {}: {e}", meta.location)),
        };
        found.push(Found {
            place: meta.location.to_string(),
            wrapped: wrapped.to_vec(),
            company: Some(id),
        });
    }
    Ok(found)
}

/// The platform backup key's wrapping, when one exists.
pub(crate) async fn platform_backup_key(platform: &Platform) -> anyhow::Result<Option<Found>> {
    let path = ObjectPath::from(crate::dr::PLATFORM_KEY);
    match platform.objects.get(&path).await {
        Ok(found) => Ok(Some(Found {
            place: crate::dr::PLATFORM_KEY.into(),
            wrapped: found.bytes().await?.to_vec(),
            company: None,
        })),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(anyhow!("reading {}: {e}", crate::dr::PLATFORM_KEY)),
    }
}

/// This node's key files (`control.key` on the embedded store, `node.key`).
pub(crate) fn key_files(platform: &Platform) -> anyhow::Result<Vec<Found>> {
    let mut found = Vec::new();
    for name in ["control.key", "node.key"] {
        let path = platform.data_dir().join(name);
        if path.exists() {
            found.push(Found {
                place: name.into(),
                wrapped: std::fs::read(&path)
                    .with_context(|| format!("reading {}", path.display()))?,
                company: None,
            });
        }
    }
    Ok(found)
}

/// Every wrapped key of the deployment this node can see.
async fn all_wrapped(platform: &Platform) -> anyhow::Result<Vec<Found>> {
    let mut found: Vec<Found> = platform
        .control
        .sealed_values(SealedColumn::CompanyKey)
        .await?
        .into_iter()
        .map(|(id, wrapped)| Found {
            place: format!("companies/{id}"),
            wrapped,
            company: Some(id),
        })
        .collect();
    for (id, wrapped) in platform
        .control
        .sealed_values(SealedColumn::RetiredCompanyKey)
        .await?
    {
        let company = wb_store::key_versions::company_of_retired_key(&id).to_string();
        found.push(Found {
            place: format!("company_key_versions/{id}"),
            wrapped,
            company: Some(company),
        });
    }
    found.extend(object_company_keys(platform).await?);
    found.extend(platform_backup_key(platform).await?);
    found.extend(key_files(platform)?);
    Ok(found)
}

/// The associated data a sealed column's value is bound to (its row id).
pub(crate) fn sealed_aad(column: SealedColumn, id: &str) -> Option<(Derived, Vec<u8>)> {
    match column {
        SealedColumn::UserTotp => Some((Derived::Mfa, totp_secret_aad(id))),
        SealedColumn::StaffTotp => Some((
            Derived::Mfa,
            totp_secret_aad(&crate::principal::staff_actor_id(id)),
        )),
        SealedColumn::OutboxMessage => Some((Derived::Outbox, outbox_message_aad(id))),
        SealedColumn::CompanyKey | SealedColumn::RetiredCompanyKey => None,
    }
}

pub async fn key_status(platform: &Platform) -> anyhow::Result<KeyStatus> {
    let keyring = platform.keyring();
    let mut wrapped: BTreeMap<String, usize> = BTreeMap::new();
    let mut need_other_kek = 0;
    for found in all_wrapped(platform).await? {
        let by = match WrappedBy::of(&found.wrapped) {
            Ok(WrappedBy::Kek(id)) => id.to_string(),
            Ok(WrappedBy::Legacy) => "legacy".to_string(),
            Err(_) => "malformed".to_string(),
        };
        *wrapped.entry(by).or_default() += 1;
        if !keyring.opens_with_current(found.kind(), &found.wrapped) {
            need_other_kek += 1;
        }
    }
    for column in SealedColumn::ALL {
        for (id, sealed) in platform.control.sealed_values(column).await? {
            if let Some((derived, aad)) = sealed_aad(column, &id) {
                if !keyring.opens_derived_with_current(derived, &sealed, &aad) {
                    need_other_kek += 1;
                }
            }
        }
    }
    let handover = crate::keys_handover::published(platform).await?;
    Ok(KeyStatus {
        kek: keyring.current_kek().to_string(),
        wrapped,
        need_other_kek,
        handover,
        rotation: if need_other_kek == 0 && !handover {
            "complete"
        } else {
            "in-progress"
        },
        deployment_key: platform.node_certifier().public_key_hex(),
    })
}
