//! The customer-export stories of `exports.rs`, on the PostgreSQL backend
//! (the throwaway test cluster of `wb-pgtest`).

#[path = "api/harness.rs"]
mod harness;

/// The storage these tests run against.
const BACKEND: harness::Backend = harness::Backend::Postgres;

#[path = "api/exports.rs"]
mod exports;
