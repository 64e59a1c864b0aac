//! A restore's replay into the writer: journal records and audit events
//! copied verbatim, each continuing this store's chains.

use rusqlite::{params, OptionalExtension};
use wb_core::ledger::AccountRules;
use wb_core::LedgerError;

use super::*;
use crate::chain;
use crate::purge;
use crate::sqlite::conn::ts;
use crate::StoreError;

impl WriterState {
    /// Writes journal records a restore replays: each record verbatim (it
    /// must continue this store's chain) with what it holds, under its
    /// recorded ids; one audit event for the lot.
    pub(super) fn replay(
        &mut self,
        records: Vec<ReplayedRecord>,
        ctx: &WriteContext,
    ) -> Result<i64, StoreError> {
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return Err(StoreError::Conflict(
                "a replay holds at least one record".into(),
            ));
        };
        let target = format!("journal:{}-{}", first.seq, last.seq);
        let mut balances = DayBalances::new();
        for record in records {
            match record.content {
                ReplayedContent::Account {
                    id,
                    account,
                    created_at,
                } => {
                    let code = account.code.clone();
                    let stored = self.insert_account(account, created_at, &ts(created_at))?;
                    if stored.id != id {
                        return Err(StoreError::Conflict(format!(
                            "account {code} would be restored as account {}, not {id}",
                            stored.id
                        )));
                    }
                }
                ReplayedContent::Entries(entries) => {
                    for entry in entries {
                        self.restore_entry(entry, &mut balances)?;
                    }
                }
                ReplayedContent::KeptEntries(entries) => {
                    for entry in entries {
                        if entry.id < self.next_entry_id {
                            return Err(StoreError::Conflict(format!(
                                "kept entry {} is out of order after entry {}",
                                entry.id,
                                self.next_entry_id - 1
                            )));
                        }
                        self.next_entry_id = entry.id;
                        self.restore_entry(entry, &mut balances)?;
                    }
                }
                ReplayedContent::Purged {
                    through_seq,
                    through_hash,
                } => {
                    self.flush_balances(std::mem::take(&mut balances))?;
                    self.replay_anchor(through_seq, &through_hash)?;
                }
                ReplayedContent::File(file) => self.insert_file(&file)?,
            }
            self.journal_verbatim(
                record.seq,
                &record.at,
                &record.kind,
                &record.payload,
                &record.hash,
            )?;
            self.baseline = purge::continues_baseline(self.baseline, &record.kind);
        }
        self.flush_balances(balances)?;
        self.audit_append(
            ctx,
            Action::JournalReplay,
            Some(&target),
            Outcome::Success,
            None,
        )?;
        Ok(self.journal.seq)
    }

    pub(super) fn restore_entry(
        &mut self,
        r: RestoredEntry,
        balances: &mut DayBalances,
    ) -> Result<(), StoreError> {
        if r.id != self.next_entry_id {
            return Err(StoreError::Conflict(format!(
                "restored entry {} would be stored as entry {}: the journal skips or repeats entries",
                r.id, self.next_entry_id
            )));
        }
        let accounts = &self.accounts;
        let balanced = r
            .draft
            .validate(|code: &str| {
                accounts.get(code).map(|m| AccountRules {
                    currency: m.currency,
                })
            })
            .map_err(|e| StoreError::Conflict(format!("restored entry {}: {e}", r.id)))?;
        if let Some(original) = r.reverses {
            let found: Option<(Option<i64>, Option<i64>)> = self
                .conn
                .prepare_cached("SELECT reverses, reversed_by FROM entries WHERE id = ?1")?
                .query_row([original], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()?;
            match found {
                None => return Err(StoreError::NotFound("entry")),
                Some((_, Some(_))) => {
                    return Err(LedgerError::AlreadyReversed(original.to_string()).into())
                }
                Some((Some(_), None)) => {
                    return Err(LedgerError::ReversalOfReversal(original.to_string()).into())
                }
                Some((None, None)) => {}
            }
        }
        let at = ts(r.created_at);
        let stored = self.insert_entry(
            balanced,
            r.reverses,
            (&r.created_by, r.created_at),
            &at,
            balances,
        )?;
        if let Some(original) = r.reverses {
            self.conn
                .prepare_cached("UPDATE entries SET reversed_by = ?1 WHERE id = ?2")?
                .execute(params![stored.id, original])?;
        }
        Ok(())
    }

    /// Copies audit events verbatim: each must continue this store's chain.
    pub(super) fn import_audit(
        &mut self,
        events: Vec<StoredAuditEvent>,
    ) -> Result<i64, StoreError> {
        for event in events {
            if event.company_id.as_deref() != Some(self.company_id.as_str()) {
                return Err(StoreError::Conflict(format!(
                    "imported audit event {} belongs to another company",
                    event.seq
                )));
            }
            if self.audit.seq == 0 && event.seq > 1 {
                // A trail purged under the retention rules starts after the
                // events it dropped; a signed checkpoint vouches for the start.
                self.audit = Head {
                    seq: event.seq - 1,
                    hash: event.prev_hash.clone(),
                };
            }
            if event.seq != self.audit.seq + 1 || event.prev_hash != self.audit.hash {
                return Err(StoreError::Conflict(format!(
                    "imported audit event {} does not follow event {}",
                    event.seq, self.audit.seq
                )));
            }
            if event.fields().hash(&self.audit.hash, event.seq) != event.hash {
                return Err(StoreError::Conflict(format!(
                    "imported audit event {} does not carry the hash of its content and chain",
                    event.seq
                )));
            }
            self.conn
                .prepare_cached(
                    "INSERT INTO audit_events
                       (seq, at, actor, auth, client, request_id, action, target, outcome, detail, prev_hash, hash)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                )?
                .execute(params![
                    event.seq,
                    event.at,
                    event.actor,
                    event.auth,
                    event.client,
                    event.request_id,
                    event.action,
                    event.target,
                    event.outcome,
                    event.detail,
                    event.prev_hash,
                    event.hash
                ])?;
            self.audit = Head {
                seq: event.seq,
                hash: event.hash,
            };
        }
        Ok(self.audit.seq)
    }

    /// Appends a record replayed from another journal, unchanged: it must be
    /// the next in this chain and carry the hash its content gives.
    pub(super) fn journal_verbatim(
        &mut self,
        seq: i64,
        at: &str,
        kind: &str,
        payload: &str,
        hash: &str,
    ) -> Result<(), StoreError> {
        if seq != self.journal.seq + 1 {
            return Err(StoreError::Conflict(format!(
                "replayed journal record {seq} does not follow record {}",
                self.journal.seq
            )));
        }
        if chain::link(&self.journal.hash, seq, &[at, kind, payload]) != hash {
            return Err(StoreError::Conflict(format!(
                "replayed journal record {seq} does not carry the hash of its content and chain"
            )));
        }
        self.conn
            .prepare_cached(
                "INSERT INTO change_journal (seq, at, kind, payload, prev_hash, hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![seq, at, kind, payload, self.journal.hash, hash])?;
        self.journal = Head {
            seq,
            hash: hash.to_string(),
        };
        Ok(())
    }
}
