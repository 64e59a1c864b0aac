//! A company's security policy (SPEC §3.5): session lifetime and idle
//! timeout, the address allowlist, the minimum passphrase strength and the
//! longest API key life. Plain rules with no IO: the door applies them to
//! each request, time and address passed in.

use std::net::IpAddr;

use ipnet::IpNet;
use time::{Duration, OffsetDateTime};

/// Entries an allowlist may hold.
pub const MAX_ALLOWLIST: usize = 256;
/// The platform's floor for passphrase strength (zxcvbn score, 0-4).
pub const PLATFORM_MIN_STRENGTH: u8 = 3;
/// The platform's ceiling for session and key lifetimes.
pub const MAX_SESSION_TTL_MINUTES: u32 = 60 * 24 * 30;
pub const MAX_API_KEY_DAYS: u32 = 365;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityPolicy {
    /// Members' sessions must have been opened with a second factor (API
    /// keys are not sessions: members who pass the gate create them).
    pub mfa_required: bool,
    /// A session may reach this company only this long after sign-in.
    pub session_ttl_minutes: Option<u32>,
    /// ...and only if it was used within this long.
    pub idle_timeout_minutes: Option<u32>,
    /// When not empty, requests from any other address are refused.
    pub ip_allowlist: Vec<IpNet>,
    /// zxcvbn score (3 or 4) a member's new passphrase must reach.
    pub min_passphrase_strength: u8,
    /// Longest life of an API key created for this company.
    pub api_key_max_days: Option<u32>,
    /// Longest life of a company key version before an alert asks for a
    /// rotation (None: `DEFAULT_KEY_MAX_AGE_DAYS`).
    pub key_max_age_days: Option<u32>,
}

/// A company key version older than this raises an alert unless the
/// company's policy says otherwise.
pub const DEFAULT_KEY_MAX_AGE_DAYS: u32 = 365;
/// The range a policy's key age may take (a month to ten years).
pub const KEY_MAX_AGE_DAYS: std::ops::RangeInclusive<u32> = 30..=3650;

impl Default for SecurityPolicy {
    fn default() -> SecurityPolicy {
        SecurityPolicy {
            mfa_required: false,
            session_ttl_minutes: None,
            idle_timeout_minutes: None,
            ip_allowlist: Vec::new(),
            min_passphrase_strength: PLATFORM_MIN_STRENGTH,
            api_key_max_days: None,
            key_max_age_days: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("ip_allowlist entry {0:?} is not an address or CIDR block (e.g. 192.0.2.0/24, 2001:db8::/32)")]
    BadBlock(String),
    #[error("ip_allowlist holds at most {MAX_ALLOWLIST} entries")]
    TooManyBlocks,
    #[error("min_passphrase_strength is {PLATFORM_MIN_STRENGTH} or 4")]
    Strength,
    #[error("session_ttl_minutes is 5 to {MAX_SESSION_TTL_MINUTES}")]
    SessionTtl,
    #[error("idle_timeout_minutes is 5 to {MAX_SESSION_TTL_MINUTES}")]
    IdleTimeout,
    #[error("api_key_max_days is 1 to {MAX_API_KEY_DAYS}")]
    ApiKeyDays,
    #[error("key_max_age_days is 30 to 3650")]
    KeyAge,
}

/// Parses one allowlist entry: a CIDR block, or a single address.
pub fn parse_block(text: &str) -> Result<IpNet, PolicyError> {
    let t = text.trim();
    if t.len() > 64 {
        return Err(PolicyError::BadBlock(t.chars().take(64).collect()));
    }
    t.parse::<IpNet>()
        .or_else(|_| t.parse::<IpAddr>().map(IpNet::from))
        .map(|net| net.trunc())
        .map_err(|_| PolicyError::BadBlock(t.to_string()))
}

/// The block an address is counted in by budgets and limits: itself, or
/// its /64 for IPv6 (the block one subscriber gets, so an attacker cannot
/// mint a fresh budget per address).
pub fn address_block(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
    }
}

/// Why the door refuses a request under a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The client's address is not on the allowlist.
    Address,
    /// The session is older than the company allows.
    SessionTooOld,
    /// The session was idle longer than the company allows.
    SessionIdle,
    /// The company requires a second factor and the session was opened
    /// without one (its holder may still enrol one: that path is not
    /// company-scoped).
    SecondFactor,
}

/// A session as the door sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimes {
    pub started: OffsetDateTime,
    pub last_seen: OffsetDateTime,
    /// Whether its holder proved a second factor.
    pub second_factor: bool,
}

