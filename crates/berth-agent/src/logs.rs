//! Container output, as the shim writes it: one JSON object a line,
//! `{"t": <ms since epoch>, "s": "stdout"|"stderr", "m": "<line>"}`, in
//! `<container dir>/log.jsonl`, rotated to `log.jsonl.1` past
//! [`MAX_LOG_BYTES`] (two files kept); lines longer than [`MAX_LINE_BYTES`]
//! are split.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// The size at which `log.jsonl` is rotated.
pub const MAX_LOG_BYTES: u64 = 8 * 1024 * 1024;

/// The longest line kept whole; longer ones are split.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// One line of container output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// When the shim read it, ms since the epoch.
    pub t: i64,
    /// `stdout` or `stderr`.
    pub s: String,
    /// The line, without its newline.
    pub m: String,
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Appends [`LogLine`]s to a file, rotating it.
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
}

impl LogWriter {
    /// Opens (appending) `path`, rotating past `max_bytes`.
    pub fn open(path: &Path, max_bytes: u64) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_path_buf(),
            file,
            size,
            max_bytes,
        })
    }

    /// The rotated file's path (`<path>.1`).
    pub fn rotated_path(path: &Path) -> PathBuf {
        let mut s = path.as_os_str().to_os_string();
        s.push(".1");
        PathBuf::from(s)
    }

    /// Writes one line.
    pub fn write_line(&mut self, stream: &str, message: &str, t: i64) -> io::Result<()> {
        let mut line = serde_json::to_string(&LogLine {
            t,
            s: stream.to_string(),
            m: message.to_string(),
        })
        .map_err(io::Error::other)?;
        line.push('\n');
        let len = line.len() as u64;
        if self.size > 0 && self.size + len > self.max_bytes {
            std::fs::rename(&self.path, Self::rotated_path(&self.path))?;
            self.file = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .open(&self.path)?;
            self.size = 0;
        }
        self.file.write_all(line.as_bytes())?;
        self.size += len;
        Ok(())
    }
}

/// The longest prefix of `b` of at most `max` bytes that does not cut a
/// UTF-8 character (or `max` if there is none).
fn split_point(b: &[u8], max: usize) -> usize {
    let mut n = max.min(b.len());
    while n > 0 && n < b.len() && (b[n] & 0b1100_0000) == 0b1000_0000 {
        n -= 1;
    }
    if n == 0 {
        max.min(b.len())
    } else {
        n
    }
}

/// Reads `reader` to its end, writing each line (split at `max_line`
/// bytes) to `writer` as `stream`.
pub fn pump(
    mut reader: impl Read,
    stream: &str,
    writer: &Arc<Mutex<LogWriter>>,
    max_line: usize,
) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    let emit = |bytes: &[u8]| -> io::Result<()> {
        let msg = String::from_utf8_lossy(bytes);
        let mut w = writer
            .lock()
            .map_err(|_| io::Error::other("log writer poisoned"))?;
        w.write_line(stream, &msg, now_ms())
    };
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        pending.extend_from_slice(&buf[..n]);
        loop {
            if let Some(pos) = pending.iter().position(|&b| b == b'\n') {
                if pos <= max_line {
                    emit(&pending[..pos])?;
                    pending.drain(..=pos);
                    continue;
                }
            }
            if pending.len() > max_line {
                let cut = split_point(&pending, max_line);
                emit(&pending[..cut])?;
                pending.drain(..cut);
                continue;
            }
            break;
        }
    }
    if !pending.is_empty() {
        emit(&pending)?;
    }
    Ok(())
}

/// Reads every line of a log file and its rotated predecessor, oldest
/// first (for tests and for shipping a finished task's logs).
pub fn read_log(path: &Path) -> io::Result<Vec<LogLine>> {
    let mut out = Vec::new();
    for p in [LogWriter::rotated_path(path), path.to_path_buf()] {
        let text = match std::fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for l in text.lines() {
            if let Ok(line) = serde_json::from_str(l) {
                out.push(line);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_json_and_split() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        let w = Arc::new(Mutex::new(LogWriter::open(&path, MAX_LOG_BYTES).unwrap()));
        let input = format!("hi\nthere\n{}\ntail", "x".repeat(40));
        pump(input.as_bytes(), "stdout", &w, 16).unwrap();
        pump("é".repeat(10).as_bytes(), "stderr", &w, 5).unwrap();
        let lines = read_log(&path).unwrap();
        let msgs: Vec<&str> = lines.iter().map(|l| l.m.as_str()).collect();
        assert_eq!(
            msgs,
            vec![
                "hi",
                "there",
                "xxxxxxxxxxxxxxxx",
                "xxxxxxxxxxxxxxxx",
                "xxxxxxxx",
                "tail",
                "éé",
                "éé",
                "éé",
                "éé",
                "éé"
            ]
        );
        assert_eq!(lines[0].s, "stdout");
        assert_eq!(lines[6].s, "stderr");
        assert!(lines[0].t > 0);
    }

    #[test]
    fn rotates_and_keeps_two_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        let mut w = LogWriter::open(&path, 200).unwrap();
        for i in 0..20 {
            w.write_line("stdout", &format!("line {i}"), 1).unwrap();
        }
        let cur = std::fs::metadata(&path).unwrap().len();
        let old = std::fs::metadata(LogWriter::rotated_path(&path))
            .unwrap()
            .len();
        assert!(cur <= 200 && old <= 200);
        let all = read_log(&path).unwrap();
        assert_eq!(all.last().unwrap().m, "line 19");
        assert!(all.len() < 20, "older lines are dropped");
        let n: Vec<usize> = all.iter().map(|l| l.m[5..].parse().unwrap()).collect();
        assert!(n.windows(2).all(|w| w[1] == w[0] + 1), "in order: {n:?}");
        assert!(!dir.path().join("log.jsonl.2").exists());
    }
}
