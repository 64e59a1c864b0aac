//! The monitor stories of `monitor.rs`, run on the PostgreSQL backend.

const POSTGRES: bool = true;

#[path = "monitor.rs"]
mod stories;
