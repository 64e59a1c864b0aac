//! Creating and downloading a customer export, for every adapter: the
//! company's and the node's export slots, the key the customer chose
//! (checked off the async runtime), the audit events (`export.create`,
//! `export.download`: none served when its event cannot be written).
//! A passphrase is used to encrypt and dropped.

use object_store::GetResult;
use wb_core::Action;
use wb_crypto::Secret;
use wb_store::{AuditEvent, Outcome};

use crate::access::CompanyScope;
use crate::error::{ErrorKind, ServiceError, ServiceResult};
use crate::export_slots::Busy;
use crate::exports::{self, ExportKey, ExportRecord, KeyError};
use crate::platform::Platform;

/// What a caller refused for busy export slots is told to wait, in seconds.
pub const BUSY_RETRY_AFTER_SECS: u64 = 10;

/// How the customer wants an export encrypted.
pub enum ExportKeyRequest {
    /// An age X25519 recipient (`age1…`).
    Recipient(String),
    Passphrase(Secret),
}

fn busy(busy: Busy) -> ServiceError {
    let (kind, slug, title) = match busy {
        Busy::Company(_) => (
            ErrorKind::TooManyRequests,
            "export-in-progress",
            "Too many requests",
        ),
        Busy::Node(_) => (
            ErrorKind::Unavailable,
            "exports-busy",
            "Service unavailable",
        ),
    };
    ServiceError::new(kind, slug, title, busy.to_string()).retry_after(BUSY_RETRY_AFTER_SECS)
}

fn export_key(request: ExportKeyRequest, company_name: &str) -> ServiceResult<ExportKey> {
    let refused = |e: KeyError| match e {
        KeyError::WeakPassphrase(_) => {
            ServiceError::unprocessable("weak-passphrase", e.to_string())
        }
        KeyError::BadRecipient(_) => {
            ServiceError::unprocessable("invalid-recipient", e.to_string())
        }
    };
    match request {
        ExportKeyRequest::Recipient(recipient) => ExportKey::recipient(&recipient).map_err(refused),
        ExportKeyRequest::Passphrase(passphrase) => {
            let mut related: Vec<&str> = company_name.split_whitespace().collect();
            related.push(company_name);
            ExportKey::passphrase(passphrase, &related).map_err(refused)
        }
    }
}

impl CompanyScope {
    fn export_event(
        &self,
        platform: &Platform,
        action: Action,
        export_id: &str,
        outcome: Outcome,
        detail: Option<String>,
    ) -> AuditEvent {
        AuditEvent {
            at: platform.now(),
            actor: self.actor().clone(),
            company_id: Some(self.company_id().to_string()),
            action,
            target: Some(format!("export:{export_id}")),
            outcome,
            detail,
        }
    }

    /// Builds, encrypts and stores a full export of the company.
    pub async fn create_export(
        &self,
        platform: &Platform,
        request: ExportKeyRequest,
    ) -> ServiceResult<ExportRecord> {
        let company = self.company_id().to_string();
        let name = self.company(platform).await?.name;
        // Held until the export is stored: bounds the memory and CPU exports take.
        let _slot = platform.export_slots.try_acquire(&company).map_err(busy)?;
        // zxcvbn on a passphrase of up to 1 KiB: off the runtime, bounded.
        let key = platform
            .cpu
            .run(move || export_key(request, &name))
            .await??;
        let detail = match key.public_recipient() {
            Some(r) => format!("encrypted to age recipient {r}"),
            None => "encrypted to a passphrase".to_string(),
        };
        let prepared = self.prepare_export(platform, key).await?;
        let id = prepared.id.clone();
        let created = self.export_event(
            platform,
            Action::ExportCreate,
            &id,
            Outcome::Success,
            Some(detail),
        );
        self.record(platform, created).await?;
        match exports::save(platform, prepared).await {
            Ok(record) => Ok(record),
            Err(e) => {
                tracing::error!(error = %e, company = %company, export = %id, "storing an export failed");
                let failed = self.export_event(
                    platform,
                    Action::ExportCreate,
                    &id,
                    Outcome::Failure,
                    Some("the export could not be stored".into()),
                );
                self.note(failed).await;
                Err(ServiceError::unavailable(
                    "the export could not be stored; try again later",
                ))
            }
        }
    }

    /// An export's record and its encrypted bytes (streamed from the object
    /// store), once its download is recorded.
    pub async fn download_export(
        &self,
        platform: &Platform,
        export_id: &str,
    ) -> ServiceResult<(ExportRecord, GetResult)> {
        let (record, found) = self
            .export_download(platform, export_id)
            .await?
            .ok_or_else(|| ServiceError::not_found("export"))?;
        let event = self.export_event(
            platform,
            Action::ExportDownload,
            &record.id,
            Outcome::Success,
            None,
        );
        self.record(platform, event).await?;
        Ok((record, found))
    }
}
