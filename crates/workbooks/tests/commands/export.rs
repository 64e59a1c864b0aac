//! `workbooks export decrypt` on export files written by the library: it needs
//! no server, data directory or master key, verifies the parts and the
//! attachments (streaming) and writes them.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use wb_core::{EntryDraft, NewAccount, PostingDraft};
use wb_crypto::{MasterKey, Secret};
use wb_server::exports::age::secrecy::ExposeSecret;
use wb_server::exports::age::x25519;
use wb_server::exports::{self, CompanyInfo, ExportFile, ExportKey};
use wb_server::{Platform, SystemClock};
use wb_store::{Actor, WriteContext};

use common::{fails_with, ok_json, stderr_line, workbooks};

const DESCRIPTION: &str = "Invoice 42 for Brightwater Mills";
const PASSPHRASE: &str = "velvet quarry nimbus 58 orchard tundra";
const INVOICE_MARKER: &str = "INVOICE-Brightwater-0042";
/// Archive paths of the two attachments.
const SCAN: &str = "files/1-scan_2026-03.tiff";
const INVOICE: &str = "files/2-invoice__42_.txt";

/// Two attachments: a scan of several MiB, and an invoice linked to entry 1.
fn attachments() -> (Vec<ExportFile>, BTreeMap<i64, Vec<u8>>) {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let scan: Vec<u8> = (0..5 * 1024 * 1024 + 777)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let invoice = format!("{INVOICE_MARKER}\nTotal 10.00 EUR\n").into_bytes();
    let files = vec![
        ExportFile {
            id: 1,
            address: "a".repeat(64),
            name: "scan 2026-03.tiff".into(),
            content_type: "image/tiff".into(),
            size: scan.len() as u64,
            entry_id: None,
        },
        ExportFile {
            id: 2,
            address: "b".repeat(64),
            name: "invoice (42).txt".into(),
            content_type: "text/plain".into(),
            size: invoice.len() as u64,
            entry_id: Some(1),
        },
    ];
    (files, BTreeMap::from([(1, scan), (2, invoice)]))
}

fn ctx() -> WriteContext {
    WriteContext {
        actor: Actor::system("test"),
        at: time::OffsetDateTime::now_utc(),
    }
}

/// A company with two accounts, three entries and two attachments, exported
/// (plaintext archive).
async fn export_plain(dir: &Path) -> Vec<u8> {
    let platform = Platform::open_embedded(
        dir,
        MasterKey::generate(),
        Arc::new(SystemClock),
        time::Duration::hours(12),
    )
    .unwrap();
    let company = platform.create_company("Brightwater", None).await.unwrap();
    let store = platform.tenant(&company.id).await.unwrap();
    for (code, name, kind) in [("1000", "Cash", "asset"), ("4000", "Sales", "income")] {
        let account = NewAccount::validate(code, name, kind, None, None).unwrap();
        store.create_account(account, ctx()).await.unwrap();
    }
    for n in 1..=3 {
        let draft = EntryDraft {
            date: time::macros::date!(2026 - 03 - 01),
            description: format!("{DESCRIPTION} #{n}"),
            reference: None,
            postings: vec![
                PostingDraft {
                    account: "1000".into(),
                    amount: format!("{n}0.00"),
                    currency: "EUR".into(),
                },
                PostingDraft {
                    account: "4000".into(),
                    amount: format!("-{n}0.00"),
                    currency: "EUR".into(),
                },
            ],
        };
        store.post_entries(vec![draft], None, ctx()).await.unwrap();
    }
    let mut snapshot = exports::snapshot(
        &*store,
        CompanyInfo {
            id: company.id.clone(),
            name: company.name.clone(),
        },
    )
    .await
    .unwrap();
    let (files, contents) = attachments();
    snapshot.files = files;
    let (_, plain) = exports::package_with_files(
        &snapshot,
        "01900000-0000-7000-8000-000000000001",
        time::OffsetDateTime::now_utc(),
        "user:test",
        &contents,
    )
    .unwrap();
    plain
}

