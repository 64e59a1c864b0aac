//! Backup verification: each company is restored from its shipped journal
//! segments into a scratch store (never recorded in the control plane, deleted
//! afterwards) and its books are compared, by checksum, with the source's books
//! at the same journal sequence.
//!
//! The source keeps writing while it is verified, so it is compared at the
//! shipped point N: account and entry ids grow with the journal, so the
//! source's books at N are its accounts and entries with ids up to the largest
//! the restore produced, a `reversed_by` link counting only when it points at
//! or below that id, and a trial balance summed from those entries' postings.
//! The restored side's trial balance comes from its own stored balances, so
//! the check also covers what the restore wrote there. Finally the restored
//! store's journal head must carry the hash of the source's record N.

pub mod verifier;

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{anyhow, bail};
use serde::Serialize;
use time::macros::date;
use time::Date;
use wb_core::money::Currency;
use wb_core::reports::{trial_balance, AccountInfo, BalanceRow};
use wb_core::Action;
use wb_store::{
    Account, Actor, AuditEvent, CompanyRecord, CompanyStatus, Entry, EntryPage, Outcome,
    TenantStore,
};

use crate::backup::{stage_restore, RestoreTarget};
use crate::dto::rfc3339;
use crate::platform::Platform;

/// Balances are compared as of this (far) date, on both sides.
const AS_OF: Date = date!(9999 - 12 - 31);
/// Entries read per page, and hashed per chunk (a differing chunk names its ids).
const PAGE: u32 = 1000;

/// The outcome of verifying one company's backup.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Verification {
    pub company_id: String,
    pub name: String,
    /// The shipped journal sequence the books were compared at (0 when the
    /// restore did not get that far).
    pub seq: i64,
    /// Journal records replayed.
    pub records: usize,
    /// The source's journal head when it was compared (records above `seq`
    /// were not shipped yet).
    pub source_seq: i64,
    /// SHA-256 of the canonical books (accounts, entries with postings, trial
    /// balance) at `seq`, when the restore succeeded.
    pub checksum: Option<String>,
    /// Why the company does not verify; `None` when it does.
    pub failure: Option<String>,
    /// The journal record a purge's signed anchor names, when the
    /// restored journal starts at one ("purged through N").
    pub purged_through: Option<i64>,
}

impl Verification {
    pub fn verified(&self) -> bool {
        self.failure.is_none()
    }

    /// `ok <id> at seq N` or `FAILED <id>: reason`.
    pub fn line(&self) -> String {
        match &self.failure {
            None => match self.purged_through {
                Some(n) => format!(
                    "ok {} at seq {} (from a purge's anchor: purged through record {n})",
                    self.company_id, self.seq
                ),
                None => format!("ok {} at seq {}", self.company_id, self.seq),
            },
            Some(reason) => format!("FAILED {}: {reason}", self.company_id),
        }
    }
}

/// Verifies every active company, or only `company`. An unknown company is an
/// error; a company that does not verify is a `Verification` with a failure.
pub async fn verify(
    platform: &Platform,
    company: Option<&str>,
) -> anyhow::Result<Vec<Verification>> {
    verify_until(platform, company, || false).await
}

/// `verify`, stopping between companies once `stop` says so (a job shutting
/// down); a company is never left half-verified (its scratch store would remain).
pub(crate) async fn verify_until(
    platform: &Platform,
    company: Option<&str>,
    stop: impl Fn() -> bool,
) -> anyhow::Result<Vec<Verification>> {
    if let Some(id) = company {
        platform.refuse_destroyed(id).await?;
    }
    let companies: Vec<CompanyRecord> = match company {
        Some(id) => vec![platform
            .control
            .company(id)
            .await?
            .ok_or_else(|| anyhow!("no company {id}"))?],
        None => platform
            .control
            .companies()
            .await?
            .into_iter()
            .filter(|c| c.status == CompanyStatus::Active)
            .collect(),
    };
    let mut out = Vec::with_capacity(companies.len());
    for company in companies {
        if stop() {
            break;
        }
        // One company is a unit of work: a panic fails its verification
        // (and is alerted) and the others are verified.
        let work = verify_company(platform, &company);
        let verified = crate::runner::unit(
            platform,
            "backup-verify",
            &company.id,
            Some(&company.id),
            work,
        )
        .await
        .unwrap_or_else(|panicked| Verification {
            company_id: company.id.clone(),
            name: company.name.clone(),
            seq: 0,
            records: 0,
            source_seq: 0,
            checksum: None,
            failure: Some(format!("{panicked} (see the server log)")),
            purged_through: None,
        });
        out.push(verified);
    }
    Ok(out)
}

