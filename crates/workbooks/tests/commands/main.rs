//! The `workbooks` binary's integration tests, one test binary: every test
//! binary links the whole dependency graph again, so the story files are
//! modules here rather than binaries of their own. Most run the built
//! `workbooks` binary (`CARGO_BIN_EXE_workbooks`) as a child process; the
//! PostgreSQL stories share one throwaway cluster (`wb_pgtest`) per process.

mod common;

mod alerts;
mod audit;
mod backup;
mod backup_verify;
mod cli;
mod compat;
mod crash;
mod export;
mod keys;
mod lifecycle;
mod postgres;
mod sandbox;
