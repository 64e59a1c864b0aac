//! Request budgets (token buckets, `governor`): per client address for the
//! whole API, a smaller one per address for the sign-in doors (login,
//! signup, passphrase reset, invitation acceptance), one per account or API
//! key once a request is authenticated (`crate::auth`), and a small one per
//! address for requests answered 401 (bad or missing credentials): an
//! address that spends it is refused everything until it refills, so a
//! flood of forged tokens costs one cheap refusal a request, while the
//! people behind a busy address who do authenticate spend only their own
//! accounts' budgets. Beyond a budget: 429 with `Retry-After` and a
//! problem body, before any work is done for the request (no body read, no
//! token lookup, no Argon2).
//!
//! Budgets are per node: a client spread over N nodes gets N times the
//! rate. What must hold across nodes (failed logins, signups, resets) is
//! counted in the control store instead (`wb_app::login`).
//!
//! IPv6 clients are counted per /64, the block one subscriber gets, so an
//! attacker cannot mint a fresh budget per address. Idle buckets are
//! dropped every minute (`sweep`), which bounds the memory they take.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::client_addr::ClientAddr;
use crate::problem::ApiError;

/// A rate and the burst allowed above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub per_minute: u32,
    pub burst: u32,
}

impl Budget {
    fn quota(self) -> Quota {
        let per_minute = NonZeroU32::new(self.per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(self.burst.max(1)).unwrap_or(NonZeroU32::MIN);
        Quota::per_minute(per_minute).allow_burst(burst)
    }
}

/// The budgets of a node (`ServerConfig::rate_limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Every request from one address (or IPv6 /64).
    pub per_address: Budget,
    /// Sign-in requests (login, signup, reset, invitation acceptance) from
    /// one address, on top of `per_address`.
    pub sign_in_per_address: Budget,
    /// Authenticated requests of one account or API key.
    pub per_principal: Budget,
    /// Requests from one address answered 401; beyond it the address is
    /// refused everything until the budget refills.
    pub unauthorized_per_address: Budget,
}

impl Default for RateLimits {
    fn default() -> RateLimits {
        RateLimits {
            // Generous: an office behind one NAT address shares it; its
            // people are held to their own accounts' budgets.
            per_address: Budget {
                per_minute: 60_000,
                burst: 2_000,
            },
            // Each sign-in costs an Argon2id hash (~20 ms of a core).
            sign_in_per_address: Budget {
                per_minute: 60,
                burst: 20,
            },
            per_principal: Budget {
                per_minute: 12_000,
                burst: 1_000,
            },
            unauthorized_per_address: Budget {
                per_minute: 60,
                burst: 30,
            },
        }
    }
}

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock>;

/// The node's buckets.
pub struct Limiters {
    address: Keyed<IpAddr>,
    sign_in: Keyed<IpAddr>,
    principal: Keyed<String>,
    unauthorized: Keyed<IpAddr>,
    /// Addresses that spent their 401 budget, until when.
    blocked: std::sync::RwLock<std::collections::HashMap<IpAddr, std::time::Instant>>,
}

impl std::fmt::Debug for Limiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiters")
            .field("addresses", &self.address.len())
            .field("principals", &self.principal.len())
            .finish()
    }
}

/// The key an address is counted under: itself, or its /64 for IPv6.
pub fn bucket_of(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
    }
}

/// Whether a path is a sign-in door (its own, smaller budget).
pub fn is_sign_in(path: &str) -> bool {
    path == "/api/v1/signup"
        || path == "/api/v1/auth/login"
        || path.starts_with("/api/v1/auth/passphrase-reset")
        || (path.starts_with("/api/v1/invitations/") && path.ends_with("/accept"))
}

/// The answer beyond a budget: 429 with the whole seconds to wait.
pub fn refusal(wait: Duration) -> ApiError {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    ApiError::too_many(
        "too many requests; slow down and retry after the time given",
        seconds.max(1),
    )
}

impl Limiters {
    pub fn new(limits: RateLimits) -> Limiters {
        Limiters {
            address: RateLimiter::keyed(limits.per_address.quota()),
            sign_in: RateLimiter::keyed(limits.sign_in_per_address.quota()),
            principal: RateLimiter::keyed(limits.per_principal.quota()),
            unauthorized: RateLimiter::keyed(limits.unauthorized_per_address.quota()),
            blocked: Default::default(),
        }
    }

    /// How long the address is still refused everything (it spent its 401
    /// budget), if it is.
    pub fn blocked_for(&self, address: IpAddr) -> Option<Duration> {
        let key = bucket_of(address);
        let blocked = self.blocked.read().unwrap_or_else(|e| e.into_inner());
        blocked
            .get(&key)
            .and_then(|until| until.checked_duration_since(std::time::Instant::now()))
            .filter(|d| !d.is_zero())
    }

    /// Counts a 401 answered to the address; when that spends its budget,
    /// the address is refused everything until the budget refills.
    pub fn note_unauthorized(&self, address: IpAddr) {
        let key = bucket_of(address);
        let now = self.unauthorized.clock().now();
        if let Err(not_until) = self.unauthorized.check_key(&key) {
            let wait = not_until.wait_time_from(now);
            let mut blocked = self.blocked.write().unwrap_or_else(|e| e.into_inner());
            blocked.insert(key, std::time::Instant::now() + wait);
        }
    }

