use std::time::Instant;
use wb_core::audit::AuditFields;
use wb_store::{ControlStore, StoredAuditEvent, GENESIS};
mod pg_backend;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench() {
    let control = pg_backend::pg_control("bench").await;
    let mut prev = GENESIS.to_string();
    let events: Vec<StoredAuditEvent> = (1..=100_000i64)
        .map(|seq| {
            let f = AuditFields {
                at: "2026-03-01T09:00:00Z".into(),
                actor: "user:x".into(),
                auth: "session".into(),
                client: "1.2.3.4".into(),
                request_id: format!("r{seq}"),
                company_id: "c1".into(),
                action: "entry.post".into(),
                target: format!("entry:{seq}"),
                outcome: "success".into(),
                detail: String::new(),
            };
            let h = f.hash(&prev, seq);
            let e = StoredAuditEvent {
                seq,
                at: f.at.clone(),
                actor: f.actor.clone(),
                auth: f.auth.clone(),
                client: Some(f.client.clone()),
                request_id: Some(f.request_id.clone()),
                company_id: Some("c1".into()),
                action: f.action.clone(),
                target: Some(f.target.clone()),
                outcome: f.outcome.clone(),
                detail: None,
                prev_hash: prev.clone(),
                hash: h.clone(),
            };
            prev = h;
            e
        })
        .collect();
    let start = Instant::now();
    let mut n = 0;
    for b in events.chunks(1000) {
        n += control
            .central_append("company:c1", "n", b.to_vec())
            .await
            .unwrap();
    }
    let el = start.elapsed();
    println!("{n} events in {el:?}: {:.0}/s", n as f64 / el.as_secs_f64());
    let start = Instant::now();
    for b in events.chunks(1000) {
        control
            .central_append("company:c1", "n", b.to_vec())
            .await
            .unwrap();
    }
    println!("retry all: {:?}", start.elapsed());
    let dir = tempfile::tempdir().unwrap();
    let sq = wb_store::sqlite::SqliteControl::open(
        &dir.path().join("c.db"),
        &wb_crypto::DataKey::generate(),
    )
    .unwrap();
    let start = Instant::now();
    let mut n = 0;
    for b in events.chunks(1000) {
        n += sq
            .central_append("company:c1", "n", b.to_vec())
            .await
            .unwrap();
    }
    let el = start.elapsed();
    println!(
        "sqlite {n} events in {el:?}: {:.0}/s",
        n as f64 / el.as_secs_f64()
    );
}
