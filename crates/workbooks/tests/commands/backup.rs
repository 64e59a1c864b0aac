//! `workbooks backup status` and `workbooks restore` through the built binary:
//! JSON output, the restored company's books, and one-line failures.

use crate::common;

use std::path::{Path, PathBuf};

use wb_core::Action;
use wb_core::{EntryDraft, NewAccount, PostingDraft};
use wb_server::jobs::shipper::{ship_once, ShipperState};
use wb_store::{Actor, WriteContext};

use common::{fails_with, ok_json, open, stderr_line, workbooks};

fn ctx() -> WriteContext {
    WriteContext {
        actor: Actor::system("test"),
        at: time::OffsetDateTime::now_utc(),
    }
}

/// A company with two accounts and `entries` entries, shipped in one segment
/// per round; returns its id.
pub(crate) async fn books(data: &Path, rounds: usize) -> String {
    let platform = open(data);
    let company = platform.create_company("Acme", None).await.unwrap();
    let store = platform.tenant(&company.id).await.unwrap();
    for (code, name, kind) in [("1000", "Cash", "asset"), ("4000", "Sales", "income")] {
        let account = NewAccount::validate(code, name, kind, None, None).unwrap();
        store.create_account(account, ctx()).await.unwrap();
    }
    let mut state = ShipperState::default();
    ship_once(&platform, &mut state).await.unwrap();
    for n in 0..rounds {
        let amount = format!("{}.00", n + 1);
        let draft = EntryDraft {
            date: time::macros::date!(2026 - 04 - 01),
            description: format!("Sale {n}"),
            reference: None,
            postings: vec![
                PostingDraft {
                    account: "1000".into(),
                    amount: amount.clone(),
                    currency: "EUR".into(),
                },
                PostingDraft {
                    account: "4000".into(),
                    amount: format!("-{amount}"),
                    currency: "EUR".into(),
                },
            ],
        };
        store.post_entries(vec![draft], None, ctx()).await.unwrap();
        ship_once(&platform, &mut state).await.unwrap();
    }
    company.id
}

fn segments(data: &Path, company: &str) -> Vec<PathBuf> {
    let dir = data.join("objects/companies").join(company).join("journal");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

fn company_count(data: &Path) -> usize {
    ok_json(&workbooks(&["company", "list", "--json"], data))
        .as_array()
        .map(Vec::len)
        .unwrap_or_else(|| panic!("company list is not an array"))
}

#[tokio::test(flavor = "multi_thread")]
async fn status_and_restore_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(workbooks(&["init"], &data).status.success());
    let source = books(&data, 3).await;

    let status = ok_json(&workbooks(&["backup", "status", "--json"], &data));
    let row = status
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["company_id"] == source.as_str())
        .unwrap()
        .clone();
    assert_eq!(row["journal_seq"], 5);
    assert_eq!(row["shipped_seq"], 5);
    assert_eq!(row["lag_records"], 0);
    let text = workbooks(&["backup", "status"], &data);
    assert!(text.status.success());
    assert!(String::from_utf8_lossy(&text.stdout).contains(&source));

    let restored = ok_json(&workbooks(
        &["restore", "--company", &source, "--latest", "--json"],
        &data,
    ));
    let id = restored["id"].as_str().unwrap().to_string();
    assert_ne!(id, source);
    assert_eq!(restored["last_seq"], 5);
    {
        let platform = open(&data);
        let a = platform.tenant(&source).await.unwrap();
        let b = platform.tenant(&id).await.unwrap();
        let day = time::macros::date!(2026 - 12 - 31);
        assert_eq!(
            a.balances_as_of(day).await.unwrap(),
            b.balances_as_of(day).await.unwrap()
        );
        assert_eq!(b.stats().await.unwrap().entries, 3);
    }

    let to_seq = ok_json(&workbooks(
        &["restore", "--company", &source, "--to-seq", "3", "--json"],
        &data,
    ));
    assert_eq!(to_seq["last_seq"], 3);
    let before = company_count(&data);

    let no_target = workbooks(&["restore", "--company", &source, "--json"], &data);
    assert!(!no_target.status.success());
    assert!(stderr_line(&no_target).contains("--latest"));
    fails_with(
        &workbooks(&["restore", "--company", "nope", "--latest"], &data),
        "no company nope",
    );
    fails_with(
        &workbooks(
            &["restore", "--company", &source, "--to", "yesterday"],
            &data,
        ),
        "not an RFC 3339 time",
    );

    let files = segments(&data, &source);
    let middle = files[2].clone();
    let original = std::fs::read(&middle).unwrap();
    let mut flipped = original.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x80;
    std::fs::write(&middle, &flipped).unwrap();
    fails_with(
        &workbooks(&["restore", "--company", &source, "--latest"], &data),
        "fails authentication",
    );
    assert_eq!(company_count(&data), before);

    std::fs::remove_file(&middle).unwrap();
    fails_with(
        &workbooks(&["restore", "--company", &source, "--latest"], &data),
        "journal segment missing: records 4..4",
    );
    assert_eq!(company_count(&data), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_prune_and_in_place_restore_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(workbooks(&["init"], &data).status.success());
    let source = books(&data, 3).await;

    let taken = ok_json(&workbooks(
        &["backup", "snapshot", "--company", &source, "--json"],
        &data,
    ));
    assert_eq!(taken[0]["seq"], 5);
    let again = ok_json(&workbooks(
        &["backup", "snapshot", "--company", &source, "--json"],
        &data,
    ));
    assert!(again[0]["seq"].is_null(), "nothing new: {again}");
    let status = ok_json(&workbooks(&["backup", "status", "--json"], &data));
    let row = status
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["company_id"] == source.as_str())
        .unwrap()
        .clone();
    assert_eq!(row["snapshot_seq"], 5);

    // A restore now starts from the snapshot.
    let restored = ok_json(&workbooks(
        &["restore", "--company", &source, "--latest", "--json"],
        &data,
    ));
    assert_eq!(
        (restored["snapshot"].clone(), restored["records"].clone()),
        (5.into(), 0.into())
    );

    // Default retention: everything is younger than 7 days, nothing goes.
    let pruned = ok_json(&workbooks(
        &["backup", "prune", "--company", &source, "--json"],
        &data,
    ));
    assert_eq!(pruned[0]["segments_deleted"], 0);
    assert_eq!(pruned[0]["snapshots_kept"], 1);
    // A bad policy is refused with one line.
    let config = dir.path().join("workbooks.toml");
    std::fs::write(&config, "pitr-days = 0\n").unwrap();
    fails_with(
        &workbooks(
            &["backup", "prune", "--config", config.to_str().unwrap()],
            &data,
        ),
        "pitr-days must be between 1 and 3650",
    );

    // In place: without a terminal and without --yes, refused and unchanged.
    fails_with(
        &workbooks(
            &[
                "restore",
                "--company",
                &source,
                "--to-seq",
                "3",
                "--in-place",
            ],
            &data,
        ),
        "needs confirmation",
    );
    let reverted = ok_json(&workbooks(
        &[
            "restore",
            "--company",
            &source,
            "--to-seq",
            "3",
            "--in-place",
            "--yes",
            "--json",
        ],
        &data,
    ));
    assert_eq!(reverted["id"], source.as_str());
    assert_eq!(
        (reverted["to_seq"].clone(), reverted["reversed"].clone()),
        (3.into(), 2.into())
    );
    let platform = open(&data);
    let store = platform.tenant(&source).await.unwrap();
    let day = time::macros::date!(2026 - 12 - 31);
    let balances: Vec<_> = store
        .balances_as_of(day)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.amount != 0)
        .collect();
    assert_eq!(
        balances.len(),
        2,
        "only the first sale's balances remain: {balances:?}"
    );
    assert!(balances.iter().all(|r| r.amount.abs() == 100));
}