    /// Takes one request from the address's budgets; the wait when empty.
    pub fn check_address(&self, address: IpAddr, sign_in: bool) -> Result<(), Duration> {
        let key = bucket_of(address);
        let now = self.address.clock().now();
        self.address
            .check_key(&key)
            .map_err(|not_until| not_until.wait_time_from(now))?;
        if sign_in {
            self.sign_in
                .check_key(&key)
                .map_err(|not_until| not_until.wait_time_from(now))?;
        }
        Ok(())
    }

    /// Takes one request from an account's or API key's budget; the wait
    /// when it is empty.
    pub fn check_principal(&self, principal: &str) -> Result<(), Duration> {
        let now = self.principal.clock().now();
        self.principal
            .check_key(&principal.to_string())
            .map_err(|not_until| not_until.wait_time_from(now))
    }

    /// Drops the buckets that are full again (indistinguishable from new).
    pub fn sweep(&self) {
        let now = std::time::Instant::now();
        self.blocked
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, until| *until > now);
        self.unauthorized.retain_recent();
        self.unauthorized.shrink_to_fit();
        self.address.retain_recent();
        self.sign_in.retain_recent();
        self.principal.retain_recent();
        self.address.shrink_to_fit();
        self.sign_in.shrink_to_fit();
        self.principal.shrink_to_fit();
    }

    /// Buckets held now (tests, metrics).
    pub fn tracked(&self) -> usize {
        self.address.len() + self.sign_in.len() + self.principal.len() + self.unauthorized.len()
    }
}

/// Middleware: the address budgets, before anything else is done for the
/// request; then makes the limiters available to the authentication
/// extractor for the per-principal budget.
pub async fn enforce(limiters: Arc<Limiters>, mut request: Request, next: Next) -> Response {
    // Health probes (a load balancer's) cost nothing and must not be
    // starved by, or starve, the clients behind the same address.
    let probe = matches!(request.uri().path(), "/healthz" | "/readyz");
    let address = request.extensions().get::<ClientAddr>().map(|c| c.0);
    let Some(address) = address.filter(|_| !probe) else {
        request.extensions_mut().insert(limiters);
        return next.run(request).await;
    };
    if let Some(wait) = limiters.blocked_for(address) {
        return refusal(wait).into_response();
    }
    let sign_in = is_sign_in(request.uri().path());
    if let Err(wait) = limiters.check_address(address, sign_in) {
        return refusal(wait).into_response();
    }
    request.extensions_mut().insert(limiters.clone());
    let response = next.run(request).await;
    if response.status() == axum::http::StatusCode::UNAUTHORIZED {
        limiters.note_unauthorized(address);
    }
    response
}

/// Sweeps the limiters every minute until `stop` turns true.
pub fn spawn_sweeper(
    limiters: Arc<Limiters>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => limiters.sweep(),
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_burst_then_refusals_with_a_wait() {
        let limiters = Limiters::new(RateLimits {
            per_address: Budget {
                per_minute: 60,
                burst: 3,
            },
            ..RateLimits::default()
        });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert!(limiters.check_address(a, false).is_ok());
        }
        let wait = limiters.check_address(a, false).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        // Another address has its own budget.
        assert!(limiters.check_address(b, false).is_ok());
    }

    #[test]
    fn sign_in_doors_have_a_smaller_budget_of_their_own() {
        let limiters = Limiters::new(RateLimits {
            sign_in_per_address: Budget {
                per_minute: 1,
                burst: 2,
            },
            ..RateLimits::default()
        });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(limiters.check_address(a, true).is_ok());
        assert!(limiters.check_address(a, true).is_ok());
        assert!(limiters.check_address(a, true).is_err());
        // The rest of the API is still open to it.
        assert!(limiters.check_address(a, false).is_ok());
        assert!(is_sign_in("/api/v1/auth/login"));
        assert!(is_sign_in("/api/v1/invitations/wbi_x/accept"));
        assert!(is_sign_in("/api/v1/auth/passphrase-reset/complete"));
        assert!(!is_sign_in("/api/v1/companies/c/accounts"));
    }

    #[test]
    fn an_address_that_spends_its_401_budget_is_refused_until_it_refills() {
        let limiters = Limiters::new(RateLimits {
            unauthorized_per_address: Budget {
                per_minute: 60,
                burst: 2,
            },
            ..RateLimits::default()
        });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        limiters.note_unauthorized(a);
        limiters.note_unauthorized(a);
        assert_eq!(limiters.blocked_for(a), None);
        limiters.note_unauthorized(a);
        let wait = limiters.blocked_for(a).expect("blocked");
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        assert_eq!(limiters.blocked_for(b), None);
        limiters.sweep();
        assert!(limiters.blocked_for(a).is_some() || wait < Duration::from_millis(50));
    }

    #[test]
    fn ipv6_addresses_share_their_64_block() {
        let limiters = Limiters::new(RateLimits {
            per_address: Budget {
                per_minute: 1,
                burst: 1,
            },
            ..RateLimits::default()
        });
        assert!(limiters
            .check_address("2001:db8:1:2::1".parse().unwrap(), false)
            .is_ok());
        assert!(limiters
            .check_address("2001:db8:1:2:ffff::9".parse().unwrap(), false)
            .is_err());
        assert!(limiters
            .check_address("2001:db8:1:3::1".parse().unwrap(), false)
            .is_ok());
    }

    proptest! {
        #[test]
        fn buckets_of_one_64_are_one(a in any::<u128>(), low in any::<u64>()) {
            let other = (a & !u128::from(u64::MAX)) | u128::from(low);
            prop_assert_eq!(
                bucket_of(IpAddr::V6(a.into())),
                bucket_of(IpAddr::V6(other.into()))
            );
        }
    }
}
