//! Customer exports end to end over HTTPS (run on SQLCipher by `api::exports`
//! and on PostgreSQL by `api_postgres::exports`): create, list, fetch, download, decrypt
//! offline, attachments in the export, the mass-export alert, and every refusal.

use super::harness::{entry, Body, Resp, Tenant, TestServer};
use reqwest::Method;
use serde_json::{json, Value};
use wb_core::Action;
use wb_crypto::Secret;
use wb_server::exports::age::x25519;
use wb_server::exports::{self, ReadError, Unlock};

const SECRET_DESCRIPTION: &str = "Consulting for Zyxwvut Quillfeather";
const EXPORT_PASSPHRASE: &str = "lantern oxide mosaic 93 turnip galaxy";

/// A company with a chart, a few entries and one reversal.
async fn books(s: &TestServer, name: &str) -> Tenant {
    let t = s.signup(name).await;
    s.chart(&t).await;
    s.post_entry(
        &t,
        entry(
            "2026-01-05",
            "Owner capital",
            &[("1000", "5000.00", "EUR"), ("3000", "-5000.00", "EUR")],
        ),
    )
    .await;
    s.post_entry(
        &t,
        entry(
            "2026-01-20",
            SECRET_DESCRIPTION,
            &[("1100", "1200.50", "EUR"), ("4000", "-1200.50", "EUR")],
        ),
    )
    .await;
    let rent = s
        .post_entry(
            &t,
            entry(
                "2026-02-01",
                "Rent February",
                &[("5000", "800.00", "EUR"), ("1000", "-800.00", "EUR")],
            ),
        )
        .await;
    s.post(
        &t.path(&format!("/entries/{rent}/reverse")),
        &t.token,
        json!({}),
    )
    .await
    .ok(201);
    t
}

