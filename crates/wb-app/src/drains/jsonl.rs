//! JSON-lines drain: one `DrainRecord` per line, appended to a local file
//! (created with mode 0600) and fsynced after each batch.
//!
//! On opening, a torn last line (a crash in the middle of a write) is cut off
//! and the `central_seq` of the last complete line is read back, so events
//! already in the file are never written twice, even when the drain's cursor
//! was lost or lags behind.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use wb_store::CentralEvent;

use super::{Drain, DrainError, DrainRecord};

struct OpenFile {
    file: File,
    /// `central_seq` of the last record in the file (0 when empty).
    last: i64,
}

pub struct JsonlDrain {
    path: PathBuf,
    open: Option<OpenFile>,
}

impl JsonlDrain {
    pub fn new(path: PathBuf) -> JsonlDrain {
        JsonlDrain { path, open: None }
    }
}

fn file_err(path: &Path, reason: impl std::fmt::Display) -> DrainError {
    DrainError::File {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Finds the end of the last complete line and that line's bytes, reading
/// backwards from `len` in chunks.
fn scan_tail(file: &mut File, len: u64) -> std::io::Result<(u64, Option<Vec<u8>>)> {
    const CHUNK: u64 = 64 * 1024;
    let mut buf: Vec<u8> = Vec::new(); // the bytes [start, len)
    let mut start = len;
    let mut complete_end: Option<u64> = None; // just after the last '\n'
    loop {
        match complete_end {
            Some(end) => {
                let line_end = (end - start) as usize - 1; // index of that '\n'
                if let Some(i) = buf[..line_end].iter().rposition(|&b| b == b'\n') {
                    return Ok((end, Some(buf[i + 1..line_end].to_vec())));
                }
                if start == 0 {
                    return Ok((end, Some(buf[..line_end].to_vec())));
                }
            }
            None => {
                if let Some(i) = buf.iter().rposition(|&b| b == b'\n') {
                    complete_end = Some(start + i as u64 + 1);
                    continue;
                }
                if start == 0 {
                    return Ok((0, None));
                }
            }
        }
        let new_start = start.saturating_sub(CHUNK);
        let mut chunk = vec![0; (start - new_start) as usize];
        file.seek(SeekFrom::Start(new_start))?;
        file.read_exact(&mut chunk)?;
        chunk.extend_from_slice(&buf);
        buf = chunk;
        start = new_start;
    }
}

fn open_file(path: &Path) -> Result<OpenFile, DrainError> {
    let existed = path.exists();
    let mut options = std::fs::OpenOptions::new();
    options.read(true).append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| file_err(path, e))?;
    if !existed {
        // Make the new directory entry durable too.
        if let Some(dir) = path.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| file_err(path, e))?;
        }
    }
    let len = file.metadata().map_err(|e| file_err(path, e))?.len();
    let (complete, last_line) = scan_tail(&mut file, len).map_err(|e| file_err(path, e))?;
    if complete < len {
        tracing::warn!(file = %path.display(), bytes = len - complete,
            "cutting off a torn last line of the audit drain file");
        file.set_len(complete).map_err(|e| file_err(path, e))?;
        file.sync_data().map_err(|e| file_err(path, e))?;
    }
    let last =
        match last_line {
            None => 0,
            Some(line) => {
                serde_json::from_slice::<DrainRecord>(&line)
                    .map_err(|e| {
                        file_err(
                    path,
                    format!("its last line is not an audit drain record ({e}); refusing to append"),
                )
                    })?
                    .central_seq
            }
        };
    Ok(OpenFile { file, last })
}

fn append(open: &mut OpenFile, lines: &[(i64, String)], path: &Path) -> Result<(), DrainError> {
    let mut bytes = Vec::new();
    let mut last = open.last;
    for (central_seq, line) in lines {
        if *central_seq <= last {
            continue; // already in the file
        }
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        last = *central_seq;
    }
    if bytes.is_empty() {
        return Ok(());
    }
    open.file
        .write_all(&bytes)
        .and_then(|()| open.file.sync_data())
        .map_err(|e| file_err(path, e))?;
    open.last = last;
    Ok(())
}

#[async_trait]
impl Drain for JsonlDrain {
    async fn send(&mut self, events: &[CentralEvent]) -> Result<(), DrainError> {
        if events.is_empty() {
            return Ok(());
        }
        let lines: Vec<(i64, String)> = events
            .iter()
            .map(|e| (e.central_seq, DrainRecord::from(e).to_json_line()))
            .collect();
        let path = self.path.clone();
        let state = self.open.take();
        let (state, result) = tokio::task::spawn_blocking(move || {
            let mut state = match state {
                Some(s) => s,
                None => match open_file(&path) {
                    Ok(s) => s,
                    Err(e) => return (None, Err(e)),
                },
            };
            match append(&mut state, &lines, &path) {
                Ok(()) => (Some(state), Ok(())),
                // Reopen (and repair a torn line) before the next attempt.
                Err(e) => (None, Err(e)),
            }
        })
        .await
        .map_err(|e| file_err(&self.path, e))?;
        self.open = state;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(content: &[u8]) -> (u64, Option<Vec<u8>>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, content).unwrap();
        let mut f = File::open(&path).unwrap();
        scan_tail(&mut f, content.len() as u64).unwrap()
    }

    #[test]
    fn finds_the_last_complete_line() {
        assert_eq!(scan(b""), (0, None));
        assert_eq!(scan(b"torn"), (0, None));
        assert_eq!(scan(b"a\n"), (2, Some(b"a".to_vec())));
        assert_eq!(scan(b"a\nbc\n"), (5, Some(b"bc".to_vec())));
        assert_eq!(scan(b"a\nbc\ntorn"), (5, Some(b"bc".to_vec())));
        let long = vec![b'x'; 200_000];
        let mut content = b"first\n".to_vec();
        content.extend_from_slice(&long);
        content.extend_from_slice(b"\n");
        content.extend_from_slice(&long);
        assert_eq!(scan(&content), (200_007, Some(long.clone())));
    }
}
