//! Ships every open company's change journal to object storage in encrypted
//! segments, so a company can be restored to any shipped point.
//!
//! A segment is the JSON lines of records `first..=last`, sealed with the
//! company's DEK (XChaCha20-Poly1305) with the company id and the sequence range
//! as associated data, stored at `companies/{id}/journal/{first:020}-{last:020}.seg`.
//! The shipped position is the control-store cursor `ship:company:{id}`; a
//! crash between upload and cursor update re-ships the same range under the
//! same name, so nothing is lost or duplicated.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use wb_store::{JournalRecord, TenantStore};

use crate::dto::rfc3339;
use crate::platform::Platform;
use crate::problem::ApiResult;

/// At most this many records in one segment.
pub const SEGMENT_RECORDS: u32 = 10_000;
pub const SHIP_EVERY: Duration = Duration::from_millis(200);

pub fn cursor_name(company_id: &str) -> String {
    format!("ship:company:{company_id}")
}

pub fn journal_prefix(company_id: &str) -> ObjectPath {
    ObjectPath::from(format!("companies/{company_id}/journal"))
}

pub fn segment_path(company_id: &str, first: i64, last: i64) -> ObjectPath {
    ObjectPath::from(format!(
        "companies/{company_id}/journal/{first:020}-{last:020}.seg"
    ))
}

/// Associated data of a segment: binds it to its company and range.
pub fn segment_aad(company_id: &str, first: i64, last: i64) -> Vec<u8> {
    format!("workbooks-journal-segment/v1\n{company_id}\n{first}\n{last}").into_bytes()
}

/// One journal record as stored in a segment line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SegmentRecord {
    pub seq: i64,
    pub at: String,
    pub kind: String,
    pub payload: String,
    pub prev_hash: String,
    pub hash: String,
}

impl From<&JournalRecord> for SegmentRecord {
    fn from(r: &JournalRecord) -> SegmentRecord {
        SegmentRecord {
            seq: r.seq,
            at: rfc3339(r.at),
            kind: r.kind.clone(),
            payload: r.payload.clone(),
            prev_hash: r.prev_hash.clone(),
            hash: r.hash.clone(),
        }
    }
}

/// What the shipper knows between rounds: each company's shipped sequence.
#[derive(Default)]
pub struct ShipperState {
    shipped: HashMap<String, i64>,
}

async fn ship_tenant(
    platform: &Platform,
    state: &mut ShipperState,
    tenant: &Arc<dyn TenantStore>,
) -> ApiResult<usize> {
    let id = tenant.company_id().to_string();
    let cursor = cursor_name(&id);
    if let Some(shipped) = state.shipped.get(&id) {
        if tenant.journal(*shipped, 1).await?.is_empty() {
            return Ok(0);
        }
    }
    // One node ships a company at a time; the holder reads the shared cursor,
    // so a lease that moves between nodes never re-ships or skips records.
    let lease = format!("ship:{id}");
    if !super::hold_lease(&*platform.control, &platform.node_id, &lease).await {
        return Ok(0);
    }
    let mut after = platform.control.cursor(&cursor).await?;
    let mut key = None;
    let mut total = 0;
    loop {
        let records = tenant.journal(after, SEGMENT_RECORDS).await?;
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            break;
        };
        let (first, last) = (first.seq, last.seq);
        let key = match &key {
            Some(k) => k,
            None => {
                // A store open but not recorded (a restore in progress) has no key yet.
                if platform.control.company(&id).await?.is_none() {
                    return Ok(total);
                }
                key.insert(platform.company_key(&id).await?)
            }
        };
        let mut plain = Vec::new();
        for record in &records {
            let line = serde_json::to_vec(&SegmentRecord::from(record))
                .map_err(|e| anyhow::anyhow!("encoding a journal segment: {e}"))?;
            plain.extend_from_slice(&line);
            plain.push(b'\n');
        }
        let sealed = key
            .seal(&plain, &segment_aad(&id, first, last))
            .map_err(|e| anyhow::anyhow!("sealing a journal segment: {e}"))?;
        platform
            .objects
            .put(&segment_path(&id, first, last), PutPayload::from(sealed))
            .await
            .map_err(|e| anyhow::anyhow!("uploading journal segment {first}-{last}: {e}"))?;
        platform.control.set_cursor(&cursor, last).await?;
        state.shipped.insert(id.clone(), last);
        total += records.len();
        after = last;
    }
    Ok(total)
}

/// One round: ships what is new in every open company. A company that fails is
/// logged and retried next round; the others go on. Returns records shipped.
pub async fn ship_once(platform: &Platform, state: &mut ShipperState) -> ApiResult<usize> {
    let mut total = 0;
    for tenant in platform.tenants.open_tenants() {
        match ship_tenant(platform, state, &tenant).await {
            Ok(n) => total += n,
            Err(e) => {
                tracing::error!(company = tenant.company_id(), error = %e, "shipping a company's change journal failed")
            }
        }
    }
    Ok(total)
}

pub fn spawn(
    platform: Arc<Platform>,
    period: Duration,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut state = ShipperState::default();
        loop {
            if let Err(e) = ship_once(&platform, &mut state).await {
                tracing::error!(error = %e, "shipping change journals failed");
            }
            if super::pause(&mut stop, period).await {
                // Ship what was written up to the stop.
                let _ = ship_once(&platform, &mut state).await;
                return;
            }
        }
    })
}