/// Audits each verification in the platform trail (`backup.verify`, success or failure).
pub async fn audit(platform: &Platform, results: &[Verification], actor: &Actor) {
    for v in results {
        let detail = match &v.failure {
            None => format!(
                "restored up to journal record {} ({} records), books checksum {}",
                v.seq,
                v.records,
                v.checksum.as_deref().unwrap_or("-")
            ),
            Some(reason) => reason.clone(),
        };
        let event = AuditEvent {
            at: platform.now(),
            actor: actor.clone(),
            company_id: Some(v.company_id.clone()),
            action: Action::BackupVerify,
            target: Some(format!("company:{}", v.company_id)),
            outcome: if v.verified() {
                Outcome::Success
            } else {
                Outcome::Failure
            },
            detail: Some(detail),
        };
        if let Err(e) = platform.control.audit(&event).await {
            tracing::error!(company = %v.company_id, error = %e, "could not audit a backup verification");
        }
    }
}

async fn verify_company(platform: &Platform, company: &CompanyRecord) -> Verification {
    let mut v = Verification {
        company_id: company.id.clone(),
        name: company.name.clone(),
        seq: 0,
        records: 0,
        source_seq: 0,
        checksum: None,
        failure: None,
        purged_through: None,
    };
    if let Err(e) = check(platform, &company.id, &mut v).await {
        v.failure = Some(format!("{e:#}").replace('\n', " "));
    }
    if let Some(reason) = &v.failure {
        tracing::warn!(company = %company.id, %reason, "backup verification failed");
    }
    v
}

async fn check(platform: &Platform, id: &str, v: &mut Verification) -> anyhow::Result<()> {
    let staged = stage_restore(platform, id, RestoreTarget::Latest, "verify", None).await?;
    v.seq = staged.last_seq;
    v.records = staged.records;
    v.purged_through = staged
        .store
        .journal(0, 1)
        .await?
        .first()
        .and_then(|r| wb_store::purge::Anchor::of(&r.kind, &r.payload))
        .map(|a| a.through_seq);
    let compared = compare(platform, id, &staged.store, staged.last_seq, v).await;
    staged.discard(platform).await;
    compared
}

async fn compare(
    platform: &Platform,
    id: &str,
    restored: &Arc<dyn TenantStore>,
    n: i64,
    v: &mut Verification,
) -> anyhow::Result<()> {
    let source = platform
        .tenant(id)
        .await
        .map_err(|e| anyhow!("opening company {id}: {e}"))?;
    v.source_seq = source.stats().await?.journal_seq;

    let restored_books = Canonical::read(restored, None).await?;
    let limit = Limit {
        account: restored_books.max_account,
        entry: restored_books.max_entry,
    };
    let source_books = Canonical::read(&source, Some(limit)).await?;
    let checksum = restored_books.checksum();
    v.checksum = Some(checksum.clone());
    if let Some(place) = restored_books.first_difference(&source_books) {
        bail!(
            "the restored books differ from the source's at journal record {n}: {place} (checksum {checksum}, source {})",
            source_books.checksum()
        );
    }

    let restored_head = restored.stats().await?.journal_seq;
    if restored_head != n {
        bail!("the restored journal ends at record {restored_head}, not {n}");
    }
    if n > 0 {
        let theirs = record_hash(&source, n).await?;
        let ours = record_hash(restored, n).await?;
        match (theirs, ours) {
            (Some(theirs), Some(ours)) if theirs == ours => {}
            (None, _) => bail!("the source's journal has no record {n}"),
            _ => bail!(
                "the restored journal head (record {n}) does not carry the hash of the source's record {n}"
            ),
        }
    }
    Ok(())
}