/// Downloads an export's bytes (binary, so not through `Resp::text`).
async fn download(
    s: &TestServer,
    token: &str,
    path: &str,
) -> (reqwest::StatusCode, Vec<u8>, reqwest::header::HeaderMap) {
    let resp = s
        .client
        .get(s.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("download");
    let status = resp.status();
    let headers = resp.headers().clone();
    (status, resp.bytes().await.expect("body").to_vec(), headers)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

async fn company_audit(s: &TestServer, company: &str) -> Vec<wb_store::StoredAuditEvent> {
    let store = s.platform.tenant(company).await.unwrap();
    let mut all = Vec::new();
    loop {
        let after = all.last().map_or(0, |e: &wb_store::StoredAuditEvent| e.seq);
        let page = store.audit_events(after, 1000).await.unwrap();
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

fn assert_export_view(body: &Value, t: &Tenant) -> String {
    let id = body["id"].as_str().expect("id").to_string();
    assert_eq!(body["status"], "ready");
    assert!(body["created_at"].is_string());
    assert!(body["size_bytes"].as_u64().unwrap() > 0);
    assert_eq!(body["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(
        body["download"],
        format!("/api/v1/companies/{}/exports/{id}/download", t.id)
    );
    id
}

#[tokio::test(flavor = "multi_thread")]
async fn recipient_export_holds_the_books_and_audit_trail() {
    let s = TestServer::start().await;
    let t = books(&s, "Exporting Co").await;
    let identity = x25519::Identity::generate();
    let recipient = identity.to_public().to_string();

    let created = s
        .post(
            &t.path("/exports"),
            &t.token,
            json!({ "recipient": recipient }),
        )
        .await
        .ok(201);
    let id = assert_export_view(&created, &t);
    assert_eq!(created["encryption"], "age-x25519");
    assert_eq!(created["recipient"], recipient.as_str());
    assert_eq!(created["counts"]["entries"], 4);
    assert_eq!(created["counts"]["accounts"], 6);

    let fetched = s
        .get(&t.path(&format!("/exports/{id}")), &t.token)
        .await
        .ok(200);
    assert_eq!(fetched, created);
    let listed = s.get(&t.path("/exports"), &t.token).await.ok(200);
    assert_eq!(listed["exports"], json!([created]));

    let (status, bytes, headers) =
        download(&s, &t.token, created["download"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/octet-stream");
    let disposition = headers["content-disposition"].to_str().unwrap();
    assert!(
        disposition.starts_with("attachment; filename="),
        "{disposition}"
    );
    assert_eq!(bytes.len() as u64, created["size_bytes"].as_u64().unwrap());
    assert_eq!(
        wb_crypto::sha256_hex(&bytes),
        created["sha256"].as_str().unwrap()
    );
    assert!(bytes.starts_with(b"age-encryption.org/v1\n"));
    assert!(
        !contains(&bytes, SECRET_DESCRIPTION),
        "plaintext in the export"
    );
    assert!(!contains(&bytes, "Exporting Co"), "plaintext in the export");
    // Nor at rest in the object store.
    for file in walk(
        &s.data_dir
            .join("objects")
            .join("companies")
            .join(&t.id)
            .join("exports"),
    ) {
        let stored = std::fs::read(&file).unwrap();
        assert!(!contains(&stored, SECRET_DESCRIPTION), "{}", file.display());
    }

    let contents = exports::decrypt_and_read(&bytes, &Unlock::identity(identity)).unwrap();
    let m = &contents.manifest;
    assert_eq!(m.format, "workbooks-export");
    assert_eq!(m.version, 2);
    assert_eq!(m.export_id, id);
    assert_eq!(m.company.id, t.id);
    assert_eq!(m.company.name, "Exporting Co");
    assert_eq!(m.created_by, format!("user:{}", t.user_id));
    assert!(m.files.is_empty());
    assert_eq!(m.parts.len(), 4);

    // The books equal what the API serves.
    let accounts = s.get(&t.path("/accounts"), &t.token).await.ok(200);
    assert_eq!(serde_json::to_value(&contents.accounts).unwrap(), accounts);
    let entries = s.all_entries(&t, &t.token).await;
    assert_eq!(
        serde_json::to_value(&contents.entries).unwrap(),
        json!(entries)
    );
    assert!(contents
        .entries
        .iter()
        .any(|e| e.description == SECRET_DESCRIPTION));

    // The journal is complete up to the company's head.
    let store = s.platform.tenant(&t.id).await.unwrap();
    let head = store.stats().await.unwrap().journal_seq;
    assert_eq!(m.journal_seq, head);
    assert_eq!(contents.journal.len() as i64, head);
    assert_eq!(contents.journal.first().unwrap().seq, 1);

    // The audit trail equals the company's chain up to the export, and the
    // chain now records the export and its download.
    let audit = company_audit(&s, &t.id).await;
    let exported: Vec<_> = audit
        .iter()
        .take_while(|e| e.seq <= m.audit_seq)
        .map(exports::ExportAuditEvent::from)
        .collect();
    assert_eq!(contents.audit, exported);
    assert!(contents
        .audit
        .iter()
        .any(|e| e.action == Action::EntryPost.as_str()));
    assert!(contents
        .audit
        .iter()
        .any(|e| e.action == Action::EntryReverse.as_str()));
    let later: Vec<&str> = audit
        .iter()
        .filter(|e| e.seq > m.audit_seq)
        .map(|e| e.action.as_str())
        .collect();
    assert!(later.contains(&Action::ExportCreate.as_str()), "{later:?}");
    assert!(
        later.contains(&Action::ExportDownload.as_str()),
        "{later:?}"
    );
    let create = audit
        .iter()
        .find(|e| e.action == Action::ExportCreate.as_str())
        .unwrap();
    assert_eq!(
        create.target.as_deref(),
        Some(format!("export:{id}").as_str())
    );
    assert_eq!(create.actor, format!("user:{}", t.user_id));

    // Another identity opens nothing.
    let other = x25519::Identity::generate();
    let err = exports::decrypt_and_read(&bytes, &Unlock::identity(other)).unwrap_err();
    assert!(matches!(err, ReadError::Decrypt(_)), "{err}");
    // Nor a passphrase.
    let err = exports::decrypt_and_read(
        &bytes,
        &Unlock::Passphrase(Secret::new(EXPORT_PASSPHRASE.into())),
    )
    .unwrap_err();
    assert!(matches!(err, ReadError::Decrypt(_)), "{err}");
    // The OpenAPI document lists the routes.
    let doc = s.get_anon("/api/v1/openapi.json").await.ok(200);
    for path in [
        "/api/v1/companies/{company}/exports",
        "/api/v1/companies/{company}/exports/{export}",
        "/api/v1/companies/{company}/exports/{export}/download",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from OpenAPI"
        );
    }
    s.shutdown().await;
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_exports_fail() {
    let s = TestServer::start().await;
    let t = books(&s, "Tamper Co").await;
    let identity = x25519::Identity::generate();
    let created = s
        .post(
            &t.path("/exports"),
            &t.token,
            json!({ "recipient": identity.to_public().to_string() }),
        )
        .await
        .ok(201);
    let (_, bytes, _) = download(&s, &t.token, created["download"].as_str().unwrap()).await;
    let unlock = Unlock::identity(identity);
    assert!(exports::decrypt_and_read(&bytes, &unlock).is_ok());
    for at in [bytes.len() - 1, bytes.len() / 2, bytes.len() - 17] {
        let mut tampered = bytes.clone();
        tampered[at] ^= 0x01;
        let err = exports::decrypt_and_read(&tampered, &unlock).unwrap_err();
        assert!(matches!(err, ReadError::Decrypt(_)), "byte {at}: {err}");
    }
    let err = exports::decrypt_and_read(&bytes[..bytes.len() - 100], &unlock).unwrap_err();
    assert!(matches!(err, ReadError::Decrypt(_)), "truncated: {err}");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn passphrase_export_opens_with_the_passphrase_only() {
    let s = TestServer::start().await;
    let t = books(&s, "Passphrase Co").await;
    let resp = s
        .post(
            &t.path("/exports"),
            &t.token,
            json!({ "passphrase": EXPORT_PASSPHRASE }),
        )
        .await;
    assert!(!resp.text.contains(EXPORT_PASSPHRASE), "passphrase echoed");
    let created = resp.ok(201);
    assert_export_view(&created, &t);
    assert_eq!(created["encryption"], "age-scrypt");
    assert!(created["recipient"].is_null());

    let (status, bytes, _) = download(&s, &t.token, created["download"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    assert!(!contains(&bytes, SECRET_DESCRIPTION));
    assert!(!contains(&bytes, EXPORT_PASSPHRASE));

    let contents = exports::decrypt_and_read(
        &bytes,
        &Unlock::Passphrase(Secret::new(EXPORT_PASSPHRASE.into())),
    )
    .unwrap();
    assert_eq!(contents.manifest.company.id, t.id);
    assert_eq!(contents.entries.len(), 4);

    let err = exports::decrypt_and_read(
        &bytes,
        &Unlock::Passphrase(Secret::new("lantern oxide mosaic 93 turnip galaxz".into())),
    )
    .unwrap_err();
    assert_eq!(err, ReadError::Decrypt("wrong passphrase".into()));
    let err = exports::decrypt_and_read(&bytes, &Unlock::identity(x25519::Identity::generate()))
        .unwrap_err();
    assert!(matches!(err, ReadError::Decrypt(_)), "{err}");

    // The passphrase is nowhere: not in the metadata, the object store, the
    // audit trail or the log.
    for file in walk(&s.data_dir.join("objects")) {
        let stored = std::fs::read(&file).unwrap();
        assert!(!contains(&stored, EXPORT_PASSPHRASE), "{}", file.display());
    }
    for e in company_audit(&s, &t.id).await {
        assert!(!format!("{e:?}").contains(EXPORT_PASSPHRASE));
    }
    for file in walk(&s.data_dir) {
        if file.extension().is_some_and(|x| x == "log" || x == "jsonl") {
            let text = std::fs::read(&file).unwrap();
            assert!(!contains(&text, EXPORT_PASSPHRASE), "{}", file.display());
        }
    }
    s.shutdown().await;
}

async fn api_key(s: &TestServer, t: &Tenant, role: &str) -> String {
    let body = s
        .post(
            &t.path("/api-keys"),
            &t.token,
            json!({"name": format!("{role} key"), "role": role}),
        )
        .await
        .ok(201);
    body["token"].as_str().unwrap().to_string()
}

fn no_exports(resp: Resp) {
    assert_eq!(resp.ok(200)["exports"], json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_create_nothing() {
    let s = TestServer::start().await;
    let t = books(&s, "Careful Co").await;
    let other = s.signup("Nosy Co").await;
    let recipient = x25519::Identity::generate().to_public().to_string();
    let exports_path = t.path("/exports");

    // Bad inputs: 422 problems.
    s.post(&exports_path, &t.token, json!({}))
        .await
        .problem(422, "invalid-export-key");
    s.post(
        &exports_path,
        &t.token,
        json!({"recipient": recipient, "passphrase": EXPORT_PASSPHRASE}),
    )
    .await
    .problem(422, "invalid-export-key");
    let bad = s
        .post(&exports_path, &t.token, json!({"recipient": "age1notakey"}))
        .await
        .problem(422, "invalid-recipient");
    assert!(
        bad["detail"].as_str().unwrap().contains("recipient"),
        "{bad}"
    );
    s.post(
        &exports_path,
        &t.token,
        json!({"recipient": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA"}),
    )
    .await
    .problem(422, "invalid-recipient");
    for weak in ["password1234", "short", "Careful Co 2026"] {
        let resp = s
            .post(&exports_path, &t.token, json!({"passphrase": weak}))
            .await;
        assert!(
            !resp.text.contains(weak),
            "weak passphrase echoed: {}",
            resp.text
        );
        resp.problem(422, "weak-passphrase");
    }
    s.post(
        &exports_path,
        &t.token,
        json!({"recipient": recipient, "bucket": "x"}),
    )
    .await
    .problem(422, "invalid-field");
    no_exports(s.get(&exports_path, &t.token).await);

    // Roles: accountants and viewers may not export, admins may.
    for role in ["viewer", "accountant"] {
        let key = api_key(&s, &t, role).await;
        s.post(&exports_path, &key, json!({"recipient": recipient}))
            .await
            .problem(403, "forbidden");
        s.get(&exports_path, &key).await.problem(403, "forbidden");
    }
    no_exports(s.get(&exports_path, &t.token).await);

    // Another company's caller: 404 everywhere, nothing created.
    s.post(&exports_path, &other.token, json!({"recipient": recipient}))
        .await
        .problem(404, "not-found");
    s.get(&exports_path, &other.token)
        .await
        .problem(404, "not-found");
    no_exports(s.get(&exports_path, &t.token).await);

    // An existing export is invisible from the other company, under either path.
    let admin = api_key(&s, &t, "admin").await;
    let created = s
        .post(&exports_path, &admin, json!({"recipient": recipient}))
        .await
        .ok(201);
    let id = created["id"].as_str().unwrap();
    assert!(created["created_by"]
        .as_str()
        .unwrap()
        .starts_with("api_key:"));
    for path in [
        t.path(&format!("/exports/{id}")),
        t.path(&format!("/exports/{id}/download")),
    ] {
        s.get(&path, &other.token).await.problem(404, "not-found");
    }
    for path in [
        other.path(&format!("/exports/{id}")),
        other.path(&format!("/exports/{id}/download")),
    ] {
        s.get(&path, &other.token).await.problem(404, "not-found");
    }
    no_exports(s.get(&other.path("/exports"), &other.token).await);
    // Unknown and malformed export ids.
    for bad in [
        "0190a1b2-0000-7000-8000-000000000000",
        "not-an-id",
        "..%2F..%2Fjournal",
        "0190A1B2-0000-7000-8000-000000000000",
    ] {
        s.get(&t.path(&format!("/exports/{bad}")), &t.token)
            .await
            .problem(404, "not-found");
        s.get(&t.path(&format!("/exports/{bad}/download")), &t.token)
            .await
            .problem(404, "not-found");
    }
    let listed = s.get(&exports_path, &t.token).await.ok(200);
    assert_eq!(listed["exports"].as_array().unwrap().len(), 1);
    s.shutdown().await;
}

/// Five exports or downloads by one caller within ten minutes raise the
/// monitor's mass-export alert for the company.
#[tokio::test(flavor = "multi_thread")]
async fn many_exports_raise_the_mass_export_alert() {
    let s = TestServer::start().await;
    let t = books(&s, "Hoarding Co").await;
    let recipient = x25519::Identity::generate().to_public().to_string();
    let mut downloads = Vec::new();
    for _ in 0..3 {
        let created = s
            .post(
                &t.path("/exports"),
                &t.token,
                json!({ "recipient": recipient }),
            )
            .await
            .ok(201);
        downloads.push(created["download"].as_str().unwrap().to_string());
    }
    for path in &downloads[..2] {
        let (status, _, _) = download(&s, &t.token, path).await;
        assert_eq!(status, 200);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let alerts = s.platform.alerts.list(None, 100).await.unwrap();
        if let Some(alert) = alerts.iter().find(|a| a.rule == "mass-export") {
            assert_eq!(alert.company_id.as_deref(), Some(t.id.as_str()));
            assert!(alert.title.contains(&t.user_id), "{}", alert.title);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no mass-export alert: {alerts:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    s.shutdown().await;
}

/// Deterministic bytes that do not repeat (no compression could hide them).
fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 56) as u8
        })
        .collect()
}

/// Uploads an attachment; returns its JSON view.
async fn upload(
    s: &TestServer,
    t: &Tenant,
    query: &str,
    content_type: &'static str,
    bytes: Vec<u8>,
) -> Value {
    s.send(
        Method::POST,
        &t.path(&format!("/files{query}")),
        Some(&t.token),
        Body::Raw {
            content_type: Some(content_type),
            bytes,
        },
        &[],
    )
    .await
    .ok(201)
}

const RECEIPT_MARKER: &str = "RECEIPT-Quillfeather-4471";

/// An export holds every attachment recorded before it, decrypted, at a
/// safe flat path, listed in the manifest, with either key; files recorded
/// after it are not in it.
#[tokio::test(flavor = "multi_thread")]
async fn exports_hold_the_attachments() {
    let s = TestServer::start().await;
    let t = books(&s, "Attached Co").await;
    let entries = s.all_entries(&t, &t.token).await;
    let linked = entries[1]["id"].as_str().unwrap().to_string();
    let mut scan = content(6 * 1024 * 1024 + 12_345, 7);
    scan[3_000_000..3_000_000 + RECEIPT_MARKER.len()].copy_from_slice(RECEIPT_MARKER.as_bytes());
    let receipt = format!("{RECEIPT_MARKER}: 1200.50 EUR, paid\n").into_bytes();
    let big = upload(
        &s,
        &t,
        "?name=scan%202026%3A01%20(final).tiff",
        "image/tiff",
        scan.clone(),
    )
    .await;
    let small = upload(
        &s,
        &t,
        &format!("?name=re%C3%A7u.txt&entry={linked}"),
        "text/plain",
        receipt.clone(),
    )
    .await;

    let identity = x25519::Identity::generate();
    let created = s
        .post(
            &t.path("/exports"),
            &t.token,
            json!({ "recipient": identity.to_public().to_string() }),
        )
        .await
        .ok(201);
    assert_eq!(created["counts"]["files"], 2);
    assert_eq!(
        created["counts"]["file_bytes"],
        (scan.len() + receipt.len()) as u64
    );
    // A file recorded after the export is not in it.
    upload(&s, &t, "?name=later.txt", "text/plain", b"later".to_vec()).await;

    let (status, bytes, headers) =
        download(&s, &t.token, created["download"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(
        headers["content-length"].to_str().unwrap(),
        bytes.len().to_string()
    );
    assert_eq!(bytes.len() as u64, created["size_bytes"].as_u64().unwrap());
    assert_eq!(
        wb_crypto::sha256_hex(&bytes),
        created["sha256"].as_str().unwrap()
    );
    assert!(!contains(&bytes, RECEIPT_MARKER), "plaintext in the export");
    for file in walk(
        &s.data_dir
            .join("objects")
            .join("companies")
            .join(&t.id)
            .join("exports"),
    ) {
        let stored = std::fs::read(&file).unwrap();
        assert!(!contains(&stored, RECEIPT_MARKER), "{}", file.display());
    }

    let contents = exports::decrypt_and_read(&bytes, &Unlock::identity(identity)).unwrap();
    let m = &contents.manifest;
    assert_eq!(m.version, 2);
    assert_eq!(m.counts.files, 2);
    let big_id = big["id"].as_str().unwrap();
    let small_id = small["id"].as_str().unwrap();
    let paths: Vec<&str> = m.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            format!("files/{big_id}-scan_2026_01__final_.tiff"),
            format!("files/{small_id}-re_u.txt")
        ]
    );
    let (first, second) = (&m.files[0], &m.files[1]);
    assert_eq!(first.id, big_id);
    assert_eq!(first.name, "scan 2026:01 (final).tiff");
    assert_eq!(first.content_type, "image/tiff");
    assert_eq!(first.entry, None);
    assert_eq!(first.bytes, scan.len() as u64);
    assert_eq!(first.sha256, wb_crypto::sha256_hex(&scan));
    assert_eq!(second.name, "reçu.txt");
    assert_eq!(second.content_type, "text/plain");
    assert_eq!(second.entry.as_deref(), Some(linked.as_str()));
    assert_eq!(second.sha256, wb_crypto::sha256_hex(&receipt));
    assert!(
        contents.files[&first.path] == scan,
        "the scan's exact bytes"
    );
    assert_eq!(contents.files[&second.path], receipt);
    // The journal records both uploads, up to the export's position.
    let added = contents
        .journal
        .iter()
        .filter(|r| r.kind == "file_added")
        .count();
    assert_eq!(added, 2);

    // A passphrase export holds the same files.
    let created = s
        .post(
            &t.path("/exports"),
            &t.token,
            json!({ "passphrase": EXPORT_PASSPHRASE }),
        )
        .await
        .ok(201);
    assert_eq!(created["counts"]["files"], 3);
    let (_, bytes, _) = download(&s, &t.token, created["download"].as_str().unwrap()).await;
    let contents = exports::decrypt_and_read(
        &bytes,
        &Unlock::Passphrase(Secret::new(EXPORT_PASSPHRASE.into())),
    )
    .unwrap();
    assert_eq!(contents.manifest.files.len(), 3);
    let scan_path = &contents.manifest.files[0].path;
    assert!(contents.files[scan_path] == scan, "the scan's exact bytes");
    assert_eq!(contents.files[&contents.manifest.files[2].path], b"later");
    s.shutdown().await;
}

/// An attachment whose object is gone makes the export fail, leaving no
/// export behind (never an export that silently lacks a file).
#[tokio::test(flavor = "multi_thread")]
async fn an_export_with_an_unreadable_attachment_fails() {
    let s = TestServer::start().await;
    let t = books(&s, "Broken Files Co").await;
    let file = upload(
        &s,
        &t,
        "?name=gone.pdf",
        "application/pdf",
        content(1000, 3),
    )
    .await;
    let address = file["address"].as_str().unwrap();
    use object_store::ObjectStoreExt;
    s.platform
        .objects
        .delete(&wb_server::files::object_path(&t.id, address))
        .await
        .unwrap();
    let recipient = x25519::Identity::generate().to_public().to_string();
    let resp = s
        .post(
            &t.path("/exports"),
            &t.token,
            json!({ "recipient": recipient }),
        )
        .await;
    assert!(resp.status.is_server_error(), "{}", resp.text);
    no_exports(s.get(&t.path("/exports"), &t.token).await);
    s.shutdown().await;
}

/// The platform's object store with a gate in front of export uploads: each
/// export being written waits there, counted, until the test opens it.
#[derive(Debug)]
struct Gated {
    inner: std::sync::Arc<dyn object_store::ObjectStore>,
    open: tokio::sync::watch::Receiver<bool>,
    waiting: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl std::fmt::Display for Gated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gated({})", self.inner)
    }
}

#[async_trait::async_trait]
impl object_store::ObjectStore for Gated {
    async fn put_opts(
        &self,
        location: &object_store::path::Path,
        payload: object_store::PutPayload,
        opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &object_store::path::Path,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        if location.as_ref().contains("/exports/") {
            use std::sync::atomic::Ordering;
            self.waiting.fetch_add(1, Ordering::SeqCst);
            let mut open = self.open.clone();
            let _ = open.wait_for(|open| *open).await;
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &object_store::path::Path,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: futures_util::stream::BoxStream<
            'static,
            object_store::Result<object_store::path::Path>,
        >,
    ) -> futures_util::stream::BoxStream<'static, object_store::Result<object_store::path::Path>>
    {
        self.inner.delete_stream(locations)
    }

    fn list(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> futures_util::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>>
    {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> object_store::Result<object_store::ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &object_store::path::Path,
        to: &object_store::path::Path,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// With room for two exports on the node and one per company, two exports
/// being written at once (held at the gate, so they overlap for certain)
/// leave a third company a 503 and the first company's second export a 429,
/// each a problem document with Retry-After that creates nothing; once the
/// two are written, the others succeed.
#[tokio::test(flavor = "multi_thread")]
async fn exports_beyond_the_node_and_company_limits_are_refused_with_retry_after() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let (open, gate) = tokio::sync::watch::channel(false);
    let waiting = Arc::new(AtomicUsize::new(0));
    let s = Arc::new(
        TestServer::start_with_objects(
            {
                let waiting = waiting.clone();
                move |inner| {
                    Arc::new(Gated {
                        inner,
                        open: gate,
                        waiting,
                    })
                }
            },
            |config| {
                config.exports = exports::ExportLimits {
                    per_node: 2,
                    per_company: 1,
                }
            },
        )
        .await,
    );
    let a = books(&s, "First Exporter").await;
    let b = books(&s, "Second Exporter").await;
    let c = books(&s, "Third Exporter").await;
    let passphrase = json!({ "passphrase": EXPORT_PASSPHRASE });
    let running: Vec<_> = [&a, &b]
        .into_iter()
        .map(|t| {
            let (s, t, body) = (s.clone(), t.clone(), passphrase.clone());
            tokio::spawn(async move { s.post(&t.path("/exports"), &t.token, body).await })
        })
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while waiting.load(Ordering::SeqCst) < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the exports never reached the gate"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(s.platform.export_slots.running(), 2);

    // Refused at once (without a limit they would wait at the gate too).
    let refused = |t: &Tenant| {
        let (s, t, body) = (s.clone(), t.clone(), passphrase.clone());
        async move {
            tokio::time::timeout(
                std::time::Duration::from_secs(30),
                s.post(&t.path("/exports"), &t.token, body),
            )
            .await
            .expect("an export beyond the limits was not refused")
        }
    };
    let node_full = refused(&c).await;
    node_full.problem(503, "exports-busy");
    assert_eq!(node_full.header("retry-after"), Some("10"));
    let company_busy = refused(&a).await;
    company_busy.problem(429, "export-in-progress");
    assert_eq!(company_busy.header("retry-after"), Some("10"));
    // Refused before anything was read or recorded.
    no_exports(s.get(&c.path("/exports"), &c.token).await);
    assert!(!company_audit(&s, &c.id)
        .await
        .iter()
        .any(|e| e.action.starts_with("export.")));

    open.send(true).unwrap();
    for task in running {
        task.await.unwrap().ok(201);
    }
    assert_eq!(s.platform.export_slots.running(), 0);
    assert_eq!(
        s.get(&a.path("/exports"), &a.token).await.ok(200)["exports"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "the refused second export of A created nothing"
    );
    s.post(&c.path("/exports"), &c.token, passphrase.clone())
        .await
        .ok(201);
    s.post(&a.path("/exports"), &a.token, passphrase)
        .await
        .ok(201);
    match Arc::try_unwrap(s) {
        Ok(s) => s.shutdown().await,
        Err(_) => panic!("the server is still shared"),
    }
}
