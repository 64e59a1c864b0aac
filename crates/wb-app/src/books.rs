//! The books of a company, for a caller inside it: every read and change an
//! adapter (the HTTP API, later the console) makes goes through a
//! [`CompanyScope`], so the door has decided and recorded before any of it
//! runs. Changes raise the audit alarm when their audit record could not be
//! written (`Platform::checked`).

use time::Date;
use wb_core::reports::{AccountInfo, Amounts, BalanceRow, RegisterPosting};
use wb_core::{Action, EntryDraft, NewAccount};
use wb_store::{
    Account, AuditEvent, CompanyRecord, Entry, EntryPage, FilePage, FileRecord, Idempotency,
    NewFile, Posted,
};

use crate::access::CompanyScope;
use crate::error::{ServiceError, ServiceResult};
use crate::platform::Platform;

impl CompanyScope {
    /// The company's own record.
    pub async fn company(&self, platform: &Platform) -> ServiceResult<CompanyRecord> {
        platform
            .control
            .company(self.company_id())
            .await?
            .ok_or_else(|| ServiceError::not_found("company"))
    }

    pub async fn accounts(&self) -> ServiceResult<Vec<Account>> {
        Ok(self.store().accounts().await?)
    }

    /// The chart as the report builders take it.
    pub async fn account_infos(&self) -> ServiceResult<Vec<AccountInfo>> {
        Ok(self
            .accounts()
            .await?
            .into_iter()
            .map(|a| AccountInfo {
                code: a.code,
                name: a.name,
                account_type: a.account_type,
            })
            .collect())
    }

    pub async fn create_account(
        &self,
        platform: &Platform,
        account: NewAccount,
    ) -> ServiceResult<Account> {
        let created = self
            .store()
            .create_account(account, self.write_context(platform.now()))
            .await;
        platform
            .checked(self.company_id(), Action::AccountCreate, created)
            .await
    }

    pub async fn entries(&self, page: EntryPage) -> ServiceResult<Vec<Entry>> {
        Ok(self.store().entries(page).await?)
    }

    pub async fn entry(&self, id: i64) -> ServiceResult<Option<Entry>> {
        Ok(self.store().entry(id).await?)
    }

    pub async fn post_entries(
        &self,
        platform: &Platform,
        drafts: Vec<EntryDraft>,
        idempotency: Option<Idempotency>,
    ) -> ServiceResult<Posted> {
        let posted = self
            .store()
            .post_entries(drafts, idempotency, self.write_context(platform.now()))
            .await;
        platform
            .checked(self.company_id(), Action::EntryPost, posted)
            .await
    }

    pub async fn reverse_entry(
        &self,
        platform: &Platform,
        id: i64,
        date: Date,
        description: Option<String>,
    ) -> ServiceResult<Entry> {
        let reversal = self
            .store()
            .reverse_entry(id, date, description, self.write_context(platform.now()))
            .await;
        platform
            .checked(self.company_id(), Action::EntryReverse, reversal)
            .await
    }

    pub async fn balances_as_of(&self, date: Date) -> ServiceResult<Vec<BalanceRow>> {
        Ok(self.store().balances_as_of(date).await?)
    }

    pub async fn movements(&self, from: Date, to: Date) -> ServiceResult<Vec<BalanceRow>> {
        Ok(self.store().movements(from, to).await?)
    }

    pub async fn register(
        &self,
        account: &str,
        from: Date,
        to: Date,
        limit: u32,
    ) -> ServiceResult<(Amounts, Vec<RegisterPosting>)> {
        Ok(self.store().register(account, from, to, limit).await?)
    }

    pub async fn files(&self, page: FilePage) -> ServiceResult<Vec<FileRecord>> {
        Ok(self.store().files(page).await?)
    }

    pub async fn file(&self, id: i64) -> ServiceResult<Option<FileRecord>> {
        Ok(self.store().file(id).await?)
    }

    /// Records an attachment whose object is already stored.
    pub async fn add_file(&self, platform: &Platform, file: NewFile) -> ServiceResult<FileRecord> {
        let recorded = self
            .store()
            .add_file(file, self.write_context(platform.now()))
            .await;
        platform
            .checked(self.company_id(), Action::FileUpload, recorded)
            .await
    }

    /// Builds an export of this company (the caller asked for it; the
    /// handler records `export.create` once it is stored).
    pub async fn prepare_export(
        &self,
        platform: &Platform,
        key: crate::exports::ExportKey,
    ) -> ServiceResult<crate::exports::Prepared> {
        crate::exports::prepare(platform, self.store(), key, &self.actor().id).await
    }

    /// The company's API keys.
    pub async fn api_keys(
        &self,
        platform: &Platform,
    ) -> ServiceResult<Vec<wb_store::ApiKeyRecord>> {
        Ok(platform.control.api_keys(self.company_id()).await?)
    }

    /// The company's slice of the central audit collection; the query's
    /// company is always this one. Events of an access grant that a legal
    /// mandate still hides from the company (its request, decisions, and
    /// everything done under it) are left out until it may be told; the
    /// answer is still up to `query.limit` events, read on past hidden ones.
    pub async fn audit_events(
        &self,
        platform: &Platform,
        mut query: wb_store::AuditQuery,
    ) -> ServiceResult<Vec<wb_store::CentralEvent>> {
        query.company_id = Some(self.company_id().to_string());
        let hidden = platform.hidden_grants(self.company_id()).await?;
        if hidden.is_empty() {
            return Ok(platform.control.central_events(query).await?);
        }
        let is_hidden = |e: &wb_store::CentralEvent| {
            hidden.iter().any(|id| {
                e.event.auth == crate::grant_actions::grant_auth(id)
                    || e.event.target.as_deref() == Some(&format!("grant:{id}"))
            })
        };
        let wanted = query.limit as usize;
        let mut out = Vec::new();
        // Bounded: a page of hidden events costs one more read, at most ten.
        for _ in 0..10 {
            let page = platform.control.central_events(query.clone()).await?;
            let full = page.len() == wanted;
            query.after = page.last().map_or(query.after, |e| e.central_seq);
            out.extend(page.into_iter().filter(|e| !is_hidden(e)));
            if out.len() >= wanted || !full {
                break;
            }
        }
        out.truncate(wanted);
        Ok(out)
    }

    /// Records an event about this company in its own trail, best effort
    /// (a refused upload, a failed export): the failure is logged.
    pub async fn note(&self, event: AuditEvent) {
        if let Err(e) = self.store().record(event).await {
            tracing::error!(error = %e, company = self.company_id(), "recording an event");
        }
    }
}
