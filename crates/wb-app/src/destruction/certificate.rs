//! The certificate of destruction: what was destroyed, when and by which
//! node, signed with the node's key, whose certificate from the
//! deployment's certification key travels with it. Anyone can check it
//! offline (`workbooks certificate verify FILE`): no key, no server. No IO.
//!
//! The signed bytes are a fixed prefix and the body's JSON as this module
//! writes it (fields in declaration order); a verifier parses the body,
//! refusing unknown fields, and writes it again, so any edit of a field,
//! or an added one, changes the bytes and fails the signature.

use serde::{Deserialize, Serialize};
use wb_core::lifecycle::StepRecord;
use wb_crypto::{verify_node_certificate, verify_signature, NodeKey};

pub const FORMAT: &str = "workbooks-destruction-certificate/v1";
const ALGORITHM: &str = "ed25519";

/// What the certificate states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateBody {
    pub format: String,
    pub id: String,
    pub company_id: String,
    /// SHA-256 (hex) of the company's name as it was: the certificate names
    /// the company without keeping its name.
    pub company_name_sha256: String,
    pub deprovisioned_at: String,
    pub deprovisioned_by: String,
    pub destroy_after: String,
    pub destroyed_at: String,
    /// The operator destroyed it before the grace period ended
    /// (`workbooks company destroy --confirm`).
    pub grace_overridden: bool,
    pub node_id: String,
    /// Each step, in the order taken.
    pub steps: Vec<StepRecord>,
    pub total_items: u64,
    pub total_bytes: u64,
}

/// Who signed, and the signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateSignature {
    pub algorithm: String,
    pub node_id: String,
    pub node_public_key: String,
    /// The node key's certificate by the deployment (hex).
    pub node_certificate: String,
    /// The deployment's certification public key, to compare with the one
    /// the operator publishes (`workbooks keys status`).
    pub deployment_public_key: String,
    /// The signature of the body (hex).
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedCertificate {
    pub certificate: CertificateBody,
    pub signature: CertificateSignature,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    #[error("not a certificate of destruction: {0}")]
    Malformed(String),
    #[error("unknown certificate format {0:?}")]
    Format(String),
    #[error("the signature does not match the certificate: it was changed after signing, or not signed by the node it names")]
    Signature,
    #[error("the signing node's key is not certified by the deployment key the certificate names")]
    NodeCertificate,
    #[error("signed by deployment key {found}, not the expected {expected}")]
    Deployment { found: String, expected: String },
}

/// The bytes signed for `body`.
fn message(body: &CertificateBody) -> Result<Vec<u8>, CertificateError> {
    let json = serde_json::to_vec(body).map_err(|e| CertificateError::Malformed(e.to_string()))?;
    let mut message = Vec::with_capacity(FORMAT.len() + 1 + json.len());
    message.extend_from_slice(FORMAT.as_bytes());
    message.push(b'\n');
    message.extend_from_slice(&json);
    Ok(message)
}

/// Signs `body` with the node's key.
pub fn sign(
    body: CertificateBody,
    node_key: &NodeKey,
    node_certificate: &[u8],
    deployment_public_key: String,
) -> Result<SignedCertificate, CertificateError> {
    let value = node_key.sign(&message(&body)?);
    Ok(SignedCertificate {
        signature: CertificateSignature {
            algorithm: ALGORITHM.into(),
            node_id: body.node_id.clone(),
            node_public_key: node_key.public_key_hex(),
            node_certificate: hex::encode(node_certificate),
            deployment_public_key,
            value: hex::encode(value),
        },
        certificate: body,
    })
}

