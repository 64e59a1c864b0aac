//! `workbooks bench --grants`: what the access door's grant check costs a
//! staff member's read, next to the same read by the company's owner in
//! the same run.
//!
//! One company with 1,000 entries; a support staff member holds an active
//! `books:read` grant (asked for, approved by the owner and by a manager,
//! all over HTTPS). 16 clients read the newest 50 entries
//! (`GET /api/v1/companies/{c}/entries?limit=50`) for `--seconds` as the
//! owner, then as the staff member, twice each, alternating to even out
//! drift. Both reads are recorded in the company's trail; the staff read
//! also authenticates a staff session (not cached) and reads the staff
//! member's grants for the company (never cached, so a revocation holds at
//! once on every node).

use std::sync::Arc;

use anyhow::{Context, Result};
use serde_json::{json, Value};
use wb_core::staff::StaffRole;
use wb_crypto::{MasterKey, Secret, TotpSecret};
use wb_server::{Platform, ServerConfig, SystemClock};
use wb_store::{Actor, WriteContext};

use crate::harness::{client, draft, load, tempdir_in, Load, Target};
use crate::report::{render_rows, verdict, Row};
use crate::BenchArgs;

const CLIENTS: usize = 16;
const ENTRIES: u64 = 1_000;
const ROUNDS: usize = 2;
const TARGET_OVERHEAD: f64 = 0.10;
const STAFF_PASSPHRASE: &str = "orbit lantern quarry 58 mossy anvil";

async fn send(target: &Target, path: &str, token: Option<&str>, body: Value) -> Result<Value> {
    let mut request = target
        .client
        .post(format!("{}{path}", target.url))
        .json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await?;
    let status = response.status();
    let value: Value = response.json().await?;
    anyhow::ensure!(status.is_success(), "POST {path}: {status} {value}");
    Ok(value)
}

/// A staff member with `roles`, signed in: their token.
async fn staff_token(
    platform: &Platform,
    target: &Target,
    email: &str,
    roles: &[StaffRole],
) -> Result<String> {
    let created = platform
        .create_staff(
            email,
            roles,
            &Secret::from(STAFF_PASSPHRASE.to_string()),
            wb_server::staff::host_actor(),
        )
        .await?;
    let uri = created.totp_uri.expose();
    let secret = uri
        .split(['?', '&'])
        .find_map(|part| part.strip_prefix("secret="))
        .context("a secret in the authenticator URI")?;
    let secret = TotpSecret::from_base32(secret)?;
    let now = u64::try_from(platform.now().unix_timestamp())?;
    let otp = secret.code_at(now)?;
    let answer = send(
        target,
        "/api/v1/staff/auth/login",
        None,
        json!({"email": email, "passphrase": STAFF_PASSPHRASE, "otp": otp.expose()}),
    )
    .await?;
    Ok(answer["token"]
        .as_str()
        .context("a staff token")?
        .to_string())
}

async fn read_load(target: &Target, path: &str, token: &str, seconds: u64) -> Load {
    let (client, url, token) = (
        target.client.clone(),
        format!("{}{path}", target.url),
        token.to_string(),
    );
    load(CLIENTS, seconds, 1, move |_, _| {
        let (client, url, token) = (client.clone(), url.clone(), token.clone());
        async move {
            match client.get(&url).bearer_auth(&token).send().await {
                Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                Err(_) => false,
            }
        }
    })
    .await
}

