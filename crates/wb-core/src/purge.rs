//! The plan of a purge: where its horizon falls, and the opening balances
//! that replace the entries dated before it so every balance on or after
//! the horizon is unchanged.
//!
//! Plain rules, no IO: the purge (issue 16) reads the entries, asks this
//! module what replaces them, and writes that.

use std::collections::BTreeMap;

use time::{Date, Month};

use crate::ledger::Posting;
use crate::money::Currency;

/// The first day whose entries are kept when entries are kept `years`
/// years as of `today`: 1 January of the year `years` before this one.
/// Retention periods run from the end of the year a record belongs to, so
/// a year's books go whole, never half a year at a time.
pub fn horizon(today: Date, years: u32) -> Date {
    let year = today.year() - i32::try_from(years).unwrap_or(i32::MAX).min(9000);
    Date::from_calendar_date(year, Month::January, 1).unwrap_or(Date::MIN)
}

/// One currency's opening entry: per account, the sum of what the purged
/// entries posted (accounts that sum to zero left out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpeningEntry {
    pub currency: Currency,
    /// (account, amount in minor units), by account code.
    pub postings: Vec<(String, i128)>,
}

impl OpeningEntry {
    /// Whether it balances (every entry it replaces did, so it must).
    pub fn balances(&self) -> bool {
        self.postings.iter().map(|(_, a)| *a).sum::<i128>() == 0
    }
}

/// The opening entries (one per currency with anything left) that replace
/// the entries dated before `horizon`; `entries` are (date, postings).
pub fn opening_entries<'a>(
    entries: impl IntoIterator<Item = (Date, &'a [Posting])>,
    horizon: Date,
) -> Vec<OpeningEntry> {
    let mut sums: BTreeMap<(String, String), (Currency, i128)> = BTreeMap::new();
    for (date, postings) in entries {
        if date >= horizon {
            continue;
        }
        for p in postings {
            let slot = sums
                .entry((p.currency.code().to_string(), p.account.clone()))
                .or_insert((p.currency, 0));
            slot.1 += i128::from(p.amount);
        }
    }
    let mut by_currency: BTreeMap<String, OpeningEntry> = BTreeMap::new();
    for ((code, account), (currency, amount)) in sums {
        if amount == 0 {
            continue;
        }
        by_currency
            .entry(code)
            .or_insert_with(|| OpeningEntry {
                currency,
                postings: Vec::new(),
            })
            .postings
            .push((account, amount));
    }
    by_currency.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::date;

    fn usd() -> Currency {
        Currency::parse("USD").unwrap()
    }
    fn eur() -> Currency {
        Currency::parse("EUR").unwrap()
    }

    #[test]
    fn the_horizon_is_the_first_of_january_years_back() {
        assert_eq!(horizon(date!(2036 - 06 - 15), 10), date!(2026 - 01 - 01));
        assert_eq!(horizon(date!(2028 - 02 - 29), 1), date!(2027 - 01 - 01));
        assert_eq!(horizon(date!(2026 - 01 - 01), 0), date!(2026 - 01 - 01));
        assert_eq!(horizon(date!(2026 - 12 - 31), 10), date!(2016 - 01 - 01));
    }

    #[test]
    fn entries_on_the_horizon_are_kept() {
        let p = |account: &str, amount: i64| Posting {
            account: account.into(),
            amount,
            currency: usd(),
        };
        let before = [p("1000", 500), p("4000", -500)];
        let on = [p("1000", 7), p("4000", -7)];
        let opening = opening_entries(
            [
                (date!(2020 - 01 - 01), &before[..]),
                (date!(2021 - 01 - 01), &on[..]),
            ],
            date!(2021 - 01 - 01),
        );
        assert_eq!(
            opening,
            vec![OpeningEntry {
                currency: usd(),
                postings: vec![("1000".into(), 500), ("4000".into(), -500)],
            }]
        );
    }

    /// (day, lines of (account index, currency index, amount)).
    type GeneratedBook = Vec<(u16, Vec<(u8, u8, i64)>)>;

    /// Generated books: balanced entries on days 0..60, in two currencies.
    fn books() -> impl Strategy<Value = GeneratedBook> {
        proptest::collection::vec(
            (
                0u16..60,
                proptest::collection::vec((0u8..5, 0u8..2, -1_000_000i64..1_000_000), 1..4),
            ),
            0..40,
        )
    }

    proptest! {
        /// Every balance (account, currency) as of any day on or after the
        /// horizon is the same from the kept entries and the opening
        /// entries as from all the entries; each opening entry balances.
        #[test]
        fn balances_after_the_horizon_are_unchanged(book in books(), cut in 0u16..61) {
            let start = date!(2020 - 01 - 01);
            let accounts = ["1000", "1100", "2000", "4000", "5000"];
            // Each generated line and its counter-posting on account 3000.
            let entries: Vec<(Date, Vec<Posting>)> = book
                .iter()
                .map(|(day, lines)| {
                    let date = start + time::Duration::days(i64::from(*day));
                    let mut postings = Vec::new();
                    for (account, currency, amount) in lines {
                        let currency = if *currency == 0 { usd() } else { eur() };
                        postings.push(Posting { account: accounts[*account as usize].into(), amount: *amount, currency });
                        postings.push(Posting { account: "3000".into(), amount: -*amount, currency });
                    }
                    (date, postings)
                })
                .collect();
            let horizon = start + time::Duration::days(i64::from(cut));
            let opening = opening_entries(entries.iter().map(|(d, p)| (*d, &p[..])), horizon);
            for o in &opening {
                prop_assert!(o.balances());
                prop_assert!(o.postings.iter().all(|(_, a)| *a != 0));
            }
            for as_of_day in cut..61 {
                let as_of = start + time::Duration::days(i64::from(as_of_day));
                let mut all: BTreeMap<(String, String), i128> = BTreeMap::new();
                let mut purged: BTreeMap<(String, String), i128> = BTreeMap::new();
                for (date, postings) in &entries {
                    if *date > as_of { continue; }
                    for p in postings {
                        let k = (p.account.clone(), p.currency.code().to_string());
                        *all.entry(k.clone()).or_default() += i128::from(p.amount);
                        if *date >= horizon {
                            *purged.entry(k).or_default() += i128::from(p.amount);
                        }
                    }
                }
                for o in &opening {
                    for (account, amount) in &o.postings {
                        *purged.entry((account.clone(), o.currency.code().to_string())).or_default() += amount;
                    }
                }
                all.retain(|_, v| *v != 0);
                purged.retain(|_, v| *v != 0);
                prop_assert_eq!(&all, &purged);
            }
        }
    }
}
