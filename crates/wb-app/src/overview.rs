//! What a company's dashboard shows beside its books: how far its changes
//! are backed up, and the open alerts that concern it.

use time::OffsetDateTime;
use wb_core::monitor::AlertState;

use crate::access::CompanyScope;
use crate::backup::{shipper, snapshot};
use crate::error::ServiceResult;
use crate::platform::Platform;

/// The company's continuous-protection position.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupPosition {
    /// The last change committed.
    pub journal_seq: i64,
    /// The last change shipped to object storage.
    pub shipped_seq: i64,
    /// When the newest snapshot was taken (None: none yet).
    pub snapshot_taken_at: Option<OffsetDateTime>,
}

impl BackupPosition {
    pub fn unshipped(&self) -> i64 {
        (self.journal_seq - self.shipped_seq).max(0)
    }
}

/// An open or acknowledged alert about the company.
#[derive(Debug, Clone, PartialEq)]
pub struct CompanyAlert {
    pub title: String,
    pub severity: String,
    pub state: String,
    pub last_seen: OffsetDateTime,
}

/// Alerts looked through for a company's own (the newest first).
const ALERTS_SCANNED: u32 = 500;

impl CompanyScope {
    pub async fn backup_position(&self, platform: &Platform) -> ServiceResult<BackupPosition> {
        let company = self.company_id();
        let journal_seq = self.store().stats().await?.journal_seq;
        let shipped_seq = platform
            .control
            .cursor(&shipper::cursor_name(company))
            .await?;
        let snapshot_taken_at = match platform
            .control
            .cursor(&snapshot::seq_cursor(company))
            .await?
        {
            0 => None,
            _ => {
                let unix = platform
                    .control
                    .cursor(&snapshot::time_cursor(company))
                    .await?;
                OffsetDateTime::from_unix_timestamp(unix).ok()
            }
        };
        Ok(BackupPosition {
            journal_seq,
            shipped_seq,
            snapshot_taken_at,
        })
    }

    pub async fn open_alerts(&self, platform: &Platform) -> ServiceResult<Vec<CompanyAlert>> {
        let mut out = Vec::new();
        for state in [AlertState::Open, AlertState::Acknowledged] {
            for alert in platform.alerts.list(Some(state), ALERTS_SCANNED).await? {
                if alert.company_id.as_deref() == Some(self.company_id()) {
                    out.push(CompanyAlert {
                        title: alert.title,
                        severity: format!("{:?}", alert.severity).to_lowercase(),
                        state: format!("{:?}", alert.state).to_lowercase(),
                        last_seen: alert.last_seen,
                    });
                }
            }
        }
        Ok(out)
    }
}