async fn record_hash(store: &Arc<dyn TenantStore>, seq: i64) -> anyhow::Result<Option<String>> {
    Ok(store
        .journal(seq - 1, 1)
        .await?
        .into_iter()
        .find(|r| r.seq == seq)
        .map(|r| r.hash))
}

/// The source's books at a journal point: ids up to these.
#[derive(Debug, Clone, Copy)]
struct Limit {
    account: i64,
    entry: i64,
}

/// A company's books as canonical text, hashed in sections; entries are
/// hashed in chunks of `PAGE` so a difference can be located by id range.
#[derive(Debug, PartialEq, Eq)]
struct Canonical {
    accounts: String,
    accounts_count: usize,
    /// (first entry id, last entry id, digest) per chunk.
    entry_chunks: Vec<(i64, i64, String)>,
    trial_balance: String,
    max_account: i64,
    max_entry: i64,
}

impl Canonical {
    /// Reads the books; with a limit, only what existed at that point (and its
    /// trial balance summed from postings), else everything (and the trial
    /// balance from the store's balances).
    async fn read(store: &Arc<dyn TenantStore>, limit: Option<Limit>) -> anyhow::Result<Canonical> {
        let accounts: Vec<Account> = store
            .accounts()
            .await?
            .into_iter()
            .filter(|a| limit.is_none_or(|l| a.id <= l.account))
            .collect();
        let mut accounts_text = String::new();
        let mut accounts_sorted: Vec<&Account> = accounts.iter().collect();
        accounts_sorted.sort_by_key(|a| a.id);
        for a in &accounts_sorted {
            accounts_text.push_str(&account_line(a));
        }

        let mut sums: BTreeMap<(String, Currency), i128> = BTreeMap::new();
        let mut chunks = Vec::new();
        let mut chunk = String::new();
        let mut chunk_first = None;
        let mut chunk_last = 0;
        let mut in_chunk = 0;
        let mut max_entry = 0;
        let mut after = None;
        'pages: loop {
            let page = store
                .entries(EntryPage {
                    after,
                    limit: PAGE,
                    ..Default::default()
                })
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            for entry in page {
                if let Some(l) = limit {
                    if entry.id > l.entry {
                        break 'pages;
                    }
                }
                if limit.is_some() && entry.date <= AS_OF {
                    for p in &entry.postings {
                        *sums.entry((p.account.clone(), p.currency)).or_default() +=
                            i128::from(p.amount);
                    }
                }
                max_entry = max_entry.max(entry.id);
                chunk_first.get_or_insert(entry.id);
                chunk_last = entry.id;
                chunk.push_str(&entry_lines(&entry, limit.map(|l| l.entry)));
                in_chunk += 1;
                if in_chunk == PAGE {
                    chunks.push(close_chunk(&mut chunk, &mut chunk_first, chunk_last));
                    in_chunk = 0;
                }
            }
        }
        if in_chunk > 0 {
            chunks.push(close_chunk(&mut chunk, &mut chunk_first, chunk_last));
        }

