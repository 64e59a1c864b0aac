//! Configuration backups and disaster recovery: a fresh node with only the
//! master key and the object store gets back every company (under its own id,
//! to its last shipped record), every user, membership and API key.

use std::path::Path;
use std::sync::Arc;

use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStoreExt;
use time::macros::date;
use time::{Duration, OffsetDateTime};
use wb_core::Action;
use wb_core::{EntryDraft, NewAccount, PostingDraft, Role};
use wb_crypto::{MasterKey, Secret};
use wb_server::dr::{self, ConfigBackupState};
use wb_server::jobs::shipper::{ship_once, ShipperState};
use wb_server::{Platform, SystemClock};
use wb_store::{Actor, EntryPage, TenantStore, WriteContext};

const PASSPHRASE: &str = "quasar marmot plinth 47 ferrous kettle";

fn platform(dir: &Path, objects: &Path, master: &MasterKey) -> Platform {
    let mut platform = Platform::open_embedded(
        dir,
        master.clone(),
        Arc::new(SystemClock),
        Duration::hours(12),
    )
    .expect("open platform");
    platform.objects = Arc::new(LocalFileSystem::new_with_prefix(objects).expect("objects"));
    platform
}

fn ctx() -> WriteContext {
    WriteContext {
        actor: Actor::system("test"),
        at: OffsetDateTime::now_utc(),
    }
}

