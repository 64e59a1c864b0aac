//! Property: restoring a company's shipped journal to any point (a journal
//! sequence, or a time between two changes) gives exactly the books of a
//! replica built by applying only the changes up to that point.
//!
//! Each case applies a random sequence of changes (new accounts, batches of
//! balanced entries over them, reversals of earlier entries) to a source
//! company at increasing times, shipping at random moments, restores to a
//! random point, applies the same changes up to that point to a fresh company,
//! and compares accounts, entries (postings, reversal links, times, authors)
//! and the trial balance.

use std::sync::Arc;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use time::macros::{date, datetime};
use time::{Duration, OffsetDateTime};
use wb_core::reports::{trial_balance, AccountInfo, TrialBalance};
use wb_core::{EntryDraft, NewAccount, PostingDraft};
use wb_crypto::MasterKey;
use wb_server::backup::{self, RestoreTarget};
use wb_server::jobs::shipper::{ship_once, ShipperState};
use wb_server::{Platform, SystemClock};
use wb_store::{Account, Actor, Entry, EntryPage, TenantStore, WriteContext};

const T0: OffsetDateTime = datetime!(2026-06-01 09:00:00 UTC);
/// Account codes and types, created in this order.
const CHART: [(&str, &str); 6] = [
    ("1000", "asset"),
    ("4000", "income"),
    ("2000", "liability"),
    ("5000", "expense"),
    ("3000", "equity"),
    ("1100", "asset"),
];
/// (code, decimals)
const CURRENCIES: [(&str, u32); 2] = [("USD", 2), ("JPY", 0)];

#[derive(Debug, Clone)]
struct Draft {
    day: u8,
    currency: usize,
    /// Debits: (account, minor units); one credit balances them.
    debits: Vec<(Index, i64)>,
    credit: Index,
}

#[derive(Debug, Clone)]
enum Op {
    Account,
    Post(Vec<Draft>),
    Reverse {
        which: Index,
        day: u8,
        description: bool,
    },
}

#[derive(Debug, Clone)]
enum Point {
    /// A journal sequence, as a fraction of the head.
    Seq(Index),
    /// Half a minute after the change at this index (or before the first).
    Time(Index, bool),
}

#[derive(Debug, Clone)]
struct Case {
    /// Each change, and whether to ship right after it.
    ops: Vec<(Op, bool)>,
    point: Point,
}

