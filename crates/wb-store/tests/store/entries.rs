//! The entry list's filters and orders on both backends (`TenantStore::entries`
//! with an `EntryPage`): oldest or newest first with their cursors, dates, an
//! account, a text in the description or reference (LIKE wildcards taken
//! literally), an amount range in a currency, any combination of them, and a
//! property test against a plain filter of every entry.

use std::sync::Arc;

use proptest::prelude::*;
use time::macros::date;
use time::{Date, Duration, OffsetDateTime};
use wb_core::{Currency, EntryDraft, NewAccount, PostingDraft};
use wb_crypto::DataKey;
use wb_store::sqlite::SqliteTenants;
use wb_store::{Actor, AmountFilter, Entry, EntryPage, TenantDirectory, TenantStore, WriteContext};

use crate::pg_backend;

/// Runs each story (taking the company directory) on SQLCipher and on PostgreSQL.
macro_rules! on_both_backends {
    ($($story:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $story() {
                    let dir = tempfile::tempdir().expect("tempdir");
                    super::$story(super::sqlite_tenants(&dir)).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $story() {
                    super::$story(super::pg_tenants(stringify!($story)).await).await;
                }
            )*
        }
    };
}

on_both_backends!(
    account_filter_story,
    text_filter_story,
    amount_filter_story,
    newest_first_paging_story,
    combined_filters_story,
);

fn sqlite_tenants(dir: &tempfile::TempDir) -> Arc<dyn TenantDirectory> {
    Arc::new(SqliteTenants::new(dir.path().to_path_buf()).expect("tenant directory"))
}

async fn pg_tenants(story: &str) -> Arc<dyn TenantDirectory> {
    let (_control, tenants) = pg_backend::pg_stores(&format!("entries_{story}")).await;
    tenants
}

fn ctx() -> WriteContext {
    WriteContext {
        actor: Actor {
            id: "user:entries".into(),
            auth: "session".into(),
            client: None,
            request_id: None,
        },
        at: OffsetDateTime::now_utc(),
    }
}

const CHART: [(&str, &str, Option<&str>); 5] = [
    ("1000", "asset", None),
    ("1100", "asset", None),
    ("1200", "asset", Some("EUR")),
    ("4000", "income", None),
    ("5000", "expense", None),
];

async fn books(tenants: &dyn TenantDirectory) -> Arc<dyn TenantStore> {
    let id = uuid::Uuid::now_v7().to_string();
    let store = tenants
        .create(&id, &DataKey::generate())
        .await
        .expect("create books");
    for (code, kind, currency) in CHART {
        let account = NewAccount::validate(code, &format!("Account {code}"), kind, None, currency)
            .expect("valid account");
        store.create_account(account, ctx()).await.expect("account");
    }
    store
}

fn p(account: &str, amount: &str, currency: &str) -> PostingDraft {
    PostingDraft {
        account: account.into(),
        amount: amount.into(),
        currency: currency.into(),
    }
}

fn draft(
    date: Date,
    description: &str,
    reference: Option<&str>,
    postings: Vec<PostingDraft>,
) -> EntryDraft {
    EntryDraft {
        date,
        description: description.into(),
        reference: reference.map(str::to_string),
        postings,
    }
}

/// A sale of `amount` USD into `account`.
fn sale(date: Date, description: &str, account: &str, amount: &str) -> EntryDraft {
    draft(
        date,
        description,
        None,
        vec![
            p(account, amount, "USD"),
            p("4000", &format!("-{amount}"), "USD"),
        ],
    )
}

async fn post(store: &dyn TenantStore, drafts: Vec<EntryDraft>) -> Vec<i64> {
    store
        .post_entries(drafts, None, ctx())
        .await
        .expect("post")
        .entries
        .iter()
        .map(|e| e.id)
        .collect()
}

fn usd() -> Currency {
    Currency::parse("USD").expect("USD")
}

fn eur() -> Currency {
    Currency::parse("EUR").expect("EUR")
}