impl SecurityPolicy {
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.ip_allowlist.len() > MAX_ALLOWLIST {
            return Err(PolicyError::TooManyBlocks);
        }
        if !(PLATFORM_MIN_STRENGTH..=4).contains(&self.min_passphrase_strength) {
            return Err(PolicyError::Strength);
        }
        let minutes = 5..=MAX_SESSION_TTL_MINUTES;
        if self
            .session_ttl_minutes
            .is_some_and(|m| !minutes.contains(&m))
        {
            return Err(PolicyError::SessionTtl);
        }
        if self
            .idle_timeout_minutes
            .is_some_and(|m| !minutes.contains(&m))
        {
            return Err(PolicyError::IdleTimeout);
        }
        if self
            .api_key_max_days
            .is_some_and(|d| !(1..=MAX_API_KEY_DAYS).contains(&d))
        {
            return Err(PolicyError::ApiKeyDays);
        }
        if self
            .key_max_age_days
            .is_some_and(|d| !KEY_MAX_AGE_DAYS.contains(&d))
        {
            return Err(PolicyError::KeyAge);
        }
        Ok(())
    }

    /// Whether `client` may reach the company: always when the allowlist is
    /// empty; never when the address is unknown and the allowlist is not.
    pub fn allows_address(&self, client: Option<IpAddr>) -> bool {
        if self.ip_allowlist.is_empty() {
            return true;
        }
        let Some(ip) = client else { return false };
        // An IPv4 client seen through an IPv6 socket is still itself.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.ip_allowlist.iter().any(|net| net.contains(&ip))
    }

    /// What, if anything, keeps this request out (`session` is None for an
    /// API key, which the allowlist binds too).
    pub fn refuse(
        &self,
        client: Option<IpAddr>,
        session: Option<SessionTimes>,
        now: OffsetDateTime,
    ) -> Option<Refusal> {
        if !self.allows_address(client) {
            return Some(Refusal::Address);
        }
        let session = session?;
        if let Some(ttl) = self.session_ttl_minutes {
            if now >= session.started + Duration::minutes(i64::from(ttl)) {
                return Some(Refusal::SessionTooOld);
            }
        }
        if let Some(idle) = self.idle_timeout_minutes {
            if now >= session.last_seen + Duration::minutes(i64::from(idle)) {
                return Some(Refusal::SessionIdle);
            }
        }
        if self.mfa_required && !session.second_factor {
            return Some(Refusal::SecondFactor);
        }
        None
    }

    /// The longest life an API key for this company may be given.
    pub fn api_key_days_allowed(&self, platform_max: u32) -> u32 {
        self.api_key_max_days
            .map_or(platform_max, |d| d.min(platform_max))
    }
}

/// How a policy reads in the audit trail (the `before:` and `after:` of a
/// `security_policy.set` event); [`allowlist_changed`] reads it back.
pub fn describe(p: &SecurityPolicy) -> String {
    let opt = |v: Option<u32>| v.map_or("none".to_string(), |v| v.to_string());
    let list: Vec<String> = p.ip_allowlist.iter().map(ToString::to_string).collect();
    format!(
        "mfa_required={} session_ttl_minutes={} idle_timeout_minutes={} ip_allowlist=[{}] \
         min_passphrase_strength={} api_key_max_days={}",
        p.mfa_required,
        opt(p.session_ttl_minutes),
        opt(p.idle_timeout_minutes),
        list.join(","),
        p.min_passphrase_strength,
        opt(p.api_key_max_days),
    )
}

