use std::collections::BTreeMap;

use super::*;
use crate::backup::shipper::SegmentRecord;
use time::OffsetDateTime;
use wb_core::Action;
use wb_crypto::{sha256_hex, Secret};
use wb_store::{Account, Entry, EntryPage, StoredAuditEvent, TenantStore};

fn journal(n: i64) -> Vec<SegmentRecord> {
    let mut prev = wb_core::audit::GENESIS.to_string();
    (1..=n)
        .map(|seq| {
            let at = format!("2026-01-01T00:00:{seq:02}Z");
            let payload = format!("{{\"n\":{seq}}}");
            let hash = wb_core::audit::link(&prev, seq, &[&at, "account_created", &payload]);
            let record = SegmentRecord {
                seq,
                at,
                kind: "account_created".into(),
                payload,
                prev_hash: prev.clone(),
                hash: hash.clone(),
            };
            prev = hash;
            record
        })
        .collect()
}

fn audit(n: i64) -> Vec<ExportAuditEvent> {
    let mut prev = wb_core::audit::GENESIS.to_string();
    (1..=n)
        .map(|seq| {
            let mut e = ExportAuditEvent {
                seq,
                at: format!("2026-01-01T00:00:{seq:02}Z"),
                actor: "user:u1".into(),
                auth: "session".into(),
                client: None,
                request_id: Some(format!("r{seq}")),
                company_id: Some("c1".into()),
                action: Action::EntryPost.into(),
                target: Some(format!("entry:{seq}")),
                outcome: "success".into(),
                detail: None,
                prev_hash: prev.clone(),
                hash: String::new(),
            };
            e.hash = e.chained().fields.hash(&prev, seq);
            prev = e.hash.clone();
            e
        })
        .collect()
}

fn sample() -> Snapshot {
    Snapshot {
        company: CompanyInfo {
            id: "c1".into(),
            name: "Acme".into(),
        },
        journal_seq: 3,
        accounts: vec![ExportAccount {
            id: "1".into(),
            code: "1000".into(),
            name: "Cash".into(),
            account_type: "asset".into(),
            parent: None,
            currency: None,
            created_at: "2026-01-01T00:00:01Z".into(),
        }],
        entries: vec![ExportEntry {
            id: "1".into(),
            date: "2026-01-02".into(),
            description: "Sale".into(),
            reference: None,
            postings: vec![
                ExportPosting {
                    account: "1000".into(),
                    amount: "10.00".into(),
                    currency: "EUR".into(),
                },
                ExportPosting {
                    account: "4000".into(),
                    amount: "-10.00".into(),
                    currency: "EUR".into(),
                },
            ],
            reverses: None,
            reversed_by: None,
            created_at: "2026-01-02T00:00:00Z".into(),
            created_by: "user:u1".into(),
        }],
        audit: audit(4),
        journal: journal(3),
        files: Vec::new(),
    }
}

/// The sample with two attachments (one linked to the entry) and their contents.
fn with_files() -> (Snapshot, BTreeMap<i64, Vec<u8>>) {
    let mut s = sample();
    s.files = vec![
        ExportFile {
            id: 1,
            address: "a".repeat(64),
            name: "../../etc/passwd".into(),
            content_type: "text/plain".into(),
            size: 5,
            entry_id: None,
        },
        ExportFile {
            id: 2,
            address: "b".repeat(64),
            name: "Rechnung Müller.pdf".into(),
            content_type: "application/pdf".into(),
            size: 200_000,
            entry_id: Some(1),
        },
    ];
    let contents = BTreeMap::from([
        (1, b"hello".to_vec()),
        (2, (0..200_000u32).map(|i| (i % 251) as u8).collect()),
    ]);
    (s, contents)
}

fn packed(s: &Snapshot) -> Vec<u8> {
    package(s, "e1", OffsetDateTime::UNIX_EPOCH, "user:u1")
        .unwrap()
        .1
}

fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, bytes) in files {
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o600);
        tar.append_data(&mut header, name, *bytes).unwrap();
    }
    tar.into_inner().unwrap()
}

