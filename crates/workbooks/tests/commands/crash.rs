//! Kill -9 under load: `workbooks serve` is killed while several clients post,
//! post batches and reverse entries; restarted on the same data directory,
//! every acknowledged change is there, balances match the entries, the audit
//! trail verifies, the company's
//! change journal is gap-free and hash-linked (a restore replays it from record
//! 1, checking every link), and the shipped backup verifies.

use crate::common;

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{https_client, ok_json, spawn_serve, workbooks, Killed};

const EMAIL: &str = "crash@journal.example";
const PASSPHRASE: &str = "violet orbit cactus thunder";

fn entry(writer: usize, n: usize) -> serde_json::Value {
    serde_json::json!({"date": "2026-03-01", "description": format!("w{writer} #{n}"),
        "postings": [{"account": "1000", "amount": "1.25", "currency": "USD"},
                     {"account": "4000", "amount": "-1.25", "currency": "USD"}]})
}

/// What the writers were told was committed (201).
#[derive(Default)]
struct Acknowledged {
    entries: Vec<String>,
    /// (original, reversal)
    reversals: Vec<(String, String)>,
}

/// One writer until the server dies under it: single posts, batches of three,
/// or a post followed by its reversal.
async fn write(
    client: reqwest::Client,
    url: String,
    company: String,
    token: String,
    w: usize,
    acked: Arc<Mutex<Acknowledged>>,
) {
    let entries = format!("{url}/api/v1/companies/{company}/entries");
    for n in 0.. {
        let response = match w % 3 {
            1 => {
                let body = serde_json::json!({"entries": [entry(w, n), entry(w, n), entry(w, n)]});
                client
                    .post(format!("{entries}/batch"))
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await
            }
            _ => {
                client
                    .post(&entries)
                    .bearer_auth(&token)
                    .json(&entry(w, n))
                    .send()
                    .await
            }
        };
        let Ok(r) = response else { return };
        if r.status() != 201 {
            return;
        }
        let Ok(v) = r.json::<serde_json::Value>().await else {
            return;
        };
        let ids: Vec<String> = match v["entries"].as_array() {
            Some(list) => list
                .iter()
                .map(|e| e["id"].as_str().unwrap().to_string())
                .collect(),
            None => vec![v["id"].as_str().unwrap().to_string()],
        };
        acked.lock().unwrap().entries.extend(ids.iter().cloned());
        if w % 3 == 2 {
            let original = &ids[0];
            let Ok(r) = client
                .post(format!("{entries}/{original}/reverse"))
                .bearer_auth(&token)
                .json(&serde_json::json!({"date": "2026-03-02"}))
                .send()
                .await
            else {
                return;
            };
            if r.status() != 201 {
                return;
            }
            let Ok(v) = r.json::<serde_json::Value>().await else {
                return;
            };
            let reversal = v["id"].as_str().unwrap().to_string();
            let mut acked = acked.lock().unwrap();
            acked.entries.push(reversal.clone());
            acked.reversals.push((original.clone(), reversal));
        }
    }
}

/// Every entry of the company, by id: (reverses, reversed_by).
async fn stored_entries(
    client: &reqwest::Client,
    url: &str,
    company: &str,
    token: &str,
) -> std::collections::HashMap<String, (Option<String>, Option<String>)> {
    let mut stored = std::collections::HashMap::new();
    let mut after = String::from("0");
    loop {
        let page: serde_json::Value = client
            .get(format!(
                "{url}/api/v1/companies/{company}/entries?limit=1000&after={after}"
            ))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for e in page["entries"].as_array().unwrap() {
            let link = |k: &str| e[k].as_str().map(str::to_string);
            stored.insert(
                e["id"].as_str().unwrap().to_string(),
                (link("reverses"), link("reversed_by")),
            );
        }
        match page["next_after"].as_str() {
            Some(next) => after = next.to_string(),
            None => break,
        }
    }
    stored
}

fn backup_row(data: &Path, company: &str) -> serde_json::Value {
    let rows = ok_json(&workbooks(&["backup", "status", "--json"], data));
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["company_id"] == company)
        .unwrap_or_else(|| panic!("no backup status of {company} in {rows}"))
        .clone()
}