async fn books(store: &Arc<dyn TenantStore>) -> (Vec<String>, Vec<String>) {
    let accounts = store
        .accounts()
        .await
        .unwrap()
        .into_iter()
        .map(|a| format!("{} {} {}", a.id, a.code, a.name))
        .collect();
    let entries = store
        .entries(EntryPage {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|e| {
            format!(
                "{} {} {} {:?} {:?}",
                e.id, e.date, e.description, e.postings, e.reversed_by
            )
        })
        .collect();
    (accounts, entries)
}

async fn company_with_books(p: &Platform, name: &str, email: &str, entries: usize) -> String {
    let (company, _) = p
        .signup(
            name,
            email,
            &Secret::new(PASSPHRASE.into()),
            Actor::system("test"),
        )
        .await
        .unwrap();
    let store = p.tenant(&company.id).await.unwrap();
    for (code, kind) in [("1000", "asset"), ("4000", "income")] {
        store
            .create_account(
                NewAccount::validate(code, &format!("Account {code}"), kind, None, None).unwrap(),
                ctx(),
            )
            .await
            .unwrap();
    }
    for i in 0..entries {
        let draft = EntryDraft {
            date: date!(2026 - 05 - 01),
            description: format!("{name} sale {i}"),
            reference: None,
            postings: vec![
                PostingDraft {
                    account: "1000".into(),
                    amount: format!("{}.00", i + 1),
                    currency: "USD".into(),
                },
                PostingDraft {
                    account: "4000".into(),
                    amount: format!("-{}.00", i + 1),
                    currency: "USD".into(),
                },
            ],
        };
        store.post_entries(vec![draft], None, ctx()).await.unwrap();
    }
    store
        .reverse_entry(1, date!(2026 - 05 - 02), None, ctx())
        .await
        .unwrap();
    company.id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_node_restores_everything_from_the_object_store() {
    let objects = tempfile::tempdir().unwrap();
    let old_dir = tempfile::tempdir().unwrap();
    let master = MasterKey::generate();
    let old = platform(old_dir.path(), objects.path(), &master);

    let a = company_with_books(&old, "Alpha Ltd", "alpha@example.com", 12).await;
    let b = company_with_books(&old, "Beta Ltd", "beta@example.com", 5).await;
    let shredded = company_with_books(&old, "Gone Ltd", "gone@example.com", 3).await;
    let key = old
        .create_api_key(
            &a,
            Role::Owner,
            "ci",
            Role::Viewer,
            Some(30),
            Actor::system("test"),
        )
        .await
        .unwrap();
    let schedule = wb_store::ExportSchedule {
        company_id: a.clone(),
        id: "schedule-1".into(),
        destination: "s3://alpha-backups/books?endpoint=https://s3.example&region=eu-west-1".into(),
        recipient: "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p".into(),
        every_hours: 24,
        sealed_credentials: Some(vec![1, 2, 3, 4]),
        created_at: OffsetDateTime::now_utc(),
        created_by: "user:test".into(),
        next_push_at: OffsetDateTime::now_utc(),
        last_push_at: None,
        last_push_status: None,
        last_error: None,
        last_object: None,
        failures: 0,
    };
    let event = wb_store::AuditEvent {
        at: OffsetDateTime::now_utc(),
        actor: Actor::system("test"),
        company_id: Some(a.clone()),
        action: Action::ExportScheduleSet,
        target: None,
        outcome: wb_store::Outcome::Success,
        detail: None,
    };
    old.control
        .put_export_schedule(&schedule, &event)
        .await
        .unwrap();
    // And a security policy: an allowlist must not vanish in a disaster.
    let policy = wb_core::security_policy::SecurityPolicy {
        ip_allowlist: vec![wb_core::security_policy::parse_block("198.51.100.0/24").unwrap()],
        session_ttl_minutes: Some(120),
        ..Default::default()
    };
    old.control
        .put_company_policy(
            &a,
            &policy,
            &wb_store::AuditEvent {
                action: Action::SecurityPolicySet,
                ..event.clone()
            },
        )
        .await
        .unwrap();
    // And a staff access grant with its whole history: a company's access
    // transparency must not vanish in a disaster.
    let asked = time::macros::datetime!(2026-11-02 09:30:00.250 UTC);
    let grant = wb_core::grants::Grant {
        id: "grt_00112233445566778899".into(),
        company_id: a.clone(),
        requested_by: "staff:s1".into(),
        reason: "Ticket 4: reconcile a bank import".into(),
        scope: wb_core::grants::GrantScope::BooksRead,
        duration: time::Duration::minutes(60),
        ticket: Some("SUP-4".into()),
        legal_mandate: None,
        requested_at: asked,
        starts_at: None,
        company_approval: Some(wb_core::grants::Decision {
            by: "user:u1".into(),
            at: asked + time::Duration::minutes(3),
        }),
        management_approval: Some(wb_core::grants::Decision {
            by: "staff:m1".into(),
            at: asked + time::Duration::minutes(7),
        }),
        ending: Some(wb_core::grants::Ending {
            kind: wb_core::grants::EndKind::Revoked,
            side: wb_core::grants::Side::Company,
            decision: wb_core::grants::Decision {
                by: "user:u1".into(),
                at: asked + time::Duration::minutes(20),
            },
        }),
    };
    old.control
        .create_grant(
            &grant,
            &wb_store::AuditEvent {
                action: Action::GrantRequest,
                ..event.clone()
            },
        )
        .await
        .unwrap();
    // A grant still waiting comes back revoked (it may have been revoked
    // after the backup): never open.
    let waiting = wb_core::grants::Grant {
        id: "grt_99887766554433221100".into(),
        requested_at: old.now(),
        company_approval: None,
        management_approval: None,
        ending: None,
        ..grant.clone()
    };
    old.control
        .create_grant(
            &waiting,
            &wb_store::AuditEvent {
                action: Action::GrantRequest,
                ..event.clone()
            },
        )
        .await
        .unwrap();
    // And a second factor: an account must not lose it in a disaster.
    let beta = old
        .login(
            "beta@example.com",
            &Secret::new(PASSPHRASE.into()),
            Actor::system("test"),
        )
        .await
        .unwrap();
    let beta_principal = old.authenticate(&beta.token).await.unwrap();
    let enrolment = old
        .begin_totp(
            &beta_principal,
            &Secret::new(PASSPHRASE.into()),
            Actor::system("test"),
        )
        .await
        .unwrap();
    let totp = wb_crypto::TotpSecret::from_base32(enrolment.secret.expose()).unwrap();
    let now = || u64::try_from(OffsetDateTime::now_utc().unix_timestamp()).unwrap();
    let recovery = old
        .confirm_totp(
            &beta_principal,
            &totp.code_at(now()).unwrap(),
            Actor::system("test"),
        )
        .await
        .unwrap();
    let mut shipper = ShipperState::default();
    ship_once(&old, &mut shipper).await.unwrap();
    let shipped_audit = wb_server::backup::audit_trail::ship_once(
        &old,
        &mut wb_server::backup::audit_trail::AuditShipperState::default(),
    )
    .await
    .unwrap();
    assert!(shipped_audit > 0, "company audit trails are shipped too");
    let mut config = ConfigBackupState::default();
    assert!(dr::backup_config_once(&old, &mut config).await.unwrap());
    assert!(
        !dr::backup_config_once(&old, &mut config).await.unwrap(),
        "an unchanged configuration is not stored again"
    );
    // A company whose key is destroyed cannot come back.
    let dek = ObjectPath::from(format!("keys/companies/{shredded}.dek"));
    old.objects.delete(&dek).await.unwrap();

    // Nothing in the object store is readable without the master key.
    for entry in walkdir(objects.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        for needle in [
            b"Alpha Ltd sale".as_slice(),
            b"alpha@example.com",
            b"argon2",
            totp.base32().expose().as_bytes(),
        ] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{} holds plaintext",
                entry.display()
            );
        }
    }

    // The fresh node: empty data directory, same master key, same object store.
    let new_dir = tempfile::tempdir().unwrap();
    let wrong = platform(new_dir.path(), objects.path(), &MasterKey::generate());
    let err = dr::restore(&wrong).await.unwrap_err().to_string();
    assert!(err.contains("master key"), "{err}");
    drop(wrong);
    let new_dir = tempfile::tempdir().unwrap();
    let fresh = platform(new_dir.path(), objects.path(), &master);
    let report = dr::restore(&fresh).await.unwrap();
    assert_eq!(report.users, 3);
    let by_id = |id: &str| {
        report
            .companies
            .iter()
            .find(|c| c.company_id == id)
            .unwrap()
    };
    assert!(by_id(&a).restored && by_id(&b).restored);
    assert_eq!(by_id(&a).records, 2 + 12 + 1);
    assert!(by_id(&a).restored_to.is_some());
    let gone = by_id(&shredded);
    assert!(!gone.restored);
    assert!(gone.error.as_deref().unwrap().contains("key"), "{gone:?}");

    for id in [&a, &b] {
        let before = books(&old.tenant(id).await.unwrap()).await;
        let after = books(&fresh.tenant(id).await.unwrap()).await;
        assert_eq!(
            before, after,
            "company {id} restored under its own id, same books"
        );
    }
    // Each company's own audit trail comes back verbatim (same chain), with
    // the recovery's own events after it.
    for id in [&a, &b] {
        let before = old
            .tenant(id)
            .await
            .unwrap()
            .audit_events(0, 10_000)
            .await
            .unwrap();
        let after = fresh
            .tenant(id)
            .await
            .unwrap()
            .audit_events(0, 10_000)
            .await
            .unwrap();
        assert!(!before.is_empty());
        assert_eq!(after[..before.len()], before[..], "company {id}'s trail");
        assert!(after[before.len()..]
            .iter()
            .all(|e| e.action == Action::JournalReplay.as_str()));
        let chain: Vec<_> = after.iter().map(|e| e.chained()).collect();
        assert!(
            wb_core::audit::verify(&chain, &[], |_| true).is_ok(),
            "the chain verifies"
        );
    }
    assert!(fresh.control.company(&shredded).await.unwrap().is_none());
    // The customer's export schedule came back, its credentials still sealed.
    let back = fresh.control.export_schedule(&a).await.unwrap().unwrap();
    assert_eq!(
        (back.destination, back.recipient, back.sealed_credentials),
        (
            schedule.destination.clone(),
            schedule.recipient.clone(),
            schedule.sealed_credentials.clone()
        )
    );
    assert_eq!(
        fresh.control.company_policy(&a).await.unwrap(),
        Some(policy.clone())
    );
    let grants = fresh.control.company_grants(&a, 10).await.unwrap();
    assert_eq!(grants.len(), 2);
    let back = |id: &str| {
        grants
            .iter()
            .find(|g| g.grant.id == id)
            .unwrap()
            .grant
            .clone()
    };
    assert_eq!(back(&grant.id), grant);
    let revived = back(&waiting.id);
    assert_eq!(
        revived.state(fresh.now()),
        wb_core::grants::GrantState::Revoked
    );
    assert_eq!(
        revived.ending.unwrap().decision.by,
        "system:disaster-recovery"
    );
    assert_eq!(
        fresh
            .control
            .grant_told(&grant.id)
            .await
            .unwrap()
            .as_deref(),
        Some("revoked")
    );
    // People sign in as before, with their roles; the API key still works.
    let session = fresh
        .login(
            "alpha@example.com",
            &Secret::new(PASSPHRASE.into()),
            Actor::system("test"),
        )
        .await
        .unwrap();
    assert_eq!(
        fresh.control.role(&session.user.id, &a).await.unwrap(),
        Some(Role::Owner)
    );
    fresh.authenticate(&key.token).await.unwrap();
    // The second factor came back: still asked for, its secret still opens
    // (a code of the next step, within the skew), its recovery codes work.
    let step = fresh
        .login_step(
            "beta@example.com",
            &Secret::new(PASSPHRASE.into()),
            None,
            Actor::system("test"),
            None,
        )
        .await
        .unwrap();
    assert!(matches!(step, wb_app::login::LoginStep::SecondFactor(_)));
    let next = totp.code_at(now() + 30).unwrap();
    let with_code = fresh
        .login_step(
            "beta@example.com",
            &Secret::new(PASSPHRASE.into()),
            Some(&next),
            Actor::system("test"),
            None,
        )
        .await
        .unwrap();
    assert!(matches!(with_code, wb_app::login::LoginStep::Session(_)));
    let with_recovery = fresh
        .login_step(
            "beta@example.com",
            &Secret::new(PASSPHRASE.into()),
            Some(&recovery[3]),
            Actor::system("test"),
            None,
        )
        .await
        .unwrap();
    assert!(matches!(
        with_recovery,
        wb_app::login::LoginStep::Session(_)
    ));
    // The recovery is in the new platform trail.
    let trail = fresh.control.audit_events(None, 0, 1000).await.unwrap();
    assert!(trail.iter().any(|e| e.action == Action::DrRestore.as_str()));

    // A second recovery into the now non-empty deployment is refused.
    let again = dr::restore(&fresh).await.unwrap_err().to_string();
    assert!(again.contains("empty"), "{again}");
}

