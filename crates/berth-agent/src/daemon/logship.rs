//! Ships container output to the control plane: tails each container's
//! JSON-lines log file (`{"t": ms, "s": "stdout"|"stderr", "m": line}`,
//! written by the shim) and posts new lines in batches.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::PathBuf;

use berth_core::agent::{LogBatch, LogEntry};
use berth_core::Timestamp;

use super::control::ControlClient;

/// Largest batch posted at once, in lines.
const MAX_BATCH: usize = 1000;

/// Largest batch posted at once, in bytes of message (the server takes
/// bodies up to 1 MiB).
const MAX_BATCH_BYTES: usize = 512 * 1024;

/// Tails the log files of one task. Positions are kept per container (the
/// runner moves a stopped task's live file into its `finished/` directory,
/// same content) and saved after every accepted batch, so an agent restart
/// neither loses nor repeats lines.
#[derive(Default)]
pub struct LogShipper {
    offsets: HashMap<String, u64>,
    file: Option<PathBuf>,
}

#[derive(serde::Deserialize)]
struct Line {
    t: i64,
    s: String,
    m: String,
}

impl LogShipper {
    /// The shipper of `task_id`, with the positions saved in `dir`.
    pub fn load(dir: &std::path::Path, task_id: &str) -> Self {
        let file = dir.join(format!("{task_id}.json"));
        let offsets = std::fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Self {
            offsets,
            file: Some(file),
        }
    }

    fn save(&self) {
        if let Some(f) = &self.file {
            if let Some(d) = f.parent() {
                let _ = std::fs::create_dir_all(d);
            }
            let tmp = f.with_extension("tmp");
            if std::fs::write(&tmp, serde_json::to_vec(&self.offsets).unwrap_or_default()).is_ok() {
                let _ = std::fs::rename(&tmp, f);
            }
        }
    }

    /// Drops the saved positions (the task is gone).
    pub fn forget(&self) {
        if let Some(f) = &self.file {
            let _ = std::fs::remove_file(f);
        }
    }

    /// Reads lines appended since the last call from `files`
    /// (`(container, path)`).
    fn collect(&mut self, files: &[(String, PathBuf)]) -> Vec<(String, u64, LogEntry)> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for (container, path) in files {
            let Ok(mut f) = std::fs::File::open(path) else {
                continue;
            };
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            let mut offset = self.offsets.get(container).copied().unwrap_or(0);
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
                            bytes += l.m.len() + 64;
                            out.push((
                                container.clone(),
                                offset,
                                LogEntry {
                                    container: container.clone(),
                                    stream: l.s,
                                    timestamp: Timestamp(l.t),
                                    message: l.m,
                                },
                            ));
                        }
                        if out.len() >= MAX_BATCH || bytes >= MAX_BATCH_BYTES {
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
            let full = batch.len() >= MAX_BATCH
                || batch
                    .iter()
                    .map(|(_, _, e)| e.message.len() + 64)
                    .sum::<usize>()
                    >= MAX_BATCH_BYTES;
            let entries: Vec<LogEntry> = batch.iter().map(|(_, _, e)| e.clone()).collect();
            match control.logs(task_id, &LogBatch { entries }).await {
                Ok(()) => {
                    for (container, off, _) in batch {
                        self.offsets.insert(container, off);
                    }
                    self.save();
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
