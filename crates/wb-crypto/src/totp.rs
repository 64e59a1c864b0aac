//! Time-based one-time passwords (RFC 6238: HMAC-SHA-1, 6 digits, 30 s
//! steps, one step of skew either way) and recovery codes.
//!
//! Nothing here remembers which step was used: a code must be accepted at
//! most once, so callers store the last accepted step and refuse any step
//! not after it (`TotpSecret::verify` returns the step for that).

use rand::RngCore;
use sha2::{Digest, Sha256};
use totp_rs::{Algorithm, Builder, Totp};
use zeroize::Zeroizing;

use crate::Secret;

const DIGITS: u8 = 6;
const STEP_SECONDS: u64 = 30;
const SKEW_STEPS: u16 = 1;
const SECRET_BYTES: usize = 20;
/// Recovery codes issued at a time.
pub const RECOVERY_CODES: usize = 10;

/// A TOTP shared secret (160 bits); zeroized on drop, never printed.
#[derive(Clone)]
pub struct TotpSecret(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret(***)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TotpError {
    #[error("a TOTP secret must be {SECRET_BYTES} bytes")]
    BadSecret,
    #[error("the issuer or account name cannot be put in an otpauth URI")]
    BadLabel,
}

impl TotpSecret {
    pub fn generate() -> TotpSecret {
        let mut bytes = Zeroizing::new(vec![0u8; SECRET_BYTES]);
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        TotpSecret(bytes)
    }

    /// A secret from its stored bytes (after unsealing).
    pub fn from_bytes(bytes: &[u8]) -> Result<TotpSecret, TotpError> {
        if bytes.len() != SECRET_BYTES {
            return Err(TotpError::BadSecret);
        }
        Ok(TotpSecret(Zeroizing::new(bytes.to_vec())))
    }

    /// A secret from its base32 form (as shown at enrolment).
    pub fn from_base32(text: &str) -> Result<TotpSecret, TotpError> {
        let mut bytes = Zeroizing::new(Vec::with_capacity(SECRET_BYTES));
        let (mut buffer, mut bits) = (0u32, 0u32);
        for c in text.chars().filter(|c| *c != '=' && !c.is_whitespace()) {
            let value = match c.to_ascii_uppercase() {
                c @ 'A'..='Z' => c as u32 - 'A' as u32,
                c @ '2'..='7' => c as u32 - '2' as u32 + 26,
                _ => return Err(TotpError::BadSecret),
            };
            buffer = (buffer << 5) | value;
            bits += 5;
            if bits >= 8 {
                bits -= 8;
                bytes.push(((buffer >> bits) & 0xff) as u8);
            }
        }
        TotpSecret::from_bytes(&bytes)
    }

    /// The bytes to seal for storage.
    pub fn expose_bytes(&self) -> &[u8] {
        &self.0
    }

    fn totp(&self, issuer: Option<&str>, account: &str) -> Result<Totp, TotpError> {
        Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(DIGITS)
            .with_skew(SKEW_STEPS)
            .with_step_duration(STEP_SECONDS)
            .with_secret(self.0.to_vec())
            .with_issuer(issuer)
            .with_account_name(account)
            .build()
            .map_err(|_| TotpError::BadLabel)
    }

    fn checker(&self) -> Result<Totp, TotpError> {
        self.totp(None, "account")
    }

    /// The `otpauth://` URI an authenticator app enrols from.
    pub fn uri(&self, issuer: &str, account: &str) -> Result<Secret, TotpError> {
        // Colons separate issuer and account in the label.
        let clean = |s: &str| s.replace(':', " ");
        let totp = self.totp(Some(&clean(issuer)), &clean(account))?;
        totp.to_url()
            .map(Secret::new)
            .map_err(|_| TotpError::BadLabel)
    }

    /// The base32 form of the secret, for typing it in by hand.
    pub fn base32(&self) -> Secret {
        Secret::new(base32_encode(&self.0))
    }

    /// The code for `unix_seconds` (tests and the CLI's own checks).
    pub fn code_at(&self, unix_seconds: u64) -> Result<Secret, TotpError> {
        Ok(Secret::new(
            self.checker()?.generate(unix_seconds).to_string(),
        ))
    }

    /// The step (`unix time / 30`) whose code `code` is, within one step of
    /// `unix_seconds`; `None` for a wrong or malformed code.
    pub fn verify(&self, code: &str, unix_seconds: u64) -> Option<u64> {
        let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
        if code.len() != usize::from(DIGITS) || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        self.checker().ok()?.check(&code, unix_seconds)
    }
}

/// RFC 4648 base32 without padding (what authenticator apps take).
fn base32_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// Ten fresh recovery codes, `xxxxx-xxxxx` of lower-case base32 (50 bits
/// each), shown once; store only `recovery_code_hash` of each.
pub fn new_recovery_codes() -> Vec<Secret> {
    (0..RECOVERY_CODES)
        .map(|_| {
            let mut bytes = Zeroizing::new([0u8; 7]);
            rand::rngs::OsRng.fill_bytes(bytes.as_mut());
            let text = base32_encode(bytes.as_ref()).to_lowercase();
            Secret::new(format!("{}-{}", &text[..5], &text[5..10]))
        })
        .collect()
}

/// What is stored of a recovery code: SHA-256 of its normalized form
/// (lower case, without spaces or dashes), so it can be typed either way.
/// 50 random bits make a slow hash unnecessary.
pub fn recovery_code_hash(code: &str) -> Option<String> {
    let normal: String = code
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_lowercase)
        .collect();
    let valid = normal.len() == 10
        && normal
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'2'..=b'7'));
    valid.then(|| hex::encode(Sha256::digest(format!("workbooks-recovery/v1:{normal}"))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 6238 appendix B, SHA-1 secret "12345678901234567890" (8 digits
    /// there; the last 6 are the 6-digit code).
    #[test]
    fn rfc6238_vectors() {
        let secret = TotpSecret::from_bytes(b"12345678901234567890").unwrap();
        for (time, code) in [
            (59u64, "287082"),
            (1_111_111_109, "081804"),
            (1_111_111_111, "050471"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
        ] {
            assert_eq!(secret.code_at(time).unwrap().expose(), code, "{time}");
            assert_eq!(secret.verify(code, time), Some(time / 30));
        }
    }

    #[test]
    fn one_step_of_skew_and_no_more() {
        let secret = TotpSecret::generate();
        let t = 1_800_000_015;
        let code = secret.code_at(t).unwrap();
        assert_eq!(secret.verify(code.expose(), t), Some(t / 30));
        assert_eq!(secret.verify(code.expose(), t + 30), Some(t / 30));
        assert_eq!(secret.verify(code.expose(), t - 30), Some(t / 30));
        assert_eq!(secret.verify(code.expose(), t + 60), None);
        assert_eq!(secret.verify(code.expose(), t - 60), None);
        assert_eq!(secret.verify("12345", t), None);
        assert_eq!(secret.verify("abcdef", t), None);
        let spaced = format!("{} {}", &code.expose()[..3], &code.expose()[3..]);
        assert_eq!(secret.verify(&spaced, t), Some(t / 30));
    }

    #[test]
    fn uri_and_base32() {
        let secret = TotpSecret::from_bytes(b"12345678901234567890").unwrap();
        assert_eq!(secret.base32().expose(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        let back = TotpSecret::from_base32("gezd gnbv gy3t qojq gezd gnbv gy3t qojq").unwrap();
        assert_eq!(back.expose_bytes(), secret.expose_bytes());
        assert!(TotpSecret::from_base32("GEZDGNBV").is_err());
        assert!(TotpSecret::from_base32("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJ1").is_err());
        let uri = secret.uri("Work-books", "ann@example.com").unwrap();
        assert!(
            uri.expose()
                .starts_with("otpauth://totp/Work-books:ann%40example.com?"),
            "{}",
            uri.expose()
        );
        assert!(uri
            .expose()
            .contains("secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"));
        assert!(uri.expose().contains("issuer=Work-books"));
        assert_eq!(format!("{secret:?}"), "TotpSecret(***)");
    }

    #[test]
    fn recovery_codes_are_distinct_and_hash_however_typed() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODES);
        let hashes: std::collections::BTreeSet<String> = codes
            .iter()
            .map(|c| recovery_code_hash(c.expose()).unwrap())
            .collect();
        assert_eq!(hashes.len(), RECOVERY_CODES);
        let code = codes[0].expose();
        let typed = code.replace('-', " ").to_uppercase();
        assert_eq!(recovery_code_hash(code), recovery_code_hash(&typed));
        assert_eq!(recovery_code_hash("123456"), None);
        assert_eq!(recovery_code_hash("abcde-fghi1"), None);
    }

    proptest! {
        /// A code verifies at the step it was made for, from one step
        /// before to one step after, and only there.
        #[test]
        fn codes_verify_only_near_their_step(t in 60u64..4_000_000_000, offset in -3i64..=3) {
            let secret = TotpSecret::from_bytes(&[7u8; 20]).unwrap();
            let code = secret.code_at(t).unwrap();
            let at = t.saturating_add_signed(offset * 30);
            let found = secret.verify(code.expose(), at);
            if offset.abs() <= 1 {
                prop_assert_eq!(found, Some(t / 30));
            } else {
                // Another step may by chance have the same code (1 in 10^6).
                prop_assert!(found != Some(t / 30));
            }
        }
    }
}
