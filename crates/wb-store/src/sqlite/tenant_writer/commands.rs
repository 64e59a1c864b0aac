//! The business commands of the writer: accounts, entries, reversals and
//! attachments, each with its journal and audit records.

use rusqlite::{params, OptionalExtension};
use time::{Date, OffsetDateTime};
use wb_core::ledger::AccountRules;
use wb_core::{BalancedEntry, EntryDraft, LedgerError, NewAccount};

use super::*;
use crate::file_records;
use crate::journal;
use crate::sqlite::conn::ts;
use crate::sqlite::tenant::load_entry;
use crate::sqlite::tenant_files;
use crate::StoreError;

impl WriterState {
    pub(super) fn create_account(
        &mut self,
        new: NewAccount,
        ctx: &WriteContext,
    ) -> Result<Account, StoreError> {
        let at = ts(ctx.at);
        let account = self.insert_account(new, ctx.at, &at)?;
        self.journal_append(
            ctx,
            journal::ACCOUNT_CREATED,
            &journal::account_created(&account, &at),
        )?;
        self.audit_append(
            ctx,
            Action::AccountCreate,
            Some(&format!("account:{}", account.code)),
            Outcome::Success,
            None,
        )?;
        Ok(account)
    }

    pub(super) fn add_file(
        &mut self,
        file: NewFile,
        ctx: &WriteContext,
    ) -> Result<FileRecord, StoreError> {
        file_records::check(&file)?;
        if let Some(entry) = file.entry_id {
            if !tenant_files::entry_exists(&self.conn, entry)? {
                return Err(StoreError::NotFound("entry"));
            }
        }
        let record = file_records::record(self.next_file_id, file, ctx);
        self.insert_file(&record)?;
        let at = ts(ctx.at);
        self.journal_append(ctx, journal::FILE_ADDED, &journal::file_added(&record, &at))?;
        let (target, detail) = file_records::audit_fields(&record);
        self.audit_append(
            ctx,
            Action::FileUpload,
            Some(&target),
            Outcome::Success,
            Some(&detail),
        )?;
        Ok(record)
    }

    /// Inserts a file record, which must take the next file id (in a
    /// purge's baseline, the next kept one: ids may skip, never go back).
    pub(super) fn insert_file(&mut self, file: &FileRecord) -> Result<(), StoreError> {
        if self.baseline && file.id > self.next_file_id {
            self.next_file_id = file.id;
        }
        if file.id != self.next_file_id {
            return Err(StoreError::Conflict(format!(
                "file {} would be stored as file {}: the journal skips or repeats files",
                file.id, self.next_file_id
            )));
        }
        tenant_files::insert(&self.conn, file)?;
        self.next_file_id += 1;
        Ok(())
    }

