//! `workbooks audit verify` over a real deployment: untouched it verifies; each
//! kind of tampering with the stored trail is found and named.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use rusqlite::Connection;
use wb_crypto::MasterKey;
use wb_store::sqlite::{open_encrypted, OpenMode};

use common::{https_client, spawn_serve};

/// Runs a server, does some audited work, and stops it gracefully (SIGTERM),
/// so its last forwarding round and checkpoint are written.
async fn deployment_with_history(data: &Path) {
    let (server, url) = spawn_serve(data);
    let client = https_client(data);
    let signup: serde_json::Value = client
        .post(format!("{url}/api/v1/signup"))
        .json(
            &serde_json::json!({"company_name": "Tamper Ltd", "email": "t@tamper.example",
                                  "passphrase": "violet orbit cactus thunder"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let company = signup["company"]["id"].as_str().unwrap().to_string();
    let token = signup["token"].as_str().unwrap().to_string();
    for attempt in 0..6 {
        let body = serde_json::json!({"email": "t@tamper.example", "passphrase": format!("wrong guess {attempt}")});
        client
            .post(format!("{url}/api/v1/auth/login"))
            .json(&body)
            .send()
            .await
            .unwrap();
    }
    for code in ["1000", "1100", "4000", "1000"] {
        client
            .post(format!("{url}/api/v1/companies/{company}/accounts"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"code": code, "name": "A", "type": "asset"}))
            .send()
            .await
            .unwrap();
    }
    client
        .get(format!(
            "{url}/api/v1/companies/{company}/reports/trial-balance"
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let pid = server.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let mut server = server;
    let status = server.0.wait().unwrap();
    assert!(status.success(), "graceful stop");
}

fn control_db(data: &Path) -> Connection {
    let master =
        MasterKey::from_hex(&std::fs::read_to_string(data.join("master.key")).unwrap()).unwrap();
    let wrapped = std::fs::read(data.join("control.key")).unwrap();
    let key = master
        .unwrap_key(&wrapped, "workbooks:control-plane")
        .unwrap();
    open_encrypted(&data.join("control.db"), &key, OpenMode::Existing).unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn verify(data: &Path) -> (bool, String) {
    let out = common::workbooks(&["audit", "verify"], data);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn tampered(base: &Path, name: &str, sql: &str) -> (bool, String) {
    let copy: PathBuf = base.parent().unwrap().join(name);
    copy_dir(base, &copy);
    let db = control_db(&copy);
    db.execute_batch(&format!(
        "DROP TRIGGER IF EXISTS audit_append_only; DROP TRIGGER IF EXISTS audit_append_only_d;\n         DROP TRIGGER IF EXISTS checkpoints_append_only; DROP TRIGGER IF EXISTS checkpoints_undeletable; {sql}"
    ))
    .unwrap();
    drop(db);
    verify(&copy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_passes_untouched_and_names_each_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    deployment_with_history(&data).await;

    let (ok, text) = verify(&data);
    assert!(ok, "{text}");
    assert!(
        text.contains("verified ") && text.contains("last checkpoint at 20"),
        "{text}"
    );

    let count: i64 = control_db(&data)
        .query_row("SELECT count(*) FROM audit_events", [], |r| r.get(0))
        .unwrap();
    assert!(count >= 8, "control chain has {count} events");

    let cases = [
        ("edit", "UPDATE audit_events SET detail = 'unknown email' WHERE seq = 3", "event 3 was altered"),
        ("delete", "DELETE FROM audit_events WHERE seq = 4", "event 4 is missing"),
        (
            "swap",
            "UPDATE audit_events SET seq = -5 WHERE seq = 5; UPDATE audit_events SET seq = 5 WHERE seq = 6;
             UPDATE audit_events SET seq = 6 WHERE seq = -5",
            "event 5",
        ),
        ("truncate", "DELETE FROM audit_events WHERE seq > 4", "truncated"),
        (
            "unvouched",
            "DELETE FROM audit_checkpoints WHERE source = 'control'",
            "no signed checkpoint",
        ),
        (
            "replay",
            "INSERT INTO audit_checkpoints (source, seq, hash, at, node, prev, signature)
             SELECT source, seq, hash, at, node, prev, signature FROM audit_checkpoints
             WHERE source = 'control' ORDER BY rowid LIMIT 1",
            "replayed",
        ),
    ];
    for (name, sql, expected) in cases {
        // The replayed checkpoint has the same key as the original: give it a new one.
        let sql = if name == "replay" {
            "CREATE TABLE cp AS SELECT * FROM audit_checkpoints WHERE source = 'control' ORDER BY rowid LIMIT 1;
             DELETE FROM audit_checkpoints WHERE rowid = (SELECT min(rowid) FROM audit_checkpoints WHERE source = 'control');
             INSERT INTO audit_checkpoints SELECT * FROM cp;".to_string()
        } else {
            sql.to_string()
        };
        let (ok, text) = tampered(&data, name, &sql);
        assert!(!ok, "{name}: tampering went unnoticed:\n{text}");
        assert!(
            text.contains(expected),
            "{name}: expected {expected:?} in:\n{text}"
        );
        let last = text.lines().last().unwrap_or("");
        assert!(
            last.starts_with("workbooks: error: audit trail does not verify"),
            "{name}: {last}"
        );
    }

    // Write access to the control database, not the master key: an event
    // rewritten, the chain and its central copy rebuilt after it, and every
    // checkpoint re-signed by a node key of the attacker's own (registered
    // with a copy of the real node's certificate). Only certification tells.
    let (ok, text) = tampered(&data, "forged", &forged_node_sql(&data));
    assert!(!ok, "forged checkpoints went unnoticed:\n{text}");
    let last = text.lines().last().unwrap_or("");
    assert!(
        last.starts_with("workbooks: error: audit trail does not verify: control (")
            && last.contains("signed by node node-forged, whose key is not certified"),
        "{last}"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SQL that rewrites platform audit event 1 and re-signs the control
/// chain's checkpoints with a forged node's key, leaving chain, central copy
/// and checkpoints consistent with each other.
fn forged_node_sql(data: &Path) -> String {
    use wb_core::audit::{Checkpoint, GENESIS};
    let db = control_db(data);
    let events: Vec<wb_store::StoredAuditEvent> = db
        .prepare(
            "SELECT seq, at, actor, auth, client, request_id, company_id, action, target,
                    outcome, detail, prev_hash, hash FROM audit_events ORDER BY seq",
        )
        .unwrap()
        .query_map([], |r| {
            Ok(wb_store::StoredAuditEvent {
                seq: r.get(0)?,
                at: r.get(1)?,
                actor: r.get(2)?,
                auth: r.get(3)?,
                client: r.get(4)?,
                request_id: r.get(5)?,
                company_id: r.get(6)?,
                action: r.get(7)?,
                target: r.get(8)?,
                outcome: r.get(9)?,
                detail: r.get(10)?,
                prev_hash: r.get(11)?,
                hash: r.get(12)?,
            })
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let checkpoints: Vec<Checkpoint> = db
        .prepare(
            "SELECT source, seq, hash, at, node, prev, signature FROM audit_checkpoints
             WHERE source = 'control' ORDER BY rowid",
        )
        .unwrap()
        .query_map([], |r| {
            Ok(Checkpoint {
                source: r.get(0)?,
                seq: r.get(1)?,
                hash: r.get(2)?,
                at: r.get(3)?,
                node: r.get(4)?,
                prev: r.get(5)?,
                signature: r.get(6)?,
            })
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(!checkpoints.is_empty());
    let mut sql = "DROP TRIGGER collected_append_only;".to_string();
    let mut hashes = Vec::new();
    let mut prev = GENESIS.to_string();
    for (i, e) in events.iter().enumerate() {
        let mut e = e.clone();
        if i == 0 {
            e.detail = Some("nothing happened".into());
        }
        let hash = e.chained().fields.hash(&prev, e.seq);
        let detail = e.detail.as_deref().map_or("NULL".to_string(), |d| {
            format!("'{}'", d.replace('\'', "''"))
        });
        sql += &format!(
            "UPDATE audit_events SET detail = {detail}, prev_hash = '{prev}', hash = '{hash}' WHERE seq = {seq};
             UPDATE collected_events SET detail = {detail}, prev_hash = X'{prev}', hash = X'{hash}'
             WHERE source = (SELECT id FROM collected_sources WHERE name = 'control') AND source_seq = {seq};",
            seq = e.seq
        );
        hashes.push(hash.clone());
        prev = hash;
    }
    let key = wb_crypto::NodeKey::generate();
    sql += &format!(
        "INSERT INTO nodes (id, public_key, created_at, certificate)
         VALUES ('node-forged', '{}', '2026-01-01T00:00:00Z', (SELECT certificate FROM nodes LIMIT 1));
         DELETE FROM audit_checkpoints WHERE source = 'control';",
        key.public_key_hex()
    );
    let mut prev_checkpoint = GENESIS.to_string();
    for cp in checkpoints {
        let mut forged = Checkpoint {
            hash: hashes[(cp.seq - 1) as usize].clone(),
            node: "node-forged".into(),
            prev: prev_checkpoint.clone(),
            signature: Vec::new(),
            ..cp
        };
        forged.signature = key.sign(&forged.message());
        sql += &format!(
            "INSERT INTO audit_checkpoints (source, seq, hash, at, node, prev, signature)
             VALUES ('control', {}, '{}', '{}', 'node-forged', '{}', X'{}');",
            forged.seq,
            forged.hash,
            forged.at,
            forged.prev,
            hex(&forged.signature)
        );
        prev_checkpoint = forged.digest();
    }
    sql
}
