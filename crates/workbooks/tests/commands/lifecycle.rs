//! The end of a company on the host: `company destroy` refuses a company
//! that is not de-provisioned and asks for `--confirm`; with it, it
//! destroys a de-provisioned company before its grace period ends and
//! prints a certificate that `certificate verify` accepts offline (and
//! refuses when edited, or signed in another deployment); afterwards
//! `restore` and `backup verify` refuse the company in one line.

use time::OffsetDateTime;
use wb_core::Action;
use wb_store::{Actor, AuditEvent, Deprovisioning, Outcome};

use crate::common::{fails_with, ok_json, open, stderr_line, workbooks};

#[test]
fn company_destroy_overrides_the_grace_period_and_its_certificate_verifies_offline() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    assert!(workbooks(&["init"], data).status.success());
    let company = ok_json(&workbooks(
        &["company", "create", "--name", "Ending Ltd", "--json"],
        data,
    ));
    let id = company["id"].as_str().unwrap().to_string();

    let database = data.join("companies").join(format!("{id}.db"));
    assert!(database.exists());
    fails_with(
        &workbooks(&["company", "destroy", "--company", &id, "--confirm"], data),
        "not de-provisioned",
    );
    fails_with(
        &workbooks(&["company", "destroy", "--company", &id], data),
        "add --confirm",
    );

    // De-provisioned (as its owner would over the API), 30 days of grace.
    deprovision(data, &id);

    // Within the grace period the operator may export it for its owner,
    // and the export opens with the owner's age identity.
    let identity = wb_server::exports::age::x25519::Identity::generate();
    let identity_file = data.join("owner.age");
    {
        use wb_server::exports::age::secrecy::ExposeSecret;
        std::fs::write(&identity_file, identity.to_string().expose_secret()).unwrap();
    }
    let exported = data.join("owner-export.age");
    let recipient = identity.to_public().to_string();
    let made = ok_json(&workbooks(
        &[
            "company",
            "export",
            "--company",
            &id,
            "--recipient",
            &recipient,
            "--out",
            exported.to_str().unwrap(),
            "--json",
        ],
        data,
    ));
    assert!(made["size_bytes"].as_u64().unwrap() > 0);
    let opened = workbooks(
        &[
            "export",
            "decrypt",
            "--in",
            exported.to_str().unwrap(),
            "--identity",
            identity_file.to_str().unwrap(),
        ],
        data,
    );
    assert!(opened.status.success(), "{}", stderr_line(&opened));
    // An active company is its owner's to export, not the operator's.
    let other = ok_json(&workbooks(
        &["company", "create", "--name", "Going On Ltd", "--json"],
        data,
    ));
    fails_with(
        &workbooks(
            &[
                "company",
                "export",
                "--company",
                other["id"].as_str().unwrap(),
                "--recipient",
                &recipient,
                "--out",
                data.join("other.age").to_str().unwrap(),
            ],
            data,
        ),
        "is active",
    );

    let out = workbooks(
        &[
            "company",
            "destroy",
            "--company",
            &id,
            "--confirm",
            "--json",
        ],
        data,
    );
    let signed = ok_json(&out);
    assert_eq!(signed["certificate"]["company_id"], id.as_str());
    assert_eq!(signed["certificate"]["grace_overridden"], true);
    assert_eq!(signed["certificate"]["steps"].as_array().unwrap().len(), 9);
    assert!(!database.exists());
    let file = data.join("certificate.json");
    std::fs::write(&file, &out.stdout).unwrap();
    let path = file.to_str().unwrap();

    let deployment = signed["signature"]["deployment_public_key"]
        .as_str()
        .unwrap();
    // Without the deployment's published key an intact signature is not
    // enough (anyone can sign with a key of their own).
    fails_with(
        &workbooks(&["certificate", "verify", path], data),
        "signature is intact",
    );
    let verify = |file: &str| {
        workbooks(
            &[
                "certificate",
                "verify",
                file,
                "--deployment-key",
                deployment,
            ],
            data,
        )
    };
    let pinned = verify(path);
    assert!(pinned.status.success(), "{}", stderr_line(&pinned));
    let line = String::from_utf8_lossy(&pinned.stdout);
    assert!(
        line.starts_with("valid: company ") && line.contains(&id),
        "{line}"
    );
    // A whole certificate forged with keys of the forger's own (a correct
    // signature chain) fails against the real deployment key.
    let forged = data.join("forged.json");
    std::fs::write(&forged, forge(&String::from_utf8_lossy(&out.stdout))).unwrap();
    fails_with(&verify(forged.to_str().unwrap()), "not the expected");
    fails_with(
        &workbooks(
            &[
                "certificate",
                "verify",
                path,
                "--deployment-key",
                &"ab".repeat(32),
            ],
            data,
        ),
        "not the expected",
    );
    let edited = data.join("edited.json");
    std::fs::write(
        &edited,
        String::from_utf8_lossy(&out.stdout).replacen(
            "\"grace_overridden\": true",
            "\"grace_overridden\": false",
            1,
        ),
    )
    .unwrap();
    fails_with(&verify(edited.to_str().unwrap()), "changed after signing");
    // The operator publishes the key `keys status` shows.
    let status = ok_json(&workbooks(&["keys", "status", "--json"], data));
    assert_eq!(status["deployment_key"], deployment);

    // Destroyed: once more answers the same certificate; restores refuse.
    let again = ok_json(&workbooks(
        &[
            "company",
            "destroy",
            "--company",
            &id,
            "--confirm",
            "--json",
        ],
        data,
    ));
    assert_eq!(again, signed);
    fails_with(
        &workbooks(&["restore", "--company", &id, "--latest"], data),
        "was destroyed at",
    );
    fails_with(
        &workbooks(
            &[
                "company",
                "export",
                "--company",
                &id,
                "--recipient",
                &recipient,
                "--out",
                data.join("late.age").to_str().unwrap(),
            ],
            data,
        ),
        "no longer in its grace period",
    );
    fails_with(
        &workbooks(&["backup", "verify", "--company", &id], data),
        "was destroyed at",
    );
}

