//! Attachment records on both backends: recorded with their journal and audit
//! records, linked to existing entries only, paged, replayed verbatim, and
//! added to databases created before attachments existed.

use std::sync::Arc;

use serde_json::Value;
use time::macros::date;
use time::OffsetDateTime;
use wb_core::Action;
use wb_core::{EntryDraft, NewAccount, PostingDraft};
use wb_crypto::DataKey;
use wb_store::sqlite::{open_encrypted, OpenMode, SqliteTenants};
use wb_store::{
    Actor, Applied, Change, FilePage, FileRecord, NewFile, ReplayedContent, ReplayedRecord,
    StoreError, TenantDirectory, TenantStore, WriteContext,
};

use crate::pg_backend;

fn ctx() -> WriteContext {
    WriteContext {
        actor: Actor {
            id: "user:files".into(),
            auth: "session".into(),
            client: None,
            request_id: None,
        },
        at: OffsetDateTime::now_utc(),
    }
}

fn new_file(key: &DataKey, content: &[u8], name: &str, entry_id: Option<i64>) -> NewFile {
    NewFile {
        address: key.content_address(content),
        name: name.into(),
        content_type: "application/pdf".into(),
        size: content.len() as u64,
        entry_id,
    }
}

async fn company(tenants: &dyn TenantDirectory) -> (String, DataKey, Arc<dyn TenantStore>) {
    let id = uuid::Uuid::now_v7().to_string();
    let key = DataKey::generate();
    let store = tenants.create(&id, &key).await.expect("create books");
    (id, key, store)
}

async fn one_entry(store: &dyn TenantStore) -> i64 {
    for (code, name, kind) in [("1000", "Cash", "asset"), ("4000", "Sales", "income")] {
        let account = NewAccount::validate(code, name, kind, None, None).unwrap();
        store.create_account(account, ctx()).await.unwrap();
    }
    let draft = EntryDraft {
        date: date!(2026 - 03 - 01),
        description: "Sale".into(),
        reference: None,
        postings: vec![
            PostingDraft {
                account: "1000".into(),
                amount: "10.00".into(),
                currency: "USD".into(),
            },
            PostingDraft {
                account: "4000".into(),
                amount: "-10.00".into(),
                currency: "USD".into(),
            },
        ],
    };
    store
        .post_entries(vec![draft], None, ctx())
        .await
        .unwrap()
        .entries[0]
        .id
}

