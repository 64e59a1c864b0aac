//! `workbooks backup verify` through the built binary: a line per company, JSON,
//! exit status, and a source whose stored books no longer match its journal.

use crate::common;

use std::path::Path;

use wb_core::{EntryDraft, NewAccount, PostingDraft};
use wb_crypto::MasterKey;
use wb_server::jobs::shipper::{ship_once, ShipperState};
use wb_store::sqlite::{open_encrypted, OpenMode};
use wb_store::{Actor, WriteContext};

use common::{fails_with, ok_json, open, workbooks};

fn ctx() -> WriteContext {
    WriteContext {
        actor: Actor::system("test"),
        at: time::OffsetDateTime::now_utc(),
    }
}

/// A company with two accounts and three entries (journal records 1..=5), shipped.
async fn shipped(data: &Path, name: &str) -> String {
    let platform = open(data);
    let company = platform.create_company(name, None).await.unwrap();
    let store = platform.tenant(&company.id).await.unwrap();
    for (code, account, kind) in [("1000", "Cash", "asset"), ("4000", "Sales", "income")] {
        let new = NewAccount::validate(code, account, kind, None, None).unwrap();
        store.create_account(new, ctx()).await.unwrap();
    }
    let mut state = ShipperState::default();
    for n in 1..=3 {
        let draft = EntryDraft {
            date: time::macros::date!(2026 - 04 - 01),
            description: format!("Sale {n}"),
            reference: None,
            postings: vec![
                PostingDraft {
                    account: "1000".into(),
                    amount: format!("{n}.00"),
                    currency: "EUR".into(),
                },
                PostingDraft {
                    account: "4000".into(),
                    amount: format!("-{n}.00"),
                    currency: "EUR".into(),
                },
            ],
        };
        store.post_entries(vec![draft], None, ctx()).await.unwrap();
        ship_once(&platform, &mut state).await.unwrap();
    }
    company.id
}

fn company_count(data: &Path) -> usize {
    ok_json(&workbooks(&["company", "list", "--json"], data))
        .as_array()
        .map(Vec::len)
        .unwrap_or_else(|| panic!("company list is not an array"))
}

/// Rewrites an entry's description directly in the company's database, as
/// someone with the key and the file could, bypassing the journal.
async fn tamper_books(data: &Path, company: &str) {
    let platform = open(data);
    let record = platform.control.company(company).await.unwrap().unwrap();
    let master = MasterKey::load(&data.join("master.key")).unwrap();
    let key = master.unwrap_key(&record.wrapped_dek, company).unwrap();
    drop(platform);
    let db = open_encrypted(
        &data.join("companies").join(format!("{company}.db")),
        &key,
        OpenMode::Existing,
    )
    .unwrap();
    db.execute_batch(
        "DROP TRIGGER IF EXISTS entries_immutable;
         UPDATE entries SET description = 'Not what was journaled' WHERE id = 2;",
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_verify_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(workbooks(&["init"], &data).status.success());
    let acme = shipped(&data, "Acme").await;
    let globex = shipped(&data, "Globex").await;
    let companies = company_count(&data);

    let out = workbooks(&["backup", "verify"], &data);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}");
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort();
    let mut expected = vec![
        format!("ok {acme} at seq 5"),
        format!("ok {globex} at seq 5"),
    ];
    expected.sort();
    assert_eq!(lines, expected);
    assert_eq!(company_count(&data), companies, "no scratch company left");

    let json = ok_json(&workbooks(
        &["backup", "verify", "--company", &acme, "--json"],
        &data,
    ));
    assert_eq!(json["verified"], true, "{json}");
    let list = json["companies"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["company_id"], acme.as_str());
    assert_eq!(list[0]["seq"], 5);
    assert!(list[0]["checksum"].as_str().unwrap().starts_with("sha256:"));

    fails_with(
        &workbooks(&["backup", "verify", "--company", "nope"], &data),
        "no company nope",
    );

    // The source's books no longer match what was journaled and shipped.
    tamper_books(&data, &acme).await;
    let out = workbooks(&["backup", "verify"], &data);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!out.status.success(), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with(&format!("FAILED {acme}: "))
                && l.contains("differ")
                && l.contains("entries")),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l == format!("ok {globex} at seq 5")),
        "{text}"
    );
    fails_with(&out, "does not verify");
    assert_eq!(company_count(&data), companies, "no scratch company left");
}
