//! Ledger rules: accounts, journal entries, balancing, reversals.
//!
//! A `BalancedEntry` can only be built by `EntryDraft::validate` or by reversing
//! another balanced entry, so storage code that takes one cannot post an
//! unbalanced entry.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use time::{Date, Month};

use crate::money::{Currency, MoneyError};

pub const MAX_POSTINGS: usize = 500;
pub const MAX_DESCRIPTION_CHARS: usize = 500;
pub const MAX_REFERENCE_CHARS: usize = 100;
pub const MAX_ACCOUNT_NAME_CHARS: usize = 200;
pub const MAX_ACCOUNT_CODE_CHARS: usize = 32;

/// Earliest and latest dates the ledger accepts; outside is almost surely a typo.
pub fn date_range() -> (Date, Date) {
    let first = Date::from_calendar_date(1900, Month::January, 1);
    let last = Date::from_calendar_date(2199, Month::December, 31);
    match (first, last) {
        (Ok(f), Ok(l)) => (f, l),
        _ => (Date::MIN, Date::MAX),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AccountType {
    Asset,
    Liability,
    Equity,
    Income,
    Expense,
}

impl AccountType {
    pub const ALL: [AccountType; 5] = [
        AccountType::Asset,
        AccountType::Liability,
        AccountType::Equity,
        AccountType::Income,
        AccountType::Expense,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AccountType::Asset => "asset",
            AccountType::Liability => "liability",
            AccountType::Equity => "equity",
            AccountType::Income => "income",
            AccountType::Expense => "expense",
        }
    }

    /// +1 for debit-normal accounts (assets, expenses), -1 for credit-normal ones.
    pub fn normal_sign(self) -> i128 {
        match self {
            AccountType::Asset | AccountType::Expense => 1,
            AccountType::Liability | AccountType::Equity | AccountType::Income => -1,
        }
    }
}

impl fmt::Display for AccountType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AccountType {
    type Err = LedgerError;
    fn from_str(s: &str) -> Result<Self, LedgerError> {
        AccountType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| LedgerError::UnknownAccountType(clip(s, 32)))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("account code {0:?} is invalid: use 1 to 32 letters, digits, '.', '-' or '_'")]
    InvalidAccountCode(String),
    #[error("account name must be 1 to 200 printable characters")]
    InvalidAccountName,
    #[error("unknown account type {0:?}: use asset, liability, equity, income or expense")]
    UnknownAccountType(String),
    #[error("account code {0:?} already exists")]
    DuplicateAccountCode(String),
    #[error("parent account {0:?} does not exist")]
    UnknownParent(String),
    #[error("parent account {parent:?} is of type {parent_type}, not {child_type}")]
    ParentTypeMismatch {
        parent: String,
        parent_type: AccountType,
        child_type: AccountType,
    },
    #[error("an entry needs at least two postings")]
    TooFewPostings,
    #[error("an entry may have at most {MAX_POSTINGS} postings")]
    TooManyPostings,
    #[error("posting {index}: unknown account {code:?}")]
    UnknownAccount { index: usize, code: String },
    #[error("posting {index}: {source}")]
    Money { index: usize, source: MoneyError },
    #[error("posting {index}: amount is zero")]
    ZeroAmount { index: usize },
    #[error("posting {index}: account {account:?} holds only {allowed}, not {currency}")]
    CurrencyNotAllowed {
        index: usize,
        account: String,
        allowed: Currency,
        currency: Currency,
    },
    #[error("entry does not balance: {currency} postings sum to {sum}, not 0")]
    Unbalanced { currency: Currency, sum: String },
    #[error("date {0} is outside 1900-01-01..2199-12-31")]
    DateOutOfRange(Date),
    #[error("description must be 1 to 500 characters without control characters")]
    InvalidDescription,
    #[error("reference must be at most 100 characters without control characters")]
    InvalidReference,
    #[error("entry {0} has already been reversed")]
    AlreadyReversed(String),
    #[error("entry {0} is itself a reversal; post a new entry instead")]
    ReversalOfReversal(String),
    #[error("a balance would overflow")]
    Overflow,
}

/// An account to create, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAccount {
    pub code: String,
    pub name: String,
    pub account_type: AccountType,
    pub parent: Option<String>,
    pub currency: Option<Currency>,
}

