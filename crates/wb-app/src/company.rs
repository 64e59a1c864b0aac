//! What a caller inside a company does with its control-plane records:
//! API keys, exports and the export schedule. Each takes the caller's
//! [`CompanyScope`], so the company is always the one the door admitted them
//! to; the functions underneath are crate-private.

use object_store::GetResult;
use wb_core::Role;
use wb_store::{ApiKeyRecord, ExportSchedule};

use crate::access::CompanyScope;
use crate::error::{ServiceError, ServiceResult};
use crate::export_push::schedule::{self, NewSchedule};
use crate::exports::{self, ExportRecord};
use crate::platform::{NewApiKey, Platform};

impl CompanyScope {
    /// A new API key for this company, granted by the caller's role.
    pub async fn create_api_key(
        &self,
        platform: &Platform,
        name: &str,
        role: Role,
        expires_in_days: Option<i64>,
    ) -> ServiceResult<NewApiKey> {
        platform
            .create_api_key(
                self.company_id(),
                self.role(),
                name,
                role,
                expires_in_days,
                self.actor().clone(),
            )
            .await
    }

    /// The answer to an API key asking for a new key (403), audited.
    pub async fn refuse_api_key_creation(&self, platform: &Platform) -> ServiceError {
        platform
            .refuse_api_key_creation(self.company_id(), self.actor().clone())
            .await
    }

    /// Rotates a key of this company (see `Platform::rotate_api_key`).
    pub async fn rotate_api_key(
        &self,
        platform: &Platform,
        key_id: &str,
        overlap_hours: i64,
    ) -> ServiceResult<(NewApiKey, ApiKeyRecord)> {
        platform
            .rotate_api_key(
                self.company_id(),
                self.role(),
                key_id,
                overlap_hours,
                self.actor().clone(),
            )
            .await
    }

    pub async fn revoke_api_key(
        &self,
        platform: &Platform,
        key_id: &str,
    ) -> ServiceResult<ApiKeyRecord> {
        platform
            .revoke_api_key(self.company_id(), key_id, self.actor().clone())
            .await
    }

    pub async fn exports(&self, platform: &Platform) -> anyhow::Result<Vec<ExportRecord>> {
        exports::list(platform, self.company_id()).await
    }

    pub async fn export(
        &self,
        platform: &Platform,
        export_id: &str,
    ) -> anyhow::Result<Option<ExportRecord>> {
        exports::get(platform, self.company_id(), export_id).await
    }

    /// An export's record and its encrypted bytes, streamed from the object store.
    pub async fn export_download(
        &self,
        platform: &Platform,
        export_id: &str,
    ) -> anyhow::Result<Option<(ExportRecord, GetResult)>> {
        exports::download(platform, self.company_id(), export_id).await
    }

    /// The export schedule and the id of the key its credentials are sealed with.
    pub async fn export_schedule(
        &self,
        platform: &Platform,
    ) -> ServiceResult<Option<(ExportSchedule, Option<String>)>> {
        schedule::get(platform, self.company_id()).await
    }

    pub async fn set_export_schedule(
        &self,
        platform: &Platform,
        new: NewSchedule,
    ) -> ServiceResult<ExportSchedule> {
        schedule::set(platform, self.company_id(), new, self.actor().clone()).await
    }

    pub async fn delete_export_schedule(&self, platform: &Platform) -> ServiceResult<()> {
        schedule::delete(platform, self.company_id(), self.actor().clone()).await
    }
}