fn walkdir(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walkdir(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The configuration backups in `objects`, oldest first.
fn config_backups(objects: &Path) -> Vec<std::path::PathBuf> {
    let mut found = walkdir(&objects.join("config"));
    found.sort();
    found
}

async fn signup(p: &Platform, name: &str, email: &str) {
    p.signup(
        name,
        email,
        &Secret::new(PASSPHRASE.into()),
        Actor::system("test"),
    )
    .await
    .unwrap();
}

/// A configuration backup is bound to its object name (its time): an older
/// backup's bytes put over the newest fail authentication, and restore refuses
/// with one line instead of bringing back the older configuration. Untouched,
/// it restores the newest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_configuration_backup_cannot_pass_as_the_newest() {
    let objects = tempfile::tempdir().unwrap();
    let old_dir = tempfile::tempdir().unwrap();
    let master = MasterKey::generate();
    let old = platform(old_dir.path(), objects.path(), &master);
    let mut config = ConfigBackupState::default();
    signup(&old, "First Ltd", "first@example.com").await;
    assert!(dr::backup_config_once(&old, &mut config).await.unwrap());
    signup(&old, "Second Ltd", "second@example.com").await;
    assert!(dr::backup_config_once(&old, &mut config).await.unwrap());
    ship_once(&old, &mut ShipperState::default()).await.unwrap();
    let backups = config_backups(objects.path());
    assert_eq!(backups.len(), 2, "{backups:?}");
    let newest_name = backups[1]
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();

    // Rolled back: the newest object now holds the older backup.
    let newest = std::fs::read(&backups[1]).unwrap();
    std::fs::copy(&backups[0], &backups[1]).unwrap();
    let new_dir = tempfile::tempdir().unwrap();
    let fresh = platform(new_dir.path(), objects.path(), &master);
    let err = format!("{:#}", dr::restore(&fresh).await.unwrap_err());
    assert!(
        err.contains(&newest_name) && err.contains("fails authentication") && !err.contains('\n'),
        "{err}"
    );
    assert!(
        fresh.control.users().await.unwrap().is_empty(),
        "nothing restored"
    );

    std::fs::write(&backups[1], newest).unwrap();
    let report = dr::restore(&fresh).await.unwrap();
    assert!(report.configuration_from.ends_with(&newest_name));
    assert_eq!(report.users, 2, "the newest configuration");
    assert_eq!(report.companies.len(), 2);
}

/// A store whose only configuration backup was written by the previous
/// version (constant associated data, `.sealed` name) still restores; the
/// next backup round writes the configuration in the new format, after which
/// an old-format backup named as the newest is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_backups_of_the_previous_format_restore_but_not_as_newer() {
    let objects = tempfile::tempdir().unwrap();
    let old_dir = tempfile::tempdir().unwrap();
    let master = MasterKey::generate();
    let old = platform(old_dir.path(), objects.path(), &master);
    signup(&old, "Legacy Ltd", "legacy@example.com").await;
    assert!(
        dr::backup_config_once(&old, &mut ConfigBackupState::default())
            .await
            .unwrap()
    );
    ship_once(&old, &mut ShipperState::default()).await.unwrap();

    // Rewrite it as the previous version wrote it.
    let wrapped = std::fs::read(objects.path().join("keys/platform.dek")).unwrap();
    let key = master
        .unwrap_key(&wrapped, "workbooks:platform-backup-key")
        .unwrap();
    let backups = config_backups(objects.path());
    assert_eq!(backups.len(), 1);
    let name = backups[0]
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let stem = name.strip_suffix(".v2.sealed").expect("new-format name");
    let plain = key
        .open(
            &std::fs::read(&backups[0]).unwrap(),
            format!("workbooks-config-backup/v2\nconfig/{name}").as_bytes(),
        )
        .unwrap();
    let legacy_bytes = key.seal(&plain, b"workbooks-config-backup/v1").unwrap();
    let legacy = objects.path().join("config").join(format!("{stem}.sealed"));
    std::fs::write(&legacy, &legacy_bytes).unwrap();
    std::fs::remove_file(&backups[0]).unwrap();

    let new_dir = tempfile::tempdir().unwrap();
    let fresh = platform(new_dir.path(), objects.path(), &master);
    let report = dr::restore(&fresh).await.unwrap();
    assert_eq!(report.users, 1);
    assert!(report.configuration_from.ends_with(".sealed"));

    // The next round rewrites the unchanged configuration in the new format.
    assert!(
        dr::backup_config_once(&old, &mut ConfigBackupState::default())
            .await
            .unwrap()
    );
    let backups = config_backups(objects.path());
    assert_eq!(backups.len(), 2);
    assert!(backups[1].to_str().unwrap().ends_with(".v2.sealed"));
    // An old-format backup named as newer than it is refused.
    let replayed = objects.path().join("config").join(format!(
        "99999999999999999999-{}.sealed",
        stem.split_once('-').unwrap().1
    ));
    std::fs::write(&replayed, &legacy_bytes).unwrap();
    let new_dir = tempfile::tempdir().unwrap();
    let fresh = platform(new_dir.path(), objects.path(), &master);
    let err = format!("{:#}", dr::restore(&fresh).await.unwrap_err());
    assert!(
        err.contains("99999999999999999999-") && err.contains("old format") && !err.contains('\n'),
        "{err}"
    );
    std::fs::remove_file(&replayed).unwrap();
    let report = dr::restore(&fresh).await.unwrap();
    assert!(report.configuration_from.ends_with(".v2.sealed"));
    assert_eq!(report.users, 1);
}

