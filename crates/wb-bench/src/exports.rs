//! `workbooks bench --exports`: the peak memory of concurrent passphrase
//! exports. Each holds its company's books in memory while it is written
//! and runs scrypt at 2^18 (256 MiB); the node bound
//! (`max-concurrent-exports`) is what keeps many parallel requests from
//! multiplying that. Measured over HTTPS in this process: the resident-set
//! high-water mark (`VmHWM`, reset through `/proc/self/clear_refs`, with a
//! 5 ms sampler of `VmRSS` as a fallback) while [`PARALLEL`] exports are
//! requested at once, first with the default bound, then with the bound
//! lifted; twenty unbounded exports are computed from the per-export cost.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::json;
use wb_crypto::MasterKey;
use wb_server::exports::ExportLimits;
use wb_server::{Platform, ServerConfig, SystemClock};
use wb_store::{Actor, WriteContext};

use crate::harness::{client, draft, tempdir_in, Target};
use crate::report::{cores, render_rows, Row};
use crate::BenchArgs;

/// Exports requested at once (one per company).
const PARALLEL: usize = 8;
/// What the issue counted: twenty exports from one owner.
const WOULD_BE: usize = 20;
/// Entries in each company's books.
const ENTRIES: u64 = 5_000;
const PASSPHRASE: &str = "lantern oxide mosaic 93 turnip galaxy";

fn status_kib(field: &str) -> Option<f64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn mib(kib: f64) -> f64 {
    kib / 1024.0
}

/// The resident-set peak over a stretch of work.
struct Peak {
    hwm_reset: bool,
    sampling: Arc<AtomicBool>,
    sampler: std::thread::JoinHandle<f64>,
}

impl Peak {
    fn start() -> Peak {
        // "5" resets the peak resident set size (Linux 4.0+).
        let hwm_reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
        let sampling = Arc::new(AtomicBool::new(true));
        let sampler = std::thread::spawn({
            let sampling = sampling.clone();
            move || {
                let mut peak: f64 = 0.0;
                while sampling.load(Ordering::Relaxed) {
                    peak = peak.max(status_kib("VmRSS:").unwrap_or(0.0));
                    std::thread::sleep(Duration::from_millis(5));
                }
                peak
            }
        });
        Peak {
            hwm_reset,
            sampling,
            sampler,
        }
    }

    /// The peak in MiB.
    fn finish(self) -> f64 {
        self.sampling.store(false, Ordering::Relaxed);
        let sampled = self.sampler.join().unwrap_or(0.0);
        let hwm = if self.hwm_reset {
            status_kib("VmHWM:").unwrap_or(0.0)
        } else {
            0.0
        };
        mib(sampled.max(hwm))
    }
}

struct Round {
    created: usize,
    node_busy: usize,
    company_busy: usize,
    other: usize,
    peak_mib: f64,
    seconds: f64,
}

