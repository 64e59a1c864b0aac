//! `workbooks bench --console`: the web console's server time and page
//! weight with a company of `--large-entries` entries (1,000,000 by
//! default), next to the same server's `/healthz` in the same run.
//!
//! One client asks for each page 200 times in a row over one kept-alive
//! HTTPS connection (after 10 warm-up requests) with the session cookie a
//! browser would send; the time is the client's, from request to the last
//! byte, so it bounds the server time from above. Pages: the dashboard,
//! the entries list's first page and its page 500 (by the keyset cursor a
//! browser follows), the trial balance. Weight: each page's HTML plus the
//! stylesheet and scripts it links.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use wb_crypto::MasterKey;
use wb_server::{Platform, ServerConfig, SystemClock};
use wb_store::{Actor, WriteContext};

use crate::harness::{client, draft, percentile, tempdir_in, Target};
use crate::report::{render_rows, verdict, Row};
use crate::BenchArgs;

const WARM_UP: usize = 10;
const SAMPLES: usize = 200;
/// The console's entries list shows this many a page.
const PAGE_SIZE: u64 = 50;
const TARGET_P99_MS: f64 = 50.0;
const TARGET_WEIGHT_KB: f64 = 150.0;

struct Timed {
    p50: f64,
    p99: f64,
    bytes: usize,
    body: String,
}

async fn time_page(target: &Target, cookie: &str, path: &str) -> Result<Timed> {
    let url = format!("{}{path}", target.url);
    let mut times = Vec::with_capacity(SAMPLES);
    let mut last = String::new();
    for i in 0..WARM_UP + SAMPLES {
        let started = Instant::now();
        let response = target
            .client
            .get(&url)
            .header("cookie", cookie)
            .send()
            .await?;
        let status = response.status();
        let body = response.text().await?;
        let micros = started.elapsed().as_micros() as u32;
        anyhow::ensure!(status.is_success(), "GET {path}: {status}");
        if i >= WARM_UP {
            times.push(micros);
        }
        last = body;
    }
    times.sort_unstable();
    Ok(Timed {
        p50: percentile(&times, 0.5),
        p99: percentile(&times, 0.99),
        bytes: last.len(),
        body: last,
    })
}

/// The assets a page links (`/assets/{hash}/{name}`), fetched once: their bytes.
async fn asset_bytes(target: &Target, page: &str) -> Result<usize> {
    let mut total = 0;
    for part in page.split("\"/assets/").skip(1) {
        let path = part.split('"').next().context("an asset link")?;
        let body = target
            .client
            .get(format!("{}/assets/{path}", target.url))
            .send()
            .await?
            .bytes()
            .await?;
        total += body.len();
    }
    Ok(total)
}

pub async fn run(args: &BenchArgs) -> Result<()> {
    let scratch = tempdir_in(args.data.as_deref())?;
    let dir = scratch.path().join("console");
    let platform = Arc::new(Platform::open_embedded(
        &dir,
        MasterKey::generate(),
        Arc::new(SystemClock),
        time::Duration::hours(12),
    )?);
    let config = ServerConfig::new(dir.clone(), "127.0.0.1:0".parse()?);
    let running = wb_server::start(platform.clone(), &config, None).await?;
    let target = Target {
        url: running.url(),
        client: client(&dir)?,
    };
    let (company, token) = target
        .signup("Bench Console", "console@bench.example")
        .await?;
    let entries = args.large_entries;
    eprintln!("bench --console: {entries} entries");
    let store = platform.tenant(&company).await?;
    let chunk = 5000u64;
    let mut posted = 0u64;
    while posted < entries {
        let n = chunk.min(entries - posted);
        let ctx = WriteContext {
            actor: Actor::system("bench"),
            at: platform.now(),
        };
        store
            .post_entries((posted..posted + n).map(draft).collect(), None, ctx)
            .await?;
        posted += n;
    }
    let cookie = format!("__Host-wb_session={token}");
    let base = format!("/c/{company}");
    // Page 500 of the newest-first list starts below this id (ids are 1..=entries).
    let page_500 = entries.saturating_sub(499 * PAGE_SIZE) + 1;
    let pages = [
        ("/healthz (baseline)", "/healthz".to_string()),
        ("dashboard", base.clone()),
        ("entries, first page", format!("{base}/entries")),
        (
            "entries, page 500",
            format!("{base}/entries?before={page_500}"),
        ),
        ("trial balance", format!("{base}/reports/trial-balance")),
    ];
    let mut measured = Vec::new();
    for (name, path) in &pages {
        eprintln!("bench --console: {name}");
        measured.push((*name, time_page(&target, &cookie, path).await?));
    }
    let assets = asset_bytes(&target, &measured[1].1.body).await?;
    running.shutdown().await?;
    drop(platform);

    let health = &measured[0].1;
    let mut rows = Vec::new();
    for (name, t) in &measured[1..] {
        rows.push(Row {
            name: format!("{name} ({entries} entries, {SAMPLES} GETs in a row, session cookie)"),
            measured: format!("p50 {:.1} ms, p99 {:.1} ms", t.p50, t.p99),
            baseline: format!(
                "/healthz p50 {:.1} ms, p99 {:.1} ms",
                health.p50, health.p99
            ),
            ratio: format!("{:.1}x (p99)", t.p99 / health.p99.max(0.001)),
            target: format!("p99 < {TARGET_P99_MS:.0} ms"),
            verdict: verdict(t.p99 < TARGET_P99_MS).into(),
        });
    }
    let heaviest = measured[1..]
        .iter()
        .map(|(_, t)| t.bytes)
        .max()
        .unwrap_or(0);
    let weight_kb = (heaviest + assets) as f64 / 1024.0;
    rows.push(Row {
        name: "heaviest page's HTML plus its stylesheet and scripts (uncompressed)".into(),
        measured: format!(
            "{weight_kb:.0} KB ({:.0} KB HTML, {:.0} KB assets)",
            heaviest as f64 / 1024.0,
            assets as f64 / 1024.0
        ),
        baseline: "-".into(),
        ratio: "-".into(),
        target: format!("< {TARGET_WEIGHT_KB:.0} KB"),
        verdict: verdict(weight_kb < TARGET_WEIGHT_KB).into(),
    });
    let table = render_rows(
        &format!(
            "Run: `workbooks bench --console --large-entries {entries}` on {} cores, {} (release build), embedded SQLCipher store.",
            crate::report::cores(),
            time::OffsetDateTime::now_utc().date()
        ),
        &rows,
    );
    print!("{table}");
    crate::report::write_results(
        &args.out,
        "console",
        Some("## Web console (`workbooks bench --console`)"),
        &table,
    )
}
