//! `workbooks bench --keys`: a master-key rotation over `--rotation-companies`
//! companies while a server serves reads, with the request rate during the
//! rotation next to the rate just before it (the same clients, the same run).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use wb_crypto::MasterKey;
use wb_server::keyring::Keyring;
use wb_server::keys_rotation::{rotate_master, RotationOptions};
use wb_server::{Platform, ServerConfig, StorageConfig, SystemClock};
use wb_store::{Actor, AuditEvent, CompanyRecord, CompanyStatus, Outcome};

use crate::harness::{client, tempdir_in, Target};
use crate::report::{cores, render_rows, verdict, Row};
use crate::BenchArgs;

/// Clients reading while the rotation runs.
const READERS: usize = 16;

pub async fn run(args: &BenchArgs) -> Result<()> {
    let scratch = tempdir_in(args.data.as_deref())?;
    let dir = scratch.path().join("data");
    eprintln!("bench --keys: scratch data in {}", dir.display());
    let old = MasterKey::generate();
    let platform = Arc::new(Platform::open_embedded(
        &dir,
        old.clone(),
        Arc::new(SystemClock),
        time::Duration::hours(12),
    )?);

    // The companies a rotation visits: their control rows and the object
    // store's copies of their wrapped keys. Their databases are not created:
    // a master-key rotation never opens them (the company keys stay).
    eprintln!(
        "bench --keys: {} companies with wrapped keys",
        args.rotation_companies
    );
    let wrapper = Keyring::new(old.clone());
    for n in 0..args.rotation_companies {
        let id = uuid::Uuid::now_v7().to_string();
        let record = CompanyRecord {
            wrapped_dek: wrapper.wrap_company_key(&id, &wb_crypto::DataKey::generate())?,
            id,
            name: format!("Rotated {n}"),
            status: CompanyStatus::Active,
            created_at: platform.now(),
        };
        let event = AuditEvent {
            at: platform.now(),
            actor: Actor::system("bench"),
            company_id: Some(record.id.clone()),
            action: wb_core::Action::CompanyCreate,
            target: None,
            outcome: Outcome::Success,
            detail: None,
        };
        platform.control.create_company(&record, &event).await?;
    }
    wb_server::dr::backup_config_once(&platform, &mut Default::default()).await?;

    let mut config = ServerConfig::new(dir.clone(), "127.0.0.1:0".parse()?);
    config.signups_per_address_per_hour = u32::MAX;
    let plenty = wb_server::rate_limit::Budget {
        per_minute: 100_000_000,
        burst: 10_000_000,
    };
    config.rate_limits = wb_server::rate_limit::RateLimits {
        per_address: plenty,
        sign_in_per_address: plenty,
        per_principal: plenty,
        unauthorized_per_address: plenty,
    };
    let server = wb_server::start(platform.clone(), &config, None).await?;
    let target = Arc::new(Target {
        url: server.url(),
        client: client(&dir)?,
    });
    let (company, token) = target
        .signup("Serving Ltd", "serving@bench.example")
        .await?;
    let url = format!("{}/api/v1/companies/{company}/accounts", target.url);

    // Readers that count what they get, until told to stop.
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..READERS {
        let (t, url, token) = (target.clone(), url.clone(), token.clone());
        let (ok, failed, stop) = (ok.clone(), failed.clone(), stop.clone());
        readers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let sent = t.client.get(&url).bearer_auth(&token).send().await;
                match sent {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let window = |seconds: f64, before: u64| (ok.load(Ordering::Relaxed) - before) as f64 / seconds;

    // Before: the same clients, `--seconds` long.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let start_ok = ok.load(Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let before_rate = window(started.elapsed().as_secs_f64(), start_ok);

    // During: the rotation runs as `workbooks keys rotate-master` would, in
    // a platform of its own holding both keys; the server learns the new
    // key from the handover while serving.
    eprintln!("bench --keys: rotating");
    let next = MasterKey::generate();
    let keyring = Keyring::new(old.clone());
    keyring.learn(next.clone());
    let rotator = Platform::open_with_keyring(
        &dir,
        keyring,
        Arc::new(SystemClock),
        time::Duration::hours(12),
        &StorageConfig::Embedded,
    )
    .await?
    .with_object_store(platform.objects.clone());
    let failed_before = failed.load(Ordering::Relaxed);
    let start_ok = ok.load(Ordering::Relaxed);
    let started = Instant::now();
    let options = RotationOptions::default();
    let report = rotate_master(&rotator, next, Actor::system("bench"), &options).await?;
    let seconds = started.elapsed().as_secs_f64();
    let during_rate = window(seconds, start_ok);
    let failed_during = failed.load(Ordering::Relaxed) - failed_before;
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        let _ = r.await;
    }
    server.shutdown().await?;

    let sweep = seconds - options.grace.as_secs_f64();
    let rows = vec![
        Row {
            name: format!(
                "master-key rotation over {} companies, while serving (grace for running nodes {} s included)",
                args.rotation_companies,
                options.grace.as_secs()
            ),
            measured: format!(
                "{seconds:.1} s ({sweep:.1} s after the grace): {} keys re-wrapped, {} secrets re-sealed, {} node certificates re-issued; rotation {}",
                report.rewrapped, report.resealed, report.recertified, report.status.rotation
            ),
            baseline: "—".into(),
            ratio: "—".into(),
            target: "< 60 s".into(),
            verdict: verdict(seconds < 60.0 && report.status.rotation == "complete").into(),
        },
        Row {
            name: format!(
                "requests served during the rotation: GET /accounts, {READERS} HTTPS clients"
            ),
            measured: format!("{during_rate:.0} req/s, {failed_during} failed"),
            baseline: format!("{before_rate:.0} req/s in the {} s before", args.seconds),
            ratio: format!("{:.2}x", during_rate / before_rate.max(1.0)),
            target: "served throughout, none failed".into(),
            verdict: verdict(failed_during == 0 && during_rate > 0.0).into(),
        },
    ];
    let table = render_rows(
        &format!(
            "Run: `workbooks bench --keys --rotation-companies {} --seconds {}` on {} cores, {} (release build), embedded SQLCipher store, local-directory object store.",
            args.rotation_companies,
            args.seconds,
            cores(),
            time::OffsetDateTime::now_utc().date()
        ),
        &rows,
    );
    print!("{table}");
    crate::report::write_results(
        &args.out,
        "keys",
        Some("## Master-key rotation (`workbooks bench --keys`)"),
        &table,
    )
}
