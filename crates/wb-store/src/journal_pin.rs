//! Pins the change-journal payload of every kind byte for byte, as the
//! writers encoded it before the format moved to `journal.rs`: segments in
//! object stores and journals in existing databases hold these bytes, and
//! their hashes cover them, so the encoding must never drift.

use time::macros::{date, datetime};
use wb_core::{AccountType, Currency, Posting};

use crate::journal::{self, account_created, file_added, SegmentRecord};
use crate::model::{Account, Entry, FileRecord, JournalRecord, ReplayedContent};

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
    let entry_8 = ENTRY_7.replacen(r#""id":7"#, r#""id":8"#, 1);
    assert_eq!(
        journal::entries_posted(&entries, AT).unwrap(),
        format!(r#"{{"entries":[{ENTRY_7},{entry_8}]}}"#)
    );
}

#[test]
fn entry_reversed_is_pinned() {
    let reversal = entry(9, Some(7));
    assert_eq!(
        journal::entry_reversed(7, &reversal, AT).unwrap(),
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
    assert_eq!(journal::FILE_ADDED, "file_added");
    assert_eq!(
        file_added(&file, AT),
        format!(
            r#"{{"address":"{}","content_type":"application/pdf","created_at":"2024-05-06T07:08:09.123456789Z","created_by":"api_key:k1","entry_id":7,"id":4,"name":"receipt \"1\".pdf","size":12345}}"#,
            "ab".repeat(32)
        )
    );
    let unlinked = FileRecord {
        entry_id: None,
        ..file
    };
    assert!(file_added(&unlinked, AT).contains(r#""entry_id":null,"#));
}

#[test]
fn kinds_are_pinned() {
    assert_eq!(journal::ACCOUNT_CREATED, "account_created");
    assert_eq!(journal::ENTRIES_POSTED, "entries_posted");
    assert_eq!(journal::ENTRY_REVERSED, "entry_reversed");
}

/// The JSON line of a segment (also snapshots' and exports' `journal.jsonl`).
#[test]
fn segment_line_is_pinned() {
    let record = JournalRecord {
        seq: 12,
        at: datetime!(2024-05-06 07:08:09.5 UTC),
        kind: "account_created".into(),
        payload: r#"{"id":1}"#.into(),
        prev_hash: "00".into(),
        hash: "ff".into(),
    };
    let line = serde_json::to_string(&SegmentRecord::from(&record)).unwrap();
    assert_eq!(
        line,
        r#"{"seq":12,"at":"2024-05-06T07:08:09.5Z","kind":"account_created","payload":"{\"id\":1}","prev_hash":"00","hash":"ff"}"#
    );
    let back: SegmentRecord = serde_json::from_str(&line).unwrap();
    assert_eq!(back, SegmentRecord::from(&record));
}

/// Every kind decodes back to what was encoded, and records written before
/// entries carried `created_at` take the record's time.
#[test]
fn payloads_decode_for_replay() {
    let account = Account {
        id: 3,
        code: "1000".into(),
        name: "Cash".into(),
        account_type: AccountType::Asset,
        parent: None,
        currency: Some(eur()),
        created_at: datetime!(2024-05-06 07:08:09 UTC),
    };
    let payload = account_created(&account, AT);
    match journal::replay_content("account_created", &payload, AT).unwrap() {
        ReplayedContent::Account {
            id,
            account,
            created_at,
        } => {
            assert_eq!((id, account.code.as_str()), (3, "1000"));
            assert_eq!(created_at, datetime!(2024-05-06 07:08:09.123456789 UTC));
        }
        _ => panic!("not an account"),
    }
    let reversal = entry(9, Some(7));
    let payload = journal::entry_reversed(7, &reversal, AT).unwrap();
    match journal::replay_content("entry_reversed", &payload, AT).unwrap() {
        ReplayedContent::Entries(entries) => {
            assert_eq!(entries.len(), 1);
            assert_eq!((entries[0].id, entries[0].reverses), (9, Some(7)));
            assert_eq!(entries[0].draft.postings[0].amount, "-12.50");
        }
        _ => panic!("not entries"),
    }
    let old = r#"{"entries":[{"id":1,"date":"2024-01-02","description":"d","reference":null,"created_by":"system","postings":[]}]}"#;
    match journal::replay_content("entries_posted", old, "2024-01-02T03:04:05Z").unwrap() {
        ReplayedContent::Entries(entries) => {
            assert_eq!(entries[0].created_at, datetime!(2024-01-02 03:04:05 UTC));
            assert_eq!(entries[0].reverses, None);
        }
        _ => panic!("not entries"),
    }
    assert_eq!(
        journal::entry_ids("entry_reversed", &payload).unwrap(),
        Some(vec![9])
    );
    assert_eq!(journal::entry_ids("file_added", "not json").unwrap(), None);
    assert!(matches!(
        journal::replay_content("entries_deleted", "{}", AT),
        Err(journal::JournalError::UnknownKind(_))
    ));
}
