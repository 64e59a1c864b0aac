//! A company's security policy (`wb_core::security_policy`): read and
//! changed by its owners and admins through their [`CompanyScope`]; applied
//! to every request by the door (`Platform::admit`).

use wb_core::security_policy::SecurityPolicy;
use wb_core::Action;
use wb_store::{AuditEvent, Outcome};

use crate::access::CompanyScope;
use crate::error::{ServiceError, ServiceResult};
use crate::platform::Platform;

/// A change to the policy: fields left out keep their current value.
#[derive(Debug, Default, Clone)]
pub struct PolicyChange {
    pub mfa_required: Option<bool>,
    pub session_ttl_minutes: Option<Option<u32>>,
    pub idle_timeout_minutes: Option<Option<u32>>,
    /// CIDR blocks or addresses, as sent.
    pub ip_allowlist: Option<Vec<String>>,
    pub min_passphrase_strength: Option<u8>,
    pub api_key_max_days: Option<Option<u32>>,
    pub key_max_age_days: Option<Option<u32>>,
    /// The caller knows the new allowlist excludes their own address.
    pub confirm_lockout: bool,
}

pub use wb_core::security_policy::describe;

impl CompanyScope {
    pub async fn security_policy(&self, platform: &Platform) -> ServiceResult<SecurityPolicy> {
        Ok(platform
            .control
            .company_policy(self.company_id())
            .await?
            .unwrap_or_default())
    }

    /// Applies `change`; every outcome, refusals included, is recorded with
    /// the policy before and after (a change in the platform trail, in its
    /// own transaction; a refusal in the company's trail), both under the
    /// company's id and so in its audit view.
    pub async fn set_security_policy(
        &self,
        platform: &Platform,
        change: PolicyChange,
    ) -> ServiceResult<SecurityPolicy> {
        let before = self.security_policy(platform).await?;
        let has_factor = matches!(
            self.caller().principal,
            crate::principal::Principal::User {
                second_factor: true,
                ..
            }
        );
        let caller_address = self.caller().actor.client.as_deref();
        let after = match apply(&before, &change, caller_address, has_factor) {
            Ok(after) => after,
            Err(error) => {
                let detail = format!("refused ({}); before: {}", error.detail, describe(&before));
                self.record_policy_event(platform, Outcome::Failure, detail)
                    .await?;
                return Err(error);
            }
        };
        let detail = format!("before: {}; after: {}", describe(&before), describe(&after));
        // (A refusal goes to the company's own trail, below: nothing changed.)
        let audit = AuditEvent {
            at: platform.now(),
            actor: self.actor().clone(),
            company_id: Some(self.company_id().to_string()),
            action: Action::SecurityPolicySet,
            target: None,
            outcome: Outcome::Success,
            detail: Some(detail.clone()),
        };
        // The change and its record are one transaction; the event carries
        // the company's id, so the company's audit view shows it.
        platform
            .control
            .put_company_policy(self.company_id(), &after, &audit)
            .await?;
        // Staff under a grant obey the allowlist: from the next request here.
        platform.staff_cache.forget_access();
        Ok(after)
    }

    async fn record_policy_event(
        &self,
        platform: &Platform,
        outcome: Outcome,
        detail: String,
    ) -> ServiceResult<()> {
        let event = AuditEvent {
            at: platform.now(),
            actor: self.actor().clone(),
            company_id: Some(self.company_id().to_string()),
            action: Action::SecurityPolicySet,
            target: None,
            outcome,
            detail: Some(detail),
        };
        self.record(platform, event).await
    }
}

/// The policy `change` makes of `current`, or why it is refused.
fn apply(
    current: &SecurityPolicy,
    change: &PolicyChange,
    caller_address: Option<&str>,
    caller_has_factor: bool,
) -> ServiceResult<SecurityPolicy> {
    let invalid = |e: wb_core::security_policy::PolicyError| {
        ServiceError::unprocessable("invalid-security-policy", e.to_string())
    };
    let mut next = current.clone();
    if let Some(mfa) = change.mfa_required {
        // Requiring what the caller's own session lacks would shut the
        // caller out of the company with the same request.
        if mfa && !current.mfa_required && !caller_has_factor {
            return Err(ServiceError::conflict(
                "mfa-enrol-first",
                "enrol a second factor and sign in with it before requiring one for the company",
            ));
        }
        next.mfa_required = mfa;
    }
    if let Some(ttl) = change.session_ttl_minutes {
        next.session_ttl_minutes = ttl;
    }
    if let Some(idle) = change.idle_timeout_minutes {
        next.idle_timeout_minutes = idle;
    }
    if let Some(strength) = change.min_passphrase_strength {
        next.min_passphrase_strength = strength;
    }
    if let Some(days) = change.api_key_max_days {
        next.api_key_max_days = days;
    }
    if let Some(days) = change.key_max_age_days {
        next.key_max_age_days = days;
    }
    if let Some(list) = &change.ip_allowlist {
        if list.len() > wb_core::security_policy::MAX_ALLOWLIST {
            return Err(invalid(
                wb_core::security_policy::PolicyError::TooManyBlocks,
            ));
        }
        let mut blocks = list
            .iter()
            .map(|b| wb_core::security_policy::parse_block(b))
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid)?;
        blocks.sort();
        blocks.dedup();
        next.ip_allowlist = blocks;
    }
    next.validate().map_err(invalid)?;
    let caller = caller_address.and_then(|c| c.parse().ok());
    if !next.allows_address(caller) && !change.confirm_lockout {
        return Err(ServiceError::conflict(
            "lockout",
            "this allowlist excludes the address you are calling from; send \"confirm_lockout\": true to apply it anyway",
        ));
    }
    Ok(next)
}
