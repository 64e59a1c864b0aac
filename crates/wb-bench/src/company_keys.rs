//! `workbooks bench --company-keys`: rotating the key of a company of
//! `--large-entries` entries while writers keep posting to it: the time the
//! rotation takes, the longest any single post waited during it (the write
//! pause a customer sees), and the post rate during it next to the rate
//! before it. The baseline, in the same run, is the stop-the-world way: an
//! offline `sqlcipher_export` of a copy of the same database under a new key,
//! which is how long writes would wait if the re-key held them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use wb_crypto::{DataKey, MasterKey};
use wb_server::{Platform, SystemClock};
use wb_store::{Actor, WriteContext};

use crate::harness::{draft, tempdir_in};
use crate::report::{cores, render_rows, verdict, Row};
use crate::BenchArgs;

/// Writers posting one entry at a time during the measurement.
const WRITERS: u64 = 8;
/// The target for the longest write pause.
const PAUSE_TARGET: Duration = Duration::from_secs(1);

struct Load {
    posts: AtomicU64,
    /// Longest single post, in microseconds.
    longest_us: AtomicU64,
    stop: AtomicBool,
}

impl Load {
    fn reset(&self) {
        self.posts.store(0, Ordering::Relaxed);
        self.longest_us.store(0, Ordering::Relaxed);
    }
}

pub async fn run(args: &BenchArgs) -> Result<()> {
    let scratch = tempdir_in(args.data.as_deref())?;
    let dir = scratch.path().join("data");
    eprintln!("bench --company-keys: scratch data in {}", dir.display());
    let platform = Arc::new(Platform::open_embedded(
        &dir,
        MasterKey::generate(),
        Arc::new(SystemClock),
        time::Duration::hours(12),
    )?);
    eprintln!(
        "bench --company-keys: a company of {} entries",
        args.large_entries
    );
    let (company, _) = crate::backup::large_company(&platform, args.large_entries).await?;
    let store = platform.tenant(&company).await?;
    let db = dir.join("companies").join(format!("{company}.db"));
    let db_bytes = std::fs::metadata(&db)?.len();

    // Writers post throughout; each post's wait is recorded.
    let load = Arc::new(Load {
        posts: AtomicU64::new(0),
        longest_us: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (store, platform, load) = (store.clone(), platform.clone(), load.clone());
        writers.push(tokio::spawn(async move {
            let mut i = args_offset(w);
            while !load.stop.load(Ordering::Relaxed) {
                let ctx = WriteContext {
                    actor: Actor::system("bench"),
                    at: platform.now(),
                };
                let started = Instant::now();
                store.post_entries(vec![draft(i)], None, ctx).await?;
                let took = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                load.longest_us.fetch_max(took, Ordering::Relaxed);
                load.posts.fetch_add(1, Ordering::Relaxed);
                i += WRITERS;
            }
            Ok::<_, wb_store::StoreError>(())
        }));
    }
    // The rate before.
    let window = Duration::from_secs(args.seconds.max(1));
    tokio::time::sleep(Duration::from_millis(500)).await;
    load.reset();
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let before_rate = load.posts.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    let before_longest = load.longest_us.load(Ordering::Relaxed) as f64 / 1000.0;

    eprintln!("bench --company-keys: rotating under load");
    load.reset();
    let started = Instant::now();
    let report = platform
        .rotate_company_key(&company, Actor::system("bench"))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let rotation = started.elapsed().as_secs_f64();
    let during_posts = load.posts.load(Ordering::Relaxed);
    let during_rate = during_posts as f64 / rotation;
    // Posts queued behind the swap finish just after the rotation returns:
    // their waits count, so the longest is read once every writer stopped.
    load.stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await??;
    }
    let longest_ms = load.longest_us.load(Ordering::Relaxed) as f64 / 1000.0;
    let entries = store.stats().await?.entries;

    // The baseline: a stop-the-world re-key of a copy of the same file.
    eprintln!("bench --company-keys: the stop-the-world baseline");
    let baseline = offline_rekey_seconds(
        &scratch.path().join("offline.db"),
        &scratch.path().join("offline-rekeyed.db"),
        std::fs::metadata(&db)?.len(),
    )?;

    let rows = vec![
        Row {
            name: format!(
                "company key rotation of a company of {} entries ({} MiB database) while {WRITERS} writers post",
                args.large_entries,
                db_bytes >> 20
            ),
            measured: format!(
                "{rotation:.1} s (database re-key {:.1} s); {during_posts} posts went in meanwhile, {during_rate:.0}/s",
                report.database_rekey_ms / 1000.0
            ),
            baseline: format!(
                "stop-the-world `sqlcipher_export` of the same database under a new key: {baseline:.1} s of writes held; {before_rate:.0} posts/s before the rotation"
            ),
            ratio: format!("{:.2}× the rate before", during_rate / before_rate.max(1e-9)),
            target: "(time; no target)".into(),
            verdict: "—".into(),
        },
        Row {
            name: "longest write pause during the rotation".into(),
            measured: format!(
                "{longest_ms:.0} ms (longest single post; the final flush and swap held writes {:.1} ms)",
                report.database_write_pause_ms
            ),
            baseline: format!("longest single post before the rotation: {before_longest:.0} ms"),
            ratio: format!("{:.1}×", longest_ms / before_longest.max(1e-3)),
            target: "< 1 s".into(),
            verdict: verdict(longest_ms < PAUSE_TARGET.as_secs_f64() * 1000.0).into(),
        },
    ];
    anyhow::ensure!(
        entries as u64 >= args.large_entries + during_posts,
        "posts were lost: {entries} entries"
    );
    let table = render_rows(
        &format!(
            "Run: `workbooks bench --company-keys --large-entries {} --seconds {}` on {} cores, {} (release build), embedded SQLCipher store.",
            args.large_entries,
            args.seconds,
            cores(),
            time::OffsetDateTime::now_utc().date()
        ),
        &rows,
    );
    print!("{table}");
    crate::report::write_results(
        &args.out,
        "company-keys",
        Some("## Company key rotation (`workbooks bench --company-keys`)"),
        &table,
    )
}

fn args_offset(writer: u64) -> u64 {
    // Entries after the large company's, so drafts differ.
    10_000_000 + writer
}

/// Builds a SQLCipher database of `size` bytes under a key of its own
/// (the company's key never leaves the platform), then times
/// `sqlcipher_export` of it to `copy` under another key: the whole database
/// rewritten while nothing else may write.
fn offline_rekey_seconds(path: &std::path::Path, copy: &std::path::Path, size: u64) -> Result<f64> {
    let conn = wb_store::sqlite::open_encrypted(
        path,
        &DataKey::generate(),
        wb_store::sqlite::OpenMode::Create,
    )?;
    conn.execute_batch("CREATE TABLE filler (id INTEGER PRIMARY KEY, bytes BLOB NOT NULL);")?;
    {
        let mut insert = conn.prepare("INSERT INTO filler (bytes) VALUES (randomblob(3900))")?;
        conn.execute_batch("BEGIN")?;
        for _ in 0..size / 4096 {
            insert.execute([])?;
        }
        conn.execute_batch("COMMIT")?;
    }
    let new = DataKey::generate();
    let started = Instant::now();
    conn.execute_batch(&format!(
        "ATTACH DATABASE '{}' AS rekeyed KEY \"{}\"; SELECT sqlcipher_export('rekeyed'); DETACH DATABASE rekeyed;",
        copy.display(),
        &*new.sqlcipher_pragma_value()
    ))
    .context("sqlcipher_export")?;
    Ok(started.elapsed().as_secs_f64())
}
