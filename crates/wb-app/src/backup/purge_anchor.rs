//! A purge's journal anchor: a chain that starts there (a snapshot taken
//! after the purge, the company's own journal, the segments after it) is
//! vouched for by the anchor's signature, made by a node key the
//! deployment's master key certified (key and certificate in the anchor).

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
    // The anchor carries its node's key and the certificate the master key
    // gave it: checked here without the node's registration, which disaster
    // recovery does not bring back.
    let certifiers = platform.keyring().node_certifiers();
    let signature = anchor.signature_bytes().unwrap_or_default();
    let certificate = hex::decode(&anchor.certificate).unwrap_or_default();
    let vouched = certifiers
        .iter()
        .any(|k| k.is_certified(&anchor.node, &anchor.public_key, &certificate))
        && wb_crypto::verify_signature(&anchor.public_key, &anchor.message(), &signature);
    if !vouched {
        bail!(
            "the purge anchor at record {} of company {company_id} is not signed by a certified node key",
            record.seq
        );
    }
    Ok(anchor)
}