    pub(super) fn insert_account(
        &mut self,
        new: NewAccount,
        created_at: OffsetDateTime,
        at: &str,
    ) -> Result<Account, StoreError> {
        if self.accounts.contains_key(&new.code) {
            return Err(LedgerError::DuplicateAccountCode(new.code).into());
        }
        new.check_parent(
            new.parent
                .as_deref()
                .and_then(|p| self.accounts.get(p))
                .map(|m| m.account_type),
        )?;
        self.conn
            .prepare_cached(
                "INSERT INTO accounts (code, name, type, parent, currency, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                new.code,
                new.name,
                new.account_type.as_str(),
                new.parent,
                new.currency.map(|c| c.code().to_string()),
                at
            ])?;
        let account = Account {
            id: self.conn.last_insert_rowid(),
            code: new.code,
            name: new.name,
            account_type: new.account_type,
            parent: new.parent,
            currency: new.currency,
            created_at,
        };
        self.accounts.insert(
            account.code.clone(),
            AccountMeta {
                id: account.id,
                account_type: account.account_type,
                currency: account.currency,
            },
        );
        Ok(account)
    }

    pub(super) fn post(
        &mut self,
        drafts: Vec<EntryDraft>,
        idempotency: Option<Idempotency>,
        ctx: &WriteContext,
    ) -> Result<Posted, StoreError> {
        if let Some(idem) = &idempotency {
            let found: Option<(String, String)> = self
                .conn
                .prepare_cached("SELECT request_hash, entry_ids FROM idempotency WHERE key = ?1")?
                .query_row([&idem.key], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            if let Some((hash, ids)) = found {
                if hash != idem.request_hash {
                    return Err(StoreError::IdempotencyMismatch);
                }
                let mut entries = Vec::new();
                for id in ids.split(',').filter(|s| !s.is_empty()) {
                    let id: i64 = id
                        .parse()
                        .map_err(|_| StoreError::Corrupt("idempotency record".into()))?;
                    entries.push(load_entry(&self.conn, id)?.ok_or(StoreError::NotFound("entry"))?);
                }
                return Ok(Posted {
                    entries,
                    replayed: true,
                });
            }
        }
        if drafts.is_empty() {
            return Err(StoreError::Conflict(
                "a batch holds at least one entry".into(),
            ));
        }
        let accounts = &self.accounts;
        let lookup = |code: &str| {
            accounts.get(code).map(|m| AccountRules {
                currency: m.currency,
            })
        };
        let balanced = drafts
            .iter()
            .enumerate()
            .map(|(i, d)| {
                d.validate(lookup).map_err(|e| {
                    if drafts.len() > 1 {
                        StoreError::Conflict(format!("entry {i}: {e}"))
                    } else {
                        StoreError::Ledger(e)
                    }
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let at = ts(ctx.at);
        let mut balances = DayBalances::new();
        let mut entries = Vec::with_capacity(balanced.len());
        for entry in balanced {
            entries.push(self.insert_entry(
                entry,
                None,
                (&ctx.actor.id, ctx.at),
                &at,
                &mut balances,
            )?);
        }
        self.flush_balances(balances)?;
        if let Some(idem) = &idempotency {
            let ids: Vec<String> = entries.iter().map(|e| e.id.to_string()).collect();
            self.conn
                .prepare_cached(
                    "INSERT INTO idempotency (key, request_hash, entry_ids, created_at)
                     VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![idem.key, idem.request_hash, ids.join(","), at])?;
        }
        let payload = journal::entries_posted(&entries, &at)?;
        self.journal_append(ctx, journal::ENTRIES_POSTED, &payload)?;
        let target = entries_target(&entries);
        self.audit_append(
            ctx,
            Action::EntryPost,
            Some(&target),
            Outcome::Success,
            None,
        )?;
        Ok(Posted {
            entries,
            replayed: false,
        })
    }

    pub(super) fn reverse(
        &mut self,
        entry_id: i64,
        date: Date,
        description: Option<String>,
        ctx: &WriteContext,
    ) -> Result<Entry, StoreError> {
        let original = load_entry(&self.conn, entry_id)?.ok_or(StoreError::NotFound("entry"))?;
        if original.reversed_by.is_some() {
            return Err(LedgerError::AlreadyReversed(entry_id.to_string()).into());
        }
        if original.reverses.is_some() {
            return Err(LedgerError::ReversalOfReversal(entry_id.to_string()).into());
        }
        let balanced = BalancedEntry::from_stored(
            original.date,
            original.description.clone(),
            original.reference.clone(),
            original.postings.clone(),
        )?;
        let reversal = balanced.reversal(date, description.as_deref())?;
        let at = ts(ctx.at);
        let mut balances = DayBalances::new();
        let stored = self.insert_entry(
            reversal,
            Some(entry_id),
            (&ctx.actor.id, ctx.at),
            &at,
            &mut balances,
        )?;
        self.flush_balances(balances)?;
        self.conn
            .prepare_cached("UPDATE entries SET reversed_by = ?1 WHERE id = ?2")?
            .execute(params![stored.id, entry_id])?;
        let payload = journal::entry_reversed(entry_id, &stored, &at)?;
        self.journal_append(ctx, journal::ENTRY_REVERSED, &payload)?;
        self.audit_append(
            ctx,
            Action::EntryReverse,
            Some(&format!("entry:{entry_id}")),
            Outcome::Success,
            Some(&format!("reversal entry:{}", stored.id)),
        )?;
        Ok(stored)
    }
}
