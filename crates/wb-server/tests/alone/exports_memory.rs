//! A customer export of a company with a large attachment is written and
//! served in bounded memory: a 64 MiB attachment is uploaded, then an export
//! is created (tar → age → multipart upload, streaming) and downloaded
//! (streamed from the object store) and verified (streaming, as `workbooks
//! export decrypt` does) while a counting allocator records the most heap
//! this process held at once (the server runs in this process). It holds the
//! process to itself (`crate::alone`), so no other test's allocations are
//! counted.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use wb_server::exports::age::x25519;
use wb_server::exports::{self, DiscardFiles, Unlock};

use crate::counting_alloc::{baseline, piece, MIB, PEAK, PIECE};
use crate::harness;

const FILE: usize = 64 * MIB;
/// The most heap creating, downloading or verifying the export may add: a
/// multipart part being filled and two uploading (5 MiB each), the channel
/// between the archive writer and the upload (1 MiB) and buffers; far below
/// the attachment's size.
const BOUND: usize = 24 * MIB;

fn mib(bytes: usize) -> f64 {
    bytes as f64 / MIB as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_with_a_64_mib_attachment_streams_in_bounded_memory() {
    let _alone = crate::alone().await;
    let srv = harness::TestServer::start().await;
    let tenant = srv.signup("Big Export Ltd").await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut expected = Sha256::new();
    for i in 0..FILE / PIECE {
        expected.update(piece(i));
    }
    let expected = hex::encode(expected.finalize());
    let body =
        futures_util::stream::iter(0..FILE / PIECE).map(|i| Ok::<_, std::io::Error>(piece(i)));
    let resp = srv
        .client
        .post(srv.url(&tenant.path("/files?name=video.mp4")))
        .bearer_auth(&tenant.token)
        .header("content-type", "video/mp4")
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .expect("upload");
    assert_eq!(resp.status(), 201);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let identity = x25519::Identity::generate();
    let started = std::time::Instant::now();
    let before = baseline();
    let created: serde_json::Value = srv
        .client
        .post(srv.url(&tenant.path("/exports")))
        .bearer_auth(&tenant.token)
        .json(&serde_json::json!({ "recipient": identity.to_public().to_string() }))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .unwrap();
    let create_peak = PEAK.load(Ordering::Relaxed) - before;
    let create_time = started.elapsed();
    assert_eq!(created["counts"]["files"], 1, "{created}");
    assert!(created["size_bytes"].as_u64().unwrap() > FILE as u64);

    // Download to a file, chunk by chunk.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("export.age");
    let mut out = std::fs::File::create(&path).unwrap();
    let started = std::time::Instant::now();
    let before = baseline();
    let mut resp = srv
        .client
        .get(srv.url(created["download"].as_str().unwrap()))
        .bearer_auth(&tenant.token)
        .send()
        .await
        .expect("download");
    assert_eq!(resp.status(), 200);
    let mut digest = Sha256::new();
    while let Some(chunk) = resp.chunk().await.expect("read") {
        digest.update(&chunk);
        out.write_all(&chunk).unwrap();
    }
    drop(out);
    let download_peak = PEAK.load(Ordering::Relaxed) - before;
    let download_time = started.elapsed();
    assert_eq!(
        hex::encode(digest.finalize()),
        created["sha256"].as_str().unwrap()
    );

    // Verify it as `workbooks export decrypt` does: streaming from the file.
    let before = baseline();
    let file = std::fs::File::open(&path).unwrap();
    let plain =
        exports::decrypting_reader(std::io::BufReader::new(file), &Unlock::identity(identity))
            .unwrap();
    let verified = exports::read_from(plain, &mut DiscardFiles).unwrap();
    let verify_peak = PEAK.load(Ordering::Relaxed) - before;
    assert_eq!(verified.manifest.files.len(), 1);
    assert_eq!(verified.manifest.files[0].sha256, expected);
    assert_eq!(verified.manifest.files[0].bytes, FILE as u64);

    eprintln!(
        "export with a 64 MiB attachment: creating added at most {:.1} MiB of heap \
         ({create_time:?}), downloading {:.1} MiB ({download_time:?}), verifying {:.1} MiB",
        mib(create_peak),
        mib(download_peak),
        mib(verify_peak)
    );
    assert!(
        create_peak < BOUND,
        "creating held {create_peak} bytes at once"
    );
    assert!(
        download_peak < BOUND,
        "downloading held {download_peak} bytes at once"
    );
    assert!(
        verify_peak < BOUND,
        "verifying held {verify_peak} bytes at once"
    );
}
