//! A purge's journal anchor: a chain that starts there (a snapshot taken
//! after the purge, the company's own journal) is vouched for by the
//! anchor's signature, made by a node whose key this deployment certified.

use anyhow::{anyhow, bail};
use wb_store::purge::Anchor;

use crate::backup::shipper::SegmentRecord;
use crate::platform::Platform;

/// The anchor in `record`, checked: it names `company_id`, links to the
/// hash it names, and is signed by a registered, certified node key.
pub(crate) async fn vouched(
    platform: &Platform,
    company_id: &str,
    record: &SegmentRecord,
) -> anyhow::Result<Anchor> {
    let anchor = Anchor::of(&record.kind, &record.payload).ok_or_else(|| {
        anyhow!(
            "journal record {} of company {company_id} starts a chain but is not a purge anchor",
            record.seq
        )
    })?;
    if anchor.company_id != company_id {
        bail!(
            "the purge anchor at record {} names another company",
            record.seq
        );
    }
    if anchor.through_seq + 1 != record.seq || anchor.through_hash != record.prev_hash {
        bail!(
            "the purge anchor at record {} does not link to the record it names",
            record.seq
        );
    }
    let nodes = platform.control.node_keys().await?;
    let certifiers = platform.keyring().node_certifiers();
    let signature = anchor.signature_bytes().unwrap_or_default();
    let vouched = nodes.iter().any(|n| {
        n.id == anchor.node
            && wb_crypto::verify_signature(&n.public_key, &anchor.message(), &signature)
            && n.certificate.as_deref().is_some_and(|c| {
                certifiers
                    .iter()
                    .any(|k| k.is_certified(&n.id, &n.public_key, c))
            })
    });
    if !vouched {
        bail!(
            "the purge anchor at record {} of company {company_id} is not signed by a certified node key",
            record.seq
        );
    }
    Ok(anchor)
}
