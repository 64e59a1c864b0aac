//! Attachments end to end over HTTPS: upload (streamed, encrypted,
//! deduplicated, size-limited), list, download (authenticated chunk by
//! chunk), isolation between companies, and restore of a company with files.

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use wb_core::Action;
use wb_server::backup::{self, RestoreTarget};
use wb_server::files::{files_prefix, object_path, sealed_size};

use super::harness::*;

/// Deterministic bytes that do not compress or repeat at chunk boundaries.
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

async fn upload(
    srv: &TestServer,
    tenant: &Tenant,
    token: &str,
    query: &str,
    content_type: Option<&'static str>,
    bytes: Vec<u8>,
) -> Resp {
    srv.send(
        Method::POST,
        &tenant.path(&format!("/files{query}")),
        Some(token),
        Body::Raw {
            content_type,
            bytes,
        },
        &[],
    )
    .await
}

/// A download read as bytes: status, headers, and the body or the error
/// that ended it.
async fn download(
    srv: &TestServer,
    path: &str,
    token: &str,
) -> (
    StatusCode,
    reqwest::header::HeaderMap,
    Result<Vec<u8>, reqwest::Error>,
) {
    // A download the server cuts off leaves its connection dead: never pool
    // it, or the next request could be sent on it.
    let resp = srv
        .client
        .get(srv.url(path))
        .bearer_auth(token)
        .header(reqwest::header::CONNECTION, "close")
        .send()
        .await
        .expect("send");
    let status = resp.status();
    let headers = resp.headers().clone();
    (status, headers, resp.bytes().await.map(|b| b.to_vec()))
}

/// Asks for a download the server must break off, and returns whether it
/// did: either the connection ends before any answer (hyper had the head
/// and the first chunks buffered when the bad chunk turned up, so nothing was
/// flushed) or the answer is a 200 whose body ends in an error. Never a
/// complete body, never another status.
async fn download_is_cut_off(srv: &TestServer, path: &str, token: &str) -> bool {
    let sent = srv
        .client
        .get(srv.url(path))
        .bearer_auth(token)
        .header(reqwest::header::CONNECTION, "close")
        .send()
        .await;
    match sent {
        Err(e) => e.is_request() && !e.is_timeout(),
        Ok(resp) => {
            assert_eq!(resp.status(), 200, "a broken download starts as a 200");
            resp.bytes().await.is_err()
        }
    }
}

/// Every object under a company's files prefix (temporary ones included).
async fn objects_of(srv: &TestServer, company: &str) -> Vec<ObjectPath> {
    let mut found: Vec<ObjectPath> = srv
        .platform
        .objects
        .list(Some(&files_prefix(company)))
        .map(|m| m.expect("list").location)
        .collect()
        .await;
    found.sort();
    found
}

