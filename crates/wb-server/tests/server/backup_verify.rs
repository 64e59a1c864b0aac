//! Backup verification: a shipped company restores into a scratch store whose
//! books match the source's at the shipped point (even while the source keeps
//! writing), nothing of the scratch restore remains, a tampered segment fails
//! the company it belongs to, and the scheduled job raises one alert per company.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use time::macros::date;
use time::{Duration, OffsetDateTime};
use wb_core::{Action, EntryDraft, NewAccount, PostingDraft};
use wb_crypto::MasterKey;
use wb_server::backup_verify::{self, Verification};
use wb_server::jobs::forwarder::{forward_once, ForwarderState};
use wb_server::jobs::shipper::{ship_once, ShipperState};
use wb_server::jobs::verifier;
use wb_server::{Platform, SystemClock};
use wb_store::{Actor, TenantStore, WriteContext};

fn ctx() -> WriteContext {
    WriteContext {
        actor: Actor {
            id: "user:test".into(),
            auth: "session".into(),
            client: None,
            request_id: None,
        },
        at: OffsetDateTime::now_utc() - Duration::hours(1),
    }
}

fn sale(day: u8, cents: i64) -> EntryDraft {
    let amount = format!("{}.{:02}", cents / 100, cents % 100);
    EntryDraft {
        date: time::Date::from_calendar_date(2026, time::Month::May, day).unwrap(),
        description: format!("Sale on day {day}"),
        reference: Some(format!("inv-{day}")),
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
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    data: PathBuf,
    platform: Platform,
    state: ShipperState,
}

fn open() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let platform = Platform::open_embedded(
        &data,
        MasterKey::generate(),
        Arc::new(SystemClock),
        time::Duration::hours(12),
    )
    .unwrap();
    Fixture {
        _dir: dir,
        data,
        platform,
        state: ShipperState::default(),
    }
}

/// A company with accounts, entries in several segments and a reversal, shipped.
async fn shipped_company(f: &mut Fixture, name: &str) -> (String, Arc<dyn TenantStore>) {
    let company = f.platform.create_company(name, None).await.unwrap();
    let store = f.platform.tenant(&company.id).await.unwrap();
    for (code, account, kind) in [("1000", "Cash", "asset"), ("4000", "Sales", "income")] {
        let new = NewAccount::validate(code, account, kind, None, None).unwrap();
        store.create_account(new, ctx()).await.unwrap();
    }
    ship_once(&f.platform, &mut f.state).await.unwrap();
    for day in 1..=4u8 {
        store
            .post_entries(
                vec![sale(day, 1000 + i64::from(day)), sale(day + 10, 250)],
                None,
                ctx(),
            )
            .await
            .unwrap();
        ship_once(&f.platform, &mut f.state).await.unwrap();
    }
    store
        .reverse_entry(2, date!(2026 - 05 - 20), Some("Refund".into()), ctx())
        .await
        .unwrap();
    ship_once(&f.platform, &mut f.state).await.unwrap();
    (company.id, store)
}

fn segment_files(data: &Path, company: &str) -> Vec<PathBuf> {
    let dir = data.join("objects/companies").join(company).join("journal");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

fn company_files(data: &Path) -> usize {
    std::fs::read_dir(data.join("companies")).unwrap().count()
}

fn of<'a>(results: &'a [Verification], id: &str) -> &'a Verification {
    results
        .iter()
        .find(|v| v.company_id == id)
        .unwrap_or_else(|| panic!("no verification of {id} in {results:?}"))
}