/// The same certificate re-signed by a deployment key and node key of the
/// forger's own (a correct signature chain, the wrong deployment).
fn forge(text: &str) -> String {
    use wb_server::destruction::certificate::{sign, SignedCertificate};
    let real: SignedCertificate = serde_json::from_str(text).unwrap();
    let certifier = wb_crypto::NodeCertifier::new(&wb_crypto::MasterKey::generate());
    let node = wb_crypto::NodeKey::generate();
    let node_id = real.certificate.node_id.clone();
    let forged = sign(
        real.certificate,
        &node,
        &certifier.certify(&node_id, &node.public_key_hex()),
        certifier.public_key_hex(),
    )
    .unwrap();
    serde_json::to_string_pretty(&forged).unwrap()
}

#[test]
fn a_master_key_rotation_after_a_destruction_has_nothing_left_of_it_to_rewrap() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    assert!(workbooks(&["init"], data).status.success());
    let company = ok_json(&workbooks(
        &["company", "create", "--name", "Gone Ltd", "--json"],
        data,
    ));
    let id = company["id"].as_str().unwrap().to_string();
    deprovision(data, &id);
    ok_json(&workbooks(
        &[
            "company",
            "destroy",
            "--company",
            &id,
            "--confirm",
            "--json",
        ],
        data,
    ));
    let new_key = dir.path().join("next.key");
    std::fs::write(&new_key, format!("{}\n", "7a".repeat(32))).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&new_key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let rotated = ok_json(&workbooks(
        &[
            "keys",
            "rotate-master",
            "--new-key-file",
            new_key.to_str().unwrap(),
            "--grace-seconds",
            "0",
            "--json",
        ],
        data,
    ));
    assert_eq!(rotated["status"]["rotation"], "complete", "{rotated}");
}

/// Records the company de-provisioned, 30 days of grace, as its owner's
/// request over the API would.
fn deprovision(data: &std::path::Path, id: &str) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let platform = open(data);
        let now = OffsetDateTime::now_utc();
        let record = Deprovisioning {
            company_id: id.to_string(),
            deprovisioned_at: now,
            deprovisioned_by: "user:owner".into(),
            destroy_after: now + time::Duration::days(30),
            certificate_id: uuid::Uuid::now_v7().to_string(),
            certificate_token_hash: "00".repeat(32),
            destruction_started_at: None,
            steps: vec![],
            destroyed_at: None,
            certificate: None,
        };
        let event = AuditEvent {
            at: now,
            actor: Actor::system("test"),
            company_id: Some(id.to_string()),
            action: Action::CompanyDeprovision,
            target: None,
            outcome: Outcome::Success,
            detail: None,
        };
        platform
            .control
            .deprovision_company(&record, &event)
            .await
            .unwrap();
    });
}