fn integrity_error(plain: &[u8]) -> String {
    match read(plain) {
        Err(ReadError::Integrity(why)) => why,
        other => panic!("expected an integrity error, got {other:?}"),
    }
}

#[test]
fn package_and_read_round_trip() {
    let s = sample();
    let (manifest, plain) = package(&s, "e1", OffsetDateTime::UNIX_EPOCH, "user:u1").unwrap();
    let read = read(&plain).unwrap();
    assert_eq!(read.manifest, manifest);
    assert_eq!(read.accounts, s.accounts);
    assert_eq!(read.entries, s.entries);
    assert_eq!(read.audit, s.audit);
    assert_eq!(read.journal, s.journal);
    assert_eq!(manifest.counts.postings, 2);
    assert_eq!((manifest.journal_seq, manifest.audit_seq), (3, 4));
    assert!(manifest.files.is_empty());
    let names: Vec<&str> = read.files.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [ACCOUNTS, AUDIT, ENTRIES, JOURNAL, MANIFEST],
        "every file, by name"
    );
    for part in &manifest.parts {
        assert_eq!(sha256_hex(&read.files[&part.name]), part.sha256);
    }
}

#[test]
fn an_empty_company_exports() {
    let mut s = sample();
    s.accounts.clear();
    s.entries.clear();
    s.journal.clear();
    s.journal_seq = 0;
    let read = read(&packed(&s)).unwrap();
    assert_eq!(read.manifest.counts.journal_records, 0);
}

#[test]
fn a_part_that_does_not_match_its_digest_is_refused() {
    let s = sample();
    let good = read(&packed(&s)).unwrap();
    let mut entries = good.files[ENTRIES].clone();
    let at = entries.iter().position(|b| *b == b'S').unwrap();
    entries[at] = b's';
    let files: Vec<(&str, &[u8])> = good
        .files
        .iter()
        .map(|(n, b)| {
            (
                n.as_str(),
                if n == ENTRIES {
                    entries.as_slice()
                } else {
                    b.as_slice()
                },
            )
        })
        .collect();
    let why = integrity_error(&tar_of(&files));
    assert!(
        why.contains("entries.jsonl does not match its SHA-256"),
        "{why}"
    );

    let without: Vec<(&str, &[u8])> = good
        .files
        .iter()
        .filter(|(n, _)| n.as_str() != AUDIT)
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    assert!(integrity_error(&tar_of(&without)).contains("audit.jsonl is missing"));

    let mut extra: Vec<(&str, &[u8])> = good
        .files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    extra.push(("notes.txt", b"x"));
    assert!(matches!(read(&tar_of(&extra)), Err(ReadError::Format(_))));
    assert!(matches!(read(b"not a tar"), Err(ReadError::Format(_))));
}

#[test]
fn broken_chains_are_refused_even_with_matching_digests() {
    let mut s = sample();
    s.journal[1].payload = "{\"n\":99}".into();
    assert!(integrity_error(&packed(&s)).contains("journal chain broken at record 2"));

    let mut s = sample();
    s.journal.remove(1);
    assert!(integrity_error(&packed(&s)).contains("journal chain"));

    let mut s = sample();
    s.journal_seq = 5;
    assert!(integrity_error(&packed(&s)).contains("the journal ends at 3"));

    let mut s = sample();
    s.audit[2].detail = Some("edited".into());
    assert!(integrity_error(&packed(&s)).contains("audit chain"));
}

