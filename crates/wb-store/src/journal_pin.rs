//! Pins the change-journal payload of every kind byte for byte, as the
//! writers encoded it before the format moved to `journal.rs`: segments in
//! object stores and journals in existing databases hold these bytes, and
//! their hashes cover them, so the encoding must never drift.

use time::macros::{date, datetime};
use wb_core::{AccountType, Currency, Posting};

use crate::file_records;
use crate::model::{Account, Entry, FileRecord};
use crate::sqlite::tenant_writer::{
    account_created, to_json, EntriesPosted, EntryRecord, EntryReversed,
};

const AT: &str = "2024-05-06T07:08:09.123456789Z";

fn eur() -> Currency {
    Currency::parse("EUR").unwrap()
}

fn entry(id: i64, reverses: Option<i64>) -> Entry {
    Entry {
        id,
        date: date!(2024 - 05 - 06),
        description: "Rent \"May\" – Büro".into(),
        reference: if reverses.is_none() {
            Some("INV-1".into())
        } else {
            None
        },
        postings: vec![
            Posting {
                account: "1000".into(),
                amount: -1250,
                currency: eur(),
            },
            Posting {
                account: "6000".into(),
                amount: 1250,
                currency: eur(),
            },
            Posting {
                account: "6001".into(),
                amount: 500,
                currency: Currency::parse("JPY").unwrap(),
            },
        ],
        reverses,
        reversed_by: None,
        created_at: datetime!(2024-05-06 07:08:09 UTC),
        created_by: "user:u1".into(),
    }
}

#[test]
fn account_created_is_pinned() {
    let account = Account {
        id: 3,
        code: "1000".into(),
        name: "Cash \"petty\" ü".into(),
        account_type: AccountType::Asset,
        parent: Some("100".into()),
        currency: Some(eur()),
        created_at: datetime!(2024-05-06 07:08:09 UTC),
    };
    assert_eq!(
        account_created(&account, AT),
        r#"{"code":"1000","created_at":"2024-05-06T07:08:09.123456789Z","currency":"EUR","id":3,"name":"Cash \"petty\" ü","parent":"100","type":"asset"}"#
    );
    let bare = Account {
        parent: None,
        currency: None,
        account_type: AccountType::Expense,
        ..account
    };
    assert_eq!(
        account_created(&bare, AT),
        r#"{"code":"1000","created_at":"2024-05-06T07:08:09.123456789Z","currency":null,"id":3,"name":"Cash \"petty\" ü","parent":null,"type":"expense"}"#
    );
}

const ENTRY_7: &str = r#"{"id":7,"date":"2024-05-06","description":"Rent \"May\" – Büro","reference":"INV-1","reverses":null,"created_at":"2024-05-06T07:08:09.123456789Z","created_by":"user:u1","postings":[{"account":"1000","amount":"-12.50","currency":"EUR"},{"account":"6000","amount":"12.50","currency":"EUR"},{"account":"6001","amount":"500","currency":"JPY"}]}"#;

#[test]
fn entries_posted_is_pinned() {
    let entries = [entry(7, None), entry(8, None)];
    let payload = EntriesPosted {
        entries: entries.iter().map(|e| EntryRecord::new(e, AT)).collect(),
    };
    let entry_8 = ENTRY_7.replacen(r#""id":7"#, r#""id":8"#, 1);
    assert_eq!(
        to_json(&payload).unwrap(),
        format!(r#"{{"entries":[{ENTRY_7},{entry_8}]}}"#)
    );
}

#[test]
fn entry_reversed_is_pinned() {
    let reversal = entry(9, Some(7));
    let payload = EntryReversed {
        reverses: 7,
        entry: EntryRecord::new(&reversal, AT),
    };
    assert_eq!(
        to_json(&payload).unwrap(),
        r#"{"reverses":7,"entry":{"id":9,"date":"2024-05-06","description":"Rent \"May\" – Büro","reference":null,"reverses":7,"created_at":"2024-05-06T07:08:09.123456789Z","created_by":"user:u1","postings":[{"account":"1000","amount":"-12.50","currency":"EUR"},{"account":"6000","amount":"12.50","currency":"EUR"},{"account":"6001","amount":"500","currency":"JPY"}]}}"#
    );
}

#[test]
fn file_added_is_pinned() {
    let file = FileRecord {
        id: 4,
        address: "ab".repeat(32),
        name: "receipt \"1\".pdf".into(),
        content_type: "application/pdf".into(),
        size: 12_345,
        entry_id: Some(7),
        created_at: datetime!(2024-05-06 07:08:09 UTC),
        created_by: "api_key:k1".into(),
    };
    assert_eq!(file_records::FILE_ADDED, "file_added");
    assert_eq!(
        file_records::payload(&file, AT),
        format!(
            r#"{{"address":"{}","content_type":"application/pdf","created_at":"2024-05-06T07:08:09.123456789Z","created_by":"api_key:k1","entry_id":7,"id":4,"name":"receipt \"1\".pdf","size":12345}}"#,
            "ab".repeat(32)
        )
    );
    let unlinked = FileRecord {
        entry_id: None,
        ..file
    };
    assert!(file_records::payload(&unlinked, AT).contains(r#""entry_id":null,"#));
}
