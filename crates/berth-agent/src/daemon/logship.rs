//! Ships container output to the control plane: tails each container's
//! JSON-lines log file (`{"t": ms, "s": "stdout"|"stderr", "m": line}`,
//! written by the shim) and posts new lines in batches.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::PathBuf;

use berth_core::agent::{LogBatch, LogEntry};
use berth_core::Timestamp;

use super::control::ControlClient;

/// Largest batch posted at once.
const MAX_BATCH: usize = 1000;

/// Tails the log files of one task.
#[derive(Default)]
pub struct LogShipper {
    offsets: HashMap<PathBuf, u64>,
}

#[derive(serde::Deserialize)]
struct Line {
    t: i64,
    s: String,
    m: String,
}

impl LogShipper {
    /// Reads lines appended since the last call from `files`
    /// (`(container, path)`).
    fn collect(&mut self, files: &[(String, PathBuf)]) -> Vec<(PathBuf, u64, LogEntry)> {
        let mut out = Vec::new();
        for (container, path) in files {
            let Ok(mut f) = std::fs::File::open(path) else {
                continue;
            };
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            let mut offset = self.offsets.get(path).copied().unwrap_or(0);
            if len < offset {
                // Rotated: start over in the new file.
                offset = 0;
            }
            if f.seek(SeekFrom::Start(offset)).is_err() {
                continue;
            }
            let mut reader = BufReader::new(f);
            let mut buf = String::new();
            loop {
                buf.clear();
                match reader.read_line(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) if !buf.ends_with('\n') => {
                        // A partial line: read it next time.
                        let _ = n;
                        break;
                    }
                    Ok(n) => {
                        offset += n as u64;
                        if let Ok(l) = serde_json::from_str::<Line>(buf.trim_end()) {
                            out.push((
                                path.clone(),
                                offset,
                                LogEntry {
                                    container: container.clone(),
                                    stream: l.s,
                                    timestamp: Timestamp(l.t),
                                    message: l.m,
                                },
                            ));
                        }
                        if out.len() >= MAX_BATCH {
                            return out;
                        }
                    }
                }
            }
        }
        out
    }

    /// Posts everything new; offsets advance only for what the server took.
    pub async fn ship(
        &mut self,
        control: &ControlClient,
        task_id: &str,
        files: &[(String, PathBuf)],
    ) {
        loop {
            let batch = self.collect(files);
            if batch.is_empty() {
                return;
            }
            let full = batch.len() >= MAX_BATCH;
            let entries: Vec<LogEntry> = batch.iter().map(|(_, _, e)| e.clone()).collect();
            match control.logs(task_id, &LogBatch { entries }).await {
                Ok(()) => {
                    for (path, off, _) in batch {
                        self.offsets.insert(path, off);
                    }
                }
                Err(e) => {
                    tracing::debug!(task = task_id, error = %e, "shipping logs failed; will retry");
                    return;
                }
            }
            if !full {
                return;
            }
        }
    }
}