fn page() -> EntryPage {
    EntryPage {
        limit: 1000,
        ..Default::default()
    }
}

async fn ids(store: &dyn TenantStore, page: EntryPage) -> Vec<i64> {
    store
        .entries(page)
        .await
        .expect("entries")
        .iter()
        .map(|e| e.id)
        .collect()
}

/// Every page of `page` in turn, following its order's cursor.
async fn all_pages(store: &dyn TenantStore, page: EntryPage) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    let mut next = page.clone();
    loop {
        let got = store.entries(next.clone()).await.expect("entries");
        assert!(got.len() <= page.limit.max(1) as usize);
        let Some(last) = got.last().map(|e| e.id) else {
            return out;
        };
        let short = got.len() < page.limit.max(1) as usize;
        out.extend(got);
        if short {
            return out;
        }
        if page.newest_first {
            next.before = Some(last);
        } else {
            next.after = Some(last);
        }
    }
}

async fn account_filter_story(tenants: Arc<dyn TenantDirectory>) {
    let store = books(&*tenants).await;
    let d = date!(2026 - 03 - 01);
    let ids_posted = post(
        &*store,
        vec![
            sale(d, "Cash sale", "1000", "10.00"),
            sale(d + Duration::days(1), "Card sale", "1100", "20.00"),
            // Two postings to 1000 in one entry: listed once.
            draft(
                d + Duration::days(2),
                "Split",
                None,
                vec![
                    p("1000", "5.00", "USD"),
                    p("1000", "6.00", "USD"),
                    p("4000", "-11.00", "USD"),
                ],
            ),
            draft(
                d + Duration::days(3),
                "Euro",
                None,
                vec![p("1200", "7.00", "EUR"), p("4000", "-7.00", "EUR")],
            ),
            sale(d + Duration::days(4), "Cash again", "1000", "30.00"),
        ],
    )
    .await;
    let [cash, card, split, euro, cash_again] = ids_posted[..] else {
        panic!("five entries")
    };
    let account = |code: &str| EntryPage {
        account: Some(code.into()),
        ..page()
    };
    assert_eq!(
        ids(&*store, account("1000")).await,
        [cash, split, cash_again]
    );
    assert_eq!(ids(&*store, account("1100")).await, [card]);
    assert_eq!(ids(&*store, account("1200")).await, [euro]);
    assert_eq!(
        ids(&*store, account("4000")).await,
        [cash, card, split, euro, cash_again]
    );
    // An account without postings, and codes that name no account.
    assert!(ids(&*store, account("5000")).await.is_empty());
    for unknown in ["9999", "", "1000%", "10_0"] {
        assert!(
            ids(&*store, account(unknown)).await.is_empty(),
            "{unknown:?}"
        );
    }
    // Newest first, with the cursor, with dates.
    assert_eq!(
        ids(
            &*store,
            EntryPage {
                newest_first: true,
                ..account("1000")
            }
        )
        .await,
        [cash_again, split, cash]
    );
    assert_eq!(
        ids(
            &*store,
            EntryPage {
                newest_first: true,
                before: Some(cash_again),
                limit: 1,
                ..account("1000")
            }
        )
        .await,
        [split]
    );
    assert_eq!(
        ids(
            &*store,
            EntryPage {
                after: Some(cash),
                ..account("1000")
            }
        )
        .await,
        [split, cash_again]
    );
    assert_eq!(
        ids(
            &*store,
            EntryPage {
                from: Some(d + Duration::days(1)),
                to: Some(d + Duration::days(3)),
                ..account("1000")
            }
        )
        .await,
        [split]
    );
    assert_eq!(
        ids(
            &*store,
            EntryPage {
                from: Some(d + Duration::days(2)),
                newest_first: true,
                ..account("1000")
            }
        )
        .await,
        [cash_again, split]
    );
    // Each entry comes with all its postings, not only the account's.
    let listed = store
        .entries(account("1000"))
        .await
        .expect("entries by account");
    assert_eq!(listed[1].postings.len(), 3);
    assert_eq!(listed[0], store.entry(cash).await.unwrap().unwrap());
}

