//! Container output: agents send it in batches, `berth logs` reads it back.
//!
//! Logs are far too chatty for the state store, so they live in plain files
//! behind the [`LogSink`] trait (a CloudWatch-Logs-compatible API can sit on
//! the same trait later). [`FileLogSink`] keeps, per task and container,
//! `DIR/<taskId>/<container>.log`: one JSON object per line
//! ([`StoredLogEntry`]), rotated to `<container>.log.1` when it would pass
//! [`ROTATE_BYTES`], so a container never holds more than two files.
//!
//! Every stored line gets a sequence number, counted per task and container
//! from 1. Readers resume after the last number they saw
//! ([`LogQuery::after`]), so following a log never repeats or skips a line,
//! even when lines share a timestamp.
//!
//! The trait is blocking (file I/O): async callers run it on a blocking
//! thread.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use berth_core::agent::{LogBatch, LogEntry};
use berth_core::Timestamp;
use serde::{Deserialize, Serialize};

/// A container's current log file is rotated when it would grow past this.
pub const ROTATE_BYTES: u64 = 8 * 1024 * 1024;

/// The longest message kept; longer ones are cut (CloudWatch's event limit).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// The most entries one batch may carry.
pub const MAX_BATCH_ENTRIES: usize = 10_000;

/// One stored line of output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredLogEntry {
    /// Position in the container's log, from 1.
    pub seq: u64,
    /// The container.
    pub container: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// When the agent read the line.
    pub timestamp: Timestamp,
    /// The line, without its newline.
    pub message: String,
}

/// What to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogQuery {
    /// One container, or all of the task's.
    pub container: Option<String>,
    /// Only lines read at or after this instant.
    pub since: Option<Timestamp>,
    /// Per container, the last sequence number already seen.
    pub after: BTreeMap<String, u64>,
    /// At most this many lines (oldest first).
    pub limit: usize,
}