#[tokio::test]
async fn a_shipped_company_verifies_and_leaves_nothing_behind() {
    let mut f = open();
    let (acme, store) = shipped_company(&mut f, "Acme").await;
    let (globex, _) = shipped_company(&mut f, "Globex").await;
    let companies = f.platform.control.companies().await.unwrap().len();
    let files = company_files(&f.data);

    let results = backup_verify::verify(&f.platform, None).await.unwrap();
    assert_eq!(results.len(), 2);
    for id in [&acme, &globex] {
        let v = of(&results, id);
        assert!(v.verified(), "{v:?}");
        // 2 accounts, 4 batches, 1 reversal.
        assert_eq!((v.seq, v.records, v.source_seq), (7, 7, 7));
        assert_eq!(v.line(), format!("ok {id} at seq 7"));
        assert!(v.checksum.as_deref().unwrap().starts_with("sha256:"));
    }
    // The same books give the same checksum (ids, times and all).
    let again = backup_verify::verify(&f.platform, Some(&acme))
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].checksum, of(&results, &acme).checksum);

    // Nothing of the scratch restores remains: no company, no store, no
    // collected audit source.
    assert_eq!(
        f.platform.control.companies().await.unwrap().len(),
        companies
    );
    assert_eq!(company_files(&f.data), files, "scratch stores deleted");
    let mut forwarder = ForwarderState::default();
    forward_once(&f.platform, &mut forwarder).await.unwrap();
    let sources = f.platform.control.central_sources().await.unwrap();
    assert_eq!(
        sources.len(),
        3,
        "control and the two companies only: {sources:?}"
    );
    // Even while a scratch store is open, its audit events are not collected.
    let (scratch, scratch_store) = f.platform.stage_company("Scratch").await.unwrap();
    let new = NewAccount::validate("1000", "Cash", "asset", None, None).unwrap();
    scratch_store.create_account(new, ctx()).await.unwrap();
    forward_once(&f.platform, &mut forwarder).await.unwrap();
    drop(scratch_store);
    f.platform.tenants.discard(&scratch.id).await;
    let sources = f.platform.control.central_sources().await.unwrap();
    assert_eq!(sources.len(), 3, "no scratch source: {sources:?}");

    // The source goes on writing (and reverses an entry the shipped point
    // knows unreversed): the backup still verifies at the shipped point.
    store
        .post_entries(vec![sale(28, 999)], None, ctx())
        .await
        .unwrap();
    store
        .reverse_entry(1, date!(2026 - 05 - 29), None, ctx())
        .await
        .unwrap();
    let behind = backup_verify::verify(&f.platform, Some(&acme))
        .await
        .unwrap();
    assert!(behind[0].verified(), "{:?}", behind[0]);
    assert_eq!((behind[0].seq, behind[0].source_seq), (7, 9));
    assert_eq!(behind[0].checksum, of(&results, &acme).checksum);

    // Once shipped, it verifies at the new head.
    ship_once(&f.platform, &mut f.state).await.unwrap();
    let caught_up = backup_verify::verify(&f.platform, Some(&acme))
        .await
        .unwrap();
    assert!(caught_up[0].verified(), "{:?}", caught_up[0]);
    assert_eq!(caught_up[0].seq, 9);
    assert_ne!(caught_up[0].checksum, of(&results, &acme).checksum);

    // A company with nothing shipped yet verifies at record 0.
    let fresh = f.platform.create_company("Fresh", None).await.unwrap();
    let fresh_store = f.platform.tenant(&fresh.id).await.unwrap();
    let new = NewAccount::validate("1000", "Cash", "asset", None, None).unwrap();
    fresh_store.create_account(new, ctx()).await.unwrap();
    let unshipped = backup_verify::verify(&f.platform, Some(&fresh.id))
        .await
        .unwrap();
    assert!(unshipped[0].verified(), "{:?}", unshipped[0]);
    assert_eq!((unshipped[0].seq, unshipped[0].source_seq), (0, 1));

    let err = backup_verify::verify(&f.platform, Some("no-such-company"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no-such-company"), "{err}");
}

#[tokio::test]
async fn a_tampered_segment_fails_its_company_and_raises_one_alert() {
    let mut f = open();
    let (acme, _) = shipped_company(&mut f, "Acme").await;
    let (globex, _) = shipped_company(&mut f, "Globex").await;
    let companies = f.platform.control.companies().await.unwrap().len();
    let files = company_files(&f.data);

    let segments = segment_files(&f.data, &acme);
    assert!(segments.len() >= 3, "{segments:?}");
    let middle = &segments[segments.len() / 2];
    let mut bytes = std::fs::read(middle).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(middle, &bytes).unwrap();

    let results = backup_verify::verify(&f.platform, None).await.unwrap();
    let bad = of(&results, &acme);
    assert!(!bad.verified());
    let line = bad.line();
    assert!(line.starts_with(&format!("FAILED {acme}: ")), "{line}");
    assert!(line.contains("fails authentication"), "{line}");
    assert!(!line.contains('\n'), "{line}");
    assert!(
        of(&results, &globex).verified(),
        "the other company is fine"
    );
    assert_eq!(
        f.platform.control.companies().await.unwrap().len(),
        companies
    );
    assert_eq!(company_files(&f.data), files, "no half-restored store left");

    // The scheduled job's round: audited, and one alert for the company.
    let round = verifier::verify_once(&f.platform).await.unwrap().unwrap();
    assert_eq!(round.iter().filter(|v| !v.verified()).count(), 1);
    let alerts = |all: Vec<wb_store::Alert>| -> Vec<wb_store::Alert> {
        all.into_iter()
            .filter(|a| a.rule == verifier::RULE)
            .collect()
    };
    let raised = alerts(f.platform.alerts.list(None, 100).await.unwrap());
    assert_eq!(raised.len(), 1, "{raised:?}");
    assert_eq!(raised[0].company_id.as_deref(), Some(acme.as_str()));
    assert_eq!(raised[0].severity, wb_core::monitor::Severity::High);
    assert!(raised[0].detail.contains("fails authentication"));

    // Again: the same alert, bumped, not a second one.
    verifier::verify_once(&f.platform).await.unwrap().unwrap();
    let raised = alerts(f.platform.alerts.list(None, 100).await.unwrap());
    assert_eq!(raised.len(), 1, "{raised:?}");
    assert_eq!(raised[0].count, 2);

    let trail = f
        .platform
        .control
        .audit_events(None, 0, 1000)
        .await
        .unwrap();
    let verifications: Vec<_> = trail
        .iter()
        .filter(|e| e.action == Action::BackupVerify.as_str())
        .collect();
    assert_eq!(verifications.len(), 4, "two rounds of two companies");
    let failures: Vec<_> = verifications
        .iter()
        .filter(|e| e.outcome == "failure")
        .collect();
    assert_eq!(failures.len(), 2);
    assert!(failures
        .iter()
        .all(|e| e.company_id.as_deref() == Some(acme.as_str())));

    // Restoring the segment makes the company verify again.
    bytes[at] ^= 0x40;
    std::fs::write(middle, &bytes).unwrap();
    let fixed = backup_verify::verify(&f.platform, Some(&acme))
        .await
        .unwrap();
    assert!(fixed[0].verified(), "{:?}", fixed[0]);
}