async fn text_filter_story(tenants: Arc<dyn TenantDirectory>) {
    let store = books(&*tenants).await;
    let d = date!(2026 - 04 - 01);
    let one = |description: &str, reference: Option<&str>| {
        draft(
            d,
            description,
            reference,
            vec![p("1000", "1.00", "USD"), p("4000", "-1.00", "USD")],
        )
    };
    let posted = post(
        &*store,
        vec![
            one("Rent April", Some("INV-100")),
            one("50% off sale", None),
            one("5000 off sale", None),
            one("user_name fee", None),
            one("username fee", None),
            one("path C:\\books", None),
            one("Office chairs", Some("po_7%")),
            one("Müller GmbH", Some("Straße 1")),
        ],
    )
    .await;
    let [rent, percent, digits, underscore, plain, backslash, office, umlaut] = posted[..] else {
        panic!("eight entries")
    };
    let text = |t: &str| EntryPage {
        text: Some(t.into()),
        ..page()
    };
    // Case does not matter (ASCII letters), in the description or the reference.
    assert_eq!(ids(&*store, text("rent")).await, [rent]);
    assert_eq!(ids(&*store, text("RENT APRIL")).await, [rent]);
    assert_eq!(ids(&*store, text("inv-1")).await, [rent]);
    assert_eq!(ids(&*store, text("PO_7")).await, [office]);
    assert_eq!(ids(&*store, text("off")).await, [percent, digits, office]);
    // LIKE wildcards and the escape character are plain characters.
    assert_eq!(ids(&*store, text("%")).await, [percent, office]);
    assert_eq!(ids(&*store, text("50%")).await, [percent]);
    assert_eq!(ids(&*store, text("_")).await, [underscore, office]);
    assert_eq!(ids(&*store, text("user_")).await, [underscore]);
    assert_eq!(ids(&*store, text("username")).await, [plain]);
    assert_eq!(ids(&*store, text("\\")).await, [backslash]);
    assert_eq!(ids(&*store, text("c:\\b")).await, [backslash]);
    assert_eq!(ids(&*store, text("\\%")).await, Vec::<i64>::new());
    // Other characters match exactly.
    assert_eq!(ids(&*store, text("müller")).await, [umlaut]);
    assert_eq!(ids(&*store, text("straße")).await, [umlaut]);
    assert!(ids(&*store, text("nowhere")).await.is_empty());
    assert!(ids(&*store, text("a\0b")).await.is_empty());
    // The empty text matches every entry.
    assert_eq!(ids(&*store, text("")).await.len(), posted.len());
    assert_eq!(
        ids(
            &*store,
            EntryPage {
                newest_first: true,
                limit: 2,
                ..text("e")
            }
        )
        .await,
        [umlaut, office]
    );
}

