//! What a company's dashboard shows: its cash and bank balances, income
//! and expenses month by month, how far its changes are backed up, and the
//! open alerts that concern it.

use time::{Date, Month, OffsetDateTime};
use wb_core::ledger::AccountType;
use wb_core::reports::{self, Amounts, ReportLine, TrialBalance};

use crate::access::CompanyScope;
use crate::backup::{shipper, snapshot};
use crate::error::ServiceResult;
use crate::platform::Platform;

/// The company's continuous-protection position.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupPosition {
    /// The last change committed.
    pub journal_seq: i64,
    /// The last change shipped to object storage.
    pub shipped_seq: i64,
    /// When the newest snapshot was taken (None: none yet).
    pub snapshot_taken_at: Option<OffsetDateTime>,
}

impl BackupPosition {
    pub fn unshipped(&self) -> i64 {
        (self.journal_seq - self.shipped_seq).max(0)
    }
}

/// An open or acknowledged alert about the company.
#[derive(Debug, Clone, PartialEq)]
pub struct CompanyAlert {
    pub title: String,
    pub severity: String,
    pub state: String,
    pub last_seen: OffsetDateTime,
}

/// The most alerts a dashboard lists (the newest).
const ALERTS_SHOWN: u32 = 20;

/// Cash and bank accounts: assets named so; in a chart without any, every
/// asset account.
pub fn cash_and_bank(balances: &TrialBalance) -> Vec<&ReportLine> {
    let assets = balances
        .lines
        .iter()
        .filter(|l| l.account.account_type == AccountType::Asset);
    let named: Vec<&ReportLine> = assets
        .clone()
        .filter(|l| {
            let name = l.account.name.to_lowercase();
            ["cash", "bank", "checking", "savings", "petty"]
                .iter()
                .any(|w| name.contains(w))
        })
        .collect();
    if named.is_empty() {
        assets.collect()
    } else {
        named
    }
}

/// The first day of the month `back` months before `today`'s.
pub fn month_start(today: Date, back: u32) -> Date {
    let index = today.year() * 12 + i32::from(u8::from(today.month())) - 1 - back as i32;
    let (year, month0) = (index.div_euclid(12), index.rem_euclid(12));
    let month = Month::try_from(month0 as u8 + 1).unwrap_or(Month::January);
    Date::from_calendar_date(year, month, 1).unwrap_or(today)
}

/// The last day of `start`'s month.
pub fn month_end(start: Date) -> Date {
    let index = start.year() * 12 + i32::from(u8::from(start.month()));
    let next = Month::try_from(index.rem_euclid(12) as u8 + 1)
        .ok()
        .and_then(|m| Date::from_calendar_date(index.div_euclid(12), m, 1).ok());
    next.and_then(|d| d.previous_day()).unwrap_or(start)
}

/// One month's income and expenses (each positive when earned or spent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonthTotals {
    /// The month's first day.
    pub month: Date,
    pub income: Amounts,
    pub expenses: Amounts,
}

impl CompanyScope {
    /// Income and expenses of the `months` months up to `today`'s, oldest first.
    pub async fn months_results(
        &self,
        today: Date,
        months: u32,
    ) -> ServiceResult<Vec<MonthTotals>> {
        let accounts = self.account_infos().await?;
        let mut out = Vec::new();
        for back in (0..months).rev() {
            let from = month_start(today, back);
            let to = month_end(from);
            let statement =
                reports::income_statement(from, to, &accounts, &self.movements(from, to).await?);
            out.push(MonthTotals {
                month: from,
                income: statement.income.totals,
                expenses: statement.expenses.totals,
            });
        }
        Ok(out)
    }

    pub async fn backup_position(&self, platform: &Platform) -> ServiceResult<BackupPosition> {
        let company = self.company_id();
        let journal_seq = self.store().stats().await?.journal_seq;
        let shipped_seq = platform
            .control
            .cursor(&shipper::cursor_name(company))
            .await?;
        let snapshot_taken_at = match platform
            .control
            .cursor(&snapshot::seq_cursor(company))
            .await?
        {
            0 => None,
            _ => {
                let unix = platform
                    .control
                    .cursor(&snapshot::time_cursor(company))
                    .await?;
                OffsetDateTime::from_unix_timestamp(unix).ok()
            }
        };
        Ok(BackupPosition {
            journal_seq,
            shipped_seq,
            snapshot_taken_at,
        })
    }

    pub async fn open_alerts(&self, platform: &Platform) -> ServiceResult<Vec<CompanyAlert>> {
        Ok(platform
            .alerts
            .active_for_company(self.company_id(), ALERTS_SHOWN)
            .await?
            .into_iter()
            .map(|alert| CompanyAlert {
                title: alert.title,
                severity: alert.severity.as_str().to_string(),
                state: alert.state.as_str().to_string(),
                last_seen: alert.last_seen,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn months_step_back_one_at_a_time(year in 1990i32..2100, month in 1u8..=12, day in 1u8..=28, back in 0u32..400) {
            let today = Date::from_calendar_date(year, Month::try_from(month).unwrap(), day).unwrap();
            let start = month_start(today, back);
            prop_assert_eq!(start.day(), 1);
            let apart = (today.year() - start.year()) * 12 + i32::from(u8::from(today.month()))
                - i32::from(u8::from(start.month()));
            prop_assert_eq!(apart, back as i32);
            let end = month_end(start);
            prop_assert_eq!(end.month(), start.month());
            prop_assert_eq!(end.next_day().unwrap().day(), 1);
        }
    }
}
