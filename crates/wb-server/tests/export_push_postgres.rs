//! Scheduled export pushes end to end over HTTPS on the PostgreSQL backend
//! (the throwaway test cluster of `wb-pgtest`).

#[path = "api/harness.rs"]
mod harness;

#[path = "support/moto.rs"]
mod moto;

/// The storage these tests run against.
const BACKEND: harness::Backend = harness::Backend::Postgres;

#[path = "api/export_push.rs"]
mod export_push;