impl NewAccount {
    pub fn validate(
        code: &str,
        name: &str,
        account_type: &str,
        parent: Option<&str>,
        currency: Option<&str>,
    ) -> Result<NewAccount, LedgerError> {
        validate_code(code)?;
        if let Some(parent) = parent {
            validate_code(parent)?;
        }
        let name = name.trim();
        if name.is_empty()
            || name.chars().count() > MAX_ACCOUNT_NAME_CHARS
            || name.chars().any(char::is_control)
        {
            return Err(LedgerError::InvalidAccountName);
        }
        let currency = currency
            .map(Currency::parse)
            .transpose()
            .map_err(|source| LedgerError::Money { index: 0, source })?;
        Ok(NewAccount {
            code: code.to_string(),
            name: name.to_string(),
            account_type: account_type.parse()?,
            parent: parent.map(str::to_string),
            currency,
        })
    }

    /// A parent must exist and be of the same type, so reports can roll children up.
    pub fn check_parent(&self, parent_type: Option<AccountType>) -> Result<(), LedgerError> {
        match (&self.parent, parent_type) {
            (None, _) => Ok(()),
            (Some(p), None) => Err(LedgerError::UnknownParent(p.clone())),
            (Some(p), Some(t)) if t != self.account_type => Err(LedgerError::ParentTypeMismatch {
                parent: p.clone(),
                parent_type: t,
                child_type: self.account_type,
            }),
            _ => Ok(()),
        }
    }
}

fn validate_code(code: &str) -> Result<(), LedgerError> {
    let ok = !code.is_empty()
        && code.len() <= MAX_ACCOUNT_CODE_CHARS
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(LedgerError::InvalidAccountCode(clip(code, 40)))
    }
}

/// What validation needs to know about an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountRules {
    pub currency: Option<Currency>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostingDraft {
    pub account: String,
    pub amount: String,
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryDraft {
    pub date: Date,
    pub description: String,
    pub reference: Option<String>,
    pub postings: Vec<PostingDraft>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    pub account: String,
    pub amount: i64,
    pub currency: Currency,
}

/// An entry whose postings sum to zero in every currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalancedEntry {
    date: Date,
    description: String,
    reference: Option<String>,
    postings: Vec<Posting>,
}

impl BalancedEntry {
    pub fn date(&self) -> Date {
        self.date
    }
    pub fn description(&self) -> &str {
        &self.description
    }
    pub fn reference(&self) -> Option<&str> {
        self.reference.as_deref()
    }
    pub fn postings(&self) -> &[Posting] {
        &self.postings
    }
    /// Date, description, reference and postings, moved out.
    pub fn into_parts(self) -> (Date, String, Option<String>, Vec<Posting>) {
        (self.date, self.description, self.reference, self.postings)
    }

    /// Rebuilds a stored entry, re-checking the balance rule on the way in.
    pub fn from_stored(
        date: Date,
        description: String,
        reference: Option<String>,
        postings: Vec<Posting>,
    ) -> Result<BalancedEntry, LedgerError> {
        check_balanced(&postings)?;
        Ok(BalancedEntry {
            date,
            description,
            reference,
            postings,
        })
    }

    /// The entry that undoes this one: every posting negated, dated `date`.
    pub fn reversal(
        &self,
        date: Date,
        description: Option<&str>,
    ) -> Result<BalancedEntry, LedgerError> {
        check_date(date)?;
        let description = match description {
            Some(d) => validate_description(d)?,
            None => {
                let mut d = format!("Reversal of: {}", self.description);
                if d.chars().count() > MAX_DESCRIPTION_CHARS {
                    d = d.chars().take(MAX_DESCRIPTION_CHARS).collect();
                }
                d
            }
        };
        let postings = self
            .postings
            .iter()
            .map(|p| {
                Ok(Posting {
                    account: p.account.clone(),
                    amount: p.amount.checked_neg().ok_or(LedgerError::Overflow)?,
                    currency: p.currency,
                })
            })
            .collect::<Result<Vec<_>, LedgerError>>()?;
        Ok(BalancedEntry {
            date,
            description,
            reference: self.reference.clone(),
            postings,
        })
    }
}