async fn amount_filter_story(tenants: Arc<dyn TenantDirectory>) {
    let store = books(&*tenants).await;
    let d = date!(2026 - 05 - 01);
    let posted = post(
        &*store,
        vec![
            sale(d, "small", "1000", "9.99"),
            sale(d, "ten", "1000", "10.00"),
            sale(d, "hundred", "1100", "100.00"),
            draft(
                d,
                "euro ten",
                None,
                vec![p("1200", "10.00", "EUR"), p("4000", "-10.00", "EUR")],
            ),
            // Amounts differ between lines: 25 and 75 in, 100 out.
            draft(
                d,
                "mixed",
                None,
                vec![
                    p("1000", "25.00", "USD"),
                    p("1100", "75.00", "USD"),
                    p("4000", "-100.00", "USD"),
                ],
            ),
        ],
    )
    .await;
    let [small, ten, hundred, euro, mixed] = posted[..] else {
        panic!("five entries")
    };
    let amount = |currency: Currency, min: Option<i64>, max: Option<i64>| EntryPage {
        amount: Some(AmountFilter { currency, min, max }),
        ..page()
    };
    assert_eq!(
        ids(&*store, amount(usd(), Some(1000), Some(1000))).await,
        [ten]
    );
    assert_eq!(
        ids(&*store, amount(eur(), Some(1000), Some(1000))).await,
        [euro]
    );
    // The credit side (-100.00) matches by its absolute amount.
    assert_eq!(
        ids(&*store, amount(usd(), Some(10_000), None)).await,
        [hundred, mixed]
    );
    assert_eq!(ids(&*store, amount(usd(), None, Some(999))).await, [small]);
    assert_eq!(
        ids(&*store, amount(usd(), Some(2000), Some(3000))).await,
        [mixed]
    );
    assert_eq!(
        ids(&*store, amount(usd(), Some(7600), Some(9999))).await,
        Vec::<i64>::new()
    );
    // A currency alone: every entry with a posting in it.
    assert_eq!(ids(&*store, amount(eur(), None, None)).await, [euro]);
    assert_eq!(
        ids(&*store, amount(usd(), None, None)).await,
        [small, ten, hundred, mixed]
    );
    assert!(
        ids(&*store, amount(Currency::parse("JPY").unwrap(), None, None))
            .await
            .is_empty()
    );
    // Bounds that cannot hold, and a negative minimum (no bound).
    assert!(ids(&*store, amount(usd(), Some(2000), Some(1000)))
        .await
        .is_empty());
    assert!(ids(&*store, amount(usd(), None, Some(-1))).await.is_empty());
    assert_eq!(
        ids(&*store, amount(usd(), Some(-5), Some(999))).await,
        [small]
    );
    assert_eq!(
        ids(
            &*store,
            EntryPage {
                newest_first: true,
                limit: 1,
                ..amount(usd(), Some(1000), None)
            }
        )
        .await,
        [mixed]
    );
}

async fn newest_first_paging_story(tenants: Arc<dyn TenantDirectory>) {
    let store = books(&*tenants).await;
    let base = date!(2026 - 01 - 01);
    // Dates out of id order, as backdated entries are.
    let drafts = (0..23)
        .map(|i| {
            sale(
                base + Duration::days((i * 7) % 11),
                &format!("Entry {i}"),
                if i % 3 == 0 { "1100" } else { "1000" },
                &format!("{}.00", i + 1),
            )
        })
        .collect();
    let mut posted = post(&*store, drafts).await;
    posted.sort_unstable();
    let newest: Vec<i64> = posted.iter().rev().copied().collect();

    for limit in [1, 2, 5, 22, 23, 24, 1000] {
        let pages = all_pages(
            &*store,
            EntryPage {
                newest_first: true,
                limit,
                ..Default::default()
            },
        )
        .await;
        let got: Vec<i64> = pages.iter().map(|e| e.id).collect();
        assert_eq!(got, newest, "newest first, pages of {limit}");
        let pages = all_pages(
            &*store,
            EntryPage {
                limit,
                ..Default::default()
            },
        )
        .await;
        let got: Vec<i64> = pages.iter().map(|e| e.id).collect();
        assert_eq!(got, posted, "oldest first, pages of {limit}");
    }
    // The same entries as the ascending list, whole.
    let asc = store.entries(page()).await.expect("entries");
    let mut desc = store
        .entries(EntryPage {
            newest_first: true,
            ..page()
        })
        .await
        .expect("entries newest first");
    desc.reverse();
    assert_eq!(desc, asc);

    // A cursor in the middle, past the end and before the start.
    let middle = posted[10];
    assert_eq!(
        ids(
            &*store,
            EntryPage {
                newest_first: true,
                before: Some(middle),
                limit: 3,
                ..Default::default()
            }
        )
        .await,
        [posted[9], posted[8], posted[7]]
    );
    assert!(ids(
        &*store,
        EntryPage {
            newest_first: true,
            before: Some(posted[0]),
            ..page()
        }
    )
    .await
    .is_empty());
    assert_eq!(
        ids(
            &*store,
            EntryPage {
                newest_first: true,
                before: Some(i64::MAX),
                limit: 1,
                ..Default::default()
            }
        )
        .await,
        [posted[22]]
    );
    // Both cursors: the ids between them.
    assert_eq!(
        ids(
            &*store,
            EntryPage {
                after: Some(posted[3]),
                before: Some(posted[7]),
                ..page()
            }
        )
        .await,
        posted[4..7]
    );
    // A limit of 0 is taken as 1.
    assert_eq!(
        ids(
            &*store,
            EntryPage {
                newest_first: true,
                limit: 0,
                ..Default::default()
            }
        )
        .await,
        [posted[22]]
    );

    // Newest first through a filter, in pages, also covers each match once.
    for account in ["1000", "1100"] {
        for (from, to) in [(None, None), (Some(base + Duration::days(3)), None)] {
            let filter = EntryPage {
                newest_first: true,
                account: Some(account.into()),
                from,
                to,
                limit: 2,
                ..Default::default()
            };
            let got: Vec<i64> = all_pages(&*store, filter.clone())
                .await
                .iter()
                .map(|e| e.id)
                .collect();
            let mut want: Vec<Entry> = store.entries(page()).await.unwrap();
            want.retain(|e| model_matches(e, &filter));
            let want: Vec<i64> = want.iter().rev().map(|e| e.id).collect();
            assert!(!want.is_empty());
            assert_eq!(got, want, "{filter:?}");
        }
    }
}

