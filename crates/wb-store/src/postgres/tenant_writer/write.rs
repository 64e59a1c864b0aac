//! Writes a planned batch: one multi-row statement per table, pipelined.

use tokio_postgres::types::ToSql;

use super::*;
use crate::file_records;
use crate::postgres::pool::PgConn;
use crate::sqlite::conn::{day, ts};
use crate::StoreError;

const INSERT_ACCOUNTS: &str = "INSERT INTO accounts (id, code, name, type, parent, currency, created_at)
     SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])";
const INSERT_ENTRIES: &str = "INSERT INTO entries (id, date, description, reference, reverses, created_at, created_by)
     SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[])";
const UPSERT_BALANCES: &str = "INSERT INTO day_balances (account_id, currency, day, amount)
     SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[])
     ON CONFLICT (account_id, currency, day) DO UPDATE SET amount = day_balances.amount + EXCLUDED.amount";
const MARK_REVERSED: &str = "UPDATE entries SET reversed_by = u.reversal
     FROM UNNEST($1::bigint[], $2::bigint[]) AS u(original, reversal) WHERE entries.id = u.original";
const INSERT_IDEMPOTENCY: &str =
    "INSERT INTO idempotency (key, request_hash, entry_ids, created_at)
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[])";
const INSERT_JOURNAL: &str = "INSERT INTO change_journal (seq, at, kind, payload, prev_hash, hash)
     SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])";
const INSERT_AUDIT: &str = "INSERT INTO audit_events
       (seq, at, actor, auth, client, request_id, action, target, outcome, detail, prev_hash, hash)
     SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                          $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[])";
const UPDATE_HEADS: &str = "UPDATE heads SET journal_seq = $1, journal_hash = $2, audit_seq = $3,
       audit_hash = $4, next_entry_id = $5, next_account_id = $6 WHERE id = 1";

#[derive(Clone, Copy)]
enum Stage {
    Audit,
    Other,
}

type Param<'a> = Box<dyn ToSql + Sync + Send + 'a>;
type Step<'a> = (&'static str, Vec<Param<'a>>, Stage);

fn boxed<'a, T: ToSql + Sync + Send + 'a>(value: T) -> Param<'a> {
    Box::new(value)
}

/// Prepares (once per connection) and sends the statements in order, then
/// reads their answers; the first failure names its stage.
async fn run_steps(conn: &mut PgConn, steps: Vec<Step<'_>>) -> Result<(), WriteFailure> {
    let mut statements = Vec::with_capacity(steps.len());
    for (sql, _, _) in &steps {
        statements.push(
            conn.prepare_cached(sql)
                .await
                .map_err(WriteFailure::Other)?,
        );
    }
    let client: &tokio_postgres::Client = conn;
    let pending = steps
        .iter()
        .zip(&statements)
        .map(|((_, params, stage), statement)| {
            let refs: Vec<&(dyn ToSql + Sync)> = params
                .iter()
                .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                .collect();
            async move { (client.execute(statement, &refs).await, *stage) }
        });
    // join_all polls in order, so the requests go out in order.
    for (result, stage) in futures_util::future::join_all(pending).await {
        if let Err(e) = result {
            let error = StoreError::from(e);
            return Err(match stage {
                Stage::Audit => WriteFailure::Audit(error),
                Stage::Other => WriteFailure::Other(error),
            });
        }
    }
    Ok(())
}

