//! `workbooks backup verify [--company X] [--json]`: restores each company from
//! its shipped journal into a scratch store (left nowhere afterwards) and
//! compares checksums with the source at the shipped point.

use anyhow::{bail, Result};
use wb_server::backup_verify;
use wb_store::Actor;

use crate::cli::DeploymentArgs;
use crate::open_platform;

pub async fn verify(deployment: DeploymentArgs, company: Option<String>) -> Result<()> {
    let d = deployment.resolve()?;
    let platform = open_platform(&d).await?;
    let results = backup_verify::verify(&platform, company.as_deref()).await?;
    backup_verify::audit(&platform, &results, &Actor::system("cli")).await;
    let failed: Vec<_> = results.iter().filter(|v| !v.verified()).collect();
    if d.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "verified": failed.is_empty(),
                "companies": results,
            }))?
        );
    } else {
        for v in &results {
            println!("{}", v.line());
        }
    }
    match failed.as_slice() {
        [] => Ok(()),
        [one] => bail!(
            "the backup of company {} does not verify: {}",
            one.company_id,
            one.failure.as_deref().unwrap_or("")
        ),
        many => bail!(
            "the backups of {} of {} companies do not verify (first: {}: {})",
            many.len(),
            results.len(),
            many[0].company_id,
            many[0].failure.as_deref().unwrap_or("")
        ),
    }
}
