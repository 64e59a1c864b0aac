//! Pure bookkeeping and policy domain for Work-books.
//!
//! Architecture invariant: this crate knows nothing of SQL, HTTP, clocks, files
//! or wire formats. Time is passed in; every function is deterministic.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod attachments;
pub mod audit;
pub mod data_retention;
pub mod grants;
pub mod ledger;
pub mod lifecycle;
pub mod members;
pub mod money;
pub mod monitor;
pub mod purge;
pub mod reports;
pub mod retention;
pub mod revert;
pub mod roles;
pub mod security_policy;
pub mod staff;

pub use audit::Action;
pub use ledger::{
    AccountType, BalancedEntry, EntryDraft, LedgerError, NewAccount, Posting, PostingDraft,
};
pub use money::{Currency, MoneyError};
pub use roles::{Permission, Role};