async fn files_story(tenants: Arc<dyn TenantDirectory>) {
    let (_, key, store) = company(&*tenants).await;
    let entry = one_entry(&*store).await;

    let loose = store
        .add_file(new_file(&key, b"receipt", "receipt.pdf", None), ctx())
        .await
        .unwrap();
    assert_eq!(loose.id, 1);
    assert_eq!(loose.created_by, "user:files");
    assert_eq!(loose.size, 7);
    let linked = store
        .add_file(
            new_file(&key, b"invoice", "Rechnung März.pdf", Some(entry)),
            ctx(),
        )
        .await
        .unwrap();
    assert_eq!((linked.id, linked.entry_id), (2, Some(entry)));

    // Refusals record nothing (but are audited) and do not use up an id.
    let journal_before = store.journal_head();
    let unknown = store
        .add_file(new_file(&key, b"x", "x.pdf", Some(entry + 100)), ctx())
        .await;
    assert!(
        matches!(unknown, Err(StoreError::NotFound("entry"))),
        "{unknown:?}"
    );
    let bad_name = store
        .add_file(new_file(&key, b"x", "../x.pdf", None), ctx())
        .await;
    assert!(
        matches!(bad_name, Err(StoreError::Conflict(_))),
        "{bad_name:?}"
    );
    let mut bad_address = new_file(&key, b"x", "x.pdf", None);
    bad_address.address = "../../etc/passwd".into();
    assert!(store.add_file(bad_address, ctx()).await.is_err());
    assert_eq!(store.journal_head(), journal_before);

    // Many at once (one group commit): contiguous ids, none lost.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = store.clone();
        let file = new_file(
            &key,
            format!("scan {i}").as_bytes(),
            &format!("scan-{i}.png"),
            Some(entry),
        );
        tasks.push(tokio::spawn(
            async move { store.add_file(file, ctx()).await },
        ));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.unwrap().unwrap().id);
    }
    ids.sort_unstable();
    assert_eq!(ids, (3..23).collect::<Vec<_>>());

    // Reads: by id, paged, by entry.
    assert_eq!(store.file(2).await.unwrap(), Some(linked.clone()));
    assert_eq!(store.file(999).await.unwrap(), None);
    let first = store
        .files(FilePage {
            after: None,
            limit: 5,
            entry_id: None,
        })
        .await
        .unwrap();
    assert_eq!(
        first.iter().map(|f| f.id).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(first[0], loose);
    let rest = store
        .files(FilePage {
            after: Some(5),
            limit: 1000,
            entry_id: None,
        })
        .await
        .unwrap();
    assert_eq!(rest.len(), 17);
    let of_entry = store
        .files(FilePage {
            after: None,
            limit: 1000,
            entry_id: Some(entry),
        })
        .await
        .unwrap();
    assert_eq!(of_entry.len(), 21);
    assert!(of_entry.iter().all(|f| f.entry_id == Some(entry)));
    let of_nothing = store
        .files(FilePage {
            after: None,
            limit: 10,
            entry_id: Some(entry + 1),
        })
        .await
        .unwrap();
    assert!(of_nothing.is_empty());

    // The journal record carries everything a replay needs.
    let journal = store.journal(0, 1000).await.unwrap();
    let record = journal
        .iter()
        .find(|r| r.kind == "file_added" && r.payload.contains("\"id\":2"))
        .expect("file_added record");
    let payload: Value = serde_json::from_str(&record.payload).unwrap();
    assert_eq!(payload["address"], linked.address.as_str());
    assert_eq!(payload["name"], "Rechnung März.pdf");
    assert_eq!(payload["content_type"], "application/pdf");
    assert_eq!(payload["size"], 7);
    assert_eq!(payload["entry_id"], entry);
    assert_eq!(payload["created_by"], "user:files");
    assert!(payload["created_at"].is_string());

    // Audited as file.upload, without the file's name; refusals too.
    let audit = store.audit_events(0, 1000).await.unwrap();
    let uploads: Vec<_> = audit
        .iter()
        .filter(|e| e.action == Action::FileUpload.as_str())
        .collect();
    assert_eq!(
        uploads.iter().filter(|e| e.outcome == "success").count(),
        22
    );
    assert_eq!(uploads.iter().filter(|e| e.outcome == "failure").count(), 3);
    let second = uploads
        .iter()
        .find(|e| e.target.as_deref() == Some("file:2"))
        .unwrap();
    assert_eq!(
        second.detail.as_deref(),
        Some(format!("7 bytes, linked to entry:{entry}").as_str())
    );
    assert!(audit
        .iter()
        .all(|e| !e.detail.clone().unwrap_or_default().contains("Rechnung")));
}

fn replayed(record: &wb_store::JournalRecord, file: FileRecord) -> ReplayedRecord {
    ReplayedRecord {
        seq: record.seq,
        at: record
            .at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap(),
        kind: record.kind.clone(),
        payload: record.payload.clone(),
        hash: record.hash.clone(),
        content: ReplayedContent::File(file),
    }
}