async fn combined_filters_story(tenants: Arc<dyn TenantDirectory>) {
    let store = books(&*tenants).await;
    let d = date!(2026 - 06 - 01);
    let posted = post(
        &*store,
        vec![
            sale(d, "Invoice 1", "1000", "100.00"),
            sale(d + Duration::days(1), "Invoice 2", "1100", "100.00"),
            sale(d + Duration::days(2), "Invoice 3", "1000", "50.00"),
            sale(d + Duration::days(3), "Refund 4", "1000", "100.00"),
            sale(d + Duration::days(4), "Invoice 5", "1000", "100.00"),
            sale(d + Duration::days(30), "Invoice 6", "1000", "100.00"),
        ],
    )
    .await;
    let all = EntryPage {
        account: Some("1000".into()),
        text: Some("INVOICE".into()),
        amount: Some(AmountFilter {
            currency: usd(),
            min: Some(10_000),
            max: Some(10_000),
        }),
        ..page()
    };
    assert_eq!(
        ids(&*store, all.clone()).await,
        [posted[0], posted[4], posted[5]]
    );
    let dated = EntryPage {
        from: Some(d),
        to: Some(d + Duration::days(10)),
        ..all.clone()
    };
    assert_eq!(ids(&*store, dated.clone()).await, [posted[0], posted[4]]);
    assert_eq!(
        ids(
            &*store,
            EntryPage {
                newest_first: true,
                ..dated.clone()
            }
        )
        .await,
        [posted[4], posted[0]]
    );
    assert_eq!(
        ids(
            &*store,
            EntryPage {
                newest_first: true,
                before: Some(posted[4]),
                ..dated.clone()
            }
        )
        .await,
        [posted[0]]
    );
    // Without the account, the other account's invoice joins.
    assert_eq!(
        ids(
            &*store,
            EntryPage {
                account: None,
                ..dated.clone()
            }
        )
        .await,
        [posted[0], posted[1], posted[4]]
    );
    // An unknown account empties any combination.
    assert!(ids(
        &*store,
        EntryPage {
            account: Some("7777".into()),
            ..dated
        }
    )
    .await
    .is_empty());
}

// ---------------------------------------------------------------------------
// Property: the store answers what a plain filter of every entry answers
// ---------------------------------------------------------------------------

