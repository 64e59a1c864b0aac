//! Passkeys (WebAuthn, verified by `webauthn-rs`): a person registers them
//! (the passphrase again), lists and removes them, and uses one as the
//! second factor of a login.
//!
//! The relying party is the console's public address (`public-url`): its
//! host is the RP id and it is the only origin accepted. A ceremony's state
//! (with its challenge) waits in the control store between the two requests
//! of the ceremony, so any node answers the second; each is taken once and
//! lives five minutes.

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use wb_core::Action;
use wb_crypto::{new_token, token_hash, Secret};
use wb_store::{Actor, Ceremony, Outcome, PasskeyRecord};
use webauthn_rs::prelude::{
    CreationChallengeResponse, Passkey, PasskeyAuthentication, PasskeyRegistration,
    PublicKeyCredential, RegisterPublicKeyCredential, RequestChallengeResponse, Url, Uuid,
    Webauthn, WebauthnBuilder,
};

use crate::account::account_event;
use crate::error::{ErrorKind, ServiceError, ServiceResult};
use crate::mfa::FACTOR_PASSKEY;
use crate::platform::Platform;
use crate::principal::Principal;

/// How long a ceremony waits for the authenticator.
const CEREMONY_TTL: Duration = Duration::minutes(5);
/// Passkeys one person may register.
pub const MAX_PASSKEYS: usize = 10;
const REGISTER: &str = "register";
pub(crate) const LOGIN: &str = "login";

/// What a registration ceremony keeps between its two requests.
#[derive(Serialize, Deserialize)]
struct Registration {
    name: String,
    state: PasskeyRegistration,
}

/// A registration waiting for the authenticator: the options to hand to
/// `navigator.credentials.create`, and the ceremony to answer.
pub struct PasskeyOffer {
    pub ceremony: Secret,
    pub options: CreationChallengeResponse,
}

fn invalid_credential(detail: impl Into<String>) -> ServiceError {
    ServiceError::new(
        ErrorKind::Unauthorized,
        "passkey-invalid",
        "Passkey not accepted",
        detail,
    )
}

fn user_uuid(user_id: &str) -> ServiceResult<Uuid> {
    Uuid::parse_str(user_id).map_err(|_| ServiceError::internal())
}

/// A passkey's name: 1 to 60 printable characters.
fn clean_name(name: &str) -> ServiceResult<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 60 || name.chars().any(char::is_control) {
        return Err(ServiceError::unprocessable(
            "invalid-passkey",
            "name the passkey with 1 to 60 printable characters",
        ));
    }
    Ok(name.to_string())
}

impl Platform {
    /// The relying party, from the console's public address.
    fn webauthn(&self) -> ServiceResult<Webauthn> {
        let base = self.mail_settings().public_url;
        let origin = Url::parse(&base).map_err(|_| ServiceError::internal())?;
        let rp_id = origin
            .host_str()
            .ok_or_else(ServiceError::internal)?
            .to_string();
        WebauthnBuilder::new(&rp_id, &origin)
            .and_then(|b| b.rp_name("Work-books").build())
            .map_err(|e| {
                // An IP address cannot be a relying party: the operator must
                // give the server a host name (`public-url`).
                tracing::warn!(error = %e, public_url = %base, "passkeys are off: the public address is not a host name");
                ServiceError::conflict(
                    "passkeys-unavailable",
                    "Passkeys need this server to be reached by a host name; ask the operator to set its public address (public-url).",
                )
            })
    }

    fn passkeys_of_records(records: &[PasskeyRecord]) -> ServiceResult<Vec<Passkey>> {
        records
            .iter()
            .map(|r| serde_json::from_str(&r.credential).map_err(|_| ServiceError::internal()))
            .collect()
    }

    /// Starts registering a passkey (after the passphrase again).
    pub async fn begin_passkey_registration(
        &self,
        principal: &Principal,
        passphrase: &Secret,
        name: &str,
        actor: Actor,
    ) -> ServiceResult<PasskeyOffer> {
        let name = clean_name(name)?;
        let user = self.signed_in_user(principal).await?;
        self.require_verified_session(principal, &user.id).await?;
        self.reauthenticate(&user, passphrase, None, Action::AuthMfaEnrol, &actor)
            .await?;
        let existing = self.control.passkeys(&user.id).await?;
        if existing.len() >= MAX_PASSKEYS {
            return Err(ServiceError::conflict(
                "too-many-passkeys",
                format!("at most {MAX_PASSKEYS} passkeys; remove one first"),
            ));
        }
        let exclude = Self::passkeys_of_records(&existing)?
            .iter()
            .map(|p| p.cred_id().clone())
            .collect();
        let display = user.name.clone().unwrap_or_else(|| user.email.clone());
        let (options, state) = self
            .webauthn()?
            .start_passkey_registration(user_uuid(&user.id)?, &user.email, &display, Some(exclude))
            .map_err(|_| ServiceError::internal())?;
        let token = new_token("wbw");
        let state = serde_json::to_string(&Registration { name, state })
            .map_err(|_| ServiceError::internal())?;
        self.control
            .put_ceremony(&Ceremony {
                token_hash: token.hash,
                user_id: Some(user.id),
                kind: REGISTER.into(),
                state,
                expires_at: self.now() + CEREMONY_TTL,
            })
            .await?;
        Ok(PasskeyOffer {
            ceremony: token.token,
            options,
        })
    }