fn decrypt(args: &[&str]) -> std::process::Output {
    // No data directory: decrypting is offline.
    let mut all = vec!["export", "decrypt"];
    all.extend_from_slice(args);
    workbooks(&all, Path::new("/nonexistent/workbooks-data"))
}

#[tokio::test(flavor = "multi_thread")]
async fn decrypts_an_identity_export_and_writes_its_parts() {
    let dir = tempfile::tempdir().unwrap();
    let plain = export_plain(&dir.path().join("server")).await;
    let identity = x25519::Identity::generate();
    let key = ExportKey::recipient(&identity.to_public().to_string()).unwrap();
    let file = dir.path().join("export.age");
    std::fs::write(&file, exports::encrypt(&plain, &key).unwrap()).unwrap();
    let id_file = dir.path().join("key.txt");
    std::fs::write(
        &id_file,
        format!(
            "# created: today\n# public key: {}\n{}\n",
            identity.to_public(),
            identity.to_string().expose_secret()
        ),
    )
    .unwrap();
    let file_arg = file.to_str().unwrap();
    let id_arg = id_file.to_str().unwrap();

    let out = decrypt(&["--in", file_arg, "--identity", id_arg]);
    assert!(out.status.success(), "{}", stderr_line(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Brightwater"), "{text}");
    assert!(text.contains("entries   3 (6 postings)"), "{text}");
    assert!(text.contains("accounts  2"), "{text}");
    assert!(text.contains("chain verified"), "{text}");
    assert!(text.contains("files     2 ("), "{text}");

    let out_dir = dir.path().join("out");
    let summary = ok_json(&decrypt(&[
        "--in",
        file_arg,
        "--identity",
        id_arg,
        "--out",
        out_dir.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(summary["verified"], true);
    let manifest = &summary["manifest"];
    assert_eq!(manifest["company"]["name"], "Brightwater");
    assert_eq!(manifest["counts"]["entries"], 3);
    assert_eq!(manifest["counts"]["accounts"], 2);
    assert_eq!(manifest["journal_seq"], 5);
    assert_eq!(manifest["version"], 2);
    assert_eq!(summary["written"].as_array().unwrap().len(), 7);
    assert_eq!(summary["files"]["count"], 2);
    // The attachments: listed, written at their flat paths, exact bytes.
    let (_, contents) = attachments();
    let files = manifest["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(files[0]["path"], SCAN);
    assert_eq!(files[1]["path"], INVOICE);
    assert_eq!(files[1]["name"], "invoice (42).txt");
    assert_eq!(files[1]["content_type"], "text/plain");
    assert_eq!(files[1]["entry"], "1");
    assert!(files[0]["entry"].is_null());
    assert_eq!(
        summary["files"]["bytes"],
        (contents[&1].len() + contents[&2].len()) as u64
    );
    for (id, path) in [(1, SCAN), (2, INVOICE)] {
        let written = std::fs::read(out_dir.join(path)).unwrap();
        assert!(written == contents[&id], "{path} holds the exact bytes");
        assert_eq!(
            files[id as usize - 1]["sha256"],
            wb_crypto::sha256_hex(&written).as_str()
        );
    }
    // Each written part is exactly what the manifest describes.
    for part in manifest["parts"].as_array().unwrap() {
        let bytes = std::fs::read(out_dir.join(part["name"].as_str().unwrap())).unwrap();
        assert_eq!(
            wb_crypto::sha256_hex(&bytes),
            part["sha256"].as_str().unwrap()
        );
        assert_eq!(bytes.len() as u64, part["bytes"].as_u64().unwrap());
    }
    let entries = std::fs::read_to_string(out_dir.join("entries.jsonl")).unwrap();
    assert_eq!(entries.lines().count(), 3);
    assert!(entries.contains(DESCRIPTION));
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(&written, manifest);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out_dir.join("entries.jsonl"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "parts are private to their owner");
    }

    // Never overwrites.
    fails_with(
        &decrypt(&[
            "--in",
            file_arg,
            "--identity",
            id_arg,
            "--out",
            out_dir.to_str().unwrap(),
        ]),
        "already exists",
    );
    // Another identity, a tampered file, a passphrase for an identity export.
    let other = dir.path().join("other.txt");
    std::fs::write(
        &other,
        format!(
            "{}\n",
            x25519::Identity::generate().to_string().expose_secret()
        ),
    )
    .unwrap();
    fails_with(
        &decrypt(&["--in", file_arg, "--identity", other.to_str().unwrap()]),
        "does not match",
    );
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() - 5;
    bytes[at] ^= 1;
    let tampered = dir.path().join("tampered.age");
    std::fs::write(&tampered, bytes).unwrap();
    fails_with(
        &decrypt(&["--in", tampered.to_str().unwrap(), "--identity", id_arg]),
        "cannot decrypt",
    );
    let pass = dir.path().join("pass.txt");
    std::fs::write(&pass, format!("{PASSPHRASE}\n")).unwrap();
    fails_with(
        &decrypt(&[
            "--in",
            file_arg,
            "--passphrase-file",
            pass.to_str().unwrap(),
        ]),
        "not to a passphrase",
    );
    fails_with(
        &decrypt(&["--in", file_arg, "--identity", file_arg]),
        "identity",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn decrypts_a_passphrase_export() {
    let dir = tempfile::tempdir().unwrap();
    let plain = export_plain(&dir.path().join("server")).await;
    let key = ExportKey::passphrase(Secret::new(PASSPHRASE.into()), &[]).unwrap();
    let file = dir.path().join("export.age");
    std::fs::write(&file, exports::encrypt(&plain, &key).unwrap()).unwrap();
    let file_arg = file.to_str().unwrap();

    let pass = dir.path().join("pass.txt");
    std::fs::write(&pass, format!("{PASSPHRASE}\n")).unwrap();
    let summary = ok_json(&decrypt(&[
        "--in",
        file_arg,
        "--passphrase-file",
        pass.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(summary["verified"], true);
    assert_eq!(summary["manifest"]["counts"]["postings"], 6);
    assert_eq!(summary["written"], serde_json::json!([]));

    let wrong = dir.path().join("wrong.txt");
    std::fs::write(&wrong, "velvet quarry nimbus 58 orchard tundrA\n").unwrap();
    let out = decrypt(&[
        "--in",
        file_arg,
        "--passphrase-file",
        wrong.to_str().unwrap(),
    ]);
    fails_with(&out, "wrong passphrase");
    assert!(!stderr_line(&out).contains("tundrA"), "passphrase echoed");
    let identity = dir.path().join("key.txt");
    std::fs::write(
        &identity,
        format!(
            "{}\n",
            x25519::Identity::generate().to_string().expose_secret()
        ),
    )
    .unwrap();
    fails_with(
        &decrypt(&["--in", file_arg, "--identity", identity.to_str().unwrap()]),
        "encrypted to a passphrase",
    );
}

/// The format is plain age + tar: `age -d | tar -x` reads it, and an
/// `age-keygen` identity file opens it in `workbooks export decrypt`.
/// Skipped when the `age` tools are not installed.
#[tokio::test(flavor = "multi_thread")]
async fn standard_tools_read_an_export() {
    use std::process::{Command, Stdio};
    if Command::new("age-keygen")
        .arg("--version")
        .output()
        .is_err()
        || Command::new("tar").arg("--version").output().is_err()
    {
        eprintln!("skipped: age-keygen, age or tar is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let plain = export_plain(&dir.path().join("server")).await;
    let key_file = dir.path().join("key.txt");
    let keygen = Command::new("age-keygen")
        .arg("-o")
        .arg(&key_file)
        .output()
        .unwrap();
    assert!(keygen.status.success());
    let key_text = std::fs::read_to_string(&key_file).unwrap();
    let recipient = key_text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .expect("age-keygen writes the public key");
    let key = ExportKey::recipient(recipient).unwrap();
    let file = dir.path().join("export.age");
    std::fs::write(&file, exports::encrypt(&plain, &key).unwrap()).unwrap();

    let decrypted = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&key_file)
        .arg(&file)
        .output()
        .unwrap();
    assert!(decrypted.status.success(), "{}", stderr_line(&decrypted));
    assert_eq!(decrypted.stdout, plain);
    let out_dir = dir.path().join("untarred");
    std::fs::create_dir(&out_dir).unwrap();
    let mut tar = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(&out_dir)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(tar.stdin.as_mut().unwrap(), &decrypted.stdout).unwrap();
    drop(tar.stdin.take());
    assert!(tar.wait().unwrap().success());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("manifest.json")).unwrap()).unwrap();
    for part in manifest["parts"].as_array().unwrap() {
        let bytes = std::fs::read(out_dir.join(part["name"].as_str().unwrap())).unwrap();
        assert_eq!(
            wb_crypto::sha256_hex(&bytes),
            part["sha256"].as_str().unwrap()
        );
    }

    // The attachments, extracted by tar, are what the manifest describes.
    let (_, contents) = attachments();
    let files = manifest["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    for (file, id) in files.iter().zip([1, 2]) {
        let bytes = std::fs::read(out_dir.join(file["path"].as_str().unwrap())).unwrap();
        assert!(
            bytes == contents[&id],
            "{} holds the exact bytes",
            file["path"]
        );
        assert_eq!(
            wb_crypto::sha256_hex(&bytes),
            file["sha256"].as_str().unwrap()
        );
        assert_eq!(bytes.len() as u64, file["bytes"].as_u64().unwrap());
    }
    assert_eq!(
        std::fs::read_dir(out_dir.join("files")).unwrap().count(),
        2,
        "nothing else under files/"
    );

    let summary = ok_json(&decrypt(&[
        "--in",
        file.to_str().unwrap(),
        "--identity",
        key_file.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(summary["manifest"], manifest);
}

/// An attachment altered inside an export (re-encrypted to the customer's
/// public key, so age itself cannot tell) fails `workbooks export decrypt`
/// with one clear line, and `--out` keeps nothing.
#[tokio::test(flavor = "multi_thread")]
async fn an_altered_attachment_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let mut plain = export_plain(&dir.path().join("server")).await;
    let at = plain
        .windows(INVOICE_MARKER.len())
        .position(|w| w == INVOICE_MARKER.as_bytes())
        .expect("the invoice is in the archive");
    plain[at] ^= 0x20;
    let key = ExportKey::passphrase(Secret::new(PASSPHRASE.into()), &[]).unwrap();
    let file = dir.path().join("altered.age");
    std::fs::write(&file, exports::encrypt(&plain, &key).unwrap()).unwrap();
    let pass = dir.path().join("pass.txt");
    std::fs::write(&pass, PASSPHRASE).unwrap();
    let args = [
        "--in",
        file.to_str().unwrap(),
        "--passphrase-file",
        pass.to_str().unwrap(),
    ];

    let out = decrypt(&args);
    fails_with(
        &out,
        &format!("{INVOICE} does not match its SHA-256 in the manifest"),
    );
    assert_eq!(
        stderr_line(&out).lines().count(),
        1,
        "{}",
        stderr_line(&out)
    );

    let out_dir = dir.path().join("out");
    let mut with_out = args.to_vec();
    with_out.extend(["--out", out_dir.to_str().unwrap()]);
    fails_with(&decrypt(&with_out), "does not match its SHA-256");
    let left: Vec<_> = walk(&out_dir);
    assert!(left.is_empty(), "a failed export leaves nothing: {left:?}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
