//! A short-lived cache of which user a session token belongs to.
//!
//! Answers live at most `TTL` (and never past the session's expiry); this
//! node forgets one at once on logout, another node sharing the control plane
//! may honour a logged-out session for at most `TTL`. What a session may do
//! is never cached: the door reads the member's role on every request
//! (`Platform::role_in`), and API keys are not cached at all.

use std::collections::HashMap;
use std::sync::Mutex;

use time::{Duration, OffsetDateTime};

use crate::principal::Principal;

pub const TTL: Duration = Duration::seconds(2);
const MAX_ENTRIES: usize = 100_000;

#[derive(Default)]
pub struct AuthCache {
    principals: Mutex<HashMap<String, (Principal, OffsetDateTime)>>,
}

impl AuthCache {
    pub fn principal(&self, token_hash: &str, now: OffsetDateTime) -> Option<Principal> {
        let map = self.principals.lock().ok()?;
        map.get(token_hash)
            .filter(|(_, until)| now < *until)
            .map(|(p, _)| p.clone())
    }

    pub fn remember_principal(
        &self,
        token_hash: &str,
        principal: &Principal,
        now: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) {
        if let Ok(mut map) = self.principals.lock() {
            if map.len() >= MAX_ENTRIES {
                map.retain(|_, (_, until)| now < *until);
                if map.len() >= MAX_ENTRIES {
                    map.clear();
                }
            }
            map.insert(
                token_hash.to_string(),
                (principal.clone(), (now + TTL).min(expires_at)),
            );
        }
    }

    pub fn forget_token(&self, token_hash: &str) {
        if let Ok(mut map) = self.principals.lock() {
            map.remove(token_hash);
        }
    }

    pub fn forget_api_key(&self, key_id: &str) {
        if let Ok(mut map) = self.principals.lock() {
            map.retain(
                |_, (p, _)| !matches!(p, Principal::ApiKey { key_id: k, .. } if k == key_id),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;
    use wb_core::Role;

    fn key(id: &str) -> Principal {
        Principal::ApiKey {
            key_id: id.into(),
            company_id: "c".into(),
            role: Role::Viewer,
        }
    }

    #[test]
    fn answers_expire_after_ttl_or_credential_expiry() {
        let cache = AuthCache::default();
        let now = datetime!(2026-01-01 0:00 UTC);
        cache.remember_principal("h1", &key("k1"), now, now + Duration::hours(1));
        assert!(cache.principal("h1", now + Duration::seconds(1)).is_some());
        assert!(cache.principal("h1", now + TTL).is_none());
        cache.remember_principal("h2", &key("k2"), now, now + Duration::milliseconds(500));
        assert!(cache
            .principal("h2", now + Duration::milliseconds(499))
            .is_some());
        assert!(cache
            .principal("h2", now + Duration::milliseconds(500))
            .is_none());
    }

    #[test]
    fn revocations_are_forgotten_at_once() {
        let cache = AuthCache::default();
        let now = datetime!(2026-01-01 0:00 UTC);
        let later = now + Duration::hours(1);
        cache.remember_principal("h1", &key("k1"), now, later);
        cache.remember_principal("h2", &key("k2"), now, later);
        cache.forget_api_key("k1");
        assert!(cache.principal("h1", now).is_none());
        assert!(cache.principal("h2", now).is_some());
        cache.forget_token("h2");
        assert!(cache.principal("h2", now).is_none());
    }
}
