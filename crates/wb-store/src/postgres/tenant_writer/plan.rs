//! Plans a batch of commands in memory: validation, ids, journal and audit
//! records chained from the heads. Pure, except for what was preloaded.

use std::collections::{HashMap, HashSet};

use time::{Date, OffsetDateTime};
use wb_core::audit::AuditFields;
use wb_core::ledger::AccountRules;
use wb_core::{BalancedEntry, EntryDraft, LedgerError, NewAccount};

use super::*;
use crate::chain;
use crate::file_records;
use crate::journal;
use crate::sqlite::conn::ts;
use crate::sqlite::tenant_writer::entries_target;
use crate::writer_jobs::{Command, Output};
use crate::StoreError;

/// Plans a batch in memory: pure, except for what was preloaded.
pub(super) struct Planner<'a> {
    pub(super) heads: Heads,
    pub(super) accounts: &'a HashMap<String, AccountMeta>,
    pub(super) new_accounts: HashMap<String, AccountMeta>,
    pub(super) preloaded: &'a Preloaded,
    /// Entries posted by earlier commands of this batch.
    pub(super) planned: HashMap<i64, Entry>,
    pub(super) used_keys: HashSet<String>,
    pub(super) reversed: HashSet<i64>,
    pub(super) company_id: &'a str,
    pub(super) audit_enabled: bool,
    /// A replayed purge anchor emptied the tables: what was read from them
    /// before (`accounts`, `preloaded`) is gone.
    pub(super) wiped: bool,
}