/// Checks a certificate's text offline; with `expected_deployment_key`,
/// also that it was signed within that deployment.
pub fn verify(
    text: &str,
    expected_deployment_key: Option<&str>,
) -> Result<SignedCertificate, CertificateError> {
    let signed: SignedCertificate =
        serde_json::from_str(text).map_err(|e| CertificateError::Malformed(e.to_string()))?;
    if signed.certificate.format != FORMAT {
        return Err(CertificateError::Format(signed.certificate.format));
    }
    let s = &signed.signature;
    if s.algorithm != ALGORITHM || s.node_id != signed.certificate.node_id {
        return Err(CertificateError::Signature);
    }
    let value = hex::decode(&s.value).map_err(|_| CertificateError::Signature)?;
    if !verify_signature(&s.node_public_key, &message(&signed.certificate)?, &value) {
        return Err(CertificateError::Signature);
    }
    let node_certificate =
        hex::decode(&s.node_certificate).map_err(|_| CertificateError::NodeCertificate)?;
    if !verify_node_certificate(
        &s.deployment_public_key,
        &s.node_id,
        &s.node_public_key,
        &node_certificate,
    ) {
        return Err(CertificateError::NodeCertificate);
    }
    if let Some(expected) = expected_deployment_key {
        if !expected
            .trim()
            .eq_ignore_ascii_case(&s.deployment_public_key)
        {
            return Err(CertificateError::Deployment {
                found: s.deployment_public_key.clone(),
                expected: expected.trim().to_string(),
            });
        }
    }
    Ok(signed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wb_core::lifecycle::DestructionStep;
    use wb_crypto::{MasterKey, NodeCertifier};

    fn body() -> CertificateBody {
        CertificateBody {
            format: FORMAT.into(),
            id: "cert-1".into(),
            company_id: "c-1".into(),
            company_name_sha256: "00".repeat(32),
            deprovisioned_at: "2026-01-01T00:00:00Z".into(),
            deprovisioned_by: "user:u".into(),
            destroy_after: "2026-01-31T00:00:00Z".into(),
            destroyed_at: "2026-01-31T00:05:00Z".into(),
            grace_overridden: false,
            node_id: "node-a".into(),
            steps: vec![StepRecord {
                step: DestructionStep::Database,
                items: 3,
                bytes: 4096,
                finished_at: "2026-01-31T00:01:00Z".into(),
                names: vec!["c-1.db".into()],
            }],
            total_items: 3,
            total_bytes: 4096,
        }
    }

    fn signed() -> (String, String) {
        let master = MasterKey::generate();
        let certifier = NodeCertifier::new(&master);
        let node = NodeKey::generate();
        let cert = certifier.certify("node-a", &node.public_key_hex());
        let signed = sign(body(), &node, &cert, certifier.public_key_hex()).unwrap();
        (
            serde_json::to_string_pretty(&signed).unwrap(),
            certifier.public_key_hex(),
        )
    }

    #[test]
    fn a_signed_certificate_verifies_offline() {
        let (text, deployment) = signed();
        let checked = verify(&text, None).unwrap();
        assert_eq!(checked.certificate, body());
        assert!(verify(&text, Some(&deployment)).is_ok());
        let other = NodeCertifier::new(&MasterKey::generate()).public_key_hex();
        assert!(matches!(
            verify(&text, Some(&other)),
            Err(CertificateError::Deployment { .. })
        ));
    }

    #[test]
    fn every_edit_fails() {
        let (text, _) = signed();
        for (from, to) in [
            ("\"items\": 3", "\"items\": 2"),
            ("\"total_bytes\": 4096", "\"total_bytes\": 4095"),
            ("2026-01-31T00:05:00Z", "2026-01-31T00:06:00Z"),
            ("\"grace_overridden\": false", "\"grace_overridden\": true"),
            ("\"company_id\": \"c-1\"", "\"company_id\": \"c-2\""),
            (
                "\"total_items\": 3",
                "\"total_items\": 3, \"note\": \"added\"",
            ),
        ] {
            assert!(text.contains(from), "{from}");
            let edited = text.replacen(from, to, 1);
            assert!(verify(&edited, None).is_err(), "{from} -> {to}");
        }
        // Re-signed by a node the deployment never certified.
        let mut forged: SignedCertificate = serde_json::from_str(&text).unwrap();
        let rogue = NodeKey::generate();
        forged.signature.node_public_key = rogue.public_key_hex();
        forged.signature.value = hex::encode(rogue.sign(&message(&forged.certificate).unwrap()));
        assert_eq!(
            verify(&serde_json::to_string(&forged).unwrap(), None),
            Err(CertificateError::NodeCertificate)
        );
        assert!(matches!(
            verify("{}", None),
            Err(CertificateError::Malformed(_))
        ));
    }
}
