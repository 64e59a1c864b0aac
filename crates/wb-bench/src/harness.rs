//! What every section shares: the HTTPS client and its load generator, the
//! fixtures (companies, entries) and the scratch directory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::json;
use time::macros::date;
use wb_core::{EntryDraft, NewAccount, PostingDraft};
use wb_server::Platform;
use wb_store::{Actor, WriteContext};

pub(crate) const CLIENTS: usize = 64;
pub(crate) const SPREAD_COMPANIES: usize = 16;

const STRONG_PASSPHRASE: &str = "quartz meadow lantern orbit";

#[derive(Default)]
pub(crate) struct Load {
    pub(crate) ops: u64,
    pub(crate) seconds: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) errors: u64,
}

impl Load {
    pub(crate) fn rate(&self) -> f64 {
        self.ops as f64 / self.seconds
    }
}

pub(crate) fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[idx.min(sorted.len() - 1)]) / 1000.0
}

pub(crate) fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

pub(crate) struct Target {
    pub(crate) url: String,
    pub(crate) client: reqwest::Client,
}

impl Target {
    pub(crate) async fn signup(&self, name: &str, email: &str) -> Result<(String, String)> {
        let body = json!({"company_name": name, "email": email, "passphrase": STRONG_PASSPHRASE});
        let response = self
            .client
            .post(format!("{}/api/v1/signup", self.url))
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        let value: serde_json::Value = response.json().await?;
        anyhow::ensure!(status.as_u16() == 201, "signup failed: {value}");
        let company = value["company"]["id"]
            .as_str()
            .context("company id")?
            .to_string();
        let token = value["token"].as_str().context("token")?.to_string();
        for (code, kind) in [("1000", "asset"), ("4000", "income")] {
            let r = self
                .client
                .post(format!("{}/api/v1/companies/{company}/accounts", self.url))
                .bearer_auth(&token)
                .json(&json!({"code": code, "name": format!("Account {code}"), "type": kind}))
                .send()
                .await?;
            anyhow::ensure!(r.status().as_u16() == 201, "account creation failed");
        }
        Ok((company, token))
    }
}

pub(crate) fn entry_json(i: u64) -> serde_json::Value {
    let cents = 100 + (i % 10_000);
    let amount = format!("{}.{:02}", cents / 100, cents % 100);
    json!({
        "date": "2026-06-30",
        "description": format!("Sale {i}"),
        "postings": [
            {"account": "1000", "amount": amount, "currency": "USD"},
            {"account": "4000", "amount": format!("-{amount}"), "currency": "USD"},
        ]
    })
}

/// Runs `clients` loops of `request` for `seconds`, timing each request.
pub(crate) async fn load<F, Fut>(clients: usize, seconds: u64, per_op: u64, request: F) -> Load
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let request = Arc::new(request);
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let (request, stop, errors) = (request.clone(), stop.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies: Vec<u32> = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let ok = request(client, i).await;
                latencies.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                if !ok {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
            latencies
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for task in tasks {
        if let Ok(l) = task.await {
            all.extend(l);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_unstable();
    let errors = errors.load(Ordering::Relaxed);
    Load {
        ops: (all.len() as u64 - errors) * per_op,
        seconds: elapsed,
        p50_ms: percentile(&all, 0.50),
        p99_ms: percentile(&all, 0.99),
        errors,
    }
}

pub(crate) fn tempdir_in(base: Option<&Path>) -> Result<TempDir> {
    let base = base
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    let path = base.join(format!("workbooks-bench-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&path)?;
    Ok(TempDir(path))
}

pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn client(data: &Path) -> Result<reqwest::Client> {
    let pem = std::fs::read(data.join("tls/cert.pem"))?;
    Ok(reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem)?)
        .tls_built_in_root_certs(false)
        .pool_max_idle_per_host(CLIENTS * 2)
        .build()?)
}

/// Creates and writes to `count` companies; returns resident memory in MiB.
pub(crate) async fn companies_open(platform: &Arc<Platform>, count: u64) -> Result<f64> {
    companies_open_range(platform, 0..count).await
}

/// As `companies_open`, for the companies numbered `range` (names are "Memory n").
pub(crate) async fn companies_open_range(
    platform: &Arc<Platform>,
    range: std::ops::Range<u64>,
) -> Result<f64> {
    let count = range.end;
    let semaphore = Arc::new(tokio::sync::Semaphore::new(8));
    let mut tasks = Vec::new();
    for n in range {
        let (platform, semaphore) = (platform.clone(), semaphore.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = semaphore.acquire().await?;
            let company = platform
                .create_company(&format!("Memory {n}"), None)
                .await?;
            let store = platform.tenant(&company.id).await?;
            let ctx = WriteContext {
                actor: Actor::system("bench"),
                at: platform.now(),
            };
            store
                .create_account(
                    NewAccount::validate("1000", "Cash", "asset", None, None)?,
                    ctx.clone(),
                )
                .await?;
            store
                .create_account(
                    NewAccount::validate("4000", "Sales", "income", None, None)?,
                    ctx.clone(),
                )
                .await?;
            store.post_entries(vec![draft(n)], None, ctx).await?;
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    anyhow::ensure!(
        platform.tenants.open_count() as u64 >= count,
        "companies were closed"
    );
    Ok(rss_mib())
}

pub(crate) fn draft(i: u64) -> EntryDraft {
    let cents = 100 + (i % 10_000);
    let amount = format!("{}.{:02}", cents / 100, cents % 100);
    let day = date!(2026 - 01 - 01) + time::Duration::days((i % 365) as i64);
    EntryDraft {
        date: day,
        description: format!("Sale {i}"),
        reference: None,
        postings: vec![
            PostingDraft {
                account: "1000".into(),
                amount: amount.clone(),
                currency: "USD".into(),
            },
            PostingDraft {
                account: "4000".into(),
                amount: format!("-{amount}"),
                currency: "USD".into(),
            },
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_in_milliseconds_from_sorted_microseconds() {
        let sorted: Vec<u32> = (1..=100).map(|n| n * 1000).collect();
        assert_eq!(percentile(&sorted, 0.5), 51.0);
        assert_eq!(percentile(&sorted, 0.99), 99.0);
        assert_eq!(percentile(&[], 0.99), 0.0);
    }

    #[test]
    fn fixture_entries_balance_and_spread_over_the_year() {
        let d = draft(10_364);
        assert_eq!(d.postings[0].amount, "4.64");
        assert_eq!(d.postings[1].amount, "-4.64");
        assert_eq!(d.date, date!(2026 - 05 - 25));
        let j = entry_json(10_364);
        assert_eq!(j["postings"][0]["amount"], "4.64");
        assert_eq!(j["postings"][1]["amount"], "-4.64");
    }
}
