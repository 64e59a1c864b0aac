//! The end of a company on the host: `workbooks company destroy` (the
//! operator's override of the grace period for a de-provisioned company)
//! and `workbooks certificate verify` (offline: no server, no key).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use wb_server::platform::Platform;
use wb_store::Actor;

#[derive(Debug, Subcommand)]
pub enum CertificateCommand {
    /// Check a certificate of destruction offline: its signature, and that
    /// the signing node was certified by the deployment key it names.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The certificate (JSON, as fetched or printed by `company destroy`).
    pub file: PathBuf,
    /// The deployment key (hex) the operator publishes (and the
    /// de-provisioning email names): required to call a certificate valid.
    #[arg(long, value_name = "HEX")]
    pub deployment_key: Option<String>,
    /// Print the verified certificate as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn verify(args: VerifyArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let checked =
        wb_server::destruction::certificate::verify(&text, args.deployment_key.as_deref())
            .map_err(|e| anyhow::anyhow!("{}: {e}", args.file.display()))?;
    let c = &checked.certificate;
    // Anyone can make a key and sign a certificate with it: without the
    // deployment's published key, an intact signature proves nothing.
    if args.deployment_key.is_none() {
        anyhow::bail!(
            "{}: the signature is intact, but it was made by deployment key {}: compare it with the key your provider publishes and run again with --deployment-key HEX",
            args.file.display(),
            checked.signature.deployment_public_key
        );
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&checked)?);
    } else {
        println!(
            "valid: company {} destroyed at {} ({} items, {} bytes in {} steps), signed by node {} of deployment key {}",
            c.company_id,
            c.destroyed_at,
            c.total_items,
            c.total_bytes,
            c.steps.len(),
            checked.signature.node_id,
            checked.signature.deployment_public_key
        );
    }
    Ok(())
}

/// Destroys a de-provisioned company now and prints its certificate.
pub async fn destroy(platform: &Platform, company: &str, confirm: bool, json: bool) -> Result<()> {
    if !confirm {
        anyhow::bail!("destroying a company cannot be undone: add --confirm");
    }
    let certificate = platform
        .destroy_company(company, true, Actor::system("cli"))
        .await
        .map_err(|e| anyhow::anyhow!("company {company}: {}", e.detail))?;
    if json {
        println!("{certificate}");
    } else {
        let signed: wb_server::destruction::certificate::SignedCertificate =
            serde_json::from_str(&certificate)?;
        println!(
            "company {company} destroyed; certificate {}:\n{certificate}",
            signed.certificate.id
        );
    }
    Ok(())
}

/// Exports a de-provisioned company for its owner, within its grace period,
/// into `out` (created; never overwritten).
pub async fn export(
    platform: &Platform,
    company: &str,
    recipient: &str,
    out: &std::path::Path,
    json: bool,
) -> Result<()> {
    use std::io::Write;
    let one_line =
        |e: wb_server::error::ServiceError| anyhow::anyhow!("company {company}: {}", e.detail);
    let scope = platform
        .admit_operator_export(company, crate::alerts_cmd::operator())
        .await
        .map_err(one_line)?;
    let record = scope
        .create_export(
            platform,
            wb_server::export_create::ExportKeyRequest::Recipient(recipient.to_string()),
        )
        .await
        .map_err(one_line)?;
    let (record, found) = scope
        .download_export(platform, &record.id)
        .await
        .map_err(one_line)?;
    let bytes = found.bytes().await?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)
        .with_context(|| format!("cannot create {}", out.display()))?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    if json {
        println!(
            "{}",
            serde_json::json!({"export": record.id, "out": out, "size_bytes": bytes.len(),
                "sha256": wb_crypto::sha256_hex(&bytes)})
        );
    } else {
        println!("export {} written to {}", record.id, out.display());
    }
    Ok(())
}
