//! The restores customers asked for on this node: the ones running and the
//! last few that ended, per company. Bounded in every direction (running
//! per node and per company, ended kept per company, companies tracked), and
//! held in memory only: the company's audit trail is the lasting record of
//! each request and its outcome.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use time::OffsetDateTime;

use crate::restore_target::RestoreTarget;

/// Restores this node replays at once (each reads the whole backup).
pub const MAX_RUNNING_PER_NODE: usize = 2;
/// Ended restores remembered per company (the newest).
pub const KEPT_PER_COMPANY: usize = 10;
/// Companies whose restores are remembered; beyond it the ones with none
/// running are forgotten first.
pub const MAX_COMPANIES: usize = 1_000;

/// A new restore id: `rst_` and 20 lowercase hex digits.
pub fn new_restore_id() -> String {
    format!("rst_{}", &uuid::Uuid::new_v4().simple().to_string()[..20])
}

/// Whether `id` can be a restore id (checked before it is looked up or
/// written into an audit event).
pub fn is_restore_id(id: &str) -> bool {
    id.strip_prefix("rst_").is_some_and(|hex| {
        hex.len() == 20
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreState {
    /// Journal records replayed so far, of `total` (0 while unknown).
    Running { done: u64, total: u64 },
    /// The new company and the last journal record it holds.
    Done {
        company_id: String,
        company_name: String,
        last_seq: i64,
    },
    /// Why it did not finish, in words fit for the customer.
    Failed { reason: String },
}

impl RestoreState {
    pub fn name(&self) -> &'static str {
        match self {
            RestoreState::Running { .. } => "running",
            RestoreState::Done { .. } => "done",
            RestoreState::Failed { .. } => "failed",
        }
    }

    fn is_running(&self) -> bool {
        matches!(self, RestoreState::Running { .. })
    }
}

/// One restore of a company into a new company.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreJob {
    pub id: String,
    /// The company restored from.
    pub source: String,
    pub target: RestoreTarget,
    /// The actor id of the person who asked.
    pub requested_by: String,
    pub started_at: OffsetDateTime,
    pub ended_at: Option<OffsetDateTime>,
    pub state: RestoreState,
}

/// Why a restore cannot start now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreBusy {
    #[error("a restore of this company is already running; wait for it to finish")]
    Company,
    #[error("this server is running {MAX_RUNNING_PER_NODE} restores; try again in a few minutes")]
    Node,
}

#[derive(Default)]
pub struct RestoreJobs {
    companies: Mutex<HashMap<String, VecDeque<RestoreJob>>>,
}

impl std::fmt::Debug for RestoreJobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RestoreJobs")
    }
}

impl RestoreJobs {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<RestoreJob>>> {
        // A panic while holding the lock leaves plain data behind: keep going.
        self.companies
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes a running slot for `job` (its state must be `Running`).
    pub fn begin(&self, job: RestoreJob) -> Result<(), RestoreBusy> {
        let mut companies = self.lock();
        let running =
            |jobs: &VecDeque<RestoreJob>| jobs.iter().filter(|j| j.state.is_running()).count();
        if companies
            .get(&job.source)
            .is_some_and(|jobs| running(jobs) > 0)
        {
            return Err(RestoreBusy::Company);
        }
        if companies.values().map(running).sum::<usize>() >= MAX_RUNNING_PER_NODE {
            return Err(RestoreBusy::Node);
        }
        if !companies.contains_key(&job.source) && companies.len() >= MAX_COMPANIES {
            let idle = companies
                .iter()
                .filter(|(_, jobs)| running(jobs) == 0)
                .min_by_key(|(_, jobs)| jobs.front().map(|j| j.started_at))
                .map(|(company, _)| company.clone());
            if let Some(idle) = idle {
                companies.remove(&idle);
            }
        }
        let jobs = companies.entry(job.source.clone()).or_default();
        jobs.push_front(job);
        while jobs.len() > KEPT_PER_COMPANY + 1 {
            jobs.pop_back();
        }
        Ok(())
    }

    pub fn progress(&self, company: &str, id: &str, done: u64, total: u64) {
        if let Some(job) = self.find(&mut self.lock(), company, id) {
            if job.state.is_running() {
                job.state = RestoreState::Running { done, total };
            }
        }
    }

    /// Ends a running restore; an ended one keeps its first ending.
    pub fn finish(&self, company: &str, id: &str, state: RestoreState, at: OffsetDateTime) {
        debug_assert!(!state.is_running());
        if let Some(job) = self.find(&mut self.lock(), company, id) {
            if job.state.is_running() {
                job.state = state;
                job.ended_at = Some(at);
            }
        }
    }

