//! A cap on costly reads running at once: reports (any range), account
//! registers and the audit trail. One client address may run only a few
//! of them at a time (429 beyond), and the node only so many (503 beyond,
//! `Retry-After: 1`), so a client asking for ten-year reports in a loop
//! slows itself, not everyone.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::client_addr::ClientAddr;
use crate::config::ExpensiveLimits;
use crate::problem::ApiError;

/// Whether a request is one of the costly reads.
pub fn is_expensive(method: &axum::http::Method, path: &str) -> bool {
    method == axum::http::Method::GET
        && path.starts_with("/api/v1/companies/")
        && (path.contains("/reports/") || path.ends_with("/register") || path.ends_with("/audit"))
}

#[derive(Debug)]
pub struct ExpensiveGate {
    node: Arc<Semaphore>,
    running: Mutex<HashMap<IpAddr, usize>>,
    per_address: usize,
}

/// One costly read in progress: gives its places back when dropped.
#[derive(Debug)]
struct Running<'a> {
    gate: &'a ExpensiveGate,
    address: Option<IpAddr>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.gate.release(self.address);
    }
}

impl ExpensiveGate {
    pub fn new(limits: ExpensiveLimits) -> ExpensiveGate {
        ExpensiveGate {
            node: Arc::new(Semaphore::new(limits.per_node.max(1))),
            running: Mutex::new(HashMap::new()),
            per_address: limits.per_address.max(1),
        }
    }

    fn release(&self, address: Option<IpAddr>) {
        let Some(address) = address else { return };
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = running.get_mut(&address) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                running.remove(&address);
            }
        }
    }

    fn enter(&self, address: Option<IpAddr>) -> Result<Running<'_>, ApiError> {
        if let Some(address) = address {
            let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            let n = running.entry(address).or_insert(0);
            if *n >= self.per_address {
                return Err(ApiError::too_many(
                    "too many reports or audit reads from this address at once; wait for one to finish",
                    1,
                ));
            }
            *n += 1;
        }
        let Ok(permit) = self.node.clone().try_acquire_owned() else {
            // Nothing runs: the address's place goes back.
            self.release(address);
            return Err(busy());
        };
        Ok(Running {
            gate: self,
            address,
            _permit: permit,
        })
    }
}

fn busy() -> ApiError {
    ApiError::unavailable("the server is busy with other reports; retry in a moment")
        .with_retry_after(1)
}

/// Middleware: admits a costly read only within the limits.
pub async fn gate(gate: Arc<ExpensiveGate>, request: Request, next: Next) -> Response {
    if !is_expensive(request.method(), request.uri().path()) {
        return next.run(request).await;
    }
    let address = request.extensions().get::<ClientAddr>().map(|c| c.0);
    match gate.enter(address) {
        Ok(_running) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_its_share_and_the_node_its_cap() {
        let gate = ExpensiveGate::new(ExpensiveLimits {
            per_node: 3,
            per_address: 2,
        });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = gate.enter(Some(a)).unwrap();
        let _second = gate.enter(Some(a)).unwrap();
        assert_eq!(gate.enter(Some(a)).unwrap_err().status.as_u16(), 429);
        let _third = gate.enter(Some(b)).unwrap();
        // The node is full: another address waits too, and its refused
        // attempt takes no place.
        assert_eq!(gate.enter(Some(b)).unwrap_err().status.as_u16(), 503);
        drop(first);
        let _again = gate.enter(Some(b)).unwrap();
        assert_eq!(gate.running.lock().unwrap().get(&b), Some(&2));
    }

    #[test]
    fn only_costly_reads_are_gated() {
        use axum::http::Method;
        assert!(is_expensive(
            &Method::GET,
            "/api/v1/companies/c/reports/trial-balance"
        ));
        assert!(is_expensive(
            &Method::GET,
            "/api/v1/companies/c/accounts/1000/register"
        ));
        assert!(is_expensive(&Method::GET, "/api/v1/companies/c/audit"));
        assert!(!is_expensive(&Method::GET, "/api/v1/companies/c/accounts"));
        assert!(!is_expensive(&Method::POST, "/api/v1/companies/c/entries"));
    }
}