pub async fn run(args: &BenchArgs) -> Result<()> {
    let scratch = tempdir_in(args.data.as_deref())?;
    let dir = scratch.path().join("grants");
    let platform = Arc::new(Platform::open_embedded(
        &dir,
        MasterKey::generate(),
        Arc::new(SystemClock),
        time::Duration::hours(12),
    )?);
    let mut config = ServerConfig::new(dir.clone(), "127.0.0.1:0".parse()?);
    // One principal reads thousands of times a second here: lift its
    // request budget (200/s by default), which would answer 429.
    config.rate_limits.per_principal = wb_server::rate_limit::Budget {
        per_minute: 10_000_000,
        burst: 1_000_000,
    };
    let running = wb_server::start(platform.clone(), &config, None).await?;
    let target = Target {
        url: running.url(),
        client: client(&dir)?,
    };
    let (company, owner) = target
        .signup("Bench Grants", "grants@bench.example")
        .await?;
    let store = platform.tenant(&company).await?;
    let ctx = WriteContext {
        actor: Actor::system("bench"),
        at: platform.now(),
    };
    store
        .post_entries((0..ENTRIES).map(draft).collect(), None, ctx)
        .await?;
    let sam = staff_token(
        &platform,
        &target,
        "sam@bench.example",
        &[StaffRole::Support],
    )
    .await?;
    let max = staff_token(
        &platform,
        &target,
        "max@bench.example",
        &[StaffRole::Management],
    )
    .await?;
    let grant = send(
        &target,
        "/api/v1/staff/access-grants",
        Some(&sam),
        json!({"company": company, "reason": "Benchmark of the grant check on reads",
               "scope": "books:read", "duration_minutes": 240}),
    )
    .await?;
    let id = grant["id"].as_str().context("a grant id")?;
    send(
        &target,
        &format!("/api/v1/companies/{company}/access-grants/{id}/approve"),
        Some(&owner),
        json!({}),
    )
    .await?;
    let active = send(
        &target,
        &format!("/api/v1/staff/access-grants/{id}/approve"),
        Some(&max),
        json!({}),
    )
    .await?;
    anyhow::ensure!(
        active["state"] == "active",
        "the grant did not open: {active}"
    );

    let path = format!("/api/v1/companies/{company}/entries?limit=50");
    let (mut owner_loads, mut staff_loads) = (Vec::new(), Vec::new());
    // A warm-up of each, then owner, staff, staff, owner (and again): the
    // trail grows as they run, so neither always goes first.
    read_load(&target, &path, &owner, 2).await;
    read_load(&target, &path, &sam, 2).await;
    for round in 0..ROUNDS {
        for staff_turn in [false, true, true, false] {
            let (who, token) = if staff_turn {
                ("staff", &sam)
            } else {
                ("owner", &owner)
            };
            let l = read_load(&target, &path, token, args.seconds).await;
            eprintln!(
                "bench --grants: round {} {who}: {:.0} reads/s, p99 {:.1} ms, {} errors",
                round + 1,
                l.rate(),
                l.p99_ms,
                l.errors
            );
            if staff_turn {
                staff_loads.push(l);
            } else {
                owner_loads.push(l);
            }
        }
    }
    running.shutdown().await?;
    drop(platform);

    let total = |loads: &[Load]| -> (f64, u64, f64) {
        let ops: u64 = loads.iter().map(|l| l.ops).sum();
        let seconds: f64 = loads.iter().map(|l| l.seconds).sum();
        let errors = loads.iter().map(|l| l.errors).sum();
        let p99 = loads.iter().map(|l| l.p99_ms).fold(0.0, f64::max);
        (ops as f64 / seconds, errors, p99)
    };
    let (owner_rate, owner_errors, owner_p99) = total(&owner_loads);
    let (staff_rate, staff_errors, staff_p99) = total(&staff_loads);
    anyhow::ensure!(
        owner_errors == 0 && staff_errors == 0,
        "reads failed: {owner_errors} as the owner, {staff_errors} as staff"
    );
    let overhead = 1.0 - staff_rate / owner_rate;
    let rows = vec![Row {
        name: format!(
            "grant check on a staff read: GET /entries?limit=50 of a {ENTRIES}-entry company, {CLIENTS} clients, staff under an active grant vs the owner (owner, staff, staff, owner, {ROUNDS} times)"
        ),
        measured: format!(
            "{staff_rate:.0} reads/s as staff (p99 {staff_p99:.1} ms): {:.1}% overhead",
            overhead * 100.0
        ),
        baseline: format!("{owner_rate:.0} reads/s as the owner (p99 {owner_p99:.1} ms)"),
        ratio: format!("{:.2}x", staff_rate / owner_rate),
        target: "< 10% overhead".into(),
        verdict: verdict(overhead < TARGET_OVERHEAD).into(),
    }];
    let table = render_rows(
        &format!(
            "Run: `workbooks bench --grants --seconds {}` on {} cores, {} (release build), embedded SQLCipher store.",
            args.seconds,
            crate::report::cores(),
            time::OffsetDateTime::now_utc().date()
        ),
        &rows,
    );
    print!("{table}");
    crate::report::write_results(
        &args.out,
        "grants",
        Some("## Staff access grants (`workbooks bench --grants`)"),
        &table,
    )
}