#[test]
fn keys_are_checked() {
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let key = ExportKey::recipient(&recipient).unwrap();
    assert_eq!(key.public_recipient(), Some(recipient.clone()));
    assert_eq!(key.encryption(), "age-x25519");
    assert!(matches!(
        ExportKey::recipient("age1qqqq"),
        Err(KeyError::BadRecipient(_))
    ));
    assert!(matches!(
        ExportKey::recipient(&recipient.replace("age1", "agf1")),
        Err(KeyError::BadRecipient(_))
    ));
    let weak = ExportKey::passphrase(Secret::new("acme acme acme".into()), &["acme"]);
    assert!(matches!(weak, Err(KeyError::WeakPassphrase(_))));
    let strong =
        ExportKey::passphrase(Secret::new("cobalt weasel orbit 71 fennel".into()), &[]).unwrap();
    assert_eq!(format!("{strong:?}"), "Passphrase(***)");
    assert_eq!(strong.encryption(), "age-scrypt");
    assert_eq!(strong.public_recipient(), None);

    let plain = packed(&sample());
    let sealed = encrypt(&plain, &key).unwrap();
    assert_eq!(
        decrypt(&sealed, &Unlock::identity(identity)).unwrap(),
        plain
    );
    let text = format!(
        "# a comment\n\n{}\n",
        age::secrecy::ExposeSecret::expose_secret(&age::x25519::Identity::generate().to_string())
    );
    let other = Unlock::identity_file(&text).unwrap();
    assert_eq!(
        decrypt(&sealed, &other).unwrap_err(),
        ReadError::Decrypt("the identity does not match the export's recipient".into())
    );
    assert!(Unlock::identity_file("# only a comment\n").is_err());
    assert!(Unlock::identity_file("AGE-SECRET-KEY-1NOPE\n").is_err());
}

