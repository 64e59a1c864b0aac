//! `workbooks export decrypt`: opens a customer export offline (no server, no
//! data directory, no master key), verifies it and writes its parts.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use wb_crypto::Secret;
use wb_server::exports::{self, ExportContents, Unlock};

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// Decrypt an export file, verify every part's SHA-256 and both hash
    /// chains, print a summary and (with --out) write its files.
    Decrypt(DecryptArgs),
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("key").required(true).args(["identity", "passphrase_file"])))]
pub struct DecryptArgs {
    /// The export file (as downloaded: an age file).
    #[arg(long = "in", value_name = "FILE")]
    pub input: PathBuf,
    /// An age identity file (`age-keygen` output) whose recipient the export was made for.
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// A file holding the export's passphrase (one trailing newline is ignored).
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Write manifest.json, accounts.jsonl, entries.jsonl, audit.jsonl and
    /// journal.jsonl into this directory (created; existing files are not overwritten).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: ExportCommand) -> Result<()> {
    match cmd {
        ExportCommand::Decrypt(args) => decrypt(args),
    }
}

fn unlock(args: &DecryptArgs) -> Result<Unlock> {
    if let Some(path) = &args.identity {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the identity file {}", path.display()))?;
        return Ok(Unlock::identity_file(&text)?);
    }
    if let Some(path) = &args.passphrase_file {
        let mut text = Secret::from(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the passphrase file {}", path.display()))?,
        );
        let trimmed = text
            .expose()
            .strip_suffix('\n')
            .map(|t| t.strip_suffix('\r').unwrap_or(t));
        if let Some(t) = trimmed {
            text = Secret::new(t.to_string());
        }
        if text.expose().is_empty() {
            bail!("the passphrase file {} is empty", path.display());
        }
        return Ok(Unlock::Passphrase(text));
    }
    bail!("give --identity FILE or --passphrase-file FILE")
}

fn decrypt(args: DecryptArgs) -> Result<()> {
    let key = unlock(&args)?;
    let bytes =
        std::fs::read(&args.input).with_context(|| format!("reading {}", args.input.display()))?;
    let contents = exports::decrypt_and_read(&bytes, &key)
        .with_context(|| format!("reading {}", args.input.display()))?;
    let written = match &args.out {
        Some(dir) => write_files(&contents, dir)?,
        None => Vec::new(),
    };
    let m = &contents.manifest;
    if args.json {
        let summary = serde_json::json!({
            "verified": true,
            "manifest": m,
            "written": written,
        });
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(());
    }
    println!("export    {} ({} v{})", m.export_id, m.format, m.version);
    println!("company   {} ({})", m.company.name, m.company.id);
    println!("created   {} by {}", m.created_at, m.created_by);
    println!(
        "journal   through record {} ({} records, chain verified)",
        m.journal_seq, m.counts.journal_records
    );
    println!(
        "audit     through event {} ({} events, chain verified)",
        m.audit_seq, m.counts.audit_events
    );
    println!("accounts  {}", m.counts.accounts);
    println!(
        "entries   {} ({} postings)",
        m.counts.entries, m.counts.postings
    );
    println!("files     {}", m.files.len());
    println!("parts     every SHA-256 matches the manifest");
    if let Some(dir) = &args.out {
        println!("wrote     {} files to {}", written.len(), dir.display());
    }
    Ok(())
}

/// Writes every file of the archive (names are fixed by the format, checked
/// when reading) into `dir`, owner-readable only; never overwrites.
fn write_files(contents: &ExportContents, dir: &Path) -> Result<Vec<String>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    for (name, bytes) in &contents.files {
        let path = dir.join(name);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                anyhow::anyhow!(
                    "{} already exists; give an empty --out directory",
                    path.display()
                )
            } else {
                anyhow::Error::new(e).context(format!("creating {}", path.display()))
            }
        })?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing {}", path.display()))?;
        written.push(name.clone());
    }
    Ok(written)
}