        let rows: Vec<BalanceRow> = match limit {
            Some(_) => sums
                .into_iter()
                .map(|((code, currency), amount)| BalanceRow {
                    code,
                    currency,
                    amount,
                })
                .collect(),
            None => store.balances_as_of(AS_OF).await?,
        };
        let infos: Vec<AccountInfo> = accounts
            .iter()
            .map(|a| AccountInfo {
                code: a.code.clone(),
                name: a.name.clone(),
                account_type: a.account_type,
            })
            .collect();
        let tb = trial_balance(AS_OF, &infos, &rows);
        let mut tb_text = format!("trial-balance {}\n", tb.as_of);
        for line in &tb.lines {
            for (currency, amount) in &line.balances {
                tb_text.push_str(&format!(
                    "balance {:?} {} {amount}\n",
                    line.account.code,
                    currency.code()
                ));
            }
        }
        // Lines carry the balances; a total shows only when the ledger is unsound.
        for (currency, amount) in tb.totals.iter().filter(|(_, a)| **a != 0) {
            tb_text.push_str(&format!("total {} {amount}\n", currency.code()));
        }

        Ok(Canonical {
            accounts: wb_crypto::sha256_hex(accounts_text.as_bytes()),
            accounts_count: accounts.len(),
            entry_chunks: chunks,
            trial_balance: wb_crypto::sha256_hex(tb_text.as_bytes()),
            max_account: accounts.iter().map(|a| a.id).max().unwrap_or(0),
            max_entry,
        })
    }

    /// SHA-256 over the section digests, in order.
    fn checksum(&self) -> String {
        let mut text = format!("workbooks-books/v1\naccounts {}\n", self.accounts);
        for (first, last, digest) in &self.entry_chunks {
            text.push_str(&format!("entries {first}-{last} {digest}\n"));
        }
        text.push_str(&format!("trial-balance {}\n", self.trial_balance));
        format!("sha256:{}", wb_crypto::sha256_hex(text.as_bytes()))
    }

    /// Where the books first differ (ids and counts only, no content).
    fn first_difference(&self, other: &Canonical) -> Option<String> {
        if self.accounts != other.accounts {
            return Some(format!(
                "the accounts differ ({} restored, {} in the source)",
                self.accounts_count, other.accounts_count
            ));
        }
        for (i, ours) in self.entry_chunks.iter().enumerate() {
            match other.entry_chunks.get(i) {
                Some(theirs) if theirs == ours => {}
                Some(theirs) => {
                    return Some(format!(
                        "the entries differ among ids {}..{} (source {}..{})",
                        ours.0, ours.1, theirs.0, theirs.1
                    ))
                }
                None => {
                    return Some(format!(
                        "entries {}..{} are missing from the source",
                        ours.0, ours.1
                    ))
                }
            }
        }
        if let Some(extra) = other.entry_chunks.get(self.entry_chunks.len()) {
            return Some(format!(
                "entries {}..{} of the source are missing from the restore",
                extra.0, extra.1
            ));
        }
        if self.trial_balance != other.trial_balance {
            return Some("the trial balances differ".into());
        }
        None
    }
}

fn close_chunk(text: &mut String, first: &mut Option<i64>, last: i64) -> (i64, i64, String) {
    let digest = wb_crypto::sha256_hex(text.as_bytes());
    text.clear();
    (first.take().unwrap_or(last), last, digest)
}

fn account_line(a: &Account) -> String {
    format!(
        "account {} {:?} {:?} {} {:?} {:?} {}\n",
        a.id,
        a.code,
        a.name,
        a.account_type.as_str(),
        a.parent,
        a.currency.map(|c| c.code().to_string()),
        rfc3339(a.created_at)
    )
}

/// An entry and its postings; `reversed_by` counts only up to `max_entry`.
fn entry_lines(e: &Entry, max_entry: Option<i64>) -> String {
    let reversed_by = e
        .reversed_by
        .filter(|r| max_entry.is_none_or(|max| *r <= max));
    let mut text = format!(
        "entry {} {} {:?} {:?} reverses={:?} reversed_by={:?} {} {:?}\n",
        e.id,
        e.date,
        e.description,
        e.reference,
        e.reverses,
        reversed_by,
        rfc3339(e.created_at),
        e.created_by
    );
    for p in &e.postings {
        text.push_str(&format!(
            "posting {} {:?} {} {}\n",
            e.id,
            p.account,
            p.amount,
            p.currency.code()
        ));
    }
    text
}