async fn replay_story(tenants: Arc<dyn TenantDirectory>) {
    let (_, key, source) = company(&*tenants).await;
    let one = source
        .add_file(new_file(&key, b"one", "one.txt", None), ctx())
        .await
        .unwrap();
    let two = source
        .add_file(new_file(&key, b"two", "two.txt", None), ctx())
        .await
        .unwrap();
    let journal = source.journal(0, 10).await.unwrap();
    assert_eq!(journal.len(), 2);

    let (_, _, target) = company(&*tenants).await;
    // A record whose file id does not come next is refused.
    let skipped = target
        .apply_in_order(vec![(
            Change::Replay(vec![replayed(&journal[0], two.clone())]),
            ctx(),
        )])
        .await;
    assert!(
        matches!(&skipped[0], Err(StoreError::Conflict(_))),
        "{skipped:?}"
    );
    let applied = target
        .apply_in_order(vec![(
            Change::Replay(vec![
                replayed(&journal[0], one.clone()),
                replayed(&journal[1], two.clone()),
            ]),
            ctx(),
        )])
        .await;
    assert!(
        matches!(applied[0], Ok(Applied::Replayed { last_seq: 2 })),
        "{applied:?}"
    );
    assert_eq!(target.file(1).await.unwrap(), Some(one));
    assert_eq!(target.file(2).await.unwrap(), Some(two));
    assert_eq!(target.journal(0, 10).await.unwrap(), journal);
    // Uploads continue after the replayed ids.
    let next = target
        .add_file(new_file(&key, b"three", "three.txt", None), ctx())
        .await
        .unwrap();
    assert_eq!(next.id, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_files() {
    let dir = tempfile::tempdir().unwrap();
    files_story(Arc::new(
        SqliteTenants::new(dir.path().to_path_buf()).unwrap(),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_replay() {
    let dir = tempfile::tempdir().unwrap();
    replay_story(Arc::new(
        SqliteTenants::new(dir.path().to_path_buf()).unwrap(),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_files() {
    let (_, tenants) = pg_backend::pg_stores("files").await;
    files_story(tenants).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_file_replay() {
    let (_, tenants) = pg_backend::pg_stores("file_replay").await;
    replay_story(tenants).await;
}

/// A database of schema version 1 (no `files`) gains the table when opened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_old_database_gains_files() {
    let dir = tempfile::tempdir().unwrap();
    let (id, key, store) = company(&SqliteTenants::new(dir.path().to_path_buf()).unwrap()).await;
    one_entry(&*store).await;
    drop(store);
    let path = dir.path().join(format!("{id}.db"));
    let old = open_encrypted(&path, &key, OpenMode::Existing).unwrap();
    old.execute_batch(
        "DROP TABLE files; UPDATE meta SET value = '1' WHERE key = 'schema_version';",
    )
    .unwrap();
    let reopened = SqliteTenants::new(dir.path().to_path_buf())
        .unwrap()
        .open(&id, &key)
        .await
        .unwrap();
    let file = reopened
        .add_file(new_file(&key, b"late", "late.pdf", Some(1)), ctx())
        .await
        .unwrap();
    assert_eq!(file.id, 1);
    let version: String = old
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        version,
        wb_store::migrations::latest(wb_store::migrations::SQLITE_TENANT).to_string()
    );
    // The table is append-only, like entries.
    assert!(old
        .execute("UPDATE files SET name = 'other.pdf'", [])
        .is_err());
    assert!(old.execute("DELETE FROM files", []).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_old_database_gains_files() {
    let (_, tenants) = pg_backend::pg_stores("files_migrate").await;
    let (id, key, store) = company(&*tenants).await;
    one_entry(&*store).await;
    drop(store);
    let placement = tenants.placements().get(&id).await.unwrap().unwrap();
    let old = tenants
        .company_endpoint(&placement, &key)
        .unwrap()
        .connect()
        .await
        .unwrap();
    old.batch_execute(
        "DROP TABLE files; UPDATE meta SET value = '1' WHERE key = 'schema_version';",
    )
    .await
    .unwrap();
    tenants.forget(&id);
    let reopened = tenants.open(&id, &key).await.unwrap();
    let file = reopened
        .add_file(new_file(&key, b"late", "late.pdf", Some(1)), ctx())
        .await
        .unwrap();
    assert_eq!(file.id, 1);
    let version: String = old
        .query_one("SELECT value FROM meta WHERE key = 'schema_version'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        version,
        wb_store::migrations::latest(wb_store::migrations::POSTGRES_TENANT).to_string()
    );
    assert!(old
        .batch_execute("UPDATE files SET name = 'other.pdf'")
        .await
        .is_err());
    assert!(old.batch_execute("DELETE FROM files").await.is_err());
}
