//! `workbooks bench --security`: what abuse costs well-behaved clients, how
//! fast logins are next to the raw Argon2id they are made of, and whether
//! the login's timing tells who has an account.
//!
//! 1. Flood: 16 well-behaved clients on 127.0.0.1 read a trial balance
//!    each of their own company, first alone, then while one client on
//!    127.0.0.2 floods logins and API requests over 64 connections; the
//!    server runs with the default budgets. Reported: the good clients'
//!    rate in both phases and what the flood got back (429s, other
//!    answers, timeouts).
//! 2. Logins per second with 1, 2 and 8 concurrent clients (each its own
//!    account; on a second server whose sign-in budget is lifted, so the
//!    budget is not what is measured), next to raw Argon2id verifications
//!    per second on as many threads.
//! 3. Timing: logins of unknown emails and of real accounts with a wrong
//!    passphrase, interleaved, each from its own loopback address and
//!    account (so throttles and delays do not enter), median and p99.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::json;
use wb_crypto::{hash_passphrase, verify_passphrase, MasterKey, Secret};
use wb_server::rate_limit::{Budget, RateLimits};
use wb_server::{Platform, ServerConfig, SystemClock};
use wb_store::{Actor, WriteContext};

use crate::harness::{draft, load, percentile, tempdir_in, Load, Target};
use crate::report::{cores, render_rows, verdict, Row};
use crate::BenchArgs;

const GOOD_CLIENTS: usize = 16;
const FLOOD_CONNECTIONS: usize = 64;
const ENTRIES: u64 = 200;
const TIMING_SAMPLES: usize = 300;
const PASSPHRASE: &str = "quartz meadow lantern orbit";
const FLOODER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

fn client_from(data: &std::path::Path, local: Option<IpAddr>) -> Result<reqwest::Client> {
    let pem = std::fs::read(data.join("tls/cert.pem"))?;
    let mut builder = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem)?)
        .tls_built_in_root_certs(false)
        .pool_max_idle_per_host(FLOOD_CONNECTIONS * 2)
        .timeout(Duration::from_secs(10));
    if let Some(local) = local {
        builder = builder.local_address(local);
    }
    Ok(builder.build()?)
}

async fn server(
    dir: &std::path::Path,
    configure: impl FnOnce(&mut ServerConfig),
) -> Result<(Arc<Platform>, wb_server::RunningServer)> {
    let platform = Arc::new(Platform::open_embedded(
        dir,
        MasterKey::generate(),
        Arc::new(SystemClock),
        time::Duration::hours(12),
    )?);
    let mut config = ServerConfig::new(dir.to_path_buf(), "127.0.0.1:0".parse()?);
    // The fixtures' own signups come from one address.
    config.signups_per_address_per_hour = 10_000;
    configure(&mut config);
    let running = wb_server::start(platform.clone(), &config, None).await?;
    Ok((platform, running))
}

/// What the flood got back.
#[derive(Default)]
struct Flood {
    refused: AtomicU64,
    answered: AtomicU64,
    failed: AtomicU64,
}

fn start_flood(
    url: String,
    client: reqwest::Client,
    victim: String,
    stop: Arc<AtomicBool>,
    flood: Arc<Flood>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..FLOOD_CONNECTIONS)
        .map(|n| {
            let (url, client, victim, stop, flood) = (
                url.clone(),
                client.clone(),
                victim.clone(),
                stop.clone(),
                flood.clone(),
            );
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let request = if (n + i as usize).is_multiple_of(2) {
                        client
                            .post(format!("{url}/api/v1/auth/login"))
                            .json(&json!({"email": victim, "passphrase": format!("guess {n} {i}")}))
                    } else {
                        client
                            .get(format!("{url}/api/v1/me"))
                            .bearer_auth(format!("wbs_flood{n}x{i}"))
                    };
                    match request.send().await {
                        Ok(r) if r.status().as_u16() == 429 => {
                            flood.refused.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(_) => {
                            flood.answered.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            flood.failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    i += 1;
                }
            })
        })
        .collect()
}

async fn good_load(
    target: &Arc<Target>,
    companies: &Arc<Vec<(String, String)>>,
    seconds: u64,
) -> Load {
    let (target, companies) = (target.clone(), companies.clone());
    load(GOOD_CLIENTS, seconds, 1, move |client, _| {
        let (target, companies) = (target.clone(), companies.clone());
        async move {
            let (company, token) = &companies[client % companies.len()];
            let url = format!(
                "{}/api/v1/companies/{company}/reports/trial-balance?as_of=2026-12-31",
                target.url
            );
            matches!(
                target.client.get(url).bearer_auth(token).send().await,
                Ok(r) if r.status().is_success()
            )
        }
    })
    .await
}

