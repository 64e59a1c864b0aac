//! Companies on more than one PostgreSQL server: placement on the least-loaded
//! server, and moving a company between servers while it is being written to.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use reqwest::StatusCode;
use wb_core::Action;
use wb_pgtest::PgCluster;
use wb_server::{PostgresConfig, StorageConfig};

use super::harness::{entry, TestServer};

/// A deployment whose companies go to two clusters, "one" and "two".
async fn two_server_storage() -> (StorageConfig, &'static PgCluster, &'static PgCluster) {
    let one = tokio::task::spawn_blocking(PgCluster::shared)
        .await
        .unwrap();
    let two: &'static PgCluster = Box::leak(Box::new(
        tokio::task::spawn_blocking(PgCluster::start).await.unwrap(),
    ));
    let control = tokio::task::spawn_blocking(|| one.fresh_database("placement_control"))
        .await
        .unwrap();
    let mut config = PostgresConfig::new(control, Some(one.ca_file().to_path_buf()));
    config.servers = vec![
        ("one".to_string(), one.service_url("postgres")),
        (
            "two".to_string(),
            format!(
                "{}?sslrootcert={}",
                two.service_url("postgres"),
                two.ca_file().display()
            ),
        ),
    ];
    (StorageConfig::Postgres(config), one, two)
}

/// Posts until acknowledged: a 503 with Retry-After (the company is moving)
/// is retried, as a client would.
async fn post_acknowledged(srv: &TestServer, path: &str, token: &str, i: usize) -> String {
    loop {
        let body = entry(
            "2026-04-01",
            &format!("Sale {i}"),
            &[("1000", "1.00", "USD"), ("4000", "-1.00", "USD")],
        );
        let resp = srv.post(path, token, body).await;
        if resp.status == StatusCode::SERVICE_UNAVAILABLE {
            assert!(resp.header("retry-after").is_some(), "{}", resp.text);
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        return resp.ok(201)["id"].as_str().unwrap().to_string();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn companies_spread_over_servers_and_move_without_losing_entries() {
    let (storage, one, two) = two_server_storage().await;
    let a: &'static TestServer = Box::leak(Box::new(TestServer::start_with_storage(storage).await));
    let b: &'static TestServer = Box::leak(Box::new(a.another_node().await));
    let pg = a.platform.postgres.as_ref().unwrap();

    // New companies go to the least-loaded server.
    let mut tenants = Vec::new();
    for i in 0..4 {
        tenants.push(a.signup(&format!("Placed {i} Ltd")).await);
    }
    let mut per_server = BTreeMap::new();
    for p in pg.placements().all().await.unwrap() {
        *per_server.entry(p.server).or_insert(0) += 1;
    }
    assert_eq!(per_server.get("one"), Some(&2), "{per_server:?}");
    assert_eq!(per_server.get("two"), Some(&2), "{per_server:?}");

    // Move one company while both nodes write to it.
    let t = tenants[0].clone();
    a.chart(&t).await;
    let from = pg.placements().get(&t.id).await.unwrap().unwrap();
    let to = if from.server == "one" { "two" } else { "one" };
    b.get(&t.path("/accounts"), &t.token).await.ok(200);
    let path = t.path("/entries");
    let mut acknowledged = BTreeSet::new();
    for i in 0..20 {
        acknowledged.insert(post_acknowledged(a, &path, &t.token, i).await);
    }
    let writers = {
        let (path, token) = (path.clone(), t.token.clone());
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..60 {
                let node = if i % 2 == 0 { a } else { b };
                ids.push(post_acknowledged(node, &path, &token, 100 + i).await);
            }
            ids
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let report = a
        .platform
        .move_company(&t.id, to, wb_store::Actor::system("test"))
        .await
        .unwrap();
    assert_eq!(report.from, from.server);
    assert_eq!(report.to, to);
    acknowledged.extend(writers.await.unwrap());
    assert_eq!(acknowledged.len(), 80);

    let placed = pg.placements().get(&t.id).await.unwrap().unwrap();
    assert_eq!(placed.server, to);
    // Every acknowledged entry is on the new server, seen from both nodes.
    for node in [a, b] {
        let ids: BTreeSet<String> = node
            .all_entries(&t, &t.token)
            .await
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids, acknowledged, "no acknowledged entry lost, none extra");
    }
    // The old database is gone from its server; the new one holds the chain.
    let old_cluster = if from.server == "one" { one } else { two };
    let database = from.database.clone();
    let left = tokio::task::spawn_blocking(move || {
        old_cluster.superuser_sql(
            "postgres",
            &format!("SELECT count(*) FROM pg_database WHERE datname = '{database}'"),
        )
    })
    .await
    .unwrap();
    assert_eq!(left, "0");
    let store = a.platform.tenant(&t.id).await.unwrap();
    let journal = store.journal(0, 10_000).await.unwrap();
    for (i, r) in journal.iter().enumerate() {
        assert_eq!(r.seq, i as i64 + 1);
        if i > 0 {
            assert_eq!(r.prev_hash, journal[i - 1].hash);
        }
    }
    // The move is in the platform trail.
    let moves: Vec<_> = a
        .platform
        .control
        .audit_events(Some(&t.id), 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == Action::CompanyMove.as_str())
        .collect();
    assert_eq!(moves.len(), 1);
    assert_eq!(moves[0].outcome, "success");

    // Moving to the server it is on, or to an unknown one, is refused and changes nothing.
    assert!(a
        .platform
        .move_company(&t.id, to, wb_store::Actor::system("test"))
        .await
        .is_err());
    assert!(a
        .platform
        .move_company(&t.id, "nowhere", wb_store::Actor::system("test"))
        .await
        .is_err());
    assert_eq!(
        pg.placements().get(&t.id).await.unwrap().unwrap().server,
        to
    );
}