/// What `page` asks of one entry, as the documentation of `EntryPage` says.
fn model_matches(e: &Entry, page: &EntryPage) -> bool {
    let fold = |s: &str| s.to_ascii_lowercase();
    page.after.is_none_or(|a| e.id > a)
        && page.before.is_none_or(|b| e.id < b)
        && page.from.is_none_or(|f| e.date >= f)
        && page.to.is_none_or(|t| e.date <= t)
        && page
            .account
            .as_ref()
            .is_none_or(|code| e.postings.iter().any(|p| &p.account == code))
        && page.text.as_ref().is_none_or(|text| {
            let text = fold(text);
            fold(&e.description).contains(&text)
                || e.reference
                    .as_ref()
                    .is_some_and(|r| fold(r).contains(&text))
        })
        && page.amount.as_ref().is_none_or(|f| {
            e.postings.iter().any(|p| {
                let size = p.amount.unsigned_abs();
                p.currency == f.currency
                    && f.min.is_none_or(|min| size >= min.max(0).unsigned_abs())
                    && f.max
                        .is_none_or(|max| max >= 0 && size <= max.unsigned_abs())
            })
        })
}

const WORDS: [&str; 8] = [
    "Rent", "rent%", "RE_NT", "paid\\", "Café", "CAFÉ", "50% off", "a_b",
];
const NEEDLES: [&str; 14] = [
    "", "r", "RENT", "nt", "%", "_", "\\", "e_n", "é", "É", "caf", "50%", "x", "a_",
];
const CODES: [&str; 6] = ["1000", "1100", "1200", "4000", "5000", "9999"];
const CURRENCIES: [&str; 2] = ["USD", "EUR"];

#[derive(Debug, Clone)]
struct LedgerEntry {
    day: i64,
    description: (usize, usize),
    reference: Option<usize>,
    /// (debit account, credit account, currency, minor units > 0) among the
    /// unrestricted accounts, and a EUR leg to 1200 when `euro` is set.
    legs: Vec<(usize, usize, usize, i64)>,
    euro: Option<i64>,
}

#[derive(Debug, Clone)]
struct Filter {
    newest_first: bool,
    cursor: Option<usize>,
    limit: u32,
    from: Option<i64>,
    to: Option<i64>,
    account: Option<usize>,
    text: Option<usize>,
    amount: Option<(usize, Option<i64>, Option<i64>)>,
}

#[derive(Debug, Clone)]
struct Case {
    entries: Vec<LedgerEntry>,
    reversals: Vec<usize>,
    filters: Vec<Filter>,
}

const UNRESTRICTED: [&str; 4] = ["1000", "1100", "4000", "5000"];

fn ledger_case() -> impl Strategy<Value = Case> {
    let leg = (0..4usize, 0..4usize, 0..CURRENCIES.len(), 1i64..400);
    let entry = (
        0i64..20,
        (0..WORDS.len(), 0..WORDS.len()),
        prop::option::of(0..WORDS.len()),
        prop::collection::vec(leg, 1..3),
        prop::option::of(1i64..400),
    )
        .prop_map(|(day, description, reference, legs, euro)| LedgerEntry {
            day,
            description,
            reference,
            legs,
            euro,
        });
    let bound = prop::option::of(0i64..420);
    let filter = (
        any::<bool>(),
        prop::option::of(0usize..40),
        1u32..6,
        (prop::option::of(0i64..20), prop::option::of(0i64..20)),
        prop::option::of(0..CODES.len()),
        prop::option::of(0..NEEDLES.len()),
        prop::option::of((0..CURRENCIES.len(), bound.clone(), bound)),
    )
        .prop_map(
            |(newest_first, cursor, limit, (from, to), account, text, amount)| Filter {
                newest_first,
                cursor,
                limit,
                from,
                to,
                account,
                text,
                amount,
            },
        );
    (
        prop::collection::vec(entry, 1..25),
        prop::collection::vec(0usize..30, 0..3),
        prop::collection::vec(filter, 12..24),
    )
        .prop_map(|(entries, reversals, filters)| Case {
            entries,
            reversals,
            filters,
        })
}

