//! How many exports are built at once.
//!
//! Building an export holds the company's books in memory (as JSON lines)
//! until it is written, and a passphrase export runs scrypt at work factor
//! 2^18 (256 MiB for about a second), so without a bound a few parallel
//! requests could take a node's memory (twenty passphrase exports: over
//! 5 GiB). An export takes a slot for as long as it is built and written:
//! at most [`ExportLimits::per_company`] per company and
//! [`ExportLimits::per_node`] on this node. The API asks without waiting
//! (`try_acquire`: a full company or node is answered 429 or 503 with
//! `Retry-After`); scheduled pushes wait for a slot (`acquire`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// How many exports may be built at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportLimits {
    /// On this node, all companies together.
    pub per_node: usize,
    /// For one company.
    pub per_company: usize,
}

impl Default for ExportLimits {
    /// Half the cores (at least one) per node, one per company.
    fn default() -> Self {
        ExportLimits {
            per_node: default_per_node(),
            per_company: 1,
        }
    }
}

/// Half this machine's cores, at least one: scrypt keeps a core busy for
/// about a second and 256 MiB of memory.
pub fn default_per_node() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get() / 2)
        .max(1)
}

/// Why no slot was free.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Busy {
    #[error("this company already has {0} export(s) being built; try again when it is done")]
    Company(usize),
    #[error("this server is building as many exports as it may at once ({0}); try again shortly")]
    Node(usize),
}

#[derive(Debug)]
struct State {
    limits: ExportLimits,
    running: usize,
    companies: HashMap<String, usize>,
}

/// The slots of one node (`Platform::export_slots`).
#[derive(Debug)]
pub struct ExportSlots {
    state: Mutex<State>,
    freed: tokio::sync::Notify,
}

/// A held slot; dropping it frees it.
#[derive(Debug)]
pub struct ExportSlot {
    slots: Arc<ExportSlots>,
    company: String,
}

impl Drop for ExportSlot {
    fn drop(&mut self) {
        {
            let mut state = self.slots.lock();
            state.running = state.running.saturating_sub(1);
            if let Some(n) = state.companies.get_mut(&self.company) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    state.companies.remove(&self.company);
                }
            }
        }
        self.slots.freed.notify_waiters();
    }
}

impl ExportSlots {
    pub fn new(limits: ExportLimits) -> ExportSlots {
        ExportSlots {
            state: Mutex::new(State {
                limits,
                running: 0,
                companies: HashMap::new(),
            }),
            freed: tokio::sync::Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the limits (exports running keep their slots).
    pub fn set_limits(&self, limits: ExportLimits) {
        self.lock().limits = ExportLimits {
            per_node: limits.per_node.max(1),
            per_company: limits.per_company.max(1),
        };
        self.freed.notify_waiters();
    }

    pub fn limits(&self) -> ExportLimits {
        self.lock().limits
    }

    /// Exports being built on this node now.
    pub fn running(&self) -> usize {
        self.lock().running
    }

    /// A slot for an export of `company`, or why there is none (the
    /// company's own limit is checked first: its exports are its own doing).
    pub fn try_acquire(self: &Arc<Self>, company: &str) -> Result<ExportSlot, Busy> {
        let mut state = self.lock();
        let mine = state.companies.get(company).copied().unwrap_or(0);
        if mine >= state.limits.per_company {
            return Err(Busy::Company(mine));
        }
        if state.running >= state.limits.per_node {
            return Err(Busy::Node(state.running));
        }
        state.running += 1;
        *state.companies.entry(company.to_string()).or_insert(0) += 1;
        Ok(ExportSlot {
            slots: Arc::clone(self),
            company: company.to_string(),
        })
    }

    /// Waits for a slot (scheduled pushes: they may wait, a request may not).
    pub async fn acquire(self: &Arc<Self>, company: &str) -> ExportSlot {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before trying, so a slot freed in between is not missed.
            freed.as_mut().enable();
            if let Ok(slot) = self.try_acquire(company) {
                return slot;
            }
            freed.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn slots(per_node: usize, per_company: usize) -> Arc<ExportSlots> {
        Arc::new(ExportSlots::new(ExportLimits {
            per_node,
            per_company,
        }))
    }

    #[test]
    fn the_company_limit_is_checked_before_the_node_limit() {
        let s = slots(2, 1);
        let a = s.try_acquire("a").unwrap();
        assert_eq!(s.try_acquire("a").unwrap_err(), Busy::Company(1));
        let _b = s.try_acquire("b").unwrap();
        assert_eq!(s.try_acquire("c").unwrap_err(), Busy::Node(2));
        assert_eq!(s.try_acquire("a").unwrap_err(), Busy::Company(1));
        drop(a);
        assert_eq!(s.running(), 1);
        let _c = s.try_acquire("c").unwrap();
    }

    #[tokio::test]
    async fn a_waiting_push_gets_the_slot_that_is_freed() {
        let s = slots(1, 1);
        let held = s.try_acquire("a").unwrap();
        let waiting = tokio::spawn({
            let s = s.clone();
            async move { s.acquire("b").await.company.clone() }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(held);
        assert_eq!(waiting.await.unwrap(), "b");
        assert_eq!(s.running(), 0, "the waiter's slot was dropped with it");
    }

    proptest! {
        /// Whatever the order of takes and releases, no company holds more
        /// than its limit, the node never more than its own, and a refusal
        /// happens only when a limit is reached.
        #[test]
        fn limits_hold(ops in proptest::collection::vec((0usize..4, any::<bool>()), 1..60),
                       per_node in 1usize..4, per_company in 1usize..3) {
            let s = slots(per_node, per_company);
            let mut held: Vec<ExportSlot> = Vec::new();
            for (company, take) in ops {
                let name = format!("c{company}");
                if take {
                    let mine = held.iter().filter(|h| h.company == name).count();
                    match s.try_acquire(&name) {
                        Ok(slot) => held.push(slot),
                        Err(Busy::Company(n)) => prop_assert!(mine >= per_company && n == mine),
                        Err(Busy::Node(n)) => prop_assert!(held.len() >= per_node && n == held.len()),
                    }
                } else if let Some(i) = held.iter().position(|h| h.company == name) {
                    held.swap_remove(i);
                }
                prop_assert!(held.len() <= per_node);
                prop_assert_eq!(s.running(), held.len());
                for c in 0..4 {
                    let name = format!("c{c}");
                    prop_assert!(held.iter().filter(|h| h.company == name).count() <= per_company);
                }
            }
        }
    }
}
