//! The `[http]` table of the config file (abuse limits of `workbooks serve`):
//! trusted proxies, CORS origins, request budgets, header size and the cap
//! on costly reads. Each value is checked here, so a bad one stops the
//! server with one line rather than quietly falling back.

use anyhow::{bail, Result};
use serde::Deserialize;

/// Config file keys (all optional; defaults in `wb_server`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AbuseFile {
    /// CIDR blocks of reverse proxies whose X-Forwarded-For names the client.
    pub trusted_proxies: Option<Vec<String>>,
    /// Browser origins allowed to call the API with a bearer token.
    pub cors_origins: Option<Vec<String>>,
    /// Requests per minute, and burst, from one address (IPv6: one /64).
    pub rate_limit_per_address_per_minute: Option<u32>,
    pub rate_limit_per_address_burst: Option<u32>,
    /// Login, signup, reset and invitation-acceptance requests per minute,
    /// and burst, from one address.
    pub rate_limit_sign_in_per_minute: Option<u32>,
    pub rate_limit_sign_in_burst: Option<u32>,
    /// Requests per minute, and burst, of one account or API key.
    pub rate_limit_per_account_per_minute: Option<u32>,
    pub rate_limit_per_account_burst: Option<u32>,
    /// Requests answered 401 per minute, and burst, from one address
    /// before it is refused everything until the budget refills.
    pub rate_limit_unauthorized_per_minute: Option<u32>,
    pub rate_limit_unauthorized_burst: Option<u32>,
    /// Largest request head, KiB (default 32, at least 8).
    pub max_header_kib: Option<usize>,
    /// Reports, registers and audit reads at once on a node (default 16),
    /// and of one session or API key (default 4).
    pub max_concurrent_reports: Option<usize>,
    pub max_concurrent_reports_per_caller: Option<usize>,
}

/// The settings, checked.
#[derive(Debug, Clone)]
pub struct Abuse {
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub cors_origins: Vec<String>,
    pub rate_limits: wb_server::rate_limit::RateLimits,
    pub max_header_bytes: usize,
    pub expensive: wb_server::config::ExpensiveLimits,
}

fn positive<T: PartialOrd + From<u8> + Copy>(value: Option<T>, key: &str, default: T) -> Result<T> {
    match value {
        Some(v) if v < T::from(1) => bail!("{key} must be at least 1"),
        Some(v) => Ok(v),
        None => Ok(default),
    }
}

fn budget(
    per_minute: Option<u32>,
    burst: Option<u32>,
    key: &str,
    default: wb_server::rate_limit::Budget,
) -> Result<wb_server::rate_limit::Budget> {
    Ok(wb_server::rate_limit::Budget {
        per_minute: positive(per_minute, &format!("{key}-per-minute"), default.per_minute)?,
        burst: positive(burst, &format!("{key}-burst"), default.burst)?,
    })
}

impl AbuseFile {
    pub fn resolve(&self) -> Result<Abuse> {
        let trusted_proxies = self
            .trusted_proxies
            .iter()
            .flatten()
            .map(|block| {
                wb_core::security_policy::parse_block(block).map_err(|_| {
                    anyhow::anyhow!(
                        "trusted-proxies entry {block:?} is not an address or CIDR block"
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let cors_origins = self.cors_origins.clone().unwrap_or_default();
        if let Some(bad) = cors_origins
            .iter()
            .find(|o| !wb_server::cors::valid_origin(o))
        {
            bail!(
                "cors-origins entry {bad:?} is not an origin like https://books.example.com \
                 (no path, no trailing slash; http only for localhost)"
            );
        }
        let defaults = wb_server::rate_limit::RateLimits::default();
        let rate_limits = wb_server::rate_limit::RateLimits {
            per_address: budget(
                self.rate_limit_per_address_per_minute,
                self.rate_limit_per_address_burst,
                "rate-limit-per-address",
                defaults.per_address,
            )?,
            sign_in_per_address: budget(
                self.rate_limit_sign_in_per_minute,
                self.rate_limit_sign_in_burst,
                "rate-limit-sign-in",
                defaults.sign_in_per_address,
            )?,
            per_principal: budget(
                self.rate_limit_per_account_per_minute,
                self.rate_limit_per_account_burst,
                "rate-limit-per-account",
                defaults.per_principal,
            )?,
            unauthorized_per_address: budget(
                self.rate_limit_unauthorized_per_minute,
                self.rate_limit_unauthorized_burst,
                "rate-limit-unauthorized",
                defaults.unauthorized_per_address,
            )?,
        };
        let max_header_bytes = match self.max_header_kib {
            Some(kib) if !(8..=1024).contains(&kib) => bail!("max-header-kib must be 8 to 1024"),
            Some(kib) => kib * 1024,
            None => wb_server::config::ConnectionLimits::default().max_header_bytes,
        };
        let default_expensive = wb_server::config::ExpensiveLimits::default();
        let expensive = wb_server::config::ExpensiveLimits {
            per_node: positive(
                self.max_concurrent_reports,
                "max-concurrent-reports",
                default_expensive.per_node,
            )?,
            per_caller: positive(
                self.max_concurrent_reports_per_caller,
                "max-concurrent-reports-per-caller",
                default_expensive.per_caller,
            )?,
        };
        Ok(Abuse {
            trusted_proxies,
            cors_origins,
            rate_limits,
            max_header_bytes,
            expensive,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_are_named() {
        let bad = |file: AbuseFile| file.resolve().unwrap_err().to_string();
        assert!(bad(AbuseFile {
            trusted_proxies: Some(vec!["10.0.0.0/33".into()]),
            ..Default::default()
        })
        .contains("trusted-proxies"));
        assert!(bad(AbuseFile {
            cors_origins: Some(vec!["*".into()]),
            ..Default::default()
        })
        .contains("cors-origins"));
        assert!(bad(AbuseFile {
            rate_limit_sign_in_burst: Some(0),
            ..Default::default()
        })
        .contains("rate-limit-sign-in-burst"));
        assert!(bad(AbuseFile {
            max_header_kib: Some(4),
            ..Default::default()
        })
        .contains("max-header-kib"));
        let ok = AbuseFile {
            trusted_proxies: Some(vec!["10.0.0.0/8".into(), "192.0.2.1".into()]),
            cors_origins: Some(vec!["https://books.example.com".into()]),
            rate_limit_per_address_per_minute: Some(100),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(ok.trusted_proxies.len(), 2);
        assert_eq!(ok.rate_limits.per_address.per_minute, 100);
    }
}
