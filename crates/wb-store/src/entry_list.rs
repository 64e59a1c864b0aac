//! The entry list (`TenantStore::entries`) on both backends: an
//! [`EntryPage`] becomes one of a few fixed query shapes (so statements are
//! prepared once per shape) and the values bound to it.
//!
//! Each shape reads an index from the cursor on and stops at `limit`
//! matches; only a date range is sorted, so no page sorts the whole ledger:
//! - no account, no dates: the entries' primary key from the cursor on;
//! - dates, no account: `entries_by_date` over the range, sorted (a page
//!   costs the entries in the range, wherever the range lies);
//! - an account: its postings by entry id (`postings_by_account_entry`),
//!   or, with dates, by date (`postings_by_account`, sorted, costing the
//!   account's postings in the range);
//! - an amount, no account, no dates (SQLite): the postings in entry order
//!   (their primary key), read in sequence.
//!
//! The text and amount filters are checked on each entry (or posting) the
//! scan reaches: a rare match costs a scan, stopped at `limit` matches.
//! PostgreSQL plans the shapes without an account but with dates or an
//! amount for each call's values (see [`Shape::plan_each_call`]).

use crate::model::EntryPage;

/// Bound for a missing `from` / `to`: before and after every stored day.
const NO_DATE_BEFORE: &str = "0000-00-00";
const NO_DATE_AFTER: &str = "9999-99-99";

/// Which filters a query has: each combination is one statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shape {
    pub newest_first: bool,
    pub account: bool,
    pub dated: bool,
    pub text: bool,
    pub amount: bool,
}

impl Shape {
    const COUNT: usize = 32;

    /// Whether PostgreSQL should plan this shape for each call's values (an
    /// unnamed statement) rather than reuse a prepared one. A cached generic
    /// plan knows neither the date range nor how rare an amount is, and at
    /// 1M entries picked plans 50 and 10 times slower than planning with the
    /// values (a narrow date range scanned by id; each entry's postings
    /// probed in turn instead of one merge). The shapes with an account, the
    /// text filter alone and the plain list plan well once for all values.
    pub fn plan_each_call(self) -> bool {
        !self.account && (self.dated || self.amount)
    }

    fn index(self) -> usize {
        usize::from(self.newest_first)
            | usize::from(self.account) << 1
            | usize::from(self.dated) << 2
            | usize::from(self.text) << 3
            | usize::from(self.amount) << 4
    }

    fn from_index(i: usize) -> Shape {
        Shape {
            newest_first: i & 1 != 0,
            account: i & 2 != 0,
            dated: i & 4 != 0,
            text: i & 8 != 0,
            amount: i & 16 != 0,
        }
    }
}

/// A value bound to a statement, in the order [`EntryQuery::values`] gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Int(i64),
    Text(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct AmountRange {
    currency: String,
    /// The positive amounts matched, inclusive.
    positive: (i64, i64),
    /// The negative amounts matched, inclusive.
    negative: (i64, i64),
}

/// An [`EntryPage`] ready to run: its shape and its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EntryQuery {
    pub shape: Shape,
    /// The account's code, for the backend to look up (an unknown code matches nothing).
    pub account: Option<String>,
    after: i64,
    before: i64,
    from: String,
    to: String,
    pattern: Option<String>,
    amount: Option<AmountRange>,
    limit: u32,
}

impl EntryQuery {
    /// The query for `page`, or None when its filters cannot match anything.
    pub fn new(page: &EntryPage, max_page: u32) -> Option<EntryQuery> {
        let pattern = match &page.text {
            // A stored text cannot hold NUL (PostgreSQL refuses it as a value).
            Some(text) if text.contains('\0') => return None,
            Some(text) => Some(like_pattern(text)),
            None => None,
        };
        let amount = match &page.amount {
            Some(filter) => {
                let low = filter.min.unwrap_or(0).max(0);
                let high = filter.max.unwrap_or(i64::MAX);
                if high < low {
                    return None;
                }
                Some(AmountRange {
                    currency: filter.currency.code().to_string(),
                    positive: (low, high),
                    // |i64::MIN| is past i64::MAX: only an open range takes it.
                    negative: (
                        if filter.max.is_some() {
                            -high
                        } else {
                            i64::MIN
                        },
                        -low,
                    ),
                })
            }
            None => None,
        };
        let dated = page.from.is_some() || page.to.is_some();
        Some(EntryQuery {
            shape: Shape {
                newest_first: page.newest_first,
                account: page.account.is_some(),
                dated,
                text: pattern.is_some(),
                amount: amount.is_some(),
            },
            account: page.account.clone(),
            after: page.after.unwrap_or(0),
            before: page.before.unwrap_or(i64::MAX),
            from: page
                .from
                .map_or_else(|| NO_DATE_BEFORE.to_string(), crate::sqlite::conn::day),
            to: page
                .to
                .map_or_else(|| NO_DATE_AFTER.to_string(), crate::sqlite::conn::day),
            pattern,
            amount,
            limit: page.limit.clamp(1, max_page),
        })
    }