fn draft() -> impl Strategy<Value = Draft> {
    (
        1u8..=28,
        0..CURRENCIES.len(),
        prop::collection::vec((any::<Index>(), 1i64..=5_000_000), 1..=3),
        any::<Index>(),
    )
        .prop_map(|(day, currency, debits, credit)| Draft {
            day,
            currency,
            debits,
            credit,
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => Just(Op::Account),
        5 => prop::collection::vec(draft(), 1..=3).prop_map(Op::Post),
        2 => (any::<Index>(), 1u8..=28, any::<bool>()).prop_map(|(which, day, description)| {
            Op::Reverse { which, day, description }
        }),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec((op(), prop::bool::weighted(0.3)), 1..=24),
        prop_oneof![
            any::<Index>().prop_map(Point::Seq),
            (any::<Index>(), any::<bool>()).prop_map(|(i, before)| Point::Time(i, before)),
        ],
    )
        // Two accounts first, so most postings apply.
        .prop_map(|(more, point)| {
            let mut ops = vec![(Op::Account, false), (Op::Account, false)];
            ops.extend(more);
            Case { ops, point }
        })
}

fn ctx(at: OffsetDateTime) -> WriteContext {
    WriteContext {
        actor: Actor {
            id: "user:property".into(),
            auth: "session".into(),
            client: None,
            request_id: None,
        },
        at,
    }
}

fn amount(minor: i64, decimals: u32) -> String {
    if decimals == 0 {
        return minor.to_string();
    }
    let scale = 10i64.pow(decimals);
    let sign = if minor < 0 { "-" } else { "" };
    let m = minor.abs();
    format!(
        "{sign}{}.{:0width$}",
        m / scale,
        m % scale,
        width = decimals as usize
    )
}

/// What the sequence has created so far (the same on the source and the replica).
#[derive(Default)]
struct Model {
    accounts: usize,
    /// Entry ids that are neither reversals nor reversed.
    reversible: Vec<i64>,
}

/// Applies one change; returns whether it was applied (a change that needs
/// what does not exist yet, e.g. a posting before two accounts, is skipped on
/// both sides and writes no journal record).
async fn apply(
    store: &Arc<dyn TenantStore>,
    model: &mut Model,
    op: &Op,
    at: OffsetDateTime,
) -> bool {
    match op {
        Op::Account => {
            let Some((code, kind)) = CHART.get(model.accounts) else {
                return false;
            };
            let name = format!("Account {code}");
            let new = NewAccount::validate(code, &name, kind, None, None).unwrap();
            store.create_account(new, ctx(at)).await.unwrap();
            model.accounts += 1;
            true
        }
        Op::Post(drafts) => {
            if model.accounts < 2 {
                return false;
            }
            let code = |i: &Index| CHART[i.index(model.accounts)].0.to_string();
            let entries: Vec<EntryDraft> = drafts
                .iter()
                .enumerate()
                .map(|(n, d)| {
                    let (currency, decimals) = CURRENCIES[d.currency];
                    let mut postings: Vec<PostingDraft> = d
                        .debits
                        .iter()
                        .map(|(account, minor)| PostingDraft {
                            account: code(account),
                            amount: amount(*minor, decimals),
                            currency: currency.into(),
                        })
                        .collect();
                    let total: i64 = d.debits.iter().map(|(_, m)| m).sum();
                    postings.push(PostingDraft {
                        account: code(&d.credit),
                        amount: amount(-total, decimals),
                        currency: currency.into(),
                    });
                    EntryDraft {
                        date: time::Date::from_calendar_date(2026, time::Month::June, d.day)
                            .unwrap(),
                        description: format!("Entry {n} of a batch on day {}", d.day),
                        reference: (n % 2 == 0).then(|| format!("ref-{}", d.day)),
                        postings,
                    }
                })
                .collect();
            let posted = store.post_entries(entries, None, ctx(at)).await.unwrap();
            model.reversible.extend(posted.entries.iter().map(|e| e.id));
            true
        }
        Op::Reverse {
            which,
            day,
            description,
        } => {
            if model.reversible.is_empty() {
                return false;
            }
            let id = model.reversible.remove(which.index(model.reversible.len()));
            let date = time::Date::from_calendar_date(2026, time::Month::July, *day).unwrap();
            let description = description.then(|| format!("Undo {id}"));
            store
                .reverse_entry(id, date, description, ctx(at))
                .await
                .unwrap();
            true
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Books {
    accounts: Vec<Account>,
    entries: Vec<Entry>,
    trial_balance: TrialBalance,
}

async fn books(store: &Arc<dyn TenantStore>) -> Books {
    let mut accounts = store.accounts().await.unwrap();
    accounts.sort_by_key(|a| a.id);
    let mut entries = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .entries(EntryPage {
                after,
                limit: 500,
                ..Default::default()
            })
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        entries.extend(page);
    }
    let infos: Vec<AccountInfo> = accounts
        .iter()
        .map(|a| AccountInfo {
            code: a.code.clone(),
            name: a.name.clone(),
            account_type: a.account_type,
        })
        .collect();
    let as_of = date!(2026 - 12 - 31);
    let rows = store.balances_as_of(as_of).await.unwrap();
    Books {
        trial_balance: trial_balance(as_of, &infos, &rows),
        accounts,
        entries,
    }
}

/// Runs one case; returns (restored, replica, description of the point).
async fn run(case: &Case) -> (Books, Books, String) {
    let dir = tempfile::tempdir().unwrap();
    let platform = Platform::open_embedded(
        dir.path(),
        MasterKey::generate(),
        Arc::new(SystemClock),
        time::Duration::hours(12),
    )
    .unwrap();
    let source = platform.create_company("Source", None).await.unwrap();
    let store = platform.tenant(&source.id).await.unwrap();
    let mut shipper = ShipperState::default();

    // Source: every change at T0 + i minutes; applied[i]: did change i write a record.
    let mut model = Model::default();
    let mut applied = Vec::with_capacity(case.ops.len());
    for (i, (op, ship)) in case.ops.iter().enumerate() {
        let at = T0 + Duration::minutes(i as i64);
        applied.push(apply(&store, &mut model, op, at).await);
        if *ship {
            ship_once(&platform, &mut shipper).await.unwrap();
        }
    }
    ship_once(&platform, &mut shipper).await.unwrap();
    let head = store.stats().await.unwrap().journal_seq;
    assert_eq!(head, applied.iter().filter(|a| **a).count() as i64);

    // The point, and the changes (by index) that precede it.
    let (target, upto, described) = match &case.point {
        Point::Seq(i) => {
            let n = i.index(head as usize + 1) as i64;
            let mut records = 0;
            let upto = applied
                .iter()
                .take_while(|a| {
                    let within = records + i64::from(**a) <= n;
                    if within {
                        records += i64::from(**a);
                    }
                    within
                })
                .count();
            (RestoreTarget::Seq(n), upto, format!("seq {n}"))
        }
        Point::Time(i, before) => {
            let k = i.index(case.ops.len());
            let (t, upto) = if *before && k == 0 {
                (T0 - Duration::seconds(30), 0)
            } else {
                (
                    T0 + Duration::minutes(k as i64) + Duration::seconds(30),
                    k + 1,
                )
            };
            (RestoreTarget::Time(t), upto, format!("time {t}"))
        }
    };
    let expected_seq = applied[..upto].iter().filter(|a| **a).count() as i64;

    let restored = backup::restore(&platform, &source.id, target)
        .await
        .unwrap();
    assert_eq!(restored.last_seq, expected_seq, "restored to {described}");
    let restored_books = books(&platform.tenant(&restored.company.id).await.unwrap()).await;

    // Replica: only the changes up to the point, at the same times.
    let replica = platform.create_company("Replica", None).await.unwrap();
    let replica_store = platform.tenant(&replica.id).await.unwrap();
    let mut model = Model::default();
    for (i, (op, _)) in case.ops.iter().enumerate().take(upto) {
        apply(
            &replica_store,
            &mut model,
            op,
            T0 + Duration::minutes(i as i64),
        )
        .await;
    }
    let replica_books = books(&replica_store).await;
    (restored_books, replica_books, described)
}

#[test]
fn restore_to_any_point_equals_a_replica_of_the_changes_up_to_it() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut runner = TestRunner::new(Config {
        cases: 16,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&case(), |case| {
            let (restored, replica, point) = runtime.block_on(run(&case));
            if restored != replica {
                return Err(TestCaseError::fail(format!(
                    "restored to {point}:\nrestored {restored:#?}\nreplica {replica:#?}"
                )));
            }
            Ok(())
        })
        .unwrap();
}