async fn wait_shipped(srv: &TestServer, company: &str) {
    for _ in 0..100 {
        let status = backup::status(&srv.platform).await.expect("backup status");
        if status
            .iter()
            .any(|s| s.company_id == company && s.lag_records == 0)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("company {company} was not shipped in 10 s");
}

async fn company_with_entry(srv: &TestServer, name: &str) -> (Tenant, String) {
    let tenant = srv.signup(name).await;
    srv.chart(&tenant).await;
    let entry = srv
        .post_entry(
            &tenant,
            entry(
                "2026-02-01",
                "Office chairs",
                &[("5000", "240.00", "USD"), ("1000", "-240.00", "USD")],
            ),
        )
        .await;
    (tenant, entry)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_list_and_download() {
    let srv = TestServer::start().await;
    let (a, entry) = company_with_entry(&srv, "Files Inc").await;
    let receipt = content(70_000, 1);

    let created = upload(
        &srv,
        &a,
        &a.token,
        &format!("?name=receipt.png&entry={entry}"),
        Some("image/PNG"),
        receipt.clone(),
    )
    .await;
    let first = created.ok(201);
    assert_eq!(first["id"], "1");
    assert_eq!(first["name"], "receipt.png");
    assert_eq!(first["content_type"], "image/png");
    assert_eq!(first["size"], 70_000);
    assert_eq!(first["entry"], entry.as_str());
    assert_eq!(first["created_by"], format!("user:{}", a.user_id).as_str());
    let address = first["address"].as_str().unwrap().to_string();
    assert_eq!(address.len(), 64);
    assert!(first["created_at"].is_string());
    assert_eq!(
        created.header("location"),
        Some(a.path("/files/1").as_str())
    );

    // No Content-Type: stored as octet-stream; a name with spaces and umlauts.
    let second = upload(
        &srv,
        &a,
        &a.token,
        "?name=Quittung%20M%C3%A4rz%20%22final%22.pdf",
        None,
        b"%PDF-1.7 tiny".to_vec(),
    )
    .await
    .ok(201);
    assert_eq!(second["content_type"], "application/octet-stream");
    assert_eq!(second["name"], "Quittung März \"final\".pdf");
    assert_eq!(second["entry"], Value::Null);
    // An empty file is a file too.
    let empty = upload(
        &srv,
        &a,
        &a.token,
        "?name=empty.txt",
        Some("text/plain"),
        vec![],
    )
    .await
    .ok(201);
    assert_eq!(empty["size"], 0);

    let all = srv.get(&a.path("/files"), &a.token).await.ok(200);
    let ids: Vec<&str> = all["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["1", "2", "3"]);
    assert_eq!(all["files"][0], first);
    assert_eq!(all["next_after"], Value::Null);
    let linked = srv
        .get(&a.path(&format!("/files?entry={entry}")), &a.token)
        .await
        .ok(200);
    assert_eq!(linked["files"].as_array().unwrap().len(), 1);
    let page = srv.get(&a.path("/files?limit=2"), &a.token).await.ok(200);
    assert_eq!(page["next_after"], "2");
    let rest = srv
        .get(&a.path("/files?limit=2&after=2"), &a.token)
        .await
        .ok(200);
    assert_eq!(rest["files"][0]["id"], "3");

    let (status, headers, body) = download(&srv, &a.path("/files/1"), &a.token).await;
    assert_eq!(status, 200);
    assert!(body.unwrap() == receipt);
    assert_eq!(headers["content-type"], "image/png");
    assert_eq!(headers["content-length"], "70000");
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"receipt.png\"; filename*=UTF-8''receipt.png"
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let (_, headers, body) = download(&srv, &a.path("/files/2"), &a.token).await;
    assert_eq!(body.unwrap(), b"%PDF-1.7 tiny");
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"Quittung M_rz _final_.pdf\"; \
         filename*=UTF-8''Quittung%20M%C3%A4rz%20%22final%22.pdf"
    );
    let (status, _, body) = download(&srv, &a.path("/files/3"), &a.token).await;
    assert_eq!((status.as_u16(), body.unwrap().len()), (200, 0));
    srv.get(&a.path("/files/99"), &a.token)
        .await
        .problem(404, "not-found");
    srv.get(&a.path("/files/abc"), &a.token)
        .await
        .problem(404, "not-found");

    // The object is sealed: the plaintext is nowhere in it.
    let stored = srv
        .platform
        .objects
        .get(&object_path(&a.id, &address))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(stored.len() as u64, sealed_size(70_000));
    assert!(!stored.windows(32).any(|w| w == &receipt[1000..1032]));

    // A viewer reads but does not upload.
    let viewer = srv
        .post(
            &a.path("/api-keys"),
            &a.token,
            json!({"name": "auditor", "role": "viewer"}),
        )
        .await
        .ok(201)["token"]
        .as_str()
        .unwrap()
        .to_string();
    srv.get(&a.path("/files"), &viewer).await.ok(200);
    let (status, _, _) = download(&srv, &a.path("/files/1"), &viewer).await;
    assert_eq!(status, 200);
    upload(&srv, &a, &viewer, "?name=x.txt", None, b"x".to_vec())
        .await
        .problem(403, "forbidden");

    // Uploads, lists and downloads are in the company's audit trail.
    let store = srv.platform.tenant(&a.id).await.unwrap();
    let events = store.audit_events(0, 1000).await.unwrap();
    let count = |action: &str, outcome: &str| {
        events
            .iter()
            .filter(|e| e.action == action && e.outcome == outcome)
            .count()
    };
    assert_eq!(count(Action::FileUpload.as_str(), "success"), 3);
    assert!(count(Action::FilesList.as_str(), "success") >= 4);
    assert!(count(Action::FileDownload.as_str(), "success") >= 4);
    assert!(events
        .iter()
        .all(|e| !e.detail.clone().unwrap_or_default().contains("receipt")));

    let doc = srv.get_anon("/api/v1/openapi.json").await.ok(200);
    let files = &doc["paths"]["/api/v1/companies/{company}/files"];
    assert!(files["get"].is_object() && files["post"].is_object());
    assert!(doc["paths"]["/api/v1/companies/{company}/files/{file}"]["get"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_mebibytes_stream_through_and_equal_files_are_stored_once() {
    let srv = TestServer::start().await;
    let a = srv.signup("Big Files").await;
    let big = content(9 * 1024 * 1024 + 123, 7);
    let one = upload(
        &srv,
        &a,
        &a.token,
        "?name=scan.tiff",
        Some("image/tiff"),
        big.clone(),
    )
    .await
    .ok(201);
    let two = upload(
        &srv,
        &a,
        &a.token,
        "?name=scan-copy.tiff",
        Some("image/tiff"),
        big.clone(),
    )
    .await
    .ok(201);
    assert_ne!(one["id"], two["id"]);
    assert_eq!(one["address"], two["address"]);
    let address = one["address"].as_str().unwrap();
    // One object, no temporary objects left.
    assert_eq!(objects_of(&srv, &a.id).await, [object_path(&a.id, address)]);

    let (status, headers, body) = download(&srv, &a.path("/files/2"), &a.token).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-length"], big.len().to_string().as_str());
    let body = body.unwrap();
    assert_eq!(Sha256::digest(&body), Sha256::digest(&big));

    // The same bytes in another company: another key, another address.
    let b = srv.signup("Other Files").await;
    let other = upload(&srv, &b, &b.token, "?name=scan.tiff", None, big.clone())
        .await
        .ok(201);
    assert_ne!(other["address"], one["address"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_uploads_store_nothing() {
    let srv = TestServer::start_configured(|c| c.file_max_bytes = 256 * 1024).await;
    let (a, entry) = company_with_entry(&srv, "Careful Co").await;
    let small = b"fine".to_vec();
    for (query, content_type, status, slug) in [
        ("", Some("text/plain"), 422, "invalid-file-name"),
        ("?name=", Some("text/plain"), 422, "invalid-file-name"),
        (
            "?name=..%2Fetc%2Fpasswd",
            Some("text/plain"),
            422,
            "invalid-file-name",
        ),
        (
            "?name=a%0Ab.txt",
            Some("text/plain"),
            422,
            "invalid-file-name",
        ),
        (
            "?name=a.txt",
            Some("text plain"),
            422,
            "invalid-content-type",
        ),
        (
            "?name=a.txt&entry=999",
            Some("text/plain"),
            422,
            "unknown-entry",
        ),
        (
            "?name=a.txt&entry=abc",
            Some("text/plain"),
            422,
            "unknown-entry",
        ),
        (
            "?name=a.txt&folder=x",
            Some("text/plain"),
            400,
            "invalid-query",
        ),
    ] {
        upload(&srv, &a, &a.token, query, content_type, small.clone())
            .await
            .problem(status, slug);
    }
    // At the limit is fine; one byte more is not.
    upload(
        &srv,
        &a,
        &a.token,
        &format!("?name=limit.bin&entry={entry}"),
        None,
        content(256 * 1024, 3),
    )
    .await
    .ok(201);
    let before = objects_of(&srv, &a.id).await;
    assert_eq!(before.len(), 1);

    // Declared too large: refused before the body is read. The body waits,
    // so the answer arrives before it.
    let stalled = futures_util::stream::once(async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        Ok::<_, std::io::Error>(vec![0u8; 256 * 1024 + 1])
    });
    let resp = srv
        .client
        .post(srv.url(&a.path("/files?name=big.bin")))
        .bearer_auth(&a.token)
        .header("content-length", (256 * 1024 + 1).to_string())
        .body(reqwest::Body::wrap_stream(stalled))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 413);
    let problem: Value = resp.json().await.unwrap();
    assert_eq!(problem["type"], "urn:workbooks:problem:file-too-large");

    // Not declared (chunked): refused once the limit is passed.
    let pieces = futures_util::stream::iter(0..6).then(|i| async move {
        if i == 5 {
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        Ok::<_, std::io::Error>(content(64 * 1024, i))
    });
    let resp = srv
        .client
        .post(srv.url(&a.path("/files?name=big.bin")))
        .bearer_auth(&a.token)
        .body(reqwest::Body::wrap_stream(pieces))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 413);
    let problem: Value = resp.json().await.unwrap();
    assert_eq!(problem["type"], "urn:workbooks:problem:file-too-large");

    // The client gives up halfway: the upload is abandoned.
    let broken = futures_util::stream::iter(0..3).then(|i| async move {
        if i == 2 {
            return Err(std::io::Error::other("client gave up"));
        }
        Ok(content(64 * 1024, i))
    });
    let gave_up = srv
        .client
        .post(srv.url(&a.path("/files?name=half.bin")))
        .bearer_auth(&a.token)
        .body(reqwest::Body::wrap_stream(broken))
        .send()
        .await;
    assert!(gave_up.is_err() || gave_up.unwrap().status().is_client_error());

    // Nothing of any refusal is stored: one file, one object, no temporary
    // ones (not even a local multipart staging file).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(objects_of(&srv, &a.id).await, before);
    let on_disk = srv
        .data_dir
        .join("objects/companies")
        .join(&a.id)
        .join("files");
    let mut stack = vec![on_disk];
    let mut disk_files = Vec::new();
    while let Some(dir) = stack.pop() {
        for item in std::fs::read_dir(&dir).unwrap() {
            let path = item.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                disk_files.push(path);
            }
        }
    }
    assert_eq!(disk_files.len(), 1, "{disk_files:?}");
    let listed = srv.get(&a.path("/files"), &a.token).await.ok(200);
    assert_eq!(listed["files"].as_array().unwrap().len(), 1);
    let store = srv.platform.tenant(&a.id).await.unwrap();
    let refusals = store
        .audit_events(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == Action::FileUpload.as_str() && e.outcome == "failure")
        .count();
    assert!(refusals >= 2, "{refusals}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_company_sees_nothing() {
    let srv = TestServer::start().await;
    let a = srv.signup("Alpha Files").await;
    let b = srv.signup("Beta Files").await;
    upload(
        &srv,
        &a,
        &a.token,
        "?name=secret.pdf",
        None,
        b"alpha only".to_vec(),
    )
    .await
    .ok(201);
    srv.get(&a.path("/files"), &b.token)
        .await
        .problem(404, "not-found");
    srv.get(&a.path("/files/1"), &b.token)
        .await
        .problem(404, "not-found");
    upload(
        &srv,
        &a,
        &b.token,
        "?name=planted.pdf",
        None,
        b"beta".to_vec(),
    )
    .await
    .problem(404, "not-found");
    // B's own (empty) list, and A's list unchanged.
    let own = srv.get(&b.path("/files"), &b.token).await.ok(200);
    assert_eq!(own["files"], json!([]));
    srv.get(&b.path("/files/1"), &b.token)
        .await
        .problem(404, "not-found");
    let listed = srv.get(&a.path("/files"), &a.token).await.ok(200);
    assert_eq!(listed["files"].as_array().unwrap().len(), 1);
    assert!(objects_of(&srv, &b.id).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altered_objects_are_never_served_whole() {
    let srv = TestServer::start().await;
    let a = srv.signup("Tamper Target").await;
    let long = content(300_000, 11);
    let long_file = upload(&srv, &a, &a.token, "?name=long.bin", None, long.clone())
        .await
        .ok(201);
    let short_file = upload(
        &srv,
        &a,
        &a.token,
        "?name=short.bin",
        None,
        b"short".to_vec(),
    )
    .await
    .ok(201);
    let path = |file: &Value| object_path(&a.id, file["address"].as_str().unwrap());
    let objects = &srv.platform.objects;
    let read = |p: ObjectPath| async move {
        objects
            .get(&p)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec()
    };
    let original_long = read(path(&long_file)).await;
    let original_short = read(path(&short_file)).await;

    // A byte flipped in the third chunk: the download starts, then breaks.
    let mut altered = original_long.clone();
    altered[23 + 2 * 65_552 + 10] ^= 1;
    objects
        .put(&path(&long_file), PutPayload::from(altered))
        .await
        .unwrap();
    assert!(
        download_is_cut_off(&srv, &a.path("/files/1"), &a.token).await,
        "an altered object must not download completely"
    );

    // Cut short at a chunk boundary: the same.
    objects
        .put(
            &path(&long_file),
            PutPayload::from(original_long[..23 + 3 * 65_552].to_vec()),
        )
        .await
        .unwrap();
    assert!(
        download_is_cut_off(&srv, &a.path("/files/1"), &a.token).await,
        "a truncated object must not download completely"
    );

    // A one-chunk file altered, or replaced by another file's object: refused
    // before anything is sent.
    let mut altered = original_short.clone();
    *altered.last_mut().unwrap() ^= 1;
    objects
        .put(&path(&short_file), PutPayload::from(altered))
        .await
        .unwrap();
    srv.get(&a.path("/files/2"), &a.token)
        .await
        .problem(500, "file-unreadable");
    let third = upload(
        &srv,
        &a,
        &a.token,
        "?name=third.bin",
        None,
        b"third".to_vec(),
    )
    .await
    .ok(201);
    let third_object = read(path(&third)).await;
    objects
        .put(&path(&short_file), PutPayload::from(third_object))
        .await
        .unwrap();
    srv.get(&a.path("/files/2"), &a.token)
        .await
        .problem(500, "file-unreadable");
    // Missing altogether.
    objects.delete(&path(&short_file)).await.unwrap();
    srv.get(&a.path("/files/2"), &a.token)
        .await
        .problem(500, "file-unreadable");

    // Put back, both read again.
    objects
        .put(&path(&long_file), PutPayload::from(original_long))
        .await
        .unwrap();
    let (_, _, body) = download(&srv, &a.path("/files/1"), &a.token).await;
    assert!(body.unwrap() == long);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_company_reads_its_files() {
    let srv = TestServer::start().await;
    let (a, entry) = company_with_entry(&srv, "Restore Files").await;
    let big = content(200_000, 5);
    upload(
        &srv,
        &a,
        &a.token,
        &format!("?name=invoice.pdf&entry={entry}"),
        Some("application/pdf"),
        big.clone(),
    )
    .await
    .ok(201);
    upload(
        &srv,
        &a,
        &a.token,
        "?name=again.pdf",
        Some("application/pdf"),
        big.clone(),
    )
    .await
    .ok(201);
    upload(
        &srv,
        &a,
        &a.token,
        "?name=note.txt",
        Some("text/plain"),
        b"note".to_vec(),
    )
    .await
    .ok(201);
    wait_shipped(&srv, &a.id).await;

    let restored = backup::restore(&srv.platform, &a.id, RestoreTarget::Latest)
        .await
        .expect("restore");
    let r = Tenant {
        id: restored.company.id.clone(),
        ..a.clone()
    };
    let source_list = srv.get(&a.path("/files"), &a.token).await.ok(200);
    let restored_list = srv.get(&r.path("/files"), &a.token).await.ok(200);
    assert_eq!(
        restored_list, source_list,
        "same ids, names, addresses, links"
    );
    for (id, expected) in [("1", &big[..]), ("2", &big[..]), ("3", &b"note"[..])] {
        let (status, _, body) = download(&srv, &r.path(&format!("/files/{id}")), &a.token).await;
        assert_eq!(status, 200);
        assert!(body.unwrap() == expected, "file {id}");
    }
    // Re-sealed under the restored company's key: its objects are its own.
    let addresses: BTreeSet<String> = source_list["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["address"].as_str().unwrap().to_string())
        .collect();
    let expected: Vec<ObjectPath> = addresses.iter().map(|x| object_path(&r.id, x)).collect();
    assert_eq!(objects_of(&srv, &r.id).await, expected);
    for address in &addresses {
        let get = |c: &str| object_path(c, address);
        let source = srv
            .platform
            .objects
            .get(&get(&a.id))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let copy = srv
            .platform
            .objects
            .get(&get(&r.id))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_ne!(source, copy);
    }
    // The restored company keeps uploading, after the restored ids.
    let next = upload(
        &srv,
        &r,
        &a.token,
        "?name=after.txt",
        None,
        b"after".to_vec(),
    )
    .await
    .ok(201);
    assert_eq!(next["id"], "4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_file_object_fails_the_restore_and_leaves_nothing() {
    let srv = TestServer::start().await;
    let a = srv.signup("Lost Files").await;
    upload(&srv, &a, &a.token, "?name=kept.txt", None, b"kept".to_vec())
        .await
        .ok(201);
    let lost = upload(&srv, &a, &a.token, "?name=lost.txt", None, b"lost".to_vec())
        .await
        .ok(201);
    wait_shipped(&srv, &a.id).await;
    srv.platform
        .objects
        .delete(&object_path(&a.id, lost["address"].as_str().unwrap()))
        .await
        .unwrap();
    let companies_before = srv.platform.control.companies().await.unwrap().len();

    let error = backup::restore(&srv.platform, &a.id, RestoreTarget::Latest)
        .await
        .expect_err("a restore with a missing attachment fails");
    let message = format!("{error:#}");
    assert!(
        message.contains("attachment file 2") && message.contains("missing"),
        "{message}"
    );
    assert!(!message.contains('\n'), "one line: {message}");
    assert_eq!(
        srv.platform.control.companies().await.unwrap().len(),
        companies_before
    );
    // No other company's objects appeared.
    let prefixes = srv
        .platform
        .objects
        .list_with_delimiter(Some(&ObjectPath::from("companies")))
        .await
        .unwrap()
        .common_prefixes;
    assert_eq!(prefixes, [ObjectPath::from(format!("companies/{}", a.id))]);
    if super::BACKEND == Backend::Sqlite {
        let databases = std::fs::read_dir(srv.data_dir.join("companies"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "db")
            })
            .count();
        assert_eq!(databases, companies_before);
    }
}
