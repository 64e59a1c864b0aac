//! A short-lived cache of authentication and membership answers.
//!
//! Every API request resolves a token and a role; without a cache that is two
//! control-database reads on the blocking pool per request. Answers live at most
//! `TTL` (and never past a session's or key's expiry). This node forgets them at
//! once on logout, key revocation and role changes; another node sharing the
//! control plane may honour a revoked credential for at most `TTL`.

use std::collections::HashMap;
use std::sync::Mutex;

use time::{Duration, OffsetDateTime};
use wb_core::Role;

use crate::principal::Principal;

pub const TTL: Duration = Duration::seconds(2);
const MAX_ENTRIES: usize = 100_000;

/// (user id, company id) -> (role or none, valid until).
type RoleMap = HashMap<(String, String), (Option<Role>, OffsetDateTime)>;

#[derive(Default)]
pub struct AuthCache {
    principals: Mutex<HashMap<String, (Principal, OffsetDateTime)>>,
    roles: Mutex<RoleMap>,
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

    pub fn role(
        &self,
        user_id: &str,
        company_id: &str,
        now: OffsetDateTime,
    ) -> Option<Option<Role>> {
        let map = self.roles.lock().ok()?;
        map.get(&(user_id.to_string(), company_id.to_string()))
            .filter(|(_, until)| now < *until)
            .map(|(r, _)| *r)
    }

    pub fn remember_role(
        &self,
        user_id: &str,
        company_id: &str,
        role: Option<Role>,
        now: OffsetDateTime,
    ) {
        if let Ok(mut map) = self.roles.lock() {
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
            map.insert(
                (user_id.to_string(), company_id.to_string()),
                (role, now + TTL),
            );
        }
    }

    pub fn forget_role(&self, user_id: &str, company_id: &str) {
        if let Ok(mut map) = self.roles.lock() {
            map.remove(&(user_id.to_string(), company_id.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

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
        cache.remember_role("u", "c", Some(Role::Admin), now);
        assert_eq!(cache.role("u", "c", now), Some(Some(Role::Admin)));
        cache.forget_role("u", "c");
        assert_eq!(cache.role("u", "c", now), None);
    }
}