/// Stops the server with SIGTERM, so its last shipping, forwarding and
/// checkpoint rounds run.
fn stop_gracefully(mut server: Killed) {
    let pid = server.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = server.0.wait().unwrap();
    assert!(status.success(), "graceful stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_nothing_and_the_backup_verifies() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (server, url) = spawn_serve(&data);
    let client = https_client(&data);
    let signup: serde_json::Value = client
        .post(format!("{url}/api/v1/signup"))
        .json(
            &serde_json::json!({"company_name": "Journal Crash Ltd", "email": EMAIL,
                                  "passphrase": PASSPHRASE}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let company = signup["company"]["id"].as_str().unwrap().to_string();
    let token = signup["token"].as_str().unwrap().to_string();
    for (code, kind) in [("1000", "asset"), ("4000", "income")] {
        let r = client
            .post(format!("{url}/api/v1/companies/{company}/accounts"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"code": code, "name": code, "type": kind}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }

    let acked = Arc::new(Mutex::new(Acknowledged::default()));
    let writers: Vec<_> = (0..9)
        .map(|w| {
            tokio::spawn(write(
                client.clone(),
                url.clone(),
                company.clone(),
                token.clone(),
                w,
                acked.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    drop(server); // SIGKILL mid-load: no graceful shutdown, no final rounds
    for w in writers {
        let _ = w.await;
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(
        acked.entries.len() > 20 && !acked.reversals.is_empty(),
        "only {} entries and {} reversals were acknowledged",
        acked.entries.len(),
        acked.reversals.len()
    );

    // Restarted on the same data: every acknowledged change is there.
    let (server, url) = spawn_serve(&data);
    let login: serde_json::Value = client
        .post(format!("{url}/api/v1/auth/login"))
        .json(&serde_json::json!({"email": EMAIL, "passphrase": PASSPHRASE}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().unwrap().to_string();
    let stored = stored_entries(&client, &url, &company, &token).await;
    let lost: Vec<_> = acked
        .entries
        .iter()
        .filter(|id| !stored.contains_key(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged entries were lost: {lost:?}",
        lost.len()
    );
    for (original, reversal) in &acked.reversals {
        assert_eq!(stored[original].1.as_ref(), Some(reversal), "{original}");
        assert_eq!(stored[reversal].0.as_ref(), Some(original), "{reversal}");
    }
    let ids: HashSet<&String> = stored.keys().collect();
    assert!(ids.len() >= acked.entries.len());
    // Balances match the entries: every post moved 1.25 into cash, every
    // reversal 1.25 out, and the trial balance sums to zero.
    let tb: serde_json::Value = client
        .get(format!(
            "{url}/api/v1/companies/{company}/reports/trial-balance?as_of=2026-12-31"
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tb["totals"]["USD"], "0.00");
    let reversals = stored
        .values()
        .filter(|(reverses, _)| reverses.is_some())
        .count();
    let posts = stored.len() - reversals;
    let cash = format!("{:.2}", (posts as f64 - reversals as f64) * 1.25);
    assert_eq!(
        tb["accounts"][0]["balances"]["USD"],
        cash.as_str(),
        "balances match the entries"
    );

    // The restarted server ships what the killed one had not.
    let deadline = Instant::now() + Duration::from_secs(60);
    let head = loop {
        let row = backup_row(&data, &company);
        let (journal, shipped) = (
            row["journal_seq"].as_i64().unwrap(),
            row["shipped_seq"].as_i64().unwrap(),
        );
        if journal > 0 && journal == shipped {
            break journal;
        }
        assert!(
            Instant::now() < deadline,
            "shipping did not catch up: {row}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // Two accounts, then one record per post, batch and reversal.
    let changes = 2 + stored.len() as i64;
    assert!(head >= 2 + acked.entries.len() as i64 / 3, "{head}");
    assert!(head <= changes, "{head} records for {changes} changes");
    eprintln!(
        "{} entries acknowledged ({} reversals), {} stored, journal head {head}",
        acked.entries.len(),
        acked.reversals.len(),
        stored.len()
    );
    stop_gracefully(server);

    let audit = workbooks(&["audit", "verify"], &data);
    assert!(
        audit.status.success(),
        "audit verify: {}{}",
        String::from_utf8_lossy(&audit.stdout),
        String::from_utf8_lossy(&audit.stderr)
    );

    let verify = workbooks(&["backup", "verify"], &data);
    let text = String::from_utf8_lossy(&verify.stdout).to_string();
    assert!(
        verify.status.success(),
        "backup verify: {text}{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(
        text.lines()
            .any(|l| l == format!("ok {company} at seq {head}")),
        "{text}"
    );

    // The journal chain: a restore replays every record from 1, checking each
    // sequence number and hash link; it reaches the head.
    let restored = ok_json(&workbooks(
        &["restore", "--company", &company, "--latest", "--json"],
        &data,
    ));
    assert_eq!(restored["last_seq"], head, "{restored}");
    assert_eq!(restored["records"], head, "{restored}");
}
