//! The shim: one small process per container that owns it, so containers
//! outlive the agent.
//!
//! The runner starts `SHIM_EXE shim start <container dir>` and waits for it.
//! `start` re-executes itself as `shim run <container dir>` with stdin on
//! /dev/null, stderr on `shim.log`, waits until that process has written
//! `shim.pid`, and exits: the `run` process is orphaned (re-parented to
//! init) and calls `setsid`, so it belongs to no agent session.
//!
//! `run` takes an exclusive `flock` on `shim.lock` (held until it exits:
//! that is how the runner tells whether a shim is alive, immune to pid
//! reuse), reads `shim.json` ([`ShimConfig`]), and runs `runc run` in the
//! foreground as its child with stdout and stderr piped into
//! `log.jsonl` ([`crate::logs`]). It watches the container's memory cgroup
//! for OOM through `cgroup.event_control` (an exit by SIGKILL while the
//! task cgroup's `memory.failcnt` grew counts too). When runc exits it writes
//! `exit` ([`ExitRecord`]) atomically and exits.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::logs::{now_ms, pump, LogWriter, MAX_LINE_BYTES, MAX_LOG_BYTES};

/// Files in a container's directory.
pub mod files {
    /// The shim's configuration.
    pub const CONFIG: &str = "shim.json";
    /// Held locked by a live shim.
    pub const LOCK: &str = "shim.lock";
    /// The shim's pid.
    pub const PID: &str = "shim.pid";
    /// The shim's own stderr.
    pub const SHIM_LOG: &str = "shim.log";
    /// runc's own log (JSON lines).
    pub const RUNC_LOG: &str = "runc.log";
    /// Written by runc once the container process exists.
    pub const CONTAINER_PID: &str = "container.pid";
    /// The container's output.
    pub const LOG: &str = "log.jsonl";
    /// How the container ended ([`super::ExitRecord`]).
    pub const EXIT: &str = "exit";
}

/// What the shim runs; the runner writes it to `<container dir>/shim.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShimConfig {
    /// The runc binary.
    pub runc: PathBuf,
    /// runc's `--root`.
    pub runc_root: PathBuf,
    /// The container id.
    pub id: String,
    /// The bundle (holding config.json).
    pub bundle: PathBuf,
    /// The container's memory cgroup directory, watched for OOM kills.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_cgroup: Option<PathBuf>,
    /// Rotate the log past this size.
    #[serde(default = "default_max_log")]
    pub log_max_bytes: u64,
}

fn default_max_log() -> u64 {
    MAX_LOG_BYTES
}

/// How a container ended, as the shim records it in `exit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExitRecord {
    /// The exit code (128 + signal when killed by a signal); runc's own
    /// exit code when the container never started.
    pub exit_code: i32,
    /// The kernel's OOM killer struck the container's cgroup.
    #[serde(default)]
    pub oom_killed: bool,
    /// When runc exited, ms since the epoch.
    pub finished_at: i64,
    /// Set when the container process never started: runc's error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_error: Option<String>,
}

/// Writes `data` to `path` atomically (temporary file, then rename).
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        use std::io::Write;
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)
}

/// Whether a shim holds the lock of `container_dir` (so is alive).
pub fn shim_alive(container_dir: &Path) -> bool {
    let Ok(f) = File::open(container_dir.join(files::LOCK)) else {
        return false;
    };
    match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockShared) {
        Ok(()) => false,
        Err(rustix::io::Errno::WOULDBLOCK) => true,
        Err(_) => false,
    }
}

/// Reads `exit` of a container directory, if the shim wrote it.
pub fn read_exit(container_dir: &Path) -> Option<ExitRecord> {
    let text = fs::read(container_dir.join(files::EXIT)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// The shim's entry point: `args` are what follows `shim` on the command
/// line (`start <dir>` or `run <dir>`). Never returns.
pub fn shim_main(args: &[String]) -> ! {
    let code = match (args.first().map(String::as_str), args.get(1)) {
        (Some("start"), Some(dir)) => match start(Path::new(dir)) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("berth shim start {dir}: {e}");
                1
            }
        },
        (Some("run"), Some(dir)) => match run(Path::new(dir)) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("berth shim run {dir}: {e}");
                1
            }
        },
        _ => {
            eprintln!("usage: shim start|run <container dir>");
            2
        }
    };
    std::process::exit(code)
}

