//! The change-journal shipping and restore stories of `backup.rs`, run on the
//! PostgreSQL backend.

const POSTGRES: bool = true;

#[path = "backup.rs"]
mod stories;