impl EntryDraft {
    /// Checks every ledger rule. `account` answers for a code, or None when unknown.
    pub fn validate(
        &self,
        account: impl Fn(&str) -> Option<AccountRules>,
    ) -> Result<BalancedEntry, LedgerError> {
        check_date(self.date)?;
        let description = validate_description(&self.description)?;
        let reference = match &self.reference {
            Some(r)
                if r.chars().count() > MAX_REFERENCE_CHARS || r.chars().any(char::is_control) =>
            {
                return Err(LedgerError::InvalidReference)
            }
            Some(r) if r.trim().is_empty() => None,
            other => other.clone(),
        };
        if self.postings.len() < 2 {
            return Err(LedgerError::TooFewPostings);
        }
        if self.postings.len() > MAX_POSTINGS {
            return Err(LedgerError::TooManyPostings);
        }
        let mut postings = Vec::with_capacity(self.postings.len());
        for (index, draft) in self.postings.iter().enumerate() {
            let rules = account(&draft.account).ok_or_else(|| LedgerError::UnknownAccount {
                index,
                code: clip(&draft.account, 40),
            })?;
            let currency = Currency::parse(&draft.currency)
                .map_err(|source| LedgerError::Money { index, source })?;
            let amount = currency
                .parse_amount(&draft.amount)
                .map_err(|source| LedgerError::Money { index, source })?;
            if amount == 0 {
                return Err(LedgerError::ZeroAmount { index });
            }
            if let Some(allowed) = rules.currency {
                if allowed != currency {
                    return Err(LedgerError::CurrencyNotAllowed {
                        index,
                        account: draft.account.clone(),
                        allowed,
                        currency,
                    });
                }
            }
            postings.push(Posting {
                account: draft.account.clone(),
                amount,
                currency,
            });
        }
        check_balanced(&postings)?;
        Ok(BalancedEntry {
            date: self.date,
            description,
            reference,
            postings,
        })
    }
}

fn check_date(date: Date) -> Result<(), LedgerError> {
    let (first, last) = date_range();
    if date < first || date > last {
        return Err(LedgerError::DateOutOfRange(date));
    }
    Ok(())
}

fn validate_description(text: &str) -> Result<String, LedgerError> {
    let text = text.trim();
    if text.is_empty()
        || text.chars().count() > MAX_DESCRIPTION_CHARS
        || text.chars().any(char::is_control)
    {
        return Err(LedgerError::InvalidDescription);
    }
    Ok(text.to_string())
}

fn check_balanced(postings: &[Posting]) -> Result<(), LedgerError> {
    if postings.len() < 2 {
        return Err(LedgerError::TooFewPostings);
    }
    // i128 cannot overflow summing at most MAX_POSTINGS i64 values.
    let mut sums: BTreeMap<Currency, i128> = BTreeMap::new();
    for p in postings {
        *sums.entry(p.currency).or_default() += i128::from(p.amount);
    }
    match sums.into_iter().find(|(_, sum)| *sum != 0) {
        Some((currency, sum)) => Err(LedgerError::Unbalanced {
            currency,
            sum: currency.format(sum),
        }),
        None => Ok(()),
    }
}

