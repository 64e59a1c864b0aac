//! `workbooks export decrypt`: opens a customer export offline (no server, no
//! data directory, no master key), verifies it as it streams from the file
//! (books, both hash chains, every attachment's size and SHA-256) and writes
//! its files.

use std::fs::File;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use wb_crypto::Secret;
use wb_server::exports::{self, DiscardFiles, FileRef, FileSink, Unlock, Verified};

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// Decrypt an export file, verify every part's and attachment's SHA-256
    /// and both hash chains, print a summary and (with --out) write its files.
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
    /// Write manifest.json, accounts.jsonl, entries.jsonl, audit.jsonl,
    /// journal.jsonl and files/ (the attachments) into this directory
    /// (created; existing files are not overwritten; nothing is left when
    /// the export fails verification).
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
    let reading = || format!("reading {}", args.input.display());
    let file = File::open(&args.input).with_context(reading)?;
    // Streams: the age file is decrypted as it is read, each attachment
    // hashed as it is written, so an export of any size fits in memory.
    let plain = exports::decrypting_reader(BufReader::new(file), &key).with_context(reading)?;
    let verified = match &args.out {
        Some(dir) => {
            let mut sink = DirSink::new(dir)?;
            let verified = exports::read_from(plain, &mut sink)
                .map_err(anyhow::Error::new)
                .and_then(|v| {
                    let parts = sink.write_parts(&v)?;
                    Ok((v, parts))
                });
            match verified {
                Ok((v, parts)) => {
                    let mut written = parts;
                    written.append(&mut sink.written);
                    sink.keep();
                    (v, Some(written))
                }
                Err(e) => {
                    sink.remove_all();
                    return Err(e.context(reading()));
                }
            }
        }
        None => {
            let v = exports::read_from(plain, &mut DiscardFiles).with_context(reading)?;
            (v, None)
        }
    };
    let (verified, written) = verified;
    let m = &verified.manifest;
    let file_bytes: u64 = m.files.iter().map(|f| f.bytes).sum();
    if args.json {
        let summary = serde_json::json!({
            "verified": true,
            "manifest": m,
            "written": written.clone().unwrap_or_default(),
            "files": { "count": m.files.len(), "bytes": file_bytes },
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
    println!("files     {} ({file_bytes} bytes)", m.files.len());
    println!("parts     every SHA-256 matches the manifest (attachments too)");
    if let (Some(dir), Some(written)) = (&args.out, &written) {
        println!("wrote     {} files to {}", written.len(), dir.display());
    }
    Ok(())
}

/// Creates `path` for writing, owner-readable only; never overwrites.
fn create_new(path: &Path) -> Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::anyhow!(
                "{} already exists; give an empty --out directory",
                path.display()
            )
        } else {
            anyhow::Error::new(e).context(format!("creating {}", path.display()))
        }
    })
}

/// Writes each attachment under `dir` as it is read (its path was checked
/// safe by the reader: `files/{id}-{safe name}`), dropping one that fails
/// verification; `remove_all` takes back everything when the export as a
/// whole fails.
struct DirSink {
    dir: PathBuf,
    current: Option<(PathBuf, File)>,
    written: Vec<String>,
    created: Vec<PathBuf>,
    created_files_dir: bool,
}

impl DirSink {
    fn new(dir: &Path) -> Result<DirSink> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        // The fixed names first, so a used directory fails before any work.
        for name in std::iter::once(exports::MANIFEST).chain(exports::PARTS) {
            let path = dir.join(name);
            if path.exists() {
                bail!(
                    "{} already exists; give an empty --out directory",
                    path.display()
                );
            }
        }
        Ok(DirSink {
            dir: dir.to_path_buf(),
            current: None,
            written: Vec::new(),
            created: Vec::new(),
            created_files_dir: false,
        })
    }

    /// Writes the manifest and the books parts (names fixed by the format)
    /// once the whole export has verified.
    fn write_parts(&mut self, verified: &Verified) -> Result<Vec<String>> {
        let mut written = Vec::new();
        for (name, bytes) in &verified.parts {
            let path = self.dir.join(name);
            let mut file = create_new(&path)?;
            self.created.push(path.clone());
            file.write_all(bytes)
                .and_then(|()| file.sync_all())
                .with_context(|| format!("writing {}", path.display()))?;
            written.push(name.clone());
        }
        Ok(written)
    }

    fn keep(&mut self) {
        self.created.clear();
        self.created_files_dir = false;
    }

    fn remove_all(&mut self) {
        if let Some((path, file)) = self.current.take() {
            drop(file);
            let _ = std::fs::remove_file(path);
        }
        for path in self.created.drain(..) {
            let _ = std::fs::remove_file(path);
        }
        if self.created_files_dir {
            let _ = std::fs::remove_dir(self.dir.join(exports::FILES_DIR));
        }
    }
}

fn io_error(e: anyhow::Error) -> std::io::Error {
    std::io::Error::other(format!("{e:#}"))
}

impl FileSink for DirSink {
    fn begin(&mut self, file: &FileRef) -> std::io::Result<()> {
        let files_dir = self.dir.join(exports::FILES_DIR);
        if !files_dir.exists() {
            std::fs::create_dir(&files_dir)?;
            self.created_files_dir = true;
        }
        let path = self.dir.join(&file.path);
        let handle = create_new(&path).map_err(io_error)?;
        self.created.push(path.clone());
        self.current = Some((path, handle));
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self.current.as_mut() {
            Some((_, file)) => file.write_all(bytes),
            None => Err(std::io::Error::other("no file is open")),
        }
    }

    fn end(&mut self, file: &FileRef, verified: bool) -> std::io::Result<()> {
        let Some((path, handle)) = self.current.take() else {
            return Ok(());
        };
        if verified {
            handle.sync_all()?;
            self.written.push(file.path.clone());
        } else {
            drop(handle);
            std::fs::remove_file(&path)?;
            self.created.retain(|p| p != &path);
        }
        Ok(())
    }
}