/// `shim start`: spawn the detached `shim run` and wait for its pid file.
fn start(dir: &Path) -> io::Result<()> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(files::SHIM_LOG))?;
    // /proc/self/exe works even if the binary was replaced on disk.
    let mut child = Command::new("/proc/self/exe")
        .arg("shim")
        .arg("run")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let want = child.id().to_string();
    loop {
        if let Some(status) = child.try_wait()? {
            // It exited already: fine if another shim owns the container
            // or it finished; the runner reads the directory.
            return if status.success() {
                Ok(())
            } else {
                Err(io::Error::other(format!("shim run exited with {status}")))
            };
        }
        if fs::read_to_string(dir.join(files::PID)).is_ok_and(|p| p.trim() == want) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(io::Error::other(
                "shim run did not write its pid file in 10 s",
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The last error runc logged (JSON lines `{"level":"error","msg":...}`).
fn runc_error(runc_log: &Path) -> Option<String> {
    let text = fs::read_to_string(runc_log).ok()?;
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["level"] == "error" || v["level"] == "fatal")
        .find_map(|v| v["msg"].as_str().map(str::to_string))
}

/// `shim run`: supervise one `runc run`.
fn run(dir: &Path) -> io::Result<()> {
    let _ = rustix::process::setsid();
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(files::LOCK))?;
    if rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
        // Another shim owns this container.
        return Ok(());
    }
    write_atomic(
        &dir.join(files::PID),
        std::process::id().to_string().as_bytes(),
    )?;
    if dir.join(files::EXIT).exists() {
        // It ran and ended; never run a container twice.
        return Ok(());
    }
    let cfg: ShimConfig =
        serde_json::from_slice(&fs::read(dir.join(files::CONFIG))?).map_err(io::Error::other)?;
    let writer = Arc::new(Mutex::new(LogWriter::open(
        &dir.join(files::LOG),
        cfg.log_max_bytes,
    )?));
    let _ = fs::remove_file(dir.join(files::CONTAINER_PID));
    let mut child = Command::new(&cfg.runc)
        .arg("--root")
        .arg(&cfg.runc_root)
        .arg("--log")
        .arg(dir.join(files::RUNC_LOG))
        .arg("--log-format")
        .arg("json")
        .arg("run")
        .arg("--bundle")
        .arg(&cfg.bundle)
        .arg("--pid-file")
        .arg(dir.join(files::CONTAINER_PID))
        .arg("--no-new-keyring")
        .arg(&cfg.id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let (done_tx, done_rx) = mpsc::channel::<()>();
    for (pipe, stream) in [
        (
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn io::Read + Send>),
            "stdout",
        ),
        (
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn io::Read + Send>),
            "stderr",
        ),
    ] {
        let Some(pipe) = pipe else { continue };
        let w = writer.clone();
        let tx = done_tx.clone();
        std::thread::spawn(move || {
            if let Err(e) = pump(pipe, stream, &w, MAX_LINE_BYTES) {
                eprintln!("log {stream}: {e}");
            }
            let _ = tx.send(());
        });
    }
    drop(done_tx);
    // The task cgroup's limit hits, for the fallback OOM evidence.
    let task_failcnt = |cg: &Option<PathBuf>| -> Option<u64> {
        let parent = cg.as_ref()?.parent()?;
        fs::read_to_string(parent.join("memory.failcnt"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    let failcnt_before = task_failcnt(&cfg.memory_cgroup);
    let exited = Arc::new(AtomicBool::new(false));
    let oom = Arc::new(AtomicBool::new(false));
    if let Some(cg) = cfg.memory_cgroup.clone() {
        let (exited, oom) = (exited.clone(), oom.clone());
        std::thread::spawn(move || watch_oom(&cg, &exited, &oom));
    }
    let status = child.wait()?;
    exited.store(true, Ordering::SeqCst);
    // Drain the output (both pipes reach EOF once the container is gone).
    let deadline = Instant::now() + Duration::from_secs(3);
    for _ in 0..2 {
        let left = deadline.saturating_duration_since(Instant::now());
        if done_rx.recv_timeout(left).is_err() {
            break;
        }
    }
    let exit_code = {
        use std::os::unix::process::ExitStatusExt;
        status
            .code()
            .or_else(|| status.signal().map(|s| 128 + s))
            .unwrap_or(255)
    };
    let started = dir.join(files::CONTAINER_PID).exists();
    let start_error = (!started).then(|| {
        runc_error(&dir.join(files::RUNC_LOG))
            .unwrap_or_else(|| format!("runc exited with {exit_code} before the container started"))
    });
    // A SIGKILL while the task's cgroup hit its limit is the OOM killer's
    // too (in case the eventfd was registered too late to see it).
    let oom_fallback = exit_code == 137
        && matches!(
            (failcnt_before, task_failcnt(&cfg.memory_cgroup)),
            (Some(a), Some(b)) if b > a
        );
    let record = ExitRecord {
        exit_code,
        oom_killed: started && (oom.load(Ordering::SeqCst) || oom_fallback),
        finished_at: now_ms(),
        start_error,
    };
    write_atomic(
        &dir.join(files::EXIT),
        &serde_json::to_vec(&record).map_err(io::Error::other)?,
    )?;
    drop(lock);
    Ok(())
}

/// Waits for the container's memory cgroup, then registers an OOM
/// eventfd on it. The eventfd fires on an OOM in the cgroup or an ancestor
/// (the task's limit) and on the cgroup's removal; a firing while the
/// cgroup still exists is an OOM.
fn watch_oom(cg: &Path, exited: &AtomicBool, oom: &AtomicBool) {
    let control = cg.join("memory.oom_control");
    while !control.exists() {
        if exited.load(Ordering::SeqCst) {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let register = || -> io::Result<(std::os::fd::OwnedFd, File)> {
        let efd = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC)?;
        let ctl = File::open(&control)?;
        fs::write(
            cg.join("cgroup.event_control"),
            format!("{} {}", efd.as_raw_fd(), ctl.as_raw_fd()),
        )?;
        Ok((efd, ctl))
    };
    let (efd, _ctl) = match register() {
        Ok(x) => x,
        Err(e) => {
            eprintln!("oom watch {}: {e}", cg.display());
            return;
        }
    };
    let mut buf = [0u8; 8];
    loop {
        match rustix::io::read(&efd, &mut buf) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return,
        }
        match fs::read_to_string(&control) {
            Ok(_) => oom.store(true, Ordering::SeqCst),
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_record_wire_shape() {
        let r = ExitRecord {
            exit_code: 137,
            oom_killed: true,
            finished_at: 5,
            start_error: None,
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({"exitCode": 137, "oomKilled": true, "finishedAt": 5})
        );
        let back: ExitRecord = serde_json::from_str(r#"{"exitCode": 3, "finishedAt": 1}"#).unwrap();
        assert_eq!(back.exit_code, 3);
        assert!(!back.oom_killed);
    }

    #[test]
    fn liveness_follows_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!shim_alive(dir.path()));
        let f = File::create(dir.path().join(files::LOCK)).unwrap();
        assert!(!shim_alive(dir.path()));
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive).unwrap();
        assert!(shim_alive(dir.path()));
        drop(f);
        assert!(!shim_alive(dir.path()));
    }

    #[test]
    fn runc_errors_are_read_from_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("runc.log");
        fs::write(
            &log,
            "{\"level\":\"warning\",\"msg\":\"meh\"}\n{\"level\":\"error\",\"msg\":\"exec: no such file\"}\n",
        )
        .unwrap();
        assert_eq!(runc_error(&log).as_deref(), Some("exec: no such file"));
        assert_eq!(runc_error(&dir.path().join("none")), None);
    }
}
