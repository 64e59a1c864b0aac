//! The storage integration tests, one test binary: every link of a test binary
//! repeats the whole dependency graph, so the story files below are modules of
//! one binary rather than binaries of their own. Each module runs its stories
//! on SQLCipher and, through `pg_backend`, on PostgreSQL (the throwaway
//! cluster of `wb-pgtest`, one per test process, shared by all modules).

mod control_backends;
mod pg_backend;

mod alerts;
mod contract;
mod control_shared;
mod entries;
mod export_schedules;
mod factors;
mod files;
mod key_versions;
mod lifecycle;
mod migrations;
mod purge;
mod retention_rules;
mod staff;
