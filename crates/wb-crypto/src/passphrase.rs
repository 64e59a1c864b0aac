//! Argon2id passphrase hashing (OWASP parameters) and a strength check.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::Secret;

pub const MIN_PASSPHRASE_CHARS: usize = 12;
/// The longest passphrase accepted anywhere (setting one, logging in), in
/// bytes of UTF-8: one limit, so whatever was accepted can be typed again.
pub const MAX_PASSPHRASE_BYTES: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PassphraseError {
    #[error("passphrase is too weak: {0}")]
    Weak(String),
    #[error("passphrase hashing failed")]
    Hash,
}

fn argon2() -> Argon2<'static> {
    // OWASP: Argon2id, m = 19 MiB, t = 2, p = 1.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

pub fn hash_passphrase(passphrase: &Secret) -> Result<String, PassphraseError> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon2()
        .hash_password(passphrase.expose().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| PassphraseError::Hash)
}

/// Constant-time verification; a malformed stored hash verifies nothing.
pub fn verify_passphrase(stored_hash: &str, passphrase: &Secret) -> bool {
    match PasswordHash::new(stored_hash) {
        Ok(parsed) => argon2()
            .verify_password(passphrase.expose().as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Refuses passphrases shorter than 12 characters, longer than
/// `MAX_PASSPHRASE_BYTES` bytes, on the bundled breached list (compared
/// case-insensitively), or scoring below `min_score`
/// (0–4) on zxcvbn, with zxcvbn's reason. `related` are the user's own words
/// (email, company name) which make a passphrase guessable.
pub fn check_strength(
    passphrase: &Secret,
    related: &[&str],
    min_score: u8,
) -> Result<(), PassphraseError> {
    let text = passphrase.expose();
    // Bytes first: the long ones are refused before anything costs time.
    if text.len() > MAX_PASSPHRASE_BYTES {
        return Err(PassphraseError::Weak(format!(
            "use at most {MAX_PASSPHRASE_BYTES} bytes (this one has {}; \
             accented letters take two bytes, emoji four)",
            text.len()
        )));
    }
    if text.chars().count() < MIN_PASSPHRASE_CHARS {
        return Err(PassphraseError::Weak(format!(
            "use at least {MIN_PASSPHRASE_CHARS} characters"
        )));
    }
    if crate::breached::is_breached(text) {
        return Err(PassphraseError::Weak(
            "it is on a list of commonly breached passwords; choose another".into(),
        ));
    }
    let estimate = zxcvbn::zxcvbn(text, related);
    if u8::from(estimate.score()) >= min_score {
        return Ok(());
    }
    let reason = estimate
        .feedback()
        .and_then(|f| f.warning().map(|w| w.to_string()))
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "it is easy to guess; add more unrelated words".to_string());
    Err(PassphraseError::Weak(reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ() {
        let p = Secret::new("correct horse battery staple".into());
        let a = hash_passphrase(&p).unwrap();
        let b = hash_passphrase(&p).unwrap();
        assert_ne!(a, b, "salted");
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify_passphrase(&a, &p));
        assert!(!verify_passphrase(
            &a,
            &Secret::new("correct horse battery stapler".into())
        ));
        assert!(!verify_passphrase("garbage", &p));
    }

    #[test]
    fn breached_passphrases_are_refused_even_when_zxcvbn_likes_them() {
        // zxcvbn alone scores this 4; it is on the bundled breached list.
        let leaked = "00meinstar00";
        assert_eq!(u8::from(zxcvbn::zxcvbn(leaked, &[]).score()), 4);
        for spelled in [leaked, "00MeinStar00", "00MEINSTAR00"] {
            let err = check_strength(&Secret::new(spelled.into()), &[], 3).unwrap_err();
            let PassphraseError::Weak(reason) = err else {
                panic!("not a strength refusal");
            };
            assert!(reason.contains("breached"), "{reason}");
            assert!(!reason.to_lowercase().contains("meinstar"), "never echoed");
        }
    }

    #[test]
    fn strength_check_gives_reasons() {
        let weak = [
            "short",
            "password1234",
            "aaaaaaaaaaaaaaaa",
            "qwertyuiopasdf",
        ];
        for w in weak {
            let err = check_strength(&Secret::new(w.into()), &[], 3).unwrap_err();
            assert!(
                matches!(err, PassphraseError::Weak(ref r) if !r.is_empty()),
                "{w}"
            );
        }
        // The user's own words (email, company name) make a passphrase guessable.
        let own = Secret::new("acmeledger12".into());
        assert!(check_strength(&own, &[], 4).is_ok());
        assert!(check_strength(&own, &["acme", "ledger"], 4).is_err());
        assert!(check_strength(&Secret::new("violet orbit cactus thunder".into()), &[], 3).is_ok());
    }

    #[test]
    fn the_length_limit_is_in_bytes() {
        let strong = "quasar marmot plinth 47 ferrous kettle";
        // 1,024 bytes in 531 characters: accepted; one byte more is not.
        let longest = format!(
            "{strong}{}",
            "é".repeat((MAX_PASSPHRASE_BYTES - strong.len()) / 2)
        );
        assert_eq!(longest.len(), MAX_PASSPHRASE_BYTES);
        assert!(check_strength(&Secret::new(longest.clone()), &[], 3).is_ok());
        let Err(PassphraseError::Weak(reason)) =
            check_strength(&Secret::new(format!("{longest}x")), &[], 3)
        else {
            panic!("a passphrase of 1,025 bytes is refused");
        };
        assert!(
            reason.contains("at most 1024 bytes") && reason.contains("1025"),
            "{reason}"
        );
        // Four-byte characters: 1,024 bytes in 286 characters.
        let emoji = format!("{strong}{}xx", "🦀".repeat(246));
        assert_eq!(emoji.len(), MAX_PASSPHRASE_BYTES);
        assert!(check_strength(&Secret::new(emoji.clone()), &[], 3).is_ok());
        assert!(check_strength(&Secret::new(format!("{emoji}x")), &[], 3).is_err());
    }
}