/// A company whose key was rotated after the last configuration backup
/// comes back on a fresh node with both versions: what was shipped under
/// version 1 and under version 2 replays, the fresh node knows version 2 is
/// current (from the object store), and a rotation there goes on from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_company_rotated_after_the_last_configuration_backup_comes_back_with_every_version() {
    let objects = tempfile::tempdir().unwrap();
    let old_dir = tempfile::tempdir().unwrap();
    let master = MasterKey::generate();
    let old = platform(old_dir.path(), objects.path(), &master);
    let a = company_with_books(&old, "Rotated Ltd", "rotated@example.com", 4).await;
    // Its retention rules come back too.
    let rules = wb_core::data_retention::DataRetention {
        entries_years: 15,
        attachments_years: 2,
        audit_years: 12,
        exports_days: 14,
    };
    old.control
        .put_company_retention(
            &a,
            &rules,
            &wb_store::AuditEvent {
                at: OffsetDateTime::now_utc(),
                actor: Actor::system("test"),
                company_id: Some(a.clone()),
                action: Action::RetentionSet,
                target: None,
                outcome: wb_store::Outcome::Success,
                detail: None,
            },
        )
        .await
        .unwrap();
    let mut shipper = ShipperState::default();
    ship_once(&old, &mut shipper).await.unwrap();
    let mut config = ConfigBackupState::default();
    assert!(dr::backup_config_once(&old, &mut config).await.unwrap());

    let rotated = old
        .rotate_company_key(&a, Actor::system("test"))
        .await
        .unwrap();
    assert_eq!(rotated.version, 2);
    let store = old.tenant(&a).await.unwrap();
    store
        .reverse_entry(2, date!(2026 - 05 - 03), None, ctx())
        .await
        .unwrap();
    ship_once(&old, &mut shipper).await.unwrap();
    let expected = books(&store).await;
    drop(store);
    drop(old);

    let new_dir = tempfile::tempdir().unwrap();
    let fresh = platform(new_dir.path(), objects.path(), &master);
    let report = dr::restore(&fresh).await.unwrap();
    let back = report.companies.iter().find(|c| c.company_id == a).unwrap();
    assert!(back.restored, "{back:?}");
    let store = fresh.tenant(&a).await.unwrap();
    assert_eq!(books(&store).await, expected);
    assert_eq!(fresh.company_retention(&a).await.unwrap(), rules);
    let status = fresh.company_key_status(&a).await.unwrap();
    assert_eq!(status.current_version, 2);
    let states: Vec<(u32, &str)> = status
        .versions
        .iter()
        .map(|v| (v.version, v.state))
        .collect();
    assert_eq!(states, vec![(2, "current"), (1, "retired")]);
    // Objects of both versions are counted against their versions.
    assert!(status.versions[1].depends.objects > 0);
    assert!(status.versions[0].depends.objects > 0);
}
