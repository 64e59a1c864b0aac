//! The end-to-end API tests of `api.rs`, run against the PostgreSQL backend:
//! each server has its own control database on the throwaway test cluster, and
//! each company its own database and role there.

#[path = "api/harness.rs"]
mod harness;

/// The storage these tests run against.
const BACKEND: harness::Backend = harness::Backend::Postgres;

#[path = "api/audit.rs"]
mod audit;
#[path = "api/auth.rs"]
mod auth;
#[path = "api/books.rs"]
mod books;
#[path = "api/door.rs"]
mod door;
#[path = "api/files.rs"]
mod files;
#[path = "api/isolation.rs"]
mod isolation;
#[path = "api/nodes.rs"]
mod nodes;
#[path = "api/placement.rs"]
mod placement;
#[path = "api/prop.rs"]
mod prop;
#[path = "api/web.rs"]
mod web;