/// Raw Argon2id verifications per second on `threads` threads.
fn argon2_rate(threads: usize, seconds: u64) -> f64 {
    let pass = Secret::new(PASSPHRASE.into());
    let hash = hash_passphrase(&pass).unwrap_or_default();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (hash, pass, stop, done) = (hash.clone(), pass.clone(), stop.clone(), done.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    verify_passphrase(&hash, &pass);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

async fn login_load(
    target: &Arc<Target>,
    emails: &Arc<Vec<String>>,
    clients: usize,
    seconds: u64,
) -> Load {
    let (target, emails) = (target.clone(), emails.clone());
    load(clients, seconds, 1, move |client, _| {
        let (target, emails) = (target.clone(), emails.clone());
        async move {
            let email = &emails[client % emails.len()];
            matches!(
                target
                    .client
                    .post(format!("{}/api/v1/auth/login", target.url))
                    .json(&json!({"email": email, "passphrase": PASSPHRASE}))
                    .send()
                    .await,
                Ok(r) if r.status().is_success()
            )
        }
    })
    .await
}

/// Times one failed login from `local` (microseconds).
async fn timed_failure(
    data: &std::path::Path,
    url: &str,
    local: IpAddr,
    email: &str,
) -> Result<u32> {
    let client = client_from(data, Some(local))?;
    // The connection first, so only the login is timed.
    client.get(format!("{url}/healthz")).send().await?;
    let start = Instant::now();
    let r = client
        .post(format!("{url}/api/v1/auth/login"))
        .json(&json!({"email": email, "passphrase": "not the passphrase at all"}))
        .send()
        .await?;
    let took = start.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
    anyhow::ensure!(
        r.status().as_u16() == 401,
        "expected 401, got {}",
        r.status()
    );
    Ok(took)
}

pub async fn run(args: &BenchArgs) -> Result<()> {
    let scratch = tempdir_in(args.data.as_deref())?;
    let seconds = args.seconds;

    // 1. The flood, against the default budgets.
    let dir = scratch.path().join("flood");
    eprintln!("bench --security: flood server in {}", dir.display());
    let (platform, running) = server(&dir, |_| {}).await?;
    let defaults = RateLimits::default();
    let target = Arc::new(Target {
        url: running.url(),
        client: client_from(&dir, None)?,
    });
    let mut companies = Vec::new();
    for n in 0..GOOD_CLIENTS {
        let (company, token) = target
            .signup(&format!("Good {n}"), &format!("good{n}@bench.example"))
            .await?;
        let store = platform.tenant(&company).await?;
        let ctx = WriteContext {
            actor: Actor::system("bench"),
            at: platform.now(),
        };
        store
            .post_entries((0..ENTRIES).map(draft).collect(), None, ctx)
            .await?;
        companies.push((company, token));
    }
    let companies = Arc::new(companies);
    eprintln!("bench --security: {GOOD_CLIENTS} clients alone");
    let alone = good_load(&target, &companies, seconds).await;
    eprintln!("bench --security: the same with a flood from {FLOODER}");
    let stop = Arc::new(AtomicBool::new(false));
    let flood = Arc::new(Flood::default());
    let flooders = start_flood(
        target.url.clone(),
        client_from(&dir, Some(FLOODER))?,
        "good0@bench.example".into(),
        stop.clone(),
        flood.clone(),
    );
    // Past the flood's bursts, into its steady state.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let flooded = good_load(&target, &companies, seconds).await;
    stop.store(true, Ordering::Relaxed);
    for f in flooders {
        let _ = f.await;
    }
    running.shutdown().await?;
    drop(platform);
    let refused = flood.refused.load(Ordering::Relaxed);
    let answered = flood.answered.load(Ordering::Relaxed);
    let failed = flood.failed.load(Ordering::Relaxed);
    let share = flooded.rate() / alone.rate().max(f64::MIN_POSITIVE);

    // 2 and 3. Logins, on a server whose sign-in budget is lifted.
    let dir = scratch.path().join("logins");
    let (platform, running) = server(&dir, |c| {
        let plenty = Budget {
            per_minute: 10_000_000,
            burst: 1_000_000,
        };
        c.rate_limits = RateLimits {
            per_address: plenty,
            sign_in_per_address: plenty,
            per_principal: plenty,
            unauthorized_per_address: plenty,
        };
    })
    .await?;
    let target = Arc::new(Target {
        url: running.url(),
        client: client_from(&dir, None)?,
    });
    let mut emails = Vec::new();
    for n in 0..8 {
        let email = format!("login{n}@bench.example");
        target.signup(&format!("Login {n}"), &email).await?;
        emails.push(email);
    }
    let emails = Arc::new(emails);
    let mut login_rows = Vec::new();
    for clients in [1usize, 2, 8] {
        eprintln!("bench --security: logins, {clients} at once");
        let logins = login_load(&target, &emails, clients, seconds).await;
        let threads = clients.min(cores());
        let raw = argon2_rate(threads, seconds.min(5));
        login_rows.push(Row {
            name: format!("logins per second, {clients} concurrent (each its own account)"),
            measured: format!(
                "{:.1}/s (p50 {:.0} ms, p99 {:.0} ms, {} failed)",
                logins.rate(),
                logins.p50_ms,
                logins.p99_ms,
                logins.errors
            ),
            baseline: format!("{raw:.1} raw Argon2id verifications/s on {threads} thread(s)"),
            ratio: format!(
                "{:.0}% of raw",
                100.0 * logins.rate() / raw.max(f64::MIN_POSITIVE)
            ),
            target: if clients == 8 {
                "p99 < 250 ms".into()
            } else {
                "-".into()
            },
            verdict: if clients == 8 {
                verdict(logins.p99_ms < 250.0).into()
            } else {
                "-".into()
            },
        });
    }

    eprintln!(
        "bench --security: login timing, {TIMING_SAMPLES} unknown and {TIMING_SAMPLES} wrong"
    );
    // Each wrong-passphrase sample has an account of its own (no delays
    // from earlier failures), each sample an address of its own.
    let mut wrong_accounts = Vec::new();
    for n in 0..TIMING_SAMPLES {
        let email = format!("timing{n}@bench.example");
        platform
            .create_user(
                &email,
                &Secret::new(PASSPHRASE.into()),
                None,
                Actor::system("bench"),
            )
            .await
            .context("creating a timing account")?;
        wrong_accounts.push(email);
    }
    let (mut unknown, mut wrong) = (Vec::new(), Vec::new());
    for (n, account) in wrong_accounts.iter().enumerate() {
        let address =
            |k: usize| IpAddr::V4(Ipv4Addr::new(127, 1, (k / 250) as u8, (k % 250 + 1) as u8));
        unknown.push(
            timed_failure(
                &dir,
                &target.url,
                address(2 * n),
                &format!("nobody{n}@bench.example"),
            )
            .await?,
        );
        wrong.push(timed_failure(&dir, &target.url, address(2 * n + 1), account).await?);
    }
    running.shutdown().await?;
    unknown.sort_unstable();
    wrong.sort_unstable();
    let (u50, u99) = (percentile(&unknown, 0.5), percentile(&unknown, 0.99));
    let (w50, w99) = (percentile(&wrong, 0.5), percentile(&wrong, 0.99));
    let ratio50 = u50 / w50.max(f64::MIN_POSITIVE);
    let ratio99 = u99 / w99.max(f64::MIN_POSITIVE);
    let within = |r: f64| (0.9..=1.1).contains(&r);

    let mut rows = vec![
        Row {
            name: format!(
                "trial balances/s of {GOOD_CLIENTS} clients on 127.0.0.1 (each its own company and session) while one client floods logins and forged-token API requests from {FLOODER} over {FLOOD_CONNECTIONS} connections (default budgets: {}/min per address, {}/min per account, sign-in {}/min burst {}, 401s {}/min burst {})",
                defaults.per_address.per_minute,
                defaults.per_principal.per_minute,
                defaults.sign_in_per_address.per_minute,
                defaults.sign_in_per_address.burst,
                defaults.unauthorized_per_address.per_minute,
                defaults.unauthorized_per_address.burst
            ),
            measured: format!(
                "{:.0}/s (p99 {:.0} ms, {} failed)",
                flooded.rate(),
                flooded.p99_ms,
                flooded.errors
            ),
            baseline: format!("{:.0}/s with no flood (p99 {:.0} ms)", alone.rate(), alone.p99_ms),
            ratio: format!("{:.0}%", 100.0 * share),
            target: ">= 80% of the no-flood rate".into(),
            verdict: verdict(share >= 0.8).into(),
        },
        Row {
            name: "what the flood got back".into(),
            measured: format!(
                "{refused} answered 429 (with Retry-After), {answered} answered otherwise (401 within its budget), {failed} timeouts or errors"
            ),
            baseline: "-".into(),
            ratio: format!(
                "{:.1}% 429",
                100.0 * refused as f64 / (refused + answered + failed).max(1) as f64
            ),
            target: "429s, not timeouts".into(),
            verdict: verdict(failed == 0 && refused > answered).into(),
        },
    ];
    rows.extend(login_rows);
    rows.push(Row {
        name: format!(
            "failed-login time, unknown email vs wrong passphrase ({TIMING_SAMPLES} each, interleaved, each from its own address)"
        ),
        measured: format!("unknown: median {u50:.1} ms, p99 {u99:.1} ms"),
        baseline: format!("wrong passphrase: median {w50:.1} ms, p99 {w99:.1} ms"),
        ratio: format!("{ratio50:.2} (median), {ratio99:.2} (p99)"),
        target: "0.9-1.1".into(),
        verdict: verdict(within(ratio50) && within(ratio99)).into(),
    });
    let table = render_rows(
        &format!(
            "Run: `workbooks bench --security --seconds {seconds}` on {} cores, {} (release build), embedded SQLCipher store.",
            cores(),
            time::OffsetDateTime::now_utc().date()
        ),
        &rows,
    );
    print!("{table}");
    crate::report::write_results(
        &args.out,
        "security",
        Some("## Abuse limits and logins (`workbooks bench --security`)"),
        &table,
    )
}
