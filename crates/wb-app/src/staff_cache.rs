//! A one-second memory of what the door asks about staff on every request:
//! who a staff token belongs to (with their roles now), and a staff
//! member's grants for a company with the company's security policy.
//!
//! The issue allows it and bounds it: an answer lives at most [`TTL`] (and
//! never past the session's own end); this node forgets at once what its
//! own decisions change (a grant decided, a policy set, a staff account
//! changed or a session ended), so a revocation holds at once on the node
//! that made it and within a second on the others (and after a change made
//! on the host by `workbooks staff …`). What a grant allows is never cached:
//! the door asks the cached grant with the time of each request, so a grant
//! ends at its end exactly.

use std::collections::HashMap;
use std::sync::Mutex;

use time::{Duration, OffsetDateTime};
use wb_core::grants::Grant;
use wb_core::security_policy::SecurityPolicy;
use wb_core::staff::StaffRole;

/// How long an answer may be used.
pub const TTL: Duration = Duration::seconds(1);
/// Beyond this many entries a map is emptied of stale ones (or cleared).
const MAX_ENTRIES: usize = 50_000;

/// A staff member as a valid session shows them.
#[derive(Clone)]
pub struct StaffHolder {
    pub staff_id: String,
    pub email: String,
    pub roles: Vec<StaffRole>,
}

/// A staff member's grants for one company, and the company's policy.
#[derive(Clone)]
pub struct StaffAccess {
    pub grants: Vec<Grant>,
    pub policy: Option<SecurityPolicy>,
}

type Timed<T> = (T, OffsetDateTime);

#[derive(Default)]
pub struct StaffCache {
    sessions: Mutex<HashMap<String, Timed<StaffHolder>>>,
    access: Mutex<HashMap<(String, String), Timed<StaffAccess>>>,
}

fn remember<K: std::hash::Hash + Eq, T>(
    map: &Mutex<HashMap<K, Timed<T>>>,
    key: K,
    value: T,
    now: OffsetDateTime,
    until: OffsetDateTime,
) {
    if let Ok(mut map) = map.lock() {
        if map.len() >= MAX_ENTRIES {
            map.retain(|_, (_, u)| now < *u);
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
        map.insert(key, (value, (now + TTL).min(until)));
    }
}

fn recall<K: std::hash::Hash + Eq, T: Clone>(
    map: &Mutex<HashMap<K, Timed<T>>>,
    key: &K,
    now: OffsetDateTime,
) -> Option<T> {
    let map = map.lock().ok()?;
    map.get(key)
        .filter(|(_, until)| now < *until)
        .map(|(v, _)| v.clone())
}

impl StaffCache {
    pub fn holder(&self, token_hash: &str, now: OffsetDateTime) -> Option<StaffHolder> {
        recall(&self.sessions, &token_hash.to_string(), now)
    }

    /// `until`: the session's own end (absolute or idle), whichever is first.
    pub fn remember_holder(
        &self,
        token_hash: &str,
        holder: StaffHolder,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) {
        remember(&self.sessions, token_hash.to_string(), holder, now, until);
    }

    pub fn access(
        &self,
        staff_id: &str,
        company_id: &str,
        now: OffsetDateTime,
    ) -> Option<StaffAccess> {
        recall(
            &self.access,
            &(staff_id.to_string(), company_id.to_string()),
            now,
        )
    }

    pub fn remember_access(
        &self,
        staff_id: &str,
        company_id: &str,
        access: StaffAccess,
        now: OffsetDateTime,
    ) {
        remember(
            &self.access,
            (staff_id.to_string(), company_id.to_string()),
            access,
            now,
            now + TTL,
        );
    }

    /// A grant was decided or a company's policy changed on this node.
    pub fn forget_access(&self) {
        if let Ok(mut map) = self.access.lock() {
            map.clear();
        }
    }

    /// A staff account changed or a session ended on this node.
    pub fn forget_sessions(&self) {
        if let Ok(mut map) = self.sessions.lock() {
            map.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn holder() -> StaffHolder {
        StaffHolder {
            staff_id: "s1".into(),
            email: "s@example.com".into(),
            roles: vec![StaffRole::Support],
        }
    }

    #[test]
    fn answers_live_a_second_never_past_the_session_and_are_forgotten() {
        let now = datetime!(2026-12-04 10:00 UTC);
        let cache = StaffCache::default();
        cache.remember_holder("h", holder(), now, now + Duration::hours(1));
        assert!(cache
            .holder("h", now + Duration::milliseconds(999))
            .is_some());
        assert!(cache.holder("h", now + TTL).is_none());
        cache.remember_holder("h", holder(), now, now + Duration::milliseconds(10));
        assert!(cache
            .holder("h", now + Duration::milliseconds(10))
            .is_none());
        cache.remember_holder("h", holder(), now, now + Duration::hours(1));
        cache.forget_sessions();
        assert!(cache.holder("h", now).is_none());

        let access = StaffAccess {
            grants: Vec::new(),
            policy: None,
        };
        cache.remember_access("s1", "c1", access, now);
        assert!(cache.access("s1", "c1", now).is_some());
        assert!(cache.access("s1", "c2", now).is_none());
        assert!(cache.access("s1", "c1", now + TTL).is_none());
        cache.forget_access();
        assert!(cache.access("s1", "c1", now).is_none());
    }
}
