//! A management approval to restore a company into a sandbox: a token that
//! carries what it is bound to (company, the reason's digest, approver,
//! expiry), signed by a node key this deployment certified, and used once
//! (a control cursor per approval: 1 issued, 2 used; the use is counted as
//! an attempt with a budget of one, so two restores cannot both take it).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::platform::Platform;

pub(crate) const TOKEN_PREFIX: &str = "wbsbx_";
const ISSUED: i64 = 1;
const USED: i64 = 2;

/// What an approval binds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Approval {
    pub company_id: String,
    pub reason_sha256: String,
    pub approver: String,
    pub approved_at: i64,
    pub expires_at: i64,
    pub nonce: String,
    pub node: String,
}

pub(crate) fn reason_digest(reason: &str) -> String {
    hex::encode(Sha256::digest(reason.trim().as_bytes()))
}

fn cursor(nonce: &str) -> String {
    format!("sandbox-approval:{nonce}")
}

impl Approval {
    pub fn expires(&self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(self.expires_at).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

/// Signs `approval` and records it as issued; returns the token.
pub(crate) async fn issue(platform: &Platform, approval: &Approval) -> anyhow::Result<String> {
    // The CLI signs on the host, perhaps before any server registered this
    // node's key: register (certify) it so the signature can be checked.
    platform
        .register_node()
        .await
        .map_err(|e| anyhow::anyhow!("registering this node's key: {e}"))?;
    let body = serde_json::to_vec(approval)?;
    let signature = platform.node_key.sign(&body);
    platform
        .control
        .set_cursor(&cursor(&approval.nonce), ISSUED)
        .await?;
    Ok(format!(
        "{TOKEN_PREFIX}{}.{}",
        hex::encode(&body),
        hex::encode(signature)
    ))
}

/// The approval in `token`, when a certified node of this deployment
/// signed it; says why not otherwise. Does not check use or binding.
pub(crate) async fn read(platform: &Platform, token: &str) -> Result<Approval, String> {
    let malformed = || "the approval token is malformed".to_string();
    let rest = token
        .trim()
        .strip_prefix(TOKEN_PREFIX)
        .ok_or_else(malformed)?;
    let (body, signature) = rest.split_once('.').ok_or_else(malformed)?;
    let body = hex::decode(body).map_err(|_| malformed())?;
    let signature = hex::decode(signature).map_err(|_| malformed())?;
    let approval: Approval = serde_json::from_slice(&body).map_err(|_| malformed())?;
    let nodes = platform
        .control
        .node_keys()
        .await
        .map_err(|e| format!("reading the node keys: {e}"))?;
    let certifiers = platform.keyring().node_certifiers();
    let signed = nodes.iter().any(|n| {
        n.id == approval.node
            && wb_crypto::verify_signature(&n.public_key, &body, &signature)
            && n.certificate.as_deref().is_some_and(|c| {
                certifiers
                    .iter()
                    .any(|k| k.is_certified(&n.id, &n.public_key, c))
            })
    });
    if !signed {
        return Err("the approval token is not signed by this deployment".into());
    }
    Ok(approval)
}

/// Takes the approval for one restore: refused when used, unknown or
/// expired. The lease makes the check-and-mark one step across nodes.
pub(crate) async fn take(platform: &Platform, approval: &Approval) -> Result<(), String> {
    let now = platform.now();
    if now >= approval.expires() {
        return Err(format!(
            "the approval expired at {}",
            crate::dto::rfc3339(approval.expires())
        ));
    }
    // One use, atomically across nodes: a budget of one attempt for the
    // approval's whole life.
    let key = format!("sandbox-approval-use:{}", approval.nonce);
    let window = approval.expires() - now + time::Duration::days(1);
    let counted = platform
        .control
        .reserve_attempt(&[key], now, window, 1)
        .await
        .map_err(|e| e.to_string())?;
    if let wb_store::Attempt::Refused { .. } = counted {
        return Err("the approval was already used".into());
    }
    let state = platform
        .control
        .cursor(&cursor(&approval.nonce))
        .await
        .map_err(|e| e.to_string())?;
    match state {
        ISSUED => platform
            .control
            .set_cursor(&cursor(&approval.nonce), USED)
            .await
            .map_err(|e| e.to_string()),
        USED => Err("the approval was already used".into()),
        _ => Err("the approval is not on record in this deployment".into()),
    }
}