/// Requests one passphrase export for each company at once.
async fn round(target: &Arc<Target>, companies: &[(String, String)]) -> Result<Round> {
    let peak = Peak::start();
    let start = Instant::now();
    let tasks: Vec<_> = companies
        .iter()
        .map(|(company, token)| {
            let (t, company, token) = (target.clone(), company.clone(), token.clone());
            tokio::spawn(async move {
                let url = format!("{}/api/v1/companies/{company}/exports", t.url);
                t.client
                    .post(url)
                    .bearer_auth(token)
                    .json(&json!({ "passphrase": PASSPHRASE }))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    let mut out = Round {
        created: 0,
        node_busy: 0,
        company_busy: 0,
        other: 0,
        peak_mib: 0.0,
        seconds: 0.0,
    };
    for task in tasks {
        match task.await? {
            Ok(201) => out.created += 1,
            Ok(503) => out.node_busy += 1,
            Ok(429) => out.company_busy += 1,
            _ => out.other += 1,
        }
    }
    out.seconds = start.elapsed().as_secs_f64();
    out.peak_mib = peak.finish();
    Ok(out)
}

pub async fn run(args: &BenchArgs) -> Result<()> {
    let scratch = tempdir_in(args.data.as_deref())?;
    let dir = scratch.path().join("data");
    eprintln!("bench --exports: scratch data in {}", dir.display());
    let platform = Arc::new(Platform::open_embedded(
        &dir,
        MasterKey::generate(),
        Arc::new(SystemClock),
        time::Duration::hours(12),
    )?);
    let config = ServerConfig::new(dir.clone(), "127.0.0.1:0".parse()?);
    let bound = config.exports.per_node;
    let server = wb_server::start(platform.clone(), &config, None).await?;
    let target = Arc::new(Target {
        url: server.url(),
        client: client(&dir)?,
    });

    eprintln!("bench --exports: {PARALLEL} companies of {ENTRIES} entries");
    let mut companies = Vec::new();
    for n in 0..PARALLEL {
        let (company, token) = target
            .signup(&format!("Export {n}"), &format!("export{n}@bench.example"))
            .await?;
        let store = platform.tenant(&company).await?;
        let drafts = (0..ENTRIES).map(draft).collect();
        let ctx = WriteContext {
            actor: Actor::system("bench"),
            at: platform.now(),
        };
        store.post_entries(drafts, None, ctx).await?;
        companies.push((company, token));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let baseline = mib(status_kib("VmRSS:").context("reading /proc/self/status")?);

    eprintln!("bench --exports: {PARALLEL} at once, node bound {bound}");
    let bounded = round(&target, &companies).await?;
    anyhow::ensure!(
        bounded.created >= 1 && bounded.other == 0,
        "bounded round: {} created, {} failed",
        bounded.created,
        bounded.other
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before_lifted = mib(status_kib("VmRSS:").unwrap_or(0.0));

    eprintln!("bench --exports: {PARALLEL} at once, bound lifted");
    platform.export_slots.set_limits(ExportLimits {
        per_node: PARALLEL,
        per_company: 1,
    });
    let lifted = round(&target, &companies).await?;
    anyhow::ensure!(
        lifted.created == PARALLEL,
        "lifted round: {} of {PARALLEL} created",
        lifted.created
    );
    server.shutdown().await?;

    let bounded_over = bounded.peak_mib - baseline;
    let lifted_over = lifted.peak_mib - before_lifted;
    let per_export = lifted_over / PARALLEL as f64;
    let would_be = baseline + per_export * WOULD_BE as f64;
    let rows = vec![
        Row {
            name: format!(
                "peak resident memory, {PARALLEL} passphrase exports requested at once, node bound {bound} (default: half the cores), {ENTRIES} entries a company"
            ),
            measured: format!(
                "{:.0} MiB peak (+{bounded_over:.0} MiB); {} created, {} refused 503 and {} refused 429 (with Retry-After), in {:.1} s",
                bounded.peak_mib, bounded.created, bounded.node_busy, bounded.company_busy, bounded.seconds
            ),
            baseline: format!("{baseline:.0} MiB before"),
            ratio: "-".into(),
            target: format!("peak grows with the bound ({bound}), not with the requests"),
            verdict: crate::report::verdict(bounded_over < lifted_over / 2.0).into(),
        },
        Row {
            name: format!("the same {PARALLEL} with the bound lifted (all {PARALLEL} at once)"),
            measured: format!(
                "{:.0} MiB peak (+{lifted_over:.0} MiB, {per_export:.0} MiB an export), in {:.1} s",
                lifted.peak_mib, lifted.seconds
            ),
            baseline: format!("{before_lifted:.0} MiB before"),
            ratio: format!("{:.1}x the bounded peak increase", lifted_over / bounded_over.max(1.0)),
            target: "-".into(),
            verdict: "-".into(),
        },
        Row {
            name: format!("{WOULD_BE} passphrase exports at once without a bound (computed: baseline + {WOULD_BE} x the cost of one)"),
            measured: format!("about {would_be:.0} MiB ({:.1} GiB)", would_be / 1024.0),
            baseline: format!("{baseline:.0} MiB"),
            ratio: "-".into(),
            target: "-".into(),
            verdict: "-".into(),
        },
    ];
    let table = render_rows(
        &format!(
            "Run: `workbooks bench --exports` on {} cores, {} (release build), embedded SQLCipher store, local-directory object store.",
            cores(),
            time::OffsetDateTime::now_utc().date()
        ),
        &rows,
    );
    print!("{table}");
    crate::report::write_results(
        &args.out,
        "exports",
        Some("## Concurrent exports (`workbooks bench --exports`)"),
        &table,
    )
}