impl Planner<'_> {
    fn account(&self, code: &str) -> Option<&AccountMeta> {
        self.new_accounts.get(code).or_else(|| {
            if self.wiped {
                None
            } else {
                self.accounts.get(code)
            }
        })
    }

    /// An entry stored before this batch, unless a replayed anchor emptied the tables.
    fn stored_entry(&self, id: i64) -> Option<&Entry> {
        if self.wiped {
            None
        } else {
            self.preloaded.entries.get(&id)
        }
    }

    pub(super) fn apply(
        &mut self,
        command: &Command,
        ctx: &WriteContext,
    ) -> Result<(Output, Writes), StoreError> {
        let mut w = Writes::default();
        if !matches!(
            command,
            Command::Replay(_) | Command::ImportAudit(_) | Command::Record(_)
        ) {
            // A change of the books ends any replayed baseline.
            self.heads.baseline = false;
        }
        let output = match command {
            Command::CreateAccount(new) => {
                Output::Account(self.create_account(new.clone(), ctx, &mut w)?)
            }
            Command::Post {
                drafts,
                idempotency,
            } => Output::Posted(self.post(drafts, idempotency.as_ref(), ctx, &mut w)?),
            Command::Reverse {
                entry_id,
                date,
                description,
            } => Output::Entry(self.reverse(*entry_id, *date, description.clone(), ctx, &mut w)?),
            Command::Replay(records) => Output::Replayed(self.replay(records, ctx, &mut w)?),
            Command::ImportAudit(events) => {
                Output::AuditImported(self.import_audit(events, &mut w)?)
            }
            Command::AddFile(file) => Output::File(self.add_file(file.clone(), ctx, &mut w)?),
            // The writer carries a purge out alone, in its own transaction
            // (`super::purge`); it never reaches the planner.
            Command::Purge(_) => {
                return Err(StoreError::Backend(
                    "a purge is carried out alone, outside the batch planner".into(),
                ))
            }
            Command::Record(event) => {
                let recorded = WriteContext {
                    actor: event.actor.clone(),
                    at: event.at,
                };
                self.audit(
                    &mut w,
                    &recorded,
                    event.action,
                    event.target.as_deref(),
                    event.outcome,
                    event.detail.as_deref(),
                );
                Output::Recorded
            }
        };
        Ok((output, w))
    }

    fn add_file(
        &mut self,
        file: NewFile,
        ctx: &WriteContext,
        w: &mut Writes,
    ) -> Result<FileRecord, StoreError> {
        file_records::check(&file)?;
        if let Some(entry) = file.entry_id {
            if !self.preloaded.existing_entries.contains(&entry)
                && !self.planned.contains_key(&entry)
            {
                return Err(StoreError::NotFound("entry"));
            }
        }
        let record = file_records::record(self.heads.next_file_id, file, ctx);
        self.plan_file(record.clone(), w)?;
        let at = ts(ctx.at);
        self.journal(
            w,
            ctx,
            journal::FILE_ADDED,
            journal::file_added(&record, &at),
        );
        let (target, detail) = file_records::audit_fields(&record);
        self.audit(
            w,
            ctx,
            Action::FileUpload,
            Some(&target),
            Outcome::Success,
            Some(&detail),
        );
        Ok(record)
    }

    /// Plans a file record, which must take the next file id (in a purge's
    /// baseline, the next kept one: ids may skip, never go back).
    fn plan_file(&mut self, file: FileRecord, w: &mut Writes) -> Result<(), StoreError> {
        if self.heads.baseline && file.id > self.heads.next_file_id {
            self.heads.next_file_id = file.id;
        }
        if file.id != self.heads.next_file_id {
            return Err(StoreError::Conflict(format!(
                "file {} would be stored as file {}: the journal skips or repeats files",
                file.id, self.heads.next_file_id
            )));
        }
        self.heads.next_file_id += 1;
        w.files.push(file);
        Ok(())
    }

    fn create_account(
        &mut self,
        new: NewAccount,
        ctx: &WriteContext,
        w: &mut Writes,
    ) -> Result<Account, StoreError> {
        let at = ts(ctx.at);
        let account = self.plan_account(new, ctx.at, w)?;
        self.journal(
            w,
            ctx,
            journal::ACCOUNT_CREATED,
            journal::account_created(&account, &at),
        );
        self.audit(
            w,
            ctx,
            Action::AccountCreate,
            Some(&format!("account:{}", account.code)),
            Outcome::Success,
            None,
        );
        Ok(account)
    }

    fn plan_account(
        &mut self,
        new: NewAccount,
        created_at: OffsetDateTime,
        w: &mut Writes,
    ) -> Result<Account, StoreError> {
        if self.account(&new.code).is_some() {
            return Err(LedgerError::DuplicateAccountCode(new.code).into());
        }
        new.check_parent(
            new.parent
                .as_deref()
                .and_then(|p| self.account(p))
                .map(|m| m.account_type),
        )?;
        let account = Account {
            id: self.heads.next_account_id,
            code: new.code,
            name: new.name,
            account_type: new.account_type,
            parent: new.parent,
            currency: new.currency,
            created_at,
        };
        self.heads.next_account_id += 1;
        self.new_accounts.insert(
            account.code.clone(),
            AccountMeta {
                id: account.id,
                account_type: account.account_type,
                currency: account.currency,
            },
        );
        w.accounts.push(account.clone());
        Ok(account)
    }

    fn post(
        &mut self,
        drafts: &[EntryDraft],
        idempotency: Option<&Idempotency>,
        ctx: &WriteContext,
        w: &mut Writes,
    ) -> Result<Posted, StoreError> {
        if let Some(idem) = idempotency {
            if let Some((hash, ids)) = self.preloaded.idempotency.get(&idem.key) {
                if *hash != idem.request_hash {
                    return Err(StoreError::IdempotencyMismatch);
                }
                let mut entries = Vec::new();
                for id in ids.split(',').filter(|s| !s.is_empty()) {
                    let id: i64 = id
                        .parse()
                        .map_err(|_| StoreError::Corrupt("idempotency record".into()))?;
                    entries.push(
                        self.preloaded
                            .entries
                            .get(&id)
                            .cloned()
                            .ok_or(StoreError::NotFound("entry"))?,
                    );
                }
                return Ok(Posted {
                    entries,
                    replayed: true,
                });
            }
            if self.used_keys.contains(&idem.key) {
                // The same key twice in one batch: the earlier one wins; retries
                // of it are answered after this batch commits.
                return Err(StoreError::Conflict(
                    "a request with this Idempotency-Key is in progress; retry".into(),
                ));
            }
        }
        if drafts.is_empty() {
            return Err(StoreError::Conflict(
                "a batch holds at least one entry".into(),
            ));
        }
        let lookup = |code: &str| {
            self.account(code).map(|m| AccountRules {
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
        let mut entries = Vec::with_capacity(balanced.len());
        for entry in balanced {
            entries.push(self.entry(entry, None, (&ctx.actor.id, ctx.at), &at, w)?);
        }
        if let Some(idem) = idempotency {
            let ids: Vec<String> = entries.iter().map(|e| e.id.to_string()).collect();
            w.idempotency.push((
                idem.key.clone(),
                idem.request_hash.clone(),
                ids.join(","),
                at.clone(),
            ));
            self.used_keys.insert(idem.key.clone());
        }
        let payload = journal::entries_posted(&entries, &at)?;
        self.journal(w, ctx, journal::ENTRIES_POSTED, payload);
        let target = entries_target(&entries);
        self.audit(
            w,
            ctx,
            Action::EntryPost,
            Some(&target),
            Outcome::Success,
            None,
        );
        Ok(Posted {
            entries,
            replayed: false,
        })
    }

    fn reverse(
        &mut self,
        entry_id: i64,
        date: Date,
        description: Option<String>,
        ctx: &WriteContext,
        w: &mut Writes,
    ) -> Result<Entry, StoreError> {
        let original = self
            .stored_entry(entry_id)
            .or_else(|| self.planned.get(&entry_id))
            .ok_or(StoreError::NotFound("entry"))?;
        if original.reversed_by.is_some() || self.reversed.contains(&entry_id) {
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
        let stored = self.entry(reversal, Some(entry_id), (&ctx.actor.id, ctx.at), &at, w)?;
        w.reversed.push((entry_id, stored.id));
        self.reversed.insert(entry_id);
        let payload = journal::entry_reversed(entry_id, &stored, &at)?;
        self.journal(w, ctx, journal::ENTRY_REVERSED, payload);
        self.audit(
            w,
            ctx,
            Action::EntryReverse,
            Some(&format!("entry:{entry_id}")),
            Outcome::Success,
            Some(&format!("reversal entry:{}", stored.id)),
        );
        Ok(stored)
    }

    /// Plans journal records a restore replays: each record verbatim (it
    /// must continue this database's chain) with what it holds, under its
    /// recorded ids; one audit event for the lot.
    fn replay(
        &mut self,
        records: &[ReplayedRecord],
        ctx: &WriteContext,
        w: &mut Writes,
    ) -> Result<i64, StoreError> {
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return Err(StoreError::Conflict(
                "a replay holds at least one record".into(),
            ));
        };
        let target = format!("journal:{}-{}", first.seq, last.seq);
        // Entries of this command, by id, for reversals within it.
        let mut local: HashMap<i64, Entry> = HashMap::new();
        for record in records {
            match &record.content {
                ReplayedContent::Account {
                    id,
                    account,
                    created_at,
                } => {
                    let stored = self.plan_account(account.clone(), *created_at, w)?;
                    if stored.id != *id {
                        return Err(StoreError::Conflict(format!(
                            "account {} would be restored as account {}, not {id}",
                            stored.code, stored.id
                        )));
                    }
                }
                ReplayedContent::KeptEntries(entries) => {
                    for r in entries {
                        if r.id < self.heads.next_entry_id {
                            return Err(StoreError::Conflict(format!(
                                "kept entry {} is out of order after entry {}",
                                r.id,
                                self.heads.next_entry_id - 1
                            )));
                        }
                        self.heads.next_entry_id = r.id;
                        let stored = self.restore_entry(r, &local, w)?;
                        local.insert(stored.id, stored);
                    }
                }
                ReplayedContent::Purged {
                    through_seq,
                    through_hash,
                } => {
                    // The store is emptied (the writer runs this command
                    // alone, so only its own rows were planned before) and
                    // its journal continues from the record the anchor names.
                    w.wipe_tables();
                    local.clear();
                    self.wipe(*through_seq, through_hash);
                }
                ReplayedContent::Entries(entries) => {
                    for r in entries {
                        let stored = self.restore_entry(r, &local, w)?;
                        local.insert(stored.id, stored);
                    }
                }
                ReplayedContent::File(file) => self.plan_file(file.clone(), w)?,
            }
            self.journal_verbatim(w, record)?;
            self.heads.baseline =
                crate::purge::continues_baseline(self.heads.baseline, &record.kind);
        }
        self.audit(
            w,
            ctx,
            Action::JournalReplay,
            Some(&target),
            Outcome::Success,
            None,
        );
        Ok(self.heads.journal_seq)
    }

    /// What a replayed anchor leaves: no accounts, entries or files, and
    /// the journal head it names.
    fn wipe(&mut self, through_seq: i64, through_hash: &str) {
        self.wiped = true;
        self.new_accounts.clear();
        self.planned.clear();
        self.reversed.clear();
        self.heads.journal_seq = through_seq;
        self.heads.journal_hash = through_hash.to_string();
        self.heads.next_entry_id = 1;
        self.heads.next_account_id = 1;
        self.heads.next_file_id = 1;
        self.heads.baseline = true;
    }

    fn restore_entry(
        &mut self,
        r: &RestoredEntry,
        local: &HashMap<i64, Entry>,
        w: &mut Writes,
    ) -> Result<Entry, StoreError> {
        if r.id != self.heads.next_entry_id {
            return Err(StoreError::Conflict(format!(
                "restored entry {} would be stored as entry {}: the journal skips or repeats entries",
                r.id, self.heads.next_entry_id
            )));
        }
        let balanced = r
            .draft
            .validate(|code: &str| {
                self.account(code).map(|m| AccountRules {
                    currency: m.currency,
                })
            })
            .map_err(|e| StoreError::Conflict(format!("restored entry {}: {e}", r.id)))?;
        if let Some(original) = r.reverses {
            let found = self
                .stored_entry(original)
                .or_else(|| self.planned.get(&original))
                .or_else(|| local.get(&original))
                .ok_or(StoreError::NotFound("entry"))?;
            if found.reversed_by.is_some() || self.reversed.contains(&original) {
                return Err(LedgerError::AlreadyReversed(original.to_string()).into());
            }
            if found.reverses.is_some() {
                return Err(LedgerError::ReversalOfReversal(original.to_string()).into());
            }
        }
        let at = ts(r.created_at);
        let stored = self.entry(balanced, r.reverses, (&r.created_by, r.created_at), &at, w)?;
        if let Some(original) = r.reverses {
            w.reversed.push((original, stored.id));
            self.reversed.insert(original);
        }
        Ok(stored)
    }

    /// Plans audit events copied verbatim: each must continue this chain.
    fn import_audit(
        &mut self,
        events: &[StoredAuditEvent],
        w: &mut Writes,
    ) -> Result<i64, StoreError> {
        for event in events {
            if event.company_id.as_deref() != Some(self.company_id) {
                return Err(StoreError::Conflict(format!(
                    "imported audit event {} belongs to another company",
                    event.seq
                )));
            }
            if self.heads.audit_seq == 0 && event.seq > 1 {
                // A trail purged under the retention rules starts after the
                // events it dropped; a signed checkpoint vouches for the start.
                self.heads.audit_seq = event.seq - 1;
                self.heads.audit_hash = event.prev_hash.clone();
            }
            if event.seq != self.heads.audit_seq + 1 || event.prev_hash != self.heads.audit_hash {
                return Err(StoreError::Conflict(format!(
                    "imported audit event {} does not follow event {}",
                    event.seq, self.heads.audit_seq
                )));
            }
            let fields = event.fields();
            if fields.hash(&self.heads.audit_hash, event.seq) != event.hash {
                return Err(StoreError::Conflict(format!(
                    "imported audit event {} does not carry the hash of its content and chain",
                    event.seq
                )));
            }
            self.heads.audit_seq = event.seq;
            self.heads.audit_hash = event.hash.clone();
            w.audit.push(AuditRow {
                seq: event.seq,
                fields,
                actor: Actor {
                    id: event.actor.clone(),
                    auth: event.auth.clone(),
                    client: event.client.clone(),
                    request_id: event.request_id.clone(),
                },
                target: event.target.clone(),
                detail: event.detail.clone(),
                prev_hash: event.prev_hash.clone(),
                hash: event.hash.clone(),
            });
        }
        Ok(self.heads.audit_seq)
    }

    /// Plans a record replayed from another journal, unchanged: it must be
    /// the next in this chain and carry the hash its content gives.
    fn journal_verbatim(&mut self, w: &mut Writes, r: &ReplayedRecord) -> Result<(), StoreError> {
        let seq = self.heads.journal_seq + 1;
        if r.seq != seq {
            return Err(StoreError::Conflict(format!(
                "replayed journal record {} does not follow record {}",
                r.seq, self.heads.journal_seq
            )));
        }
        let hash = chain::link(&self.heads.journal_hash, seq, &[&r.at, &r.kind, &r.payload]);
        if hash != r.hash {
            return Err(StoreError::Conflict(format!(
                "replayed journal record {seq} does not carry the hash of its content and chain"
            )));
        }
        w.journal_seq.push(seq);
        w.journal_prev.push(std::mem::replace(
            &mut self.heads.journal_hash,
            hash.clone(),
        ));
        w.journal
            .push([r.at.clone(), r.kind.clone(), r.payload.clone(), hash]);
        self.heads.journal_seq = seq;
        Ok(())
    }

    pub(super) fn entry(
        &mut self,
        entry: BalancedEntry,
        reverses: Option<i64>,
        author: (&str, OffsetDateTime),
        at: &str,
        w: &mut Writes,
    ) -> Result<Entry, StoreError> {
        let (created_by, created_at) = author;
        let id = self.heads.next_entry_id;
        let (date, description, reference, postings) = entry.into_parts();
        for (line, posting) in postings.iter().enumerate() {
            let meta =
                *self
                    .account(&posting.account)
                    .ok_or_else(|| LedgerError::UnknownAccount {
                        index: line,
                        code: posting.account.clone(),
                    })?;
            let sum = w
                .balances
                .entry((meta.id, posting.currency, date))
                .or_default();
            *sum = sum
                .checked_add(posting.amount)
                .ok_or(LedgerError::Overflow)?;
        }
        self.heads.next_entry_id += 1;
        let entry = Entry {
            id,
            date,
            description,
            reference,
            postings,
            reverses,
            reversed_by: None,
            created_at,
            created_by: created_by.to_string(),
        };
        w.entries.push(entry.clone());
        w.created_at.push(at.to_string());
        Ok(entry)
    }

    pub(super) fn journal(
        &mut self,
        w: &mut Writes,
        ctx: &WriteContext,
        kind: &str,
        payload: String,
    ) {
        let seq = self.heads.journal_seq + 1;
        let at = ts(ctx.at);
        let hash = chain::link(&self.heads.journal_hash, seq, &[&at, kind, &payload]);
        w.journal_seq.push(seq);
        w.journal_prev.push(std::mem::replace(
            &mut self.heads.journal_hash,
            hash.clone(),
        ));
        w.journal.push([at, kind.to_string(), payload, hash]);
        self.heads.journal_seq = seq;
    }

    pub(super) fn audit(
        &mut self,
        w: &mut Writes,
        ctx: &WriteContext,
        action: Action,
        target: Option<&str>,
        outcome: Outcome,
        detail: Option<&str>,
    ) {
        if !self.audit_enabled {
            return;
        }
        let seq = self.heads.audit_seq + 1;
        let actor = &ctx.actor;
        let fields = AuditFields {
            at: ts(ctx.at),
            actor: actor.id.clone(),
            auth: actor.auth.clone(),
            client: actor.client.clone().unwrap_or_default(),
            request_id: actor.request_id.clone().unwrap_or_default(),
            company_id: self.company_id.to_string(),
            action: action.into(),
            target: target.unwrap_or_default().to_string(),
            outcome: outcome.as_str().to_string(),
            detail: detail.unwrap_or_default().to_string(),
        };
        let hash = fields.hash(&self.heads.audit_hash, seq);
        let prev_hash = std::mem::replace(&mut self.heads.audit_hash, hash.clone());
        self.heads.audit_seq = seq;
        w.audit.push(AuditRow {
            seq,
            fields,
            actor: actor.clone(),
            target: target.map(str::to_string),
            detail: detail.map(str::to_string),
            prev_hash,
            hash,
        });
    }
}