    /// Finishes a registration with the authenticator's answer.
    pub async fn finish_passkey_registration(
        &self,
        principal: &Principal,
        ceremony: &Secret,
        credential: &RegisterPublicKeyCredential,
        actor: Actor,
    ) -> ServiceResult<PasskeyRecord> {
        let user = self.signed_in_user(principal).await?;
        let found = self
            .control
            .take_ceremony(&token_hash(ceremony), REGISTER, self.now())
            .await?
            .filter(|c| c.user_id.as_deref() == Some(user.id.as_str()));
        let Some(found) = found else {
            self.audit_mfa(
                &actor,
                &user.id,
                Action::AuthMfaEnrol,
                Outcome::Failure,
                "unknown, used or expired passkey registration",
            )
            .await?;
            return Err(ServiceError::new(
                ErrorKind::NotFound,
                "ceremony-invalid",
                "Registration not found",
                "this passkey registration is unknown, used or expired: start again",
            ));
        };
        let registration: Registration =
            serde_json::from_str(&found.state).map_err(|_| ServiceError::internal())?;
        let passkey = match self
            .webauthn()?
            .finish_passkey_registration(credential, &registration.state)
        {
            Ok(passkey) => passkey,
            Err(e) => {
                self.audit_mfa(
                    &actor,
                    &user.id,
                    Action::AuthMfaEnrol,
                    Outcome::Failure,
                    "passkey registration not verified",
                )
                .await?;
                return Err(invalid_credential(format!(
                    "the authenticator's answer was not accepted ({e})"
                )));
            }
        };
        let record = PasskeyRecord {
            id: uuid::Uuid::now_v7().to_string(),
            user_id: user.id.clone(),
            name: registration.name,
            credential: serde_json::to_string(&passkey).map_err(|_| ServiceError::internal())?,
            created_at: self.now(),
            last_used_at: None,
        };
        let audit = account_event(
            &actor,
            &user.id,
            Action::AuthMfaEnrol,
            Outcome::Success,
            &format!("passkey {} registered", record.id),
            self.now(),
        );
        self.control.add_passkey(&record, &audit).await?;
        self.notify(
            &user,
            "A passkey was added to your Work-books account",
            &format!(
                "A passkey named \"{}\" was registered as a second factor of your Work-books account",
                record.name
            ),
        )
        .await;
        Ok(record)
    }

    pub async fn my_passkeys(&self, principal: &Principal) -> ServiceResult<Vec<PasskeyRecord>> {
        let user = self.signed_in_user(principal).await?;
        Ok(self.control.passkeys(&user.id).await?)
    }

    /// Removes one of the caller's passkeys (the passphrase again).
    pub async fn remove_passkey(
        &self,
        principal: &Principal,
        id: &str,
        passphrase: &Secret,
        actor: Actor,
    ) -> ServiceResult<()> {
        let user = self.signed_in_user(principal).await?;
        self.require_verified_session(principal, &user.id).await?;
        self.reauthenticate(&user, passphrase, None, Action::AuthMfaRemove, &actor)
            .await?;
        let audit = account_event(
            &actor,
            &user.id,
            Action::AuthMfaRemove,
            Outcome::Success,
            &format!("passkey {id} removed"),
            self.now(),
        );
        self.control
            .remove_passkey(&user.id, id, &audit)
            .await
            .map_err(|e| match e {
                wb_store::StoreError::NotFound(_) => ServiceError::not_found("passkey"),
                other => other.into(),
            })?;
        self.notify(
            &user,
            "A passkey was removed from your Work-books account",
            "A passkey was removed from your Work-books account",
        )
        .await;
        Ok(())
    }

    /// For the first step of a login: a passkey challenge for the user's
    /// passkeys, kept under the login challenge's hash. None without passkeys.
    pub(crate) async fn passkey_login_options(
        &self,
        user_id: &str,
        challenge_hash: &str,
        expires_at: OffsetDateTime,
    ) -> ServiceResult<Option<RequestChallengeResponse>> {
        let records = self.control.passkeys(user_id).await?;
        if records.is_empty() {
            return Ok(None);
        }
        let passkeys = Self::passkeys_of_records(&records)?;
        let (options, state) = self
            .webauthn()?
            .start_passkey_authentication(&passkeys)
            .map_err(|_| ServiceError::internal())?;
        self.control
            .put_ceremony(&Ceremony {
                token_hash: challenge_hash.to_string(),
                user_id: Some(user_id.to_string()),
                kind: LOGIN.into(),
                state: serde_json::to_string(&state).map_err(|_| ServiceError::internal())?,
                expires_at,
            })
            .await?;
        Ok(Some(options))
    }

    /// Checks a passkey assertion against the login challenge's ceremony
    /// (taken: one try per challenge). None: not accepted.
    pub(crate) async fn prove_passkey(
        &self,
        user_id: &str,
        challenge_hash: &str,
        assertion: &PublicKeyCredential,
    ) -> ServiceResult<Option<&'static str>> {
        let Some(ceremony) = self
            .control
            .take_ceremony(challenge_hash, LOGIN, self.now())
            .await?
            .filter(|c| c.user_id.as_deref() == Some(user_id))
        else {
            return Ok(None);
        };
        let state: PasskeyAuthentication =
            serde_json::from_str(&ceremony.state).map_err(|_| ServiceError::internal())?;
        let Ok(result) = self
            .webauthn()?
            .finish_passkey_authentication(assertion, &state)
        else {
            return Ok(None);
        };
        for record in self.control.passkeys(user_id).await? {
            let mut passkey: Passkey =
                serde_json::from_str(&record.credential).map_err(|_| ServiceError::internal())?;
            if passkey.update_credential(&result).is_some() {
                let credential =
                    serde_json::to_string(&passkey).map_err(|_| ServiceError::internal())?;
                self.control
                    .touch_passkey(user_id, &record.id, &credential, self.now())
                    .await?;
                return Ok(Some(FACTOR_PASSKEY));
            }
        }
        Ok(None)
    }
}