#[test]
fn snapshot_retries_until_the_books_are_still() {
    // The journal head must not move while the books are read; a store
    // whose head keeps moving gives up with `Busy`.
    use std::sync::atomic::{AtomicI64, Ordering};
    struct Moving(AtomicI64);
    #[async_trait::async_trait]
    impl TenantStore for Moving {
        async fn create_account(
            &self,
            _: wb_core::NewAccount,
            _: wb_store::WriteContext,
        ) -> Result<Account, wb_store::StoreError> {
            unimplemented!()
        }
        async fn post_entries(
            &self,
            _: Vec<wb_core::EntryDraft>,
            _: Option<wb_store::Idempotency>,
            _: wb_store::WriteContext,
        ) -> Result<wb_store::Posted, wb_store::StoreError> {
            unimplemented!()
        }
        async fn reverse_entry(
            &self,
            _: i64,
            _: time::Date,
            _: Option<String>,
            _: wb_store::WriteContext,
        ) -> Result<Entry, wb_store::StoreError> {
            unimplemented!()
        }
        async fn apply_in_order(
            &self,
            _: Vec<(wb_store::Change, wb_store::WriteContext)>,
        ) -> Vec<Result<wb_store::Applied, wb_store::StoreError>> {
            unimplemented!()
        }
        fn journal_head(&self) -> i64 {
            self.0.load(Ordering::SeqCst)
        }
        async fn add_file(
            &self,
            _: wb_store::NewFile,
            _: wb_store::WriteContext,
        ) -> Result<wb_store::FileRecord, wb_store::StoreError> {
            unimplemented!()
        }
        async fn purge(
            &self,
            _: wb_store::PurgePlan,
            _: wb_store::WriteContext,
        ) -> Result<wb_store::PurgeReport, wb_store::StoreError> {
            unimplemented!()
        }
        async fn files(
            &self,
            _: wb_store::FilePage,
        ) -> Result<Vec<wb_store::FileRecord>, wb_store::StoreError> {
            Ok(Vec::new())
        }
        async fn file(&self, _: i64) -> Result<Option<wb_store::FileRecord>, wb_store::StoreError> {
            Ok(None)
        }
        async fn accounts(&self) -> Result<Vec<Account>, wb_store::StoreError> {
            Ok(Vec::new())
        }
        async fn entry(&self, _: i64) -> Result<Option<Entry>, wb_store::StoreError> {
            Ok(None)
        }
        async fn entries(&self, _: EntryPage) -> Result<Vec<Entry>, wb_store::StoreError> {
            Ok(Vec::new())
        }
        async fn balances_as_of(
            &self,
            _: time::Date,
        ) -> Result<Vec<wb_core::reports::BalanceRow>, wb_store::StoreError> {
            Ok(Vec::new())
        }
        async fn movements(
            &self,
            _: time::Date,
            _: time::Date,
        ) -> Result<Vec<wb_core::reports::BalanceRow>, wb_store::StoreError> {
            Ok(Vec::new())
        }
        async fn register(
            &self,
            _: &str,
            _: time::Date,
            _: time::Date,
            _: u32,
        ) -> Result<
            (
                wb_core::reports::Amounts,
                Vec<wb_core::reports::RegisterPosting>,
            ),
            wb_store::StoreError,
        > {
            unimplemented!()
        }
        async fn journal(
            &self,
            _: i64,
            _: u32,
        ) -> Result<Vec<wb_store::JournalRecord>, wb_store::StoreError> {
            Ok(Vec::new())
        }
        async fn audit_events(
            &self,
            _: i64,
            _: u32,
        ) -> Result<Vec<StoredAuditEvent>, wb_store::StoreError> {
            Ok(Vec::new())
        }
        async fn stats(&self) -> Result<wb_store::TenantStats, wb_store::StoreError> {
            Ok(wb_store::TenantStats {
                accounts: 0,
                entries: 0,
                journal_seq: self.0.fetch_add(1, Ordering::SeqCst),
                storage_bytes: 0,
                files: 0,
                file_bytes: 0,
            })
        }
        async fn record(&self, _: wb_store::AuditEvent) -> Result<(), wb_store::StoreError> {
            Ok(())
        }
        fn audit_head(&self) -> i64 {
            0
        }
        fn company_id(&self) -> &str {
            "c1"
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let store = Moving(AtomicI64::new(0));
    let company = CompanyInfo {
        id: "c1".into(),
        name: "Acme".into(),
    };
    let result = runtime.block_on(super::snapshot(&store, company));
    assert!(matches!(result, Err(SnapshotError::Busy)), "{result:?}");
    assert_eq!(store.0.load(Ordering::SeqCst), 2 * SNAPSHOT_ATTEMPTS as i64);
}

#[test]
fn attachments_round_trip_under_safe_flat_names() {
    let (s, contents) = with_files();
    let (manifest, plain) =
        package_with_files(&s, "e1", OffsetDateTime::UNIX_EPOCH, "user:u1", &contents).unwrap();
    assert_eq!(manifest.version, 2);
    assert_eq!(manifest.counts.files, 2);
    assert_eq!(manifest.counts.file_bytes, 200_005);
    let paths: Vec<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        ["files/1-.._.._etc_passwd", "files/2-Rechnung_M_ller.pdf"]
    );
    let second = &manifest.files[1];
    assert_eq!(second.id, "2");
    assert_eq!(second.name, "Rechnung Müller.pdf");
    assert_eq!(second.content_type, "application/pdf");
    assert_eq!(second.entry.as_deref(), Some("1"));
    assert_eq!(second.sha256, sha256_hex(&contents[&2]));
    assert_eq!(manifest.files[0].entry, None);

    let read = read(&plain).unwrap();
    assert_eq!(read.manifest, manifest);
    assert_eq!(read.files["files/1-.._.._etc_passwd"], contents[&1]);
    assert_eq!(read.files["files/2-Rechnung_M_ller.pdf"], contents[&2]);
    // Streaming without keeping verifies the same.
    let verified = read_from(plain.as_slice(), &mut DiscardFiles).unwrap();
    assert_eq!(verified.manifest, manifest);
    assert_eq!(verified.entries, s.entries);
}

#[test]
fn safe_names_are_flat_short_and_keep_the_extension() {
    assert_eq!(safe_name("receipt.png"), "receipt.png");
    assert_eq!(safe_name("a/b\\c d"), "a_b_c_d");
    assert_eq!(safe_name(""), "file");
    assert_eq!(safe_name(".."), "..");
    assert_eq!(file_path(7, ".."), "files/7-..");
    let long = format!("{}.tar.gz", "x".repeat(300));
    let short = safe_name(&long);
    assert_eq!(short.len(), MAX_SAFE_NAME);
    assert!(short.ends_with("x.gz"), "{short}");
    assert_eq!(safe_name(&"y".repeat(100)).len(), MAX_SAFE_NAME);
    assert_eq!(safe_name("日本語.pdf"), "___.pdf");
}

fn rebuilt(good: &ExportContents, change: impl Fn(&str, &[u8]) -> Option<Vec<u8>>) -> Vec<u8> {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    // Manifest first, then the parts, then the attachments, as written.
    let mut names: Vec<&String> = good.files.keys().collect();
    names.sort_by_key(|n| {
        (
            n.as_str() != MANIFEST,
            n.starts_with(FILES_DIR),
            n.to_string(),
        )
    });
    for name in names {
        if let Some(bytes) = change(name.as_str(), good.files[name].as_slice()) {
            files.push((name.clone(), bytes));
        }
    }
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    tar_of(&refs)
}

#[test]
fn an_altered_missing_or_extra_attachment_is_refused() {
    let (s, contents) = with_files();
    let (_, plain) =
        package_with_files(&s, "e1", OffsetDateTime::UNIX_EPOCH, "user:u1", &contents).unwrap();
    let good = read(&plain).unwrap();
    let pdf = "files/2-Rechnung_M_ller.pdf";
    assert!(read(&rebuilt(&good, |_, b| Some(b.to_vec()))).is_ok());

    let altered = rebuilt(&good, |n, b| {
        let mut b = b.to_vec();
        if n == pdf {
            b[100_000] ^= 1;
        }
        Some(b)
    });
    assert_eq!(
        integrity_error(&altered),
        format!("{pdf} does not match its SHA-256 in the manifest")
    );
    let mut kept = KeepFiles::default();
    assert!(read_from(altered.as_slice(), &mut kept).is_err());
    assert!(!kept.files.contains_key(pdf), "an altered file is not kept");

    let missing = rebuilt(&good, |n, b| (n != pdf).then(|| b.to_vec()));
    assert_eq!(integrity_error(&missing), format!("{pdf} is missing"));

    let cut = rebuilt(&good, |n, b| {
        Some(if n == pdf {
            b[1..].to_vec()
        } else {
            b.to_vec()
        })
    });
    assert!(integrity_error(&cut).contains("has 199999 bytes, the manifest says 200000"));

    let mut extra = rebuilt(&good, |_, b| Some(b.to_vec()));
    // Drop the end-of-archive blocks and append another file.
    extra.truncate(extra.len() - 1024);
    extra.extend(tar_of(&[("files/3-evil.sh", b"rm -rf /")]));
    assert_eq!(
        integrity_error(&extra),
        "files/3-evil.sh is in the archive but not in the manifest"
    );

    // A manifest naming a path outside files/ is refused before anything is written.
    let evil = rebuilt(&good, |n, b| {
        Some(if n == MANIFEST {
            String::from_utf8(b.to_vec())
                .unwrap()
                .replace("files/1-.._.._etc_passwd", "../../etc/passwd")
                .into_bytes()
        } else {
            b.to_vec()
        })
    });
    assert!(matches!(read(&evil), Err(ReadError::Format(why)) if why.contains("unsafe")));
}

#[test]
fn version_1_exports_still_read() {
    let s = sample();
    let good = read(&packed(&s)).unwrap();
    let v1 = rebuilt(&good, |n, b| {
        if n != MANIFEST {
            return Some(b.to_vec());
        }
        let mut m: serde_json::Value = serde_json::from_slice(b).unwrap();
        m["version"] = 1.into();
        let counts = m["counts"].as_object_mut().unwrap();
        counts.remove("files");
        counts.remove("file_bytes");
        Some(serde_json::to_vec_pretty(&m).unwrap())
    });
    let read_v1 = read(&v1).unwrap();
    assert_eq!(read_v1.manifest.version, 1);
    assert_eq!(read_v1.entries, s.entries);
    let v3 = rebuilt(&good, |n, b| {
        Some(if n == MANIFEST {
            String::from_utf8(b.to_vec())
                .unwrap()
                .replace("\"version\": 2", "\"version\": 3")
                .into_bytes()
        } else {
            b.to_vec()
        })
    });
    assert!(matches!(read(&v3), Err(ReadError::Format(why)) if why.contains("version 3")));
}
