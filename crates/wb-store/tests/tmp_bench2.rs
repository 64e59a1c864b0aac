use std::time::Instant;
use wb_store::ControlStore;
mod pg_backend;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench2() {
    let control = pg_backend::pg_control("bench2").await;
    let conn = control.pool().get().await.unwrap();
    // server-side generation, same shape
    let start = Instant::now();
    for b in 0..100i64 {
        conn.batch_execute(&format!("BEGIN; INSERT INTO collected_sources (name) VALUES ('s{b}');
          INSERT INTO collected_events (source, node, source_seq, at, actor, auth, client, request_id, company_id, action, target, outcome, detail, prev_hash, hash)
          SELECT (SELECT id FROM collected_sources WHERE name='s{b}'), 'n', g, '2026-03-01T09:00:00Z', 'user:x', 'session', '1.2.3.4', 'r' || g, 'c1', 'entry.post', 'entry:' || g, 'success', NULL, sha256(int8send(g)), sha256(int8send(g+1)) FROM generate_series(1, 1000) g; COMMIT;")).await.unwrap();
    }
    println!("server-side 100k rows: {:?}", start.elapsed());
    conn.batch_execute("ALTER TABLE collected_events DROP CONSTRAINT collected_events_source_fkey")
        .await
        .unwrap();
    let start = Instant::now();
    for b in 100..200i64 {
        conn.batch_execute(&format!("BEGIN; INSERT INTO collected_sources (name) VALUES ('s{b}');
          INSERT INTO collected_events (source, node, source_seq, at, actor, auth, client, request_id, company_id, action, target, outcome, detail, prev_hash, hash)
          SELECT (SELECT id FROM collected_sources WHERE name='s{b}'), 'n', g, '2026-03-01T09:00:00Z', 'user:x', 'session', '1.2.3.4', 'r' || g, 'c1', 'entry.post', 'entry:' || g, 'success', NULL, sha256(int8send(g)), sha256(int8send(g+1)) FROM generate_series(1, 1000) g; COMMIT;")).await.unwrap();
    }
    println!("server-side no FK 100k rows: {:?}", start.elapsed());
    conn.batch_execute("DROP INDEX collected_by_company")
        .await
        .unwrap();
    let start = Instant::now();
    for b in 200..300i64 {
        conn.batch_execute(&format!("BEGIN; INSERT INTO collected_sources (name) VALUES ('s{b}');
          INSERT INTO collected_events (source, node, source_seq, at, actor, auth, client, request_id, company_id, action, target, outcome, detail, prev_hash, hash)
          SELECT (SELECT id FROM collected_sources WHERE name='s{b}'), 'n', g, '2026-03-01T09:00:00Z', 'user:x', 'session', '1.2.3.4', 'r' || g, 'c1', 'entry.post', 'entry:' || g, 'success', NULL, sha256(int8send(g)), sha256(int8send(g+1)) FROM generate_series(1, 1000) g; COMMIT;")).await.unwrap();
    }
    println!(
        "server-side no FK no company idx 100k rows: {:?}",
        start.elapsed()
    );
    let start = Instant::now();
    for _ in 0..100 {
        conn.batch_execute("BEGIN; SELECT 1; COMMIT").await.unwrap();
    }
    println!("100 empty tx: {:?}", start.elapsed());
    let _ = control.central_head("x").await;
}