    /// The values to bind, numbered from 1 as the shape's statement expects;
    /// `account_id` is the looked-up id of `self.account`.
    pub fn values(&self, account_id: Option<i64>) -> Vec<Value> {
        let mut values = vec![Value::Int(self.after), Value::Int(self.before)];
        if self.shape.account {
            values.push(Value::Int(account_id.unwrap_or(0)));
        }
        if self.shape.dated {
            values.push(Value::Text(self.from.clone()));
            values.push(Value::Text(self.to.clone()));
        }
        if let Some(pattern) = &self.pattern {
            values.push(Value::Text(pattern.clone()));
        }
        if let Some(amount) = &self.amount {
            values.push(Value::Text(amount.currency.clone()));
            values.push(Value::Int(amount.positive.0));
            values.push(Value::Int(amount.positive.1));
            values.push(Value::Int(amount.negative.0));
            values.push(Value::Int(amount.negative.1));
        }
        values.push(Value::Int(i64::from(self.limit)));
        values
    }
}

/// `text` as a LIKE pattern matching it anywhere, its wildcards and the escape
/// character taken literally (escape `\`), ASCII letters in lower case (both
/// backends compare ASCII letters without case: SQLite's LIKE does,
/// PostgreSQL's side is `lower(... COLLATE "C")`).
pub(crate) fn like_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c.to_ascii_lowercase());
    }
    pattern.push('%');
    pattern
}

/// Placeholder numbers of a shape's values, in the order of [`EntryQuery::values`].
struct Slots {
    after: usize,
    before: usize,
    account: usize,
    from: usize,
    to: usize,
    pattern: usize,
    currency: usize,
    amounts: [usize; 4],
    limit: usize,
}

impl Slots {
    fn of(shape: Shape) -> Slots {
        let mut n = 0;
        let mut next = |present: bool| {
            if present {
                n += 1;
                n
            } else {
                0
            }
        };
        Slots {
            after: next(true),
            before: next(true),
            account: next(shape.account),
            from: next(shape.dated),
            to: next(shape.dated),
            pattern: next(shape.text),
            currency: next(shape.amount),
            amounts: [
                next(shape.amount),
                next(shape.amount),
                next(shape.amount),
                next(shape.amount),
            ],
            limit: next(true),
        }
    }
}

const COLUMNS: &str = "e.id, e.date, e.description, e.reference, e.reverses, e.reversed_by, \
                       e.created_at, e.created_by";

/// The condition of the text filter on `e`.
fn text_filter(shape: Shape, s: &Slots, p: char, lower: &str, close: &str) -> String {
    if !shape.text {
        return String::new();
    }
    format!(
        " AND ({lower}e.description{close} LIKE {p}{n} ESCAPE '\\' \
         OR {lower}e.reference{close} LIKE {p}{n} ESCAPE '\\')",
        n = s.pattern
    )
}

/// The condition of the amount filter on the posting `a`.
fn amount_condition(s: &Slots, p: char) -> String {
    let [a, b, c, d] = s.amounts;
    format!(
        "a.currency = {p}{cur} \
         AND (a.amount BETWEEN {p}{a} AND {p}{b} OR a.amount BETWEEN {p}{c} AND {p}{d})",
        cur = s.currency
    )
}

/// The conditions on `e` of the text and amount filters.
fn entry_filters(shape: Shape, s: &Slots, p: char, lower: &str, close: &str) -> String {
    let mut sql = text_filter(shape, s, p, lower, close);
    if shape.amount {
        sql.push_str(&format!(
            " AND EXISTS (SELECT 1 FROM postings a WHERE a.entry_id = e.id AND {})",
            amount_condition(s, p)
        ));
    }
    sql
}

fn order(shape: Shape) -> &'static str {
    if shape.newest_first {
        "DESC"
    } else {
        "ASC"
    }
}