/// Why storing or reading logs failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// the task id cannot name a log directory
    #[error("task id {0:?} is not valid (ASCII letters and digits, at most 64)")]
    InvalidTask(String),
    /// a container name cannot name a log file
    #[error(
        "container name {0:?} is not valid (1 to 255 letters, digits, hyphens and underscores)"
    )]
    InvalidContainer(String),
    /// a log entry is malformed
    #[error("log entry {index}: {reason}")]
    InvalidEntry {
        /// Its position in the batch.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// the batch is too large
    #[error("a log batch may carry at most {MAX_BATCH_ENTRIES} entries, not {0}")]
    TooMany(usize),
    /// the file system failed
    #[error("log file {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

/// Where container output goes.
pub trait LogSink: Send + Sync {
    /// Stores a batch of one task's lines, in order.
    fn append(&self, task_id: &str, batch: &LogBatch) -> Result<(), LogError>;

    /// Reads lines, merged across containers in timestamp order; within a
    /// container always in sequence order.
    fn read(&self, task_id: &str, query: &LogQuery) -> Result<Vec<StoredLogEntry>, LogError>;
}

fn valid_task(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn valid_container(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What the sink remembers of one container's current file.
#[derive(Debug, Clone, Copy)]
struct FileState {
    /// The next sequence number.
    next_seq: u64,
    /// Bytes in the current file.
    size: u64,
}

/// Logs in rotated JSON-lines files under one directory.
pub struct FileLogSink {
    dir: PathBuf,
    rotate_bytes: u64,
    state: Mutex<HashMap<(String, String), FileState>>,
}

impl FileLogSink {
    /// A sink writing under `dir` (created when missing).
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, LogError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(Self {
            dir,
            rotate_bytes: ROTATE_BYTES,
            state: Mutex::new(HashMap::new()),
        })
    }

    /// Rotates at `bytes` instead of [`ROTATE_BYTES`] (for tests).
    #[must_use]
    pub fn with_rotate_bytes(mut self, bytes: u64) -> Self {
        self.rotate_bytes = bytes.max(1);
        self
    }

    fn current(&self, task: &str, container: &str) -> PathBuf {
        self.dir.join(task).join(format!("{container}.log"))
    }

    fn rotated(&self, task: &str, container: &str) -> PathBuf {
        self.dir.join(task).join(format!("{container}.log.1"))
    }

    /// Recovers a container's state from its files (after a restart).
    fn recover(&self, task: &str, container: &str) -> Result<FileState, LogError> {
        let current = self.current(task, container);
        let size = match fs::metadata(&current) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io(&current)(e)),
        };
        let mut last = 0;
        for p in [self.rotated(task, container), current] {
            for e in read_file(&p)? {
                last = last.max(e.seq);
            }
        }
        Ok(FileState {
            next_seq: last + 1,
            size,
        })
    }

    /// The last sequence number stored for a container, if known cheaply.
    fn last_seq(&self, task: &str, container: &str) -> Option<u64> {
        let state = self.state.lock().ok()?;
        state
            .get(&(task.to_string(), container.to_string()))
            .map(|s| s.next_seq - 1)
    }

    fn containers(&self, task: &str) -> Result<Vec<String>, LogError> {
        let dir = self.dir.join(task);
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&dir)(e)),
        };
        let mut names = Vec::new();
        for entry in rd {
            let entry = entry.map_err(io(&dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let base = name
                .strip_suffix(".log")
                .or_else(|| name.strip_suffix(".log.1"));
            if let Some(b) = base {
                if valid_container(b) && !names.iter().any(|n| n == b) {
                    names.push(b.to_string());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    /// Appends lines to a container's file, rotating when it would grow
    /// past the limit; returns the new state.
    fn write_lines(
        &self,
        task: &str,
        container: &str,
        mut st: FileState,
        entries: &[&LogEntry],
    ) -> Result<FileState, LogError> {
        let path = self.current(task, container);
        let mut w: Option<BufWriter<fs::File>> = None;
        for e in entries {
            let line = StoredLogEntry {
                seq: st.next_seq,
                container: container.to_string(),
                stream: e.stream.clone(),
                timestamp: e.timestamp,
                message: truncate(e.message.clone()),
            };
            let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
            bytes.push(b'\n');
            let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
            if st.size > 0 && st.size.saturating_add(len) > self.rotate_bytes {
                if let Some(mut f) = w.take() {
                    f.flush().map_err(io(&path))?;
                }
                let rotated = self.rotated(task, container);
                match fs::rename(&path, &rotated) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io(&rotated)(e)),
                }
                st.size = 0;
            }
            if w.is_none() {
                let f = fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(io(&path))?;
                w = Some(BufWriter::new(f));
            }
            if let Some(f) = w.as_mut() {
                f.write_all(&bytes).map_err(io(&path))?;
            }
            st.size += len;
            st.next_seq += 1;
        }
        if let Some(mut f) = w {
            f.flush().map_err(io(&path))?;
        }
        Ok(st)
    }

    fn read_container(
        &self,
        task: &str,
        container: &str,
        after: u64,
        since: Option<Timestamp>,
    ) -> Result<Vec<StoredLogEntry>, LogError> {
        if self.last_seq(task, container).is_some_and(|l| l <= after) {
            return Ok(Vec::new());
        }
        let current = read_file(&self.current(task, container))?;
        let need_rotated = current.first().is_none_or(|e| e.seq > after + 1);
        let mut out = if need_rotated {
            read_file(&self.rotated(task, container))?
        } else {
            Vec::new()
        };
        out.extend(current);
        out.retain(|e| e.seq > after && since.is_none_or(|s| e.timestamp >= s));
        Ok(out)
    }
}

/// Reads a JSON-lines file; a missing file is empty, and an unreadable line
/// (a torn write after a crash) is skipped.
fn read_file(path: &Path) -> Result<Vec<StoredLogEntry>, LogError> {
    let f = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(path)(e)),
    };
    let mut out = Vec::new();
    for line in BufReader::new(f).split(b'\n') {
        let line = line.map_err(io(path))?;
        if let Ok(e) = serde_json::from_slice::<StoredLogEntry>(&line) {
            out.push(e);
        }
    }
    Ok(out)
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_MESSAGE_BYTES {
        let mut cut = MAX_MESSAGE_BYTES;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

impl LogSink for FileLogSink {
    fn append(&self, task_id: &str, batch: &LogBatch) -> Result<(), LogError> {
        if !valid_task(task_id) {
            return Err(LogError::InvalidTask(task_id.to_string()));
        }
        if batch.entries.len() > MAX_BATCH_ENTRIES {
            return Err(LogError::TooMany(batch.entries.len()));
        }
        for (index, e) in batch.entries.iter().enumerate() {
            if !valid_container(&e.container) {
                return Err(LogError::InvalidContainer(e.container.clone()));
            }
            if e.stream != "stdout" && e.stream != "stderr" {
                return Err(LogError::InvalidEntry {
                    index,
                    reason: format!("stream {:?} is not stdout or stderr", e.stream),
                });
            }
        }
        if batch.entries.is_empty() {
            return Ok(());
        }
        let dir = self.dir.join(task_id);
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Group by container, keeping each container's order.
        let mut by_container: BTreeMap<&str, Vec<&LogEntry>> = BTreeMap::new();
        for e in &batch.entries {
            by_container.entry(&e.container).or_default().push(e);
        }
        for (container, entries) in by_container {
            let k = (task_id.to_string(), container.to_string());
            let st = match state.get(&k) {
                Some(s) => *s,
                None => self.recover(task_id, container)?,
            };
            match self.write_lines(task_id, container, st, &entries) {
                Ok(st) => {
                    state.insert(k, st);
                }
                Err(e) => {
                    // Recount from the files next time.
                    state.remove(&k);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn read(&self, task_id: &str, q: &LogQuery) -> Result<Vec<StoredLogEntry>, LogError> {
        if !valid_task(task_id) {
            return Err(LogError::InvalidTask(task_id.to_string()));
        }
        let containers = match &q.container {
            Some(c) if !valid_container(c) => return Err(LogError::InvalidContainer(c.clone())),
            Some(c) => vec![c.clone()],
            None => self.containers(task_id)?,
        };
        let mut lists: Vec<std::collections::VecDeque<StoredLogEntry>> = Vec::new();
        for c in &containers {
            let after = q.after.get(c).copied().unwrap_or(0);
            lists.push(self.read_container(task_id, c, after, q.since)?.into());
        }
        // k-way merge by timestamp: each container stays in sequence order,
        // so a cut at `limit` leaves every container a clean prefix.
        let mut out = Vec::new();
        while out.len() < q.limit {
            let next = lists
                .iter()
                .enumerate()
                .filter_map(|(i, l)| l.front().map(|e| (e.timestamp, i)))
                .min();
            let Some((_, i)) = next else { break };
            if let Some(e) = lists[i].pop_front() {
                out.push(e);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(container: &str, from: i64, n: i64) -> LogBatch {
        LogBatch {
            entries: (from..from + n)
                .map(|i| LogEntry {
                    container: container.into(),
                    stream: "stdout".into(),
                    timestamp: Timestamp(i),
                    message: format!("{container} line {i}"),
                })
                .collect(),
        }
    }

    fn all(limit: usize) -> LogQuery {
        LogQuery {
            limit,
            ..LogQuery::default()
        }
    }

    #[test]
    fn append_then_read_merged_in_time_order() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FileLogSink::new(dir.path()).unwrap();
        sink.append("t1", &batch("app", 0, 3)).unwrap();
        sink.append("t1", &batch("side", 1, 2)).unwrap();
        let lines = sink.read("t1", &all(100)).unwrap();
        let msgs: Vec<&str> = lines.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(
            msgs,
            [
                "app line 0",
                "app line 1",
                "side line 1",
                "app line 2",
                "side line 2"
            ]
        );
        let only = sink
            .read(
                "t1",
                &LogQuery {
                    container: Some("side".into()),
                    limit: 100,
                    ..LogQuery::default()
                },
            )
            .unwrap();
        assert_eq!(only.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
        let since = sink
            .read(
                "t1",
                &LogQuery {
                    since: Some(Timestamp(2)),
                    limit: 100,
                    ..LogQuery::default()
                },
            )
            .unwrap();
        assert_eq!(since.len(), 2);
    }

    #[test]
    fn cursors_resume_without_repeats() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FileLogSink::new(dir.path()).unwrap();
        sink.append("t", &batch("a", 5, 4)).unwrap();
        let first = sink.read("t", &all(3)).unwrap();
        assert_eq!(first.len(), 3);
        let mut q = all(100);
        q.after.insert("a".into(), first.last().unwrap().seq);
        sink.append("t", &batch("a", 5, 1)).unwrap(); // same timestamp again
        let rest = sink.read("t", &q).unwrap();
        assert_eq!(rest.iter().map(|e| e.seq).collect::<Vec<_>>(), [4, 5]);
    }

    #[test]
    fn rotates_keeping_two_files_and_survives_restart() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FileLogSink::new(dir.path()).unwrap().with_rotate_bytes(400);
        for i in 0..20 {
            sink.append("t", &batch("app", i, 1)).unwrap();
        }
        let files: Vec<String> = fs::read_dir(dir.path().join("t"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(files.len(), 2, "{files:?}");
        for f in &files {
            let len = fs::metadata(dir.path().join("t").join(f)).unwrap().len();
            assert!(len <= 400, "{f} is {len} bytes");
        }
        let kept = sink.read("t", &all(1000)).unwrap();
        assert!(!kept.is_empty() && kept.len() < 20);
        assert_eq!(kept.last().unwrap().seq, 20);
        let seqs: Vec<u64> = kept.iter().map(|e| e.seq).collect();
        let mut sorted = seqs.clone();
        sorted.sort_unstable();
        assert_eq!(seqs, sorted);

        // A new sink over the same files continues the numbering.
        let again = FileLogSink::new(dir.path()).unwrap().with_rotate_bytes(400);
        again.append("t", &batch("app", 100, 1)).unwrap();
        let mut q = all(10);
        q.after.insert("app".into(), 20);
        let next = again.read("t", &q).unwrap();
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].seq, 21);
    }

    #[test]
    fn refuses_names_that_escape_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FileLogSink::new(dir.path()).unwrap();
        assert!(matches!(
            sink.append("../x", &batch("a", 0, 1)),
            Err(LogError::InvalidTask(_))
        ));
        assert!(matches!(
            sink.append("t", &batch("../../etc", 0, 1)),
            Err(LogError::InvalidContainer(_))
        ));
        let mut b = batch("a", 0, 1);
        b.entries[0].stream = "stdin".into();
        assert!(matches!(
            sink.append("t", &b),
            Err(LogError::InvalidEntry { .. })
        ));
        assert!(sink.read("t", &all(10)).unwrap().is_empty());
    }

    #[test]
    fn long_messages_are_cut() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FileLogSink::new(dir.path()).unwrap();
        let mut b = batch("a", 0, 1);
        b.entries[0].message = "é".repeat(MAX_MESSAGE_BYTES);
        sink.append("t", &b).unwrap();
        let got = sink.read("t", &all(1)).unwrap();
        assert!(got[0].message.len() <= MAX_MESSAGE_BYTES);
    }
}
