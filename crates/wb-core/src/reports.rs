//! Reports computed from account balances. Balances are signed, debit positive;
//! the store maintains them so no report scans the journal.

use std::collections::BTreeMap;

use time::Date;

use crate::ledger::AccountType;
use crate::money::Currency;

pub type Amounts = BTreeMap<Currency, i128>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountInfo {
    pub code: String,
    pub name: String,
    pub account_type: AccountType,
}

/// One account's signed balance in one currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceRow {
    pub code: String,
    pub currency: Currency,
    pub amount: i128,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportLine {
    pub account: AccountInfo,
    pub balances: Amounts,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrialBalance {
    pub as_of: Date,
    pub lines: Vec<ReportLine>,
    /// Sum of all lines per currency; zero in every currency for a sound ledger.
    pub totals: Amounts,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub lines: Vec<ReportLine>,
    pub totals: Amounts,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceSheet {
    pub as_of: Date,
    /// Debit-normal: positive amounts are assets held.
    pub assets: Section,
    /// Credit-normal: positive amounts are owed.
    pub liabilities: Section,
    /// Credit-normal, including current earnings (income less expenses to date).
    pub equity: Section,
    pub current_earnings: Amounts,
    pub liabilities_and_equity: Amounts,
    /// Assets equal liabilities plus equity in every currency.
    pub balanced: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomeStatement {
    pub from: Date,
    pub to: Date,
    /// Credit-normal: positive amounts are earned.
    pub income: Section,
    /// Debit-normal: positive amounts are spent.
    pub expenses: Section,
    pub net_income: Amounts,
}

fn group(accounts: &[AccountInfo], rows: &[BalanceRow]) -> Vec<ReportLine> {
    let mut by_code: BTreeMap<&str, Amounts> = BTreeMap::new();
    for row in rows {
        if row.amount != 0 {
            *by_code
                .entry(row.code.as_str())
                .or_default()
                .entry(row.currency)
                .or_default() += row.amount;
        }
    }
    let mut lines: Vec<ReportLine> = accounts
        .iter()
        .filter_map(|account| {
            let balances: Amounts = by_code
                .remove(account.code.as_str())?
                .into_iter()
                .filter(|(_, a)| *a != 0)
                .collect();
            (!balances.is_empty()).then(|| ReportLine {
                account: account.clone(),
                balances,
            })
        })
        .collect();
    lines.sort_by(|a, b| a.account.code.cmp(&b.account.code));
    lines
}

fn add_into(totals: &mut Amounts, amounts: &Amounts, sign: i128) {
    for (currency, amount) in amounts {
        *totals.entry(*currency).or_default() += sign * amount;
    }
}

fn section(lines: Vec<ReportLine>, sign: i128) -> Section {
    let lines: Vec<ReportLine> = lines
        .into_iter()
        .map(|mut line| {
            for amount in line.balances.values_mut() {
                *amount *= sign;
            }
            line
        })
        .collect();
    let mut totals = Amounts::new();
    for line in &lines {
        add_into(&mut totals, &line.balances, 1);
    }
    Section { lines, totals }
}

fn of_type(lines: &[ReportLine], types: &[AccountType]) -> Vec<ReportLine> {
    lines
        .iter()
        .filter(|l| types.contains(&l.account.account_type))
        .cloned()
        .collect()
}

/// Trial balance from cumulative balances as of `as_of`.
pub fn trial_balance(as_of: Date, accounts: &[AccountInfo], rows: &[BalanceRow]) -> TrialBalance {
    let lines = group(accounts, rows);
    let mut totals = Amounts::new();
    for line in &lines {
        add_into(&mut totals, &line.balances, 1);
    }
    // Every currency that appears keeps a total, so a zero total is visible.
    for row in rows {
        totals.entry(row.currency).or_default();
    }
    TrialBalance {
        as_of,
        lines,
        totals,
    }
}

/// Balance sheet from cumulative balances as of `as_of`.
pub fn balance_sheet(as_of: Date, accounts: &[AccountInfo], rows: &[BalanceRow]) -> BalanceSheet {
    let lines = group(accounts, rows);
    let assets = section(of_type(&lines, &[AccountType::Asset]), 1);
    let liabilities = section(of_type(&lines, &[AccountType::Liability]), -1);
    let mut equity = section(of_type(&lines, &[AccountType::Equity]), -1);
    let earnings_lines = of_type(&lines, &[AccountType::Income, AccountType::Expense]);
    let mut current_earnings = Amounts::new();
    for line in &earnings_lines {
        add_into(&mut current_earnings, &line.balances, -1);
    }
    current_earnings.retain(|_, a| *a != 0);
    add_into(&mut equity.totals, &current_earnings, 1);
    let mut liabilities_and_equity = liabilities.totals.clone();
    add_into(&mut liabilities_and_equity, &equity.totals, 1);
    let currencies: Vec<Currency> = assets
        .totals
        .keys()
        .chain(liabilities_and_equity.keys())
        .copied()
        .collect();
    let balanced = currencies.iter().all(|c| {
        assets.totals.get(c).copied().unwrap_or(0)
            == liabilities_and_equity.get(c).copied().unwrap_or(0)
    });
    BalanceSheet {
        as_of,
        assets,
        liabilities,
        equity,
        current_earnings,
        liabilities_and_equity,
        balanced,
    }
}

/// Income statement from balance movements between `from` and `to` inclusive.
pub fn income_statement(
    from: Date,
    to: Date,
    accounts: &[AccountInfo],
    movements: &[BalanceRow],
) -> IncomeStatement {
    let lines = group(accounts, movements);
    let income = section(of_type(&lines, &[AccountType::Income]), -1);
    let expenses = section(of_type(&lines, &[AccountType::Expense]), 1);
    let mut net_income = income.totals.clone();
    add_into(&mut net_income, &expenses.totals, -1);
    IncomeStatement {
        from,
        to,
        income,
        expenses,
        net_income,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterPosting {
    pub date: Date,
    pub entry_id: String,
    pub description: String,
    pub currency: Currency,
    pub amount: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterLine {
    pub posting: RegisterPosting,
    /// Balance of the account in this posting's currency after it.
    pub balance: i128,
}

/// Account register: postings in order with a running balance per currency,
/// starting from the balances before the first posting.
pub fn register(opening: &Amounts, postings: Vec<RegisterPosting>) -> Vec<RegisterLine> {
    let mut running = opening.clone();
    postings
        .into_iter()
        .map(|posting| {
            let balance = running.entry(posting.currency).or_default();
            *balance += i128::from(posting.amount);
            RegisterLine {
                balance: *balance,
                posting,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{AccountRules, EntryDraft, PostingDraft};
    use proptest::prelude::*;
    use time::macros::date;

    const CODES: [(&str, AccountType); 6] = [
        ("1000", AccountType::Asset),
        ("1200", AccountType::Asset),
        ("2000", AccountType::Liability),
        ("3000", AccountType::Equity),
        ("4000", AccountType::Income),
        ("5000", AccountType::Expense),
    ];

    fn accounts() -> Vec<AccountInfo> {
        CODES
            .iter()
            .map(|(code, t)| AccountInfo {
                code: code.to_string(),
                name: format!("Account {code}"),
                account_type: *t,
            })
            .collect()
    }

    /// Accumulates entries into balance rows, as the store does.
    fn balances(entries: &[crate::BalancedEntry], as_of: Date) -> Vec<BalanceRow> {
        let mut map: BTreeMap<(String, Currency), i128> = BTreeMap::new();
        for e in entries.iter().filter(|e| e.date() <= as_of) {
            for p in e.postings() {
                *map.entry((p.account.clone(), p.currency)).or_default() += i128::from(p.amount);
            }
        }
        map.into_iter()
            .map(|((code, currency), amount)| BalanceRow {
                code,
                currency,
                amount,
            })
            .collect()
    }

    fn entry_strategy() -> impl Strategy<Value = crate::BalancedEntry> {
        (
            1u32..=365,
            prop::collection::vec(
                (0usize..6, -1_000_000_000i64..1_000_000_000, 0usize..3),
                1..6,
            ),
        )
            .prop_filter_map("needs a non-zero posting", |(day, legs)| {
                let currencies = ["USD", "EUR", "JPY"];
                let mut postings: Vec<PostingDraft> = Vec::new();
                let mut sums: BTreeMap<usize, i64> = BTreeMap::new();
                for (account, amount, cur) in legs {
                    if amount == 0 {
                        continue;
                    }
                    *sums.entry(cur).or_default() += amount;
                    let currency = Currency::parse(currencies[cur]).ok()?;
                    postings.push(PostingDraft {
                        account: CODES[account].0.into(),
                        amount: currency.format(i128::from(amount)),
                        currency: currencies[cur].into(),
                    });
                }
                for (cur, sum) in sums {
                    if sum != 0 {
                        let currency = Currency::parse(currencies[cur]).ok()?;
                        postings.push(PostingDraft {
                            account: "3000".into(),
                            amount: currency.format(-i128::from(sum)),
                            currency: currencies[cur].into(),
                        });
                    }
                }
                let date = Date::from_ordinal_date(2026, u16::try_from(day).ok()?).ok()?;
                EntryDraft {
                    date,
                    description: "generated".into(),
                    reference: None,
                    postings,
                }
                .validate(|_| Some(AccountRules { currency: None }))
                .ok()
            })
    }

    proptest! {
        #[test]
        fn every_report_balances(entries in prop::collection::vec(entry_strategy(), 0..40),
                                 as_of_day in 1u16..=365) {
            let as_of = Date::from_ordinal_date(2026, as_of_day).unwrap();
            let rows = balances(&entries, as_of);
            let tb = trial_balance(as_of, &accounts(), &rows);
            prop_assert!(tb.totals.values().all(|t| *t == 0), "{:?}", tb.totals);
            let bs = balance_sheet(as_of, &accounts(), &rows);
            prop_assert!(bs.balanced);
            let is = income_statement(date!(2026 - 01 - 01), as_of, &accounts(), &rows);
            // Net income for the whole period equals current earnings on the balance sheet.
            let mut net = is.net_income.clone();
            net.retain(|_, a| *a != 0);
            prop_assert_eq!(net, bs.current_earnings);
        }

        #[test]
        fn reversal_restores_prior_balances(entries in prop::collection::vec(entry_strategy(), 1..20),
                                            pick in any::<prop::sample::Index>()) {
            let as_of = date!(2026 - 12 - 31);
            let before = trial_balance(as_of, &accounts(), &balances(&entries, as_of));
            let target = &entries[pick.index(entries.len())];
            let mut with_pair = entries.clone();
            with_pair.push(target.clone());
            with_pair.push(target.reversal(date!(2026 - 12 - 31), None).unwrap());
            let after = trial_balance(as_of, &accounts(), &balances(&with_pair, as_of));
            prop_assert_eq!(before.lines, after.lines);
        }
    }

    #[test]
    fn register_runs_per_currency() {
        let usd = Currency::parse("USD").unwrap();
        let eur = Currency::parse("EUR").unwrap();
        let mut opening = Amounts::new();
        opening.insert(usd, 500);
        let p = |amount, currency| RegisterPosting {
            date: date!(2026 - 01 - 01),
            entry_id: "e".into(),
            description: "d".into(),
            currency,
            amount,
        };
        let lines = register(&opening, vec![p(100, usd), p(7, eur), p(-600, usd)]);
        let running: Vec<i128> = lines.iter().map(|l| l.balance).collect();
        assert_eq!(running, vec![600, 7, 0]);
    }

    #[test]
    fn balance_sheet_example() {
        let usd = Currency::parse("USD").unwrap();
        let row = |code: &str, amount| BalanceRow {
            code: code.into(),
            currency: usd,
            amount,
        };
        // Owner puts in 1000, sells for 300, spends 100 on expenses, borrows 200.
        let rows = vec![
            row("1000", 1000 + 300 - 100 + 200),
            row("3000", -1000),
            row("4000", -300),
            row("5000", 100),
            row("2000", -200),
        ];
        let bs = balance_sheet(date!(2026 - 12 - 31), &accounts(), &rows);
        assert_eq!(bs.assets.totals[&usd], 1400);
        assert_eq!(bs.liabilities.totals[&usd], 200);
        assert_eq!(bs.current_earnings[&usd], 200);
        assert_eq!(bs.equity.totals[&usd], 1200);
        assert!(bs.balanced);
    }
}