fn sqlite_sql(shape: Shape) -> String {
    let s = Slots::of(shape);
    let filters = entry_filters(shape, &s, '?', "", "");
    let (after, before, limit, dir) = (s.after, s.before, s.limit, order(shape));
    let e_dates = if shape.dated {
        format!(" AND e.date >= ?{} AND e.date <= ?{}", s.from, s.to)
    } else {
        String::new()
    };
    if shape.account {
        // Driven by the account's postings (CROSS JOIN keeps that order);
        // INDEXED BY, as SQLite plans without statistics.
        let (index, p_dates) = if shape.dated {
            (
                "postings_by_account",
                format!(" AND p.date >= ?{} AND p.date <= ?{}", s.from, s.to),
            )
        } else {
            ("postings_by_account_entry", String::new())
        };
        format!(
            "SELECT {COLUMNS} FROM postings p INDEXED BY {index} CROSS JOIN entries e ON e.id = p.entry_id \
             WHERE p.account_id = ?{account} AND p.entry_id > ?{after} AND p.entry_id < ?{before}\
             {p_dates}{e_dates}{filters} \
             GROUP BY p.entry_id ORDER BY p.entry_id {dir} LIMIT ?{limit}",
            account = s.account
        )
    } else if shape.amount && !shape.dated {
        // Driven by the postings in entry order (their primary key): a scan
        // reads them in sequence instead of looking up each entry's.
        format!(
            "SELECT {COLUMNS} FROM postings a CROSS JOIN entries e ON e.id = a.entry_id \
             WHERE a.entry_id > ?{after} AND a.entry_id < ?{before} AND {amount}{text} \
             GROUP BY a.entry_id ORDER BY a.entry_id {dir} LIMIT ?{limit}",
            amount = amount_condition(&s, '?'),
            text = text_filter(shape, &s, '?', "", ""),
        )
    } else {
        let index = if shape.dated {
            " INDEXED BY entries_by_date"
        } else {
            ""
        };
        format!(
            "SELECT {COLUMNS} FROM entries e{index} \
             WHERE e.id > ?{after} AND e.id < ?{before}{e_dates}{filters} \
             ORDER BY e.id {dir} LIMIT ?{limit}"
        )
    }
}

fn postgres_sql(shape: Shape) -> String {
    let s = Slots::of(shape);
    let filters = entry_filters(shape, &s, '$', "lower(", " COLLATE \"C\")");
    let (after, before, limit, dir) = (s.after, s.before, s.limit, order(shape));
    let e_dates = if shape.dated {
        format!(" AND e.date >= ${} AND e.date <= ${}", s.from, s.to)
    } else {
        String::new()
    };
    if shape.account {
        // The account's entry ids in order, each entry looked up and checked
        // in turn (OFFSET 0 keeps the lookup a nested loop that stops at the
        // limit, whatever the plan cache assumes of the account).
        let p_dates = if shape.dated {
            format!(" AND p.date >= ${} AND p.date <= ${}", s.from, s.to)
        } else {
            String::new()
        };
        format!(
            "SELECT {COLUMNS} FROM (SELECT DISTINCT p.entry_id FROM postings p \
             WHERE p.account_id = ${account} AND p.entry_id > ${after} AND p.entry_id < ${before}\
             {p_dates} ORDER BY p.entry_id {dir}) s \
             CROSS JOIN LATERAL (SELECT {COLUMNS} FROM entries e \
             WHERE e.id = s.entry_id{e_dates}{filters} OFFSET 0) e \
             ORDER BY s.entry_id {dir} LIMIT ${limit}",
            account = s.account
        )
    } else {
        format!(
            "SELECT {COLUMNS} FROM entries e \
             WHERE e.id > ${after} AND e.id < ${before}{e_dates}{filters} \
             ORDER BY e.id {dir} LIMIT ${limit}"
        )
    }
}

fn statements(build: fn(Shape) -> String) -> Vec<String> {
    (0..Shape::COUNT)
        .map(|i| build(Shape::from_index(i)))
        .collect()
}

/// The SQLite statement of a shape.
pub(crate) fn sqlite_statement(shape: Shape) -> &'static str {
    static ALL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    &ALL.get_or_init(|| statements(sqlite_sql))[shape.index()]
}

