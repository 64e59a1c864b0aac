//! Customer exports end to end over HTTPS on the embedded SQLCipher store
//! (`exports_postgres.rs` runs the same stories on PostgreSQL).

#[path = "api/harness.rs"]
mod harness;

/// The storage these tests run against.
const BACKEND: harness::Backend = harness::Backend::Sqlite;

#[path = "api/exports.rs"]
mod exports;