/// Whether a `security_policy.set` detail ("before: …; after: …", as
/// [`describe`] writes each) changes the allowlist.
pub fn allowlist_changed(detail: &str) -> bool {
    let lists: Vec<&str> = detail
        .match_indices("ip_allowlist=[")
        .filter_map(|(i, m)| {
            let rest = &detail[i + m.len()..];
            rest.find(']').map(|end| &rest[..end])
        })
        .collect();
    matches!(lists.as_slice(), [before, after] if before != after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn allowlists_match_v4_v6_and_mapped_addresses() {
        let policy = SecurityPolicy {
            ip_allowlist: vec![
                parse_block("127.0.0.2/32").unwrap(),
                parse_block("2001:db8::/32").unwrap(),
                parse_block("10.1.2.3").unwrap(),
            ],
            ..Default::default()
        };
        assert!(policy.allows_address(ip("127.0.0.2")));
        assert!(!policy.allows_address(ip("127.0.0.1")));
        assert!(policy.allows_address(ip("2001:db8::7")));
        assert!(!policy.allows_address(ip("2001:db9::7")));
        assert!(policy.allows_address(ip("::ffff:127.0.0.2")));
        assert!(policy.allows_address(ip("10.1.2.3")));
        assert!(!policy.allows_address(None));
        assert!(SecurityPolicy::default().allows_address(None));
        assert_eq!(parse_block("10.0.0.9/8").unwrap().to_string(), "10.0.0.0/8");
        for bad in ["", "300.1.1.1", "10.0.0.0/33", "example.com", "1.2.3.4/8/8"] {
            assert!(parse_block(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sessions_end_by_age_and_idleness() {
        let now = datetime!(2026-12-01 12:00 UTC);
        let policy = SecurityPolicy {
            session_ttl_minutes: Some(60),
            idle_timeout_minutes: Some(15),
            ..Default::default()
        };
        let fresh = SessionTimes {
            started: now - Duration::minutes(10),
            last_seen: now - Duration::minutes(1),
            second_factor: false,
        };
        assert_eq!(policy.refuse(None, Some(fresh), now), None);
        let old = SessionTimes {
            started: now - Duration::minutes(60),
            ..fresh
        };
        assert_eq!(
            policy.refuse(None, Some(old), now),
            Some(Refusal::SessionTooOld)
        );
        let idle = SessionTimes {
            last_seen: now - Duration::minutes(15),
            ..fresh
        };
        assert_eq!(
            policy.refuse(None, Some(idle), now),
            Some(Refusal::SessionIdle)
        );
    }

    #[test]
    fn a_company_requiring_mfa_refuses_sessions_without_a_second_factor() {
        let now = datetime!(2026-12-01 12:00 UTC);
        let policy = SecurityPolicy {
            mfa_required: true,
            ..Default::default()
        };
        let without = SessionTimes {
            started: now,
            last_seen: now,
            second_factor: false,
        };
        let with = SessionTimes {
            second_factor: true,
            ..without
        };
        assert_eq!(
            policy.refuse(None, Some(without), now),
            Some(Refusal::SecondFactor)
        );
        assert_eq!(policy.refuse(None, Some(with), now), None);
        // API keys (no session) are not gated by it.
        assert_eq!(policy.refuse(None, None, now), None);
        assert_eq!(
            SecurityPolicy::default().refuse(None, Some(without), now),
            None
        );
    }

    #[test]
    fn allowlist_changes_are_read_back_from_the_trail() {
        let before = SecurityPolicy::default();
        let after = SecurityPolicy {
            ip_allowlist: vec![parse_block("192.0.2.0/24").unwrap()],
            ..Default::default()
        };
        let ttl = SecurityPolicy {
            session_ttl_minutes: Some(60),
            ..Default::default()
        };
        let detail = |a: &SecurityPolicy, b: &SecurityPolicy| {
            format!("before: {}; after: {}", describe(a), describe(b))
        };
        assert!(allowlist_changed(&detail(&before, &after)));
        assert!(allowlist_changed(&detail(&after, &before)));
        assert!(!allowlist_changed(&detail(&before, &ttl)));
        assert!(!allowlist_changed(&format!(
            "refused; before: {}",
            describe(&after)
        )));
    }

    #[test]
    fn validation_bounds_every_field() {
        assert!(SecurityPolicy::default().validate().is_ok());
        let bad = [
            SecurityPolicy {
                min_passphrase_strength: 2,
                ..Default::default()
            },
            SecurityPolicy {
                session_ttl_minutes: Some(1),
                ..Default::default()
            },
            SecurityPolicy {
                idle_timeout_minutes: Some(0),
                ..Default::default()
            },
            SecurityPolicy {
                api_key_max_days: Some(366),
                ..Default::default()
            },
            SecurityPolicy {
                ip_allowlist: vec![parse_block("10.0.0.1").unwrap(); MAX_ALLOWLIST + 1],
                ..Default::default()
            },
        ];
        for policy in bad {
            assert!(policy.validate().is_err(), "{policy:?}");
        }
    }

    proptest! {
        /// An address is allowed exactly when some block on the list holds it.
        #[test]
        fn an_address_is_allowed_iff_a_block_contains_it(
            a in any::<[u8; 4]>(), prefix in 0u8..=32, probe in any::<[u8; 4]>()
        ) {
            let net = IpNet::new(IpAddr::from(a), prefix).unwrap().trunc();
            let policy = SecurityPolicy { ip_allowlist: vec![net], ..Default::default() };
            let probe = IpAddr::from(probe);
            prop_assert_eq!(policy.allows_address(Some(probe)), net.contains(&probe));
            prop_assert!(policy.allows_address(Some(net.network())));
        }

        /// A key's allowed life never exceeds either limit.
        #[test]
        fn key_life_is_the_smaller_limit(max in proptest::option::of(1u32..=365), platform in 1u32..=365) {
            let policy = SecurityPolicy { api_key_max_days: max, ..Default::default() };
            let days = policy.api_key_days_allowed(platform);
            prop_assert!(days <= platform);
            prop_assert!(max.is_none_or(|m| days <= m));
        }
    }
}
