//! A large attachment streams through the server in bounded memory: 64 MiB
//! are uploaded from a generator and downloaded chunk by chunk while a
//! counting allocator records the most heap this process held at once (the
//! server runs in this process). It holds the process to itself
//! (`crate::alone`), so no other test's allocations are counted.

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use crate::counting_alloc::{baseline, piece, MIB, PEAK, PIECE};
use crate::harness;

const FILE: usize = 64 * MIB;
/// The most heap the upload or the download may add: a few multipart parts
/// (5 MiB each) and buffers, far below the file's size.
const BOUND: usize = 16 * MIB;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_mib_file_streams_in_bounded_memory() {
    let _alone = crate::alone().await;
    let srv = harness::TestServer::start().await;
    let tenant = srv.signup("Streaming Ltd").await;
    // Let start-up work (first shipping rounds, caches) settle.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut expected = Sha256::new();
    for i in 0..FILE / PIECE {
        expected.update(piece(i));
    }
    let expected = expected.finalize();

    let started = std::time::Instant::now();
    let before = baseline();
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
    let upload_peak = PEAK.load(Ordering::Relaxed) - before;
    let upload_time = started.elapsed();
    let file: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(file["size"], FILE as u64);

    let started = std::time::Instant::now();
    let before = baseline();
    let mut resp = srv
        .client
        .get(srv.url(&tenant.path(&format!("/files/{}", file["id"].as_str().unwrap()))))
        .bearer_auth(&tenant.token)
        .send()
        .await
        .expect("download");
    assert_eq!(resp.status(), 200);
    let mut digest = Sha256::new();
    let mut received = 0;
    while let Some(chunk) = resp.chunk().await.expect("read") {
        received += chunk.len();
        digest.update(&chunk);
    }
    let download_peak = PEAK.load(Ordering::Relaxed) - before;
    let download_time = started.elapsed();
    assert_eq!(received, FILE);
    assert_eq!(digest.finalize(), expected);

    eprintln!(
        "64 MiB file: upload added at most {:.1} MiB of heap ({upload_time:?}), \
         download {:.1} MiB ({download_time:?})",
        upload_peak as f64 / MIB as f64,
        download_peak as f64 / MIB as f64
    );
    assert!(
        upload_peak < BOUND,
        "upload held {upload_peak} bytes at once"
    );
    assert!(
        download_peak < BOUND,
        "download held {download_peak} bytes at once"
    );
}