    fn find<'a>(
        &self,
        companies: &'a mut HashMap<String, VecDeque<RestoreJob>>,
        company: &str,
        id: &str,
    ) -> Option<&'a mut RestoreJob> {
        companies
            .get_mut(company)?
            .iter_mut()
            .find(|job| job.id == id)
    }

    /// The company's restores, newest first.
    pub fn of_company(&self, company: &str) -> Vec<RestoreJob> {
        self.lock()
            .get(company)
            .map(|jobs| jobs.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn get(&self, company: &str, id: &str) -> Option<RestoreJob> {
        self.of_company(company)
            .into_iter()
            .find(|job| job.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn job(company: &str, id: &str, minute: i64) -> RestoreJob {
        RestoreJob {
            id: id.into(),
            source: company.into(),
            target: RestoreTarget::Latest,
            requested_by: "user:u".into(),
            started_at: OffsetDateTime::UNIX_EPOCH + time::Duration::minutes(minute),
            ended_at: None,
            state: RestoreState::Running { done: 0, total: 0 },
        }
    }

    fn failed() -> RestoreState {
        RestoreState::Failed {
            reason: "no".into(),
        }
    }

    #[test]
    fn one_running_restore_per_company_and_a_node_cap() {
        let jobs = RestoreJobs::default();
        jobs.begin(job("a", "1", 0)).unwrap();
        assert_eq!(jobs.begin(job("a", "2", 1)), Err(RestoreBusy::Company));
        jobs.begin(job("b", "3", 2)).unwrap();
        assert_eq!(jobs.begin(job("c", "4", 3)), Err(RestoreBusy::Node));
        jobs.finish("a", "1", failed(), OffsetDateTime::UNIX_EPOCH);
        jobs.begin(job("c", "4", 3)).unwrap();
        jobs.finish("b", "3", failed(), OffsetDateTime::UNIX_EPOCH);
        jobs.begin(job("a", "2", 4)).unwrap();
        assert_eq!(
            jobs.of_company("a")
                .iter()
                .map(|j| j.id.as_str())
                .collect::<Vec<_>>(),
            ["2", "1"]
        );
    }

    #[test]
    fn an_ended_restore_keeps_its_first_ending_and_ignores_progress() {
        let jobs = RestoreJobs::default();
        jobs.begin(job("a", "1", 0)).unwrap();
        jobs.progress("a", "1", 5, 10);
        assert_eq!(
            jobs.get("a", "1").unwrap().state,
            RestoreState::Running { done: 5, total: 10 }
        );
        let done = RestoreState::Done {
            company_id: "n".into(),
            company_name: "N".into(),
            last_seq: 9,
        };
        jobs.finish("a", "1", done.clone(), OffsetDateTime::UNIX_EPOCH);
        jobs.finish("a", "1", failed(), OffsetDateTime::UNIX_EPOCH);
        jobs.progress("a", "1", 6, 10);
        assert_eq!(jobs.get("a", "1").unwrap().state, done);
        assert!(jobs.get("a", "nope").is_none());
        assert!(jobs.get("b", "1").is_none());
    }

    #[test]
    fn restore_ids_have_one_shape() {
        let id = new_restore_id();
        assert!(is_restore_id(&id), "{id}");
        for bad in [
            "",
            "rst_",
            "rst_0123456789abcdef012",
            "rst_0123456789ABCDEF0123",
            "xyz_0123456789abcdef0123",
            "rst_0123456789abcdef012/",
        ] {
            assert!(!is_restore_id(bad), "{bad}");
        }
    }

    proptest! {
        /// Whatever happens, nothing grows without bound and the caps hold.
        #[test]
        fn the_registry_stays_bounded(ops in proptest::collection::vec((0u8..3, 0usize..1_200, 0usize..30), 1..400)) {
            let jobs = RestoreJobs::default();
            for (n, (op, company, job_no)) in ops.into_iter().enumerate() {
                let company = format!("c{company}");
                match op {
                    0 => { let _ = jobs.begin(job(&company, &format!("j{n}"), n as i64)); }
                    1 => {
                        let running: Vec<_> = jobs.of_company(&company).into_iter().filter(|j| j.state.is_running()).collect();
                        if let Some(j) = running.first() { jobs.finish(&company, &j.id, failed(), OffsetDateTime::UNIX_EPOCH); }
                    }
                    _ => jobs.progress(&company, &format!("j{job_no}"), 1, 2),
                }
                let all = jobs.lock();
                prop_assert!(all.len() <= MAX_COMPANIES);
                let running: usize = all.values().map(|js| js.iter().filter(|j| j.state.is_running()).count()).sum();
                prop_assert!(running <= MAX_RUNNING_PER_NODE);
                for js in all.values() {
                    prop_assert!(js.len() <= KEPT_PER_COMPANY + 1);
                    prop_assert!(js.iter().filter(|j| j.state.is_running()).count() <= 1);
                }
            }
        }
    }
}