/// Writes a planned batch with one statement per table, sent back to back:
/// tokio-postgres pipelines requests that are in flight together, so the
/// batch costs one round trip rather than one per table.
pub(super) async fn write(
    conn: &mut PgConn,
    w: &Writes,
    heads: &Heads,
) -> Result<(), WriteFailure> {
    if w.wipe {
        conn.batch_execute(&super::purge::wipe_sql())
            .await
            .map_err(|e| WriteFailure::Other(e.into()))?;
    }
    let mut steps: Vec<Step<'_>> = Vec::new();
    if !w.accounts.is_empty() {
        let a = &w.accounts;
        let ids: Vec<i64> = a.iter().map(|a| a.id).collect();
        let codes: Vec<&str> = a.iter().map(|a| a.code.as_str()).collect();
        let names: Vec<&str> = a.iter().map(|a| a.name.as_str()).collect();
        let types: Vec<&str> = a.iter().map(|a| a.account_type.as_str()).collect();
        let parents: Vec<Option<&str>> = a.iter().map(|a| a.parent.as_deref()).collect();
        let currencies: Vec<Option<String>> = a
            .iter()
            .map(|a| a.currency.map(|c| c.code().to_string()))
            .collect();
        let created: Vec<String> = a.iter().map(|a| ts(a.created_at)).collect();
        steps.push((
            INSERT_ACCOUNTS,
            vec![
                boxed(ids),
                boxed(codes),
                boxed(names),
                boxed(types),
                boxed(parents),
                boxed(currencies),
                boxed(created),
            ],
            Stage::Other,
        ));
    }
    if !w.entries.is_empty() {
        let e = &w.entries;
        let ids: Vec<i64> = e.iter().map(|e| e.id).collect();
        let dates: Vec<String> = e.iter().map(|e| day(e.date)).collect();
        let descriptions: Vec<&str> = e.iter().map(|e| e.description.as_str()).collect();
        let references: Vec<Option<&str>> = e.iter().map(|e| e.reference.as_deref()).collect();
        let reverses: Vec<Option<i64>> = e.iter().map(|e| e.reverses).collect();
        let by: Vec<&str> = e.iter().map(|e| e.created_by.as_str()).collect();
        steps.push((
            INSERT_ENTRIES,
            vec![
                boxed(ids),
                boxed(dates),
                boxed(descriptions),
                boxed(references),
                boxed(reverses),
                boxed(&w.created_at),
                boxed(by),
            ],
            Stage::Other,
        ));
        let mut entry_ids = Vec::new();
        let mut lines = Vec::new();
        let mut account_ids = Vec::new();
        let mut currencies = Vec::new();
        let mut amounts = Vec::new();
        let mut posting_dates: Vec<String> = Vec::new();
        for entry in e.iter() {
            let date = day(entry.date);
            for (line, p) in entry.postings.iter().enumerate() {
                entry_ids.push(entry.id);
                lines.push(i32::try_from(line).unwrap_or(i32::MAX));
                account_ids.push(p.account.as_str());
                currencies.push(p.currency.code());
                amounts.push(p.amount);
                posting_dates.push(date.clone());
            }
        }
        // Account codes resolve to ids in SQL: accounts of this batch are
        // inserted above, and ids never change.
        const INSERT_POSTINGS_BY_CODE: &str =
            "INSERT INTO postings (entry_id, line, account_id, currency, amount, date)
             SELECT u.entry_id, u.line, a.id, u.currency, u.amount, u.date
             FROM UNNEST($1::bigint[], $2::int[], $3::text[], $4::text[], $5::bigint[], $6::text[])
                  AS u(entry_id, line, code, currency, amount, date)
             JOIN accounts a ON a.code = u.code";
        steps.push((
            INSERT_POSTINGS_BY_CODE,
            vec![
                boxed(entry_ids),
                boxed(lines),
                boxed(account_ids),
                boxed(currencies),
                boxed(amounts),
                boxed(posting_dates),
            ],
            Stage::Other,
        ));
    }
    let balances: Vec<_> = w.balances.iter().filter(|(_, a)| **a != 0).collect();
    if !balances.is_empty() {
        let accounts: Vec<i64> = balances.iter().map(|((a, _, _), _)| *a).collect();
        let currencies: Vec<&str> = balances.iter().map(|((_, c, _), _)| c.code()).collect();
        let days: Vec<String> = balances.iter().map(|((_, _, d), _)| day(*d)).collect();
        let amounts: Vec<i64> = balances.iter().map(|(_, a)| **a).collect();
        steps.push((
            UPSERT_BALANCES,
            vec![
                boxed(accounts),
                boxed(currencies),
                boxed(days),
                boxed(amounts),
            ],
            Stage::Other,
        ));
    }
    if !w.reversed.is_empty() {
        let originals: Vec<i64> = w.reversed.iter().map(|(o, _)| *o).collect();
        let reversals: Vec<i64> = w.reversed.iter().map(|(_, r)| *r).collect();
        steps.push((
            MARK_REVERSED,
            vec![boxed(originals), boxed(reversals)],
            Stage::Other,
        ));
    }
    if !w.idempotency.is_empty() {
        let i = &w.idempotency;
        let keys: Vec<&str> = i.iter().map(|r| r.0.as_str()).collect();
        let hashes: Vec<&str> = i.iter().map(|r| r.1.as_str()).collect();
        let ids: Vec<&str> = i.iter().map(|r| r.2.as_str()).collect();
        let at: Vec<&str> = i.iter().map(|r| r.3.as_str()).collect();
        steps.push((
            INSERT_IDEMPOTENCY,
            vec![boxed(keys), boxed(hashes), boxed(ids), boxed(at)],
            Stage::Other,
        ));
    }
    if !w.files.is_empty() {
        let f = &w.files;
        let ids: Vec<i64> = f.iter().map(|f| f.id).collect();
        let addresses: Vec<&str> = f.iter().map(|f| f.address.as_str()).collect();
        let names: Vec<&str> = f.iter().map(|f| f.name.as_str()).collect();
        let types: Vec<&str> = f.iter().map(|f| f.content_type.as_str()).collect();
        let sizes: Vec<i64> = f
            .iter()
            .map(|f| file_records::stored_size(f.size))
            .collect();
        let entries: Vec<Option<i64>> = f.iter().map(|f| f.entry_id).collect();
        let created: Vec<String> = f.iter().map(|f| ts(f.created_at)).collect();
        let by: Vec<&str> = f.iter().map(|f| f.created_by.as_str()).collect();
        steps.push((
            tenant_files::INSERT,
            vec![
                boxed(ids),
                boxed(addresses),
                boxed(names),
                boxed(types),
                boxed(sizes),
                boxed(entries),
                boxed(created),
                boxed(by),
            ],
            Stage::Other,
        ));
    }
    if !w.journal.is_empty() {
        let j = &w.journal;
        let at: Vec<&str> = j.iter().map(|r| r[0].as_str()).collect();
        let kinds: Vec<&str> = j.iter().map(|r| r[1].as_str()).collect();
        let payloads: Vec<&str> = j.iter().map(|r| r[2].as_str()).collect();
        let hashes: Vec<&str> = j.iter().map(|r| r[3].as_str()).collect();
        steps.push((
            INSERT_JOURNAL,
            vec![
                boxed(&w.journal_seq),
                boxed(at),
                boxed(kinds),
                boxed(payloads),
                boxed(&w.journal_prev),
                boxed(hashes),
            ],
            Stage::Other,
        ));
    }
    if !w.audit.is_empty() {
        let a = &w.audit;
        let seq: Vec<i64> = a.iter().map(|r| r.seq).collect();
        let at: Vec<&str> = a.iter().map(|r| r.fields.at.as_str()).collect();
        let actor: Vec<&str> = a.iter().map(|r| r.actor.id.as_str()).collect();
        let auth: Vec<&str> = a.iter().map(|r| r.actor.auth.as_str()).collect();
        let client: Vec<Option<&str>> = a.iter().map(|r| r.actor.client.as_deref()).collect();
        let request: Vec<Option<&str>> = a.iter().map(|r| r.actor.request_id.as_deref()).collect();
        let action: Vec<&str> = a.iter().map(|r| r.fields.action.as_str()).collect();
        let target: Vec<Option<&str>> = a.iter().map(|r| r.target.as_deref()).collect();
        let outcome: Vec<&str> = a.iter().map(|r| r.fields.outcome.as_str()).collect();
        let detail: Vec<Option<&str>> = a.iter().map(|r| r.detail.as_deref()).collect();
        let prev: Vec<&str> = a.iter().map(|r| r.prev_hash.as_str()).collect();
        let hash: Vec<&str> = a.iter().map(|r| r.hash.as_str()).collect();
        steps.push((
            INSERT_AUDIT,
            vec![
                boxed(seq),
                boxed(at),
                boxed(actor),
                boxed(auth),
                boxed(client),
                boxed(request),
                boxed(action),
                boxed(target),
                boxed(outcome),
                boxed(detail),
                boxed(prev),
                boxed(hash),
            ],
            Stage::Audit,
        ));
    }
    steps.push((
        UPDATE_HEADS,
        vec![
            boxed(heads.journal_seq),
            boxed(&heads.journal_hash),
            boxed(heads.audit_seq),
            boxed(&heads.audit_hash),
            boxed(heads.next_entry_id),
            boxed(heads.next_account_id),
        ],
        Stage::Other,
    ));
    run_steps(conn, steps).await
}
