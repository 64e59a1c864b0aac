//! The `workbooks bench` subcommand: throughput, latency and memory of the
//! server, each figure next to a baseline measured in the same run, written
//! as sections of a Markdown results file (BENCHMARKS.md).
//!
//! A crate of its own so the shipped binary does not link the benchmark code
//! nor the throwaway PostgreSQL cluster (`wb-pgtest`) it starts. `workbooks`
//! adds the subcommand with its `bench` cargo feature, off by default
//! (`cargo run --release --features bench -- bench`), rather than shipping a
//! second binary: the benchmark then runs inside the very binary it
//! measures, with the same allocator, runtime and command line (`workbooks
//! bench [--postgres|--backup|--exports]`) that the results file names.
//!
//! Errors are `anyhow`: its one caller prints them and exits, and no code
//! branches on them.

mod backup;
mod company_keys;
mod console;
mod embedded;
mod exports;
mod grants;
mod harness;
mod keys;
mod lifecycle;
mod postgres;
mod report;
mod security;

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Where to write the results table (Markdown).
    #[arg(long, default_value = "BENCHMARKS.md")]
    pub out: PathBuf,
    /// Scratch directory for the benchmark's data (default: a temporary directory).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Seconds each timed load runs.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Entries in the large company for the trial-balance measurement.
    #[arg(long, default_value_t = 1_000_000)]
    pub large_entries: u64,
    /// Companies opened for the memory measurement.
    #[arg(long, default_value_t = 1000)]
    pub companies: u64,
    /// Run only the PostgreSQL benchmark, on a throwaway local cluster
    /// (initdb/pg_ctl/pgbench from the system), and write its own section.
    #[arg(long)]
    pub postgres: bool,
    /// Run only the continuous-protection benchmark (shipping lag, restore
    /// rate, restore of a --large-entries company) and write its own section.
    #[arg(long, conflicts_with = "postgres")]
    pub backup: bool,
    /// Run only the concurrent-exports benchmark (peak memory of parallel
    /// passphrase exports, with and without the node bound) and write its
    /// own section.
    #[arg(long, conflicts_with_all = ["postgres", "backup"])]
    pub exports: bool,
    /// Run only the abuse-limit and login benchmark (a flood against
    /// well-behaved clients, logins per second next to raw Argon2id, login
    /// timing for unknown and known accounts) and write its own section.
    #[arg(long, conflicts_with_all = ["postgres", "backup", "exports"])]
    pub security: bool,
    /// Run only the web console benchmark (server time of its pages with a
    /// --large-entries company, next to /healthz; page weight) and write its
    /// own section.
    #[arg(long, conflicts_with_all = ["postgres", "backup", "exports", "security"])]
    pub console: bool,
    /// Run only the staff-access benchmark (the grant check's cost on a
    /// staff member's read next to the owner's) and write its own section.
    #[arg(long, conflicts_with_all = ["postgres", "backup", "exports", "security", "console"])]
    pub grants: bool,
    /// Run only the company-lifecycle benchmark (the destruction of a
    /// --large-entries company with --attachment-mib MiB of attachments
    /// and its backups) and write its own section.
    #[arg(long, conflicts_with_all = ["postgres", "backup", "exports", "security", "console", "grants"])]
    pub lifecycle: bool,
    /// Run only the master-key rotation benchmark (a rotation over
    /// --rotation-companies companies while a server serves reads) and
    /// write its own section.
    #[arg(long, conflicts_with_all = ["postgres", "backup", "exports", "security", "console", "grants", "lifecycle"])]
    pub keys: bool,
    /// Run only the company-key rotation benchmark (a --large-entries
    /// company's key rotated while writers post: time, longest write pause)
    /// and write its own section.
    #[arg(long, conflicts_with_all = ["postgres", "backup", "exports", "security", "console", "grants", "lifecycle", "keys"])]
    pub company_keys: bool,
    /// Companies whose keys the rotation benchmark re-wraps.
    #[arg(long, default_value_t = 10_000)]
    pub rotation_companies: u64,
    /// MiB of attachments in the company the lifecycle benchmark destroys.
    #[arg(long, default_value_t = 1024)]
    pub attachment_mib: u64,
    /// Companies opened for the PostgreSQL memory-per-idle-company measurement.
    #[arg(long, default_value_t = 200)]
    pub pg_companies: u64,
    /// With --postgres: load pg_stat_statements into the throwaway cluster and
    /// print the server time of each statement during the HTTP loads (a
    /// diagnosis; results are then not written to the results file).
    #[arg(long, requires = "postgres")]
    pub pg_statements: bool,
}

/// Runs the section the flags select (the embedded store's without a flag)
/// and writes it into `args.out`.
pub async fn run(args: BenchArgs) -> Result<()> {
    if args.postgres {
        return postgres::run(args).await;
    }
    if args.backup {
        return backup::run(&args).await;
    }
    if args.exports {
        return exports::run(&args).await;
    }
    if args.security {
        return security::run(&args).await;
    }
    if args.console {
        return console::run(&args).await;
    }
    if args.grants {
        return grants::run(&args).await;
    }
    if args.lifecycle {
        return lifecycle::run(&args).await;
    }
    if args.keys {
        return keys::run(&args).await;
    }
    if args.company_keys {
        return company_keys::run(&args).await;
    }
    embedded::run(args).await
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Bench {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn parse(line: &[&str]) -> Result<BenchArgs, clap::Error> {
        Bench::try_parse_from(std::iter::once("bench").chain(line.iter().copied())).map(|b| b.args)
    }

    #[test]
    fn the_defaults_are_the_published_run() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.out, PathBuf::from("BENCHMARKS.md"));
        assert_eq!(a.data, None);
        assert_eq!(
            (a.seconds, a.large_entries, a.companies, a.pg_companies),
            (10, 1_000_000, 1000, 200)
        );
        assert!(
            !a.postgres
                && !a.backup
                && !a.exports
                && !a.security
                && !a.console
                && !a.grants
                && !a.lifecycle
                && !a.keys
                && !a.company_keys
                && !a.pg_statements
        );
    }

    #[test]
    fn one_section_at_a_time() {
        for line in [
            &["--postgres", "--backup"][..],
            &["--postgres", "--exports"],
            &["--backup", "--exports"],
            &["--security", "--exports"],
            &["--security", "--postgres"],
            &["--console", "--security"],
            &["--grants", "--console"],
            &["--lifecycle", "--backup"],
            &["--keys", "--lifecycle"],
            &["--company-keys", "--keys"],
            &["--pg-statements"],
        ] {
            assert!(parse(line).is_err(), "{line:?} accepted");
        }
        let a = parse(&["--postgres", "--pg-statements", "--seconds", "1"]).unwrap();
        assert!(a.postgres && a.pg_statements);
        assert_eq!(a.seconds, 1);
    }
}
