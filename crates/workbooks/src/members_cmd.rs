//! `workbooks company members|invite|security-policy`: an operator's view
//! of a company's members, invitations and security policy, and inviting
//! as the company's owner would.

use anyhow::{anyhow, bail, Result};
use wb_core::Role;
use wb_server::dto::{rfc3339, InvitationView, MemberView};
use wb_server::Platform;
use wb_store::Actor;

async fn known_company(platform: &Platform, company: &str) -> Result<()> {
    if platform.control.company(company).await?.is_none() {
        bail!("no company {company:?}");
    }
    Ok(())
}

pub async fn list(platform: &Platform, company: &str, json: bool) -> Result<()> {
    known_company(platform, company).await?;
    let members = platform.control.members(company).await?;
    let pending = platform
        .control
        .pending_invitations(company, platform.now())
        .await?;
    if json {
        let members: Vec<MemberView> = members.iter().map(Into::into).collect();
        let pending: Vec<InvitationView> = pending.iter().map(Into::into).collect();
        println!(
            "{}",
            serde_json::json!({"members": members, "invitations": pending})
        );
        return Ok(());
    }
    for m in &members {
        println!("{}\t{}\t{}", m.user_id, m.role, m.email);
    }
    for i in &pending {
        println!(
            "invited\t{}\t{}\tuntil {}",
            i.role,
            i.email,
            rfc3339(i.expires_at)
        );
    }
    Ok(())
}

pub async fn security_policy(platform: &Platform, company: &str, json: bool) -> Result<()> {
    known_company(platform, company).await?;
    let policy = platform
        .control
        .company_policy(company)
        .await?
        .unwrap_or_default();
    if json {
        let view = wb_server::dto::SecurityPolicyView::from(&policy);
        println!("{}", serde_json::to_string(&view)?);
    } else {
        println!("{}", wb_core::security_policy::describe(&policy));
    }
    Ok(())
}

pub async fn invite(
    platform: &Platform,
    company: &str,
    email: &str,
    role: &str,
    json: bool,
) -> Result<()> {
    known_company(platform, company).await?;
    let role: Role = role.parse().map_err(|e| anyhow!("--role: {e}"))?;
    let created = platform
        .invite_to(company, Role::Owner, &Actor::system("cli"), email, role)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "id": created.record.id,
                "token": created.token.expose(),
                "expires_at": rfc3339(created.record.expires_at),
            })
        );
    } else {
        println!("invited {} as {role}", created.record.email);
        println!("token (shown once): {}", created.token.expose());
        println!("the email goes out from a running server's outbox");
    }
    Ok(())
}