#[tokio::test(flavor = "multi_thread")]
async fn disaster_recovery_through_the_cli_keeps_every_audit_chain_verifiable() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(workbooks(&["init"], &data).status.success());
    let source = books(&data, 3).await;
    {
        let platform = open(&data);
        // The shipper ships open companies (a server opens every company at start).
        platform.tenant(&source).await.unwrap();
        wb_server::backup::audit_trail::ship_once(
            &platform,
            &mut wb_server::backup::audit_trail::AuditShipperState::default(),
        )
        .await
        .unwrap();
        let mut state = wb_server::dr::ConfigBackupState::default();
        assert!(wb_server::dr::backup_config_once(&platform, &mut state)
            .await
            .unwrap());
    }
    let fresh = dir.path().join("fresh");
    let objects = format!("file://{}", data.join("objects").display());
    let key_file = data.join("master.key");
    let report = ok_json(&workbooks(
        &[
            "dr",
            "restore",
            "--from",
            &objects,
            "--master-key-file",
            key_file.to_str().unwrap(),
            "--json",
        ],
        &fresh,
    ));
    let company = report["companies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["company_id"] == source.as_str())
        .unwrap()
        .clone();
    assert_eq!(company["restored"], true, "{report}");
    let platform = wb_server::Platform::open_embedded(
        &fresh,
        wb_crypto::MasterKey::load(&key_file).unwrap(),
        std::sync::Arc::new(wb_server::SystemClock),
        time::Duration::hours(1),
    )
    .unwrap();
    // What a running server does within seconds: copy the chains into the
    // central collection and sign checkpoints over them.
    platform.register_node().await.unwrap();
    let mut forwarder = wb_server::jobs::forwarder::ForwarderState::default();
    wb_server::jobs::forwarder::catch_up_all(&platform, &mut forwarder)
        .await
        .unwrap();
    wb_server::jobs::forwarder::checkpoint_once(&platform, &mut forwarder)
        .await
        .unwrap();
    let verify = workbooks(
        &[
            "audit",
            "verify",
            "--master-key-file",
            key_file.to_str().unwrap(),
            "--object-store",
            &objects,
        ],
        &fresh,
    );
    assert!(
        verify.status.success(),
        "audit verify after DR: {}",
        stderr_line(&verify)
    );
    let trail = platform
        .tenant(&source)
        .await
        .unwrap()
        .audit_events(0, 1000)
        .await
        .unwrap();
    assert!(
        trail
            .iter()
            .filter(|e| e.action == Action::EntryPost.as_str())
            .count()
            == 3,
        "the company's own trail came back: {trail:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_server_owns_its_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(workbooks(&["init"], &data).status.success());
    let source = books(&data, 2).await;
    let (server, _url) = common::spawn_serve(&data);
    // A second server on the same embedded data would run a second writer.
    fails_with(
        &workbooks(&["serve", "--listen", "127.0.0.1:0"], &data),
        "a Work-books server is running",
    );
    // So would an in-place restore: refused, books unchanged.
    fails_with(
        &workbooks(
            &[
                "restore",
                "--company",
                &source,
                "--to-seq",
                "2",
                "--in-place",
                "--yes",
            ],
            &data,
        ),
        "needs the server stopped",
    );
    drop(server);
    let reverted = ok_json(&workbooks(
        &[
            "restore",
            "--company",
            &source,
            "--to-seq",
            "2",
            "--in-place",
            "--yes",
            "--json",
        ],
        &data,
    ));
    assert_eq!(reverted["reversed"], 2);
}
