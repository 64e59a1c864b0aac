//! A cap on costly reads running at once: reports (any range), account
//! registers and the audit trail. One caller (one session or API key; an
//! anonymous caller by address) may run only a few of them at a time (429
//! beyond), and the node only so many: a request waits up to
//! `NODE_WAIT` for a place, then gets 503 with `Retry-After: 1`. So a
//! client asking for ten-year reports in a loop slows itself, not
//! everyone, and the people of one office (one address) are not counted
//! as one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::client_addr::ClientAddr;

/// How long a costly read waits for a place on the node.
const NODE_WAIT: Duration = Duration::from_secs(2);
use crate::config::ExpensiveLimits;
use crate::problem::ApiError;

/// Whether a request is one of the costly reads.
pub fn is_expensive(method: &axum::http::Method, path: &str) -> bool {
    method == axum::http::Method::GET
        && ((path.starts_with("/api/v1/companies/")
            && (path.contains("/reports/") || path.ends_with("/register") || path.ends_with("/audit")))
            // The console's reports and audit viewer read as much.
            || (path.starts_with("/c/") && (path.contains("/reports/") || path.ends_with("/audit"))))
        // The console's verification of a whole audit chain.
        || (method == axum::http::Method::POST
            && path.starts_with("/c/")
            && path.ends_with("/audit/verify"))
}

#[derive(Debug)]
pub struct ExpensiveGate {
    node: Arc<Semaphore>,
    running: Mutex<HashMap<String, usize>>,
    per_caller: usize,
}

/// One costly read in progress: gives its places back when dropped.
#[derive(Debug)]
struct Running<'a> {
    gate: &'a ExpensiveGate,
    caller: String,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.gate.release(&self.caller);
    }
}

impl ExpensiveGate {
    pub fn new(limits: ExpensiveLimits) -> ExpensiveGate {
        ExpensiveGate {
            node: Arc::new(Semaphore::new(limits.per_node.max(1))),
            running: Mutex::new(HashMap::new()),
            per_caller: limits.per_caller.max(1),
        }
    }

    fn release(&self, caller: &str) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = running.get_mut(caller) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                running.remove(caller);
            }
        }
    }

    async fn enter(&self, caller: String) -> Result<Running<'_>, ApiError> {
        {
            let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            let n = running.entry(caller.clone()).or_insert(0);
            if *n >= self.per_caller {
                return Err(ApiError::too_many(
                    "too many reports or audit reads of this caller at once; wait for one to finish",
                    1,
                ));
            }
            *n += 1;
        }
        let permit = tokio::time::timeout(NODE_WAIT, self.node.clone().acquire_owned()).await;
        let Ok(Ok(permit)) = permit else {
            // Nothing runs: the caller's place goes back.
            self.release(&caller);
            return Err(busy());
        };
        Ok(Running {
            gate: self,
            caller,
            _permit: permit,
        })
    }
}

fn busy() -> ApiError {
    ApiError::unavailable("the server is busy with other reports; retry in a moment")
        .with_retry_after(1)
}

/// Who a request counts against: a digest of its bearer token or session
/// cookie (never the token itself), else its address.
fn caller_of(request: &Request) -> String {
    // The token as the authentication reads it (`crate::auth`), so spaces
    // or a second header do not make a caller someone new.
    let headers = request.headers();
    let credential = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string())
        .or_else(|| crate::auth::cookie(headers, crate::auth::SESSION_COOKIE).map(str::to_string));
    match credential {
        Some(c) => format!("token:{}", &wb_crypto::sha256_hex(c.as_bytes())[..32]),
        None => format!(
            "address:{}",
            request
                .extensions()
                .get::<ClientAddr>()
                .map_or("unknown".to_string(), |a| a.0.to_string())
        ),
    }
}

/// Middleware: admits a costly read only within the limits.
pub async fn gate(gate: Arc<ExpensiveGate>, request: Request, next: Next) -> Response {
    if !is_expensive(request.method(), request.uri().path()) {
        return next.run(request).await;
    }
    match gate.enter(caller_of(&request)).await {
        Ok(_running) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_caller_gets_its_share_and_the_node_its_cap() {
        let gate = ExpensiveGate::new(ExpensiveLimits {
            per_node: 3,
            per_caller: 2,
        });
        let (a, b) = ("token:a".to_string(), "token:b".to_string());
        let first = gate.enter(a.clone()).await.unwrap();
        let _second = gate.enter(a.clone()).await.unwrap();
        assert_eq!(
            gate.enter(a.clone()).await.unwrap_err().status.as_u16(),
            429
        );
        let _third = gate.enter(b.clone()).await.unwrap();
        // The node is full: another caller waits, then is refused, and its
        // refused attempt takes no place.
        assert_eq!(
            gate.enter(b.clone()).await.unwrap_err().status.as_u16(),
            503
        );
        drop(first);
        let _again = gate.enter(b.clone()).await.unwrap();
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

    #[test]
    fn callers_are_told_apart_by_a_digest_of_their_credential() {
        let with = |token: &str| {
            Request::builder()
                .header("authorization", format!("Bearer {token}"))
                .body(axum::body::Body::empty())
                .unwrap()
        };
        let a = caller_of(&with("wbs_secret_one"));
        assert_eq!(a, caller_of(&with("wbs_secret_one")));
        assert_eq!(a, caller_of(&with("  wbs_secret_one  ")));
        assert_ne!(a, caller_of(&with("wbs_secret_two")));
        assert!(!a.contains("secret"));
    }
}