/// The PostgreSQL statement of a shape.
pub(crate) fn postgres_statement(shape: Shape) -> &'static str {
    static ALL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    &ALL.get_or_init(|| statements(postgres_sql))[shape.index()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AmountFilter;
    use wb_core::Currency;

    fn page() -> EntryPage {
        EntryPage {
            limit: 50,
            ..Default::default()
        }
    }

    #[test]
    fn wildcards_and_the_escape_character_are_literal() {
        assert_eq!(like_pattern("50%_off\\x"), "%50\\%\\_off\\\\x%");
        assert_eq!(like_pattern("ÄBc"), "%Äbc%");
        assert_eq!(like_pattern(""), "%%");
    }

    #[test]
    fn shapes_round_trip_and_number_their_values_in_order() {
        for i in 0..Shape::COUNT {
            let shape = Shape::from_index(i);
            assert_eq!(shape.index(), i);
            let sql = postgres_statement(shape);
            let mut page = page();
            page.newest_first = shape.newest_first;
            page.account = shape.account.then(|| "1000".to_string());
            page.from = shape.dated.then_some(time::macros::date!(2026 - 01 - 01));
            page.text = shape.text.then(|| "x".to_string());
            page.amount = shape.amount.then(|| AmountFilter {
                currency: Currency::parse("USD").unwrap(),
                min: None,
                max: None,
            });
            let query = EntryQuery::new(&page, 1000).unwrap();
            assert_eq!(query.shape, shape);
            let count = query.values(Some(1)).len();
            assert!(sql.contains(&format!("${count}")), "{sql}");
            assert!(!sql.contains(&format!("${}", count + 1)), "{sql}");
            assert!(sqlite_statement(shape).contains(&format!("?{count}")));
        }
    }

    #[test]
    fn impossible_filters_match_nothing() {
        let usd = Currency::parse("USD").unwrap();
        let mut p = page();
        p.amount = Some(AmountFilter {
            currency: usd,
            min: Some(10),
            max: Some(9),
        });
        assert!(EntryQuery::new(&p, 1000).is_none());
        p.amount = Some(AmountFilter {
            currency: usd,
            min: None,
            max: Some(-1),
        });
        assert!(EntryQuery::new(&p, 1000).is_none());
        p.amount = None;
        p.text = Some("a\0b".into());
        assert!(EntryQuery::new(&p, 1000).is_none());
    }

    #[test]
    fn amount_ranges_cover_both_signs() {
        let usd = Currency::parse("USD").unwrap();
        let mut p = page();
        p.amount = Some(AmountFilter {
            currency: usd,
            min: Some(-5),
            max: None,
        });
        let q = EntryQuery::new(&p, 1000).unwrap();
        let range = q.amount.unwrap();
        assert_eq!(range.positive, (0, i64::MAX));
        assert_eq!(range.negative, (i64::MIN, 0));
        p.amount = Some(AmountFilter {
            currency: usd,
            min: Some(100),
            max: Some(i64::MAX),
        });
        let range = EntryQuery::new(&p, 1000).unwrap().amount.unwrap();
        assert_eq!(range.positive, (100, i64::MAX));
        assert_eq!(range.negative, (-i64::MAX, -100));
    }

    /// SQLite plans without statistics: each shape must keep to its index
    /// (no scan of all entries for an account, no sort without dates).
    #[test]
    fn sqlite_shapes_use_their_indexes() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        crate::migrations::sqlite::migrate(
            &mut conn,
            crate::migrations::Database::Tenant,
            crate::migrations::SQLITE_TENANT,
        )
        .unwrap();
        for i in 0..Shape::COUNT {
            let shape = Shape::from_index(i);
            let sql = sqlite_statement(shape);
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let count = stmt.parameter_count();
            let plan: Vec<String> = stmt
                .query_map(rusqlite::params_from_iter(vec![0i64; count]), |r| {
                    r.get::<_, String>(3)
                })
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let plan = plan.join("\n");
            assert!(!plan.contains("SCAN"), "{shape:?}: {plan}");
            match (shape.account, shape.dated) {
                (false, false) if shape.amount => {
                    assert!(
                        plan.contains("SEARCH a USING PRIMARY KEY (entry_id>? AND entry_id<?)"),
                        "{plan}"
                    );
                    assert!(!plan.contains("TEMP B-TREE"), "{shape:?}: {plan}");
                }
                (false, false) => {
                    assert!(
                        plan.contains("SEARCH e USING INTEGER PRIMARY KEY"),
                        "{plan}"
                    );
                    assert!(!plan.contains("TEMP B-TREE"), "{shape:?}: {plan}");
                }
                (false, true) => assert!(plan.contains("entries_by_date"), "{plan}"),
                (true, false) => {
                    assert!(plan.contains("postings_by_account_entry"), "{plan}");
                    assert!(!plan.contains("TEMP B-TREE"), "{shape:?}: {plan}");
                }
                (true, true) => assert!(plan.contains("postings_by_account "), "{plan}"),
            }
        }
    }
}
