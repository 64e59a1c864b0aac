//! Where the master key comes from. A key provider answers the key for a
//! key id: a key file, the `WORKBOOKS_MASTER_KEY` environment variable, or
//! an external command, so an operator can plug in a KMS or an HSM tool
//! without code (like git's credential helpers): the command is run as
//! `COMMAND get KEY_ID` and prints the key (64 hex characters) on standard
//! output. It is run without a shell; what it prints is never logged or
//! shown, its standard error is discarded (a helper's messages may carry
//! what it was given: run it by hand to see them), a failure is one line
//! naming the command and its exit status, and it gets at most
//! [`COMMAND_TIMEOUT`] and [`MAX_OUTPUT_BYTES`].

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use wb_crypto::MasterKey;
use zeroize::Zeroizing;

/// The key id of the deployment's master key.
pub const MASTER_KEY_ID: &str = "master";
/// The longest a key command may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// The most a key command may print.
pub const MAX_OUTPUT_BYTES: u64 = 4096;

/// Something that answers a key for a key id.
pub trait KeyProvider {
    fn key(&self, key_id: &str) -> Result<MasterKey>;
}

/// A key file of 64 hex characters, readable by its owner alone.
pub struct KeyFile(pub PathBuf);

impl KeyProvider for KeyFile {
    fn key(&self, _key_id: &str) -> Result<MasterKey> {
        Ok(MasterKey::load(&self.0)?)
    }
}

/// An external command: `PROGRAM get KEY_ID` prints the key.
pub struct KeyCommand {
    program: PathBuf,
}

impl KeyCommand {
    /// The program must be given by its absolute path and be a file.
    pub fn new(program: &Path) -> Result<KeyCommand> {
        if !program.is_absolute() {
            bail!(
                "master key command {}: give its absolute path",
                program.display()
            );
        }
        if !program.is_file() {
            bail!("master key command {}: no such file", program.display());
        }
        Ok(KeyCommand {
            program: program.to_path_buf(),
        })
    }
}

impl KeyProvider for KeyCommand {
    fn key(&self, key_id: &str) -> Result<MasterKey> {
        let shown = self.program.display();
        let mut child = Command::new(&self.program)
            .args(["get", key_id])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("master key command {shown}: cannot run it"))?;
        let mut stdout = child.stdout.take().context("the command's output")?;
        // Read on a thread, bounded, while this one keeps the deadline.
        let reader = std::thread::spawn(move || {
            let mut out = Zeroizing::new(Vec::new());
            let read = (&mut stdout)
                .take(MAX_OUTPUT_BYTES + 1)
                .read_to_end(&mut out);
            read.map(|_| out)
        });
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "master key command {shown}: no answer within {} s",
                    COMMAND_TIMEOUT.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = reader
            .join()
            .map_err(|_| anyhow!("master key command {shown}: reading its output failed"))?
            .with_context(|| format!("master key command {shown}: reading its output"))?;
        // Too much output first: reading stops there, and the command may
        // then die of a closed pipe.
        if out.len() as u64 > MAX_OUTPUT_BYTES {
            bail!("master key command {shown}: printed more than {MAX_OUTPUT_BYTES} bytes");
        }
        if !status.success() {
            bail!("master key command {shown}: {status}");
        }
        let text = std::str::from_utf8(&out).map_err(|_| {
            anyhow!("master key command {shown}: printed no key (64 hex characters expected)")
        })?;
        MasterKey::from_hex(text.trim()).map_err(|_| {
            anyhow!("master key command {shown}: printed no key (64 hex characters expected)")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(dir: &Path, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("key-helper");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
        path
    }

    #[test]
    fn a_command_answers_the_key_and_every_failure_is_one_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let hex = "ab".repeat(32);
        let good = script(
            dir.path(),
            &format!("[ \"$1\" = get ] && [ \"$2\" = master ] || exit 2\necho {hex}"),
        );
        let key = KeyCommand::new(&good).unwrap().key(MASTER_KEY_ID).unwrap();
        // The key it printed: what one wraps, the other opens.
        let expected = MasterKey::from_hex(&hex).unwrap();
        let wrapped = expected
            .wrap(&wb_crypto::DataKey::generate(), "ctx")
            .unwrap();
        assert!(key.unwrap_key(&wrapped, "ctx").is_ok());
        assert!(MasterKey::generate().unwrap_key(&wrapped, "ctx").is_err());
        for (body, expected) in [
            ("exit 3", "exit status: 3"),
            ("echo not-a-key", "64 hex characters"),
            ("echo ''", "64 hex characters"),
            (
                "head -c 10000 /dev/zero | tr '\\\\0' a",
                "more than 4096 bytes",
            ),
        ] {
            let path = script(dir.path(), body);
            let err = KeyCommand::new(&path)
                .unwrap()
                .key(MASTER_KEY_ID)
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{body}: {err}");
            assert!(
                !err.contains("not-a-key"),
                "the output is never shown: {err}"
            );
        }
        assert!(KeyCommand::new(Path::new("relative/helper")).is_err());
        assert!(KeyCommand::new(&dir.path().join("missing")).is_err());
    }
}
