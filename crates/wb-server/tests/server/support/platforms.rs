//! Opening a test platform on either backend: SQLCipher files in the data
//! directory, or PostgreSQL on the throwaway test cluster (a fresh control
//! database per platform).
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use wb_crypto::MasterKey;
use wb_server::{Clock, Platform, PostgresConfig, StorageConfig};

pub async fn storage(postgres: bool) -> StorageConfig {
    if !postgres {
        return StorageConfig::Embedded;
    }
    let cluster = tokio::task::spawn_blocking(wb_pgtest::PgCluster::shared)
        .await
        .expect("start the PostgreSQL test cluster");
    let url = tokio::task::spawn_blocking(|| cluster.fresh_database("tests_control"))
        .await
        .expect("create a control database");
    let mut config = PostgresConfig::new(url, Some(cluster.ca_file().to_path_buf()));
    config.max_connections = 32;
    StorageConfig::Postgres(config)
}

pub async fn open(dir: &Path, clock: Arc<dyn Clock>, postgres: bool) -> Platform {
    Platform::open(
        dir,
        MasterKey::generate(),
        clock,
        time::Duration::hours(12),
        &storage(postgres).await,
    )
    .await
    .expect("open platform")
}

/// How many company databases exist (files, or placements on PostgreSQL).
pub async fn company_databases(platform: &Platform, dir: &Path) -> usize {
    match &platform.postgres {
        Some(pg) => pg.placements().all().await.expect("placements").len(),
        None => std::fs::read_dir(dir.join("companies"))
            .map(|d| d.count())
            .unwrap_or(0),
    }
}