fn clip(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn posting(account: &str, amount: &str, currency: &str) -> PostingDraft {
        PostingDraft {
            account: account.into(),
            amount: amount.into(),
            currency: currency.into(),
        }
    }

    fn draft(postings: Vec<PostingDraft>) -> EntryDraft {
        EntryDraft {
            date: date!(2026 - 01 - 31),
            description: "Sale".into(),
            reference: None,
            postings,
        }
    }

    fn any_account(code: &str) -> Option<AccountRules> {
        match code {
            "1000" | "4000" => Some(AccountRules { currency: None }),
            "1100" => Some(AccountRules {
                currency: Some(Currency::parse("EUR").ok()?),
            }),
            _ => None,
        }
    }

    #[test]
    fn accepts_balanced_entries() {
        let entry = draft(vec![
            posting("1000", "100.00", "USD"),
            posting("4000", "-100.00", "USD"),
        ])
        .validate(any_account)
        .unwrap();
        assert_eq!(entry.postings()[0].amount, 10000);
        assert_eq!(entry.postings()[1].amount, -10000);
    }

    #[test]
    fn balances_per_currency() {
        let ok = draft(vec![
            posting("1000", "100.00", "USD"),
            posting("4000", "-100.00", "USD"),
            posting("1100", "5", "EUR"),
            posting("4000", "-5.00", "EUR"),
        ]);
        assert!(ok.validate(any_account).is_ok());
        let cross = draft(vec![
            posting("1000", "100.00", "USD"),
            posting("4000", "-100.00", "EUR"),
        ]);
        assert!(matches!(
            cross.validate(any_account),
            Err(LedgerError::Unbalanced { .. })
        ));
    }

    #[test]
    fn refuses_each_bad_input() {
        type Case = (EntryDraft, fn(&LedgerError) -> bool);
        let cases: Vec<Case> = vec![
            (
                draft(vec![
                    posting("1000", "1.00", "USD"),
                    posting("4000", "-0.99", "USD"),
                ]),
                |e| matches!(e, LedgerError::Unbalanced { sum, .. } if sum == "0.01"),
            ),
            (draft(vec![posting("1000", "1.00", "USD")]), |e| {
                matches!(e, LedgerError::TooFewPostings)
            }),
            (
                draft(vec![
                    posting("9999", "1.00", "USD"),
                    posting("4000", "-1.00", "USD"),
                ]),
                |e| matches!(e, LedgerError::UnknownAccount { index: 0, .. }),
            ),
            (
                draft(vec![
                    posting("1000", "1.001", "USD"),
                    posting("4000", "-1.001", "USD"),
                ]),
                |e| {
                    matches!(
                        e,
                        LedgerError::Money {
                            source: MoneyError::TooManyDecimals { .. },
                            ..
                        }
                    )
                },
            ),
            (
                draft(vec![
                    posting("1000", "1.00", "ABC"),
                    posting("4000", "-1.00", "ABC"),
                ]),
                |e| {
                    matches!(
                        e,
                        LedgerError::Money {
                            source: MoneyError::UnknownCurrency(_),
                            ..
                        }
                    )
                },
            ),
            (
                draft(vec![
                    posting("1000", "0", "USD"),
                    posting("4000", "0", "USD"),
                ]),
                |e| matches!(e, LedgerError::ZeroAmount { index: 0 }),
            ),
            (
                draft(vec![
                    posting("1100", "1.00", "USD"),
                    posting("4000", "-1.00", "USD"),
                ]),
                |e| matches!(e, LedgerError::CurrencyNotAllowed { .. }),
            ),
            (
                draft(vec![
                    posting("1000", "92233720368547758.07", "USD"),
                    posting("1000", "92233720368547758.07", "USD"),
                    posting("4000", "-1", "USD"),
                ]),
                |e| matches!(e, LedgerError::Unbalanced { .. }),
            ),
        ];
        for (i, (d, check)) in cases.into_iter().enumerate() {
            let err = d.validate(any_account).unwrap_err();
            assert!(check(&err), "case {i}: {err}");
        }
    }

    #[test]
    fn refuses_bad_dates_and_descriptions() {
        let mut d = draft(vec![
            posting("1000", "1", "USD"),
            posting("4000", "-1", "USD"),
        ]);
        d.date = date!(1899 - 12 - 31);
        assert!(matches!(
            d.validate(any_account),
            Err(LedgerError::DateOutOfRange(_))
        ));
        d.date = date!(2026 - 01 - 01);
        d.description = "  ".into();
        assert_eq!(
            d.validate(any_account),
            Err(LedgerError::InvalidDescription)
        );
        d.description = "x".repeat(501);
        assert_eq!(
            d.validate(any_account),
            Err(LedgerError::InvalidDescription)
        );
        d.description = "ok".into();
        d.reference = Some("a\u{0}b".into());
        assert_eq!(d.validate(any_account), Err(LedgerError::InvalidReference));
    }

    #[test]
    fn reversal_negates_every_posting() {
        let entry = draft(vec![
            posting("1000", "12.34", "USD"),
            posting("4000", "-12.34", "USD"),
        ])
        .validate(any_account)
        .unwrap();
        let rev = entry.reversal(date!(2026 - 02 - 01), None).unwrap();
        assert_eq!(rev.description(), "Reversal of: Sale");
        assert_eq!(rev.postings()[0].amount, -1234);
        assert_eq!(rev.postings()[1].amount, 1234);
    }

    #[test]
    fn account_validation() {
        assert!(NewAccount::validate("1000", "Cash", "asset", None, None).is_ok());
        assert!(NewAccount::validate("", "Cash", "asset", None, None).is_err());
        assert!(NewAccount::validate("10 00", "Cash", "asset", None, None).is_err());
        assert!(NewAccount::validate("1000", "", "asset", None, None).is_err());
        assert!(NewAccount::validate("1000", "Cash", "cash", None, None).is_err());
        assert!(NewAccount::validate("1000", "Cash", "asset", None, Some("usd")).is_err());
        let child = NewAccount::validate("1010", "Petty", "asset", Some("1000"), None).unwrap();
        assert!(child.check_parent(Some(AccountType::Asset)).is_ok());
        assert!(child.check_parent(Some(AccountType::Income)).is_err());
        assert!(child.check_parent(None).is_err());
    }
}
