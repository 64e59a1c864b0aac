//! Scheduled export pushes ("customer backups … pushed on a schedule to a
//! bucket the customer names", SPEC §3.12).
//!
//! A company's owner or admin sets one schedule (`schedule.rs`): a
//! destination (`destination.rs`), the access key of that bucket, an age
//! recipient and a period. `jobs/export_pusher.rs` calls [`push_due`]
//! (`push.rs`) every minute: for each due schedule it builds a full export
//! with `crate::exports::prepare` and streams it with
//! `crate::exports::write_to_store` (the same export a download gives),
//! encrypted to the recipient, and uploads it with a JSON sidecar.
//!
//! Secrets: the bucket's access key is sealed under the company's DEK
//! (XChaCha20-Poly1305, associated data binding purpose, company and
//! destination URL) before it reaches the control store, opened only for a
//! push, held in memory as `Secret`s, and never logged, audited, echoed or
//! printed by `Debug`. A schedule cannot hold a passphrase: the platform
//! would have to keep it, and could then open the exports.

pub mod destination;
pub mod push;
pub mod pusher;
pub mod schedule;

use serde::{Deserialize, Serialize};
use wb_crypto::{CompanyKeys, Secret};

pub use destination::{Destination, DestinationError, DestinationPolicy};
pub use push::{push_due, PushReport, EXPORT_PUSH_RULE, FAILURES_ALERT_AFTER};

/// The access key of a customer's bucket. Prints as `***`.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: Secret,
    pub secret_access_key: Secret,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(***)")
    }
}

#[derive(Serialize, Deserialize)]
struct SealedForm {
    access_key_id: String,
    secret_access_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the credentials cannot be sealed")]
    Seal,
    #[error("the stored credentials cannot be opened (was the schedule moved or altered?); set the schedule again")]
    Open,
}

impl Credentials {
    /// Seals under the company's DEK, bound to the company and destination.
    pub fn seal(
        &self,
        key: &CompanyKeys,
        company_id: &str,
        destination: &str,
    ) -> Result<Vec<u8>, SealError> {
        let form = SealedForm {
            access_key_id: self.access_key_id.expose().to_owned(),
            secret_access_key: self.secret_access_key.expose().to_owned(),
        };
        let plain = Secret::from(serde_json::to_string(&form).map_err(|_| SealError::Seal)?);
        // Zeroize the intermediate copies too.
        drop((
            Secret::from(form.access_key_id),
            Secret::from(form.secret_access_key),
        ));
        key.seal(
            plain.expose().as_bytes(),
            &crate::keyring::export_push_credentials_aad(company_id, destination),
        )
        .map_err(|_| SealError::Seal)
    }

    pub fn open(
        sealed: &[u8],
        key: &CompanyKeys,
        company_id: &str,
        destination: &str,
    ) -> Result<Credentials, SealError> {
        let plain = key
            .open(
                sealed,
                &crate::keyring::export_push_credentials_aad(company_id, destination),
            )
            .map_err(|_| SealError::Open)?;
        let form: SealedForm = serde_json::from_slice(&plain).map_err(|_| SealError::Open)?;
        Ok(Credentials {
            access_key_id: Secret::from(form.access_key_id),
            secret_access_key: Secret::from(form.secret_access_key),
        })
    }

    /// Replaces every occurrence of either part of the key in `text` (an
    /// error message from a remote server may echo the key id).
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in [&self.secret_access_key, &self.access_key_id] {
            if !secret.expose().is_empty() {
                out = out.replace(secret.expose(), "***");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials {
            access_key_id: Secret::new("AKIAEXAMPLE".into()),
            secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG".into()),
        }
    }

    #[test]
    fn sealed_credentials_open_only_for_their_company_and_destination() {
        let key = CompanyKeys::single(wb_crypto::DataKey::generate());
        let sealed = creds().seal(&key, "c1", "s3://b").unwrap();
        assert!(!String::from_utf8_lossy(&sealed).contains("wJalr"));
        let opened = Credentials::open(&sealed, &key, "c1", "s3://b").unwrap();
        assert_eq!(opened.secret_access_key.expose(), "wJalrXUtnFEMI/K7MDENG");
        assert_eq!(opened.access_key_id.expose(), "AKIAEXAMPLE");
        for (company, destination) in [("c2", "s3://b"), ("c1", "s3://evil")] {
            assert_eq!(
                Credentials::open(&sealed, &key, company, destination).unwrap_err(),
                SealError::Open
            );
        }
        let other = CompanyKeys::single(wb_crypto::DataKey::generate());
        assert!(Credentials::open(&sealed, &other, "c1", "s3://b").is_err());
    }

    #[test]
    fn credentials_never_print() {
        let c = creds();
        assert_eq!(format!("{c:?}"), "Credentials(***)");
        assert_eq!(
            c.scrub("denied for AKIAEXAMPLE with wJalrXUtnFEMI/K7MDENG"),
            "denied for *** with ***"
        );
    }
}