const BASE: Date = date!(2026 - 02 - 01);

fn ledger_draft(e: &LedgerEntry) -> EntryDraft {
    let mut postings = Vec::new();
    for &(debit, credit, currency, minor) in &e.legs {
        let code = CURRENCIES[currency];
        let c = Currency::parse(code).expect("currency");
        postings.push(p(UNRESTRICTED[debit], &c.format(i128::from(minor)), code));
        postings.push(p(UNRESTRICTED[credit], &c.format(-i128::from(minor)), code));
    }
    if let Some(minor) = e.euro {
        let c = eur();
        postings.push(p("1200", &c.format(i128::from(minor)), "EUR"));
        postings.push(p("4000", &c.format(-i128::from(minor)), "EUR"));
    }
    draft(
        BASE + Duration::days(e.day),
        &format!("{} {}", WORDS[e.description.0], WORDS[e.description.1]),
        e.reference.map(|r| WORDS[r]),
        postings,
    )
}

fn entry_page(f: &Filter, ids: &[i64]) -> EntryPage {
    let cursor = f.cursor.map(|i| ids.get(i).copied().unwrap_or(i as i64));
    EntryPage {
        after: if f.newest_first { None } else { cursor },
        before: if f.newest_first { cursor } else { None },
        limit: f.limit,
        from: f.from.map(|d| BASE + Duration::days(d)),
        to: f.to.map(|d| BASE + Duration::days(d)),
        newest_first: f.newest_first,
        account: f.account.map(|a| CODES[a].to_string()),
        text: f.text.map(|t| NEEDLES[t].to_string()),
        amount: f.amount.map(|(c, min, max)| AmountFilter {
            currency: Currency::parse(CURRENCIES[c]).expect("currency"),
            min,
            max,
        }),
    }
}

async fn filters_match_the_model_story(tenants: Arc<dyn TenantDirectory>, case: Case) {
    let store = books(&*tenants).await;
    let drafts: Vec<EntryDraft> = case.entries.iter().map(ledger_draft).collect();
    let posted = post(&*store, drafts).await;
    for &r in &case.reversals {
        let id = posted[r % posted.len()];
        // A second reversal of the same entry is refused; that is fine here.
        let _ = store
            .reverse_entry(id, BASE + Duration::days(25), None, ctx())
            .await;
    }
    // Every entry, from the plain ascending list.
    let all = all_pages(
        &*store,
        EntryPage {
            limit: 7,
            ..Default::default()
        },
    )
    .await;
    let ids: Vec<i64> = all.iter().map(|e| e.id).collect();
    for filter in &case.filters {
        let page = entry_page(filter, &ids);
        let mut want: Vec<&Entry> = all.iter().filter(|e| model_matches(e, &page)).collect();
        if page.newest_first {
            want.reverse();
        }
        // The first page, then every page.
        let first = store.entries(page.clone()).await.expect("entries");
        let first_want: Vec<Entry> = want
            .iter()
            .take(page.limit as usize)
            .map(|e| (*e).clone())
            .collect();
        assert_eq!(first, first_want, "first page of {page:?}");
        let every = all_pages(&*store, page.clone()).await;
        let want: Vec<Entry> = want.into_iter().cloned().collect();
        assert_eq!(every, want, "every page of {page:?}");
    }
}

fn run_model(cases: u32, backend: fn(Case)) {
    let config = ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(cases)
    };
    proptest!(config, |(case in ledger_case())| {
        backend(case);
    });
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn sqlite_filters_match_the_model() {
    run_model(24, |case| {
        runtime().block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            filters_match_the_model_story(sqlite_tenants(&dir), case).await;
        })
    });
}

#[test]
fn postgres_filters_match_the_model() {
    run_model(8, |case| {
        runtime().block_on(async {
            filters_match_the_model_story(pg_tenants("model").await, case).await;
        })
    });
}
