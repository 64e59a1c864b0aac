//! The reports of a company's books, as every adapter shows them: the
//! rows the store keeps, put together by `wb_core::reports` (pure).

use time::{Date, Month};
use wb_core::reports::{self, Amounts, BalanceSheet, IncomeStatement, RegisterLine, TrialBalance};

use crate::access::CompanyScope;
use crate::error::{ServiceError, ServiceResult};

/// The period of an income statement: `to` defaults to `today`, `from` to
/// the first of January of `to`'s year.
pub fn report_period(
    today: Date,
    from: Option<Date>,
    to: Option<Date>,
) -> ServiceResult<(Date, Date)> {
    let to = to.unwrap_or(today);
    let from = match from {
        Some(from) => from,
        None => Date::from_calendar_date(to.year(), Month::January, 1)
            .map_err(|_| ServiceError::internal())?,
    };
    if from > to {
        return Err(ServiceError::unprocessable(
            "invalid-period",
            "from must not be after to",
        ));
    }
    Ok((from, to))
}

/// An account's postings in a period with running balances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Register {
    pub opening: Amounts,
    pub lines: Vec<RegisterLine>,
    pub closing: Amounts,
}

impl CompanyScope {
    pub async fn trial_balance(&self, as_of: Date) -> ServiceResult<TrialBalance> {
        Ok(reports::trial_balance(
            as_of,
            &self.account_infos().await?,
            &self.balances_as_of(as_of).await?,
        ))
    }

    pub async fn balance_sheet(&self, as_of: Date) -> ServiceResult<BalanceSheet> {
        Ok(reports::balance_sheet(
            as_of,
            &self.account_infos().await?,
            &self.balances_as_of(as_of).await?,
        ))
    }

    pub async fn income_statement(&self, from: Date, to: Date) -> ServiceResult<IncomeStatement> {
        Ok(reports::income_statement(
            from,
            to,
            &self.account_infos().await?,
            &self.movements(from, to).await?,
        ))
    }

    /// At most `limit` postings of `account` from `from` to `to`.
    pub async fn register_report(
        &self,
        account: &str,
        from: Date,
        to: Date,
        limit: u32,
    ) -> ServiceResult<Register> {
        let (opening, postings) = self.register(account, from, to, limit).await?;
        let lines = reports::register(&opening, postings);
        let mut closing = opening.clone();
        for line in &lines {
            closing.insert(line.posting.currency, line.balance);
        }
        Ok(Register {
            opening,
            lines,
            closing,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn periods_default_to_the_year_so_far_and_refuse_to_run_backwards() {
        let today = date!(2026 - 12 - 03);
        assert_eq!(
            report_period(today, None, None).unwrap(),
            (date!(2026 - 01 - 01), today)
        );
        assert_eq!(
            report_period(today, None, Some(date!(2025 - 06 - 30))).unwrap(),
            (date!(2025 - 01 - 01), date!(2025 - 06 - 30))
        );
        assert!(report_period(today, Some(date!(2026 - 12 - 04)), None).is_err());
    }
}
