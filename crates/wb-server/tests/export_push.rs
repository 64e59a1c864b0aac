//! Scheduled export pushes end to end over HTTPS on the embedded SQLCipher store
//! (`export_push_postgres.rs` runs the same stories on PostgreSQL).

#[path = "api/harness.rs"]
mod harness;

#[path = "support/moto.rs"]
mod moto;

/// The storage these tests run against.
const BACKEND: harness::Backend = harness::Backend::Sqlite;

#[path = "api/export_push.rs"]
mod export_push;
