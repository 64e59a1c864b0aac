//! Request budgets (token buckets, `governor`):
//!
//! - per account or API key, for authenticated requests (`crate::auth`);
//! - per client address, for requests that were not authenticated
//!   (anonymous ones and refused credentials), counted once they are
//!   answered; an address that spends it is refused everything until it
//!   refills. So the people behind a busy office address spend only their
//!   own accounts' budgets, while a flood of forged tokens from one
//!   address costs one cheap refusal a request;
//! - a smaller one per address for requests answered 401;
//! - per address for the sign-in doors (login, signup, passphrase reset,
//!   invitation acceptance), taken before the request is served: each one
//!   costs an Argon2id hash.
//!
//! Beyond a budget: 429 with `Retry-After` and a problem body. A refused
//! address gets it before any work is done for the request (no body read,
//! no token lookup, no Argon2).
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
    /// Requests from one address (or IPv6 /64) that were not authenticated.
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
            // Anonymous requests: sign-ins, health checks, the API document.
            per_address: Budget {
                per_minute: 6_000,
                burst: 600,
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
    wb_core::security_policy::address_block(address)
}

/// Whether a path is a sign-in door (its own, smaller budget).
pub fn is_sign_in(path: &str) -> bool {
    path == "/api/v1/signup"
        || path == "/api/v1/auth/login"
        || path == "/api/v1/staff/auth/login"
        || path.starts_with("/api/v1/auth/passphrase-reset")
        || (path.starts_with("/api/v1/invitations/") && path.ends_with("/accept"))
        // The console's sign-in forms (`enforce` charges only their POSTs).
        || matches!(
            path,
            "/login" | "/login/code" | "/signup" | "/reset-passphrase" | "/reset-passphrase/complete" | "/accept-invitation"
                // The staff console's sign-in form.
                | "/staff/login"
        )
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

    /// Takes one sign-in from the address's budget; the wait when empty.
    pub fn check_sign_in(&self, address: IpAddr) -> Result<(), Duration> {
        let now = self.sign_in.clock().now();
        self.sign_in
            .check_key(&bucket_of(address))
            .map_err(|not_until| not_until.wait_time_from(now))
    }

    /// Counts an answered request of the address that was not
    /// authenticated (and a 401 in its own budget); an address that spends
    /// either is refused everything until it refills.
    pub fn note_unauthenticated(&self, address: IpAddr, unauthorized: bool) {
        let key = bucket_of(address);
        let now = self.address.clock().now();
        let mut wait = self
            .address
            .check_key(&key)
            .err()
            .map(|not_until| not_until.wait_time_from(now));
        if unauthorized {
            if let Err(not_until) = self.unauthorized.check_key(&key) {
                wait = wait.max(Some(not_until.wait_time_from(now)));
            }
        }
        if let Some(wait) = wait {
            let mut blocked = self.blocked.write().unwrap_or_else(|e| e.into_inner());
            blocked.insert(key, std::time::Instant::now() + wait);
        }
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

/// The longest a refusal is held before it is sent.
const TARPIT_MAX: Duration = Duration::from_secs(1);

/// A refusal of an address over its budget, sent once the wait is over (at
/// most `TARPIT_MAX`): a flooding client's connection carries no other
/// request meanwhile, so a flood costs the server one cheap answer per
/// connection per second instead of as many as the client can send.
async fn tarpit(wait: Duration) -> Response {
    let hold = wait.min(TARPIT_MAX);
    tokio::time::sleep(hold).await;
    refusal(wait.saturating_sub(hold)).into_response()
}

/// Set by the authentication extractor when a request's credentials were
/// valid: such a request spends its account's budget, not its address's.
#[derive(Debug, Clone, Default)]
pub struct AuthSeen(pub Arc<std::sync::atomic::AtomicBool>);

impl AuthSeen {
    pub fn mark(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
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
        return tarpit(wait).await;
    }
    let page_view =
        request.method() == axum::http::Method::GET && !request.uri().path().starts_with("/api/");
    if is_sign_in(request.uri().path()) && !page_view {
        if let Err(wait) = limiters.check_sign_in(address) {
            return tarpit(wait).await;
        }
    }
    let authenticated = AuthSeen::default();
    request.extensions_mut().insert(limiters.clone());
    request.extensions_mut().insert(authenticated.clone());
    let response = next.run(request).await;
    let unauthorized = response.status() == axum::http::StatusCode::UNAUTHORIZED;
    if unauthorized || !authenticated.0.load(std::sync::atomic::Ordering::Relaxed) {
        limiters.note_unauthenticated(address, unauthorized);
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

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn anonymous_requests_spend_the_address_budget_then_block_it() {
        let limiters = Limiters::new(RateLimits {
            per_address: Budget {
                per_minute: 60,
                burst: 3,
            },
            ..RateLimits::default()
        });
        let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
        for _ in 0..3 {
            limiters.note_unauthenticated(a, false);
            assert_eq!(limiters.blocked_for(a), None);
        }
        limiters.note_unauthenticated(a, false);
        let wait = limiters.blocked_for(a).expect("blocked");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        // Another address has its own budget.
        assert_eq!(limiters.blocked_for(b), None);
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
        let a = ip("192.0.2.1");
        assert!(limiters.check_sign_in(a).is_ok());
        assert!(limiters.check_sign_in(a).is_ok());
        assert!(limiters.check_sign_in(a).is_err());
        // The rest of the API is still open to it.
        assert_eq!(limiters.blocked_for(a), None);
        assert!(is_sign_in("/api/v1/auth/login"));
        assert!(is_sign_in("/api/v1/staff/auth/login"));
        assert!(is_sign_in("/staff/login"));
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
        let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
        limiters.note_unauthenticated(a, true);
        limiters.note_unauthenticated(a, true);
        assert_eq!(limiters.blocked_for(a), None);
        limiters.note_unauthenticated(a, true);
        let wait = limiters.blocked_for(a).expect("blocked");
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        assert_eq!(limiters.blocked_for(b), None);
    }

    #[test]
    fn principals_have_budgets_of_their_own() {
        let limiters = Limiters::new(RateLimits {
            per_principal: Budget {
                per_minute: 60,
                burst: 2,
            },
            ..RateLimits::default()
        });
        assert!(limiters.check_principal("user:a").is_ok());
        assert!(limiters.check_principal("user:a").is_ok());
        assert!(limiters.check_principal("user:a").is_err());
        assert!(limiters.check_principal("api_key:k").is_ok());
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
        limiters.note_unauthenticated(ip("2001:db8:1:2::1"), false);
        limiters.note_unauthenticated(ip("2001:db8:1:2:ffff::9"), false);
        assert!(limiters.blocked_for(ip("2001:db8:1:2::7")).is_some());
        assert!(limiters.blocked_for(ip("2001:db8:1:3::1")).is_none());
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
