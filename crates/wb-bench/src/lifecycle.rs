//! `workbooks bench --lifecycle`: the destruction of a de-provisioned
//! company of `--large-entries` entries with `--attachment-mib` MiB of
//! attachments and its backups (journal segments, a snapshot, audit
//! segments, a configuration backup), every step of it, next to the
//! filesystem deleting a copy of the same files directly.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use object_store::{ObjectStoreExt, PutPayload};
use wb_crypto::MasterKey;
use wb_server::{Platform, SystemClock};
use wb_store::{Actor, AuditEvent, Deprovisioning, Outcome};

use crate::harness::tempdir_in;
use crate::report::{cores, render_rows, Row};
use crate::BenchArgs;

/// Size of each attachment written for the measurement.
const ATTACHMENT_BYTES: usize = 1024 * 1024;

pub async fn run(args: &BenchArgs) -> Result<()> {
    let scratch = tempdir_in(args.data.as_deref())?;
    let dir = scratch.path().join("data");
    eprintln!("bench --lifecycle: scratch data in {}", dir.display());
    let platform = Arc::new(Platform::open_embedded(
        &dir,
        MasterKey::generate(),
        Arc::new(SystemClock),
        time::Duration::hours(12),
    )?);

    eprintln!(
        "bench --lifecycle: a company of {} entries",
        args.large_entries
    );
    let (company, _) = crate::backup::large_company(&platform, args.large_entries).await?;
    eprintln!(
        "bench --lifecycle: {} MiB of attachments",
        args.attachment_mib
    );
    let mut payload = vec![0u8; ATTACHMENT_BYTES];
    for n in 0..args.attachment_mib {
        // Different bytes in each, as real files are.
        payload[..8].copy_from_slice(&n.to_le_bytes());
        let path = wb_server::files::files_prefix(&company).join(format!("bench-{n:06}"));
        platform
            .objects
            .put(&path, PutPayload::from(payload.clone()))
            .await?;
    }
    eprintln!("bench --lifecycle: backups");
    wb_server::jobs::shipper::ship_once(&platform, &mut Default::default()).await?;
    wb_server::backup::snapshot::take(&platform, &company).await?;
    wb_server::backup::audit_trail::ship_once(&platform, &mut Default::default()).await?;
    wb_server::dr::backup_config_once(&platform, &mut Default::default()).await?;

    // The baseline: the filesystem deleting a copy of the same files.
    let copy = scratch.path().join("copy");
    let (files, bytes) = copy_company_files(&dir, &company, &copy)?;
    let started = Instant::now();
    std::fs::remove_dir_all(&copy)?;
    let baseline = started.elapsed().as_secs_f64();

    let now = platform.now();
    let record = Deprovisioning {
        company_id: company.clone(),
        deprovisioned_at: now,
        deprovisioned_by: "user:bench".into(),
        destroy_after: now,
        certificate_id: uuid::Uuid::now_v7().to_string(),
        certificate_token_hash: "00".repeat(32),
        destruction_started_at: None,
        steps: Vec::new(),
        destroyed_at: None,
        certificate: None,
    };
    let event = AuditEvent {
        at: now,
        actor: Actor::system("bench"),
        company_id: Some(company.clone()),
        action: wb_core::Action::CompanyDeprovision,
        target: None,
        outcome: Outcome::Success,
        detail: None,
    };
    platform
        .control
        .deprovision_company(&record, &event)
        .await?;
    eprintln!("bench --lifecycle: destroying");
    let started = Instant::now();
    let certificate = platform
        .destroy_company(&company, false, Actor::system("bench"))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let signed = wb_server::destruction::certificate::verify(&certificate, None)?;
    let c = &signed.certificate;
    let steps: Vec<String> = c
        .steps
        .iter()
        .filter(|s| s.items > 0)
        .map(|s| format!("{} {} ({} MiB)", s.step.as_str(), s.items, s.bytes >> 20))
        .collect();

    let rows = vec![Row {
        name: format!(
            "destruction of a company of {} entries and {} MiB of attachments, with its backups",
            args.large_entries, args.attachment_mib
        ),
        measured: format!(
            "{seconds:.1} s for {} items, {} MiB: {}",
            c.total_items,
            c.total_bytes >> 20,
            steps.join(", ")
        ),
        baseline: format!(
            "rm -r of a copy of its {files} files ({} MiB): {baseline:.1} s",
            bytes >> 20
        ),
        ratio: format!("{:.1}×", seconds / baseline.max(1e-3)),
        target: "(time; no target)".into(),
        verdict: "—".into(),
    }];
    let table = render_rows(
        &format!(
            "Run: `workbooks bench --lifecycle --large-entries {} --attachment-mib {}` on {} cores, {} (release build), embedded SQLCipher store, local-directory object store.",
            args.large_entries,
            args.attachment_mib,
            cores(),
            time::OffsetDateTime::now_utc().date()
        ),
        &rows,
    );
    print!("{table}");
    crate::report::write_results(
        &args.out,
        "lifecycle",
        Some("## The end of a company (`workbooks bench --lifecycle`)"),
        &table,
    )
}

/// Copies the company's database files and its objects to `to`; answers
/// how many files and bytes.
fn copy_company_files(data: &Path, company: &str, to: &Path) -> Result<(u64, u64)> {
    let mut sources = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let file = data.join("companies").join(format!("{company}.db{suffix}"));
        if file.exists() {
            sources.push(file);
        }
    }
    let mut stack = vec![data.join("objects").join("companies").join(company)];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("{}", d.display()))? {
            let path = e?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                sources.push(path);
            }
        }
    }
    let (mut files, mut bytes) = (0, 0);
    for (n, source) in sources.iter().enumerate() {
        let dir = to.join(format!("{:03}", n / 1000));
        std::fs::create_dir_all(&dir)?;
        bytes += std::fs::copy(source, dir.join(n.to_string()))?;
        files += 1;
    }
    Ok((files, bytes))
}
